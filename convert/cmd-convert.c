/* cmd-convert.c: `p2v convert SRC -o OUT`: copy any image into qcow2 or
 * raw through the engine, into a temporary name renamed when complete.
 * SRC may be a capture bundle: every disk is converted, and a libvirt
 * domain (OUT with .xml for its extension) is written beside them. */
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

#include "bundle.h"
#include "common.h"
#include "convert.h"
#include "inject.h"
#include "smoke.h"

const char cmd_convert_help[] =
  "usage: p2v convert SRC -o OUT [options]\n"
  "\n"
  "Convert the disk image SRC (format probed, or -f) into OUT, fix the\n"
  "guest for KVM (as `p2v inject`), then boot it (as `p2v smoke`).\n"
  "SRC may be a capture bundle (a directory or a tar, read in place):\n"
  "disk 0 goes to OUT, disk N to OUT with -diskN before its extension\n"
  "(new.qcow2, new-disk1.qcow2), and a libvirt domain for them all to\n"
  "OUT with .xml as its extension (new.xml); inject and smoke work on\n"
  "all the disks, in order (disk 0 is booted), and use the first captured\n"
  "NIC's MAC (unless --mac).\n"
  "Zero and unallocated ranges of SRC are never read twice nor written.\n"
  "OUT is written and injected under a temporary name in its directory,\n"
  "flushed to disk, and renamed when complete; SRC is opened read-only.\n"
  "\n"
  "  -o, --output OUT        output file (or block device, with --force)\n"
  "  -f, --format FMT        source format (raw, qcow2); default: probe\n"
  "  -O, --output-format FMT qcow2 (default) or raw\n"
  "  -c, --compress[=LEVEL]  zlib-compress qcow2 clusters (LEVEL 1-9)\n"
  "      --cluster-size SIZE qcow2 cluster size, 512 to 2M (default 64K)\n"
  "  -t, --threads N         worker threads (default: one per CPU)\n"
  "      --force             replace an existing OUT\n"
  "      --no-sync           do not flush OUT to disk (faster, not durable)\n"
  "      --no-inject         copy only: leave the guest as it is\n"
  "      --no-smoke          do not boot the result\n"
  "      --mac MAC           the NIC MAC the VM will have (inject, smoke)\n"
  "      --remove-agents     also uninstall hardware agents (as inject)\n"
  "      --accel auto|kvm|tcg  accelerator for libguestfs and qemu\n"
  "      --json              print a JSON summary on stdout\n"
  "  -q, --quiet             no progress meter or summary\n"
  "\n"
  "A data disk (no operating system) needs --no-inject --no-smoke.\n"
  "--no-sync still renames OUT only when complete, but leaves its data in\n"
  "the page cache when p2v exits (as qemu-img convert does by default): a\n"
  "power cut or crash of the host can then leave an OUT that is renamed\n"
  "but incomplete.  The default flushes OUT before the rename.\n"
  "Exit status: 0 converted (and booted), 1 the smoke test failed (OUT is\n"
  "kept for inspection), 2 error (no OUT left behind).\n";

/* The temporary output, removed by the signal handler on Ctrl-C; a
 * bundle has one per disk, plus its domain XML. */
static char *volatile tmp_path;
static char *volatile tmp_paths[P2V_BUNDLE_MAX_DISKS + 1];

static void
remove_tmp_and_exit (int sig)
{
  (void) sig;
  if (tmp_path)
    unlink (tmp_path);
  for (size_t i = 0; i < ARRAY_SIZE (tmp_paths); i++)
    if (tmp_paths[i])
      unlink (tmp_paths[i]);
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

static json_object *
stats_to_json (const struct p2v_image *src, const char *out,
               const char *out_format, const struct p2v_copy_stats *st,
               unsigned threads)
{
  struct stat sb;
  uint64_t out_size = stat (out, &sb) == 0 ? (uint64_t) sb.st_blocks * 512 : 0;
  uint64_t written = st->bytes_plain + st->bytes_compressed_out;
  double ratio = st->bytes_compressed_out
    ? (double) st->bytes_compressed_in / st->bytes_compressed_out : 1.0;
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
  return o;
}

static void
print_stats_line (const struct p2v_image *src, const char *out,
                  const char *out_format, const struct p2v_copy_stats *st)
{
  uint64_t written = st->bytes_plain + st->bytes_compressed_out;
  double ratio = st->bytes_compressed_out
    ? (double) st->bytes_compressed_in / st->bytes_compressed_out : 1.0;
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
}

static void
print_summary (const struct p2v_image *src, const char *out,
               const char *out_format, const struct p2v_copy_stats *st,
               unsigned threads, bool injected,
               const struct p2v_smoke_result *smoke, bool json)
{
  if (json) {
    json_object *o = stats_to_json (src, out, out_format, st, threads);
    json_object_object_add (o, "injected", json_object_new_boolean (injected));
    if (smoke)
      json_object_object_add (o, "smoke", smoke_result_to_json (smoke));
    printf ("%s\n", json_object_to_json_string_ext (o, JSON_C_TO_STRING_PRETTY));
    json_object_put (o);
  }
  else {
    print_stats_line (src, out, out_format, st);
    if (smoke)
      smoke_result_print (smoke, out, stdout);
  }
}

/* What cmd_convert parsed, for the bundle path. */
struct convert_job {
  const char *out, *out_format, *mac, *accel;
  struct p2v_copy_opts copts;
  struct p2v_create_opts create_opts;
  bool force, json, quiet, do_inject, do_smoke;
};

static enum p2v_smoke_accel
smoke_accel (const char *accel)
{
  return !accel || !strcmp (accel, "auto") ? P2V_SMOKE_ACCEL_AUTO
    : !strcmp (accel, "kvm") ? P2V_SMOKE_ACCEL_KVM : P2V_SMOKE_ACCEL_TCG;
}

/* OUT with insert before its extension, and the extension replaced by
 * ext when ext is not NULL: ("new.qcow2", "-disk1", NULL) gives
 * "new-disk1.qcow2", ("new.qcow2", "", ".xml") "new.xml".  A leading
 * dot (".img") is not an extension. */
static char *
output_variant (const char *out, const char *insert, const char *ext)
{
  const char *base = strrchr (out, '/');
  const char *dot;

  base = base ? base + 1 : out;
  dot = strrchr (base, '.');
  if (!dot || dot == base)
    dot = out + strlen (out);
  return xasprintf ("%.*s%s%s", (int) (dot - out), out, insert,
                    ext ? ext : dot);
}

/* An output of a bundle conversion may be replaced only with --force,
 * only if it is a regular file, and never if it is part of the source. */
static int
check_bundle_output (const char *path, bool force, const struct stat *srcs,
                     size_t n_srcs)
{
  struct stat st;

  if (stat (path, &st) == -1) {
    if (errno == ENOENT)
      return 0;
    return p2v_error ("cannot stat '%s': %m", path);
  }
  for (size_t i = 0; i < n_srcs; i++)
    if (st.st_dev == srcs[i].st_dev && st.st_ino == srcs[i].st_ino)
      return p2v_error ("output '%s' is part of the source bundle", path);
  if (!force)
    return p2v_error ("output '%s' already exists (use --force to replace it)",
                      path);
  if (!S_ISREG (st.st_mode))
    return p2v_error ("output '%s' is not a regular file: a bundle converts "
                      "to files only", path);
  return 0;
}

static int
write_text_file (const char *path, const char *text, bool no_sync)
{
  int fd = open (path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);

  if (fd == -1)
    return p2v_error ("cannot create '%s': %m", path);
  if (full_write (fd, text, strlen (text)) == -1
      || (!no_sync && fsync (fd) == -1)) {
    int e = errno;
    close (fd);
    errno = e;
    return p2v_error ("cannot write '%s': %m", path);
  }
  if (close (fd) == -1)
    return p2v_error ("cannot close '%s': %m", path);
  return 0;
}

/* `p2v convert BUNDLE -o OUT`: every disk through the engine into a
 * temporary name, inject on disk 0, then all renamed, the domain XML
 * last (it is what makes the set look finished), then smoke. */
static int
convert_bundle (const char *src_path, const struct convert_job *j)
{
  struct p2v_bundle *b = bundle_open (src_path);
  struct p2v_image **srcs = NULL, *dst = NULL;
  struct p2v_copy_stats *stats = NULL;
  struct p2v_smoke_result smoke = { 0 };
  struct stat *src_st = NULL;
  char **outs = NULL, **tmps = NULL, **abs_outs = NULL;
  char *xml_out = NULL, *xml_tmp = NULL, *xml = NULL;
  const char *mac = NULL;
  char mac_buf[18];
  size_t n = 0, renamed = 0;
  size_t boot_disk = 0;         /* from inject; without it, the first */
  bool smoke_ran = false, xml_renamed = false;
  unsigned threads = j->copts.threads ? j->copts.threads
    : (unsigned) sysconf (_SC_NPROCESSORS_ONLN);
  int r = P2V_EXIT_ERROR;

  if (!b)
    return P2V_EXIT_ERROR;
  if (j->copts.compress && !format_by_name (j->out_format)->compress) {
    p2v_error ("format '%s' cannot store compressed data", j->out_format);
    bundle_free (b);
    return P2V_EXIT_ERROR;
  }
  n = b->n_disks;
  outs = xcalloc (n, sizeof *outs);
  tmps = xcalloc (n, sizeof *tmps);
  abs_outs = xcalloc (n, sizeof *abs_outs);
  stats = xcalloc (n, sizeof *stats);
  src_st = xcalloc (n + 1, sizeof *src_st);

  /* Everything that could be refused is refused before any write. */
  if (stat (src_path, &src_st[n]) == -1) {
    p2v_error ("cannot stat '%s': %m", src_path);
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    if (!b->is_tar) {
      CLEANUP_FREE char *p = xasprintf ("%s/%s", src_path, b->disks[i].file);
      if (stat (p, &src_st[i]) == -1) {
        p2v_error ("cannot stat '%s': %m", p);
        goto out;
      }
    }
    else
      src_st[i] = src_st[n];
    if (i == 0)
      outs[i] = xstrdup (j->out);
    else {
      CLEANUP_FREE char *ins = xasprintf ("-disk%zu", i);
      outs[i] = output_variant (j->out, ins, NULL);
    }
  }
  xml_out = output_variant (j->out, "", ".xml");
  for (size_t i = 0; i < n; i++) {
    if (strcmp (outs[i], xml_out) == 0) {
      p2v_error ("output '%s' would be the domain XML too: give OUT another "
                 "extension than .xml", outs[i]);
      goto out;
    }
    if (check_bundle_output (outs[i], j->force, src_st, n + 1) == -1)
      goto out;
  }
  if (check_bundle_output (xml_out, j->force, src_st, n + 1) == -1)
    goto out;
  if (j->mac) {
    if (!bundle_mac_parse (j->mac, mac_buf)) {
      p2v_error ("MAC address '%s' is not xx:xx:xx:xx:xx:xx", j->mac);
      goto out;
    }
    mac = mac_buf;
  }
  else if (b->n_nics > 0)
    mac = b->nics[0].mac;
  /* Every disk opens, with the size its manifest says, before the first
   * byte is written. */
  srcs = xcalloc (n, sizeof *srcs);
  for (size_t i = 0; i < n; i++)
    if (!(srcs[i] = bundle_open_disk (b, i)))
      goto out;

  catch_signals ();
  for (size_t i = 0; i < n; i++) {
    tmps[i] = make_tmp_path (outs[i]);
    tmp_paths[i] = tmps[i];
    if (!(dst = image_create (tmps[i], j->out_format, srcs[i]->size,
                              &j->create_opts)))
      goto fail;
    if (copy_image (srcs[i], dst, &j->copts, &stats[i]) == -1)
      goto fail;
    if (image_close (dst) == -1) {
      dst = NULL;
      goto fail;
    }
    dst = NULL;
    if (!j->quiet && !j->json)
      print_stats_line (srcs[i], outs[i], j->out_format, &stats[i]);
  }
  if (j->do_inject) {
    /* Every disk, in the VM's order: file systems, LVM volume groups
     * and md arrays may span them. */
    struct p2v_inject_opts iopts = {
      .mac = mac, .format = j->out_format, .accel = j->accel,
      .quiet = j->quiet || j->json,
    };
    if (inject_image ((const char *const *) tmps, n, &iopts, &boot_disk) == -1)
      goto fail;
  }
  for (size_t i = 0; i < n && !j->create_opts.no_sync; i++)
    if (fsync_path (tmps[i], false) == -1)
      goto fail;
  for (size_t i = n; i-- > 0; ) {
    if (rename (tmps[i], outs[i]) == -1) {
      p2v_error ("cannot rename '%s' to '%s': %m", tmps[i], outs[i]);
      goto fail;
    }
    tmp_paths[i] = outs[i];     /* a signal now removes the renamed file */
    renamed++;
  }
  for (size_t i = 0; i < n; i++)
    if (!(abs_outs[i] = realpath (outs[i], NULL))) {
      p2v_error ("cannot resolve '%s': %m", outs[i]);
      goto fail;
    }
  {
    char *b0 = xstrdup (j->out);
    char *stem = output_variant (basename (b0), "", "");
    xml = domain_xml_build (b, stem, abs_outs, j->out_format, mac, boot_disk);
    free (stem);
    free (b0);
  }
  xml_tmp = make_tmp_path (xml_out);
  tmp_paths[n] = xml_tmp;
  if (write_text_file (xml_tmp, xml, j->create_opts.no_sync) == -1)
    goto fail;
  if (rename (xml_tmp, xml_out) == -1) {
    p2v_error ("cannot rename '%s' to '%s': %m", xml_tmp, xml_out);
    goto fail;
  }
  xml_renamed = true;
  if (!j->create_opts.no_sync) {
    char *d = xstrdup (j->out);
    int e = fsync_path (dirname (d), true);
    free (d);
    if (e == -1)
      goto fail;
  }
  for (size_t i = 0; i < ARRAY_SIZE (tmp_paths); i++)
    tmp_paths[i] = NULL;

  r = P2V_EXIT_OK;
  if (j->do_smoke) {
    struct p2v_smoke_opts sopts = {
      .format = j->out_format, .mac = mac, .progress = !j->quiet && !j->json,
      .boot_disk_known = j->do_inject, .boot_disk = boot_disk,
      .accel = smoke_accel (j->accel),
      .firmware = !b->firmware_known ? P2V_SMOKE_FIRMWARE_AUTO
        : b->uefi ? P2V_SMOKE_FIRMWARE_UEFI : P2V_SMOKE_FIRMWARE_BIOS,
    };
    if (smoke_image ((const char *const *) outs, n, &sopts, &smoke) == -1)
      r = P2V_EXIT_ERROR;
    else {
      smoke_ran = true;
      r = smoke.verdict == P2V_SMOKE_PASS ? P2V_EXIT_OK : P2V_EXIT_NEGATIVE;
    }
  }
  if (j->json) {
    json_object *o = json_object_new_object (), *arr = json_object_new_array ();
    json_object_object_add (o, "bundle", json_object_new_string (src_path));
    for (size_t i = 0; i < n; i++)
      json_object_array_add (arr, stats_to_json (srcs[i], outs[i], j->out_format,
                                                 &stats[i], threads));
    json_object_object_add (o, "disks", arr);
    json_object_object_add (o, "domain_xml", json_object_new_string (xml_out));
    json_object_object_add (o, "boot_disk", json_object_new_int64 ((int64_t) boot_disk));
    json_object_object_add (o, "mac", mac ? json_object_new_string (mac) : NULL);
    json_object_object_add (o, "injected", json_object_new_boolean (j->do_inject));
    if (smoke_ran)
      json_object_object_add (o, "smoke", smoke_result_to_json (&smoke));
    printf ("%s\n", json_object_to_json_string_ext (o, JSON_C_TO_STRING_PRETTY));
    json_object_put (o);
  }
  else if (!j->quiet) {
    printf ("wrote libvirt domain '%s' (%zu disk%s, %zu NIC%s, %s", xml_out,
            n, n == 1 ? "" : "s", b->n_nics, b->n_nics == 1 ? "" : "s",
            b->uefi ? "uefi" : "bios");
    if (n > 1)
      printf (", boots disk %zu", boot_disk);
    printf (")\n");
    if (smoke_ran)
      smoke_result_print (&smoke, outs[0], stdout);
  }
  smoke_result_free (&smoke);
  goto out;

 fail:
  image_discard (dst);
  dst = NULL;
  for (size_t i = 0; i < n; i++) {
    if (tmps[i])
      unlink (tmps[i]);
    /* Renamed outputs go too: without the XML the set is not finished. */
    if (i >= n - renamed)
      unlink (outs[i]);
  }
  if (xml_tmp)
    unlink (xml_tmp);
  if (xml_renamed)
    unlink (xml_out);
  for (size_t i = 0; i < ARRAY_SIZE (tmp_paths); i++)
    tmp_paths[i] = NULL;
 out:
  image_close (dst);
  for (size_t i = 0; i < n; i++) {
    if (srcs)
      image_close (srcs[i]);
    free (outs[i]);
    free (tmps[i]);
    free (abs_outs[i]);
  }
  free (srcs);
  free (outs);
  free (tmps);
  free (abs_outs);
  free (stats);
  free (src_st);
  free (xml_out);
  free (xml_tmp);
  free (xml);
  bundle_free (b);
  return r;
}

int
cmd_convert (int argc, char **argv)
{
  enum { OPT_FORCE = 256, OPT_JSON, OPT_CLUSTER_SIZE, OPT_HELP,
         OPT_NO_INJECT, OPT_NO_SMOKE, OPT_MAC, OPT_ACCEL, OPT_REMOVE_AGENTS,
         OPT_NO_SYNC };
  static const struct option long_opts[] = {
    { "output", required_argument, NULL, 'o' },
    { "format", required_argument, NULL, 'f' },
    { "output-format", required_argument, NULL, 'O' },
    { "compress", optional_argument, NULL, 'c' },
    { "cluster-size", required_argument, NULL, OPT_CLUSTER_SIZE },
    { "threads", required_argument, NULL, 't' },
    { "force", no_argument, NULL, OPT_FORCE },
    { "no-sync", no_argument, NULL, OPT_NO_SYNC },
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
    case OPT_NO_SYNC: create_opts.no_sync = true; break;
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

  if (bundle_detect (argv[optind])) {
    struct convert_job job = {
      .out = out, .out_format = out_format, .mac = mac, .accel = accel,
      .copts = copts, .create_opts = create_opts, .force = force,
      .json = json, .quiet = quiet, .do_inject = do_inject,
      .do_smoke = do_smoke,
    };
    if (in_format) {
      p2v_error ("convert: -f does not apply to a bundle ('%s')", argv[optind]);
      return P2V_EXIT_ERROR;
    }
    return convert_bundle (argv[optind], &job);
  }

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
    if (inject_image ((const char *const *) &tmp, 1, &iopts, NULL) == -1)
      goto fail;
  }
  if (!create_opts.no_sync && fsync_path (tmp, false) == -1)
    goto fail;
  if (!in_place) {
    char *d = xstrdup (out);
    int e = 0;
    if (rename (tmp, out) == -1)
      e = p2v_error ("cannot rename '%s' to '%s': %m", tmp, out);
    else if (!create_opts.no_sync)
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
      .accel = smoke_accel (accel),
    };
    if (smoke_image ((const char *const *) &out, 1, &sopts, &smoke) == -1)
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
  image_discard (dst);
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
