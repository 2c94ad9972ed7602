//! A minimal blocking driver for one session over `std::net`, to try the protocol core
//! against a real router by hand (the real driver is the agent's tokio shell).
//!
//! ```text
//! cargo run -p podroute-bgp --example peer -- PEER_ADDR LOCAL_AS PEER_AS ROUTER_ID SECONDS \
//!     [PREFIX NEXT_HOP]...
//! ```
//!
//! Connects to PEER_ADDR:179, announces each PREFIX via NEXT_HOP, prints what happens,
//! and stops after SECONDS with a Cease.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ipnetwork::IpNetwork;
use podroute_bgp::message::{NextHop, PathAttributes};
use podroute_bgp::session::{Action, AdminEvent, Session, SessionConfig};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("peer: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let [peer, local_as, peer_as, router_id, seconds, routes @ ..] = args else {
        return Err(
            "usage: peer PEER_ADDR LOCAL_AS PEER_AS ROUTER_ID SECONDS [PREFIX NEXT_HOP]...".into(),
        );
    };
    let parse = |s: &str| s.parse::<u32>().map_err(|e| format!("{s}: {e}"));
    let peer: IpAddr = peer.parse().map_err(|e| format!("{peer}: {e}"))?;
    let router_id: Ipv4Addr = router_id.parse().map_err(|e| format!("{router_id}: {e}"))?;
    let seconds: u64 = seconds.parse().map_err(|e| format!("{seconds}: {e}"))?;
    let mut config = SessionConfig::new(parse(local_as)?, router_id, parse(peer_as)?);
    config.hold_time = 9;
    let mut session = Session::new(config);
    let start = Instant::now();
    let now = Instant::now();
    for pair in routes.chunks(2) {
        let [prefix, nh] = pair else {
            return Err("PREFIX without NEXT_HOP".into());
        };
        let prefix: IpNetwork = prefix.parse().map_err(|e| format!("{prefix}: {e}"))?;
        let next_hop = match nh.parse::<IpAddr>().map_err(|e| format!("{nh}: {e}"))? {
            IpAddr::V4(a) => NextHop::V4(a),
            IpAddr::V6(a) => NextHop::V6 {
                global: a,
                link_local: None,
            },
        };
        let attrs = PathAttributes {
            next_hop: Some(next_hop),
            ..PathAttributes::default()
        };
        session.announce(now, [prefix], attrs);
    }
    session.handle(now, AdminEvent::Start);
    let mut stream: Option<TcpStream> = None;
    let mut buf = vec![0u8; 65536];
    let mut stopping = false;
    loop {
        let now = Instant::now();
        if !stopping && now >= start + Duration::from_secs(seconds) {
            stopping = true;
            session.handle(now, AdminEvent::Stop);
        }
        while let Some(action) = session.poll_action() {
            match action {
                Action::Connect => {
                    let addr = SocketAddr::new(peer, 179);
                    match TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
                        Ok(s) => {
                            s.set_read_timeout(Some(Duration::from_millis(50)))
                                .map_err(|e| e.to_string())?;
                            stream = Some(s);
                            session.handle_connected(Instant::now());
                        }
                        Err(e) => {
                            println!("connect: {e}");
                            session.handle_closed(Instant::now());
                        }
                    }
                }
                Action::Send(bytes) => {
                    if let Some(s) = stream.as_mut()
                        && let Err(e) = s.write_all(&bytes)
                    {
                        println!("write: {e}");
                    }
                }
                Action::Disconnect => stream = None,
                Action::Routes(r) => println!(
                    "routes {}: announced {:?} via {:?}, withdrawn {:?}",
                    r.family,
                    r.announced,
                    r.attributes
                        .as_ref()
                        .and_then(|a| a.next_hop)
                        .map(|n| n.addr()),
                    r.withdrawn
                ),
                other => println!("{other:?}"),
            }
        }
        if stopping && stream.is_none() {
            println!("counters: {:?}", session.counters());
            return Ok(());
        }
        match stream.as_mut() {
            Some(s) => match s.read(&mut buf) {
                Ok(0) => {
                    stream = None;
                    session.handle_closed(Instant::now());
                }
                Ok(n) => session.handle_bytes(Instant::now(), &buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => {
                    println!("read: {e}");
                    stream = None;
                    session.handle_closed(Instant::now());
                }
            },
            None => std::thread::sleep(Duration::from_millis(50)),
        }
        if session.poll_timeout().is_some_and(|t| t <= Instant::now()) {
            session.handle_timeout(Instant::now());
        }
    }
}
