#!/usr/bin/env bash
# Builds the lab's Kubernetes components from pinned Go module versions with the machine's Go
# toolchain, and caches the binaries per version set.
#
#   tests/scripts/control-plane.sh          the light lab's set: kube-apiserver, kubectl, etcd,
#                                           cnitool; build if needed, print the bin directory
#   tests/scripts/control-plane.sh cluster  the cluster mode's extra set: kube-controller-manager,
#                                           kube-scheduler, kubelet, containerd, its runc shim
#                                           and ctr (which imports the lab's images)
#
# The cache lives in ${PODROUTE_CACHE:-$HOME/.cache/podroute}/control-plane/<versions>/bin.
set -euo pipefail

set_name=${1:-light}
case "$set_name" in
  light | cluster) ;;
  *) echo "usage: $0 [cluster]" >&2; exit 2 ;;
esac

# Kubernetes minor version matches the k8s-openapi feature the agent compiles against (v1_34).
K8S_VERSION=v1.34.4
ETCD_VERSION=v3.6.16
CNI_VERSION=v1.3.0
# containerd 2.1 speaks CRI v1 to kubelet 1.34 and runs on cgroup v1 hosts.
CONTAINERD_VERSION=v2.1.9
# Bump when the build itself changes (flags, patches) so old caches are not reused.
BUILD_REVISION=2

cache_root=${PODROUTE_CACHE:-$HOME/.cache/podroute}
if [ "$set_name" = light ]; then
  dest="$cache_root/control-plane/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-cni-$CNI_VERSION-r$BUILD_REVISION"
  wanted=(kube-apiserver kubectl etcd cnitool)
  what="kubernetes $K8S_VERSION, etcd $ETCD_VERSION, cnitool $CNI_VERSION"
else
  # Bump with CLUSTER_REVISION for changes that only concern this set.
  CLUSTER_REVISION=1
  dest="$cache_root/control-plane/cluster-k8s-$K8S_VERSION-containerd-$CONTAINERD_VERSION-r$CLUSTER_REVISION"
  wanted=(kube-controller-manager kube-scheduler kubelet containerd containerd-shim-runc-v2 ctr)
  what="kubernetes $K8S_VERSION, containerd $CONTAINERD_VERSION"
fi
bin="$dest/bin"

log() { printf 'control-plane: %s\n' "$*" >&2; }

# One build at a time per cache: parallel tests and make targets wait for the first caller.
mkdir -p "$cache_root"
exec 9>"$cache_root/control-plane-$set_name.lock"
if ! flock -n 9; then
  log "waiting for another control-plane build to finish"
  flock 9
fi

have_all() {
  local b
  for b in "${wanted[@]}"; do [ -x "$bin/$b" ] || return 1; done
}

if have_all; then
  log "reusing cached binaries in $bin ($what)"
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

# A wrapper module in directory $1 (named after it) that only requires what the caller appends.
init_module() {
  mkdir -p "$1"
  (cd "$1" && go mod init "podroute.local/$(basename "$1")" >/dev/null 2>&1)
}

# Imports the packages $2... in the wrapper module $1 so `go mod tidy` pins their dependencies.
tools_and_tidy() {
  local mod=$1 pkg
  shift
  {
    printf '//go:build tools\n\npackage tools\n\nimport (\n'
    for pkg in "$@"; do printf '\t_ "%s"\n' "$pkg"; done
    printf ')\n'
  } >"$mod/tools.go"
  (cd "$mod" && go mod tidy >/dev/null 2>&1 || go mod tidy)
}

# k8s.io/kubernetes cannot be required as is: its go.mod replaces each staging module with a path
# inside its own tree. A wrapper module pins each staging module to the matching v0.x.y instead.
# Builds the k8s.io/kubernetes commands named as arguments (e.g. kube-apiserver) into $bin.
build_kubernetes() {
  log "fetching k8s.io/kubernetes@$K8S_VERSION (first build only; several minutes)"
  local mod="$work/k8s"
  init_module "$mod"
  local gomod
  gomod=$(cd "$mod" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  [ -f "$gomod" ] || { log "error: could not download k8s.io/kubernetes@$K8S_VERSION"; exit 1; }
  local staging_version="v0.${K8S_VERSION#v1.}"
  {
    echo "require k8s.io/kubernetes $K8S_VERSION"
    grep -E '^\s*k8s\.io/[a-z0-9-]+ => \./staging/' "$gomod" | awk -v v="$staging_version" '{print "replace " $1 " => " $1 " " v}'
  } >>"$mod/go.mod"
  log "pinned $(grep -c '^replace' "$mod/go.mod") staging modules at $staging_version"
  local cmdname pkgs=()
  for cmdname in "$@"; do pkgs+=("k8s.io/kubernetes/cmd/$cmdname"); done
  tools_and_tidy "$mod" "${pkgs[@]}"
  # Stamp the version the way Kubernetes' own build does, so clients and the server's
  # compatibility checks see v1.34.x rather than v0.0.0-master.
  local minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  local ldflags=""
  local pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  for cmdname in "$@"; do
    [ -x "$bin/$cmdname" ] && continue
    log "compiling $cmdname"
    (cd "$mod" && go build -trimpath -ldflags "$ldflags" -o "$bin/$cmdname.tmp" "k8s.io/kubernetes/cmd/$cmdname")
    mv "$bin/$cmdname.tmp" "$bin/$cmdname"
  done
}

# containerd's daemon, its runc shim and ctr. Without cgo the btrfs snapshotter is left out (the lab
# uses overlayfs or native); both binaries come out static.
build_containerd() {
  log "compiling containerd $CONTAINERD_VERSION"
  local mod="$work/containerd"
  init_module "$mod"
  echo "require github.com/containerd/containerd/v2 $CONTAINERD_VERSION" >>"$mod/go.mod"
  tools_and_tidy "$mod" github.com/containerd/containerd/v2/cmd/containerd \
    github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2
  local v=github.com/containerd/containerd/v2/version
  local ldflags="-X $v.Version=$CONTAINERD_VERSION -X $v.Revision=podroute-lab -X $v.Package=github.com/containerd/containerd/v2"
  local c
  for c in containerd containerd-shim-runc-v2 ctr; do
    [ -x "$bin/$c" ] && continue
    (cd "$mod" && go build -trimpath -tags no_btrfs -ldflags "$ldflags" -o "$bin/$c.tmp" "github.com/containerd/containerd/v2/cmd/$c")
    mv "$bin/$c.tmp" "$bin/$c"
  done
}

# etcd's modules replace their siblings with relative paths too; a wrapper module avoids that.
build_etcd() {
  log "compiling etcd $ETCD_VERSION"
  local mod="$work/etcd"
  init_module "$mod"
  echo "require go.etcd.io/etcd/server/v3 $ETCD_VERSION" >>"$mod/go.mod"
  tools_and_tidy "$mod" go.etcd.io/etcd/server/v3
  (cd "$mod" && go build -trimpath -o "$bin/etcd.tmp" go.etcd.io/etcd/server/v3)
  mv "$bin/etcd.tmp" "$bin/etcd"
}

build_cnitool() {
  log "compiling cnitool $CNI_VERSION"
  GOBIN="$work/gobin" go install "github.com/containernetworking/cni/cnitool@$CNI_VERSION"
  mv "$work/gobin/cnitool" "$bin/cnitool"
}

if [ "$set_name" = light ]; then
  [ -x "$bin/cnitool" ] || build_cnitool
  [ -x "$bin/etcd" ] || build_etcd
  { [ -x "$bin/kube-apiserver" ] && [ -x "$bin/kubectl" ]; } || build_kubernetes kube-apiserver kubectl
else
  { [ -x "$bin/containerd" ] && [ -x "$bin/containerd-shim-runc-v2" ] && [ -x "$bin/ctr" ]; } || build_containerd
  build_kubernetes kube-controller-manager kube-scheduler kubelet
fi

log "built in $((SECONDS - started)) s, cached in $bin"
echo "$bin"
