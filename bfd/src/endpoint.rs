//! The multi-session BFD endpoint: every session of a node behind one socket and one
//! timer heap, sans-IO.
//!
//! What this module owns: the sessions (one per peer address, single-hop, RFC 5881),
//! their discriminators, the demultiplexing of received packets (RFC 5880 §6.8.6 "If the
//! Your Discriminator field is nonzero ..."; RFC 5881 §3 for zero), the GTSM check
//! (RFC 5881 §5), damping, the one heap of deadlines, and the counters. The driver owns a
//! socket and a clock and nothing else:
//!
//! ```text
//! let mut bfd = Bfd::new(BfdConfig { seed, ..Default::default() });
//! bfd.add_session(now, peer, SessionConfig::default());
//! loop {
//!     while let Some(action) = bfd.poll_action() {
//!         match action {
//!             Action::Transmit { peer, packet } => /* send to peer:3784, TTL 255 */,
//!             Action::Liveness { peer, liveness } => /* tell BGP */,
//!             Action::StateChanged { .. } => /* logs, metrics */,
//!         }
//!     }
//!     wait for a datagram (bfd.handle_datagram) or bfd.poll_timeout() (bfd.handle_timeout)
//! }
//! ```
//!
//! Cost: a timer event touches one session and the heap (O(log n)); nothing scans all
//! sessions except [`Bfd::shutdown`] and status reads.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::damping::{Damper, DampingConfig};
use crate::packet::{ControlPacket, DecodeError, Diag, PACKET_LEN, State};
use crate::session::{Output, Session, SessionConfig};

/// The TTL / Hop Limit single-hop BFD packets are sent with and must arrive with
/// (RFC 5881 §5, the Generalized TTL Security Mechanism).
pub const SINGLE_HOP_TTL: u8 = 255;

/// Endpoint-wide settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BfdConfig {
    /// Seeds discriminators and transmit jitter; give each process a different one.
    pub seed: u64,
    /// Sent as the C bit (RFC 5880 §4.1). True only if this BFD outlives the control
    /// plane (BGP) on this node; RFC 5882 §4.3 lets a peer decide on graceful restart
    /// from it, so it must be honest.
    pub control_plane_independent: bool,
    /// Damping of flapping sessions towards clients.
    pub damping: DampingConfig,
}

/// One received datagram.
#[derive(Debug, Clone, Copy)]
pub struct Datagram<'a> {
    /// The sender's address.
    pub source: IpAddr,
    /// The IPv4 TTL or IPv6 Hop Limit it arrived with.
    pub ttl: u8,
    /// The UDP payload.
    pub payload: &'a [u8],
}

/// What BFD tells its clients (BGP) about a peer's forwarding path, after damping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Liveness {
    /// BFD is Up with the peer: the path works.
    Up,
    /// The path failed (Detection Time expired, or the peer's BFD said Down): act now.
    Down,
    /// The peer's BFD went AdminDown (a planned stop): not a failure (RFC 5882 §3.2), so
    /// a client takes no action and leaves the session to its own timers and graceful
    /// restart.
    AdminDown,
}

/// What the endpoint asks its driver to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send `packet` to `peer` port 3784 with TTL 255.
    Transmit {
        /// The peer's address.
        peer: IpAddr,
        /// The Control packet.
        packet: [u8; PACKET_LEN],
    },
    /// A session's bfd.SessionState changed (for logs and metrics).
    StateChanged {
        /// The peer's address.
        peer: IpAddr,
        /// Previous state.
        from: State,
        /// New state.
        to: State,
        /// bfd.LocalDiag with the change.
        diag: Diag,
    },
    /// What a client should now believe about the path to `peer`.
    Liveness {
        /// The peer's address.
        peer: IpAddr,
        /// Up, Down or AdminDown.
        liveness: Liveness,
    },
}

/// Why a datagram changed no session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Drop {
    /// The packet itself is invalid.
    #[error(transparent)]
    Packet(#[from] DecodeError),
    /// Arrived with a TTL other than 255: not from a neighbour on the link.
    #[error("TTL {0}, single-hop BFD needs 255")]
    Ttl(u8),
    /// Your Discriminator names no session here.
    #[error("Your Discriminator names no session")]
    UnknownDiscriminator,
    /// Your Discriminator is zero and no session is configured for the source.
    #[error("no session with the source address")]
    NoSession,
    /// Your Discriminator names a session of another peer.
    #[error("Your Discriminator names another peer's session")]
    WrongPeer,
}

impl Drop {
    /// Stable label for the drop counter.
    pub fn metric_label(self) -> &'static str {
        match self {
            Drop::Packet(e) => e.metric_label(),
            Drop::Ttl(_) => "ttl",
            Drop::UnknownDiscriminator => "unknown_discriminator",
            Drop::NoSession => "no_session",
            Drop::WrongPeer => "wrong_peer",
        }
    }
}

/// Endpoint-wide counters (plain numbers; the agent exports them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Control packets accepted.
    pub received: u64,
    /// Control packets handed to the driver to send.
    pub sent: u64,
    /// Datagrams dropped, by [`Drop::metric_label`].
    pub dropped: HashMap<&'static str, u64>,
    /// State changes, all sessions.
    pub transitions: u64,
    /// Up → Down because the Detection Time expired (a failure BFD found).
    pub detections: u64,
    /// Up reports held back by damping.
    pub damped: u64,
}

/// What status shows of one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionStatus {
    /// The peer's address.
    pub peer: IpAddr,
    /// bfd.SessionState.
    pub state: State,
    /// What the peer says its state is.
    pub remote_state: State,
    /// Why this end last went down.
    pub diag: Diag,
    /// bfd.LocalDiscr, bfd.RemoteDiscr.
    pub local_discr: u32,
    /// 0 if unknown.
    pub remote_discr: u32,
    /// The peer's C bit as last heard: its BFD outlives its control plane, so a Down from
    /// it is a forwarding failure even while its BGP restarts (RFC 5882 §4.3).
    pub remote_control_plane_independent: bool,
    /// Current transmit interval before jitter.
    pub transmit_interval: Option<Duration>,
    /// Current Detection Time.
    pub detection_time: Option<Duration>,
    /// State changes so far.
    pub transitions: u64,
    /// What clients were last told.
    pub liveness: Liveness,
    /// Hold-down the next Up would wait for (damping).
    pub hold_down: Duration,
    /// The configuration.
    pub config: SessionConfig,
}

#[derive(Debug)]
struct Entry {
    peer: IpAddr,
    session: Session,
    damper: Damper,
    liveness: Liveness,
    /// The deadline this entry has in the heap (the earliest live one); heap entries at
    /// other times are stale and skipped.
    scheduled: Option<Instant>,
}

impl Entry {
    fn deadline(&self) -> Option<Instant> {
        match (self.session.poll_timeout(), self.damper.deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Every BFD session of a node (see the module docs).
#[derive(Debug)]
pub struct Bfd {
    config: BfdConfig,
    /// Sessions by bfd.LocalDiscr.
    sessions: HashMap<u32, Entry>,
    /// bfd.LocalDiscr by peer address.
    by_peer: HashMap<IpAddr, u32>,
    /// (deadline, discriminator), earliest first; lazily cleaned (see `Entry::scheduled`).
    heap: BinaryHeap<Reverse<(Instant, u32)>>,
    actions: VecDeque<Action>,
    outputs: Vec<Output>,
    counters: Counters,
    discr_state: u64,
}

impl Bfd {
    /// An endpoint with no sessions.
    pub fn new(config: BfdConfig) -> Self {
        Self {
            config,
            sessions: HashMap::new(),
            by_peer: HashMap::new(),
            heap: BinaryHeap::new(),
            actions: VecDeque::new(),
            outputs: Vec::new(),
            counters: Counters::default(),
            discr_state: config.seed | 1,
        }
    }

    /// Starts a session with `peer` (Active role: it sends at once), or reconfigures the
    /// one there is. Returns its local discriminator.
    pub fn add_session(&mut self, now: Instant, peer: IpAddr, config: SessionConfig) -> u32 {
        if let Some(&discr) = self.by_peer.get(&peer) {
            self.with_session(now, discr, |s, _, _| s.reconfigure(config));
            return discr;
        }
        let discr = self.new_discriminator();
        let session = Session::new(
            now,
            discr,
            config,
            self.config.control_plane_independent,
            self.config.seed,
        );
        self.sessions.insert(
            discr,
            Entry {
                peer,
                session,
                damper: Damper::default(),
                liveness: Liveness::Down,
                scheduled: None,
            },
        );
        self.by_peer.insert(peer, discr);
        self.reschedule(discr);
        discr
    }

    /// Ends the session with `peer`, telling it AdminDown first so it does not take this
    /// for a failure.
    pub fn remove_session(&mut self, now: Instant, peer: IpAddr) {
        let Some(discr) = self.by_peer.remove(&peer) else {
            return;
        };
        self.with_session(now, discr, |s, now, out| s.admin_down(now, out));
        self.sessions.remove(&discr);
    }

    /// Holds the session with `peer` in AdminDown (or lets it come up again).
    pub fn set_admin_down(&mut self, now: Instant, peer: IpAddr, down: bool) {
        if let Some(&discr) = self.by_peer.get(&peer) {
            self.with_session(now, discr, |s, now, out| {
                if down {
                    s.admin_down(now, out)
                } else {
                    s.admin_up(now, out)
                }
            });
        }
    }

    /// A planned stop: every session goes AdminDown and says so at once, so peers keep
    /// their routes for graceful restart instead of treating this as a failure
    /// (RFC 5882 §3.2, §4.3).
    pub fn shutdown(&mut self, now: Instant) {
        let all: Vec<u32> = self.sessions.keys().copied().collect();
        for discr in all {
            self.with_session(now, discr, |s, now, out| s.admin_down(now, out));
        }
    }

    /// One received datagram: checks it (RFC 5880 §6.8.6, RFC 5881 §5), selects its
    /// session and runs the session's reception rules. A dropped datagram is counted and
    /// changes nothing.
    pub fn handle_datagram(&mut self, now: Instant, datagram: Datagram<'_>) -> Result<(), Drop> {
        let result = self.accept(datagram);
        match result {
            Ok((discr, packet)) => {
                self.counters.received += 1;
                self.with_session(now, discr, |s, now, out| s.handle_packet(now, &packet, out));
                Ok(())
            }
            Err(drop) => {
                *self
                    .counters
                    .dropped
                    .entry(drop.metric_label())
                    .or_default() += 1;
                Err(drop)
            }
        }
    }

    fn accept(&self, datagram: Datagram<'_>) -> Result<(u32, ControlPacket), Drop> {
        // GTSM first: a packet from off the link is not even parsed.
        if datagram.ttl != SINGLE_HOP_TTL {
            return Err(Drop::Ttl(datagram.ttl));
        }
        let packet = ControlPacket::decode(datagram.payload)?;
        let discr = if packet.your_discr != 0 {
            let entry = self
                .sessions
                .get(&packet.your_discr)
                .ok_or(Drop::UnknownDiscriminator)?;
            if entry.peer != datagram.source {
                return Err(Drop::WrongPeer);
            }
            packet.your_discr
        } else {
            *self.by_peer.get(&datagram.source).ok_or(Drop::NoSession)?
        };
        Ok((discr, packet))
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&Reverse((at, discr))) = self.heap.peek() {
            if at > now {
                break;
            }
            self.heap.pop();
            let Some(entry) = self.sessions.get_mut(&discr) else {
                continue;
            };
            if entry.scheduled != Some(at) {
                continue; // stale
            }
            entry.scheduled = None;
            self.with_session(now, discr, |s, now, out| s.handle_timeout(now, out));
        }
    }

    /// The earliest deadline of any session.
    pub fn poll_timeout(&self) -> Option<Instant> {
        // Stale heap entries are never later than the live deadline they stand for, so
        // the top is at worst an early wake-up that finds nothing to do.
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// The next thing to do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The session with `peer`.
    pub fn session(&self, peer: IpAddr) -> Option<SessionStatus> {
        let entry = self.sessions.get(self.by_peer.get(&peer)?)?;
        Some(status(entry))
    }

    /// Every session, in no particular order.
    pub fn sessions(&self) -> impl Iterator<Item = SessionStatus> + '_ {
        self.sessions.values().map(status)
    }

    /// Sessions by state: AdminDown, Down, Init, Up.
    pub fn sessions_by_state(&self) -> [(State, usize); 4] {
        let mut counts = [
            (State::AdminDown, 0),
            (State::Down, 0),
            (State::Init, 0),
            (State::Up, 0),
        ];
        for e in self.sessions.values() {
            counts[usize::from(e.session.state().to_wire())].1 += 1;
        }
        counts
    }

    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Runs `f` on one session, then turns what it emitted into actions, applies damping
    /// and reschedules it.
    fn with_session(
        &mut self,
        now: Instant,
        discr: u32,
        f: impl FnOnce(&mut Session, Instant, &mut Vec<Output>),
    ) {
        let Some(entry) = self.sessions.get_mut(&discr) else {
            return;
        };
        let mut outputs = std::mem::take(&mut self.outputs);
        f(&mut entry.session, now, &mut outputs);
        if entry.damper.handle_timeout(now) {
            entry.liveness = Liveness::Up;
            self.actions.push_back(Action::Liveness {
                peer: entry.peer,
                liveness: Liveness::Up,
            });
        }
        for output in outputs.drain(..) {
            match output {
                Output::Transmit(packet) => {
                    self.counters.sent += 1;
                    self.actions.push_back(Action::Transmit {
                        peer: entry.peer,
                        packet: packet.encode(),
                    });
                }
                Output::StateChanged { from, to, diag } => {
                    self.counters.transitions += 1;
                    if from == State::Up && diag == Diag::CONTROL_DETECTION_TIME_EXPIRED {
                        self.counters.detections += 1;
                    }
                    self.actions.push_back(Action::StateChanged {
                        peer: entry.peer,
                        from,
                        to,
                        diag,
                    });
                    let told = if to == State::Up {
                        if entry.damper.session_up(now) {
                            Some(Liveness::Up)
                        } else {
                            self.counters.damped += 1;
                            None
                        }
                    } else if from == State::Up || entry.damper.told_up() {
                        let was_told = entry.damper.session_down(now, &self.config.damping);
                        // The peer's planned stop (it said AdminDown) or our own is no
                        // failure; anything else is.
                        let planned = to == State::AdminDown
                            || entry.session.remote_state() == State::AdminDown;
                        let liveness = if planned {
                            Liveness::AdminDown
                        } else {
                            Liveness::Down
                        };
                        (was_told || planned).then_some(liveness)
                    } else {
                        None
                    };
                    if let Some(liveness) = told
                        && liveness != entry.liveness
                    {
                        entry.liveness = liveness;
                        self.actions.push_back(Action::Liveness {
                            peer: entry.peer,
                            liveness,
                        });
                    }
                }
            }
        }
        self.outputs = outputs;
        self.reschedule(discr);
    }

    fn reschedule(&mut self, discr: u32) {
        let Some(entry) = self.sessions.get_mut(&discr) else {
            return;
        };
        let deadline = entry.deadline();
        // Push only when the deadline moved earlier (or none is queued); a later deadline
        // is found when the earlier entry pops and re-queues it.
        match (deadline, entry.scheduled) {
            (Some(d), Some(s)) if d >= s => {}
            (Some(d), _) => {
                entry.scheduled = Some(d);
                self.heap.push(Reverse((d, discr)));
            }
            (None, _) => entry.scheduled = None,
        }
    }

    fn new_discriminator(&mut self) -> u32 {
        loop {
            let x = crate::session::xorshift64(&mut self.discr_state);
            let discr = (x >> 32) as u32;
            if discr != 0 && !self.sessions.contains_key(&discr) {
                return discr;
            }
        }
    }
}

fn status(e: &Entry) -> SessionStatus {
    SessionStatus {
        peer: e.peer,
        state: e.session.state(),
        remote_state: e.session.remote_state(),
        diag: e.session.local_diag(),
        local_discr: e.session.local_discr(),
        remote_discr: e.session.remote_discr(),
        remote_control_plane_independent: e.session.remote_control_plane_independent(),
        transmit_interval: e.session.transmit_interval(),
        detection_time: e.session.detection_time(),
        transitions: e.session.transitions(),
        liveness: e.liveness,
        hold_down: e.damper.hold(),
        config: e.session.config(),
    }
}

#[cfg(test)]
#[path = "endpoint_tests.rs"]
mod tests;
