/* digest.c: the p2v-sha256-nz64k content digest (docs/bundle.md), on
 * OpenSSL's SHA-256, which uses the CPU's SHA extensions where present. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "common.h"
#include "digest.h"

struct p2v_digest {
  EVP_MD_CTX *ctx;
  unsigned char *block;         /* the 64 KiB block being assembled */
  uint64_t block_start;         /* its offset; UINT64_MAX when none */
  size_t block_fill;            /* bytes of it covered so far */
  uint64_t next;                /* lowest offset the next feed may use */
  bool failed;
};

struct p2v_digest *
digest_new (void)
{
  struct p2v_digest *d = xcalloc (1, sizeof *d);

  d->ctx = EVP_MD_CTX_new ();
  d->block = xmalloc (P2V_DIGEST_BLOCK);
  d->block_start = UINT64_MAX;
  if (!d->ctx || EVP_DigestInit_ex (d->ctx, EVP_sha256 (), NULL) != 1) {
    digest_free (d);
    return p2v_error_null ("cannot start a sha256 digest");
  }
  return d;
}

static void
hash_block (struct p2v_digest *d, uint64_t start, const void *buf, size_t len)
{
  unsigned char le[8];

  if (buffer_is_zero (buf, len))
    return;
  for (int i = 0; i < 8; i++)
    le[i] = (unsigned char) (start >> (8 * i));
  if (EVP_DigestUpdate (d->ctx, le, sizeof le) != 1
      || EVP_DigestUpdate (d->ctx, buf, len) != 1)
    d->failed = true;
}

/* Hash the partly assembled block, if any.  Its uncovered bytes are zero
 * because the block buffer is cleared when a block starts. */
static void
flush_block (struct p2v_digest *d)
{
  if (d->block_start == UINT64_MAX)
    return;
  hash_block (d, d->block_start, d->block, P2V_DIGEST_BLOCK);
  d->block_start = UINT64_MAX;
  d->block_fill = 0;
}

int
digest_feed (struct p2v_digest *d, uint64_t offset, const void *buf, size_t len)
{
  const unsigned char *p = buf;

  if (offset < d->next)
    return p2v_error ("digest fed out of order at offset %" PRIu64, offset);
  d->next = offset + len;

  while (len > 0) {
    uint64_t start = offset - offset % P2V_DIGEST_BLOCK;
    size_t in_block = offset - start;
    size_t n = P2V_DIGEST_BLOCK - in_block;

    if (n > len)
      n = len;
    if (d->block_start != start)
      flush_block (d);
    if (in_block == 0 && n == P2V_DIGEST_BLOCK) {
      /* The common case: a whole aligned block, hashed in place. */
      hash_block (d, start, p, n);
    }
    else {
      if (d->block_start != start) {
        memset (d->block, 0, P2V_DIGEST_BLOCK);
        d->block_start = start;
      }
      memcpy (d->block + in_block, p, n);
      d->block_fill = in_block + n;
    }
    offset += n;
    p += n;
    len -= n;
  }
  return d->failed ? p2v_error ("sha256 digest update failed") : 0;
}

/* The last block of a disk may be shorter than 64 KiB; the digest still
 * covers it as a full block whose tail is zero, which hashes the same
 * bytes for a given disk size, so both writer and verifier agree. */
int
digest_final (struct p2v_digest *d, char hex[P2V_DIGEST_HEX_LEN + 1])
{
  unsigned char md[32];
  unsigned int mdlen = 0;

  flush_block (d);
  if (d->failed || EVP_DigestFinal_ex (d->ctx, md, &mdlen) != 1 || mdlen != 32)
    return p2v_error ("sha256 digest failed");
  for (unsigned i = 0; i < 32; i++)
    snprintf (hex + 2 * i, 3, "%02x", md[i]);
  return 0;
}

void
digest_free (struct p2v_digest *d)
{
  if (!d)
    return;
  EVP_MD_CTX_free (d->ctx);
  free (d->block);
  free (d);
}
