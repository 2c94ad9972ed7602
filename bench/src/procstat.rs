//! What the harness reads about a receiver from outside it, in `/proc/<pid>`: resident memory
//! now and at its peak (`VmRSS`, `VmHWM` in `status`; writing `5` to `clear_refs` resets the
//! peak to the current size, so the peak of one ingest is measured exactly), and CPU time
//! (`utime + stime` in `stat`, all threads, in clock ticks).

use std::fs;
use std::io;

use nix::unistd::{SysconfVar, sysconf};

/// Resident memory of a process, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// `VmRSS`.
    pub rss: u64,
    /// `VmHWM`: the peak since start or the last [`reset_peak`].
    pub peak: u64,
}

/// Reads `VmRSS` and `VmHWM` of `pid`.
pub fn memory(pid: u32) -> io::Result<Memory> {
    parse_status(&fs::read_to_string(format!("/proc/{pid}/status"))?)
        .ok_or_else(|| io::Error::other(format!("/proc/{pid}/status without VmRSS/VmHWM")))
}

fn parse_status(text: &str) -> Option<Memory> {
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        let kb: u64 = line[name.len()..].split_whitespace().next()?.parse().ok()?;
        Some(kb * 1024)
    };
    Some(Memory {
        rss: field("VmRSS:")?,
        peak: field("VmHWM:")?,
    })
}

/// Resets `pid`'s `VmHWM` to its current RSS (`clear_refs` value 5, Linux ≥ 4.0).
pub fn reset_peak(pid: u32) -> io::Result<()> {
    fs::write(format!("/proc/{pid}/clear_refs"), "5")
}

/// CPU seconds `pid` has used so far, user plus system, all threads.
pub fn cpu_seconds(pid: u32) -> io::Result<f64> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let ticks = parse_stat_ticks(&text)
        .ok_or_else(|| io::Error::other(format!("/proc/{pid}/stat: no utime/stime")))?;
    Ok(ticks as f64 / clock_ticks_per_second())
}

/// Whether `pid` runs (exists and is no zombie).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|text| {
        text.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

/// `utime + stime` from a `stat` line. The command name is in parentheses and may contain
/// spaces and parentheses, so fields are counted after the last `)`: state is field 3, utime
/// 14 and stime 15.
fn parse_stat_ticks(text: &str) -> Option<u64> {
    let (_, rest) = text.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn clock_ticks_per_second() -> f64 {
    match sysconf(SysconfVar::CLK_TCK) {
        Ok(Some(n)) if n > 0 => n as f64,
        _ => 100.0,
    }
}

/// The machine's CPU time so far, from the first line of `/proc/stat`, in clock ticks:
/// (busy, total), busy being all but idle, iowait and steal.
pub fn machine_ticks() -> io::Result<(u64, u64)> {
    parse_machine_ticks(&fs::read_to_string("/proc/stat")?)
        .ok_or_else(|| io::Error::other("/proc/stat: no cpu line"))
}

fn parse_machine_ticks(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let field = |i: usize| fields.get(i).copied().unwrap_or(0);
    let total: u64 = fields.iter().take(8).sum();
    let not_busy = fields.get(3)? + field(4) + field(7);
    Some((total.saturating_sub(not_busy), total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_ticks_count_all_but_idle_iowait_and_steal_as_busy() {
        let text = "cpu  10 1 5 100 4 2 3 6 7 0\ncpu0 5 0 2 50 2 1 1 0 0 0\n";
        assert_eq!(parse_machine_ticks(text), Some((21, 131)));
        assert_eq!(parse_machine_ticks("intr 1 2\n"), None);
    }

    #[test]
    fn status_fields_in_bytes() {
        let text = "Name:\tbird\nVmPeak:\t  20000 kB\nVmHWM:\t   11800 kB\nVmRSS:\t    9000 kB\n";
        assert_eq!(
            parse_status(text),
            Some(Memory {
                rss: 9000 * 1024,
                peak: 11800 * 1024
            })
        );
        assert_eq!(parse_status("Name:\tx\n"), None);
    }

    #[test]
    fn stat_ticks_after_a_name_with_spaces_and_parentheses() {
        let text = "4242 (tokio (rt) w) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9 0";
        assert_eq!(parse_stat_ticks(text), Some(325));
    }

    #[test]
    fn own_process_is_readable() {
        let me = std::process::id();
        let m = memory(me).expect("own status");
        assert!(m.rss > 0 && m.peak >= m.rss);
        assert!(cpu_seconds(me).expect("own stat") >= 0.0);
        assert!(alive(me));
    }
}
