/* cmd-inspect.c: `p2v inspect IMAGE...`: what the guest is and what inject
 * would change in it, without changing anything. */
#include <getopt.h>
#include <stdio.h>

#include "common.h"
#include "inject-int.h"

const char cmd_inspect_help[] =
  "usage: p2v inspect IMAGE [IMAGE2...] [options]\n"
  "\n"
  "Inspect the Linux guest in IMAGE (read-only, in a libguestfs appliance)\n"
  "and print its OS, firmware, boot loader, kernels and initramfs tool,\n"
  "file systems and how fstab names them, network configuration, hardware\n"
  "agents, and the plan: every change 'p2v inject' would make (file,\n"
  "before, after, why), then notes on settings it leaves alone because it\n"
  "cannot read them (an lvm.conf it cannot parse, ...).\n"
  "A server with several disks is given all of them, in the VM's order\n"
  "(as 'p2v capture' numbers them): file systems, LVM volume groups and\n"
  "md arrays may span them.\n"
  "\n"
  "  -f, --format FMT        image format (raw, qcow2); default: probe\n"
  "      --mac MAC           MAC the VM's NIC will have (default: the guest's)\n"
  "      --remove-agents     plan to uninstall hardware agents, not only\n"
  "                          disable them\n"
  "      --accel ACCEL       auto (default, or $P2V_ACCEL), kvm or tcg\n"
  "      --json              print a JSON object on stdout\n"
  "\n"
  "exit: 0 inspected, 2 error (no OS, not Linux, no kernel, ...)\n";

int
cmd_inspect (int argc, char **argv)
{
  enum { OPT_JSON = 256, OPT_MAC, OPT_ACCEL, OPT_REMOVE_AGENTS, OPT_HELP };
  static const struct option long_opts[] = {
    { "format", required_argument, NULL, 'f' },
    { "mac", required_argument, NULL, OPT_MAC },
    { "remove-agents", no_argument, NULL, OPT_REMOVE_AGENTS },
    { "accel", required_argument, NULL, OPT_ACCEL },
    { "json", no_argument, NULL, OPT_JSON },
    { "help", no_argument, NULL, OPT_HELP },
    { NULL, 0, NULL, 0 },
  };
  struct p2v_run_opts ro = { .verbose = true };
  int c;

  while ((c = getopt_long (argc, argv, "f:", long_opts, NULL)) != -1) {
    switch (c) {
    case 'f': ro.inject.format = optarg; break;
    case OPT_MAC: ro.inject.mac = optarg; break;
    case OPT_REMOVE_AGENTS: ro.inject.remove_agents = true; break;
    case OPT_ACCEL: ro.inject.accel = optarg; break;
    case OPT_JSON: ro.json = true; break;
    case OPT_HELP: fputs (cmd_inspect_help, stdout); return P2V_EXIT_OK;
    default:
      fputs (cmd_inspect_help, stderr);
      return P2V_EXIT_ERROR;
    }
  }
  if (optind >= argc) {
    p2v_error ("inspect: missing image");
    fputs (cmd_inspect_help, stderr);
    return P2V_EXIT_ERROR;
  }
  return inject_run ((const char *const *) argv + optind,
                     (size_t) (argc - optind), RUN_INSPECT, &ro) == 0
    ? P2V_EXIT_OK : P2V_EXIT_ERROR;
}
