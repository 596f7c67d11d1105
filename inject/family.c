/* family.c: everything that differs between Linux families, as tables:
 * initramfs tools, boot-loader programs and paths, package tools, and the
 * hardware agents to disable.  A new family is a new row, not new code:
 *   1. add a p2v_families[] entry: the libguestfs distro names (see
 *      guestfs_inspect_get_distro), its package format, initramfs tools
 *      in order of preference, initramfs file names, grub.cfg paths and
 *      grub programs, and the package owner/remove commands;
 *   2. a new initramfs tool is a p2v_initramfs_tools[] entry (programs
 *      that show it is installed, the file its driver list lives in and
 *      how modules.c edits it, the rebuild/create/list commands);
 *   3. add the family to the unit test's family_for() checks and, with a
 *      fixture, a tests/inject-FAMILY.bats. */
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "inject-int.h"

#define LIST(...) ((const char *const[]) { __VA_ARGS__, NULL })

const struct p2v_initramfs_tool p2v_initramfs_tools[] = {
  {
    .name = "initramfs-tools",
    .programs = LIST ("/usr/sbin/update-initramfs", "/sbin/update-initramfs"),
    .modules_file = "/etc/initramfs-tools/modules",
    .modules_style = MODULES_LIST_FILE,
    .rebuild = "update-initramfs -u -k {kver}",
    .create = "update-initramfs -c -k {kver}",
    .lister = "lsinitramfs {initrd}",
  },
  {
    .name = "dracut",
    .programs = LIST ("/usr/bin/dracut", "/usr/sbin/dracut", "/sbin/dracut"),
    .modules_file = "/etc/dracut.conf.d/p2v-virtio.conf",
    .modules_style = MODULES_DRACUT_CONF,
    .rebuild = "dracut -f {initrd} {kver}",
    .create = "dracut -f {initrd} {kver}",
    .lister = "lsinitrd {initrd}",
  },
  {
    .name = "mkinitcpio",
    .programs = LIST ("/usr/bin/mkinitcpio"),
    .modules_file = "/etc/mkinitcpio.conf",
    .modules_style = MODULES_MKINITCPIO,
    /* Arch names kernels by preset (vmlinuz-linux), so {kver} is one. */
    .rebuild = "mkinitcpio -p {kver}",
    .create = "mkinitcpio -p {kver}",
    .lister = "lsinitcpio {initrd}",
  },
};
const size_t p2v_ninitramfs_tools = ARRAY_SIZE (p2v_initramfs_tools);

const struct p2v_family p2v_families[] = {
  {
    .name = "debian",
    .distros = LIST ("debian", "ubuntu", "linuxmint", "kalilinux", "pop",
                     "devuan"),
    .package_format = "deb",
    .initramfs_tools = LIST ("initramfs-tools", "dracut"),
    .initramfs_names = LIST ("/boot/initrd.img-{kver}"),
    .grub_cfgs = LIST ("/boot/grub/grub.cfg"),
    .grub_mkconfig = LIST ("/usr/sbin/grub-mkconfig"),
    .grub_install = LIST ("/usr/sbin/grub-install"),
    .grub_debconf = true,
    .package_owner = "dpkg -S {file} | head -n1 | cut -d: -f1",
    .package_remove = "apt-get remove -y {package}",
  },
  {
    .name = "rhel",
    .distros = LIST ("rhel", "centos", "fedora", "rocky", "almalinux",
                     "oraclelinux", "scientificlinux", "redhat-based",
                     "circle", "eurolinux", "cloudlinux", "amazonlinux"),
    .package_format = "rpm",
    .initramfs_tools = LIST ("dracut"),
    .initramfs_names = LIST ("/boot/initramfs-{kver}.img"),
    .grub_cfgs = LIST ("/boot/grub2/grub.cfg"),
    .grub_mkconfig = LIST ("/usr/sbin/grub2-mkconfig", "/sbin/grub2-mkconfig"),
    .grub_install = LIST ("/usr/sbin/grub2-install", "/sbin/grub2-install"),
    .package_owner = "rpm -qf --qf '%{NAME}\\n' {file}",
    .package_remove = "rpm -e {package}",
  },
  {
    .name = "suse",
    .distros = LIST ("sles", "suse-based", "opensuse"),
    .package_format = "rpm",
    .initramfs_tools = LIST ("dracut"),
    .initramfs_names = LIST ("/boot/initrd-{kver}", "/boot/initramfs-{kver}.img"),
    .grub_cfgs = LIST ("/boot/grub2/grub.cfg"),
    .grub_mkconfig = LIST ("/usr/sbin/grub2-mkconfig", "/sbin/grub2-mkconfig"),
    .grub_install = LIST ("/usr/sbin/grub2-install", "/sbin/grub2-install"),
    .package_owner = "rpm -qf --qf '%{NAME}\\n' {file}",
    .package_remove = "rpm -e {package}",
  },
  {
    .name = "arch",
    .distros = LIST ("archlinux", "manjaro"),
    .package_format = "pacman",
    .initramfs_tools = LIST ("mkinitcpio", "dracut"),
    .initramfs_names = LIST ("/boot/initramfs-{kver}.img"),
    .grub_cfgs = LIST ("/boot/grub/grub.cfg"),
    .grub_mkconfig = LIST ("/usr/bin/grub-mkconfig"),
    .grub_install = LIST ("/usr/bin/grub-install"),
    .package_owner = "pacman -Qqo {file}",
    .package_remove = "pacman -R --noconfirm {package}",
  },
};
const size_t p2v_nfamilies = ARRAY_SIZE (p2v_families);

/* Services of vendor agents that watch hardware the VM does not have;
 * running, they fail, spin or flood the logs. */
const struct p2v_agent p2v_agents[] = {
  { "HPE", "HPE server agent: the VM has no HPE hardware to watch",
    LIST ("hp-health", "hp-snmp-agents", "hp-ams", "hp-asrd", "amsd", "smad",
          "ahslog", "cpqiScsi", "cpqScsi", "cpqFca", "cpqIde", "mr_cpqScsi",
          "hpsmhd") },
  { "Dell OpenManage", "Dell OpenManage agent: the VM has no Dell hardware "
    "to watch",
    LIST ("dsm_sa_datamgrd", "dataeng", "instsvcdrv", "dsm_om_connsvc",
          "dsm_sa_eventmgrd", "dsm_sa_snmpd", "dsm_om_shrsvc", "dcismeng") },
  { "IPMI", "IPMI agent: the VM has no BMC",
    LIST ("ipmievd", "openipmi", "ipmi") },
  { "VMware", "VMware tools: the VM does not run on VMware",
    LIST ("vmtoolsd", "open-vm-tools", "vmware-tools", "vgauth",
          "vmware-vmblock-fuse") },
  { "VirtualBox", "VirtualBox additions: the VM does not run on VirtualBox",
    LIST ("vboxadd", "vboxadd-service", "vboxadd-x11") },
  { "Hyper-V", "Hyper-V daemon: the VM does not run on Hyper-V",
    LIST ("hv-kvp-daemon", "hv_kvp_daemon", "hv-vss-daemon", "hv_vss_daemon",
          "hv-fcopy-daemon", "hv_fcopy_daemon", "hypervkvpd", "hypervvssd",
          "hypervfcopyd") },
};
const size_t p2v_nagents = ARRAY_SIZE (p2v_agents);

static bool
in_list (const char *const *list, const char *s)
{
  for (size_t i = 0; list[i]; i++)
    if (strcmp (list[i], s) == 0)
      return true;
  return false;
}

const struct p2v_family *
family_for (const char *distro, const char *package_format)
{
  for (size_t i = 0; i < p2v_nfamilies; i++)
    if (distro && in_list (p2v_families[i].distros, distro))
      return &p2v_families[i];
  for (size_t i = 0; i < p2v_nfamilies; i++)
    if (package_format && strcmp (p2v_families[i].package_format,
                                  package_format) == 0)
      return &p2v_families[i];
  return NULL;
}

const struct p2v_initramfs_tool *
initramfs_tool_by_name (const char *name)
{
  for (size_t i = 0; i < p2v_ninitramfs_tools; i++)
    if (strcmp (p2v_initramfs_tools[i].name, name) == 0)
      return &p2v_initramfs_tools[i];
  return NULL;
}

char *
template_expand (const char *tmpl, const char *const *keys,
                 const char *const *values)
{
  struct p2v_strbuf sb = { 0 };
  const char *p = tmpl;

  while (*p) {
    bool done = false;
    if (*p == '{') {
      for (size_t i = 0; keys[i]; i++) {
        size_t n = strlen (keys[i]);
        if (strncmp (p + 1, keys[i], n) == 0 && p[n + 1] == '}') {
          char *q = shell_quote (values[i]);
          sb_add (&sb, q);
          free (q);
          p += n + 2;
          done = true;
          break;
        }
      }
    }
    if (!done) {
      sb_addn (&sb, p, 1);
      p++;
    }
  }
  return sb_steal (&sb);
}

char *
backup_path (const char *file)
{
  /* Every file in these directories is read (sourced, or loaded as a
   * connection), so a backup there must be hidden from the glob. */
  static const char *const read_whole[] = {
    "/etc/network/interfaces.d/", "/etc/NetworkManager/system-connections/",
    "/etc/sysconfig/network-scripts/", "/etc/sysconfig/network/",
    "/etc/initramfs-tools/conf.d/", "/etc/default/grub.d/",
  };
  const char *slash = strrchr (file, '/');

  for (size_t i = 0; i < ARRAY_SIZE (read_whole); i++) {
    size_t n = strlen (read_whole[i]);
    if (strncmp (file, read_whole[i], n) == 0 && slash == file + n - 1)
      return xasprintf ("%.*s.%s.p2v-orig", (int) n, file, file + n);
  }
  return xasprintf ("%s.p2v-orig", file);
}
