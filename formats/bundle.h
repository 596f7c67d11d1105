/* bundle.h: a p2v capture bundle (docs/bundle.md) as a source: a
 * directory or a tar file holding manifest.json and one qcow2 per disk.
 * A bundle is a container of images, not an image, so it sits beside the
 * driver table: bundle_open_disk hands out each disk as a p2v_image
 * opened through the qcow2 driver (in place, inside the tar, for the tar
 * shape). */
#ifndef P2V_BUNDLE_H
#define P2V_BUNDLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "format.h"

#define P2V_BUNDLE_FORMAT "p2v-bundle"
#define P2V_BUNDLE_VERSION 1
#define P2V_BUNDLE_MANIFEST "manifest.json"
#define P2V_BUNDLE_LOG "p2v-capture.log"
#define P2V_BUNDLE_MAX_DISKS 64
#define P2V_BUNDLE_MAX_NICS 64
/* A manifest is a few KiB; this bounds what a hostile one can cost. */
#define P2V_BUNDLE_MAX_MANIFEST (4u << 20)

struct p2v_bundle_nic {
  char *name;                   /* "eno1", or NULL */
  char *mac;                    /* lowercase "52:54:00:12:34:56" */
};

struct p2v_bundle_disk {
  char *file;                   /* "disk0.qcow2" */
  char *name;                   /* "sda", or NULL */
  uint64_t size;                /* guest size, checked against the qcow2 */
  char *digest_algorithm;       /* NULL when the manifest has no digest */
  char *digest;                 /* lowercase hex, NULL when absent */
  /* tar shape: where the entry's bytes are inside the tar */
  uint64_t tar_offset, tar_length;
  bool in_tar;
};

struct p2v_bundle {
  char *path;                   /* the directory or the tar file */
  bool is_tar;
  char *hostname;               /* NULL when absent */
  bool uefi;                    /* firmware "uefi" (else "bios" or absent) */
  bool firmware_known;
  unsigned vcpus;               /* 0 when absent */
  uint64_t memory_bytes;        /* 0 when absent */
  struct p2v_bundle_nic *nics;
  size_t n_nics;
  struct p2v_bundle_disk *disks;
  size_t n_disks;
};

/* True if path should be read as a bundle: a directory, or a file that
 * starts with a tar header.  Says nothing of whether it is a good one. */
bool bundle_detect (const char *path);

/* Open a bundle: read and check its manifest and, for a tar, its entry
 * list (only manifest.json, p2v-capture.log and diskN.qcow2, regular
 * files, no duplicates, all within the file).  Does not open the disks. */
struct p2v_bundle *bundle_open (const char *path);

/* Parse a manifest (len bytes, not NUL-terminated); where names it in
 * messages.  Used by bundle_open, and alone by the unit tests. */
struct p2v_bundle *bundle_parse_manifest (const char *json, size_t len,
                                          const char *where);

/* Open disk i read-only, and check its virtual size against the
 * manifest's.  The image's path is "BUNDLE/diskN.qcow2" (directory) or
 * "BUNDLE.tar:diskN.qcow2" (tar). */
struct p2v_image *bundle_open_disk (const struct p2v_bundle *b, size_t i);

void bundle_free (struct p2v_bundle *b);

/* Check a MAC "xx:xx:xx:xx:xx:xx" (either case) and lowercase it. */
bool bundle_mac_parse (const char *s, char out[18]);

/* The p2v-sha256-nz64k digest of an image's guest content, reading only
 * what block status calls data.  *bytes_read (may be NULL) gets how much
 * was read. */
int image_content_digest (struct p2v_image *img, char hex[65],
                          uint64_t *bytes_read);

#endif /* P2V_BUNDLE_H */
