#!/usr/bin/env bash
# tests/services.sh: make this machine ready for tests/run.sh (root; Debian).
#
# Installs what is missing from Debian's packages — PostgreSQL, Redis, OpenSSH's client,
# iproute2, util-linux, openssl, curl, Chromium (the browser test) — then starts PostgreSQL on 127.0.0.1:5432 (user
# `postgres`, trusted from loopback, as the tests connect) and Redis on 127.0.0.1:6379.
# Idempotent: what is installed stays, what runs keeps running; a second call only checks.
set -euo pipefail

log() { echo "services.sh: $*" >&2; }
have() { command -v "$1" >/dev/null 2>&1; }

pg_up() { have pg_isready && pg_isready -h 127.0.0.1 -p 5432 -q; }
redis_up() { (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; }

# Waits for a condition, polling; a service that does not come up is an error, not a hang.
wait_until() {
  local what=$1 deadline=$((SECONDS + 60))
  shift
  until "$@"; do
    ((SECONDS < deadline)) || { log "$what did not come up within 60 s"; return 1; }
    sleep 0.5
  done
}

install_missing() {
  local packages=()
  have pg_ctlcluster || packages+=(postgresql)
  have redis-server || packages+=(redis-server)
  have ssh || packages+=(openssh-client)
  have ip || packages+=(iproute2)
  have unshare || packages+=(util-linux)
  have openssl || packages+=(openssl)
  have curl || packages+=(curl)
  have haproxy || packages+=(haproxy)
  have chromium || packages+=(chromium)
  ((${#packages[@]} == 0)) && return 0
  [[ $(id -u) == 0 ]] || { log "missing ${packages[*]}; run me as root to install them"; exit 1; }
  log "installing ${packages[*]}"
  apt-get update -qq
  # Debian's maintainer scripts try to start the services through policy-rc.d; we start them
  # ourselves below, the same way on machines with and without an init system.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >&2
}

# The first cluster Debian created (e.g. 15/main).
pg_cluster() {
  pg_lsclusters -h | awk 'NR == 1 { print $1, $2 }'
}

# Loopback connections as any user are trusted: the tests connect as `postgres` without a
# password. Only 127.0.0.1 and ::1 — the server listens on nothing else.
trust_loopback() {
  local version=$1 cluster=$2 hba
  hba=/etc/postgresql/$version/$cluster/pg_hba.conf
  grep -q '^# tenscale tests' "$hba" && return 0
  log "trusting loopback connections in $hba"
  local rules
  rules=$'# tenscale tests: loopback is trusted\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n'
  printf '%s%s' "$rules" "$(cat "$hba")" >"$hba.new" && mv "$hba.new" "$hba"
  chown postgres:postgres "$hba"
  if pg_up; then pg_ctlcluster "$version" "$cluster" reload; fi
}

start_postgres() {
  local version cluster
  read -r version cluster < <(pg_cluster)
  [[ -n ${version:-} ]] || { log "no PostgreSQL cluster found (pg_lsclusters is empty)"; exit 1; }
  trust_loopback "$version" "$cluster"
  if ! pg_up; then
    log "starting PostgreSQL $version/$cluster"
    pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" start
  fi
  wait_until "PostgreSQL" pg_up
}

start_redis() {
  redis_up && return 0
  log "starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind "127.0.0.1 -::1" --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/tenscale-tests.log
  wait_until "Redis" redis_up
}

install_missing
start_postgres
start_redis
log "PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379 are up"
