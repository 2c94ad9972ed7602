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

/// The router's protocol line for `node`'s `address` (IPv4 or IPv6, as `router::bird_config`
/// writes it), with `extra` inside its braces.
fn with_neighbor_option(text: &str, node: &str, address: &str, extra: &str) -> String {
    let fam = if address.contains(':') { "v6" } else { "v4" };
    let head = format!("protocol bgp {node}_{fam} from lab_{fam} {{ neighbor {address} as 64512;");
    let line = format!("{head} }}");
    assert!(text.contains(&line), "no {line:?} in\n{text}");
    text.replace(&line, &format!("{head} {extra} }}"))
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
/// the mesh session alone; with `gracefulRestart: {enabled: false}` the router sees no
/// graceful restart capability and withdraws the node's pod CIDR as soon as its agent dies.
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
    let mut agents = agents(&lab);
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

    let router_state = || {
        format!(
            "{:?}\n{}\n{}",
            lab.router_exec(&["show", "protocols", "all", "node1_v4"]),
            status(&lab, "node1"),
            logs()
        )
    };
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
        router_state,
    );
    let after = peer_status(&status(&lab, "node1"), "198.18.0.2").expect("mesh");
    for field in ["establishedCount", "sinceUnixSeconds"] {
        assert_eq!(
            after[field], mesh[field],
            "mesh restarted ({field}): {after}"
        );
    }

    // `enabled: false`: the session restarts without the capability, and node1's crash
    // (kill -9) makes BIRD withdraw its pod CIDR at once instead of keeping it stale for a
    // restart time. (With graceful restart on, the same crash keeps it: zero_loss.rs kills
    // an agent -9 and the router's probes to its pods carry on.)
    let count = router_peer(&lab, "node1").expect("router")["establishedCount"].clone();
    apply(
        &lab,
        "tor",
        &tor("  gracefulRestart:\n    enabled: false\n"),
    )
    .expect("BGPPeer tor without graceful restart");
    let advertised_gr = || {
        lab.router_exec(&["show", "protocols", "all", "node1_v4"])
            .ok()
            .and_then(|t| {
                let (_, theirs) = t.split_once("Neighbor capabilities")?;
                let theirs = theirs.split_once("Session:").map_or(theirs, |(c, _)| c);
                Some(theirs.contains("Graceful restart"))
            })
    };
    wait_for(
        "the router session to restart without graceful restart",
        || {
            advertised_gr() == Some(false)
                && router_peer(&lab, "node1")
                    .is_some_and(|p| p["established"] == true && p["establishedCount"] != count)
        },
        router_state,
    );
    let pod_cidr = || {
        lab.router_exec(&["show", "route", "10.244.1.0/24"])
            .unwrap_or_default()
    };
    wait_for(
        "BIRD to have node1's pod CIDR again",
        || pod_cidr().contains("via 198.18.0.1"),
        || format!("{}\n{}", pod_cidr(), logs()),
    );
    agents[0]
        .kill(nix::sys::signal::Signal::SIGKILL)
        .expect("kill -9");
    // At once: well inside the 30 s a restart time would keep it.
    assert!(
        podroute_lab::lab::wait_until(std::time::Duration::from_secs(5), || {
            !pod_cidr().contains("10.244.1.0/24")
        }),
        "BIRD kept node1's pod CIDR after its crash: {}\n{:?}",
        pod_cidr(),
        lab.router_exec(&["show", "protocols", "all", "node1_v4"])
    );
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

/// BIRD's configuration for fabric host `name` (router ID `id`, its fabric IPv4 address)
/// speaking from `address` in AS `asn`: one eBGP session per `(protocol, neighbor, neighbor
/// AS, options)`, everything imported and exported with next hop self, what it learns into
/// its kernel.
fn bird_host_config(
    lab: &Lab,
    (name, id): (&str, &str),
    address: &str,
    asn: u32,
    sessions: &[(&str, &str, u32, &str)],
) -> String {
    let log = lab.dir().join(format!("bird-{name}.log"));
    let fam = if address.contains(':') {
        "ipv6"
    } else {
        "ipv4"
    };
    let mut text = format!(
        "log \"{log}\" all;\nrouter id {id};\nprotocol device {{ }}\n\
         protocol kernel {{ {fam} {{ import none; export all; }}; }}\n",
        log = log.display(),
    );
    for (proto, neighbor, neighbor_as, options) in sessions {
        text.push_str(&format!(
            "protocol bgp {proto} {{\n  local {address} as {asn};\n  neighbor {neighbor} as {neighbor_as};\n  \
             {options}\n  connect retry time 1;\n  error wait time 1, 5;\n  \
             {fam} {{ import all; export all; next hop self; }};\n}}\n"
        ));
    }
    text
}

/// GTSM (`gtsm: true`) over IPv4 or IPv6 (`ipv6`). node1 (rack 0) has a GTSM BGPPeer to the
/// lab's BIRD, on its own segment, with `ttl security`: that session comes up. Its second GTSM
/// BGPPeer is a BIRD one hop further away, on rack 1 behind the fabric namespace (which
/// forwards), configured for GTSM across that hop (`multihop 2; ttl security on`, so it takes
/// node1's packets): node1 never establishes with it, because BIRD's packets arrive with TTL
/// (hop limit) 254, and node1 counts BIRD's connections it closed for it.
fn gtsm_refuses_a_peer_one_hop_further_away(tag: &str, ipv6: bool) {
    // The far router's IPv4 address puts it on rack 1 (and is its router ID).
    const FAR_V4: &str = "198.18.1.241";
    let (near, node1, far) = if ipv6 {
        ("fd00:198:18::fe", "fd00:198:18::1", "fd00:198:18:1::f1")
    } else {
        (ROUTER, "198.18.0.1", FAR_V4)
    };
    let lab = Lab::up(
        &LabConfig::new(lab_name(tag), 1)
            .racks(2)
            .ipv6(ipv6)
            .tor(podroute_lab::Tor::Bird),
    )
    .expect("lab up");
    install_crds(&lab);
    reconfigure_router(&lab, |text| {
        with_neighbor_option(&text, "node1", node1, "ttl security on;")
    });
    let mut far_addrs = vec![format!("{FAR_V4}/24")];
    if ipv6 {
        far_addrs.push(format!("{far}/64"));
    }
    lab.add_fabric_host("far", &far_addrs)
        .expect("far router's namespace");
    let far_bird = spawn_bird(
        &lab,
        "far",
        &bird_host_config(
            &lab,
            ("far", FAR_V4),
            far,
            65300,
            &[("node1", node1, 64512, "multihop 2;\n  ttl security on;")],
        ),
    );
    for (name, address, asn) in [("near", near, 64512), ("far", far, 65300)] {
        apply(
            &lab,
            name,
            &peer(
                name,
                &format!("  peerAddress: {address}\n  peerASNumber: {asn}\n  gtsm: true\n"),
            ),
        )
        .expect("BGPPeer");
    }
    let agents = agents(&lab);
    let logs = || joined_logs(&agents);
    let near_established =
        || peer_status(&status(&lab, "node1"), near).is_some_and(|p| p["established"] == true);
    let lab_protocol = format!("node1_{}", if ipv6 { "v6" } else { "v4" });
    wait_for(
        "node1's GTSM session with the directly connected BIRD",
        || {
            near_established()
                && lab
                    .router_exec(&["show", "protocols", &lab_protocol])
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
    // BIRD's connections to node1 were closed by their SYN's TTL, before any session state.
    let refused = || {
        metric(
            &lab,
            "node1",
            "podroute_bgp_rejected_connections_total{reason=\"gtsm\"}",
        )
    };
    wait_for(
        "node1 to close the far BIRD's connections for GTSM",
        || refused().is_some_and(|n| n > 0.0),
        || format!("{:?}\n{}", refused(), logs()),
    );
    // Both sides try all along (BIRD every second, node1 every few seconds): 10 s without
    // a session.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < until {
        if let Some(p) = peer_status(&status(&lab, "node1"), far) {
            assert_ne!(p["established"], true, "node1 took TTL < 255: {p}");
        }
        let bird = birdc(&lab, "far", &["show", "protocols", "node1"]);
        assert!(!bird.contains("Established"), "{bird}");
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let near_now = peer_status(&status(&lab, "node1"), near).expect("near");
    assert_eq!(
        (
            near_now["established"].as_bool(),
            near_now["establishedCount"].as_u64()
        ),
        (Some(true), Some(1)),
        "the direct session carried on: {near_now}\n{}",
        logs()
    );
    drop(far_bird);
}

#[test]
#[ignore = "needs root: run by make test"]
fn gtsm_over_ipv4_takes_a_neighbour_and_never_a_peer_one_hop_away() {
    gtsm_refuses_a_peer_one_hop_further_away("g", false);
}

#[test]
#[ignore = "needs root: run by make test"]
fn gtsm_over_ipv6_takes_a_neighbour_and_never_a_peer_one_hop_away() {
    gtsm_refuses_a_peer_one_hop_further_away("g6", true);
}

/// Two racks of the lab, each its own segment and subnet: node1 on 198.18.0.0/24, node2 on
/// 198.18.1.0/24, each with its rack's AS (a Node annotation), the mesh off. Each rack's
/// BIRD ToR is on its rack's subnet in its own AS, the two ToRs cabled to each other (a
/// link of their own) and eBGP peers over it; each node is peered (BGPPeer by rack label)
/// with its own ToR only. Each ToR learns its node's pod CIDR via the node's IP; each node
/// the other rack's via its own ToR (next hop self there); pods ping each other both ways,
/// through the ToRs (the fabric namespace, which routes between the racks' subnets, has no
/// pod routes). One node per rack: with two nodes of one AS behind one ToR, each would drop
/// the other's routes (its own AS in the path) without allowas-in or AS override on the ToR.
#[test]
#[ignore = "needs root: run by make test"]
fn two_racks_on_their_own_subnets_reach_each_other_through_their_tors() {
    let mut lab = Lab::up(&LabConfig::new(lab_name("r"), 2).racks(2)).expect("lab up");
    // (rack, node, node IP, node AS, ToR, ToR IP, ToR AS)
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
            "198.18.1.2",
            65102,
            "torb",
            "198.18.1.242",
            65202,
        ),
    ];
    for (node, ip) in [("node1", "198.18.0.1"), ("node2", "198.18.1.2")] {
        assert_eq!(lab.node(node).expect("node").ipv4.to_string(), ip);
    }
    for (_, _, _, _, tor, tor_ip, _) in racks {
        lab.add_fabric_host(tor, &[format!("{tor_ip}/24")])
            .expect("ToR namespace");
    }
    let ip = |s: &str| s.parse::<std::net::Ipv4Addr>().expect("address");
    lab.link_fabric_hosts(("tora", ip(racks[0].5)), ("torb", ip(racks[1].5)))
        .expect("ToR link");
    let mut routers = Vec::new();
    for (i, (rack, node, node_ip, node_as, tor, tor_ip, tor_as)) in racks.iter().enumerate() {
        let other = racks[1 - i];
        routers.push(spawn_bird(
            &lab,
            tor,
            &bird_host_config(
                &lab,
                (tor, tor_ip),
                tor_ip,
                *tor_as,
                &[
                    ("node", node_ip, *node_as, "direct;"),
                    ("tor", other.5, other.6, "direct;"),
                ],
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
                && podroute_routes(&lab, "node2").contains("10.244.1.0/24 via 198.18.1.242")
        },
        explain,
    );
    // Each ToR has its node's pod CIDR with the node's IP as next hop, and the other
    // rack's from the other ToR, over their link.
    for (i, (_, _, node_ip, _, tor, _, _)) in racks.iter().enumerate() {
        let other = racks[1 - i];
        let own = format!("10.244.{}.0/24", i + 1);
        let mine = birdc(&lab, tor, &["show", "route", &own]);
        assert!(mine.contains(&format!("via {node_ip}")), "{tor}: {mine}");
        let theirs = birdc(
            &lab,
            tor,
            &["show", "route", &format!("10.244.{}.0/24", 2 - i)],
        );
        assert!(
            theirs.contains(&format!("via {} on l-{}", other.5, other.4)),
            "{tor}: {theirs}"
        );
    }
    // No mesh: the nodes have no session with each other.
    assert!(peer_status(&status(&lab, "node1"), "198.18.1.2").is_none());
    for (from, to) in [(&pod_a, &pod_b), (&pod_b, &pod_a)] {
        let ping = lab
            .exec(
                &from.name,
                &["ping", "-c", "3", "-W", "2", &to.ipv4.to_string()],
            )
            .expect("ping");
        assert!(
            ping.status.success(),
            "pod {} → pod {}: {}\n{}",
            from.ipv4,
            to.ipv4,
            String::from_utf8_lossy(&ping.stdout),
            explain()
        );
    }
    drop(routers);
}
