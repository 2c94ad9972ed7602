//! The programmer's cache, without I/O: per destination, what podroute wants and what the
//! kernel holds; which destinations changed since the last flush; the next hops in use.
//!
//! This is the one place the desired routes live (the kernel holds the rest; the periodic full
//! pass checks the cache against it). A destination costs one hash-map slot: a 10-byte
//! [`Slot`] behind a 5-byte (IPv4) or 17-byte (IPv6) key, packed. Next hops, sets of equal-cost next
//! hops (ECMP) and kernel targets are interned: a route names them by a 4-byte id, because a
//! node has few of them and many routes. A multipath route costs its slot like any other; its
//! set is resolved once, not per route. Interned entries are counted where routes take and drop
//! them (a route's wanted next hop or set, its kernel target, a next hop's or set's
//! resolution, a planned write not yet completed) and freed with their last use, their ids
//! reused ([`super::interner`]): the tables hold what routes use now, not every next hop ever
//! seen.
//!
//! Inputs: staged intents ([`RouteTable::stage`]), the kernel's routes from a dump or a
//! notification, next-hop resolutions, and the outcome of each write. Outputs: the writes to
//! make ([`RouteTable::plan`]) and the counts the agent exports. The decision per destination is
//! [`super::diff::plan_destination`]; ownership is [`super::ownership`]'s.

use std::collections::BTreeMap;
use std::hash::Hash;
use std::net::IpAddr;

use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};

use podroute_bgp::sharded_map::ShardedMap;

use super::diff::{Write, off_metric_write, plan_destination};
use super::interner::Interner;
use super::kernel::{KernelRoute, Resolution, WriteKind};
use super::ownership::is_cni_pod_route;
use super::programmer::RouteCounters;
use super::{Gateway, KernelTarget, RouteIntent, install_priority};

/// The per-destination tables: a million entries grow shard by shard.
type SlotMap<K> = ShardedMap<K, Slot, foldhash::fast::RandomState>;

/// An interned next hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct NextHopId(u32);

/// An interned set of equal-cost next hops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SetId(u32);

/// An interned kernel target (`via gateway dev oif`, `blackhole`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TargetId(u32);

/// What podroute wants for a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wanted {
    Nothing,
    Blackhole,
    Via(NextHopId),
    /// Over every next hop of the set that resolves.
    Multipath(SetId),
}

/// What the cache knows of the kernel's route to a next hop (or a set's to its next hops).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resolved {
    /// Not asked yet.
    Unknown,
    Reachable(TargetId),
    Unresolvable,
}

/// An interned next hop's state (its address is the key). Freed when neither counts.
#[derive(Debug)]
struct NextHop {
    resolved: Resolved,
    /// Destinations that want this next hop.
    users: u32,
    /// Sets that hold this next hop (every interned set has users).
    sets: u32,
}

/// An interned set's state; the key is its next hops, sorted by address, at least two.
/// Freed with its last user.
#[derive(Debug)]
struct NextHopSet {
    /// The multipath (or, with one next hop left, plain) route over the members that resolve;
    /// [`Resolved::Unresolvable`] when none does.
    resolved: Resolved,
    /// Destinations that want this set.
    users: u32,
}

/// One destination, 10 bytes (packed like the keys, see [`V4Key`]): wanted (0 nothing, 1 blackhole, n + 2 next hop n, [`SET`] | n
/// next-hop set n), podroute's
/// route at the install metric (0 none, n + 1 target n), how many foreign-protocol routes hold
/// the destination, flags.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, packed)]
struct Slot {
    wanted: u32,
    ours: u32,
    foreign: u8,
    flags: u8,
}

/// In [`Slot::wanted`]: a next-hop set, not a next hop (so 2^31 - 2 next hops in use at once at
/// most, far beyond what a node's peers can announce as distinct next hops; freed ids are
/// reused).
const SET: u32 = 1 << 31;

/// In the queue of destinations to decide at the next flush.
const QUEUED: u8 = 1;
/// In the list of stale routes kept until stale removal is allowed.
const STALE: u8 = 2;
/// Was installed, then disappeared from the kernel: putting it back counts as `restored`.
const LOST: u8 = 4;
/// Seen in the current full pass's dump.
const SEEN: u8 = 8;
/// Counted as a collision (see [`Shared::settle`]).
const COLLIDING: u8 = 16;
/// Counted as installed (see [`Shared::settle`]).
const INSTALLED: u8 = 32;

impl Slot {
    fn wanted(&self) -> Wanted {
        let wanted = self.wanted;
        match wanted {
            0 => Wanted::Nothing,
            1 => Wanted::Blackhole,
            n if n & SET != 0 => Wanted::Multipath(SetId(n & !SET)),
            n => Wanted::Via(NextHopId(n - 2)),
        }
    }

    fn set_wanted_raw(&mut self, wanted: Wanted) {
        self.wanted = match wanted {
            Wanted::Nothing => 0,
            Wanted::Blackhole => 1,
            Wanted::Via(NextHopId(n)) => n + 2,
            Wanted::Multipath(SetId(n)) => SET | n,
        };
    }

    fn ours(&self) -> Option<TargetId> {
        self.ours.checked_sub(1).map(TargetId)
    }

    /// Only through [`Shared::set_ours`], which counts the target's uses.
    fn set_ours_raw(&mut self, target: Option<TargetId>) {
        self.ours = target.map_or(0, |t| t.0 + 1);
    }

    fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// Nothing wanted, nothing in the kernel: the slot can go.
    fn is_empty(&self) -> bool {
        self.wanted == 0 && self.ours == 0 && self.foreign == 0
    }
}

/// A hash-map key for one family's prefixes.
trait PrefixKey: Copy + Eq + Hash {
    fn network(&self) -> IpNetwork;
}

/// An IPv4 key, 5 bytes. Keys and slots are packed (alignment 1), so a table entry is
/// 5 + 10 = 15 bytes (IPv6 17 + 10 = 27) instead of the 20 (32) that 4-byte alignment pads
/// it to; unaligned loads cost nothing measurable on x86-64 and aarch64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(C, packed)]
struct V4Key {
    address: u32,
    length: u8,
}

impl PrefixKey for V4Key {
    fn network(&self) -> IpNetwork {
        // The length came from a valid network.
        Ipv4Network::new(self.address.into(), self.length).map_or_else(
            |_| IpNetwork::V4(Ipv4Network::from(std::net::Ipv4Addr::from(self.address))),
            IpNetwork::V4,
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct V6Key {
    address: [u8; 16],
    length: u8,
}

impl PrefixKey for V6Key {
    fn network(&self) -> IpNetwork {
        Ipv6Network::new(self.address.into(), self.length).map_or_else(
            |_| IpNetwork::V6(Ipv6Network::from(std::net::Ipv6Addr::from(self.address))),
            IpNetwork::V6,
        )
    }
}

/// The destination with its host bits cleared, as the kernel keys it.
fn canonical(destination: IpNetwork) -> IpNetwork {
    IpNetwork::new(destination.network(), destination.prefix()).unwrap_or(destination)
}

/// One write the flush is to make (holding its target's id until completed).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct PlannedWrite {
    /// The route's destination.
    pub destination: IpNetwork,
    op: PlannedOp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PlannedOp {
    Create(TargetId),
    Replace(TargetId),
    Delete { priority: u32 },
}

/// How the kernel answered one write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Done.
    Done,
    /// Failed with this errno.
    Failed(i32),
}

/// What a kernel notification means for the programmer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct EventEffect {
    /// Destinations were queued: a flush has work.
    pub work: bool,
    /// Next hops may resolve differently.
    pub refresh_next_hops: bool,
    /// The cache cannot follow this change exactly: dump and compare.
    pub full_pass: bool,
}

impl EventEffect {
    pub(crate) fn merge(&mut self, other: EventEffect) {
        self.work |= other.work;
        self.refresh_next_hops |= other.refresh_next_hops;
        self.full_pass |= other.full_pass;
    }
}

/// Everything but the slots, so a slot and this can be borrowed at once.
#[derive(Debug)]
struct Shared {
    protocol: u8,
    next_hops: Interner<IpAddr, NextHop>,
    sets: Interner<Box<[NextHopId]>, NextHopSet>,
    /// Each with its uses: slots' routes ([`Slot::ours`]), next hops' and sets' resolutions,
    /// planned writes not completed yet, and one that keeps [`Self::blackhole`] for good.
    targets: Interner<KernelTarget, u32>,
    blackhole: TargetId,
    /// Destinations to decide at the next flush (each with [`QUEUED`] set).
    queue: Vec<IpNetwork>,
    /// Destinations whose write failed in this flush: queued again after it.
    retry: Vec<IpNetwork>,
    /// Stale podroute routes kept until stale removal is allowed (each with [`STALE`]).
    stale: Vec<IpNetwork>,
    /// podroute routes at other metrics, from the last full pass.
    off_metric: Vec<(IpNetwork, u32)>,
    /// Off-metric deletes that failed in this flush: tried again at the next one.
    off_metric_retry: Vec<(IpNetwork, u32)>,
    /// Destinations wanted as blackholes: the node's own pod CIDRs.
    own_pod_cidrs: Vec<IpNetwork>,
    wanted: usize,
    installed: usize,
    /// Of `installed`, IPv6 destinations.
    installed_v6: usize,
    collisions: usize,
    counters: RouteCounters,
}

impl Shared {
    /// The id of next hop `address`, interned if new: the caller takes a use of it at once.
    fn next_hop(&mut self, address: IpAddr) -> NextHopId {
        NextHopId(self.next_hops.intern(&address, || NextHop {
            resolved: Resolved::Unknown,
            users: 0,
            sets: 0,
        }))
    }

    /// The set of `addresses` (sorted, at least two: a [`RouteIntent::Multipath`]'s),
    /// interned if new: the caller takes a use of it at once ([`Self::use_set`]).
    fn set(&mut self, addresses: &[IpAddr]) -> SetId {
        let hops: Box<[NextHopId]> = addresses.iter().map(|a| self.next_hop(*a)).collect();
        SetId(self.sets.intern(&hops, || NextHopSet {
            resolved: Resolved::Unknown,
            users: 0,
        }))
    }

    /// The id of `target`, interned if new: the caller takes a use of it at once
    /// ([`Self::hold_target`]).
    fn target(&mut self, target: &KernelTarget) -> TargetId {
        TargetId(self.targets.intern(target, || 0))
    }

    #[inline]
    fn hold_target(&mut self, id: TargetId) {
        *self.targets.get_mut(id.0) += 1;
    }

    /// One use of `id` less; the last frees it.
    #[inline]
    fn release_target(&mut self, id: TargetId) {
        let uses = self.targets.get_mut(id.0);
        *uses -= 1;
        if *uses == 0 {
            self.targets.remove(id.0);
        }
    }

    fn hold_resolved(&mut self, resolved: Resolved) {
        if let Resolved::Reachable(target) = resolved {
            self.hold_target(target);
        }
    }

    fn release_resolved(&mut self, resolved: Resolved) {
        if let Resolved::Reachable(target) = resolved {
            self.release_target(target);
        }
    }

    /// Records podroute's route for a slot, counting the target's uses (the new one is held
    /// before the old one goes, so an unchanged target is never freed on the way).
    #[inline]
    fn set_ours(&mut self, slot: &mut Slot, target: Option<TargetId>) {
        let before = slot.ours();
        if before == target {
            return;
        }
        if let Some(target) = target {
            self.hold_target(target);
        }
        if let Some(before) = before {
            self.release_target(before);
        }
        slot.set_ours_raw(target);
    }

    /// Records podroute's route for a slot as `target`, written by a planned write whose hold
    /// on it the slot takes over: a write done costs no count of its own.
    #[inline]
    fn adopt_ours(&mut self, slot: &mut Slot, target: TargetId) {
        match slot.ours() {
            // The slot holds it already: the write's hold ends.
            Some(before) if before == target => self.release_target(target),
            Some(before) => {
                self.release_target(before);
                slot.set_ours_raw(Some(target));
            }
            None => slot.set_ours_raw(Some(target)),
        }
    }

    fn set_next_hop_resolved(&mut self, id: NextHopId, resolved: Resolved) {
        self.hold_resolved(resolved);
        let before = std::mem::replace(&mut self.next_hops.get_mut(id.0).resolved, resolved);
        self.release_resolved(before);
    }

    fn set_set_resolved(&mut self, id: SetId, resolved: Resolved) {
        self.hold_resolved(resolved);
        let before = std::mem::replace(&mut self.sets.get_mut(id.0).resolved, resolved);
        self.release_resolved(before);
    }

    /// Frees next hop `id` if no destination and no set uses it any more.
    fn free_next_hop_if_unused(&mut self, id: NextHopId) {
        let next_hop = self.next_hops.get(id.0);
        if next_hop.users == 0
            && next_hop.sets == 0
            && let Some((_, next_hop)) = self.next_hops.remove(id.0)
        {
            self.release_resolved(next_hop.resolved);
        }
    }

    fn wanted_of(&mut self, intent: Option<&RouteIntent>) -> Wanted {
        match intent {
            None => Wanted::Nothing,
            Some(RouteIntent::Blackhole) => Wanted::Blackhole,
            Some(RouteIntent::Via(address)) => Wanted::Via(self.next_hop(*address)),
            Some(RouteIntent::Multipath(addresses)) => Wanted::Multipath(self.set(addresses)),
        }
    }

    /// What `intent` is as a [`Wanted`] if its next hops (or set) are interned; `None`: they
    /// are not, so no destination wants it yet. Looks up without interning.
    fn interned_wanted(&self, intent: &RouteIntent) -> Option<Wanted> {
        Some(match intent {
            RouteIntent::Blackhole => Wanted::Blackhole,
            RouteIntent::Via(address) => Wanted::Via(NextHopId(self.next_hops.id(address)?)),
            RouteIntent::Multipath(addresses) => {
                let hops = addresses
                    .iter()
                    .map(|a| self.next_hops.id(a).map(NextHopId))
                    .collect::<Option<Vec<_>>>()?;
                Wanted::Multipath(SetId(self.sets.id(hops.as_slice())?))
            }
        })
    }

    /// How the kernel is to reach a set: over the gateways of its members that resolve (one
    /// gateway per member, the same gateway once). Unknown while a member is. A target in the
    /// answer is interned but not held: the caller stores it with [`Self::set_set_resolved`].
    fn resolve_set(&mut self, id: SetId) -> Resolved {
        let mut gateways = Vec::new();
        for hop in self.sets.key(id.0).iter() {
            match self.next_hops.get(hop.0).resolved {
                Resolved::Unknown => return Resolved::Unknown,
                Resolved::Unresolvable => {}
                Resolved::Reachable(target) => {
                    if let KernelTarget::Gateway { gateway, oif } = *self.targets.key(target.0) {
                        gateways.push(Gateway { gateway, oif });
                    }
                }
            }
        }
        match KernelTarget::over(gateways) {
            KernelTarget::Other => Resolved::Unresolvable,
            target => Resolved::Reachable(self.target(&target)),
        }
    }

    /// One more (`more`) or one less destination wants set `id`. Its next hops are in use
    /// while it has any; with the last it is freed.
    fn use_set(&mut self, id: SetId, more: bool) {
        let set = self.sets.get_mut(id.0);
        if more {
            set.users += 1;
            if set.users == 1 {
                for hop in self.sets.key(id.0).iter() {
                    self.next_hops.get_mut(hop.0).sets += 1;
                }
                let resolved = self.resolve_set(id);
                self.set_set_resolved(id, resolved);
            }
        } else {
            set.users -= 1;
            if set.users == 0
                && let Some((hops, set)) = self.sets.remove(id.0)
            {
                self.release_resolved(set.resolved);
                for hop in hops.iter() {
                    self.next_hops.get_mut(hop.0).sets -= 1;
                    self.free_next_hop_if_unused(*hop);
                }
            }
        }
    }

    /// Changes what a slot wants, counting the uses: the new next hop or set is taken before
    /// the old one is dropped, so a next hop both hold is never freed on the way.
    fn set_wanted(&mut self, destination: IpNetwork, slot: &mut Slot, wanted: Wanted) {
        let before = slot.wanted();
        if before == wanted {
            return;
        }
        match wanted {
            Wanted::Nothing => self.wanted -= 1,
            Wanted::Blackhole => self.own_pod_cidrs.push(destination),
            Wanted::Via(id) => self.next_hops.get_mut(id.0).users += 1,
            Wanted::Multipath(id) => self.use_set(id, true),
        }
        match before {
            Wanted::Nothing => self.wanted += 1,
            Wanted::Blackhole => self.own_pod_cidrs.retain(|c| *c != destination),
            Wanted::Via(id) => {
                self.next_hops.get_mut(id.0).users -= 1;
                self.free_next_hop_if_unused(id);
            }
            Wanted::Multipath(id) => self.use_set(id, false),
        }
        slot.set_wanted_raw(wanted);
    }

    fn queue(&mut self, destination: IpNetwork, slot: &mut Slot) {
        if !slot.has(QUEUED) {
            slot.flags |= QUEUED;
            self.queue.push(destination);
        }
    }

    /// The target podroute's route should have. An unresolvable next hop (or a set none of
    /// whose next hops resolves) leaves an existing route alone rather than deleting it: the
    /// path may come back, and a stale route is better than a flap.
    fn effective(&self, slot: &Slot) -> Option<TargetId> {
        let resolved = match slot.wanted() {
            Wanted::Nothing => return None,
            Wanted::Blackhole => return Some(self.blackhole),
            Wanted::Via(id) => self.next_hops.get(id.0).resolved,
            Wanted::Multipath(id) => self.sets.get(id.0).resolved,
        };
        match resolved {
            Resolved::Reachable(target) => Some(target),
            Resolved::Unknown | Resolved::Unresolvable => slot.ours(),
        }
    }

    /// Brings the slot's counted state in line with its contents: installed (wanted, in
    /// place, nothing pending, no collision) and colliding (wanted, but a foreign route holds
    /// the destination; counted once when it appears).
    fn settle(&mut self, destination: IpNetwork, slot: &mut Slot) {
        let installed =
            slot.wanted != 0 && slot.ours != 0 && slot.foreign == 0 && !slot.has(QUEUED);
        if installed != slot.has(INSTALLED) {
            slot.flags ^= INSTALLED;
            let v6 = usize::from(destination.is_ipv6());
            if installed {
                self.installed += 1;
                self.installed_v6 += v6;
            } else {
                self.installed -= 1;
                self.installed_v6 -= v6;
            }
        }
        let colliding = slot.wanted != 0 && slot.foreign > 0;
        if colliding != slot.has(COLLIDING) {
            slot.flags ^= COLLIDING;
            if colliding {
                self.collisions += 1;
                self.counters.collisions += 1;
                tracing::warn!(
                    %destination,
                    "a route of another protocol holds this destination; podroute leaves it alone"
                );
            } else {
                self.collisions -= 1;
            }
        }
    }

    /// Decides one dequeued destination; a write goes to `out`.
    fn plan_slot(
        &mut self,
        destination: IpNetwork,
        slot: &mut Slot,
        remove_stale: bool,
        out: &mut Vec<PlannedWrite>,
    ) {
        slot.flags &= !QUEUED;
        let decision = plan_destination(
            self.effective(slot),
            slot.ours(),
            slot.foreign > 0,
            remove_stale,
        );
        let op = match decision.write {
            // Held until the write completes (see [`RouteTable::complete`]).
            Some(Write::Create(t)) => {
                self.hold_target(t);
                Some(PlannedOp::Create(t))
            }
            Some(Write::Replace(t)) => {
                self.hold_target(t);
                Some(PlannedOp::Replace(t))
            }
            Some(Write::Delete) => Some(PlannedOp::Delete {
                priority: install_priority(&destination),
            }),
            None => None,
        };
        if let Some(op) = op {
            out.push(PlannedWrite { destination, op });
        }
        if decision.kept_stale && !slot.has(STALE) {
            slot.flags |= STALE;
            self.stale.push(destination);
        }
        self.settle(destination, slot);
    }

    /// True for a pod host route of the CNI plugin (see [`super::ownership`]).
    fn is_cni_pod_route(&self, route: &KernelRoute) -> bool {
        route.protocol == self.protocol && is_cni_pod_route(&route.shape, &self.own_pod_cidrs)
    }
}

/// The desired routes and what the kernel holds for them.
#[derive(Debug)]
pub(crate) struct RouteTable {
    v4: SlotMap<V4Key>,
    v6: SlotMap<V6Key>,
    shared: Shared,
}

/// The slot of (canonical) `destination`, created if new; the caller settles it.
fn raw_slot<'a>(
    v4: &'a mut SlotMap<V4Key>,
    v6: &'a mut SlotMap<V6Key>,
    destination: IpNetwork,
) -> &'a mut Slot {
    match destination {
        IpNetwork::V4(n) => v4
            .entry(V4Key {
                address: n.network().into(),
                length: n.prefix(),
            })
            .or_default(),
        IpNetwork::V6(n) => v6
            .entry(V6Key {
                address: n.network().octets(),
                length: n.prefix(),
            })
            .or_default(),
    }
}

/// Runs `f` on the slot of `key` (created if `create`), then settles it and drops it if empty.
fn edit<K: PrefixKey, R>(
    map: &mut SlotMap<K>,
    key: K,
    create: bool,
    shared: &mut Shared,
    f: impl FnOnce(IpNetwork, &mut Slot, &mut Shared) -> R,
) -> Option<R> {
    let slot = if create {
        map.entry(key).or_default()
    } else {
        map.get_mut(&key)?
    };
    let destination = key.network();
    let result = f(destination, slot, shared);
    shared.settle(destination, slot);
    if slot.is_empty() {
        map.remove(&key);
    }
    Some(result)
}

impl RouteTable {
    /// An empty cache for routes of `protocol`.
    pub(crate) fn new(protocol: u8) -> Self {
        let mut shared = Shared {
            protocol,
            next_hops: Interner::default(),
            sets: Interner::default(),
            targets: Interner::default(),
            blackhole: TargetId(0),
            queue: Vec::new(),
            retry: Vec::new(),
            stale: Vec::new(),
            off_metric: Vec::new(),
            off_metric_retry: Vec::new(),
            own_pod_cidrs: Vec::new(),
            wanted: 0,
            installed: 0,
            installed_v6: 0,
            collisions: 0,
            counters: RouteCounters::default(),
        };
        shared.blackhole = shared.target(&KernelTarget::Blackhole);
        shared.hold_target(shared.blackhole);
        Self {
            v4: SlotMap::default(),
            v6: SlotMap::default(),
            shared,
        }
    }

    fn with_slot<R>(
        &mut self,
        destination: IpNetwork,
        create: bool,
        f: impl FnOnce(IpNetwork, &mut Slot, &mut Shared) -> R,
    ) -> Option<R> {
        match canonical(destination) {
            IpNetwork::V4(n) => {
                let key = V4Key {
                    address: n.network().into(),
                    length: n.prefix(),
                };
                edit(&mut self.v4, key, create, &mut self.shared, f)
            }
            IpNetwork::V6(n) => {
                let key = V6Key {
                    address: n.network().octets(),
                    length: n.prefix(),
                };
                edit(&mut self.v6, key, create, &mut self.shared, f)
            }
        }
    }

    fn slot(&self, destination: &IpNetwork) -> Option<&Slot> {
        match canonical(*destination) {
            IpNetwork::V4(n) => self.v4.get(&V4Key {
                address: n.network().into(),
                length: n.prefix(),
            }),
            IpNetwork::V6(n) => self.v6.get(&V6Key {
                address: n.network().octets(),
                length: n.prefix(),
            }),
        }
    }

    /// Every slot with its destination, mutably, with the shared part.
    fn for_each_slot(&mut self, mut f: impl FnMut(IpNetwork, &mut Slot, &mut Shared)) {
        for (key, slot) in self.v4.iter_mut() {
            f(key.network(), slot, &mut self.shared);
        }
        for (key, slot) in self.v6.iter_mut() {
            f(key.network(), slot, &mut self.shared);
        }
    }

    /// Sets what podroute wants for `destination` (`None`: nothing). Later stages of the same
    /// destination before a flush replace earlier ones: the flush writes only the last.
    pub(crate) fn stage(&mut self, destination: IpNetwork, intent: Option<RouteIntent>) {
        let wanted = self.shared.wanted_of(intent.as_ref());
        self.with_slot(
            destination,
            wanted != Wanted::Nothing,
            |destination, slot, shared| {
                if slot.wanted() != wanted {
                    shared.set_wanted(destination, slot, wanted);
                    shared.queue(destination, slot);
                }
            },
        );
    }

    /// Stages whatever differs between the cache and `desired`, the whole desired set.
    pub(crate) fn stage_difference(&mut self, desired: &BTreeMap<IpNetwork, RouteIntent>) {
        for (destination, intent) in desired {
            let wanted = self.shared.interned_wanted(intent);
            if wanted.is_none() || self.slot(destination).map(Slot::wanted) != wanted {
                self.stage(*destination, Some(intent.clone()));
            }
        }
        // Everything desired is now wanted; anything else wanted is withdrawn.
        if self.shared.wanted > desired.len() {
            let mut withdrawn = Vec::new();
            self.for_each_slot(|destination, slot, _| {
                if slot.wanted != 0 && !desired.contains_key(&destination) {
                    withdrawn.push(destination);
                }
            });
            for destination in withdrawn {
                self.stage(destination, None);
            }
        }
    }

    /// Next hops in use to ask the kernel about: the ones never asked, or all if `all`.
    pub(crate) fn next_hops_to_resolve(&self, all: bool) -> Vec<IpAddr> {
        // Every next hop interned is in use: freed with its last user.
        self.shared
            .next_hops
            .iter()
            .filter(|(_, _, n)| all || n.resolved == Resolved::Unknown)
            .map(|(_, address, _)| *address)
            .collect()
    }

    /// Records how the kernel reaches `address`; routes through it (alone or in a set) are
    /// queued if that changed. A next hop no route uses any more has nothing to change.
    pub(crate) fn set_resolution(&mut self, address: IpAddr, resolution: Resolution) {
        let Some(id) = self.shared.next_hops.id(&address).map(NextHopId) else {
            return;
        };
        let resolved = match resolution {
            Resolution::Reachable(Gateway { gateway, oif }) => {
                Resolved::Reachable(self.shared.target(&KernelTarget::Gateway { gateway, oif }))
            }
            Resolution::Unresolvable => Resolved::Unresolvable,
        };
        let before = self.shared.next_hops.get(id.0).resolved;
        if before == resolved {
            return;
        }
        self.shared.set_next_hop_resolved(id, resolved);
        let NextHop { users, sets, .. } = *self.shared.next_hops.get(id.0);
        match resolved {
            Resolved::Unresolvable => tracing::warn!(
                next_hop = %address,
                routes = users,
                sets,
                "next hop unreachable through the kernel's routes; its routes are not installed \
                 (existing ones are left alone, multipath routes keep their other next hops)"
            ),
            _ if before == Resolved::Unresolvable => {
                tracing::info!(next_hop = %address, routes = users, sets, "next hop reachable again");
            }
            _ => {}
        }
        // The sets in use with this next hop whose route changes. One whose route was not
        // known had its users queued when they were staged, like a new next hop's.
        let mut changed_sets = Vec::new();
        let holding: Vec<SetId> = (self.shared.sets.iter())
            .filter(|(_, hops, _)| hops.contains(&id))
            .map(|(index, _, _)| SetId(index))
            .collect();
        for set_id in holding {
            let set_before = self.shared.sets.get(set_id.0).resolved;
            let set_after = self.shared.resolve_set(set_id);
            if set_after != set_before {
                self.shared.set_set_resolved(set_id, set_after);
                if set_before != Resolved::Unknown {
                    changed_sets.push(set_id);
                }
            }
        }
        let queue_single = before != Resolved::Unknown && users > 0;
        if !queue_single && changed_sets.is_empty() {
            return;
        }
        self.for_each_slot(|destination, slot, shared| {
            let affected = match slot.wanted() {
                Wanted::Via(hop) => queue_single && hop == id,
                Wanted::Multipath(set) => changed_sets.contains(&set),
                Wanted::Nothing | Wanted::Blackhole => false,
            };
            if affected {
                shared.queue(destination, slot);
                shared.settle(destination, slot);
            }
        });
    }

    /// Starts a full pass: what the cache knows of the kernel is about to be re-read.
    pub(crate) fn begin_full_pass(&mut self) {
        self.for_each_slot(|_, slot, _| {
            slot.foreign = 0;
            slot.flags &= !SEEN;
        });
        self.shared.off_metric.clear();
    }

    /// One route of the full pass's dump. Counts are settled at [`Self::end_full_pass`], so
    /// the half-read table never counts as a change.
    pub(crate) fn observe_dumped(&mut self, route: &KernelRoute) {
        if !route.main_table {
            return;
        }
        let destination = canonical(route.destination);
        if route.protocol != self.shared.protocol {
            if route.forwarding {
                let slot = raw_slot(&mut self.v4, &mut self.v6, destination);
                slot.foreign = slot.foreign.saturating_add(1);
            }
        } else if self.shared.is_cni_pod_route(route) {
            // The plugin's, never the agent's.
        } else if route.priority == install_priority(&destination) {
            let target = self.shared.target(&route.target);
            let slot = raw_slot(&mut self.v4, &mut self.v6, destination);
            self.shared.set_ours(slot, Some(target));
            slot.flags |= SEEN;
        } else {
            self.shared.off_metric.push((destination, route.priority));
        }
    }

    /// Ends a full pass: podroute routes the dump did not show are gone, every destination is
    /// decided afresh at the next [`Self::plan`], counts are settled.
    pub(crate) fn end_full_pass(&mut self) {
        let queue = std::mem::take(&mut self.shared.queue);
        let stale = std::mem::take(&mut self.shared.stale);
        drop((queue, stale));
        self.for_each_slot(|destination, slot, shared| {
            if !slot.has(SEEN) && slot.ours != 0 {
                if slot.has(INSTALLED) {
                    slot.flags |= LOST;
                }
                shared.set_ours(slot, None);
            }
            slot.flags &= !(SEEN | QUEUED | STALE);
            if !slot.is_empty() {
                shared.queue(destination, slot);
            }
            shared.settle(destination, slot);
        });
        self.v4.retain(|_, slot| !slot.is_empty());
        self.v6.retain(|_, slot| !slot.is_empty());
    }

    /// Abandons a full pass whose dump failed: what was not seen yet is not gone, and known
    /// collisions stay collisions. Another full pass follows.
    pub(crate) fn abort_full_pass(&mut self) {
        self.for_each_slot(|_, slot, _| {
            slot.flags &= !SEEN;
            if slot.has(COLLIDING) {
                slot.foreign = slot.foreign.max(1);
            }
        });
    }

    /// A route notification from the kernel (`deleted` for `RTM_DELROUTE`; `replaced` when
    /// the kernel flags the change as a replace of a route with the same key).
    pub(crate) fn observe_event(
        &mut self,
        route: &KernelRoute,
        deleted: bool,
        replaced: bool,
    ) -> EventEffect {
        let mut effect = EventEffect::default();
        let destination = canonical(route.destination);
        let install = install_priority(&destination);
        if route.protocol != self.shared.protocol {
            // Next hops resolve through other programs' routes (in any table the rules use).
            if self.covers_next_hop(destination) {
                effect.refresh_next_hops = true;
                effect.work = true;
            }
            if !route.main_table || !route.forwarding {
                return effect;
            }
            self.with_slot(destination, !deleted, |destination, slot, shared| {
                if deleted {
                    // Another foreign route may still hold it; only a dump can tell.
                    effect.full_pass |= slot.wanted != 0 || slot.foreign == 0;
                    slot.foreign = slot.foreign.saturating_sub(1);
                } else if replaced && route.priority == install && slot.ours != 0 {
                    // It took the place of podroute's route.
                    shared.set_ours(slot, None);
                    slot.foreign = slot.foreign.saturating_add(1);
                } else if replaced {
                    slot.foreign = slot.foreign.max(1);
                } else {
                    slot.foreign = slot.foreign.saturating_add(1);
                }
                if slot.wanted != 0 || slot.ours != 0 {
                    shared.queue(destination, slot);
                    effect.work = true;
                }
            });
            return effect;
        }
        if !route.main_table || self.shared.is_cni_pod_route(route) {
            return effect;
        }
        if route.priority != install {
            // Someone else wrote (or removed) a podroute route at another metric: rare, and
            // the full pass collects those.
            effect.full_pass = true;
            return effect;
        }
        self.with_slot(destination, !deleted, |destination, slot, shared| {
            if deleted {
                if slot.has(INSTALLED) {
                    slot.flags |= LOST;
                }
                shared.set_ours(slot, None);
            } else {
                let target = shared.target(&route.target);
                shared.set_ours(slot, Some(target));
            }
            shared.queue(destination, slot);
            effect.work = true;
        });
        effect
    }

    /// True if a route to `destination` could be how the kernel reaches a next hop in use.
    fn covers_next_hop(&self, destination: IpNetwork) -> bool {
        self.shared
            .next_hops
            .iter()
            .any(|(_, address, _)| destination.contains(*address))
    }

    /// True if some route podroute wants or holds goes out through interface `index`.
    pub(crate) fn uses_interface(&self, index: u32) -> bool {
        self.shared
            .targets
            .iter()
            .any(|(_, t, _)| t.uses_interface(index))
    }

    /// Moves the stale routes kept so far back into the queue, to be deleted now.
    pub(crate) fn release_stale(&mut self) {
        for destination in std::mem::take(&mut self.shared.stale) {
            self.with_slot(destination, false, |destination, slot, shared| {
                slot.flags &= !STALE;
                shared.queue(destination, slot);
            });
        }
    }

    /// Decides queued destinations until `limit` writes are planned or the queue is empty;
    /// then, with `remove_stale`, the podroute routes at other metrics. Each write is to be
    /// given to [`Self::complete`] once: until then it holds its kernel target, so the id stays
    /// that target's whatever the cache does meanwhile.
    pub(crate) fn plan(&mut self, remove_stale: bool, limit: usize) -> Vec<PlannedWrite> {
        let mut out = Vec::new();
        while out.len() < limit {
            let Some(destination) = self.shared.queue.pop() else {
                break;
            };
            self.with_slot(destination, false, |destination, slot, shared| {
                shared.plan_slot(destination, slot, remove_stale, &mut out);
            });
        }
        if remove_stale && out.len() < limit && self.shared.queue.is_empty() {
            let take = self.shared.off_metric.len().min(limit - out.len());
            for (destination, priority) in self.shared.off_metric.drain(..take) {
                if let Some(WriteKind::Delete { priority }) = off_metric_write(priority, true) {
                    out.push(PlannedWrite {
                        destination,
                        op: PlannedOp::Delete { priority },
                    });
                }
            }
        }
        out
    }

    /// The netlink write of a planned one.
    pub(crate) fn write_kind(&self, write: &PlannedWrite) -> WriteKind {
        let target = |id: TargetId| self.shared.targets.key(id.0).clone();
        match write.op {
            PlannedOp::Create(t) => WriteKind::Create(target(t)),
            PlannedOp::Replace(t) => WriteKind::Replace(target(t)),
            PlannedOp::Delete { priority } => WriteKind::Delete { priority },
        }
    }

    /// Records how the kernel answered a planned write. Returns true if the answer means the
    /// cache is wrong about the destination (a create lost a race): a full pass should check.
    /// Every planned write is completed once: it holds its target until then.
    pub(crate) fn complete(&mut self, write: &PlannedWrite, outcome: Outcome) -> bool {
        if let (PlannedOp::Create(t) | PlannedOp::Replace(t), Outcome::Failed(_)) =
            (write.op, outcome)
        {
            // Not written: the write's hold on its target ends.
            self.shared.release_target(t);
        }
        let install = install_priority(&write.destination);
        match (write.op, outcome) {
            (PlannedOp::Create(t) | PlannedOp::Replace(t), Outcome::Done) => {
                let created = matches!(write.op, PlannedOp::Create(_));
                let recorded = self.with_slot(write.destination, false, |_, slot, shared| {
                    shared.adopt_ours(slot, t);
                    if created {
                        shared.counters.created += 1;
                        if slot.has(LOST) {
                            shared.counters.restored += 1;
                        }
                    } else {
                        shared.counters.replaced += 1;
                    }
                    slot.flags &= !LOST;
                });
                if recorded.is_none() {
                    self.shared.release_target(t);
                }
                false
            }
            (PlannedOp::Delete { priority }, Outcome::Done) => {
                self.shared.counters.deleted += 1;
                if priority == install {
                    self.with_slot(write.destination, false, |_, slot, shared| {
                        shared.set_ours(slot, None);
                    });
                }
                false
            }
            // A create refused with EEXIST lost a race with another program adding a route
            // for the same destination after the cache last saw the kernel: that route stays,
            // and is a collision from now on.
            (PlannedOp::Create(_), Outcome::Failed(libc::EEXIST)) => {
                self.shared.counters.raced += 1;
                self.with_slot(write.destination, false, |_, slot, _| {
                    slot.foreign = slot.foreign.max(1);
                });
                true
            }
            // Already gone: nothing to retry.
            (PlannedOp::Delete { priority }, Outcome::Failed(libc::ESRCH)) => {
                self.shared.counters.errors += 1;
                if priority == install {
                    self.with_slot(write.destination, false, |_, slot, shared| {
                        shared.set_ours(slot, None);
                    });
                }
                false
            }
            (op, Outcome::Failed(_)) => {
                self.shared.counters.errors += 1;
                match op {
                    PlannedOp::Delete { priority } if priority != install => {
                        self.shared
                            .off_metric_retry
                            .push((write.destination, priority));
                    }
                    _ => {
                        self.with_slot(write.destination, false, |destination, slot, shared| {
                            if !slot.has(QUEUED) {
                                slot.flags |= QUEUED;
                                shared.retry.push(destination);
                            }
                        });
                    }
                }
                false
            }
        }
    }

    /// After a flush: failed writes are queued for the next one.
    pub(crate) fn end_flush(&mut self) {
        let retry = std::mem::take(&mut self.shared.retry);
        self.shared.queue.extend(retry);
        let retry = std::mem::take(&mut self.shared.off_metric_retry);
        self.shared.off_metric.extend(retry);
    }

    /// Destinations wanted and in place.
    pub(crate) fn installed(&self) -> usize {
        self.shared.installed
    }

    /// [`Self::installed`] by family: IPv4, IPv6.
    pub(crate) fn installed_by_family(&self) -> (usize, usize) {
        let v6 = self.shared.installed_v6;
        (self.shared.installed - v6, v6)
    }

    /// True if `destination` is wanted and in place.
    pub(crate) fn is_installed(&self, destination: &IpNetwork) -> bool {
        self.slot(destination).is_some_and(|s| s.has(INSTALLED))
    }

    /// The destinations wanted and in place.
    pub(crate) fn installed_routes(&self) -> impl Iterator<Item = IpNetwork> + '_ {
        let v4 = self.v4.iter().filter(|(_, s)| s.has(INSTALLED));
        let v6 = self.v6.iter().filter(|(_, s)| s.has(INSTALLED));
        v4.map(|(k, _)| k.network())
            .chain(v6.map(|(k, _)| k.network()))
    }

    /// Wanted destinations held by a route of another protocol.
    pub(crate) fn collisions(&self) -> usize {
        self.shared.collisions
    }

    /// Wanted destinations whose next hop (every next hop, for multipath) the kernel cannot
    /// reach.
    pub(crate) fn unresolvable(&self) -> usize {
        let single: usize = (self.shared.next_hops.iter())
            .filter(|(_, _, n)| n.resolved == Resolved::Unresolvable)
            .map(|(_, _, n)| n.users as usize)
            .sum();
        let sets: usize = (self.shared.sets.iter())
            .filter(|(_, _, s)| s.resolved == Resolved::Unresolvable)
            .map(|(_, _, s)| s.users as usize)
            .sum();
        single + sets
    }

    /// Running totals.
    pub(crate) fn counters(&self) -> &RouteCounters {
        &self.shared.counters
    }

    /// Running totals, for the programmer's own counts (runs, batches).
    pub(crate) fn counters_mut(&mut self) -> &mut RouteCounters {
        &mut self.shared.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::ownership::RouteShape;

    const PROTO: u8 = 80;

    fn net(s: &str) -> IpNetwork {
        s.parse().expect("net")
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }
    fn via(s: &str) -> Option<RouteIntent> {
        Some(RouteIntent::Via(ip(s)))
    }
    fn gw(s: &str) -> KernelTarget {
        KernelTarget::Gateway {
            gateway: ip(s),
            oif: 2,
        }
    }
    fn route(destination: &str, protocol: u8, target: KernelTarget) -> KernelRoute {
        let destination = net(destination);
        KernelRoute {
            destination,
            main_table: true,
            protocol,
            forwarding: true,
            priority: install_priority(&destination),
            shape: RouteShape {
                destination,
                unicast: matches!(
                    target,
                    KernelTarget::Gateway { .. } | KernelTarget::Multipath(_)
                ),
                gateway: match target {
                    KernelTarget::Gateway { gateway, .. } => Some(gateway),
                    _ => None,
                },
                oif: Some(2),
            },
            target,
        }
    }

    /// A table whose next hops 198.18.0.x resolve to themselves on link 2.
    fn table() -> RouteTable {
        RouteTable::new(PROTO)
    }

    fn resolve_all(table: &mut RouteTable) {
        for next_hop in table.next_hops_to_resolve(false) {
            table.set_resolution(
                next_hop,
                Resolution::Reachable(Gateway {
                    gateway: next_hop,
                    oif: 2,
                }),
            );
        }
    }

    /// Plans everything and completes it as the kernel would; returns the writes.
    fn flush(table: &mut RouteTable, remove_stale: bool) -> Vec<(IpNetwork, WriteKind)> {
        flush_with(table, remove_stale, |_| Outcome::Done)
    }

    fn flush_with(
        table: &mut RouteTable,
        remove_stale: bool,
        outcome: impl Fn(&PlannedWrite) -> Outcome,
    ) -> Vec<(IpNetwork, WriteKind)> {
        resolve_all(table);
        if remove_stale {
            table.release_stale();
        }
        let mut done = Vec::new();
        loop {
            let writes = table.plan(remove_stale, 2);
            if writes.is_empty() {
                break;
            }
            for write in &writes {
                done.push((write.destination, table.write_kind(write)));
                table.complete(write, outcome(write));
            }
        }
        table.end_flush();
        done.sort_by_key(|(d, _)| *d);
        done
    }

    fn full_pass(table: &mut RouteTable, kernel: &[KernelRoute]) {
        table.begin_full_pass();
        for route in kernel {
            table.observe_dumped(route);
        }
        table.end_full_pass();
    }

    #[test]
    fn later_stages_of_a_destination_coalesce_into_one_write() {
        let mut table = table();
        table.stage(net("10.244.2.0/24"), via("198.18.0.2"));
        table.stage(net("10.244.2.0/24"), via("198.18.0.22"));
        table.stage(net("10.244.3.0/24"), via("198.18.0.3"));
        table.stage(net("10.244.3.0/24"), None);
        assert_eq!(
            flush(&mut table, true),
            vec![(net("10.244.2.0/24"), WriteKind::Create(gw("198.18.0.22")))]
        );
        assert_eq!(table.installed(), 1);
        assert!(table.is_installed(&net("10.244.2.0/24")));
        assert!(!table.is_installed(&net("10.244.3.0/24")));
        // Staging what is already there writes nothing.
        table.stage(net("10.244.2.0/24"), via("198.18.0.22"));
        assert!(flush(&mut table, true).is_empty());
    }

    #[test]
    fn the_difference_to_a_full_map_is_staged_and_applied_exactly() {
        let mut table = table();
        let mut desired = BTreeMap::from([
            (net("10.244.1.0/24"), RouteIntent::Blackhole),
            (net("10.244.2.0/24"), RouteIntent::Via(ip("198.18.0.2"))),
            (
                net("fd00:10:244:2::/64"),
                RouteIntent::Via(ip("fd00:198:18::2")),
            ),
        ]);
        table.stage_difference(&desired);
        assert_eq!(flush(&mut table, true).len(), 3);
        assert_eq!(table.installed(), 3);
        let mut installed: Vec<_> = table.installed_routes().collect();
        installed.sort();
        assert_eq!(installed, desired.keys().copied().collect::<Vec<_>>());

        table.stage_difference(&desired);
        assert!(flush(&mut table, true).is_empty(), "no change, no write");

        desired.insert(net("10.244.2.0/24"), RouteIntent::Via(ip("198.18.0.22")));
        desired.remove(&net("fd00:10:244:2::/64"));
        table.stage_difference(&desired);
        assert_eq!(
            flush(&mut table, true),
            vec![
                (net("10.244.2.0/24"), WriteKind::Replace(gw("198.18.0.22"))),
                (
                    net("fd00:10:244:2::/64"),
                    WriteKind::Delete { priority: 1024 }
                ),
            ]
        );
        assert_eq!(table.installed(), 2);
        assert_eq!(table.counters().created, 3);
        assert_eq!(table.counters().replaced, 1);
        assert_eq!(table.counters().deleted, 1);
    }

    #[test]
    fn stale_routes_are_adopted_until_stale_removal_is_allowed() {
        let mut table = table();
        table.stage(net("10.244.2.0/24"), via("198.18.0.2"));
        full_pass(
            &mut table,
            &[
                route("10.244.2.0/24", PROTO, gw("198.18.0.2")),
                route("10.244.8.0/24", PROTO, gw("198.18.0.8")),
            ],
        );
        assert!(
            flush(&mut table, false).is_empty(),
            "adoption writes nothing"
        );
        assert_eq!(table.installed(), 1);
        assert!(flush(&mut table, false).is_empty());
        assert_eq!(
            flush(&mut table, true),
            vec![(net("10.244.8.0/24"), WriteKind::Delete { priority: 0 })]
        );
        // A withdrawal waits for stale removal too.
        table.stage(net("10.244.2.0/24"), None);
        assert!(flush(&mut table, false).is_empty());
        assert_eq!(flush(&mut table, true).len(), 1);
        assert_eq!(table.installed(), 0);
    }

    #[test]
    fn a_route_gone_from_the_dump_is_restored_and_counted() {
        let mut table = table();
        table.stage(net("10.244.2.0/24"), via("198.18.0.2"));
        flush(&mut table, true);
        full_pass(&mut table, &[]);
        assert!(!table.is_installed(&net("10.244.2.0/24")));
        assert_eq!(
            flush(&mut table, true),
            vec![(net("10.244.2.0/24"), WriteKind::Create(gw("198.18.0.2")))]
        );
        assert_eq!(table.counters().restored, 1);
        assert!(table.is_installed(&net("10.244.2.0/24")));
    }

    #[test]
    fn a_deletion_notification_queues_the_repair() {
        let mut table = table();
        table.stage(net("10.244.2.0/24"), via("198.18.0.2"));
        flush(&mut table, true);
        let effect = table.observe_event(
            &route("10.244.2.0/24", PROTO, gw("198.18.0.2")),
            true,
            false,
        );
        assert!(effect.work && !effect.full_pass);
        assert_eq!(flush(&mut table, true).len(), 1);
        assert_eq!(table.counters().restored, 1);
        // Someone else's notification about an unrelated destination needs nothing.
        let effect =
            table.observe_event(&route("192.0.2.0/24", 4, gw("198.18.0.254")), false, false);
        assert_eq!(effect, EventEffect::default());
    }

    #[test]
    fn a_foreign_route_for_a_destination_is_a_collision_counted_once() {
        let mut table = table();
        table.stage(net("10.244.2.0/24"), via("198.18.0.2"));
        flush(&mut table, true);
        let foreign = route("10.244.2.0/24", 4, gw("198.18.0.254"));
        let mut foreign_other_metric = foreign.clone();
        foreign_other_metric.priority = 100;
        assert!(
            table
                .observe_event(&foreign_other_metric, false, false)
                .work
        );
        assert_eq!(table.collisions(), 1);
        // podroute's own route there is stale now.
        assert_eq!(
            flush(&mut table, true),
            vec![(net("10.244.2.0/24"), WriteKind::Delete { priority: 0 })]
        );
        full_pass(&mut table, &[foreign_other_metric.clone()]);
        assert!(flush(&mut table, true).is_empty());
        assert_eq!(table.collisions(), 1);
        assert_eq!(
            table.counters().collisions,
            1,
            "a standing collision counts once"
        );
        assert_eq!(table.installed(), 0);
        // The foreign route goes: podroute's comes back.
        full_pass(&mut table, &[]);
        assert_eq!(flush(&mut table, true).len(), 1);
        assert_eq!(table.collisions(), 0);
        assert_eq!(table.installed(), 1);
    }

    #[test]
    fn a_create_that_loses_a_race_leaves_the_other_route_alone() {
        let mut table = table();
        table.stage(net("10.244.7.0/24"), via("198.18.0.7"));
        flush_with(&mut table, true, |_| Outcome::Failed(libc::EEXIST));
        assert_eq!(table.counters().raced, 1);
        assert_eq!(table.counters().errors, 0);
        assert_eq!(table.collisions(), 1);
        assert!(flush(&mut table, true).is_empty(), "not retried");
    }

    #[test]
    fn failed_writes_are_retried_at_the_next_flush() {
        let mut table = table();
        table.stage(net("10.244.2.0/24"), via("198.18.0.2"));
        let first = flush_with(&mut table, true, |_| Outcome::Failed(libc::ENETUNREACH));
        assert_eq!(first.len(), 1, "tried once per flush");
        assert_eq!(table.counters().errors, 1);
        assert_eq!(table.installed(), 0);
        assert_eq!(flush(&mut table, true).len(), 1);
        assert_eq!(table.installed(), 1);
    }

    #[test]
    fn a_next_hop_resolved_elsewhere_replaces_its_routes_and_an_unresolvable_one_keeps_them() {
        let mut table = table();
        for n in 2..5 {
            table.stage(net(&format!("10.244.{n}.0/24")), via("198.18.1.3"));
        }
        table.stage(net("10.244.9.0/24"), via("198.18.0.9"));
        flush(&mut table, true);
        assert_eq!(table.installed(), 4);
        let router = Gateway {
            gateway: ip("198.18.0.254"),
            oif: 3,
        };
        table.set_resolution(ip("198.18.1.3"), Resolution::Reachable(router));
        let writes = flush(&mut table, true);
        assert_eq!(writes.len(), 3);
        assert!(writes.iter().all(|(_, w)| *w
            == WriteKind::Replace(KernelTarget::Gateway {
                gateway: router.gateway,
                oif: 3
            })));
        assert!(table.uses_interface(3));

        table.set_resolution(ip("198.18.1.3"), Resolution::Unresolvable);
        assert_eq!(table.unresolvable(), 3);
        assert!(
            flush(&mut table, true).is_empty(),
            "existing routes are left alone"
        );
        assert_eq!(table.installed(), 4);
        // A new route through it is not installed.
        table.stage(net("10.244.5.0/24"), via("198.18.1.3"));
        assert!(flush(&mut table, true).is_empty());
        assert!(!table.is_installed(&net("10.244.5.0/24")));
    }

    #[test]
    fn cni_pod_routes_and_other_tables_are_not_the_agents() {
        let mut table = table();
        table.stage(net("10.244.1.0/24"), Some(RouteIntent::Blackhole));
        let mut pod = route("10.244.1.7/32", PROTO, KernelTarget::Other);
        pod.shape.gateway = None;
        pod.shape.unicast = true;
        let mut other_table = route("10.244.6.0/24", PROTO, gw("198.18.0.6"));
        other_table.main_table = false;
        full_pass(&mut table, &[pod.clone(), other_table]);
        assert_eq!(
            flush(&mut table, true),
            vec![(
                net("10.244.1.0/24"),
                WriteKind::Create(KernelTarget::Blackhole)
            )]
        );
        assert_eq!(
            table.observe_event(&pod, true, false),
            EventEffect::default()
        );
    }

    #[test]
    fn duplicates_at_other_metrics_go_with_stale_removal() {
        let mut table = table();
        table.stage(net("10.244.2.0/24"), via("198.18.0.2"));
        let mut duplicate = route("10.244.2.0/24", PROTO, gw("198.18.0.2"));
        duplicate.priority = 100;
        full_pass(
            &mut table,
            &[route("10.244.2.0/24", PROTO, gw("198.18.0.2")), duplicate],
        );
        assert!(flush(&mut table, false).is_empty());
        assert_eq!(
            flush(&mut table, true),
            vec![(net("10.244.2.0/24"), WriteKind::Delete { priority: 100 })]
        );
        assert!(flush(&mut table, true).is_empty());
    }

    fn multipath(hops: &[&str]) -> Option<RouteIntent> {
        let hops: Vec<IpAddr> = hops.iter().map(|h| ip(h)).collect();
        RouteIntent::via_all(&hops)
    }

    fn over(hops: &[&str]) -> KernelTarget {
        KernelTarget::over(
            hops.iter()
                .map(|h| Gateway {
                    gateway: ip(h),
                    oif: 2,
                })
                .collect(),
        )
    }

    #[test]
    fn equal_cost_next_hops_become_one_multipath_route_replaced_in_place() {
        let mut table = table();
        let ecmp = net("198.18.1.0/24");
        table.stage(ecmp, multipath(&["198.18.0.252", "198.18.0.251"]));
        table.stage(
            net("198.18.2.0/24"),
            multipath(&["198.18.0.251", "198.18.0.252"]),
        );
        let both = over(&["198.18.0.251", "198.18.0.252"]);
        assert_eq!(
            flush(&mut table, true),
            vec![
                (ecmp, WriteKind::Create(both.clone())),
                (net("198.18.2.0/24"), WriteKind::Create(both.clone())),
            ]
        );
        assert_eq!(table.shared.sets.len(), 1, "one set for both routes");
        // The full pass reads it back (in whatever order): no write.
        let read_back = route(
            "198.18.1.0/24",
            PROTO,
            over(&["198.18.0.252", "198.18.0.251"]),
        );
        full_pass(
            &mut table,
            &[read_back, route("198.18.2.0/24", PROTO, both.clone())],
        );
        assert!(flush(&mut table, true).is_empty(), "no rewrite loop");
        assert_eq!(table.installed(), 2);
        // One router gone: its remaining next hop replaces the route, never delete + add.
        table.stage(ecmp, multipath(&["198.18.0.251"]));
        assert_eq!(
            flush(&mut table, true),
            vec![(ecmp, WriteKind::Replace(gw("198.18.0.251")))]
        );
        // Back again.
        table.stage(ecmp, multipath(&["198.18.0.251", "198.18.0.252"]));
        assert_eq!(
            flush(&mut table, true),
            vec![(ecmp, WriteKind::Replace(both))]
        );
        assert_eq!(table.counters().deleted, 0);
    }

    #[test]
    fn unresolvable_members_are_left_out_and_all_unresolvable_keeps_the_route() {
        let mut table = table();
        let ecmp = net("198.18.1.0/24");
        table.stage(ecmp, multipath(&["198.18.0.251", "198.18.0.252"]));
        flush(&mut table, true);
        assert!(table.is_installed(&ecmp));
        table.set_resolution(ip("198.18.0.252"), Resolution::Unresolvable);
        assert_eq!(
            flush_with_resolved(&mut table),
            vec![(ecmp, WriteKind::Replace(gw("198.18.0.251")))]
        );
        assert_eq!(table.unresolvable(), 0);
        table.set_resolution(ip("198.18.0.251"), Resolution::Unresolvable);
        assert!(
            flush_with_resolved(&mut table).is_empty(),
            "like a single unresolvable next hop: the route stays"
        );
        assert_eq!(table.unresolvable(), 1);
        assert!(table.is_installed(&ecmp));
        // Both back: multipath again.
        table.set_resolution(
            ip("198.18.0.251"),
            Resolution::Reachable(Gateway {
                gateway: ip("198.18.0.251"),
                oif: 2,
            }),
        );
        table.set_resolution(
            ip("198.18.0.252"),
            Resolution::Reachable(Gateway {
                gateway: ip("198.18.0.252"),
                oif: 3,
            }),
        );
        let back = KernelTarget::over(vec![
            Gateway {
                gateway: ip("198.18.0.251"),
                oif: 2,
            },
            Gateway {
                gateway: ip("198.18.0.252"),
                oif: 3,
            },
        ]);
        assert_eq!(
            flush_with_resolved(&mut table),
            vec![(ecmp, WriteKind::Replace(back))]
        );
        assert!(table.uses_interface(3));
        // Two next hops behind one gateway make a plain route through it.
        table.set_resolution(
            ip("198.18.0.252"),
            Resolution::Reachable(Gateway {
                gateway: ip("198.18.0.251"),
                oif: 2,
            }),
        );
        assert_eq!(
            flush_with_resolved(&mut table),
            vec![(ecmp, WriteKind::Replace(gw("198.18.0.251")))]
        );
    }

    /// Plans and completes what is queued without resolving anything (the test set the
    /// resolutions).
    fn flush_with_resolved(table: &mut RouteTable) -> Vec<(IpNetwork, WriteKind)> {
        let mut done = Vec::new();
        loop {
            let writes = table.plan(true, 16);
            if writes.is_empty() {
                break;
            }
            for write in &writes {
                done.push((write.destination, table.write_kind(write)));
                table.complete(write, Outcome::Done);
            }
        }
        table.end_flush();
        done
    }

    #[test]
    fn a_multipath_next_hop_is_resolved_and_watched_like_a_single_one() {
        let mut table = table();
        table.stage(
            net("198.18.1.0/24"),
            multipath(&["198.18.0.251", "198.18.0.252"]),
        );
        let mut asked = table.next_hops_to_resolve(false);
        asked.sort();
        assert_eq!(asked, vec![ip("198.18.0.251"), ip("198.18.0.252")]);
        flush(&mut table, true);
        assert!(table.next_hops_to_resolve(false).is_empty());
        assert_eq!(table.next_hops_to_resolve(true).len(), 2);
        // A route change towards a member next hop asks for it again.
        let effect = table.observe_event(
            &route("198.18.0.0/24", 2, KernelTarget::Other),
            false,
            false,
        );
        assert!(effect.refresh_next_hops);
        // Withdrawn: its next hops are not in use any more.
        table.stage(net("198.18.1.0/24"), None);
        flush(&mut table, true);
        assert!(table.next_hops_to_resolve(true).is_empty());
    }

    /// Churn through the interned next hops, sets and targets: freed and reused.
    mod reuse;

    #[test]
    fn a_slot_costs_fifteen_bytes_for_ipv4() {
        assert_eq!(size_of::<Slot>(), 10);
        assert_eq!(size_of::<(V4Key, Slot)>(), 15);
        assert_eq!(size_of::<(V6Key, Slot)>(), 27);
    }
}
