#!/usr/bin/env bash
# tests/apiclients/run.sh: tenscale's APIs driven by API clients nobody here wrote (issue 26,
# item 5). Today: hsapi-client, the Headscale API client on PyPI, over /api/v1
# (hsapi_client_test.py says what it drives). For each database, SQLite and then a throwaway
# PostgreSQL database: starts the real tenscale binary, creates an organization and its API key
# with the CLI, and runs each client against it. The clients and everything they need are
# pinned in requirements.txt beside this file, installed once into a venv outside the
# repository (~/.cache/tenscale-py/apiclients-<digest>).
#
# hsapi-client is written for Python 3.12: two of its f-strings break a replacement field
# across lines (PEP 701), which the Python 3.11 of this machine kind cannot parse. The venv
# step joins those lines (backport_fstrings.py: whitespace inside `{…}` only, checked by
# compiling the result) and changes nothing else of the client.
#
#   TENSCALE_BIN       the server binary (default: target/debug/tenscale)
#   TEST_POSTGRES_URL  the PostgreSQL server (default postgres://postgres@127.0.0.1:5432)
#
# `run.sh --venv` only makes the venv and prints its path (tests/prepare.sh calls it early).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BIN=${TENSCALE_BIN:-$REPO/target/debug/tenscale}
POSTGRES=${TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}

LOG_NAME=apiclients/run.sh
WORK=$(mktemp -d -t tenscale-apiclients.XXXXXX)
# shellcheck source=../support/server.sh
source "$REPO/tests/support/server.sh"
cleanup() {
  stop_server
  drop_database
  rm -rf "$WORK"
}
trap cleanup EXIT

# Runs every client against one server on `database_url`.
drive() {
  local backend=$1 database_url=$2 python=$3
  local port env_vars key status=0
  port=$(free_port)
  read -r -a env_vars < <(server_env "$database_url" "$port")
  key=$(org_key clients "${env_vars[@]}") || return 1
  start_server "$port" "$WORK/server-$backend.log" "${env_vars[@]}" || return 1
  log "$backend: hsapi-client against http://127.0.0.1:$port"
  HSAPI_SERVER="http://127.0.0.1:$port" HSAPI_API_TOKEN="$key" "$python" "$HERE/hsapi_client_test.py" || status=$?
  stop_server
  if ((status != 0)); then
    log "$backend: hsapi-client failed; the server's log:"
    tail -n 50 "$WORK/server-$backend.log" >&2
    return "$status"
  fi
}

# The venv, with the client's f-strings readable by this Python (see the top).
client_venv() {
  local dir
  dir=$(venv apiclients "$HERE/requirements.txt")
  "$dir/bin/python" "$HERE/backport_fstrings.py" "$dir" >&2
  echo "$dir"
}

main() {
  [[ -x $BIN ]] || { log "no server binary at $BIN; build it first (cargo build --locked)"; exit 1; }
  local python failed=()
  python="$(client_venv)/bin/python"
  drive sqlite "sqlite://$WORK/clients.db?mode=rwc" "$python" || failed+=(sqlite)
  create_database tenscale_clients || exit 1
  drive postgres "$POSTGRES/$DATABASE" "$python" || failed+=(postgres)
  drop_database
  if ((${#failed[@]} > 0)); then
    log "failed on: ${failed[*]}"
    exit 1
  fi
  log "every client passed on SQLite and PostgreSQL"
}

if [[ ${1:-} == --venv ]]; then
  client_venv
  exit 0
fi
main "$@"
