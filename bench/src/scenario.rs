//! The ingest scenarios of issue 9 and the prefixes each peer announces.
//!
//! Prefixes come from ranges no lab address uses, so the FIB watcher can tell the benchmark's
//! routes from the node's own by destination alone: IPv4 /24s from 100.0.0.0 up (1M of them end
//! at 115.255.255.0/24), IPv6 /48s from fd10::/16. Peer `i` of a disjoint scenario announces
//! the block after peer `i - 1`'s; in a shared scenario every peer announces the same block.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};

/// First IPv4 prefix (100.0.0.0/24).
const V4_BASE: u32 = u32::from_be_bytes([100, 0, 0, 0]);
/// IPv4 /24s available from [`V4_BASE`] (up to 116.0.0.0, exclusive).
pub const V4_CAPACITY: u32 = 1 << 20;
/// Length of every IPv4 prefix.
pub const V4_LEN: u8 = 24;
/// First 16 bits of every IPv6 prefix (fd10::/16).
const V6_TOP: u16 = 0xfd10;
/// Length of every IPv6 prefix.
pub const V6_LEN: u8 = 48;

/// Address family of a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// IPv4 unicast over IPv4 sessions.
    Ipv4,
    /// IPv6 unicast over IPv6 sessions.
    Ipv6,
}

/// One ingest scenario.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Scenario {
    /// Short name, used in `BENCH_SCENARIOS` and the result file.
    pub name: String,
    /// Address family.
    pub family: Family,
    /// Number of sending peers (1 to 10).
    pub peers: u8,
    /// Prefixes each peer announces.
    pub prefixes_per_peer: u32,
    /// Every peer announces the same prefixes (else each its own block).
    pub shared: bool,
}

impl Scenario {
    fn new(name: &str, family: Family, peers: u8, prefixes_per_peer: u32, shared: bool) -> Self {
        Self {
            name: name.to_owned(),
            family,
            peers,
            prefixes_per_peer,
            shared,
        }
    }

    /// The suite of issue 9, in the order it runs.
    pub fn suite() -> Vec<Scenario> {
        vec![
            Self::new("v4-100k", Family::Ipv4, 1, 100_000, false),
            Self::new("v6-100k", Family::Ipv6, 1, 100_000, false),
            Self::new("v4-10x100k-same", Family::Ipv4, 10, 100_000, true),
            Self::new("v4-10x100k-disjoint", Family::Ipv4, 10, 100_000, false),
            Self::new("v4-1m", Family::Ipv4, 1, 1_000_000, false),
        ]
    }

    /// The scenario `make test` runs to prove the harness works: 1,000 IPv4 prefixes.
    pub fn smoke() -> Scenario {
        Self::new("v4-1k", Family::Ipv4, 1, 1_000, false)
    }

    /// Scenarios by name: the suite's, or `v4-<N>` / `v6-<N>` / `v4-<P>x<N>-same|disjoint`
    /// for other sizes (`k` and `m` suffixes allowed), e.g. `v4-1k`, `v4-3x10k-same`.
    pub fn by_name(name: &str) -> Option<Scenario> {
        if let Some(s) = Self::suite().into_iter().find(|s| s.name == name) {
            return Some(s);
        }
        let (fam, rest) = name.split_once('-')?;
        let family = match fam {
            "v4" => Family::Ipv4,
            "v6" => Family::Ipv6,
            _ => return None,
        };
        let (size, shared) = match rest.rsplit_once('-') {
            Some((size, "same")) => (size, true),
            Some((size, "disjoint")) => (size, false),
            None => (rest, false),
            Some(_) => return None,
        };
        let (peers, count) = match size.split_once('x') {
            Some((p, n)) => (p.parse().ok()?, parse_count(n)?),
            None => (1, parse_count(size)?),
        };
        let s = Self::new(name, family, peers, count, shared);
        s.fits().then_some(s)
    }

    /// Whether the scenario's peers and prefixes fit the address plan.
    fn fits(&self) -> bool {
        let distinct = u64::from(self.prefixes_per_peer) * u64::from(self.distinct_blocks());
        (1..=10).contains(&self.peers)
            && self.prefixes_per_peer > 0
            && (self.family == Family::Ipv6 || distinct <= u64::from(V4_CAPACITY))
    }

    /// Blocks of distinct prefixes: 1 when shared, else one per peer.
    fn distinct_blocks(&self) -> u32 {
        if self.shared {
            1
        } else {
            u32::from(self.peers)
        }
    }

    /// Routes the senders announce in all: peers × prefixes per peer (the paths a receiver's
    /// RIB holds once it has everything).
    pub fn paths(&self) -> u64 {
        u64::from(self.peers) * u64::from(self.prefixes_per_peer)
    }

    /// Distinct prefixes: the routes the kernel FIB holds once it has everything.
    pub fn networks(&self) -> u64 {
        u64::from(self.distinct_blocks()) * u64::from(self.prefixes_per_peer)
    }

    /// The prefixes peer `peer` (0-based) announces.
    pub fn prefixes(&self, peer: u8) -> Vec<IpNetwork> {
        let block = if self.shared { 0 } else { u32::from(peer) };
        let first = block * self.prefixes_per_peer;
        (first..first + self.prefixes_per_peer)
            .map(|i| prefix(self.family, i))
            .collect()
    }
}

fn parse_count(s: &str) -> Option<u32> {
    let (digits, mult) = match s.as_bytes().last()? {
        b'k' => (&s[..s.len() - 1], 1_000),
        b'm' => (&s[..s.len() - 1], 1_000_000),
        _ => (s, 1),
    };
    digits.parse::<u32>().ok()?.checked_mul(mult)
}

/// The `i`th benchmark prefix of `family`.
pub fn prefix(family: Family, i: u32) -> IpNetwork {
    match family {
        Family::Ipv4 => {
            let addr = Ipv4Addr::from(V4_BASE + (i << 8));
            IpNetwork::V4(Ipv4Network::new(addr, V4_LEN).unwrap_or_else(|_| unreachable!()))
        }
        Family::Ipv6 => {
            let [hi, lo] = [(i >> 16) as u16, (i & 0xffff) as u16];
            let addr = Ipv6Addr::new(V6_TOP, hi, lo, 0, 0, 0, 0, 0);
            IpNetwork::V6(Ipv6Network::new(addr, V6_LEN).unwrap_or_else(|_| unreachable!()))
        }
    }
}

/// Whether a route to `addr/len` is one of the benchmark's (IPv4 as a `u32`, IPv6 as a
/// `u128`, host order).
pub fn is_bench_v4(addr: u32, len: u8) -> bool {
    len == V4_LEN && (V4_BASE..V4_BASE + (V4_CAPACITY << 8)).contains(&addr)
}

/// See [`is_bench_v4`].
pub fn is_bench_v6(addr: u128, len: u8) -> bool {
    len == V6_LEN && (addr >> 112) as u16 == V6_TOP
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disjoint_peers_announce_consecutive_blocks() {
        let s = Scenario::by_name("v4-10x100k-disjoint").expect("suite scenario");
        assert_eq!(s.paths(), 1_000_000);
        assert_eq!(s.networks(), 1_000_000);
        assert_eq!(s.prefixes(0)[0].to_string(), "100.0.0.0/24");
        let last = s.prefixes(9);
        assert_eq!(
            last.last().map(ToString::to_string).as_deref(),
            Some("115.66.63.0/24")
        );
        assert_ne!(s.prefixes(1)[0], s.prefixes(0)[0]);
    }

    #[test]
    fn shared_peers_announce_the_same_block() {
        let s = Scenario::by_name("v4-10x100k-same").expect("suite scenario");
        assert_eq!(s.paths(), 1_000_000);
        assert_eq!(s.networks(), 100_000);
        assert_eq!(s.prefixes(3), s.prefixes(0));
    }

    #[test]
    fn the_largest_v4_scenario_stays_in_its_range() {
        let s = Scenario::by_name("v4-1m").expect("suite scenario");
        for p in [s.prefixes(0)[0], *s.prefixes(0).last().expect("prefixes")] {
            let IpNetwork::V4(n) = p else { panic!("v4") };
            assert!(is_bench_v4(u32::from(n.network()), n.prefix()), "{p}");
        }
        assert!(!is_bench_v4(u32::from(Ipv4Addr::new(10, 244, 1, 0)), 24));
        assert!(!is_bench_v4(u32::from(Ipv4Addr::new(116, 0, 0, 0)), 24));
    }

    #[test]
    fn v6_prefixes_are_distinct_48s_in_fd10() {
        let s = Scenario::by_name("v6-100k").expect("suite scenario");
        let p = s.prefixes(0);
        assert_eq!(p[0].to_string(), "fd10::/48");
        assert_eq!(p[65_536].to_string(), "fd10:1::/48");
        let IpNetwork::V6(n) = p[99_999] else {
            panic!("v6")
        };
        assert!(is_bench_v6(u128::from(n.network()), 48));
        assert!(!is_bench_v6(
            u128::from("fd00:10:244:1::".parse::<Ipv6Addr>().expect("addr")),
            48
        ));
    }

    #[test]
    fn names_give_other_sizes() {
        let s = Scenario::by_name("v4-3x10k-same").expect("parsed");
        assert_eq!((s.peers, s.prefixes_per_peer, s.shared), (3, 10_000, true));
        assert_eq!(Scenario::by_name("v4-1k"), Some(Scenario::smoke()));
        assert!(
            Scenario::by_name("v4-2m").is_none(),
            "beyond the IPv4 range"
        );
        assert!(
            Scenario::by_name("v4-11x1k-same").is_none(),
            "more than 10 peers"
        );
        assert!(Scenario::by_name("v5-1k").is_none());
    }
}
