//! Faults a test can inject into a running [`Lab`]: a cut link and a lossy link.

use crate::cmd;
use crate::error::{LabError, Result};
use crate::lab::Lab;
use crate::names;

/// The nftables table holding a node's packet-loss rules.
const LOSS_TABLE: &str = "podroute_lab_loss";

impl Lab {
    /// Cuts node `name` off the fabric: its port on the fabric bridge goes down, so the node's
    /// `eth0` loses carrier (its addresses and routes stay, as with a pulled cable).
    pub fn link_down(&self, name: &str) -> Result<()> {
        let node = self.node(name)?;
        cmd::ip_in(
            &self.fabric_ns(),
            ["link", "set", &names::fabric_port(node.index), "down"],
        )
        .map(drop)
    }

    /// Reconnects node `name` after [`Lab::link_down`].
    pub fn link_up(&self, name: &str) -> Result<()> {
        let node = self.node(name)?;
        cmd::ip_in(
            &self.fabric_ns(),
            ["link", "set", &names::fabric_port(node.index), "up"],
        )
        .map(drop)
    }

    /// Drops `percent` % of the packets node `name` sends and of those it receives on `eth0`
    /// (each direction independently); 0 removes the loss.
    ///
    /// Uses nftables' `numgen random` rather than tc netem, because netem is not built into
    /// every kernel (it is missing on the machines this lab was written on); the effect on the
    /// node's traffic is the same random loss.
    pub fn netem_loss(&self, name: &str, percent: u8) -> Result<()> {
        if percent > 100 {
            return Err(LabError::Invalid("loss must be 0 to 100 %".into()));
        }
        let ns = self.node(name)?.netns.clone();
        cmd::require("nft", "install nftables: apt-get install nftables")?;
        // Start from a clean table; a missing table is not an error here.
        let _ = cmd::run_in(&ns, "nft", ["delete", "table", "inet", LOSS_TABLE]);
        if percent == 0 {
            return Ok(());
        }
        // `numgen random mod 100` yields 0..=99, so `< 100` is out of its range: 100 % is a
        // plain drop.
        let matcher = if percent == 100 {
            String::new()
        } else {
            format!("numgen random mod 100 < {percent} ")
        };
        let rules = [
            format!("add table inet {LOSS_TABLE}"),
            format!(
                "add chain inet {LOSS_TABLE} ingress {{ type filter hook prerouting priority -300; }}"
            ),
            format!(
                "add chain inet {LOSS_TABLE} egress {{ type filter hook postrouting priority 300; }}"
            ),
            format!("add rule inet {LOSS_TABLE} ingress iifname \"eth0\" {matcher}drop"),
            format!("add rule inet {LOSS_TABLE} egress oifname \"eth0\" {matcher}drop"),
        ];
        for r in rules {
            cmd::run_in(&ns, "nft", [r])?;
        }
        Ok(())
    }

    /// Removes the loss set by [`Lab::netem_loss`].
    pub fn clear_loss(&self, name: &str) -> Result<()> {
        self.netem_loss(name, 0)
    }
}
