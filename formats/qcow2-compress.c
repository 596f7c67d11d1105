/* qcow2-compress.c: zlib compressed clusters.  qemu stores raw deflate
 * streams (no zlib header) made with a 4 KiB window, and reads them
 * back with a single inflate into one cluster. */
#include <inttypes.h>
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

/* Thread-safe: it only reads the cluster size from the handle. */
ssize_t
qcow2_compress (void *handle, const void *in, size_t len,
                void *out, size_t out_cap, int level)
{
  const struct qcow2 *h = handle;
  size_t cs = h->cluster_size, limit;
  uint8_t *padded = NULL;
  z_stream zs;
  ssize_t r = -1;
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

  /* qemu inflates every compressed cluster to a full cluster, so the
   * short last cluster of a disk is compressed padded with zeros. */
  if (len < cs) {
    padded = xmalloc (cs);
    memcpy (padded, in, len);
    memset (padded + len, 0, cs - len);
    in = padded;
  }

  memset (&zs, 0, sizeof zs);
  if (deflateInit2 (&zs, level, Z_DEFLATED, QCOW2_DEFLATE_WINDOW_BITS, 9,
                    Z_DEFAULT_STRATEGY) != Z_OK) {
    p2v_error ("cannot compress data for '%s': zlib initialisation failed",
               h->path);
    goto out;
  }
  zs.next_in = in;
  zs.avail_in = cs;
  zs.next_out = out;
  zs.avail_out = limit;
  zr = deflate (&zs, Z_FINISH);
  if (zr == Z_STREAM_END)
    r = limit - zs.avail_out;
  else if (zr == Z_OK || zr == Z_BUF_ERROR)
    r = 0;                      /* did not fit: store the cluster plain */
  else
    p2v_error ("cannot compress data for '%s': zlib error %d", h->path, zr);
  deflateEnd (&zs);

 out:
  free (padded);
  return r;
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
