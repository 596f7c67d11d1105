/* test-qcow2.c: the qcow2 driver.  Images from our writer are read back
 * by our reader and checked by qemu-img; images made by qemu-img are
 * read by our reader; hostile images must fail cleanly. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "unit.h"
#include "format.h"

static const struct p2v_format *drv = &p2v_format_qcow2;
static char tmpdir[] = "/tmp/p2v-test-qcow2.XXXXXX";
static bool have_qemu_img, have_qemu_io;

/* ---- helpers ---- */

static char *
tmp_path (const char *name)
{
  return xasprintf ("%s/%s", tmpdir, name);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t
rng (void)
{
  uint64_t x = rng_state;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return rng_state = x;
}

/* Test data: 64 KiB blocks that are zero, random, compressible text,
 * or zero with small islands of data every few KiB, so that every
 * cluster size sees zero, incompressible and compressible clusters. */
static void
fill_pattern (uint8_t *buf, uint64_t len, uint64_t seed)
{
  static const char text[] = "qcow2 test pattern, fairly compressible\n";

  rng_state = seed * 0x2545f4914f6cdd1dULL + 1;
  for (uint64_t off = 0; off < len; off += 65536) {
    uint64_t n = P2V_MIN (65536, len - off);
    switch (rng () % 5) {
    case 0:
      memset (buf + off, 0, n);
      break;
    case 1:
      for (uint64_t i = 0; i < n; i++)
        buf[off + i] = rng ();
      break;
    case 2:
      for (uint64_t i = 0; i < n; i++)
        buf[off + i] = text[(i + off / 7) % (sizeof text - 1)];
      break;
    default:
      memset (buf + off, 0, n);
      for (uint64_t i = 0; i < n; i += 4096 + (rng () % 8192))
        for (uint64_t j = i; j < i + 100 && j < n; j++)
          buf[off + j] = rng () | 1;
      break;
    }
  }
}

static bool
write_file (const char *path, const void *buf, uint64_t len)
{
  int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  bool ok = fd >= 0 && full_pwrite (fd, buf, len, 0) == 0
    && ftruncate (fd, len) == 0;
  if (fd >= 0)
    close (fd);
  return ok;
}

static uint8_t *
read_file (const char *path, uint64_t *len)
{
  int fd = open (path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  uint8_t *buf = NULL;

  if (fd >= 0 && fstat (fd, &st) == 0) {
    buf = xmalloc (st.st_size + 1);
    if (full_pread (fd, buf, st.st_size, 0) == 0)
      *len = st.st_size;
    else {
      free (buf);
      buf = NULL;
    }
  }
  if (fd >= 0)
    close (fd);
  return buf;
}

static bool
copy_file (const char *src, const char *dst)
{
  uint64_t len;
  uint8_t *buf = read_file (src, &len);
  bool ok = buf && write_file (dst, buf, len);
  free (buf);
  return ok;
}

static void
patch (const char *path, uint64_t off, const void *buf, size_t len)
{
  int fd = open (path, O_WRONLY | O_CLOEXEC);
  CHECK (fd >= 0 && full_pwrite (fd, buf, len, off) == 0);
  if (fd >= 0)
    close (fd);
}

static void
patch_be32 (const char *path, uint64_t off, uint32_t v)
{
  uint8_t b[4] = { v >> 24, v >> 16, v >> 8, v };
  patch (path, off, b, 4);
}

static void
patch_be64 (const char *path, uint64_t off, uint64_t v)
{
  uint8_t b[8];
  for (int i = 0; i < 8; i++)
    b[i] = v >> (56 - 8 * i);
  patch (path, off, b, 8);
}

static uint64_t
peek_be64 (const char *path, uint64_t off)
{
  int fd = open (path, O_RDONLY | O_CLOEXEC);
  uint8_t b[8] = { 0 };
  uint64_t v = 0;

  CHECK (fd >= 0 && full_pread (fd, b, 8, off) == 0);
  if (fd >= 0)
    close (fd);
  for (int i = 0; i < 8; i++)
    v = v << 8 | b[i];
  return v;
}

/* Runs a shell command; returns its exit status (-1 if it did not exit)
 * and, if out is given, its output. */
static int P2V_PRINTF (3, 4)
run (char *out, size_t outlen, const char *fmt, ...)
{
  va_list ap;
  char *cmd, *full;
  char discard[4096];
  FILE *fp;
  size_t n = 0;
  int st;

  va_start (ap, fmt);
  if (vasprintf (&cmd, fmt, ap) == -1)
    abort ();
  va_end (ap);
  full = xasprintf ("%s 2>&1", cmd);
  fp = popen (full, "r");
  if (!out) {
    out = discard;
    outlen = sizeof discard;
  }
  if (fp) {
    size_t r;
    while ((r = fread (out + n, 1, outlen - 1 - n, fp)) > 0)
      n += r;
    while (fread (discard, 1, sizeof discard, fp) > 0)
      ;
  }
  out[n] = '\0';
  st = fp ? pclose (fp) : -1;
  free (cmd);
  free (full);
  return st != -1 && WIFEXITED (st) ? WEXITSTATUS (st) : -1;
}

/* qemu-img check finds no errors and no leaks. */
static void
qemu_check (const char *path)
{
  char out[8192];
  int st;

  if (!have_qemu_img)
    return;
  st = run (out, sizeof out, "qemu-img check -f qcow2 '%s'", path);
  CHECK (st == 0);
  CHECK (strstr (out, "No errors were found") != NULL);
  CHECK (strstr (out, "leaked") == NULL);
  if (st != 0 || !strstr (out, "No errors were found"))
    fprintf (stderr, "qemu-img check '%s':\n%s\n", path, out);
}

/* qemu-img reads the image as the same bytes as the raw file. */
static void
qemu_compare (const char *qcow2, const uint8_t *data, uint64_t size)
{
  char *raw;
  char out[4096];
  int st;

  if (!have_qemu_img)
    return;
  raw = xasprintf ("%s.raw", qcow2);
  CHECK (write_file (raw, data, size));
  st = run (out, sizeof out, "qemu-img compare -f qcow2 -F raw '%s' '%s'",
            qcow2, raw);
  CHECK (st == 0);
  if (st != 0)
    fprintf (stderr, "qemu-img compare '%s':\n%s\n", qcow2, out);
  unlink (raw);
  free (raw);
}

/* Checks an open handle against the expected content: one big read,
 * reads of odd sizes at odd offsets, and block_status (every range it
 * calls zero must be zero; the ranges must tile the disk). */
static void
check_content (void *h, const uint8_t *data, uint64_t size)
{
  uint8_t *buf = xmalloc (size + 1);
  uint64_t off, pnum;
  unsigned flags;
  bool ok = true;

  /* Our writer rounds the virtual size up to whole sectors, as qemu
   * does: the tail reads as zeros. */
  uint64_t hsize = drv->get_size (h);
  CHECK (hsize == size || hsize == ROUND_UP (size, 512));
  if (hsize > size && hsize - size < 512) {
    CHECK (drv->pread (h, buf, hsize - size, size) == 0);
    CHECK (buffer_is_zero (buf, hsize - size));
  }
  if (size > 0) {
    CHECK (drv->pread (h, buf, size, 0) == 0);
    CHECK (memcmp (buf, data, size) == 0);
  }
  for (int i = 0; i < 50 && size > 0; i++) {
    uint64_t o = rng () % size;
    uint64_t n = 1 + rng () % P2V_MIN (size - o, 300000);
    if (drv->pread (h, buf, n, o) != 0 || memcmp (buf, data + o, n) != 0)
      ok = false;
  }
  CHECK (ok);

  for (off = 0; off < size; off += pnum) {
    if (drv->block_status (h, off, size - off, &pnum, &flags) == -1
        || pnum == 0 || pnum > size - off) {
      ok = false;
      break;
    }
    if ((flags & P2V_STATUS_ZERO) && !buffer_is_zero (data + off, pnum))
      ok = false;
  }
  CHECK (ok);
  CHECK (off == size);
  free (buf);
}

static void
check_file_content (const char *path, const uint8_t *data, uint64_t size)
{
  void *h = drv->open (path, P2V_OPEN_READONLY);

  CHECK (h != NULL);
  if (!h) {
    fprintf (stderr, "open '%s': %s\n", path, p2v_last_error ());
    return;
  }
  check_content (h, data, size);
  CHECK (drv->close (h) == 0);
}

/* Counts bytes reported zero by block_status. */
static uint64_t
zero_bytes (const char *path)
{
  void *h = drv->open (path, P2V_OPEN_READONLY);
  uint64_t size, off, pnum, zero = 0;
  unsigned flags;

  if (!h)
    return 0;
  size = drv->get_size (h);
  for (off = 0; off < size; off += pnum) {
    if (drv->block_status (h, off, size - off, &pnum, &flags) == -1)
      break;
    if (flags & P2V_STATUS_ZERO)
      zero += pnum;
  }
  drv->close (h);
  return zero;
}

/* ---- our writer ---- */

enum wmode { W_PLAIN, W_COMPRESSED, W_MIXED };

static bool
write_image (const char *path, const uint8_t *data, uint64_t size,
             uint32_t cs, enum wmode mode, size_t chunk)
{
  struct p2v_create_opts opts = { .cluster_size = cs };
  void *h = drv->create (path, size, &opts);
  bool ok = true;

  if (!h) {
    fprintf (stderr, "create '%s': %s\n", path, p2v_last_error ());
    return false;
  }
  if (drv->granularity (h) != (cs ? cs : 65536) || !drv->has_zero_init (h))
    ok = false;

  if (mode == W_PLAIN) {
    for (uint64_t off = 0; off < size && ok; off += chunk)
      if (drv->pwrite (h, data + off, P2V_MIN (chunk, size - off), off) != 0)
        ok = false;
  }
  else {
    uint8_t *out = xmalloc (cs);
    uint64_t i = 0;
    for (uint64_t off = 0; off < size && ok; off += cs, i++) {
      size_t len = P2V_MIN (cs, size - off);
      ssize_t clen;

      if (buffer_is_zero (data + off, len))
        continue;
      if (mode == W_MIXED && i % 3 == 0) {
        if (drv->pwrite (h, data + off, len, off) != 0)
          ok = false;
        continue;
      }
      clen = drv->compress (h, data + off, len, out, cs, i % 2 ? 6 : -1);
      if (clen < 0)
        ok = false;
      else if (clen == 0) {
        if (drv->pwrite (h, data + off, len, off) != 0)
          ok = false;
      }
      else if (drv->pwrite_compressed (h, out, clen, off, len) != 0)
        ok = false;
    }
    free (out);
  }
  if (!ok)
    fprintf (stderr, "write '%s': %s\n", path, p2v_last_error ());
  if (drv->flush (h) != 0)
    ok = false;
  if (drv->close (h) != 0)
    ok = false;
  return ok;
}

static void
test_writer (uint32_t cs, uint64_t size, enum wmode mode, size_t chunk)
{
  static const char *names[] = { "plain", "compressed", "mixed" };
  char *name = xasprintf ("w-%" PRIu32 "-%" PRIu64 "-%s.qcow2", cs, size,
                          names[mode]);
  char *path = tmp_path (name);
  uint8_t *data = xmalloc (size + 1);

  fill_pattern (data, size, cs + size);
  CHECK (write_image (path, data, size, cs, mode, chunk));
  check_file_content (path, data, size);
  qemu_check (path);
  qemu_compare (path, data, size);
  /* Zero clusters were not allocated. */
  if (cs <= 65536 && size >= 4 << 20)
    CHECK (zero_bytes (path) > 0);
  unlink (path);
  free (data);
  free (path);
  free (name);
}

static void
test_writer_sizes (void)
{
  /* 512-byte clusters have 128 KiB refcount regions, 4 KiB ones 8 MiB,
   * so these cross many region boundaries. */
  test_writer (512, (3 << 20) + 1000, W_PLAIN, 100000);
  test_writer (512, (3 << 20) + 1000, W_COMPRESSED, 0);
  test_writer (512, (1 << 20) + 512, W_MIXED, 0);
  test_writer (4096, (9 << 20) + 3, W_PLAIN, 1 << 20);
  test_writer (4096, (9 << 20) + 3, W_COMPRESSED, 0);
  test_writer (4096, (5 << 20) - 100, W_MIXED, 0);
  test_writer (65536, (6 << 20) + 4321, W_PLAIN, 2 << 20);
  test_writer (65536, (6 << 20) + 4321, W_PLAIN, 3000);
  test_writer (65536, (6 << 20) + 4321, W_COMPRESSED, 0);
  test_writer (65536, (6 << 20), W_MIXED, 0);
  test_writer (65536, 1000, W_COMPRESSED, 0);
  test_writer (2 << 20, (7 << 20) + 12345, W_PLAIN, 1 << 20);
  test_writer (2 << 20, (5 << 20) + 12345, W_COMPRESSED, 0);
  test_writer (2 << 20, (4 << 20), W_MIXED, 0);
}

static void
test_writer_empty (void)
{
  char *path = tmp_path ("empty.qcow2");
  char *path2 = tmp_path ("unwritten.qcow2");
  uint8_t *zeros = xcalloc (1, 1 << 20);
  void *h;

  h = drv->create (path, 0, NULL);
  CHECK (h != NULL);
  if (h)
    CHECK (drv->close (h) == 0);
  qemu_check (path);
  h = drv->open (path, P2V_OPEN_READONLY);
  CHECK (h && drv->get_size (h) == 0);
  if (h)
    drv->close (h);

  h = drv->create (path2, 1 << 20, NULL);
  CHECK (h != NULL);
  if (h) {
    /* Zeros are not allocated; zeroing unwritten space is a no-op. */
    CHECK (drv->pwrite (h, zeros, 1 << 20, 0) == 0);
    CHECK (drv->zero (h, 1 << 20, 0) == 0);
    CHECK (drv->close (h) == 0);
  }
  check_file_content (path2, zeros, 1 << 20);
  CHECK (zero_bytes (path2) == 1 << 20);
  qemu_check (path2);
  qemu_compare (path2, zeros, 1 << 20);

  /* The file must not exist yet. */
  CHECK (drv->create (path2, 1 << 20, NULL) == NULL);

  unlink (path);
  unlink (path2);
  free (zeros);
  free (path);
  free (path2);
}

static void
test_create_errors (void)
{
  char *path = tmp_path ("bad.qcow2");
  struct p2v_create_opts opts = { .cluster_size = 1000 };

  CHECK_ERROR (drv->create (path, 1 << 20, &opts) == NULL, "cluster size");
  opts.cluster_size = 256;
  CHECK_ERROR (drv->create (path, 1 << 20, &opts) == NULL, "cluster size");
  opts.cluster_size = 4 << 20;
  CHECK_ERROR (drv->create (path, 1 << 20, &opts) == NULL, "cluster size");
  opts.cluster_size = 512;
  CHECK_ERROR (drv->create (path, 1ULL << 40, &opts) == NULL, "too large");
  CHECK (access (path, F_OK) == -1);
  free (path);
}

/* Random pwrite/zero/compressed writes against a model of the disk,
 * read back through the writer's own handle, then after closing. */
static void
test_writer_random (uint32_t cs, uint64_t size, int ops)
{
  char *name = xasprintf ("random-%" PRIu32 ".qcow2", cs);
  char *path = tmp_path (name);
  struct p2v_create_opts opts = { .cluster_size = cs };
  uint8_t *model = xcalloc (1, size);
  uint8_t *src = xmalloc (size);
  uint8_t *out = xmalloc (cs);
  void *h = drv->create (path, size, &opts);
  bool ok = true;

  CHECK (h != NULL);
  if (!h)
    goto out;
  fill_pattern (src, size, 42 + cs);
  rng_state = 12345 + cs;
  for (int i = 0; i < ops && ok; i++) {
    uint64_t off = rng () % size;
    uint64_t len = 1 + rng () % P2V_MIN (size - off, 5 * (uint64_t) cs);
    switch (rng () % 6) {
    case 0: case 1:             /* data */
      memcpy (model + off, src + (off + i * 977) % (size - len + 1), len);
      ok = drv->pwrite (h, model + off, len, off) == 0;
      break;
    case 2:                     /* zeros, written */
      memset (model + off, 0, len);
      ok = drv->pwrite (h, model + off, len, off) == 0;
      break;
    case 3:                     /* zeroing */
      memset (model + off, 0, len);
      ok = drv->zero (h, len, off) == 0;
      break;
    default: {                  /* a compressed cluster */
      uint64_t c = off / cs * cs;
      size_t clen_in = P2V_MIN (cs, size - c);
      ssize_t clen;

      memcpy (model + c, src + (c + i * 131) % (size - clen_in + 1), clen_in);
      if (rng () % 2)
        memset (model + c, 'x', clen_in / 2);
      clen = drv->compress (h, model + c, clen_in, out, cs, -1);
      ok = clen >= 0;
      if (clen > 0)
        ok = drv->pwrite_compressed (h, out, clen, c, clen_in) == 0;
      else if (clen == 0)
        ok = drv->pwrite (h, model + c, clen_in, c) == 0;
      break;
    }
    }
    if (i == ops / 3)
      ok = ok && drv->flush (h) == 0;
    if (i == ops / 2) {
      /* The writer reads its own, partly unflushed, image. */
      check_content (h, model, size);
    }
  }
  if (!ok)
    fprintf (stderr, "random writes: %s\n", p2v_last_error ());
  CHECK (ok);
  check_content (h, model, size);
  CHECK (drv->close (h) == 0);
  check_file_content (path, model, size);
  qemu_check (path);
  qemu_compare (path, model, size);

 out:
  unlink (path);
  free (out);
  free (src);
  free (model);
  free (name);
  free (path);
}

/* A multi-terabyte disk costs little: memory and metadata grow with
 * what is written, not with the virtual size. */
static void
test_writer_huge (void)
{
  char *path = tmp_path ("huge.qcow2");
  const uint64_t size = (4ULL << 40) + 1234;
  uint8_t *buf = xmalloc (1 << 20), *got = xmalloc (1 << 20);
  uint64_t offs[] = { 0, 1ULL << 40, (3ULL << 40) + 65536 * 7 + 100,
                      size - (1 << 20) };
  void *h = drv->create (path, size, NULL);
  struct stat st;

  CHECK (h != NULL);
  if (!h)
    goto out;
  fill_pattern (buf, 1 << 20, 7);
  memset (buf, 0xab, 1000);
  for (size_t i = 0; i < ARRAY_SIZE (offs); i++)
    CHECK (drv->pwrite (h, buf, 1 << 20, offs[i]) == 0);
  CHECK (drv->close (h) == 0);
  CHECK (stat (path, &st) == 0 && st.st_size < (16 << 20));

  h = drv->open (path, P2V_OPEN_READONLY);
  CHECK (h != NULL);
  if (h) {
    uint64_t pnum;
    unsigned flags;

    for (size_t i = 0; i < ARRAY_SIZE (offs); i++) {
      CHECK (drv->pread (h, got, 1 << 20, offs[i]) == 0);
      CHECK (memcmp (got, buf, 1 << 20) == 0);
    }
    CHECK (drv->block_status (h, 1 << 20, size - (1 << 20), &pnum,
                              &flags) == 0);
    CHECK (flags == P2V_STATUS_ZERO && pnum == (1ULL << 40) - (1 << 20));
    drv->close (h);
  }
  qemu_check (path);
 out:
  unlink (path);
  free (buf);
  free (got);
  free (path);
}

/* Small clusters and a big disk: the L1 and refcount tables span many
 * clusters and several refcount regions, and the refcount table is at
 * qemu's 8 MiB limit. */
static void
test_writer_big_tables (uint64_t size)
{
  char *path = tmp_path ("bigtables.qcow2");
  struct p2v_create_opts opts = { .cluster_size = 512 };
  uint8_t buf[3000], got[3000];
  uint64_t offs[] = { 0, 777777, size / 3, size - sizeof buf };
  void *h = drv->create (path, size, &opts);

  CHECK (h != NULL);
  if (!h)
    goto out;
  for (size_t i = 0; i < sizeof buf; i++)
    buf[i] = i * 13 + 1;
  for (size_t i = 0; i < ARRAY_SIZE (offs); i++)
    CHECK (drv->pwrite (h, buf, sizeof buf, offs[i]) == 0);
  CHECK (drv->close (h) == 0);
  h = drv->open (path, P2V_OPEN_READONLY);
  CHECK (h != NULL);
  if (h) {
    for (size_t i = 0; i < ARRAY_SIZE (offs); i++) {
      CHECK (drv->pread (h, got, sizeof got, offs[i]) == 0);
      CHECK (memcmp (got, buf, sizeof buf) == 0);
    }
    drv->close (h);
  }
  qemu_check (path);
 out:
  unlink (path);
  free (path);
}

static void
test_writer_errors (void)
{
  char *path = tmp_path ("errors.qcow2");
  struct p2v_create_opts opts = { .cluster_size = 4096 };
  uint8_t buf[8192], out[4096];
  void *h = drv->create (path, 10000, &opts);
  int i;

  CHECK (h != NULL);
  if (!h)
    goto out;
  memset (buf, 'a', sizeof buf);
  CHECK_ERROR (drv->compress (h, buf, 4096, out, sizeof out, 0) == -1,
               "compression level");
  CHECK_ERROR (drv->compress (h, buf, 4096, out, sizeof out, 10) == -1,
               "compression level");
  CHECK_ERROR (drv->compress (h, buf, 4097, out, sizeof out, 1) == -1,
               "one cluster");
  /* Not smaller by a sector, or not fitting the caller's buffer: store
   * plain. */
  CHECK (drv->compress (h, buf, 4096, out, 10, 1) == 0);
  CHECK (drv->compress (h, buf, 4096, out, sizeof out, 1) > 0);
  for (size_t j = 0; j < 4096; j++)
    buf[j] = rng ();
  for (size_t j = 0; j < 3700; j += 4)
    buf[j] = 0;
  CHECK (drv->compress (h, buf, 4096, out, sizeof out, 9) == 0);
  memset (buf, 'a', sizeof buf);
  CHECK_ERROR (drv->pwrite_compressed (h, out, 10, 100, 4096) == -1,
               "whole cluster");
  CHECK_ERROR (drv->pwrite_compressed (h, out, 10, 4096, 4000) == -1,
               "whole cluster");
  CHECK_ERROR (drv->pwrite_compressed (h, out, 10, 8192, 4096) == -1,
               "whole cluster");
  CHECK_ERROR (drv->pwrite_compressed (h, out, 0, 4096, 4096) == -1,
               "compressed length");
  CHECK_ERROR (drv->pwrite (h, buf, 100, 9950) == -1, "beyond the end");
  CHECK_ERROR (drv->zero (h, 100, 9950) == -1, "beyond the end");
  /* The last, short cluster (10000 - 8192 bytes) compresses padded. */
  {
    ssize_t clen = drv->compress (h, buf, 10000 - 8192, out, sizeof out, 9);
    CHECK (clen > 0);
    CHECK (drv->pwrite_compressed (h, out, clen, 8192, 10000 - 8192) == 0);
  }
  CHECK (drv->close (h) == 0);
  qemu_check (path);
  unlink (path);

  /* Rewriting the same cluster over and over appends each time: the
   * refcount table reserved at creation finally runs out, cleanly. */
  opts.cluster_size = 512;
  h = drv->create (path, 512, &opts);
  CHECK (h != NULL);
  if (!h)
    goto out;
  for (i = 0; i < 100000; i++) {
    buf[0] = i | 1;
    if (drv->pwrite (h, buf, 512, 0) == -1 || drv->zero (h, 512, 0) == -1)
      break;
  }
  CHECK (i < 100000);
  CHECK (strstr (p2v_last_error (), "outgrown") != NULL);
  CHECK (drv->close (h) == 0);
  qemu_check (path);
 out:
  unlink (path);
  free (path);
}

/* ---- images made by qemu ---- */

static void
test_qemu_convert (const uint8_t *data, uint64_t size, const char *raw,
                   const char *name, const char *options)
{
  char *path = tmp_path (name);
  char out[4096];
  int st = run (out, sizeof out, "qemu-img convert -f raw -O qcow2 %s '%s' '%s'",
                options, raw, path);

  CHECK (st == 0);
  if (st != 0) {
    fprintf (stderr, "qemu-img convert %s: %s\n", options, out);
    free (path);
    return;
  }
  check_file_content (path, data, size);
  unlink (path);
  free (path);
}

static void
test_qemu_images (void)
{
  const uint64_t size = (5 << 20) + 1536;
  uint8_t *data = xmalloc (size);
  char *raw = tmp_path ("src.raw");

  if (!have_qemu_img) {
    printf ("test-qcow2: qemu-img not found, skipping qemu-made images\n");
    free (data);
    free (raw);
    return;
  }
  fill_pattern (data, size, 99);
  /* A run of zeros long enough to be whole 2 MiB clusters. */
  memset (data + (1 << 20), 0, 4 << 20);
  CHECK (write_file (raw, data, size));

  test_qemu_convert (data, size, raw, "q-512.qcow2", "-o cluster_size=512");
  test_qemu_convert (data, size, raw, "q-4k.qcow2", "-o cluster_size=4096");
  test_qemu_convert (data, size, raw, "q-64k.qcow2", "");
  test_qemu_convert (data, size, raw, "q-2m.qcow2", "-o cluster_size=2M");
  test_qemu_convert (data, size, raw, "q-c.qcow2", "-c");
  test_qemu_convert (data, size, raw, "q-c512.qcow2",
                     "-c -o cluster_size=512");
  test_qemu_convert (data, size, raw, "q-c4k.qcow2",
                     "-c -o cluster_size=4096");
  test_qemu_convert (data, size, raw, "q-c2m.qcow2", "-c -o cluster_size=2M");
  test_qemu_convert (data, size, raw, "q-v2.qcow2", "-o compat=0.10");
  test_qemu_convert (data, size, raw, "q-v2c.qcow2", "-c -o compat=0.10");
  test_qemu_convert (data, size, raw, "q-ext.qcow2", "-o extended_l2=on");
  test_qemu_convert (data, size, raw, "q-ext16k.qcow2",
                     "-o extended_l2=on,cluster_size=16384");
  test_qemu_convert (data, size, raw, "q-ext2m.qcow2",
                     "-o extended_l2=on,cluster_size=2M");
  test_qemu_convert (data, size, raw, "q-extc.qcow2", "-c -o extended_l2=on");
  test_qemu_convert (data, size, raw, "q-lazy.qcow2",
                     "-o lazy_refcounts=on,refcount_bits=64");

  unlink (raw);
  free (raw);
  free (data);
}

/* Images written by qemu-io: zero clusters, preallocated metadata, and
 * subclusters of extended L2 entries. */
static void
test_qemu_io (const char *name, const char *create_opts)
{
  const uint64_t size = 4 << 20;
  uint8_t *data = xcalloc (1, size);
  char *path = tmp_path (name);
  char out[4096];
  int st;

  st = run (out, sizeof out, "qemu-img create -f qcow2 %s '%s' %" PRIu64,
            create_opts, path, size);
  CHECK (st == 0);
  st = run (out, sizeof out,
            "qemu-io -f qcow2 '%s'"
            " -c 'write -P 0xaa 0 1M'"
            " -c 'write -z 256k 128k'"
            " -c 'write -z 1M 1M'"
            " -c 'write -P 0x55 3M 64k'"
            " -c 'write -P 0x11 3200k 6k'"
            " -c 'write -z 3202k 1k'"
            " -c 'write -P 0x22 4092k 4k'", path);
  CHECK (st == 0);
  if (st != 0)
    fprintf (stderr, "qemu-io: %s\n", out);
  memset (data, 0xaa, 1 << 20);
  memset (data + (256 << 10), 0, 128 << 10);
  memset (data + (3 << 20), 0x55, 64 << 10);
  memset (data + (3200 << 10), 0x11, 6 << 10);
  memset (data + (3202 << 10), 0, 1 << 10);
  memset (data + (4092 << 10), 0x22, 4 << 10);
  check_file_content (path, data, size);
  /* Version 2 has no zero flag: qemu writes zeros there instead. */
  CHECK (zero_bytes (path) >= (1 << 20));
  unlink (path);
  free (path);
  free (data);
}

static void
test_qemu_io_images (void)
{
  if (!have_qemu_img || !have_qemu_io) {
    printf ("test-qcow2: qemu-io not found, skipping zero-cluster images\n");
    return;
  }
  test_qemu_io ("io.qcow2", "");
  test_qemu_io ("io-ext.qcow2", "-o extended_l2=on");
  test_qemu_io ("io-v2.qcow2", "-o compat=0.10");
  test_qemu_io ("io-prealloc.qcow2", "-o preallocation=metadata");
  test_qemu_io ("io-4k.qcow2", "-o cluster_size=4096");
}

/* An existing image opened read-write takes writes to its allocated
 * clusters and refuses anything that would need new metadata. */
static void
test_inplace (void)
{
  const uint64_t size = 2 << 20;
  uint8_t *data = xcalloc (1, size), *buf = xmalloc (200000);
  char *raw = tmp_path ("inplace.raw"), *path = tmp_path ("inplace.qcow2");
  char *cpath = tmp_path ("inplace-c.qcow2");
  void *h;

  if (!have_qemu_img) {
    printf ("test-qcow2: qemu-img not found, skipping in-place writes\n");
    goto out;
  }
  fill_pattern (data, size, 5);
  memset (data, 1, 1 << 20);            /* first MiB allocated */
  memset (data + (1 << 20), 0, 1 << 20); /* second MiB not */
  CHECK (write_file (raw, data, size));
  CHECK (run (NULL, 0, "qemu-img convert -O qcow2 '%s' '%s'", raw, path) == 0);
  CHECK (run (NULL, 0, "qemu-img convert -c -O qcow2 '%s' '%s'", raw,
              cpath) == 0);

  h = drv->open (path, 0);
  CHECK (h != NULL);
  if (h) {
    CHECK (!drv->has_zero_init (h));
    memset (buf, 0x77, 200000);
    CHECK (drv->pwrite (h, buf, 200000, 12345) == 0);
    memcpy (data + 12345, buf, 200000);
    CHECK (drv->zero (h, 70000, 300000) == 0);
    memset (data + 300000, 0, 70000);
    /* Zeros where there is nothing need no allocation... */
    CHECK (drv->pwrite (h, data + (1 << 20), 100000, (1 << 20) + 5) == 0);
    CHECK (drv->zero (h, 1 << 20, 1 << 20) == 0);
    /* ...but data does. */
    CHECK_ERROR (drv->pwrite (h, buf, 100, (1 << 20) + 5) == -1,
                 "not supported");
    CHECK_ERROR (drv->pwrite_compressed (h, buf, 100, 0, 65536) == -1,
                 "compressed");
    check_content (h, data, size);
    CHECK (drv->flush (h) == 0);
    CHECK (drv->close (h) == 0);
  }
  check_file_content (path, data, size);
  qemu_check (path);
  qemu_compare (path, data, size);

  /* Writing in place makes dirty bitmaps stale: the autoclear bit that
   * vouches for them must go. */
  if (run (NULL, 0, "qemu-img bitmap --add '%s' bm0", path) == 0) {
    CHECK (peek_be64 (path, 88) == 1);
    h = drv->open (path, 0);
    CHECK (h != NULL);
    if (h) {
      CHECK (peek_be64 (path, 88) == 1);
      CHECK (drv->pwrite (h, buf, 1000, 5000) == 0);
      memcpy (data + 5000, buf, 1000);
      CHECK (drv->close (h) == 0);
    }
    CHECK (peek_be64 (path, 88) == 0);
    check_file_content (path, data, size);
  }
  else
    printf ("test-qcow2: qemu-img bitmap failed, skipping autoclear test\n");

  h = drv->open (cpath, 0);
  CHECK (h != NULL);
  if (h) {
    CHECK_ERROR (drv->pwrite (h, buf, 100, 0) == -1, "compressed");
    CHECK (drv->close (h) == 0);
  }
  h = drv->open (cpath, P2V_OPEN_READONLY);
  CHECK (h != NULL);
  if (h) {
    CHECK_ERROR (drv->pwrite (h, buf, 100, 0) == -1, "read-only");
    CHECK_ERROR (drv->pread (h, buf, 100, size - 50) == -1, "beyond the end");
    CHECK (drv->close (h) == 0);
  }
 out:
  unlink (raw);
  unlink (path);
  unlink (cpath);
  free (raw);
  free (path);
  free (cpath);
  free (data);
  free (buf);
}

/* ---- hostile images ---- */

static char *base_path, *hostile_path;
static uint64_t base_l1, base_rt, base_l2, base_coffset;

static int
open_fails (const char *path, unsigned flags)
{
  void *h = drv->open (path, flags);
  if (h) {
    drv->close (h);
    return 0;
  }
  return 1;
}

/* Reading the whole image fails (after opening fine). */
static int
read_fails (const char *path)
{
  void *h = drv->open (path, P2V_OPEN_READONLY);
  uint8_t *buf;
  int r;

  if (!h)
    return 0;
  buf = xmalloc (drv->get_size (h) + 1);
  r = drv->pread (h, buf, drv->get_size (h), 0) == -1;
  drv->close (h);
  free (buf);
  return r;
}

static const char *
fresh (void)
{
  CHECK (copy_file (base_path, hostile_path));
  return hostile_path;
}

static void
make_base (void)
{
  struct p2v_create_opts opts = { .cluster_size = 65536 };
  uint8_t *buf = xmalloc (4 * 65536), *out = xmalloc (65536);
  void *h;
  ssize_t clen;

  base_path = tmp_path ("base.qcow2");
  hostile_path = tmp_path ("hostile.qcow2");
  h = drv->create (base_path, 1 << 20, &opts);
  CHECK (h != NULL);
  if (!h)
    return;
  fill_pattern (buf, 4 * 65536, 3);
  memset (buf, 0x5a, 4 * 65536);
  CHECK (drv->pwrite (h, buf, 4 * 65536, 0) == 0);
  memset (buf, 'c', 65536);
  clen = drv->compress (h, buf, 65536, out, 65536, -1);
  CHECK (clen > 0);
  CHECK (drv->pwrite_compressed (h, out, clen, 5 * 65536, 65536) == 0);
  CHECK (drv->close (h) == 0);
  free (buf);
  free (out);

  base_l1 = peek_be64 (base_path, 40);
  base_rt = peek_be64 (base_path, 48);
  base_l2 = peek_be64 (base_path, base_l1) & 0x00fffffffffffe00ULL;
  base_coffset = peek_be64 (base_path, base_l2 + 5 * 8)
    & ((1ULL << 54) - 1);
  CHECK (base_l1 % 65536 == 0 && base_l1 > 0);
  CHECK (base_rt % 65536 == 0 && base_rt > 0);
  CHECK (base_l2 % 65536 == 0 && base_l2 > 0);
  CHECK (base_coffset > 0);
  CHECK (!open_fails (base_path, P2V_OPEN_READONLY));
  CHECK (!read_fails (base_path));
  qemu_check (base_path);
}

static void
test_hostile (void)
{
  const char *p;
  uint8_t buf[200];
  uint64_t len;
  uint8_t *whole;

  make_base ();

  /* Truncated files. */
  whole = read_file (base_path, &len);
  CHECK (whole != NULL);
  if (!whole)
    return;
  CHECK (write_file (hostile_path, whole, 50));
  CHECK_ERROR (open_fails (hostile_path, P2V_OPEN_READONLY), "truncated");
  CHECK (write_file (hostile_path, whole, 90));
  CHECK_ERROR (open_fails (hostile_path, P2V_OPEN_READONLY), "truncated");
  CHECK (write_file (hostile_path, whole, 0));
  CHECK_ERROR (open_fails (hostile_path, P2V_OPEN_READONLY), "truncated");
  /* Cut right after the tables: the data clusters are gone. */
  CHECK (write_file (hostile_path, whole, base_l2 + 65536));
  CHECK_ERROR (read_fails (hostile_path), "past the end");
  free (whole);

  p = fresh ();
  patch (p, 0, "QFI\xfa", 4);
  CHECK_ERROR (open_fails (p, P2V_OPEN_READONLY), "bad magic");

  p = fresh ();
  patch_be32 (p, 4, 1);
  CHECK_ERROR (open_fails (p, P2V_OPEN_READONLY), "version 1");
  patch_be32 (p, 4, 4);
  CHECK_ERROR (open_fails (p, P2V_OPEN_READONLY), "version 4");

  p = fresh ();
  patch_be32 (p, 20, 8);
  CHECK_ERROR (open_fails (p, P2V_OPEN_READONLY), "cluster size");
  patch_be32 (p, 20, 30);
  CHECK_ERROR (open_fails (p, P2V_OPEN_READONLY), "cluster size");

  p = fresh ();
  patch_be64 (p, 24, 1ULL << 62);
  CHECK_ERROR (open_fails (p, P2V_OPEN_READONLY), "too large");
  patch_be64 (p, 24, UINT64_MAX);
  CHECK_ERROR (open_fails (p, P2V_OPEN_READONLY), "too large");
  /* Larger than the L1 table can map. */
  patch_be64 (p, 24, 1ULL << 40);
  CHECK_ERROR (open_fails (p, P2V_OPEN_READONLY), "too small");

  p = fresh ();
  patch_be64 (p, 40, 1ULL << 40);
  CHECK_ERROR (open_fails (p, P2V_OPEN_READONLY), "past the end");
  patch_be64 (p, 40, base_l1 + 8);
  CHECK_ERROR (open_fails (p, P2V_OPEN_READONLY), "not cluster aligned");
  patch_be64 (p, 40, 0);
  CHECK_ERROR (open_fails (p, P2V_OPEN_READONLY), "overlaps the header");
  patch_be64 (p, 40, UINT64_MAX & ~0xffffULL);
  CHECK_ERROR (open_fails (p, P2V_OPEN_READONLY), "past the end");

  p = fresh ();
  patch_be32 (p, 36, 0x10000000);
  CHECK_ERROR (open_fails (p, P2V_OPEN_READONLY), "too large");
  patch_be32 (p, 36, 0);
  CHECK_ERROR (open_fails (p, P2V_OPEN_READONLY), "too small");
  /* Valid count, but the table would run past the end of the file. */
  patch_be32 (p, 36, 1 << 20);
  CHECK_ERROR (open_fails (p, P2V_OPEN_READONLY), "past the end");

  p = fresh ();
  patch_be64 (p, 48, 1ULL << 40);
  CHECK_ERROR (open_fails (p, P2V_OPEN_READONLY), "refcount table");
  CHECK_ERROR (open_fails (p, P2V_OPEN_READONLY), "past the end");
  patch_be64 (p, 48, base_rt + 512);
  CHECK_ERROR (open_fails (p, P2V_OPEN_READONLY), "not cluster aligned");
  patch_be64 (p, 48, base_rt);
  patch_be32 (p, 56, 0);
  CHECK_ERROR (open_fails (p, P2V_OPEN_READONLY), "no refcount table");
  patch_be32 (p, 56, 1000);
  CHECK_ERROR (open_fails (p, P2V_OPEN_READONLY), "too large");

  /* L1 entry past the end of the file / unaligned. */
  p = fresh ();
  patch_be64 (p, base_l1, (1ULL << 63) | (1ULL << 40));
  CHECK (!open_fails (p, P2V_OPEN_READONLY));
  CHECK_ERROR (read_fails (p), "past the end");
  patch_be64 (p, base_l1, (1ULL << 63) | (base_l2 + 4096));
  CHECK_ERROR (read_fails (p), "not cluster aligned");

  /* L2 entries past the end / unaligned. */
  p = fresh ();
  patch_be64 (p, base_l2 + 8, (1ULL << 63) | (1ULL << 40));
  CHECK_ERROR (read_fails (p), "past the end");
  patch_be64 (p, base_l2 + 8, (1ULL << 63) | (base_l2 + 512));
  CHECK_ERROR (read_fails (p), "not cluster aligned");

  /* Compressed descriptor past the end. */
  p = fresh ();
  patch_be64 (p, base_l2 + 5 * 8, (1ULL << 62) | (1ULL << 50));
  CHECK_ERROR (read_fails (p), "past the end");
  /* In the file, but its sector count runs beyond it. */
  patch_be64 (p, base_l2 + 5 * 8, (1ULL << 62) | (255ULL << 54)
              | base_coffset);
  CHECK_ERROR (read_fails (p), "past the end");

  /* Corrupt deflate stream: the read fails, nothing crashes. */
  p = fresh ();
  memset (buf, 0xff, sizeof buf);
  patch (p, base_coffset, buf, sizeof buf);
  CHECK_ERROR (read_fails (p), "corrupt compressed data");
  p = fresh ();
  memset (buf, 0, sizeof buf);
  patch (p, base_coffset + 3, buf, sizeof buf);
  CHECK_ERROR (read_fails (p), "corrupt compressed data");

  /* Backing file. */
  p = fresh ();
  patch (p, 1000, "base.img", 8);
  patch_be64 (p, 8, 1000);
  patch_be32 (p, 16, 8);
  CHECK_ERROR (open_fails (p, P2V_OPEN_READONLY),
               "has a backing file 'base.img', which is not supported");
  patch_be32 (p, 16, 100000);
  CHECK_ERROR (open_fails (p, P2V_OPEN_READONLY), "backing file");

  /* Incompatible features. */
  p = fresh ();
  patch_be64 (p, 72, 1ULL << 10);
  CHECK_ERROR (open_fails (p, P2V_OPEN_READONLY),
               "unknown incompatible feature");
  patch_be64 (p, 72, 1ULL << 2);
  CHECK_ERROR (open_fails (p, P2V_OPEN_READONLY), "external data file");
  patch_be64 (p, 72, 1ULL << 3);
  patch (p, 104, "\x01", 1);
  CHECK_ERROR (open_fails (p, P2V_OPEN_READONLY), "zstd");
  patch_be64 (p, 72, 0);
  CHECK_ERROR (open_fails (p, P2V_OPEN_READONLY), "compression type");
  patch (p, 104, "\x00", 1);
  CHECK (!open_fails (p, P2V_OPEN_READONLY));
  patch_be64 (p, 72, 1ULL << 0);       /* dirty */
  CHECK (!open_fails (p, P2V_OPEN_READONLY));
  CHECK_ERROR (open_fails (p, 0), "dirty");
  patch_be64 (p, 72, 1ULL << 1);       /* corrupt */
  CHECK (!open_fails (p, P2V_OPEN_READONLY));
  CHECK_ERROR (open_fails (p, 0), "corrupt");
  patch_be64 (p, 72, 1ULL << 4);       /* extended L2 */
  patch_be32 (p, 20, 12);
  CHECK_ERROR (open_fails (p, P2V_OPEN_READONLY), "extended L2");

  /* Encryption. */
  p = fresh ();
  patch_be32 (p, 32, 2);
  CHECK_ERROR (open_fails (p, P2V_OPEN_READONLY), "encrypted");

  /* Header length. */
  p = fresh ();
  patch_be32 (p, 100, 72);
  CHECK_ERROR (open_fails (p, P2V_OPEN_READONLY), "header length");
  patch_be32 (p, 100, 1 << 20);
  CHECK_ERROR (open_fails (p, P2V_OPEN_READONLY), "header length");

  /* Extended L2 entries: allocated and zero bits both set. */
  p = fresh ();
  patch_be64 (p, 72, 1ULL << 4);
  /* (The L2 table now reads as 16-byte entries: entry 0 is the first
   * data cluster's descriptor, bitmap is entry 1 of the old table.) */
  patch_be64 (p, base_l2 + 8, 0x100000001ULL);
  CHECK_ERROR (read_fails (p), "subclusters");
}

/* Random corruption of the header and tables: whatever happens, no
 * crash, no hang, no huge allocation (ASan would notice). */
static void
test_fuzz (void)
{
  uint64_t len;
  uint8_t *orig = read_file (base_path, &len), *img;
  int opened = 0;

  CHECK (orig != NULL);
  if (!orig)
    return;
  img = xmalloc (len);
  rng_state = 777;
  for (int iter = 0; iter < 300; iter++) {
    void *h;
    int flips = 1 + rng () % 4;

    memcpy (img, orig, len);
    for (int i = 0; i < flips; i++) {
      uint64_t off;
      switch (rng () % 4) {
      case 0: off = rng () % 112; break;
      case 1: off = base_l1 + rng () % 16; break;
      case 2: off = base_l2 + rng () % 64; break;
      default: off = base_coffset + rng () % 64; break;
      }
      if (off < len)
        img[off] ^= 1 << (rng () % 8);
    }
    CHECK (write_file (hostile_path, img, len));
    h = drv->open (hostile_path, P2V_OPEN_READONLY);
    if (h) {
      uint64_t size = drv->get_size (h), off, pnum;
      unsigned flags;
      uint8_t *buf = xmalloc (65536);

      opened++;
      for (off = 0; off < size && off < (8 << 20); off += 65536)
        drv->pread (h, buf, P2V_MIN (65536, size - off), off);
      for (off = 0; off < size && off < (8 << 20); off += pnum)
        if (drv->block_status (h, off, size - off, &pnum, &flags) == -1)
          break;
      free (buf);
      drv->close (h);
    }
  }
  CHECK (opened > 0);
  free (img);
  free (orig);
}

static void
test_probe (void)
{
  uint8_t buf[512] = { 0 };

  CHECK (drv->probe (buf, sizeof buf) == 0);
  memcpy (buf, "QFI\xfb\0\0\0\3", 8);
  CHECK (drv->probe (buf, sizeof buf) == 100);
  CHECK (drv->probe (buf, 3) == 0);
}

int
main (void)
{
  p2v_error_set_quiet (true);
  if (!mkdtemp (tmpdir)) {
    perror ("mkdtemp");
    return 1;
  }
  have_qemu_img = run (NULL, 0, "qemu-img --version") == 0;
  have_qemu_io = run (NULL, 0, "qemu-io --version") == 0;
  if (!have_qemu_img)
    printf ("test-qcow2: qemu-img not found, skipping qemu-img checks\n");

  test_probe ();
  test_create_errors ();
  test_writer_empty ();
  test_writer_sizes ();
  test_writer_random (512, (1 << 20) + 333, 1500);
  test_writer_random (4096, (3 << 20) + 777, 1500);
  test_writer_random (65536, (4 << 20) + 1, 600);
  test_writer_huge ();
  test_writer_errors ();
  test_writer_big_tables (2ULL << 30);
  test_writer_big_tables (100ULL << 30);
  test_qemu_images ();
  test_qemu_io_images ();
  test_inplace ();
  test_hostile ();
  test_fuzz ();

  unlink (base_path);
  unlink (hostile_path);
  free (base_path);
  free (hostile_path);
  if (rmdir (tmpdir) == -1)
    fprintf (stderr, "test-qcow2: cannot remove %s: %s\n", tmpdir,
             strerror (errno));
  return unit_finish ("test-qcow2");
}
