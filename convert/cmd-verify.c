/* cmd-verify.c: `p2v verify A B`: do two images of any supported
 * formats show the guest the same bytes?  Exit 0 same, 1 different,
 * 2 error, like qemu-img compare. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>

#include <json.h>

#include "common.h"
#include "convert.h"

const char cmd_verify_help[] =
  "usage: p2v verify A B [options]\n"
  "\n"
  "Compare the guest-visible content of images A and B (any supported\n"
  "formats).  Where sizes differ, the larger image's tail must read as\n"
  "zeros.  Exit 0 if identical, 1 if they differ, 2 on error.\n"
  "\n"
  "  -f FMT     format of A (default: probe)\n"
  "  -F FMT     format of B (default: probe)\n"
  "  --json     print the verdict as JSON\n"
  "  -q         print nothing, only set the exit code\n";

int
cmd_verify (int argc, char **argv)
{
  enum { OPT_JSON = 256, OPT_HELP };
  static const struct option long_opts[] = {
    { "json", no_argument, NULL, OPT_JSON },
    { "quiet", no_argument, NULL, 'q' },
    { "help", no_argument, NULL, OPT_HELP },
    { NULL, 0, NULL, 0 },
  };
  const char *fa = NULL, *fb = NULL;
  bool json = false, quiet = false;
  struct p2v_image *a = NULL, *b = NULL;
  uint64_t diff = 0;
  int c, r = P2V_EXIT_ERROR, cmp;

  while ((c = getopt_long (argc, argv, "f:F:q", long_opts, NULL)) != -1) {
    switch (c) {
    case 'f': fa = optarg; break;
    case 'F': fb = optarg; break;
    case 'q': quiet = true; break;
    case OPT_JSON: json = true; break;
    case OPT_HELP: fputs (cmd_verify_help, stdout); return P2V_EXIT_OK;
    default: fputs (cmd_verify_help, stderr); return P2V_EXIT_ERROR;
    }
  }
  if (argc - optind != 2) {
    p2v_error ("verify: expected two images");
    fputs (cmd_verify_help, stderr);
    return P2V_EXIT_ERROR;
  }

  a = image_open (argv[optind], fa, P2V_OPEN_READONLY);
  if (!a)
    goto out;
  b = image_open (argv[optind + 1], fb, P2V_OPEN_READONLY);
  if (!b)
    goto out;

  cmp = compare_images (a, b, &diff);
  if (cmp == -1)
    goto out;
  r = cmp == 0 ? P2V_EXIT_OK : P2V_EXIT_NEGATIVE;

  if (json) {
    json_object *o = json_object_new_object ();
    json_object_object_add (o, "a", json_object_new_string (a->path));
    json_object_object_add (o, "b", json_object_new_string (b->path));
    json_object_object_add (o, "identical", json_object_new_boolean (cmp == 0));
    if (cmp)
      json_object_object_add (o, "first_difference", json_object_new_int64 (diff));
    printf ("%s\n", json_object_to_json_string_ext (o, JSON_C_TO_STRING_PRETTY));
    json_object_put (o);
  }
  else if (!quiet) {
    if (cmp == 0)
      printf ("images are identical\n");
    else
      printf ("content differs at offset %" PRIu64 "\n", diff);
  }

 out:
  image_close (a);
  image_close (b);
  return r;
}
