//! [`RaftNode`]: the handle the server codes against. Starts openraft on the sled stores, the
//! peer transport, the batcher, cluster formation and the leader's duties.

mod config;
mod duties;
mod failover;
mod formation;
mod handler;
mod snapshots;
mod versions;

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};

pub use config::{RaftConfig, SNAPSHOT_EVERY};
pub use versions::PROTOCOL as PEER_PROTOCOL;

use crate::batch::{self, Item, Outcome};
use crate::error::{ProposeError, StartError};
use crate::events::{AppliedHandler, EventOut};
use crate::network::{FaultSwitch, NetCtx, Network};
use crate::reader::StateReader;
use crate::store;
use crate::types::{
    Applied, ClusterStatus, Command, NodeId, NodeInfo, NodeStatus, Raft, Response, Role,
};

/// Capacity of the applied-events channel (apply waits when it is full).
const APPLIED_CAPACITY: usize = 1024;

/// Shared internals of a node.
pub(crate) struct Core {
    pub id: NodeId,
    pub cfg: RaftConfig,
    pub info: NodeInfo,
    pub raft: Raft,
    pub net: Arc<NetCtx>,
    pub reader: StateReader,
    pub db: sled::Db,
    pub committed: Arc<AtomicU64>,
    pub stop_tx: watch::Sender<bool>,
    pub stop_rx: watch::Receiver<bool>,
    pub proposals: mpsc::Sender<Vec<Item>>,
    /// Log index of our applied NodeStarted (0 = not yet).
    pub started_index: AtomicU64,
    pub ready: AtomicBool,
    pub batch_entries: AtomicU64,
    pub batch_commands: AtomicU64,
    /// Elections this node started early because its leader fell silent (see `failover`).
    pub fast_elections: AtomicU64,
    /// Which commands every member reads (see `versions`).
    pub versions: versions::Versions,
    /// Encoded log bytes appended since the store was opened (see `snapshots`).
    pub logged_bytes: Arc<AtomicU64>,
    /// Bytes of this node's current snapshot (see `snapshots`).
    pub snapshot_bytes: Arc<AtomicU64>,
}

impl Core {
    pub fn stopping(&self) -> bool {
        *self.stop_rx.borrow()
    }

    /// Why openraft's core stopped when nobody asked it to (a storage error, such as a full
    /// disk, is fatal to it): the node can no longer write, vote or apply until restarted.
    pub fn failure(&self) -> Option<String> {
        failure_of(&self.raft.metrics().borrow().running_state, self.stopping())
    }

    /// How long a peer may stay silent before it counts as unreachable for quorum purposes.
    fn quorum_window(&self) -> Duration {
        Duration::from_millis(self.cfg.election_timeout_ms.1.max(300))
    }

    /// Whether this node, as leader, heard from a majority of voters recently.
    pub fn leader_has_quorum(&self) -> bool {
        let window = self.quorum_window();
        let m = self.raft.metrics();
        let m = m.borrow();
        if m.current_leader != Some(self.id) {
            return false;
        }
        let (mut all, mut fresh) = (0usize, 0usize);
        for v in m.membership_config.membership().voter_ids() {
            all += 1;
            if v == self.id
                || self
                    .net
                    .last_contact(v)
                    .is_some_and(|t| t.elapsed() <= window)
            {
                fresh += 1;
            }
        }
        fresh * 2 > all
    }

    /// The peer address of a member.
    pub fn peer_addr_of(&self, id: NodeId) -> Option<String> {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.peer_addr.clone())
    }

    /// Queue a proposal and wait for its outcome.
    pub async fn submit(&self, cmd: Command, forwardable: bool) -> Result<Response, ProposeError> {
        self.submit_with_id(new_id(), cmd, forwardable).await
    }

    /// Queue a proposal that already has an id (a forwarded one) and wait for its outcome.
    pub async fn submit_with_id(
        &self,
        id: u64,
        cmd: Command,
        forwardable: bool,
    ) -> Result<Response, ProposeError> {
        self.submit_group(vec![(id, cmd)], forwardable)
            .await
            .into_iter()
            .next()
            .unwrap_or(Err(ProposeError::Fatal("a proposal got no answer".into())))
    }

    /// Queue proposals with their ids as one group and wait for their outcomes, in order.
    /// The batcher takes a group whole into the entry it is gathering (a group larger than
    /// an entry holds continues in the next ones), so a group commits in as few entries as
    /// the batch limits allow and its commands keep their order.
    pub async fn submit_group(
        &self,
        cmds: Vec<(u64, Command)>,
        forwardable: bool,
    ) -> Vec<Result<Response, ProposeError>> {
        let n = cmds.len();
        let refused = || (0..n).map(|_| Err(ProposeError::ShuttingDown)).collect();
        if self.stopping() {
            return refused();
        }
        let deadline = Instant::now() + self.cfg.propose_timeout;
        let mut group = Vec::with_capacity(n);
        let mut answers = Vec::with_capacity(n);
        for (id, cmd) in cmds {
            let (tx, rx) = oneshot::channel();
            group.push(Item {
                cmd: self.versions.proposable(cmd),
                id,
                deadline,
                forwardable,
                tx,
            });
            answers.push(rx);
        }
        if self.proposals.send(group).await.is_err() {
            return refused();
        }
        let mut out = Vec::with_capacity(n);
        for rx in answers {
            out.push(self.outcome(rx).await);
        }
        out
    }

    /// Waits for the batcher's answer to one proposal.
    async fn outcome(&self, rx: oneshot::Receiver<Outcome>) -> Result<Response, ProposeError> {
        // The batcher answers by the deadline; the extra margin only guards against a bug.
        match tokio::time::timeout(self.cfg.propose_timeout + Duration::from_secs(1), rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(ProposeError::ShuttingDown),
            Err(_) => Err(ProposeError::NoQuorum("propose timed out".into())),
        }
    }
}

/// A proposal id: random, so unique across nodes and restarts without coordination (a
/// collision among the ids of one de-duplication window is astronomically unlikely); never 0.
fn new_id() -> u64 {
    rand::random::<u64>().max(1)
}

/// The node handle. Cheap to clone.
#[derive(Clone)]
pub struct RaftNode {
    core: Arc<Core>,
    fault: Option<FaultSwitch>,
    peer_addr: std::net::SocketAddr,
}

impl RaftNode {
    /// Open the store in `cfg.data_dir/raft`, start Raft and the peer transport, and begin
    /// forming or joining the cluster in the background. Applied events arrive on the returned
    /// channel in log order; keep draining it (apply waits when it is full).
    pub async fn start(cfg: RaftConfig) -> Result<(RaftNode, mpsc::Receiver<Applied>), StartError> {
        let (tx, rx) = mpsc::channel(APPLIED_CAPACITY);
        let node = Self::start_inner(cfg, EventOut::Channel(tx)).await?;
        Ok((node, rx))
    }

    /// As [`RaftNode::start`], with the applied events handed to `handler` by the state
    /// machine itself, right after each apply (no channel, no task between them).
    pub async fn start_with_handler(
        cfg: RaftConfig,
        handler: Arc<dyn AppliedHandler>,
    ) -> Result<RaftNode, StartError> {
        Self::start_inner(cfg, EventOut::Handler(handler)).await
    }

    async fn start_inner(cfg: RaftConfig, events: EventOut) -> Result<RaftNode, StartError> {
        let dir = cfg.data_dir.join("raft");
        let (db, log, sm) = open_with_retry(&dir, cfg.store_cache_bytes).await?;
        log.claim_node_id(cfg.node_id)?;
        let per_entry = Arc::new(AtomicBool::new(false));
        let (sm, events_live) = sm.with_events(events);
        let sm = sm.with_per_entry_layouts(per_entry.clone());
        let reader = StateReader(sm.kv());
        let committed = log.committed_index();
        let recent = log.recent();
        let (logged_bytes, snapshot_bytes) = (log.logged_bytes(), sm.snapshot_bytes());

        let listener =
            TcpListener::bind(cfg.peer_listen)
                .await
                .map_err(|source| StartError::Bind {
                    addr: cfg.peer_listen,
                    source,
                })?;
        let peer_addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: cfg.peer_listen,
            source,
        })?;
        let info = NodeInfo {
            peer_addr: cfg
                .peers
                .get(&cfg.node_id)
                .cloned()
                .unwrap_or_else(|| peer_addr.to_string()),
            public_addr: cfg.public_addr.clone(),
        };

        let fault = cfg.fault_injection.then(FaultSwitch::default);
        let net = NetCtx::new(cfg.node_id, cfg.cluster_secret.clone(), fault.clone());
        let raft_cfg = Arc::new(config::openraft_config(&cfg)?);
        let raft = Raft::new(cfg.node_id, raft_cfg, Network(net.clone()), log, sm)
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        // What it re-applied of the log is behind us: from here on, the caller drains.
        events_live.store(true, Ordering::Release);

        let (stop_tx, stop_rx) = watch::channel(false);
        let (ptx, prx) = mpsc::channel(4096);
        let cfg_protocol = cfg.protocol;
        let core = Arc::new(Core {
            id: cfg.node_id,
            cfg,
            info,
            raft,
            net: net.clone(),
            reader,
            db,
            committed,
            stop_tx,
            stop_rx: stop_rx.clone(),
            proposals: ptx,
            started_index: AtomicU64::new(0),
            ready: AtomicBool::new(false),
            batch_entries: AtomicU64::new(0),
            batch_commands: AtomicU64::new(0),
            fast_elections: AtomicU64::new(0),
            versions: versions::Versions::new(cfg_protocol, per_entry),
            logged_bytes,
            snapshot_bytes,
        });
        tokio::spawn(recent.expire_loop(stop_rx.clone()));
        tokio::spawn(crate::network::serve(listener, net, core.clone(), stop_rx));
        tokio::spawn(batch::run(core.clone(), prx));
        tokio::spawn(formation::run(core.clone()));
        tokio::spawn(duties::run(core.clone()));
        tokio::spawn(failover::run(core.clone()));
        tokio::spawn(versions::run(core.clone()));
        tracing::info!(node = core.id, %peer_addr, "raft node started");
        Ok(RaftNode {
            core,
            fault,
            peer_addr,
        })
    }

    /// Propose a command from any node; followers forward to the leader. Fails with
    /// `NoQuorum` within `propose_timeout` when no leader with a quorum commits it.
    pub async fn propose(&self, cmd: Command) -> Result<Response, ProposeError> {
        self.core.submit(cmd, true).await
    }

    /// Propose several commands at once, in order (the batcher takes them as one group,
    /// [`Core::submit_group`]): one answer per command, in the same order. A command's
    /// failure does not stop the others.
    pub async fn propose_many(&self, cmds: Vec<Command>) -> Vec<Result<Response, ProposeError>> {
        self.propose_many_with_ids(cmds.into_iter().map(|c| (0, c)).collect())
            .await
    }

    /// As [`RaftNode::propose_many`], with the proposals' ids given (0: draw one). A
    /// proposal whose id the state applied within the de-duplication window is answered
    /// with that first result and not applied again ([`crate::idempotent_id`]).
    pub async fn propose_many_with_ids(
        &self,
        cmds: Vec<(u64, Command)>,
    ) -> Vec<Result<Response, ProposeError>> {
        let cmds = cmds
            .into_iter()
            .map(|(id, c)| (if id == 0 { new_id() } else { id }, c))
            .collect();
        self.core.submit_group(cmds, true).await
    }

    /// Local reads of the applied state.
    pub fn state(&self) -> StateReader {
        self.core.reader.clone()
    }

    /// The cluster history epoch, once set.
    pub fn epoch(&self) -> Option<String> {
        self.core.reader.epoch()
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.core.id
    }

    /// The address the peer transport listens on.
    pub fn peer_addr(&self) -> std::net::SocketAddr {
        self.peer_addr
    }

    /// The openraft handle (advanced use: metrics, membership changes).
    pub fn raft(&self) -> &Raft {
        &self.core.raft
    }

    /// `(entries, commands)` this node has written as leader: commands per entry measures
    /// the batching.
    pub fn batch_stats(&self) -> (u64, u64) {
        (
            self.core.batch_entries.load(Ordering::Relaxed),
            self.core.batch_commands.load(Ordering::Relaxed),
        )
    }

    /// Elections this node started as soon as its silent leader's lease ran out, because it had
    /// the most complete log among the voters that lost the leader (fast failover).
    pub fn fast_elections(&self) -> u64 {
        self.core.fast_elections.load(Ordering::Relaxed)
    }

    /// Whether every member said it reads this version's commands, so that this node proposes
    /// them as they are rather than in their older forms (see `versions`).
    pub fn proposes_current_commands(&self) -> bool {
        self.core.versions.all()
    }

    /// The fault switch, when `fault_injection` is on.
    pub fn fault(&self) -> Option<FaultSwitch> {
        self.fault.clone()
    }

    /// The cluster as this node sees it.
    pub fn status(&self) -> ClusterStatus {
        let c = &self.core;
        let m = c.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        let dead_after = c.cfg.node_dead_after;
        let nodes = membership
            .nodes()
            .map(|(id, n)| NodeStatus {
                id: *id,
                peer_addr: n.peer_addr.clone(),
                public_addr: n.public_addr.clone(),
                role: if Some(*id) == m.current_leader {
                    Role::Leader
                } else if voters.contains(id) {
                    Role::Follower
                } else {
                    Role::Learner
                },
                reachable: *id == c.id
                    || c.net
                        .last_contact(*id)
                        .is_some_and(|t| t.elapsed() <= dead_after),
            })
            .collect();
        let failed = failure_of(&m.running_state, c.stopping()).is_some();
        let has_quorum = match m.current_leader {
            _ if failed => false,
            Some(l) if l == c.id => c.leader_has_quorum(),
            Some(l) => c
                .net
                .last_contact(l)
                .is_some_and(|t| t.elapsed() <= c.quorum_window() * 2),
            None => false,
        };
        ClusterStatus {
            node_id: c.id,
            leader_id: m.current_leader,
            term: m.current_term,
            commit_index: c.committed.load(Ordering::Relaxed),
            applied_index: m.last_applied.map(|l| l.index).unwrap_or(0),
            last_log_index: m.last_log_index.unwrap_or(0),
            nodes,
            has_quorum,
        }
    }

    /// Why this node's Raft stopped by itself (a storage error such as a full disk), or None
    /// while it runs (or was stopped by [`RaftNode::shutdown`]). Such a node cannot write,
    /// vote or apply again until it is restarted.
    pub fn failure(&self) -> Option<String> {
        self.core.failure()
    }

    /// Resolves once this node's Raft has stopped by itself, with [`RaftNode::failure`]'s
    /// reason; never while it runs or after [`RaftNode::shutdown`].
    ///
    /// Watches the server metrics (vote, role, leader, membership), which change rarely and
    /// close when the core stops, rather than the full metrics, which change several times
    /// per log entry: the node's top-level future waits here, and each change woke the
    /// thread that runs it (thousands of wake-ups a second under load).
    pub async fn failed(&self) -> String {
        let mut m = self.core.raft.server_metrics();
        loop {
            if let Some(why) = self.core.failure() {
                return why;
            }
            if m.changed().await.is_err() {
                // The metrics sender is gone with the core: only a failure can tell why.
                return match self.core.failure() {
                    Some(why) => why,
                    None => std::future::pending().await,
                };
            }
        }
    }

    /// Whether the node is ready: leader known, epoch set, and our NodeStarted applied locally
    /// (so the local state has caught up at least to when this node started).
    pub fn is_ready(&self) -> bool {
        let c = &self.core;
        // Read the three fields under the watch's lock, without cloning the whole metrics
        // (every Socket.IO handshake asks this) and without holding the lock below.
        let (running, leader_known, applied) = {
            let m = c.raft.metrics();
            let m = m.borrow();
            (
                m.running_state.is_ok(),
                m.current_leader.is_some(),
                m.last_applied.map(|l| l.index),
            )
        };
        let started = c.started_index.load(Ordering::Relaxed);
        c.ready.load(Ordering::Relaxed)
            && running
            && leader_known
            && c.reader.epoch().is_some()
            && started > 0
            && applied.is_some_and(|i| i >= started)
    }

    /// Wait until [`RaftNode::is_ready`] or the timeout.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut m = self.core.raft.metrics();
        loop {
            if self.is_ready() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            let _ =
                tokio::time::timeout((deadline - now).min(Duration::from_millis(50)), m.changed())
                    .await;
        }
    }

    /// Stop: refuse new proposals, stop Raft (a leader stops heartbeating, so the others
    /// elect a new leader after an election timeout: openraft 0.9.25 has no leadership
    /// transfer), stop the transport, and flush sled.
    pub async fn shutdown(&self) {
        let c = &self.core;
        if c.stop_tx.send_replace(true) {
            return;
        }
        tracing::info!(node = c.id, "raft node shutting down");
        if let Err(e) = c.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
        if let Err(e) = c.db.flush_async().await {
            tracing::warn!(error = %e, "sled flush at shutdown");
        }
    }
}

/// Why openraft stopped, unless it stopped because we asked (`stopping`) or runs.
fn failure_of(
    state: &Result<(), openraft::error::Fatal<NodeId>>,
    stopping: bool,
) -> Option<String> {
    match state {
        Ok(()) => None,
        Err(openraft::error::Fatal::Stopped) if stopping => None,
        Err(openraft::error::Fatal::Stopped) => Some("raft stopped unexpectedly".into()),
        Err(e) => Some(e.to_string()),
    }
}

async fn open_with_retry(
    dir: &std::path::Path,
    cache_bytes: u64,
) -> Result<(sled::Db, store::LogStore, store::SmStore), StartError> {
    // A previous instance in this process may still be releasing the sled lock; any other
    // error will not go away by waiting.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match store::open(dir, cache_bytes) {
            Ok(s) => return Ok(s),
            Err(e @ store::StoreError::InUse { .. }) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "store busy, retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

pub(crate) fn snapshot_of(
    meta: openraft::SnapshotMeta<NodeId, NodeInfo>,
    data: Vec<u8>,
) -> openraft::Snapshot<crate::types::TypeConfig> {
    openraft::Snapshot {
        meta,
        snapshot: Box::new(Cursor::new(data)),
    }
}

/// Members of the initial membership: the configured voters, or just this node.
pub(crate) fn initial_voters(cfg: &RaftConfig, me: &NodeInfo) -> BTreeMap<NodeId, String> {
    if cfg.peers.is_empty() {
        BTreeMap::from([(cfg.node_id, me.peer_addr.clone())])
    } else {
        cfg.peers.clone()
    }
}

/// Await all futures concurrently, keeping their order (no extra dependency).
pub(crate) async fn join_all<F: std::future::Future>(
    futs: impl IntoIterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send,
{
    let futs: Vec<_> = futs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    let mut pending: Vec<(usize, std::pin::Pin<Box<F>>)> = futs.into_iter().enumerate().collect();
    std::future::poll_fn(|cx| {
        pending.retain_mut(|(i, f)| match f.as_mut().poll(cx) {
            std::task::Poll::Ready(v) => {
                out[*i] = Some(v);
                false
            }
            std::task::Poll::Pending => true,
        });
        if pending.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    out.into_iter()
        .map(|o| o.unwrap_or_else(|| unreachable!("every future completed")))
        .collect()
}
