/* qcow2-compress.c: zlib compressed clusters.  qemu stores raw deflate
 * streams (no zlib header) made with a 4 KiB window, and reads them
 * back with a single inflate into one cluster. */
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "format.h"
#include "qcow2.h"

/* The window qemu compresses with, and must decompress with. */
#define QCOW2_DEFLATE_WINDOW_BITS (-12)
/* Decompression with the largest window accepts streams made with any
 * smaller one, so we read whatever other writers chose. */
#define QCOW2_INFLATE_WINDOW_BITS (-15)

void
qcow2_compressed_range (const struct qcow2 *h, uint64_t l2e,
                        uint64_t *coffset, uint64_t *csize)
{
  uint64_t nb_sectors = ((l2e >> h->csize_shift) & h->csize_mask) + 1;

  *coffset = l2e & h->coffset_mask;
  /* The data runs from coffset to the end of its last sector. */
  *csize = nb_sectors * 512 - (*coffset & 511);
}

/* Each compressing thread keeps its zlib streams between clusters:
 * deflateInit2 allocates and clears ~270 KiB, which would otherwise cost
 * a quarter of the time of compressing a 64 KiB cluster. */
struct deflate_ctx {
  z_stream zs;
  int level;                    /* level zs was made for, 0: none */
  z_stream probe;
  bool probe_init;
  uint8_t *padded;              /* the short last cluster, zero-padded */
  size_t padded_size;
};

static pthread_key_t deflate_key;
static pthread_once_t deflate_once = PTHREAD_ONCE_INIT;

static void
deflate_ctx_free (void *p)
{
  struct deflate_ctx *c = p;

  if (c->level)
    deflateEnd (&c->zs);
  if (c->probe_init)
    deflateEnd (&c->probe);
  free (c->padded);
  free (c);
}

static void
deflate_key_create (void)
{
  pthread_key_create (&deflate_key, deflate_ctx_free);
}

static struct deflate_ctx *
deflate_ctx_get (void)
{
  struct deflate_ctx *c;

  pthread_once (&deflate_once, deflate_key_create);
  c = pthread_getspecific (deflate_key);
  if (!c) {
    c = xcalloc (1, sizeof *c);
    pthread_setspecific (deflate_key, c);
  }
  return c;
}

static int
deflate_ctx_prepare (struct deflate_ctx *c, int level)
{
  if (c->level == level)
    return deflateReset (&c->zs) == Z_OK ? 0 : -1;
  if (c->level)
    deflateEnd (&c->zs);
  c->level = 0;
  memset (&c->zs, 0, sizeof c->zs);
  if (deflateInit2 (&c->zs, level, Z_DEFLATED, QCOW2_DEFLATE_WINDOW_BITS, 9,
                    Z_DEFAULT_STRATEGY) != Z_OK)
    return -1;
  c->level = level;
  return 0;
}

/* A quick look at four 1 KiB samples at the fastest level: data that
 * does not shrink there (already compressed or encrypted) is stored plain
 * without paying for a full deflate of the cluster. */
#define PROBE_SAMPLES 4
#define PROBE_SAMPLE_SIZE 1024
#define PROBE_MIN_CLUSTER (16 * 1024)

static bool
looks_incompressible (struct deflate_ctx *c, const uint8_t *in, size_t cs)
{
  uint8_t out[PROBE_SAMPLES * PROBE_SAMPLE_SIZE + 256];
  size_t produced;

  if (!c->probe_init) {
    memset (&c->probe, 0, sizeof c->probe);
    if (deflateInit2 (&c->probe, 1, Z_DEFLATED, QCOW2_DEFLATE_WINDOW_BITS, 9,
                      Z_DEFAULT_STRATEGY) != Z_OK)
      return false;
    c->probe_init = true;
  }
  else if (deflateReset (&c->probe) != Z_OK)
    return false;

  c->probe.next_out = out;
  c->probe.avail_out = sizeof out;
  for (int i = 0; i < PROBE_SAMPLES; i++) {
    c->probe.next_in = (uint8_t *) in + i * (cs / PROBE_SAMPLES);
    c->probe.avail_in = PROBE_SAMPLE_SIZE;
    if (deflate (&c->probe, i == PROBE_SAMPLES - 1 ? Z_FINISH : Z_FULL_FLUSH)
        == Z_STREAM_ERROR)
      return false;
  }
  produced = sizeof out - c->probe.avail_out;
  return produced * 100 > PROBE_SAMPLES * PROBE_SAMPLE_SIZE * 97;
}

/* Thread-safe: it only reads the cluster size from the handle and keeps
 * its zlib state per thread. */
ssize_t
qcow2_compress (void *handle, const void *in, size_t len,
                void *out, size_t out_cap, int level)
{
  const struct qcow2 *h = handle;
  size_t cs = h->cluster_size, limit;
  struct deflate_ctx *c;
  int zr;

  if (len == 0 || len > cs)
    return p2v_error ("cannot compress %zu bytes for '%s': the unit is "
                      "one cluster (%zu bytes)", len, h->path, cs);
  if (level == -1)
    level = Z_DEFAULT_COMPRESSION;
  else if (level < 1 || level > 9)
    return p2v_error ("invalid compression level %d (must be 1..9)", level);

  /* Compressing pays only if it saves at least a sector. */
  if (cs <= 512)
    return 0;
  limit = P2V_MIN (cs - 512, out_cap);

  c = deflate_ctx_get ();
  /* qemu inflates every compressed cluster to a full cluster, so the
   * short last cluster of a disk is compressed padded with zeros. */
  if (len < cs) {
    if (c->padded_size < cs) {
      free (c->padded);
      c->padded = xmalloc (cs);
      c->padded_size = cs;
    }
    memcpy (c->padded, in, len);
    memset (c->padded + len, 0, cs - len);
    in = c->padded;
  }

  if (cs >= PROBE_MIN_CLUSTER && looks_incompressible (c, in, cs))
    return 0;

  if (deflate_ctx_prepare (c, level) == -1)
    return p2v_error ("cannot compress data for '%s': zlib initialisation "
                      "failed", h->path);
  c->zs.next_in = (uint8_t *) in;
  c->zs.avail_in = cs;
  c->zs.next_out = out;
  c->zs.avail_out = limit;
  zr = deflate (&c->zs, Z_FINISH);
  if (zr == Z_STREAM_END)
    return limit - c->zs.avail_out;
  if (zr == Z_OK || zr == Z_BUF_ERROR)
    return 0;                   /* did not fit: store the cluster plain */
  return p2v_error ("cannot compress data for '%s': zlib error %d",
                    h->path, zr);
}

/* Decompresses the cluster described by l2e into h->dbuf, unless it is
 * already there. */
int
qcow2_decompress_cluster (struct qcow2 *h, uint64_t l2e,
                          uint64_t guest_offset)
{
  uint64_t coffset, csize;
  int zr;

  if (h->dbuf && h->dbuf_l2e == l2e)
    return 0;
  if (!h->dbuf) {
    h->dbuf = xmalloc (h->cluster_size);
    /* The sector count field allows at most two clusters of data. */
    h->cbuf = xmalloc (2 * (size_t) h->cluster_size);
  }
  h->dbuf_l2e = 0;

  qcow2_compressed_range (h, l2e, &coffset, &csize);
  if (qcow2_host_pread (h, h->cbuf, csize, coffset) == -1)
    return -1;

  if (!h->zs_init) {
    memset (&h->zs, 0, sizeof h->zs);
    if (inflateInit2 (&h->zs, QCOW2_INFLATE_WINDOW_BITS) != Z_OK)
      return p2v_error ("cannot decompress data of '%s': zlib "
                        "initialisation failed", h->path);
    h->zs_init = true;
  }
  else if (inflateReset (&h->zs) != Z_OK)
    return p2v_error ("cannot decompress data of '%s': zlib reset failed",
                      h->path);

  h->zs.next_in = h->cbuf;
  h->zs.avail_in = csize;
  h->zs.next_out = h->dbuf;
  h->zs.avail_out = h->cluster_size;
  zr = inflate (&h->zs, Z_FINISH);
  /* The compressed length is only known to the sector, so the stream
   * may end early (Z_STREAM_END) or have trailing bytes left over
   * (Z_BUF_ERROR/Z_OK); either way it must fill the whole cluster. */
  if ((zr != Z_STREAM_END && zr != Z_BUF_ERROR && zr != Z_OK)
      || h->zs.avail_out != 0)
    return p2v_error ("cannot decompress cluster at guest offset %" PRIu64
                      " of '%s': corrupt compressed data",
                      guest_offset & ~(uint64_t) (h->cluster_size - 1),
                      h->path);
  h->dbuf_l2e = l2e;
  return 0;
}

void
qcow2_decompress_free (struct qcow2 *h)
{
  if (h->zs_init)
    inflateEnd (&h->zs);
  h->zs_init = false;
  free (h->cbuf);
  free (h->dbuf);
  h->cbuf = h->dbuf = NULL;
}
