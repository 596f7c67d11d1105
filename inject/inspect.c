/* inspect.c: the facts about a guest that the plan is built from: OS and
 * family, firmware, boot loader, kernels and their initramfs, file
 * systems and how fstab names them, network configuration, agents. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <guestfs.h>

#include "common.h"
#include "inject-int.h"

#define G(gs) ((guestfs_h *) guest_handle (gs))

/* "{kver}" in PATTERN replaced, unquoted (for paths). */
static char *
expand_kver (const char *pattern, const char *kver)
{
  const char *p = strstr (pattern, "{kver}");
  if (!p)
    return xstrdup (pattern);
  return xasprintf ("%.*s%s%s", (int) (p - pattern), pattern, kver,
                    p + strlen ("{kver}"));
}

static char *
hash_get (char **hash, const char *key)
{
  for (size_t i = 0; hash && hash[i] && hash[i + 1]; i += 2)
    if (strcmp (hash[i], key) == 0 && *hash[i + 1])
      return xstrdup (hash[i + 1]);
  return NULL;
}

/* ---- file systems ---- */

/* Partitions, LVs, md devices and unpartitioned disks, each with its
 * blkid identity.  (guestfs_list_filesystems probes far more, and takes
 * ten seconds under TCG for it.) */
static void
collect_filesystems (struct p2v_guest *gs, struct p2v_facts *f)
{
  static const char *const not_fs[] = {
    "LVM2_member", "linux_raid_member", "crypto_LUKS", "isw_raid_member",
    "ddf_raid_member", "zfs_member",
  };
  struct p2v_strings devs = { 0 };
  char **v;

  if ((v = guestfs_list_devices (G (gs)))) {
    for (size_t i = 0; v[i]; i++)
      strings_add (&f->disks, v[i]);
    free_string_array (v);
  }
  if ((v = guestfs_list_partitions (G (gs)))) {
    for (size_t i = 0; v[i]; i++)
      strings_add (&f->partitions, v[i]);
    free_string_array (v);
  }
  for (size_t i = 0; i < f->disks.n; i++) {
    bool partitioned = false;
    size_t n = strlen (f->disks.v[i]);
    for (size_t j = 0; j < f->partitions.n; j++)
      partitioned |= strncmp (f->partitions.v[j], f->disks.v[i], n) == 0;
    if (!partitioned)
      strings_add (&devs, f->disks.v[i]);
  }
  for (size_t j = 0; j < f->partitions.n; j++)
    strings_add (&devs, f->partitions.v[j]);
  if ((v = guestfs_list_md_devices (G (gs)))) {
    for (size_t i = 0; v[i]; i++)
      strings_add (&devs, v[i]);
    free_string_array (v);
  }
  if ((v = guestfs_lvs (G (gs)))) {
    for (size_t i = 0; v[i]; i++)
      strings_add (&devs, v[i]);
    free_string_array (v);
  }

  f->fs = xcalloc (devs.n + 1, sizeof *f->fs);
  for (size_t i = 0; i < devs.n; i++) {
    char **id = guestfs_blkid (G (gs), devs.v[i]);
    char *type = hash_get (id, "TYPE");
    bool skip = !type;
    struct p2v_filesystem *fs;
    for (size_t k = 0; k < ARRAY_SIZE (not_fs) && !skip; k++)
      skip = strcmp (type, not_fs[k]) == 0;
    if (skip) {
      free (type);
      free_string_array (id);
      continue;
    }
    fs = &f->fs[f->nfs++];
    fs->device = xstrdup (devs.v[i]);
    fs->type = type;
    fs->uuid = hash_get (id, "UUID");
    fs->partuuid = hash_get (id, "PARTUUID");
    fs->label = hash_get (id, "LABEL");
    free_string_array (id);
  }
  strings_free (&devs);
}

static struct p2v_filesystem *
fs_by_device (struct p2v_facts *f, const char *device)
{
  for (size_t i = 0; i < f->nfs; i++)
    if (strcmp (f->fs[i].device, device) == 0)
      return &f->fs[i];
  return NULL;
}

/* The appliance device an unstable guest device name points at. */
static char *
appliance_device (struct p2v_facts *f, const char *name)
{
  int disk, part;
  const char *d = NULL;
  char *dev;

  if (devname_parse (name, &disk, &part) == -1)
    return NULL;
  if (disk >= 0 && (size_t) disk < f->disks.n)
    d = f->disks.v[disk];
  else if (disk < 0 && f->disks.n == 1)
    d = f->disks.v[0];
  else if (disk < 0 && part > 0) {
    /* by-id / by-path on several disks: the one disk with that
     * partition, if only one has it. */
    for (size_t i = 0; i < f->disks.n; i++) {
      char *cand = xasprintf ("%s%d", f->disks.v[i], part);
      if (strings_contains (&f->partitions, cand)) {
        if (d) {
          free (cand);
          return NULL;
        }
        d = f->disks.v[i];
      }
      free (cand);
    }
  }
  if (!d)
    return NULL;
  dev = part ? xasprintf ("%s%d", d, part) : xstrdup (d);
  if (part && !strings_contains (&f->partitions, dev)) {
    free (dev);
    return NULL;
  }
  return dev;
}

char *
facts_resolve (const char *name, void *opaque)
{
  struct p2v_facts *f = opaque;
  char *dev = appliance_device (f, name);
  struct p2v_filesystem *fs = dev ? fs_by_device (f, dev) : NULL;

  free (dev);
  if (fs && fs->uuid)
    return xasprintf ("UUID=%s", fs->uuid);
  if (fs && fs->partuuid)
    return xasprintf ("PARTUUID=%s", fs->partuuid);
  return NULL;
}

/* The file system an fstab spec names, or NULL. */
static struct p2v_filesystem *
fs_by_spec (struct p2v_guest *gs, struct p2v_facts *f, const char *spec)
{
  static const struct { const char *prefix; int field; } keyed[] = {
    { "UUID=", 0 }, { "/dev/disk/by-uuid/", 0 },
    { "LABEL=", 1 }, { "/dev/disk/by-label/", 1 },
    { "PARTUUID=", 2 }, { "/dev/disk/by-partuuid/", 2 },
  };

  for (size_t k = 0; k < ARRAY_SIZE (keyed); k++) {
    size_t n = strlen (keyed[k].prefix);
    if (strncmp (spec, keyed[k].prefix, n) != 0)
      continue;
    for (size_t i = 0; i < f->nfs; i++) {
      const char *v = keyed[k].field == 0 ? f->fs[i].uuid
        : keyed[k].field == 1 ? f->fs[i].label : f->fs[i].partuuid;
      if (v && strcasecmp (v, spec + n) == 0)
        return &f->fs[i];
    }
    return NULL;
  }
  if (devname_is_unstable (spec)) {
    char *dev = appliance_device (f, spec);
    struct p2v_filesystem *fs = dev ? fs_by_device (f, dev) : NULL;
    free (dev);
    return fs;
  }
  if (strncmp (spec, "/dev/", 5) == 0) {
    struct p2v_filesystem *fs = fs_by_device (f, spec);
    char *lv;
    if (fs)
      return fs;
    lv = guestfs_lvm_canonical_lv_name (G (gs), spec);
    fs = lv ? fs_by_device (f, lv) : NULL;
    free (lv);
    return fs;
  }
  return NULL;
}

static void
read_fstab (struct p2v_guest *gs, struct p2v_facts *f)
{
  char *text = guest_read (gs, "/etc/fstab");
  size_t pos = 0, len;
  const char *line;

  if (!text)
    return;
  while (text_next_line (text, &pos, &line, &len)) {
    char *spec, *mp, *type;
    struct p2v_filesystem *fs;
    if (!fstab_parse_line (line, len, &spec, &mp, &type))
      continue;
    fs = fs_by_spec (gs, f, spec);
    if (fs && !fs->fstab_name) {
      fs->fstab_name = spec;
      spec = NULL;
      if (strcmp (mp, "none") != 0 && strcmp (type, "swap") != 0) {
        fs->mountpoint = mp;
        mp = NULL;
      }
    }
    free (spec);
    free (mp);
    free (type);
  }
  free (text);
}

static const char *
mountpoint_device (struct p2v_facts *f, const char *mp)
{
  for (size_t i = 0; i < f->nfs; i++)
    if (f->fs[i].mountpoint && strcmp (f->fs[i].mountpoint, mp) == 0)
      return f->fs[i].device;
  return NULL;
}

/* ---- firmware and boot loader ---- */

static bool
has_efi_loaders (struct p2v_guest *gs, const char *esp)
{
  static const char *const patterns[] = { "%s/EFI/*/*.efi", "%s/EFI/*/*.EFI" };
  bool found = false;

  for (size_t i = 0; i < ARRAY_SIZE (patterns) && !found; i++) {
    char *p = xasprintf (patterns[i], esp);
    char **v = guest_glob (gs, p);
    found = v[0] != NULL;
    free_string_array (v);
    free (p);
  }
  return found;
}

static void
find_efi_dir (struct p2v_guest *gs, struct p2v_facts *f)
{
  char *pattern = xasprintf ("%s/EFI/*", f->boot.esp);
  char **dirs = guest_glob (gs, pattern);
  char *fallback;
  const char *slash;

  free (pattern);
  for (int pass = 0; pass < 2 && !f->boot.efi_dir; pass++)
    for (size_t i = 0; dirs[i] && !f->boot.efi_dir; i++) {
      char *d = xstrdup (dirs[i]), *shim, *grub;
      size_t n = strlen (d);
      if (n && d[n - 1] == '/')
        d[--n] = '\0';
      slash = strrchr (d, '/');
      if (strcasecmp (slash + 1, "BOOT") == 0
          || (pass == 0 && (!f->distro || strcasecmp (slash + 1, f->distro) != 0))) {
        free (d);
        continue;
      }
      shim = xasprintf ("%s/shimx64.efi", d);
      grub = xasprintf ("%s/grubx64.efi", d);
      if (guest_is_file (gs, shim) || guest_is_file (gs, grub))
        f->boot.efi_dir = xstrdup (d);
      free (shim);
      free (grub);
      free (d);
    }
  free_string_array (dirs);

  pattern = xasprintf ("%s/EFI/BOOT/BOOTX64.EFI", f->boot.esp);
  fallback = guestfs_case_sensitive_path (G (gs), pattern);
  if (fallback && guest_is_file (gs, fallback))
    f->boot.efi_fallback = fallback;
  else
    free (fallback);
  free (pattern);
}

static char *
first_existing (struct p2v_guest *gs, const char *const *paths)
{
  for (size_t i = 0; paths && paths[i]; i++)
    if (guest_is_file (gs, paths[i]))
      return xstrdup (paths[i]);
  return NULL;
}

/* The whole disk under a file system (the first disk for LVM, md...). */
static char *
disk_of (struct p2v_guest *gs, struct p2v_facts *f, const char *device)
{
  if (device && strings_contains (&f->partitions, device)) {
    char *d = guestfs_part_to_dev (G (gs), device);
    if (d)
      return d;
  }
  return f->disks.n ? xstrdup (f->disks.v[0]) : NULL;
}

/* The index of DISK (an appliance name) among the guest's disks; 0 if
 * it is not one of them. */
static size_t
disk_index (const struct p2v_facts *f, const char *disk)
{
  for (size_t i = 0; disk && i < f->disks.n; i++)
    if (strcmp (f->disks.v[i], disk) == 0)
      return i;
  return 0;
}

static void
find_boot_loader (struct p2v_guest *gs, struct p2v_facts *f)
{
  const struct p2v_family *fam = f->family;
  const char *boot_dev;

  /* Firmware: an ESP with loaders on it, unless only BIOS GRUB is there. */
  for (size_t i = 0; i < f->nfs; i++) {
    const char *mp = f->fs[i].mountpoint;
    if (mp && strcmp (f->fs[i].type, "vfat") == 0
        && (strcmp (mp, "/boot/efi") == 0 || strcmp (mp, "/efi") == 0
            || strcmp (mp, "/boot") == 0)
        && has_efi_loaders (gs, mp)) {
      f->boot.esp = xstrdup (mp);
      break;
    }
  }
  f->firmware = "bios";
  if (f->boot.esp) {
    bool pc_only = (guest_is_dir (gs, "/boot/grub/i386-pc")
                    || guest_is_dir (gs, "/boot/grub2/i386-pc"))
      && !guest_is_dir (gs, "/boot/grub/x86_64-efi")
      && !guest_is_dir (gs, "/boot/grub2/x86_64-efi");
    if (!pc_only) {
      f->firmware = "uefi";
      find_efi_dir (gs, f);
    }
  }

  f->boot.type = "unknown";
  if ((f->boot.config = first_existing (gs, fam->grub_cfgs))) {
    f->boot.type = "grub2";
  }
  else if (f->boot.efi_dir) {
    /* Older RHEL keeps the whole grub.cfg on the ESP. */
    char *cfg = xasprintf ("%s/grub.cfg", f->boot.efi_dir);
    if (guest_is_file (gs, cfg)) {
      f->boot.type = "grub2";
      f->boot.config = cfg;
    }
    else
      free (cfg);
  }
  if (!f->boot.config) {
    static const char *const legacy[] = {
      "/boot/grub/menu.lst", "/boot/grub/grub.conf", NULL
    };
    static const char *const syslinux[] = {
      "/boot/extlinux/extlinux.conf", "/boot/syslinux/syslinux.cfg",
      "/extlinux.conf", NULL
    };
    if ((f->boot.config = first_existing (gs, legacy)))
      f->boot.type = "grub-legacy";
    else if ((f->boot.config = first_existing (gs, syslinux)))
      f->boot.type = "syslinux";
    else if (f->boot.esp) {
      char *loader = xasprintf ("%s/loader/loader.conf", f->boot.esp);
      if (guest_is_file (gs, loader)) {
        f->boot.type = "systemd-boot";
        f->boot.config = loader;
      }
      else
        free (loader);
    }
  }
  if (strcmp (f->boot.type, "grub2") == 0) {
    f->boot.mkconfig = first_existing (gs, fam->grub_mkconfig);
    f->boot.install = first_existing (gs, fam->grub_install);
    if (guest_is_file (gs, "/etc/default/grub"))
      f->boot.defaults = xstrdup ("/etc/default/grub");
  }
  if (strcmp (f->firmware, "bios") == 0) {
    boot_dev = mountpoint_device (f, "/boot");
    if (!boot_dev)
      boot_dev = f->root_device;
    f->boot.install_device = disk_of (gs, f, boot_dev);
    for (size_t i = 0; boot_dev && i < f->nfs; i++)
      if (f->fs[i].uuid && f->fs[i].device
          && strcmp (f->fs[i].device, boot_dev) == 0)
        f->boot.install_fs_uuid = xstrdup (f->fs[i].uuid);
    f->boot.disk = disk_index (f, f->boot.install_device);
  }
  else {
    /* The firmware finds the loader on the ESP's disk. */
    char *esp_disk = disk_of (gs, f, mountpoint_device (f, f->boot.esp));
    f->boot.disk = disk_index (f, esp_disk);
    free (esp_disk);
  }
}

/* ---- kernels and initramfs ---- */

static bool
tool_installed (struct p2v_guest *gs, const struct p2v_initramfs_tool *t)
{
  for (size_t i = 0; t->programs[i]; i++)
    if (guest_is_file (gs, t->programs[i]))
      return true;
  return false;
}

/* By what is installed: the family's usual tools first, then any. */
static const struct p2v_initramfs_tool *
find_initramfs_tool (struct p2v_guest *gs, const struct p2v_family *fam)
{
  for (size_t i = 0; fam->initramfs_tools[i]; i++) {
    const struct p2v_initramfs_tool *t =
      initramfs_tool_by_name (fam->initramfs_tools[i]);
    if (t && tool_installed (gs, t))
      return t;
  }
  for (size_t i = 0; i < p2v_ninitramfs_tools; i++)
    if (tool_installed (gs, &p2v_initramfs_tools[i]))
      return &p2v_initramfs_tools[i];
  return NULL;
}

static bool
skip_kernel_name (const char *v)
{
  static const char *const suffixes[] = { ".p2v-orig", ".old", ".bak", ".sig",
                                          ".hmac" };
  size_t n = strlen (v);

  /* Rescue kernels carry a generic initramfs with every driver, and
   * rebuilding one takes long. */
  if (strstr (v, "rescue") || !is_safe_word (v))
    return true;
  for (size_t i = 0; i < ARRAY_SIZE (suffixes); i++) {
    size_t s = strlen (suffixes[i]);
    if (n > s && strcmp (v + n - s, suffixes[i]) == 0)
      return true;
  }
  return false;
}

static int
compare_kernels (const void *a, const void *b)
{
  const struct p2v_kernel *x = a, *y = b;
  return strverscmp (x->version, y->version);
}

static bool
kernel_has_builtin_virtio (struct p2v_guest *gs, const char *kver)
{
  static const char *const dirs[] = { "/lib/modules", "/usr/lib/modules" };
  bool builtin = false, found = false;

  /* With merged /usr both paths are one file: the first one found. */
  for (size_t i = 0; i < ARRAY_SIZE (dirs) && !found; i++) {
    char *path = xasprintf ("%s/%s/modules.builtin", dirs[i], kver);
    char *text = guest_read (gs, path);
    found = text != NULL;
    builtin = text && strstr (text, "/virtio_blk.ko");
    free (text);
    free (path);
  }
  return builtin;
}

static const char *const bin_dirs[] = {
  "/usr/bin", "/usr/sbin", "/bin", "/sbin"
};

static char *
xstrndup_word (const char *s)
{
  size_t n = strcspn (s, " ");
  char *w = xmalloc (n + 1);
  memcpy (w, s, n);
  w[n] = '\0';
  return w;
}

static bool
guest_has_program (struct p2v_guest *gs, const char *program)
{
  bool found = false;

  for (size_t i = 0; i < ARRAY_SIZE (bin_dirs) && !found; i++) {
    char *p = xasprintf ("%s/%s", bin_dirs[i], program);
    found = guest_is_file (gs, p);
    free (p);
  }
  return found;
}

bool
initramfs_has_virtio_blk (struct p2v_guest *gs,
                          const struct p2v_initramfs_tool *t,
                          const char *initrd)
{
  char *program;
  bool found = false, lister;

  if (guest_initrd_has (gs, initrd, "virtio_blk.ko", &found) == 0)
    return found;
  program = xstrndup_word (t->lister);
  lister = guest_has_program (gs, program);
  free (program);
  if (lister) {
    static const char *const keys[] = { "initrd", NULL };
    const char *values[] = { initrd, NULL };
    char *list = template_expand (t->lister, keys, values);
    char *cmd = xasprintf ("%s 2>/dev/null | grep -q 'virtio_blk\\.ko'", list);
    found = guest_sh_ok (gs, cmd);
    free (cmd);
    free (list);
  }
  else {
    /* Without the guest's lister, libguestfs reads gzip/plain cpio. */
    char **files = guestfs_initrd_list (G (gs), initrd);
    for (size_t i = 0; files && files[i]; i++)
      if (strstr (files[i], "/virtio_blk.ko"))
        found = true;
    free_string_array (files);
  }
  return found;
}

static void
find_kernels (struct p2v_guest *gs, struct p2v_facts *f)
{
  static const char *const globs[] = { "/boot/vmlinuz-*", "/boot/vmlinux-*" };
  size_t cap = 0;

  for (size_t g = 0; g < ARRAY_SIZE (globs); g++) {
    char **v = guest_glob (gs, globs[g]);
    for (size_t i = 0; v[i]; i++) {
      const char *version = v[i] + strlen ("/boot/vmlinuz-");
      struct p2v_kernel *k;
      if (skip_kernel_name (version) || !guest_is_file (gs, v[i]))
        continue;
      if (f->nkernels == cap) {
        cap = cap ? cap * 2 : 4;
        f->kernels = xrealloc (f->kernels, cap * sizeof *f->kernels);
      }
      k = &f->kernels[f->nkernels++];
      memset (k, 0, sizeof *k);
      k->version = xstrdup (version);
      k->vmlinuz = xstrdup (v[i]);
      for (size_t j = 0; f->family->initramfs_names[j] && !k->initramfs_exists; j++) {
        char *p = expand_kver (f->family->initramfs_names[j], version);
        if (guest_is_file (gs, p)) {
          free (k->initramfs);
          k->initramfs = p;
          k->initramfs_exists = true;
        }
        else if (!k->initramfs)
          k->initramfs = p;
        else
          free (p);
      }
    }
    free_string_array (v);
  }
  if (f->nkernels > 1)
    qsort (f->kernels, f->nkernels, sizeof *f->kernels, compare_kernels);
}

static void
check_kernels_virtio (struct p2v_guest *gs, struct p2v_facts *f)
{
  for (size_t i = 0; i < f->nkernels; i++) {
    struct p2v_kernel *k = &f->kernels[i];
    k->virtio_builtin = kernel_has_builtin_virtio (gs, k->version);
    k->has_virtio = k->virtio_builtin;
    if (!k->has_virtio && k->initramfs_exists)
      k->has_virtio = initramfs_has_virtio_blk (gs, f->itool, k->initramfs);
  }
}

/* ---- network ---- */

typedef void (*net_parser) (const char *text, const char *file,
                            struct p2v_netifs *l);

static bool
parse_net_files (struct p2v_guest *gs, struct p2v_facts *f,
                 const char *pattern, net_parser parse, bool config)
{
  char **v = guest_glob (gs, pattern);
  bool any = false;

  for (size_t i = 0; v[i]; i++) {
    size_t before = f->netifs.n;
    char *text;
    if (strstr (v[i], ".p2v-orig") || strstr (v[i], "/ifcfg-lo")
        || !guest_is_file (gs, v[i]) || !(text = guest_read (gs, v[i])))
      continue;
    parse (text, v[i], &f->netifs);
    if (config)
      any |= f->netifs.n > before || strstr (text, "iface ") != NULL;
    strings_add (&f->net_files, v[i]);
    free (text);
  }
  free_string_array (v);
  return any;
}

static void
find_network (struct p2v_guest *gs, struct p2v_facts *f)
{
  static const struct {
    const char *style, *pattern;
    net_parser parse;
  } styles[] = {
    { "ifupdown", "/etc/network/interfaces", net_parse_ifupdown },
    { "ifupdown", "/etc/network/interfaces.d/*", net_parse_ifupdown },
    { "netplan", "/etc/netplan/*.yaml", net_parse_netplan },
    { "networkmanager", "/etc/NetworkManager/system-connections/*",
      net_parse_keyfile },
    { "ifcfg", "/etc/sysconfig/network-scripts/ifcfg-*", net_parse_ifcfg },
    { "ifcfg", "/etc/sysconfig/network/ifcfg-*", net_parse_ifcfg },
    { "networkd", "/etc/systemd/network/*.network", net_parse_networkd },
  };
  struct p2v_strbuf style = { 0 };

  for (size_t i = 0; i < ARRAY_SIZE (styles); i++)
    if (parse_net_files (gs, f, styles[i].pattern, styles[i].parse, true)
        && !(style.s && strstr (style.s, styles[i].style))) {
      if (style.len)
        sb_add (&style, ",");
      sb_add (&style, styles[i].style);
    }
  /* Pins: where names are tied to MACs or hardware. */
  parse_net_files (gs, f, "/etc/udev/rules.d/*net*.rules",
                   net_parse_udev_rules, false);
  parse_net_files (gs, f, "/etc/systemd/network/*.link", net_parse_link, false);
  f->net_style = style.len ? sb_steal (&style) : xstrdup ("none");
  sb_free (&style);
}

/* ---- hardware agents ---- */

/* Base names of what a glob finds, for matching in memory: one call
 * per directory instead of several per known service. */
static void
glob_names (struct p2v_guest *gs, const char *pattern, struct p2v_strings *paths)
{
  char **v = guest_glob (gs, pattern);
  for (size_t i = 0; v[i]; i++)
    strings_add (paths, v[i]);
  free_string_array (v);
}

static bool
base_is (const char *path, const char *prefix, const char *name,
         const char *suffix)
{
  const char *b = strrchr (path, '/');
  size_t np = strlen (prefix), nn = strlen (name);

  b = b ? b + 1 : path;
  if (*prefix == '#') {
    /* "S" plus two digits before the name (rc.d links). */
    if (b[0] != 'S' || !isdigit ((unsigned char) b[1])
        || !isdigit ((unsigned char) b[2]))
      return false;
    b += 3;
  }
  else {
    if (strncmp (b, prefix, np) != 0)
      return false;
    b += np;
  }
  return strncmp (b, name, nn) == 0 && strcmp (b + nn, suffix) == 0;
}

static void
find_agents (struct p2v_guest *gs, struct p2v_facts *f)
{
  struct p2v_strings units = { 0 }, links = { 0 };
  size_t cap = 0;

  glob_names (gs, "/etc/systemd/system/*.service", &units);
  glob_names (gs, "/lib/systemd/system/*.service", &units);
  glob_names (gs, "/usr/lib/systemd/system/*.service", &units);
  glob_names (gs, "/etc/init.d/*", &units);
  glob_names (gs, "/etc/systemd/system/*.wants/*.service", &links);
  glob_names (gs, "/etc/rc[0-6S].d/S*", &links);

  for (size_t a = 0; a < p2v_nagents; a++)
    for (size_t s = 0; p2v_agents[a].services[s]; s++) {
      const char *svc = p2v_agents[a].services[s];
      struct p2v_agent_found found = { .agent = &p2v_agents[a] };

      for (size_t i = 0; i < units.n && !found.unit_file; i++)
        if (base_is (units.v[i], "", svc, strstr (units.v[i], "/init.d/")
                     ? "" : ".service"))
          found.unit_file = xstrdup (units.v[i]);
      for (size_t i = 0; i < links.n; i++)
        if (base_is (links.v[i], "", svc, ".service")
            || (strncmp (links.v[i], "/etc/rc", 7) == 0
                && base_is (links.v[i], "#", svc, "")))
          strings_add (&found.links, links.v[i]);
      if (!found.unit_file && !found.links.n)
        continue;
      found.service = xstrdup (svc);
      if (found.unit_file && f->family->package_owner) {
        static const char *const keys[] = { "file", NULL };
        const char *values[] = { found.unit_file, NULL };
        char *cmd = template_expand (f->family->package_owner, keys, values);
        char *full = xasprintf ("%s 2>/dev/null || true", cmd);
        char *out = guest_sh (gs, full, "cannot query the package database");
        if (out) {
          out[strcspn (out, "\n")] = '\0';
          if (*out && is_safe_word (out))
            found.package = xstrdup (out);
        }
        free (out);
        free (full);
        free (cmd);
      }
      if (f->nagents == cap) {
        cap = cap ? cap * 2 : 4;
        f->agents = xrealloc (f->agents, cap * sizeof *f->agents);
      }
      f->agents[f->nagents++] = found;
    }
  strings_free (&units);
  strings_free (&links);
}

/* ---- the whole inspection ---- */

struct p2v_facts *
inspect_guest (struct p2v_guest *gs)
{
  struct p2v_facts *f = xcalloc (1, sizeof *f);
  const char *root = guest_root (gs);
  const char *image = guest_image (gs);
  char *major = NULL, *pkgfmt;
  int ma, mi;

  f->root_device = xstrdup (root);
  f->os = guestfs_inspect_get_type (G (gs), root);
  f->distro = guestfs_inspect_get_distro (G (gs), root);
  f->product = guestfs_inspect_get_product_name (G (gs), root);
  ma = guestfs_inspect_get_major_version (G (gs), root);
  mi = guestfs_inspect_get_minor_version (G (gs), root);
  if (ma > 0)
    major = mi > 0 ? xasprintf ("%d.%d", ma, mi) : xasprintf ("%d", ma);
  f->version = major ? major : xstrdup ("unknown");
  pkgfmt = guestfs_inspect_get_package_format (G (gs), root);
  f->family = family_for (f->distro, pkgfmt);
  free (pkgfmt);
  if (!f->family) {
    p2v_error ("'%s' holds %s Linux, a family p2v inject does not handle "
               "(debian, rhel, suse, arch)", image,
               f->distro ? f->distro : "an unknown");
    goto fail;
  }

  collect_filesystems (gs, f);
  read_fstab (gs, f);

  find_kernels (gs, f);
  if (f->nkernels == 0) {
    p2v_error ("no kernel found in /boot of '%s'", image);
    goto fail;
  }
  f->itool = find_initramfs_tool (gs, f->family);
  if (!f->itool) {
    p2v_error ("no initramfs tool (update-initramfs, dracut, mkinitcpio) "
               "in '%s'", image);
    goto fail;
  }
  check_kernels_virtio (gs, f);
  find_boot_loader (gs, f);
  find_network (gs, f);
  find_agents (gs, f);
  return f;

 fail:
  facts_free (f);
  return NULL;
}

void
facts_free (struct p2v_facts *f)
{
  if (!f)
    return;
  free (f->os);
  free (f->distro);
  free (f->version);
  free (f->product);
  free (f->root_device);
  free (f->boot.config);
  free (f->boot.defaults);
  free (f->boot.mkconfig);
  free (f->boot.install);
  free (f->boot.install_device);
  free (f->boot.install_fs_uuid);
  free (f->boot.esp);
  free (f->boot.efi_dir);
  free (f->boot.efi_fallback);
  for (size_t i = 0; i < f->nkernels; i++) {
    free (f->kernels[i].version);
    free (f->kernels[i].vmlinuz);
    free (f->kernels[i].initramfs);
  }
  free (f->kernels);
  for (size_t i = 0; i < f->nfs; i++) {
    free (f->fs[i].device);
    free (f->fs[i].uuid);
    free (f->fs[i].partuuid);
    free (f->fs[i].type);
    free (f->fs[i].label);
    free (f->fs[i].mountpoint);
    free (f->fs[i].fstab_name);
  }
  free (f->fs);
  strings_free (&f->disks);
  strings_free (&f->partitions);
  free (f->net_style);
  netifs_free (&f->netifs);
  strings_free (&f->net_files);
  for (size_t i = 0; i < f->nagents; i++) {
    free (f->agents[i].service);
    free (f->agents[i].unit_file);
    strings_free (&f->agents[i].links);
    free (f->agents[i].package);
  }
  free (f->agents);
  free (f);
}
