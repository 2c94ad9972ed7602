//! A session fed arbitrary bytes after connecting: framing, decoding, OPEN validation and
//! the state machine together. Byte 0 is the chunk size the rest is delivered in. The
//! session is iBGP in AS 65001 with identifier 198.18.0.2, so the seed conversations
//! (the daemons in AS 65001, identifier 198.18.0.1) reach Established.
#![no_main]

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use podroute_bgp::message::{NextHop, PathAttributes};
use podroute_bgp::session::{AdminEvent, Session, SessionConfig};

fuzz_target!(|data: &[u8]| {
    let Some((&split, stream)) = data.split_first() else {
        return;
    };
    let mut now = Instant::now();
    let mut s = Session::new(SessionConfig::new(
        65001,
        Ipv4Addr::new(198, 18, 0, 2),
        65001,
    ));
    // Something to advertise, so establishment and ROUTE-REFRESH exercise the Adj-RIB-Out.
    let attrs = PathAttributes {
        next_hop: Some(NextHop::V4(Ipv4Addr::new(198, 18, 0, 2))),
        ..PathAttributes::default()
    };
    if let Ok(prefix) = "10.244.2.0/24".parse() {
        s.announce(now, [prefix], attrs);
    }
    s.handle(now, AdminEvent::Start);
    s.handle_connected(now);
    let chunk = usize::from(split).max(1);
    for piece in stream.chunks(chunk) {
        s.handle_bytes(now, piece);
        while s.poll_action().is_some() {}
        now += Duration::from_secs(1);
        s.handle_timeout(now);
        while s.poll_action().is_some() {}
    }
});
