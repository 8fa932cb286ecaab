//! M3 (server CPU per million deliveries) and M2 (max one-room fan-out).

use super::fleet::{note_fleet, open_fleet};
use super::publish::{ramp, step, StepSpec};
use super::{create_sessions, metric, Env};
use crate::client::{ClientPlan, Shared};
use crate::error::{BenchError, Result};
use crate::result::{Cdf, RunResult};

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
            batch: 1,
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
    res.steps.push(m3.json("M3 fixed rate"));

    let best = ramp(
        env,
        &shared,
        &mut next_seq,
        &mut res,
        "M2 ramp",
        (p.fan_factor, p.fan_max_steps),
        StepSpec {
            publish_node: 0,
            rate: p.fan_start_rate,
            rooms: 1,
            p99_limit_ms: p.fan_p99_ms,
            cross_only: false,
            duration: None,
            batch: 1,
        },
    )
    .await;
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
