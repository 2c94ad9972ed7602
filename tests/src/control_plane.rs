//! The lab's Kubernetes control plane: etcd and kube-apiserver in the `<lab>-cp` namespace, the
//! admin kubeconfig, and the Node objects that stand for the lab's nodes.
//!
//! etcd listens on 127.0.0.1 inside the cp namespace only; kube-apiserver serves on
//! 198.18.0.250:6443 with `--authorization-mode=Node,RBAC` and service-account token signing, so
//! agents can run as their ServiceAccount. The root namespace cannot reach 198.18.0.250 (the lab
//! adds nothing there), so kubectl always runs inside the cp namespace.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cmd;
use crate::error::{LabError, Result};
use crate::pki::PkiPaths;
use crate::plan::{APISERVER_PORT, APISERVER_V4};

/// Environment variable naming a directory with `kube-apiserver`, `kubectl` and `etcd`.
pub const CP_BIN_ENV: &str = "PODROUTE_CP_BIN";
/// How long the API server gets to answer `/readyz`.
pub const APISERVER_READY_TIMEOUT: Duration = Duration::from_secs(120);
/// The service CIDR given to the API server (nothing routes it; it must merely be set).
pub const SERVICE_CIDR: &str = "10.96.0.0/16";

/// Where the control-plane binaries are.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ControlPlaneBins {
    /// The directory holding them.
    pub dir: PathBuf,
}

impl ControlPlaneBins {
    /// `kube-apiserver`.
    pub fn kube_apiserver(&self) -> PathBuf {
        self.dir.join("kube-apiserver")
    }
    /// `kubectl`.
    pub fn kubectl(&self) -> PathBuf {
        self.dir.join("kubectl")
    }
    /// `etcd`.
    pub fn etcd(&self) -> PathBuf {
        self.dir.join("etcd")
    }

    /// Finds the binaries: `$PODROUTE_CP_BIN`, else the directory `tests/scripts/control-plane.sh`
    /// prints (which builds them on first use; its answer is remembered for the process).
    pub fn locate() -> Result<Self> {
        let bins = match std::env::var_os(CP_BIN_ENV).filter(|v| !v.is_empty()) {
            Some(d) => Self {
                dir: PathBuf::from(d),
            },
            None => Self::from_build_script()?,
        };
        for b in [bins.kube_apiserver(), bins.kubectl(), bins.etcd()] {
            if !b.is_file() {
                return Err(LabError::ControlPlaneBinaries {
                    detail: format!("{} is missing", b.display()),
                });
            }
        }
        Ok(bins)
    }

    /// Runs the build script once per process (parallel tests wait for the first caller); the
    /// script itself locks its cache so that two processes never build at the same time.
    fn from_build_script() -> Result<Self> {
        static FOUND: Mutex<Option<ControlPlaneBins>> = Mutex::new(None);
        let mut found = FOUND
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(b) = found.as_ref() {
            return Ok(b.clone());
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/control-plane.sh");
        let mut c = Command::new(&script);
        // Progress goes to our stderr: the first build takes many minutes.
        c.stderr(std::process::Stdio::inherit());
        let out = cmd::run(&mut c).map_err(|e| LabError::ControlPlaneBinaries {
            detail: e.to_string(),
        })?;
        let bins = Self {
            dir: PathBuf::from(out.trim()),
        };
        *found = Some(bins.clone());
        Ok(bins)
    }
}

/// The admin kubeconfig (JSON, which kubectl and client libraries read as YAML).
pub(crate) fn admin_kubeconfig(pki: &PkiPaths) -> Value {
    kubeconfig(
        pki,
        json!({
            "client-certificate": pki.admin_cert,
            "client-key": pki.admin_key,
        }),
    )
}

/// A kubeconfig for `user` (a kubeconfig `user` object: certificate paths or a token).
pub(crate) fn kubeconfig(pki: &PkiPaths, user: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{
            "name": "podroute-lab",
            "cluster": {
                "server": format!("https://{APISERVER_V4}:{APISERVER_PORT}"),
                "certificate-authority": pki.ca_cert,
            }
        }],
        "users": [{ "name": "lab-user", "user": user }],
        "contexts": [{ "name": "podroute-lab", "context": { "cluster": "podroute-lab", "user": "lab-user" } }],
        "current-context": "podroute-lab",
    })
}

/// etcd's command line: one member, client and peer URLs on the cp namespace's loopback.
///
/// `--unsafe-no-fsync`: the lab's data is thrown away at `down`, and fsync on a shared CI disk
/// is what makes etcd (and so every API write) slow.
pub(crate) fn etcd_args(data_dir: &Path) -> Vec<String> {
    vec![
        "--name=lab".into(),
        format!("--data-dir={}", data_dir.display()),
        "--listen-client-urls=http://127.0.0.1:2379".into(),
        "--advertise-client-urls=http://127.0.0.1:2379".into(),
        "--listen-peer-urls=http://127.0.0.1:2380".into(),
        "--initial-advertise-peer-urls=http://127.0.0.1:2380".into(),
        "--initial-cluster=lab=http://127.0.0.1:2380".into(),
        "--listen-metrics-urls=http://127.0.0.1:2381".into(),
        "--unsafe-no-fsync".into(),
        "--log-level=warn".into(),
    ]
}

/// kube-apiserver's command line.
pub(crate) fn apiserver_args(pki: &PkiPaths) -> Vec<String> {
    let p = |x: &Path| x.display().to_string();
    vec![
        "--etcd-servers=http://127.0.0.1:2379".into(),
        format!("--bind-address={APISERVER_V4}"),
        format!("--advertise-address={APISERVER_V4}"),
        format!("--secure-port={APISERVER_PORT}"),
        format!("--tls-cert-file={}", p(&pki.server_cert)),
        format!("--tls-private-key-file={}", p(&pki.server_key)),
        format!("--client-ca-file={}", p(&pki.ca_cert)),
        "--authorization-mode=Node,RBAC".into(),
        "--anonymous-auth=true".into(),
        format!("--service-account-key-file={}", p(&pki.sa_pub)),
        format!("--service-account-signing-key-file={}", p(&pki.sa_key)),
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
        format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        "--enable-admission-plugins=NodeRestriction".into(),
        "--allow-privileged=true".into(),
        "--profiling=false".into(),
        // kubectl exec/logs reach a cluster-mode kubelet, which authenticates its clients.
        format!("--kubelet-client-certificate={}", p(&pki.admin_cert)),
        format!("--kubelet-client-key={}", p(&pki.admin_key)),
        // Node names resolve nowhere (the lab has no DNS): dial the InternalIP.
        "--kubelet-preferred-address-types=InternalIP".into(),
        format!(
            "--cert-dir={}",
            p(pki.ca_cert.parent().unwrap_or(Path::new(".")))
        ),
        "--v=1".into(),
    ]
}

/// The cluster CIDRs the cluster mode's node IPAM allocates from: a /24 (and a /64) per node.
pub const CLUSTER_CIDR_V4: &str = "10.244.0.0/16";
/// The IPv6 cluster CIDR of a dual-stack cluster-mode lab.
pub const CLUSTER_CIDR_V6: &str = "fd00:10:244::/56";

/// kube-controller-manager's command line: node IPAM (`--allocate-node-cidrs`) from the lab's
/// cluster CIDR(s), the lab CA published to pods (`kube-root-ca.crt`), no leader election.
pub(crate) fn controller_manager_args(
    pki: &PkiPaths,
    kubeconfig: &Path,
    ipv6: bool,
    node_cidr_mask_v4: u8,
) -> Vec<String> {
    let p = |x: &Path| x.display().to_string();
    let cidrs = if ipv6 {
        format!("{CLUSTER_CIDR_V4},{CLUSTER_CIDR_V6}")
    } else {
        CLUSTER_CIDR_V4.to_owned()
    };
    let mut args = vec![
        format!("--kubeconfig={}", p(kubeconfig)),
        "--allocate-node-cidrs=true".into(),
        format!("--cluster-cidr={cidrs}"),
        format!("--node-cidr-mask-size-ipv4={node_cidr_mask_v4}"),
        format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        format!("--root-ca-file={}", p(&pki.ca_cert)),
        format!("--service-account-private-key-file={}", p(&pki.sa_key)),
        "--use-service-account-credentials=false".into(),
        "--leader-elect=false".into(),
        "--bind-address=127.0.0.1".into(),
        "--v=1".into(),
    ];
    // Refused by a single-stack controller manager.
    if ipv6 {
        args.push("--node-cidr-mask-size-ipv6=64".into());
    }
    args
}

/// kube-scheduler's command line.
pub(crate) fn scheduler_args(kubeconfig: &Path) -> Vec<String> {
    vec![
        format!("--kubeconfig={}", kubeconfig.display()),
        "--leader-elect=false".into(),
        "--bind-address=127.0.0.1".into(),
        "--v=1".into(),
    ]
}

/// Polls `/readyz` through kubectl in `cp_ns` until it answers `ok`, the API server exits
/// (`exited` returns true) or the timeout passes.
pub(crate) fn wait_ready(
    cp_ns: &str,
    bins: &ControlPlaneBins,
    kubeconfig: &Path,
    log: &Path,
    mut exited: impl FnMut() -> bool,
) -> Result<()> {
    let started = Instant::now();
    loop {
        crate::cancel::check()?;
        let out = cmd::output(&mut cmd::in_ns(
            cp_ns,
            bins.kubectl(),
            [
                "--kubeconfig".as_ref(),
                kubeconfig.as_os_str(),
                "get".as_ref(),
                "--raw=/readyz".as_ref(),
            ],
        ))?;
        if out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok" {
            return Ok(());
        }
        if exited() {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            return Err(LabError::Exited {
                what: "kube-apiserver",
                tail: cmd::tail(&text, 3),
            });
        }
        if started.elapsed() > APISERVER_READY_TIMEOUT {
            return Err(LabError::Timeout {
                what: "kube-apiserver",
                seconds: APISERVER_READY_TIMEOUT.as_secs(),
                tail: cmd::tail(&std::fs::read_to_string(log).unwrap_or_default(), 3),
            });
        }
        thread::sleep(Duration::from_millis(250));
    }
}

/// The Node object for a lab node (spec only: status goes through the status subresource).
pub(crate) fn node_object(name: &str, pod_cidrs: &[String]) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": { "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "podroute.io/lab": "true" },
        },
        "spec": { "podCIDR": pod_cidrs.first(), "podCIDRs": pod_cidrs },
    })
}

/// The status patch giving a Node its InternalIP(s) and a Ready condition.
///
/// `kubectl apply` ignores `status`; this goes through `--subresource=status`.
pub(crate) fn node_status_patch(name: &str, ips: &[String]) -> Value {
    let mut addresses: Vec<Value> = ips
        .iter()
        .map(|ip| json!({ "type": "InternalIP", "address": ip }))
        .collect();
    addresses.push(json!({ "type": "Hostname", "address": name }));
    json!({
        "status": {
            "addresses": addresses,
            "conditions": [{
                "type": "Ready",
                "status": "True",
                "reason": "PodrouteLab",
                "message": "lab node (a network namespace; no kubelet)",
            }],
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_object_carries_both_pod_cidrs() {
        let cidrs = vec!["10.244.1.0/24".to_owned(), "fd00:10:244:1::/64".to_owned()];
        let n = node_object("node1", &cidrs);
        assert_eq!(n["spec"]["podCIDR"], "10.244.1.0/24");
        assert_eq!(n["spec"]["podCIDRs"][1], "fd00:10:244:1::/64");
        let s = node_status_patch("node1", &["198.18.0.1".to_owned()]);
        assert_eq!(s["status"]["addresses"][0]["type"], "InternalIP");
        assert_eq!(s["status"]["addresses"][0]["address"], "198.18.0.1");
    }

    #[test]
    fn apiserver_runs_with_rbac_and_service_account_signing() {
        let args = apiserver_args(&PkiPaths::new(Path::new("/x/pki")));
        assert!(args.contains(&"--authorization-mode=Node,RBAC".to_owned()));
        assert!(args.contains(&"--service-account-signing-key-file=/x/pki/sa.key".to_owned()));
        assert!(args.contains(&"--bind-address=198.18.0.250".to_owned()));
    }
}
