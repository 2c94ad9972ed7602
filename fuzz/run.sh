#!/bin/sh
# Builds and runs fuzz targets for SECONDS each (default 10), starting from the committed
# seeds (golden bytes from BIRD, GoBGP and FRR) and corpus. Uses the stable toolchain with
# RUSTC_BOOTSTRAP=1 (cargo-fuzz needs nightly flags). Fails if any target finds a crash.
#
#   fuzz/run.sh SECONDS [keep] [TARGET...]
#
# "keep" (make fuzz): new inputs go into the committed corpus. Otherwise (make test's short
# run) they go to a scratch directory, so a test run leaves the checkout as it was.
# Environment:
#   FUZZ_SANITIZER  cargo-fuzz's sanitizer (default: address). The campaign uses "none": the
#                   fuzzed crates have no unsafe code, and without ASan a target runs 15-40x
#                   faster; run.sh then replays the whole corpus once under ASan.
#   FUZZ_RUNS       stop a target after this many executions (default: no limit)
set -eu
SECONDS_EACH="${1:-10}"
[ $# -ge 1 ] && shift
KEEP=""
if [ "${1:-}" = keep ]; then KEEP=keep; shift; fi
SANITIZER="${FUZZ_SANITIZER:-address}"
RUNS="${FUZZ_RUNS:--1}"
cd "$(dirname "$0")"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
# Build into the repository's shared target directory, one subdirectory per sanitizer.
ASAN_DIR="${CARGO_TARGET_DIR:-$(pwd)/../target}/fuzz"
TARGET_DIR="$ASAN_DIR"
[ "$SANITIZER" = address ] || TARGET_DIR="$ASAN_DIR-$SANITIZER"
SCRATCH="$(mktemp -d)"
trap 'rm -rf "$SCRATCH"' EXIT
targets="$*"
[ -n "$targets" ] || targets="$(cargo fuzz list)"
for target in $targets; do
    mkdir -p "corpus/$target"
    # libFuzzer writes new inputs into the first directory and reads all of them.
    if [ "$KEEP" = keep ]; then dirs="corpus/$target"; else mkdir -p "$SCRATCH/$target"; dirs="$SCRATCH/$target corpus/$target"; fi
    echo "== fuzz $target for ${SECONDS_EACH}s (sanitizer $SANITIZER, runs $RUNS)"
    # shellcheck disable=SC2086 # $dirs is one or two directory names without spaces
    cargo fuzz run -s "$SANITIZER" --target-dir "$TARGET_DIR" "$target" $dirs "seeds/$target" -- \
        -max_total_time="$SECONDS_EACH" -runs="$RUNS" -rss_limit_mb=2048 -max_len=70000 \
        -print_final_stats=1
    if [ "$SANITIZER" != address ]; then
        echo "== replay corpus/$target under ASan"
        # shellcheck disable=SC2086 # as above
        cargo fuzz run --target-dir "$ASAN_DIR" "$target" \
            $dirs "seeds/$target" -- -runs=0 -rss_limit_mb=2048 -max_len=70000
    fi
done
