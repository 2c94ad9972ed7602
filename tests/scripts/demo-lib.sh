# What both `make demo` modes share (sourced by demo.sh and demo-cluster.sh, which set `cli`,
# the podroute-lab binary): the BGPPeer for the lab's BIRD router, the router's view and the
# pings from the router's namespace.

# The router is peered the Kubernetes way: one BGPPeer for it (every node, iBGP in the lab's
# AS 64512). podroute's CRDs must be installed (the light demo applies manifests/crds.yaml,
# the cluster demo `kubectl apply -k`).
peer_with_router() {
  local lab=$1
  "$cli" kubectl --name "$lab" -- wait --for=condition=Established --timeout=60s \
    crd/bgppeers.podroute.io crd/bgpconfigurations.podroute.io >/dev/null
  "$cli" kubectl --name "$lab" -- apply -f - <<'YAML'
apiVersion: podroute.io/v1alpha1
kind: BGPPeer
metadata:
  name: tor
spec:
  peerAddress: 198.18.0.254
  peerASNumber: 64512
YAML
}

# BIRD's sessions and routes once it has a route via a node for each of NODES nodes (or after
# TIMEOUT seconds): router_view LAB LAB_DIR NODES TIMEOUT.
router_view() {
  local lab=$1 lab_dir=$2 nodes=$3 timeout=$4 routes deadline
  local -a birdc=(ip netns exec "$lab-fabric" birdc -s "$lab_dir/router/bird.ctl")
  deadline=$((SECONDS + timeout))
  until routes=$("${birdc[@]}" show route 2>&1) &&
    [ "$(grep -c 'via 198.18.0' <<<"$routes")" -ge "$nodes" ]; do
    [ $SECONDS -ge $deadline ] && break
    sleep 0.5
  done
  "${birdc[@]}" show protocols 2>&1 | sed 's/^/  /' || true
  sed 's/^/  /' <<<"$routes"
}

# Pings one pod per node from the router's namespace (a host outside the cluster): it reaches
# them through the routes BIRD learned from the agents. ping_from_router LAB NAME IP [NAME IP
# ...]. Prints a line per pod; returns the number of pods it could not reach.
ping_from_router() {
  local lab=$1 missed=0 i
  shift
  local -a names=() ips=()
  while [ $# -gt 0 ]; do names+=("$1") ips+=("$2"); shift 2; done
  for i in "${!names[@]}"; do
    if ip netns exec "$lab-fabric" ping -n -q -c 1 -W 1 "${ips[i]}" >/dev/null 2>&1 ||
      ip netns exec "$lab-fabric" ping -n -q -c 1 -W 1 "${ips[i]}" >/dev/null 2>&1; then
      echo "  router -> ${names[i]} (${ips[i]}) ✓"
    else
      echo "  router -> ${names[i]} (${ips[i]}) ✗"
      missed=$((missed + 1))
    fi
  done
  return $missed
}
