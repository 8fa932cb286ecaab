//! The Raft backend (the default): sessions, memberships, room offsets and histories are
//! replicated by `raftcast-raft`; every node delivers what it applies, in log order.
//!
//! Global order: an event's position is `(log index, position in the entry)`, packed into
//! one number `index << 16 | pos` that serves as the broadcast sequence and as the offset
//! Socket.IO's connection state recovery carries.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use raftcast_raft::{Command, ProposeError, RaftConfig, RaftNode, Response, Role};
use serde_json::json;
use tokio::sync::mpsc;

use super::local::Retention;
use super::raft_applied::Deliverer;
use super::{
    BackendHealth, ClusterCounts, Fanout, FanoutError, History, Membership, Payload, Presence,
    PublishRequest, Published, RecoveredSocket, SessionInfo, SharedFanout, Sink, StoredEvent,
};
use crate::config::Config;

/// Why the Raft backend could not start.
#[derive(Debug, thiserror::Error)]
pub enum RaftStartError {
    #[error("peer address {addr:?}: {reason}")]
    PeerAddr { addr: String, reason: String },
    #[error("cluster secret: {0}")]
    Secret(#[from] crate::secrets::SecretError),
    #[error("raft: {0}")]
    Start(String),
}

/// Packs `(log index, position)` into one ordered number.
pub fn seq(index: u64, pos: u32) -> u64 {
    (index << 16) | u64::from(pos.min(0xffff))
}

fn unseq(seq: u64) -> (u64, u32) {
    (seq >> 16, (seq & 0xffff) as u32)
}

fn propose_err(e: ProposeError) -> FanoutError {
    match e {
        ProposeError::NoQuorum(m) => FanoutError::NoQuorum(m),
        ProposeError::Rejected(m) => FanoutError::Invalid(m),
        ProposeError::ShuttingDown => FanoutError::NoQuorum("this node is shutting down".into()),
        ProposeError::Fatal(m) => FanoutError::Internal(m),
    }
}

/// A publish's answer from the state machine, with the log index it was applied at.
fn published(answer: Result<Response, ProposeError>) -> Result<(Published, u64), FanoutError> {
    match answer.map_err(propose_err)? {
        Response::Published {
            room,
            offset,
            epoch,
            ts_ms,
            index,
            ..
        } => Ok((
            Published {
                room,
                offset,
                epoch,
                ts_ms,
            },
            index,
        )),
        other => Err(FanoutError::Internal(format!(
            "unexpected answer {other:?}"
        ))),
    }
}

/// The Raft backend.
pub struct RaftFanout {
    node: RaftNode,
    node_id: u64,
    retention: Retention,
    membership_tx: mpsc::UnboundedSender<Membership>,
    /// Delivers what the state machine applies (called by it) and tracks how far.
    out: Arc<Deliverer>,
}

/// Starts the node's Raft group member and returns it as the fan-out backend.
pub async fn start(
    config: &mut Config,
    retention: Retention,
) -> Result<SharedFanout, RaftStartError> {
    let secret = crate::secrets::ensure(
        config.cluster_secret.as_ref().map(|s| s.expose()),
        &config.data_dir,
        "cluster-secret",
        "cluster secret",
    )?;
    let peer_addr = config.peer_listen_addr();
    let peer_listen = tokio::net::lookup_host(&peer_addr)
        .await
        .map_err(|e| RaftStartError::PeerAddr {
            addr: peer_addr.clone(),
            reason: e.to_string(),
        })?
        .next()
        .ok_or_else(|| RaftStartError::PeerAddr {
            addr: peer_addr.clone(),
            reason: "resolves to nothing".into(),
        })?;
    let et = u64::try_from(config.election_timeout.as_millis())
        .unwrap_or(300)
        .max(50);
    let cfg = RaftConfig {
        node_id: config.node_id,
        data_dir: config.data_dir.clone(),
        peer_listen,
        peers: config.peers.clone(),
        join: config.join.clone(),
        public_addr: config.advertise_addr.clone(),
        cluster_secret: secret,
        election_timeout_ms: (et, et * 2),
        propose_timeout: config.propose_timeout,
        node_dead_after: config.node_dead_after,
        recovery_window: retention.recovery_window,
        fault_injection: config.fault_injection,
        snapshot_every: raftcast_raft::SNAPSHOT_EVERY,
        protocol: raftcast_raft::PEER_PROTOCOL,
        store_cache_bytes: config.store_cache_mb.saturating_mul(1 << 20),
    };
    let out = Arc::new(Deliverer::default());
    let node = RaftNode::start_with_handler(cfg, out.clone())
        .await
        .map_err(|e| RaftStartError::Start(e.to_string()))?;
    tracing::info!(node_id = config.node_id, peer = %peer_listen, peers = config.peers.len(), store_cache_mb = config.store_cache_mb, "raft node started");
    let (tx, rx) = mpsc::unbounded_channel();
    let f = Arc::new(RaftFanout {
        node_id: config.node_id,
        node,
        retention,
        membership_tx: tx,
        out,
    });
    tokio::spawn(membership_pump(f.clone(), rx));
    Ok(f)
}

impl RaftFanout {
    fn reader(&self) -> raftcast_raft::StateReader {
        self.node.state()
    }

    /// The command that publishes one event with this node's retention settings.
    fn publish_command(
        &self,
        room: String,
        event: String,
        payload: Payload,
        durable: bool,
    ) -> Command {
        Command::Publish {
            room,
            event,
            payload: payload.to_bytes(),
            durable,
            history_max: u32::try_from(self.retention.history_size).unwrap_or(u32::MAX),
            history_ttl_ms: Self::ms(self.retention.history_ttl),
        }
    }

    fn ms(d: Duration) -> u64 {
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
    }

    fn to_stored(e: raftcast_raft::HistoryEvent) -> StoredEvent {
        StoredEvent {
            offset: e.offset,
            index: seq(e.index, e.pos),
            payload: Payload::from_bytes(&e.payload).unwrap_or_else(|_| Payload::json("null")),
            event: e.event,
            ts_ms: e.ts_ms,
        }
    }
}

fn sid_of(m: &Membership) -> &str {
    match m {
        Membership::Open { sid, .. }
        | Membership::Join { sid, .. }
        | Membership::Leave { sid, .. }
        | Membership::Close { sid, .. } => sid,
    }
}

/// Proposes membership changes in order per socket: each wave holds at most one change per
/// socket and is proposed concurrently (the node batches them into few log entries).
async fn membership_pump(f: Arc<RaftFanout>, mut rx: mpsc::UnboundedReceiver<Membership>) {
    let recover_ms = RaftFanout::ms(f.retention.recovery_window);
    let mut backlog: std::collections::VecDeque<Membership> = std::collections::VecDeque::new();
    loop {
        if backlog.is_empty() {
            match rx.recv().await {
                Some(m) => backlog.push_back(m),
                None => return,
            }
        }
        while backlog.len() < 4096 {
            match rx.try_recv() {
                Ok(m) => backlog.push_back(m),
                Err(_) => break,
            }
        }
        let mut wave = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut rest = std::collections::VecDeque::new();
        while let Some(m) = backlog.pop_front() {
            if seen.contains(sid_of(&m)) || wave.len() >= 1024 {
                seen.insert(sid_of(&m).to_owned());
                rest.push_back(m);
            } else {
                seen.insert(sid_of(&m).to_owned());
                wave.push(m);
            }
        }
        backlog = rest;
        let node_id = f.node_id;
        let proposals = wave.into_iter().map(|m| {
            let cmd = match m {
                Membership::Open {
                    sid,
                    pid,
                    user_id,
                    session_id,
                    rooms,
                } => Command::SocketOpen {
                    node: node_id,
                    sid,
                    pid,
                    user_id,
                    session_id,
                    rooms,
                },
                Membership::Join {
                    sid,
                    user_id,
                    rooms,
                } => Command::JoinOf {
                    sid,
                    user_id,
                    rooms,
                },
                Membership::Leave {
                    sid,
                    user_id,
                    rooms,
                } => Command::LeaveOf {
                    sid,
                    user_id,
                    rooms,
                },
                Membership::Close {
                    sid,
                    user_id,
                    recoverable,
                } => {
                    let recoverable_for_ms = if recoverable { recover_ms } else { 0 };
                    match user_id {
                        Some(user_id) => Command::SocketCloseOf {
                            sid,
                            user_id,
                            recoverable_for_ms,
                        },
                        None => Command::SocketClose {
                            sid,
                            recoverable_for_ms,
                        },
                    }
                }
            };
            let f = f.clone();
            async move { f.node.propose(cmd).await.err() }
        });
        let errors: Vec<ProposeError> = futures_util::future::join_all(proposals)
            .await
            .into_iter()
            .flatten()
            .collect();
        // Presence may be stale until the node is purged or restarted; delivery is unaffected
        // (it follows local membership). One line per wave, not one per socket: a node
        // stopping with thousands of sockets used to log thousands of warnings.
        let not_shutdown = errors
            .iter()
            .find(|e| !matches!(e, ProposeError::ShuttingDown));
        match not_shutdown {
            Some(first) => {
                tracing::warn!(count = errors.len(), first_error = %first, "membership changes not replicated")
            }
            None if !errors.is_empty() => tracing::debug!(
                count = errors.len(),
                "membership changes not replicated: shutting down"
            ),
            None => {}
        }
    }
}

#[async_trait]
impl Fanout for RaftFanout {
    fn name(&self) -> &'static str {
        "raft"
    }

    fn node_id(&self) -> u64 {
        self.node_id
    }

    fn epoch(&self) -> String {
        self.node.epoch().unwrap_or_default()
    }

    fn attach(&self, sink: Arc<dyn Sink>) {
        if !self.out.attach(sink) {
            tracing::error!("raft backend attached to a second sink; kept the first");
        }
    }

    fn dedups_retries(&self) -> bool {
        true
    }

    async fn publish(
        &self,
        room: &str,
        event: &str,
        payload: Payload,
        durable: bool,
    ) -> Result<Published, FanoutError> {
        let cmd = self.publish_command(room.to_owned(), event.to_owned(), payload, durable);
        let (published, index) = published(self.node.propose(cmd).await)?;
        self.out.wait_delivered(index, Duration::from_secs(2)).await;
        Ok(published)
    }

    async fn publish_many(
        &self,
        items: Vec<PublishRequest>,
    ) -> Vec<Result<Published, FanoutError>> {
        let cmds = items
            .into_iter()
            .map(|it| {
                let id = it.id.unwrap_or(0);
                (
                    id,
                    self.publish_command(it.room, it.event, it.payload, it.durable),
                )
            })
            .collect();
        let answers: Vec<_> = self
            .node
            .propose_many_with_ids(cmds)
            .await
            .into_iter()
            .map(published)
            .collect();
        let last = answers
            .iter()
            .filter_map(|a| a.as_ref().ok().map(|(_, index)| *index))
            .max();
        if let Some(index) = last {
            self.out.wait_delivered(index, Duration::from_secs(2)).await;
        }
        answers.into_iter().map(|a| a.map(|(p, _)| p)).collect()
    }

    async fn create_session(
        &self,
        session_id: &str,
        user_id: &str,
        expires_at_ms: u64,
    ) -> Result<(), FanoutError> {
        self.node
            .propose(Command::CreateSession {
                session_id: session_id.to_owned(),
                user_id: user_id.to_owned(),
                expires_at_ms,
            })
            .await
            .map_err(propose_err)?;
        Ok(())
    }

    async fn revoke_session(&self, session_id: &str) -> Result<Option<String>, FanoutError> {
        let user = self.reader().session(session_id).map(|s| s.user_id);
        self.node
            .propose(Command::RevokeSession {
                session_id: session_id.to_owned(),
            })
            .await
            .map_err(propose_err)?;
        Ok(user)
    }

    async fn session(&self, session_id: &str) -> Result<Option<SessionInfo>, FanoutError> {
        // A session created through another node may not be applied here yet: give this
        // node a moment to catch up before calling it unknown.
        let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
        loop {
            // The replicated state judges expiry by log time, which stands still on a quiet
            // cluster: check the wall clock too.
            if let Some(s) = self
                .reader()
                .session(session_id)
                .filter(|s| s.expires_at_ms > crate::util::now_unix_ms())
            {
                return Ok(Some(SessionInfo {
                    user_id: s.user_id,
                    expires_at_ms: s.expires_at_ms,
                }));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    }

    fn history(&self, room: &str, after: u64) -> Result<History, FanoutError> {
        let h = self.reader().history(room, after);
        Ok(History {
            epoch: if h.epoch.is_empty() {
                self.epoch()
            } else {
                h.epoch
            },
            last_offset: h.last_offset,
            first_retained: h.first_retained,
            events: h.events.into_iter().map(Self::to_stored).collect(),
        })
    }

    fn events_after_index(
        &self,
        rooms: &[String],
        index: u64,
    ) -> Result<Vec<(String, StoredEvent)>, FanoutError> {
        let (i, p) = unseq(index);
        Ok(self
            .reader()
            .events_after(rooms, i, p)
            .into_iter()
            .map(|(r, e)| (r, Self::to_stored(e)))
            .collect())
    }

    fn membership(&self, change: Membership) {
        if self.membership_tx.send(change).is_err() {
            tracing::warn!("membership change after the backend stopped");
        }
    }

    async fn recover(&self, pid: &str) -> Result<Option<RecoveredSocket>, FanoutError> {
        let r = self
            .node
            .propose(Command::Recover {
                pid: pid.to_owned(),
                new_sid: String::new(),
                node: self.node_id,
            })
            .await
            .map_err(propose_err)?;
        Ok(match r {
            Response::Recovered {
                user_id,
                session_id,
                rooms,
                old_sid,
            } => Some(RecoveredSocket {
                sid: old_sid,
                user_id,
                session_id,
                rooms,
            }),
            _ => None,
        })
    }

    async fn presence(&self, user_id: &str) -> Result<Presence, FanoutError> {
        let mut sockets = self.reader().presence(user_id);
        sockets.sort();
        Ok(Presence { sockets })
    }

    async fn counts(&self) -> Result<ClusterCounts, FanoutError> {
        let s = self.reader().stats();
        Ok(ClusterCounts {
            connections_per_node: s.connections_per_node,
            unique_users: s.unique_users,
            room_count: s.room_count,
        })
    }

    fn health(&self) -> BackendHealth {
        let st = self.node.status();
        let lag = st.commit_index.saturating_sub(st.applied_index);
        // Only the leader knows whether its peers answer; a follower cannot judge them.
        let is_leader = st.leader_id == Some(st.node_id);
        let unreachable = is_leader && st.nodes.iter().any(|n| !n.reachable);
        let failure = self.node.failure();
        let mut health = BackendHealth {
            healthy: st.leader_id.is_some() && st.has_quorum && failure.is_none(),
            degraded: unreachable || lag > 1000,
            ready: self.node.is_ready(),
            detail: json!({
                "leader": st.leader_id,
                "term": st.term,
                "commitIndex": st.commit_index,
                "appliedIndex": st.applied_index,
                "lag": lag,
                "lagging": lag > 1000,
                "hasQuorum": st.has_quorum,
                "fastElections": self.node.fast_elections(),
            }),
        };
        if let (Some(why), Some(m)) = (failure, health.detail.as_object_mut()) {
            // Why this node can no longer write (it is shutting down).
            m.insert("error".into(), json!(why));
        }
        health
    }

    async fn wait_ready(&self, timeout: Duration) -> bool {
        self.node.is_ready() || self.node.wait_ready(timeout).await
    }

    fn cluster_status(&self) -> Option<serde_json::Value> {
        let st = self.node.status();
        let per_node = self.reader().stats().connections_per_node;
        let nodes: Vec<serde_json::Value> = st
            .nodes
            .iter()
            .map(|n| {
                json!({
                    "id": n.id,
                    "addr": n.public_addr,
                    "peerAddr": n.peer_addr,
                    "role": match n.role { Role::Leader => "leader", Role::Follower => "follower", Role::Learner => "learner" },
                    "reachable": n.reachable,
                    "connections": per_node.get(&n.id).copied().unwrap_or(0),
                })
            })
            .collect();
        Some(json!({
            "nodeId": st.node_id,
            "leaderId": st.leader_id,
            "term": st.term,
            "commitIndex": st.commit_index,
            "appliedIndex": st.applied_index,
            "lastLogIndex": st.last_log_index,
            "hasQuorum": st.has_quorum,
            "adapter": "raft",
            "nodes": nodes,
        }))
    }

    fn fault(&self) -> Option<raftcast_raft::FaultSwitch> {
        self.node.fault()
    }

    async fn failed(&self) -> String {
        self.node.failed().await
    }

    async fn shutdown(&self) {
        self.node.shutdown().await;
    }
}
