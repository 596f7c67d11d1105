#!/usr/bin/env bats
# p2v capture and p2v receive: used-block maps, bundles as directories,
# tar files, stdout and ssh, checkpoints and --resume, hostile streams.

load helpers
load capture-helpers

setup_file() {
  SD="$BATS_FILE_TMPDIR"
  make_small_disk "$SD/small.img" "$SD"
  make_quarter_disk "$SD/quarter.img" "$SD"
}

setup() {
  T="$(mktemp -d "${BATS_TMPDIR:-/tmp}/p2v-test.XXXXXX")"
  SD="$BATS_FILE_TMPDIR"
}

teardown() {
  unmount_all
  [ -z "${SSHD_PID:-}" ] || kill "$SSHD_PID" 2>/dev/null || true
  rm -rf "$T"
}

@test "capture the debian-bios server image (file and read-only loop): table, ext4 files, fsck, source untouched" {
  requires qemu-img
  img="$(tests/fixtures/build-server.sh debian-bios)"
  before="$(openssl dgst -sha256 -r "$img")"
  run p2v capture --disk "$img" --to "$T/b" --json -q
  [ "$status" -eq 0 ]
  dev="$(losetup -r -f --show "$img")"
  echo "$dev" >> "$T/loops"
  p2v capture --disk "$dev" --to "$T/viadev" -q
  [ "$(openssl dgst -sha256 -r "$img")" = "$before" ]
  m="$T/b/manifest.json"
  [ "$(jq -r .format "$m")" = p2v-bundle ]
  [ "$(jq -r '.disks[0].partition_table' "$m")" = msdos ]
  [ "$(jq -r '.disks[0].file' "$m")" = disk0.qcow2 ]
  # The server's name comes from its own /etc/hostname, not this host's;
  # the firmware from its disk layout (MBR: BIOS).
  [ "$(jq -r .hostname "$m")" = "$(jq -r .hostname "${img%.img}.json")" ]
  [ "$(jq -r .firmware "$m")" = bios ]
  [ "$(jq -c '[.disks[0].partitions[] | [.number, .fs, .copied]]' "$m")" = \
    '[[1,"ext4","used"],[2,"swap","header"]]' ]
  [ "$(jq -r '.disks[0].partitions[0].flags[0]' "$m")" = boot ]
  # The partition table matches what parted reads from the source.
  parted -sm "$img" unit B print | awk -F: '$1 ~ /^[0-9]+$/ {print $1, $2, $4}' \
    | sed 's/B//g' > "$T/parted"
  jq -r '.disks[0].partitions[] | "\(.number) \(.start) \(.size)"' "$m" > "$T/ours"
  diff "$T/parted" "$T/ours"
  # Only the used blocks were read, and far less than the disk.
  read_bytes="$(jq '.disks[0].bytes_read' "$m")"
  [ "$read_bytes" -eq "$(jq '.disks[0].bytes_mapped' "$m")" ]
  [ "$read_bytes" -lt $(( $(stat -c %s "$img") / 2 )) ]
  # The loop device gives the same content.
  [ "$(jq -r .disks[0].digest.value "$T/viadev/manifest.json")" = \
    "$(jq -r .disks[0].digest.value "$m")" ]
  qcow2_clean "$T/b/disk0.qcow2"
  qemu-img compare "$T/b/disk0.qcow2" "$T/viadev/disk0.qcow2"
  qemu-img convert -O raw "$T/b/disk0.qcow2" "$T/out.raw"
  start="$(jq '.disks[0].partitions[0].start' "$m")"
  size="$(jq '.disks[0].partitions[0].size' "$m")"
  e2fsck -fn "$T/out.raw?offset=$start"
  # Every file of the root file system is the same as in the source.
  mount_part "$img" "$start" "$size" "$T/mnt1"
  mount_part "$T/out.raw" "$start" "$size" "$T/mnt2"
  diff -r --no-dereference "$T/mnt1" "$T/mnt2"
  [ -s "$T/mnt2/etc/fstab" ]
}

@test "a read-only loop device: opened O_RDONLY only, same bundle content as the file" {
  requires strace
  cp --sparse=always "$SD/small.img" "$T/src.img"
  before="$(sha "$T/src.img")"
  dev="$(losetup -r -f --show "$T/src.img")"
  echo "$dev" >> "$T/loops"
  strace -f -e trace=open,openat -o "$T/strace" \
    p2v capture --disk "$dev" --to "$T/viadev" -q
  # Every open of the device was read-only.
  grep -F "\"$dev\"" "$T/strace"
  ! grep -F "\"$dev\"" "$T/strace" | grep -E 'O_RDWR|O_WRONLY'
  p2v capture --disk "$T/src.img" --to "$T/viafile" -q
  [ "$(sha "$T/src.img")" = "$before" ]
  [ "$(jq -r .disks[0].name "$T/viadev/manifest.json")" = "$(basename "$dev")" ]
  [ "$(jq -r .disks[0].transport "$T/viadev/manifest.json")" = loop ]
  [ "$(jq -r .disks[0].digest.value "$T/viadev/manifest.json")" = \
    "$(jq -r .disks[0].digest.value "$T/viafile/manifest.json")" ]
  cmp "$T/viadev/disk0.qcow2" "$T/viafile/disk0.qcow2"
}

@test "an ext4 disk 25% full: capture through a read-only loop reads at most 35% of it" {
  img="$SD/quarter.img"
  dev="$(losetup -r -f --show "$img")"
  echo "$dev" >> "$T/loops"
  # A fresh loop device starts with an empty cache of its own: its
  # read counter sees every read p2v makes.
  s0="$(sectors_read "$dev")"
  run p2v capture --disk "$dev" --to "$T/q" --json -q
  [ "$status" -eq 0 ]
  s1="$(sectors_read "$dev")"
  dev_bytes="$(blockdev --getsize64 "$dev")"
  read_bytes=$(( (s1 - s0) * 512 ))
  echo "read $read_bytes of $dev_bytes bytes"
  [ "$read_bytes" -le $(( dev_bytes * 35 / 100 )) ]
  [ "$read_bytes" -ge "$(jq '.disks[0].bytes_read' "$T/q/manifest.json")" ]
  qcow2_clean "$T/q/disk0.qcow2"
  qemu-img convert -O raw "$T/q/disk0.qcow2" "$T/q.raw"
  e2fsck -fn "$T/q.raw?offset=1048576"
  mount_part "$T/q.raw" 1048576 $(( (1024 - 1) * 1048576 )) "$T/mnt1"
  (cd "$SD/qfiles" && find . -type f -print0 | sort -z | xargs -0 sha256sum) > "$T/want"
  (cd "$T/mnt1" && find . -type f ! -path './lost+found/*' -print0 | sort -z \
     | xargs -0 sha256sum) > "$T/got"
  diff "$T/want" "$T/got"
}

@test "MBR gap and inter-partition bytes kept, swap keeps UUID and label, only its header is read" {
  run p2v capture --disk "$SD/small.img" --to "$T/s" --json -q
  [ "$status" -eq 0 ]
  m="$T/s/manifest.json"
  qemu-img convert -O raw "$T/s/disk0.qcow2" "$T/s.raw"
  # grub's core.img lives in 512..1 MiB; the 31..40 MiB gap is kept too.
  cmp -i 512:512 -n $(( 1048576 - 512 )) "$SD/small.img" "$T/s.raw"
  cmp -i $(( 31 << 20 )):$(( 31 << 20 )) -n $(( 9 << 20 )) "$SD/small.img" "$T/s.raw"
  cmp -n 512 "$SD/small.img" "$T/s.raw"
  [ "$(blkid -p -O $(( 40 << 20 )) -s UUID -o value "$T/s.raw")" = \
    66666666-7777-8888-9999-000000000000 ]
  [ "$(blkid -p -O $(( 40 << 20 )) -s LABEL -o value "$T/s.raw")" = swaplabel ]
  # The random pages after the swap header were not copied.
  [ "$(jq '.disks[0].partitions[1].bytes_mapped' "$m")" -eq 4096 ]
  cmp -n $(( 20 << 20 )) -i $(( (40 << 20) + 65536 )):0 "$T/s.raw" /dev/zero
  # The 1 KiB-block ext4 (boot block not in its bitmap) is intact.
  [ "$(jq -r '.disks[0].partitions[0].uuid' "$m")" = 11111111-2222-3333-4444-555555555555 ]
  # The digest, recomputed by an independent implementation.
  [ "$(raw_digest "$T/s.raw")" = "$(jq -r '.disks[0].digest.value' "$m")" ]
  [ "$(jq -r '.disks[0].digest.algorithm' "$m")" = p2v-sha256-nz64k ]
  e2fsck -fn "$T/s.raw?offset=1048576"
  mount_part "$T/s.raw" 1048576 $(( 30 << 20 )) "$T/mnt1"
  diff -r --no-dereference "$SD/files" "$T/mnt1" -x lost+found
}

@test "GPT disk: BIOS boot and ESP copied whole with their flags, both GPT headers kept" {
  requires mkfs.vfat
  img="$T/gpt.img"
  truncate -s 128M "$img"
  printf 'label: gpt\nstart=2048, size=2048, type=21686148-6449-6E6F-744E-656564454649\nstart=4096, size=65536, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\nstart=69632, size=190464, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n' \
    | sfdisk -q "$img"
  dd if=/dev/urandom of="$img" bs=512 seek=2048 count=2048 conv=notrunc status=none
  mkfs.vfat --offset 4096 -n EFI "$img" 32768 >/dev/null
  mkdir -p "$T/g/EFI/debian"
  head -c 100000 /dev/urandom > "$T/g/x"
  mkfs.ext4 -q -F -E offset=$(( 69632 * 512 )) -d "$T/g" "$img" $(( 190464 / 2 ))
  run p2v capture --disk "$img" --to "$T/gb" -q
  [ "$status" -eq 0 ]
  m="$T/gb/manifest.json"
  [ "$(jq -r .disks[0].partition_table "$m")" = gpt ]
  [ "$(jq -c '[.disks[0].partitions[] | [.flags[0], .fs, .copied]]' "$m")" = \
    '[["bios_grub",null,"full"],["esp","vfat","full"],[null,"ext4","used"]]' ]
  qemu-img convert -O raw "$T/gb/disk0.qcow2" "$T/g.raw"
  # Everything before the ext4 partition, and the backup GPT at the end.
  cmp -n $(( 69632 * 512 )) "$img" "$T/g.raw"
  end=$(( (69632 + 190464) * 512 ))
  cmp -i "$end:$end" "$img" "$T/g.raw"
  [ "$(sfdisk -d "$T/g.raw" | grep -v '^device' | sed 's/^[^ ]* :/:/')" = \
    "$(sfdisk -d "$img" | grep -v '^device' | sed 's/^[^ ]* :/:/')" ]
}

@test "--all-blocks: the image equals the source byte for byte" {
  run p2v capture --disk "$SD/small.img" --to "$T/a" --all-blocks --json -q
  [ "$status" -eq 0 ]
  [ "$(echo "$output" | jq '.disks[0].bytes_read')" -eq $(( 64 << 20 )) ]
  [ "$(jq -r '.disks[0].partitions[0].copied' "$T/a/manifest.json")" = all-blocks ]
  qemu-img compare -f raw -F qcow2 "$SD/small.img" "$T/a/disk0.qcow2"
}

@test "kill -9 mid-capture, then --resume: same digests and image as an uninterrupted run" {
  img="$SD/quarter.img"
  p2v capture --disk "$img" --to "$T/ref" -q
  p2v capture --disk "$img" --to "$T/r" -q --checkpoint 16M --max-rate 60M &
  pid=$!
  done_at=0
  for _ in $(seq 1 200); do
    sleep 0.05
    done_at="$(jq '.disks[0].done' "$T/r/.p2v-capture/state.json" 2>/dev/null || echo 0)"
    [ "$done_at" -gt 0 ] && break
  done
  kill -9 "$pid"
  wait "$pid" || true
  echo "killed after checkpoint at $done_at"
  [ "$done_at" -gt 0 ]
  [ ! -e "$T/r/manifest.json" ]
  [ ! -e "$T/r/disk0.qcow2" ]
  # Without --resume the interrupted capture is left alone.
  run p2v capture --disk "$img" --to "$T/r" -q
  [ "$status" -eq 2 ]
  [[ "$output" == *"interrupted capture"*"--resume"* ]]
  run p2v capture --disk "$img" --to "$T/r" -q --resume --json
  [ "$status" -eq 0 ]
  [ ! -e "$T/r/.p2v-capture" ]
  [ "$(jq -r .disks[0].digest.value "$T/r/manifest.json")" = \
    "$(jq -r .disks[0].digest.value "$T/ref/manifest.json")" ]
  [ "$(jq '.disks[0].bytes_read' "$T/r/manifest.json")" -eq \
    "$(jq '.disks[0].bytes_read' "$T/ref/manifest.json")" ]
  qemu-img compare "$T/r/disk0.qcow2" "$T/ref/disk0.qcow2"
  qcow2_clean "$T/r/disk0.qcow2"
  # A finished bundle is never overwritten.
  run p2v capture --disk "$img" --to "$T/r" -q
  [ "$status" -eq 2 ]
  [[ "$output" == *"already holds a finished bundle"* ]]
}

@test "tar file: disks then manifest last, plain files; tar -x gives the directory shape" {
  p2v capture --disk "$SD/small.img" --to "$T/dir" -q
  p2v capture --disk "$SD/small.img" --to "$T/b.tar" -q
  [ "$(tar tf "$T/b.tar" | tr '\n' ' ')" = "disk0.qcow2 manifest.json " ]
  tar tvf "$T/b.tar" | grep -v '^-' && false
  mkdir "$T/x"
  tar -C "$T/x" -xf "$T/b.tar"
  cmp "$T/x/disk0.qcow2" "$T/dir/disk0.qcow2"
  qcow2_clean "$T/x/disk0.qcow2"
  [ "$(jq -r .disks[0].digest.value "$T/x/manifest.json")" = \
    "$(jq -r .disks[0].digest.value "$T/dir/manifest.json")" ]
  ! ls -A "$T" | grep -q p2v-partial
  # An existing tar file is not replaced.
  run p2v capture --disk "$SD/small.img" --to "$T/b.tar" -q
  [ "$status" -eq 2 ]
}

@test "--to - piped into p2v receive, plain and zstd-compressed" {
  p2v capture --disk "$SD/small.img" --to "$T/dir" -q
  p2v capture --disk "$SD/small.img" --to - -q | p2v receive "$T/rx"
  cmp "$T/rx/disk0.qcow2" "$T/dir/disk0.qcow2"
  [ "$(ls -A "$T/rx" | tr '\n' ' ')" = "disk0.qcow2 manifest.json " ]
  p2v capture --disk "$SD/small.img" --to - --compress -q > "$T/c.tar.zst"
  [ "$(head -c 4 "$T/c.tar.zst" | od -An -tx1 | tr -d ' ')" = 28b52ffd ]
  p2v receive "$T/rz" < "$T/c.tar.zst"
  cmp "$T/rz/disk0.qcow2" "$T/dir/disk0.qcow2"
  # A stream cut short leaves nothing.
  head -c 5000000 "$T/c.tar.zst" > "$T/cut"
  run p2v receive "$T/rc" < "$T/cut"
  [ "$status" -eq 2 ]
  [ ! -e "$T/rc" ]
  ! ls -A "$T" | grep -q p2v-receive
}

start_sshd() {
  requires sshd
  mkdir -p /run/sshd "$T/ssh"
  ssh-keygen -q -t ed25519 -N '' -f "$T/ssh/host_key"
  ssh-keygen -q -t ed25519 -N '' -f "$T/ssh/other_host_key"
  ssh-keygen -q -t ed25519 -N '' -f "$T/ssh/client_key"
  cp "$T/ssh/client_key.pub" "$T/ssh/authorized_keys"
  SSH_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  cat > "$T/ssh/sshd_config" <<CONF
ListenAddress 127.0.0.1
Port $SSH_PORT
HostKey $T/ssh/host_key
AuthorizedKeysFile $T/ssh/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile $T/ssh/sshd.pid
CONF
  /usr/sbin/sshd -D -e -f "$T/ssh/sshd_config" 2> "$T/ssh/sshd.log" &
  SSHD_PID=$!
  for _ in $(seq 1 50); do
    (echo > "/dev/tcp/127.0.0.1/$SSH_PORT") 2>/dev/null && break
    sleep 0.1
  done
  echo "[127.0.0.1]:$SSH_PORT $(cut -d' ' -f1,2 "$T/ssh/host_key.pub")" > "$T/ssh/known_hosts"
  echo "[127.0.0.1]:$SSH_PORT $(cut -d' ' -f1,2 "$T/ssh/other_host_key.pub")" > "$T/ssh/wrong_known_hosts"
}

@test "ssh:// pipes the bundle to p2v receive; a wrong host key is refused" {
  start_sshd
  export P2V_REMOTE_P2V="$TOP_DIR/p2v"
  export P2V_SSH_OPTS="-i $T/ssh/client_key -o IdentitiesOnly=yes -o UserKnownHostsFile=$T/ssh/known_hosts"
  p2v capture --disk "$SD/small.img" --to "$T/dir" -q
  run p2v capture --disk "$SD/small.img" --to "ssh://root@127.0.0.1:$SSH_PORT$T/remote" -q
  echo "$output"
  [ "$status" -eq 0 ]
  cmp "$T/remote/disk0.qcow2" "$T/dir/disk0.qcow2"
  [ "$(jq -r .disks[0].digest.value "$T/remote/manifest.json")" = \
    "$(jq -r .disks[0].digest.value "$T/dir/manifest.json")" ]
  # The host key does not match: ssh refuses, nothing arrives.
  export P2V_SSH_OPTS="-i $T/ssh/client_key -o IdentitiesOnly=yes -o UserKnownHostsFile=$T/ssh/wrong_known_hosts"
  run p2v capture --disk "$SD/small.img" --to "ssh://root@127.0.0.1:$SSH_PORT$T/remote2" -q
  echo "$output"
  [ "$status" -eq 2 ]
  [[ "$output" == *"Host key verification failed"* ]]
  [[ "$output" == *"p2v: ssh to '"*"' failed"* ]]
  [ ! -e "$T/remote2" ]
  ! ls -A "$T" | grep -q p2v-receive
}

@test "p2v receive refuses hostile streams and writes nothing outside the target" {
  mkdir -p "$T/h"
  python3 - "$T/h" <<'PY'
import io, sys, tarfile
out = sys.argv[1]
def add(tf, name, data=b'{}', **kw):
    ti = tarfile.TarInfo(name)
    for k, v in kw.items():
        setattr(ti, k, v)
    if ti.type == tarfile.REGTYPE:
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    else:
        tf.addfile(ti)
manifest = b'{"version": 1, "disks": []}'
cases = {
  'dotdot': [('../escaped', {})],
  'abs': [('/tmp/p2v-hostile-abs', {})],
  'sub': [('x/manifest.json', {})],
  'symlink': [('disk0.qcow2', dict(type=tarfile.SYMTYPE, linkname='/etc/passwd'))],
  'hardlink': [('disk0.qcow2', dict(type=tarfile.LNKTYPE, linkname='manifest.json'))],
  'device': [('disk0.qcow2', dict(type=tarfile.CHRTYPE, devmajor=1, devminor=3))],
  'dir': [('disk0.qcow2', dict(type=tarfile.DIRTYPE))],
  'dup': [('disk0.qcow2', {}), ('disk0.qcow2', {})],
  'unknown': [('notes.txt', {})],
  'leadingzero': [('disk01.qcow2', {})],
  'nomanifest': [('disk0.qcow2', {})],
  'missingdisk': [('manifest.json', {'_data': b'{"version": 1, "disks": [{"file": "disk0.qcow2", "size": 1}]}'})],
  'bigmanifest': [('manifest.json', {'_data': b' ' * (17 << 20)})],
}
for name, entries in cases.items():
    with tarfile.open(f'{out}/{name}.tar', 'w', format=tarfile.PAX_FORMAT) as tf:
        for n, kw in entries:
            data = kw.pop('_data', manifest)
            add(tf, n, data, **kw)
PY
  for c in dotdot abs sub symlink hardlink device dir dup unknown leadingzero \
           nomanifest missingdisk bigmanifest; do
    run p2v receive "$T/out-$c" < "$T/h/$c.tar"
    echo "$c: $status $output"
    [ "$status" -eq 2 ]
    [[ "$output" == "p2v: "* ]]
    [ ! -e "$T/out-$c" ]
  done
  [ ! -e "$T/escaped" ]
  [ ! -e /tmp/p2v-hostile-abs ]
  ! ls -A "$T" | grep -q p2v-receive
  run p2v receive "$T/out" < "$T/h/dotdot.tar"
  [[ "$output" == *"refusing '../escaped'"* ]]
  run p2v receive "$T/out" < "$T/h/symlink.tar"
  [[ "$output" == *"not a regular file"* ]]
  run p2v receive "$T/out" < "$T/h/dup.tar"
  [[ "$output" == *"comes twice"* ]]
  run p2v receive "$T/out" < "$T/h/bigmanifest.tar"
  [[ "$output" == *"too large"* ]]
  # An existing non-empty target is refused.
  mkdir -p "$T/full" && touch "$T/full/x"
  run p2v receive "$T/full" < "$T/h/dotdot.tar"
  [ "$status" -eq 2 ]
  [ -e "$T/full/x" ]
}

@test "capture: usage errors" {
  run p2v capture --disk "$SD/small.img"
  [ "$status" -eq 2 ]
  [[ "$output" == *"no destination"* ]]
  run p2v capture --disk "$SD/small.img" --to "$T/x.tar" --resume
  [ "$status" -eq 2 ]
  [[ "$output" == *"--resume needs a directory"* ]]
  run p2v capture --disk "$T/missing.img" --to "$T/d"
  [ "$status" -eq 2 ]
  [[ "$output" == "p2v: cannot open '$T/missing.img': No such file or directory" ]]
  run p2v capture --disk /dev/null --to "$T/d"
  [ "$status" -eq 2 ]
  [[ "$output" == *"not a block device or a file"* ]]
  run p2v capture --disk "$SD/small.img" --to "ssh://host-without-path"
  [ "$status" -eq 2 ]
  [[ "$output" == *"bad ssh destination"* ]]
  # A host that would be an ssh option, bad ports and brackets are refused.
  for u in "ssh://-oProxyCommand=touch\ $T/pwned/p" "ssh://u@h:x/p" "ssh://u@h:123456/p" \
           "ssh://@h/p" "ssh://[::1/p"; do
    run p2v capture --disk "$SD/small.img" --to "$u"
    [ "$status" -eq 2 ]
    [[ "$output" == "p2v: bad "* ]]
  done
  [ ! -e "$T/pwned" ]
  run p2v help capture
  [ "$status" -eq 0 ]
  [[ "$output" == *"--all-blocks"* ]]
}

@test "discovery skips the running system's disk, loop, zram and removable devices" {
  root_src="$(findmnt -no SOURCE /)"
  root_disk="$(lsblk -no PKNAME "$root_src" 2>/dev/null | head -1)"
  [ -n "$root_disk" ] || root_disk="$(basename "$root_src")"
  run p2v capture --list
  echo "$output"
  if [ "$status" -eq 2 ]; then
    [[ "$output" == "p2v: found no disk to capture (name them with --disk)" ]]
  else
    [ "$status" -eq 0 ]
    ! echo "$output" | jq -r '.[].name' | grep -Ex "$root_disk|loop[0-9]+|zram[0-9]+|sr[0-9]+"
  fi
  # --list with --disk shows the map and copies nothing.
  run p2v capture --list --disk "$SD/small.img"
  [ "$status" -eq 0 ]
  [ "$(echo "$output" | jq '.[0].partitions | length')" -eq 2 ]
  [ "$(echo "$output" | jq '.[0].bytes_mapped')" -lt $(( 64 << 20 )) ]
  [ -z "$(ls -A "$T")" ]
}

@test "a non-empty directory is refused; receive into an empty one, which a failure leaves as it was" {
  mkdir -p "$T/busy" && echo precious > "$T/busy/disk0.qcow2"
  run p2v capture --disk "$SD/small.img" --to "$T/busy" -q
  [ "$status" -eq 2 ]
  [[ "$output" == *"is not empty"* ]]
  [ "$(cat "$T/busy/disk0.qcow2")" = precious ]
  [ ! -e "$T/busy/.p2v-capture" ]
  mkdir "$T/empty" "$T/empty2"
  p2v capture --disk "$SD/small.img" --to - -q | p2v receive "$T/empty"
  [ -s "$T/empty/manifest.json" ]
  run p2v receive "$T/empty2" < /dev/null
  [ "$status" -eq 2 ]
  [ -d "$T/empty2" ]
  [ -z "$(ls -A "$T/empty2")" ]
}

# Start a rate-limited capture in the background and wait for its first
# checkpoint (directory) or for its first bytes (tar file).
start_slow_capture() {
  local src="$1" to="$2"; shift 2
  p2v capture --disk "$src" --to "$to" -q --checkpoint 8M --max-rate 40M "$@" &
  CAP_PID=$!
  for _ in $(seq 1 200); do
    sleep 0.05
    if [ -n "${WAIT_PARTIAL:-}" ]; then
      [ -s "$to/.p2v-capture/disk0.qcow2" ] && return 0
    elif [ -d "$to" ]; then
      [ "$(jq '.disks[0].done' "$to/.p2v-capture/state.json" 2>/dev/null || echo 0)" -gt 0 ] && return 0
    elif ls -A "$(dirname "$to")" | grep -q p2v-partial; then
      return 0
    fi
  done
  return 1
}

@test "two disks: disk0 and disk1 in order, in a directory and through receive" {
  p2v capture --disk "$SD/small.img" --disk "$SD/quarter.img" --to "$T/two" -q
  [ "$(jq -r '[.disks[].file] | join(" ")' "$T/two/manifest.json")" = "disk0.qcow2 disk1.qcow2" ]
  [ "$(jq -r '.disks[1].partitions[0].label' "$T/two/manifest.json")" = quarter ]
  p2v capture --disk "$SD/small.img" --disk "$SD/quarter.img" --to - -q | p2v receive "$T/rx"
  cmp "$T/rx/disk0.qcow2" "$T/two/disk0.qcow2"
  cmp "$T/rx/disk1.qcow2" "$T/two/disk1.qcow2"
  run p2v capture --disk "$SD/small.img" --disk "$SD/small.img" --to "$T/dup" -q
  [ "$status" -eq 2 ]
  [[ "$output" == *"named twice"* ]]
}

@test "Ctrl-C: exit 130; a tar file leaves nothing, a directory keeps its checkpoint" {
  start_slow_capture "$SD/quarter.img" "$T/i.tar"
  kill -INT "$CAP_PID"
  st=0; wait "$CAP_PID" || st=$?
  [ "$st" -eq 130 ]
  [ -z "$(ls -A "$T")" ]
  start_slow_capture "$SD/quarter.img" "$T/idir"
  kill -INT "$CAP_PID"
  st=0; wait "$CAP_PID" || st=$?
  [ "$st" -eq 130 ]
  [ -s "$T/idir/.p2v-capture/state.json" ]
  [ ! -e "$T/idir/manifest.json" ]
  p2v capture --disk "$SD/quarter.img" --to "$T/idir" -q --resume
  p2v capture --disk "$SD/quarter.img" --to "$T/ref" -q
  [ "$(jq -r .disks[0].digest.value "$T/idir/manifest.json")" = \
    "$(jq -r .disks[0].digest.value "$T/ref/manifest.json")" ]
}

@test "--resume after the source changed: that disk starts again, the result matches the new source" {
  cp --sparse=always "$SD/quarter.img" "$T/src.img"
  start_slow_capture "$T/src.img" "$T/c"
  kill -9 "$CAP_PID"
  wait "$CAP_PID" || true
  cp --sparse=always "$SD/small.img" "$T/src.img"
  run p2v capture --disk "$T/src.img" --to "$T/c" -q --resume
  echo "$output"
  [ "$status" -eq 0 ]
  [[ "$output" == *"is not as the interrupted capture left it"* ]]
  p2v capture --disk "$T/src.img" --to "$T/ref" -q
  [ "$(jq -r .disks[0].digest.value "$T/c/manifest.json")" = \
    "$(jq -r .disks[0].digest.value "$T/ref/manifest.json")" ]
  qemu-img compare "$T/c/disk0.qcow2" "$T/ref/disk0.qcow2"
  # A checkpoint whose partial image vanished starts that disk again.
  start_slow_capture "$SD/small.img" "$T/c3" --max-rate 10M --checkpoint 1M
  kill -9 "$CAP_PID"
  wait "$CAP_PID" || true
  rm "$T/c3/.p2v-capture/disk0.qcow2"
  run p2v capture --disk "$SD/small.img" --to "$T/c3" -q --resume
  [ "$status" -eq 0 ]
  [[ "$output" == *"is gone"* ]]
  [ "$(jq -r .disks[0].digest.value "$T/c3/manifest.json")" = \
    "$(jq -r .disks[0].digest.value "$T/ref/manifest.json")" ]
  # Options that change the map must match too.
  start_slow_capture "$SD/quarter.img" "$T/c2"
  kill -9 "$CAP_PID"
  wait "$CAP_PID" || true
  run p2v capture --disk "$SD/quarter.img" --to "$T/c2" -q --resume --all-blocks
  [ "$status" -eq 2 ]
  [[ "$output" == *"resume it with the same options"* ]]
}

@test "--compress into a directory: zlib clusters, resumed per disk, same digest" {
  p2v capture --disk "$SD/quarter.img" --to "$T/ref" -q
  WAIT_PARTIAL=1 start_slow_capture "$SD/quarter.img" "$T/z" --compress
  kill -9 "$CAP_PID"
  wait "$CAP_PID" || true
  p2v capture --disk "$SD/quarter.img" --to "$T/z" -q --compress --resume
  qcow2_clean "$T/z/disk0.qcow2"
  qemu-img compare "$T/z/disk0.qcow2" "$T/ref/disk0.qcow2"
  [ "$(jq -r .disks[0].digest.value "$T/z/manifest.json")" = \
    "$(jq -r .disks[0].digest.value "$T/ref/manifest.json")" ]
  qemu-img info --output=json "$T/z/disk0.qcow2" | jq -e '.format == "qcow2"'
}

@test "progress per disk on a TTY, none when stderr is not one" {
  requires script
  script -qec "p2v capture --disk $SD/small.img --to $T/p" /dev/null > "$T/tty.out"
  grep -a "small.img: 100.0%" "$T/tty.out"
  run p2v capture --disk "$SD/small.img" --to "$T/p2"
  [ "$status" -eq 0 ]
  [ -z "$output" ]
}

@test "untrustworthy ext4 (size beyond its partition, journal needing recovery) is copied whole, and so is a disk with a partition past its end" {
  for fault in "ssv blocks_count 4000000" "feature needs_recovery"; do
    cp --sparse=always "$SD/small.img" "$T/bad.img"
    dev="$(losetup -f --show -o 1048576 --sizelimit $(( 30 << 20 )) "$T/bad.img")"
    debugfs -w -R "$fault" "$dev" 2>/dev/null
    losetup -d "$dev"
    run p2v capture --disk "$T/bad.img" --to "$T/out" --json -q
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" == *"copying it whole"* ]]
    [ "$(jq -r '.disks[0].partitions[0].copied' "$T/out/manifest.json")" = full ]
    [ "$(jq '.disks[0].partitions[0].bytes_mapped' "$T/out/manifest.json")" -eq $(( 30 << 20 )) ]
    qemu-img convert -O raw "$T/out/disk0.qcow2" "$T/out.raw"
    cmp -i 1048576:1048576 -n $(( 30 << 20 )) "$T/bad.img" "$T/out.raw"
    rm -rf "$T/out" "$T/out.raw"
  done
  cp --sparse=always "$SD/small.img" "$T/short.img"
  truncate -s 50M "$T/short.img"
  # libblkid rejects the table: the disk is copied whole, byte for byte.
  run p2v capture --disk "$T/short.img" --to "$T/s" -q
  [ "$status" -eq 0 ]
  [ "$(jq -r '.disks[0].partition_table' "$T/s/manifest.json")" = none ]
  [ "$(jq '.disks[0].bytes_mapped' "$T/s/manifest.json")" -eq $(( 50 << 20 )) ]
  qemu-img compare -f raw -F qcow2 "$T/short.img" "$T/s/disk0.qcow2"
}

@test "ext4 with bigalloc (64 KiB clusters): used clusters only, fsck clean, files intact" {
  mkdir -p "$T/files"
  head -c 3M /dev/urandom > "$T/files/x"
  seq 1 50000 > "$T/files/y"
  truncate -s 128M "$T/d.img"
  printf 'label: dos\nstart=2048, type=83\n' | sfdisk -q "$T/d.img"
  mkfs.ext4 -q -F -b 4096 -O bigalloc -C 65536 -E offset=1048576 -d "$T/files" \
    "$T/d.img" $(( 127 * 256 )) 2>/dev/null
  p2v capture --disk "$T/d.img" --to "$T/c" -q
  [ "$(jq -r '.disks[0].partitions[0].copied' "$T/c/manifest.json")" = used ]
  [ "$(jq '.disks[0].bytes_read' "$T/c/manifest.json")" -lt $(( 32 << 20 )) ]
  qemu-img convert -O raw "$T/c/disk0.qcow2" "$T/o.raw"
  e2fsck -fn "$T/o.raw?offset=1048576"
  mount_part "$T/o.raw" 1048576 $(( 127 << 20 )) "$T/mnt1"
  diff -r "$T/files" "$T/mnt1" -x lost+found
}
