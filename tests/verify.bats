#!/usr/bin/env bats
# p2v verify: exit 0 same, 1 different, 2 error, like qemu-img compare.

load helpers

@test "identical raw and qcow2 images: exit 0" {
  "$GEN_IMAGE" "$T/a.img" 8
  p2v convert --no-inject --no-smoke "$T/a.img" -o "$T/a.qcow2" -c -q
  run p2v verify "$T/a.img" "$T/a.qcow2"
  [ "$status" -eq 0 ]
  [ "$output" = "images are identical" ]
}

@test "one changed byte: exit 1 and its offset" {
  "$GEN_IMAGE" "$T/a.img" 8
  p2v convert --no-inject --no-smoke "$T/a.img" -o "$T/a.qcow2" -q
  cp "$T/a.img" "$T/b.img"
  printf '\x01' | dd of="$T/b.img" bs=1 seek=5000000 conv=notrunc status=none
  if cmp -s "$T/a.img" "$T/b.img"; then
    printf '\x02' | dd of="$T/b.img" bs=1 seek=5000000 conv=notrunc status=none
  fi
  run p2v verify "$T/a.qcow2" "$T/b.img"
  [ "$status" -eq 1 ]
  [ "$output" = "content differs at offset 5000000" ]
  run p2v verify --json "$T/a.qcow2" "$T/b.img"
  [ "$status" -eq 1 ]
  [ "$(echo "$output" | jq .first_difference)" -eq 5000000 ]
}

@test "a byte inside a hole of the other image is found" {
  truncate -s 16M "$T/a.img"
  cp --sparse=always "$T/a.img" "$T/b.img"
  printf 'x' | dd of="$T/b.img" bs=1 seek=12345678 conv=notrunc status=none
  run p2v verify "$T/a.img" "$T/b.img"
  [ "$status" -eq 1 ]
  [[ "$output" == *"12345678"* ]]
}

@test "different sizes: same when the tail is zeros, different otherwise" {
  "$GEN_IMAGE" "$T/a.img" 4
  cp "$T/a.img" "$T/b.img"
  truncate -s 8M "$T/b.img"
  run p2v verify "$T/a.img" "$T/b.img"
  [ "$status" -eq 0 ]
  printf 'x' | dd of="$T/b.img" bs=1 seek=7000000 conv=notrunc status=none
  run p2v verify "$T/a.img" "$T/b.img"
  [ "$status" -eq 1 ]
  [[ "$output" == *"7000000"* ]]
}

@test "a missing image: exit 2 with a one-line error" {
  "$GEN_IMAGE" "$T/a.img" 1
  run p2v verify "$T/a.img" "$T/nope.img"
  [ "$status" -eq 2 ]
  [ "$output" = "p2v: cannot open '$T/nope.img': No such file or directory" ]
}

@test "verify agrees with qemu-img compare" {
  requires qemu-img
  "$GEN_IMAGE" "$T/a.img" 8 5
  qemu-img convert -O qcow2 -c "$T/a.img" "$T/q.qcow2"
  p2v verify "$T/a.img" "$T/q.qcow2"
  qemu-img compare -q "$T/a.img" "$T/q.qcow2"
}
