//! What a run records as it goes: every emit and its answer, every client's deliveries and
//! reconnects, every fault, all timed in milliseconds since the start of the load.

use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use serde::Serialize;

use super::plan::FaultKind;

/// How an emit was answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum EmitOutcome {
    /// 200: committed at this room offset.
    Ok { offset: u64, epoch: String },
    /// 503 NO_QUORUM: refused, nothing written (counted, not lost).
    Refused,
    /// Another HTTP status.
    Status { status: u16 },
    /// No answer (connection refused, reset or timed out): outcome unknown.
    NoAnswer { reason: String },
}

/// One durable emit of the publisher.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EmitRecord {
    /// The publisher's sequence number, carried as `data.seq`.
    pub seq: u64,
    pub room: String,
    /// The node it was sent to.
    pub node: u64,
    pub sent_ms: f64,
    pub done_ms: f64,
    pub outcome: EmitOutcome,
}

/// One durable event as a client received it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub offset: u64,
    pub epoch: String,
    /// `data.seq`, when the payload carried one.
    pub seq: Option<u64>,
    pub at_ms: f64,
    /// The node the client was connected to.
    pub node: u64,
    /// Which of the client's connections (1 = the first) received it.
    pub conn: u32,
    /// Received before that connection's subscription was confirmed (replay or early live
    /// events, which a client holds and applies in offset order).
    pub pre_confirm: bool,
}

/// Everything one client saw.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientLog {
    pub id: usize,
    pub user: String,
    pub room: String,
    /// The room offset at the client's first subscription: it must get every event after it.
    pub start_offset: Option<u64>,
    pub start_epoch: Option<String>,
    #[serde(skip)]
    pub deliveries: Vec<Delivery>,
    /// Successful (re)connections, the first included.
    pub connects: u32,
    /// Failed connection attempts.
    pub connect_failures: u32,
    /// Resubscriptions answered `recovered: false` (the history no longer had the events).
    pub not_recovered: u32,
    /// Volatile `quote:update` events received.
    pub quotes: u64,
    /// Highest offset such that every offset from the start up to it was received.
    pub contiguous: u64,
    /// Nodes it was connected to, in order.
    pub nodes: Vec<u64>,
    /// The last few protocol errors (capped).
    pub errors: Vec<String>,
}

impl ClientLog {
    /// Notes a protocol or connection error (keeps the last 20).
    pub fn error(&mut self, e: impl Into<String>) {
        if self.errors.len() >= 20 {
            self.errors.remove(0);
        }
        self.errors.push(e.into());
    }
}

/// One fault as injected.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultRecord {
    pub kind: FaultKind,
    /// The node(s) it hit.
    pub nodes: Vec<u64>,
    /// What was done, for people.
    pub detail: String,
    pub start_ms: f64,
    /// When it was undone (restart, SIGCONT, heal).
    pub end_ms: f64,
    /// Leader before the fault, as the nodes reported it.
    pub leader_before: Option<u64>,
}

/// Counters of the volatile quote stream.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QuoteStats {
    pub sent: u64,
    pub accepted: u64,
    pub failed: u64,
}

/// The shared journal of a run.
#[derive(Debug)]
pub struct Journal {
    start: Instant,
    pub emits: Mutex<Vec<EmitRecord>>,
    pub clients: Vec<Arc<Mutex<ClientLog>>>,
    pub faults: Mutex<Vec<FaultRecord>>,
    pub quotes: Mutex<QuoteStats>,
    /// Emits the publisher skipped because too many were in flight.
    pub skipped: Mutex<u64>,
}

impl Journal {
    pub fn new(clients: Vec<ClientLog>) -> Journal {
        Journal {
            start: Instant::now(),
            emits: Mutex::new(Vec::new()),
            clients: clients
                .into_iter()
                .map(|c| Arc::new(Mutex::new(c)))
                .collect(),
            faults: Mutex::new(Vec::new()),
            quotes: Mutex::new(QuoteStats::default()),
            skipped: Mutex::new(0),
        }
    }

    /// Milliseconds since the journal started.
    pub fn now_ms(&self) -> f64 {
        self.start.elapsed().as_secs_f64() * 1000.0
    }
}
