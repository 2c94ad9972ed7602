#!/usr/bin/env bash
# `make demo`: podroute end to end on one host.
#
#   1. a 3-node lab (network namespaces, a real kube-apiserver, a BIRD top-of-rack router),
#      brought up, or reused if it is already up; podroute's CRDs and a BGPPeer for the router;
#   2. one podroute-agent per node, in the background inside the node's namespace;
#   3. once every node is ready (the agent wrote its CNI conflist), two pods per node made
#      through the podroute CNI plugin with cnitool, the way a container runtime makes them;
#   4. the ping matrix between all pods, each node's podroute routes and the router's view
#      (peered through a BGPPeer: every node's pod CIDR via its node IP), a ping from the
#      router's namespace to a pod on every node, then how to look around and how to tear it all down (`make lab-down`).
#
#   tests/scripts/demo.sh [LAB]      default lab name: demo
#
# Exits non-zero when a node does not become ready or any pod cannot reach another.
# Running it again reuses the lab, the agents and the pods.
set -euo pipefail
lab=${1:-demo}
cd "$(dirname "$0")/../.."
bin=${PODROUTE_BIN_DIR:-target/debug}
cli=$bin/podroute-lab
agent=$bin/podroute-agent
plugin=$bin/podroute
nodes=(node1 node2 node3)
pod_suffixes=(a b)
ready_timeout=60
lab_dir=${PODROUTE_LAB_DIR:-/tmp/podroute-lab}/$lab

if [ -t 1 ]; then bold=$'\033[1m' plain=$'\033[0m'; else bold='' plain=''; fi
say() { printf '\n%s== %s%s\n' "$bold" "$*" "$plain"; }
die() { echo "demo: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (network namespaces); run: sudo make demo"
for b in "$cli" "$agent" "$plugin"; do
  [ -x "$b" ] || die "$b is not built; run: cargo build --workspace --bins"
done
shown_cli=$cli
bin=$(cd "$bin" && pwd)
cli=$bin/podroute-lab agent=$bin/podroute-agent
. tests/scripts/demo-lib.sh
cp_bin=$(tests/scripts/control-plane.sh) || die "control plane binaries are not available"
cnitool=$cp_bin/cnitool
[ -x "$cnitool" ] || die "$cnitool is missing; run tests/scripts/control-plane.sh"

# --- 1. the lab ---------------------------------------------------------------------------
say "Lab $lab: 3 nodes, kube-apiserver, BIRD router"
if "$cli" status --name "$lab" >/dev/null 2>&1; then
  echo "lab $lab is already up: reusing it"
else
  "$cli" up --nodes ${#nodes[@]} --tor bird --name "$lab"
fi
mkdir -p "$lab_dir/logs" "$lab_dir/pids" "$lab_dir/pods"

say "BGPPeer for the BIRD router (podroute.io/v1alpha1)"
"$cli" kubectl --name "$lab" -- apply -f manifests/crds.yaml >/dev/null
peer_with_router "$lab"

# --- 2. agents ----------------------------------------------------------------------------
say "podroute-agent on every node"
for node in "${nodes[@]}"; do
  ns=$lab-$node
  pid_file=$lab_dir/pids/$node-agent.pid
  log=$lab_dir/logs/$node-agent.log
  if [ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
    echo "$node: agent already running (pid $(cat "$pid_file"))"
    continue
  fi
  mkdir -p "$lab_dir/$node"
  # setsid: the agent outlives this script; `podroute-lab down` stops every process in the
  # lab's namespaces.
  ip netns exec "$ns" setsid "$agent" \
    --kubeconfig "$lab_dir/kubeconfig" \
    --node-name "$node" \
    --cni-conflist "$lab_dir/$node/10-podroute.conflist" \
    --cni-data-dir "$lab_dir/$node/cni" \
    --cni-readiness-file "$lab_dir/$node/cni-ready" \
    </dev/null >"$log" 2>&1 &
  echo $! >"$pid_file"
  echo "$node: agent started (pid $!), log $log"
done

# The agent writes the node's conflist once its routes are programmed: that is "ready".
deadline=$((SECONDS + ready_timeout))
for node in "${nodes[@]}"; do
  until [ -f "$lab_dir/$node/10-podroute.conflist" ]; do
    if [ $SECONDS -ge $deadline ]; then
      echo "demo: $node is not ready after ${ready_timeout}s; last lines of its agent log:" >&2
      tail -n 20 "$lab_dir/logs/$node-agent.log" >&2 || true
      exit 1
    fi
    sleep 0.2
  done
  echo "$node: ready ($lab_dir/$node/10-podroute.conflist)"
done

# --- 3. pods through the CNI plugin --------------------------------------------------------
say "Two pods per node, made by the podroute CNI plugin (cnitool add)"
pods=() pod_ips=()
for node in "${nodes[@]}"; do
  for s in "${pod_suffixes[@]}"; do
    pod=$node-$s
    pod_ns=$lab-pod-$pod
    result=$lab_dir/pods/$pod.json
    if ! { ip netns list | grep -qx "$pod_ns\( .*\)\?" && [ -s "$result" ]; }; then
      ip netns add "$pod_ns" 2>/dev/null || true
      # cnitool keeps its result cache in /var/lib/cni (libcni's default; cnitool has no
      # option for it): an overlay on /var/lib in a private mount namespace puts it in the lab
      # directory, which `down` removes, instead of on the host.
      mkdir -p "$lab_dir/cnitool/upper" "$lab_dir/cnitool/work"
      ip netns exec "$lab-$node" unshare --mount --propagation private -- sh -c '
        mount -t overlay podroute-lab-cnitool -o "lowerdir=/var/lib,upperdir=$1/upper,workdir=$1/work" /var/lib &&
        shift && exec "$@"' sh "$lab_dir/cnitool" env CNI_PATH="$bin:/usr/lib/cni" \
        NETCONFPATH="$lab_dir/$node" "$cnitool" add podroute "/run/netns/$pod_ns" >"$result.tmp" \
        || { cat "$result.tmp" >&2; die "cnitool add failed for $pod on $node"; }
      mv "$result.tmp" "$result"
    fi
    ip=$(jq -r '[.ips[].address | select(contains("."))][0] | split("/")[0]' "$result")
    veth=$(jq -r '[.interfaces[] | select(has("sandbox") | not) | .name][0]' "$result")
    pods+=("$pod") pod_ips+=("$ip")
    printf '%-8s on %s  %-12s host veth %s\n' "$pod" "$node" "$ip" "$veth"
  done
done

# --- 4. what it looks like -----------------------------------------------------------------
say "Ping matrix (row pings column)"
printf '%-10s' ""
for to in "${pods[@]}"; do printf '%-9s' "$to"; done
echo
failed=0
for i in "${!pods[@]}"; do
  printf '%-10s' "${pods[i]}"
  for j in "${!pods[@]}"; do
    if [ "$i" = "$j" ]; then
      mark="·"
    elif ip netns exec "$lab-pod-${pods[i]}" ping -n -q -c 1 -W 1 "${pod_ips[j]}" >/dev/null 2>&1 ||
      ip netns exec "$lab-pod-${pods[i]}" ping -n -q -c 1 -W 1 "${pod_ips[j]}" >/dev/null 2>&1; then
      mark="✓"
    else
      mark="✗" failed=$((failed + 1))
    fi
    # The marks are multi-byte: pad by hand, printf's widths count bytes.
    printf '%s        ' "$mark"
  done
  echo
done
pairs=$(( ${#pods[@]} * (${#pods[@]} - 1) ))
if [ $failed = 0 ]; then
  echo "all $pairs pod pairs reach each other"
else
  echo "$failed of $pairs pod pairs cannot reach each other"
fi

say "podroute's routes on each node (ip route show proto 80)"
for node in "${nodes[@]}"; do
  echo "$node:"
  ip netns exec "$lab-$node" ip route show proto 80 | sed 's/^/  /'
done

say "The router's view (BIRD in the fabric namespace, peered through BGPPeer tor)"
router_view "$lab" "$lab_dir" ${#nodes[@]} "$ready_timeout"
router_targets=()
for i in "${!pods[@]}"; do
  case ${pods[i]} in *-a) router_targets+=("${pods[i]}" "${pod_ips[i]}") ;; esac
done
say "Ping from the router's namespace to a pod on every node"
router_missed=0
ping_from_router "$lab" "${router_targets[@]}" || router_missed=$?
[ $router_missed = 0 ] || failed=$((failed + router_missed))

say "Look around"
cat <<EOF
  $shown_cli exec --name $lab node1 -- ip route
  $shown_cli exec --name $lab node1-a -- ip addr show eth0
  $shown_cli kubectl --name $lab -- get nodes -o wide
  $shown_cli exec --name $lab node1 -- ${shown_cli%podroute-lab}podroute-agent status
  ip netns exec $lab-fabric birdc -s $lab_dir/router/bird.ctl show route
  agent logs:    $lab_dir/logs/node<N>-agent.log
  CNI conflists: $lab_dir/node<N>/10-podroute.conflist

Tear it all down (agents, pods, lab): make lab-down$([ "$lab" = demo ] || echo " LAB=$lab")
EOF
[ $failed = 0 ] || exit 1
