//! BFD set on the resources, in the lab with its real kube-apiserver (needs root: run by
//! `make test`): a BGPPeer's `bfd` brings a BFD session with BIRD up and down again without
//! touching BGP; the mesh's `bfd` (BGPConfiguration) makes every node drop a cut-off node's
//! routes by BFD long before the 90 s hold timer, with no flap storm when the link is back;
//! and a killed or stopped agent keeps its routes on the other nodes (graceful restart wins
//! over the BFD Down its death causes).

use std::time::{Duration, Instant};

use podroute_lab::{Lab, LabConfig, LabProcess, Tor};

mod lab_support;

use lab_support::{
    apply, install_crds, joined_logs, peer_status, podroute_routes, spawn_agent, status, wait_for,
};

fn lab_name(tag: &str) -> String {
    format!("bf{tag}{}", std::process::id() % 100_000)
}

fn peer(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: podroute.io/v1alpha1\nkind: BGPPeer\nmetadata:\n  name: {name}\nspec:\n{spec}"
    )
}

/// Whether anything in `node`'s namespace listens on UDP 3784 (BFD).
fn bfd_port_open(lab: &Lab, node: &str) -> bool {
    lab.exec_ok(node, &["ss", "-Huln", "sport = :3784"])
        .is_ok_and(|out| !out.trim().is_empty())
}

/// BIRD's BFD state for `address` (`Up`, `Down`, `Init`, ...), if it has a session.
fn bird_bfd_state(lab: &Lab, address: &str) -> Option<String> {
    let text = lab.router_exec(&["show", "bfd", "sessions"]).ok()?;
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(address))
        .and_then(|l| l.split_whitespace().nth(2).map(str::to_owned))
}

/// The lab router's configuration plus a BFD protocol with a session to every node's IPv4
/// address (BGP in BIRD does not depend on it: BFD is what is under test here).
fn bird_with_bfd(lab: &Lab) {
    let router = lab.router().expect("router");
    let mut text = podroute_lab::router::bird_config(router.dir(), &lab.router_neighbors());
    text.push_str(
        "protocol bfd {\n  interface \"*\" { min rx interval 100 ms; min tx interval 100 ms; multiplier 3; };\n",
    );
    for node in lab.nodes() {
        text.push_str(&format!("  neighbor {} local 198.18.0.254;\n", node.ipv4));
    }
    text.push_str("}\n");
    std::fs::write(router.config_path(), text).expect("write bird.conf");
    router.reload().expect("birdc configure");
}

/// `establishedCount` and `sinceUnixSeconds` of `address` on `node`: a session that was
/// restarted changes one of them.
fn session_identity(
    lab: &Lab,
    node: &str,
    address: &str,
) -> (serde_json::Value, serde_json::Value) {
    let now = status(lab, node);
    let peer =
        peer_status(&now, address).unwrap_or_else(|| panic!("{node}: no peer {address}: {now}"));
    assert_eq!(peer["established"], true, "{node} → {address}: {now}");
    (
        peer["establishedCount"].clone(),
        peer["sinceUnixSeconds"].clone(),
    )
}

/// A BGPPeer toward BIRD: adding `bfd` starts BFD (the node opens UDP 3784 only now) and
/// BIRD's session to each node comes Up; a value the schema refuses is refused; removing
/// `bfd` ends it (BIRD sees it go down, the node closes UDP 3784) and adding it again brings
/// it back — and none of these changes restarts the router's or the mesh's BGP session.
#[test]
#[ignore = "needs root: run by make test"]
fn a_bgppeer_turns_bfd_with_bird_on_and_off_without_restarting_bgp() {
    let lab = Lab::up(&LabConfig::new(lab_name("p"), 2).tor(Tor::Bird)).expect("lab up");
    install_crds(&lab);
    bird_with_bfd(&lab);
    let tor = "  peerAddress: 198.18.0.254\n  peerASNumber: 64512\n  holdTimeSeconds: 9\n";
    apply(&lab, "tor", &peer("tor", tor)).expect("BGPPeer tor");
    let nodes = lab.nodes().to_vec();
    let agents: Vec<LabProcess> = nodes.iter().map(|n| spawn_agent(&lab, n, &[])).collect();
    let logs = || joined_logs(&agents);
    let sessions = [
        ("node1", "198.18.0.254"),
        ("node1", "198.18.0.2"),
        ("node2", "198.18.0.254"),
    ];
    wait_for(
        "the router and mesh sessions",
        || {
            sessions.iter().all(|(node, address)| {
                peer_status(&status(&lab, node), address).is_some_and(|p| p["established"] == true)
            })
        },
        || format!("{}\n{}", status(&lab, "node1"), logs()),
    );
    for node in &nodes {
        assert!(
            !bfd_port_open(&lab, &node.name),
            "{}: no peer wants BFD yet",
            node.name
        );
    }
    let before: Vec<_> = sessions
        .iter()
        .map(|(node, address)| session_identity(&lab, node, address))
        .collect();

    let with_bfd = format!("{tor}  bfd:\n    minRxMilliseconds: 100\n    minTxMilliseconds: 100\n");
    apply(&lab, "tor", &peer("tor", &with_bfd)).expect("BGPPeer tor with bfd");
    wait_for(
        "BFD Up with BIRD on every node, on both ends",
        || {
            nodes.iter().all(|n| {
                peer_status(&status(&lab, &n.name), "198.18.0.254")
                    .is_some_and(|p| p["bfd"] == "up")
                    && bird_bfd_state(&lab, &n.ipv4.to_string()).as_deref() == Some("Up")
            })
        },
        || {
            format!(
                "{:?}\n{}\n{}",
                lab.router_exec(&["show", "bfd", "sessions"]),
                status(&lab, "node1"),
                logs()
            )
        },
    );
    for node in &nodes {
        assert!(
            bfd_port_open(&lab, &node.name),
            "{}: BFD listens now",
            node.name
        );
    }
    // The mesh has no `bfd`: its session runs without.
    let mesh = peer_status(&status(&lab, "node1"), "198.18.0.2").expect("mesh");
    assert_eq!(mesh["bfd"], "off", "{mesh}");

    // The API server refuses what BFD cannot run with, naming the field.
    let refused = apply(
        &lab,
        "tor-bad",
        &peer("tor", &format!("{tor}  bfd:\n    multiplier: 0\n")),
    )
    .expect_err("multiplier 0 refused");
    assert!(refused.contains("multiplier must be 1..255"), "{refused}");

    apply(&lab, "tor", &peer("tor", tor)).expect("BGPPeer tor without bfd");
    wait_for(
        "BFD off on every node, and BIRD's sessions down",
        || {
            nodes.iter().all(|n| {
                peer_status(&status(&lab, &n.name), "198.18.0.254")
                    .is_some_and(|p| p["bfd"] == "off")
                    && bird_bfd_state(&lab, &n.ipv4.to_string()).as_deref() != Some("Up")
            })
        },
        || {
            format!(
                "{:?}\n{}\n{}",
                lab.router_exec(&["show", "bfd", "sessions"]),
                status(&lab, "node1"),
                logs()
            )
        },
    );

    // No peer wants BFD any more: the port is closed again.
    wait_for(
        "UDP 3784 closed on every node",
        || nodes.iter().all(|n| !bfd_port_open(&lab, &n.name)),
        logs,
    );

    // Wanted again while something else holds node1's UDP 3784: BFD cannot start there, and
    // tries again by itself (no configuration change) once the port is free.
    let mut squatter = lab
        .spawn(
            "node1",
            "udp-3784",
            "python3",
            &[
                "-c",
                "import socket, time\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
                 s.bind(('198.18.0.1', 3784))\nprint('bound', flush=True)\ntime.sleep(600)",
            ],
            &[],
        )
        .expect("squatter");
    wait_for(
        "the squatter to hold UDP 3784",
        || squatter.log().contains("bound"),
        || squatter.log(),
    );
    apply(&lab, "tor", &peer("tor", &with_bfd)).expect("BGPPeer tor with bfd again");
    wait_for(
        "node1's BFD start to fail",
        || {
            agents[0]
                .log()
                .contains("opening the BFD sockets (UDP 3784) failed")
        },
        logs,
    );
    let _ = squatter.terminate();
    wait_for(
        "BFD Up again on every node, with UDP 3784 open",
        || {
            nodes.iter().all(|n| {
                bfd_port_open(&lab, &n.name)
                    && peer_status(&status(&lab, &n.name), "198.18.0.254")
                        .is_some_and(|p| p["bfd"] == "up")
                    && bird_bfd_state(&lab, &n.ipv4.to_string()).as_deref() == Some("Up")
            })
        },
        || format!("{}\n{}", status(&lab, "node1"), logs()),
    );

    for ((node, address), before) in sessions.iter().zip(&before) {
        assert_eq!(
            &session_identity(&lab, node, address),
            before,
            "{node} → {address} was restarted by a BFD change\n{}",
            logs()
        );
    }
}

/// The `default` BGPConfiguration: the mesh with the default 90 s hold time and `bfd` (YAML
/// flow style), or none.
fn mesh_configuration(bfd: Option<&str>) -> String {
    let bfd = bfd.map_or(String::new(), |b| format!("    bfd: {b}\n"));
    format!(
        "apiVersion: podroute.io/v1alpha1\nkind: BGPConfiguration\nmetadata:\n  name: default\nspec:\n  nodeToNodeMesh:\n    holdTimeSeconds: 90\n{bfd}"
    )
}

/// A 3-node mesh, first without BFD; then BFD turned on (`bfd`) in the live BGPConfiguration,
/// which brings BFD Up everywhere without restarting any BGP session. Returns once every
/// session is Established with BFD Up and every node has every route.
fn bfd_mesh(tag: &str, bfd: &str) -> (Lab, Vec<LabProcess>) {
    let lab = Lab::up(&LabConfig::new(lab_name(tag), 3)).expect("lab up");
    install_crds(&lab);
    apply(&lab, "mesh", &mesh_configuration(None)).expect("BGPConfiguration");
    let nodes = lab.nodes().to_vec();
    let agents: Vec<LabProcess> = nodes.iter().map(|n| spawn_agent(&lab, n, &[])).collect();
    wait_for(
        "every mesh session Established, every route in",
        || mesh_whole(&lab, "off"),
        || format!("{}\n{}", status(&lab, "node1"), joined_logs(&agents)),
    );
    let before: Vec<_> = session_identities(&lab);
    for node in &nodes {
        assert!(
            !bfd_port_open(&lab, &node.name),
            "{}: no BFD asked for",
            node.name
        );
    }
    apply(&lab, "mesh-bfd", &mesh_configuration(Some(bfd))).expect("BGPConfiguration with bfd");
    wait_for(
        "every mesh session with BFD Up",
        || mesh_whole(&lab, "up"),
        || format!("{}\n{}", status(&lab, "node1"), joined_logs(&agents)),
    );
    assert_eq!(
        session_identities(&lab),
        before,
        "turning BFD on in the BGPConfiguration restarted a session\n{}",
        joined_logs(&agents)
    );
    (lab, agents)
}

/// Every node's sessions to the others with their [`session_identity`].
fn session_identities(lab: &Lab) -> Vec<(serde_json::Value, serde_json::Value)> {
    let nodes = lab.nodes();
    nodes
        .iter()
        .flat_map(|n| {
            nodes
                .iter()
                .filter(|o| o.name != n.name)
                .map(|o| session_identity(lab, &n.name, &o.ipv4.to_string()))
        })
        .collect()
}

/// Every node has a session to every other, Established with BFD `bfd` (`up`, `off`), and
/// its route.
fn mesh_whole(lab: &Lab, bfd: &str) -> bool {
    let nodes = lab.nodes();
    nodes.iter().all(|n| {
        let now = status(lab, &n.name);
        let routes = podroute_routes(lab, &n.name);
        nodes.iter().filter(|o| o.name != n.name).all(|o| {
            peer_status(&now, &o.ipv4.to_string())
                .is_some_and(|p| p["established"] == true && p["bfd"] == bfd)
                && routes.contains(&route_via(o))
        })
    })
}

fn route_via(node: &podroute_lab::LabNode) -> String {
    format!("{} via {}", node.pod_cidrs()[0], node.ipv4)
}

/// Every ordered pair of nodes with the `establishedCount` of that session.
fn established_counts(lab: &Lab) -> Vec<(String, String, serde_json::Value)> {
    let nodes = lab.nodes();
    let mut counts = Vec::new();
    for n in nodes {
        let now = status(lab, &n.name);
        for o in nodes.iter().filter(|o| o.name != n.name) {
            let address = o.ipv4.to_string();
            let count = peer_status(&now, &address)
                .map_or(serde_json::Value::Null, |p| p["establishedCount"].clone());
            counts.push((n.name.clone(), address, count));
        }
    }
    counts
}

/// node1's fabric link cut: node2 and node3 drop node1's routes because BFD said Down (they
/// sent Cease/BFD Down, 6/10), well inside the 90 s hold time, and keep their own session;
/// the link back: every session comes back exactly once (no flap storm).
#[test]
#[ignore = "needs root: run by make test"]
fn a_cut_node_is_dropped_by_bfd_and_comes_back_without_flapping() {
    let (lab, agents) = bfd_mesh("c", "{}");
    let logs = || joined_logs(&agents);
    let nodes = lab.nodes().to_vec();
    let (node1, others) = (&nodes[0], &nodes[1..]);
    let before = established_counts(&lab);
    let inner = session_identity(&lab, "node2", &nodes[2].ipv4.to_string());

    lab.link_down("node1").expect("cut node1");
    let cut = Instant::now();
    // wait_for gives up after 60 s, before a 90 s hold timer could have fired.
    wait_for(
        "node2 and node3 to drop node1's routes by BFD",
        || {
            others.iter().all(|o| {
                let peer = peer_status(&status(&lab, &o.name), &node1.ipv4.to_string());
                !podroute_routes(&lab, &o.name).contains(&route_via(node1))
                    && peer.is_some_and(|p| {
                        p["bfd"] == "down"
                            && p["established"] == false
                            && p["lastError"].as_str().is_some_and(|e| {
                                e.contains("NOTIFICATION sent: cease: BFD down (6/10)")
                            })
                    })
            })
        },
        || {
            format!(
                "{}\n{}\n{}",
                status(&lab, "node2"),
                status(&lab, "node3"),
                logs()
            )
        },
    );
    println!(
        "node1's routes dropped {:?} after the cut (not asserted)",
        cut.elapsed()
    );
    assert_eq!(
        session_identity(&lab, "node2", &nodes[2].ipv4.to_string()),
        inner,
        "node2 ↔ node3 untouched"
    );

    lab.link_up("node1").expect("reconnect node1");
    wait_for(
        "the whole mesh back",
        || mesh_whole(&lab, "up"),
        || format!("{}\n{}", status(&lab, "node2"), logs()),
    );
    // Long enough for a flap (BFD damping holds a second Up back 2 s) to show.
    std::thread::sleep(Duration::from_secs(10));
    assert!(mesh_whole(&lab, "up"), "still whole\n{}", logs());
    let after = established_counts(&lab);
    for ((node, address, was), (_, _, now)) in before.iter().zip(&after) {
        let involves_node1 = node == "node1" || *address == node1.ipv4.to_string();
        let expected = was.as_u64().expect("count") + u64::from(involves_node1);
        assert_eq!(
            now.as_u64(),
            Some(expected),
            "{node} → {address}: Established {was} times before the cut, {now} after\n{}",
            logs()
        );
    }
}

/// Polls node2's and node3's kernel for node1's route for `how_long`; panics if it is ever
/// missing.
fn routes_stay(lab: &Lab, how_long: Duration, what: &str) {
    let nodes = lab.nodes();
    let start = Instant::now();
    while start.elapsed() < how_long {
        for o in &nodes[1..] {
            assert!(
                podroute_routes(lab, &o.name).contains(&route_via(&nodes[0])),
                "{what}: {} dropped node1's route after {:?}\n{}",
                o.name,
                start.elapsed(),
                status(lab, &o.name)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Strict BFD on the mesh; node1's agent killed -9, then stopped with SIGTERM, each time
/// started again: BFD on node2 and node3 goes Down (killed) or AdminDown (stopped), yet
/// neither ever drops node1's route — graceful restart wins, since node1's kernel closed the
/// BGP connections itself.
#[test]
#[ignore = "needs root: run by make test"]
fn a_killed_or_stopped_agent_keeps_its_routes_on_the_other_nodes() {
    // Strict: a BFD Down always finds the session to reset (not strict, it may find it
    // Idle between reconnects and skip it), and the restarted agent's BGP waits for BFD.
    let (lab, mut agents) = bfd_mesh("g", "{strict: true}");
    let nodes = lab.nodes().to_vec();
    let node1 = nodes[0].ipv4.to_string();
    for (how, expected_bfd) in [("kill -9", "down"), ("SIGTERM", "admin_down")] {
        if how == "kill -9" {
            agents[0]
                .kill(nix::sys::signal::Signal::SIGKILL)
                .expect("kill -9");
            agents[0].wait().expect("reaped");
        } else {
            agents[0].terminate().expect("SIGTERM");
        }
        // Several BFD Detection Times (300 ms × 3) pass with the agent gone.
        routes_stay(&lab, Duration::from_secs(6), how);
        for o in &nodes[1..] {
            let now = status(&lab, &o.name);
            let peer = peer_status(&now, &node1).expect("peer node1");
            assert_eq!(
                peer["bfd"], expected_bfd,
                "{how}: {} saw BFD so: {now}",
                o.name
            );
            assert_ne!(
                peer["staleRoutes"], 0,
                "{how}: held as stale by graceful restart: {now}"
            );
        }
        agents[0] = spawn_agent(&lab, &nodes[0], &[]);
        let back = Instant::now();
        while !mesh_whole(&lab, "up") {
            assert!(
                back.elapsed() < Duration::from_secs(60),
                "{how}: the mesh never came back\n{}",
                joined_logs(&agents)
            );
            routes_stay(&lab, Duration::from_millis(500), how);
        }
    }
}
