/* test-capture.c: the fixed-layout qcow2 writer and the capture map
 * driver: a copy through both, read back with the qcow2 reader, must hold
 * exactly the mapped bytes; positional and sequential sinks must write
 * the same file; bad extent lists are refused. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "unit.h"
#include "capture.h"
#include "convert.h"
#include "qcow2-layout.h"

static char dir[] = "/tmp/p2v-unit-capture.XXXXXX";

static int
pos_write (void *opaque, const void *buf, size_t len, uint64_t off)
{
  return full_pwrite (*(int *) opaque, buf, len, off);
}

struct seq { int fd; uint64_t pos; bool out_of_order; };

static int
seq_write (void *opaque, const void *buf, size_t len, uint64_t off)
{
  struct seq *s = opaque;
  if (off != s->pos)
    s->out_of_order = true;
  s->pos = off + len;
  return full_write (s->fd, buf, len);
}

static void
fill (uint8_t *b, size_t n, unsigned seed)
{
  for (size_t i = 0; i < n; i++) {
    seed = seed * 1103515245u + 12345u;
    b[i] = (uint8_t) (seed >> 16);
  }
}

/* Copy src through the map into a layout image on a sink. */
static int
copy_through (const char *src_path, struct capture_disk *d,
              struct qcow2_layout *l, const struct qcow2_layout_sink *sink)
{
  struct p2v_image *raw = image_open (src_path, "raw", P2V_OPEN_READONLY);
  struct p2v_image *src = raw ? capture_map_image (raw, d) : NULL;
  struct p2v_image *dst = src ? qcow2_layout_image (l, sink, "t") : NULL;
  struct p2v_copy_opts o = { .threads = 2 };
  struct p2v_copy_stats st;
  int r = -1;

  if (dst && copy_image (src, dst, &o, &st) == 0) {
    r = 0;
    CHECK (st.bytes_read == d->bytes_mapped);
  }
  if (dst && image_close (dst) == -1)
    r = -1;
  image_close (src);
  return r;
}

static void
test_copy (void)
{
  /* 3 GiB + 12 KiB: two refcount-covered L2 regions, a short last cluster. */
  uint64_t size = (UINT64_C (3) << 30) + 12288;
  struct p2v_extent ext[] = {
    { 0, 1048576 },                     /* an MBR and the gap after it */
    { 5 << 20, 4096 },                  /* less than a cluster */
    { (UINT64_C (1) << 30) - 100, 300 },/* across a cluster and an L2 boundary */
    { UINT64_C (2) << 30, 3 << 20 },
    { size - 8192, 8192 },              /* the short tail */
  };
  struct capture_disk d = { 0 };
  char *src = xasprintf ("%s/src.raw", dir), *a = xasprintf ("%s/a.qcow2", dir);
  char *b = xasprintf ("%s/b.qcow2", dir);
  uint8_t *buf = xmalloc (4 << 20), *got = xmalloc (4 << 20);
  int fd = open (src, O_RDWR | O_CREAT | O_TRUNC, 0644);
  struct qcow2_layout *l;
  struct p2v_image *img;

  /* Random bytes everywhere the source has data, mapped or not: unmapped
   * data must not reach the image. */
  CHECK (ftruncate (fd, size) == 0);
  for (uint64_t off = 0; off < size; off += UINT64_C (256) << 20) {
    fill (buf, 1 << 20, (unsigned) (off >> 20));
    CHECK (full_pwrite (fd, buf, 1 << 20, off) == 0);
  }
  for (size_t i = 0; i < ARRAY_SIZE (ext); i++) {
    size_t n = ext[i].len;
    fill (buf, n, 1000 + i);
    CHECK (full_pwrite (fd, buf, n, ext[i].start) == 0);
  }
  close (fd);

  d.path = src;
  d.size = size;
  d.ext = ext;
  d.next = ARRAY_SIZE (ext);
  for (size_t i = 0; i < d.next; i++)
    d.bytes_mapped += ext[i].len;

  l = qcow2_layout_new (size, ext, d.next);
  CHECK (l != NULL);
  if (!l)
    return;

  fd = open (a, O_RDWR | O_CREAT | O_TRUNC, 0644);
  CHECK (ftruncate (fd, qcow2_layout_file_size (l)) == 0);
  {
    struct qcow2_layout_sink sink = { pos_write, &fd, false };
    CHECK (copy_through (src, &d, l, &sink) == 0);
  }
  close (fd);
  {
    struct seq s = { .fd = open (b, O_RDWR | O_CREAT | O_TRUNC, 0644) };
    struct qcow2_layout_sink sink = { seq_write, &s, true };
    CHECK (copy_through (src, &d, l, &sink) == 0);
    CHECK (!s.out_of_order);
    CHECK (s.pos == qcow2_layout_file_size (l));
    close (s.fd);
  }
  {
    char *cmd = xasprintf ("cmp -s %s %s", a, b);
    CHECK (system (cmd) == 0);
    free (cmd);
  }

  /* Read back: mapped ranges hold the source, the rest reads zero. */
  img = image_open (a, "qcow2", P2V_OPEN_READONLY);
  CHECK (img != NULL);
  if (img) {
    struct p2v_image *s = image_open (src, "raw", P2V_OPEN_READONLY);
    CHECK (img->size == size);
    for (size_t i = 0; i < d.next; i++) {
      CHECK (image_pread (s, buf, ext[i].len, ext[i].start) == 0);
      CHECK (image_pread (img, got, ext[i].len, ext[i].start) == 0);
      CHECK (memcmp (buf, got, ext[i].len) == 0);
    }
    CHECK (image_pread (img, got, 1 << 20, 256 << 20) == 0);
    CHECK (buffer_is_zero (got, 1 << 20));
    CHECK (image_pread (img, got, 4096, (5 << 20) + 65536) == 0);
    CHECK (buffer_is_zero (got, 4096));
    image_close (s);
    image_close (img);
  }
  qcow2_layout_free (l);
  unlink (src);
  unlink (a);
  unlink (b);
  free (src);
  free (a);
  free (b);
  free (buf);
  free (got);
}

static void
test_bad_extents (void)
{
  struct p2v_extent unsorted[] = { { 1 << 20, 4096 }, { 0, 4096 } };
  struct p2v_extent outside[] = { { 1 << 20, 2 << 20 } };

  CHECK (qcow2_layout_new (0, NULL, 0) == NULL);
  CHECK (qcow2_layout_new (2 << 20, unsorted, 2) == NULL);
  CHECK (strstr (p2v_last_error (), "bad extent list") != NULL);
  CHECK (qcow2_layout_new (2 << 20, outside, 1) == NULL);
}

static void
test_empty_and_sizes (void)
{
  /* No data at all: header, L1, refcounts only. */
  struct qcow2_layout *l = qcow2_layout_new (UINT64_C (1) << 40, NULL, 0);
  CHECK (l != NULL);
  if (l) {
    CHECK (qcow2_layout_data_clusters (l) == 0);
    /* 1 TiB: 2048 L1 entries = 1 cluster; 1 + 1 + 1 + 1 clusters. */
    CHECK (qcow2_layout_file_size (l) == 4 * 65536);
    qcow2_layout_free (l);
  }
  /* Enough clusters to need a second refcount block. */
  {
    struct p2v_extent all = { 0, UINT64_C (3) << 30 };
    l = qcow2_layout_new (all.len, &all, 1);
    CHECK (l != NULL);
    if (l) {
      CHECK (qcow2_layout_data_clusters (l) == 49152);
      /* header + L1 + reftable + 2 refblocks + 6 L2 + data */
      CHECK (qcow2_layout_file_size (l) == (1 + 1 + 1 + 2 + 6 + 49152) * UINT64_C (65536));
      qcow2_layout_free (l);
    }
  }
}

int
main (void)
{
  p2v_error_set_quiet (true);
  if (!mkdtemp (dir)) {
    perror ("mkdtemp");
    return 1;
  }
  test_bad_extents ();
  test_empty_and_sizes ();
  test_copy ();
  rmdir (dir);
  return unit_finish ("test-capture");
}
