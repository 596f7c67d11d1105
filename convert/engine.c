/* engine.c: the copy engine.  One reader thread walks the source's block
 * status and reads only data; worker threads find zero units and
 * compress; the calling thread writes finished chunks strictly in order,
 * which allocates in order, and hands the data writes themselves to a
 * pool of write threads (pwrite_queued), so that copying into the page
 * cache, which is most of a plain copy's time, runs on several CPUs.
 * Memory is bounded by the ring of slots, never by the disk size. */
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
#define MAPPED_CHUNK_SIZE (4 * CHUNK_SIZE)
/* Write threads: on a 2-CPU machine two beat one by 20-30 % for a plain
 * copy into the page cache, and four lost to two. */
#define MAX_WRITE_THREADS 2

/* SLOT_WRITTEN: handed to the write threads; free once pending is 0. */
enum slot_state { SLOT_FREE, SLOT_FILLED, SLOT_WORKING, SLOT_DONE,
                  SLOT_WRITTEN };
enum unit_kind { UNIT_UNKNOWN, UNIT_ZERO, UNIT_DATA, UNIT_COMPRESSED };

struct slot {
  enum slot_state state;
  uint64_t seq;
  uint64_t offset, len;
  bool all_zero;                /* a zero run: no buffer, any length */
  uint8_t *buf;                 /* chunk bytes, when read with pread */
  const uint8_t *data;          /* the chunk's bytes: buf or the source's map */
  uint8_t *cbuf;                /* compressed unit i at i * unit */
  uint8_t *kind;                /* enum unit_kind per unit */
  uint32_t *clen;               /* compressed length per unit */
  unsigned pending;             /* queued writes not yet made */
};

struct write_job {
  struct p2v_host_write w;
  struct slot *s;
};

struct engine {
  struct p2v_image *src, *dst;
  const struct p2v_copy_opts *opts;
  struct p2v_copy_stats *stats;
  uint32_t unit;
  size_t chunk;
  size_t units_per_chunk;
  bool zero_init;

  pthread_mutex_t lock;
  pthread_cond_t cond;
  struct slot *slots;
  unsigned nslots;
  uint64_t next_read_seq;       /* protected by lock */
  uint64_t next_write_seq;
  uint64_t next_free_seq;       /* the oldest slot not yet freed */
  bool reader_done;
  bool failed;

  /* Queued data writes, oldest at jobs_head; protected by lock. */
  unsigned nwriters;            /* write threads; 0: write in order */
  struct write_job *jobs;
  size_t jobs_head, jobs_len, jobs_cap;
  bool writes_done;             /* no more jobs will come */
  struct slot *queue_slot;      /* the slot being queued (writer only) */
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

/* Fill a data slot with [off, end): read the data extents, zero-fill the
 * rest, and mark the units that no data extent touches as known zeros. */
static int
reader_fill (struct engine *e, struct slot *s, uint64_t off, uint64_t end)
{
  size_t nunits = DIV_ROUND_UP (end - off, e->unit);
  uint64_t pos = off;

  const uint8_t *map = image_map (e->src, off, end - off);

  s->offset = off;
  s->len = end - off;
  s->all_zero = false;
  s->data = map ? map : s->buf;
  memset (s->kind, UNIT_ZERO, nunits);

  while (pos < end) {
    uint64_t pnum;
    unsigned flags;

    if (image_block_status (e->src, pos, end - pos, &pnum, &flags) == -1)
      return -1;
    if (flags & P2V_STATUS_DATA) {
      if (!map && image_pread (e->src, s->buf + (pos - off), pnum, pos) == -1)
        return -1;
      e->stats->bytes_read += pnum;
      memset (s->kind + (pos - off) / e->unit, UNIT_UNKNOWN,
              (pos + pnum - 1 - off) / e->unit - (pos - off) / e->unit + 1);
    }
    else if (!map)
      memset (s->buf + (pos - off), 0, pnum);
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
    if (image_block_status (e->src, off, size - off, &pnum, &flags) == -1)
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

/* Worker: classify each unit of a slot and compress where asked. */
static int
worker_process (struct engine *e, struct slot *s)
{
  size_t nunits = DIV_ROUND_UP (s->len, e->unit);
  const struct p2v_format *drv = e->dst->drv;

  for (size_t i = 0; i < nunits; i++) {
    size_t ulen = P2V_MIN ((uint64_t) e->unit, s->len - i * e->unit);
    const uint8_t *p = s->data + i * e->unit;

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

/* p2v_queue_fn for the slot being written: the job waits for a write
 * thread, and the slot stays in use until its jobs are made. */
static int
queue_write (void *opaque, const struct p2v_host_write *w)
{
  struct engine *e = opaque;

  pthread_mutex_lock (&e->lock);
  if (e->jobs_len == e->jobs_cap) {
    e->jobs_cap = e->jobs_cap ? 2 * e->jobs_cap : 64;
    e->jobs = xrealloc (e->jobs, e->jobs_cap * sizeof *e->jobs);
  }
  e->jobs[e->jobs_len++] = (struct write_job) { .w = *w, .s = e->queue_slot };
  e->queue_slot->pending++;
  pthread_cond_broadcast (&e->cond);
  pthread_mutex_unlock (&e->lock);
  return 0;
}

static void *
write_thread (void *arg)
{
  struct engine *e = arg;

  for (;;) {
    struct write_job job;
    int r, err;

    pthread_mutex_lock (&e->lock);
    while (!e->failed && e->jobs_head == e->jobs_len && !e->writes_done)
      pthread_cond_wait (&e->cond, &e->lock);
    if (e->failed || e->jobs_head == e->jobs_len) {
      pthread_mutex_unlock (&e->lock);
      return NULL;
    }
    job = e->jobs[e->jobs_head++];
    if (e->jobs_head == e->jobs_len)
      e->jobs_head = e->jobs_len = 0;
    pthread_mutex_unlock (&e->lock);

    r = host_write_run (&job.w);
    err = errno;

    pthread_mutex_lock (&e->lock);
    if (r == -1 && !e->failed) {
      errno = err;
      p2v_error ("cannot write '%s' at host offset %" PRIu64 ": %m",
                 job.w.path, job.w.offset);
    }
    if (r == -1)
      e->failed = true;
    job.s->pending--;
    pthread_cond_broadcast (&e->cond);
    pthread_mutex_unlock (&e->lock);
  }
}

/* Free, in ring order, the written slots whose queued writes are all
 * made.  Called by the writer with the lock held; drops it to unmap. */
static void
release_written (struct engine *e)
{
  while (e->next_free_seq != e->next_write_seq) {
    struct slot *s = &e->slots[e->next_free_seq % e->nslots];

    if (s->pending > 0)
      return;
    if (!s->all_zero && s->data != s->buf) {
      pthread_mutex_unlock (&e->lock);
      image_unmap (e->src, s->offset, s->len);
      pthread_mutex_lock (&e->lock);
    }
    s->state = SLOT_FREE;
    e->next_free_seq++;
    pthread_cond_broadcast (&e->cond);
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
      const uint8_t *p = s->data + i * e->unit;
      if ((e->nwriters
           ? image_pwrite_queued (e->dst, p, len, off, queue_write, e)
           : image_pwrite (e->dst, p, len, off)) == -1)
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
    for (;;) {
      release_written (e);
      if (e->failed
          || (s->state == SLOT_DONE && s->seq == e->next_write_seq)
          || (e->reader_done && e->next_write_seq == e->next_read_seq))
        break;
      pthread_cond_wait (&e->cond, &e->lock);
    }
    if (e->failed) {
      pthread_mutex_unlock (&e->lock);
      goto out;
    }
    if (e->reader_done && e->next_write_seq == e->next_read_seq) {
      pthread_mutex_unlock (&e->lock);
      break;
    }
    pthread_mutex_unlock (&e->lock);

    e->queue_slot = s;
    if (writer_write (e, s) == -1
        || (e->opts->written
            && e->opts->written (e->opts->written_opaque, s->offset,
                                 s->all_zero ? NULL : s->data,
                                 s->len) == -1)) {
      engine_fail (e);
      goto out;
    }
    progress_update (prog, s->offset + s->len);

    pthread_mutex_lock (&e->lock);
    s->state = SLOT_WRITTEN;
    e->next_write_seq++;
    pthread_cond_broadcast (&e->cond);
    pthread_mutex_unlock (&e->lock);
  }

  /* Every queued write made before anything else touches the file. */
  pthread_mutex_lock (&e->lock);
  for (;;) {
    release_written (e);
    if (e->failed || e->next_free_seq == e->next_write_seq)
      break;
    pthread_cond_wait (&e->cond, &e->lock);
  }
  e->writes_done = true;
  pthread_cond_broadcast (&e->cond);
  pthread_mutex_unlock (&e->lock);
  if (e->failed)
    goto out;

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
  pthread_t reader, *workers = NULL, writers[MAX_WRITE_THREADS];
  unsigned started = 0, writers_started = 0;
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
  /* A source read through a mapping needs no slot memory, so a plain
   * copy from it takes bigger slots: fewer and larger writes, which the
   * page cache takes in larger folios.  Compression keeps 1 MiB slots
   * for its per-slot buffers and its spread over the workers. */
  if (!opts->compress && e.chunk < MAPPED_CHUNK_SIZE
      && image_map (src, 0, 0))
    e.chunk = MAPPED_CHUNK_SIZE;
  e.units_per_chunk = e.chunk / e.unit;
  e.zero_init = image_has_zero_init (dst);
  e.nslots = 2 * nthreads + 2;
  if (dst->drv->pwrite_queued)
    e.nwriters = P2V_MIN (nthreads, (unsigned) MAX_WRITE_THREADS);
  pthread_mutex_init (&e.lock, NULL);
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

  for (; writers_started < e.nwriters; writers_started++) {
    errno = pthread_create (&writers[writers_started], NULL, write_thread,
                            &e);
    if (errno) {
      p2v_error ("cannot start a write thread: %m");
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
  for (unsigned i = 0; i < writers_started; i++)
    pthread_join (writers[i], NULL);
  if (e.failed)
    r = -1;
  for (unsigned i = 0; i < e.nslots; i++) {
    free (e.slots[i].buf);
    free (e.slots[i].cbuf);
    free (e.slots[i].clen);
    free (e.slots[i].kind);
  }
  free (e.slots);
  free (e.jobs);
  free (workers);
  pthread_mutex_destroy (&e.lock);
  pthread_cond_destroy (&e.cond);
  stats->seconds = now_seconds () - t0;
  return r;
}
