/* batch-report.c: the `p2v batch` state file (JSON, replaced atomically
 * after every stage) and the report built from it and from what each
 * stage wrote: a terminal table, report.json and a static report.html. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json.h>

#include "common.h"
#include "jsonutil.h"
#include "batch.h"

/* ---- files -------------------------------------------------------------- */

/* A small JSON file a stage wrote (convert/smoke --json), or NULL. */
static json_object *
read_json_file (const char *path)
{
  struct stat st;
  json_object *o;

  if (!path || stat (path, &st) == -1 || !S_ISREG (st.st_mode)
      || st.st_size == 0 || st.st_size > 16 * 1024 * 1024)
    return NULL;
  o = json_object_from_file (path);
  if (o && !json_object_is_type (o, json_type_object)) {
    json_object_put (o);
    return NULL;
  }
  return o;
}

/* ---- state -------------------------------------------------------------- */

json_object *
batch_state_load (const char *path, bool *existed)
{
  json_object *o, *servers;
  struct stat st;

  *existed = false;
  if (stat (path, &st) == -1) {
    if (errno != ENOENT)
      return p2v_error_null ("cannot stat state file '%s': %m", path);
    o = json_object_new_object ();
    json_object_object_add (o, "version", json_object_new_int (1));
    json_object_object_add (o, "servers", json_object_new_object ());
    return o;
  }
  *existed = true;
  if (!S_ISREG (st.st_mode) || st.st_size > 64 * 1024 * 1024)
    return p2v_error_null ("state file '%s' is not a regular file of sane size", path);
  o = json_object_from_file (path);
  if (!o)
    return p2v_error_null ("cannot read state file '%s': %s", path,
                           json_util_get_last_err () ? json_util_get_last_err ()
                           : "not JSON");
  if (!json_object_is_type (o, json_type_object)
      || !json_object_object_get_ex (o, "servers", &servers)
      || !json_object_is_type (servers, json_type_object)) {
    json_object_put (o);
    return p2v_error_null ("state file '%s' is not a p2v batch state", path);
  }
  return o;
}

int
batch_state_save (const char *path, json_object *state)
{
  return write_file_atomic (path, json_object_to_json_string_ext (
                              state, JSON_C_TO_STRING_PRETTY
                              | JSON_C_TO_STRING_NOSLASHESCAPE));
}

json_object *
batch_state_server (json_object *state, const char *name)
{
  json_object *servers, *s;

  json_object_object_get_ex (state, "servers", &servers);
  if (json_object_object_get_ex (servers, name, &s)
      && json_object_is_type (s, json_type_object))
    return s;
  s = json_object_new_object ();
  json_object_object_add (s, "status", json_object_new_string ("pending"));
  json_object_object_add (servers, name, s);
  return s;
}

/* ---- report ------------------------------------------------------------- */

static const char *
get_string (json_object *o, const char *key)
{
  json_object *v;

  if (o && json_object_object_get_ex (o, key, &v) && json_object_is_type (v, json_type_string))
    return json_object_get_string (v);
  return NULL;
}

static bool
get_number (json_object *o, const char *key, double *out)
{
  json_object *v;

  if (o && json_object_object_get_ex (o, key, &v)
      && (json_object_is_type (v, json_type_double) || json_object_is_type (v, json_type_int))) {
    *out = json_object_get_double (v);
    return true;
  }
  return false;
}

/* Bytes a source holds: a file's size, or a bundle directory's files. */
static int64_t
source_bytes (const char *path)
{
  struct stat st;
  int64_t total = 0;
  DIR *d;
  struct dirent *e;

  if (!path || stat (path, &st) == -1)
    return -1;
  if (!S_ISDIR (st.st_mode))
    return st.st_size;
  d = opendir (path);
  if (!d)
    return -1;
  while ((e = readdir (d))) {
    char *p = xasprintf ("%s/%s", path, e->d_name);
    if (e->d_name[0] != '.' && stat (p, &st) == 0 && S_ISREG (st.st_mode))
      total += st.st_size;
    free (p);
  }
  closedir (d);
  return total;
}

/* The libvirt domain convert wrote beside OUT, if any: OUT.xml, or OUT
 * with its extension replaced by .xml. */
static char *
find_libvirt_xml (const char *output)
{
  char *a = xasprintf ("%s.xml", output), *b, *dot, *slash;
  struct stat st;

  if (stat (a, &st) == 0 && S_ISREG (st.st_mode))
    return a;
  free (a);
  b = xstrdup (output);
  dot = strrchr (b, '.');
  slash = strrchr (b, '/');
  if (dot && (!slash || dot > slash + 1)) {
    *dot = '\0';
    a = xasprintf ("%s.xml", b);
    free (b);
    if (stat (a, &st) == 0 && S_ISREG (st.st_mode))
      return a;
    free (a);
    return NULL;
  }
  free (b);
  return NULL;
}

static json_object *
server_report (const struct batch_server *s, json_object *ss)
{
  json_object *o = json_object_new_object (), *times = json_object_new_object ();
  json_object *stages = NULL, *conv, *smoke;
  const char *status = get_string (ss, "status");
  const char *shown;
  double total = 0, v;
  struct stat st;
  int64_t sb;
  char *xml;

  shown = !status ? "PENDING"
    : !strcmp (status, "passed") ? "PASS"
    : !strcmp (status, "failed") ? "FAIL"
    : !strcmp (status, "running") || !strcmp (status, "interrupted") ? "INTERRUPTED"
    : "PENDING";
  json_object_object_add (o, "name", json_object_new_string (s->name));
  json_object_object_add (o, "status", json_object_new_string (shown));
  json_object_object_add (o, "stage", json_string_or_null (get_string (ss, "stage")));
  json_object_object_add (o, "reason", json_string_or_null (get_string (ss, "reason")));
  json_object_object_add (o, "source", json_object_new_string (s->source));
  sb = source_bytes (s->source_ssh ? s->fetched : s->source);
  json_object_object_add (o, "source_bytes", sb >= 0 ? json_object_new_int64 (sb) : NULL);
  json_object_object_add (o, "output", json_object_new_string (s->output));
  json_object_object_add (o, "output_format", json_object_new_string (s->format));
  json_object_object_add (o, "output_bytes",
                          stat (s->output, &st) == 0
                          ? json_object_new_int64 ((int64_t) st.st_blocks * 512) : NULL);

  conv = read_json_file (s->convert_json);
  json_object_object_add (o, "virtual_size",
                          get_number (conv, "virtual_size", &v)
                          ? json_object_new_int64 ((int64_t) v) : NULL);
  json_object_object_add (o, "compression_ratio",
                          get_number (conv, "compression_ratio", &v)
                          ? json_object_new_double (v) : NULL);
  json_object_object_add (o, "convert_bytes_written",
                          get_number (conv, "bytes_written", &v)
                          ? json_object_new_int64 ((int64_t) v) : NULL);
  json_object_put (conv);

  if (ss)
    json_object_object_get_ex (ss, "stages", &stages);
  for (int st_i = 0; st_i < BATCH_N_STAGES; st_i++) {
    json_object *one;
    if (stages && json_object_object_get_ex (stages, batch_stage_name (st_i), &one)
        && get_number (one, "seconds", &v)) {
      json_object_object_add (times, batch_stage_name (st_i), json_object_new_double (v));
      total += v;
    }
  }
  json_object_object_add (o, "seconds", times);
  json_object_object_add (o, "total_seconds", json_object_new_double (total));

  smoke = s->smoke ? read_json_file (s->smoke_json) : NULL;
  if (smoke) {
    json_object *sm = json_object_new_object ();
    json_object_object_add (sm, "verdict", json_string_or_null (get_string (smoke, "verdict")));
    json_object_object_add (sm, "stage", json_string_or_null (get_string (smoke, "stage")));
    json_object_object_add (sm, "evidence", json_string_or_null (get_string (smoke, "evidence")));
    json_object_object_add (sm, "boot_seconds", get_number (smoke, "seconds", &v)
                            ? json_object_new_double (v) : NULL);
    json_object_object_add (sm, "accel", json_string_or_null (get_string (smoke, "accel")));
    json_object_object_add (sm, "firmware", json_string_or_null (get_string (smoke, "firmware")));
    json_object_object_add (sm, "error", json_string_or_null (get_string (smoke, "error")));
    json_object_object_add (o, "smoke", sm);
    json_object_put (smoke);
  }
  else
    json_object_object_add (o, "smoke", NULL);
  json_object_object_add (o, "log", json_object_new_string (s->log));
  json_object_object_add (o, "console_log",
                          s->smoke && stat (s->console_log, &st) == 0
                          ? json_object_new_string (s->console_log) : NULL);
  xml = find_libvirt_xml (s->output);
  json_object_object_add (o, "libvirt_xml", json_string_or_null (xml));
  free (xml);
  return o;
}

json_object *
batch_report_build (const struct batch_plan *plan, json_object *state)
{
  json_object *r = json_object_new_object (), *a = json_object_new_array ();
  json_object *servers = NULL;
  int passed = 0, failed = 0, other = 0;
  char when[32];
  time_t t = time (NULL);
  struct tm tm;

  strftime (when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime_r (&t, &tm));
  json_object_object_get_ex (state, "servers", &servers);
  for (size_t i = 0; i < plan->n_servers; i++) {
    json_object *ss = NULL, *one;
    const char *status;
    if (servers)
      json_object_object_get_ex (servers, plan->servers[i].name, &ss);
    one = server_report (&plan->servers[i], ss);
    status = get_string (one, "status");
    if (!strcmp (status, "PASS"))
      passed++;
    else if (!strcmp (status, "FAIL"))
      failed++;
    else
      other++;
    json_object_array_add (a, one);
  }
  json_object_object_add (r, "plan", json_object_new_string (plan->abs_path));
  json_object_object_add (r, "generated_at", json_object_new_string (when));
  json_object_object_add (r, "total", json_object_new_int (plan->n_servers));
  json_object_object_add (r, "passed", json_object_new_int (passed));
  json_object_object_add (r, "failed", json_object_new_int (failed));
  json_object_object_add (r, "not_finished", json_object_new_int (other));
  json_object_object_add (r, "servers", a);
  return r;
}

static const char *
fmt_seconds (double s, char *buf, size_t n)
{
  if (s < 60)
    snprintf (buf, n, "%.1fs", s);
  else
    snprintf (buf, n, "%um%02us", (unsigned) s / 60, (unsigned) s % 60);
  return buf;
}

static const char *
fmt_bytes (json_object *o, const char *key, char *buf, size_t n)
{
  double v;

  if (!get_number (o, key, &v))
    return "-";
  return human_size ((uint64_t) v, buf, n);
}

void
batch_report_print_table (json_object *report, FILE *f)
{
  json_object *a;
  size_t n;

  json_object_object_get_ex (report, "servers", &a);
  n = json_object_array_length (a);
  fprintf (f, "%-16s %-11s %-8s %9s %10s %10s %6s %-16s %s\n",
           "SERVER", "STATUS", "STAGE", "TIME", "SOURCE", "OUTPUT", "RATIO",
           "SMOKE", "REASON");
  for (size_t i = 0; i < n; i++) {
    json_object *s = json_object_array_get_idx (a, i), *sm = NULL, *times;
    char t[32], b1[32], b2[32], ratio[16] = "-", smoke[64] = "-";
    double v, total = 0;
    const char *stage = get_string (s, "stage"), *reason = get_string (s, "reason");

    get_number (s, "total_seconds", &total);
    if (get_number (s, "compression_ratio", &v))
      snprintf (ratio, sizeof ratio, "%.2f", v);
    if (json_object_object_get_ex (s, "smoke", &sm) && sm) {
      const char *verdict = get_string (sm, "verdict");
      if (get_number (sm, "boot_seconds", &v))
        snprintf (smoke, sizeof smoke, "%s %.0fs", verdict ? verdict : "?", v);
      else
        snprintf (smoke, sizeof smoke, "%s", verdict ? verdict : "?");
    }
    json_object_object_get_ex (s, "seconds", &times);
    fprintf (f, "%-16s %-11s %-8s %9s %10s %10s %6s %-16s %s\n",
             get_string (s, "name"), get_string (s, "status"),
             stage ? stage : "-", fmt_seconds (total, t, sizeof t),
             fmt_bytes (s, "source_bytes", b1, sizeof b1),
             fmt_bytes (s, "output_bytes", b2, sizeof b2),
             ratio, smoke, reason ? reason : "");
  }
  {
    int passed = 0, failed = 0, total = 0, other = 0;
    json_object *v;
    if (json_object_object_get_ex (report, "passed", &v)) passed = json_object_get_int (v);
    if (json_object_object_get_ex (report, "failed", &v)) failed = json_object_get_int (v);
    if (json_object_object_get_ex (report, "total", &v)) total = json_object_get_int (v);
    if (json_object_object_get_ex (report, "not_finished", &v)) other = json_object_get_int (v);
    fprintf (f, "%d of %d passed, %d failed", passed, total, failed);
    if (other)
      fprintf (f, ", %d not finished", other);
    fprintf (f, "\n");
  }
}

/* ---- report.html --------------------------------------------------------- */

struct html {
  char *buf;
  size_t len, cap;
};

static void
html_add (struct html *h, const char *s)
{
  size_t l = strlen (s);

  while (h->len + l + 1 > h->cap) {
    h->cap = h->cap ? h->cap * 2 : 4096;
    h->buf = xrealloc (h->buf, h->cap);
  }
  memcpy (h->buf + h->len, s, l + 1);
  h->len += l;
}

static void
html_text (struct html *h, const char *s)
{
  char *e = batch_html_escape (s ? s : "");
  html_add (h, e);
  free (e);
}

static void
html_cell (struct html *h, const char *s)
{
  html_add (h, "<td>");
  html_text (h, s);
  html_add (h, "</td>");
}

/* A link to PATH, relative to the report's directory when under it. */
static void
html_link (struct html *h, const char *dir, const char *path, const char *label)
{
  char *rel;

  if (!path) {
    html_add (h, "<td>-</td>");
    return;
  }
  rel = batch_path_from (dir, path);
  html_add (h, "<td><a href=\"");
  /* Path characters that would end or bend a URL are percent-encoded. */
  for (const char *p = rel; *p; p++) {
    char one[8];
    if (strchr ("%\"'<>&# ?", *p) || (unsigned char) *p < 0x20)
      snprintf (one, sizeof one, "%%%02X", (unsigned char) *p);
    else
      snprintf (one, sizeof one, "%c", *p);
    html_add (h, one);
  }
  html_add (h, "\">");
  html_text (h, label);
  html_add (h, "</a></td>");
  free (rel);
}

static char *
report_html (const struct batch_plan *plan, json_object *report)
{
  struct html h = { 0 };
  json_object *a;
  char buf[64];

  html_add (&h, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<title>p2v batch report: ");
  html_text (&h, plan->abs_path);
  html_add (&h, "</title>\n<style>\n"
            "body { font-family: sans-serif; margin: 2em; }\n"
            "table { border-collapse: collapse; }\n"
            "th, td { border: 1px solid #999; padding: 0.3em 0.6em; text-align: left; }\n"
            "td.PASS { background: #cfc; } td.FAIL { background: #fcc; }\n"
            "td.INTERRUPTED, td.PENDING { background: #ffc; }\n"
            "</style>\n</head>\n<body>\n<h1>p2v batch report</h1>\n<p>Plan <code>");
  html_text (&h, plan->abs_path);
  html_add (&h, "</code>, generated ");
  html_text (&h, get_string (report, "generated_at"));
  {
    json_object *v;
    int passed = 0, total = 0;
    if (json_object_object_get_ex (report, "passed", &v)) passed = json_object_get_int (v);
    if (json_object_object_get_ex (report, "total", &v)) total = json_object_get_int (v);
    snprintf (buf, sizeof buf, ": %d of %d passed.</p>\n", passed, total);
    html_add (&h, buf);
  }
  html_add (&h, "<table>\n<tr><th>server</th><th>status</th><th>stage reached</th>"
            "<th>reason</th><th>fetch</th><th>convert</th><th>inject</th><th>smoke</th>"
            "<th>total</th><th>source</th><th>output</th><th>compression</th>"
            "<th>smoke verdict</th><th>boot time</th><th>log</th><th>libvirt XML</th></tr>\n");
  json_object_object_get_ex (report, "servers", &a);
  for (size_t i = 0; i < json_object_array_length (a); i++) {
    json_object *s = json_object_array_get_idx (a, i), *times = NULL, *sm = NULL;
    const char *status = get_string (s, "status");
    double v;

    html_add (&h, "<tr>");
    html_cell (&h, get_string (s, "name"));
    html_add (&h, "<td class=\"");
    html_text (&h, status);
    html_add (&h, "\">");
    html_text (&h, status);
    html_add (&h, "</td>");
    html_cell (&h, get_string (s, "stage") ? get_string (s, "stage") : "-");
    html_cell (&h, get_string (s, "reason") ? get_string (s, "reason") : "");
    json_object_object_get_ex (s, "seconds", &times);
    for (int st = 0; st < BATCH_N_STAGES; st++) {
      if (get_number (times, batch_stage_name (st), &v))
        snprintf (buf, sizeof buf, "%.1f s", v);
      else
        snprintf (buf, sizeof buf, "-");
      html_cell (&h, buf);
    }
    get_number (s, "total_seconds", &v);
    snprintf (buf, sizeof buf, "%.1f s", v);
    html_cell (&h, buf);
    html_cell (&h, fmt_bytes (s, "source_bytes", buf, sizeof buf));
    html_cell (&h, fmt_bytes (s, "output_bytes", buf, sizeof buf));
    if (get_number (s, "compression_ratio", &v))
      snprintf (buf, sizeof buf, "%.2f:1", v);
    else
      snprintf (buf, sizeof buf, "-");
    html_cell (&h, buf);
    json_object_object_get_ex (s, "smoke", &sm);
    html_cell (&h, sm && get_string (sm, "verdict") ? get_string (sm, "verdict") : "-");
    if (sm && get_number (sm, "boot_seconds", &v))
      snprintf (buf, sizeof buf, "%.1f s", v);
    else
      snprintf (buf, sizeof buf, "-");
    html_cell (&h, buf);
    html_link (&h, plan->batch_dir, get_string (s, "log"), "log");
    html_link (&h, plan->batch_dir, get_string (s, "libvirt_xml"), "XML");
    html_add (&h, "</tr>\n");
  }
  html_add (&h, "</table>\n</body>\n</html>\n");
  return h.buf;
}

int
batch_report_write (const struct batch_plan *plan, json_object *report)
{
  char *json_path = xasprintf ("%s/report.json", plan->batch_dir);
  char *html_path = xasprintf ("%s/report.html", plan->batch_dir);
  char *html = report_html (plan, report);
  char *text = xasprintf ("%s\n", json_object_to_json_string_ext (
                            report, JSON_C_TO_STRING_PRETTY
                            | JSON_C_TO_STRING_NOSLASHESCAPE));
  int r = write_file_atomic (json_path, text) == 0
    && write_file_atomic (html_path, html) == 0 ? 0 : -1;

  free (text);
  free (html);
  free (json_path);
  free (html_path);
  return r;
}
