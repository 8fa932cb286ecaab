//! M3 (server CPU per million deliveries) and M2 (max one-room fan-out), with the emits
//! evenly spread (`fanout`) or in bursts of ten (`burst`: M3b and M2b).

use super::fleet::{note_fleet, open_fleet};
use super::publish::{ramp, step, StepSpec};
use super::ramp_plan::RampSpec;
use super::{create_sessions, metric, Env};
use crate::client::{ClientPlan, Shared};
use crate::error::{BenchError, Result};
use crate::result::{Cdf, RunResult};

/// Emits posted together in the `burst` scenario (unless `--fan-burst` says otherwise).
const BURST: usize = 10;

/// M3 (server CPU-seconds per million deliveries at a fixed rate) and M2 (max one-room
/// fan-out with 100 % delivery and p99 ≤ 250 ms).
pub async fn fanout(env: &Env) -> Result<RunResult> {
    run(env, "fanout", env.profile.fan_burst, "").await
}

/// M3b and M2b: the same as [`fanout`], with the emits posted ten at a time (each its own
/// `POST /api/emit`, at the same average rate), so every member gets ten frames back to
/// back — a burst of trades, a market open.
pub async fn burst(env: &Env) -> Result<RunResult> {
    let burst = if env.profile.fan_burst > 1 {
        env.profile.fan_burst
    } else {
        BURST
    };
    run(env, "burst", burst, "b").await
}

async fn run(env: &Env, scenario: &str, burst: usize, suffix: &str) -> Result<RunResult> {
    let p = &env.profile;
    let (id2, id3) = (format!("M2{suffix}"), format!("M3{suffix}"));
    let mut res = env.result(scenario);
    if p.fan_batch > 1 && env.system != "raftcast" {
        return Err(BenchError::Config(format!(
            "--fan-batch {} needs POST /api/emit/batch, which only raftcast has",
            p.fan_batch
        )));
    }
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
            batch: p.fan_batch,
            burst,
        },
    )
    .await;
    res.metrics.push(metric(
        &id3,
        "server_cpu_s_per_million_deliveries",
        m3.cpu.server_cpu_s / (m3.drained.delivered.max(1) as f64) * 1e6,
        "CPU-s/M deliveries",
        false,
        &m3.cpu,
    ));
    res.metrics.push(metric(
        &id3,
        "fanout_p99_ms_at_fixed_rate",
        m3.p99_ms,
        "ms",
        false,
        &m3.cpu,
    ));
    res.cdfs.push(Cdf {
        // "fan-out…" is the M3 plot's curve: the burst variant is named apart.
        name: if suffix.is_empty() {
            "fan-out at fixed rate".into()
        } else {
            format!("bursts of {burst}: fan-out at fixed rate")
        },
        points: m3.cdf.clone(),
    });
    res.steps.push(m3.json(&format!("{id3} fixed rate")));

    let found = ramp(
        env,
        &shared,
        &mut next_seq,
        &mut res,
        &format!("{id2} ramp"),
        RampSpec {
            factor: p.fan_factor,
            max_steps: p.fan_max_steps,
            refine: p.refine_steps,
        },
        StepSpec {
            publish_node: 0,
            rate: p.fan_start_rate,
            rooms: 1,
            p99_limit_ms: p.fan_p99_ms,
            cross_only: false,
            duration: None,
            batch: p.fan_batch,
            burst,
        },
    )
    .await;
    match found.best {
        Some(b) => {
            res.metrics.push(metric(
                &id2,
                "max_fanout_deliveries_per_s",
                b.drained.delivered as f64 / b.stats.elapsed.as_secs_f64().max(1e-9),
                "deliveries/s",
                true,
                &b.cpu,
            ));
            if !found.failed {
                res.notes.push(format!(
                    "{id2}: every ramp step passed; the ceiling is above the last step"
                ));
            }
        }
        None => res.notes.push(format!(
            "{id2}: even the first ramp step failed (see steps)"
        )),
    }
    fleet.close().await;
    Ok(res)
}
