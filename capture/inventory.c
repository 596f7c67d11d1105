/* inventory.c: the hardware inventory of the manifest: hostname,
 * firmware, CPUs, memory and NICs (MAC, driver, link, addresses), read
 * from /proc, /sys and getifaddrs. */
#include <arpa/inet.h>
#include <dirent.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "common.h"
#include "capture.h"

static char *
read_first_line (const char *path)
{
  FILE *f = fopen (path, "re");
  char *line = NULL;
  size_t cap = 0;

  if (!f)
    return NULL;
  if (getline (&line, &cap, f) < 0) {
    free (line);
    line = NULL;
  }
  else
    line[strcspn (line, "\n")] = '\0';
  fclose (f);
  return line;
}

static void
add_cpu (json_object *obj)
{
  FILE *f = fopen ("/proc/cpuinfo", "re");
  char *line = NULL, *model = NULL;
  size_t cap = 0;
  int count = 0;
  json_object *cpu = json_object_new_object ();

  while (f && getline (&line, &cap, f) > 0) {
    if (strncmp (line, "processor", 9) == 0 && strchr (line, ':'))
      count++;
    else if (!model && strncmp (line, "model name", 10) == 0 && strchr (line, ':')) {
      char *v = strchr (line, ':') + 1;
      while (*v == ' ' || *v == '\t')
        v++;
      v[strcspn (v, "\n")] = '\0';
      model = xstrdup (v);
    }
  }
  if (f)
    fclose (f);
  free (line);
  if (count == 0)
    count = (int) sysconf (_SC_NPROCESSORS_ONLN);
  json_object_object_add (cpu, "count", json_object_new_int (count));
  json_object_object_add (cpu, "model", model ? json_object_new_string (model) : NULL);
  free (model);
  json_object_object_add (obj, "cpu", cpu);
}

static void
add_memory (json_object *obj)
{
  FILE *f = fopen ("/proc/meminfo", "re");
  char *line = NULL;
  size_t cap = 0;
  unsigned long long kb = 0;

  while (f && getline (&line, &cap, f) > 0)
    if (sscanf (line, "MemTotal: %llu kB", &kb) == 1)
      break;
  if (f)
    fclose (f);
  free (line);
  json_object_object_add (obj, "memory_bytes", json_object_new_int64 ((int64_t) kb * 1024));
}

static int
prefix_len (const struct sockaddr *mask)
{
  const unsigned char *p;
  size_t n;
  int bits = 0;

  if (!mask)
    return 0;
  if (mask->sa_family == AF_INET) {
    p = (const unsigned char *) &((const struct sockaddr_in *) mask)->sin_addr;
    n = 4;
  }
  else {
    p = (const unsigned char *) &((const struct sockaddr_in6 *) mask)->sin6_addr;
    n = 16;
  }
  for (size_t i = 0; i < n; i++)
    bits += __builtin_popcount (p[i]);
  return bits;
}

static json_object *
nic_addresses (struct ifaddrs *ifa_list, const char *name)
{
  json_object *arr = json_object_new_array ();

  for (struct ifaddrs *ifa = ifa_list; ifa; ifa = ifa->ifa_next) {
    char buf[INET6_ADDRSTRLEN], *s;
    const void *a;
    int fam;

    if (!ifa->ifa_addr || strcmp (ifa->ifa_name, name) != 0)
      continue;
    fam = ifa->ifa_addr->sa_family;
    if (fam == AF_INET)
      a = &((const struct sockaddr_in *) ifa->ifa_addr)->sin_addr;
    else if (fam == AF_INET6)
      a = &((const struct sockaddr_in6 *) ifa->ifa_addr)->sin6_addr;
    else
      continue;
    if (!inet_ntop (fam, a, buf, sizeof buf))
      continue;
    s = xasprintf ("%s/%d", buf, prefix_len (ifa->ifa_netmask));
    json_object_array_add (arr, json_object_new_string (s));
    free (s);
  }
  return arr;
}

static void
add_nics (json_object *obj)
{
  json_object *nics = json_object_new_array ();
  struct ifaddrs *ifa = NULL;
  DIR *dir = opendir ("/sys/class/net");
  struct dirent *de;
  char **names = NULL;
  size_t n = 0;

  if (getifaddrs (&ifa) == -1)
    ifa = NULL;
  while (dir && (de = readdir (dir))) {
    if (de->d_name[0] == '.' || strcmp (de->d_name, "lo") == 0)
      continue;
    names = xrealloc (names, (n + 1) * sizeof *names);
    names[n++] = xstrdup (de->d_name);
  }
  if (dir)
    closedir (dir);
  for (size_t i = 1; i < n; i++)
    for (size_t j = i; j > 0 && strcmp (names[j - 1], names[j]) > 0; j--) {
      char *t = names[j]; names[j] = names[j - 1]; names[j - 1] = t;
    }
  for (size_t i = 0; i < n; i++) {
    json_object *nic = json_object_new_object ();
    char *p, *mac, *carrier, *drv, *link;

    p = xasprintf ("/sys/class/net/%s/address", names[i]);
    mac = read_first_line (p);
    free (p);
    p = xasprintf ("/sys/class/net/%s/carrier", names[i]);
    carrier = read_first_line (p);
    free (p);
    p = xasprintf ("/sys/class/net/%s/device/driver", names[i]);
    link = realpath (p, NULL);
    free (p);
    drv = link && strrchr (link, '/') ? strrchr (link, '/') + 1 : NULL;
    json_object_object_add (nic, "name", json_object_new_string (names[i]));
    json_object_object_add (nic, "mac", mac ? json_object_new_string (mac) : NULL);
    json_object_object_add (nic, "driver", drv ? json_object_new_string (drv) : NULL);
    json_object_object_add (nic, "virtual", json_object_new_boolean (drv == NULL));
    json_object_object_add (nic, "link",
                            json_object_new_boolean (carrier && carrier[0] == '1'));
    json_object_object_add (nic, "addresses", nic_addresses (ifa, names[i]));
    json_object_array_add (nics, nic);
    free (mac);
    free (carrier);
    free (link);
    free (names[i]);
  }
  free (names);
  if (ifa)
    freeifaddrs (ifa);
  json_object_object_add (obj, "nics", nics);
}

void
capture_inventory (json_object *obj)
{
  struct utsname u;

  json_object_object_add (obj, "hostname",
                          uname (&u) == 0 ? json_object_new_string (u.nodename) : NULL);
  json_object_object_add (obj, "firmware", json_object_new_string (
                            access ("/sys/firmware/efi", F_OK) == 0 ? "uefi" : "bios"));
  add_cpu (obj);
  add_memory (obj);
  add_nics (obj);
}
