//! ECMP on simulated time: two routers announce one prefix to a node with max paths 2.

mod support;

use std::time::Duration;

use support::*;

const ROUTER_AS: [u32; 2] = [65002, 65003];

/// Node 1 (AS 64512, `max_paths`) and routers 2 and 3 (each its own AS), each router
/// announcing 0.0.0.0/0 with itself as next hop; graceful restart on every session.
fn two_routers(max_paths: usize) -> Net {
    let mut net = Net::new();
    net.add_node(
        1,
        SpeakerConfig {
            max_paths,
            ..SpeakerConfig::default()
        },
    );
    let now = net.now;
    for (router, asn) in [2u8, 3].into_iter().zip(ROUTER_AS) {
        net.add_node(router, SpeakerConfig::default());
        let mut to_router = peer_config(1, router);
        to_router.session.peer_as = podroute_bgp::session::PeerAs::Is(asn);
        to_router.wait_for_end_of_rib = false;
        net.node(1).speaker.add_peer(now, to_router);
        let mut to_node = peer_config(router, 1);
        to_node.session.local_as = asn;
        net.node(router).speaker.add_peer(now, to_node);
        originate(&mut net, router, &["0.0.0.0/0"], None);
    }
    net.run_for(Duration::from_secs(3));
    net
}

fn default_route() -> IpNetwork {
    net_("0.0.0.0/0")
}

#[test]
fn two_routers_give_one_route_with_both_next_hops() {
    let net = two_routers(2);
    assert_eq!(
        net.fib(1).get(&default_route()),
        Some(&NextHops::Many(vec![ip(2), ip(3)].into()))
    );
    let net = two_routers(1);
    assert_eq!(
        net.fib(1).get(&default_route()),
        Some(&one(2)),
        "max paths 1: the best path alone (lower router ID)"
    );
}

#[test]
fn a_cut_router_leaves_the_other_next_hop_without_a_gap() {
    let mut net = two_routers(2);
    net.node(1).changes.clear();
    // The link to router 3 is cut: nothing arrives, the hold timer (9 s) ends the session
    // with a NOTIFICATION, so graceful restart keeps nothing.
    net.cut.push(ip(3));
    net.run_for(Duration::from_secs(15));
    assert_ne!(net.state(1, 3), Some(State::Established));
    assert_eq!(net.fib(1).get(&default_route()), Some(&one(2)));
    let changes: Vec<NextHops> = net.nodes[&ip(1)]
        .changes
        .iter()
        .filter(|c| c.prefix == default_route())
        .map(|c| c.next_hops.clone())
        .collect();
    assert_eq!(changes, [one(2)], "one replace, never a removal");
}

#[test]
fn a_restarting_router_stays_a_stale_next_hop_until_its_restart_time() {
    let mut net = two_routers(2);
    // kill -9: the connection ends without a NOTIFICATION: router 3's route is kept stale.
    net.kill(3);
    net.run_for(Duration::from_secs(60));
    assert_eq!(
        net.fib(1).get(&default_route()),
        Some(&NextHops::Many(vec![ip(2), ip(3)].into()))
    );
    // Its restart time (120 s) runs out: router 2 alone.
    net.run_for(Duration::from_secs(120));
    assert_eq!(net.fib(1).get(&default_route()), Some(&one(2)));
}

#[test]
fn max_paths_changed_at_run_time_reports_the_route_again() {
    let mut net = two_routers(1);
    net.node(1).speaker.set_max_paths(2);
    net.settle();
    assert_eq!(
        net.fib(1).get(&default_route()),
        Some(&NextHops::Many(vec![ip(2), ip(3)].into()))
    );
    net.node(1).speaker.set_max_paths(1);
    net.settle();
    assert_eq!(net.fib(1).get(&default_route()), Some(&one(2)));
}
