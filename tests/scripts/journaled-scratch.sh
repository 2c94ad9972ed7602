#!/usr/bin/env bash
# Runs a command with BENCH_CNI_DATA_DIR on a fresh ext4 filesystem with a journal (the mkfs
# default, as on a node's disk), made in a file under target/ and loop-mounted for the run;
# unmounted and removed afterwards, also when the command fails or the script is stopped.
# With BENCH_CNI_DATA_DIR already set, the command runs as it is, on that directory.
#
#   tests/scripts/journaled-scratch.sh target/release/podroute-bench cni-churn
#
# Why: the CNI churn benchmark creates and deletes IPAM files for every pod. This machine's
# root filesystem is ext4 without a journal, where finding a free inode skips every inode freed
# in the last minute, so under churn the file work outweighs the netlink work and the result
# says more about the disk than about the plugins (BENCHMARKS.md). The image's own writes still
# land on the host's disk, so this is like a node's disk, not the same.
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: $0 COMMAND [ARGS...]" >&2; exit 2; }
if [ -n "${BENCH_CNI_DATA_DIR:-}" ]; then exec "$@"; fi
top=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$top/target"
image="" mnt="" child=""
cleanup() {
  set +e
  trap '' INT TERM # a second signal must not cut the cleanup short
  [ -n "$child" ] && kill -TERM "$child" 2>/dev/null && wait "$child"
  if [ -n "$mnt" ]; then
    mountpoint -q "$mnt" && { umount "$mnt" || umount -l "$mnt"; }
    rmdir "$mnt"
  fi
  [ -n "$image" ] && rm -f "$image"
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
image=$(mktemp "$top/target/scratch-ext4.XXXXXX")
mnt=$(mktemp -d /tmp/podroute-scratch.XXXXXX)
truncate -s 1G "$image"
# Inode tables and journal written now, not by a background thread during the run.
mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$image"
mount -o loop "$image" "$mnt"
BENCH_CNI_DATA_DIR="$mnt" "$@" &
child=$!
status=0
wait "$child" || status=$?
child=""
exit "$status"
