/* io.c: full-length pread/pwrite loops, written once. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
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
