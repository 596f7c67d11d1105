#!/usr/bin/env bats
# A server with two disks, whose boot disk is not the first: a data disk
# as sda, whose ext4 file system the server's fstab mounts as /dev/sda1
# on /srv/data (no nofail: if it is missing, systemd stops in emergency
# mode), and the debian-bios fixture as sdb, with its fstab and grub.cfg
# naming /dev/sdb.  The data disk has a partition table but no boot code,
# so a VM that boots its first disk stops in the firmware.  The user's
# pipeline: capture both disks into one bundle (in /sys/block order:
# data first), convert it (copy + inject), then smoke both disks.  Inject
# must see the other disk to name its file system by UUID, grub must go
# to the server's disk, the domain must boot that disk, and smoke, run
# on its own (so with nothing but the disks to go by), must find it.

load inject-helpers

setup_file() {
  export D="$BATS_FILE_TMPDIR"
  use_fixture debian-bios
  fixture_copy "$FIX" "$D/server.img"

  guestfish -N "$D/data.img=fs:ext4:64M" <<EOF
mount /dev/sda1 /
write /hello "data disk\n"
EOF
  # The server as it was configured when its disk was sdb (its root is
  # the fixture's first partition).
  local resume=/etc/initramfs-tools/conf.d/resume
  guestfish --ro -a "$D/server.img" run : mount /dev/sda1 / \
    : download /etc/fstab "$D/fstab" : download /boot/grub/grub.cfg "$D/grub.cfg" \
    : download $resume "$D/resume"
  sed -i 's|/dev/sda|/dev/sdb|g' "$D/fstab" "$D/grub.cfg" "$D/resume"
  echo "/dev/sda1 /srv/data ext4 defaults 0 2" >>"$D/fstab"
  guestfish --rw -a "$D/server.img" <<EOF
run
mount /dev/sda1 /
upload $D/fstab /etc/fstab
upload $D/grub.cfg /boot/grub/grub.cfg
upload $D/resume $resume
mkdir-p /srv/data
EOF
  guestfish --ro -a "$D/data.img" run : vfs-uuid /dev/sda1 >"$D/data.uuid"

  step inspect p2v inspect --json "$D/data.img" "$D/server.img"
  step capture p2v capture --disk "$D/data.img" --disk "$D/server.img" \
    --to "$D/bundle" -q --json
  step convert p2v convert --json --no-smoke --mac "$(side "$D/server.img" mac)" \
    "$D/bundle" -o "$D/server.qcow2"
  step smoke p2v smoke --json --mac "$(side "$D/server.img" mac)" \
    "$D/server.qcow2" "$D/server-disk1.qcow2"
  step dump guest_sh "$D/server-disk1.qcow2" "$GUEST_DUMP"
}

teardown_file() {
  [ -z "${D:-}" ] || cat "$D/times" 2>/dev/null | sed 's/^/# /' >&3 || true
}

@test "inspect of both disks: /srv/data is planned by UUID, grub goes to the second disk" {
  step_ok inspect
  local j="$D/inspect.out" uuid
  uuid=$(cat "$D/data.uuid")
  [ "$(jq -r '.disks | length' "$j")" -eq 2 ]
  [ "$(jq -r .bootloader.install_device "$j")" = /dev/sdb ]
  [ "$(jq -r .bootloader.disk "$j")" -eq 1 ]
  jq -e --arg u "$uuid" '.filesystems[] | select(.uuid == $u)' "$j" >/dev/null
  jq -e --arg u "UUID=$uuid" \
    '[.plan[] | select(.file == "/etc/fstab") | .after | contains($u)] | any' \
    "$j" >/dev/null
}

@test "convert of a two-disk bundle: both disks injected, the domain boots vdb" {
  step_ok capture
  step_ok convert
  [ -f "$D/server-disk1.qcow2" ]
  [ "$(jq -r .injected "$D/convert.out")" = true ]
  [ "$(jq -r .boot_disk "$D/convert.out")" -eq 1 ]
  grep -q "<target dev=.vda." "$D/server.xml"
  # One boot order, on vdb; none on the domain's <os>.
  [ "$(grep -c "<boot" "$D/server.xml")" -eq 1 ]
  grep -A1 "<target dev=.vdb." "$D/server.xml" | grep -q "<boot order=.1./>"
  virt-xml-validate "$D/server.xml" domain
  # The data disk's file system came through untouched.
  [ "$(guestfish --ro -a "$D/server.qcow2" run : mount /dev/sda1 / : cat /hello)" = "data disk" ]
}

@test "after inject: fstab names the data disk's file system by UUID" {
  step_ok dump
  local uuid
  uuid=$(cat "$D/data.uuid")
  section "$D/dump.out" fstab | grep -E "^UUID=$uuid[[:space:]]+/srv/data[[:space:]]"
  ! section "$D/dump.out" fstab | grep -E "^/dev/sd"
}

@test "smoke of both disks on virtio: it boots vdb, and the server reaches its target" {
  step_ok smoke
  smoke_passed "$D/smoke.out"
  [ "$(jq -r .boot_disk "$D/smoke.out")" -eq 1 ]
  echo "# $(grep '^convert:' "$D/times"), $(grep '^smoke:' "$D/times") (boot $(jq -r .seconds "$D/smoke.out") s)" >&3
}
