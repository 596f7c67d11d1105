# inject-helpers.bash: shared by tests/inject-*.bats: guest fixtures,
# libguestfs under TCG, and a read-only look inside an image with the
# guest's own tools (guestfish, independent of p2v).

load helpers

# KVM crashes or hangs on these machines: libguestfs uses TCG.
export LIBGUESTFS_BACKEND=${LIBGUESTFS_BACKEND:-direct}
export LIBGUESTFS_BACKEND_SETTINGS=${LIBGUESTFS_BACKEND_SETTINGS:-force_tcg}

FIXTURES="$TOP_DIR/tests/fixtures"

# use_fixture VARIANT: FIX becomes the cached image (built on first use),
# or the test (or file) is skipped.  Not in $(...): skip must run here.
use_fixture() {
  [ "$(id -u)" -eq 0 ] || skip "guest fixtures need root"
  command -v guestfish >/dev/null || skip "guestfish is not installed"
  [ -x "$FIXTURES/build-server.sh" ] || skip "no fixture builder"
  FIX=$("$FIXTURES/build-server.sh" "$1" 2>"${BATS_FILE_TMPDIR:-/tmp}/build-$1.log") \
    || skip "fixture $1 could not be built (see build-$1.log)"
  [ -f "$FIX" ] || skip "fixture $1 missing"
  export FIX
}

# A private copy of a fixture (never touch the cache), with its sidecar.
fixture_copy() {
  local src="$1" dst="$2"
  cp --sparse=always "$src" "$dst"
  cp "${src%.img}.json" "${dst%.img}.json"
  [ ! -f "${src%.img}.vars.fd" ] || cp "${src%.img}.vars.fd" "${dst%.img}.vars.fd"
  # The sidecar's NVRAM path must follow the copy.
  if [ -f "${dst%.img}.vars.fd" ]; then
    jq --arg v "${dst%.img}.vars.fd" '.nvram_vars = $v' "${dst%.img}.json" \
      > "${dst%.img}.json.tmp" && mv "${dst%.img}.json.tmp" "${dst%.img}.json"
  fi
}

side() { # side IMAGE KEY: a sidecar value
  jq -r --arg k "$2" '.[$k] // empty' "${1%.img}.json"
}

# guest_sh IMAGE SCRIPT: run SCRIPT in the guest (read-only, chrooted by
# guestfish's `sh`), so the guest's own lsinitramfs/lsinitrd list its
# initramfs.  The script travels base64-encoded: no quoting to get wrong.
guest_sh() {
  local b64
  b64=$(printf '%s\n' "$2" | base64 -w0)
  guestfish --ro -a "$1" -i sh "echo $b64 | base64 -d | sh 2>&1"
}

# What the inject tests look at, in one appliance run.
GUEST_DUMP='
echo "== fstab"; cat /etc/fstab
echo "== grub.cfg"; grep -E "^[[:space:]]*linux[[:space:]]" /boot/grub/grub.cfg
echo "== initramfs"
for k in /boot/vmlinuz-*; do
  v=${k#/boot/vmlinuz-}; i=/boot/initrd.img-$v
  if command -v lsinitramfs >/dev/null; then l=lsinitramfs; else l=lsinitrd; fi
  echo "$i virtio_blk=$($l $i | grep -c "virtio_blk\.ko")"
done
echo "== link"; for f in /etc/systemd/network/*.link; do echo "# $f"; cat "$f"; done
echo "== udev"; cat /etc/udev/rules.d/70-persistent-net.rules
echo "== resume"; cat /etc/initramfs-tools/conf.d/resume 2>/dev/null
echo "== modules"; cat /etc/initramfs-tools/modules /etc/dracut.conf.d/p2v-virtio.conf 2>/dev/null
echo "== backups"
find /etc /boot/grub /var/cache/debconf -name "*.p2v-orig" 2>/dev/null | sort
echo "== log"; cat /var/log/p2v-inject.log
echo "== efi"; find /boot/efi/EFI -type f 2>/dev/null | sort
echo "== wants"; ls /etc/systemd/system/multi-user.target.wants/
echo "== debconf"; debconf-show grub-pc 2>/dev/null | grep "install_devices:"
echo "== end"
'

# section FILE NAME: the lines of one "== NAME" section of a dump.
section() {
  awk -v s="== $2" '$0 == s { on = 1; next } /^== / { on = 0 } on' "$1"
}

# step NAME CMD...: run CMD once for the whole file, keeping its stdout
# ($D/NAME.out), stderr ($D/NAME.err), exit code ($D/NAME.rc) and time.
step() {
  local name=$1 t0=$SECONDS rc=0
  shift
  "$@" >"$D/$name.out" 2>"$D/$name.err" || rc=$?
  echo "$rc" >"$D/$name.rc"
  echo "$name: $((SECONDS - t0)) s" >>"$D/times"
}

# step_ok NAME: the step exited 0 (else show what it said).
step_ok() {
  [ "$(cat "$D/$1.rc")" -eq 0 ] || { cat "$D/$1.out" "$D/$1.err"; false; }
}

# inject_flow [loop]: the whole pipeline as a user runs it: inspect
# --json of $D/server.img; `p2v capture` of it (the file, or with "loop"
# a read-only loop device of it, as a physical disk) into a bundle; `p2v
# convert` of the bundle (copy + inject + smoke) into $D/server.qcow2
# with the fixture's MAC; then a second inject (with the hashes around
# it) and a guest dump of the converted image.
inject_flow() {
  local disk="$D/server.img"
  step inspect p2v inspect --json "$D/server.img"
  if [ "${1:-}" = loop ]; then
    disk=$(losetup -r -f --show "$D/server.img")
    echo "$disk" >"$D/loop"
  fi
  step capture p2v capture --disk "$disk" --to "$D/bundle" -q --json
  [ "${1:-}" != loop ] || { losetup -d "$disk"; rm -f "$D/loop"; }
  step convert p2v convert --json --mac "$(side "$D/server.img" mac)" \
    "$D/bundle" -o "$D/server.qcow2"
  sha "$D/server.qcow2" >"$D/sha.before-second"
  step inject2 p2v inject "$D/server.qcow2"
  sha "$D/server.qcow2" >"$D/sha.after-second"
  step dump guest_sh "$D/server.qcow2" "$GUEST_DUMP"
}

# inject_flow_teardown: a loop device a failed set-up left behind.
inject_flow_teardown() {
  [ ! -f "$D/loop" ] || losetup -d "$(cat "$D/loop")" 2>/dev/null || true
}

# smoke_passed JSON [PATH]: the smoke report at PATH (default: the whole
# file) in JSON says pass: multi-user, / on the virtio disk, the
# fixture's NIC up on virtio_net with the MAC it was given and its
# static address.
smoke_passed() {
  local j="$1" p="${2:-.}" nic mac ip
  nic=$(side "$D/server.img" nic); mac=$(side "$D/server.img" mac)
  ip=$(side "$D/server.img" ip)
  jq -e "$p | .verdict == \"pass\"" "$j" >/dev/null || { jq "$p" "$j"; false; }
  # / is on the virtio disk (directly, or through LVM on it).
  [ "$(jq -r "$p | .root_disks[0].driver" "$j")" = virtio_blk ]
  [[ "$(jq -r "$p | .target" "$j")" =~ ^(multi-user|graphical)\.target$ ]]
  jq -e --arg n "$nic" --arg m "$mac" --arg ip "$ip" \
    "$p"' | .interfaces[] | select(.name == $n) | .mac == $m and .state == "up" and .driver == "virtio_net" and (.ipv4 | index($ip))' \
    "$j" >/dev/null
}

# convert_smoke_passed: the capture and convert steps worked, convert
# injected the copy and its smoke test passed (smoke_passed).
convert_smoke_passed() {
  local j="$D/convert.out"
  step_ok capture
  step_ok convert
  [ "$(jq -r .injected "$j")" = true ]
  smoke_passed "$j" .smoke
  echo "# convert + inject + smoke: $(grep '^convert:' "$D/times"), smoke boot $(jq -r .smoke.seconds "$j") s" >&3
}
