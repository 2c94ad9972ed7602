//! The RIB: Loc-RIB with best-path selection, holding every peer's Adj-RIB-In.
//!
//! One table per family maps a prefix to its paths; a path is 8 bytes (interned
//! attribute id + peer id), the best path is kept first, inline, so an IPv4 slot of the
//! table is 17 bytes (key 5, entry 12, both packed) and an IPv6 one 29. A peer's Adj-RIB-In
//! (RFC 4271 §3.2) is the set of paths with its id; [`Rib::adj_rib_in`] reads it out.
//! Attributes are interned (one copy per distinct set, shared by `Arc`).
//!
//! Every change reports the prefixes whose best path changed ([`BestChange`]) so the
//! driver programs the kernel from the differences only.

mod attr_store;
mod decision;
mod hash;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};

pub use decision::{Candidate, DEFAULT_LOCAL_PREF, select_best};

use crate::message::{PathAttributes, canonical};
use crate::session::ReceivedRoutes;
use crate::sharded_map::ShardedMap;
use attr_store::{AttrId, AttrStore};
use hash::BuildPrefixHasher;

/// A peer registered in the RIB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(u32);

impl PeerId {
    /// The raw index (stable while the peer is registered).
    pub fn index(self) -> u32 {
        self.0
    }
}

/// What the decision process needs to know about a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's address (last tie-break).
    pub address: IpAddr,
    /// The peer's BGP identifier.
    pub router_id: Ipv4Addr,
    /// The peer is in our AS.
    pub ibgp: bool,
}

/// A change of best path for one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BestChange {
    /// The prefix has a new best path (or its first one).
    Best {
        /// The prefix.
        prefix: IpNetwork,
        /// The peer the best path came from.
        peer: PeerId,
        /// Its attributes (next hop included).
        attributes: Arc<PathAttributes>,
    },
    /// The prefix has no path left.
    Unreachable {
        /// The prefix.
        prefix: IpNetwork,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Path {
    attr: AttrId,
    peer: u32,
}

/// The paths of one prefix: the best inline, the rest in [`OtherPaths`] (rare in a mesh
/// where each pod CIDR has one origin), so an entry is 12 bytes. Packed (byte-aligned) like
/// the keys, so a table slot is the sum of its parts (see [`V4Key`]).
#[derive(Debug, Clone, Copy)]
#[repr(C, packed)]
struct Entry {
    best: Path,
    /// The prefix's other paths in [`OtherPaths`], or [`OtherPaths::NONE`].
    others: u32,
}

impl Entry {
    fn new(best: Path) -> Self {
        Self {
            best,
            others: OtherPaths::NONE,
        }
    }

    fn paths<'a>(&self, others: &'a OtherPaths) -> impl Iterator<Item = Path> + 'a {
        std::iter::once(self.best).chain(others.get(self.others).iter().copied())
    }
}

/// The non-best paths of every prefix that has more than one, as lists addressed by a
/// 4-byte index (a pointer in the entry would make the table's 17-byte IPv4 slot 21).
#[derive(Debug, Default)]
struct OtherPaths {
    lists: Vec<Vec<Path>>,
    free: Vec<u32>,
}

impl OtherPaths {
    /// The index of no list.
    const NONE: u32 = 0;

    /// The list `id` (empty for [`OtherPaths::NONE`]).
    fn get(&self, id: u32) -> &[Path] {
        id.checked_sub(1)
            .and_then(|i| self.lists.get(i as usize))
            .map_or(&[], Vec::as_slice)
    }

    fn get_mut(&mut self, id: u32) -> Option<&mut Vec<Path>> {
        self.lists.get_mut(id.checked_sub(1)? as usize)
    }

    /// A new list holding `first`; its index.
    fn create(&mut self, first: Path) -> u32 {
        match self.free.pop() {
            Some(i) => {
                self.lists[i as usize].push(first);
                i + 1
            }
            None => {
                self.lists.push(vec![first]);
                // More lists than u32 indices would need more prefixes than memory.
                u32::try_from(self.lists.len()).unwrap_or(u32::MAX)
            }
        }
    }

    /// Empties list `id` and keeps it for reuse (its allocation goes if it was large).
    fn release(&mut self, id: u32) {
        if let Some(list) = self.get_mut(id) {
            list.clear();
            if list.capacity() > 4 {
                list.shrink_to(4);
            }
            self.free.push(id - 1);
        }
    }
}

/// An IPv4 table key: 5 bytes. Keys and entries are packed (alignment 1), so an IPv4 slot
/// is 5 + 12 = 17 bytes instead of the 20 that 4-byte alignment pads it to: at a million
/// prefixes in a table at half load, 6 MB less. Unaligned loads cost nothing measurable on
/// x86-64 and aarch64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C, packed)]
struct V4Key {
    address: u32,
    length: u8,
}

impl std::hash::Hash for V4Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64((u64::from(self.address) << 8) | u64::from(self.length));
    }
}

/// An IPv6 table key: 17 bytes, packed like [`V4Key`] (a `u128` would align the slot to 16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C, packed)]
struct V6Key {
    address: [u32; 4],
    length: u8,
}

impl std::hash::Hash for V6Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let [a, b, c, d] = self.address;
        state.write_u64((u64::from(a) << 32) | u64::from(b));
        state.write_u64((u64::from(c) << 32) | u64::from(d));
        state.write_u8(self.length);
    }
}

type V4Table = ShardedMap<V4Key, Entry, BuildPrefixHasher>;
type V6Table = ShardedMap<V6Key, Entry, BuildPrefixHasher>;

/// Loc-RIB plus the Adj-RIB-In of every peer.
#[derive(Debug, Default)]
pub struct Rib {
    peers: Vec<Option<PeerInfo>>,
    free_peers: Vec<u32>,
    /// How many paths each peer has in the table (its Adj-RIB-In size), by peer index:
    /// IPv4, IPv6.
    routes_per_peer: Vec<[usize; 2]>,
    attrs: AttrStore,
    others: OtherPaths,
    v4: V4Table,
    v6: V6Table,
    /// With [`Rib::track_touched`]: every prefix whose paths an announce or withdraw may
    /// have changed (not only its best path), for multipath.
    touched: Option<Vec<IpNetwork>>,
}

/// The index of a prefix's family in [`Rib`]'s per-peer counts.
fn family_index(prefix: &IpNetwork) -> usize {
    usize::from(prefix.is_ipv6())
}

fn v4_key(n: &Ipv4Network) -> V4Key {
    V4Key {
        address: u32::from(n.ip()),
        length: n.prefix(),
    }
}

fn v4_prefix(k: V4Key) -> IpNetwork {
    let addr = Ipv4Addr::from(k.address);
    Ipv4Network::new(addr, k.length)
        .map_or_else(|_| IpNetwork::V4(Ipv4Network::from(addr)), IpNetwork::V4)
}

fn v6_key(n: &Ipv6Network) -> V6Key {
    let a = u128::from(n.ip());
    V6Key {
        address: [
            (a >> 96) as u32,
            (a >> 64) as u32,
            (a >> 32) as u32,
            a as u32,
        ],
        length: n.prefix(),
    }
}

fn v6_prefix(k: V6Key) -> IpNetwork {
    let [a, b, c, d] = k.address.map(u128::from);
    let addr = Ipv6Addr::from((a << 96) | (b << 64) | (c << 32) | d);
    Ipv6Network::new(addr, k.length)
        .map_or_else(|_| IpNetwork::V6(Ipv6Network::from(addr)), IpNetwork::V6)
}

impl Rib {
    /// An empty RIB.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a peer.
    pub fn add_peer(&mut self, info: PeerInfo) -> PeerId {
        match self.free_peers.pop() {
            Some(i) => {
                self.peers[i as usize] = Some(info);
                self.routes_per_peer[i as usize] = [0; 2];
                PeerId(i)
            }
            None => {
                self.peers.push(Some(info));
                self.routes_per_peer.push([0; 2]);
                PeerId((self.peers.len() - 1) as u32)
            }
        }
    }

    /// Updates a peer's info (e.g. its router ID after OPEN). Best paths are recomputed
    /// lazily: only on the next change of each prefix.
    pub fn set_peer_info(&mut self, peer: PeerId, info: PeerInfo) {
        if let Some(slot) = self.peers.get_mut(peer.0 as usize) {
            *slot = Some(info);
        }
    }

    /// What the decision process knows about a registered peer.
    pub fn peer_info(&self, peer: PeerId) -> Option<PeerInfo> {
        self.peers.get(peer.0 as usize).copied().flatten()
    }

    /// Withdraws all of a peer's routes and unregisters it.
    pub fn remove_peer(&mut self, peer: PeerId, changes: &mut Vec<BestChange>) {
        self.clear_peer(peer, changes);
        if let Some(slot) = self.peers.get_mut(peer.0 as usize)
            && slot.take().is_some()
        {
            self.free_peers.push(peer.0);
        }
    }

    /// Withdraws all of a peer's routes (its session went down), keeping it registered.
    pub fn clear_peer(&mut self, peer: PeerId, changes: &mut Vec<BestChange>) {
        if self.peer_len(peer) == 0 {
            return;
        }
        let prefixes = self.peer_prefixes(peer);
        self.withdraw(peer, &prefixes, changes);
    }

    /// Applies routes a session reported.
    pub fn apply(&mut self, peer: PeerId, routes: &ReceivedRoutes, changes: &mut Vec<BestChange>) {
        self.withdraw(peer, &routes.withdrawn, changes);
        if let Some(a) = &routes.attributes {
            self.announce(peer, &routes.announced, a, changes);
        }
    }

    /// From now on, records the prefixes each announce and withdraw touches (any of their
    /// paths, not just the best), for [`Rib::take_touched`].
    pub fn track_touched(&mut self) {
        self.touched.get_or_insert_with(Vec::new);
    }

    /// The prefixes touched since the last call (see [`Rib::track_touched`]); a prefix
    /// may appear more than once.
    pub fn take_touched(&mut self) -> Vec<IpNetwork> {
        self.touched
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Adds or replaces `peer`'s path to each prefix, all with `attributes`.
    pub fn announce(
        &mut self,
        peer: PeerId,
        prefixes: &[IpNetwork],
        attributes: &Arc<PathAttributes>,
        changes: &mut Vec<BestChange>,
    ) {
        if self.peers.get(peer.0 as usize).is_none_or(Option::is_none) {
            return;
        }
        let attr = self.attrs.intern(attributes);
        let path = Path { attr, peer: peer.0 };
        for prefix in prefixes {
            let prefix = canonical(*prefix);
            let (change, inserted) = match prefix {
                IpNetwork::V4(n) => {
                    let entry = self.v4.entry(v4_key(&n));
                    upsert(entry, path, &mut self.attrs, &mut self.others, &self.peers)
                }
                IpNetwork::V6(n) => {
                    let entry = self.v6.entry(v6_key(&n));
                    upsert(entry, path, &mut self.attrs, &mut self.others, &self.peers)
                }
            };
            if inserted {
                self.routes_per_peer[peer.0 as usize][family_index(&prefix)] += 1;
            }
            if let Some(touched) = self.touched.as_mut() {
                touched.push(prefix);
            }
            if let Some(best) = change {
                changes.push(BestChange::Best {
                    prefix,
                    peer: PeerId(best.peer),
                    attributes: self.attrs.get(best.attr).clone(),
                });
            }
        }
        self.attrs.release_if_unused(attr);
    }

    /// Removes `peer`'s path to each prefix.
    pub fn withdraw(
        &mut self,
        peer: PeerId,
        prefixes: &[IpNetwork],
        changes: &mut Vec<BestChange>,
    ) {
        for prefix in prefixes {
            let prefix = canonical(*prefix);
            let outcome = match prefix {
                IpNetwork::V4(n) => {
                    let key = v4_key(&n);
                    let Some(entry) = self.v4.get_mut(&key) else {
                        continue;
                    };
                    let o = remove_path(
                        entry,
                        peer.0,
                        &mut self.attrs,
                        &mut self.others,
                        &self.peers,
                    );
                    if o == Removal::Empty {
                        self.v4.remove(&key);
                    }
                    o
                }
                IpNetwork::V6(n) => {
                    let key = v6_key(&n);
                    let Some(entry) = self.v6.get_mut(&key) else {
                        continue;
                    };
                    let o = remove_path(
                        entry,
                        peer.0,
                        &mut self.attrs,
                        &mut self.others,
                        &self.peers,
                    );
                    if o == Removal::Empty {
                        self.v6.remove(&key);
                    }
                    o
                }
            };
            if outcome != Removal::Absent
                && let Some(touched) = self.touched.as_mut()
            {
                touched.push(prefix);
            }
            if outcome != Removal::Absent
                && let Some(n) = self.routes_per_peer.get_mut(peer.0 as usize)
            {
                let n = &mut n[family_index(&prefix)];
                *n = n.saturating_sub(1);
            }
            match outcome {
                Removal::Empty => changes.push(BestChange::Unreachable { prefix }),
                Removal::NewBest(best) => changes.push(BestChange::Best {
                    prefix,
                    peer: PeerId(best.peer),
                    attributes: self.attrs.get(best.attr).clone(),
                }),
                Removal::NoChange | Removal::Absent => {}
            }
        }
    }

    /// The best path to `prefix`.
    pub fn best(&self, prefix: &IpNetwork) -> Option<(PeerId, Arc<PathAttributes>)> {
        let e = self.entry(prefix)?;
        Some((PeerId(e.best.peer), self.attrs.get(e.best.attr).clone()))
    }

    /// Every path to `prefix`, best first.
    pub fn paths(&self, prefix: &IpNetwork) -> Vec<(PeerId, Arc<PathAttributes>)> {
        self.entry(prefix)
            .map(|e| {
                e.paths(&self.others)
                    .map(|p| (PeerId(p.peer), self.attrs.get(p.attr).clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every best path (the Loc-RIB), in no particular order.
    pub fn best_routes(&self) -> impl Iterator<Item = (IpNetwork, PeerId, &Arc<PathAttributes>)> {
        let v4 = self.v4.iter().map(|(k, e)| {
            (
                v4_prefix(*k),
                PeerId(e.best.peer),
                self.attrs.get(e.best.attr),
            )
        });
        let v6 = self.v6.iter().map(|(k, e)| {
            (
                v6_prefix(*k),
                PeerId(e.best.peer),
                self.attrs.get(e.best.attr),
            )
        });
        v4.chain(v6)
    }

    /// The routes `peer` sent (its Adj-RIB-In), in no particular order.
    pub fn adj_rib_in(&self, peer: PeerId) -> Vec<(IpNetwork, Arc<PathAttributes>)> {
        let mut out = Vec::new();
        for (k, e) in self.v4.iter() {
            if let Some(p) = e.paths(&self.others).find(|p| p.peer == peer.0) {
                out.push((v4_prefix(*k), self.attrs.get(p.attr).clone()));
            }
        }
        for (k, e) in self.v6.iter() {
            if let Some(p) = e.paths(&self.others).find(|p| p.peer == peer.0) {
                out.push((v6_prefix(*k), self.attrs.get(p.attr).clone()));
            }
        }
        out
    }

    /// The prefixes `peer` has a path to, in no particular order.
    pub fn peer_prefixes(&self, peer: PeerId) -> Vec<IpNetwork> {
        let v4 = self
            .v4
            .iter()
            .filter(|(_, e)| e.paths(&self.others).any(|p| p.peer == peer.0))
            .map(|(k, _)| v4_prefix(*k));
        let v6 = self
            .v6
            .iter()
            .filter(|(_, e)| e.paths(&self.others).any(|p| p.peer == peer.0))
            .map(|(k, _)| v6_prefix(*k));
        v4.chain(v6).collect()
    }

    /// How many prefixes `peer` has a path to (the size of its Adj-RIB-In).
    pub fn peer_len(&self, peer: PeerId) -> usize {
        self.routes_per_peer
            .get(peer.0 as usize)
            .map_or(0, |[v4, v6]| v4 + v6)
    }

    /// How many prefixes of `family` `peer` has a path to (0 for families other than
    /// IPv4 and IPv6 unicast).
    pub fn peer_len_of(&self, peer: PeerId, family: crate::message::Family) -> usize {
        let index = match family {
            crate::message::Family::IPV4_UNICAST => 0,
            crate::message::Family::IPV6_UNICAST => 1,
            _ => return 0,
        };
        self.routes_per_peer
            .get(peer.0 as usize)
            .map_or(0, |counts| counts[index])
    }

    /// `peer`'s path to `prefix`, if it has one.
    pub fn path_of(&self, peer: PeerId, prefix: &IpNetwork) -> Option<Arc<PathAttributes>> {
        let e = self.entry(prefix)?;
        let p = e.paths(&self.others).find(|p| p.peer == peer.0)?;
        Some(self.attrs.get(p.attr).clone())
    }

    /// Number of prefixes with at least one path.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// Number of prefixes of one family with at least one path.
    pub fn len_of(&self, family: crate::message::Family) -> usize {
        match family {
            crate::message::Family::IPV4_UNICAST => self.v4.len(),
            crate::message::Family::IPV6_UNICAST => self.v6.len(),
            _ => 0,
        }
    }

    /// True when no prefix has a path.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of distinct attribute sets held.
    pub fn attribute_sets(&self) -> usize {
        self.attrs.len()
    }

    fn entry(&self, prefix: &IpNetwork) -> Option<&Entry> {
        match canonical(*prefix) {
            IpNetwork::V4(n) => self.v4.get(&v4_key(&n)),
            IpNetwork::V6(n) => self.v6.get(&v6_key(&n)),
        }
    }
}

/// Inserts or replaces a path; returns the new best path if it changed, and whether the
/// peer had no path to the prefix before.
fn upsert<K>(
    entry: std::collections::hash_map::Entry<'_, K, Entry>,
    path: Path,
    attrs: &mut AttrStore,
    others: &mut OtherPaths,
    peers: &[Option<PeerInfo>],
) -> (Option<Path>, bool) {
    use std::collections::hash_map::Entry as E;
    match entry {
        E::Vacant(v) => {
            attrs.incref(path.attr);
            v.insert(Entry::new(path));
            (Some(path), true)
        }
        E::Occupied(mut o) => {
            let e = o.get_mut();
            let mut inserted = false;
            let current = e.best;
            if current.peer == path.peer {
                if current == path {
                    return (None, false);
                }
                attrs.incref(path.attr);
                attrs.decref(current.attr);
                e.best = path;
                if e.others == OtherPaths::NONE {
                    return (Some(path), false);
                }
            } else {
                match others.get_mut(e.others) {
                    None => {
                        attrs.incref(path.attr);
                        e.others = others.create(path);
                        inserted = true;
                    }
                    Some(list) => match list.iter_mut().find(|p| p.peer == path.peer) {
                        Some(p) if p.attr == path.attr => return (None, false),
                        Some(p) => {
                            attrs.incref(path.attr);
                            attrs.decref(p.attr);
                            p.attr = path.attr;
                        }
                        None => {
                            attrs.incref(path.attr);
                            list.push(path);
                            inserted = true;
                        }
                    },
                }
            }
            let old = e.best;
            reselect(e, attrs, others, peers);
            let best = e.best;
            ((best != old || best == path).then_some(best), inserted)
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Removal {
    /// The peer's path was the last one.
    Empty,
    /// The peer's path was the best; another one is now.
    NewBest(Path),
    /// The peer's path was removed; the best path stayed.
    NoChange,
    /// The peer had no path to the prefix.
    Absent,
}

fn remove_path(
    e: &mut Entry,
    peer: u32,
    attrs: &mut AttrStore,
    others: &mut OtherPaths,
    peers: &[Option<PeerInfo>],
) -> Removal {
    if e.best.peer == peer {
        attrs.decref(e.best.attr);
        let Some(first) = others.get_mut(e.others).and_then(Vec::pop) else {
            return Removal::Empty;
        };
        e.best = first;
        if others.get(e.others).is_empty() {
            others.release(e.others);
            e.others = OtherPaths::NONE;
        }
        reselect(e, attrs, others, peers);
        return Removal::NewBest(e.best);
    }
    let Some(list) = others.get_mut(e.others) else {
        return Removal::Absent;
    };
    let Some(i) = list.iter().position(|p| p.peer == peer) else {
        return Removal::Absent;
    };
    attrs.decref(list[i].attr);
    list.swap_remove(i);
    if list.is_empty() {
        others.release(e.others);
        e.others = OtherPaths::NONE;
    }
    Removal::NoChange
}

/// Runs the decision process over the entry's paths and moves the winner to `best`.
fn reselect(e: &mut Entry, attrs: &AttrStore, others: &mut OtherPaths, peers: &[Option<PeerInfo>]) {
    let Some(others) = others.get_mut(e.others) else {
        return;
    };
    let all: Vec<Path> = std::iter::once(e.best)
        .chain(others.iter().copied())
        .collect();
    let unknown = PeerInfo {
        address: IpAddr::V4(Ipv4Addr::BROADCAST),
        router_id: Ipv4Addr::BROADCAST,
        ibgp: true,
    };
    let candidates: Vec<Candidate<'_>> = all
        .iter()
        .map(|p| {
            let info = peers
                .get(p.peer as usize)
                .copied()
                .flatten()
                .unwrap_or(unknown);
            Candidate {
                attributes: attrs.get(p.attr),
                ibgp: info.ibgp,
                peer_router_id: info.router_id,
                peer_address: info.address,
            }
        })
        .collect();
    let Some(best) = select_best(&candidates) else {
        return;
    };
    if best != 0 {
        let winner = all[best];
        others.retain(|p| *p != winner);
        others.push(e.best);
        e.best = winner;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_slots_stay_small() {
        // Per prefix, a million times over: the key and the entry as the tables store them.
        assert_eq!(std::mem::size_of::<(V4Key, Entry)>(), 17);
        assert_eq!(std::mem::size_of::<(V6Key, Entry)>(), 29);
    }

    #[test]
    fn keys_give_back_their_prefixes() {
        for p in ["10.244.1.0/24", "0.0.0.0/0", "255.255.255.255/32"] {
            let n: Ipv4Network = p.parse().expect("v4");
            assert_eq!(v4_prefix(v4_key(&n)), IpNetwork::V4(n));
        }
        for p in ["fd00:10:244:1::/64", "::/0", "2001:db8:1:2:3:4:5:6/128"] {
            let n: Ipv6Network = p.parse().expect("v6");
            assert_eq!(v6_prefix(v6_key(&n)), IpNetwork::V6(n));
        }
    }

    #[test]
    fn other_path_lists_are_reused() {
        let path = |peer| Path {
            attr: AttrId(0),
            peer,
        };
        let mut others = OtherPaths::default();
        assert!(others.get(OtherPaths::NONE).is_empty());
        let a = others.create(path(1));
        let b = others.create(path(2));
        assert_ne!(a, b);
        assert_eq!(others.get(a), &[path(1)]);
        others.release(a);
        assert!(others.get(a).is_empty());
        assert_eq!(others.create(path(3)), a, "a released list is taken again");
        assert_eq!(others.get(b), &[path(2)]);
    }
}
