#!/usr/bin/env bats
# p2v batch runs a plan of servers through convert -> inject -> smoke as
# separate p2v processes, N at a time: a bad plan stops before any work,
# naming its line; --dry-run's commands run as printed and give what the
# batch gives; a real server passes with its smoke verdict in the report
# while a broken one fails at convert with its reason; a batch killed
# mid-run resumes without redoing what finished.

load helpers

# KVM crashes or hangs on our machines; libguestfs likewise.
export P2V_ACCEL=${P2V_ACCEL:-tcg}
export LIBGUESTFS_BACKEND=${LIBGUESTFS_BACKEND:-direct}
export LIBGUESTFS_BACKEND_SETTINGS=${LIBGUESTFS_BACKEND_SETTINGS:-force_tcg}

# gen NAME MIB SEED: a deterministic data disk in $T.
gen() {
  "$GEN_IMAGE" "$T/$1" "$2" "$3"
}

# state_of SERVER: its status in the plan's state file.
state_of() {
  jq -r --arg s "$1" '.servers[$s].status // "none"' "$PLAN.state" 2>/dev/null
}

# report_of SERVER FIELD: a field of its entry in report.json.
report_of() {
  jq -r --arg s "$1" ".servers[] | select(.name == \$s) | $2" "$T/out/report.json"
}

mtime() {
  stat -c %Y.%y "$1"
}

# ---- the plan is checked before anything runs --------------------------------

@test "batch: malformed plans fail before any work, naming file and line" {
  gen a.img 4 1
  PLAN=$T/plan.ini

  printf '[defaults]\noutput-dir = out\n\n[web]\nsource = a.img\ncolour = blue\n' >"$PLAN"
  run p2v batch "$PLAN"
  [ "$status" -eq 2 ]
  [ "$output" = "p2v: $PLAN:6: unknown key 'colour' in [web]" ]

  printf '[defaults]\noutput-dir = out\n[web]\nsource = a.img\n[db]\nformat = raw\n' >"$PLAN"
  run p2v batch "$PLAN"
  [ "$status" -eq 2 ]
  [ "$output" = "p2v: $PLAN:5: server 'db' has no source" ]

  printf '[web]\nsource = a.img\noutput = out/x.qcow2\n[db]\nsource = a.img\noutput = out/../out/x.qcow2\n' >"$PLAN"
  run p2v batch "$PLAN"
  [ "$status" -eq 2 ]
  [ "$output" = "p2v: $PLAN:6: server 'db' writes '$T/out/x.qcow2', as server 'web' (line 3) does" ]

  printf '[web]\nsource = gone.img\n' >"$PLAN"
  run p2v batch "$PLAN"
  [ "$status" -eq 2 ]
  [ "$output" = "p2v: $PLAN:2: source 'gone.img': no such file or directory" ]

  # Every problem, in line order, one line each; a header-less key line.
  printf 'jobs = 2\n[a]\nsource = a.img\ncompress = 11\n[a]\nsource = a.img\n[b]\nsource = a.img\ninject = maybe\n' >"$PLAN"
  run p2v batch "$PLAN" --dry-run
  [ "$status" -eq 2 ]
  [ "${#lines[@]}" -eq 4 ]
  [ "${lines[0]}" = "p2v: $PLAN:1: 'jobs' is outside a section ([defaults] or [NAME])" ]
  [ "${lines[1]}" = "p2v: $PLAN:4: compress '11' is not yes, no or a level from 1 to 9" ]
  [ "${lines[2]}" = "p2v: $PLAN:5: server 'a' is named twice (first on line 2)" ]
  [ "${lines[3]}" = "p2v: $PLAN:9: inject 'maybe' is not yes or no" ]

  # Nothing was started: no output directory, no state, no report.
  [ ! -e "$T/out" ]
  [ ! -e "$PLAN.state" ]
  [ "$(ls "$T")" = "$(printf 'a.img\nplan.ini')" ]

  # The documented example plan is valid but for its (absent) sources.
  run p2v batch "$TOP_DIR/examples/batch.ini" --dry-run
  [ "$status" -eq 2 ]
  [ "${#lines[@]}" -eq 3 ]
  for l in "${lines[@]}"; do
    [[ "$l" == "p2v: $TOP_DIR/examples/batch.ini:"*": source '/srv/"*"': no such file or directory" ]]
  done

  run p2v batch "$PLAN" --jobs 0
  [ "$status" -eq 2 ]
  [ "$output" = "p2v: jobs '0' is not a number from 1 to 256" ]
  run p2v batch
  [ "$status" -eq 2 ]
  [[ "${lines[0]}" == "p2v: batch: missing plan" ]]
}

# ---- dry run -----------------------------------------------------------------

@test "batch: --dry-run runs nothing; its commands, run by bash, give what the batch gives" {
  requires qemu-img
  requires jq
  gen d1.img 24 11
  gen "d 2.img" 12 12
  sum1=$(sha "$T/d1.img")
  for via in batch shell; do
    cat >"$T/$via.ini" <<EOF
[defaults]
output-dir = $via-out
inject = no
smoke = no

[d1]
source = d1.img
compress = yes

[d2]
source = d 2.img   ; a name with a space is quoted
format = raw
EOF
  done

  run p2v batch "$T/shell.ini" --dry-run
  [ "$status" -eq 0 ]
  echo "$output"
  [ "${#lines[@]}" -eq 4 ]
  [ "${lines[0]}" = "mkdir -p -- $T/shell-out" ]
  [ "${lines[1]}" = "p2v convert $T/d1.img -o $T/shell-out/d1.qcow2 -O qcow2 --compress --no-inject --no-smoke --json >$T/shell-out/d1.convert.json 2>>$T/shell-out/d1.log" ]
  [ "${lines[3]}" = "p2v convert '$T/d 2.img' -o $T/shell-out/d2.raw -O raw --no-inject --no-smoke --json >$T/shell-out/d2.convert.json 2>>$T/shell-out/d2.log" ]
  [ ! -e "$T/shell-out" ]
  [ ! -e "$T/shell.ini.state" ]
  # --json gives the same lines, grouped by server.
  p2v batch "$T/shell.ini" --dry-run --json | jq -r '.servers[].commands[]' >"$T/json.txt"
  [ "$(cat "$T/json.txt")" = "$output" ]

  # Run as printed, then the batch itself on the twin plan.
  (cd / && bash -e -o pipefail -c "$output")
  run p2v batch "$T/batch.ini"
  echo "$output"
  [ "$status" -eq 0 ]
  [[ "$output" == *"2 of 2 passed, 0 failed"* ]]

  # Same images (byte for byte: the engine writes in guest order), both
  # equal to their sources by qemu-img, and the same convert summaries.
  cmp "$T/batch-out/d1.qcow2" "$T/shell-out/d1.qcow2"
  cmp "$T/batch-out/d2.raw" "$T/shell-out/d2.raw"
  qemu-img compare -f raw -F qcow2 "$T/d1.img" "$T/batch-out/d1.qcow2"
  qemu-img compare -f raw -F raw "$T/d 2.img" "$T/batch-out/d2.raw"
  qcow2_clean "$T/batch-out/d1.qcow2"
  for s in d1 d2; do
    [ "$(jq -c 'del(.seconds, .output, .threads)' "$T/batch-out/$s.convert.json")" = \
      "$(jq -c 'del(.seconds, .output, .threads)' "$T/shell-out/$s.convert.json")" ]
  done
  [ "$(jq -r .bytes_compressed_in "$T/batch-out/d1.convert.json")" -gt 0 ]
  [ "$(sha "$T/d1.img")" = "$sum1" ]

  # Not a terminal: plain event lines, no cursor movement.
  [[ "$output" == *"d1: convert started"* ]]
  [[ "$output" != *$'\e['* ]]
  # On a terminal: a status line per running server, redrawn in place.
  if command -v script >/dev/null; then
    sed 's/^output-dir = batch-out/output-dir = tty-out/' "$T/batch.ini" >"$T/tty.ini"
    script -qec "p2v batch '$T/tty.ini'" /dev/null >"$T/tty.txt"
    grep -qE '^  d1 +convert +0:[0-9]{2}' "$T/tty.txt"
    grep -q $'\e\[1A\e\[2K' "$T/tty.txt"
    grep -q '2 of 2 passed' "$T/tty.txt"
  fi

  # A finished batch is not silently redone: its state file is refused
  # without --resume, and --resume skips what passed.
  before=$(mtime "$T/batch-out/d1.qcow2")
  run p2v batch "$T/batch.ini"
  [ "$status" -eq 2 ]
  [ "$output" = "p2v: state file '$T/batch.ini.state' exists: use --resume to continue that batch, or remove the file to start over" ]
  run p2v batch "$T/batch.ini" --resume
  [ "$status" -eq 0 ]
  [[ "$output" == *"d1: passed in an earlier run, skipped"* ]]
  [ "$(mtime "$T/batch-out/d1.qcow2")" = "$before" ]
  [ "$(grep -c '== p2v batch: convert started' "$T/batch-out/d1.log")" -eq 1 ]

  # A server whose plan entry changed is not resumed from the old state.
  sed -i 's/^compress = yes/compress = 9/' "$T/batch.ini"
  run p2v batch "$T/batch.ini" --resume
  [ "$status" -eq 2 ]
  [[ "$output" == "p2v: $T/batch.ini:6: server 'd1' changed since"* ]]
}

# ---- the whole pipeline --------------------------------------------------------

@test "batch: three servers, --jobs 2: a real server and a data disk pass, a broken qcow2 fails at convert" {
  requires qemu-system-x86_64
  requires qemu-img
  requires guestfish
  requires jq
  [ "$(id -u)" -eq 0 ] || skip "building guest fixtures needs root"
  img=$("$TOP_DIR/tests/fixtures/build-server.sh" debian-bios)
  gen data.img 32 21
  # A qcow2 header with garbage behind it; the name needs escaping in HTML.
  bad="$T/bad<b>&.qcow2"
  head -c 1M /dev/urandom >"$bad"
  printf 'QFI\xfb\x00\x00\x00\x03' | dd of="$bad" conv=notrunc status=none
  PLAN=$T/plan.ini
  cat >"$PLAN" <<EOF
[defaults]
output-dir = out

[srv]
source = $img

[data]
source = data.img
compress = yes
inject = no
smoke = no

[broken]
source = bad<b>&.qcow2
EOF
  imgsum=$(sha "$img")

  run p2v batch "$PLAN" --jobs 2
  echo "$output"
  [ "$status" -eq 1 ]
  [[ "$output" == *"p2v batch: 3 servers, 2 at a time"* ]]
  [[ "$output" == *"2 of 3 passed, 1 failed"* ]]

  # The real server: converted, injected, booted.
  [ "$(report_of srv .status)" = PASS ]
  [ "$(report_of srv .stage)" = smoke ]
  [ "$(report_of srv .smoke.verdict)" = pass ]
  jq -e '.servers[] | select(.name == "srv") | .smoke.boot_seconds > 0
         and .seconds.convert > 0 and .seconds.inject > 0 and .seconds.smoke > 0
         and .source_bytes == 3221225472 and .output_bytes > 0' "$T/out/report.json"
  # The guest's own console says it reached multi-user, as the report does.
  grep -aqE 'Reached target.*Multi-User|login:' "$T/out/srv.console.log"
  qcow2_clean "$T/out/srv.qcow2"
  grep -q '^== p2v batch: inject started' "$T/out/srv.log"
  [ "$(sha "$img")" = "$imgsum" ]

  # The data disk: copied only, compressed.
  [ "$(report_of data .status)" = PASS ]
  [ "$(report_of data .stage)" = convert ]
  [ "$(report_of data .smoke)" = null ]
  jq -e '.servers[] | select(.name == "data") | .compression_ratio > 1' "$T/out/report.json"
  qemu-img compare -f raw -F qcow2 "$T/data.img" "$T/out/data.qcow2"

  # The broken one: failed at convert, with the reason; nothing left.
  [ "$(report_of broken .status)" = FAIL ]
  [ "$(report_of broken .stage)" = convert ]
  [[ "$(report_of broken .reason)" == *"cluster size"* ]]
  [ ! -e "$T/out/broken.qcow2" ]
  ! ls -A "$T/out" | grep -q p2v-partial || false
  [ "$(state_of broken)" = failed ]
  [ "$(state_of srv)" = passed ]

  # report.html: escaped text, links to the logs.
  html=$T/out/report.html
  grep -q '<td>bad&lt;b&gt;&amp;' "$html" || grep -q 'bad&lt;b&gt;&amp;.qcow2' "$html"
  ! grep -q 'bad<b>' "$html" || false
  grep -q '<a href="srv.log">log</a>' "$html"
  grep -q '<td class="FAIL">FAIL</td>' "$html"
  python3 -c 'import html.parser,sys; p=html.parser.HTMLParser(); p.feed(open(sys.argv[1]).read()); p.close()' "$html"
}

# ---- kill and resume ---------------------------------------------------------

@test "batch: interrupted and killed mid-run, --resume completes the rest and never redoes a finished server" {
  requires qemu-img
  requires jq
  # Big enough that a convert at zlib level 9 (one worker per core, about
  # 20 MB/s each) lasts a few seconds on any machine: the kills land in it.
  big=$(( 48 * $(nproc) )); [ "$big" -le 1024 ] || big=1024
  gen s1.img 8 31
  gen s2.img "$big" 32
  gen s3.img "$big" 33
  PLAN=$T/plan.ini
  cat >"$PLAN" <<EOF
[defaults]
output-dir = out
inject = no
smoke = no
compress = 9
jobs = 1

[s1]
source = s1.img

[s2]
source = s2.img

[s3]
source = s3.img
EOF
  # wait_for SERVER STATUS: poll the state file (20 s at most).
  wait_for() {
    for _ in $(seq 200); do
      [ "$(state_of "$1")" = "$2" ] && return 0
      sleep 0.1
    done
    echo "state of $1 never became $2"; cat "$PLAN.state"; return 1
  }

  # Ctrl-C (SIGTERM here) while s2 converts: exit 130, s2 interrupted.
  p2v batch "$PLAN" >"$T/run1.out" 2>&1 &
  pid=$!
  wait_for s1 passed
  wait_for s2 running
  # One batch per plan at a time.
  run p2v batch "$PLAN" --resume
  [ "$status" -eq 2 ]
  [ "$output" = "p2v: plan '$PLAN' is already being run by another p2v batch" ]
  kill -TERM $pid
  status=0; wait $pid || status=$?
  cat "$T/run1.out"
  [ "$status" -eq 130 ]
  [ "$(state_of s2)" = interrupted ]
  [ "$(state_of s3)" = pending ]
  [ ! -e "$T/out/s2.qcow2" ]
  ! ls -A "$T/out" | grep -q p2v-partial || false
  s1_time=$(mtime "$T/out/s1.qcow2")

  # Resume, then SIGKILL the batch while s3 converts: its convert dies
  # with it (and removes its temporary file), the state says running.
  p2v batch "$PLAN" --resume >"$T/run2.out" 2>&1 &
  pid=$!
  wait_for s2 passed
  wait_for s3 running
  sleep 0.3
  kill -KILL $pid
  wait $pid || true
  cat "$T/run2.out"
  [[ "$(cat "$T/run2.out")" == *"s1: passed in an earlier run, skipped"* ]]
  for _ in $(seq 50); do
    pgrep -f "p2v convert $T/s3.img" >/dev/null || break
    sleep 0.1
  done
  ! pgrep -f "p2v convert $T/s3.img" || false
  [ "$(state_of s3)" = running ]
  [ ! -e "$T/out/s3.qcow2" ]
  ! ls -A "$T/out" | grep -q p2v-partial || false
  s2_time=$(mtime "$T/out/s2.qcow2")

  run p2v batch "$PLAN" --resume
  echo "$output"
  [ "$status" -eq 0 ]
  [[ "$output" == *"3 of 3 passed, 0 failed"* ]]
  [[ "$output" == *"s2: passed in an earlier run, skipped"* ]]

  # Finished servers were not redone: same files, one convert each.
  [ "$(mtime "$T/out/s1.qcow2")" = "$s1_time" ]
  [ "$(mtime "$T/out/s2.qcow2")" = "$s2_time" ]
  [ "$(grep -c '== p2v batch: convert started' "$T/out/s1.log")" -eq 1 ]
  [ "$(grep -c '== p2v batch: convert ended.*exit 0' "$T/out/s2.log")" -eq 1 ]
  [ "$(grep -c '== p2v batch: convert ended.*exit 0' "$T/out/s3.log")" -eq 1 ]
  # The report covers all three, and the outputs are right.
  [ "$(jq '[.servers[] | select(.status == "PASS")] | length' "$T/out/report.json")" -eq 3 ]
  for s in s1 s2 s3; do
    qemu-img compare -f raw -F qcow2 "$T/$s.img" "$T/out/$s.qcow2"
  done
}

# ---- ssh:// sources ------------------------------------------------------------

# The ssh test's sshd on 127.0.0.1 stops with the test.
teardown() {
  if [ -n "${T:-}" ]; then
    [ -f "$T/sshd.pid" ] && kill "$(cat "$T/sshd.pid")" 2>/dev/null
    rm -rf "$T"
  fi
}

@test "batch: ssh:// bundles (tar and directory) are fetched with scp, host key checked, then converted" {
  requires qemu-img
  requires jq
  requires scp
  requires ssh-keygen
  [ -x /usr/sbin/sshd ] || skip "openssh-server is not installed"
  [ "$(id -u)" -eq 0 ] || skip "the test logs in as root to its own sshd"
  mkdir -p "$T/remote" /run/sshd
  # A two-disk capture bundle, as a tar and as a directory (made with
  # qemu-img and Python, independently of p2v).
  gen src0.img 16 41
  gen src1.img 4 42
  "$TOP_DIR/tests/tools/make-bundle.py" make "$T/remote/bundle" "$T/src0.img" "$T/src1.img" \
    --hostname far --tar "$T/remote/bundle.tar" >/dev/null
  ssh-keygen -q -t ed25519 -N '' -f "$T/hostkey"
  ssh-keygen -q -t ed25519 -N '' -f "$T/userkey"
  cp "$T/userkey.pub" "$T/authorized_keys"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  cat >"$T/sshd_config" <<EOF
Port $port
ListenAddress 127.0.0.1
HostKey $T/hostkey
AuthorizedKeysFile $T/authorized_keys
PidFile $T/sshd.pid
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin prohibit-password
Subsystem sftp internal-sftp
EOF
  /usr/sbin/sshd -f "$T/sshd_config" -E "$T/sshd.log"
  echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$T/hostkey.pub")" >"$T/known_hosts"
  for k in known unknown; do
    cat >"$T/ssh-$k.conf" <<EOF
Host *
  IdentityFile $T/userkey
  IdentitiesOnly yes
  StrictHostKeyChecking yes
  UserKnownHostsFile $([ $k = known ] && echo "$T/known_hosts" || echo /dev/null)
EOF
  done
  PLAN=$T/plan.ini
  cat >"$PLAN" <<EOF
[defaults]
output-dir = out
inject = no
smoke = no
ssh-config = ssh-known.conf

[far]
source = ssh://root@127.0.0.1:$port$T/remote/bundle.tar

[fardir]
source = ssh://root@127.0.0.1:$port$T/remote/bundle

[stranger]
source = ssh://root@127.0.0.1:$port$T/remote/bundle.tar
ssh-config = ssh-unknown.conf
EOF
  run p2v batch "$PLAN" --dry-run
  echo "$output"
  [ "${lines[1]}" = "{ rm -rf -- $T/out/.far.source.tar.partial && scp -B -r -F $T/ssh-known.conf -P $port -- root@127.0.0.1:$T/remote/bundle.tar $T/out/.far.source.tar.partial && mv -T -- $T/out/.far.source.tar.partial $T/out/far.source.tar; } >>$T/out/far.log 2>&1" ]

  run p2v batch "$PLAN" --jobs 2
  echo "$output"
  cat "$T/out/stranger.log"
  [ "$status" -eq 1 ]
  cmp "$T/remote/bundle.tar" "$T/out/far.source.tar"
  diff -r "$T/remote/bundle" "$T/out/fardir.source"
  for s in far fardir; do
    [ "$(report_of $s .status)" = PASS ]
    jq -e --arg s $s '.servers[] | select(.name == $s) | .seconds.fetch > 0' "$T/out/report.json"
    qemu-img compare -f raw -F qcow2 "$T/src0.img" "$T/out/$s.qcow2"
    qemu-img compare -f raw -F qcow2 "$T/src1.img" "$T/out/$s-disk1.qcow2"
    # convert's libvirt domain is in the report and linked from the page.
    [ "$(report_of $s .libvirt_xml)" = "$T/out/$s.xml" ]
    grep -q "<a href=\"$s.xml\">XML</a>" "$T/out/report.html"
  done
  # An unknown host key is refused: FAIL at fetch, nothing fetched.
  [ "$(report_of stranger .status)" = FAIL ]
  [ "$(report_of stranger .stage)" = fetch ]
  [[ "$(report_of stranger .reason)" == *"host key is known for [127.0.0.1]:$port"* ]]
  [ ! -e "$T/out/stranger.source" ]
}
