//! UPDATE decode/encode throughput: one UPDATE of 1,000 IPv4 /24s sharing attributes (the
//! shape of a bulk table transfer), and one IPv6 UPDATE of 500 /64s via MP_REACH_NLRI.

use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};
use podroute_bgp::message::{
    AsPath, CodecContext, Family, Message, MpReach, NextHop, PathAttributes, Update,
};

const CTX: CodecContext = CodecContext {
    four_octet_as: true,
    extended_messages: true,
};

fn attrs() -> PathAttributes {
    PathAttributes {
        as_path: AsPath::sequence([65001, 65010, 65100]),
        next_hop: Some(NextHop::V4(Ipv4Addr::new(198, 18, 0, 1))),
        med: Some(50),
        communities: vec![(65001 << 16) | 100],
        ..PathAttributes::default()
    }
}

fn v4_update(n: u32) -> Update {
    Update {
        attributes: Some(attrs()),
        nlri: (0..n)
            .map(|i| {
                IpNetwork::V4(
                    Ipv4Network::new(Ipv4Addr::from((10 << 24) | (i << 8)), 24).expect("net"),
                )
            })
            .collect(),
        ..Update::default()
    }
}

fn v6_update(n: u32) -> Update {
    Update {
        attributes: Some(PathAttributes {
            next_hop: None,
            ..attrs()
        }),
        mp_reach: Some(MpReach {
            family: Family::IPV6_UNICAST,
            next_hop: NextHop::V6 {
                global: Ipv6Addr::new(0xfd00, 0x198, 0x18, 0, 0, 0, 0, 1),
                link_local: None,
            },
            nlri: (0..n)
                .map(|i| {
                    let a = Ipv6Addr::new(0xfd00, 0x10, 0x244, i as u16, 0, 0, 0, 0);
                    IpNetwork::V6(Ipv6Network::new(a, 64).expect("net"))
                })
                .collect(),
        }),
        ..Update::default()
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("update");
    for (name, update, prefixes) in [
        ("ipv4_1000x24", v4_update(1000), 1000u64),
        ("ipv6_500x64", v6_update(500), 500),
    ] {
        let msg = Message::Update(update);
        let bytes = msg.to_bytes(&CTX);
        g.throughput(Throughput::Elements(prefixes));
        g.bench_function(format!("decode/{name}"), |b| {
            b.iter(|| Message::decode(black_box(&bytes), &CTX))
        });
        g.bench_function(format!("encode/{name}"), |b| {
            let mut buf = bytes::BytesMut::with_capacity(bytes.len());
            b.iter(|| {
                buf.clear();
                black_box(&msg).encode(&mut buf, &CTX);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
