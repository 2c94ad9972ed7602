//! Kernel tests of the route programmer, each in a private network namespace (needs root).

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use common::Netns;
use ipnetwork::IpNetwork;
use podroute_agent::routes::{RouteIntent, RouteProgrammer};

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
    let ns = Netns::with_fabric();
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

fn programmer(ns: &Netns) -> RouteProgrammer {
    ns.enter(|| RouteProgrammer::new(PROTO).expect("programmer"))
}

fn stage_all(programmer: &mut RouteProgrammer, routes: &BTreeMap<IpNetwork, RouteIntent>) {
    for (destination, intent) in routes {
        programmer.stage(*destination, Some(intent.clone()));
    }
}

/// Waits (bounded) until the programmer hears of a kernel change that gives it work.
async fn kernel_change(programmer: &mut RouteProgrammer) {
    tokio::time::timeout(Duration::from_secs(5), programmer.kernel_changed())
        .await
        .expect("a notification within 5 s");
}

fn multipath(hops: &[&str]) -> Option<RouteIntent> {
    let hops: Vec<IpAddr> = hops.iter().map(|h| h.parse().expect("ip")).collect();
    RouteIntent::via_all(&hops)
}

/// The gateways of podroute's route to `destination`, sorted, and whether it is a
/// multipath route (`nexthop` lines) with every weight 1.
fn gateways_of(ns: &Netns, destination: &str) -> (Vec<String>, bool) {
    let family = if destination.contains(':') {
        "-6"
    } else {
        "-4"
    };
    let json = ns.ip(&["-j", family, "route", "show", destination, "proto", "80"]);
    let routes: Vec<serde_json::Value> = serde_json::from_str(&json).expect("ip -j json");
    let Some(route) = routes.first() else {
        return (Vec::new(), false);
    };
    let (mut gateways, multipath): (Vec<String>, bool) = match route["nexthops"].as_array() {
        Some(hops) => (
            hops.iter()
                .filter_map(|h| h["gateway"].as_str().map(str::to_owned))
                .collect(),
            hops.iter().all(|h| h["weight"] == 1),
        ),
        None => (
            route["gateway"]
                .as_str()
                .map(str::to_owned)
                .into_iter()
                .collect(),
            false,
        ),
    };
    gateways.sort();
    (gateways, multipath)
}

#[tokio::test]
#[ignore = "needs root: run by make test"]
async fn equal_cost_next_hops_make_one_multipath_route_that_reads_back_equal() {
    let ns = node_namespace();
    let mut programmer = programmer(&ns);
    let (v4, v6) = ("10.96.0.0/12", "fd00:10:96::/108");
    programmer.stage(net(v4), multipath(&["198.18.0.252", "198.18.0.251"]));
    programmer.stage(net(v6), multipath(&["fd00:198:18::fc", "fd00:198:18::fb"]));
    let report = programmer.flush(true).await.expect("flush");
    assert_eq!((report.created, report.errors), (2, 0), "{report:?}");
    assert_eq!(
        gateways_of(&ns, v4),
        (vec!["198.18.0.251".into(), "198.18.0.252".into()], true)
    );
    assert_eq!(
        gateways_of(&ns, v6),
        (
            vec!["fd00:198:18::fb".into(), "fd00:198:18::fc".into()],
            true
        )
    );
    // The notifications of its own writes and a full dump read both back as written.
    assert!(programmer.flush(true).await.expect("flush").is_noop());
    programmer.schedule_full_pass();
    let full = programmer.flush(true).await.expect("flush");
    assert!(full.full_pass && full.is_noop(), "{full:?}");
    assert_eq!(programmer.installed(), 2);

    // One router gone: replaced in place by its remaining next hop; and back.
    programmer.stage(net(v4), multipath(&["198.18.0.251"]));
    programmer.stage(net(v6), multipath(&["fd00:198:18::fc"]));
    let one = programmer.flush(true).await.expect("flush");
    assert_eq!(
        (one.replaced, one.created, one.deleted),
        (2, 0, 0),
        "{one:?}"
    );
    assert_eq!(gateways_of(&ns, v4), (vec!["198.18.0.251".into()], false));
    assert_eq!(
        gateways_of(&ns, v6),
        (vec!["fd00:198:18::fc".into()], false)
    );
    programmer.stage(net(v4), multipath(&["198.18.0.251", "198.18.0.252"]));
    programmer.stage(net(v6), multipath(&["fd00:198:18::fb", "fd00:198:18::fc"]));
    let back = programmer.flush(true).await.expect("flush");
    assert_eq!(
        (back.replaced, back.created, back.deleted),
        (2, 0, 0),
        "{back:?}"
    );
    assert_eq!(gateways_of(&ns, v4).0.len(), 2);
    assert_eq!(gateways_of(&ns, v6).0.len(), 2);
    programmer.schedule_full_pass();
    assert!(programmer.flush(true).await.expect("flush").is_noop());

    // A next hop without a route is left out; two behind one gateway give a plain route.
    programmer.stage(net(v4), multipath(&["198.18.0.251", "198.18.2.5"]));
    programmer.flush(true).await.expect("flush");
    assert_eq!(gateways_of(&ns, v4), (vec!["198.18.0.251".into()], false));
    programmer.stage(net(v4), multipath(&["198.18.1.3", "198.18.1.4"]));
    programmer.flush(true).await.expect("flush");
    assert_eq!(gateways_of(&ns, v4), (vec!["198.18.0.254".into()], false));
    assert_eq!(programmer.counters().errors, 0);
}

#[tokio::test]
#[ignore = "needs root: run by make test"]
async fn deltas_are_applied_exactly_and_a_second_flush_writes_nothing() {
    let ns = node_namespace();
    let before = foreign_routes(&ns);
    let mut programmer = programmer(&ns);

    stage_all(&mut programmer, &lab_desired());
    let report = programmer.flush(true).await.expect("flush");
    assert!(report.full_pass, "the first flush reads the table");
    assert_eq!((report.created, report.replaced, report.deleted), (4, 0, 0));
    assert_eq!(
        podroute_routes(&ns),
        vec![
            "10.244.2.0/24 via 198.18.0.2 dev fabric0",
            "10.244.3.0/24 via 198.18.0.254 dev fabric0",
            "blackhole 10.244.1.0/24",
            "fd00:10:244:2::/64 via fd00:198:18::2 dev fabric0 metric 1024 pref medium",
        ]
    );
    assert_eq!(programmer.installed(), 4);
    assert!(programmer.is_installed(&net("10.244.1.0/24")));

    let second = programmer.flush(true).await.expect("flush");
    assert!(
        second.is_noop(),
        "second flush must write nothing: {second:?}"
    );
    assert!(!second.full_pass);

    // Deltas: a next hop moves, a route goes, one comes, one is staged and withdrawn again.
    programmer.stage(net("10.244.2.0/24"), Some(via("198.18.0.22")));
    programmer.stage(net("10.244.3.0/24"), None);
    programmer.stage(net("10.244.4.0/24"), Some(via("198.18.0.4")));
    programmer.stage(net("10.244.5.0/24"), Some(via("198.18.0.5")));
    programmer.stage(net("10.244.5.0/24"), None);
    let third = programmer.flush(true).await.expect("flush");
    assert_eq!((third.created, third.replaced, third.deleted), (1, 1, 1));
    assert_eq!(
        podroute_routes(&ns),
        vec![
            "10.244.2.0/24 via 198.18.0.22 dev fabric0",
            "10.244.4.0/24 via 198.18.0.4 dev fabric0",
            "blackhole 10.244.1.0/24",
            "fd00:10:244:2::/64 via fd00:198:18::2 dev fabric0 metric 1024 pref medium",
        ]
    );
    assert_eq!(foreign_routes(&ns), before);
    assert_eq!(programmer.counters().errors, 0);
}

#[tokio::test]
#[ignore = "needs root: run by make test"]
async fn the_difference_to_a_full_desired_map_is_applied() {
    let ns = node_namespace();
    let mut programmer = programmer(&ns);
    programmer.stage_difference(&lab_desired());
    programmer.flush(true).await.expect("flush");
    let mut fewer = lab_desired();
    fewer.remove(&net("10.244.3.0/24"));
    programmer.stage_difference(&fewer);
    let report = programmer.flush(true).await.expect("flush");
    assert_eq!(report.deleted, 1);
    assert!(
        !podroute_routes(&ns)
            .iter()
            .any(|r| r.starts_with("10.244.3.0/24"))
    );
    programmer.stage_difference(&fewer);
    assert!(programmer.flush(true).await.expect("flush").is_noop());
}

#[tokio::test]
#[ignore = "needs root: run by make test"]
async fn foreign_routes_are_untouched_and_collisions_counted() {
    let ns = node_namespace();
    let before = foreign_routes(&ns);
    let mut programmer = programmer(&ns);

    let mut desired = lab_desired();
    // node-9's CIDR is already routed by a static route: a collision.
    desired.insert(net("10.244.9.0/24"), via("198.18.0.9"));
    stage_all(&mut programmer, &desired);
    programmer.flush(true).await.expect("flush");
    assert_eq!(programmer.collisions(), 1);
    assert_eq!(programmer.counters().collisions, 1);
    assert!(!programmer.is_installed(&net("10.244.9.0/24")));
    assert_eq!(programmer.installed(), 4);
    programmer.flush(true).await.expect("flush");
    assert_eq!(
        programmer.counters().collisions,
        1,
        "a standing collision is counted once"
    );

    // Removing everything podroute owns must leave the others exactly as they were.
    for destination in desired.keys() {
        programmer.stage(*destination, None);
    }
    let report = programmer.flush(true).await.expect("flush");
    assert_eq!(podroute_routes(&ns), Vec::<String>::new(), "{report:?}");
    assert_eq!(foreign_routes(&ns), before);
    assert_eq!(programmer.installed(), 0);
}

#[tokio::test]
#[ignore = "needs root: run by make test"]
async fn a_route_deleted_by_hand_is_repaired_through_a_notification() {
    let ns = node_namespace();
    let mut programmer = programmer(&ns);
    stage_all(&mut programmer, &lab_desired());
    programmer.flush(true).await.expect("flush");

    ns.ip(&["route", "del", "10.244.2.0/24", "proto", "80"]);
    kernel_change(&mut programmer).await;
    assert!(!programmer.is_installed(&net("10.244.2.0/24")));
    let report = programmer.flush(true).await.expect("flush");
    assert!(!report.full_pass, "repaired without a dump: {report:?}");
    assert_eq!((report.created, report.restored), (1, 1));
    assert_eq!(programmer.counters().restored, 1);
    assert!(
        podroute_routes(&ns)
            .iter()
            .any(|r| r.starts_with("10.244.2.0/24 via 198.18.0.2"))
    );

    // podroute's own writes are no news: nothing wakes the programmer.
    programmer.stage(net("10.244.4.0/24"), Some(via("198.18.0.4")));
    programmer.flush(true).await.expect("flush");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), programmer.kernel_changed())
            .await
            .is_err(),
        "woken by its own write"
    );
}

#[tokio::test]
#[ignore = "needs root: run by make test"]
async fn a_foreign_route_appearing_for_a_destination_is_left_alone_and_ours_goes() {
    let ns = node_namespace();
    let mut programmer = programmer(&ns);
    stage_all(&mut programmer, &lab_desired());
    programmer.flush(true).await.expect("flush");

    ns.ip(&[
        "route",
        "add",
        "10.244.2.0/24",
        "via",
        "198.18.0.254",
        "proto",
        "static",
        "metric",
        "100",
    ]);
    let before = foreign_routes(&ns);
    kernel_change(&mut programmer).await;
    let report = programmer.flush(true).await.expect("flush");
    assert!(!report.full_pass);
    assert_eq!(
        report.deleted, 1,
        "podroute's route there is stale: {report:?}"
    );
    assert_eq!(programmer.collisions(), 1);
    assert!(!programmer.is_installed(&net("10.244.2.0/24")));
    assert_eq!(foreign_routes(&ns), before, "the foreign route was changed");
    assert!(
        !podroute_routes(&ns)
            .iter()
            .any(|r| r.starts_with("10.244.2.0/24"))
    );

    // It goes: podroute's comes back.
    ns.ip(&["route", "del", "10.244.2.0/24", "proto", "static"]);
    kernel_change(&mut programmer).await;
    let report = programmer.flush(true).await.expect("flush");
    assert_eq!(report.created, 1, "{report:?}");
    assert_eq!(programmer.collisions(), 0);
    assert!(programmer.is_installed(&net("10.244.2.0/24")));
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
    let mut programmer = programmer(&ns);
    programmer.stage(net("10.244.2.0/24"), Some(via("198.18.0.2")));

    let early = programmer.flush(false).await.expect("flush");
    assert!(early.is_noop(), "adoption writes nothing: {early:?}");
    assert_eq!(podroute_routes(&ns).len(), 2);
    assert!(programmer.is_installed(&net("10.244.2.0/24")));
    assert!(programmer.flush(false).await.expect("flush").is_noop());

    let complete = programmer.flush(true).await.expect("flush");
    assert_eq!(complete.deleted, 1);
    assert_eq!(
        podroute_routes(&ns),
        vec!["10.244.2.0/24 via 198.18.0.2 dev fabric0"]
    );
}

#[tokio::test]
#[ignore = "needs root: run by make test"]
async fn unreachable_next_hop_is_reported_not_installed() {
    let ns = node_namespace();
    let mut programmer = programmer(&ns);
    programmer.stage(net("10.244.7.0/24"), Some(via("100.64.0.7")));
    programmer.flush(true).await.expect("flush");
    assert_eq!(programmer.unresolvable(), 1);
    assert!(!programmer.is_installed(&net("10.244.7.0/24")));
    assert!(podroute_routes(&ns).is_empty());

    // The path appears: the kernel says so, and the route follows.
    ns.ip(&[
        "route",
        "add",
        "100.64.0.0/24",
        "via",
        "198.18.0.254",
        "proto",
        "static",
    ]);
    kernel_change(&mut programmer).await;
    programmer.flush(true).await.expect("flush");
    assert_eq!(programmer.unresolvable(), 0);
    assert_eq!(
        podroute_routes(&ns),
        vec!["10.244.7.0/24 via 198.18.0.254 dev fabric0"]
    );
}

/// IPv4 drops routes through a link that goes down without telling anyone: the link's
/// notification makes the programmer check with a full pass, and it puts them back.
#[tokio::test]
#[ignore = "needs root: run by make test"]
async fn routes_the_kernel_drops_with_a_link_come_back_with_it() {
    let ns = node_namespace();
    let mut programmer = programmer(&ns);
    stage_all(&mut programmer, &lab_desired());
    programmer.flush(true).await.expect("flush");
    let installed = podroute_routes(&ns);

    ns.ip(&["link", "set", "fabric0", "down"]);
    kernel_change(&mut programmer).await;
    programmer.flush(true).await.expect("flush");
    ns.ip(&["link", "set", "fabric0", "up"]);
    // What the kernel dropped besides podroute's routes (IPv6 addresses go with the link,
    // `keep_addr_on_down=0`; static routes too): put back what the fixture had.
    ns.ip(&[
        "-6",
        "addr",
        "replace",
        "fd00:198:18::1/64",
        "dev",
        "fabric0",
        "nodad",
    ]);
    ns.ip(&[
        "route",
        "replace",
        "198.18.1.0/24",
        "via",
        "198.18.0.254",
        "proto",
        "static",
    ]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while podroute_routes(&ns) != installed {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not restored: {:?}",
            podroute_routes(&ns)
        );
        let _ = tokio::time::timeout(Duration::from_secs(2), programmer.kernel_changed()).await;
        programmer.flush(true).await.expect("flush");
    }
    assert!(programmer.counters().full_passes >= 2);
    assert!(programmer.counters().restored >= 1);
}

#[tokio::test]
#[ignore = "needs root: run by make test"]
async fn many_routes_are_installed_in_batches_and_withdrawn_to_exactly_the_own_routes() {
    const ROUTES: u32 = 50_000;
    let ns = node_namespace();
    let foreign = foreign_routes(&ns);
    let mut programmer = programmer(&ns);
    let own = lab_desired();
    stage_all(&mut programmer, &own);
    programmer.flush(true).await.expect("flush");
    let own_routes = podroute_routes(&ns);

    // /26s in 10.128.0.0/9 via two next hops, and a thousand IPv6 /64s.
    let many: Vec<IpNetwork> = (0..ROUTES)
        .map(|i| {
            IpNetwork::new(std::net::Ipv4Addr::from(0x0a80_0000 + (i << 6)).into(), 26)
                .expect("net")
        })
        .chain((0..1000u32).map(|i| {
            IpNetwork::new(
                std::net::Ipv6Addr::from(
                    0xfd00_0010_0245_0000_0000_0000_0000_0000u128 + (u128::from(i) << 64),
                )
                .into(),
                64,
            )
            .expect("net")
        }))
        .collect();
    let batches_before = programmer.counters().batches;
    for (i, destination) in many.iter().enumerate() {
        let next_hop = match (destination, i % 2) {
            (IpNetwork::V4(_), 0) => "198.18.0.2",
            (IpNetwork::V4(_), _) => "198.18.0.3",
            (IpNetwork::V6(_), _) => "fd00:198:18::2",
        };
        programmer.stage(*destination, Some(via(next_hop)));
    }
    let report = programmer.flush(true).await.expect("flush");
    assert_eq!(report.created, many.len() as u64);
    assert_eq!(programmer.installed(), many.len() + own.len());
    let counters = programmer.counters();
    let batches = counters.batches - batches_before;
    assert!(
        batches * 500 < many.len() as u64,
        "{batches} batches for {} routes",
        many.len()
    );
    let shown = ns.ip(&["route", "show", "proto", "80"]).lines().count()
        + ns.ip(&["-6", "route", "show", "proto", "80"])
            .lines()
            .count();
    assert_eq!(shown, many.len() + own.len());

    for destination in &many {
        programmer.stage(*destination, None);
    }
    let report = programmer.flush(true).await.expect("flush");
    assert_eq!(report.deleted, many.len() as u64);
    assert_eq!(podroute_routes(&ns), own_routes);
    assert_eq!(foreign_routes(&ns), foreign);
    assert_eq!(programmer.installed(), own.len());
    assert_eq!(programmer.counters().errors, 0);
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
    let mut programmer = programmer(&ns);
    stage_all(&mut programmer, &desired);
    programmer.flush(true).await.expect("flush");
    // Notifications about the plugin's routes are no news either.
    ns.ip(&["route", "del", "10.244.1.7/32", "dev", "pr0a1b2c"]);
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
    programmer.flush(true).await.expect("flush");

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
    assert_eq!(programmer.counters().errors, 0);
    assert_eq!(programmer.counters().deleted, 1);
}
