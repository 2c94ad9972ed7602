//! Writing the node's CNI network configuration list (`10-podroute.conflist`).
//!
//! The agent calls [`write_atomic`] once the node's routes are programmed: the file's
//! appearance is what tells the kubelet the node's network is ready, so it must never be seen
//! half-written. It is written to a temporary file in the same folder, synced, then renamed
//! over the target (rename is atomic within a file system).

use crate::config::{NetConf, PLUGIN_TYPE};
use crate::version::CniVersion;
use ipnetwork::IpNetwork;
use serde_json::{Value, json};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Where the kubelet's container runtime looks for it.
pub const DEFAULT_PATH: &str = "/etc/cni/net.d/10-podroute.conflist";
/// Default network name (also the IPAM folder name).
pub const DEFAULT_NETWORK_NAME: &str = "podroute";

/// Reference plugins to chain after podroute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Chain {
    /// Append `portmap` (hostPort support, capability `portMappings`).
    pub portmap: bool,
    /// Append `bandwidth` (pod traffic shaping, capability `bandwidth`).
    pub bandwidth: bool,
}

/// What the agent knows about its node's pod network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeNetwork {
    /// `cniVersion` of the list. 1.1.0 (the default) enables GC and STATUS; chaining
    /// Debian's reference plugins (containernetworking-plugins 1.1.x, which stop at 1.0.0)
    /// needs [`CniVersion::V1_0_0`].
    pub cni_version: CniVersion,
    /// Network name; [`DEFAULT_NETWORK_NAME`] unless there is a reason to change it.
    pub name: String,
    /// The node's pod CIDR(s) (`spec.podCIDRs`), at most one per family.
    pub pod_cidrs: Vec<IpNetwork>,
    /// Pod MTU; `None` lets the plugin use the node's uplink MTU.
    pub mtu: Option<u32>,
    /// Route protocol of host routes to pods; `None` means the plugin's default (80).
    pub route_protocol: Option<u8>,
    /// File whose existence means "agent ready" for CNI STATUS; `None` disables the check.
    pub readiness_file: Option<PathBuf>,
    /// Parent folder of the IPAM store; `None` means `/var/lib/cni/networks`.
    pub data_dir: Option<PathBuf>,
    /// Chained reference plugins.
    pub chain: Chain,
}

impl NodeNetwork {
    /// A network with the defaults for the given pod CIDRs.
    pub fn new(pod_cidrs: Vec<IpNetwork>) -> Self {
        Self {
            cni_version: CniVersion::V1_1_0,
            name: DEFAULT_NETWORK_NAME.to_owned(),
            pod_cidrs,
            mtu: None,
            route_protocol: None,
            readiness_file: None,
            data_dir: None,
            chain: Chain::default(),
        }
    }
}

/// Why the conflist could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum ConflistError {
    /// The plugin would reject the configuration (e.g. two IPv4 CIDRs).
    #[error("the podroute plugin would reject this configuration: {0}")]
    Invalid(#[source] crate::error::CniError),
    /// Writing or renaming failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// File concerned.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// The conflist JSON; checked with the plugin's own parser, so the agent can never write a
/// file the plugin refuses.
pub fn render(net: &NodeNetwork) -> Result<Value, ConflistError> {
    let mut plugin = json!({
        "type": PLUGIN_TYPE,
        "ranges": net.pod_cidrs.iter().map(|c| json!({"subnet": c.to_string()})).collect::<Vec<_>>(),
    });
    if let Some(mtu) = net.mtu {
        plugin["mtu"] = json!(mtu);
    }
    if let Some(p) = net.route_protocol {
        plugin["routeProtocol"] = json!(p);
    }
    if let Some(f) = &net.readiness_file {
        plugin["readinessFile"] = json!(f);
    }
    if let Some(d) = &net.data_dir {
        plugin["dataDir"] = json!(d);
    }
    // Validate exactly what the runtime will hand the plugin: the plugin object plus the
    // list's name and cniVersion.
    let mut as_given = plugin.clone();
    as_given["cniVersion"] = json!(net.cni_version.as_str());
    as_given["name"] = json!(net.name);
    NetConf::parse(as_given.to_string().as_bytes()).map_err(ConflistError::Invalid)?;

    let mut plugins = vec![plugin];
    if net.chain.portmap {
        plugins.push(json!({"type": "portmap", "capabilities": {"portMappings": true}}));
    }
    if net.chain.bandwidth {
        plugins.push(json!({"type": "bandwidth", "capabilities": {"bandwidth": true}}));
    }
    Ok(json!({ "cniVersion": net.cni_version.as_str(), "name": net.name, "plugins": plugins }))
}

/// Writes the conflist for `net` to `path` atomically (temp file in the same folder, fsync,
/// rename). Creates the folder if needed.
pub fn write_atomic(path: &Path, net: &NodeNetwork) -> Result<(), ConflistError> {
    let body = serde_json::to_string_pretty(&render(net)?).unwrap_or_default();
    let io_err = |path: &Path| {
        let path = path.to_owned();
        move |source| ConflistError::Io { path, source }
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // A leading dot and a non-.conflist suffix keep the runtime from loading the temp file.
    let tmp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(body.as_bytes()).map_err(io_err(&tmp))?;
        f.write_all(b"\n").map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        fs::rename(&tmp, path).map_err(io_err(path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dual() -> NodeNetwork {
        NodeNetwork::new(vec![
            "10.244.1.0/24".parse().expect("cidr"),
            "fd00:10:244:1::/64".parse().expect("cidr"),
        ])
    }

    #[test]
    fn default_conflist_holds_only_podroute() {
        let v = render(&dual()).expect("valid");
        assert_eq!(v["cniVersion"], "1.1.0");
        assert_eq!(v["name"], "podroute");
        let plugins = v["plugins"].as_array().expect("array");
        assert_eq!(plugins.len(), 1);
        assert_eq!(plugins[0]["type"], "podroute");
        assert_eq!(plugins[0]["ranges"][1]["subnet"], "fd00:10:244:1::/64");
        assert!(plugins[0].get("mtu").is_none());
    }

    #[test]
    fn chain_and_options_are_written() {
        let mut net = dual();
        net.chain = Chain {
            portmap: true,
            bandwidth: true,
        };
        net.cni_version = CniVersion::V1_0_0;
        net.mtu = Some(1450);
        net.route_protocol = Some(81);
        let v = render(&net).expect("valid");
        let types: Vec<&str> = v["plugins"]
            .as_array()
            .expect("array")
            .iter()
            .filter_map(|p| p["type"].as_str())
            .collect();
        assert_eq!(types, ["podroute", "portmap", "bandwidth"]);
        assert_eq!(v["cniVersion"], "1.0.0");
        assert_eq!(v["plugins"][0]["mtu"], 1450);
        assert_eq!(v["plugins"][0]["routeProtocol"], 81);
        assert_eq!(v["plugins"][1]["capabilities"]["portMappings"], true);
    }

    #[test]
    fn refuses_what_the_plugin_would_reject() {
        let net = NodeNetwork::new(vec![
            "10.244.1.0/24".parse().expect("cidr"),
            "10.244.2.0/24".parse().expect("cidr"),
        ]);
        assert!(matches!(render(&net), Err(ConflistError::Invalid(_))));
        assert!(matches!(
            render(&NodeNetwork::new(vec![])),
            Err(ConflistError::Invalid(_))
        ));
    }

    #[test]
    fn write_atomic_replaces_the_file_and_leaves_no_temp() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("net.d/10-podroute.conflist");
        write_atomic(&path, &dual()).expect("write");
        let mut net = dual();
        net.mtu = Some(1400);
        write_atomic(&path, &net).expect("rewrite");
        let v: Value = serde_json::from_slice(&fs::read(&path).expect("read")).expect("json");
        assert_eq!(v["plugins"][0]["mtu"], 1400);
        let names: Vec<_> = fs::read_dir(path.parent().expect("dir"))
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["10-podroute.conflist"]);
    }
}
