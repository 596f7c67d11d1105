/* smoke.c: the smoke boot itself: a private temp dir with a qcow2 overlay
 * over IMAGE, qemu started on it through the guest's own boot loader, the
 * console watched until the classifier decides, everything removed after
 * (on Ctrl-C too). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json.h>

#include "common.h"
#include "jsonutil.h"
#include "smoke.h"

/* With KVM, a guest that shows nothing for this long is a hung KVM. */
#define KVM_SILENCE_SECONDS 20
/* With KVM, a guest whose output stops for this long before it reaches
 * its root file system is a hung KVM (here: right after "Loading Linux"). */
#define KVM_STALL_SECONDS 30
/* With KVM, qemu exiting this early without a verdict is a KVM problem. */
#define KVM_EARLY_EXIT_SECONDS 30
#define MAX_LOG_READ (4 * 1024 * 1024)

struct ovmf_pair {
  const char *code, *vars;
};

/* Where distributions put OVMF (Debian's ovmf package first). */
static const struct ovmf_pair ovmf_candidates[] = {
  { "/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd" },
  { "/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd" },
  { "/usr/share/edk2/ovmf/OVMF_CODE.fd", "/usr/share/edk2/ovmf/OVMF_VARS.fd" },
  { "/usr/share/edk2/x64/OVMF_CODE.4m.fd", "/usr/share/edk2/x64/OVMF_VARS.4m.fd" },
  { "/usr/share/qemu/ovmf-x86_64-code.bin", "/usr/share/qemu/ovmf-x86_64-vars.bin" },
};

/* The private temp dir and what is in it. */
struct smoke_run {
  char *dir;
  size_t ndisks;
  size_t boot_disk;     /* the one with bootindex=1 */
  char **base;          /* overlay over each IMAGE, prepared through libguestfs */
  char **disk;          /* overlay over each base, one per boot attempt */
  char *console;        /* ttyS0 */
  char *report;         /* ttyS1: the guest's report line */
  char *firmware_log;   /* isa-debugcon 0x402 */
  char *qemu_log;       /* qemu's own stdout and stderr */
  char *vars;           /* OVMF NVRAM copy */
  pid_t qemu;
};

/* ---- cleanup, also from a signal handler --------------------------------- */

static struct smoke_run *volatile active_run;
static struct sigaction old_actions[4];
static const int caught_signals[4] = { SIGINT, SIGTERM, SIGHUP, SIGPIPE };

/* Async-signal-safe: kill, unlink, rmdir only. */
static void
run_remove_files (struct smoke_run *run)
{
  char *const files[] = {
    run->console, run->report, run->firmware_log, run->qemu_log, run->vars,
  };

  if (run->qemu > 0) {
    kill (run->qemu, SIGKILL);
    waitpid (run->qemu, NULL, 0);
    run->qemu = 0;
  }
  for (size_t i = 0; i < ARRAY_SIZE (files); i++)
    if (files[i])
      unlink (files[i]);
  for (size_t i = 0; i < run->ndisks; i++) {
    if (run->disk && run->disk[i])
      unlink (run->disk[i]);
    if (run->base && run->base[i])
      unlink (run->base[i]);
  }
  if (run->dir)
    rmdir (run->dir);
}

static void
on_signal (int sig)
{
  struct smoke_run *run = active_run;

  if (run)
    run_remove_files (run);
  /* Chain to the caller's handler (p2v convert removes its output). */
  for (size_t i = 0; i < ARRAY_SIZE (caught_signals); i++)
    if (caught_signals[i] == sig && old_actions[i].sa_handler != SIG_DFL &&
        old_actions[i].sa_handler != SIG_IGN &&
        !(old_actions[i].sa_flags & SA_SIGINFO)) {
      old_actions[i].sa_handler (sig);
      break;
    }
  _exit (P2V_EXIT_INTERRUPTED);
}

static void
catch_signals (struct smoke_run *run)
{
  struct sigaction sa = { .sa_handler = on_signal };

  sigemptyset (&sa.sa_mask);
  active_run = run;
  for (size_t i = 0; i < ARRAY_SIZE (caught_signals); i++)
    sigaction (caught_signals[i], &sa, &old_actions[i]);
}

static void
release_signals (void)
{
  for (size_t i = 0; i < ARRAY_SIZE (caught_signals); i++)
    sigaction (caught_signals[i], &old_actions[i], NULL);
  active_run = NULL;
}

static void
run_free (struct smoke_run *run)
{
  run_remove_files (run);
  free (run->dir);
  for (size_t i = 0; i < run->ndisks; i++) {
    free (run->base[i]);
    free (run->disk[i]);
  }
  free (run->base);
  free (run->disk);
  free (run->console);
  free (run->report);
  free (run->firmware_log);
  free (run->qemu_log);
  free (run->vars);
}

/* ---- small process and file helpers -------------------------------------- */

/* The program's path if it is on PATH (or a path with a slash that exists). */
static char *
find_program (const char *name)
{
  const char *path = getenv ("PATH");
  char *copy, *dir, *save = NULL, *found = NULL;

  if (strchr (name, '/'))
    return access (name, X_OK) == 0 ? xstrdup (name) : NULL;
  copy = xstrdup (path ? path : "/usr/bin:/bin");
  for (dir = strtok_r (copy, ":", &save); dir && !found;
       dir = strtok_r (NULL, ":", &save)) {
    char *p = xasprintf ("%s/%s", *dir ? dir : ".", name);
    if (access (p, X_OK) == 0)
      found = p;
    else
      free (p);
  }
  free (copy);
  return found;
}

/* Run argv, collecting stdout (if out) and stderr.  Returns the exit
 * status (0..255), or -1 if it could not run or was killed. */
static int
run_command (char *const argv[], char **out, char **err)
{
  int opipe[2], epipe[2], status;
  size_t olen = 0, elen = 0;
  char *obuf = xmalloc (1), *ebuf = xmalloc (1);
  pid_t pid;

  if (pipe2 (opipe, O_CLOEXEC) == -1 || pipe2 (epipe, O_CLOEXEC) == -1)
    p2v_die ("cannot create a pipe: %m");
  pid = fork ();
  if (pid == -1)
    p2v_die ("cannot fork: %m");
  if (pid == 0) {
    int null = open ("/dev/null", O_RDONLY);
    dup2 (null, 0);
    dup2 (opipe[1], 1);
    dup2 (epipe[1], 2);
    execvp (argv[0], argv);
    fprintf (stderr, "cannot run '%s': %s\n", argv[0], strerror (errno));
    _exit (127);
  }
  close (opipe[1]);
  close (epipe[1]);
  for (struct pollfd fds[2] = { { opipe[0], POLLIN, 0 }, { epipe[0], POLLIN, 0 } };
       fds[0].fd >= 0 || fds[1].fd >= 0;) {
    if (poll (fds, 2, -1) == -1) {
      if (errno == EINTR)
        continue;
      break;
    }
    for (int i = 0; i < 2; i++) {
      char chunk[4096];
      ssize_t r;
      if (fds[i].fd < 0 || !fds[i].revents)
        continue;
      r = read (fds[i].fd, chunk, sizeof chunk);
      if (r <= 0) {
        close (fds[i].fd);
        fds[i].fd = -1;
        continue;
      }
      if (i == 0) {
        obuf = xrealloc (obuf, olen + r + 1);
        memcpy (obuf + olen, chunk, r);
        olen += r;
      }
      else if (elen < 65536) {
        ebuf = xrealloc (ebuf, elen + r + 1);
        memcpy (ebuf + elen, chunk, r);
        elen += r;
      }
    }
  }
  obuf[olen] = '\0';
  ebuf[elen] = '\0';
  while (elen > 0 && (ebuf[elen - 1] == '\n' || ebuf[elen - 1] == ' '))
    ebuf[--elen] = '\0';
  while (waitpid (pid, &status, 0) == -1 && errno == EINTR)
    ;
  if (out)
    *out = obuf;
  else
    free (obuf);
  if (err)
    *err = ebuf;
  else
    free (ebuf);
  return WIFEXITED (status) ? WEXITSTATUS (status) : -1;
}

/* The last line of a tool's error output, for our one-line messages. */
static const char *
last_line (const char *text)
{
  const char *nl = strrchr (text, '\n');
  return nl ? nl + 1 : text;
}

/* Read at most the last MAX_LOG_READ bytes of a file; NULL if absent. */
static char *
read_log (const char *path, size_t *len)
{
  int fd = open (path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  char *buf;
  off_t from;

  *len = 0;
  if (fd == -1)
    return NULL;
  if (fstat (fd, &st) == -1) {
    close (fd);
    return NULL;
  }
  from = st.st_size > MAX_LOG_READ ? st.st_size - MAX_LOG_READ : 0;
  buf = xmalloc (st.st_size - from + 1);
  if (st.st_size - from > 0 &&
      full_pread (fd, buf, st.st_size - from, from) == -1) {
    close (fd);
    free (buf);
    return NULL;
  }
  close (fd);
  *len = st.st_size - from;
  buf[*len] = '\0';
  return buf;
}

static int
copy_file (const char *from, const char *to)
{
  int in = open (from, O_RDONLY | O_CLOEXEC), out = -1, r = -1;
  char buf[65536];
  ssize_t n;

  if (in == -1)
    return p2v_error ("cannot open '%s': %m", from);
  out = open (to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (out == -1) {
    p2v_error ("cannot create '%s': %m", to);
    goto out;
  }
  while ((n = read (in, buf, sizeof buf)) > 0)
    if (full_write (out, buf, n) == -1) {
      p2v_error ("cannot write '%s': %m", to);
      goto out;
    }
  if (n == -1) {
    p2v_error ("cannot read '%s': %m", from);
    goto out;
  }
  r = 0;
 out:
  if (out != -1 && close (out) == -1 && r == 0)
    r = p2v_error ("cannot write '%s': %m", to);
  close (in);
  return r;
}

/* qemu's option syntax doubles commas inside values. */
static char *
qemu_escape (const char *s)
{
  char *r = xmalloc (2 * strlen (s) + 1), *p = r;
  for (; *s; s++) {
    if (*s == ',')
      *p++ = ',';
    *p++ = *s;
  }
  *p = '\0';
  return r;
}

/* ---- the image ----------------------------------------------------------- */

static char *
probe_format (const char *qemu_img, const char *image)
{
  char *argv[] = { (char *) qemu_img, "info", "--output=json", (char *) image, NULL };
  char *out = NULL, *err = NULL, *fmt = NULL;
  json_object *o = NULL, *f;

  if (run_command (argv, &out, &err) != 0) {
    p2v_error ("cannot read '%s': %s", image, *err ? last_line (err) : "qemu-img failed");
    goto out;
  }
  o = json_tokener_parse (out);
  if (!o || !json_object_object_get_ex (o, "format", &f)) {
    p2v_error ("cannot tell the format of '%s'", image);
    goto out;
  }
  fmt = xstrdup (json_object_get_string (f));
 out:
  json_object_put (o);
  free (out);
  free (err);
  return fmt;
}

static int
create_overlay (const char *qemu_img, const char *backing, const char *fmt,
                const char *overlay, const char *image)
{
  char *argv[] = { (char *) qemu_img, "create", "-q", "-f", "qcow2",
                   "-b", (char *) backing, "-F", (char *) fmt,
                   (char *) overlay, NULL };
  char *err = NULL;
  int r = 0;

  if (run_command (argv, NULL, &err) != 0)
    r = p2v_error ("cannot create an overlay over '%s': %s", image,
                   *err ? last_line (err) : "qemu-img failed");
  free (err);
  return r;
}

/* ---- qemu ---------------------------------------------------------------- */

struct boot_config {
  const char *qemu;
  const char *mac;
  const char *ovmf_code;        /* NULL: BIOS */
  const char *cpu;              /* -cpu model; NULL: by accelerator */
  unsigned memory_mb;
  unsigned cpus;                /* 0: 2, or 1 on a one-core host */
  bool kvm;
};

static void
argv_add (char ***v, const char *s)
{
  smoke_strv_push (v, xstrdup (s));
}

static void
argv_addf (char ***v, const char *fmt, ...) P2V_PRINTF (2, 3);

static void
argv_addf (char ***v, const char *fmt, ...)
{
  va_list ap;
  char *s;

  va_start (ap, fmt);
  if (vasprintf (&s, fmt, ap) == -1)
    p2v_die ("out of memory");
  va_end (ap);
  smoke_strv_push (v, s);
}

static char **
qemu_argv (const struct smoke_run *run, const struct boot_config *bc)
{
  char **v = xcalloc (1, sizeof *v);
  char *con = qemu_escape (run->console);
  char *rep = qemu_escape (run->report), *fw = qemu_escape (run->firmware_log);
  long cpus = sysconf (_SC_NPROCESSORS_ONLN);

  argv_add (&v, bc->qemu);
  argv_add (&v, "-name");
  argv_add (&v, "p2v-smoke");
  argv_add (&v, "-nodefaults");
  argv_add (&v, "-no-user-config");
  argv_add (&v, "-display");
  argv_add (&v, "none");
  /* No VGA: SeaBIOS then prints itself and grub's text on the serial
   * port (sercon), as OVMF does anyway. */
  argv_add (&v, "-machine");
  argv_add (&v, "q35,graphics=off");
  argv_add (&v, "-accel");
  argv_add (&v, bc->kvm ? "kvm" : "tcg");
  argv_add (&v, "-cpu");
  /* Under TCG: every feature of x86-64-v3 and more, but no 5-level paging
   * (slow for nothing) nor nested virtualisation (the guest would load
   * its kvm modules for nothing). */
  argv_add (&v, bc->cpu ? bc->cpu : bc->kvm ? "host" : "max,la57=off,vmx=off,svm=off");
  argv_add (&v, "-m");
  argv_addf (&v, "%u", bc->memory_mb);
  argv_add (&v, "-smp");
  if (bc->cpus)
    argv_addf (&v, "%u", bc->cpus);
  else
    argv_addf (&v, "%ld", cpus >= 2 ? 2L : 1L);
  argv_add (&v, "-no-reboot");
  argv_add (&v, "-chardev");
  argv_addf (&v, "file,id=console,path=%s", con);
  argv_add (&v, "-serial");
  argv_add (&v, "chardev:console");
  argv_add (&v, "-chardev");
  argv_addf (&v, "file,id=report,path=%s", rep);
  argv_add (&v, "-serial");
  argv_add (&v, "chardev:report");
  argv_add (&v, "-chardev");
  argv_addf (&v, "file,id=fwlog,path=%s", fw);
  argv_add (&v, "-device");
  argv_add (&v, "isa-debugcon,iobase=0x402,chardev=fwlog");
  if (bc->ovmf_code) {
    char *code = qemu_escape (bc->ovmf_code), *vars = qemu_escape (run->vars);
    argv_add (&v, "-drive");
    argv_addf (&v, "if=pflash,format=raw,unit=0,readonly=on,file=%s", code);
    argv_add (&v, "-drive");
    argv_addf (&v, "if=pflash,format=raw,unit=1,file=%s", vars);
    free (code);
    free (vars);
  }
  /* Every disk on virtio, in order (vda, vdb...).  bootindex: the
   * firmware boots the boot loader's disk only, never the network. */
  for (size_t i = 0; i < run->ndisks; i++) {
    char *disk = qemu_escape (run->disk[i]);
    argv_add (&v, "-drive");
    argv_addf (&v, "file=%s,format=qcow2,if=none,id=disk%zu,cache=unsafe",
               disk, i);
    argv_add (&v, "-device");
    argv_addf (&v, "virtio-blk-pci,drive=disk%zu%s", i,
               i == run->boot_disk ? ",bootindex=1" : "");
    free (disk);
  }
  /* restrict=on: nothing leaves qemu. */
  argv_add (&v, "-netdev");
  argv_add (&v, "user,id=net0,restrict=on");
  argv_add (&v, "-device");
  argv_addf (&v, "virtio-net-pci,netdev=net0,mac=%s,romfile=", bc->mac);
  free (con);
  free (rep);
  free (fw);
  return v;
}

static pid_t
start_qemu (struct smoke_run *run, char **argv)
{
  int log = open (run->qemu_log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  pid_t pid;

  if (log == -1)
    return p2v_error ("cannot create '%s': %m", run->qemu_log);
  pid = fork ();
  if (pid == -1) {
    close (log);
    return p2v_error ("cannot fork: %m");
  }
  if (pid == 0) {
    int null = open ("/dev/null", O_RDONLY);
    /* Our own process group (Ctrl-C reaches p2v, which kills qemu), and
     * qemu dies with p2v even on SIGKILL. */
    setpgid (0, 0);
    prctl (PR_SET_PDEATHSIG, SIGKILL);
    dup2 (null, 0);
    dup2 (log, 1);
    dup2 (log, 2);
    execvp (argv[0], argv);
    dprintf (2, "cannot run '%s': %s\n", argv[0], strerror (errno));
    _exit (127);
  }
  close (log);
  run->qemu = pid;
  return pid;
}

static void
stop_qemu (struct smoke_run *run)
{
  if (run->qemu <= 0)
    return;
  kill (run->qemu, SIGTERM);
  for (int i = 0; i < 50; i++) {
    if (waitpid (run->qemu, NULL, WNOHANG) == run->qemu) {
      run->qemu = 0;
      return;
    }
    usleep (100000);
  }
  kill (run->qemu, SIGKILL);
  waitpid (run->qemu, NULL, 0);
  run->qemu = 0;
}

static void
sleep_seconds (double s)
{
  struct timespec ts = { (time_t) s, (long) ((s - (time_t) s) * 1e9) };
  nanosleep (&ts, NULL);
}

enum boot_outcome {
  BOOT_DONE,                    /* res has the verdict */
  BOOT_KVM_FAILED,              /* try again with TCG; *why says why */
  BOOT_ERROR,                   /* qemu could not run: p2v_error() said why */
};

static void
show_progress (const char *image, const struct p2v_smoke_result *res,
               const char *accel, double elapsed)
{
  fprintf (stderr, "\r\033[Kp2v smoke: booting '%s' (%s): %s, %.0f s",
           image, accel, smoke_reached_name (res->reached), elapsed);
}

/* One boot: start qemu on a fresh disk overlay and watch it until the
 * classifier decides or the time is up. */
static enum boot_outcome
boot_once (struct smoke_run *run, const struct boot_config *bc,
           const char *image, const char *qemu_img, unsigned timeout,
           bool progress, struct p2v_smoke_result *res, char **why)
{
  char **argv;
  double start, last_growth;
  size_t last_size = 0;
  enum boot_outcome outcome = BOOT_DONE;
  const char *accel = bc->kvm ? "kvm" : "tcg";

  for (size_t i = 0; i < run->ndisks; i++) {
    unlink (run->disk[i]);
    if (create_overlay (qemu_img, run->base[i], "qcow2", run->disk[i],
                        image) == -1)
      return BOOT_ERROR;
  }
  unlink (run->console);
  unlink (run->report);
  unlink (run->firmware_log);
  argv = qemu_argv (run, bc);
  start = last_growth = now_seconds ();
  if (start_qemu (run, argv) == -1) {
    smoke_strv_free (argv);
    return BOOT_ERROR;
  }
  smoke_strv_free (argv);

  for (;;) {
    size_t clen, flen, rlen, qlen;
    char *con, *fw, *rep, *qlog;
    int status;
    bool exited = false, silent, stalled;
    double elapsed;
    enum p2v_smoke_end end;

    sleep_seconds (0.5);
    elapsed = now_seconds () - start;
    if (waitpid (run->qemu, &status, WNOHANG) == run->qemu) {
      run->qemu = 0;
      exited = true;
    }
    con = read_log (run->console, &clen);
    fw = read_log (run->firmware_log, &flen);
    rep = read_log (run->report, &rlen);
    qlog = read_log (run->qemu_log, &qlen);
    silent = clen == 0 && flen == 0;
    if (clen + flen + rlen != last_size) {
      last_size = clen + flen + rlen;
      last_growth = now_seconds ();
    }
    end = exited ? P2V_SMOKE_EXITED
      : elapsed >= timeout ? P2V_SMOKE_TIMED_OUT : P2V_SMOKE_RUNNING;
    smoke_classify (con, clen, fw, flen, rep, rlen, end, res);
    res->seconds = elapsed;

    stalled = res->verdict == P2V_SMOKE_PENDING &&
      res->reached < P2V_SMOKE_REACHED_ROOT &&
      now_seconds () - last_growth >= KVM_STALL_SECONDS;
    if (bc->kvm && res->verdict != P2V_SMOKE_PASS &&
        ((exited && elapsed < KVM_EARLY_EXIT_SECONDS) ||
         (silent && elapsed >= KVM_SILENCE_SECONDS) || (!silent && stalled) ||
         (qlog && (strstr (qlog, "KVM internal error") ||
                   strstr (qlog, "kvm run failed"))))) {
      const char *q = qlog && qlen ? qlog : "";
      while (qlen > 0 && qlog[qlen - 1] == '\n')
        qlog[--qlen] = '\0';
      *why = exited
        ? xasprintf ("qemu exited after %.0f s with KVM%s%s", elapsed,
                     *q ? ": " : "", last_line (q))
        : silent ? xasprintf ("no output from the guest within %d s with KVM",
                              KVM_SILENCE_SECONDS)
        : stalled ? xasprintf ("the guest stalled for %d s at stage '%s' with KVM",
                               KVM_STALL_SECONDS, smoke_reached_name (res->reached))
        : xasprintf ("KVM failed: %s", last_line (q));
      outcome = BOOT_KVM_FAILED;
    }
    else if (exited && silent) {
      /* qemu could not start at all (bad option, firmware, image). */
      while (qlog && qlen > 0 && qlog[qlen - 1] == '\n')
        qlog[--qlen] = '\0';
      p2v_error ("qemu failed to boot '%s': %s", image,
                 qlog && qlen ? last_line (qlog) : "no output");
      outcome = BOOT_ERROR;
    }
    free (con);
    free (fw);
    free (rep);
    free (qlog);
    if (outcome != BOOT_DONE || res->verdict != P2V_SMOKE_PENDING)
      break;
    if (progress)
      show_progress (image, res, accel, elapsed);
  }
  if (progress)
    fprintf (stderr, "\r\033[K");
  stop_qemu (run);
  return outcome;
}

/* ---- the whole run ------------------------------------------------------- */

static int
resolve_accel (enum p2v_smoke_accel req, enum p2v_smoke_accel *out)
{
  const char *env = getenv ("P2V_ACCEL");

  if (env && *env) {
    if (strcmp (env, "tcg") == 0)
      req = P2V_SMOKE_ACCEL_TCG;
    else if (strcmp (env, "kvm") == 0)
      req = P2V_SMOKE_ACCEL_KVM;
    else if (strcmp (env, "auto") != 0)
      return p2v_error ("P2V_ACCEL '%s' is not auto, kvm or tcg", env);
  }
  if (req == P2V_SMOKE_ACCEL_AUTO) {
    int fd = open ("/dev/kvm", O_RDWR | O_CLOEXEC);
    req = fd == -1 ? P2V_SMOKE_ACCEL_TCG : P2V_SMOKE_ACCEL_AUTO;
    if (fd != -1)
      close (fd);
  }
  *out = req;
  return 0;
}

static int
find_ovmf (const char **code, const char **vars)
{
  const char *ec = getenv ("P2V_OVMF_CODE"), *ev = getenv ("P2V_OVMF_VARS");

  if (ec && *ec && ev && *ev) {
    *code = ec;
    *vars = ev;
    return 0;
  }
  for (size_t i = 0; i < ARRAY_SIZE (ovmf_candidates); i++)
    if (access (ovmf_candidates[i].code, R_OK) == 0 &&
        access (ovmf_candidates[i].vars, R_OK) == 0) {
      *code = ovmf_candidates[i].code;
      *vars = ovmf_candidates[i].vars;
      return 0;
    }
  return p2v_error ("cannot find the OVMF firmware (%s): install the ovmf package",
                    ovmf_candidates[0].code);
}

static bool
valid_mac (const char *mac)
{
  if (strlen (mac) != 17)
    return false;
  for (int i = 0; i < 17; i++)
    if (i % 3 == 2 ? mac[i] != ':' : !strchr ("0123456789abcdefABCDEF", mac[i]))
      return false;
  /* Bit 0 of the first octet: multicast, not a NIC address. */
  return (strtol (mac, NULL, 16) & 1) == 0;
}

/* Every image given must be a file or a block device we can open. */
static int
check_disk (const char *image)
{
  struct stat st;
  int fd = open (image, O_RDONLY | O_CLOEXEC);

  if (fd == -1)
    return p2v_error ("cannot open '%s': %m", image);
  if (fstat (fd, &st) == -1 || (!S_ISREG (st.st_mode) && !S_ISBLK (st.st_mode))) {
    close (fd);
    errno = EINVAL;
    return p2v_error ("'%s' is not a disk image file or block device", image);
  }
  close (fd);
  return 0;
}

int
smoke_image (const char *const *images, size_t ndisks,
             const struct p2v_smoke_opts *opts, struct p2v_smoke_result *res)
{
  const char *image = ndisks ? images[0] : NULL;   /* what messages name */
  struct smoke_run run = { 0 };
  struct boot_config bc = { 0 };
  enum p2v_smoke_firmware firmware = opts->firmware;
  enum p2v_smoke_accel accel = P2V_SMOKE_ACCEL_AUTO;
  const char *tmpdir = getenv ("TMPDIR"), *ovmf_vars = NULL;
  char *qemu = NULL, *qemu_img = NULL;
  char *why = NULL;
  unsigned timeout = opts->timeout ? opts->timeout : P2V_SMOKE_DEFAULT_TIMEOUT;
  double t0;
  int r = -1;
  enum boot_outcome outcome;
  bool progress = opts->progress && isatty (STDERR_FILENO);

  bc.mac = opts->mac ? opts->mac : P2V_SMOKE_DEFAULT_MAC;
  bc.memory_mb = opts->memory_mb ? opts->memory_mb : P2V_SMOKE_DEFAULT_MEMORY;
  bc.cpus = opts->cpus;
  if (!valid_mac (bc.mac))
    return p2v_error ("MAC address '%s' is not of the form 52:54:00:12:34:56", bc.mac);
  if (opts->format && !*opts->format)
    return p2v_error ("empty image format");
  if (resolve_accel (opts->accel, &accel) == -1)
    return -1;

  /* Everything we need, before anything slow. */
  if (ndisks == 0)
    return p2v_error ("no disk image given");
  for (size_t i = 0; i < ndisks; i++) {
    if (check_disk (images[i]) == -1)
      return -1;
    for (size_t j = 0; j < i; j++)
      if (strcmp (images[i], images[j]) == 0)
        return p2v_error ("'%s' is given twice", images[i]);
  }
  qemu = find_program (getenv ("P2V_QEMU") && *getenv ("P2V_QEMU")
                       ? getenv ("P2V_QEMU") : "qemu-system-x86_64");
  if (!qemu) {
    p2v_error ("cannot find 'qemu-system-x86_64': install qemu-system-x86");
    goto out;
  }
  qemu_img = find_program ("qemu-img");
  if (!qemu_img) {
    p2v_error ("cannot find 'qemu-img': install qemu-utils");
    goto out;
  }
  if (opts->uefi_vars && access (opts->uefi_vars, R_OK) == -1) {
    p2v_error ("cannot read '%s': %m", opts->uefi_vars);
    goto out;
  }

  t0 = now_seconds ();
  run.dir = xasprintf ("%s/p2v-smoke.XXXXXX", tmpdir && *tmpdir ? tmpdir : "/var/tmp");
  if (!mkdtemp (run.dir)) {
    p2v_error ("cannot create a directory like '%s': %m", run.dir);
    free (run.dir);
    run.dir = NULL;
    goto out;
  }
  run.base = xcalloc (ndisks, sizeof *run.base);
  run.disk = xcalloc (ndisks, sizeof *run.disk);
  run.ndisks = ndisks;
  for (size_t i = 0; i < ndisks; i++) {
    run.base[i] = xasprintf ("%s/base%zu.qcow2", run.dir, i);
    run.disk[i] = xasprintf ("%s/disk%zu.qcow2", run.dir, i);
  }
  run.console = xasprintf ("%s/console.log", run.dir);
  run.report = xasprintf ("%s/report.log", run.dir);
  run.firmware_log = xasprintf ("%s/firmware.log", run.dir);
  run.qemu_log = xasprintf ("%s/qemu.log", run.dir);
  run.vars = xasprintf ("%s/vars.fd", run.dir);
  catch_signals (&run);

  if (progress)
    fprintf (stderr, "\r\033[Kp2v smoke: preparing an overlay of '%s'", image);
  for (size_t i = 0; i < ndisks; i++) {
    char *abs = realpath (images[i], NULL), *fmt = NULL;
    int ok = -1;

    if (!abs)
      p2v_error ("cannot resolve '%s': %m", images[i]);
    else if ((fmt = opts->format ? xstrdup (opts->format)
              : probe_format (qemu_img, abs)))
      ok = create_overlay (qemu_img, abs, fmt, run.base[i], images[i]);
    free (abs);
    free (fmt);
    if (ok == -1) {
      if (progress)
        fprintf (stderr, "\r\033[K");
      goto out;
    }
  }
  if (smoke_prepare_overlay ((const char *const *) run.base, ndisks, image,
                             &firmware, &run.boot_disk,
                             accel == P2V_SMOKE_ACCEL_TCG ? "tcg"
                             : accel == P2V_SMOKE_ACCEL_KVM ? "kvm" : "auto",
                             &res->prepared) == -1) {
    if (progress)
      fprintf (stderr, "\r\033[K");
    goto out;
  }
  if (progress)
    fprintf (stderr, "\r\033[K");
  if (!res->prepared)
    p2v_warning ("no Linux guest found in '%s': booting it unobserved", image);
  res->prepare_seconds = now_seconds () - t0;
  res->firmware = firmware == P2V_SMOKE_FIRMWARE_UEFI ? "uefi" : "bios";
  if (opts->boot_disk_known && opts->boot_disk < ndisks)
    run.boot_disk = opts->boot_disk;
  res->boot_disk = run.boot_disk;

  if (firmware == P2V_SMOKE_FIRMWARE_UEFI) {
    if (find_ovmf (&bc.ovmf_code, &ovmf_vars) == -1 ||
        copy_file (opts->uefi_vars ? opts->uefi_vars : ovmf_vars, run.vars) == -1)
      goto out;
  }

  bc.qemu = qemu;
  bc.cpu = getenv ("P2V_QEMU_CPU") && *getenv ("P2V_QEMU_CPU") ? getenv ("P2V_QEMU_CPU") : NULL;
  bc.kvm = accel != P2V_SMOKE_ACCEL_TCG;
  outcome = boot_once (&run, &bc, image, qemu_img, timeout, progress,
                       res, &why);
  if (outcome == BOOT_KVM_FAILED && accel == P2V_SMOKE_ACCEL_AUTO) {
    res->accel_note = why;
    why = NULL;
    bc.kvm = false;
    if (firmware == P2V_SMOKE_FIRMWARE_UEFI &&
        copy_file (opts->uefi_vars ? opts->uefi_vars : ovmf_vars, run.vars) == -1)
      goto out;
    outcome = boot_once (&run, &bc, image, qemu_img, timeout, progress,
                         res, &why);
  }
  else if (outcome == BOOT_KVM_FAILED) {
    p2v_error ("cannot boot '%s' with KVM: %s", image, why);
    goto out;
  }
  if (outcome == BOOT_ERROR)
    goto out;
  res->accel = bc.kvm ? "kvm" : "tcg";

  if (opts->keep_log) {
    size_t clen, flen;
    char *con = read_log (run.console, &clen), *fw = read_log (run.firmware_log, &flen);
    FILE *f = fopen (opts->keep_log, "w");
    if (!f)
      p2v_warning ("cannot write '%s': %m", opts->keep_log);
    else {
      if (con)
        fwrite (con, 1, clen, f);
      if (fw && flen)
        fprintf (f, "%s--- firmware debug log (port 0x402) ---\n%s\n",
                 clen && con[clen - 1] != '\n' ? "\n" : "", fw);
      if (fclose (f) == EOF)
        p2v_warning ("cannot write '%s': %m", opts->keep_log);
    }
    free (con);
    free (fw);
  }
  r = 0;

 out:
  release_signals ();
  run_free (&run);
  free (why);
  free (qemu);
  free (qemu_img);
  return r;
}

/* ---- results ------------------------------------------------------------- */

void
smoke_result_free (struct p2v_smoke_result *res)
{
  if (!res)
    return;
  free (res->evidence);
  free (res->accel_note);
  free (res->target);
  free (res->target_state);
  free (res->system_state);
  free (res->kernel);
  free (res->root_source);
  free (res->root_fstype);
  smoke_strv_free (res->root_disks);
  smoke_strv_free (res->root_disk_drivers);
  for (size_t i = 0; i < res->n_interfaces; i++) {
    free (res->interfaces[i].name);
    free (res->interfaces[i].mac);
    free (res->interfaces[i].state);
    free (res->interfaces[i].driver);
    smoke_strv_free (res->interfaces[i].ipv4);
  }
  free (res->interfaces);
  smoke_strv_free (res->failed_units);
  smoke_strv_free (res->console_tail);
  memset (res, 0, sizeof *res);
}

static json_object *
json_strv_new (char *const *v)
{
  json_object *a = json_object_new_array ();
  for (size_t i = 0; v && v[i]; i++)
    json_object_array_add (a, json_object_new_string (v[i]));
  return a;
}

json_object *
smoke_result_to_json (const struct p2v_smoke_result *res)
{
  json_object *o = json_object_new_object (), *a;

  json_object_object_add (o, "verdict", json_object_new_string (
                            res->verdict == P2V_SMOKE_PASS ? "pass"
                            : res->verdict == P2V_SMOKE_FAIL ? "fail" : "pending"));
  json_object_object_add (o, "stage", json_string_or_null (smoke_stage_name (res->stage)));
  json_object_object_add (o, "reached",
                          json_string_or_null (smoke_reached_name (res->reached)));
  json_object_object_add (o, "evidence", json_string_or_null (res->evidence));
  json_object_object_add (o, "seconds",
                          json_object_new_double ((long) (res->seconds * 10) / 10.0));
  json_object_object_add (o, "prepare_seconds",
                          json_object_new_double ((long) (res->prepare_seconds * 10) / 10.0));
  json_object_object_add (o, "accel", json_string_or_null (res->accel));
  json_object_object_add (o, "accel_note", json_string_or_null (res->accel_note));
  json_object_object_add (o, "firmware", json_string_or_null (res->firmware));
  json_object_object_add (o, "observed", json_object_new_boolean (res->prepared));
  json_object_object_add (o, "boot_disk", json_object_new_int64 ((int64_t) res->boot_disk));
  json_object_object_add (o, "target", json_string_or_null (res->target));
  json_object_object_add (o, "target_state", json_string_or_null (res->target_state));
  json_object_object_add (o, "system_state", json_string_or_null (res->system_state));
  json_object_object_add (o, "kernel", json_string_or_null (res->kernel));
  json_object_object_add (o, "root_source", json_string_or_null (res->root_source));
  json_object_object_add (o, "root_fstype", json_string_or_null (res->root_fstype));
  a = json_object_new_array ();
  for (size_t i = 0; res->root_disks && res->root_disks[i]; i++) {
    json_object *d = json_object_new_object ();
    json_object_object_add (d, "name", json_object_new_string (res->root_disks[i]));
    json_object_object_add (d, "driver", json_string_or_null (res->root_disk_drivers[i]));
    json_object_array_add (a, d);
  }
  json_object_object_add (o, "root_disks", a);
  a = json_object_new_array ();
  for (size_t i = 0; i < res->n_interfaces; i++) {
    const struct p2v_smoke_interface *ifc = &res->interfaces[i];
    json_object *d = json_object_new_object ();
    json_object_object_add (d, "name", json_string_or_null (ifc->name));
    json_object_object_add (d, "mac", json_string_or_null (ifc->mac));
    json_object_object_add (d, "state", json_string_or_null (ifc->state));
    json_object_object_add (d, "driver", json_string_or_null (ifc->driver));
    json_object_object_add (d, "ipv4", json_strv_new (ifc->ipv4));
    json_object_array_add (a, d);
  }
  json_object_object_add (o, "interfaces", a);
  json_object_object_add (o, "failed_units", json_strv_new (res->failed_units));
  json_object_object_add (o, "guest_uptime",
                          res->guest_uptime > 0 ? json_object_new_double (res->guest_uptime) : NULL);
  json_object_object_add (o, "console_tail", json_strv_new (res->console_tail));
  return o;
}

void
smoke_result_print (const struct p2v_smoke_result *res, const char *image,
                    FILE *f)
{
  if (res->verdict == P2V_SMOKE_PASS) {
    fprintf (f, "pass: '%s' reached %s in %.1f s (%s, %s)\n", image,
             res->target ? res->target : "its default target", res->seconds,
             res->accel, res->firmware);
    if (res->boot_disk > 0)
      fprintf (f, "  %-10s disk %zu\n", "booted", res->boot_disk);
    fprintf (f, "  %-10s %s\n", "kernel", res->kernel ? res->kernel : "?");
    fprintf (f, "  %-10s %s (%s) on", "root",
             res->root_source ? res->root_source : "?",
             res->root_fstype ? res->root_fstype : "?");
    for (size_t i = 0; res->root_disks && res->root_disks[i]; i++)
      fprintf (f, " %s (%s)", res->root_disks[i],
               *res->root_disk_drivers[i] ? res->root_disk_drivers[i] : "?");
    fprintf (f, "\n");
    for (size_t i = 0; i < res->n_interfaces; i++) {
      const struct p2v_smoke_interface *ifc = &res->interfaces[i];
      fprintf (f, "  %-10s %s %s", ifc->name, ifc->mac ? ifc->mac : "?",
               ifc->state ? ifc->state : "?");
      for (size_t j = 0; ifc->ipv4 && ifc->ipv4[j]; j++)
        fprintf (f, " %s", ifc->ipv4[j]);
      if (!ifc->ipv4 || !ifc->ipv4[0])
        fprintf (f, " (no IPv4 address)");
      fprintf (f, "\n");
    }
    fprintf (f, "  %-10s", "failed");
    for (size_t i = 0; res->failed_units && res->failed_units[i]; i++)
      fprintf (f, " %s", res->failed_units[i]);
    fprintf (f, "%s\n", res->failed_units && res->failed_units[0] ? "" : " none");
  }
  else {
    size_t n = smoke_strv_len (res->console_tail), from = n > 12 ? n - 12 : 0;
    fprintf (f, "fail: '%s': %s after %.1f s (%s, %s)\n", image,
             smoke_stage_name (res->stage), res->seconds,
             res->accel ? res->accel : "?", res->firmware ? res->firmware : "?");
    fprintf (f, "  %-10s %s\n", "reached", smoke_reached_name (res->reached));
    if (res->evidence)
      fprintf (f, "  %-10s %s\n", "because", res->evidence);
    if (n)
      fprintf (f, "  last console lines:\n");
    for (size_t i = from; i < n; i++)
      fprintf (f, "  | %s\n", res->console_tail[i]);
  }
  if (res->accel_note)
    fprintf (f, "  %-10s %s\n", "note", res->accel_note);
}
