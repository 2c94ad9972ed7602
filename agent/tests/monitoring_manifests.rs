//! The monitoring manifests (no root): the PrometheusRule component carries exactly the
//! plain rules file's groups, the default kustomization does not need the operator's CRD,
//! and every metric the dashboard and the rules read is one the agent exports.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn manifests() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests")
}

fn yaml(path: &Path) -> serde_yaml::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_prometheus_rule_component_wraps_the_rules_file_unchanged() {
    let rules = yaml(&manifests().join("monitoring/podroute-rules.yaml"));
    let wrapped = yaml(&manifests().join("monitoring/prometheusrule/prometheusrule.yaml"));
    assert_eq!(wrapped["kind"], "PrometheusRule");
    assert_eq!(wrapped["spec"]["groups"], rules["groups"]);
    let default = std::fs::read_to_string(manifests().join("kustomization.yaml")).expect("read");
    assert!(
        !default.contains("monitoring") && !default.contains("PrometheusRule"),
        "kubectl apply -k manifests/ must not need the PrometheusRule CRD"
    );
}

/// `podroute_…` names in `text`, with histogram suffixes taken off.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("podroute_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        names.insert(base.to_owned());
        rest = &tail[end..];
    }
    names
}

#[test]
fn the_dashboard_and_the_rules_read_only_exported_metrics() {
    let mut exported = metric_names(
        &podroute_agent::metrics::Metrics::new(true)
            .expect("metrics")
            .render(),
    );
    exported.extend(
        podroute_agent::metrics::bgp::PER_PEER_FAMILIES
            .iter()
            .chain(&podroute_agent::metrics::POD_ADDRESS_FAMILIES)
            .map(|f| format!("podroute_{f}")),
    );
    for file in [
        "monitoring/grafana-dashboard.json",
        "monitoring/podroute-rules.yaml",
    ] {
        let text = std::fs::read_to_string(manifests().join(file)).expect("read");
        let used = metric_names(&text);
        assert!(!used.is_empty(), "{file} reads no podroute metric");
        let unknown: Vec<&String> = used.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "{file} reads metrics the agent does not export: {unknown:?}"
        );
    }
}
