//! Cluster mode end to end: kubelet and containerd on every node, pod CIDRs from
//! kube-controller-manager, podroute deployed as its DaemonSet with `kubectl apply -k`, and
//! pods scheduled by kube-scheduler reaching each other across nodes.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::{TestResult, assert_gone, unique};
use podroute_lab::{Lab, LabConfig};
use serde_json::Value;

/// A Deployment of busybox pods, one per node (hostname topology spread, hard).
fn spread_deployment(replicas: usize) -> Value {
    serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": "pinger", "namespace": "default" },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": "pinger" } },
            "template": {
                "metadata": { "labels": { "app": "pinger" } },
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "topologySpreadConstraints": [{
                        "maxSkew": 1,
                        "topologyKey": "kubernetes.io/hostname",
                        "whenUnsatisfiable": "DoNotSchedule",
                        "labelSelector": { "matchLabels": { "app": "pinger" } },
                    }],
                    "containers": [{
                        "name": "busybox",
                        "image": "localhost/podroute-lab/busybox:lab",
                        "imagePullPolicy": "Never",
                        "command": ["/bin/sleep", "3600"],
                    }],
                },
            },
        },
    })
}

/// A pod as the test sees it: name, node, IPs.
type PodSeen = (String, String, Vec<String>);

/// The pods labelled `app=<app>`.
fn pods(lab: &Lab, app: &str) -> Result<Vec<PodSeen>, Box<dyn std::error::Error>> {
    let v: Value = serde_json::from_str(&lab.kubectl(&[
        "get",
        "pods",
        "-n",
        "default",
        "-l",
        &format!("app={app}"),
        "-o",
        "json",
    ])?)?;
    Ok(v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let ips = p["status"]["podIPs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|i| i["ip"].as_str().map(str::to_owned))
                .collect();
            (
                p["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                p["spec"]["nodeName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                ips,
            )
        })
        .collect())
}

#[test]
#[ignore = "needs root: run by make test"]
fn daemonset_ready_on_three_nodes_and_pods_on_every_node_reach_each_other() -> TestResult {
    let name = unique("cluster");
    let lab = Lab::up(&LabConfig::new(&name, 3).cluster(true))?;

    // Pod CIDRs are the node IPAM's: three distinct /24s of the cluster CIDR.
    let cidrs: BTreeSet<String> = lab
        .node_pod_cidrs()?
        .into_iter()
        .flat_map(|(_, c)| c.into_iter().map(|c| c.to_string()))
        .collect();
    assert_eq!(cidrs.len(), 3, "{cidrs:?}");
    assert!(
        cidrs
            .iter()
            .all(|c| c.starts_with("10.244.") && c.ends_with("/24")),
        "{cidrs:?}"
    );

    lab.deploy_podroute()?;
    lab.kubectl(&[
        "-n",
        "kube-system",
        "rollout",
        "status",
        "daemonset/podroute",
        "--timeout=240s",
    ])?;
    let ds: Value = serde_json::from_str(&lab.kubectl(&[
        "-n",
        "kube-system",
        "get",
        "daemonset",
        "podroute",
        "-o",
        "json",
    ])?)?;
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

    let deployment = lab.dir().join("pinger.json");
    std::fs::write(&deployment, spread_deployment(3).to_string())?;
    lab.kubectl(&["apply".as_ref(), "-f".as_ref(), deployment.as_os_str()])?;
    lab.kubectl(&[
        "-n",
        "default",
        "rollout",
        "status",
        "deployment/pinger",
        "--timeout=180s",
    ])?;
    let pods = pods(&lab, "pinger")?;
    let nodes: BTreeSet<&str> = pods.iter().map(|p| p.1.as_str()).collect();
    assert_eq!(nodes.len(), 3, "one pod per node: {pods:?}");

    // Every pod pings every other pod (kubectl exec through the API server and the kubelet).
    let mut failures = Vec::new();
    for (from, from_node, _) in &pods {
        for (to, to_node, ips) in &pods {
            if from == to {
                continue;
            }
            for ip in ips {
                let out = lab.kubectl_output(&[
                    "exec", "-n", "default", from, "--", "ping", "-c", "1", "-W", "2", ip,
                ])?;
                if !out.status.success() {
                    failures.push(format!("{from}@{from_node} -> {to}@{to_node} {ip}"));
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
    let agent1 = lab.kubectl(&[
        "-n",
        "kube-system",
        "get",
        "pods",
        "-l",
        "app.kubernetes.io/name=podroute",
        "--field-selector=spec.nodeName=node1",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ])?;
    lab.kubectl(&[
        "-n",
        "kube-system",
        "delete",
        "pod",
        agent1.trim(),
        "--wait=true",
    ])?;
    assert!(
        route_on_node2(),
        "node2 kept {node1_cidr} while node1's agent was gone"
    );
    lab.kubectl(&[
        "-n",
        "kube-system",
        "rollout",
        "status",
        "daemonset/podroute",
        "--timeout=180s",
    ])?;
    let again = lab.kubectl(&[
        "-n",
        "kube-system",
        "get",
        "pods",
        "-l",
        "app.kubernetes.io/name=podroute",
        "--field-selector=spec.nodeName=node1",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ])?;
    assert_ne!(again.trim(), agent1.trim(), "a new agent pod runs on node1");
    assert!(route_on_node2(), "node2 routes {node1_cidr} after");
    let (p1, _, ips1) = pods
        .iter()
        .find(|p| p.1 == "node1")
        .ok_or("no pod on node1")?;
    let (p2, _, _) = pods
        .iter()
        .find(|p| p.1 == "node2")
        .ok_or("no pod on node2")?;
    let out = lab.kubectl_output(&[
        "exec", "-n", "default", p2, "--", "ping", "-c", "1", "-W", "2", &ips1[0],
    ])?;
    assert!(
        out.status.success(),
        "{p2} reaches {p1} after node1's agent came back"
    );

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
        let left = h.path().join(format!("podroute-lab-{name}-node1"));
        assert!(!left.exists(), "{} left behind", left.display());
    }
    Ok(())
}
