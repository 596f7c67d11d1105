/* test-bundle.c: unit tests for formats/bundle.c (the manifest parser,
 * hostile manifests included), the qcow2 window open that reads a disk
 * inside a tar, and the libvirt domain XML of convert/domain-xml.c. */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "bundle.h"
#include "convert.h"
#include "digest.h"
#include "format.h"
#include "unit.h"

static const char good[] =
  "{ \"format\": \"p2v-bundle\", \"version\": 1, \"tool\": \"p2v 0.1.0\",\n"
  "  \"complete\": true, \"hostname\": \"web01\", \"firmware\": \"uefi\",\n"
  "  \"cpu\": { \"count\": 8, \"model\": \"Xeon\" },\n"
  "  \"memory_bytes\": 17179869184,\n"
  "  \"nics\": [ { \"name\": \"eno1\", \"mac\": \"52:54:00:AB:cd:EF\" },\n"
  "            { \"name\": \"eno2\", \"mac\": \"52:54:00:00:00:02\" } ],\n"
  "  \"disks\": [ { \"name\": \"sda\", \"file\": \"disk0.qcow2\",\n"
  "                \"size\": 2000398934016, \"partitions\": [],\n"
  "                \"digest\": { \"algorithm\": \"p2v-sha256-nz64k\", \"value\":\n"
  "                  \"ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789\" } },\n"
  "              { \"file\": \"disk1.qcow2\", \"size\": 1048576 } ],\n"
  "  \"some_future_key\": [1, 2, {\"x\": null}] }\n";

static struct p2v_bundle *
parse (const char *json)
{
  return bundle_parse_manifest (json, strlen (json), "m.json");
}

/* The manifest is good except for one substitution. */
static struct p2v_bundle *
parse_edited (const char *from, const char *to)
{
  const char *at = strstr (good, from);
  char *s;
  struct p2v_bundle *b;

  if (!at) {
    fprintf (stderr, "test bug: '%s' not in the manifest\n", from);
    exit (2);
  }
  s = xasprintf ("%.*s%s%s", (int) (at - good), good, to, at + strlen (from));
  b = parse (s);
  free (s);
  return b;
}

#define CHECK_BAD(from, to, words)                                      \
  do {                                                                  \
    struct p2v_bundle *b_ = parse_edited ((from), (to));                \
    CHECK_ERROR (b_ == NULL, (words));                                  \
    CHECK (strchr (p2v_last_error (), '\n') == NULL);                   \
    bundle_free (b_);                                                   \
  } while (0)

static void
test_good_manifest (void)
{
  struct p2v_bundle *b = parse (good);

  CHECK (b != NULL);
  if (!b)
    return;
  CHECK (strcmp (b->hostname, "web01") == 0);
  CHECK (b->uefi && b->firmware_known);
  CHECK (b->vcpus == 8);
  CHECK (b->memory_bytes == UINT64_C (17179869184));
  CHECK (b->n_nics == 2);
  CHECK (strcmp (b->nics[0].mac, "52:54:00:ab:cd:ef") == 0);
  CHECK (strcmp (b->nics[0].name, "eno1") == 0);
  CHECK (b->n_disks == 2);
  CHECK (strcmp (b->disks[0].file, "disk0.qcow2") == 0);
  CHECK (b->disks[0].size == UINT64_C (2000398934016));
  CHECK (strcmp (b->disks[0].name, "sda") == 0);
  CHECK (strcmp (b->disks[0].digest_algorithm, P2V_DIGEST_ALGORITHM) == 0);
  CHECK (strcmp (b->disks[0].digest,
                 "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789") == 0);
  CHECK (b->disks[1].digest == NULL && b->disks[1].name == NULL);
  CHECK (b->disks[1].size == 1048576);
  bundle_free (b);

  /* Only version and disks (file, size) are required. */
  b = parse ("{\"version\":1,\"disks\":[{\"file\":\"disk0.qcow2\",\"size\":512}]}");
  CHECK (b && !b->hostname && !b->firmware_known && !b->uefi && b->vcpus == 0
         && b->memory_bytes == 0 && b->n_nics == 0 && b->n_disks == 1);
  bundle_free (b);
  bundle_free (NULL);
}

static void
test_bad_json (void)
{
  struct p2v_bundle *b;

  CHECK_ERROR (parse ("") == NULL, "cannot parse bundle manifest 'm.json'");
  CHECK_ERROR (parse ("{\"version\": 1,") == NULL, "cannot parse");
  CHECK_ERROR (parse ("{\"version\": 1} x") == NULL, "cannot parse");
  CHECK_ERROR (parse ("{\"version\":1,\"disks\":[{\"file\":\"disk0.qcow2\",\"size\":1}]} {}")
               == NULL, "cannot parse");
  CHECK_ERROR (parse ("[1, 2]") == NULL, "not a JSON object");
  CHECK_ERROR (parse ("{\"version\": 1, }") == NULL, "cannot parse");
  CHECK_ERROR (bundle_parse_manifest ("{\"version\":1}\0{", 15, "m.json") == NULL,
               "NUL byte");
  /* Nesting deeper than the tokenizer allows is refused, not recursed. */
  {
    char deep[400];
    size_t n = 0;
    n += sprintf (deep, "{\"version\":1,\"x\":");
    for (int i = 0; i < 100; i++)
      deep[n++] = '[';
    for (int i = 0; i < 100; i++)
      deep[n++] = ']';
    deep[n++] = '}';
    deep[n] = '\0';
    CHECK_ERROR (parse (deep) == NULL, "cannot parse");
  }
  b = bundle_parse_manifest ("{}", P2V_BUNDLE_MAX_MANIFEST + 1, "m.json");
  CHECK_ERROR (b == NULL, "too large");
}

static void
test_bad_fields (void)
{
  CHECK_BAD ("\"version\": 1", "\"version\": 2", "has version 2, but this p2v reads only version 1");
  CHECK_BAD ("\"version\": 1", "\"version\": \"1\"", "version is not an integer");
  CHECK_BAD ("\"version\": 1,", "", "version is missing");
  CHECK_BAD ("\"format\": \"p2v-bundle\"", "\"format\": \"tar\"", "format is not");
  CHECK_BAD ("\"complete\": true", "\"complete\": false", "not complete");
  CHECK_BAD ("\"complete\": true", "\"complete\": 1", "complete is not true or false");
  CHECK_BAD ("\"hostname\": \"web01\"", "\"hostname\": 7", "hostname is not a string");
  CHECK_BAD ("\"hostname\": \"web01\"", "\"hostname\": \"a\\nb\"", "hostname is empty, too long or has control");
  CHECK_BAD ("\"hostname\": \"web01\"", "\"hostname\": \"a\\u0000b\"", "NUL");
  CHECK_BAD ("\"firmware\": \"uefi\"", "\"firmware\": \"coreboot\"", "firmware is not");
  CHECK_BAD ("\"count\": 8", "\"count\": 0", "cpu.count is out of range");
  CHECK_BAD ("\"count\": 8", "\"count\": 8.5", "cpu.count is not an integer");
  CHECK_BAD ("\"cpu\": {", "\"cpu\": 3, \"x\": {", "cpu is not an object");
  CHECK_BAD ("\"memory_bytes\": 17179869184", "\"memory_bytes\": -1", "memory_bytes is out of range");
  CHECK_BAD ("\"memory_bytes\": 17179869184", "\"memory_bytes\": 99999999999999999999", "memory_bytes");
  CHECK_BAD ("\"mac\": \"52:54:00:AB:cd:EF\"", "\"mac\": \"52:54:00:AB:cd\"", "nics[0].mac is not a MAC address");
  CHECK_BAD ("\"mac\": \"52:54:00:AB:cd:EF\"", "\"mac\": \"52-54-00-AB-cd-EF\"", "nics[0].mac is not a MAC");
  CHECK_BAD ("\"mac\": \"52:54:00:AB:cd:EF\"", "\"mac\": \"52:54:00:00:00:02\"", "nics[1].mac repeats");
  CHECK_BAD ("\"mac\": \"52:54:00:AB:cd:EF\"", "\"nomac\": 1", "nics[0].mac is missing");
  CHECK_BAD ("\"nics\": [", "\"nics\": 5, \"x\": [", "nics is not an array");
  CHECK_BAD ("\"disks\": [", "\"disks\": {}, \"x\": [", "disks is not an array");
  CHECK_BAD ("\"disks\": [", "\"x\": [", "disks is missing");
  CHECK_BAD ("\"file\": \"disk0.qcow2\"", "\"file\": \"../disk0.qcow2\"", "disks[0].file is not a disk file name");
  CHECK_BAD ("\"file\": \"disk0.qcow2\"", "\"file\": \"/etc/passwd\"", "disks[0].file is not a disk file name");
  CHECK_BAD ("\"file\": \"disk0.qcow2\"", "\"file\": \"disk00.qcow2\"", "not a disk file name");
  CHECK_BAD ("\"file\": \"disk0.qcow2\"", "\"file\": \"disk0.qcow2/x\"", "not a disk file name");
  CHECK_BAD ("\"file\": \"disk0.qcow2\"", "\"file\": \"disk64.qcow2\"", "not a disk file name");
  CHECK_BAD ("\"file\": \"disk0.qcow2\"", "\"file\": \"disk1.qcow2\"", "disks[1].file names the same file");
  CHECK_BAD ("\"file\": \"disk0.qcow2\"", "\"file\": null", "disks[0].file is missing");
  CHECK_BAD ("\"file\": \"disk0.qcow2\"", "\"file\": \"x'\\n\"", "not printable");
  CHECK_BAD ("\"size\": 2000398934016", "\"size\": 0", "disks[0].size is out of range");
  CHECK_BAD ("\"size\": 2000398934016", "\"size\": -512", "disks[0].size is out of range");
  CHECK_BAD ("\"size\": 2000398934016", "\"size\": \"2T\"", "disks[0].size is not an integer");
  CHECK_BAD ("\"size\": 2000398934016", "\"size\": 1e30", "disks[0].size is not an integer");
  CHECK_BAD ("\"size\": 2000398934016", "\"size\": 4611686018427387904", "disks[0].size is out of range");
  CHECK_BAD ("\"size\": 1048576", "\"sizes\": 1048576", "disks[1].size is missing");
  CHECK_BAD ("\"value\":\n", "\"value\": \"abc\", \"x\":\n", "disks[0].digest.value is not 64 hexadecimal digits");
  CHECK_BAD ("\"algorithm\": \"p2v-sha256-nz64k\",", "", "disks[0].digest.algorithm is missing");
  CHECK_BAD ("\"digest\": {", "\"digest\": [], \"x\": {", "disks[0].digest is not an object");
}

static void
test_lenient (void)
{
  struct p2v_bundle *b;
  char mac[18];

  CHECK (bundle_mac_parse ("52:54:00:AB:cd:EF", mac) && strcmp (mac, "52:54:00:ab:cd:ef") == 0);
  CHECK (!bundle_mac_parse ("52:54:00:ab:cd:e", mac));
  CHECK (!bundle_mac_parse ("52:54:00:ab:cd:efa", mac));
  CHECK (!bundle_mac_parse ("52:54:00:ab:cd:eg", mac));
  CHECK (!bundle_mac_parse ("52:54:00:ab:cd::f", mac));
  CHECK (!bundle_mac_parse ("", mac));

  /* A multicast or zero MAC cannot go to a VM: that NIC is left out. */
  b = parse_edited ("\"mac\": \"52:54:00:AB:cd:EF\"", "\"mac\": \"01:00:5e:00:00:01\"");
  CHECK (b && b->n_nics == 1 && strcmp (b->nics[0].mac, "52:54:00:00:00:02") == 0);
  bundle_free (b);
  /* An unknown digest algorithm is kept: verify reports it, convert
   * does not need it. */
  b = parse_edited ("\"algorithm\": \"p2v-sha256-nz64k\"", "\"algorithm\": \"blake3\"");
  CHECK (b && strcmp (b->disks[0].digest_algorithm, "blake3") == 0);
  bundle_free (b);
  /* Explicit nulls are absent keys. */
  b = parse_edited ("\"hostname\": \"web01\"", "\"hostname\": null");
  CHECK (b && b->hostname == NULL);
  bundle_free (b);
}

/* A qcow2 made by our writer, then copied at offset 1536 inside a
 * bigger file, read back through image_open_window. */
static void
test_window (void)
{
  char qpath[] = "/tmp/p2v-unit-bq.XXXXXX", cpath[] = "/tmp/p2v-unit-bc.XXXXXX";
  int qfd = mkstemp (qpath), cfd = mkstemp (cpath);
  struct p2v_image *img;
  uint8_t *buf = xmalloc (1 << 20), *back = xmalloc (1 << 20);
  char hex1[65], hex2[65];
  uint64_t nread = 0;
  off_t qsize;

  CHECK (qfd >= 0 && cfd >= 0);
  close (qfd);
  unlink (qpath);
  img = image_create (qpath, "qcow2", 8 << 20, NULL);
  CHECK (img != NULL);
  if (!img)
    goto out;
  for (size_t i = 0; i < (1 << 20); i++)
    buf[i] = (uint8_t) (i * 13 + 1);
  CHECK (image_pwrite (img, buf, 1 << 20, 3 << 20) == 0);
  CHECK (image_close (img) == 0);
  CHECK (image_content_digest ((img = image_open (qpath, NULL, P2V_OPEN_READONLY)),
                               hex1, &nread) == 0);
  CHECK (nread == (1 << 20));
  image_close (img);

  /* container: 1536 bytes of 0xff, the qcow2, 1000 bytes of 0xee */
  qfd = open (qpath, O_RDONLY);
  qsize = lseek (qfd, 0, SEEK_END);
  {
    uint8_t *all = xmalloc (qsize);
    CHECK (full_pread (qfd, all, qsize, 0) == 0);
    memset (back, 0xff, 1536);
    CHECK (full_pwrite (cfd, back, 1536, 0) == 0);
    CHECK (full_pwrite (cfd, all, qsize, 1536) == 0);
    memset (back, 0xee, 1000);
    CHECK (full_pwrite (cfd, back, 1000, 1536 + qsize) == 0);
    free (all);
  }
  close (qfd);

  img = image_open_window (cpath, NULL, 1536, qsize, "c.tar:disk0.qcow2");
  CHECK (img != NULL);
  if (img) {
    CHECK (strcmp (img->drv->name, "qcow2") == 0);
    CHECK (strcmp (img->path, "c.tar:disk0.qcow2") == 0);
    CHECK (img->size == 8 << 20);
    CHECK (image_pread (img, back, 1 << 20, 3 << 20) == 0);
    CHECK (memcmp (back, buf, 1 << 20) == 0);
    CHECK (image_pwrite (img, buf, 512, 0) == -1);       /* read-only */
    CHECK (image_content_digest (img, hex2, NULL) == 0);
    CHECK (strcmp (hex1, hex2) == 0);
    image_close (img);
  }
  /* A window past the end of the file, or cutting the header off. */
  CHECK_ERROR (image_open_window (cpath, NULL, 1536, qsize + 5000, "w") == NULL,
               "beyond the end");
  CHECK_ERROR (image_open_window (cpath, "qcow2", 1536, 50, "w") == NULL,
               "truncated");
  CHECK_ERROR (image_open_window (cpath, "raw", 1536, qsize, "w") == NULL,
               "cannot be read inside another file");

 out:
  unlink (qpath);
  unlink (cpath);
  close (cfd);
  free (buf);
  free (back);
}

static size_t
count_substr (const char *s, const char *needle)
{
  size_t n = 0;

  for (const char *p = s; (p = strstr (p, needle)); p++)
    n++;
  return n;
}

static void
test_domain_xml (void)
{
  struct p2v_bundle *b = parse (good);
  char *paths[2] = { "/srv/vm/new.qcow2", "/srv/it's <&>/new-disk1.qcow2" };
  char *xml, *name;

  if (!b)
    return;
  xml = domain_xml_build (b, "new", paths, "qcow2", NULL, 0);
  CHECK (strstr (xml, "<name>web01</name>"));
  CHECK (strstr (xml, "<memory unit='KiB'>16777216</memory>"));
  CHECK (strstr (xml, "<vcpu placement='static'>8</vcpu>"));
  CHECK (strstr (xml, "<os firmware='efi'>"));
  CHECK (strstr (xml, "<mac address='52:54:00:ab:cd:ef'/>"));
  CHECK (strstr (xml, "<mac address='52:54:00:00:00:02'/>"));
  CHECK (strstr (xml, "<target dev='vdb' bus='virtio'/>"));
  CHECK (strstr (xml, "/srv/it&apos;s &lt;&amp;&gt;/new-disk1.qcow2"));
  CHECK (strstr (xml, "type='qcow2'"));
  /* Exactly one boot order, on disk 0, and no <os> boot element beside
   * it (libvirt refuses both). */
  CHECK (strstr (xml, "<target dev='vda' bus='virtio'/>\n      <boot order='1'/>"));
  CHECK (count_substr (xml, "<boot") == 1);
  free (xml);
  /* The boot loader on the second disk: vdb boots. */
  xml = domain_xml_build (b, "new", paths, "qcow2", NULL, 1);
  CHECK (strstr (xml, "<target dev='vdb' bus='virtio'/>\n      <boot order='1'/>"));
  CHECK (count_substr (xml, "<boot") == 1);
  free (xml);
  xml = domain_xml_build (b, "new", paths, "raw", "52:54:00:99:99:99", 0);
  CHECK (strstr (xml, "<mac address='52:54:00:99:99:99'/>"));
  CHECK (!strstr (xml, "52:54:00:ab:cd:ef"));
  CHECK (strstr (xml, "type='raw'"));
  free (xml);

  /* Hostile or empty hostnames give a usable name. */
  name = domain_name_from_hostname ("web01.example.com");
  CHECK (name && strcmp (name, "web01.example.com") == 0);
  free (name);
  name = domain_name_from_hostname ("../a b/<c>");
  CHECK (name && strcmp (name, "a-b--c-") == 0);
  free (name);
  CHECK (domain_name_from_hostname ("...") == NULL);
  CHECK (domain_name_from_hostname (NULL) == NULL);
  free (b->hostname);
  b->hostname = xstrdup ("///");
  xml = domain_xml_build (b, "fallback", paths, "qcow2", NULL, 0);
  CHECK (strstr (xml, "<name>fallback</name>"));
  free (xml);
  bundle_free (b);
}

int
main (void)
{
  p2v_error_set_quiet (true);
  test_good_manifest ();
  test_bad_json ();
  test_bad_fields ();
  test_lenient ();
  test_window ();
  test_domain_xml ();
  return unit_finish ("test-bundle");
}
