#!/usr/bin/env bats
# Images made by qemu-img (and qemu-io) read correctly: plain, compressed,
# v2, extended L2, zero clusters, cluster sizes 512 B .. 2 MiB.

load helpers

setup_file() {
  export SRC="$BATS_FILE_TMPDIR/src.img"
  "$GEN_IMAGE" "$SRC" 16 11
}

# qemu-img makes FILE from SRC with the given options; p2v must read it
# back to exactly SRC's bytes, both as raw and through its own qcow2.
roundtrip() {
  local opts=("$@")
  qemu-img convert -O qcow2 "${opts[@]}" "$SRC" "$T/q.qcow2"
  convert_checked "$T/q.qcow2" -O raw -o "$T/back.raw" -q --force
  cmp "$SRC" "$T/back.raw"
  convert_checked "$T/q.qcow2" -o "$T/ours.qcow2" -q --force
  qcow2_clean "$T/ours.qcow2"
  p2v verify -q "$SRC" "$T/ours.qcow2"
  p2v verify -q "$T/q.qcow2" "$T/ours.qcow2"
}

@test "qemu-img plain qcow2" {
  requires qemu-img
  roundtrip
}

@test "qemu-img compressed qcow2 (-c)" {
  requires qemu-img
  roundtrip -c
}

@test "qemu-img qcow2 v2 (compat=0.10), plain and compressed" {
  requires qemu-img
  roundtrip -o compat=0.10
  roundtrip -o compat=0.10 -c
}

@test "qemu-img extended L2 entries (subclusters)" {
  requires qemu-img
  roundtrip -o extended_l2=on
  roundtrip -o extended_l2=on,cluster_size=128K -c
}

@test "qemu-img cluster sizes 512 B .. 2 MiB, plain and compressed" {
  requires qemu-img
  for cs in 512 1K 4K 64K 256K 1M 2M; do
    roundtrip -o cluster_size=$cs
    roundtrip -o cluster_size=$cs -c
  done
}

@test "zero clusters written by qemu-io read as zeros" {
  requires qemu-io
  qemu-img convert -O qcow2 "$SRC" "$T/z.qcow2"
  cp "$SRC" "$T/z.raw"
  # Zero clusters over data (v3 zero flag), and a zeroed partial range.
  qemu-io -c "write -z 1M 2M" -c "write -z 5M 64k" -c "write -P 0x5a 9M 64k" "$T/z.qcow2" >/dev/null
  dd if=/dev/zero of="$T/z.raw" bs=1M seek=1 count=2 conv=notrunc status=none
  dd if=/dev/zero of="$T/z.raw" bs=64k seek=80 count=1 conv=notrunc status=none
  head -c 65536 /dev/zero | tr '\0' '\132' \
    | dd of="$T/z.raw" bs=64k seek=144 count=1 iflag=fullblock conv=notrunc status=none
  qemu-img compare -q "$T/z.raw" "$T/z.qcow2"
  convert_checked "$T/z.qcow2" -O raw -o "$T/back.raw" -q
  cmp "$T/z.raw" "$T/back.raw"
}

@test "unallocated clusters of an empty qemu-img image read as zeros" {
  requires qemu-img
  qemu-img create -q -f qcow2 "$T/e.qcow2" 1G
  run p2v convert --no-inject --no-smoke "$T/e.qcow2" -O raw -o "$T/e.raw" --json
  [ "$status" -eq 0 ]
  [ "$(echo "$output" | jq .bytes_read)" -eq 0 ]
  [ "$(stat -c %s "$T/e.raw")" -eq 1073741824 ]
  [ "$(du -k "$T/e.raw" | cut -f1)" -lt 1024 ]
}
