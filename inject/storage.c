/* storage.c: LVM and md RAID settings that tie volumes to the physical
 * server's disks: lvm.conf filters that accept only /dev/sd* (and so
 * reject the VM's /dev/vd*), mdadm.conf member lists and DEVICE lines,
 * and what the LVM devices file pins.  Pure text, unit-tested. */
#include <ctype.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common.h"
#include "inject-int.h"

const char lvm_filter_accept_virtio[] = "a|^/dev/vd.*|";

/* Where only the physical server's disks have names (by-id too, but
 * for the names of content: dm-, md-, lvm-pv-). */
static const char *const physical_prefixes[] = {
  "/dev/sd", "/dev/hd", "/dev/xvd", "/dev/nvme", "/dev/cciss/", "/dev/ida/",
  "/dev/disk/by-path/",
};

/* A name or glob for the physical disks: /dev/sda1, /dev/sd*[0-9],
 * /dev/disk/by-id/ata-..., /dev/cciss/c0d0p1. */
static bool
names_physical_disk (const char *word)
{
  if (devname_is_unstable (word))
    return true;
  for (size_t i = 0; i < ARRAY_SIZE (physical_prefixes); i++)
    if (strncmp (word, physical_prefixes[i], strlen (physical_prefixes[i])) == 0)
      return true;
  return false;
}

/* Whether TEXT (a regex) spells out such a name somewhere. */
static bool
mentions_physical_disk (const char *text)
{
  const char *by_id = strstr (text, "/dev/disk/by-id/");

  for (size_t i = 0; i < ARRAY_SIZE (physical_prefixes); i++)
    if (strstr (text, physical_prefixes[i]))
      return true;
  return by_id && devname_is_unstable (by_id);
}

/* TEXT[START..END) on one line: every run of blanks and newlines one
 * space (the plan shows a setting that may span lines). */
static char *
collapse (const char *text, size_t start, size_t end)
{
  struct p2v_strbuf sb = { 0 };
  bool blank = false;

  for (size_t i = start; i < end; i++) {
    if (isspace ((unsigned char) text[i]))
      blank = true;
    else {
      if (blank && sb.len)
        sb_add (&sb, " ");
      blank = false;
      sb_addn (&sb, &text[i], 1);
    }
  }
  return sb_steal (&sb);
}

/* Record the edit of TEXT[START..END) into AFTER (AFTER_LEN bytes), both
 * collapsed onto one line. */
static void
edit_collapsed (struct p2v_edits *edits, const char *text, size_t start,
                size_t end, const char *after, size_t after_len,
                const char *why)
{
  char *b = collapse (text, start, end), *a = collapse (after, 0, after_len);

  edits_add (edits, b, a, why);
  free (b);
  free (a);
}

/* ---- lvm.conf ----
 *
 * The syntax is libdevmapper's config format: sections "name {...}",
 * settings "name = value" (a path "devices/filter = ..." at the top
 * works too), values are numbers, strings ("..." with backslash
 * escapes, or '...') or arrays "[ v, v ]" (commas optional), comments
 * from '#'.  A file this code cannot read is left alone, with a note. */

enum lvm_tok_type {
  LT_END, LT_ERROR, LT_SECTION_B, LT_SECTION_E, LT_ARRAY_B, LT_ARRAY_E,
  LT_COMMA, LT_EQ, LT_STRING, LT_NUMBER, LT_IDENT,
};

struct lvm_lexer {
  const char *text;
  size_t pos;
  unsigned line;
};

struct lvm_tok {
  enum lvm_tok_type type;
  size_t start, end;
  unsigned line;
};

static void
lvm_next (struct lvm_lexer *lx, struct lvm_tok *t)
{
  const char *s = lx->text;
  size_t p = lx->pos;

  for (;;) {
    if (s[p] == '\n')
      lx->line++;
    if (isspace ((unsigned char) s[p]))
      p++;
    else if (s[p] == '#')
      while (s[p] && s[p] != '\n')
        p++;
    else
      break;
  }
  t->start = p;
  t->line = lx->line;
  switch (s[p]) {
  case '\0': t->type = LT_END; break;
  case '{': t->type = LT_SECTION_B; p++; break;
  case '}': t->type = LT_SECTION_E; p++; break;
  case '[': t->type = LT_ARRAY_B; p++; break;
  case ']': t->type = LT_ARRAY_E; p++; break;
  case ',': t->type = LT_COMMA; p++; break;
  case '=': t->type = LT_EQ; p++; break;
  case '"':
  case '\'': {
    char q = s[p++];
    while (s[p] && s[p] != q) {
      if (q == '"' && s[p] == '\\' && s[p + 1])
        p++;
      if (s[p] == '\n')
        lx->line++;
      p++;
    }
    if (s[p]) {
      p++;
      t->type = LT_STRING;
    }
    else
      t->type = LT_ERROR;       /* unterminated */
    break;
  }
  default:
    if (isdigit ((unsigned char) s[p]) || strchr ("+-.", s[p])) {
      t->type = LT_NUMBER;
      p++;
      while (isdigit ((unsigned char) s[p]) || s[p] == '.')
        p++;
    }
    else {
      t->type = LT_IDENT;
      while (s[p] && !isspace ((unsigned char) s[p])
             && !strchr ("#={}[],\"'", s[p]))
        p++;
    }
  }
  t->end = p;
  lx->pos = p;
}

/* The content of a string token: quotes off, \x as x in "...". */
static char *
lvm_string (const char *text, const struct lvm_tok *t)
{
  struct p2v_strbuf sb = { 0 };
  bool escapes = text[t->start] == '"';

  for (size_t i = t->start + 1; i + 1 < t->end; i++) {
    if (escapes && text[i] == '\\' && i + 2 < t->end)
      i++;
    sb_addn (&sb, &text[i], 1);
  }
  return sb_steal (&sb);
}

/* One filter or global_filter setting in the devices section. */
struct lvm_filter {
  const char *name;             /* "filter", "global_filter" */
  unsigned line;
  size_t start, end;            /* the whole setting */
  size_t value_start;
  bool array;
  size_t first_elem;            /* offset of the first element (array) */
  struct p2v_strings elems;     /* the strings' contents */
  bool non_string;              /* an element that is not a string */
};

struct lvm_filters {
  struct lvm_filter *v;
  size_t n, cap;
};

static void
lvm_filters_free (struct lvm_filters *l)
{
  for (size_t i = 0; i < l->n; i++)
    strings_free (&l->v[i].elems);
  free (l->v);
}

/* "filter" or "global_filter" if the setting IDENT, inside SECTIONS,
 * is devices/filter or devices/global_filter; else NULL. */
static const char *
filter_setting (const struct p2v_strings *sections, const char *text,
                const struct lvm_tok *ident)
{
  struct p2v_strbuf path = { 0 };
  const char *name = NULL;

  for (size_t i = 0; i < sections->n; i++)
    sb_addf (&path, "%s/", sections->v[i]);
  sb_addn (&path, text + ident->start, ident->end - ident->start);
  if (strcmp (path.s, "devices/filter") == 0)
    name = "filter";
  else if (strcmp (path.s, "devices/global_filter") == 0)
    name = "global_filter";
  sb_free (&path);
  return name;
}

/* Parses TEXT; collects the filters.  Returns 0, or -1 with *WHY and
 * *LINE saying where it could not. */
static int
lvm_parse (const char *text, struct lvm_filters *out, const char **why,
           unsigned *line)
{
  struct lvm_lexer lx = { .text = text, .line = 1 };
  struct p2v_strings sections = { 0 };
  struct lvm_tok t, t2;
  int r = -1;

  for (;;) {
    lvm_next (&lx, &t);
    *line = t.line;
    if (t.type == LT_END) {
      if (sections.n) {
        *why = "a section is not closed";
        goto out;
      }
      break;
    }
    if (t.type == LT_SECTION_E) {
      if (!sections.n) {
        *why = "'}' closes no section";
        goto out;
      }
      free (sections.v[--sections.n]);
      sections.v[sections.n] = NULL;
      continue;
    }
    if (t.type != LT_IDENT) {
      *why = t.type == LT_ERROR ? "a string is not closed"
        : "a setting name was expected";
      goto out;
    }
    lvm_next (&lx, &t2);
    if (t2.type == LT_SECTION_B) {
      strings_add_nodup (&sections, xasprintf ("%.*s", (int) (t.end - t.start),
                                               text + t.start));
      continue;
    }
    if (t2.type != LT_EQ) {
      *why = "'=' or '{' was expected after a name";
      goto out;
    }

    /* The value. */
    {
      struct lvm_filter f = { 0 };
      const char *name = filter_setting (&sections, text, &t);
      struct lvm_tok v;

      f.line = t.line;
      f.start = t.start;
      lvm_next (&lx, &v);
      f.value_start = v.start;
      if (v.type == LT_STRING || v.type == LT_NUMBER) {
        if (v.type == LT_STRING)
          strings_add_nodup (&f.elems, lvm_string (text, &v));
        else
          f.non_string = true;
        f.end = v.end;
      }
      else if (v.type == LT_ARRAY_B) {
        f.array = true;
        f.first_elem = 0;
        for (;;) {
          struct lvm_tok e;
          lvm_next (&lx, &e);
          if (e.type == LT_ARRAY_E) {
            f.end = e.end;
            break;
          }
          if (e.type == LT_COMMA)
            continue;
          if (e.type != LT_STRING && e.type != LT_NUMBER) {
            *why = e.type == LT_ERROR ? "a string is not closed"
              : e.type == LT_END ? "an array is not closed"
              : "an array holds something other than strings and numbers";
            *line = e.line;
            strings_free (&f.elems);
            goto out;
          }
          if (!f.first_elem)
            f.first_elem = e.start;
          if (e.type == LT_STRING)
            strings_add_nodup (&f.elems, lvm_string (text, &e));
          else
            f.non_string = true;
        }
      }
      else {
        *why = v.type == LT_ERROR ? "a string is not closed"
          : "a value was expected after '='";
        *line = v.line;
        goto out;
      }
      if (!name) {
        strings_free (&f.elems);
        continue;
      }
      f.name = name;
      if (out->n == out->cap) {
        out->cap = out->cap ? out->cap * 2 : 4;
        out->v = xrealloc (out->v, out->cap * sizeof *out->v);
      }
      out->v[out->n++] = f;
    }
  }
  r = 0;
 out:
  strings_free (&sections);
  return r;
}

/* One filter element, "a|regex|" or "r|regex|" as LVM reads it: the
 * separator follows the a/r ((, [ and { close with their pair) and must
 * end the string. */
struct lvm_pattern {
  bool accept;
  regex_t re;
};

static int
lvm_pattern_compile (const char *elem, struct lvm_pattern *pat)
{
  size_t n = strlen (elem);
  char sep, *re;
  int r;

  if (n < 3 || (elem[0] != 'a' && elem[0] != 'r'))
    return -1;
  sep = elem[1] == '(' ? ')' : elem[1] == '[' ? ']'
    : elem[1] == '{' ? '}' : elem[1];
  if (elem[n - 1] != sep)
    return -1;
  pat->accept = elem[0] == 'a';
  re = xasprintf ("%.*s", (int) (n - 3), elem + 2);
  /* libdevmapper's regex engine takes POSIX extended syntax. */
  r = regcomp (&pat->re, re, REG_EXTENDED | REG_NOSUB);
  free (re);
  return r == 0 ? 0 : -1;
}

static bool
pattern_matches (const struct lvm_pattern *pat, const char *name)
{
  return regexec (&pat->re, name, 0, NULL, 0) == 0;
}

/* LVM keeps a device if the first pattern its name matches accepts it,
 * or if none matches. */
static bool
filter_accepts (const struct lvm_pattern *pats, size_t n, const char *name)
{
  for (size_t i = 0; i < n; i++)
    if (pattern_matches (&pats[i], name))
      return pats[i].accept;
  return true;
}

/* Names the VM's disks get, the physical server's disks had, and that
 * stay the same (a pattern matching those too names no disk). */
static const char *const vd_names[] = {
  "/dev/vda", "/dev/vda1", "/dev/vda2", "/dev/vdb", "/dev/vdb1",
};
static const char *const physical_names[] = {
  "/dev/sda", "/dev/sda1", "/dev/sda2", "/dev/sdb", "/dev/sdb1",
  "/dev/hda1", "/dev/xvda1", "/dev/nvme0n1", "/dev/nvme0n1p1",
  "/dev/cciss/c0d0p1",
};
static const char *const stable_names[] = {
  "/dev/md0", "/dev/mapper/vg0-root", "/dev/dm-0",
};

/* An accept pattern written for the physical disks: it spells out one
 * of their names, or takes one of them but not every device. */
static bool
accepts_physical (const struct lvm_pattern *pat, const char *elem)
{
  bool any = false;

  if (!pat->accept)
    return false;
  if (mentions_physical_disk (elem))
    return true;
  for (size_t i = 0; i < ARRAY_SIZE (physical_names) && !any; i++)
    any = pattern_matches (pat, physical_names[i]);
  for (size_t i = 0; i < ARRAY_SIZE (stable_names) && any; i++)
    any = !pattern_matches (pat, stable_names[i]);
  return any;
}

/* Whether filter F would hide the VM's disks while it names the
 * physical ones: 1 yes, 0 no, -1 it cannot tell (*WHY says why). */
static int
filter_needs_virtio (const struct lvm_filter *f, const char **why,
                     const char **bad)
{
  struct lvm_pattern *pats;
  size_t n = 0;
  bool physical = false, rejects = false;
  int r = -1;

  if (f->non_string) {
    *why = "holds a value that is not a quoted string";
    *bad = NULL;
    return -1;
  }
  pats = xcalloc (f->elems.n + 1, sizeof *pats);
  for (; n < f->elems.n; n++)
    if (lvm_pattern_compile (f->elems.v[n], &pats[n]) == -1) {
      *why = "holds a pattern that is not a|regex| or r|regex|";
      *bad = f->elems.v[n];
      goto out;
    }
  for (size_t i = 0; i < n && !physical; i++)
    physical = accepts_physical (&pats[i], f->elems.v[i]);
  for (size_t i = 0; i < ARRAY_SIZE (vd_names) && !rejects; i++)
    rejects = !filter_accepts (pats, n, vd_names[i]);
  r = physical && rejects;
 out:
  for (size_t i = 0; i < n; i++)
    regfree (&pats[i].re);
  free (pats);
  return r;
}

char *
lvm_conf_rewrite (const char *text, struct p2v_edits *edits,
                  struct p2v_strings *notes)
{
  struct lvm_filters filters = { 0 };
  struct p2v_strbuf out = { 0 };
  const char *why = NULL;
  unsigned line = 0;
  size_t copied = 0;

  if (lvm_parse (text, &filters, &why, &line) == -1) {
    strings_add_nodup (notes, xasprintf ("line %u: cannot parse the LVM "
                                         "configuration (%s); its filters "
                                         "are left as they are", line, why));
    lvm_filters_free (&filters);
    return xstrdup (text);
  }
  for (size_t i = 0; i < filters.n; i++) {
    const struct lvm_filter *f = &filters.v[i];
    const char *bad = NULL;
    int needs = filter_needs_virtio (f, &why, &bad);
    /* The new pattern goes before the first; a lone string becomes an
     * array. */
    size_t at = f->array ? f->first_elem : f->value_start;
    struct p2v_strbuf setting = { 0 };

    if (needs == -1) {
      strings_add_nodup (notes, bad
        ? xasprintf ("line %u: devices/%s %s ('%s'); left as it is",
                     f->line, f->name, why, bad)
        : xasprintf ("line %u: devices/%s %s; left as it is",
                     f->line, f->name, why));
      continue;
    }
    if (!needs)
      continue;
    sb_addn (&setting, text + f->start, at - f->start);
    sb_addf (&setting, "%s\"%s\", ", f->array ? "" : "[ ",
             lvm_filter_accept_virtio);
    sb_addn (&setting, text + at, f->end - at);
    if (!f->array)
      sb_add (&setting, " ]");
    sb_addn (&out, text + copied, f->start - copied);
    sb_add (&out, setting.s);
    copied = f->end;
    edit_collapsed (edits, text, f->start, f->end, setting.s, setting.len,
                    "the filter accepts only the physical server's disk "
                    "names and rejects the rest: LVM would ignore its PVs "
                    "on the virtio disks (/dev/vd*) and not find the "
                    "volume groups");
    sb_free (&setting);
  }
  sb_add (&out, text + copied);
  lvm_filters_free (&filters);
  return sb_steal (&out);
}

/* ---- the LVM devices file ---- */

char *
lvm_devices_summary (const char *text)
{
  struct p2v_strings types = { 0 }, names = { 0 };
  struct p2v_strbuf sb = { 0 };
  size_t pos = 0, len, entries = 0;
  const char *line;

  /* Lines "IDTYPE=sys_wwid IDNAME=... DEVNAME=/dev/sda2 PVID=... PART=2". */
  while (text_next_line (text, &pos, &line, &len)) {
    const char *p = skip_blanks (line, line + len), *end = line + len;
    bool entry = false;
    if (p == end || *p == '#')
      continue;
    while (p < end) {
      const char *w = p;
      size_t n;
      while (p < end && *p != ' ' && *p != '\t')
        p++;
      n = p - w;
      if (n > 7 && strncmp (w, "IDTYPE=", 7) == 0) {
        char *v = xasprintf ("%.*s", (int) (n - 7), w + 7);
        entry = true;
        if (!strings_contains (&types, v))
          strings_add (&types, v);
        free (v);
      }
      else if (n > 8 && strncmp (w, "DEVNAME=", 8) == 0 && names.n < 4) {
        char *v = xasprintf ("%.*s", (int) (n - 8), w + 8);
        if (!strings_contains (&names, v))
          strings_add (&names, v);
        free (v);
      }
      p = skip_blanks (p, end);
    }
    entries += entry;
  }
  if (!entries)
    sb_add (&sb, "no PVs listed");
  else {
    sb_addf (&sb, "%zu PV%s pinned by", entries, entries == 1 ? "" : "s");
    for (size_t i = 0; i < types.n; i++)
      sb_addf (&sb, "%s %s", i ? "," : "", types.v[i]);
    for (size_t i = 0; i < names.n; i++)
      sb_addf (&sb, "%s%s", i ? ", " : " (", names.v[i]);
    if (names.n)
      sb_add (&sb, ")");
  }
  strings_free (&types);
  strings_free (&names);
  return sb_steal (&sb);
}

/* ---- mdadm.conf ----
 *
 * Lines of words; a line that starts with a blank continues the one
 * before; '#' at the start of a word comments out the rest of the line;
 * keywords are case-insensitive and may be shortened to three letters;
 * words may hold "..." or '...'. */

struct md_word {
  size_t line;                  /* index of its physical line */
  size_t start, end;            /* offsets in the text */
};

struct md_words {
  struct md_word *v;
  size_t n, cap;
};

static void
md_words_add (struct md_words *w, size_t line, size_t start, size_t end)
{
  if (w->n == w->cap) {
    w->cap = w->cap ? w->cap * 2 : 16;
    w->v = xrealloc (w->v, w->cap * sizeof *w->v);
  }
  w->v[w->n++] = (struct md_word) { line, start, end };
}

static void
md_split (const char *text, size_t line, size_t start, size_t end,
          struct md_words *w)
{
  size_t p = start;

  for (;;) {
    size_t s;
    while (p < end && (text[p] == ' ' || text[p] == '\t' || text[p] == '\r'))
      p++;
    if (p >= end || text[p] == '#')
      return;
    s = p;
    while (p < end && text[p] != ' ' && text[p] != '\t' && text[p] != '\r') {
      if (text[p] == '"' || text[p] == '\'') {
        const char *close = memchr (text + p + 1, text[p], end - p - 1);
        p = close ? (size_t) (close - text) : end - 1;
      }
      p++;
    }
    md_words_add (w, line, s, p);
  }
}

/* The word's text without quotes. */
static char *
md_word_text (const char *text, const struct md_word *w)
{
  struct p2v_strbuf sb = { 0 };

  for (size_t i = w->start; i < w->end; i++)
    if (text[i] != '"' && text[i] != '\'')
      sb_addn (&sb, &text[i], 1);
  return sb_steal (&sb);
}

static bool
md_keyword_is (const char *word, const char *keyword)
{
  size_t n = strlen (word);
  return n >= 3 && n <= strlen (keyword) && strncasecmp (word, keyword, n) == 0;
}

static bool
md_tag_is (const char *word, const char *tag)
{
  return strncasecmp (word, tag, strlen (tag)) == 0;
}

/* A devices= value that names a physical disk. */
static bool
md_devices_physical (const char *value)
{
  char *copy = xstrdup (value), *save = NULL;
  bool physical = false;

  for (char *d = strtok_r (copy, ",", &save); d && !physical;
       d = strtok_r (NULL, ",", &save))
    physical = names_physical_disk (d);
  free (copy);
  return physical;
}

static bool
all_blank (const char *s, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (!isspace ((unsigned char) s[i]))
      return false;
  return true;
}

struct md_line {
  size_t start, len;            /* without the newline */
  bool newline;
};

char *
mdadm_conf_rewrite (const char *text, struct p2v_edits *edits,
                    struct p2v_strings *notes)
{
  struct md_line *lines = NULL;
  size_t nlines = 0, cap = 0, pos = 0, len;
  const char *line;
  struct p2v_strbuf out = { 0 };

  while (text_next_line (text, &pos, &line, &len)) {
    if (nlines == cap) {
      cap = cap ? cap * 2 : 32;
      lines = xrealloc (lines, cap * sizeof *lines);
    }
    lines[nlines++] = (struct md_line) {
      line - text, len, line[len] == '\n'
    };
  }

  for (size_t i = 0; i < nlines; ) {
    const struct md_line *l = &lines[i];
    const char *s = text + l->start;
    struct md_words w = { 0 };
    size_t j = i + 1;
    char *keyword = NULL;
    bool *drop = NULL;          /* words to remove (ARRAY) */
    bool changed = false;

    /* Comments, blank lines and continuations of nothing stay. */
    if (l->len == 0 || s[0] == ' ' || s[0] == '\t' || s[0] == '#'
        || s[0] == '\r') {
      sb_addn (&out, s, l->len + l->newline);
      i++;
      continue;
    }
    while (j < nlines
           && (text[lines[j].start] == ' ' || text[lines[j].start] == '\t')
           && !all_blank (text + lines[j].start, lines[j].len))
      j++;
    for (size_t k = i; k < j; k++)
      md_split (text, k, lines[k].start, lines[k].start + lines[k].len, &w);
    keyword = w.n ? md_word_text (text, &w.v[0]) : NULL;

    if (keyword && md_keyword_is (keyword, "DEVICE") && w.n > 1) {
      size_t physical = 0;
      for (size_t k = 1; k < w.n; k++) {
        char *word = md_word_text (text, &w.v[k]);
        physical += names_physical_disk (word);
        free (word);
      }
      if (physical == w.n - 1) {
        size_t end = lines[j - 1].start + lines[j - 1].len;
        static const char partitions[] = "DEVICE partitions";
        edit_collapsed (edits, text, l->start, end, partitions,
                        strlen (partitions),
                        "it lists only the physical server's disk names: "
                        "mdadm would look for array members on disks the "
                        "VM does not have; 'partitions' scans them all "
                        "(members are matched by UUID)");
        sb_add (&out, "DEVICE partitions");
        if (lines[j - 1].newline)
          sb_add (&out, "\n");
        changed = true;
      }
      else if (physical)
        strings_add_nodup (notes, xasprintf ("line %zu: a DEVICE line names "
                                             "physical disks beside other "
                                             "devices; left as it is", i + 1));
    }
    else if (keyword && md_keyword_is (keyword, "ARRAY")) {
      bool identity = false, physical = false;
      drop = xcalloc (w.n, sizeof *drop);
      for (size_t k = 1; k < w.n; k++) {
        char *word = md_word_text (text, &w.v[k]);
        if (md_tag_is (word, "uuid=") || md_tag_is (word, "name=")
            || md_tag_is (word, "super-minor="))
          identity = true;
        else if (md_tag_is (word, "devices=")
                 && md_devices_physical (word + strlen ("devices="))) {
          physical = true;
          drop[k] = true;
        }
        free (word);
      }
      if (physical && !identity)
        strings_add_nodup (notes, xasprintf ("line %zu: an ARRAY line finds "
                                             "its members only by devices= "
                                             "naming physical disks; left as "
                                             "it is (add its UUID=)", i + 1));
      else if (physical) {
        struct p2v_strbuf logical = { 0 };
        size_t end = lines[j - 1].start + lines[j - 1].len;
        for (size_t k = i; k < j; k++) {
          size_t from = lines[k].start, to = lines[k].start + lines[k].len;
          struct p2v_strbuf ln = { 0 };
          for (size_t m = 0; m < w.n; m++) {
            size_t cut, past;
            if (w.v[m].line != k || !drop[m])
              continue;
            /* The word and the blanks before it; the blanks after it
             * when it starts its line (the indentation stays). */
            cut = w.v[m].start;
            past = w.v[m].end;
            while (cut > from && (text[cut - 1] == ' ' || text[cut - 1] == '\t'))
              cut--;
            if (cut == lines[k].start) {
              cut = w.v[m].start;
              while (past < to && (text[past] == ' ' || text[past] == '\t'))
                past++;
            }
            sb_addn (&ln, text + from, cut - from);
            from = past;
          }
          sb_addn (&ln, text + from, to - from);
          /* A continuation left blank goes. */
          if (k > i && all_blank (ln.s, ln.len)) {
            sb_free (&ln);
            continue;
          }
          sb_add (&out, ln.s);
          sb_add (&logical, ln.s);
          sb_add (&logical, " ");
          if (lines[k].newline)
            sb_add (&out, "\n");
          sb_free (&ln);
        }
        edit_collapsed (edits, text, l->start, end, logical.s, logical.len,
                        "devices= names the physical server's disks: mdadm "
                        "would not assemble the array from the VM's /dev/vd* "
                        "disks; it finds the members by the array's UUID");
        sb_free (&logical);
        changed = true;
      }
    }
    if (!changed) {
      size_t end = lines[j - 1].start + lines[j - 1].len + lines[j - 1].newline;
      sb_addn (&out, s, end - l->start);
    }
    free (keyword);
    free (drop);
    free (w.v);
    i = j;
  }
  free (lines);
  return sb_steal (&out);
}
