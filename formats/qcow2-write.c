/* qcow2-write.c: writes to images we created: plain data, zeroing and
 * compressed clusters, with host space appended at the allocation
 * pointer (see qcow2-refcount.c). */
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "format.h"
#include "qcow2.h"

static uint64_t
qcow2_l1_index (const struct qcow2 *h, uint64_t offset)
{
  return offset >> (h->cluster_bits + h->l2_bits);
}

static uint8_t *
qcow2_l2_entry (const struct qcow2 *h, struct qcow2_l2_slot *s,
                uint64_t offset)
{
  uint64_t i = (offset >> h->cluster_bits)
    & ((UINT64_C (1) << h->l2_bits) - 1);
  return s->data + i * h->l2_entry_size;
}

/* Drops the references an L2 entry holds on host clusters. */
static int
qcow2_free_entry (struct qcow2 *h, uint64_t l2e)
{
  uint64_t host = l2e & QCOW2_L2E_OFFSET_MASK, csize;

  if (l2e & QCOW2_OFLAG_COMPRESSED) {
    qcow2_compressed_range (h, l2e, &host, &csize);
    for (uint64_t c = host >> h->cluster_bits;
         c <= (host + csize - 1) >> h->cluster_bits; c++)
      if (qcow2_refcount_add (h, c << h->cluster_bits, -1) == -1)
        return -1;
    return 0;
  }

  if (host == 0)
    return 0;
  if (qcow2_refcount_add (h, host, -1) == -1)
    return -1;
  /* The cluster is free now (data clusters are never shared) and will
   * never be reused: give the space back if the file system can (if it
   * cannot, the space is merely wasted). */
  (void) fallocate (h->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                    host, h->cluster_size);
  return 0;
}

/* Writes [offset, offset + count), which lies within one L2 table and
 * is unallocated there.  Clusters whose part of buf is all zeros stay
 * unallocated; runs of others get consecutive host clusters and one
 * pwrite. */
static int
qcow2_write_unallocated (struct qcow2 *h, const uint8_t *buf,
                         uint64_t count, uint64_t offset)
{
  uint64_t cs = h->cluster_size;
  struct qcow2_l2_slot *s = NULL;

  while (count > 0) {
    uint64_t in_cluster = offset & (cs - 1);
    uint64_t bytes = P2V_MIN (count, cs - in_cluster), host, got, nc = 1;

    if (buffer_is_zero (buf, bytes)) {
      buf += bytes;
      offset += bytes;
      count -= bytes;
      continue;
    }
    while (bytes < count) {
      uint64_t next = P2V_MIN (count - bytes, cs);
      if (buffer_is_zero (buf + bytes, next))
        break;
      bytes += next;
      nc++;
    }

    /* The L2 table first, so that it is allocated before its data; the
     * slot stays valid as nothing below touches the L2 cache. */
    if (!s && qcow2_l2_get (h, qcow2_l1_index (h, offset), true, &s) == -1)
      return -1;
    if (qcow2_alloc_clusters (h, nc, 1, &host, &got) == -1)
      return -1;
    if (got < nc)
      bytes = got * cs - in_cluster;
    if (qcow2_host_pwrite (h, buf, bytes, host + in_cluster) == -1)
      return -1;
    for (uint64_t i = 0; i < got; i++) {
      uint8_t *e = qcow2_l2_entry (h, s, offset + i * cs);
      if (qcow2_get_be64 (e) != 0)
        return p2v_error ("internal error: L2 entry of '%s' changed under "
                          "a write", h->path);
      qcow2_put_be64 (e, (host + i * cs) | QCOW2_OFLAG_COPIED);
    }
    s->dirty = true;
    buf += bytes;
    offset += bytes;
    count -= bytes;
  }
  return 0;
}

/* Writes within one compressed cluster: decompress, merge, and store
 * the result as a plain cluster (or as nothing, if it is all zeros). */
static int
qcow2_rewrite_compressed (struct qcow2 *h, const uint8_t *buf, uint64_t n,
                          uint64_t offset, uint64_t l2e)
{
  uint64_t cs = h->cluster_size;
  uint64_t in_cluster = offset & (cs - 1);
  uint64_t start = offset - in_cluster;
  uint64_t valid = P2V_MIN (cs, h->size - start), host, got;
  struct qcow2_l2_slot *s;
  uint64_t new_l2e = 0;

  if (qcow2_decompress_cluster (h, l2e, offset) == -1)
    return -1;
  memcpy (h->dbuf + in_cluster, buf, n);
  h->dbuf_l2e = 0;              /* no longer what l2e decompresses to */

  if (qcow2_l2_get (h, qcow2_l1_index (h, offset), false, &s) == -1)
    return -1;
  if (!s)
    return p2v_error ("internal error: L2 table of '%s' vanished", h->path);
  if (!buffer_is_zero (h->dbuf, valid)) {
    if (qcow2_alloc_clusters (h, 1, 1, &host, &got) == -1
        || qcow2_host_pwrite (h, h->dbuf, valid, host) == -1)
      return -1;
    new_l2e = host | QCOW2_OFLAG_COPIED;
  }
  qcow2_put_be64 (qcow2_l2_entry (h, s, offset), new_l2e);
  s->dirty = true;
  return qcow2_free_entry (h, l2e);
}

int
qcow2_writer_pwrite (struct qcow2 *h, const void *buf, size_t count,
                     uint64_t offset)
{
  unsigned span_bits = h->cluster_bits + h->l2_bits;
  const uint8_t *b = buf;

  while (count > 0) {
    struct qcow2_piece p;
    uint64_t n, span_end;

    if (qcow2_get_piece (h, offset, &p) == -1)
      return -1;
    n = P2V_MIN (p.len, count);
    switch (p.kind) {
    case QCOW2_DATA:
      /* Our data clusters are never shared: overwrite in place. */
      if (qcow2_data_run (h, &p, offset, count, false, &n) == -1
          || qcow2_host_pwrite (h, b, n, p.host) == -1)
        return -1;
      break;

    case QCOW2_ZERO:
      /* Gather the unallocated clusters that follow in the same L2
       * table, so that their data goes out in one pwrite. */
      span_end = ((offset >> span_bits) + 1) << span_bits;
      while (n < count && offset + n < span_end) {
        struct qcow2_piece q;
        if (qcow2_get_piece (h, offset + n, &q) == -1)
          return -1;
        if (q.kind != QCOW2_ZERO)
          break;
        n += P2V_MIN (q.len, count - n);
      }
      n = P2V_MIN (n, span_end - offset);
      if (qcow2_write_unallocated (h, b, n, offset) == -1)
        return -1;
      break;

    case QCOW2_COMPRESSED:
      if (qcow2_rewrite_compressed (h, b, n, offset, p.l2e) == -1)
        return -1;
      break;
    }
    b += n;
    offset += n;
    count -= n;
  }
  return 0;
}

int
qcow2_writer_zero (struct qcow2 *h, uint64_t count, uint64_t offset)
{
  uint64_t cs = h->cluster_size;
  int r = -1;

  while (count > 0) {
    struct qcow2_piece p;
    uint64_t n, in_cluster, valid;

    if (qcow2_get_piece (h, offset, &p) == -1)
      goto out;
    n = P2V_MIN (p.len, count);
    in_cluster = offset & (cs - 1);
    valid = P2V_MIN (cs, h->size - (offset - in_cluster));

    if (p.kind == QCOW2_ZERO)
      ;                         /* nothing to do */
    else if (in_cluster == 0 && n == valid) {
      /* A whole cluster: unallocate it. */
      struct qcow2_l2_slot *s;
      uint8_t *e;
      uint64_t l2e;

      if (qcow2_l2_get (h, qcow2_l1_index (h, offset), false, &s) == -1)
        goto out;
      e = qcow2_l2_entry (h, s, offset);
      l2e = qcow2_get_be64 (e);
      qcow2_put_be64 (e, 0);
      s->dirty = true;
      if (qcow2_free_entry (h, l2e) == -1)
        goto out;
    }
    else {
      /* Part of a cluster (so n < cs <= ZERO_BLOCK_SIZE): write zeros. */
      if (qcow2_writer_pwrite (h, zero_block (), n, offset) == -1)
        goto out;
    }
    offset += n;
    count -= n;
  }
  r = 0;
 out:
  return r;
}

/* Finds room for clen bytes of compressed data: packed right after the
 * previous compressed cluster, spilling into the next host cluster only
 * if that is the next one allocated (so it is contiguous), else at the
 * start of a fresh cluster. */
static int
qcow2_alloc_compressed (struct qcow2 *h, uint64_t clen, uint64_t *start)
{
  uint64_t cs = h->cluster_size, host, got;

  if (h->comp_ptr != 0) {
    uint64_t cluster_end = ROUND_UP (h->comp_ptr, cs);

    if (clen <= cluster_end - h->comp_ptr) {
      *start = h->comp_ptr;
      return 0;
    }
    if (qcow2_alloc_clusters (h, 1, 0, &host, &got) == -1)
      return -1;
    *start = host == cluster_end ? h->comp_ptr : host;
    return 0;
  }
  if (qcow2_alloc_clusters (h, 1, 0, &host, &got) == -1)
    return -1;
  *start = host;
  return 0;
}

int
qcow2_pwrite_compressed (void *handle, const void *cdata, size_t clen,
                         uint64_t offset, size_t len)
{
  struct qcow2 *h = handle;
  uint64_t cs = h->cluster_size, start, end, l2e, old, nb_sectors;
  struct qcow2_l2_slot *s;
  uint8_t *e;

  if (h->mode != QCOW2_MODE_WRITER)
    return p2v_error ("cannot write compressed data to '%s': only new "
                      "images can be written compressed", h->path);
  if (offset & (cs - 1) || offset >= h->size
      || len != P2V_MIN (cs, h->size - offset))
    return p2v_error ("cannot write compressed data to '%s': %zu bytes at "
                      "guest offset %" PRIu64 " are not one whole cluster",
                      h->path, len, offset);
  if (clen == 0 || clen > cs)
    return p2v_error ("cannot write compressed data to '%s': invalid "
                      "compressed length %zu", h->path, clen);

  if (qcow2_l2_get (h, qcow2_l1_index (h, offset), true, &s) == -1)
    return -1;
  e = qcow2_l2_entry (h, s, offset);
  old = qcow2_get_be64 (e);

  if (qcow2_alloc_compressed (h, clen, &start) == -1)
    return -1;
  end = start + clen;
  if (end > h->coffset_mask)
    return p2v_error ("cannot write compressed data to '%s': host offset "
                      "0x%" PRIx64 " is beyond what a compressed cluster "
                      "can address", h->path, start);
  if (qcow2_host_pwrite (h, cdata, clen, start) == -1)
    return -1;

  /* One reference on every host cluster the sectors of the data touch,
   * as qemu counts them. */
  for (uint64_t c = start >> h->cluster_bits;
       c <= (ROUND_UP (end, 512) - 1) >> h->cluster_bits; c++)
    if (qcow2_refcount_add (h, c << h->cluster_bits, 1) == -1)
      return -1;
  h->comp_ptr = end;

  nb_sectors = ((end - 1) >> 9) - (start >> 9);
  l2e = QCOW2_OFLAG_COMPRESSED | (nb_sectors << h->csize_shift) | start;
  qcow2_put_be64 (e, l2e);
  s->dirty = true;
  return qcow2_free_entry (h, old);
}
