//! Adapter from `podroute_bgp::session::Session` (the sans-IO core) to the driver's
//! [`SessionCore`].
//!
//! The driver owns connection set-up (who connects, backoff, collisions), so the core session
//! is configured passive and gets one connection for its whole life: a new connection means a
//! new session. What the core reports is mapped to [`SessionEvent`]s; notifications and
//! UPDATE faults are logged here.

use std::net::IpAddr;
use std::time::Instant;

use ipnetwork::IpNetwork;
use podroute_bgp::message::{Family, NextHop, PathAttributes};
use podroute_bgp::session::{Action, AdminEvent, Session, SessionConfig, State};

use super::session::{LocalSettings, SessionCore, SessionEvent};
use crate::peers::PeerSpec;

/// A `podroute_bgp` session driven over one connection.
#[derive(Debug)]
pub struct CoreSession {
    inner: Session,
}

impl CoreSession {
    /// A session with `spec` from `local`.
    pub fn new(spec: &PeerSpec, local: LocalSettings) -> Self {
        let mut config = SessionConfig::new(local.as_number, local.router_id, spec.remote_as);
        config.hold_time = local.hold_time;
        config.passive = true;
        Self {
            inner: Session::new(config),
        }
    }
}

/// The next hop of a received route, as an address.
fn next_hop(attributes: &PathAttributes) -> Option<IpAddr> {
    match attributes.next_hop? {
        NextHop::V4(a) => Some(IpAddr::V4(a)),
        NextHop::V6 { global, .. } => Some(IpAddr::V6(global)),
    }
}

/// What we advertise for an own pod CIDR: ORIGIN IGP, the node IP as next hop (LOCAL_PREF
/// and AS_PATH are filled by the core for iBGP/eBGP, RFC 4271 §5.1).
fn own_route_attributes(next_hop: IpAddr) -> PathAttributes {
    let next_hop = match next_hop {
        IpAddr::V4(a) => NextHop::V4(a),
        IpAddr::V6(global) => NextHop::V6 {
            global,
            link_local: None,
        },
    };
    PathAttributes {
        next_hop: Some(next_hop),
        ..PathAttributes::default()
    }
}

impl SessionCore for CoreSession {
    fn connected(&mut self, now: Instant) {
        self.inner.handle(now, AdminEvent::Start);
        self.inner.handle_connected(now);
    }

    fn handle_bytes(&mut self, now: Instant, bytes: &[u8]) {
        self.inner.handle_bytes(now, bytes);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.inner.handle_timeout(now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.inner.poll_timeout()
    }

    fn poll_event(&mut self) -> Option<SessionEvent> {
        loop {
            let event = match self.inner.poll_action()? {
                Action::Send(bytes) => SessionEvent::Transmit(bytes.to_vec()),
                Action::Disconnect => {
                    SessionEvent::Closed(format!("session ended in state {:?}", self.inner.state()))
                }
                Action::StateChanged {
                    to: State::Established,
                    ..
                } => {
                    let families = self
                        .inner
                        .negotiated()
                        .map(|n| n.families.as_slice())
                        .unwrap_or_default();
                    SessionEvent::Established {
                        ipv4: families.contains(&Family::IPV4_UNICAST),
                        ipv6: families.contains(&Family::IPV6_UNICAST),
                    }
                }
                Action::Routes(routes) => {
                    let via = routes.attributes.as_deref().and_then(next_hop);
                    let announced = match via {
                        Some(via) => routes.announced.into_iter().map(|p| (p, via)).collect(),
                        None => Vec::new(),
                    };
                    SessionEvent::Update {
                        announced,
                        withdrawn: routes.withdrawn,
                    }
                }
                Action::EndOfRib(family) => SessionEvent::EndOfRib {
                    ipv6: family == Family::IPV6_UNICAST,
                },
                Action::NotificationSent(n) => {
                    tracing::info!(notification = ?n, "sent NOTIFICATION");
                    continue;
                }
                Action::NotificationReceived(n) => {
                    tracing::info!(notification = ?n, "peer sent NOTIFICATION");
                    continue;
                }
                Action::UpdateFault(fault) => {
                    tracing::warn!(?fault, "UPDATE error handled without reset (RFC 7606)");
                    continue;
                }
                Action::StateChanged { from, to } => {
                    tracing::debug!(?from, ?to, "session state");
                    continue;
                }
                // The driver makes connections; a passive session never asks.
                Action::Connect => continue,
            };
            return Some(event);
        }
    }

    fn advertise(&mut self, now: Instant, routes: &[(IpNetwork, IpAddr)]) {
        let routes = routes
            .iter()
            .map(|(prefix, via)| (*prefix, own_route_attributes(*via)));
        self.inner.replace_routes(now, routes);
    }

    fn stop(&mut self, now: Instant) {
        self.inner.handle(now, AdminEvent::Stop);
    }

    fn remote_id(&self) -> Option<std::net::Ipv4Addr> {
        self.inner.remote_id()
    }

    fn close_collision(&mut self, now: Instant) {
        self.inner.close_collision(now);
    }
}
