/* smoke-prepare.c: make the throwaway overlay observable, in one libguestfs
 * session: find the firmware the disk wants, send the kernel console to
 * the serial port and install a one-shot service that reports the boot. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <guestfs.h>

#include "common.h"
#include "inject-int.h"
#include "smoke.h"

#define KERNEL_ARGS "console=ttyS0,115200 systemd.show_status=1"
#define REPORT_SCRIPT "/etc/p2v-smoke-report"
#define REPORT_UNIT "/etc/systemd/system/p2v-smoke.service"
#define REPORT_WANTS "/etc/systemd/system/multi-user.target.wants"

/* Run inside the guest as its default target is reached.  Shell only
 * (findmnt, ip, systemctl if there), so any Linux guest can run it. */
static const char report_script[] =
  "#!/bin/sh\n"
  "# p2v smoke: written into a throwaway overlay by `p2v smoke`; tells the\n"
  "# host how this boot went, as one JSON line on the serial ports.\n"
  "PATH=/usr/sbin:/usr/bin:/sbin:/bin\n"
  "export PATH LC_ALL=C\n"
  "\n"
  "esc() { printf '%s' \"$1\" | tr -d '\\000-\\037' | sed -e 's/\\\\/\\\\\\\\/g' -e 's/\"/\\\\\"/g'; }\n"
  "str() { printf '\"%s\"' \"$(esc \"$1\")\"; }\n"
  "strs() { sep=; printf '['; for w in \"$@\"; do printf '%s%s' \"$sep\" \"$(str \"$w\")\"; sep=,; done; printf ']'; }\n"
  "booting() { case $(systemctl is-system-running 2>/dev/null) in initializing|starting) return 0;; esac; return 1; }\n"
  "\n"
  "if [ -d /run/systemd/system ]; then\n"
  "    target=$(systemctl get-default 2>/dev/null)\n"
  "    # Bounded waits: for the default target, then for the boot to settle\n"
  "    # (interfaces hot-plugged by udev get their addresses then).\n"
  "    i=0\n"
  "    while [ $i -lt 120 ] && [ \"$(systemctl is-active \"$target\" 2>/dev/null)\" != active ] && booting; do\n"
  "        sleep 1; i=$((i + 1))\n"
  "    done\n"
  "    i=0\n"
  "    while [ $i -lt 20 ] && booting; do sleep 1; i=$((i + 1)); done\n"
  "    target_state=$(systemctl is-active \"$target\" 2>/dev/null)\n"
  "    system_state=$(systemctl is-system-running 2>/dev/null)\n"
  "    failed=$(systemctl --failed --plain --no-legend 2>/dev/null | awk '{\n"
  "        for (i = 1; i <= NF; i++)\n"
  "            if ($i ~ /\\.(service|socket|mount|automount|swap|target|device|timer|path|slice|scope)$/) { print $i; break }\n"
  "    }')\n"
  "else\n"
  "    target=\"runlevel $(runlevel 2>/dev/null | awk '{print $2}')\"\n"
  "    target_state=active\n"
  "    system_state=running\n"
  "    failed=\n"
  "fi\n"
  "\n"
  "root_source=$(findmnt -n -o SOURCE / 2>/dev/null | sed 's/\\[.*//')\n"
  "root_fstype=$(findmnt -n -o FSTYPE / 2>/dev/null)\n"
  "[ -n \"$root_source\" ] || root_source=$(awk '$2 == \"/\" { s = $1 } END { print s }' /proc/mounts)\n"
  "[ -n \"$root_fstype\" ] || root_fstype=$(awk '$2 == \"/\" { s = $3 } END { print s }' /proc/mounts)\n"
  "\n"
  "# The whole disks under /, through partitions, LVM, dm-crypt and md.\n"
  "disks_of() (\n"
  "    d=$1\n"
  "    if [ -n \"$(ls \"$d/slaves\" 2>/dev/null)\" ]; then\n"
  "        for s in \"$d\"/slaves/*; do disks_of \"$(readlink -f \"$s\")\"; done\n"
  "    elif [ -f \"$d/partition\" ]; then\n"
  "        disks_of \"$(readlink -f \"$d/..\")\"\n"
  "    else\n"
  "        echo \"${d##*/}\"\n"
  "    fi\n"
  ")\n"
  "mm=$(awk '$5 == \"/\" { mm = $3 } END { print mm }' /proc/self/mountinfo)\n"
  "sys=\n"
  "if [ -n \"$mm\" ] && [ -d \"/sys/dev/block/$mm\" ]; then\n"
  "    sys=$(readlink -f \"/sys/dev/block/$mm\")\n"
  "elif [ -b \"$root_source\" ]; then\n"
  "    sys=$(readlink -f \"/sys/class/block/$(basename \"$(readlink -f \"$root_source\")\")\")\n"
  "fi\n"
  "disks=\n"
  "if [ -n \"$sys\" ] && [ -d \"$sys\" ]; then\n"
  "    for d in $(disks_of \"$sys\" | sort -u); do\n"
  "        drv=$(readlink \"/sys/block/$d/device/driver\" 2>/dev/null)\n"
  "        [ -n \"$drv\" ] || drv=$(readlink \"/sys/block/$d/device/../driver\" 2>/dev/null)\n"
  "        disks=\"$disks${disks:+,}{\\\"name\\\":$(str \"/dev/$d\"),\\\"driver\\\":$(str \"${drv##*/}\")}\"\n"
  "    done\n"
  "fi\n"
  "\n"
  "ifaces=\n"
  "for n in /sys/class/net/*; do\n"
  "    name=${n##*/}\n"
  "    [ \"$name\" = lo ] && continue\n"
  "    drv=$(readlink \"$n/device/driver\" 2>/dev/null)\n"
  "    addrs=$(ip -4 -o addr show dev \"$name\" 2>/dev/null | awk '{ print $4 }')\n"
  "    ifaces=\"$ifaces${ifaces:+,}{\\\"name\\\":$(str \"$name\"),\\\"mac\\\":$(str \"$(cat \"$n/address\" 2>/dev/null)\"),\\\"state\\\":$(str \"$(cat \"$n/operstate\" 2>/dev/null)\"),\\\"driver\\\":$(str \"${drv##*/}\"),\\\"ipv4\\\":$(strs $addrs)}\"\n"
  "done\n"
  "\n"
  "uptime=$(cut -d' ' -f1 /proc/uptime 2>/dev/null)\n"
  "case $uptime in '' | *[!0-9.]*) uptime=0 ;; esac\n"
  "\n"
  "line=\"P2V-SMOKE {\\\"target\\\":$(str \"$target\"),\\\"target_state\\\":$(str \"$target_state\"),\\\"system_state\\\":$(str \"$system_state\"),\\\"kernel\\\":$(str \"$(uname -r)\"),\\\"root_source\\\":$(str \"$root_source\"),\\\"root_fstype\\\":$(str \"$root_fstype\"),\\\"root_disks\\\":[$disks],\\\"interfaces\\\":[$ifaces],\\\"failed_units\\\":$(strs $failed),\\\"uptime\\\":$uptime}\"\n"
  "# ttyS1 is the host's report port; ttyS0, the console, for people reading it.\n"
  "for port in /dev/ttyS1 /dev/ttyS0; do\n"
  "    if command -v timeout >/dev/null 2>&1; then\n"
  "        timeout 10 sh -c 'printf \"%s\\n\" \"$1\" > \"$2\"' sh \"$line\" \"$port\"\n"
  "    else\n"
  "        printf '%s\\n' \"$line\" > \"$port\"\n"
  "    fi 2>/dev/null\n"
  "done\n"
  ;

static const char report_unit[] =
  "# p2v smoke: report how the boot went (throwaway overlay only)\n"
  "[Unit]\n"
  "Description=p2v smoke test report\n"
  "After=multi-user.target\n"
  "\n"
  "[Service]\n"
  /* simple, not oneshot: its start job must not hold the boot open, as
   * the script waits for the boot to finish. */
  "Type=simple\n"
  "ExecStart=/bin/sh " REPORT_SCRIPT "\n"
  "\n"
  "[Install]\n"
  "WantedBy=multi-user.target\n";

/* ---- pure text edits, unit-tested ---------------------------------------- */

/* Copy text line by line, appending args to lines whose first word is one
 * of words. */
static char *
append_to_lines (const char *text, const char *const *words, const char *args,
                 size_t *n)
{
  size_t len = strlen (text), alen = strlen (args), cap = len + 1, out = 0;
  char *r = xmalloc (cap);

  *n = 0;
  for (const char *p = text; *p;) {
    const char *eol = strchr (p, '\n');
    const char *end = eol ? eol : p + strlen (p);
    const char *w = p, *we, *content_end = end;
    bool match = false;

    while (w < end && (*w == ' ' || *w == '\t'))
      w++;
    we = w;
    while (we < end && *we != ' ' && *we != '\t')
      we++;
    for (size_t i = 0; words[i]; i++)
      if ((size_t) (we - w) == strlen (words[i]) &&
          strncmp (w, words[i], we - w) == 0)
        match = true;
    while (content_end > we &&
           (content_end[-1] == ' ' || content_end[-1] == '\t' ||
            content_end[-1] == '\r'))
      content_end--;
    /* A line continued with a backslash: leave it alone. */
    if (match && content_end > we && content_end[-1] == '\\')
      match = false;

    if (match) {
      cap += alen + 1;
      r = xrealloc (r, cap);
      memcpy (r + out, p, content_end - p);
      out += content_end - p;
      r[out++] = ' ';
      memcpy (r + out, args, alen);
      out += alen;
      memcpy (r + out, content_end, end - content_end);
      out += end - content_end;
      (*n)++;
    }
    else {
      memcpy (r + out, p, end - p);
      out += end - p;
    }
    if (eol)
      r[out++] = '\n';
    p = eol ? eol + 1 : end;
  }
  r[out] = '\0';
  return r;
}

char *
smoke_edit_grub_cfg (const char *cfg, const char *args, size_t *n)
{
  static const char *const words[] = { "linux", "linux16", "linuxefi", NULL };
  return append_to_lines (cfg, words, args, n);
}

char *
smoke_edit_bls_entry (const char *entry, const char *args, size_t *n)
{
  static const char *const words[] = { "options", NULL };
  char *r = append_to_lines (entry, words, args, n), *with;
  size_t len = strlen (r);

  if (*n > 0)
    return r;
  /* No options line at all: add one. */
  with = xasprintf ("%s%soptions %s\n", r,
                    len && r[len - 1] != '\n' ? "\n" : "", args);
  free (r);
  *n = 1;
  return with;
}

/* ---- the libguestfs session ---------------------------------------------- */

/* Full libguestfs inspection costs 15-20 s under TCG (it lists and probes
 * every file system); we need much less: the root file system and the
 * files holding kernel command lines.  So we mount each candidate once
 * and look. */

#define ESP_TYPE "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
#define BIOS_BOOT_TYPE "21686148-6449-6E6F-744E-656564454649"

struct session {
  guestfs_h *g;
  const char *image;            /* for messages: the user's name */
  bool found_root;
  size_t cmdlines;              /* kernel command lines edited */
  char **edited;                /* files edited, "DEVICE:PATH" */
};

static int
gfs_error (struct session *s, const char *what)
{
  char *e = one_line (guestfs_last_error (s->g));
  int r = p2v_error ("%s '%s': %s", what, s->image, e);

  free (e);
  return r;
}

/* libguestfs allocates with malloc: same as ours. */
#define free_strv_guestfs smoke_strv_free

/* The value of KEY in a libguestfs hash (key, value, key, value, ...). */
static const char *
hash_get (char **h, const char *key)
{
  for (size_t i = 0; h && h[i] && h[i + 1]; i += 2)
    if (strcmp (h[i], key) == 0)
      return h[i + 1];
  return NULL;
}

/* How the disk's first sector boots under BIOS: 0, not at all (no 0x55AA
 * signature, or no code in its first 440 bytes, as fdisk leaves a data
 * disk and as a GPT's protective MBR is); 1, generic code (parted's and
 * Windows' chain-load the active partition, and a data disk that parted
 * labelled has it); 2, a boot loader's own (GRUB's boot.img and LILO's
 * carry their names). */
static int
mbr_boot_score (struct session *s, const char *dev)
{
  size_t n = 0;
  char *sector = guestfs_pread_device (s->g, dev, 512, 0, &n);
  int score = 0;

  if (sector && n == 512 && (uint8_t) sector[510] == 0x55
      && (uint8_t) sector[511] == 0xaa) {
    for (size_t i = 0; i < 440 && score == 0; i++)
      score = sector[i] != 0;
    if (memmem (sector, 440, "GRUB", 4) || memmem (sector, 440, "LILO", 4))
      score = 2;
  }
  free (sector);
  return score;
}

/* The disk the firmware must boot, and (when *firmware is AUTO) the
 * firmware.  UEFI: the first disk, in the VM's order, whose GPT has an
 * EFI System Partition (in AUTO, one with no BIOS boot partition, and
 * not after a disk whose MBR names its loader).  BIOS: the first
 * disk whose MBR names its boot loader, else the first with any boot
 * code.  With the firmware known, only that kind is looked for.  None
 * at all: BIOS, the first disk.  Partition tables as libblkid reads
 * them. */
static void
find_boot_disk (struct session *s, char **devs, char **partitions,
                enum p2v_smoke_firmware *firmware, size_t *boot_disk)
{
  enum p2v_smoke_firmware want = *firmware;
  int best = 0;

  *boot_disk = 0;
  if (want == P2V_SMOKE_FIRMWARE_AUTO)
    *firmware = P2V_SMOKE_FIRMWARE_BIOS;
  for (size_t d = 0; devs && devs[d]; d++) {
    bool esp = false, bios_boot = false;
    int score;

    for (size_t i = 0; partitions[i]; i++) {
      char *dev = guestfs_part_to_dev (s->g, partitions[i]);
      char **id = dev && strcmp (dev, devs[d]) == 0
        ? guestfs_blkid (s->g, partitions[i]) : NULL;
      const char *scheme = hash_get (id, "PART_ENTRY_SCHEME");
      const char *type = hash_get (id, "PART_ENTRY_TYPE");

      if (scheme && type && strcmp (scheme, "gpt") == 0) {
        esp |= strcasecmp (type, ESP_TYPE) == 0;
        bios_boot |= strcasecmp (type, BIOS_BOOT_TYPE) == 0;
      }
      free_strv_guestfs (id);
      free (dev);
    }
    /* (A disk before it whose MBR names its loader wins in AUTO.) */
    if (want != P2V_SMOKE_FIRMWARE_BIOS && esp
        && (want == P2V_SMOKE_FIRMWARE_UEFI || (!bios_boot && best < 2))) {
      *boot_disk = d;
      *firmware = P2V_SMOKE_FIRMWARE_UEFI;
      return;
    }
    if (want == P2V_SMOKE_FIRMWARE_UEFI)
      continue;
    score = mbr_boot_score (s, devs[d]);
    if (score > best) {
      best = score;
      *boot_disk = d;
    }
  }
}

/* Read a guest file as a string. */
static char *
read_text (struct session *s, const char *path)
{
  size_t size;
  char *buf = guestfs_read_file (s->g, path, &size), *text;

  if (!buf)
    return NULL;
  text = xmalloc (size + 1);
  memcpy (text, buf, size);
  text[size] = '\0';
  free (buf);
  return text;
}

/* Edit one boot loader file in place. */
static int
edit_boot_file (struct session *s, const char *path, bool bls)
{
  char *text = read_text (s, path), *edited;
  size_t n;
  int r = 0;

  if (!text)
    return gfs_error (s, "cannot read the boot loader configuration of");
  edited = bls ? smoke_edit_bls_entry (text, KERNEL_ARGS, &n)
    : smoke_edit_grub_cfg (text, KERNEL_ARGS, &n);
  if (n > 0 && guestfs_write (s->g, path, edited, strlen (edited)) == -1)
    r = gfs_error (s, "cannot write the boot loader configuration of");
  s->cmdlines += n;
  free (text);
  free (edited);
  return r;
}

/* Kernel console on ttyS0 in every grub.cfg and BLS entry of the file
 * system mounted at / (a root with /boot, a separate /boot, an ESP whose
 * grub.cfg is the real one), each file once even through symlinks. */
static int
edit_boot_loader (struct session *s, const char *device)
{
  static const char *const globs[] = {
    "/boot/grub/grub.cfg", "/boot/grub2/grub.cfg", "/boot/loader/entries/*.conf",
    "/grub/grub.cfg", "/grub2/grub.cfg", "/loader/entries/*.conf",
    "/EFI/*/grub.cfg", "/efi/*/grub.cfg",
  };
  int r = 0;

  for (size_t i = 0; i < ARRAY_SIZE (globs) && r == 0; i++) {
    char **paths = guestfs_glob_expand (s->g, globs[i]);
    for (size_t j = 0; paths && paths[j] && r == 0; j++) {
      char *real = guestfs_realpath (s->g, paths[j]), *key;
      bool dup = false;
      if (!real || guestfs_is_file (s->g, real) != 1) {
        free (real);
        continue;
      }
      key = xasprintf ("%s:%s", device, real);
      for (size_t k = 0; s->edited[k]; k++)
        dup |= strcmp (s->edited[k], key) == 0;
      if (!dup) {
        r = edit_boot_file (s, real, strstr (globs[i], "/loader/") != NULL);
        smoke_strv_push (&s->edited, key);
      }
      else
        free (key);
      free (real);
    }
    free_strv_guestfs (paths);
  }
  return r;
}

static bool
guest_uses_systemd (struct session *s)
{
  static const char *const inits[] = { "/sbin/init", "/usr/sbin/init" };

  for (size_t i = 0; i < ARRAY_SIZE (inits); i++) {
    if (guestfs_is_symlink (s->g, inits[i]) == 1) {
      char *target = guestfs_readlink (s->g, inits[i]);
      bool sd = target && strstr (target, "systemd");
      free (target);
      return sd;
    }
    if (guestfs_is_file (s->g, inits[i]) == 1)
      return false;             /* sysvinit, upstart, busybox... */
  }
  return guestfs_is_file (s->g, "/lib/systemd/systemd") == 1 ||
    guestfs_is_file (s->g, "/usr/lib/systemd/systemd") == 1;
}

/* New files get the guest's SELinux labels, or an enforcing guest would
 * refuse to run them.  Best effort: a failure shows as "timeout". */
static void
relabel (struct session *s, const char *const *paths)
{
  char *config = NULL, *type = NULL, *specfile = NULL;
  const char *features[] = { "selinuxrelabel", NULL };

  if (guestfs_is_file (s->g, "/etc/selinux/config") != 1)
    return;
  config = read_text (s, "/etc/selinux/config");
  for (char *p = config; p && *p;) {
    char *eol = strchrnul (p, '\n');
    if (strncmp (p, "SELINUXTYPE=", 12) == 0)
      type = strndup (p + 12, eol - p - 12);
    p = *eol ? eol + 1 : eol;
  }
  if (!type)
    goto out;
  specfile = xasprintf ("/etc/selinux/%s/contexts/files/file_contexts", type);
  if (guestfs_feature_available (s->g, (char **) features) != 1 ||
      guestfs_is_file (s->g, specfile) != 1)
    goto out;
  for (size_t i = 0; paths[i]; i++)
    if (guestfs_selinux_relabel (s->g, specfile, paths[i], -1) == -1)
      p2v_warning ("cannot set the SELinux label of '%s' in '%s': %s",
                   paths[i], s->image, guestfs_last_error (s->g));
 out:
  free (config);
  free (type);
  free (specfile);
}

/* The report script, and what starts it once the boot is done. */
static int
install_report (struct session *s)
{
  const char *relabel_paths[4] = { REPORT_SCRIPT, NULL };

  if (guestfs_write (s->g, REPORT_SCRIPT, report_script,
                     sizeof report_script - 1) == -1 ||
      guestfs_chmod (s->g, 0755, REPORT_SCRIPT) == -1)
    return gfs_error (s, "cannot install the smoke report script in");

  if (guest_uses_systemd (s)) {
    if (guestfs_mkdir_p (s->g, REPORT_WANTS) == -1 ||
        guestfs_write (s->g, REPORT_UNIT, report_unit,
                       sizeof report_unit - 1) == -1 ||
        guestfs_ln_sf (s->g, REPORT_UNIT,
                       REPORT_WANTS "/p2v-smoke.service") == -1)
      return gfs_error (s, "cannot install the smoke report service in");
    relabel_paths[1] = REPORT_UNIT;
    relabel_paths[2] = REPORT_WANTS;
  }
  else {
    /* sysvinit and friends run rc.local last, in the default runlevel. */
    const char *rc = guestfs_is_file (s->g, "/etc/rc.d/rc.local") == 1
      ? "/etc/rc.d/rc.local" : "/etc/rc.local";
    char *old = guestfs_is_file (s->g, rc) == 1 ? read_text (s, rc) : NULL;
    const char *body = old ? old : "";
    char *text;

    if (strncmp (body, "#!", 2) == 0)
      body = strchrnul (body, '\n');
    text = xasprintf ("#!/bin/sh\n/bin/sh " REPORT_SCRIPT " &\n%s%s",
                      *body == '\n' ? body + 1 : body,
                      old ? "" : "exit 0\n");
    free (old);
    if (guestfs_write (s->g, rc, text, strlen (text)) == -1 ||
        guestfs_chmod (s->g, 0755, rc) == -1) {
      free (text);
      return gfs_error (s, "cannot install the smoke report in rc.local of");
    }
    free (text);
    relabel_paths[1] = rc;
  }
  relabel (s, relabel_paths);
  return 0;
}

static bool
is_root_at (struct session *s, const char *prefix)
{
  char *etc = xasprintf ("%s/etc/fstab", prefix);
  char *os = xasprintf ("%s/etc/os-release", prefix);
  char *os_usr = xasprintf ("%s/usr/lib/os-release", prefix);
  char *sh = xasprintf ("%s/bin/sh", prefix);
  bool r = guestfs_is_file (s->g, etc) == 1 && guestfs_exists (s->g, sh) == 1 &&
    (guestfs_is_file (s->g, os) == 1 || guestfs_is_file (s->g, os_usr) == 1 ||
     guestfs_is_dir (s->g, "/etc/init.d") == 1);
  free (etc);
  free (os);
  free (os_usr);
  free (sh);
  return r;
}

/* With device mounted at /: is it a Linux root?  Directly, or as a btrfs
 * subvolume one level down ("@", "root"), which we then mount instead so
 * that paths (and SELinux labels) are the guest's own. */
static bool
mount_root (struct session *s, const char *device)
{
  char **top;
  bool found = false;

  if (is_root_at (s, ""))
    return true;
  top = guestfs_ls (s->g, "/");
  for (size_t i = 0; top && top[i] && !found; i++) {
    char *prefix = xasprintf ("/%s", top[i]), *opts;
    if (guestfs_is_dir (s->g, prefix) == 1 && is_root_at (s, prefix)) {
      opts = xasprintf ("subvol=%s", top[i]);
      guestfs_umount_all (s->g);
      found = guestfs_mount_options (s->g, opts, device, "/") == 0 &&
        is_root_at (s, "");
      if (!found) {
        guestfs_umount_all (s->g);
        guestfs_mount (s->g, device, "/");
      }
      free (opts);
    }
    free (prefix);
  }
  free_strv_guestfs (top);
  return found;
}

/* Look at one file system: edit its boot loader files, and if it is the
 * (first) root, install the report there. */
static int
prepare_filesystem (struct session *s, const char *device)
{
  int r = 0;

  if (guestfs_mount (s->g, device, "/") == -1)
    return 0;                   /* swap, a PV, empty: not ours to edit */
  if (!s->found_root && mount_root (s, device)) {
    s->found_root = true;
    r = install_report (s);
  }
  if (r == 0)
    r = edit_boot_loader (s, device);
  if (guestfs_umount_all (s->g) == -1 && r == 0)
    r = gfs_error (s, "cannot unmount the file systems of");
  return r;
}

int
smoke_prepare_overlay (const char *const *overlays, size_t n,
                       const char *image, enum p2v_smoke_firmware *firmware,
                       size_t *boot_disk, const char *accel, bool *prepared)
{
  struct session s = { .image = image };
  char **parts = NULL, **lvs = NULL, **mds = NULL, **devs = NULL;
  char ***lists[] = { &parts, &lvs, &mds };
  int r = -1;

  *prepared = false;
  {
    const char **formats = xcalloc (n, sizeof *formats);
    for (size_t i = 0; i < n; i++)
      formats[i] = "qcow2";
    /* As inject: KVM when it works, and a KVM that hangs on this host
     * costs one watchdog timeout, then TCG. */
    s.g = appliance_launch (overlays, formats, n, false, accel, false, image,
                            NULL);
    free (formats);
  }
  if (!s.g)
    return -1;
  s.edited = xcalloc (1, sizeof *s.edited);
  parts = guestfs_list_partitions (s.g);
  devs = guestfs_list_devices (s.g);
  if (!parts || !devs) {
    gfs_error (&s, "cannot list the partitions of");
    goto out;
  }
  lvs = guestfs_lvs (s.g);
  mds = guestfs_list_md_devices (s.g);
  find_boot_disk (&s, devs, parts, firmware, boot_disk);

  /* LVs first (a root on LVM is the common server layout; its /boot
   * partition is found either way), then md, partitions, and whole disks
   * without a partition table. */
  for (size_t l = 0; l < ARRAY_SIZE (lists); l++) {
    char **v = *lists[(l + 1) % ARRAY_SIZE (lists)];
    for (size_t i = 0; v && v[i]; i++)
      if (prepare_filesystem (&s, v[i]) == -1)
        goto out;
  }
  for (size_t i = 0; devs[i]; i++) {
    bool partitioned = false;
    for (size_t j = 0; parts[j] && !partitioned; j++)
      partitioned = strncmp (parts[j], devs[i], strlen (devs[i])) == 0;
    if (!partitioned && prepare_filesystem (&s, devs[i]) == -1)
      goto out;
  }

  if (s.found_root && s.cmdlines == 0)
    p2v_warning ("no kernel command line found in the grub configuration "
                 "of '%s': its console will stay quiet", image);
  *prepared = s.found_root;
  if (guestfs_shutdown (s.g) == -1) {
    gfs_error (&s, "cannot write the smoke overlay of");
    goto out;
  }
  r = 0;
 out:
  guestfs_close (s.g);
  free_strv_guestfs (parts);
  free_strv_guestfs (lvs);
  free_strv_guestfs (mds);
  free_strv_guestfs (devs);
  smoke_strv_free (s.edited);
  return r;
}
