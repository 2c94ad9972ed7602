#!/bin/sh
# Builds and runs every fuzz target for SECONDS each (default 10), starting from the
# committed seeds (golden bytes from BIRD, GoBGP and FRR). Uses the stable toolchain with
# RUSTC_BOOTSTRAP=1 (cargo-fuzz needs nightly flags). Fails if any target finds a crash.
set -eu
SECONDS_EACH="${1:-10}"
# "keep" (make fuzz): new inputs go into the committed corpus. Otherwise (make test's short
# run) they go to a scratch directory, so a test run leaves the checkout as it was.
KEEP="${2:-}"
cd "$(dirname "$0")"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
# Build into the repository's shared target directory, in a subdirectory of its own.
TARGET_DIR="${CARGO_TARGET_DIR:-$(pwd)/../target}/fuzz"
SCRATCH="$(mktemp -d)"
trap 'rm -rf "$SCRATCH"' EXIT
for target in $(cargo fuzz list); do
    mkdir -p "corpus/$target"
    # libFuzzer writes new inputs into the first directory and reads all of them.
    if [ "$KEEP" = keep ]; then dirs="corpus/$target"; else mkdir -p "$SCRATCH/$target"; dirs="$SCRATCH/$target corpus/$target"; fi
    echo "== fuzz $target for ${SECONDS_EACH}s"
    # shellcheck disable=SC2086 # $dirs is one or two directory names without spaces
    cargo fuzz run --target-dir "$TARGET_DIR" "$target" $dirs "seeds/$target" -- \
        -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -max_len=70000 -print_final_stats=1
done
