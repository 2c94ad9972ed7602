//! Adj-RIB-Out (RFC 4271 §3.2): the routes we advertise to one peer, and the packing of
//! changes into as few UPDATEs as fit (prefixes sharing attributes share a message).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use ipnetwork::IpNetwork;

use crate::message::nlri_len;
use crate::message::{
    CodecContext, Family, HEADER_LEN, Message, MpReach, MpUnreach, NextHop, PathAttributes, Update,
};

/// Routes advertised to a peer and which of them changed since the last flush.
#[derive(Debug, Default)]
pub(crate) struct AdjRibOut {
    routes: HashMap<IpNetwork, Arc<PathAttributes>>,
    /// How many of `routes` are IPv4 (the rest are IPv6): read on every status refresh.
    ipv4: usize,
    dirty: HashSet<IpNetwork>,
}

/// Result of a flush: encoded UPDATEs and how many prefixes each way.
#[derive(Debug, Default)]
pub(crate) struct Flushed {
    pub(crate) messages: Vec<Bytes>,
    pub(crate) announced: u64,
    pub(crate) withdrawn: u64,
}

impl AdjRibOut {
    pub(crate) fn insert(&mut self, prefix: IpNetwork, attrs: Arc<PathAttributes>) {
        let changed = self.routes.get(&prefix).is_none_or(|old| **old != *attrs);
        if changed {
            if self.routes.insert(prefix, attrs).is_none() && prefix.is_ipv4() {
                self.ipv4 += 1;
            }
            self.dirty.insert(prefix);
        }
    }

    pub(crate) fn remove(&mut self, prefix: &IpNetwork) {
        if self.routes.remove(prefix).is_some() {
            if prefix.is_ipv4() {
                self.ipv4 -= 1;
            }
            self.dirty.insert(*prefix);
        }
    }

    pub(crate) fn prefixes(&self) -> Vec<IpNetwork> {
        self.routes.keys().copied().collect()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&IpNetwork, &Arc<PathAttributes>)> {
        self.routes.iter()
    }

    pub(crate) fn len(&self) -> usize {
        self.routes.len()
    }

    /// Routes per family: IPv4, IPv6.
    pub(crate) fn len_by_family(&self) -> (usize, usize) {
        (self.ipv4, self.routes.len() - self.ipv4)
    }

    /// Marks every route of `family` (or all) to be sent again: a new session's initial
    /// sync, or a ROUTE-REFRESH request (RFC 2918 §4).
    pub(crate) fn mark_all(&mut self, family: Option<Family>) {
        for p in self.routes.keys() {
            if family.is_none_or(|f| f == Family::of(p)) {
                self.dirty.insert(*p);
            }
        }
    }

    /// Forgets pending changes (the session went down; the next one re-sends everything).
    pub(crate) fn clear_dirty(&mut self) {
        self.dirty.clear();
    }

    /// Encodes pending changes for `families` into UPDATEs no larger than the context
    /// allows. Withdrawals go first, then announcements grouped by shared attributes.
    pub(crate) fn flush(&mut self, ctx: &CodecContext, families: &[Family]) -> Flushed {
        let mut out = Flushed::default();
        let mut withdraw_v4 = Vec::new();
        let mut withdraw_v6 = Vec::new();
        // Group by attribute identity (the Arc): the caller shares one Arc per attribute set.
        let mut groups: HashMap<*const PathAttributes, (Arc<PathAttributes>, Vec<IpNetwork>)> =
            HashMap::new();
        for p in self.dirty.drain() {
            if !families.contains(&Family::of(&p)) {
                continue;
            }
            match self.routes.get(&p) {
                Some(a) => {
                    groups
                        .entry(Arc::as_ptr(a))
                        .or_insert_with(|| (a.clone(), Vec::new()))
                        .1
                        .push(p);
                }
                None if p.is_ipv4() => withdraw_v4.push(p),
                None => withdraw_v6.push(p),
            }
        }
        let max = ctx.max_message_len();
        out.withdrawn = (withdraw_v4.len() + withdraw_v6.len()) as u64;
        pack(&mut out.messages, ctx, max, &withdraw_v4, |chunk| Update {
            withdrawn: chunk.to_vec(),
            ..Update::default()
        });
        pack(&mut out.messages, ctx, max, &withdraw_v6, |chunk| Update {
            mp_unreach: Some(MpUnreach {
                family: Family::IPV6_UNICAST,
                withdrawn: chunk.to_vec(),
            }),
            ..Update::default()
        });
        // Sets stored by different calls may be equal without being the same Arc: merge
        // them by value (one hash per group, not per prefix) so they share UPDATEs.
        let mut by_value: HashMap<Arc<PathAttributes>, Vec<IpNetwork>> = HashMap::new();
        for (attrs, prefixes) in groups.into_values() {
            by_value.entry(attrs).or_default().extend(prefixes);
        }
        let mut groups: Vec<_> = by_value.into_iter().collect();
        // Deterministic output: order groups and prefixes.
        groups.sort_by(|a, b| a.1.first().cmp(&b.1.first()));
        for (attrs, mut prefixes) in groups {
            prefixes.sort();
            let (v4, v6): (Vec<IpNetwork>, Vec<IpNetwork>) =
                prefixes.into_iter().partition(|p| p.is_ipv4());
            if !v4.is_empty()
                && let Some(NextHop::V4(_)) = attrs.next_hop
            {
                out.announced += v4.len() as u64;
                pack(&mut out.messages, ctx, max, &v4, |chunk| Update {
                    attributes: Some((*attrs).clone()),
                    nlri: chunk.to_vec(),
                    ..Update::default()
                });
            }
            if !v6.is_empty()
                && let Some(next_hop @ NextHop::V6 { .. }) = attrs.next_hop
            {
                out.announced += v6.len() as u64;
                pack(&mut out.messages, ctx, max, &v6, |chunk| Update {
                    attributes: Some((*attrs).clone()),
                    mp_reach: Some(MpReach {
                        family: Family::IPV6_UNICAST,
                        next_hop,
                        nlri: chunk.to_vec(),
                    }),
                    ..Update::default()
                });
            }
        }
        out
    }
}

/// Splits `prefixes` into chunks whose UPDATE fits in `max` bytes and encodes each.
fn pack(
    out: &mut Vec<Bytes>,
    ctx: &CodecContext,
    max: usize,
    prefixes: &[IpNetwork],
    build: impl Fn(&[IpNetwork]) -> Update,
) {
    if prefixes.is_empty() {
        return;
    }
    // Size of the message with no prefixes, plus 1 for an attribute header growing to
    // extended length once the prefixes are added.
    let base = Message::Update(build(&[])).to_bytes(ctx).len() + 1;
    let budget = max.saturating_sub(base.max(HEADER_LEN));
    let mut start = 0;
    while start < prefixes.len() {
        let mut size = 0;
        let mut end = start;
        while end < prefixes.len() {
            let len = nlri_len(&prefixes[end]);
            if size + len > budget {
                break;
            }
            size += len;
            end += 1;
        }
        if end == start {
            // Attributes alone fill the message: nothing more can be sent this way.
            return;
        }
        let mut buf = BytesMut::with_capacity(base + size);
        Message::Update(build(&prefixes[start..end])).encode(&mut buf, ctx);
        out.push(buf.freeze());
        start = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_routes_per_family_through_inserts_replacements_and_removals() {
        let mut out = AdjRibOut::default();
        let v4: IpNetwork = "10.244.1.0/24".parse().expect("v4");
        let v6: IpNetwork = "fd00:10:244:1::/64".parse().expect("v6");
        let first = Arc::new(PathAttributes::default());
        let second = Arc::new(PathAttributes {
            local_pref: Some(200),
            ..PathAttributes::default()
        });
        out.insert(v4, first.clone());
        out.insert(v6, first);
        out.insert(v4, second);
        assert_eq!(out.len_by_family(), (1, 1));
        out.remove(&v4);
        out.remove(&v4);
        assert_eq!(out.len_by_family(), (0, 1));
        out.remove(&v6);
        assert_eq!(out.len_by_family(), (0, 0));
    }
}
