/* initrd.c: list an initramfs image on the host.
 *
 * An initramfs is a row of cpio archives that the kernel unpacks in
 * turn: uncompressed "newc" ones first (early microcode, dracut's
 * early_cpio), padded with zeros, then usually one compressed archive
 * (gzip, zstd, xz, lz4, bzip2, lzma).  The uncompressed ones are walked
 * here header by header, because the next archive starts right after the
 * trailer; the compressed tail goes to libarchive.  Looking at a
 * downloaded copy on the host takes a fraction of a second, where the
 * guest's own lister (lsinitramfs, lsinitrd) needs several under TCG.
 *
 * The image comes from an untrusted guest: every length is checked
 * against the bytes that remain before it is used. */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "inject-int.h"

#define NEWC_HEADER 110

static bool
hex8 (const unsigned char *p, size_t *out)
{
  size_t v = 0;

  for (int i = 0; i < 8; i++) {
    int c = p[i], d;
    if (c >= '0' && c <= '9')
      d = c - '0';
    else if (c >= 'a' && c <= 'f')
      d = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F')
      d = c - 'A' + 10;
    else
      return false;
    v = v << 4 | (size_t) d;
  }
  *out = v;
  return true;
}

static size_t
align4 (size_t n)
{
  return (n + 3) & ~(size_t) 3;
}

static bool
is_newc (const unsigned char *p, size_t len)
{
  return len >= 6 && (memcmp (p, "070701", 6) == 0
                      || memcmp (p, "070702", 6) == 0);
}

static bool
name_matches (const char *name, size_t len, const char *needle)
{
  size_t n = strlen (needle);

  for (size_t i = 0; i + n <= len; i++)
    if (memcmp (name + i, needle, n) == 0)
      return true;
  return false;
}

/* Walks one uncompressed newc archive at P; returns the bytes it takes
 * up to and including its trailer, or 0 if it is malformed. */
static size_t
walk_newc (const unsigned char *p, size_t len, const char *needle,
           bool *found)
{
  size_t off = 0;

  for (;;) {
    size_t filesize, namesize, name_end, data_end;
    const char *name;

    if (len - off < NEWC_HEADER || !is_newc (p + off, len - off)
        || !hex8 (p + off + 54, &filesize) || !hex8 (p + off + 94, &namesize)
        || namesize == 0 || namesize > len - off - NEWC_HEADER)
      return 0;
    name = (const char *) p + off + NEWC_HEADER;
    name_end = align4 (off + NEWC_HEADER + namesize);
    if (name_end > len || filesize > len - name_end)
      return 0;
    data_end = align4 (name_end + filesize);
    if (data_end > len)
      data_end = len;
    if (namesize == 11 && memcmp (name, "TRAILER!!!", 11) == 0)
      return data_end;
    if (name_matches (name, namesize - 1, needle))
      *found = true;
    off = data_end;
  }
}

/* The compressed tail: libarchive finds the filter from its magic. */
static int
walk_compressed (const unsigned char *p, size_t len, const char *needle,
                 bool *found)
{
  struct archive *a = archive_read_new ();
  struct archive_entry *e;
  int r, entries = 0;

  if (!a)
    return -1;
  archive_read_support_filter_all (a);
  archive_read_support_format_cpio (a);
  if (archive_read_open_memory (a, p, len) != ARCHIVE_OK) {
    archive_read_free (a);
    return -1;
  }
  while ((r = archive_read_next_header (a, &e)) == ARCHIVE_OK
         || r == ARCHIVE_WARN) {
    const char *name = archive_entry_pathname (e);
    entries++;
    if (name && strstr (name, needle))
      *found = true;
  }
  archive_read_free (a);
  return r == ARCHIVE_EOF && entries > 0 ? 0 : -1;
}

int
initrd_buffer_has (const unsigned char *p, size_t len, const char *needle,
                   bool *found)
{
  size_t off = 0;
  bool any = false;

  *found = false;
  while (off < len) {
    size_t used;
    while (off < len && p[off] == 0)
      off++;
    if (off == len)
      break;
    if (!is_newc (p + off, len - off))
      return walk_compressed (p + off, len - off, needle, found) == 0
        ? 0 : -1;
    used = walk_newc (p + off, len - off, needle, found);
    if (used == 0)
      return -1;
    off += used;
    any = true;
  }
  return any ? 0 : -1;
}

int
initrd_file_has (const char *path, const char *needle, bool *found)
{
  struct stat st;
  void *map;
  int fd = open (path, O_RDONLY | O_CLOEXEC), r;

  if (fd == -1)
    return -1;
  if (fstat (fd, &st) == -1 || st.st_size <= 0) {
    close (fd);
    return -1;
  }
  map = mmap (NULL, (size_t) st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
  close (fd);
  if (map == MAP_FAILED)
    return -1;
  r = initrd_buffer_has (map, (size_t) st.st_size, needle, found);
  munmap (map, (size_t) st.st_size);
  return r;
}
