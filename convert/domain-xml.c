/* domain-xml.c: the libvirt domain written beside a converted capture
 * bundle: the captured vCPUs, memory, firmware and NIC MACs, every disk
 * on virtio, a serial console; what `virsh define` takes as it is. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle.h"
#include "common.h"
#include "convert.h"

/* When the manifest does not say (a hand-made bundle). */
#define DEFAULT_VCPUS 2
#define DEFAULT_MEMORY_MIB 2048
#define MAX_NAME 64

/* A libvirt domain name from the hostname: letters, digits, '.', '-'
 * and '_' kept, anything else '-', at most MAX_NAME characters, no
 * leading '.' or '-'.  Returns NULL when nothing usable is left. */
char *
domain_name_from_hostname (const char *hostname)
{
  char *name;
  size_t n = 0;

  if (!hostname)
    return NULL;
  name = xmalloc (MAX_NAME + 1);
  for (const char *p = hostname; *p && n < MAX_NAME; p++) {
    char c = *p;
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
      || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
    if (n == 0 && (c == '.' || c == '-' || !ok))
      continue;
    name[n++] = ok ? c : '-';
  }
  name[n] = '\0';
  if (n == 0) {
    free (name);
    return NULL;
  }
  return name;
}

/* Append s to *buf, escaped for an XML attribute or text. */
static void
xml_escape_into (char **buf, size_t *len, const char *s)
{
  for (; *s; s++) {
    const char *rep = NULL;
    char one[2] = { *s, '\0' };
    switch (*s) {
    case '&': rep = "&amp;"; break;
    case '<': rep = "&lt;"; break;
    case '>': rep = "&gt;"; break;
    case '\'': rep = "&apos;"; break;
    case '"': rep = "&quot;"; break;
    default: rep = one;
    }
    size_t rl = strlen (rep);
    *buf = xrealloc (*buf, *len + rl + 1);
    memcpy (*buf + *len, rep, rl + 1);
    *len += rl;
  }
}

static void
append (char **buf, size_t *len, const char *fmt, ...) P2V_PRINTF (3, 4);

static void
append (char **buf, size_t *len, const char *fmt, ...)
{
  va_list ap;
  char *s;
  int n;

  va_start (ap, fmt);
  n = vasprintf (&s, fmt, ap);
  va_end (ap);
  if (n < 0)
    p2v_die ("out of memory");
  *buf = xrealloc (*buf, *len + n + 1);
  memcpy (*buf + *len, s, n + 1);
  *len += n;
  free (s);
}

/* vda, vdb, ... vdz, vdaa, vdab, ... as libvirt names virtio disks. */
static void
virtio_disk_name (size_t i, char out[16])
{
  char suffix[8];
  int n = 0;

  i++;
  while (i > 0 && n < 7) {
    i--;
    suffix[n++] = 'a' + i % 26;
    i /= 26;
  }
  strcpy (out, "vd");
  for (int k = 0; k < n; k++)
    out[2 + k] = suffix[n - 1 - k];
  out[2 + n] = '\0';
}

char *
domain_xml_build (const struct p2v_bundle *b, const char *fallback_name,
                  char *const *disk_paths, const char *disk_format,
                  const char *first_mac, size_t boot_disk)
{
  char *name = domain_name_from_hostname (b->hostname);
  char *buf = xstrdup ("");
  size_t len = 0;
  uint64_t mem_kib = b->memory_bytes
    ? DIV_ROUND_UP (b->memory_bytes, 1024 * 1024) * 1024
    : (uint64_t) DEFAULT_MEMORY_MIB * 1024;

  if (!name)
    name = domain_name_from_hostname (fallback_name);
  if (!name)
    name = xstrdup ("p2v-guest");

  append (&buf, &len, "<domain type='kvm'>\n  <name>");
  xml_escape_into (&buf, &len, name);
  append (&buf, &len, "</name>\n  <description>");
  xml_escape_into (&buf, &len, "converted by p2v " P2V_VERSION " from capture bundle ");
  xml_escape_into (&buf, &len, b->path ? b->path : "");
  append (&buf, &len, "</description>\n");
  append (&buf, &len, "  <memory unit='KiB'>%llu</memory>\n"
          "  <currentMemory unit='KiB'>%llu</currentMemory>\n"
          "  <vcpu placement='static'>%u</vcpu>\n",
          (unsigned long long) mem_kib, (unsigned long long) mem_kib,
          b->vcpus ? b->vcpus : DEFAULT_VCPUS);
  append (&buf, &len, "  <os%s>\n"
          "    <type arch='x86_64' machine='q35'>hvm</type>\n"
          "  </os>\n"
          "  <features>\n    <acpi/>\n    <apic/>\n  </features>\n"
          "  <cpu mode='host-model'/>\n"
          "  <clock offset='utc'/>\n"
          "  <on_poweroff>destroy</on_poweroff>\n"
          "  <on_reboot>restart</on_reboot>\n"
          "  <on_crash>destroy</on_crash>\n"
          "  <devices>\n",
          b->uefi ? " firmware='efi'" : "");
  for (size_t i = 0; i < b->n_disks; i++) {
    char dev[16];
    virtio_disk_name (i, dev);
    append (&buf, &len, "    <disk type='file' device='disk'>\n"
            "      <driver name='qemu' type='%s'/>\n"
            "      <source file='", disk_format);
    xml_escape_into (&buf, &len, disk_paths[i]);
    /* A per-device boot order, not <os><boot dev='hd'/>, which boots
     * the first disk: the boot loader may live on another one. */
    append (&buf, &len, "'/>\n      <target dev='%s' bus='virtio'/>\n"
            "%s    </disk>\n", dev,
            i == (boot_disk < b->n_disks ? boot_disk : 0)
            ? "      <boot order='1'/>\n" : "");
  }
  for (size_t i = 0; i < b->n_nics; i++) {
    const char *mac = i == 0 && first_mac ? first_mac : b->nics[i].mac;
    append (&buf, &len, "    <interface type='network'>\n"
            "      <mac address='%s'/>\n"
            "      <source network='default'/>\n"
            "      <model type='virtio'/>\n"
            "    </interface>\n", mac);
  }
  append (&buf, &len, "    <serial type='pty'>\n      <target port='0'/>\n    </serial>\n"
          "    <console type='pty'>\n      <target type='serial' port='0'/>\n    </console>\n"
          "    <rng model='virtio'>\n      <backend model='random'>/dev/urandom</backend>\n    </rng>\n"
          "  </devices>\n</domain>\n");
  free (name);
  return buf;
}
