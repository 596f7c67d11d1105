/* cmd-convert.c: `p2v convert SRC -o OUT`: copy any image into qcow2 or
 * raw through the engine, into a temporary name renamed when complete. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json.h>

#include "common.h"
#include "convert.h"
#include "inject.h"
#include "smoke.h"

const char cmd_convert_help[] =
  "usage: p2v convert SRC -o OUT [options]\n"
  "\n"
  "Convert the disk image SRC (format probed, or -f) into OUT, fix the\n"
  "guest for KVM (as `p2v inject`), then boot it (as `p2v smoke`).\n"
  "Zero and unallocated ranges of SRC are never read twice nor written.\n"
  "OUT is written and injected under a temporary name in its directory\n"
  "and renamed when complete and flushed; SRC is opened read-only.\n"
  "\n"
  "  -o, --output OUT        output file (or block device, with --force)\n"
  "  -f, --format FMT        source format (raw, qcow2); default: probe\n"
  "  -O, --output-format FMT qcow2 (default) or raw\n"
  "  -c, --compress[=LEVEL]  zlib-compress qcow2 clusters (LEVEL 1-9)\n"
  "      --cluster-size SIZE qcow2 cluster size, 512 to 2M (default 64K)\n"
  "  -t, --threads N         worker threads (default: one per CPU)\n"
  "      --force             replace an existing OUT\n"
  "      --no-inject         copy only: leave the guest as it is\n"
  "      --no-smoke          do not boot the result\n"
  "      --mac MAC           the NIC MAC the VM will have (inject, smoke)\n"
  "      --remove-agents     also uninstall hardware agents (as inject)\n"
  "      --accel auto|kvm|tcg  accelerator for libguestfs and qemu\n"
  "      --json              print a JSON summary on stdout\n"
  "  -q, --quiet             no progress meter or summary\n"
  "\n"
  "A data disk (no operating system) needs --no-inject --no-smoke.\n"
  "Exit status: 0 converted (and booted), 1 the smoke test failed (OUT is\n"
  "kept for inspection), 2 error (no OUT left behind).\n";

/* The temporary output, removed by the signal handler on Ctrl-C. */
static char *volatile tmp_path;

static void
remove_tmp_and_exit (int sig)
{
  (void) sig;
  if (tmp_path)
    unlink (tmp_path);
  _exit (P2V_EXIT_INTERRUPTED);
}

static void
catch_signals (void)
{
  struct sigaction sa = { .sa_handler = remove_tmp_and_exit };
  sigemptyset (&sa.sa_mask);
  sigaction (SIGINT, &sa, NULL);
  sigaction (SIGTERM, &sa, NULL);
  sigaction (SIGHUP, &sa, NULL);
  sigaction (SIGPIPE, &sa, NULL);
}

static char *
make_tmp_path (const char *out)
{
  char *d = xstrdup (out), *b = xstrdup (out);
  char *p = xasprintf ("%s/.%s.p2v-partial.%ld", dirname (d), basename (b),
                       (long) getpid ());
  free (d);
  free (b);
  return p;
}

/* Make the rename itself durable. */
static int
fsync_path (const char *path, bool dir)
{
  int fd = open (path, (dir ? O_DIRECTORY : 0) | O_RDONLY | O_CLOEXEC);
  int r = 0;

  if (fd == -1)
    return p2v_error ("cannot open '%s': %m", path);
  if (fsync (fd) == -1 && errno != EINVAL)
    r = p2v_error ("cannot flush '%s': %m", path);
  close (fd);
  return r;
}

static void
print_summary (const struct p2v_image *src, const char *out,
               const char *out_format, const struct p2v_copy_stats *st,
               unsigned threads, bool injected,
               const struct p2v_smoke_result *smoke, bool json)
{
  struct stat sb;
  uint64_t out_size = stat (out, &sb) == 0 ? (uint64_t) sb.st_blocks * 512 : 0;
  uint64_t written = st->bytes_plain + st->bytes_compressed_out;
  double ratio = st->bytes_compressed_out
    ? (double) st->bytes_compressed_in / st->bytes_compressed_out : 1.0;

  if (json) {
    json_object *o = json_object_new_object ();
    json_object_object_add (o, "source", json_object_new_string (src->path));
    json_object_object_add (o, "source_format",
                            json_object_new_string (src->drv->name));
    json_object_object_add (o, "output", json_object_new_string (out));
    json_object_object_add (o, "output_format",
                            json_object_new_string (out_format));
    json_object_object_add (o, "virtual_size", json_object_new_int64 (st->size));
    json_object_object_add (o, "bytes_read", json_object_new_int64 (st->bytes_read));
    json_object_object_add (o, "bytes_zero", json_object_new_int64 (st->bytes_zero));
    json_object_object_add (o, "bytes_written", json_object_new_int64 (written));
    json_object_object_add (o, "bytes_plain", json_object_new_int64 (st->bytes_plain));
    json_object_object_add (o, "bytes_compressed_in",
                            json_object_new_int64 (st->bytes_compressed_in));
    json_object_object_add (o, "bytes_compressed_out",
                            json_object_new_int64 (st->bytes_compressed_out));
    json_object_object_add (o, "compression_ratio", json_object_new_double (ratio));
    json_object_object_add (o, "output_disk_usage", json_object_new_int64 (out_size));
    json_object_object_add (o, "threads", json_object_new_int (threads));
    json_object_object_add (o, "seconds", json_object_new_double (st->seconds));
    json_object_object_add (o, "injected", json_object_new_boolean (injected));
    if (smoke)
      json_object_object_add (o, "smoke", smoke_result_to_json (smoke));
    printf ("%s\n", json_object_to_json_string_ext (o, JSON_C_TO_STRING_PRETTY));
    json_object_put (o);
  }
  else {
    char a[32], b[32], c[32], d[32];
    printf ("converted '%s' (%s, %s) to '%s' (%s) in %.1f s: "
            "%s read, %s zero, %s written",
            src->path, src->drv->name, human_size (st->size, a, sizeof a),
            out, out_format, st->seconds,
            human_size (st->bytes_read, b, sizeof b),
            human_size (st->bytes_zero, c, sizeof c),
            human_size (written, d, sizeof d));
    if (st->bytes_compressed_in)
      printf (", compressed %.2f:1", ratio);
    printf ("\n");
    if (smoke)
      smoke_result_print (smoke, out, stdout);
  }
}

int
cmd_convert (int argc, char **argv)
{
  enum { OPT_FORCE = 256, OPT_JSON, OPT_CLUSTER_SIZE, OPT_HELP,
         OPT_NO_INJECT, OPT_NO_SMOKE, OPT_MAC, OPT_ACCEL, OPT_REMOVE_AGENTS };
  static const struct option long_opts[] = {
    { "output", required_argument, NULL, 'o' },
    { "format", required_argument, NULL, 'f' },
    { "output-format", required_argument, NULL, 'O' },
    { "compress", optional_argument, NULL, 'c' },
    { "cluster-size", required_argument, NULL, OPT_CLUSTER_SIZE },
    { "threads", required_argument, NULL, 't' },
    { "force", no_argument, NULL, OPT_FORCE },
    { "json", no_argument, NULL, OPT_JSON },
    { "no-inject", no_argument, NULL, OPT_NO_INJECT },
    { "no-smoke", no_argument, NULL, OPT_NO_SMOKE },
    { "mac", required_argument, NULL, OPT_MAC },
    { "remove-agents", no_argument, NULL, OPT_REMOVE_AGENTS },
    { "accel", required_argument, NULL, OPT_ACCEL },
    { "quiet", no_argument, NULL, 'q' },
    { "help", no_argument, NULL, OPT_HELP },
    { NULL, 0, NULL, 0 },
  };
  const char *out = NULL, *in_format = NULL, *out_format = "qcow2";
  struct p2v_copy_opts copts = { .compress_level = P2V_DEFAULT_COMPRESS_LEVEL };
  struct p2v_create_opts create_opts = { 0 };
  struct p2v_copy_stats stats;
  bool force = false, json = false, quiet = false, in_place = false;
  bool do_inject = true, do_smoke = true, smoke_ran = false;
  bool remove_agents = false;
  const char *mac = NULL, *accel = NULL;
  struct p2v_smoke_result smoke = { 0 };
  struct p2v_image *src = NULL, *dst = NULL;
  struct stat src_st, out_st;
  char *tmp = NULL;
  int c, r = P2V_EXIT_ERROR;

  while ((c = getopt_long (argc, argv, "o:f:O:c::t:q", long_opts, NULL)) != -1) {
    switch (c) {
    case 'o': out = optarg; break;
    case 'f': in_format = optarg; break;
    case 'O': out_format = optarg; break;
    case 'c': {
      char *end;
      copts.compress = true;
      if (optarg) {
        long l = strtol (optarg, &end, 10);
        if (*end || l < 1 || l > 9) {
          p2v_error ("compression level '%s' is not a number from 1 to 9", optarg);
          return P2V_EXIT_ERROR;
        }
        copts.compress_level = l;
      }
      break;
    }
    case OPT_CLUSTER_SIZE: {
      uint64_t v;
      if (parse_size (optarg, &v) == -1 || v > UINT32_MAX) {
        p2v_error ("cluster size '%s' is not a size", optarg);
        return P2V_EXIT_ERROR;
      }
      create_opts.cluster_size = v;
      break;
    }
    case 't': {
      char *end;
      long l = strtol (optarg, &end, 10);
      if (*end || l < 1 || l > 256) {
        p2v_error ("thread count '%s' is not a number from 1 to 256", optarg);
        return P2V_EXIT_ERROR;
      }
      copts.threads = l;
      break;
    }
    case OPT_FORCE: force = true; break;
    case OPT_JSON: json = true; break;
    case OPT_NO_INJECT: do_inject = false; break;
    case OPT_NO_SMOKE: do_smoke = false; break;
    case OPT_MAC: mac = optarg; break;
    case OPT_REMOVE_AGENTS: remove_agents = true; break;
    case OPT_ACCEL:
      if (strcmp (optarg, "auto") && strcmp (optarg, "kvm") && strcmp (optarg, "tcg")) {
        p2v_error ("accelerator '%s' is not auto, kvm or tcg", optarg);
        return P2V_EXIT_ERROR;
      }
      accel = optarg;
      break;
    case 'q': quiet = true; break;
    case OPT_HELP: fputs (cmd_convert_help, stdout); return P2V_EXIT_OK;
    default:
      fputs (cmd_convert_help, stderr);
      return P2V_EXIT_ERROR;
    }
  }
  if (optind != argc - 1 || !out) {
    p2v_error (optind >= argc ? "convert: missing source image"
               : !out ? "convert: missing output (-o OUT)"
               : "convert: too many arguments");
    fputs (cmd_convert_help, stderr);
    return P2V_EXIT_ERROR;
  }
  if (!format_by_name (out_format)) {
    p2v_error ("unknown output format '%s'", out_format);
    return P2V_EXIT_ERROR;
  }
  copts.progress = !quiet && !json;

  src = image_open (argv[optind], in_format, P2V_OPEN_READONLY);
  if (!src)
    goto out;
  if (copts.compress && !format_by_name (out_format)->compress) {
    p2v_error ("format '%s' cannot store compressed data", out_format);
    goto out;
  }
  if (stat (argv[optind], &src_st) == -1) {
    p2v_error ("cannot stat '%s': %m", argv[optind]);
    goto out;
  }

  if (stat (out, &out_st) == 0) {
    if (out_st.st_dev == src_st.st_dev && out_st.st_ino == src_st.st_ino) {
      p2v_error ("output '%s' is the source image", out);
      goto out;
    }
    if (!force) {
      p2v_error ("output '%s' already exists (use --force to replace it)", out);
      goto out;
    }
    if (S_ISBLK (out_st.st_mode)) {
      if (strcmp (out_format, "raw") != 0) {
        p2v_error ("output '%s' is a block device: use -O raw", out);
        goto out;
      }
      in_place = true;
    }
  }
  else if (errno != ENOENT) {
    p2v_error ("cannot stat '%s': %m", out);
    goto out;
  }

  tmp = in_place ? xstrdup (out) : make_tmp_path (out);
  if (!in_place) {
    tmp_path = tmp;
    catch_signals ();
  }
  dst = image_create (tmp, out_format, src->size, &create_opts);
  if (!dst)
    goto fail;
  if (copy_image (src, dst, &copts, &stats) == -1)
    goto fail;
  if (image_close (dst) == -1) {
    dst = NULL;
    goto fail;
  }
  dst = NULL;
  if (do_inject) {
    struct p2v_inject_opts iopts = {
      .mac = mac, .format = out_format, .accel = accel, .quiet = quiet || json,
      .remove_agents = remove_agents,
    };
    if (inject_image (tmp, &iopts) == -1)
      goto fail;
  }
  if (fsync_path (tmp, false) == -1)
    goto fail;
  if (!in_place) {
    char *d = xstrdup (out);
    int e = 0;
    if (rename (tmp, out) == -1)
      e = p2v_error ("cannot rename '%s' to '%s': %m", tmp, out);
    else
      e = fsync_path (dirname (d), true);
    free (d);
    if (e == -1)
      goto fail;
    tmp_path = NULL;
  }

  r = P2V_EXIT_OK;
  if (do_smoke) {
    struct p2v_smoke_opts sopts = {
      .format = out_format, .mac = mac, .progress = !quiet && !json,
      .accel = !accel || !strcmp (accel, "auto") ? P2V_SMOKE_ACCEL_AUTO
        : !strcmp (accel, "kvm") ? P2V_SMOKE_ACCEL_KVM : P2V_SMOKE_ACCEL_TCG,
    };
    if (smoke_image (out, &sopts, &smoke) == -1)
      r = P2V_EXIT_ERROR;
    else {
      smoke_ran = true;
      r = smoke.verdict == P2V_SMOKE_PASS ? P2V_EXIT_OK : P2V_EXIT_NEGATIVE;
    }
  }
  if (!quiet || json)
    print_summary (src, out, out_format, &stats,
                   copts.threads ? copts.threads
                   : (unsigned) sysconf (_SC_NPROCESSORS_ONLN),
                   do_inject, smoke_ran ? &smoke : NULL, json);
  smoke_result_free (&smoke);
  goto out;

 fail:
  image_close (dst);
  dst = NULL;
  if (!in_place && tmp) {
    unlink (tmp);
    tmp_path = NULL;
  }
 out:
  image_close (dst);
  image_close (src);
  free (tmp);
  return r;
}
