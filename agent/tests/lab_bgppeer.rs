//! BGPPeer and BGPConfiguration against the lab's real kube-apiserver (needs root: run by
//! `make test`): the generated CRDs install, their schema and CEL rules refuse what can be
//! seen from the object alone, and the agent peers through a BGPPeer.

use podroute_lab::{Lab, LabConfig};

mod lab_support;

use lab_support::{apply, install_crds, joined_logs, peer, peer_status, status, wait_for};

fn lab_name(tag: &str) -> String {
    format!("bp{tag}{}", std::process::id() % 100_000)
}

#[test]
#[ignore = "needs root: run by make test"]
fn the_schema_refuses_what_it_can_see_and_takes_the_rest() {
    let lab = Lab::up(&LabConfig::new(lab_name("s"), 1)).expect("lab up");
    install_crds(&lab);

    let valid = [
        (
            "tor-v4",
            "  peerAddress: 198.18.0.254\n  peerASNumber: 64512\n  import:\n  - prefix: 10.99.0.0/16\n    le: 24\n  maxPrefixes:\n    limit: 100\n    action: Cease\n    restartAfterSeconds: 30\n",
        ),
        (
            "tor-v6",
            "  peerAddress: fd00:198:18::fe\n  peerASNumber: 65001\n  password:\n    name: tor\n    key: password\n  nodeSelector:\n    matchLabels:\n      rack: a\n",
        ),
        (
            "any-as",
            "  peerAddress: 198.18.0.253\n  anyPeerAS: true\n  gracefulRestart:\n    enabled: false\n",
        ),
        (
            "reflectors",
            "  peerSelector:\n    matchExpressions:\n    - key: route-reflector\n      operator: Exists\n",
        ),
    ];
    for (name, spec) in valid {
        apply(&lab, name, &peer(name, spec)).unwrap_or_else(|e| panic!("{name}: {e}"));
    }

    let invalid = [
        (
            "bad-address",
            "  peerAddress: 198.18.0.300\n  peerASNumber: 64512\n",
            "peerAddress must be a unicast",
        ),
        (
            "loopback",
            "  peerAddress: 127.0.0.1\n  peerASNumber: 64512\n",
            "peerAddress must be a unicast",
        ),
        (
            "as-zero",
            "  peerAddress: 198.18.0.254\n  peerASNumber: 0\n",
            "peerASNumber must be 1..4294967295",
        ),
        (
            "as-trans",
            "  peerAddress: 198.18.0.254\n  peerASNumber: 23456\n",
            "AS_TRANS",
        ),
        (
            "no-as",
            "  peerAddress: 198.18.0.254\n",
            "needs exactly one of peerASNumber and anyPeerAS",
        ),
        (
            "as-and-any",
            "  peerAddress: 198.18.0.254\n  peerASNumber: 65001\n  anyPeerAS: true\n",
            "needs exactly one of peerASNumber and anyPeerAS",
        ),
        (
            "any-nodes",
            "  peerSelector: {}\n  anyPeerAS: true\n",
            "anyPeerAS is for routers",
        ),
        (
            "restart-time",
            "  peerAddress: 198.18.0.254\n  peerASNumber: 1\n  gracefulRestart:\n    restartTimeSeconds: 4096\n",
            "restartTimeSeconds must be 1..4095",
        ),
        (
            "both",
            "  peerAddress: 198.18.0.254\n  peerASNumber: 1\n  peerSelector: {}\n",
            "exactly one of peerAddress",
        ),
        ("neither", "  gtsm: true\n", "exactly one of peerAddress"),
        (
            "host-bits",
            "  peerAddress: 198.18.0.254\n  peerASNumber: 1\n  import:\n  - prefix: 10.99.1.0/16\n",
            "network address in CIDR form",
        ),
        (
            "le-too-long",
            "  peerAddress: 198.18.0.254\n  peerASNumber: 1\n  import:\n  - prefix: 10.99.0.0/16\n    le: 33\n",
            "32 or 128 bits",
        ),
        (
            "ge-above-le",
            "  peerAddress: 198.18.0.254\n  peerASNumber: 1\n  import:\n  - prefix: 10.99.0.0/16\n    ge: 24\n    le: 20\n",
            "ge must not be longer than le",
        ),
        (
            "hold-2",
            "  peerAddress: 198.18.0.254\n  peerASNumber: 1\n  holdTimeSeconds: 2\n",
            "holdTimeSeconds must be 0 or 3",
        ),
        (
            "bad-action",
            "  peerAddress: 198.18.0.254\n  peerASNumber: 1\n  maxPrefixes:\n    limit: 10\n    action: Explode\n",
            "Unsupported value",
        ),
        (
            "restart-without-cease",
            "  peerAddress: 198.18.0.254\n  peerASNumber: 1\n  maxPrefixes:\n    limit: 10\n    action: Warn\n    restartAfterSeconds: 5\n",
            "Cease action only",
        ),
        (
            "bad-operator",
            "  peerSelector:\n    matchExpressions:\n    - key: rack\n      operator: In\n",
            "In and NotIn need values",
        ),
    ];
    for (name, spec, message) in invalid {
        let refused = apply(&lab, name, &peer(name, spec))
            .expect_err(&format!("{name} must be refused by the API server"));
        assert!(refused.contains(message), "{name}: {refused}");
    }

    // BGPConfiguration: a singleton named default.
    let config = |name: &str| {
        format!(
            "apiVersion: podroute.io/v1alpha1\nkind: BGPConfiguration\nmetadata:\n  name: {name}\nspec:\n  asNumber: 64512\n  nodeToNodeMesh:\n    enabled: false\n"
        )
    };
    apply(&lab, "config-default", &config("default")).expect("default");
    let refused = apply(&lab, "config-other", &config("other")).expect_err("not default");
    assert!(refused.contains("named default"), "{refused}");

    // `kubectl get` shows the printer columns.
    let table = lab.kubectl(&["get", "bgppeers"]).expect("get bgppeers");
    let header = table.lines().next().unwrap_or_default();
    for column in ["NAME", "PEER", "AS", "AGE"] {
        assert!(header.contains(column), "{table}");
    }
    assert!(
        table.contains("198.18.0.254") && table.contains("64512"),
        "{table}"
    );
}

/// A router peered through a BGPPeer: BIRD's sessions come up and it learns every node's pod
/// CIDR via that node's IP; adding a second BGPPeer, an unusable one (its Secret is missing)
/// and deleting them touches neither the router's session nor the mesh session (their
/// Established counts stay as they were).
#[test]
#[ignore = "needs root: run by make test"]
fn a_bgppeer_peers_the_router_and_other_changes_leave_its_session_alone() {
    let lab =
        Lab::up(&LabConfig::new(lab_name("r"), 2).tor(podroute_lab::Tor::Bird)).expect("lab up");
    install_crds(&lab);
    apply(
        &lab,
        "tor",
        &peer(
            "tor",
            "  peerAddress: 198.18.0.254\n  peerASNumber: 64512\n  holdTimeSeconds: 9\n",
        ),
    )
    .expect("BGPPeer tor");
    let nodes = lab.nodes().to_vec();
    let agents: Vec<_> = nodes
        .iter()
        .map(|n| lab_support::spawn_agent(&lab, n, &[]))
        .collect();
    let logs = || joined_logs(&agents);

    wait_for(
        "BIRD to learn every pod CIDR via its node",
        || {
            let routes = lab.router_exec(&["show", "route"]).unwrap_or_default();
            routes.contains("10.244.1.0/24") && routes.contains("10.244.2.0/24")
        },
        || format!("{:?}\n{}", lab.router_exec(&["show", "protocols"]), logs()),
    );
    for node in &nodes {
        let cidr = node.pod_cidrs()[0].to_string();
        let route = lab
            .router_exec(&["show", "route", &cidr])
            .expect("birdc show route");
        assert!(
            route.contains(&format!("via {}", node.ipv4)),
            "{cidr} not via {}: {route}",
            node.ipv4
        );
    }

    wait_for(
        "node1's router and mesh sessions",
        || {
            let now = status(&lab, "node1");
            ["198.18.0.254", "198.18.0.2"]
                .iter()
                .all(|a| peer_status(&now, a).is_some_and(|p| p["established"] == true))
        },
        || format!("{}\n{}", status(&lab, "node1"), logs()),
    );
    // The same, cluster-wide: node1's BGPNodeStatus, owned by its Node.
    let node_status = || -> serde_json::Value {
        lab.kubectl(&["get", "bgpnodestatus", "node1", "-o", "json"])
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default()
    };
    wait_for(
        "node1's BGPNodeStatus to show both sessions Established",
        || {
            let object = node_status();
            let peers = object["status"]["peers"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            object["status"]["establishedPeers"] == 2
                && ["198.18.0.254", "198.18.0.2"].iter().all(|a| {
                    peers
                        .iter()
                        .any(|p| p["address"] == *a && p["state"] == "Established")
                })
                // node2 announced its pod CIDR: received, and accepted by the mesh rule.
                && peers.iter().any(|p| {
                    p["address"] == "198.18.0.2"
                        && p["receivedPrefixes"].as_u64() >= Some(1)
                        && p["acceptedRoutes"].as_u64() >= Some(1)
                })
        },
        || format!("{}\n{}", node_status(), logs()),
    );
    let owner = &node_status()["metadata"]["ownerReferences"][0];
    assert_eq!(
        (owner["kind"].as_str(), owner["name"].as_str()),
        (Some("Node"), Some("node1")),
        "{owner}"
    );
    let before = status(&lab, "node1");
    let tor = peer_status(&before, "198.18.0.254").expect("router session");
    let mesh = peer_status(&before, "198.18.0.2").expect("mesh session");
    assert_eq!(tor["established"], true, "{before}");

    // An unusable BGPPeer is reported and left out; a usable one is added, then removed.
    apply(
        &lab,
        "needs-secret",
        &peer(
            "needs-secret",
            "  peerAddress: 198.18.0.253\n  peerASNumber: 65009\n  password:\n    name: podroute-bgp-passwords\n    key: rack-b\n",
        ),
    )
    .expect("BGPPeer needs-secret");
    wait_for(
        "the missing Secret to be reported",
        || {
            status(&lab, "node1")["invalidPeers"]["needs-secret"]
                .as_str()
                .is_some_and(|why| why.contains("podroute-bgp-passwords"))
        },
        || format!("{}\n{}", status(&lab, "node1"), logs()),
    );
    assert!(peer_status(&status(&lab, "node1"), "198.18.0.253").is_none());
    // ... and told to operators as a Warning Event on the Node.
    wait_for(
        "a BGPConfigRejected event about needs-secret on node1",
        || {
            lab.kubectl(&[
                "get",
                "events.events.k8s.io",
                "-n",
                "default",
                "--field-selector",
                "reason=BGPConfigRejected,regarding.name=node1,type=Warning",
                "-o",
                "jsonpath={.items[*].note}",
            ])
            .is_ok_and(|notes| {
                notes.contains("BGPPeer/needs-secret not used on this node")
                    && notes.contains("podroute-bgp-passwords")
            })
        },
        || {
            lab.kubectl(&["get", "events.events.k8s.io", "-A", "-o", "wide"])
                .unwrap_or_default()
        },
    );
    apply(
        &lab,
        "spare",
        &peer(
            "spare",
            "  peerAddress: 198.18.0.252\n  peerASNumber: 65010\n",
        ),
    )
    .expect("BGPPeer spare");
    wait_for(
        "the new BGPPeer's session",
        || peer_status(&status(&lab, "node1"), "198.18.0.252").is_some(),
        || format!("{}\n{}", status(&lab, "node1"), logs()),
    );
    lab.kubectl(&["delete", "bgppeer", "spare", "needs-secret"])
        .expect("delete");
    wait_for(
        "the deleted BGPPeers to go",
        || {
            let now = status(&lab, "node1");
            peer_status(&now, "198.18.0.252").is_none()
                && now["invalidPeers"]
                    .as_object()
                    .is_some_and(|o| o.is_empty())
        },
        || format!("{}\n{}", status(&lab, "node1"), logs()),
    );

    let after = status(&lab, "node1");
    for (before, address) in [(&tor, "198.18.0.254"), (&mesh, "198.18.0.2")] {
        let now = peer_status(&after, address).expect("still configured");
        assert_eq!(now["established"], true, "{address}: {after}");
        // A restarted session is a new peer whose count starts again at 1, like the one
        // before: the time of its last state change tells them apart.
        for field in ["establishedCount", "sinceUnixSeconds"] {
            assert_eq!(
                now[field],
                before[field],
                "{address} was restarted ({field}): {after}\n{}",
                logs()
            );
        }
    }

    // The mesh turned off in the BGPConfiguration: the mesh sessions go, the router's stays.
    apply(
        &lab,
        "mesh-off",
        "apiVersion: podroute.io/v1alpha1\nkind: BGPConfiguration\nmetadata:\n  name: default\nspec:\n  nodeToNodeMesh:\n    enabled: false\n",
    )
    .expect("BGPConfiguration");
    wait_for(
        "the mesh session to stop",
        || peer_status(&status(&lab, "node1"), "198.18.0.2").is_none(),
        || format!("{}\n{}", status(&lab, "node1"), logs()),
    );
    let now = peer_status(&status(&lab, "node1"), "198.18.0.254").expect("router");
    assert_eq!(now["established"], true);
    for field in ["establishedCount", "sinceUnixSeconds"] {
        assert_eq!(now[field], tor[field], "{field}: {}", logs());
    }
}

/// Writes the lab's BIRD configuration with TCP-MD5 `password` on every session and reloads it.
fn bird_password(lab: &Lab, password: &str) {
    let router = lab.router().expect("router");
    let text = podroute_lab::router::bird_config(router.dir(), &lab.router_neighbors()).replace(
        " as 64512; }",
        &format!(" as 64512; password \"{password}\"; }}"),
    );
    std::fs::write(router.config_path(), text).expect("write bird.conf");
    router.reload().expect("birdc configure");
}

/// Creates or replaces Secret kube-system/`name` with key `tor` = `password`.
fn secret(lab: &Lab, name: &str, password: &str) {
    let yaml = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: kube-system\nstringData:\n  tor: {password}\n"
    );
    apply(lab, &format!("secret-{name}"), &yaml).expect("apply Secret");
}

/// The password comes from a Secret the shipped RBAC lets the agent read: right → session;
/// rotated on both ends → that session re-keyed, the mesh session untouched (its Established
/// count); wrong → no session; a Secret the Role does not name → reported as forbidden. The
/// password appears nowhere: agent logs, /status, /metrics, command line, environment.
#[test]
#[ignore = "needs root: run by make test"]
fn secret_passwords_key_rotate_and_never_leak() {
    let lab =
        Lab::up(&LabConfig::new(lab_name("p"), 2).tor(podroute_lab::Tor::Bird)).expect("lab up");
    install_crds(&lab);
    let rbac = concat!(env!("CARGO_MANIFEST_DIR"), "/../manifests/rbac.yaml");
    lab.kubectl(&["apply", "-f", rbac]).expect("apply RBAC");
    let kubeconfig = lab
        .service_account_kubeconfig("kube-system", "podroute")
        .expect("SA kubeconfig");
    let sa = kubeconfig.display().to_string();
    let denied = lab.kubectl(&["--kubeconfig", &sa, "get", "secrets", "-n", "kube-system"]);
    assert!(denied.is_err(), "the agent must not list every Secret");

    let (first, second, wrong) = ("first-pw-4821", "second-pw-9377", "wrong-pw-1650");
    bird_password(&lab, first);
    secret(&lab, "podroute-bgp-passwords", first);
    apply(
        &lab,
        "tor",
        &peer(
            "tor",
            "  peerAddress: 198.18.0.254\n  peerASNumber: 64512\n  password:\n    name: podroute-bgp-passwords\n    key: tor\n",
        ),
    )
    .expect("BGPPeer tor");
    let nodes = lab.nodes().to_vec();
    let agents: Vec<_> = nodes
        .iter()
        .map(|n| lab_support::spawn_agent_with(&lab, n, &n.name, &kubeconfig, &[]))
        .collect();
    let logs = || joined_logs(&agents);
    let tor = |lab: &Lab| peer_status(&status(lab, "node1"), "198.18.0.254");
    let established = |lab: &Lab| tor(lab).is_some_and(|p| p["established"] == true);
    wait_for(
        "the router session with the Secret's password, and the mesh",
        || {
            established(&lab)
                && peer_status(&status(&lab, "node1"), "198.18.0.2")
                    .is_some_and(|p| p["established"] == true)
        },
        || format!("{}\n{}", status(&lab, "node1"), logs()),
    );
    let before = status(&lab, "node1");
    let mesh_before = peer_status(&before, "198.18.0.2").expect("mesh");

    // Rotation: the router first, then the Secret; the session comes back with the new key.
    bird_password(&lab, second);
    secret(&lab, "podroute-bgp-passwords", second);
    // The session is restarted (a new one: its count starts again) and comes back up.
    wait_for(
        "the router session re-keyed",
        || {
            agents[0]
                .log()
                .contains("peer's password or GTSM changed; restarting its session")
                && established(&lab)
        },
        || format!("{}\n{}", status(&lab, "node1"), logs()),
    );
    let mesh = peer_status(&status(&lab, "node1"), "198.18.0.2").expect("mesh");
    for field in ["establishedCount", "sinceUnixSeconds"] {
        assert_eq!(
            mesh[field], mesh_before[field],
            "the mesh session was restarted ({field})"
        );
    }
    assert_eq!(mesh["established"], true);

    // A wrong password: the session goes and does not come back.
    secret(&lab, "podroute-bgp-passwords", wrong);
    wait_for(
        "the session with the wrong password to end",
        || !established(&lab),
        || format!("{}\n{}", status(&lab, "node1"), logs()),
    );
    let window = std::time::Instant::now();
    while window.elapsed() < std::time::Duration::from_secs(10) {
        assert!(
            !established(&lab),
            "a session with the wrong password came up"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }

    // A Secret the Role does not name cannot be read: reported, nothing else changes.
    secret(&lab, "other-secret", first);
    apply(
        &lab,
        "other",
        &peer(
            "other",
            "  peerAddress: 198.18.0.253\n  peerASNumber: 65001\n  password:\n    name: other-secret\n    key: tor\n",
        ),
    )
    .expect("BGPPeer other");
    wait_for(
        "the unreadable Secret to be reported",
        || {
            status(&lab, "node1")["invalidPeers"]["other"]
                .as_str()
                .is_some_and(|w| w.contains("forbidden"))
        },
        || format!("{}\n{}", status(&lab, "node1"), logs()),
    );

    // Nowhere to be seen.
    let metrics = lab
        .exec_ok("node1", &["curl", "-sf", "http://127.0.0.1:9180/metrics"])
        .expect("metrics");
    let status_text = status(&lab, "node1").to_string();
    let pid = lab
        .exec_ok("node1", &["pgrep", "-f", "podroute-agent"])
        .expect("pgrep");
    let pid = pid.lines().next().expect("agent pid").trim().to_owned();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline");
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("environ");
    for password in [first, second, wrong] {
        for (place, text) in [
            ("logs", logs()),
            ("/metrics", metrics.clone()),
            ("/status", status_text.clone()),
            (
                "command line",
                String::from_utf8_lossy(&cmdline).into_owned(),
            ),
            (
                "environment",
                String::from_utf8_lossy(&environ).into_owned(),
            ),
        ] {
            assert!(
                !text.contains(password),
                "the password is in the agent's {place}"
            );
        }
    }
}

/// Per-rack AS: node2 annotated with its own AS peers with node1 over eBGP and each node
/// still routes the other's pod CIDR via its node IP; the router,
/// configured for AS 64512 everywhere, sees node1 in 64512 and refuses node2's AS 65002.
#[test]
#[ignore = "needs root: run by make test"]
fn a_node_as_annotation_gives_an_ebgp_mesh_session_that_routes() {
    let lab =
        Lab::up(&LabConfig::new(lab_name("a"), 2).tor(podroute_lab::Tor::Bird)).expect("lab up");
    lab.kubectl(&["annotate", "node", "node2", "podroute.io/as-number=65002"])
        .expect("annotate");
    install_crds(&lab);
    apply(
        &lab,
        "tor",
        &peer(
            "tor",
            "  peerAddress: 198.18.0.254\n  peerASNumber: 64512\n",
        ),
    )
    .expect("BGPPeer tor");
    let nodes = lab.nodes().to_vec();
    let agents: Vec<_> = nodes
        .iter()
        .map(|n| lab_support::spawn_agent(&lab, n, &[]))
        .collect();
    let logs = || joined_logs(&agents);
    wait_for(
        "routes both ways over the eBGP session",
        || {
            lab_support::podroute_routes(&lab, "node1").contains("10.244.2.0/24 via 198.18.0.2")
                && lab_support::podroute_routes(&lab, "node2")
                    .contains("10.244.1.0/24 via 198.18.0.1")
        },
        logs,
    );
    let peer = peer_status(&status(&lab, "node1"), "198.18.0.2").expect("mesh peer");
    assert_eq!(peer["established"], true);
    wait_for(
        "BIRD to refuse node2's AS (Bad peer AS) and take node1's",
        || {
            lab.router_exec(&["show", "protocols", "all", "node2_v4"])
                .is_ok_and(|t| t.contains("Bad peer AS"))
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
}

/// Route reflectors, Calico's way: mesh off (BGPConfiguration), node1 and node2 labelled
/// and annotated as reflectors of one cluster, one `peerSelector` BGPPeer peering every node
/// with them. Every node gets every pod CIDR via the node that owns it; a client runs
/// sessions to the two reflectors only; with one reflector's agent stopped (graceful restart
/// off, so nothing is kept as stale) every other route stays, through the other reflector.
#[test]
#[ignore = "needs root: run by make test"]
fn two_route_reflectors_carry_every_route_and_one_is_enough() {
    const NODES: u8 = 6;
    let lab = Lab::up(&LabConfig::new(lab_name("r"), NODES)).expect("lab up");
    for rr in ["node1", "node2"] {
        lab.kubectl(&["label", "node", rr, "route-reflector=true"])
            .expect("label");
        lab.kubectl(&[
            "annotate",
            "node",
            rr,
            "podroute.io/route-reflector-cluster-id=244.0.0.1",
        ])
        .expect("annotate");
    }
    install_crds(&lab);
    apply(
        &lab,
        "default",
        "apiVersion: podroute.io/v1alpha1\nkind: BGPConfiguration\nmetadata:\n  name: default\n\
         spec:\n  nodeToNodeMesh:\n    enabled: false\n",
    )
    .expect("BGPConfiguration");
    apply(
        &lab,
        "to-reflectors",
        &peer(
            "to-reflectors",
            "  peerSelector:\n    matchLabels:\n      route-reflector: \"true\"\n",
        ),
    )
    .expect("BGPPeer to-reflectors");
    let nodes = lab.nodes().to_vec();
    let mut agents: Vec<_> = nodes
        .iter()
        .map(|n| lab_support::spawn_agent(&lab, n, &["--graceful-restart-time", "0s"]))
        .collect();
    let route = |n: u8| format!("10.244.{n}.0/24 via 198.18.0.{n}");
    let has_routes = |node: u8, owners: &[u8]| {
        let routes = lab_support::podroute_routes(&lab, &format!("node{node}"));
        owners
            .iter()
            .filter(|o| **o != node)
            .all(|o| routes.contains(&route(*o)))
    };
    let all: Vec<u8> = (1..=NODES).collect();
    wait_for(
        "every node to have every pod CIDR via its node",
        || all.iter().all(|n| has_routes(*n, &all)),
        || joined_logs(&agents),
    );
    // A client peers with the two reflectors only, and each gave it every other route.
    let accepted =
        |rr: &str| peer_status(&status(&lab, "node3"), rr).map(|p| p["acceptedRoutes"].clone());
    wait_for(
        "node3's status to count the reflectors' routes",
        || {
            ["198.18.0.1", "198.18.0.2"]
                .iter()
                .all(|rr| accepted(rr) == Some(serde_json::json!(NODES - 1)))
        },
        || format!("{}\n{}", status(&lab, "node3"), joined_logs(&agents)),
    );
    let node3 = status(&lab, "node3");
    let peers: Vec<String> = node3["bgpPeers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p["address"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(peers, ["198.18.0.1", "198.18.0.2"], "{node3}");

    // Reflector node1 stops: its own CIDR goes, nothing else does, at any moment.
    agents[0].terminate().expect("stop node1's agent");
    let rest: Vec<u8> = (2..=NODES).collect();
    let gone = || {
        (3..=NODES)
            .all(|n| !lab_support::podroute_routes(&lab, &format!("node{n}")).contains(&route(1)))
    };
    let start = std::time::Instant::now();
    while !gone() || start.elapsed() < std::time::Duration::from_secs(3) {
        for n in &rest {
            assert!(
                has_routes(*n, &rest),
                "node{n} lost a route after reflector node1 stopped\n{}",
                joined_logs(&agents)
            );
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "node1's CIDR never went\n{}",
            joined_logs(&agents)
        );
    }

    // Reflector node1 comes back: the clients get its CIDR again and the second path of
    // every other route, and write nothing else to the kernel (the next hops did not move).
    let writes = |n: u8| kernel_writes(&lab, &format!("node{n}"));
    let before: Vec<f64> = (3..=NODES).map(writes).collect();
    agents[0] = lab_support::spawn_agent(&lab, &nodes[0], &["--graceful-restart-time", "0s"]);
    wait_for(
        "every node to have every route again, and two paths of each at node3",
        || {
            all.iter().all(|n| has_routes(*n, &all))
                && accepted("198.18.0.1") == Some(serde_json::json!(NODES - 1))
        },
        || format!("{}\n{}", status(&lab, "node3"), joined_logs(&agents)),
    );
    let after: Vec<f64> = (3..=NODES).map(writes).collect();
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        assert_eq!(a - b, 1.0, "node{}: only node1's CIDR is written", i + 3);
    }
}

/// Every kernel route write an agent did, all operations together.
fn kernel_writes(lab: &Lab, node: &str) -> f64 {
    lab.exec_ok(node, &["curl", "-sf", "http://127.0.0.1:9180/metrics"])
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("podroute_netlink_operations_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A BGPPeer at the router's IPv6 address: the session runs over IPv6 and the router
/// learns every node's IPv6 pod CIDR via that node's IPv6 address.
#[test]
#[ignore = "needs root: run by make test"]
fn an_ipv6_bgppeer_gives_the_router_every_ipv6_pod_cidr() {
    let lab = Lab::up(
        &LabConfig::new(lab_name("6"), 2)
            .tor(podroute_lab::Tor::Bird)
            .ipv6(true),
    )
    .expect("lab up");
    install_crds(&lab);
    apply(
        &lab,
        "tor-v6",
        &peer(
            "tor-v6",
            "  peerAddress: fd00:198:18::fe\n  peerASNumber: 64512\n",
        ),
    )
    .expect("BGPPeer tor-v6");
    let nodes = lab.nodes().to_vec();
    let agents: Vec<_> = nodes
        .iter()
        .map(|n| lab_support::spawn_agent(&lab, n, &[]))
        .collect();
    let logs = || joined_logs(&agents);
    for node in &nodes {
        let cidr = node
            .pod_cidr_v6
            .expect("IPv6 pod CIDR in an IPv6 lab")
            .to_string();
        let via = format!("via {}", node.ipv6.expect("IPv6 node address"));
        wait_for(
            &format!("BIRD to learn {cidr} {via}"),
            || {
                lab.router_exec(&["show", "route", &cidr])
                    .is_ok_and(|r| r.contains(&via))
            },
            || format!("{:?}\n{}", lab.router_exec(&["show", "protocols"]), logs()),
        );
        let name = format!("{}_v6", node.name);
        let protocol = lab
            .router_exec(&["show", "protocols", &name])
            .unwrap_or_default();
        assert!(protocol.contains("Established"), "{protocol}");
    }
    let node1 = status(&lab, "node1");
    let tor = peer_status(&node1, "fd00:198:18::fe").expect("the IPv6 router session");
    assert_eq!(tor["established"], true, "{tor}");
}
