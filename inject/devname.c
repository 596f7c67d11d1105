/* devname.c: which device names a guest's configuration may not keep
 * once its disk is virtio, and where they point (disk, partition). */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "inject-int.h"

static bool
has_prefix (const char *s, const char *prefix)
{
  return strncmp (s, prefix, strlen (prefix)) == 0;
}

/* /dev/sd, /dev/hd, /dev/xvd followed by letters: the prefix length. */
static size_t
lettered_prefix (const char *name)
{
  static const char *const prefixes[] = { "/dev/sd", "/dev/hd", "/dev/xvd" };

  for (size_t i = 0; i < ARRAY_SIZE (prefixes); i++) {
    size_t n = strlen (prefixes[i]);
    if (strncmp (name, prefixes[i], n) == 0 && islower ((unsigned char) name[n]))
      return n;
  }
  return 0;
}

static bool
by_id_is_stable (const char *id)
{
  /* Names derived from content (device-mapper, md, LVM), not from the
   * disk's model, serial or WWN. */
  static const char *const stable[] = { "dm-", "md-", "lvm-pv-" };

  for (size_t i = 0; i < ARRAY_SIZE (stable); i++)
    if (has_prefix (id, stable[i]))
      return true;
  return false;
}

bool
devname_is_unstable (const char *name)
{
  int disk, part;

  if (has_prefix (name, "/dev/disk/by-id/"))
    return !by_id_is_stable (name + strlen ("/dev/disk/by-id/"));
  return devname_parse (name, &disk, &part) == 0;
}

/* Digits at *P into *OUT; false if none. */
static bool
parse_number (const char **p, int *out)
{
  char *end;
  long v;

  if (!isdigit ((unsigned char) **p))
    return false;
  v = strtol (*p, &end, 10);
  if (v < 0 || v > 100000)
    return false;
  *out = (int) v;
  *p = end;
  return true;
}

/* "-partN" at the end of a by-id / by-path name, or 0. */
static int
trailing_part (const char *name)
{
  const char *p = strstr (name, "-part");
  const char *last = NULL;
  int n = 0;

  while (p) {
    last = p;
    p = strstr (p + 1, "-part");
  }
  if (last) {
    const char *q = last + strlen ("-part");
    if (parse_number (&q, &n) && *q == '\0')
      return n;
  }
  return 0;
}

int
devname_parse (const char *name, int *disk, int *part)
{
  size_t n;
  const char *p;

  *disk = -1;
  *part = 0;
  if ((n = lettered_prefix (name)) > 0) {
    int index = 0;
    p = name + n;
    if (strlen (p) > 3)
      return -1;
    while (islower ((unsigned char) *p)) {
      index = index * 26 + (*p - 'a' + 1);
      p++;
    }
    *disk = index - 1;
    if (*p && !parse_number (&p, part))
      return -1;
    return *p ? -1 : 0;
  }
  if (has_prefix (name, "/dev/cciss/") || has_prefix (name, "/dev/ida/")) {
    int ctrl;
    p = strchr (name + 5, '/') + 1;
    if (*p++ != 'c' || !parse_number (&p, &ctrl) || *p++ != 'd'
        || !parse_number (&p, disk))
      return -1;
    if (*p == 'p') {
      p++;
      if (!parse_number (&p, part))
        return -1;
    }
    return *p ? -1 : 0;
  }
  if (has_prefix (name, "/dev/nvme")) {
    int ns;
    p = name + strlen ("/dev/nvme");
    if (!parse_number (&p, disk) || *p++ != 'n' || !parse_number (&p, &ns))
      return -1;
    if (*p == 'p') {
      p++;
      if (!parse_number (&p, part))
        return -1;
    }
    return *p ? -1 : 0;
  }
  if (has_prefix (name, "/dev/disk/by-path/")
      || (has_prefix (name, "/dev/disk/by-id/")
          && !by_id_is_stable (name + strlen ("/dev/disk/by-id/")))) {
    *part = trailing_part (name);
    return 0;
  }
  return -1;
}

const char *
devname_why (const char *name)
{
  if (has_prefix (name, "/dev/sd") || has_prefix (name, "/dev/hd"))
    return "virtio disks are named /dev/vdX";
  if (has_prefix (name, "/dev/xvd"))
    return "Xen disk names do not exist under KVM";
  if (has_prefix (name, "/dev/cciss/") || has_prefix (name, "/dev/ida/"))
    return "the Smart Array controller will not exist in the VM";
  if (has_prefix (name, "/dev/nvme"))
    return "the NVMe controller will not exist in the VM";
  if (has_prefix (name, "/dev/disk/by-id/"))
    return "by-id names carry the old disk's model and serial";
  if (has_prefix (name, "/dev/disk/by-path/"))
    return "by-path names carry the old controller's address";
  return "the device name will change in the VM";
}
