/* batch-plan.c: the `p2v batch` plan: an INI file read with libinih and
 * checked as a whole before any work starts (every problem named by
 * file and line), and the command line each stage of a server runs. */
#include <ctype.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ini.h>

#include "common.h"
#include "convert.h"
#include "batch.h"

/* Longest plan line we accept (inih needs 3 more for "\r\n\0"). */
#define PLAN_MAX_LINE 4096

static const char *const stage_names[BATCH_N_STAGES] = {
  [BATCH_FETCH] = "fetch",
  [BATCH_CONVERT] = "convert",
  [BATCH_INJECT] = "inject",
  [BATCH_SMOKE] = "smoke",
};

const char *
batch_stage_name (enum batch_stage st)
{
  return st < BATCH_N_STAGES ? stage_names[st] : "?";
}

int
batch_stage_by_name (const char *name)
{
  for (int i = 0; i < BATCH_N_STAGES; i++)
    if (name && strcmp (name, stage_names[i]) == 0)
      return i;
  return -1;
}

bool
batch_stage_enabled (const struct batch_server *s, enum batch_stage st)
{
  switch (st) {
  case BATCH_FETCH: return s->source_ssh;
  case BATCH_CONVERT: return true;
  case BATCH_INJECT: return s->inject;
  case BATCH_SMOKE: return s->smoke;
  default: return false;
  }
}

/* ---- reading: what libinih hands us, with line numbers ----------------- */

struct plan_section {
  char *name;
  int line;
};

struct plan_entry {
  size_t section;               /* index into sections */
  char *key, *value;
  int line;
};

struct plan_error {
  int line;
  char *msg;
};

struct plan_reader {
  FILE *f;
  int lineno;
  char *buf;
  size_t bufsize;
  struct plan_section *sections;
  size_t n_sections;
  struct plan_entry *entries;
  size_t n_entries;
  struct plan_error *errors;
  size_t n_errors;
};

static void
add_error (struct plan_reader *r, int line, const char *fmt, ...) P2V_PRINTF (3, 4);

static void
add_error (struct plan_reader *r, int line, const char *fmt, ...)
{
  va_list ap;
  char *msg;

  va_start (ap, fmt);
  if (vasprintf (&msg, fmt, ap) == -1)
    p2v_die ("out of memory");
  va_end (ap);
  r->errors = xrealloc (r->errors, (r->n_errors + 1) * sizeof *r->errors);
  r->errors[r->n_errors++] = (struct plan_error) { line, msg };
}

static char *
trim (char *s)
{
  char *e;

  while (isspace ((unsigned char) *s))
    s++;
  e = s + strlen (s);
  while (e > s && isspace ((unsigned char) e[-1]))
    *--e = '\0';
  return s;
}

/* inih's reader: one line per call, counted, so the handler knows which
 * line it is looking at.  Section headers are noted here because inih
 * does not report a header without keys, nor a repeated one. */
static char *
plan_read_line (char *str, int num, void *stream)
{
  struct plan_reader *r = stream;
  ssize_t len = getline (&r->buf, &r->bufsize, r->f);
  char *p;

  if (len == -1)
    return NULL;
  r->lineno++;
  if (memchr (r->buf, '\0', len))
    add_error (r, r->lineno, "line holds a NUL byte");
  if (len > num - 1) {
    add_error (r, r->lineno, "line is longer than %d bytes", num - 3);
    len = num - 1;
  }
  memcpy (str, r->buf, len);
  str[len] = '\0';

  p = r->buf;
  while (isspace ((unsigned char) *p))
    p++;
  if (*p == '[') {
    char *end = strchr (p, ']');
    if (end) {
      char *name;
      *end = '\0';
      name = trim (p + 1);
      r->sections = xrealloc (r->sections, (r->n_sections + 1) * sizeof *r->sections);
      r->sections[r->n_sections++] = (struct plan_section) { xstrdup (name), r->lineno };
    }
  }
  return str;
}

static int
plan_handle (void *user, const char *section, const char *key, const char *value)
{
  struct plan_reader *r = user;

  (void) section;               /* the reader's last header is the same one */
  if (r->n_sections == 0) {
    add_error (r, r->lineno, "'%s' is outside a section ([defaults] or [NAME])", key);
    return 1;
  }
  r->entries = xrealloc (r->entries, (r->n_entries + 1) * sizeof *r->entries);
  r->entries[r->n_entries++] = (struct plan_entry) {
    r->n_sections - 1, xstrdup (key), xstrdup (value), r->lineno,
  };
  return 1;
}

/* ---- values ------------------------------------------------------------- */

static int
parse_bool (const char *v, bool *out)
{
  static const char *const yes[] = { "yes", "true", "on", "1" };
  static const char *const no[] = { "no", "false", "off", "0" };

  for (size_t i = 0; i < ARRAY_SIZE (yes); i++)
    if (strcasecmp (v, yes[i]) == 0) { *out = true; return 0; }
  for (size_t i = 0; i < ARRAY_SIZE (no); i++)
    if (strcasecmp (v, no[i]) == 0) { *out = false; return 0; }
  return -1;
}

static int
parse_uint (const char *v, unsigned lo, unsigned hi, unsigned *out)
{
  char *end;
  long l;

  if (!isdigit ((unsigned char) *v))
    return -1;
  errno = 0;
  l = strtol (v, &end, 10);
  if (errno || *end || l < (long) lo || l > (long) hi)
    return -1;
  *out = l;
  return 0;
}

/* MiB as a plain number, or a size with a unit ("2G", "1536M"). */
static int
parse_memory (const char *v, unsigned *out)
{
  uint64_t bytes;

  if (parse_uint (v, 128, 65536, out) == 0)
    return 0;
  if (!isdigit ((unsigned char) *v) || isdigit ((unsigned char) v[strlen (v) - 1]))
    return -1;
  if (parse_size (v, &bytes) == -1 || bytes % (1024 * 1024)
      || bytes < 128ULL << 20 || bytes > 65536ULL << 20)
    return -1;
  *out = bytes >> 20;
  return 0;
}

static bool
valid_mac (const char *m)
{
  unsigned first;

  if (strlen (m) != 17)
    return false;
  for (int i = 0; i < 17; i++) {
    if (i % 3 == 2 ? m[i] != ':' : !isxdigit ((unsigned char) m[i]))
      return false;
  }
  if (sscanf (m, "%2x", &first) != 1)
    return false;
  return (first & 1) == 0;      /* a multicast address cannot be a NIC's */
}

static bool
valid_name (const char *n)
{
  size_t len = strlen (n);

  if (len == 0 || len > 64 || !isalnum ((unsigned char) n[0]))
    return false;
  for (size_t i = 0; i < len; i++)
    if (!isalnum ((unsigned char) n[i]) && !strchr ("._-", n[i]))
      return false;
  return true;
}

/* ---- paths -------------------------------------------------------------- */

/* BASE/P made absolute and normalised lexically (".", "..", "//"), then
 * with its directory resolved through realpath when it exists, so two
 * spellings of one file compare equal. */
static char *
plan_path (const char *base, const char *p)
{
  char *abs = p[0] == '/' ? xstrdup (p) : xasprintf ("%s/%s", base, p);
  char *out = xmalloc (strlen (abs) + 2), *o = out, *tok, *save = NULL;
  char *dup, *dir, *resolved;

  *o = '\0';
  for (tok = strtok_r (abs, "/", &save); tok; tok = strtok_r (NULL, "/", &save)) {
    if (strcmp (tok, ".") == 0)
      continue;
    if (strcmp (tok, "..") == 0) {
      char *slash = strrchr (out, '/');
      if (slash)
        *slash = '\0';
      o = out + strlen (out);
      continue;
    }
    o += sprintf (o, "/%s", tok);
  }
  if (out[0] == '\0')
    strcpy (out, "/");
  free (abs);

  dup = xstrdup (out);
  dir = dirname (dup);
  resolved = realpath (dir, NULL);
  if (resolved && strcmp (out, "/") != 0) {
    char *b = xstrdup (out);
    char *r = xasprintf ("%s/%s", strcmp (resolved, "/") ? resolved : "",
                         basename (b));
    free (b);
    free (out);
    out = r;
  }
  free (resolved);
  free (dup);
  return out;
}

static char *
dir_of (const char *path)
{
  char *d = xstrdup (path);
  char *r = xstrdup (dirname (d));
  free (d);
  return r;
}

char *
batch_path_from (const char *from, const char *to)
{
  size_t n = strlen (from);

  if (strcmp (from, "/") == 0 && to[0] == '/' && to[1])
    return xstrdup (to + 1);
  if (strncmp (to, from, n) == 0 && to[n] == '/' && to[n + 1])
    return xstrdup (to + n + 1);
  return xstrdup (to);
}

/* ---- the plan ----------------------------------------------------------- */

/* A setting as the plan gave it: the value and its line (0: not given). */
struct setting {
  const char *value;
  int line;
};

enum key {
  K_SOURCE, K_OUTPUT, K_OUTPUT_DIR, K_FORMAT, K_COMPRESS, K_INJECT, K_SMOKE,
  K_VCPUS, K_MEMORY, K_MAC, K_ACCEL, K_SMOKE_TIMEOUT, K_JOBS, K_SSH_CONFIG,
  N_KEYS,
};

static const struct {
  const char *name;
  bool in_defaults, in_server;
} keys[N_KEYS] = {
  [K_SOURCE] = { "source", false, true },
  [K_OUTPUT] = { "output", false, true },
  [K_OUTPUT_DIR] = { "output-dir", true, true },
  [K_FORMAT] = { "format", true, true },
  [K_COMPRESS] = { "compress", true, true },
  [K_INJECT] = { "inject", true, true },
  [K_SMOKE] = { "smoke", true, true },
  [K_VCPUS] = { "vcpus", true, true },
  [K_MEMORY] = { "memory", true, true },
  [K_MAC] = { "mac", false, true },
  [K_ACCEL] = { "accel", true, true },
  [K_SMOKE_TIMEOUT] = { "smoke-timeout", true, true },
  [K_JOBS] = { "jobs", true, false },
  [K_SSH_CONFIG] = { "ssh-config", true, true },
};

static int
key_by_name (const char *name)
{
  for (int i = 0; i < N_KEYS; i++)
    if (strcmp (keys[i].name, name) == 0)
      return i;
  return -1;
}

/* Collect a section's settings (all sections of that name: a repeated
 * [defaults] adds to the first; a repeated server name is an error the
 * caller reports). */
static void
section_settings (struct plan_reader *r, size_t sec, bool defaults,
                  struct setting set[N_KEYS])
{
  for (size_t i = 0; i < r->n_entries; i++) {
    struct plan_entry *e = &r->entries[i];
    int k;

    if (defaults ? strcmp (r->sections[e->section].name, "defaults") != 0
        : e->section != sec)
      continue;
    k = key_by_name (e->key);
    if (k == -1) {
      add_error (r, e->line, "unknown key '%s' in [%s]", e->key,
                 r->sections[e->section].name);
      continue;
    }
    if (defaults ? !keys[k].in_defaults : !keys[k].in_server) {
      add_error (r, e->line, "'%s' belongs in %s, not in [%s]", e->key,
                 defaults ? "a server's section" : "[defaults]",
                 r->sections[e->section].name);
      continue;
    }
    if (set[k].line) {
      add_error (r, e->line, "'%s' is set twice in [%s] (first on line %d)",
                 e->key, r->sections[e->section].name, set[k].line);
      continue;
    }
    set[k] = (struct setting) { e->value, e->line };
  }
}

/* Apply the settings in SET over *S; errors name their lines. */
static void
apply_settings (struct plan_reader *r, const struct setting set[N_KEYS],
                struct batch_server *s)
{
  for (int k = 0; k < N_KEYS; k++) {
    const char *v = set[k].value;
    int line = set[k].line;
    bool b;
    unsigned u;

    if (!line)
      continue;
    if (*v == '\0' && k != K_MAC) {
      add_error (r, line, "'%s' is empty", keys[k].name);
      continue;
    }
    switch (k) {
    case K_FORMAT:
      if (strcmp (v, "qcow2") && strcmp (v, "raw"))
        add_error (r, line, "format '%s' is not qcow2 or raw", v);
      else {
        free (s->format);
        s->format = xstrdup (v);
      }
      break;
    case K_COMPRESS:
      if (parse_bool (v, &b) == 0)
        s->compress = b ? -1 : 0;
      else if (parse_uint (v, 1, 9, &u) == 0)
        s->compress = u;
      else
        add_error (r, line, "compress '%s' is not yes, no or a level from 1 to 9", v);
      break;
    case K_INJECT:
    case K_SMOKE:
      if (parse_bool (v, &b) == -1)
        add_error (r, line, "%s '%s' is not yes or no", keys[k].name, v);
      else if (k == K_INJECT)
        s->inject = b;
      else
        s->smoke = b;
      break;
    case K_VCPUS:
      if (parse_uint (v, 1, 64, &u) == -1)
        add_error (r, line, "vcpus '%s' is not a number from 1 to 64", v);
      else
        s->vcpus = u;
      break;
    case K_MEMORY:
      if (parse_memory (v, &u) == -1)
        add_error (r, line, "memory '%s' is not a number of MiB from 128 to 65536 (or 2G)", v);
      else
        s->memory_mb = u;
      break;
    case K_MAC:
      if (!valid_mac (v))
        add_error (r, line, "mac '%s' is not a unicast address like 52:54:00:12:34:56", v);
      else {
        free (s->mac);
        s->mac = xstrdup (v);
      }
      break;
    case K_ACCEL:
      if (strcmp (v, "auto") && strcmp (v, "kvm") && strcmp (v, "tcg"))
        add_error (r, line, "accel '%s' is not auto, kvm or tcg", v);
      else {
        free (s->accel);
        s->accel = xstrdup (v);
      }
      break;
    case K_SMOKE_TIMEOUT:
      if (parse_uint (v, 1, 86400, &u) == -1)
        add_error (r, line, "smoke-timeout '%s' is not a number of seconds from 1 to 86400", v);
      else
        s->smoke_timeout = u;
      break;
    default:
      break;                    /* paths and jobs: the caller */
    }
  }
}

/* ssh://[user@]host[:port]/path: checked here so that nothing reaches
 * scp as an option. */
static int
check_ssh_source (const char *src, char **why)
{
  const char *rest = src + strlen ("ssh://"), *slash = strchr (rest, '/');
  const char *at, *colon;
  size_t hostlen;

  if (!slash || slash == rest || slash[1] == '\0') {
    *why = xstrdup ("is not ssh://[user@]host[:port]/path");
    return -1;
  }
  at = memchr (rest, '@', slash - rest);
  if (at && (at == rest || rest[0] == '-')) {
    *why = xstrdup ("has an empty or option-like user name");
    return -1;
  }
  rest = at ? at + 1 : rest;
  colon = memchr (rest, ':', slash - rest);
  hostlen = (colon ? colon : slash) - rest;
  if (hostlen == 0 || rest[0] == '-') {
    *why = xstrdup ("has an empty or option-like host name");
    return -1;
  }
  for (const char *p = rest; p < rest + hostlen; p++)
    if (!isalnum ((unsigned char) *p) && !strchr (".-_[]:", *p)) {
      *why = xstrdup ("has a host name with odd characters");
      return -1;
    }
  if (colon) {
    unsigned port;
    char *portstr = strndup (colon + 1, slash - colon - 1);
    int e = portstr ? parse_uint (portstr, 1, 65535, &port) : -1;
    free (portstr);
    if (e == -1) {
      *why = xstrdup ("has a port that is not a number from 1 to 65535");
      return -1;
    }
  }
  return 0;
}

static void
server_free_fields (struct batch_server *s)
{
  free (s->name);
  free (s->source);
  free (s->fetched);
  free (s->ssh_config);
  free (s->output);
  free (s->output_dir);
  free (s->format);
  free (s->mac);
  free (s->accel);
  free (s->log);
  free (s->convert_json);
  free (s->smoke_json);
  free (s->console_log);
}

void
batch_plan_free (struct batch_plan *plan)
{
  if (!plan)
    return;
  for (size_t i = 0; i < plan->n_servers; i++)
    server_free_fields (&plan->servers[i]);
  free (plan->servers);
  free (plan->path);
  free (plan->abs_path);
  free (plan->dir);
  free (plan->batch_dir);
  free (plan->state_path);
  free (plan);
}

static int
compare_errors (const void *a, const void *b)
{
  const struct plan_error *x = a, *y = b;
  return (x->line > y->line) - (x->line < y->line);
}

static void
reader_free (struct plan_reader *r)
{
  for (size_t i = 0; i < r->n_sections; i++)
    free (r->sections[i].name);
  for (size_t i = 0; i < r->n_entries; i++) {
    free (r->entries[i].key);
    free (r->entries[i].value);
  }
  for (size_t i = 0; i < r->n_errors; i++)
    free (r->errors[i].msg);
  free (r->sections);
  free (r->entries);
  free (r->errors);
  free (r->buf);
}

/* Fill server I of the plan from its section; errors go to r. */
static void
build_server (struct plan_reader *r, struct batch_plan *plan, size_t sec,
              const struct setting defaults[N_KEYS], const char *default_dir,
              struct batch_server *s)
{
  struct setting set[N_KEYS] = { { 0 } };
  const char *name = r->sections[sec].name;

  memset (s, 0, sizeof *s);
  s->name = xstrdup (name);
  s->line = r->sections[sec].line;
  s->format = xstrdup ("qcow2");
  s->inject = s->smoke = true;
  apply_settings (r, defaults, s);
  section_settings (r, sec, false, set);
  apply_settings (r, set, s);

  if (!valid_name (name))
    add_error (r, s->line, "server name '%s' is not 1-64 letters, digits, '.', '_' or '-' "
               "starting with a letter or digit", name);

  s->output_line = set[K_OUTPUT].line ? set[K_OUTPUT].line
    : set[K_OUTPUT_DIR].line ? set[K_OUTPUT_DIR].line : s->line;
  if (set[K_OUTPUT_DIR].line && set[K_OUTPUT_DIR].value[0])
    s->output_dir = plan_path (plan->dir, set[K_OUTPUT_DIR].value);
  else
    s->output_dir = xstrdup (default_dir);
  if (set[K_OUTPUT].line && set[K_OUTPUT].value[0]) {
    s->output = plan_path (plan->dir, set[K_OUTPUT].value);
    free (s->output_dir);
    s->output_dir = dir_of (s->output);
    if (set[K_OUTPUT_DIR].line)
      add_error (r, set[K_OUTPUT].line, "give output or output-dir, not both");
  }
  else
    s->output = xasprintf ("%s/%s.%s", s->output_dir, name, s->format);

  if (s->compress && strcmp (s->format, "qcow2") != 0)
    add_error (r, (set[K_COMPRESS].line ? set[K_COMPRESS] : defaults[K_COMPRESS]).line,
               "compress needs format qcow2 (server '%s' is %s)", name, s->format);

  s->log = xasprintf ("%s/%s.log", s->output_dir, name);
  s->convert_json = xasprintf ("%s/%s.convert.json", s->output_dir, name);
  s->smoke_json = xasprintf ("%s/%s.smoke.json", s->output_dir, name);
  s->console_log = xasprintf ("%s/%s.console.log", s->output_dir, name);

  {
    const struct setting *cfg = set[K_SSH_CONFIG].line ? &set[K_SSH_CONFIG]
      : defaults[K_SSH_CONFIG].line ? &defaults[K_SSH_CONFIG] : NULL;
    struct stat st;
    if (cfg && cfg->value[0]) {
      s->ssh_config = plan_path (plan->dir, cfg->value);
      if (stat (s->ssh_config, &st) == -1 || !S_ISREG (st.st_mode))
        add_error (r, cfg->line, "ssh-config '%s' is not a readable file", cfg->value);
    }
  }

  if (!set[K_SOURCE].line) {
    add_error (r, s->line, "server '%s' has no source", name);
    return;
  }
  s->source_line = set[K_SOURCE].line;
  if (strncmp (set[K_SOURCE].value, "ssh://", 6) == 0) {
    const char *v = set[K_SOURCE].value;
    char *why = NULL;
    s->source = xstrdup (v);
    s->source_ssh = true;
    if (check_ssh_source (v, &why) == -1) {
      add_error (r, s->source_line, "source '%s' %s", v, why);
      free (why);
    }
    s->fetched = xasprintf ("%s/%s.source%s", s->output_dir, name,
                            strlen (v) > 4 && !strcmp (v + strlen (v) - 4, ".tar")
                            ? ".tar" : "");
  }
  else if (set[K_SOURCE].value[0]) {
    struct stat st;
    s->source = plan_path (plan->dir, set[K_SOURCE].value);
    if (stat (s->source, &st) == -1)
      add_error (r, s->source_line, "source '%s': %s", set[K_SOURCE].value,
                 errno == ENOENT ? "no such file or directory" : strerror (errno));
    else if (!S_ISREG (st.st_mode) && !S_ISDIR (st.st_mode) && !S_ISBLK (st.st_mode))
      add_error (r, s->source_line, "source '%s' is not a file, directory or block device",
                 set[K_SOURCE].value);
    else if (strcmp (s->source, s->output) == 0)
      add_error (r, s->source_line, "source '%s' is also the output", set[K_SOURCE].value);
  }
}

struct batch_plan *
batch_plan_load (const char *path)
{
  struct plan_reader r = { 0 };
  struct setting defaults[N_KEYS] = { { 0 } };
  struct batch_plan *plan = NULL;
  char *dup;
  int e;

  r.f = fopen (path, "re");
  if (!r.f)
    return p2v_error_null ("cannot open plan '%s': %m", path);

  /* libinih's knobs are process-wide; p2v sets them for its one use. */
  ini_use_stack = false;
  ini_allow_realloc = false;
  ini_max_line = PLAN_MAX_LINE + 3;
  ini_initial_alloc = PLAN_MAX_LINE + 3;  /* the buffer size without realloc */
  ini_allow_multiline = false;
  ini_allow_no_value = false;
  ini_stop_on_first_error = false;
  e = ini_parse_stream (plan_read_line, &r, plan_handle, &r);
  if (ferror (r.f))
    add_error (&r, r.lineno + 1, "read error: %s", strerror (errno));
  fclose (r.f);
  if (e == -2)
    p2v_die ("out of memory");
  if (e > 0) {
    bool known = false;
    for (size_t i = 0; i < r.n_errors; i++)
      known |= r.errors[i].line == e;
    if (!known)
      add_error (&r, e, "not a [section] header, a key = value line or a comment");
  }

  plan = xcalloc (1, sizeof *plan);
  plan->path = xstrdup (path);
  dup = xstrdup (path);
  plan->dir = realpath (dirname (dup), NULL);
  free (dup);
  if (!plan->dir) {
    p2v_error ("cannot resolve the directory of plan '%s': %m", path);
    reader_free (&r);
    batch_plan_free (plan);
    return NULL;
  }
  dup = xstrdup (path);
  plan->abs_path = xasprintf ("%s/%s", plan->dir, basename (dup));
  plan->state_path = xasprintf ("%s.state", plan->abs_path);
  free (dup);

  section_settings (&r, 0, true, defaults);
  if (defaults[K_JOBS].line
      && parse_uint (defaults[K_JOBS].value, 1, 256, &plan->jobs) == -1)
    add_error (&r, defaults[K_JOBS].line, "jobs '%s' is not a number from 1 to 256",
               defaults[K_JOBS].value);
  if (defaults[K_OUTPUT_DIR].line && defaults[K_OUTPUT_DIR].value[0])
    plan->batch_dir = plan_path (plan->dir, defaults[K_OUTPUT_DIR].value);
  else
    plan->batch_dir = xstrdup (plan->dir);
  {
    /* Check [defaults]' values once, on a scratch server. */
    struct batch_server scratch = { .format = xstrdup ("qcow2") };
    apply_settings (&r, defaults, &scratch);
    server_free_fields (&scratch);
  }
  {
    /* [defaults]' errors were just reported once; servers apply the same
     * values again, so keep only the first report of each line. */
    size_t n_before = r.n_errors;

    for (size_t i = 0; i < r.n_sections; i++) {
      struct batch_server *s;
      if (strcmp (r.sections[i].name, "defaults") == 0)
        continue;
      for (size_t j = 0; j < i; j++)
        if (strcmp (r.sections[j].name, r.sections[i].name) == 0) {
          add_error (&r, r.sections[i].line, "server '%s' is named twice (first on line %d)",
                     r.sections[i].name, r.sections[j].line);
          goto next;
        }
      plan->servers = xrealloc (plan->servers,
                                (plan->n_servers + 1) * sizeof *plan->servers);
      s = &plan->servers[plan->n_servers++];
      build_server (&r, plan, i, defaults, plan->batch_dir, s);
      for (size_t j = 0; j + 1 < plan->n_servers; j++) {
        const struct batch_server *o = &plan->servers[j];
        if (strcmp (o->output, s->output) == 0)
          add_error (&r, s->output_line, "server '%s' writes '%s', as server '%s' "
                     "(line %d) does", s->name, s->output, o->name, o->output_line);
        else if (strcmp (o->log, s->log) == 0)
          add_error (&r, s->line, "server '%s' and '%s' (line %d) would share a log",
                     s->name, o->name, o->line);
        else if (o->source && s->source && !o->source_ssh
                 && strcmp (o->output, s->source) == 0)
          add_error (&r, s->source_line, "source '%s' is server '%s''s output",
                     s->source, o->name);
      }
    next:;
    }
    /* Drop the repeats of [defaults] errors the servers produced. */
    for (size_t i = n_before; i < r.n_errors; i++) {
      bool dup_line = false;
      for (size_t j = 0; j < n_before && !dup_line; j++)
        dup_line = r.errors[j].line == r.errors[i].line
          && strcmp (r.errors[j].msg, r.errors[i].msg) == 0;
      for (size_t j = n_before; j < i && !dup_line; j++)
        dup_line = r.errors[j].line == r.errors[i].line
          && strcmp (r.errors[j].msg, r.errors[i].msg) == 0;
      if (dup_line) {
        free (r.errors[i].msg);
        memmove (&r.errors[i], &r.errors[i + 1], (r.n_errors - i - 1) * sizeof *r.errors);
        r.n_errors--;
        i--;
      }
    }
  }
  if (plan->n_servers == 0 && r.n_errors == 0)
    add_error (&r, r.lineno ? r.lineno : 1, "the plan lists no server ([NAME] with a source)");

  if (r.n_errors) {
    qsort (r.errors, r.n_errors, sizeof *r.errors, compare_errors);
    for (size_t i = 0; i < r.n_errors; i++)
      p2v_error ("%s:%d: %s", path, r.errors[i].line, r.errors[i].msg);
    reader_free (&r);
    batch_plan_free (plan);
    return NULL;
  }
  reader_free (&r);
  return plan;
}

/* ---- command lines ------------------------------------------------------ */

char *
batch_shell_quote (const char *w)
{
  size_t n = 0;
  char *q, *o;
  bool safe = *w != '\0';

  for (const char *p = w; *p && safe; p++)
    safe = isalnum ((unsigned char) *p) || strchr ("_./:=@%+,-", *p);
  if (safe)
    return xstrdup (w);
  for (const char *p = w; *p; p++)
    n += *p == '\'' ? 4 : 1;
  q = o = xmalloc (n + 3);
  *o++ = '\'';
  for (const char *p = w; *p; p++) {
    if (*p == '\'') {
      memcpy (o, "'\\''", 4);
      o += 4;
    }
    else
      *o++ = *p;
  }
  *o++ = '\'';
  *o = '\0';
  return q;
}

static void
argv_push (char ***v, size_t *n, char *s)
{
  *v = xrealloc (*v, (*n + 2) * sizeof **v);
  (*v)[(*n)++] = s;
  (*v)[*n] = NULL;
}

/* The fetch stage: scp into a hidden name, renamed when complete. */
static char *
fetch_line (const struct batch_server *s)
{
  const char *rest = s->source + strlen ("ssh://");
  const char *slash = strchr (rest, '/'), *at, *colon, *host;
  char *userhost, *port = NULL, *remote, *partial, *line;
  char *q_remote, *q_partial, *q_fetched, *q_config = NULL, *dup;

  at = memchr (rest, '@', slash - rest);
  host = at ? at + 1 : rest;
  colon = memchr (host, ':', slash - host);
  userhost = strndup (rest, (colon ? colon : slash) - rest);
  if (!userhost)
    p2v_die ("out of memory");
  if (colon)
    port = strndup (colon + 1, slash - colon - 1);
  remote = xasprintf ("%s:%s", userhost, slash);
  dup = xstrdup (s->fetched);
  partial = xasprintf ("%s/.%s.partial", s->output_dir, basename (dup));
  free (dup);
  q_remote = batch_shell_quote (remote);
  q_partial = batch_shell_quote (partial);
  q_fetched = batch_shell_quote (s->fetched);
  if (s->ssh_config)
    q_config = batch_shell_quote (s->ssh_config);
  line = xasprintf ("rm -rf -- %s && scp -B -r%s%s%s%s -- %s %s && mv -T -- %s %s",
                    q_partial, q_config ? " -F " : "", q_config ? q_config : "",
                    port ? " -P " : "", port ? port : "",
                    q_remote, q_partial, q_partial, q_fetched);
  free (q_config);
  free (userhost);
  free (port);
  free (remote);
  free (partial);
  free (q_remote);
  free (q_partial);
  free (q_fetched);
  return line;
}

void
batch_command_build (const struct batch_server *s, enum batch_stage st,
                     struct batch_command *cmd)
{
  char **v = NULL;
  size_t n = 0;

  memset (cmd, 0, sizeof *cmd);
  switch (st) {
  case BATCH_FETCH:
    argv_push (&v, &n, xstrdup ("sh"));
    argv_push (&v, &n, xstrdup ("-c"));
    argv_push (&v, &n, fetch_line (s));
    cmd->shell = true;
    cmd->stdout_path = s->log;
    cmd->out_append = true;
    cmd->err_to_out = true;
    break;
  case BATCH_CONVERT:
    argv_push (&v, &n, xstrdup ("p2v"));
    argv_push (&v, &n, xstrdup ("convert"));
    argv_push (&v, &n, xstrdup (s->source_ssh ? s->fetched : s->source));
    argv_push (&v, &n, xstrdup ("-o"));
    argv_push (&v, &n, xstrdup (s->output));
    argv_push (&v, &n, xstrdup ("-O"));
    argv_push (&v, &n, xstrdup (s->format));
    if (s->compress == -1)
      argv_push (&v, &n, xstrdup ("--compress"));
    else if (s->compress > 0)
      argv_push (&v, &n, xasprintf ("--compress=%d", s->compress));
    argv_push (&v, &n, xstrdup ("--no-inject"));
    argv_push (&v, &n, xstrdup ("--no-smoke"));
    argv_push (&v, &n, xstrdup ("--json"));
    cmd->stdout_path = s->convert_json;
    cmd->stderr_path = s->log;
    break;
  case BATCH_INJECT:
    argv_push (&v, &n, xstrdup ("p2v"));
    argv_push (&v, &n, xstrdup ("inject"));
    argv_push (&v, &n, xstrdup (s->output));
    argv_push (&v, &n, xstrdup ("-f"));
    argv_push (&v, &n, xstrdup (s->format));
    if (s->mac) {
      argv_push (&v, &n, xstrdup ("--mac"));
      argv_push (&v, &n, xstrdup (s->mac));
    }
    if (s->accel) {
      argv_push (&v, &n, xstrdup ("--accel"));
      argv_push (&v, &n, xstrdup (s->accel));
    }
    cmd->stdout_path = s->log;
    cmd->out_append = true;
    cmd->err_to_out = true;
    break;
  case BATCH_SMOKE:
    argv_push (&v, &n, xstrdup ("p2v"));
    argv_push (&v, &n, xstrdup ("smoke"));
    argv_push (&v, &n, xstrdup (s->output));
    argv_push (&v, &n, xstrdup ("-f"));
    argv_push (&v, &n, xstrdup (s->format));
    argv_push (&v, &n, xstrdup ("--json"));
    argv_push (&v, &n, xstrdup ("--keep-log"));
    argv_push (&v, &n, xstrdup (s->console_log));
    if (s->mac) {
      argv_push (&v, &n, xstrdup ("--mac"));
      argv_push (&v, &n, xstrdup (s->mac));
    }
    if (s->memory_mb) {
      argv_push (&v, &n, xstrdup ("--memory"));
      argv_push (&v, &n, xasprintf ("%u", s->memory_mb));
    }
    if (s->vcpus) {
      argv_push (&v, &n, xstrdup ("--cpus"));
      argv_push (&v, &n, xasprintf ("%u", s->vcpus));
    }
    if (s->smoke_timeout) {
      argv_push (&v, &n, xstrdup ("--timeout"));
      argv_push (&v, &n, xasprintf ("%u", s->smoke_timeout));
    }
    if (s->accel) {
      argv_push (&v, &n, xstrdup ("--accel"));
      argv_push (&v, &n, xstrdup (s->accel));
    }
    cmd->stdout_path = s->smoke_json;
    cmd->stderr_path = s->log;
    break;
  default:
    argv_push (&v, &n, xstrdup ("false"));
    break;
  }
  cmd->argv = v;
}

void
batch_command_free (struct batch_command *cmd)
{
  if (!cmd || !cmd->argv)
    return;
  for (size_t i = 0; cmd->argv[i]; i++)
    free (cmd->argv[i]);
  free (cmd->argv);
  cmd->argv = NULL;
}

char *
batch_command_line (const struct batch_command *cmd)
{
  size_t cap = 256, len = 0;
  char *line = xmalloc (cap);

#define APPEND(str) do {                                        \
    const char *a_ = (str);                                     \
    size_t l_ = strlen (a_);                                    \
    while (len + l_ + 1 > cap)                                  \
      line = xrealloc (line, cap *= 2);                         \
    memcpy (line + len, a_, l_ + 1);                            \
    len += l_;                                                  \
  } while (0)

  line[0] = '\0';
  if (cmd->shell) {
    /* The fetch is already a shell line: run it as one group so the
     * redirection covers every part. */
    APPEND ("{ ");
    APPEND (cmd->argv[2]);
    APPEND ("; }");
  }
  else {
    for (size_t i = 0; cmd->argv[i]; i++) {
      char *q = batch_shell_quote (cmd->argv[i]);
      if (i)
        APPEND (" ");
      APPEND (q);
      free (q);
    }
  }
  if (cmd->stdout_path) {
    char *q = batch_shell_quote (cmd->stdout_path);
    APPEND (cmd->out_append ? " >>" : " >");
    APPEND (q);
    free (q);
  }
  if (cmd->err_to_out)
    APPEND (" 2>&1");
  else if (cmd->stderr_path) {
    char *q = batch_shell_quote (cmd->stderr_path);
    APPEND (" 2>>");
    APPEND (q);
    free (q);
  }
#undef APPEND
  return line;
}

unsigned
batch_default_jobs (long cores, uint64_t mem_available)
{
  const uint64_t gib = 1024ULL * 1024 * 1024;
  uint64_t by_memory = mem_available > gib ? (mem_available - gib) / (2 * gib) : 0;
  uint64_t n = cores > 0 ? (uint64_t) cores : 1;

  if (by_memory < n)
    n = by_memory;
  if (n < 1)
    n = 1;
  if (n > 256)
    n = 256;
  return n;
}

char *
batch_html_escape (const char *text)
{
  size_t cap = strlen (text) * 6 + 1, o = 0;
  char *out = xmalloc (cap);

  for (const char *p = text; *p; p++) {
    const char *rep = NULL;
    switch (*p) {
    case '&': rep = "&amp;"; break;
    case '<': rep = "&lt;"; break;
    case '>': rep = "&gt;"; break;
    case '"': rep = "&quot;"; break;
    case '\'': rep = "&#39;"; break;
    }
    if (rep) {
      strcpy (out + o, rep);
      o += strlen (rep);
    }
    else
      out[o++] = *p;
  }
  out[o] = '\0';
  return out;
}
