# capture-helpers.bash: disk images and checks for tests/capture*.bats.

# A 64 MiB MBR disk: p1 ext4 (1 KiB blocks, files from $2/files) at 1 MiB,
# random bytes in the MBR gap (512..1 MiB) and between partitions
# (31..40 MiB), p2 swap at 40 MiB whose pages past the header are random.
make_small_disk() {
  local img="$1" work="$2"
  mkdir -p "$work/files/sub"
  head -c 5M /dev/urandom > "$work/files/a.bin"
  echo hello > "$work/files/b.txt"
  head -c 70000 /dev/urandom > "$work/files/sub/c.bin"
  ln -s b.txt "$work/files/link"
  truncate -s 64M "$img"
  printf 'label: dos\nstart=2048, size=61440, type=83, bootable\nstart=81920, size=40960, type=82\n' \
    | sfdisk -q "$img"
  mkfs.ext4 -q -F -E offset=1048576 -d "$work/files" -L smallroot \
    -U 11111111-2222-3333-4444-555555555555 "$img" 30M
  head -c 20M /dev/urandom > "$work/swap.part"
  mkswap -q -U 66666666-7777-8888-9999-000000000000 -L swaplabel "$work/swap.part"
  dd if="$work/swap.part" of="$img" bs=1M seek=40 conv=notrunc status=none
  rm -f "$work/swap.part"
  dd if=/dev/urandom of="$img" bs=512 seek=1 count=2047 conv=notrunc status=none
  dd if=/dev/urandom of="$img" bs=1M seek=31 count=9 conv=notrunc status=none
}

# A 1 GiB MBR disk, one ext4 partition (4 KiB blocks) about 25 % full.
make_quarter_disk() {
  local img="$1" work="$2"
  mkdir -p "$work/qfiles"
  for i in $(seq 1 12); do
    head -c 16M /dev/urandom > "$work/qfiles/f$i.bin"
  done
  mkdir -p "$work/qfiles/etc"
  seq 1 100000 > "$work/qfiles/etc/numbers"
  truncate -s 1G "$img"
  printf 'label: dos\nstart=2048, type=83\n' | sfdisk -q "$img"
  mkfs.ext4 -q -F -b 4096 -E offset=1048576 -d "$work/qfiles" -L quarter \
    "$img" $(( (1024 - 1) * 256 ))
}

# The p2v-sha256-nz64k digest of a raw file, computed independently.
raw_digest() {
  python3 - "$1" <<'PY'
import hashlib, struct, sys
h = hashlib.sha256()
B = 65536
zero = bytes(B)
with open(sys.argv[1], 'rb') as f:
    off = 0
    while True:
        b = f.read(B)
        if not b:
            break
        if len(b) < B:
            b = b + bytes(B - len(b))
        if b != zero:
            h.update(struct.pack('<Q', off) + b)
        off += B
print(h.hexdigest())
PY
}

# Mount partition [off, off+size) of a raw image read-only on dir.
mount_part() {
  local img="$1" off="$2" size="$3" dir="$4" dev
  dev="$(losetup -r -f --show -o "$off" --sizelimit "$size" "$img")"
  mkdir -p "$dir"
  mount -o ro,noload "$dev" "$dir" || { losetup -d "$dev"; return 1; }
  echo "$dev" >> "$T/loops"
}

unmount_all() {
  local d
  for d in "$T"/mnt*; do
    mountpoint -q "$d" 2>/dev/null && umount "$d"
  done
  if [ -f "$T/loops" ]; then
    while read -r d; do losetup -d "$d" 2>/dev/null || true; done < "$T/loops"
    rm -f "$T/loops"
  fi
}

# Sectors read from a block device so far (/sys/block/X/stat field 3).
sectors_read() {
  awk '{print $3}' "/sys/block/$(basename "$1")/stat"
}
