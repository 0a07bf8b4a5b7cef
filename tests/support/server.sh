# tests/support/server.sh: what the scripts that drive a real tenscale binary share (sourced by
# tests/schemathesis/run.sh and tests/apiclients/run.sh): a pinned Python venv outside the
# repository, a free port, the server's environment, starting and stopping the server, and a
# throwaway PostgreSQL database.
#
# The sourcing script sets LOG_NAME (its name in messages), BIN (the server binary), POSTGRES
# (the PostgreSQL server's URL) and WORK (its scratch directory) before sourcing it; SERVER_PID
# and DATABASE are this file's. On exit the server is stopped, the database dropped and WORK
# removed, however the script ends.

SERVER_PID=
DATABASE=

cleanup() {
  stop_server
  drop_database
  rm -rf "$WORK"
}
trap cleanup EXIT

log() { echo "$LOG_NAME: $*" >&2; }

# The venv `name` for this exact `requirements` file; made (with the network) only when missing.
# A venv cannot be moved, so it is marked complete only once everything is installed. Prints its
# path (~/.cache/tenscale-py/<name>-<digest of requirements>).
venv() {
  local name=$1 requirements=$2 digest dir
  digest=$(sha256sum "$requirements" | cut -c1-16)
  dir=${XDG_CACHE_HOME:-$HOME/.cache}/tenscale-py/$name-$digest
  if [[ ! -e "$dir/.complete" ]]; then
    log "installing $name into $dir"
    rm -rf "$dir"
    python3 -m venv "$dir" >&2
    "$dir/bin/python" -m pip install --disable-pip-version-check -q -r "$requirements" >&2
    touch "$dir/.complete"
  fi
  echo "$dir"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The environment the server and the CLI share: one database, loopback, no STUN, and rate
# limits far above what a test client sends (a 429 is documented, but would test nothing).
server_env() {
  local database_url=$1 port=$2
  echo TENSCALE_DATABASE_URL="$database_url" TENSCALE_LISTEN_ADDR=127.0.0.1:"$port" \
    TENSCALE_STUN_ADDR=off TENSCALE_RATE_LIMIT_PER_SECOND=100000 TENSCALE_RATE_LIMIT_BURST=100000 \
    TENSCALE_BROWSER_KEY_RATE_PER_MINUTE=100000 TENSCALE_SECRETS_KEY="$(printf '%064x' 7)" TENSCALE_LOG=warn
}

# The API key of a new organization `name`, made with the CLI on the server's database.
org_key() {
  local name=$1
  shift
  env -u TENSCALE_BIN "$@" "$BIN" org create "$name" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["api_key"])'
}

# Starts the server with the environment `$@` and waits (up to 60 s) until it is ready.
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

# Stops the server of `backend` (its log is $WORK/server-<backend>.log); when `status` is not 0,
# says `what` went wrong, shows the end of that log, and returns `status`.
stop_server_after() {
  local backend=$1 status=$2 what=$3
  stop_server
  if ((status != 0)); then
    log "$backend: $what; the server's log:"
    tail -n 50 "$WORK/server-$backend.log" >&2
  fi
  return "$status"
}

# A new, empty PostgreSQL database named `<prefix>_<random>`, in DATABASE.
create_database() {
  local prefix=$1
  DATABASE=${prefix}_$(python3 -c 'import secrets; print(secrets.token_hex(6))')
  psql -q -v ON_ERROR_STOP=1 "$POSTGRES/postgres" -c "CREATE DATABASE $DATABASE" >&2
}

drop_database() {
  [[ -n $DATABASE ]] || return 0
  psql -q "$POSTGRES/postgres" -c "DROP DATABASE IF EXISTS $DATABASE WITH (FORCE)" >&2 || true
  DATABASE=
}
