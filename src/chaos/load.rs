//! The load: a publisher of durable emits (`POST /api/emit {userId, event, data: {seq}}`,
//! or `batch` of them at a time to `POST /api/emit/batch`) at a set rate, round-robin over
//! the users and over the nodes that are up, recording every answer; and a volatile quote
//! stream (`POST /api/quotes`) alongside.

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

/// Emits at `rate` per second until `stop`, `batch` per request; waits (bounded) for the
/// requests in flight.
pub async fn publish(
    target: Target,
    users: Vec<String>,
    (rate, batch): (u32, usize),
    journal: Arc<Journal>,
    mut stop: watch::Receiver<bool>,
) {
    if rate == 0 || users.is_empty() {
        return;
    }
    let batch = batch.max(1);
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut seq = 0u64;
    let mut rr = 0usize;
    let mut pending: Vec<(u64, String)> = Vec::with_capacity(batch);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        if *stop.borrow() {
            break;
        }
        seq += 1;
        pending.push((seq, users[(seq as usize) % users.len()].clone()));
        if pending.len() < batch {
            continue;
        }
        let emits = std::mem::take(&mut pending);
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            *journal.skipped.lock() += emits.len() as u64;
            continue;
        };
        let up = target.view.up_from(rr);
        rr = rr.wrapping_add(1);
        let Some(i) = up.first().copied() else {
            // No node is up: the emits cannot even be sent.
            let now = journal.now_ms();
            let mut j = journal.emits.lock();
            for (seq, user) in emits {
                j.push(EmitRecord {
                    seq,
                    room: room_of(&user),
                    node: 0,
                    sent_ms: now,
                    done_ms: now,
                    outcome: EmitOutcome::NoAnswer {
                        reason: "no node up".into(),
                    },
                });
            }
            continue;
        };
        let (t, j) = (target.clone(), journal.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let recs = if batch == 1 {
                let (seq, user) = &emits[0];
                vec![emit_one(&t, i, user, *seq, &j).await]
            } else {
                emit_batch(&t, i, &emits, &j).await
            };
            j.emits.lock().extend(recs);
        });
    }
    // Let the emits in flight finish (each is bounded by EMIT_TIMEOUT).
    let _ = tokio::time::timeout(
        EMIT_TIMEOUT + Duration::from_secs(1),
        permits.acquire_many(MAX_IN_FLIGHT as u32),
    )
    .await;
}

/// Why a request got no usable answer.
fn no_answer(e: &reqwest::Error) -> EmitOutcome {
    EmitOutcome::NoAnswer {
        reason: if e.is_timeout() {
            "timed out".into()
        } else {
            e.to_string()
        },
    }
}

/// The outcome of one emit's `{ offset, epoch }` answer.
fn committed(v: &Value) -> EmitOutcome {
    match v["offset"].as_u64() {
        Some(offset) => EmitOutcome::Ok {
            offset,
            epoch: v["epoch"].as_str().unwrap_or_default().to_owned(),
        },
        None => EmitOutcome::NoAnswer {
            reason: format!("200 without offset: {v}"),
        },
    }
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
        Err(e) => no_answer(&e),
        Ok(r) => match r.status().as_u16() {
            200 => match r.json::<Value>().await {
                Ok(v) => committed(&v),
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

/// Posts `emits` as one `POST /api/emit/batch`; one record per emit. 200 and 207 answer per
/// event (an event's `NO_QUORUM` is a refusal, any other error a status); any other status
/// applies to every event of the batch.
async fn emit_batch(
    t: &Target,
    i: usize,
    emits: &[(u64, String)],
    journal: &Journal,
) -> Vec<EmitRecord> {
    let (node, url) = t.url(i, "/api/emit/batch");
    let sent_ms = journal.now_ms();
    let body: Vec<Value> = emits
        .iter()
        .map(|(seq, user)| json!({ "userId": user, "event": EVENT, "data": { "seq": seq } }))
        .collect();
    let r = t
        .http
        .post(url)
        .bearer_auth(&t.api_key)
        .json(&json!({ "emits": body }))
        .timeout(EMIT_TIMEOUT)
        .send()
        .await;
    let outcomes: Vec<EmitOutcome> = match r {
        Err(e) => emits.iter().map(|_| no_answer(&e)).collect(),
        Ok(r) => match r.status().as_u16() {
            status @ (200 | 207) => match r.json::<Value>().await {
                Ok(v) => {
                    let results = v["results"].as_array().cloned().unwrap_or_default();
                    (0..emits.len())
                        .map(|k| match results.get(k) {
                            Some(r) if r.get("error").is_some() => {
                                if r["error"]["code"] == "NO_QUORUM" {
                                    EmitOutcome::Refused
                                } else {
                                    EmitOutcome::Status { status }
                                }
                            }
                            Some(r) => committed(r),
                            None => EmitOutcome::NoAnswer {
                                reason: format!("{status} without a result for this event"),
                            },
                        })
                        .collect()
                }
                Err(e) => emits
                    .iter()
                    .map(|_| EmitOutcome::NoAnswer {
                        reason: format!("{status} with a bad body: {e}"),
                    })
                    .collect(),
            },
            503 => emits.iter().map(|_| EmitOutcome::Refused).collect(),
            status => emits
                .iter()
                .map(|_| EmitOutcome::Status { status })
                .collect(),
        },
    };
    let done_ms = journal.now_ms();
    emits
        .iter()
        .zip(outcomes)
        .map(|((seq, user), outcome)| EmitRecord {
            seq: *seq,
            room: room_of(user),
            node,
            sent_ms,
            done_ms,
            outcome,
        })
        .collect()
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
