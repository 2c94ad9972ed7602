//! The CNI error object and the spec's well-known error codes.
//!
//! CNI spec 1.1.0, section "Error": a plugin that fails prints
//! `{"cniVersion", "code", "msg", "details"}` on stdout and exits non-zero. Codes 1–99 are
//! reserved by the spec; 100 and up are this plugin's own.

use serde_json::{Value, json};
use std::fmt;

/// The error codes podroute returns (spec codes first, then plugin codes ≥ 100).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// 1: incompatible CNI version.
    IncompatibleVersion,
    /// 2: unsupported field in the network configuration.
    UnsupportedField,
    /// 3: container unknown or does not exist.
    UnknownContainer,
    /// 4: invalid network configuration.
    InvalidConfig,
    /// 5: I/O failure.
    Io,
    /// 6: failed to decode content.
    Decode,
    /// 7: invalid environment variables.
    InvalidEnv,
    /// 11: try again later (the IPAM lock was not obtained in time).
    TryAgainLater,
    /// 50: the plugin is not available (the agent is not ready).
    NotAvailable,
    /// 100: every address of the node's range is taken.
    RangeExhausted,
    /// 101: CHECK found the attachment different from its prevResult.
    CheckFailed,
}

impl ErrorCode {
    /// The number written in the `code` field.
    pub fn as_u32(self) -> u32 {
        match self {
            Self::IncompatibleVersion => 1,
            Self::UnsupportedField => 2,
            Self::UnknownContainer => 3,
            Self::InvalidConfig => 4,
            Self::Io => 5,
            Self::Decode => 6,
            Self::InvalidEnv => 7,
            Self::TryAgainLater => 11,
            Self::NotAvailable => 50,
            Self::RangeExhausted => 100,
            Self::CheckFailed => 101,
        }
    }
}

/// A failure as the CNI spec reports it: a code, a short message and details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    /// Which spec (or plugin) error this is.
    pub code: ErrorCode,
    /// Short human-readable message.
    pub msg: String,
    /// Longer explanation (the underlying cause), may be empty.
    pub details: String,
}

impl CniError {
    /// An error with a message and no details.
    pub fn new(code: ErrorCode, msg: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// An error with a message and details (usually the underlying cause).
    pub fn with_details(
        code: ErrorCode,
        msg: impl Into<String>,
        details: impl fmt::Display,
    ) -> Self {
        Self {
            code,
            msg: msg.into(),
            details: details.to_string(),
        }
    }

    /// The spec's JSON error object for the given result version.
    pub fn to_json(&self, cni_version: &str) -> Value {
        let mut v = json!({
            "cniVersion": cni_version,
            "code": self.code.as_u32(),
            "msg": self.msg,
        });
        if !self.details.is_empty() {
            v["details"] = Value::String(self.details.clone());
        }
        v
    }
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "code {}: {}", self.code.as_u32(), self.msg)?;
        if !self.details.is_empty() {
            write!(f, ": {}", self.details)?;
        }
        Ok(())
    }
}

impl std::error::Error for CniError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_json_has_the_spec_fields() {
        let e = CniError::with_details(ErrorCode::TryAgainLater, "IPAM busy", "lock held");
        let v = e.to_json("1.1.0");
        assert_eq!(v["cniVersion"], "1.1.0");
        assert_eq!(v["code"], 11);
        assert_eq!(v["msg"], "IPAM busy");
        assert_eq!(v["details"], "lock held");
        let bare = CniError::new(ErrorCode::InvalidEnv, "x").to_json("1.0.0");
        assert!(bare.get("details").is_none());
    }
}
