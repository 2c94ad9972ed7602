#!/usr/bin/env bash
# Builds the lab's container images without any registry, with buildah, from `scratch`:
#
#   podroute      localhost/podroute/podroute:<tag>  the workspace's podroute-agent and podroute
#                 (CNI plugin), linked statically against glibc (crt-static), in /usr/local/bin:
#                 the same content as the Dockerfile's final stage
#   pause         localhost/podroute-lab/pause:lab   busybox-static sleeping: the pod sandbox
#   busybox       localhost/podroute-lab/busybox:lab busybox-static with its applets: test pods
#
#   tests/scripts/lab-images.sh OUT_DIR [TAG]     writes OUT_DIR/<image>.tar (docker-archive)
#                                                 and prints OUT_DIR
#
# buildah keeps its storage under OUT_DIR/.buildah, and runs in a private mount namespace whose
# /etc and /var are overlays with their upper layers there too, so what it would write to the
# host (/etc/cni/net.d, the blob cache in /var/lib/containers) stays out of it. The archives are remade only when their input
# changed. `ctr images import` loads them into a
# node's containerd.
set -euo pipefail
out=${1:?usage: lab-images.sh OUT_DIR [TAG]}
tag=${2:-lab}
cd "$(dirname "$0")/../.."
log() { printf 'lab-images: %s\n' "$*" >&2; }
command -v buildah >/dev/null || { log "error: buildah is missing: apt-get install buildah"; exit 1; }
# ldd exits 1 on a static executable: read what it says instead.
is_static() { local out; out=$(ldd "$1" 2>&1 || true); grep -Eq 'not a dynamic|statically linked' <<<"$out"; }
[ -x /bin/busybox ] && busybox=/bin/busybox || busybox=$(command -v busybox || true)
[ -n "$busybox" ] && is_static "$busybox" ||
  { log "error: a static busybox is needed: apt-get install busybox-static"; exit 1; }

mkdir -p "$out"
exec 9>"$out/.lock"
flock 9
store=(--root "$out/.buildah/root" --runroot "$out/.buildah/run" --storage-driver vfs)
mkdir -p "$out"/.buildah/{etc,var}/{upper,work}
buildah() {
  unshare --mount --propagation slave -- sh -c '
    for d in etc var; do
      mount -t overlay overlay -o "lowerdir=/$d,upperdir=$1/$d/upper,workdir=$1/$d/work" "/$d" || exit 1
    done
    shift && exec buildah "$@"
  ' sh "$out/.buildah" "$@"
}

# The podroute binaries: what the Dockerfile ships (static-bins.sh).
log "building static podroute-agent and podroute (release, crt-static)"
rel=$(tests/scripts/static-bins.sh)

# build NAME REF INPUT_HASH ENTRYPOINT_JSON ROOTFS: one scratch image from a directory tree.
build() {
  local name=$1 ref=$2 hash=$3 entrypoint=$4 rootfs=$5
  local archive="$out/$name.tar" stamp="$out/$name.input"
  if [ -f "$archive" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$hash $ref" ]; then
    log "$ref is up to date ($archive)"
    return
  fi
  local c
  c=$(buildah "${store[@]}" from --quiet scratch)
  buildah "${store[@]}" copy --quiet "$c" "$rootfs" / >/dev/null
  buildah "${store[@]}" config --entrypoint "$entrypoint" --cmd '' \
    --label org.opencontainers.image.source=podroute --os linux --arch amd64 "$c"
  rm -f "$archive.tmp"
  buildah "${store[@]}" commit --quiet --rm "$c" "docker-archive:$archive.tmp:$ref" >/dev/null
  mv "$archive.tmp" "$archive"
  echo "$hash $ref" >"$stamp"
  log "built $ref ($(du -h "$archive" | cut -f1))"
}

work=$(mktemp -d "${TMPDIR:-/tmp}/podroute-images.XXXXXX")
trap 'rm -rf "$work"' EXIT

# podroute: exactly what the Dockerfile's final stage holds.
mkdir -p "$work/podroute/usr/local/bin"
install -m 0755 "$rel/podroute-agent" "$rel/podroute" "$work/podroute/usr/local/bin/"
# Debug line tables stay in target/; the image gets the binaries without them.
strip "$work/podroute/usr/local/bin/"*
hash=$(cat "$work/podroute/usr/local/bin/"* | sha256sum | cut -d' ' -f1)
build podroute "localhost/podroute/podroute:$tag" "$hash" '["/usr/local/bin/podroute-agent"]' "$work/podroute"

# busybox and pause: the static busybox and its applet links.
mkdir -p "$work/busybox/bin"
cp "$busybox" "$work/busybox/bin/busybox"
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$work/busybox/bin/$applet"
done
hash=$(sha256sum "$busybox" | cut -d' ' -f1)
build busybox localhost/podroute-lab/busybox:lab "$hash" '["/bin/sh"]' "$work/busybox"
# The sandbox only holds the pod's namespaces; containerd stops it with SIGKILL.
build pause localhost/podroute-lab/pause:lab "$hash" '["/bin/sleep","2147483647"]' "$work/busybox"
echo "$out"
