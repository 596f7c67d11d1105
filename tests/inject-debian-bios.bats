#!/usr/bin/env bats
# p2v inspect / inject on the debian-bios fixture (MBR, grub-pc, ext4 root
# /dev/sda1, swap /dev/sda2, initramfs-tools MODULES=list without virtio,
# eno1 pinned by a udev rule), plus what a physical server brings along:
# an HPE agent (a real package) and a udev pin to an Intel NIC's PCI slot.
# The heavy steps run once in setup_file on one copy; the tests read what
# they left.  Checks use guestfish and the guest's own tools, and a boot.

load inject-helpers

setup_file() {
  export D="$BATS_FILE_TMPDIR"
  use_fixture debian-bios
  # A private copy: dry-run, inspect and convert read it, never write it.
  fixture_copy "$FIX" "$D/server.img"

  # The fake HPE agent: a package with an enabled service.
  mkdir -p "$D/pkg/DEBIAN" "$D/pkg/lib/systemd/system"
  printf 'Package: hp-health\nVersion: 10.80-p2vtest\nArchitecture: all\nMaintainer: p2v tests <p2v@example.invalid>\nDescription: stand-in for the HPE health agent\n' \
    >"$D/pkg/DEBIAN/control"
  printf '[Unit]\nDescription=HPE health agent\n[Service]\nExecStart=/bin/false\n[Install]\nWantedBy=multi-user.target\n' \
    >"$D/pkg/lib/systemd/system/hp-health.service"
  dpkg-deb --root-owner-group --build "$D/pkg" "$D/hp-health.deb" >/dev/null
  guestfish --rw -a "$D/server.img" -i <<EOF
upload $D/hp-health.deb /tmp/hp-health.deb
command "dpkg -i /tmp/hp-health.deb"
rm /tmp/hp-health.deb
ln-s /lib/systemd/system/hp-health.service /etc/systemd/system/multi-user.target.wants/hp-health.service
write-append /etc/udev/rules.d/70-persistent-net.rules "SUBSYSTEM==\"net\", ACTION==\"add\", DRIVERS==\"e1000e\", KERNELS==\"0000:00:19.0\", NAME=\"eth9\"\n"
EOF

  t0=$SECONDS
  p2v inspect --json "$D/server.img" >"$D/inspect.json" 2>"$D/inspect.err" \
    && echo 0 >"$D/inspect.rc" || echo $? >"$D/inspect.rc"
  echo "inspect: $((SECONDS - t0)) s" >>"$D/times"

  sha "$D/server.img" >"$D/sha.before-dry"
  t0=$SECONDS
  p2v inject --dry-run --mac 52:54:00:aa:bb:cc "$D/server.img" >"$D/dry.out" 2>&1 \
    && echo 0 >"$D/dry.rc" || echo $? >"$D/dry.rc"
  echo "inject --dry-run: $((SECONDS - t0)) s" >>"$D/times"
  sha "$D/server.img" >"$D/sha.after-dry"

  # The pipeline as a user runs it: copy, inject (here also removing the
  # agent), then the smoke boot with the server's MAC; human output.
  t0=$SECONDS
  p2v convert --remove-agents --mac "$(side "$D/server.img" mac)" \
    "$D/server.img" -o "$D/server.qcow2" >"$D/inject.out" 2>&1 \
    && echo 0 >"$D/inject.rc" || echo $? >"$D/inject.rc"
  echo "convert + inject + smoke: $((SECONDS - t0)) s" >>"$D/times"

  sha "$D/server.qcow2" >"$D/sha.before-second"
  t0=$SECONDS
  p2v inject "$D/server.qcow2" >"$D/inject2.out" 2>&1 \
    && echo 0 >"$D/inject2.rc" || echo $? >"$D/inject2.rc"
  echo "second inject: $((SECONDS - t0)) s" >>"$D/times"
  sha "$D/server.qcow2" >"$D/sha.after-second"

  guest_sh "$D/server.qcow2" "$GUEST_DUMP
echo '== dpkg'; dpkg-query -W -f='\${Status}\n' hp-health 2>&1
echo '== end2'" >"$D/dump.txt" 2>&1
}

@test "inspect --json: Debian 12, BIOS, grub2, initramfs-tools, eno1, the HPE agent" {
  [ "$(cat "$D/inspect.rc")" -eq 0 ] || { cat "$D/inspect.err"; false; }
  j="$D/inspect.json"
  [ "$(jq -r .os "$j")" = linux ]
  [ "$(jq -r .distro "$j")" = debian ]
  [[ "$(jq -r .version "$j")" == 12* ]]
  [ "$(jq -r .family "$j")" = debian ]
  [ "$(jq -r .firmware "$j")" = bios ]
  [ "$(jq -r .bootloader.type "$j")" = grub2 ]
  [ "$(jq -r .bootloader.config "$j")" = /boot/grub/grub.cfg ]
  # The appliance names the disk sda (sdb when it is slow to start).
  [[ "$(jq -r .bootloader.install_device "$j")" =~ ^/dev/sd[a-z]$ ]]
  [ "$(jq -r .initramfs_tool "$j")" = initramfs-tools ]
  [ "$(jq -r '.kernels[0].version' "$j")" = "$(side "$D/server.img" kernel)" ]
  [ "$(jq -r '.kernels[0].initramfs_tool' "$j")" = initramfs-tools ]
  [ "$(jq -r '.kernels[0].has_virtio' "$j")" = false ]
  [ "$(jq -r '.filesystems[] | select(.mountpoint == "/") | .fstab_name' "$j")" = /dev/sda1 ]
  [ "$(jq -r '.filesystems[] | select(.mountpoint == "/") | .uuid' "$j")" = "$(side "$D/server.img" root_fs_uuid)" ]
  [ "$(jq -r '.filesystems[] | select(.type == "swap") | .fstab_name' "$j")" = /dev/sda2 ]
  [ "$(jq -r .network.style "$j")" = ifupdown ]
  [ "$(jq -r '.network.interfaces[0].name' "$j")" = eno1 ]
  [ "$(jq -r '.network.interfaces[0].mac' "$j")" = "$(side "$D/server.img" mac)" ]
  [ "$(jq -r '.network.interfaces[0].address' "$j")" = "$(side "$D/server.img" ip)" ]
  [ "$(jq -r '.agents[0].service' "$j")" = hp-health ]
  [ "$(jq -r '.agents[0].vendor' "$j")" = HPE ]
  [ "$(jq -r '.agents[0].package' "$j")" = hp-health ]
}

@test "inspect --json: the plan names every change with before, after and why" {
  j="$D/inspect.json"
  root_uuid=$(side "$D/server.img" root_fs_uuid)
  plan() { jq -r --arg f "$1" '.plan[] | select(.file == $f) | "\(.before) => \(.after)"' "$j"; }
  [[ "$(plan /etc/fstab)" == *"/dev/sda1 => UUID=$root_uuid"* ]]
  [[ "$(plan /etc/fstab)" == *"/dev/sda2 => UUID="* ]]
  [[ "$(plan /etc/initramfs-tools/conf.d/resume)" == "RESUME=/dev/sda2 => RESUME=UUID="* ]]
  [[ "$(plan /etc/default/grub)" == *"GRUB_DISABLE_LINUX_UUID=true => GRUB_DISABLE_LINUX_UUID=false"* ]]
  [[ "$(plan /etc/initramfs-tools/modules)" == *"virtio_blk virtio_scsi virtio_net virtio_pci virtio_console"* ]]
  [[ "$(plan /etc/systemd/network/10-p2v-eno1.link)" == *"$(side "$D/server.img" mac) -> name eno1"* ]]
  [[ "$(plan /etc/udev/rules.d/70-persistent-net.rules)" == *'DRIVERS=="e1000e"'*"(commented out)"* ]]
  [ -n "$(plan "/boot/initrd.img-$(side "$D/server.img" kernel)")" ]
  [[ "$(plan /boot/grub/grub.cfg)" == "root=/dev/sda1 => root=UUID=$root_uuid" ]]
  [ -n "$(plan "$(jq -r .bootloader.install_device "$j")")" ]
  [ -n "$(plan /etc/systemd/system/multi-user.target.wants/hp-health.service)" ]
  # Every entry says why.
  [ "$(jq '[.plan[] | select(.why == "" or .file == "")] | length' "$j")" -eq 0 ]
  # Rebuilding is a plan entry with its command.
  [[ "$(jq -r '.plan[] | select(.action == "command") | .command' "$j")" == *"update-initramfs -u -k"* ]]
}

@test "inspect --json: the plan is tests/expected/inspect-debian-bios.plan" {
  kver=$(side "$D/server.img" kernel)
  disk=$(jq -r .bootloader.install_device "$D/inspect.json")
  jq -r '.plan[] | "\(.file) | \(.before) | \(.after)"' "$D/inspect.json" |
    sed -e "s|$kver|@KVER@|g" -e "s|^$disk |@DISK@ |" >"$D/plan.txt"
  diff -u "$TOP_DIR/tests/expected/inspect-debian-bios.plan" "$D/plan.txt"
}

@test "inject --dry-run: prints the numbered plan, changes nothing (same hash)" {
  [ "$(cat "$D/dry.rc")" -eq 0 ] || { cat "$D/dry.out"; false; }
  [ "$(cat "$D/sha.before-dry")" = "$(cat "$D/sha.after-dry")" ]
  grep -q "^1\. /etc/fstab: /dev/sda1 -> UUID=$(side "$D/server.img" root_fs_uuid) (/: virtio disks are named /dev/vdX)$" "$D/dry.out"
  grep -q '^inject: dry run: [0-9]* changes planned, none applied$' "$D/dry.out"
  # --mac: the udev pin and the .link follow the VM's new MAC.
  grep -q 'ATTR{address}=="52:54:00:aa:bb:cc"' "$D/dry.out"
  grep -q '10-p2v-eno1.link: (none) -> MAC 52:54:00:aa:bb:cc -> name eno1' "$D/dry.out"
}

@test "convert: injects the copy, applies the plan and says how many changes" {
  [ "$(cat "$D/inject.rc")" -eq 0 ] || { cat "$D/inject.out"; false; }
  grep -q '^inject: [0-9]* changes applied$' "$D/inject.out"
  grep -q '^1\. /etc/fstab: /dev/sda1 -> UUID=' "$D/inject.out"
  cat "$D/times" | sed 's/^/# /' >&3
}

@test "after inject: fstab, resume and grub.cfg name file systems by UUID" {
  root_uuid=$(side "$D/server.img" root_fs_uuid)
  section "$D/dump.txt" fstab | grep -q "^UUID=$root_uuid[[:space:]]*/[[:space:]]"
  ! section "$D/dump.txt" fstab | grep -q '^/dev/sd'
  section "$D/dump.txt" resume | grep -q '^RESUME=UUID='
  [ "$(section "$D/dump.txt" grub.cfg | wc -l)" -ge 1 ]
  ! section "$D/dump.txt" grub.cfg | grep -v "root=UUID=$root_uuid"
  section "$D/dump.txt" debconf | grep -q 'install_devices: /dev/vda'
}

@test "after inject: every kernel's initramfs holds virtio_blk (listed by the guest's lsinitramfs)" {
  section "$D/dump.txt" initramfs >"$D/initramfs.txt"
  [ -s "$D/initramfs.txt" ]
  ! grep -q 'virtio_blk=0' "$D/initramfs.txt"
  section "$D/dump.txt" modules | grep -qx virtio_blk
}

@test "after inject: eno1 is pinned to its MAC, the hardware pin is commented out" {
  section "$D/dump.txt" link | grep -qx "MACAddress=$(side "$D/server.img" mac)"
  section "$D/dump.txt" link | grep -qx "Name=eno1"
  section "$D/dump.txt" udev | grep -q '^# p2v: hardware of the physical server: .*DRIVERS=="e1000e"'
  section "$D/dump.txt" udev | grep -q "^SUBSYSTEM==\"net\", ACTION==\"add\", ATTR{address}==\"$(side "$D/server.img" mac)\", NAME=\"eno1\""
}

@test "after inject: the HPE agent is disabled and uninstalled (--remove-agents)" {
  ! section "$D/dump.txt" wants | grep -q hp-health
  section "$D/dump.txt" dpkg | grep -qv 'install ok installed'
}

@test "after inject: backups of edited files and the log in the guest" {
  for f in /etc/fstab /etc/default/grub /etc/initramfs-tools/modules \
           /boot/grub/grub.cfg /etc/udev/rules.d/70-persistent-net.rules; do
    section "$D/dump.txt" backups | grep -qx "$f.p2v-orig"
  done
  # Hidden where every file of the directory is sourced.
  section "$D/dump.txt" backups | grep -qx /etc/initramfs-tools/conf.d/.resume.p2v-orig
  section "$D/dump.txt" log | grep -q '^  1\. /etc/fstab: /dev/sda1 -> UUID='
  section "$D/dump.txt" log | grep -q 'ran: update-initramfs -u -k'
  section "$D/dump.txt" log | grep -q 'done: [0-9]* of [0-9]* changes applied'
}

@test "second inject: nothing to do, the image is not even written" {
  [ "$(cat "$D/inject2.rc")" -eq 0 ] || { cat "$D/inject2.out"; false; }
  [ "$(cat "$D/inject2.out")" = "inject: nothing to do" ]
  [ "$(cat "$D/sha.before-second")" = "$(cat "$D/sha.after-second")" ]
}

@test "p2v convert: the converted server passes smoke on virtio, eno1 up on its MAC and address" {
  [ "$(cat "$D/inject.rc")" -eq 0 ] || { cat "$D/inject.out"; false; }
  grep -q "^pass: '$D/server.qcow2' reached \(multi-user\|graphical\)\.target" "$D/inject.out"
  grep -q "^  root .*/dev/vda" "$D/inject.out"
  grep -Eq "^  $(side "$D/server.img" nic) +$(side "$D/server.img" mac) .*$(side "$D/server.img" ip)" "$D/inject.out"
  # The output is a clean qcow2 and the source was only read.
  qemu-img check -q "$D/server.qcow2"
}

@test "p2v convert leaves its source alone" {
  [ "$(cat "$D/sha.after-dry")" = "$(sha "$D/server.img")" ]
}
