#!/usr/bin/env bash
# tests/apiclients/run.sh: tenscale's APIs driven by API clients nobody here wrote (issue 26,
# item 5), each against the real tenscale binary on SQLite and then on a throwaway PostgreSQL
# database, with the API key of an organization the CLI creates:
#
# - hsapi-client, the Headscale API client on PyPI, over /api/v1 (hsapi_client_test.py says
#   what it drives); it and everything it needs are pinned in requirements.txt beside this
#   file, installed once into a venv outside the repository (~/.cache/tenscale-py/apiclients-…);
# - Tailscale's Go API client, tailscale.com/client/tailscale/v2 v2.12.0 from the Go module
#   proxy, over /api/v2 (tailscale-go/main.go, pinned by its go.sum), built once into
#   ~/.cache/tenscale-clients/tailscale-go-<digest of its sources>; it is given a namespace
#   `alice` whose policy owns tag:ci, made through /v1.
#
# hsapi-client is written for Python 3.12: two of its f-strings break a replacement field
# across lines (PEP 701), which the Python 3.11 of this machine kind cannot parse. The venv
# step joins those lines (backport_fstrings.py: whitespace inside `{…}` only, checked by
# compiling the result) and changes nothing else of the client.
#
#   TENSCALE_BIN       the server binary (default: target/debug/tenscale)
#   TEST_POSTGRES_URL  the PostgreSQL server (default postgres://postgres@127.0.0.1:5432)
#
# `run.sh --prepare` only makes the venv and builds the Go client (tests/prepare.sh calls it
# early, in the background).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BIN=${TENSCALE_BIN:-$REPO/target/debug/tenscale}
POSTGRES=${TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}

LOG_NAME=apiclients/run.sh
WORK=$(mktemp -d -t tenscale-apiclients.XXXXXX)
# shellcheck source=../support/server.sh
source "$REPO/tests/support/server.sh"

# Runs every client against one server on `database_url`, each with an organization of its own.
drive() {
  local backend=$1 database_url=$2 python=$3 go_bin=$4
  local port env_vars hs_key ts_key base status=0
  port=$(free_port)
  base="http://127.0.0.1:$port"
  read -r -a env_vars < <(server_env "$database_url" "$port")
  hs_key=$(org_key headscale-clients "${env_vars[@]}") || return 1
  ts_key=$(org_key tailscale-clients "${env_vars[@]}") || return 1
  start_server "$port" "$WORK/server-$backend.log" "${env_vars[@]}" || return 1
  log "$backend: hsapi-client against $base"
  HSAPI_SERVER="$base" HSAPI_API_TOKEN="$hs_key" "$python" "$HERE/hsapi_client_test.py" || status=$?
  if ((status == 0)); then
    log "$backend: Tailscale's Go API client against $base"
    tailnet_for_go "$base" "$ts_key" || status=$?
  fi
  if ((status == 0)); then
    TS_BASE_URL="$base" TS_API_KEY="$ts_key" "$go_bin" || status=$?
  fi
  stop_server_after "$backend" "$status" "a client failed"
}

# The venv, with the client's f-strings readable by this Python (see the top).
client_venv() {
  local dir
  dir=$(venv apiclients "$HERE/requirements.txt")
  "$dir/bin/python" "$HERE/backport_fstrings.py" "$dir" >&2
  echo "$dir"
}

# The Go client's binary, built when its sources changed; prints its path.
go_client() {
  local digest dir
  digest=$(cat "$HERE"/tailscale-go/{go.mod,go.sum,main.go} | sha256sum | cut -c1-16)
  dir=${XDG_CACHE_HOME:-$HOME/.cache}/tenscale-clients/tailscale-go-$digest
  if [[ ! -x $dir/tailscale-go ]]; then
    log "building tailscale-go into $dir"
    mkdir -p "$dir"
    (cd "$HERE/tailscale-go" && go build -trimpath -o "$dir/tailscale-go.tmp" .) >&2
    mv "$dir/tailscale-go.tmp" "$dir/tailscale-go"
  fi
  echo "$dir/tailscale-go"
}

# What the Go client is pointed at: namespace alice, and a policy that owns tag:ci.
tailnet_for_go() {
  local base=$1 key=$2
  local policy='{"tagOwners": {"tag:ci": []}, "acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]}'
  curl -fsS -o /dev/null -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
    -d '{"name": "alice"}' "$base/v1/namespaces" &&
    curl -fsS -o /dev/null -X PUT -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
      -d "$policy" "$base/v1/policy"
}

main() {
  [[ -x $BIN ]] || { log "no server binary at $BIN; build it first (cargo build --locked)"; exit 1; }
  local python go_bin failed=()
  python="$(client_venv)/bin/python"
  go_bin=$(go_client)
  drive sqlite "sqlite://$WORK/clients.db?mode=rwc" "$python" "$go_bin" || failed+=(sqlite)
  create_database tenscale_clients || exit 1
  drive postgres "$POSTGRES/$DATABASE" "$python" "$go_bin" || failed+=(postgres)
  drop_database
  if ((${#failed[@]} > 0)); then
    log "failed on: ${failed[*]}"
    exit 1
  fi
  log "every client passed on SQLite and PostgreSQL"
}

if [[ ${1:-} == --prepare ]]; then
  client_venv >/dev/null
  go_client >/dev/null
  exit 0
fi
main "$@"
