/* test-smoke-classify.c: the smoke classifier on canned boots: console
 * logs as the serial port and firmware debug port saw them (escapes, CRs
 * and all) must give the expected verdict and stage; plus the console
 * cleaner and the grub.cfg / BLS edits. */
#include "unit.h"
#include "smoke.h"

/* Classify console (+ firmware log, + report port) as of end. */
static void
classify (struct p2v_smoke_result *res, const char *console,
          const char *firmware, const char *report, enum p2v_smoke_end end)
{
  smoke_classify (console, console ? strlen (console) : 0,
                  firmware, firmware ? strlen (firmware) : 0,
                  report, report ? strlen (report) : 0, end, res);
}

#define CHECK_VERDICT(res, v, st)                                       \
  do {                                                                  \
    CHECK ((res)->verdict == (v));                                      \
    CHECK ((res)->stage == (st));                                       \
    if ((res)->verdict != (v) || (res)->stage != (st))                  \
      fprintf (stderr, "  got verdict %d stage '%s' evidence '%s'\n",  \
               (res)->verdict, smoke_stage_name ((res)->stage),         \
               (res)->evidence ? (res)->evidence : "");                 \
  } while (0)

/* ---- canned boots -------------------------------------------------------- */

/* SeaBIOS with sercon on a blank disk (as captured here). */
static const char seabios_blank[] =
  "\033c\033[?7l\033[2J\033[0mSeaBIOS (version 1.16.2-debian-1.16.2-1)\r\n"
  "Booting from Hard Disk...\r\n"
  "Boot failed: not a bootable disk\r\n\r\n"
  "Booting from Floppy...\r\n"
  "Boot failed: could not read the boot disk\r\n\r\n"
  "No bootable device.";

static const char seabios_debugcon_blank[] =
  "SeaBIOS (version 1.16.2-debian-1.16.2-1)\n"
  "enter handle_19:\n  NULL\n"
  "Booting from Hard Disk...\n"
  "Boot failed: not a bootable disk\n\n"
  "enter handle_18:\n  NULL\n"
  "No bootable device.";

/* OVMF with a blank disk and bootindex on it: it gives up in its shell. */
static const char ovmf_blank[] =
  "\033[2J\033[01;01H\033[=3h\033[2J\033[01;01H\033[2J\033[01;01H\033[=3h\033[2J\033[01;01H"
  "BdsDxe: failed to load Boot0001 \"UEFI Misc Device\" from PciRoot(0x0)/Pci(0x1,0x0): Not Found\r\n"
  "BdsDxe: loading Boot0002 \"EFI Internal Shell\" from Fv(7CB8BDC9-F8EB-4F34-AAEA-3EE4AF6516A1)/FvFile(7C04A583-9E3E-4F1C-AD65-E05268D0B4D1)\r\n"
  "\033[2J\033[01;01H\033[01;01HUEFI Interactive Shell v2.2\r\n"
  "EDK II\r\n"
  "\033[07;01HPress \033[1m\033[37m\033[40mESC\033[0m\033[37m\033[40m in 5 seconds to skip "
  "\033[1m\033[33m\033[40mstartup.nsh\033[0m\033[37m\033[40m or any other key to continue."
  "\033[08;01H\033[1m\033[33m\033[40mShell> \033[0m\033[37m\033[40m";

static const char grub_rescue[] =
  "SeaBIOS (version 1.16.2-debian-1.16.2-1)\r\n"
  "Booting from Hard Disk...\r\n"
  "error: unknown filesystem.\r\n"
  "Entering rescue mode...\r\n"
  "grub rescue> ";

/* Debian's initramfs-tools on virtio without virtio_blk. */
static const char initramfs_tools_no_root[] =
  "\033[0;30;47mWelcome to GRUB!\r\n"
  "  Booting `Debian GNU/Linux'\r\n\r\n"
  "Loading Linux 6.1.0-50-amd64 ...\r\n"
  "Loading initial ramdisk ...\r\n"
  "[    0.000000] Linux version 6.1.0-50-amd64 (debian-kernel@lists.debian.org)\r\n"
  "[    5.429495] Run /init as init process\r\n"
  "Loading, please wait...\r\n"
  "Starting systemd-udevd version 252.38-1~deb12u1\r\n"
  "Begin: Loading essential drivers ... done.\r\n"
  "Begin: Waiting for root file system ... Begin: Running /scripts/local-block ... done.\r\n"
  "done.\r\n"
  "Gave up waiting for root file system device.  Common problems:\r\n"
  " - Boot args (cat /proc/cmdline)\r\n"
  "   - Check rootdelay= (did the system wait long enough?)\r\n"
  " - Missing modules (cat /proc/modules; ls /dev)\r\n"
  "ALERT!  /dev/sda1 does not exist.  Dropping to a shell!\r\n"
  "\r\n\r\nBusyBox v1.35.0 (Debian 1:1.35.0-4+b3) built-in shell (ash)\r\n"
  "Enter 'help' for a list of built-in commands.\r\n\r\n"
  "(initramfs) ";

/* dracut with systemd in the initrd, LVM root never found. */
static const char dracut_no_root[] =
  "[    0.000000] Linux version 6.1.0-50-amd64\r\n"
  "[    4.100000] systemd[1]: Running in initrd.\r\n"
  "\r\nWelcome to \033[1mDebian GNU/Linux 12 (bookworm) dracut-059-4 (Initramfs)\033[0m!\r\n\r\n"
  "[  OK  ] Reached target \033[0;1;39mlocal-fs.target\033[0m - Local File Systems.\r\n"
  "[  191.0] dracut-initqueue[301]: Warning: dracut-initqueue: timeout, still waiting for following initqueue hooks:\r\n"
  "[  191.1] dracut-initqueue[301]: Warning: /lib/dracut/hooks/initqueue/finished/devexists-\\x2fdev\\x2fmapper\\x2fvg0-root.sh: \"if ! grep -q After=remote-fs-pre.target /run/systemd/generator/systemd-cryptsetup@*.service 2>/dev/null; then\r\n"
  "[  191.2] dracut-initqueue[301]: Warning: Could not boot.\r\n"
  "         Starting \033[0;1;39mdracut-emergency.service\033[0m - Dracut Emergency Shell...\r\n"
  "Warning: /dev/mapper/vg0-root does not exist\r\n\r\n"
  "Generating \"/run/initramfs/rdsosreport.txt\"\r\n\r\n"
  "Entering emergency mode. Exit the shell to continue.\r\n"
  "Type \"journalctl\" to view system logs.\r\n"
  "dracut:/# ";

/* Real: Debian 12 dracut (systemd in the initrd), LVM root on a virtio
 * disk without virtio drivers, under TCG: the initqueue loops over its
 * timeout scripts (as captured here, trimmed). */
static const char dracut_initqueue_loop[] =
  "[    5.476808] Run /init as init process\r\n"
  "[    5.642154] systemd[1]: Inserted module 'autofs4'\r\n"
  "[    5.773021] systemd[1]: systemd 252.39-1~deb12u2 running in system mode (+PAM +AUDIT +SELINUX +APPARMOR +IMA +SMACK +SECCOMP +GCRYPT -GNUTLS +OPENSSL +ACL +BLKID +CURL +ELFUTILS +FIDO2 +IDN2 -IDN +IPTC +KMOD +LIBCRYPTSETUP +LIBFDISK +PCRE2 -PWQUALITY +P11KIT +QRENCODE +TPM2 +BZIP2 +LZ4 +XZ +ZLIB +ZSTD -BPF_FRAMEWORK -XKBCOMMON +UTMP +SYSVINIT default-hierarchy=unified)\r\n"
  "[    5.773608] systemd[1]: Detected virtualization qemu.\r\n"
  "[    5.773871] systemd[1]: Detected architecture x86-64.\r\n"
  "[    5.774280] systemd[1]: Running in initrd.\r\n"
  "\r\n"
  "Welcome to \033[1mDebian GNU/Linux 12 (bookworm) dracut-059-4 (Initramfs)\033[0m!\r\n"
  "\r\r\n"
  "[    5.809223] systemd[1]: No hostname configured, using default hostname.\r\n"
  "[  355.530615] dracut-initqueue[247]: Warning: dracut-initqueue: timeout, still waiting for following initqueue hooks:\r\n"
  "[  355.578614] dracut-initqueue[247]: Warning: /lib/dracut/hooks/initqueue/finished/devexists-\\x2fdev\\x2fmapper\\x2fvg0-root.sh: \"if ! grep -q After=remote-fs-pre.target /run/systemd/generator/systemd-cryptsetup@*.service 2>/dev/null; then\r\n"
  "[  355.585591] dracut-initqueue[247]:     [ -e \"/dev/mapper/vg0-root\" ]\r\n"
  "[  355.587103] dracut-initqueue[247]: fi\"\r\n"
  "[  355.636823] dracut-initqueue[247]: Warning: dracut-initqueue: starting timeout scripts\r\n"
  "[  357.538282] dracut-initqueue[247]: Warning: dracut-initqueue: timeout, still waiting for following initqueue hooks:\r\n"
  "[  357.605263] dracut-initqueue[247]: Warning: /lib/dracut/hooks/initqueue/finished/devexists-\\x2fdev\\x2fmapper\\x2fvg0-root.sh: \"if ! grep -q After=remote-fs-pre.target /run/systemd/generator/systemd-cryptsetup@*.service 2>/dev/null; then\r\n"
  "[  357.613176] dracut-initqueue[247]:     [ -e \"/dev/mapper/vg0-root\" ]\r\n"
  "[  357.615380] dracut-initqueue[247]: fi\"\r\n"
  "[  357.737226] dracut-initqueue[247]: Warning: dracut-initqueue: starting timeout scripts\r\n"
  "[  359.108227] dracut-initqueue[247]: Warning: dracut-initqueue: timeout, still waiting for following initqueue hooks:\r\n"
  "[  359.197940] dracut-initqueue[247]: Warning: /lib/dracut/hooks/initqueue/finished/devexists-\\x2fdev\\x2fmapper\\x2fvg0-root.sh: \"if ! grep -q After=remote-fs-pre.target /run/systemd/generator/systemd-cryptsetup@*.service 2>/dev/null; then\r\n"
  "[  359.201382] dracut-initqueue[247]:     [ -e \"/dev/mapper/vg0-root\" ]\r\n"
  "[  359.207024] dracut-initqueue[247]: fi\"\r\n"
  "[  359.298061] dracut-initqueue[247]: Warning: dracut-initqueue: starting timeout scripts\r\n";

/* dracut's initqueue still waiting: a warning, not yet a verdict. */
static const char dracut_waiting[] =
  "[    4.100000] systemd[1]: Running in initrd.\r\n"
  "Welcome to Debian GNU/Linux 12 (bookworm) dracut-059-4 (Initramfs)!\r\n"
  "[  131.0] dracut-initqueue[301]: Warning: dracut-initqueue: timeout, still waiting for following initqueue hooks:\r\n";

/* The real root mounted, then a missing /boot in fstab. */
static const char real_root_emergency[] =
  "[    4.100000] systemd[1]: Running in initrd.\r\n"
  "Welcome to Debian GNU/Linux 12 (bookworm) dracut-059-4 (Initramfs)!\r\n"
  "[  OK  ] Reached target initrd-switch-root.target - Switch Root.\r\n"
  "         Starting initrd-switch-root.service - Switch Root...\r\n"
  "[   19.000000] systemd-journald[201]: Received SIGTERM from PID 1 (systemd).\r\n"
  "\r\nWelcome to \033[1mDebian GNU/Linux 12 (bookworm)\033[0m!\r\n\r\n"
  "[ \033[0;1;31mTIME\033[0m ] Timed out waiting for device \033[0;1;39mdev-sdb1.device\033[0m - /dev/sdb1.\r\n"
  "[\033[0;1;33mDEPEND\033[0m] Dependency failed for \033[0;1;39mboot.mount\033[0m - /boot.\r\n"
  "You are in emergency mode. After logging in, type \"journalctl -xb\" to view\r\n"
  "system logs, \"systemctl reboot\" to reboot, \"systemctl default\" or \"exit\"\r\n"
  "to boot into default mode.\r\n"
  "Give root password for maintenance\r\n"
  "(or press Control-D to continue): ";

/* No initramfs at all: the kernel cannot mount root and panics. */
static const char panic_no_initrd[] =
  "Loading Linux 6.1.0-50-amd64 ...\r\n"
  "[    0.000000] Linux version 6.1.0-50-amd64\r\n"
  "[    3.000000] VFS: Cannot open root device \"sda1\" or unknown-block(0,0): error -6\r\n"
  "[    3.000001] Please append a correct \"root=\" boot option; here are the available partitions:\r\n"
  "[    3.000002] fe00         3145728 vda \r\n"
  "[    3.000003] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\r\n"
  "[    3.000004] CPU: 0 PID: 1 Comm: swapper/0 Not tainted 6.1.0-50-amd64 #1  Debian 6.1.176-1\r\n"
  "[    3.000005] ---[ end Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0) ]---\r\n";

static const char panic_init[] =
  "[    5.429495] Run /init as init process\r\n"
  "Loading, please wait...\r\n"
  "Begin: Running /scripts/init-bottom ... done.\r\n"
  "[    9.000000] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00007f00\r\n";

/* A good boot on the console, up to the login prompt. */
static const char good_console[] =
  "\033[0;30;47mWelcome to GRUB!\r\n"
  "  Booting `Debian GNU/Linux'\r\n"
  "[    0.000000] Linux version 6.1.0-50-amd64\r\n"
  "[    5.429495] Run /init as init process\r\n"
  "Loading, please wait...\r\n"
  "\r\nWelcome to \033[1mDebian GNU/Linux 12 (bookworm)\033[0m!\r\n\r\n"
  "[\033[0;32m  OK  \033[0m] Reached target \033[0;1;39mmulti-user.target\033[0m - Multi-User System.\r\n"
  "[ \033[0;1;31mTIME\033[0m ] Timed out waiting for device \033[0;1;39mdev-sda2.device\033[0m - /dev/sda2.\r\n"
  "\r\nDebian GNU/Linux 12 p2v-debian-bios ttyS0\r\n\r\n"
  "p2v-debian-bios login: ";

#define GOOD_REPORT                                                     \
  "P2V-SMOKE {\"target\":\"graphical.target\",\"target_state\":\"active\","      \
  "\"system_state\":\"degraded\",\"kernel\":\"6.1.0-50-amd64\","          \
  "\"root_source\":\"/dev/vda1\",\"root_fstype\":\"ext4\","               \
  "\"root_disks\":[{\"name\":\"/dev/vda\",\"driver\":\"virtio_blk\"}],"   \
  "\"interfaces\":[{\"name\":\"eno1\",\"mac\":\"52:54:00:12:34:56\","     \
  "\"state\":\"up\",\"driver\":\"virtio_net\",\"ipv4\":[\"192.0.2.10/24\"]}," \
  "{\"name\":\"ens4\",\"mac\":\"52:54:00:aa:bb:cc\",\"state\":\"down\"," \
  "\"driver\":\"virtio_net\",\"ipv4\":[]}],"                              \
  "\"failed_units\":[\"dev-disk-by\\\\x2duuid-7d1c.swap\",\"ifup@eth1.service\"]," \
  "\"uptime\":40.12}"

/* ---- tests --------------------------------------------------------------- */

static void
test_nothing_yet (void)
{
  struct p2v_smoke_result res = { 0 };

  classify (&res, NULL, NULL, NULL, P2V_SMOKE_RUNNING);
  CHECK_VERDICT (&res, P2V_SMOKE_PENDING, P2V_SMOKE_STAGE_NONE);
  CHECK (res.reached == P2V_SMOKE_REACHED_NOTHING);
  classify (&res, "", "", "", P2V_SMOKE_TIMED_OUT);
  CHECK_VERDICT (&res, P2V_SMOKE_FAIL, P2V_SMOKE_STAGE_TIMEOUT);
  classify (&res, "", "", "", P2V_SMOKE_EXITED);
  CHECK_VERDICT (&res, P2V_SMOKE_FAIL, P2V_SMOKE_STAGE_GUEST_STOPPED);
  smoke_result_free (&res);
}

static void
test_no_boot_loader (void)
{
  struct p2v_smoke_result res = { 0 };

  /* Decisive while qemu still runs: SeaBIOS would retry forever. */
  classify (&res, seabios_blank, NULL, NULL, P2V_SMOKE_RUNNING);
  CHECK_VERDICT (&res, P2V_SMOKE_FAIL, P2V_SMOKE_STAGE_NO_BOOT_LOADER);
  CHECK (res.evidence && strcmp (res.evidence, "No bootable device.") == 0);
  CHECK (res.reached == P2V_SMOKE_REACHED_FIRMWARE);
  CHECK (smoke_strv_len (res.console_tail) == 6);
  CHECK (strcmp (res.console_tail[0], "SeaBIOS (version 1.16.2-debian-1.16.2-1)") == 0);

  /* The debug port alone says so too (a console that shows nothing). */
  classify (&res, NULL, seabios_debugcon_blank, NULL, P2V_SMOKE_RUNNING);
  CHECK_VERDICT (&res, P2V_SMOKE_FAIL, P2V_SMOKE_STAGE_NO_BOOT_LOADER);

  /* Only "not a bootable disk" so far: SeaBIOS may still try others. */
  classify (&res, "SeaBIOS\r\nBooting from Hard Disk...\r\nBoot failed: not a bootable disk\r\n",
            NULL, NULL, P2V_SMOKE_RUNNING);
  CHECK_VERDICT (&res, P2V_SMOKE_PENDING, P2V_SMOKE_STAGE_NONE);

  classify (&res, ovmf_blank, NULL, NULL, P2V_SMOKE_RUNNING);
  CHECK_VERDICT (&res, P2V_SMOKE_FAIL, P2V_SMOKE_STAGE_NO_BOOT_LOADER);
  CHECK (res.evidence && strcmp (res.evidence, "UEFI Interactive Shell v2.2") == 0);

  classify (&res, "BdsDxe: No bootable option or device was found.\r\n", NULL, NULL,
            P2V_SMOKE_RUNNING);
  CHECK_VERDICT (&res, P2V_SMOKE_FAIL, P2V_SMOKE_STAGE_NO_BOOT_LOADER);

  classify (&res, grub_rescue, NULL, NULL, P2V_SMOKE_RUNNING);
  CHECK_VERDICT (&res, P2V_SMOKE_FAIL, P2V_SMOKE_STAGE_NO_BOOT_LOADER);
  CHECK (res.evidence && strcmp (res.evidence, "Entering rescue mode...") == 0);

  classify (&res, "Booting `Debian'\r\nerror: file `/boot/vmlinuz' not found.\r\n"
            "error: you need to load the kernel first.\r\n\r\nPress any key to continue...",
            NULL, NULL, P2V_SMOKE_RUNNING);
  CHECK_VERDICT (&res, P2V_SMOKE_FAIL, P2V_SMOKE_STAGE_NO_BOOT_LOADER);
  smoke_result_free (&res);
}

static void
test_root_not_found (void)
{
  struct p2v_smoke_result res = { 0 };
  char *console;
  size_t cut = strstr (initramfs_tools_no_root, "Gave up") - initramfs_tools_no_root;

  classify (&res, initramfs_tools_no_root, NULL, NULL, P2V_SMOKE_RUNNING);
  CHECK_VERDICT (&res, P2V_SMOKE_FAIL, P2V_SMOKE_STAGE_ROOT_NOT_FOUND);
  CHECK (res.evidence && strncmp (res.evidence, "Gave up waiting for root file system device.", 44) == 0);
  CHECK (res.reached == P2V_SMOKE_REACHED_INITRAMFS);
  CHECK (strcmp (res.console_tail[smoke_strv_len (res.console_tail) - 1], "(initramfs)") == 0);

  /* Still waiting: nothing decided; at the timeout, the wait is the stage. */
  smoke_classify (initramfs_tools_no_root, cut, NULL, 0, NULL, 0,
                  P2V_SMOKE_RUNNING, &res);
  CHECK_VERDICT (&res, P2V_SMOKE_PENDING, P2V_SMOKE_STAGE_NONE);
  smoke_classify (initramfs_tools_no_root, cut, NULL, 0, NULL, 0,
                  P2V_SMOKE_TIMED_OUT, &res);
  CHECK_VERDICT (&res, P2V_SMOKE_FAIL, P2V_SMOKE_STAGE_ROOT_NOT_FOUND);

  /* dracut: its emergency shell inside the initrd is "root not found". */
  classify (&res, dracut_no_root, NULL, NULL, P2V_SMOKE_RUNNING);
  CHECK_VERDICT (&res, P2V_SMOKE_FAIL, P2V_SMOKE_STAGE_ROOT_NOT_FOUND);
  CHECK (res.evidence && strstr (res.evidence, "Could not boot"));

  classify (&res, dracut_waiting, NULL, NULL, P2V_SMOKE_RUNNING);
  CHECK_VERDICT (&res, P2V_SMOKE_PENDING, P2V_SMOKE_STAGE_NONE);
  classify (&res, dracut_waiting, NULL, NULL, P2V_SMOKE_TIMED_OUT);
  CHECK_VERDICT (&res, P2V_SMOKE_FAIL, P2V_SMOKE_STAGE_ROOT_NOT_FOUND);
  CHECK (res.evidence && strstr (res.evidence, "dracut-initqueue: timeout"));

  /* The initqueue gave up thrice after its timeout scripts: decided, and
   * its first warning is the evidence.  Once or twice: still waiting. */
  classify (&res, dracut_initqueue_loop, NULL, NULL, P2V_SMOKE_RUNNING);
  CHECK_VERDICT (&res, P2V_SMOKE_FAIL, P2V_SMOKE_STAGE_ROOT_NOT_FOUND);
  CHECK (res.evidence && strstr (res.evidence, "[  355.530615] dracut-initqueue[247]: Warning: dracut-initqueue: timeout"));
  CHECK (res.reached == P2V_SMOKE_REACHED_INITRAMFS);
  smoke_classify (dracut_initqueue_loop,
                  strstr (dracut_initqueue_loop, "[  359.298061]") - dracut_initqueue_loop,
                  NULL, 0, NULL, 0, P2V_SMOKE_RUNNING, &res);
  CHECK_VERDICT (&res, P2V_SMOKE_PENDING, P2V_SMOKE_STAGE_NONE);

  /* Degraded RAID: the timeout scripts start it and the boot goes on. */
  console = xasprintf ("%.*sSwitching root.\r\nWelcome to Debian GNU/Linux 12 (bookworm)!\r\n"
                       "[  OK  ] Reached target local-fs.target - Local File Systems.\r\n",
                       (int) (strstr (dracut_initqueue_loop, "[  357.538282]") - dracut_initqueue_loop),
                       dracut_initqueue_loop);
  classify (&res, console, NULL, NULL, P2V_SMOKE_RUNNING);
  CHECK_VERDICT (&res, P2V_SMOKE_PENDING, P2V_SMOKE_STAGE_NONE);
  CHECK (res.reached == P2V_SMOKE_REACHED_ROOT);
  classify (&res, console, NULL, NULL, P2V_SMOKE_TIMED_OUT);
  CHECK_VERDICT (&res, P2V_SMOKE_FAIL, P2V_SMOKE_STAGE_TIMEOUT);
  free (console);

  /* Stuck in the initramfs at the timeout, without any warning. */
  classify (&res, "[    5.4] Run /init as init process\r\nLoading, please wait...\r\n",
            NULL, NULL, P2V_SMOKE_TIMED_OUT);
  CHECK_VERDICT (&res, P2V_SMOKE_FAIL, P2V_SMOKE_STAGE_TIMEOUT);
  CHECK (res.evidence && strstr (res.evidence, "still in the initramfs"));

  /* The emergency shell alone, inside the initrd. */
  classify (&res, "systemd[1]: Running in initrd.\r\nYou are in emergency mode. After logging in\r\n",
            NULL, NULL, P2V_SMOKE_RUNNING);
  CHECK_VERDICT (&res, P2V_SMOKE_FAIL, P2V_SMOKE_STAGE_ROOT_NOT_FOUND);
  smoke_result_free (&res);
}

static void
test_emergency (void)
{
  struct p2v_smoke_result res = { 0 };

  classify (&res, real_root_emergency, NULL, NULL, P2V_SMOKE_RUNNING);
  CHECK_VERDICT (&res, P2V_SMOKE_FAIL, P2V_SMOKE_STAGE_EMERGENCY);
  CHECK (res.evidence && strncmp (res.evidence, "You are in emergency mode.", 26) == 0);
  CHECK (res.reached == P2V_SMOKE_REACHED_ROOT);

  /* No initramfs marks at all: emergency mode of the real system. */
  classify (&res, "Welcome to Debian GNU/Linux 12 (bookworm)!\r\n"
            "Cannot open access to console, the root account is locked.\r\n",
            NULL, NULL, P2V_SMOKE_RUNNING);
  CHECK_VERDICT (&res, P2V_SMOKE_FAIL, P2V_SMOKE_STAGE_EMERGENCY);

  /* A device timeout on the real root (swap) is no "root not found". */
  classify (&res, good_console, NULL, NULL, P2V_SMOKE_TIMED_OUT);
  CHECK_VERDICT (&res, P2V_SMOKE_FAIL, P2V_SMOKE_STAGE_TIMEOUT);
  CHECK (res.reached == P2V_SMOKE_REACHED_TARGET);
  smoke_result_free (&res);
}

static void
test_kernel_panic (void)
{
  struct p2v_smoke_result res = { 0 };

  classify (&res, panic_no_initrd, NULL, NULL, P2V_SMOKE_RUNNING);
  CHECK_VERDICT (&res, P2V_SMOKE_FAIL, P2V_SMOKE_STAGE_KERNEL_PANIC);
  CHECK (res.evidence && strstr (res.evidence, "Kernel panic - not syncing: VFS: Unable to mount root fs"));
  CHECK (res.reached == P2V_SMOKE_REACHED_KERNEL);

  classify (&res, panic_init, NULL, NULL, P2V_SMOKE_RUNNING);
  CHECK_VERDICT (&res, P2V_SMOKE_FAIL, P2V_SMOKE_STAGE_KERNEL_PANIC);
  CHECK (res.reached == P2V_SMOKE_REACHED_ROOT);

  /* panic=N in the command line: the guest resets; the panic still names it. */
  classify (&res, panic_init, NULL, NULL, P2V_SMOKE_EXITED);
  CHECK_VERDICT (&res, P2V_SMOKE_FAIL, P2V_SMOKE_STAGE_KERNEL_PANIC);
  smoke_result_free (&res);
}

static void
test_report (void)
{
  struct p2v_smoke_result res = { 0 };
  char *console;

  /* The login prompt alone is not a pass: the guest has not spoken. */
  classify (&res, good_console, NULL, NULL, P2V_SMOKE_RUNNING);
  CHECK_VERDICT (&res, P2V_SMOKE_PENDING, P2V_SMOKE_STAGE_NONE);
  CHECK (res.reached == P2V_SMOKE_REACHED_TARGET);

  classify (&res, good_console, NULL, GOOD_REPORT "\r\n", P2V_SMOKE_RUNNING);
  CHECK_VERDICT (&res, P2V_SMOKE_PASS, P2V_SMOKE_STAGE_NONE);
  CHECK (res.target && strcmp (res.target, "graphical.target") == 0);
  CHECK (res.kernel && strcmp (res.kernel, "6.1.0-50-amd64") == 0);
  CHECK (res.root_source && strcmp (res.root_source, "/dev/vda1") == 0);
  CHECK (res.root_fstype && strcmp (res.root_fstype, "ext4") == 0);
  CHECK (smoke_strv_len (res.root_disks) == 1 &&
         strcmp (res.root_disks[0], "/dev/vda") == 0 &&
         strcmp (res.root_disk_drivers[0], "virtio_blk") == 0);
  CHECK (res.n_interfaces == 2);
  if (res.n_interfaces == 2) {
    CHECK (strcmp (res.interfaces[0].name, "eno1") == 0);
    CHECK (strcmp (res.interfaces[0].mac, "52:54:00:12:34:56") == 0);
    CHECK (strcmp (res.interfaces[0].state, "up") == 0);
    CHECK (smoke_strv_len (res.interfaces[0].ipv4) == 1 &&
           strcmp (res.interfaces[0].ipv4[0], "192.0.2.10/24") == 0);
    CHECK (smoke_strv_len (res.interfaces[1].ipv4) == 0);
  }
  CHECK (smoke_strv_len (res.failed_units) == 2 &&
         strcmp (res.failed_units[0], "dev-disk-by\\x2duuid-7d1c.swap") == 0);
  CHECK (res.guest_uptime > 40.1 && res.guest_uptime < 40.2);

  /* The report on the console only (no second serial port in the guest),
   * with CRs; and a console tail that leaves the report line out. */
  console = xasprintf ("%s\r\n" GOOD_REPORT "\r\n", good_console);
  classify (&res, console, NULL, NULL, P2V_SMOKE_RUNNING);
  CHECK_VERDICT (&res, P2V_SMOKE_PASS, P2V_SMOKE_STAGE_NONE);
  for (size_t i = 0; res.console_tail[i]; i++)
    CHECK (strncmp (res.console_tail[i], "P2V-SMOKE", 9) != 0);
  free (console);

  /* Half-written on the report port, garbled by a kernel message on the
   * console: wait for more. */
  classify (&res, "P2V-SMOKE {\"target\":\"multi-user.target\",[  52.5] kvm: Nested\r\n",
            NULL, "P2V-SMOKE {\"target\":\"multi-user.ta", P2V_SMOKE_RUNNING);
  CHECK_VERDICT (&res, P2V_SMOKE_PENDING, P2V_SMOKE_STAGE_NONE);
  CHECK (res.target == NULL);
  smoke_result_free (&res);
}

static void
test_report_failures (void)
{
  struct p2v_smoke_result res = { 0 };

  classify (&res, NULL, NULL,
            "P2V-SMOKE {\"target\":\"multi-user.target\",\"target_state\":\"active\","
            "\"root_source\":\"/dev/sda1\",\"root_fstype\":\"ext4\","
            "\"root_disks\":[{\"name\":\"/dev/sda\",\"driver\":\"ahci\"}]}\n",
            P2V_SMOKE_RUNNING);
  CHECK_VERDICT (&res, P2V_SMOKE_FAIL, P2V_SMOKE_STAGE_ROOT_NOT_VIRTIO);
  CHECK (res.evidence && strstr (res.evidence, "'/dev/sda' (driver 'ahci')"));

  classify (&res, NULL, NULL,
            "P2V-SMOKE {\"target\":\"graphical.target\",\"target_state\":\"inactive\","
            "\"system_state\":\"degraded\",\"root_disks\":[{\"name\":\"/dev/vda\",\"driver\":\"virtio_blk\"}]}\n",
            P2V_SMOKE_RUNNING);
  CHECK_VERDICT (&res, P2V_SMOKE_FAIL, P2V_SMOKE_STAGE_TARGET_NOT_REACHED);
  CHECK (res.evidence && strstr (res.evidence, "'graphical.target' is 'inactive'"));

  classify (&res, NULL, NULL,
            "P2V-SMOKE {\"target_state\":\"active\",\"root_source\":\"none\","
            "\"root_fstype\":\"tmpfs\",\"root_disks\":[]}\n", P2V_SMOKE_RUNNING);
  CHECK_VERDICT (&res, P2V_SMOKE_FAIL, P2V_SMOKE_STAGE_ROOT_NOT_VIRTIO);

  /* No driver known: the name decides. */
  classify (&res, NULL, NULL,
            "P2V-SMOKE {\"target_state\":\"active\",\"root_fstype\":\"xfs\","
            "\"root_disks\":[{\"name\":\"/dev/vda\",\"driver\":\"\"}]}\n", P2V_SMOKE_RUNNING);
  CHECK_VERDICT (&res, P2V_SMOKE_PASS, P2V_SMOKE_STAGE_NONE);

  /* LVM over two disks, one not virtio. */
  classify (&res, NULL, NULL,
            "P2V-SMOKE {\"target_state\":\"active\",\"root_fstype\":\"ext4\","
            "\"root_disks\":[{\"name\":\"/dev/vda\",\"driver\":\"virtio_blk\"},"
            "{\"name\":\"/dev/sdb\",\"driver\":\"sd\"}]}\n", P2V_SMOKE_RUNNING);
  CHECK_VERDICT (&res, P2V_SMOKE_FAIL, P2V_SMOKE_STAGE_ROOT_NOT_VIRTIO);

  /* Not JSON at all. */
  classify (&res, "P2V-SMOKE {oops\r\n", NULL, NULL, P2V_SMOKE_TIMED_OUT);
  CHECK_VERDICT (&res, P2V_SMOKE_FAIL, P2V_SMOKE_STAGE_TIMEOUT);
  smoke_result_free (&res);
}

static void
test_console_lines (void)
{
  static const char text[] =
    "\033[0;32m  OK  \033[0m] Reached\ttarget\r\n"       /* colours, tab */
    "bad \xff byte, good \xe2\x97\x8f bullet\n"            /* UTF-8 */
    "over\xc0\xaflong \xed\xa0\x80 surrogate\n"            /* invalid forms */
    "nul\0byte\r\r\n"
    "\033[07;01HPress ESC\033[07;01HPress ESC again"     /* cursor moves */
    "\033]0;title\007after osc   \n"
    "\033(Bcharset\n"
    "trailing \033[";
  char **v = smoke_console_lines (text, sizeof text - 1);
  static const char *const want[] = {
    "  OK  ] Reached target",
    "bad ? byte, good \xe2\x97\x8f bullet",
    "over??long ??? surrogate",
    "nulbyte",
    "Press ESC",
    "Press ESC againafter osc",
    "charset",
    "trailing",
    NULL,
  };
  size_t n = smoke_strv_len (v);

  CHECK (n == ARRAY_SIZE (want) - 1);
  for (size_t i = 0; i < n && want[i]; i++) {
    CHECK (strcmp (v[i], want[i]) == 0);
    if (strcmp (v[i], want[i]) != 0)
      fprintf (stderr, "  line %zu: '%s' != '%s'\n", i, v[i], want[i]);
  }
  smoke_strv_free (v);

  v = smoke_console_lines (NULL, 0);
  CHECK (v && v[0] == NULL);
  smoke_strv_free (v);
  v = smoke_console_lines ("\r\n\r\n   \n", 7);
  CHECK (v && v[0] == NULL);
  smoke_strv_free (v);
}

static void
test_grub_cfg_edit (void)
{
  static const char cfg[] =
    "set default=\"0\"\n"
    "# linux /boot/vmlinuz in a comment\n"
    "menuentry 'Debian' {\n"
    "\tlinux\t/boot/vmlinuz-6.1.0 root=/dev/sda1 ro  console=ttyS0,115200 \n"
    "\tinitrd\t/boot/initrd.img-6.1.0\n"
    "}\n"
    "menuentry 'old' {\r\n"
    "  linux16 /vmlinuz root=UUID=x ro\r\n"
    "  linuxefi /vmlinuz root=UUID=x \\\n"
    "      ro\n"
    "  linux_not_a_command x\n"
    "}\n"
    "linux /vmlinuz-last root=/dev/vda1";
  static const char want[] =
    "set default=\"0\"\n"
    "# linux /boot/vmlinuz in a comment\n"
    "menuentry 'Debian' {\n"
    "\tlinux\t/boot/vmlinuz-6.1.0 root=/dev/sda1 ro  console=ttyS0,115200 ARGS \n"
    "\tinitrd\t/boot/initrd.img-6.1.0\n"
    "}\n"
    "menuentry 'old' {\r\n"
    "  linux16 /vmlinuz root=UUID=x ro ARGS\r\n"
    "  linuxefi /vmlinuz root=UUID=x \\\n"
    "      ro\n"
    "  linux_not_a_command x\n"
    "}\n"
    "linux /vmlinuz-last root=/dev/vda1 ARGS";
  size_t n;
  char *r = smoke_edit_grub_cfg (cfg, "ARGS", &n);

  CHECK (n == 3);
  CHECK (strcmp (r, want) == 0);
  if (strcmp (r, want) != 0)
    fprintf (stderr, "  got:\n%s\n", r);
  free (r);

  /* An EFI stub that only chains to the real grub.cfg: unchanged. */
  r = smoke_edit_grub_cfg ("search.fs_uuid 7d1c root hd0,gpt2\n"
                           "configfile ($root)/boot/grub/grub.cfg\n", "ARGS", &n);
  CHECK (n == 0);
  CHECK (strcmp (r, "search.fs_uuid 7d1c root hd0,gpt2\n"
                 "configfile ($root)/boot/grub/grub.cfg\n") == 0);
  free (r);
  r = smoke_edit_grub_cfg ("", "ARGS", &n);
  CHECK (n == 0 && strcmp (r, "") == 0);
  free (r);
}

static void
test_bls_edit (void)
{
  size_t n;
  char *r = smoke_edit_bls_entry ("title Fedora\nlinux /vmlinuz\n"
                                  "options $kernelopts rhgb quiet\n", "ARGS", &n);

  CHECK (n == 1);
  CHECK (strcmp (r, "title Fedora\nlinux /vmlinuz\noptions $kernelopts rhgb quiet ARGS\n") == 0);
  free (r);
  r = smoke_edit_bls_entry ("title Fedora\nlinux /vmlinuz", "ARGS", &n);
  CHECK (n == 1);
  CHECK (strcmp (r, "title Fedora\nlinux /vmlinuz\noptions ARGS\n") == 0);
  free (r);
}

static void
test_json_and_names (void)
{
  struct p2v_smoke_result res = { 0 };
  json_object *o, *v;

  classify (&res, good_console, NULL, GOOD_REPORT "\n", P2V_SMOKE_RUNNING);
  res.accel = "tcg";
  res.firmware = "bios";
  res.seconds = 52.16;
  o = smoke_result_to_json (&res);
  CHECK (json_object_object_get_ex (o, "verdict", &v) &&
         strcmp (json_object_get_string (v), "pass") == 0);
  CHECK (json_object_object_get_ex (o, "stage", &v) && v == NULL);
  CHECK (json_object_object_get_ex (o, "seconds", &v) &&
         json_object_get_double (v) > 52.0 && json_object_get_double (v) < 52.2);
  CHECK (json_object_object_get_ex (o, "interfaces", &v) &&
         json_object_array_length (v) == 2);
  CHECK (json_object_object_get_ex (o, "console_tail", &v) &&
         json_object_array_length (v) > 0);
  json_object_put (o);
  smoke_result_free (&res);
  CHECK (res.kernel == NULL && res.n_interfaces == 0);
  smoke_result_free (NULL);

  CHECK (smoke_stage_name (P2V_SMOKE_STAGE_NONE) == NULL);
  CHECK (strcmp (smoke_stage_name (P2V_SMOKE_STAGE_ROOT_NOT_FOUND), "root not found") == 0);
  CHECK (strcmp (smoke_stage_name (P2V_SMOKE_STAGE_NO_BOOT_LOADER), "no boot loader") == 0);
  CHECK (strcmp (smoke_stage_name (P2V_SMOKE_STAGE_KERNEL_PANIC), "kernel panic") == 0);
  CHECK (strcmp (smoke_stage_name (P2V_SMOKE_STAGE_EMERGENCY), "emergency mode") == 0);
  CHECK (strcmp (smoke_stage_name (P2V_SMOKE_STAGE_TIMEOUT), "timeout") == 0);
  CHECK (strcmp (smoke_reached_name (P2V_SMOKE_REACHED_INITRAMFS), "initramfs") == 0);
}

int
main (void)
{
  p2v_error_set_quiet (true);
  test_nothing_yet ();
  test_no_boot_loader ();
  test_root_not_found ();
  test_emergency ();
  test_kernel_panic ();
  test_report ();
  test_report_failures ();
  test_console_lines ();
  test_grub_cfg_edit ();
  test_bls_edit ();
  test_json_and_names ();
  return unit_finish ("test-smoke-classify");
}
