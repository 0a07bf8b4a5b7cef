#!/usr/bin/env bash
# clients.sh: make sure the pinned real Tailscale client binaries (`tailscale`, `tailscaled`)
# are built, then print the directory that holds them on stdout (and nothing else there).
#
# Built from the Go module proxy with `go install tailscale.com/cmd/...@$TAILSCALE_VERSION`
# into a cache outside the repository, keyed by version, so a second run builds nothing:
#
#   TAILSCALE_VERSION   the pinned release (default below)
#   CLIENT_CACHE        cache root (default: ${XDG_CACHE_HOME:-$HOME/.cache}/tenscale-clients)
set -euo pipefail
VERSION=${TAILSCALE_VERSION:-v1.102.3}
CACHE=${CLIENT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tenscale-clients}/$VERSION

built() { [[ -x $CACHE/tailscale && -x $CACHE/tailscaled ]] && "$CACHE/tailscale" version >/dev/null 2>&1; }

if ! built; then
  command -v go >/dev/null || { echo "clients.sh: go is required to build tailscale $VERSION" >&2; exit 1; }
  echo "clients.sh: building tailscale and tailscaled $VERSION into $CACHE" >&2
  mkdir -p "$CACHE"
  GOBIN=$CACHE go install "tailscale.com/cmd/tailscale@$VERSION" "tailscale.com/cmd/tailscaled@$VERSION" >&2
  built || { echo "clients.sh: the built tailscale does not run" >&2; exit 1; }
fi
echo "$CACHE"
