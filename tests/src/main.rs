//! `podroute-lab`: bring a lab up, look at it, run commands in it, tear it down.

use std::ffi::OsString;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use podroute_lab::names::{DEFAULT_LAB_NAME, LAB_DIR_ENV};
use podroute_lab::{Lab, LabConfig, Tor};

/// A whole cluster's network on one Linux host: network namespaces as nodes, a real
/// kube-apiserver and etcd, and a BGP router as top of rack. Needs root.
#[derive(Debug, Parser)]
#[command(name = "podroute-lab", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Bring a lab up: fabric, nodes, control plane, Node objects, router.
    Up {
        /// Number of nodes (node1..nodeN).
        #[arg(long, default_value_t = 3)]
        nodes: u8,
        /// Router in the fabric namespace (198.18.0.254, AS 64512, route reflector).
        #[arg(long, default_value = "none", value_parser = ["bird", "gobgp", "frr", "none"])]
        tor: String,
        /// Give nodes IPv6 addresses and pod CIDRs too.
        #[arg(long)]
        ipv6: bool,
        /// Skip etcd, kube-apiserver and Node objects.
        #[arg(long, conflicts_with = "cluster")]
        no_control_plane: bool,
        /// Cluster mode: kube-controller-manager (pod CIDRs) and kube-scheduler, containerd and
        /// a kubelet on every node; deploy podroute with `kubectl apply -k`.
        #[arg(long)]
        cluster: bool,
        /// Racks (light mode, 1 or 2): the second is its own segment, 198.18.1.0/24 and
        /// fd00:198:18:1::/64, routed to the first by the fabric namespace; the nodes take turns.
        #[arg(long, default_value_t = 1, conflicts_with = "cluster")]
        racks: u8,
        /// The lab's name (prefix of every namespace).
        #[arg(long, default_value = DEFAULT_LAB_NAME)]
        name: String,
    },
    /// Show a lab: nodes, addresses, pod CIDRs, router sessions, kubeconfig.
    Status {
        /// The lab's name.
        #[arg(long, default_value = DEFAULT_LAB_NAME)]
        name: String,
    },
    /// Run a command in a lab namespace: node1.., cp, fabric, or a pod's name.
    Exec {
        /// The lab's name.
        #[arg(long, default_value = DEFAULT_LAB_NAME)]
        name: String,
        /// Where to run it.
        node: String,
        /// The command and its arguments (after `--`).
        #[arg(last = true, required = true)]
        command: Vec<OsString>,
    },
    /// Run kubectl with the lab's admin kubeconfig (inside the control-plane namespace).
    Kubectl {
        /// The lab's name.
        #[arg(long, default_value = DEFAULT_LAB_NAME)]
        name: String,
        /// kubectl's arguments (after `--`).
        #[arg(last = true)]
        args: Vec<OsString>,
    },
    /// Add a test pod to a node: a namespace with a veth into the node and the next free
    /// address of the node's pod CIDR(s) (the CNI plugin does this for real pods).
    AddPod {
        /// The lab's name.
        #[arg(long, default_value = DEFAULT_LAB_NAME)]
        name: String,
        /// The node (node1, node2, ...).
        node: String,
        /// The pod's name (1-13 characters a-z, 0-9, '-'); `exec POD -- ...` runs in it.
        pod: String,
    },
    /// Start a long-running command in a lab namespace and return; its output goes to
    /// <lab dir>/logs/<node>-<label>.log and `down` stops it.
    Spawn {
        /// The lab's name.
        #[arg(long, default_value = DEFAULT_LAB_NAME)]
        name: String,
        /// Where to run it: node1.., cp, fabric, or a pod's name.
        node: String,
        /// A label for its log file.
        label: String,
        /// The command and its arguments (after `--`).
        #[arg(last = true, required = true)]
        command: Vec<OsString>,
    },
    /// Remove every namespace, process and file of a lab (safe to repeat).
    Down {
        /// The lab's name.
        #[arg(long, default_value = DEFAULT_LAB_NAME)]
        name: String,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("podroute-lab: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Exit code of a child process, for `exec` and `kubectl` to pass through.
fn code_of(status: std::process::ExitStatus) -> ExitCode {
    ExitCode::from(u8::try_from(status.code().unwrap_or(1)).unwrap_or(1))
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Up {
            nodes,
            tor,
            ipv6,
            no_control_plane,
            cluster,
            racks,
            name,
        } => {
            let tor: Tor = tor.parse()?;
            // Ctrl-C while building removes the half-built lab instead of leaving it.
            podroute_lab::cancel::install_signal_handlers()?;
            let started = Instant::now();
            let cfg = LabConfig {
                name,
                nodes,
                tor,
                ipv6,
                control_plane: !no_control_plane,
                cluster,
                node_cidr_mask_v4: podroute_lab::lab::DEFAULT_NODE_CIDR_MASK_V4,
                racks,
            };
            let lab = Lab::up(&cfg)?;
            eprintln!(
                "podroute-lab: lab {} is up in {:.1} s",
                lab.name(),
                started.elapsed().as_secs_f64()
            );
            print_status(&lab)?;
            lab.detach();
        }
        Command::Status { name } => print_status(&Lab::open(&name)?)?,
        Command::Exec {
            name,
            node,
            command,
        } => {
            let lab = Lab::open(&name)?;
            let ns = lab.netns_of(&node)?;
            // Inherit the terminal so interactive commands (a shell) work.
            let status = std::process::Command::new("ip")
                .args(["netns", "exec", &ns])
                .args(&command)
                .status()
                .context("running ip netns exec")?;
            return Ok(code_of(status));
        }
        Command::Kubectl { name, args } => {
            let lab = Lab::open(&name)?;
            let status = lab
                .kubectl_command(&lab.kubeconfig(), &args)?
                .status()
                .context("running kubectl")?;
            return Ok(code_of(status));
        }
        Command::AddPod { name, node, pod } => {
            let mut lab = Lab::open(&name)?;
            let pod = lab.add_pod(&node, &pod)?;
            let v6 = pod.ipv6.map(|a| format!(" {a}")).unwrap_or_default();
            println!(
                "pod {} on {}: {}{v6} (netns {})",
                pod.name, pod.node, pod.ipv4, pod.netns
            );
        }
        Command::Spawn {
            name,
            node,
            label,
            command,
        } => {
            let lab = Lab::open(&name)?;
            let (program, args) = command.split_first().context("spawn needs a command")?;
            let process = lab.spawn(&node, &label, program, args, &[])?;
            let log = process.log_path().to_path_buf();
            let pid = process.detach();
            println!("started pid {pid} in {node}; log {}", log.display());
        }
        Command::Down { name } => {
            let report = Lab::down_by_name(&name)?;
            if report.was_empty() {
                println!("lab {name}: nothing to remove");
            } else {
                println!(
                    "lab {name}: removed {} namespaces and {} cgroups, stopped {} processes{}",
                    report.namespaces.len(),
                    report.cgroups,
                    report.processes.len(),
                    if report.removed_dir {
                        ", deleted its directory"
                    } else {
                        ""
                    }
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `kubectl get nodes` columns that show what the lab set: addresses and pod CIDRs.
const NODE_COLUMNS: &str = "custom-columns=NAME:.metadata.name,STATUS:.status.conditions[-1].type,\
INTERNAL-IPS:.status.addresses[?(@.type==\"InternalIP\")].address,POD-CIDRS:.spec.podCIDRs";

fn print_status(lab: &Lab) -> Result<()> {
    let name = lab.name();
    println!(
        "lab {name}  (dir {}; parent set by ${LAB_DIR_ENV})",
        lab.dir().display()
    );
    println!(
        "{:<8} {:<24} {:<16} {:<18} {:<16} POD CIDR V6",
        "NODE", "NETNS", "IPV4", "IPV6", "POD CIDR V4"
    );
    for n in lab.nodes() {
        let dash = || "-".to_owned();
        println!(
            "{:<8} {:<24} {:<16} {:<18} {:<16} {}",
            n.name,
            n.netns,
            n.ipv4,
            n.ipv6.map(|a| a.to_string()).unwrap_or_else(dash),
            n.pod_cidr_v4.to_string(),
            n.pod_cidr_v6.map(|a| a.to_string()).unwrap_or_else(dash),
        );
    }
    if lab.kubeconfig().exists() {
        println!();
        println!(
            "API server  https://198.18.0.250:6443 (in {}; reachable from the lab's namespaces only)",
            lab.cp_ns()
        );
        println!(
            "kubeconfig  {} (admin, system:masters)",
            lab.kubeconfig().display()
        );
        println!("kubectl     podroute-lab kubectl --name {name} -- get nodes -o wide");
        if let Ok(kubectl) = lab.kubectl_command(&lab.kubeconfig(), &["get", "nodes"]) {
            let argv: Vec<String> = kubectl
                .get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            println!("            or: ip {}", argv.join(" "));
        }
        match lab.kubectl(&["get", "nodes", "-o", NODE_COLUMNS]) {
            Ok(out) => print!("{out}"),
            Err(e) => println!("            (API server not answering: {e})"),
        }
    }
    if let Some(router) = lab.router() {
        println!();
        println!(
            "router      {} at 198.18.0.254 in {}, AS 64512, config {}",
            router.kind(),
            lab.fabric_ns(),
            router.config_path().display()
        );
        let query = match router.kind() {
            Tor::Bird => "show protocols",
            Tor::Gobgp => "neighbor",
            _ => "show bgp summary",
        };
        println!(
            "            podroute-lab exec --name {name} fabric -- {}",
            router
                .command(&[query])
                .get_args()
                .skip(3)
                .map(|a| {
                    let a = a.to_string_lossy();
                    if a.contains(' ') {
                        format!("'{a}'")
                    } else {
                        a.into_owned()
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        );
        match router.sessions_text() {
            Ok(text) => print!("{text}"),
            Err(e) => println!("            (router not answering: {e})"),
        }
    }
    let pods = lab.pods().unwrap_or_default();
    if !pods.is_empty() {
        println!();
        println!("{:<14} {:<8} {:<16} IPV6", "POD", "NODE", "IPV4");
        for p in pods {
            let v6 = p
                .ipv6
                .map(|a| a.to_string())
                .unwrap_or_else(|| "-".to_owned());
            println!(
                "{:<14} {:<8} {:<16} {v6}",
                p.name,
                p.node,
                p.ipv4.to_string()
            );
        }
    }
    println!();
    println!("exec        podroute-lab exec --name {name} node1 -- ip route");
    println!("down        podroute-lab down --name {name}");
    Ok(())
}
