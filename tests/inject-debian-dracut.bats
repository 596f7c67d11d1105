#!/usr/bin/env bats
# p2v inspect / inject on the debian-dracut-lvm fixture: a Debian whose
# initramfs tool is dracut (an exclusive SATA driver list), /boot on
# /dev/sda1, root and swap on LVM.  The initramfs tool is found by what is
# installed, not by distro; LVM names stay as they are.

load inject-helpers

setup_file() {
  export D="$BATS_FILE_TMPDIR"
  use_fixture debian-dracut-lvm
  fixture_copy "$FIX" "$D/server.img"
  inject_flow
}

@test "inspect --json: Debian family with dracut, root on LVM, /boot by device name" {
  step_ok inspect
  j="$D/inspect.out"
  [ "$(jq -r .distro "$j")" = debian ]
  [ "$(jq -r .family "$j")" = debian ]
  [ "$(jq -r .firmware "$j")" = bios ]
  [ "$(jq -r .bootloader.type "$j")" = grub2 ]
  [ "$(jq -r .initramfs_tool "$j")" = dracut ]
  [ "$(jq -r '.kernels[0].initramfs' "$j")" = "/boot/initrd.img-$(side "$D/server.img" kernel)" ]
  [ "$(jq -r '.kernels[0].has_virtio' "$j")" = false ]
  [ "$(jq -r .root "$j")" = /dev/vg0/root ]
  [ "$(jq -r '.filesystems[] | select(.mountpoint == "/") | .fstab_name' "$j")" = /dev/mapper/vg0-root ]
  [ "$(jq -r '.filesystems[] | select(.mountpoint == "/boot") | .fstab_name' "$j")" = /dev/sda1 ]
  plan() { jq -r --arg f "$1" '.plan[] | select(.file == $f) | "\(.before) => \(.after)"' "$j"; }
  [ "$(plan /etc/fstab)" = "/dev/sda1 => UUID=7d1c4e3a-0b5f-4a8e-9c21-5032560a0002" ]
  [[ "$(plan /etc/dracut.conf.d/p2v-virtio.conf)" == "no virtio drivers => + virtio_blk"* ]]
  [[ "$(jq -r '.plan[] | select(.action == "command") | .command' "$j")" == *"dracut -f '/boot/initrd.img-$(side "$D/server.img" kernel)'"* ]]
  # Root on LVM: grub.cfg already names it stably, nothing to regenerate.
  [ -z "$(plan /boot/grub/grub.cfg)" ]
}

@test "convert: injects the copy (the plan applied, logged in the guest)" {
  step_ok convert
  [ "$(jq -r .injected "$D/convert.out")" = true ]
  step_ok dump
  section "$D/dump.out" log | grep -q 'done: [0-9]* of [0-9]* changes applied'
  sed 's/^/# /' "$D/times" >&3
}

@test "after inject: /boot by UUID, LVM names kept, initramfs with virtio_blk (lsinitrd)" {
  step_ok dump
  section "$D/dump.out" fstab | grep -q '^UUID=7d1c4e3a-0b5f-4a8e-9c21-5032560a0002[[:space:]]*/boot'
  section "$D/dump.out" fstab | grep -q '^/dev/mapper/vg0-root[[:space:]]*/[[:space:]]'
  ! section "$D/dump.out" grub.cfg | grep -q 'root=/dev/sd'
  ! section "$D/dump.out" initramfs | grep -q 'virtio_blk=0'
  section "$D/dump.out" modules | grep -q '^add_drivers+=" virtio_blk virtio_scsi virtio_net virtio_pci virtio_console "$'
  section "$D/dump.out" link | grep -qx "MACAddress=$(side "$D/server.img" mac)"
  section "$D/dump.out" log | grep -q "ran: dracut -f"
}

@test "second inject: nothing to do, image unchanged" {
  step_ok inject2
  [ "$(cat "$D/inject2.out")" = "inject: nothing to do" ]
  [ "$(cat "$D/sha.before-second")" = "$(cat "$D/sha.after-second")" ]
}

@test "p2v convert: the converted server passes smoke on virtio, eno1 up on its MAC and address" {
  convert_smoke_passed
  [ "$(jq -r .smoke.firmware "$D/convert.out")" = bios ]
}
