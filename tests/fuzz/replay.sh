#!/usr/bin/env bash
# tests/fuzz/replay.sh: the fuzz targets of fuzz/ under libFuzzer (issue 15, item 1), run before
# and after every change to a parser. CI does not run it: `cargo test --workspace` replays the
# same corpora through the same check functions on stable (fuzz/targets/tests/corpora.rs).
#
# Builds every target with `cargo +nightly fuzz build` (libFuzzer, AddressSanitizer), replays
# each committed corpus (fuzz/corpus/<target>, `-runs=0`: every input once), then fuzzes each
# target for FUZZ_SECONDS, starting from a temporary copy of its corpus so that the committed
# one does not grow. Any crash, panic, leak report, out-of-memory (over FUZZ_RSS_MB) or input
# slower than FUZZ_TIMEOUT seconds fails the run; libFuzzer leaves the input in
# fuzz/artifacts/<target>/ and prints how to reproduce it.
#
# Needs the nightly toolchain (`rustup toolchain install nightly`); installs cargo-fuzz
# (crates.io, --locked) into ~/.cargo/bin when it is missing.
#
#   FUZZ_SECONDS   fuzzing time per target after the replay (default 20; 0: replay only)
#   FUZZ_TIMEOUT   seconds one input may take (default 3)
#   FUZZ_RSS_MB    memory limit of a fuzzing process (default 2048)
#   FUZZ_TARGETS   the targets to run (default: all of `cargo fuzz list`)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
SECONDS_PER_TARGET=${FUZZ_SECONDS:-20}
TIMEOUT=${FUZZ_TIMEOUT:-3}
RSS_MB=${FUZZ_RSS_MB:-2048}

log() { echo "fuzz/replay.sh: $*" >&2; }

if ! cargo +nightly --version >/dev/null 2>&1; then
  log "FAILED: the nightly Rust toolchain is missing; cargo fuzz needs it (-Zsanitizer)."
  log "Install it with: rustup toolchain install nightly"
  exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  log "installing cargo-fuzz from crates.io into ~/.cargo/bin"
  cargo install cargo-fuzz --locked
fi

cd "$REPO/fuzz"
log "building the targets"
cargo +nightly fuzz build
read -r -a TARGETS <<<"${FUZZ_TARGETS:-$(cargo +nightly fuzz list | tr '\n' ' ')}"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
# Leaks are reported by AddressSanitizer's LeakSanitizer (on by default in libFuzzer).
FLAGS=(-rss_limit_mb="$RSS_MB" -timeout="$TIMEOUT" -detect_leaks=1)

for target in "${TARGETS[@]}"; do
  corpus="corpus/$target"
  if [[ ! -d "$corpus" ]] || [[ -z "$(ls -A "$corpus")" ]]; then
    log "FAILED: $target has no committed corpus in fuzz/$corpus"
    exit 1
  fi
  log "$target: replaying $(find "$corpus" -type f | wc -l) committed inputs"
  cargo +nightly fuzz run "$target" "$corpus" -- -runs=0 "${FLAGS[@]}"
  if (( SECONDS_PER_TARGET > 0 )); then
    log "$target: fuzzing for ${SECONDS_PER_TARGET}s from a copy of the corpus"
    cp -r "$corpus" "$WORK/$target"
    cargo +nightly fuzz run "$target" "$WORK/$target" -- \
      -max_total_time="$SECONDS_PER_TARGET" "${FLAGS[@]}"
  fi
done
log "every target replayed its corpus and fuzzed ${SECONDS_PER_TARGET}s without a finding"
