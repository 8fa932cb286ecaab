//! The scenarios M1-M7: open connection fleets, publish at controlled rates, measure.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use tokio::sync::{watch, Semaphore};

use crate::client::{self, ClientPlan, Shared};
use crate::error::{BenchError, Result};
use crate::hist::Histogram;
use crate::http::HttpConn;
use crate::procstat::{self, CpuUsage, CpuWindow, Watched};
use crate::result::{Cdf, Metric, RunResult};

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
    pub cross_rooms: usize,
    pub cross_members_per_room: usize,
    pub cross_m4_rate: f64,
    pub cross_start_rate: f64,
    pub cross_factor: f64,
    pub cross_max_steps: usize,
    pub cross_p99_ms: f64,
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
            cross_rooms: 100,
            cross_members_per_room: 30,
            cross_m4_rate: 100.0,
            cross_start_rate: 200.0,
            cross_factor: 1.5,
            cross_max_steps: 10,
            cross_p99_ms: 50.0,
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
            cross_rooms: 3,
            cross_members_per_room: 3,
            cross_m4_rate: 20.0,
            cross_start_rate: 50.0,
            cross_factor: 2.0,
            cross_max_steps: 2,
            cross_p99_ms: 50.0,
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

fn metric(
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
    }
}

fn bar(len: u64, msg: String) -> ProgressBar {
    let pb = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} {msg:40} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec})",
    ) {
        pb.set_style(style);
    }
    pb.set_message(msg);
    pb
}

async fn sleep_with_bar(secs: u64, msg: &str) {
    let pb = bar(secs, msg.to_string());
    for _ in 0..secs {
        tokio::time::sleep(Duration::from_secs(1)).await;
        pb.inc(1);
    }
    pb.finish_and_clear();
}

// ---------------------------------------------------------------- sessions

/// Creates `n` sessions through `POST /api/sessions` on the first node.
async fn create_sessions(env: &Env, n: usize) -> Result<Vec<Arc<str>>> {
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

// ---------------------------------------------------------------- fleets

struct Fleet {
    stop: watch::Sender<bool>,
    ok: usize,
    failed: usize,
    elapsed: Duration,
    handshake: Arc<Histogram>,
    first_error: Option<String>,
}

impl Fleet {
    async fn close(self) {
        let _ = self.stop.send(true);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn open_fleet(env: &Env, plans: Vec<ClientPlan>, shared: &Arc<Shared>, label: &str) -> Fleet {
    let n = plans.len();
    let (stop, stop_rx) = watch::channel(false);
    let sem = Arc::new(Semaphore::new(env.profile.connect_concurrency.max(1)));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let handshake = Arc::new(Histogram::new());
    let first_error: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let pb = bar(n as u64, format!("{}: {label}", env.system));
    let t0 = Instant::now();
    for plan in plans {
        let (sem, ok, failed, handshake, first_error, shared, stop_rx, pb) = (
            sem.clone(),
            ok.clone(),
            failed.clone(),
            handshake.clone(),
            first_error.clone(),
            shared.clone(),
            stop_rx.clone(),
            pb.clone(),
        );
        tokio::spawn(async move {
            let Ok(permit) = sem.acquire_owned().await else {
                return;
            };
            let t = Instant::now();
            match client::connect_with_retry(&plan, 3, Duration::from_secs(10)).await {
                Ok(ws) => {
                    handshake.record(t.elapsed().as_micros() as u64);
                    for r in &plan.rooms {
                        if let Some(m) = shared.room_members.get(*r) {
                            m.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    ok.fetch_add(1, Ordering::Relaxed);
                    pb.inc(1);
                    drop(permit);
                    client::run(ws, plan.node, shared, stop_rx).await;
                }
                Err(e) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                    pb.inc(1);
                    if let Ok(mut g) = first_error.lock() {
                        g.get_or_insert_with(|| format!("{}: {e}", plan.addr));
                    }
                }
            }
        });
    }
    // Bounded: every handshake has 3 attempts of at most 10 s each.
    let deadline = t0 + Duration::from_secs(60 + (n as u64 / 20));
    while ok.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) < n
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = t0.elapsed();
    pb.finish_and_clear();
    let first_error = first_error.lock().ok().and_then(|g| g.clone());
    Fleet {
        stop,
        ok: ok.load(Ordering::Relaxed),
        failed: n - ok.load(Ordering::Relaxed),
        elapsed,
        handshake,
        first_error,
    }
}

fn note_fleet(res: &mut RunResult, what: &str, f: &Fleet) {
    res.notes.push(format!(
        "{what}: {} connected, {} failed in {:.2} s{}",
        f.ok,
        f.failed,
        f.elapsed.as_secs_f64(),
        f.first_error
            .as_ref()
            .map(|e| format!(" (first error: {e})"))
            .unwrap_or_default()
    ));
}

// ---------------------------------------------------------------- publishing

struct PublishSpec {
    addr: SocketAddr,
    rate: f64,
    duration: Duration,
    seq_start: usize,
    rooms: usize,
    /// The emit latency a system may have and still pass (the step's p99 bound): the
    /// publisher keeps `rate × budget` requests in flight (Little's law), so a system with
    /// slower but acceptable answers (a durable commit) is not capped by the load generator.
    latency_budget: Duration,
}

struct PublishStats {
    seqs: std::ops::Range<usize>,
    ok: usize,
    failed: usize,
    not_sent: usize,
    started_at: Duration,
    elapsed: Duration,
    /// From the start to just after the last request was written (ignores the last answer).
    send_span: Duration,
    rtt: Arc<Histogram>,
    first_error: Option<String>,
}

impl PublishStats {
    /// Acknowledged emits per second of sending time.
    fn achieved_rate(&self) -> f64 {
        self.ok as f64 / self.send_span.as_secs_f64().max(1e-9)
    }
}

/// Publishes `rate × duration` emits (bounded by the sequence space), spread over enough
/// keep-alive HTTP connections (`rate × latency_budget`, at least `rate / 200`: each worker
/// has one request in flight); each emit is stamped with its send time just before it is
/// written. A worker that falls more than `duration / 2 + 2 s` behind stops.
async fn publish(env: &Env, spec: PublishSpec, shared: &Arc<Shared>) -> PublishStats {
    let wanted = (spec.rate * spec.duration.as_secs_f64()).round() as usize;
    let n = wanted.min(shared.seen.len().saturating_sub(spec.seq_start));
    let in_flight = (spec.rate * spec.latency_budget.as_secs_f64()).ceil();
    let workers = (in_flight.max(spec.rate / 200.0).ceil() as usize).clamp(1, 256);
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let not_sent = Arc::new(AtomicUsize::new(0));
    let rtt = Arc::new(Histogram::new());
    let last_send_us = Arc::new(AtomicU64::new(0));
    let first_error: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let pb = bar(n as u64, format!("{}: emit {:.0}/s", env.system, spec.rate));
    let start = tokio::time::Instant::now();
    let started_at = shared.t0.elapsed();
    let give_up = start + spec.duration + spec.duration / 2 + Duration::from_secs(2);
    let mut tasks = Vec::new();
    for w in 0..workers {
        let last_send_us = last_send_us.clone();
        let (ok, failed, not_sent, rtt, first_error, shared, pb) = (
            ok.clone(),
            failed.clone(),
            not_sent.clone(),
            rtt.clone(),
            first_error.clone(),
            shared.clone(),
            pb.clone(),
        );
        let key = env.api_key.clone();
        let (addr, rate, seq_start, rooms) = (spec.addr, spec.rate, spec.seq_start, spec.rooms);
        tasks.push(tokio::spawn(async move {
            let mut conn = HttpConn::new(addr);
            for i in (w..n).step_by(workers) {
                let due = start + Duration::from_secs_f64(i as f64 / rate);
                if tokio::time::Instant::now() > give_up {
                    not_sent.fetch_add((n - i).div_ceil(workers), Ordering::Relaxed);
                    break;
                }
                tokio::time::sleep_until(due).await;
                let seq = seq_start + i;
                let sent = client::now_us();
                let body = format!(
                    "{{\"room\":\"{}\",\"event\":\"{}\",\"data\":{{\"s\":{seq},\"t\":{sent}}}}}",
                    client::room_name(seq % rooms.max(1)),
                    client::BENCH_EVENT
                );
                let t = Instant::now();
                // One emit interval after the send: the span the rate is judged on.
                let span = start.elapsed().as_micros() as u64 + (1e6 / rate) as u64;
                last_send_us.fetch_max(span, Ordering::Relaxed);
                let res = conn
                    .request("POST", "/api/emit", Some(&key), Some(body.as_bytes()))
                    .await;
                rtt.record(t.elapsed().as_micros() as u64);
                let status = match res {
                    Ok(r) if r.status == 200 => {
                        ok.fetch_add(1, Ordering::Relaxed);
                        1
                    }
                    Ok(r) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut g) = first_error.lock() {
                            g.get_or_insert_with(|| {
                                format!("HTTP {}: {:.200}", r.status, r.text())
                            });
                        }
                        2
                    }
                    Err(e) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut g) = first_error.lock() {
                            g.get_or_insert_with(|| e.to_string());
                        }
                        // Do not spin on a dead server.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        2
                    }
                };
                if let Some(a) = shared.acked.get(seq) {
                    a.store(status, Ordering::Relaxed);
                }
                pb.inc(1);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    pb.finish_and_clear();
    let first_error = first_error.lock().ok().and_then(|g| g.clone());
    PublishStats {
        seqs: spec.seq_start..spec.seq_start + n,
        ok: ok.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        not_sent: not_sent.load(Ordering::Relaxed),
        started_at,
        elapsed: start.elapsed(),
        send_span: Duration::from_micros(last_send_us.load(Ordering::Relaxed)),
        rtt,
        first_error,
    }
}

struct Drained {
    expected: u64,
    delivered: u64,
    lost_emits: u64,
}

fn tally(shared: &Shared, seqs: std::ops::Range<usize>, rooms: usize) -> Drained {
    let mut d = Drained {
        expected: 0,
        delivered: 0,
        lost_emits: 0,
    };
    for seq in seqs {
        if shared.acked[seq].load(Ordering::Relaxed) != 1 {
            continue;
        }
        let want = shared.members(seq % rooms.max(1));
        let got = shared.seen[seq].load(Ordering::Relaxed) as u64;
        d.expected += want;
        d.delivered += got.min(want);
        if got < want {
            d.lost_emits += 1;
        }
    }
    d
}

/// Waits until every acknowledged emit reached every member, or `timeout`.
async fn drain(
    shared: &Shared,
    seqs: std::ops::Range<usize>,
    rooms: usize,
    timeout: Duration,
) -> Drained {
    let until = Instant::now() + timeout;
    loop {
        let d = tally(shared, seqs.clone(), rooms);
        if d.delivered >= d.expected || Instant::now() >= until {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct Step {
    rate: f64,
    stats: PublishStats,
    drained: Drained,
    p50_ms: f64,
    p99_ms: f64,
    cpu: CpuUsage,
    pass: bool,
    cdf: Vec<(f64, f64)>,
}

impl Step {
    fn json(&self) -> serde_json::Value {
        json!({
            "target_emits_per_s": self.rate,
            "achieved_emits_per_s": self.stats.achieved_rate(),
            "deliveries_per_s": self.drained.delivered as f64 / self.stats.elapsed.as_secs_f64().max(1e-9),
            "emits_ok": self.stats.ok,
            "emits_failed": self.stats.failed,
            "emits_not_sent": self.stats.not_sent,
            "expected_deliveries": self.drained.expected,
            "delivered": self.drained.delivered,
            "lost_emits": self.drained.lost_emits,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "emit_http_p99_ms": self.stats.rtt.quantile_ms(0.99),
            "server_cpu_s": self.cpu.server_cpu_s,
            "loadgen_cpu_s": self.cpu.loadgen_cpu_s,
            "wall_s": self.cpu.wall_s,
            "pass": self.pass,
            "first_error": self.stats.first_error,
        })
    }
}

/// One measured publishing step: `rate` emits/s for `profile.step_s` seconds, then a drain.
/// `cross_only` judges latency at members on other nodes than the publisher's.
struct StepSpec {
    publish_node: usize,
    rate: f64,
    rooms: usize,
    p99_limit_ms: f64,
    /// Judge latency at members on other nodes than the publisher's only.
    cross_only: bool,
    /// Publishing time; `None`: the profile's `step_s`.
    duration: Option<Duration>,
}

async fn step(env: &Env, shared: &Arc<Shared>, next_seq: &mut usize, spec: StepSpec) -> Step {
    let StepSpec {
        publish_node,
        rate,
        rooms,
        p99_limit_ms,
        cross_only,
        duration,
    } = spec;
    shared.reset_step();
    let cpu0 = CpuWindow::start(&env.watched);
    let stats = publish(
        env,
        PublishSpec {
            addr: env.nodes[publish_node],
            rate,
            duration: duration.unwrap_or(Duration::from_secs(env.profile.step_s)),
            seq_start: *next_seq,
            rooms,
            latency_budget: Duration::from_secs_f64(p99_limit_ms.min(250.0) / 1000.0),
        },
        shared,
    )
    .await;
    *next_seq = stats.seqs.end;
    let drained = drain(
        shared,
        stats.seqs.clone(),
        rooms,
        Duration::from_secs(env.profile.drain_timeout_s),
    )
    .await;
    let cpu = cpu0.stop(&env.watched);
    let hist = if cross_only {
        Histogram::merged(&[&shared.hist_cross])
    } else {
        Histogram::merged(&[&shared.hist_cross, &shared.hist_local])
    };
    let p99_ms = hist.quantile_ms(0.99);
    let pass = stats.failed == 0
        && stats.not_sent == 0
        && stats.ok > 0
        && drained.delivered >= drained.expected
        && drained.expected > 0
        && stats.achieved_rate() >= 0.95 * rate
        && p99_ms <= p99_limit_ms;
    Step {
        rate,
        p50_ms: hist.quantile_ms(0.5),
        p99_ms,
        cdf: hist.cdf_ms(),
        stats,
        drained,
        cpu,
        pass,
    }
}

// ---------------------------------------------------------------- scenarios

/// M1 (memory per idle connection) and M6 (handshakes/s).
pub async fn idle(env: &Env) -> Result<RunResult> {
    let p = &env.profile;
    let mut res = env.result("idle");
    let sessions = create_sessions(env, p.users.min(p.idle_conns)).await?;
    let shared = Shared::new(1, 1, 1);
    let plans = (0..p.idle_conns)
        .map(|i| ClientPlan {
            node: i % env.nodes.len(),
            addr: env.nodes[i % env.nodes.len()],
            source_ip: env.source_ip(i),
            session: sessions[i % sessions.len()].clone(),
            rooms: Vec::new(),
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss0 = env.watched.rss_bytes();
    let cpu = CpuWindow::start(&env.watched);
    let fleet = open_fleet(env, plans, &shared, "connect").await;
    let connect_cpu = cpu.stop(&env.watched);
    note_fleet(&mut res, "connect", &fleet);
    if fleet.ok == 0 {
        let why = fleet.first_error.clone().unwrap_or_default();
        fleet.close().await;
        return Err(BenchError::Refused(format!(
            "no connection succeeded: {why}"
        )));
    }
    res.metrics.push(metric(
        "M6",
        "handshakes_per_s",
        fleet.ok as f64 / fleet.elapsed.as_secs_f64().max(1e-9),
        "handshakes/s",
        true,
        &connect_cpu,
    ));
    res.metrics.push(metric(
        "M6",
        "handshake_p99_ms",
        fleet.handshake.quantile_ms(0.99),
        "ms",
        false,
        &connect_cpu,
    ));
    res.cdfs.push(Cdf {
        name: "handshake".into(),
        points: fleet.handshake.cdf_ms(),
    });
    let settle = CpuWindow::start(&env.watched);
    sleep_with_bar(p.idle_settle_s, &format!("{}: idle", env.system)).await;
    let rss1 = env.watched.rss_bytes();
    let settle_cpu = settle.stop(&env.watched);
    let per_conn = rss1.saturating_sub(rss0) as f64 / fleet.ok as f64;
    res.metrics.push(metric(
        "M1",
        "rss_per_conn_bytes",
        per_conn,
        "bytes/conn",
        false,
        &settle_cpu,
    ));
    res.steps.push(json!({
        "connections": fleet.ok,
        "failed": fleet.failed,
        "rss_before_bytes": rss0,
        "rss_after_bytes": rss1,
        "settle_s": p.idle_settle_s,
        "disconnects_while_idle": shared.disconnects.load(Ordering::Relaxed),
        "pings_answered": shared.pings.load(Ordering::Relaxed),
        "loadgen_rss_bytes": procstat::self_rss_bytes(),
    }));
    fleet.close().await;
    Ok(res)
}

/// M3 (server CPU-seconds per million deliveries at a fixed rate) and M2 (max one-room
/// fan-out with 100 % delivery and p99 ≤ 250 ms).
pub async fn fanout(env: &Env) -> Result<RunResult> {
    let p = &env.profile;
    let mut res = env.result("fanout");
    let members = p.fan_members;
    let sessions = create_sessions(env, p.users.min(members)).await?;
    let shared = Shared::new(4_000_000, 1, 1);
    let plans = (0..members)
        .map(|i| ClientPlan {
            node: i % env.nodes.len(),
            addr: env.nodes[i % env.nodes.len()],
            source_ip: env.source_ip(i),
            session: sessions[i % sessions.len()].clone(),
            rooms: vec![0],
        })
        .collect();
    let fleet = open_fleet(env, plans, &shared, "fan-out members").await;
    note_fleet(&mut res, "members", &fleet);
    if fleet.ok == 0 {
        fleet.close().await;
        return Err(BenchError::Refused("no member connected".into()));
    }
    let mut next_seq = 0;
    let fixed_rate = (p.fan_fixed_deliveries_per_s / fleet.ok as f64).max(1.0);
    let m3 = step(
        env,
        &shared,
        &mut next_seq,
        StepSpec {
            publish_node: 0,
            rate: fixed_rate,
            rooms: 1,
            p99_limit_ms: p.fan_p99_ms,
            cross_only: false,
            duration: None,
        },
    )
    .await;
    res.metrics.push(metric(
        "M3",
        "server_cpu_s_per_million_deliveries",
        m3.cpu.server_cpu_s / (m3.drained.delivered.max(1) as f64) * 1e6,
        "CPU-s/M deliveries",
        false,
        &m3.cpu,
    ));
    res.metrics.push(metric(
        "M3",
        "fanout_p99_ms_at_fixed_rate",
        m3.p99_ms,
        "ms",
        false,
        &m3.cpu,
    ));
    res.cdfs.push(Cdf {
        name: "fan-out at fixed rate".into(),
        points: m3.cdf.clone(),
    });
    let mut j = m3.json();
    j["phase"] = json!("M3 fixed rate");
    res.steps.push(j);

    let mut rate = p.fan_start_rate;
    let mut best: Option<Step> = None;
    for _ in 0..p.fan_max_steps {
        let s = step(
            env,
            &shared,
            &mut next_seq,
            StepSpec {
                publish_node: 0,
                rate,
                rooms: 1,
                p99_limit_ms: p.fan_p99_ms,
                cross_only: false,
                duration: None,
            },
        )
        .await;
        let mut j = s.json();
        j["phase"] = json!("M2 ramp");
        res.steps.push(j);
        let pass = s.pass;
        if pass {
            best = Some(s);
        } else {
            break;
        }
        rate *= p.fan_factor;
    }
    match best {
        Some(b) => {
            res.metrics.push(metric(
                "M2",
                "max_fanout_deliveries_per_s",
                b.drained.delivered as f64 / b.stats.elapsed.as_secs_f64().max(1e-9),
                "deliveries/s",
                true,
                &b.cpu,
            ));
            if res.steps.last().and_then(|s| s["pass"].as_bool()) == Some(true) {
                res.notes
                    .push("M2: every ramp step passed; the ceiling is above the last step".into());
            }
        }
        None => res
            .notes
            .push("M2: even the first ramp step failed (see steps)".into()),
    }
    fleet.close().await;
    Ok(res)
}

/// M4 (cross-node publish-to-deliver at 100 emits/s) and M5 (max cross-node emits/s with
/// p99 ≤ 50 ms, many rooms, members on every node).
pub async fn crossnode(env: &Env) -> Result<RunResult> {
    let p = &env.profile;
    let mut res = env.result("crossnode");
    if env.nodes.len() < 2 {
        return Err(BenchError::Config(
            "crossnode needs at least two nodes".into(),
        ));
    }
    let rooms = p.cross_rooms;
    let n = rooms * p.cross_members_per_room;
    let sessions = create_sessions(env, p.users.min(n)).await?;
    let shared = Shared::new(4_000_000, rooms, 1);
    let plans = (0..n)
        .map(|i| {
            let (room, j) = (i / p.cross_members_per_room, i % p.cross_members_per_room);
            let node = (j + room) % env.nodes.len();
            ClientPlan {
                node,
                addr: env.nodes[node],
                source_ip: env.source_ip(i),
                session: sessions[i % sessions.len()].clone(),
                rooms: vec![room],
            }
        })
        .collect();
    let fleet = open_fleet(env, plans, &shared, "room members").await;
    note_fleet(&mut res, "members", &fleet);
    if fleet.ok == 0 {
        fleet.close().await;
        return Err(BenchError::Refused("no member connected".into()));
    }
    let mut next_seq = 0;
    // Warm-up at M4's rate, not measured: the first emits after the subscriptions (a dozen
    // requests on fresh connections, on a cluster idle for a moment) are answered in
    // 25-80 ms on raftcast; M4 is the steady state. Both systems get the same warm-up.
    let m4_spec = |duration| StepSpec {
        publish_node: 0,
        rate: p.cross_m4_rate,
        rooms,
        p99_limit_ms: f64::MAX,
        cross_only: true,
        duration,
    };
    let warm = step(
        env,
        &shared,
        &mut next_seq,
        m4_spec(Some(Duration::from_secs(2))),
    )
    .await;
    let mut j = warm.json();
    j["phase"] = json!("M4 warm-up (not measured)");
    res.steps.push(j);
    let m4 = step(env, &shared, &mut next_seq, m4_spec(None)).await;
    res.metrics.push(metric(
        "M4",
        "cross_node_p50_ms",
        m4.p50_ms,
        "ms",
        false,
        &m4.cpu,
    ));
    res.metrics.push(metric(
        "M4",
        "cross_node_p99_ms",
        m4.p99_ms,
        "ms",
        false,
        &m4.cpu,
    ));
    res.cdfs.push(Cdf {
        name: format!("cross-node at {:.0} emits/s", p.cross_m4_rate),
        points: m4.cdf.clone(),
    });
    if !m4.pass {
        res.notes.push(format!(
            "M4: delivery incomplete ({} of {} deliveries, {} emits failed)",
            m4.drained.delivered, m4.drained.expected, m4.stats.failed
        ));
    }
    let mut j = m4.json();
    j["phase"] = json!("M4 fixed rate");
    res.steps.push(j);

    let mut rate = p.cross_start_rate;
    let mut best: Option<Step> = None;
    for _ in 0..p.cross_max_steps {
        let s = step(
            env,
            &shared,
            &mut next_seq,
            StepSpec {
                publish_node: 0,
                rate,
                rooms,
                p99_limit_ms: p.cross_p99_ms,
                cross_only: true,
                duration: None,
            },
        )
        .await;
        let mut j = s.json();
        j["phase"] = json!("M5 ramp");
        res.steps.push(j);
        if s.pass {
            best = Some(s);
        } else {
            break;
        }
        rate *= p.cross_factor;
    }
    match best {
        Some(b) => res.metrics.push(metric(
            "M5",
            "max_cross_node_emits_per_s",
            b.stats.achieved_rate(),
            "emits/s",
            true,
            &b.cpu,
        )),
        None => res
            .notes
            .push("M5: even the first ramp step failed (see steps)".into()),
    }
    fleet.close().await;
    Ok(res)
}

async fn find_leader(env: &Env) -> Option<usize> {
    for addr in &env.nodes {
        let mut c = HttpConn::new(*addr);
        if let Ok(Ok(r)) = tokio::time::timeout(
            Duration::from_secs(2),
            c.request("GET", "/cluster/status", None, None),
        )
        .await
        {
            if r.status == 200 {
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&r.body) {
                    if let Some(id) = v.get("leaderId").and_then(|x| x.as_u64()) {
                        return (id as usize).checked_sub(1);
                    }
                }
            }
        }
    }
    None
}

fn longest_gap_ms(shared: &Shared, from: Duration, to: Duration) -> f64 {
    let b = client::TIMELINE_BUCKET_MS as u128;
    let (a, z) = (
        (from.as_millis() / b) as usize,
        (to.as_millis() / b) as usize,
    );
    let z = z.min(shared.timeline_cross.len());
    let (mut best, mut run) = (0usize, 0usize);
    for bucket in shared.timeline_cross.get(a..z).unwrap_or_default() {
        if bucket.load(Ordering::Relaxed) == 0 {
            run += 1;
            best = best.max(run);
        } else {
            run = 0;
        }
    }
    (best as u64 * client::TIMELINE_BUCKET_MS) as f64
}

/// M7: disrupt the coordination layer (raftcast: SIGKILL the Raft leader; baseline: restart
/// Redis) during a steady 1,000 emits/s; measure the longest delivery gap at cross-node
/// members and the acknowledged emits that never arrived.
pub async fn failover(env: &Env) -> Result<RunResult> {
    let p = &env.profile;
    let mut res = env.result("failover");
    let mut alive: Vec<usize> = (0..env.nodes.len()).collect();
    let mut victim = None;
    if env.kill_leader {
        let leader = find_leader(env)
            .await
            .ok_or_else(|| BenchError::Protocol("no node reports a leaderId".into()))?;
        let pid = *env
            .pids
            .get(leader)
            .ok_or_else(|| BenchError::Config(format!("no pid for leader index {leader}")))?;
        alive.retain(|i| *i != leader);
        victim = Some((leader, pid));
        res.notes
            .push(format!("leader is node {} (pid {pid})", leader + 1));
    } else if env.disrupt_cmd.is_none() {
        return Err(BenchError::Config(
            "failover needs --kill-leader or --disrupt-cmd".into(),
        ));
    }
    if alive.is_empty() {
        return Err(BenchError::Config("no surviving node to publish to".into()));
    }
    let rooms = p.fail_rooms;
    let n = rooms * p.fail_members_per_room;
    let sessions = create_sessions(env, p.users.min(n)).await?;
    let timeline = p.fail_duration_s * 2 + p.fail_drain_s + 120;
    let shared = Shared::new(
        (p.fail_rate * p.fail_duration_s as f64) as usize + 1,
        rooms,
        timeline,
    );
    let publish_node = alive[0];
    shared.publish_node.store(publish_node, Ordering::Relaxed);
    let plans = (0..n)
        .map(|i| {
            let node = alive[i % alive.len()];
            ClientPlan {
                node,
                addr: env.nodes[node],
                source_ip: env.source_ip(i),
                session: sessions[i % sessions.len()].clone(),
                rooms: vec![i % rooms],
            }
        })
        .collect();
    let fleet = open_fleet(env, plans, &shared, "observers").await;
    note_fleet(&mut res, "observers", &fleet);
    if fleet.ok == 0 {
        fleet.close().await;
        return Err(BenchError::Refused("no observer connected".into()));
    }
    let disrupt_at = Duration::from_secs(p.fail_disrupt_at_s);
    let cmd = env.disrupt_cmd.clone();
    let disruption = tokio::spawn(async move {
        tokio::time::sleep(disrupt_at).await;
        let t = client::now_us();
        let outcome = if let Some((_, pid)) = victim {
            tokio::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status()
                .await
        } else if let Some(cmd) = cmd {
            tokio::process::Command::new("sh")
                .args(["-c", &cmd])
                .status()
                .await
        } else {
            return (t, "nothing to do".to_string());
        };
        (t, format!("{outcome:?}"))
    });
    let cpu = CpuWindow::start(&env.watched);
    let stats = publish(
        env,
        PublishSpec {
            addr: env.nodes[publish_node],
            rate: p.fail_rate,
            duration: Duration::from_secs(p.fail_duration_s),
            seq_start: 0,
            rooms,
            latency_budget: Duration::from_millis(50),
        },
        &shared,
    )
    .await;
    let publish_end = shared.t0.elapsed();
    let drained = drain(
        &shared,
        stats.seqs.clone(),
        rooms,
        Duration::from_secs(p.fail_drain_s),
    )
    .await;
    let usage = cpu.stop(&env.watched);
    let (disrupted_us, outcome) = disruption
        .await
        .map_err(|e| BenchError::Protocol(format!("disruption task: {e}")))?;
    res.notes.push(format!(
        "disruption ({}) at +{} s: {outcome}",
        if env.kill_leader {
            "SIGKILL leader"
        } else {
            "command"
        },
        p.fail_disrupt_at_s
    ));
    let gap = longest_gap_ms(&shared, stats.started_at, publish_end);
    res.metrics
        .push(metric("M7", "delivery_gap_ms", gap, "ms", false, &usage));
    res.metrics.push(metric(
        "M7",
        "lost_acknowledged_emits",
        drained.lost_emits as f64,
        "emits",
        false,
        &usage,
    ));
    res.metrics.push(metric(
        "M7",
        "refused_emits",
        stats.failed as f64,
        "emits",
        false,
        &usage,
    ));
    let all = Histogram::merged(&[&shared.hist_cross, &shared.hist_local]);
    res.cdfs.push(Cdf {
        name: "during failover".into(),
        points: all.cdf_ms(),
    });
    res.steps.push(json!({
        "rate": p.fail_rate,
        "emits_ok": stats.ok,
        "emits_failed": stats.failed,
        "emits_not_sent": stats.not_sent,
        "expected_deliveries": drained.expected,
        "delivered": drained.delivered,
        "lost_emits": drained.lost_emits,
        "p99_ms": all.quantile_ms(0.99),
        "max_ms": all.max_us() as f64 / 1000.0,
        "emit_http_p99_ms": stats.rtt.quantile_ms(0.99),
        "emit_http_max_ms": stats.rtt.max_us() as f64 / 1000.0,
        "observer_disconnects": shared.disconnects.load(Ordering::Relaxed),
        "disrupted_at_unix_us": disrupted_us,
        "first_error": stats.first_error,
        "timeline_10ms_cross_node": shared.timeline_cross
            .get((stats.started_at.as_millis() / 10) as usize..(publish_end.as_millis() / 10) as usize)
            .unwrap_or_default()
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect::<Vec<_>>(),
    }));
    fleet.close().await;
    Ok(res)
}
