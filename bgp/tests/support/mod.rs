//! The harness the speaker tests share: several speakers wired in memory, a fake clock
//! that jumps to the next deadline, and TCP replaced by a table of connection pairs.
#![allow(dead_code, unreachable_pub, unused_imports)]

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

pub use ipnetwork::IpNetwork;
use podroute_bgp::message::{MAX_EXTENDED_MESSAGE_LEN, frame_len};
pub use podroute_bgp::message::{NextHop, Notification, PathAttributes};
pub use podroute_bgp::session::{PeerAs, SessionConfig, State};
pub use podroute_bgp::speaker::{
    BfdMode, ConnId, GracefulRestartConfig, MaxPrefix, MaxPrefixAction, NextHops, PeerConfig,
    Policy, PrefixRule, Refusal, RouteChange, Speaker, SpeakerAction, SpeakerConfig, Verdict,
};
pub use std::net::IpAddr;

pub const AS: u32 = 64512;

pub fn ip(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 18, 0, n))
}
pub fn net(s: &str) -> IpNetwork {
    s.parse().expect("net")
}

/// What one node saw.
#[derive(Debug, Default)]
pub struct Seen {
    pub actions: Vec<SpeakerAction>,
    /// The forwarding table the speaker's route changes built.
    pub fib: BTreeMap<IpNetwork, NextHops>,
}

impl Seen {
    /// How many BGP messages of type `ty` (5: ROUTE-REFRESH) the node wrote.
    pub fn sent_messages(&self, ty: u8) -> usize {
        let mut count = 0;
        for action in &self.actions {
            let SpeakerAction::Send { bytes, .. } = action else {
                continue;
            };
            count += frames(bytes).filter(|frame| frame[18] == ty).count();
        }
        count
    }

    pub fn notifications(&self, sent: bool) -> Vec<Notification> {
        self.actions
            .iter()
            .filter_map(|a| match a {
                SpeakerAction::Notification {
                    sent: s,
                    notification,
                    ..
                } if *s == sent => Some(notification.clone()),
                _ => None,
            })
            .collect()
    }
}

pub struct Node {
    pub speaker: Speaker,
    pub seen: Seen,
    /// Route changes received since the last `take_changes`.
    pub changes: Vec<RouteChange>,
}

/// Nodes and the connections between them.
pub struct Net {
    pub now: Instant,
    pub nodes: BTreeMap<IpAddr, Node>,
    /// (node, conn) → (node, conn) at the other end.
    pub wires: HashMap<(IpAddr, ConnId), (IpAddr, ConnId)>,
    /// Nodes whose traffic is dropped (link cut: nothing arrives, nothing closes).
    pub cut: Vec<IpAddr>,
    /// Nodes whose OPENs lose the route refresh capability on the way: peers that do not
    /// support it (RFC 2918 is optional).
    pub without_route_refresh: Vec<IpAddr>,
}

impl Net {
    pub fn new() -> Self {
        Self {
            now: Instant::now(),
            nodes: BTreeMap::new(),
            wires: HashMap::new(),
            cut: Vec::new(),
            without_route_refresh: Vec::new(),
        }
    }

    pub fn add_node(&mut self, n: u8, config: SpeakerConfig) {
        let address = ip(n);
        self.nodes.insert(
            address,
            Node {
                speaker: Speaker::new(config, self.now),
                seen: Seen::default(),
                changes: Vec::new(),
            },
        );
    }

    /// Node `n` back after a restart (its kernel routes kept: Restart State in its OPENs).
    pub fn add_restarted_node(&mut self, n: u8) {
        self.add_node(
            n,
            SpeakerConfig {
                restarted: true,
                ..SpeakerConfig::default()
            },
        );
    }

    pub fn node(&mut self, n: u8) -> &mut Node {
        self.nodes.get_mut(&ip(n)).expect("node")
    }

    /// Kills a node like kill -9: its connections close without a NOTIFICATION.
    pub fn kill(&mut self, n: u8) {
        let address = ip(n);
        self.nodes.remove(&address);
        let ends: Vec<((IpAddr, ConnId), (IpAddr, ConnId))> = self
            .wires
            .iter()
            .filter(|(k, _)| k.0 == address)
            .map(|(k, v)| (*k, *v))
            .collect();
        for (mine, theirs) in ends {
            self.wires.remove(&mine);
            self.wires.remove(&theirs);
            if let Some(node) = self.nodes.get_mut(&theirs.0) {
                node.speaker.closed(self.now, theirs.1);
            }
        }
    }

    /// Runs every node until nothing more happens at this instant.
    pub fn settle(&mut self) {
        for _ in 0..10_000 {
            let mut progressed = false;
            let addresses: Vec<IpAddr> = self.nodes.keys().copied().collect();
            for address in addresses {
                let Some(node) = self.nodes.get_mut(&address) else {
                    continue;
                };
                let changes = node.speaker.take_route_changes();
                for c in &changes {
                    if c.next_hops == NextHops::None {
                        node.seen.fib.remove(&c.prefix);
                    } else {
                        node.seen.fib.insert(c.prefix, c.next_hops.clone());
                    }
                }
                node.changes.extend(changes);
                let Some(action) = node.speaker.poll_action() else {
                    continue;
                };
                progressed = true;
                node.seen.actions.push(action.clone());
                self.carry_out(address, action);
            }
            if !progressed {
                return;
            }
        }
        panic!("the speakers never settled");
    }

    pub fn carry_out(&mut self, from: IpAddr, action: SpeakerAction) {
        let now = self.now;
        match action {
            SpeakerAction::Connect { peer, conn } => {
                let reachable = !self.cut.contains(&from) && !self.cut.contains(&peer);
                let accepted = match self.nodes.get_mut(&peer) {
                    Some(other) if reachable => other.speaker.incoming(now, from).ok(),
                    _ => None,
                };
                let me = &mut self.nodes.get_mut(&from).expect("node").speaker;
                match accepted {
                    Some(theirs) => {
                        self.wires.insert((from, conn), (peer, theirs));
                        self.wires.insert((peer, theirs), (from, conn));
                        me.connected(now, conn);
                    }
                    None => me.closed(now, conn),
                }
            }
            SpeakerAction::Send { conn, bytes } => {
                if self.cut.contains(&from) {
                    return;
                }
                let bytes = if self.without_route_refresh.contains(&from) {
                    without_route_refresh(&bytes)
                } else {
                    bytes.to_vec()
                };
                if let Some(&(peer, theirs)) = self.wires.get(&(from, conn))
                    && !self.cut.contains(&peer)
                    && let Some(other) = self.nodes.get_mut(&peer)
                {
                    other.speaker.bytes(now, theirs, &bytes);
                }
            }
            SpeakerAction::Close { conn } => {
                if let Some((peer, theirs)) = self.wires.remove(&(from, conn)) {
                    self.wires.remove(&(peer, theirs));
                    if let Some(other) = self.nodes.get_mut(&peer) {
                        other.speaker.closed(now, theirs);
                    }
                }
            }
            _ => {}
        }
    }

    /// Jumps the clock to the next deadline (at most `limit` ahead) and fires it.
    pub fn step(&mut self, limit: Duration) {
        let until = self.now + limit;
        let next = self
            .nodes
            .values()
            .filter_map(|n| n.speaker.poll_timeout())
            .min()
            .unwrap_or(until)
            .min(until);
        self.now = next.max(self.now);
        let now = self.now;
        for node in self.nodes.values_mut() {
            node.speaker.handle_timeout(now);
        }
        self.settle();
    }

    /// Runs the clock forward by `d`, firing every deadline on the way.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        self.settle();
        while self.now < end {
            self.step(end - self.now);
        }
    }

    pub fn state(&self, n: u8, peer: u8) -> Option<State> {
        self.nodes[&ip(n)]
            .speaker
            .peers()
            .find(|p| p.address == ip(peer))
            .map(|p| p.state)
    }

    pub fn fib(&self, n: u8) -> &BTreeMap<IpNetwork, NextHops> {
        &self.nodes[&ip(n)].seen.fib
    }
}

pub fn session(local: u8, peer_as: u32) -> SessionConfig {
    let IpAddr::V4(id) = ip(local) else {
        unreachable!()
    };
    let mut s = SessionConfig::new(AS, id, peer_as);
    s.hold_time = 9;
    s.connect_retry = Duration::from_secs(1);
    s.connect_retry_max = Duration::from_secs(8);
    s
}

pub fn gr() -> Option<GracefulRestartConfig> {
    Some(GracefulRestartConfig {
        restart_time: Duration::from_secs(120),
        stale_routes_time: Duration::from_secs(300),
    })
}

/// `local`'s view of `peer`: lower address connects (as the agent's mesh does), import and
/// export everything, graceful restart on.
pub fn peer_config(local: u8, peer: u8) -> PeerConfig {
    let mut s = session(local, AS);
    s.passive = local > peer;
    PeerConfig {
        address: ip(peer),
        session: s,
        import: Policy::accept_all(),
        export: Policy::accept_all(),
        max_prefixes: None,
        graceful_restart: gr(),
        wait_for_end_of_rib: true,
        route_reflector_client: false,
        takes_reflected: true,
        bfd: BfdMode::Off,
    }
}

pub fn attrs(next_hop: u8) -> PathAttributes {
    let IpAddr::V4(nh) = ip(next_hop) else {
        unreachable!()
    };
    PathAttributes {
        next_hop: Some(NextHop::V4(nh)),
        ..PathAttributes::default()
    }
}

pub fn originate(net: &mut Net, n: u8, prefixes: &[&str], local_pref: Option<u32>) {
    let routes = prefixes
        .iter()
        .map(|p| {
            let mut a = attrs(n);
            a.local_pref = local_pref;
            (self::net(p), a)
        })
        .collect();
    let now = net.now;
    net.node(n).speaker.set_originated(now, routes);
}

/// The BGP messages in `bytes`, one write of a speaker (whole messages); stops at anything
/// that does not frame.
fn frames(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = bytes;
    std::iter::from_fn(move || {
        let len = frame_len(rest, MAX_EXTENDED_MESSAGE_LEN).ok()??;
        let (frame, tail) = rest.split_at(len);
        rest = tail;
        Some(frame)
    })
}

/// `bytes` (whole BGP messages) with the route refresh capability taken out of any OPEN.
fn without_route_refresh(bytes: &[u8]) -> Vec<u8> {
    use podroute_bgp::message::{Capability, CodecContext, Message};
    let ctx = CodecContext::default();
    let mut out = Vec::new();
    for frame in frames(bytes) {
        // Type 1: OPEN; nothing else is decoded (an UPDATE would need the session's context).
        match (frame[18] == 1).then(|| Message::decode(frame, &ctx)) {
            Some(Ok(Message::Open(mut open))) => {
                open.capabilities.retain(|c| *c != Capability::RouteRefresh);
                let mut buf = bytes::BytesMut::new();
                Message::Open(open).encode(&mut buf, &ctx);
                out.extend_from_slice(&buf);
            }
            _ => out.extend_from_slice(frame),
        }
    }
    out
}

/// Nodes `ns` peered in a full mesh.
pub fn mesh(ns: &[u8]) -> Net {
    let mut net = Net::new();
    for &n in ns {
        net.add_node(n, SpeakerConfig::default());
    }
    let now = net.now;
    for &a in ns {
        for &b in ns {
            if a != b {
                net.node(a).speaker.add_peer(now, peer_config(a, b));
            }
        }
    }
    net
}

pub fn one(n: u8) -> NextHops {
    NextHops::One(ip(n))
}

/// `net` under a name tests can use next to a local `net`.
pub fn net_(s: &str) -> IpNetwork {
    net(s)
}
