//! podroute-agent as a receiver: started in the node's namespace with the lab's kubeconfig, as
//! the lab tests start it, with one static peer per sender that imports everything.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use podroute_lab::LabProcess;

use super::{AS, RibCount, Setup, Unit};
use crate::error::Result;

/// The agent's metrics endpoint (its default `--http-listen`, inside the node's namespace).
const METRICS: &str = "127.0.0.1:9180";
/// The Loc-RIB size (sum over labels), once the agent exports it.
const LOC_RIB_METRIC: &str = "podroute_bgp_loc_rib_prefixes";
/// Today's agent exports no RIB count: routes it has in the kernel is the closest.
const FALLBACK_METRIC: &str = "podroute_routes_installed";

pub(super) fn start(setup: &Setup<'_>) -> Result<LabProcess> {
    let d = |f: &str| setup.dir.join(f).display().to_string();
    let mut args = vec![
        "--kubeconfig".to_owned(),
        setup.lab.kubeconfig().display().to_string(),
        "--node-name".to_owned(),
        setup.node.name.clone(),
        // Inside the lab directory, never the host's /etc/cni or /run/podroute.
        "--cni-conflist".to_owned(),
        d("10-podroute.conflist"),
        "--cni-readiness-file".to_owned(),
        d("cni-ready"),
    ];
    for peer in setup.peers {
        args.push("--bgp-peer".to_owned());
        args.push(format!(
            "address={peer},as={AS},import=0.0.0.0/0:32;::/0:128"
        ));
    }
    Ok(setup.lab.spawn(
        &setup.node.name,
        "bench-podroute",
        setup.agent_bin,
        &args,
        &[("RUST_LOG", "info")],
    )?)
}

pub(super) fn rib() -> Option<RibCount> {
    let text = metrics()?;
    if let Some(value) = sum(&text, LOC_RIB_METRIC) {
        return Some(RibCount {
            value,
            unit: Unit::Networks,
            source: LOC_RIB_METRIC,
        });
    }
    sum(&text, FALLBACK_METRIC).map(|value| RibCount {
        value,
        unit: Unit::Networks,
        source: FALLBACK_METRIC,
    })
}

/// The sum of every sample of `name` (any labels), `None` if there is none.
pub(crate) fn sum(text: &str, name: &str) -> Option<u64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        let value: f64 = rest.rsplit(' ').next()?.trim().parse().ok()?;
        *found.get_or_insert(0) += value as u64;
    }
    found
}

/// `GET /metrics`, plain HTTP/1.0 (the body ends with the connection).
pub(crate) fn metrics() -> Option<String> {
    let addr: SocketAddr = METRICS.parse().ok()?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200")
        .then(|| body.to_owned())
        .or_else(|| head.starts_with("HTTP/1.0 200").then(|| body.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_a_metric_over_its_labels() {
        let text = "# HELP podroute_bgp_loc_rib_prefixes x\n\
                    podroute_bgp_loc_rib_prefixes{family=\"ipv4\"} 100000\n\
                    podroute_bgp_loc_rib_prefixes{family=\"ipv6\"} 2\n\
                    podroute_bgp_loc_rib_prefixes_total 7\n\
                    podroute_routes_installed 5\n";
        assert_eq!(sum(text, LOC_RIB_METRIC), Some(100_002));
        assert_eq!(sum(text, FALLBACK_METRIC), Some(5));
        assert_eq!(sum(text, "podroute_nothing"), None);
    }
}
