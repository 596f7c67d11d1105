/* qcow2-cluster.c: guest-to-host mapping through the L1 table and a
 * small cache of L2 tables, and the read paths built on it (pread,
 * block_status) plus in-place writes to existing images. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "format.h"
#include "qcow2.h"

/* Memory for cached L2 tables: with 64 KiB clusters that is 32 tables,
 * each mapping 512 MiB of guest space. */
#define QCOW2_L2_CACHE_BYTES (2u << 20)
#define QCOW2_L2_CACHE_MIN 2
#define QCOW2_L2_CACHE_MAX 32

void
qcow2_l2_cache_init (struct qcow2 *h)
{
  unsigned n = QCOW2_L2_CACHE_BYTES / h->cluster_size;

  n = P2V_MAX (n, QCOW2_L2_CACHE_MIN);
  n = P2V_MIN (n, QCOW2_L2_CACHE_MAX);
  h->l2_cache = xcalloc (n, sizeof *h->l2_cache);
  h->l2_cache_n = n;
}

void
qcow2_l2_cache_free (struct qcow2 *h)
{
  for (unsigned i = 0; h->l2_cache && i < h->l2_cache_n; i++)
    free (h->l2_cache[i].data);
  free (h->l2_cache);
  h->l2_cache = NULL;
}

/* Offsets below this are inside the file (reader) or allocated
 * (writer); anything at or beyond it is a corrupt pointer. */
static uint64_t
qcow2_host_limit (const struct qcow2 *h)
{
  return h->mode == QCOW2_MODE_WRITER ? h->alloc_ptr : h->file_size;
}

static int
qcow2_l2_writeback (struct qcow2 *h, struct qcow2_l2_slot *s)
{
  if (!s->dirty)
    return 0;
  if (qcow2_host_pwrite (h, s->data, h->cluster_size, s->host) == -1)
    return -1;
  s->dirty = false;
  return 0;
}

/* Picks a slot to reuse (an empty one, else the least recently used),
 * writing it back first if needed. */
static int
qcow2_l2_evict (struct qcow2 *h, struct qcow2_l2_slot **slot)
{
  struct qcow2_l2_slot *victim = NULL;

  for (unsigned i = 0; i < h->l2_cache_n; i++) {
    struct qcow2_l2_slot *s = &h->l2_cache[i];
    if (s->host == 0) {
      victim = s;
      break;
    }
    if (!victim || s->lru < victim->lru)
      victim = s;
  }
  if (qcow2_l2_writeback (h, victim) == -1)
    return -1;
  victim->host = 0;
  if (!victim->data)
    victim->data = xmalloc (h->cluster_size);
  h->l2_last = victim - h->l2_cache;
  *slot = victim;
  return 0;
}

/* Returns the cached L2 table for L1 entry l1_index in *slot, or NULL
 * if the L1 entry is unallocated and alloc is false.  With alloc (the
 * writer only) an unallocated table is allocated, zeroed.  The slot
 * stays valid until the next call. */
int
qcow2_l2_get (struct qcow2 *h, uint64_t l1_index, bool alloc,
              struct qcow2_l2_slot **slot)
{
  uint64_t offset = h->l1[l1_index] & QCOW2_L1E_OFFSET_MASK;
  struct qcow2_l2_slot *s;

  *slot = NULL;
  if (offset == 0) {
    uint64_t got;

    if (!alloc)
      return 0;
    if (qcow2_l2_evict (h, &s) == -1
        || qcow2_alloc_clusters (h, 1, 1, &offset, &got) == -1)
      return -1;
    memset (s->data, 0, h->cluster_size);
    s->host = offset;
    s->dirty = true;
    s->lru = ++h->l2_clock;
    h->l1[l1_index] = offset | QCOW2_OFLAG_COPIED;
    if (h->l1_dirty_lo == h->l1_dirty_hi) {
      h->l1_dirty_lo = l1_index;
      h->l1_dirty_hi = l1_index + 1;
    }
    else {
      h->l1_dirty_lo = P2V_MIN (h->l1_dirty_lo, l1_index);
      h->l1_dirty_hi = P2V_MAX (h->l1_dirty_hi, l1_index + 1);
    }
    *slot = s;
    return 0;
  }

  s = &h->l2_cache[h->l2_last];
  if (s->host != offset) {
    s = NULL;
    for (unsigned i = 0; i < h->l2_cache_n; i++)
      if (h->l2_cache[i].host == offset) {
        s = &h->l2_cache[i];
        h->l2_last = i;
        break;
      }
  }
  if (!s) {
    if (offset & (h->cluster_size - 1))
      return p2v_error ("L2 table offset 0x%" PRIx64 " of '%s' is not "
                        "cluster aligned", offset, h->path);
    if (offset >= qcow2_host_limit (h))
      return p2v_error ("L2 table offset 0x%" PRIx64 " of '%s' is past the "
                        "end of the file", offset, h->path);
    if (qcow2_l2_evict (h, &s) == -1
        || qcow2_host_pread (h, s->data, h->cluster_size, offset) == -1)
      return -1;
    s->host = offset;
  }
  s->lru = ++h->l2_clock;
  *slot = s;
  return 0;
}

int
qcow2_l2_flush (struct qcow2 *h)
{
  int r = 0;

  for (unsigned i = 0; h->l2_cache && i < h->l2_cache_n; i++)
    if (h->l2_cache[i].host && qcow2_l2_writeback (h, &h->l2_cache[i]) == -1)
      r = -1;
  return r;
}

/* Describes the guest range starting at offset (< size) up to the end
 * of its cluster (or, with extended L2 entries, of its run of alike
 * subclusters; or, when the L2 table is unallocated, of the range the
 * table would map).  Every pointer is checked before it is returned. */
int
qcow2_get_piece (struct qcow2 *h, uint64_t offset, struct qcow2_piece *p)
{
  unsigned span_bits = h->cluster_bits + h->l2_bits;
  uint64_t in_cluster = offset & (h->cluster_size - 1);
  uint64_t l2_index, l2e, host;
  struct qcow2_l2_slot *s;
  const uint8_t *e;

  memset (p, 0, sizeof *p);
  if (qcow2_l2_get (h, offset >> span_bits, false, &s) == -1)
    return -1;
  if (!s) {
    p->kind = QCOW2_ZERO;
    p->len = (UINT64_C (1) << span_bits)
      - (offset & ((UINT64_C (1) << span_bits) - 1));
    return 0;
  }

  l2_index = (offset >> h->cluster_bits) & ((UINT64_C (1) << h->l2_bits) - 1);
  e = s->data + l2_index * h->l2_entry_size;
  l2e = qcow2_get_be64 (e);
  p->len = h->cluster_size - in_cluster;

  if (l2e & QCOW2_OFLAG_COMPRESSED) {
    uint64_t coffset, csize, limit = qcow2_host_limit (h);

    qcow2_compressed_range (h, l2e, &coffset, &csize);
    /* The last sector may be cut short by the end of the file. */
    if (coffset >= limit || coffset + csize > ROUND_UP (limit, 512))
      return p2v_error ("compressed cluster for guest offset %" PRIu64
                        " of '%s' (host offset 0x%" PRIx64 ", %" PRIu64
                        " bytes) is past the end of the file",
                        offset, h->path, coffset, csize);
    p->kind = QCOW2_COMPRESSED;
    p->l2e = l2e;
    return 0;
  }

  host = l2e & QCOW2_L2E_OFFSET_MASK;
  p->copied = (l2e & QCOW2_OFLAG_COPIED) != 0;
  if (!h->extended_l2) {
    if (l2e & QCOW2_OFLAG_ZERO) {
      if (h->version < 3)
        return p2v_error ("'%s' has a zero cluster at guest offset %" PRIu64
                          ", which version 2 images cannot have",
                          h->path, offset);
      p->kind = QCOW2_ZERO;
      return 0;
    }
    if (host == 0) {
      p->kind = QCOW2_ZERO;
      return 0;
    }
  }
  else {
    uint64_t bitmap = qcow2_get_be64 (e + 8);
    uint32_t alloc = bitmap & 0xffffffff, zero = bitmap >> 32;
    unsigned sc = in_cluster >> h->subcluster_bits, end = sc + 1;
    bool is_data = (alloc >> sc) & 1;

    if (alloc & zero)
      return p2v_error ("'%s' has subclusters both allocated and zero at "
                        "guest offset %" PRIu64, h->path, offset);
    if (alloc && host == 0)
      return p2v_error ("'%s' has allocated subclusters without a host "
                        "cluster at guest offset %" PRIu64, h->path, offset);
    while (end < 32 && ((alloc >> end) & 1) == is_data)
      end++;
    p->len = ((uint64_t) end << h->subcluster_bits) - in_cluster;
    if (!is_data) {
      p->kind = QCOW2_ZERO;
      return 0;
    }
  }

  if (host & (h->cluster_size - 1))
    return p2v_error ("data cluster for guest offset %" PRIu64 " of '%s' "
                      "(host offset 0x%" PRIx64 ") is not cluster aligned",
                      offset, h->path, host);
  if (host >= qcow2_host_limit (h))
    return p2v_error ("data cluster for guest offset %" PRIu64 " of '%s' "
                      "(host offset 0x%" PRIx64 ") is past the end of the file",
                      offset, h->path, host);
  p->kind = QCOW2_DATA;
  p->host = host + in_cluster;
  return 0;
}

/* Extends a QCOW2_DATA piece at offset over the following pieces whose
 * host data is contiguous with it (and, if need_copied, not shared), up
 * to max bytes: big sequential reads and writes become one syscall. */
int
qcow2_data_run (struct qcow2 *h, const struct qcow2_piece *p,
                uint64_t offset, uint64_t max, bool need_copied,
                uint64_t *len)
{
  uint64_t n = P2V_MIN (p->len, max);

  while (n < max) {
    struct qcow2_piece q;

    if (qcow2_get_piece (h, offset + n, &q) == -1)
      return -1;
    if (q.kind != QCOW2_DATA || q.host != p->host + n
        || (need_copied && !q.copied))
      break;
    n += P2V_MIN (q.len, max - n);
  }
  *len = n;
  return 0;
}

int
qcow2_pread (void *handle, void *buf, size_t count, uint64_t offset)
{
  struct qcow2 *h = handle;
  uint8_t *b = buf;

  if (offset > h->size || count > h->size - offset)
    return p2v_error ("cannot read '%s': range %" PRIu64 "+%zu is beyond "
                      "the end of the image (%" PRIu64 " bytes)",
                      h->path, offset, count, h->size);

  while (count > 0) {
    struct qcow2_piece p;
    uint64_t n;

    if (qcow2_get_piece (h, offset, &p) == -1)
      return -1;
    n = P2V_MIN (p.len, count);
    switch (p.kind) {
    case QCOW2_ZERO:
      memset (b, 0, n);
      break;
    case QCOW2_DATA:
      if (qcow2_data_run (h, &p, offset, count, false, &n) == -1
          || qcow2_host_pread (h, b, n, p.host) == -1)
        return -1;
      break;
    case QCOW2_COMPRESSED:
      if (qcow2_decompress_cluster (h, p.l2e, offset) == -1)
        return -1;
      memcpy (b, h->dbuf + (offset & (h->cluster_size - 1)), n);
      break;
    }
    b += n;
    offset += n;
    count -= n;
  }
  return 0;
}

int
qcow2_block_status (void *handle, uint64_t offset, uint64_t count,
                    uint64_t *pnum, unsigned *flags)
{
  struct qcow2 *h = handle;
  struct qcow2_piece p;
  uint64_t n, data_max;
  bool zero;

  if (count == 0 || offset >= h->size || count > h->size - offset)
    return p2v_error ("cannot get block status of '%s': range %" PRIu64 "+%"
                      PRIu64 " is beyond the end of the image (%" PRIu64
                      " bytes)", h->path, offset, count, h->size);
  if (qcow2_get_piece (h, offset, &p) == -1)
    return -1;
  zero = p.kind == QCOW2_ZERO;
  n = P2V_MIN (p.len, count);

  /* Data runs stop at what half the L2 cache maps, so that the caller's
   * reads of the range still find its L2 tables cached.  Zero runs go
   * on: skipping unallocated L2 tables costs nothing. */
  data_max = (uint64_t) (h->l2_cache_n / 2)
    << (h->cluster_bits + h->l2_bits);
  while (n < count && (zero || n < data_max)) {
    if (qcow2_get_piece (h, offset + n, &p) == -1)
      return -1;
    if ((p.kind == QCOW2_ZERO) != zero)
      break;
    n += P2V_MIN (p.len, count - n);
  }
  *pnum = n;
  *flags = zero ? P2V_STATUS_ZERO : P2V_STATUS_DATA;
  return 0;
}

/* qemu sets the autoclear bits only while it keeps the matching data
 * (e.g. dirty bitmaps) in step with the disk; data we write in place
 * would go stale, so the bits must be cleared before the first write. */
static int
qcow2_clear_autoclear (struct qcow2 *h)
{
  uint8_t zero[8] = { 0 };

  if (h->autoclear_cleared || h->autoclear == 0)
    return 0;
  if (qcow2_host_pwrite (h, zero, sizeof zero, QCOW2_HDR_AUTOCLEAR) == -1)
    return -1;
  h->autoclear_cleared = true;
  return 0;
}

/* Writes to an existing image only where no metadata has to change:
 * allocated, unshared clusters are overwritten; zeros over clusters
 * that already read as zeros are skipped. */
int
qcow2_inplace_pwrite (struct qcow2 *h, const void *buf, size_t count,
                      uint64_t offset)
{
  const uint8_t *b = buf;

  if (count > 0 && qcow2_clear_autoclear (h) == -1)
    return -1;
  while (count > 0) {
    struct qcow2_piece p;
    uint64_t n;

    if (qcow2_get_piece (h, offset, &p) == -1)
      return -1;
    n = P2V_MIN (p.len, count);
    switch (p.kind) {
    case QCOW2_DATA:
      if (!p.copied)
        return p2v_error ("cannot write to '%s' at guest offset %" PRIu64
                          ": the cluster is shared with a snapshot, which "
                          "is not supported", h->path, offset);
      if (qcow2_data_run (h, &p, offset, count, true, &n) == -1
          || qcow2_host_pwrite (h, b, n, p.host) == -1)
        return -1;
      break;
    case QCOW2_ZERO:
      if (!buffer_is_zero (b, n))
        return p2v_error ("cannot write to '%s' at guest offset %" PRIu64
                          ": allocating new clusters in an existing qcow2 "
                          "image is not supported", h->path, offset);
      break;
    case QCOW2_COMPRESSED:
      return p2v_error ("cannot write to '%s' at guest offset %" PRIu64
                        ": rewriting compressed clusters of an existing "
                        "qcow2 image is not supported", h->path, offset);
    }
    b += n;
    offset += n;
    count -= n;
  }
  return 0;
}

int
qcow2_inplace_zero (struct qcow2 *h, uint64_t count, uint64_t offset)
{
  while (count > 0) {
    struct qcow2_piece p;
    uint64_t n;

    if (qcow2_get_piece (h, offset, &p) == -1)
      return -1;
    n = P2V_MIN (p.len, count);
    if (p.kind == QCOW2_ZERO) {
      offset += n;
      count -= n;
      continue;
    }
    /* A piece is at most one cluster unless it is plain data. */
    n = P2V_MIN (n, (uint64_t) ZERO_BLOCK_SIZE);
    if (qcow2_inplace_pwrite (h, zero_block (), n, offset) == -1)
      return -1;
    offset += n;
    count -= n;
  }
  return 0;
}
