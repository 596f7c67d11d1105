#!/usr/bin/env bats
# Hostile or broken qcow2 images through the command line: a clear
# one-line error, exit 2, no output left behind.  The full matrix of
# corruptions is in tests/unit/test-qcow2.c (run under ASan too).

load helpers

# Write VALUE as a big-endian integer of WIDTH bytes at OFFSET of FILE.
poke_be() {
  local file="$1" offset="$2" width="$3" value="$4" hex="" i
  for ((i = width - 1; i >= 0; i--)); do
    hex+=$(printf '\\x%02x' $(( (value >> (8 * i)) & 0xff )))
  done
  printf "$hex" | dd of="$file" bs=1 seek="$offset" conv=notrunc status=none
}

make_qcow2() {
  "$GEN_IMAGE" "$T/src.img" 4 3
  qemu-img convert -O qcow2 "$T/src.img" "$T/bad.qcow2"
}

# The conversion must fail with exit 2, one line naming the file and the
# words given, and leave nothing behind.
fails_with() {
  run p2v convert --no-inject --no-smoke "$T/bad.qcow2" -o "$T/out.qcow2"
  echo "$output"
  [ "$status" -eq 2 ]
  [ "${#lines[@]}" -eq 1 ]
  [[ "$output" == "p2v: "*"$1"* ]]
  no_output_left "$T" out.qcow2
}

@test "a backing file is refused with its name" {
  requires qemu-img
  qemu-img create -q -f qcow2 "$T/base.qcow2" 64M
  qemu-img create -q -f qcow2 -b "$T/base.qcow2" -F qcow2 "$T/bad.qcow2"
  fails_with "has a backing file '$T/base.qcow2', which is not supported"
}

@test "a truncated header" {
  requires qemu-img
  make_qcow2
  truncate -s 40 "$T/bad.qcow2"
  fails_with "cannot read qcow2 header of '$T/bad.qcow2': file is truncated"
}

@test "an unknown version" {
  requires qemu-img
  make_qcow2
  poke_be "$T/bad.qcow2" 4 4 7
  fails_with "unsupported qcow2 version 7"
}

@test "absurd cluster_bits" {
  requires qemu-img
  make_qcow2
  poke_be "$T/bad.qcow2" 20 4 40
  fails_with "unsupported cluster size"
}

@test "an L1 table past the end of the file" {
  requires qemu-img
  make_qcow2
  poke_be "$T/bad.qcow2" 40 8 $((1 << 40))
  fails_with "$T/bad.qcow2"
  [[ "$output" == *"L1"* ]]
}

@test "an L1 table overlapping the header" {
  requires qemu-img
  make_qcow2
  poke_be "$T/bad.qcow2" 40 8 0
  fails_with "overlaps the header"
}

@test "an absurd virtual size" {
  requires qemu-img
  make_qcow2
  poke_be "$T/bad.qcow2" 24 8 $(( (1 << 62) ))
  fails_with "$T/bad.qcow2"
}

@test "an unknown incompatible feature bit" {
  requires qemu-img
  make_qcow2
  poke_be "$T/bad.qcow2" 72 8 $((1 << 40))
  fails_with "unknown incompatible feature bits"
}

@test "an L2 entry pointing past the end of the file" {
  requires qemu-img
  make_qcow2
  # The first L1 entry names the first L2 table; its first entry is the
  # first data cluster: point it at 1 TiB.
  l1=$(od -An -j40 -N8 -tx1 "$T/bad.qcow2" | tr -d ' \n')
  l2=$(od -An -j$((16#$l1)) -N8 -tx1 "$T/bad.qcow2" | tr -d ' \n')
  l2=$(( 16#$l2 & 0x00fffffffffffe00 ))
  [ "$l2" -gt 0 ]
  poke_be "$T/bad.qcow2" "$l2" 8 $(( (1 << 63) | (1 << 40) ))
  fails_with "$T/bad.qcow2"
}

@test "a file that is not qcow2 but claims the magic" {
  printf 'QFI\xfb' > "$T/bad.qcow2"
  head -c 1000 /dev/urandom >> "$T/bad.qcow2"
  run p2v convert --no-inject --no-smoke "$T/bad.qcow2" -o "$T/out.qcow2"
  [ "$status" -eq 2 ]
  [ "${#lines[@]}" -eq 1 ]
  no_output_left "$T" out.qcow2
}
