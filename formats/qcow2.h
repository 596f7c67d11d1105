/* qcow2.h: private definitions shared by the qcow2 driver files.
 *
 * The driver has three modes:
 *  - read-only: any qcow2 v2/v3 image qemu makes (no backing file, no
 *    encryption, no external data file, zlib compression only);
 *  - in place: an existing image opened read-write, where writes may only
 *    overwrite clusters that are already allocated and not shared, so no
 *    metadata ever changes;
 *  - writer: an image we created, v3 with 16-bit refcounts, where host
 *    space is only ever appended at an allocation pointer.  That is what
 *    lets refcounts stay exact with only one refcount block in memory.
 */
#ifndef P2V_QCOW2_H
#define P2V_QCOW2_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <endian.h>

/* next_in is const: we never let zlib write to our input. */
#define ZLIB_CONST
#include <zlib.h>

#include "common.h"

#define QCOW2_MAGIC 0x514649fbU          /* "QFI\xfb" */
#define QCOW2_V2_HEADER_LEN 72
#define QCOW2_V3_HEADER_LEN 104
#define QCOW2_WRITE_HEADER_LEN 112      /* with compression_type 0 */

#define QCOW2_MIN_CLUSTER_BITS 9
#define QCOW2_MAX_CLUSTER_BITS 21       /* qemu's limit: 2 MiB */
#define QCOW2_DEFAULT_CLUSTER_SIZE 65536

/* qemu's implementation limits; images beyond them cannot be opened by
 * qemu, and refusing them bounds our memory use. */
#define QCOW2_MAX_L1_BYTES (32u << 20)
#define QCOW2_MAX_REFTABLE_BYTES (8u << 20)
/* L1/L2 layouts cannot address more than 2^61 bytes with 2 MiB
 * clusters; anything larger is nonsense (and risks overflow). */
#define QCOW2_MAX_VIRTUAL_SIZE (UINT64_C (1) << 61)
/* Host offsets in L1/L2 entries are limited to 56 bits. */
#define QCOW2_MAX_HOST_OFFSET (UINT64_C (1) << 56)

/* incompatible_features */
#define QCOW2_INCOMPAT_DIRTY     (UINT64_C (1) << 0)
#define QCOW2_INCOMPAT_CORRUPT   (UINT64_C (1) << 1)
#define QCOW2_INCOMPAT_DATA_FILE (UINT64_C (1) << 2)
#define QCOW2_INCOMPAT_COMPRESSION (UINT64_C (1) << 3)
#define QCOW2_INCOMPAT_EXTL2     (UINT64_C (1) << 4)
#define QCOW2_INCOMPAT_KNOWN     (UINT64_C (0x1f))

/* L1 and L2 entries */
#define QCOW2_OFLAG_COPIED       (UINT64_C (1) << 63)
#define QCOW2_OFLAG_COMPRESSED   (UINT64_C (1) << 62)
#define QCOW2_OFLAG_ZERO         (UINT64_C (1) << 0)
#define QCOW2_L1E_OFFSET_MASK    UINT64_C (0x00fffffffffffe00)
#define QCOW2_L2E_OFFSET_MASK    UINT64_C (0x00fffffffffffe00)

/* Header field offsets (all big endian). */
#define QCOW2_HDR_MAGIC          0
#define QCOW2_HDR_VERSION        4
#define QCOW2_HDR_BACKING_OFFSET 8
#define QCOW2_HDR_BACKING_SIZE   16
#define QCOW2_HDR_CLUSTER_BITS   20
#define QCOW2_HDR_SIZE           24
#define QCOW2_HDR_CRYPT          32
#define QCOW2_HDR_L1_SIZE        36
#define QCOW2_HDR_L1_OFFSET      40
#define QCOW2_HDR_RT_OFFSET      48
#define QCOW2_HDR_RT_CLUSTERS    56
#define QCOW2_HDR_NB_SNAPSHOTS   60
#define QCOW2_HDR_SNAPSHOTS_OFFSET 64
#define QCOW2_HDR_INCOMPAT       72
#define QCOW2_HDR_COMPAT         80
#define QCOW2_HDR_AUTOCLEAR      88
#define QCOW2_HDR_REFCOUNT_ORDER 96
#define QCOW2_HDR_HEADER_LENGTH  100
#define QCOW2_HDR_COMPRESSION_TYPE 104

enum qcow2_mode {
  QCOW2_MODE_READONLY,
  QCOW2_MODE_INPLACE,
  QCOW2_MODE_WRITER,
};

/* One cached L2 table, kept in its on-disk (big endian) form so that it
 * can be written back as is. */
struct qcow2_l2_slot {
  uint64_t host;                /* offset of the table; 0: slot empty */
  uint64_t lru;
  bool dirty;
  uint8_t *data;                /* one cluster */
};

/* What one stretch of guest space maps to. */
enum qcow2_kind {
  QCOW2_ZERO,                   /* unallocated or zero: reads as zeros */
  QCOW2_DATA,                   /* plain data at host */
  QCOW2_COMPRESSED,             /* a compressed cluster, descriptor l2e */
};

struct qcow2_piece {
  enum qcow2_kind kind;
  uint64_t len;                 /* bytes from the queried offset */
  uint64_t host;                /* QCOW2_DATA: host offset of the queried byte */
  uint64_t l2e;                 /* QCOW2_COMPRESSED: the L2 entry */
  bool copied;                  /* QCOW2_DATA: refcount is exactly 1 */
};

struct qcow2 {
  int fd;
  char *path;
  enum qcow2_mode mode;
  /* Read-only images stored inside a larger file (a qcow2 entry of a
   * tar bundle): host offset 0 of the image is byte `base` of fd, and
   * file_size is the window's length. */
  uint64_t base;
  bool failed;                  /* a write failed: metadata may be stale */
  bool discarded;               /* being deleted: close writes nothing */
  struct p2v_writeback wb;
  bool no_sync;                 /* see struct p2v_create_opts */

  uint32_t version;
  uint32_t cluster_bits;
  uint32_t cluster_size;
  uint64_t size;                /* virtual size */
  bool extended_l2;
  uint32_t l2_entry_size;       /* 8, or 16 with extended L2 entries */
  uint32_t l2_bits;             /* log2 of entries per L2 table */
  uint32_t subcluster_bits;     /* extended L2: log2 of the subcluster size */
  uint32_t csize_shift;         /* compressed descriptor: x in the spec */
  uint64_t csize_mask;          /* mask of the sector count after shifting */
  uint64_t coffset_mask;
  uint64_t autoclear;           /* header autoclear_features */
  bool autoclear_cleared;

  /* File size as seen by reads: bytes beyond it read as zeros.  For the
   * writer, metadata may still point up to alloc_ptr beyond it. */
  uint64_t file_size;

  /* L1 table, host byte order, l1_entries long (the entries needed for
   * the virtual size; extra ones in the image are ignored). */
  uint64_t l1_offset;
  uint32_t l1_entries;
  uint64_t *l1;
  uint64_t l1_dirty_lo, l1_dirty_hi;    /* writer: [lo, hi) to write */

  /* L2 cache */
  struct qcow2_l2_slot *l2_cache;
  unsigned l2_cache_n;
  unsigned l2_last;             /* slot of the last hit */
  uint64_t l2_clock;

  /* Decompression: the last cluster decompressed (keyed by its L2
   * entry), and the buffer its compressed bytes are read into. */
  z_stream zs;
  bool zs_init;
  uint8_t *cbuf;                /* 2 clusters */
  uint8_t *dbuf;                /* 1 cluster */
  uint64_t dbuf_l2e;            /* 0: dbuf holds nothing */

  /* Writer state. */
  uint64_t rt_offset;
  uint32_t rt_clusters;
  uint64_t rt_entries;
  uint64_t *rt;                 /* refcount table, host byte order */
  uint64_t rt_dirty_lo, rt_dirty_hi;
  uint64_t rb_entries;          /* refcounts per block (cluster_size / 2) */
  uint64_t rb_region;           /* region whose block is in rb */
  uint8_t *rb;                  /* that refcount block, big endian */
  bool rb_dirty;
  uint64_t alloc_ptr;           /* next free host cluster (bytes) */
  uint64_t comp_ptr;            /* end of the last compressed data, or 0 */
};

/* Big-endian helpers that do not care about alignment. */
static inline uint64_t
qcow2_get_be64 (const void *p)
{
  uint64_t v;
  memcpy (&v, p, 8);
  return be64toh (v);
}

static inline uint32_t
qcow2_get_be32 (const void *p)
{
  uint32_t v;
  memcpy (&v, p, 4);
  return be32toh (v);
}

static inline uint16_t
qcow2_get_be16 (const void *p)
{
  uint16_t v;
  memcpy (&v, p, 2);
  return be16toh (v);
}

static inline void
qcow2_put_be64 (void *p, uint64_t v)
{
  v = htobe64 (v);
  memcpy (p, &v, 8);
}

static inline void
qcow2_put_be32 (void *p, uint32_t v)
{
  v = htobe32 (v);
  memcpy (p, &v, 4);
}

static inline void
qcow2_put_be16 (void *p, uint16_t v)
{
  v = htobe16 (v);
  memcpy (p, &v, 2);
}

/* qcow2.c */
int qcow2_host_pread (struct qcow2 *h, void *buf, size_t count,
                      uint64_t offset);
int qcow2_host_pwrite (struct qcow2 *h, const void *buf, size_t count,
                       uint64_t offset);

/* qcow2-cluster.c */
void qcow2_l2_cache_init (struct qcow2 *h);
void qcow2_l2_cache_free (struct qcow2 *h);
int qcow2_l2_get (struct qcow2 *h, uint64_t l1_index, bool alloc,
                  struct qcow2_l2_slot **slot);
int qcow2_l2_flush (struct qcow2 *h);
int qcow2_get_piece (struct qcow2 *h, uint64_t offset,
                     struct qcow2_piece *p);
int qcow2_data_run (struct qcow2 *h, const struct qcow2_piece *p,
                    uint64_t offset, uint64_t max, bool need_copied,
                    uint64_t *len);
int qcow2_pread (void *handle, void *buf, size_t count, uint64_t offset);
int qcow2_block_status (void *handle, uint64_t offset, uint64_t count,
                        uint64_t *pnum, unsigned *flags);
int qcow2_inplace_pwrite (struct qcow2 *h, const void *buf, size_t count,
                          uint64_t offset);
int qcow2_inplace_zero (struct qcow2 *h, uint64_t count, uint64_t offset);

/* qcow2-compress.c */
ssize_t qcow2_compress (void *handle, const void *in, size_t len,
                        void *out, size_t out_cap, int level);
int qcow2_decompress_cluster (struct qcow2 *h, uint64_t l2e,
                              uint64_t guest_offset);
void qcow2_compressed_range (const struct qcow2 *h, uint64_t l2e,
                             uint64_t *coffset, uint64_t *csize);
void qcow2_decompress_free (struct qcow2 *h);

/* qcow2-refcount.c */
int qcow2_refcount_init (struct qcow2 *h, uint64_t first_cluster,
                         uint64_t max_clusters);
int qcow2_alloc_clusters (struct qcow2 *h, uint64_t n, uint16_t refcount,
                          uint64_t *host, uint64_t *got);
int qcow2_refcount_add (struct qcow2 *h, uint64_t host_offset, int delta);
int qcow2_refcount_flush (struct qcow2 *h);
void qcow2_refcount_free (struct qcow2 *h);

/* qcow2-write.c */
int qcow2_writer_pwrite (struct qcow2 *h, const void *buf, size_t count,
                         uint64_t offset);
int qcow2_writer_zero (struct qcow2 *h, uint64_t count, uint64_t offset);
int qcow2_pwrite_compressed (void *handle, const void *cdata, size_t clen,
                             uint64_t offset, size_t len);

#endif /* P2V_QCOW2_H */
