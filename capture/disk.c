/* disk.c: what a source disk is (sysfs and the udev database for block
 * devices, the file itself for images), and the capture map as a stacked
 * driver over the raw source: reads pass through, block_status answers
 * from the map. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <linux/fs.h>

#include "common.h"
#include "capture.h"

/* First line of a small text file, trimmed; NULL if absent or empty. */
static char *
read_line (const char *path)
{
  FILE *f = fopen (path, "re");
  char *line = NULL, *s, *e;
  size_t cap = 0;

  if (!f)
    return NULL;
  if (getline (&line, &cap, f) < 0) {
    free (line);
    fclose (f);
    return NULL;
  }
  fclose (f);
  for (s = line; *s == ' ' || *s == '\t'; s++)
    ;
  e = s + strlen (s);
  while (e > s && (e[-1] == '\n' || e[-1] == ' ' || e[-1] == '\t'))
    *--e = '\0';
  if (!*s) {
    free (line);
    return NULL;
  }
  s = xstrdup (s);
  free (line);
  return s;
}

/* A property (E:KEY=VALUE) from the udev database of block device rdev. */
static char *
udev_property (dev_t rdev, const char *key)
{
  char path[64];
  FILE *f;
  char *line = NULL, *v = NULL;
  size_t cap = 0, klen = strlen (key);

  snprintf (path, sizeof path, "/run/udev/data/b%u:%u", major (rdev), minor (rdev));
  if (!(f = fopen (path, "re")))
    return NULL;
  while (getline (&line, &cap, f) > 0) {
    if (strncmp (line, "E:", 2) == 0 && strncmp (line + 2, key, klen) == 0
        && line[2 + klen] == '=') {
      line[strcspn (line, "\n")] = '\0';
      if (line[3 + klen])
        v = xstrdup (line + 3 + klen);
      break;
    }
  }
  free (line);
  fclose (f);
  return v;
}

int
capture_disk_identify (struct capture_disk *d, const char *path, int fd)
{
  struct stat st;
  const char *base = strrchr (path, '/');

  d->path = xstrdup (path);
  if (fstat (fd, &st) == -1)
    return p2v_error ("cannot stat '%s': %m", path);
  d->sector_size = 512;
  if (S_ISBLK (st.st_mode)) {
    char *sys = xasprintf ("/sys/dev/block/%u:%u", major (st.st_rdev),
                           minor (st.st_rdev));
    char *real = realpath (sys, NULL), *p;
    int ss = 0;

    if (ioctl (fd, BLKGETSIZE64, &d->size) == -1) {
      free (sys);
      free (real);
      return p2v_error ("cannot get the size of '%s': %m", path);
    }
    if (ioctl (fd, BLKSSZGET, &ss) == 0 && ss > 0)
      d->sector_size = ss;
    /* The kernel's name: sda, nvme0n1, md0, cciss!c0d0. */
    d->name = xstrdup (real && strrchr (real, '/') ? strrchr (real, '/') + 1
                       : base ? base + 1 : path);
    p = xasprintf ("%s/device/model", sys);
    d->model = read_line (p);
    free (p);
    if (!d->model)
      d->model = udev_property (st.st_rdev, "ID_MODEL");
    d->serial = udev_property (st.st_rdev, "ID_SERIAL_SHORT");
    if (!d->serial) {
      p = xasprintf ("%s/device/serial", sys);
      d->serial = read_line (p);
      free (p);
    }
    d->transport = udev_property (st.st_rdev, "ID_BUS");
    if (!d->transport) {
      const char *n = d->name;
      d->transport = xstrdup (strncmp (n, "nvme", 4) == 0 ? "nvme"
                              : strncmp (n, "md", 2) == 0 ? "md"
                              : strncmp (n, "loop", 4) == 0 ? "loop"
                              : strncmp (n, "vd", 2) == 0 ? "virtio"
                              : strchr (n, '!') ? "cciss" : "scsi");
    }
    free (sys);
    free (real);
  }
  else if (S_ISREG (st.st_mode)) {
    d->size = st.st_size;
    d->name = xstrdup (base ? base + 1 : path);
    d->transport = xstrdup ("file");
  }
  else
    return p2v_error ("cannot capture '%s': not a block device or a file", path);
  if (d->size == 0)
    return p2v_error ("cannot capture '%s': it is empty", path);
  return 0;
}

/* The stacked map driver. */
struct map_handle {
  struct p2v_image *raw;
  const struct capture_disk *d;
  size_t cursor;
  int fd;                       /* read-only, for readahead hints; or -1 */
  uint64_t hinted;              /* readahead asked for up to here */
};

/* The engine reads one chunk at a time; the disk does better with more
 * in flight.  We know exactly what will be read next, so ask the kernel
 * to start reading the next extents of the map now. */
#define MAP_READAHEAD (64u << 20)

static void
map_readahead (struct map_handle *m, uint64_t offset)
{
  const struct capture_disk *d = m->d;
  uint64_t want, left;
  size_t i = m->cursor;

  if (m->fd < 0 || m->hinted >= offset + MAP_READAHEAD / 2)
    return;
  want = P2V_MAX (m->hinted, offset);
  left = MAP_READAHEAD;
  for (; i < d->next && left > 0; i++) {
    uint64_t a = P2V_MAX (d->ext[i].start, want);
    uint64_t end = d->ext[i].start + d->ext[i].len;
    uint64_t n;
    if (a >= end)
      continue;
    n = P2V_MIN (end - a, left);
    (void) posix_fadvise (m->fd, a, n, POSIX_FADV_WILLNEED);
    left -= n;
    m->hinted = a + n;
  }
  if (i >= d->next && left > 0)
    m->hinted = d->size;
}

static int
map_block_status (void *h, uint64_t offset, uint64_t count, uint64_t *pnum,
                  unsigned *flags)
{
  struct map_handle *m = h;
  const struct capture_disk *d = m->d;
  size_t lo = 0, hi = d->next;

  /* The engine asks in increasing order: start from the last extent. */
  if (m->cursor < d->next && d->ext[m->cursor].start <= offset)
    lo = m->cursor;
  while (lo < hi) {             /* first extent ending after offset */
    size_t mid = lo + (hi - lo) / 2;
    if (d->ext[mid].start + d->ext[mid].len <= offset)
      lo = mid + 1;
    else
      hi = mid;
  }
  m->cursor = lo;
  if (lo < d->next && d->ext[lo].start <= offset) {
    *flags = P2V_STATUS_DATA;
    *pnum = P2V_MIN (count, d->ext[lo].start + d->ext[lo].len - offset);
  }
  else {
    *flags = P2V_STATUS_ZERO;
    *pnum = lo < d->next ? P2V_MIN (count, d->ext[lo].start - offset) : count;
  }
  return 0;
}

static int
map_pread (void *h, void *buf, size_t count, uint64_t offset)
{
  struct map_handle *m = h;

  map_readahead (m, offset + count);
  return image_pread (m->raw, buf, count, offset);
}

static uint64_t
map_get_size (void *h)
{
  return ((struct map_handle *) h)->d->size;
}

static uint32_t
map_granularity (void *h)
{
  return image_granularity (((struct map_handle *) h)->raw);
}

static bool
map_has_zero_init (void *h)
{
  (void) h;
  return false;
}

static int
map_close (void *h)
{
  struct map_handle *m = h;
  int r = image_close (m->raw);

  if (m->fd >= 0)
    close (m->fd);
  free (m);
  return r;
}

static const struct p2v_format capture_map_format = {
  .name = "capture-map",
  .description = "a source disk seen through its used-block map",
  .get_size = map_get_size,
  .granularity = map_granularity,
  .has_zero_init = map_has_zero_init,
  .pread = map_pread,
  .block_status = map_block_status,
  .close = map_close,
};

struct p2v_image *
capture_map_image (struct p2v_image *raw, const struct capture_disk *d)
{
  struct map_handle *m = xcalloc (1, sizeof *m);
  struct p2v_image *img = xcalloc (1, sizeof *img);

  if (raw->size != d->size)
    p2v_warning ("'%s': the raw driver sees %" PRIu64 " bytes, the map %" PRIu64,
                 d->path, raw->size, d->size);
  m->raw = raw;
  m->d = d;
  m->fd = open (d->path, O_RDONLY | O_CLOEXEC);
  img->drv = &capture_map_format;
  img->h = m;
  img->path = xstrdup (raw->path);
  img->size = P2V_MIN (raw->size, d->size);
  img->readonly = true;
  return img;
}
