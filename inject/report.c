/* report.c: what inspect found and what inject would do, for people (a
 * short report and a numbered plan) and for programs (JSON, json-c). */
#include <stdio.h>
#include <string.h>

#include <json.h>

#include "common.h"
#include "jsonutil.h"
#include "inject-int.h"

static const char *const kind_names[] = {
  [CHANGE_WRITE] = "edit", [CHANGE_SHOWN] = "edit",
  [CHANGE_REMOVE] = "remove", [CHANGE_COPY] = "copy",
  [CHANGE_COMMAND] = "command",
};

void
report_print_change (FILE *f, size_t i, const struct p2v_change *c)
{
  fprintf (f, "%zu. %s: %s -> %s", i + 1, c->file, c->before, c->after);
  if (*c->why)
    fprintf (f, " (%s)", c->why);
  fputc ('\n', f);
}

void
report_print_human (FILE *f, const struct p2v_facts *x,
                    const struct p2v_plan *plan)
{
  fprintf (f, "os:          %s %s %s", x->os ? x->os : "?",
           x->distro ? x->distro : "?", x->version);
  if (x->product && *x->product && strcmp (x->product, "unknown") != 0
      && strcmp (x->product, x->version) != 0)
    fprintf (f, " (%s)", x->product);
  fprintf (f, ", family %s\n", x->family->name);
  fprintf (f, "firmware:    %s\n", x->firmware);
  fprintf (f, "bootloader:  %s", x->boot.type);
  if (x->boot.config)
    fprintf (f, ", %s", x->boot.config);
  if (x->boot.install_device)
    fprintf (f, ", boot disk %s", x->boot.install_device);
  if (x->disks.n > 1)
    fprintf (f, ", the VM boots disk %zu", x->boot.disk);
  if (x->boot.efi_dir)
    fprintf (f, ", %s (fallback %s)", x->boot.efi_dir,
             x->boot.efi_fallback ? x->boot.efi_fallback : "missing");
  fputc ('\n', f);
  for (size_t i = 0; i < x->nkernels; i++) {
    const struct p2v_kernel *k = &x->kernels[i];
    fprintf (f, "%s %s, %s%s (%s), %s\n", i ? "            " : "kernels:    ",
             k->version, k->initramfs, k->initramfs_exists ? "" : " missing",
             x->itool->name,
             k->virtio_builtin ? "virtio built in"
             : k->has_virtio ? "has virtio" : "no virtio");
  }
  for (size_t i = 0; i < x->nfs; i++) {
    const struct p2v_filesystem *fs = &x->fs[i];
    fprintf (f, "%s %s %s", i ? "            " : "filesystems:", fs->device,
             fs->type);
    if (fs->uuid)
      fprintf (f, " UUID=%s", fs->uuid);
    if (fs->mountpoint)
      fprintf (f, " on %s", fs->mountpoint);
    if (fs->fstab_name)
      fprintf (f, " (fstab: %s)", fs->fstab_name);
    fputc ('\n', f);
  }
  fprintf (f, "network:     %s\n", x->net_style);
  for (size_t i = 0; i < x->netifs.n; i++) {
    const struct p2v_netif *n = &x->netifs.v[i];
    fprintf (f, "             %s %s %s%s%s\n", n->name, n->mac ? n->mac : "(no MAC)",
             n->address ? n->address : "", n->address ? " " : "",
             n->config_file ? n->config_file : n->pin_file ? n->pin_file : "");
  }
  if (!x->nagents)
    fprintf (f, "agents:      none\n");
  for (size_t i = 0; i < x->nagents; i++) {
    const struct p2v_agent_found *a = &x->agents[i];
    fprintf (f, "%s %s (%s), %s", i ? "            " : "agents:     ",
             a->service, a->agent->vendor, a->links.n ? "enabled" : "not enabled");
    if (a->package)
      fprintf (f, ", package %s", a->package);
    fputc ('\n', f);
  }
  if (!plan->n)
    fprintf (f, "plan: nothing to do\n");
  else {
    fprintf (f, "plan:\n");
    for (size_t i = 0; i < plan->n; i++)
      report_print_change (f, i, &plan->v[i]);
  }
  for (size_t i = 0; i < plan->notes.n; i++)
    fprintf (f, "%s %s\n", i ? "      " : "notes:", plan->notes.v[i]);
}

json_object *
report_json (const struct p2v_facts *x, const struct p2v_plan *plan)
{
  json_object *o = json_object_new_object ();
  json_object *boot = json_object_new_object ();
  json_object *kernels = json_object_new_array ();
  json_object *fss = json_object_new_array ();
  json_object *net = json_object_new_object ();
  json_object *ifs = json_object_new_array ();
  json_object *agents = json_object_new_array ();
  json_object *jplan = json_object_new_array ();
  json_object *notes = json_object_new_array ();

  json_object_object_add (o, "os", json_string_or_null (x->os));
  json_object_object_add (o, "distro", json_string_or_null (x->distro));
  json_object_object_add (o, "version", json_string_or_null (x->version));
  json_object_object_add (o, "product", json_string_or_null (x->product));
  json_object_object_add (o, "family", json_string_or_null (x->family->name));
  json_object_object_add (o, "root", json_string_or_null (x->root_device));
  json_object_object_add (o, "firmware", json_string_or_null (x->firmware));

  json_object_object_add (boot, "type", json_string_or_null (x->boot.type));
  json_object_object_add (boot, "config", json_string_or_null (x->boot.config));
  json_object_object_add (boot, "defaults", json_string_or_null (x->boot.defaults));
  json_object_object_add (boot, "mkconfig", json_string_or_null (x->boot.mkconfig));
  json_object_object_add (boot, "install", json_string_or_null (x->boot.install));
  json_object_object_add (boot, "install_device", json_string_or_null (x->boot.install_device));
  json_object_object_add (boot, "disk", json_object_new_int64 ((int64_t) x->boot.disk));
  json_object_object_add (boot, "esp", json_string_or_null (x->boot.esp));
  json_object_object_add (boot, "efi_dir", json_string_or_null (x->boot.efi_dir));
  json_object_object_add (boot, "efi_fallback", json_string_or_null (x->boot.efi_fallback));
  json_object_object_add (o, "bootloader", boot);

  json_object_object_add (o, "initramfs_tool", json_string_or_null (x->itool->name));
  for (size_t i = 0; i < x->nkernels; i++) {
    const struct p2v_kernel *k = &x->kernels[i];
    json_object *jk = json_object_new_object ();
    json_object_object_add (jk, "version", json_string_or_null (k->version));
    json_object_object_add (jk, "vmlinuz", json_string_or_null (k->vmlinuz));
    json_object_object_add (jk, "initramfs", json_string_or_null (k->initramfs));
    json_object_object_add (jk, "initramfs_exists",
                            json_object_new_boolean (k->initramfs_exists));
    json_object_object_add (jk, "initramfs_tool", json_string_or_null (x->itool->name));
    json_object_object_add (jk, "has_virtio", json_object_new_boolean (k->has_virtio));
    json_object_object_add (jk, "virtio_builtin",
                            json_object_new_boolean (k->virtio_builtin));
    json_object_array_add (kernels, jk);
  }
  json_object_object_add (o, "kernels", kernels);

  for (size_t i = 0; i < x->nfs; i++) {
    const struct p2v_filesystem *fs = &x->fs[i];
    json_object *jf = json_object_new_object ();
    json_object_object_add (jf, "device", json_string_or_null (fs->device));
    json_object_object_add (jf, "uuid", json_string_or_null (fs->uuid));
    json_object_object_add (jf, "type", json_string_or_null (fs->type));
    json_object_object_add (jf, "label", json_string_or_null (fs->label));
    json_object_object_add (jf, "mountpoint", json_string_or_null (fs->mountpoint));
    json_object_object_add (jf, "fstab_name", json_string_or_null (fs->fstab_name));
    json_object_array_add (fss, jf);
  }
  json_object_object_add (o, "filesystems", fss);

  json_object_object_add (net, "style", json_string_or_null (x->net_style));
  for (size_t i = 0; i < x->netifs.n; i++) {
    const struct p2v_netif *n = &x->netifs.v[i];
    json_object *ji = json_object_new_object ();
    json_object_object_add (ji, "name", json_string_or_null (n->name));
    json_object_object_add (ji, "mac", json_string_or_null (n->mac));
    json_object_object_add (ji, "config_file", json_string_or_null (n->config_file));
    json_object_object_add (ji, "address", json_string_or_null (n->address));
    json_object_object_add (ji, "pin_file", json_string_or_null (n->pin_file));
    json_object_array_add (ifs, ji);
  }
  json_object_object_add (net, "interfaces", ifs);
  json_object_object_add (o, "network", net);

  for (size_t i = 0; i < x->nagents; i++) {
    const struct p2v_agent_found *a = &x->agents[i];
    json_object *ja = json_object_new_object ();
    json_object *links = json_object_new_array ();
    json_object_object_add (ja, "service", json_string_or_null (a->service));
    json_object_object_add (ja, "vendor", json_string_or_null (a->agent->vendor));
    json_object_object_add (ja, "unit_file", json_string_or_null (a->unit_file));
    json_object_object_add (ja, "enabled", json_object_new_boolean (a->links.n > 0));
    for (size_t j = 0; j < a->links.n; j++)
      json_object_array_add (links, json_string_or_null (a->links.v[j]));
    json_object_object_add (ja, "links", links);
    json_object_object_add (ja, "package", json_string_or_null (a->package));
    json_object_array_add (agents, ja);
  }
  json_object_object_add (o, "agents", agents);

  for (size_t i = 0; i < plan->n; i++) {
    const struct p2v_change *c = &plan->v[i];
    json_object *jc = json_object_new_object ();
    json_object_object_add (jc, "file", json_string_or_null (c->file));
    json_object_object_add (jc, "before", json_string_or_null (c->before));
    json_object_object_add (jc, "after", json_string_or_null (c->after));
    json_object_object_add (jc, "why", json_string_or_null (c->why));
    json_object_object_add (jc, "action", json_string_or_null (kind_names[c->kind]));
    if (c->command)
      json_object_object_add (jc, "command", json_string_or_null (c->command));
    json_object_array_add (jplan, jc);
  }
  json_object_object_add (o, "plan", jplan);
  for (size_t i = 0; i < plan->notes.n; i++)
    json_object_array_add (notes, json_string_or_null (plan->notes.v[i]));
  json_object_object_add (o, "notes", notes);
  return o;
}
