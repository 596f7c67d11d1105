/* inject.c: one inspect or inject run: one libguestfs session that finds
 * the guest, reads its facts, plans and (for inject) applies the plan.
 * inject_image() is the same run for `p2v convert`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json.h>

#include "common.h"
#include "inject-int.h"

static void
print_json (json_object *o)
{
  printf ("%s\n", json_object_to_json_string_ext (o, JSON_C_TO_STRING_PRETTY
                                                  | JSON_C_TO_STRING_NOSLASHESCAPE));
}

/* "image": the first disk; "disks": all of them, in order. */
static void
add_disks (json_object *o, const char *const *disks, size_t ndisks)
{
  json_object *a = json_object_new_array ();

  json_object_object_add (o, "image", json_object_new_string (disks[0]));
  for (size_t i = 0; i < ndisks; i++)
    json_object_array_add (a, json_object_new_string (disks[i]));
  json_object_object_add (o, "disks", a);
}

int
inject_run (const char *const *disks, size_t ndisks, enum p2v_run_mode mode,
            const struct p2v_run_opts *ro)
{
  const struct p2v_inject_opts *opts = &ro->inject;
  bool readonly = mode == RUN_INSPECT || opts->dry_run;
  bool human = !ro->json && !opts->quiet;
  struct p2v_guest *gs;
  struct p2v_facts *facts = NULL;
  struct p2v_plan plan = { 0 };
  int r = -1, applied = 0;
  const char *result = NULL;

  if (opts->mac && !mac_is_valid (opts->mac))
    return p2v_error ("'%s' is not a MAC address", opts->mac);
  gs = guest_open (disks, ndisks, opts->format, readonly, opts->accel,
                   ro->verbose && !opts->quiet);
  if (!gs)
    return -1;
  if (guest_find_root (gs) == -1 || guest_mount (gs, false) == -1)
    goto out;
  if (!(facts = inspect_guest (gs)))
    goto out;
  if (plan_build (gs, facts, opts, &plan) == -1)
    goto out;
  if (ro->boot_disk)
    *ro->boot_disk = facts->boot.disk;

  /* inspect shows them in its report; inject says them once. */
  if (mode == RUN_INJECT)
    for (size_t i = 0; i < plan.notes.n; i++)
      p2v_warning ("%s", plan.notes.v[i]);

  if (mode == RUN_INSPECT) {
    if (ro->json) {
      json_object *o = report_json (facts, &plan);
      add_disks (o, disks, ndisks);
      json_object_object_add (o, "accel",
                              json_object_new_string (guest_accel (gs)));
      print_json (o);
      json_object_put (o);
    }
    else if (!opts->quiet)
      report_print_human (stdout, facts, &plan);
    r = 0;
    goto out;
  }

  if (plan.n == 0)
    result = "nothing to do";
  else if (opts->dry_run) {
    result = "dry run";
    if (human)
      for (size_t i = 0; i < plan.n; i++)
        report_print_change (stdout, i, &plan.v[i]);
  }
  else {
    /* Inspection ran on read-only mounts, so a guest with nothing to do
     * is not touched at all. */
    if (guest_umount (gs) == -1 || guest_mount (gs, true) == -1)
      goto out;
    applied = plan_apply (gs, &plan, !human);
    if (applied < 0)
      goto out;
    result = "applied";
  }
  r = 0;

 out:
  if (guest_close (gs) == -1)
    r = -1;
  if (r == 0 && mode == RUN_INJECT) {
    if (ro->json) {
      json_object *o = report_json (facts, &plan);
      add_disks (o, disks, ndisks);
      json_object_object_add (o, "result", json_object_new_string (result));
      json_object_object_add (o, "applied", json_object_new_int (applied));
      print_json (o);
      json_object_put (o);
    }
    else if (human) {
      if (plan.n == 0)
        printf ("inject: nothing to do\n");
      else if (opts->dry_run)
        printf ("inject: dry run: %zu changes planned, none applied\n", plan.n);
      else
        printf ("inject: %d changes applied\n", applied);
    }
  }
  plan_free (&plan);
  facts_free (facts);
  return r;
}

int
inject_image (const char *const *disks, size_t ndisks,
              const struct p2v_inject_opts *opts, size_t *boot_disk)
{
  struct p2v_run_opts ro = { .inject = *opts, .verbose = !opts->quiet,
                             .boot_disk = boot_disk };
  return inject_run (disks, ndisks, RUN_INJECT, &ro);
}
