/* image.c: the driver table, probing, and the image handle that the
 * engine and the commands use instead of calling drivers directly. */
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "format.h"

const struct p2v_format *const p2v_formats[] = {
  &p2v_format_qcow2,
  &p2v_format_raw,
  NULL,
};

const struct p2v_format *
format_by_name (const char *name)
{
  for (size_t i = 0; p2v_formats[i]; i++)
    if (strcmp (p2v_formats[i]->name, name) == 0)
      return p2v_formats[i];
  return NULL;
}

const struct p2v_format *
format_probe (const uint8_t *buf, size_t len)
{
  const struct p2v_format *best = NULL;
  int best_score = 0;

  for (size_t i = 0; p2v_formats[i]; i++) {
    int score = p2v_formats[i]->probe (buf, len);
    if (score > best_score) {
      best_score = score;
      best = p2v_formats[i];
    }
  }
  return best;
}

static const struct p2v_format *
lookup_format (const char *format)
{
  const struct p2v_format *drv = format_by_name (format);

  if (!drv)
    p2v_error ("unknown image format '%s'", format);
  return drv;
}

static struct p2v_image *
image_wrap (const struct p2v_format *drv, void *h, const char *path,
            bool readonly)
{
  struct p2v_image *img = xcalloc (1, sizeof *img);

  img->drv = drv;
  img->h = h;
  img->path = xstrdup (path);
  img->size = drv->get_size (h);
  img->readonly = readonly;
  return img;
}

struct p2v_image *
image_open (const char *path, const char *format, unsigned flags)
{
  const struct p2v_format *drv;
  void *h;

  if (format) {
    if (!(drv = lookup_format (format)))
      return NULL;
  }
  else {
    uint8_t buf[4096];
    ssize_t n;
    int fd = open (path, O_RDONLY | O_CLOEXEC);

    if (fd == -1)
      return p2v_error_null ("cannot open '%s': %m", path);
    n = pread (fd, buf, sizeof buf, 0);
    if (n == -1) {
      int e = errno;
      close (fd);
      errno = e;
      return p2v_error_null ("cannot read '%s': %m", path);
    }
    close (fd);
    drv = format_probe (buf, n);
    if (!drv)
      return p2v_error_null ("cannot tell the format of '%s'", path);
  }

  h = drv->open (path, flags);
  if (!h)
    return NULL;
  return image_wrap (drv, h, path, flags & P2V_OPEN_READONLY);
}

struct p2v_image *
image_open_window (const char *path, const char *format, uint64_t offset,
                   uint64_t length, const char *name)
{
  const struct p2v_format *drv;
  uint8_t buf[4096];
  size_t want = P2V_MIN (length, sizeof buf);
  void *h;
  int fd;

  fd = open (path, O_RDONLY | O_CLOEXEC);
  if (fd == -1)
    return p2v_error_null ("cannot open '%s': %m", path);
  if (full_pread (fd, buf, want, offset) == -1) {
    int e = errno;
    close (fd);
    errno = e;
    if (e == EIO)
      return p2v_error_null ("cannot read '%s': it is beyond the end of '%s'",
                             name, path);
    return p2v_error_null ("cannot read '%s': %m", name);
  }
  close (fd);
  if (format) {
    if (!(drv = lookup_format (format)))
      return NULL;
  }
  else if (!(drv = format_probe (buf, want)))
    return p2v_error_null ("cannot tell the format of '%s'", name);
  if (!drv->open_window)
    return p2v_error_null ("'%s' is a %s image, which cannot be read inside "
                           "another file", name, drv->name);
  h = drv->open_window (path, offset, length, name);
  if (!h)
    return NULL;
  return image_wrap (drv, h, name, true);
}

struct p2v_image *
image_create (const char *path, const char *format, uint64_t size,
              const struct p2v_create_opts *opts)
{
  const struct p2v_format *drv = lookup_format (format);
  struct p2v_create_opts defaults = { 0 };
  void *h;

  if (!drv)
    return NULL;
  if (!drv->create)
    return p2v_error_null ("format '%s' cannot be written", format);
  h = drv->create (path, size, opts ? opts : &defaults);
  if (!h)
    return NULL;
  return image_wrap (drv, h, path, false);
}

int
image_close (struct p2v_image *img)
{
  int r = 0;

  if (!img)
    return 0;
  if (img->drv->close (img->h) == -1)
    r = -1;
  free (img->path);
  free (img);
  return r;
}

void
image_discard (struct p2v_image *img)
{
  if (!img)
    return;
  if (img->drv->discard)
    img->drv->discard (img->h);
  (void) img->drv->close (img->h);
  free (img->path);
  free (img);
}

int
image_pread (struct p2v_image *img, void *buf, size_t count, uint64_t offset)
{
  if (offset > img->size || count > img->size - offset) {
    errno = EINVAL;
    return p2v_error ("read of %zu bytes at %" PRIu64 " is beyond the end of '%s'",
                      count, offset, img->path);
  }
  return img->drv->pread (img->h, buf, count, offset);
}

int
image_pwrite (struct p2v_image *img, const void *buf, size_t count,
              uint64_t offset)
{
  if (img->readonly)
    return p2v_error ("'%s' is open read-only", img->path);
  if (offset > img->size || count > img->size - offset)
    return p2v_error ("write of %zu bytes at %" PRIu64 " is beyond the end of '%s'",
                      count, offset, img->path);
  return img->drv->pwrite (img->h, buf, count, offset);
}

int
image_zero (struct p2v_image *img, uint64_t count, uint64_t offset)
{
  if (img->readonly)
    return p2v_error ("'%s' is open read-only", img->path);
  if (offset > img->size || count > img->size - offset)
    return p2v_error ("zeroing beyond the end of '%s'", img->path);
  if (img->drv->zero)
    return img->drv->zero (img->h, count, offset);

  /* No fast path: write zeros. */
  return write_zeros (img->drv->pwrite, img->h, count, offset);
}

int
image_block_status (struct p2v_image *img, uint64_t offset, uint64_t count,
                    uint64_t *pnum, unsigned *flags)
{
  if (count == 0 || offset >= img->size)
    return p2v_error ("block status beyond the end of '%s'", img->path);
  count = P2V_MIN (count, img->size - offset);
  if (!img->drv->block_status) {
    *pnum = count;
    *flags = P2V_STATUS_DATA;
    return 0;
  }
  if (img->drv->block_status (img->h, offset, count, pnum, flags) == -1)
    return -1;
  /* A driver answer of 0 bytes would loop the caller forever. */
  if (*pnum == 0 || *pnum > count)
    return p2v_error ("format driver '%s' gave a bad block status for '%s'",
                      img->drv->name, img->path);
  return 0;
}

int
image_flush (struct p2v_image *img)
{
  return img->drv->flush ? img->drv->flush (img->h) : 0;
}

uint32_t
image_granularity (struct p2v_image *img)
{
  return img->drv->granularity ? img->drv->granularity (img->h) : 4096;
}

bool
image_has_zero_init (struct p2v_image *img)
{
  return img->drv->has_zero_init && img->drv->has_zero_init (img->h);
}

bool
image_can_compress (struct p2v_image *img)
{
  return img->drv->compress && img->drv->pwrite_compressed;
}
