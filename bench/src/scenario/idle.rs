//! M1 (memory per idle connection) and M6 (handshakes/s).

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;

use super::fleet::{note_fleet, open_fleet};
use super::{create_sessions, metric, sleep_with_bar, Env};
use crate::client::{ClientPlan, Shared};
use crate::error::{BenchError, Result};
use crate::procstat::{self, CpuWindow};
use crate::result::{Cdf, RunResult};

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
