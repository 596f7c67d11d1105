/* format.h: block-image drivers behind one interface (like a qemu
 * BlockDriver or an nbdkit plugin), and the image handle built on them. */
#ifndef P2V_FORMAT_H
#define P2V_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* block_status flags for a range. */
#define P2V_STATUS_DATA 0x1     /* holds data: must be read */
#define P2V_STATUS_ZERO 0x2     /* reads as zeros: need not be read */

/* open flags */
#define P2V_OPEN_READONLY 0x1

struct p2v_create_opts {
  uint32_t cluster_size;        /* 0: the driver's default */
  /* Speed over durability (convert --no-sync, qemu's cache=unsafe): no
   * early writeback while writing, and flush writes what the driver
   * holds in memory but does not wait for the disk. */
  bool no_sync;
};

struct p2v_format {
  const char *name;
  const char *description;

  /* Score 0..100 for how sure the driver is that the first bytes (up to
   * len, at least 512 unless the file is shorter) are its format.  raw
   * answers 1 for anything. */
  int (*probe) (const uint8_t *buf, size_t len);

  /* Returns an opaque handle, or NULL after p2v_error(). */
  void *(*open) (const char *path, unsigned flags);
  /* Optional: open, read-only, the image stored in bytes [offset,
   * offset + length) of the file path (a qcow2 entry inside a tar
   * bundle, read in place).  name is what messages call the image. */
  void *(*open_window) (const char *path, uint64_t offset, uint64_t length,
                        const char *name);
  /* Create a new image at path (the file must not exist: O_EXCL). */
  void *(*create) (const char *path, uint64_t size,
                   const struct p2v_create_opts *opts);

  uint64_t (*get_size) (void *h);
  /* Natural write unit: writes of whole aligned units are cheapest and
   * zero detection happens at this granularity. */
  uint32_t (*granularity) (void *h);
  /* True if a freshly created image reads as zeros everywhere. */
  bool (*has_zero_init) (void *h);

  int (*pread) (void *h, void *buf, size_t count, uint64_t offset);
  /* pread and block_status may run in several threads at once (else
   * the caller serialises them: caches, decompression buffers...). */
  bool parallel_reads;
  int (*pwrite) (void *h, const void *buf, size_t count, uint64_t offset);
  /* Optional: make the range read as zeros. */
  int (*zero) (void *h, uint64_t count, uint64_t offset);
  /* Status of the range starting at offset: sets *pnum (1..count bytes
   * sharing one status) and *flags.  Optional: absent means all data. */
  int (*block_status) (void *h, uint64_t offset, uint64_t count,
                       uint64_t *pnum, unsigned *flags);

  /* Optional compression, in two halves so that worker threads can
   * compress while one writer thread writes in order.
   * compress: thread-safe, pure; compresses one granularity-sized unit
   *   (or the shorter last one) into out.  Returns the compressed length,
   *   0 when compression does not shrink it (write it plain), -1 on error.
   * pwrite_compressed: writes one unit, at a granularity-aligned offset,
   *   as compressed data produced by compress. */
  ssize_t (*compress) (void *h, const void *in, size_t len,
                       void *out, size_t out_cap, int level);
  int (*pwrite_compressed) (void *h, const void *cdata, size_t clen,
                            uint64_t offset, size_t len);

  int (*flush) (void *h);
  /* Optional: the caller is deleting this image after a failure, so
   * close need write nothing more (its metadata, say). */
  void (*discard) (void *h);
  /* Frees the handle; returns -1 if the final writes failed. */
  int (*close) (void *h);
};

extern const struct p2v_format p2v_format_raw;
extern const struct p2v_format p2v_format_qcow2;

/* All drivers, for probing and for --help. */
extern const struct p2v_format *const p2v_formats[];
const struct p2v_format *format_by_name (const char *name);
const struct p2v_format *format_probe (const uint8_t *buf, size_t len);

/* An open image: a driver plus its handle. */
struct p2v_image {
  const struct p2v_format *drv;
  void *h;
  char *path;
  uint64_t size;
  bool readonly;
};

/* Open an existing image; format NULL means probe. */
struct p2v_image *image_open (const char *path, const char *format,
                              unsigned flags);
/* Open, read-only, the image held in [offset, offset + length) of path
 * (format NULL means probe); img->path is name. */
struct p2v_image *image_open_window (const char *path, const char *format,
                                     uint64_t offset, uint64_t length,
                                     const char *name);
struct p2v_image *image_create (const char *path, const char *format,
                                uint64_t size,
                                const struct p2v_create_opts *opts);
/* Returns -1 if closing failed (data may not be on disk); frees img. */
int image_close (struct p2v_image *img);
/* Close an image the caller is about to delete after a failure: nothing
 * more is written and nothing is reported; frees img. */
void image_discard (struct p2v_image *img);

int image_pread (struct p2v_image *img, void *buf, size_t count,
                 uint64_t offset);
int image_pwrite (struct p2v_image *img, const void *buf, size_t count,
                  uint64_t offset);
int image_zero (struct p2v_image *img, uint64_t count, uint64_t offset);
int image_block_status (struct p2v_image *img, uint64_t offset,
                        uint64_t count, uint64_t *pnum, unsigned *flags);
int image_flush (struct p2v_image *img);
uint32_t image_granularity (struct p2v_image *img);
bool image_has_zero_init (struct p2v_image *img);
bool image_can_compress (struct p2v_image *img);

#endif /* P2V_FORMAT_H */
