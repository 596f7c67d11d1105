/* digest.h: the content digest of a disk ("p2v-sha256-nz64k", see
 * docs/bundle.md): SHA-256 over every non-zero 64 KiB block, each
 * prefixed by its offset, so it depends only on guest-visible content. */
#ifndef P2V_DIGEST_H
#define P2V_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#define P2V_DIGEST_ALGORITHM "p2v-sha256-nz64k"
#define P2V_DIGEST_BLOCK     (64 * 1024)
#define P2V_DIGEST_HEX_LEN   64

struct p2v_digest;

struct p2v_digest *digest_new (void);
/* Feed data at OFFSET; calls must come in increasing, non-overlapping
 * offset order.  Bytes never fed (holes) count as zeros. */
int digest_feed (struct p2v_digest *d, uint64_t offset,
                 const void *buf, size_t len);
/* Finish and write the lowercase hex digest (65 bytes with the NUL). */
int digest_final (struct p2v_digest *d, char hex[P2V_DIGEST_HEX_LEN + 1]);
void digest_free (struct p2v_digest *d);

#endif
