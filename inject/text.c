/* text.c: the small text tools the inject transforms share: a growing
 * string, edit and string lists, line walking, quoting, MAC addresses. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "inject-int.h"

static void
sb_grow (struct p2v_strbuf *sb, size_t more)
{
  if (sb->len + more + 1 > sb->cap) {
    size_t cap = sb->cap ? sb->cap : 64;
    while (cap < sb->len + more + 1)
      cap *= 2;
    sb->s = xrealloc (sb->s, cap);
    sb->cap = cap;
  }
}

void
sb_addn (struct p2v_strbuf *sb, const char *s, size_t n)
{
  sb_grow (sb, n);
  memcpy (sb->s + sb->len, s, n);
  sb->len += n;
  sb->s[sb->len] = '\0';
}

void
sb_add (struct p2v_strbuf *sb, const char *s)
{
  sb_addn (sb, s, strlen (s));
}

void
sb_addf (struct p2v_strbuf *sb, const char *fmt, ...)
{
  va_list ap;
  char *s;

  va_start (ap, fmt);
  if (vasprintf (&s, fmt, ap) == -1)
    s = NULL;
  va_end (ap);
  if (!s)
    p2v_die ("out of memory");
  sb_add (sb, s);
  free (s);
}

char *
sb_steal (struct p2v_strbuf *sb)
{
  char *s = sb->s ? sb->s : xstrdup ("");
  sb->s = NULL;
  sb->len = sb->cap = 0;
  return s;
}

void
sb_free (struct p2v_strbuf *sb)
{
  free (sb->s);
  sb->s = NULL;
  sb->len = sb->cap = 0;
}

void
edits_add (struct p2v_edits *e, const char *before, const char *after,
           const char *why)
{
  if (e->n == e->cap) {
    e->cap = e->cap ? e->cap * 2 : 4;
    e->v = xrealloc (e->v, e->cap * sizeof *e->v);
  }
  e->v[e->n].before = xstrdup (before ? before : "");
  e->v[e->n].after = xstrdup (after ? after : "");
  e->v[e->n].why = why ? xstrdup (why) : NULL;
  e->n++;
}

void
edits_free (struct p2v_edits *e)
{
  for (size_t i = 0; i < e->n; i++) {
    free (e->v[i].before);
    free (e->v[i].after);
    free (e->v[i].why);
  }
  free (e->v);
  e->v = NULL;
  e->n = e->cap = 0;
}

void
strings_add_nodup (struct p2v_strings *l, char *s)
{
  if (l->n + 1 >= l->cap) {
    l->cap = l->cap ? l->cap * 2 : 8;
    l->v = xrealloc (l->v, l->cap * sizeof *l->v);
  }
  l->v[l->n++] = s;
  l->v[l->n] = NULL;
}

void
strings_add (struct p2v_strings *l, const char *s)
{
  strings_add_nodup (l, xstrdup (s));
}

bool
strings_contains (const struct p2v_strings *l, const char *s)
{
  for (size_t i = 0; i < l->n; i++)
    if (strcmp (l->v[i], s) == 0)
      return true;
  return false;
}

void
strings_free (struct p2v_strings *l)
{
  for (size_t i = 0; i < l->n; i++)
    free (l->v[i]);
  free (l->v);
  l->v = NULL;
  l->n = l->cap = 0;
}

void
free_string_array (char **v)
{
  if (!v)
    return;
  for (size_t i = 0; v[i]; i++)
    free (v[i]);
  free (v);
}

bool
text_next_line (const char *text, size_t *pos, const char **line, size_t *len)
{
  const char *p = text + *pos, *eol;

  if (!*p)
    return false;
  eol = strchr (p, '\n');
  if (!eol)
    eol = p + strlen (p);
  *line = p;
  *len = eol - p;
  *pos = (eol - text) + (*eol ? 1 : 0);
  return true;
}

const char *
skip_blanks (const char *p, const char *end)
{
  while (p < end && (*p == ' ' || *p == '\t'))
    p++;
  return p;
}

char *
shell_quote (const char *s)
{
  struct p2v_strbuf sb = { 0 };

  sb_add (&sb, "'");
  for (; *s; s++) {
    if (*s == '\'')
      sb_add (&sb, "'\\''");
    else
      sb_addn (&sb, s, 1);
  }
  sb_add (&sb, "'");
  return sb_steal (&sb);
}

bool
is_safe_word (const char *s)
{
  if (!*s)
    return false;
  for (; *s; s++)
    if (!isalnum ((unsigned char) *s) && !strchr ("._+-~@:", *s))
      return false;
  return true;
}

bool
mac_is_valid (const char *s)
{
  for (int i = 0; i < 6; i++) {
    if (!isxdigit ((unsigned char) s[0]) || !isxdigit ((unsigned char) s[1]))
      return false;
    s += 2;
    if (i < 5) {
      if (*s != ':' && *s != '-')
        return false;
      s++;
    }
  }
  return *s == '\0';
}

char *
mac_normalize (const char *s)
{
  char *m;

  if (!s || !mac_is_valid (s))
    return NULL;
  m = xstrdup (s);
  for (char *p = m; *p; p++)
    *p = *p == '-' ? ':' : tolower ((unsigned char) *p);
  return m;
}

bool
mac_equal (const char *a, const char *b)
{
  char *x = mac_normalize (a), *y = mac_normalize (b);
  bool eq = x && y && strcmp (x, y) == 0;
  free (x);
  free (y);
  return eq;
}
