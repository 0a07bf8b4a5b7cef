#!/usr/bin/env bash
# browser-client.sh: make sure the pinned Tailscale browser client (js/wasm `tsconnect`) is
# built, then print the directory holding `main.wasm` and Go's `wasm_exec.js` on stdout.
#
# Built from the Go module proxy in a scratch module, at the same release as clients.sh, into
# the same version-keyed cache outside the repository; a second run builds nothing.
#
#   TAILSCALE_VERSION, CLIENT_CACHE   as for clients.sh
set -euo pipefail
VERSION=${TAILSCALE_VERSION:-v1.102.3}
CACHE=${CLIENT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tenscale-clients}/$VERSION/tsconnect

if [[ ! -s $CACHE/main.wasm || ! -s $CACHE/wasm_exec.js ]]; then
  command -v go >/dev/null || { echo "browser-client.sh: go is required to build tsconnect $VERSION" >&2; exit 1; }
  echo "browser-client.sh: building the tsconnect wasm client $VERSION into $CACHE" >&2
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
  mkdir -p "$CACHE"
  (
    cd "$scratch"
    go mod init tenscale.test/tsconnect >&2
    go get "tailscale.com/cmd/tsconnect/wasm@$VERSION" >&2
    GOOS=js GOARCH=wasm go build -trimpath -o main.wasm tailscale.com/cmd/tsconnect/wasm >&2
  )
  cp "$(go env GOROOT)/lib/wasm/wasm_exec.js" "$CACHE/wasm_exec.js.new"
  mv "$scratch/main.wasm" "$CACHE/main.wasm"
  mv "$CACHE/wasm_exec.js.new" "$CACHE/wasm_exec.js"
fi
echo "$CACHE"
