//! A cluster-mode node's container runtime and kubelet: containerd (own root, state, socket)
//! and a real kubelet in the node's network namespace, sharing one private mount namespace.
//!
//! # The node's mount namespace
//!
//! `ip netns exec` would give each process its own mount namespace and a /sys without the
//! cgroup mounts, so the runtime is started with `nsenter --net` + `unshare --mount
//! --propagation slave` instead, and the kubelet joins that mount namespace (`nsenter -t
//! <containerd> -m -n`): the volumes it mounts (service-account tokens) are then what runc
//! bind-mounts into containers. Before containerd starts, the namespace gets
//!
//! - a tmpfs on `/run` (pod network namespaces, shim sockets, `/run/podroute`),
//! - overlays on `/etc`, `/opt` and `/var` whose upper layers are in the node directory, so the
//!   DaemonSet's hostPaths (`/opt/cni/bin`, `/etc/cni/net.d`, `/var/lib/cni`) are the node's
//!   own and the host's directories stay untouched,
//! - read-only bind mounts over the kernel settings the kubelet checks with
//!   `protectKernelDefaults: true` (`vm.overcommit_memory`, `kernel.panic`, ...) where the host's
//!   value differs, holding the value the kubelet expects: the kubelet neither fails nor writes
//!   the host's (global) sysctls.
//!
//! Mounts propagate from the host into the namespace but never out; when its last process
//! exits at `down`, every mount in it disappears with it.
//!
//! # Files, under `<lab dir>/nodes/<node>/`
//!
//! ```text
//! containerd.toml kubelet.yaml kubeconfig kubelet.crt kubelet.key
//! containerd/     containerd's root, state and socket (containerd.sock)
//! runc/           runc's state
//! kubelet/        the kubelet's --root-dir;  pod-logs/  its podLogsDir
//! overlay/        upper and work directories of the /etc, /opt and /var overlays
//! sysctl/         the values the kubelet's kernel checks read
//! ```

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::cmd;
use crate::error::{LabError, Result, file_err};
use crate::lab::LabNode;
use crate::process;

/// Environment variable naming a directory of image archives already built by
/// `tests/scripts/lab-images.sh` (`make lab-images` sets it for the tests): the lab then uses
/// them as they are instead of running the script (and cargo) again.
pub const IMAGES_ENV: &str = "PODROUTE_LAB_IMAGES";
/// The pod sandbox image every node's containerd uses (built by `lab-images.sh`).
pub const PAUSE_IMAGE: &str = "localhost/podroute-lab/pause:lab";
/// How long containerd gets to answer on its socket.
const CONTAINERD_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Directories overlaid in the node's mount namespace.
const OVERLAID: [&str; 3] = ["etc", "opt", "var"];
/// What the kubelet's `protectKernelDefaults` check wants (pkg/kubelet/cm: setupKernelTunables).
const KUBELET_SYSCTLS: [(&str, &str); 6] = [
    ("vm/overcommit_memory", "1"),
    ("vm/panic_on_oom", "0"),
    ("kernel/panic", "10"),
    ("kernel/panic_on_oops", "1"),
    ("kernel/keys/root_maxkeys", "1000000"),
    ("kernel/keys/root_maxbytes", "25000000"),
];

/// Where the cluster mode's binaries are: kubelet, containerd, its shim, ctr,
/// kube-controller-manager, kube-scheduler.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClusterBins {
    /// The directory holding them (`tests/scripts/control-plane.sh cluster` prints it).
    pub dir: PathBuf,
    /// The directory of the image archives (`tests/scripts/lab-images.sh` prints it).
    pub images: PathBuf,
}

impl ClusterBins {
    /// A binary of the set.
    pub fn bin(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Builds (or reuses) the binaries and the images: both scripts cache their output.
    pub fn locate() -> Result<Self> {
        let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts");
        let run_script = |c: &mut Command| -> Result<PathBuf> {
            c.stderr(std::process::Stdio::inherit());
            let out = cmd::run(c).map_err(|e| LabError::ControlPlaneBinaries {
                detail: e.to_string(),
            })?;
            Ok(PathBuf::from(out.trim()))
        };
        let dir = run_script(Command::new(scripts.join("control-plane.sh")).arg("cluster"))?;
        let images = match std::env::var_os(IMAGES_ENV).filter(|v| !v.is_empty()) {
            Some(dir) => PathBuf::from(dir),
            None => {
                let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/lab-images");
                run_script(Command::new(scripts.join("lab-images.sh")).arg(&dir))?
            }
        };
        let bins = Self { dir, images };
        for archive in bins.image_archives() {
            if !archive.is_file() {
                return Err(LabError::ControlPlaneBinaries {
                    detail: format!(
                        "{} is missing (tests/scripts/lab-images.sh)",
                        archive.display()
                    ),
                });
            }
        }
        for b in [
            "kubelet",
            "containerd",
            "containerd-shim-runc-v2",
            "ctr",
            "kube-controller-manager",
            "kube-scheduler",
        ] {
            if !bins.bin(b).is_file() {
                return Err(LabError::ControlPlaneBinaries {
                    detail: format!("{} is missing", bins.bin(b).display()),
                });
            }
        }
        Ok(bins)
    }

    /// The image archives every node imports.
    pub fn image_archives(&self) -> Vec<PathBuf> {
        ["podroute", "pause", "busybox"]
            .iter()
            .map(|n| self.images.join(format!("{n}.tar")))
            .collect()
    }
}

/// The files and directories of one node's runtime.
#[derive(Debug, Clone)]
pub(crate) struct NodeRuntime {
    /// `<lab dir>/nodes/<node>`.
    pub(crate) dir: PathBuf,
    /// The node.
    pub(crate) node: LabNode,
    /// The kubelet's cgroup root.
    pub(crate) cgroup: String,
}

impl NodeRuntime {
    pub(crate) fn new(lab_dir: &Path, node: &LabNode, cgroup: String) -> Self {
        Self {
            dir: lab_dir.join("nodes").join(&node.name),
            node: node.clone(),
            cgroup,
        }
    }

    /// containerd's socket.
    pub(crate) fn socket(&self) -> PathBuf {
        self.dir.join("containerd/containerd.sock")
    }

    /// containerd's configuration (config version 3, containerd 2.x).
    pub(crate) fn containerd_config(&self) -> String {
        let d = self.dir.display();
        format!(
            r#"version = 3
root = "{d}/containerd/root"
state = "{d}/containerd/state"
# NRI and tracing would open sockets and exporters outside the lab.
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "{d}/containerd/containerd.sock"
[ttrpc]
  address = "{d}/containerd/containerd.sock.ttrpc"

[plugins."io.containerd.cri.v1.runtime"]
  # Lowering a process's oom_score_adj needs CAP_SYS_RESOURCE, which the lab may not have
  # (sandboxed CI): containers get no lower a score than containerd's own.
  restrict_oom_score_adj = true
[plugins."io.containerd.cri.v1.runtime".cni]
  # The node's own (overlaid) paths: the DaemonSet's init container and agent fill them.
  bin_dirs = ["/opt/cni/bin"]
  conf_dir = "/etc/cni/net.d"
  # containerd sets up the pod's lo itself: no loopback plugin needed.
  use_internal_loopback = true
[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
  BinaryName = "/usr/sbin/runc"
  Root = "{d}/runc"
  SystemdCgroup = false
[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = "{PAUSE_IMAGE}"
"#
        )
    }

    /// The KubeletConfiguration: cgroup v1 allowed, the node's own cgroup root, no host-wide
    /// changes, API-server (webhook) authentication and authorization of its API.
    pub(crate) fn kubelet_config(&self, ca_cert: &Path) -> serde_json::Value {
        let d = &self.dir;
        json!({
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            // The host is cgroup v1 (hybrid); kubelet 1.34 refuses it unless told.
            "failCgroupV1": false,
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": self.cgroup,
            // Checks the kernel settings instead of rewriting them (they are host-wide).
            "protectKernelDefaults": true,
            "failSwapOn": false,
            "containerRuntimeEndpoint": format!("unix://{}", self.socket().display()),
            "podLogsDir": d.join("pod-logs"),
            // Pods get no resolv.conf from the host.
            "resolvConf": "",
            "address": self.node.ipv4.to_string(),
            "port": 10250,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": 0,
            "authentication": {
                "anonymous": { "enabled": false },
                "webhook": { "enabled": true },
                "x509": { "clientCAFile": ca_cert },
            },
            "authorization": { "mode": "Webhook" },
            // A shared CI disk is often fuller than the defaults allow: evict nothing.
            "evictionHard": {
                "memory.available": "1Mi",
                "nodefs.available": "1%",
                "nodefs.inodesFree": "1%",
                "imagefs.available": "1%",
            },
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "localStorageCapacityIsolation": false,
            "registerNode": true,
            "nodeStatusReportFrequency": "10s",
        })
    }

    /// Writes every file the runtime needs; returns the sysctl masks to mount (file, target).
    pub(crate) fn prepare(
        &self,
        kubeconfig: &serde_json::Value,
        ca_cert: &Path,
    ) -> Result<Vec<(PathBuf, PathBuf)>> {
        for sub in ["containerd", "runc", "kubelet", "pod-logs", "sysctl"] {
            process::ensure_dir(&self.dir.join(sub))?;
        }
        for o in OVERLAID {
            for layer in ["upper", "work"] {
                process::ensure_dir(&self.dir.join("overlay").join(o).join(layer))?;
            }
        }
        let write = |name: &str, text: String| -> Result<()> {
            let p = self.dir.join(name);
            fs::write(&p, text).map_err(file_err(&p))
        };
        write("containerd.toml", self.containerd_config())?;
        write("kubelet.yaml", self.kubelet_config(ca_cert).to_string())?;
        write("kubeconfig", kubeconfig.to_string())?;
        let mut masks = Vec::new();
        for (key, want) in KUBELET_SYSCTLS {
            let target = Path::new("/proc/sys").join(key);
            let have = fs::read_to_string(&target).unwrap_or_default();
            if have.trim() == want {
                continue;
            }
            let file = self.dir.join("sysctl").join(key.replace('/', "."));
            fs::write(&file, format!("{want}\n")).map_err(file_err(&file))?;
            masks.push((file, target));
        }
        Ok(masks)
    }

    /// The command that starts containerd in the node's network namespace and a new mount
    /// namespace set up as the module docs say.
    pub(crate) fn containerd_command(
        &self,
        bins: &ClusterBins,
        masks: &[(PathBuf, PathBuf)],
    ) -> Command {
        // $1: node dir, $2: containerd, then (mask, target) pairs.
        let script = r#"set -e
node=$1 containerd=$2; shift 2
mount -t tmpfs -o mode=0755 podroute-lab-run /run
for d in etc opt var; do
  mount -t overlay podroute-lab-overlay -o "lowerdir=/$d,upperdir=$node/overlay/$d/upper,workdir=$node/overlay/$d/work" "/$d"
done
while [ $# -ge 2 ]; do mount --bind -o ro "$1" "$2"; shift 2; done
exec "$containerd" --config "$node/containerd.toml"
"#;
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.node.netns))
            .args(["unshare", "--mount", "--propagation", "slave", "--"])
            .args(["sh", "-c", script, "sh"])
            .arg(&self.dir)
            .arg(bins.bin("containerd"));
        for (file, target) in masks {
            c.arg(file).arg(target);
        }
        // containerd finds its shim on PATH.
        let path = std::env::var("PATH").unwrap_or_default();
        c.env("PATH", format!("{}:{path}", bins.dir.display()));
        c
    }

    /// Waits until containerd answers on its socket.
    pub(crate) fn wait_containerd(&self, bins: &ClusterBins, log: &Path) -> Result<()> {
        let started = Instant::now();
        loop {
            crate::cancel::check()?;
            let out = cmd::output(self.ctr(bins).arg("version"))?;
            if out.status.success() {
                return Ok(());
            }
            if started.elapsed() > CONTAINERD_READY_TIMEOUT {
                return Err(LabError::Timeout {
                    what: "containerd",
                    seconds: CONTAINERD_READY_TIMEOUT.as_secs(),
                    tail: cmd::tail(&fs::read_to_string(log).unwrap_or_default(), 3),
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `ctr` against this node's containerd, in the `k8s.io` namespace the CRI uses.
    pub(crate) fn ctr(&self, bins: &ClusterBins) -> Command {
        let mut c = Command::new(bins.bin("ctr"));
        c.arg("--address").arg(self.socket()).args(["-n", "k8s.io"]);
        c
    }

    /// Imports the lab's image archives.
    pub(crate) fn import_images(&self, bins: &ClusterBins) -> Result<()> {
        for archive in bins.image_archives() {
            cmd::run(
                self.ctr(bins)
                    .args(["images", "import", "--local"])
                    .arg(&archive),
            )?;
        }
        Ok(())
    }

    /// The kubelet's command: it joins containerd's network and mount namespaces.
    pub(crate) fn kubelet_command(&self, bins: &ClusterBins, containerd_pid: u32) -> Command {
        let ips: Vec<String> = self.node.ips().iter().map(ToString::to_string).collect();
        let mut c = Command::new("nsenter");
        c.args(["-t", &containerd_pid.to_string(), "-m", "-n", "--"])
            .arg(bins.bin("kubelet"))
            .arg(format!(
                "--config={}",
                self.dir.join("kubelet.yaml").display()
            ))
            .arg(format!(
                "--kubeconfig={}",
                self.dir.join("kubeconfig").display()
            ))
            .arg(format!("--root-dir={}", self.dir.join("kubelet").display()))
            .arg(format!("--hostname-override={}", self.node.name))
            .arg(format!("--node-ip={}", ips.join(",")))
            .arg("--node-labels=podroute.io/lab=true")
            .arg("--v=1");
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::LabName;

    fn runtime() -> NodeRuntime {
        let lab = LabName::new("demo").expect("a valid name");
        let node = LabNode::planned(&lab, 2, 1, false);
        NodeRuntime::new(
            Path::new("/l/demo"),
            &node,
            "/podroute-lab-demo-node2".into(),
        )
    }

    #[test]
    fn containerd_keeps_its_state_in_the_node_directory() {
        let conf = runtime().containerd_config();
        assert!(conf.contains(r#"root = "/l/demo/nodes/node2/containerd/root""#));
        assert!(conf.contains(r#"address = "/l/demo/nodes/node2/containerd/containerd.sock""#));
        assert!(conf.contains(r#"Root = "/l/demo/nodes/node2/runc""#));
        assert!(conf.contains(PAUSE_IMAGE));
    }

    #[test]
    fn the_kubelet_changes_nothing_host_wide() {
        let c = runtime().kubelet_config(Path::new("/l/demo/pki/ca.crt"));
        assert_eq!(c["protectKernelDefaults"], true);
        assert_eq!(c["failCgroupV1"], false);
        assert_eq!(c["cgroupRoot"], "/podroute-lab-demo-node2");
        assert_eq!(c["address"], "198.18.0.2");
        assert_eq!(c["authentication"]["anonymous"]["enabled"], false);
    }
}
