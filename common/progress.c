/* progress.c: a one-line progress meter (percent, MB/s, ETA) on a TTY. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common.h"

struct p2v_progress {
  const char *label;
  uint64_t total;
  double start, last_draw;
  bool tty;
};

struct p2v_progress *
progress_new (const char *label, uint64_t total)
{
  struct p2v_progress *p = xcalloc (1, sizeof *p);

  p->label = label;
  p->total = total;
  p->start = now_seconds ();
  p->tty = isatty (STDERR_FILENO);
  return p;
}

static void
draw (struct p2v_progress *p, uint64_t done, bool final)
{
  double t = now_seconds () - p->start;
  double pct = p->total ? 100.0 * done / p->total : 100.0;
  double rate = t > 0 ? done / t : 0;
  char eta[32] = "--:--";

  if (rate > 0 && done < p->total) {
    unsigned s = (p->total - done) / rate;
    snprintf (eta, sizeof eta, "%02u:%02u", s / 60, s % 60);
  }
  fprintf (stderr, "\r%s: %5.1f%%  %8.1f MB/s  ETA %s%s",
           p->label, pct, rate / 1e6, final ? "00:00" : eta,
           final ? "\n" : "");
  fflush (stderr);
}

void
progress_update (struct p2v_progress *p, uint64_t done)
{
  double t;

  if (!p || !p->tty)
    return;
  t = now_seconds ();
  if (t - p->last_draw < 0.25)
    return;
  p->last_draw = t;
  draw (p, done, false);
}

void
progress_finish (struct p2v_progress *p)
{
  if (p && p->tty)
    draw (p, p->total, true);
}

void
progress_free (struct p2v_progress *p)
{
  free (p);
}
