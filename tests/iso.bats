#!/usr/bin/env bats
# iso.bats: `make iso` (iso/build-iso.sh) and the capture environment it
# boots, under TCG: the image itself (hybrid BIOS/UEFI, what the initramfs
# holds), a real BIOS boot through grub from the CD with the whiptail menu
# driven over the serial port, a UEFI boot from the image as a USB stick,
# and headless runs (-kernel/-initrd, the ISO's own kernel and initramfs)
# against a copy-on-write overlay of the debian-bios server.  The source
# overlay must stay empty (qemu-img map: no data of its own) in every run.

load helpers

teardown() {
  [ -z "${LOOP:-}" ] || losetup -d "$LOOP" 2>/dev/null || true
  [ -z "${SSHD_PID:-}" ] || kill "$SSHD_PID" 2>/dev/null || true
  [ -z "${T:-}" ] || rm -rf "$T"
}

setup_file() {
  command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 is not installed"
  command -v grub-mkrescue >/dev/null || skip "grub-mkrescue is not installed (.ci/install-deps)"
  [ "$(id -u)" -eq 0 ] || skip "building the fixture and the ISO cache needs root"
  local top
  top="$(cd "$BATS_TEST_DIRNAME/.." && pwd)"
  ISO_DIR="$("$top/iso/build-iso.sh" --print-dir)"
  FIXTURE="$("$top/tests/fixtures/build-server.sh" debian-bios)"
  # The headless runs share one boot: its target disk is read by two tests.
  SHARED="$BATS_FILE_TMPDIR"
  export ISO_DIR FIXTURE SHARED
}

# qemu, TCG, q35, no display, the serial port in LOG, exits on poweroff.
iso_qemu() {
  local log=$1 tmo=$2
  shift 2
  timeout "$tmo" qemu-system-x86_64 -accel tcg -machine q35 -m 1024 -smp 2 \
    -nodefaults -display none -device VGA -monitor none -no-reboot \
    -serial "file:$log" "$@"
}

# The server's disk as the first SATA disk, through a throwaway overlay.
source_overlay() {
  qemu-img create -q -f qcow2 -b "$FIXTURE" -F raw "$1"
}
source_args() {
  echo "-drive file=$1,format=qcow2,if=none,id=src,cache=unsafe -device ide-hd,drive=src,bus=ide.0"
}

# Nothing was written to the source: the overlay holds no data of its own.
source_untouched() {
  local n
  n="$(qemu-img map --output=json "$1" | jq '[.[] | select(.depth == 0 and .data)] | length')"
  [ "$n" -eq 0 ] || { echo "the source overlay '$1' has $n written ranges"; return 1; }
}

# Console text without terminal escapes and CRs.
console_text() {
  sed -e 's/\x1b\[[0-9;?]*[A-Za-z]//g' -e 's/\r//g' "$1" | tr -cd '\11\12\40-\176'
}

# The target: a blank raw disk on virtio (/dev/vda in the guest).  A second
# SATA disk would be simpler, but SATA ports are probed in parallel and
# sda/sdb swap places between boots (seen here); vda cannot be confused.
target_args() {
  echo "-drive file=$1,format=raw,if=none,id=tgt,cache=unsafe -device virtio-blk-pci,drive=tgt"
}

headless_boot() {
  local log=$1 cmdline=$2
  shift 2
  # shellcheck disable=SC2046
  iso_qemu "$log" 300 -kernel "$ISO_DIR/vmlinuz" -initrd "$ISO_DIR/initrd.img" \
    -append "console=ttyS0,115200 $cmdline" \
    -netdev user,id=n0,restrict=on -device e1000e,netdev=n0,mac=52:54:00:12:34:56,romfile= \
    "$@"
}

@test "iso: make iso builds a hybrid BIOS/UEFI image of at most 300 MB" {
  local iso="$ISO_DIR/p2v-capture.iso" size
  size="$(stat -c %s "$iso")"
  echo "ISO: $size bytes"
  [ "$size" -le $((300 * 1000 * 1000)) ]
  # El Torito: a BIOS boot image and a UEFI one.
  run xorriso -indev "$iso" -report_el_torito plain
  [ "$status" -eq 0 ]
  echo "$output" | grep -E '^El Torito boot img : +1 +BIOS'
  echo "$output" | grep -E '^El Torito boot img : +2 +UEFI'
  # Hybrid for USB sticks: an MBR boot signature and a GPT with an ESP.
  [ "$(od -An -tx1 -j510 -N2 "$iso" | tr -d ' ')" = "55aa" ]
  run sfdisk -J "$iso"
  [ "$status" -eq 0 ]
  echo "$output" | jq -e '.partitiontable.partitions[] | select(.type == "C12A7328-F81F-11D2-BA4B-00A0C93EC93B")'
  [ "$(blkid -o value -s LABEL "$iso")" = "P2V_CAPTURE" ]
  # The files grub boots, and the grub menu with the serial terminal.
  run xorriso -osirrox on -indev "$iso" -extract /boot/grub/grub.cfg "$T/grub.cfg"
  [ "$status" -eq 0 ]
  grep -q 'serial --unit=0 --speed=115200' "$T/grub.cfg"
  grep -q 'terminal_output console serial' "$T/grub.cfg"
  grep -q 'linux /boot/vmlinuz console=ttyS0,115200 console=tty0' "$T/grub.cfg"
  xorriso -indev "$iso" -find /boot -name vmlinuz 2>/dev/null | grep -q vmlinuz
  xorriso -indev "$iso" -find /boot -name initrd.img 2>/dev/null | grep -q initrd.img
}

@test "iso: the initramfs holds p2v, ssh, whiptail and server drivers, and they run" {
  mkdir "$T/root"
  (cd "$T/root" && zstd -dc "$ISO_DIR/initrd.img" | cpio -idm --quiet)
  [ -x "$T/root/init" ]
  [ -x "$T/root/usr/sbin/p2v-live" ]
  # The programs start with only the libraries inside the image (ssh wants
  # /dev/null, devtmpfs gives it on the live system).
  mknod -m 666 "$T/root/dev/null" c 1 3
  run chroot "$T/root" /usr/bin/p2v --version
  [ "$status" -eq 0 ]
  [[ "$output" == p2v\ * ]]
  run chroot "$T/root" /usr/bin/ssh -V
  [ "$status" -eq 0 ]
  [[ "$output" == *OpenSSH* ]]
  run chroot "$T/root" /usr/bin/whiptail --version
  [ "$status" -eq 0 ]
  run chroot "$T/root" /usr/sbin/mkfs.ext4 -V
  [ "$status" -eq 0 ]
  run chroot "$T/root" /usr/bin/busybox udhcpc --help
  [[ "$output" == *udhcpc* ]]
  [ -f "$T/root/usr/share/terminfo/l/linux" ]
  [ -f "$T/root/usr/share/terminfo/v/vt102" ]
  # Drivers for server disks and NICs, resolvable by the image's own
  # modules.dep (depmod was run for the image).
  local kver m
  kver="$(ls "$T/root/usr/lib/modules")"
  for m in ahci nvme megaraid_sas mpt3sas hpsa smartpqi aacraid virtio_blk \
    virtio_scsi usb_storage uas raid1 dm_mod e1000e igb ixgbe i40e tg3 bnx2 \
    bnxt_en virtio_net r8169 e1000 isofs vfat ext4; do
    run chroot "$T/root" /usr/sbin/modprobe -S "$kver" --show-depends "$m"
    [ "$status" -eq 0 ] || { echo "module $m: $output"; return 1; }
  done
  # A PCI alias resolves to its driver (what the boot does for each device):
  # 8086:10d3 is the 82574L that qemu's e1000e emulates.
  run chroot "$T/root" /usr/sbin/modprobe -S "$kver" -R 'pci:v00008086d000010D3sv00008086sd00000000bc02sc00i00'
  [ "$status" -eq 0 ]
  [[ "$output" == *e1000e* ]]
}

@test "iso: a second build with the same inputs reuses the cache" {
  local start end path
  start="$(date +%s)"
  path="$("$TOP_DIR/iso/build-iso.sh" -o "$T/copy.iso")"
  end="$(date +%s)"
  [ "$path" = "$ISO_DIR/p2v-capture.iso" ]
  [ $((end - start)) -le 10 ]
  cmp "$T/copy.iso" "$ISO_DIR/p2v-capture.iso"
  ! ls -A "$T" | grep -q partial
}

@test "iso: BIOS CD boot through grub; the whiptail menu on ttyS0: disks, NICs, a shell, a capture to a blank disk" {
  command -v expect >/dev/null || skip "expect is not installed (.ci/install-deps)"
  source_overlay "$T/src.qcow2"
  truncate -s 2G "$T/tgt.raw"
  # shellcheck disable=SC2046
  run env P2V_EXPECT_LOG="$T/console.log" P2V_CAPTURE_TIMEOUT=900 expect -f "$TESTS_DIR/iso/menu.exp" -- \
    -accel tcg -machine q35 -m 1024 -smp 2 -nodefaults -display none -device VGA \
    -monitor none -serial stdio -no-reboot \
    -drive "file=$ISO_DIR/p2v-capture.iso,format=raw,if=none,id=cd,readonly=on" \
    -device ide-cd,drive=cd,bus=ide.2,bootindex=0 \
    $(source_args "$T/src.qcow2") $(target_args "$T/tgt.raw") \
    -netdev user,id=n0,restrict=on -device e1000e,netdev=n0,mac=52:54:00:12:34:56,romfile=
  echo "$output"
  [ "$status" -eq 0 ] || { console_text "$T/console.log" | tail -40; return 1; }
  # The boot medium was found (keys and known_hosts are read from it).
  console_text "$T/console.log" | grep -q 'p2v-live: firmware bios'
  console_text "$T/console.log" | grep -q 'p2v-live: boot medium /dev/sr0'
  source_untouched "$T/src.qcow2"
  # The capture from the menu: the blank disk became ext4 and holds the log
  # (and the bundle, once p2v capture exists).
  [ "$(blkid -o value -s LABEL "$T/tgt.raw")" = P2V-BUNDLES ]
  e2fsck -fn "$T/tgt.raw"
  if p2v help capture >/dev/null 2>&1; then
    debugfs -R "dump /bundles/menu1/p2v-capture.log $T/log" "$T/tgt.raw"
    debugfs -R "stat /bundles/menu1/manifest.json" "$T/tgt.raw" | grep -q 'Type: regular'
  else
    debugfs -R "dump /bundles/p2v-capture.log $T/log" "$T/tgt.raw"
  fi
  grep -q "capture: target '/dev/vda:/bundles/menu1', disks 'sda'" "$T/log"
}

@test "iso: UEFI USB boot, options typed in grub: a wrong p2v.target is reported, then poweroff, nothing written" {
  command -v expect >/dev/null || skip "expect is not installed (.ci/install-deps)"
  local code=/usr/share/OVMF/OVMF_CODE_4M.fd vars=/usr/share/OVMF/OVMF_VARS_4M.fd
  [ -f "$code" ] && [ -f "$vars" ] || skip "OVMF is not installed (ovmf)"
  cp "$vars" "$T/vars.fd"
  source_overlay "$T/src.qcow2"
  # shellcheck disable=SC2046
  run env P2V_EXPECT_LOG="$T/console.log" P2V_TIMEOUT=400 expect -f "$TESTS_DIR/iso/grub-boot.exp" -- \
    "p2v.target=/dev/sdz p2v.disks=sda p2v.post=poweroff p2v.wait=3" \
    -accel tcg -machine q35 -m 1024 -smp 2 -nodefaults -display none -device VGA \
    -monitor none -serial stdio -no-reboot \
    -drive "if=pflash,format=raw,unit=0,readonly=on,file=$code" \
    -drive "if=pflash,format=raw,unit=1,file=$T/vars.fd" \
    -device qemu-xhci \
    -drive "file=$ISO_DIR/p2v-capture.iso,format=raw,if=none,id=usb,readonly=on" \
    -device usb-storage,drive=usb,bootindex=0 \
    $(source_args "$T/src.qcow2") \
    -netdev user,id=n0,restrict=on -device e1000e,netdev=n0,mac=52:54:00:12:34:56,romfile=
  echo "$output"
  console_text "$T/console.log" > "$T/console.txt"
  echo "--- console (end)"; tail -25 "$T/console.txt"
  [ "$status" -eq 0 ]
  # The options typed in grub reached the kernel; the firmware was UEFI.
  grep -q 'p2v-live: firmware uefi, .*options: p2v.target=/dev/sdz p2v.disks=sda p2v.post=poweroff p2v.wait=3' "$T/console.txt"
  grep -q "p2v-live: boot medium /dev/sd" "$T/console.txt"  # the USB stick
  grep -q "p2v-live: error: target device '/dev/sdz' does not exist" "$T/console.txt"
  grep -q 'p2v-live: RESULT: capture failed' "$T/console.txt"
  grep -q 'p2v-live: p2v.post=poweroff' "$T/console.txt"
  grep -qE 'reboot: Power down' "$T/console.txt"
  source_untouched "$T/src.qcow2"
}

@test "iso: headless without p2v.target says so and powers off; no disk written" {
  source_overlay "$T/src.qcow2"
  truncate -s 2G "$T/tgt.raw"
  # shellcheck disable=SC2046
  run headless_boot "$T/console.log" "p2v.disks=sda p2v.post=poweroff p2v.wait=3" \
    $(source_args "$T/src.qcow2") $(target_args "$T/tgt.raw")
  console_text "$T/console.log" > "$T/console.txt"
  [ "$status" -eq 0 ] || { tail -30 "$T/console.txt"; return 1; }
  grep -q 'p2v-live: error: headless mode needs p2v.target=' "$T/console.txt"
  grep -q 'p2v-live: RESULT: capture failed' "$T/console.txt"
  grep -q 'reboot: Power down' "$T/console.txt"
  source_untouched "$T/src.qcow2"
  [ "$(stat -c %b "$T/tgt.raw")" -eq 0 ]
}

@test "iso: headless refuses a target holding an operating system, and a target among the captured disks" {
  source_overlay "$T/src.qcow2"
  truncate -s 2G "$T/tgt.raw"
  # /dev/sda is the server's own disk: its only file system holds /etc/fstab.
  # shellcheck disable=SC2046
  run headless_boot "$T/console.log" "p2v.target=/dev/sda:/bundles p2v.disks=vda p2v.post=poweroff p2v.wait=3" \
    $(source_args "$T/src.qcow2") $(target_args "$T/tgt.raw")
  console_text "$T/console.log" > "$T/console.txt"
  [ "$status" -eq 0 ] || { tail -30 "$T/console.txt"; return 1; }
  grep -q "p2v-live: error: target '/dev/sda1' holds an operating system (etc/fstab)" "$T/console.txt"
  grep -q 'reboot: Power down' "$T/console.txt"
  source_untouched "$T/src.qcow2"
  [ "$(stat -c %b "$T/tgt.raw")" -eq 0 ]
  # The blank disk as target and as a disk to capture: refused before
  # anything is formatted.
  # shellcheck disable=SC2046
  run headless_boot "$T/console2.log" "p2v.target=/dev/vda p2v.disks=sda,vda p2v.post=poweroff p2v.wait=3" \
    $(source_args "$T/src.qcow2") $(target_args "$T/tgt.raw")
  console_text "$T/console2.log" > "$T/console2.txt"
  [ "$status" -eq 0 ] || { tail -30 "$T/console2.txt"; return 1; }
  grep -q "p2v-live: error: refusing to capture 'vda': it holds the target" "$T/console2.txt"
  source_untouched "$T/src.qcow2"
  [ "$(stat -c %b "$T/tgt.raw")" -eq 0 ]
}

@test "iso: headless capture to a blank disk: formatted ext4, bundle and p2v-capture.log on it, source untouched" {
  source_overlay "$SHARED/src.qcow2"
  truncate -s 6G "$SHARED/tgt.raw"
  # shellcheck disable=SC2046
  run headless_boot "$SHARED/console.log" \
    "p2v.target=/dev/vda:/bundles/server1 p2v.disks=sda p2v.post=poweroff" \
    $(source_args "$SHARED/src.qcow2") $(target_args "$SHARED/tgt.raw")
  console_text "$SHARED/console.log" > "$T/console.txt"
  [ "$status" -eq 0 ] || { tail -40 "$T/console.txt"; return 1; }
  grep -q "p2v-live: target '/dev/vda' is blank: creating ext4" "$T/console.txt"
  grep -q 'p2v-live: target /dev/vda (ext4' "$T/console.txt"
  grep -q 'reboot: Power down' "$T/console.txt"
  source_untouched "$SHARED/src.qcow2"
  # The target, read on the host with e2fsprogs: a clean ext4 labelled
  # P2V-BUNDLES holding the log (and the bundle when capture exists).
  [ "$(blkid -o value -s LABEL "$SHARED/tgt.raw")" = P2V-BUNDLES ]
  e2fsck -fn "$SHARED/tgt.raw"
  if p2v help capture >/dev/null 2>&1; then
    grep -q 'p2v-live: RESULT: capture succeeded: sda -> /dev/vda:/bundles/server1' "$T/console.txt"
    debugfs -R "dump /bundles/server1/p2v-capture.log $T/log" "$SHARED/tgt.raw"
    rm -rf "$SHARED/bundle"
    debugfs -R "rdump /bundles/server1 $SHARED" "$SHARED/tgt.raw"
    mv "$SHARED/server1" "$SHARED/bundle"
    [ -f "$SHARED/bundle/manifest.json" ]
    jq -e '.complete == true and (.disks | length == 1) and .disks[0].file == "disk0.qcow2"' "$SHARED/bundle/manifest.json"
    jq -e '.nics[] | select(.mac == "52:54:00:12:34:56")' "$SHARED/bundle/manifest.json"
    # The captured disk, checked with independent tools: a clean qcow2 of
    # the source's size and partition table, whose root file system passes
    # e2fsck and holds the server's files.
    qcow2_clean "$SHARED/bundle/disk0.qcow2"
    [ "$(qemu-img info --output=json "$SHARED/bundle/disk0.qcow2" | jq '.["virtual-size"]')" -eq "$(stat -c %s "$FIXTURE")" ]
    qemu-img convert -O raw "$SHARED/bundle/disk0.qcow2" "$T/disk0.raw"
    [ "$(sfdisk -J "$T/disk0.raw" | jq -c '[.partitiontable.partitions[] | [.start, .size, .type]]')" = \
      "$(sfdisk -J "$FIXTURE" | jq -c '[.partitiontable.partitions[] | [.start, .size, .type]]')" ]
    local start size
    start="$(sfdisk -J "$T/disk0.raw" | jq '.partitiontable.partitions[0].start')"
    size="$(sfdisk -J "$T/disk0.raw" | jq '.partitiontable.partitions[0].size')"
    LOOP="$(losetup -r -f --show -o $((start * 512)) --sizelimit $((size * 512)) "$T/disk0.raw")"
    e2fsck -fn "$LOOP"
    [ "$(debugfs -R 'cat /etc/hostname' "$LOOP" 2>/dev/null)" = p2v-debian-bios ]
    losetup -d "$LOOP"
    LOOP=""
  else
    # p2v capture is not merged yet: everything up to the call is checked.
    grep -q "p2v-live: error: this p2v binary has no 'capture' command" "$T/console.txt"
    debugfs -R "dump /bundles/p2v-capture.log $T/log" "$SHARED/tgt.raw"
  fi
  grep -q 'cmdline: .*p2v.target=/dev/vda:/bundles/server1' "$T/log"
  grep -qE '^sda +3\.0 GiB +QEMU HARDDISK +\[sda1:ext4 sda2:swap\]' "$T/log"
  grep -qE '^eth0 +e1000e +52:54:00:12:34:56' "$T/log"
  grep -q 'RESULT: capture' "$T/log"
}

@test "iso: headless capture over ssh:// with the key and known_hosts read from a second disk" {
  p2v help capture >/dev/null 2>&1 || skip "p2v capture is not merged yet"
  requires sshd
  command -v /usr/sbin/sshd >/dev/null || skip "openssh-server is not installed"
  # An sshd on the host's loopback; the guest reaches it as 10.0.2.2 (qemu
  # user networking, DHCP from qemu).
  mkdir -p /run/sshd "$T/ssh" "$T/keys"
  ssh-keygen -q -t ed25519 -N '' -f "$T/ssh/host_key"
  ssh-keygen -q -t ed25519 -N '' -f "$T/keys/id"
  cp "$T/keys/id.pub" "$T/ssh/authorized_keys"
  local port
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  cat > "$T/ssh/sshd_config" <<CONF
ListenAddress 127.0.0.1
Port $port
HostKey $T/ssh/host_key
AuthorizedKeysFile $T/ssh/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile $T/ssh/sshd.pid
CONF
  /usr/sbin/sshd -D -e -f "$T/ssh/sshd_config" 2> "$T/ssh/sshd.log" 3>&- &
  SSHD_PID=$!
  echo "[10.0.2.2]:$port $(cut -d' ' -f1,2 "$T/ssh/host_key.pub")" > "$T/keys/known_hosts"
  # The keys on a small ext4 "USB stick" (the ISO itself is read-only).
  mkfs.ext4 -q -L P2V-KEYS -d "$T/keys" "$T/keys.img" 16M
  # The source: a small data disk (the transport is under test here; the
  # server disk over ssh in TCG takes minutes of guest-side encryption).
  mkdir -p "$T/data/etc"
  echo data-disk > "$T/data/etc/hostname"
  head -c 8M /dev/urandom > "$T/data/payload"
  mkfs.ext4 -q -L DATA -d "$T/data" "$T/data.img" 64M
  qemu-img create -q -f qcow2 -b "$T/data.img" -F raw "$T/src.qcow2"
  # shellcheck disable=SC2046
  run iso_qemu "$T/console.log" 400 -kernel "$ISO_DIR/vmlinuz" -initrd "$ISO_DIR/initrd.img" \
    -append "console=ttyS0,115200 ip=dhcp p2v.target=ssh://root@10.0.2.2:$port$T/remote p2v.disks=sda p2v.ssh_key=LABEL=P2V-KEYS:/id p2v.known_hosts=/dev/vda:/known_hosts p2v.remote_p2v=$TOP_DIR/p2v p2v.post=poweroff" \
    -netdev user,id=n0 -device e1000e,netdev=n0,mac=52:54:00:12:34:56,romfile= \
    $(source_args "$T/src.qcow2") \
    -drive "file=$T/keys.img,format=raw,if=none,id=keys,readonly=on" -device virtio-blk-pci,drive=keys
  console_text "$T/console.log" > "$T/console.txt"
  echo "--- console (end)"; tail -25 "$T/console.txt"
  [ "$status" -eq 0 ]
  grep -q "p2v-live: RESULT: capture succeeded: sda -> ssh://root@10.0.2.2:$port$T/remote" "$T/console.txt"
  source_untouched "$T/src.qcow2"
  jq -e '.complete == true and (.disks | length == 1)' "$T/remote/manifest.json"
  qcow2_clean "$T/remote/disk0.qcow2"
  # Every block arrived: the image reads the same as the source.
  qemu-img compare -f qcow2 -F raw "$T/remote/disk0.qcow2" "$T/data.img"
  grep -q 'RESULT: capture succeeded' "$T/remote/p2v-capture.log"
}

@test "iso: the bundle captured by the ISO converts, and the result boots (smoke)" {
  p2v help capture >/dev/null 2>&1 || skip "p2v capture is not merged yet: the ISO run stops at the call (checked above)"
  p2v help convert 2>&1 | grep -qi bundle ||
    skip "p2v convert does not read capture bundles yet (formats/bundle.c is not merged)"
  [ -f "$SHARED/bundle/manifest.json" ] || skip "the headless capture test did not leave a bundle"
  if p2v help verify 2>&1 | grep -qi bundle; then
    run p2v verify "$SHARED/bundle"
    echo "$output"
    [ "$status" -eq 0 ]
  fi
  P2V_ACCEL=tcg run p2v convert "$SHARED/bundle" -o "$T/server.qcow2"
  echo "$output"
  [ "$status" -eq 0 ]
  qcow2_clean "$T/server.qcow2"
}
