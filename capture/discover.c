/* discover.c: the disks of this machine worth capturing, from
 * /sys/block: SATA/SAS/virtio, NVMe, md arrays and cciss-style names
 * ('!' in sysfs for '/' in /dev); no removable media, no loop, ram, zram,
 * optical or device-mapper devices (LVM lives on the PVs we copy), and
 * not the disk holding the running system (the capture medium). */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "common.h"
#include "capture.h"

static bool
sys_flag (const char *name, const char *file)
{
  char *p = xasprintf ("/sys/block/%s/%s", name, file);
  FILE *f = fopen (p, "re");
  int c = f ? fgetc (f) : EOF;

  if (f)
    fclose (f);
  free (p);
  return c == '1';
}

/* The sysfs name of the whole disk holding the file system at dir, or
 * NULL (tmpfs, overlay, squashfs on a loop: nothing to skip). */
static char *
disk_of_mount (const char *dir)
{
  struct stat st;
  char *sys, *real, *name = NULL, *part;

  if (stat (dir, &st) == -1 || major (st.st_dev) == 0)
    return NULL;
  sys = xasprintf ("/sys/dev/block/%u:%u", major (st.st_dev), minor (st.st_dev));
  real = realpath (sys, NULL);
  free (sys);
  if (!real)
    return NULL;
  part = xasprintf ("%s/partition", real);
  if (access (part, F_OK) == 0) {
    char *slash = strrchr (real, '/');
    if (slash)
      *slash = '\0';            /* .../sda/sda1 -> .../sda */
  }
  free (part);
  if (strrchr (real, '/'))
    name = xstrdup (strrchr (real, '/') + 1);
  free (real);
  return name;
}

int
capture_discover (char ***paths, size_t *n)
{
  static const char *const skip_prefix[] = {
    "loop", "ram", "zram", "sr", "fd", "dm-", "nbd", "zd",
  };
  static const char *const boot_mounts[] = {
    "/", "/run/live/medium", "/lib/live/mount/medium", "/cdrom",
  };
  char *boot[ARRAY_SIZE (boot_mounts)];
  DIR *dir = opendir ("/sys/block");
  struct dirent *de;

  *paths = NULL;
  *n = 0;
  if (!dir)
    return p2v_error ("cannot list disks in '/sys/block': %m");
  for (size_t i = 0; i < ARRAY_SIZE (boot_mounts); i++)
    boot[i] = disk_of_mount (boot_mounts[i]);

  while ((de = readdir (dir))) {
    const char *name = de->d_name;
    bool skip = name[0] == '.';
    char *dev, *bang;

    for (size_t i = 0; !skip && i < ARRAY_SIZE (skip_prefix); i++)
      skip = strncmp (name, skip_prefix[i], strlen (skip_prefix[i])) == 0;
    for (size_t i = 0; !skip && i < ARRAY_SIZE (boot); i++)
      skip = boot[i] && strcmp (boot[i], name) == 0;
    if (skip || sys_flag (name, "removable"))
      continue;
    dev = xasprintf ("/dev/%s", name);
    while ((bang = strchr (dev, '!')))
      *bang = '/';              /* cciss!c0d0 -> /dev/cciss/c0d0 */
    *paths = xrealloc (*paths, (*n + 1) * sizeof **paths);
    (*paths)[(*n)++] = dev;
  }
  closedir (dir);
  for (size_t i = 0; i < ARRAY_SIZE (boot); i++)
    free (boot[i]);
  /* A stable order: the manifest's disk0, disk1 ... follow it. */
  for (size_t i = 1; i < *n; i++)
    for (size_t j = i; j > 0 && strcmp ((*paths)[j - 1], (*paths)[j]) > 0; j--) {
      char *t = (*paths)[j];
      (*paths)[j] = (*paths)[j - 1];
      (*paths)[j - 1] = t;
    }
  return 0;
}
