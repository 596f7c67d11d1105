#!/usr/bin/env bats
# p2v inspect / inject on the debian-dracut-lvm fixture: a Debian whose
# initramfs tool is dracut (an exclusive SATA driver list), /boot on
# /dev/sda1, root and swap on LVM.  The initramfs tool is found by what is
# installed, not by distro; LVM names stay as they are.

load inject-helpers

# An LVM set-up that knows only the physical disk, written into the copy
# before the whole flow runs (so the flow's one smoke boot checks it): a
# devices file as RHEL 9 writes one, pinning the PV by a SATA WWID and
# /dev/sda2, used (use_devicesfile = 1); a global_filter accepting only
# /dev/sda*; and lvm.conf inside the initramfs (lvmconf, as a host-only
# initramfs has it), where a filter rejecting /dev/vda hides the root.
lvm_hostile() {
  cat >"$D/system.devices" <<'EOF'
# LVM uses devices listed in this file.
# Created by LVM command vgimportdevices pid 2087 at Mon Jan  8 10:00:00 2024
VERSION=1.1.1
IDTYPE=sys_wwid IDNAME=naa.5000c500a1b2c3d4 DEVNAME=/dev/sda2 PVID=p2vTestPVIDp2vTestPVIDp2vTestPV PART=2
EOF
  printf '\tuse_devicesfile = 1\n\tglobal_filter = [ "a|^/dev/sda.*|", "r|.*|" ]\n' \
    >"$D/lvm.snippet"
  guestfish --rw -a "$1" -i <<EOF
download /etc/lvm/lvm.conf $D/lvm.conf
! sed -i '/^devices {\$/r $D/lvm.snippet' $D/lvm.conf
upload $D/lvm.conf /etc/lvm/lvm.conf
mkdir-p /etc/lvm/devices
upload $D/system.devices /etc/lvm/devices/system.devices
write /etc/dracut.conf.d/60-lvmconf.conf "lvmconf=\"yes\"\n"
EOF
}

setup_file() {
  export D="$BATS_FILE_TMPDIR"
  use_fixture debian-dracut-lvm
  fixture_copy "$FIX" "$D/server.img"
  step hostile lvm_hostile "$D/server.img"
  GUEST_DUMP+='
echo "== lvm"; grep -E "^[[:space:]]*(use_devicesfile|global_filter|filter)[[:space:]]*=" /etc/lvm/lvm.conf
echo "== lvm-devices"; ls /etc/lvm/devices/
echo "== initramfs-lvm"; for i in /boot/initrd.img-*; do lsinitrd -f etc/lvm/lvm.conf $i | grep "global_filter ="; done
'
  inject_flow
}

teardown_file() {
  inject_flow_teardown
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

@test "inspect --json: the LVM devices file goes and the filter accepts vd, before the initramfs is rebuilt" {
  step_ok hostile
  j="$D/inspect.out"
  plan() { jq -r --arg f "$1" '.plan[] | select(.file == $f) | "\(.action): \(.before) => \(.after)"' "$j"; }
  index() { jq -r --arg f "$1" '[.plan[].file] | index($f)' "$j"; }
  [ "$(plan /etc/lvm/devices/system.devices)" = "remove: 1 PV pinned by sys_wwid (/dev/sda2) => (removed: LVM scans all disks)" ]
  [ "$(plan /etc/lvm/lvm.conf)" = 'edit: global_filter = [ "a|^/dev/sda.*|", "r|.*|" ] => global_filter = [ "a|^/dev/vd.*|", "a|^/dev/sda.*|", "r|.*|" ]' ]
  initrd=/boot/initrd.img-$(side "$D/server.img" kernel)
  [ "$(index /etc/lvm/devices/system.devices)" -lt "$(index "$initrd")" ]
  [ "$(index /etc/lvm/lvm.conf)" -lt "$(index "$initrd")" ]
  [ "$(jq -r '.notes | length' "$j")" = 0 ]
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

@test "after inject: LVM devices file gone (backup kept), filter accepts vd (in the initramfs too), both logged" {
  step_ok dump
  [ "$(section "$D/dump.out" lvm-devices)" = system.devices.p2v-orig ]
  section "$D/dump.out" backups | grep -qx /etc/lvm/devices/system.devices.p2v-orig
  section "$D/dump.out" backups | grep -qx /etc/lvm/lvm.conf.p2v-orig
  section "$D/dump.out" lvm | grep -q '^[[:space:]]*use_devicesfile = 1$'
  section "$D/dump.out" lvm | grep -qF 'global_filter = [ "a|^/dev/vd.*|", "a|^/dev/sda.*|", "r|.*|" ]'
  # The initramfs was rebuilt after the edit: its LVM sees the virtio disk.
  section "$D/dump.out" initramfs-lvm | grep -qF 'global_filter = [ "a|^/dev/vd.*|", "a|^/dev/sda.*|", "r|.*|" ]'
  section "$D/dump.out" log | grep -qF '/etc/lvm/devices/system.devices: 1 PV pinned by sys_wwid (/dev/sda2) -> (removed: LVM scans all disks)'
  section "$D/dump.out" log | grep -q 'backup: /etc/lvm/devices/system.devices.p2v-orig'
  section "$D/dump.out" log | grep -qF '/etc/lvm/lvm.conf: global_filter = [ "a|^/dev/sda.*|", "r|.*|" ] -> global_filter = [ "a|^/dev/vd.*|"'
}

@test "second inject: nothing to do, image unchanged" {
  step_ok inject2
  [ "$(cat "$D/inject2.out")" = "inject: nothing to do" ]
  [ "$(cat "$D/sha.before-second")" = "$(cat "$D/sha.after-second")" ]
}

@test "p2v convert: the converted server passes smoke on virtio (with the hostile LVM settings), eno1 up on its MAC and address" {
  convert_smoke_passed
  [ "$(jq -r .smoke.firmware "$D/convert.out")" = bios ]
}
