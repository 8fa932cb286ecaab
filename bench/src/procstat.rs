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

/// CPU used by the system under test and by the load generator over one measured window.
pub struct CpuWindow {
    server0: f64,
    self0: f64,
    t0: std::time::Instant,
}

pub struct CpuUsage {
    pub server_cpu_s: f64,
    pub loadgen_cpu_s: f64,
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
        if self.wall_s > 0.0 {
            100.0 * self.server_cpu_s / self.wall_s
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
            t0: std::time::Instant::now(),
        }
    }

    pub fn stop(&self, w: &Watched) -> CpuUsage {
        CpuUsage {
            server_cpu_s: (w.cpu_seconds() - self.server0).max(0.0),
            loadgen_cpu_s: self_cpu_seconds() - self.self0,
            wall_s: self.t0.elapsed().as_secs_f64(),
        }
    }
}
