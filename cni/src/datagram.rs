//! Reading the netlink datagrams the kernel answers with: the messages in one, and what an
//! error or end-of-dump message says. Sans-IO, shared by the plugin's blocking socket
//! ([`crate::netlink`]) and the agent's route programmer.

use rtnetlink::packet_core::{DoneBuffer, ErrorBuffer, NetlinkBuffer};
use std::io;

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// The netlink messages of one datagram, in order. A message whose header does not fit ends
/// the datagram with an error.
pub fn messages(datagram: &[u8]) -> impl Iterator<Item = io::Result<NetlinkBuffer<&[u8]>>> {
    let mut rest = datagram;
    std::iter::from_fn(move || {
        // Shorter than a header: alignment padding at the end.
        if rest.len() < 16 {
            return None;
        }
        match NetlinkBuffer::new_checked(rest) {
            Ok(message) => {
                let length = message.length() as usize;
                let (this, _) = rest.split_at(length);
                rest = rest.get(length.next_multiple_of(4)..).unwrap_or_default();
                Some(Ok(NetlinkBuffer::new(this)))
            }
            Err(e) => {
                rest = &[];
                Some(Err(invalid(e)))
            }
        }
    })
}

/// The errno of an `NLMSG_ERROR` message; `None` for an acknowledgement.
pub fn error_code(message: &NetlinkBuffer<&[u8]>) -> io::Result<Option<i32>> {
    let buffer = ErrorBuffer::new_checked(message.payload()).map_err(invalid)?;
    Ok(buffer.code().map(|c| c.get().wrapping_neg()))
}

/// The errno an `NLMSG_DONE` message ends a dump with; `None` when the dump is complete. A
/// dump that fails once it has started says so only here (e.g. `EMSGSIZE`).
pub fn done_code(message: &NetlinkBuffer<&[u8]>) -> io::Result<Option<i32>> {
    // Old kernels sent an empty NLMSG_DONE: complete.
    if message.payload().len() < 4 {
        return Ok(None);
    }
    let code = DoneBuffer::new_checked(message.payload())
        .map_err(invalid)?
        .code();
    Ok((code < 0).then_some(code.wrapping_neg()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtnetlink::packet_core::{NLMSG_DONE, NLMSG_ERROR};

    /// A netlink message: header (length, type, flags, sequence, port) and payload.
    fn message(kind: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(16 + payload.len() as u32).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(&0u16.to_ne_bytes());
        out.extend_from_slice(&seq.to_ne_bytes());
        out.extend_from_slice(&0u32.to_ne_bytes());
        out.extend_from_slice(payload);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out
    }

    /// An NLMSG_ERROR with `code` (0: an acknowledgement) and the failed request's header.
    fn error(seq: u32, code: i32) -> Vec<u8> {
        let mut payload = code.to_ne_bytes().to_vec();
        payload.extend_from_slice(&[0; 16]);
        message(NLMSG_ERROR, seq, &payload)
    }

    #[test]
    fn a_datagram_splits_into_its_messages_across_padding() {
        let mut datagram = message(16, 7, b"abc");
        datagram.extend(error(8, 0));
        datagram.extend(message(NLMSG_DONE, 9, &0i32.to_ne_bytes()));
        let seen: Vec<(u16, u32)> = messages(&datagram)
            .map(|m| {
                let m = m.expect("message");
                (m.message_type(), m.sequence_number())
            })
            .collect();
        assert_eq!(seen, [(16, 7), (NLMSG_ERROR, 8), (NLMSG_DONE, 9)]);
        assert!(messages(&datagram[..10]).next().is_none());
        let mut broken = message(16, 1, b"x");
        broken[0] = 200; // longer than the datagram
        assert!(messages(&broken).next().expect("one").is_err());
    }

    /// `read` applied to the one message of `datagram`.
    fn first<T>(datagram: &[u8], read: impl FnOnce(&NetlinkBuffer<&[u8]>) -> T) -> T {
        read(
            &messages(datagram)
                .next()
                .expect("one")
                .expect("well formed"),
        )
    }

    #[test]
    fn errors_acks_and_failed_dumps_are_told_apart() {
        assert_eq!(first(&error(1, 0), error_code).expect("ack"), None);
        assert_eq!(first(&error(1, -17), error_code).expect("error"), Some(17));
        let done = |code: &[u8]| message(NLMSG_DONE, 1, code);
        assert_eq!(
            first(&done(&0i32.to_ne_bytes()), done_code).expect("done"),
            None
        );
        assert_eq!(
            first(&done(&(-90i32).to_ne_bytes()), done_code).expect("failed dump"),
            Some(90)
        );
        assert_eq!(first(&done(&[]), done_code).expect("old kernel"), None);
    }
}
