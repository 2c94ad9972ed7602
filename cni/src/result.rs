//! The ADD result (CNI spec 1.1.0 "Success"), written per requested version and read back as
//! `prevResult`.
//!
//! 0.4.0 differs from 1.x by a `"version": "4"|"6"` member in each IP; 1.1.0 adds the
//! interface `mtu`. Everything else has the same shape.

use crate::error::{CniError, ErrorCode};
use crate::version::CniVersion;
use ipnetwork::IpNetwork;
use serde_json::{Map, Value, json};
use std::net::IpAddr;

/// One interface the plugin created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Interface name.
    pub name: String,
    /// MAC address, `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// MTU (written for 1.1.0 results only).
    pub mtu: Option<u32>,
    /// Netns path for the container side; `None` for the host side.
    pub sandbox: Option<String>,
}

/// One address given to the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpConfig {
    /// Address with prefix length, e.g. `10.244.1.5/32`.
    pub address: IpNetwork,
    /// Gateway the container routes through.
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces` of the interface holding the address.
    pub interface: Option<usize>,
}

/// One route installed in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Destination prefix.
    pub dst: IpNetwork,
    /// Next hop, if not on-link.
    pub gw: Option<IpAddr>,
}

/// What ADD reports and CHECK verifies.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AddResult {
    /// Interfaces created (host side first, then the container side).
    pub interfaces: Vec<Interface>,
    /// Addresses given.
    pub ips: Vec<IpConfig>,
    /// Routes installed in the container.
    pub routes: Vec<Route>,
}

fn decode(msg: impl Into<String>) -> CniError {
    CniError::new(ErrorCode::Decode, msg)
}

impl AddResult {
    /// The result JSON in the shape of `version`.
    pub fn to_json(&self, version: CniVersion) -> Value {
        let interfaces: Vec<Value> = self
            .interfaces
            .iter()
            .map(|i| {
                let mut o = Map::new();
                o.insert("name".into(), json!(i.name));
                o.insert("mac".into(), json!(i.mac));
                if let (Some(mtu), CniVersion::V1_1_0) = (i.mtu, version) {
                    o.insert("mtu".into(), json!(mtu));
                }
                if let Some(s) = &i.sandbox {
                    o.insert("sandbox".into(), json!(s));
                }
                Value::Object(o)
            })
            .collect();
        let ips: Vec<Value> = self
            .ips
            .iter()
            .map(|ip| {
                let mut o = Map::new();
                if version == CniVersion::V0_4_0 {
                    let family = if ip.address.is_ipv4() { "4" } else { "6" };
                    o.insert("version".into(), json!(family));
                }
                o.insert("address".into(), json!(ip.address.to_string()));
                if let Some(gw) = ip.gateway {
                    o.insert("gateway".into(), json!(gw.to_string()));
                }
                if let Some(idx) = ip.interface {
                    o.insert("interface".into(), json!(idx));
                }
                Value::Object(o)
            })
            .collect();
        let routes: Vec<Value> = self
            .routes
            .iter()
            .map(|r| {
                let mut o = Map::new();
                o.insert("dst".into(), json!(r.dst.to_string()));
                if let Some(gw) = r.gw {
                    o.insert("gw".into(), json!(gw.to_string()));
                }
                Value::Object(o)
            })
            .collect();
        json!({
            "cniVersion": version.as_str(),
            "interfaces": interfaces,
            "ips": ips,
            "routes": routes,
            "dns": {},
        })
    }

    /// Reads a result (a `prevResult`) of any supported version; unknown members are ignored
    /// because chained plugins may add their own.
    pub fn from_json(v: &Value) -> Result<Self, CniError> {
        let mut result = AddResult::default();
        for (i, iface) in array(v, "interfaces")?.iter().enumerate() {
            let name = iface
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| decode(format!("prevResult.interfaces[{i}].name is missing")))?;
            result.interfaces.push(Interface {
                name: name.to_owned(),
                mac: iface
                    .get("mac")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                mtu: iface
                    .get("mtu")
                    .and_then(Value::as_u64)
                    .and_then(|m| u32::try_from(m).ok()),
                sandbox: iface
                    .get("sandbox")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            });
        }
        for (i, ip) in array(v, "ips")?.iter().enumerate() {
            let address = ip
                .get("address")
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<IpNetwork>().ok())
                .ok_or_else(|| decode(format!("prevResult.ips[{i}].address is not a CIDR")))?;
            let gateway =
                optional_ip(ip.get("gateway"), || format!("prevResult.ips[{i}].gateway"))?;
            let interface = match ip.get("interface") {
                None | Some(Value::Null) => None,
                Some(idx) => Some(
                    idx.as_u64()
                        .and_then(|n| usize::try_from(n).ok())
                        .ok_or_else(|| {
                            decode(format!("prevResult.ips[{i}].interface is not an index"))
                        })?,
                ),
            };
            result.ips.push(IpConfig {
                address,
                gateway,
                interface,
            });
        }
        for (i, route) in array(v, "routes")?.iter().enumerate() {
            let dst = route
                .get("dst")
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<IpNetwork>().ok())
                .ok_or_else(|| decode(format!("prevResult.routes[{i}].dst is not a CIDR")))?;
            let gw = optional_ip(route.get("gw"), || format!("prevResult.routes[{i}].gw"))?;
            result.routes.push(Route { dst, gw });
        }
        Ok(result)
    }
}

fn array<'a>(v: &'a Value, key: &str) -> Result<&'a [Value], CniError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(decode(format!("prevResult.{key} must be an array"))),
    }
}

fn optional_ip(v: Option<&Value>, what: impl Fn() -> String) -> Result<Option<IpAddr>, CniError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => s
            .parse()
            .map(Some)
            .map_err(|_| decode(format!("{} is not an IP address", what()))),
        Some(_) => Err(decode(format!("{} must be a string", what()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> AddResult {
        AddResult {
            interfaces: vec![
                Interface {
                    name: "pr0123456789abc".into(),
                    mac: "aa:bb:cc:dd:ee:01".into(),
                    mtu: Some(1500),
                    sandbox: None,
                },
                Interface {
                    name: "eth0".into(),
                    mac: "aa:bb:cc:dd:ee:02".into(),
                    mtu: Some(1500),
                    sandbox: Some("/run/netns/p".into()),
                },
            ],
            ips: vec![
                IpConfig {
                    address: "10.244.1.2/32".parse().expect("cidr"),
                    gateway: Some("169.254.1.1".parse().expect("ip")),
                    interface: Some(1),
                },
                IpConfig {
                    address: "fd00:10:244:1::2/128".parse().expect("cidr"),
                    gateway: Some("fe80::1".parse().expect("ip")),
                    interface: Some(1),
                },
            ],
            routes: vec![
                Route {
                    dst: "0.0.0.0/0".parse().expect("cidr"),
                    gw: Some("169.254.1.1".parse().expect("ip")),
                },
                Route {
                    dst: "::/0".parse().expect("cidr"),
                    gw: Some("fe80::1".parse().expect("ip")),
                },
            ],
        }
    }

    #[test]
    fn v1_1_result_has_mtu_and_no_ip_version() {
        let v = sample().to_json(CniVersion::V1_1_0);
        assert_eq!(v["cniVersion"], "1.1.0");
        assert_eq!(v["interfaces"][1]["sandbox"], "/run/netns/p");
        assert_eq!(v["interfaces"][1]["mtu"], 1500);
        assert!(v["interfaces"][0].get("sandbox").is_none());
        assert!(v["ips"][0].get("version").is_none());
        assert_eq!(v["ips"][0]["address"], "10.244.1.2/32");
        assert_eq!(v["ips"][1]["gateway"], "fe80::1");
        assert_eq!(v["ips"][1]["interface"], 1);
        assert_eq!(v["routes"][0]["dst"], "0.0.0.0/0");
        assert!(v["dns"].is_object());
    }

    #[test]
    fn v1_0_result_has_no_mtu() {
        let v = sample().to_json(CniVersion::V1_0_0);
        assert_eq!(v["cniVersion"], "1.0.0");
        assert!(v["interfaces"][1].get("mtu").is_none());
        assert!(v["ips"][0].get("version").is_none());
    }

    #[test]
    fn v0_4_result_has_ip_versions() {
        let v = sample().to_json(CniVersion::V0_4_0);
        assert_eq!(v["cniVersion"], "0.4.0");
        assert_eq!(v["ips"][0]["version"], "4");
        assert_eq!(v["ips"][1]["version"], "6");
    }

    #[test]
    fn results_read_back_in_every_version() {
        for version in [CniVersion::V0_4_0, CniVersion::V1_0_0, CniVersion::V1_1_0] {
            let back = AddResult::from_json(&sample().to_json(version)).expect("decodes");
            assert_eq!(back.ips, sample().ips);
            assert_eq!(back.routes, sample().routes);
            assert_eq!(back.interfaces[1].sandbox.as_deref(), Some("/run/netns/p"));
        }
    }

    #[test]
    fn malformed_prev_result_is_decode_error() {
        let e = AddResult::from_json(&json!({"ips": [{"address": "nope"}]})).expect_err("bad");
        assert_eq!(e.code, ErrorCode::Decode);
        let e = AddResult::from_json(&json!({"routes": "x"})).expect_err("bad");
        assert_eq!(e.code, ErrorCode::Decode);
    }
}
