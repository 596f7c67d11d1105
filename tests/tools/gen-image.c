/* gen-image.c: write a deterministic test/benchmark disk image: a mix of
 * holes, explicit zero runs, compressible (text and record-like) data and
 * incompressible data, chosen per 1 MiB block from a seeded PRNG.
 *   gen-image FILE SIZE_MIB [SEED]
 * The same arguments always give the same bytes. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BLOCK (1024 * 1024)

static uint64_t state;

static uint64_t
next_random (void)
{
  /* xorshift64*: fast and deterministic across machines. */
  state ^= state >> 12;
  state ^= state << 25;
  state ^= state >> 27;
  return state * 0x2545F4914F6CDD1DULL;
}

static const char *const words[] = {
  "the", "server", "disk", "kernel", "boot", "partition", "virtio", "root",
  "mount", "network", "interface", "address", "config", "module", "driver",
  "error", "warning", "info", "debug", "systemd", "started", "stopped",
  "service", "unit", "target", "reached", "failed", "block", "device",
  "sector", "cluster", "image", "qcow2", "raw", "convert", "migrate",
  "physical", "virtual", "machine", "memory", "cpu", "eth0", "eno1",
  "172.16.0.1", "255.255.255.0", "2026-11-26", "12:00:00", "uid=0",
  "/var/log/syslog", "/etc/fstab", "UUID=", "ext4", "defaults", "0", "1",
};

static void
fill_text (uint8_t *p, size_t n)
{
  size_t i = 0;

  while (i < n) {
    uint64_t r = next_random ();
    const char *w = words[r % (sizeof words / sizeof words[0])];
    size_t l = strlen (w);
    for (size_t k = 0; k < l && i < n; k++)
      p[i++] = w[k];
    if (i < n)
      p[i++] = (r >> 32) % 11 == 0 ? '\n' : ' ';
  }
}

static void
fill_records (uint8_t *p, size_t n)
{
  /* Like database pages or binaries: fixed structure, small varying fields. */
  uint32_t id = next_random () & 0xffff;

  for (size_t i = 0; i + 32 <= n; i += 32) {
    uint64_t r = next_random ();
    uint32_t rec[8] = { 0xfeedf00d, id++, (uint32_t) (r & 0xff), 0,
                        (uint32_t) ((r >> 8) & 0xfff), 0x00010001, 0, 0 };
    memcpy (p + i, rec, sizeof rec);
  }
}

static void
fill_random (uint8_t *p, size_t n)
{
  for (size_t i = 0; i + 8 <= n; i += 8) {
    uint64_t r = next_random ();
    memcpy (p + i, &r, 8);
  }
}

int
main (int argc, char **argv)
{
  uint8_t *buf;
  long mib;
  int fd;

  if (argc < 3 || argc > 4) {
    fprintf (stderr, "usage: gen-image FILE SIZE_MIB [SEED]\n");
    return 2;
  }
  mib = atol (argv[2]);
  state = argc == 4 ? strtoull (argv[3], NULL, 0) : 0x9e3779b97f4a7c15ULL;
  if (state == 0)
    state = 1;
  fd = open (argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd == -1 || ftruncate (fd, (off_t) mib * BLOCK) == -1) {
    perror (argv[1]);
    return 2;
  }
  buf = malloc (BLOCK);
  for (long b = 0; b < mib; b++) {
    unsigned kind = next_random () % 100;

    if (kind < 15)              /* hole */
      continue;
    if (kind < 30)              /* explicit zeros, to be detected */
      memset (buf, 0, BLOCK);
    else if (kind < 55)
      fill_text (buf, BLOCK);
    else if (kind < 75)
      fill_records (buf, BLOCK);
    else
      fill_random (buf, BLOCK);
    /* Some blocks are partly zero, as real file systems are. */
    if (kind >= 30 && next_random () % 4 == 0)
      memset (buf + BLOCK / 2, 0, BLOCK / 2);
    if (pwrite (fd, buf, BLOCK, (off_t) b * BLOCK) != BLOCK) {
      perror (argv[1]);
      return 2;
    }
  }
  free (buf);
  if (close (fd) == -1) {
    perror (argv[1]);
    return 2;
  }
  return 0;
}
