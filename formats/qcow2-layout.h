/* qcow2-layout.h: a qcow2 writer whose whole layout is fixed before the
 * first byte is written, from the list of guest ranges that will hold
 * data.  Every host offset is known up front, so the file can be written
 * strictly front to back (a tar entry, a pipe) or, after a crash, resumed
 * by writing the same bytes at the same places again. */
#ifndef P2V_QCOW2_LAYOUT_H
#define P2V_QCOW2_LAYOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "format.h"

struct p2v_extent {
  uint64_t start, len;          /* guest bytes */
};

/* Where the bytes go.  A sequential sink receives every byte of the file
 * exactly once in increasing offset order (clusters the engine found zero
 * are sent as zeros); a positional sink (a file made of the right size
 * beforehand) receives only what is not zero. */
struct qcow2_layout_sink {
  int (*write) (void *opaque, const void *buf, size_t len, uint64_t offset);
  void *opaque;
  bool sequential;
};

struct qcow2_layout;

/* extents: sorted, non-overlapping guest ranges holding data, within
 * size.  Every 64 KiB cluster they touch is allocated. */
struct qcow2_layout *qcow2_layout_new (uint64_t size,
                                       const struct p2v_extent *ext,
                                       size_t n);
void qcow2_layout_free (struct qcow2_layout *l);
/* The file's final size in bytes. */
uint64_t qcow2_layout_file_size (const struct qcow2_layout *l);
uint64_t qcow2_layout_data_clusters (const struct qcow2_layout *l);

/* An image handle the copy engine can write to: it writes the metadata
 * at once, then data clusters at their places as the engine writes them
 * (in increasing guest order for a sequential sink).  Closing it pads a
 * sequential sink to the final size.  The layout must outlive the image. */
struct p2v_image *qcow2_layout_image (struct qcow2_layout *l,
                                      const struct qcow2_layout_sink *sink,
                                      const char *name);

#endif
