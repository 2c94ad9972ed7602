//! BGPPeer and BGPConfiguration against the lab's real kube-apiserver (needs root: run by
//! `make test`): the generated CRDs install, their schema and CEL rules refuse what can be
//! seen from the object alone, and the agent peers through a BGPPeer.

use podroute_lab::{Lab, LabConfig};

mod lab_support;

const CRDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../manifests/crds.yaml");

fn lab_name(tag: &str) -> String {
    format!("bp{tag}{}", std::process::id() % 100_000)
}

/// Installs the CRDs and waits until the API server serves them.
fn install_crds(lab: &Lab) {
    lab.kubectl(&["apply", "-f", CRDS]).expect("apply CRDs");
    lab.kubectl(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/bgppeers.podroute.io",
        "crd/bgpconfigurations.podroute.io",
    ])
    .expect("CRDs established");
}

/// `kubectl apply` of one YAML document: Ok, or the API server's refusal.
fn apply(lab: &Lab, name: &str, yaml: &str) -> Result<String, String> {
    let path = lab.dir().join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).expect("write object");
    let out = lab
        .kubectl_output(&["apply", "-f", &path.display().to_string()])
        .expect("run kubectl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

fn peer(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: podroute.io/v1alpha1\nkind: BGPPeer\nmetadata:\n  name: {name}\nspec:\n{spec}"
    )
}

#[test]
#[ignore = "needs root: run by make test"]
fn the_schema_refuses_what_it_can_see_and_takes_the_rest() {
    let lab = Lab::up(&LabConfig::new(lab_name("s"), 1)).expect("lab up");
    install_crds(&lab);

    let valid = [
        (
            "tor-v4",
            "  peerAddress: 198.18.0.254\n  peerASNumber: 64512\n  import:\n  - prefix: 10.99.0.0/16\n    le: 24\n  maxPrefixes:\n    limit: 100\n    action: Cease\n    restartAfterSeconds: 30\n",
        ),
        (
            "tor-v6",
            "  peerAddress: fd00:198:18::fe\n  peerASNumber: 65001\n  password:\n    name: tor\n    key: password\n  nodeSelector:\n    matchLabels:\n      rack: a\n",
        ),
        (
            "reflectors",
            "  peerSelector:\n    matchExpressions:\n    - key: route-reflector\n      operator: Exists\n",
        ),
    ];
    for (name, spec) in valid {
        apply(&lab, name, &peer(name, spec)).unwrap_or_else(|e| panic!("{name}: {e}"));
    }

    let invalid = [
        (
            "bad-address",
            "  peerAddress: 198.18.0.300\n  peerASNumber: 64512\n",
            "peerAddress must be a unicast",
        ),
        (
            "loopback",
            "  peerAddress: 127.0.0.1\n  peerASNumber: 64512\n",
            "peerAddress must be a unicast",
        ),
        (
            "as-zero",
            "  peerAddress: 198.18.0.254\n  peerASNumber: 0\n",
            "peerASNumber must be 1..4294967295",
        ),
        (
            "as-trans",
            "  peerAddress: 198.18.0.254\n  peerASNumber: 23456\n",
            "AS_TRANS",
        ),
        (
            "no-as",
            "  peerAddress: 198.18.0.254\n",
            "needs its peerASNumber",
        ),
        (
            "both",
            "  peerAddress: 198.18.0.254\n  peerASNumber: 1\n  peerSelector: {}\n",
            "exactly one of peerAddress",
        ),
        ("neither", "  gtsm: true\n", "exactly one of peerAddress"),
        (
            "host-bits",
            "  peerAddress: 198.18.0.254\n  peerASNumber: 1\n  import:\n  - prefix: 10.99.1.0/16\n",
            "network address in CIDR form",
        ),
        (
            "le-too-long",
            "  peerAddress: 198.18.0.254\n  peerASNumber: 1\n  import:\n  - prefix: 10.99.0.0/16\n    le: 33\n",
            "32 or 128 bits",
        ),
        (
            "ge-above-le",
            "  peerAddress: 198.18.0.254\n  peerASNumber: 1\n  import:\n  - prefix: 10.99.0.0/16\n    ge: 24\n    le: 20\n",
            "ge must not be longer than le",
        ),
        (
            "hold-2",
            "  peerAddress: 198.18.0.254\n  peerASNumber: 1\n  holdTimeSeconds: 2\n",
            "holdTimeSeconds must be 0 or 3",
        ),
        (
            "bad-action",
            "  peerAddress: 198.18.0.254\n  peerASNumber: 1\n  maxPrefixes:\n    limit: 10\n    action: Explode\n",
            "Unsupported value",
        ),
        (
            "restart-without-cease",
            "  peerAddress: 198.18.0.254\n  peerASNumber: 1\n  maxPrefixes:\n    limit: 10\n    action: Warn\n    restartAfterSeconds: 5\n",
            "Cease action only",
        ),
        (
            "bad-operator",
            "  peerSelector:\n    matchExpressions:\n    - key: rack\n      operator: In\n",
            "In and NotIn need values",
        ),
    ];
    for (name, spec, message) in invalid {
        let refused = apply(&lab, name, &peer(name, spec))
            .expect_err(&format!("{name} must be refused by the API server"));
        assert!(refused.contains(message), "{name}: {refused}");
    }

    // BGPConfiguration: a singleton named default.
    let config = |name: &str| {
        format!(
            "apiVersion: podroute.io/v1alpha1\nkind: BGPConfiguration\nmetadata:\n  name: {name}\nspec:\n  asNumber: 64512\n  nodeToNodeMesh:\n    enabled: false\n"
        )
    };
    apply(&lab, "config-default", &config("default")).expect("default");
    let refused = apply(&lab, "config-other", &config("other")).expect_err("not default");
    assert!(refused.contains("named default"), "{refused}");

    // `kubectl get` shows the printer columns.
    let table = lab.kubectl(&["get", "bgppeers"]).expect("get bgppeers");
    let header = table.lines().next().unwrap_or_default();
    for column in ["NAME", "PEER", "AS", "AGE"] {
        assert!(header.contains(column), "{table}");
    }
    assert!(
        table.contains("198.18.0.254") && table.contains("64512"),
        "{table}"
    );
}
