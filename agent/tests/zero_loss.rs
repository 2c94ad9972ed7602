//! Zero loss across agent restarts, with BIRD 2 as top-of-rack router (needs root: run by
//! `make test`).
//!
//! A two-node lab; both agents peer with each other (mesh) and with BIRD (`--bgp-peer`),
//! graceful restart on (the default), and BIRD runs graceful restart too, as a restarting
//! speaker (`graceful restart on`, its kernel protocol keeping its routes over a restart).
//! BIRD installs what it learns into the fabric namespace's kernel (its `kernel` protocol),
//! so the fabric namespace is "a host behind a router"; and it announces the second rack's
//! subnet (198.18.1.0/24, a host at 198.18.1.1 in its namespace), which the nodes import:
//! a route the nodes learn from the router. Probes every 10 ms, each accounted for (`ping
//! -i 0.01`, transmitted against received), pod on node1 → pod on node2, pod on node2 → pod
//! on node1, fabric → pod on node1 and pod on node1 → the other rack's host, while in turn:
//! node1's agent (the sender of the first flow, the receiver of the others) is killed -9
//! and restarted; node2's; both at once; a rolling restart (SIGTERM, one after the other);
//! node1's killed twice 5 s apart; BIRD killed -9 and restarted. Zero probes lost in each,
//! and `ip monitor route` on both nodes and in the router's namespace shows no pod or rack
//! route withdrawn or re-added (proof beyond the poll: BIRD did not take the route out of
//! its kernel, the nodes did not touch theirs, neither while BIRD was gone).

use std::time::{Duration, Instant};

use podroute_lab::{Lab, LabConfig, LabNode, LabPod, LabProcess, Signal, Tor};

const CONVERGE: Duration = Duration::from_secs(60);
/// The second rack's subnet, announced by BIRD and imported by the nodes.
const RACK_B: &str = "198.18.1.0/24";
/// A host in the second rack: an address of the router's namespace.
const RACK_B_HOST: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::new(198, 18, 1, 1));
/// Probes per flow and scenario: 15 s at 10 ms.
const PROBES: u32 = 1500;

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

/// A flow of `count` pings, 10 ms apart, each with a 1 s deadline. `tag` names its log
/// (`<from>-probe-<tag>.log`), which is appended to: give every flow its own.
fn probe(lab: &Lab, from: &str, to: std::net::IpAddr, tag: &str, count: u32) -> LabProcess {
    let deadline = (count / 100 + 60).to_string();
    let (count, to) = (count.to_string(), to.to_string());
    lab.spawn(
        from,
        &format!("probe-{tag}"),
        "ping",
        &[
            "-q", "-n", "-i", "0.01", "-W", "1", "-c", &count, "-w", &deadline, &to,
        ],
        &[],
    )
    .expect("spawn ping")
}

/// (transmitted, received) from ping's summary.
fn probe_result(p: &mut LabProcess) -> (u32, u32) {
    let _ = p.wait_timeout(Duration::from_secs(90));
    let log = p.log();
    let line = log
        .lines()
        .rfind(|l| l.contains("packets transmitted"))
        .unwrap_or_default()
        .to_owned();
    let num = |word: &str| -> u32 {
        let words: Vec<&str> = line.split([' ', ',']).filter(|w| !w.is_empty()).collect();
        words
            .iter()
            .position(|w| *w == word)
            .and_then(|i| words.get(i.checked_sub(1)?)?.parse().ok())
            .unwrap_or(0)
    };
    (num("packets"), num("received"))
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

/// A two-node lab with BIRD (see [`bird_restarting_speaker`]), a pod on each node and both
/// agents up, synced, routing.
fn two_nodes(tag: &str) -> (Lab, Vec<LabNode>, LabPod, LabPod, Vec<LabProcess>) {
    let name = format!("{tag}{}", std::process::id() % 100_000);
    let mut lab = Lab::up(&LabConfig::new(name, 2).tor(Tor::Bird)).expect("lab up");
    let router = lab.router().expect("router");
    let config = std::fs::read_to_string(router.config_path()).expect("BIRD config");
    std::fs::write(router.config_path(), bird_restarting_speaker(&config)).expect("write");
    lab.restart_router_as_configured().expect("BIRD restarted");
    let host = format!("{RACK_B_HOST}/32");
    lab.exec_ok("fabric", &["ip", "addr", "add", &host, "dev", "lo"])
        .expect("the other rack's host");
    let nodes = lab.nodes().to_vec();
    let pod1 = lab.add_pod("node1", "a").expect("pod a");
    let pod2 = lab.add_pod("node2", "b").expect("pod b");
    let agents: Vec<LabProcess> = nodes.iter().map(|n| spawn_agent(&lab, n)).collect();
    wait_for("sessions up and synced", || all_synced(&lab, &nodes));
    wait_for("the router's kernel to route both pod CIDRs", || {
        let r = lab.exec_ok("fabric", &["ip", "route"]).unwrap_or_default();
        r.contains("10.244.1.0/24") && r.contains("10.244.2.0/24")
    });
    wait_for("both nodes to route the other rack through BIRD", || {
        nodes.iter().all(|n| {
            lab.exec_ok(&n.name, &["ip", "route", "show", RACK_B])
                .unwrap_or_default()
                .contains("via 198.18.0.254")
        })
    });
    wait_for(
        "pods to reach each other and the router to reach pod a",
        || {
            lab.ping(&pod1, pod2.ipv4)
                && lab.ping(&pod2, pod1.ipv4)
                && lab.ping_from("fabric", pod1.ipv4).unwrap_or(false)
                && lab.ping(&pod1, RACK_B_HOST)
        },
    );
    (lab, nodes, pod1, pod2, agents)
}

#[test]
#[ignore = "needs root: run by make test"]
fn probes_every_10ms_lose_nothing_while_agents_restart() {
    let (mut lab, nodes, pod1, pod2, mut agents) = two_nodes("zl");
    let monitors = RouteMonitors::start(&lab);

    type Scenario = (&'static str, fn(&mut Lab, &[LabNode], &mut Vec<LabProcess>));
    let scenarios: [Scenario; 6] = [
        (
            "node1's agent killed -9 and restarted",
            |lab, nodes, agents| {
                agents[0].kill(Signal::SIGKILL).expect("kill");
                let _ = agents[0].wait_timeout(Duration::from_secs(5));
                agents[0] = spawn_agent(lab, &nodes[0]);
            },
        ),
        (
            "node2's agent killed -9 and restarted",
            |lab, nodes, agents| {
                agents[1].kill(Signal::SIGKILL).expect("kill");
                let _ = agents[1].wait_timeout(Duration::from_secs(5));
                agents[1] = spawn_agent(lab, &nodes[1]);
            },
        ),
        (
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
        (
            "rolling restart (SIGTERM, one node after the other)",
            |lab, nodes, agents| {
                for (i, n) in nodes.iter().enumerate() {
                    let _ = agents[i].terminate();
                    agents[i] = spawn_agent(lab, n);
                    wait_for("the restarted agent synced", || all_synced(lab, nodes));
                }
            },
        ),
        ("BIRD killed -9 and restarted", |lab, _, _| {
            lab.crash_router().expect("kill BIRD");
            std::thread::sleep(Duration::from_secs(1));
            lab.recover_router().expect("start BIRD");
        }),
        (
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
    let mut failures = Vec::new();
    // Route changes already reported (the monitors count from the start).
    let mut reported = 0;
    for (i, (name, action)) in scenarios.into_iter().enumerate() {
        let mut flows = vec![
            (
                "a→b",
                probe(&lab, &pod1.name, pod2.ipv4, &format!("ab{i}"), PROBES),
            ),
            (
                "b→a",
                probe(&lab, &pod2.name, pod1.ipv4, &format!("ba{i}"), PROBES),
            ),
            (
                "router→a",
                probe(&lab, "fabric", pod1.ipv4, &format!("ra{i}"), PROBES),
            ),
            (
                "a→rack b",
                probe(&lab, &pod1.name, RACK_B_HOST, &format!("ar{i}"), PROBES),
            ),
        ];
        std::thread::sleep(Duration::from_secs(2));
        action(&mut lab, &nodes, &mut agents);
        for (flow, p) in &mut flows {
            let (sent, got) = probe_result(p);
            eprintln!("{name}: {flow}: {got} of {sent} probes answered");
            if sent != PROBES || got != sent {
                failures.push(format!("{name}: {flow}: {got} of {sent} probes answered"));
            }
        }
        wait_for("sessions back up and synced", || all_synced(&lab, &nodes));
        let changes = monitors.changes();
        if changes.len() > reported {
            let new = &changes[reported..];
            failures.push(format!("{name}: routes changed: {new:?}"));
            reported = changes.len();
        }
    }
    assert!(
        failures.is_empty(),
        "{}\nBIRD log:\n{}",
        failures.join("\n"),
        std::fs::read_to_string(lab.dir().join("router/bird.log")).unwrap_or_default()
    );
    for a in &mut agents {
        let _ = a.terminate();
    }
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
    let (mut lab, nodes, pod1, pod2, mut agents) = two_nodes("zo");
    wait_for("the state files written", || {
        nodes
            .iter()
            .all(|n| lab.dir().join(format!("state-{}.json", n.name)).is_file())
    });
    let monitors = RouteMonitors::start(&lab);

    lab.stop_apiserver().expect("stop apiserver");
    let probes_for = outage() + Duration::from_secs(10);
    let count = u32::try_from(probes_for.as_millis() / 10).expect("count");
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
        let (sent, got) = probe_result(p);
        eprintln!("API outage, node1 restarted: {flow}: {got} of {sent} probes answered");
        if sent != want || got != sent {
            failures.push(format!("{flow}: {got} of {sent} probes answered"));
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
    drop(monitors);
}
