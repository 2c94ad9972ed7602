#!/usr/bin/env bash
# Adds up cargo's "test result:" lines from the given logs and prints one closing line,
# "tests: N passed, N failed", so a reader of a long `make test` sees the total at the end.
set -euo pipefail
awk '
  /^test result:/ {
    for (i = 1; i <= NF; i++) {
      if ($(i) ~ /^passed;?$/) passed += $(i - 1)
      if ($(i) ~ /^failed;?$/) failed += $(i - 1)
    }
  }
  END { printf "tests: %d passed, %d failed\n", passed, failed; exit (failed > 0) }
' "$@"
