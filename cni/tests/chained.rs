//! Chaining test (root): a conflist `[podroute, portmap, bandwidth]` written by the library's
//! conflist writer, driven by `cnitool` with Debian's reference plugins from /usr/lib/cni.
//! cnitool runs inside the test's node namespace; nothing touches the root namespace.

mod common;

use common::*;
use podroute_cni::conflist::{Chain, NodeNetwork, write_atomic};
use podroute_cni::version::CniVersion;
use podroute_lab::cnitool::cnitool_in;
use podroute_lab::control_plane::ControlPlaneBins;
use std::path::{Path, PathBuf};
use std::process::Output;

/// cnitool from the control-plane cache (`tests/scripts/control-plane.sh` builds it). Missing
/// cnitool is a failure, never a skip.
fn cnitool() -> PathBuf {
    let tool = ControlPlaneBins::locate()
        .expect("control-plane binaries (run tests/scripts/control-plane.sh)")
        .dir
        .join("cnitool");
    assert!(tool.is_file(), "{} is missing", tool.display());
    tool
}

const PORTMAP_AND_BANDWIDTH: &str = r#"{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}],"bandwidth":{"ingressRate":10000000,"ingressBurst":1000000,"egressRate":10000000,"egressBurst":1000000}}"#;
/// portmap 1.1.1's CHECK looks for IPv6 NAT rules it never created and fails whenever port
/// mappings are given (containernetworking/plugins#819, fixed upstream later); without
/// mappings it has nothing to check. CHECK therefore runs with bandwidth only.
const BANDWIDTH_ONLY: &str = r#"{"bandwidth":{"ingressRate":10000000,"ingressBurst":1000000,"egressRate":10000000,"egressBurst":1000000}}"#;

struct Cnitool {
    bin: PathBuf,
    netconf: tempfile::TempDir,
    /// libcni's result cache, kept off the host (see `podroute_lab::cnitool`).
    cache: tempfile::TempDir,
    cni_path: String,
}

impl Cnitool {
    fn run(&self, node: &Node, op: &str, pod: &Path, cap_args: &str) -> Output {
        cnitool_in(&node.ns.name, self.cache.path(), &self.bin)
            .args([op, "podroute-test"])
            .arg(pod)
            .env("NETCONFPATH", self.netconf.path())
            .env("CNI_PATH", &self.cni_path)
            .env("CAP_ARGS", cap_args)
            .output()
            .expect("spawn cnitool")
    }
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "cnitool {what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "needs root: run by make test"]
fn chained_with_portmap_and_bandwidth_via_cnitool() {
    let node = Node::new();
    let pod = Netns::new("pod");
    let plugin_dir = Path::new(PLUGIN)
        .parent()
        .expect("plugin dir")
        .display()
        .to_string();
    let tool = Cnitool {
        bin: cnitool(),
        netconf: tempfile::tempdir().expect("tempdir"),
        cache: tempfile::tempdir().expect("tempdir"),
        cni_path: format!("{plugin_dir}:/usr/lib/cni"),
    };
    let mut net = NodeNetwork::new(vec![
        "10.244.1.0/24".parse().expect("cidr"),
        "fd00:10:244:1::/64".parse().expect("cidr"),
    ]);
    net.name = "podroute-test".into();
    net.cni_version = CniVersion::V1_0_0;
    net.data_dir = Some(node.data.path().to_owned());
    net.chain = Chain {
        portmap: true,
        bandwidth: true,
    };
    write_atomic(&tool.netconf.path().join("10-podroute.conflist"), &net).expect("write conflist");

    // ADD: the final result carries podroute's interfaces and addresses plus bandwidth's ifb.
    let result: serde_json::Value = serde_json::from_str(&ok(
        &tool.run(&node, "add", &pod.path(), PORTMAP_AND_BANDWIDTH),
        "add",
    ))
    .expect("result JSON");
    let v4 = result["ips"][0]["address"]
        .as_str()
        .expect("address")
        .to_owned();
    assert!(v4.starts_with("10.244.1."), "{result}");
    let host = result["interfaces"][0]["name"]
        .as_str()
        .expect("host veth")
        .to_owned();
    assert!(host.starts_with("pr"));
    assert!(ping(&pod, NODE_V4), "pod cannot reach the node");
    // portmap got prevResult and installed a DNAT for the pod's address.
    let pod_ip = v4.split('/').next().expect("ip");
    let nat = node.ns.sh(&["iptables-save", "-t", "nat"]);
    assert!(
        nat.contains(&format!("--to-destination {pod_ip}:80")),
        "no DNAT for the pod:\n{nat}"
    );
    // bandwidth found the host veth in prevResult and shaped it.
    let qdisc = node.ns.sh(&["tc", "qdisc", "show", "dev", &host]);
    assert!(qdisc.contains("tbf"), "no tbf on {host}: {qdisc}");

    // CHECK through the chain (podroute receives the cached prevResult), then a broken pod
    // route makes podroute's CHECK fail through cnitool.
    ok(
        &tool.run(&node, "check", &pod.path(), BANDWIDTH_ONLY),
        "check",
    );
    pod.sh(&["ip", "route", "del", "default"]);
    let broken = tool.run(&node, "check", &pod.path(), BANDWIDTH_ONLY);
    assert!(
        !broken.status.success(),
        "CHECK passed with the default route gone"
    );
    let msg = String::from_utf8_lossy(&broken.stderr);
    assert!(
        msg.contains("route 0.0.0.0/0 via 169.254.1.1 is missing"),
        "{msg}"
    );

    // DEL undoes all three plugins.
    ok(
        &tool.run(&node, "del", &pod.path(), PORTMAP_AND_BANDWIDTH),
        "del",
    );
    let host_veths = node.host_veths();
    assert_eq!(host_veths.len(), 1, "{host_veths:?}");
    node.assert_released(&host_veths[0]);
    assert!(
        node.records().is_empty(),
        "addresses left: {:?}",
        node.records()
    );
    let nat = node.ns.sh(&["iptables-save", "-t", "nat"]);
    assert!(!nat.contains(pod_ip), "DNAT left:\n{nat}");
    let links = node.ns.sh(&["ip", "-o", "link"]);
    assert!(!links.contains("bwp"), "bandwidth ifb left: {links}");
    // The runtime removes the namespace next; the released pair goes with it.
    pod.delete();
    node.wait_no_host_veths();
}
