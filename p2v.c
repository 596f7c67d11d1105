/* p2v.c: the entry point: a table of subcommands, one cmd_* each, as
 * git does with builtin/ files.  Only cmd_* functions decide exit codes. */
#include <stdio.h>
#include <string.h>

#include "capture.h"
#include "common.h"
#include "convert.h"
#include "inject.h"
#include "smoke.h"

extern const char cmd_convert_help[], cmd_verify_help[];

struct p2v_command {
  const char *name;
  int (*fn) (int argc, char **argv);
  const char *summary;
  const char *help;
};

static const struct p2v_command commands[] = {
  { "convert", cmd_convert, "convert a disk image to qcow2 or raw",
    cmd_convert_help },
  { "verify", cmd_verify, "compare the guest-visible content of two images",
    cmd_verify_help },
  { "inspect", cmd_inspect, "report a guest's OS, boot, disks, network and the inject plan",
    cmd_inspect_help },
  { "inject", cmd_inject, "fix a guest so it boots and networks as a KVM guest",
    cmd_inject_help },
  { "smoke", cmd_smoke, "boot an image in qemu and report whether it came up",
    cmd_smoke_help },
  { "capture", cmd_capture, "image this machine's disks (used blocks) into a bundle",
    cmd_capture_help },
  { "receive", cmd_receive, "write a bundle tar stream from stdin as a directory",
    cmd_receive_help },
};

static void
usage (FILE *f)
{
  fprintf (f,
           "usage: p2v [--version] [--help] COMMAND [ARGS]\n"
           "\n"
           "p2v moves physical Linux servers into KVM.\n"
           "\n"
           "commands:\n");
  for (size_t i = 0; i < ARRAY_SIZE (commands); i++)
    fprintf (f, "  %-10s %s\n", commands[i].name, commands[i].summary);
  fprintf (f,
           "  %-10s %s\n"
           "\n"
           "image formats:", "help", "show help for a command");
  for (size_t i = 0; p2v_formats[i]; i++)
    fprintf (f, " %s", p2v_formats[i]->name);
  fprintf (f,
           "\n\n"
           "exit codes:\n"
           "  0    success\n"
           "  1    negative verdict (verify: images differ; smoke or convert:\n"
           "       the guest did not boot)\n"
           "  2    error: bad arguments, bad input, I/O failure\n"
           "  130  interrupted (partial output removed)\n"
           "\n"
           "'p2v help COMMAND' shows a command's options.\n");
}

static const struct p2v_command *
find_command (const char *name)
{
  for (size_t i = 0; i < ARRAY_SIZE (commands); i++)
    if (strcmp (commands[i].name, name) == 0)
      return &commands[i];
  return NULL;
}

int
main (int argc, char **argv)
{
  const struct p2v_command *cmd;

  if (argc < 2) {
    usage (stderr);
    return P2V_EXIT_ERROR;
  }
  if (strcmp (argv[1], "--help") == 0 || strcmp (argv[1], "-h") == 0) {
    usage (stdout);
    return P2V_EXIT_OK;
  }
  if (strcmp (argv[1], "--version") == 0 || strcmp (argv[1], "version") == 0) {
    printf ("p2v %s\n", P2V_VERSION);
    return P2V_EXIT_OK;
  }
  if (strcmp (argv[1], "help") == 0) {
    if (argc < 3) {
      usage (stdout);
      return P2V_EXIT_OK;
    }
    cmd = find_command (argv[2]);
    if (!cmd) {
      p2v_error ("unknown command '%s'", argv[2]);
      return P2V_EXIT_ERROR;
    }
    fputs (cmd->help, stdout);
    return P2V_EXIT_OK;
  }

  cmd = find_command (argv[1]);
  if (!cmd) {
    p2v_error ("unknown command '%s' (see 'p2v --help')", argv[1]);
    return P2V_EXIT_ERROR;
  }
  return cmd->fn (argc - 1, argv + 1);
}
