//! The load: a publisher of durable emits (`POST /api/emit {userId, event, data: {seq}}`) at
//! a set rate, round-robin over the users and over the nodes that are up, recording every
//! answer; and a volatile quote stream (`POST /api/quotes`) alongside.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::{watch, Semaphore};

use super::client::QUOTE_SYMBOL;
use super::cluster::View;
use super::record::{EmitOutcome, EmitRecord, Journal};

/// The durable event the publisher emits.
pub const EVENT: &str = "trade:executed";
/// Most emits in flight at once; beyond, ticks are skipped (and counted).
const MAX_IN_FLIGHT: usize = 1024;
/// An emit's answer is awaited this long (above the nodes' 3 s propose timeout).
const EMIT_TIMEOUT: Duration = Duration::from_secs(6);

/// What the load needs to reach the cluster.
#[derive(Clone)]
pub struct Target {
    pub view: Arc<View>,
    pub http: reqwest::Client,
    pub api_key: String,
}

impl Target {
    fn url(&self, i: usize, path: &str) -> (u64, String) {
        match self.view.nodes.get(i) {
            Some((id, addr)) => (*id, format!("http://{addr}{path}")),
            None => (0, format!("http://127.0.0.1:0{path}")),
        }
    }
}

/// The room of user `u`.
pub fn room_of(user: &str) -> String {
    format!("user:{user}")
}

/// Emits at `rate` per second until `stop`; waits (bounded) for the emits in flight.
pub async fn publish(
    target: Target,
    users: Vec<String>,
    rate: u32,
    journal: Arc<Journal>,
    mut stop: watch::Receiver<bool>,
) {
    if rate == 0 || users.is_empty() {
        return;
    }
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut seq = 0u64;
    let mut rr = 0usize;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        if *stop.borrow() {
            break;
        }
        seq += 1;
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            *journal.skipped.lock() += 1;
            continue;
        };
        let user = users[(seq as usize) % users.len()].clone();
        let up = target.view.up_from(rr);
        rr = rr.wrapping_add(1);
        let Some(i) = up.first().copied() else {
            // No node is up: the emit cannot even be sent.
            let now = journal.now_ms();
            journal.emits.lock().push(EmitRecord {
                seq,
                room: room_of(&user),
                node: 0,
                sent_ms: now,
                done_ms: now,
                outcome: EmitOutcome::NoAnswer {
                    reason: "no node up".into(),
                },
            });
            continue;
        };
        let (t, j) = (target.clone(), journal.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let rec = emit_one(&t, i, &user, seq, &j).await;
            j.emits.lock().push(rec);
        });
    }
    // Let the emits in flight finish (each is bounded by EMIT_TIMEOUT).
    let _ = tokio::time::timeout(
        EMIT_TIMEOUT + Duration::from_secs(1),
        permits.acquire_many(MAX_IN_FLIGHT as u32),
    )
    .await;
}

async fn emit_one(t: &Target, i: usize, user: &str, seq: u64, journal: &Journal) -> EmitRecord {
    let (node, url) = t.url(i, "/api/emit");
    let sent_ms = journal.now_ms();
    let body = json!({ "userId": user, "event": EVENT, "data": { "seq": seq } });
    let r = t
        .http
        .post(url)
        .bearer_auth(&t.api_key)
        .json(&body)
        .timeout(EMIT_TIMEOUT)
        .send()
        .await;
    let outcome = match r {
        Err(e) => EmitOutcome::NoAnswer {
            reason: if e.is_timeout() {
                "timed out".into()
            } else {
                e.to_string()
            },
        },
        Ok(r) => match r.status().as_u16() {
            200 => match r.json::<Value>().await {
                Ok(v) => match v["offset"].as_u64() {
                    Some(offset) => EmitOutcome::Ok {
                        offset,
                        epoch: v["epoch"].as_str().unwrap_or_default().to_owned(),
                    },
                    None => EmitOutcome::NoAnswer {
                        reason: format!("200 without offset: {v}"),
                    },
                },
                Err(e) => EmitOutcome::NoAnswer {
                    reason: format!("200 with a bad body: {e}"),
                },
            },
            503 => EmitOutcome::Refused,
            status => EmitOutcome::Status { status },
        },
    };
    EmitRecord {
        seq,
        room: room_of(user),
        node,
        sent_ms,
        done_ms: journal.now_ms(),
        outcome,
    }
}

/// Posts quotes at `rate` per second until `stop` (fire and forget, counted).
pub async fn quotes(
    target: Target,
    rate: u32,
    journal: Arc<Journal>,
    mut stop: watch::Receiver<bool>,
) {
    if rate == 0 {
        return;
    }
    let permits = Arc::new(Semaphore::new(64));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        if *stop.borrow() {
            break;
        }
        n += 1;
        let Some(i) = target.view.up_from(n as usize).first().copied() else {
            continue;
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            continue;
        };
        let (t, j) = (target.clone(), journal.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let (_, url) = t.url(i, "/api/quotes");
            j.quotes.lock().sent += 1;
            let body = json!({ "symbol": QUOTE_SYMBOL, "quote": { "price": 100.0 + (n % 100) as f64 / 10.0, "n": n } });
            let r = t
                .http
                .post(url)
                .bearer_auth(&t.api_key)
                .json(&body)
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            let mut q = j.quotes.lock();
            match r {
                Ok(r) if r.status().as_u16() == 202 => q.accepted += 1,
                _ => q.failed += 1,
            }
        });
    }
}
