/* compare.c: compare the guest-visible content of two images, skipping
 * ranges that both images' block status call zero. */
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "convert.h"

#define COMPARE_CHUNK (1024 * 1024)

/* Read [off, off+len) of img into buf, reading only data extents. */
static int
read_guest (struct p2v_image *img, uint8_t *buf, uint64_t len, uint64_t off)
{
  uint64_t pos = off;

  while (pos < off + len) {
    uint64_t pnum;
    unsigned flags;

    if (image_block_status (img, pos, off + len - pos, &pnum, &flags) == -1)
      return -1;
    if (flags & P2V_STATUS_DATA) {
      if (image_pread (img, buf + (pos - off), pnum, pos) == -1)
        return -1;
    }
    else
      memset (buf + (pos - off), 0, pnum);
    pos += pnum;
  }
  return 0;
}

/* How far from off both images read as zeros without reading (>= 0). */
static int
both_zero_run (struct p2v_image *a, struct p2v_image *b, uint64_t off,
               uint64_t end, uint64_t *run)
{
  uint64_t na, nb;
  unsigned fa, fb;

  *run = 0;
  if (image_block_status (a, off, end - off, &na, &fa) == -1
      || image_block_status (b, off, end - off, &nb, &fb) == -1)
    return -1;
  if (!(fa & P2V_STATUS_DATA) && !(fb & P2V_STATUS_DATA))
    *run = P2V_MIN (na, nb);
  return 0;
}

/* The part of the larger image beyond the smaller must be all zeros. */
static int
check_tail_zero (struct p2v_image *img, uint64_t from, uint8_t *buf,
                 uint64_t *first_diff)
{
  uint64_t off = from;

  while (off < img->size) {
    uint64_t pnum;
    unsigned flags;

    if (image_block_status (img, off, img->size - off, &pnum, &flags) == -1)
      return -1;
    if (flags & P2V_STATUS_DATA) {
      pnum = P2V_MIN (pnum, (uint64_t) COMPARE_CHUNK);
      if (image_pread (img, buf, pnum, off) == -1)
        return -1;
      for (uint64_t i = 0; i < pnum; i++)
        if (buf[i]) {
          *first_diff = off + i;
          return 1;
        }
    }
    off += pnum;
  }
  return 0;
}

int
compare_images (struct p2v_image *a, struct p2v_image *b,
                uint64_t *first_diff)
{
  uint64_t common = P2V_MIN (a->size, b->size);
  uint8_t *ba = xmalloc (COMPARE_CHUNK), *bb = xmalloc (COMPARE_CHUNK);
  uint64_t off = 0;
  int r = -1;

  while (off < common) {
    uint64_t run, len;

    if (both_zero_run (a, b, off, common, &run) == -1)
      goto out;
    if (run > 0) {
      off += run;
      continue;
    }
    len = P2V_MIN ((uint64_t) COMPARE_CHUNK, common - off);
    if (read_guest (a, ba, len, off) == -1 || read_guest (b, bb, len, off) == -1)
      goto out;
    if (memcmp (ba, bb, len) != 0) {
      uint64_t i = 0;
      while (ba[i] == bb[i])
        i++;
      *first_diff = off + i;
      r = 1;
      goto out;
    }
    off += len;
  }

  if (a->size != b->size) {
    struct p2v_image *big = a->size > b->size ? a : b;
    r = check_tail_zero (big, common, ba, first_diff);
  }
  else
    r = 0;

 out:
  free (ba);
  free (bb);
  return r;
}
