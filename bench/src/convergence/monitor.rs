//! Which pod CIDRs each node's kernel routes, and since when, from `ip -ts monitor route` in
//! every node namespace: the benchmark reads the kernels, never the agents' own claims.
//!
//! One `ip monitor` per namespace (started before any agent, so it sees every route from the
//! first) prints each RTM_NEWROUTE/RTM_DELROUTE with the kernel-side time of its receipt to
//! microseconds; a thread per namespace reads the lines and keeps, per destination in the
//! cluster pod range, whether it is routed and since when. A replaced route stays present
//! from its first appearance.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{BenchError, Result};

/// The cluster pod range every measured route falls in (10.244.0.0/16).
const POD_RANGE_PREFIX: &str = "10.244.";

/// Route types `ip` prints before the destination.
const ROUTE_TYPES: [&str; 6] = [
    "blackhole",
    "unreachable",
    "prohibit",
    "local",
    "broadcast",
    "throw",
];

/// One destination's state in one namespace: present or not, since when.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RouteState {
    /// Whether the kernel routes the destination.
    pub present: bool,
    /// When it last became present or absent.
    pub since: SystemTime,
}

type Table = HashMap<String, RouteState>;

/// The route monitors of a lab's node namespaces.
#[derive(Debug)]
pub struct RouteMonitors {
    children: Vec<Child>,
    tables: HashMap<String, Arc<Mutex<Table>>>,
}

impl RouteMonitors {
    /// Starts one monitor per namespace in `namespaces` (node name → namespace).
    pub fn start(namespaces: &[(String, String)]) -> Result<Self> {
        let mut children = Vec::new();
        let mut tables = HashMap::new();
        for (node, ns) in namespaces {
            let mut child = Command::new("ip")
                .args(["-n", ns, "-ts", "monitor", "route"])
                // `-ts` prints local time; UTC makes it parseable without a time zone database.
                .env("TZ", "UTC")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| BenchError::Failed(format!("ip monitor in {ns}: {e}")))?;
            let table = Arc::new(Mutex::new(Table::new()));
            let Some(stdout) = child.stdout.take() else {
                return Err(BenchError::Failed(format!("ip monitor in {ns}: no stdout")));
            };
            let t = table.clone();
            thread::Builder::new()
                .name(format!("monitor-{node}"))
                .spawn(move || {
                    for line in BufReader::new(stdout).lines() {
                        let Ok(line) = line else { break };
                        if let Some((dst, state)) = parse_line(&line) {
                            let mut t = t.lock().unwrap_or_else(|p| p.into_inner());
                            let old = t.get(&dst).copied();
                            if old.is_none_or(|o| o.present != state.present) {
                                t.insert(dst, state);
                            }
                        }
                    }
                })
                .map_err(|e| BenchError::Failed(format!("monitor thread: {e}")))?;
            children.push(child);
            tables.insert(node.clone(), table);
        }
        // `ip monitor` subscribes right after it starts; give every one that moment.
        thread::sleep(Duration::from_millis(300));
        Ok(Self { children, tables })
    }

    /// `dst`'s state on `node` (absent since the epoch if never seen).
    pub fn state(&self, node: &str, dst: &str) -> RouteState {
        self.tables
            .get(node)
            .and_then(|t| {
                t.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(dst)
                    .copied()
            })
            .unwrap_or(RouteState {
                present: false,
                since: UNIX_EPOCH,
            })
    }
}

impl Drop for RouteMonitors {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Parses one `ip -ts monitor route` line: `[2026-12-03T05:48:09.971850] [Deleted ]
/// [blackhole ]10.244.3.0/24 ...`; `None` for lines outside the pod range.
fn parse_line(line: &str) -> Option<(String, RouteState)> {
    let rest = line.strip_prefix('[')?;
    let (stamp, rest) = rest.split_once("] ")?;
    let since = parse_stamp(stamp)?;
    let mut words = rest.split_whitespace().peekable();
    let present = if words.peek() == Some(&"Deleted") {
        words.next();
        false
    } else {
        true
    };
    if words.peek().is_some_and(|w| ROUTE_TYPES.contains(w)) {
        words.next();
    }
    let dst = words.next()?;
    if !dst.starts_with(POD_RANGE_PREFIX) {
        return None;
    }
    Some((dst.to_owned(), RouteState { present, since }))
}

/// `2026-12-03T05:48:09.971850` (UTC) as a time.
fn parse_stamp(s: &str) -> Option<SystemTime> {
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|p| p.parse::<u64>().ok());
    let (h, min, sec) = (t.next()??, t.next()??, t.next()??);
    let micros: u64 = format!("{frac:0<6}").get(..6)?.parse().ok()?;
    let days = u64::try_from(days_from_civil(y, m, day)).ok()?;
    let secs = days * 86_400 + h * 3600 + min * 60 + sec;
    Some(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_give_destination_presence_and_time() {
        let (dst, st) = parse_line(
            "[2026-12-03T05:48:09.971850] 10.244.3.0/24 via 198.18.0.3 dev eth0 proto 80",
        )
        .expect("parsed");
        assert_eq!(dst, "10.244.3.0/24");
        assert!(st.present);
        let secs = st.since.duration_since(UNIX_EPOCH).expect("after epoch");
        // date -u -d 2026-12-03T05:48:09 +%s
        assert_eq!(secs.as_secs(), 1_796_276_889);
        assert_eq!(secs.subsec_micros(), 971_850);

        let (dst, st) = parse_line("[2026-12-03T05:48:09.996111] Deleted blackhole 10.244.7.0/24 ")
            .expect("parsed");
        assert_eq!(dst, "10.244.7.0/24");
        assert!(!st.present);
        assert_eq!(
            parse_line("[2026-12-03T05:48:09.9] 198.18.0.0/24 dev eth0"),
            None
        );
        assert_eq!(parse_line("garbage"), None);
    }
}
