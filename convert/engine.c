/* engine.c: the copy engine.  One reader thread walks the source's block
 * status and hands out chunks with their data extents; worker threads
 * read those extents (so reads run on every CPU, and a worker looks for
 * zeros in bytes it has just read, still in its cache), find zero units
 * and compress; the calling thread writes finished chunks strictly in
 * order.  One writer is enough: file systems take the inode lock for a
 * buffered write, so writers to one file queue behind each other, and
 * the writer copies from buffers still in cache.  Memory is bounded by
 * the ring of slots, never by the disk size. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "convert.h"
#include "format.h"

#define CHUNK_SIZE (1024 * 1024)

enum slot_state { SLOT_FREE, SLOT_FILLED, SLOT_WORKING, SLOT_DONE };
enum unit_kind { UNIT_UNKNOWN, UNIT_ZERO, UNIT_DATA, UNIT_COMPRESSED };

struct slot {
  enum slot_state state;
  uint64_t seq;
  uint64_t offset, len;
  bool all_zero;                /* a zero run: no buffer, any length */
  uint8_t *buf;                 /* the chunk's bytes */
  uint8_t *cbuf;                /* compressed unit i at i * unit */
  uint8_t *kind;                /* enum unit_kind per unit */
  uint32_t *clen;               /* compressed length per unit */
  struct extent { uint64_t off, len; } *ext;    /* data to read */
  size_t next, ext_cap;
};

struct engine {
  struct p2v_image *src, *dst;
  const struct p2v_copy_opts *opts;
  struct p2v_copy_stats *stats;
  uint32_t unit;
  size_t chunk;
  size_t units_per_chunk;
  bool zero_init;
  /* Held around the source's reads and block status when its driver
   * cannot take them from several threads at once. */
  pthread_mutex_t src_lock;
  bool src_serial;

  pthread_mutex_t lock;
  pthread_cond_t cond;
  struct slot *slots;
  unsigned nslots;
  uint64_t next_read_seq;       /* protected by lock */
  uint64_t next_write_seq;
  bool reader_done;
  bool failed;
};

static void
engine_fail (struct engine *e)
{
  pthread_mutex_lock (&e->lock);
  e->failed = true;
  pthread_cond_broadcast (&e->cond);
  pthread_mutex_unlock (&e->lock);
}

/* Reader: wait for the next ring slot to be free. */
static struct slot *
reader_get_slot (struct engine *e)
{
  struct slot *s;

  pthread_mutex_lock (&e->lock);
  s = &e->slots[e->next_read_seq % e->nslots];
  while (s->state != SLOT_FREE && !e->failed)
    pthread_cond_wait (&e->cond, &e->lock);
  pthread_mutex_unlock (&e->lock);
  return e->failed ? NULL : s;
}

static void
reader_post_slot (struct engine *e, struct slot *s, enum slot_state state)
{
  pthread_mutex_lock (&e->lock);
  s->seq = e->next_read_seq++;
  s->state = state;
  pthread_cond_broadcast (&e->cond);
  pthread_mutex_unlock (&e->lock);
}

static int
src_block_status (struct engine *e, uint64_t off, uint64_t count,
                  uint64_t *pnum, unsigned *flags)
{
  int r;

  if (e->src_serial)
    pthread_mutex_lock (&e->src_lock);
  r = image_block_status (e->src, off, count, pnum, flags);
  if (e->src_serial)
    pthread_mutex_unlock (&e->src_lock);
  return r;
}

static int
src_pread (struct engine *e, void *buf, size_t count, uint64_t off)
{
  int r;

  if (e->src_serial)
    pthread_mutex_lock (&e->src_lock);
  r = image_pread (e->src, buf, count, off);
  if (e->src_serial)
    pthread_mutex_unlock (&e->src_lock);
  return r;
}

/* Set up a data slot for [off, end): its data extents, for a worker to
 * read, and the units that no data extent touches marked as known zeros. */
static int
reader_fill (struct engine *e, struct slot *s, uint64_t off, uint64_t end)
{
  size_t nunits = DIV_ROUND_UP (end - off, e->unit);
  uint64_t pos = off;

  s->offset = off;
  s->len = end - off;
  s->all_zero = false;
  s->next = 0;
  memset (s->kind, UNIT_ZERO, nunits);

  while (pos < end) {
    uint64_t pnum;
    unsigned flags;

    if (src_block_status (e, pos, end - pos, &pnum, &flags) == -1)
      return -1;
    if (flags & P2V_STATUS_DATA) {
      if (s->next == s->ext_cap) {
        s->ext_cap = s->ext_cap ? 2 * s->ext_cap : 16;
        s->ext = xrealloc (s->ext, s->ext_cap * sizeof *s->ext);
      }
      s->ext[s->next++] = (struct extent) { .off = pos, .len = pnum };
      e->stats->bytes_read += pnum;
      memset (s->kind + (pos - off) / e->unit, UNIT_UNKNOWN,
              (pos + pnum - 1 - off) / e->unit - (pos - off) / e->unit + 1);
    }
    pos += pnum;
  }
  return 0;
}

static void *
reader_thread (void *arg)
{
  struct engine *e = arg;
  uint64_t size = e->src->size;
  uint64_t off = P2V_MIN (e->opts->start, size);

  while (off < size) {
    uint64_t end = P2V_MIN (off + e->chunk, size);
    uint64_t pnum;
    unsigned flags;
    struct slot *s = reader_get_slot (e);

    if (!s)
      return NULL;

    /* A zero run covering whole chunks becomes one slot of any length,
     * so a sparse 2 TB disk costs a handful of slots, not millions. */
    if (src_block_status (e, off, size - off, &pnum, &flags) == -1)
      goto fail;
    if (!(flags & P2V_STATUS_DATA) && pnum >= end - off) {
      uint64_t zend = off + pnum >= size ? size
        : off + (pnum / e->chunk) * e->chunk;
      s->offset = off;
      s->len = zend - off;
      s->all_zero = true;
      reader_post_slot (e, s, SLOT_DONE);
      off = zend;
      continue;
    }

    if (reader_fill (e, s, off, end) == -1)
      goto fail;
    reader_post_slot (e, s, SLOT_FILLED);
    off = end;
  }

  pthread_mutex_lock (&e->lock);
  e->reader_done = true;
  pthread_cond_broadcast (&e->cond);
  pthread_mutex_unlock (&e->lock);
  return NULL;

 fail:
  engine_fail (e);
  return NULL;
}

/* Worker: read a slot's data extents into its buffer, zeros between. */
static int
worker_read (struct engine *e, struct slot *s)
{
  uint64_t pos = s->offset;

  for (size_t i = 0; i < s->next; i++) {
    memset (s->buf + (pos - s->offset), 0, s->ext[i].off - pos);
    if (src_pread (e, s->buf + (s->ext[i].off - s->offset),
                   s->ext[i].len, s->ext[i].off) == -1)
      return -1;
    pos = s->ext[i].off + s->ext[i].len;
  }
  memset (s->buf + (pos - s->offset), 0, s->offset + s->len - pos);
  return 0;
}

/* Worker: read a slot, classify each unit and compress where asked. */
static int
worker_process (struct engine *e, struct slot *s)
{
  size_t nunits = DIV_ROUND_UP (s->len, e->unit);
  const struct p2v_format *drv = e->dst->drv;

  if (worker_read (e, s) == -1)
    return -1;

  for (size_t i = 0; i < nunits; i++) {
    size_t ulen = P2V_MIN ((uint64_t) e->unit, s->len - i * e->unit);
    const uint8_t *p = s->buf + i * e->unit;

    if (s->kind[i] == UNIT_ZERO)
      continue;
    if (buffer_is_zero (p, ulen)) {
      s->kind[i] = UNIT_ZERO;
      continue;
    }
    s->kind[i] = UNIT_DATA;
    if (e->opts->compress) {
      ssize_t c = drv->compress (e->dst->h, p, ulen, s->cbuf + i * e->unit,
                                 e->unit, e->opts->compress_level);
      if (c == -1)
        return -1;
      if (c > 0) {
        s->kind[i] = UNIT_COMPRESSED;
        s->clen[i] = c;
      }
    }
  }
  return 0;
}

static void *
worker_thread (void *arg)
{
  struct engine *e = arg;

  for (;;) {
    struct slot *s = NULL;

    pthread_mutex_lock (&e->lock);
    for (;;) {
      if (e->failed)
        break;
      /* Take the oldest filled slot so the writer is never starved. */
      for (unsigned i = 0; i < e->nslots; i++) {
        struct slot *c = &e->slots[i];
        if (c->state == SLOT_FILLED && (!s || c->seq < s->seq))
          s = c;
      }
      if (s || e->reader_done)
        break;
      pthread_cond_wait (&e->cond, &e->lock);
    }
    if (s)
      s->state = SLOT_WORKING;
    pthread_mutex_unlock (&e->lock);
    if (!s)
      return NULL;

    if (worker_process (e, s) == -1) {
      engine_fail (e);
      return NULL;
    }
    pthread_mutex_lock (&e->lock);
    s->state = SLOT_DONE;
    pthread_cond_broadcast (&e->cond);
    pthread_mutex_unlock (&e->lock);
  }
}

static int
writer_zero (struct engine *e, uint64_t len, uint64_t off)
{
  e->stats->bytes_zero += len;
  if (e->zero_init)
    return 0;
  return image_zero (e->dst, len, off);
}

/* Write one finished slot: runs of plain units in one pwrite each,
 * compressed units one by one, zero runs skipped on zero-init images. */
static int
writer_write (struct engine *e, struct slot *s)
{
  size_t nunits = DIV_ROUND_UP (s->len, e->unit);
  size_t i = 0;

  if (s->all_zero)
    return writer_zero (e, s->len, s->offset);

  while (i < nunits) {
    size_t j = i + 1;
    uint64_t off = s->offset + (uint64_t) i * e->unit;
    uint64_t len;

    if (s->kind[i] == UNIT_COMPRESSED) {
      len = P2V_MIN ((uint64_t) e->unit, s->len - (uint64_t) i * e->unit);
      if (e->dst->drv->pwrite_compressed (e->dst->h, s->cbuf + i * e->unit,
                                          s->clen[i], off, len) == -1)
        return -1;
      e->stats->bytes_compressed_in += len;
      e->stats->bytes_compressed_out += s->clen[i];
      i++;
      continue;
    }
    while (j < nunits && s->kind[j] == s->kind[i])
      j++;
    len = P2V_MIN ((uint64_t) (j - i) * e->unit, s->len - (uint64_t) i * e->unit);
    if (s->kind[i] == UNIT_ZERO) {
      if (writer_zero (e, len, off) == -1)
        return -1;
    }
    else {
      if (image_pwrite (e->dst, s->buf + i * e->unit, len, off) == -1)
        return -1;
      e->stats->bytes_plain += len;
    }
    i = j;
  }
  return 0;
}

static int
writer_loop (struct engine *e)
{
  struct p2v_progress *prog = NULL;
  int r = -1;

  if (e->opts->progress)
    prog = progress_new (e->opts->progress_label ? e->opts->progress_label
                         : "converting", e->src->size);

  for (;;) {
    struct slot *s;

    pthread_mutex_lock (&e->lock);
    s = &e->slots[e->next_write_seq % e->nslots];
    while (!e->failed
           && !(s->state == SLOT_DONE && s->seq == e->next_write_seq)
           && !(e->reader_done && e->next_write_seq == e->next_read_seq))
      pthread_cond_wait (&e->cond, &e->lock);
    if (e->failed) {
      pthread_mutex_unlock (&e->lock);
      goto out;
    }
    if (e->reader_done && e->next_write_seq == e->next_read_seq) {
      pthread_mutex_unlock (&e->lock);
      break;
    }
    pthread_mutex_unlock (&e->lock);

    if (writer_write (e, s) == -1
        || (e->opts->written
            && e->opts->written (e->opts->written_opaque, s->offset,
                                 s->all_zero ? NULL : s->buf,
                                 s->len) == -1)) {
      engine_fail (e);
      goto out;
    }
    progress_update (prog, s->offset + s->len);

    pthread_mutex_lock (&e->lock);
    s->state = SLOT_FREE;
    e->next_write_seq++;
    pthread_cond_broadcast (&e->cond);
    pthread_mutex_unlock (&e->lock);
  }

  /* A larger destination that is not zero-initialised gets a zero tail. */
  if (e->dst->size > e->src->size && !e->zero_init
      && image_zero (e->dst, e->dst->size - e->src->size, e->src->size) == -1)
    goto out;
  progress_finish (prog);
  r = 0;
 out:
  progress_free (prog);
  return r;
}

static unsigned
default_threads (void)
{
  long n = sysconf (_SC_NPROCESSORS_ONLN);
  return n < 1 ? 1 : n > 64 ? 64 : (unsigned) n;
}

int
copy_image (struct p2v_image *src, struct p2v_image *dst,
            const struct p2v_copy_opts *opts, struct p2v_copy_stats *stats)
{
  struct engine e = { 0 };
  unsigned nthreads = opts->threads ? opts->threads : default_threads ();
  pthread_t reader, *workers = NULL;
  unsigned started = 0;
  bool reader_started = false;
  double t0 = now_seconds ();
  int r = -1;

  memset (stats, 0, sizeof *stats);
  stats->size = src->size;
  if (opts->start % CHUNK_SIZE)
    return p2v_error ("copy start %" PRIu64 " is not a multiple of 1 MiB",
                      opts->start);
  if (dst->size < src->size)
    return p2v_error ("'%s' is smaller than '%s'", dst->path, src->path);
  if (opts->compress && !image_can_compress (dst))
    return p2v_error ("format '%s' cannot store compressed data",
                      dst->drv->name);

  e.src = src;
  e.dst = dst;
  e.opts = opts;
  e.stats = stats;
  e.unit = image_granularity (dst);
  if (!IS_POWER_OF_2 (e.unit) || e.unit > 64 * 1024 * 1024)
    return p2v_error ("format '%s' has a bad granularity %u",
                      dst->drv->name, e.unit);
  e.chunk = P2V_MAX ((size_t) CHUNK_SIZE, (size_t) e.unit);
  e.units_per_chunk = e.chunk / e.unit;
  e.zero_init = image_has_zero_init (dst);
  e.nslots = 2 * nthreads + 2;
  pthread_mutex_init (&e.lock, NULL);
  pthread_mutex_init (&e.src_lock, NULL);
  e.src_serial = !src->drv->parallel_reads;
  pthread_cond_init (&e.cond, NULL);

  e.slots = xcalloc (e.nslots, sizeof *e.slots);
  for (unsigned i = 0; i < e.nslots; i++) {
    e.slots[i].buf = xmalloc_aligned (e.chunk);
    if (opts->compress) {
      e.slots[i].cbuf = xmalloc (e.chunk);
      e.slots[i].clen = xcalloc (e.units_per_chunk, sizeof (uint32_t));
    }
    e.slots[i].kind = xcalloc (e.units_per_chunk, 1);
  }

  workers = xcalloc (nthreads, sizeof *workers);
  errno = pthread_create (&reader, NULL, reader_thread, &e);
  if (errno) {
    p2v_error ("cannot start the reader thread: %m");
    goto out;
  }
  reader_started = true;
  for (; started < nthreads; started++) {
    errno = pthread_create (&workers[started], NULL, worker_thread, &e);
    if (errno) {
      p2v_error ("cannot start a worker thread: %m");
      engine_fail (&e);
      goto out;
    }
  }

  r = writer_loop (&e);

 out:
  if (r == -1)
    engine_fail (&e);
  if (reader_started)
    pthread_join (reader, NULL);
  for (unsigned i = 0; i < started; i++)
    pthread_join (workers[i], NULL);
  if (e.failed)
    r = -1;
  for (unsigned i = 0; i < e.nslots; i++) {
    free (e.slots[i].buf);
    free (e.slots[i].cbuf);
    free (e.slots[i].clen);
    free (e.slots[i].kind);
    free (e.slots[i].ext);
  }
  free (e.slots);
  free (workers);
  pthread_mutex_destroy (&e.lock);
  pthread_mutex_destroy (&e.src_lock);
  pthread_cond_destroy (&e.cond);
  stats->seconds = now_seconds () - t0;
  return r;
}
