/* net.c: the network configuration styles p2v reads (ifupdown, udev
 * rules, systemd .link/.network, ifcfg, NetworkManager keyfiles, netplan)
 * and the few rewrites it makes: hardware pins dropped, MAC pins moved,
 * a .link file that keeps an interface's name on the virtio NIC. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "inject-int.h"

struct p2v_netif *
netifs_find (struct p2v_netifs *l, const char *name)
{
  for (size_t i = 0; i < l->n; i++)
    if (strcmp (l->v[i].name, name) == 0)
      return &l->v[i];
  return NULL;
}

static void
set_once (char **field, const char *value)
{
  if (value && !*field)
    *field = xstrdup (value);
}

struct p2v_netif *
netifs_update (struct p2v_netifs *l, const char *name, const char *mac,
               const char *config_file, const char *address,
               const char *pin_file)
{
  struct p2v_netif *nif = netifs_find (l, name);
  char *m = mac_normalize (mac);

  if (!nif) {
    if (l->n == l->cap) {
      l->cap = l->cap ? l->cap * 2 : 4;
      l->v = xrealloc (l->v, l->cap * sizeof *l->v);
    }
    nif = &l->v[l->n++];
    memset (nif, 0, sizeof *nif);
    nif->name = xstrdup (name);
  }
  set_once (&nif->mac, m);
  set_once (&nif->config_file, config_file);
  set_once (&nif->address, address);
  if (m)
    set_once (&nif->pin_file, pin_file);
  free (m);
  return nif;
}

void
netifs_free (struct p2v_netifs *l)
{
  for (size_t i = 0; i < l->n; i++) {
    free (l->v[i].name);
    free (l->v[i].mac);
    free (l->v[i].config_file);
    free (l->v[i].address);
    free (l->v[i].pin_file);
  }
  free (l->v);
  l->v = NULL;
  l->n = l->cap = 0;
}

bool
netif_is_physical (const char *name)
{
  static const char *const virtual_prefixes[] = {
    "lo", "br", "bond", "team", "vlan", "virbr", "docker", "veth", "tun",
    "tap", "wg", "ppp", "dummy", "vnet", "macvtap", "ovs", "cni", "flannel",
  };

  if (!is_safe_word (name) || strchr (name, '.') || strchr (name, ':')
      || strchr (name, '*') || strlen (name) > 15)
    return false;
  for (size_t i = 0; i < ARRAY_SIZE (virtual_prefixes); i++) {
    size_t n = strlen (virtual_prefixes[i]);
    if (strncmp (name, virtual_prefixes[i], n) == 0
        && (name[n] == '\0' || isdigit ((unsigned char) name[n])
            || strcmp (virtual_prefixes[i], "lo") != 0))
      return false;
  }
  return true;
}

/* ---- small parsing helpers ---- */

static char *
xstrndup (const char *s, size_t n)
{
  char *r = strndup (s, n);
  if (!r)
    p2v_die ("out of memory");
  return r;
}

/* A line without trailing blanks/CR and leading blanks. */
static char *
trimmed (const char *line, size_t len)
{
  const char *p = skip_blanks (line, line + len), *end = line + len;
  while (end > p && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
    end--;
  return xstrndup (p, end - p);
}

/* Strip one level of matching quotes in place. */
static char *
unquote (char *s)
{
  size_t n = strlen (s);
  if (n >= 2 && (s[0] == '"' || s[0] == '\'') && s[n - 1] == s[0]) {
    memmove (s, s + 1, n - 2);
    s[n - 2] = '\0';
  }
  return s;
}

/* KEY=VALUE or KEY = VALUE (ini style): the value, or NULL. */
static char *
ini_value (const char *line, const char *key)
{
  size_t n = strlen (key);
  const char *p;

  if (strncmp (line, key, n) != 0)
    return NULL;
  p = line + n;
  while (*p == ' ' || *p == '\t')
    p++;
  if (*p != '=')
    return NULL;
  p++;
  while (*p == ' ' || *p == '\t')
    p++;
  return unquote (xstrdup (p));
}

/* The first word of a space-separated list. */
static char *
first_word (const char *s)
{
  const char *e = s;
  while (*e && *e != ' ' && *e != '\t' && *e != ',')
    e++;
  return xstrndup (s, e - s);
}

/* ---- ifupdown ---- */

void
net_parse_ifupdown (const char *text, const char *file, struct p2v_netifs *l)
{
  size_t pos = 0, len;
  const char *line;
  char *current = NULL;

  while (text_next_line (text, &pos, &line, &len)) {
    char *t = trimmed (line, len), *w[4] = { 0 };
    int nw = 0;
    char *p = t, *save = NULL;

    if (*t == '#' || *t == '\0') {
      free (t);
      continue;
    }
    for (char *tok = strtok_r (p, " \t", &save); tok && nw < 4;
         tok = strtok_r (NULL, " \t", &save))
      w[nw++] = tok;
    if (strcmp (w[0], "iface") == 0 && nw >= 4) {
      free (current);
      current = NULL;
      if (netif_is_physical (w[1])) {
        current = xstrdup (w[1]);
        netifs_update (l, current, NULL, file,
                       strcmp (w[3], "dhcp") == 0 ? "dhcp" : NULL, NULL);
      }
    }
    else if (strcmp (w[0], "auto") == 0 || strncmp (w[0], "allow-", 6) == 0
             || strcmp (w[0], "mapping") == 0
             || strncmp (w[0], "source", 6) == 0) {
      free (current);
      current = NULL;
    }
    else if (current && strcmp (w[0], "address") == 0 && nw >= 2)
      netifs_update (l, current, NULL, NULL, w[1], NULL);
    else if (current && strcmp (w[0], "hwaddress") == 0 && nw >= 2)
      netifs_update (l, current, nw >= 3 ? w[2] : w[1], NULL, NULL, file);
    free (t);
  }
  free (current);
}

/* ---- udev rules ---- */

/* The value of KEY=="value" / KEY="value" / KEY:="value" in a rule. */
static char *
rule_value (const char *rule, const char *key)
{
  const char *p = rule;
  size_t n = strlen (key);

  while ((p = strstr (p, key))) {
    const char *q = p + n;
    bool at_start = p == rule || p[-1] == ' ' || p[-1] == ',' || p[-1] == '\t';
    p = q;
    if (!at_start)
      continue;
    if (*q == ':' || *q == '=' || *q == '!' || *q == '+')
      q++;
    if (*q == '=')
      q++;
    if (q[-1] != '=' || *q != '"')
      continue;
    q++;
    return xstrndup (q, strcspn (q, "\""));
  }
  return NULL;
}

void
net_parse_udev_rules (const char *text, const char *file, struct p2v_netifs *l)
{
  size_t pos = 0, len;
  const char *line;

  while (text_next_line (text, &pos, &line, &len)) {
    char *t = trimmed (line, len), *name, *mac;
    if (*t == '#' || !(name = rule_value (t, "NAME"))) {
      free (t);
      continue;
    }
    mac = rule_value (t, "ATTR{address}");
    if (netif_is_physical (name))
      netifs_update (l, name, mac, NULL, NULL, file);
    free (mac);
    free (name);
    free (t);
  }
}

/* The hardware-bound match of a rule that names a NIC, or NULL. */
static char *
rule_hw_pin (const char *rule)
{
  static const char *const keys[] = {
    "DRIVERS", "KERNELS", "ATTRS{vendor}", "ATTRS{device}",
    "ATTRS{subsystem_vendor}", "ATTRS{subsystem_device}", "ENV{ID_PATH}",
    "ENV{ID_NET_NAME_PATH}", "ENV{ID_NET_NAME_ONBOARD}", "DRIVER",
  };

  for (size_t i = 0; i < ARRAY_SIZE (keys); i++) {
    char *v = rule_value (rule, keys[i]);
    if (v && strcmp (v, "?*") != 0 && strcmp (v, "*") != 0) {
      char *pin = xasprintf ("%s==\"%s\"", keys[i], v);
      free (v);
      return pin;
    }
    free (v);
  }
  return NULL;
}

char *
udev_rules_drop_hw_pins (const char *text, struct p2v_edits *edits)
{
  struct p2v_strbuf out = { 0 };
  size_t pos = 0, len;
  const char *line;

  while (text_next_line (text, &pos, &line, &len)) {
    char *t = trimmed (line, len), *name = NULL, *pin = NULL;
    bool nl = line[len] == '\n';

    if (*t != '#' && (name = rule_value (t, "NAME")) && (pin = rule_hw_pin (t))) {
      char *why = xasprintf ("the rule names %s by %s, hardware the VM will "
                             "not have", name, pin);
      sb_add (&out, "# p2v: hardware of the physical server: ");
      sb_addn (&out, line, len);
      edits_add (edits, t, "(commented out)", why);
      free (why);
    }
    else
      sb_addn (&out, line, len);
    if (nl)
      sb_add (&out, "\n");
    free (name);
    free (pin);
    free (t);
  }
  return sb_steal (&out);
}

/* ---- ini styles: .link, .network, NetworkManager keyfiles ---- */

/* Walk an ini file: calls FN for every key=value with its section. */
typedef void (*ini_fn) (const char *section, const char *line, void *opaque);

static void
ini_walk (const char *text, ini_fn fn, void *opaque)
{
  size_t pos = 0, len;
  const char *line;
  char *section = xstrdup ("");

  while (text_next_line (text, &pos, &line, &len)) {
    char *t = trimmed (line, len);
    if (*t == '[') {
      char *close = strchr (t, ']');
      free (section);
      section = xstrndup (t + 1, close ? (size_t) (close - t - 1) : strlen (t + 1));
    }
    else if (*t && *t != '#' && *t != ';')
      fn (section, t, opaque);
    free (t);
  }
  free (section);
}

struct ini_iface {
  char *name, *mac, *address;
  bool dhcp;
};

static void
ini_iface_free (struct ini_iface *x)
{
  free (x->name);
  free (x->mac);
  free (x->address);
}

static void
take (char **field, char *value)
{
  if (value && !*field)
    *field = value;
  else
    free (value);
}

static void
link_line (const char *section, const char *line, void *opaque)
{
  struct ini_iface *x = opaque;
  char *v;

  if (strcmp (section, "Match") == 0 && (v = ini_value (line, "MACAddress"))) {
    take (&x->mac, first_word (v));
    free (v);
  }
  else if (strcmp (section, "Link") == 0)
    take (&x->name, ini_value (line, "Name"));
}

void
net_parse_link (const char *text, const char *file, struct p2v_netifs *l)
{
  struct ini_iface x = { 0 };

  ini_walk (text, link_line, &x);
  if (x.name && x.mac && netif_is_physical (x.name))
    netifs_update (l, x.name, x.mac, NULL, NULL, file);
  ini_iface_free (&x);
}

static void
networkd_line (const char *section, const char *line, void *opaque)
{
  struct ini_iface *x = opaque;
  char *v;

  if (strcmp (section, "Match") == 0) {
    if ((v = ini_value (line, "MACAddress"))) {
      take (&x->mac, first_word (v));
      free (v);
    }
    else if ((v = ini_value (line, "Name"))) {
      take (&x->name, first_word (v));
      free (v);
    }
  }
  else if (strcmp (section, "Network") == 0) {
    if ((v = ini_value (line, "Address")))
      take (&x->address, v);
    else if ((v = ini_value (line, "DHCP"))) {
      x->dhcp |= strcmp (v, "no") != 0 && strcmp (v, "false") != 0;
      free (v);
    }
  }
  else if (strcmp (section, "Address") == 0)
    take (&x->address, ini_value (line, "Address"));
}

void
net_parse_networkd (const char *text, const char *file, struct p2v_netifs *l)
{
  struct ini_iface x = { 0 };

  ini_walk (text, networkd_line, &x);
  if (x.name && netif_is_physical (x.name))
    netifs_update (l, x.name, x.mac, file,
                   x.address ? x.address : x.dhcp ? "dhcp" : NULL, file);
  ini_iface_free (&x);
}

static void
keyfile_line (const char *section, const char *line, void *opaque)
{
  struct ini_iface *x = opaque;
  char *v;

  if (strcmp (section, "connection") == 0)
    take (&x->name, ini_value (line, "interface-name"));
  else if (strcmp (section, "ethernet") == 0 || strcmp (section, "802-3-ethernet") == 0)
    take (&x->mac, ini_value (line, "mac-address"));
  else if (strcmp (section, "ipv4") == 0) {
    if ((v = ini_value (line, "address1")) || (v = ini_value (line, "addresses"))) {
      v[strcspn (v, ",;")] = '\0';
      take (&x->address, v);
    }
    else if ((v = ini_value (line, "method"))) {
      x->dhcp |= strcmp (v, "auto") == 0;
      free (v);
    }
  }
}

void
net_parse_keyfile (const char *text, const char *file, struct p2v_netifs *l)
{
  struct ini_iface x = { 0 };

  ini_walk (text, keyfile_line, &x);
  if (x.name && netif_is_physical (x.name))
    netifs_update (l, x.name, x.mac, file,
                   x.address ? x.address : x.dhcp ? "dhcp" : NULL, file);
  ini_iface_free (&x);
}

/* ---- ifcfg ---- */

void
net_parse_ifcfg (const char *text, const char *file, struct p2v_netifs *l)
{
  size_t pos = 0, len;
  const char *line, *base = strrchr (file, '/');
  struct ini_iface x = { 0 };
  char *prefix = NULL, *v;

  while (text_next_line (text, &pos, &line, &len)) {
    char *t = trimmed (line, len);
    if ((v = ini_value (t, "DEVICE")))
      take (&x.name, v);
    else if ((v = ini_value (t, "HWADDR")))
      take (&x.mac, v);
    else if ((v = ini_value (t, "IPADDR")) || (v = ini_value (t, "IPADDR0")))
      take (&x.address, v);
    else if ((v = ini_value (t, "PREFIX")) || (v = ini_value (t, "PREFIX0")))
      take (&prefix, v);
    else if ((v = ini_value (t, "BOOTPROTO"))) {
      x.dhcp |= strcmp (v, "dhcp") == 0;
      free (v);
    }
    free (t);
  }
  if (!x.name && base && strncmp (base + 1, "ifcfg-", 6) == 0)
    x.name = xstrdup (base + 7);
  if (x.address && prefix && !strchr (x.address, '/')) {
    char *a = xasprintf ("%s/%s", x.address, prefix);
    free (x.address);
    x.address = a;
  }
  if (x.name && netif_is_physical (x.name))
    netifs_update (l, x.name, x.mac, file,
                   x.address ? x.address : x.dhcp ? "dhcp" : NULL, file);
  ini_iface_free (&x);
  free (prefix);
}

/* ---- netplan (YAML, read line by line: the keys p2v needs only) ---- */

struct netplan_iface {
  char *id, *set_name, *match_name, *mac, *address;
  bool dhcp;
};

static void
netplan_flush (struct netplan_iface *x, const char *file, struct p2v_netifs *l)
{
  const char *name = x->set_name ? x->set_name
    : x->match_name ? x->match_name : x->id;

  if (name && netif_is_physical (name))
    netifs_update (l, name, x->mac, file,
                   x->address ? x->address : x->dhcp ? "dhcp" : NULL, file);
  free (x->id);
  free (x->set_name);
  free (x->match_name);
  free (x->mac);
  free (x->address);
  memset (x, 0, sizeof *x);
}

/* "key: value" -> key and value (value may be empty); false otherwise. */
static bool
yaml_pair (const char *t, char **key, char **value)
{
  const char *colon = strchr (t, ':');
  char *v;
  size_t n;

  if (!colon || (colon[1] && colon[1] != ' '))
    return false;
  *key = xstrndup (t, colon - t);
  unquote (*key);
  v = xstrdup (skip_blanks (colon + 1, colon + strlen (colon)));
  n = strcspn (v, "#");
  while (n > 0 && v[n - 1] == ' ')
    n--;
  v[n] = '\0';
  *value = unquote (v);
  return true;
}

void
net_parse_netplan (const char *text, const char *file, struct p2v_netifs *l)
{
  size_t pos = 0, len;
  const char *line;
  int eth_indent = -1, id_indent = -1;
  bool in_addresses = false;
  struct netplan_iface x = { 0 };

  while (text_next_line (text, &pos, &line, &len)) {
    char *t = trimmed (line, len), *key = NULL, *value = NULL;
    int indent = (int) (skip_blanks (line, line + len) - line);

    if (*t == '\0' || *t == '#') {
      free (t);
      continue;
    }
    if (eth_indent >= 0 && indent <= eth_indent) {
      netplan_flush (&x, file, l);
      eth_indent = id_indent = -1;
    }
    if (eth_indent < 0) {
      if (strcmp (t, "ethernets:") == 0)
        eth_indent = indent;
      free (t);
      continue;
    }
    if (id_indent < 0 || indent <= id_indent) {
      if (yaml_pair (t, &key, &value)) {
        netplan_flush (&x, file, l);
        id_indent = indent;
        x.id = key;
        key = NULL;
      }
      in_addresses = false;
    }
    else if (in_addresses && t[0] == '-' && !x.address)
      x.address = unquote (xstrdup (skip_blanks (t + 1, t + strlen (t))));
    else if (yaml_pair (t, &key, &value)) {
      in_addresses = false;
      if (strcmp (key, "macaddress") == 0)
        take (&x.mac, xstrdup (value));
      else if (strcmp (key, "set-name") == 0)
        take (&x.set_name, xstrdup (value));
      else if (strcmp (key, "name") == 0)
        take (&x.match_name, xstrdup (value));
      else if (strcmp (key, "dhcp4") == 0)
        x.dhcp |= strcmp (value, "true") == 0 || strcmp (value, "yes") == 0;
      else if (strcmp (key, "addresses") == 0) {
        if (value[0] == '[')
          take (&x.address, unquote (first_word (skip_blanks (value + 1, value + strlen (value)))));
        else
          in_addresses = true;
      }
    }
    free (key);
    free (value);
    free (t);
  }
  netplan_flush (&x, file, l);
}

/* ---- rewrites ---- */

static bool
is_mac_char (char c)
{
  return isxdigit ((unsigned char) c) || c == ':' || c == '-';
}

char *
net_replace_mac (const char *text, const char *old_mac, const char *new_mac,
                 struct p2v_edits *edits)
{
  struct p2v_strbuf out = { 0 };
  size_t pos = 0, len;
  const char *line;
  char *new_norm = mac_normalize (new_mac);

  if (!new_norm || !mac_is_valid (old_mac) || mac_equal (old_mac, new_mac)) {
    free (new_norm);
    return xstrdup (text);
  }
  while (text_next_line (text, &pos, &line, &len)) {
    struct p2v_strbuf nl = { 0 };
    bool changed = false;
    size_t i = 0;

    while (i < len) {
      if (i + 17 <= len && (i == 0 || !is_mac_char (line[i - 1]))
          && (i + 17 == len || !is_mac_char (line[i + 17]))) {
        char *cand = xstrndup (line + i, 17);
        bool hit = mac_is_valid (cand) && mac_equal (cand, old_mac);
        if (hit) {
          bool upper = false;
          for (int k = 0; k < 17; k++)
            upper |= isupper ((unsigned char) cand[k]);
          for (int k = 0; k < 17; k++) {
            char c = new_norm[k];
            if (c == ':' && cand[2] == '-')
              c = '-';
            if (upper)
              c = (char) toupper ((unsigned char) c);
            sb_addn (&nl, &c, 1);
          }
          changed = true;
          i += 17;
        }
        free (cand);
        if (hit)
          continue;
      }
      sb_addn (&nl, line + i, 1);
      i++;
    }
    if (changed) {
      char *before = trimmed (line, len), *after = trimmed (nl.s, nl.len);
      char *why = xasprintf ("the VM's NIC has MAC %s", new_norm);
      edits_add (edits, before, after, why);
      free (before);
      free (after);
      free (why);
    }
    if (nl.s)
      sb_add (&out, nl.s);
    if (line[len] == '\n')
      sb_add (&out, "\n");
    sb_free (&nl);
  }
  free (new_norm);
  return sb_steal (&out);
}

char *
net_link_text (const char *name, const char *mac)
{
  if (mac)
    return xasprintf ("# Written by p2v inject: the NIC with this MAC keeps "
                      "the name %s\n# whatever driver or bus it has in the "
                      "VM.\n[Match]\nMACAddress=%s\n\n[Link]\nName=%s\n",
                      name, mac, name);
  return xasprintf ("# Written by p2v inject: no MAC was known, so the "
                    "virtio NIC takes the\n# name %s the network "
                    "configuration uses.\n[Match]\nDriver=virtio_net\n\n"
                    "[Link]\nName=%s\n", name, name);
}
