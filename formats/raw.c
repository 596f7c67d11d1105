/* raw.c: the raw format driver: regular files (holes found with
 * SEEK_DATA/SEEK_HOLE) and block devices. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "format.h"

struct raw_handle {
  int fd;
  char *path;
  uint64_t size;
  bool is_block;
  bool zero_init;
  bool can_seek_data;
  bool can_punch;
  struct p2v_writeback wb;
  bool no_sync;                 /* see struct p2v_create_opts */
  bool readonly;
};

static int
raw_probe (const uint8_t *buf, size_t len)
{
  (void) buf;
  (void) len;
  return 1;
}

static struct raw_handle *
raw_handle_new (int fd, const char *path)
{
  struct raw_handle *h = xcalloc (1, sizeof *h);
  struct stat st;

  h->fd = fd;
  h->path = xstrdup (path);
  if (fstat (fd, &st) == -1) {
    p2v_error ("cannot stat '%s': %m", path);
    goto err;
  }
  if (S_ISBLK (st.st_mode)) {
    h->is_block = true;
    if (ioctl (fd, BLKGETSIZE64, &h->size) == -1) {
      p2v_error ("cannot get the size of block device '%s': %m", path);
      goto err;
    }
  }
  else if (S_ISREG (st.st_mode)) {
    h->size = st.st_size;
    h->can_seek_data = true;
    h->can_punch = true;
  }
  else {
    p2v_error ("'%s' is neither a regular file nor a block device", path);
    goto err;
  }
  return h;

 err:
  free (h->path);
  free (h);
  return NULL;
}

static void *
raw_open (const char *path, unsigned flags)
{
  int mode = (flags & P2V_OPEN_READONLY) ? O_RDONLY : O_RDWR;
  int fd = open (path, mode | O_CLOEXEC);
  struct raw_handle *h;

  if (fd == -1)
    return p2v_error_null ("cannot open '%s': %m", path);
  h = raw_handle_new (fd, path);
  if (!h) {
    close (fd);
    return NULL;
  }
  if (flags & P2V_OPEN_READONLY) {
    h->readonly = true;
    posix_fadvise (fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  }
  return h;
}

static void *
raw_create (const char *path, uint64_t size,
            const struct p2v_create_opts *opts)
{
  struct stat st;
  struct raw_handle *h;
  int fd;

  /* A block device is written in place: it cannot be created or renamed. */
  if (stat (path, &st) == 0 && S_ISBLK (st.st_mode)) {
    fd = open (path, O_WRONLY | O_CLOEXEC);
    if (fd == -1)
      return p2v_error_null ("cannot open '%s': %m", path);
    h = raw_handle_new (fd, path);
    if (!h)
      goto err;
    if (h->size < size) {
      p2v_error ("block device '%s' is smaller than the image (%" PRIu64
                 " < %" PRIu64 " bytes)", path, h->size, size);
      free (h->path);
      free (h);
      goto err;
    }
    h->size = size;
    h->no_sync = opts && opts->no_sync;
    return h;
  }

  fd = open (path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd == -1)
    return p2v_error_null ("cannot create '%s': %m", path);
  if (ftruncate (fd, size) == -1) {
    p2v_error ("cannot set the size of '%s': %m", path);
    goto err;
  }
  h = raw_handle_new (fd, path);
  if (!h)
    goto err;
  h->zero_init = true;
  h->no_sync = opts && opts->no_sync;
  return h;

 err:
  close (fd);
  return NULL;
}

static uint64_t
raw_get_size (void *hv)
{
  struct raw_handle *h = hv;
  return h->size;
}

static uint32_t
raw_granularity (void *hv)
{
  (void) hv;
  return 4096;
}

static bool
raw_has_zero_init (void *hv)
{
  struct raw_handle *h = hv;
  return h->zero_init;
}

static int
raw_pread (void *hv, void *buf, size_t count, uint64_t offset)
{
  struct raw_handle *h = hv;

  if (full_pread (h->fd, buf, count, offset) == -1) {
    if (errno == EIO && !h->is_block)
      return p2v_error ("cannot read '%s': file is truncated", h->path);
    return p2v_error ("cannot read '%s': %m", h->path);
  }
  return 0;
}

static int
raw_pwrite (void *hv, const void *buf, size_t count, uint64_t offset)
{
  struct raw_handle *h = hv;

  if (full_pwrite (h->fd, buf, count, offset) == -1)
    return p2v_error ("cannot write '%s': %m", h->path);
  if (!h->no_sync)
    writeback_account (h->fd, &h->wb, count);
  return 0;
}

static int
raw_zero (void *hv, uint64_t count, uint64_t offset)
{
  struct raw_handle *h = hv;

  if (h->can_punch) {
    if (fallocate (h->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                   offset, count) == 0)
      return 0;
    h->can_punch = false;
  }
  if (h->is_block) {
    uint64_t range[2] = { offset, count };
    if (ioctl (h->fd, BLKZEROOUT, range) == 0)
      return 0;
  }

  /* Fall back to writing zeros. */
  return write_zeros (raw_pwrite, h, count, offset);
}

static int
raw_block_status (void *hv, uint64_t offset, uint64_t count,
                  uint64_t *pnum, unsigned *flags)
{
  struct raw_handle *h = hv;
  off_t data, hole;

  if (!h->can_seek_data)
    goto all_data;

  data = lseek (h->fd, offset, SEEK_DATA);
  if (data == -1) {
    if (errno == ENXIO) {       /* only a hole from here to the end */
      *pnum = count;
      *flags = P2V_STATUS_ZERO;
      return 0;
    }
    h->can_seek_data = false;   /* file system without SEEK_DATA */
    goto all_data;
  }
  if ((uint64_t) data > offset) {
    *pnum = P2V_MIN (count, (uint64_t) data - offset);
    *flags = P2V_STATUS_ZERO;
    return 0;
  }
  hole = lseek (h->fd, offset, SEEK_HOLE);
  if (hole == -1 || (uint64_t) hole <= offset) {
    h->can_seek_data = false;
    goto all_data;
  }
  *pnum = P2V_MIN (count, (uint64_t) hole - offset);
  *flags = P2V_STATUS_DATA;
  return 0;

 all_data:
  *pnum = count;
  *flags = P2V_STATUS_DATA;
  return 0;
}

static int
raw_flush (void *hv)
{
  struct raw_handle *h = hv;

  if (h->no_sync)
    return 0;
  if (fdatasync (h->fd) == -1 && errno != EINVAL)
    return p2v_error ("cannot flush '%s': %m", h->path);
  return 0;
}

static int
raw_close (void *hv)
{
  struct raw_handle *h = hv;
  int r = 0;

  if (close (h->fd) == -1)
    r = p2v_error ("cannot close '%s': %m", h->path);
  free (h->path);
  free (h);
  return r;
}

const struct p2v_format p2v_format_raw = {
  .name = "raw",
  .description = "raw disk image, regular file or block device",
  .probe = raw_probe,
  .open = raw_open,
  .create = raw_create,
  .get_size = raw_get_size,
  .granularity = raw_granularity,
  .has_zero_init = raw_has_zero_init,
  .pread = raw_pread,
  .parallel_reads = true,
  .pwrite = raw_pwrite,
  .zero = raw_zero,
  .block_status = raw_block_status,
  .flush = raw_flush,
  .close = raw_close,
};
