//! What a benchmark's figures were measured on, and what a process costs: `/proc` readers
//! only. Every benchmark of tenscale prints the same machine line (the load generator, the
//! DERP bench, the policy bench) beside its figures.
//!
//! **Boundary:** a leaf crate of the standard library alone; it knows nothing of tenscale.

#![warn(unreachable_pub)]

use std::fmt;

/// The host: CPU model, cores, memory, kernel and load when the run started.
pub struct Machine {
    pub cpu_model: String,
    pub cores: usize,
    pub mem_total_mib: u64,
    pub kernel: String,
    pub load_avg: String,
    pub fd_limit: u64,
}

impl Machine {
    pub fn probe() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name").and_then(|v| v.split_once(':')).map(|(_, v)| v.trim()))
            .unwrap_or("unknown")
            .to_string();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_total_kib = kib_field(&meminfo, "MemTotal:").unwrap_or(0);
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let fd_limit = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Self {
            cpu_model,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            mem_total_mib: mem_total_kib / 1024,
            kernel: read_trimmed("/proc/sys/kernel/osrelease"),
            load_avg: read_trimmed("/proc/loadavg").split_whitespace().take(3).collect::<Vec<_>>().join(" "),
            fd_limit,
        }
    }
}

impl fmt::Display for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}, {} cores, {} MiB RAM, Linux {}, load {} at start, fd limit {}",
            self.cpu_model, self.cores, self.mem_total_mib, self.kernel, self.load_avg, self.fd_limit
        )
    }
}

/// One process as seen in `/proc/<pid>`: resident memory and CPU time so far.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcSample {
    pub rss_kib: u64,
    /// user + system CPU time, in seconds.
    pub cpu_secs: f64,
}

/// `None` for our own process (`/proc/self`).
pub fn sample(pid: Option<u32>) -> ProcSample {
    let dir = pid.map_or_else(|| "/proc/self".to_string(), |p| format!("/proc/{p}"));
    let status = std::fs::read_to_string(format!("{dir}/status")).unwrap_or_default();
    let stat = std::fs::read_to_string(format!("{dir}/stat")).unwrap_or_default();
    ProcSample { rss_kib: kib_field(&status, "VmRSS:").unwrap_or(0), cpu_secs: cpu_secs(&stat) }
}

/// utime + stime from `/proc/<pid>/stat` (fields 14 and 15, after the parenthesised name).
fn cpu_secs(stat: &str) -> f64 {
    let Some((_, rest)) = stat.rsplit_once(')') else { return 0.0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state), so field n is at index n - 3.
    let ticks: u64 = [11, 12].iter().filter_map(|i| fields.get(*i).and_then(|v| v.parse::<u64>().ok())).sum();
    // USER_HZ is 100 on every Linux this runs on.
    ticks as f64 / 100.0
}

fn kib_field(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_our_own_process() {
        let s = sample(None);
        assert!(s.rss_kib > 0);
        assert!(Machine::probe().cores >= 1);
    }

    #[test]
    fn cpu_time_skips_a_name_with_spaces_and_parens() {
        let stat = "42 (a b) c) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0";
        assert_eq!(cpu_secs(stat), 3.0);
    }
}
