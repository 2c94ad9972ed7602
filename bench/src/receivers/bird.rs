//! BIRD 2 as a receiver, configured the way Calico's calico/node configures its BIRD (confd's
//! `bird.cfg.template` and `bird_ipam.cfg.template`), translated to BIRD 2 syntax:
//!
//! - `protocol kernel` per family: `learn`, `persist`, `scan time 2`, `graceful restart`,
//!   `merge paths on` (ECMP), `import all`, `export filter calico_kernel_programming`. Calico's
//!   filter sets `krt_tunnel` for routes in IPIP pools (a field only its BIRD fork has) and
//!   accepts everything else; the benchmark's prefixes are in no pool, so it accepts.
//! - `protocol device { scan time 2; }` and `protocol direct` on every interface but
//!   `cali*`/`kube-ipvs*`.
//! - A `bgp_template` with `local as`, `multihop`, `gateway recursive`, `add paths on`,
//!   `graceful restart` and Calico's connect/error timers. Calico imports through a filter
//!   that only rejects its own pools' blocks and exports only pool routes; here `import all`
//!   and `export none` do the same. Unlike Calico, the sessions are `passive`: the benchmark's
//!   senders connect.
//!
//! The RIB probe asks `birdc show protocols all "bench_*"` and sums each channel's
//! `Routes: N imported`: a per-protocol counter, so asking costs BIRD nothing per route
//! (`show route count` walks the whole table, which would slow the ingest it measures; it is
//! asked once at the end instead).

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::Path;

use podroute_lab::LabProcess;

use super::{AS, RibCount, Setup, Unit, output};
use crate::error::{Result, io_err};

fn socket(dir: &Path) -> String {
    dir.join("bird.ctl").display().to_string()
}

pub(super) fn config(dir: &Path, router_id: IpAddr, local: &[IpAddr], peers: &[IpAddr]) -> String {
    let mut c = format!(
        "# podroute-bench: BIRD 2 configured as Calico's calico/node configures it.\n\
         log \"{log}\" all;\n\
         router id {router_id};\n\
         \n\
         filter calico_kernel_programming {{\n  accept;\n}}\n\
         \n",
        log = dir.join("bird.log").display(),
    );
    for fam in ["ipv4", "ipv6"] {
        let _ = write!(
            c,
            "protocol kernel kernel_{fam} {{\n  \
               learn;\n  persist;\n  scan time 2;\n  graceful restart;\n  merge paths on;\n  \
               {fam} {{ import all; export filter calico_kernel_programming; }};\n\
             }}\n\n"
        );
    }
    c.push_str(
        "protocol device {\n  scan time 2;\n}\n\n\
         protocol direct {\n  debug { states };\n  ipv4;\n  ipv6;\n  \
         interface -\"cali*\", -\"kube-ipvs*\", \"*\";\n}\n\n",
    );
    let _ = write!(
        c,
        "template bgp bgp_template {{\n  \
           debug {{ states }};\n  \
           description \"Connection to BGP peer\";\n  \
           local as {AS};\n  \
           multihop;\n  \
           graceful restart;\n  \
           connect delay time 1;\n  \
           connect retry time 3;\n  \
           error wait time 5,60;\n  \
           passive on;\n\
         }}\n\n"
    );
    for (i, peer) in peers.iter().enumerate() {
        let (fam, source) = match peer {
            IpAddr::V4(_) => ("ipv4", local.iter().find(|a| a.is_ipv4())),
            IpAddr::V6(_) => ("ipv6", local.iter().find(|a| a.is_ipv6())),
        };
        let source = source
            .map(|s| format!("  source address {s};\n"))
            .unwrap_or_default();
        let _ = write!(
            c,
            "protocol bgp bench_peer{n} from bgp_template {{\n  \
               neighbor {peer} as {AS};\n{source}  \
               {fam} {{ gateway recursive; add paths on; import all; export none; }};\n\
             }}\n",
            n = i + 1,
        );
    }
    c
}

pub(super) fn start(setup: &Setup<'_>) -> Result<LabProcess> {
    let conf = setup.dir.join("bird.conf");
    let text = config(
        &setup.dir,
        IpAddr::V4(setup.node.ipv4),
        &setup.node.ips(),
        setup.peers,
    );
    std::fs::write(&conf, text).map_err(io_err(format!("write {}", conf.display())))?;
    let d = |f: &str| setup.dir.join(f).display().to_string();
    let args = [
        "-f".to_owned(),
        "-c".to_owned(),
        d("bird.conf"),
        "-s".to_owned(),
        socket(&setup.dir),
        "-P".to_owned(),
        d("bird.pid"),
    ];
    Ok(setup
        .lab
        .spawn(&setup.node.name, "bench-bird", "bird", &args, &[])?)
}

pub(super) fn rib(dir: &Path) -> Option<RibCount> {
    let text = output(
        "birdc",
        &[
            "-s",
            &socket(dir),
            "show",
            "protocols",
            "all",
            "\"bench_*\"",
        ],
    )?;
    Some(RibCount {
        value: imported(&text)?,
        unit: Unit::Paths,
        source: "birdc show protocols all (Routes: imported)",
    })
}

/// The sum of `Routes: N imported` over the protocols in `show protocols all` output; `None`
/// if no protocol is listed.
fn imported(text: &str) -> Option<u64> {
    let mut any = false;
    let mut total = 0;
    for line in text.lines() {
        let line = line.trim_start();
        if line.starts_with("bench_") {
            any = true;
        }
        if let Some(rest) = line.strip_prefix("Routes:") {
            total += rest
                .split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    any.then_some(total)
}

pub(super) fn route_count(dir: &Path) -> Option<String> {
    let text = output("birdc", &["-s", &socket(dir), "show", "route", "count"])?;
    Some(
        text.lines()
            .filter(|l| l.contains(" routes for "))
            .collect::<Vec<_>>()
            .join("; "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_imported_routes_over_protocols() {
        let text = "BIRD 2.0.12 ready.\n\
            Name       Proto      Table      State  Since         Info\n\
            bench_peer1 BGP        ---        up     10:00:01.000  Established\n  \
              BGP state:          Established\n  \
              Channel ipv4\n    State:          UP\n    \
              Routes:         600 imported, 0 exported, 600 preferred\n\n\
            bench_peer2 BGP        ---        up     10:00:01.000  Established\n  \
              Channel ipv4\n    \
              Routes:         400 imported, 0 exported, 0 preferred\n";
        assert_eq!(imported(text), Some(1000));
        assert_eq!(imported("BIRD 2.0.12 ready.\n"), None);
    }

    #[test]
    fn config_has_calicos_kernel_options_and_one_protocol_per_peer() {
        let peers: Vec<IpAddr> = vec![
            "198.18.16.1".parse().expect("a"),
            "fd00:198:18:16::1".parse().expect("a"),
        ];
        let local: Vec<IpAddr> = vec![
            "198.18.0.1".parse().expect("a"),
            "fd00:198:18::1".parse().expect("a"),
        ];
        let c = config(Path::new("/tmp/x"), local[0], &local, &peers);
        for needle in [
            "learn;",
            "persist;",
            "scan time 2;",
            "merge paths on;",
            "export filter calico_kernel_programming;",
            "gateway recursive;",
            "neighbor fd00:198:18:16::1 as 64512;",
            "source address fd00:198:18::1;",
        ] {
            assert!(c.contains(needle), "{needle} in\n{c}");
        }
        assert_eq!(c.matches("protocol bgp bench_peer").count(), 2);
    }
}
