//! The six CNI operations: ADD, DEL, CHECK, VERSION, GC and STATUS.
//!
//! Pod wiring (the same scheme Calico uses, so pods need no ARP for the node's addresses):
//! - pod side `CNI_IFNAME`: `<ip>/32` (and `<ip6>/128`), a link route to 169.254.1.1 and the
//!   default route via it (IPv6: default via fe80::1), plus permanent neighbour entries for
//!   both gateways pointing at the host veth's MAC, so the first packet needs no resolution;
//! - host side `pr<hash>`: proxy ARP (and a proxy NDP entry for fe80::1) so the node answers
//!   for the gateway anyway, forwarding on, DAD off, and a `/32` (`/128`) route to the pod
//!   with podroute's route protocol.

use crate::config::{Attachment, NetConf};
use crate::env::{CniEnv, Command};
use crate::error::{CniError, ErrorCode};
use crate::ipam::{Allocation, IpamStore};
use crate::naming::host_veth_name;
use crate::netlink::{LinkState, Netlink, NetlinkError, RouteSpec};
use crate::netns::{self, NetnsError};
use crate::release::{self, PodSideError};
use crate::result::{AddResult, Interface, IpConfig, Route};
use crate::sysctl::{self, SysctlError};
use crate::version::{CniVersion, LATEST, SUPPORTED_VERSIONS};
use ipnetwork::IpNetwork;
use serde_json::{Value, json};
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

/// The IPv4 gateway every pod routes through (link-local, answered by the host veth).
pub const GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// The IPv6 gateway every pod routes through.
pub const GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
/// Route protocol of routes inside the pod (`boot`, what `ip route add` uses).
const POD_ROUTE_PROTOCOL: u8 = 3;
/// Test-only: when set to a stage name (`after-ipam`, `after-veth`), ADD prints
/// `podroute: stalled at <stage>` on stderr at that stage and sleeps, so a kernel test can
/// `kill -9` the plugin at a known point.
pub const STALL_ENV: &str = "PODROUTE_TEST_STALL";

/// A failed command: the error and the version to report it in.
#[derive(Debug)]
pub struct Failure {
    /// The error.
    pub error: CniError,
    /// `cniVersion` for the error JSON (the config's, else the newest).
    pub cni_version: String,
}

impl From<NetlinkError> for CniError {
    fn from(e: NetlinkError) -> Self {
        CniError::with_details(ErrorCode::Io, "netlink operation failed", e)
    }
}

impl From<NetnsError> for CniError {
    fn from(e: NetnsError) -> Self {
        CniError::with_details(ErrorCode::Io, "network namespace operation failed", e)
    }
}

impl From<PodSideError> for CniError {
    fn from(e: PodSideError) -> Self {
        CniError::with_details(
            ErrorCode::Io,
            "cannot release the pod's interface in its network namespace",
            e,
        )
    }
}

impl From<SysctlError> for CniError {
    fn from(e: SysctlError) -> Self {
        CniError::with_details(ErrorCode::Io, "sysctl write failed", e)
    }
}

/// Runs the command named by the environment on the configuration in `stdin`; returns what
/// to print on stdout (nothing for DEL, CHECK, GC and STATUS).
pub fn execute(env: Result<CniEnv, CniError>, stdin: &[u8]) -> Result<Option<Value>, Failure> {
    let fail_raw = |error: CniError| Failure {
        error,
        cni_version: raw_version(stdin),
    };
    let env = env.map_err(fail_raw)?;
    if env.command == Command::Version {
        return Ok(Some(version_reply(stdin)));
    }
    let conf = NetConf::parse(stdin).map_err(fail_raw)?;
    let fail = |error: CniError| Failure {
        error,
        cni_version: conf.cni_version.to_string(),
    };
    match env.command {
        Command::Add => add(&conf, &env).map(Some),
        Command::Del => del(&conf, &env).map(|()| None),
        Command::Check => check(&conf, &env).map(|()| None),
        Command::Gc => needs_1_1(&conf, "GC")
            .and_then(|()| gc(&conf))
            .map(|()| None),
        Command::Status => needs_1_1(&conf, "STATUS")
            .and_then(|()| status(&conf))
            .map(|()| None),
        Command::Version => Ok(Some(version_reply(stdin))),
    }
    .map_err(fail)
}

/// `cniVersion` of a configuration that did not parse, for the error reply.
fn raw_version(stdin: &[u8]) -> String {
    serde_json::from_slice::<Value>(stdin)
        .ok()
        .and_then(|v| {
            v.get("cniVersion")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .filter(|v| SUPPORTED_VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| LATEST.to_owned())
}

fn version_reply(stdin: &[u8]) -> Value {
    json!({ "cniVersion": raw_version(stdin), "supportedVersions": SUPPORTED_VERSIONS })
}

fn needs_1_1(conf: &NetConf, what: &str) -> Result<(), CniError> {
    if conf.cni_version < CniVersion::V1_1_0 {
        return Err(CniError::new(
            ErrorCode::IncompatibleVersion,
            format!(
                "{what} needs cniVersion 1.1.0, the configuration says {}",
                conf.cni_version
            ),
        ));
    }
    Ok(())
}

fn attachment(env: &CniEnv) -> Result<Attachment, CniError> {
    match (&env.container_id, &env.ifname) {
        (Some(id), Some(ifname)) => Ok(Attachment {
            container_id: id.clone(),
            ifname: ifname.clone(),
        }),
        _ => Err(CniError::new(
            ErrorCode::InvalidEnv,
            "CNI_CONTAINERID and CNI_IFNAME are required",
        )),
    }
}

fn netns_path(env: &CniEnv) -> Result<&Path, CniError> {
    env.netns
        .as_deref()
        .ok_or_else(|| CniError::new(ErrorCode::InvalidEnv, "CNI_NETNS is not set"))
}

fn stall(stage: &str) {
    if std::env::var(STALL_ENV).is_ok_and(|s| s == stage) {
        eprintln!("podroute: stalled at {stage}");
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

fn host_prefix(addr: IpAddr) -> IpNetwork {
    let len = if addr.is_ipv4() { 32 } else { 128 };
    // A full-length prefix is always valid.
    IpNetwork::new(addr, len).unwrap_or_else(|_| IpNetwork::from(addr))
}

fn default_route(v6: bool) -> IpNetwork {
    if v6 {
        IpNetwork::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0)
    } else {
        IpNetwork::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)
    }
    .unwrap_or_else(|_| IpNetwork::from(IpAddr::V4(Ipv4Addr::UNSPECIFIED)))
}

/// ADD: allocate, wire, report. On failure everything this call set up is undone.
fn add(conf: &NetConf, env: &CniEnv) -> Result<Value, CniError> {
    let owner = attachment(env)?;
    let path = netns_path(env)?;
    let ns = netns::open(path)?;
    let store = IpamStore::new(conf.store_dir());
    // Written before the lock, so that other plugins do not wait while it is.
    let record = store.new_record(&owner);
    let alloc = store
        .lock(conf.lock_timeout)?
        .allocate(&record, &conf.ranges)?;
    stall("after-ipam");
    match wire(conf, &owner, path, &ns, alloc) {
        Ok(result) => Ok(result.to_json(conf.cni_version)),
        Err(e) => {
            // Best effort: leave neither a veth nor an address behind; the runtime will also
            // call DEL, which finds nothing left to do.
            if let Ok(nl) = Netlink::connect() {
                let _ = nl.delete_link(&host_veth_name(&owner.container_id, &owner.ifname));
            }
            if let Ok(locked) = store.lock(conf.lock_timeout) {
                let _ = locked.release(&owner);
            }
            Err(e)
        }
    }
}

fn wire(
    conf: &NetConf,
    owner: &Attachment,
    path: &Path,
    ns: &File,
    alloc: Allocation,
) -> Result<AddResult, CniError> {
    let nl = Netlink::connect()?;
    let host_name = host_veth_name(&owner.container_id, &owner.ifname);
    let ifname = owner.ifname.as_str();
    let mtu = match conf.mtu {
        Some(m) => m,
        None => nl.uplink_mtu()?,
    };
    // A repeated ADD finds both ends in place and only re-applies settings (idempotent); a
    // host veth without its pod side is a leftover of an interrupted ADD, and a released one
    // (DEL ran, the namespace lives on) belongs to nobody: both are replaced.
    let existing = nl.link(&host_name)?;
    let complete = match &existing {
        Some(link) if !release::is_released(link) => {
            netns::run_in(ns, path, || Netlink::connect()?.link(ifname))??.is_some()
        }
        _ => false,
    };
    if !complete {
        if let Some(link) = &existing {
            nl.delete_index(link.index, &host_name)?;
        }
        // An IPv6 host end must not come up before its `accept_dad` is off (configure_host):
        // its link-local address would wait out duplicate address detection.
        create_veth(&nl, &host_name, ifname, ns, mtu, alloc.v6.is_none())?;
    }
    stall("after-veth");
    let host = nl.link(&host_name)?.ok_or_else(|| {
        CniError::new(
            ErrorCode::Io,
            format!("host veth {host_name} vanished after creation"),
        )
    })?;
    configure_host(conf, &nl, &host_name, &host, alloc)?;
    let pod = netns::run_in(ns, path, || configure_pod(ifname, alloc, &host.mac_bytes))??;

    let gateway_of = |a: IpAddr| -> IpAddr {
        if a.is_ipv4() {
            IpAddr::V4(GATEWAY_V4)
        } else {
            IpAddr::V6(GATEWAY_V6)
        }
    };
    let addresses = alloc.addresses();
    Ok(AddResult {
        interfaces: vec![
            Interface {
                name: host_name,
                mac: host.mac.clone(),
                mtu: Some(host.mtu),
                sandbox: None,
            },
            Interface {
                name: ifname.to_owned(),
                mac: pod.mac,
                mtu: Some(pod.mtu),
                sandbox: Some(path.display().to_string()),
            },
        ],
        ips: addresses
            .iter()
            .map(|a| IpConfig {
                address: host_prefix(*a),
                gateway: Some(gateway_of(*a)),
                interface: Some(1),
            })
            .collect(),
        routes: addresses
            .iter()
            .map(|a| Route {
                dst: default_route(a.is_ipv6()),
                gw: Some(gateway_of(*a)),
            })
            .collect(),
    })
}

/// Creates the pair. An existing `ifname` in the pod is an error (CNI spec: the plugin must not
/// take over an interface of the requested name).
fn create_veth(
    nl: &Netlink,
    host_name: &str,
    ifname: &str,
    ns: &File,
    mtu: u32,
    host_up: bool,
) -> Result<(), CniError> {
    nl.create_veth(host_name, ifname, ns, mtu, host_up)
        .map_err(|e| {
            CniError::with_details(
                ErrorCode::Io,
                format!("cannot create the veth pair (does {ifname} already exist in the pod?)"),
                e,
            )
        })
}

fn configure_host(
    conf: &NetConf,
    nl: &Netlink,
    name: &str,
    host: &LinkState,
    alloc: Allocation,
) -> Result<(), CniError> {
    // Proxy ARP makes the host veth answer for 169.254.1.1; proxy_delay 0 answers at once
    // instead of after a random delay of up to 0.8 s.
    sysctl::set(&format!("net/ipv4/conf/{name}/proxy_arp"), "1")?;
    sysctl::set(&format!("net/ipv4/neigh/{name}/proxy_delay"), "0")?;
    sysctl::set(&format!("net/ipv4/conf/{name}/forwarding"), "1")?;
    if alloc.v6.is_some() {
        // DAD off: the host side's link-local address is usable at once (it is the source of
        // neighbour solicitations for the pod's address).
        sysctl::set(&format!("net/ipv6/conf/{name}/accept_dad"), "0")?;
        sysctl::set(&format!("net/ipv6/conf/{name}/accept_ra"), "0")?;
        sysctl::set(&format!("net/ipv6/conf/{name}/proxy_ndp"), "1")?;
        sysctl::set(&format!("net/ipv6/conf/{name}/forwarding"), "1")?;
    }
    if !host.up {
        nl.set_up(host.index)?;
    }
    if alloc.v6.is_some() {
        nl.replace_neighbour(host.index, IpAddr::V6(GATEWAY_V6), None, true)?;
    }
    for addr in alloc.addresses() {
        nl.replace_route(RouteSpec {
            dst: host_prefix(addr),
            gw: None,
            oif: host.index,
            protocol: conf.route_protocol,
        })?;
    }
    Ok(())
}

/// Runs in the pod's namespace.
fn configure_pod(ifname: &str, alloc: Allocation, host_mac: &[u8]) -> Result<LinkState, CniError> {
    let nl = Netlink::connect()?;
    let link = nl.link(ifname)?.ok_or_else(|| {
        CniError::new(
            ErrorCode::Io,
            format!("{ifname} is missing in the pod netns after creation"),
        )
    })?;
    if alloc.v6.is_some() {
        sysctl::set(&format!("net/ipv6/conf/{ifname}/accept_dad"), "0")?;
    }
    if !link.up {
        nl.set_up(link.index)?;
    }
    let route = |dst: IpNetwork, gw: Option<IpAddr>| {
        nl.replace_route(RouteSpec {
            dst,
            gw,
            oif: link.index,
            protocol: POD_ROUTE_PROTOCOL,
        })
    };
    if let Some(v4) = alloc.v4 {
        let gw = IpAddr::V4(GATEWAY_V4);
        nl.replace_address(link.index, IpAddr::V4(v4), 32)?;
        route(host_prefix(gw), None)?;
        route(default_route(false), Some(gw))?;
        nl.replace_neighbour(link.index, gw, Some(host_mac), false)?;
    }
    if let Some(v6) = alloc.v6 {
        let gw = IpAddr::V6(GATEWAY_V6);
        nl.replace_address(link.index, IpAddr::V6(v6), 128)?;
        route(default_route(true), Some(gw))?;
        nl.replace_neighbour(link.index, gw, Some(host_mac), false)?;
    }
    Ok(link)
}

/// DEL: release the veth pair (see [`crate::release`]: both ends down, the pod's interface
/// renamed and without addresses; the namespace teardown destroys the pair) and free the
/// addresses. Succeeds when the netns, the veth or the record is already gone.
fn del(conf: &NetConf, env: &CniEnv) -> Result<(), CniError> {
    let owner = attachment(env)?;
    let nl = Netlink::connect()?;
    // Release first: the addresses are free for new pods only once this pod is cut off and
    // has given them up.
    if let Some(host) = nl.link(&host_veth_name(&owner.container_id, &owner.ifname))?
        && release::release_host_veth(&nl, &host)?
        && let Some(path) = env.netns.as_deref()
        // No namespace (any more): the pair went with it, or never reached it.
        && let Ok(ns) = netns::open(path)
    {
        release::release_pod_side(&ns, path, &owner.ifname, &host)?;
    }
    IpamStore::new(conf.store_dir())
        .lock(conf.lock_timeout)?
        .release(&owner)?;
    Ok(())
}

fn check_failed(msg: String) -> CniError {
    CniError::new(ErrorCode::CheckFailed, msg)
}

/// CHECK: the IPAM record, the host veth and routes, and the pod's interface, addresses and
/// routes must all match prevResult.
fn check(conf: &NetConf, env: &CniEnv) -> Result<(), CniError> {
    let owner = attachment(env)?;
    let path = netns_path(env)?;
    let prev = conf.prev_result.as_ref().ok_or_else(|| {
        CniError::new(
            ErrorCode::InvalidConfig,
            "CHECK needs prevResult in the configuration",
        )
    })?;
    let prev = AddResult::from_json(prev)?;
    let ifname = owner.ifname.as_str();
    let iface_idx = prev
        .interfaces
        .iter()
        .position(|i| i.name == ifname && i.sandbox.is_some())
        .ok_or_else(|| check_failed(format!("prevResult has no sandbox interface {ifname}")))?;
    let expected: Vec<IpNetwork> = prev
        .ips
        .iter()
        .filter(|ip| ip.interface.is_none_or(|i| i == iface_idx))
        .map(|ip| ip.address)
        .collect();

    let held = IpamStore::new(conf.store_dir())
        .lock(conf.lock_timeout)?
        .lookup(&owner)?;
    if held.addresses().is_empty() {
        return Err(CniError::new(
            ErrorCode::UnknownContainer,
            format!(
                "no addresses are allocated to container {} interface {ifname}",
                owner.container_id
            ),
        ));
    }
    for net in &expected {
        if !held.addresses().contains(&net.ip()) {
            return Err(check_failed(format!(
                "address {net} is not allocated to this container"
            )));
        }
    }

    let nl = Netlink::connect()?;
    let host_name = host_veth_name(&owner.container_id, ifname);
    let host = nl
        .link(&host_name)?
        .ok_or_else(|| check_failed(format!("host veth {host_name} is missing")))?;
    if !host.up {
        return Err(check_failed(format!("host veth {host_name} is down")));
    }
    for net in &expected {
        let want = host_prefix(net.ip());
        let found = nl.routes(net.is_ipv6())?.into_iter().any(|r| {
            r.dst == want && r.oif == Some(host.index) && r.protocol == conf.route_protocol
        });
        if !found {
            return Err(check_failed(format!(
                "host route {want} dev {host_name} proto {} is missing",
                conf.route_protocol
            )));
        }
    }

    let ns = netns::open(path).map_err(|e| {
        CniError::with_details(
            ErrorCode::UnknownContainer,
            "the pod's network namespace is gone",
            e,
        )
    })?;
    let want_mac = prev.interfaces[iface_idx].mac.to_lowercase();
    netns::run_in(&ns, path, || -> Result<(), CniError> {
        let nl = Netlink::connect()?;
        let link = nl.link(ifname)?.ok_or_else(|| {
            check_failed(format!(
                "interface {ifname} is missing in {}",
                path.display()
            ))
        })?;
        if !want_mac.is_empty() && link.mac != want_mac {
            return Err(check_failed(format!(
                "{ifname} has MAC {} but prevResult says {want_mac}",
                link.mac
            )));
        }
        if !link.up {
            return Err(check_failed(format!("{ifname} is down")));
        }
        let addrs = nl.addresses(link.index)?;
        for net in &expected {
            if !addrs.contains(net) {
                return Err(check_failed(format!(
                    "address {net} is missing on {ifname}"
                )));
            }
        }
        for route in &prev.routes {
            let found = nl
                .routes(route.dst.is_ipv6())?
                .into_iter()
                .any(|r| r.dst == route.dst && r.gw == route.gw && r.oif == Some(link.index));
            if !found {
                let via = route.gw.map(|g| format!(" via {g}")).unwrap_or_default();
                return Err(check_failed(format!(
                    "route {}{via} is missing on {ifname}",
                    route.dst
                )));
            }
        }
        Ok(())
    })??;
    Ok(())
}

/// GC (spec 1.1.0): release every attachment not in `cni.dev/valid-attachments` and destroy
/// its host veth if one is left, and every veth DEL released whose namespace lives on.
fn gc(conf: &NetConf) -> Result<(), CniError> {
    let valid = conf.valid_attachments.as_deref().ok_or_else(|| {
        CniError::new(
            ErrorCode::InvalidConfig,
            "GC needs cni.dev/valid-attachments",
        )
    })?;
    let nl = Netlink::connect()?;
    {
        let locked = IpamStore::new(conf.store_dir()).lock(conf.lock_timeout)?;
        let mut stale: Vec<Attachment> = locked
            .records()?
            .into_iter()
            .filter_map(|(_, owner)| owner)
            .filter(|o| !valid.contains(o))
            .collect();
        stale.sort();
        stale.dedup();
        // Cut the stale pods off before their addresses go back to the store.
        for owner in &stale {
            if let Some(host) = nl.link(&host_veth_name(&owner.container_id, &owner.ifname))? {
                release::release_host_veth(&nl, &host)?;
            }
        }
        locked.retain(valid)?;
    }
    // Destroying is slow (~20 ms a pair): done without the lock, so ADDs go on meanwhile.
    release::destroy_released(&nl)?;
    Ok(())
}

/// STATUS (spec 1.1.0): ready unless `readinessFile` is configured and missing.
fn status(conf: &NetConf) -> Result<(), CniError> {
    match &conf.readiness_file {
        Some(file) if !file.exists() => Err(CniError::new(
            ErrorCode::NotAvailable,
            format!(
                "podroute agent is not ready: {} does not exist",
                file.display()
            ),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(cmd: Command) -> Result<CniEnv, CniError> {
        Ok(CniEnv {
            command: cmd,
            container_id: None,
            netns: None,
            ifname: None,
        })
    }

    fn conf(version: &str, extra: Value) -> Vec<u8> {
        let mut v = json!({
            "cniVersion": version, "name": "n", "type": "podroute",
            "ranges": [{"subnet": "10.244.1.0/24"}],
        });
        if let (Value::Object(o), Value::Object(e)) = (&mut v, extra) {
            o.extend(e);
        }
        v.to_string().into_bytes()
    }

    #[test]
    fn version_lists_supported_versions() {
        let out = execute(env(Command::Version), br#"{"cniVersion":"1.0.0"}"#)
            .expect("ok")
            .expect("output");
        assert_eq!(out["cniVersion"], "1.0.0");
        assert_eq!(out["supportedVersions"], json!(["0.4.0", "1.0.0", "1.1.0"]));
    }

    #[test]
    fn status_follows_the_readiness_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ready = dir.path().join("ready");
        let stdin = conf("1.1.0", json!({"readinessFile": ready}));
        let err = execute(env(Command::Status), &stdin).expect_err("not ready");
        assert_eq!(err.error.code.as_u32(), 50);
        assert_eq!(err.cni_version, "1.1.0");
        std::fs::write(&ready, "").expect("touch");
        assert!(
            execute(env(Command::Status), &stdin)
                .expect("ready")
                .is_none()
        );
    }

    #[test]
    fn gc_and_status_need_1_1() {
        let err = execute(env(Command::Status), &conf("1.0.0", json!({}))).expect_err("old");
        assert_eq!(err.error.code.as_u32(), 1);
        assert_eq!(err.cni_version, "1.0.0");
    }

    #[test]
    fn gc_without_records_or_attachments() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stdin = conf("1.1.0", json!({"dataDir": dir.path()}));
        let err = execute(env(Command::Gc), &stdin).expect_err("no list");
        assert_eq!(err.error.code.as_u32(), 4);
    }

    #[test]
    fn bad_config_error_uses_its_version_when_supported() {
        let err =
            execute(env(Command::Add), br#"{"cniVersion":"0.4.0","name":"n"}"#).expect_err("bad");
        assert_eq!(err.cni_version, "0.4.0");
        assert_eq!(err.error.code.as_u32(), 4);
        let err = execute(env(Command::Add), b"nope").expect_err("bad");
        assert_eq!(
            (err.cni_version.as_str(), err.error.code.as_u32()),
            ("1.1.0", 6)
        );
    }
}
