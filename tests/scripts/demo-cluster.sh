#!/usr/bin/env bash
# `make demo` (cluster mode): podroute deployed the way users deploy it.
#
#   1. a 3-node lab in cluster mode (kubelet + containerd per node, kube-controller-manager's
#      node IPAM, kube-scheduler, BIRD as top of rack), or the one already up;
#   2. `kubectl apply -k tests/manifests/cluster` (manifests/ with the lab's offline image);
#      waits until the DaemonSet's pod is Running and Ready on every node;
#   3. a Deployment of 6 busybox pods spread over the nodes, created by the kubelets through
#      containerd's CRI and the podroute CNI plugin;
#   4. the ping matrix between the pods with `kubectl exec`, each node's podroute routes, the
#      router's view (peered through a BGPPeer: every node's pod CIDR via its node IP) and a
#      ping from the router's namespace to a pod on every node.
#
#   tests/scripts/demo-cluster.sh [LAB]      default lab name: demo
#
# Exits non-zero when the DaemonSet or the pods do not become ready or a pod cannot reach
# another. Running it again reuses the lab and what was deployed.
set -euo pipefail
lab=${1:-demo}
cd "$(dirname "$0")/../.."
cli=${PODROUTE_BIN_DIR:-target/debug}/podroute-lab
replicas=6
lab_dir=${PODROUTE_LAB_DIR:-/tmp/podroute-lab}/$lab
. tests/scripts/demo-lib.sh

if [ -t 1 ]; then bold=$'\033[1m' plain=$'\033[0m'; else bold='' plain=''; fi
say() { printf '\n%s== %s%s\n' "$bold" "$*" "$plain"; }
die() { echo "demo: $*" >&2; exit 1; }
k() { "$cli" kubectl --name "$lab" -- "$@"; }

[ "$(id -u)" = 0 ] || die "needs root (network namespaces); run: sudo make demo"
[ -x "$cli" ] || die "$cli is not built; run: cargo build --workspace --bins"

say "Lab $lab in cluster mode: 3 nodes with kubelet + containerd, BIRD router"
if "$cli" status --name "$lab" >/dev/null 2>&1; then
  echo "lab $lab is already up: reusing it"
else
  "$cli" up --cluster --nodes 3 --tor bird --name "$lab"
fi
k get nodes -o custom-columns='NODE:.metadata.name,INTERNAL-IP:.status.addresses[0].address,POD-CIDRS (node IPAM):.spec.podCIDRs,RUNTIME:.status.nodeInfo.containerRuntimeVersion,KUBELET:.status.nodeInfo.kubeletVersion'

say "kubectl apply -k tests/manifests/cluster (manifests/ + the lab's image)"
k apply -k tests/manifests/cluster
k -n kube-system rollout status daemonset/podroute --timeout=240s || die "the DaemonSet did not become ready"
k -n kube-system get pods -l app.kubernetes.io/name=podroute -o wide

say "BGPPeer for the BIRD router (podroute.io/v1alpha1)"
peer_with_router "$lab"

say "A Deployment of $replicas busybox pods, spread over the nodes by kube-scheduler"
k apply -f - <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: { name: pinger, namespace: default }
spec:
  replicas: $replicas
  selector: { matchLabels: { app: pinger } }
  template:
    metadata: { labels: { app: pinger } }
    spec:
      terminationGracePeriodSeconds: 1
      topologySpreadConstraints:
        - { maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule,
            labelSelector: { matchLabels: { app: pinger } } }
      containers:
        - { name: busybox, image: localhost/podroute-lab/busybox:lab, imagePullPolicy: Never,
            command: [/bin/sleep, "3600"] }
YAML
k -n default rollout status deployment/pinger --timeout=180s || die "the pods did not become ready"
k -n default get pods -l app=pinger -o wide

say "Ping matrix with kubectl exec (row pings column)"
mapfile -t rows < <(k -n default get pods -l app=pinger --sort-by=.spec.nodeName \
  -o jsonpath='{range .items[*]}{.metadata.name} {.spec.nodeName} {.status.podIP}{"\n"}{end}')
names=() ips=() router_targets=() seen_nodes=" "
for r in "${rows[@]}"; do
  read -r n node ip <<<"$r"
  names+=("$n") ips+=("$ip")
  printf '%s  %-6s %s\n' "${n: -5}" "$node" "$ip"
  # The router pings the first pod of each node.
  case $seen_nodes in *" $node "*) ;; *) router_targets+=("$n" "$ip") seen_nodes+="$node " ;; esac
done
printf '%-7s' ""; for n in "${names[@]}"; do printf '%-7s' "${n: -5}"; done; echo
failed=0
for i in "${!names[@]}"; do
  printf '%-7s' "${names[i]: -5}"
  for j in "${!names[@]}"; do
    if [ "$i" = "$j" ]; then mark="·"
    elif k -n default exec "${names[i]}" -- ping -c 1 -W 2 "${ips[j]}" >/dev/null 2>&1; then mark="✓"
    else mark="✗" failed=$((failed + 1)); fi
    printf '%s      ' "$mark"
  done
  echo
done
pairs=$(( ${#names[@]} * (${#names[@]} - 1) ))
[ $failed = 0 ] && echo "all $pairs pod pairs reach each other" || echo "$failed of $pairs pod pairs cannot reach each other"

say "podroute's routes on each node (ip route show proto 80)"
for node in node1 node2 node3; do
  echo "$node:"; "$cli" exec --name "$lab" "$node" -- ip route show proto 80 | sed 's/^/  /'
done

say "The router's view (BIRD in the fabric namespace, peered through BGPPeer tor)"
router_view "$lab" "$lab_dir" 3 60
say "Ping from the router's namespace to a pod on every node"
router_missed=0
ping_from_router "$lab" "${router_targets[@]}" || router_missed=$?
failed=$((failed + router_missed))

say "Look around"
cat <<TXT
  $cli kubectl --name $lab -- -n kube-system logs ds/podroute
  $cli kubectl --name $lab -- -n kube-system exec ds/podroute -- podroute-agent status
  ip netns exec $lab-fabric birdc -s $lab_dir/router/bird.ctl show route
  $cli kubectl --name $lab -- get pods -A -o wide
  $cli exec --name $lab node1 -- ip route
  kubelet/containerd logs: $lab_dir/logs/node<N>-{kubelet,containerd}.log

Tear it all down: make lab-down$([ "$lab" = demo ] || echo " LAB=$lab")
TXT
[ $failed = 0 ]
