//! Label selectors as BGPPeer writes them (`nodeSelector`, `peerSelector`), and matching them
//! against a Node's labels.
//!
//! The shape is Kubernetes' own `LabelSelector` (`matchLabels` and `matchExpressions` with
//! `In`, `NotIn`, `Exists`, `DoesNotExist`), so operators write what they know from
//! Deployments and NetworkPolicies. An empty selector selects every node.

use std::collections::BTreeMap;

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// A Kubernetes-style label selector: every `matchLabels` entry and every expression must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    /// Labels that must be present with exactly these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(length(max = 32))]
    pub match_labels: BTreeMap<String, String>,
    /// Conditions on labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub match_expressions: Vec<LabelExpression>,
}

/// One condition on a label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "(self.operator == 'In' || self.operator == 'NotIn') ? size(self.values) > 0 : !has(self.values) || size(self.values) == 0"
).message("In and NotIn need values; Exists and DoesNotExist take none"))]
pub struct LabelExpression {
    /// The label's key.
    #[schemars(length(max = 317))]
    pub key: String,
    /// How the label is compared with `values`.
    pub operator: LabelOperator,
    /// The values for `In` and `NotIn`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 63)))]
    pub values: Vec<String>,
}

/// The operators of a label expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub enum LabelOperator {
    /// The label has one of the values.
    In,
    /// The label is absent or has none of the values.
    NotIn,
    /// The label is present.
    Exists,
    /// The label is absent.
    DoesNotExist,
}

impl LabelSelector {
    /// True if `labels` satisfy the selector (an empty selector matches everything).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(key, value)| labels.get(key) == Some(value))
            && self.match_expressions.iter().all(|e| e.matches(labels))
    }
}

impl LabelExpression {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            LabelOperator::In => value.is_some_and(|v| self.values.contains(v)),
            LabelOperator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            LabelOperator::Exists => value.is_some(),
            LabelOperator::DoesNotExist => value.is_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn empty_selector_selects_every_node() {
        assert!(LabelSelector::default().matches(&labels(&[])));
        assert!(LabelSelector::default().matches(&labels(&[("rack", "a")])));
    }

    #[test]
    fn labels_and_expressions_must_all_hold() {
        let selector: LabelSelector = serde_json::from_value(serde_json::json!({
            "matchLabels": {"rack": "a"},
            "matchExpressions": [
                {"key": "role", "operator": "NotIn", "values": ["reflector"]},
                {"key": "bgp", "operator": "Exists"}
            ]
        }))
        .expect("selector");
        assert!(selector.matches(&labels(&[("rack", "a"), ("bgp", "")])));
        assert!(!selector.matches(&labels(&[("rack", "b"), ("bgp", "")])));
        assert!(!selector.matches(&labels(&[("rack", "a")])));
        assert!(!selector.matches(&labels(&[
            ("rack", "a"),
            ("bgp", ""),
            ("role", "reflector")
        ])));
        let absent: LabelSelector = serde_json::from_value(serde_json::json!({
            "matchExpressions": [{"key": "role", "operator": "DoesNotExist"},
                                 {"key": "rack", "operator": "In", "values": ["a", "b"]}]
        }))
        .expect("selector");
        assert!(absent.matches(&labels(&[("rack", "b")])));
        assert!(!absent.matches(&labels(&[("rack", "c")])));
    }
}
