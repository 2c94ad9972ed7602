//! BFD interop with BIRD 2 (`protocol bfd`), IPv4 and IPv6, over a veth pair between a
//! private "node" namespace (the agent's BFD task) and a "router" namespace (BIRD); needs
//! root and `bird`. Sessions come Up on both ends; BIRD killed → our sessions go Down by
//! Detection Time expiry. BIRD's first Control packet is printed in hex (`--nocapture`):
//! that is how the golden vector in `bfd/src/packet_tests.rs` was captured.

mod common;

use std::io::Write;
use std::net::{IpAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Netns, in_private_netns};
use podroute_agent::bfd::driver::{self, BfdDriverConfig, LivenessEvent};
use podroute_agent::metrics::Metrics;
use podroute_bfd::endpoint::{BfdConfig, Liveness};
use podroute_bfd::packet::{ControlPacket, State};
use podroute_bfd::session::SessionConfig;
use tokio::sync::mpsc::UnboundedReceiver;

const NODE_V4: &str = "198.18.0.1";
const ROUTER_V4: &str = "198.18.0.254";
const NODE_V6: &str = "fd00:198:18::1";
const ROUTER_V6: &str = "fd00:198:18::fe";

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

fn run(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// BIRD in the router namespace, killed on drop (even when the test fails).
struct Bird {
    child: Child,
    socket: String,
    _dir: tempfile::TempDir,
}

impl Bird {
    fn start(router: &Netns) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = dir.path().join("bird.conf");
        let socket = dir.path().join("bird.ctl").display().to_string();
        let mut f = std::fs::File::create(&conf).expect("bird.conf");
        write!(
            f,
            "log \"{log}\" all;\n\
             router id {ROUTER_V4};\n\
             protocol device {{ }}\n\
             protocol bfd {{\n  \
               interface \"*\" {{ min rx interval 100 ms; min tx interval 100 ms; multiplier 3; }};\n  \
               neighbor {NODE_V4} local {ROUTER_V4};\n  \
               neighbor {NODE_V6} local {ROUTER_V6};\n\
             }}\n",
            log = dir.path().join("bird.log").display(),
        )
        .expect("write bird.conf");
        let child = Command::new("ip")
            .args(["netns", "exec", &router.name, "bird", "-f", "-c"])
            .arg(&conf)
            .args(["-s", &socket])
            .stdout(Stdio::null())
            .spawn()
            .expect("start bird");
        Self {
            child,
            socket,
            _dir: dir,
        }
    }

    fn sessions(&self) -> String {
        run(&["birdc", "-s", &self.socket, "show", "bfd", "sessions"])
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Bird {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits (at most 30 s) until each of `peers` has been reported `liveness`, in any
/// order, skipping other events.
async fn expect(
    events: &mut UnboundedReceiver<LivenessEvent>,
    peers: &[IpAddr],
    liveness: Liveness,
) {
    let mut missing: Vec<IpAddr> = peers.to_vec();
    let waited = tokio::time::timeout(Duration::from_secs(30), async {
        while !missing.is_empty() {
            let event = events.recv().await.expect("BFD task runs");
            if event.liveness == liveness {
                missing.retain(|p| *p != event.peer);
            }
        }
    })
    .await;
    assert!(waited.is_ok(), "no {liveness:?} from {missing:?}");
}

/// The first Control packet BIRD sends to `node` (before our task owns port 3784).
fn first_packet_from_bird(node: &str) -> Vec<u8> {
    let socket = UdpSocket::bind((ip(node), 3784)).expect("bind 3784");
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut buf = [0u8; 128];
    // BIRD 2.0.12 sends from an ephemeral port (not 49152-65535 as RFC 5881 §4 asks), so
    // the source port is not checked: nor does our endpoint check it, for this reason.
    let (n, _from) = socket.recv_from(&mut buf).expect("a packet from BIRD");
    buf[..n].to_vec()
}

#[test]
#[ignore = "needs root and bird: network namespaces"]
fn bird_sessions_come_up_on_both_families_and_go_down_when_bird_dies() {
    let router = Netns::new();
    let router_name = router.name.clone();
    in_private_netns(async move {
        run(&[
            "ip",
            "link",
            "add",
            "bfd0",
            "type",
            "veth",
            "peer",
            "name",
            "bfd1",
            "netns",
            &router_name,
        ]);
        run(&["ip", "addr", "add", &format!("{NODE_V4}/24"), "dev", "bfd0"]);
        run(&[
            "ip",
            "addr",
            "add",
            &format!("{NODE_V6}/64"),
            "dev",
            "bfd0",
            "nodad",
        ]);
        run(&["ip", "link", "set", "bfd0", "up"]);
        router.ip(&["addr", "add", &format!("{ROUTER_V4}/24"), "dev", "bfd1"]);
        router.ip(&[
            "addr",
            "add",
            &format!("{ROUTER_V6}/64"),
            "dev",
            "bfd1",
            "nodad",
        ]);
        router.ip(&["link", "set", "bfd1", "up"]);

        let mut bird = Bird::start(&router);
        for node in [NODE_V4, NODE_V6] {
            let golden = tokio::task::spawn_blocking(move || first_packet_from_bird(node))
                .await
                .expect("capture");
            let hex: String = golden.iter().map(|b| format!("{b:02x}")).collect();
            println!("BIRD 2 first Control packet to {node}: {hex}");
            let packet = ControlPacket::decode(&golden).expect("BIRD's packet decodes");
            assert_eq!(packet.state, State::Down);
            assert_eq!(
                packet.encode().as_slice(),
                &golden[..24],
                "re-encodes byte for byte"
            );
        }

        let (bfd, mut events) = driver::spawn(BfdDriverConfig {
            local: vec![ip(NODE_V4), ip(NODE_V6)],
            endpoint: BfdConfig {
                seed: 7,
                ..BfdConfig::default()
            },
            metrics: Metrics::new().expect("metrics"),
        })
        .expect("BFD sockets");
        let config = SessionConfig {
            desired_min_tx: Duration::from_millis(100),
            required_min_rx: Duration::from_millis(100),
            detect_mult: 3,
        };
        for router in [ROUTER_V4, ROUTER_V6] {
            bfd.add_session(ip(router), config);
        }
        expect(&mut events, &[ip(ROUTER_V4), ip(ROUTER_V6)], Liveness::Up).await;
        let shown = bird.sessions();
        for node in [NODE_V4, NODE_V6] {
            let line = shown
                .lines()
                .find(|l| l.starts_with(node))
                .unwrap_or_else(|| panic!("BIRD shows no session with {node}:\n{shown}"));
            assert!(line.contains("Up"), "BIRD's session with {node}: {line}");
        }

        // BIRD dies without a word: our end must find out by itself.
        bird.kill();
        expect(&mut events, &[ip(ROUTER_V4), ip(ROUTER_V6)], Liveness::Down).await;
        let view = bfd.snapshot().await.expect("running");
        assert_eq!(view.counters.detections, 2);
        assert!(view.sessions.iter().all(|s| s.state == State::Down));
        bfd.shutdown().await;
    });
}
