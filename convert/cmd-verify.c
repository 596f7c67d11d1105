/* cmd-verify.c: `p2v verify A B`: do two images of any supported
 * formats show the guest the same bytes?  Exit 0 same, 1 different,
 * 2 error, like qemu-img compare.  `p2v verify BUNDLE` recomputes each
 * disk's content digest and compares it with the bundle's manifest. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <json.h>

#include "bundle.h"
#include "common.h"
#include "convert.h"
#include "digest.h"

const char cmd_verify_help[] =
  "usage: p2v verify A B [options]\n"
  "       p2v verify BUNDLE [options]\n"
  "\n"
  "Compare the guest-visible content of images A and B (any supported\n"
  "formats).  Where sizes differ, the larger image's tail must read as\n"
  "zeros.  Exit 0 if identical, 1 if they differ, 2 on error.\n"
  "\n"
  "With one argument, a capture bundle (directory or tar): recompute the\n"
  "content digest of every disk (reading only its data) and compare it\n"
  "with the manifest.  Exit 0 if all match, 1 if one differs (named),\n"
  "2 on error (bad bundle, a disk without a digest).\n"
  "\n"
  "  -f FMT     format of A (default: probe)\n"
  "  -F FMT     format of B (default: probe)\n"
  "  --json     print the verdict as JSON\n"
  "  -q         print nothing, only set the exit code\n";

/* Check every disk of a bundle against its manifest digest. */
static int
verify_bundle (const char *path, bool json, bool quiet)
{
  struct p2v_bundle *b = bundle_open (path);
  json_object *o = NULL, *disks = NULL;
  struct p2v_image **imgs = NULL;
  size_t mismatches = 0;
  int r = P2V_EXIT_ERROR;

  if (!b)
    return P2V_EXIT_ERROR;
  for (size_t i = 0; i < b->n_disks; i++) {
    const struct p2v_bundle_disk *d = &b->disks[i];
    if (!d->digest) {
      p2v_error ("disk '%s' of bundle '%s' has no digest in the manifest",
                 d->file, path);
      goto out;
    }
    if (strcmp (d->digest_algorithm, P2V_DIGEST_ALGORITHM) != 0) {
      p2v_error ("disk '%s' of bundle '%s' has a digest of unknown algorithm "
                 "'%s' (this p2v knows %s)", d->file, path,
                 d->digest_algorithm, P2V_DIGEST_ALGORITHM);
      goto out;
    }
  }

  /* Every disk opens (and has the size the manifest says) before any
   * digest is computed: a broken bundle fails fast and prints nothing. */
  imgs = xcalloc (b->n_disks, sizeof *imgs);
  for (size_t i = 0; i < b->n_disks; i++)
    if (!(imgs[i] = bundle_open_disk (b, i)))
      goto out;

  if (json) {
    o = json_object_new_object ();
    disks = json_object_new_array ();
    json_object_object_add (o, "bundle", json_object_new_string (path));
    json_object_object_add (o, "disks", disks);
  }
  for (size_t i = 0; i < b->n_disks; i++) {
    const struct p2v_bundle_disk *d = &b->disks[i];
    struct p2v_image *img = imgs[i];
    char hex[P2V_DIGEST_HEX_LEN + 1];
    uint64_t nread = 0;
    double t0 = now_seconds ();
    bool match;

    if (image_content_digest (img, hex, &nread) == -1)
      goto out;
    match = strcmp (hex, d->digest) == 0;
    if (!match)
      mismatches++;
    if (json) {
      json_object *x = json_object_new_object ();
      json_object_object_add (x, "file", json_object_new_string (d->file));
      if (d->name)
        json_object_object_add (x, "name", json_object_new_string (d->name));
      json_object_object_add (x, "size", json_object_new_int64 (d->size));
      json_object_object_add (x, "algorithm",
                              json_object_new_string (d->digest_algorithm));
      json_object_object_add (x, "expected", json_object_new_string (d->digest));
      json_object_object_add (x, "actual", json_object_new_string (hex));
      json_object_object_add (x, "match", json_object_new_boolean (match));
      json_object_object_add (x, "bytes_read", json_object_new_int64 (nread));
      json_object_object_add (x, "seconds",
                              json_object_new_double (now_seconds () - t0));
      json_object_array_add (disks, x);
    }
    else if (!quiet) {
      char sz[32];
      printf ("%s%s%s%s: %s (%s read)\n", d->file, d->name ? " (" : "",
              d->name ? d->name : "", d->name ? ")" : "",
              match ? "digest matches" : "DIGEST MISMATCH",
              human_size (nread, sz, sizeof sz));
    }
    /* The JSON says it (and -q says nothing), as for two images. */
    if (!match && !json && !quiet)
      p2v_error ("disk '%s' of bundle '%s' does not match its manifest digest",
                 d->file, path);
  }
  r = mismatches ? P2V_EXIT_NEGATIVE : P2V_EXIT_OK;
  if (json) {
    json_object_object_add (o, "ok", json_object_new_boolean (mismatches == 0));
    printf ("%s\n", json_object_to_json_string_ext (o, JSON_C_TO_STRING_PRETTY));
  }
  else if (!quiet && !mismatches)
    printf (b->n_disks == 1 ? "bundle '%s': its disk matches the manifest\n"
            : "bundle '%s': all %zu disks match the manifest\n", path,
            b->n_disks);

 out:
  json_object_put (o);
  for (size_t i = 0; imgs && i < b->n_disks; i++)
    image_close (imgs[i]);
  free (imgs);
  bundle_free (b);
  return r;
}

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
  if (argc - optind == 1) {
    if (fa || fb) {
      p2v_error ("verify: -f and -F take two images, not a bundle");
      return P2V_EXIT_ERROR;
    }
    if (!bundle_detect (argv[optind])) {
      p2v_error ("verify: '%s' is not a bundle (a directory or a tar); "
                 "to compare images give two", argv[optind]);
      return P2V_EXIT_ERROR;
    }
    return verify_bundle (argv[optind], json, quiet);
  }
  if (argc - optind != 2) {
    p2v_error ("verify: expected two images, or one bundle");
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
