/* cmd-receive.c: `p2v receive DIR`: read a bundle tar stream on stdin
 * (what `p2v capture --to ssh://...` sends) and write the directory shape
 * atomically: into a temporary directory beside DIR, renamed when the
 * stream is complete and checked.  Only the names docs/bundle.md allows
 * are accepted, as plain files; nothing is ever written outside DIR. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "common.h"
#include "capture.h"

const char cmd_receive_help[] =
  "usage: p2v receive DIR\n"
  "\n"
  "Read a capture bundle as a tar stream (plain, gzip or zstd) on stdin\n"
  "and write it as the directory DIR, which must not exist (or be empty).\n"
  "The stream may hold only manifest.json, p2v-capture.log and diskN.qcow2,\n"
  "each once, as regular files; anything else is refused and nothing is\n"
  "left behind.  This is what `p2v capture --to ssh://HOST/DIR` runs on HOST.\n"
  "\n"
  "Exit status: 0 received, 2 error (no DIR left behind), 130 interrupted.\n";

#define MAX_DISKS 1000
#define MAX_MANIFEST (16u << 20)
#define MAX_LOG (256u << 20)
#define MAX_DISK_FILE (UINT64_C (1) << 50)

/* Index into the seen[] table for an allowed name, or -1. */
static int
allowed_name (const char *name, uint64_t *max_size)
{
  if (strcmp (name, "manifest.json") == 0) {
    *max_size = MAX_MANIFEST;
    return 0;
  }
  if (strcmp (name, "p2v-capture.log") == 0) {
    *max_size = MAX_LOG;
    return 1;
  }
  if (strncmp (name, "disk", 4) == 0) {
    const char *d = name + 4;
    size_t nd = strspn (d, "0123456789");
    long n;
    if (nd == 0 || nd > 3 || (nd > 1 && d[0] == '0') || strcmp (d + nd, ".qcow2") != 0)
      return -1;
    n = strtol (d, NULL, 10);
    *max_size = MAX_DISK_FILE;
    return 2 + (int) n;
  }
  return -1;
}

static void
remove_tree (const char *dir)
{
  static const char *const fixed[] = { "manifest.json", "p2v-capture.log" };
  char *p;

  /* We only ever create the allowed names, so only those can be there. */
  for (size_t i = 0; i < ARRAY_SIZE (fixed); i++) {
    p = xasprintf ("%s/%s", dir, fixed[i]);
    unlink (p);
    free (p);
  }
  for (int i = 0; i < MAX_DISKS; i++) {
    p = xasprintf ("%s/disk%d.qcow2", dir, i);
    unlink (p);
    free (p);
  }
  rmdir (dir);
}

static int
receive_entry (struct archive *a, struct archive_entry *e, int dirfd,
               const char *name, uint64_t max_size)
{
  int fd = openat (dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  uint64_t written_end = 0;
  int r = -1;

  if (fd == -1)
    return p2v_error ("cannot create '%s': %m", name);
  for (;;) {
    const void *buf;
    size_t len;
    la_int64_t off;
    int s = archive_read_data_block (a, &buf, &len, &off);

    if (s == ARCHIVE_EOF)
      break;
    if (s != ARCHIVE_OK) {
      p2v_error ("cannot read '%s' from the stream: %s", name, archive_error_string (a));
      goto out;
    }
    if (off < 0 || (uint64_t) off > max_size || len > max_size - (uint64_t) off) {
      p2v_error ("'%s' in the stream is larger than allowed", name);
      goto out;
    }
    if (full_pwrite (fd, buf, len, off) == -1) {
      p2v_error ("cannot write '%s': %m", name);
      goto out;
    }
    written_end = P2V_MAX (written_end, (uint64_t) off + len);
  }
  /* Sparse entries may end in a hole: the file still has its full size. */
  if (archive_entry_size_is_set (e)
      && ftruncate (fd, archive_entry_size (e)) == -1) {
    p2v_error ("cannot size '%s': %m", name);
    goto out;
  }
  (void) written_end;
  if (fsync (fd) == -1) {
    p2v_error ("cannot flush '%s': %m", name);
    goto out;
  }
  r = 0;
 out:
  close (fd);
  return r;
}

/* The manifest must be ours and name only disks that arrived. */
static int
check_manifest (const char *dir, const bool *seen)
{
  char *path = xasprintf ("%s/manifest.json", dir);
  json_object *m = json_object_from_file (path), *v, *disks;
  int r = -1;

  free (path);
  if (!m)
    return p2v_error ("the stream's manifest.json is not valid JSON: %s",
                      json_util_get_last_err ());
  if (!json_object_object_get_ex (m, "version", &v) || json_object_get_int (v) != 1
      || !json_object_object_get_ex (m, "disks", &disks)
      || !json_object_is_type (disks, json_type_array)) {
    p2v_error ("the stream's manifest.json is not a version 1 p2v bundle manifest");
    goto out;
  }
  for (size_t i = 0; i < json_object_array_length (disks); i++) {
    json_object *d = json_object_array_get_idx (disks, i), *f;
    uint64_t max;
    int idx;
    if (!json_object_object_get_ex (d, "file", &f)
        || (idx = allowed_name (json_object_get_string (f), &max)) < 2) {
      p2v_error ("the stream's manifest.json names a bad disk file");
      goto out;
    }
    if (!seen[idx]) {
      p2v_error ("the stream lacks '%s', which its manifest names",
                 json_object_get_string (f));
      goto out;
    }
  }
  r = 0;
 out:
  json_object_put (m);
  return r;
}

int
cmd_receive (int argc, char **argv)
{
  const char *dir;
  char *tmp = NULL, *slash;
  struct archive *a = NULL;
  struct archive_entry *e;
  bool seen[2 + MAX_DISKS] = { false };
  bool removed_empty = false;
  int dirfd = -1, ret = P2V_EXIT_ERROR;
  struct stat st;

  if (argc == 2 && (strcmp (argv[1], "--help") == 0 || strcmp (argv[1], "-h") == 0)) {
    fputs (cmd_receive_help, stdout);
    return P2V_EXIT_OK;
  }
  if (argc != 2 || argv[1][0] == '-' || !argv[1][0]) {
    p2v_error ("usage: p2v receive DIR");
    return P2V_EXIT_ERROR;
  }
  dir = argv[1];
  if (isatty (STDIN_FILENO)) {
    p2v_error ("refusing to read a tar stream from a terminal");
    return P2V_EXIT_ERROR;
  }
  if (stat (dir, &st) == 0) {
    char *m = xasprintf ("%s/manifest.json", dir);
    bool finished = access (m, F_OK) == 0;
    free (m);
    if (!S_ISDIR (st.st_mode) || finished || rmdir (dir) == -1) {
      /* rmdir only succeeds on an empty directory: we put it back later. */
      p2v_error ("'%s' already exists and is not an empty directory", dir);
      return P2V_EXIT_ERROR;
    }
    removed_empty = true;
  }
  slash = strrchr (dir, '/');
  tmp = slash ? xasprintf ("%.*s/.%s.p2v-receive.%d", (int) (slash - dir), dir,
                           slash + 1, (int) getpid ())
    : xasprintf (".%s.p2v-receive.%d", dir, (int) getpid ());
  if (mkdir (tmp, 0755) == -1) {
    p2v_error ("cannot create '%s': %m", tmp);
    if (removed_empty)
      mkdir (dir, 0755);
    free (tmp);
    return P2V_EXIT_ERROR;
  }
  dirfd = open (tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dirfd == -1) {
    p2v_error ("cannot open '%s': %m", tmp);
    goto out;
  }

  a = archive_read_new ();
  archive_read_support_format_tar (a);
  archive_read_support_filter_none (a);
  archive_read_support_filter_gzip (a);
  archive_read_support_filter_zstd (a);
  if (archive_read_open_fd (a, STDIN_FILENO, 1 << 20) != ARCHIVE_OK) {
    p2v_error ("cannot read a tar stream on stdin: %s", archive_error_string (a));
    goto out;
  }
  for (;;) {
    int s = archive_read_next_header (a, &e);
    const char *name;
    uint64_t max;
    int idx;

    if (s == ARCHIVE_EOF)
      break;
    if (s != ARCHIVE_OK) {
      p2v_error ("bad tar stream on stdin: %s", archive_error_string (a));
      goto out;
    }
    name = archive_entry_pathname (e);
    if (!name || (idx = allowed_name (name, &max)) < 0) {
      p2v_error ("refusing '%s' in the stream: a bundle holds only manifest.json, "
                 "p2v-capture.log and diskN.qcow2", name ? name : "(no name)");
      goto out;
    }
    if (archive_entry_filetype (e) != AE_IFREG || archive_entry_hardlink (e)
        || archive_entry_symlink (e)) {
      p2v_error ("refusing '%s' in the stream: not a regular file", name);
      goto out;
    }
    if (seen[idx]) {
      p2v_error ("refusing '%s' in the stream: it comes twice", name);
      goto out;
    }
    if (!archive_entry_size_is_set (e) || archive_entry_size (e) < 0
        || (uint64_t) archive_entry_size (e) > max) {
      p2v_error ("refusing '%s' in the stream: its size is missing or too large", name);
      goto out;
    }
    seen[idx] = true;
    if (receive_entry (a, e, dirfd, name, max) == -1)
      goto out;
  }
  if (!seen[0]) {
    p2v_error ("the stream ended without manifest.json: the capture is incomplete");
    goto out;
  }
  if (check_manifest (tmp, seen) == -1)
    goto out;
  if (fsync (dirfd) == -1) {
    p2v_error ("cannot flush '%s': %m", tmp);
    goto out;
  }
  if (rename (tmp, dir) == -1) {
    p2v_error ("cannot rename '%s' to '%s': %m", tmp, dir);
    goto out;
  }
  ret = P2V_EXIT_OK;
 out:
  if (a)
    archive_read_free (a);
  if (dirfd >= 0)
    close (dirfd);
  if (ret != P2V_EXIT_OK) {
    remove_tree (tmp);
    if (removed_empty)
      mkdir (dir, 0755);        /* leave DIR as we found it */
  }
  free (tmp);
  return ret;
}
