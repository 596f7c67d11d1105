/* error.c: one way to report errors, git style: print once, return -1. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

const char *p2v_progname = "p2v";
static bool quiet;
static _Thread_local char last_error[1024];

void
p2v_error_set_quiet (bool q)
{
  quiet = q;
}

const char *
p2v_last_error (void)
{
  return last_error;
}

static void
report (const char *prefix, const char *fmt, va_list ap)
{
  int saved_errno = errno;

  /* vsnprintf understands %m through errno in glibc. */
  errno = saved_errno;
  vsnprintf (last_error, sizeof last_error, fmt, ap);
  if (!quiet)
    fprintf (stderr, "%s: %s%s\n", p2v_progname, prefix, last_error);
  errno = saved_errno;
}

int
p2v_error (const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  report ("", fmt, ap);
  va_end (ap);
  return -1;
}

void *
p2v_error_null (const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  report ("", fmt, ap);
  va_end (ap);
  return NULL;
}

void
p2v_warning (const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  report ("warning: ", fmt, ap);
  va_end (ap);
}

void
p2v_die (const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  report ("", fmt, ap);
  va_end (ap);
  exit (P2V_EXIT_ERROR);
}
