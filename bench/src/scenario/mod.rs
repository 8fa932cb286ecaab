//! The scenarios M1-M7 and the seed's latency table: open connection fleets, publish at
//! controlled rates, measure. Shared here: the size profiles, the system under test, metric
//! and progress-bar helpers, and session creation.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::client::{self};
use crate::error::{BenchError, Result};
use crate::http::HttpConn;
use crate::procstat::{self, CpuUsage, Watched};
use crate::result::{Metric, RunResult};

mod crossnode;
mod failover;
mod fanout;
mod fleet;
mod idle;
mod publish;
mod ramp_plan;
mod seed;

pub use crossnode::crossnode;
pub use failover::failover;
pub use fanout::{burst, fanout};
pub use idle::idle;
pub use seed::{seed, SEED_TARGETS};

/// Sizes of every scenario; `smoke` runs each in seconds with a few connections.
#[derive(Clone, Debug)]
pub struct Profile {
    pub name: &'static str,
    pub users: usize,
    pub connect_concurrency: usize,
    pub idle_conns: usize,
    pub idle_settle_s: u64,
    pub fan_members: usize,
    pub fan_fixed_deliveries_per_s: f64,
    pub fan_start_rate: f64,
    pub fan_factor: f64,
    pub fan_max_steps: usize,
    pub fan_p99_ms: f64,
    /// Emits per request in `fanout` (1: `/api/emit`; more: `/api/emit/batch`).
    pub fan_batch: usize,
    /// Emits posted together in `fanout`, each its own request (1: evenly spread).
    pub fan_burst: usize,
    pub cross_rooms: usize,
    pub cross_members_per_room: usize,
    pub cross_m4_rate: f64,
    pub cross_start_rate: f64,
    pub cross_factor: f64,
    pub cross_max_steps: usize,
    /// Steps after a ramp's first failure that narrow the gap between the last passing
    /// and the first failing rate (M2 and M5; each halves it geometrically).
    pub refine_steps: usize,
    pub cross_p99_ms: f64,
    /// Emits per request in the M5 ramp (1: `/api/emit`; more: `/api/emit/batch`).
    pub cross_batch: usize,
    pub fail_rooms: usize,
    pub fail_members_per_room: usize,
    pub fail_rate: f64,
    pub fail_duration_s: u64,
    pub fail_disrupt_at_s: u64,
    pub fail_drain_s: u64,
    pub step_s: u64,
    pub drain_timeout_s: u64,
}

impl Profile {
    pub fn full() -> Self {
        Profile {
            name: "full",
            users: 1000,
            connect_concurrency: 256,
            idle_conns: 10_000,
            idle_settle_s: 60,
            fan_members: 3000,
            fan_fixed_deliveries_per_s: 30_000.0,
            fan_start_rate: 10.0,
            fan_factor: 1.5,
            fan_max_steps: 14,
            fan_p99_ms: 250.0,
            fan_batch: 1,
            fan_burst: 1,
            cross_rooms: 100,
            cross_members_per_room: 30,
            cross_m4_rate: 100.0,
            cross_start_rate: 200.0,
            cross_factor: 1.5,
            cross_max_steps: 10,
            refine_steps: 2,
            cross_p99_ms: 50.0,
            cross_batch: 1,
            fail_rooms: 10,
            fail_members_per_room: 30,
            fail_rate: 1000.0,
            fail_duration_s: 30,
            fail_disrupt_at_s: 10,
            fail_drain_s: 15,
            step_s: 10,
            drain_timeout_s: 5,
        }
    }

    pub fn smoke() -> Self {
        Profile {
            name: "smoke",
            users: 10,
            connect_concurrency: 8,
            idle_conns: 30,
            idle_settle_s: 2,
            fan_members: 30,
            fan_fixed_deliveries_per_s: 300.0,
            fan_start_rate: 10.0,
            fan_factor: 2.0,
            fan_max_steps: 2,
            fan_p99_ms: 250.0,
            fan_batch: 1,
            fan_burst: 1,
            cross_rooms: 3,
            cross_members_per_room: 3,
            cross_m4_rate: 20.0,
            cross_start_rate: 50.0,
            cross_factor: 2.0,
            cross_max_steps: 2,
            refine_steps: 1,
            cross_p99_ms: 50.0,
            cross_batch: 1,
            fail_rooms: 2,
            fail_members_per_room: 4,
            fail_rate: 200.0,
            fail_duration_s: 4,
            fail_disrupt_at_s: 1,
            fail_drain_s: 3,
            step_s: 2,
            drain_timeout_s: 2,
        }
    }
}

/// The system under test and how to reach it.
pub struct Env {
    pub system: String,
    pub nodes: Vec<SocketAddr>,
    pub api_key: String,
    /// Server pids in node order (node id = index + 1), for /proc sampling and M7.
    pub pids: Vec<u32>,
    pub watched: Watched,
    pub source_ips: Vec<Ipv4Addr>,
    pub profile: Profile,
    pub kill_leader: bool,
    pub disrupt_cmd: Option<String>,
    pub round: u32,
}

impl Env {
    fn result(&self, scenario: &str) -> RunResult {
        RunResult {
            system: self.system.clone(),
            scenario: scenario.into(),
            round: self.round,
            profile: self.profile.name.into(),
            cpu_model: procstat::cpu_model(),
            cores: procstat::cpu_count(),
            unix_time: client::now_us() / 1_000_000,
            nodes: self.nodes.len(),
            metrics: Vec::new(),
            cdfs: Vec::new(),
            steps: Vec::new(),
            notes: Vec::new(),
        }
    }

    fn source_ip(&self, i: usize) -> Ipv4Addr {
        self.source_ips[i % self.source_ips.len()]
    }
}

pub(super) fn metric(
    id: &str,
    name: &str,
    value: f64,
    unit: &str,
    higher_is_better: bool,
    cpu: &CpuUsage,
) -> Metric {
    Metric {
        id: id.into(),
        name: name.into(),
        value,
        unit: unit.into(),
        higher_is_better,
        loadgen_cpu_pct: cpu.loadgen_pct(),
        server_cpu_pct: cpu.server_pct(),
        steal_pct: Some(cpu.steal_pct()),
        other_cpu_pct: Some(cpu.other_pct()),
    }
}

pub(super) fn bar(len: u64, msg: String) -> ProgressBar {
    let pb = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} {msg:40} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec})",
    ) {
        pb.set_style(style);
    }
    pb.set_message(msg);
    pb
}

pub(super) async fn sleep_with_bar(secs: u64, msg: &str) {
    let pb = bar(secs, msg.to_string());
    for _ in 0..secs {
        tokio::time::sleep(Duration::from_secs(1)).await;
        pb.inc(1);
    }
    pb.finish_and_clear();
}

/// Creates `n` sessions through `POST /api/sessions` on the first node.
pub(super) async fn create_sessions(env: &Env, n: usize) -> Result<Vec<Arc<str>>> {
    let n = n.max(1);
    let next = Arc::new(AtomicUsize::new(0));
    let out: Arc<Mutex<Vec<Option<Arc<str>>>>> = Arc::new(Mutex::new(vec![None; n]));
    let pb = bar(n as u64, format!("{}: sessions", env.system));
    let mut tasks = Vec::new();
    for _ in 0..n.min(8) {
        let (next, out, pb) = (next.clone(), out.clone(), pb.clone());
        let (addr, key) = (env.nodes[0], env.api_key.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = HttpConn::new(addr);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<(), BenchError>(());
                }
                let body = json!({ "userId": format!("bench-u{i}") }).to_string();
                let resp = conn
                    .request("POST", "/api/sessions", Some(&key), Some(body.as_bytes()))
                    .await?;
                if resp.status != 200 && resp.status != 201 {
                    return Err(BenchError::Http {
                        what: "POST /api/sessions".into(),
                        status: resp.status,
                        body: resp.text(),
                    });
                }
                let v: serde_json::Value = serde_json::from_slice(&resp.body)?;
                let id = v
                    .get("sessionId")
                    .and_then(|s| s.as_str())
                    .ok_or_else(|| BenchError::Protocol("no sessionId in answer".into()))?;
                if let Ok(mut g) = out.lock() {
                    g[i] = Some(Arc::from(id));
                }
                pb.inc(1);
            }
        }));
    }
    for t in tasks {
        t.await
            .map_err(|e| BenchError::Protocol(format!("session task: {e}")))??;
    }
    pb.finish_and_clear();
    let v = out
        .lock()
        .map_err(|_| BenchError::Protocol("session list poisoned".into()))?
        .iter()
        .flatten()
        .cloned()
        .collect::<Vec<_>>();
    Ok(v)
}
