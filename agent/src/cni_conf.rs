//! The CNI network configuration the agent writes once the node's network is ready.
//!
//! The kubelet treats the node's network as ready when a conflist exists, so the file is
//! written only after the own pod CIDR is known and the routes are programmed, and atomically
//! (temp file in the same directory, then rename) so a reader never sees half a file.
//!
//! The format follows the plugin's config (issue 5): IPAM ranges from the node's pod CIDRs,
//! chained with `portmap`. When `podroute-cni` exposes its own writer, this module delegates.

use std::io::Write;
use std::path::Path;

use ipnetwork::IpNetwork;

/// The CNI network name.
pub const NETWORK_NAME: &str = "podroute";

/// The conflist JSON for a node with `pod_cidrs`.
pub fn conflist(pod_cidrs: &[IpNetwork]) -> serde_json::Value {
    let ranges: Vec<serde_json::Value> = pod_cidrs
        .iter()
        .map(|cidr| serde_json::json!([{ "subnet": cidr.to_string() }]))
        .collect();
    serde_json::json!({
        "cniVersion": "1.1.0",
        "name": NETWORK_NAME,
        "plugins": [
            { "type": "podroute", "ipam": { "ranges": ranges } },
            { "type": "portmap", "capabilities": { "portMappings": true } }
        ]
    })
}

/// Writes `content` to `path` atomically; creates the directory if needed.
pub fn write_atomic(path: &Path, content: &serde_json::Value) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let temp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&temp)?;
        let mut text = serde_json::to_vec_pretty(content).map_err(std::io::Error::other)?;
        text.push(b'\n');
        file.write_all(&text)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflist_has_one_range_per_pod_cidr() {
        let cidrs: Vec<IpNetwork> = vec![
            "10.244.1.0/24".parse().expect("net"),
            "fd00:10:244:1::/64".parse().expect("net"),
        ];
        let value = conflist(&cidrs);
        assert_eq!(value["plugins"][0]["type"], "podroute");
        assert_eq!(
            value["plugins"][0]["ipam"]["ranges"][1][0]["subnet"],
            "fd00:10:244:1::/64"
        );
    }

    #[test]
    fn write_is_atomic_and_replaces() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("net.d/10-podroute.conflist");
        write_atomic(&path, &serde_json::json!({"a": 1})).expect("write");
        write_atomic(&path, &serde_json::json!({"a": 2})).expect("rewrite");
        let read: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
        assert_eq!(read["a"], 2);
        let leftovers = std::fs::read_dir(path.parent().expect("dir"))
            .expect("ls")
            .count();
        assert_eq!(leftovers, 1, "no temp file left behind");
    }
}
