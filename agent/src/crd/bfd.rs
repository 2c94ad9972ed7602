//! `bfd:` on a BGPPeer and on the BGPConfiguration's `nodeToNodeMesh`: BFD (RFC 5880/5881)
//! for those sessions. Present means on; absent means off.
//!
//! Names follow the repository's unit-suffixed fields (`holdTimeSeconds`) and what operators
//! know from Cilium's BFD profiles (`receiveIntervalMilliseconds`, …) and MetalLB's
//! (`receiveInterval`, `transmitInterval`, `detectMultiplier`): `minRxMilliseconds` is RFC
//! 5880's Required Min RX Interval, `minTxMilliseconds` its Desired Min TX Interval,
//! `multiplier` its Detect Mult.
//!
//! The integers are `u32` on purpose: a value out of range that an older CRD let through must
//! reach the agent's check ([`BfdSpec::settings`]) and be reported, not fail to deserialize
//! (which would stop the watch of every BGPPeer).

use std::time::Duration;

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::peers::BfdSettings;

/// BFD on a session: the intervals offered and whether BGP waits for BFD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BfdSpec {
    /// Required Min RX Interval: how often we want the peer's packets, milliseconds
    /// (10..60000, default 300).
    #[serde(default = "default_interval")]
    #[x_kube(validation = Rule::new("self >= 10 && self <= 60000")
        .message("minRxMilliseconds must be 10..60000"))]
    pub min_rx_milliseconds: u32,

    /// Desired Min TX Interval: how often we would send, milliseconds (10..60000, default
    /// 300). The interval used is the slower of ours and what the peer wants to receive.
    #[serde(default = "default_interval")]
    #[x_kube(validation = Rule::new("self >= 10 && self <= 60000")
        .message("minTxMilliseconds must be 10..60000"))]
    pub min_tx_milliseconds: u32,

    /// Detect Mult: packets missed in a row before the path is declared down (1..255,
    /// default 3).
    #[serde(default = "default_multiplier")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 255")
        .message("multiplier must be 1..255"))]
    pub multiplier: u32,

    /// Strict mode: the BGP session does not start (nor accept a connection) until BFD is
    /// Up. Off: BGP runs, and a BFD Down ends it at once.
    #[serde(default)]
    pub strict: bool,
}

impl Default for BfdSpec {
    fn default() -> Self {
        Self {
            min_rx_milliseconds: default_interval(),
            min_tx_milliseconds: default_interval(),
            multiplier: default_multiplier(),
            strict: false,
        }
    }
}

fn default_interval() -> u32 {
    300
}

fn default_multiplier() -> u32 {
    3
}

impl BfdSpec {
    /// The settings the agent runs with, or why these values cannot be used (the schema
    /// refuses them; an object stored under an older CRD may still hold them).
    pub fn settings(&self) -> Result<BfdSettings, String> {
        let interval = |name: &str, ms: u32| {
            if (10..=60_000).contains(&ms) {
                Ok(Duration::from_millis(u64::from(ms)))
            } else {
                Err(format!("{name} {ms}: expected 10..60000"))
            }
        };
        let multiplier = u8::try_from(self.multiplier)
            .ok()
            .filter(|m| *m >= 1)
            .ok_or_else(|| format!("multiplier {}: expected 1..255", self.multiplier))?;
        BfdSettings {
            min_rx: interval("minRxMilliseconds", self.min_rx_milliseconds)?,
            min_tx: interval("minTxMilliseconds", self.min_tx_milliseconds)?,
            multiplier,
            strict: self.strict,
        }
        .validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> BfdSpec {
        serde_yaml::from_str(yaml).expect("BfdSpec")
    }

    #[test]
    fn an_empty_bfd_is_on_with_300_ms_times_3() {
        let spec = parse("{}");
        assert_eq!(spec, BfdSpec::default());
        assert_eq!(spec.settings(), Ok(BfdSettings::default()));
        assert_eq!(
            BfdSettings::default(),
            BfdSettings {
                min_rx: Duration::from_millis(300),
                min_tx: Duration::from_millis(300),
                multiplier: 3,
                strict: false,
            }
        );
    }

    #[test]
    fn fields_are_milliseconds_and_strict_is_carried() {
        let spec =
            parse("minRxMilliseconds: 100\nminTxMilliseconds: 250\nmultiplier: 5\nstrict: true\n");
        assert_eq!(
            spec.settings(),
            Ok(BfdSettings {
                min_rx: Duration::from_millis(100),
                min_tx: Duration::from_millis(250),
                multiplier: 5,
                strict: true,
            })
        );
    }

    #[test]
    fn out_of_range_values_are_refused_with_the_field_named() {
        for (yaml, field) in [
            ("minRxMilliseconds: 9", "minRxMilliseconds 9"),
            ("minRxMilliseconds: 60001", "minRxMilliseconds 60001"),
            ("minTxMilliseconds: 0", "minTxMilliseconds 0"),
            ("multiplier: 0", "multiplier 0"),
            ("multiplier: 256", "multiplier 256"),
            ("multiplier: 4294967295", "multiplier 4294967295"),
        ] {
            let why = parse(yaml).settings().expect_err(yaml);
            assert!(why.contains(field), "{yaml}: {why}");
        }
    }

    #[test]
    fn a_value_that_does_not_fit_the_wire_still_deserializes() {
        // Reported by the agent, not a watch that stops on a decode error.
        let spec: BfdSpec = serde_yaml::from_str("multiplier: 1000").expect("deserializes");
        assert!(spec.settings().is_err());
    }
}
