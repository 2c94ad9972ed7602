//! The lab's top-of-rack router: BIRD 2, GoBGP or FRR (Debian's packages) in the fabric
//! namespace at 198.18.0.254 / fd00:198:18::fe.
//!
//! Configuration, the same for all three: AS 64512, iBGP with every node, the router a route
//! reflector (RFC 4456) with every node a client (cluster id 198.18.0.254), so a lab can run with
//! the agents' full mesh turned off. One session per node address: an IPv4 session carrying
//! IPv4 unicast and, with `--ipv6`, an IPv6 session carrying IPv6 unicast. The router connects
//! actively with a 5-second connect-retry so sessions come up quickly whichever side starts
//! first. BIRD and FRR (through zebra) also install what they learn into the fabric namespace's
//! kernel table, so the fabric forwards pod traffic like a real top-of-rack switch would;
//! GoBGP programs no kernel (it has no FIB of its own).
//!
//! Everything the router uses lives in `<lab dir>/router/`: its configuration, its control
//! socket (BIRD `bird.ctl`, FRR's vty sockets), pid file and log. GoBGP's gRPC API listens on
//! 127.0.0.1:50051 inside the fabric namespace (a loopback per lab, so labs do not collide).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

use crate::cmd;
use crate::error::{LabError, Result};
use crate::plan::{LAB_AS, ROUTER_V4, ROUTER_V6};

/// GoBGP's gRPC API address inside the fabric namespace.
pub const GOBGP_API: &str = "127.0.0.1:50051";

/// Which router, if any, runs in the fabric namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tor {
    /// No router.
    #[default]
    None,
    /// BIRD 2 (`bird`, `birdc`).
    Bird,
    /// GoBGP (`gobgpd`, `gobgp`).
    Gobgp,
    /// FRR's `bgpd` with `zebra` (which installs bgpd's routes into the fabric namespace's
    /// kernel, as BIRD's kernel protocol does), queried with `vtysh`.
    Frr,
}

impl FromStr for Tor {
    type Err = LabError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(Self::None),
            "bird" => Ok(Self::Bird),
            "gobgp" => Ok(Self::Gobgp),
            "frr" => Ok(Self::Frr),
            other => Err(LabError::Invalid(format!(
                "unknown router {other:?}: use bird, gobgp, frr or none"
            ))),
        }
    }
}

impl std::fmt::Display for Tor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::None => "none",
            Self::Bird => "bird",
            Self::Gobgp => "gobgp",
            Self::Frr => "frr",
        })
    }
}

/// One BGP neighbour of the router: a node's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbor {
    /// The node's name (`node1`, ...), used in BIRD protocol names.
    pub node: String,
    /// The node's fabric address.
    pub addr: IpAddr,
}

fn family(addr: &IpAddr) -> &'static str {
    if addr.is_ipv4() { "v4" } else { "v6" }
}

/// BIRD's protocol name for a neighbour: `<node>_v4` / `<node>_v6`.
pub fn bird_protocol_name(n: &Neighbor) -> String {
    format!("{}_{}", n.node, family(&n.addr))
}

/// BIRD 2 configuration for the router.
pub fn bird_config(dir: &Path, neighbors: &[Neighbor]) -> String {
    let mut c = String::new();
    let _ = write!(
        c,
        "# podroute lab router (BIRD 2): AS {LAB_AS}, route reflector, every node a client.\n\
         log \"{log}\" all;\n\
         router id {ROUTER_V4};\n\
         protocol device {{ }}\n\
         protocol kernel kernel_v4 {{ ipv4 {{ import none; export all; }}; }}\n\
         protocol kernel kernel_v6 {{ ipv6 {{ import none; export all; }}; }}\n",
        log = dir.join("bird.log").display(),
    );
    for (name, local, fam) in [
        ("lab_v4", ROUTER_V4.to_string(), "ipv4"),
        ("lab_v6", ROUTER_V6.to_string(), "ipv6"),
    ] {
        let _ = write!(
            c,
            "template bgp {name} {{\n  \
               local {local} as {LAB_AS};\n  \
               direct;\n  \
               rr client;\n  \
               rr cluster id {ROUTER_V4};\n  \
               connect retry time 5;\n  \
               error wait time 1, 10;\n  \
               {fam} {{ import all; export all; }};\n\
             }}\n"
        );
    }
    for n in neighbors {
        let _ = writeln!(
            c,
            "protocol bgp {} from lab_{} {{ neighbor {} as {LAB_AS}; }}",
            bird_protocol_name(n),
            family(&n.addr),
            n.addr
        );
    }
    c
}

/// GoBGP (TOML) configuration for the router.
pub fn gobgp_config(neighbors: &[Neighbor]) -> String {
    // gobgpd exits when it cannot listen on an address: the IPv6 one only in an IPv6 lab.
    let listen = if neighbors.iter().any(|n| n.addr.is_ipv6()) {
        format!("\"{ROUTER_V4}\", \"{ROUTER_V6}\"")
    } else {
        format!("\"{ROUTER_V4}\"")
    };
    let mut c = format!(
        "# podroute lab router (GoBGP): AS {LAB_AS}, route reflector, every node a client.\n\
         [global.config]\n  as = {LAB_AS}\n  router-id = \"{ROUTER_V4}\"\n  \
         local-address-list = [{listen}]\n"
    );
    for n in neighbors {
        let (local, afi) = match n.addr {
            IpAddr::V4(_) => (ROUTER_V4.to_string(), "ipv4-unicast"),
            IpAddr::V6(_) => (ROUTER_V6.to_string(), "ipv6-unicast"),
        };
        let _ = write!(
            c,
            "\n[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"{addr}\"\n    peer-as = {LAB_AS}\n  \
             [neighbors.timers.config]\n    connect-retry = 5\n  \
             [neighbors.transport.config]\n    local-address = \"{local}\"\n  \
             [neighbors.route-reflector.config]\n    route-reflector-client = true\n    \
             route-reflector-cluster-id = \"{ROUTER_V4}\"\n  \
             [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"{afi}\"\n",
            addr = n.addr
        );
    }
    c
}

/// FRR `bgpd` configuration for the router (zebra, started with it, installs what it learns).
pub fn frr_config(neighbors: &[Neighbor]) -> String {
    let mut c = format!(
        "! podroute lab router (FRR bgpd): AS {LAB_AS}, route reflector, every node a client.\n\
         frr defaults traditional\n\
         hostname lab-router\n\
         !\n\
         router bgp {LAB_AS}\n \
         bgp router-id {ROUTER_V4}\n \
         bgp cluster-id {ROUTER_V4}\n \
         no bgp default ipv4-unicast\n \
         no bgp ebgp-requires-policy\n \
         no bgp network import-check\n \
         neighbor LAB4 peer-group\n \
         neighbor LAB4 remote-as {LAB_AS}\n \
         neighbor LAB4 update-source {ROUTER_V4}\n \
         neighbor LAB4 timers connect 5\n \
         neighbor LAB6 peer-group\n \
         neighbor LAB6 remote-as {LAB_AS}\n \
         neighbor LAB6 update-source {ROUTER_V6}\n \
         neighbor LAB6 timers connect 5\n"
    );
    for n in neighbors {
        let group = if n.addr.is_ipv4() { "LAB4" } else { "LAB6" };
        let _ = writeln!(c, " neighbor {} peer-group {group}", n.addr);
    }
    c.push_str(
        " address-family ipv4 unicast\n  neighbor LAB4 activate\n  neighbor LAB4 route-reflector-client\n \
         exit-address-family\n \
         address-family ipv6 unicast\n  neighbor LAB6 activate\n  neighbor LAB6 route-reflector-client\n \
         exit-address-family\n!\n",
    );
    c
}

/// The router's program, its install hint, and the client used to query it.
/// zebra's `-K` after a crash: how long it keeps its previous run's kernel routes.
pub(crate) const ZEBRA_RESTART_SECS: u64 = 10;

pub(crate) fn programs(tor: Tor) -> Option<(&'static str, &'static str, &'static str)> {
    match tor {
        Tor::None => None,
        Tor::Bird => Some(("bird", "birdc", "install BIRD 2: apt-get install bird2")),
        Tor::Gobgp => Some(("gobgpd", "gobgp", "install GoBGP: apt-get install gobgpd")),
        Tor::Frr => Some((
            "/usr/lib/frr/bgpd",
            "vtysh",
            "install FRR: apt-get install frr",
        )),
    }
}

/// The router in a lab's fabric namespace: which one, where its files are, and how to ask it
/// about its sessions and routes.
#[derive(Debug, Clone)]
pub struct Router {
    kind: Tor,
    dir: PathBuf,
    fabric_ns: String,
}

/// One of the router's BGP sessions as the router reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterSession {
    /// The neighbour's address.
    pub neighbor: IpAddr,
    /// The state in the router's own words (BIRD "Established"/"Active", GoBGP "Establ", FRR
    /// "Established"/"Active").
    pub state: String,
    /// Whether the session is established.
    pub established: bool,
}

impl Router {
    pub(crate) fn new(kind: Tor, dir: PathBuf, fabric_ns: String) -> Self {
        Self {
            kind,
            dir,
            fabric_ns,
        }
    }

    /// Which router this is.
    pub fn kind(&self) -> Tor {
        self.kind
    }

    /// The router's directory (`<lab dir>/router`): config, control socket, log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The configuration file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join(match self.kind {
            Tor::Bird => "bird.conf",
            Tor::Gobgp => "gobgpd.toml",
            Tor::Frr => "bgpd.conf",
            Tor::None => "none",
        })
    }

    /// The router's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join(match self.kind {
            Tor::Bird => "bird.log",
            Tor::Gobgp | Tor::Frr | Tor::None => "router.log",
        })
    }

    /// The router daemon's pid file (`<lab dir>/pids/router.pid`).
    pub fn pid_file(&self) -> PathBuf {
        self.dir
            .parent()
            .unwrap_or(&self.dir)
            .join("pids/router.pid")
    }

    /// The pid file of the FIB manager beside the router daemon (FRR's zebra, which the
    /// daemon's start script runs in the background); none for BIRD and GoBGP.
    pub(crate) fn fib_manager_pid_file(&self) -> Option<PathBuf> {
        (self.kind == Tor::Frr).then(|| self.dir.join("zebra.pid"))
    }

    /// BIRD's control socket.
    pub fn bird_socket(&self) -> PathBuf {
        self.dir.join("bird.ctl")
    }

    /// The command that runs the router daemon in the foreground (wrapped in `ip netns exec`
    /// by the caller).
    /// The daemon's command line. `recovery`: it starts after a crash of its own and
    /// recovers gracefully (BIRD's `-R`: graceful-restart recovery, its kernel routes kept
    /// until BGP has converged again; GoBGP's `--graceful-restart`: the Restart State bit;
    /// FRR: zebra is started only if it is not running (see below), and after a crash with
    /// `-K`, which leaves the routes its previous run installed in the kernel until bgpd
    /// has learnt them again; bgpd restarts as configured).
    pub(crate) fn daemon_args(&self, recovery: bool) -> Vec<String> {
        let d = |f: &str| self.dir.join(f).display().to_string();
        match self.kind {
            Tor::None => Vec::new(),
            Tor::Bird => {
                let mut args: Vec<String> = vec![
                    "bird".into(),
                    "-f".into(),
                    "-c".into(),
                    d("bird.conf"),
                    "-s".into(),
                    d("bird.ctl"),
                    "-P".into(),
                    d("bird.pid"),
                ];
                if recovery {
                    args.push("-R".into());
                }
                args
            }
            Tor::Gobgp => {
                let mut args: Vec<String> = vec![
                    "gobgpd".into(),
                    "-f".into(),
                    d("gobgpd.toml"),
                    "-t".into(),
                    "toml".into(),
                    "-p".into(),
                    format!("--api-hosts={GOBGP_API}"),
                    "--pprof-disable".into(),
                    // The config path names the lab dir, so `down` finds this process by it.
                ];
                if recovery {
                    // The Restart State bit in its graceful-restart capability: peers keep
                    // its routes until its End-of-RIB, and it waits for theirs first.
                    args.push("--graceful-restart".into());
                }
                args
            }
            Tor::Frr => {
                // zebra (the FIB manager) first, daemonized, as FRR's user (so the router
                // directory becomes that user's, for zebra's pid file and sockets), unless it already runs (after
                // a bgpd crash it does: the second one exits at once on its pid file);
                // then bgpd in the foreground, the lab's process. `Lab::crash_router`
                // kills bgpd only, as watchfrr restarts a crashed bgpd while zebra keeps
                // the kernel routes (bgpd's graceful restart keeps them in zebra too);
                // `Lab::crash_router_entirely` kills zebra as well.
                let vty = self.dir.display().to_string();
                let zserv = d("zserv.api");
                let mut zebra = vec![
                    "/usr/lib/frr/zebra".to_owned(),
                    "-d".into(),
                    "-f".into(),
                    "/dev/null".into(),
                    "-i".into(),
                    d("zebra.pid"),
                    "--vty_socket".into(),
                    vty.clone(),
                    "-z".into(),
                    zserv.clone(),
                    "-P".into(),
                    "0".into(),
                    "--log".into(),
                    format!("file:{}", d("zebra.log")),
                ];
                if recovery {
                    // zebra's graceful restart: its old kernel routes are swept after this
                    // many seconds, not at start (bgpd relearns them within a few). Short,
                    // so that the sweep falls inside a zero-loss scenario's probes. Without
                    // effect when zebra still runs: that second zebra exits on its pid file.
                    zebra.extend(["-K".into(), ZEBRA_RESTART_SECS.to_string()]);
                }
                let bgpd = [
                    "/usr/lib/frr/bgpd".to_owned(),
                    "-f".into(),
                    d("bgpd.conf"),
                    "-i".into(),
                    d("bgpd.pid"),
                    "--vty_socket".into(),
                    vty,
                    "-z".into(),
                    zserv,
                    "-S".into(),
                    "-P".into(),
                    "0".into(),
                    "--log".into(),
                    format!("file:{}", d("router.log")),
                ];
                let quote = |args: &[String]| {
                    args.iter()
                        .map(|a| format!("'{a}'"))
                        .collect::<Vec<_>>()
                        .join(" ")
                };
                vec![
                    "sh".into(),
                    "-c".into(),
                    format!(
                        "chown frr:frr '{}'; {} 2>/dev/null; for i in $(seq 50); do [ -S '{}' ] && break; sleep 0.1; done; exec {}",
                        self.dir.display(),
                        quote(&zebra),
                        d("zserv.api"),
                        quote(&bgpd)
                    ),
                ]
            }
        }
    }

    /// The client command line for `args` (without the netns wrapper).
    fn client(&self, args: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = match self.kind {
            Tor::None => Vec::new(),
            Tor::Bird => vec![
                "birdc".into(),
                "-s".into(),
                self.bird_socket().display().to_string(),
            ],
            Tor::Gobgp => {
                let (host, port) = GOBGP_API.split_once(':').unwrap_or((GOBGP_API, "50051"));
                vec![
                    "gobgp".into(),
                    "-u".into(),
                    host.into(),
                    "-p".into(),
                    port.into(),
                ]
            }
            Tor::Frr => vec![
                "vtysh".into(),
                "--vty_socket".into(),
                self.dir.display().to_string(),
                "-d".into(),
                "bgpd".into(),
            ],
        };
        match self.kind {
            // vtysh takes each command as one `-c` argument.
            Tor::Frr => {
                v.push("-c".into());
                v.push(args.join(" "));
            }
            _ => v.extend(args.iter().map(|a| (*a).to_owned())),
        }
        v
    }

    /// A command running the router's client (`birdc`, `gobgp` or `vtysh -c`) with `args`,
    /// inside the fabric namespace.
    pub fn command(&self, args: &[&str]) -> Command {
        let argv = self.client(args);
        let (prog, rest) = argv
            .split_first()
            .map(|(p, r)| (p.clone(), r.to_vec()))
            .unwrap_or_default();
        cmd::in_ns(&self.fabric_ns, prog, rest)
    }

    /// Runs the router's client with `args` and returns its output, e.g.
    /// `router.exec(&["show", "route"])` (BIRD), `&["global", "rib"]` (GoBGP) or
    /// `&["show", "bgp", "ipv4", "unicast"]` (FRR).
    pub fn exec(&self, args: &[&str]) -> Result<String> {
        if self.kind == Tor::None {
            return Err(LabError::Invalid(
                "this lab has no router (--tor none)".into(),
            ));
        }
        cmd::run(&mut self.command(args))
    }

    /// The router's sessions in its own words (BIRD `show protocols`, GoBGP `neighbor`,
    /// FRR `show bgp summary`).
    pub fn sessions_text(&self) -> Result<String> {
        match self.kind {
            Tor::None => Ok(String::new()),
            Tor::Bird => self.exec(&["show", "protocols"]),
            Tor::Gobgp => self.exec(&["neighbor"]),
            Tor::Frr => self.exec(&["show", "bgp", "summary"]),
        }
    }

    /// The router's BGP table in its own words (BIRD `show route`, GoBGP `global rib` for both
    /// families, FRR `show bgp ipv4 unicast` and `ipv6 unicast`).
    pub fn routes_text(&self) -> Result<String> {
        match self.kind {
            Tor::None => Ok(String::new()),
            Tor::Bird => self.exec(&["show", "route"]),
            Tor::Gobgp => Ok(self.exec(&["global", "rib", "-a", "ipv4"])?
                + &self.exec(&["global", "rib", "-a", "ipv6"])?),
            Tor::Frr => Ok(self.exec(&["show", "bgp", "ipv4", "unicast"])?
                + &self.exec(&["show", "bgp", "ipv6", "unicast"])?),
        }
    }

    /// Every configured session with its state, parsed from the router's output.
    pub fn sessions(&self, neighbors: &[Neighbor]) -> Result<Vec<RouterSession>> {
        match self.kind {
            Tor::None => Ok(Vec::new()),
            Tor::Bird => Ok(parse_bird_protocols(
                &self.exec(&["show", "protocols"])?,
                neighbors,
            )),
            Tor::Gobgp => Ok(parse_gobgp_neighbors(&self.exec(&["neighbor"])?)),
            Tor::Frr => parse_frr_neighbors(&self.exec(&["show", "bgp", "neighbors", "json"])?),
        }
    }

    /// Makes the running router re-read its configuration file after a test rewrote it
    /// (see [`Router::config_path`]): BIRD `configure`, GoBGP `SIGHUP`. FRR's bgpd has no
    /// file reload without its management daemons: change it with `vtysh` commands instead.
    pub fn reload(&self) -> Result<()> {
        match self.kind {
            Tor::None => Ok(()),
            Tor::Bird => self.exec(&["configure"]).map(drop),
            Tor::Gobgp => {
                let pid_file = self.pid_file();
                let pid = std::fs::read_to_string(&pid_file)
                    .map_err(crate::error::file_err(&pid_file))?;
                let pid: i32 = pid.trim().parse().map_err(|_| {
                    LabError::Invalid(format!("bad pid file {}", pid_file.display()))
                })?;
                nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGHUP,
                )
                .map_err(|e| LabError::Invalid(format!("cannot signal gobgpd: {e}")))
            }
            Tor::Frr => Err(LabError::Invalid(
                "FRR bgpd does not reload its file: use vtysh commands".into(),
            )),
        }
    }

    /// Runs several `vtysh -c` commands in one session (FRR only), e.g.
    /// `["configure terminal", "router bgp 64512", "neighbor 198.18.0.1 password x"]`.
    pub fn vtysh(&self, commands: &[&str]) -> Result<String> {
        if self.kind != Tor::Frr {
            return Err(LabError::Invalid("vtysh needs the FRR router".into()));
        }
        let mut argv = self.client(&[]);
        argv.truncate(argv.len() - 2);
        for c in commands {
            argv.push("-c".into());
            argv.push((*c).to_owned());
        }
        let (prog, rest) = argv
            .split_first()
            .map(|(p, r)| (p.clone(), r.to_vec()))
            .unwrap_or_default();
        cmd::run(&mut cmd::in_ns(&self.fabric_ns, prog, rest))
    }

    /// Re-reads the configuration after neighbours were added (BIRD `configure`, GoBGP and FRR
    /// get the new neighbour through their CLI).
    pub(crate) fn add_neighbors(&self, new: &[Neighbor], all: &[Neighbor]) -> Result<()> {
        match self.kind {
            Tor::None => Ok(()),
            Tor::Bird => {
                write_config(self, all)?;
                self.exec(&["configure"]).map(drop)
            }
            Tor::Gobgp => {
                // gobgpd re-reads its configuration file on SIGHUP, adding new neighbours
                // without touching established sessions.
                write_config(self, all)?;
                let pid_file = self.pid_file();
                let pid = std::fs::read_to_string(&pid_file)
                    .map_err(crate::error::file_err(&pid_file))?;
                let pid: i32 = pid.trim().parse().map_err(|_| {
                    LabError::Invalid(format!("bad pid file {}", pid_file.display()))
                })?;
                nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGHUP,
                )
                .map_err(|e| LabError::Invalid(format!("cannot signal gobgpd: {e}")))
            }
            Tor::Frr => {
                write_config(self, all)?;
                let mut c = self.client(&[]);
                c.truncate(c.len() - 2);
                let mut argv: Vec<String> = c;
                for s in [
                    "configure terminal".to_owned(),
                    format!("router bgp {LAB_AS}"),
                ] {
                    argv.push("-c".into());
                    argv.push(s);
                }
                for n in new {
                    let group = if n.addr.is_ipv4() { "LAB4" } else { "LAB6" };
                    argv.push("-c".into());
                    argv.push(format!("neighbor {} peer-group {group}", n.addr));
                }
                let (prog, rest) = argv
                    .split_first()
                    .map(|(p, r)| (p.clone(), r.to_vec()))
                    .unwrap_or_default();
                cmd::run(&mut cmd::in_ns(&self.fabric_ns, prog, rest)).map(drop)
            }
        }
    }
}

/// Writes the router's configuration for `neighbors` into its directory.
pub(crate) fn write_config(router: &Router, neighbors: &[Neighbor]) -> Result<()> {
    let text = match router.kind {
        Tor::None => return Ok(()),
        Tor::Bird => bird_config(&router.dir, neighbors),
        Tor::Gobgp => gobgp_config(neighbors),
        Tor::Frr => frr_config(neighbors),
    };
    let path = router.config_path();
    std::fs::write(&path, text).map_err(crate::error::file_err(&path))
}

/// Parses `birdc show protocols`: `node1_v4  BGP  ---  up  18:00:00.000  Established`.
pub(crate) fn parse_bird_protocols(text: &str, neighbors: &[Neighbor]) -> Vec<RouterSession> {
    let by_name: BTreeMap<String, IpAddr> = neighbors
        .iter()
        .map(|n| (bird_protocol_name(n), n.addr))
        .collect();
    text.lines()
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let addr = *by_name.get(*cols.first()?)?;
            // The "Info" column is last; BIRD leaves it empty while a session is down.
            let state = if cols.len() >= 6 {
                cols[5..].join(" ")
            } else {
                cols.get(3).copied().unwrap_or("").to_owned()
            };
            Some(RouterSession {
                neighbor: addr,
                established: state.starts_with("Established"),
                state,
            })
        })
        .collect()
}

/// Parses `gobgp neighbor`: `198.18.0.1  64512  never  Active  |  0  0`.
pub(crate) fn parse_gobgp_neighbors(text: &str) -> Vec<RouterSession> {
    text.lines()
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let addr: IpAddr = cols.first()?.parse().ok()?;
            let state = cols.get(3)?.to_string();
            Some(RouterSession {
                neighbor: addr,
                established: state.starts_with("Establ"),
                state,
            })
        })
        .collect()
}

/// Parses `vtysh -c 'show bgp neighbors json'`: `{"198.18.0.1": {"bgpState": "Active", ...}}`.
pub(crate) fn parse_frr_neighbors(text: &str) -> Result<Vec<RouterSession>> {
    let v: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| LabError::Invalid(format!("FRR printed unexpected JSON: {e}")))?;
    let Some(map) = v.as_object() else {
        return Ok(Vec::new());
    };
    Ok(map
        .iter()
        .filter_map(|(k, peer)| {
            let addr: IpAddr = k.parse().ok()?;
            let state = peer.get("bgpState")?.as_str()?.to_owned();
            Some(RouterSession {
                neighbor: addr,
                established: state == "Established",
                state,
            })
        })
        .collect())
}

impl Router {
    /// Waits up to `timeout` until the router reports an established session with every
    /// address in `peers`; returns whether it did.
    pub fn wait_established(
        &self,
        neighbors: &[Neighbor],
        peers: &[IpAddr],
        timeout: std::time::Duration,
    ) -> bool {
        crate::lab::wait_until(timeout, || {
            self.sessions(neighbors).is_ok_and(|s| {
                peers
                    .iter()
                    .all(|p| s.iter().any(|s| s.neighbor == *p && s.established))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{node_v4, node_v6};

    fn neighbors() -> Vec<Neighbor> {
        vec![
            Neighbor {
                node: "node1".into(),
                addr: node_v4(0, 1).into(),
            },
            Neighbor {
                node: "node2".into(),
                addr: node_v4(0, 2).into(),
            },
            Neighbor {
                node: "node1".into(),
                addr: node_v6(0, 1).into(),
            },
        ]
    }

    #[test]
    fn every_node_is_a_neighbour_in_each_config() {
        let bird = bird_config(Path::new("/lab/router"), &neighbors());
        assert!(
            bird.contains("protocol bgp node2_v4 from lab_v4 { neighbor 198.18.0.2 as 64512; }"),
            "{bird}"
        );
        assert!(
            bird.contains(
                "protocol bgp node1_v6 from lab_v6 { neighbor fd00:198:18::1 as 64512; }"
            )
        );
        assert!(bird.contains("rr client;"));
        let gobgp = gobgp_config(&neighbors());
        assert_eq!(gobgp.matches("[[neighbors]]").count(), 3);
        assert!(gobgp.contains("neighbor-address = \"fd00:198:18::1\""));
        let frr = frr_config(&neighbors());
        assert!(frr.contains(" neighbor 198.18.0.2 peer-group LAB4\n"));
        assert!(frr.contains(" neighbor fd00:198:18::1 peer-group LAB6\n"));
    }

    #[test]
    fn session_states_are_parsed_from_each_router() {
        let bird = "Name       Proto      Table      State  Since         Info\n\
                    device1    Device     ---        up     17:59:59.000  \n\
                    node1_v4   BGP        ---        up     18:00:00.000  Established   \n\
                    node2_v4   BGP        ---        start  18:00:00.000  Active        Socket: Connection refused\n";
        let s = parse_bird_protocols(bird, &neighbors());
        assert_eq!(s.len(), 2);
        assert!(s[0].established && !s[1].established);
        assert_eq!(s[1].neighbor, IpAddr::from(node_v4(0, 2)));

        let gobgp = "Peer           AS  Up/Down State       |#Received  Accepted\n\
                     198.18.0.1  64512 00:00:05 Establ      |        1         1\n\
                     198.18.0.2  64512   never Active      |        0         0\n";
        let s = parse_gobgp_neighbors(gobgp);
        assert_eq!(s.len(), 2);
        assert!(s[0].established && !s[1].established);

        let frr = r#"{"198.18.0.1":{"bgpState":"Established"},"198.18.0.2":{"bgpState":"Active"}}"#;
        let s = parse_frr_neighbors(frr).expect("valid JSON");
        assert_eq!(s.iter().filter(|s| s.established).count(), 1);
    }

    #[test]
    fn router_kinds_parse_from_the_cli() {
        assert_eq!("bird".parse::<Tor>().ok(), Some(Tor::Bird));
        assert!("quagga".parse::<Tor>().is_err());
        assert_eq!(Tor::Gobgp.to_string(), "gobgp");
    }
}
