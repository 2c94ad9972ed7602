//! Static external BGP peers (`--bgp-peer`): top-of-rack routers configured on the command
//! line, for clusters without the CRDs and for benchmarks. A `BGPPeer` resource with a
//! `peerAddress` becomes the same [`StaticPeer`] ([`crate::cluster_peers`]), so both take one
//! path from there on.
//!
//! A spec is `address=IP,as=N|any[,password-file=PATH][,gtsm=true][,import=P/L:MAX;P/L:MAX]`.
//! BFD is not among its keys: it is set on a BGPPeer (`bfd:`), one way to do it. It is parsed into a [`StaticPeer`], which becomes a [`PeerSpec`] of kind
//! [`PeerKind::Static`](crate::peers::PeerKind::Static), the same data the mesh produces, so
//! a resource can later produce identical specs and the speaker treats them alike.
//!
//! Import policy: only prefixes inside one of the peer's import entries (and no longer than
//! its maximum length, like a prefix-list `le`) are accepted; with no entry nothing is, the
//! safe default for a router that may send a full table. Entries are the speaker's
//! [`PrefixRule`]s, so the speaker applies them as they are.

use std::net::IpAddr;
use std::path::PathBuf;

use ipnetwork::IpNetwork;
use podroute_bgp::session::PeerAs;
use podroute_bgp::speaker::{PrefixRule, Verdict};

use crate::peers::{BfdSettings, PeerKind, PeerSet, PeerSpec};

/// A static peer as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticPeer {
    /// The router's address.
    pub address: IpAddr,
    /// The router's AS number (same as ours: iBGP; different: eBGP), or any: whatever its
    /// OPEN carries (`as=any`, BGPPeer `anyPeerAS`).
    pub remote_as: PeerAs,
    /// File the TCP-MD5 password was read from, if any.
    pub password_file: Option<PathBuf>,
    /// The TCP-MD5 password (RFC 2385).
    pub md5_password: Option<crate::peers::Password>,
    /// GTSM (RFC 5082).
    pub gtsm: bool,
    /// Import list.
    pub import: Vec<PrefixRule>,
    /// BFD (BGPPeer `bfd`; never from `--bgp-peer`).
    pub bfd: Option<BfdSettings>,
    /// Our AS on this session instead of the node's (BGPPeer `localASNumber`).
    pub local_as: Option<u32>,
    /// Hold time offered instead of the cluster's (BGPPeer `holdTimeSeconds`).
    pub hold_time: Option<u16>,
    /// Prefix limit (BGPPeer `maxPrefixes`).
    pub max_prefixes: Option<podroute_bgp::speaker::MaxPrefix>,
    /// Graceful restart when not the agent's (BGPPeer `gracefulRestart`; never from
    /// `--bgp-peer`).
    pub graceful_restart: Option<crate::peers::PeerGracefulRestart>,
}

impl StaticPeer {
    /// The session spec for this peer.
    pub fn to_spec(&self) -> PeerSpec {
        PeerSpec {
            address: self.address,
            remote_as: self.remote_as,
            kind: PeerKind::Static {
                import: self.import.clone(),
            },
            md5_password: self.md5_password.clone(),
            gtsm: self.gtsm,
            bfd: self.bfd,
            local_as: self.local_as,
            hold_time: self.hold_time,
            max_prefixes: self.max_prefixes,
            graceful_restart: self.graceful_restart,
        }
    }
}

/// Adds the static peers to `set`. A static peer replaces a mesh peer of the same address
/// (an operator's explicit setting wins).
pub fn add_static_peers(set: &mut PeerSet, peers: &[StaticPeer]) {
    for peer in peers {
        set.insert(peer.address, peer.to_spec());
    }
}

/// What is wrong with a `--bgp-peer` spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StaticPeerError {
    /// A `key=value` item without `=`.
    #[error("`{0}` is not key=value")]
    NotKeyValue(String),
    /// An unknown key.
    #[error(
        "unknown key `{0}` (use address, as, password-file, gtsm, import; BFD is set on a BGPPeer)"
    )]
    UnknownKey(String),
    /// A key given twice.
    #[error("`{0}` given twice")]
    Duplicate(&'static str),
    /// `address` or `as` missing.
    #[error("`{0}=` is required")]
    Missing(&'static str),
    /// Not an IP address, or one that cannot be a peer.
    #[error("address `{0}` is not a usable unicast IP address")]
    Address(String),
    /// Not an AS number, or a reserved one.
    #[error("as `{0}` is not a usable AS number (1..=4294967295, not 23456) nor `any`")]
    AsNumber(String),
    /// `gtsm` not a boolean.
    #[error("gtsm `{0}` is not true or false")]
    Gtsm(String),
    /// A bad import entry.
    #[error(
        "import entry `{0}` is not PREFIX/LEN or PREFIX/LEN:MAXLEN with LEN <= MAXLEN <= 32 (IPv4) or 128 (IPv6)"
    )]
    Import(String),
    /// The password file.
    #[error("password-file {path}: {reason}")]
    Password {
        /// The file.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
}

/// Parses one import entry: `10.99.0.0/16:24` (or `10.99.0.0/16`, meaning exactly /16).
pub fn parse_import_rule(text: &str) -> Result<PrefixRule, StaticPeerError> {
    let bad = || StaticPeerError::Import(text.to_owned());
    let (address, lengths) = text.split_once('/').ok_or_else(bad)?;
    let (len, max) = match lengths.split_once(':') {
        Some((len, max)) => (len, Some(max)),
        None => (lengths, None),
    };
    let len: u8 = len.parse().map_err(|_| bad())?;
    let address: IpAddr = address.parse().map_err(|_| bad())?;
    let prefix = IpNetwork::new(address, len).map_err(|_| bad())?;
    // Only the network address may be given, so the rule reads as what it accepts.
    if prefix.network() != address {
        return Err(bad());
    }
    let max_len = match max {
        Some(max) => Some(max.parse().map_err(|_| bad())?),
        None => None,
    };
    import_rule(prefix, None, max_len).ok_or_else(bad)
}

/// An import rule accepting `prefix` and its more-specifics from length `ge` to `le` (both
/// default to the prefix's own length); `None` if the prefix has host bits set or the lengths
/// do not fit (`len ≤ ge ≤ le ≤ 32 or 128`). Flags and BGPPeers both build their rules here.
pub(crate) fn import_rule(prefix: IpNetwork, ge: Option<u8>, le: Option<u8>) -> Option<PrefixRule> {
    let own = prefix.prefix();
    let limit = if prefix.is_ipv4() { 32 } else { 128 };
    let (ge, le) = (ge.unwrap_or(own), le.unwrap_or(own));
    if prefix.network() != prefix.ip() || ge < own || ge > le || le > limit {
        return None;
    }
    let mut rule = PrefixRule::up_to(prefix, le, Verdict::Accept);
    rule.min_len = ge;
    Some(rule)
}

/// Parses a spec, reading the password file it names.
pub fn parse_static_peer(text: &str) -> Result<StaticPeer, StaticPeerError> {
    let mut address = None;
    let mut remote_as = None;
    let mut password_file: Option<PathBuf> = None;
    let mut gtsm = None;
    let mut import = None;
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (key, value) = item
            .split_once('=')
            .ok_or_else(|| StaticPeerError::NotKeyValue(item.to_owned()))?;
        let value = value.trim();
        match key.trim() {
            "address" => {
                let ip: IpAddr = value
                    .parse()
                    .map_err(|_| StaticPeerError::Address(value.to_owned()))?;
                if !crate::peers::usable_address(ip) {
                    return Err(StaticPeerError::Address(value.to_owned()));
                }
                set_once(&mut address, ip, "address")?;
            }
            "as" if value == "any" => set_once(&mut remote_as, PeerAs::Any, "as")?,
            "as" => {
                let asn: u32 = value
                    .parse()
                    .map_err(|_| StaticPeerError::AsNumber(value.to_owned()))?;
                if !crate::peers::usable_as(asn) {
                    return Err(StaticPeerError::AsNumber(value.to_owned()));
                }
                set_once(&mut remote_as, PeerAs::Is(asn), "as")?;
            }
            "password-file" => set_once(&mut password_file, PathBuf::from(value), "password-file")?,
            "gtsm" => {
                let on = match value {
                    "true" | "yes" | "on" => true,
                    "false" | "no" | "off" => false,
                    _ => return Err(StaticPeerError::Gtsm(value.to_owned())),
                };
                set_once(&mut gtsm, on, "gtsm")?;
            }
            "import" => {
                let rules = value
                    .split(';')
                    .map(str::trim)
                    .filter(|e| !e.is_empty())
                    .map(parse_import_rule)
                    .collect::<Result<Vec<_>, _>>()?;
                set_once(&mut import, rules, "import")?;
            }
            other => return Err(StaticPeerError::UnknownKey(other.to_owned())),
        }
    }
    let md5_password = match &password_file {
        Some(path) => Some(read_password(path)?),
        None => None,
    };
    Ok(StaticPeer {
        address: address.ok_or(StaticPeerError::Missing("address"))?,
        remote_as: remote_as.ok_or(StaticPeerError::Missing("as"))?,
        password_file,
        md5_password,
        gtsm: gtsm.unwrap_or(false),
        import: import.unwrap_or_default(),
        bfd: None,
        local_as: None,
        hold_time: None,
        max_prefixes: None,
        graceful_restart: None,
    })
}

fn set_once<T>(slot: &mut Option<T>, value: T, key: &'static str) -> Result<(), StaticPeerError> {
    if slot.is_some() {
        return Err(StaticPeerError::Duplicate(key));
    }
    *slot = Some(value);
    Ok(())
}

/// Reads a TCP-MD5 password: 1 to 80 bytes (the kernel's key limit) after removing a trailing
/// newline.
fn read_password(path: &std::path::Path) -> Result<crate::peers::Password, StaticPeerError> {
    read_md5_password(path).map_err(|reason| StaticPeerError::Password {
        path: path.to_owned(),
        reason,
    })
}

/// Reads a TCP-MD5 password from a file (e.g. a mounted Secret), without its trailing newline;
/// the error is the reason it is unusable.
pub(crate) fn read_md5_password(path: &std::path::Path) -> Result<crate::peers::Password, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    crate::peers::Password::parse(&text).map_err(|reason| format!("the password is {reason}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNetwork {
        s.parse().expect("net")
    }

    #[test]
    fn bfd_is_no_key_of_a_flag_peer() {
        let refused = parse_static_peer("address=198.18.0.254,as=64512,bfd=on");
        assert!(
            matches!(&refused, Err(StaticPeerError::UnknownKey(k)) if k == "bfd"),
            "{refused:?}"
        );
        let message = refused.expect_err("refused").to_string();
        assert!(message.contains("BFD is set on a BGPPeer"), "{message}");
    }

    #[test]
    fn full_spec_parses() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "s3cret\n").expect("write");
        let spec = format!(
            "address=198.18.0.254,as=65001,password-file={},gtsm=true,import=10.99.0.0/16:24;fd00:99::/32:64",
            pw.display()
        );
        let peer = parse_static_peer(&spec).expect("valid");
        assert_eq!(peer.address, "198.18.0.254".parse::<IpAddr>().expect("ip"));
        assert_eq!(peer.remote_as, PeerAs::Is(65001));
        assert_eq!(
            peer.md5_password.as_ref().map(|p| p.expose()),
            Some("s3cret")
        );
        assert!(peer.gtsm);
        assert_eq!(
            peer.import,
            vec![
                PrefixRule::up_to(net("10.99.0.0/16"), 24, Verdict::Accept),
                PrefixRule::up_to(net("fd00:99::/32"), 64, Verdict::Accept),
            ]
        );
        let spec = peer.to_spec();
        assert!(matches!(spec.kind, PeerKind::Static { .. }));
    }

    #[test]
    fn minimal_spec_imports_nothing() {
        let peer = parse_static_peer("address=fd00:198:18::fe,as=64512").expect("valid");
        assert!(peer.import.is_empty());
        assert!(!peer.gtsm);
        assert_eq!(peer.md5_password, None);
        let policy = podroute_bgp::speaker::Policy::allow_only(peer.import);
        assert!(!policy.accepts(&net("10.99.1.0/24"), "198.18.0.254".parse().expect("ip")));
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        let cases = [
            ("as=64512", "address"),
            ("address=198.18.0.254", "as"),
            ("address=198.18.0.254,as=0", "as `0`"),
            ("address=198.18.0.254,as=23456", "23456"),
            ("address=0.0.0.0,as=1", "address `0.0.0.0`"),
            ("address=router,as=1", "address `router`"),
            (
                "address=198.18.0.254,as=1,colour=red",
                "unknown key `colour`",
            ),
            ("address=198.18.0.254,as=1,as=2", "`as` given twice"),
            ("address=198.18.0.254,as=1,gtsm=maybe", "gtsm"),
            (
                "address=198.18.0.254,as=1,import=10.99.0.0/16:8",
                "10.99.0.0/16:8",
            ),
            (
                "address=198.18.0.254,as=1,import=10.99.0.0/16:33",
                "import entry",
            ),
            (
                "address=198.18.0.254,as=1,import=10.99.1.0/16",
                "import entry",
            ),
            (
                "address=198.18.0.254,as=1,import=fd00::/48:129",
                "import entry",
            ),
            (
                "address=198.18.0.254,as=1,password-file=/nonexistent/pw",
                "password-file",
            ),
            ("address=198.18.0.254 as=1", "not a usable"),
            ("address=198.18.0.254,as", "key=value"),
        ];
        for (spec, needle) in cases {
            let err = parse_static_peer(spec).expect_err(spec);
            assert!(err.to_string().contains(needle), "{spec}: {err}");
        }
    }

    fn policy(rules: &[PrefixRule]) -> podroute_bgp::speaker::Policy {
        podroute_bgp::speaker::Policy::allow_only(rules.to_vec())
    }

    #[test]
    fn import_filter_checks_containment_and_length() {
        let any: IpAddr = "198.18.0.254".parse().expect("ip");
        let rules = vec![
            parse_import_rule("10.99.0.0/16:24").expect("rule"),
            parse_import_rule("fd00:99::/32:64").expect("rule"),
            parse_import_rule("192.0.2.0/24").expect("rule"),
        ];
        for accepted in [
            "10.99.0.0/16",
            "10.99.1.0/24",
            "10.99.255.0/24",
            "fd00:99:1::/64",
            "fd00:99::/32",
            "192.0.2.0/24",
        ] {
            assert!(policy(&rules).accepts(&net(accepted), any), "{accepted}");
        }
        for rejected in [
            "10.98.1.0/24",   // outside
            "10.99.1.128/25", // too long
            "10.0.0.0/8",     // covers the rule, shorter than it
            "0.0.0.0/0",      // default route
            "fd00:98:1::/64", // outside
            "fd00:99:1::/80", // too long
            "192.0.2.0/25",   // exact rule, longer
        ] {
            assert!(!policy(&rules).accepts(&net(rejected), any), "{rejected}");
        }
    }

    #[test]
    fn adding_a_static_peer_touches_no_other_session() {
        use crate::peers::PeerChanges;
        let a = parse_static_peer("address=198.18.0.254,as=64512").expect("a");
        let b = parse_static_peer("address=198.18.1.254,as=65001").expect("b");
        let mut before = PeerSet::new();
        add_static_peers(&mut before, std::slice::from_ref(&a));
        let mut after = PeerSet::new();
        add_static_peers(&mut after, &[a, b.clone()]);
        let changes = PeerChanges::between(&before, &after);
        assert_eq!(changes.added, vec![b.to_spec()]);
        assert!(changes.removed.is_empty() && changes.changed.is_empty());
    }
}
