/* plan.c: from the facts to the list of changes inject makes, each with
 * the file, what it was, what it becomes and why.  Every step looks at
 * the guest as it is, so a guest already fixed gets an empty plan. */
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "inject-int.h"

struct planner {
  struct p2v_guest *gs;
  struct p2v_facts *f;
  const struct p2v_inject_opts *opts;
  struct p2v_plan *plan;
  char *new_mac;                /* normalized --mac, or NULL */
  bool initramfs_inputs;        /* a file the initramfs copies changed */
  bool grub_defaults_changed;
};

static struct p2v_change *
plan_add (struct p2v_plan *plan, enum p2v_change_kind kind, const char *file,
          const char *before, const char *after, const char *why)
{
  struct p2v_change *c;

  if (plan->n == plan->cap) {
    plan->cap = plan->cap ? plan->cap * 2 : 16;
    plan->v = xrealloc (plan->v, plan->cap * sizeof *plan->v);
  }
  c = &plan->v[plan->n++];
  memset (c, 0, sizeof *c);
  c->kind = kind;
  c->file = xstrdup (file);
  c->before = xstrdup (before ? before : "");
  c->after = xstrdup (after ? after : "");
  c->why = xstrdup (why ? why : "");
  return c;
}

void
plan_free (struct p2v_plan *plan)
{
  for (size_t i = 0; i < plan->n; i++) {
    struct p2v_change *c = &plan->v[i];
    free (c->file);
    free (c->before);
    free (c->after);
    free (c->why);
    free (c->content);
    free (c->source);
    free (c->command);
  }
  free (plan->v);
  plan->v = NULL;
  plan->n = plan->cap = 0;
  strings_free (&plan->notes);
}

/* A file edit: one plan entry per visible edit, the first one writing
 * the whole new content.  OLD NULL: the file is created.  Returns
 * whether anything changes; frees NEW_TEXT and empties EDITS. */
static bool
file_edit (struct planner *P, const char *path, const char *old,
           char *new_text, struct p2v_edits *edits)
{
  bool changed = !old || strcmp (old, new_text) != 0;

  if (changed) {
    for (size_t i = 0; i < (edits->n ? edits->n : 1); i++) {
      struct p2v_change *c = plan_add (P->plan, i == 0 ? CHANGE_WRITE : CHANGE_SHOWN,
                                       path,
                                       edits->n ? edits->v[i].before : "(old content)",
                                       edits->n ? edits->v[i].after : "(new content)",
                                       edits->n ? edits->v[i].why : NULL);
      if (i == 0) {
        c->content = new_text;
        new_text = NULL;
        c->backup = old != NULL;
        c->created = old == NULL;
      }
    }
  }
  free (new_text);
  edits_free (edits);
  return changed;
}

/* The resolver the transforms use: warns about names it cannot map. */
static char *
resolve_or_warn (const char *name, void *opaque)
{
  struct planner *P = opaque;
  char *spec = facts_resolve (name, P->f);

  if (!spec)
    p2v_warning ("'%s' matches no file system with a UUID in '%s'; left as is",
                 name, guest_image (P->gs));
  return spec;
}

/* ---- file-system tables ---- */

static void
plan_spec_table (struct planner *P, const char *path, unsigned field,
                 unsigned context_field)
{
  struct p2v_edits e = { 0 };
  char *text = guest_read (P->gs, path), *out;

  if (!text)
    return;
  out = spec_table_rewrite (text, field, context_field, resolve_or_warn, P, &e);
  if (file_edit (P, path, text, out, &e))
    P->initramfs_inputs = true;
  free (text);
}

static void
plan_resume (struct planner *P)
{
  static const char path[] = "/etc/initramfs-tools/conf.d/resume";
  struct p2v_edits e = { 0 };
  char *text = guest_read (P->gs, path), *out;

  if (!text)
    return;
  out = shellvar_device_rewrite (text, "RESUME", resolve_or_warn, P, &e);
  if (file_edit (P, path, text, out, &e))
    P->initramfs_inputs = true;
  free (text);
}

/* ---- LVM and md RAID: their disks under new names ---- */

/* Files that may tie volumes to the physical disks' names, whatever the
 * family: each distribution has the ones its packages install. */
static const struct {
  const char *path;
  char *(*rewrite) (const char *text, struct p2v_edits *edits,
                    struct p2v_strings *notes);
} storage_configs[] = {
  { "/etc/lvm/lvm.conf", lvm_conf_rewrite },
  { "/etc/lvm/lvmlocal.conf", lvm_conf_rewrite },
  { "/etc/mdadm/mdadm.conf", mdadm_conf_rewrite },      /* Debian */
  { "/etc/mdadm.conf", mdadm_conf_rewrite },            /* RHEL, SUSE, Arch */
};

static void
plan_storage (struct planner *P)
{
  static const char devices_file[] = "/etc/lvm/devices/system.devices";
  char *text;

  /* lvm2 >= 2.03.12 (the default from RHEL 9) uses only the PVs listed
   * there, by IDs of the physical disks; without the file it scans all
   * disks, as virt-v2v leaves it. */
  if ((text = guest_read (P->gs, devices_file))) {
    char *before = lvm_devices_summary (text);
    struct p2v_change *c = plan_add (P->plan, CHANGE_REMOVE, devices_file,
                                     before, "(removed: LVM scans all disks)",
                                     "it pins the PVs by the physical disks' "
                                     "WWIDs, serials and /dev/sdX names, "
                                     "which the VM's virtio disks do not "
                                     "have: LVM would ignore the PV on "
                                     "/dev/vda and not find the root");
    c->backup = true;
    P->initramfs_inputs = true;
    free (before);
    free (text);
  }
  for (size_t i = 0; i < ARRAY_SIZE (storage_configs); i++) {
    const char *path = storage_configs[i].path;
    struct p2v_edits e = { 0 };
    struct p2v_strings notes = { 0 };
    char *out;

    if (!(text = guest_read (P->gs, path)))
      continue;
    out = storage_configs[i].rewrite (text, &e, &notes);
    if (file_edit (P, path, text, out, &e))
      P->initramfs_inputs = true;
    for (size_t j = 0; j < notes.n; j++)
      strings_add_nodup (&P->plan->notes, xasprintf ("%s: %s", path,
                                                     notes.v[j]));
    strings_free (&notes);
    free (text);
  }
}

/* ---- boot loader configuration (the files; commands come later) ---- */

static void
plan_kernel_lines (struct planner *P, const char *path,
                   const char *const *keywords)
{
  struct p2v_edits e = { 0 };
  char *text = guest_read (P->gs, path), *out;

  if (!text)
    return;
  out = kernel_lines_rewrite (text, keywords, resolve_or_warn, P, &e);
  file_edit (P, path, text, out, &e);
  free (text);
}

static void
plan_grub_defaults (struct planner *P)
{
  struct p2v_facts *f = P->f;
  /* On a partition, grub-mkconfig needs UUIDs on; on LVM or md it names
   * the root by its stable mapper path anyway. */
  bool want_uuid = strings_contains (&f->partitions, f->root_device);
  char **dropins = guest_glob (P->gs, "/etc/default/grub.d/*.cfg");
  struct p2v_strings files = { 0 };

  if (f->boot.defaults)
    strings_add (&files, f->boot.defaults);
  for (size_t i = 0; dropins[i]; i++)
    strings_add (&files, dropins[i]);
  free_string_array (dropins);
  for (size_t i = 0; i < files.n; i++) {
    struct p2v_edits e = { 0 };
    char *text = guest_read (P->gs, files.v[i]), *out;
    if (!text)
      continue;
    out = grub_default_rewrite (text, want_uuid, resolve_or_warn, P, &e);
    if (file_edit (P, files.v[i], text, out, &e))
      P->grub_defaults_changed = true;
    free (text);
  }
  strings_free (&files);
}

static void
plan_boot_files (struct planner *P)
{
  static const char *const bls[] = { "options", NULL };
  static const char *const legacy[] = { "kernel", NULL };
  static const char *const syslinux[] = { "append", "APPEND", "Append", NULL };
  struct p2v_facts *f = P->f;
  const char *type = f->boot.type;

  if (strcmp (type, "grub2") == 0) {
    char **entries = guest_glob (P->gs, "/boot/loader/entries/*.conf");
    plan_grub_defaults (P);
    for (size_t i = 0; entries[i]; i++)
      plan_kernel_lines (P, entries[i], bls);
    free_string_array (entries);
  }
  else if (strcmp (type, "grub-legacy") == 0)
    plan_kernel_lines (P, f->boot.config, legacy);
  else if (strcmp (type, "syslinux") == 0)
    plan_kernel_lines (P, f->boot.config, syslinux);
  else if (strcmp (type, "systemd-boot") == 0) {
    char *pattern = xasprintf ("%s/loader/entries/*.conf", f->boot.esp);
    char **entries = guest_glob (P->gs, pattern);
    for (size_t i = 0; entries[i]; i++)
      plan_kernel_lines (P, entries[i], bls);
    free_string_array (entries);
    free (pattern);
  }
  else
    p2v_warning ("no boot loader configuration found in '%s'; kernel "
                 "command lines are not checked", guest_image (P->gs));
}

/* ---- initramfs configuration ---- */

static void
plan_initramfs_config (struct planner *P)
{
  const struct p2v_initramfs_tool *t = P->f->itool;
  const char *const *mods = p2v_virtio_modules;
  struct p2v_edits e = { 0 };
  char *text, *out;

  switch (t->modules_style) {
  case MODULES_LIST_FILE:
  case MODULES_MKINITCPIO:
    text = guest_read (P->gs, t->modules_file);
    out = t->modules_style == MODULES_LIST_FILE
      ? modules_list_add (text ? text : "", mods, &e)
      : mkinitcpio_conf_add (text ? text : "", mods, &e);
    if (file_edit (P, t->modules_file, text, out, &e))
      P->initramfs_inputs = true;
    free (text);
    break;

  case MODULES_DRACUT_CONF: {
    static const char *const confs[] = {
      "/etc/dracut.conf", "/etc/dracut.conf.d/*.conf",
      "/usr/lib/dracut/dracut.conf.d/*.conf",
    };
    size_t n = 0;
    bool *present, all = true;
    while (mods[n])
      n++;
    present = xcalloc (n + 1, sizeof *present);
    for (size_t i = 0; i < ARRAY_SIZE (confs); i++) {
      char **files = guest_glob (P->gs, confs[i]);
      for (size_t j = 0; files[j]; j++) {
        char *conf = guest_read (P->gs, files[j]);
        if (conf)
          dracut_conf_scan (conf, mods, present);
        free (conf);
      }
      free_string_array (files);
    }
    for (size_t i = 0; i < n; i++)
      all &= present[i];
    if (!all) {
      struct p2v_strbuf after = { 0 };
      bool any = false;
      sb_add (&after, "+");
      for (size_t i = 0; i < n; i++) {
        any |= present[i];
        if (!present[i])
          sb_addf (&after, " %s", mods[i]);
      }
      edits_add (&e, any ? "some virtio drivers" : "no virtio drivers",
                 after.s, "the VM's disk and NIC are virtio devices; "
                 "configured here, every future initramfs keeps the drivers");
      sb_free (&after);
      text = guest_read (P->gs, t->modules_file);
      file_edit (P, t->modules_file, text, dracut_conf_text (mods), &e);
      free (text);
      P->initramfs_inputs = true;
    }
    free (present);
    break;
  }
  }
}

/* ---- network ---- */

/* The interface the VM's one NIC stands for: the first configured one. */
static struct p2v_netif *
primary_netif (struct p2v_facts *f)
{
  for (size_t i = 0; i < f->netifs.n; i++)
    if (f->netifs.v[i].config_file)
      return &f->netifs.v[i];
  return NULL;
}

static bool
guest_has_systemd_udev (struct p2v_guest *gs)
{
  return guest_is_file (gs, "/lib/systemd/systemd-udevd")
    || guest_is_file (gs, "/usr/lib/systemd/systemd-udevd");
}

static void
plan_network (struct planner *P)
{
  struct p2v_facts *f = P->f;
  struct p2v_netif *primary = primary_netif (f);
  bool systemd_udev = guest_has_systemd_udev (P->gs);

  /* Pins to old hardware, and MAC pins when the VM gets another MAC. */
  for (size_t i = 0; i < f->net_files.n; i++) {
    const char *path = f->net_files.v[i];
    struct p2v_edits e = { 0 };
    char *text = guest_read (P->gs, path), *out, *tmp;
    if (!text)
      continue;
    out = xstrdup (text);
    if (strncmp (path, "/etc/udev/rules.d/", 18) == 0) {
      tmp = udev_rules_drop_hw_pins (out, &e);
      free (out);
      out = tmp;
    }
    if (P->new_mac && primary && primary->mac) {
      tmp = net_replace_mac (out, primary->mac, P->new_mac, &e);
      free (out);
      out = tmp;
    }
    if (file_edit (P, path, text, out, &e))
      P->initramfs_inputs = true;
    free (text);
  }

  /* Keep each configured interface's name on the NIC with its MAC. */
  for (size_t i = 0; i < f->netifs.n; i++) {
    struct p2v_netif *nif = &f->netifs.v[i];
    const char *mac = nif == primary && P->new_mac ? P->new_mac : nif->mac;
    struct p2v_edits e = { 0 };
    char *path, *content, *old, *after, *why;

    if (!nif->config_file || (!mac && nif != primary))
      continue;
    if (systemd_udev) {
      path = xasprintf ("/etc/systemd/network/10-p2v-%s.link", nif->name);
      content = net_link_text (nif->name, mac);
    }
    else if (mac) {
      path = xasprintf ("/etc/udev/rules.d/70-p2v-%s.rules", nif->name);
      content = xasprintf ("# Written by p2v inject: the NIC with this MAC "
                           "keeps its name.\nSUBSYSTEM==\"net\", "
                           "ACTION==\"add\", ATTR{address}==\"%s\", "
                           "NAME=\"%s\"\n", mac, nif->name);
    }
    else
      continue;
    old = guest_read (P->gs, path);
    after = mac ? xasprintf ("MAC %s -> name %s", mac, nif->name)
      : xasprintf ("virtio NIC -> name %s", nif->name);
    why = mac ? xasprintf ("%s is configured by name; the VM's NIC has MAC "
                           "%s but another driver and bus", nif->name, mac)
      : xasprintf ("%s is configured by name and no MAC is known (use "
                   "--mac): the virtio NIC takes the name", nif->name);
    edits_add (&e, old ? "(other content)" : "(none)", after, why);
    if (old && strcmp (old, content) == 0) {
      free (content);
      edits_free (&e);
    }
    else if (file_edit (P, path, old, content, &e))
      P->initramfs_inputs = true;
    free (after);
    free (why);
    free (old);
    free (path);
  }
}

/* ---- hardware agents ---- */

static void
plan_agents (struct planner *P)
{
  struct p2v_facts *f = P->f;
  struct p2v_strings removed = { 0 };

  for (size_t i = 0; i < f->nagents; i++) {
    struct p2v_agent_found *a = &f->agents[i];
    for (size_t j = 0; j < a->links.n; j++) {
      char *target = guest_readlink (P->gs, a->links.v[j]);
      char *before = xasprintf ("-> %s", target ? target : "(enabled)");
      plan_add (P->plan, CHANGE_REMOVE, a->links.v[j], before,
                "(removed: service disabled)", a->agent->why);
      free (before);
      free (target);
    }
    if (P->opts->remove_agents && a->package
        && !strings_contains (&removed, a->package)) {
      static const char *const keys[] = { "package", NULL };
      const char *values[] = { a->package, NULL };
      char *before = xasprintf ("package %s installed", a->package);
      char *after = xasprintf ("package %s removed", a->package);
      struct p2v_change *c = plan_add (P->plan, CHANGE_COMMAND,
                                       a->unit_file, before, after,
                                       a->agent->why);
      c->command = template_expand (f->family->package_remove, keys, values);
      strings_add (&removed, a->package);
      free (before);
      free (after);
    }
  }
  strings_free (&removed);
}

/* ---- initramfs rebuilds ---- */

static void
plan_initramfs_rebuilds (struct planner *P)
{
  struct p2v_facts *f = P->f;
  const struct p2v_initramfs_tool *t = f->itool;
  struct p2v_strbuf mods = { 0 };

  for (size_t i = 0; p2v_virtio_modules[i]; i++)
    sb_addf (&mods, " %s", p2v_virtio_modules[i]);
  for (size_t i = 0; i < f->nkernels; i++) {
    static const char *const keys[] = { "kver", "initrd", NULL };
    struct p2v_kernel *k = &f->kernels[i];
    const char *values[] = { k->version, k->initramfs, NULL };
    struct p2v_change *c;
    char *after;

    if (k->has_virtio && !P->initramfs_inputs)
      continue;
    after = xasprintf ("rebuilt by %s with%s", t->name, mods.s);
    c = plan_add (P->plan, CHANGE_COMMAND, k->initramfs,
                  !k->initramfs_exists ? "(missing)"
                  : k->has_virtio ? "virtio_blk present" : "no virtio_blk",
                  after,
                  !k->has_virtio ? "the VM boots from a virtio disk"
                  : "files it copies changed (fstab, driver list, network "
                    "names, LVM and md settings)");
    c->command = template_expand (k->initramfs_exists ? t->rebuild : t->create,
                                  keys, values);
    /* grub-mkconfig writes an initrd line only for an image it finds:
     * a missing one is made before it runs, not beside it. */
    c->lane = k->initramfs_exists ? 1 : 0;
    if (!k->virtio_builtin)
      c->check_virtio = t;
    free (after);
  }
  sb_free (&mods);
}

/* ---- boot loader commands ---- */

static char *
resolve_to_itself (const char *name, void *opaque)
{
  (void) opaque;
  return xstrdup (name);
}

/* The first root=/resume= naming an unstable device in TEXT, or NULL. */
static char *
first_unstable_param (const char *text)
{
  struct p2v_edits e = { 0 };
  char *out, *first = NULL;

  /* A rewrite that changes nothing, only to find the parameter. */
  out = cmdline_rewrite (text, resolve_to_itself, NULL, &e);
  if (e.n)
    first = xstrdup (e.v[0].before);
  free (out);
  edits_free (&e);
  return first;
}

static void
plan_boot_commands (struct planner *P)
{
  static const char *const grub_lines[] = {
    "linux", "linux16", "linuxefi", "kernel", NULL
  };
  struct p2v_facts *f = P->f;
  char *cfg;
  bool regen;

  if (strcmp (f->boot.type, "grub2") != 0 || !f->boot.config)
    return;
  cfg = guest_read (P->gs, f->boot.config);
  regen = P->grub_defaults_changed || (cfg && cmdline_has_unstable (cfg));
  if (regen && f->boot.mkconfig) {
    static const char *const keys[] = { "mkconfig", "cfg", NULL };
    const char *values[] = { f->boot.mkconfig, f->boot.config, NULL };
    char *param = cfg ? first_unstable_param (cfg) : NULL;
    char *after = NULL, *eq;
    struct p2v_change *c;
    if (param && (eq = strchr (param, '='))) {
      char *spec = facts_resolve (eq + 1, f);
      if (spec)
        after = xasprintf ("%.*s%s", (int) (eq + 1 - param), param, spec);
      free (spec);
    }
    c = plan_add (P->plan, CHANGE_COMMAND, f->boot.config,
                  param ? param : "generated from the old settings",
                  after ? after : "regenerated",
                  "regenerated by the guest's grub-mkconfig from the edited "
                  "settings: kernels find their root by UUID");
    c->command = template_expand ("{mkconfig} -o {cfg}", keys, values);
    c->check_cmdlines = true;
    c->lane = 2;
    c->backup = true;
    free (param);
    free (after);
    if (strcmp (f->firmware, "bios") == 0 && f->boot.install
        && f->boot.install_device) {
      static const char *const ikeys[] = { "install", "disk", "uuid", NULL };
      const char *ivalues[] = { f->boot.install, f->boot.install_device,
                                f->boot.install_fs_uuid, NULL };
      char *before = xasprintf ("boot code of the physical server");
      c = plan_add (P->plan, CHANGE_COMMAND, f->boot.install_device, before,
                    "GRUB reinstalled by the guest's grub-install",
                    "the boot sector and core image match the regenerated "
                    "grub.cfg");
      /* libguestfs translates device names in its API calls, not inside
       * commands: in the appliance the guest's disk may be /dev/sdb when
       * the appliance's own disk took sda.  So the command finds, when it
       * runs, the disk holding the partition with the boot file system's
       * UUID, and keeps libguestfs's name for anything else (LVM, md). */
      c->command = template_expand (f->boot.install_fs_uuid
        ? "disk={disk}; p=$(readlink -f /dev/disk/by-uuid/{uuid}) && "
          "[ -e \"/sys/class/block/${p##*/}/partition\" ] && "
          "disk=/dev/$(basename \"$(readlink -f \"/sys/class/block/${p##*/}/..\")\"); "
          "{install} --target=i386-pc \"$disk\""
        : "{install} --target=i386-pc {disk}", ikeys, ivalues);
      c->lane = 2;
      free (before);
    }
  }
  else if (regen && cfg) {
    /* No grub-mkconfig in the guest: edit the generated file. */
    struct p2v_edits e = { 0 };
    char *out = kernel_lines_rewrite (cfg, grub_lines, resolve_or_warn, P, &e);
    file_edit (P, f->boot.config, cfg, out, &e);
  }
  free (cfg);
}

static void
plan_efi_fallback (struct planner *P)
{
  struct p2v_facts *f = P->f;
  const char *why = "NVRAM boot entries do not travel with a disk: a new "
    "VM's firmware starts \\EFI\\BOOT\\BOOTX64.EFI";
  char *bootdir, *shim, *grub, *mm, *cfg;

  if (strcmp (f->firmware, "uefi") != 0 || f->boot.efi_fallback
      || !f->boot.efi_dir)
    return;
  bootdir = xasprintf ("%s/EFI/BOOT", f->boot.esp);
  shim = xasprintf ("%s/shimx64.efi", f->boot.efi_dir);
  grub = xasprintf ("%s/grubx64.efi", f->boot.efi_dir);
  mm = xasprintf ("%s/mmx64.efi", f->boot.efi_dir);
  if (guest_is_file (P->gs, shim)) {
    char *dst = xasprintf ("%s/BOOTX64.EFI", bootdir);
    struct p2v_change *c = plan_add (P->plan, CHANGE_COPY, dst, "(missing)",
                                     "copy of shimx64.efi", why);
    c->source = xstrdup (shim);
    c->created = true;
    free (dst);
    if (guest_is_file (P->gs, grub)) {
      dst = xasprintf ("%s/grubx64.efi", bootdir);
      c = plan_add (P->plan, CHANGE_COPY, dst, "(missing)",
                    "copy of grubx64.efi",
                    "shim starts grubx64.efi from its own directory");
      c->source = xstrdup (grub);
      c->created = true;
      free (dst);
    }
    if (guest_is_file (P->gs, mm)) {
      dst = xasprintf ("%s/mmx64.efi", bootdir);
      c = plan_add (P->plan, CHANGE_COPY, dst, "(missing)",
                    "copy of mmx64.efi",
                    "shim falls back to MokManager beside it");
      c->source = xstrdup (mm);
      c->created = true;
      free (dst);
    }
  }
  else if (guest_is_file (P->gs, grub)) {
    char *dst = xasprintf ("%s/BOOTX64.EFI", bootdir);
    struct p2v_change *c = plan_add (P->plan, CHANGE_COPY, dst, "(missing)",
                                     "copy of grubx64.efi", why);
    c->source = xstrdup (grub);
    c->created = true;
    free (dst);
  }
  /* The distro's GRUB image reads its grub.cfg from its own directory
   * (\EFI\debian\grub.cfg) even when started from \EFI\BOOT. */
  cfg = xasprintf ("%s/grub.cfg", f->boot.efi_dir);
  if (!guest_is_file (P->gs, cfg))
    p2v_warning ("'%s' is missing: GRUB started from \\EFI\\BOOT may not "
                 "find its menu", cfg);
  free (cfg);
  free (bootdir);
  free (shim);
  free (grub);
  free (mm);
}

static void
plan_debconf (struct planner *P)
{
  static const char path[] = "/var/cache/debconf/config.dat";
  static const char question[] = "grub-pc/install_devices";
  struct p2v_facts *f = P->f;
  char *dat, *value, *disk = NULL, *before, *after;
  bool unstable = false;
  struct p2v_change *c;

  if (!f->family->grub_debconf || strcmp (f->firmware, "bios") != 0
      || strcmp (f->boot.type, "grub2") != 0
      || !(dat = guest_read (P->gs, path)))
    return;
  value = debconf_value (dat, question);
  free (dat);
  if (!value)
    return;
  /* A comma-separated list of devices. */
  {
    char *copy = xstrdup (value), *save = NULL;
    for (char *d = strtok_r (copy, ", ", &save); d; d = strtok_r (NULL, ", ", &save))
      unstable |= devname_is_unstable (d);
    free (copy);
  }
  if (!unstable) {
    free (value);
    return;
  }
  if (f->boot.install_device && f->boot.disk < 26)
    disk = xasprintf ("/dev/vd%c", (char) ('a' + f->boot.disk));
  if (!disk)
    disk = xstrdup ("/dev/vda");
  before = xasprintf ("%s=%s", question, value);
  after = xasprintf ("%s=%s", question, disk);
  c = plan_add (P->plan, CHANGE_COMMAND, path, before, after,
                "grub-pc reinstalls its boot code on this disk when it is "
                "upgraded; virtio names it /dev/vdX");
  {
    char *line = xasprintf ("grub-pc %s multiselect %s", question, disk);
    char *q = shell_quote (line);
    c->command = xasprintf ("echo %s | debconf-set-selections", q);
    free (q);
    free (line);
  }
  c->backup = true;
  c->lane = 2;
  free (before);
  free (after);
  free (disk);
  free (value);
}

int
plan_build (struct p2v_guest *gs, struct p2v_facts *f,
            const struct p2v_inject_opts *opts, struct p2v_plan *plan)
{
  struct planner P = { .gs = gs, .f = f, .opts = opts, .plan = plan };

  if (opts->mac) {
    P.new_mac = mac_normalize (opts->mac);
    if (!P.new_mac)
      return p2v_error ("'%s' is not a MAC address", opts->mac);
  }
  /* Files first, then what is built from them. */
  plan_spec_table (&P, "/etc/fstab", 0, 1);
  plan_spec_table (&P, "/etc/crypttab", 1, 0);
  plan_resume (&P);
  plan_storage (&P);
  plan_boot_files (&P);
  plan_initramfs_config (&P);
  plan_network (&P);
  plan_efi_fallback (&P);
  plan_agents (&P);
  plan_initramfs_rebuilds (&P);
  plan_boot_commands (&P);
  plan_debconf (&P);
  free (P.new_mac);
  return 0;
}
