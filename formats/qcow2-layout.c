/* qcow2-layout.c: a qcow2 v3 writer with a layout fixed up front (see
 * qcow2-layout.h).  File order: header, L1 table, refcount table,
 * refcount blocks, L2 tables, then the data clusters in guest order.
 * Every cluster of the file has refcount 1 and nothing is ever freed, so
 * `qemu-img check` finds neither leaks nor errors. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "format.h"
#include "qcow2.h"
#include "qcow2-layout.h"

#define LAYOUT_CLUSTER_BITS 16
#define LAYOUT_CLUSTER_SIZE (1u << LAYOUT_CLUSTER_BITS)
#define LAYOUT_L2_BITS (LAYOUT_CLUSTER_BITS - 3)
#define LAYOUT_RB_ENTRIES (LAYOUT_CLUSTER_SIZE / 2)     /* 16-bit refcounts */

struct layout_run {
  uint64_t first, count;        /* guest clusters */
  uint64_t rank;                /* allocated clusters before this run */
};

struct qcow2_layout {
  uint64_t size;
  struct layout_run *runs;
  size_t nruns;
  uint64_t ndata;
  uint64_t l1_entries, l1_clusters, rt_clusters, rb_clusters, nl2;
  uint64_t l1_off, rt_off, rb_off, l2_off, data_off, total;
};

struct layout_image {
  struct qcow2_layout *l;
  struct qcow2_layout_sink sink;
  uint64_t pos;                 /* sequential sink: bytes sent so far */
  size_t cursor;                /* run of the last lookup */
  bool failed;
};

static void
add_clusters (struct qcow2_layout *l, size_t *cap, uint64_t first,
              uint64_t last)
{
  struct layout_run *r = l->nruns ? &l->runs[l->nruns - 1] : NULL;

  if (r && first <= r->first + r->count) {
    if (last >= r->first + r->count)
      r->count = last - r->first + 1;
    return;
  }
  if (l->nruns == *cap) {
    *cap = *cap ? 2 * *cap : 64;
    l->runs = xrealloc (l->runs, *cap * sizeof *l->runs);
  }
  l->runs[l->nruns++] = (struct layout_run) { first, last - first + 1, 0 };
}

struct qcow2_layout *
qcow2_layout_new (uint64_t size, const struct p2v_extent *ext, size_t n)
{
  struct qcow2_layout *l;
  uint64_t cs = LAYOUT_CLUSTER_SIZE, meta, total_clusters, last_l1 = UINT64_MAX;
  size_t cap = 0;

  if (size == 0 || size > (UINT64_C (1) << 50))
    return p2v_error_null ("cannot lay out a qcow2 of %" PRIu64 " bytes", size);
  l = xcalloc (1, sizeof *l);
  l->size = size;
  for (size_t i = 0; i < n; i++) {
    if (ext[i].len == 0)
      continue;
    if (ext[i].start >= size || ext[i].len > size - ext[i].start
        || (l->nruns && ext[i].start >> LAYOUT_CLUSTER_BITS
            < l->runs[l->nruns - 1].first)) {
      qcow2_layout_free (l);
      return p2v_error_null ("bad extent list for a qcow2 layout "
                             "(extent %zu at %" PRIu64 ")", i, ext[i].start);
    }
    add_clusters (l, &cap, ext[i].start >> LAYOUT_CLUSTER_BITS,
                  (ext[i].start + ext[i].len - 1) >> LAYOUT_CLUSTER_BITS);
  }
  for (size_t i = 0; i < l->nruns; i++) {
    struct layout_run *r = &l->runs[i];
    r->rank = l->ndata;
    l->ndata += r->count;
    for (uint64_t i1 = r->first >> LAYOUT_L2_BITS;
         i1 <= (r->first + r->count - 1) >> LAYOUT_L2_BITS; i1++)
      if (i1 != last_l1) {
        l->nl2++;
        last_l1 = i1;
      }
  }

  l->l1_entries = DIV_ROUND_UP (DIV_ROUND_UP (size, cs),
                                UINT64_C (1) << LAYOUT_L2_BITS);
  l->l1_clusters = P2V_MAX (DIV_ROUND_UP (l->l1_entries * 8, cs), 1);
  /* The refcount blocks must cover themselves: iterate to a fixed point. */
  meta = 1 + l->l1_clusters + l->nl2;
  l->rb_clusters = l->rt_clusters = 1;
  for (;;) {
    uint64_t rb, rt;
    total_clusters = meta + l->ndata + l->rt_clusters + l->rb_clusters;
    rb = DIV_ROUND_UP (total_clusters, LAYOUT_RB_ENTRIES);
    rt = P2V_MAX (DIV_ROUND_UP (rb * 8, cs), 1);
    if (rb == l->rb_clusters && rt == l->rt_clusters)
      break;
    l->rb_clusters = rb;
    l->rt_clusters = rt;
  }
  l->l1_off = cs;
  l->rt_off = l->l1_off + l->l1_clusters * cs;
  l->rb_off = l->rt_off + l->rt_clusters * cs;
  l->l2_off = l->rb_off + l->rb_clusters * cs;
  l->data_off = l->l2_off + l->nl2 * cs;
  l->total = l->data_off + l->ndata * cs;
  return l;
}

void
qcow2_layout_free (struct qcow2_layout *l)
{
  if (!l)
    return;
  free (l->runs);
  free (l);
}

uint64_t
qcow2_layout_file_size (const struct qcow2_layout *l)
{
  return l->total;
}

uint64_t
qcow2_layout_data_clusters (const struct qcow2_layout *l)
{
  return l->ndata;
}

/* The allocated rank of guest cluster c, or -1 if it is not allocated.
 * Lookups mostly move forward, so try the cursor before searching. */
static int64_t
layout_rank (const struct qcow2_layout *l, size_t *cursor, uint64_t c)
{
  size_t lo = 0, hi = l->nruns;

  for (size_t i = *cursor; i < l->nruns && i < *cursor + 2; i++) {
    if (c < l->runs[i].first)
      return -1;
    if (c < l->runs[i].first + l->runs[i].count) {
      *cursor = i;
      return l->runs[i].rank + (c - l->runs[i].first);
    }
  }
  while (lo < hi) {             /* first run with first > c */
    size_t mid = lo + (hi - lo) / 2;
    if (l->runs[mid].first <= c)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo == 0)
    return -1;
  lo--;
  *cursor = lo;
  if (c >= l->runs[lo].first + l->runs[lo].count)
    return -1;
  return l->runs[lo].rank + (c - l->runs[lo].first);
}

static int
sink_write (struct layout_image *li, const void *buf, size_t len,
            uint64_t offset)
{
  if (li->sink.sequential) {
    if (offset < li->pos)
      return p2v_error ("qcow2 stream: write at %" PRIu64 " after %" PRIu64,
                        offset, li->pos);
    while (li->pos < offset) {
      size_t z = P2V_MIN ((uint64_t) ZERO_BLOCK_SIZE, offset - li->pos);
      if (li->sink.write (li->sink.opaque, zero_block (), z, li->pos) == -1)
        return -1;
      li->pos += z;
    }
  }
  if (li->sink.write (li->sink.opaque, buf, len, offset) == -1)
    return -1;
  if (li->sink.sequential)
    li->pos = offset + len;
  return 0;
}

static int
emit_metadata (struct layout_image *li)
{
  struct qcow2_layout *l = li->l;
  uint64_t cs = LAYOUT_CLUSTER_SIZE, per_l2 = UINT64_C (1) << LAYOUT_L2_BITS;
  uint64_t total_clusters = l->total / cs, l2_index = 0, last_l1 = UINT64_MAX;
  uint8_t *buf = xmalloc (cs);
  uint64_t *l1 = xcalloc (l->l1_clusters * cs / 8, 8);
  size_t r = 0;
  int ret = -1;

  /* Header: v3, no extensions, 16-bit refcounts. */
  memset (buf, 0, cs);
  qcow2_put_be32 (buf + QCOW2_HDR_MAGIC, QCOW2_MAGIC);
  qcow2_put_be32 (buf + QCOW2_HDR_VERSION, 3);
  qcow2_put_be32 (buf + QCOW2_HDR_CLUSTER_BITS, LAYOUT_CLUSTER_BITS);
  qcow2_put_be64 (buf + QCOW2_HDR_SIZE, l->size);
  qcow2_put_be32 (buf + QCOW2_HDR_L1_SIZE, l->l1_entries);
  qcow2_put_be64 (buf + QCOW2_HDR_L1_OFFSET, l->l1_off);
  qcow2_put_be64 (buf + QCOW2_HDR_RT_OFFSET, l->rt_off);
  qcow2_put_be32 (buf + QCOW2_HDR_RT_CLUSTERS, l->rt_clusters);
  qcow2_put_be32 (buf + QCOW2_HDR_REFCOUNT_ORDER, 4);
  qcow2_put_be32 (buf + QCOW2_HDR_HEADER_LENGTH, QCOW2_V3_HEADER_LEN);
  if (sink_write (li, buf, cs, 0) == -1)
    goto out;

  /* L1: the used L2 tables, in order. */
  for (size_t i = 0; i < l->nruns; i++)
    for (uint64_t i1 = l->runs[i].first / per_l2;
         i1 <= (l->runs[i].first + l->runs[i].count - 1) / per_l2; i1++)
      if (i1 != last_l1) {
        l1[i1] = (l->l2_off + l2_index++ * cs) | QCOW2_OFLAG_COPIED;
        last_l1 = i1;
      }
  for (uint64_t i = 0; i < l->l1_clusters * cs / 8; i++)
    qcow2_put_be64 (&l1[i], l1[i]);
  if (sink_write (li, l1, l->l1_clusters * cs, l->l1_off) == -1)
    goto out;

  /* Refcount table, then blocks: every cluster of the file is used once. */
  for (uint64_t c = 0; c < l->rt_clusters; c++) {
    memset (buf, 0, cs);
    for (uint64_t j = 0; j < cs / 8; j++) {
      uint64_t rb = c * (cs / 8) + j;
      if (rb < l->rb_clusters)
        qcow2_put_be64 (buf + j * 8, l->rb_off + rb * cs);
    }
    if (sink_write (li, buf, cs, l->rt_off + c * cs) == -1)
      goto out;
  }
  for (uint64_t b = 0; b < l->rb_clusters; b++) {
    memset (buf, 0, cs);
    for (uint64_t j = 0; j < LAYOUT_RB_ENTRIES; j++)
      if (b * LAYOUT_RB_ENTRIES + j < total_clusters)
        qcow2_put_be16 (buf + j * 2, 1);
    if (sink_write (li, buf, cs, l->rb_off + b * cs) == -1)
      goto out;
  }

  /* L2 tables, walking the runs once. */
  l2_index = 0;
  for (uint64_t i1 = 0; i1 < l->l1_entries; i1++) {
    uint64_t lo = i1 * per_l2, hi = lo + per_l2;
    bool any = false;

    memset (buf, 0, cs);
    while (r < l->nruns && l->runs[r].first + l->runs[r].count <= lo)
      r++;
    for (size_t k = r; k < l->nruns && l->runs[k].first < hi; k++) {
      uint64_t a = P2V_MAX (l->runs[k].first, lo);
      uint64_t z = P2V_MIN (l->runs[k].first + l->runs[k].count, hi);
      for (uint64_t c = a; c < z; c++) {
        uint64_t host = l->data_off
          + (l->runs[k].rank + (c - l->runs[k].first)) * cs;
        qcow2_put_be64 (buf + (c - lo) * 8, host | QCOW2_OFLAG_COPIED);
        any = true;
      }
    }
    if (!any)
      continue;
    if (sink_write (li, buf, cs, l->l2_off + l2_index++ * cs) == -1)
      goto out;
  }
  ret = 0;
 out:
  free (buf);
  free (l1);
  return ret;
}

static int
layout_pwrite (void *h, const void *buf, size_t count, uint64_t offset)
{
  struct layout_image *li = h;
  const uint8_t *p = buf;

  if (li->failed)
    return p2v_error ("qcow2 stream: an earlier write failed");
  while (count > 0) {
    uint64_t c = offset >> LAYOUT_CLUSTER_BITS;
    uint64_t within = offset & (LAYOUT_CLUSTER_SIZE - 1);
    size_t n = P2V_MIN (count, LAYOUT_CLUSTER_SIZE - within);
    int64_t rank = layout_rank (li->l, &li->cursor, c);

    if (rank < 0) {
      if (!buffer_is_zero (p, n)) {
        li->failed = true;
        return p2v_error ("qcow2 layout: data at %" PRIu64
                          " outside the allocated clusters", offset);
      }
    }
    else if (sink_write (li, p, n, li->l->data_off
                         + (uint64_t) rank * LAYOUT_CLUSTER_SIZE + within) == -1) {
      li->failed = true;
      return -1;
    }
    p += n;
    offset += n;
    count -= n;
  }
  return 0;
}

static int
layout_pread (void *h, void *buf, size_t count, uint64_t offset)
{
  (void) h; (void) buf; (void) count; (void) offset;
  errno = ENOTSUP;
  return p2v_error ("a qcow2 layout writer cannot be read");
}

static int
layout_zero (void *h, uint64_t count, uint64_t offset)
{
  (void) h; (void) count; (void) offset;
  return 0;                     /* allocated clusters are zero until written */
}

static uint64_t
layout_get_size (void *h)
{
  return ((struct layout_image *) h)->l->size;
}

static uint32_t
layout_granularity (void *h)
{
  (void) h;
  return LAYOUT_CLUSTER_SIZE;
}

static bool
layout_has_zero_init (void *h)
{
  (void) h;
  return true;
}

static int
layout_flush (void *h)
{
  (void) h;
  return 0;
}

static int
layout_close (void *h)
{
  struct layout_image *li = h;
  int r = li->failed ? -1 : 0;

  if (r == 0 && li->sink.sequential && li->pos < li->l->total) {
    /* Pad: the last data clusters may have been zero (or short). */
    uint64_t end = li->l->total;
    while (r == 0 && li->pos < end) {
      size_t z = P2V_MIN ((uint64_t) ZERO_BLOCK_SIZE, end - li->pos);
      r = li->sink.write (li->sink.opaque, zero_block (), z, li->pos);
      li->pos += z;
    }
  }
  free (li);
  return r;
}

static const struct p2v_format p2v_format_qcow2_layout = {
  .name = "qcow2-layout",
  .description = "qcow2 written in a layout fixed up front (capture)",
  .get_size = layout_get_size,
  .granularity = layout_granularity,
  .has_zero_init = layout_has_zero_init,
  .pread = layout_pread,
  .pwrite = layout_pwrite,
  .zero = layout_zero,
  .flush = layout_flush,
  .close = layout_close,
};

struct p2v_image *
qcow2_layout_image (struct qcow2_layout *l,
                    const struct qcow2_layout_sink *sink, const char *name)
{
  struct layout_image *li = xcalloc (1, sizeof *li);
  struct p2v_image *img;

  li->l = l;
  li->sink = *sink;
  if (emit_metadata (li) == -1) {
    free (li);
    return NULL;
  }
  img = xcalloc (1, sizeof *img);
  img->drv = &p2v_format_qcow2_layout;
  img->h = li;
  img->path = xstrdup (name);
  img->size = l->size;
  return img;
}
