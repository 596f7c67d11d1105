/* test-common.c: unit tests for common/: sizes, zero detection, full I/O,
 * error reporting. */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "digest.h"
#include "unit.h"

static void
test_parse_size (void)
{
  uint64_t v;

  CHECK (parse_size ("512", &v) == 0 && v == 512);
  CHECK (parse_size ("64K", &v) == 0 && v == 65536);
  CHECK (parse_size ("2M", &v) == 0 && v == 2097152);
  CHECK (parse_size ("1G", &v) == 0 && v == 1073741824);
  CHECK (parse_size ("1GiB", &v) == 0 && v == 1073741824);
  CHECK (parse_size ("3T", &v) == 0 && v == 3ULL << 40);
  CHECK (parse_size ("", &v) == -1);
  CHECK (parse_size ("-1", &v) == -1);
  CHECK (parse_size ("12Q", &v) == -1);
  CHECK (parse_size ("99999999999999999999", &v) == -1);
  CHECK (parse_size ("20000000T", &v) == -1);     /* overflows 64 bits */
}

static void
test_buffer_is_zero (void)
{
  static uint8_t buf[70000];

  CHECK (buffer_is_zero (buf, 0));
  CHECK (buffer_is_zero (buf, 1));
  CHECK (buffer_is_zero (buf, sizeof buf));
  for (size_t pos = 0; pos < sizeof buf; pos += 4999) {
    buf[pos] = 1;
    CHECK (!buffer_is_zero (buf, sizeof buf));
    CHECK (buffer_is_zero (buf, pos));
    buf[pos] = 0;
  }
  buf[sizeof buf - 1] = 0x80;
  CHECK (!buffer_is_zero (buf, sizeof buf));
  CHECK (buffer_is_zero (buf, sizeof buf - 1));
}

static void
test_full_io (void)
{
  char path[] = "/tmp/p2v-unit-io.XXXXXX";
  int fd = mkstemp (path);
  char out[100000], in[100000];

  CHECK (fd >= 0);
  for (size_t i = 0; i < sizeof out; i++)
    out[i] = i * 7;
  CHECK (full_pwrite (fd, out, sizeof out, 1000) == 0);
  CHECK (full_pread (fd, in, sizeof in, 1000) == 0);
  CHECK (memcmp (in, out, sizeof in) == 0);
  /* Reading past the end is an error, not a silent short read. */
  errno = 0;
  CHECK (full_pread (fd, in, sizeof in, 2000) == -1 && errno == EIO);
  close (fd);
  unlink (path);
}

static void
test_errors (void)
{
  errno = ENOENT;
  CHECK (p2v_error ("cannot open '%s': %m", "x.img") == -1);
  CHECK (strcmp (p2v_last_error (), "cannot open 'x.img': No such file or directory") == 0);
  CHECK (errno == ENOENT);      /* errno survives the report */
  CHECK (p2v_error_null ("y") == NULL);
  CHECK (strcmp (p2v_last_error (), "y") == 0);
}

static uint64_t zeros_seen, zeros_end;

static int
count_zeros (void *h, const void *buf, size_t count, uint64_t offset)
{
  (void) h;
  CHECK (count <= ZERO_BLOCK_SIZE);
  CHECK (buffer_is_zero (buf, count));
  CHECK (offset == zeros_end);  /* in order, no gaps */
  zeros_seen += count;
  zeros_end = offset + count;
  return 0;
}

static void
test_write_zeros (void)
{
  zeros_end = 12345;
  CHECK (write_zeros (count_zeros, NULL, 5 * ZERO_BLOCK_SIZE + 7, 12345) == 0);
  CHECK (zeros_seen == 5 * ZERO_BLOCK_SIZE + 7);
  CHECK (zero_block () == zero_block ());
}

static void
test_human_size (void)
{
  char b[32];

  CHECK (strcmp (human_size (512, b, sizeof b), "512 B") == 0);
  CHECK (strcmp (human_size (1536, b, sizeof b), "1.5 KiB") == 0);
  CHECK (strcmp (human_size (1ULL << 30, b, sizeof b), "1.0 GiB") == 0);
}

/* The digest against an independent one-shot SHA-256 of the documented
 * stream, and its independence from how the content is split or holed. */
static void
digest_of (const unsigned char *disk, size_t size, size_t piece, bool holes,
           char hex[P2V_DIGEST_HEX_LEN + 1])
{
  struct p2v_digest *d = digest_new ();

  for (size_t off = 0; off < size; off += piece) {
    size_t n = size - off < piece ? size - off : piece;
    if (holes && buffer_is_zero (disk + off, n))
      continue;
    CHECK (digest_feed (d, off, disk + off, n) == 0);
  }
  CHECK (digest_final (d, hex) == 0);
  digest_free (d);
}

static void
test_digest (void)
{
  size_t size = 5 * P2V_DIGEST_BLOCK + 1000;
  unsigned char *disk = xcalloc (1, size);
  char a[P2V_DIGEST_HEX_LEN + 1], b[P2V_DIGEST_HEX_LEN + 1];
  char c[P2V_DIGEST_HEX_LEN + 1], ref[P2V_DIGEST_HEX_LEN + 1];
  unsigned char md[32], le[8] = { 0 };
  EVP_MD_CTX *ctx = EVP_MD_CTX_new ();
  unsigned mdlen;

  /* Block 1 holds one byte, block 3 is full, the short tail holds data. */
  disk[P2V_DIGEST_BLOCK + 17] = 0xaa;
  memset (disk + 3 * P2V_DIGEST_BLOCK, 0x5c, P2V_DIGEST_BLOCK);
  disk[size - 1] = 0x01;

  digest_of (disk, size, size, false, a);
  digest_of (disk, size, 4096, true, b);
  digest_of (disk, size, 777, false, c);
  CHECK (strcmp (a, b) == 0);
  CHECK (strcmp (a, c) == 0);

  EVP_DigestInit_ex (ctx, EVP_sha256 (), NULL);
  unsigned char *tail = xcalloc (1, P2V_DIGEST_BLOCK);
  memcpy (tail, disk + 5 * P2V_DIGEST_BLOCK, 1000);
  uint64_t offs[] = { P2V_DIGEST_BLOCK, 3 * P2V_DIGEST_BLOCK, 5 * P2V_DIGEST_BLOCK };
  const unsigned char *blocks[] = { disk + P2V_DIGEST_BLOCK,
                                    disk + 3 * P2V_DIGEST_BLOCK, tail };
  for (int i = 0; i < 3; i++) {
    for (int j = 0; j < 8; j++)
      le[j] = (unsigned char) (offs[i] >> (8 * j));
    EVP_DigestUpdate (ctx, le, 8);
    EVP_DigestUpdate (ctx, blocks[i], P2V_DIGEST_BLOCK);
  }
  EVP_DigestFinal_ex (ctx, md, &mdlen);
  for (int i = 0; i < 32; i++)
    snprintf (ref + 2 * i, 3, "%02x", md[i]);
  CHECK (strcmp (a, ref) == 0);

  disk[2 * P2V_DIGEST_BLOCK] = 1;     /* one byte changes the digest */
  digest_of (disk, size, size, false, c);
  CHECK (strcmp (a, c) != 0);

  struct p2v_digest *d = digest_new ();
  CHECK (digest_feed (d, 8192, disk, 10) == 0);
  CHECK_ERROR (digest_feed (d, 4096, disk, 10) == -1, "out of order");
  digest_free (d);

  EVP_MD_CTX_free (ctx);
  free (tail);
  free (disk);
}

int
main (void)
{
  p2v_error_set_quiet (true);
  test_parse_size ();
  test_buffer_is_zero ();
  test_full_io ();
  test_errors ();
  test_write_zeros ();
  test_human_size ();
  test_digest ();
  return unit_finish ("test-common");
}
