/* guest.c: the one libguestfs session of an inspect/inject run: the
 * appliance started with KVM when it works and TCG when it does not,
 * the guest's root found and mounted, and file and command helpers that
 * report errors the p2v way.  Guest programs only ever run inside the
 * appliance, chrooted in the guest. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <guestfs.h>

#include "common.h"
#include "format.h"
#include "inject-int.h"

/* A KVM appliance is up in seconds; one silent this long is a hung KVM. */
#define KVM_LAUNCH_TIMEOUT 60
/* A TCG launch takes 15-60 s on a 2-core host; one was seen to hang in
 * the appliance kernel's boot for 20 minutes (busy, no disk I/O) while
 * other TCG guests ran.  So it gets this long, then one more try. */
#define TCG_LAUNCH_TIMEOUT 300
/* Where a KVM that failed is remembered, so that auto mode does not wait
 * for it again on every run (per kernel release). */
#define KVM_BROKEN_MARKER "p2v-kvm-unusable"

struct p2v_guest {
  guestfs_h *g;
  char *image;                  /* the first disk: what messages name */
  char **disks;                 /* every disk, in the VM's order */
  const char **formats;         /* each one's format, as we probed it */
  size_t ndisks;
  char *root;
  const char *accel;
  double launch_seconds;
  bool readonly;
};

void *
guest_handle (struct p2v_guest *gs)
{
  return gs->g;
}

const char *
guest_image (struct p2v_guest *gs)
{
  return gs->image;
}

const char *
guest_root (struct p2v_guest *gs)
{
  return gs->root;
}

const char *
guest_accel (struct p2v_guest *gs)
{
  return gs->accel;
}

double
guest_launch_seconds (struct p2v_guest *gs)
{
  return gs->launch_seconds;
}

/* libguestfs errors can span lines (a command's stderr): one line, short. */
char *
one_line (const char *msg)
{
  struct p2v_strbuf sb = { 0 };
  const char *p = msg ? msg : "unknown error";

  for (; *p && sb.len < 600; p++) {
    if (*p == '\n' || *p == '\r') {
      if (sb.len && p[1] && p[1] != '\n')
        sb_add (&sb, "; ");
    }
    else
      sb_addn (&sb, p, 1);
  }
  return sb_steal (&sb);
}

const char *
guest_last_error (struct p2v_guest *gs)
{
  const char *e = guestfs_last_error (gs->g);
  return e ? e : "unknown error";
}

static int
gerror (struct p2v_guest *gs, const char *fmt, const char *arg)
{
  char *what = xasprintf (fmt, arg);
  char *msg = one_line (guest_last_error (gs));
  p2v_error ("%s: %s", what, msg);
  free (what);
  free (msg);
  return -1;
}

/* ---- launching: KVM when it works, else TCG ---- */

struct watchdog {
  pthread_t thread;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  bool done, fired;
  int seconds;
};

/* Kill our qemu children (the direct backend forks qemu itself). */
static void
kill_qemu_children (void)
{
  DIR *d = opendir ("/proc");
  struct dirent *e;
  pid_t self = getpid ();

  if (!d)
    return;
  while ((e = readdir (d))) {
    char path[64], buf[512];
    FILE *f;
    pid_t pid;
    if (!isdigit ((unsigned char) e->d_name[0]))
      continue;
    pid = atoi (e->d_name);
    snprintf (path, sizeof path, "/proc/%d/stat", (int) pid);
    f = fopen (path, "r");
    if (!f)
      continue;
    if (fgets (buf, sizeof buf, f)) {
      /* pid (comm) state ppid ... */
      char *close = strrchr (buf, ')'), *open = strchr (buf, '(');
      int ppid = 0;
      if (open && close && sscanf (close + 1, " %*c %d", &ppid) == 1
          && ppid == self && strncmp (open + 1, "qemu", 4) == 0)
        kill (pid, SIGKILL);
    }
    fclose (f);
  }
  closedir (d);
}

static void *
watchdog_main (void *arg)
{
  struct watchdog *w = arg;
  struct timespec deadline;

  clock_gettime (CLOCK_REALTIME, &deadline);
  deadline.tv_sec += w->seconds;
  pthread_mutex_lock (&w->lock);
  while (!w->done)
    if (pthread_cond_timedwait (&w->cond, &w->lock, &deadline) == ETIMEDOUT)
      break;
  if (!w->done) {
    w->fired = true;
    kill_qemu_children ();
  }
  pthread_mutex_unlock (&w->lock);
  return NULL;
}

static int
launch_watched (guestfs_h *g, int seconds, bool *timed_out)
{
  struct watchdog w = { .seconds = seconds };
  int r;

  pthread_mutex_init (&w.lock, NULL);
  pthread_cond_init (&w.cond, NULL);
  if (pthread_create (&w.thread, NULL, watchdog_main, &w) != 0) {
    r = guestfs_launch (g);
    *timed_out = false;
  }
  else {
    r = guestfs_launch (g);
    pthread_mutex_lock (&w.lock);
    w.done = true;
    pthread_cond_signal (&w.cond);
    pthread_mutex_unlock (&w.lock);
    pthread_join (w.thread, NULL);
    *timed_out = w.fired;
  }
  pthread_mutex_destroy (&w.lock);
  pthread_cond_destroy (&w.cond);
  return r;
}

static char *
kvm_marker_path (void)
{
  const char *cache = getenv ("XDG_CACHE_HOME"), *home = getenv ("HOME");

  if (cache && *cache)
    return xasprintf ("%s/p2v/%s", cache, KVM_BROKEN_MARKER);
  if (home && *home)
    return xasprintf ("%s/.cache/p2v/%s", home, KVM_BROKEN_MARKER);
  return NULL;
}

static bool
kvm_known_broken (void)
{
  char *path = kvm_marker_path (), line[256] = "";
  struct utsname u;
  FILE *f;
  bool broken = false;

  if (!path)
    return false;
  f = fopen (path, "r");
  if (f && fgets (line, sizeof line, f) && uname (&u) == 0) {
    line[strcspn (line, "\n")] = '\0';
    broken = strcmp (line, u.release) == 0;
  }
  if (f)
    fclose (f);
  free (path);
  return broken;
}

static void
kvm_remember_broken (void)
{
  char *path = kvm_marker_path ();
  struct utsname u;
  FILE *f;

  if (!path || uname (&u) != 0) {
    free (path);
    return;
  }
  {
    char *dir = xstrdup (path), *slash = strrchr (dir, '/'), *parent;
    *slash = '\0';
    parent = xstrdup (dir);
    *strrchr (parent, '/') = '\0';
    mkdir (parent, 0755);
    mkdir (dir, 0755);
    free (parent);
    free (dir);
  }
  f = fopen (path, "w");
  if (f) {
    fprintf (f, "%s\n", u.release);
    fclose (f);
  }
  free (path);
}

static bool
kvm_device_usable (void)
{
  int fd = open ("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (fd == -1)
    return false;
  close (fd);
  return true;
}

/* What to start an appliance on. */
struct launch_req {
  const char *const *disks;
  const char *const *formats;
  size_t ndisks;
  bool readonly;
  bool progress;
  const char *name;             /* what messages call the disks */
};

/* FORCE_TCG: 1 sets it, 0 clears what the environment set, -1 leaves
 * libguestfs's own settings alone. */
static guestfs_h *
new_handle (const struct launch_req *rq, int force_tcg)
{
  guestfs_h *g = guestfs_create ();

  if (!g) {
    p2v_error ("cannot create a libguestfs handle: %m");
    return NULL;
  }
  guestfs_set_error_handler (g, NULL, NULL);
  /* update-initramfs and dracut compress with several threads. */
  guestfs_set_smp (g, 2);
  if (force_tcg == 1 && guestfs_set_backend_setting (g, "force_tcg", "1") == -1)
    goto fail;
  if (force_tcg == 0)
    guestfs_clear_backend_setting (g, "force_tcg");
  /* The disks in the VM's order: the appliance names them /dev/sda,
   * /dev/sdb..., as the server had them. */
  for (size_t i = 0; i < rq->ndisks; i++)
    if (guestfs_add_drive_opts (g, rq->disks[i],
                                GUESTFS_ADD_DRIVE_OPTS_READONLY, rq->readonly,
                                GUESTFS_ADD_DRIVE_OPTS_FORMAT, rq->formats[i],
                                -1) == -1) {
      char *msg = one_line (guestfs_last_error (g));
      p2v_error ("cannot open '%s': %s", rq->disks[i], msg);
      free (msg);
      guestfs_close (g);
      return NULL;
    }
  return g;

 fail:
  {
    char *msg = one_line (guestfs_last_error (g));
    p2v_error ("cannot set up libguestfs: %s", msg);
    free (msg);
  }
  guestfs_close (g);
  return NULL;
}

/* The settings already say how to run (LIBGUESTFS_BACKEND_SETTINGS). */
static bool
env_decides_accel (bool *tcg)
{
  const char *s = getenv ("LIBGUESTFS_BACKEND_SETTINGS");
  if (!s || !*s)
    return false;
  *tcg = strstr (s, "force_tcg") != NULL;
  return true;
}

static void
say (const struct launch_req *rq, const char *msg)
{
  if (rq->progress)
    fprintf (stderr, "%s: %s\n", p2v_progname, msg);
}

/* Launch a handle made by new_handle (rq, tcg) that boots with TCG,
 * under TCG_LAUNCH_TIMEOUT, trying once more if that passes; NULL after
 * p2v_error(). */
static guestfs_h *
launch_tcg (const struct launch_req *rq, int tcg)
{
  for (int attempt = 1; ; attempt++) {
    bool timed_out = false;
    guestfs_h *g = new_handle (rq, tcg);
    char *msg;

    if (!g)
      return NULL;
    if (launch_watched (g, TCG_LAUNCH_TIMEOUT, &timed_out) == 0)
      return g;
    msg = timed_out ? xasprintf ("no answer within %d s", TCG_LAUNCH_TIMEOUT)
      : one_line (guestfs_last_error (g));
    guestfs_close (g);
    if (!timed_out || attempt == 2) {
      p2v_error ("cannot start the libguestfs appliance for '%s': %s",
                 rq->name, msg);
      free (msg);
      return NULL;
    }
    p2v_warning ("the libguestfs appliance for '%s' did not start (%s); "
                 "trying again", rq->name, msg);
    free (msg);
  }
}

/* Start with KVM or TCG as ACCEL and the host allow; see inject-int.h. */
static guestfs_h *
launch (const struct launch_req *rq, const char *accel, const char **used)
{
  bool tcg_env = false, timed_out = false;
  guestfs_h *g;
  char *msg;

  if (strcmp (accel, "auto") == 0 && env_decides_accel (&tcg_env)) {
    /* libguestfs applies the environment itself. */
    *used = tcg_env ? "tcg" : "kvm";
    say (rq, tcg_env ? "starting the libguestfs appliance (TCG)"
         : "starting the libguestfs appliance");
    if (tcg_env)
      return launch_tcg (rq, -1);
    if (!(g = new_handle (rq, -1)))
      return NULL;
    if (guestfs_launch (g) == -1)
      goto launch_failed;
    return g;
  }

  if (strcmp (accel, "tcg") == 0
      || (strcmp (accel, "auto") == 0
          && (!kvm_device_usable () || kvm_known_broken ()))) {
    *used = "tcg";
    say (rq, "starting the libguestfs appliance (TCG)");
    return launch_tcg (rq, 1);
  }

  /* kvm, or auto with a usable /dev/kvm: try KVM under a watchdog. */
  *used = "kvm";
  if (!(g = new_handle (rq, 0)))
    return NULL;
  say (rq, "starting the libguestfs appliance (KVM)");
  if (launch_watched (g, KVM_LAUNCH_TIMEOUT, &timed_out) == 0)
    return g;
  msg = timed_out ? xasprintf ("no answer within %d s", KVM_LAUNCH_TIMEOUT)
    : one_line (guestfs_last_error (g));
  guestfs_close (g);
  if (strcmp (accel, "kvm") == 0) {
    p2v_error ("cannot start the libguestfs appliance with KVM: %s", msg);
    free (msg);
    return NULL;
  }
  p2v_warning ("KVM did not start the libguestfs appliance (%s); using TCG",
               msg);
  free (msg);
  kvm_remember_broken ();
  *used = "tcg";
  return launch_tcg (rq, 1);

 launch_failed:
  msg = one_line (guestfs_last_error (g));
  p2v_error ("cannot start the libguestfs appliance for '%s': %s",
             rq->name, msg);
  free (msg);
  guestfs_close (g);
  return NULL;
}

/* ACCEL, else $P2V_ACCEL, else auto; NULL after p2v_error() if bad. */
static const char *
accel_choice (const char *accel)
{
  if (!accel || !*accel)
    accel = getenv ("P2V_ACCEL");
  if (!accel || !*accel)
    accel = "auto";
  if (strcmp (accel, "auto") != 0 && strcmp (accel, "kvm") != 0
      && strcmp (accel, "tcg") != 0)
    return p2v_error_null ("accelerator '%s' is not auto, kvm or tcg", accel);
  return accel;
}

struct guestfs_h *
appliance_launch (const char *const *disks, const char *const *formats,
                  size_t ndisks, bool readonly, const char *accel,
                  bool progress, const char *name, const char **accel_used)
{
  struct launch_req rq = {
    .disks = disks, .formats = formats, .ndisks = ndisks,
    .readonly = readonly, .progress = progress, .name = name,
  };
  const char *used = NULL;
  guestfs_h *g;

  if (!(accel = accel_choice (accel)))
    return NULL;
  g = launch (&rq, accel, &used);
  if (g && accel_used)
    *accel_used = used;
  return g;
}

static void
guest_free (struct p2v_guest *gs)
{
  for (size_t i = 0; i < gs->ndisks; i++)
    free (gs->disks[i]);
  free (gs->disks);
  free (gs->formats);
  free (gs->root);
  free (gs);
}

struct p2v_guest *
guest_open (const char *const *disks, size_t ndisks, const char *format,
            bool readonly, const char *accel, bool verbose)
{
  struct p2v_guest *gs;
  double t0;

  if (!(accel = accel_choice (accel)))
    return NULL;
  if (ndisks == 0)
    return p2v_error_null ("no disk image given");

  gs = xcalloc (1, sizeof *gs);
  gs->disks = xcalloc (ndisks, sizeof *gs->disks);
  gs->formats = xcalloc (ndisks, sizeof *gs->formats);
  for (size_t i = 0; i < ndisks; i++) {
    /* Our own format probe: plain errors for plain problems, and
     * libguestfs (qemu) is told the format instead of guessing it. */
    struct p2v_image *img = image_open (disks[i], format, P2V_OPEN_READONLY);
    if (!img) {
      guest_free (gs);
      return NULL;
    }
    gs->formats[i] = img->drv->name;      /* static driver names */
    image_close (img);
    for (size_t j = 0; j < gs->ndisks; j++)
      if (strcmp (gs->disks[j], disks[i]) == 0) {
        p2v_error ("'%s' is given twice", disks[i]);
        guest_free (gs);
        return NULL;
      }
    gs->disks[gs->ndisks++] = xstrdup (disks[i]);
  }
  gs->image = gs->disks[0];
  gs->readonly = readonly;
  t0 = now_seconds ();
  gs->g = appliance_launch ((const char *const *) gs->disks, gs->formats,
                            gs->ndisks, readonly, accel,
                            verbose && isatty (STDERR_FILENO),
                            gs->image, &gs->accel);
  if (!gs->g) {
    guest_free (gs);
    return NULL;
  }
  gs->launch_seconds = now_seconds () - t0;
  return gs;
}

int
guest_find_root (struct p2v_guest *gs)
{
  char **roots = guestfs_inspect_os (gs->g);
  char *linux_root = NULL, *other = NULL;
  int r = -1;

  if (!roots)
    return gerror (gs, "cannot inspect '%s'", gs->image);
  for (size_t i = 0; roots[i]; i++) {
    char *type = guestfs_inspect_get_type (gs->g, roots[i]);
    if (type && strcmp (type, "linux") == 0) {
      if (!linux_root)
        linux_root = xstrdup (roots[i]);
      else
        p2v_warning ("'%s' holds several Linux systems; using the one on %s",
                     gs->image, linux_root);
    }
    else if (!other)
      other = xstrdup (type ? type : "unknown");
    free (type);
  }
  if (linux_root) {
    gs->root = linux_root;
    r = 0;
  }
  else if (!roots[0])
    p2v_error ("no operating system found in '%s'", gs->image);
  else if (strcmp (other, "windows") == 0)
    p2v_error ("'%s' holds Windows, which p2v cannot convert", gs->image);
  else
    p2v_error ("'%s' holds %s, which p2v cannot convert", gs->image, other);
  free (other);
  free_string_array (roots);
  return r;
}

static int
compare_mountpoints (const void *a, const void *b)
{
  const char *const *x = a, *const *y = b;
  size_t lx = strlen (x[0]), ly = strlen (y[0]);
  return lx != ly ? (lx < ly ? -1 : 1) : strcmp (x[0], y[0]);
}

int
guest_mount (struct p2v_guest *gs, bool rw)
{
  char **mps = guestfs_inspect_get_mountpoints (gs->g, gs->root);
  size_t n = 0;
  int r = 0;

  if (!mps)
    return gerror (gs, "cannot read the mount points of '%s'", gs->image);
  while (mps[n])
    n++;
  /* Pairs (mount point, device), shortest mount point first. */
  qsort (mps, n / 2, 2 * sizeof *mps, compare_mountpoints);
  for (size_t i = 0; i + 1 < n; i += 2) {
    int m = rw ? guestfs_mount (gs->g, mps[i + 1], mps[i])
      : guestfs_mount_ro (gs->g, mps[i + 1], mps[i]);
    if (m == -1) {
      char *msg = one_line (guest_last_error (gs));
      if (strcmp (mps[i], "/") == 0) {
        p2v_error ("cannot mount the root file system %s of '%s': %s",
                   mps[i + 1], gs->image, msg);
        r = -1;
      }
      else
        p2v_warning ("cannot mount %s on %s: %s", mps[i + 1], mps[i], msg);
      free (msg);
      if (r == -1)
        break;
    }
  }
  free_string_array (mps);
  return r;
}

int
guest_umount (struct p2v_guest *gs)
{
  if (guestfs_umount_all (gs->g) == -1)
    return gerror (gs, "cannot unmount the file systems of '%s'", gs->image);
  return 0;
}

int
guest_close (struct p2v_guest *gs)
{
  int r = 0;

  if (!gs)
    return 0;
  if (gs->g) {
    if (!gs->readonly && guestfs_umount_all (gs->g) == -1)
      r = gerror (gs, "cannot unmount the file systems of '%s'", gs->image);
    if (guestfs_shutdown (gs->g) == -1 && r == 0)
      r = gerror (gs, "cannot write back '%s'", gs->image);
    guestfs_close (gs->g);
  }
  guest_free (gs);
  return r;
}

/* ---- files and commands ---- */

bool
guest_is_file (struct p2v_guest *gs, const char *path)
{
  return guestfs_is_file_opts (gs->g, path,
                               GUESTFS_IS_FILE_OPTS_FOLLOWSYMLINKS, 1, -1) > 0;
}

bool
guest_is_dir (struct p2v_guest *gs, const char *path)
{
  return guestfs_is_dir (gs->g, path) > 0;
}

bool
guest_is_symlink (struct p2v_guest *gs, const char *path)
{
  return guestfs_is_symlink (gs->g, path) > 0;
}

bool
guest_exists (struct p2v_guest *gs, const char *path)
{
  return guestfs_exists (gs->g, path) > 0;
}

#define GUEST_PREAD_MAX (1024 * 1024)

char *
guest_read (struct p2v_guest *gs, const char *path)
{
  size_t size;
  char *data, *text;

  if (!guest_is_file (gs, path))
    return NULL;
  /* A configuration file fits in one pread reply: one call to the
   * appliance, where read_file's file transfer costs some 40 times as
   * long under TCG.  A file that fills the reply is read whole. */
  data = guestfs_pread (gs->g, path, GUEST_PREAD_MAX, 0, &size);
  if (!data || size >= GUEST_PREAD_MAX) {
    free (data);
    data = guestfs_read_file (gs->g, path, &size);
  }
  if (!data) {
    gerror (gs, "cannot read '%s' in the guest", path);
    return NULL;
  }
  text = xmalloc (size + 1);
  memcpy (text, data, size);
  text[size] = '\0';
  free (data);
  return text;
}

int
guest_write (struct p2v_guest *gs, const char *path, const char *content)
{
  if (guestfs_write (gs->g, path, content, strlen (content)) == -1)
    return gerror (gs, "cannot write '%s' in the guest", path);
  return 0;
}

char *
guest_readlink (struct p2v_guest *gs, const char *path)
{
  return guestfs_readlink (gs->g, path);
}

char **
guest_glob (struct p2v_guest *gs, const char *pattern)
{
  char **v = guestfs_glob_expand (gs->g, pattern);
  if (!v)
    v = xcalloc (1, sizeof *v);
  return v;
}

int
guest_initrd_has (struct p2v_guest *gs, const char *path, const char *needle,
                  bool *found)
{
  const char *tmpdir = getenv ("TMPDIR");
  char *local;
  int fd, r = -1;
  int64_t size = guestfs_filesize (gs->g, path);

  /* A bigger file is no initramfs worth copying out: the guest lists it. */
  if (size <= 0 || size > (int64_t) 1 << 30)
    return -1;
  local = xasprintf ("%s/p2v-initrd.XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
  fd = mkstemp (local);
  if (fd == -1) {
    free (local);
    return -1;
  }
  close (fd);
  if (guestfs_download (gs->g, path, local) == 0)
    r = initrd_file_has (local, needle, found);
  unlink (local);
  free (local);
  return r;
}

static char *
with_env (const char *cmd)
{
  return xasprintf ("export PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C "
                    "DEBIAN_FRONTEND=noninteractive; %s", cmd);
}

char *
guest_sh (struct p2v_guest *gs, const char *cmd, const char *what)
{
  char *full = with_env (cmd);
  char *out = guestfs_sh (gs->g, full);

  free (full);
  if (!out) {
    char *msg = one_line (guest_last_error (gs));
    p2v_error ("%s: %s", what, msg);
    free (msg);
  }
  return out;
}

bool
guest_sh_ok (struct p2v_guest *gs, const char *cmd)
{
  char *full = with_env (cmd);
  char *out = guestfs_sh (gs->g, full);

  free (full);
  free (out);
  return out != NULL;
}
