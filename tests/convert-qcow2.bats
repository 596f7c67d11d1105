#!/usr/bin/env bats
# p2v convert into qcow2 and back: byte-identical round trips, checked by
# qemu-img check and qemu-img compare, plain and compressed.

load helpers

setup_file() {
  # One shared 64 MiB mixed image (holes, zeros, text, records, random).
  export MIXED="$BATS_FILE_TMPDIR/mixed.img"
  "$GEN_IMAGE" "$MIXED" 64
}

@test "raw -> qcow2 -> raw is byte-identical, qemu-img check clean" {
  requires qemu-img
  convert_checked "$MIXED" -o "$T/a.qcow2" -q
  [ "$(head -c 4 "$T/a.qcow2" | od -An -tx1 | tr -d ' \n')" = "514649fb" ]
  qcow2_clean "$T/a.qcow2"
  run qemu-img compare "$MIXED" "$T/a.qcow2"
  [ "$status" -eq 0 ]
  convert_checked "$T/a.qcow2" -O raw -o "$T/b.raw" -q
  cmp "$MIXED" "$T/b.raw"
}

@test "compressed qcow2: check clean, compare identical, smaller" {
  requires qemu-img
  convert_checked "$MIXED" -o "$T/c.qcow2" --compress -q
  qcow2_clean "$T/c.qcow2"
  run qemu-img compare "$MIXED" "$T/c.qcow2"
  [ "$status" -eq 0 ]
  p2v convert --no-inject --no-smoke "$MIXED" -o "$T/p.qcow2" -q
  [ "$(stat -c %s "$T/c.qcow2")" -lt "$(stat -c %s "$T/p.qcow2")" ]
  convert_checked "$T/c.qcow2" -O raw -o "$T/c.raw" -q
  cmp "$MIXED" "$T/c.raw"
}

@test "every compression level gives a clean, identical image" {
  requires qemu-img
  for level in 1 6 9; do
    convert_checked "$MIXED" -o "$T/l$level.qcow2" --compress=$level -q
    qcow2_clean "$T/l$level.qcow2"
    qemu-img compare -q "$MIXED" "$T/l$level.qcow2"
  done
}

@test "qemu-img reads back what qemu-img -c would: qemu converts our compressed image" {
  requires qemu-img
  p2v convert --no-inject --no-smoke "$MIXED" -o "$T/c.qcow2" -c -q
  qemu-img convert -O raw "$T/c.qcow2" "$T/q.raw"
  cmp "$MIXED" "$T/q.raw"
}

@test "cluster sizes 512 B to 2 MiB, plain and compressed" {
  requires qemu-img
  "$GEN_IMAGE" "$T/small.img" 8 7
  for cs in 512 4K 64K 1M 2M; do
    convert_checked "$T/small.img" -o "$T/cs$cs.qcow2" --cluster-size $cs -q
    qcow2_clean "$T/cs$cs.qcow2"
    qemu-img compare -q "$T/small.img" "$T/cs$cs.qcow2"
    run qemu-img info --output=json "$T/cs$cs.qcow2"
    [[ "$output" == *"\"cluster-size\": $(numfmt --from=iec $cs)"* ]]
    convert_checked "$T/small.img" -o "$T/cz$cs.qcow2" --cluster-size $cs -c -q
    qcow2_clean "$T/cz$cs.qcow2"
    qemu-img compare -q "$T/small.img" "$T/cz$cs.qcow2"
  done
}

@test "the output is qcow2 v3 (compat 1.1) with 64 KiB clusters by default" {
  requires qemu-img
  p2v convert --no-inject --no-smoke "$MIXED" -o "$T/d.qcow2" -q
  run qemu-img info --output=json "$T/d.qcow2"
  [[ "$output" == *'"compat": "1.1"'* ]]
  [[ "$output" == *'"cluster-size": 65536'* ]]
  [[ "$output" == *'"virtual-size": 67108864'* ]]
}

@test "sizes that are not cluster multiples" {
  requires qemu-img
  for size in 512 1536 65024 66048 1000448 3333120; do
    head -c "$size" /dev/urandom > "$T/odd.img"
    convert_checked "$T/odd.img" -o "$T/odd.qcow2" -q --force
    qcow2_clean "$T/odd.qcow2"
    qemu-img compare -q "$T/odd.img" "$T/odd.qcow2"
    convert_checked "$T/odd.img" -o "$T/oddc.qcow2" -c -q --force
    qcow2_clean "$T/oddc.qcow2"
    convert_checked "$T/oddc.qcow2" -O raw -o "$T/odd.raw" -q --force
    cmp "$T/odd.img" "$T/odd.raw"
  done
}

@test "sizes that are not even sector multiples round up to 512 with zeros" {
  requires qemu-img
  for size in 1 511 513 65537 1000000; do
    head -c "$size" /dev/urandom > "$T/odd.img"
    convert_checked "$T/odd.img" -o "$T/odd.qcow2" -q --force
    qcow2_clean "$T/odd.qcow2"
    run qemu-img info --output=json "$T/odd.qcow2"
    [[ "$output" == *"\"virtual-size\": $(( (size + 511) / 512 * 512 ))"* ]]
    p2v verify -q "$T/odd.img" "$T/odd.qcow2"
    qemu-img compare -q "$T/odd.img" "$T/odd.qcow2"
  done
}

@test "an empty disk converts to an empty qcow2 and back" {
  requires qemu-img
  : > "$T/empty.img"
  convert_checked "$T/empty.img" -o "$T/empty.qcow2" -q
  qcow2_clean "$T/empty.qcow2"
  run qemu-img info --output=json "$T/empty.qcow2"
  [[ "$output" == *'"virtual-size": 0'* ]]
  p2v convert --no-inject --no-smoke "$T/empty.qcow2" -O raw -o "$T/empty.raw" -q
  [ "$(stat -c %s "$T/empty.raw")" -eq 0 ]
}

@test "an all-zero disk allocates no data clusters" {
  requires qemu-img
  head -c 32M /dev/zero > "$T/zero.img"
  run p2v convert --no-inject --no-smoke "$T/zero.img" -o "$T/zero.qcow2" --json
  [ "$status" -eq 0 ]
  [ "$(echo "$output" | jq .bytes_written)" -eq 0 ]
  [ "$(echo "$output" | jq .bytes_zero)" -eq 33554432 ]
  qcow2_clean "$T/zero.qcow2"
  [ "$(stat -c %s "$T/zero.qcow2")" -lt 1048576 ]
  run qemu-img map --output=json "$T/zero.qcow2"
  [[ "$output" != *'"data": true'* ]]
}

@test "a 64 GiB sparse image with a little data converts in seconds" {
  requires qemu-img
  truncate -s 64G "$T/big.img"
  for off in 0 1000 33000 65535; do
    dd if=/dev/urandom of="$T/big.img" bs=1M count=1 seek=$off conv=notrunc status=none
  done
  start=$(date +%s)
  run p2v convert --no-inject --no-smoke "$T/big.img" -o "$T/big.qcow2" --json
  [ "$status" -eq 0 ]
  elapsed=$(( $(date +%s) - start ))
  echo "64 GiB sparse convert took ${elapsed}s"
  [ "$elapsed" -lt 30 ]
  # Only the data was read: holes are never read.
  [ "$(echo "$output" | jq .bytes_read)" -eq $((4 * 1048576)) ]
  qcow2_clean "$T/big.qcow2"
  [ "$(stat -c %s "$T/big.qcow2")" -lt $((8 * 1048576)) ]
  qemu-img compare -q "$T/big.img" "$T/big.qcow2"
}

@test "--json summary has the figures" {
  run p2v convert --no-inject --no-smoke "$MIXED" -o "$T/j.qcow2" -c --json
  [ "$status" -eq 0 ]
  echo "$output" | jq -e '.virtual_size == 67108864'
  echo "$output" | jq -e '.bytes_read > 0 and .bytes_read <= 67108864'
  echo "$output" | jq -e '.bytes_zero > 0'
  echo "$output" | jq -e '.compression_ratio > 1.2'
  echo "$output" | jq -e '.seconds >= 0'
  echo "$output" | jq -e '.output_format == "qcow2"'
  # Every guest byte is accounted for once.
  echo "$output" | jq -e '.bytes_zero + .bytes_plain + .bytes_compressed_in == .virtual_size'
}

@test "--no-sync: identical and clean, no flush of the output (the default flushes), still renamed" {
  requires qemu-img
  requires strace
  trace="fsync,fdatasync,sync_file_range,syncfs,rename,renameat,renameat2"
  # -y names each fd's file, so only calls on the output (or its
  # directory, $T) count.
  strace -f -y -o "$T/ns.trace" -e trace="$trace" \
    p2v convert --no-inject --no-smoke --no-sync "$MIXED" -o "$T/ns.qcow2" -q
  qcow2_clean "$T/ns.qcow2"
  qemu-img compare -q "$MIXED" "$T/ns.qcow2"
  ! grep -E "(fsync|fdatasync|sync_file_range|syncfs)\(.*<$T[/>]" "$T/ns.trace" \
    || { cat "$T/ns.trace"; false; }
  grep -qE "rename.*\.ns\.qcow2\.p2v-partial\..*\"$T/ns\.qcow2\"" "$T/ns.trace" \
    || { cat "$T/ns.trace"; false; }
  # Without it the same trace shows the flush, so the check above can fail.
  strace -f -y -o "$T/s.trace" -e trace="$trace" \
    p2v convert --no-inject --no-smoke "$MIXED" -o "$T/s.qcow2" -q
  grep -qE "(fsync|fdatasync)\([0-9]+<$T/\.s\.qcow2\.p2v-partial\." "$T/s.trace" \
    || { cat "$T/s.trace"; false; }
  grep -qE "fsync\([0-9]+<$T>\)" "$T/s.trace" || { cat "$T/s.trace"; false; }
  # The same bytes either way.
  cmp "$T/ns.qcow2" "$T/s.qcow2"
}

@test "threads 1 and 4 give the same guest content" {
  p2v convert --no-inject --no-smoke "$MIXED" -o "$T/t1.qcow2" -c --threads 1 -q
  p2v convert --no-inject --no-smoke "$MIXED" -o "$T/t4.qcow2" -c --threads 4 -q
  p2v verify "$T/t1.qcow2" "$T/t4.qcow2"
  p2v verify "$MIXED" "$T/t4.qcow2"
}

@test "peak memory stays under 64 MiB on a 1 GiB disk" {
  requires /usr/bin/time
  "$GEN_IMAGE" "$T/gig.img" 1024 3
  /usr/bin/time -f "%M" -o "$T/rss" p2v convert --no-inject --no-smoke "$T/gig.img" -o "$T/gig.qcow2" -c -q
  echo "peak RSS: $(cat "$T/rss") KiB"
  [ "$(cat "$T/rss")" -lt 65536 ]
  /usr/bin/time -f "%M" -o "$T/rss" p2v convert --no-inject --no-smoke "$T/gig.img" -O raw -o "$T/gig.raw" -q
  echo "peak RSS raw: $(cat "$T/rss") KiB"
  [ "$(cat "$T/rss")" -lt 65536 ]
}

@test "progress on a TTY: percent, MB/s and ETA" {
  requires script
  "$GEN_IMAGE" "$T/p.img" 256 4
  script -qec "p2v convert --no-inject --no-smoke '$T/p.img' -o '$T/p.qcow2' -c --threads 1" /dev/null > "$T/tty.log"
  grep -q "converting: 100.0%" "$T/tty.log"
  grep -q "MB/s" "$T/tty.log"
  grep -q "ETA" "$T/tty.log"
  # Not on a pipe: scripts get only the summary line.
  run p2v convert --no-inject --no-smoke "$T/p.img" -o "$T/q.qcow2"
  [ "${#lines[@]}" -eq 1 ]
  [[ "$output" == "converted '$T/p.img'"* ]]
}
