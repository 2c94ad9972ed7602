//! Command line and environment configuration of the agent.
//!
//! [`Cli`] is what clap parses (flags, each with an environment variable so a DaemonSet can set it);
//! [`Cli::validate`] turns it into a [`Config`] or one [`ConfigError`] that says what is wrong.
//! Nothing here touches the network or the API server.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use podroute_cni::conflist::Chain;
use podroute_cni::version::CniVersion;

use crate::static_peers::{StaticPeer, StaticPeerError, parse_static_peer};

/// Route protocol numbers the kernel and other daemons own (`/etc/iproute2/rt_protos`):
/// unspec, redirect, kernel, boot, static. podroute must never claim them, or its dumps and
/// deletes, which are filtered by protocol, would take routes it did not create.
const RESERVED_ROUTE_PROTOCOLS: [u8; 5] = [0, 1, 2, 3, 4];

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Reads `--cni-chain`: names of reference plugins, comma separated, blanks ignored.
fn parse_chain(list: &str) -> Result<Chain, ConfigError> {
    let mut chain = Chain::default();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match name {
            "portmap" => chain.portmap = true,
            "bandwidth" => chain.bandwidth = true,
            other => return Err(ConfigError::UnknownChainPlugin(other.to_owned())),
        }
    }
    Ok(chain)
}

/// What `podroute-agent <command>` does instead of running the agent.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum Command {
    /// Print the running agent's status (from its `/status`) and exit: 0 when the node is
    /// ready, 1 when not, 2 when the agent cannot be asked.
    Status(StatusArgs),
    /// Print the CustomResourceDefinitions (BGPPeer, BGPConfiguration) as YAML and exit:
    /// what `manifests/crds.yaml` holds.
    Crds,
}

/// Options of `podroute-agent status`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct StatusArgs {
    /// The agent's HTTP address (its `--http-listen`, reached locally).
    #[arg(long, default_value = "127.0.0.1:9180")]
    pub address: SocketAddr,
    /// Print the JSON as the agent serves it.
    #[arg(long)]
    pub json: bool,
}

/// A path where an empty value means "none" (clap refuses empty paths by default).
fn parse_path_or_empty(s: &str) -> Result<PathBuf, String> {
    Ok(PathBuf::from(s))
}

fn parse_cni_version(s: &str) -> Result<CniVersion, String> {
    match CniVersion::parse(s) {
        Ok(v) if v >= CniVersion::V1_0_0 => Ok(v),
        Ok(v) => Err(format!(
            "{v} is too old for a conflist podroute writes (1.0.0 or 1.1.0)"
        )),
        Err(e) => Err(e.msg),
    }
}

/// What the agent writes for the node's CNI plugin once the node is ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniSettings {
    /// The conflist's path.
    pub conflist: PathBuf,
    /// The plugin's address store directory, or `None` for the plugin's default.
    pub data_dir: Option<PathBuf>,
    /// File kept while ready (CNI STATUS), or `None`.
    pub readiness_file: Option<PathBuf>,
    /// Reference plugins chained after podroute.
    pub chain: Chain,
    /// `cniVersion` of the conflist.
    pub version: CniVersion,
}

/// `podroute-agent`: distributes pod CIDR routes between Kubernetes nodes over iBGP.
#[derive(Debug, Clone, Parser)]
#[command(name = "podroute-agent", version, about)]
pub struct Cli {
    /// Without a command the agent runs.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Kubeconfig file. Without it the agent uses the in-cluster service account, then the
    /// default kubeconfig locations.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// Name of the Node object this agent runs on (set it from the downward API).
    #[arg(long, env = "NODE_NAME")]
    pub node_name: Option<String>,

    /// The agent's namespace: the Secrets that BGPPeers and the BGPConfiguration name are
    /// read from it, and only from it (set it from the downward API `metadata.namespace`).
    #[arg(long, env = "POD_NAMESPACE", default_value = "kube-system")]
    pub namespace: String,

    /// Autonomous system number of the node mesh (iBGP: every node uses the same one).
    #[arg(
        long = "as-number",
        env = "PODROUTE_AS_NUMBER",
        default_value_t = 64512
    )]
    pub as_number: u32,

    /// Address the BGP listener binds to. Default: the node IP of each family.
    #[arg(long, env = "PODROUTE_LISTEN_ADDRESS")]
    pub listen_address: Option<IpAddr>,

    /// TCP port of the BGP listener and of outgoing connections to mesh peers.
    #[arg(long, env = "PODROUTE_LISTEN_PORT", default_value_t = 179)]
    pub listen_port: u16,

    /// Kernel route protocol number that marks podroute's routes (`ip route ... proto N`).
    #[arg(long, env = "PODROUTE_ROUTE_PROTOCOL", default_value_t = 80)]
    pub route_protocol: u8,

    /// Period of the full kernel route reconcile (e.g. `30s`, `2m`, `500ms`).
    #[arg(long, env = "PODROUTE_RECONCILE_PERIOD", default_value = "30s", value_parser = parse_duration)]
    pub reconcile_period: Duration,

    /// Longest wait after start for End-of-RIB from every mesh and router peer before
    /// stale routes are removed anyway.
    #[arg(long, env = "PODROUTE_STARTUP_GRACE", default_value = "60s", value_parser = parse_duration)]
    pub startup_grace: Duration,

    /// Graceful restart (RFC 4724) with every peer: the Restart Time we advertise, i.e. how
    /// long peers keep this node's routes while the agent restarts. `0s` turns graceful
    /// restart off (no capability offered; a peer's routes go as soon as its session ends).
    #[arg(long, env = "PODROUTE_GRACEFUL_RESTART_TIME", default_value = "120s", value_parser = parse_duration)]
    pub graceful_restart_time: Duration,

    /// The longest a restarting peer's routes are kept as stale (also bounded by the restart
    /// time the peer advertised, while it is away): they go when the peer is back and sent
    /// End-of-RIB without them, or when this runs out. `0s` drops them at once. Routes of a
    /// Node deleted from the API go at once regardless.
    #[arg(long, env = "PODROUTE_STALE_ROUTES_TIME", default_value = "300s", value_parser = parse_duration)]
    pub stale_routes_time: Duration,

    /// Log format.
    #[arg(long, env = "PODROUTE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log level, or per-module filters in `RUST_LOG` syntax (`debug`,
    /// `info,podroute_agent::speaker=debug`). Wins over `RUST_LOG`; without either, `info`.
    #[arg(long, env = "PODROUTE_LOG_LEVEL", value_parser = parse_log_filter)]
    pub log_level: Option<String>,

    /// Per-peer BGP metrics (`podroute_bgp_peer_*`) for mesh peers too, not only routers:
    /// N-1 series per node each, N² over the cluster; off, mesh peers are aggregated.
    #[arg(long, env = "PODROUTE_METRICS_PER_MESH_PEER")]
    pub metrics_per_mesh_peer: bool,

    /// Address of the HTTP server for /healthz, /readyz and /metrics.
    #[arg(long, env = "PODROUTE_HTTP_LISTEN", default_value = "0.0.0.0:9180")]
    pub http_listen: SocketAddr,

    /// Node IP(s) to use instead of the Node's InternalIP: at most one IPv4 and one IPv6,
    /// comma separated. Takes precedence over the `podroute.io/node-ip` annotation.
    #[arg(long, env = "PODROUTE_NODE_IP", value_delimiter = ',')]
    pub node_ip: Vec<IpAddr>,

    /// Where the CNI network configuration is written once the node is ready.
    #[arg(
        long,
        env = "PODROUTE_CNI_CONFLIST",
        default_value = "/etc/cni/net.d/10-podroute.conflist"
    )]
    pub cni_conflist: PathBuf,

    /// Do not write the CNI network configuration (when something else manages it).
    #[arg(long, env = "PODROUTE_NO_CNI_CONFLIST")]
    pub no_cni_conflist: bool,

    /// Directory of the CNI plugin's address store, written into the conflist (default: the
    /// plugin's own, /var/lib/cni/networks). Labs with several nodes on one host set it apart.
    #[arg(long, env = "PODROUTE_CNI_DATA_DIR")]
    pub cni_data_dir: Option<PathBuf>,

    /// File that exists while the node's network is ready; the CNI plugin's STATUS answers
    /// "not available" (50) without it. Empty: no readiness file.
    #[arg(
        long,
        env = "PODROUTE_CNI_READINESS_FILE",
        default_value = "/run/podroute/cni-ready",
        value_parser = parse_path_or_empty
    )]
    pub cni_readiness_file: PathBuf,

    /// Reference plugins chained after podroute in the conflist, comma separated: `portmap`,
    /// `bandwidth`. Empty: podroute alone.
    #[arg(long, env = "PODROUTE_CNI_CHAIN", default_value = "")]
    pub cni_chain: String,

    /// `cniVersion` of the conflist: 1.1.0 enables GC and STATUS; chained plugins that stop
    /// at 1.0.0 (containernetworking-plugins before 1.5) need 1.0.0.
    #[arg(long, env = "PODROUTE_CNI_VERSION", default_value = "1.1.0", value_parser = parse_cni_version)]
    pub cni_version: CniVersion,

    /// File holding the TCP-MD5 password (RFC 2385) of every mesh session (e.g. a mounted
    /// Secret); a trailing newline is ignored. Every node must use the same one.
    #[arg(long, env = "PODROUTE_MESH_PASSWORD_FILE")]
    pub mesh_password_file: Option<PathBuf>,

    /// GTSM (RFC 5082) on mesh sessions: send with TTL 255 and accept only TTL 255, i.e. only
    /// directly connected nodes. Leave off when nodes are in different subnets.
    #[arg(long, env = "PODROUTE_MESH_GTSM")]
    pub mesh_gtsm: bool,

    /// Hold time offered to mesh peers, in seconds (0 or at least 3, RFC 4271 §4.2).
    #[arg(long, env = "PODROUTE_HOLD_TIME", default_value_t = 90)]
    pub hold_time: u16,

    /// A static external BGP peer such as a top-of-rack router, repeatable:
    /// `address=IP,as=N|any[,password-file=PATH][,gtsm=true][,import=P/L:MAX;P/L:MAX]`. iBGP
    /// if `as` is the node's AS, else eBGP (`any`: as the peer's OPEN says). Only the node's own pod CIDRs are exported to it;
    /// only prefixes its import list allows are imported (none without one). In the
    /// environment, separate several peers by spaces.
    #[arg(long = "bgp-peer", env = "PODROUTE_BGP_PEERS", value_delimiter = ' ')]
    pub bgp_peers: Vec<String>,

    /// Where the agent keeps the cluster view it routes by (the Node objects' IPs, pod CIDRs
    /// and labels, the BGPPeer and BGPConfiguration specs; never Secret data), for a restart
    /// while the API server is away (e.g. a hostPath such as
    /// `/var/lib/podroute/view.json`). Unset: nothing is kept, and a restarted agent waits
    /// for the API server.
    #[arg(long, env = "PODROUTE_STATE_FILE")]
    pub state_file: Option<PathBuf>,
}

/// The validated configuration the agent runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Explicit kubeconfig, or `None` for in-cluster / inferred configuration.
    pub kubeconfig: Option<PathBuf>,
    /// Name of the own Node object.
    pub node_name: String,
    /// Namespace of the Secrets the resources name.
    pub namespace: String,
    /// AS number of the mesh.
    pub as_number: u32,
    /// BGP listener address override.
    pub listen_address: Option<IpAddr>,
    /// BGP TCP port.
    pub bgp_port: u16,
    /// Kernel route protocol number of podroute's routes.
    pub route_protocol: u8,
    /// Period of the full kernel reconcile.
    pub reconcile_period: Duration,
    /// Longest wait for the BGP initial sync before stale routes are removed.
    pub startup_grace: Duration,
    /// Graceful restart time we advertise (zero: graceful restart off).
    pub graceful_restart_time: Duration,
    /// Longest time a restarting peer's routes are kept as stale.
    pub stale_routes_time: Duration,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter from `--log-level` (`None`: `RUST_LOG`, else `info`).
    pub log_level: Option<String>,
    /// HTTP server address.
    pub http_listen: SocketAddr,
    /// Per-peer BGP metrics for mesh peers too.
    pub metrics_per_mesh_peer: bool,
    /// Node IP override, at most one per family.
    pub node_ip_override: NodeIpOverride,
    /// What to write for the CNI plugin, or `None` when something else manages CNI.
    pub cni: Option<CniSettings>,
    /// Hold time offered to peers, in seconds.
    pub hold_time: u16,
    /// TCP-MD5 password of mesh sessions.
    pub mesh_md5_password: Option<crate::peers::Password>,
    /// GTSM on mesh sessions.
    pub mesh_gtsm: bool,
    /// Static external peers, in the order given.
    pub static_peers: Vec<StaticPeer>,
    /// Where the cluster view is kept across restarts (see [`crate::persist`]).
    pub state_file: Option<PathBuf>,
}

/// Node IP(s) chosen by the operator, one per family at most.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeIpOverride {
    /// IPv4 node IP.
    pub v4: Option<std::net::Ipv4Addr>,
    /// IPv6 node IP.
    pub v6: Option<std::net::Ipv6Addr>,
}

impl NodeIpOverride {
    /// Builds the override from a list of addresses; two of one family is an error.
    pub fn from_addrs(addrs: &[IpAddr]) -> Result<Self, NodeIpListError> {
        let mut out = Self::default();
        for addr in addrs {
            match addr {
                IpAddr::V4(a) if out.v4.is_none() => out.v4 = Some(*a),
                IpAddr::V6(a) if out.v6.is_none() => out.v6 = Some(*a),
                _ => return Err(NodeIpListError::TwoOfOneFamily(*addr)),
            }
        }
        Ok(out)
    }

    /// True if no address was given.
    pub fn is_empty(&self) -> bool {
        self.v4.is_none() && self.v6.is_none()
    }
}

/// A node IP list with more than one address of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NodeIpListError {
    /// The address is the second one of its family.
    #[error("more than one node IP of the family of {0}: give at most one IPv4 and one IPv6")]
    TwoOfOneFamily(IpAddr),
}

/// An invalid configuration; the agent prints it and exits non-zero.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// No node name given.
    #[error(
        "the node name is required: set NODE_NAME (downward API `spec.nodeName`) or --node-name"
    )]
    MissingNodeName,
    /// AS number that cannot be used.
    #[error(
        "--as-number {0} is not usable: AS 0 and AS_TRANS 23456 are reserved (RFC 7607, RFC 6793)"
    )]
    ReservedAsNumber(u32),
    /// Route protocol number owned by the kernel.
    #[error(
        "--route-protocol {0} is reserved for the kernel (0-4: unspec, redirect, kernel, boot, static); pick another, e.g. 80"
    )]
    ReservedRouteProtocol(u8),
    /// Port 0.
    #[error("--listen-port must not be 0")]
    ZeroPort,
    /// Zero reconcile period.
    #[error("--reconcile-period must be longer than 0")]
    ZeroReconcilePeriod,
    /// Hold time of 1 or 2 seconds.
    #[error("--hold-time {0} is invalid: it must be 0 or at least 3 seconds (RFC 4271 §4.2)")]
    InvalidHoldTime(u16),
    /// A graceful restart time that does not fit the capability's 12 bits.
    #[error("--graceful-restart-time {0:?} is too long: at most 4095s (RFC 4724 §3)")]
    GracefulRestartTime(Duration),
    /// Bad node IP list.
    #[error("--node-ip: {0}")]
    NodeIp(#[from] NodeIpListError),
    /// Unspecified or multicast node IP.
    #[error("--node-ip {0} cannot be a node IP (unspecified, loopback or multicast)")]
    UnusableNodeIp(IpAddr),
    /// The mesh password file cannot be read.
    #[error("--mesh-password-file {path}: {reason}")]
    MeshPassword {
        /// The file.
        path: PathBuf,
        /// What is wrong (unreadable, empty, longer than 80 bytes).
        reason: String,
    },
    /// A bad `--bgp-peer`.
    #[error("--bgp-peer '{spec}': {reason}")]
    BgpPeer {
        /// The spec as given.
        spec: String,
        /// What is wrong.
        reason: StaticPeerError,
    },
    /// Two `--bgp-peer` with one address.
    #[error("--bgp-peer: address {0} is given twice")]
    DuplicateBgpPeer(IpAddr),
    /// Empty CNI path.
    #[error("--cni-conflist must not be empty (use --no-cni-conflist to write none)")]
    EmptyCniPath,
    /// `--cni-chain` names a plugin the agent cannot chain.
    #[error("--cni-chain: {0:?} is not a plugin podroute chains (portmap, bandwidth)")]
    UnknownChainPlugin(String),
}

impl Cli {
    /// Checks every field and builds the [`Config`]; the first problem found is returned.
    pub fn validate(self) -> Result<Config, ConfigError> {
        let node_name = self
            .node_name
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .ok_or(ConfigError::MissingNodeName)?;
        if !crate::peers::usable_as(self.as_number) {
            return Err(ConfigError::ReservedAsNumber(self.as_number));
        }
        if RESERVED_ROUTE_PROTOCOLS.contains(&self.route_protocol) {
            return Err(ConfigError::ReservedRouteProtocol(self.route_protocol));
        }
        if self.listen_port == 0 {
            return Err(ConfigError::ZeroPort);
        }
        if self.reconcile_period.is_zero() {
            return Err(ConfigError::ZeroReconcilePeriod);
        }
        if self.hold_time == 1 || self.hold_time == 2 {
            return Err(ConfigError::InvalidHoldTime(self.hold_time));
        }
        if self.graceful_restart_time > Duration::from_secs(4095) {
            return Err(ConfigError::GracefulRestartTime(self.graceful_restart_time));
        }
        if let Some(bad) = self
            .node_ip
            .iter()
            .find(|ip| !crate::peers::usable_address(**ip))
        {
            return Err(ConfigError::UnusableNodeIp(*bad));
        }
        let node_ip_override = NodeIpOverride::from_addrs(&self.node_ip)?;
        let cni = if self.no_cni_conflist {
            None
        } else if self.cni_conflist.as_os_str().is_empty() {
            return Err(ConfigError::EmptyCniPath);
        } else {
            Some(CniSettings {
                conflist: self.cni_conflist,
                data_dir: self.cni_data_dir,
                readiness_file: Some(self.cni_readiness_file).filter(|p| !p.as_os_str().is_empty()),
                chain: parse_chain(&self.cni_chain)?,
                version: self.cni_version,
            })
        };
        let mesh_md5_password = match &self.mesh_password_file {
            Some(path) => Some(read_password(path)?),
            None => None,
        };
        let mut static_peers: Vec<StaticPeer> = Vec::new();
        for spec in self.bgp_peers.iter().filter(|s| !s.trim().is_empty()) {
            let peer = parse_static_peer(spec).map_err(|reason| ConfigError::BgpPeer {
                spec: spec.clone(),
                reason,
            })?;
            if static_peers.iter().any(|p| p.address == peer.address) {
                return Err(ConfigError::DuplicateBgpPeer(peer.address));
            }
            static_peers.push(peer);
        }
        Ok(Config {
            static_peers,
            state_file: self.state_file,
            mesh_md5_password,
            mesh_gtsm: self.mesh_gtsm,
            kubeconfig: self.kubeconfig,
            node_name,
            namespace: self.namespace,
            as_number: self.as_number,
            listen_address: self.listen_address,
            bgp_port: self.listen_port,
            route_protocol: self.route_protocol,
            reconcile_period: self.reconcile_period,
            startup_grace: self.startup_grace,
            graceful_restart_time: self.graceful_restart_time,
            stale_routes_time: self.stale_routes_time,
            log_format: self.log_format,
            log_level: self.log_level,
            metrics_per_mesh_peer: self.metrics_per_mesh_peer,
            http_listen: self.http_listen,
            node_ip_override,
            cni,
            hold_time: self.hold_time,
        })
    }
}

/// Reads a TCP-MD5 password: 1 to 80 bytes (the kernel's limit) after removing a trailing
/// newline.
fn read_password(path: &std::path::Path) -> Result<crate::peers::Password, ConfigError> {
    crate::static_peers::read_md5_password(path).map_err(|reason| ConfigError::MeshPassword {
        path: path.to_owned(),
        reason,
    })
}

/// Checks a `--log-level` filter with the logger's own parser, so a typo fails at start.
fn parse_log_filter(text: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::builder()
        .parse(text)
        .map(|_| text.to_owned())
        .map_err(|e| {
            format!(
                "`{text}` is not a log level or filter (e.g. debug, info,podroute_agent=debug): {e}"
            )
        })
}

/// Parses `500ms`, `30s`, `5m`, `1h` or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 500ms, 30s, 5m or 1h"))?;
    let duration = match unit {
        "ms" => Duration::from_millis(value),
        "" | "s" => Duration::from_secs(value),
        "m" => Duration::from_secs(value.saturating_mul(60)),
        "h" => Duration::from_secs(value.saturating_mul(3600)),
        _ => {
            return Err(format!(
                "`{text}` has unknown unit `{unit}` (use ms, s, m or h)"
            ));
        }
    };
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, ConfigError> {
        let mut argv = vec!["podroute-agent"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv)
            .expect("clap accepts the arguments")
            .validate()
    }

    #[test]
    fn log_level_takes_levels_and_module_filters_and_refuses_typos() {
        let config = parse(&[
            "--node-name",
            "n",
            "--log-level",
            "info,podroute_agent::speaker=debug",
        ])
        .expect("valid");
        assert_eq!(
            config.log_level.as_deref(),
            Some("info,podroute_agent::speaker=debug")
        );
        let error = Cli::try_parse_from([
            "podroute-agent",
            "--node-name",
            "n",
            "--log-level",
            "loud=verbose",
        ])
        .expect_err("a typo");
        assert!(error.to_string().contains("not a log level"), "{error}");
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let config = parse(&["--node-name", "node-1"]).expect("valid");
        assert_eq!(config.node_name, "node-1");
        assert_eq!(config.as_number, 64512);
        assert_eq!(config.bgp_port, 179);
        assert_eq!(config.route_protocol, 80);
        assert_eq!(config.reconcile_period, Duration::from_secs(30));
        assert_eq!(config.log_format, LogFormat::Text);
        assert_eq!(config.log_level, None);
        let cni = config.cni.expect("CNI settings");
        assert_eq!(
            cni.conflist,
            PathBuf::from("/etc/cni/net.d/10-podroute.conflist")
        );
        assert_eq!(
            cni.readiness_file,
            Some(PathBuf::from("/run/podroute/cni-ready"))
        );
        assert_eq!(cni.chain, Chain::default());
        assert_eq!(cni.version, CniVersion::V1_1_0);
        assert!(config.node_ip_override.is_empty());
    }

    #[test]
    fn cni_chain_version_and_readiness_file_are_read() {
        let cni = parse(&[
            "--node-name",
            "n",
            "--cni-chain",
            "portmap,bandwidth",
            "--cni-version",
            "1.0.0",
            "--cni-readiness-file",
            "",
        ])
        .expect("valid")
        .cni
        .expect("CNI settings");
        assert_eq!(
            cni.chain,
            Chain {
                portmap: true,
                bandwidth: true
            }
        );
        assert_eq!(cni.version, CniVersion::V1_0_0);
        assert_eq!(cni.readiness_file, None);
        let err = parse(&["--node-name", "n", "--cni-chain", "portmap,flannel"])
            .expect_err("unknown plugin");
        assert_eq!(err, ConfigError::UnknownChainPlugin("flannel".into()));
        let err =
            Cli::try_parse_from(["podroute-agent", "--cni-version", "0.4.0"]).expect_err("too old");
        assert!(err.to_string().contains("0.4.0"), "{err}");
        let blank = parse(&["--node-name", "n", "--cni-chain", ""]).expect("blank chain");
        assert_eq!(blank.cni.map(|c| c.chain), Some(Chain::default()));
        assert_eq!(
            parse(&["--node-name", "n", "--no-cni-conflist"]).map(|c| c.cni),
            Ok(None)
        );
    }

    #[test]
    fn missing_node_name_is_one_clear_error() {
        // NODE_NAME may be set in the test environment; a blank flag must still be rejected.
        let err = parse(&["--node-name", "  "]).expect_err("blank name");
        assert_eq!(err, ConfigError::MissingNodeName);
        assert!(err.to_string().contains("NODE_NAME"));
    }

    #[test]
    fn reserved_route_protocols_are_refused() {
        for proto in ["0", "2", "4"] {
            let err = parse(&["--node-name", "n", "--route-protocol", proto]).expect_err(proto);
            assert!(
                matches!(err, ConfigError::ReservedRouteProtocol(_)),
                "{err}"
            );
        }
        assert_eq!(
            parse(&["--node-name", "n", "--route-protocol", "5"]).map(|c| c.route_protocol),
            Ok(5)
        );
    }

    #[test]
    fn reserved_as_numbers_are_refused() {
        for asn in ["0", "23456"] {
            let err = parse(&["--node-name", "n", "--as-number", asn]).expect_err(asn);
            assert!(matches!(err, ConfigError::ReservedAsNumber(_)));
        }
        let four_octet = parse(&["--node-name", "n", "--as-number", "4200000000"]).expect("valid");
        assert_eq!(four_octet.as_number, 4_200_000_000);
    }

    #[test]
    fn route_protocol_above_255_is_a_parse_error() {
        let result = Cli::try_parse_from(["podroute-agent", "--route-protocol", "256"]);
        assert!(result.is_err());
    }

    #[test]
    fn node_ip_override_takes_one_per_family() {
        let config =
            parse(&["--node-name", "n", "--node-ip", "198.18.0.7,fd00:198:18::7"]).expect("valid");
        assert_eq!(
            config.node_ip_override.v4,
            Some("198.18.0.7".parse().expect("ip"))
        );
        assert_eq!(
            config.node_ip_override.v6,
            Some("fd00:198:18::7".parse().expect("ip"))
        );

        let err =
            parse(&["--node-name", "n", "--node-ip", "198.18.0.7,198.18.0.8"]).expect_err("two v4");
        assert!(matches!(err, ConfigError::NodeIp(_)));
        let err = parse(&["--node-name", "n", "--node-ip", "0.0.0.0"]).expect_err("unspecified");
        assert!(matches!(err, ConfigError::UnusableNodeIp(_)));
    }

    #[test]
    fn hold_time_one_or_two_is_refused() {
        assert!(matches!(
            parse(&["--node-name", "n", "--hold-time", "2"]),
            Err(ConfigError::InvalidHoldTime(2))
        ));
        assert!(matches!(
            parse(&["--node-name", "n", "--graceful-restart-time", "2h"]),
            Err(ConfigError::GracefulRestartTime(d)) if d == Duration::from_secs(7200)
        ));
        assert!(parse(&["--node-name", "n", "--hold-time", "0"]).is_ok());
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("3d").is_err());
        assert!(matches!(
            parse(&["--node-name", "n", "--reconcile-period", "0s"]),
            Err(ConfigError::ZeroReconcilePeriod)
        ));
    }

    #[test]
    fn mesh_password_is_read_from_a_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = dir.path().join("password");
        std::fs::write(&good, "s3cret\n").expect("write");
        let path = good.to_string_lossy().into_owned();
        let config = parse(&["--node-name", "n", "--mesh-password-file", &path]).expect("valid");
        assert_eq!(
            config.mesh_md5_password.as_ref().map(|p| p.expose()),
            Some("s3cret")
        );

        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").expect("write");
        let path = empty.to_string_lossy().into_owned();
        let err = parse(&["--node-name", "n", "--mesh-password-file", &path]).expect_err("empty");
        assert!(err.to_string().contains("empty"), "{err}");
        let err = parse(&[
            "--node-name",
            "n",
            "--mesh-password-file",
            "/nonexistent/pw",
        ])
        .expect_err("missing");
        assert!(matches!(err, ConfigError::MeshPassword { .. }));
    }

    #[test]
    fn bgp_peers_are_parsed_and_checked() {
        let config = parse(&[
            "--node-name",
            "n",
            "--bgp-peer",
            "address=198.18.0.254,as=64512,import=10.99.0.0/16:24",
            "--bgp-peer",
            "address=fd00:198:18::fe,as=65001",
        ])
        .expect("valid");
        assert_eq!(config.static_peers.len(), 2);
        assert_eq!(
            config.static_peers[1].remote_as,
            podroute_bgp::session::PeerAs::Is(65001)
        );
        assert!(
            parse(&["--node-name", "n"])
                .expect("valid")
                .static_peers
                .is_empty()
        );

        let err =
            parse(&["--node-name", "n", "--bgp-peer", "address=198.18.0.254"]).expect_err("no as");
        assert_eq!(
            err.to_string(),
            "--bgp-peer 'address=198.18.0.254': `as=` is required"
        );
        let err = parse(&[
            "--node-name",
            "n",
            "--bgp-peer",
            "address=198.18.0.254,as=1",
            "--bgp-peer",
            "address=198.18.0.254,as=2",
        ])
        .expect_err("twice");
        assert!(matches!(err, ConfigError::DuplicateBgpPeer(_)));
    }

    #[test]
    fn cni_conflist_can_be_disabled() {
        let config = parse(&["--node-name", "n", "--no-cni-conflist"]).expect("valid");
        assert_eq!(config.cni, None);
    }
}
