#!/usr/bin/env bash
# Builds kube-router, the convergence benchmark's peer system (BENCHMARKS.md), from its pinned Go
# module with the machine's Go toolchain, and caches the binary; prints its path.
#
#   tests/scripts/kube-router.sh
#
# v2.1.0 is the only version of github.com/cloudnativelabs/kube-router/v2 the module proxy
# serves here. It has reported security flaws: it is used only as a benchmark peer, as a router
# alone (no firewall, service proxy, CNI or overlay), inside the lab's network namespaces, and
# is never deployed. The cache lives in ${PODROUTE_CACHE:-$HOME/.cache/podroute}/kube-router/.
set -euo pipefail

KUBE_ROUTER_VERSION=v2.1.0
# Bump when the build itself changes (flags) so old caches are not reused.
BUILD_REVISION=1
MODULE=github.com/cloudnativelabs/kube-router/v2

cache_root=${PODROUTE_CACHE:-$HOME/.cache/podroute}
bin="$cache_root/kube-router/$KUBE_ROUTER_VERSION-r$BUILD_REVISION/bin"
log() { printf 'kube-router: %s\n' "$*" >&2; }

# One build at a time: parallel tests and make targets wait for the first caller.
mkdir -p "$cache_root"
exec 9>"$cache_root/kube-router.lock"
if ! flock -n 9; then
  log "waiting for another kube-router build to finish"
  flock 9
fi

if [ -x "$bin/kube-router" ]; then
  log "reusing cached $bin/kube-router ($KUBE_ROUTER_VERSION)"
  echo "$bin/kube-router"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  log "error: Go is not installed; install Go >= 1.21 (https://go.dev/dl/) and re-run"
  exit 1
fi

export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
work=$(mktemp -d "${TMPDIR:-/tmp}/podroute-kube-router.XXXXXX")
trap 'rm -rf "$work"' EXIT
started=$SECONDS
log "building $MODULE@$KUBE_ROUTER_VERSION (first run only; a few minutes)"
# A wrapper module that requires kube-router at the pinned version and nothing else, so its
# dependencies are the ones its go.mod names.
mod="$work/wrapper"
mkdir -p "$mod"
(cd "$mod" && go mod init podroute.local/kube-router >/dev/null 2>&1)
echo "require $MODULE $KUBE_ROUTER_VERSION" >>"$mod/go.mod"
printf '//go:build tools\n\npackage tools\n\nimport _ "%s/cmd/kube-router"\n' "$MODULE" >"$mod/tools.go"
(cd "$mod" && { go mod tidy >/dev/null 2>&1 || go mod tidy; })
mkdir -p "$bin"
(cd "$mod" && go build -trimpath -o "$bin/kube-router.tmp" \
  -ldflags "-s -w -X $MODULE/pkg/version.Version=$KUBE_ROUTER_VERSION" \
  "$MODULE/cmd/kube-router")
mv "$bin/kube-router.tmp" "$bin/kube-router"
log "built $bin/kube-router in $((SECONDS - started)) s"
echo "$bin/kube-router"
