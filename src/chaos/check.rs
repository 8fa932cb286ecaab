//! The checker: from the journal and every node's final histories, decides whether any
//! durable event was lost, duplicated after dedup, delivered out of order or written twice
//! under one offset (split brain), and measures latencies and recovery times.
//!
//! Client model: a client dedups by offset; events received before its subscription is
//! confirmed (the replay, and live events that raced it) are held and applied in offset
//! order; after the confirmation they are applied as they arrive. An *ordering break* is a
//! new offset applied after a higher one. A *gap* is an offset between the client's start
//! and the room's final offset that it never received.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use super::record::{ClientLog, Delivery, EmitOutcome, EmitRecord, FaultRecord};

/// Examples kept per kind of failure.
const EXAMPLES: usize = 10;

/// One node's history of one room: `(offset, event, seq)`.
#[derive(Debug, Clone)]
pub struct NodeHistory {
    pub node: u64,
    pub room: String,
    pub epoch: String,
    pub events: Vec<(u64, String, Option<u64>)>,
}

/// Percentiles of a sample, in milliseconds.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub count: usize,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    pub fn of(mut v: Vec<f64>) -> Percentiles {
        if v.is_empty() {
            return Percentiles::default();
        }
        v.sort_by(f64::total_cmp);
        let at = |p: f64| {
            let i = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
            v[i]
        };
        Percentiles {
            count: v.len(),
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
            max: v[v.len() - 1],
        }
    }
}

/// Emits by answer.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EmitCounts {
    pub total: u64,
    pub ok: u64,
    /// 503 NO_QUORUM: refused, counted, not lost.
    pub refused503: u64,
    pub other_status: u64,
    /// No answer (outcome unknown): never counted as lost.
    pub no_answer: u64,
    /// Committed although not answered 200 (a 503/timeout whose entry committed later).
    pub committed_unacked: u64,
}

/// Time from one fault to the next emit answered 200.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Recovery {
    pub fault: usize,
    pub kind: String,
    pub ms: Option<f64>,
}

/// One second of the run.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Bucket {
    pub t_s: u64,
    pub ok: u64,
    pub refused: u64,
    pub failed: u64,
    pub delivery_p99_ms: f64,
    pub delivery_max_ms: f64,
}

/// The checker's findings.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Findings {
    pub emits: EmitCounts,
    pub deliveries: u64,
    pub lost: u64,
    pub lost_from_history: u64,
    pub duplicates_before_dedup: u64,
    pub duplicates_after_dedup: u64,
    pub order_breaks: u64,
    pub gaps_unfilled: u64,
    pub conflicts: u64,
    pub epochs: Vec<String>,
    pub histories_agree: bool,
    /// Final offset per room per node.
    pub last_offsets: BTreeMap<String, BTreeMap<u64, u64>>,
    pub emit_latency_ms: Percentiles,
    pub delivery_latency_ms: Percentiles,
    pub recovery: Vec<Recovery>,
    /// Recovery percentiles per fault kind.
    pub recovery_by_kind: BTreeMap<String, Percentiles>,
    pub timeline: Vec<Bucket>,
    pub examples: Vec<String>,
}

impl Findings {
    /// Why the run failed (empty = passed).
    pub fn failures(&self) -> Vec<String> {
        let mut f = Vec::new();
        let mut add = |n: u64, what: &str| {
            if n > 0 {
                f.push(format!("{n} {what}"));
            }
        };
        add(self.lost, "acknowledged emits lost by a client");
        add(
            self.lost_from_history,
            "acknowledged emits missing from a node's history",
        );
        add(
            self.duplicates_after_dedup,
            "events committed under two offsets (duplicate after dedup)",
        );
        add(self.order_breaks, "ordering breaks");
        add(
            self.gaps_unfilled,
            "offsets never received (gaps left unfilled)",
        );
        add(
            self.conflicts,
            "offsets carrying two different events (split brain)",
        );
        if self.epochs.len() > 1 {
            f.push(format!("{} different epochs seen", self.epochs.len()));
        }
        f
    }
}

fn example(f: &mut Findings, s: String) {
    if f.examples.len() < EXAMPLES * 4 {
        f.examples.push(s);
    }
}

/// Checks a run.
pub fn check(
    emits: &[EmitRecord],
    clients: &[ClientLog],
    histories: &[NodeHistory],
    faults: &[FaultRecord],
) -> Findings {
    let mut f = Findings::default();
    let mut epochs: HashSet<String> = HashSet::new();
    // (room, offset) -> (seq, where) as first seen; mismatches are conflicts.
    let mut canon: HashMap<(String, u64), (Option<u64>, String)> = HashMap::new();
    // (room, seq) -> offsets it was seen at.
    let mut seq_offsets: HashMap<(String, u64), HashSet<u64>> = HashMap::new();
    let mut note = |f: &mut Findings, room: &str, offset: u64, seq: Option<u64>, src: String| {
        if let Some(s) = seq {
            seq_offsets
                .entry((room.to_owned(), s))
                .or_default()
                .insert(offset);
        }
        match canon.get(&(room.to_owned(), offset)) {
            None => {
                canon.insert((room.to_owned(), offset), (seq, src));
            }
            Some((s0, src0)) if *s0 != seq => {
                f.conflicts += 1;
                example(
                    f,
                    format!("conflict at {room}#{offset}: seq {s0:?} ({src0}) vs {seq:?} ({src})"),
                );
            }
            Some(_) => {}
        }
    };

    // Emits.
    let mut acked: HashMap<String, BTreeMap<u64, u64>> = HashMap::new();
    let mut emit_sent: HashMap<u64, f64> = HashMap::new();
    let mut emit_lat = Vec::new();
    for e in emits {
        f.emits.total += 1;
        emit_sent.insert(e.seq, e.sent_ms);
        match &e.outcome {
            EmitOutcome::Ok { offset, epoch } => {
                f.emits.ok += 1;
                epochs.insert(epoch.clone());
                acked
                    .entry(e.room.clone())
                    .or_default()
                    .insert(*offset, e.seq);
                emit_lat.push(e.done_ms - e.sent_ms);
                note(
                    &mut f,
                    &e.room,
                    *offset,
                    Some(e.seq),
                    format!("ack via node {}", e.node),
                );
            }
            EmitOutcome::Refused => f.emits.refused503 += 1,
            EmitOutcome::Status { .. } => f.emits.other_status += 1,
            EmitOutcome::NoAnswer { .. } => f.emits.no_answer += 1,
        }
    }
    f.emit_latency_ms = Percentiles::of(emit_lat);
    let acked_seqs: HashSet<u64> = acked.values().flat_map(|m| m.values().copied()).collect();

    // Histories.
    let mut final_last: HashMap<String, u64> = HashMap::new();
    let mut best: HashMap<String, HashSet<u64>> = HashMap::new();
    let mut unacked: HashSet<u64> = HashSet::new();
    for h in histories {
        epochs.insert(h.epoch.clone());
        let last = h.events.last().map_or(0, |e| e.0);
        f.last_offsets
            .entry(h.room.clone())
            .or_default()
            .insert(h.node, last);
        let fl = final_last.entry(h.room.clone()).or_default();
        *fl = (*fl).max(last);
        for (k, (offset, _event, seq)) in h.events.iter().enumerate() {
            if *offset != k as u64 + 1 {
                f.gaps_unfilled += 1;
                example(
                    &mut f,
                    format!(
                        "node {} history of {} has offset {offset} at position {}",
                        h.node,
                        h.room,
                        k + 1
                    ),
                );
                break;
            }
            note(
                &mut f,
                &h.room,
                *offset,
                *seq,
                format!("history of node {}", h.node),
            );
            if let Some(s) = seq {
                if !acked_seqs.contains(s) {
                    unacked.insert(*s);
                }
            }
        }
        let offs: HashSet<u64> = h.events.iter().map(|e| e.0).collect();
        let b = best.entry(h.room.clone()).or_default();
        if offs.len() > b.len() {
            *b = offs;
        }
    }
    f.emits.committed_unacked = unacked.len() as u64;
    f.histories_agree = f.last_offsets.values().all(|m| {
        let mut v = m.values();
        let first = v.next();
        v.all(|x| Some(x) == first)
    });
    for (room, m) in &acked {
        let have = best.get(room);
        for (offset, seq) in m {
            if !have.is_some_and(|h| h.contains(offset)) {
                f.lost_from_history += 1;
                example(
                    &mut f,
                    format!("ack {room}#{offset} (seq {seq}) is in no node's history"),
                );
            }
        }
        let fl = final_last.entry(room.clone()).or_default();
        *fl = (*fl).max(m.keys().next_back().copied().unwrap_or(0));
    }

    // Clients.
    let mut lat_points: Vec<(f64, f64)> = Vec::new();
    for c in clients {
        f.deliveries += c.deliveries.len() as u64;
        let start = c.start_offset.unwrap_or(0);
        let mut seen: HashSet<u64> = HashSet::new();
        let mut max_applied = start;
        for d in applied_order(&c.deliveries) {
            if !d.epoch.is_empty() {
                epochs.insert(d.epoch.clone());
            }
            if d.offset <= start {
                continue;
            }
            if !seen.insert(d.offset) {
                f.duplicates_before_dedup += 1;
                continue;
            }
            note(
                &mut f,
                &c.room,
                d.offset,
                d.seq,
                format!("client {} via node {}", c.id, d.node),
            );
            if d.offset < max_applied {
                f.order_breaks += 1;
                example(
                    &mut f,
                    format!(
                        "client {}: offset {} applied after {max_applied}",
                        c.id, d.offset
                    ),
                );
            }
            max_applied = max_applied.max(d.offset);
            if let Some(sent) = d.seq.and_then(|s| emit_sent.get(&s)) {
                lat_points.push((d.at_ms, d.at_ms - sent));
            }
        }
        if c.start_offset.is_none() {
            f.examples.push(format!("client {} never subscribed", c.id));
        }
        if let Some(m) = acked.get(&c.room) {
            for (offset, seq) in m.range(start + 1..) {
                if !seen.contains(offset) {
                    f.lost += 1;
                    example(
                        &mut f,
                        format!("client {} never got {}#{offset} (seq {seq})", c.id, c.room),
                    );
                }
            }
        }
        let last = final_last.get(&c.room).copied().unwrap_or(0);
        let missing = (start + 1..=last).filter(|o| !seen.contains(o)).count() as u64;
        f.gaps_unfilled += missing;
    }
    for ((room, seq), offsets) in seq_offsets.iter().filter(|(_, o)| o.len() > 1) {
        f.duplicates_after_dedup += offsets.len() as u64 - 1;
        let mut o: Vec<&u64> = offsets.iter().collect();
        o.sort();
        let how = emits
            .iter()
            .find(|e| e.seq == *seq)
            .map_or(String::new(), |e| {
                format!(
                    " (sent to node {} at {:.0} ms, answered {:?} after {:.0} ms)",
                    e.node,
                    e.sent_ms,
                    e.outcome,
                    e.done_ms - e.sent_ms
                )
            });
        example(
            &mut f,
            format!("seq {seq} committed in {room} at offsets {o:?}{how}"),
        );
    }
    let mut ep: Vec<String> = epochs.into_iter().filter(|e| !e.is_empty()).collect();
    ep.sort();
    f.epochs = ep;
    f.delivery_latency_ms = Percentiles::of(lat_points.iter().map(|p| p.1).collect());
    f.timeline = timeline(emits, &lat_points);
    recoveries(&mut f, emits, faults);
    f
}

/// The client model's application order (see the module docs).
fn applied_order(ds: &[Delivery]) -> Vec<&Delivery> {
    let mut out: Vec<&Delivery> = Vec::with_capacity(ds.len());
    let mut i = 0;
    while i < ds.len() {
        let conn = ds[i].conn;
        let mut pre: Vec<&Delivery> = Vec::new();
        let mut post: Vec<&Delivery> = Vec::new();
        while i < ds.len() && ds[i].conn == conn {
            if ds[i].pre_confirm {
                pre.push(&ds[i]);
            } else {
                post.push(&ds[i]);
            }
            i += 1;
        }
        pre.sort_by_key(|d| d.offset);
        out.extend(pre);
        out.extend(post);
    }
    out
}

fn timeline(emits: &[EmitRecord], lat: &[(f64, f64)]) -> Vec<Bucket> {
    let end = emits
        .iter()
        .map(|e| e.done_ms)
        .chain(lat.iter().map(|p| p.0))
        .fold(0.0, f64::max);
    let n = (end / 1000.0).ceil() as usize + 1;
    let mut b: Vec<Bucket> = (0..n)
        .map(|t| Bucket {
            t_s: t as u64,
            ..Bucket::default()
        })
        .collect();
    for e in emits {
        let k = ((e.done_ms / 1000.0) as usize).min(n - 1);
        match e.outcome {
            EmitOutcome::Ok { .. } => b[k].ok += 1,
            EmitOutcome::Refused => b[k].refused += 1,
            _ => b[k].failed += 1,
        }
    }
    let mut per: Vec<Vec<f64>> = vec![Vec::new(); n];
    for (at, l) in lat {
        per[((at / 1000.0) as usize).min(n - 1)].push(*l);
    }
    for (k, v) in per.into_iter().enumerate() {
        let p = Percentiles::of(v);
        b[k].delivery_p99_ms = p.p99;
        b[k].delivery_max_ms = p.max;
    }
    b
}

fn recoveries(f: &mut Findings, emits: &[EmitRecord], faults: &[FaultRecord]) {
    let mut by_kind: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for (k, fault) in faults.iter().enumerate() {
        let ms = emits
            .iter()
            .filter(|e| e.sent_ms >= fault.start_ms && matches!(e.outcome, EmitOutcome::Ok { .. }))
            .map(|e| e.done_ms - fault.start_ms)
            .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.min(x))));
        if let Some(ms) = ms {
            by_kind
                .entry(fault.kind.name().to_owned())
                .or_default()
                .push(ms);
        }
        f.recovery.push(Recovery {
            fault: k + 1,
            kind: fault.kind.name().to_owned(),
            ms,
        });
    }
    f.recovery_by_kind = by_kind
        .into_iter()
        .map(|(k, v)| (k, Percentiles::of(v)))
        .collect();
}

#[cfg(test)]
#[path = "check_tests.rs"]
mod tests;
