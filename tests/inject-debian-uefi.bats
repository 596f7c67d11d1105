#!/usr/bin/env bats
# p2v inspect / inject on the debian-uefi fixture: GPT, ESP /dev/sda1 on
# /boot/efi with shim and GRUB in \EFI\debian only (no removable-media
# fallback), ext4 root /dev/sda2, swap /dev/sda3, initramfs-tools.  A VM
# starts with empty NVRAM, so inject must provide \EFI\BOOT\BOOTX64.EFI.

load inject-helpers

setup_file() {
  export D="$BATS_FILE_TMPDIR"
  use_fixture debian-uefi
  fixture_copy "$FIX" "$D/server.img"
  fixture_copy "$FIX" "$D/orig.img"
  inject_flow
}

@test "inspect --json: Debian, UEFI, grub2 with its ESP, initramfs-tools, the fallback planned" {
  step_ok inspect
  j="$D/inspect.out"
  [ "$(jq -r .distro "$j")" = debian ]
  [ "$(jq -r .firmware "$j")" = uefi ]
  [ "$(jq -r .bootloader.type "$j")" = grub2 ]
  [ "$(jq -r .bootloader.config "$j")" = /boot/grub/grub.cfg ]
  [ "$(jq -r .bootloader.esp "$j")" = /boot/efi ]
  [ "$(jq -r .bootloader.efi_dir "$j")" = /boot/efi/EFI/debian ]
  [ "$(jq -r .bootloader.efi_fallback "$j")" = null ]
  [ "$(jq -r .bootloader.install_device "$j")" = null ]
  [ "$(jq -r .initramfs_tool "$j")" = initramfs-tools ]
  [ "$(jq -r '.kernels[0].has_virtio' "$j")" = false ]
  [ "$(jq -r '.filesystems[] | select(.mountpoint == "/boot/efi") | .fstab_name' "$j")" = /dev/sda1 ]
  [ "$(jq -r '.filesystems[] | select(.mountpoint == "/") | .fstab_name' "$j")" = /dev/sda2 ]
  [ "$(jq -r '.plan[] | select(.file == "/boot/efi/EFI/BOOT/BOOTX64.EFI") | .after' "$j")" = "copy of shimx64.efi" ]
  [ "$(jq -r '.plan[] | select(.file == "/boot/efi/EFI/BOOT/grubx64.efi") | .after' "$j")" = "copy of grubx64.efi" ]
  # No grub-install on UEFI (NVRAM does not travel), no debconf grub-pc.
  [ "$(jq '[.plan[] | select(.file == "/dev/sda" or (.file | test("debconf")))] | length' "$j")" -eq 0 ]
}

@test "convert: injects the copy (the plan applied, logged in the guest)" {
  step_ok convert
  [ "$(jq -r .injected "$D/convert.out")" = true ]
  step_ok dump
  section "$D/dump.out" log | grep -q 'done: [0-9]* of [0-9]* changes applied'
  sed 's/^/# /' "$D/times" >&3
}

@test "after inject: fstab (ESP, root, swap) and grub.cfg by UUID; initramfs with virtio_blk" {
  step_ok dump
  ! section "$D/dump.out" fstab | grep -q '^/dev/sd'
  [ "$(section "$D/dump.out" fstab | grep -c '^UUID=')" -eq 3 ]
  ! section "$D/dump.out" grub.cfg | grep -v "root=UUID=$(side "$D/server.img" root_fs_uuid)"
  ! section "$D/dump.out" initramfs | grep -q 'virtio_blk=0'
  section "$D/dump.out" link | grep -qx "MACAddress=$(side "$D/server.img" mac)"
}

@test "after inject: the removable-media fallback beside the distro's loader" {
  section "$D/dump.out" efi >"$D/efi.txt"
  grep -qx /boot/efi/EFI/BOOT/BOOTX64.EFI "$D/efi.txt"
  grep -qx /boot/efi/EFI/BOOT/grubx64.efi "$D/efi.txt"
  # GRUB started from \EFI\BOOT still reads its menu from \EFI\debian.
  grep -qx /boot/efi/EFI/debian/grub.cfg "$D/efi.txt"
  section "$D/dump.out" log | grep -q 'EFI/BOOT/BOOTX64.EFI: (missing) -> copy of shimx64.efi'
}

@test "second inject: nothing to do, image unchanged" {
  step_ok inject2
  [ "$(cat "$D/inject2.out")" = "inject: nothing to do" ]
  [ "$(cat "$D/sha.before-second")" = "$(cat "$D/sha.after-second")" ]
}

@test "p2v convert: the converted server passes smoke on virtio (empty NVRAM, a new VM), eno1 up on its MAC and address" {
  convert_smoke_passed
  [ "$(jq -r .smoke.firmware "$D/convert.out")" = uefi ]
}

@test "without inject, a new VM (empty NVRAM) finds nothing to boot" {
  requires qemu-system-x86_64
  run env P2V_OVMF_VARS=blank "$FIXTURES/boot-check.sh" "$D/orig.img" virtio uefi 120
  echo "$output"
  [ "$status" -eq 1 ]
}
