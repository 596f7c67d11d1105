/* cmd-capture.c: `p2v capture --to DEST`: image a server's disks, only
 * the blocks in use, into a bundle (docs/bundle.md): a directory (with
 * checkpoints inside each disk, for --resume), a tar file, stdout, or an
 * ssh pipe to `p2v receive` on the far side. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/major.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "common.h"
#include "capture.h"
#include "convert.h"
#include "digest.h"

const char cmd_capture_help[] =
  "usage: p2v capture [--disk DEV]... --to DEST [options]\n"
  "\n"
  "Image this machine's disks (or each --disk: a block device, a read-only\n"
  "loop device or a raw image file) into a capture bundle: manifest.json\n"
  "(hardware inventory, partition tables, per-disk digests) and one qcow2\n"
  "per disk.  Only the blocks in use are read: ext2/3/4 used blocks, the\n"
  "first page of swap; partition tables, gaps and other file systems are\n"
  "copied whole.  Sources are opened read-only and never written.\n"
  "\n"
  "DEST is a directory, FILE.tar, - (a tar stream on stdout), or\n"
  "ssh://[USER@]HOST[:PORT]/PATH, which pipes the tar stream to\n"
  "`p2v receive PATH` on HOST (host keys are checked; P2V_SSH_OPTS adds ssh\n"
  "options, P2V_REMOTE_P2V names the remote p2v, default p2v).\n"
  "\n"
  "  -d, --disk DEV          capture DEV (repeat); default: every disk but\n"
  "                          removable media and the running system's\n"
  "      --to DEST           where the bundle goes (required)\n"
  "      --all-blocks        copy every byte, not only the used blocks\n"
  "  -c, --compress          directory: zlib-compressed qcow2 clusters;\n"
  "                          tar/ssh: a zstd-compressed tar stream\n"
  "      --resume            continue an interrupted directory capture\n"
  "      --checkpoint SIZE   directory: save progress every SIZE of disk\n"
  "                          (default 256M)\n"
  "      --max-rate SIZE     copy at most SIZE bytes of data per second\n"
  "  -t, --threads N         worker threads (default: one per CPU)\n"
  "      --json              print a JSON summary on stdout (not with --to -)\n"
  "  -q, --quiet             no progress meter\n"
  "\n"
  "Exit status: 0 captured, 2 error, 130 interrupted (a directory capture\n"
  "keeps its checkpoint in DEST/.p2v-capture for --resume).\n";

#define STATE_DIR ".p2v-capture"
#define DEFAULT_CHECKPOINT (UINT64_C (256) << 20)

enum dest_kind { DEST_DIR, DEST_TAR_FILE, DEST_STDOUT, DEST_SSH };

struct options {
  char **disks;
  size_t ndisks;
  const char *to;
  bool all_blocks, compress, resume, json, quiet, list;
  uint64_t checkpoint, max_rate;
  unsigned threads;
};

/* One disk being captured. */
struct disk_job {
  struct capture_disk d;
  char *map_id;
  int index;
  /* Results. */
  uint64_t bytes_read, bytes_written;
  double seconds;
  char digest[P2V_DIGEST_HEX_LEN + 1];
  /* Resume state. */
  uint64_t done;
  bool complete;
};

struct capture {
  struct options *o;
  enum dest_kind kind;
  char *dest;                   /* directory, tar path, or ssh remote path */
  char *ssh_host, *ssh_port;
  char *state_dir;
  char *captured_at;
  struct disk_job *jobs;
  size_t njobs;
  /* Tar destinations. */
  struct archive *ar;
  char *tar_tmp;
  pid_t ssh_pid;
  int ssh_fd;
};

static volatile sig_atomic_t interrupted;

static void
on_signal (int sig)
{
  (void) sig;
  interrupted = 1;
}

/* --- the per-slot hook: digest, checkpoints, rate limit --- */

struct copy_ctx {
  struct capture *c;
  struct disk_job *job;
  struct p2v_digest *digest;
  int fd;                       /* directory: the partial qcow2, for fsync */
  uint64_t next_checkpoint;
  uint64_t data_bytes;
  uint64_t start, bytes_before; /* where this run started, reads before it */
  double t0;
};

static int save_state (struct capture *c);

static int
on_written (void *opaque, uint64_t offset, const void *buf, uint64_t len)
{
  struct copy_ctx *x = opaque;

  if (interrupted)
    return p2v_error ("interrupted");
  if (buf) {
    if (digest_feed (x->digest, offset, buf, len) == -1)
      return -1;
    x->data_bytes += len;
  }
  if (x->c->o->max_rate && buf) {
    double want = x->t0 + (double) x->data_bytes / x->c->o->max_rate;
    double now = now_seconds ();
    if (want > now) {
      struct timespec ts = { (time_t) (want - now),
                             (long) (((want - now) - (time_t) (want - now)) * 1e9) };
      nanosleep (&ts, NULL);
    }
  }
  if (x->fd >= 0 && offset + len >= x->next_checkpoint
      && offset + len < x->job->d.size) {
    /* Data before this point is on disk before the state says so. */
    if (fdatasync (x->fd) == -1)
      return p2v_error ("cannot flush '%s': %m", x->job->d.path);
    x->job->done = offset + len;
    /* The engine reads exactly the map: what lies below done was read. */
    x->job->bytes_read = x->bytes_before
      + capture_disk_mapped_in (&x->job->d, x->start, x->job->done - x->start);
    if (save_state (x->c) == -1)
      return -1;
    x->next_checkpoint = x->job->done + x->c->o->checkpoint;
  }
  return 0;
}

/* --- destinations --- */

static int
parse_ssh (struct capture *c, const char *url)
{
  const char *hostpart = url + strlen ("ssh://");
  const char *slash = strchr (hostpart, '/');
  char *host, *colon, *at, *h;

  if (!slash || slash == hostpart || !slash[1])
    return p2v_error ("bad ssh destination '%s': want ssh://[user@]host[:port]/path",
                      url);
  host = strndup (hostpart, slash - hostpart);
  at = strrchr (host, '@');
  h = at ? at + 1 : host;
  if (*h == '[') {
    /* [v6 address] or [v6 address]:port: ssh wants the bare address. */
    char *close = strchr (h, ']');
    if (!close || close == h + 1 || (close[1] && close[1] != ':')) {
      free (host);
      return p2v_error ("bad host in ssh destination '%s'", url);
    }
    colon = close[1] == ':' ? close + 1 : NULL;
    *close = '\0';
    memmove (h, h + 1, strlen (h + 1) + 1);  /* the port stays put */
  }
  else
    colon = strrchr (h, ':');
  if (colon) {
    *colon = '\0';
    if (!colon[1] || strspn (colon + 1, "0123456789") != strlen (colon + 1)
        || strlen (colon + 1) > 5) {
      free (host);
      return p2v_error ("bad port in ssh destination '%s'", url);
    }
    c->ssh_port = xstrdup (colon + 1);
  }
  if (!*host || host[0] == '-' || !*h || (at && at == host)) {
    free (host);
    return p2v_error ("bad host in ssh destination '%s'", url);
  }
  c->ssh_host = host;
  c->dest = xstrdup (slash);    /* the remote path, absolute */
  return 0;
}

/* Quote s for the remote shell, which runs ssh's command line. */
static char *
shell_quote (const char *s)
{
  size_t n = 3;
  char *q, *p;

  for (const char *t = s; *t; t++)
    n += *t == '\'' ? 4 : 1;
  q = p = xmalloc (n);
  *p++ = '\'';
  for (; *s; s++) {
    if (*s == '\'') {
      memcpy (p, "'\\''", 4);
      p += 4;
    }
    else
      *p++ = *s;
  }
  *p++ = '\'';
  *p = '\0';
  return q;
}

static int
start_ssh (struct capture *c)
{
  const char *opts = getenv ("P2V_SSH_OPTS");
  const char *remote = getenv ("P2V_REMOTE_P2V");
  char *qpath = shell_quote (c->dest);
  char *cmd = xasprintf ("%s receive %s", remote && *remote ? remote : "p2v", qpath);
  char *optcopy = opts ? xstrdup (opts) : NULL, *save = NULL;
  const char **argv = xcalloc (16 + (opts ? strlen (opts) : 0), sizeof *argv);
  size_t n = 0;
  int pfd[2];

  argv[n++] = "ssh";
  argv[n++] = "-o";
  argv[n++] = "BatchMode=yes";  /* never prompt: fail on a bad key */
  if (c->ssh_port) {
    argv[n++] = "-p";
    argv[n++] = c->ssh_port;
  }
  for (char *tok = optcopy ? strtok_r (optcopy, " \t", &save) : NULL; tok;
       tok = strtok_r (NULL, " \t", &save))
    argv[n++] = tok;
  argv[n++] = "--";
  argv[n++] = c->ssh_host;
  argv[n++] = cmd;
  argv[n] = NULL;

  if (pipe2 (pfd, O_CLOEXEC) == -1) {
    p2v_error ("cannot make a pipe: %m");
    goto fail;
  }
  c->ssh_pid = fork ();
  if (c->ssh_pid == -1) {
    p2v_error ("cannot fork: %m");
    close (pfd[0]);
    close (pfd[1]);
    goto fail;
  }
  if (c->ssh_pid == 0) {
    dup2 (pfd[0], STDIN_FILENO);
    /* ssh's stdout is ours only if ours is not the data channel. */
    signal (SIGPIPE, SIG_DFL);
    execvp ("ssh", (char **) argv);
    fprintf (stderr, "p2v: cannot run ssh: %s\n", strerror (errno));
    _exit (127);
  }
  close (pfd[0]);
  c->ssh_fd = pfd[1];
  free (qpath);
  free (cmd);
  free (optcopy);
  free (argv);
  return 0;
 fail:
  free (qpath);
  free (cmd);
  free (optcopy);
  free (argv);
  return -1;
}

static int
finish_ssh (struct capture *c, bool ok)
{
  int status = 0;
  pid_t r = 0;

  if (c->ssh_fd >= 0) {
    close (c->ssh_fd);
    c->ssh_fd = -1;
  }
  if (c->ssh_pid <= 0)
    return 0;
  /* After a failed write ssh has usually exited already (a refused host
   * key, a failed login): its status is the real reason. */
  for (int i = 0; !ok && i < 20 && r == 0; i++) {
    r = waitpid (c->ssh_pid, &status, WNOHANG);
    if (r == 0)
      usleep (50000);
  }
  if (r == 0) {
    if (!ok)
      kill (c->ssh_pid, SIGTERM);
    while ((r = waitpid (c->ssh_pid, &status, 0)) == -1 && errno == EINTR)
      ;
  }
  c->ssh_pid = 0;
  if (r == -1)
    return p2v_error ("cannot wait for ssh: %m");
  if (!WIFEXITED (status) || WEXITSTATUS (status) != 0)
    return p2v_error ("ssh to '%s' failed (exit status %d): the bundle was not "
                      "received", c->ssh_host,
                      WIFEXITED (status) ? WEXITSTATUS (status) : 128 + WTERMSIG (status));
  return ok ? 0 : -1;
}

static int
open_archive (struct capture *c)
{
  int r;

  c->ar = archive_write_new ();
  if (!c->ar)
    return p2v_error ("cannot start libarchive");
  archive_write_set_format_pax_restricted (c->ar);
  if (c->o->compress && archive_write_add_filter_zstd (c->ar) != ARCHIVE_OK)
    return p2v_error ("cannot compress the tar stream: %s",
                      archive_error_string (c->ar));
  /* Whole blocks of 10 KiB are tar's habit; a pipe does not care. */
  archive_write_set_bytes_in_last_block (c->ar, 1);
  switch (c->kind) {
  case DEST_TAR_FILE: {
    char *slash = strrchr (c->dest, '/');
    c->tar_tmp = slash
      ? xasprintf ("%.*s/.%s.p2v-partial.%d", (int) (slash - c->dest), c->dest,
                   slash + 1, (int) getpid ())
      : xasprintf (".%s.p2v-partial.%d", c->dest, (int) getpid ());
    r = archive_write_open_filename (c->ar, c->tar_tmp);
    break;
  }
  case DEST_STDOUT:
    r = archive_write_open_fd (c->ar, STDOUT_FILENO);
    break;
  case DEST_SSH:
    if (start_ssh (c) == -1)
      return -1;
    r = archive_write_open_fd (c->ar, c->ssh_fd);
    break;
  default:
    abort ();
  }
  if (r != ARCHIVE_OK)
    return p2v_error ("cannot start the tar stream to '%s': %s", c->o->to,
                      archive_error_string (c->ar));
  return 0;
}

static int
archive_entry_start (struct capture *c, const char *name, uint64_t size)
{
  struct archive_entry *e = archive_entry_new ();
  int r;

  archive_entry_set_pathname (e, name);
  archive_entry_set_filetype (e, AE_IFREG);
  archive_entry_set_perm (e, 0644);
  archive_entry_set_size (e, (la_int64_t) size);
  archive_entry_set_mtime (e, time (NULL), 0);
  r = archive_write_header (c->ar, e);
  archive_entry_free (e);
  if (r != ARCHIVE_OK)
    return p2v_error ("cannot write the tar header of '%s': %s", name,
                      archive_error_string (c->ar));
  return 0;
}

static int
archive_sink_write (void *opaque, const void *buf, size_t len, uint64_t offset)
{
  struct capture *c = opaque;
  const char *p = buf;

  (void) offset;
  while (len > 0) {
    la_ssize_t n = archive_write_data (c->ar, p, len);
    if (n <= 0)
      return p2v_error ("cannot write the tar stream to '%s': %s", c->o->to,
                        archive_error_string (c->ar));
    p += n;
    len -= n;
  }
  return 0;
}

struct file_sink {
  int fd;
  struct p2v_writeback wb;      /* so a checkpoint's fdatasync finds little to do */
};

static int
file_sink_write (void *opaque, const void *buf, size_t len, uint64_t offset)
{
  struct file_sink *fs = opaque;

  if (full_pwrite (fs->fd, buf, len, offset) == -1)
    return p2v_error ("cannot write the capture: %m");
  writeback_account (fs->fd, &fs->wb, len);
  return 0;
}

/* --- state (checkpoints) --- */

static char *
state_path (struct capture *c, const char *name)
{
  return xasprintf ("%s/%s", c->state_dir, name);
}

static int
save_state (struct capture *c)
{
  json_object *st = json_object_new_object (), *disks = json_object_new_array ();
  char *path = state_path (c, "state.json");
  int r;

  json_object_object_add (st, "version", json_object_new_int (1));
  json_object_object_add (st, "captured_at", json_object_new_string (c->captured_at));
  json_object_object_add (st, "all_blocks", json_object_new_boolean (c->o->all_blocks));
  json_object_object_add (st, "compress", json_object_new_boolean (c->o->compress));
  for (size_t i = 0; i < c->njobs; i++) {
    struct disk_job *j = &c->jobs[i];
    json_object *jd = json_object_new_object ();
    json_object_object_add (jd, "path", json_object_new_string (j->d.path));
    json_object_object_add (jd, "map", json_object_new_string (j->map_id));
    json_object_object_add (jd, "done", json_object_new_int64 ((int64_t) j->done));
    json_object_object_add (jd, "bytes_read", json_object_new_int64 ((int64_t) j->bytes_read));
    json_object_object_add (jd, "seconds", json_object_new_double (j->seconds));
    json_object_object_add (jd, "complete", json_object_new_boolean (j->complete));
    if (j->complete)
      json_object_object_add (jd, "digest", json_object_new_string (j->digest));
    json_object_array_add (disks, jd);
  }
  json_object_object_add (st, "disks", disks);
  r = write_file_atomic (path, json_object_to_json_string_ext (st, JSON_C_TO_STRING_PRETTY));
  json_object_put (st);
  free (path);
  return r;
}

/* Take what an interrupted run achieved, disk by disk, where the source
 * still maps the same and the options match. */
static int
load_state (struct capture *c)
{
  char *path = state_path (c, "state.json");
  json_object *st = json_object_from_file (path), *v, *disks;

  free (path);
  if (!st)
    return p2v_error ("cannot read the checkpoint in '%s/%s': %s", c->state_dir,
                      "state.json", json_util_get_last_err ());
  if (!json_object_object_get_ex (st, "version", &v) || json_object_get_int (v) != 1
      || !json_object_object_get_ex (st, "disks", &disks)
      || !json_object_is_type (disks, json_type_array)) {
    json_object_put (st);
    return p2v_error ("the checkpoint in '%s' is not one p2v understands", c->state_dir);
  }
  if (json_object_object_get_ex (st, "all_blocks", &v)
      && json_object_get_boolean (v) != c->o->all_blocks) {
    json_object_put (st);
    return p2v_error ("the interrupted capture in '%s' was %s --all-blocks; "
                      "resume it with the same options", c->state_dir,
                      c->o->all_blocks ? "without" : "with");
  }
  if (json_object_object_get_ex (st, "captured_at", &v) && json_object_get_string (v)) {
    free (c->captured_at);
    c->captured_at = xstrdup (json_object_get_string (v));
  }
  for (size_t i = 0; i < c->njobs && i < json_object_array_length (disks); i++) {
    json_object *jd = json_object_array_get_idx (disks, i), *p, *m, *dn, *br, *cp, *dg, *sec;
    struct disk_job *j = &c->jobs[i];
    bool complete;

    if (!json_object_object_get_ex (jd, "path", &p)
        || !json_object_object_get_ex (jd, "map", &m)
        || !json_object_object_get_ex (jd, "done", &dn)
        || !json_object_object_get_ex (jd, "bytes_read", &br)
        || !json_object_object_get_ex (jd, "complete", &cp))
      continue;
    if (strcmp (json_object_get_string (p), j->d.path) != 0
        || strcmp (json_object_get_string (m), j->map_id) != 0) {
      p2v_warning ("'%s' is not as the interrupted capture left it; "
                   "capturing it from the start", j->d.path);
      continue;
    }
    complete = json_object_get_boolean (cp);
    if (complete && (!json_object_object_get_ex (jd, "digest", &dg)
                     || strlen (json_object_get_string (dg)) != P2V_DIGEST_HEX_LEN))
      continue;
    if (json_object_get_int64 (dn) < 0
        || (uint64_t) json_object_get_int64 (dn) > j->d.size)
      continue;
    j->done = json_object_get_int64 (dn);
    j->bytes_read = json_object_get_int64 (br);
    if (json_object_object_get_ex (jd, "seconds", &sec))
      j->seconds = json_object_get_double (sec);
    j->complete = complete;
    if (complete)
      strcpy (j->digest, json_object_get_string (dg));
  }
  json_object_put (st);
  return 0;
}

/* Feed the digest with what the partial image already holds below done:
 * local reads only, the source is not touched again. */
static int
digest_partial (const char *path, uint64_t done, struct p2v_digest *dg)
{
  struct p2v_image *img = image_open (path, "qcow2", P2V_OPEN_READONLY);
  uint8_t *buf = NULL;
  uint64_t off = 0;
  int r = -1;

  if (!img)
    return -1;
  buf = xmalloc (1 << 20);
  while (off < done) {
    uint64_t pnum;
    unsigned flags;
    size_t n;

    if (image_block_status (img, off, P2V_MIN (done - off, (uint64_t) 1 << 20),
                            &pnum, &flags) == -1)
      goto out;
    n = pnum;
    if (flags & P2V_STATUS_DATA) {
      if (image_pread (img, buf, n, off) == -1
          || digest_feed (dg, off, buf, n) == -1)
        goto out;
    }
    off += n;
  }
  r = 0;
 out:
  free (buf);
  image_close (img);
  return r;
}

/* --- copying one disk --- */

static int
copy_disk (struct capture *c, struct disk_job *j)
{
  struct options *o = c->o;
  struct p2v_image *raw = NULL, *src = NULL, *dst = NULL;
  struct qcow2_layout *layout = NULL;
  struct p2v_copy_opts copts = { 0 };
  struct p2v_copy_stats stats;
  struct copy_ctx x = { .c = c, .job = j, .fd = -1 };
  struct file_sink fsink = { .fd = -1 };
  char *name = xasprintf ("disk%d.qcow2", j->index);
  char *partial = c->state_dir ? state_path (c, name) : NULL;
  int fd = -1, r = -1;
  bool layout_mode = !(o->compress && c->kind == DEST_DIR);
  struct stat st;

  if (!(x.digest = digest_new ()))
    goto out;
  if (!(raw = image_open (j->d.path, "raw", P2V_OPEN_READONLY)))
    goto out;
  src = capture_map_image (raw, &j->d);
  raw = NULL;

  if (layout_mode && !(layout = qcow2_layout_new (j->d.size, j->d.ext, j->d.next)))
    goto out;

  if (c->kind == DEST_DIR) {
    if (layout_mode && j->done > 0 && access (partial, F_OK) == -1) {
      p2v_warning ("the partial image '%s' is gone; capturing '%s' from the start",
                   partial, j->d.path);
      j->done = 0;
    }
    if (!layout_mode || j->done == 0) {
      /* Start this disk afresh (compressed disks resume per disk). */
      j->done = 0;
      j->bytes_read = 0;
      j->seconds = 0;
      if (unlink (partial) == -1 && errno != ENOENT) {
        p2v_error ("cannot remove '%s': %m", partial);
        goto out;
      }
    }
    else if (digest_partial (partial, j->done, x.digest) == -1)
      goto out;
    if (layout_mode) {
      struct qcow2_layout_sink sink = { file_sink_write, &fsink, false };
      fd = open (partial, O_RDWR | O_CREAT | O_CLOEXEC | (j->done ? 0 : O_EXCL), 0644);
      if (fd == -1) {
        p2v_error ("cannot create '%s': %m", partial);
        goto out;
      }
      fsink.fd = fd;
      if (ftruncate (fd, qcow2_layout_file_size (layout)) == -1) {
        p2v_error ("cannot size '%s': %m", partial);
        goto out;
      }
      if (!(dst = qcow2_layout_image (layout, &sink, partial)))
        goto out;
      x.fd = fd;
    }
    else if (!(dst = image_create (partial, "qcow2", j->d.size, NULL)))
      goto out;
  }
  else {
    struct qcow2_layout_sink sink = { archive_sink_write, c, true };
    if (archive_entry_start (c, name, qcow2_layout_file_size (layout)) == -1
        || !(dst = qcow2_layout_image (layout, &sink, name)))
      goto out;
  }

  copts.threads = o->threads;
  copts.compress = o->compress && c->kind == DEST_DIR;
  copts.compress_level = P2V_DEFAULT_COMPRESS_LEVEL;
  copts.progress = !o->quiet;
  copts.progress_label = j->d.name;
  copts.start = j->done;
  copts.written = on_written;
  copts.written_opaque = &x;
  x.next_checkpoint = j->done + o->checkpoint;
  x.start = j->done;
  x.bytes_before = j->bytes_read;
  x.t0 = now_seconds ();

  if (copy_image (src, dst, &copts, &stats) == -1)
    goto out;
  if (c->kind == DEST_DIR && image_flush (dst) == -1)
    goto out;
  r = image_close (dst);
  dst = NULL;
  if (r == -1)
    goto out;
  r = -1;
  if (fd >= 0 && fsync (fd) == -1) {
    p2v_error ("cannot flush '%s': %m", partial);
    goto out;
  }
  if (digest_final (x.digest, j->digest) == -1)
    goto out;
  j->bytes_read = x.bytes_before + stats.bytes_read;
  j->seconds += stats.seconds;
  if (layout_mode)
    j->bytes_written = qcow2_layout_file_size (layout);
  else
    j->bytes_written = stat (partial, &st) == 0 ? (uint64_t) st.st_size : 0;
  j->done = j->d.size;
  j->complete = true;
  if (c->kind == DEST_DIR && save_state (c) == -1)
    goto out;
  r = 0;
 out:
  if (dst)
    image_close (dst);
  if (fd >= 0)
    close (fd);
  image_close (src);
  image_close (raw);
  qcow2_layout_free (layout);
  digest_free (x.digest);
  free (name);
  free (partial);
  return r;
}

/* --- the manifest --- */

/* The running firmware describes this machine's own disks.  An image file
 * (or a loop device over one) was booted by some other machine: judge it by its first disk's layout,
 * as smoke does (GPT with an EFI System Partition and no BIOS boot
 * partition is UEFI), and say where the answer came from. */
static void
firmware_from_disks (json_object *m, const struct capture *c)
{
  bool files = false, esp = false, bios_grub = false;
  struct stat st;

  /* Image files, and loop devices (which are image files too). */
  for (size_t i = 0; i < c->njobs; i++)
    if (stat (c->jobs[i].d.path, &st) == 0
        && (S_ISREG (st.st_mode)
            || (S_ISBLK (st.st_mode) && major (st.st_rdev) == LOOP_MAJOR)))
      files = true;
  if (!files || c->njobs == 0) {
    json_object_object_add (m, "firmware_source", json_object_new_string ("running system"));
    return;
  }
  const struct capture_disk *d = &c->jobs[0].d;
  for (size_t i = 0; i < d->nparts; i++)
    for (size_t k = 0; k < d->parts[i].nflags; k++) {
      esp |= strcmp (d->parts[i].flags[k], "esp") == 0;
      bios_grub |= strcmp (d->parts[i].flags[k], "bios_grub") == 0;
    }
  json_object_object_add (m, "firmware", json_object_new_string (
    d->table && strcmp (d->table, "gpt") == 0 && esp && !bios_grub ? "uefi" : "bios"));
  json_object_object_add (m, "firmware_source", json_object_new_string ("disk layout"));
}

static json_object *
build_manifest (struct capture *c)
{
  json_object *m = json_object_new_object (), *disks = json_object_new_array ();

  json_object_object_add (m, "format", json_object_new_string ("p2v-bundle"));
  json_object_object_add (m, "version", json_object_new_int (1));
  json_object_object_add (m, "tool", json_object_new_string ("p2v " P2V_VERSION));
  json_object_object_add (m, "captured_at", json_object_new_string (c->captured_at));
  json_object_object_add (m, "complete", json_object_new_boolean (true));
  capture_inventory (m);
  firmware_from_disks (m, c);
  for (size_t i = 0; i < c->njobs; i++)
    if (c->jobs[i].d.guest_hostname) {
      json_object_object_add (m, "hostname",
                              json_object_new_string (c->jobs[i].d.guest_hostname));
      json_object_object_add (m, "hostname_source",
                              json_object_new_string ("/etc/hostname on the disks"));
      break;
    }
  for (size_t i = 0; i < c->njobs; i++) {
    struct disk_job *j = &c->jobs[i];
    json_object *jd = capture_disk_json (&j->d), *dg = json_object_new_object ();
    char *file = xasprintf ("disk%d.qcow2", j->index);

    json_object_object_add (jd, "file", json_object_new_string (file));
    json_object_object_add (jd, "bytes_read", json_object_new_int64 ((int64_t) j->bytes_read));
    json_object_object_add (dg, "algorithm", json_object_new_string (P2V_DIGEST_ALGORITHM));
    json_object_object_add (dg, "value", json_object_new_string (j->digest));
    json_object_object_add (jd, "digest", dg);
    json_object_array_add (disks, jd);
    free (file);
  }
  json_object_object_add (m, "disks", disks);
  return m;
}

static int
fsync_dir (const char *dir)
{
  int fd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

  if (fd == -1 || fsync (fd) == -1) {
    int e = errno;
    if (fd >= 0)
      close (fd);
    errno = e;
    return p2v_error ("cannot flush directory '%s': %m", dir);
  }
  close (fd);
  return 0;
}

/* Move the finished disks into place, then the manifest last: its
 * presence is what makes the directory a bundle. */
static int
finish_dir (struct capture *c, const char *manifest_text)
{
  char *mtmp = state_path (c, "manifest.json");
  char *mpath = xasprintf ("%s/manifest.json", c->dest);
  int r = -1;

  if (write_file_atomic (mtmp, manifest_text) == -1)
    goto out;
  for (size_t i = 0; i < c->njobs; i++) {
    char *name = xasprintf ("disk%d.qcow2", c->jobs[i].index);
    char *from = state_path (c, name), *to = xasprintf ("%s/%s", c->dest, name);
    int e = rename (from, to);
    if (e == -1)
      p2v_error ("cannot move '%s' to '%s': %m", from, to);
    free (name);
    free (from);
    free (to);
    if (e == -1)
      goto out;
  }
  if (fsync_dir (c->dest) == -1)
    goto out;
  if (rename (mtmp, mpath) == -1) {
    p2v_error ("cannot move '%s' to '%s': %m", mtmp, mpath);
    goto out;
  }
  if (fsync_dir (c->dest) == -1)
    goto out;
  {
    char *sp = state_path (c, "state.json");
    unlink (sp);
    free (sp);
    rmdir (c->state_dir);
  }
  r = 0;
 out:
  free (mtmp);
  free (mpath);
  return r;
}

static bool
dir_is_empty (const char *path)
{
  DIR *d = opendir (path);
  struct dirent *de;
  bool empty = true;

  if (!d)
    return false;
  while (empty && (de = readdir (d)))
    empty = strcmp (de->d_name, ".") == 0 || strcmp (de->d_name, "..") == 0;
  closedir (d);
  return empty;
}

static int
prepare_dir (struct capture *c)
{
  char *m = xasprintf ("%s/manifest.json", c->dest);
  struct stat st;
  int r = -1;

  if (mkdir (c->dest, 0755) == -1 && errno != EEXIST) {
    p2v_error ("cannot create '%s': %m", c->dest);
    goto out;
  }
  if (stat (m, &st) == 0) {
    p2v_error ("'%s' already holds a finished bundle", c->dest);
    goto out;
  }
  c->state_dir = xasprintf ("%s/" STATE_DIR, c->dest);
  if (access (c->state_dir, F_OK) == -1 && !dir_is_empty (c->dest)) {
    /* Never mix a bundle into, or rename disks over, someone's files. */
    p2v_error ("'%s' is not empty: capture into a new or empty directory", c->dest);
    goto out;
  }
  if (mkdir (c->state_dir, 0755) == 0) {
    if (c->o->resume)
      p2v_warning ("'%s' holds no interrupted capture; starting from the beginning",
                   c->dest);
  }
  else if (errno == EEXIST) {
    char *sp = state_path (c, "state.json");
    bool have = stat (sp, &st) == 0;
    free (sp);
    if (!c->o->resume) {
      p2v_error ("'%s' holds an interrupted capture: continue it with --resume, "
                 "or remove '%s'", c->dest, c->state_dir);
      goto out;
    }
    if (have && load_state (c) == -1)
      goto out;
  }
  else {
    p2v_error ("cannot create '%s': %m", c->state_dir);
    goto out;
  }
  r = save_state (c);
 out:
  free (m);
  return r;
}

/* --- the command --- */

static int
parse_args (int argc, char **argv, struct options *o)
{
  enum { OPT_TO = 256, OPT_ALL, OPT_RESUME, OPT_JSON, OPT_CHECKPOINT, OPT_RATE,
         OPT_LIST };
  static const struct option longopts[] = {
    { "disk", required_argument, NULL, 'd' },
    { "to", required_argument, NULL, OPT_TO },
    { "all-blocks", no_argument, NULL, OPT_ALL },
    { "compress", no_argument, NULL, 'c' },
    { "resume", no_argument, NULL, OPT_RESUME },
    { "checkpoint", required_argument, NULL, OPT_CHECKPOINT },
    { "max-rate", required_argument, NULL, OPT_RATE },
    { "threads", required_argument, NULL, 't' },
    { "json", no_argument, NULL, OPT_JSON },
    { "list", no_argument, NULL, OPT_LIST },
    { "quiet", no_argument, NULL, 'q' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  int ch;

  o->checkpoint = DEFAULT_CHECKPOINT;
  optind = 1;
  while ((ch = getopt_long (argc, argv, "d:ct:qh", longopts, NULL)) != -1) {
    switch (ch) {
    case 'd':
      o->disks = xrealloc (o->disks, (o->ndisks + 1) * sizeof *o->disks);
      o->disks[o->ndisks++] = optarg;
      break;
    case OPT_TO: o->to = optarg; break;
    case OPT_ALL: o->all_blocks = true; break;
    case 'c': o->compress = true; break;
    case OPT_RESUME: o->resume = true; break;
    case OPT_JSON: o->json = true; break;
    case OPT_LIST: o->list = true; break;
    case 'q': o->quiet = true; break;
    case OPT_CHECKPOINT:
      if (parse_size (optarg, &o->checkpoint) == -1 || o->checkpoint < (1 << 20))
        return p2v_error ("bad --checkpoint '%s': want a size of at least 1M", optarg);
      break;
    case OPT_RATE:
      if (parse_size (optarg, &o->max_rate) == -1 || o->max_rate == 0)
        return p2v_error ("bad --max-rate '%s': want a size per second", optarg);
      break;
    case 't': {
      char *end;
      unsigned long n = strtoul (optarg, &end, 10);
      if (*end || n < 1 || n > 64)
        return p2v_error ("bad --threads '%s': want 1 to 64", optarg);
      o->threads = n;
      break;
    }
    case 'h':
      fputs (cmd_capture_help, stdout);
      exit (P2V_EXIT_OK);
    default:
      return p2v_error ("see 'p2v help capture'");
    }
  }
  if (optind < argc)
    return p2v_error ("unexpected argument '%s' (disks are given with --disk)",
                      argv[optind]);
  if (!o->to && !o->list)
    return p2v_error ("no destination: give --to DIR, --to FILE.tar, --to - "
                      "or --to ssh://host/path");
  return 0;
}

static void
print_summary (struct capture *c, FILE *f)
{
  json_object *s = json_object_new_object (), *disks = json_object_new_array ();

  json_object_object_add (s, "destination", json_object_new_string (c->o->to));
  for (size_t i = 0; i < c->njobs; i++) {
    struct disk_job *j = &c->jobs[i];
    json_object *jd = json_object_new_object ();
    json_object_object_add (jd, "name", json_object_new_string (j->d.name));
    json_object_object_add (jd, "path", json_object_new_string (j->d.path));
    json_object_object_add (jd, "size", json_object_new_int64 ((int64_t) j->d.size));
    json_object_object_add (jd, "bytes_mapped", json_object_new_int64 ((int64_t) j->d.bytes_mapped));
    json_object_object_add (jd, "bytes_read", json_object_new_int64 ((int64_t) j->bytes_read));
    if (j->bytes_written == 0 && c->kind == DEST_DIR) {
      /* Finished by an earlier run: measure the file. */
      char *fpath = xasprintf ("%s/disk%d.qcow2", c->dest, j->index);
      struct stat st;
      if (stat (fpath, &st) == 0)
        j->bytes_written = st.st_size;
      free (fpath);
    }
    json_object_object_add (jd, "bytes_written", json_object_new_int64 ((int64_t) j->bytes_written));
    json_object_object_add (jd, "seconds", json_object_new_double (j->seconds));
    json_object_object_add (jd, "digest", json_object_new_string (j->digest));
    json_object_array_add (disks, jd);
  }
  json_object_object_add (s, "disks", disks);
  fprintf (f, "%s\n", json_object_to_json_string_ext (s, JSON_C_TO_STRING_PRETTY));
  json_object_put (s);
}

int
cmd_capture (int argc, char **argv)
{
  struct options o = { 0 };
  struct capture c = { .o = &o, .ssh_fd = -1 };
  char **found = NULL;
  size_t nfound = 0;
  json_object *manifest = NULL;
  struct sigaction sa = { .sa_handler = on_signal };
  char stamp[32];
  time_t now = time (NULL);
  int ret = P2V_EXIT_ERROR;

  if (parse_args (argc, argv, &o) == -1)
    goto out;

  if (o.list)
    ;
  else if (strcmp (o.to, "-") == 0) {
    c.kind = DEST_STDOUT;
    if (isatty (STDOUT_FILENO)) {
      p2v_error ("refusing to write a tar stream to a terminal");
      goto out;
    }
    if (o.json) {
      p2v_error ("--json and --to - both want stdout");
      goto out;
    }
  }
  else if (strncmp (o.to, "ssh://", 6) == 0) {
    c.kind = DEST_SSH;
    if (parse_ssh (&c, o.to) == -1)
      goto out;
  }
  else if (strlen (o.to) > 4 && strcmp (o.to + strlen (o.to) - 4, ".tar") == 0) {
    c.kind = DEST_TAR_FILE;
    c.dest = xstrdup (o.to);
    if (access (c.dest, F_OK) == 0) {
      p2v_error ("'%s' already exists", c.dest);
      goto out;
    }
  }
  else {
    c.kind = DEST_DIR;
    c.dest = xstrdup (o.to);
  }
  if (o.resume && c.kind != DEST_DIR) {
    p2v_error ("--resume needs a directory destination (a stream cannot resume)");
    goto out;
  }

  if (o.ndisks == 0) {
    if (capture_discover (&found, &nfound) == -1)
      goto out;
    if (nfound == 0) {
      p2v_error ("found no disk to capture (name them with --disk)");
      goto out;
    }
  }
  c.njobs = o.ndisks ? o.ndisks : nfound;
  c.jobs = xcalloc (c.njobs, sizeof *c.jobs);
  for (size_t i = 0; i < c.njobs; i++) {
    struct disk_job *j = &c.jobs[i];
    const char *path = o.ndisks ? o.disks[i] : found[i];
    int fd = open (path, O_RDONLY | O_CLOEXEC);

    j->index = (int) i;
    if (fd == -1) {
      p2v_error ("cannot open '%s': %m", path);
      goto out;
    }
    if (capture_disk_identify (&j->d, path, fd) == -1
        || capture_disk_scan (&j->d, fd, o.all_blocks) == -1) {
      close (fd);
      goto out;
    }
    close (fd);
    if (!(j->map_id = capture_disk_map_id (&j->d)))
      goto out;
    for (size_t k = 0; k < i; k++)
      if (strcmp (c.jobs[k].d.path, path) == 0) {
        p2v_error ("'%s' is named twice", path);
        goto out;
      }
  }

  if (o.list) {
    json_object *arr = json_object_new_array ();
    for (size_t i = 0; i < c.njobs; i++)
      json_object_array_add (arr, capture_disk_json (&c.jobs[i].d));
    printf ("%s\n", json_object_to_json_string_ext (arr, JSON_C_TO_STRING_PRETTY));
    json_object_put (arr);
    ret = P2V_EXIT_OK;
    goto out;
  }

  strftime (stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", gmtime (&now));
  c.captured_at = xstrdup (stamp);
  sigaction (SIGINT, &sa, NULL);
  sigaction (SIGTERM, &sa, NULL);
  sigaction (SIGHUP, &sa, NULL);
  signal (SIGPIPE, SIG_IGN);    /* a dead ssh or reader: EPIPE, an error */

  if (c.kind == DEST_DIR) {
    if (prepare_dir (&c) == -1)
      goto out;
  }
  else if (open_archive (&c) == -1)
    goto out;

  for (size_t i = 0; i < c.njobs; i++) {
    if (c.jobs[i].complete)
      continue;
    if (copy_disk (&c, &c.jobs[i]) == -1)
      goto out;
  }

  manifest = build_manifest (&c);
  {
    const char *text = json_object_to_json_string_ext (manifest, JSON_C_TO_STRING_PRETTY);
    if (c.kind == DEST_DIR) {
      char *t = xasprintf ("%s\n", text);
      int e = finish_dir (&c, t);
      free (t);
      if (e == -1)
        goto out;
    }
    else {
      size_t len = strlen (text);
      if (archive_entry_start (&c, "manifest.json", len + 1) == -1
          || archive_sink_write (&c, text, len, 0) == -1
          || archive_sink_write (&c, "\n", 1, 0) == -1)
        goto out;
      if (archive_write_close (c.ar) != ARCHIVE_OK) {
        p2v_error ("cannot finish the tar stream to '%s': %s", o.to,
                   archive_error_string (c.ar));
        goto out;
      }
      if (c.kind == DEST_SSH && finish_ssh (&c, true) == -1)
        goto out;
      if (c.kind == DEST_TAR_FILE) {
        if (rename (c.tar_tmp, c.dest) == -1) {
          p2v_error ("cannot rename '%s' to '%s': %m", c.tar_tmp, c.dest);
          goto out;
        }
        free (c.tar_tmp);
        c.tar_tmp = NULL;
      }
    }
  }
  if (o.json)
    print_summary (&c, stdout);
  ret = P2V_EXIT_OK;

 out:
  if (ret != P2V_EXIT_OK && interrupted)
    ret = P2V_EXIT_INTERRUPTED;
  if (c.ar) {
    if (ret != P2V_EXIT_OK)
      archive_write_fail (c.ar);
    archive_write_free (c.ar);
  }
  if (c.ssh_pid > 0)
    finish_ssh (&c, false);
  if (c.tar_tmp) {
    unlink (c.tar_tmp);
    free (c.tar_tmp);
  }
  json_object_put (manifest);
  for (size_t i = 0; i < c.njobs; i++) {
    capture_disk_clear (&c.jobs[i].d);
    free (c.jobs[i].map_id);
  }
  free (c.jobs);
  for (size_t i = 0; i < nfound; i++)
    free (found[i]);
  free (found);
  free (o.disks);
  free (c.dest);
  free (c.ssh_host);
  free (c.ssh_port);
  free (c.state_dir);
  free (c.captured_at);
  return ret;
}
