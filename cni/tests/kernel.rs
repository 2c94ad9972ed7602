//! Kernel tests of the plugin (root): each test builds a private "node" namespace and pod
//! namespaces, runs the `podroute` binary inside the node namespace and checks what a
//! runtime and a pod would see.

mod common;

use common::*;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

/// The address (without prefix) of the first IP of the given family in a result.
fn result_ip(result: &Value, v6: bool) -> String {
    result["ips"]
        .as_array()
        .expect("ips")
        .iter()
        .filter_map(|ip| ip["address"].as_str())
        .find(|a| a.contains(':') == v6)
        .and_then(|a| a.split('/').next())
        .expect("an address of the family")
        .to_owned()
}

#[test]
#[ignore = "needs root: run by make test"]
fn add_check_del_del() {
    let node = Node::new();
    let pod = Netns::new("pod");
    let conf = node.conf("1.1.0", false);
    let cid = "c-add-check-del";

    let result = ok_json(&node.plugin("ADD", &conf, Some(cid), Some(&pod.path())));
    assert_eq!(result["cniVersion"], "1.1.0");
    let v4 = result_ip(&result, false);
    let v6 = result_ip(&result, true);
    assert!(v4.starts_with("10.244.1."), "{v4}");
    assert!(v6.starts_with("fd00:10:244:1::"), "{v6}");
    assert_eq!(
        result["routes"],
        json!([{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}, {"dst": "::/0", "gw": "fe80::1"}])
    );

    // The pod has its addresses and reaches the node over both families.
    let addrs = pod.sh(&["ip", "addr", "show", "eth0"]);
    assert!(addrs.contains(&format!("{v4}/32")), "{addrs}");
    assert!(addrs.contains(&format!("{v6}/128")), "{addrs}");
    assert!(ping(&pod, NODE_V4), "pod cannot ping the node over IPv4");
    assert!(ping(&pod, NODE_V6), "pod cannot ping the node over IPv6");
    // The node routes to the pod with podroute's protocol.
    let host = result["interfaces"][0]["name"]
        .as_str()
        .expect("host veth")
        .to_owned();
    let routes = node.ns.sh(&["ip", "route", "show", "proto", "80"]);
    assert!(routes.contains(&format!("{v4} dev {host}")), "{routes}");
    let routes6 = node.ns.sh(&["ip", "-6", "route", "show", "proto", "80"]);
    assert!(routes6.contains(&format!("{v6} dev {host}")), "{routes6}");
    let proxy_arp = node
        .ns
        .sh(&["cat", &format!("/proc/sys/net/ipv4/conf/{host}/proxy_arp")]);
    assert_eq!(proxy_arp.trim(), "1");
    let proxy_ndp = node
        .ns
        .sh(&["ip", "-6", "neigh", "show", "proxy", "dev", &host]);
    assert!(
        proxy_ndp.contains("fe80::1"),
        "no proxy NDP entry: {proxy_ndp}"
    );
    let pod_neigh = pod.sh(&["ip", "neigh", "show", "dev", "eth0"]);
    assert!(
        pod_neigh.contains("169.254.1.1") && pod_neigh.contains("PERMANENT"),
        "{pod_neigh}"
    );
    // One queue of each kind on both ends, not one per CPU as a veth made without asking
    // gets (on a machine with one CPU the two cannot be told apart).
    for details in [
        node.ns.sh(&["ip", "-d", "link", "show", &host]),
        pod.sh(&["ip", "-d", "link", "show", "eth0"]),
    ] {
        assert!(details.contains("numtxqueues 1 numrxqueues 1"), "{details}");
    }
    node.ns.sh(&[
        "ip", "link", "add", "name", "qa", "type", "veth", "peer", "name", "qb",
    ]);
    let plain = node.ns.sh(&["ip", "-d", "link", "show", "qa"]);
    node.ns.sh(&["ip", "link", "del", "qa"]);
    if std::thread::available_parallelism().is_ok_and(|n| n.get() > 1) {
        assert!(
            !plain.contains("numtxqueues 1 numrxqueues 1"),
            "a plain veth has one queue too, so this checks nothing: {plain}"
        );
    }

    // ADD again for the same container and interface: the same result, no new address.
    let again = ok_json(&node.plugin("ADD", &conf, Some(cid), Some(&pod.path())));
    assert_eq!(again, result);
    assert_eq!(node.records().len(), 2);

    // CHECK passes, then fails with a clear message once the pod's default route is gone.
    assert_ok(&node.plugin(
        "CHECK",
        &with_prev(&conf, &result),
        Some(cid),
        Some(&pod.path()),
    ));
    pod.sh(&["ip", "route", "del", "default"]);
    let err = err_json(&node.plugin(
        "CHECK",
        &with_prev(&conf, &result),
        Some(cid),
        Some(&pod.path()),
    ));
    assert_eq!(err["code"], 101);
    assert!(
        err["msg"]
            .as_str()
            .expect("msg")
            .contains("route 0.0.0.0/0 via 169.254.1.1 is missing"),
        "{err}"
    );

    // DEL cuts the pod off (its veth is released: down, marked, no routes; the pod keeps no
    // eth0 and no address) and frees the addresses; a second DEL still succeeds.
    assert_ok(&node.plugin("DEL", &conf, Some(cid), Some(&pod.path())));
    node.assert_released(&host);
    node.assert_pod_released(&pod, &host);
    assert!(
        node.records().is_empty(),
        "addresses left: {:?}",
        node.records()
    );
    assert!(
        !ping(&pod, NODE_V4),
        "the pod still reaches the node after DEL"
    );
    assert_ok(&node.plugin("DEL", &conf, Some(cid), Some(&pod.path())));
    node.assert_released(&host);
    // Removing the pod's namespace, as the runtime does next, destroys the pair.
    pod.delete();
    node.wait_no_host_veths();
}

#[test]
#[ignore = "needs root: run by make test"]
fn add_again_into_the_same_netns_after_del() {
    let node = Node::new();
    let pod = Netns::new("pod");
    let conf = node.conf("1.1.0", false);
    let first = ok_json(&node.plugin("ADD", &conf, Some("c-first"), Some(&pod.path())));
    let host = first["interfaces"][0]["name"]
        .as_str()
        .expect("host")
        .to_owned();
    assert_ok(&node.plugin("DEL", &conf, Some("c-first"), Some(&pod.path())));
    node.assert_released(&host);

    // The same container and interface again: the released pair is replaced, not reused.
    let again = ok_json(&node.plugin("ADD", &conf, Some("c-first"), Some(&pod.path())));
    assert_eq!(again["interfaces"][0]["name"], host.as_str());
    let link = node.link(&host).expect("host veth");
    assert!(link["ifalias"].is_null(), "still marked released: {link}");
    assert!(ping(&pod, NODE_V4), "re-added pod cannot reach the node");
    assert_ok(&node.plugin(
        "CHECK",
        &with_prev(&conf, &again),
        Some("c-first"),
        Some(&pod.path()),
    ));
    assert_ok(&node.plugin("DEL", &conf, Some("c-first"), Some(&pod.path())));

    // Another container in the same namespace: DEL freed the name eth0, so ADD just works;
    // the released pair stays until something destroys it.
    let other = ok_json(&node.plugin("ADD", &conf, Some("c-second"), Some(&pod.path())));
    node.assert_released(&host);
    assert_eq!(node.host_veths().len(), 2, "{:?}", node.host_veths());
    assert!(
        ping(&pod, NODE_V4),
        "the second container cannot reach the node"
    );
    assert_ok(&node.plugin(
        "CHECK",
        &with_prev(&conf, &other),
        Some("c-second"),
        Some(&pod.path()),
    ));

    // An eth0 that is already there is an error (CNI spec), and is left alone, like the
    // released pair.
    let foreign = Netns::new("pod");
    foreign.sh(&[
        "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0peer",
    ]);
    let err = err_json(&node.plugin("ADD", &conf, Some("c-third"), Some(&foreign.path())));
    assert_eq!(err["code"], 5, "{err}");
    assert!(foreign.sh(&["ip", "link", "show", "eth0"]).contains("eth0"));
    node.assert_released(&host);
    // c-second still holds its two addresses; nothing of the failed ADD is left.
    assert_eq!(node.records().len(), 2, "{:?}", node.records());
    assert!(ping(&pod, NODE_V4));
}

/// The pod CIDR wraps around while a released pair lives on: the address goes to a new pod,
/// and the old namespace holds neither it nor a route that could capture its traffic.
#[test]
#[ignore = "needs root: run by make test"]
fn an_address_freed_by_del_serves_a_new_pod_while_the_old_netns_lives_on() {
    let node = Node::new();
    let mut conf = node.conf("1.1.0", true);
    // A /30: two usable addresses, so the third pod gets the first one again.
    conf["ranges"] = json!([{"subnet": "10.244.1.0/30"}]);
    let old = Netns::new("pod");
    let first = ok_json(&node.plugin("ADD", &conf, Some("c-old"), Some(&old.path())));
    let reused = result_ip(&first, false);
    assert_ok(&node.plugin("DEL", &conf, Some("c-old"), Some(&old.path())));
    let second = Netns::new("pod");
    ok_json(&node.plugin("ADD", &conf, Some("c-2"), Some(&second.path())));
    let third = Netns::new("pod");
    let result = ok_json(&node.plugin("ADD", &conf, Some("c-3"), Some(&third.path())));
    assert_eq!(result_ip(&result, false), reused, "the range did not wrap");
    assert!(ping(&third, NODE_V4), "the new owner cannot reach the node");
    assert!(
        ping(&node.ns, &reused),
        "the node cannot reach the new owner"
    );
    let left = old.sh(&["ip", "-o", "addr", "show"]);
    assert!(
        !left.contains(&reused),
        "the old netns holds {reused}: {left}"
    );
}

#[test]
#[ignore = "needs root: run by make test"]
fn gc_destroys_released_veths_whose_netns_lives_on() {
    let node = Node::new();
    let conf = node.conf("1.1.0", true);
    let kept = Netns::new("pod");
    let released = Netns::new("pod");
    let keep = ok_json(&node.plugin("ADD", &conf, Some("c-keep"), Some(&kept.path())));
    let gone = ok_json(&node.plugin("ADD", &conf, Some("c-rel"), Some(&released.path())));
    assert_ok(&node.plugin("DEL", &conf, Some("c-rel"), Some(&released.path())));
    let released_host = gone["interfaces"][0]["name"].as_str().expect("host");
    node.assert_released(released_host);

    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "c-keep", "ifname": "eth0"}]);
    assert_ok(&node.plugin("GC", &gc, None, None));
    assert_eq!(
        node.host_veths(),
        vec![
            keep["interfaces"][0]["name"]
                .as_str()
                .expect("name")
                .to_owned()
        ]
    );
    assert!(!released.sh(&["ip", "link"]).contains("eth0"));
    assert!(ping(&kept, NODE_V4));
}

/// GC reads the node's links in one dump, which the kernel sends in several parts when the
/// node has many links: released veths behind 150 other links are all found.
#[test]
#[ignore = "needs root: run by make test"]
fn gc_finds_released_veths_behind_a_long_link_dump() {
    let node = Node::new();
    let conf = node.conf("1.1.0", true);
    let batch: String = (0..150)
        .map(|i| format!("link add filler{i} type bridge\n"))
        .collect();
    let mut ip = std::process::Command::new("ip")
        .args(["-n", &node.ns.name, "-batch", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("ip -batch");
    std::io::Write::write_all(ip.stdin.as_mut().expect("stdin"), batch.as_bytes())
        .expect("write the batch");
    drop(ip.stdin.take());
    assert!(ip.wait().expect("ip -batch").success());
    let pods: Vec<Netns> = (0..3).map(|_| Netns::new("pod")).collect();
    for (i, pod) in pods.iter().enumerate() {
        let cid = format!("c-long-{i}");
        ok_json(&node.plugin("ADD", &conf, Some(&cid), Some(&pod.path())));
        assert_ok(&node.plugin("DEL", &conf, Some(&cid), Some(&pod.path())));
    }
    assert_eq!(node.host_veths().len(), 3, "three released veths");

    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([]);
    assert_ok(&node.plugin("GC", &gc, None, None));
    assert_eq!(node.host_veths(), Vec::<String>::new());
    let links = node.ns.sh(&["ip", "-o", "link", "show", "type", "bridge"]);
    assert_eq!(
        links.lines().count(),
        150,
        "GC destroyed only released veths"
    );
}

#[test]
#[ignore = "needs root: run by make test"]
fn results_follow_the_config_version() {
    let node = Node::new();
    for version in ["0.4.0", "1.0.0"] {
        let pod = Netns::new("pod");
        let conf = node.conf(version, false);
        let cid = format!("c-version-{version}");
        let result = ok_json(&node.plugin("ADD", &conf, Some(&cid), Some(&pod.path())));
        assert_eq!(result["cniVersion"], version);
        assert_eq!(
            result["ips"][0].get("version").is_some(),
            version == "0.4.0"
        );
        assert!(result["interfaces"][1].get("mtu").is_none());
        assert_ok(&node.plugin(
            "CHECK",
            &with_prev(&conf, &result),
            Some(&cid),
            Some(&pod.path()),
        ));
        assert_ok(&node.plugin("DEL", &conf, Some(&cid), Some(&pod.path())));
    }
}

#[test]
#[ignore = "needs root: run by make test"]
fn del_after_the_netns_is_gone() {
    let node = Node::new();
    let pod = Netns::new("pod");
    let conf = node.conf("1.1.0", false);
    ok_json(&node.plugin("ADD", &conf, Some("c-gone"), Some(&pod.path())));
    assert_eq!(node.records().len(), 2);
    pod.delete();
    assert_ok(&node.plugin("DEL", &conf, Some("c-gone"), Some(&pod.path())));
    assert!(
        node.records().is_empty(),
        "addresses left: {:?}",
        node.records()
    );
    node.wait_no_host_veths();
    // DEL of a container the plugin never saw also succeeds.
    assert_ok(&node.plugin("DEL", &conf, Some("c-never-seen"), None));
}

#[test]
#[ignore = "needs root: run by make test"]
fn hundred_concurrent_adds_get_distinct_reachable_addresses() {
    const PODS: usize = 100;
    let node = Node::new();
    let conf = node.conf("1.1.0", true);
    let pods: Vec<Netns> = (0..PODS).map(|_| Netns::new("pod")).collect();
    let children: Vec<_> = pods
        .iter()
        .enumerate()
        .map(|(i, pod)| {
            node.plugin_cmd(
                "ADD",
                &conf,
                Some(&format!("c-many-{i}")),
                Some(&pod.path()),
                &[],
            )
        })
        .collect();
    let results: Vec<Value> = children
        .into_iter()
        .map(|c| ok_json(&c.wait_with_output().expect("wait")))
        .collect();
    let addrs: HashSet<String> = results.iter().map(|r| result_ip(r, false)).collect();
    assert_eq!(addrs.len(), PODS, "addresses were shared");
    assert_eq!(node.records().len(), PODS);
    assert_eq!(node.host_veths().len(), PODS);
    for (i, pod) in pods.iter().enumerate() {
        assert!(ping(pod, NODE_V4), "pod {i} cannot reach the node");
    }
}

/// Starts an ADD that stalls at `stage`, waits until it says so, and kills it with SIGKILL.
fn kill_add_at(node: &Node, conf: &Value, cid: &str, pod: &Netns, stage: &str) {
    let mut child = node.plugin_cmd(
        "ADD",
        conf,
        Some(cid),
        Some(&pod.path()),
        &[("PODROUTE_TEST_STALL", stage)],
    );
    let stderr = child.stderr.take().expect("stderr");
    let mut line = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    BufReader::new(stderr)
        .read_line(&mut line)
        .expect("read stderr");
    assert!(Instant::now() < deadline);
    assert!(
        line.contains(&format!("stalled at {stage}")),
        "unexpected stderr: {line}"
    );
    child.kill().expect("SIGKILL the plugin");
    let _ = child.wait();
}

#[test]
#[ignore = "needs root: run by make test"]
fn kill_during_add_then_gc_leaks_nothing() {
    let node = Node::new();
    let conf = node.conf("1.1.0", false);
    let keep = Netns::new("pod");
    let kept = ok_json(&node.plugin("ADD", &conf, Some("c-keep"), Some(&keep.path())));
    let killed_ipam = Netns::new("pod");
    let killed_veth = Netns::new("pod");
    kill_add_at(&node, &conf, "c-killed-ipam", &killed_ipam, "after-ipam");
    kill_add_at(&node, &conf, "c-killed-veth", &killed_veth, "after-veth");
    // The interrupted ADDs left records (and one veth) behind.
    assert_eq!(node.records().len(), 6);
    assert_eq!(node.host_veths().len(), 2);

    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "c-keep", "ifname": "eth0"}]);
    assert_ok(&node.plugin("GC", &gc, None, None));
    assert_eq!(node.records().len(), 2, "records: {:?}", node.records());
    let veths = node.host_veths();
    assert_eq!(
        veths,
        vec![
            kept["interfaces"][0]["name"]
                .as_str()
                .expect("name")
                .to_owned()
        ]
    );
    // The valid attachment still works.
    assert!(ping(&keep, NODE_V4));
    assert_ok(&node.plugin(
        "CHECK",
        &with_prev(&conf, &kept),
        Some("c-keep"),
        Some(&keep.path()),
    ));
}

#[test]
#[ignore = "needs root: run by make test"]
fn status_reports_agent_readiness() {
    let node = Node::new();
    let mut conf = node.conf("1.1.0", true);
    let ready = node.data.path().join("ready");
    conf["readinessFile"] = json!(ready);
    let err = err_json(&node.plugin("STATUS", &conf, None, None));
    assert_eq!(err["code"], 50);
    std::fs::write(&ready, "").expect("touch");
    assert_ok(&node.plugin("STATUS", &conf, None, None));
}

#[test]
#[ignore = "needs root: run by make test"]
fn add_into_missing_netns_fails_without_leaking() {
    let node = Node::new();
    let conf = node.conf("1.1.0", true);
    let missing = std::path::Path::new("/run/netns/prcni-does-not-exist");
    let err = err_json(&node.plugin("ADD", &conf, Some("c-missing"), Some(missing)));
    assert_eq!(err["code"], 5);
    assert!(node.records().is_empty());
}

#[test]
#[ignore = "needs root: run by make test"]
fn mtu_follows_the_uplink_unless_configured_and_route_protocol_is_configurable() {
    let node = Node::new();
    // An "uplink" with MTU 1400 holding the node's default route (both ends stay in the node
    // namespace; the gateway is never sent anything).
    node.ns.sh(&[
        "ip", "link", "add", "name", "upl0", "mtu", "1400", "type", "veth", "peer", "name", "upl1",
    ]);
    node.ns.sh(&["ip", "link", "set", "upl0", "up"]);
    node.ns.sh(&["ip", "link", "set", "upl1", "up"]);
    node.ns.sh(&[
        "ip",
        "route",
        "add",
        "default",
        "via",
        "198.18.0.254",
        "dev",
        "upl0",
        "onlink",
    ]);

    let pod = Netns::new("pod");
    let conf = node.conf("1.1.0", true);
    let result = ok_json(&node.plugin("ADD", &conf, Some("c-mtu-uplink"), Some(&pod.path())));
    assert_eq!(result["interfaces"][1]["mtu"], 1400, "{result}");
    assert!(pod.sh(&["ip", "link", "show", "eth0"]).contains("mtu 1400"));

    let pod2 = Netns::new("pod");
    let mut conf2 = node.conf("1.1.0", true);
    conf2["mtu"] = json!(1300);
    conf2["routeProtocol"] = json!(99);
    let result2 = ok_json(&node.plugin("ADD", &conf2, Some("c-mtu-conf"), Some(&pod2.path())));
    assert_eq!(result2["interfaces"][0]["mtu"], 1300);
    assert!(
        pod2.sh(&["ip", "link", "show", "eth0"])
            .contains("mtu 1300")
    );
    let ip = result_ip(&result2, false);
    let routes = node.ns.sh(&["ip", "route", "show", "proto", "99"]);
    assert!(routes.contains(&ip), "no proto 99 route to {ip}: {routes}");
    assert_ok(&node.plugin(
        "CHECK",
        &with_prev(&conf2, &result2),
        Some("c-mtu-conf"),
        Some(&pod2.path()),
    ));
}
