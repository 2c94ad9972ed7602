//! The multi-peer speaker fed arbitrary bytes on an accepted connection: sessions, import
//! policy, the prefix limit, the RIB and graceful restart together. Byte 0 is the chunk size
//! the rest is delivered in; every chunk also moves the clock a second and, when its first
//! byte is odd, the connection is dropped and accepted again (a restart). The seeds are the
//! session target's conversations (daemons in AS 65001, identifier 198.18.0.1).
#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use podroute_bgp::message::{NextHop, PathAttributes};
use podroute_bgp::session::SessionConfig;
use podroute_bgp::speaker::{
    GracefulRestartConfig, MaxPrefix, MaxPrefixAction, PeerConfig, Policy, PrefixRule, Speaker,
    SpeakerConfig, Verdict,
};

fuzz_target!(|data: &[u8]| {
    let Some((&split, stream)) = data.split_first() else {
        return;
    };
    let mut now = Instant::now();
    let peer = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
    let mut session = SessionConfig::new(65001, Ipv4Addr::new(198, 18, 0, 2), 65001);
    session.passive = true;
    let Ok(allowed) = "10.0.0.0/8".parse() else {
        return;
    };
    let mut speaker = Speaker::new(SpeakerConfig::default(), now);
    speaker.add_peer(
        now,
        PeerConfig {
            address: peer,
            session,
            import: Policy::allow_only(vec![PrefixRule::up_to(allowed, 28, Verdict::Accept)]),
            export: Policy::accept_all(),
            max_prefixes: Some(MaxPrefix {
                limit: 64,
                action: MaxPrefixAction::DropExcess,
            }),
            graceful_restart: Some(GracefulRestartConfig {
                restart_time: Duration::from_secs(120),
                stale_routes_time: Duration::from_secs(300),
            }),
            wait_for_end_of_rib: true,
            route_reflector_client: false,
            takes_reflected: true,
            bfd: podroute_bgp::speaker::BfdMode::Off,
        },
    );
    if let Ok(prefix) = "10.244.2.0/24".parse() {
        let attrs = PathAttributes {
            next_hop: Some(NextHop::V4(Ipv4Addr::new(198, 18, 0, 2))),
            ..PathAttributes::default()
        };
        speaker.set_originated(now, vec![(prefix, attrs)]);
    }
    let mut conn = speaker.incoming(now, peer).ok();
    let chunk = usize::from(split).max(1);
    for piece in stream.chunks(chunk) {
        match conn {
            Some(c) => speaker.bytes(now, c, piece),
            None => conn = speaker.incoming(now, peer).ok(),
        }
        if piece.first().is_some_and(|b| b & 1 == 1)
            && let Some(c) = conn.take()
        {
            speaker.closed(now, c);
        }
        now += Duration::from_secs(1);
        speaker.handle_timeout(now);
        while speaker.poll_action().is_some() {}
        // The forwarding table a driver would build never disagrees with the Loc-RIB.
        let mut last = std::collections::HashMap::new();
        for change in speaker.take_route_changes() {
            last.insert(change.prefix, change.next_hops);
        }
        for (prefix, next_hops) in last {
            assert_eq!(speaker.best_next_hops(&prefix), next_hops);
        }
    }
});
