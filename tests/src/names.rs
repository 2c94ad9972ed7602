//! Names the lab gives to things on the host: its namespaces, its directory, its interfaces.
//!
//! Every namespace carries the lab's name as a prefix so two labs (parallel tests) never collide.
//! Interfaces live inside the lab's own namespaces, so they need no prefix; they stay within the
//! kernel's 15-character limit (`IFNAMSIZ` - 1).

use std::fmt;
use std::path::PathBuf;

use crate::error::{LabError, Result};

/// Environment variable that overrides where lab directories are kept.
pub const LAB_DIR_ENV: &str = "PODROUTE_LAB_DIR";
/// Default parent of lab directories (outside the repository, so never committed).
pub const DEFAULT_LAB_ROOT: &str = "/tmp/podroute-lab";
/// Name used when the CLI is given no `--name`.
pub const DEFAULT_LAB_NAME: &str = "podroute";
/// Longest lab name accepted: keeps socket paths well under the 108-byte `sun_path` limit.
pub const MAX_LAB_NAME: usize = 32;
/// Longest pod name accepted by [`crate::Lab::add_pod`] (its veth is `p-<name>`, 15 bytes max).
pub const MAX_POD_NAME: usize = 13;

/// A validated lab name: lowercase letters, digits and `-`, starting with a letter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LabName(String);

impl LabName {
    /// Validates `name`.
    ///
    /// `-pod-` is refused because pod namespaces are `<lab>-pod-<pod>`: a lab called `a-pod-b`
    /// would own namespaces that look like lab `a`'s pods, and `down --name a` would take them.
    pub fn new(name: &str) -> Result<Self> {
        let invalid = |reason| LabError::InvalidName {
            name: name.to_owned(),
            reason,
        };
        if name.is_empty() || name.len() > MAX_LAB_NAME {
            return Err(invalid("use 1 to 32 characters"));
        }
        if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Err(invalid("start with a lowercase letter"));
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(invalid("use only lowercase letters, digits and '-'"));
        }
        if name.contains("-pod-") || name.contains("-host-") || name.ends_with('-') {
            return Err(invalid(
                "must not contain \"-pod-\" or \"-host-\" or end with '-'",
            ));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The fabric namespace: the L2 segment (bridge `br0`) and the router.
    pub fn fabric_ns(&self) -> String {
        format!("{}-fabric", self.0)
    }

    /// The control-plane namespace: etcd and kube-apiserver.
    pub fn cp_ns(&self) -> String {
        format!("{}-cp", self.0)
    }

    /// The namespace of node `index` (1-based): `<lab>-node<index>`.
    pub fn node_ns(&self, index: u8) -> String {
        format!("{}-{}", self.0, node_name(index))
    }

    /// The namespace of a host made by [`crate::Lab::add_fabric_host`].
    pub fn host_ns(&self, host: &str) -> String {
        format!("{}-host-{host}", self.0)
    }

    /// The namespace of a pod made by [`crate::Lab::add_pod`].
    pub fn pod_ns(&self, pod: &str) -> String {
        format!("{}-pod-{pod}", self.0)
    }

    /// Whether namespace `ns` belongs to this lab.
    ///
    /// Exact patterns, not a bare prefix, so lab `t` never claims lab `t-2`'s namespaces.
    pub fn owns_ns(&self, ns: &str) -> bool {
        let Some(rest) = ns
            .strip_prefix(self.0.as_str())
            .and_then(|r| r.strip_prefix('-'))
        else {
            return false;
        };
        match rest {
            "fabric" | "cp" => true,
            _ => {
                if let Some(digits) = rest.strip_prefix("node") {
                    !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())
                } else {
                    rest.strip_prefix("pod-")
                        .or_else(|| rest.strip_prefix("host-"))
                        .is_some_and(|p| !p.is_empty())
                }
            }
        }
    }

    /// The lab's directory: `${PODROUTE_LAB_DIR:-/tmp/podroute-lab}/<lab>`.
    pub fn dir(&self) -> PathBuf {
        lab_root().join(&self.0)
    }
}

impl fmt::Display for LabName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for LabName {
    type Error = LabError;
    fn try_from(s: String) -> Result<Self> {
        Self::new(&s)
    }
}

impl From<LabName> for String {
    fn from(n: LabName) -> String {
        n.0
    }
}

/// The parent directory of all lab directories.
pub fn lab_root() -> PathBuf {
    std::env::var_os(LAB_DIR_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_LAB_ROOT))
}

/// The Kubernetes and CLI name of node `index` (1-based): `node<index>`.
pub fn node_name(index: u8) -> String {
    format!("node{index}")
}

/// Parses `node<index>` back to its index.
pub fn node_index(name: &str) -> Option<u8> {
    let digits = name.strip_prefix("node")?;
    if digits.starts_with('0') {
        return None;
    }
    digits.parse().ok().filter(|i| *i >= 1)
}

/// Rack `rack`'s bridge in the fabric namespace: `br<rack>`.
pub fn rack_bridge(rack: u8) -> String {
    format!("br{rack}")
}

/// The interface in a fabric host's namespace of its own link to fabric host `other`
/// ([`crate::Lab::link_fabric_hosts`]).
pub fn host_link(other: &str) -> String {
    format!("l-{other}")
}

/// The fabric-side veth of node `index` (in the fabric namespace, enslaved to its rack's
/// bridge).
pub fn fabric_port(index: u8) -> String {
    format!("n{index}")
}

/// The bridge port (in the fabric namespace) of a host made by
/// [`crate::Lab::add_fabric_host`].
pub fn fabric_host_port(host: &str) -> String {
    format!("h-{host}")
}

/// The node-side veth of a pod made by [`crate::Lab::add_pod`].
pub fn pod_host_veth(pod: &str) -> String {
    format!("p-{pod}")
}

/// Validates a pod name for [`crate::Lab::add_pod`].
pub fn check_pod_name(pod: &str) -> Result<()> {
    let ok = !pod.is_empty()
        && pod.len() <= MAX_POD_NAME
        && pod.starts_with(|c: char| c.is_ascii_lowercase())
        && pod
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(LabError::Invalid(format!(
            "invalid pod name {pod:?}: use 1 to {MAX_POD_NAME} lowercase letters, digits or '-', starting with a letter"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_carry_the_lab_prefix() {
        let lab = LabName::new("t-updown-42").expect("valid");
        assert_eq!(lab.fabric_ns(), "t-updown-42-fabric");
        assert_eq!(lab.cp_ns(), "t-updown-42-cp");
        assert_eq!(lab.node_ns(3), "t-updown-42-node3");
        assert_eq!(lab.pod_ns("a"), "t-updown-42-pod-a");
    }

    #[test]
    fn a_lab_owns_only_its_own_namespaces() {
        let t = LabName::new("t").expect("valid");
        for ns in [
            "t-fabric",
            "t-cp",
            "t-node1",
            "t-node12",
            "t-pod-web",
            "t-host-r2",
        ] {
            assert!(t.owns_ns(ns), "{ns}");
        }
        // Namespaces of lab `t-2`, of lab `tt`, and lookalikes.
        for ns in [
            "t-2-fabric",
            "t-2-node1",
            "tt-node1",
            "t-node",
            "t-nodex",
            "t-pod-",
            "t-host-",
            "t",
            "t-cpx",
        ] {
            assert!(!t.owns_ns(ns), "{ns}");
        }
    }

    #[test]
    fn bad_lab_names_are_refused() {
        for bad in [
            "",
            "Upper",
            "1abc",
            "a_b",
            "a-pod-b",
            "a-host-b",
            "a-",
            &"x".repeat(33),
        ] {
            assert!(LabName::new(bad).is_err(), "{bad:?}");
        }
        assert!(LabName::new("podroute").is_ok());
    }

    #[test]
    fn interface_names_fit_ifnamsiz() {
        assert!(fabric_port(254).len() <= 15);
        let pod = "a".repeat(MAX_POD_NAME);
        assert!(check_pod_name(&pod).is_ok());
        assert!(pod_host_veth(&pod).len() <= 15);
        assert!(check_pod_name(&format!("{pod}a")).is_err());
    }

    #[test]
    fn node_names_round_trip() {
        assert_eq!(node_index(&node_name(7)), Some(7));
        assert_eq!(node_index("node0"), None);
        assert_eq!(node_index("node01"), None);
        assert_eq!(node_index("cp"), None);
    }
}
