#!/usr/bin/env bash
# bench/inject.sh: p2v against virt-v2v on the same Debian 12 server
# fixture, side by side in one run, both under the same accelerator
# (TCG here: LIBGUESTFS_BACKEND_SETTINGS=force_tcg).  Times p2v inject,
# p2v convert (copy + inject) and virt-v2v -i disk -o local, then boots
# every result on virtio and reports which ones come up.
#
#   bench/inject.sh [VARIANT]        (default debian-bios; BENCH_DIR=...)
set -euo pipefail

top="$(cd "$(dirname "$0")/.." && pwd)"
variant="${1:-debian-bios}"
dir="${BENCH_DIR:-/var/tmp/p2v-bench-inject}"
export LIBGUESTFS_BACKEND=direct
export LIBGUESTFS_BACKEND_SETTINGS="${LIBGUESTFS_BACKEND_SETTINGS-force_tcg}"
export P2V_ACCEL="${P2V_ACCEL-tcg}"

command -v virt-v2v >/dev/null || { echo "bench: virt-v2v is not installed (apt-get install virt-v2v nbdkit libnbd-bin)" >&2; exit 2; }
make -s -C "$top" p2v
p2v="$top/p2v"
fixture="$("$top/tests/fixtures/build-server.sh" "$variant")"
sidecar="${fixture%.img}.json"
firmware=$(jq -r '.firmware // "bios"' "$sidecar")
rm -rf "$dir" && mkdir -p "$dir"

timed() {   # NAME COMMAND...: run, record seconds and exit status
  local name="$1"; shift
  local t0 t1 rc=0
  t0=$(date +%s.%N)
  "$@" > "$dir/$name.log" 2>&1 || rc=$?
  t1=$(date +%s.%N)
  secs[$name]=$(echo "$t1 - $t0" | bc -l)
  status[$name]=$rc
}
declare -A secs status boots

cp --sparse=always "$fixture" "$dir/p2v-inject.img"
timed p2v-inject "$p2v" inject "$dir/p2v-inject.img"
timed p2v-convert "$p2v" convert --no-smoke "$fixture" -o "$dir/p2v-convert.qcow2"
timed virt-v2v virt-v2v -i disk "$fixture" -o local -os "$dir" -of qcow2 -on v2v
v2v_out="$dir/v2v-sda"

boot() {   # NAME IMAGE
  if [ -f "$2" ] && "$top/tests/fixtures/boot-check.sh" "$2" virtio "$firmware" 300 > "$dir/$1.boot.log" 2>&1; then
    boots[$1]=yes
  else
    boots[$1]=no
  fi
}
boot p2v-inject "$dir/p2v-inject.img"
boot p2v-convert "$dir/p2v-convert.qcow2"
boot virt-v2v "$v2v_out"

echo
echo "fixture: $variant ($(du -m "$fixture" | cut -f1) MiB allocated), accel: ${P2V_ACCEL}"
printf '%-12s %10s %6s %14s\n' tool seconds exit "boots on virtio"
for n in p2v-inject p2v-convert virt-v2v; do
  printf '%-12s %10.1f %6s %14s\n' "$n" "${secs[$n]}" "${status[$n]}" "${boots[$n]}"
done
echo
printf 'p2v inject takes %.2fx virt-v2v'"'"'s wall time   (target <= 0.5)\n' \
  "$(echo "${secs[p2v-inject]} / ${secs[virt-v2v]}" | bc -l)"
printf 'p2v convert (copy + inject) takes %.2fx virt-v2v'"'"'s wall time\n' \
  "$(echo "${secs[p2v-convert]} / ${secs[virt-v2v]}" | bc -l)"
grep -i "warning" "$dir/virt-v2v.log" | head -5 | sed 's/^/virt-v2v said: /' || true
