//! Cross-node fan-out: one trait, chosen at start-up, behind which rooms' offsets and
//! histories, sessions and socket memberships live.
//!
//! Backends: [`local::LocalFanout`] (in-memory, one node), the Raft backend (replicated with
//! `raftcast-raft`), and Redis. Every backend hands each published event, in its global
//! order, to a [`Sink`] on every node, which delivers it to that node's sockets.

pub mod local;
pub mod payload;
pub mod raft;
mod raft_applied;
pub mod redis;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;

pub use payload::Payload;

/// Why a fan-out operation failed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum FanoutError {
    /// This node cannot reach a majority (Raft) or its store (Redis): nothing was written.
    #[error("no quorum: {0}")]
    NoQuorum(String),
    /// The request is invalid for the backend.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Anything else; the message says what.
    #[error("internal error: {0}")]
    Internal(String),
}

/// A committed (durable) or accepted (volatile) publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Published {
    pub room: String,
    pub offset: u64,
    pub epoch: String,
    #[serde(skip)]
    pub ts_ms: u64,
}

/// One event of [`Fanout::publish_many`].
#[derive(Debug, Clone)]
pub struct PublishRequest {
    pub room: String,
    pub event: String,
    pub payload: Payload,
    pub durable: bool,
    /// A fixed proposal id (from an idempotency key, [`raftcast_raft::idempotent_id`]):
    /// a backend that [`Fanout::dedups_retries`] answers a request whose id it committed
    /// recently with that first result. None: a fresh id.
    pub id: Option<u64>,
}

/// An event as kept in a room's history.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// The room offset, from 1 without gaps.
    pub offset: u64,
    /// The global order of the event across rooms (the log index).
    pub index: u64,
    pub event: String,
    pub payload: Payload,
    pub ts_ms: u64,
}

/// A room's retained history after some offset.
#[derive(Debug, Clone, PartialEq)]
pub struct History {
    pub epoch: String,
    /// The room's current offset.
    pub last_offset: u64,
    /// The oldest offset still retained (None when nothing is).
    pub first_retained: Option<u64>,
    pub events: Vec<StoredEvent>,
}

/// A session as the backend keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub user_id: String,
    pub expires_at_ms: u64,
}

/// A change of a local socket's membership, mirrored by the backend for presence, stats and
/// recovery. Applied in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Membership {
    Open {
        sid: String,
        pid: String,
        user_id: String,
        session_id: Option<String>,
        rooms: Vec<String>,
    },
    Join {
        sid: String,
        user_id: String,
        rooms: Vec<String>,
    },
    Leave {
        sid: String,
        user_id: String,
        rooms: Vec<String>,
    },
    /// The socket is gone; with `recoverable`, keep it for the recovery window. `user_id` is
    /// the socket's user when known (the Raft backend then finds its record with one read).
    Close {
        sid: String,
        user_id: Option<String>,
        recoverable: bool,
    },
}

/// The state of a socket that can be recovered (connection state recovery).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredSocket {
    pub sid: String,
    pub user_id: String,
    pub session_id: Option<String>,
    pub rooms: Vec<String>,
}

/// Where a user is connected, cluster-wide.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Presence {
    /// `(node id, socket id)` pairs.
    pub sockets: Vec<(u64, String)>,
}

/// Cluster-wide counts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterCounts {
    pub connections_per_node: BTreeMap<u64, u64>,
    pub unique_users: u64,
    pub room_count: u64,
}

/// What the backend says of its own health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendHealth {
    /// False when durable publishes cannot succeed now (no quorum, Redis down).
    pub healthy: bool,
    /// True when serving but with a problem an operator should see (e.g. a peer down).
    pub degraded: bool,
    /// Whether this node is up to date enough to serve (readiness).
    pub ready: bool,
    /// Backend-specific detail for `/health/websocket` (`raft` or `redis` section).
    pub detail: serde_json::Value,
}

/// An event to deliver to this node's sockets, in the backend's global order.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub room: String,
    pub event: String,
    pub payload: Payload,
    pub durable: bool,
    pub offset: u64,
    pub epoch: String,
    pub ts_ms: u64,
    pub index: u64,
}

/// Receives what the backend applies, in order, on every node.
pub trait Sink: Send + Sync + 'static {
    /// An event to deliver to local members of its room.
    fn deliver(&self, delivery: &Delivery);
    /// A session was revoked: disconnect its local sockets.
    fn session_revoked(&self, session_id: &str, user_id: &str);
}

/// [`Fanout::publish_many`] one event at a time, in order: the default, and what a backend
/// that overrides it falls back to.
pub(crate) async fn publish_one_by_one<F: Fanout + ?Sized>(
    f: &F,
    items: Vec<PublishRequest>,
) -> Vec<Result<Published, FanoutError>> {
    let mut out = Vec::with_capacity(items.len());
    for it in items {
        out.push(f.publish(&it.room, &it.event, it.payload, it.durable).await);
    }
    out
}

/// A fan-out backend.
#[async_trait]
pub trait Fanout: Send + Sync + 'static {
    /// `raft`, `redis` or `local`.
    fn name(&self) -> &'static str;

    /// This node's id.
    fn node_id(&self) -> u64;

    /// The epoch naming the history offsets belong to.
    fn epoch(&self) -> String;

    /// Connects the node's delivery sink; called once at start-up, before any publish.
    fn attach(&self, sink: Arc<dyn Sink>);

    /// Whether [`PublishRequest::id`] is honoured: a publish whose id was committed
    /// recently is answered with the first result, not published again. Only the Raft
    /// backend keeps those results (replicated, for `raftcast_raft`'s de-duplication window).
    fn dedups_retries(&self) -> bool {
        false
    }

    /// Publishes to a room. Durable events get the room's next offset and enter its history;
    /// the call returns once committed. Volatile ones carry the current offset.
    async fn publish(
        &self,
        room: &str,
        event: &str,
        payload: Payload,
        durable: bool,
    ) -> Result<Published, FanoutError>;

    /// Publishes several events in the given order: events to one room get increasing
    /// offsets in that order. One answer per event, in the same order; an event that fails
    /// does not stop the others. Backends that can commit many at once override this (the
    /// Raft backend puts them in as few log entries as its batch limits allow).
    async fn publish_many(
        &self,
        items: Vec<PublishRequest>,
    ) -> Vec<Result<Published, FanoutError>> {
        publish_one_by_one(self, items).await
    }

    async fn create_session(
        &self,
        session_id: &str,
        user_id: &str,
        expires_at_ms: u64,
    ) -> Result<(), FanoutError>;

    /// Revokes a session; returns its user when it existed.
    async fn revoke_session(&self, session_id: &str) -> Result<Option<String>, FanoutError>;

    /// Looks a session up (expired sessions are absent).
    async fn session(&self, session_id: &str) -> Result<Option<SessionInfo>, FanoutError>;

    /// Whether [`Fanout::prepare`] must run before a replay (remote stores). When false the
    /// gateway skips it and handles subscriptions without awaiting anything.
    fn needs_prepare(&self) -> bool {
        false
    }

    /// Makes the histories of `rooms` available to the sync reads below (a remote store
    /// loads them into a local mirror that its deliveries then keep current).
    async fn prepare(&self, _rooms: &[String]) -> Result<(), FanoutError> {
        Ok(())
    }

    /// A room's history after `after` (sync: called while the room lock is held, so that
    /// the replay and the live deliveries meet without a gap or a duplicate).
    fn history(&self, room: &str, after: u64) -> Result<History, FanoutError>;

    /// Durable events in `rooms` with a global index above `index`, in index order.
    fn events_after_index(
        &self,
        rooms: &[String],
        index: u64,
    ) -> Result<Vec<(String, StoredEvent)>, FanoutError>;

    /// Mirrors a local membership change (queued; applied in order).
    fn membership(&self, change: Membership);

    /// Takes the recoverable state of a socket that went away, if still within the window.
    /// The socket comes back with its previous id ([`RecoveredSocket::sid`]); the caller
    /// then reports it with [`Membership::Open`].
    async fn recover(&self, pid: &str) -> Result<Option<RecoveredSocket>, FanoutError>;

    async fn presence(&self, user_id: &str) -> Result<Presence, FanoutError>;

    async fn counts(&self) -> Result<ClusterCounts, FanoutError>;

    fn health(&self) -> BackendHealth;

    /// Waits (bounded) until this node can serve clients: joined, leader known, caught up.
    async fn wait_ready(&self, _timeout: std::time::Duration) -> bool {
        true
    }

    /// Cluster view for `/cluster/status` (None when the backend has no cluster).
    fn cluster_status(&self) -> Option<serde_json::Value> {
        None
    }

    /// The peer transport's fault-injection switch (chaos tests), when the backend has one
    /// and the node runs with `--fault-injection`.
    fn fault(&self) -> Option<raftcast_raft::FaultSwitch> {
        None
    }

    /// Resolves, with the reason, if the backend stops working for good by itself (Raft: its
    /// core quit on a storage error such as a full disk). The node then shuts down, so its
    /// clients reconnect to a node that still works. Never resolves by default.
    async fn failed(&self) -> String {
        std::future::pending().await
    }

    /// Stops background work, hands leadership on where it can, flushes storage.
    async fn shutdown(&self);
}

/// A shared backend.
pub type SharedFanout = Arc<dyn Fanout>;

/// Publishes the backend's health detail as Prometheus gauges (numeric fields of the
/// `raft` section: term, leader, commit and applied indexes, lag, fast elections started).
pub fn export_metrics(h: &BackendHealth) {
    if let serde_json::Value::Object(m) = &h.detail {
        for (k, v) in m {
            if let Some(x) = v.as_f64() {
                let name = match k.as_str() {
                    "term" => "raftcast_raft_term",
                    "leader" => "raftcast_raft_leader",
                    "commitIndex" => "raftcast_raft_commit_index",
                    "appliedIndex" => "raftcast_raft_applied_index",
                    "lag" => "raftcast_raft_apply_lag",
                    "fastElections" => "raftcast_raft_fast_elections",
                    _ => continue,
                };
                metrics::gauge!(name).set(x);
            }
        }
        if let Some(b) = m.get("healthy").and_then(serde_json::Value::as_bool) {
            metrics::gauge!("raftcast_redis_up").set(if b { 1.0 } else { 0.0 });
        }
    }
}
