/* qcow2-refcount.c: host cluster allocation and refcounts for images we
 * create.
 *
 * Host space is only ever appended at h->alloc_ptr.  The refcount table
 * is sized at create time for the largest the file can reasonably get,
 * so it never moves.  Refcount blocks (16-bit entries, cluster_size / 2
 * per block) each cover a "region" of host clusters; when the pointer
 * enters a new region, the region's first cluster becomes its refcount
 * block (counting itself).  Only the block of the current region is kept
 * in memory: earlier regions are behind the pointer, so their refcounts
 * change only when a cluster is freed or a compressed cluster is added
 * to the tail of an older host cluster, both rare, and done directly on
 * disk. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "format.h"
#include "qcow2.h"

static void
qcow2_rt_mark_dirty (struct qcow2 *h, uint64_t index)
{
  if (h->rt_dirty_lo == h->rt_dirty_hi) {
    h->rt_dirty_lo = index;
    h->rt_dirty_hi = index + 1;
  }
  else {
    h->rt_dirty_lo = P2V_MIN (h->rt_dirty_lo, index);
    h->rt_dirty_hi = P2V_MAX (h->rt_dirty_hi, index + 1);
  }
}

/* Refcount table clusters needed to cover `want` clusters of other
 * data, the table itself and one refcount block per region. */
static uint64_t
qcow2_rt_clusters_for (const struct qcow2 *h, uint64_t want)
{
  uint64_t rtc = 1;

  for (;;) {
    uint64_t regions = DIV_ROUND_UP (want + rtc, h->rb_entries - 1);
    uint64_t need = DIV_ROUND_UP (regions * 8, h->cluster_size);

    if (need <= rtc)
      return rtc;
    rtc = need;
  }
}

/* Lays out a new image: the header and L1 table take the first
 * first_cluster clusters, the refcount table follows, then the refcount
 * blocks covering all that.  max_clusters is how many clusters of data
 * and L2 tables the image should be able to hold. */
int
qcow2_refcount_init (struct qcow2 *h, uint64_t first_cluster,
                     uint64_t max_clusters)
{
  uint64_t cs = h->cluster_size, E, rtc, init, k, end, cover;
  uint8_t *ones = NULL;
  int r = -1;

  E = h->rb_entries = cs / 2;
  /* Twice the need, for rewrites, compressed-cluster packing losses and
   * freed space; if that is beyond qemu's refcount table limit, settle
   * for a little slack. */
  rtc = qcow2_rt_clusters_for (h, first_cluster + 2 * max_clusters + 64);
  if (rtc * cs > QCOW2_MAX_REFTABLE_BYTES)
    rtc = qcow2_rt_clusters_for (h, first_cluster + max_clusters
                                 + max_clusters / 64 + 64);
  if (rtc * cs > QCOW2_MAX_REFTABLE_BYTES)
    return p2v_error ("cannot create '%s': virtual size %" PRIu64 " is too "
                      "large for cluster size %" PRIu64, h->path, h->size,
                      cs);

  h->rt_clusters = rtc;
  h->rt_offset = first_cluster * cs;
  h->rt_entries = rtc * cs / 8;
  /* Host offsets must stay below 2^56. */
  cover = QCOW2_MAX_HOST_OFFSET / (E * cs);
  if (h->rt_entries > cover)
    h->rt_entries = cover;
  h->rt = xcalloc (h->rt_entries, sizeof (uint64_t));

  /* The first k refcount blocks follow the refcount table and cover
   * everything up to and including themselves. */
  init = first_cluster + rtc;
  for (k = 1; DIV_ROUND_UP (init + k, E) > k; k++)
    ;
  end = init + k;
  for (uint64_t i = 0; i < k; i++) {
    h->rt[i] = (init + i) * cs;
    qcow2_rt_mark_dirty (h, i);
  }

  /* Regions before the last are full: every cluster has refcount 1. */
  if (k > 1) {
    ones = xmalloc (cs);
    for (uint64_t i = 0; i < E; i++)
      qcow2_put_be16 (ones + 2 * i, 1);
    for (uint64_t i = 0; i + 1 < k; i++)
      if (qcow2_host_pwrite (h, ones, cs, h->rt[i]) == -1)
        goto out;
  }

  h->rb = xcalloc (1, cs);
  h->rb_region = k - 1;
  for (uint64_t c = (k - 1) * E; c < end; c++)
    qcow2_put_be16 (h->rb + 2 * (c - (k - 1) * E), 1);
  h->rb_dirty = true;
  h->alloc_ptr = end * cs;
  r = 0;
 out:
  free (ones);
  return r;
}

void
qcow2_refcount_free (struct qcow2 *h)
{
  free (h->rt);
  free (h->rb);
  h->rt = NULL;
  h->rb = NULL;
}

static int
qcow2_rb_writeback (struct qcow2 *h)
{
  if (!h->rb_dirty)
    return 0;
  if (qcow2_host_pwrite (h, h->rb, h->cluster_size,
                         h->rt[h->rb_region]) == -1)
    return -1;
  h->rb_dirty = false;
  return 0;
}

/* Allocates up to n contiguous clusters at the allocation pointer, each
 * with the given refcount (0 for compressed data, whose users add their
 * own references).  Returns the first in *host and the number in *got,
 * which is less than n when the run reaches the next region: the caller
 * asks again for the rest, which starts after that region's block. */
int
qcow2_alloc_clusters (struct qcow2 *h, uint64_t n, uint16_t refcount,
                      uint64_t *host, uint64_t *got)
{
  uint64_t E = h->rb_entries;
  uint64_t idx = h->alloc_ptr >> h->cluster_bits;
  uint64_t region = idx / E;

  if (region != h->rb_region) {
    /* The pointer stops at every region boundary, so this is the first
     * cluster of the next region. */
    if (region != h->rb_region + 1 || idx % E != 0)
      return p2v_error ("internal error: allocation pointer of '%s' skipped "
                        "a refcount region", h->path);
    if (region >= h->rt_entries)
      return p2v_error ("cannot write to '%s': the image has outgrown the "
                        "refcount table reserved when it was created",
                        h->path);
    if (qcow2_rb_writeback (h) == -1)
      return -1;
    memset (h->rb, 0, h->cluster_size);
    h->rb_region = region;
    h->rt[region] = idx << h->cluster_bits;
    qcow2_rt_mark_dirty (h, region);
    qcow2_put_be16 (h->rb, 1);
    h->rb_dirty = true;
    idx++;
  }

  *got = P2V_MIN (n, (region + 1) * E - idx);
  for (uint64_t i = 0; i < *got; i++)
    qcow2_put_be16 (h->rb + 2 * (idx - region * E + i), refcount);
  if (refcount)
    h->rb_dirty = true;
  *host = idx << h->cluster_bits;
  h->alloc_ptr = (idx + *got) << h->cluster_bits;
  return 0;
}

/* Adds delta to the refcount of the host cluster containing
 * host_offset, which must have been allocated. */
int
qcow2_refcount_add (struct qcow2 *h, uint64_t host_offset, int delta)
{
  uint64_t E = h->rb_entries;
  uint64_t idx = host_offset >> h->cluster_bits;
  uint64_t region = idx / E, i = idx % E;
  uint8_t be[2], *p = be;
  int64_t v;

  if (host_offset >= h->alloc_ptr || region > h->rb_region
      || h->rt[region] == 0)
    return p2v_error ("internal error: refcount of unallocated host offset "
                      "0x%" PRIx64 " of '%s'", host_offset, h->path);
  if (region == h->rb_region)
    p = h->rb + 2 * i;
  else if (qcow2_host_pread (h, be, 2, h->rt[region] + 2 * i) == -1)
    return -1;

  v = (int64_t) qcow2_get_be16 (p) + delta;
  if (v < 0 || v > UINT16_MAX)
    return p2v_error ("cannot update the refcount of host offset 0x%" PRIx64
                      " of '%s': it would become %" PRId64, host_offset,
                      h->path, v);
  qcow2_put_be16 (p, v);

  if (region == h->rb_region)
    h->rb_dirty = true;
  else if (qcow2_host_pwrite (h, be, 2, h->rt[region] + 2 * i) == -1)
    return -1;
  return 0;
}

int
qcow2_refcount_flush (struct qcow2 *h)
{
  uint64_t buf[512];

  if (qcow2_rb_writeback (h) == -1)
    return -1;
  while (h->rt_dirty_lo < h->rt_dirty_hi) {
    uint64_t n = P2V_MIN (h->rt_dirty_hi - h->rt_dirty_lo, ARRAY_SIZE (buf));

    for (uint64_t i = 0; i < n; i++)
      buf[i] = htobe64 (h->rt[h->rt_dirty_lo + i]);
    if (qcow2_host_pwrite (h, buf, n * 8,
                           h->rt_offset + h->rt_dirty_lo * 8) == -1)
      return -1;
    h->rt_dirty_lo += n;
  }
  h->rt_dirty_lo = h->rt_dirty_hi = 0;
  return 0;
}
