/* inject.h: offline guest fix-ups through libguestfs: inspection, the
 * plan of changes, applying it, for every Linux family we handle. */
#ifndef P2V_INJECT_H
#define P2V_INJECT_H

#include <stdbool.h>
#include <stddef.h>

struct p2v_inject_opts {
  bool dry_run;                 /* plan only, open the image read-only */
  bool remove_agents;           /* uninstall hardware agents, not just disable */
  const char *mac;              /* NIC MAC the VM will get, or NULL: from the guest */
  const char *format;           /* image format for libguestfs, NULL: probe */
  const char *accel;            /* "auto", "kvm", "tcg"; NULL: $P2V_ACCEL or auto */
  bool quiet;
};

/* Inspect the disks and apply the plan (or only print it with dry_run).
 * *boot_disk (if not NULL) gets the index of the disk the VM must boot
 * from.  Returns 0 when the guest is ready for KVM (including "nothing
 * to do"), -1 after p2v_error() when it is not and nothing was
 * changed. */
int inject_image (const char *const *disks, size_t ndisks,
                  const struct p2v_inject_opts *opts, size_t *boot_disk);

int cmd_inspect (int argc, char **argv);
int cmd_inject (int argc, char **argv);
extern const char cmd_inspect_help[], cmd_inject_help[];

#endif /* P2V_INJECT_H */
