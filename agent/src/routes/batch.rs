//! Packing route writes into netlink batches: many requests in one `sendmsg`.
//!
//! Like FRR's dataplane batching, the kernel gets a buffer of back-to-back requests and works
//! through them in order inside one system call. Only the last request of a batch asks for an
//! acknowledgement (`NLM_F_ACK`); the kernel answers every failed request anyway (with its
//! sequence number), so one `recvmsg` per batch, plus one per failure, tells which requests
//! failed and that all the others succeeded. `ip -batch` and BIRD instead wait for one
//! acknowledgement per route: two system calls per route.

use rtnetlink::packet_core::{NLM_F_ACK, NetlinkBuffer, NetlinkMessage};
use rtnetlink::packet_route::RouteNetlinkMessage;

/// Batch size in bytes. Far below the socket's send buffer (the kernel refuses a datagram
/// larger than `SO_SNDBUF`, 208 KiB by default), and at about 60 bytes per route write about
/// a thousand requests, whose worst case of a thousand error answers fits the receive buffer
/// the programmer asks for (see [`super::netlink`]).
pub(crate) const BATCH_BYTES: usize = 64 * 1024;

/// Requests packed back to back, numbered `first_seq..first_seq + len`.
#[derive(Debug)]
pub(crate) struct Batch {
    bytes: Vec<u8>,
    first_seq: u32,
    len: u32,
    /// Where the last request starts, to flag it for the acknowledgement.
    last_offset: usize,
}

impl Batch {
    /// An empty batch whose first request gets sequence number `first_seq`.
    pub(crate) fn new(first_seq: u32) -> Self {
        Self {
            bytes: Vec::with_capacity(BATCH_BYTES),
            first_seq,
            len: 0,
            last_offset: 0,
        }
    }

    /// Appends `message` (numbered next) unless that would pass `max_bytes`; a message always
    /// goes into an empty batch. False if it did not fit.
    pub(crate) fn push(
        &mut self,
        mut message: NetlinkMessage<RouteNetlinkMessage>,
        max_bytes: usize,
    ) -> bool {
        message.header.sequence_number = self.first_seq.wrapping_add(self.len);
        message.finalize();
        let size = message.buffer_len();
        let start = self.bytes.len();
        if self.len > 0 && start + size > max_bytes {
            return false;
        }
        self.bytes.resize(start + size, 0);
        message.serialize(&mut self.bytes[start..]);
        self.last_offset = start;
        self.len += 1;
        true
    }

    /// Number of requests.
    #[cfg(test)]
    pub(crate) fn len(&self) -> u32 {
        self.len
    }

    /// True if nothing was pushed.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sequence number of the first request.
    #[cfg(test)]
    pub(crate) fn first_seq(&self) -> u32 {
        self.first_seq
    }

    /// Sequence number of the last request, the one the kernel acknowledges.
    pub(crate) fn last_seq(&self) -> u32 {
        self.first_seq.wrapping_add(self.len.saturating_sub(1))
    }

    /// Position in the batch of the request numbered `seq`, if it is one of this batch's.
    pub(crate) fn index_of(&self, seq: u32) -> Option<usize> {
        let index = seq.wrapping_sub(self.first_seq);
        (index < self.len).then_some(index as usize)
    }

    /// The bytes to send: the last request now asks for the acknowledgement.
    pub(crate) fn seal(&mut self) -> &[u8] {
        if self.len > 0 {
            let mut last = NetlinkBuffer::new(&mut self.bytes[self.last_offset..]);
            let flags = last.flags();
            last.set_flags(flags | NLM_F_ACK);
        }
        &self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::KernelTarget;
    use crate::routes::kernel::{WriteKind, write_request};
    use ipnetwork::IpNetwork;

    fn writes(n: u32) -> impl Iterator<Item = NetlinkMessage<RouteNetlinkMessage>> {
        (0..n).map(|i| {
            let destination =
                IpNetwork::new(std::net::Ipv4Addr::from(0x0a00_0000 + (i << 8)).into(), 24)
                    .expect("net");
            write_request(destination, WriteKind::Create(KernelTarget::Blackhole), 80)
        })
    }

    /// (sequence number, flags) of every message in `bytes`.
    fn headers(bytes: &[u8]) -> Vec<(u32, u16)> {
        let mut out = Vec::new();
        let mut offset = 0;
        while offset < bytes.len() {
            let message = NetlinkBuffer::new_checked(&bytes[offset..]).expect("message");
            out.push((message.sequence_number(), message.flags()));
            offset += message.length() as usize;
        }
        out
    }

    #[test]
    fn requests_fill_batches_up_to_the_size_and_only_the_last_asks_for_an_ack() {
        let mut batches = vec![Batch::new(1)];
        for message in writes(100) {
            let batch = batches.last_mut().expect("batch");
            if !batch.push(message.clone(), 1000) {
                let mut next = Batch::new(batch.last_seq() + 1);
                assert!(next.push(message, 1000));
                batches.push(next);
            }
        }
        assert!(batches.len() > 1, "1000 bytes hold a few dozen writes");
        let mut seq = 1;
        for batch in &mut batches {
            let first = batch.first_seq();
            let last = batch.last_seq();
            let bytes = batch.seal().to_vec();
            assert!(bytes.len() <= 1000);
            let headers = headers(&bytes);
            assert_eq!(headers.len() as u32, last - first + 1);
            for (i, (s, flags)) in headers.iter().enumerate() {
                assert_eq!(*s, seq, "numbered consecutively across batches");
                seq += 1;
                let is_last = i + 1 == headers.len();
                assert_eq!(flags & NLM_F_ACK != 0, is_last, "message {i}");
            }
        }
        assert_eq!(seq, 101);
    }

    #[test]
    fn answers_map_back_to_their_request() {
        let mut batch = Batch::new(u32::MAX - 1);
        for message in writes(4) {
            assert!(batch.push(message, BATCH_BYTES));
        }
        // Sequence numbers wrap.
        assert_eq!(batch.index_of(u32::MAX - 1), Some(0));
        assert_eq!(batch.index_of(0), Some(2));
        assert_eq!(batch.last_seq(), 1);
        assert_eq!(batch.index_of(2), None);
        assert_eq!(batch.index_of(u32::MAX - 2), None);
    }

    #[test]
    fn an_oversized_message_still_goes_alone() {
        let mut batch = Batch::new(1);
        assert!(batch.push(writes(1).next().expect("write"), 10));
        assert!(!batch.push(writes(1).next().expect("write"), 10));
        assert_eq!(batch.len(), 1);
        assert!(!batch.is_empty());
    }
}
