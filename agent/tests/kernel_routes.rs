//! Kernel tests of the route reconciler, each in a private network namespace (needs root).

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;

use common::Netns;
use ipnetwork::IpNetwork;
use podroute_agent::routes::kernel::{self, WriteMode};
use podroute_agent::routes::reconciler::RouteReconciler;
use podroute_agent::routes::{KernelTarget, RouteIntent};

const PROTO: u8 = 80;

fn net(s: &str) -> IpNetwork {
    s.parse().expect("net")
}
fn via(s: &str) -> RouteIntent {
    RouteIntent::Via(s.parse::<IpAddr>().expect("ip"))
}

/// A node-like namespace: fabric on a dummy link, a second rack behind a router, and routes of
/// other protocols, one of them to a pod CIDR.
fn node_namespace() -> Netns {
    let ns = Netns::new();
    // A veth pair (the dummy module may be missing); its peer end stays in the namespace.
    ns.ip(&[
        "link", "add", "fabric0", "type", "veth", "peer", "name", "fabric0p",
    ]);
    ns.ip(&["link", "set", "fabric0p", "up"]);
    ns.ip(&["link", "set", "fabric0", "up"]);
    ns.ip(&["addr", "add", "198.18.0.1/24", "dev", "fabric0"]);
    ns.ip(&[
        "-6",
        "addr",
        "add",
        "fd00:198:18::1/64",
        "dev",
        "fabric0",
        "nodad",
    ]);
    ns.ip(&[
        "route",
        "add",
        "198.18.1.0/24",
        "via",
        "198.18.0.254",
        "proto",
        "static",
    ]);
    ns.ip(&[
        "route",
        "add",
        "10.244.9.0/24",
        "via",
        "198.18.0.9",
        "proto",
        "static",
    ]);
    ns.ip(&[
        "route",
        "add",
        "192.0.2.0/24",
        "via",
        "198.18.0.254",
        "proto",
        "bird",
    ]);
    ns.ip(&[
        "route",
        "add",
        "203.0.113.0/24",
        "via",
        "198.18.0.254",
        "proto",
        "186",
    ]);
    ns.ip(&["route", "add", "blackhole", "10.99.0.0/16", "proto", "boot"]);
    ns.ip(&[
        "-6",
        "route",
        "add",
        "fd00:99::/64",
        "via",
        "fd00:198:18::254",
        "proto",
        "static",
    ]);
    ns
}

/// Every route that is not podroute's, as `ip -j` prints it, both families.
fn foreign_routes(ns: &Netns) -> (String, String) {
    let v4 = ns.ip(&["-j", "route", "show", "table", "all"]);
    let v6 = ns.ip(&["-j", "-6", "route", "show", "table", "all"]);
    let strip = |json: String| -> String {
        let routes: Vec<serde_json::Value> = serde_json::from_str(&json).expect("ip -j json");
        let kept: Vec<_> = routes
            .into_iter()
            .filter(|r| r["protocol"] != "80" && r["protocol"] != 80)
            .collect();
        serde_json::to_string(&kept).expect("json")
    };
    (strip(v4), strip(v6))
}

/// podroute's routes as `ip route show proto 80` prints them (without the proto, which
/// the filter implies).
fn podroute_routes(ns: &Netns) -> Vec<String> {
    let mut lines: Vec<String> = ns
        .ip(&["route", "show", "proto", "80"])
        .lines()
        .chain(ns.ip(&["-6", "route", "show", "proto", "80"]).lines())
        .map(|l| l.trim().to_owned())
        .collect();
    lines.sort();
    lines
}

fn lab_desired() -> BTreeMap<IpNetwork, RouteIntent> {
    BTreeMap::from([
        (net("10.244.1.0/24"), RouteIntent::Blackhole),
        (net("10.244.2.0/24"), via("198.18.0.2")),
        // A node in the second rack: its IP is not on a connected subnet.
        (net("10.244.3.0/24"), via("198.18.1.3")),
        (net("fd00:10:244:2::/64"), via("fd00:198:18::2")),
    ])
}

#[tokio::test]
#[ignore = "needs root: run by make test"]
async fn reconcile_installs_is_idempotent_and_removes() {
    let ns = node_namespace();
    let mut reconciler = RouteReconciler::new(ns.netlink().await, PROTO);

    let report = reconciler
        .reconcile(&lab_desired(), true)
        .await
        .expect("reconcile");
    assert_eq!(report.plan.create.len(), 4);
    assert!(report.plan.replace.is_empty());
    assert_eq!(
        podroute_routes(&ns),
        vec![
            "10.244.2.0/24 via 198.18.0.2 dev fabric0",
            "10.244.3.0/24 via 198.18.0.254 dev fabric0",
            "blackhole 10.244.1.0/24",
            "fd00:10:244:2::/64 via fd00:198:18::2 dev fabric0 metric 1024 pref medium",
        ]
    );

    let second = reconciler
        .reconcile(&lab_desired(), true)
        .await
        .expect("reconcile");
    assert!(
        second.plan.is_noop(),
        "second run must write nothing: {:?}",
        second.plan
    );
    assert_eq!(reconciler.counters().created, 4);

    let mut fewer = lab_desired();
    fewer.remove(&net("10.244.3.0/24"));
    let third = reconciler.reconcile(&fewer, true).await.expect("reconcile");
    assert_eq!(third.plan.delete.len(), 1);
    assert!(
        !podroute_routes(&ns)
            .iter()
            .any(|r| r.starts_with("10.244.3.0/24"))
    );
}

#[tokio::test]
#[ignore = "needs root: run by make test"]
async fn foreign_routes_are_untouched_and_collisions_counted() {
    let ns = node_namespace();
    let before = foreign_routes(&ns);
    let mut reconciler = RouteReconciler::new(ns.netlink().await, PROTO);

    let mut desired = lab_desired();
    // node-9's CIDR is already routed by a static route: a collision.
    desired.insert(net("10.244.9.0/24"), via("198.18.0.9"));
    let report = reconciler
        .reconcile(&desired, true)
        .await
        .expect("reconcile");
    assert_eq!(report.plan.collisions, vec![net("10.244.9.0/24")]);
    assert_eq!(reconciler.counters().collisions, 1);
    reconciler
        .reconcile(&desired, true)
        .await
        .expect("reconcile");
    assert_eq!(
        reconciler.counters().collisions,
        1,
        "a standing collision is counted once"
    );

    // Removing everything podroute owns must leave the others exactly as they were.
    reconciler
        .reconcile(&BTreeMap::new(), true)
        .await
        .expect("reconcile");
    assert!(podroute_routes(&ns).is_empty());
    assert_eq!(foreign_routes(&ns), before);
}

/// The race the create-exclusive write closes: another program adds a route for a destination
/// after the reconciler's dump and before its write. The write must fail, not overwrite.
#[tokio::test]
#[ignore = "needs root: run by make test"]
async fn a_create_never_overwrites_a_route_that_appeared_after_the_dump() {
    let ns = node_namespace();
    let handle = ns.netlink().await;
    let destination = net("10.244.7.0/24");
    let target = KernelTarget::Gateway {
        gateway: "198.18.0.7".parse().expect("ip"),
        oif: serde_json::from_str::<serde_json::Value>(&ns.ip(&["-j", "link", "show", "fabric0"]))
            .ok()
            .and_then(|links| links[0]["ifindex"].as_u64())
            .and_then(|i| u32::try_from(i).ok())
            .expect("fabric0 index"),
    };
    // Appears "after the dump": same destination and metric, another protocol.
    ns.ip(&[
        "route",
        "add",
        "10.244.7.0/24",
        "via",
        "198.18.0.254",
        "proto",
        "static",
    ]);
    let before = foreign_routes(&ns);
    let (written, errors) =
        kernel::write_all(&handle, &[(destination, target)], PROTO, WriteMode::Create).await;
    assert_eq!(written, 0);
    assert!(
        errors.len() == 1 && errors[0].is_exists(),
        "expected EEXIST: {errors:?}"
    );
    assert_eq!(foreign_routes(&ns), before, "the foreign route was changed");

    // The reconciler, seeing it at its next dump, counts a collision and leaves it alone.
    let mut reconciler = RouteReconciler::new(handle, PROTO);
    let report = reconciler
        .reconcile(&BTreeMap::from([(destination, via("198.18.0.7"))]), true)
        .await
        .expect("reconcile");
    assert_eq!(report.plan.collisions, vec![destination]);
    assert_eq!(foreign_routes(&ns), before);
}

#[tokio::test]
#[ignore = "needs root: run by make test"]
async fn routes_deleted_by_someone_else_are_restored_and_counted() {
    let ns = node_namespace();
    let mut reconciler = RouteReconciler::new(ns.netlink().await, PROTO);
    reconciler
        .reconcile(&lab_desired(), true)
        .await
        .expect("reconcile");

    ns.ip(&["route", "del", "10.244.2.0/24", "proto", "80"]);
    let report = reconciler
        .reconcile(&lab_desired(), true)
        .await
        .expect("reconcile");
    assert_eq!(report.restored, vec![net("10.244.2.0/24")]);
    assert_eq!(reconciler.counters().restored, 1);
    assert!(
        podroute_routes(&ns)
            .iter()
            .any(|r| r.starts_with("10.244.2.0/24 via 198.18.0.2"))
    );
}

#[tokio::test]
#[ignore = "needs root: run by make test"]
async fn start_up_adopts_existing_routes_and_keeps_stale_ones_until_view_complete() {
    let ns = node_namespace();
    // Left by a previous agent run: one still wanted, one stale.
    ns.ip(&[
        "route",
        "add",
        "10.244.2.0/24",
        "via",
        "198.18.0.2",
        "dev",
        "fabric0",
        "proto",
        "80",
    ]);
    ns.ip(&[
        "route",
        "add",
        "10.244.8.0/24",
        "via",
        "198.18.0.8",
        "dev",
        "fabric0",
        "proto",
        "80",
    ]);
    let desired = BTreeMap::from([(net("10.244.2.0/24"), via("198.18.0.2"))]);
    let mut reconciler = RouteReconciler::new(ns.netlink().await, PROTO);

    let early = reconciler
        .reconcile(&desired, false)
        .await
        .expect("reconcile");
    assert!(
        early.plan.is_noop(),
        "adoption writes nothing: {:?}",
        early.plan
    );
    assert_eq!(early.plan.kept_stale, vec![net("10.244.8.0/24")]);
    assert_eq!(podroute_routes(&ns).len(), 2);

    let complete = reconciler
        .reconcile(&desired, true)
        .await
        .expect("reconcile");
    assert_eq!(complete.plan.delete.len(), 1);
    assert_eq!(
        podroute_routes(&ns),
        vec!["10.244.2.0/24 via 198.18.0.2 dev fabric0"]
    );
}

#[tokio::test]
#[ignore = "needs root: run by make test"]
async fn unreachable_next_hop_is_reported_not_installed() {
    let ns = node_namespace();
    let mut reconciler = RouteReconciler::new(ns.netlink().await, PROTO);
    let desired = BTreeMap::from([(net("10.244.7.0/24"), via("100.64.0.7"))]);
    let report = reconciler
        .reconcile(&desired, true)
        .await
        .expect("reconcile");
    assert_eq!(
        report.unresolvable,
        vec![(net("10.244.7.0/24"), "100.64.0.7".parse().expect("ip"))]
    );
    assert!(podroute_routes(&ns).is_empty());
}

/// `ip -j` output of the routes of podroute's protocol through `dev`, both families.
fn routes_via_device(ns: &Netns, dev: &str) -> (String, String) {
    let show = |family: &str| {
        ns.ip(&[family, "-j", "route", "show", "dev", dev, "proto", "80"])
            .trim()
            .to_owned()
    };
    (show("-4"), show("-6"))
}

#[tokio::test]
#[ignore = "needs root: run by make test"]
async fn cni_pod_host_routes_in_own_pod_cidr_survive_stale_removal() {
    let ns = node_namespace();
    // What the podroute CNI plugin leaves for a pod: a host veth and host routes to the pod's
    // addresses through it, of podroute's protocol (issue 5).
    ns.ip(&[
        "link", "add", "pr0a1b2c", "type", "veth", "peer", "name", "pod0",
    ]);
    ns.ip(&["link", "set", "pod0", "up"]);
    ns.ip(&["link", "set", "pr0a1b2c", "up"]);
    ns.ip(&[
        "route",
        "add",
        "10.244.1.7/32",
        "dev",
        "pr0a1b2c",
        "scope",
        "link",
        "proto",
        "80",
    ]);
    ns.ip(&[
        "-6",
        "route",
        "add",
        "fd00:10:244:1::7/128",
        "dev",
        "pr0a1b2c",
        "proto",
        "80",
    ]);
    // A device host route of podroute's protocol outside the own pod CIDRs is not a pod's:
    // it stays the agent's and goes as stale.
    ns.ip(&[
        "link",
        "add",
        "pr0stale0",
        "type",
        "veth",
        "peer",
        "name",
        "pod1",
    ]);
    ns.ip(&["link", "set", "pod1", "up"]);
    ns.ip(&["link", "set", "pr0stale0", "up"]);
    ns.ip(&[
        "route",
        "add",
        "10.244.8.7/32",
        "dev",
        "pr0stale0",
        "scope",
        "link",
        "proto",
        "80",
    ]);
    let before = routes_via_device(&ns, "pr0a1b2c");
    assert!(
        before.0.contains("10.244.1.7") && before.1.contains("fd00:10:244:1::7"),
        "seeded: {before:?}"
    );

    let mut desired = lab_desired();
    desired.insert(net("fd00:10:244:1::/64"), RouteIntent::Blackhole);
    let mut reconciler = RouteReconciler::new(ns.netlink().await, PROTO);
    for _ in 0..2 {
        reconciler
            .reconcile(&desired, true)
            .await
            .expect("reconcile");
    }

    assert_eq!(
        routes_via_device(&ns, "pr0a1b2c"),
        before,
        "the pod's host routes must be untouched"
    );
    assert_eq!(
        routes_via_device(&ns, "pr0stale0"),
        ("[]".to_owned(), "[]".to_owned()),
        "a device host route outside the own pod CIDRs is the agent's and stale"
    );
    assert_eq!(reconciler.counters().errors, 0);
    assert_eq!(reconciler.counters().deleted, 1);
}
