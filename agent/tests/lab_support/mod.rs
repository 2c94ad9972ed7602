//! Helpers shared by the lab tests (interop, lab_agent, lab_ingest).

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeSet;

use podroute_lab::Lab;

/// podroute's routes (protocol 80) on `node`: `blackhole <cidr>`, `unicast <dst>` or
/// `<cidr> via <gateway>`.
pub fn podroute_routes(lab: &Lab, node: &str) -> BTreeSet<String> {
    let routes = lab.routes_json(node).expect("routes");
    routes
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["protocol"] == "80" || r["protocol"] == 80)
        .map(|r| {
            let dst = r["dst"].as_str().unwrap_or("?");
            match r["gateway"].as_str() {
                Some(gw) => format!("{dst} via {gw}"),
                None => format!("{} {dst}", r["type"].as_str().unwrap_or("unicast")),
            }
        })
        .collect()
}

/// A metric's value from the agent on `node` (the first sample with exactly this name and
/// labels, e.g. `podroute_bgp_sessions{peer_type="mesh",state="established"}`).
pub fn metric(lab: &Lab, node: &str, name: &str) -> Option<f64> {
    let text = lab
        .exec_ok(node, &["curl", "-sf", "http://127.0.0.1:9180/metrics"])
        .ok()?;
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}
