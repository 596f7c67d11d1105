/* test-batch.c: the `p2v batch` plan parser (values, defaults, every
 * error named by its line), the command lines it builds, shell quoting,
 * HTML escaping and the default number of jobs. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "unit.h"
#include "batch.h"

static char dir[] = "/tmp/p2v-test-batch.XXXXXX";

static char *
write_plan (const char *name, const char *text)
{
  char *path = xasprintf ("%s/%s", dir, name);
  FILE *f = fopen (path, "w");

  if (!f)
    abort ();
  fputs (text, f);
  fclose (f);
  return path;
}

static void
touch (const char *name)
{
  char *p = xasprintf ("%s/%s", dir, name);
  FILE *f = fopen (p, "w");
  if (f)
    fclose (f);
  free (p);
}

/* The plan fails and the first error names FILE:LINE and WORDS. */
static void
check_plan_error (const char *text, int line, const char *words)
{
  char *path = write_plan ("bad.ini", text);
  char *where = xasprintf ("bad.ini:%d: ", line);
  struct batch_plan *p = batch_plan_load (path);

  CHECK (p == NULL);
  if (!strstr (p2v_last_error (), where) || !strstr (p2v_last_error (), words)) {
    unit_failed++;
    fprintf (stderr, "FAIL: error '%s' lacks '%s' or '%s'\n", p2v_last_error (),
             where, words);
  }
  else
    unit_passed++;
  batch_plan_free (p);
  free (where);
  free (path);
}

static char *
stage_line (const struct batch_server *s, enum batch_stage st)
{
  struct batch_command cmd;
  char *line;

  batch_command_build (s, st, &cmd);
  line = batch_command_line (&cmd);
  batch_command_free (&cmd);
  return line;
}

static void
test_good_plan (void)
{
  char *path = write_plan ("good.ini",
    "# a comment\n"
    "; another\n"
    "[defaults]\n"
    "output-dir = out\n"
    "compress = 6\n"
    "memory = 2G\n"
    "jobs = 3\n"
    "\n"
    "[web01]\n"
    "source = a.img   ; inline comment\n"
    "vcpus = 4\n"
    "mac = 52:54:00:aa:bb:cc\n"
    "\n"
    "[db.2]\n"
    "source = sub/../b img.raw\n"
    "format = raw\n"
    "compress = no\n"
    "inject = no\n"
    "smoke = off\n"
    "output = elsewhere/db.img\n"
    "\n"
    "[remote]\n"
    "source = ssh://root@host.example:2222/srv/bundle.tar\n"
    "smoke-timeout = 900\n"
    "accel = tcg\n");
  struct batch_plan *p = batch_plan_load (path);
  char *l, *exp;

  CHECK (p != NULL);
  if (!p) {
    fprintf (stderr, "error: %s\n", p2v_last_error ());
    free (path);
    return;
  }
  CHECK (p->n_servers == 3);
  CHECK (p->jobs == 3);
  exp = xasprintf ("%s/out", dir);
  CHECK (strcmp (p->batch_dir, exp) == 0);
  free (exp);
  exp = xasprintf ("%s/good.ini.state", dir);
  CHECK (strcmp (p->state_path, exp) == 0);
  free (exp);

  CHECK (strcmp (p->servers[0].name, "web01") == 0);
  CHECK (p->servers[0].line == 9);
  CHECK (p->servers[0].compress == 6);
  CHECK (p->servers[0].memory_mb == 2048);
  CHECK (p->servers[0].vcpus == 4);
  CHECK (p->servers[0].inject && p->servers[0].smoke);
  CHECK (strcmp (p->servers[0].mac, "52:54:00:aa:bb:cc") == 0);
  exp = xasprintf ("%s/a.img", dir);
  CHECK (strcmp (p->servers[0].source, exp) == 0);
  free (exp);
  exp = xasprintf ("%s/out/web01.qcow2", dir);
  CHECK (strcmp (p->servers[0].output, exp) == 0);
  free (exp);
  CHECK (batch_stage_enabled (&p->servers[0], BATCH_CONVERT));
  CHECK (batch_stage_enabled (&p->servers[0], BATCH_INJECT));
  CHECK (!batch_stage_enabled (&p->servers[0], BATCH_FETCH));

  l = stage_line (&p->servers[0], BATCH_CONVERT);
  exp = xasprintf ("p2v convert %s/a.img -o %s/out/web01.qcow2 -O qcow2 --compress=6 "
                   "--no-inject --no-smoke --json >%s/out/web01.convert.json "
                   "2>>%s/out/web01.log", dir, dir, dir, dir);
  CHECK (strcmp (l, exp) == 0);
  if (strcmp (l, exp)) fprintf (stderr, "got  %s\nwant %s\n", l, exp);
  free (l);
  free (exp);
  l = stage_line (&p->servers[0], BATCH_INJECT);
  exp = xasprintf ("p2v inject %s/out/web01.qcow2 -f qcow2 --mac 52:54:00:aa:bb:cc "
                   ">>%s/out/web01.log 2>&1", dir, dir);
  CHECK (strcmp (l, exp) == 0);
  free (l);
  free (exp);
  l = stage_line (&p->servers[0], BATCH_SMOKE);
  exp = xasprintf ("p2v smoke %s/out/web01.qcow2 -f qcow2 --json --keep-log "
                   "%s/out/web01.console.log --mac 52:54:00:aa:bb:cc --memory 2048 "
                   "--cpus 4 >%s/out/web01.smoke.json 2>>%s/out/web01.log",
                   dir, dir, dir, dir);
  CHECK (strcmp (l, exp) == 0);
  if (strcmp (l, exp)) fprintf (stderr, "got  %s\nwant %s\n", l, exp);
  free (l);
  free (exp);

  /* A source with a space is quoted; ".." is resolved; output given. */
  CHECK (strcmp (p->servers[1].format, "raw") == 0);
  CHECK (p->servers[1].compress == 0);
  CHECK (!p->servers[1].inject && !p->servers[1].smoke);
  exp = xasprintf ("%s/elsewhere/db.img", dir);
  CHECK (strcmp (p->servers[1].output, exp) == 0);
  free (exp);
  l = stage_line (&p->servers[1], BATCH_CONVERT);
  exp = xasprintf ("p2v convert '%s/b img.raw' -o %s/elsewhere/db.img -O raw", dir, dir);
  CHECK (strncmp (l, exp, strlen (exp)) == 0);
  free (l);
  free (exp);

  /* ssh: a fetch stage first, convert reads what it fetched. */
  CHECK (p->servers[2].source_ssh);
  CHECK (batch_stage_enabled (&p->servers[2], BATCH_FETCH));
  CHECK (p->servers[2].smoke_timeout == 900);
  l = stage_line (&p->servers[2], BATCH_FETCH);
  CHECK (strstr (l, "scp -B -r -P 2222 -- root@host.example:/srv/bundle.tar ") != NULL);
  exp = xasprintf ("mv -T -- %s/out/.remote.source.tar.partial %s/out/remote.source.tar",
                   dir, dir);
  CHECK (strstr (l, exp) != NULL);
  free (exp);
  free (l);
  l = stage_line (&p->servers[2], BATCH_CONVERT);
  exp = xasprintf ("p2v convert %s/out/remote.source.tar -o", dir);
  CHECK (strncmp (l, exp, strlen (exp)) == 0);
  free (exp);
  free (l);
  l = stage_line (&p->servers[2], BATCH_SMOKE);
  CHECK (strstr (l, " --timeout 900 --accel tcg ") != NULL);
  free (l);

  batch_plan_free (p);
  free (path);
}

static void
test_bad_plans (void)
{
  check_plan_error ("[a]\nsource = a.img\ncolour = blue\n", 3, "unknown key 'colour'");
  check_plan_error ("[defaults]\nformat = vmdk\n[a]\nsource = a.img\n", 2,
                    "format 'vmdk' is not qcow2 or raw");
  check_plan_error ("[a]\n\nformat = raw\n", 1, "server 'a' has no source");
  check_plan_error ("[a]\nsource = missing.img\n", 2, "source 'missing.img': no such file");
  check_plan_error ("[a]\nsource = a.img\noutput = o.qcow2\n[b]\nsource = b img.raw\n"
                    "output = ./x/../o.qcow2\n", 6, "as server 'a' (line 3) does");
  check_plan_error ("[a]\nsource = a.img\n[b]\nsource = a.img\n[a]\nsource = a.img\n", 5,
                    "server 'a' is named twice (first on line 1)");
  check_plan_error ("[a]\nsource = a.img\nthis is not ini\n", 3, "not a [section] header");
  check_plan_error ("source = a.img\n[a]\nsource = a.img\n", 1, "outside a section");
  check_plan_error ("[a]\nsource = a.img\nsource = a.img\n", 3, "set twice");
  check_plan_error ("[a]\nsource = a.img\nformat = raw\ncompress = yes\n", 4,
                    "compress needs format qcow2");
  check_plan_error ("[a]\nsource = a.img\nmac = 01:00:5e:00:00:01\n", 3, "not a unicast");
  check_plan_error ("[a]\nsource = a.img\nmac = 52:54:00:12:34\n", 3, "mac '52:54:00:12:34'");
  check_plan_error ("[a]\nsource = a.img\nvcpus = 0\n", 3, "vcpus '0'");
  check_plan_error ("[a]\nsource = a.img\nmemory = 64\n", 3, "memory '64'");
  check_plan_error ("[a]\nsource = a.img\nmemory = 1.5G\n", 3, "memory '1.5G'");
  check_plan_error ("[a]\nsource = a.img\ninject = maybe\n", 3, "inject 'maybe' is not yes or no");
  check_plan_error ("[a]\nsource = a.img\naccel = hvf\n", 3, "accel 'hvf'");
  check_plan_error ("[a]\nsource = a.img\njobs = 2\n", 3, "'jobs' belongs in [defaults]");
  check_plan_error ("[defaults]\nsource = a.img\n[a]\nsource = a.img\n", 2,
                    "'source' belongs in a server's section");
  check_plan_error ("[defaults]\njobs = 0\n[a]\nsource = a.img\n", 2, "jobs '0'");
  check_plan_error ("[../etc]\nsource = a.img\n", 1, "server name '../etc'");
  check_plan_error ("[a]\nsource = ssh://-oProxyCommand=x/p\n", 2, "option-like host");
  check_plan_error ("[a]\nsource = ssh://host\n", 2, "is not ssh://");
  check_plan_error ("[a]\nsource = ssh://h:99999/p\n", 2, "port");
  check_plan_error ("[a]\nsource = a.img\noutput = a.img\n", 2, "is also the output");
  check_plan_error ("[a]\nsource = a.img\noutput = o.qcow2\noutput-dir = d\n", 3,
                    "output or output-dir, not both");
  check_plan_error ("", 1, "lists no server");
  check_plan_error ("[a]\nsource = a.img\nsmoke-timeout = 0\n", 3, "smoke-timeout '0'");
  {
    /* A line longer than the limit is an error, not two lines. */
    char *text = xmalloc (10000);
    strcpy (text, "[a]\nsource = a.img\n; ");
    memset (text + strlen (text), 'x', 5000);
    strcpy (text + strlen ("[a]\nsource = a.img\n; ") + 5000, "\n");
    check_plan_error (text, 3, "longer than");
    free (text);
  }
  {
    /* The [defaults] error is reported once, not once per server. */
    char *path = write_plan ("bad.ini", "[defaults]\nformat = vmdk\n[a]\nsource = a.img\n"
                             "[b]\nsource = a.img\n");
    CHECK (batch_plan_load (path) == NULL);
    free (path);
  }
}

static char *
slurp (const char *path)
{
  FILE *f = fopen (path, "r");
  char *buf = xcalloc (1, 1 << 20);

  if (f) {
    size_t n = fread (buf, 1, (1 << 20) - 1, f);
    buf[n] = '\0';
    fclose (f);
  }
  return buf;
}

/* The report from a state: statuses mapped, hostile text escaped in the
 * HTML, links relative to the report, a libvirt XML found beside OUT. */
static void
test_report (void)
{
  char *path = write_plan ("report.ini",
    "[defaults]\noutput-dir = rep\ninject = no\nsmoke = no\n"
    "[ok]\nsource = a.img\n[bad]\nsource = a.img\n[never]\nsource = a.img\n");
  struct batch_plan *p = batch_plan_load (path);
  json_object *state, *ss, *report, *a, *v;
  char *html, *json_path, *html_path, *xml, *repdir;
  bool existed = true;

  CHECK (p != NULL);
  if (!p)
    return;
  repdir = xasprintf ("%s/rep", dir);
  mkdir (repdir, 0755);
  xml = xasprintf ("%s/rep/ok.qcow2.xml", dir);
  touch ("rep/ok.qcow2.xml");
  state = batch_state_load (p->state_path, &existed);
  CHECK (state != NULL && !existed);
  ss = batch_state_server (state, "ok");
  json_object_object_add (ss, "status", json_object_new_string ("passed"));
  json_object_object_add (ss, "stage", json_object_new_string ("convert"));
  ss = batch_state_server (state, "bad");
  json_object_object_add (ss, "status", json_object_new_string ("failed"));
  json_object_object_add (ss, "stage", json_object_new_string ("convert"));
  json_object_object_add (ss, "reason",
                          json_object_new_string ("<script>alert('x')</script> & \"co\""));
  CHECK (batch_state_save (p->state_path, state) == 0);
  json_object_put (state);
  state = batch_state_load (p->state_path, &existed);
  CHECK (state != NULL && existed);

  report = batch_report_build (p, state);
  CHECK (json_object_object_get_ex (report, "passed", &v) && json_object_get_int (v) == 1);
  CHECK (json_object_object_get_ex (report, "failed", &v) && json_object_get_int (v) == 1);
  CHECK (json_object_object_get_ex (report, "not_finished", &v) && json_object_get_int (v) == 1);
  json_object_object_get_ex (report, "servers", &a);
  CHECK (json_object_array_length (a) == 3);
  CHECK (strcmp (json_object_get_string (json_object_object_get (
                   json_object_array_get_idx (a, 2), "status")), "PENDING") == 0);
  CHECK (strcmp (json_object_get_string (json_object_object_get (
                   json_object_array_get_idx (a, 0), "libvirt_xml")), xml) == 0);
  CHECK (batch_report_write (p, report) == 0);

  html_path = xasprintf ("%s/rep/report.html", dir);
  json_path = xasprintf ("%s/rep/report.json", dir);
  html = slurp (html_path);
  CHECK (strstr (html, "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;co&quot;") != NULL);
  CHECK (strstr (html, "<script") == NULL);
  CHECK (strstr (html, "<a href=\"ok.log\">log</a>") != NULL);
  CHECK (strstr (html, "<a href=\"ok.qcow2.xml\">XML</a>") != NULL);
  CHECK (strstr (html, "<td class=\"FAIL\">FAIL</td>") != NULL);
  free (html);
  {
    json_object *back = json_object_from_file (json_path);
    CHECK (back != NULL && json_object_equal (back, report));
    json_object_put (back);
  }

  /* A state file that is not ours is refused, not overwritten. */
  {
    FILE *f = fopen (p->state_path, "w");
    fputs ("[1, 2]", f);
    fclose (f);
    CHECK_ERROR (batch_state_load (p->state_path, &existed) == NULL, "is not a p2v batch state");
    f = fopen (p->state_path, "w");
    fputs ("{ not json", f);
    fclose (f);
    CHECK_ERROR (batch_state_load (p->state_path, &existed) == NULL, "cannot read state file");
  }

  json_object_put (report);
  json_object_put (state);
  batch_plan_free (p);
  free (html_path);
  free (json_path);
  free (xml);
  free (repdir);
  free (path);
}

static void
test_helpers (void)
{
  char *q;

  q = batch_shell_quote ("/srv/a.img");
  CHECK (strcmp (q, "/srv/a.img") == 0);
  free (q);
  q = batch_shell_quote ("it's $HOME");
  CHECK (strcmp (q, "'it'\\''s $HOME'") == 0);
  free (q);
  q = batch_shell_quote ("");
  CHECK (strcmp (q, "''") == 0);
  free (q);
  q = batch_html_escape ("<a href=\"x\">&'</a>");
  CHECK (strcmp (q, "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;") == 0);
  free (q);
  q = batch_path_from ("/srv/out", "/srv/out/web.log");
  CHECK (strcmp (q, "web.log") == 0);
  free (q);
  q = batch_path_from ("/srv/out", "/srv/outside/web.log");
  CHECK (strcmp (q, "/srv/outside/web.log") == 0);
  free (q);

  /* One per core, one per 2 GiB above 1 GiB, at least one. */
  CHECK (batch_default_jobs (8, 24ULL << 30) == 8);
  CHECK (batch_default_jobs (8, 7ULL << 30) == 3);
  CHECK (batch_default_jobs (2, 24ULL << 30) == 2);
  CHECK (batch_default_jobs (16, 1ULL << 30) == 1);
  CHECK (batch_default_jobs (0, 0) == 1);

  CHECK (batch_stage_by_name ("inject") == BATCH_INJECT);
  CHECK (batch_stage_by_name ("bogus") == -1);
}

int
main (void)
{
  char *sub;

  p2v_error_set_quiet (true);
  if (!mkdtemp (dir))
    return 1;
  touch ("a.img");
  touch ("b img.raw");
  sub = xasprintf ("%s/sub", dir);
  mkdir (sub, 0755);
  free (sub);

  test_good_plan ();
  test_bad_plans ();
  test_helpers ();
  test_report ();

  {
    char *cmd = xasprintf ("rm -rf '%s'", dir);
    if (system (cmd) != 0)
      unit_failed++;
    free (cmd);
  }
  return unit_finish ("test-batch");
}
