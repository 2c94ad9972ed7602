//! Import and export policy as data: ordered prefix rules with length ranges and next-hop
//! conditions, first match wins, and a default verdict.
//!
//! The agent builds these from its configuration and from the cluster view (the mesh rule
//! "a node may announce only its own pod CIDRs, with its node IP as next hop" is one
//! [`PrefixRule`] per CIDR with [`NextHopMatch::Exactly`], and for routes a route reflector
//! passes on also with the node's router ID as the route's originator). A policy is pure: the speaker asks
//! it about one route at a time and keeps no state for it.

use std::net::{IpAddr, Ipv4Addr};

use ipnetwork::IpNetwork;

/// What a policy decides for one route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Take the route.
    Accept,
    /// Refuse it (counted, not stored).
    Reject,
}

/// A condition on a route's next hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NextHopMatch {
    /// Any next hop.
    Any,
    /// Exactly this address.
    Exactly(IpAddr),
}

impl NextHopMatch {
    fn matches(&self, next_hop: IpAddr) -> bool {
        match self {
            Self::Any => true,
            Self::Exactly(want) => *want == next_hop,
        }
    }
}

/// One prefix-list entry: `prefix` with a length between `min_len` and `max_len` (the usual
/// `ge`/`le`; both equal to the prefix's length for an exact match).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PrefixRule {
    /// The covering prefix.
    pub prefix: IpNetwork,
    /// Shortest length matched (`ge`); at least the prefix's own length.
    pub min_len: u8,
    /// Longest length matched (`le`).
    pub max_len: u8,
    /// Condition on the next hop.
    pub next_hop: NextHopMatch,
    /// Condition on the route's originator: its ORIGINATOR_ID (RFC 4456 §8), else the BGP
    /// identifier of the peer that sent it. `None`: any originator.
    pub originator: Option<Ipv4Addr>,
    /// What a match means.
    pub verdict: Verdict,
}

impl PrefixRule {
    /// Exactly `prefix`, with any next hop.
    pub fn exact(prefix: IpNetwork, verdict: Verdict) -> Self {
        Self {
            prefix,
            min_len: prefix.prefix(),
            max_len: prefix.prefix(),
            next_hop: NextHopMatch::Any,
            originator: None,
            verdict,
        }
    }

    /// `prefix` and everything inside it up to `max_len` bits.
    pub fn up_to(prefix: IpNetwork, max_len: u8, verdict: Verdict) -> Self {
        Self {
            prefix,
            min_len: prefix.prefix(),
            max_len,
            next_hop: NextHopMatch::Any,
            originator: None,
            verdict,
        }
    }

    /// The same rule, matching only routes with this next hop.
    pub fn with_next_hop(mut self, next_hop: IpAddr) -> Self {
        self.next_hop = NextHopMatch::Exactly(next_hop);
        self
    }

    /// The same rule, matching only routes that `originator` originated.
    pub fn with_originator(mut self, originator: Ipv4Addr) -> Self {
        self.originator = Some(originator);
        self
    }

    /// True if the rule applies to `candidate` via `next_hop`, originated by `originator`
    /// (`None`: not known, which fails a rule with an originator condition).
    pub fn matches(
        &self,
        candidate: &IpNetwork,
        next_hop: IpAddr,
        originator: Option<Ipv4Addr>,
    ) -> bool {
        let len = candidate.prefix();
        len >= self.min_len.max(self.prefix.prefix())
            && len <= self.max_len
            && covers(&self.prefix, candidate)
            && self.next_hop.matches(next_hop)
            && self.originator.is_none_or(|want| originator == Some(want))
    }
}

/// True if `outer` contains `inner` (same family, `inner` at least as long).
fn covers(outer: &IpNetwork, inner: &IpNetwork) -> bool {
    match (outer, inner) {
        (IpNetwork::V4(o), IpNetwork::V4(i)) => i.prefix() >= o.prefix() && o.contains(i.ip()),
        (IpNetwork::V6(o), IpNetwork::V6(i)) => i.prefix() >= o.prefix() && o.contains(i.ip()),
        _ => false,
    }
}

/// An ordered rule list: the first matching rule decides, else `default`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Policy {
    /// Rules, tried in order.
    pub rules: Vec<PrefixRule>,
    /// The verdict when no rule matches.
    pub default: Verdict,
}

impl Default for Policy {
    /// Nothing passes: the safe default for a peer nobody wrote a policy for.
    fn default() -> Self {
        Self::reject_all()
    }
}

impl Policy {
    /// Refuses everything.
    pub fn reject_all() -> Self {
        Self {
            rules: Vec::new(),
            default: Verdict::Reject,
        }
    }

    /// Accepts everything.
    pub fn accept_all() -> Self {
        Self {
            rules: Vec::new(),
            default: Verdict::Accept,
        }
    }

    /// Accepts what one of `rules` matches (their verdicts should be `Accept`), refuses the
    /// rest.
    pub fn allow_only(rules: Vec<PrefixRule>) -> Self {
        Self {
            rules,
            default: Verdict::Reject,
        }
    }

    /// The verdict for `prefix` via `next_hop`, originated by `originator` (if known).
    pub fn evaluate(
        &self,
        prefix: &IpNetwork,
        next_hop: IpAddr,
        originator: Option<Ipv4Addr>,
    ) -> Verdict {
        self.rules
            .iter()
            .find(|r| r.matches(prefix, next_hop, originator))
            .map_or(self.default, |r| r.verdict)
    }

    /// Shorthand: the route passes, its originator not known (export policy, tests).
    pub fn accepts(&self, prefix: &IpNetwork, next_hop: IpAddr) -> bool {
        self.evaluate(prefix, next_hop, None) == Verdict::Accept
    }

    /// Shorthand: the route from `originator` passes.
    pub fn accepts_from(
        &self,
        prefix: &IpNetwork,
        next_hop: IpAddr,
        originator: Option<Ipv4Addr>,
    ) -> bool {
        self.evaluate(prefix, next_hop, originator) == Verdict::Accept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNetwork {
        s.parse().expect("net")
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn ge_le_ranges_and_family() {
        let rule = PrefixRule {
            min_len: 20,
            ..PrefixRule::up_to(net("10.99.0.0/16"), 24, Verdict::Accept)
        };
        let any = ip("198.18.0.254");
        assert!(rule.matches(&net("10.99.1.0/24"), any, None));
        assert!(rule.matches(&net("10.99.16.0/20"), any, None));
        assert!(
            !rule.matches(&net("10.99.0.0/16"), any, None),
            "shorter than ge"
        );
        assert!(
            !rule.matches(&net("10.99.1.128/25"), any, None),
            "longer than le"
        );
        assert!(!rule.matches(&net("10.98.1.0/24"), any, None), "outside");
        assert!(
            !rule.matches(&net("fd00:99::/32"), any, None),
            "other family"
        );
    }

    #[test]
    fn first_match_wins_then_default() {
        let policy = Policy {
            rules: vec![
                PrefixRule::exact(net("10.99.7.0/24"), Verdict::Reject),
                PrefixRule::up_to(net("10.99.0.0/16"), 24, Verdict::Accept),
            ],
            default: Verdict::Reject,
        };
        let nh = ip("198.18.0.254");
        assert!(!policy.accepts(&net("10.99.7.0/24"), nh));
        assert!(policy.accepts(&net("10.99.8.0/24"), nh));
        assert!(!policy.accepts(&net("192.0.2.0/24"), nh));
        assert!(!Policy::default().accepts(&net("10.99.8.0/24"), nh));
        assert!(Policy::accept_all().accepts(&net("192.0.2.0/24"), nh));
    }

    #[test]
    fn next_hop_condition_is_part_of_the_match() {
        let node2 = ip("198.18.0.2");
        let policy = Policy::allow_only(vec![
            PrefixRule::exact(net("10.244.2.0/24"), Verdict::Accept).with_next_hop(node2),
        ]);
        assert!(policy.accepts(&net("10.244.2.0/24"), node2));
        assert!(!policy.accepts(&net("10.244.2.0/24"), ip("198.18.0.3")));
        assert!(!policy.accepts(&net("10.244.2.0/25"), node2), "exact only");
    }

    #[test]
    fn an_originator_condition_needs_that_originator() {
        let node2 = ip("198.18.0.2");
        let id2 = Ipv4Addr::new(198, 18, 0, 2);
        let policy = Policy::allow_only(vec![
            PrefixRule::exact(net("10.244.2.0/24"), Verdict::Accept)
                .with_next_hop(node2)
                .with_originator(id2),
        ]);
        let cidr = net("10.244.2.0/24");
        assert!(policy.accepts_from(&cidr, node2, Some(id2)));
        assert!(!policy.accepts_from(&cidr, node2, Some(Ipv4Addr::new(198, 18, 0, 3))));
        assert!(
            !policy.accepts_from(&cidr, node2, None),
            "unknown originator"
        );
    }
}
