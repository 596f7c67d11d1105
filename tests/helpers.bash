# helpers.bash: shared set-up for the bats tests: a temp dir per test,
# `requires TOOL` skips, and small checks used across files.

TESTS_DIR="$(cd "$(dirname "${BATS_TEST_FILENAME}")" && pwd)"
TOP_DIR="$(cd "$TESTS_DIR/.." && pwd)"
GEN_IMAGE="$TOP_DIR/tests/tools/gen-image"
PATH="$TOP_DIR:$PATH"

setup() {
  T="$(mktemp -d "${BATS_TMPDIR:-/tmp}/p2v-test.XXXXXX")"
}

teardown() {
  if [ -n "${T:-}" ]; then
    mountpoint -q "$T/small" 2>/dev/null && umount "$T/small"
    rm -rf "$T"
  fi
}

# Skip the test when a tool is missing (nbdkit's `requires`).
requires() {
  command -v "$1" >/dev/null 2>&1 || skip "$1 is not installed"
}

sha() {
  sha256sum "$1" | cut -d' ' -f1
}

# p2v convert, checking that the source is unchanged afterwards.
convert_checked() {
  local src="$1"; shift
  local before after
  before="$(sha "$src")"
  p2v convert --no-inject --no-smoke "$src" "$@"
  after="$(sha "$src")"
  [ "$before" = "$after" ] || { echo "source '$src' was modified"; return 1; }
}

# qemu-img check must report no errors and no leaks.
qcow2_clean() {
  local out
  out="$(qemu-img check "$1" 2>&1)" || { echo "$out"; return 1; }
  echo "$out" | grep -q "No errors were found" || { echo "$out"; return 1; }
  ! echo "$out" | grep -qi "leaked" || { echo "$out"; return 1; }
}

# No finished output and no partial file left in a directory.
no_output_left() {
  local dir="$1" name="$2"
  [ ! -e "$dir/$name" ] || { echo "$dir/$name exists"; return 1; }
  ! ls -A "$dir" | grep -q "p2v-partial" || { ls -la "$dir"; return 1; }
}
