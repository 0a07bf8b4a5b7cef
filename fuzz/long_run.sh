#!/usr/bin/env bash
# fuzz/long_run.sh: the long runs behind fuzz/README.md's results table. Each target in turn
# (never two at once), for LONG_SECONDS (default 600), one process (-jobs=1 -workers=1), from
# a copy of its committed corpus in $OUT/<target>/corpus; libFuzzer's log is
# $OUT/<target>/fuzz-0.log, a finding lands in $OUT/<target>/. Afterwards, fold a run's
# corpus into the committed one with
#   cargo +nightly fuzz cmin <target> <dir with both>   (see fuzz/README.md).
# Build first: cargo +nightly fuzz build.
set -euo pipefail
FUZZ=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${OUT:-/tmp/tenscale-fuzz-long}
LONG_SECONDS=${LONG_SECONDS:-600}
BIN="$FUZZ/target/x86_64-unknown-linux-gnu/release"
read -r -a TARGETS <<<"${*:-noise h2_connection hpack derp_server stun front_sniff policy wire_json}"
for target in "${TARGETS[@]}"; do
  dir="$OUT/$target"
  rm -rf "$dir"
  mkdir -p "$dir"
  cp -r "$FUZZ/corpus/$target" "$dir/corpus"
  echo "== $target: $(date -u +%H:%M:%S) for ${LONG_SECONDS}s" >&2
  (cd "$dir" && nice -n 10 "$BIN/$target" corpus -artifact_prefix="$dir/" -max_total_time="$LONG_SECONDS" \
    -jobs=1 -workers=1 -timeout=3 -rss_limit_mb=2048 -print_final_stats=1 -report_slow_units=1) || true
  tail -n 3 "$dir/fuzz-0.log" >&2 || true
done
