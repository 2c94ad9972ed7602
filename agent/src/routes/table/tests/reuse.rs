//! Interned next hops, sets and kernel targets under churn: what no route uses any more is
//! freed, its id reused, and no id names a freed (or reused) entry while anything holds it.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use super::*;

/// Recounts every use from scratch (slots, next hops, sets, `pending` planned writes, the
/// blackhole) and checks it against the counts the table keeps; every id held anywhere must
/// name a live entry. A freed id still named somewhere would make a route resolve to
/// whatever reused it.
fn assert_uses_counted(table: &RouteTable, pending: &[PlannedWrite]) {
    let shared = &table.shared;
    let mut hop_users: HashMap<u32, u32> = HashMap::new();
    let mut set_users: HashMap<u32, u32> = HashMap::new();
    let mut target_uses: HashMap<u32, u32> = HashMap::from([(shared.blackhole.0, 1)]);
    let slots = table.v4.iter().map(|(_, s)| *s);
    for slot in slots.chain(table.v6.iter().map(|(_, s)| *s)) {
        match slot.wanted() {
            Wanted::Via(id) => *hop_users.entry(id.0).or_default() += 1,
            Wanted::Multipath(id) => *set_users.entry(id.0).or_default() += 1,
            Wanted::Nothing | Wanted::Blackhole => {}
        }
        if let Some(target) = slot.ours() {
            *target_uses.entry(target.0).or_default() += 1;
        }
    }
    for write in pending {
        if let PlannedOp::Create(t) | PlannedOp::Replace(t) = write.op {
            *target_uses.entry(t.0).or_default() += 1;
        }
    }
    let mut hop_sets: HashMap<u32, u32> = HashMap::new();
    for (id, hops, set) in shared.sets.iter() {
        assert_eq!(
            set.users,
            set_users.remove(&id).unwrap_or(0),
            "users of set {id}"
        );
        assert!(set.users > 0, "set {id} is held without users");
        assert_eq!(shared.sets.id(hops), Some(id));
        for hop in hops.iter() {
            *hop_sets.entry(hop.0).or_default() += 1;
        }
        if let Resolved::Reachable(t) = set.resolved {
            *target_uses.entry(t.0).or_default() += 1;
        }
    }
    assert!(set_users.is_empty(), "slots want freed sets: {set_users:?}");
    for (id, address, next_hop) in shared.next_hops.iter() {
        assert_eq!(
            next_hop.users,
            hop_users.remove(&id).unwrap_or(0),
            "{address}"
        );
        assert_eq!(
            next_hop.sets,
            hop_sets.remove(&id).unwrap_or(0),
            "{address}"
        );
        assert!(
            next_hop.users + next_hop.sets > 0,
            "{address} is held unused"
        );
        assert_eq!(shared.next_hops.id(address), Some(id));
        if let Resolved::Reachable(t) = next_hop.resolved {
            *target_uses.entry(t.0).or_default() += 1;
        }
    }
    assert!(
        hop_users.is_empty(),
        "slots want freed next hops: {hop_users:?}"
    );
    assert!(
        hop_sets.is_empty(),
        "sets hold freed next hops: {hop_sets:?}"
    );
    for (id, target, uses) in shared.targets.iter() {
        assert_eq!(*uses, target_uses.remove(&id).unwrap_or(0), "{target:?}");
        assert_eq!(shared.targets.id(target), Some(id));
    }
    assert!(
        target_uses.is_empty(),
        "freed targets named: {target_uses:?}"
    );
}

/// Asserts how many next hops, sets and targets are interned (`held`), and that no more than
/// `max_ids` ids of each were ever handed out (freed ids are reused).
fn assert_interned(table: &RouteTable, held: [usize; 3], max_ids: [usize; 3]) {
    let shared = &table.shared;
    let now = [
        shared.next_hops.len(),
        shared.sets.len(),
        shared.targets.len(),
    ];
    let ids = [
        shared.next_hops.id_space(),
        shared.sets.id_space(),
        shared.targets.id_space(),
    ];
    assert_eq!(now, held, "next hops, sets, targets held");
    assert!(
        ids.iter().zip(max_ids).all(|(ids, max)| *ids <= max),
        "ids of next hops, sets, targets: {ids:?}, at most {max_ids:?}"
    );
}

/// 198.18.0.0 + `n`: a node IP never used before for every `n`.
fn node_ip(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0xc612_0000 + n))
}

/// The target podroute's route for `destination` is recorded with.
fn ours(table: &RouteTable, destination: &str) -> Option<KernelTarget> {
    let slot = table.slot(&net(destination))?;
    slot.ours().map(|t| table.shared.targets.key(t.0).clone())
}

#[test]
fn next_hops_of_replaced_nodes_are_freed_and_their_ids_reused() {
    let mut table = table();
    // Ten nodes at a time, every one replaced by a node with a new IP, a hundred times.
    for generation in 0..100u32 {
        let mut expected = Vec::new();
        for node in 0..10u32 {
            let destination = net(&format!("10.244.{node}.0/24"));
            let next_hop = node_ip(2 + generation * 10 + node);
            table.stage(destination, Some(RouteIntent::Via(next_hop)));
            let target = KernelTarget::Gateway {
                gateway: next_hop,
                oif: 2,
            };
            expected.push((
                destination,
                if generation == 0 {
                    WriteKind::Create(target)
                } else {
                    WriteKind::Replace(target)
                },
            ));
        }
        assert_eq!(flush(&mut table, true), expected, "generation {generation}");
        assert_uses_counted(&table, &[]);
    }
    // Ten next hops in use, one id more (a new next hop is taken before the old one goes)
    // after 1,000 seen; the targets, the blackhole's and per node the old and the new one
    // until the replace is done.
    assert_interned(&table, [10, 0, 11], [11, 0, 21]);
    assert_eq!(
        ours(&table, "10.244.3.0/24"),
        Some(KernelTarget::Gateway {
            gateway: node_ip(2 + 99 * 10 + 3),
            oif: 2
        })
    );
    // Withdrawn: nothing is left but the blackhole.
    for node in 0..10u32 {
        table.stage(net(&format!("10.244.{node}.0/24")), None);
    }
    assert_eq!(flush(&mut table, true).len(), 10);
    assert_uses_counted(&table, &[]);
    assert_eq!(table.shared.next_hops.len(), 0);
    assert_eq!(table.shared.targets.len(), 1);
    assert!(table.next_hops_to_resolve(true).is_empty());
}

#[test]
fn ecmp_sets_of_routers_that_come_and_go_are_freed_and_routes_keep_their_targets() {
    let mut table = table();
    let over = |hops: &[IpAddr]| {
        KernelTarget::over(
            hops.iter()
                .map(|h| Gateway {
                    gateway: *h,
                    oif: 2,
                })
                .collect(),
        )
    };
    // Two routers at a time, one of them replaced by a new one each round: the default route
    // and a rack prefix over both, a third prefix via the newer one alone.
    for round in 1..200u32 {
        let routers = [node_ip(250 + round - 1), node_ip(250 + round)];
        let both = RouteIntent::via_all(&routers);
        table.stage(net("0.0.0.0/0"), both.clone());
        table.stage(net("198.18.1.0/24"), both);
        table.stage(net("198.18.2.0/24"), Some(RouteIntent::Via(routers[1])));
        let kind = |target| {
            if round == 1 {
                WriteKind::Create(target)
            } else {
                WriteKind::Replace(target)
            }
        };
        assert_eq!(
            flush(&mut table, true),
            vec![
                (net("0.0.0.0/0"), kind(over(&routers[..]))),
                (net("198.18.1.0/24"), kind(over(&routers[..]))),
                (net("198.18.2.0/24"), kind(over(&routers[1..]))),
            ],
            "round {round}"
        );
        assert_uses_counted(&table, &[]);
        // The older router gone for a while: the set is freed (the newer router stays a next
        // hop), then made again.
        if round % 3 == 0 {
            let steps = [(&routers[1..], 0), (&routers[..], 1)];
            for (hops, sets) in steps {
                let write = WriteKind::Replace(over(hops));
                for destination in ["0.0.0.0/0", "198.18.1.0/24"] {
                    table.stage(net(destination), RouteIntent::via_all(hops));
                }
                assert_eq!(
                    flush(&mut table, true),
                    vec![
                        (net("0.0.0.0/0"), write.clone()),
                        (net("198.18.1.0/24"), write),
                    ]
                );
                assert_uses_counted(&table, &[]);
                assert_eq!(table.shared.sets.len(), sets);
            }
        }
    }
    // Two routers, their set and its targets (the blackhole, one per router, the multipath
    // route) held after 200 routers and 265 sets seen; at most one set, one router and one
    // target more while routes move from the old set to the new one.
    assert_interned(&table, [2, 1, 4], [3, 2, 5]);
    assert_eq!(
        ours(&table, "0.0.0.0/0"),
        Some(over(&[node_ip(250 + 198), node_ip(250 + 199)]))
    );
}

#[test]
fn a_planned_write_keeps_its_target_until_the_kernel_answers() {
    let mut table = table();
    let destination = net("10.244.2.0/24");
    table.stage(destination, via("198.18.0.2"));
    resolve_all(&mut table);
    let writes = table.plan(true, 16);
    assert_eq!(writes.len(), 1);
    // Before the answer, the route moves to another next hop: the old one is freed, and the
    // new one's target is interned. The write in flight must still name the old target.
    table.stage(destination, via("198.18.0.3"));
    resolve_all(&mut table);
    assert_uses_counted(&table, &writes);
    assert_eq!(
        table.write_kind(&writes[0]),
        WriteKind::Create(gw("198.18.0.2"))
    );
    table.complete(&writes[0], Outcome::Done);
    table.end_flush();
    assert_uses_counted(&table, &[]);
    assert_eq!(ours(&table, "10.244.2.0/24"), Some(gw("198.18.0.2")));
    assert_eq!(
        flush(&mut table, true),
        vec![(destination, WriteKind::Replace(gw("198.18.0.3")))]
    );
    assert_uses_counted(&table, &[]);
    assert_eq!(
        table.shared.targets.len(),
        2,
        "the blackhole and 198.18.0.3"
    );
}

#[test]
fn a_route_left_in_place_keeps_the_target_of_its_freed_next_hop() {
    let mut table = table();
    table.stage(net("10.244.2.0/24"), via("198.18.0.2"));
    flush(&mut table, true);
    // Its next hop stops resolving and the route moves to a next hop not resolved yet: the
    // old next hop is freed, the route stays as the kernel holds it.
    table.set_resolution(ip("198.18.0.2"), Resolution::Unresolvable);
    table.stage(net("10.244.2.0/24"), via("198.18.1.2"));
    assert!(table.shared.next_hops.id(&ip("198.18.0.2")).is_none());
    // Other next hops come and take the freed ids.
    for n in 3..20 {
        table.stage(
            net(&format!("10.244.{n}.0/24")),
            via(&format!("198.18.0.{n}")),
        );
    }
    resolve_all(&mut table);
    table.set_resolution(ip("198.18.1.2"), Resolution::Unresolvable);
    assert_uses_counted(&table, &[]);
    assert_eq!(ours(&table, "10.244.2.0/24"), Some(gw("198.18.0.2")));
    let writes = flush_with_resolved(&mut table);
    assert_eq!(writes.len(), 17);
    assert!(
        writes.iter().all(|(d, _)| *d != net("10.244.2.0/24")),
        "left alone"
    );
    assert_uses_counted(&table, &[]);
    // Its new next hop resolves: replaced.
    table.set_resolution(
        ip("198.18.1.2"),
        Resolution::Reachable(Gateway {
            gateway: ip("198.18.1.2"),
            oif: 2,
        }),
    );
    assert_eq!(
        flush_with_resolved(&mut table),
        vec![(net("10.244.2.0/24"), WriteKind::Replace(gw("198.18.1.2")))]
    );
    assert_uses_counted(&table, &[]);
}

#[test]
fn targets_of_kernel_routes_podroute_removes_are_freed() {
    let mut table = table();
    // A previous run's routes, each through its own gateway, removed once stale.
    let stale: Vec<KernelRoute> = (0..100u32)
        .map(|n| {
            let destination = format!("10.245.{n}.0/24");
            route(
                &destination,
                PROTO,
                KernelTarget::Gateway {
                    gateway: node_ip(1000 + n),
                    oif: 2,
                },
            )
        })
        .collect();
    full_pass(&mut table, &stale);
    assert_eq!(table.shared.targets.len(), 101);
    assert_eq!(flush(&mut table, true).len(), 100);
    assert_uses_counted(&table, &[]);
    assert_eq!(table.shared.targets.len(), 1);
    // Routes of podroute's protocol someone else adds and deletes, as notifications.
    for n in 0..100u32 {
        let added = route(
            "10.246.0.0/24",
            PROTO,
            KernelTarget::Gateway {
                gateway: node_ip(2000 + n),
                oif: 2,
            },
        );
        table.observe_event(&added, false, false);
        table.observe_event(&added, true, false);
        flush(&mut table, true);
    }
    assert_uses_counted(&table, &[]);
    assert_eq!(table.shared.targets.len(), 1);
    assert!(table.shared.targets.id_space() <= 102);
    assert!(
        !table.uses_interface(2),
        "no route goes out through link 2 any more"
    );
}

#[test]
fn a_next_hop_a_route_keeps_across_a_change_is_not_freed_on_the_way() {
    let mut table = table();
    let ecmp = net("198.18.1.0/24");
    table.stage(ecmp, via("198.18.0.251"));
    flush(&mut table, true);
    // Each change keeps one next hop, used by nothing else: only a new one is asked about,
    // the kept one keeps its resolution.
    let steps = [
        (
            multipath(&["198.18.0.251", "198.18.0.252"]),
            vec![ip("198.18.0.252")],
            over(&["198.18.0.251", "198.18.0.252"]),
        ),
        (
            multipath(&["198.18.0.251", "198.18.0.253"]),
            vec![ip("198.18.0.253")],
            over(&["198.18.0.251", "198.18.0.253"]),
        ),
        (via("198.18.0.253"), vec![], gw("198.18.0.253")),
        (
            multipath(&["198.18.0.253", "198.18.0.254"]),
            vec![ip("198.18.0.254")],
            over(&["198.18.0.253", "198.18.0.254"]),
        ),
    ];
    for (intent, asked, target) in steps {
        table.stage(ecmp, intent);
        assert_uses_counted(&table, &[]);
        assert_eq!(table.next_hops_to_resolve(false), asked);
        assert_eq!(
            flush(&mut table, true),
            vec![(ecmp, WriteKind::Replace(target))]
        );
        assert_uses_counted(&table, &[]);
    }
    assert_eq!(table.shared.next_hops.len(), 2);
}
