/* test-inject.c: the text transforms of p2v inject (fstab, crypttab,
 * kernel command lines, /etc/default/grub, initramfs module lists,
 * network configuration), with a table standing in for the appliance. */
#include <archive.h>
#include <archive_entry.h>
#include <stdlib.h>
#include <string.h>

#include "unit.h"
#include "inject-int.h"

/* The fake appliance: guest device name -> UUID. */
static const char *const fake_uuids[][2] = {
  { "/dev/sda1", "UUID=1111-root" },
  { "/dev/sda2", "UUID=2222-swap" },
  { "/dev/sda3", "UUID=3333-home" },
  { "/dev/sdb1", "UUID=4444-data" },
  { "/dev/hda1", "UUID=1111-root" },
  { "/dev/cciss/c0d0p1", "UUID=1111-root" },
  { "/dev/nvme0n1p2", "UUID=2222-swap" },
  { "/dev/disk/by-id/ata-WDC_WD10-part1", "UUID=1111-root" },
  { "/dev/disk/by-path/pci-0000:00:1f.2-ata-1-part3", "UUID=3333-home" },
};

static int resolve_calls;

static char *
fake_resolve (const char *name, void *opaque)
{
  (void) opaque;
  resolve_calls++;
  for (size_t i = 0; i < ARRAY_SIZE (fake_uuids); i++)
    if (strcmp (fake_uuids[i][0], name) == 0)
      return xstrdup (fake_uuids[i][1]);
  return NULL;
}

static void
test_devname (void)
{
  int d, p;

  CHECK (devname_is_unstable ("/dev/sda1"));
  CHECK (devname_is_unstable ("/dev/sdab3"));
  CHECK (devname_is_unstable ("/dev/hdc"));
  CHECK (devname_is_unstable ("/dev/xvda2"));
  CHECK (devname_is_unstable ("/dev/cciss/c0d0p2"));
  CHECK (devname_is_unstable ("/dev/ida/c0d1"));
  CHECK (devname_is_unstable ("/dev/nvme0n1p1"));
  CHECK (devname_is_unstable ("/dev/disk/by-id/ata-ST4000-XYZ-part2"));
  CHECK (devname_is_unstable ("/dev/disk/by-id/wwn-0x5000c500a1b2c3d4-part1"));
  CHECK (devname_is_unstable ("/dev/disk/by-path/pci-0000:03:00.0-scsi-0:0:0:0-part1"));
  CHECK (!devname_is_unstable ("/dev/vda1"));
  CHECK (!devname_is_unstable ("/dev/mapper/vg0-root"));
  CHECK (!devname_is_unstable ("/dev/vg0/root"));
  CHECK (!devname_is_unstable ("/dev/md0"));
  CHECK (!devname_is_unstable ("/dev/dm-0"));
  CHECK (!devname_is_unstable ("UUID=abcd"));
  CHECK (!devname_is_unstable ("LABEL=root"));
  CHECK (!devname_is_unstable ("/dev/disk/by-uuid/abcd"));
  CHECK (!devname_is_unstable ("/dev/disk/by-id/dm-name-vg0-root"));
  CHECK (!devname_is_unstable ("/dev/disk/by-id/lvm-pv-uuid-xyz"));
  CHECK (!devname_is_unstable ("/dev/disk/by-id/md-uuid-1234"));
  CHECK (!devname_is_unstable ("/dev/sd"));
  CHECK (!devname_is_unstable ("/dev/sda1x"));
  CHECK (!devname_is_unstable ("tmpfs"));
  CHECK (!devname_is_unstable ("proc"));

  CHECK (devname_parse ("/dev/sda1", &d, &p) == 0 && d == 0 && p == 1);
  CHECK (devname_parse ("/dev/sdc", &d, &p) == 0 && d == 2 && p == 0);
  CHECK (devname_parse ("/dev/sdaa2", &d, &p) == 0 && d == 26 && p == 2);
  CHECK (devname_parse ("/dev/hdb5", &d, &p) == 0 && d == 1 && p == 5);
  CHECK (devname_parse ("/dev/xvda3", &d, &p) == 0 && d == 0 && p == 3);
  CHECK (devname_parse ("/dev/cciss/c0d1p2", &d, &p) == 0 && d == 1 && p == 2);
  CHECK (devname_parse ("/dev/cciss/c0d0", &d, &p) == 0 && d == 0 && p == 0);
  CHECK (devname_parse ("/dev/nvme1n1p3", &d, &p) == 0 && d == 1 && p == 3);
  CHECK (devname_parse ("/dev/disk/by-id/ata-X-part4", &d, &p) == 0
         && d == -1 && p == 4);
  CHECK (devname_parse ("/dev/disk/by-path/pci-0000:00:1f.2-ata-1", &d, &p) == 0
         && d == -1 && p == 0);
  CHECK (devname_parse ("/dev/mapper/x", &d, &p) == -1);
  CHECK (devname_parse ("/dev/cciss/x", &d, &p) == -1);
  CHECK (devname_parse ("/dev/nvme0", &d, &p) == -1);

  CHECK (strstr (devname_why ("/dev/sda1"), "/dev/vdX") != NULL);
  CHECK (strstr (devname_why ("/dev/disk/by-id/ata-X"), "serial") != NULL);
}

static const char fstab_in[] =
  "# /etc/fstab: static file system information.\n"
  "# <file system> <mount point>   <type>  <options>       <dump>  <pass>\n"
  "/dev/sda1       /               ext4    errors=remount-ro 0       1\n"
  "/dev/mapper/vg0-home /home      ext4    defaults        0       2\n"
  "  /dev/sda2\tnone\tswap\tsw\t0\t0\n"
  "#/dev/sda3      /old            ext4    defaults        0       2\n"
  "UUID=abcd       /srv            xfs     defaults        0       2\n"
  "/dev/sdz9       /lost           ext4    defaults        0       2\n"
  "proc            /proc           proc    defaults        0       0\n"
  "/dev/disk/by-id/ata-WDC_WD10-part1 /mnt ext4 defaults 0 2";

static const char fstab_out[] =
  "# /etc/fstab: static file system information.\n"
  "# <file system> <mount point>   <type>  <options>       <dump>  <pass>\n"
  "UUID=1111-root       /               ext4    errors=remount-ro 0       1\n"
  "/dev/mapper/vg0-home /home      ext4    defaults        0       2\n"
  "  UUID=2222-swap\tnone\tswap\tsw\t0\t0\n"
  "#/dev/sda3      /old            ext4    defaults        0       2\n"
  "UUID=abcd       /srv            xfs     defaults        0       2\n"
  "/dev/sdz9       /lost           ext4    defaults        0       2\n"
  "proc            /proc           proc    defaults        0       0\n"
  "UUID=1111-root /mnt ext4 defaults 0 2";

static void
test_fstab (void)
{
  struct p2v_edits e = { 0 };
  char *out, *again;

  out = spec_table_rewrite (fstab_in, 0, 1, fake_resolve, NULL, &e);
  CHECK (strcmp (out, fstab_out) == 0);
  CHECK (e.n == 3);
  if (e.n == 3) {
    CHECK (strcmp (e.v[0].before, "/dev/sda1") == 0);
    CHECK (strcmp (e.v[0].after, "UUID=1111-root") == 0);
    CHECK (strncmp (e.v[0].why, "/: virtio disks", 15) == 0);
    CHECK (strncmp (e.v[1].why, "swap: ", 6) == 0);
    CHECK (strstr (e.v[2].why, "serial") != NULL);
  }
  edits_free (&e);

  /* The result is a fixed point: nothing left to change. */
  again = spec_table_rewrite (out, 0, 1, fake_resolve, NULL, &e);
  CHECK (strcmp (again, out) == 0);
  CHECK (e.n == 0);
  free (again);
  free (out);

  /* Empty and comment-only files. */
  out = spec_table_rewrite ("", 0, 1, fake_resolve, NULL, &e);
  CHECK (strcmp (out, "") == 0);
  free (out);
  out = spec_table_rewrite ("# nothing\n\n", 0, 1, fake_resolve, NULL, &e);
  CHECK (strcmp (out, "# nothing\n\n") == 0 && e.n == 0);
  free (out);
}

static void
test_fstab_parse (void)
{
  char *spec, *mp, *type;
  const char *l1 = "  UUID=ab  /boot\text4 defaults 0 2";

  CHECK (fstab_parse_line (l1, strlen (l1), &spec, &mp, &type));
  CHECK (strcmp (spec, "UUID=ab") == 0 && strcmp (mp, "/boot") == 0
         && strcmp (type, "ext4") == 0);
  free (spec);
  free (mp);
  free (type);
  CHECK (!fstab_parse_line ("# /dev/sda1 / ext4", 18, &spec, &mp, &type));
  CHECK (!fstab_parse_line ("   ", 3, &spec, &mp, &type));
  CHECK (!fstab_parse_line ("/dev/sda1 /", 11, &spec, &mp, &type));
}

static void
test_crypttab (void)
{
  struct p2v_edits e = { 0 };
  const char *in =
    "# <target name> <source device> <key file> <options>\n"
    "sda3_crypt /dev/sda3 none luks,discard\n"
    "swap_crypt /dev/disk/by-path/pci-0000:00:1f.2-ata-1-part3 /dev/urandom swap\n"
    "data UUID=9999 none luks\n";
  char *out = spec_table_rewrite (in, 1, 0, fake_resolve, NULL, &e);

  CHECK (strstr (out, "sda3_crypt UUID=3333-home none luks,discard\n") != NULL);
  CHECK (strstr (out, "swap_crypt UUID=3333-home /dev/urandom swap\n") != NULL);
  CHECK (strstr (out, "data UUID=9999 none luks\n") != NULL);
  CHECK (e.n == 2);
  if (e.n == 2)
    CHECK (strncmp (e.v[0].why, "sda3_crypt: ", 12) == 0);
  edits_free (&e);
  free (out);
}

static void
test_resume_conf (void)
{
  struct p2v_edits e = { 0 };
  char *out;

  out = shellvar_device_rewrite ("RESUME=/dev/sda2\n", "RESUME", fake_resolve,
                                 NULL, &e);
  CHECK (strcmp (out, "RESUME=UUID=2222-swap\n") == 0);
  CHECK (e.n == 1 && strcmp (e.v[0].before, "RESUME=/dev/sda2") == 0
         && strcmp (e.v[0].after, "RESUME=UUID=2222-swap") == 0);
  edits_free (&e);
  free (out);

  out = shellvar_device_rewrite ("# x\nRESUME=\"/dev/nvme0n1p2\" # swap\n",
                                 "RESUME", fake_resolve, NULL, &e);
  CHECK (strcmp (out, "# x\nRESUME=\"UUID=2222-swap\" # swap\n") == 0);
  edits_free (&e);
  free (out);

  out = shellvar_device_rewrite ("RESUME=none\nRESUMEX=/dev/sda2\n", "RESUME",
                                 fake_resolve, NULL, &e);
  CHECK (strcmp (out, "RESUME=none\nRESUMEX=/dev/sda2\n") == 0 && e.n == 0);
  free (out);
}

static void
test_cmdline (void)
{
  struct p2v_edits e = { 0 };
  char *out;

  out = cmdline_rewrite ("BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro resume=/dev/sda2 quiet",
                         fake_resolve, NULL, &e);
  CHECK (strcmp (out, "BOOT_IMAGE=/vmlinuz root=UUID=1111-root ro "
                 "resume=UUID=2222-swap quiet") == 0);
  CHECK (e.n == 2);
  if (e.n == 2) {
    CHECK (strcmp (e.v[0].before, "root=/dev/sda1") == 0);
    CHECK (strcmp (e.v[0].after, "root=UUID=1111-root") == 0);
  }
  edits_free (&e);
  free (out);

  /* Not at a word start, stable names, unknown devices: left alone. */
  out = cmdline_rewrite ("xroot=/dev/sda1 root=/dev/mapper/vg0-root "
                         "resume=/dev/sdq7 real_root=/dev/sda1",
                         fake_resolve, NULL, &e);
  CHECK (strcmp (out, "xroot=/dev/sda1 root=/dev/mapper/vg0-root "
                 "resume=/dev/sdq7 real_root=/dev/sda1") == 0);
  CHECK (e.n == 0);
  free (out);

  CHECK (cmdline_has_unstable ("\tlinux /vmlinuz root=/dev/sda1 ro\n"));
  CHECK (cmdline_has_unstable ("linux /vmlinuz root=UUID=x resume=/dev/sdb2"));
  CHECK (!cmdline_has_unstable ("linux /vmlinuz root=UUID=x ro quiet"));
  CHECK (!cmdline_has_unstable ("linux /vmlinuz root=/dev/mapper/vg0-root"));
  CHECK (!cmdline_has_unstable (""));
}

static const char grub_default_in[] =
  "GRUB_DEFAULT=0\n"
  "GRUB_TIMEOUT=1\n"
  "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet resume=/dev/sda2\"\n"
  "GRUB_CMDLINE_LINUX=\"console=ttyS0,115200 root=/dev/sda1\"\n"
  "#GRUB_DISABLE_LINUX_UUID=true\n"
  "GRUB_DISABLE_LINUX_UUID=true\n";

static void
test_grub_default (void)
{
  struct p2v_edits e = { 0 };
  char *out, *again;

  CHECK (grub_default_disables_uuid (grub_default_in));
  CHECK (!grub_default_disables_uuid ("GRUB_DISABLE_LINUX_UUID=true\n"
                                      "GRUB_DISABLE_LINUX_UUID=false\n"));
  CHECK (grub_default_disables_uuid ("GRUB_DISABLE_LINUX_UUID=\"true\"\n"));
  CHECK (!grub_default_disables_uuid ("#GRUB_DISABLE_LINUX_UUID=true\n"));

  out = grub_default_rewrite (grub_default_in, true, fake_resolve, NULL, &e);
  CHECK (strcmp (out,
                 "GRUB_DEFAULT=0\n"
                 "GRUB_TIMEOUT=1\n"
                 "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet resume=UUID=2222-swap\"\n"
                 "GRUB_CMDLINE_LINUX=\"console=ttyS0,115200 root=UUID=1111-root\"\n"
                 "#GRUB_DISABLE_LINUX_UUID=true\n"
                 "GRUB_DISABLE_LINUX_UUID=false\n") == 0);
  CHECK (e.n == 3);
  if (e.n == 3)
    CHECK (strcmp (e.v[2].after, "GRUB_DISABLE_LINUX_UUID=false") == 0);
  CHECK (!grub_default_disables_uuid (out));
  edits_free (&e);
  again = grub_default_rewrite (out, true, fake_resolve, NULL, &e);
  CHECK (strcmp (again, out) == 0 && e.n == 0);
  free (again);
  free (out);

  /* Without want_uuid (root on LVM), the switch stays. */
  out = grub_default_rewrite ("GRUB_DISABLE_LINUX_UUID=true\n", false,
                              fake_resolve, NULL, &e);
  CHECK (strcmp (out, "GRUB_DISABLE_LINUX_UUID=true\n") == 0 && e.n == 0);
  free (out);
}

static void
test_kernel_lines (void)
{
  static const char *const bls[] = { "options", NULL };
  static const char *const legacy[] = { "kernel", "append", NULL };
  struct p2v_edits e = { 0 };
  char *out;

  out = kernel_lines_rewrite ("title Fedora\nversion 6.5\n"
                              "options root=/dev/sda1 ro rhgb quiet\n"
                              "linux /vmlinuz-6.5\n",
                              bls, fake_resolve, NULL, &e);
  CHECK (strcmp (out, "title Fedora\nversion 6.5\n"
                 "options root=UUID=1111-root ro rhgb quiet\n"
                 "linux /vmlinuz-6.5\n") == 0);
  CHECK (e.n == 1);
  edits_free (&e);
  free (out);

  out = kernel_lines_rewrite ("title x\n\tkernel /vmlinuz root=/dev/hda1 ro\n"
                              "optionsx root=/dev/sda1\n",
                              legacy, fake_resolve, NULL, &e);
  CHECK (strcmp (out, "title x\n\tkernel /vmlinuz root=UUID=1111-root ro\n"
                 "optionsx root=/dev/sda1\n") == 0);
  edits_free (&e);
  free (out);
}

static void
test_debconf (void)
{
  const char *dat =
    "Name: grub-pc/install_devices_empty\n"
    "Template: grub-pc/install_devices_empty\n"
    "Value: false\n"
    "Owners: grub-pc\n"
    "\n"
    "Name: grub-pc/install_devices\n"
    "Template: grub-pc/install_devices\n"
    "Value: /dev/disk/by-id/ata-QEMU_HARDDISK_QM00001\n"
    "Owners: grub-pc\n"
    "Flags: seen\n"
    "\n"
    "Name: grub-pc/kopt\n"
    "Owners: grub-pc\n";
  char *v = debconf_value (dat, "grub-pc/install_devices");

  CHECK (v && strcmp (v, "/dev/disk/by-id/ata-QEMU_HARDDISK_QM00001") == 0);
  free (v);
  v = debconf_value (dat, "grub-pc/install_devices_empty");
  CHECK (v && strcmp (v, "false") == 0);
  free (v);
  CHECK (debconf_value (dat, "grub-pc/kopt") == NULL);
  CHECK (debconf_value (dat, "grub-pc/nope") == NULL);
}

static void
test_modules (void)
{
  struct p2v_edits e = { 0 };
  const char *in =
    "# List of modules that you want to include in your initramfs.\n"
    "# virtio_blk\n"
    "ahci\n"
    "sd_mod\n"
    "virtio-net\n"
    "ext4";
  char *out, *again;

  out = modules_list_add (in, p2v_virtio_modules, &e);
  CHECK (strcmp (out,
                 "# List of modules that you want to include in your initramfs.\n"
                 "# virtio_blk\n"
                 "ahci\n"
                 "sd_mod\n"
                 "virtio-net\n"
                 "ext4\n"
                 "# virtio drivers for KVM (added by p2v inject)\n"
                 "virtio_blk\n"
                 "virtio_scsi\n"
                 "virtio_pci\n"
                 "virtio_console\n") == 0);
  CHECK (e.n == 1);
  if (e.n == 1) {
    CHECK (strcmp (e.v[0].before, "some virtio drivers") == 0);
    CHECK (strcmp (e.v[0].after,
                   "+ virtio_blk virtio_scsi virtio_pci virtio_console") == 0);
  }
  edits_free (&e);
  again = modules_list_add (out, p2v_virtio_modules, &e);
  CHECK (strcmp (again, out) == 0 && e.n == 0);
  free (again);
  free (out);

  out = modules_list_add ("", p2v_virtio_modules, &e);
  CHECK (strncmp (out, "# virtio drivers", 16) == 0);
  CHECK (e.n == 1 && strcmp (e.v[0].before, "no virtio drivers") == 0);
  edits_free (&e);
  free (out);
}

static void
test_dracut (void)
{
  bool present[6] = { false };
  char *text = dracut_conf_text (p2v_virtio_modules);

  dracut_conf_scan ("hostonly=\"no\"\n"
                    "drivers=\" ahci libahci sd_mod ext4 \"\n"
                    "omit_drivers+=\" virtio_net \"\n"
                    "add_drivers+=\" virtio-blk \" # disk\n"
                    "#add_drivers+=\" virtio_scsi \"\n",
                    p2v_virtio_modules, present);
  CHECK (present[0] && !present[1] && !present[2] && !present[3]
         && !present[4]);

  CHECK (strstr (text, "add_drivers+=\" virtio_blk virtio_scsi virtio_net "
                 "virtio_pci virtio_console \"\n") != NULL);
  memset (present, 0, sizeof present);
  dracut_conf_scan (text, p2v_virtio_modules, present);
  CHECK (present[0] && present[1] && present[2] && present[3] && present[4]);
  free (text);
}

static void
test_mkinitcpio (void)
{
  struct p2v_edits e = { 0 };
  char *out, *again;

  out = mkinitcpio_conf_add ("# vim:set ft=sh\nMODULES=(ahci)\nHOOKS=(base udev)\n",
                             p2v_virtio_modules, &e);
  CHECK (strcmp (out, "# vim:set ft=sh\nMODULES=(ahci virtio_blk virtio_scsi "
                 "virtio_net virtio_pci virtio_console)\nHOOKS=(base udev)\n") == 0);
  CHECK (e.n == 1);
  edits_free (&e);
  again = mkinitcpio_conf_add (out, p2v_virtio_modules, &e);
  CHECK (strcmp (again, out) == 0 && e.n == 0);
  free (again);
  free (out);

  out = mkinitcpio_conf_add ("MODULES=()\n", p2v_virtio_modules, &e);
  CHECK (strcmp (out, "MODULES=(virtio_blk virtio_scsi virtio_net virtio_pci "
                 "virtio_console)\n") == 0);
  edits_free (&e);
  free (out);

  out = mkinitcpio_conf_add ("MODULES=\"ahci\"\n", p2v_virtio_modules, &e);
  CHECK (strcmp (out, "MODULES=\"ahci virtio_blk virtio_scsi virtio_net "
                 "virtio_pci virtio_console\"\n") == 0);
  edits_free (&e);
  free (out);

  out = mkinitcpio_conf_add ("HOOKS=(base)\n", p2v_virtio_modules, &e);
  CHECK (strstr (out, "MODULES+=(virtio_blk virtio_scsi virtio_net virtio_pci "
                 "virtio_console)\n") != NULL);
  edits_free (&e);
  free (out);
}

static void
test_net_parse (void)
{
  struct p2v_netifs l = { 0 };
  struct p2v_netif *n;

  net_parse_ifupdown ("source /etc/network/interfaces.d/*\n"
                      "auto lo\niface lo inet loopback\n\n"
                      "allow-hotplug eno1\niface eno1 inet static\n"
                      "\taddress 192.0.2.10/24\n\tgateway 192.0.2.1\n"
                      "auto eth1\niface eth1 inet dhcp\n"
                      "auto br0\niface br0 inet static\n\taddress 10.0.0.1/8\n"
                      "\tbridge_ports eth2\n",
                      "/etc/network/interfaces", &l);
  CHECK (l.n == 2);
  n = netifs_find (&l, "eno1");
  CHECK (n && strcmp (n->address, "192.0.2.10/24") == 0
         && strcmp (n->config_file, "/etc/network/interfaces") == 0
         && n->mac == NULL);
  n = netifs_find (&l, "eth1");
  CHECK (n && strcmp (n->address, "dhcp") == 0);
  CHECK (netifs_find (&l, "lo") == NULL && netifs_find (&l, "br0") == NULL);

  net_parse_udev_rules ("# comment\nSUBSYSTEM==\"net\", ACTION==\"add\", "
                        "ATTR{address}==\"52:54:00:12:34:56\", NAME=\"eno1\"\n",
                        "/etc/udev/rules.d/70-persistent-net.rules", &l);
  n = netifs_find (&l, "eno1");
  CHECK (n && n->mac && strcmp (n->mac, "52:54:00:12:34:56") == 0);
  CHECK (n && n->pin_file
         && strcmp (n->pin_file, "/etc/udev/rules.d/70-persistent-net.rules") == 0);
  netifs_free (&l);

  net_parse_link ("[Match]\nMACAddress=AA:BB:CC:DD:EE:FF\n[Link]\nName=lan0\n",
                  "/etc/systemd/network/10-lan0.link", &l);
  n = netifs_find (&l, "lan0");
  CHECK (n && strcmp (n->mac, "aa:bb:cc:dd:ee:ff") == 0);
  netifs_free (&l);

  net_parse_networkd ("[Match]\nName=enp3s0\n\n[Network]\nAddress=10.1.1.5/24\n"
                      "Gateway=10.1.1.1\n", "/etc/systemd/network/20.network", &l);
  n = netifs_find (&l, "enp3s0");
  CHECK (n && strcmp (n->address, "10.1.1.5/24") == 0 && !n->mac);
  netifs_free (&l);

  net_parse_ifcfg ("TYPE=Ethernet\nBOOTPROTO=none\nDEVICE=eth0\n"
                   "HWADDR=\"00:1B:21:AA:BB:CC\"\nIPADDR=10.0.0.5\nPREFIX=24\n",
                   "/etc/sysconfig/network-scripts/ifcfg-eth0", &l);
  n = netifs_find (&l, "eth0");
  CHECK (n && strcmp (n->mac, "00:1b:21:aa:bb:cc") == 0
         && strcmp (n->address, "10.0.0.5/24") == 0);
  netifs_free (&l);

  net_parse_ifcfg ("BOOTPROTO=dhcp\nONBOOT=yes\n",
                   "/etc/sysconfig/network-scripts/ifcfg-em1", &l);
  n = netifs_find (&l, "em1");
  CHECK (n && strcmp (n->address, "dhcp") == 0);
  netifs_free (&l);

  net_parse_keyfile ("[connection]\nid=Wired\ntype=ethernet\n"
                     "interface-name=ens1f0\n\n[ethernet]\n"
                     "mac-address=3C:FD:FE:00:11:22\n\n[ipv4]\n"
                     "address1=192.168.1.20/24,192.168.1.1\nmethod=manual\n",
                     "/etc/NetworkManager/system-connections/Wired.nmconnection",
                     &l);
  n = netifs_find (&l, "ens1f0");
  CHECK (n && strcmp (n->mac, "3c:fd:fe:00:11:22") == 0
         && strcmp (n->address, "192.168.1.20/24") == 0);
  netifs_free (&l);

  net_parse_netplan ("# netplan\nnetwork:\n  version: 2\n  ethernets:\n"
                     "    lan:\n      match:\n        macaddress: \"52:54:00:aa:bb:cc\"\n"
                     "      set-name: eno2\n      addresses:\n        - 10.9.8.7/16\n"
                     "    eno3:\n      dhcp4: true\n"
                     "  bridges:\n    br0:\n      interfaces: [eno3]\n",
                     "/etc/netplan/01-netcfg.yaml", &l);
  CHECK (l.n == 2);
  n = netifs_find (&l, "eno2");
  CHECK (n && n->mac && strcmp (n->mac, "52:54:00:aa:bb:cc") == 0
         && n->address && strcmp (n->address, "10.9.8.7/16") == 0);
  n = netifs_find (&l, "eno3");
  CHECK (n && n->address && strcmp (n->address, "dhcp") == 0);
  CHECK (netifs_find (&l, "br0") == NULL);
  netifs_free (&l);

  net_parse_netplan ("network:\n  ethernets:\n    eth0: {dhcp4: true}\n",
                     "/etc/netplan/x.yaml", &l);
  CHECK (l.n == 1 && netifs_find (&l, "eth0"));
  netifs_free (&l);

  CHECK (netif_is_physical ("eno1"));
  CHECK (netif_is_physical ("enp0s31f6"));
  CHECK (netif_is_physical ("eth0"));
  CHECK (!netif_is_physical ("lo"));
  CHECK (!netif_is_physical ("bond0"));
  CHECK (!netif_is_physical ("eth0.100"));
  CHECK (!netif_is_physical ("eth0:1"));
  CHECK (!netif_is_physical ("br-lan"));
  CHECK (!netif_is_physical ("en*"));
}

static void
test_net_rewrite (void)
{
  struct p2v_edits e = { 0 };
  char *out, *again;
  const char *rules =
    "# generated\n"
    "SUBSYSTEM==\"net\", ACTION==\"add\", DRIVERS==\"?*\", "
    "ATTR{address}==\"52:54:00:12:34:56\", NAME=\"eno1\"\n"
    "SUBSYSTEM==\"net\", ACTION==\"add\", DRIVERS==\"e1000e\", "
    "ATTR{address}==\"00:1b:21:aa:bb:cc\", NAME=\"eth0\"\n"
    "SUBSYSTEM==\"net\", KERNELS==\"0000:03:00.0\", NAME=\"eth1\"\n";

  out = udev_rules_drop_hw_pins (rules, &e);
  CHECK (e.n == 2);
  CHECK (strstr (out, "\nSUBSYSTEM==\"net\", ACTION==\"add\", DRIVERS==\"?*\"") != NULL);
  CHECK (strstr (out, "# p2v: hardware of the physical server: SUBSYSTEM==\"net\", "
                 "ACTION==\"add\", DRIVERS==\"e1000e\"") != NULL);
  CHECK (strstr (out, "# p2v: hardware of the physical server: SUBSYSTEM==\"net\", "
                 "KERNELS==") != NULL);
  if (e.n == 2) {
    CHECK (strstr (e.v[0].why, "DRIVERS==\"e1000e\"") != NULL);
    CHECK (strstr (e.v[1].why, "eth1") != NULL);
  }
  edits_free (&e);
  again = udev_rules_drop_hw_pins (out, &e);
  CHECK (strcmp (again, out) == 0 && e.n == 0);
  free (again);
  free (out);

  out = net_replace_mac ("DEVICE=eth0\nHWADDR=00:1B:21:AA:BB:CC\n"
                         "# old 00:1b:21:aa:bb:cc0 is not a MAC\n",
                         "00:1b:21:aa:bb:cc", "52:54:00:00:00:01", &e);
  CHECK (strcmp (out, "DEVICE=eth0\nHWADDR=52:54:00:00:00:01\n"
                 "# old 00:1b:21:aa:bb:cc0 is not a MAC\n") == 0);
  CHECK (e.n == 1);
  if (e.n == 1) {
    CHECK (strcmp (e.v[0].before, "HWADDR=00:1B:21:AA:BB:CC") == 0);
    CHECK (strcmp (e.v[0].after, "HWADDR=52:54:00:00:00:01") == 0);
  }
  edits_free (&e);
  free (out);

  out = net_replace_mac ("mac-address=00:1b:21:aa:bb:cc\n", "00:1b:21:aa:bb:cc",
                         "00:1B:21:AA:BB:CC", &e);
  CHECK (strcmp (out, "mac-address=00:1b:21:aa:bb:cc\n") == 0 && e.n == 0);
  free (out);

  out = net_link_text ("eno1", "52:54:00:12:34:56");
  CHECK (strstr (out, "[Match]\nMACAddress=52:54:00:12:34:56\n") != NULL);
  CHECK (strstr (out, "[Link]\nName=eno1\n") != NULL);
  free (out);
  out = net_link_text ("eth0", NULL);
  CHECK (strstr (out, "[Match]\nDriver=virtio_net\n") != NULL);
  free (out);
}

static void
test_helpers (void)
{
  static const char *const keys[] = { "kver", "initrd", NULL };
  static const char *const values[] = { "6.1.0-50-amd64", "/boot/it's", NULL };
  char *s, *m;

  s = template_expand ("dracut -f {initrd} {kver} {other}", keys, values);
  CHECK (strcmp (s, "dracut -f '/boot/it'\\''s' '6.1.0-50-amd64' {other}") == 0);
  free (s);

  s = backup_path ("/etc/fstab");
  CHECK (strcmp (s, "/etc/fstab.p2v-orig") == 0);
  free (s);
  s = backup_path ("/etc/network/interfaces.d/eno1");
  CHECK (strcmp (s, "/etc/network/interfaces.d/.eno1.p2v-orig") == 0);
  free (s);
  s = backup_path ("/etc/initramfs-tools/conf.d/resume");
  CHECK (strcmp (s, "/etc/initramfs-tools/conf.d/.resume.p2v-orig") == 0);
  free (s);
  s = backup_path ("/etc/NetworkManager/system-connections/sub/x");
  CHECK (strcmp (s, "/etc/NetworkManager/system-connections/sub/x.p2v-orig") == 0);
  free (s);

  CHECK (mac_is_valid ("52:54:00:12:34:56"));
  CHECK (mac_is_valid ("52-54-00-AB-cd-EF"));
  CHECK (!mac_is_valid ("52:54:00:12:34"));
  CHECK (!mac_is_valid ("52:54:00:12:34:567"));
  CHECK (!mac_is_valid ("g2:54:00:12:34:56"));
  m = mac_normalize ("52-54-00-AB-cd-EF");
  CHECK (m && strcmp (m, "52:54:00:ab:cd:ef") == 0);
  free (m);
  CHECK (mac_equal ("52:54:00:AB:CD:EF", "52-54-00-ab-cd-ef"));
  CHECK (!mac_equal ("52:54:00:AB:CD:EF", "nope"));

  CHECK (is_safe_word ("6.1.0-50-amd64"));
  CHECK (!is_safe_word ("a b"));
  CHECK (!is_safe_word ("x;rm"));
  CHECK (!is_safe_word (""));

  CHECK (family_for ("debian", "deb") == &p2v_families[0]);
  CHECK (strcmp (family_for ("ubuntu", NULL)->name, "debian") == 0);
  CHECK (strcmp (family_for ("rocky", "rpm")->name, "rhel") == 0);
  CHECK (strcmp (family_for ("sles", "rpm")->name, "suse") == 0);
  CHECK (strcmp (family_for ("unknown", "rpm")->name, "rhel") == 0);
  CHECK (family_for ("gentoo", "ebuild") == NULL);
  CHECK (initramfs_tool_by_name ("dracut") != NULL);
  CHECK (initramfs_tool_by_name ("genkernel") == NULL);
  /* Every family's initramfs tools exist in the tool table. */
  for (size_t i = 0; i < p2v_nfamilies; i++)
    for (size_t j = 0; p2v_families[i].initramfs_tools[j]; j++)
      CHECK (initramfs_tool_by_name (p2v_families[i].initramfs_tools[j]));
}

/* A cpio archive (newc) of NAMES, through FILTER (ARCHIVE_FILTER_NONE,
 * _GZIP, _ZSTD, _XZ), appended to BUF at *LEN; 0 or -1. */
static int
cpio_append (unsigned char *buf, size_t cap, size_t *len, int filter,
             const char *const *names)
{
  struct archive *a = archive_write_new ();
  size_t used = 0;
  int r = 0;

  archive_write_set_format_cpio_newc (a);
  if (filter != ARCHIVE_FILTER_NONE
      && archive_write_add_filter (a, filter) < ARCHIVE_WARN) {
    archive_write_free (a);
    return -1;
  }
  archive_write_set_bytes_per_block (a, 0);
  if (archive_write_open_memory (a, buf + *len, cap - *len, &used) != ARCHIVE_OK)
    r = -1;
  for (size_t i = 0; r == 0 && names[i]; i++) {
    struct archive_entry *e = archive_entry_new ();
    static const char data[] = "\177ELF not really a module";
    archive_entry_set_pathname (e, names[i]);
    archive_entry_set_filetype (e, AE_IFREG);
    archive_entry_set_perm (e, 0644);
    archive_entry_set_size (e, sizeof data);
    if (archive_write_header (a, e) != ARCHIVE_OK
        || archive_write_data (a, data, sizeof data) != (ssize_t) sizeof data)
      r = -1;
    archive_entry_free (e);
  }
  if (archive_write_close (a) != ARCHIVE_OK)
    r = -1;
  archive_write_free (a);
  *len += used;
  return r;
}

static void
test_initrd (void)
{
  static const char *const early[] = {
    "kernel", "kernel/x86/microcode/GenuineIntel.bin", NULL
  };
  static const char *const with[] = {
    "usr/lib/modules/6.1.0-50-amd64/kernel/drivers/block/virtio_blk.ko",
    "usr/bin/busybox", NULL
  };
  static const char *const with_xz[] = {
    "lib/modules/5.14.0/kernel/drivers/block/virtio_blk.ko.xz", NULL
  };
  static const char *const without[] = {
    "usr/lib/modules/6.1.0-50-amd64/kernel/drivers/ata/ahci.ko", NULL
  };
  static const int filters[] = {
    ARCHIVE_FILTER_NONE, ARCHIVE_FILTER_GZIP, ARCHIVE_FILTER_ZSTD,
    ARCHIVE_FILTER_XZ
  };
  size_t cap = 1 << 20, len, early_len;
  unsigned char *buf = xcalloc (1, cap);
  bool found;

  /* Early microcode (plain), zero padding, then each compression. */
  for (size_t f = 0; f < ARRAY_SIZE (filters); f++) {
    len = 0;
    CHECK (cpio_append (buf, cap, &len, ARCHIVE_FILTER_NONE, early) == 0);
    early_len = len;
    memset (buf + len, 0, 512);
    len += 512;
    CHECK (cpio_append (buf, cap, &len, filters[f], with) == 0);
    found = false;
    CHECK (initrd_buffer_has (buf, len, "virtio_blk.ko", &found) == 0);
    CHECK (found);

    len = early_len + 512;
    CHECK (cpio_append (buf, cap, &len, filters[f], without) == 0);
    found = true;
    CHECK (initrd_buffer_has (buf, len, "virtio_blk.ko", &found) == 0);
    CHECK (!found);
  }
  /* Compressed modules (RHEL's .ko.xz) inside a gzip archive alone. */
  len = 0;
  CHECK (cpio_append (buf, cap, &len, ARCHIVE_FILTER_GZIP, with_xz) == 0);
  CHECK (initrd_buffer_has (buf, len, "virtio_blk.ko", &found) == 0 && found);

  /* Hostile or broken images: an error, never a crash (ASan watches). */
  len = 0;
  CHECK (cpio_append (buf, cap, &len, ARCHIVE_FILTER_NONE, with) == 0);
  for (size_t cut = 1; cut < len; cut += 7)
    (void) initrd_buffer_has (buf, cut, "virtio_blk.ko", &found);
  CHECK (initrd_buffer_has (buf, 50, "virtio_blk.ko", &found) == -1);
  memcpy (buf + 94, "FFFFFFFF", 8);         /* namesize past the end */
  CHECK (initrd_buffer_has (buf, len, "virtio_blk.ko", &found) == -1);
  memcpy (buf + 54, "zzzzzzzz", 8);         /* filesize not hex */
  CHECK (initrd_buffer_has (buf, len, "virtio_blk.ko", &found) == -1);
  memset (buf, 0, 4096);
  CHECK (initrd_buffer_has (buf, 4096, "virtio_blk.ko", &found) == -1);
  memcpy (buf, "this is not an initramfs at all", 31);
  CHECK (initrd_buffer_has (buf, 4096, "virtio_blk.ko", &found) == -1);
  CHECK (initrd_file_has ("/nonexistent/initrd.img", "virtio_blk.ko",
                          &found) == -1);
  free (buf);
}


/* REWRITE (lvm_conf_rewrite, mdadm_conf_rewrite) on TEXT: the result
 * equals WANT (NULL: unchanged), with EDITS edits and NOTES notes; a
 * second pass changes nothing. */
typedef char *rewrite_fn (const char *text, struct p2v_edits *edits,
                          struct p2v_strings *notes);

static void
check_rewrite (rewrite_fn *rewrite, const char *text, const char *want,
               size_t edits, size_t notes, int line)
{
  struct p2v_edits e = { 0 };
  struct p2v_strings n = { 0 };
  char *out = rewrite (text, &e, &n), *again;
  bool ok = strcmp (out, want ? want : text) == 0 && e.n == edits
    && n.n == notes;

  if (!ok)
    fprintf (stderr, "line %d: got (%zu edits, %zu notes):\n%s\n", line,
             e.n, n.n, out);
  CHECK (ok);
  edits_free (&e);
  strings_free (&n);
  again = rewrite (out, &e, &n);
  CHECK (strcmp (again, out) == 0 && e.n == 0);
  edits_free (&e);
  strings_free (&n);
  free (again);
  free (out);
}

#define check_lvm(...) check_rewrite (lvm_conf_rewrite, __VA_ARGS__)
#define check_mdadm(...) check_rewrite (mdadm_conf_rewrite, __VA_ARGS__)

static void
test_lvm_conf (void)
{
  struct p2v_edits e = { 0 };
  struct p2v_strings n = { 0 };
  char *out;

  /* No filter: the stock file's examples are comments. */
  check_lvm ("config {\n\tcheckings = 1\n}\ndevices {\n\tdir = \"/dev\"\n"
             "\tscan = [ \"/dev\" ]\n"
             "\t# filter = [ \"a|^/dev/sda.*|\", \"r|.*|\" ]\n"
             "\t# global_filter = [ \"a|.*|\" ]\n"
             "\tuse_devicesfile = 1\n}\n", NULL, 0, 0, __LINE__);
  check_lvm ("", NULL, 0, 0, __LINE__);

  /* The one-line filter of a server that knew only its SATA disk. */
  out = lvm_conf_rewrite ("devices {\n"
                          "    global_filter = [ \"a|^/dev/sda.*|\", \"r|.*|\" ]\n"
                          "}\n", &e, &n);
  CHECK (strcmp (out, "devices {\n    global_filter = [ \"a|^/dev/vd.*|\", "
                 "\"a|^/dev/sda.*|\", \"r|.*|\" ]\n}\n") == 0);
  CHECK (e.n == 1 && n.n == 0);
  if (e.n == 1) {
    CHECK (strcmp (e.v[0].before,
                   "global_filter = [ \"a|^/dev/sda.*|\", \"r|.*|\" ]") == 0);
    CHECK (strcmp (e.v[0].after, "global_filter = [ \"a|^/dev/vd.*|\", "
                   "\"a|^/dev/sda.*|\", \"r|.*|\" ]") == 0);
    CHECK (strstr (e.v[0].why, "/dev/vd") != NULL);
  }
  edits_free (&e);
  strings_free (&n);
  free (out);

  /* Already accepting the virtio disks, or not naming physical ones. */
  check_lvm ("devices {\n filter = [ \"a|^/dev/vd.*|\", \"a|^/dev/sda.*|\", "
             "\"r|.*|\" ]\n}\n", NULL, 0, 0, __LINE__);
  check_lvm ("devices {\n filter = [ \"a|^/dev/[sv]d[a-z]+[0-9]*$|\", "
             "\"r|.*|\" ]\n}\n", NULL, 0, 0, __LINE__);
  check_lvm ("devices { filter = [ \"a|.*|\" ] }\n", NULL, 0, 0, __LINE__);
  check_lvm ("devices { filter = [ \"r|/dev/cdrom|\" ] }\n", NULL, 0, 0,
             __LINE__);
  check_lvm ("devices { filter = [ \"a|^/dev/md.*|\", \"r|.*|\" ] }\n",
             NULL, 0, 0, __LINE__);
  check_lvm ("devices { filter = [ \"a|.*/|\", \"r|.*|\" ] }\n", NULL, 0, 0,
             __LINE__);
  check_lvm ("devices { filter = [ \"a|^/dev/disk/by-id/lvm-pv-uuid-.*|\", "
             "\"r|.*|\" ] }\n", NULL, 0, 0, __LINE__);

  /* Odd quoting: single quotes, other separators, no commas, an escaped
   * quote, a string instead of an array, a comment after it. */
  check_lvm ("devices {\n\tfilter = [ 'a/^\\/dev\\/sda[0-9]*$/' 'r(.*)' ]\n}\n",
             "devices {\n\tfilter = [ \"a|^/dev/vd.*|\", "
             "'a/^\\/dev\\/sda[0-9]*$/' 'r(.*)' ]\n}\n", 1, 0, __LINE__);
  check_lvm ("devices{filter=[\"a{/dev/sd[ab]}\",\"r|.*|\"]}",
             "devices{filter=[\"a|^/dev/vd.*|\", \"a{/dev/sd[ab]}\","
             "\"r|.*|\"]}", 1, 0, __LINE__);
  check_lvm ("devices {\n filter = [ \"a|^/dev/disk/by-id/ata-WDC \\\"x\\\"|\","
             " \"r|.*|\" ] # only the WD disk\n}\n",
             "devices {\n filter = [ \"a|^/dev/vd.*|\", "
             "\"a|^/dev/disk/by-id/ata-WDC \\\"x\\\"|\", \"r|.*|\" ]"
             " # only the WD disk\n}\n", 1, 0, __LINE__);
  check_lvm ("devices {\n filter = \"r|^/dev/vd|\"\n filter = [ \"a|/dev/nvme0n1p2|\", "
             "\"r|.*|\" ]\n}\n",
             "devices {\n filter = \"r|^/dev/vd|\"\n filter = [ \"a|^/dev/vd.*|\", "
             "\"a|/dev/nvme0n1p2|\", \"r|.*|\" ]\n}\n", 1, 0, __LINE__);
  check_lvm ("devices {\n filter = \"a|^/dev/cciss/.*|\"\n}\n", NULL, 0, 0,
             __LINE__);
  check_lvm ("devices {\n filter = [ \"a|^/dev/hda|\" ]\n global_filter = "
             "\"r|^/dev/vd|\"\n}\n", NULL, 0, 0, __LINE__);

  /* A whole array over several lines, with a comment inside. */
  check_lvm ("devices {\n\tfilter = [\n\t\t\"a|^/dev/sda2$|\",  # the PV\n"
             "\t\t\"r|.*|\"\n\t]\n\tsysfs_scan = 1\n}\n",
             "devices {\n\tfilter = [\n\t\t\"a|^/dev/vd.*|\", \"a|^/dev/sda2$|\","
             "  # the PV\n\t\t\"r|.*|\"\n\t]\n\tsysfs_scan = 1\n}\n", 1, 0,
             __LINE__);
  out = lvm_conf_rewrite ("devices {\n\tfilter = [\n\t\t\"a|^/dev/sda2$|\",\n"
                          "\t\t\"r|.*|\"\n\t]\n}\n", &e, &n);
  CHECK (e.n == 1 && strcmp (e.v[0].before,
                             "filter = [ \"a|^/dev/sda2$|\", \"r|.*|\" ]") == 0);
  edits_free (&e);
  strings_free (&n);
  free (out);

  /* Commented lines and other sections are not the filter. */
  check_lvm ("#devices { filter = [ \"a|sda|\", \"r|.*|\" ] }\n"
             "activation {\n filter = [ \"a|/dev/sda|\", \"r|.*|\" ]\n}\n"
             "devices {\n # filter = [ \"a|/dev/sda|\", \"r|.*|\" ]\n"
             " tags { filter = [ \"a|/dev/sda|\", \"r|.*|\" ] }\n}\n",
             NULL, 0, 0, __LINE__);
  check_lvm ("filter = [ \"a|/dev/sda|\", \"r|.*|\" ]\n", NULL, 0, 0, __LINE__);

  /* Several devices sections, both settings, and the path form. */
  check_lvm ("devices {\n filter = [ \"a|/dev/sda|\", \"r|.*|\" ]\n}\n"
             "log { verbose = 0 }\n"
             "devices {\n global_filter = [ \"a|/dev/sdb|\", \"r|.*|\" ]\n}\n"
             "devices/filter = [ \"a|/dev/hda1|\", \"r|.*|\" ]\n",
             "devices {\n filter = [ \"a|^/dev/vd.*|\", \"a|/dev/sda|\", \"r|.*|\" ]\n}\n"
             "log { verbose = 0 }\n"
             "devices {\n global_filter = [ \"a|^/dev/vd.*|\", \"a|/dev/sdb|\", "
             "\"r|.*|\" ]\n}\n"
             "devices/filter = [ \"a|^/dev/vd.*|\", \"a|/dev/hda1|\", \"r|.*|\" ]\n",
             3, 0, __LINE__);

  /* Malformed: left alone, and said so. */
  check_lvm ("devices {\n filter = [ \"a|/dev/sda|\", \"r|.*| ]\n}\n", NULL, 0,
             1, __LINE__);
  check_lvm ("devices {\n filter = [ \"a|/dev/sda|\", \"r|.*|\" ]\n", NULL, 0,
             1, __LINE__);
  check_lvm ("devices {\n filter = [ \"a|/dev/sda|\", \"r|.*|\"\n}\n", NULL, 0,
             1, __LINE__);
  check_lvm ("}\ndevices { filter = [ \"a|/dev/sda|\", \"r|.*|\" ] }\n", NULL,
             0, 1, __LINE__);
  check_lvm ("devices { filter = [ \"a|/dev/sda|\", 7, \"r|.*|\" ] }\n", NULL,
             0, 1, __LINE__);
  check_lvm ("devices { filter = [ \"/dev/sda\", \"r|.*|\" ] }\n", NULL, 0, 1,
             __LINE__);
  check_lvm ("devices { filter = [ \"a|/dev/sda\", \"r|.*|\" ] }\n", NULL, 0, 1,
             __LINE__);
  check_lvm ("devices { filter = [ \"a|/dev/sd[a|\", \"r|.*|\" ] }\n", NULL, 0,
             1, __LINE__);
  check_lvm ("devices { filter = }\n", NULL, 0, 1, __LINE__);
  check_lvm ("devices { filter [ \"a|/dev/sda|\" ] }\n", NULL, 0, 1, __LINE__);
  out = lvm_conf_rewrite ("# lvm.conf\ndevices {\n\n filter = [ \"a|sda|\", 'r|.*| ]\n}\n",
                          &e, &n);
  CHECK (e.n == 0 && n.n == 1);
  if (n.n == 1)
    CHECK (strncmp (n.v[0], "line 4: cannot parse", 20) == 0);
  edits_free (&e);
  strings_free (&n);
  free (out);
  out = lvm_conf_rewrite ("devices {\n filter = [ \"x|sda|\" ]\n}\n", &e, &n);
  CHECK (e.n == 0 && n.n == 1);
  if (n.n == 1)
    CHECK (strstr (n.v[0], "line 2: devices/filter") && strstr (n.v[0], "'x|sda|'"));
  edits_free (&e);
  strings_free (&n);
  free (out);
}

static void
test_mdadm_conf (void)
{
  struct p2v_edits e = { 0 };
  struct p2v_strings n = { 0 };
  char *out;

  /* Debian's own file: arrays by UUID, nothing to do. */
  check_mdadm ("# mdadm.conf\n#\n# by default (built-in), scan all partitions\n"
               "#DEVICE partitions containers\n\nHOMEHOST <system>\n"
               "MAILADDR root\n"
               "ARRAY /dev/md/0  metadata=1.2 UUID=3aaa0122:29827cfa:5331ad66:ca767371 name=srv:0\n",
               NULL, 0, 0, __LINE__);
  check_mdadm ("", NULL, 0, 0, __LINE__);

  /* devices= naming the old disks goes; the UUID stays. */
  out = mdadm_conf_rewrite ("DEVICE partitions\n"
                            "ARRAY /dev/md0 level=raid1 num-devices=2 "
                            "UUID=3aaa0122:29827cfa:5331ad66:ca767371 "
                            "devices=/dev/sda1,/dev/sdb1\n"
                            "MAILADDR root\n", &e, &n);
  CHECK (strcmp (out, "DEVICE partitions\nARRAY /dev/md0 level=raid1 "
                 "num-devices=2 UUID=3aaa0122:29827cfa:5331ad66:ca767371\n"
                 "MAILADDR root\n") == 0);
  CHECK (e.n == 1 && n.n == 0);
  if (e.n == 1) {
    CHECK (strstr (e.v[0].before, "devices=/dev/sda1,/dev/sdb1") != NULL);
    CHECK (strcmp (e.v[0].after, "ARRAY /dev/md0 level=raid1 num-devices=2 "
                   "UUID=3aaa0122:29827cfa:5331ad66:ca767371") == 0);
  }
  edits_free (&e);
  strings_free (&n);
  free (out);

  check_mdadm ("ARRAY /dev/md1 devices=/dev/sdc2,/dev/sdd2 uuid=a:b:c:d spares=1",
               "ARRAY /dev/md1 uuid=a:b:c:d spares=1", 1, 0, __LINE__);
  check_mdadm ("arr /dev/md1 Devices=\"/dev/disk/by-id/ata-X-part1,/dev/sdb1\" "
               "name=srv:1\n", "arr /dev/md1 name=srv:1\n", 1, 0, __LINE__);
  /* On a continuation line, alone and with other words. */
  check_mdadm ("ARRAY /dev/md0 UUID=a:b:c:d\n    devices=/dev/sda1,/dev/sdb1\n"
               "ARRAY /dev/md1 UUID=e:f:0:1\n\tdevices=/dev/sda2,/dev/sdb2 level=raid1\n",
               "ARRAY /dev/md0 UUID=a:b:c:d\n"
               "ARRAY /dev/md1 UUID=e:f:0:1\n\tlevel=raid1\n", 2, 0, __LINE__);
  /* Not physical disks, or no other way to find the array. */
  check_mdadm ("ARRAY /dev/md0 UUID=a:b:c:d devices=/dev/vda1,/dev/vdb1\n",
               NULL, 0, 0, __LINE__);
  check_mdadm ("ARRAY /dev/md0 devices=/dev/sda1,/dev/sdb1\n", NULL, 0, 1,
               __LINE__);
  check_mdadm ("ARRAY /dev/md0 UUID=a:b:c:d # devices=/dev/sda1,/dev/sdb1\n"
               "# ARRAY /dev/md1 UUID=e:f:0:1 devices=/dev/sda2\n", NULL, 0, 0,
               __LINE__);

  /* DEVICE lines. */
  out = mdadm_conf_rewrite ("DEVICE /dev/sda1 /dev/sdb1\n"
                            "ARRAY /dev/md0 UUID=a:b:c:d\n", &e, &n);
  CHECK (strcmp (out, "DEVICE partitions\nARRAY /dev/md0 UUID=a:b:c:d\n") == 0);
  CHECK (e.n == 1 && strcmp (e.v[0].before, "DEVICE /dev/sda1 /dev/sdb1") == 0
         && strcmp (e.v[0].after, "DEVICE partitions") == 0);
  edits_free (&e);
  strings_free (&n);
  free (out);
  check_mdadm ("DEVICE /dev/hd*[0-9] /dev/sd*[0-9]\n", "DEVICE partitions\n",
               1, 0, __LINE__);
  check_mdadm ("device /dev/sda1\n  /dev/sdb1\nMAILADDR root\n",
               "DEVICE partitions\nMAILADDR root\n", 1, 0, __LINE__);
  check_mdadm ("DEV /dev/cciss/c0d0p1 /dev/cciss/c0d1p1", "DEVICE partitions",
               1, 0, __LINE__);
  check_mdadm ("DEVICE partitions containers\nDEVICE /dev/md*\n", NULL, 0, 0,
               __LINE__);
  check_mdadm ("DEVICE /dev/sda1 /dev/vdb1\n", NULL, 0, 1, __LINE__);
  check_mdadm ("DEVICE\n#DEVICE /dev/sda1\nDE /dev/sda1\n", NULL, 0, 0,
               __LINE__);
}

static void
test_lvm_devices (void)
{
  char *s;

  s = lvm_devices_summary ("# LVM uses devices listed in this file.\n"
                           "# Created by LVM command vgimportdevices pid 1 at Mon\n"
                           "VERSION=1.1.3\n"
                           "IDTYPE=sys_wwid IDNAME=naa.5000c500a1b2c3d4 "
                           "DEVNAME=/dev/sda2 PVID=abc PART=2\n"
                           "IDTYPE=devname IDNAME=/dev/sdb1 DEVNAME=/dev/sdb1 "
                           "PVID=def PART=1\n");
  CHECK (strcmp (s, "2 PVs pinned by sys_wwid, devname (/dev/sda2, /dev/sdb1)")
         == 0);
  free (s);
  s = lvm_devices_summary ("VERSION=1.1.1\n");
  CHECK (strcmp (s, "no PVs listed") == 0);
  free (s);
  s = lvm_devices_summary ("IDTYPE=sys_serial IDNAME=S3Z");
  CHECK (strcmp (s, "1 PV pinned by sys_serial") == 0);
  free (s);
}

int
main (void)
{
  p2v_error_set_quiet (true);
  test_devname ();
  test_fstab ();
  test_fstab_parse ();
  test_crypttab ();
  test_resume_conf ();
  test_cmdline ();
  test_grub_default ();
  test_kernel_lines ();
  test_debconf ();
  test_modules ();
  test_dracut ();
  test_mkinitcpio ();
  test_net_parse ();
  test_net_rewrite ();
  test_helpers ();
  test_initrd ();
  test_lvm_conf ();
  test_mdadm_conf ();
  test_lvm_devices ();
  return unit_finish ("test-inject");
}
