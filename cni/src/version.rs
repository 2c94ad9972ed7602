//! CNI spec versions podroute speaks.

use crate::error::{CniError, ErrorCode};
use std::fmt;

/// Versions accepted in a network configuration, oldest first (reported by VERSION).
pub const SUPPORTED_VERSIONS: [&str; 3] = ["0.4.0", "1.0.0", "1.1.0"];

/// The newest spec version implemented.
pub const LATEST: &str = "1.1.0";

/// A supported CNI spec version; it decides the shape of results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CniVersion {
    /// 0.4.0: results carry `"version": "4"|"6"` in each IP.
    V0_4_0,
    /// 1.0.0: no `version` in IPs.
    V1_0_0,
    /// 1.1.0: adds GC and STATUS, and interface `mtu` in results.
    V1_1_0,
}

impl CniVersion {
    /// Parses a version string; anything not in [`SUPPORTED_VERSIONS`] is error code 1.
    pub fn parse(s: &str) -> Result<Self, CniError> {
        match s {
            "0.4.0" => Ok(Self::V0_4_0),
            "1.0.0" => Ok(Self::V1_0_0),
            "1.1.0" => Ok(Self::V1_1_0),
            other => Err(CniError::new(
                ErrorCode::IncompatibleVersion,
                format!(
                    "cniVersion {other:?} is not supported; supported: {}",
                    SUPPORTED_VERSIONS.join(", ")
                ),
            )),
        }
    }

    /// The version as written in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V0_4_0 => "0.4.0",
            Self::V1_0_0 => "1.0.0",
            Self::V1_1_0 => "1.1.0",
        }
    }
}

impl fmt::Display for CniVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
