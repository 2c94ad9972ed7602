//! Route reflection (RFC 4456) on simulated time: two reflectors, their clients and the
//! attributes and loop checks that keep reflected routes honest.

mod support;

use std::net::Ipv4Addr;
use std::time::Duration;

use support::*;

const CLUSTER: Ipv4Addr = Ipv4Addr::new(244, 0, 0, 1);

fn id(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, n)
}

/// Reflectors `rrs` (sharing `cluster`, or each its router ID with `None`) and clients
/// `clients`: every client peers with every reflector, the reflectors with each other (as
/// non-clients), clients not with each other. Every node originates 10.244.N.0/24.
fn reflected_net(rrs: &[u8], clients: &[u8], cluster: Option<Ipv4Addr>) -> Net {
    let mut net = Net::new();
    for &r in rrs {
        net.add_node(
            r,
            SpeakerConfig {
                cluster_id: cluster,
                ..SpeakerConfig::default()
            },
        );
    }
    for &c in clients {
        net.add_node(c, SpeakerConfig::default());
    }
    let now = net.now;
    for &r in rrs {
        for &other in rrs.iter().filter(|o| **o != r) {
            net.node(r).speaker.add_peer(now, peer_config(r, other));
        }
        for &c in clients {
            let mut config = peer_config(r, c);
            config.route_reflector_client = true;
            net.node(r).speaker.add_peer(now, config);
            net.node(c).speaker.add_peer(now, peer_config(c, r));
        }
    }
    for &n in rrs.iter().chain(clients) {
        originate(&mut net, n, &[&format!("10.244.{n}.0/24")], None);
    }
    net.run_for(Duration::from_secs(3));
    net
}

/// Every node's forwarding table: every other node's CIDR via that node's IP.
fn assert_everyone_routes_everyone(net: &Net, nodes: &[u8]) {
    for &n in nodes {
        for &other in nodes.iter().filter(|o| **o != n) {
            let cidr = net_(&format!("10.244.{other}.0/24"));
            assert_eq!(
                net.fib(n).get(&cidr),
                Some(&one(other)),
                "node {n}'s route to node {other}'s CIDR"
            );
        }
        assert_eq!(
            net.fib(n).len(),
            nodes.len() - 1,
            "node {n}: {:?}",
            net.fib(n)
        );
    }
}

#[test]
fn clients_of_two_reflectors_learn_every_route_via_its_originator() {
    let net = reflected_net(&[1, 2], &[3, 4, 5], Some(CLUSTER));
    assert_eq!(net.state(3, 4), None, "clients do not peer with each other");
    assert_everyone_routes_everyone(&net, &[1, 2, 3, 4, 5]);

    // Node 4 has node 3's route from both reflectors, each reflected once: ORIGINATOR_ID
    // node 3, CLUSTER_LIST the one cluster, NEXT_HOP node 3 untouched.
    let paths = net.nodes[&ip(4)]
        .speaker
        .rib()
        .paths(&net_("10.244.3.0/24"));
    assert_eq!(paths.len(), 2, "{paths:?}");
    for (_, attrs) in &paths {
        assert_eq!(attrs.originator_id, Some(id(3)));
        assert_eq!(attrs.cluster_list, vec![CLUSTER]);
        assert_eq!(attrs.next_hop, Some(NextHop::V4(id(3))));
    }

    // Reflector 2 got node 3's route from reflector 1 too, with its own cluster in the
    // CLUSTER_LIST: dropped as a loop, so it holds only node 3's own path.
    let at_rr2 = net.nodes[&ip(2)]
        .speaker
        .rib()
        .paths(&net_("10.244.3.0/24"));
    assert_eq!(at_rr2.len(), 1, "{at_rr2:?}");
    assert_eq!(at_rr2[0].1.originator_id, None, "straight from node 3");

    // A client is never sent its own route back.
    let at_3 = net.nodes[&ip(3)]
        .speaker
        .rib()
        .paths(&net_("10.244.3.0/24"));
    assert!(at_3.is_empty(), "{at_3:?}");
}

#[test]
fn reflectors_with_their_own_cluster_ids_pass_routes_between_them_once() {
    let net = reflected_net(&[1, 2], &[3, 4], None);
    assert_everyone_routes_everyone(&net, &[1, 2, 3, 4]);
    // Reflector 2 holds node 3's route directly and as reflected by reflector 1 (cluster
    // 198.18.0.1); reflector 1 does not reflect it back to 2 again after that.
    let at_rr2 = net.nodes[&ip(2)]
        .speaker
        .rib()
        .paths(&net_("10.244.3.0/24"));
    let lists: Vec<Vec<Ipv4Addr>> = at_rr2.iter().map(|(_, a)| a.cluster_list.clone()).collect();
    assert_eq!(at_rr2.len(), 2, "{lists:?}");
    assert!(lists.contains(&vec![id(1)]), "{lists:?}");
    // The best path is the shortest CLUSTER_LIST (RFC 4456 §9): node 3's own.
    let (_, best) = net.nodes[&ip(2)]
        .speaker
        .rib()
        .best(&net_("10.244.3.0/24"))
        .expect("best");
    assert!(best.cluster_list.is_empty());
}

#[test]
fn a_stopped_reflector_leaves_every_route_in_place_through_the_other() {
    let mut net = reflected_net(&[1, 2], &[3, 4, 5], Some(CLUSTER));
    net.kill(1);
    // Past every stale timer: what is left comes through reflector 2 alone.
    net.run_for(Duration::from_secs(400));
    assert_eq!(
        net.state(3, 1).map(|s| s == State::Established),
        Some(false)
    );
    for n in [3u8, 4, 5] {
        for other in [2u8, 3, 4, 5].iter().filter(|o| **o != n) {
            let cidr = net_(&format!("10.244.{other}.0/24"));
            assert_eq!(
                net.fib(n).get(&cidr),
                Some(&one(*other)),
                "node {n} → {other}"
            );
        }
        assert_eq!(
            net.fib(n).get(&net_("10.244.1.0/24")),
            None,
            "the stopped reflector's own CIDR goes"
        );
    }
}

#[test]
fn routes_from_a_non_client_go_to_clients_only() {
    // Node 6 is a plain iBGP peer of reflector 1 (not a client): its route reaches the
    // clients, and a non-client's route is not passed to another non-client (node 2).
    let mut net = reflected_net(&[1, 2], &[3], Some(CLUSTER));
    net.add_node(6, SpeakerConfig::default());
    let now = net.now;
    net.node(1).speaker.add_peer(now, peer_config(1, 6));
    net.node(6).speaker.add_peer(now, peer_config(6, 1));
    originate(&mut net, 6, &["10.244.6.0/24"], None);
    net.run_for(Duration::from_secs(3));
    assert_eq!(net.fib(3).get(&net_("10.244.6.0/24")), Some(&one(6)));
    assert_eq!(
        net.fib(2).get(&net_("10.244.6.0/24")),
        None,
        "non-client to non-client"
    );
    // Node 6 gets the clients' routes, not reflector 2's own (a non-client's).
    assert_eq!(net.fib(6).get(&net_("10.244.3.0/24")), Some(&one(3)));
    assert_eq!(net.fib(6).get(&net_("10.244.2.0/24")), None);
}

#[test]
fn a_router_peered_with_a_reflector_gets_no_clients_routes() {
    // Node 6 stands for an iBGP router (a BGPPeer): the reflector sends it its own routes
    // only, never a client's, which a plain iBGP non-client would get (test above).
    let mut net = reflected_net(&[1, 2], &[3], Some(CLUSTER));
    net.add_node(6, SpeakerConfig::default());
    let now = net.now;
    let mut to_router = peer_config(1, 6);
    to_router.takes_reflected = false;
    net.node(1).speaker.add_peer(now, to_router);
    net.node(6).speaker.add_peer(now, peer_config(6, 1));
    net.run_for(Duration::from_secs(3));
    assert_eq!(net.fib(6).get(&net_("10.244.1.0/24")), Some(&one(1)));
    assert_eq!(
        net.fib(6).get(&net_("10.244.3.0/24")),
        None,
        "a client's route"
    );
    assert_eq!(net.fib(6).len(), 1, "{:?}", net.fib(6));
}

#[test]
fn a_reflector_without_clients_reflects_nothing() {
    let mut net = reflected_net(&[1], &[3, 4], None);
    assert_eq!(net.fib(4).get(&net_("10.244.3.0/24")), Some(&one(3)));
    let now = net.now;
    net.node(1).speaker.update_peer(now, peer_config(1, 3));
    net.run_for(Duration::from_secs(1));
    // Node 3 is a non-client now: client 4's route still reaches it and its route client 4.
    assert_eq!(net.fib(3).get(&net_("10.244.4.0/24")), Some(&one(4)));
    assert_eq!(net.fib(4).get(&net_("10.244.3.0/24")), Some(&one(3)));
    net.node(1).speaker.update_peer(now, peer_config(1, 4));
    net.run_for(Duration::from_secs(1));
    // No client left: plain iBGP, nothing passed on; the sessions stayed up.
    assert_eq!(net.fib(4).get(&net_("10.244.3.0/24")), None);
    assert_eq!(net.fib(3).get(&net_("10.244.4.0/24")), None);
    assert_eq!(net.fib(3).get(&net_("10.244.1.0/24")), Some(&one(1)));
    let established: Vec<u64> = net.nodes[&ip(1)]
        .speaker
        .peers()
        .map(|p| p.established_count)
        .collect();
    assert_eq!(
        established,
        [1, 1],
        "reflection changes re-advertise, never reset"
    );
}

#[test]
fn a_removed_client_takes_its_reflected_routes_along() {
    let mut net = reflected_net(&[1], &[3, 4, 5], None);
    assert_eq!(net.fib(4).get(&net_("10.244.3.0/24")), Some(&one(3)));
    let now = net.now;
    net.node(1).speaker.remove_peer(now, ip(3));
    net.settle();
    for n in [4u8, 5] {
        assert_eq!(net.fib(n).get(&net_("10.244.3.0/24")), None, "node {n}");
    }
    assert_eq!(net.fib(4).get(&net_("10.244.5.0/24")), Some(&one(5)));
    // Adding it back as a client: it gets every route again, the others its route.
    net.node(1).speaker.add_peer(now, {
        let mut c = peer_config(1, 3);
        c.route_reflector_client = true;
        c
    });
    net.run_for(Duration::from_secs(40));
    assert_everyone_routes_everyone(&net, &[1, 3, 4, 5]);
}

#[test]
fn a_peer_made_a_client_with_a_new_session_config_is_reflected_to() {
    // Node 1 with two plain iBGP peers: nothing is reflected.
    let mut net = reflected_net(&[1], &[], None);
    let now = net.now;
    for n in [3u8, 4] {
        net.add_node(n, SpeakerConfig::default());
        net.node(1).speaker.add_peer(now, peer_config(1, n));
        net.node(n).speaker.add_peer(now, peer_config(n, 1));
        originate(&mut net, n, &[&format!("10.244.{n}.0/24")], None);
    }
    net.run_for(Duration::from_secs(3));
    assert_eq!(net.fib(4).get(&net_("10.244.3.0/24")), None);
    // Node 4 becomes a client with a new hold time at once: its session restarts, and
    // reflection follows (3 → client 4, client 4 → 3).
    let mut config = peer_config(1, 4);
    config.route_reflector_client = true;
    config.session.hold_time = 30;
    net.node(1).speaker.update_peer(now, config);
    net.run_for(Duration::from_secs(40));
    assert_everyone_routes_everyone(&net, &[1, 3, 4]);
}
