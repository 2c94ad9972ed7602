//! The hostile peer's connection: a TCP session opened from inside a lab namespace, that
//! sends whatever bytes it is given and reads back what the agent says.
//!
//! The socket is created on a short-lived thread that first enters the namespace
//! (`setns`), so the test process itself stays in the root namespace; the socket keeps the
//! namespace it was created in.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns};
use podroute_bgp::message::{
    Capability, CodecContext, Family, Message, Open, RouteRefresh, Update, frame_len,
};

/// Opens a TCP connection to `to` from namespace `netns`, within `timeout`.
pub fn connect_from(netns: &str, to: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    let path = format!("/run/netns/{netns}");
    std::thread::scope(|s| {
        s.spawn(|| {
            let ns = std::fs::File::open(&path)?;
            setns(&ns, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
            TcpStream::connect_timeout(&to, timeout)
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("connect thread panicked")))
    })
}

/// What the agent sent, as far as the peer can tell.
// Short-lived values read one at a time; boxing the message would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// A whole message.
    Message(Message),
    /// Bytes that do not decode (kept for the report).
    Undecodable(Vec<u8>),
    /// The agent closed the connection.
    Closed,
    /// Nothing within the wait.
    Nothing,
}

/// How the hostile peer opens its session.
#[derive(Debug, Clone, Copy)]
pub struct OpenParams {
    /// Our AS.
    pub asn: u32,
    /// Our BGP identifier.
    pub id: Ipv4Addr,
    /// Offer the 4-octet AS capability.
    pub four_octet: bool,
}

impl OpenParams {
    /// The OPEN: hold time 0 (no keepalives needed while a case runs), IPv4 and IPv6
    /// unicast, route refresh (the runner's barrier), 4-octet AS if asked.
    pub fn open(&self) -> Message {
        let mut caps = vec![
            Capability::Multiprotocol(Family::IPV4_UNICAST),
            Capability::Multiprotocol(Family::IPV6_UNICAST),
            Capability::RouteRefresh,
        ];
        if self.four_octet {
            caps.push(Capability::FourOctetAs(self.asn));
        }
        let mut open = Open::new(self.asn, 0, self.id, caps);
        if !self.four_octet {
            open.capabilities
                .retain(|c| !matches!(c, Capability::FourOctetAs(_)));
        }
        Message::Open(open)
    }
}

/// One connection of the hostile peer.
#[derive(Debug)]
pub struct HostilePeer {
    stream: TcpStream,
    inbuf: Vec<u8>,
    codec: CodecContext,
    /// Every message heard, in order (for reports).
    pub heard: Vec<Heard>,
}

impl HostilePeer {
    /// Wraps a connected stream.
    pub fn new(stream: TcpStream) -> Self {
        let _ = stream.set_nodelay(true);
        Self {
            stream,
            inbuf: Vec::new(),
            codec: CodecContext::default(),
            heard: Vec::new(),
        }
    }

    /// Sends `bytes` in one write.
    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Sends `bytes` one octet per write (TCP_NODELAY is on: one segment each).
    pub fn send_bytewise(&mut self, bytes: &[u8], gap: Duration) -> std::io::Result<()> {
        for b in bytes {
            self.stream.write_all(std::slice::from_ref(b))?;
            std::thread::sleep(gap);
        }
        Ok(())
    }

    /// Sends a message encoded for the session.
    pub fn send_message(&mut self, m: &Message) -> std::io::Result<()> {
        let bytes = m.to_bytes(&self.codec);
        self.send(&bytes)
    }

    /// The next thing heard within `wait`.
    pub fn next(&mut self, wait: Duration) -> Heard {
        let deadline = Instant::now() + wait;
        loop {
            match frame_len(&self.inbuf, 65535) {
                Ok(Some(len)) => {
                    let frame: Vec<u8> = self.inbuf.drain(..len).collect();
                    let heard = match Message::decode(&frame, &self.codec) {
                        Ok(m) => Heard::Message(m),
                        Err(_) => Heard::Undecodable(frame),
                    };
                    self.heard.push(heard.clone());
                    return heard;
                }
                Ok(None) => {}
                Err(_) => {
                    let junk = std::mem::take(&mut self.inbuf);
                    return Heard::Undecodable(junk);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Heard::Nothing;
            }
            let _ = self
                .stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))));
            let mut buf = [0u8; 65536];
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    self.heard.push(Heard::Closed);
                    return Heard::Closed;
                }
                Ok(n) => self.inbuf.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Heard::Nothing;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    self.heard.push(Heard::Closed);
                    return Heard::Closed;
                }
            }
        }
    }

    /// Reads until `want` matches something heard, the connection closes or `wait` passes.
    pub fn wait_for(&mut self, wait: Duration, mut want: impl FnMut(&Heard) -> bool) -> Heard {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let h = self.next(left);
            if want(&h) || matches!(h, Heard::Closed | Heard::Nothing) {
                return h;
            }
        }
    }

    /// The OPEN exchange (RFC 4271 §8.2.2): our OPEN, theirs, KEEPALIVEs both ways; then
    /// our End-of-RIB for both families. Returns the agent's OPEN.
    pub fn establish(&mut self, params: &OpenParams, wait: Duration) -> Result<Open, String> {
        self.send_message(&params.open())
            .map_err(|e| e.to_string())?;
        self.establish_after_open(params, wait)
    }

    /// [`HostilePeer::establish`] once our OPEN has gone out (by any means).
    pub fn establish_after_open(
        &mut self,
        params: &OpenParams,
        wait: Duration,
    ) -> Result<Open, String> {
        let open = match self.wait_for(wait, |h| matches!(h, Heard::Message(Message::Open(_)))) {
            Heard::Message(Message::Open(o)) => o,
            other => return Err(format!("no OPEN from the agent: {other:?}")),
        };
        self.codec = CodecContext {
            four_octet_as: params.four_octet && open.four_octet_as().is_some(),
            extended_messages: false,
        };
        self.send_message(&Message::Keepalive)
            .map_err(|e| e.to_string())?;
        match self.wait_for(wait, |h| matches!(h, Heard::Message(Message::Keepalive))) {
            Heard::Message(Message::Keepalive) => {}
            other => return Err(format!("no KEEPALIVE from the agent: {other:?}")),
        }
        for family in [Family::IPV4_UNICAST, Family::IPV6_UNICAST] {
            self.send_message(&Message::Update(Update::end_of_rib(family)))
                .map_err(|e| e.to_string())?;
        }
        Ok(open)
    }

    /// A barrier: once the agent answers a ROUTE-REFRESH (RFC 2918) with an UPDATE, it
    /// has processed everything sent before. Returns what ended the wait: an UPDATE, or a
    /// NOTIFICATION, a close or nothing (the failures a case looks for).
    pub fn barrier(&mut self, wait: Duration) -> Heard {
        // Whatever the agent sent before the request does not count.
        while !matches!(
            self.next(Duration::from_millis(20)),
            Heard::Nothing | Heard::Closed
        ) {}
        let rr = Message::RouteRefresh(RouteRefresh {
            family: Family::IPV4_UNICAST,
            subtype: 0,
        });
        if self.send_message(&rr).is_err() {
            return Heard::Closed;
        }
        self.wait_for(wait, |h| {
            matches!(
                h,
                Heard::Message(Message::Update(_) | Message::Notification(_))
            )
        })
    }

    /// The NOTIFICATION the agent sent within `wait`, as (code, subcode), and whether the
    /// connection then closed.
    pub fn notification(&mut self, wait: Duration) -> (Option<(u8, u8)>, bool) {
        let h = self.wait_for(wait, |h| {
            matches!(h, Heard::Message(Message::Notification(_)))
        });
        let code = match h {
            Heard::Message(Message::Notification(n)) => Some((n.code, n.subcode)),
            Heard::Closed => return (None, true),
            _ => return (None, false),
        };
        let closed = matches!(self.wait_for(wait, |_| false), Heard::Closed);
        (code, closed)
    }
}
