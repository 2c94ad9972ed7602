//! The BGP speaker's shell (listener, sockets, mesh import policy, peer changes) over real
//! TCP on loopback addresses of a private network namespace (needs root): 127.0.0.0/8 is all
//! on `lo`, so each "node" binds its own 127.0.0.x.

mod common;

use common::in_private_netns;

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use k8s_openapi::api::core::v1::Node;
use podroute_agent::config::{Cli, NodeIpOverride};
use podroute_agent::context::Context;
use podroute_agent::metrics::Metrics;
use podroute_agent::peers::{BfdSettings, MeshOptions, mesh_peers};
use podroute_agent::speaker::{BgpStatus, SpeakerInput, SpeakerOutputs, run_speaker};
use podroute_agent::view::ClusterView;
use podroute_bfd::endpoint::Liveness;
use tokio::sync::{mpsc, watch};

fn node(n: u8) -> Node {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("node-{n}")},
        "spec": {"podCIDRs": [format!("10.244.{n}.0/24")]},
        "status": {"addresses": [{"type": "InternalIP", "address": format!("127.0.0.{n}")}]}
    }))
    .expect("node")
}

fn input(own: u8, nodes: &[u8]) -> SpeakerInput {
    input_with_password(own, nodes, None)
}

fn input_with_password(own: u8, nodes: &[u8], password: Option<&str>) -> SpeakerInput {
    input_with(own, nodes, password, None)
}

fn input_with(
    own: u8,
    nodes: &[u8],
    password: Option<&str>,
    bfd: Option<BfdSettings>,
) -> SpeakerInput {
    let nodes: Vec<Node> = nodes.iter().map(|n| node(*n)).collect();
    let view = Arc::new(
        ClusterView::from_nodes(&nodes, &format!("node-{own}"), NodeIpOverride::default())
            .expect("view"),
    );
    let peers = mesh_peers(
        &view,
        &MeshOptions {
            as_number: 64512,
            md5_password: password.map(|p| podroute_agent::peers::Password::new(p.to_owned())),
            gtsm: true,
            bfd,
            hold_time: None,
            enabled: true,
            graceful_restart: None,
        },
    );
    let advertised = view.own.routable_cidrs().collect();
    SpeakerInput {
        peers,
        view,
        advertised,
        max_paths: 1,
    }
}

fn context(own: u8, port: u16) -> Arc<Context> {
    context_with(own, port, &[])
}

fn context_with(own: u8, port: u16, extra: &[&str]) -> Arc<Context> {
    let mut args = vec![
        "podroute-agent".to_owned(),
        format!("--node-name=node-{own}"),
        format!("--listen-port={port}"),
        "--no-cni-conflist".to_owned(),
    ];
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    let cli = Cli::try_parse_from(args).expect("cli");
    Arc::new(Context::new(
        cli.validate().expect("config"),
        Metrics::new(false).expect("metrics"),
    ))
}

/// `podroute_bgp_rejected_connections_total{reason="unknown_peer"}` of the agent.
fn refused_unknown(ctx: &Context) -> u64 {
    let text = ctx.metrics.render();
    text.lines()
        .find_map(|l| {
            l.strip_prefix("podroute_bgp_rejected_connections_total{reason=\"unknown_peer\"} ")
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no refusal counter in\n{text}"))
}

/// Starts a speaker; its route changes are drained (the kernel side is not under test).
fn start(
    ctx: Arc<Context>,
    input: SpeakerInput,
) -> (
    watch::Sender<Option<SpeakerInput>>,
    watch::Receiver<BgpStatus>,
) {
    let (in_tx, in_rx) = watch::channel(Some(input));
    let (status_tx, status_rx) = watch::channel(BgpStatus::default());
    let (routes_tx, mut routes_rx) = mpsc::channel(4);
    tokio::spawn(async move { while routes_rx.recv().await.is_some() {} });
    let outputs = SpeakerOutputs {
        routes: routes_tx,
        status: status_tx,
        bfd: Default::default(),
    };
    tokio::spawn(run_speaker(ctx, in_rx, outputs, false));
    (in_tx, status_rx)
}

/// Waits (bounded) until `check` holds for the speaker's status.
async fn converge(
    rx: &mut watch::Receiver<BgpStatus>,
    check: impl Fn(&BgpStatus) -> bool,
) -> BgpStatus {
    let result = {
        let wait = rx.wait_for(|out| check(out));
        tokio::time::timeout(Duration::from_secs(15), wait)
            .await
            .map(|r| r.map(|o| o.clone()))
    };
    match result {
        Ok(Ok(out)) => out,
        _ => panic!("no convergence; last output: {:?}", *rx.borrow()),
    }
}

/// Waits (bounded) until `check` holds for the per-peer status the speaker publishes in
/// `ctx` (refreshed at least every second).
async fn peers_converge(
    ctx: &Context,
    check: impl Fn(&[podroute_agent::speaker::PeerStatus]) -> bool,
) -> Vec<podroute_agent::speaker::PeerStatus> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let peers = ctx.status().bgp_peers;
        if check(&peers) {
            return peers;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no convergence; last peers: {peers:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// OPEN, KEEPALIVE, UPDATE, End-of-RIB on TCP between three speakers.
#[test]
#[ignore = "needs root: run by make test"]
fn bgp_mesh_learns_peer_cidrs_refuses_strangers_and_follows_node_changes() {
    in_private_netns(mesh_scenario(179));
}

async fn mesh_scenario(port: u16) {
    let mut outputs = Vec::new();
    let mut inputs = Vec::new();
    let mut contexts = Vec::new();
    for own in [1u8, 2, 3] {
        let ctx = context(own, port);
        let (in_tx, out_rx) = start(ctx.clone(), input(own, &[1, 2, 3]));
        inputs.push(in_tx);
        outputs.push(out_rx);
        contexts.push(ctx);
    }

    let out = converge(&mut outputs[0], |o| {
        o.mesh_best.len() == 2 && o.initial_sync_done
    })
    .await;
    assert_eq!(out.established, 2);
    let learned: Vec<String> = out
        .mesh_best
        .iter()
        .map(|(p, n)| format!("{p} via {n}"))
        .collect();
    assert_eq!(
        learned,
        ["10.244.2.0/24 via 127.0.0.2", "10.244.3.0/24 via 127.0.0.3"]
    );
    converge(&mut outputs[2], |o| o.mesh_best.len() == 2).await;

    // A stranger (127.0.0.9) is closed before any session exists, and counted.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.9:0".parse().expect("addr"))
        .expect("bind");
    let mut stream = socket
        .connect(format!("127.0.0.1:{port}").parse().expect("addr"))
        .await
        .expect("connect");
    let mut buffer = [0u8; 16];
    let read = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read(&mut stream, &mut buffer),
    )
    .await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "stranger must be closed: {read:?}"
    );
    assert_eq!(refused_unknown(&contexts[0]), 1);

    let sessions_before: Vec<u64> = contexts[0]
        .status()
        .bgp_peers
        .iter()
        .map(|p| p.established_count)
        .collect();
    // A further connection from a peer's address (127.0.0.2) while its session is Established
    // may be the peer restarting (graceful restart, RFC 4724 §4.2): it gets an OPEN, and the
    // established session stays until a valid OPEN comes on it. This one sends nothing and
    // goes away: nothing changes. The mesh runs GTSM: like the peer, it sends with TTL 255
    // (a SYN with less is closed unread).
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    podroute_agent::sockopt::set_ttl_255(std::os::fd::AsFd::as_fd(&socket), false).expect("ttl");
    socket
        .bind("127.0.0.2:0".parse().expect("addr"))
        .expect("bind");
    let mut stream = socket
        .connect(format!("127.0.0.1:{port}").parse().expect("addr"))
        .await
        .expect("connect");
    let read = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read(&mut stream, &mut buffer),
    )
    .await;
    assert!(
        matches!(read, Ok(Ok(n)) if n > 0),
        "a connection from a peer with graceful restart gets an OPEN: {read:?}"
    );
    drop(stream);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let out = converge(&mut outputs[0], |o| {
        o.established == 2 && o.mesh_unsynced == 0 && o.mesh_best.len() == 2
    })
    .await;
    assert_eq!(out.established, 2);
    // Per-peer status is refreshed at least every second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let peers = contexts[0].status().bgp_peers;
    assert!(peers.iter().all(|p| p.synced && p.established), "{peers:?}");
    assert_eq!(
        refused_unknown(&contexts[0]),
        1,
        "only the stranger was refused"
    );
    let sessions_after: Vec<u64> = peers.iter().map(|p| p.established_count).collect();
    assert_eq!(sessions_after, sessions_before, "no session was reset");

    // node-3 leaves node-1's view: its session and routes go; node-2's stay up.
    inputs[0].send_replace(Some(input(1, &[1, 2])));
    let out = converge(&mut outputs[0], |o| o.mesh_best.len() == 1).await;
    assert_eq!(out.established, 1);
    assert!(
        out.mesh_best
            .contains_key(&"10.244.2.0/24".parse().expect("net"))
    );
}

/// TCP-MD5: nodes 1 and 2 share the password and peer; node 3 has another one and gets no
/// session with anyone (the kernel drops its unsigned/wrongly signed segments). GTSM is on for
/// all (loopback keeps TTL 255).
#[test]
#[ignore = "needs root: run by make test"]
fn md5_password_mismatch_gets_no_session() {
    in_private_netns(async {
        let port = 2179;
        let mut outputs = Vec::new();
        for (own, password) in [(1u8, "s3cret"), (2, "s3cret"), (3, "other")] {
            let (in_tx, out_rx) = start(
                context(own, port),
                input_with_password(own, &[1, 2, 3], Some(password)),
            );
            // Keep the input sender alive for the whole test.
            std::mem::forget(in_tx);
            outputs.push(out_rx);
        }
        let out = converge(&mut outputs[0], |o| {
            o.established == 1 && o.mesh_best.len() == 1
        })
        .await;
        assert!(
            out.mesh_best
                .contains_key(&"10.244.2.0/24".parse().expect("net"))
        );
        converge(&mut outputs[1], |o| {
            o.established == 1 && o.mesh_best.len() == 1
        })
        .await;
        // A few connect attempts (5 s timeout each) later, node 3 still has nothing.
        tokio::time::sleep(Duration::from_secs(6)).await;
        let three = outputs[2].borrow().clone();
        assert_eq!(
            (three.established, three.mesh_best.len()),
            (0, 0),
            "{three:?}"
        );
        assert_eq!(outputs[0].borrow().established, 1);
    });
}

fn nft(rules: &str) {
    let out = std::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(rules.as_bytes())?;
            child.wait_with_output()
        })
        .expect("run nft");
    assert!(out.status.success(), "nft -f: {rules}");
}

/// Strict BFD on a two-node mesh (hold time 90 s), turned on while the session runs: no
/// BFD port is open before a peer wants BFD; turning it on starts BFD without touching the
/// BGP session; BFD packets from node 2 dropped (nftables, inside this namespace) → node 1's
/// BGP session ends at once by BFD, long before the hold timer, and waits; the drop lifted
/// → BFD Up, then BGP again; BFD turned off → the session stays.
#[test]
#[ignore = "needs root and nft: run by make test"]
fn strict_bfd_ends_and_holds_the_bgp_session() {
    in_private_netns(strict_bfd_scenario(1179));
}

/// Whether anything in this namespace listens on UDP 3784 (BFD).
fn bfd_port_open() -> bool {
    let out = std::process::Command::new("ss")
        .args(["-Huln", "sport = :3784"])
        .output()
        .expect("ss");
    !String::from_utf8_lossy(&out.stdout).trim().is_empty()
}

async fn strict_bfd_scenario(port: u16) {
    let bfd = BfdSettings {
        strict: true,
        ..BfdSettings::default()
    };
    let mut outputs = Vec::new();
    let mut inputs = Vec::new();
    let mut contexts = Vec::new();
    for own in [1u8, 2] {
        let ctx = context(own, port);
        contexts.push(ctx.clone());
        let (in_tx, out_rx) = start(ctx, input_with(own, &[1, 2], None, None));
        inputs.push(in_tx);
        outputs.push(out_rx);
    }
    converge(&mut outputs[0], |o| o.established == 1).await;
    let before = peers_converge(&contexts[0], |peers| peers.iter().all(|p| p.established)).await;
    assert!(before.iter().all(|p| p.bfd.is_none()));
    assert!(!bfd_port_open(), "no peer wants BFD: UDP 3784 stays closed");

    // BFD turned on (strict) on the running session: BFD comes up, BGP is not reset.
    for (own, input) in [1u8, 2].into_iter().zip(&inputs) {
        input
            .send(Some(input_with(own, &[1, 2], None, Some(bfd))))
            .expect("speaker runs");
    }
    let on = peers_converge(&contexts[0], |peers| {
        peers
            .iter()
            .all(|p| p.bfd == Some(Liveness::Up) && !p.waiting_for_bfd)
    })
    .await;
    assert!(bfd_port_open(), "BFD listens once a peer wants it");
    assert_eq!(
        (on[0].established, on[0].established_count, on[0].since),
        (true, before[0].established_count, before[0].since),
        "turning BFD on did not restart the BGP session"
    );

    nft(concat!(
        "table inet bfdtest {\n",
        "  chain input {\n",
        "    type filter hook input priority 0;\n",
        "    ip saddr 127.0.0.2 udp dport 3784 drop\n",
        "  }\n",
        "}\n",
    ));
    // 15 s at most (the hold time is 90 s): BFD, not the hold timer, ends it.
    let out = converge(&mut outputs[0], |o| o.established == 0).await;
    peers_converge(&contexts[0], |peers| {
        peers
            .iter()
            .all(|p| p.bfd == Some(Liveness::Down) && p.waiting_for_bfd)
    })
    .await;
    assert_eq!(
        out.mesh_best.len(),
        0,
        "node 2's routes went with the session"
    );

    nft("delete table inet bfdtest");
    converge(&mut outputs[0], |o| o.established == 1).await;
    let back = peers_converge(&contexts[0], |peers| {
        peers
            .iter()
            .all(|p| p.bfd == Some(Liveness::Up) && p.established)
    })
    .await;

    // BFD turned off: BFD goes from the status, the BGP session stays as it is.
    for (own, input) in [1u8, 2].into_iter().zip(&inputs) {
        input
            .send(Some(input_with(own, &[1, 2], None, None)))
            .expect("speaker runs");
    }
    let off = peers_converge(&contexts[0], |peers| peers.iter().all(|p| p.bfd.is_none())).await;
    assert_eq!(
        (off[0].established, off[0].established_count, off[0].since),
        (true, back[0].established_count, back[0].since),
        "turning BFD off did not restart the BGP session"
    );
    drop(inputs);
}
