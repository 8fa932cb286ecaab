//! S1-S5: the seed guide's "Expected Latency" table, measured one operation at a time on an
//! otherwise idle cluster: connection establishment, the `ping` event's ack, subscription
//! confirmation, a trade notification (`POST /api/emit` to `user:<id>`, posted to every node
//! in turn) and a cross-server broadcast (members on the other nodes than the one posted to).

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use super::{create_sessions, metric, Env};
use crate::client::{self, ClientPlan, Ws};
use crate::error::{BenchError, Result};
use crate::hist::Histogram;
use crate::http::HttpConn;
use crate::procstat::CpuWindow;
use crate::result::{Cdf, RunResult};

/// The seed's targets (p50, p99, alert threshold, in ms) for each operation, in table order.
pub const SEED_TARGETS: [(&str, &str, f64, f64, f64); 5] = [
    ("S1", "Connection establishment", 500.0, 1000.0, 2000.0),
    ("S2", "Event round-trip (ping/pong)", 50.0, 100.0, 500.0),
    ("S3", "Subscription confirmation", 100.0, 200.0, 1000.0),
    ("S4", "Trade notification", 20.0, 50.0, 200.0),
    ("S5", "Cross-server broadcast", 20.0, 50.0, 200.0),
];

/// How long one operation may take before the scenario gives up on the run.
const OP_TIMEOUT: Duration = Duration::from_secs(10);

/// Event name of the trade notifications (durable, to `user:<id>`).
const TRADE_EVENT: &str = "trade:executed";

/// Symbol of the room every node's client joins for the broadcast measurement.
const BROADCAST_SYMBOL: &str = "SEEDX";

/// Operations per measurement and the gap between them.
struct Plan {
    connects: usize,
    pings: usize,
    subscribes: usize,
    trades: usize,
    broadcasts: usize,
    /// Between two operations: keeps every socket under the server's per-socket event and
    /// subscription rate limits (50 and 10 per second by default) and the cluster idle.
    gap: Duration,
}

impl Plan {
    fn for_env(env: &Env) -> Plan {
        if env.profile.name == "smoke" {
            Plan {
                connects: 9,
                pings: 9,
                subscribes: 6,
                trades: 9,
                broadcasts: 9,
                gap: Duration::from_millis(110),
            }
        } else {
            Plan {
                connects: 300,
                pings: 300,
                subscribes: 150,
                trades: 300,
                broadcasts: 300,
                gap: Duration::from_millis(110),
            }
        }
    }
}

/// One long-lived client connection of the measurement.
struct Conn {
    ws: Ws,
}

impl Conn {
    async fn send(&mut self, text: String) -> Result<()> {
        Ok(self.ws.send(Message::text(text)).await?)
    }

    /// `subscribe:watchlist` or `unsubscribe:watchlist` (`verb`) for one symbol, until its
    /// confirmation event.
    async fn watchlist(&mut self, verb: &str, symbol: &str) -> Result<()> {
        self.send(format!(
            "42[\"{verb}:watchlist\",{{\"symbols\":[\"{symbol}\"]}}]"
        ))
        .await?;
        let event = format!("{verb}d:watchlist");
        let prefix = format!("42[\"{event}\"");
        self.wait_for(&event, |m| m.starts_with(&prefix)).await?;
        Ok(())
    }

    /// Reads until a text frame satisfies `want` (answering server pings meanwhile) and
    /// returns the time it arrived, in µs since 1970.
    async fn wait_for(&mut self, what: &str, want: impl Fn(&str) -> bool) -> Result<u64> {
        let read = async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Text(t))) => {
                        let t = t.as_str();
                        if want(t) {
                            return Ok(client::now_us());
                        }
                        if t == "2" {
                            self.ws.send(Message::text("3")).await?;
                        } else if t.starts_with("42[\"error\"") || t.starts_with("44") {
                            return Err(BenchError::Refused(t.chars().take(200).collect()));
                        }
                    }
                    Some(Ok(Message::Close(_))) | None => {
                        return Err(BenchError::Protocol(format!(
                            "closed while waiting for {what}"
                        )))
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e.into()),
                }
            }
        };
        tokio::time::timeout(OP_TIMEOUT, read)
            .await
            .map_err(|_| BenchError::Timeout(format!("no {what} within {OP_TIMEOUT:?}")))?
    }
}

fn is_event(text: &str, event: &str, seq: u64) -> bool {
    text.strip_prefix("42[\"")
        .and_then(|r| r.strip_prefix(event))
        .is_some_and(|r| r.starts_with("\",") && client::field(r, "\"s\":") == Some(seq))
}

async fn post_emit(http: &mut HttpConn, key: &str, body: String) -> Result<()> {
    let r = tokio::time::timeout(
        OP_TIMEOUT,
        http.request("POST", "/api/emit", Some(key), Some(body.as_bytes())),
    )
    .await
    .map_err(|_| BenchError::Timeout(format!("POST /api/emit within {OP_TIMEOUT:?}")))??;
    if r.status != 200 {
        return Err(BenchError::Http {
            what: "POST /api/emit".into(),
            status: r.status,
            body: r.text(),
        });
    }
    Ok(())
}

fn record(res: &mut RunResult, id: &str, what: &str, h: &Histogram, cpu: &CpuWindow, env: &Env) {
    let usage = cpu.stop(&env.watched);
    for (q, name) in [(0.5, "p50"), (0.99, "p99")] {
        res.metrics.push(metric(
            id,
            &format!("{what}_{name}_ms"),
            h.quantile_ms(q),
            "ms",
            false,
            &usage,
        ));
    }
    res.cdfs.push(Cdf {
        name: format!("{id} {what}"),
        points: h.cdf_ms(),
    });
}

/// S1-S5, one operation at a time (see the module docs).
pub async fn seed(env: &Env) -> Result<RunResult> {
    let plan = Plan::for_env(env);
    let mut res = env.result("seed");
    let n = env.nodes.len();
    let sessions = create_sessions(env, n).await?;
    let plan_for = |i: usize, node: usize| ClientPlan {
        node,
        addr: env.nodes[node],
        source_ip: env.source_ip(i),
        session: sessions[node % sessions.len()].clone(),
        rooms: Vec::new(),
    };

    // One long-lived client per node, user `bench-u<node>`, opened first and with retries:
    // the sessions were created on the first node and may still be replicating to the others.
    let mut conns = Vec::with_capacity(n);
    for node in 0..n {
        let p = plan_for(node, node);
        let ws = client::connect_with_retry(&p, 3, OP_TIMEOUT).await?;
        conns.push(Conn { ws });
    }

    // S1: TCP connect, WebSocket upgrade, Engine.IO open, Socket.IO CONNECT with the session.
    let h = Histogram::new();
    let cpu = CpuWindow::start(&env.watched);
    for i in 0..plan.connects {
        let p = plan_for(i, i % n);
        let t = Instant::now();
        let mut ws = tokio::time::timeout(OP_TIMEOUT, client::connect(&p))
            .await
            .map_err(|_| BenchError::Timeout(format!("connect to {}", p.addr)))??;
        h.record(t.elapsed().as_micros() as u64);
        let _ = tokio::time::timeout(OP_TIMEOUT, ws.close(None)).await;
        tokio::time::sleep(plan.gap / 4).await;
    }
    record(&mut res, "S1", "connect", &h, &cpu, env);

    // S2: the `ping` event with an ack, answered `{ serverTime }`.
    let h = Histogram::new();
    let cpu = CpuWindow::start(&env.watched);
    for i in 0..plan.pings {
        let c = &mut conns[i % n];
        let id = 1 + i;
        let ack = format!("43{id}[");
        let t = Instant::now();
        c.send(format!("42{id}[\"ping\",{{}}]")).await?;
        c.wait_for("ping ack", |m| m.starts_with(&ack)).await?;
        h.record(t.elapsed().as_micros() as u64);
        tokio::time::sleep(plan.gap / 2).await;
    }
    record(&mut res, "S2", "ping_ack", &h, &cpu, env);

    // S3: subscribe:watchlist until subscribed:watchlist (then leave the room again, untimed).
    let h = Histogram::new();
    let cpu = CpuWindow::start(&env.watched);
    for i in 0..plan.subscribes {
        let c = &mut conns[i % n];
        let sym = format!("SEED{}", i % 20);
        let t = Instant::now();
        c.watchlist("subscribe", &sym).await?;
        h.record(t.elapsed().as_micros() as u64);
        c.watchlist("unsubscribe", &sym).await?;
        tokio::time::sleep(plan.gap).await;
    }
    record(&mut res, "S3", "subscribe", &h, &cpu, env);

    // S4: a backend posts `trade:executed` for a user to some node (every pair of posting
    // node and user's node in turn); latency from the post to the user's socket.
    let mut https: Vec<HttpConn> = env.nodes.iter().map(|a| HttpConn::new(*a)).collect();
    let h = Histogram::new();
    let cpu = CpuWindow::start(&env.watched);
    for i in 0..plan.trades {
        let (post_node, user_node) = (i % n, (i / n) % n);
        let seq = i as u64;
        let sent = client::now_us();
        let body = format!(
            "{{\"userId\":\"bench-u{user_node}\",\"event\":\"{TRADE_EVENT}\",\"data\":{{\"s\":{seq},\"t\":{sent}}}}}"
        );
        let wait = conns[user_node].wait_for(TRADE_EVENT, |m| is_event(m, TRADE_EVENT, seq));
        let (posted, got) =
            tokio::join!(post_emit(&mut https[post_node], &env.api_key, body), wait);
        posted?;
        h.record(got?.saturating_sub(sent));
        tokio::time::sleep(plan.gap / 2).await;
    }
    record(&mut res, "S4", "trade", &h, &cpu, env);

    // S5: every node's client in one room; post to each node in turn, time the deliveries
    // on the other nodes.
    for c in conns.iter_mut() {
        c.watchlist("subscribe", BROADCAST_SYMBOL).await?;
    }
    let h = Histogram::new();
    let cpu = CpuWindow::start(&env.watched);
    for i in 0..plan.broadcasts {
        let post_node = i % n;
        let seq = (plan.trades + i) as u64;
        let sent = client::now_us();
        let body = format!(
            "{{\"room\":\"watchlist:{BROADCAST_SYMBOL}\",\"event\":\"{}\",\"data\":{{\"s\":{seq},\"t\":{sent}}}}}",
            client::BENCH_EVENT
        );
        let waits = conns.iter_mut().enumerate().map(|(node, c)| async move {
            let got = c
                .wait_for("broadcast", |m| is_event(m, client::BENCH_EVENT, seq))
                .await?;
            Ok::<_, BenchError>((node, got))
        });
        let (posted, got) = tokio::join!(
            post_emit(&mut https[post_node], &env.api_key, body),
            join_all(waits)
        );
        posted?;
        for r in got {
            let (node, at) = r?;
            if node != post_node {
                h.record(at.saturating_sub(sent));
            }
        }
        tokio::time::sleep(plan.gap / 2).await;
    }
    record(&mut res, "S5", "broadcast", &h, &cpu, env);

    for mut c in conns {
        let _ = tokio::time::timeout(OP_TIMEOUT, c.ws.close(None)).await;
    }
    res.notes.push(format!(
        "one operation at a time, {} ms apart: {} connects, {} pings, {} subscribes, {} trades, {} broadcasts",
        plan.gap.as_millis(),
        plan.connects,
        plan.pings,
        plan.subscribes,
        plan.trades,
        plan.broadcasts
    ));
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_only_the_awaited_delivery() {
        let m = r#"42["trade:executed",{"s":12,"t":5},{"room":"user:u","offset":3}]"#;
        assert!(is_event(m, TRADE_EVENT, 12));
        assert!(!is_event(m, TRADE_EVENT, 1));
        assert!(!is_event(m, "trade", 12));
        assert!(!is_event(r#"42["bench",{"s":12}]"#, TRADE_EVENT, 12));
    }
}
