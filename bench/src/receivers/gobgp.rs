//! GoBGP as a receiver: `gobgpd` with one passive neighbour per sender and no zebra, so it
//! keeps the routes in its RIB and programs no kernel. The RIB probe is `gobgp global rib
//! summary` (its `Path:` count) over the API on the node's loopback.

use std::fmt::Write as _;
use std::net::IpAddr;

use podroute_lab::LabProcess;

use super::{AS, RibCount, Setup, Unit, output};
use crate::error::{Result, io_err};
use crate::scenario::Family;

const API_HOST: &str = "127.0.0.1";
const API_PORT: &str = "50051";

pub(super) fn config(router_id: IpAddr, local: &[IpAddr], peers: &[IpAddr]) -> String {
    let list = local
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let mut c = format!(
        "# podroute-bench: GoBGP receiving from the benchmark's senders, RIB only.\n\
         [global.config]\n  as = {AS}\n  router-id = \"{router_id}\"\n  local-address-list = [{list}]\n"
    );
    for peer in peers {
        let afi = if peer.is_ipv4() {
            "ipv4-unicast"
        } else {
            "ipv6-unicast"
        };
        let _ = write!(
            c,
            "\n[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"{peer}\"\n    peer-as = {AS}\n  \
             [neighbors.transport.config]\n    passive-mode = true\n  \
             [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"{afi}\"\n"
        );
    }
    c
}

pub(super) fn start(setup: &Setup<'_>) -> Result<LabProcess> {
    let conf = setup.dir.join("gobgpd.toml");
    let text = config(IpAddr::V4(setup.node.ipv4), &setup.node.ips(), setup.peers);
    std::fs::write(&conf, text).map_err(io_err(format!("write {}", conf.display())))?;
    let args = [
        "-f".to_owned(),
        conf.display().to_string(),
        "-t".to_owned(),
        "toml".to_owned(),
        "-p".to_owned(),
        format!("--api-hosts={API_HOST}:{API_PORT}"),
        "--pprof-disable".to_owned(),
    ];
    Ok(setup
        .lab
        .spawn(&setup.node.name, "bench-gobgp", "gobgpd", &args, &[])?)
}

fn rib_summary(family: &str) -> Option<String> {
    output(
        "gobgp",
        &[
            "-u", API_HOST, "-p", API_PORT, "global", "rib", "summary", "-a", family,
        ],
    )
}

pub(super) fn rib(family: Family) -> Option<RibCount> {
    let family = match family {
        Family::Ipv4 => "ipv4",
        Family::Ipv6 => "ipv6",
    };
    Some(RibCount {
        value: paths(&rib_summary(family)?)?,
        unit: Unit::Paths,
        source: "gobgp global rib summary (Path:)",
    })
}

/// The `Path:` count of `gobgp global rib summary` output.
fn paths(text: &str) -> Option<u64> {
    let rest = &text[text.find("Path:")? + "Path:".len()..];
    rest.split(|c: char| !c.is_ascii_digit())
        .find(|s| !s.is_empty())?
        .parse()
        .ok()
}

pub(super) fn summary() -> Option<String> {
    let v4 = rib_summary("ipv4")?;
    let v6 = rib_summary("ipv6")?;
    Some(format!(
        "{}; {}",
        v4.trim().replace('\n', " "),
        v6.trim().replace('\n', " ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_path_count() {
        assert_eq!(
            paths("Table ipv4-unicast\nDestination: 1000, Path: 1200\n"),
            Some(1200)
        );
        assert_eq!(paths("nothing"), None);
    }

    #[test]
    fn one_passive_neighbour_per_peer() {
        let peers: Vec<IpAddr> = vec![
            "198.18.16.1".parse().expect("a"),
            "198.18.16.2".parse().expect("a"),
        ];
        let c = config("198.18.0.1".parse().expect("a"), &peers[..1], &peers);
        assert_eq!(c.matches("passive-mode = true").count(), 2);
        assert!(c.contains("neighbor-address = \"198.18.16.2\""));
    }
}
