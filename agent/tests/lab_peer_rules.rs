//! BGPPeer session rules against real BIRD routers and the lab's kube-apiserver (needs
//! root: run by `make test`): any peer AS and per-peer graceful restart, the prefix limit's
//! three actions, GTSM, and two racks of per-rack AS behind their own top-of-rack routers.

use podroute_lab::{Lab, LabConfig};
use serde_json::Value;

mod lab_support;

use lab_support::{
    apply, birdc, install_crds, joined_logs, metric, peer, peer_status, podroute_routes,
    spawn_agent, spawn_bird, status, wait_for,
};

/// The lab's BIRD router (AS 64512, the nodes' AS).
const ROUTER: &str = "198.18.0.254";

fn lab_name(tag: &str) -> String {
    format!("peerrest{tag}{}", std::process::id() % 10_000)
}

/// Writes the lab router's configuration, changed by `edit`, and reloads it.
fn reconfigure_router(lab: &Lab, edit: impl FnOnce(String) -> String) {
    let router = lab.router().expect("router");
    let text = edit(podroute_lab::router::bird_config(
        router.dir(),
        &lab.router_neighbors(),
    ));
    std::fs::write(router.config_path(), text).expect("write bird.conf");
    router.reload().expect("birdc configure");
}

/// The router's protocol line for `node` (as `router::bird_config` writes it), with `extra`
/// inside its braces.
fn with_neighbor_option(text: &str, node: &str, address: &str, extra: &str) -> String {
    let line = format!("protocol bgp {node}_v4 from lab_v4 {{ neighbor {address} as 64512; }}");
    assert!(text.contains(&line), "no {line:?} in\n{text}");
    text.replace(
        &line,
        &format!("protocol bgp {node}_v4 from lab_v4 {{ neighbor {address} as 64512; {extra} }}"),
    )
}

/// A lab of `nodes` nodes with its BIRD router (AS 64512), the CRDs installed.
fn router_lab(tag: &str, nodes: u8) -> Lab {
    let lab = Lab::up(&LabConfig::new(lab_name(tag), nodes).tor(podroute_lab::Tor::Bird))
        .expect("lab up");
    install_crds(&lab);
    lab
}

/// An agent on every node.
fn agents(lab: &Lab) -> Vec<podroute_lab::LabProcess> {
    lab.nodes()
        .iter()
        .map(|n| spawn_agent(lab, n, &[]))
        .collect()
}

fn router_peer(lab: &Lab, node: &str) -> Option<Value> {
    peer_status(&status(lab, node), ROUTER)
}

fn established(lab: &Lab, node: &str) -> bool {
    router_peer(lab, node).is_some_and(|p| p["established"] == true)
}

/// A BGPPeer with `anyPeerAS` takes the router's AS from its OPEN and shows it; changing its
/// `gracefulRestart` restarts that session (the router sees the new Restart Time) and leaves
/// the mesh session alone.
#[test]
#[ignore = "needs root: run by make test"]
fn any_peer_as_is_learned_and_a_graceful_restart_change_resets_only_that_session() {
    let lab = router_lab("a", 2);
    let tor = |extra: &str| {
        peer(
            "tor",
            &format!("  peerAddress: {ROUTER}\n  anyPeerAS: true\n{extra}"),
        )
    };
    apply(&lab, "tor", &tor("")).expect("BGPPeer tor");
    let agents = agents(&lab);
    let logs = || joined_logs(&agents);
    wait_for(
        "node1's router and mesh sessions",
        || {
            established(&lab, "node1")
                && peer_status(&status(&lab, "node1"), "198.18.0.2")
                    .is_some_and(|p| p["established"] == true)
        },
        || format!("{}\n{}", status(&lab, "node1"), logs()),
    );
    let before = status(&lab, "node1");
    let router = peer_status(&before, ROUTER).expect("router");
    let mesh = peer_status(&before, "198.18.0.2").expect("mesh");
    assert_eq!(
        router["peerAS"], 64512,
        "learned from BIRD's OPEN: {router}"
    );
    // Exit status 1 while not ready: the text is what counts here.
    let text = lab
        .exec("node1", &[env!("CARGO_BIN_EXE_podroute-agent"), "status"])
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    assert!(
        text.lines()
            .any(|l| l.contains(ROUTER) && l.contains(" 64512 ")),
        "{text}"
    );
    // The agent's default: graceful restart with --graceful-restart-time (120 s).
    // What node1 advertised, not BIRD's own (listed before it).
    let restart_time = |seconds: u32| {
        lab.router_exec(&["show", "protocols", "all", "node1_v4"])
            .is_ok_and(|t| {
                t.split_once("Neighbor capabilities")
                    .is_some_and(|(_, theirs)| theirs.contains(&format!("Restart time: {seconds}")))
            })
    };
    wait_for(
        "BIRD to see a restart time of 120 s",
        || restart_time(120),
        || {
            format!(
                "{:?}",
                lab.router_exec(&["show", "protocols", "all", "node1_v4"])
            )
        },
    );

    std::thread::sleep(std::time::Duration::from_secs(1));
    apply(
        &lab,
        "tor",
        &tor("  gracefulRestart:\n    restartTimeSeconds: 30\n"),
    )
    .expect("BGPPeer tor with gracefulRestart");
    wait_for(
        "the router session to restart with a restart time of 30 s",
        || {
            restart_time(30)
                && router_peer(&lab, "node1").is_some_and(|p| {
                    p["established"] == true && p["sinceUnixSeconds"] != router["sinceUnixSeconds"]
                })
        },
        || {
            format!(
                "{:?}\n{}\n{}",
                lab.router_exec(&["show", "protocols", "all", "node1_v4"]),
                status(&lab, "node1"),
                logs()
            )
        },
    );
    let after = peer_status(&status(&lab, "node1"), "198.18.0.2").expect("mesh");
    for field in ["establishedCount", "sinceUnixSeconds"] {
        assert_eq!(
            after[field], mesh[field],
            "mesh restarted ({field}): {after}"
        );
    }
}

/// BIRD announces five prefixes the import list allows to three nodes whose BGPPeers set a
/// limit of three, one action each: Warn keeps all five and the session, DropExcess keeps
/// three, Cease ends the session (Cease/Maximum Number of Prefixes Reached) and starts it
/// again after `restartAfterSeconds`. The other nodes' sessions are untouched throughout.
#[test]
#[ignore = "needs root: run by make test"]
fn a_prefix_limit_warns_drops_the_excess_or_ceases_on_its_own_session() {
    let lab = router_lab("m", 3);
    reconfigure_router(&lab, |mut text| {
        text.push_str("protocol static extra { ipv4;");
        for n in 1..=5 {
            text.push_str(&format!(" route 10.99.{n}.0/24 blackhole;"));
        }
        text.push_str(" }\n");
        text
    });
    for (n, action) in [(1, "Warn"), (2, "DropExcess"), (3, "Cease")] {
        lab.kubectl(&[
            "label",
            "node",
            &format!("node{n}"),
            &format!("limit={action}"),
        ])
        .expect("label");
        let restart = if action == "Cease" {
            "    restartAfterSeconds: 5\n"
        } else {
            ""
        };
        apply(
            &lab,
            action,
            &peer(
                &action.to_lowercase(),
                &format!(
                    "  peerAddress: {ROUTER}\n  peerASNumber: 64512\n  nodeSelector:\n    matchLabels:\n      limit: {action}\n  import:\n  - prefix: 10.99.0.0/16\n    le: 24\n  maxPrefixes:\n    limit: 3\n    action: {action}\n{restart}"
                ),
            ),
        )
        .expect("BGPPeer");
    }
    let agents = agents(&lab);
    let logs = || joined_logs(&agents);
    let router_routes = |node: &str| {
        podroute_routes(&lab, node)
            .into_iter()
            .filter(|r| r.starts_with("10.99.") && r.ends_with(&format!("via {ROUTER}")))
            .count()
    };
    wait_for(
        "Warn: all five routes, session up; DropExcess: three, session up",
        || {
            router_routes("node1") == 5
                && router_routes("node2") == 3
                && established(&lab, "node1")
                && established(&lab, "node2")
        },
        || {
            format!(
                "{:?}\n{:?}\n{}",
                podroute_routes(&lab, "node1"),
                podroute_routes(&lab, "node2"),
                logs()
            )
        },
    );
    // `/status` is refreshed at most once a second.
    wait_for(
        "Warn and DropExcess to report the passed limit, DropExcess to hold three",
        || {
            let passed = |node: &str| {
                router_peer(&lab, node).is_some_and(|p| {
                    p["lastError"]
                        .as_str()
                        .is_some_and(|e| e.contains("prefix limit 3 passed"))
                })
            };
            passed("node1")
                && passed("node2")
                && router_peer(&lab, "node1").is_some_and(|p| p["acceptedRoutes"] == 5)
                && router_peer(&lab, "node2").is_some_and(|p| p["acceptedRoutes"] == 3)
        },
        || format!("{}\n{}", status(&lab, "node1"), status(&lab, "node2")),
    );
    wait_for(
        "Cease: node3's session ended by Cease/Maximum Number of Prefixes Reached",
        || {
            router_peer(&lab, "node3").is_some_and(|p| {
                p["lastError"].as_str().is_some_and(|e| {
                    e.contains("sent: cease: maximum number of prefixes reached (6/1)")
                })
            }) && lab
                .router_exec(&["show", "protocols", "all", "node3_v4"])
                .is_ok_and(|t| t.contains("Maximum number of prefixes reached"))
        },
        || {
            format!(
                "{}\n{:?}\n{}",
                status(&lab, "node3"),
                lab.router_exec(&["show", "protocols", "all", "node3_v4"]),
                logs()
            )
        },
    );
    let first = router_peer(&lab, "node3").expect("router")["establishedCount"]
        .as_u64()
        .unwrap_or(0);
    wait_for(
        "Cease: node3's session back after restartAfterSeconds (and ceased again)",
        || {
            router_peer(&lab, "node3")
                .and_then(|p| p["establishedCount"].as_u64())
                .is_some_and(|n| n > first)
        },
        || format!("{}\n{}", status(&lab, "node3"), logs()),
    );
    assert_eq!(
        router_routes("node3"),
        0,
        "nothing kept from a ceased session"
    );
    for node in ["node1", "node2"] {
        let p = router_peer(&lab, node).expect("router");
        assert_eq!(
            (p["established"].as_bool(), p["establishedCount"].as_u64()),
            (Some(true), Some(1)),
            "{node} untouched by node3's limit: {p}"
        );
    }
}

/// GTSM on every node's BGPPeer: BIRD sends with TTL 255 (`ttl security`) to node1 only.
/// node1's session comes up; node2's, whose packets from BIRD arrive with a lower TTL (as
/// from a router one hop further away), never does on either side: node2 drops what BIRD
/// sends on node2's connections, and closes BIRD's connections, whose SYN came with TTL < 255,
/// before anything is read from them.
#[test]
#[ignore = "needs root: run by make test"]
fn gtsm_takes_a_peer_that_sends_ttl_255_and_never_one_that_does_not() {
    let lab = router_lab("g", 2);
    reconfigure_router(&lab, |text| {
        with_neighbor_option(&text, "node1", "198.18.0.1", "ttl security on;")
    });
    apply(
        &lab,
        "tor",
        &peer(
            "tor",
            &format!("  peerAddress: {ROUTER}\n  peerASNumber: 64512\n  gtsm: true\n"),
        ),
    )
    .expect("BGPPeer tor");
    let agents = agents(&lab);
    let logs = || joined_logs(&agents);
    wait_for(
        "node1's GTSM session with BIRD",
        || {
            established(&lab, "node1")
                && lab
                    .router_exec(&["show", "protocols", "node1_v4"])
                    .is_ok_and(|t| t.contains("Established"))
        },
        || {
            format!(
                "{:?}\n{}",
                lab.router_exec(&["show", "protocols", "all"]),
                logs()
            )
        },
    );
    // node2 tries all along (BIRD retries every 5 s, node2 every few seconds): 15 s
    // without a session.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while std::time::Instant::now() < until {
        if let Some(p) = router_peer(&lab, "node2") {
            assert_ne!(p["established"], true, "node2 took TTL < 255: {p}");
        }
        let bird = lab
            .router_exec(&["show", "protocols", "node2_v4"])
            .unwrap_or_default();
        assert!(!bird.contains("Established"), "{bird}");
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    // BIRD's own connections to node2 were closed by their SYN's TTL, before any session
    // state (the minimum TTL set after the handshake would only stall them).
    let refused = metric(
        &lab,
        "node2",
        "podroute_bgp_rejected_connections_total{reason=\"gtsm\"}",
    );
    assert!(refused.is_some_and(|n| n > 0.0), "{refused:?}\n{}", logs());
    assert!(established(&lab, "node1"), "{}", logs());
}

/// The ToR of a rack: BIRD in its own AS on the fabric, eBGP with its node and with the
/// other rack's ToR, next hop self towards both, what it learns into its kernel.
fn tor_config(
    lab: &Lab,
    name: &str,
    address: &str,
    asn: u32,
    node: (&str, u32),
    other: (&str, u32),
) -> String {
    let log = lab.dir().join(format!("bird-{name}.log"));
    let session = |proto: &str, neighbor: &str, neighbor_as: u32| {
        format!(
            "protocol bgp {proto} {{\n  local {address} as {asn};\n  neighbor {neighbor} as {neighbor_as};\n  direct;\n  \
             connect retry time 1;\n  error wait time 1, 5;\n  \
             ipv4 {{ import all; export all; next hop self; }};\n}}\n"
        )
    };
    format!(
        "log \"{log}\" all;\nrouter id {address};\nprotocol device {{ }}\n\
         protocol kernel {{ ipv4 {{ import none; export all; }}; }}\n{}{}",
        session("node", node.0, node.1),
        session("tor", other.0, other.1),
        log = log.display(),
    )
}

/// Two racks, one node each with its rack's AS (a Node annotation), the mesh off, each node
/// peered (BGPPeer by rack label) with its rack's BIRD ToR only, the ToRs eBGP peers of each
/// other. Each ToR learns its node's pod CIDR via the node's IP; each node learns the other
/// rack's via its own ToR (next hop self there); a pod in rack A pings a pod in rack B.
/// The lab has one L2 fabric, so the racks share 198.18.0.0/24: what makes them racks is
/// their AS and that their routes go through the ToRs.
#[test]
#[ignore = "needs root: run by make test"]
fn two_racks_with_their_own_as_reach_each_other_through_their_tors() {
    let mut lab = Lab::up(&LabConfig::new(lab_name("r"), 2)).expect("lab up");
    let racks = [
        (
            "a",
            "node1",
            "198.18.0.1",
            65101,
            "tora",
            "198.18.0.241",
            65201,
        ),
        (
            "b",
            "node2",
            "198.18.0.2",
            65102,
            "torb",
            "198.18.0.242",
            65202,
        ),
    ];
    let mut routers = Vec::new();
    for (i, (rack, node, node_ip, node_as, tor, tor_ip, tor_as)) in racks.iter().enumerate() {
        let other = racks[1 - i];
        lab.add_fabric_host(tor, &[format!("{tor_ip}/24")])
            .expect("ToR namespace");
        routers.push(spawn_bird(
            &lab,
            tor,
            &tor_config(
                &lab,
                tor,
                tor_ip,
                *tor_as,
                (node_ip, *node_as),
                (other.5, other.6),
            ),
        ));
        lab.kubectl(&[
            "annotate",
            "node",
            node,
            &format!("podroute.io/as-number={node_as}"),
        ])
        .expect("annotate");
        lab.kubectl(&["label", "node", node, &format!("rack={rack}")])
            .expect("label");
    }
    install_crds(&lab);
    apply(
        &lab,
        "mesh-off",
        "apiVersion: podroute.io/v1alpha1\nkind: BGPConfiguration\nmetadata:\n  name: default\nspec:\n  nodeToNodeMesh:\n    enabled: false\n",
    )
    .expect("BGPConfiguration");
    for (rack, _, _, _, tor, tor_ip, tor_as) in racks {
        apply(
            &lab,
            tor,
            &peer(
                tor,
                &format!(
                    "  peerAddress: {tor_ip}\n  peerASNumber: {tor_as}\n  nodeSelector:\n    matchLabels:\n      rack: {rack}\n  import:\n  - prefix: 10.244.0.0/16\n    le: 24\n"
                ),
            ),
        )
        .expect("BGPPeer");
    }
    let pod_a = lab.add_pod("node1", "pa").expect("pod in rack A");
    let pod_b = lab.add_pod("node2", "pb").expect("pod in rack B");
    let agents = agents(&lab);
    let logs = || joined_logs(&agents);
    let explain = || {
        format!(
            "tora: {}\ntorb: {}\n{:?}\n{:?}\n{}",
            birdc(&lab, "tora", &["show", "route", "all"]),
            birdc(&lab, "torb", &["show", "route", "all"]),
            podroute_routes(&lab, "node1"),
            podroute_routes(&lab, "node2"),
            logs()
        )
    };
    wait_for(
        "each node to reach the other rack's pod CIDR through its own ToR",
        || {
            podroute_routes(&lab, "node1").contains("10.244.2.0/24 via 198.18.0.241")
                && podroute_routes(&lab, "node2").contains("10.244.1.0/24 via 198.18.0.242")
        },
        explain,
    );
    // Each ToR has its node's pod CIDR with the node's IP as next hop, and the other
    // rack's from the other ToR.
    for (tor, own, own_ip, other, other_tor) in [
        (
            "tora",
            "10.244.1.0/24",
            "198.18.0.1",
            "10.244.2.0/24",
            "198.18.0.242",
        ),
        (
            "torb",
            "10.244.2.0/24",
            "198.18.0.2",
            "10.244.1.0/24",
            "198.18.0.241",
        ),
    ] {
        let mine = birdc(&lab, tor, &["show", "route", own]);
        assert!(mine.contains(&format!("via {own_ip}")), "{tor}: {mine}");
        let theirs = birdc(&lab, tor, &["show", "route", other]);
        assert!(
            theirs.contains(&format!("via {other_tor}")),
            "{tor}: {theirs}"
        );
    }
    // No mesh: the nodes have no session with each other.
    assert!(peer_status(&status(&lab, "node1"), "198.18.0.2").is_none());
    let ping = lab
        .exec(
            "pa",
            &["ping", "-c", "3", "-W", "2", &pod_b.ipv4.to_string()],
        )
        .expect("ping");
    assert!(
        ping.status.success(),
        "pod {} → pod {}: {}\n{}",
        pod_a.ipv4,
        pod_b.ipv4,
        String::from_utf8_lossy(&ping.stdout),
        explain()
    );
    drop(routers);
}
