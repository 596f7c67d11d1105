/* io.c: full-length pread/pwrite loops and atomic file writes, written once. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

int
full_pread (int fd, void *buf, size_t count, uint64_t offset)
{
  char *p = buf;

  while (count > 0) {
    ssize_t r = pread (fd, p, count, (off_t) offset);
    if (r == -1) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    if (r == 0) {
      errno = EIO;              /* unexpected end of file */
      return -1;
    }
    p += r;
    count -= r;
    offset += r;
  }
  return 0;
}

int
full_pwrite (int fd, const void *buf, size_t count, uint64_t offset)
{
  const char *p = buf;

  while (count > 0) {
    ssize_t r = pwrite (fd, p, count, (off_t) offset);
    if (r == -1) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    p += r;
    count -= r;
    offset += r;
  }
  return 0;
}

int
full_write (int fd, const void *buf, size_t count)
{
  const char *p = buf;

  while (count > 0) {
    ssize_t r = write (fd, p, count);
    if (r == -1) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    p += r;
    count -= r;
  }
  return 0;
}

#define WRITEBACK_KICK (32 * 1024 * 1024)

void
writeback_account (int fd, struct p2v_writeback *wb, size_t written)
{
  wb->since_kick += written;
  if (wb->since_kick < WRITEBACK_KICK)
    return;
  wb->since_kick = 0;
  /* Only a hint: block devices and odd file systems may refuse it. */
  (void) sync_file_range (fd, 0, 0, SYNC_FILE_RANGE_WRITE);
}

static void *zeros;
static pthread_once_t zeros_once = PTHREAD_ONCE_INIT;

static void
zero_block_alloc (void)
{
  zeros = xcalloc (1, ZERO_BLOCK_SIZE);
}

const void *
zero_block (void)
{
  pthread_once (&zeros_once, zero_block_alloc);
  return zeros;
}

int
write_zeros (int (*fn) (void *h, const void *buf, size_t count,
                        uint64_t offset),
             void *h, uint64_t count, uint64_t offset)
{
  const void *z = zero_block ();

  while (count > 0) {
    size_t n = P2V_MIN (count, (uint64_t) ZERO_BLOCK_SIZE);
    if (fn (h, z, n, offset) == -1)
      return -1;
    count -= n;
    offset += n;
  }
  return 0;
}

int
write_file_atomic (const char *path, const char *text)
{
  char *tmp = xasprintf ("%s.tmp.%ld", path, (long) getpid ());
  int fd = open (tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  int r = -1;

  if (fd == -1) {
    p2v_error ("cannot create '%s': %m", tmp);
    goto out;
  }
  if (full_write (fd, text, strlen (text)) == -1 || fsync (fd) == -1) {
    p2v_error ("cannot write '%s': %m", tmp);
    close (fd);
    unlink (tmp);
    goto out;
  }
  if (close (fd) == -1 || rename (tmp, path) == -1) {
    p2v_error ("cannot replace '%s': %m", path);
    unlink (tmp);
    goto out;
  }
  r = 0;
 out:
  free (tmp);
  return r;
}
