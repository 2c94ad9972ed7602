//! The `CNI_*` environment variables (CNI spec 1.1.0, "Parameters").

use crate::error::{CniError, ErrorCode};
use std::path::PathBuf;

/// The operation asked for in `CNI_COMMAND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Attach a container to the network.
    Add,
    /// Detach a container; must succeed when things are already gone.
    Del,
    /// Verify an attachment against its prevResult.
    Check,
    /// Report the supported spec versions.
    Version,
    /// Release every attachment not listed as valid.
    Gc,
    /// Tell whether the plugin is ready for ADD.
    Status,
}

/// The variables a command needs, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniEnv {
    /// `CNI_COMMAND`.
    pub command: Command,
    /// `CNI_CONTAINERID` (ADD, DEL, CHECK).
    pub container_id: Option<String>,
    /// `CNI_NETNS`: path of the container's network namespace (ADD, CHECK; optional on DEL).
    pub netns: Option<PathBuf>,
    /// `CNI_IFNAME`: interface name inside the container (ADD, DEL, CHECK).
    pub ifname: Option<String>,
}

fn invalid(msg: impl Into<String>) -> CniError {
    CniError::new(ErrorCode::InvalidEnv, msg)
}

impl CniEnv {
    /// Reads and validates the variables through `get` (e.g. `|k| std::env::var(k).ok()`).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, CniError> {
        let command = match get("CNI_COMMAND").as_deref() {
            Some("ADD") => Command::Add,
            Some("DEL") => Command::Del,
            Some("CHECK") => Command::Check,
            Some("VERSION") => Command::Version,
            Some("GC") => Command::Gc,
            Some("STATUS") => Command::Status,
            Some(other) => return Err(invalid(format!("CNI_COMMAND {other:?} is not known"))),
            None => return Err(invalid("CNI_COMMAND is not set")),
        };
        let per_container = matches!(command, Command::Add | Command::Del | Command::Check);
        let non_empty = |k: &str| get(k).filter(|v| !v.is_empty());
        let (mut container_id, mut netns, mut ifname) = (None, None, None);
        if per_container {
            let id = non_empty("CNI_CONTAINERID")
                .ok_or_else(|| invalid("CNI_CONTAINERID is not set"))?;
            if !is_valid_container_id(&id) {
                return Err(invalid(format!(
                    "CNI_CONTAINERID {id:?} is invalid: letters, digits, '_', '.', '-' only, \
                     starting with a letter or digit"
                )));
            }
            let name = non_empty("CNI_IFNAME").ok_or_else(|| invalid("CNI_IFNAME is not set"))?;
            if !is_valid_ifname(&name) {
                return Err(invalid(format!(
                    "CNI_IFNAME {name:?} is not a valid Linux interface name (1-15 bytes, no '/', \
                     ':' or whitespace, not '.' or '..')"
                )));
            }
            netns = non_empty("CNI_NETNS").map(PathBuf::from);
            if netns.is_none() && command != Command::Del {
                return Err(invalid("CNI_NETNS is not set"));
            }
            container_id = Some(id);
            ifname = Some(name);
        }
        if let Some(args) = non_empty("CNI_ARGS") {
            // CNI_ARGS is "K=V;K2=V2"; podroute reads none, but a malformed value is the
            // runtime's bug and the spec says to report it.
            if args
                .split(';')
                .any(|kv| !kv.is_empty() && !kv.contains('='))
            {
                return Err(invalid(format!(
                    "CNI_ARGS {args:?} is not a list of KEY=VALUE pairs"
                )));
            }
        }
        Ok(Self {
            command,
            container_id,
            netns,
            ifname,
        })
    }
}

/// CNI spec: a container ID is alphanumeric plus `_`, `.` and `-`, starting alphanumeric.
fn is_valid_container_id(s: &str) -> bool {
    crate::config::is_valid_network_name(s)
}

/// Linux `dev_valid_name`: 1 to 15 bytes (IFNAMSIZ - 1), not "." or "..", no '/', ':' or
/// whitespace.
pub(crate) fn is_valid_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s != "."
        && s != ".."
        && !s.chars().any(|c| c == '/' || c == ':' || c.is_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Result<CniEnv, CniError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        CniEnv::from_lookup(|k| map.get(k).cloned())
    }

    const ADD: [(&str, &str); 4] = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "abc123"),
        ("CNI_NETNS", "/run/netns/x"),
        ("CNI_IFNAME", "eth0"),
    ];

    fn add_with(key: &str, value: Option<&str>) -> Result<CniEnv, CniError> {
        let mut pairs: Vec<(&str, &str)> = ADD.iter().copied().filter(|(k, _)| *k != key).collect();
        if let Some(v) = value {
            pairs.push((key, v));
        }
        env(&pairs)
    }

    #[test]
    fn add_env_is_read() {
        let e = env(&ADD).expect("valid");
        assert_eq!(e.command, Command::Add);
        assert_eq!(e.container_id.as_deref(), Some("abc123"));
        assert_eq!(e.ifname.as_deref(), Some("eth0"));
    }

    #[test]
    fn each_missing_or_bad_variable_is_code_7() {
        for (key, value) in [
            ("CNI_COMMAND", None),
            ("CNI_COMMAND", Some("ATTACH")),
            ("CNI_CONTAINERID", None),
            ("CNI_CONTAINERID", Some("has space")),
            ("CNI_IFNAME", None),
            ("CNI_IFNAME", Some("much-too-long-name0")),
            ("CNI_IFNAME", Some("a/b")),
            ("CNI_NETNS", None),
            ("CNI_ARGS", Some("IgnoreUnknown")),
        ] {
            let err = add_with(key, value).expect_err(key);
            assert_eq!(err.code, ErrorCode::InvalidEnv, "{key}={value:?}");
        }
    }

    #[test]
    fn kubelet_style_cni_args_are_accepted() {
        let args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;";
        assert!(add_with("CNI_ARGS", Some(args)).is_ok());
    }

    #[test]
    fn del_does_not_need_a_netns() {
        let e = env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "a"),
            ("CNI_IFNAME", "eth0"),
        ])
        .expect("valid");
        assert_eq!(e.netns, None);
    }

    #[test]
    fn version_gc_status_need_only_the_command() {
        for cmd in ["VERSION", "GC", "STATUS"] {
            assert!(env(&[("CNI_COMMAND", cmd)]).is_ok(), "{cmd}");
        }
    }
}
