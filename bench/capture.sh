#!/usr/bin/env bash
# bench/capture.sh: p2v capture against `dd bs=4M` and `qemu-img convert
# -O qcow2` of the whole device, side by side in one run, on an 8 GiB
# disk (MBR, one ext4 partition) about 25 % full, seen through a
# read-only loop device.  Page caches are dropped before each contender,
# so every one reads from the disk.  The source file is fully allocated
# (zeros written first, BENCH_SPARSE=1 to skip): a sparse file's holes
# would cost the whole-device tools nothing to read, unlike a real disk.  Prints seconds, bytes read from the
# device (its /sys/block/loopN/stat), output size and ratios.  Needs root.
#
#   bench/capture.sh [SIZE_GIB] [FULL_PERCENT]   (BENCH_DIR=... to move it)
set -euo pipefail

top="$(cd "$(dirname "$0")/.." && pwd)"
size_gib="${1:-8}"
full="${2:-25}"
dir="${BENCH_DIR:-/var/tmp/p2v-bench-capture}"

make -s -C "$top" p2v
p2v="$top/p2v"
mkdir -p "$dir"
sparse="${BENCH_SPARSE:-0}"
kind="fully allocated"
suffix=
if [ "$sparse" = 1 ]; then
  kind="sparse backing file"
  suffix=-sparse
fi
src="$dir/source-${size_gib}G-${full}pct$suffix.img"
if [ ! -f "$src" ]; then
  echo "building $src ..." >&2
  rm -rf "$dir/files" && mkdir -p "$dir/files"
  # Files of mixed sizes, incompressible, filling FULL % of the disk.
  want_mib=$(( size_gib * 1024 * full / 100 ))
  i=0
  while [ $(( i * 64 )) -lt "$want_mib" ]; do
    head -c 56M /dev/urandom > "$dir/files/big$i.bin"
    mkdir -p "$dir/files/d$i"
    for j in $(seq 1 64); do head -c 128K /dev/urandom > "$dir/files/d$i/s$j"; done
    i=$(( i + 1 ))
  done
  if [ "$sparse" = 1 ]; then
    truncate -s "${size_gib}G" "$src.tmp"
  else
    dd if=/dev/zero of="$src.tmp" bs=4M count=$(( size_gib * 256 )) status=none
  fi
  printf 'label: dos\nstart=2048, type=83\n' | sfdisk -q "$src.tmp"
  mkfs.ext4 -q -F -b 4096 -E offset=1048576 -d "$dir/files" "$src.tmp" \
    $(( (size_gib * 1024 - 1) * 256 ))
  rm -rf "$dir/files"
  mv "$src.tmp" "$src"
fi

dev="$(losetup -r -f --show "$src")"
trap 'losetup -d "$dev"' EXIT
dev_bytes="$(blockdev --getsize64 "$dev")"
sectors() { awk '{print $3}' "/sys/block/$(basename "$dev")/stat"; }

declare -A cmd secs readb outb
order=(p2v dd qemu-img)
cmd[p2v]="$p2v capture --disk $dev --to $dir/out-p2v -q"
cmd[dd]="dd if=$dev of=$dir/out-dd.raw bs=4M status=none"
cmd[qemu-img]="qemu-img convert -O qcow2 $dev $dir/out-qemu-img.qcow2"

for t in "${order[@]}"; do
  rm -rf "$dir/out-$t" "$dir/out-$t.raw" "$dir/out-$t.qcow2"
  sync
  echo 3 > /proc/sys/vm/drop_caches
  s0="$(sectors)"
  t0="$(date +%s.%N)"
  ${cmd[$t]}
  sync
  t1="$(date +%s.%N)"
  secs[$t]="$(echo "$t1 - $t0" | bc)"
  readb[$t]=$(( ($(sectors) - s0) * 512 ))
  outb[$t]="$(du -sb --apparent-size "$dir"/out-"$t"* | awk '{s += $1} END {print s}')"
done

# The capture holds the device's content where it matters.
qemu-img check -q "$dir/out-p2v/disk0.qcow2"

printf '\n%s: %d GiB device, ext4 %d%% full, read-only loop %s, %s\n\n' \
  "$(basename "$src")" "$size_gib" "$full" "$dev" "$kind"
printf '%-10s %9s %12s %12s %12s\n' tool seconds "read MiB" "output MiB" "p2v faster"
for t in "${order[@]}"; do
  printf '%-10s %9.2f %12d %12d %11.1fx\n' "$t" "${secs[$t]}" \
    $(( readb[$t] >> 20 )) $(( outb[$t] >> 20 )) \
    "$(echo "${secs[$t]} / ${secs[p2v]}" | bc -l)"
done
rm -rf "$dir/out-p2v" "$dir/out-dd.raw" "$dir/out-qemu-img.qcow2"
