/* smoke.h: the smoke boot: start a converted image in qemu through its own
 * boot loader, on a throwaway overlay, and tell from the guest itself
 * whether it reached its default target with its root on the virtio disk. */
#ifndef P2V_SMOKE_H
#define P2V_SMOKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <json.h>

enum p2v_smoke_firmware {
  P2V_SMOKE_FIRMWARE_AUTO,      /* GPT with an ESP and no BIOS boot partition: uefi */
  P2V_SMOKE_FIRMWARE_BIOS,
  P2V_SMOKE_FIRMWARE_UEFI,
};

enum p2v_smoke_accel {
  P2V_SMOKE_ACCEL_AUTO,         /* KVM if it starts, else TCG; P2V_ACCEL=tcg forces TCG */
  P2V_SMOKE_ACCEL_KVM,
  P2V_SMOKE_ACCEL_TCG,
};

#define P2V_SMOKE_DEFAULT_TIMEOUT 600   /* seconds, for one boot (TCG is slow) */
#define P2V_SMOKE_DEFAULT_MAC "52:54:00:12:34:56"
#define P2V_SMOKE_DEFAULT_MEMORY 1024   /* MiB */

struct p2v_smoke_opts {
  enum p2v_smoke_firmware firmware;
  enum p2v_smoke_accel accel;
  unsigned timeout;             /* seconds; 0: P2V_SMOKE_DEFAULT_TIMEOUT */
  const char *mac;              /* NIC MAC; NULL: P2V_SMOKE_DEFAULT_MAC */
  const char *format;           /* IMAGE format for qemu; NULL: probe */
  const char *keep_log;         /* copy the console log here; NULL: don't */
  const char *uefi_vars;        /* OVMF NVRAM to start from; NULL: blank */
  unsigned memory_mb;           /* 0: P2V_SMOKE_DEFAULT_MEMORY */
  unsigned cpus;                /* vCPUs; 0: 2, or 1 on a one-core host */
  bool progress;                /* one-line status on stderr while it runs */
  /* The disk to boot when the caller knows it (inject found where the
   * boot loader went); otherwise the first disk with a way to boot. */
  bool boot_disk_known;
  size_t boot_disk;
};

/* What a boot looks like from outside, in boot order: how far it got. */
enum p2v_smoke_reached {
  P2V_SMOKE_REACHED_NOTHING,
  P2V_SMOKE_REACHED_FIRMWARE,
  P2V_SMOKE_REACHED_BOOT_LOADER,
  P2V_SMOKE_REACHED_KERNEL,
  P2V_SMOKE_REACHED_INITRAMFS,
  P2V_SMOKE_REACHED_ROOT,
  P2V_SMOKE_REACHED_TARGET,
};

enum p2v_smoke_verdict {
  P2V_SMOKE_PENDING,            /* classifier only: keep watching */
  P2V_SMOKE_PASS,
  P2V_SMOKE_FAIL,
};

/* Where a failed boot stopped. */
enum p2v_smoke_stage {
  P2V_SMOKE_STAGE_NONE,             /* passed (or still pending) */
  P2V_SMOKE_STAGE_NO_BOOT_LOADER,   /* firmware found nothing, or grub broke */
  P2V_SMOKE_STAGE_KERNEL_PANIC,
  P2V_SMOKE_STAGE_ROOT_NOT_FOUND,   /* initramfs gave up, or its shell */
  P2V_SMOKE_STAGE_EMERGENCY,        /* real root, then emergency/rescue mode */
  P2V_SMOKE_STAGE_TARGET_NOT_REACHED, /* guest report: default target inactive */
  P2V_SMOKE_STAGE_ROOT_NOT_VIRTIO,  /* guest report: / not on the virtio disk */
  P2V_SMOKE_STAGE_GUEST_STOPPED,    /* guest reset or powered off early */
  P2V_SMOKE_STAGE_TIMEOUT,
};

/* How the watcher saw qemu end, for the classifier. */
enum p2v_smoke_end {
  P2V_SMOKE_RUNNING,
  P2V_SMOKE_EXITED,             /* qemu exited by itself */
  P2V_SMOKE_TIMED_OUT,
};

struct p2v_smoke_interface {
  char *name;
  char *mac;
  char *state;                  /* operstate: up, down, ... */
  char *driver;                 /* virtio_net, ... */
  char **ipv4;                  /* "192.0.2.10/24", NULL-terminated */
};

struct p2v_smoke_result {
  enum p2v_smoke_verdict verdict;
  enum p2v_smoke_stage stage;
  enum p2v_smoke_reached reached;
  char *evidence;               /* the console line that decided a failure */
  double seconds;               /* qemu start to verdict, last boot */
  double prepare_seconds;       /* overlay and libguestfs session */
  const char *accel;            /* "kvm" or "tcg": the one that ran */
  char *accel_note;             /* why KVM was given up, or NULL */
  const char *firmware;         /* "bios" or "uefi" */
  bool prepared;                /* the marker service was installed */
  size_t boot_disk;             /* index of the disk the firmware booted */
  /* From the guest's own report (NULL/empty without one): */
  char *target;                 /* default target, "runlevel 3" on sysvinit */
  char *target_state;           /* "active" when reached */
  char *system_state;           /* systemctl is-system-running */
  char *kernel;
  char *root_source;
  char *root_fstype;
  char **root_disks;            /* whole disks under /, NULL-terminated */
  char **root_disk_drivers;     /* parallel to root_disks */
  struct p2v_smoke_interface *interfaces;
  size_t n_interfaces;
  char **failed_units;          /* NULL-terminated */
  double guest_uptime;
  char **console_tail;          /* last console lines, NULL-terminated */
};

/* Boot IMAGE and fill *res.  Returns 0 when the boot ran (res->verdict
 * says pass or fail), -1 after p2v_error() when it could not run (no
 * qemu, unreadable image, libguestfs failed...).  IMAGE is never written.
 * Frees nothing in *res first: start from a zeroed struct. */
int smoke_image (const char *const *images, size_t ndisks,
                 const struct p2v_smoke_opts *opts,
                 struct p2v_smoke_result *res);
void smoke_result_free (struct p2v_smoke_result *res);
json_object *smoke_result_to_json (const struct p2v_smoke_result *res);
/* The short human summary `p2v smoke` prints. */
void smoke_result_print (const struct p2v_smoke_result *res,
                         const char *image, FILE *f);

const char *smoke_stage_name (enum p2v_smoke_stage stage);
const char *smoke_reached_name (enum p2v_smoke_reached reached);

/* The classifier: a pure function of what the guest printed.  console is
 * the serial console (ttyS0), firmware the SeaBIOS/OVMF debug port log,
 * report the dedicated report port (ttyS1); any may be NULL.  Raw bytes
 * with escapes and CRs are fine.  Fills verdict, stage, reached,
 * evidence, the report fields and console_tail of *res (freeing what
 * was there).  With end == P2V_SMOKE_RUNNING the verdict may be PENDING. */
void smoke_classify (const char *console, size_t console_len,
                     const char *firmware, size_t firmware_len,
                     const char *report, size_t report_len,
                     enum p2v_smoke_end end, struct p2v_smoke_result *res);

/* Console text without terminal escapes, CRs, NULs or invalid UTF-8, as
 * lines.  Returns a NULL-terminated vector; free with smoke_strv_free. */
char **smoke_console_lines (const char *text, size_t len);
void smoke_strv_free (char **v);

/* Add ARGS to every kernel command line of a grub.cfg (linux, linux16,
 * linuxefi lines) and turn on grub's serial terminal at its top.  Returns
 * the new text (caller frees) and the number of lines changed in *n, or
 * the unchanged copy with *n == 0. */
char *smoke_edit_grub_cfg (const char *cfg, const char *args, size_t *n);
/* Same for a Boot Loader Specification entry: its "options" lines. */
char *smoke_edit_bls_entry (const char *entry, const char *args, size_t *n);

/* Prepare the overlays (every disk, in order) in one libguestfs session
 * (ACCEL "auto", "kvm" or "tcg", as appliance_launch): detect the firmware
 * when *firmware is AUTO (sets it) and the disk the firmware must boot
 * (*boot_disk), add the serial console to the kernel command lines and
 * install the one-shot report service.  *prepared says whether a Linux
 * guest was found and changed.  Returns 0 or -1. */
int smoke_prepare_overlay (const char *const *overlays, size_t n,
                           const char *image,
                           enum p2v_smoke_firmware *firmware,
                           size_t *boot_disk,
                           const char *accel, bool *prepared);

/* String vectors shared by the smoke files (NULL-terminated). */
size_t smoke_strv_len (char *const *v);
void smoke_strv_push (char ***v, char *s);

int cmd_smoke (int argc, char **argv);
extern const char cmd_smoke_help[];

#endif /* P2V_SMOKE_H */
