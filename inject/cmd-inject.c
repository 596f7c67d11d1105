/* cmd-inject.c: `p2v inject IMAGE...`: make the guest boot and reach the
 * network as a KVM guest: device names, LVM and md settings, boot
 * loader, initramfs with virtio, network names, hardware agents. */
#include <getopt.h>
#include <stdio.h>

#include "common.h"
#include "inject-int.h"

const char cmd_inject_help[] =
  "usage: p2v inject IMAGE [IMAGE2...] [options]\n"
  "\n"
  "Apply the plan 'p2v inspect' shows to the Linux guest in IMAGE, in one\n"
  "libguestfs session, with the guest's own tools run inside the appliance:\n"
  "  - fstab, crypttab, resume and kernel root= name file systems by UUID\n"
  "    instead of /dev/sdX, /dev/cciss, /dev/nvme, by-id and by-path names;\n"
  "  - the boot loader is regenerated (grub-mkconfig) and reinstalled on\n"
  "    BIOS; on UEFI the \\EFI\\BOOT\\BOOTX64.EFI fallback is made;\n"
  "  - virtio_blk, virtio_scsi, virtio_net, virtio_pci and virtio_console\n"
  "    go into the initramfs tool's configuration and every kernel's\n"
  "    initramfs is rebuilt and checked;\n"
  "  - LVM and md RAID find their disks under virtio names: the LVM devices\n"
  "    file (/etc/lvm/devices/system.devices) is moved aside, an lvm.conf\n"
  "    filter accepting only the old disks also accepts /dev/vd*, and in\n"
  "    mdadm.conf devices= lists of old names go and a DEVICE line of only\n"
  "    old names becomes 'DEVICE partitions';\n"
  "  - network interfaces keep their names on the virtio NIC (a systemd\n"
  "    .link file by MAC); udev pins to the old hardware are dropped;\n"
  "  - hardware agents (HPE, Dell, IPMI, VMware, VirtualBox, Hyper-V) are\n"
  "    disabled.\n"
  "A server with several disks is given all of them, in the VM's order.\n"
  "Every edited file is kept as FILE.p2v-orig (from the first run; hidden\n"
  "as .FILE.p2v-orig in directories whose every file is read); changes are\n"
  "logged in the guest's /var/log/p2v-inject.log.  A second run finds\n"
  "nothing to do.\n"
  "\n"
  "  -n, --dry-run           print the plan, change nothing (read-only)\n"
  "      --remove-agents     uninstall hardware agents with the guest's\n"
  "                          package tool, not only disable them\n"
  "      --mac MAC           MAC the VM's NIC will have (default: the guest's)\n"
  "  -f, --format FMT        image format (raw, qcow2); default: probe\n"
  "      --accel ACCEL       auto (default, or $P2V_ACCEL), kvm or tcg\n"
  "      --json              print the facts, the plan and the result as JSON\n"
  "  -q, --quiet             print nothing but errors\n"
  "\n"
  "exit: 0 applied or nothing to do, 2 error (nothing changed unless a\n"
  "change itself failed; see the log)\n";

int
cmd_inject (int argc, char **argv)
{
  enum { OPT_JSON = 256, OPT_MAC, OPT_ACCEL, OPT_REMOVE_AGENTS, OPT_HELP };
  static const struct option long_opts[] = {
    { "dry-run", no_argument, NULL, 'n' },
    { "remove-agents", no_argument, NULL, OPT_REMOVE_AGENTS },
    { "mac", required_argument, NULL, OPT_MAC },
    { "format", required_argument, NULL, 'f' },
    { "accel", required_argument, NULL, OPT_ACCEL },
    { "json", no_argument, NULL, OPT_JSON },
    { "quiet", no_argument, NULL, 'q' },
    { "help", no_argument, NULL, OPT_HELP },
    { NULL, 0, NULL, 0 },
  };
  struct p2v_run_opts ro = { .verbose = true };
  int c;

  while ((c = getopt_long (argc, argv, "nf:q", long_opts, NULL)) != -1) {
    switch (c) {
    case 'n': ro.inject.dry_run = true; break;
    case OPT_REMOVE_AGENTS: ro.inject.remove_agents = true; break;
    case OPT_MAC: ro.inject.mac = optarg; break;
    case 'f': ro.inject.format = optarg; break;
    case OPT_ACCEL: ro.inject.accel = optarg; break;
    case OPT_JSON: ro.json = true; break;
    case 'q': ro.inject.quiet = true; break;
    case OPT_HELP: fputs (cmd_inject_help, stdout); return P2V_EXIT_OK;
    default:
      fputs (cmd_inject_help, stderr);
      return P2V_EXIT_ERROR;
    }
  }
  if (optind >= argc) {
    p2v_error ("inject: missing image");
    fputs (cmd_inject_help, stderr);
    return P2V_EXIT_ERROR;
  }
  return inject_run ((const char *const *) argv + optind,
                     (size_t) (argc - optind), RUN_INJECT, &ro) == 0
    ? P2V_EXIT_OK : P2V_EXIT_ERROR;
}
