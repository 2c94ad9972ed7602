//! Crafted bytes: BGP messages built field by field, so a case can get any of them wrong.
//!
//! [`Env`] knows the session a case runs on (the hostile peer's role, AS, next hops, the
//! prefixes it announces, 2- or 4-octet AS numbers) and builds the well-formed UPDATE a case
//! then breaks: [`Env::announce`] hands the attribute list to the case to change.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::IpNetwork;

/// Attribute flags (RFC 4271 §4.3).
pub const OPTIONAL: u8 = 0x80;
/// Transitive.
pub const TRANSITIVE: u8 = 0x40;
/// Extended length.
pub const EXTENDED: u8 = 0x10;

/// The hostile peer's role towards the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Another node of the mesh (iBGP, may announce only its Node's pod CIDRs).
    Mesh,
    /// A top-of-rack router configured with `--bgp-peer` (eBGP in the tests).
    Router,
}

impl Role {
    /// `mesh` or `router`.
    pub fn label(self) -> &'static str {
        match self {
            Role::Mesh => "mesh",
            Role::Router => "router",
        }
    }
}

/// Which family a case announces its subject prefix in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// IPv4 in the classic NLRI field.
    V4,
    /// IPv6 in MP_REACH_NLRI.
    V6,
}

/// What a case's bytes are built from.
#[derive(Debug, Clone)]
pub struct Env {
    /// The hostile peer's role.
    pub role: Role,
    /// Whether the session negotiated 4-octet AS numbers.
    pub four_octet: bool,
    /// The hostile peer's AS.
    pub asn: u32,
    /// The hostile peer's IPv4 next hop.
    pub next_hop_v4: Ipv4Addr,
    /// The hostile peer's IPv6 next hop.
    pub next_hop_v6: Ipv6Addr,
    /// The IPv4 prefix a case announces.
    pub subject_v4: IpNetwork,
    /// The IPv6 prefix a case announces.
    pub subject_v6: IpNetwork,
    /// The agent's BGP identifier.
    pub receiver_id: Ipv4Addr,
}

/// A path attribute list, in order, that a case edits.
#[derive(Debug, Clone, Default)]
pub struct Attrs(Vec<(u8, Vec<u8>)>);

impl Attrs {
    /// Replaces the attribute of `ty` (in place) or appends `bytes` when there is none.
    pub fn set(&mut self, bytes: Vec<u8>) -> &mut Self {
        let ty = bytes[1];
        match self.0.iter_mut().find(|(t, _)| *t == ty) {
            Some(slot) => slot.1 = bytes,
            None => self.0.push((ty, bytes)),
        }
        self
    }

    /// Appends `bytes` (a second attribute of a type already there is a duplicate).
    pub fn push(&mut self, bytes: Vec<u8>) -> &mut Self {
        self.0.push((bytes[1], bytes));
        self
    }

    /// Removes every attribute of `ty`.
    pub fn remove(&mut self, ty: u8) -> &mut Self {
        self.0.retain(|(t, _)| *t != ty);
        self
    }

    /// The attribute list as it goes on the wire.
    pub fn bytes(&self) -> Vec<u8> {
        self.0.iter().flat_map(|(_, b)| b.iter().copied()).collect()
    }
}

/// One attribute with a 1-octet length (the length is truncated if `value` is longer:
/// callers wanting more use [`attr_ext`]).
pub fn attr(flags: u8, ty: u8, value: &[u8]) -> Vec<u8> {
    let mut v = vec![flags & !EXTENDED, ty, value.len() as u8];
    v.extend_from_slice(value);
    v
}

/// One attribute with the 2-octet length.
pub fn attr_ext(flags: u8, ty: u8, value: &[u8]) -> Vec<u8> {
    let mut v = vec![flags | EXTENDED, ty];
    v.extend_from_slice(&(value.len() as u16).to_be_bytes());
    v.extend_from_slice(value);
    v
}

/// An attribute whose length field says `len`, whatever follows.
pub fn attr_claiming(flags: u8, ty: u8, len: u8, value: &[u8]) -> Vec<u8> {
    let mut v = vec![flags & !EXTENDED, ty, len];
    v.extend_from_slice(value);
    v
}

/// A prefix as NLRI encodes it: length octet, then just enough octets.
pub fn prefix(p: &IpNetwork) -> Vec<u8> {
    let len = p.prefix();
    let octets: Vec<u8> = match p.ip() {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    let mut v = vec![len];
    v.extend_from_slice(&octets[..usize::from(len).div_ceil(8)]);
    v
}

/// A whole message: marker, length, type, body.
pub fn message(ty: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![0xff; 16];
    m.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
    m.push(ty);
    m.extend_from_slice(body);
    m
}

/// An UPDATE body from its three fields.
pub fn update_body(withdrawn: &[u8], attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
    let mut b = (withdrawn.len() as u16).to_be_bytes().to_vec();
    b.extend_from_slice(withdrawn);
    b.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    b.extend_from_slice(attrs);
    b.extend_from_slice(nlri);
    b
}

/// An UPDATE message from its three fields.
pub fn update(withdrawn: &[u8], attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
    message(2, &update_body(withdrawn, attrs, nlri))
}

/// The value of MP_REACH_NLRI (RFC 4760 §3).
pub fn mp_reach_value(afi: u16, safi: u8, next_hop: &[u8], nlri: &[u8]) -> Vec<u8> {
    let mut v = afi.to_be_bytes().to_vec();
    v.push(safi);
    v.push(next_hop.len() as u8);
    v.extend_from_slice(next_hop);
    v.push(0);
    v.extend_from_slice(nlri);
    v
}

/// The value of MP_UNREACH_NLRI (RFC 4760 §4).
pub fn mp_unreach_value(afi: u16, safi: u8, withdrawn: &[u8]) -> Vec<u8> {
    let mut v = afi.to_be_bytes().to_vec();
    v.push(safi);
    v.extend_from_slice(withdrawn);
    v
}

impl Env {
    /// True when the session is iBGP (the mesh).
    pub fn ibgp(&self) -> bool {
        self.role == Role::Mesh
    }

    /// An AS_PATH (or AS4_PATH when `four` is forced) value of one AS_SEQUENCE.
    pub fn path_value(&self, asns: &[u32], four: bool) -> Vec<u8> {
        if asns.is_empty() {
            return Vec::new();
        }
        let mut v = vec![2, asns.len() as u8];
        for &a in asns {
            if four {
                v.extend_from_slice(&a.to_be_bytes());
            } else {
                v.extend_from_slice(&u16::try_from(a).unwrap_or(23456).to_be_bytes());
            }
        }
        v
    }

    /// The well-formed AS_PATH: empty inside the AS, the peer's AS on eBGP.
    pub fn as_path(&self) -> Vec<u8> {
        let asns: &[u32] = if self.ibgp() { &[] } else { &[self.asn] };
        attr(TRANSITIVE, 2, &self.path_value(asns, self.four_octet))
    }

    /// The well-formed IPv6 MP_REACH_NLRI announcing the IPv6 subject.
    pub fn mp_reach_v6(&self) -> Vec<u8> {
        attr_ext(
            OPTIONAL,
            14,
            &mp_reach_value(2, 1, &self.next_hop_v6.octets(), &prefix(&self.subject_v6)),
        )
    }

    /// The well-formed attributes for `subject`: MP_REACH_NLRI first for IPv6, then
    /// ORIGIN, AS_PATH, NEXT_HOP (IPv4), LOCAL_PREF (iBGP).
    pub fn base(&self, subject: Subject) -> Attrs {
        let mut a = Attrs::default();
        if subject == Subject::V6 {
            a.push(self.mp_reach_v6());
        }
        a.push(attr(TRANSITIVE, 1, &[0]));
        a.push(self.as_path());
        if subject == Subject::V4 {
            a.push(attr(TRANSITIVE, 3, &self.next_hop_v4.octets()));
        }
        if self.ibgp() {
            a.push(attr(TRANSITIVE, 5, &100u32.to_be_bytes()));
        }
        a
    }

    /// The UPDATE announcing `subject` with the attributes `edit` leaves.
    pub fn announce(&self, subject: Subject, edit: impl FnOnce(&mut Attrs, &Env)) -> Vec<u8> {
        let mut a = self.base(subject);
        edit(&mut a, self);
        update(&[], &a.bytes(), &self.nlri(subject))
    }

    /// The classic NLRI field for `subject` (empty for IPv6).
    pub fn nlri(&self, subject: Subject) -> Vec<u8> {
        match subject {
            Subject::V4 => prefix(&self.subject_v4),
            Subject::V6 => Vec::new(),
        }
    }

    /// A well-formed announcement of `prefix` (either family) with this peer's next hop.
    pub fn announce_prefix(&self, p: &IpNetwork) -> Vec<u8> {
        let env = Env {
            subject_v4: if p.is_ipv4() { *p } else { self.subject_v4 },
            subject_v6: if p.is_ipv6() { *p } else { self.subject_v6 },
            ..self.clone()
        };
        let subject = if p.is_ipv4() {
            Subject::V4
        } else {
            Subject::V6
        };
        env.announce(subject, |_, _| {})
    }

    /// A well-formed withdrawal of `prefixes` (IPv4 in Withdrawn Routes, IPv6 in
    /// MP_UNREACH_NLRI).
    pub fn withdraw(&self, prefixes: &[IpNetwork]) -> Vec<u8> {
        let v4: Vec<u8> = prefixes
            .iter()
            .filter(|p| p.is_ipv4())
            .flat_map(prefix)
            .collect();
        let v6: Vec<u8> = prefixes
            .iter()
            .filter(|p| p.is_ipv6())
            .flat_map(prefix)
            .collect();
        let attrs = if v6.is_empty() {
            Vec::new()
        } else {
            attr(OPTIONAL, 15, &mp_unreach_value(2, 1, &v6))
        };
        update(&v4, &attrs, &[])
    }
}
