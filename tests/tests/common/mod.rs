//! Helpers shared by the lab's root tests.
#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Error type of the tests: anything, with its message.
pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A lab name unique to this test process: `t-<what>-<pid>`.
pub fn unique(what: &str) -> String {
    format!("t-{what}-{}", std::process::id())
}

/// What the root network namespace holds: `ip -j addr`, `ip -j route`, `ip -j -6 route`.
pub fn root_snapshot() -> String {
    let mut s = String::new();
    for args in [
        &["-j", "addr"][..],
        &["-j", "route"][..],
        &["-j", "-6", "route"][..],
    ] {
        let out = Command::new("ip").args(args).output().expect("ip runs");
        s.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    s
}

/// Namespaces on the host whose name starts with `<lab>-`.
pub fn namespaces_of(lab: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|ns| ns.starts_with(&format!("{lab}-")))
        .map(str::to_owned)
        .collect()
}

/// Live processes whose command line names a file under `dir` (the lab's directory).
pub fn processes_using(dir: &Path) -> Vec<String> {
    let needle = format!("{}/", dir.to_string_lossy());
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()) && n != me)
        })
        .filter_map(|e| {
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let zombie = stat
                .rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'));
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            (!zombie && text.contains(&needle)).then_some(text)
        })
        .collect()
}

/// Asserts lab `name` left nothing behind: namespaces, processes, directory.
pub fn assert_gone(name: &str) {
    assert_eq!(
        namespaces_of(name),
        Vec::<String>::new(),
        "namespaces of {name} left behind"
    );
    let dir = podroute_lab::names::lab_root().join(name);
    assert_eq!(
        processes_using(&dir),
        Vec::<String>::new(),
        "processes of {name} left behind"
    );
    assert!(!dir.exists(), "{} left behind", dir.display());
}

/// Polls `f` every 200 ms until it is true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
