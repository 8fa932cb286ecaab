//! M7: kill the Raft leader (or restart Redis) during steady publishing.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;

use super::fleet::{note_fleet, open_fleet};
use super::publish::{drain, publish, PublishSpec};
use super::{create_sessions, metric, Env};
use crate::client::{self, ClientPlan, Shared};
use crate::error::{BenchError, Result};
use crate::hist::Histogram;
use crate::http::HttpConn;
use crate::procstat::CpuWindow;
use crate::result::{Cdf, RunResult};

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
            batch: 1,
            burst: 1,
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
