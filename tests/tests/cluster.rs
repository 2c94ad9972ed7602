//! Cluster mode end to end: kubelet and containerd on every node, pod CIDRs from
//! kube-controller-manager, podroute deployed as its DaemonSet with `kubectl apply -k`, and
//! pods scheduled by kube-scheduler reaching each other across nodes; a rolling update of the
//! DaemonSet under 10-ms probes; a pod's CNI DEL through containerd; the documented uninstall.

mod common;

use std::collections::BTreeSet;
use std::error::Error;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{TestResult, assert_gone, unique, wait_until};
use podroute_lab::{Lab, LabConfig};
use serde_json::{Value, json};

type Res<T> = Result<T, Box<dyn Error>>;

/// The agent pods' label selector.
const AGENTS: &str = "app.kubernetes.io/name=podroute";
/// The lab's podroute image and the tag a rolling update moves to.
const IMAGE: &str = "localhost/podroute/podroute:lab";
const NEXT_IMAGE: &str = "localhost/podroute/podroute:next";
const BUSYBOX: &str = "localhost/podroute-lab/busybox:lab";
/// Where the plugin's IPAM store keeps one file per address handed out (the conflist's
/// default `dataDir` and name).
const IPAM_DIR: &str = "/var/lib/cni/networks/podroute";

/// A cluster-mode lab with podroute deployed from the manifests and its DaemonSet Ready.
fn cluster_with_podroute(cfg: &LabConfig) -> Res<Lab> {
    let lab = Lab::up(cfg)?;
    lab.deploy_podroute()?;
    rollout(&lab, "kube-system", "daemonset/podroute")?;
    Ok(lab)
}

fn rollout(lab: &Lab, ns: &str, what: &str) -> Res<()> {
    lab.kubectl(&["-n", ns, "rollout", "status", what, "--timeout=300s"])?;
    Ok(())
}

/// `kubectl apply -f` of `v`, written to the lab directory as `<file>.json`.
fn apply(lab: &Lab, file: &str, v: &Value) -> Res<()> {
    let path = lab.dir().join(format!("{file}.json"));
    std::fs::write(&path, v.to_string())?;
    lab.kubectl(&["apply".as_ref(), "-f".as_ref(), path.as_os_str()])?;
    Ok(())
}

/// The busybox pod spec the tests run: sleeping, quick to stop.
fn busybox_spec() -> Value {
    json!({
        "terminationGracePeriodSeconds": 1,
        "containers": [{
            "name": "busybox",
            "image": BUSYBOX,
            "imagePullPolicy": "Never",
            "command": ["/bin/sleep", "3600"],
        }],
    })
}

/// A Deployment `name` of busybox pods, one per node (hostname topology spread, hard).
fn spread_deployment(name: &str, replicas: usize) -> Value {
    let mut spec = busybox_spec();
    spec["topologySpreadConstraints"] = json!([{
        "maxSkew": 1,
        "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": { "matchLabels": { "app": name } },
    }]);
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": name, "namespace": "default" },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "template": { "metadata": { "labels": { "app": name } }, "spec": spec },
        },
    })
}

/// A bare Pod `name` (label `app=<app>`) that kube-scheduler must put on `node`.
fn pod_on(name: &str, app: &str, node: &str) -> Value {
    let mut spec = busybox_spec();
    spec["nodeSelector"] = json!({ "kubernetes.io/hostname": node });
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name, "namespace": "default", "labels": { "app": app } },
        "spec": spec,
    })
}

/// A pod as the tests see it.
#[derive(Debug, Clone)]
struct PodSeen {
    name: String,
    uid: String,
    node: String,
    ips: Vec<String>,
}

/// The pods of `ns` matching label selector `selector`.
fn pods(lab: &Lab, ns: &str, selector: &str) -> Res<Vec<PodSeen>> {
    let v: Value = serde_json::from_str(
        &lab.kubectl(&["get", "pods", "-n", ns, "-l", selector, "-o", "json"])?,
    )?;
    let text = |x: &Value| x.as_str().unwrap_or_default().to_owned();
    Ok(v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| PodSeen {
            name: text(&p["metadata"]["name"]),
            uid: text(&p["metadata"]["uid"]),
            node: text(&p["spec"]["nodeName"]),
            ips: p["status"]["podIPs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|i| i["ip"].as_str().map(str::to_owned))
                .collect(),
        })
        .collect())
}

/// `args` run in pod `pod` of the default namespace (`kubectl exec`).
fn pod_exec(lab: &Lab, pod: &str, args: &[&str]) -> Res<std::process::Output> {
    let mut all = vec!["exec", "-n", "default", pod, "--"];
    all.extend_from_slice(args);
    Ok(lab.kubectl_output(&all)?)
}

/// Whether `pod` answers one ping from `from`.
fn pings(lab: &Lab, from: &str, ip: &str) -> Res<bool> {
    Ok(pod_exec(lab, from, &["ping", "-c", "1", "-W", "2", ip])?
        .status
        .success())
}

/// A flow of pings every 10 ms from a pod, run inside the pod (busybox `ping`) in rounds of
/// 500, each of which accounts for every probe (`-c`: it waits for the last reply), until told
/// to stop: probes are counted exactly however long the flow runs.
struct Probe {
    from: String,
    to: String,
}

impl Probe {
    fn start(lab: &Lab, from: &str, to: &str) -> Res<Self> {
        let script = format!(
            "mkdir -p /probe && cd /probe && rm -f stop done log && \
             (while [ ! -e stop ]; do ping -q -c 500 -i 0.01 -W 1 {to}; done >log 2>&1; \
             touch done) </dev/null >/dev/null 2>&1 &"
        );
        let out = pod_exec(lab, from, &["sh", "-c", &script])?;
        if !out.status.success() {
            return Err(format!(
                "probe {from} -> {to}: {}",
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        Ok(Self {
            from: from.to_owned(),
            to: to.to_owned(),
        })
    }

    /// Stops the flow after its current round and returns (sent, answered).
    fn finish(self, lab: &Lab) -> Res<(u64, u64)> {
        pod_exec(lab, &self.from, &["touch", "/probe/stop"])?;
        let done = wait_until(Duration::from_secs(30), || {
            pod_exec(lab, &self.from, &["test", "-e", "/probe/done"])
                .is_ok_and(|o| o.status.success())
        });
        let log = pod_exec(lab, &self.from, &["cat", "/probe/log"])?;
        let log = String::from_utf8_lossy(&log.stdout).into_owned();
        if !done {
            return Err(format!("probe {} -> {} did not stop: {log}", self.from, self.to).into());
        }
        Ok(ping_totals(&log))
    }
}

/// Sums busybox ping's summaries: `500 packets transmitted, 499 packets received, ...`.
fn ping_totals(log: &str) -> (u64, u64) {
    let mut totals = (0, 0);
    for line in log.lines().filter(|l| l.contains("packets transmitted")) {
        let n: Vec<u64> = line
            .split(',')
            .filter_map(|part| part.split_whitespace().next()?.parse().ok())
            .collect();
        if let [sent, got, ..] = n[..] {
            totals.0 += sent;
            totals.1 += got;
        }
    }
    totals
}

/// The agent pod on `node`.
fn agent_on(lab: &Lab, node: &str) -> Res<PodSeen> {
    pods(lab, "kube-system", AGENTS)?
        .into_iter()
        .find(|p| p.node == node)
        .ok_or_else(|| format!("no agent pod on {node}").into())
}

/// What a node holds of podroute after an uninstall (empty when nothing): files, routes of
/// protocol 80, `pr…` veths.
fn podroute_leftovers(lab: &Lab, node: &str) -> Res<Vec<String>> {
    let mut left = Vec::new();
    for f in [
        "/opt/cni/bin/podroute",
        "/etc/cni/net.d/10-podroute.conflist",
        "/run/podroute",
        "/var/lib/podroute",
        IPAM_DIR,
    ] {
        if lab.node_exec(node, &["test", "-e", f])?.status.success() {
            left.push(f.to_owned());
        }
    }
    for fam in ["-4", "-6"] {
        let out = lab.node_exec(
            node,
            &["ip", fam, "route", "show", "table", "all", "proto", "80"],
        )?;
        left.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(|l| format!("route {l}")),
        );
    }
    let links = lab.node_exec(node, &["ip", "-o", "link", "show"])?;
    left.extend(
        String::from_utf8_lossy(&links.stdout)
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .filter(|n| n.starts_with("pr"))
            .map(|n| format!("veth {n}")),
    );
    Ok(left)
}

/// Takes the lab down and checks that nothing of it is left: namespaces, processes, the
/// directory, mounts, cgroups.
fn down_and_check(lab: Lab) -> TestResult {
    let name = lab.name().to_owned();
    let report = lab.down()?;
    assert!(
        report.cgroups > 0,
        "the kubelets' cgroups were removed: {report:?}"
    );
    assert_gone(&name);
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")?;
    assert!(
        !mounts.contains(&format!("/{name}/")),
        "mounts of {name} left behind"
    );
    for h in std::fs::read_dir("/sys/fs/cgroup")?.flatten() {
        for e in std::fs::read_dir(h.path()).into_iter().flatten().flatten() {
            let n = e.file_name();
            assert!(
                !n.to_string_lossy()
                    .starts_with(&format!("podroute-lab-{name}-")),
                "{} left behind",
                e.path().display()
            );
        }
    }
    Ok(())
}

/// The kernel settings a kubelet writes at start unless `protectKernelDefaults` is on (its
/// "kernel defaults": overcommit, panics, key quotas), and the forwarding and bridge-netfilter
/// switches a node setup often flips: read on the host, where the lab must leave them alone.
fn host_kernel_settings() -> Vec<(&'static str, String)> {
    [
        "vm/overcommit_memory",
        "vm/panic_on_oom",
        "kernel/panic",
        "kernel/panic_on_oops",
        "kernel/keys/root_maxkeys",
        "kernel/keys/root_maxbytes",
        "net/ipv4/ip_forward",
        "net/bridge/bridge-nf-call-iptables",
    ]
    .into_iter()
    .map(|key| {
        let value = std::fs::read_to_string(format!("/proc/sys/{key}"))
            .map_or_else(|e| format!("unreadable: {e}"), |v| v.trim().to_owned());
        (key, value)
    })
    .collect()
}

#[test]
#[ignore = "needs root: run by make test"]
fn daemonset_ready_on_three_nodes_and_dual_stack_pods_on_every_node_reach_each_other() -> TestResult
{
    let host_before = host_kernel_settings();
    let lab = cluster_with_podroute(
        &LabConfig::new(unique("cluster"), 3)
            .cluster(true)
            .ipv6(true),
    )?;

    // Pod CIDRs are the node IPAM's: three distinct /24s and three /64s of the cluster CIDRs.
    let cidrs: BTreeSet<String> = lab
        .node_pod_cidrs()?
        .into_iter()
        .flat_map(|(_, c)| c.into_iter().map(|c| c.to_string()))
        .collect();
    let v4 = cidrs
        .iter()
        .filter(|c| c.starts_with("10.244.") && c.ends_with("/24"))
        .count();
    let v6 = cidrs
        .iter()
        .filter(|c| c.starts_with("fd00:10:244:") && c.ends_with("/64"))
        .count();
    assert_eq!((v4, v6, cidrs.len()), (3, 3, 6), "{cidrs:?}");
    // The IPAM hands out the cluster CIDR's first /24 and /64 first; the lab's plan never does
    // (node i gets 10.244.i.0/24, i ≥ 1), so these prove who assigned them.
    assert!(
        cidrs.contains("10.244.0.0/24") && cidrs.contains("fd00:10:244::/64"),
        "pod CIDRs not from the node IPAM: {cidrs:?}"
    );

    let ds = daemonset(&lab)?;
    assert_eq!(ds["status"]["numberReady"], 3, "{}", ds["status"]);

    // The init container installed the plugin and the agent wrote the conflist on each node.
    for n in lab.nodes() {
        let out = lab.node_exec(&n.name, &["ls", "/opt/cni/bin", "/etc/cni/net.d"])?;
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("podroute") && text.contains("10-podroute.conflist"),
            "{}: {text}",
            n.name
        );
    }
    // ... and nothing of it reached the host.
    assert!(!Path::new("/etc/cni/net.d/10-podroute.conflist").exists());
    assert!(!Path::new("/opt/cni/bin/podroute").exists());

    apply(&lab, "pinger", &spread_deployment("pinger", 3))?;
    rollout(&lab, "default", "deployment/pinger")?;
    let pods = pods(&lab, "default", "app=pinger")?;
    let nodes: BTreeSet<&str> = pods.iter().map(|p| p.node.as_str()).collect();
    assert_eq!(nodes.len(), 3, "one pod per node: {pods:?}");
    assert!(
        pods.iter().all(|p| p.ips.len() == 2
            && p.ips[0].starts_with("10.244.")
            && p.ips[1].starts_with("fd00:10:244:")),
        "every pod has an IPv4 and an IPv6 address: {pods:?}"
    );

    // Every pod pings every other pod on both families (kubectl exec through the API server
    // and the kubelet).
    let mut failures = Vec::new();
    for from in &pods {
        for to in pods.iter().filter(|p| p.name != from.name) {
            for ip in &to.ips {
                if !pings(&lab, &from.name, ip)? {
                    failures.push(format!(
                        "{}@{} -> {}@{} {ip}",
                        from.name, from.node, to.name, to.node
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "unreachable: {failures:?}");

    // node1's agent pod deleted: the DaemonSet makes a new one, and the other nodes' routes to
    // node1's pods stay while it is gone.
    let node1_cidr = lab.node("node1")?.pod_cidr_v4.to_string();
    let route_on_node2 = || {
        lab.routes_to("node2", &node1_cidr)
            .map(|r| !r.is_empty())
            .unwrap_or(false)
    };
    assert!(route_on_node2(), "node2 routes {node1_cidr} before");
    let agent1 = agent_on(&lab, "node1")?;
    lab.kubectl(&[
        "-n",
        "kube-system",
        "delete",
        "pod",
        &agent1.name,
        "--wait=true",
    ])?;
    assert!(
        route_on_node2(),
        "node2 kept {node1_cidr} while node1's agent was gone"
    );
    rollout(&lab, "kube-system", "daemonset/podroute")?;
    let again = agent_on(&lab, "node1")?;
    assert_ne!(again.name, agent1.name, "a new agent pod runs on node1");
    assert!(route_on_node2(), "node2 routes {node1_cidr} after");
    let p1 = pods
        .iter()
        .find(|p| p.node == "node1")
        .ok_or("no pod on node1")?;
    let p2 = pods
        .iter()
        .find(|p| p.node == "node2")
        .ok_or("no pod on node2")?;
    for ip in &p1.ips {
        assert!(
            pings(&lab, &p2.name, ip)?,
            "{} reaches {} {ip} after node1's agent came back",
            p2.name,
            p1.name
        );
    }
    // Three kubelets and containerds ran and made pods: the host's settings are as they were.
    assert_eq!(
        host_kernel_settings(),
        host_before,
        "the cluster changed host settings"
    );
    down_and_check(lab)
}

/// One node's routes to the other nodes' pod CIDRs, polled until `stop`: every moment one was
/// missing, as `(node, cidr)`.
fn watch_routes(lab: &Lab, expect: &[(String, String)], stop: &AtomicBool) -> Vec<String> {
    let mut missing = Vec::new();
    let mut looks = 0u64;
    while !stop.load(Ordering::Relaxed) {
        for (node, cidr) in expect {
            match lab.routes_to(node, cidr) {
                Ok(r)
                    if r.iter()
                        .any(|r| r["protocol"] == "80" || r["protocol"] == 80) => {}
                other => missing.push(format!("{node}: {cidr} missing ({other:?})")),
            }
        }
        looks += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("route watch: {looks} looks at {} routes", expect.len());
    missing
}

#[test]
#[ignore = "needs root: run by make test"]
fn a_rolling_update_to_a_new_image_tag_loses_no_probe_between_nodes_and_keeps_every_route()
-> TestResult {
    let lab = cluster_with_podroute(&LabConfig::new(unique("rollout"), 3).cluster(true))?;
    apply(&lab, "pinger", &spread_deployment("pinger", 3))?;
    rollout(&lab, "default", "deployment/pinger")?;
    let mut pinger = pods(&lab, "default", "app=pinger")?;
    pinger.sort_by(|a, b| a.node.cmp(&b.node));
    let nodes: Vec<&str> = pinger.iter().map(|p| p.node.as_str()).collect();
    assert_eq!(nodes, ["node1", "node2", "node3"], "{pinger:?}");
    let before: BTreeSet<String> = pods(&lab, "kube-system", AGENTS)?
        .into_iter()
        .map(|p| p.name)
        .collect();

    // The new tag: the same image under another name in every node's containerd (there is no
    // registry to push to), so the kubelets make new containers from it.
    for n in lab.nodes() {
        lab.ctr(&n.name, &["images", "tag", IMAGE, NEXT_IMAGE])?;
    }

    // Every node's routes to the other nodes' pod CIDRs, watched through the update: polled, and
    // `ip monitor route` for any change too short for the poll.
    let mut expect = Vec::new();
    for n in lab.nodes() {
        for other in lab.nodes().iter().filter(|o| o.name != n.name) {
            expect.push((n.name.clone(), other.pod_cidr_v4.to_string()));
        }
    }
    let monitors: Vec<_> = lab
        .nodes()
        .iter()
        .map(|n| lab.spawn(&n.name, "monitor-route", "ip", &["monitor", "route"], &[]))
        .collect::<Result<_, _>>()?;
    // Probes between pods on different nodes: node1 → node2 → node3 → node1.
    let probes: Vec<Probe> = (0..3)
        .map(|i| Probe::start(&lab, &pinger[i].name, &pinger[(i + 1) % 3].ips[0]))
        .collect::<Res<_>>()?;

    let stop = AtomicBool::new(false);
    let (missing, update) = std::thread::scope(|s| {
        let watcher = s.spawn(|| watch_routes(&lab, &expect, &stop));
        std::thread::sleep(Duration::from_secs(2));
        let update = (|| -> Res<()> {
            lab.kubectl(&[
                "-n",
                "kube-system",
                "set",
                "image",
                "daemonset/podroute",
                &format!("agent={NEXT_IMAGE}"),
                &format!("install-cni={NEXT_IMAGE}"),
            ])?;
            rollout(&lab, "kube-system", "daemonset/podroute")?;
            // The last new agent's sessions settle after it is Ready.
            std::thread::sleep(Duration::from_secs(5));
            Ok(())
        })();
        stop.store(true, Ordering::Relaxed);
        (watcher.join().unwrap_or_default(), update)
    });
    let mut losses = Vec::new();
    let mut total = 0;
    for p in probes {
        let flow = format!("{} -> {}", p.from, p.to);
        let (sent, got) = p.finish(&lab)?;
        eprintln!("rolling update: {flow}: {got} of {sent} probes answered");
        total += sent;
        if sent == 0 || got != sent {
            losses.push(format!("{flow}: {got} of {sent}"));
        }
    }
    update?;

    let after = pods(&lab, "kube-system", AGENTS)?;
    assert_eq!(after.len(), 3, "{after:?}");
    assert!(
        after.iter().all(|p| !before.contains(&p.name)),
        "every agent pod was replaced: before {before:?}, after {after:?}"
    );
    let images = lab.kubectl(&[
        "-n",
        "kube-system",
        "get",
        "pods",
        "-l",
        AGENTS,
        "-o",
        "jsonpath={.items[*].spec.containers[0].image}",
    ])?;
    assert!(
        images.split_whitespace().all(|i| i == NEXT_IMAGE),
        "{images}"
    );
    // What the new agents used through their start, the sync and the probes (the numbers
    // behind the DaemonSet's requests and limits), against its memory limit.
    let limit = memory_limit(&lab)?;
    for p in &after {
        let u = agent_usage(&lab, p)?;
        eprintln!(
            "agent on {}: VmHWM {} KiB, cgroup peak {} KiB, {} ms CPU in {} s (limit {} KiB)",
            p.node,
            u.hwm_kib,
            u.cgroup_peak_kib,
            u.cpu_ms,
            u.age_s,
            limit / 1024
        );
        assert!(
            u.hwm_kib * 1024 < limit && u.cgroup_peak_kib * 1024 < limit,
            "{u:?}"
        );
    }
    assert!(
        losses.is_empty(),
        "probes lost between nodes: {losses:?} ({total} sent)"
    );
    assert!(
        missing.is_empty(),
        "routes missing during the update: {missing:?}"
    );
    let cidrs: Vec<String> = expect.iter().map(|(_, c)| c.clone()).collect();
    for (n, m) in lab.nodes().iter().zip(&monitors) {
        let withdrawn: Vec<String> = m
            .log()
            .lines()
            .filter(|l| l.starts_with("Deleted") && cidrs.iter().any(|c| l.contains(c.as_str())))
            .map(str::to_owned)
            .collect();
        assert!(
            withdrawn.is_empty(),
            "{}: pod CIDR routes withdrawn during the update: {withdrawn:?}",
            n.name
        );
    }
    drop(monitors);
    down_and_check(lab)
}

/// An agent container's use of the node, read from its cgroups and /proc.
#[derive(Debug)]
struct Usage {
    /// The process's peak resident set (VmHWM), binary text included.
    hwm_kib: u64,
    /// The container cgroup's peak charge (memory.max_usage_in_bytes).
    cgroup_peak_kib: u64,
    /// CPU time of the container (cpuacct.usage).
    cpu_ms: u64,
    /// Seconds since the agent process started.
    age_s: u64,
}

/// The agent container of agent pod `pod`, found by its container ID under the node's
/// cgroup root (cgroup v1: memory and cpuacct hierarchies).
fn agent_usage(lab: &Lab, pod: &PodSeen) -> Res<Usage> {
    let id = lab.kubectl(&[
        "-n",
        "kube-system",
        "get",
        "pod",
        &pod.name,
        "-o",
        "jsonpath={.status.containerStatuses[?(@.name==\"agent\")].containerID}",
    ])?;
    let id = id.trim().trim_start_matches("containerd://").to_owned();
    let root = format!("podroute-lab-{}-{}", lab.name(), pod.node);
    let memory = Path::new("/sys/fs/cgroup/memory");
    let mut stack = vec![memory.join(&root)];
    let dir = loop {
        let d = stack
            .pop()
            .ok_or_else(|| format!("no cgroup for container {id}"))?;
        if d.file_name().is_some_and(|n| n.to_string_lossy() == id) {
            break d;
        }
        stack.extend(
            std::fs::read_dir(&d)?
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path()),
        );
    };
    let read = |p: &Path| -> Res<String> { Ok(std::fs::read_to_string(p)?.trim().to_owned()) };
    let pid = read(&dir.join("cgroup.procs"))?
        .lines()
        .next()
        .ok_or("the agent's cgroup has no process")?
        .to_owned();
    let status = read(&Path::new("/proc").join(&pid).join("status"))?;
    let hwm_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or("no VmHWM")?;
    let rel = dir.strip_prefix(memory)?;
    let cpu_ns: u64 = read(
        &Path::new("/sys/fs/cgroup/cpuacct")
            .join(rel)
            .join("cpuacct.usage"),
    )?
    .parse()?;
    let etimes = std::process::Command::new("ps")
        .args(["-o", "etimes=", "-p", &pid])
        .output()?;
    Ok(Usage {
        hwm_kib,
        cgroup_peak_kib: read(&dir.join("memory.max_usage_in_bytes"))?.parse::<u64>()? / 1024,
        cpu_ms: cpu_ns / 1_000_000,
        age_s: String::from_utf8_lossy(&etimes.stdout).trim().parse()?,
    })
}

/// The podroute DaemonSet as the API server has it.
fn daemonset(lab: &Lab) -> Res<Value> {
    Ok(serde_json::from_str(&lab.kubectl(&[
        "-n",
        "kube-system",
        "get",
        "daemonset",
        "podroute",
        "-o",
        "json",
    ])?)?)
}

/// The DaemonSet's memory limit for the agent, in bytes (`Mi` or `Gi`).
fn memory_limit(lab: &Lab) -> Res<u64> {
    let ds = daemonset(lab)?;
    let q = ds["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"]
        .as_str()
        .unwrap_or_default();
    let (n, unit) = q.split_at(q.find(|c: char| !c.is_ascii_digit()).unwrap_or(q.len()));
    let scale = match unit {
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => return Err(format!("the agent's memory limit is {q:?}, not in Mi or Gi").into()),
    };
    Ok(n.parse::<u64>()? * scale)
}

/// The sandbox of pod `uid` in `node`'s containerd: (sandbox id, its network namespace path),
/// or `None` when containerd has no container of that pod.
fn sandbox_of(lab: &Lab, node: &str, uid: &str) -> Res<Option<(String, String)>> {
    let filter = format!("labels.\"io.kubernetes.pod.uid\"=={uid}");
    let ids = lab.ctr(node, &["containers", "ls", "-q", &filter])?;
    for id in ids.split_whitespace() {
        let info: Value = serde_json::from_str(&lab.ctr(node, &["containers", "info", id])?)?;
        if info["Labels"]["io.cri-containerd.kind"] == "sandbox" {
            let netns = info["Spec"]["linux"]["namespaces"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|n| n["type"] == "network")
                .and_then(|n| n["path"].as_str())
                .unwrap_or_default()
                .to_owned();
            return Ok(Some((id.to_owned(), netns)));
        }
    }
    // Containers of the pod but no sandbox among them would be a broken runtime: report it.
    if ids.trim().is_empty() {
        Ok(None)
    } else {
        Err(format!("{node}: containers of pod {uid} without a sandbox: {ids}").into())
    }
}

#[test]
#[ignore = "needs root: run by make test"]
fn a_deleted_pod_is_released_by_cni_del_and_its_address_comes_back_only_after_the_others()
-> TestResult {
    // Small node ranges (/29: 6 addresses for pods), so the IPAM's round-robin comes back to
    // the first address after five more pods.
    let lab = cluster_with_podroute(
        &LabConfig::new(unique("podlife"), 2)
            .cluster(true)
            .node_cidr_mask_v4(29),
    )?;
    let node = "node1";
    let cidr = lab.node(node)?.pod_cidr_v4;
    assert_eq!(cidr.prefix(), 29, "{cidr}");

    apply(&lab, "first", &pod_on("first", "first", node))?;
    lab.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "pod/first",
        "--timeout=120s",
    ])?;
    let first = pods(&lab, "default", "app=first")?
        .pop()
        .ok_or("pod first is not listed")?;
    let ip = first.ips.first().ok_or("pod first has no IP")?.clone();
    let host_route = lab.routes_to(node, &ip)?;
    let veth = host_route
        .iter()
        .find(|r| r["protocol"] == "80" || r["protocol"] == 80)
        .and_then(|r| r["dev"].as_str())
        .ok_or_else(|| format!("no podroute host route to {ip}: {host_route:?}"))?
        .to_owned();
    let record = format!("{IPAM_DIR}/{ip}");
    assert!(
        lab.node_exec(node, &["test", "-f", &record])?
            .status
            .success(),
        "{record}"
    );
    let (sandbox, netns) = sandbox_of(&lab, node, &first.uid)?.ok_or("no sandbox for pod first")?;
    assert!(
        lab.node_exec(node, &["test", "-e", &netns])?
            .status
            .success(),
        "sandbox {sandbox}'s netns {netns}"
    );

    lab.kubectl(&["delete", "pod", "first", "--wait=true", "--timeout=120s"])?;
    // The kubelet has stopped the sandbox; containerd removes it and its namespace.
    assert!(
        wait_until(Duration::from_secs(60), || {
            sandbox_of(&lab, node, &first.uid).is_ok_and(|s| s.is_none())
        }),
        "containerd still has pod first's sandbox {sandbox}"
    );
    assert!(
        !lab.node_exec(node, &["test", "-e", &netns])?
            .status
            .success(),
        "{netns} is left"
    );
    assert!(
        !lab.node_exec(node, &["test", "-e", &record])?
            .status
            .success(),
        "CNI DEL released {ip}: {record} is gone"
    );
    assert!(
        lab.routes_to(node, &ip)?.is_empty(),
        "no route to {ip} is left"
    );
    assert!(
        wait_until(Duration::from_secs(30), || lab
            .exec(node, &["ip", "link", "show", "dev", &veth])
            .is_ok_and(|o| !o.status.success())),
        "veth {veth} is left"
    );

    // Five more pods take the other five addresses (round-robin: not the released one)...
    let names: Vec<String> = (1..=5).map(|i| format!("next{i}")).collect();
    for n in &names {
        apply(&lab, n, &pod_on(n, "next", node))?;
    }
    lab.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "pod",
        "-l",
        "app=next",
        "--timeout=180s",
    ])?;
    let next: BTreeSet<String> = pods(&lab, "default", "app=next")?
        .into_iter()
        .filter_map(|p| p.ips.first().cloned())
        .collect();
    assert_eq!(next.len(), 5, "five distinct addresses: {next:?}");
    assert!(
        !next.contains(&ip),
        "{ip} is handed out again only after the others: {next:?}"
    );
    // ... and the sixth can only have the released one.
    apply(&lab, "last", &pod_on("last", "last", node))?;
    lab.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "pod/last",
        "--timeout=120s",
    ])?;
    let last = pods(&lab, "default", "app=last")?
        .pop()
        .ok_or("pod last is not listed")?;
    assert_eq!(
        last.ips.first(),
        Some(&ip),
        "the released address is reused"
    );
    // Which reaches a pod on the other node.
    apply(&lab, "other", &pod_on("other", "other", "node2"))?;
    lab.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "pod/other",
        "--timeout=120s",
    ])?;
    let other = pods(&lab, "default", "app=other")?
        .pop()
        .ok_or("pod other is not listed")?;
    assert!(pings(&lab, "last", &other.ips[0])?, "last reaches other");
    assert!(pings(&lab, "other", &ip)?, "other reaches last at {ip}");
    down_and_check(lab)
}

#[test]
#[ignore = "needs root: run by make test"]
fn the_documented_uninstall_leaves_nothing_of_podroute_on_the_nodes() -> TestResult {
    let lab = cluster_with_podroute(&LabConfig::new(unique("uninst"), 2).cluster(true).ipv6(true))?;
    apply(&lab, "pinger", &spread_deployment("pinger", 2))?;
    rollout(&lab, "default", "deployment/pinger")?;
    for n in lab.nodes() {
        let left = podroute_leftovers(&lab, &n.name)?;
        assert!(
            left.iter().any(|l| l.contains("conflist"))
                && left.iter().any(|l| l.starts_with("veth")),
            "{}: podroute is installed and wiring pods: {left:?}",
            n.name
        );
    }

    // README, Uninstall: the workloads first (their CNI DEL needs the plugin), then the
    // manifests, then on every node the plugin's own uninstall and the files and routes the
    // agent leaves.
    lab.kubectl(&["delete", "deployment", "pinger", "--wait=true"])?;
    lab.kubectl(&[
        "wait",
        "--for=delete",
        "pod",
        "-l",
        "app=pinger",
        "--timeout=120s",
    ])?;
    let overlay = podroute_lab::cluster::cluster_manifests();
    lab.kubectl(&["delete".as_ref(), "-k".as_ref(), overlay.as_os_str()])?;
    lab.kubectl(&[
        "-n",
        "kube-system",
        "wait",
        "--for=delete",
        "pod",
        "-l",
        AGENTS,
        "--timeout=120s",
    ])?;
    let crds = lab.kubectl(&["get", "crd", "-o", "name"])?;
    assert!(!crds.contains("podroute.io"), "CRDs left: {crds}");
    for n in lab.nodes() {
        let cleanup = lab.node_exec(
            &n.name,
            &[
                "sh",
                "-c",
                "/opt/cni/bin/podroute uninstall /opt/cni/bin && \
                 rm -rf /etc/cni/net.d/10-podroute.conflist /run/podroute /var/lib/podroute \
                   /var/lib/cni/networks/podroute && \
                 ip route flush table all proto 80 && ip -6 route flush table all proto 80",
            ],
        )?;
        assert!(
            cleanup.status.success(),
            "{}: {}",
            n.name,
            String::from_utf8_lossy(&cleanup.stderr)
        );
        let left = podroute_leftovers(&lab, &n.name)?;
        assert!(
            left.is_empty(),
            "{}: left after the uninstall: {left:?}",
            n.name
        );
    }
    down_and_check(lab)
}

#[test]
fn ping_summaries_are_summed() {
    let log = "PING 10.0.0.1 (10.0.0.1): 56 data bytes\n\n--- 10.0.0.1 ping statistics ---\n\
               500 packets transmitted, 500 packets received, 0% packet loss\n\
               round-trip min/avg/max = 0.1/0.2/0.3 ms\n\
               500 packets transmitted, 498 packets received, 0% packet loss\n";
    assert_eq!(ping_totals(log), (1000, 998));
    assert_eq!(ping_totals("ping: sendto: Network unreachable\n"), (0, 0));
}
