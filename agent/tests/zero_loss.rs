//! Zero loss across agent restarts, with BIRD 2 as top-of-rack router (needs root: run by
//! `make test`).
//!
//! A two-node lab; both agents peer with each other (mesh) and with BIRD (`--bgp-peer`),
//! graceful restart on (the default), and BIRD runs graceful restart too, as a restarting
//! speaker (`graceful restart on`, its kernel protocol keeping its routes over a restart).
//! BIRD installs what it learns into the fabric namespace's kernel (its `kernel` protocol),
//! so the fabric namespace is "a host behind a router"; and it announces the second rack's
//! subnet (198.18.1.0/24, a host at 198.18.1.1 in its namespace), which the nodes import:
//! a route the nodes learn from the router. Probes at least every 10 ms, each accounted for
//! (`ping -i 0.008`, transmitted against received; see [`PROBE_INTERVAL`]), pod on node1 → pod on node2, pod on node2 → pod
//! on node1, fabric → pod on node1 and pod on node1 → the other rack's host, while in turn:
//! node1's agent (the sender of the first flow, the receiver of the others) is killed -9
//! and restarted; node2's; both at once; a rolling restart (SIGTERM, one after the other);
//! node1's killed twice 5 s apart; BIRD killed -9 and restarted. Zero probes lost in each,
//! and `ip monitor route` on both nodes and in the router's namespace shows no pod or rack
//! route withdrawn or re-added (proof beyond the poll: BIRD did not take the route out of
//! its kernel, the nodes did not touch theirs, neither while BIRD was gone).
//!
//! The same scenarios run with GoBGP and with FRR as the router (`..._gobgp`, `..._frr`),
//! graceful restart on in their configuration (see [`gobgp_graceful_restart`],
//! [`frr_graceful_restart`]); "the router killed -9 and restarted" is `gobgpd
//! --graceful-restart`, or FRR's bgpd alone restarted while zebra keeps the kernel routes.
//! FRR installs its routes into the fabric kernel through zebra, so all four flows run. GoBGP
//! programs no kernel: the fabric has no route to a pod, so only the pod ↔ pod flows run
//! there, and what GoBGP kept as helper is read from its own RIB (`gobgp monitor global
//! rib`: no pod route withdrawn); the nodes' monitors still prove they kept the other rack's
//! route GoBGP announces over its restart.

use std::time::{Duration, Instant};

use podroute_lab::{Lab, LabConfig, LabNode, LabPod, LabProcess, Signal, Tor};

const CONVERGE: Duration = Duration::from_secs(60);
/// The second rack's subnet, announced by BIRD and imported by the nodes.
const RACK_B: &str = "198.18.1.0/24";
/// A host in the second rack: an address of the router's namespace.
const RACK_B_HOST: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::new(198, 18, 1, 1));
/// The gap ping is asked to leave between probes. ping sleeps in whole kernel ticks: with
/// `-i 0.01` it sent one probe every 16 ms here (HZ 250), so it is asked for 8 ms, and every
/// flow checks from ping's own summary that it really sent at least one probe per 10 ms.
const PROBE_INTERVAL: Duration = Duration::from_millis(8);
/// Probes per flow and scenario: 24 s at [`PROBE_INTERVAL`].
const PROBES: u32 = 3000;

fn spawn_agent(lab: &Lab, node: &LabNode) -> LabProcess {
    let name = &node.name;
    let mut args = vec![
        "--kubeconfig".to_owned(),
        lab.kubeconfig().display().to_string(),
        "--node-name".to_owned(),
        name.clone(),
        "--cni-conflist".to_owned(),
        lab.dir()
            .join(format!("cni-{name}.conflist"))
            .display()
            .to_string(),
        "--cni-readiness-file".to_owned(),
        lab.dir()
            .join(format!("cni-ready-{name}"))
            .display()
            .to_string(),
        "--reconcile-period".to_owned(),
        "2s".to_owned(),
        "--startup-grace".to_owned(),
        "20s".to_owned(),
        "--bgp-peer".to_owned(),
        format!("address=198.18.0.254,as=64512,import={RACK_B}"),
    ];
    // Inside the lab directory: what the agent routes by when restarted without the API.
    args.push("--state-file".to_owned());
    args.push(
        lab.dir()
            .join(format!("state-{name}.json"))
            .display()
            .to_string(),
    );
    lab.spawn(
        name,
        "agent",
        env!("CARGO_BIN_EXE_podroute-agent"),
        &args,
        &[("RUST_LOG", "info,podroute_agent=debug")],
    )
    .expect("spawn agent")
}

fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < CONVERGE {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out after {CONVERGE:?} waiting for {what}");
}

/// Every node's agent has both sessions up and synced, and BIRD has both up.
fn all_synced(lab: &Lab, nodes: &[LabNode]) -> bool {
    let agents = nodes.iter().all(|n| {
        let text = lab
            .exec_ok(&n.name, &["curl", "-sf", "http://127.0.0.1:9180/status"])
            .unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let peers = v["bgpPeers"].as_array().cloned().unwrap_or_default();
        peers.len() == 2
            && peers
                .iter()
                .all(|p| p["established"] == true && p["synced"] == true)
    });
    let router = lab
        .router()
        .and_then(|r| r.sessions(&lab.router_neighbors()).ok())
        .is_some_and(|s| s.iter().filter(|s| s.established).count() >= nodes.len());
    agents && router
}

/// A flow of `count` pings, [`PROBE_INTERVAL`] apart, each with a 1 s deadline. `tag` names its log
/// (`<from>-probe-<tag>.log`), which is appended to: give every flow its own.
fn probe(lab: &Lab, from: &str, to: std::net::IpAddr, tag: &str, count: u32) -> LabProcess {
    let lasts = PROBE_INTERVAL * count;
    let deadline = (lasts.as_secs() + 60).to_string();
    let interval = format!("{:.3}", PROBE_INTERVAL.as_secs_f64());
    let (count, to) = (count.to_string(), to.to_string());
    lab.spawn(
        from,
        &format!("probe-{tag}"),
        "ping",
        &[
            "-q", "-n", "-i", &interval, "-W", "1", "-c", &count, "-w", &deadline, &to,
        ],
        &[],
    )
    .expect("spawn ping")
}

/// ping's summary line of one flow.
struct ProbeSummary {
    sent: u32,
    received: u32,
    /// From the first probe sent to the last.
    took: Duration,
}

impl ProbeSummary {
    /// Every one of `want` probes sent, at least one per 10 ms on average, and answered.
    fn complete(&self, want: u32) -> bool {
        self.sent == want
            && self.received == self.sent
            && self.took <= Duration::from_millis(10) * self.sent.saturating_sub(1)
    }
}

impl std::fmt::Display for ProbeSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let gap = self.took.as_secs_f64() * 1000.0 / f64::from(self.sent.saturating_sub(1).max(1));
        write!(
            f,
            "{} of {} probes answered, one per {gap:.1} ms",
            self.received, self.sent
        )
    }
}

/// Waits for a probe flow to end and reads its summary ("3000 packets transmitted, 3000
/// received, 0% packet loss, time 23992ms"); zeros if ping printed none.
fn probe_result(p: &mut LabProcess) -> ProbeSummary {
    let _ = p.wait_timeout(Duration::from_secs(90));
    let log = p.log();
    let line = log
        .lines()
        .rfind(|l| l.contains("packets transmitted"))
        .unwrap_or_default()
        .to_owned();
    let words: Vec<&str> = line.split([' ', ',']).filter(|w| !w.is_empty()).collect();
    let before = |word: &str| -> u32 {
        words
            .iter()
            .position(|w| *w == word)
            .and_then(|i| words.get(i.checked_sub(1)?)?.parse().ok())
            .unwrap_or(0)
    };
    let millis = words
        .iter()
        .find_map(|w| w.strip_suffix("ms")?.parse().ok())
        .unwrap_or(u64::MAX);
    ProbeSummary {
        sent: before("packets"),
        received: before("received"),
        took: Duration::from_millis(millis),
    }
}

/// The lines of `monitor`'s log about pod routes and the second rack's route, from `from` on.
fn pod_route_changes(monitor: &LabProcess, from: usize) -> Vec<String> {
    monitor
        .log()
        .lines()
        .skip(from)
        .filter(|l| l.contains("10.244.") || l.contains(RACK_B))
        .map(str::to_owned)
        .collect()
}

/// `ip monitor route` on both nodes and in the router's namespace, started with a positive
/// control (each monitor saw a route added and removed).
struct RouteMonitors {
    monitors: Vec<(&'static str, LabProcess, usize)>,
}

impl RouteMonitors {
    fn start(lab: &Lab) -> Self {
        let mut monitors = Vec::new();
        for t in ["node1", "node2", "fabric"] {
            let m = lab
                .spawn(t, "monitor", "ip", &["monitor", "route"], &[])
                .expect("monitor");
            wait_for("ip monitor to see a route change", || {
                for change in ["replace", "del"] {
                    let _ = lab.exec(
                        t,
                        &[
                            "ip",
                            "route",
                            change,
                            CONTROL_ROUTE,
                            "dev",
                            "lo",
                            "proto",
                            "static",
                        ],
                    );
                }
                m.log().contains(CONTROL_ROUTE)
            });
            let mark = m.log().lines().count();
            monitors.push((t, m, mark));
        }
        Self { monitors }
    }

    /// Pod route changes seen since the start, as `<where>: <line>`.
    fn changes(&self) -> Vec<String> {
        self.monitors
            .iter()
            .flat_map(|(t, m, mark)| {
                pod_route_changes(m, *mark)
                    .into_iter()
                    .filter(|l| !l.contains(CONTROL_ROUTE))
                    .map(move |l| format!("{t}: {l}"))
            })
            .collect()
    }
}

/// Routes someone else put on each node, inside the pod supernet but nobody's pod CIDR: an
/// operator's (`static`) and another BGP daemon's (`bgp`; podroute's own are protocol 80).
/// No restart or outage may change them (the route monitors would report it) or take them
/// away ([`assert_foreign_routes_kept`]). Each: what `ip route add` gets, what `show` prints.
const FOREIGN_ROUTES: [(&str, &str); 2] = [
    (
        "10.244.241.0/24 via 198.18.0.254 proto static",
        "10.244.241.0/24 via 198.18.0.254 dev eth0 proto static",
    ),
    (
        "10.244.242.0/24 via 198.18.0.254 proto bgp",
        "10.244.242.0/24 via 198.18.0.254 dev eth0 proto bgp",
    ),
];

/// Each node still has the [`FOREIGN_ROUTES`] as they were added.
fn assert_foreign_routes_kept(lab: &Lab, nodes: &[LabNode]) {
    for n in nodes {
        for (route, shown) in FOREIGN_ROUTES {
            let prefix = route.split(' ').next().unwrap_or_default();
            let now = lab
                .exec_ok(&n.name, &["ip", "route", "show", prefix])
                .expect("ip route show");
            assert_eq!(now.trim(), shown, "{}: a foreign route changed", n.name);
        }
    }
}

/// The pod routes in the router's kernel as `ip route show` prints them, without zebra's
/// nexthop-object id (`nhid N`, which a restarted zebra numbers afresh).
fn fabric_pod_routes(lab: &Lab, nodes: &[LabNode]) -> Vec<String> {
    nodes
        .iter()
        .map(|n| {
            let shown = lab
                .exec_ok(
                    "fabric",
                    &["ip", "route", "show", &n.pod_cidr_v4.to_string()],
                )
                .expect("ip route show");
            without_nhid(shown.trim())
        })
        .collect()
}

fn without_nhid(route: &str) -> String {
    let mut words = route.split_whitespace();
    let mut kept = Vec::new();
    while let Some(word) = words.next() {
        if word == "nhid" {
            words.next();
        } else {
            kept.push(word);
        }
    }
    kept.join(" ")
}

/// The route changes left once a restarted zebra's rewrites are taken out: each pod route
/// written again in the router's kernel exactly as it was before (`before`, from
/// [`fabric_pod_routes`]: same node, same metric; only the `nhid` new), at most once per
/// route. A withdrawal ("Deleted"), another path or a second rewrite stays in.
fn without_zebra_rewrites<'a>(changes: &'a [String], before: &[String]) -> Vec<&'a String> {
    let mut rewritten = vec![false; before.len()];
    changes
        .iter()
        .filter(|c| {
            let Some(route) = c.strip_prefix("fabric: ") else {
                return true;
            };
            let route = without_nhid(route.trim());
            match before.iter().position(|b| *b == route) {
                Some(i) if !rewritten[i] => {
                    rewritten[i] = true;
                    false
                }
                _ => true,
            }
        })
        .collect()
}

/// The positive control's route.
const CONTROL_ROUTE: &str = "10.244.250.0/24";

/// The lab's BIRD configuration with graceful restart as a restarting speaker (BGP
/// `graceful restart on`, the kernel protocols' `graceful restart`: routes kept in the kernel
/// over a restart until BGP has converged again) and the second rack's subnet announced.
fn bird_restarting_speaker(config: &str) -> String {
    let with_gr = config
        .replace("  direct;\n", "  direct;\n  graceful restart on;\n")
        .replace("export all; }; }", "export all; }; graceful restart; }");
    assert_eq!(
        with_gr.matches("graceful restart").count(),
        4,
        "the lab's BIRD configuration changed shape:\n{config}"
    );
    format!("{with_gr}protocol static rack_b {{ ipv4; route {RACK_B} unreachable; }}\n")
}

/// The lab's GoBGP configuration with graceful restart on every neighbour (helper, and
/// restarting speaker when started with `--graceful-restart`: see `Lab::recover_router`),
/// restart time 120 s, and per family (`mp-graceful-restart`, without which GoBGP offers the
/// capability with no family and keeps nothing). The second rack is announced through its
/// API ([`after_router_start`]): GoBGP's file has no static routes.
fn gobgp_graceful_restart(config: &str) -> String {
    let with_gr = config
        .replace(
            "  [[neighbors.afi-safis]]\n",
            "  [neighbors.graceful-restart.config]\n    enabled = true\n    restart-time = 120\n  \
             [[neighbors.afi-safis]]\n",
        )
        .replace(
            "-unicast\"\n",
            "-unicast\"\n    [neighbors.afi-safis.mp-graceful-restart.config]\n      enabled = true\n",
        );
    assert_eq!(
        with_gr.matches("enabled = true").count(),
        2 * config.matches("[[neighbors]]").count(),
        "the lab's GoBGP configuration changed shape:\n{config}"
    );
    with_gr
}

/// The lab's FRR configuration with graceful restart (restarting speaker and helper;
/// `preserve-fw-state` sets the Forwarding State bit, without which the nodes would drop its
/// routes at once when it comes back, RFC 4724 §4.2) and the second rack's subnet announced.
fn frr_graceful_restart(config: &str) -> String {
    let with_gr = config
        .replace(
            " no bgp default ipv4-unicast\n",
            " no bgp default ipv4-unicast\n bgp graceful-restart\n bgp graceful-restart preserve-fw-state\n",
        )
        .replace(
            " address-family ipv4 unicast\n",
            &format!(" address-family ipv4 unicast\n  network {RACK_B}\n"),
        );
    assert_eq!(
        with_gr.matches("graceful-restart").count() + with_gr.matches(RACK_B).count(),
        3,
        "the lab's FRR configuration changed shape:\n{config}"
    );
    with_gr
}

/// Whether the router installs what it learns into the fabric namespace's kernel (BIRD,
/// FRR through zebra). GoBGP does not: the fabric has no route to a pod, so the flows from
/// or answered through the router (router → pod, pod → the other rack) cannot run there, and
/// what GoBGP kept is read from its own RIB instead ([`RibWatch`]).
fn routes_kernel(tor: Tor) -> bool {
    tor != Tor::Gobgp
}

/// What a router needs after each start. GoBGP: the second rack's subnet into its global
/// RIB (it is not in the file). FRR: its graceful-restart settings sent to zebra again — bgpd
/// sends them while it reads its file, before its zebra connection is up, and that message is
/// lost; zebra then removes bgpd's routes from the kernel the moment bgpd dies. Setting the
/// RIB stale time through vtysh sends them once connected. BIRD needs nothing.
fn after_router_start(lab: &Lab) {
    let router = lab.router().expect("router");
    match router.kind() {
        Tor::Gobgp => {
            router
                .exec(&["global", "rib", "add", "-a", "ipv4", RACK_B])
                .expect("gobgp global rib add");
        }
        Tor::Frr => {
            router
                .vtysh(&[
                    "configure terminal",
                    "router bgp 64512",
                    "bgp graceful-restart rib-stale-time 120",
                ])
                .expect("vtysh rib-stale-time");
        }
        _ => {}
    }
}

/// The router killed -9 and started again as a restarting speaker. GoBGP sends End-of-RIB
/// as soon as its table went out, and the second rack's route only enters its table through
/// the API once it runs: a session that came up first would make the nodes drop the stale
/// route at that End-of-RIB and learn it again a moment later. So, as an operator would
/// load a GoBGP's routes before it peers, the fabric refuses BGP connections (TCP reset both
/// ways, nftables in the router's namespace) until the route is back in GoBGP's RIB.
///
/// `entirely`: FRR's zebra is killed with bgpd (the whole routing suite crashed, not one
/// daemon that watchfrr would restart), so zebra starts again too, with `-K`: it leaves the
/// routes in the fabric's kernel until bgpd has them again from the nodes, which keep the
/// router's routes as graceful-restart helpers meanwhile.
fn crash_and_recover_router(lab: &mut Lab, entirely: bool) {
    let gobgp = lab.router().expect("router").kind() == Tor::Gobgp;
    if entirely {
        lab.crash_router_entirely()
            .expect("kill the router and zebra");
    } else {
        lab.crash_router().expect("kill the router");
    }
    std::thread::sleep(Duration::from_secs(1));
    if gobgp {
        for rule in [
            "add table inet grhold",
            "add chain inet grhold input { type filter hook input priority 0 ; }",
            "add chain inet grhold output { type filter hook output priority 0 ; }",
            "add rule inet grhold input tcp dport 179 reject with tcp reset",
            "add rule inet grhold output tcp dport 179 reject with tcp reset",
        ] {
            lab.exec_ok("fabric", &["sh", "-c", &format!("nft '{rule}'")])
                .expect("nft");
        }
    }
    lab.recover_router().expect("start the router");
    after_router_start(lab);
    if gobgp {
        lab.exec_ok("fabric", &["nft", "delete", "table", "inet", "grhold"])
            .expect("nft delete");
    }
}

/// GoBGP's own record of withdrawals: `gobgp monitor global rib` (a stream of its best
/// paths, withdrawals marked `[DELROUTE]`), for the router without kernel routes. Started per
/// scenario (it ends when gobgpd does), with a positive control: the control route added to
/// and withdrawn from GoBGP's RIB shows as a `[DELROUTE]` line.
struct RibWatch(Option<(LabProcess, usize)>);

impl RibWatch {
    /// `scenario` names its log (appended to: one per scenario).
    fn start(lab: &Lab, scenario: usize) -> Self {
        let router = lab.router().expect("router");
        if router.kind() != Tor::Gobgp {
            return Self(None);
        }
        let (host, port) = podroute_lab::router::GOBGP_API
            .split_once(':')
            .expect("host:port");
        let m = lab
            .spawn(
                "fabric",
                &format!("rib-monitor{scenario}"),
                "gobgp",
                &["-u", host, "-p", port, "monitor", "global", "rib"],
                &[],
            )
            .expect("gobgp monitor");
        wait_for("gobgp monitor to see a withdrawal", || {
            for verb in ["add", "del"] {
                let _ = router.exec(&["global", "rib", verb, "-a", "ipv4", CONTROL_ROUTE]);
            }
            m.log()
                .lines()
                .any(|l| l.contains("DELROUTE") && l.contains(CONTROL_ROUTE))
        });
        let mark = m.log().lines().count();
        Self(Some((m, mark)))
    }

    /// Pod routes GoBGP withdrew since the start.
    fn withdrawn(&self) -> Vec<String> {
        self.0
            .as_ref()
            .map(|(m, mark)| {
                m.log()
                    .lines()
                    .skip(*mark)
                    .filter(|l| {
                        l.contains("DELROUTE")
                            && l.contains("10.244.")
                            && !l.contains(CONTROL_ROUTE)
                    })
                    .map(|l| format!("router RIB: {l}"))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A two-node lab with `tor` as the router, graceful restart on in its configuration (see
/// [`bird_restarting_speaker`], [`gobgp_graceful_restart`], [`frr_graceful_restart`]), a pod
/// on each node and both agents up, synced, routing.
fn two_nodes(tag: &str, tor: Tor) -> (Lab, Vec<LabNode>, LabPod, LabPod, Vec<LabProcess>) {
    let name = format!("{tag}{}", std::process::id() % 100_000);
    let mut lab = Lab::up(&LabConfig::new(name, 2).tor(tor)).expect("lab up");
    let router = lab.router().expect("router");
    let config = std::fs::read_to_string(router.config_path()).expect("router config");
    let config = match tor {
        Tor::Gobgp => gobgp_graceful_restart(&config),
        Tor::Frr => frr_graceful_restart(&config),
        _ => bird_restarting_speaker(&config),
    };
    std::fs::write(router.config_path(), config).expect("write");
    lab.restart_router_as_configured()
        .expect("router restarted");
    after_router_start(&lab);
    let host = format!("{RACK_B_HOST}/32");
    lab.exec_ok("fabric", &["ip", "addr", "add", &host, "dev", "lo"])
        .expect("the other rack's host");
    let nodes = lab.nodes().to_vec();
    for n in &nodes {
        for (route, _) in FOREIGN_ROUTES {
            let mut add = vec!["ip", "route", "add"];
            add.extend(route.split(' '));
            lab.exec_ok(&n.name, &add).expect("a foreign route");
        }
    }
    let pod1 = lab.add_pod("node1", "a").expect("pod a");
    let pod2 = lab.add_pod("node2", "b").expect("pod b");
    let agents: Vec<LabProcess> = nodes.iter().map(|n| spawn_agent(&lab, n)).collect();
    wait_for("sessions up and synced", || all_synced(&lab, &nodes));
    if routes_kernel(tor) {
        wait_for("the router's kernel to route both pod CIDRs", || {
            let r = lab.exec_ok("fabric", &["ip", "route"]).unwrap_or_default();
            r.contains("10.244.1.0/24") && r.contains("10.244.2.0/24")
        });
    }
    wait_for(
        "both nodes to route the other rack through the router",
        || {
            nodes.iter().all(|n| {
                lab.exec_ok(&n.name, &["ip", "route", "show", RACK_B])
                    .unwrap_or_default()
                    .contains("via 198.18.0.254")
            })
        },
    );
    wait_for(
        "pods to reach each other (and through the router if it routes)",
        || {
            lab.ping(&pod1, pod2.ipv4)
                && lab.ping(&pod2, pod1.ipv4)
                && (!routes_kernel(tor)
                    || (lab.ping_from("fabric", pod1.ipv4).unwrap_or(false)
                        && lab.ping(&pod1, RACK_B_HOST)))
        },
    );
    (lab, nodes, pod1, pod2, agents)
}

#[test]
#[ignore = "needs root: run by make test"]
fn probes_every_10ms_lose_nothing_while_agents_restart() {
    agents_and_router_restart(Tor::Bird, "zl");
}

/// The same with GoBGP as helper and restarting speaker (pod ↔ pod flows, its RIB watched).
#[test]
#[ignore = "needs root: run by make test"]
fn probes_every_10ms_lose_nothing_while_agents_restart_gobgp() {
    agents_and_router_restart(Tor::Gobgp, "zg");
}

/// The same with FRR (bgpd and zebra) as helper and restarting speaker.
#[test]
#[ignore = "needs root: run by make test"]
fn probes_every_10ms_lose_nothing_while_agents_restart_frr() {
    agents_and_router_restart(Tor::Frr, "zf");
}

/// One disruption of [`agents_and_router_restart`], probed while it happens.
struct Scenario {
    name: &'static str,
    act: fn(&mut Lab, &[LabNode], &mut Vec<LabProcess>),
    /// A restarted zebra may write each of the router's pod routes again, unchanged (see
    /// [`without_zebra_rewrites`]); every other change fails the scenario.
    zebra_restarts: bool,
}

impl Scenario {
    fn new(name: &'static str, act: fn(&mut Lab, &[LabNode], &mut Vec<LabProcess>)) -> Self {
        Self {
            name,
            act,
            zebra_restarts: false,
        }
    }
}

/// Every scenario of the module's header against `tor`, probes counted per flow, route
/// changes on the nodes, in the fabric (routers with kernel routes) and in GoBGP's RIB.
fn agents_and_router_restart(tor: Tor, tag: &str) {
    let (mut lab, nodes, pod1, pod2, mut agents) = two_nodes(tag, tor);
    let monitors = RouteMonitors::start(&lab);
    let fabric_before = fabric_pod_routes(&lab, &nodes);

    let mut scenarios = vec![
        Scenario::new(
            "node1's agent killed -9 and restarted",
            |lab, nodes, agents| {
                agents[0].kill(Signal::SIGKILL).expect("kill");
                let _ = agents[0].wait_timeout(Duration::from_secs(5));
                agents[0] = spawn_agent(lab, &nodes[0]);
            },
        ),
        Scenario::new(
            "node2's agent killed -9 and restarted",
            |lab, nodes, agents| {
                agents[1].kill(Signal::SIGKILL).expect("kill");
                let _ = agents[1].wait_timeout(Duration::from_secs(5));
                agents[1] = spawn_agent(lab, &nodes[1]);
            },
        ),
        Scenario::new(
            "every agent killed -9 and restarted",
            |lab, nodes, agents| {
                for a in agents.iter_mut() {
                    a.kill(Signal::SIGKILL).expect("kill");
                }
                for (i, n) in nodes.iter().enumerate() {
                    let _ = agents[i].wait_timeout(Duration::from_secs(5));
                    agents[i] = spawn_agent(lab, n);
                }
            },
        ),
        Scenario::new(
            "rolling restart (SIGTERM, one node after the other)",
            |lab, nodes, agents| {
                for (i, n) in nodes.iter().enumerate() {
                    let _ = agents[i].terminate();
                    agents[i] = spawn_agent(lab, n);
                    wait_for("the restarted agent synced", || all_synced(lab, nodes));
                }
            },
        ),
        Scenario::new("the router killed -9 and restarted", |lab, _, _| {
            crash_and_recover_router(lab, false)
        }),
        Scenario::new(
            "node1's agent killed -9 twice, 5 s apart",
            |lab, nodes, agents| {
                for _ in 0..2 {
                    agents[0].kill(Signal::SIGKILL).expect("kill");
                    let _ = agents[0].wait_timeout(Duration::from_secs(5));
                    agents[0] = spawn_agent(lab, &nodes[0]);
                    std::thread::sleep(Duration::from_secs(5));
                }
            },
        ),
    ];
    if tor == Tor::Frr {
        scenarios.push(Scenario {
            zebra_restarts: true,
            ..Scenario::new(
                "FRR killed -9 as a whole (bgpd and zebra) and restarted",
                |lab, _, _| crash_and_recover_router(lab, true),
            )
        });
    }
    let mut failures = Vec::new();
    // Route changes already reported (the monitors count from the start).
    let mut reported = 0;
    for (i, scenario) in scenarios.into_iter().enumerate() {
        let name = scenario.name;
        let mut flows = vec![
            (
                "a→b",
                probe(&lab, &pod1.name, pod2.ipv4, &format!("ab{i}"), PROBES),
            ),
            (
                "b→a",
                probe(&lab, &pod2.name, pod1.ipv4, &format!("ba{i}"), PROBES),
            ),
        ];
        if routes_kernel(tor) {
            flows.push((
                "router→a",
                probe(&lab, "fabric", pod1.ipv4, &format!("ra{i}"), PROBES),
            ));
            flows.push((
                "a→rack b",
                probe(&lab, &pod1.name, RACK_B_HOST, &format!("ar{i}"), PROBES),
            ));
        }
        let rib = RibWatch::start(&lab, i);
        std::thread::sleep(Duration::from_secs(2));
        (scenario.act)(&mut lab, &nodes, &mut agents);
        for (flow, p) in &mut flows {
            let summary = probe_result(p);
            eprintln!("{tor}: {name}: {flow}: {summary}");
            if !summary.complete(PROBES) {
                failures.push(format!("{name}: {flow}: {summary} (want {PROBES})"));
            }
        }
        wait_for("sessions back up and synced", || all_synced(&lab, &nodes));
        failures.extend(rib.withdrawn().into_iter().map(|w| format!("{name}: {w}")));
        let changes = monitors.changes();
        if changes.len() > reported {
            let new: Vec<&String> = if scenario.zebra_restarts {
                without_zebra_rewrites(&changes[reported..], &fabric_before)
            } else {
                changes[reported..].iter().collect()
            };
            if !new.is_empty() {
                failures.push(format!("{name}: routes changed: {new:?}"));
            }
            reported = changes.len();
        }
        if routes_kernel(tor) {
            let after = fabric_pod_routes(&lab, &nodes);
            if after != fabric_before {
                failures.push(format!(
                    "{name}: the router's pod routes were {fabric_before:?}, are {after:?}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{tor}:\n{}\nrouter log:\n{}",
        failures.join("\n"),
        std::fs::read_to_string(lab.router().expect("router").log_path()).unwrap_or_default()
    );
    for a in &mut agents {
        let _ = a.terminate();
    }
    assert_foreign_routes_kept(&lab, &nodes);
    drop(monitors);
}

/// How long the API server stays away in [`restart_during_an_api_server_outage_loses_nothing`]:
/// `PODROUTE_SOAK_SECS` (`make soak` sets 600), else 20 s.
fn outage() -> Duration {
    let secs = std::env::var("PODROUTE_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20u64);
    Duration::from_secs(secs.max(20))
}

/// The API server stopped; node1's agent killed -9 and restarted during the outage: it
/// starts from the view it kept on the node, its sessions (mesh and BIRD) come back, no
/// probe is lost and no route changes anywhere, during the outage and after the API returns.
#[test]
#[ignore = "needs root: run by make test"]
fn restart_during_an_api_server_outage_loses_nothing() {
    let (mut lab, nodes, pod1, pod2, mut agents) = two_nodes("zo", Tor::Bird);
    wait_for("the state files written", || {
        nodes
            .iter()
            .all(|n| lab.dir().join(format!("state-{}.json", n.name)).is_file())
    });
    let monitors = RouteMonitors::start(&lab);

    lab.stop_apiserver().expect("stop apiserver");
    let probes_for = outage() + Duration::from_secs(10);
    let count = u32::try_from(probes_for.as_millis() / PROBE_INTERVAL.as_millis()).expect("count");
    let mut flows = vec![
        (
            "a→b",
            probe(&lab, &pod1.name, pod2.ipv4, "outage-ab", count),
        ),
        (
            "b→a",
            probe(&lab, &pod2.name, pod1.ipv4, "outage-ba", count),
        ),
        (
            "router→a",
            probe(&lab, "fabric", pod1.ipv4, "outage-ra", count),
        ),
        (
            "a→rack b",
            probe(&lab, &pod1.name, RACK_B_HOST, "outage-ar", count),
        ),
    ];
    std::thread::sleep(Duration::from_secs(2));
    agents[0].kill(Signal::SIGKILL).expect("kill -9");
    let _ = agents[0].wait_timeout(Duration::from_secs(5));
    agents[0] = spawn_agent(&lab, &nodes[0]);
    wait_for("node1's sessions back up during the outage", || {
        all_synced(&lab, &nodes)
    });
    assert!(
        agents[0]
            .log()
            .contains("starting from the persisted cluster view"),
        "the restarted agent did not use its state file:\n{}",
        agents[0].log()
    );
    let start = Instant::now();
    while start.elapsed() < outage() {
        std::thread::sleep(Duration::from_secs(1));
    }
    let mut failures = Vec::new();
    let want = count;
    for (flow, p) in &mut flows {
        let summary = probe_result(p);
        eprintln!("API outage, node1 restarted: {flow}: {summary}");
        if !summary.complete(want) {
            failures.push(format!("{flow}: {summary} (want {want})"));
        }
    }
    failures.extend(
        monitors
            .changes()
            .into_iter()
            .map(|c| format!("during the outage: {c}")),
    );
    lab.start_apiserver().expect("start apiserver");
    std::thread::sleep(Duration::from_secs(10));
    if !all_synced(&lab, &nodes) {
        failures.push("sessions not all up after the API server came back".to_owned());
    }
    failures.extend(
        monitors
            .changes()
            .into_iter()
            .map(|c| format!("after the outage: {c}")),
    );
    assert!(
        failures.is_empty(),
        "{}\nnode1 agent log:\n{}",
        failures.join("\n"),
        agents[0].log()
    );
    for a in &mut agents {
        let _ = a.terminate();
    }
    assert_foreign_routes_kept(&lab, &nodes);
    drop(monitors);
}
