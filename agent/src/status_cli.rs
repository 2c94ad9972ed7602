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
    let routes = &status["routes"];
    line(
        "routes:",
        format!(
            "{} expected, {} installed, {} as expected in the kernel, {} drifting",
            routes["expected"].as_u64().unwrap_or(0),
            routes["installed"].as_u64().unwrap_or(0),
            routes["asExpectedInKernel"].as_u64().unwrap_or(0),
            routes["drifting"].as_u64().unwrap_or(0),
        ),
    );
    let peers = status["bgpPeers"].as_array().cloned().unwrap_or_default();
    line("BGP peers:", peers.len().to_string());
    if !peers.is_empty() {
        out.push_str(&format!(
            "  {:<28} {:<7} {:<10} {:<12} {:<9} {:>8} {:>8} {:>8}  {:<10} {}\n",
            "ADDRESS", "TYPE", "AS", "STATE", "FOR", "IN", "ACCEPTED", "OUT", "BFD", "LAST ERROR"
        ));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for peer in &peers {
        let number = |key: &str| peer[key].as_u64().unwrap_or(0);
        let mut state = peer["state"].as_str().unwrap_or("?").to_owned();
        if peer["established"] == true && peer["synced"] != true {
            state.push('*');
        }
        let since = peer["sinceUnixSeconds"]
            .as_u64()
            .map_or_else(|| "?".to_owned(), |t| duration(now.saturating_sub(t)));
        // BFD next to the session it guards: its state, `(waits)` while strict mode holds
        // BGP back until BFD is Up.
        let bfd = match peer["bfd"].as_str() {
            None | Some("off") => "-".to_owned(),
            Some(state) if peer["waitingForBfd"] == true => format!("{state} (waits)"),
            Some(state) => state.to_owned(),
        };
        // A peer of any AS shows `-` until an OPEN told its AS.
        let asn = peer["peerAS"]
            .as_u64()
            .map_or_else(|| "-".to_owned(), |a| a.to_string());
        out.push_str(&format!(
            "  {:<28} {:<7} {:<10} {:<12} {:<9} {:>8} {:>8} {:>8}  {:<10} {}\n",
            peer["address"].as_str().unwrap_or("?"),
            peer["type"].as_str().unwrap_or("?"),
            asn,
            state,
            since,
            number("receivedPrefixes"),
            number("acceptedRoutes"),
            number("advertisedRoutes"),
            bfd,
            peer["lastError"].as_str().unwrap_or("-"),
        ));
    }
    let drift = status["drift"].as_array().cloned().unwrap_or_default();
    if drift.is_empty() {
        out.push_str("drift:      none\n");
    }
    for entry in &drift {
        out.push_str(&format!(
            "drift:      {} {} (expected {})\n",
            entry["prefix"].as_str().unwrap_or("?"),
            entry["kind"].as_str().unwrap_or("?"),
            entry["expected"].as_str().unwrap_or("?"),
        ));
    }
    out
}

/// `95s`, `12m`, `3h`, `2d`.
fn duration(seconds: u64) -> String {
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_ready_node_with_peers_and_no_drift() {
        let text = render(&json!({
            "node": "node1", "ready": true, "podCIDRs": ["10.244.1.0/24", "fd00:10:244:1::/64"],
            "routes": {"expected": 4, "installed": 4, "asExpectedInKernel": 4, "drifting": 0},
            "bgpPeers": [
                {"address": "198.18.0.2", "type": "mesh", "peerAS": 64512, "state": "Established", "established": true,
                 "synced": true, "receivedPrefixes": 1, "acceptedRoutes": 1, "advertisedRoutes": 1},
                {"address": "198.18.0.254", "type": "router", "state": "Active", "established": false,
                 "synced": false, "lastError": "NOTIFICATION received: cease"},
            ],
            "drift": [],
        }));
        assert!(is_ready(&json!({"ready": true})));
        assert!(text.contains("ready:      yes\n"), "{text}");
        assert!(text.contains("10.244.1.0/24, fd00:10:244:1::/64"), "{text}");
        assert!(
            text.contains(
                "routes:     4 expected, 4 installed, 4 as expected in the kernel, 0 drifting"
            ),
            "{text}"
        );
        let mesh = text
            .lines()
            .find(|l| l.contains("198.18.0.2 "))
            .expect("peer line");
        assert!(
            mesh.contains("mesh") && mesh.contains(" 64512 ") && mesh.contains("Established "),
            "{mesh}"
        );
        let router = text
            .lines()
            .find(|l| l.contains("198.18.0.254"))
            .expect("peer line");
        assert!(
            router.contains("Active") && router.ends_with("NOTIFICATION received: cease"),
            "{router}"
        );
        assert!(text.contains("drift:      none"), "{text}");
    }

    #[test]
    fn a_node_that_is_not_ready_says_why_and_shows_drift() {
        let status = json!({
            "node": "node3", "ready": false, "notReadyReason": "the node has no pod CIDR yet",
            "podCIDRs": [], "bgpPeers": [],
            "drift": [{"prefix": "10.244.2.0/24", "kind": "kernel_foreign", "expected": "via 198.18.0.2"}],
        });
        let text = render(&status);
        assert!(!is_ready(&status));
        assert!(
            text.contains("ready:      no (the node has no pod CIDR yet)"),
            "{text}"
        );
        assert!(text.contains("pod CIDRs:  none yet"), "{text}");
        assert!(
            text.contains("drift:      10.244.2.0/24 kernel_foreign (expected via 198.18.0.2)"),
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
