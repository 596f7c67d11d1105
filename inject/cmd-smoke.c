/* cmd-smoke.c: `p2v smoke IMAGE...`: boot a converted image in qemu through
 * its own boot loader, on a throwaway overlay, and report what happened. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json.h>

#include "common.h"
#include "smoke.h"

const char cmd_smoke_help[] =
  "usage: p2v smoke IMAGE [IMAGE2...] [options]\n"
  "\n"
  "Boot IMAGE in qemu through its own boot loader (q35, virtio disk and NIC,\n"
  "user networking that reaches nothing outside qemu) and tell whether the\n"
  "guest reaches its default target with / on the virtio disk.  The guest\n"
  "runs on a throwaway qcow2 overlay: IMAGE is never written.  To watch the\n"
  "boot, the overlay (only) gets the serial console on the kernel command\n"
  "line and a one-shot service that reports the boot from inside the guest.\n"
  "A server with several disks is given all of them, in the VM's order: each\n"
  "is a virtio disk (vda, vdb...) and the first one is booted.\n"
  "\n"
  "  -f, --format FMT        IMAGE format (raw, qcow2, ...); default: probe\n"
  "      --firmware FW       auto (default: GPT with an EFI System Partition\n"
  "                          and no BIOS boot partition is uefi), bios, uefi\n"
  "      --accel ACCEL       auto (default: KVM, else TCG), kvm, tcg;\n"
  "                          the environment P2V_ACCEL=tcg forces TCG\n"
  "      --timeout SEC       give up on a boot after SEC seconds (default 600)\n"
  "      --mac MAC           the NIC's MAC address (default 52:54:00:12:34:56)\n"
  "      --uefi-vars FILE    OVMF NVRAM to start from (default: blank)\n"
  "  -m, --memory MIB        guest memory (default 1024)\n"
  "      --cpus N            guest vCPUs, 1 to 64 (default 2, 1 on one core)\n"
  "      --keep-log FILE     save the serial console log to FILE\n"
  "      --json              print the report as JSON on stdout\n"
  "  -q, --quiet             no progress line\n"
  "\n"
  "A failed boot names the stage it stopped at: no boot loader, kernel\n"
  "panic, root not found, emergency mode, default target not reached, root\n"
  "not on virtio, guest stopped, timeout.\n"
  "\n"
  "exit codes: 0 the guest passed, 1 it failed, 2 the test could not run\n"
  "(missing qemu, unreadable image, ...), 130 interrupted.\n";

static int
parse_seconds (const char *s, unsigned *out)
{
  char *end;
  long l = strtol (s, &end, 10);

  if (*s == '\0' || *end || l < 1 || l > 86400)
    return -1;
  *out = l;
  return 0;
}

static void
print_error_json (const char *image)
{
  json_object *o = json_object_new_object ();

  json_object_object_add (o, "image", json_object_new_string (image));
  json_object_object_add (o, "verdict", json_object_new_string ("error"));
  json_object_object_add (o, "error", json_object_new_string (p2v_last_error ()));
  printf ("%s\n", json_object_to_json_string_ext (o, JSON_C_TO_STRING_PRETTY |
                                                  JSON_C_TO_STRING_NOSLASHESCAPE));
  json_object_put (o);
}

int
cmd_smoke (int argc, char **argv)
{
  enum { OPT_FIRMWARE = 256, OPT_ACCEL, OPT_TIMEOUT, OPT_MAC, OPT_JSON,
         OPT_KEEP_LOG, OPT_UEFI_VARS, OPT_HELP, OPT_CPUS };
  static const struct option long_opts[] = {
    { "format", required_argument, NULL, 'f' },
    { "firmware", required_argument, NULL, OPT_FIRMWARE },
    { "accel", required_argument, NULL, OPT_ACCEL },
    { "timeout", required_argument, NULL, OPT_TIMEOUT },
    { "mac", required_argument, NULL, OPT_MAC },
    { "uefi-vars", required_argument, NULL, OPT_UEFI_VARS },
    { "memory", required_argument, NULL, 'm' },
    { "cpus", required_argument, NULL, OPT_CPUS },
    { "keep-log", required_argument, NULL, OPT_KEEP_LOG },
    { "json", no_argument, NULL, OPT_JSON },
    { "quiet", no_argument, NULL, 'q' },
    { "help", no_argument, NULL, OPT_HELP },
    { NULL, 0, NULL, 0 },
  };
  struct p2v_smoke_opts opts = { 0 };
  struct p2v_smoke_result res = { 0 };
  bool json = false, quiet = false;
  const char *image;
  int c, r;

  optind = 1;
  while ((c = getopt_long (argc, argv, "f:m:q", long_opts, NULL)) != -1) {
    switch (c) {
    case 'f': opts.format = optarg; break;
    case OPT_FIRMWARE:
      if (strcmp (optarg, "auto") == 0) opts.firmware = P2V_SMOKE_FIRMWARE_AUTO;
      else if (strcmp (optarg, "bios") == 0) opts.firmware = P2V_SMOKE_FIRMWARE_BIOS;
      else if (strcmp (optarg, "uefi") == 0) opts.firmware = P2V_SMOKE_FIRMWARE_UEFI;
      else {
        p2v_error ("firmware '%s' is not auto, bios or uefi", optarg);
        return P2V_EXIT_ERROR;
      }
      break;
    case OPT_ACCEL:
      if (strcmp (optarg, "auto") == 0) opts.accel = P2V_SMOKE_ACCEL_AUTO;
      else if (strcmp (optarg, "kvm") == 0) opts.accel = P2V_SMOKE_ACCEL_KVM;
      else if (strcmp (optarg, "tcg") == 0) opts.accel = P2V_SMOKE_ACCEL_TCG;
      else {
        p2v_error ("accelerator '%s' is not auto, kvm or tcg", optarg);
        return P2V_EXIT_ERROR;
      }
      break;
    case OPT_TIMEOUT:
      if (parse_seconds (optarg, &opts.timeout) == -1) {
        p2v_error ("timeout '%s' is not a number of seconds from 1 to 86400", optarg);
        return P2V_EXIT_ERROR;
      }
      break;
    case 'm': {
      unsigned mb;
      if (parse_seconds (optarg, &mb) == -1 || mb < 128 || mb > 65536) {
        p2v_error ("memory '%s' is not a number of MiB from 128 to 65536", optarg);
        return P2V_EXIT_ERROR;
      }
      opts.memory_mb = mb;
      break;
    }
    case OPT_CPUS:
      if (parse_seconds (optarg, &opts.cpus) == -1 || opts.cpus > 64) {
        p2v_error ("cpus '%s' is not a number from 1 to 64", optarg);
        return P2V_EXIT_ERROR;
      }
      break;
    case OPT_MAC: opts.mac = optarg; break;
    case OPT_UEFI_VARS: opts.uefi_vars = optarg; break;
    case OPT_KEEP_LOG: opts.keep_log = optarg; break;
    case OPT_JSON: json = true; break;
    case 'q': quiet = true; break;
    case OPT_HELP: fputs (cmd_smoke_help, stdout); return P2V_EXIT_OK;
    default:
      fputs (cmd_smoke_help, stderr);
      return P2V_EXIT_ERROR;
    }
  }
  if (optind >= argc) {
    p2v_error ("smoke: missing image");
    fputs (cmd_smoke_help, stderr);
    return P2V_EXIT_ERROR;
  }
  image = argv[optind];
  opts.progress = !quiet && !json && isatty (STDERR_FILENO);

  if (smoke_image ((const char *const *) argv + optind,
                   (size_t) (argc - optind), &opts, &res) == -1) {
    if (json)
      print_error_json (image);
    smoke_result_free (&res);
    return P2V_EXIT_ERROR;
  }
  if (json) {
    json_object *o = smoke_result_to_json (&res), *full = json_object_new_object ();
    /* The image first, then the report. */
    json_object_object_add (full, "image", json_object_new_string (image));
    json_object_object_foreach (o, key, val)
      json_object_object_add (full, key, json_object_get (val));
    printf ("%s\n", json_object_to_json_string_ext (full, JSON_C_TO_STRING_PRETTY |
                                                    JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put (full);
    json_object_put (o);
  }
  else
    smoke_result_print (&res, image, stdout);
  r = res.verdict == P2V_SMOKE_PASS ? P2V_EXIT_OK : P2V_EXIT_NEGATIVE;
  smoke_result_free (&res);
  return r;
}
