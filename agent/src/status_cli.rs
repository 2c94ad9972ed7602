//! `podroute-agent status`: asks the running agent for its `/status` and prints it for people.
//!
//! The agent is the source of truth; this command only reads its HTTP endpoint (on the node,
//! e.g. `kubectl exec ds/podroute -- podroute-agent status`), so it needs neither the
//! Kubernetes API nor root.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// How long the agent gets to answer.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Why the status could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// No connection to the agent.
    #[error("cannot reach the agent at {address} (is it running? see --address): {source}")]
    Connect {
        /// Where it was asked.
        address: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP exchange failed.
    #[error("asking the agent at {address} failed: {source}")]
    Http {
        /// Where it was asked.
        address: SocketAddr,
        /// hyper's error.
        #[source]
        source: hyper::Error,
    },
    /// The agent answered something else than a status.
    #[error("the agent at {address} answered {what}")]
    Answer {
        /// Where it was asked.
        address: SocketAddr,
        /// What came back.
        what: String,
    },
    /// No answer in time.
    #[error("the agent at {0} did not answer within {TIMEOUT:?}")]
    Timeout(SocketAddr),
}

/// `GET /status` from the agent at `address`.
pub async fn fetch(address: SocketAddr) -> Result<Value, StatusError> {
    tokio::time::timeout(TIMEOUT, fetch_now(address))
        .await
        .map_err(|_| StatusError::Timeout(address))?
}

async fn fetch_now(address: SocketAddr) -> Result<Value, StatusError> {
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|source| StatusError::Connect { address, source })?;
    let http = |source| StatusError::Http { address, source };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(http)?;
    tokio::spawn(connection);
    let request = hyper::Request::get("/status")
        .header(hyper::header::HOST, address.to_string())
        .body(Empty::<Bytes>::new())
        .map_err(|e| StatusError::Answer {
            address,
            what: format!("nothing: the request could not be built ({e})"),
        })?;
    let response = sender.send_request(request).await.map_err(http)?;
    let code = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(http)?
        .to_bytes();
    if !code.is_success() {
        return Err(StatusError::Answer {
            address,
            what: format!("HTTP {code}"),
        });
    }
    serde_json::from_slice(&body).map_err(|e| StatusError::Answer {
        address,
        what: format!("no status JSON ({e})"),
    })
}

/// True when the status says the node is ready.
pub fn is_ready(status: &Value) -> bool {
    status["ready"] == true
}

/// The status as text: the node and its readiness, pod CIDRs, routes, BGP peers, drift.
pub fn render(status: &Value) -> String {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect()
    };
    let mut out = String::new();
    let mut line = |label: &str, value: String| out.push_str(&format!("{label:<12}{value}\n"));
    line("node:", status["node"].as_str().unwrap_or("?").to_owned());
    let ready = if is_ready(status) {
        "yes".to_owned()
    } else {
        let reason = status["notReadyReason"].as_str().unwrap_or("unknown");
        format!("no ({reason})")
    };
    line("ready:", ready);
    let cidrs = strings(&status["podCIDRs"]);
    line(
        "pod CIDRs:",
        if cidrs.is_empty() {
            "none yet".to_owned()
        } else {
            cidrs.join(", ")
        },
    );
    line(
        "routes:",
        format!(
            "{} installed",
            status["routesInstalled"].as_u64().unwrap_or(0)
        ),
    );
    let peers = status["bgpPeers"].as_array().cloned().unwrap_or_default();
    line("BGP peers:", peers.len().to_string());
    for peer in &peers {
        let flag =
            |key: &str, yes: &str, no: &str| if peer[key] == true { yes } else { no }.to_owned();
        let bfd = match peer["bfd"].as_str() {
            None | Some("off") => String::new(),
            Some(state) if peer["waitingForBfd"] == true => format!("  BFD {state} (BGP waits)"),
            Some(state) => format!("  BFD {state}"),
        };
        out.push_str(&format!(
            "  {:<40} {:<24} {:<12} {}{}\n",
            peer["address"].as_str().unwrap_or("?"),
            peer["source"].as_str().unwrap_or("?"),
            flag("established", "Established", "down"),
            flag("synced", "synced", "not synced"),
            bfd,
        ));
    }
    let drift = [
        ("missingInRib", "missing in the RIB"),
        ("unexpectedInRib", "unexpected in the RIB"),
        ("missingInKernel", "missing in the kernel"),
        ("unexpectedInKernel", "unexpected in the kernel"),
    ];
    let mut clean = true;
    for (key, what) in drift {
        let routes = strings(&status["drift"][key]);
        if !routes.is_empty() {
            clean = false;
            out.push_str(&format!("drift:      {what}: {}\n", routes.join(", ")));
        }
    }
    if clean {
        out.push_str("drift:      none\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_ready_node_with_peers_and_no_drift() {
        let text = render(&json!({
            "node": "node1", "ready": true, "podCIDRs": ["10.244.1.0/24", "fd00:10:244:1::/64"],
            "routesInstalled": 4,
            "bgpPeers": [
                {"address": "198.18.0.2", "source": "mesh:node2", "established": true, "synced": true},
                {"address": "198.18.0.254", "source": "static", "established": false, "synced": false},
            ],
            "drift": {"missingInRib": [], "unexpectedInRib": [], "missingInKernel": [], "unexpectedInKernel": []},
        }));
        assert!(is_ready(&json!({"ready": true})));
        assert!(text.contains("ready:      yes\n"), "{text}");
        assert!(text.contains("10.244.1.0/24, fd00:10:244:1::/64"), "{text}");
        assert!(text.contains("routes:     4 installed"), "{text}");
        let mesh = text
            .lines()
            .find(|l| l.contains("198.18.0.2 "))
            .expect("peer line");
        assert!(
            mesh.contains("mesh:node2") && mesh.contains("Established") && mesh.ends_with("synced")
        );
        let router = text
            .lines()
            .find(|l| l.contains("198.18.0.254"))
            .expect("peer line");
        assert!(
            router.contains("down") && router.ends_with("not synced"),
            "{router}"
        );
        assert!(text.contains("drift:      none"), "{text}");
    }

    #[test]
    fn a_node_that_is_not_ready_says_why_and_shows_drift() {
        let status = json!({
            "node": "node3", "ready": false, "notReadyReason": "the node has no pod CIDR yet",
            "podCIDRs": [], "routesInstalled": 0, "bgpPeers": [],
            "drift": {"missingInKernel": ["10.244.2.0/24"], "unexpectedInRib": ["10.244.9.0/24 via 198.18.0.9"]},
        });
        let text = render(&status);
        assert!(!is_ready(&status));
        assert!(
            text.contains("ready:      no (the node has no pod CIDR yet)"),
            "{text}"
        );
        assert!(text.contains("pod CIDRs:  none yet"), "{text}");
        assert!(
            text.contains("missing in the kernel: 10.244.2.0/24"),
            "{text}"
        );
        assert!(
            text.contains("unexpected in the RIB: 10.244.9.0/24 via 198.18.0.9"),
            "{text}"
        );
        assert!(!text.contains("drift:      none"), "{text}");
    }

    #[test]
    fn garbage_renders_without_panicking() {
        for value in [
            json!(null),
            json!([1, 2]),
            json!({"bgpPeers": "x", "drift": 3}),
        ] {
            let text = render(&value);
            assert!(text.contains("ready:      no"), "{text}");
        }
    }
}
