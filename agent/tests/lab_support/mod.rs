//! Helpers shared by the lab tests (interop, lab_agent).

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
