/* inject-int.h: what the files of inject/ share and nobody else sees: the
 * pure text transforms (unit-tested without an appliance), the per-family
 * tables, the libguestfs session, the guest facts and the plan. */
#ifndef P2V_INJECT_INT_H
#define P2V_INJECT_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "common.h"
#include "inject.h"

/* ---- text.c: growing strings, edit lists, small text helpers ---- */

struct p2v_strbuf {
  char *s;
  size_t len, cap;
};
void sb_add (struct p2v_strbuf *sb, const char *s);
void sb_addn (struct p2v_strbuf *sb, const char *s, size_t n);
void sb_addf (struct p2v_strbuf *sb, const char *fmt, ...) P2V_PRINTF (2, 3);
/* The string (never NULL, "" when empty); the buffer is reset. */
char *sb_steal (struct p2v_strbuf *sb);
void sb_free (struct p2v_strbuf *sb);

/* One visible change inside a file, as the plan shows it. */
struct p2v_edit {
  char *before, *after, *why;
};
struct p2v_edits {
  struct p2v_edit *v;
  size_t n, cap;
};
void edits_add (struct p2v_edits *e, const char *before, const char *after,
                const char *why);
void edits_free (struct p2v_edits *e);

/* A list of strings (NULL-terminated, so it can go to libguestfs). */
struct p2v_strings {
  char **v;
  size_t n, cap;
};
void strings_add (struct p2v_strings *l, const char *s);
void strings_add_nodup (struct p2v_strings *l, char *s);
bool strings_contains (const struct p2v_strings *l, const char *s);
void strings_free (struct p2v_strings *l);
void free_string_array (char **v);

/* Walk TEXT line by line: *LINE and *LEN (without the newline); returns
 * false at the end.  *POS starts at 0. */
bool text_next_line (const char *text, size_t *pos, const char **line,
                     size_t *len);
/* Skip spaces and tabs. */
const char *skip_blanks (const char *p, const char *end);
/* The value in single quotes for a POSIX shell. */
char *shell_quote (const char *s);
/* True if S is made only of [A-Za-z0-9._+-~] (safe in paths and commands
 * without quoting): kernel versions, interface names, service names. */
bool is_safe_word (const char *s);

/* MAC addresses: "aa:bb:cc:dd:ee:ff" (any case, also with '-'). */
bool mac_is_valid (const char *s);
/* Lower-case, colon-separated copy, or NULL if not a MAC. */
char *mac_normalize (const char *s);
bool mac_equal (const char *a, const char *b);

/* Maps a device name as the guest wrote it (/dev/sda1) to what to write
 * instead ("UUID=..."), or NULL to leave it: the plan resolves through
 * the appliance, the unit tests through a table. */
typedef char *(*p2v_resolve_fn) (const char *name, void *opaque);

/* ---- devname.c: device names that do not survive the move ---- */

/* True for names that will not exist in the VM or will name another
 * device: /dev/sdX, /dev/hdX, /dev/xvdX, /dev/cciss/, /dev/ida/,
 * /dev/nvme*, /dev/disk/by-id/ (but not dm-/md-/lvm- ids),
 * /dev/disk/by-path/.  LVM, /dev/mapper, /dev/md, UUID= etc. stay. */
bool devname_is_unstable (const char *name);
/* Disk index (0 = first disk; -1 = not in the name: by-id, by-path) and
 * partition number (0 = whole disk).  Returns 0, or -1 if not a name
 * devname_is_unstable() accepts. */
int devname_parse (const char *name, int *disk, int *part);
/* Why the name has to go, for the plan (static string). */
const char *devname_why (const char *name);

/* ---- fstab.c: file-system tables and device-valued settings ---- */

/* Rewrite field FIELD (0-based) of every non-comment line whose value
 * devname_is_unstable() and RESOLVE maps: /etc/fstab (field 0, context
 * field 1: the mount point), /etc/crypttab (field 1, context field 0). */
char *spec_table_rewrite (const char *text, unsigned field,
                          unsigned context_field, p2v_resolve_fn resolve,
                          void *opaque, struct p2v_edits *edits);
/* Spec, mount point and type of an fstab line; false for comments,
 * blank and short lines. */
bool fstab_parse_line (const char *line, size_t len, char **spec,
                       char **mountpoint, char **type);
/* Lines VAR=value (optionally quoted) where value is an unstable device
 * name: initramfs-tools conf.d/resume (RESUME=). */
char *shellvar_device_rewrite (const char *text, const char *var,
                               p2v_resolve_fn resolve, void *opaque,
                               struct p2v_edits *edits);

/* ---- cmdline.c: kernel command lines and boot-loader settings ---- */

/* root= and resume= with unstable device names in a command line. */
char *cmdline_rewrite (const char *cmdline, p2v_resolve_fn resolve,
                       void *opaque, struct p2v_edits *edits);
/* True if the text has a root= or resume= naming an unstable device. */
bool cmdline_has_unstable (const char *text);
/* /etc/default/grub: GRUB_CMDLINE_LINUX(_DEFAULT) through
 * cmdline_rewrite; with WANT_UUID, GRUB_DISABLE_LINUX_UUID=true becomes
 * false so that grub-mkconfig writes root=UUID=. */
char *grub_default_rewrite (const char *text, bool want_uuid,
                            p2v_resolve_fn resolve, void *opaque,
                            struct p2v_edits *edits);
/* True if /etc/default/grub sets GRUB_DISABLE_LINUX_UUID=true. */
bool grub_default_disables_uuid (const char *text);
/* Lines whose first word is in KEYWORDS (NULL-terminated) carry a kernel
 * command line in the rest: BLS entries ("options"), grub legacy
 * ("kernel"), extlinux ("append"). */
char *kernel_lines_rewrite (const char *text, const char *const *keywords,
                            p2v_resolve_fn resolve, void *opaque,
                            struct p2v_edits *edits);
/* The Value: of a question in debconf's config.dat, or NULL. */
char *debconf_value (const char *config_dat, const char *question);

/* ---- modules.c: virtio drivers in each initramfs tool's config ---- */

extern const char *const p2v_virtio_modules[];   /* NULL-terminated */
/* initramfs-tools /etc/initramfs-tools/modules: one module a line. */
char *modules_list_add (const char *text, const char *const *mods,
                        struct p2v_edits *edits);
/* dracut: which of MODS the config TEXT already adds (add_drivers,
 * force_drivers, drivers); sets present[i]. */
void dracut_conf_scan (const char *text, const char *const *mods,
                       bool *present);
/* The content of /etc/dracut.conf.d/p2v-virtio.conf adding MODS. */
char *dracut_conf_text (const char *const *mods);
/* mkinitcpio.conf: MODULES=(...) gains the missing MODS. */
char *mkinitcpio_conf_add (const char *text, const char *const *mods,
                           struct p2v_edits *edits);

/* ---- storage.c: LVM and md RAID settings naming the physical disks ---- */

/* The pattern lvm_conf_rewrite() puts first in a filter. */
extern const char lvm_filter_accept_virtio[];
/* lvm.conf: devices/filter and devices/global_filter that accept the
 * physical disks' names (/dev/sd*, by-id, ...) and would reject the
 * VM's /dev/vd* get lvm_filter_accept_virtio as first pattern.  What it
 * cannot parse stays as it is, with a line ("line N: ...") in NOTES. */
char *lvm_conf_rewrite (const char *text, struct p2v_edits *edits,
                        struct p2v_strings *notes);
/* mdadm.conf: ARRAY lines lose a devices= naming physical disks (the
 * array is found by its UUID); a DEVICE line naming only physical disks
 * becomes "DEVICE partitions". */
char *mdadm_conf_rewrite (const char *text, struct p2v_edits *edits,
                          struct p2v_strings *notes);
/* What an LVM devices file pins, for the plan: "2 PVs pinned by
 * sys_wwid, devname (/dev/sda2, /dev/sdb1)". */
char *lvm_devices_summary (const char *text);

/* ---- net.c: network configuration styles ---- */

struct p2v_netif {
  char *name;
  char *mac;                    /* normalized, or NULL */
  char *config_file;            /* where it is configured, or NULL */
  char *address;                /* "192.0.2.10/24", "dhcp", or NULL */
  char *pin_file;               /* where its name is pinned to a MAC */
};
struct p2v_netifs {
  struct p2v_netif *v;
  size_t n, cap;
};
/* Add or complete the entry NAME (fields given as NULL stay unchanged). */
struct p2v_netif *netifs_update (struct p2v_netifs *l, const char *name,
                                 const char *mac, const char *config_file,
                                 const char *address, const char *pin_file);
struct p2v_netif *netifs_find (struct p2v_netifs *l, const char *name);
void netifs_free (struct p2v_netifs *l);
/* True for names of physical NICs (not lo, bridges, bonds, VLANs...). */
bool netif_is_physical (const char *name);

void net_parse_ifupdown (const char *text, const char *file,
                         struct p2v_netifs *l);
void net_parse_udev_rules (const char *text, const char *file,
                           struct p2v_netifs *l);
void net_parse_link (const char *text, const char *file, struct p2v_netifs *l);
void net_parse_networkd (const char *text, const char *file,
                         struct p2v_netifs *l);
void net_parse_ifcfg (const char *text, const char *file, struct p2v_netifs *l);
void net_parse_keyfile (const char *text, const char *file,
                        struct p2v_netifs *l);
void net_parse_netplan (const char *text, const char *file,
                        struct p2v_netifs *l);
/* udev rules that name a NIC by hardware the VM will not have (a driver,
 * a PCI path, vendor/device ids) are commented out. */
char *udev_rules_drop_hw_pins (const char *text, struct p2v_edits *edits);
/* Every MAC pin OLD becomes NEW (any style: HWADDR=, mac-address=,
 * MACAddress=, macaddress:, ATTR{address}==). */
char *net_replace_mac (const char *text, const char *old_mac,
                       const char *new_mac, struct p2v_edits *edits);
/* A systemd .link file naming the NIC with MAC (or, MAC NULL, the
 * virtio NIC) NAME. */
char *net_link_text (const char *name, const char *mac);

/* ---- family.c: what differs between distributions ---- */

enum p2v_modules_style {
  MODULES_LIST_FILE,            /* initramfs-tools: one module a line */
  MODULES_DRACUT_CONF,          /* dracut: our own conf.d file */
  MODULES_MKINITCPIO,           /* mkinitcpio.conf MODULES=(...) */
};

struct p2v_initramfs_tool {
  const char *name;
  const char *const *programs;  /* installed if any of these exists */
  const char *modules_file;     /* where virtio drivers are added */
  enum p2v_modules_style modules_style;
  /* Commands run in the guest; {kver} and {initrd} are replaced (quoted). */
  const char *rebuild;          /* the initramfs exists */
  const char *create;           /* it does not */
  const char *lister;           /* lists the files of {initrd} */
};

struct p2v_family {
  const char *name;             /* "debian", "rhel", "suse", "arch" */
  const char *const *distros;   /* libguestfs distro names */
  const char *package_format;   /* libguestfs package format: a fallback */
  const char *const *initramfs_tools;   /* names, preferred first */
  const char *const *initramfs_names;   /* {kver} patterns, first = new */
  const char *const *grub_cfgs;         /* BIOS grub.cfg candidates */
  const char *const *grub_mkconfig;     /* program names, first found */
  const char *const *grub_install;
  bool grub_debconf;            /* grub-pc/install_devices in debconf */
  const char *package_owner;    /* {file} -> package name on stdout */
  const char *package_remove;   /* {packages} */
};

struct p2v_agent {
  const char *vendor;           /* "HPE", "Dell OpenManage", ... */
  const char *why;              /* why it goes, for the plan */
  const char *const *services;  /* unit / init script names */
};

extern const struct p2v_family p2v_families[];
extern const size_t p2v_nfamilies;
extern const struct p2v_initramfs_tool p2v_initramfs_tools[];
extern const size_t p2v_ninitramfs_tools;
extern const struct p2v_agent p2v_agents[];
extern const size_t p2v_nagents;

const struct p2v_family *family_for (const char *distro,
                                     const char *package_format);
const struct p2v_initramfs_tool *initramfs_tool_by_name (const char *name);
/* Expand {key} placeholders: KEYS and VALUES NULL-terminated; values are
 * shell-quoted. */
char *template_expand (const char *tmpl, const char *const *keys,
                       const char *const *values);
/* FILE.p2v-orig, or DIR/.NAME.p2v-orig in directories whose every file is
 * read (interfaces.d, NetworkManager, ifcfg, initramfs conf.d). */
char *backup_path (const char *file);

/* ---- guest.c: the one libguestfs session of a run ---- */

struct p2v_guest;
/* Start a libguestfs appliance on DISKS (each in its FORMAT, in order;
 * messages call them NAME):
 * ACCEL "auto" (NULL: $P2V_ACCEL, else auto) tries KVM under a watchdog
 * and falls back to TCG, remembering a KVM that failed (per kernel
 * release) so the next run does not wait for it again; "kvm" or "tcg"
 * force one.  Sets *accel_used.  NULL after p2v_error(). */
struct guestfs_h *appliance_launch (const char *const *disks,
                                    const char *const *formats,
                                    size_t ndisks, bool readonly,
                                    const char *accel, bool progress,
                                    const char *name,
                                    const char **accel_used);
/* disks: the server's disks in the VM's order (the first one is what
 * messages name); format NULL: each one probed. */
struct p2v_guest *guest_open (const char *const *disks, size_t ndisks,
                              const char *format, bool readonly,
                              const char *accel, bool verbose);
/* Finds the one Linux root; errors for no OS, Windows, ... */
int guest_find_root (struct p2v_guest *gs);
const char *guest_root (struct p2v_guest *gs);
int guest_mount (struct p2v_guest *gs, bool rw);
int guest_umount (struct p2v_guest *gs);
/* Shuts down the appliance (a write error there is an error). */
int guest_close (struct p2v_guest *gs);
const char *guest_accel (struct p2v_guest *gs);
double guest_launch_seconds (struct p2v_guest *gs);
void *guest_handle (struct p2v_guest *gs);   /* guestfs_h * */
const char *guest_image (struct p2v_guest *gs);

bool guest_is_file (struct p2v_guest *gs, const char *path);
bool guest_is_dir (struct p2v_guest *gs, const char *path);
bool guest_is_symlink (struct p2v_guest *gs, const char *path);
bool guest_exists (struct p2v_guest *gs, const char *path);
/* The file's content (NUL-terminated), or NULL (error reported unless
 * the file does not exist, in which case *missing is set). */
char *guest_read (struct p2v_guest *gs, const char *path);
/* Whether the guest's initramfs PATH lists a file whose name contains
 * NEEDLE, read on the host: 0 and *FOUND, or -1 if it cannot tell. */
int guest_initrd_has (struct p2v_guest *gs, const char *path,
                      const char *needle, bool *found);
/* A libguestfs error (or a command's output) as one short line. */
char *one_line (const char *msg);
int guest_write (struct p2v_guest *gs, const char *path, const char *content);
/* A symlink's target, or NULL. */
char *guest_readlink (struct p2v_guest *gs, const char *path);
/* Paths matching a glob, sorted; never NULL. */
char **guest_glob (struct p2v_guest *gs, const char *pattern);
/* Run a shell command in the guest (chrooted); stdout, or NULL after
 * p2v_error() naming WHAT. */
char *guest_sh (struct p2v_guest *gs, const char *cmd, const char *what);
/* Same, but only says whether it succeeded (nothing reported). */
bool guest_sh_ok (struct p2v_guest *gs, const char *cmd);
const char *guest_last_error (struct p2v_guest *gs);

/* ---- inspect.c: the facts ---- */

struct p2v_kernel {
  char *version;
  char *vmlinuz;
  char *initramfs;              /* path, existing or to be created */
  bool initramfs_exists;
  bool has_virtio;              /* virtio_blk in the initramfs or built in */
  bool virtio_builtin;
};

struct p2v_filesystem {
  char *device;                 /* in the appliance */
  char *uuid, *partuuid, *type, *label;
  char *mountpoint;             /* from fstab, or NULL */
  char *fstab_name;             /* how fstab names it */
};

struct p2v_agent_found {
  const struct p2v_agent *agent;
  char *service;
  char *unit_file;              /* NULL if only enable links were found */
  struct p2v_strings links;     /* enable symlinks */
  char *package;                /* owning package, or NULL */
};

struct p2v_facts {
  char *os, *distro, *version, *product, *root_device;
  const struct p2v_family *family;
  const struct p2v_initramfs_tool *itool;
  const char *firmware;         /* "bios" or "uefi" */
  struct {
    const char *type;           /* "grub2", "grub-legacy", ... "unknown" */
    char *config;               /* grub.cfg or the loader's config */
    char *defaults;             /* /etc/default/grub */
    char *mkconfig, *install;   /* guest programs */
    char *install_device;       /* BIOS: the boot disk (appliance name) */
    char *install_fs_uuid;      /* BIOS: UUID of the fs on /boot (or /) */
    char *esp;                  /* UEFI: where the ESP is mounted */
    char *efi_dir;              /* UEFI: EFI/debian, EFI/fedora... */
    char *efi_fallback;         /* EFI/BOOT/BOOTX64.EFI if present */
    size_t disk;                /* index in disks of the disk the VM must
                                 * boot: BIOS, the one grub goes to; UEFI,
                                 * the one holding the ESP */
  } boot;
  struct p2v_kernel *kernels;
  size_t nkernels;
  struct p2v_filesystem *fs;
  size_t nfs;
  struct p2v_strings disks;     /* whole disks in the appliance */
  struct p2v_strings partitions;
  char *net_style;              /* "ifupdown", "netplan,networkd", ... */
  struct p2v_netifs netifs;
  struct p2v_strings net_files; /* files that may carry MAC pins */
  struct p2v_agent_found *agents;
  size_t nagents;
};

struct p2v_facts *inspect_guest (struct p2v_guest *gs);
void facts_free (struct p2v_facts *f);
/* Whether the initramfs INITRD holds virtio_blk: listed on the host
 * (guest_initrd_has), else by the tool T's lister in the guest, else by
 * libguestfs (gzip or plain cpio).  False when none can tell. */
bool initramfs_has_virtio_blk (struct p2v_guest *gs,
                               const struct p2v_initramfs_tool *t,
                               const char *initrd);
/* The spec (UUID=...) for a guest device name, or NULL. */
char *facts_resolve (const char *name, void *facts);

/* ---- initrd.c: initramfs listing on the host ---- */

/* Whether the initramfs in P (LEN bytes) or in the host file PATH holds
 * a file whose name contains NEEDLE: 0 and *FOUND, or -1 when it is not
 * an initramfs this code can read (the caller asks the guest's lister). */
int initrd_buffer_has (const unsigned char *p, size_t len, const char *needle,
                       bool *found);
int initrd_file_has (const char *path, const char *needle, bool *found);

/* ---- plan.c / apply.c ---- */

enum p2v_change_kind {
  CHANGE_WRITE,                 /* file gets `content` (edit or create) */
  CHANGE_SHOWN,                 /* another line of the previous write */
  CHANGE_REMOVE,                /* a file or symlink goes */
  CHANGE_COPY,                  /* `source` copied to file */
  CHANGE_COMMAND,               /* `command` runs in the guest */
};

struct p2v_change {
  char *file, *before, *after, *why;
  enum p2v_change_kind kind;
  char *content;
  char *source;
  char *command;
  /* After the command, file must hold virtio_blk, as this initramfs
   * tool's image (NULL: no such check). */
  const struct p2v_initramfs_tool *check_virtio;
  bool check_cmdlines;          /* file may not name disk devices after */
  bool backup;                  /* keep FILE.p2v-orig first */
  bool created;                 /* the file did not exist */
  /* Commands of different lanes that follow each other in the plan run
   * side by side (0: alone).  Lane 1 rebuilds initramfs images, lane 2
   * the boot loader: neither reads what the other writes. */
  int lane;
};

struct p2v_plan {
  struct p2v_change *v;
  size_t n, cap;
  /* What the plan leaves alone that may still keep the guest from
   * booting ("FILE: line N: ..."): shown by inspect, warned by inject. */
  struct p2v_strings notes;
};

int plan_build (struct p2v_guest *gs, struct p2v_facts *f,
                const struct p2v_inject_opts *opts, struct p2v_plan *plan);
void plan_free (struct p2v_plan *plan);
/* Apply, printing each change unless quiet; returns the number of
 * changes applied, or -1. */
int plan_apply (struct p2v_guest *gs, const struct p2v_plan *plan, bool quiet);

/* ---- report.c ---- */

void report_print_change (FILE *f, size_t i, const struct p2v_change *c);
void report_print_human (FILE *f, const struct p2v_facts *facts,
                         const struct p2v_plan *plan);
/* Facts and plan as a json-c object (caller puts it). */
struct json_object *report_json (const struct p2v_facts *facts,
                                 const struct p2v_plan *plan);

/* ---- inject.c: one run, shared by inspect, inject and convert ---- */

enum p2v_run_mode { RUN_INSPECT, RUN_INJECT };
struct p2v_run_opts {
  struct p2v_inject_opts inject;
  bool json;
  bool verbose;
  size_t *boot_disk;            /* out, if not NULL: facts.boot.disk */
};
/* disks: the server's disks in the VM's order. */
int inject_run (const char *const *disks, size_t ndisks,
                enum p2v_run_mode mode, const struct p2v_run_opts *ro);

#endif /* P2V_INJECT_INT_H */
