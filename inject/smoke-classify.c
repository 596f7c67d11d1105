/* smoke-classify.c: the smoke verdict as a pure function of what the guest
 * printed: serial console, firmware debug port and the guest's own report
 * line.  No I/O here, so the unit tests feed it canned boots. */
#include <stdlib.h>
#include <string.h>

#include <json.h>

#include "common.h"
#include "smoke.h"

#define REPORT_PREFIX "P2V-SMOKE "
#define CONSOLE_TAIL_LINES 25
/* dracut's timeout scripts (which start degraded RAID and the like) ran
 * this often and root still did not appear: it will not. */
#define TIMEOUT_SCRIPT_RUNS 3

/* ---- string vectors ---------------------------------------------------- */

void
smoke_strv_free (char **v)
{
  if (!v)
    return;
  for (size_t i = 0; v[i]; i++)
    free (v[i]);
  free (v);
}

size_t
smoke_strv_len (char *const *v)
{
  size_t n = 0;
  while (v && v[n])
    n++;
  return n;
}

/* Append s (taken over) to the NULL-terminated vector *v. */
void
smoke_strv_push (char ***v, char *s)
{
  size_t n = smoke_strv_len (*v);
  *v = xrealloc (*v, (n + 2) * sizeof **v);
  (*v)[n] = s;
  (*v)[n + 1] = NULL;
}

/* ---- console text -------------------------------------------------------- */

/* Length of a valid UTF-8 sequence at p (at most len bytes), 0 if invalid. */
static size_t
utf8_sequence (const unsigned char *p, size_t len)
{
  size_t n;
  unsigned cp;

  if (p[0] < 0x80)
    return 1;
  else if ((p[0] & 0xe0) == 0xc0) { n = 2; cp = p[0] & 0x1f; }
  else if ((p[0] & 0xf0) == 0xe0) { n = 3; cp = p[0] & 0x0f; }
  else if ((p[0] & 0xf8) == 0xf0) { n = 4; cp = p[0] & 0x07; }
  else
    return 0;
  if (n > len)
    return 0;
  for (size_t i = 1; i < n; i++) {
    if ((p[i] & 0xc0) != 0x80)
      return 0;
    cp = (cp << 6) | (p[i] & 0x3f);
  }
  /* Overlong forms, surrogates, beyond Unicode. */
  if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) ||
      (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
      (cp >= 0xd800 && cp <= 0xdfff))
    return 0;
  return n;
}

/* Skip a terminal escape sequence starting at text[i] == ESC; returns the
 * index after it and whether it moved the cursor to another line (cursor
 * positioning, clear screen), which we turn into a line break. */
static size_t
skip_escape (const char *text, size_t len, size_t i, bool *line_break)
{
  *line_break = false;
  if (i + 1 >= len)
    return len;
  switch (text[i + 1]) {
  case '[': {                   /* CSI: parameters, then one final byte */
    size_t j = i + 2;
    while (j < len && (unsigned char) text[j] >= 0x20 &&
           (unsigned char) text[j] < 0x40)
      j++;
    if (j >= len)
      return len;
    if (text[j] == 'H' || text[j] == 'f' || text[j] == 'J')
      *line_break = true;
    return j + 1;
  }
  case ']': {                   /* OSC: up to BEL or ESC backslash */
    size_t j = i + 2;
    while (j < len && text[j] != '\a' &&
           !(text[j] == '\033' && j + 1 < len && text[j + 1] == '\\'))
      j++;
    return j >= len ? len : text[j] == '\a' ? j + 1 : j + 2;
  }
  case '(': case ')': case '*': case '+': /* character set: one more byte */
    return i + 3 > len ? len : i + 3;
  default:
    return i + 2;
  }
}

char **
smoke_console_lines (const char *text, size_t len)
{
  char **lines = xcalloc (1, sizeof *lines);
  char *cur = xmalloc (len + 1);
  size_t n = 0;

  if (!text)
    len = 0;
  for (size_t i = 0; i <= len;) {
    bool brk = i == len;
    unsigned char c = i < len ? (unsigned char) text[i] : 0;
    size_t next = i + 1;

    if (!brk) {
      if (c == '\033')
        next = skip_escape (text, len, i, &brk);
      else if (c == '\n' || c == '\r')
        brk = true;
      else if (c == '\t')
        cur[n++] = ' ';
      else if (c < 0x20 || c == 0x7f)
        ;                       /* other control characters: drop */
      else if (c < 0x80)
        cur[n++] = c;
      else {
        size_t k = utf8_sequence ((const unsigned char *) text + i, len - i);
        if (k == 0)
          cur[n++] = '?';
        else {
          memcpy (cur + n, text + i, k);
          n += k;
          next = i + k;
        }
      }
    }
    if (brk) {
      while (n > 0 && cur[n - 1] == ' ')
        n--;
      if (n > 0) {
        cur[n] = '\0';
        smoke_strv_push (&lines, xstrdup (cur));
      }
      n = 0;
    }
    if (i == len)
      break;
    i = next;
  }
  free (cur);
  return lines;
}

/* ---- names --------------------------------------------------------------- */

const char *
smoke_stage_name (enum p2v_smoke_stage stage)
{
  switch (stage) {
  case P2V_SMOKE_STAGE_NONE: return NULL;
  case P2V_SMOKE_STAGE_NO_BOOT_LOADER: return "no boot loader";
  case P2V_SMOKE_STAGE_KERNEL_PANIC: return "kernel panic";
  case P2V_SMOKE_STAGE_ROOT_NOT_FOUND: return "root not found";
  case P2V_SMOKE_STAGE_EMERGENCY: return "emergency mode";
  case P2V_SMOKE_STAGE_TARGET_NOT_REACHED: return "default target not reached";
  case P2V_SMOKE_STAGE_ROOT_NOT_VIRTIO: return "root not on virtio";
  case P2V_SMOKE_STAGE_GUEST_STOPPED: return "guest stopped";
  case P2V_SMOKE_STAGE_TIMEOUT: return "timeout";
  }
  return "unknown";
}

const char *
smoke_reached_name (enum p2v_smoke_reached reached)
{
  static const char *const names[] = {
    [P2V_SMOKE_REACHED_NOTHING] = "nothing",
    [P2V_SMOKE_REACHED_FIRMWARE] = "firmware",
    [P2V_SMOKE_REACHED_BOOT_LOADER] = "boot loader",
    [P2V_SMOKE_REACHED_KERNEL] = "kernel",
    [P2V_SMOKE_REACHED_INITRAMFS] = "initramfs",
    [P2V_SMOKE_REACHED_ROOT] = "root file system",
    [P2V_SMOKE_REACHED_TARGET] = "default target",
  };
  return (unsigned) reached < ARRAY_SIZE (names) ? names[reached] : "unknown";
}

/* ---- console patterns ---------------------------------------------------- */

/* What a console line can tell.  Failure kinds are decisive as soon as
 * they appear; "soft" hints only name the stage when the boot ends
 * without a decisive line (timeout, or qemu exited). */
enum mark {
  MARK_BOOT_LOADER,     /* firmware handed over / grub runs */
  MARK_KERNEL,
  MARK_INITRD,          /* inside the initramfs */
  MARK_REAL_ROOT,       /* switched to the real root */
  MARK_TARGET,          /* multi-user / graphical reached, login prompt */
  MARK_NO_BOOT,         /* decisive: nothing bootable, grub broken */
  MARK_PANIC,           /* decisive */
  MARK_NO_ROOT,         /* decisive: initramfs gave up on root */
  MARK_NO_ROOT_SOFT,    /* the initramfs is still waiting, with warnings */
  MARK_TIMEOUT_SCRIPTS, /* dracut ran its timeout scripts (degraded RAID...) */
  MARK_EMERGENCY,       /* decisive: root not found in the initrd, else emergency */
};

struct pattern {
  enum mark mark;
  const char *text;     /* substring of a cleaned line */
  const char *also;     /* and this one too, or NULL */
};

static const struct pattern patterns[] = {
  /* Firmware and boot loader. */
  { MARK_BOOT_LOADER, "Booting from 0000:7c00", NULL },  /* SeaBIOS debug port */
  { MARK_BOOT_LOADER, "GRUB loading", NULL },
  { MARK_BOOT_LOADER, "GNU GRUB", NULL },
  { MARK_BOOT_LOADER, "Welcome to GRUB", NULL },
  { MARK_BOOT_LOADER, "Booting `", NULL },
  { MARK_BOOT_LOADER, "Loading Linux ", NULL },
  { MARK_BOOT_LOADER, "Loading initial ramdisk", NULL },
  { MARK_BOOT_LOADER, "ISOLINUX", NULL },
  { MARK_BOOT_LOADER, "SYSLINUX", NULL },
  { MARK_NO_BOOT, "No bootable device", NULL },                 /* SeaBIOS */
  { MARK_NO_BOOT, "No bootable option or device was found", NULL }, /* OVMF */
  { MARK_NO_BOOT, "UEFI Interactive Shell", NULL },             /* OVMF gave up */
  { MARK_NO_BOOT, "grub rescue>", NULL },
  { MARK_NO_BOOT, "Entering rescue mode...", NULL },
  { MARK_NO_BOOT, "Minimal BASH-like line editing is supported", NULL },
  { MARK_NO_BOOT, "you need to load the kernel first", NULL },
  { MARK_NO_BOOT, "Operating System not found", NULL },
  { MARK_NO_BOOT, "Missing operating system", NULL },
  { MARK_NO_BOOT, "FATAL: No bootable medium found", NULL },
  /* Kernel. */
  { MARK_KERNEL, "Linux version ", NULL },
  { MARK_KERNEL, "EFI stub: ", NULL },
  { MARK_KERNEL, "Decompressing Linux", NULL },
  { MARK_KERNEL, "Command line: ", NULL },
  { MARK_PANIC, "Kernel panic - not syncing", NULL },
  /* Initramfs: initramfs-tools, dracut, systemd in the initrd. */
  { MARK_INITRD, "Run /init as init process", NULL },
  { MARK_INITRD, "Loading, please wait", NULL },
  { MARK_INITRD, "Running in initrd", NULL },
  { MARK_INITRD, "(Initramfs)!", NULL },
  { MARK_INITRD, "dracut-initqueue", NULL },
  { MARK_INITRD, "dracut-cmdline", NULL },
  { MARK_INITRD, "dracut-pre-udev", NULL },
  { MARK_INITRD, "Begin: Loading essential drivers", NULL },
  { MARK_NO_ROOT, "Gave up waiting for root", NULL },
  { MARK_NO_ROOT, "ALERT!", "does not exist" },
  { MARK_NO_ROOT, "(initramfs)", NULL },
  { MARK_NO_ROOT, "Dropping to debug shell", NULL },
  { MARK_NO_ROOT, "Could not boot", NULL },
  { MARK_NO_ROOT, "Cannot find root", NULL },
  { MARK_NO_ROOT, "No root device", NULL },
  { MARK_NO_ROOT_SOFT, "dracut-initqueue", "timeout" },
  { MARK_NO_ROOT_SOFT, "Warning: /dev/", "does not exist" },
  { MARK_NO_ROOT_SOFT, "Timed out waiting for device", NULL },
  { MARK_NO_ROOT_SOFT, "Failed to mount", "/sysroot" },
  { MARK_NO_ROOT_SOFT, "Waiting for root file system", NULL },
  { MARK_TIMEOUT_SCRIPTS, "dracut-initqueue", "starting timeout scripts" },
  /* The real root. */
  { MARK_REAL_ROOT, "Switching root", NULL },
  { MARK_REAL_ROOT, "Begin: Running /scripts/init-bottom", NULL },
  { MARK_REAL_ROOT, "Run /sbin/init as init process", NULL },
  { MARK_REAL_ROOT, "INIT: version", NULL },
  /* "Welcome to Debian GNU/Linux 12 (bookworm)!" without "(Initramfs)"
   * is matched in code. */
  { MARK_TARGET, "Reached target Multi-User System", NULL },
  { MARK_TARGET, "Reached target multi-user.target", NULL },
  { MARK_TARGET, "Reached target Graphical Interface", NULL },
  { MARK_TARGET, "Reached target graphical.target", NULL },
  { MARK_TARGET, "INIT: Entering runlevel", NULL },
  { MARK_EMERGENCY, "You are in emergency mode", NULL },
  { MARK_EMERGENCY, "You are in rescue mode", NULL },
  { MARK_EMERGENCY, "Entering emergency mode", NULL },
  { MARK_EMERGENCY, "Emergency shell", NULL },
  { MARK_EMERGENCY, "Give root password for maintenance", NULL },
  { MARK_EMERGENCY, "Cannot open access to console, the root account is locked", NULL },
};

static bool
is_login_prompt (const char *line)
{
  size_t n = strlen (line);
  /* "p2v-debian-bios login:" */
  return n > 7 && strcmp (line + n - 6, "login:") == 0 &&
    line[n - 7] == ' ' && !strchr (line, '[');
}

static bool
is_real_root_welcome (const char *line)
{
  const char *w = strstr (line, "Welcome to ");
  size_t n = strlen (line);
  return w && n > 0 && line[n - 1] == '!' && !strstr (w, "Initramfs") &&
    !strstr (w, "initrd") && !strstr (w, "dracut") && !strstr (w, "GRUB");
}

/* Marks of one line, as a bit set. */
static unsigned
line_marks (const char *line)
{
  unsigned m = 0;

  for (size_t i = 0; i < ARRAY_SIZE (patterns); i++)
    if (strstr (line, patterns[i].text) &&
        (!patterns[i].also || strstr (line, patterns[i].also)))
      m |= 1u << patterns[i].mark;
  if (is_real_root_welcome (line))
    m |= 1u << MARK_REAL_ROOT;
  if (is_login_prompt (line))
    m |= 1u << MARK_TARGET;
  return m;
}

#define HAS(m, k) (((m) >> (k)) & 1u)

/* ---- the guest's report -------------------------------------------------- */

static char *
json_string_dup (json_object *o, const char *key)
{
  json_object *v;
  if (!json_object_object_get_ex (o, key, &v) || json_object_is_type (v, json_type_null))
    return NULL;
  return xstrdup (json_object_get_string (v));
}

static char **
json_strv (json_object *o, const char *key)
{
  json_object *a;
  char **v = xcalloc (1, sizeof *v);

  if (json_object_object_get_ex (o, key, &a) && json_object_is_type (a, json_type_array))
    for (size_t i = 0; i < json_object_array_length (a); i++) {
      json_object *s = json_object_array_get_idx (a, i);
      if (json_object_is_type (s, json_type_string))
        smoke_strv_push (&v, xstrdup (json_object_get_string (s)));
    }
  return v;
}

static void
free_interfaces (struct p2v_smoke_result *res)
{
  for (size_t i = 0; i < res->n_interfaces; i++) {
    free (res->interfaces[i].name);
    free (res->interfaces[i].mac);
    free (res->interfaces[i].state);
    free (res->interfaces[i].driver);
    smoke_strv_free (res->interfaces[i].ipv4);
  }
  free (res->interfaces);
  res->interfaces = NULL;
  res->n_interfaces = 0;
}

static void
clear_report_fields (struct p2v_smoke_result *res)
{
  free (res->target); res->target = NULL;
  free (res->target_state); res->target_state = NULL;
  free (res->system_state); res->system_state = NULL;
  free (res->kernel); res->kernel = NULL;
  free (res->root_source); res->root_source = NULL;
  free (res->root_fstype); res->root_fstype = NULL;
  smoke_strv_free (res->root_disks); res->root_disks = NULL;
  smoke_strv_free (res->root_disk_drivers); res->root_disk_drivers = NULL;
  smoke_strv_free (res->failed_units); res->failed_units = NULL;
  free_interfaces (res);
  res->guest_uptime = 0;
}

/* Parse the last complete "P2V-SMOKE {...}" line among lines into res.
 * Returns true if there was one. */
static bool
parse_report (char **lines, struct p2v_smoke_result *res)
{
  json_object *o = NULL, *a;

  for (size_t i = smoke_strv_len (lines); i-- > 0;) {
    const char *p = strstr (lines[i], REPORT_PREFIX "{");
    if (!p)
      continue;
    o = json_tokener_parse (p + strlen (REPORT_PREFIX));
    if (o && json_object_is_type (o, json_type_object))
      break;
    json_object_put (o);        /* half-written or garbled: an older one? */
    o = NULL;
  }
  if (!o)
    return false;

  clear_report_fields (res);
  res->target = json_string_dup (o, "target");
  res->target_state = json_string_dup (o, "target_state");
  res->system_state = json_string_dup (o, "system_state");
  res->kernel = json_string_dup (o, "kernel");
  res->root_source = json_string_dup (o, "root_source");
  res->root_fstype = json_string_dup (o, "root_fstype");
  res->failed_units = json_strv (o, "failed_units");
  res->root_disks = xcalloc (1, sizeof (char *));
  res->root_disk_drivers = xcalloc (1, sizeof (char *));
  if (json_object_object_get_ex (o, "root_disks", &a) &&
      json_object_is_type (a, json_type_array))
    for (size_t i = 0; i < json_object_array_length (a); i++) {
      json_object *d = json_object_array_get_idx (a, i);
      char *name = json_string_dup (d, "name"), *drv = json_string_dup (d, "driver");
      if (!name) {
        free (drv);
        continue;
      }
      smoke_strv_push (&res->root_disks, name);
      smoke_strv_push (&res->root_disk_drivers, drv ? drv : xstrdup (""));
    }
  if (json_object_object_get_ex (o, "interfaces", &a) &&
      json_object_is_type (a, json_type_array)) {
    size_t n = json_object_array_length (a);
    res->interfaces = xcalloc (n ? n : 1, sizeof *res->interfaces);
    for (size_t i = 0; i < n; i++) {
      json_object *d = json_object_array_get_idx (a, i);
      struct p2v_smoke_interface *ifc = &res->interfaces[res->n_interfaces];
      if (!json_object_is_type (d, json_type_object) ||
          !(ifc->name = json_string_dup (d, "name")))
        continue;
      ifc->mac = json_string_dup (d, "mac");
      ifc->state = json_string_dup (d, "state");
      ifc->driver = json_string_dup (d, "driver");
      ifc->ipv4 = json_strv (d, "ipv4");
      res->n_interfaces++;
    }
  }
  if (json_object_object_get_ex (o, "uptime", &a))
    res->guest_uptime = json_object_get_double (a);
  json_object_put (o);
  return true;
}

static bool
str_in (const char *s, const char *const *set)
{
  for (; s && *set; set++)
    if (strcmp (s, *set) == 0)
      return true;
  return false;
}

/* The verdict the guest's report supports. */
static void
judge_report (struct p2v_smoke_result *res)
{
  static const char *const not_a_disk[] = { "tmpfs", "ramfs", "rootfs", NULL };
  size_t n = smoke_strv_len (res->root_disks);

  res->reached = P2V_SMOKE_REACHED_TARGET;
  res->verdict = P2V_SMOKE_FAIL;
  if (!res->target_state || strcmp (res->target_state, "active") != 0) {
    res->stage = P2V_SMOKE_STAGE_TARGET_NOT_REACHED;
    res->evidence = xasprintf ("default target '%s' is '%s' (system '%s')",
                               res->target ? res->target : "?",
                               res->target_state ? res->target_state : "?",
                               res->system_state ? res->system_state : "?");
    return;
  }
  if (str_in (res->root_fstype, not_a_disk)) {
    res->stage = P2V_SMOKE_STAGE_ROOT_NOT_VIRTIO;
    res->evidence = xasprintf ("/ is a '%s', not a disk", res->root_fstype);
    return;
  }
  if (n == 0) {
    res->stage = P2V_SMOKE_STAGE_ROOT_NOT_VIRTIO;
    res->evidence = xasprintf ("cannot tell which disk holds / ('%s')",
                               res->root_source ? res->root_source : "?");
    return;
  }
  for (size_t i = 0; i < n; i++) {
    const char *d = res->root_disks[i], *drv = res->root_disk_drivers[i];
    bool virtio = *drv ? strcmp (drv, "virtio_blk") == 0
      : strncmp (d, "/dev/vd", 7) == 0;
    if (!virtio) {
      res->stage = P2V_SMOKE_STAGE_ROOT_NOT_VIRTIO;
      res->evidence = xasprintf ("/ is on '%s' (driver '%s'), not on the virtio disk",
                                 d, *drv ? drv : "?");
      return;
    }
  }
  res->verdict = P2V_SMOKE_PASS;
  res->stage = P2V_SMOKE_STAGE_NONE;
}

/* ---- the classifier ------------------------------------------------------ */

static char **
tail_lines (char **lines, size_t count)
{
  size_t n = smoke_strv_len (lines), from = n > count ? n - count : 0;
  char **v = xcalloc (1, sizeof *v);
  for (size_t i = from; i < n; i++)
    if (strncmp (lines[i], REPORT_PREFIX, strlen (REPORT_PREFIX)) != 0)
      smoke_strv_push (&v, xstrdup (lines[i]));
  return v;
}

void
smoke_classify (const char *console, size_t console_len,
                const char *firmware, size_t firmware_len,
                const char *report, size_t report_len,
                enum p2v_smoke_end end, struct p2v_smoke_result *res)
{
  char **con = smoke_console_lines (console, console_len);
  char **fw = smoke_console_lines (firmware, firmware_len);
  char **rep = smoke_console_lines (report, report_len);
  const char *decisive_line = NULL, *soft_line = NULL;
  long soft_at = -1;
  unsigned timeout_runs = 0;
  enum p2v_smoke_stage decisive = P2V_SMOKE_STAGE_NONE;
  enum p2v_smoke_reached reached = P2V_SMOKE_REACHED_NOTHING;
  /* Line numbers of the latest initrd and real-root marks so far. */
  long last_initrd = -1, last_real_root = -1;

  free (res->evidence);
  res->evidence = NULL;
  clear_report_fields (res);
  smoke_strv_free (res->console_tail);
  res->console_tail = tail_lines (con, CONSOLE_TAIL_LINES);
  res->verdict = P2V_SMOKE_PENDING;
  res->stage = P2V_SMOKE_STAGE_NONE;

  if (smoke_strv_len (con) || smoke_strv_len (fw))
    reached = P2V_SMOKE_REACHED_FIRMWARE;

  /* The firmware's own log: SeaBIOS says when no disk is bootable. */
  for (size_t i = 0; fw[i]; i++) {
    unsigned m = line_marks (fw[i]);
    if (HAS (m, MARK_BOOT_LOADER))
      reached = P2V_MAX (reached, P2V_SMOKE_REACHED_BOOT_LOADER);
    if (HAS (m, MARK_NO_BOOT) && !decisive_line) {
      decisive = P2V_SMOKE_STAGE_NO_BOOT_LOADER;
      decisive_line = fw[i];
    }
  }

  for (size_t i = 0; con[i]; i++) {
    unsigned m = line_marks (con[i]);
    enum p2v_smoke_stage s = P2V_SMOKE_STAGE_NONE;

    if (HAS (m, MARK_BOOT_LOADER))
      reached = P2V_MAX (reached, P2V_SMOKE_REACHED_BOOT_LOADER);
    if (HAS (m, MARK_KERNEL))
      reached = P2V_MAX (reached, P2V_SMOKE_REACHED_KERNEL);
    if (HAS (m, MARK_INITRD)) {
      reached = P2V_MAX (reached, P2V_SMOKE_REACHED_INITRAMFS);
      last_initrd = i;
    }
    if (HAS (m, MARK_REAL_ROOT)) {
      reached = P2V_MAX (reached, P2V_SMOKE_REACHED_ROOT);
      last_real_root = i;
    }
    if (HAS (m, MARK_TARGET))
      reached = P2V_MAX (reached, P2V_SMOKE_REACHED_TARGET);

    if (HAS (m, MARK_PANIC))
      s = P2V_SMOKE_STAGE_KERNEL_PANIC;
    else if (HAS (m, MARK_NO_BOOT))
      s = P2V_SMOKE_STAGE_NO_BOOT_LOADER;
    else if (HAS (m, MARK_NO_ROOT))
      s = P2V_SMOKE_STAGE_ROOT_NOT_FOUND;
    else if (HAS (m, MARK_EMERGENCY))
      /* An emergency shell inside the initrd means it never found root. */
      s = last_initrd > last_real_root ? P2V_SMOKE_STAGE_ROOT_NOT_FOUND
        : P2V_SMOKE_STAGE_EMERGENCY;
    else if (HAS (m, MARK_NO_ROOT_SOFT) && last_initrd > last_real_root &&
             soft_at <= last_real_root) {
      soft_line = con[i];
      soft_at = i;
      timeout_runs = 0;
    }
    else if (HAS (m, MARK_TIMEOUT_SCRIPTS) && last_initrd > last_real_root &&
             ++timeout_runs >= TIMEOUT_SCRIPT_RUNS)
      s = P2V_SMOKE_STAGE_ROOT_NOT_FOUND;

    if (s != P2V_SMOKE_STAGE_NONE && !decisive_line) {
      decisive = s;
      /* For dracut's endless timeout loop, its first warning says most. */
      decisive_line = HAS (m, MARK_TIMEOUT_SCRIPTS) && soft_line ? soft_line : con[i];
    }
  }
  res->reached = reached;

  /* The guest's own word comes first: it only speaks after its target. */
  if (parse_report (rep, res) || parse_report (con, res))
    judge_report (res);
  else if (decisive_line) {
    res->verdict = P2V_SMOKE_FAIL;
    res->stage = decisive;
    res->evidence = xstrdup (decisive_line);
  }
  else if (end != P2V_SMOKE_RUNNING) {
    res->verdict = P2V_SMOKE_FAIL;
    if (soft_line && soft_at > last_real_root) {
      res->stage = P2V_SMOKE_STAGE_ROOT_NOT_FOUND;
      res->evidence = xstrdup (soft_line);
    }
    else if (end == P2V_SMOKE_EXITED) {
      res->stage = P2V_SMOKE_STAGE_GUEST_STOPPED;
      res->evidence = xasprintf ("the guest reset or powered off at stage '%s'",
                                 smoke_reached_name (reached));
    }
    else {
      size_t n = smoke_strv_len (con);
      res->stage = P2V_SMOKE_STAGE_TIMEOUT;
      if (reached == P2V_SMOKE_REACHED_INITRAMFS && last_initrd > last_real_root)
        res->evidence = xasprintf ("still in the initramfs: the root file system "
                                   "did not appear in time (last line: %s)",
                                   n ? con[n - 1] : "");
      else
        res->evidence = xasprintf ("no report from the guest; furthest stage seen: %s",
                                   smoke_reached_name (reached));
    }
  }

  smoke_strv_free (con);
  smoke_strv_free (fw);
  smoke_strv_free (rep);
}
