//! The two systems the convergence benchmark compares, each started the same way on a node: in
//! the node's namespace, with the lab's admin kubeconfig, everything it writes kept inside the
//! lab. Both do the same job: watch Node pod CIDRs, iBGP full mesh (or route reflectors), install
//! kernel routes.

use std::fs;
use std::path::{Path, PathBuf};

use podroute_lab::{Lab, LabNode, LabProcess};

use crate::error::{Result, io_err};

/// The AS of the lab's iBGP (podroute's default and kube-router's `--cluster-asn`).
const LAB_AS: u32 = podroute_lab::plan::LAB_AS;

/// Which system runs on the nodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum System {
    /// podroute-agent (the release build under `make bench`).
    #[default]
    Podroute,
    /// kube-router v2.1.0 as a router only.
    KubeRouter,
}

impl System {
    /// Its name in results and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Podroute => "podroute",
            Self::KubeRouter => "kube-router",
        }
    }

    /// The protocol number of the kernel routes it installs (podroute's default 80;
    /// kube-router's `zebraRouteOriginator`, 0x11).
    pub fn route_protocol(self) -> u8 {
        match self {
            Self::Podroute => 80,
            Self::KubeRouter => 0x11,
        }
    }

    /// Parses a name [`System::name`] prints.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "podroute" => Some(Self::Podroute),
            "kube-router" => Some(Self::KubeRouter),
            _ => None,
        }
    }
}

/// The binaries to start.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// podroute-agent.
    pub agent: PathBuf,
    /// RUST_LOG of the podroute agents.
    pub agent_log: String,
    /// kube-router (`tests/scripts/kube-router.sh` builds and caches it).
    pub kube_router: Option<PathBuf>,
}

/// Starts `system` on `node`.
pub fn start(lab: &Lab, node: &LabNode, system: System, bins: &Binaries) -> Result<LabProcess> {
    match system {
        System::Podroute => start_podroute(lab, node, bins),
        System::KubeRouter => {
            let bin = bins.kube_router.as_deref().ok_or_else(|| {
                crate::BenchError::Failed("no kube-router binary (BENCH_KUBE_ROUTER)".into())
            })?;
            start_kube_router(lab, node, bin)
        }
    }
}

fn start_podroute(lab: &Lab, node: &LabNode, bins: &Binaries) -> Result<LabProcess> {
    let args = podroute_args(lab, node, &lab.dir().join("conv").join(&node.name))?;
    Ok(lab.spawn(
        &node.name,
        "conv-podroute",
        &bins.agent,
        &args,
        &[("RUST_LOG", bins.agent_log.as_str())],
    )?)
}

/// The arguments podroute-agent runs with on `node` in a benchmark: the lab's kubeconfig,
/// and the files it writes in `dir` (created), never the host's /etc/cni or /run/podroute.
pub(crate) fn podroute_args(lab: &Lab, node: &LabNode, dir: &Path) -> Result<Vec<String>> {
    fs::create_dir_all(dir).map_err(io_err(format!("create {}", dir.display())))?;
    let d = |f: &str| dir.join(f).display().to_string();
    Ok(vec![
        "--kubeconfig".to_owned(),
        lab.kubeconfig().display().to_string(),
        "--node-name".to_owned(),
        node.name.clone(),
        "--cni-conflist".to_owned(),
        d("10-podroute.conflist"),
        "--cni-readiness-file".to_owned(),
        d("cni-ready"),
    ])
}

/// kube-router as a router alone: no firewall, service proxy, CNI, overlay or pod egress.
///
/// It still writes two things outside its namespace's kernel state, which are kept in the
/// lab: it appends its routing table's name to `/etc/iproute2/rt_tables` (a bind mount of a
/// copy in the lab directory, in a mount namespace of its own), and it runs `modprobe`
/// (`br_netfilter`, host-wide), which resolves to a no-op in the lab directory. Its iptables
/// rules, ipsets and `kube-bridge` live in the node's network namespace.
fn start_kube_router(lab: &Lab, node: &LabNode, bin: &Path) -> Result<LabProcess> {
    let dir = lab.dir().join("conv").join(&node.name).join("kube-router");
    let fake_bin = dir.join("bin");
    fs::create_dir_all(&fake_bin).map_err(io_err(format!("create {}", fake_bin.display())))?;
    let modprobe = fake_bin.join("modprobe");
    fs::write(&modprobe, "#!/bin/sh\nexit 0\n").map_err(io_err("write modprobe"))?;
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&modprobe, fs::Permissions::from_mode(0o755))
            .map_err(io_err("chmod modprobe"))?;
    }
    let rt_tables = dir.join("rt_tables");
    let host_tables = fs::read_to_string("/etc/iproute2/rt_tables").unwrap_or_default();
    fs::write(&rt_tables, host_tables).map_err(io_err("write rt_tables"))?;
    let args = [
        format!("--kubeconfig={}", lab.kubeconfig().display()),
        format!("--hostname-override={}", node.name),
        "--run-router=true".into(),
        "--run-firewall=false".into(),
        "--run-service-proxy=false".into(),
        "--run-loadbalancer=false".into(),
        "--enable-cni=false".into(),
        "--enable-overlay=false".into(),
        "--enable-pod-egress=false".into(),
        "--auto-mtu=false".into(),
        "--disable-source-dest-check=false".into(),
        format!("--cluster-asn={LAB_AS}"),
        "--health-port=0".into(),
        "--v=1".into(),
    ];
    // `mount` needs the rt_tables file to exist at both ends; /etc/iproute2/rt_tables is
    // only shadowed inside this private mount namespace.
    let script = format!(
        "mount --bind '{rt}' /etc/iproute2/rt_tables && PATH='{fake}':\"$PATH\" exec '{bin}' {args}",
        rt = rt_tables.display(),
        fake = fake_bin.display(),
        bin = bin.display(),
        args = args.join(" "),
    );
    let argv = [
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        script.as_str(),
    ];
    Ok(lab.spawn(&node.name, "conv-kube-router", "unshare", &argv, &[])?)
}
