/* modules.c: the virtio drivers, written into each initramfs tool's own
 * configuration so that every initramfs it builds later keeps them. */
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "inject-int.h"

const char *const p2v_virtio_modules[] = {
  "virtio_blk", "virtio_scsi", "virtio_net", "virtio_pci", "virtio_console",
  NULL
};

static const char modules_why[] =
  "the VM's disk and NIC are virtio devices; configured here, every "
  "future initramfs keeps the drivers";

/* Module names compare with '-' and '_' alike, as modprobe does. */
static bool
module_name_equal (const char *a, size_t alen, const char *b)
{
  size_t i;

  if (alen != strlen (b))
    return false;
  for (i = 0; i < alen; i++) {
    char x = a[i] == '-' ? '_' : a[i], y = b[i] == '-' ? '_' : b[i];
    if (x != y)
      return false;
  }
  return true;
}

/* Mark the words of VALUE[0..len) that are MODS. */
static void
mark_words (const char *value, size_t len, const char *const *mods,
            bool *present)
{
  const char *p = value, *end = value + len;

  while (p < end) {
    const char *w;
    while (p < end && strchr (" \t\"'()", *p))
      p++;
    w = p;
    while (p < end && !strchr (" \t\"'()", *p))
      p++;
    for (size_t i = 0; mods[i]; i++)
      if (p > w && module_name_equal (w, p - w, mods[i]))
        present[i] = true;
  }
}

static size_t
count_mods (const char *const *mods)
{
  size_t n = 0;
  while (mods[n])
    n++;
  return n;
}

/* "virtio_blk virtio_net" for the mods not present. */
static char *
missing_words (const char *const *mods, const bool *present)
{
  struct p2v_strbuf sb = { 0 };

  for (size_t i = 0; mods[i]; i++)
    if (!present[i]) {
      if (sb.len)
        sb_add (&sb, " ");
      sb_add (&sb, mods[i]);
    }
  return sb_steal (&sb);
}

static void
add_modules_edit (struct p2v_edits *edits, const char *const *mods,
                  const bool *present)
{
  char *missing = missing_words (mods, present);
  char *after = xasprintf ("+ %s", missing);
  bool any = false;

  for (size_t i = 0; mods[i]; i++)
    any |= present[i];
  edits_add (edits, any ? "some virtio drivers" : "no virtio drivers", after,
             modules_why);
  free (missing);
  free (after);
}

char *
modules_list_add (const char *text, const char *const *mods,
                  struct p2v_edits *edits)
{
  size_t n = count_mods (mods), pos = 0, len;
  bool *present = xcalloc (n + 1, sizeof *present);
  struct p2v_strbuf out = { 0 };
  const char *line;
  bool all = true;

  while (text_next_line (text, &pos, &line, &len)) {
    const char *p = skip_blanks (line, line + len), *w = p;
    if (p == line + len || *p == '#')
      continue;
    while (p < line + len && *p != ' ' && *p != '\t')
      p++;
    mark_words (w, p - w, mods, present);
  }
  for (size_t i = 0; i < n; i++)
    all &= present[i];
  sb_add (&out, text);
  if (!all) {
    if (out.len && out.s[out.len - 1] != '\n')
      sb_add (&out, "\n");
    sb_add (&out, "# virtio drivers for KVM (added by p2v inject)\n");
    for (size_t i = 0; i < n; i++)
      if (!present[i])
        sb_addf (&out, "%s\n", mods[i]);
    add_modules_edit (edits, mods, present);
  }
  free (present);
  return sb_steal (&out);
}

void
dracut_conf_scan (const char *text, const char *const *mods, bool *present)
{
  static const char *const vars[] = {
    "add_drivers", "force_drivers", "drivers"
  };
  size_t pos = 0, len;
  const char *line;

  while (text_next_line (text, &pos, &line, &len)) {
    const char *end = line + len, *p = skip_blanks (line, end);
    for (size_t i = 0; i < ARRAY_SIZE (vars); i++) {
      size_t n = strlen (vars[i]);
      const char *v = p + n;
      if ((size_t) (end - p) <= n || strncmp (p, vars[i], n) != 0)
        continue;
      if (*v == '+')
        v++;
      if (v < end && *v == '=') {
        const char *hash = memchr (v, '#', end - v);
        mark_words (v + 1, (hash ? hash : end) - v - 1, mods, present);
        break;
      }
    }
  }
}

char *
dracut_conf_text (const char *const *mods)
{
  struct p2v_strbuf sb = { 0 };

  sb_add (&sb,
          "# Written by p2v inject: the virtio drivers a KVM guest boots "
          "from,\n# in every initramfs dracut builds from now on.\n"
          "add_drivers+=\" ");
  for (size_t i = 0; mods[i]; i++)
    sb_addf (&sb, "%s ", mods[i]);
  sb_add (&sb, "\"\n");
  return sb_steal (&sb);
}

char *
mkinitcpio_conf_add (const char *text, const char *const *mods,
                     struct p2v_edits *edits)
{
  size_t n = count_mods (mods), pos = 0, len;
  bool *present = xcalloc (n + 1, sizeof *present);
  struct p2v_strbuf out = { 0 };
  const char *line, *close = NULL;
  bool all = true, found = false;

  /* The last MODULES= line is the one that counts. */
  while (text_next_line (text, &pos, &line, &len)) {
    const char *p = skip_blanks (line, line + len);
    if ((size_t) (line + len - p) > 8 && strncmp (p, "MODULES=", 8) == 0) {
      char open = p[8], want = open == '(' ? ')' : open;
      const char *c = NULL;
      if (open == '(' || open == '"') {
        c = memchr (p + 9, want, line + len - p - 9);
      }
      if (c) {
        memset (present, 0, n * sizeof *present);
        mark_words (p + 9, c - p - 9, mods, present);
        close = c;
        found = true;
      }
    }
  }
  for (size_t i = 0; i < n; i++)
    all &= present[i];
  if (all) {
    free (present);
    return xstrdup (text);
  }
  if (found) {
    char *missing = missing_words (mods, present);
    const char *inside = close - 1;
    sb_addn (&out, text, close - text);
    if (*inside != '(' && *inside != '"' && *inside != ' ')
      sb_add (&out, " ");
    sb_add (&out, missing);
    sb_add (&out, close);
    free (missing);
  }
  else {
    char *missing = missing_words (mods, present);
    sb_add (&out, text);
    if (out.len && out.s[out.len - 1] != '\n')
      sb_add (&out, "\n");
    sb_addf (&out, "# virtio drivers for KVM (added by p2v inject)\n"
             "MODULES+=(%s)\n", missing);
    free (missing);
  }
  add_modules_edit (edits, mods, present);
  free (present);
  return sb_steal (&out);
}
