/* test-engine.c: the copy engine end to end on raw images: every
 * combination of holes, zeros and data, odd sizes, thread counts, and the
 * accounting of what was read and written. */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "unit.h"
#include "convert.h"
#include "format.h"

static char dir[] = "/tmp/p2v-unit-engine.XXXXXX";

/* Write a raw image of size bytes: a hole, then a pattern whose byte at
 * offset o is f(o), with zero runs and holes punched in. */
static char *
make_source (const char *name, uint64_t size, unsigned seed)
{
  char *path = xasprintf ("%s/%s", dir, name);
  int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  uint8_t *buf = xmalloc (65536);

  CHECK (fd >= 0);
  CHECK (ftruncate (fd, size) == 0);
  srand (seed);
  for (uint64_t off = 0; off < size; off += 65536) {
    size_t n = P2V_MIN ((uint64_t) 65536, size - off);
    int kind = rand () % 4;
    if (kind == 0)
      continue;                                  /* hole */
    for (size_t i = 0; i < n; i++)
      buf[i] = kind == 1 ? 0 : (uint8_t) (rand () >> (kind == 2 ? 24 : 8));
    CHECK (full_pwrite (fd, buf, n, off) == 0);
  }
  close (fd);
  free (buf);
  return path;
}

static void
copy_and_compare (uint64_t size, unsigned threads, unsigned seed)
{
  char *src_path = make_source ("src.img", size, seed);
  char *dst_path = xasprintf ("%s/dst.img", dir);
  struct p2v_image *src, *dst, *check;
  struct p2v_copy_opts opts = { .threads = threads, .compress_level = -1 };
  struct p2v_copy_stats st;
  uint64_t diff;

  unlink (dst_path);
  src = image_open (src_path, "raw", P2V_OPEN_READONLY);
  dst = image_create (dst_path, "raw", src ? src->size : 0, NULL);
  CHECK (src && dst);
  if (!src || !dst)
    goto out;
  CHECK (copy_image (src, dst, &opts, &st) == 0);
  CHECK (image_close (dst) == 0);
  dst = NULL;
  CHECK (st.size == size);
  CHECK (st.bytes_zero + st.bytes_plain == size);
  CHECK (st.bytes_read <= size);

  check = image_open (dst_path, NULL, P2V_OPEN_READONLY);
  CHECK (check && check->size == size);
  if (check)
    CHECK (compare_images (src, check, &diff) == 0);
  image_close (check);
 out:
  image_close (src);
  image_close (dst);
  unlink (src_path);
  unlink (dst_path);
  free (src_path);
  free (dst_path);
}

static void
test_sizes (void)
{
  static const uint64_t sizes[] = {
    0, 1, 511, 4096, 65535, 65537, 1048575, 1048576, 1048577, 5000000,
    9 * 1048576 + 12345,
  };
  for (size_t i = 0; i < ARRAY_SIZE (sizes); i++)
    for (unsigned t = 1; t <= 3; t++)
      copy_and_compare (sizes[i], t, i * 10 + t);
}

static void
test_differences_found (void)
{
  char *a = make_source ("a.img", 3000000, 42);
  char *b_path = xasprintf ("%s/b.img", dir);
  struct p2v_image *ia, *ib;
  uint64_t diff = 0;
  int fd;
  char cmd[512];

  snprintf (cmd, sizeof cmd, "cp --sparse=always %s %s", a, b_path);
  CHECK (system (cmd) == 0);
  fd = open (b_path, O_WRONLY);
  CHECK (fd >= 0 && full_pwrite (fd, "\xff", 1, 2999999) == 0);
  close (fd);
  ia = image_open (a, "raw", P2V_OPEN_READONLY);
  ib = image_open (b_path, "raw", P2V_OPEN_READONLY);
  CHECK (ia && ib);
  if (ia && ib) {
    int r = compare_images (ia, ib, &diff);
    /* The pattern may already hold 0xff there; then no difference. */
    CHECK (r == 1 ? diff == 2999999 : r == 0);
  }
  image_close (ia);
  image_close (ib);
  unlink (a);
  unlink (b_path);
  free (a);
  free (b_path);
}

static void
test_refusals (void)
{
  char *path = make_source ("r.img", 1048576, 1);
  char *dst_path = xasprintf ("%s/small.img", dir);
  struct p2v_image *src = image_open (path, "raw", P2V_OPEN_READONLY);
  struct p2v_image *dst = image_create (dst_path, "raw", 4096, NULL);
  struct p2v_copy_opts opts = { .threads = 1, .compress = true };
  struct p2v_copy_stats st;

  CHECK (src && dst);
  if (src && dst) {
    CHECK_ERROR (copy_image (src, dst, &opts, &st) == -1, "is smaller than");
    /* Writing to a read-only image is refused. */
    CHECK_ERROR (image_pwrite (src, "x", 1, 0) == -1, "read-only");
    char two[2];
    CHECK_ERROR (image_pread (src, two, 2, 1048575) == -1, "beyond the end");
  }
  image_close (dst);
  /* Creating over an existing file is refused (O_EXCL). */
  CHECK_ERROR (image_create (dst_path, "raw", 4096, NULL) == NULL,
               "cannot create");
  CHECK_ERROR (image_open (path, "nosuch", 0) == NULL, "unknown image format");
  image_close (src);
  unlink (path);
  unlink (dst_path);
  free (path);
  free (dst_path);
}

int
main (void)
{
  p2v_error_set_quiet (true);
  if (!mkdtemp (dir)) {
    perror ("mkdtemp");
    return 2;
  }
  test_sizes ();
  test_differences_found ();
  test_refusals ();
  rmdir (dir);
  return unit_finish ("test-engine");
}
