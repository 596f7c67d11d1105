#!/usr/bin/env bats
# p2v convert never leaves a file that looks finished when it fails or is
# killed, never touches its source, and refuses to clobber without --force.

load helpers

# A source big and slow enough that we can kill the run half way.
slow_source() {
  "$GEN_IMAGE" "$T/slow.img" 768 9
}

wait_for_partial() {
  for _ in $(seq 200); do
    ls -A "$T/out" | grep -q p2v-partial && return 0
    sleep 0.05
  done
  return 1
}

@test "kill -9 mid-run leaves no OUT" {
  slow_source
  mkdir "$T/out"
  p2v convert --no-inject --no-smoke "$T/slow.img" -o "$T/out/x.qcow2" --compress=9 --threads 1 -q &
  pid=$!
  wait_for_partial
  sleep 0.5
  kill -0 "$pid"           # still running: the kill really is mid-run
  kill -9 "$pid"
  wait "$pid" || true
  [ ! -e "$T/out/x.qcow2" ]
}

@test "Ctrl-C (SIGINT) mid-run removes the partial file, exit 130" {
  slow_source
  mkdir "$T/out"
  p2v convert --no-inject --no-smoke "$T/slow.img" -o "$T/out/x.qcow2" --compress=9 --threads 1 -q &
  pid=$!
  wait_for_partial
  sleep 0.3
  kill -INT "$pid"
  rc=0
  wait "$pid" || rc=$?
  [ "$rc" -eq 130 ]
  no_output_left "$T/out" x.qcow2
}

@test "out of space (ENOSPC): clear error, no OUT, no partial file" {
  [ "$(id -u)" -eq 0 ] || skip "mounting a small tmpfs needs root"
  mkdir "$T/small"
  mount -t tmpfs -o size=4m tmpfs "$T/small"
  head -c 16M /dev/urandom > "$T/rand.img"
  run p2v convert --no-inject --no-smoke "$T/rand.img" -o "$T/small/x.qcow2"
  [ "$status" -eq 2 ]
  [[ "$output" == *"No space left on device"* ]]
  # One line, though several write threads may fail at once, and the
  # abandoned image's metadata is not written (nor reported) either.
  [ "${#lines[@]}" -eq 1 ]
  no_output_left "$T/small" x.qcow2
  run p2v convert --no-inject --no-smoke "$T/rand.img" -O raw -o "$T/small/x.raw"
  [ "$status" -eq 2 ]
  [[ "$output" == *"No space left on device"* ]]
  [ "${#lines[@]}" -eq 1 ]
  no_output_left "$T/small" x.raw
}

@test "an existing OUT is refused without --force and kept intact" {
  "$GEN_IMAGE" "$T/a.img" 2
  echo precious > "$T/out.qcow2"
  run p2v convert --no-inject --no-smoke "$T/a.img" -o "$T/out.qcow2"
  [ "$status" -eq 2 ]
  [ "$output" = "p2v: output '$T/out.qcow2' already exists (use --force to replace it)" ]
  [ "$(cat "$T/out.qcow2")" = precious ]
  p2v convert --no-inject --no-smoke "$T/a.img" -o "$T/out.qcow2" --force -q
  p2v verify "$T/a.img" "$T/out.qcow2"
}

@test "OUT may not be SRC, even with --force" {
  "$GEN_IMAGE" "$T/a.img" 2
  before=$(sha "$T/a.img")
  run p2v convert --no-inject --no-smoke "$T/a.img" -O raw -o "$T/a.img" --force
  [ "$status" -eq 2 ]
  [[ "$output" == *"is the source image"* ]]
  [ "$(sha "$T/a.img")" = "$before" ]
}

@test "the source is opened read-only (it converts from a read-only mount)" {
  [ "$(id -u)" -eq 0 ] || skip "bind mounts need root"
  mkdir "$T/ro" "$T/rw"
  "$GEN_IMAGE" "$T/rw/a.img" 4
  "$GEN_IMAGE" "$T/rw/b.img" 4
  p2v convert --no-inject --no-smoke "$T/rw/b.img" -o "$T/rw/b.qcow2" -q
  mount --bind -o ro "$T/rw" "$T/ro"
  run p2v convert --no-inject --no-smoke "$T/ro/a.img" -o "$T/a.qcow2" -q
  run2=$(p2v convert --no-inject --no-smoke "$T/ro/b.qcow2" -O raw -o "$T/b.raw" -q; echo $?)
  umount "$T/ro"
  [ "$status" -eq 0 ]
  [ "$run2" -eq 0 ]
  cmp "$T/rw/b.img" "$T/b.raw"
}

@test "a missing source: one-line error, exit 2, nothing written" {
  run p2v convert --no-inject --no-smoke "$T/nope.img" -o "$T/x.qcow2"
  [ "$status" -eq 2 ]
  [ "$output" = "p2v: cannot open '$T/nope.img': No such file or directory" ]
  [ ! -e "$T/x.qcow2" ]
}

@test "a directory as source is refused" {
  mkdir "$T/dir"
  run p2v convert --no-inject --no-smoke -f raw "$T/dir" -o "$T/x.qcow2"
  [ "$status" -eq 2 ]
  [[ "$output" == "p2v: "*"$T/dir"* ]]
  [ ! -e "$T/x.qcow2" ]
}

@test "bad options give their errors" {
  "$GEN_IMAGE" "$T/a.img" 1
  run p2v convert --no-inject --no-smoke "$T/a.img" -o "$T/x" -O vmdk9
  [ "$status" -eq 2 ]
  [ "$output" = "p2v: unknown output format 'vmdk9'" ]
  run p2v convert --no-inject --no-smoke "$T/a.img" -o "$T/x" --compress=12
  [ "$status" -eq 2 ]
  [[ "$output" == *"compression level '12'"* ]]
  run p2v convert --no-inject --no-smoke "$T/a.img" -o "$T/x" -O raw --compress
  [ "$status" -eq 2 ]
  [ "$output" = "p2v: format 'raw' cannot store compressed data" ]
  run p2v convert --no-inject --no-smoke "$T/a.img" -o "$T/x" --cluster-size 3000
  [ "$status" -eq 2 ]
  [[ "$output" == *"cluster size"* ]]
  run p2v convert --no-inject --no-smoke "$T/a.img" -o "$T/x" --threads 0
  [ "$status" -eq 2 ]
  run p2v convert --no-inject --no-smoke -f vhdx "$T/a.img" -o "$T/x"
  [ "$status" -eq 2 ]
  [ "$output" = "p2v: unknown image format 'vhdx'" ]
  [ ! -e "$T/x" ]
  ! ls -A "$T" | grep -q p2v-partial
}
