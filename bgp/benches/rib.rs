//! RIB insertion and end-to-end ingest of 1,000,000 IPv4 /24s, ~1,000 per UPDATE with
//! shared attributes (the benchmark; BIRD 2 takes 0.89 s and ~82 bytes/prefix).
//!
//! - `rib/insert_1m`: `Rib::announce` of 1,000 batches of 1,000 prefixes into an empty RIB.
//! - `rib/ingest_1m`: the same routes as 1,000 encoded UPDATEs fed to an Established
//!   `Session` (framing, decoding, RFC 7606 checks), its `Routes` applied to the RIB.
//!
//! Before the criterion runs, one ingest is done and the growth of resident memory is
//! printed as bytes per prefix (Linux `/proc/self/statm`; includes allocator overhead).

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use ipnetwork::{IpNetwork, Ipv4Network};
use podroute_bgp::message::{AsPath, CodecContext, Message, NextHop, Open, PathAttributes, Update};
use podroute_bgp::rib::{PeerInfo, Rib};
use podroute_bgp::session::{Action, AdminEvent, Session, SessionConfig, State};

const PREFIXES: u32 = 1_000_000;
const PER_UPDATE: u32 = 1_000;

fn attrs() -> PathAttributes {
    PathAttributes {
        as_path: AsPath::sequence([65002]),
        next_hop: Some(NextHop::V4(Ipv4Addr::new(198, 18, 0, 2))),
        local_pref: Some(100),
        ..PathAttributes::default()
    }
}

fn prefix(i: u32) -> IpNetwork {
    // 1,000,000 distinct /24s from 1.0.0.0 up.
    IpNetwork::V4(Ipv4Network::new(Ipv4Addr::from((1 << 24) + (i << 8)), 24).expect("net"))
}

fn batches() -> Vec<Vec<IpNetwork>> {
    (0..PREFIXES / PER_UPDATE)
        .map(|b| {
            (0..PER_UPDATE)
                .map(|i| prefix(b * PER_UPDATE + i))
                .collect()
        })
        .collect()
}

fn peer() -> PeerInfo {
    PeerInfo {
        address: Ipv4Addr::new(198, 18, 0, 2).into(),
        router_id: Ipv4Addr::new(198, 18, 0, 2),
        ibgp: true,
    }
}

/// A session Established with an iBGP peer and the UPDATE stream that peer would send.
fn established() -> Session {
    let now = Instant::now();
    let mut s = Session::new(SessionConfig::new(
        65002,
        Ipv4Addr::new(198, 18, 0, 1),
        65002,
    ));
    s.handle(now, AdminEvent::Start);
    s.handle_connected(now);
    let open = Message::Open(Open::new(65002, 90, Ipv4Addr::new(198, 18, 0, 2), vec![]));
    s.handle_bytes(now, &open.to_bytes(&CodecContext::default()));
    s.handle_bytes(now, &Message::Keepalive.to_bytes(&CodecContext::default()));
    assert_eq!(s.state(), State::Established);
    while s.poll_action().is_some() {}
    s
}

fn stream(ctx: &CodecContext) -> Vec<Bytes> {
    batches()
        .into_iter()
        .map(|nlri| {
            Message::Update(Update {
                attributes: Some(attrs()),
                nlri,
                ..Update::default()
            })
            .to_bytes(ctx)
        })
        .collect()
}

fn ingest(mut s: Session, stream: &[Bytes]) -> Rib {
    let mut rib = Rib::new();
    let p = rib.add_peer(peer());
    let mut changes = Vec::with_capacity(PER_UPDATE as usize);
    let now = Instant::now();
    for m in stream {
        s.handle_bytes(now, m);
        while let Some(a) = s.poll_action() {
            if let Action::Routes(r) = a {
                rib.apply(p, &r, &mut changes);
                changes.clear();
            }
        }
    }
    rib
}

fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn report_memory() {
    let s = established();
    let ctx = s.negotiated().expect("negotiated").codec;
    let stream = stream(&ctx);
    let before = rss_bytes();
    let t = Instant::now();
    let rib = ingest(s, &stream);
    let elapsed = t.elapsed();
    let after = rss_bytes();
    if let (Some(b), Some(a)) = (before, after) {
        eprintln!(
            "ingest of {} prefixes: {:.3} s, resident memory +{} MiB = {:.1} bytes/prefix",
            rib.len(),
            elapsed.as_secs_f64(),
            (a.saturating_sub(b)) >> 20,
            a.saturating_sub(b) as f64 / f64::from(PREFIXES)
        );
    }
    drop(black_box(rib));
}

fn bench(c: &mut Criterion) {
    report_memory();
    let mut g = c.benchmark_group("rib");
    g.sample_size(10);
    let batches = batches();
    let a = Arc::new(attrs());
    g.bench_function("insert_1m", |b| {
        b.iter_batched(
            || {
                let mut rib = Rib::new();
                let p = rib.add_peer(peer());
                (rib, p)
            },
            |(mut rib, p)| {
                let mut changes = Vec::with_capacity(PER_UPDATE as usize);
                for batch in &batches {
                    rib.announce(p, batch, &a, &mut changes);
                    changes.clear();
                }
                rib
            },
            BatchSize::PerIteration,
        )
    });
    let ctx = established().negotiated().expect("negotiated").codec;
    let stream = stream(&ctx);
    g.bench_function("ingest_1m", |b| {
        b.iter_batched(established, |s| ingest(s, &stream), BatchSize::PerIteration)
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
