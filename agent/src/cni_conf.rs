//! The CNI network configuration the agent writes once the node's network is ready.
//!
//! The kubelet treats the node's network as ready when a conflist exists, so it is written only
//! after the own pod CIDR is known and the routes are programmed. Rendering, validation (with
//! the plugin's own parser) and the atomic write belong to `podroute-cni`; this module only says
//! what the agent knows about the node.

use std::path::Path;

use ipnetwork::IpNetwork;
use podroute_cni::conflist::{ConflistError, NodeNetwork, write_atomic};

/// Writes the conflist for a node with `pod_cidrs`, whose pod host routes carry
/// `route_protocol` like podroute's other routes, and whose address store is `data_dir`
/// (`None`: the plugin's default).
pub fn write(
    path: &Path,
    pod_cidrs: &[IpNetwork],
    route_protocol: u8,
    data_dir: Option<&Path>,
) -> Result<(), ConflistError> {
    let mut network = NodeNetwork::new(pod_cidrs.to_vec());
    network.route_protocol = Some(route_protocol);
    network.data_dir = data_dir.map(Path::to_path_buf);
    write_atomic(path, &network)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflist_carries_the_pod_cidrs_and_route_protocol() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("net.d/10-podroute.conflist");
        let cidrs: Vec<IpNetwork> = vec![
            "10.244.1.0/24".parse().expect("net"),
            "fd00:10:244:1::/64".parse().expect("net"),
        ];
        write(&path, &cidrs, 80, Some(Path::new("/run/lab/node1/cni"))).expect("write");
        let value: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
        let plugin = &value["plugins"][0];
        assert_eq!(plugin["type"], "podroute");
        assert_eq!(plugin["ranges"][1]["subnet"], "fd00:10:244:1::/64");
        assert_eq!(plugin["routeProtocol"], 80);
        assert_eq!(plugin["dataDir"], "/run/lab/node1/cni");
    }
}
