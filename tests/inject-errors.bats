#!/usr/bin/env bats
# p2v inspect / inject refuse what they cannot handle with one clear line
# and exit 2, and leave the image as it was: a blank disk, a data disk,
# a Linux without kernel, without initramfs tool, of an unknown family;
# and bad command lines (no appliance needed for those).

load inject-helpers

# debian_tree DIR: the bones of a Debian root that libguestfs inspects as
# Debian 12, without kernel or initramfs tool.
debian_tree() {
  mkdir -p "$1"/{bin,sbin,lib,usr/bin,usr/sbin,boot,etc/default,var/lib/dpkg,tmp}
  printf 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\n' \
    >"$1/etc/os-release"
  echo 12.5 >"$1/etc/debian_version"
  echo '/dev/sda / ext4 errors=remount-ro 0 1' >"$1/etc/fstab"
  : >"$1/var/lib/dpkg/status"
  echo test >"$1/etc/hostname"
}

# ext4_image IMG DIR: a whole-disk ext4 made from DIR (no loop, no mount).
ext4_image() {
  truncate -s 64M "$1"
  mkfs.ext4 -q -F -d "$2" "$1"
}

requires_appliance() {
  requires guestfish
  requires mkfs.ext4
}

@test "inspect: a blank disk has no operating system" {
  requires_appliance
  truncate -s 100M "$T/blank.img"
  run p2v inspect "$T/blank.img"
  [ "$status" -eq 2 ]
  [ "$output" = "p2v: no operating system found in '$T/blank.img'" ]
}

@test "inject: a disk with only a data ext4 has no operating system, stays unchanged" {
  requires_appliance
  mkdir -p "$T/data/srv"
  echo payload >"$T/data/srv/file"
  ext4_image "$T/data.img" "$T/data"
  before=$(sha "$T/data.img")
  run p2v inject "$T/data.img"
  [ "$status" -eq 2 ]
  [ "$output" = "p2v: no operating system found in '$T/data.img'" ]
  [ "$(sha "$T/data.img")" = "$before" ]
}

@test "inject: a Linux without kernel is refused, unchanged" {
  requires_appliance
  debian_tree "$T/root"
  ext4_image "$T/nokernel.img" "$T/root"
  before=$(sha "$T/nokernel.img")
  run p2v inject "$T/nokernel.img"
  [ "$status" -eq 2 ]
  [ "$output" = "p2v: no kernel found in /boot of '$T/nokernel.img'" ]
  [ "$(sha "$T/nokernel.img")" = "$before" ]
}

@test "inspect: a Linux without initramfs tool is refused" {
  requires_appliance
  debian_tree "$T/root"
  echo 'not really a kernel' >"$T/root/boot/vmlinuz-6.1.0-99-amd64"
  mkdir -p "$T/root/lib/modules/6.1.0-99-amd64"
  ext4_image "$T/notool.img" "$T/root"
  run p2v inspect --json "$T/notool.img"
  [ "$status" -eq 2 ]
  [ "$output" = "p2v: no initramfs tool (update-initramfs, dracut, mkinitcpio) in '$T/notool.img'" ]
}

@test "inspect: a Linux family p2v does not handle is named" {
  requires_appliance
  debian_tree "$T/root"
  rm "$T/root/etc/debian_version" "$T/root/var/lib/dpkg/status"
  printf 'NAME=Gentoo\nID=gentoo\nPRETTY_NAME="Gentoo Linux"\n' >"$T/root/etc/os-release"
  echo "Gentoo Base System release 2.14" >"$T/root/etc/gentoo-release"
  ext4_image "$T/gentoo.img" "$T/root"
  run p2v inspect "$T/gentoo.img"
  [ "$status" -eq 2 ]
  [[ "$output" == "p2v: '$T/gentoo.img' holds gentoo Linux, a family p2v inject does not handle"* ]]
}

@test "bad command lines: one-line errors, exit 2, no appliance" {
  run p2v inspect
  [ "$status" -eq 2 ]
  [[ "${lines[0]}" == "p2v: inspect: missing image" ]]
  run p2v inject
  [ "$status" -eq 2 ]
  [[ "${lines[0]}" == "p2v: inject: missing image" ]]
  run p2v inject "$T/nope.img" "$T/nope2.img"
  [ "$status" -eq 2 ]
  [ "$output" = "p2v: cannot open '$T/nope.img': No such file or directory" ]
  truncate -s 1M "$T/d1.img"
  run p2v inject "$T/d1.img" "$T/d1.img"
  [ "$status" -eq 2 ]
  [ "$output" = "p2v: '$T/d1.img' is given twice" ]
  run p2v inspect "$T/nope.img"
  [ "$status" -eq 2 ]
  [ "$output" = "p2v: cannot open '$T/nope.img': No such file or directory" ]
  truncate -s 1M "$T/x.img"
  run p2v inject "$T/x.img" --accel warp
  [ "$status" -eq 2 ]
  [ "$output" = "p2v: accelerator 'warp' is not auto, kvm or tcg" ]
  run env P2V_ACCEL=fast p2v inspect "$T/x.img"
  [ "$status" -eq 2 ]
  [ "$output" = "p2v: accelerator 'fast' is not auto, kvm or tcg" ]
  run p2v inject "$T/x.img" --mac 52:54:00:zz:00:01
  [ "$status" -eq 2 ]
  [ "$output" = "p2v: '52:54:00:zz:00:01' is not a MAC address" ]
  run p2v inspect -f vmdk9 "$T/x.img"
  [ "$status" -eq 2 ]
  [ "$output" = "p2v: unknown image format 'vmdk9'" ]
  run p2v inject --bogus "$T/x.img"
  [ "$status" -eq 2 ]
  mkdir "$T/dir"
  run p2v inspect "$T/dir"
  [ "$status" -eq 2 ]
  [ "$output" = "p2v: cannot read '$T/dir': Is a directory" ]
}

@test "help: inspect and inject describe their options" {
  run p2v help inspect
  [ "$status" -eq 0 ]
  [[ "$output" == *"--json"* ]]
  run p2v inject --help
  [ "$status" -eq 0 ]
  [[ "$output" == *"--dry-run"* && "$output" == *"--remove-agents"* ]]
  [[ "$output" == *"--mac MAC"* && "$output" == *"--accel"* ]]
}

@test "inject: a failing command stops inject with its output; the other lane still ran, the log says so" {
  use_fixture debian-bios
  fixture_copy "$FIX" "$T/broken.img"
  # The guest's update-initramfs fails the way a full /boot makes it fail.
  printf '#!/bin/sh\necho "update-initramfs: boom: no space left on /boot" >&2\nexit 1\n' >"$T/fake"
  guestfish --rw -a "$T/broken.img" -i <<EOF2
upload $T/fake /usr/sbin/update-initramfs
chmod 0755 /usr/sbin/update-initramfs
EOF2
  run p2v inject "$T/broken.img"
  [ "$status" -eq 2 ]
  [[ "$output" == *"run side by side"* ]]
  last=$(printf '%s\n' "$output" | tail -1)
  [[ "$last" == "p2v: 'update-initramfs -u -k '"*"' failed in '$T/broken.img': update-initramfs: boom: no space left on /boot" ]]
  # grub-mkconfig and grub-install ran beside it; the log records each
  # outcome and no scratch directory is left in the guest's /tmp.
  run guest_sh "$T/broken.img" 'cat /var/log/p2v-inject.log; ls -d /tmp/p2v-inject.* 2>/dev/null || echo "no scratch"'
  [[ "$output" == *"FAILED (exit 1"*"update-initramfs -u -k"*"boom"* ]]
  [[ "$output" == *"ran: '/usr/sbin/grub-mkconfig' -o '/boot/grub/grub.cfg'"* ]]
  [[ "$output" == *"--target=i386-pc"* ]]
  [[ "$output" == *"stopped: 6 of 10 changes applied"* ]]
  [[ "$output" == *"no scratch"* ]]
}
