//! M4 (cross-node latency at 100 emits/s) and M5 (max cross-node emits/s).

use std::time::Duration;

use super::fleet::{note_fleet, open_fleet};
use super::publish::{ramp, step, StepSpec};
use super::ramp_plan::RampSpec;
use super::{create_sessions, metric, Env};
use crate::client::{ClientPlan, Shared};
use crate::error::{BenchError, Result};
use crate::result::{Cdf, RunResult};

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
    if p.cross_batch > 1 && env.system != "raftcast" {
        return Err(BenchError::Config(format!(
            "--cross-batch {} needs POST /api/emit/batch, which only raftcast has",
            p.cross_batch
        )));
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
        batch: 1,
        burst: 1,
    };
    let warm = step(
        env,
        &shared,
        &mut next_seq,
        m4_spec(Some(Duration::from_secs(2))),
    )
    .await;
    res.steps.push(warm.json("M4 warm-up (not measured)"));
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
    res.steps.push(m4.json("M4 fixed rate"));

    let found = ramp(
        env,
        &shared,
        &mut next_seq,
        &mut res,
        "M5 ramp",
        RampSpec {
            factor: p.cross_factor,
            max_steps: p.cross_max_steps,
            refine: p.refine_steps,
        },
        StepSpec {
            publish_node: 0,
            rate: p.cross_start_rate,
            rooms,
            p99_limit_ms: p.cross_p99_ms,
            cross_only: true,
            duration: None,
            batch: p.cross_batch,
            burst: 1,
        },
    )
    .await;
    match found.best {
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
