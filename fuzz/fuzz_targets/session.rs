//! A session fed arbitrary bytes after connecting: framing, decoding, OPEN validation and
//! the state machine together. Input: chunks separated by the split points in byte 0.
#![no_main]

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use podroute_bgp::session::{AdminEvent, Session, SessionConfig};

fuzz_target!(|data: &[u8]| {
    let Some((&split, stream)) = data.split_first() else { return };
    let mut now = Instant::now();
    let mut s = Session::new(SessionConfig::new(65001, Ipv4Addr::new(198, 18, 0, 1), 65001));
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
