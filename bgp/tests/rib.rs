//! RIB: best-path selection (RFC 4271 §9.1.2.2) and the changes reported to the driver.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use ipnetwork::IpNetwork;
use podroute_bgp::message::{AsPath, NextHop, Origin, PathAttributes};
use podroute_bgp::rib::{BestChange, Candidate, PeerId, PeerInfo, Rib, select_best};

fn net(s: &str) -> IpNetwork {
    s.parse().expect("test prefix")
}

fn attrs(path: &[u32]) -> PathAttributes {
    PathAttributes {
        as_path: AsPath::sequence(path.to_vec()),
        next_hop: Some(NextHop::V4(Ipv4Addr::new(198, 18, 0, 9))),
        ..PathAttributes::default()
    }
}

fn cand(a: &PathAttributes, ibgp: bool, id: u8) -> Candidate<'_> {
    Candidate {
        attributes: a,
        ibgp,
        peer_router_id: Ipv4Addr::new(198, 18, 0, id),
        peer_address: IpAddr::V4(Ipv4Addr::new(198, 18, 0, id)),
    }
}

#[test]
fn higher_local_pref_beats_shorter_path() {
    let a = PathAttributes {
        local_pref: Some(200),
        ..attrs(&[1, 2, 3])
    };
    let b = attrs(&[1]);
    assert_eq!(
        select_best(&[cand(&b, true, 1), cand(&a, true, 2)]),
        Some(1)
    );
}

#[test]
fn shorter_as_path_wins_and_a_set_counts_as_one() {
    let long = attrs(&[1, 2, 3]);
    let mut with_set = attrs(&[1]);
    with_set
        .as_path
        .segments
        .push(podroute_bgp::message::AsPathSegment {
            kind: podroute_bgp::message::SegmentType::Set,
            asns: vec![7, 8, 9, 10],
        });
    assert_eq!(
        select_best(&[cand(&long, false, 1), cand(&with_set, false, 2)]),
        Some(1)
    );
}

#[test]
fn lower_origin_wins() {
    let igp = attrs(&[1]);
    let inc = PathAttributes {
        origin: Origin::Incomplete,
        ..attrs(&[2])
    };
    assert_eq!(
        select_best(&[cand(&inc, false, 1), cand(&igp, false, 2)]),
        Some(1)
    );
}

#[test]
fn med_compared_only_between_routes_from_the_same_neighbour_as() {
    let a_high = PathAttributes {
        med: Some(50),
        ..attrs(&[100])
    };
    let a_low = PathAttributes {
        med: Some(10),
        ..attrs(&[100])
    };
    // Same neighbouring AS: lower MED wins even from the higher router ID.
    assert_eq!(
        select_best(&[cand(&a_high, false, 1), cand(&a_low, false, 2)]),
        Some(1)
    );
    // Different neighbouring AS: MED ignored, router ID decides.
    let b_high = PathAttributes {
        med: Some(50),
        ..attrs(&[200])
    };
    assert_eq!(
        select_best(&[cand(&b_high, false, 1), cand(&a_low, false, 2)]),
        Some(0)
    );
    // Missing MED counts as 0, the best.
    let none = attrs(&[100]);
    assert_eq!(
        select_best(&[cand(&a_low, false, 1), cand(&none, false, 2)]),
        Some(1)
    );
}

#[test]
fn ebgp_beats_ibgp() {
    let a = attrs(&[1]);
    let b = attrs(&[2]);
    assert_eq!(
        select_best(&[cand(&a, true, 1), cand(&b, false, 2)]),
        Some(1)
    );
}

#[test]
fn lowest_router_id_then_originator_id_stands_in() {
    let a = attrs(&[1]);
    let b = attrs(&[2]);
    assert_eq!(
        select_best(&[cand(&a, true, 5), cand(&b, true, 3)]),
        Some(1)
    );
    // A reflected route carries its originator's ID, which decides instead.
    let reflected = PathAttributes {
        originator_id: Some(Ipv4Addr::new(198, 18, 0, 1)),
        ..attrs(&[2])
    };
    assert_eq!(
        select_best(&[cand(&reflected, true, 5), cand(&b, true, 3)]),
        Some(0)
    );
}

#[test]
fn shorter_cluster_list_then_lowest_peer_address() {
    let id = Ipv4Addr::new(198, 18, 0, 1);
    let short = PathAttributes {
        originator_id: Some(id),
        cluster_list: vec![id],
        ..attrs(&[1])
    };
    let long = PathAttributes {
        originator_id: Some(id),
        cluster_list: vec![id, id],
        ..attrs(&[1])
    };
    assert_eq!(
        select_best(&[cand(&long, true, 2), cand(&short, true, 3)]),
        Some(1)
    );
    // Everything equal: the lower peer address.
    assert_eq!(
        select_best(&[cand(&short, true, 9), cand(&short, true, 4)]),
        Some(1)
    );
}

fn rib_with_peers() -> (Rib, PeerId, PeerId) {
    let mut rib = Rib::new();
    let p1 = rib.add_peer(PeerInfo {
        address: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)),
        router_id: Ipv4Addr::new(198, 18, 0, 1),
        ibgp: true,
    });
    let p2 = rib.add_peer(PeerInfo {
        address: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2)),
        router_id: Ipv4Addr::new(198, 18, 0, 2),
        ibgp: true,
    });
    (rib, p1, p2)
}

#[test]
fn rib_reports_best_path_changes_only() {
    let (mut rib, p1, p2) = rib_with_peers();
    let prefix = net("10.244.1.0/24");
    let a1 = Arc::new(attrs(&[]));
    let a2 = Arc::new(PathAttributes {
        local_pref: Some(200),
        ..attrs(&[])
    });
    let mut ch = Vec::new();

    rib.announce(p1, &[prefix], &a1, &mut ch);
    assert_eq!(
        ch,
        vec![BestChange::Best {
            prefix,
            peer: p1,
            attributes: a1.clone()
        }]
    );

    // The same again: nothing changes.
    ch.clear();
    rib.announce(p1, &[prefix], &a1, &mut ch);
    assert!(ch.is_empty());

    // A better path from p2 takes over.
    rib.announce(p2, &[prefix], &a2, &mut ch);
    assert_eq!(
        ch,
        vec![BestChange::Best {
            prefix,
            peer: p2,
            attributes: a2.clone()
        }]
    );
    assert_eq!(rib.paths(&prefix).len(), 2);

    // Withdrawing the loser changes nothing visible.
    ch.clear();
    rib.withdraw(p1, &[prefix], &mut ch);
    assert!(ch.is_empty());
    rib.announce(p1, &[prefix], &a1, &mut ch);
    assert!(ch.is_empty());

    // Withdrawing the best falls back to the other path.
    rib.withdraw(p2, &[prefix], &mut ch);
    assert_eq!(
        ch,
        vec![BestChange::Best {
            prefix,
            peer: p1,
            attributes: a1.clone()
        }]
    );

    // The last path gone: unreachable.
    ch.clear();
    rib.withdraw(p1, &[prefix], &mut ch);
    assert_eq!(ch, vec![BestChange::Unreachable { prefix }]);
    assert!(rib.is_empty());
    assert_eq!(
        rib.attribute_sets(),
        0,
        "attribute sets are freed with their last route"
    );
}

#[test]
fn best_path_that_gets_worse_loses_to_the_other() {
    let (mut rib, p1, p2) = rib_with_peers();
    let prefix = net("10.244.1.0/24");
    let good = Arc::new(PathAttributes {
        local_pref: Some(300),
        ..attrs(&[])
    });
    let plain = Arc::new(attrs(&[]));
    let worse = Arc::new(PathAttributes {
        local_pref: Some(50),
        ..attrs(&[])
    });
    let mut ch = Vec::new();
    rib.announce(p1, &[prefix], &good, &mut ch);
    rib.announce(p2, &[prefix], &plain, &mut ch);
    ch.clear();
    rib.announce(p1, &[prefix], &worse, &mut ch);
    assert_eq!(
        ch,
        vec![BestChange::Best {
            prefix,
            peer: p2,
            attributes: plain
        }]
    );
}

#[test]
fn clearing_a_peer_withdraws_everything_it_sent_and_nothing_else() {
    let (mut rib, p1, p2) = rib_with_peers();
    let a = Arc::new(attrs(&[]));
    let mut ch = Vec::new();
    let mine = [
        net("10.244.1.0/24"),
        net("10.244.2.0/24"),
        net("fd00:10:244:1::/64"),
    ];
    rib.announce(p1, &mine, &a, &mut ch);
    rib.announce(p2, &[net("10.244.3.0/24")], &a, &mut ch);
    assert_eq!(rib.adj_rib_in(p1).len(), 3);
    assert_eq!(rib.attribute_sets(), 1, "one shared attribute set");
    ch.clear();
    rib.clear_peer(p1, &mut ch);
    assert_eq!(ch.len(), 3);
    assert!(
        ch.iter()
            .all(|c| matches!(c, BestChange::Unreachable { .. }))
    );
    assert_eq!(rib.len(), 1);
    assert_eq!(rib.best(&net("10.244.3.0/24")).map(|b| b.0), Some(p2));
}

#[test]
fn host_bits_do_not_make_a_different_prefix() {
    let (mut rib, p1, _) = rib_with_peers();
    let a = Arc::new(attrs(&[]));
    let mut ch = Vec::new();
    rib.announce(p1, &[net("10.244.1.7/24")], &a, &mut ch);
    assert!(rib.best(&net("10.244.1.0/24")).is_some());
    assert_eq!(
        rib.best_routes().next().map(|r| r.0),
        Some(net("10.244.1.0/24"))
    );
}
