//! RFC 4271 §6.8 in the peer driver: the task of a static peer, with a scripted session, meets
//! a second connection from the peer while its own is still being opened. The test plays the
//! peer on loopback addresses of a private network namespace (needs root).

mod common;

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::in_private_netns;
use ipnetwork::IpNetwork;
use podroute_agent::peers::{PeerKind, PeerSpec};
use podroute_agent::speaker::peer::{PeerEvent, PeerTask};
use podroute_agent::speaker::session::{LocalSettings, SessionCore, SessionEvent, SessionFactory};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};

const US: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const PEER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const PEER_PORT: u16 = 1790;
/// The port our listener would accept the peer's connection on.
const OUR_PORT: u16 = 1791;
/// What the scripted session says when it loses a collision.
const COLLISION: &str = "COLLISION";

/// Sends `HELLO` when connected. From the peer: `ID <a.b.c.d>` gives its identifier (as its
/// OPEN would), `UP` makes the session Established. Losing a collision sends `COLLISION`.
#[derive(Default)]
struct ScriptedSession {
    events: VecDeque<SessionEvent>,
    inbox: Vec<u8>,
    remote_id: Option<Ipv4Addr>,
}

impl SessionCore for ScriptedSession {
    fn connected(&mut self, _now: Instant) {
        self.events
            .push_back(SessionEvent::Transmit(b"HELLO\n".to_vec()));
    }
    fn handle_bytes(&mut self, _now: Instant, bytes: &[u8]) {
        self.inbox.extend_from_slice(bytes);
        while let Some(end) = self.inbox.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.inbox.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line).trim().to_owned();
            if let Some(id) = line.strip_prefix("ID ") {
                self.remote_id = id.parse().ok();
            } else if line == "UP" {
                self.events.push_back(SessionEvent::Established {
                    ipv4: true,
                    ipv6: false,
                });
            }
        }
    }
    fn handle_timeout(&mut self, _now: Instant) {}
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }
    fn advertise(&mut self, _now: Instant, _routes: &[(IpNetwork, IpAddr)]) {}
    fn stop(&mut self, _now: Instant) {
        self.events
            .push_back(SessionEvent::Closed("stopped".into()));
    }
    fn remote_id(&self) -> Option<Ipv4Addr> {
        self.remote_id
    }
    fn close_collision(&mut self, _now: Instant) {
        self.events.push_back(SessionEvent::Transmit(
            format!("{COLLISION}\n").into_bytes(),
        ));
        self.events
            .push_back(SessionEvent::Closed("collision".into()));
    }
}

/// The peer's end of one connection, read line by line.
struct PeerEnd {
    lines: tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>,
    write: tokio::net::tcp::OwnedWriteHalf,
}

impl PeerEnd {
    fn new(stream: TcpStream) -> Self {
        let (read, write) = stream.into_split();
        Self {
            lines: BufReader::new(read).lines(),
            write,
        }
    }

    /// The next line; `None` when the driver closed the connection.
    async fn line(&mut self) -> Option<String> {
        tokio::time::timeout(Duration::from_secs(5), self.lines.next_line())
            .await
            .expect("the driver neither wrote nor closed within 5 s")
            .ok()
            .flatten()
    }

    /// True when nothing arrives for a moment (the connection is held unanswered).
    async fn silent(&mut self) -> bool {
        tokio::time::timeout(Duration::from_millis(300), self.lines.next_line())
            .await
            .is_err()
    }

    async fn say(&mut self, line: &str) {
        self.write
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("write to the driver");
    }
}

/// A static peer task with router identifier `our_id`, and the peer's end of the connection
/// the task opened (already greeted).
struct Setup {
    task: PeerTask,
    events: mpsc::UnboundedReceiver<(IpAddr, PeerEvent)>,
    outgoing: PeerEnd,
    our_listener: TcpListener,
    _advertised: watch::Sender<Vec<(IpNetwork, IpAddr)>>,
}

async fn setup(our_id: Ipv4Addr) -> Setup {
    let peer_listener = TcpListener::bind(SocketAddr::new(PEER.into(), PEER_PORT))
        .await
        .expect("peer listens");
    let our_listener = TcpListener::bind(SocketAddr::new(US.into(), OUR_PORT))
        .await
        .expect("our port");
    let spec = PeerSpec {
        address: PEER.into(),
        remote_as: 64512,
        kind: PeerKind::Static { import: vec![] },
        md5_password: None,
        gtsm: false,
    };
    let local = LocalSettings {
        as_number: 64512,
        router_id: our_id,
        address: US.into(),
        hold_time: 90,
    };
    let factory: SessionFactory = Arc::new(|_, _| Box::new(ScriptedSession::default()));
    let (advertised_tx, advertised_rx) = watch::channel(Vec::new());
    let (events_tx, events) = mpsc::unbounded_channel();
    let task = PeerTask::spawn(spec, local, PEER_PORT, factory, advertised_rx, events_tx);
    let (stream, _) = tokio::time::timeout(Duration::from_secs(5), peer_listener.accept())
        .await
        .expect("the task connects")
        .expect("accept");
    let mut outgoing = PeerEnd::new(stream);
    assert_eq!(outgoing.line().await.as_deref(), Some("HELLO"));
    Setup {
        task,
        events,
        outgoing,
        our_listener,
        _advertised: advertised_tx,
    }
}

impl Setup {
    /// The peer connects to us: the listener's side goes to the task as an accepted
    /// connection; the peer's side is returned.
    async fn peer_connects(&self) -> PeerEnd {
        let socket = TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::new(PEER.into(), 0))
            .expect("bind peer side");
        let (client, accepted) = tokio::join!(
            socket.connect(SocketAddr::new(US.into(), OUR_PORT)),
            self.our_listener.accept()
        );
        let (accepted, _) = accepted.expect("accept");
        self.task
            .incoming
            .send(accepted)
            .await
            .expect("hand over the connection");
        PeerEnd::new(client.expect("connect"))
    }

    async fn next_event(&mut self) -> PeerEvent {
        tokio::time::timeout(Duration::from_secs(5), self.events.recv())
            .await
            .expect("a peer event within 5 s")
            .expect("task alive")
            .1
    }
}

#[test]
#[ignore = "needs root: run by make test"]
fn the_peers_connection_wins_when_its_identifier_is_higher() {
    in_private_netns(async {
        let mut s = setup(Ipv4Addr::new(10, 0, 0, 1)).await;
        let mut incoming = s.peer_connects().await;
        assert!(
            incoming.silent().await,
            "the collision must wait for the peer's identifier"
        );
        s.outgoing.say("ID 10.0.0.9").await;
        // Our connection loses: Cease/Connection Collision Resolution, then closed.
        assert_eq!(s.outgoing.line().await.as_deref(), Some(COLLISION));
        assert_eq!(s.outgoing.line().await, None);
        // The session goes on over the peer's connection.
        assert_eq!(incoming.line().await.as_deref(), Some("HELLO"));
        incoming.say("UP").await;
        assert_eq!(
            s.next_event().await,
            PeerEvent::Up {
                ipv4: true,
                ipv6: false
            }
        );
        s.task.stop().await;
    });
}

#[test]
#[ignore = "needs root: run by make test"]
fn our_connection_wins_when_our_identifier_is_higher_and_established_refuses() {
    in_private_netns(async {
        let mut s = setup(Ipv4Addr::new(10, 0, 0, 200)).await;
        let mut incoming = s.peer_connects().await;
        assert!(incoming.silent().await);
        s.outgoing.say("ID 10.0.0.9").await;
        // The peer's connection is closed unanswered; ours goes on.
        assert_eq!(incoming.line().await, None);
        s.outgoing.say("UP").await;
        assert_eq!(
            s.next_event().await,
            PeerEvent::Up {
                ipv4: true,
                ipv6: false
            }
        );
        // Once Established, a further connection is refused and counted (§6.8).
        let mut late = s.peer_connects().await;
        assert_eq!(late.line().await, None);
        assert_eq!(s.next_event().await, PeerEvent::ConnectionRejected);
        assert!(
            s.outgoing.silent().await,
            "the established connection was disturbed"
        );
        s.task.stop().await;
    });
}

#[test]
#[ignore = "needs root: run by make test"]
fn a_held_connection_takes_over_when_ours_closes_first() {
    in_private_netns(async {
        let s = setup(Ipv4Addr::new(10, 0, 0, 1)).await;
        let mut incoming = s.peer_connects().await;
        assert!(incoming.silent().await);
        // The peer closes our connection before its identifier was known.
        drop(s.outgoing);
        assert_eq!(incoming.line().await.as_deref(), Some("HELLO"));
        s.task.stop().await;
    });
}
