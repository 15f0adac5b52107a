//! CPU time and memory of a process, read from Linux's /proc.

/// Clock ticks per second for /proc/PID/stat times (`getconf CLK_TCK`, 100 on Linux).
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// Reads CPU seconds (user + system) of one process.
#[derive(Debug, Clone)]
pub struct CpuClock {
    stat: String,
    ticks: f64,
}

impl CpuClock {
    /// For process `pid`, or this process with `None`.
    pub fn new(pid: Option<u32>) -> CpuClock {
        let stat = match pid {
            Some(p) => format!("/proc/{p}/stat"),
            None => "/proc/self/stat".into(),
        };
        CpuClock {
            stat,
            ticks: clock_ticks(),
        }
    }

    /// utime + stime in seconds, or `None` if the process is gone.
    pub fn seconds(&self) -> Option<f64> {
        let text = std::fs::read_to_string(&self.stat).ok()?;
        parse_cpu_ticks(&text).map(|t| t as f64 / self.ticks)
    }
}

/// utime + stime (fields 14 and 15) from the text of /proc/PID/stat. The command name
/// (field 2) may hold spaces and parentheses, so fields are counted after its last `)`.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// A `Vm*` line of /proc/PID/status in KiB (e.g. `VmRSS`, `VmHWM`).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_spaces_in_name() {
        let stat = "1234 (my (odd) relay) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 75 0 0 20 0 3 0";
        assert_eq!(parse_cpu_ticks(stat), Some(325));
        assert_eq!(parse_cpu_ticks("garbage"), None);
        assert!(CpuClock::new(None).seconds().is_some());
        assert!(status_kib(std::process::id(), "VmRSS").is_some_and(|k| k > 0));
    }
}
