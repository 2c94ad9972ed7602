//! Reading the netlink datagrams the kernel answers with: the messages in one, what an error
//! or end-of-dump message says, and which messages answer a request ([`AnswerReader`]).
//! Sans-IO, shared by the plugin's blocking socket ([`crate::netlink`]) and the agent's route
//! programmer.

use rtnetlink::packet_core::{
    DoneBuffer, ErrorBuffer, NLM_F_DUMP_INTR, NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, NLMSG_OVERRUN,
    NetlinkBuffer,
};
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
fn done_code(message: &NetlinkBuffer<&[u8]>) -> io::Result<Option<i32>> {
    // Old kernels sent an empty NLMSG_DONE: complete.
    if message.payload().len() < 4 {
        return Ok(None);
    }
    let code = DoneBuffer::new_checked(message.payload())
        .map_err(invalid)?
        .code();
    Ok((code < 0).then_some(code.wrapping_neg()))
}

/// What one message of a datagram is to the request being answered.
#[derive(Debug)]
enum Part<'a> {
    /// Not part of the answer: another request's message, or a no-op.
    Other,
    /// A message of the answer: an entry of a dump, the answer of a lookup.
    Message(NetlinkBuffer<&'a [u8]>),
    /// The answer is complete: the acknowledgement of a change, or the end of a dump.
    End,
}

/// Follows the answer to the request with one sequence number, message by message. A kernel
/// error, also one that ends a dump, comes back as the OS error of its errno.
#[derive(Debug)]
pub struct AnswerReader {
    sequence: u32,
    interrupted: bool,
}

impl AnswerReader {
    /// The reader of the answer to request `sequence`.
    pub fn new(sequence: u32) -> Self {
        Self {
            sequence,
            interrupted: false,
        }
    }

    /// True when a concurrent change interrupted the dump (`NLM_F_DUMP_INTR` on a message of
    /// it): what it returned may be inconsistent, and it is worth starting again.
    pub fn interrupted(&self) -> bool {
        self.interrupted
    }

    /// Reads one datagram: hands each message of the answer in it to `each`, which says
    /// whether that message completes the answer (a lookup's one message does). True once the
    /// answer is complete, by `each` or by its end.
    pub fn read_datagram(
        &mut self,
        datagram: &[u8],
        mut each: impl FnMut(NetlinkBuffer<&[u8]>) -> io::Result<bool>,
    ) -> io::Result<bool> {
        for message in messages(datagram) {
            match self.read(message?)? {
                Part::Other => {}
                Part::End => return Ok(true),
                Part::Message(message) => {
                    if each(message)? {
                        return Ok(true);
                    }
                }
            }
        }
        Ok(false)
    }

    /// What `message` is to the answer.
    fn read<'a>(&mut self, message: NetlinkBuffer<&'a [u8]>) -> io::Result<Part<'a>> {
        if message.sequence_number() != self.sequence {
            return Ok(Part::Other);
        }
        self.interrupted |= message.flags() & NLM_F_DUMP_INTR != 0;
        let failed = |errno: Option<i32>| match errno {
            Some(errno) => Err(io::Error::from_raw_os_error(errno)),
            None => Ok(Part::End),
        };
        match message.message_type() {
            NLMSG_ERROR => failed(error_code(&message)?),
            NLMSG_DONE => failed(done_code(&message)?),
            NLMSG_NOOP => Ok(Part::Other),
            NLMSG_OVERRUN => Err(invalid("netlink overrun")),
            _ => Ok(Part::Message(message)),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A netlink message: header (length, type, flags, sequence, port) and payload.
    pub(crate) fn message(kind: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
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

    /// What the reader of request 5 makes of each message of `datagram`, as text.
    fn parts(datagram: &[u8]) -> Vec<String> {
        let mut reader = AnswerReader::new(5);
        messages(datagram)
            .map(|m| match reader.read(m.expect("well formed")) {
                Ok(Part::Other) => "other".to_owned(),
                Ok(Part::Message(m)) => format!("message {}", m.message_type()),
                Ok(Part::End) => format!("end, interrupted {}", reader.interrupted()),
                Err(e) => format!("error {:?}", e.raw_os_error()),
            })
            .collect()
    }

    #[test]
    fn the_reader_follows_one_request_to_its_end_or_error() {
        let mut dump = message(16, 4, b"old");
        dump.extend(message(16, 5, b"link"));
        let mut interrupted = message(16, 5, b"link");
        interrupted[6..8].copy_from_slice(&NLM_F_DUMP_INTR.to_ne_bytes());
        dump.extend(interrupted);
        dump.extend(message(NLMSG_NOOP, 5, &[]));
        dump.extend(message(NLMSG_DONE, 5, &0i32.to_ne_bytes()));
        assert_eq!(
            parts(&dump),
            [
                "other",
                "message 16",
                "message 16",
                "other",
                "end, interrupted true"
            ]
        );
        assert_eq!(parts(&error(5, 0)), ["end, interrupted false"]);
        assert_eq!(parts(&error(5, -19)), ["error Some(19)"]);
        assert_eq!(
            parts(&message(NLMSG_DONE, 5, &(-90i32).to_ne_bytes())),
            ["error Some(90)"]
        );
        assert_eq!(parts(&message(NLMSG_OVERRUN, 5, &[])), ["error None"]);
    }

    #[test]
    fn a_datagram_is_read_until_its_answer_is_complete() {
        let mut part = message(16, 4, b"old");
        part.extend(message(16, 5, b"one"));
        part.extend(message(16, 5, b"two"));
        let mut ended = part.clone();
        ended.extend(message(NLMSG_DONE, 5, &0i32.to_ne_bytes()));
        ended.extend(message(16, 5, b"after"));
        let payloads = |datagram: &[u8], stop_at_first: bool| {
            let mut seen = Vec::new();
            let done = AnswerReader::new(5)
                .read_datagram(datagram, |m| {
                    seen.push(String::from_utf8_lossy(&m.payload()[..3]).into_owned());
                    Ok(stop_at_first)
                })
                .expect("read");
            (done, seen)
        };
        assert_eq!(
            payloads(&part, false),
            (false, vec!["one".into(), "two".into()])
        );
        assert_eq!(
            payloads(&ended, false),
            (true, vec!["one".into(), "two".into()])
        );
        assert_eq!(payloads(&part, true), (true, vec!["one".into()]));
    }
}
