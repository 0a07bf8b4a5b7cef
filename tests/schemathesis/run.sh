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
# keyed by that file's digest (~/.cache/tenscale-py/schemathesis-<digest>). The server's start,
# environment and databases are tests/support/server.sh's.
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

LOG_NAME=schemathesis/run.sh
WORK=$(mktemp -d -t tenscale-schemathesis.XXXXXX)
# shellcheck source=../support/server.sh
source "$REPO/tests/support/server.sh"

# Fuzzes one server on `database_url`; fails on any finding.
fuzz() {
  local backend=$1 database_url=$2 schemathesis=$3
  local port env_vars key started
  port=$(free_port)
  read -r -a env_vars < <(server_env "$database_url" "$port")
  # Called as `fuzz … || failed+=(…)`, where `set -e` does not hold: each step checks itself.
  key=$(org_key fuzz "${env_vars[@]}") || return 1
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
  stop_server_after "$backend" "$status" "schemathesis found problems (replay with SCHEMATHESIS_SEED=$SEED)"
}

# Both databases are fuzzed whatever the first finds, so one run reports everything.
main() {
  [[ -x $BIN ]] || { log "no server binary at $BIN; build it first (cargo build --locked)"; exit 1; }
  local schemathesis failed=()
  schemathesis="$(venv schemathesis "$HERE/requirements.txt")/bin/schemathesis"
  fuzz sqlite "sqlite://$WORK/fuzz.db?mode=rwc" "$schemathesis" || failed+=(sqlite)
  create_database tenscale_fuzz || exit 1
  fuzz postgres "$POSTGRES/$DATABASE" "$schemathesis" || failed+=(postgres)
  drop_database
  if ((${#failed[@]} > 0)); then
    log "findings on: ${failed[*]}"
    exit 1
  fi
  log "no findings on SQLite and PostgreSQL"
}

if [[ ${1:-} == --venv ]]; then
  venv schemathesis "$HERE/requirements.txt"
  exit 0
fi
main "$@"
