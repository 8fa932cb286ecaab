//! Publishing through `POST /api/emit` at a controlled rate, draining deliveries, and one
//! measured ramp step (rate, delivery, latency, CPU).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use super::ramp_plan::{RampPlan, RampSpec};
use super::{bar, Env};
use crate::client::{self, Shared};
use crate::hist::Histogram;
use crate::http::HttpConn;
use crate::procstat::{CpuUsage, CpuWindow};
use crate::result::RunResult;

pub(super) struct PublishSpec {
    pub(super) addr: SocketAddr,
    pub(super) rate: f64,
    pub(super) duration: Duration,
    pub(super) seq_start: usize,
    pub(super) rooms: usize,
    /// The emit latency a system may have and still pass (the step's p99 bound): the
    /// publisher keeps `rate × budget` requests in flight (Little's law), so a system with
    /// slower but acceptable answers (a durable commit) is not capped by the load generator.
    pub(super) latency_budget: Duration,
    /// Emits per request: 1 posts each to `/api/emit`, more post them together to
    /// `/api/emit/batch` (raftcast only), all stamped when the request is sent.
    pub(super) batch: usize,
    /// Emits due at the same instant, each its own request (a burst, at the same average
    /// rate): what a room's members then get back to back.
    pub(super) burst: usize,
}

pub(super) struct PublishStats {
    pub(super) seqs: std::ops::Range<usize>,
    pub(super) ok: usize,
    pub(super) failed: usize,
    pub(super) not_sent: usize,
    pub(super) started_at: Duration,
    pub(super) elapsed: Duration,
    /// From the start to just after the last request was written (ignores the last answer).
    pub(super) send_span: Duration,
    pub(super) rtt: Arc<Histogram>,
    pub(super) first_error: Option<String>,
}

impl PublishStats {
    /// Acknowledged emits per second of sending time.
    pub(super) fn achieved_rate(&self) -> f64 {
        self.ok as f64 / self.send_span.as_secs_f64().max(1e-9)
    }
}

/// Publishes `rate × duration` emits (bounded by the sequence space), `batch` per request,
/// spread over enough keep-alive HTTP connections (requests/s × `latency_budget`, at least
/// requests/s / 200: each worker has one request in flight); each emit is stamped with its
/// request's send time just before it is written. A worker that falls more than
/// `duration / 2 + 2 s` behind stops.
pub(super) async fn publish(env: &Env, spec: PublishSpec, shared: &Arc<Shared>) -> PublishStats {
    let wanted = (spec.rate * spec.duration.as_secs_f64()).round() as usize;
    let n = wanted.min(shared.seen.len().saturating_sub(spec.seq_start));
    let batch = spec.batch.max(1);
    let requests = n.div_ceil(batch);
    let request_rate = spec.rate / batch as f64;
    let in_flight = (request_rate * spec.latency_budget.as_secs_f64()).ceil();
    let burst = spec.burst.max(1);
    // A burst's requests go out together: one worker each.
    let workers = (in_flight.max(request_rate / 200.0).ceil() as usize)
        .max(burst)
        .clamp(1, 256);
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
    let path = if batch > 1 {
        "/api/emit/batch"
    } else {
        "/api/emit"
    };
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
            for r in (w..requests).step_by(workers) {
                let (lo, hi) = (r * batch, ((r + 1) * batch).min(n));
                let due = start + Duration::from_secs_f64((lo - lo % burst) as f64 / rate);
                if tokio::time::Instant::now() > give_up {
                    let left: usize = (r..requests)
                        .step_by(workers)
                        .map(|q| ((q + 1) * batch).min(n) - q * batch)
                        .sum();
                    not_sent.fetch_add(left, Ordering::Relaxed);
                    break;
                }
                tokio::time::sleep_until(due).await;
                let sent = client::now_us();
                let one = |seq: usize| {
                    format!(
                        "{{\"room\":\"{}\",\"event\":\"{}\",\"data\":{{\"s\":{seq},\"t\":{sent}}}}}",
                        client::room_name(seq % rooms.max(1)),
                        client::BENCH_EVENT
                    )
                };
                let body = if batch > 1 {
                    let emits: Vec<String> = (lo..hi).map(|i| one(seq_start + i)).collect();
                    format!("{{\"emits\":[{}]}}", emits.join(","))
                } else {
                    one(seq_start + lo)
                };
                let t = Instant::now();
                // One emit interval after the last emit sent: the span the rate is judged on.
                let span = start.elapsed().as_micros() as u64 + (1e6 * (hi - lo) as f64 / rate) as u64;
                last_send_us.fetch_max(span, Ordering::Relaxed);
                let res = conn
                    .request("POST", path, Some(&key), Some(body.as_bytes()))
                    .await;
                rtt.record(t.elapsed().as_micros() as u64);
                let count = hi - lo;
                let status = match res {
                    Ok(r) if r.status == 200 => {
                        ok.fetch_add(count, Ordering::Relaxed);
                        1
                    }
                    Ok(r) => {
                        failed.fetch_add(count, Ordering::Relaxed);
                        if let Ok(mut g) = first_error.lock() {
                            g.get_or_insert_with(|| {
                                format!("HTTP {}: {:.200}", r.status, r.text())
                            });
                        }
                        2
                    }
                    Err(e) => {
                        failed.fetch_add(count, Ordering::Relaxed);
                        if let Ok(mut g) = first_error.lock() {
                            g.get_or_insert_with(|| e.to_string());
                        }
                        // Do not spin on a dead server.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        2
                    }
                };
                for i in lo..hi {
                    if let Some(a) = shared.acked.get(seq_start + i) {
                        a.store(status, Ordering::Relaxed);
                    }
                }
                pb.inc(count as u64);
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

pub(super) struct Drained {
    pub(super) expected: u64,
    pub(super) delivered: u64,
    pub(super) lost_emits: u64,
}

pub(super) fn tally(shared: &Shared, seqs: std::ops::Range<usize>, rooms: usize) -> Drained {
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
pub(super) async fn drain(
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

pub(super) struct Step {
    pub(super) rate: f64,
    pub(super) stats: PublishStats,
    pub(super) drained: Drained,
    pub(super) p50_ms: f64,
    pub(super) p99_ms: f64,
    pub(super) cpu: CpuUsage,
    pub(super) pass: bool,
    pub(super) cdf: Vec<(f64, f64)>,
}

impl Step {
    /// The step's raw numbers for `RunResult::steps`, labelled with its `phase`.
    pub(super) fn json(&self, phase: &str) -> serde_json::Value {
        json!({
            "phase": phase,
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
            "steal_s": self.cpu.steal_s,
            "other_cpu_s": self.cpu.other_cpu_s,
            "wall_s": self.cpu.wall_s,
            "pass": self.pass,
            "first_error": self.stats.first_error,
        })
    }
}

/// One measured publishing step: `rate` emits/s for `profile.step_s` seconds, then a drain.
/// `cross_only` judges latency at members on other nodes than the publisher's.
#[derive(Clone, Copy)]
pub(super) struct StepSpec {
    pub(super) publish_node: usize,
    pub(super) rate: f64,
    pub(super) rooms: usize,
    pub(super) p99_limit_ms: f64,
    /// Judge latency at members on other nodes than the publisher's only.
    pub(super) cross_only: bool,
    /// Publishing time; `None`: the profile's `step_s`.
    pub(super) duration: Option<Duration>,
    /// Emits per request (see [`PublishSpec::batch`]).
    pub(super) batch: usize,
    /// Emits due together (see [`PublishSpec::burst`]).
    pub(super) burst: usize,
}

pub(super) async fn step(
    env: &Env,
    shared: &Arc<Shared>,
    next_seq: &mut usize,
    spec: StepSpec,
) -> Step {
    let StepSpec {
        publish_node,
        rate,
        rooms,
        p99_limit_ms,
        cross_only,
        duration,
        batch,
        burst,
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
            batch,
            burst,
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

/// What a ramp found.
pub(super) struct RampResult {
    /// The highest-rate step that passed.
    pub(super) best: Option<Step>,
    /// Whether a step failed (false: every step passed, the ceiling is above the last).
    pub(super) failed: bool,
}

/// A ramp: steps at the rates [`RampPlan`] gives (growing by a factor until one fails, then
/// narrowing the gap), each as `spec` with that rate. Every step's numbers go to `res.steps`
/// under `phase` (the narrowing ones under `phase` + " refine"); the answer is the
/// highest-rate step that passed.
pub(super) async fn ramp(
    env: &Env,
    shared: &Arc<Shared>,
    next_seq: &mut usize,
    res: &mut RunResult,
    phase: &str,
    plan: RampSpec,
    spec: StepSpec,
) -> RampResult {
    let mut plan = RampPlan::new(plan, spec.rate);
    let mut best: Option<Step> = None;
    let refine_phase = format!("{phase} refine");
    while let Some(rate) = plan.next_rate() {
        let s = step(env, shared, next_seq, StepSpec { rate, ..spec }).await;
        let name = if plan.failed() { &refine_phase } else { phase };
        res.steps.push(s.json(name));
        plan.record(s.pass);
        // A passing step is the highest that passed so far ([`RampPlan::record`]).
        if s.pass {
            best = Some(s);
        }
    }
    RampResult {
        best,
        failed: plan.failed(),
    }
}
