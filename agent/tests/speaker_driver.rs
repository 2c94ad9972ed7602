//! The BGP driver (listener, peer tasks, import policy, peer changes) over real TCP on
//! loopback addresses of a private network namespace (needs root): 127.0.0.0/8 is all on `lo`,
//! so each "node" binds its own 127.0.0.x. Once with a scripted line-protocol session, once
//! with the BGP session.

mod common;

use common::in_private_netns;

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use ipnetwork::IpNetwork;
use k8s_openapi::api::core::v1::Node;
use podroute_agent::config::{Cli, NodeIpOverride};
use podroute_agent::context::Context;
use podroute_agent::metrics::Metrics;
use podroute_agent::peers::{MeshOptions, mesh_peers};
use podroute_agent::speaker::session::{SessionCore, SessionEvent, SessionFactory};
use podroute_agent::speaker::{BgpOutput, SpeakerInput, run_speaker};
use podroute_agent::view::ClusterView;
use tokio::sync::watch;

/// `HELLO` both ways → Established; `R <prefix> <next hop>` per route; `EOR` after the first
/// advertisement.
#[derive(Default)]
struct LineSession {
    events: VecDeque<SessionEvent>,
    inbox: Vec<u8>,
    established: bool,
    sent_eor: bool,
}

impl SessionCore for LineSession {
    fn connected(&mut self, _now: Instant) {
        self.events
            .push_back(SessionEvent::Transmit(b"HELLO\n".to_vec()));
    }
    fn handle_bytes(&mut self, _now: Instant, bytes: &[u8]) {
        self.inbox.extend_from_slice(bytes);
        while let Some(end) = self.inbox.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.inbox.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line).trim().to_owned();
            let words: Vec<&str> = line.split(' ').collect();
            match words[..] {
                ["HELLO"] => {
                    self.established = true;
                    self.events.push_back(SessionEvent::Established {
                        ipv4: true,
                        ipv6: false,
                    });
                }
                ["R", prefix, next_hop] => self.events.push_back(SessionEvent::Update {
                    announced: vec![(
                        prefix.parse().expect("prefix"),
                        next_hop.parse().expect("ip"),
                    )],
                    withdrawn: vec![],
                }),
                ["EOR"] => self
                    .events
                    .push_back(SessionEvent::EndOfRib { ipv6: false }),
                _ => self
                    .events
                    .push_back(SessionEvent::Closed(format!("bad line {line:?}"))),
            }
        }
    }
    fn handle_timeout(&mut self, _now: Instant) {}
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }
    fn advertise(&mut self, _now: Instant, routes: &[(IpNetwork, IpAddr)]) {
        let mut text = String::new();
        for (prefix, next_hop) in routes {
            text.push_str(&format!("R {prefix} {next_hop}\n"));
        }
        if !self.sent_eor {
            text.push_str("EOR\n");
            self.sent_eor = true;
        }
        self.events
            .push_back(SessionEvent::Transmit(text.into_bytes()));
    }
    fn stop(&mut self, _now: Instant) {}
}

fn factory() -> SessionFactory {
    Arc::new(|_spec, _local| Box::new(LineSession::default()))
}

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
    let nodes: Vec<Node> = nodes.iter().map(|n| node(*n)).collect();
    let view = Arc::new(
        ClusterView::from_nodes(&nodes, &format!("node-{own}"), NodeIpOverride::default())
            .expect("view"),
    );
    let peers = mesh_peers(
        &view,
        &MeshOptions {
            as_number: 64512,
            md5_password: password.map(str::to_owned),
            gtsm: true,
        },
    );
    let advertised = view.own.routable_cidrs().collect();
    SpeakerInput {
        peers,
        view,
        advertised,
    }
}

fn context(own: u8, port: u16) -> Arc<Context> {
    let cli = Cli::try_parse_from([
        "podroute-agent".to_owned(),
        format!("--node-name=node-{own}"),
        format!("--listen-port={port}"),
        "--no-cni-conflist".to_owned(),
    ])
    .expect("cli");
    Arc::new(Context::new(
        cli.validate().expect("config"),
        Metrics::new().expect("metrics"),
    ))
}

/// Waits (bounded) until `check` holds for the speaker's output.
async fn converge(
    rx: &mut watch::Receiver<BgpOutput>,
    check: impl Fn(&BgpOutput) -> bool,
) -> BgpOutput {
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

#[test]
#[ignore = "needs root: run by make test"]
fn mesh_learns_peer_cidrs_refuses_strangers_and_follows_node_changes() {
    in_private_netns(mesh_scenario(factory(), 1179));
}

/// The same with the BGP session: OPEN, KEEPALIVE, UPDATE, End-of-RIB on TCP.
#[test]
#[ignore = "needs root: run by make test"]
fn bgp_mesh_learns_peer_cidrs_refuses_strangers_and_follows_node_changes() {
    in_private_netns(mesh_scenario(
        podroute_agent::speaker::default_session_factory(),
        179,
    ));
}

async fn mesh_scenario(factory: SessionFactory, port: u16) {
    let mut outputs = Vec::new();
    let mut inputs = Vec::new();
    let mut contexts = Vec::new();
    for own in [1u8, 2, 3] {
        let ctx = context(own, port);
        let (in_tx, in_rx) = watch::channel(Some(input(own, &[1, 2, 3])));
        let (out_tx, out_rx) = watch::channel(BgpOutput::default());
        tokio::spawn(run_speaker(ctx.clone(), factory.clone(), in_rx, out_tx));
        inputs.push(in_tx);
        outputs.push(out_rx);
        contexts.push(ctx);
    }

    let out = converge(&mut outputs[0], |o| {
        o.learned.len() == 2 && o.initial_sync_done
    })
    .await;
    assert_eq!(out.established, 2);
    let learned: Vec<String> = out
        .learned
        .iter()
        .map(|(p, n)| format!("{p} via {n}"))
        .collect();
    assert_eq!(
        learned,
        ["10.244.2.0/24 via 127.0.0.2", "10.244.3.0/24 via 127.0.0.3"]
    );
    converge(&mut outputs[2], |o| o.learned.len() == 2).await;

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
    assert_eq!(contexts[0].metrics.bgp_rejected_connections.get(), 1);

    // A further connection from a peer's address (127.0.0.2) while its session is Established
    // is closed and counted; the session stays up (RFC 4271 §6.8).
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
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
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "second connection from an established peer must be closed: {read:?}"
    );
    let out = converge(&mut outputs[0], |o| {
        o.peers.iter().all(|p| p.established) && o.learned.len() == 2
    })
    .await;
    assert_eq!(out.established, 2);
    // The peer task closes the socket before the speaker counts it: wait (bounded).
    for _ in 0..50 {
        if contexts[0].metrics.bgp_rejected_connections.get() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(contexts[0].metrics.bgp_rejected_connections.get(), 2);

    // node-3 leaves node-1's view: its session and routes go; node-2's stay up.
    inputs[0].send_replace(Some(input(1, &[1, 2])));
    let out = converge(&mut outputs[0], |o| o.learned.len() == 1).await;
    assert_eq!(out.established, 1);
    assert!(
        out.learned
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
            let (_in_tx, in_rx) =
                watch::channel(Some(input_with_password(own, &[1, 2, 3], Some(password))));
            let (out_tx, out_rx) = watch::channel(BgpOutput::default());
            tokio::spawn(run_speaker(
                context(own, port),
                podroute_agent::speaker::default_session_factory(),
                in_rx,
                out_tx,
            ));
            // Keep the input sender alive for the whole test.
            std::mem::forget(_in_tx);
            outputs.push(out_rx);
        }
        let out = converge(&mut outputs[0], |o| {
            o.established == 1 && o.learned.len() == 1
        })
        .await;
        assert!(
            out.learned
                .contains_key(&"10.244.2.0/24".parse().expect("net"))
        );
        converge(&mut outputs[1], |o| {
            o.established == 1 && o.learned.len() == 1
        })
        .await;
        // A few connect attempts (5 s timeout each) later, node 3 still has nothing.
        tokio::time::sleep(Duration::from_secs(6)).await;
        let three = outputs[2].borrow().clone();
        assert_eq!(
            (three.established, three.learned.len()),
            (0, 0),
            "{three:?}"
        );
        assert_eq!(outputs[0].borrow().established, 1);
    });
}
