#!/usr/bin/env bash
# `make demo`: brings up a 3-node lab with a BIRD router (or shows it if it is up) and shows
# what is there. `make lab-down` (podroute-lab down --name LAB) removes it.
#
#   tests/scripts/demo.sh [LAB]      default lab name: demo
set -euo pipefail
lab=${1:-demo}
cd "$(dirname "$0")/../.."
cli=${PODROUTE_LAB_BIN:-target/debug/podroute-lab}
[ -x "$cli" ] || { echo "demo: $cli not built; run: cargo build -p podroute-lab" >&2; exit 1; }

if "$cli" status --name "$lab" >/dev/null 2>&1; then
  echo "demo: lab $lab is already up"
  "$cli" status --name "$lab"
else
  "$cli" up --nodes 3 --tor bird --name "$lab"
fi

echo
echo "demo: node1 reaches node2 over the fabric:"
"$cli" exec --name "$lab" node1 -- ping -c 1 -W 1 198.18.0.2 | sed -n '2p'
echo
echo "demo: the router's sessions stay in Active until podroute agents run on the nodes."
echo "demo: tear it down with: make lab-down LAB=$lab"
