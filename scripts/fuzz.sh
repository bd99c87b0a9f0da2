#!/usr/bin/env bash
# Coverage-guided fuzzing of what the server parses from untrusted bytes:
# libFuzzer targets in fuzz/ (WebSocket frames and events, JSON bodies, query
# strings, the router), each run for FUZZ_SECONDS (default 20) from the
# committed corpus in fuzz/corpus/<target> plus what earlier runs on this
# machine found (fuzz/target/corpus/<target>, where new inputs go; fold them
# into the committed corpus with `cargo fuzz cmin` when worth keeping). A crash
# fails the run and leaves its input in fuzz/artifacts/<target>/, to be made a
# regression test (src/fuzz_tests.rs).
#
#   scripts/fuzz.sh                    every target, 20 s each
#   FUZZ_SECONDS=300 scripts/fuzz.sh ws_frames
#   scripts/fuzz.sh --build-only       install cargo-fuzz and build the targets
#
# Installs cargo-fuzz from crates.io when it is missing. It runs on the stable
# toolchain (RUSTC_BOOTSTRAP lets cargo fuzz pass its unstable flags), without
# a sanitizer: safe Rust needs none to find panics, hangs and failed asserts.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-20}
build_only=""
if [[ ${1:-} == --build-only ]]; then build_only=1; shift; fi
targets=("$@")
(( ${#targets[@]} )) || targets=(ws_frames ws_events json_body query_string router)

command -v cargo-fuzz >/dev/null || cargo install -q cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
fuzz() { (cd fuzz && cargo fuzz "$1" --sanitizer none -O "${@:2}"); }
fuzz build
[[ -z $build_only ]] || exit 0

inputs() { find "fuzz/corpus/$1" "fuzz/target/corpus/$1" -type f | wc -l; }
for target in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$target" "fuzz/target/corpus/$target"
  before=$(inputs "$target")
  log=$(mktemp)
  if ! fuzz run "$target" "target/corpus/$target" "corpus/$target" -- \
      -max_total_time="$seconds" -timeout=10 >"$log" 2>&1; then
    grep -vE "^ +(at |[0-9]+: )" "$log" | tail -n 40
    echo "fuzz target $target FAILED; the input is in fuzz/artifacts/$target/" >&2
    exit 1
  fi
  runs=$(grep -oE '^Done [0-9]+ runs in [0-9]+ second' "$log" | tail -n1 || true)
  after=$(inputs "$target")
  # (find, not a glob: a run that adds nothing leaves the second folder empty)
  bytes=$(find "fuzz/corpus/$target" "fuzz/target/corpus/$target" -type f -exec cat {} + | wc -c)
  echo "fuzz $target: ${runs:-?}s, corpus $before -> $after inputs ($bytes bytes), no crash"
  rm -f "$log"
done
