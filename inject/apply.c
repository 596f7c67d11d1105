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
    if (c->check && !guest_sh_ok (gs, c->check))
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
  }
  return 0;
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
  for (size_t i = 0; i < plan->n; i++) {
    const struct p2v_change *c = &plan->v[i];
    double t0 = now_seconds ();
    if (!quiet) {
      report_print_change (stdout, i, c);
      fflush (stdout);
    }
    sb_addf (&log, "  %zu. %s: %s -> %s (%s)\n", i + 1, c->file, c->before,
             c->after, c->why);
    if (apply_one (gs, c, &log) == -1) {
      sb_addf (&log, "    FAILED: %s\n", p2v_last_error ());
      r = -1;
      break;
    }
    applied++;
    if (!quiet && c->kind == CHANGE_COMMAND && now_seconds () - t0 >= 5)
      printf ("   (%.0f s)\n", now_seconds () - t0);
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
