#!/usr/bin/env bash
# Builds the lab's control plane (kube-apiserver, kubectl, etcd) and cnitool from pinned Go module
# versions with the machine's Go toolchain, and caches the binaries per version set.
#
#   tests/scripts/control-plane.sh          build if needed, print the bin directory
#
# The cache lives in ${PODROUTE_CACHE:-$HOME/.cache/podroute}/control-plane/<versions>/bin.
set -euo pipefail

# Kubernetes minor version matches the k8s-openapi feature the agent compiles against (v1_34).
K8S_VERSION=v1.34.4
ETCD_VERSION=v3.6.16
CNI_VERSION=v1.3.0
# Bump when the build itself changes (flags, patches) so old caches are not reused.
BUILD_REVISION=2

cache_root=${PODROUTE_CACHE:-$HOME/.cache/podroute}
dest="$cache_root/control-plane/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-cni-$CNI_VERSION-r$BUILD_REVISION"
bin="$dest/bin"
wanted=(kube-apiserver kubectl etcd cnitool)

log() { printf 'control-plane: %s\n' "$*" >&2; }

# One build at a time per cache: parallel tests and make targets wait for the first caller.
mkdir -p "$cache_root"
exec 9>"$cache_root/control-plane.lock"
if ! flock -n 9; then
  log "waiting for another control-plane build to finish"
  flock 9
fi

have_all() {
  local b
  for b in "${wanted[@]}"; do [ -x "$bin/$b" ] || return 1; done
}

if have_all; then
  log "reusing cached binaries in $bin (kubernetes $K8S_VERSION, etcd $ETCD_VERSION, cnitool $CNI_VERSION)"
  echo "$bin"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  log "error: Go is not installed; install Go >= 1.24 (https://go.dev/dl/) and re-run"
  exit 1
fi
go_minor=$(go env GOVERSION | sed -n 's/^go1\.\([0-9]*\).*/\1/p')
if [ -z "$go_minor" ] || [ "$go_minor" -lt 24 ]; then
  log "error: $(go env GOVERSION) is too old to build Kubernetes $K8S_VERSION; install Go >= 1.24 (https://go.dev/dl/)"
  exit 1
fi

export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
work=$(mktemp -d "${TMPDIR:-/tmp}/podroute-cp.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$bin"
started=$SECONDS

# k8s.io/kubernetes cannot be required as is: its go.mod replaces each staging module with a path
# inside its own tree. A wrapper module pins each staging module to the matching v0.x.y instead.
build_kubernetes() {
  log "fetching k8s.io/kubernetes@$K8S_VERSION (first build only; several minutes)"
  local mod="$work/k8s"
  mkdir -p "$mod"
  (cd "$mod" && go mod init podroute.local/k8s >/dev/null 2>&1)
  local gomod
  gomod=$(cd "$mod" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  [ -f "$gomod" ] || { log "error: could not download k8s.io/kubernetes@$K8S_VERSION"; exit 1; }
  local staging_version="v0.${K8S_VERSION#v1.}"
  {
    echo "require k8s.io/kubernetes $K8S_VERSION"
    grep -E '^\s*k8s\.io/[a-z0-9-]+ => \./staging/' "$gomod" | awk -v v="$staging_version" '{print "replace " $1 " => " $1 " " v}'
  } >>"$mod/go.mod"
  log "pinned $(grep -c '^replace' "$mod/go.mod") staging modules at $staging_version"
  cat >"$mod/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
  (cd "$mod" && go mod tidy >/dev/null 2>&1 || go mod tidy)
  # Stamp the version the way Kubernetes' own build does, so clients and the server's
  # compatibility checks see v1.34.x rather than v0.0.0-master.
  local minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  local ldflags=""
  local pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  log "compiling kube-apiserver (the longest step)"
  (cd "$mod" && go build -trimpath -ldflags "$ldflags" -o "$bin/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver)
  mv "$bin/kube-apiserver.tmp" "$bin/kube-apiserver"
  log "compiling kubectl"
  (cd "$mod" && go build -trimpath -ldflags "$ldflags" -o "$bin/kubectl.tmp" k8s.io/kubernetes/cmd/kubectl)
  mv "$bin/kubectl.tmp" "$bin/kubectl"
}

# etcd's modules replace their siblings with relative paths too; a wrapper module avoids that.
build_etcd() {
  log "compiling etcd $ETCD_VERSION"
  local mod="$work/etcd"
  mkdir -p "$mod"
  (cd "$mod" && go mod init podroute.local/etcd >/dev/null 2>&1)
  echo "require go.etcd.io/etcd/server/v3 $ETCD_VERSION" >>"$mod/go.mod"
  cat >"$mod/tools.go" <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GO
  (cd "$mod" && go mod tidy >/dev/null 2>&1 || go mod tidy)
  (cd "$mod" && go build -trimpath -o "$bin/etcd.tmp" go.etcd.io/etcd/server/v3)
  mv "$bin/etcd.tmp" "$bin/etcd"
}

build_cnitool() {
  log "compiling cnitool $CNI_VERSION"
  GOBIN="$work/gobin" go install "github.com/containernetworking/cni/cnitool@$CNI_VERSION"
  mv "$work/gobin/cnitool" "$bin/cnitool"
}

[ -x "$bin/cnitool" ] || build_cnitool
[ -x "$bin/etcd" ] || build_etcd
{ [ -x "$bin/kube-apiserver" ] && [ -x "$bin/kubectl" ]; } || build_kubernetes

log "built in $((SECONDS - started)) s, cached in $bin"
echo "$bin"
