/* fstab.c: device names in file-system tables (/etc/fstab,
 * /etc/crypttab) and in VAR=device settings become UUID= specs.  Only the
 * one field changes; spacing, comments and other lines stay as written. */
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "inject-int.h"

/* Start and length of whitespace-separated field N of a line. */
static bool
find_field (const char *line, size_t len, unsigned n, const char **start,
            size_t *flen)
{
  const char *p = line, *end = line + len;

  for (unsigned i = 0;; i++) {
    const char *f;
    p = skip_blanks (p, end);
    if (p == end)
      return false;
    f = p;
    while (p < end && *p != ' ' && *p != '\t')
      p++;
    if (i == n) {
      *start = f;
      *flen = p - f;
      return true;
    }
  }
}

static bool
is_comment_or_blank (const char *line, size_t len)
{
  const char *p = skip_blanks (line, line + len);
  return p == line + len || *p == '#';
}

/* Copy one line to out, with the old name at [at, at + oldlen) replaced
 * by spec when there is one, and its newline if it had one. */
static void
emit_line (struct p2v_strbuf *out, const char *line, size_t len, bool nl,
           const char *at, size_t oldlen, const char *spec)
{
  if (spec) {
    sb_addn (out, line, at - line);
    sb_add (out, spec);
    sb_addn (out, at + oldlen, len - (at - line) - oldlen);
  }
  else
    sb_addn (out, line, len);
  if (nl)
    sb_add (out, "\n");
}

char *
spec_table_rewrite (const char *text, unsigned field, unsigned context_field,
                    p2v_resolve_fn resolve, void *opaque,
                    struct p2v_edits *edits)
{
  struct p2v_strbuf out = { 0 };
  size_t pos = 0, len;
  const char *line;

  while (text_next_line (text, &pos, &line, &len)) {
    const char *f = NULL, *ctx;
    size_t flen = 0, ctxlen;
    char *name = NULL, *spec = NULL;
    bool nl = line[len] == '\n';

    if (!is_comment_or_blank (line, len)
        && find_field (line, len, field, &f, &flen)) {
      name = strndup (f, flen);
      if (!name)
        p2v_die ("out of memory");
      if (devname_is_unstable (name))
        spec = resolve (name, opaque);
    }
    emit_line (&out, line, len, nl, f, flen, spec);
    if (spec) {
      char *why, *context;
      if (find_field (line, len, context_field, &ctx, &ctxlen))
        context = ctxlen == 4 && strncmp (ctx, "none", 4) == 0
          ? strdup ("swap") : strndup (ctx, ctxlen);
      else
        context = xstrdup (name);
      if (!context)
        p2v_die ("out of memory");
      why = xasprintf ("%s: %s", context, devname_why (name));
      edits_add (edits, name, spec, why);
      free (why);
      free (context);
    }
    free (name);
    free (spec);
  }
  return sb_steal (&out);
}

char *
shellvar_device_rewrite (const char *text, const char *var,
                         p2v_resolve_fn resolve, void *opaque,
                         struct p2v_edits *edits)
{
  struct p2v_strbuf out = { 0 };
  size_t pos = 0, len, vlen = strlen (var);
  const char *line;

  while (text_next_line (text, &pos, &line, &len)) {
    const char *end = line + len;
    const char *p = skip_blanks (line, end);
    char *spec = NULL, *name = NULL;
    const char *v = NULL, *vend = NULL;
    bool nl = *end == '\n';

    if ((size_t) (end - p) > vlen && strncmp (p, var, vlen) == 0
        && p[vlen] == '=') {
      char quote = 0;
      v = p + vlen + 1;
      if (v < end && (*v == '"' || *v == '\''))
        quote = *v++;
      vend = v;
      while (vend < end && (quote ? *vend != quote
                            : (*vend != ' ' && *vend != '\t' && *vend != '#')))
        vend++;
      name = strndup (v, vend - v);
      if (!name)
        p2v_die ("out of memory");
      if (devname_is_unstable (name))
        spec = resolve (name, opaque);
    }
    emit_line (&out, line, len, nl, v, vend - v, spec);
    if (spec) {
      char *before = xasprintf ("%s=%s", var, name);
      char *after = xasprintf ("%s=%s", var, spec);
      edits_add (edits, before, after, devname_why (name));
      free (before);
      free (after);
    }
    free (name);
    free (spec);
  }
  return sb_steal (&out);
}

bool
fstab_parse_line (const char *line, size_t len, char **spec,
                  char **mountpoint, char **type)
{
  const char *f[3];
  size_t flen[3];

  if (is_comment_or_blank (line, len))
    return false;
  for (unsigned i = 0; i < 3; i++)
    if (!find_field (line, len, i, &f[i], &flen[i]))
      return false;
  *spec = strndup (f[0], flen[0]);
  *mountpoint = strndup (f[1], flen[1]);
  *type = strndup (f[2], flen[2]);
  if (!*spec || !*mountpoint || !*type)
    p2v_die ("out of memory");
  return true;
}
