//! One BFD session: the RFC 5880 §6.8 state variables and state machine, asynchronous
//! mode, sans-IO.
//!
//! What this module owns: the state of one session (its `bfd.*` variables), the
//! transitions of §6.8.6, the negotiated intervals of §6.8.2–§6.8.4, poll sequences
//! (§6.5, §6.8.3) and the two timers a session runs ([`Timer`]). It does not know about
//! addresses or sockets; [`crate::endpoint::Bfd`] owns many sessions, picks the one a
//! packet is for and turns what a session emits into actions.

use std::time::{Duration, Instant};

use crate::packet::{ControlPacket, Diag, State};

/// The slowest rate a session may be made to send at while not Up (RFC 5880 §6.8.3:
/// "bfd.DesiredMinTxInterval MUST be set to a value of not less than one second").
pub const SLOW_TX: Duration = Duration::from_secs(1);

/// How often a session wants to send and hear, and how many missed packets mean down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// bfd.DesiredMinTxInterval once Up.
    pub desired_min_tx: Duration,
    /// bfd.RequiredMinRxInterval.
    pub required_min_rx: Duration,
    /// bfd.DetectMult (at least 1).
    pub detect_mult: u8,
}

impl Default for SessionConfig {
    /// 300 ms × 3: a dead path is seen in under a second.
    fn default() -> Self {
        Self {
            desired_min_tx: Duration::from_millis(300),
            required_min_rx: Duration::from_millis(300),
            detect_mult: 3,
        }
    }
}

impl SessionConfig {
    /// The same settings, clamped into what the wire can carry: intervals from 1 µs to
    /// u32::MAX µs (about 71 minutes), a multiplier of at least 1.
    fn normalized(self) -> Self {
        let clamp = |d: Duration| d.clamp(Duration::from_micros(1), micros(u32::MAX));
        Self {
            desired_min_tx: clamp(self.desired_min_tx),
            required_min_rx: clamp(self.required_min_rx),
            detect_mult: self.detect_mult.max(1),
        }
    }
}

/// The timers a session runs (timers as data: expiry is just another input).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// Time to send the next periodic Control packet (§6.8.7).
    Transmit,
    /// The Detection Time ran out without a valid packet (§6.8.4).
    Detect,
}

/// What a session asks its owner to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Output {
    /// Send this packet to the peer.
    Transmit(ControlPacket),
    /// bfd.SessionState changed.
    StateChanged { from: State, to: State, diag: Diag },
}

/// One step of Marsaglia's xorshift64 on `state` (never 0 if it was not): cheap, seeded,
/// repeatable randomness for jitter and discriminators.
pub(crate) fn xorshift64(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}

/// A 64-bit xorshift generator for transmit jitter: the RFC asks for variation, not
/// secrecy, and a seed makes tests reproducible.
#[derive(Debug, Clone)]
struct Jitter(u64);

impl Jitter {
    fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    /// A fraction in [lo, hi) percent of `interval`.
    fn apply(&mut self, interval: Duration, lo: u64, hi: u64) -> Duration {
        let x = xorshift64(&mut self.0);
        let percent_x1000 = lo * 1000 + x % ((hi - lo) * 1000);
        // At most u32::MAX µs × 100,000: no overflow in u64.
        let us = u64::try_from(interval.as_micros()).unwrap_or(u64::from(u32::MAX));
        // At least 1 µs, so a 1 µs interval still moves the clock forward (a timer due
        // at `now` again would spin the endpoint's timer loop).
        Duration::from_micros((us * percent_x1000 / 100_000).max(1))
    }
}

/// One BFD session in asynchronous mode (RFC 5880 §6.8.1 names in the field docs).
#[derive(Debug, Clone)]
pub struct Session {
    config: SessionConfig,
    /// bfd.SessionState.
    state: State,
    /// bfd.RemoteSessionState.
    remote_state: State,
    /// bfd.LocalDiscr (never 0).
    local_discr: u32,
    /// bfd.RemoteDiscr (0 until heard, and again after a Detection Time of silence).
    remote_discr: u32,
    /// bfd.LocalDiag.
    local_diag: Diag,
    /// bfd.DesiredMinTxInterval as advertised (µs).
    desired_min_tx: u32,
    /// bfd.RequiredMinRxInterval as advertised (µs).
    required_min_rx: u32,
    /// bfd.RemoteMinRxInterval (µs): 1 until heard, per §6.8.1.
    remote_min_rx: u32,
    /// The remote's Desired Min TX Interval (µs), for the Detection Time.
    remote_desired_min_tx: u32,
    /// The remote's Detect Mult.
    remote_detect_mult: u8,
    /// The C bit of the remote's last packet: its BFD does not share fate with its control
    /// plane (§4.1). Kept over a Detection Time of silence: it says what that silence means.
    remote_control_plane_independent: bool,
    /// The DesiredMinTx the transmit interval is computed from: during a poll sequence
    /// that raised it, still the old value (§6.8.3).
    tx_in_use: u32,
    /// The RequiredMinRx the Detection Time is computed from: during a poll sequence that
    /// lowered it, still the old value (§6.8.3).
    rx_in_use: u32,
    /// A Poll Sequence is being transmitted (§6.5).
    polling: bool,
    /// Advertised in the C bit: whether this BFD survives the control plane (§4.1).
    control_plane_independent: bool,
    next_transmit: Option<Instant>,
    detect_deadline: Option<Instant>,
    jitter: Jitter,
    /// Times bfd.SessionState changed.
    transitions: u64,
    /// Last time it entered Up.
    up_since: Option<Instant>,
}

/// Microseconds as a Duration.
fn micros(us: u32) -> Duration {
    Duration::from_micros(u64::from(us))
}

/// A Duration as wire microseconds (clamped).
fn to_micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

impl Session {
    /// A session in Down that starts sending at once (the Active role, §6.1).
    pub(crate) fn new(
        now: Instant,
        local_discr: u32,
        config: SessionConfig,
        control_plane_independent: bool,
        seed: u64,
    ) -> Self {
        let config = config.normalized();
        let slow = to_micros(config.desired_min_tx.max(SLOW_TX));
        Self {
            config,
            state: State::Down,
            remote_state: State::Down,
            local_discr,
            remote_discr: 0,
            local_diag: Diag::NONE,
            desired_min_tx: slow,
            required_min_rx: to_micros(config.required_min_rx),
            remote_min_rx: 1,
            remote_desired_min_tx: 0,
            remote_detect_mult: 0,
            remote_control_plane_independent: false,
            tx_in_use: slow,
            rx_in_use: to_micros(config.required_min_rx),
            polling: false,
            control_plane_independent,
            next_transmit: Some(now),
            detect_deadline: None,
            jitter: Jitter::new(seed ^ u64::from(local_discr)),
            transitions: 0,
            up_since: None,
        }
    }

    /// bfd.SessionState.
    pub fn state(&self) -> State {
        self.state
    }

    /// bfd.RemoteSessionState: what the peer last said its state was.
    pub fn remote_state(&self) -> State {
        self.remote_state
    }

    /// bfd.LocalDiag: why this end last went down.
    pub fn local_diag(&self) -> Diag {
        self.local_diag
    }

    /// bfd.LocalDiscr.
    pub fn local_discr(&self) -> u32 {
        self.local_discr
    }

    /// bfd.RemoteDiscr (0 if unknown).
    pub fn remote_discr(&self) -> u32 {
        self.remote_discr
    }

    /// The C bit the remote last sent (false until heard).
    pub fn remote_control_plane_independent(&self) -> bool {
        self.remote_control_plane_independent
    }

    /// The configuration in force.
    pub fn config(&self) -> SessionConfig {
        self.config
    }

    /// Number of state changes so far.
    pub fn transitions(&self) -> u64 {
        self.transitions
    }

    /// When the session last came Up, if it is Up.
    pub fn up_since(&self) -> Option<Instant> {
        self.up_since.filter(|_| self.state == State::Up)
    }

    /// The interval between this end's periodic packets, before jitter (§6.8.7), or
    /// `None` while the peer asks for none (Required Min RX 0).
    pub fn transmit_interval(&self) -> Option<Duration> {
        (self.remote_min_rx != 0).then(|| micros(self.tx_in_use.max(self.remote_min_rx)))
    }

    /// The Detection Time in asynchronous mode (§6.8.4): the remote's Detect Mult times
    /// the larger of what we require and what it wants to send at. `None` before the
    /// first packet.
    pub fn detection_time(&self) -> Option<Duration> {
        (self.remote_detect_mult != 0).then(|| {
            micros(self.rx_in_use.max(self.remote_desired_min_tx))
                * u32::from(self.remote_detect_mult)
        })
    }

    /// The earlier of the session's two deadlines.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.next_transmit, self.detect_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// When `timer` is due, if armed.
    pub fn timer(&self, timer: Timer) -> Option<Instant> {
        match timer {
            Timer::Transmit => self.next_transmit,
            Timer::Detect => self.detect_deadline,
        }
    }

    /// Runs the timers due at `now`.
    pub(crate) fn handle_timeout(&mut self, now: Instant, out: &mut Vec<Output>) {
        if self.detect_deadline.is_some_and(|d| d <= now) {
            self.detect_deadline = None;
            // §6.8.4: Init or Up without packets for a Detection Time goes Down.
            if matches!(self.state, State::Init | State::Up) {
                self.local_diag = Diag::CONTROL_DETECTION_TIME_EXPIRED;
                self.set_state(now, State::Down, out);
            }
            // §6.8.1: the remote's discriminator and parameters are forgotten, so a
            // restarted peer with a new discriminator is heard again.
            self.remote_discr = 0;
            self.remote_state = State::Down;
            self.remote_min_rx = 1;
            self.remote_detect_mult = 0;
        }
        if self.next_transmit.is_some_and(|t| t <= now) {
            self.transmit(now, false, out);
        }
    }

    /// A packet for this session (already selected by discriminator or address and past
    /// the packet checks): the reception rules of §6.8.6 from "Set bfd.RemoteDiscr" on.
    pub(crate) fn handle_packet(&mut self, now: Instant, p: &ControlPacket, out: &mut Vec<Output>) {
        self.remote_discr = p.my_discr;
        self.remote_state = p.state;
        let remote_min_rx_was = self.remote_min_rx;
        self.remote_min_rx = p.required_min_rx;
        self.remote_desired_min_tx = p.desired_min_tx;
        self.remote_detect_mult = p.detect_mult;
        self.remote_control_plane_independent = p.control_plane_independent;
        if self.polling && p.final_ {
            self.end_poll();
        }
        // The peer may now want packets sooner (or again after asking for none).
        if let Some(interval) = self.transmit_interval() {
            let soonest = now + interval;
            if remote_min_rx_was == 0 || self.next_transmit.is_none_or(|t| t > soonest) {
                self.next_transmit = Some(if remote_min_rx_was == 0 { now } else { soonest });
            }
        } else {
            self.next_transmit = None;
        }
        self.detect_deadline = self.detection_time().map(|d| now + d);

        if self.state == State::AdminDown {
            return;
        }
        if p.state == State::AdminDown {
            if self.state != State::Down {
                self.local_diag = Diag::NEIGHBOR_SIGNALED_DOWN;
                self.set_state(now, State::Down, out);
            }
        } else {
            match (self.state, p.state) {
                (State::Down, State::Down) => self.set_state(now, State::Init, out),
                (State::Down, State::Init) | (State::Init, State::Init | State::Up) => {
                    self.set_state(now, State::Up, out)
                }
                (State::Up, State::Down) => {
                    self.local_diag = Diag::NEIGHBOR_SIGNALED_DOWN;
                    self.set_state(now, State::Down, out);
                }
                _ => {}
            }
        }
        if p.poll {
            // §6.8.7: a Final "as soon as practicable", outside the periodic schedule.
            self.transmit(now, true, out);
        }
    }

    /// New intervals or multiplier. While Up a change of the intervals starts a poll
    /// sequence (§6.8.3); a raised TX interval and a lowered RX interval take effect
    /// when it ends.
    pub(crate) fn reconfigure(&mut self, config: SessionConfig) {
        self.config = config.normalized();
        let tx = if self.state == State::Up {
            to_micros(self.config.desired_min_tx)
        } else {
            to_micros(self.config.desired_min_tx.max(SLOW_TX))
        };
        self.set_intervals(tx, to_micros(self.config.required_min_rx));
    }

    /// Holds the session down (§6.8.16): AdminDown, diag 7, said to the peer at once.
    /// Used for a planned stop, so the peer knows this is no failure.
    pub(crate) fn admin_down(&mut self, now: Instant, out: &mut Vec<Output>) {
        if self.state == State::AdminDown {
            return;
        }
        self.local_diag = Diag::ADMIN_DOWN;
        self.set_state(now, State::AdminDown, out);
    }

    /// Lets an AdminDown session come up again: it goes to Down (§6.8.16).
    pub(crate) fn admin_up(&mut self, now: Instant, out: &mut Vec<Output>) {
        if self.state == State::AdminDown {
            self.set_state(now, State::Down, out);
        }
    }

    /// The one place bfd.SessionState changes.
    fn set_state(&mut self, now: Instant, to: State, out: &mut Vec<Output>) {
        let from = self.state;
        if from == to {
            return;
        }
        self.state = to;
        self.transitions += 1;
        out.push(Output::StateChanged {
            from,
            to,
            diag: self.local_diag,
        });
        if to == State::Up {
            self.up_since = Some(now);
            // From the one-second rate of a session not yet Up to the configured one: a
            // change of DesiredMinTx while Up, so a poll sequence (§6.8.3).
            self.set_intervals(to_micros(self.config.desired_min_tx), self.required_min_rx);
        } else if from == State::Up {
            // Not Up: at most one packet a second; no poll needed (§6.8.3).
            let slow = to_micros(self.config.desired_min_tx.max(SLOW_TX));
            self.desired_min_tx = slow;
            self.tx_in_use = slow;
            self.end_poll();
        }
        // Tell the peer now rather than at the next tick (state changes are what it
        // waits for); this also carries a Poll if one just started.
        self.transmit(now, false, out);
    }

    /// Changes the advertised intervals, with the §6.8.3 rules for a change while Up.
    fn set_intervals(&mut self, tx: u32, rx: u32) {
        if tx == self.desired_min_tx && rx == self.required_min_rx {
            return;
        }
        let up = self.state == State::Up;
        self.desired_min_tx = tx;
        self.required_min_rx = rx;
        if !up {
            self.tx_in_use = tx;
            self.rx_in_use = rx;
            return;
        }
        // A faster TX and a slower RX are safe at once; the other directions wait for
        // the Final, so the peer never times out on us.
        if tx < self.tx_in_use {
            self.tx_in_use = tx;
        }
        if rx > self.rx_in_use {
            self.rx_in_use = rx;
        }
        // The Poll goes out with the next packet (§6.5: repeated until the Final).
        self.polling = true;
    }

    fn end_poll(&mut self) {
        self.polling = false;
        self.tx_in_use = self.desired_min_tx;
        self.rx_in_use = self.required_min_rx;
    }

    /// Sends one packet now and schedules the next periodic one (§6.8.7). A Final is
    /// sent outside the schedule and does not move it.
    fn transmit(&mut self, now: Instant, final_: bool, out: &mut Vec<Output>) {
        out.push(Output::Transmit(ControlPacket {
            diag: self.local_diag,
            state: self.state,
            // §6.8.7: P and F are never both set.
            poll: self.polling && !final_,
            final_,
            control_plane_independent: self.control_plane_independent,
            demand: false,
            detect_mult: self.config.detect_mult,
            my_discr: self.local_discr,
            your_discr: self.remote_discr,
            desired_min_tx: self.desired_min_tx,
            required_min_rx: self.required_min_rx,
            // No Echo function: zero tells the peer to send none (§6.8.9).
            required_min_echo_rx: 0,
        }));
        if final_ {
            return;
        }
        self.next_transmit = self.transmit_interval().map(|interval| {
            // 75–100 % of the interval, 75–90 % with a multiplier of 1 (§6.8.7).
            let hi = if self.config.detect_mult == 1 {
                90
            } else {
                100
            };
            now + self.jitter.apply(interval, 75, hi)
        });
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
