//! Memory and CPU of processes from /proc (Linux only), and the machine's CPU model.

use std::path::Path;

/// Linux reports utime/stime in clock ticks of USER_HZ, which is 100 on every mainstream
/// architecture (and not configurable from user space).
const TICKS_PER_SECOND: f64 = 100.0;

/// Resident set size in bytes, or None when the process is gone.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// User + system CPU seconds consumed so far, or None when the process is gone.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    stat_cpu(&format!("/proc/{pid}/stat"))
}

/// CPU seconds of this very process (the load generator).
pub fn self_cpu_seconds() -> f64 {
    stat_cpu("/proc/self/stat").unwrap_or(0.0)
}

pub fn self_rss_bytes() -> u64 {
    rss_bytes(std::process::id()).unwrap_or(0)
}

fn stat_cpu(path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SECOND)
}

/// Reads a pid from a pid file (e.g. redis-server's), if present.
pub fn pid_from_file(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

pub fn cpu_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// The processes that make up the system under test: the server pids given on the command
/// line plus any pid files (Redis, re-read at every sample because M7 restarts it).
#[derive(Clone, Debug, Default)]
pub struct Watched {
    pub pids: Vec<u32>,
    pub pid_files: Vec<std::path::PathBuf>,
}

impl Watched {
    fn all(&self) -> Vec<u32> {
        let mut v = self.pids.clone();
        v.extend(self.pid_files.iter().filter_map(|p| pid_from_file(p)));
        v
    }

    pub fn rss_bytes(&self) -> u64 {
        self.all().into_iter().filter_map(rss_bytes).sum()
    }

    pub fn cpu_seconds(&self) -> f64 {
        self.all().into_iter().filter_map(cpu_seconds).sum()
    }
}

/// The whole machine's CPU time from the first line of /proc/stat, in seconds summed over
/// all CPUs: time spent running anything (user, nice, system, irq, softirq) and time stolen
/// by the hypervisor for other guests (the machine is shared).
#[derive(Clone, Copy, Debug, Default)]
pub struct MachineTimes {
    pub busy_s: f64,
    pub steal_s: f64,
}

pub fn machine_times() -> MachineTimes {
    std::fs::read_to_string("/proc/stat")
        .map(|s| parse_machine_times(&s))
        .unwrap_or_default()
}

fn parse_machine_times(stat: &str) -> MachineTimes {
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return MachineTimes::default();
    };
    let f: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    let at = |i: usize| f.get(i).copied().unwrap_or(0.0);
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    MachineTimes {
        busy_s: (at(0) + at(1) + at(2) + at(5) + at(6)) / TICKS_PER_SECOND,
        steal_s: at(7) / TICKS_PER_SECOND,
    }
}

/// CPU used by the system under test and by the load generator over one measured window.
pub struct CpuWindow {
    server0: f64,
    self0: f64,
    machine0: MachineTimes,
    t0: std::time::Instant,
}

pub struct CpuUsage {
    pub server_cpu_s: f64,
    pub loadgen_cpu_s: f64,
    /// CPU the hypervisor gave to other guests while this guest wanted it.
    pub steal_s: f64,
    /// CPU used on this machine by neither the servers nor the load generator (other
    /// processes, and kernel work not charged to a process).
    pub other_cpu_s: f64,
    pub wall_s: f64,
}

impl CpuUsage {
    pub fn loadgen_pct(&self) -> f64 {
        if self.wall_s > 0.0 {
            100.0 * self.loadgen_cpu_s / self.wall_s
        } else {
            0.0
        }
    }
    pub fn server_pct(&self) -> f64 {
        self.pct(self.server_cpu_s)
    }
    pub fn steal_pct(&self) -> f64 {
        self.pct(self.steal_s)
    }
    pub fn other_pct(&self) -> f64 {
        self.pct(self.other_cpu_s)
    }
    fn pct(&self, cpu_s: f64) -> f64 {
        if self.wall_s > 0.0 {
            100.0 * cpu_s / self.wall_s
        } else {
            0.0
        }
    }
}

impl CpuWindow {
    pub fn start(w: &Watched) -> Self {
        CpuWindow {
            server0: w.cpu_seconds(),
            self0: self_cpu_seconds(),
            machine0: machine_times(),
            t0: std::time::Instant::now(),
        }
    }

    pub fn stop(&self, w: &Watched) -> CpuUsage {
        let server_cpu_s = (w.cpu_seconds() - self.server0).max(0.0);
        let loadgen_cpu_s = self_cpu_seconds() - self.self0;
        let m = machine_times();
        CpuUsage {
            server_cpu_s,
            loadgen_cpu_s,
            steal_s: (m.steal_s - self.machine0.steal_s).max(0.0),
            other_cpu_s: (m.busy_s - self.machine0.busy_s - server_cpu_s - loadgen_cpu_s).max(0.0),
            wall_s: self.t0.elapsed().as_secs_f64(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_times_add_up_the_busy_columns_and_keep_steal_apart() {
        let stat = "cpu  500 20 100 9000 80 3 7 40 0 0\ncpu0 250 10 50 4500 40 1 3 20 0 0\n";
        let m = parse_machine_times(stat);
        // user + nice + system + irq + softirq = 630 ticks; idle and iowait are not busy.
        assert!((m.busy_s - 6.30).abs() < 1e-9, "busy {}", m.busy_s);
        assert!((m.steal_s - 0.40).abs() < 1e-9, "steal {}", m.steal_s);
        let none = parse_machine_times("intr 1 2 3\n");
        assert_eq!((none.busy_s, none.steal_s), (0.0, 0.0));
    }
}
