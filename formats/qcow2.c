/* qcow2.c: the qcow2 driver: header parsing and validation, create,
 * flush/close and the driver table.  Cluster mapping lives in
 * qcow2-cluster.c, the writer in qcow2-write.c and qcow2-refcount.c,
 * zlib in qcow2-compress.c. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "format.h"
#include "qcow2.h"

int
qcow2_host_pread (struct qcow2 *h, void *buf, size_t count, uint64_t offset)
{
  size_t n = 0;

  /* Reads past the end of the file return zeros, as they do in qemu:
   * the last cluster of an image need not be fully present, and the
   * writer's newly allocated clusters exist only once written. */
  if (offset < h->file_size)
    n = P2V_MIN (count, h->file_size - offset);
  if (n > 0 && full_pread (h->fd, buf, n, h->base + offset) == -1)
    return p2v_error ("cannot read '%s' at host offset %" PRIu64 ": %m",
                      h->path, offset);
  memset ((uint8_t *) buf + n, 0, count - n);
  return 0;
}

int
qcow2_host_pwrite (struct qcow2 *h, const void *buf, size_t count,
                   uint64_t offset)
{
  if (full_pwrite (h->fd, buf, count, offset) == -1) {
    h->failed = true;
    return p2v_error ("cannot write '%s' at host offset %" PRIu64 ": %m",
                      h->path, offset);
  }
  if (offset + count > h->file_size)
    h->file_size = offset + count;
  if (!h->no_sync)
    writeback_account (h->fd, &h->wb, count);
  return 0;
}

static int
qcow2_probe (const uint8_t *buf, size_t len)
{
  if (len >= 8 && qcow2_get_be32 (buf) == QCOW2_MAGIC) {
    uint32_t version = qcow2_get_be32 (buf + QCOW2_HDR_VERSION);
    return version == 2 || version == 3 ? 100 : 50;
  }
  return 0;
}

static void
qcow2_free (struct qcow2 *h)
{
  if (!h)
    return;
  qcow2_l2_cache_free (h);
  qcow2_decompress_free (h);
  qcow2_refcount_free (h);
  free (h->l1);
  free (h->path);
  free (h);
}

/* Set up the fields derived from cluster_bits and extended_l2. */
static void
qcow2_init_geometry (struct qcow2 *h)
{
  h->cluster_size = UINT32_C (1) << h->cluster_bits;
  h->l2_entry_size = h->extended_l2 ? 16 : 8;
  h->l2_bits = h->cluster_bits - (h->extended_l2 ? 4 : 3);
  h->subcluster_bits = h->cluster_bits - 5;
  h->csize_shift = 62 - (h->cluster_bits - 8);
  h->csize_mask = (UINT64_C (1) << (h->cluster_bits - 8)) - 1;
  h->coffset_mask = (UINT64_C (1) << h->csize_shift) - 1;
}

/* Number of L1 entries needed to map the virtual size. */
static uint64_t
qcow2_l1_entries_for (const struct qcow2 *h, uint64_t size)
{
  unsigned shift = h->cluster_bits + h->l2_bits;

  /* size <= 2^61 and shift <= 39, so this cannot overflow. */
  return (size + (UINT64_C (1) << shift) - 1) >> shift;
}

/* Checks a table (L1 or refcount table) described by the header. */
static int
qcow2_check_table (struct qcow2 *h, const char *what, uint64_t offset,
                   uint64_t bytes)
{
  if (bytes == 0)
    return 0;
  if (offset & (h->cluster_size - 1))
    return p2v_error ("%s offset 0x%" PRIx64 " of '%s' is not cluster "
                      "aligned", what, offset, h->path);
  if (offset < h->cluster_size)
    return p2v_error ("%s of '%s' overlaps the header", what, h->path);
  if (offset > h->file_size || bytes > h->file_size - offset)
    return p2v_error ("%s of '%s' (offset 0x%" PRIx64 ", %" PRIu64
                      " bytes) is past the end of the file",
                      what, h->path, offset, bytes);
  return 0;
}

/* Builds the "has a backing file" error, naming the file if its name
 * can be read sensibly. */
static int
qcow2_backing_error (struct qcow2 *h, uint64_t offset, uint32_t len)
{
  char name[1024];

  if (len > 0 && len < sizeof name && offset < h->cluster_size
      && offset + len <= h->file_size
      && full_pread (h->fd, name, len, h->base + offset) == 0) {
    name[len] = '\0';
    for (uint32_t i = 0; i < len; i++)
      if ((unsigned char) name[i] < 0x20 || name[i] == 0x7f)
        name[i] = '?';
    return p2v_error ("'%s' has a backing file '%s', which is not supported",
                      h->path, name);
  }
  return p2v_error ("'%s' has a backing file, which is not supported",
                    h->path);
}

/* Reads and validates the header.  Everything is checked before it is
 * used, so a hostile header cannot make us allocate or read much. */
static int
qcow2_read_header (struct qcow2 *h, bool readonly)
{
  uint8_t hdr[QCOW2_WRITE_HEADER_LEN];
  size_t n = P2V_MIN (h->file_size, sizeof hdr);
  uint32_t header_length, cluster_bits, crypt, l1_size, rt_clusters;
  uint32_t refcount_order = 4, compression_type = 0;
  uint64_t incompat = 0, backing_offset, l1_needed;

  memset (hdr, 0, sizeof hdr);
  if (n < QCOW2_V2_HEADER_LEN)
    return p2v_error ("cannot read qcow2 header of '%s': file is truncated",
                      h->path);
  if (full_pread (h->fd, hdr, n, h->base) == -1)
    return p2v_error ("cannot read qcow2 header of '%s': %m", h->path);

  if (qcow2_get_be32 (hdr + QCOW2_HDR_MAGIC) != QCOW2_MAGIC)
    return p2v_error ("'%s' is not a qcow2 image (bad magic)", h->path);
  h->version = qcow2_get_be32 (hdr + QCOW2_HDR_VERSION);
  if (h->version != 2 && h->version != 3)
    return p2v_error ("'%s' has unsupported qcow2 version %" PRIu32,
                      h->path, h->version);

  if (h->version == 2)
    header_length = QCOW2_V2_HEADER_LEN;
  else {
    if (n < QCOW2_V3_HEADER_LEN)
      return p2v_error ("cannot read qcow2 header of '%s': file is truncated",
                        h->path);
    header_length = qcow2_get_be32 (hdr + QCOW2_HDR_HEADER_LENGTH);
    incompat = qcow2_get_be64 (hdr + QCOW2_HDR_INCOMPAT);
    h->autoclear = qcow2_get_be64 (hdr + QCOW2_HDR_AUTOCLEAR);
    refcount_order = qcow2_get_be32 (hdr + QCOW2_HDR_REFCOUNT_ORDER);
  }

  cluster_bits = qcow2_get_be32 (hdr + QCOW2_HDR_CLUSTER_BITS);
  if (cluster_bits < QCOW2_MIN_CLUSTER_BITS
      || cluster_bits > QCOW2_MAX_CLUSTER_BITS)
    return p2v_error ("'%s' has an unsupported cluster size "
                      "(cluster_bits %" PRIu32 ", must be %d..%d)",
                      h->path, cluster_bits, QCOW2_MIN_CLUSTER_BITS,
                      QCOW2_MAX_CLUSTER_BITS);
  h->cluster_bits = cluster_bits;
  h->extended_l2 = (incompat & QCOW2_INCOMPAT_EXTL2) != 0;
  qcow2_init_geometry (h);

  if (h->version == 3) {
    if (header_length < QCOW2_V3_HEADER_LEN
        || header_length > h->cluster_size)
      return p2v_error ("'%s' has a qcow2 header length %" PRIu32
                        " out of range", h->path, header_length);
    if (header_length > h->file_size)
      return p2v_error ("cannot read qcow2 header of '%s': file is truncated",
                        h->path);
    if (header_length > QCOW2_HDR_COMPRESSION_TYPE)
      compression_type = hdr[QCOW2_HDR_COMPRESSION_TYPE];
  }

  backing_offset = qcow2_get_be64 (hdr + QCOW2_HDR_BACKING_OFFSET);
  if (backing_offset != 0)
    return qcow2_backing_error (h, backing_offset,
                                qcow2_get_be32 (hdr + QCOW2_HDR_BACKING_SIZE));

  crypt = qcow2_get_be32 (hdr + QCOW2_HDR_CRYPT);
  if (crypt != 0)
    return p2v_error ("'%s' is encrypted, which is not supported", h->path);

  if (incompat & ~QCOW2_INCOMPAT_KNOWN)
    return p2v_error ("'%s' has unknown incompatible feature bits 0x%" PRIx64
                      ", which are not supported",
                      h->path, incompat & ~QCOW2_INCOMPAT_KNOWN);
  if (incompat & QCOW2_INCOMPAT_DATA_FILE)
    return p2v_error ("'%s' uses an external data file, which is not "
                      "supported", h->path);
  if (incompat & QCOW2_INCOMPAT_COMPRESSION) {
    if (compression_type == 1)
      return p2v_error ("'%s' uses zstd compression, which is not supported",
                        h->path);
    return p2v_error ("'%s' has an unsupported compression type %" PRIu32,
                      h->path, compression_type);
  }
  if (compression_type != 0)
    return p2v_error ("'%s' has compression type %" PRIu32 " without the "
                      "compression type feature bit", h->path,
                      compression_type);
  if (h->extended_l2 && cluster_bits < 14)
    return p2v_error ("'%s' has extended L2 entries with a cluster size "
                      "below 16384", h->path);
  if (!readonly && (incompat & QCOW2_INCOMPAT_DIRTY))
    return p2v_error ("'%s' is marked dirty (its refcounts may be "
                      "inconsistent): open it read-only, or repair it with "
                      "'qemu-img check -r all'", h->path);
  if (!readonly && (incompat & QCOW2_INCOMPAT_CORRUPT))
    return p2v_error ("'%s' is marked corrupt: it can only be opened "
                      "read-only", h->path);
  if (refcount_order > 6)
    return p2v_error ("'%s' has an invalid refcount order %" PRIu32,
                      h->path, refcount_order);

  h->size = qcow2_get_be64 (hdr + QCOW2_HDR_SIZE);
  if (h->size > QCOW2_MAX_VIRTUAL_SIZE)
    return p2v_error ("virtual size %" PRIu64 " of '%s' is too large",
                      h->size, h->path);

  l1_size = qcow2_get_be32 (hdr + QCOW2_HDR_L1_SIZE);
  h->l1_offset = qcow2_get_be64 (hdr + QCOW2_HDR_L1_OFFSET);
  if (l1_size > QCOW2_MAX_L1_BYTES / 8)
    return p2v_error ("L1 table of '%s' is too large (%" PRIu32 " entries)",
                      h->path, l1_size);
  l1_needed = qcow2_l1_entries_for (h, h->size);
  if (l1_size < l1_needed)
    return p2v_error ("L1 table of '%s' is too small for its virtual size "
                      "(%" PRIu32 " entries, %" PRIu64 " needed)",
                      h->path, l1_size, l1_needed);
  if (qcow2_check_table (h, "L1 table", h->l1_offset,
                         (uint64_t) l1_size * 8) == -1)
    return -1;

  h->rt_offset = qcow2_get_be64 (hdr + QCOW2_HDR_RT_OFFSET);
  rt_clusters = qcow2_get_be32 (hdr + QCOW2_HDR_RT_CLUSTERS);
  if (rt_clusters == 0)
    return p2v_error ("'%s' has no refcount table", h->path);
  if (rt_clusters > QCOW2_MAX_REFTABLE_BYTES / h->cluster_size)
    return p2v_error ("refcount table of '%s' is too large (%" PRIu32
                      " clusters)", h->path, rt_clusters);
  if (qcow2_check_table (h, "refcount table", h->rt_offset,
                         (uint64_t) rt_clusters * h->cluster_size) == -1)
    return -1;

  /* Only the entries covering the virtual size matter; l1_needed is at
   * most 4M entries (32 MiB) by the checks above. */
  h->l1_entries = l1_needed;
  h->l1 = xcalloc (l1_needed ? l1_needed : 1, sizeof (uint64_t));
  if (l1_needed > 0) {
    if (full_pread (h->fd, h->l1, l1_needed * 8,
                    h->base + h->l1_offset) == -1)
      return p2v_error ("cannot read L1 table of '%s': %m", h->path);
    for (uint64_t i = 0; i < l1_needed; i++)
      h->l1[i] = be64toh (h->l1[i]);
  }
  return 0;
}

/* Opens the qcow2 image held in bytes [offset, offset + length) of path
 * (length UINT64_MAX: to the end of the file).  name is what messages
 * call it. */
static void *
qcow2_open_range (const char *path, const char *name, bool readonly,
                  uint64_t offset, uint64_t length)
{
  struct qcow2 *h = xcalloc (1, sizeof *h);
  struct stat st;

  h->path = xstrdup (name);
  h->mode = readonly ? QCOW2_MODE_READONLY : QCOW2_MODE_INPLACE;
  h->fd = open (path, (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
  if (h->fd == -1) {
    p2v_error ("cannot open '%s': %m", path);
    goto err;
  }
  if (fstat (h->fd, &st) == -1) {
    p2v_error ("cannot stat '%s': %m", path);
    goto err;
  }
  if (length == UINT64_MAX && offset <= (uint64_t) st.st_size)
    length = st.st_size - offset;
  if (offset > (uint64_t) st.st_size || length > (uint64_t) st.st_size - offset) {
    p2v_error ("'%s' (%" PRIu64 " bytes at offset %" PRIu64 ") is beyond "
               "the end of '%s'", name, length, offset, path);
    goto err;
  }
  h->base = offset;
  h->file_size = length;
  if (qcow2_read_header (h, readonly) == -1)
    goto err;
  qcow2_l2_cache_init (h);
  return h;

 err:
  if (h->fd >= 0)
    close (h->fd);
  qcow2_free (h);
  return NULL;
}

static void *
qcow2_open (const char *path, unsigned flags)
{
  return qcow2_open_range (path, path, (flags & P2V_OPEN_READONLY) != 0,
                           0, UINT64_MAX);
}

/* Opens, read-only, the qcow2 image held in bytes [offset, offset +
 * length) of path: a qcow2 entry read in place inside a tar bundle.
 * name is what messages call it ("bundle.tar:disk0.qcow2"). */
static void *
qcow2_open_window (const char *path, uint64_t offset, uint64_t length,
                   const char *name)
{
  return qcow2_open_range (path, name, true, offset, length);
}

/* Writes the header of a new image: v3, no extensions (the area after
 * the header is zero, which reads as the end-of-extensions marker). */
static int
qcow2_write_header (struct qcow2 *h)
{
  uint8_t hdr[QCOW2_WRITE_HEADER_LEN + 8];

  memset (hdr, 0, sizeof hdr);
  qcow2_put_be32 (hdr + QCOW2_HDR_MAGIC, QCOW2_MAGIC);
  qcow2_put_be32 (hdr + QCOW2_HDR_VERSION, 3);
  qcow2_put_be32 (hdr + QCOW2_HDR_CLUSTER_BITS, h->cluster_bits);
  /* qemu sees virtual sizes in whole sectors, rounded down: round up,
   * as qemu-img create does, so that it sees all the data. */
  qcow2_put_be64 (hdr + QCOW2_HDR_SIZE, ROUND_UP (h->size, 512));
  qcow2_put_be32 (hdr + QCOW2_HDR_L1_SIZE, h->l1_entries);
  qcow2_put_be64 (hdr + QCOW2_HDR_L1_OFFSET, h->l1_offset);
  qcow2_put_be64 (hdr + QCOW2_HDR_RT_OFFSET, h->rt_offset);
  qcow2_put_be32 (hdr + QCOW2_HDR_RT_CLUSTERS, h->rt_clusters);
  qcow2_put_be32 (hdr + QCOW2_HDR_REFCOUNT_ORDER, 4);
  qcow2_put_be32 (hdr + QCOW2_HDR_HEADER_LENGTH, QCOW2_WRITE_HEADER_LEN);
  return qcow2_host_pwrite (h, hdr, sizeof hdr, 0);
}

static void *
qcow2_create (const char *path, uint64_t size,
              const struct p2v_create_opts *opts)
{
  uint32_t cs = opts && opts->cluster_size
    ? opts->cluster_size : QCOW2_DEFAULT_CLUSTER_SIZE;
  struct qcow2 *h;
  uint64_t l1_entries, l1_clusters, data_clusters;

  if (!IS_POWER_OF_2 (cs) || cs < (1u << QCOW2_MIN_CLUSTER_BITS)
      || cs > (1u << QCOW2_MAX_CLUSTER_BITS))
    return p2v_error_null ("cannot create '%s': cluster size %" PRIu32
                           " is not a power of two between 512 and 2M",
                           path, cs);

  h = xcalloc (1, sizeof *h);
  h->fd = -1;
  h->path = xstrdup (path);
  h->mode = QCOW2_MODE_WRITER;
  h->version = 3;
  h->cluster_bits = __builtin_ctz (cs);
  h->size = size;
  h->no_sync = opts && opts->no_sync;
  qcow2_init_geometry (h);

  l1_entries = qcow2_l1_entries_for (h, P2V_MIN (size,
                                                 QCOW2_MAX_VIRTUAL_SIZE));
  if (size > QCOW2_MAX_VIRTUAL_SIZE || l1_entries > QCOW2_MAX_L1_BYTES / 8) {
    p2v_error ("cannot create '%s': virtual size %" PRIu64 " is too large "
               "for cluster size %" PRIu32, path, size, cs);
    goto err;
  }
  h->l1_entries = l1_entries;
  h->l1 = xcalloc (l1_entries ? l1_entries : 1, sizeof (uint64_t));
  l1_clusters = DIV_ROUND_UP (l1_entries * 8, cs);
  /* qemu uses offset 0 for an empty L1 table; so do we, since an L1
   * cluster referenced by nothing would be a leak. */
  /* The L1 table starts all zeros, which it already is on disk (a hole
   * in the new file): only entries set later need writing. */
  h->l1_offset = l1_entries ? cs : 0;

  h->fd = open (path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (h->fd == -1) {
    p2v_error ("cannot create '%s': %m", path);
    goto err;
  }

  /* Every guest cluster written once, plus its L2 table: the refcount
   * table is sized from this (with room to spare). */
  data_clusters = DIV_ROUND_UP (size, cs);
  if (qcow2_refcount_init (h, 1 + l1_clusters,
                           data_clusters + l1_entries) == -1)
    goto err_unlink;
  if (qcow2_write_header (h) == -1)
    goto err_unlink;
  qcow2_l2_cache_init (h);
  return h;

 err_unlink:
  unlink (path);
 err:
  if (h->fd >= 0)
    close (h->fd);
  qcow2_free (h);
  return NULL;
}

static int
qcow2_write_l1 (struct qcow2 *h)
{
  uint64_t buf[512];

  while (h->l1_dirty_lo < h->l1_dirty_hi) {
    uint64_t n = P2V_MIN (h->l1_dirty_hi - h->l1_dirty_lo, ARRAY_SIZE (buf));

    for (uint64_t i = 0; i < n; i++)
      buf[i] = htobe64 (h->l1[h->l1_dirty_lo + i]);
    if (qcow2_host_pwrite (h, buf, n * 8,
                           h->l1_offset + h->l1_dirty_lo * 8) == -1)
      return -1;
    h->l1_dirty_lo += n;
  }
  h->l1_dirty_lo = h->l1_dirty_hi = 0;
  return 0;
}

/* Brings the image on disk up to date with what is in memory.  Tables
 * that point to others are written after them. */
static int
qcow2_write_metadata (struct qcow2 *h)
{
  if (h->mode != QCOW2_MODE_WRITER)
    return 0;
  if (qcow2_l2_flush (h) == -1 || qcow2_refcount_flush (h) == -1
      || qcow2_write_l1 (h) == -1)
    return -1;
  /* Allocated clusters never written to yet must exist in the file. */
  if (h->file_size < h->alloc_ptr) {
    if (ftruncate (h->fd, h->alloc_ptr) == -1) {
      h->failed = true;
      return p2v_error ("cannot extend '%s': %m", h->path);
    }
    h->file_size = h->alloc_ptr;
  }
  return 0;
}

static int
qcow2_flush (void *handle)
{
  struct qcow2 *h = handle;

  if (h->mode == QCOW2_MODE_READONLY)
    return 0;
  if (qcow2_write_metadata (h) == -1)
    return -1;
  if (h->no_sync)
    return 0;
  if (fdatasync (h->fd) == -1) {
    h->failed = true;
    return p2v_error ("cannot sync '%s': %m", h->path);
  }
  return 0;
}

static void
qcow2_discard (void *handle)
{
  struct qcow2 *h = handle;

  h->discarded = true;
}

static int
qcow2_close (void *handle)
{
  struct qcow2 *h = handle;
  int r = 0;

  if (h->discarded) {
    close (h->fd);
    qcow2_free (h);
    return 0;
  }
  if (qcow2_write_metadata (h) == -1)
    r = -1;
  if (h->mode != QCOW2_MODE_READONLY && h->failed && r == 0)
    r = p2v_error ("earlier writes to '%s' failed", h->path);
  if (close (h->fd) == -1 && h->mode != QCOW2_MODE_READONLY)
    r = p2v_error ("cannot close '%s': %m", h->path);
  qcow2_free (h);
  return r;
}

static uint64_t
qcow2_get_size (void *handle)
{
  struct qcow2 *h = handle;
  return h->size;
}

static uint32_t
qcow2_granularity (void *handle)
{
  struct qcow2 *h = handle;
  return h->cluster_size;
}

static bool
qcow2_has_zero_init (void *handle)
{
  struct qcow2 *h = handle;
  return h->mode == QCOW2_MODE_WRITER;
}

static int
qcow2_check_write (struct qcow2 *h, uint64_t count, uint64_t offset)
{
  if (h->mode == QCOW2_MODE_READONLY)
    return p2v_error ("cannot write to '%s': it is opened read-only",
                      h->path);
  if (offset > h->size || count > h->size - offset)
    return p2v_error ("cannot write to '%s': range %" PRIu64 "+%" PRIu64
                      " is beyond the end of the image (%" PRIu64 " bytes)",
                      h->path, offset, count, h->size);
  return 0;
}

static int
qcow2_pwrite (void *handle, const void *buf, size_t count, uint64_t offset)
{
  struct qcow2 *h = handle;

  if (qcow2_check_write (h, count, offset) == -1)
    return -1;
  if (h->mode == QCOW2_MODE_INPLACE)
    return qcow2_inplace_pwrite (h, buf, count, offset);
  return qcow2_writer_pwrite (h, buf, count, offset);
}

static int
qcow2_zero (void *handle, uint64_t count, uint64_t offset)
{
  struct qcow2 *h = handle;

  if (qcow2_check_write (h, count, offset) == -1)
    return -1;
  if (h->mode == QCOW2_MODE_INPLACE)
    return qcow2_inplace_zero (h, count, offset);
  return qcow2_writer_zero (h, count, offset);
}

const struct p2v_format p2v_format_qcow2 = {
  .name = "qcow2",
  .description = "QEMU copy-on-write image, versions 2 and 3",
  .probe = qcow2_probe,
  .open = qcow2_open,
  .open_window = qcow2_open_window,
  .create = qcow2_create,
  .get_size = qcow2_get_size,
  .granularity = qcow2_granularity,
  .has_zero_init = qcow2_has_zero_init,
  .pread = qcow2_pread,
  .pwrite = qcow2_pwrite,
  .zero = qcow2_zero,
  .block_status = qcow2_block_status,
  .compress = qcow2_compress,
  .pwrite_compressed = qcow2_pwrite_compressed,
  .flush = qcow2_flush,
  .discard = qcow2_discard,
  .close = qcow2_close,
};
