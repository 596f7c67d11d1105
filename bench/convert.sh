#!/usr/bin/env bash
# bench/convert.sh: p2v convert against qemu-img convert, side by side in
# one run, on one deterministic 1 GiB image with zero runs, compressible
# and incompressible data.  Median of N runs (default 3), every output
# written to the same file system, every output checked with
# qemu-img compare.  Prints times, sizes and ratios.
#
#   bench/convert.sh [SIZE_MIB] [RUNS]       (BENCH_DIR=/var/tmp/... to move it)
set -euo pipefail

top="$(cd "$(dirname "$0")/.." && pwd)"
size_mib="${1:-1024}"
runs="${2:-3}"
dir="${BENCH_DIR:-/var/tmp/p2v-bench}"

make -s -C "$top" p2v tests/tools/gen-image
p2v="$top/p2v"
mkdir -p "$dir"
src="$dir/source-${size_mib}M.img"
[ -f "$src" ] || "$top/tests/tools/gen-image" "$src" "$size_mib"
cat "$src" > /dev/null          # every contender starts from a warm cache

declare -A cmd
order=(qemu-c qemu-c-W p2v-c p2v-c6 qemu qemu-W p2v-ns qemu-t p2v)
cmd[qemu-c]="qemu-img convert -c -O qcow2 $src $dir/out-qemu-c.qcow2"
cmd[qemu-c-W]="qemu-img convert -c -W -m 16 -O qcow2 $src $dir/out-qemu-c-W.qcow2"
cmd[p2v-c]="$p2v convert --no-inject --no-smoke -q --force --compress $src -o $dir/out-p2v-c.qcow2"
cmd[p2v-c6]="$p2v convert --no-inject --no-smoke -q --force --compress=6 $src -o $dir/out-p2v-c6.qcow2"
cmd[qemu]="qemu-img convert -O qcow2 $src $dir/out-qemu.qcow2"
cmd[qemu-W]="qemu-img convert -W -m 16 -O qcow2 $src $dir/out-qemu-W.qcow2"
# qemu-img's default output cache mode is "unsafe": it never flushes, so
# its output may still be only in the page cache when it exits; p2v
# --no-sync (p2v-ns) makes the same trade.  p2v fsyncs before it renames
# by default; -t writeback is the like-for-like durable run.
cmd[p2v-ns]="$p2v convert --no-inject --no-smoke -q --force --no-sync $src -o $dir/out-p2v-ns.qcow2"
cmd[qemu-t]="qemu-img convert -t writeback -O qcow2 $src $dir/out-qemu-t.qcow2"
cmd[p2v]="$p2v convert --no-inject --no-smoke -q --force $src -o $dir/out-p2v.qcow2"

# How long each run waits after the sync.  On a VM whose virtio-balloon
# does free page reporting (feature bit 5, as on the machine these
# figures come from), pages freed by the previous run's output go back
# to the host about 2 s later.  A run that starts before that reuses
# pages the host still backs and allocates its page cache up to twice as
# fast, so its time depends on what ran before it and how long ago:
# alternating two runs with `sleep 1` made whichever came first in each
# pair the faster, by 25-50 %, whatever the program; with `sleep 3` the
# order effect went away.  So wait 3 s there: every run starts with
# those pages back with the host, the same for every contender.
reporting=no
for d in /sys/bus/virtio/devices/*; do
  [ "$(cat "$d/device" 2>/dev/null)" = 0x0005 ] || continue
  if [ "$(cut -c6 "$d/features" 2>/dev/null)" = 1 ]; then reporting=yes; fi
done
settle="${BENCH_SETTLE:-$([ $reporting = yes ] && echo 3 || echo 1)}"

# Every run starts with no earlier outputs, dirty data written back and
# the source in the page cache.  On this VM a plain copy's kernel time
# (page-cache allocation) still depends on what ran just before it: the
# same command takes 0.16 s or 0.45 s.  So each run rotates the order of
# the rows, every contender follows every other, and the table gives the
# median and the spread of wall time and the median CPU time (user+sys),
# which the neighbours disturb far less.
declare -A times cpu med osize
for ((r = 1; r <= runs; r++)); do
  n=${#order[@]}
  for ((k = 0; k < n; k++)); do
    name=${order[$(( (k + r - 1) % n ))]}
    rm -f "$dir"/out-*.qcow2
    sync; sleep "$settle"
    t0=$(date +%s.%N)
    /usr/bin/time -f '%U %S' -o "$dir/cpu.txt" ${cmd[$name]}
    t1=$(date +%s.%N)
    times[$name]+="$(echo "$t1 - $t0" | bc -l) "
    cpu[$name]+="$(awk '{print $1 + $2}' "$dir/cpu.txt") "
    if [ -z "${osize[$name]:-}" ]; then
      qemu-img compare -q "$src" "$dir/out-$name.qcow2" \
        || { echo "bench: output of $name differs from the source" >&2; exit 1; }
      osize[$name]=$(stat -c %s "$dir/out-$name.qcow2")
    fi
  done
done
rm -f "$dir"/out-*.qcow2

median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
declare -A spread cpumed
for name in "${order[@]}"; do
  med[$name]=$(echo "${times[$name]}" | median)
  cpumed[$name]=$(echo "${cpu[$name]}" | median)
  spread[$name]=$(echo "${times[$name]}" | tr ' ' '\n' | grep . | sort -g \
    | awk 'NR == 1 {lo = $1} {hi = $1} END {printf "%.2f-%.2f", lo, hi}')
done

echo
echo "source: $size_mib MiB ($(du -m "$src" | cut -f1) MiB allocated), $(nproc) CPUs, median of $runs runs"
echo "each run after sync + ${settle} s (free page reporting: $reporting)"
printf '%-10s %-40s %8s %11s %8s %11s\n' name command seconds "min-max" "cpu s" "size (MiB)"
for name in "${order[@]}"; do
  c="${cmd[$name]//$dir\//}"; c="${c//$top\//}"; c="${c//--no-inject --no-smoke /}"
  printf '%-10s %-40.40s %8.2f %11s %8.2f %11.1f\n' "$name" "$c" "${med[$name]}" \
    "${spread[$name]}" "${cpumed[$name]}" "$(echo "${osize[$name]} / 1048576" | bc -l)"
done
echo
ratio() { echo "$1 / $2" | bc -l; }
printf 'compressed: p2v is %.2fx faster than qemu-img -c         (target >= 3)\n' \
  "$(ratio "${med[qemu-c]}" "${med[p2v-c]}")"
printf 'compressed: p2v is %.2fx faster than qemu-img -c -W -m 16 (target >= 1.5)\n' \
  "$(ratio "${med[qemu-c-W]}" "${med[p2v-c]}")"
printf 'compressed: p2v size is %.3fx qemu-img -c size            (target <= 1.1)\n' \
  "$(ratio "${osize[p2v-c]}" "${osize[qemu-c]}")"
printf 'level 6:    p2v --compress=6 is %.2fx faster than qemu-img -c, size %.3fx\n' \
  "$(ratio "${med[qemu-c]}" "${med[p2v-c6]}")" "$(ratio "${osize[p2v-c6]}" "${osize[qemu-c]}")"
printf 'plain --no-sync: p2v --no-sync is %.2fx faster than qemu-img (both leave data in the page cache; target >= 1.3)\n' \
  "$(ratio "${med[qemu]}" "${med[p2v-ns]}")"
printf 'plain --no-sync: p2v --no-sync is %.2fx faster than qemu-img -W -m 16 (target >= 1.0)\n' \
  "$(ratio "${med[qemu-W]}" "${med[p2v-ns]}")"
printf 'durable:    p2v is %.2fx faster than qemu-img -t writeback (both fsync)\n' \
  "$(ratio "${med[qemu-t]}" "${med[p2v]}")"
printf 'cpu time:   p2v --no-sync uses %.2fx less CPU than qemu-img, %.2fx less than -W -m 16\n' \
  "$(ratio "${cpumed[qemu]}" "${cpumed[p2v-ns]}")" "$(ratio "${cpumed[qemu-W]}" "${cpumed[p2v-ns]}")"
