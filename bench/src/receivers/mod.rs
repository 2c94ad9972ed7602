//! The receivers under test: podroute-agent, BIRD 2 and GoBGP, each started in the node's
//! namespace with a configuration for the scenario's peers, and asked how many routes its RIB
//! holds through its own interface (metrics, `birdc`, `gobgp`).
//!
//! The probes run on the calling thread, which the suite keeps inside the node's namespace
//! (the agent's metrics and GoBGP's API listen on the node's loopback).

mod bird;
mod gobgp;
pub(crate) mod podroute;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use podroute_lab::{Lab, LabNode, LabProcess};

use crate::error::{Result, io_err};
use crate::scenario::{Family, Scenario};

/// The AS of the node and of every sender (iBGP, the lab's AS).
pub const AS: u32 = 64512;

/// Which program receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReceiverKind {
    /// `podroute-agent` with one `--bgp-peer` per sender.
    Podroute,
    /// BIRD 2 configured as Calico's calico/node configures it.
    Bird,
    /// `gobgpd`, RIB only.
    Gobgp,
}

impl ReceiverKind {
    /// Every receiver, in the order the suite alternates them.
    pub const ALL: [ReceiverKind; 3] = [Self::Podroute, Self::Bird, Self::Gobgp];

    /// The name used in `BENCH_RECEIVERS` and the results.
    pub fn name(self) -> &'static str {
        match self {
            Self::Podroute => "podroute",
            Self::Bird => "bird",
            Self::Gobgp => "gobgp",
        }
    }

    /// Parses [`ReceiverKind::name`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == s)
    }

    /// The route protocol the receiver's kernel routes carry, if it programs the kernel:
    /// podroute's 80 (its default), BIRD's 12 (`RTPROT_BIRD`).
    pub fn kernel_protocol(self) -> Option<u8> {
        match self {
            Self::Podroute => Some(80),
            Self::Bird => Some(12),
            Self::Gobgp => None,
        }
    }
}

/// What a receiver's RIB count counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    /// Routes (paths), one per peer and prefix.
    Paths,
    /// Prefixes (destinations).
    Networks,
}

impl Unit {
    /// `paths` or `networks`.
    pub fn name(self) -> &'static str {
        match self {
            Unit::Paths => "paths",
            Unit::Networks => "networks",
        }
    }
}

/// One answer of a receiver's RIB probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RibCount {
    /// The number.
    pub value: u64,
    /// What it counts.
    pub unit: Unit,
    /// Where it came from (for the results).
    pub source: &'static str,
}

impl RibCount {
    /// The value the count has once the receiver holds all of `scenario`.
    pub fn target(&self, scenario: &Scenario) -> u64 {
        match self.unit {
            Unit::Paths => scenario.paths(),
            Unit::Networks => scenario.networks(),
        }
    }
}

/// Everything a receiver's start needs.
#[derive(Debug)]
pub struct Setup<'a> {
    /// The lab.
    pub lab: &'a Lab,
    /// The node it runs on.
    pub node: &'a LabNode,
    /// The senders' addresses (one session each).
    pub peers: &'a [IpAddr],
    /// A fresh directory for its configuration and files.
    pub dir: PathBuf,
    /// The podroute-agent binary.
    pub agent_bin: &'a Path,
    /// The scenario's family (the one GoBGP is asked about).
    pub family: Family,
}

/// A running receiver.
#[derive(Debug)]
pub struct Receiver {
    /// Which one.
    pub kind: ReceiverKind,
    /// Its process (dropping it kills the process).
    pub process: LabProcess,
    dir: PathBuf,
    family: Family,
}

impl Receiver {
    /// Writes the configuration and starts `kind` in the node's namespace.
    pub fn start(kind: ReceiverKind, setup: &Setup<'_>) -> Result<Receiver> {
        std::fs::create_dir_all(&setup.dir)
            .map_err(io_err(format!("create {}", setup.dir.display())))?;
        let process = match kind {
            ReceiverKind::Podroute => podroute::start(setup)?,
            ReceiverKind::Bird => bird::start(setup)?,
            ReceiverKind::Gobgp => gobgp::start(setup)?,
        };
        Ok(Receiver {
            kind,
            process,
            dir: setup.dir.clone(),
            family: setup.family,
        })
    }

    /// The receiver's process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// How many routes its RIB holds, if it answers.
    pub fn rib(&self) -> Option<RibCount> {
        match self.kind {
            ReceiverKind::Podroute => podroute::rib(),
            ReceiverKind::Bird => bird::rib(&self.dir),
            ReceiverKind::Gobgp => gobgp::rib(self.family),
        }
    }

    /// A line for the results on what the receiver's table holds now (e.g. BIRD's
    /// `show route count`), where that is cheap to ask once.
    pub fn table_summary(&self) -> Option<String> {
        match self.kind {
            ReceiverKind::Bird => bird::route_count(&self.dir),
            ReceiverKind::Gobgp => gobgp::summary(),
            ReceiverKind::Podroute => None,
        }
    }
}

/// Runs `program args` on the calling thread (inside the node's namespace) and returns its
/// stdout if it succeeded.
fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}
