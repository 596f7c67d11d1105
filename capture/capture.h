/* capture.h: what the capture module offers: disk discovery, the
 * used-block map of a disk (partition table, file systems, which bytes
 * must be copied), the map as a stacked read driver, the hardware
 * inventory, bundle writing, and the capture/receive subcommands. */
#ifndef P2V_CAPTURE_H
#define P2V_CAPTURE_H

#include <stdbool.h>
#include <stdint.h>

#include <json-c/json.h>

#include "format.h"
#include "qcow2-layout.h"

/* How a partition (or the rest of the disk) was captured, as
 * docs/bundle.md names it in "copied". */
#define CAPTURE_COPIED_USED   "used"
#define CAPTURE_COPIED_HEADER "header"
#define CAPTURE_COPIED_FULL   "full"
#define CAPTURE_COPIED_ALL    "all-blocks"

struct capture_partition {
  int number;
  uint64_t start, size;         /* bytes */
  const char *type;             /* "primary", "logical", "extended" */
  char *flags[4];               /* "boot", "esp", "bios_grub", "lvm", ... */
  size_t nflags;
  char *part_type;              /* msdos "0x83", or the GPT type GUID */
  char *fs, *uuid, *label;      /* from libblkid; NULL when unknown */
  const char *copied;           /* NULL for an extended partition */
  uint64_t bytes_mapped;        /* bytes of it in the map */
};

struct capture_disk {
  char *name;                   /* "sda", "nvme0n1", "cciss!c0d0", or a file name */
  char *path;
  char *model, *serial, *transport;
  uint64_t size;
  uint32_t sector_size;
  const char *table;            /* "msdos", "gpt", "loop", "none" */
  struct capture_partition *parts;
  size_t nparts;
  /* The map: sorted, merged guest ranges to copy. */
  struct p2v_extent *ext;
  size_t next, ext_cap;
  uint64_t bytes_mapped;
  char *guest_hostname;         /* /etc/hostname of an ext2/3/4 on it, or NULL */
};

/* Read the partition table and file systems of the disk open read-only
 * on fd and build its map.  all_blocks maps every byte. */
int capture_disk_scan (struct capture_disk *d, int fd, bool all_blocks);
void capture_disk_clear (struct capture_disk *d);
/* Fill name, model, serial, transport, size, sector size from fd and
 * sysfs (block devices) or the file itself. */
int capture_disk_identify (struct capture_disk *d, const char *path, int fd);
/* The disk's partitions and map as JSON (manifest "disks" entry, without
 * file, bytes_read and digest). */
json_object *capture_disk_json (const struct capture_disk *d);
/* Bytes of [start, start + len) the map copies. */
uint64_t capture_disk_mapped_in (const struct capture_disk *d, uint64_t start,
                                 uint64_t len);
/* SHA-256 (hex) of the map, so a resumed capture can check that the
 * source still maps the same. */
char *capture_disk_map_id (const struct capture_disk *d);

/* Stacked driver: reads go to raw; block_status answers from the map, so
 * the copy engine never reads what the map leaves out.  Takes ownership
 * of raw; the disk must outlive the image. */
struct p2v_image *capture_map_image (struct p2v_image *raw,
                                     const struct capture_disk *d);

/* Disks of this machine worth capturing (see discover.c), as /dev paths. */
int capture_discover (char ***paths, size_t *n);

/* Hardware inventory: hostname, firmware, cpu, memory, nics (added to obj). */
void capture_inventory (json_object *obj);

int cmd_capture (int argc, char **argv);
int cmd_receive (int argc, char **argv);
extern const char cmd_capture_help[], cmd_receive_help[];

#endif /* P2V_CAPTURE_H */
