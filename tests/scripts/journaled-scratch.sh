#!/usr/bin/env bash
# Runs a command with BENCH_CNI_DATA_DIR on a fresh ext4 filesystem with a journal (the mkfs
# default, what a node's disk has), made in a file under target/ and loop-mounted for the run;
# unmounted and removed afterwards, also when the command fails or is interrupted.
#
#   tests/scripts/journaled-scratch.sh target/release/podroute-bench cni-churn
#
# Why: the CNI churn benchmark creates and deletes IPAM files for every pod. This machine's
# root filesystem is ext4 without a journal, where finding a free inode skips every inode freed
# in the last minute, so under churn the file work outweighs the netlink work and the result
# says more about the disk than about the plugins (BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -gt 0 ] || { echo "usage: $0 COMMAND [ARGS...]" >&2; exit 2; }
mkdir -p target
image=$(mktemp target/scratch-ext4.XXXXXX)
mnt=$(mktemp -d /tmp/podroute-scratch.XXXXXX)
cleanup() {
  mountpoint -q "$mnt" && umount "$mnt"
  rmdir "$mnt"
  rm -f "$image"
}
trap cleanup EXIT
truncate -s 1G "$image"
mkfs.ext4 -q -F "$image"
mount -o loop "$image" "$mnt"
BENCH_CNI_DATA_DIR="$mnt" "$@"
