#!/usr/bin/env bash
# Builds what podroute ships: podroute-agent and podroute (the CNI plugin), release, glibc
# linked statically (crt-static), the way the Dockerfile's build stage does: the agent as a
# static PIE (it lives long and parses what peers send, so it keeps ASLR), the CNI plugin as
# a plain static executable (-C relocation-model=static: no start-up relocations; it runs
# twice per pod and for a few milliseconds, like the containernetworking plugins, which are
# static non-PIE Go executables). A separate target triple keeps them apart from the workspace's ordinary
# (dynamic) builds. Prints the directory that holds them.
#
#   tests/scripts/static-bins.sh      -> target/x86_64-unknown-linux-gnu/release
#
# The lab images (lab-images.sh) and the CNI benchmarks (make bench) use these binaries, so a
# benchmark measures the plugin a node runs: a dynamic PIE starts about 0.3 ms slower
# (ld.so loading libc and resolving symbols), twice for every pod.
set -euo pipefail
cd "$(dirname "$0")/../.."
triple=x86_64-unknown-linux-gnu
export RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static"
cargo build -q --release --target "$triple" -p podroute-agent --bins
cargo rustc -q --release --target "$triple" -p podroute-cni --bin podroute -- -C relocation-model=static
rel=target/$triple/release
# ldd exits 1 on a static executable: read what it says instead.
for b in podroute-agent podroute; do
  out=$(ldd "$rel/$b" 2>&1 || true)
  grep -Eq 'not a dynamic|statically linked' <<<"$out" ||
    { echo "static-bins: error: $rel/$b is not static" >&2; exit 1; }
done
echo "$rel"
