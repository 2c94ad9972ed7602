//! Each router (BIRD, GoBGP, FRR) runs configured with every node as a neighbour, and really
//! peers: a BIRD speaker in node1 gets a session and its pod CIDR reflected to node2's speaker.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::{TestResult, assert_gone, unique};
use podroute_lab::{Lab, LabConfig, LabProcess, Tor};

/// Starts a BIRD in `node` that peers with the router and originates the node's pod CIDR.
fn node_speaker(lab: &Lab, node: &str) -> Result<LabProcess, Box<dyn std::error::Error>> {
    let n = lab.node(node)?;
    let conf = lab.dir().join(format!("{node}-bird.conf"));
    std::fs::write(
        &conf,
        format!(
            "router id {ip};\n\
             protocol device {{ }}\n\
             protocol static {{ ipv4; route {cidr} blackhole; }}\n\
             protocol kernel {{ ipv4 {{ import none; export where source = RTS_BGP; }}; }}\n\
             protocol bgp tor {{ local {ip} as 64512; neighbor 198.18.0.254 as 64512;\n  \
               direct; connect retry time 2;\n  ipv4 {{ next hop self; import all; export where source = RTS_STATIC; }}; }}\n",
            ip = n.ipv4,
            cidr = n.pod_cidr_v4
        ),
    )?;
    let sock = lab.dir().join(format!("{node}-bird.ctl"));
    let args = [
        "-f".as_ref(),
        "-c".as_ref(),
        conf.as_os_str(),
        "-s".as_ref(),
        sock.as_os_str(),
    ];
    Ok(lab.spawn(node, "bird", "bird", &args, &[])?)
}

fn router_peers_with_every_node(tor: Tor) -> TestResult {
    let name = unique(&format!("tor-{tor}"));
    let lab = Lab::up(
        &LabConfig::new(&name, 3)
            .tor(tor)
            .ipv6(true)
            .control_plane(false),
    )?;
    let router = lab.router().ok_or("lab has a router")?;
    assert_eq!(router.kind(), tor);

    // Configured: one session per node address, none established yet.
    let sessions = router.sessions(&lab.router_neighbors())?;
    let mut peers: Vec<IpAddr> = sessions.iter().map(|s| s.neighbor).collect();
    peers.sort();
    let mut expected: Vec<IpAddr> = lab.nodes().iter().flat_map(|n| n.ips()).collect();
    expected.sort();
    assert_eq!(peers, expected, "{sessions:?}");
    assert!(sessions.iter().all(|s| !s.established));

    // Peers for real: node1's and node2's speakers come up, node1's CIDR reaches node2.
    let _s1 = node_speaker(&lab, "node1")?;
    let _s2 = node_speaker(&lab, "node2")?;
    let node1: IpAddr = "198.18.0.1".parse()?;
    let node2: IpAddr = "198.18.0.2".parse()?;
    let up = router.wait_established(
        &lab.router_neighbors(),
        &[node1, node2],
        Duration::from_secs(45),
    );
    assert!(up, "sessions: {}", router.sessions_text()?);
    let reflected = lab.wait_for_route("node2", "10.244.1.0/24", "bird", Duration::from_secs(20));
    assert!(
        reflected,
        "router table: {}\nnode2 routes: {}",
        router.routes_text()?,
        lab.routes_json("node2")?
    );
    let via = lab.routes_to("node2", "10.244.1.0/24")?;
    assert_eq!(via[0]["gateway"], "198.18.0.1", "{via:?}");

    // A node added at runtime becomes a neighbour without restarting the router.
    let mut lab = lab;
    let node4 = lab.add_node()?;
    let sessions = router.sessions(&lab.router_neighbors())?;
    for ip in node4.ips() {
        assert!(
            sessions.iter().any(|s| s.neighbor == ip),
            "{ip} missing: {}",
            router.sessions_text()?
        );
    }
    assert!(
        sessions.iter().any(|s| s.established),
        "existing sessions survive: {sessions:?}"
    );

    drop(lab);
    assert_gone(&name);
    Ok(())
}

#[test]
#[ignore = "needs root: run by make test"]
fn bird_router_peers_with_every_node() -> TestResult {
    router_peers_with_every_node(Tor::Bird)
}

#[test]
#[ignore = "needs root: run by make test"]
fn gobgp_router_peers_with_every_node() -> TestResult {
    router_peers_with_every_node(Tor::Gobgp)
}

#[test]
#[ignore = "needs root: run by make test"]
fn frr_router_peers_with_every_node() -> TestResult {
    router_peers_with_every_node(Tor::Frr)
}
