//! Interoperability of `podroute-agent`'s BGP speaker with BIRD 2, GoBGP and FRR as a static
//! external peer, in the lab (needs root: run by `make test`). BIRD is peered through
//! `--bgp-peer` flags, GoBGP and FRR through BGPPeer resources (the password from a Secret):
//! both ways give the same peer (`cluster_peers`' unit test), and the scenario runs on each.
//!
//! One dual-stack lab with one node per router kind; the router (AS 64512, iBGP, in the fabric
//! namespace) has one IPv4 and one IPv6 session with the node. Each test checks in sequence:
//! sessions Established on both sides; IPv4 and IPv6 routes both ways (the router learns the
//! node's pod CIDRs with the node IP as next hop; the node installs the router's prefixes that
//! its import list allows, not the others); an unconfigured source gets no session and is
//! counted; withdraw; router restart; link cut → hold-timer expiry (9 s) on both sides;
//! TCP-MD5 with the same password → Established, with another → never.
//!
//! Every wait is a bounded poll; the only fixed wait is the observation window in which the
//! mismatched-MD5 session must *not* come up.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use podroute_lab::{Lab, LabConfig, LabProcess, Router, Tor};

mod lab_support;
use lab_support::{metric, podroute_routes};

/// Longest wait for a session or a route.
const CONVERGE: Duration = Duration::from_secs(60);
/// Hold time the agent offers; the routers accept it, so hold expiry takes 9 s.
const HOLD_TIME: &str = "9";
/// Longest wait for hold-timer expiry (hold time plus detection and reconcile).
const HOLD_EXPIRY: Duration = Duration::from_secs(30);
/// How long a session with mismatched MD5 passwords is watched for not coming up.
const MD5_MISMATCH_WINDOW: Duration = Duration::from_secs(15);

const ROUTER_V4: &str = "198.18.0.254";
const ROUTER_V6: &str = "fd00:198:18::fe";
/// What the agent imports from the router.
const IMPORT: &str = "10.99.0.0/16:24;fd00:99::/32:64";
/// Router prefixes inside the import list ...
const ACCEPTED: [&str; 2] = ["10.99.1.0/24", "fd00:99:1::/64"];
/// ... and outside it.
const REJECTED: [&str; 2] = ["10.98.1.0/24", "fd00:98:1::/64"];

fn lab_name(tag: &str) -> String {
    format!("io{tag}{}", std::process::id() % 100_000)
}

/// Polls `check` until it holds or `timeout` passes; on timeout panics with `what` and the
/// diagnostics `explain` gathers.
fn wait_for(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> bool,
    explain: impl FnOnce() -> String,
) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if check() {
            eprintln!("{what}: after {:?}", start.elapsed());
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!(
        "timed out after {timeout:?} waiting for {what}\n{}",
        explain()
    );
}

/// The agent's `/status` on node1.
fn status(lab: &Lab) -> serde_json::Value {
    lab.exec_ok("node1", &["curl", "-sf", "http://127.0.0.1:9180/status"])
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// Peer address → established, from the agent's `/status`.
fn agent_sessions(lab: &Lab) -> BTreeMap<String, bool> {
    status(lab)["bgpPeers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["address"].as_str().unwrap_or("?").to_owned(),
                p["established"] == true,
            )
        })
        .collect()
}

/// Routes the agent keeps as stale, over its router sessions, from `/status`.
fn agent_stale_routes(lab: &Lab) -> u64 {
    status(lab)["bgpPeers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["staleRoutes"].as_u64())
        .sum()
}

/// How the test changes the router: its static routes and the TCP-MD5 password of its
/// sessions with the node, applied in the router's own way.
struct RouterControl {
    router: Router,
    node_addrs: Vec<IpAddr>,
    statics: BTreeSet<String>,
    password: Option<String>,
}

impl RouterControl {
    fn new(lab: &Lab) -> Self {
        Self {
            router: lab.router().expect("the lab has a router"),
            node_addrs: lab.nodes()[0].ips(),
            statics: BTreeSet::new(),
            password: None,
        }
    }

    fn kind(&self) -> Tor {
        self.router.kind()
    }

    /// BIRD: the lab's configuration plus static protocols and passwords; `birdc configure`.
    fn write_bird(&self, lab: &Lab) {
        let mut text =
            podroute_lab::router::bird_config(self.router.dir(), &lab.router_neighbors());
        if let Some(password) = &self.password {
            text = text.replace(
                " as 64512; }",
                &format!(" as 64512; password \"{password}\"; }}"),
            );
        }
        for (name, fam, v6) in [("itest4", "ipv4", false), ("itest6", "ipv6", true)] {
            text.push_str(&format!("protocol static {name} {{\n  {fam};\n"));
            for prefix in self.statics.iter().filter(|p| p.contains(':') == v6) {
                text.push_str(&format!("  route {prefix} blackhole;\n"));
            }
            text.push_str("}\n");
        }
        std::fs::write(self.router.config_path(), text).expect("write bird.conf");
        self.router.reload().expect("birdc configure");
    }

    fn gobgp_route(&self, verb: &str, prefix: &str) {
        let family = if prefix.contains(':') { "ipv6" } else { "ipv4" };
        self.router
            .exec(&["global", "rib", verb, "-a", family, prefix])
            .expect("gobgp global rib");
    }

    fn frr_network(&self, no: bool, prefix: &str) {
        let family = if prefix.contains(':') {
            "address-family ipv6 unicast"
        } else {
            "address-family ipv4 unicast"
        };
        let network = format!("{}network {prefix}", if no { "no " } else { "" });
        self.router
            .vtysh(&["configure terminal", "router bgp 64512", family, &network])
            .expect("vtysh network");
    }

    /// The router originates `prefix`.
    fn add(&mut self, lab: &Lab, prefix: &str) {
        self.statics.insert(prefix.to_owned());
        match self.kind() {
            Tor::Bird => self.write_bird(lab),
            Tor::Gobgp => self.gobgp_route("add", prefix),
            Tor::Frr => self.frr_network(false, prefix),
            Tor::None => {}
        }
    }

    /// The router withdraws `prefix`.
    fn remove(&mut self, lab: &Lab, prefix: &str) {
        self.statics.remove(prefix);
        match self.kind() {
            Tor::Bird => self.write_bird(lab),
            Tor::Gobgp => self.gobgp_route("del", prefix),
            Tor::Frr => self.frr_network(true, prefix),
            Tor::None => {}
        }
    }

    /// Re-applies the static routes after a router restart (which restores the lab's base
    /// configuration).
    fn reapply(&mut self, lab: &Lab) {
        let statics = std::mem::take(&mut self.statics);
        for prefix in &statics {
            self.add(lab, prefix);
        }
    }

    /// Sets the TCP-MD5 password of the router's sessions with the node.
    fn set_password(&mut self, lab: &mut Lab, password: &str) {
        self.password = Some(password.to_owned());
        match self.kind() {
            Tor::Bird => self.write_bird(lab),
            Tor::Gobgp => {
                // gobgpd (3.10) takes a password added by SIGHUP on its IPv4 session but
                // never brings the IPv6 one back, so it restarts with the password in its
                // configuration, as when an operator configures MD5 from the start.
                let mut text = std::fs::read_to_string(self.router.config_path()).expect("toml");
                for addr in &self.node_addrs {
                    let line = format!("neighbor-address = \"{addr}\"\n");
                    text = text.replace(
                        &line,
                        &format!("{line}    auth-password = \"{password}\"\n"),
                    );
                }
                std::fs::write(self.router.config_path(), text).expect("write gobgpd.toml");
                lab.restart_router_as_configured()
                    .expect("restart gobgpd with MD5");
                self.reapply(lab);
            }
            Tor::Frr => {
                let mut commands = vec!["configure terminal".to_owned(), "router bgp 64512".into()];
                commands.extend(
                    self.node_addrs
                        .iter()
                        .map(|a| format!("neighbor {a} password {password}")),
                );
                let commands: Vec<&str> = commands.iter().map(String::as_str).collect();
                self.router.vtysh(&commands).expect("vtysh password");
            }
            Tor::None => {}
        }
    }

    /// The router's sessions with the node: all established?
    fn established(&self, lab: &Lab) -> bool {
        self.router
            .sessions(&lab.router_neighbors())
            .is_ok_and(|s| {
                self.node_addrs
                    .iter()
                    .all(|a| s.iter().any(|s| s.neighbor == *a && s.established))
            })
    }

    /// None of the router's sessions with the node is established.
    fn all_down(&self, lab: &Lab) -> bool {
        self.router
            .sessions(&lab.router_neighbors())
            .is_ok_and(|s| {
                !s.iter()
                    .any(|s| self.node_addrs.contains(&s.neighbor) && s.established)
            })
    }

    /// The router's best route for `prefix` in its own words.
    fn route_text(&self, prefix: &str) -> String {
        let v6 = prefix.contains(':');
        let family = if v6 { "ipv6" } else { "ipv4" };
        let out = match self.kind() {
            Tor::Bird => self.router.exec(&["show", "route", prefix]),
            Tor::Gobgp => self.router.exec(&["global", "rib", "-a", family, prefix]),
            Tor::Frr => self
                .router
                .exec(&["show", "bgp", family, "unicast", prefix]),
            Tor::None => Ok(String::new()),
        };
        out.unwrap_or_default()
    }

    /// The router holds `prefix` with `next_hop`.
    fn has_route(&self, prefix: &str, next_hop: IpAddr) -> bool {
        let text = self.route_text(prefix);
        let network = prefix.split('/').next().unwrap_or(prefix);
        text.contains(network) && text.contains(&next_hop.to_string())
    }

    fn diagnostics(&self) -> String {
        format!(
            "router sessions:\n{}\nrouter routes:\n{}",
            self.router.sessions_text().unwrap_or_default(),
            self.router.routes_text().unwrap_or_default()
        )
    }
}

/// Where the agent's router peers come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peers {
    /// `--bgp-peer` flags (a password from a file).
    Flags,
    /// Two BGPPeers (a password from a Secret in kube-system).
    Resources,
}

/// The BGPPeers `router-v4` and `router-v6` with the same import list as the flags, and the
/// password in `password_file` (if any) through the Secret `interop-md5`.
fn apply_bgppeers(lab: &Lab, password_file: Option<&PathBuf>) {
    let write = |name: &str, yaml: String| {
        let path = lab.dir().join(format!("{name}.yaml"));
        std::fs::write(&path, yaml).expect("write object");
        lab.kubectl(&["apply", "-f", &path.display().to_string()])
            .expect("kubectl apply");
    };
    let mut password = String::new();
    if let Some(file) = password_file {
        let text = std::fs::read_to_string(file).expect("password file");
        write(
            "interop-md5",
            format!(
                "apiVersion: v1\nkind: Secret\nmetadata:\n  name: interop-md5\n  namespace: kube-system\nstringData:\n  md5: {}\n",
                text.trim()
            ),
        );
        password = "  password: {name: interop-md5, key: md5}\n".to_owned();
    }
    for (name, address) in [
        ("router-v4", ROUTER_V4.to_string()),
        ("router-v6", ROUTER_V6.to_string()),
    ] {
        write(
            name,
            format!(
                "apiVersion: podroute.io/v1alpha1\nkind: BGPPeer\nmetadata:\n  name: {name}\nspec:\n  peerAddress: \"{address}\"\n  peerASNumber: 64512\n{password}  import:\n  - {{prefix: 10.99.0.0/16, le: 24}}\n  - {{prefix: \"fd00:99::/32\", le: 64}}\n"
            ),
        );
    }
}

/// Starts the agent on node1 with the router as static peer on both families, optionally
/// with a TCP-MD5 password file, from flags or BGPPeers.
fn spawn_agent(lab: &Lab, password_file: Option<&PathBuf>, peers: Peers) -> LabProcess {
    let conflist = lab.dir().join("cni-node1.conflist");
    let extra = password_file
        .map(|p| format!(",password-file={}", p.display()))
        .unwrap_or_default();
    let mut args = vec![
        "--kubeconfig".to_owned(),
        lab.kubeconfig().display().to_string(),
        "--node-name".to_owned(),
        "node1".to_owned(),
        "--cni-conflist".to_owned(),
        conflist.display().to_string(),
        // Inside the lab directory, never the host's /run/podroute.
        "--cni-readiness-file".to_owned(),
        lab.dir().join("cni-ready").display().to_string(),
        "--reconcile-period".to_owned(),
        "2s".to_owned(),
        "--startup-grace".to_owned(),
        "20s".to_owned(),
        "--hold-time".to_owned(),
        HOLD_TIME.to_owned(),
    ];
    match peers {
        Peers::Flags => args.extend([
            "--bgp-peer".to_owned(),
            format!("address={ROUTER_V4},as=64512,import={IMPORT}{extra}"),
            "--bgp-peer".to_owned(),
            format!("address={ROUTER_V6},as=64512,import={IMPORT}{extra}"),
        ]),
        Peers::Resources => apply_bgppeers(lab, password_file),
    }
    lab.spawn(
        "node1",
        "agent",
        env!("CARGO_BIN_EXE_podroute-agent"),
        &args,
        &[("RUST_LOG", "info,podroute_agent=debug")],
    )
    .expect("spawn agent")
}

fn agent_established(lab: &Lab) -> bool {
    let sessions = agent_sessions(lab);
    sessions.len() == 2 && sessions.values().all(|up| *up)
}

fn agent_all_down(lab: &Lab) -> bool {
    let sessions = agent_sessions(lab);
    sessions.len() == 2 && sessions.values().all(|up| !*up)
}

/// The node's kernel routes learned from the router.
fn router_routes_on_node(lab: &Lab) -> BTreeSet<String> {
    podroute_routes(lab, "node1")
        .into_iter()
        .filter(|r| r.contains(" via fd00:198:18::fe") || r.contains(" via 198.18.0.254"))
        .collect()
}

fn expected_learned(prefixes: &[&str]) -> BTreeSet<String> {
    prefixes
        .iter()
        .map(|p| {
            let via = if p.contains(':') {
                ROUTER_V6
            } else {
                ROUTER_V4
            };
            format!("{p} via {via}")
        })
        .collect()
}

/// The whole sequence against one router kind.
fn interop(tor: Tor, tag: &str, peers: Peers) {
    let mut lab = Lab::up(&LabConfig::new(lab_name(tag), 1).tor(tor).ipv6(true)).expect("lab up");
    if peers == Peers::Resources {
        let crds = concat!(env!("CARGO_MANIFEST_DIR"), "/../manifests/crds.yaml");
        lab.kubectl(&["apply", "-f", crds]).expect("apply CRDs");
        lab.kubectl(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/bgppeers.podroute.io",
        ])
        .expect("CRDs established");
    }
    let node = lab.nodes()[0].clone();
    let (node_v4, node_v6) = (node.ips()[0], node.ips()[1]);
    let cidrs: Vec<String> = node.pod_cidrs().iter().map(|c| c.to_string()).collect();
    let mut ctl = RouterControl::new(&lab);
    for prefix in ACCEPTED.iter().chain(&REJECTED) {
        ctl.add(&lab, prefix);
    }
    let mut agent = spawn_agent(&lab, None, peers);
    let explain = |lab: &Lab, ctl: &RouterControl, agent: &LabProcess| {
        format!(
            "{}\nagent status: {}\nnode routes: {:?}\nagent log:\n{}",
            ctl.diagnostics(),
            status(lab),
            podroute_routes(lab, "node1"),
            agent.log()
        )
    };

    // Established, seen from both sides.
    wait_for(
        "sessions established (router and agent)",
        CONVERGE,
        || ctl.established(&lab) && agent_established(&lab),
        || explain(&lab, &ctl, &agent),
    );
    assert_eq!(
        metric(
            &lab,
            "node1",
            "podroute_bgp_sessions{peer_type=\"router\",state=\"established\"}"
        ),
        Some(2.0)
    );

    // Routes both ways, IPv4 and IPv6: the router learns the pod CIDRs with the node IPs as
    // next hop ...
    wait_for(
        "the router learns the node's pod CIDRs",
        CONVERGE,
        || ctl.has_route(&cidrs[0], node_v4) && ctl.has_route(&cidrs[1], node_v6),
        || explain(&lab, &ctl, &agent),
    );
    // ... and the node installs what the import list allows, and nothing else.
    wait_for(
        "the node installs the router's accepted prefixes",
        CONVERGE,
        || router_routes_on_node(&lab) == expected_learned(&ACCEPTED),
        || explain(&lab, &ctl, &agent),
    );
    // Metrics follow the speaker within a second.
    const REJECTED_METRIC: &str =
        "podroute_bgp_rejected_routes_total{peer_type=\"router\",reason=\"import_policy\"}";
    wait_for(
        "the prefixes outside the import list to be counted as rejected",
        CONVERGE,
        || metric(&lab, "node1", REJECTED_METRIC).unwrap_or(0.0) >= 2.0,
        || explain(&lab, &ctl, &agent),
    );

    // An unconfigured source (the API server's address) gets its connection closed at once,
    // counted, and no session.
    let before = metric(
        &lab,
        "node1",
        "podroute_bgp_rejected_connections_total{reason=\"unknown_peer\"}",
    )
    .unwrap_or(0.0);
    let _ = lab.exec(
        "cp",
        &[
            "bash",
            "-c",
            &format!("exec 3<>/dev/tcp/{node_v4}/179; sleep 0.3"),
        ],
    );
    wait_for(
        "the unconfigured source to be counted",
        CONVERGE,
        || {
            metric(
                &lab,
                "node1",
                "podroute_bgp_rejected_connections_total{reason=\"unknown_peer\"}",
            )
            .unwrap_or(0.0)
                > before
        },
        || explain(&lab, &ctl, &agent),
    );
    assert_eq!(
        agent_sessions(&lab).len(),
        2,
        "only the configured peers have sessions"
    );

    // Withdraw: the route leaves the node's kernel.
    ctl.remove(&lab, ACCEPTED[0]);
    wait_for(
        "the withdrawn IPv4 prefix to leave the node",
        CONVERGE,
        || router_routes_on_node(&lab) == expected_learned(&ACCEPTED[1..]),
        || explain(&lab, &ctl, &agent),
    );
    ctl.add(&lab, ACCEPTED[0]);
    wait_for(
        "the re-announced prefix to come back",
        CONVERGE,
        || router_routes_on_node(&lab) == expected_learned(&ACCEPTED),
        || explain(&lab, &ctl, &agent),
    );

    // Router restart: sessions drop. A router that negotiated graceful restart (FRR does by
    // default) and went away without a NOTIFICATION keeps its routes on the node as stale
    // while it restarts (RFC 4724 §4.2; before graceful restart they went at once); one that
    // sent a Cease (BIRD and GoBGP on shutdown) has them removed. Then everything comes back.
    lab.stop_router().expect("stop router");
    wait_for(
        "the agent to see the router gone",
        HOLD_EXPIRY,
        || {
            let routes = router_routes_on_node(&lab);
            agent_all_down(&lab)
                && (routes.is_empty()
                    || (routes == expected_learned(&ACCEPTED) && agent_stale_routes(&lab) == 2))
        },
        || explain(&lab, &ctl, &agent),
    );
    lab.restart_router().expect("start router");
    ctl.reapply(&lab);
    wait_for(
        "re-established after the router restart, routes back",
        CONVERGE,
        || {
            ctl.established(&lab)
                && agent_established(&lab)
                && agent_stale_routes(&lab) == 0
                && router_routes_on_node(&lab) == expected_learned(&ACCEPTED)
                && ctl.has_route(&cidrs[0], node_v4)
                && ctl.has_route(&cidrs[1], node_v6)
        },
        || explain(&lab, &ctl, &agent),
    );

    // Link cut: nothing gets through, so both sides' hold timers expire.
    lab.link_down("node1").expect("link down");
    wait_for(
        "hold-timer expiry on both sides, learned routes gone",
        HOLD_EXPIRY,
        || {
            ctl.all_down(&lab)
                && agent_all_down(&lab)
                && router_routes_on_node(&lab).is_empty()
                && !ctl.has_route(&cidrs[0], node_v4)
        },
        || explain(&lab, &ctl, &agent),
    );
    lab.link_up("node1").expect("link up");
    wait_for(
        "re-established after the link came back",
        CONVERGE,
        || {
            ctl.established(&lab)
                && agent_established(&lab)
                && router_routes_on_node(&lab) == expected_learned(&ACCEPTED)
        },
        || explain(&lab, &ctl, &agent),
    );

    // TCP-MD5: same password on both sides → Established, both sessions.
    let good = lab.dir().join("md5-good");
    let bad = lab.dir().join("md5-bad");
    std::fs::write(&good, "podroute-interop\n").expect("write password");
    std::fs::write(&bad, "not-the-password\n").expect("write password");
    ctl.set_password(&mut lab, "podroute-interop");
    drop(agent);
    agent = spawn_agent(&lab, Some(&good), peers);
    wait_for(
        "established with matching MD5 passwords",
        CONVERGE,
        || {
            ctl.established(&lab)
                && agent_established(&lab)
                && router_routes_on_node(&lab) == expected_learned(&ACCEPTED)
        },
        || explain(&lab, &ctl, &agent),
    );

    // Another password → the segments are dropped; no session for a whole window.
    drop(agent);
    agent = spawn_agent(&lab, Some(&bad), peers);
    wait_for(
        "the new agent to report its (down) sessions",
        CONVERGE,
        || agent_sessions(&lab).len() == 2 && ctl.all_down(&lab),
        || explain(&lab, &ctl, &agent),
    );
    let start = Instant::now();
    while start.elapsed() < MD5_MISMATCH_WINDOW {
        assert!(
            agent_all_down(&lab) && ctl.all_down(&lab),
            "a session came up with mismatched MD5 passwords\n{}",
            explain(&lab, &ctl, &agent)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // The router's routes the previous agent left in the kernel go: the new agent has no
    // mesh peer to wait for, so it removes what it did not learn.
    wait_for(
        "the new agent to remove the stale router routes",
        CONVERGE,
        || router_routes_on_node(&lab).is_empty(),
        || explain(&lab, &ctl, &agent),
    );
    drop(agent);
    lab.down().expect("lab down");
}

#[test]
#[ignore = "needs root: run by make test"]
fn interop_bird() {
    interop(Tor::Bird, "b", Peers::Flags);
}

#[test]
#[ignore = "needs root: run by make test"]
fn interop_gobgp() {
    interop(Tor::Gobgp, "g", Peers::Resources);
}

#[test]
#[ignore = "needs root: run by make test"]
fn interop_frr() {
    interop(Tor::Frr, "f", Peers::Resources);
}
