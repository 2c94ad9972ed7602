//! The route programmer: route deltas in, batched kernel writes out, the kernel watched.
//!
//! - **Incremental.** [`RouteProgrammer::stage`] records what podroute wants for one
//!   destination in the cache ([`super::table`]); [`RouteProgrammer::flush`] decides only the
//!   destinations that changed and writes them in netlink batches ([`super::batch`]).
//! - **Next hops resolved per next hop**, not per route, with one `ip route get` each; asked
//!   again in every full pass and when a notification says routes or links they depend on
//!   changed.
//! - **Kernel notifications** ([`RouteProgrammer::kernel_changed`]): a podroute route someone
//!   else deleted, or a foreign route appearing for one of podroute's destinations, queues
//!   that destination, so the next flush repairs it without waiting for a dump.
//! - **Full pass, rarely**: a dump of the main table compared with the whole cache in O(n)
//!   (hash maps, no per-route system calls) every [`FULL_PASS_PERIOD`], at start, and soon
//!   after a notification the cache cannot follow (lost notifications, a link under one of
//!   podroute's routes changed). With nothing changing, nothing else runs.
//!
//! Ownership rules are [`super::ownership`]'s and [`super::diff`]'s.

use std::collections::BTreeMap;
use std::io;
use std::time::Duration;

use ipnetwork::IpNetwork;
use rtnetlink::packet_core::{NLM_F_REPLACE, NetlinkBuffer};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::address::AddressHeader;
use rtnetlink::packet_route::link::{LinkFlags, LinkHeader};
use tokio::time::Instant;

use super::RouteIntent;
use super::batch::BATCH_BYTES;
use super::kernel::{
    KernelError, KernelRoute, Resolution, resolution_of, resolve_request, write_request,
};
use super::netlink::{EventSocket, RequestSocket, parse_route};
use super::table::{EventEffect, Outcome, PlannedWrite, RouteTable};
use podroute_cni::datagram::messages;

/// How often the full pass runs when nothing asks for one earlier. Notifications carry the
/// changes in between, so this only catches what they cannot tell (IPv4 routes the kernel
/// removes silently with their link, a bug). A dump of 1M routes costs about a second of CPU
/// (see the report of issue 9), so ten minutes keep it under 0.2 % of a core.
pub const FULL_PASS_PERIOD: Duration = Duration::from_secs(600);

/// The least time between two full passes asked for by notifications, so a flapping link
/// under 1M routes costs at most a dump per this period.
const MIN_FULL_PASS_INTERVAL: Duration = Duration::from_secs(10);

/// Writes planned, sent and completed at a time: bounds the transient memory of a bulk flush.
const WRITE_CHUNK: usize = 16 * 1024;

/// How often an interrupted dump is repeated before its result is used as it is.
const DUMP_ATTEMPTS: usize = 3;

/// Running totals since start (exported as metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouteCounters {
    /// Flushes.
    pub runs: u64,
    /// Full passes (dump and compare).
    pub full_passes: u64,
    /// Routes created (new destinations).
    pub created: u64,
    /// Routes changed in place with replace.
    pub replaced: u64,
    /// Routes deleted.
    pub deleted: u64,
    /// Routes podroute had installed that someone else removed, and that were put back.
    pub restored: u64,
    /// Newly seen collisions with routes of other protocols.
    pub collisions: u64,
    /// Netlink write errors.
    pub errors: u64,
    /// Creates refused because another program's route for the destination appeared after
    /// the cache last saw the kernel (left alone; a collision from then on).
    pub raced: u64,
    /// Netlink batches sent (one `sendmsg` each).
    pub batches: u64,
    /// Requests sent in those batches.
    pub batched_requests: u64,
}

/// What one flush did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushReport {
    /// The flush began with a full pass.
    pub full_pass: bool,
    /// Routes created.
    pub created: u64,
    /// Routes replaced.
    pub replaced: u64,
    /// Routes deleted.
    pub deleted: u64,
    /// Of the created, routes someone else had removed.
    pub restored: u64,
    /// Creates that lost a race with another program's route.
    pub raced: u64,
    /// Failed writes (retried at the next flush).
    pub errors: u64,
}

impl FlushReport {
    /// True if the flush wrote nothing.
    pub fn is_noop(&self) -> bool {
        self.created == 0 && self.replaced == 0 && self.deleted == 0 && self.errors == 0
    }

    fn between(before: &RouteCounters, after: &RouteCounters, full_pass: bool) -> Self {
        Self {
            full_pass,
            created: after.created - before.created,
            replaced: after.replaced - before.replaced,
            deleted: after.deleted - before.deleted,
            restored: after.restored - before.restored,
            raced: after.raced - before.raced,
            errors: after.errors - before.errors,
        }
    }
}

/// Programs podroute's routes into the main table of the network namespace it was opened in.
#[derive(Debug)]
pub struct RouteProgrammer {
    protocol: u8,
    requests: RequestSocket,
    events: EventSocket,
    table: RouteTable,
    /// When the next full pass is due (at the first flush, then every [`FULL_PASS_PERIOD`]).
    full_pass_due: Instant,
    last_full_pass: Option<Instant>,
    /// A notification asked for the full pass at `full_pass_due` (not just the period).
    full_pass_requested: bool,
    /// Ask the kernel again about every next hop in use at the next flush.
    refresh_next_hops: bool,
    /// Requests in each netlink batch sent since [`Self::take_batch_sizes`] (for the batch
    /// size histogram).
    batch_sizes: Vec<u32>,
}

impl RouteProgrammer {
    /// Opens the programmer's netlink sockets in the calling thread's network namespace
    /// (inside a tokio runtime). Nothing is read or written before the first flush.
    pub fn new(protocol: u8) -> Result<Self, KernelError> {
        let requests = RequestSocket::open().map_err(KernelError::Connect)?;
        let events = EventSocket::open(requests.port()).map_err(KernelError::Connect)?;
        Ok(Self {
            protocol,
            requests,
            events,
            table: RouteTable::new(protocol),
            full_pass_due: Instant::now(),
            last_full_pass: None,
            full_pass_requested: false,
            refresh_next_hops: false,
            batch_sizes: Vec::new(),
        })
    }

    /// Sets what podroute wants for `destination` (`None`: withdraw it). Later stages of the
    /// same destination before a flush coalesce: only the last is written.
    pub fn stage(&mut self, destination: IpNetwork, intent: Option<RouteIntent>) {
        self.table.stage(destination, intent);
    }

    /// Stages the difference between what is staged so far and `desired`, the whole
    /// desired set (for callers that hold it whole rather than as changes).
    pub fn stage_difference(&mut self, desired: &BTreeMap<IpNetwork, RouteIntent>) {
        self.table.stage_difference(desired);
    }

    /// Writes what was staged, and repairs what notifications reported, in batches; begins
    /// with a full pass when one is due. Stale podroute routes are removed only if
    /// `remove_stale` (the view is complete); before that they are adopted as they are.
    #[tracing::instrument(name = "flush_routes", skip_all)]
    pub async fn flush(&mut self, remove_stale: bool) -> Result<FlushReport, KernelError> {
        let before = *self.table.counters();
        self.table.counters_mut().runs += 1;
        self.drain_events();
        let full_pass = Instant::now() >= self.full_pass_due;
        if full_pass {
            self.full_pass().await?;
        }
        let all = full_pass || std::mem::take(&mut self.refresh_next_hops);
        self.resolve_next_hops(all).await?;
        if remove_stale {
            self.table.release_stale();
        }
        let written = self.write_queued(remove_stale).await;
        self.table.end_flush();
        written?;
        let report = FlushReport::between(&before, self.table.counters(), full_pass);
        if !report.is_noop() {
            tracing::info!(
                created = report.created,
                replaced = report.replaced,
                deleted = report.deleted,
                errors = report.errors,
                full_pass,
                "kernel routes updated"
            );
        }
        if report.restored > 0 {
            tracing::warn!(
                routes = report.restored,
                "podroute routes were deleted by someone else; restored"
            );
        }
        Ok(report)
    }

    /// Waits until the kernel reports a change that gives [`Self::flush`] work: a podroute
    /// route removed or changed by someone else, a foreign route for one of podroute's
    /// destinations, a change under a next hop, or lost notifications; or until a full pass
    /// such news asked for falls due. Cancel-safe, for `select!`; notifications that need
    /// nothing are consumed without returning.
    pub async fn kernel_changed(&mut self) {
        loop {
            let requested = self.full_pass_requested;
            let due = self.full_pass_due;
            let received = tokio::select! {
                received = self.events.recv() => Some(match received {
                    Ok(datagram) => apply_notifications(&mut self.table, datagram),
                    Err(e) => lost_notifications(&e),
                }),
                () = tokio::time::sleep_until(due), if requested => None,
            };
            let Some(mut effect) = received else {
                self.full_pass_requested = false;
                return;
            };
            while let Some(more) = self.events.try_recv() {
                effect.merge(match more {
                    Ok(datagram) => apply_notifications(&mut self.table, datagram),
                    Err(e) => lost_notifications(&e),
                });
            }
            if self.take_effect(effect) {
                return;
            }
        }
    }

    /// Makes the next flush begin with a full pass (dump and compare), e.g. on an
    /// operator's request.
    pub fn schedule_full_pass(&mut self) {
        self.full_pass_due = Instant::now();
    }

    /// Destinations wanted and in place.
    pub fn installed(&self) -> usize {
        self.table.installed()
    }

    /// [`Self::installed`] by family: IPv4, IPv6.
    pub fn installed_by_family(&self) -> (usize, usize) {
        self.table.installed_by_family()
    }

    /// True if `destination` is wanted and in place.
    pub fn is_installed(&self, destination: &IpNetwork) -> bool {
        self.table.is_installed(destination)
    }

    /// The destinations wanted and in place (for drift reports).
    pub fn installed_routes(&self) -> impl Iterator<Item = IpNetwork> + '_ {
        self.table.installed_routes()
    }

    /// Wanted destinations held by a route of another protocol.
    pub fn collisions(&self) -> usize {
        self.table.collisions()
    }

    /// Wanted destinations whose next hop the kernel cannot reach.
    pub fn unresolvable(&self) -> usize {
        self.table.unresolvable()
    }

    /// The size (requests) of every netlink batch sent since the last call.
    pub fn take_batch_sizes(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.batch_sizes)
    }

    /// Counters since start.
    pub fn counters(&self) -> RouteCounters {
        *self.table.counters()
    }

    /// Applies notifications already waiting, so a flush starts from the latest news.
    fn drain_events(&mut self) {
        let mut effect = EventEffect::default();
        while let Some(more) = self.events.try_recv() {
            effect.merge(match more {
                Ok(datagram) => apply_notifications(&mut self.table, datagram),
                Err(e) => lost_notifications(&e),
            });
        }
        self.take_effect(effect);
    }

    /// Records what notifications asked for; true if a flush has work.
    fn take_effect(&mut self, effect: EventEffect) -> bool {
        self.refresh_next_hops |= effect.refresh_next_hops;
        if effect.full_pass {
            let earliest = self
                .last_full_pass
                .map_or_else(Instant::now, |last| last + MIN_FULL_PASS_INTERVAL);
            self.full_pass_due = self.full_pass_due.min(earliest);
            self.full_pass_requested = true;
        }
        effect.work || effect.full_pass || effect.refresh_next_hops
    }

    /// Dumps both families and compares the whole cache with what the kernel holds.
    async fn full_pass(&mut self) -> Result<(), KernelError> {
        for attempt in 1..=DUMP_ATTEMPTS {
            self.table.begin_full_pass();
            let mut interrupted = false;
            for family in [AddressFamily::Inet, AddressFamily::Inet6] {
                let table = &mut self.table;
                let dumped = self
                    .requests
                    .dump(family, |message| {
                        if let Some(route) = KernelRoute::from_message(message) {
                            table.observe_dumped(&route);
                        }
                    })
                    .await;
                match dumped {
                    Ok(i) => interrupted |= i,
                    Err(e) => {
                        // What was not seen yet is not gone: keep the cache's view, and try
                        // again a little later rather than at once.
                        self.table.abort_full_pass();
                        self.full_pass_due = Instant::now() + MIN_FULL_PASS_INTERVAL;
                        return Err(KernelError::Dump(e));
                    }
                }
            }
            if !interrupted || attempt == DUMP_ATTEMPTS {
                break;
            }
            tracing::debug!(attempt, "the table changed during the dump; dumping again");
        }
        self.table.end_full_pass();
        let now = Instant::now();
        self.last_full_pass = Some(now);
        self.full_pass_due = now + FULL_PASS_PERIOD;
        self.full_pass_requested = false;
        self.table.counters_mut().full_passes += 1;
        tracing::debug!(installed = self.table.installed(), "full pass done");
        Ok(())
    }

    /// Asks the kernel how it reaches the next hops in use (those never asked, or all).
    async fn resolve_next_hops(&mut self, all: bool) -> Result<(), KernelError> {
        for next_hop in self.table.next_hops_to_resolve(all) {
            let answer = self
                .requests
                .get_route(resolve_request(next_hop))
                .await
                .map_err(KernelError::Dump)?;
            let resolution = answer.map_or(Resolution::Unresolvable, |route| {
                resolution_of(&route, next_hop, self.protocol)
            });
            self.table.set_resolution(next_hop, resolution);
        }
        Ok(())
    }

    /// Plans and writes every queued destination, a chunk at a time.
    async fn write_queued(&mut self, remove_stale: bool) -> Result<(), KernelError> {
        loop {
            let writes = self.table.plan(remove_stale, WRITE_CHUNK);
            if writes.is_empty() {
                return Ok(());
            }
            self.write(&writes).await?;
        }
    }

    /// Writes `writes` in batches and records each answer in the cache.
    async fn write(&mut self, writes: &[PlannedWrite]) -> Result<(), KernelError> {
        let mut next = 0;
        while next < writes.len() {
            let start = next;
            let mut batch = self.requests.new_batch();
            while next < writes.len() {
                let write = &writes[next];
                let request = write_request(
                    write.destination,
                    self.table.write_kind(write),
                    self.protocol,
                );
                if !batch.push(request, BATCH_BYTES) {
                    break;
                }
                next += 1;
            }
            let sent = &writes[start..next];
            let counters = self.table.counters_mut();
            counters.batches += 1;
            counters.batched_requests += sent.len() as u64;
            self.batch_sizes
                .push(u32::try_from(sent.len()).unwrap_or(u32::MAX));
            let mut outcomes = vec![Outcome::Done; sent.len()];
            match self.requests.send_batch(&mut batch).await {
                Ok(failures) => {
                    for (index, errno) in failures {
                        outcomes[index] = Outcome::Failed(errno);
                    }
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    // The kernel processed the batch but some answers were dropped: take it as
                    // done and let a full pass find what failed.
                    tracing::warn!("answers to a route batch were lost; checking with a dump");
                    self.take_effect(EventEffect {
                        full_pass: true,
                        ..EventEffect::default()
                    });
                }
                Err(e) => {
                    for write in &writes[start..] {
                        self.table.complete(write, Outcome::Failed(libc::EIO));
                    }
                    return Err(KernelError::Write(e));
                }
            }
            let mut first_error = None;
            for (write, outcome) in sent.iter().zip(outcomes) {
                if self.table.complete(write, outcome) {
                    tracing::warn!(
                        destination = %write.destination,
                        "another route appeared for this destination; left alone"
                    );
                    self.take_effect(EventEffect {
                        full_pass: true,
                        ..EventEffect::default()
                    });
                }
                if let Outcome::Failed(errno) = outcome
                    && errno != libc::EEXIST
                {
                    first_error.get_or_insert((write.destination, errno));
                    self.refresh_next_hops = true;
                }
            }
            if let Some((destination, errno)) = first_error {
                tracing::warn!(
                    %destination,
                    error = %io::Error::from_raw_os_error(errno),
                    "route write failed; retried at the next flush"
                );
            }
        }
        Ok(())
    }
}

/// ENOBUFS on the notification socket: some were dropped, so only a dump can tell.
fn lost_notifications(error: &io::Error) -> EventEffect {
    if error.raw_os_error() == Some(libc::ENOBUFS) {
        tracing::debug!("kernel notifications were lost; a full pass follows");
    } else {
        tracing::warn!(%error, "reading kernel notifications failed; a full pass follows");
    }
    EventEffect {
        full_pass: true,
        refresh_next_hops: true,
        ..EventEffect::default()
    }
}

/// Applies one datagram of notifications to the cache.
fn apply_notifications(table: &mut RouteTable, datagram: &[u8]) -> EventEffect {
    let mut effect = EventEffect::default();
    for message in messages(datagram) {
        let Ok(message) = message else {
            break;
        };
        effect.merge(match message.message_type() {
            kind @ (libc::RTM_NEWROUTE | libc::RTM_DELROUTE) => {
                route_notification(table, &message, kind == libc::RTM_DELROUTE)
            }
            kind @ (libc::RTM_NEWLINK | libc::RTM_DELLINK) => {
                match LinkHeader::parse(message.payload()) {
                    // IPv4 drops the routes through a link that goes down or away.
                    Ok(link) => interface_notification(
                        table,
                        link.index,
                        kind == libc::RTM_DELLINK || !link.flags.contains(LinkFlags::Up),
                    ),
                    Err(_) => EventEffect::default(),
                }
            }
            kind @ (libc::RTM_NEWADDR | libc::RTM_DELADDR) => {
                match AddressHeader::parse(message.payload()) {
                    // IPv4 drops the routes whose gateway was on a removed address's subnet.
                    Ok(address) => interface_notification(
                        table,
                        address.index,
                        kind == libc::RTM_DELADDR && address.family == AddressFamily::Inet,
                    ),
                    Err(_) => EventEffect::default(),
                }
            }
            _ => EventEffect::default(),
        });
    }
    effect
}

fn route_notification(
    table: &mut RouteTable,
    message: &NetlinkBuffer<&[u8]>,
    deleted: bool,
) -> EventEffect {
    let Some(route) = parse_route(message)
        .ok()
        .as_ref()
        .and_then(KernelRoute::from_message)
    else {
        return EventEffect::default();
    };
    let replaced = message.flags() & NLM_F_REPLACE != 0;
    tracing::trace!(?route, deleted, replaced, "route notification");
    table.observe_event(&route, deleted, replaced)
}

/// A link or its addresses changed. If podroute's routes go out through it, next hops may
/// resolve differently and failed writes may succeed now; `routes_dropped`: the kernel may
/// have removed routes without a notification, which only a full pass finds.
fn interface_notification(table: &RouteTable, index: u32, routes_dropped: bool) -> EventEffect {
    if !table.uses_interface(index) {
        return EventEffect::default();
    }
    EventEffect {
        full_pass: routes_dropped,
        refresh_next_hops: true,
        work: true,
    }
}
