/* convert.h: the copy engine (reader -> worker threads -> one ordered
 * writer), image comparison, and the convert/verify subcommands. */
#ifndef P2V_CONVERT_H
#define P2V_CONVERT_H

#include <stdbool.h>
#include <stdint.h>

#include "format.h"

/* zlib level 1: on disk images it compresses within a few per cent of
 * level 6 at about twice the speed (bench/convert.sh shows both). */
#define P2V_DEFAULT_COMPRESS_LEVEL 1

struct p2v_copy_opts {
  unsigned threads;             /* worker threads; 0: one per CPU */
  bool compress;                /* needs a destination that can compress */
  int compress_level;           /* -1: the format's default */
  bool progress;                /* draw a meter on a TTY */
  /* Capture and resume (optional, zero: off). */
  const char *progress_label;   /* NULL: "converting" */
  uint64_t start;               /* copy only [start, size): a resumed copy;
                                 * a multiple of 1 MiB */
  /* Called by the writer thread, in increasing offset order, after each
   * stretch [offset, offset + len) is written; buf holds its guest bytes,
   * or is NULL when they are all zero.  Returning -1 stops the copy. */
  int (*written) (void *opaque, uint64_t offset, const void *buf,
                  uint64_t len);
  void *written_opaque;
};

struct p2v_copy_stats {
  uint64_t size;                /* guest size copied */
  uint64_t bytes_read;          /* read from the source */
  uint64_t bytes_zero;          /* guest bytes found zero or unallocated */
  uint64_t bytes_plain;         /* guest bytes written as they are */
  uint64_t bytes_compressed_in; /* guest bytes written compressed ... */
  uint64_t bytes_compressed_out;/* ... and what they took */
  double seconds;
};

/* Copy every guest byte of src into dst (same size or larger).  Reads
 * only what src's block status calls data; writes only non-zero units. */
int copy_image (struct p2v_image *src, struct p2v_image *dst,
                const struct p2v_copy_opts *opts,
                struct p2v_copy_stats *stats);

/* Compare guest-visible content.  Returns 0 same, 1 different (and
 * *first_diff set), -1 error.  Where sizes differ the extra tail of the
 * larger image must read as zeros, as with qemu-img compare. */
int compare_images (struct p2v_image *a, struct p2v_image *b,
                    uint64_t *first_diff);

/* The libvirt domain for a converted capture bundle (domain-xml.c):
 * disk_paths[i] is where disk i was written (absolute), disk_format its
 * format, first_mac replaces the first NIC's MAC (NULL: keep it),
 * fallback_name names the domain when the manifest has no usable
 * hostname, boot_disk is the index of the disk the VM boots from (its
 * boot loader's disk need not be the first).  Returns the XML text
 * (caller frees). */
struct p2v_bundle;
char *domain_xml_build (const struct p2v_bundle *b, const char *fallback_name,
                        char *const *disk_paths, const char *disk_format,
                        const char *first_mac, size_t boot_disk);
/* A libvirt domain name from a hostname, or NULL if nothing is left. */
char *domain_name_from_hostname (const char *hostname);

int cmd_convert (int argc, char **argv);
int cmd_verify (int argc, char **argv);

#endif /* P2V_CONVERT_H */
