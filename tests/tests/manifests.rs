//! manifests/ against a real API server: a server-side dry-run apply of the whole
//! kustomization, and the agent's ServiceAccount rights checked against a golden
//! `kubectl auth can-i --list` plus negative checks.

mod common;

use std::path::{Path, PathBuf};

use common::{TestResult, unique};
use podroute_lab::{Lab, LabConfig};

const AGENT: &str = "system:serviceaccount:kube-system:podroute";

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

#[test]
#[ignore = "needs root: run by make test"]
fn manifests_apply_server_side_and_grant_the_agent_only_what_it_needs() -> TestResult {
    let name = unique("manifests");
    let lab = Lab::up(&LabConfig::new(&name, 1))?;
    let manifests = repo("manifests");

    // What `make test` promises: the API server accepts every object as written.
    let dry = lab.kubectl(&[
        "apply".as_ref(),
        "--server-side".as_ref(),
        "--dry-run=server".as_ref(),
        "-k".as_ref(),
        manifests.as_os_str(),
    ])?;
    assert!(
        dry.contains("daemonset.apps/podroute serverside-applied (server dry run)"),
        "{dry}"
    );

    // The real thing, then the agent's rights as the API server computes them.
    lab.kubectl(&["apply".as_ref(), "-k".as_ref(), manifests.as_os_str()])?;
    // Cluster-wide rules show in every namespace; kube-system adds the agent's Role there.
    let mut list = String::new();
    for ns in ["default", "kube-system"] {
        list.push_str(&format!("## namespace {ns}\n"));
        list.push_str(&lab.kubectl(&["auth", "can-i", "--list", "-n", ns, "--as", AGENT])?);
    }
    let golden_path = repo("tests/manifests/golden/agent-can-i-list.txt");
    if std::env::var_os("PODROUTE_BLESS").is_some() {
        std::fs::write(&golden_path, &list)?;
    }
    let golden = std::fs::read_to_string(&golden_path)?;
    assert_eq!(
        list,
        golden,
        "the agent's rights changed; if that is intended, rerun with PODROUTE_BLESS=1 and review the diff of {}",
        golden_path.display()
    );

    // What it must not do, said explicitly (a golden that grew would also catch these).
    for (verb, what) in [
        ("get", "secrets"),
        ("list", "secrets"),
        ("get", "secrets -n kube-system"),
        ("list", "secrets -n kube-system"),
        ("watch", "secrets -n kube-system"),
        ("get", "secrets -n default"),
        ("list", "pods"),
        ("list", "pods -A"),
        ("get", "configmaps -n default"),
        ("update", "nodes"),
        ("patch", "nodes"),
        ("delete", "nodes"),
        ("create", "pods"),
        ("list", "serviceaccounts -A"),
        ("create", "serviceaccounts/token"),
    ] {
        let mut args = vec!["auth", "can-i", verb];
        args.extend(what.split_whitespace());
        args.extend(["--as", AGENT]);
        let out = lab.kubectl_output(&args)?;
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "no",
            "the agent can {verb} {what}"
        );
    }
    drop(lab);
    Ok(())
}
