/* common.h: the small helpers every p2v module shares: error reporting,
 * full-length I/O, allocation, size parsing and terminal progress. */
#ifndef P2V_COMMON_H
#define P2V_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define P2V_VERSION "0.1.0"

/* Exit codes, documented in `p2v --help` and man/p2v.1. */
enum {
  P2V_EXIT_OK = 0,
  P2V_EXIT_NEGATIVE = 1,  /* ran, and the answer is "no": images differ, guest failed */
  P2V_EXIT_ERROR = 2,     /* bad arguments, bad input, I/O failure */
  P2V_EXIT_INTERRUPTED = 130,
};

#define ARRAY_SIZE(a) (sizeof (a) / sizeof ((a)[0]))
#define P2V_MIN(a, b) ((a) < (b) ? (a) : (b))
#define P2V_MAX(a, b) ((a) > (b) ? (a) : (b))
#define IS_POWER_OF_2(x) ((x) != 0 && ((x) & ((x) - 1)) == 0)
#define ROUND_UP(x, a) (((x) + (a) - 1) / (a) * (a))
#define DIV_ROUND_UP(x, a) (((x) + (a) - 1) / (a))

#define P2V_PRINTF(f, a) __attribute__ ((format (printf, f, a)))
#define P2V_NORETURN __attribute__ ((noreturn))

/* Report an error: "p2v: MESSAGE" on stderr (unless quiet), also kept as
 * the calling thread's last error.  Always returns -1 and keeps errno, so
 * `return p2v_error ("cannot open '%s': %m", path);` reads naturally. */
int p2v_error (const char *fmt, ...) P2V_PRINTF (1, 2);
/* Same, for functions returning a pointer. */
void *p2v_error_null (const char *fmt, ...) P2V_PRINTF (1, 2);
void p2v_warning (const char *fmt, ...) P2V_PRINTF (1, 2);
void p2v_die (const char *fmt, ...) P2V_PRINTF (1, 2) P2V_NORETURN;
const char *p2v_last_error (void);
/* Unit tests silence stderr and look at p2v_last_error() instead. */
void p2v_error_set_quiet (bool quiet);
extern const char *p2v_progname;

/* Allocation that dies on out-of-memory (callers bound sizes first). */
void *xmalloc (size_t n);
void *xcalloc (size_t nmemb, size_t size);
void *xrealloc (void *p, size_t n);
char *xstrdup (const char *s);
char *xasprintf (const char *fmt, ...) P2V_PRINTF (1, 2);
/* Aligned buffer for O_DIRECT-friendly I/O; free with free(). */
void *xmalloc_aligned (size_t n);

/* Full-length I/O: retry on short counts and EINTR.  A read past the end
 * of file sets errno to EIO ("file is truncated" is the caller's message). */
int full_pread (int fd, void *buf, size_t count, uint64_t offset);
int full_pwrite (int fd, const void *buf, size_t count, uint64_t offset);
int full_write (int fd, const void *buf, size_t count);
/* Write text to path through a temporary name in the same directory,
 * flushed and renamed, so readers see the old file or the new one. */
int write_file_atomic (const char *path, const char *text);

/* Early writeback: every 32 MiB written, ask the kernel to start writing
 * the file's dirty pages, so the disk works while we convert and the
 * final fsync has little left to wait for. */
struct p2v_writeback {
  uint64_t since_kick;
};
void writeback_account (int fd, struct p2v_writeback *wb, size_t written);

/* A shared, read-only block of ZERO_BLOCK_SIZE zero bytes (the largest
 * qcow2 cluster), for writing zeros without allocating. */
#define ZERO_BLOCK_SIZE (2 * 1024 * 1024)
const void *zero_block (void);
/* Write count zero bytes at offset through fn, ZERO_BLOCK_SIZE at a time. */
int write_zeros (int (*fn) (void *h, const void *buf, size_t count,
                            uint64_t offset),
                 void *h, uint64_t count, uint64_t offset);

/* True if the buffer holds only zero bytes (fast, word at a time). */
bool buffer_is_zero (const void *buf, size_t len);

/* Parse "64K", "2M", "1G", "512" (bytes).  Returns 0 or -1. */
int parse_size (const char *s, uint64_t *out);
/* Human-readable size into buf ("1.5 GiB"). */
const char *human_size (uint64_t bytes, char *buf, size_t buflen);

/* Monotonic clock in seconds. */
double now_seconds (void);

/* Terminal progress: draws only when stderr is a TTY. */
struct p2v_progress;
struct p2v_progress *progress_new (const char *label, uint64_t total);
void progress_update (struct p2v_progress *p, uint64_t done);
void progress_finish (struct p2v_progress *p);
void progress_free (struct p2v_progress *p);

/* Cleanup attribute, as nbdkit does. */
static inline void cleanup_free_fn (void *p) { extern void free (void *); free (*(void **) p); }
#define CLEANUP_FREE __attribute__ ((cleanup (cleanup_free_fn)))

#endif /* P2V_COMMON_H */
