/* map.c: the used-block map of one disk.  The partition table and file
 * system identities come from libblkid (which reads the source through
 * the read-only fd we give it); ext2/3/4 used blocks from libext2fs block
 * bitmaps; swap keeps its first page; everything else is copied whole. */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <blkid/blkid.h>
#include <ext2fs/ext2fs.h>
#include <ext2fs/ext2_err.h>
#include <et/com_err.h>
#include <openssl/evp.h>

#include "common.h"
#include "capture.h"

static void
map_add (struct capture_disk *d, uint64_t start, uint64_t len)
{
  if (len == 0 || start >= d->size)
    return;
  if (len > d->size - start)
    len = d->size - start;
  if (d->next == d->ext_cap) {
    d->ext_cap = d->ext_cap ? 2 * d->ext_cap : 256;
    d->ext = xrealloc (d->ext, d->ext_cap * sizeof *d->ext);
  }
  d->ext[d->next++] = (struct p2v_extent) { start, len };
}

static int
extent_cmp (const void *a, const void *b)
{
  const struct p2v_extent *x = a, *y = b;
  return x->start < y->start ? -1 : x->start > y->start;
}

/* Sort and merge overlapping or touching ranges. */
static void
map_normalise (struct capture_disk *d)
{
  size_t out = 0;

  qsort (d->ext, d->next, sizeof *d->ext, extent_cmp);
  for (size_t i = 0; i < d->next; i++) {
    if (out > 0 && d->ext[i].start <= d->ext[out - 1].start + d->ext[out - 1].len) {
      uint64_t end = P2V_MAX (d->ext[out - 1].start + d->ext[out - 1].len,
                              d->ext[i].start + d->ext[i].len);
      d->ext[out - 1].len = end - d->ext[out - 1].start;
    }
    else
      d->ext[out++] = d->ext[i];
  }
  d->next = out;
  d->bytes_mapped = 0;
  for (size_t i = 0; i < d->next; i++)
    d->bytes_mapped += d->ext[i].len;
}

/* Bytes of [start, start + len) in the (normalised) map. */
uint64_t
capture_disk_mapped_in (const struct capture_disk *d, uint64_t start, uint64_t len)
{
  uint64_t n = 0, end = start + len;

  for (size_t i = 0; i < d->next; i++) {
    uint64_t a = P2V_MAX (start, d->ext[i].start);
    uint64_t b = P2V_MIN (end, d->ext[i].start + d->ext[i].len);
    if (a < b)
      n += b - a;
  }
  return n;
}

static pthread_once_t ext2_errors_once = PTHREAD_ONCE_INIT;

/* So error_message() names libext2fs errors instead of "Unknown code". */
static void
ext2_errors_init (void)
{
  initialize_ext2_error_table ();
}

/* Used blocks of the ext2/3/4 file system at [start, start + len), via
 * its block bitmaps.  Returns -1 (after a warning) when the bitmaps
 * cannot be trusted; the caller then copies the partition whole. */
/* The server's own name, from /etc/hostname of a file system on its
 * disks: the running system's name is the capture ISO's, and every
 * server captured from it would get the same libvirt domain name.  A
 * regular file, first word only, host name characters only. */
static void
read_guest_hostname (ext2_filsys fs, struct capture_disk *d)
{
  struct ext2_inode inode;
  ext2_ino_t ino;
  ext2_file_t f;
  char buf[256];
  unsigned int got = 0;
  size_t n = 0;

  if (d->guest_hostname
      || ext2fs_namei (fs, EXT2_ROOT_INO, EXT2_ROOT_INO, "etc/hostname", &ino)
      || ext2fs_read_inode (fs, ino, &inode) || !LINUX_S_ISREG (inode.i_mode)
      || ext2fs_file_open (fs, ino, 0, &f))
    return;
  if (ext2fs_file_read (f, buf, sizeof buf - 1, &got) == 0) {
    buf[got] = '\0';
    while (n < got && (isalnum ((unsigned char) buf[n]) || buf[n] == '-'
                       || buf[n] == '.' || buf[n] == '_'))
      n++;
    if (n > 0 && (n == got || isspace ((unsigned char) buf[n])))
      d->guest_hostname = xasprintf ("%.*s", (int) n, buf);
  }
  ext2fs_file_close (f);
}

static int
map_ext (struct capture_disk *d, struct capture_partition *p)
{
  ext2_filsys fs = NULL;
  char opts[64];
  errcode_t err;
  blk64_t blocks, b, found, zero;
  uint64_t bs, fs_bytes;
  size_t mark = d->next;

  pthread_once (&ext2_errors_once, ext2_errors_init);
  snprintf (opts, sizeof opts, "offset=%" PRIu64, p->start);
  /* No EXT2_FLAG_RW: unix_io opens the source O_RDONLY. */
  err = ext2fs_open2 (d->path, opts, EXT2_FLAG_64BITS | EXT2_FLAG_SKIP_MMP,
                      0, 0, unix_io_manager, &fs);
  if (err) {
    p2v_warning ("cannot open the %s file system on '%s' partition %d: %s; "
                 "copying it whole", p->fs, d->path, p->number,
                 error_message (err));
    return -1;
  }
  bs = fs->blocksize;
  blocks = ext2fs_blocks_count (fs->super);
  fs_bytes = blocks * bs;
  if (ext2fs_has_feature_journal_needs_recovery (fs->super)) {
    /* Replaying the journal may use blocks the on-disk bitmap calls free. */
    p2v_warning ("the file system on '%s' partition %d needs journal "
                 "recovery; copying it whole", d->path, p->number);
    goto fail;
  }
  if (blocks == 0 || fs_bytes / bs != blocks || fs_bytes > p->size) {
    p2v_warning ("the file system on '%s' partition %d claims %" PRIu64
                 " bytes in a %" PRIu64 "-byte partition; copying it whole",
                 d->path, p->number, fs_bytes, p->size);
    goto fail;
  }
  err = ext2fs_read_block_bitmap (fs);
  if (err) {
    p2v_warning ("cannot read the block bitmaps on '%s' partition %d: %s; "
                 "copying it whole", d->path, p->number, error_message (err));
    goto fail;
  }

  /* The boot block and the superblock, whatever the bitmap says. */
  map_add (d, p->start, 2048);
  b = fs->super->s_first_data_block;
  while (b < blocks) {
    if (ext2fs_find_first_set_block_bitmap2 (fs->block_map, b, blocks - 1,
                                             &found) != 0)
      break;
    if (ext2fs_find_first_zero_block_bitmap2 (fs->block_map, found,
                                              blocks - 1, &zero) != 0)
      zero = blocks;
    map_add (d, p->start + found * bs, (zero - found) * bs);
    b = zero;
  }
  /* Whatever lies past the file system's end is not its to judge. */
  map_add (d, p->start + fs_bytes, p->size - fs_bytes);
  read_guest_hostname (fs, d);
  ext2fs_close_free (&fs);
  return 0;

 fail:
  d->next = mark;
  ext2fs_close_free (&fs);
  return -1;
}

static char *
probe_value (blkid_probe pr, const char *name)
{
  const char *v = NULL;

  if (blkid_probe_lookup_value (pr, name, &v, NULL) == 0 && v && *v)
    return xstrdup (v);
  return NULL;
}

/* File system type, UUID and label of [start, start + size). */
static void
probe_fs (int fd, uint64_t start, uint64_t size, struct capture_partition *p)
{
  blkid_probe pr = blkid_new_probe ();

  if (!pr)
    return;
  if (blkid_probe_set_device (pr, fd, start, size) == 0) {
    blkid_probe_enable_superblocks (pr, 1);
    blkid_probe_set_superblocks_flags (pr, BLKID_SUBLKS_TYPE | BLKID_SUBLKS_UUID
                                       | BLKID_SUBLKS_LABEL);
    blkid_probe_enable_partitions (pr, 0);
    if (blkid_do_safeprobe (pr) == 0) {
      p->fs = probe_value (pr, "TYPE");
      p->uuid = probe_value (pr, "UUID");
      p->label = probe_value (pr, "LABEL");
    }
  }
  blkid_free_probe (pr);
}

static void
add_flag (struct capture_partition *p, const char *flag)
{
  if (p->nflags < ARRAY_SIZE (p->flags))
    p->flags[p->nflags++] = xstrdup (flag);
}

/* Flags as parted names them, from the MBR type/boot flag or GPT GUID. */
static void
partition_flags (struct capture_partition *p, bool gpt,
                 unsigned long long pflags, int mbr_type)
{
  if (gpt) {
    const char *g = p->part_type ? p->part_type : "";
    if (strcasecmp (g, "c12a7328-f81f-11d2-ba4b-00a0c93ec93b") == 0)
      add_flag (p, "esp");
    else if (strcasecmp (g, "21686148-6449-6e6f-744e-656564454649") == 0)
      add_flag (p, "bios_grub");
    else if (strcasecmp (g, "e6d6d379-f507-44c2-a23c-238f2a3df928") == 0)
      add_flag (p, "lvm");
    else if (strcasecmp (g, "a19d880f-05fc-4d3b-a006-743f0f84911e") == 0)
      add_flag (p, "raid");
    else if (strcasecmp (g, "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f") == 0)
      add_flag (p, "swap");
    return;
  }
  if (pflags & 0x80)
    add_flag (p, "boot");
  if (mbr_type == 0x8e)
    add_flag (p, "lvm");
  else if (mbr_type == 0xfd)
    add_flag (p, "raid");
  else if (mbr_type == 0x82)
    add_flag (p, "swap");
  else if (mbr_type == 0xef)
    add_flag (p, "esp");
}

/* Decide how a partition (or a whole-disk file system) is copied. */
static void
map_partition (struct capture_disk *d, struct capture_partition *p,
               bool all_blocks)
{
  const char *fs = p->fs ? p->fs : "";

  if (all_blocks)
    p->copied = CAPTURE_COPIED_ALL;
  else if ((strcmp (fs, "ext2") == 0 || strcmp (fs, "ext3") == 0
            || strcmp (fs, "ext4") == 0) && map_ext (d, p) == 0)
    p->copied = CAPTURE_COPIED_USED;
  else if (strcmp (fs, "swap") == 0) {
    /* The header page holds the UUID and label; the rest is garbage. */
    long page = sysconf (_SC_PAGESIZE);
    map_add (d, p->start, P2V_MIN ((uint64_t) (page > 0 ? page : 4096), p->size));
    p->copied = CAPTURE_COPIED_HEADER;
  }
  else {
    map_add (d, p->start, p->size);
    p->copied = CAPTURE_COPIED_FULL;
  }
}

static struct capture_partition *
new_partition (struct capture_disk *d)
{
  d->parts = xrealloc (d->parts, (d->nparts + 1) * sizeof *d->parts);
  memset (&d->parts[d->nparts], 0, sizeof *d->parts);
  return &d->parts[d->nparts++];
}

int
capture_disk_scan (struct capture_disk *d, int fd, bool all_blocks)
{
  blkid_probe pr = blkid_new_probe ();
  blkid_partlist ls;
  blkid_parttable tab;
  bool gpt = false;
  uint64_t covered_end = 0;
  int n;

  if (!pr)
    return p2v_error ("cannot start libblkid on '%s'", d->path);
  if (blkid_probe_set_device (pr, fd, 0, d->size) != 0) {
    blkid_free_probe (pr);
    return p2v_error ("libblkid cannot read '%s'", d->path);
  }
  blkid_probe_enable_superblocks (pr, 0);
  blkid_probe_enable_partitions (pr, 1);
  blkid_probe_set_partitions_flags (pr, BLKID_PARTS_ENTRY_DETAILS);
  ls = blkid_probe_get_partitions (pr);
  tab = ls ? blkid_partlist_get_table (ls) : NULL;
  n = ls ? blkid_partlist_numof_partitions (ls) : 0;

  if (tab && n >= 0) {
    const char *t = blkid_parttable_get_type (tab);
    gpt = t && strcmp (t, "gpt") == 0;
    d->table = gpt ? "gpt" : t && strcmp (t, "dos") == 0 ? "msdos" : NULL;
    if (!d->table) {
      p2v_warning ("'%s' has a '%s' partition table that p2v does not know; "
                   "copying the disk whole", d->path, t ? t : "?");
      d->table = "none";
      n = 0;
      all_blocks = true;
    }
    for (int i = 0; i < n; i++) {
      blkid_partition bp = blkid_partlist_get_partition (ls, i);
      struct capture_partition *p = new_partition (d);
      const char *ts = blkid_partition_get_type_string (bp);
      int mbr_type = blkid_partition_get_type (bp);
      int64_t start = blkid_partition_get_start (bp);
      int64_t size = blkid_partition_get_size (bp);

      p->number = blkid_partition_get_partno (bp);
      if (start < 0 || size < 0 || (uint64_t) start > d->size / 512
          || (uint64_t) size > d->size / 512 - (uint64_t) start) {
        blkid_free_probe (pr);
        return p2v_error ("partition %d of '%s' lies outside the disk",
                          p->number, d->path);
      }
      p->start = (uint64_t) start * 512;      /* libblkid counts 512-byte sectors */
      p->size = (uint64_t) size * 512;
      p->type = blkid_partition_is_extended (bp) ? "extended"
        : blkid_partition_is_logical (bp) ? "logical" : "primary";
      p->part_type = ts ? xstrdup (ts) : xasprintf ("0x%02x", mbr_type);
      partition_flags (p, gpt, blkid_partition_get_flags (bp), mbr_type);
    }
  }
  else {
    /* No table: a file system on the whole disk ("loop"), or nothing. */
    struct capture_partition probe = { 0 };
    probe_fs (fd, 0, d->size, &probe);
    if (probe.fs) {
      struct capture_partition *p = new_partition (d);
      *p = probe;
      p->number = 1;
      p->size = d->size;
      p->type = "primary";
      d->table = "loop";
    }
    else
      d->table = "none";
  }
  blkid_free_probe (pr);

  /* File systems, then the map of each partition. */
  for (size_t i = 0; i < d->nparts; i++) {
    struct capture_partition *p = &d->parts[i];
    if (strcmp (p->type, "extended") == 0)
      continue;         /* its logical partitions speak for it */
    if (strcmp (d->table, "loop") != 0)
      probe_fs (fd, p->start, p->size, p);
    map_partition (d, p, all_blocks);
  }

  /* Partition tables, EBRs, the gap after the MBR holding grub's
   * core.img, the backup GPT: everything outside a partition is copied. */
  if (all_blocks)
    map_add (d, 0, d->size);
  else {
    struct p2v_extent *cov = xcalloc (d->nparts + 1, sizeof *cov);
    size_t nc = 0;
    for (size_t i = 0; i < d->nparts; i++)
      if (strcmp (d->parts[i].type, "extended") != 0)
        cov[nc++] = (struct p2v_extent) { d->parts[i].start, d->parts[i].size };
    qsort (cov, nc, sizeof *cov, extent_cmp);
    for (size_t i = 0; i < nc; i++) {
      if (cov[i].start > covered_end)
        map_add (d, covered_end, cov[i].start - covered_end);
      covered_end = P2V_MAX (covered_end, cov[i].start + cov[i].len);
    }
    if (covered_end < d->size)
      map_add (d, covered_end, d->size - covered_end);
    free (cov);
  }
  map_normalise (d);
  for (size_t i = 0; i < d->nparts; i++)
    d->parts[i].bytes_mapped = capture_disk_mapped_in (d, d->parts[i].start,
                                             d->parts[i].size);
  return 0;
}

void
capture_disk_clear (struct capture_disk *d)
{
  if (!d)
    return;
  for (size_t i = 0; i < d->nparts; i++) {
    struct capture_partition *p = &d->parts[i];
    for (size_t j = 0; j < p->nflags; j++)
      free (p->flags[j]);
    free (p->part_type);
    free (p->fs);
    free (p->uuid);
    free (p->label);
  }
  free (d->parts);
  free (d->ext);
  free (d->name);
  free (d->path);
  free (d->model);
  free (d->serial);
  free (d->transport);
  free (d->guest_hostname);
  memset (d, 0, sizeof *d);
}

static json_object *
json_str_or_null (const char *s)
{
  return s ? json_object_new_string (s) : NULL;
}

json_object *
capture_disk_json (const struct capture_disk *d)
{
  json_object *o = json_object_new_object ();
  json_object *parts = json_object_new_array ();

  json_object_object_add (o, "name", json_object_new_string (d->name));
  json_object_object_add (o, "path", json_object_new_string (d->path));
  json_object_object_add (o, "model", json_str_or_null (d->model));
  json_object_object_add (o, "serial", json_str_or_null (d->serial));
  json_object_object_add (o, "transport", json_str_or_null (d->transport));
  json_object_object_add (o, "size", json_object_new_int64 ((int64_t) d->size));
  json_object_object_add (o, "sector_size", json_object_new_int (d->sector_size));
  json_object_object_add (o, "partition_table", json_object_new_string (d->table));
  for (size_t i = 0; i < d->nparts; i++) {
    const struct capture_partition *p = &d->parts[i];
    json_object *jp = json_object_new_object ();
    json_object *flags = json_object_new_array ();

    json_object_object_add (jp, "number", json_object_new_int (p->number));
    json_object_object_add (jp, "start", json_object_new_int64 ((int64_t) p->start));
    json_object_object_add (jp, "size", json_object_new_int64 ((int64_t) p->size));
    json_object_object_add (jp, "type", json_object_new_string (p->type));
    if (p->part_type)
      json_object_object_add (jp, "type_id", json_object_new_string (p->part_type));
    for (size_t j = 0; j < p->nflags; j++)
      json_object_array_add (flags, json_object_new_string (p->flags[j]));
    json_object_object_add (jp, "flags", flags);
    json_object_object_add (jp, "fs", json_str_or_null (p->fs));
    json_object_object_add (jp, "uuid", json_str_or_null (p->uuid));
    json_object_object_add (jp, "label", json_str_or_null (p->label));
    if (p->copied) {
      json_object_object_add (jp, "copied", json_object_new_string (p->copied));
      json_object_object_add (jp, "bytes_mapped",
                              json_object_new_int64 ((int64_t) p->bytes_mapped));
    }
    json_object_array_add (parts, jp);
  }
  json_object_object_add (o, "partitions", parts);
  json_object_object_add (o, "bytes_mapped",
                          json_object_new_int64 ((int64_t) d->bytes_mapped));
  return o;
}

char *
capture_disk_map_id (const struct capture_disk *d)
{
  unsigned char md[32];
  unsigned int mdlen = 0;
  char *hex = xmalloc (65);
  uint64_t sz = htole64 (d->size);

  EVP_MD_CTX *ctx = EVP_MD_CTX_new ();
  if (!ctx || EVP_DigestInit_ex (ctx, EVP_sha256 (), NULL) != 1
      || EVP_DigestUpdate (ctx, &sz, sizeof sz) != 1)
    goto fail;
  for (size_t i = 0; i < d->next; i++) {
    uint64_t v[2] = { htole64 (d->ext[i].start), htole64 (d->ext[i].len) };
    if (EVP_DigestUpdate (ctx, v, sizeof v) != 1)
      goto fail;
  }
  if (EVP_DigestFinal_ex (ctx, md, &mdlen) != 1)
    goto fail;
  EVP_MD_CTX_free (ctx);
  for (unsigned i = 0; i < 32; i++)
    sprintf (hex + 2 * i, "%02x", md[i]);
  return hex;
 fail:
  EVP_MD_CTX_free (ctx);
  free (hex);
  return p2v_error_null ("cannot hash the map of '%s'", d->path);
}
