/* util.c: allocation, zero detection, size parsing, clocks. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"

static void P2V_NORETURN
out_of_memory (size_t n)
{
  fprintf (stderr, "%s: out of memory allocating %zu bytes\n",
           p2v_progname, n);
  abort ();
}

void *
xmalloc (size_t n)
{
  void *p = malloc (n ? n : 1);
  if (!p)
    out_of_memory (n);
  return p;
}

void *
xcalloc (size_t nmemb, size_t size)
{
  void *p = calloc (nmemb ? nmemb : 1, size ? size : 1);
  if (!p)
    out_of_memory (nmemb * size);
  return p;
}

void *
xrealloc (void *p, size_t n)
{
  p = realloc (p, n ? n : 1);
  if (!p)
    out_of_memory (n);
  return p;
}

char *
xstrdup (const char *s)
{
  char *p = strdup (s);
  if (!p)
    out_of_memory (strlen (s));
  return p;
}

char *
xasprintf (const char *fmt, ...)
{
  va_list ap;
  char *s;

  va_start (ap, fmt);
  if (vasprintf (&s, fmt, ap) == -1)
    out_of_memory (0);
  va_end (ap);
  return s;
}

void *
xmalloc_aligned (size_t n)
{
  void *p;
  int r = posix_memalign (&p, 4096, n ? n : 1);
  if (r != 0)
    out_of_memory (n);
  return p;
}

bool
buffer_is_zero (const void *buf, size_t len)
{
  const unsigned char *p = buf;

  /* Check the first bytes one at a time (most data fails here), then
   * compare the buffer against itself shifted, which memcmp does at
   * memory speed. */
  if (len == 0)
    return true;
  for (size_t i = 0; i < 16 && i < len; i++)
    if (p[i])
      return false;
  if (len <= 16)
    return true;
  return memcmp (p, p + 16, len - 16) == 0;
}

int
parse_size (const char *s, uint64_t *out)
{
  char *end;
  uint64_t v, mult = 1;

  if (!s || !isdigit ((unsigned char) *s))
    return -1;
  errno = 0;
  v = strtoull (s, &end, 10);
  if (errno)
    return -1;
  switch (*end) {
  case '\0': break;
  case 'k': case 'K': mult = 1ULL << 10; end++; break;
  case 'm': case 'M': mult = 1ULL << 20; end++; break;
  case 'g': case 'G': mult = 1ULL << 30; end++; break;
  case 't': case 'T': mult = 1ULL << 40; end++; break;
  default: return -1;
  }
  if (*end == 'i' && end[1] == 'B')
    end += 2;
  else if (*end == 'B')
    end++;
  if (*end != '\0')
    return -1;
  if (v > UINT64_MAX / mult)
    return -1;
  *out = v * mult;
  return 0;
}

const char *
human_size (uint64_t bytes, char *buf, size_t buflen)
{
  static const char *units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
  double v = bytes;
  size_t u = 0;

  while (v >= 1024 && u + 1 < ARRAY_SIZE (units)) {
    v /= 1024;
    u++;
  }
  if (u == 0)
    snprintf (buf, buflen, "%" PRIu64 " B", bytes);
  else
    snprintf (buf, buflen, "%.1f %s", v, units[u]);
  return buf;
}

double
now_seconds (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}
