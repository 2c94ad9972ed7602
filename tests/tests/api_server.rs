//! The lab's API server runs with RBAC and service-account tokens, and survives a restart.

mod common;

use std::process::Output;

use common::{TestResult, assert_gone, unique};
use podroute_lab::{Lab, LabConfig};

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
#[ignore = "needs root: run by make test"]
fn api_server_refuses_the_unauthenticated_and_the_unprivileged() -> TestResult {
    let name = unique("rbac");
    let lab = Lab::up(&LabConfig::new(&name, 1))?;

    // No credentials at all: anonymous may not list nodes (403); a bad token is refused (401).
    let ca = lab.dir().join("pki/ca.crt");
    let ca = ca.to_string_lossy();
    let url = "https://198.18.0.250:6443/api/v1/nodes";
    let curl = [
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--cacert",
        &ca,
        url,
    ];
    let anonymous = lab.exec_ok("cp", &curl)?;
    assert_eq!(anonymous, "403");
    let mut bad_token = curl.to_vec();
    bad_token.extend(["-H", "Authorization: Bearer not-a-token"]);
    assert_eq!(lab.exec_ok("cp", &bad_token)?, "401");

    // A ServiceAccount can do nothing with nodes until bound a role.
    let sa = lab.service_account_kubeconfig("podroute-test", "agent")?;
    let can = lab.kubectl_as_output(&sa, &["auth", "can-i", "list", "nodes"])?;
    assert_eq!(
        String::from_utf8_lossy(&can.stdout).trim(),
        "no",
        "{}",
        text(&can)
    );
    let out = lab.kubectl_as_output(&sa, &["get", "nodes"])?;
    assert!(text(&out).contains("Forbidden"), "{}", text(&out));

    lab.kubectl(&[
        "create",
        "clusterrole",
        "node-reader",
        "--verb=get,list,watch",
        "--resource=nodes",
    ])?;
    lab.kubectl(&[
        "create",
        "clusterrolebinding",
        "agent-reads-nodes",
        "--clusterrole=node-reader",
        "--serviceaccount=podroute-test:agent",
    ])?;
    let can = lab.kubectl_as_output(&sa, &["auth", "can-i", "list", "nodes"])?;
    assert_eq!(
        String::from_utf8_lossy(&can.stdout).trim(),
        "yes",
        "{}",
        text(&can)
    );
    let nodes = lab.kubectl_as_output(&sa, &["get", "nodes", "-o", "name"])?;
    assert_eq!(
        String::from_utf8_lossy(&nodes.stdout),
        "node/node1\n",
        "{}",
        text(&nodes)
    );
    // Bound to read, not to write.
    let can = lab.kubectl_as_output(&sa, &["auth", "can-i", "delete", "nodes"])?;
    assert_eq!(String::from_utf8_lossy(&can.stdout).trim(), "no");

    drop(lab);
    assert_gone(&name);
    Ok(())
}

#[test]
#[ignore = "needs root: run by make test"]
fn api_server_stops_and_starts_keeping_its_objects() -> TestResult {
    let name = unique("apirestart");
    let mut lab = Lab::up(&LabConfig::new(&name, 2))?;
    lab.stop_apiserver()?;
    let out = lab.kubectl_output(&["get", "nodes", "--request-timeout=2s"])?;
    assert!(
        !out.status.success(),
        "the API server still answers: {}",
        text(&out)
    );
    // The nodes' network does not depend on the API server.
    assert!(lab.ping_from("node1", "198.18.0.2".parse()?)?);

    lab.start_apiserver()?;
    assert_eq!(
        lab.kubectl(&["get", "nodes", "-o", "name"])?,
        "node/node1\nnode/node2\n"
    );
    drop(lab);
    assert_gone(&name);
    Ok(())
}
