/* cmd-batch.c: `p2v batch PLAN`: run every server of a plan through
 * convert -> inject -> smoke, each stage a plain `p2v` child process,
 * N servers at a time, resumable from a state file, ending in a report. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <dirent.h>
#include <time.h>
#include <unistd.h>

#include <json.h>

#include "common.h"
#include "jsonutil.h"
#include "batch.h"

const char cmd_batch_help[] =
  "usage: p2v batch PLAN [options]\n"
  "\n"
  "Run every server listed in PLAN (an INI file: see 'man p2v' or\n"
  "examples/batch.ini) through convert, inject and smoke, each stage a\n"
  "plain `p2v` command in its own process, N servers at a time.  One\n"
  "server's failure never stops the others.  Each server's stages append\n"
  "to NAME.log beside its output; the end is a table on the terminal and\n"
  "report.json and report.html in the batch directory ([defaults]\n"
  "output-dir, else the plan's directory).  PLAN.state records each\n"
  "server's stage after every step.\n"
  "\n"
  "  -j, --jobs N            servers at a time (default: one per core, at\n"
  "                          most one per 2 GiB of available memory above\n"
  "                          1 GiB, at least 1; or [defaults] jobs)\n"
  "      --resume            continue from PLAN.state: servers that passed\n"
  "                          are skipped, the others restart at the stage\n"
  "                          that failed or was cut off (stages done are\n"
  "                          never redone)\n"
  "  -n, --dry-run           check the plan and print the command lines\n"
  "                          (shell-quoted, one per stage) without running\n"
  "                          anything\n"
  "      --json              print the report (or, with --dry-run, the\n"
  "                          commands) as JSON on stdout\n"
  "  -q, --quiet             no status lines, only the table\n"
  "\n"
  "The plan is checked as a whole before any work starts; every problem is\n"
  "reported as PLAN:LINE: what.  An existing PLAN.state without --resume is\n"
  "refused (remove it to start over).\n"
  "\n"
  "exit: 0 every server passed, 1 at least one failed, 2 bad plan or\n"
  "arguments, 130 interrupted (PLAN.state says where; --resume continues)\n";

static volatile sig_atomic_t interrupted;

static void
on_signal (int sig)
{
  interrupted = sig;
}

/* One server's run. */
struct run {
  struct batch_server *s;
  json_object *ss;              /* its object in the state */
  int stage;                    /* running or next stage; -1: finished */
  pid_t pid;
  double stage_start;
  off_t log_offset;             /* where this stage's output starts */
  bool queued;
};

struct batch {
  struct batch_plan *plan;
  json_object *state;
  struct run *runs;
  size_t n_runs;
  char *self;                   /* this binary, for the p2v stages */
  bool tty, quiet;
  int drawn;                    /* status lines on screen */
  double last_draw;
};

/* ---- small helpers ------------------------------------------------------ */

static int
mkdir_p (const char *path)
{
  char *p = xstrdup (path);
  int r = 0;

  for (char *s = p + 1; ; s++) {
    if (*s == '/' || *s == '\0') {
      char c = *s;
      *s = '\0';
      if (mkdir (p, 0755) == -1 && errno != EEXIST) {
        r = p2v_error ("cannot create directory '%s': %m", p);
        break;
      }
      *s = c;
      if (c == '\0')
        break;
    }
  }
  free (p);
  return r;
}

static uint64_t
mem_available (void)
{
  FILE *f = fopen ("/proc/meminfo", "re");
  char line[256];
  unsigned long long kb = 0;

  if (!f)
    return 0;
  while (fgets (line, sizeof line, f))
    if (sscanf (line, "MemAvailable: %llu kB", &kb) == 1)
      break;
  fclose (f);
  return kb * 1024;
}

static void
state_set_string (json_object *o, const char *key, const char *v)
{
  json_object_object_add (o, key, json_string_or_null (v));
}

static json_object *
state_stage (json_object *ss, int stage)
{
  json_object *stages, *one;

  if (!json_object_object_get_ex (ss, "stages", &stages)
      || !json_object_is_type (stages, json_type_object)) {
    stages = json_object_new_object ();
    json_object_object_add (ss, "stages", stages);
  }
  if (!json_object_object_get_ex (stages, batch_stage_name (stage), &one)
      || !json_object_is_type (one, json_type_object)) {
    one = json_object_new_object ();
    json_object_object_add (stages, batch_stage_name (stage), one);
  }
  return one;
}

static bool
stage_done (json_object *ss, int stage)
{
  json_object *done;

  if (!json_object_object_get_ex (ss, "done", &done)
      || !json_object_is_type (done, json_type_array))
    return false;
  for (size_t i = 0; i < json_object_array_length (done); i++)
    if (batch_stage_by_name (json_object_get_string (
                               json_object_array_get_idx (done, i))) == stage)
      return true;
  return false;
}

static void
mark_stage_done (json_object *ss, int stage)
{
  json_object *done;

  if (!json_object_object_get_ex (ss, "done", &done)
      || !json_object_is_type (done, json_type_array)) {
    done = json_object_new_array ();
    json_object_object_add (ss, "done", done);
  }
  if (!stage_done (ss, stage))
    json_object_array_add (done, json_object_new_string (batch_stage_name (stage)));
}

static int
next_stage (const struct batch_server *s, json_object *ss, int from)
{
  for (int st = from; st < BATCH_N_STAGES; st++)
    if (batch_stage_enabled (s, st) && !stage_done (ss, st))
      return st;
  return -1;
}

/* The command lines of a server, as the state keeps them: a server whose
 * plan entry changed is not resumed from a state of another plan. */
static json_object *
server_commands (const struct batch_server *s)
{
  json_object *a = json_object_new_array ();

  for (int st = 0; st < BATCH_N_STAGES; st++) {
    struct batch_command cmd;
    char *line;
    if (!batch_stage_enabled (s, st))
      continue;
    batch_command_build (s, st, &cmd);
    line = batch_command_line (&cmd);
    json_object_array_add (a, json_object_new_string (line));
    free (line);
    batch_command_free (&cmd);
  }
  return a;
}

/* ---- status lines ------------------------------------------------------- */

static void
status_clear (struct batch *b)
{
  for (; b->drawn > 0; b->drawn--)
    fputs ("\033[1A\033[2K", stderr);
}

/* The last line a stage wrote to its log (printable bytes only), for
 * the status line; "" when there is none. */
static void
log_tail (const struct run *r, char *out, size_t outlen)
{
  char buf[512];
  int fd = open (r->s->log, O_RDONLY | O_CLOEXEC);
  off_t size, from;
  ssize_t n;
  char *end, *start;
  size_t o = 0;

  out[0] = '\0';
  if (fd == -1)
    return;
  size = lseek (fd, 0, SEEK_END);
  from = size - (off_t) sizeof buf + 1;
  if (from < r->log_offset)
    from = r->log_offset;
  n = from < size ? pread (fd, buf, size - from, from) : 0;
  close (fd);
  if (n <= 0)
    return;
  buf[n] = '\0';
  end = buf + n;
  while (end > buf && (end[-1] == '\n' || end[-1] == '\r'))
    *--end = '\0';
  start = end;
  while (start > buf && start[-1] != '\n' && start[-1] != '\r')
    start--;
  for (char *p = start; *p && o + 1 < outlen; p++)
    if ((unsigned char) *p >= 0x20 && *p != 0x7f)
      out[o++] = *p;
  out[o] = '\0';
}

static void
status_draw (struct batch *b)
{
  double now = now_seconds ();
  struct winsize ws;
  int width = ioctl (STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20
    ? ws.ws_col : 80;

  if (!b->tty || b->quiet)
    return;
  status_clear (b);
  for (size_t i = 0; i < b->n_runs; i++) {
    struct run *r = &b->runs[i];
    char line[1024], tail[512];
    unsigned t;
    if (!r->pid)
      continue;
    t = now - r->stage_start;
    log_tail (r, tail, sizeof tail);
    snprintf (line, sizeof line, "  %-16s %-8s %3u:%02u  %s", r->s->name,
              batch_stage_name (r->stage), t / 60, t % 60, tail);
    /* One screen line each, or the redraw would lose count. */
    if ((int) strlen (line) > width - 1) {
      int cut = width - 1;
      while (cut > 0 && ((unsigned char) line[cut] & 0xc0) == 0x80)
        cut--;                  /* not inside a UTF-8 character */
      line[cut] = '\0';
    }
    fprintf (stderr, "%s\n", line);
    b->drawn++;
  }
  fflush (stderr);
  b->last_draw = now;
}

static void
event (struct batch *b, const char *fmt, ...) P2V_PRINTF (2, 3);

static void
event (struct batch *b, const char *fmt, ...)
{
  va_list ap;

  if (b->quiet)
    return;
  status_clear (b);
  va_start (ap, fmt);
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  fputc ('\n', stderr);
  status_draw (b);
}

/* ---- stages ------------------------------------------------------------- */

static int
save_state (struct batch *b)
{
  return batch_state_save (b->plan->state_path, b->state);
}

/* A convert killed outright (SIGKILL) leaves its temporary file; its
 * name carries the pid, so remove those whose process is gone. */
static void
remove_stale_partials (const struct batch_server *s)
{
  char *dup = xstrdup (s->output), *prefix;
  DIR *d = opendir (s->output_dir);
  struct dirent *e;

  prefix = xasprintf (".%s.p2v-partial.", basename (dup));
  free (dup);
  if (!d) {
    free (prefix);
    return;
  }
  while ((e = readdir (d))) {
    char *end;
    long pid;
    if (strncmp (e->d_name, prefix, strlen (prefix)) != 0)
      continue;
    pid = strtol (e->d_name + strlen (prefix), &end, 10);
    if (*end || pid <= 0 || (kill (pid, 0) == -1 && errno == ESRCH)) {
      char *p = xasprintf ("%s/%s", s->output_dir, e->d_name);
      unlink (p);
      free (p);
    }
  }
  closedir (d);
  free (prefix);
}

static void
log_line (const char *log, const char *fmt, ...) P2V_PRINTF (2, 3);

static void
log_line (const char *log, const char *fmt, ...)
{
  FILE *f = fopen (log, "ae");
  va_list ap;

  if (!f)
    return;
  va_start (ap, fmt);
  vfprintf (f, fmt, ap);
  va_end (ap);
  fputc ('\n', f);
  fclose (f);
}

static off_t
file_size (const char *path)
{
  struct stat st;
  return stat (path, &st) == 0 ? st.st_size : 0;
}

static void P2V_NORETURN
child_exec (const struct batch *b, const struct batch_command *cmd, pid_t parent)
{
  int fd;

  /* If the batch dies, its stages stop too (convert then removes its
   * temporary output), so a resume never races an orphan. */
  prctl (PR_SET_PDEATHSIG, SIGTERM);
  if (getppid () != parent)
    _exit (P2V_EXIT_INTERRUPTED);
  signal (SIGINT, SIG_DFL);
  signal (SIGTERM, SIG_DFL);
  signal (SIGHUP, SIG_DFL);
  fd = open ("/dev/null", O_RDONLY);
  if (fd != -1) {
    dup2 (fd, STDIN_FILENO);
    close (fd);
  }
  if (cmd->stdout_path) {
    fd = open (cmd->stdout_path, O_WRONLY | O_CREAT | O_CLOEXEC
               | (cmd->out_append ? O_APPEND : O_TRUNC), 0644);
    if (fd == -1 || dup2 (fd, STDOUT_FILENO) == -1) {
      fprintf (stderr, "p2v: cannot open '%s': %s\n", cmd->stdout_path, strerror (errno));
      _exit (127);
    }
  }
  if (cmd->err_to_out)
    dup2 (STDOUT_FILENO, STDERR_FILENO);
  else if (cmd->stderr_path) {
    fd = open (cmd->stderr_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd == -1 || dup2 (fd, STDERR_FILENO) == -1)
      _exit (127);
  }
  if (cmd->shell)
    execvp (cmd->argv[0], cmd->argv);
  else
    execv (b->self, cmd->argv);
  fprintf (stderr, "p2v: cannot run '%s': %s\n",
           cmd->shell ? cmd->argv[0] : b->self, strerror (errno));
  _exit (127);
}

static void finish_server (struct batch *b, struct run *r, bool passed,
                           const char *reason);

/* Start R's current stage.  A stage that cannot start fails the server. */
static void
start_stage (struct batch *b, struct run *r)
{
  struct batch_command cmd;
  json_object *sto = state_stage (r->ss, r->stage);
  char *line;
  pid_t pid, parent = getpid ();
  time_t now = time (NULL);
  char when[32];
  struct tm tm;

  if (r->stage == BATCH_CONVERT) {
    json_object *v;
    struct stat st;
    /* Cut off between convert's rename and the state update: its output
     * is complete (convert renames only a finished, flushed file). */
    if (json_object_object_get_ex (sto, "started", &v)
        && stat (r->s->output, &st) == 0
        && st.st_mtime >= json_object_get_int64 (v)) {
      log_line (r->s->log, "== p2v batch: convert: '%s' was completed by the run "
                "that was cut off", r->s->output);
      event (b, "%s: convert was complete before the cut", r->s->name);
      mark_stage_done (r->ss, r->stage);
      r->stage = next_stage (r->s, r->ss, r->stage + 1);
      if (r->stage == -1) {
        finish_server (b, r, true, NULL);
        return;
      }
      start_stage (b, r);
      return;
    }
    remove_stale_partials (r->s);
  }

  batch_command_build (r->s, r->stage, &cmd);
  line = batch_command_line (&cmd);
  strftime (when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime_r (&now, &tm));
  log_line (r->s->log, "== p2v batch: %s started %s: %s",
            batch_stage_name (r->stage), when, line);
  free (line);
  r->log_offset = file_size (r->s->log);

  json_object_object_add (sto, "started", json_object_new_int64 (now));
  json_object_object_del (sto, "seconds");
  json_object_object_del (sto, "exit");
  state_set_string (r->ss, "status", "running");
  state_set_string (r->ss, "stage", batch_stage_name (r->stage));
  state_set_string (r->ss, "reason", NULL);
  save_state (b);

  fflush (NULL);
  pid = fork ();
  if (pid == -1) {
    char *why = xasprintf ("cannot start %s: %s", batch_stage_name (r->stage),
                           strerror (errno));
    batch_command_free (&cmd);
    finish_server (b, r, false, why);
    free (why);
    return;
  }
  if (pid == 0)
    child_exec (b, &cmd, parent);
  batch_command_free (&cmd);
  r->pid = pid;
  r->stage_start = now_seconds ();
  if (!b->tty)
    event (b, "%s: %s started", r->s->name, batch_stage_name (r->stage));
  else
    status_draw (b);
}

/* The one-line reason a stage failed: the last "p2v: " line it wrote to
 * the log (p2v's errors are one line), else its first line (ssh's root
 * cause comes first) and its last. */
static char *
reason_from_log (const struct run *r)
{
  FILE *f = fopen (r->s->log, "re");
  char *line = NULL, *best = NULL, *first = NULL, *last = NULL;
  size_t cap = 0;
  ssize_t len;

  if (!f)
    return NULL;
  if (fseeko (f, r->log_offset, SEEK_SET) == 0) {
    while ((len = getline (&line, &cap, f)) != -1) {
      while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        line[--len] = '\0';
      if (len == 0 || strncmp (line, "== p2v batch:", 13) == 0)
        continue;
      if (len > 400)
        line[400] = '\0';
      if (strncmp (line, "p2v: ", 5) == 0) {
        free (best);
        best = xstrdup (line + 5);
      }
      if (!first)
        first = xstrdup (line);
      free (last);
      last = xstrdup (line);
    }
  }
  free (line);
  fclose (f);
  if (best) {
    free (first);
    free (last);
    return best;
  }
  if (first && last && strcmp (first, last) != 0) {
    char *both = xasprintf ("%s; %s", first, last);
    free (first);
    free (last);
    return both;
  }
  free (first);
  return last;
}

static char *
reason_from_smoke (const struct batch_server *s)
{
  json_object *o = json_object_from_file (s->smoke_json), *v;
  const char *stage = NULL, *evidence = NULL, *error = NULL;
  char *r = NULL;

  if (!o)
    return NULL;
  if (json_object_object_get_ex (o, "error", &v) && json_object_is_type (v, json_type_string))
    error = json_object_get_string (v);
  if (json_object_object_get_ex (o, "stage", &v) && json_object_is_type (v, json_type_string))
    stage = json_object_get_string (v);
  if (json_object_object_get_ex (o, "evidence", &v) && json_object_is_type (v, json_type_string))
    evidence = json_object_get_string (v);
  if (error)
    r = xstrdup (error);
  else if (stage && evidence)
    r = xasprintf ("the guest did not boot: %s: %.300s", stage, evidence);
  else if (stage)
    r = xasprintf ("the guest did not boot: %s", stage);
  json_object_put (o);
  return r;
}

static void
finish_server (struct batch *b, struct run *r, bool passed, const char *reason)
{
  state_set_string (r->ss, "status", passed ? "passed" : "failed");
  state_set_string (r->ss, "reason", reason);
  save_state (b);
  if (passed)
    event (b, "%s: PASS", r->s->name);
  else
    event (b, "%s: FAIL at %s: %s", r->s->name, batch_stage_name (r->stage),
           reason ? reason : "unknown reason");
  r->stage = -1;
  r->pid = 0;
}

static void
stage_ended (struct batch *b, struct run *r, int wstatus)
{
  json_object *sto = state_stage (r->ss, r->stage);
  double secs = now_seconds () - r->stage_start;
  int code = WIFEXITED (wstatus) ? WEXITSTATUS (wstatus) : -1;
  char *reason = NULL;
  bool ok;

  r->pid = 0;
  /* The reason comes from the stage's own output, before our trailer. */
  if (!WIFEXITED (wstatus) || code != 0) {
    if (r->stage == BATCH_SMOKE && code == P2V_EXIT_NEGATIVE)
      reason = reason_from_smoke (r->s);
    if (!reason && WIFSIGNALED (wstatus))
      reason = xasprintf ("%s was killed by signal %d", batch_stage_name (r->stage),
                          WTERMSIG (wstatus));
    if (!reason)
      reason = reason_from_log (r);
    if (!reason)
      reason = xasprintf ("%s exited with status %d", batch_stage_name (r->stage), code);
  }
  json_object_object_add (sto, "seconds", json_object_new_double (secs));
  json_object_object_add (sto, "exit", code >= 0 ? json_object_new_int (code) : NULL);
  if (WIFSIGNALED (wstatus))
    json_object_object_add (sto, "signal", json_object_new_int (WTERMSIG (wstatus)));
  log_line (r->s->log, "== p2v batch: %s ended after %.1f s: %s %d",
            batch_stage_name (r->stage), secs, code >= 0 ? "exit" : "signal",
            code >= 0 ? code : WTERMSIG (wstatus));

  /* Stopped by our own interruption: not a failure, resumable. */
  if (interrupted && (WIFSIGNALED (wstatus) || code == P2V_EXIT_INTERRUPTED)) {
    state_set_string (r->ss, "status", "interrupted");
    save_state (b);
    event (b, "%s: %s interrupted", r->s->name, batch_stage_name (r->stage));
    free (reason);
    return;
  }

  ok = code == 0;
  if (!ok) {
    finish_server (b, r, false, reason);
    free (reason);
    return;
  }
  mark_stage_done (r->ss, r->stage);
  if (!b->tty)
    event (b, "%s: %s done in %.1f s", r->s->name, batch_stage_name (r->stage), secs);
  r->stage = next_stage (r->s, r->ss, r->stage + 1);
  if (r->stage == -1)
    finish_server (b, r, true, NULL);
  else if (!interrupted)
    start_stage (b, r);
  else {
    state_set_string (r->ss, "status", "interrupted");
    state_set_string (r->ss, "stage", batch_stage_name (r->stage));
    save_state (b);
  }
}

static size_t
running (const struct batch *b)
{
  size_t n = 0;
  for (size_t i = 0; i < b->n_runs; i++)
    n += b->runs[i].pid != 0;
  return n;
}

static void
run_all (struct batch *b, unsigned jobs)
{
  size_t next = 0;
  bool stopping = false;

  for (;;) {
    int wstatus;
    pid_t pid;

    while (!interrupted && running (b) < jobs && next < b->n_runs) {
      struct run *r = &b->runs[next++];
      if (r->queued)
        start_stage (b, r);
    }
    if (running (b) == 0 && (next >= b->n_runs || interrupted))
      break;
    if (interrupted && !stopping) {
      /* Stop every running stage; each cleans up after itself. */
      stopping = true;
      event (b, "p2v batch: interrupted, stopping %zu running stage%s", running (b),
             running (b) == 1 ? "" : "s");
      for (size_t i = 0; i < b->n_runs; i++)
        if (b->runs[i].pid)
          kill (b->runs[i].pid, SIGTERM);
    }
    pid = waitpid (-1, &wstatus, interrupted ? 0 : WNOHANG);
    if (pid > 0) {
      for (size_t i = 0; i < b->n_runs; i++)
        if (b->runs[i].pid == pid) {
          stage_ended (b, &b->runs[i], wstatus);
          break;
        }
      continue;
    }
    if (pid == -1 && errno != EINTR && errno != ECHILD)
      break;
    {
      struct timespec ts = { 0, 200 * 1000 * 1000 };
      nanosleep (&ts, NULL);
    }
    if (b->tty && now_seconds () - b->last_draw >= 1.0)
      status_draw (b);
  }
  status_clear (b);
}

/* ---- dry run ------------------------------------------------------------ */

static void
dry_run (const struct batch_plan *plan, bool json)
{
  json_object *top = json_object_new_object (), *a = json_object_new_array ();

  for (size_t i = 0; i < plan->n_servers; i++) {
    const struct batch_server *s = &plan->servers[i];
    json_object *one = json_object_new_object (), *cmds = json_object_new_array ();
    char *q = batch_shell_quote (s->output_dir);
    char *mk = xasprintf ("mkdir -p -- %s", q);

    free (q);
    json_object_array_add (cmds, json_object_new_string (mk));
    if (!json)
      printf ("%s\n", mk);
    free (mk);
    for (int st = 0; st < BATCH_N_STAGES; st++) {
      struct batch_command cmd;
      char *line;
      if (!batch_stage_enabled (s, st))
        continue;
      batch_command_build (s, st, &cmd);
      line = batch_command_line (&cmd);
      if (!json)
        printf ("%s\n", line);
      json_object_array_add (cmds, json_object_new_string (line));
      free (line);
      batch_command_free (&cmd);
    }
    json_object_object_add (one, "name", json_object_new_string (s->name));
    json_object_object_add (one, "commands", cmds);
    json_object_array_add (a, one);
  }
  json_object_object_add (top, "plan", json_object_new_string (plan->abs_path));
  json_object_object_add (top, "servers", a);
  if (json)
    printf ("%s\n", json_object_to_json_string_ext (top, JSON_C_TO_STRING_PRETTY
                                                    | JSON_C_TO_STRING_NOSLASHESCAPE));
  json_object_put (top);
}

/* ---- the command -------------------------------------------------------- */

static int
parse_jobs (const char *s, unsigned *out)
{
  char *end;
  long l;

  errno = 0;
  l = strtol (s, &end, 10);
  if (errno || end == s || *end || l < 1 || l > 256)
    return -1;
  *out = l;
  return 0;
}

int
cmd_batch (int argc, char **argv)
{
  enum { OPT_RESUME = 256, OPT_JSON, OPT_HELP };
  static const struct option long_opts[] = {
    { "jobs", required_argument, NULL, 'j' },
    { "resume", no_argument, NULL, OPT_RESUME },
    { "dry-run", no_argument, NULL, 'n' },
    { "json", no_argument, NULL, OPT_JSON },
    { "quiet", no_argument, NULL, 'q' },
    { "help", no_argument, NULL, OPT_HELP },
    { NULL, 0, NULL, 0 },
  };
  struct batch b = { 0 };
  bool resume = false, dry = false, json = false, existed;
  unsigned jobs = 0;
  json_object *report = NULL;
  int c, lock_fd = -1, r = P2V_EXIT_ERROR;
  struct sigaction sa = { .sa_handler = on_signal };

  optind = 1;
  while ((c = getopt_long (argc, argv, "j:nq", long_opts, NULL)) != -1) {
    switch (c) {
    case 'j':
      if (parse_jobs (optarg, &jobs) == -1) {
        p2v_error ("jobs '%s' is not a number from 1 to 256", optarg);
        return P2V_EXIT_ERROR;
      }
      break;
    case OPT_RESUME: resume = true; break;
    case 'n': dry = true; break;
    case OPT_JSON: json = true; break;
    case 'q': b.quiet = true; break;
    case OPT_HELP: fputs (cmd_batch_help, stdout); return P2V_EXIT_OK;
    default:
      fputs (cmd_batch_help, stderr);
      return P2V_EXIT_ERROR;
    }
  }
  if (optind != argc - 1) {
    p2v_error (optind >= argc ? "batch: missing plan" : "batch: too many arguments");
    fputs (cmd_batch_help, stderr);
    return P2V_EXIT_ERROR;
  }

  b.plan = batch_plan_load (argv[optind]);
  if (!b.plan)
    return P2V_EXIT_ERROR;
  if (dry) {
    dry_run (b.plan, json);
    batch_plan_free (b.plan);
    return P2V_EXIT_OK;
  }

  /* One batch per plan at a time: the plan file itself is the lock. */
  lock_fd = open (b.plan->path, O_RDONLY | O_CLOEXEC);
  if (lock_fd == -1 || flock (lock_fd, LOCK_EX | LOCK_NB) == -1) {
    p2v_error (errno == EWOULDBLOCK ? "plan '%s' is already being run by another p2v batch"
               : "cannot lock plan '%s': %m", b.plan->path);
    goto out;
  }
  b.state = batch_state_load (b.plan->state_path, &existed);
  if (!b.state)
    goto out;
  if (existed && !resume) {
    p2v_error ("state file '%s' exists: use --resume to continue that batch, "
               "or remove the file to start over", b.plan->state_path);
    goto out;
  }
  json_object_object_add (b.state, "plan", json_object_new_string (b.plan->abs_path));

  b.self = realpath ("/proc/self/exe", NULL);
  if (!b.self) {
    p2v_error ("cannot find the p2v binary (/proc/self/exe): %m");
    goto out;
  }

  /* Match the plan with the state; a changed server is not resumed. */
  b.runs = xcalloc (b.plan->n_servers, sizeof *b.runs);
  b.n_runs = b.plan->n_servers;
  for (size_t i = 0; i < b.n_runs; i++) {
    struct run *run = &b.runs[i];
    json_object *cmds = server_commands (&b.plan->servers[i]), *old;
    const char *status;

    run->s = &b.plan->servers[i];
    run->ss = batch_state_server (b.state, run->s->name);
    if (json_object_object_get_ex (run->ss, "commands", &old)
        && !json_object_equal (old, cmds)) {
      p2v_error ("%s:%d: server '%s' changed since '%s' was written: "
                 "remove the state file to start over", b.plan->path,
                 run->s->line, run->s->name, b.plan->state_path);
      json_object_put (cmds);
      goto out;
    }
    json_object_object_add (run->ss, "commands", cmds);
    status = json_object_get_string (json_object_object_get (run->ss, "status"));
    if (status && strcmp (status, "passed") == 0) {
      run->stage = -1;
      if (!b.quiet)
        fprintf (stderr, "%s: passed in an earlier run, skipped\n", run->s->name);
      continue;
    }
    run->stage = next_stage (run->s, run->ss, 0);
    if (run->stage == -1) {
      /* Every stage done but not recorded as passed: it passed. */
      state_set_string (run->ss, "status", "passed");
      continue;
    }
    run->queued = true;
    state_set_string (run->ss, "status", "pending");
  }

  if (mkdir_p (b.plan->batch_dir) == -1)
    goto out;
  for (size_t i = 0; i < b.n_runs; i++)
    if (b.runs[i].queued && mkdir_p (b.runs[i].s->output_dir) == -1)
      goto out;
  if (save_state (&b) == -1)
    goto out;

  if (!jobs)
    jobs = b.plan->jobs;
  if (!jobs)
    jobs = batch_default_jobs (sysconf (_SC_NPROCESSORS_ONLN), mem_available ());
  b.tty = isatty (STDERR_FILENO);
  if (!b.quiet)
    fprintf (stderr, "p2v batch: %zu server%s, %u at a time\n", b.n_runs,
             b.n_runs == 1 ? "" : "s", jobs);

  sigemptyset (&sa.sa_mask);
  sigaction (SIGINT, &sa, NULL);
  sigaction (SIGTERM, &sa, NULL);
  sigaction (SIGHUP, &sa, NULL);
  signal (SIGPIPE, SIG_IGN);

  run_all (&b, jobs);
  /* Servers never started because of an interruption stay pending. */
  save_state (&b);

  report = batch_report_build (b.plan, b.state);
  if (batch_report_write (b.plan, report) == -1)
    goto out;
  if (json)
    printf ("%s\n", json_object_to_json_string_ext (report, JSON_C_TO_STRING_PRETTY
                                                    | JSON_C_TO_STRING_NOSLASHESCAPE));
  else
    batch_report_print_table (report, stdout);
  if (interrupted)
    r = P2V_EXIT_INTERRUPTED;
  else {
    json_object *v;
    int passed = 0, total = -1;
    if (json_object_object_get_ex (report, "passed", &v)) passed = json_object_get_int (v);
    if (json_object_object_get_ex (report, "total", &v)) total = json_object_get_int (v);
    r = passed == total ? P2V_EXIT_OK : P2V_EXIT_NEGATIVE;
  }

 out:
  json_object_put (report);
  json_object_put (b.state);
  free (b.runs);
  free (b.self);
  batch_plan_free (b.plan);
  if (lock_fd != -1)
    close (lock_fd);
  return r;
}
