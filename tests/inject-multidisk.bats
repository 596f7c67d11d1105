#!/usr/bin/env bats
# A server with two disks: the debian-bios fixture as disk 0, and a data
# disk whose ext4 file system the server's fstab mounts as /dev/sdb1 on
# /srv/data (no nofail: if it is missing, systemd stops in emergency
# mode).  The user's pipeline: capture both disks into one bundle, convert
# it (copy + inject + smoke).  Inject must see the second disk to name its
# file system by UUID, and smoke must attach it to boot at all.

load inject-helpers

setup_file() {
  export D="$BATS_FILE_TMPDIR"
  use_fixture debian-bios
  fixture_copy "$FIX" "$D/server.img"

  guestfish -N "$D/data.img=fs:ext4:64M" <<EOF
mount /dev/sda1 /
write /hello "data disk\n"
EOF
  guestfish --rw -a "$D/server.img" -i <<EOF
mkdir-p /srv/data
write-append /etc/fstab "/dev/sdb1 /srv/data ext4 defaults 0 2\n"
EOF
  guestfish --ro -a "$D/data.img" run : vfs-uuid /dev/sda1 >"$D/data.uuid"

  step inspect p2v inspect --json "$D/server.img" "$D/data.img"
  step capture p2v capture --disk "$D/server.img" --disk "$D/data.img" \
    --to "$D/bundle" -q --json
  step convert p2v convert --json --mac "$(side "$D/server.img" mac)" \
    "$D/bundle" -o "$D/server.qcow2"
  step dump guest_sh "$D/server.qcow2" "$GUEST_DUMP"
}

teardown_file() {
  [ -z "${D:-}" ] || cat "$D/times" 2>/dev/null | sed 's/^/# /' >&3 || true
}

@test "inspect of both disks: /srv/data is found on the second and planned by UUID" {
  step_ok inspect
  local j="$D/inspect.out" uuid
  uuid=$(cat "$D/data.uuid")
  [ "$(jq -r '.disks | length' "$j")" -eq 2 ]
  jq -e --arg u "$uuid" '.filesystems[] | select(.uuid == $u)' "$j" >/dev/null
  jq -e --arg u "UUID=$uuid" \
    '[.plan[] | select(.file == "/etc/fstab") | .after | contains($u)] | any' \
    "$j" >/dev/null
}

@test "convert of a two-disk bundle: both disks injected, the domain lists vda and vdb" {
  step_ok capture
  step_ok convert
  [ -f "$D/server-disk1.qcow2" ]
  [ "$(jq -r .injected "$D/convert.out")" = true ]
  grep -q "<target dev=.vda." "$D/server.xml"
  grep -q "<target dev=.vdb." "$D/server.xml"
  # The data disk's file system came through untouched.
  [ "$(guestfish --ro -a "$D/server-disk1.qcow2" run : mount /dev/sda1 / : cat /hello)" = "data disk" ]
}

@test "after inject: fstab names the data disk's file system by UUID" {
  step_ok dump
  local uuid
  uuid=$(cat "$D/data.uuid")
  section "$D/dump.out" fstab | grep -E "^UUID=$uuid[[:space:]]+/srv/data[[:space:]]"
  ! section "$D/dump.out" fstab | grep -E "^/dev/sd"
}

@test "smoke with both disks on virtio: the server reaches its target with /srv/data mounted" {
  convert_smoke_passed
}
