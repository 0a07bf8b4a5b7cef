#!/usr/bin/env bash
# tests/schemathesis/run.sh: the API fuzzed from its own OpenAPI document (issue 15, item 3).
#
# For each database, SQLite and then a throwaway PostgreSQL database: starts the real tenscale
# binary, creates an organization and its API key with the CLI (`tenscale org create`), and runs
# schemathesis over every operation of the served /openapi.json — its examples, the coverage
# and fuzzing phases, and the stateful phase along the document's links — with the checks
#   not_a_server_error, status_code_conformance, content_type_conformance,
#   response_schema_conformance:
# no 5xx, no undocumented status, no undocumented Content-Type, no body outside its schema.
# Any finding fails the run; the one documented 5xx is allowed in schemathesis.toml, and
# hooks.py teaches schemathesis the policy's media type, application/hujson. schemathesis and everything it needs are pinned in
# requirements.txt beside this file and installed once into a venv outside the repository,
# keyed by that file's digest (~/.cache/tenscale-py/schemathesis-<digest>).
#
#   TENSCALE_BIN               the server binary (default: target/debug/tenscale)
#   SCHEMATHESIS_MAX_EXAMPLES  test cases per operation and phase (default 150: about a minute
#                              per database on two idle cores)
#   SCHEMATHESIS_SEED          the generator's seed (default: random; printed, to replay a run)
#   TEST_POSTGRES_URL          the PostgreSQL server (default postgres://postgres@127.0.0.1:5432)
#
# `run.sh --venv` only makes the venv and prints its path (tests/prepare.sh calls it early).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BIN=${TENSCALE_BIN:-$REPO/target/debug/tenscale}
MAX_EXAMPLES=${SCHEMATHESIS_MAX_EXAMPLES:-150}
SEED=${SCHEMATHESIS_SEED:-$((RANDOM * 32768 + RANDOM))}
POSTGRES=${TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}
CHECKS=not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance

log() { echo "schemathesis/run.sh: $*" >&2; }

WORK=$(mktemp -d -t tenscale-schemathesis.XXXXXX)
SERVER_PID=
DATABASE=
cleanup() {
  stop_server
  drop_database
  rm -rf "$WORK"
}
trap cleanup EXIT

# The venv for this exact requirements.txt; made (with the network) only when missing. A venv
# cannot be moved, so it is marked complete only once everything is installed.
venv() {
  local digest dir
  digest=$(sha256sum "$HERE/requirements.txt" | cut -c1-16)
  dir=${XDG_CACHE_HOME:-$HOME/.cache}/tenscale-py/schemathesis-$digest
  if [[ ! -e "$dir/.complete" ]]; then
    log "installing schemathesis into $dir"
    rm -rf "$dir"
    python3 -m venv "$dir" >&2
    "$dir/bin/python" -m pip install --disable-pip-version-check -q -r "$HERE/requirements.txt" >&2
    touch "$dir/.complete"
  fi
  echo "$dir"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The environment the server and the CLI share: one database, loopback, no STUN, and rate
# limits far above what the fuzzer sends (a 429 is documented, but would test nothing).
server_env() {
  local database_url=$1 port=$2
  echo TENSCALE_DATABASE_URL="$database_url" TENSCALE_LISTEN_ADDR=127.0.0.1:"$port" \
    TENSCALE_STUN_ADDR=off TENSCALE_RATE_LIMIT_PER_SECOND=100000 TENSCALE_RATE_LIMIT_BURST=100000 \
    TENSCALE_BROWSER_KEY_RATE_PER_MINUTE=100000 TENSCALE_SECRETS_KEY="$(printf '%064x' 7)" TENSCALE_LOG=warn
}

start_server() {
  local port=$1 log_file=$2
  shift 2
  env -u TENSCALE_BIN "$@" "$BIN" serve >"$log_file" 2>&1 &
  SERVER_PID=$!
  local deadline=$((SECONDS + 60))
  until curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      log "the server exited; its log:"
      cat "$log_file" >&2
      return 1
    fi
    ((SECONDS < deadline)) || { log "the server was not ready within 60 s"; return 1; }
    sleep 0.2
  done
}

stop_server() {
  [[ -n $SERVER_PID ]] || return 0
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
}

create_database() {
  DATABASE=tenscale_fuzz_$(python3 -c 'import secrets; print(secrets.token_hex(6))')
  psql -q -v ON_ERROR_STOP=1 "$POSTGRES/postgres" -c "CREATE DATABASE $DATABASE" >&2
}

drop_database() {
  [[ -n $DATABASE ]] || return 0
  psql -q "$POSTGRES/postgres" -c "DROP DATABASE IF EXISTS $DATABASE WITH (FORCE)" >&2 || true
  DATABASE=
}

# Fuzzes one server on `database_url`; fails on any finding.
fuzz() {
  local backend=$1 database_url=$2 schemathesis=$3
  local port env_vars key started
  port=$(free_port)
  read -r -a env_vars < <(server_env "$database_url" "$port")
  # Called as `fuzz … || failed+=(…)`, where `set -e` does not hold: each step checks itself.
  key=$(env -u TENSCALE_BIN "${env_vars[@]}" "$BIN" org create fuzz |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["api_key"])') || return 1
  start_server "$port" "$WORK/server-$backend.log" "${env_vars[@]}" || return 1
  log "$backend: fuzzing http://127.0.0.1:$port (seed $SEED, $MAX_EXAMPLES examples per operation)"
  started=$SECONDS
  local status=0
  # From the scratch directory: schemathesis leaves a cache (.schemathesis/) where it runs.
  (cd "$WORK" && SCHEMATHESIS_HOOKS=hooks PYTHONPATH="$HERE" "$schemathesis" --config-file "$HERE/schemathesis.toml" \
    run "http://127.0.0.1:$port/openapi.json" \
    --header "Authorization: Bearer $key" \
    --checks "$CHECKS" \
    --phases examples,coverage,fuzzing,stateful \
    --max-examples "$MAX_EXAMPLES" \
    --seed "$SEED" \
    --generation-database none \
    --request-timeout 20 \
    --no-color) || status=$?
  log "$backend: schemathesis took $((SECONDS - started)) s"
  stop_server
  if ((status != 0)); then
    log "$backend: schemathesis found problems (replay with SCHEMATHESIS_SEED=$SEED); the server's log:"
    tail -n 50 "$WORK/server-$backend.log" >&2
    return "$status"
  fi
}

# Both databases are fuzzed whatever the first finds, so one run reports everything.
main() {
  [[ -x $BIN ]] || { log "no server binary at $BIN; build it first (cargo build --locked)"; exit 1; }
  local schemathesis failed=()
  schemathesis="$(venv)/bin/schemathesis"
  fuzz sqlite "sqlite://$WORK/fuzz.db?mode=rwc" "$schemathesis" || failed+=(sqlite)
  create_database || exit 1
  fuzz postgres "$POSTGRES/$DATABASE" "$schemathesis" || failed+=(postgres)
  drop_database
  if ((${#failed[@]} > 0)); then
    log "findings on: ${failed[*]}"
    exit 1
  fi
  log "no findings on SQLite and PostgreSQL"
}

if [[ ${1:-} == --venv ]]; then
  venv
  exit 0
fi
main "$@"
