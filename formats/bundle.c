/* bundle.c: reading a p2v capture bundle (docs/bundle.md): its manifest
 * (json-c, every field checked before use), its entry list when it is a
 * tar (libarchive), and its disks as read-only qcow2 images, read in
 * place inside the tar through the qcow2 driver's window open. */
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
#include <json.h>

#include "common.h"
#include "digest.h"
#include "format.h"
#include "bundle.h"

/* Sizes beyond this are nonsense for a disk (qcow2's own limit). */
#define MAX_DISK_SIZE (UINT64_C (1) << 61)
#define MAX_MEMORY_BYTES (UINT64_C (1) << 50)  /* 1 PiB */
#define MAX_VCPUS 4096
#define MAX_TEXT 256            /* hostname, NIC and disk names */

void
bundle_free (struct p2v_bundle *b)
{
  if (!b)
    return;
  for (size_t i = 0; i < b->n_nics; i++) {
    free (b->nics[i].name);
    free (b->nics[i].mac);
  }
  for (size_t i = 0; i < b->n_disks; i++) {
    free (b->disks[i].file);
    free (b->disks[i].name);
    free (b->disks[i].digest_algorithm);
    free (b->disks[i].digest);
  }
  free (b->nics);
  free (b->disks);
  free (b->hostname);
  free (b->path);
  free (b);
}

/* "diskN.qcow2" with N a decimal number without leading zeros, below
 * P2V_BUNDLE_MAX_DISKS; its N in *index. */
static bool
disk_file_name_ok (const char *s, unsigned *index)
{
  unsigned n = 0;
  const char *p;

  if (strncmp (s, "disk", 4) != 0)
    return false;
  p = s + 4;
  if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] >= '0' && p[1] <= '9'))
    return false;
  for (; *p >= '0' && *p <= '9'; p++) {
    n = n * 10 + (*p - '0');
    if (n >= P2V_BUNDLE_MAX_DISKS)
      return false;
  }
  if (strcmp (p, ".qcow2") != 0)
    return false;
  if (index)
    *index = n;
  return true;
}

/* A MAC "xx:xx:xx:xx:xx:xx" (either case), lowercased into out. */
bool
bundle_mac_parse (const char *s, char out[18])
{
  static const char hex[] = "0123456789abcdef";

  if (strlen (s) != 17)
    return false;
  for (int i = 0; i < 17; i++) {
    char c = s[i];
    if (i % 3 == 2) {
      if (c != ':')
        return false;
      out[i] = ':';
      continue;
    }
    if (c >= 'A' && c <= 'F')
      c = c - 'A' + 'a';
    if (!strchr (hex, c) || c == '\0')
      return false;
    out[i] = c;
  }
  out[17] = '\0';
  return true;
}

/* Printable text without control characters, for names that end up in
 * messages and XML. */
static bool
text_ok (const char *s)
{
  size_t n = strlen (s);

  if (n == 0 || n > MAX_TEXT)
    return false;
  for (; *s; s++)
    if ((unsigned char) *s < 0x20 || *s == 0x7f)
      return false;
  return true;
}

/* The manifest checks share this: they report one line naming the file
 * and the key at fault. */
struct manifest_ctx {
  const char *where;
};

static int
bad (const struct manifest_ctx *m, const char *key, const char *why)
{
  return p2v_error ("invalid bundle manifest '%s': %s %s", m->where, key, why);
}

/* Optional string member: 0 absent (*out NULL), 1 present, -1 wrong type. */
static int
get_string (const struct manifest_ctx *m, json_object *o, const char *key,
            const char *label, const char **out)
{
  json_object *v;

  *out = NULL;
  if (!json_object_object_get_ex (o, key, &v) || json_object_is_type (v, json_type_null))
    return 0;
  if (!json_object_is_type (v, json_type_string))
    return bad (m, label, "is not a string");
  *out = json_object_get_string (v);
  if (strlen (*out) != (size_t) json_object_get_string_len (v))
    return bad (m, label, "contains a NUL byte");
  return 1;
}

/* Optional integer member in [min, max]: 0 absent, 1 present, -1 bad. */
static int
get_uint (const struct manifest_ctx *m, json_object *o, const char *key,
          const char *label, uint64_t min, uint64_t max, uint64_t *out)
{
  json_object *v;
  int64_t i;

  if (!json_object_object_get_ex (o, key, &v) || json_object_is_type (v, json_type_null))
    return 0;
  if (!json_object_is_type (v, json_type_int))
    return bad (m, label, "is not an integer");
  errno = 0;
  i = json_object_get_int64 (v);
  /* json-c clamps out-of-range numbers to INT64_MIN/MAX and sets errno. */
  if (errno == ERANGE || i < 0 || (uint64_t) i < min || (uint64_t) i > max) {
    char why[96];
    snprintf (why, sizeof why, "is out of range (%" PRIu64 " to %" PRIu64 ")",
              min, max);
    return bad (m, label, why);
  }
  *out = i;
  return 1;
}

static int
parse_nics (const struct manifest_ctx *m, json_object *root,
            struct p2v_bundle *b)
{
  json_object *arr;
  size_t n;

  if (!json_object_object_get_ex (root, "nics", &arr)
      || json_object_is_type (arr, json_type_null))
    return 0;
  if (!json_object_is_type (arr, json_type_array))
    return bad (m, "nics", "is not an array");
  n = json_object_array_length (arr);
  if (n > P2V_BUNDLE_MAX_NICS)
    return bad (m, "nics", "has too many entries");
  b->nics = xcalloc (n ? n : 1, sizeof *b->nics);
  for (size_t i = 0; i < n; i++) {
    json_object *o = json_object_array_get_idx (arr, i);
    const char *name, *mac;
    char label[64], norm[18];
    int r;

    snprintf (label, sizeof label, "nics[%zu]", i);
    if (!json_object_is_type (o, json_type_object))
      return bad (m, label, "is not an object");
    snprintf (label, sizeof label, "nics[%zu].name", i);
    if (get_string (m, o, "name", label, &name) == -1)
      return -1;
    if (name && !text_ok (name))
      return bad (m, label, "is empty, too long or has control characters");
    snprintf (label, sizeof label, "nics[%zu].mac", i);
    if ((r = get_string (m, o, "mac", label, &mac)) == -1)
      return -1;
    if (r == 0)
      return bad (m, label, "is missing");
    if (!bundle_mac_parse (mac, norm))
      return bad (m, label, "is not a MAC address (xx:xx:xx:xx:xx:xx)");
    /* Such NICs cannot be given to a VM; the rest still can. */
    if (strcmp (norm, "00:00:00:00:00:00") == 0
        || (strtoul (norm, NULL, 16) & 1)) {
      p2v_warning ("bundle manifest '%s': %s '%s' is not a unicast address: "
                   "that NIC is left out", m->where, label, mac);
      continue;
    }
    for (size_t j = 0; j < b->n_nics; j++)
      if (strcmp (b->nics[j].mac, norm) == 0)
        return bad (m, label, "repeats the MAC of an earlier NIC");
    b->nics[b->n_nics].name = name ? xstrdup (name) : NULL;
    b->nics[b->n_nics].mac = xstrdup (norm);
    b->n_nics++;
  }
  return 0;
}

static int
parse_digest (const struct manifest_ctx *m, json_object *o, size_t i,
              struct p2v_bundle_disk *d)
{
  json_object *dg;
  const char *alg, *value;
  char label[64];

  if (!json_object_object_get_ex (o, "digest", &dg)
      || json_object_is_type (dg, json_type_null))
    return 0;
  snprintf (label, sizeof label, "disks[%zu].digest", i);
  if (!json_object_is_type (dg, json_type_object))
    return bad (m, label, "is not an object");
  snprintf (label, sizeof label, "disks[%zu].digest.algorithm", i);
  switch (get_string (m, dg, "algorithm", label, &alg)) {
  case -1: return -1;
  case 0: return bad (m, label, "is missing");
  }
  if (!text_ok (alg))
    return bad (m, label, "is empty, too long or has control characters");
  snprintf (label, sizeof label, "disks[%zu].digest.value", i);
  switch (get_string (m, dg, "value", label, &value)) {
  case -1: return -1;
  case 0: return bad (m, label, "is missing");
  }
  if (strcmp (alg, P2V_DIGEST_ALGORITHM) == 0) {
    if (strlen (value) != P2V_DIGEST_HEX_LEN
        || strspn (value, "0123456789abcdefABCDEF") != P2V_DIGEST_HEX_LEN)
      return bad (m, label, "is not 64 hexadecimal digits");
  }
  else if (!text_ok (value))
    return bad (m, label, "is empty, too long or has control characters");
  d->digest_algorithm = xstrdup (alg);
  d->digest = xstrdup (value);
  for (char *p = d->digest; *p; p++)
    if (*p >= 'A' && *p <= 'F')
      *p = *p - 'A' + 'a';
  return 0;
}

static int
parse_disks (const struct manifest_ctx *m, json_object *root,
             struct p2v_bundle *b)
{
  json_object *arr;
  size_t n;

  if (!json_object_object_get_ex (root, "disks", &arr))
    return bad (m, "disks", "is missing");
  if (!json_object_is_type (arr, json_type_array))
    return bad (m, "disks", "is not an array");
  n = json_object_array_length (arr);
  if (n == 0)
    return bad (m, "disks", "is empty");
  if (n > P2V_BUNDLE_MAX_DISKS)
    return bad (m, "disks", "has too many entries");
  b->disks = xcalloc (n, sizeof *b->disks);
  for (size_t i = 0; i < n; i++) {
    json_object *o = json_object_array_get_idx (arr, i);
    struct p2v_bundle_disk *d = &b->disks[i];
    const char *file, *name;
    char label[64];
    unsigned index;

    b->n_disks = i + 1;         /* so bundle_free frees what is set */
    snprintf (label, sizeof label, "disks[%zu]", i);
    if (!json_object_is_type (o, json_type_object))
      return bad (m, label, "is not an object");
    snprintf (label, sizeof label, "disks[%zu].file", i);
    switch (get_string (m, o, "file", label, &file)) {
    case -1: return -1;
    case 0: return bad (m, label, "is missing");
    }
    if (!disk_file_name_ok (file, &index)) {
      /* Never echo a hostile name raw: it may hold anything. */
      return bad (m, label, text_ok (file) && !strchr (file, '\'')
                  ? "is not a disk file name (diskN.qcow2)"
                  : "is not a disk file name (diskN.qcow2) and not printable");
    }
    for (size_t j = 0; j < i; j++)
      if (strcmp (b->disks[j].file, file) == 0)
        return bad (m, label, "names the same file as an earlier disk");
    d->file = xstrdup (file);
    snprintf (label, sizeof label, "disks[%zu].size", i);
    switch (get_uint (m, o, "size", label, 1, MAX_DISK_SIZE, &d->size)) {
    case -1: return -1;
    case 0: return bad (m, label, "is missing");
    }
    snprintf (label, sizeof label, "disks[%zu].name", i);
    if (get_string (m, o, "name", label, &name) == -1)
      return -1;
    if (name && !text_ok (name))
      return bad (m, label, "is empty, too long or has control characters");
    d->name = name ? xstrdup (name) : NULL;
    if (parse_digest (m, o, i, d) == -1)
      return -1;
  }
  return 0;
}

static int
parse_root (const struct manifest_ctx *m, json_object *root,
            struct p2v_bundle *b)
{
  json_object *v;
  const char *s;
  uint64_t u;
  int r;

  if (!json_object_is_type (root, json_type_object))
    return p2v_error ("invalid bundle manifest '%s': it is not a JSON object",
                      m->where);
  if ((r = get_string (m, root, "format", "format", &s)) == -1)
    return -1;
  if (r == 1 && strcmp (s, P2V_BUNDLE_FORMAT) != 0)
    return bad (m, "format", "is not \"" P2V_BUNDLE_FORMAT "\"");

  if (!json_object_object_get_ex (root, "version", &v))
    return bad (m, "version", "is missing");
  if (!json_object_is_type (v, json_type_int))
    return bad (m, "version", "is not an integer");
  if (json_object_get_int64 (v) != P2V_BUNDLE_VERSION)
    return p2v_error ("bundle manifest '%s' has version %" PRId64 ", but this "
                      "p2v reads only version %d", m->where,
                      json_object_get_int64 (v), P2V_BUNDLE_VERSION);

  if (json_object_object_get_ex (root, "complete", &v)
      && !json_object_is_type (v, json_type_null)) {
    if (!json_object_is_type (v, json_type_boolean))
      return bad (m, "complete", "is not true or false");
    if (!json_object_get_boolean (v))
      return p2v_error ("bundle manifest '%s' says the capture is not "
                        "complete", m->where);
  }

  if (get_string (m, root, "hostname", "hostname", &s) == -1)
    return -1;
  if (s && !text_ok (s))
    return bad (m, "hostname", "is empty, too long or has control characters");
  b->hostname = s ? xstrdup (s) : NULL;

  if ((r = get_string (m, root, "firmware", "firmware", &s)) == -1)
    return -1;
  if (r == 1) {
    if (strcmp (s, "uefi") == 0)
      b->uefi = true;
    else if (strcmp (s, "bios") != 0)
      return bad (m, "firmware", "is not \"bios\" or \"uefi\"");
    b->firmware_known = true;
  }

  if (json_object_object_get_ex (root, "cpu", &v)
      && !json_object_is_type (v, json_type_null)) {
    if (!json_object_is_type (v, json_type_object))
      return bad (m, "cpu", "is not an object");
    if ((r = get_uint (m, v, "count", "cpu.count", 1, MAX_VCPUS, &u)) == -1)
      return -1;
    if (r == 1)
      b->vcpus = u;
  }
  if ((r = get_uint (m, root, "memory_bytes", "memory_bytes", 1,
                     MAX_MEMORY_BYTES, &u)) == -1)
    return -1;
  if (r == 1)
    b->memory_bytes = u;

  if (parse_nics (m, root, b) == -1 || parse_disks (m, root, b) == -1)
    return -1;
  return 0;
}

struct p2v_bundle *
bundle_parse_manifest (const char *json, size_t len, const char *where)
{
  struct manifest_ctx m = { .where = where };
  struct p2v_bundle *b = NULL;
  json_tokener *tok = NULL;
  json_object *root = NULL;
  size_t end;

  if (len > P2V_BUNDLE_MAX_MANIFEST) {
    p2v_error ("bundle manifest '%s' is too large (%zu bytes, at most %u)",
               where, len, P2V_BUNDLE_MAX_MANIFEST);
    goto out;
  }
  if (memchr (json, '\0', len)) {
    p2v_error ("cannot parse bundle manifest '%s': it contains a NUL byte",
               where);
    goto out;
  }
  tok = json_tokener_new_ex (32);
  if (!tok) {
    p2v_error ("cannot parse bundle manifest '%s': out of memory", where);
    goto out;
  }
  json_tokener_set_flags (tok, JSON_TOKENER_STRICT);
  root = json_tokener_parse_ex (tok, json, (int) len);
  if (!root || json_tokener_get_error (tok) != json_tokener_success) {
    enum json_tokener_error e = json_tokener_get_error (tok);
    p2v_error ("cannot parse bundle manifest '%s': %s", where,
               e == json_tokener_continue ? "unexpected end of data"
               : json_tokener_error_desc (e));
    goto out;
  }
  for (end = json_tokener_get_parse_end (tok); end < len; end++)
    if (!strchr (" \t\r\n", json[end])) {
      p2v_error ("cannot parse bundle manifest '%s': data after the JSON "
                 "object", where);
      goto out;
    }

  b = xcalloc (1, sizeof *b);
  if (parse_root (&m, root, b) == -1) {
    bundle_free (b);
    b = NULL;
  }

 out:
  json_object_put (root);
  if (tok)
    json_tokener_free (tok);
  return b;
}

/* Read a small regular file whole (the manifest of a directory bundle). */
static char *
read_small_file (const char *path, size_t max, size_t *len)
{
  struct stat st;
  char *buf = NULL;
  int fd = open (path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

  if (fd == -1 && errno == ELOOP)
    return p2v_error_null ("'%s' is a symbolic link, which a bundle may not "
                           "hold", path);
  if (fd == -1)
    return p2v_error_null ("cannot open '%s': %m", path);
  if (fstat (fd, &st) == -1) {
    p2v_error ("cannot stat '%s': %m", path);
    goto err;
  }
  if (!S_ISREG (st.st_mode)) {
    p2v_error ("'%s' is not a regular file", path);
    goto err;
  }
  if ((uint64_t) st.st_size > max) {
    p2v_error ("'%s' is too large (%" PRIu64 " bytes, at most %zu)", path,
               (uint64_t) st.st_size, max);
    goto err;
  }
  buf = xmalloc (st.st_size + 1);
  if (full_pread (fd, buf, st.st_size, 0) == -1) {
    p2v_error ("cannot read '%s': %m", path);
    goto err;
  }
  *len = st.st_size;
  close (fd);
  return buf;

 err:
  free (buf);
  close (fd);
  return NULL;
}

static struct p2v_bundle *
open_directory (const char *dir)
{
  CLEANUP_FREE char *mpath = xasprintf ("%s/%s", dir, P2V_BUNDLE_MANIFEST);
  CLEANUP_FREE char *json = NULL;
  struct p2v_bundle *b;
  struct stat st;
  size_t len = 0;

  if (lstat (mpath, &st) == -1) {
    if (errno == ENOENT)
      return p2v_error_null ("'%s' is not a finished bundle: it has no %s",
                             dir, P2V_BUNDLE_MANIFEST);
    return p2v_error_null ("cannot stat '%s': %m", mpath);
  }
  json = read_small_file (mpath, P2V_BUNDLE_MAX_MANIFEST, &len);
  if (!json)
    return NULL;
  b = bundle_parse_manifest (json, len, mpath);
  if (!b)
    return NULL;
  b->path = xstrdup (dir);
  for (size_t i = 0; i < b->n_disks; i++) {
    CLEANUP_FREE char *p = xasprintf ("%s/%s", dir, b->disks[i].file);
    if (lstat (p, &st) == -1) {
      if (errno == ENOENT)
        p2v_error ("bundle '%s' is missing the disk file '%s' its manifest "
                   "lists", dir, b->disks[i].file);
      else
        p2v_error ("cannot stat '%s': %m", p);
      goto err;
    }
    if (!S_ISREG (st.st_mode)) {
      p2v_error ("disk file '%s' of bundle '%s' is not a regular file",
                 b->disks[i].file, dir);
      goto err;
    }
  }
  return b;

 err:
  bundle_free (b);
  return NULL;
}

/* What a tar walk found: the manifest's bytes and each disk entry. */
struct tar_entry {
  char *name;
  uint64_t offset, length;
};

static void
tar_entries_free (struct tar_entry *v, size_t n)
{
  for (size_t i = 0; i < n; i++)
    free (v[i].name);
  free (v);
}

/* Compressed tars cannot be read in place: say so instead of letting
 * libarchive call them "unrecognized". */
static const char *
compression_name (const uint8_t *buf, size_t len)
{
  if (len >= 2 && buf[0] == 0x1f && buf[1] == 0x8b)
    return "gzip";
  if (len >= 6 && memcmp (buf, "\xfd" "7zXZ\0", 6) == 0)
    return "xz";
  if (len >= 4 && memcmp (buf, "\x28\xb5\x2f\xfd", 4) == 0)
    return "zstd";
  if (len >= 3 && memcmp (buf, "BZh", 3) == 0)
    return "bzip2";
  return NULL;
}

/* Walk the tar's headers (data is skipped with seeks, not read, except
 * the manifest's) and check each entry against the bundle contract. */
static struct p2v_bundle *
open_tar (const char *path, uint64_t file_size)
{
  struct archive *a = archive_read_new ();
  struct archive_entry *e;
  struct tar_entry *entries = NULL;
  size_t n_entries = 0;
  char *manifest = NULL;
  size_t manifest_len = 0;
  bool have_manifest = false;
  struct p2v_bundle *b = NULL;
  char *where = NULL;
  int r;

  if (!a)
    return p2v_error_null ("cannot read '%s': libarchive: out of memory", path);
  archive_read_support_format_tar (a);
  if (archive_read_open_filename (a, path, 64 * 1024) != ARCHIVE_OK) {
    p2v_error ("cannot read tar '%s': %s", path, archive_error_string (a));
    goto out;
  }

  while ((r = archive_read_next_header (a, &e)) == ARCHIVE_OK) {
    const char *name = archive_entry_pathname (e);
    uint64_t offset = archive_filter_bytes (a, 0);
    int64_t size = archive_entry_size (e);
    bool is_disk, is_manifest, is_log;

    if (!name || !*name) {
      p2v_error ("tar '%s' has an entry without a name", path);
      goto out;
    }
    is_disk = disk_file_name_ok (name, NULL);
    is_manifest = strcmp (name, P2V_BUNDLE_MANIFEST) == 0;
    is_log = strcmp (name, P2V_BUNDLE_LOG) == 0;
    if (!is_disk && !is_manifest && !is_log) {
      bool printable = text_ok (name) && !strchr (name, '\'');
      p2v_error ("tar '%s' has an entry %s%s%s that is not part of a bundle "
                 "(only %s, %s and diskN.qcow2 are)", path,
                 printable ? "'" : "", printable ? name : "with an unprintable name",
                 printable ? "'" : "", P2V_BUNDLE_MANIFEST, P2V_BUNDLE_LOG);
      goto out;
    }
    if (archive_entry_filetype (e) != AE_IFREG || archive_entry_hardlink (e)
        || archive_entry_symlink (e)) {
      p2v_error ("tar '%s': entry '%s' is not a regular file (links and "
                 "special files are refused)", path, name);
      goto out;
    }
    if (archive_entry_sparse_count (e) > 0) {
      p2v_error ("tar '%s': entry '%s' is a sparse tar entry, which cannot "
                 "be read in place", path, name);
      goto out;
    }
    if (!archive_entry_size_is_set (e) || size < 0) {
      p2v_error ("tar '%s': entry '%s' has no size", path, name);
      goto out;
    }
    for (size_t i = 0; i < n_entries; i++)
      if (strcmp (entries[i].name, name) == 0) {
        p2v_error ("tar '%s' has entry '%s' twice", path, name);
        goto out;
      }
    if (offset % 512 != 0 || offset > file_size
        || (uint64_t) size > file_size - offset) {
      p2v_error ("tar '%s': entry '%s' (%" PRId64 " bytes at offset %" PRIu64
                 ") is beyond the end of the file (%" PRIu64 " bytes)",
                 path, name, size, offset, file_size);
      goto out;
    }
    entries = xrealloc (entries, (n_entries + 1) * sizeof *entries);
    entries[n_entries].name = xstrdup (name);
    entries[n_entries].offset = offset;
    entries[n_entries].length = size;
    n_entries++;

    if (is_manifest) {
      ssize_t got;
      if ((uint64_t) size > P2V_BUNDLE_MAX_MANIFEST) {
        p2v_error ("tar '%s': %s is too large (%" PRId64 " bytes, at most %u)",
                   path, name, size, P2V_BUNDLE_MAX_MANIFEST);
        goto out;
      }
      manifest = xmalloc (size + 1);
      manifest_len = 0;
      while ((got = archive_read_data (a, manifest + manifest_len,
                                       size - manifest_len)) > 0)
        manifest_len += got;
      if (got < 0 || manifest_len != (size_t) size) {
        p2v_error ("cannot read %s from tar '%s': %s", name, path,
                   got < 0 ? archive_error_string (a) : "entry is truncated");
        goto out;
      }
      have_manifest = true;
    }
    if (n_entries > 2 + P2V_BUNDLE_MAX_DISKS) {
      p2v_error ("tar '%s' has too many entries for a bundle", path);
      goto out;
    }
  }
  if (r != ARCHIVE_EOF) {
    p2v_error ("cannot read tar '%s': %s", path,
               archive_error_string (a) ? archive_error_string (a)
               : "bad tar header");
    goto out;
  }
  if (!have_manifest) {
    p2v_error ("'%s' is not a finished bundle: the tar has no %s", path,
               P2V_BUNDLE_MANIFEST);
    goto out;
  }

  where = xasprintf ("%s:%s", path, P2V_BUNDLE_MANIFEST);
  b = bundle_parse_manifest (manifest, manifest_len, where);
  if (!b)
    goto out;
  b->path = xstrdup (path);
  b->is_tar = true;
  for (size_t i = 0; i < b->n_disks; i++) {
    struct p2v_bundle_disk *d = &b->disks[i];
    for (size_t j = 0; j < n_entries; j++)
      if (strcmp (entries[j].name, d->file) == 0) {
        d->in_tar = true;
        d->tar_offset = entries[j].offset;
        d->tar_length = entries[j].length;
      }
    if (!d->in_tar) {
      p2v_error ("bundle '%s' is missing the disk file '%s' its manifest "
                 "lists", path, d->file);
      bundle_free (b);
      b = NULL;
      goto out;
    }
  }

 out:
  archive_read_free (a);
  tar_entries_free (entries, n_entries);
  free (manifest);
  free (where);
  return b;
}

bool
bundle_detect (const char *path)
{
  struct stat st;
  uint8_t buf[512];
  bool r = false;
  int fd;

  if (stat (path, &st) == -1)
    return false;
  if (S_ISDIR (st.st_mode))
    return true;
  if (!S_ISREG (st.st_mode) || st.st_size < 512)
    return false;
  fd = open (path, O_RDONLY | O_CLOEXEC);
  if (fd == -1)
    return false;
  /* ustar and pax headers both carry "ustar" at 257; GNU tar's "ustar  ".
   * A compressed file is no disk image either: bundle_open explains. */
  if (full_pread (fd, buf, sizeof buf, 0) == 0)
    r = memcmp (buf + 257, "ustar", 5) == 0 || compression_name (buf, sizeof buf);
  close (fd);
  return r;
}

struct p2v_bundle *
bundle_open (const char *path)
{
  struct stat st;

  if (stat (path, &st) == -1)
    return p2v_error_null ("cannot open bundle '%s': %m", path);
  if (S_ISDIR (st.st_mode))
    return open_directory (path);
  if (S_ISREG (st.st_mode)) {
    uint8_t buf[8];
    ssize_t n;
    const char *comp;
    int fd = open (path, O_RDONLY | O_CLOEXEC);

    if (fd == -1)
      return p2v_error_null ("cannot open bundle '%s': %m", path);
    n = pread (fd, buf, sizeof buf, 0);
    close (fd);
    if (n > 0 && (comp = compression_name (buf, n)))
      return p2v_error_null ("bundle '%s' is a %s-compressed tar, which cannot "
                             "be read in place: decompress it first",
                             path, comp);
    return open_tar (path, st.st_size);
  }
  return p2v_error_null ("bundle '%s' is neither a directory nor a tar file",
                         path);
}

struct p2v_image *
bundle_open_disk (const struct p2v_bundle *b, size_t i)
{
  const struct p2v_bundle_disk *d;
  struct p2v_image *img;

  if (i >= b->n_disks)
    return p2v_error_null ("bundle '%s' has no disk %zu", b->path, i);
  d = &b->disks[i];
  if (d->in_tar) {
    CLEANUP_FREE char *name = xasprintf ("%s:%s", b->path, d->file);
    img = image_open_window (b->path, "qcow2", d->tar_offset, d->tar_length,
                             name);
  }
  else {
    CLEANUP_FREE char *p = xasprintf ("%s/%s", b->path, d->file);
    img = image_open (p, "qcow2", P2V_OPEN_READONLY);
  }
  if (!img)
    return NULL;
  if (img->size != d->size) {
    p2v_error ("'%s' has a virtual size of %" PRIu64 " bytes, but the bundle "
               "manifest says %" PRIu64, img->path, img->size, d->size);
    image_close (img);
    return NULL;
  }
  return img;
}

int
image_content_digest (struct p2v_image *img, char hex[65], uint64_t *bytes_read)
{
  const size_t chunk = 1024 * 1024;
  struct p2v_digest *dg = digest_new ();
  uint8_t *buf = NULL;
  uint64_t offset = 0, nread = 0;
  int r = -1;

  if (!dg)
    return -1;
  buf = xmalloc (chunk);
  while (offset < img->size) {
    uint64_t pnum;
    unsigned flags;

    if (image_block_status (img, offset, img->size - offset, &pnum, &flags) == -1)
      goto out;
    if (!(flags & P2V_STATUS_ZERO)) {
      for (uint64_t done = 0; done < pnum; ) {
        size_t n = P2V_MIN (chunk, pnum - done);
        if (image_pread (img, buf, n, offset + done) == -1
            || digest_feed (dg, offset + done, buf, n) == -1)
          goto out;
        done += n;
        nread += n;
      }
    }
    offset += pnum;
  }
  if (digest_final (dg, hex) == -1)
    goto out;
  if (bytes_read)
    *bytes_read = nread;
  r = 0;

 out:
  free (buf);
  digest_free (dg);
  return r;
}
