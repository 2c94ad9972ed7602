//! The podroute network configuration (the plugin's stdin) and its validation.
//!
//! Every field is checked on its own so that a wrong field is reported with the spec's error
//! code and the field's name: 6 when stdin is not JSON, 1 for an unsupported `cniVersion`,
//! 2 for a field podroute refuses (`ipam`, unknown keys inside a range), 4 for any other
//! invalid value.
//!
//! ```json
//! {
//!   "cniVersion": "1.1.0", "name": "podroute", "type": "podroute",
//!   "ranges": [{"subnet": "10.244.1.0/24"}, {"subnet": "fd00:10:244:1::/64"}],
//!   "mtu": 1500, "routeProtocol": 80, "dataDir": "/var/lib/cni/networks",
//!   "readinessFile": "/run/podroute/ready", "lockTimeoutMs": 10000
//! }
//! ```

use crate::error::{CniError, ErrorCode};
use crate::version::CniVersion;
use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::time::Duration;

/// The `type` this plugin answers to (and its binary name).
pub const PLUGIN_TYPE: &str = "podroute";
/// Route protocol number podroute's kernel routes carry unless configured.
pub const DEFAULT_ROUTE_PROTOCOL: u8 = 80;
/// Where IPAM state lives unless `dataDir` says otherwise (one folder per network name).
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";
/// How long ADD/DEL/GC wait for the IPAM lock before answering code 11.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// Smallest IPv4 MTU (RFC 791 section 3.2 "every internet module must be able to forward a
/// datagram of 68 octets").
const MIN_MTU: u64 = 68;
const MAX_MTU: u64 = 65535;
/// Route protocols 0–4 belong to the kernel (unspec, redirect, kernel, boot, static).
const MIN_ROUTE_PROTOCOL: u64 = 5;

/// The node's pod CIDR(s): at most one range per address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PodRanges {
    /// IPv4 pod CIDR, pods get a /32 from it.
    pub v4: Option<Ipv4Network>,
    /// IPv6 pod CIDR, pods get a /128 from it.
    pub v6: Option<Ipv6Network>,
}

/// One attachment named in `cni.dev/valid-attachments` (GC).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Attachment {
    /// `CNI_CONTAINERID` of the attachment.
    pub container_id: String,
    /// `CNI_IFNAME` of the attachment.
    pub ifname: String,
}

/// A validated podroute network configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    /// `cniVersion`: decides the shape of the result.
    pub cni_version: CniVersion,
    /// `name`: the network name, also the IPAM folder name.
    pub name: String,
    /// `mtu`: MTU for both veth ends; `None` means the node's uplink MTU.
    pub mtu: Option<u32>,
    /// `routeProtocol`: protocol number of the host routes to pods.
    pub route_protocol: u8,
    /// `ranges`: the node's pod CIDR(s).
    pub ranges: PodRanges,
    /// `dataDir`: parent of the IPAM store folder.
    pub data_dir: PathBuf,
    /// `readinessFile`: STATUS answers 50 while this file does not exist.
    pub readiness_file: Option<PathBuf>,
    /// `lockTimeoutMs`: how long to wait for the IPAM lock.
    pub lock_timeout: Duration,
    /// `prevResult` as given (CHECK, and chained DEL), decoded by the command that needs it.
    pub prev_result: Option<Value>,
    /// `cni.dev/valid-attachments` (GC only).
    pub valid_attachments: Option<Vec<Attachment>>,
}

fn invalid(msg: impl Into<String>) -> CniError {
    CniError::new(ErrorCode::InvalidConfig, msg)
}

impl NetConf {
    /// Parses and validates the configuration read from stdin.
    pub fn parse(bytes: &[u8]) -> Result<Self, CniError> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| {
            CniError::with_details(
                ErrorCode::Decode,
                "network configuration is not valid JSON",
                e,
            )
        })?;
        let Value::Object(obj) = value else {
            return Err(CniError::new(
                ErrorCode::Decode,
                "network configuration must be a JSON object",
            ));
        };
        Self::from_object(&obj)
    }

    fn from_object(obj: &Map<String, Value>) -> Result<Self, CniError> {
        let cni_version = match obj.get("cniVersion") {
            Some(Value::String(s)) => CniVersion::parse(s)?,
            Some(_) => return Err(invalid("cniVersion must be a string")),
            None => return Err(invalid("cniVersion is missing")),
        };
        let name = match obj.get("name") {
            Some(Value::String(s)) if is_valid_network_name(s) => s.clone(),
            Some(Value::String(s)) => {
                return Err(invalid(format!(
                    "name {s:?} is invalid: it must start with a letter or digit and hold only \
                     letters, digits, '_', '.' and '-'"
                )));
            }
            Some(_) => return Err(invalid("name must be a string")),
            None => return Err(invalid("name is missing")),
        };
        match obj.get("type") {
            Some(Value::String(s)) if s == PLUGIN_TYPE => {}
            Some(other) => {
                return Err(invalid(format!(
                    "type must be {PLUGIN_TYPE:?}, got {other}"
                )));
            }
            None => return Err(invalid("type is missing")),
        }
        if obj.contains_key("ipam") {
            return Err(CniError::new(
                ErrorCode::UnsupportedField,
                "field ipam is not supported: podroute has built-in IPAM, list the node's pod \
                 CIDRs in ranges",
            ));
        }
        let mtu = match obj.get("mtu") {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_u64() {
                Some(m) if (MIN_MTU..=MAX_MTU).contains(&m) => Some(m as u32),
                _ => {
                    return Err(invalid(format!(
                        "mtu must be an integer from {MIN_MTU} to {MAX_MTU}, got {v}"
                    )));
                }
            },
        };
        let route_protocol = match obj.get("routeProtocol") {
            None | Some(Value::Null) => DEFAULT_ROUTE_PROTOCOL,
            Some(v) => match v.as_u64() {
                Some(p) if (MIN_ROUTE_PROTOCOL..=255).contains(&p) => p as u8,
                _ => {
                    return Err(invalid(format!(
                        "routeProtocol must be an integer from {MIN_ROUTE_PROTOCOL} to 255 \
                         (0-4 belong to the kernel), got {v}"
                    )));
                }
            },
        };
        let ranges = parse_ranges(obj.get("ranges"))?;
        let data_dir = match obj.get("dataDir") {
            None | Some(Value::Null) => PathBuf::from(DEFAULT_DATA_DIR),
            Some(Value::String(s)) if s.starts_with('/') => PathBuf::from(s),
            Some(v) => {
                return Err(invalid(format!(
                    "dataDir must be an absolute path, got {v}"
                )));
            }
        };
        let readiness_file = match obj.get("readinessFile") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.starts_with('/') => Some(PathBuf::from(s)),
            Some(v) => {
                return Err(invalid(format!(
                    "readinessFile must be an absolute path, got {v}"
                )));
            }
        };
        let lock_timeout = match obj.get("lockTimeoutMs") {
            None | Some(Value::Null) => DEFAULT_LOCK_TIMEOUT,
            Some(v) => match v.as_u64() {
                Some(ms) if ms > 0 => Duration::from_millis(ms),
                _ => {
                    return Err(invalid(format!(
                        "lockTimeoutMs must be a positive integer, got {v}"
                    )));
                }
            },
        };
        let prev_result = match obj.get("prevResult") {
            None | Some(Value::Null) => None,
            Some(v @ Value::Object(_)) => Some(v.clone()),
            Some(_) => return Err(invalid("prevResult must be an object")),
        };
        let valid_attachments = match obj.get("cni.dev/valid-attachments") {
            None | Some(Value::Null) => None,
            Some(v) => Some(parse_attachments(v)?),
        };
        Ok(Self {
            cni_version,
            name,
            mtu,
            route_protocol,
            ranges,
            data_dir,
            readiness_file,
            lock_timeout,
            prev_result,
            valid_attachments,
        })
    }

    /// The folder holding this network's IPAM state.
    pub fn store_dir(&self) -> PathBuf {
        self.data_dir.join(&self.name)
    }
}

/// CNI spec "Configuration format": a network name starts with an alphanumeric character and
/// holds only alphanumerics, `_`, `.` and `-`.
pub(crate) fn is_valid_network_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn parse_ranges(value: Option<&Value>) -> Result<PodRanges, CniError> {
    let entries = match value {
        Some(Value::Array(a)) if !a.is_empty() => a,
        Some(Value::Array(_)) => return Err(invalid("ranges is empty: give at least one subnet")),
        Some(_) => return Err(invalid("ranges must be an array of {\"subnet\": CIDR}")),
        None => return Err(invalid("ranges is missing: give the node's pod CIDR(s)")),
    };
    let mut ranges = PodRanges::default();
    for (i, entry) in entries.iter().enumerate() {
        let Value::Object(range) = entry else {
            return Err(invalid(format!("ranges[{i}] must be an object")));
        };
        if let Some(key) = range.keys().find(|k| k.as_str() != "subnet") {
            return Err(CniError::new(
                ErrorCode::UnsupportedField,
                format!("field ranges[{i}].{key} is not supported: a range is just a subnet"),
            ));
        }
        let subnet = match range.get("subnet") {
            Some(Value::String(s)) => s,
            _ => return Err(invalid(format!("ranges[{i}].subnet must be a CIDR string"))),
        };
        let net: IpNetwork = subnet.parse().map_err(|e| {
            CniError::with_details(
                ErrorCode::InvalidConfig,
                format!("ranges[{i}].subnet {subnet:?} is not a CIDR"),
                e,
            )
        })?;
        if net.network() != net.ip() {
            return Err(invalid(format!(
                "ranges[{i}].subnet {subnet} has host bits set; did you mean {}/{}?",
                net.network(),
                net.prefix()
            )));
        }
        match net {
            IpNetwork::V4(n) => {
                if n.prefix() > 30 {
                    return Err(invalid(format!(
                        "ranges[{i}].subnet {subnet} is too small: an IPv4 range needs /30 or larger"
                    )));
                }
                if ranges.v4.replace(n).is_some() {
                    return Err(invalid(
                        "ranges holds two IPv4 subnets; give one per family",
                    ));
                }
            }
            IpNetwork::V6(n) => {
                if n.prefix() > 126 {
                    return Err(invalid(format!(
                        "ranges[{i}].subnet {subnet} is too small: an IPv6 range needs /126 or larger"
                    )));
                }
                if ranges.v6.replace(n).is_some() {
                    return Err(invalid(
                        "ranges holds two IPv6 subnets; give one per family",
                    ));
                }
            }
        }
    }
    Ok(ranges)
}

fn parse_attachments(value: &Value) -> Result<Vec<Attachment>, CniError> {
    let Value::Array(items) = value else {
        return Err(invalid("cni.dev/valid-attachments must be an array"));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let id = item.get("containerID").and_then(Value::as_str);
            let ifname = item.get("ifname").and_then(Value::as_str);
            match (id, ifname) {
                (Some(id), Some(ifname)) => Ok(Attachment {
                    container_id: id.to_owned(),
                    ifname: ifname.to_owned(),
                }),
                _ => Err(invalid(format!(
                    "cni.dev/valid-attachments[{i}] needs string containerID and ifname"
                ))),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Value {
        json!({
            "cniVersion": "1.1.0",
            "name": "podroute",
            "type": "podroute",
            "ranges": [{"subnet": "10.244.1.0/24"}, {"subnet": "fd00:10:244:1::/64"}]
        })
    }

    fn parse(v: &Value) -> Result<NetConf, CniError> {
        NetConf::parse(v.to_string().as_bytes())
    }

    fn code_with(field: &str, value: Value) -> u32 {
        let mut v = base();
        v[field] = value;
        parse(&v)
            .expect_err("config should be rejected")
            .code
            .as_u32()
    }

    fn code_without(field: &str) -> u32 {
        let mut v = base();
        v.as_object_mut().expect("object").remove(field);
        parse(&v)
            .expect_err("config should be rejected")
            .code
            .as_u32()
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse(&base()).expect("valid");
        assert_eq!(c.cni_version, CniVersion::V1_1_0);
        assert_eq!(c.route_protocol, 80);
        assert_eq!(c.mtu, None);
        assert_eq!(
            c.ranges.v4.map(|n| n.to_string()).as_deref(),
            Some("10.244.1.0/24")
        );
        assert_eq!(
            c.ranges.v6.map(|n| n.to_string()).as_deref(),
            Some("fd00:10:244:1::/64")
        );
        assert_eq!(
            c.store_dir(),
            PathBuf::from("/var/lib/cni/networks/podroute")
        );
        assert_eq!(c.lock_timeout, DEFAULT_LOCK_TIMEOUT);
    }

    #[test]
    fn all_optional_fields_are_read() {
        let mut v = base();
        v["mtu"] = json!(1400);
        v["routeProtocol"] = json!(99);
        v["dataDir"] = json!("/tmp/x");
        v["readinessFile"] = json!("/run/podroute/ready");
        v["lockTimeoutMs"] = json!(250);
        v["cni.dev/valid-attachments"] = json!([{"containerID": "a", "ifname": "eth0"}]);
        let c = parse(&v).expect("valid");
        assert_eq!(c.mtu, Some(1400));
        assert_eq!(c.route_protocol, 99);
        assert_eq!(c.store_dir(), PathBuf::from("/tmp/x/podroute"));
        assert_eq!(c.readiness_file, Some(PathBuf::from("/run/podroute/ready")));
        assert_eq!(c.lock_timeout, Duration::from_millis(250));
        assert_eq!(c.valid_attachments.map(|a| a.len()), Some(1));
    }

    #[test]
    fn older_spec_versions_are_accepted() {
        for version in ["0.4.0", "1.0.0"] {
            let mut v = base();
            v["cniVersion"] = json!(version);
            assert_eq!(parse(&v).expect("valid").cni_version.as_str(), version);
        }
    }

    #[test]
    fn not_json_is_decode_error() {
        let e = NetConf::parse(b"{not json").expect_err("rejected");
        assert_eq!(e.code.as_u32(), 6);
        assert_eq!(
            NetConf::parse(b"[1]").expect_err("rejected").code.as_u32(),
            6
        );
    }

    #[test]
    fn unsupported_version_is_code_1() {
        assert_eq!(code_with("cniVersion", json!("0.3.1")), 1);
        assert_eq!(code_with("cniVersion", json!("2.0.0")), 1);
    }

    #[test]
    fn missing_or_mistyped_version_is_code_4() {
        assert_eq!(code_without("cniVersion"), 4);
        assert_eq!(code_with("cniVersion", json!(1)), 4);
    }

    #[test]
    fn bad_name_is_code_4() {
        assert_eq!(code_without("name"), 4);
        assert_eq!(code_with("name", json!("-bad")), 4);
        assert_eq!(code_with("name", json!("a/b")), 4);
        assert_eq!(code_with("name", json!(7)), 4);
    }

    #[test]
    fn wrong_type_is_code_4() {
        assert_eq!(code_without("type"), 4);
        assert_eq!(code_with("type", json!("ptp")), 4);
    }

    #[test]
    fn ipam_section_is_unsupported_field() {
        assert_eq!(code_with("ipam", json!({"type": "host-local"})), 2);
    }

    #[test]
    fn bad_mtu_is_code_4() {
        assert_eq!(code_with("mtu", json!(67)), 4);
        assert_eq!(code_with("mtu", json!(70000)), 4);
        assert_eq!(code_with("mtu", json!("1500")), 4);
        assert_eq!(code_with("mtu", json!(-1)), 4);
    }

    #[test]
    fn bad_route_protocol_is_code_4() {
        assert_eq!(code_with("routeProtocol", json!(4)), 4);
        assert_eq!(code_with("routeProtocol", json!(256)), 4);
        assert_eq!(code_with("routeProtocol", json!("bgp")), 4);
    }

    #[test]
    fn bad_ranges_are_code_4() {
        assert_eq!(code_without("ranges"), 4);
        assert_eq!(code_with("ranges", json!([])), 4);
        assert_eq!(code_with("ranges", json!("10.244.1.0/24")), 4);
        assert_eq!(code_with("ranges", json!([{"subnet": "10.244.1.0/33"}])), 4);
        assert_eq!(code_with("ranges", json!([{"subnet": "banana"}])), 4);
        assert_eq!(code_with("ranges", json!([{"subnet": "10.244.1.1/24"}])), 4);
        assert_eq!(code_with("ranges", json!([{"subnet": "10.244.1.0/31"}])), 4);
        assert_eq!(code_with("ranges", json!([{"subnet": "fd00::/127"}])), 4);
        assert_eq!(code_with("ranges", json!([{}])), 4);
        assert_eq!(code_with("ranges", json!(["10.244.1.0/24"])), 4);
        assert_eq!(
            code_with(
                "ranges",
                json!([{"subnet": "10.244.1.0/24"}, {"subnet": "10.244.2.0/24"}])
            ),
            4
        );
    }

    #[test]
    fn unknown_range_key_is_unsupported_field() {
        assert_eq!(
            code_with(
                "ranges",
                json!([{"subnet": "10.244.1.0/24", "gateway": "10.244.1.1"}])
            ),
            2
        );
    }

    #[test]
    fn bad_paths_and_timeouts_are_code_4() {
        assert_eq!(code_with("dataDir", json!("relative/dir")), 4);
        assert_eq!(code_with("dataDir", json!(3)), 4);
        assert_eq!(code_with("readinessFile", json!("ready")), 4);
        assert_eq!(code_with("lockTimeoutMs", json!(0)), 4);
        assert_eq!(code_with("lockTimeoutMs", json!("1s")), 4);
    }

    #[test]
    fn bad_prev_result_and_attachments_are_code_4() {
        assert_eq!(code_with("prevResult", json!("x")), 4);
        assert_eq!(code_with("cni.dev/valid-attachments", json!({})), 4);
        assert_eq!(
            code_with("cni.dev/valid-attachments", json!([{"containerID": "a"}])),
            4
        );
    }
}
