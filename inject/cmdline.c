/* cmdline.c: root= and resume= on kernel command lines, wherever a boot
 * loader keeps them (/etc/default/grub, BLS entries, menu.lst, extlinux),
 * and the one debconf answer that names the boot disk. */
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "inject-int.h"

static const char *const device_params[] = { "root=", "resume=" };

static bool
is_token_start (const char *text, const char *p)
{
  return p == text || p[-1] == ' ' || p[-1] == '\t' || p[-1] == '"'
    || p[-1] == '\'' || p[-1] == '\n';
}

static bool
is_token_end (char c)
{
  return c == '\0' || c == ' ' || c == '\t' || c == '"' || c == '\''
    || c == '\n';
}

/* If P starts a root=/resume= parameter, its name length, else 0. */
static size_t
device_param_at (const char *text, const char *p)
{
  if (!is_token_start (text, p))
    return 0;
  for (size_t i = 0; i < ARRAY_SIZE (device_params); i++) {
    size_t n = strlen (device_params[i]);
    if (strncmp (p, device_params[i], n) == 0)
      return n;
  }
  return 0;
}

char *
cmdline_rewrite (const char *cmdline, p2v_resolve_fn resolve, void *opaque,
                 struct p2v_edits *edits)
{
  struct p2v_strbuf out = { 0 };
  const char *p = cmdline;

  while (*p) {
    size_t n = device_param_at (cmdline, p);
    if (n > 0) {
      const char *v = p + n, *vend = v;
      char *name, *spec = NULL;
      while (!is_token_end (*vend))
        vend++;
      name = strndup (v, vend - v);
      if (!name)
        p2v_die ("out of memory");
      if (devname_is_unstable (name))
        spec = resolve (name, opaque);
      if (spec) {
        char *before = strndup (p, vend - p);
        char *after = xasprintf ("%.*s%s", (int) n, p, spec);
        if (!before)
          p2v_die ("out of memory");
        sb_add (&out, after);
        edits_add (edits, before, after, devname_why (name));
        free (before);
        free (after);
      }
      else
        sb_addn (&out, p, vend - p);
      free (name);
      free (spec);
      p = vend;
      continue;
    }
    sb_addn (&out, p, 1);
    p++;
  }
  return sb_steal (&out);
}

bool
cmdline_has_unstable (const char *text)
{
  for (const char *p = text; *p; p++) {
    size_t n = device_param_at (text, p);
    if (n > 0) {
      const char *v = p + n, *vend = v;
      char *name;
      bool unstable;
      while (!is_token_end (*vend))
        vend++;
      name = strndup (v, vend - v);
      if (!name)
        p2v_die ("out of memory");
      unstable = devname_is_unstable (name);
      free (name);
      if (unstable)
        return true;
    }
  }
  return false;
}

/* The line sets VAR (VAR=...), possibly after blanks or "export ". */
static const char *
assignment_value (const char *line, size_t len, const char *var)
{
  const char *end = line + len, *p = skip_blanks (line, end);
  size_t n = strlen (var);

  if ((size_t) (end - p) > 7 && strncmp (p, "export ", 7) == 0)
    p = skip_blanks (p + 7, end);
  if ((size_t) (end - p) > n && strncmp (p, var, n) == 0 && p[n] == '=')
    return p + n + 1;
  return NULL;
}

static bool
value_is_true (const char *v, const char *end)
{
  size_t n = end - v;
  while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
    n--;
  return (n == 4 && strncmp (v, "true", 4) == 0)
    || (n == 6 && (strncmp (v, "\"true\"", 6) == 0
                   || strncmp (v, "'true'", 6) == 0));
}

bool
grub_default_disables_uuid (const char *text)
{
  size_t pos = 0, len;
  const char *line, *v;
  bool disabled = false;

  /* The last assignment wins, as when the shell sources the file. */
  while (text_next_line (text, &pos, &line, &len))
    if ((v = assignment_value (line, len, "GRUB_DISABLE_LINUX_UUID")))
      disabled = value_is_true (v, line + len);
  return disabled;
}

char *
grub_default_rewrite (const char *text, bool want_uuid,
                      p2v_resolve_fn resolve, void *opaque,
                      struct p2v_edits *edits)
{
  struct p2v_strbuf out = { 0 };
  size_t pos = 0, len;
  const char *line, *v;

  while (text_next_line (text, &pos, &line, &len)) {
    bool nl = line[len] == '\n';

    if ((v = assignment_value (line, len, "GRUB_CMDLINE_LINUX"))
        || (v = assignment_value (line, len, "GRUB_CMDLINE_LINUX_DEFAULT"))) {
      char *value = strndup (v, line + len - v), *nv;
      if (!value)
        p2v_die ("out of memory");
      nv = cmdline_rewrite (value, resolve, opaque, edits);
      sb_addn (&out, line, v - line);
      sb_add (&out, nv);
      free (value);
      free (nv);
    }
    else if (want_uuid
             && (v = assignment_value (line, len, "GRUB_DISABLE_LINUX_UUID"))
             && value_is_true (v, line + len)) {
      char *before = strndup (line, len);
      if (!before)
        p2v_die ("out of memory");
      sb_addn (&out, line, v - line);
      sb_add (&out, "false");
      edits_add (edits, before, "GRUB_DISABLE_LINUX_UUID=false",
                 "grub-mkconfig would name the root file system by its "
                 "disk device, which virtio renames");
      free (before);
    }
    else
      sb_addn (&out, line, len);
    if (nl)
      sb_add (&out, "\n");
  }
  return sb_steal (&out);
}

char *
kernel_lines_rewrite (const char *text, const char *const *keywords,
                      p2v_resolve_fn resolve, void *opaque,
                      struct p2v_edits *edits)
{
  struct p2v_strbuf out = { 0 };
  size_t pos = 0, len;
  const char *line;

  while (text_next_line (text, &pos, &line, &len)) {
    const char *end = line + len, *p = skip_blanks (line, end);
    bool nl = *end == '\n', done = false;

    for (size_t i = 0; keywords[i] && !done; i++) {
      size_t n = strlen (keywords[i]);
      if ((size_t) (end - p) > n && strncmp (p, keywords[i], n) == 0
          && (p[n] == ' ' || p[n] == '\t')) {
        char *rest = strndup (p + n, end - p - n), *nr;
        if (!rest)
          p2v_die ("out of memory");
        nr = cmdline_rewrite (rest, resolve, opaque, edits);
        sb_addn (&out, line, p + n - line);
        sb_add (&out, nr);
        free (rest);
        free (nr);
        done = true;
      }
    }
    if (!done)
      sb_addn (&out, line, len);
    if (nl)
      sb_add (&out, "\n");
  }
  return sb_steal (&out);
}

char *
debconf_value (const char *config_dat, const char *question)
{
  size_t pos = 0, len, qlen = strlen (question);
  const char *line;
  bool in_question = false;

  while (text_next_line (config_dat, &pos, &line, &len)) {
    if (len == 0) {
      in_question = false;
      continue;
    }
    if (len > 6 && strncmp (line, "Name: ", 6) == 0)
      in_question = len - 6 == qlen && strncmp (line + 6, question, qlen) == 0;
    else if (in_question && len >= 6 && strncmp (line, "Value:", 6) == 0) {
      const char *v = skip_blanks (line + 6, line + len);
      char *r = strndup (v, line + len - v);
      if (!r)
        p2v_die ("out of memory");
      return r;
    }
  }
  return NULL;
}
