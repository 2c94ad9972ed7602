//! What the agent writes for the node's CNI plugin: the network configuration, once the node's
//! network is ready, and a readiness file that exists exactly while it is.
//!
//! The kubelet treats the node's network as ready when a conflist exists, so it is written only
//! after the own pod CIDR is known and the routes are programmed. Rendering, validation (with
//! the plugin's own parser) and the atomic write belong to `podroute-cni`; this module only says
//! what the agent knows about the node. The readiness file answers CNI STATUS (spec 1.1): the
//! plugin reports "not available" while it is missing.

use std::io;
use std::path::PathBuf;

use ipnetwork::IpNetwork;
use podroute_cni::config::DEFAULT_DATA_DIR;
use podroute_cni::conflist::{
    ConflistError, DEFAULT_NETWORK_NAME, NodeNetwork, render, write_atomic,
};
use podroute_cni::ipam::{self, IpamError, IpamStore};

use crate::config::CniSettings;

/// Writes the conflist for a node with `pod_cidrs`, whose pod host routes carry
/// `route_protocol` like podroute's other routes.
pub fn write(
    settings: &CniSettings,
    pod_cidrs: &[IpNetwork],
    route_protocol: u8,
) -> Result<(), ConflistError> {
    write_atomic(
        &settings.conflist,
        &network(settings, pod_cidrs, route_protocol),
    )
}

/// True when the conflist on disk is exactly what [`write`] would write for `pod_cidrs`: an
/// earlier agent on this node wrote it, and the plugin can go on wiring pods with it while this
/// one resyncs (an unreadable or different file is not current).
pub fn is_current(settings: &CniSettings, pod_cidrs: &[IpNetwork], route_protocol: u8) -> bool {
    let Ok(on_disk) = std::fs::read(&settings.conflist) else {
        return false;
    };
    let Ok(on_disk) = serde_json::from_slice::<serde_json::Value>(&on_disk) else {
        return false;
    };
    render(&network(settings, pod_cidrs, route_protocol)).is_ok_and(|wanted| wanted == on_disk)
}

fn network(settings: &CniSettings, pod_cidrs: &[IpNetwork], route_protocol: u8) -> NodeNetwork {
    let mut network = NodeNetwork::new(pod_cidrs.to_vec());
    network.cni_version = settings.version;
    network.route_protocol = Some(route_protocol);
    network.data_dir.clone_from(&settings.data_dir);
    network.readiness_file.clone_from(&settings.readiness_file);
    network.chain = settings.chain;
    network
}

/// Pod addresses of one family: handed out by the plugin, and how many the pod CIDRs hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressUsage {
    /// `ipv4` or `ipv6`.
    pub family: &'static str,
    /// Addresses the plugin's store holds inside the pod CIDRs of that family.
    pub allocated: usize,
    /// Addresses the plugin can hand out in them.
    pub capacity: u128,
}

/// The usage of each family of `pod_cidrs` in the address store the conflist names (read
/// without its lock: a plugin running meanwhile may change it by one).
pub fn address_usage(
    settings: &CniSettings,
    pod_cidrs: &[IpNetwork],
) -> Result<Vec<AddressUsage>, IpamError> {
    let data_dir = settings
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let in_use = IpamStore::new(data_dir.join(DEFAULT_NETWORK_NAME)).allocated()?;
    let usage = |family, is_family: fn(&IpNetwork) -> bool| {
        let cidrs: Vec<&IpNetwork> = pod_cidrs.iter().filter(|c| is_family(c)).collect();
        (!cidrs.is_empty()).then(|| AddressUsage {
            family,
            allocated: in_use
                .iter()
                .filter(|a| cidrs.iter().any(|c| c.contains(**a)))
                .count(),
            capacity: cidrs
                .iter()
                .fold(0u128, |sum, c| sum.saturating_add(ipam::capacity(**c))),
        })
    };
    Ok([
        usage("ipv4", IpNetwork::is_ipv4),
        usage("ipv6", IpNetwork::is_ipv6),
    ]
    .into_iter()
    .flatten()
    .collect())
}

/// Keeps the readiness file in step with the agent's readiness; touches the file system only
/// when readiness changes (and once at start, whatever a previous run left).
#[derive(Debug)]
pub struct ReadinessFile {
    path: PathBuf,
    written: Option<bool>,
}

/// The readiness file could not be created or removed.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} the CNI readiness file {path}: {source}")]
pub struct ReadinessError {
    action: &'static str,
    path: PathBuf,
    #[source]
    source: io::Error,
}

impl ReadinessFile {
    /// The readiness file at `path`, state not yet written.
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            written: None,
        }
    }

    /// Creates (ready) or removes (not ready) the file if that changes anything.
    pub fn set(&mut self, ready: bool) -> Result<(), ReadinessError> {
        if self.written == Some(ready) {
            return Ok(());
        }
        let error = |action, source| ReadinessError {
            action,
            path: self.path.clone(),
            source,
        };
        if ready {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| error("create the folder of", e))?;
            }
            std::fs::write(&self.path, b"ready\n").map_err(|e| error("create", e))?;
        } else {
            match std::fs::remove_file(&self.path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(error("remove", e)),
            }
        }
        self.written = Some(ready);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn settings(dir: &Path) -> CniSettings {
        CniSettings {
            conflist: dir.join("net.d/10-podroute.conflist"),
            data_dir: Some(PathBuf::from("/run/lab/node1/cni")),
            readiness_file: Some(PathBuf::from("/run/podroute/cni-ready")),
            chain: podroute_cni::conflist::Chain {
                portmap: true,
                bandwidth: false,
            },
            version: podroute_cni::version::CniVersion::V1_0_0,
        }
    }

    #[test]
    fn a_conflist_is_current_only_for_the_same_pod_cidrs_and_settings() {
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = settings(dir.path());
        let cidrs: Vec<IpNetwork> = vec!["10.244.1.0/24".parse().expect("net")];
        assert!(!is_current(&settings, &cidrs, 80), "no file yet");
        write(&settings, &cidrs, 80).expect("write");
        assert!(is_current(&settings, &cidrs, 80));
        let other: Vec<IpNetwork> = vec!["10.244.2.0/24".parse().expect("net")];
        assert!(!is_current(&settings, &other, 80), "another pod CIDR");
        assert!(!is_current(&settings, &cidrs, 81), "another route protocol");
        std::fs::write(&settings.conflist, b"{not json").expect("overwrite");
        assert!(!is_current(&settings, &cidrs, 80), "garbage");
    }

    #[test]
    fn conflist_carries_what_the_agent_knows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = settings(dir.path());
        let cidrs: Vec<IpNetwork> = vec![
            "10.244.1.0/24".parse().expect("net"),
            "fd00:10:244:1::/64".parse().expect("net"),
        ];
        write(&settings, &cidrs, 80).expect("write");
        let value: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&settings.conflist).expect("read"))
                .expect("json");
        assert_eq!(value["cniVersion"], "1.0.0");
        let plugin = &value["plugins"][0];
        assert_eq!(plugin["type"], "podroute");
        assert_eq!(plugin["ranges"][1]["subnet"], "fd00:10:244:1::/64");
        assert_eq!(plugin["routeProtocol"], 80);
        assert_eq!(plugin["dataDir"], "/run/lab/node1/cni");
        assert_eq!(plugin["readinessFile"], "/run/podroute/cni-ready");
        assert_eq!(value["plugins"][1]["type"], "portmap");
        assert_eq!(value["plugins"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn readiness_file_follows_readiness() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("run/podroute/cni-ready");
        // A file left by an earlier run is removed when this run is not ready.
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, "").expect("stale file");
        let mut file = ReadinessFile::new(path.clone());
        file.set(false).expect("not ready");
        assert!(!path.exists());
        file.set(true).expect("ready");
        assert!(path.exists());
        file.set(true).expect("still ready");
        file.set(false).expect("not ready again");
        assert!(!path.exists());
    }
}
