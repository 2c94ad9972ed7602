//! The multi-peer speaker on simulated time: several speakers wired in memory, a fake
//! clock that jumps to the next deadline, and TCP replaced by a table of connection pairs.

mod support;

use std::time::Duration;

use podroute_bgp::message::{cease, error_code};
use podroute_bgp::speaker::PathState;

use support::*;

#[test]
fn best_path_across_peers_follows_local_pref_and_falls_back_when_a_peer_goes() {
    let mut net = mesh(&[1, 2, 3]);
    originate(&mut net, 2, &["10.99.0.0/24"], None);
    originate(&mut net, 3, &["10.99.0.0/24"], Some(200));
    net.run_for(Duration::from_secs(3));
    assert_eq!(net.state(1, 2), Some(State::Established));
    assert_eq!(net.state(1, 3), Some(State::Established));
    assert_eq!(net.fib(1).get(&net_("10.99.0.0/24")), Some(&one(3)));

    // Node 3 is de-configured on node 1: Cease/Peer De-configured, best moves to node 2.
    let now = net.now;
    net.node(1).speaker.remove_peer(now, ip(3));
    net.settle();
    assert_eq!(net.fib(1).get(&net_("10.99.0.0/24")), Some(&one(2)));
    let received = net.node(3).seen.notifications(false);
    assert_eq!(
        received.last().map(|n| (n.code, n.subcode)),
        Some((error_code::CEASE, cease::PEER_DECONFIGURED))
    );
    assert!(net.node(1).speaker.initial_sync_done());
}

#[test]
fn import_policy_keeps_only_what_it_allows_and_counts_the_rest() {
    let mut net = mesh(&[1, 2]);
    let mut config = peer_config(1, 2);
    config.import = Policy::allow_only(vec![PrefixRule::up_to(
        net_("10.99.0.0/16"),
        24,
        Verdict::Accept,
    )]);
    let now = net.now;
    net.node(1).speaker.add_peer(now, config.clone());
    originate(
        &mut net,
        2,
        &["10.99.1.0/24", "10.98.0.0/24", "10.99.2.128/25"],
        None,
    );
    net.run_for(Duration::from_secs(3));
    assert_eq!(
        net.fib(1).keys().copied().collect::<Vec<_>>(),
        vec![net_("10.99.1.0/24")]
    );
    let status = net.node(1).speaker.peers().next().expect("peer");
    assert_eq!((status.accepted, status.rejected), (1, 2));
    let reported = net
        .node(1)
        .seen
        .actions
        .iter()
        .filter(|a| matches!(a, SpeakerAction::RouteRejected { .. }))
        .count();
    assert_eq!(reported, 2);

    // The policy is widened: the route refresh brings the /25 in without a reset.
    config.import = Policy::accept_all();
    let established_before = net
        .node(1)
        .speaker
        .peers()
        .next()
        .expect("peer")
        .established_count;
    let now = net.now;
    net.node(1).speaker.update_peer(now, config);
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.fib(1).len(), 3);
    let after = net.node(1).speaker.peers().next().expect("peer");
    assert_eq!(
        after.established_count, established_before,
        "no session reset"
    );
    assert_eq!(after.state, State::Established);
}

/// The BGP message type of ROUTE-REFRESH (RFC 2918).
const ROUTE_REFRESH: u8 = 5;

/// Node 1's configuration for node 2, importing exactly `prefixes`.
fn allow(prefixes: &[&str]) -> PeerConfig {
    let mut config = peer_config(1, 2);
    config.import = Policy::allow_only(
        prefixes
            .iter()
            .map(|p| PrefixRule::exact(net_(p), Verdict::Accept))
            .collect(),
    );
    config
}

#[test]
fn an_import_change_asks_for_a_refresh_only_when_the_peer_sent_something_refused() {
    let mut net = mesh(&[1, 2]);
    let update = |net: &mut Net, prefixes: &[&str]| {
        let now = net.now;
        net.node(1).speaker.update_peer(now, allow(prefixes));
        net.run_for(Duration::from_secs(1));
    };
    let refreshes = |net: &mut Net| net.node(1).seen.sent_messages(ROUTE_REFRESH);
    let held = |net: &mut Net| net.fib(1).keys().map(|p| p.to_string()).collect::<Vec<_>>();
    update(&mut net, &["10.99.1.0/24"]);
    originate(&mut net, 2, &["10.99.1.0/24"], None);
    net.run_for(Duration::from_secs(3));
    assert_eq!(held(&mut net), ["10.99.1.0/24"]);

    // Wider, but nothing was refused: nothing to ask for (a route reflector's client widens
    // its policy for every new Node).
    update(&mut net, &["10.99.1.0/24", "10.99.2.0/24"]);
    assert_eq!(refreshes(&mut net), 0);
    assert_eq!(held(&mut net), ["10.99.1.0/24"]);

    // A route is refused; the policy that takes it asks for it.
    originate(&mut net, 2, &["10.99.1.0/24", "10.99.3.0/24"], None);
    net.run_for(Duration::from_secs(1));
    assert_eq!(held(&mut net), ["10.99.1.0/24"]);
    update(&mut net, &["10.99.1.0/24", "10.99.3.0/24"]);
    // One ROUTE-REFRESH per negotiated family.
    let asked = refreshes(&mut net);
    assert!(asked > 0);
    assert_eq!(held(&mut net), ["10.99.1.0/24", "10.99.3.0/24"]);

    // Narrower: dropped here without asking; wider again: asked for.
    update(&mut net, &["10.99.3.0/24"]);
    assert_eq!(refreshes(&mut net), asked);
    assert_eq!(held(&mut net), ["10.99.3.0/24"]);
    update(&mut net, &["10.99.1.0/24", "10.99.3.0/24"]);
    assert_eq!(refreshes(&mut net), 2 * asked);
    assert_eq!(held(&mut net), ["10.99.1.0/24", "10.99.3.0/24"]);
    let status = net.node(1).speaker.peers().next().expect("peer");
    assert_eq!(status.established_count, 1, "no session reset");
}

#[test]
fn a_policy_that_takes_refused_routes_resets_a_peer_without_route_refresh() {
    let mut net = mesh(&[1, 2]);
    net.without_route_refresh.push(ip(2));
    let now = net.now;
    net.node(1)
        .speaker
        .update_peer(now, allow(&["10.99.1.0/24"]));
    originate(&mut net, 2, &["10.99.1.0/24", "10.99.3.0/24"], None);
    net.run_for(Duration::from_secs(3));
    let held = |net: &Net| net.fib(1).keys().map(|p| p.to_string()).collect::<Vec<_>>();
    assert_eq!(held(&net), ["10.99.1.0/24"]);
    assert_eq!(
        net.node(1)
            .speaker
            .peers()
            .next()
            .expect("peer")
            .established_count,
        1
    );

    // The refused route can only come back with the session: Cease/Configuration Change,
    // no ROUTE-REFRESH the peer would not understand.
    let now = net.now;
    net.node(1)
        .speaker
        .update_peer(now, allow(&["10.99.1.0/24", "10.99.3.0/24"]));
    net.run_for(Duration::from_secs(10));
    assert_eq!(net.node(1).seen.sent_messages(ROUTE_REFRESH), 0);
    let received = net.node(2).seen.notifications(false);
    assert_eq!(
        received.last().map(|n| (n.code, n.subcode)),
        Some((error_code::CEASE, cease::CONFIGURATION_CHANGE))
    );
    let status = net.node(1).speaker.peers().next().expect("peer");
    assert_eq!(
        (status.state, status.established_count),
        (State::Established, 2)
    );
    assert_eq!(held(&net), ["10.99.1.0/24", "10.99.3.0/24"]);
}

#[test]
fn export_policy_decides_what_each_peer_gets() {
    let mut net = mesh(&[1, 2, 3]);
    let mut to_3 = peer_config(1, 3);
    to_3.export = Policy::allow_only(vec![PrefixRule::exact(
        net_("10.244.1.0/24"),
        Verdict::Accept,
    )]);
    let now = net.now;
    net.node(1).speaker.add_peer(now, to_3);
    originate(&mut net, 1, &["10.244.1.0/24", "10.200.0.0/24"], None);
    net.run_for(Duration::from_secs(3));
    assert_eq!(net.fib(2).len(), 2);
    assert_eq!(
        net.fib(3).keys().copied().collect::<Vec<_>>(),
        vec![net_("10.244.1.0/24")]
    );
}

fn routes(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("10.99.{i}.0/24")).collect()
}

fn limited(net: &mut Net, action: MaxPrefixAction) {
    let mut config = peer_config(1, 2);
    config.max_prefixes = Some(MaxPrefix { limit: 3, action });
    let now = net.now;
    net.node(1).speaker.add_peer(now, config);
    let five = routes(5);
    let five: Vec<&str> = five.iter().map(String::as_str).collect();
    originate(net, 2, &five, None);
    net.run_for(Duration::from_secs(3));
}

#[test]
fn max_prefix_warn_keeps_all_and_reports_once() {
    let mut net = mesh(&[1, 2]);
    limited(&mut net, MaxPrefixAction::Warn);
    assert_eq!(net.fib(1).len(), 5);
    let reports = net
        .node(1)
        .seen
        .actions
        .iter()
        .filter(|a| matches!(a, SpeakerAction::MaxPrefixExceeded { limit: 3, .. }))
        .count();
    assert_eq!(reports, 1);
    assert_eq!(net.state(1, 2), Some(State::Established));
}

#[test]
fn max_prefix_drop_excess_keeps_the_limit() {
    let mut net = mesh(&[1, 2]);
    limited(&mut net, MaxPrefixAction::DropExcess);
    assert_eq!(net.fib(1).len(), 3);
    let status = net.node(1).speaker.peers().next().expect("peer");
    assert_eq!((status.accepted, status.rejected), (3, 2));
    assert_eq!(net.state(1, 2), Some(State::Established));
}

#[test]
fn a_raised_prefix_limit_asks_for_the_routes_the_old_one_dropped() {
    let mut net = mesh(&[1, 2]);
    limited(&mut net, MaxPrefixAction::DropExcess);
    assert_eq!(net.fib(1).len(), 3);
    let refreshes = |net: &mut Net| net.node(1).seen.sent_messages(ROUTE_REFRESH);
    let established = |net: &mut Net| {
        let status = net.node(1).speaker.peers().next().expect("peer");
        status.established_count
    };
    let before = established(&mut net);
    assert_eq!(refreshes(&mut net), 0);
    let raise = |net: &mut Net, limit: usize| {
        let mut config = peer_config(1, 2);
        config.max_prefixes = Some(MaxPrefix {
            limit,
            action: MaxPrefixAction::DropExcess,
        });
        let now = net.now;
        net.node(1).speaker.update_peer(now, config);
        net.run_for(Duration::from_secs(1));
    };
    // Lower: applies to new prefixes only, nothing dropped, nothing asked.
    raise(&mut net, 2);
    assert_eq!(net.fib(1).len(), 3);
    assert_eq!(refreshes(&mut net), 0);
    raise(&mut net, 10);
    assert_eq!(net.fib(1).len(), 5, "the two dropped routes came back");
    let asked = refreshes(&mut net);
    assert!(asked > 0);
    // Nothing refused since: a further change asks for nothing.
    raise(&mut net, 20);
    assert_eq!(refreshes(&mut net), asked);
    assert_eq!(established(&mut net), before, "no session reset");
}

#[test]
fn a_warn_limit_changed_asks_for_nothing_even_after_refusals() {
    // Refused by import policy, then a Warn limit edited: a limit that dropped nothing
    // cannot take anything back.
    let mut net = mesh(&[1, 2]);
    let mut config = peer_config(1, 2);
    config.import = Policy::allow_only(vec![PrefixRule::exact(
        net_("10.99.0.0/24"),
        Verdict::Accept,
    )]);
    let now = net.now;
    net.node(1).speaker.update_peer(now, config.clone());
    originate(&mut net, 2, &["10.99.0.0/24", "10.99.1.0/24"], None);
    net.run_for(Duration::from_secs(3));
    assert_eq!(net.fib(1).len(), 1);
    for limit in [5, 1] {
        config.max_prefixes = Some(MaxPrefix {
            limit,
            action: MaxPrefixAction::Warn,
        });
        let now = net.now;
        net.node(1).speaker.update_peer(now, config.clone());
        net.run_for(Duration::from_secs(1));
    }
    assert_eq!(net.node(1).seen.sent_messages(ROUTE_REFRESH), 0);
    assert_eq!(net.fib(1).len(), 1);
}

#[test]
fn a_limit_change_does_not_start_a_session_that_strict_bfd_holds() {
    let mut net = bfd_pair(BfdMode::Strict);
    net.run_for(Duration::from_secs(10));
    assert_eq!(net.state(1, 2), Some(State::Idle));
    let mut config = peer_config(1, 2);
    config.bfd = BfdMode::Strict;
    config.max_prefixes = Some(MaxPrefix {
        limit: 10,
        action: MaxPrefixAction::DropExcess,
    });
    let now = net.now;
    net.node(1).speaker.update_peer(now, config);
    net.run_for(Duration::from_secs(10));
    assert_eq!(net.state(1, 2), Some(State::Idle));
    assert!(net.node(1).speaker.peers().all(|p| p.waiting_for_bfd));
    let now = net.now;
    net.node(1).speaker.path_changed(now, ip(2), PathState::Up);
    net.run_for(Duration::from_secs(10));
    assert_eq!(net.state(1, 2), Some(State::Established));
}

#[test]
fn max_prefix_cease_holds_the_session_down_until_its_restart_timer() {
    let mut net = mesh(&[1, 2]);
    // Node 2 connects out too, so it keeps knocking while node 1 holds the session down.
    let mut active = peer_config(2, 1);
    active.session.passive = false;
    let now = net.now;
    net.node(2).speaker.add_peer(now, active);
    limited(
        &mut net,
        MaxPrefixAction::Cease {
            restart_after: Some(Duration::from_secs(60)),
        },
    );
    assert!(net.fib(1).is_empty(), "routes go with the Cease");
    let sent = net.node(1).seen.notifications(true);
    assert_eq!(
        sent.first().map(|n| (n.code, n.subcode)),
        Some((error_code::CEASE, cease::MAX_PREFIXES))
    );
    // Node 2 keeps trying; node 1 refuses while held down.
    net.run_for(Duration::from_secs(30));
    assert_ne!(net.state(1, 2), Some(State::Established));
    assert!(net.node(1).seen.actions.iter().any(|a| matches!(
        a,
        SpeakerAction::ConnectionRefused {
            reason: Refusal::HeldDown,
            ..
        }
    )));
    // After the restart timer the session comes back (and is ceased again: still 5 > 3).
    let established = |net: &mut Net| {
        net.node(1)
            .seen
            .actions
            .iter()
            .filter(|a| {
                matches!(
                    a,
                    SpeakerAction::PeerState {
                        to: State::Established,
                        ..
                    }
                )
            })
            .count()
    };
    let before = established(&mut net);
    net.run_for(Duration::from_secs(40));
    assert_eq!(established(&mut net), before + 1);
}

#[test]
fn a_killed_peer_keeps_its_routes_stale_until_it_is_back_and_sends_end_of_rib() {
    let mut net = mesh(&[1, 2, 3]);
    originate(&mut net, 2, &["10.244.2.0/24", "10.99.2.0/24"], None);
    originate(&mut net, 3, &["10.244.3.0/24"], None);
    net.run_for(Duration::from_secs(3));
    assert_eq!(net.fib(1).len(), 3);

    net.kill(2);
    net.settle();
    assert_eq!(net.fib(1).len(), 3, "kept while node 2 restarts");
    assert_eq!(net.node(1).speaker.peers().next().expect("peer").stale, 2);

    // Back, now announcing only one of the two: the other goes after its End-of-RIB;
    // the re-announced one never left the table.
    net.run_for(Duration::from_secs(10));
    net.node(1).changes.clear();
    net.add_restarted_node(2);
    let now = net.now;
    for peer in [1, 3] {
        net.node(2).speaker.add_peer(now, peer_config(2, peer));
    }
    originate(&mut net, 2, &["10.244.2.0/24"], None);
    net.run_for(Duration::from_secs(5));
    assert_eq!(net.state(1, 2), Some(State::Established));
    assert_eq!(
        net.fib(1).keys().copied().collect::<Vec<_>>(),
        vec![net_("10.244.2.0/24"), net_("10.244.3.0/24")]
    );
    let removed: Vec<&RouteChange> = net
        .node(1)
        .changes
        .iter()
        .filter(|c| c.next_hops == NextHops::None)
        .collect();
    assert_eq!(removed.len(), 1, "only the route not refreshed went");
    assert_eq!(removed[0].prefix, net_("10.99.2.0/24"));
    // Node 3's route never moved.
    assert!(
        net.node(1)
            .changes
            .iter()
            .all(|c| c.prefix != net_("10.244.3.0/24"))
    );
}

#[test]
fn two_restarts_inside_the_restart_time_keep_the_routes() {
    let mut net = mesh(&[1, 2]);
    originate(&mut net, 2, &["10.244.2.0/24"], None);
    net.run_for(Duration::from_secs(3));
    for _ in 0..2 {
        net.kill(2);
        net.run_for(Duration::from_secs(20));
        assert_eq!(net.fib(1).len(), 1);
        net.add_restarted_node(2);
        let now = net.now;
        net.node(2).speaker.add_peer(now, peer_config(2, 1));
        // Killed again before it sent anything: no originate this time round.
    }
    originate(&mut net, 2, &["10.244.2.0/24"], None);
    net.run_for(Duration::from_secs(5));
    assert_eq!(net.fib(1).get(&net_("10.244.2.0/24")), Some(&one(2)));
    assert!(
        net.node(1)
            .changes
            .iter()
            .all(|c| c.next_hops != NextHops::None),
        "never withdrawn"
    );
}

#[test]
fn stale_routes_go_when_the_restart_time_runs_out() {
    let mut net = mesh(&[1, 2]);
    originate(&mut net, 2, &["10.244.2.0/24"], None);
    net.run_for(Duration::from_secs(3));
    net.kill(2);
    net.run_for(Duration::from_secs(119));
    assert_eq!(net.fib(1).len(), 1);
    net.run_for(Duration::from_secs(2));
    assert!(net.fib(1).is_empty());
    assert!(net.node(1).seen.actions.iter().any(|a| matches!(
        a,
        SpeakerAction::StaleSwept {
            expired: true,
            routes: 1,
            ..
        }
    )));
}

#[test]
fn without_graceful_restart_a_peers_routes_go_at_once() {
    let mut net = Net::new();
    net.add_node(1, SpeakerConfig::default());
    net.add_node(2, SpeakerConfig::default());
    let now = net.now;
    let mut a = peer_config(1, 2);
    a.graceful_restart = None;
    net.node(1).speaker.add_peer(now, a);
    net.node(2).speaker.add_peer(now, peer_config(2, 1));
    originate(&mut net, 2, &["10.244.2.0/24"], None);
    net.run_for(Duration::from_secs(3));
    assert_eq!(net.fib(1).len(), 1);
    net.kill(2);
    net.settle();
    assert!(net.fib(1).is_empty());
}

#[test]
fn a_notification_means_no_restart_and_other_peers_keep_their_routes() {
    let mut net = mesh(&[1, 2, 3]);
    originate(&mut net, 2, &["10.244.2.0/24"], None);
    originate(&mut net, 3, &["10.244.3.0/24"], None);
    net.run_for(Duration::from_secs(3));
    // Node 2's session to 1 changes configuration: Cease/Other Configuration Change, and
    // node 1 drops node 2's routes (no graceful restart after a NOTIFICATION) while node
    // 3's stay.
    let mut changed = peer_config(2, 1);
    changed.session.hold_time = 30;
    let now = net.now;
    net.node(2).speaker.update_peer(now, changed);
    net.settle();
    let received = net.node(1).seen.notifications(false);
    assert_eq!(
        received.last().map(|n| (n.code, n.subcode)),
        Some((error_code::CEASE, cease::CONFIGURATION_CHANGE))
    );
    assert!(!net.fib(1).contains_key(&net_("10.244.2.0/24")));
    assert!(net.fib(1).contains_key(&net_("10.244.3.0/24")));
    // It comes back by itself.
    net.run_for(Duration::from_secs(10));
    assert_eq!(net.state(1, 2), Some(State::Established));
    assert!(net.fib(1).contains_key(&net_("10.244.2.0/24")));
}

#[test]
fn both_sides_connecting_at_once_end_with_one_session() {
    let mut net = Net::new();
    net.add_node(1, SpeakerConfig::default());
    net.add_node(2, SpeakerConfig::default());
    let now = net.now;
    for (a, b) in [(1, 2), (2, 1)] {
        let mut c = peer_config(a, b);
        c.session.passive = false;
        net.node(a).speaker.add_peer(now, c);
    }
    originate(&mut net, 2, &["10.244.2.0/24"], None);
    originate(&mut net, 1, &["10.244.1.0/24"], None);
    net.run_for(Duration::from_secs(5));
    assert_eq!(net.state(1, 2), Some(State::Established));
    assert_eq!(net.state(2, 1), Some(State::Established));
    assert_eq!(net.fib(1).len(), 1);
    assert_eq!(net.fib(2).len(), 1);
    // One live connection pair is left.
    assert_eq!(net.wires.len(), 2);
    // And it stays up: no flapping over the next minute.
    net.run_for(Duration::from_secs(60));
    let count = net
        .node(1)
        .speaker
        .peers()
        .next()
        .expect("peer")
        .established_count;
    assert_eq!(count, 1);
}

/// Node 2 (the higher address: passive towards node 1) is gone for minutes, so node 1's
/// attempts have backed off far; back, node 2 connects out itself after its short wait
/// instead of waiting out node 1's back-off.
fn back_after_a_long_outage(passive_connect_after: Option<Duration>) -> Net {
    let mut net = Net::new();
    net.add_node(1, SpeakerConfig::default());
    net.add_node(2, SpeakerConfig::default());
    let mut to2 = peer_config(1, 2);
    to2.session.connect_retry_max = Duration::from_secs(120);
    let mut to1 = peer_config(2, 1);
    to1.session.passive_connect_after = passive_connect_after;
    let now = net.now;
    net.node(1).speaker.add_peer(now, to2);
    net.node(2).speaker.add_peer(now, to1.clone());
    originate(&mut net, 2, &["10.244.2.0/24"], None);
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.state(1, 2), Some(State::Established));
    net.kill(2);
    net.run_for(Duration::from_secs(300));
    net.add_restarted_node(2);
    let now = net.now;
    net.node(2).speaker.add_peer(now, to1);
    originate(&mut net, 2, &["10.244.2.0/24"], None);
    net.run_for(Duration::from_secs(3));
    net
}

#[test]
fn a_passive_node_back_from_a_long_outage_connects_out_to_a_peer_that_backed_off() {
    let net = back_after_a_long_outage(Some(Duration::from_secs(2)));
    assert_eq!(net.state(1, 2), Some(State::Established));
    assert_eq!(net.state(2, 1), Some(State::Established));
    assert_eq!(net.fib(1).get(&net_("10.244.2.0/24")), Some(&one(2)));
}

#[test]
fn a_purely_passive_node_waits_out_its_peers_back_off() {
    // What the wait above is for: without it the session is still down 3 s later.
    let net = back_after_a_long_outage(None);
    assert_ne!(net.state(2, 1), Some(State::Established));
}

#[test]
fn initial_sync_waits_for_end_of_rib_or_the_deferral() {
    let mut net = Net::new();
    net.add_node(1, SpeakerConfig::default());
    let now = net.now;
    net.node(1).speaker.add_peer(now, peer_config(1, 9));
    assert!(!net.node(1).speaker.initial_sync_done());
    net.run_for(Duration::from_secs(59));
    assert!(!net.node(1).speaker.initial_sync_done());
    net.run_for(Duration::from_secs(2));
    assert!(net.node(1).speaker.initial_sync_done());
    assert!(net.node(1).seen.actions.iter().any(|a| matches!(
        a,
        SpeakerAction::InitialSyncDone {
            deferral_expired: true
        }
    )));
}

#[test]
fn a_further_connection_while_established_is_refused_without_graceful_restart() {
    let mut net = Net::new();
    net.add_node(1, SpeakerConfig::default());
    net.add_node(2, SpeakerConfig::default());
    let now = net.now;
    let mut a = peer_config(1, 2);
    a.graceful_restart = None;
    net.node(1).speaker.add_peer(now, a);
    net.node(2).speaker.add_peer(now, peer_config(2, 1));
    net.run_for(Duration::from_secs(3));
    assert_eq!(net.state(1, 2), Some(State::Established));
    let now = net.now;
    assert_eq!(
        net.node(1).speaker.incoming(now, ip(2)),
        Err(Refusal::Established)
    );
    net.settle();
    assert_eq!(net.state(1, 2), Some(State::Established));
}

#[test]
fn a_restarted_peer_that_reconnects_before_its_old_session_died_takes_over() {
    // Node 2 restarts so fast that node 1 never saw the old connection end (a lost FIN):
    // its new connection arrives while node 1 is Established. With graceful restart the new
    // session replaces the old one once its OPEN is valid, and the routes stay throughout.
    let mut net = mesh(&[1, 2]);
    originate(&mut net, 2, &["10.244.2.0/24"], None);
    net.run_for(Duration::from_secs(3));
    let old: Vec<(IpAddr, ConnId)> = net.wires.keys().filter(|k| k.0 == ip(2)).copied().collect();
    for key in old {
        // Node 2's end vanishes silently.
        if let Some(theirs) = net.wires.remove(&key) {
            net.wires.remove(&theirs);
        }
    }
    net.nodes.remove(&ip(2));
    net.add_restarted_node(2);
    let now = net.now;
    let mut back = peer_config(2, 1);
    back.session.passive = false;
    net.node(2).speaker.add_peer(now, back);
    originate(&mut net, 2, &["10.244.2.0/24"], None);
    net.node(1).changes.clear();
    net.run_for(Duration::from_secs(3));
    assert_eq!(net.state(1, 2), Some(State::Established));
    assert_eq!(net.state(2, 1), Some(State::Established));
    assert_eq!(net.fib(1).get(&net_("10.244.2.0/24")), Some(&one(2)));
    assert!(
        net.node(1)
            .changes
            .iter()
            .all(|c| c.next_hops != NextHops::None),
        "never withdrawn"
    );
    let status = net.node(1).speaker.peers().next().expect("peer");
    assert_eq!(status.established_count, 2);
}

#[test]
fn a_forgotten_peer_gets_no_notification_and_keeps_our_routes_stale() {
    let mut net = mesh(&[1, 2]);
    originate(&mut net, 1, &["10.244.1.0/24"], None);
    net.run_for(Duration::from_secs(3));
    assert_eq!(net.fib(2).len(), 1);
    let now = net.now;
    net.node(1).speaker.forget_peer(now, ip(2));
    net.settle();
    assert!(net.node(2).seen.notifications(false).is_empty());
    assert_eq!(net.fib(2).len(), 1, "kept as stale");
    assert_eq!(net.node(2).speaker.peers().next().expect("peer").stale, 1);
}

#[test]
fn a_peer_not_configured_is_refused() {
    let mut net = mesh(&[1]);
    let now = net.now;
    assert_eq!(
        net.node(1).speaker.incoming(now, ip(7)),
        Err(Refusal::UnknownPeer)
    );
}

/// BFD Down from a peer whose BFD shares fate with its control plane (C bit clear).
const DOWN: PathState = PathState::Down {
    control_plane_independent: false,
};

/// Nodes 1 and 2 peered with graceful restart, node 1's session to 2 under BFD `mode`.
fn bfd_pair(mode: BfdMode) -> Net {
    let mut net = Net::new();
    net.add_node(1, SpeakerConfig::default());
    net.add_node(2, SpeakerConfig::default());
    let now = net.now;
    let mut a = peer_config(1, 2);
    a.bfd = mode;
    net.node(1).speaker.add_peer(now, a);
    net.node(2).speaker.add_peer(now, peer_config(2, 1));
    originate(&mut net, 2, &["10.244.2.0/24"], None);
    net
}

#[test]
fn bfd_down_ends_the_session_with_cease_bfd_down_and_drops_routes_despite_graceful_restart() {
    let mut net = bfd_pair(BfdMode::On);
    net.run_for(Duration::from_secs(3));
    assert_eq!(net.state(1, 2), Some(State::Established));
    assert_eq!(net.fib(1).len(), 1);
    // The link dies: TCP says nothing, the hold timer has a minute to go; BFD speaks.
    net.cut.push(ip(2));
    let now = net.now;
    net.node(1).speaker.path_changed(now, ip(2), DOWN);
    net.settle();
    assert!(net.fib(1).is_empty(), "a dead path is no graceful restart");
    let sent = net.node(1).seen.notifications(true);
    assert_eq!(
        sent.last().map(|n| (n.code, n.subcode)),
        Some((error_code::CEASE, cease::BFD_DOWN))
    );
    assert_ne!(net.state(1, 2), Some(State::Established));
    // Not strict: the session tries again by itself once the link is back.
    net.cut.clear();
    net.run_for(Duration::from_secs(30));
    assert_eq!(net.state(1, 2), Some(State::Established));
    assert_eq!(net.fib(1).len(), 1);
}

#[test]
fn strict_bfd_holds_the_session_until_bfd_is_up() {
    let mut net = bfd_pair(BfdMode::Strict);
    net.run_for(Duration::from_secs(10));
    assert_eq!(net.state(1, 2), Some(State::Idle));
    assert!(
        net.node(1)
            .speaker
            .peers()
            .all(|p| p.waiting_for_bfd && p.established_count == 0)
    );
    // Node 2 may connect all it likes: refused while BFD is not Up.
    assert!(net.fib(1).is_empty());
    let now = net.now;
    net.node(1).speaker.path_changed(now, ip(2), PathState::Up);
    net.run_for(Duration::from_secs(10));
    assert_eq!(net.state(1, 2), Some(State::Established));
    assert_eq!(net.fib(1).len(), 1);
    // BFD Down: the session ends and stays down until BFD is Up again.
    let now = net.now;
    net.node(1).speaker.path_changed(now, ip(2), DOWN);
    net.run_for(Duration::from_secs(60));
    assert_eq!(net.state(1, 2), Some(State::Idle));
    assert!(net.fib(1).is_empty());
    let now = net.now;
    net.node(1).speaker.path_changed(now, ip(2), PathState::Up);
    net.run_for(Duration::from_secs(10));
    assert_eq!(net.state(1, 2), Some(State::Established));
}

#[test]
fn a_peer_without_bfd_ignores_what_bfd_says() {
    let mut net = bfd_pair(BfdMode::Off);
    net.run_for(Duration::from_secs(3));
    let now = net.now;
    net.node(1).speaker.path_changed(now, ip(2), DOWN);
    net.settle();
    assert_eq!(net.state(1, 2), Some(State::Established));
    assert_eq!(net.fib(1).len(), 1);
}

#[test]
fn bfd_down_after_the_peer_closed_without_notification_leaves_its_graceful_restart_alone() {
    // The peer's agent is killed: its kernel closes the connection at once (no
    // NOTIFICATION), so its routes are kept stale; its BFD, in the same process, stops too
    // and is reported Down a Detection Time later. That is the same restart seen again.
    for mode in [BfdMode::On, BfdMode::Strict] {
        let mut net = bfd_pair(mode);
        let now = net.now;
        net.node(1).speaker.path_changed(now, ip(2), PathState::Up);
        net.run_for(Duration::from_secs(3));
        assert_eq!(net.fib(1).len(), 1);
        net.kill(2);
        // Node 1 tries to reconnect meanwhile, as it does for a restarting peer.
        net.run_for(Duration::from_millis(900));
        assert_eq!(net.fib(1).len(), 1, "{mode:?}: kept as stale");
        let now = net.now;
        net.node(1).speaker.path_changed(now, ip(2), DOWN);
        net.settle();
        assert_eq!(
            net.fib(1).len(),
            1,
            "{mode:?}: BFD Down did not end the graceful restart"
        );
        let peer = net.node(1).speaker.peers().next().expect("peer");
        assert_eq!(peer.stale, 1, "{mode:?}");
        assert!(
            net.node(1)
                .seen
                .notifications(true)
                .iter()
                .all(|n| n.subcode != cease::BFD_DOWN),
            "{mode:?}"
        );
        // The restart time still bounds it (120 s in the test configuration).
        net.run_for(Duration::from_secs(200));
        assert!(net.fib(1).is_empty(), "{mode:?}: the restart time ended it");
    }
}

#[test]
fn bfd_turned_on_off_or_strict_on_a_running_peer_resets_no_session() {
    let mut net = bfd_pair(BfdMode::Off);
    net.run_for(Duration::from_secs(3));
    assert_eq!(net.state(1, 2), Some(State::Established));
    let count = |net: &mut Net| {
        net.node(1)
            .speaker
            .peers()
            .next()
            .expect("peer")
            .established_count
    };
    for mode in [BfdMode::On, BfdMode::Strict, BfdMode::Off] {
        let mut config = peer_config(1, 2);
        config.bfd = mode;
        let now = net.now;
        net.node(1).speaker.update_peer(now, config);
        net.run_for(Duration::from_secs(3));
        assert_eq!(net.state(1, 2), Some(State::Established), "{mode:?}");
        assert_eq!(count(&mut net), 1, "{mode:?}: not restarted");
    }
    assert!(net.node(1).seen.notifications(true).is_empty());
}

#[test]
fn a_session_strict_bfd_holds_starts_when_bfd_is_turned_off() {
    let mut net = bfd_pair(BfdMode::Strict);
    net.run_for(Duration::from_secs(10));
    assert_eq!(net.state(1, 2), Some(State::Idle));
    let now = net.now;
    net.node(1).speaker.update_peer(now, peer_config(1, 2));
    net.run_for(Duration::from_secs(10));
    assert_eq!(net.state(1, 2), Some(State::Established));
    assert_eq!(net.fib(1).len(), 1);
    assert!(net.node(1).speaker.peers().all(|p| !p.waiting_for_bfd));
}

#[test]
fn bfd_down_from_a_control_plane_independent_peer_ends_its_graceful_restart() {
    // The peer's BFD outlives its control plane (C bit set): its BGP closed without a
    // NOTIFICATION, and then its BFD went Down too — its forwarding died, drop the routes.
    let mut net = bfd_pair(BfdMode::On);
    net.run_for(Duration::from_secs(3));
    net.kill(2);
    net.run_for(Duration::from_millis(900));
    assert_eq!(net.fib(1).len(), 1, "kept as stale");
    let now = net.now;
    let independent = PathState::Down {
        control_plane_independent: true,
    };
    net.node(1).speaker.path_changed(now, ip(2), independent);
    net.settle();
    assert!(net.fib(1).is_empty(), "a dead path is no graceful restart");
    assert_eq!(net.node(1).speaker.peers().next().expect("peer").stale, 0);
}

#[test]
fn a_peers_new_graceful_restart_time_restarts_its_session_only() {
    let mut net = mesh(&[1, 2, 3]);
    originate(&mut net, 2, &["10.99.2.0/24"], None);
    originate(&mut net, 3, &["10.99.3.0/24"], None);
    net.run_for(Duration::from_secs(3));
    let counts = |net: &mut Net| -> Vec<(IpAddr, u64)> {
        net.node(1)
            .speaker
            .peers()
            .map(|p| (p.address, p.established_count))
            .collect()
    };
    assert_eq!(counts(&mut net), [(ip(2), 1), (ip(3), 1)]);
    let mut config = peer_config(1, 2);
    config.graceful_restart = Some(GracefulRestartConfig {
        restart_time: Duration::from_secs(30),
        ..gr().expect("gr")
    });
    let now = net.now;
    net.node(1).speaker.update_peer(now, config);
    net.run_for(Duration::from_secs(5));
    // The capability is in the OPEN: node 2 got Cease/Configuration Change and a new OPEN
    // with the new restart time; node 3's session never noticed.
    assert_eq!(counts(&mut net), [(ip(2), 2), (ip(3), 1)]);
    assert_eq!(
        net.node(2)
            .seen
            .notifications(false)
            .last()
            .map(|n| (n.code, n.subcode)),
        Some((error_code::CEASE, cease::CONFIGURATION_CHANGE))
    );
    assert!(net.node(3).seen.notifications(false).is_empty());
    assert_eq!(net.state(1, 2), Some(State::Established));
    assert_eq!(net.fib(1).len(), 2, "both routes back");
}

#[test]
fn a_peer_of_any_as_is_ibgp_by_its_open() {
    let mut net = mesh(&[1, 2]);
    originate(&mut net, 2, &["10.99.2.0/24"], Some(200));
    let mut config = peer_config(1, 2);
    config.session.peer_as = PeerAs::Any;
    let now = net.now;
    net.node(1).speaker.update_peer(now, config);
    net.run_for(Duration::from_secs(5));
    assert_eq!(net.state(1, 2), Some(State::Established));
    let peer = net.node(1).speaker.peers().next().expect("peer");
    assert_eq!(peer.peer_as, Some(AS), "learned from the OPEN");
    // iBGP: node 2's LOCAL_PREF counts (an eBGP peer's would be dropped).
    let best = net
        .node(1)
        .speaker
        .rib()
        .best(&net_("10.99.2.0/24"))
        .map(|(_, a)| a.local_pref);
    assert_eq!(best, Some(Some(200)));
}
