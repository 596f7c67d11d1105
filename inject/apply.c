/* apply.c: carry out a plan inside the guest: a backup of every file
 * before its first change (FILE.p2v-orig, kept from the first run), the
 * change, its check, and a log of it all in /var/log/p2v-inject.log. */
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <guestfs.h>

#include "common.h"
#include "inject-int.h"

#define G(gs) ((guestfs_h *) guest_handle (gs))

static const char log_path[] = "/var/log/p2v-inject.log";

static int
gfail (struct p2v_guest *gs, const char *what, const char *path)
{
  const char *e = guest_last_error (gs);
  char *msg = xstrdup (e);
  msg[strcspn (msg, "\n")] = '\0';
  p2v_error ("%s '%s' in the guest: %s", what, path, msg);
  free (msg);
  return -1;
}

static int
make_parent (struct p2v_guest *gs, const char *path)
{
  char *copy = xstrdup (path);
  char *dir = dirname (copy);
  int r = 0;

  if (!guest_is_dir (gs, dir) && guestfs_mkdir_p (G (gs), dir) == -1)
    r = gfail (gs, "cannot create", dir);
  free (copy);
  return r;
}

static int
backup (struct p2v_guest *gs, const char *file, struct p2v_strbuf *log)
{
  char *bp;
  int r = 0;

  if (!guest_is_file (gs, file))
    return 0;
  bp = backup_path (file);
  if (!guest_exists (gs, bp)) {
    if (guestfs_cp_a (G (gs), file, bp) == -1)
      r = gfail (gs, "cannot back up", file);
    else
      sb_addf (log, "    backup: %s\n", bp);
  }
  free (bp);
  return r;
}

/* What must hold after a command ran. */
static int
check_command (struct p2v_guest *gs, const struct p2v_change *c)
{
  if (c->check_virtio
      && !initramfs_has_virtio_blk (gs, c->check_virtio, c->file))
    return p2v_error ("'%s' still lacks virtio_blk after '%s'", c->file,
                      c->command);
  if (c->check_cmdlines) {
    char *text = guest_read (gs, c->file);
    bool bad = !text || cmdline_has_unstable (text);
    free (text);
    if (bad)
      return p2v_error ("'%s' still names the root by a disk device after "
                        "'%s'", c->file, c->command);
  }
  return 0;
}

static int
apply_one (struct p2v_guest *gs, const struct p2v_change *c,
           struct p2v_strbuf *log)
{
  if (c->backup && backup (gs, c->file, log) == -1)
    return -1;

  switch (c->kind) {
  case CHANGE_SHOWN:
    return 0;

  case CHANGE_WRITE:
    if (c->created && make_parent (gs, c->file) == -1)
      return -1;
    if (guest_write (gs, c->file, c->content) == -1)
      return -1;
    if (c->created && guestfs_chmod (G (gs), 0644, c->file) == -1)
      return gfail (gs, "cannot set the mode of", c->file);
    return 0;

  case CHANGE_REMOVE:
    if (guestfs_rm (G (gs), c->file) == -1)
      return gfail (gs, "cannot remove", c->file);
    return 0;

  case CHANGE_COPY:
    if (make_parent (gs, c->file) == -1)
      return -1;
    if (guestfs_cp (G (gs), c->source, c->file) == -1)
      return gfail (gs, "cannot copy to", c->file);
    return 0;

  case CHANGE_COMMAND: {
    char *what = xasprintf ("'%s' failed in '%s'", c->command,
                            guest_image (gs));
    char *out = guest_sh (gs, c->command, what);
    free (what);
    if (!out)
      return -1;
    free (out);
    sb_addf (log, "    ran: %s\n", c->command);
    return check_command (gs, c);
  }
  }
  return 0;
}

/* ---- commands side by side ----
 *
 * Under TCG a guest's initramfs rebuild takes a minute or more of one
 * vCPU while grub-mkconfig and grub-install, which neither read nor
 * write the initramfs, wait behind it.  The appliance has two vCPUs, so
 * a run of commands from different lanes goes into one shell script:
 * each lane runs its commands in plan order in the background, stops at
 * its first failure, and leaves every command's exit status and output
 * in a directory the script made; the script waits for all lanes. */

/* One past the last change of the run of lane commands starting at I
 * (I itself when there is no run of two lanes or more). */
static size_t
lane_run_end (const struct p2v_plan *plan, size_t i)
{
  size_t j = i;
  bool mixed = false;

  while (j < plan->n && plan->v[j].kind == CHANGE_COMMAND && plan->v[j].lane) {
    if (plan->v[j].lane != plan->v[i].lane)
      mixed = true;
    j++;
  }
  return mixed ? j : i;
}

static char *
lanes_script (const struct p2v_plan *plan, size_t from, size_t to)
{
  struct p2v_strbuf sb = { 0 };
  int lanes[8];
  size_t nlanes = 0;

  sb_add (&sb, "d=$(mktemp -d /tmp/p2v-inject.XXXXXX) || exit 1\n");
  for (size_t i = from; i < to; i++) {
    int lane = plan->v[i].lane;
    bool seen = false;
    for (size_t k = 0; k < nlanes; k++)
      seen |= lanes[k] == lane;
    if (seen || nlanes == ARRAY_SIZE (lanes))
      continue;
    lanes[nlanes++] = lane;
    sb_add (&sb, "(\n");
    for (size_t j = i; j < to; j++) {
      if (plan->v[j].lane != lane)
        continue;
      sb_addf (&sb, "(\n%s\n) </dev/null >\"$d/%zu.out\" 2>&1\n"
               "r=$?; echo $r >\"$d/%zu.rc\"; [ $r = 0 ] || exit 0\n",
               plan->v[j].command, j, j);
    }
    sb_add (&sb, ") &\n");
  }
  sb_add (&sb, "wait\necho \"$d\"\n");
  return sb_steal (&sb);
}

static int64_t
mtime_ns (struct p2v_guest *gs, const char *path)
{
  struct guestfs_statns *st = guestfs_statns (G (gs), path);
  int64_t t = -1;

  if (st) {
    t = st->st_mtime_sec * 1000000000 + st->st_mtime_nsec;
    guestfs_free_statns (st);
  }
  return t;
}

/* Runs changes FROM..TO side by side; returns the index of the first
 * that failed (in plan order), TO if none did, or -1 if the script
 * itself could not run. */
static long
apply_lanes (struct p2v_guest *gs, const struct p2v_plan *plan, size_t from,
             size_t to, struct p2v_strbuf *log)
{
  char *script = lanes_script (plan, from, to);
  char *what = xasprintf ("cannot run commands in '%s'", guest_image (gs));
  char *dir = guest_sh (gs, script, what);
  long failed = (long) to;
  int64_t start;

  free (script);
  free (what);
  if (!dir)
    return -1;
  dir[strcspn (dir, "\n")] = '\0';
  if (strncmp (dir, "/tmp/p2v-inject.", 16) != 0 || strchr (dir, '\'')) {
    p2v_error ("commands in '%s' left no results", guest_image (gs));
    free (dir);
    return -1;
  }
  start = mtime_ns (gs, dir);
  /* Every command's outcome goes to the log; the first failure (in plan
   * order) is the error. */
  for (size_t i = from; i < to; i++) {
    const struct p2v_change *c = &plan->v[i];
    char *path = xasprintf ("%s/%zu.rc", dir, i);
    char *rc = guest_is_file (gs, path) ? guest_read (gs, path) : NULL;
    /* Each exit status is written as its command ends. */
    int64_t end = rc ? mtime_ns (gs, path) : -1;
    char *took = start > 0 && end >= start
      ? xasprintf (" (ended %.0f s after the start)",
                   (double) (end - start) / 1e9) : xstrdup ("");

    free (path);
    if (rc && atoi (rc) == 0)
      sb_addf (log, "    ran: %s%s\n", c->command, took);
    else if (!rc) {
      /* Only a failure earlier in its lane (so earlier in the plan)
       * stops a command; a command that did not run otherwise is one. */
      sb_addf (log, "    not run: %s\n", c->command);
      if (failed == (long) to) {
        p2v_error ("'%s' did not run in '%s'", c->command, guest_image (gs));
        failed = (long) i;
      }
    }
    else {
      char *out;
      path = xasprintf ("%s/%zu.out", dir, i);
      out = guest_is_file (gs, path) ? guest_read (gs, path) : NULL;
      free (path);
      path = one_line (out && *out ? out : "no output");
      sb_addf (log, "    FAILED (exit %d%s): %s: %s\n", atoi (rc), took,
               c->command, path);
      if (failed == (long) to) {
        p2v_error ("'%s' failed in '%s': %s", c->command, guest_image (gs),
                   path);
        failed = (long) i;
      }
      free (path);
      free (out);
    }
    free (took);
    free (rc);
  }
  if (guestfs_rm_rf (G (gs), dir) == -1)
    p2v_warning ("cannot remove '%s' in the guest", dir);
  free (dir);
  return failed;
}

/* New files and files rewritten by commands carry no SELinux label. */
static void
relabel (struct p2v_guest *gs, const struct p2v_plan *plan)
{
  char *config = guest_read (gs, "/etc/selinux/config");
  char *type = NULL, *spec;
  size_t pos = 0, len;
  const char *line;
  bool enabled = false;
  char *groups[] = { (char *) "selinuxrelabel", NULL };

  if (!config)
    return;
  while (text_next_line (config, &pos, &line, &len)) {
    if (len > 8 && strncmp (line, "SELINUX=", 8) == 0)
      enabled = strncmp (line + 8, "disabled", 8) != 0;
    else if (len > 12 && strncmp (line, "SELINUXTYPE=", 12) == 0) {
      free (type);
      type = strndup (line + 12, len - 12);
    }
  }
  free (config);
  if (!enabled || !type || !is_safe_word (type)
      || guestfs_feature_available (G (gs), groups) <= 0) {
    free (type);
    return;
  }
  spec = xasprintf ("/etc/selinux/%s/contexts/files/file_contexts", type);
  for (size_t i = 0; i < plan->n; i++) {
    const struct p2v_change *c = &plan->v[i];
    if (c->kind == CHANGE_SHOWN || c->kind == CHANGE_REMOVE
        || c->file[0] != '/' || strncmp (c->file, "/dev/", 5) == 0
        || !guest_is_file (gs, c->file))
      continue;
    if (guestfs_selinux_relabel (G (gs), spec, c->file,
                                 GUESTFS_SELINUX_RELABEL_FORCE, 1, -1) == -1)
      p2v_warning ("cannot restore the SELinux label of '%s': %s", c->file,
                   guest_last_error (gs));
  }
  free (spec);
  free (type);
}

static void
log_change (struct p2v_strbuf *log, size_t i, const struct p2v_change *c)
{
  sb_addf (log, "  %zu. %s: %s -> %s (%s)\n", i + 1, c->file, c->before,
           c->after, c->why);
}

int
plan_apply (struct p2v_guest *gs, const struct p2v_plan *plan, bool quiet)
{
  struct p2v_strbuf log = { 0 };
  char stamp[64];
  time_t now = time (NULL);
  size_t applied = 0;
  int r = 0;

  strftime (stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", gmtime (&now));
  sb_addf (&log, "%s p2v %s inject: %zu changes\n", stamp, P2V_VERSION,
           plan->n);
  for (size_t i = 0; i < plan->notes.n; i++)
    sb_addf (&log, "  note: %s\n", plan->notes.v[i]);
  for (size_t i = 0; i < plan->n && r == 0; ) {
    size_t end = lane_run_end (plan, i);
    double t0 = now_seconds ();
    long failed;

    if (end == i) {             /* one change on its own */
      const struct p2v_change *c = &plan->v[i];
      if (!quiet) {
        report_print_change (stdout, i, c);
        fflush (stdout);
      }
      log_change (&log, i, c);
      if (apply_one (gs, c, &log) == -1) {
        sb_addf (&log, "    FAILED: %s\n", p2v_last_error ());
        r = -1;
        break;
      }
      applied++;
      if (!quiet && c->kind == CHANGE_COMMAND && now_seconds () - t0 >= 5)
        printf ("   (%.0f s)\n", now_seconds () - t0);
      i++;
      continue;
    }

    for (size_t j = i; j < end; j++) {
      const struct p2v_change *c = &plan->v[j];
      if (!quiet)
        report_print_change (stdout, j, c);
      log_change (&log, j, c);
      if (c->backup && backup (gs, c->file, &log) == -1) {
        sb_addf (&log, "    FAILED: %s\n", p2v_last_error ());
        r = -1;
        break;
      }
    }
    if (r == -1)
      break;
    if (!quiet) {
      printf ("   (changes %zu to %zu run side by side)\n", i + 1, end);
      fflush (stdout);
    }
    failed = apply_lanes (gs, plan, i, end, &log);
    for (size_t j = i; j < end && failed == (long) end; j++) {
      if (check_command (gs, &plan->v[j]) == -1)
        failed = (long) j;
    }
    if (failed != (long) end) {
      sb_addf (&log, "    FAILED: %s\n", p2v_last_error ());
      r = -1;
      break;
    }
    applied += end - i;
    if (!quiet && now_seconds () - t0 >= 5)
      printf ("   (%.0f s)\n", now_seconds () - t0);
    i = end;
  }
  if (r == 0)
    relabel (gs, plan);
  sb_addf (&log, "  %s: %zu of %zu changes applied\n",
           r == 0 ? "done" : "stopped", applied, plan->n);
  if (guestfs_write_append (G (gs), log_path, log.s, log.len) == -1) {
    if (r == 0)
      r = gfail (gs, "cannot write", log_path);
  }
  sb_free (&log);
  return r == 0 ? (int) applied : -1;
}
