#!/usr/bin/env bats
# Capture bundles as a source (docs/bundle.md): p2v verify BUNDLE, p2v
# convert BUNDLE -o OUT (every disk, plus OUT.xml, a libvirt domain), in
# both shapes (directory, tar read in place), and hostile bundles.
# Bundles are built here by tests/tools/make-bundle.py: qemu-img makes the
# qcow2s and Python computes the digests, independently of p2v's C code.

load helpers

MAKE_BUNDLE="$TOP_DIR/tests/tools/make-bundle.py"
# Not the fixture's own MAC nor smoke's default: seen in the smoke report
# only if p2v took it from the manifest.
BUNDLE_MAC=52:54:00:65:43:21

# The debian-bios fixture as a one-disk bundle, both shapes, built once.
setup_file() {
  command -v qemu-img >/dev/null || skip "qemu-img is not installed"
  command -v python3 >/dev/null || skip "python3 is not installed"
  command -v jq >/dev/null || skip "jq is not installed"
  [ "$(id -u)" -eq 0 ] || skip "building guest fixtures needs root"
  FIXTURE=$("$TOP_DIR/tests/fixtures/build-server.sh" debian-bios)
  export FIXTURE
  export B="$BATS_FILE_TMPDIR/bios"
  "$MAKE_BUNDLE" make "$B" "$FIXTURE" --hostname 'p2v-debian-bios' \
    --mac "$BUNDLE_MAC" --cpus 3 --memory $((1536 * 1024 * 1024)) \
    --firmware bios --tar "$B.tar"
}

# small_bundle DIR [make-bundle options]: a two-disk bundle of generated
# images (disk0 8 MiB, disk1 a 4 MiB data disk with a different seed).
small_bundle() {
  local dir=$1; shift
  "$GEN_IMAGE" "$T/src0.img" 8 1
  "$GEN_IMAGE" "$T/src1.img" 4 2
  "$MAKE_BUNDLE" make "$dir" "$T/src0.img" "$T/src1.img" "$@"
}

# The only thing in DIR is what the test put there: nothing partial.
only_files() {
  local dir=$1; shift
  local got want
  got=$(ls -A "$dir" | sort | tr '\n' ' ')
  want=
  [ $# -eq 0 ] || want=$(printf '%s\n' "$@" | sort | tr '\n' ' ')
  [ "$got" = "$want" ] || { echo "in $dir: got '$got', want '$want'"; return 1; }
}

# ---- verify -------------------------------------------------------------------

@test "verify BUNDLE: directory and tar match the Python digest of the source" {
  want=$("$MAKE_BUNDLE" digest "$FIXTURE")
  run p2v verify "$B"
  [ "$status" -eq 0 ]
  [[ "$output" == *"disk0.qcow2 (sda): digest matches"* ]]
  run p2v verify --json "$B.tar"
  [ "$status" -eq 0 ]
  [ "$(echo "$output" | jq -r '.disks[0].actual')" = "$want" ]
  [ "$(echo "$output" | jq -r '.disks[0].expected')" = "$want" ]
  [ "$(echo "$output" | jq -r .ok)" = true ]
  # Time follows data: only the allocated clusters were read (< 1 GiB of 3).
  [ "$(echo "$output" | jq '.disks[0].bytes_read')" -lt $((1024 * 1024 * 1024)) ]
}

@test "verify BUNDLE: one flipped byte in a data cluster of disk0: exit 1 naming disk0" {
  mkdir "$T/b"
  cp "$B/manifest.json" "$T/b/"
  cp --sparse=always "$B/disk0.qcow2" "$T/b/"
  # A data cluster, from qemu-img's own map, 1000 bytes in.
  off=$(qemu-img map --output=json "$T/b/disk0.qcow2" \
        | jq '[.[] | select(.data and .offset != null and .length >= 65536)][10].offset + 1000')
  python3 - "$T/b/disk0.qcow2" "$off" <<'EOF'
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
off = int(sys.argv[2])
b = os.pread(fd, 1, off)
os.pwrite(fd, bytes([b[0] ^ 0x55]), off)
EOF
  qemu-img check "$T/b/disk0.qcow2" >/dev/null   # still a valid qcow2
  run p2v verify "$T/b"
  [ "$status" -eq 1 ]
  [[ "$output" == *"disk0.qcow2 (sda): DIGEST MISMATCH"* ]]
  [[ "$output" == *"disk 'disk0.qcow2' of bundle '$T/b' does not match its manifest digest"* ]]
  run p2v verify --json "$T/b"
  [ "$status" -eq 1 ]
  [ "$(echo "$output" | jq -r '.disks[0].match')" = false ]
  [ "$(echo "$output" | jq -r '.disks[0].expected')" != "$(echo "$output" | jq -r '.disks[0].actual')" ]
  run p2v verify -q "$T/b"
  [ "$status" -eq 1 ]
  [ -z "$output" ]
}

@test "verify BUNDLE: two disks, and a disk without a digest is an error" {
  small_bundle "$T/b"
  run p2v verify "$T/b"
  [ "$status" -eq 0 ]
  [[ "$output" == *"all 2 disks match"* ]]
  jq 'del(.disks[1].digest)' "$T/b/manifest.json" > "$T/m" && mv "$T/m" "$T/b/manifest.json"
  run p2v verify "$T/b"
  [ "$status" -eq 2 ]
  [ "$output" = "p2v: disk 'disk1.qcow2' of bundle '$T/b' has no digest in the manifest" ]
}

# ---- convert --------------------------------------------------------------------

# The expensive one (about 5 minutes under TCG): convert + inject + smoke
# of the tar shape, read in place.
@test "convert BUNDLE.tar: full pipeline passes smoke with the captured MAC; OUT.xml is a valid domain" {
  for t in qemu-system-x86_64 guestfish virt-xml-validate; do requires "$t"; done
  export P2V_ACCEL=tcg LIBGUESTFS_BACKEND=direct LIBGUESTFS_BACKEND_SETTINGS=force_tcg
  side=${FIXTURE%.img}.json
  before=$(sha "$B.tar")
  mkdir "$T/out"
  start=$SECONDS
  run p2v convert "$B.tar" -o "$T/out/out.qcow2" --json
  echo "# convert + inject + smoke of the debian-bios bundle (tar): $((SECONDS - start)) s" >&3
  echo "$output" > "$T/run.json"
  [ "$status" -eq 0 ]
  j() { jq -r "$@" "$T/run.json"; }
  [ "$(j '.disks | length')" = 1 ]
  [ "$(j '.disks[0].source')" = "$B.tar:disk0.qcow2" ]
  [ "$(j .mac)" = "$BUNDLE_MAC" ]
  [ "$(j .injected)" = true ]
  [ "$(j .smoke.verdict)" = pass ]
  [ "$(j .smoke.firmware)" = bios ]
  [[ "$(j .smoke.root_source)" == /dev/vda* ]]
  # The guest's eno1 came up on the manifest's MAC with the server's address.
  nic=$(jq -r .nic "$side"); ip=$(jq -r .ip "$side")
  [ "$(j --arg n "$nic" '.smoke.interfaces[] | select(.name == $n) | .mac')" = "$BUNDLE_MAC" ]
  jq -e --arg n "$nic" --arg ip "$ip" \
    '.smoke.interfaces[] | select(.name == $n) | .state == "up" and (.ipv4 | index($ip))' "$T/run.json"
  only_files "$T/out" out.qcow2 out.xml
  qcow2_clean "$T/out/out.qcow2"
  [ "$(sha "$B.tar")" = "$before" ]

  x="$T/out/out.xml"
  virt-xml-validate "$x" domain
  # xq PATH ATTR: the attribute (or with ATTR '' the text) of each match.
  xq() { python3 -c 'import sys, xml.etree.ElementTree as E; r = E.parse(sys.argv[1]).getroot(); print("\n".join(str(e.text if sys.argv[3] == "" else e.get(sys.argv[3])) for e in r.findall(sys.argv[2])))' "$x" "$@"; }
  [ "$(xq name '')" = p2v-debian-bios ]
  [ "$(xq vcpu '')" = 3 ]
  [ "$(xq memory '')" = $((1536 * 1024)) ]
  [ "$(xq memory unit)" = KiB ]
  [ "$(xq os firmware)" = None ]             # bios: no firmware='efi'
  [ "$(xq devices/interface/mac address)" = "$BUNDLE_MAC" ]
  [ "$(xq devices/interface/model type)" = virtio ]
  [ "$(xq devices/interface/source network)" = default ]
  [ "$(xq devices/disk/source file)" = "$(realpath "$T/out/out.qcow2")" ]
  [ "$(xq devices/disk/target bus)" = virtio ]
  [ "$(xq devices/disk/driver type)" = qcow2 ]
  [ "$(xq devices/serial/target port)" = 0 ]
  # libvirt itself takes it (its in-memory test driver: no daemon needed).
  if command -v virsh >/dev/null; then
    virsh -c test:///default "define $x; dominfo p2v-debian-bios" > "$T/dominfo"
    grep -E '^CPU\(s\): +3$' "$T/dominfo"
    grep -E "^Max memory: +$((1536 * 1024)) KiB$" "$T/dominfo"
  fi
}

@test "convert BUNDLE (directory) --no-inject --no-smoke: same content as the source, valid XML" {
  requires virt-xml-validate
  mkdir "$T/out"
  run p2v convert "$B" -o "$T/out/new.qcow2" --no-inject --no-smoke
  [ "$status" -eq 0 ]
  [[ "$output" == *"wrote libvirt domain '$T/out/new.xml' (1 disk, 1 NIC, bios)"* ]]
  only_files "$T/out" new.qcow2 new.xml
  qemu-img compare "$FIXTURE" "$T/out/new.qcow2"
  qcow2_clean "$T/out/new.qcow2"
  virt-xml-validate "$T/out/new.xml" domain
  grep -q "<mac address='$BUNDLE_MAC'/>" "$T/out/new.xml"
  # Outputs exist now: refused without --force, nothing touched.
  before=$(sha "$T/out/new.qcow2")
  run p2v convert "$B" -o "$T/out/new.qcow2" --no-inject --no-smoke
  [ "$status" -eq 2 ]
  [ "$output" = "p2v: output '$T/out/new.qcow2' already exists (use --force to replace it)" ]
  [ "$(sha "$T/out/new.qcow2")" = "$before" ]
}

@test "convert a two-disk bundle to raw: both outputs, the XML has both disks" {
  requires virt-xml-validate
  small_bundle "$T/b" --hostname 'db 01/prod' --mac 52:54:00:00:00:0a \
    --mac 52:54:00:00:00:0b --firmware uefi --cpus 4 --memory 1073741825
  mkdir "$T/out"
  run p2v convert "$T/b" -o "$T/out/new.img" -O raw --no-inject --no-smoke --json
  [ "$status" -eq 0 ]
  [ "$(echo "$output" | jq -r '.disks[1].output')" = "$T/out/new-disk1.img" ]
  only_files "$T/out" new.img new-disk1.img new.xml
  qemu-img compare -f raw -F raw "$T/src0.img" "$T/out/new.img"
  qemu-img compare -f raw -F raw "$T/src1.img" "$T/out/new-disk1.img"
  x="$T/out/new.xml"
  virt-xml-validate "$x" domain
  python3 - "$x" "$T/out" <<'EOF'
import os, sys, xml.etree.ElementTree as E
r = E.parse(sys.argv[1]).getroot()
out = os.path.realpath(sys.argv[2])
disks = r.findall("devices/disk")
assert [d.find("source").get("file") for d in disks] == [out + "/new.img", out + "/new-disk1.img"], disks
assert [d.find("target").get("dev") for d in disks] == ["vda", "vdb"]
assert all(d.find("driver").get("type") == "raw" for d in disks)
assert [i.find("mac").get("address") for i in r.findall("devices/interface")] == ["52:54:00:00:00:0a", "52:54:00:00:00:0b"]
assert r.find("os").get("firmware") == "efi"
assert r.find("name").text == "db-01-prod", r.find("name").text
assert r.find("vcpu").text == "4"
assert r.find("memory").text == str(1025 * 1024), r.find("memory").text   # rounded up to MiB
EOF
  if command -v virsh >/dev/null; then
    virsh -c test:///default "define $x; dumpxml db-01-prod" | grep -q "<os firmware='efi'>"
  fi
}

# ---- hostile bundles ---------------------------------------------------------

# hostile_tar NAME ENTRY...: a pax tar in $T/NAME.tar.  ENTRY is
# file:NAME (a small valid qcow2, NAME stored as given, even absolute),
# manifest, symlink:NAME:TARGET,
# hardlink:NAME:TARGET, or dir:NAME.
hostile_tar() {
  local name=$1; shift
  [ -f "$T/q.qcow2" ] || qemu-img create -q -f qcow2 "$T/q.qcow2" 1M
  jq -n '{version: 1, disks: [{file: "disk0.qcow2", size: 1048576}]}' > "$T/manifest.json"
  python3 - "$T/$name.tar" "$T/q.qcow2" "$T/manifest.json" "$@" <<'EOF'
import sys, tarfile
out, q, m, entries = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as t:
    for e in entries:
        kind, _, rest = e.partition(":")
        if kind == "file":
            # TarInfo by hand: tarfile.add would strip a leading '/'.
            i = t.gettarinfo(q, arcname="x")
            i.name = rest
            with open(q, "rb") as f:
                t.addfile(i, f)
        elif kind == "manifest":
            t.add(m, arcname="manifest.json")
        elif kind in ("symlink", "hardlink"):
            n, _, target = rest.partition(":")
            i = tarfile.TarInfo(n)
            i.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
            i.linkname = target
            t.addfile(i)
        elif kind == "dir":
            i = tarfile.TarInfo(rest)
            i.type = tarfile.DIRTYPE
            t.addfile(i)
EOF
}

# refused BUNDLE MESSAGE-PART: verify and convert both exit 2 with one
# line of error naming the reason, and leave nothing behind.
refused() {
  local bundle=$1 words=$2
  mkdir -p "$T/out"
  for cmd in verify convert; do
    if [ $cmd = verify ]; then
      run p2v verify "$bundle"
    else
      run p2v convert "$bundle" -o "$T/out/x.qcow2" --no-inject --no-smoke
    fi
    echo "$cmd: $output"
    [ "$status" -eq 2 ]
    [ "${#lines[@]}" -eq 1 ]
    [[ "$output" == "p2v: "*"$words"* ]]
  done
  only_files "$T/out"
}

@test "hostile tar: '..' entry" {
  hostile_tar h file:disk0.qcow2 file:../evil manifest
  refused "$T/h.tar" "has an entry '../evil' that is not part of a bundle"
  [ ! -e "$T/../evil" ] && [ ! -e "$BATS_FILE_TMPDIR/evil" ]
}

@test "hostile tar: absolute path entry" {
  hostile_tar h file:disk0.qcow2 "file:$T/abs-evil" manifest
  refused "$T/h.tar" "has an entry '$T/abs-evil' that is not part of a bundle"
  [ ! -e "$T/abs-evil" ]
}

@test "hostile tar: a disk that is a symlink, or a hard link" {
  hostile_tar s symlink:disk0.qcow2:/etc/passwd manifest
  refused "$T/s.tar" "entry 'disk0.qcow2' is not a regular file"
  hostile_tar l file:disk1.qcow2 hardlink:disk0.qcow2:disk1.qcow2 manifest
  refused "$T/l.tar" "entry 'disk0.qcow2' is not a regular file"
}

@test "hostile tar: duplicate entry, directory entry, compressed tar" {
  hostile_tar d file:disk0.qcow2 file:disk0.qcow2 manifest
  refused "$T/d.tar" "has entry 'disk0.qcow2' twice"
  hostile_tar e dir:disk0.qcow2 manifest
  refused "$T/e.tar" "has an entry 'disk0.qcow2/' that is not part of a bundle"
  hostile_tar g file:disk0.qcow2 manifest
  gzip -c "$T/g.tar" > "$T/g.tar.gz"
  refused "$T/g.tar.gz" "bundle '$T/g.tar.gz' is a gzip-compressed tar, which cannot be read in place: decompress it first"
  # A plain image is not a bundle: verify with one argument says so.
  run p2v verify "$T/q.qcow2"
  [ "$status" -eq 2 ]
  [[ "$output" == *"is not a bundle (a directory or a tar)"* ]]
}

@test "hostile tar: entries beyond the end of the file; manifest missing" {
  hostile_tar t file:disk0.qcow2 manifest
  # Cut the tar inside disk0's data: its header claims more than is there.
  truncate -s 4096 "$T/t.tar"
  refused "$T/t.tar" "entry 'disk0.qcow2'"
  [[ "$output" == *"beyond the end of the file"* ]]
  hostile_tar n file:disk0.qcow2
  refused "$T/n.tar" "'$T/n.tar' is not a finished bundle: the tar has no manifest.json"
}

@test "hostile manifest: a lie about a disk size (dir and tar)" {
  small_bundle "$T/b" --tar "$T/b.tar"
  jq '.disks[1].size = 8388608' "$T/b/manifest.json" > "$T/m" && mv "$T/m" "$T/b/manifest.json"
  refused "$T/b" "'$T/b/disk1.qcow2' has a virtual size of 4194304 bytes, but the bundle manifest says 8388608"
  # The tar: rebuilt with the lying manifest last.
  (cd "$T/b" && tar --format=pax -cf "$T/b2.tar" disk0.qcow2 disk1.qcow2 manifest.json)
  refused "$T/b2.tar" "'$T/b2.tar:disk1.qcow2' has a virtual size of 4194304 bytes"
}

@test "hostile manifest: missing disk file, bad JSON, wrong version, bad name, no manifest" {
  small_bundle "$T/b"
  rm "$T/b/disk1.qcow2"
  refused "$T/b" "bundle '$T/b' is missing the disk file 'disk1.qcow2' its manifest lists"

  small_bundle "$T/c"
  printf '{"version": 1, "disks": [' > "$T/c/manifest.json"
  refused "$T/c" "cannot parse bundle manifest '$T/c/manifest.json'"

  small_bundle "$T/d"
  jq '.version = 2' "$T/d/manifest.json" > "$T/m" && mv "$T/m" "$T/d/manifest.json"
  refused "$T/d" "has version 2, but this p2v reads only version 1"

  small_bundle "$T/e"
  jq '.disks[0].file = "../../etc/passwd"' "$T/e/manifest.json" > "$T/m" && mv "$T/m" "$T/e/manifest.json"
  refused "$T/e" "disks[0].file is not a disk file name (diskN.qcow2)"

  mkdir "$T/f"
  refused "$T/f" "'$T/f' is not a finished bundle: it has no manifest.json"
}

@test "a disk file that is a symlink in a directory bundle is refused" {
  small_bundle "$T/b"
  mv "$T/b/disk1.qcow2" "$T/elsewhere.qcow2"
  ln -s "$T/elsewhere.qcow2" "$T/b/disk1.qcow2"
  refused "$T/b" "disk file 'disk1.qcow2' of bundle '$T/b' is not a regular file"
}

@test "a tar with the manifest first and a capture log is a good bundle" {
  hostile_tar ok manifest file:p2v-capture.log file:disk0.qcow2
  mkdir "$T/out"
  run p2v convert "$T/ok.tar" -o "$T/out/x.qcow2" --no-inject --no-smoke -q
  [ "$status" -eq 0 ]
  only_files "$T/out" x.qcow2 x.xml
  qemu-img compare "$T/q.qcow2" "$T/out/x.qcow2"
}

@test "convert BUNDLE: OUT named .xml, or an existing XML, is refused before any write" {
  hostile_tar ok file:disk0.qcow2 manifest
  mkdir "$T/out"
  run p2v convert "$T/ok.tar" -o "$T/out/x.xml" --no-inject --no-smoke
  [ "$status" -eq 2 ]
  [ "$output" = "p2v: output '$T/out/x.xml' would be the domain XML too: give OUT another extension than .xml" ]
  only_files "$T/out"
  echo keep > "$T/out/x.xml"
  run p2v convert "$T/ok.tar" -o "$T/out/x.qcow2" --no-inject --no-smoke
  [ "$status" -eq 2 ]
  [ "$output" = "p2v: output '$T/out/x.xml' already exists (use --force to replace it)" ]
  only_files "$T/out" x.xml
  run p2v convert "$T/ok.tar" -o "$T/out/x.qcow2" --no-inject --no-smoke --force --mac 52:54:00:1
  [ "$status" -eq 2 ]
  [ "$output" = "p2v: MAC address '52:54:00:1' is not xx:xx:xx:xx:xx:xx" ]
  only_files "$T/out" x.xml
  run p2v convert "$T/ok.tar" -o "$T/out/x.qcow2" --no-inject --no-smoke --force -q
  [ "$status" -eq 0 ]
  grep -q "<domain type='kvm'>" "$T/out/x.xml"
}

@test "convert BUNDLE --compress: compressed qcow2 per disk; with -O raw refused" {
  small_bundle "$T/b"
  mkdir "$T/out"
  run p2v convert "$T/b" -o "$T/out/c.img" -O raw --compress --no-inject --no-smoke
  [ "$status" -eq 2 ]
  [ "$output" = "p2v: format 'raw' cannot store compressed data" ]
  only_files "$T/out"
  run p2v convert "$T/b" -o "$T/out/c.qcow2" --compress --no-inject --no-smoke --json
  [ "$status" -eq 0 ]
  [ "$(echo "$output" | jq '[.disks[] | .bytes_compressed_in > 0] | all')" = true ]
  qemu-img compare "$T/src0.img" "$T/out/c.qcow2"
  qemu-img compare "$T/src1.img" "$T/out/c-disk1.qcow2"
  qcow2_clean "$T/out/c-disk1.qcow2"
}

@test "convert BUNDLE interrupted (SIGINT): exit 130, no output, no partial file" {
  mkdir "$T/out"
  # Level-9 compression on one thread keeps it busy long enough to interrupt.
  p2v convert "$B.tar" -o "$T/out/i.qcow2" --compress=9 -t 1 --no-inject --no-smoke -q &
  pid=$!
  sleep 2
  ls -A "$T/out" | grep -q p2v-partial      # it is writing
  kill -INT "$pid"
  status=0
  wait "$pid" || status=$?
  [ "$status" -eq 130 ]
  only_files "$T/out"
}
