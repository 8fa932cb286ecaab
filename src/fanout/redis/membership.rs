//! Who is connected where, cluster-wide, for presence, stats and connection state recovery.
//!
//! Each node keeps its own live sockets in Redis (`node:<id>:sockets|users|rooms` hashes and
//! a `presence:<user>` entry per socket) and refreshes `node:<id>:alive` every second with a
//! 3 s TTL, so a dead node's sockets drop out of every answer within seconds (and a living
//! node later sweeps its keys away). Changes are queued by the sync
//! [`Fanout::membership`](super::super::Fanout::membership) and applied in order by one
//! task. The node's own view is authoritative: after any Redis error, or when its heartbeat
//! finds its keys gone (a Redis restart without persistence), it rewrites them whole. A
//! closed socket's recovery record is not part of that view, so the task writes it even
//! while a rewrite is due (which is the case for the node's first second).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use fred::clients::Client;
use fred::interfaces::{ClientLike as _, HashesInterface, KeysInterface, SetsInterface};
use fred::types::{Expiration, Value};
use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::super::{ClusterCounts, Membership, Presence, RecoveredSocket};
use super::keys::Keys;
use super::wire;

/// Why a membership read or write failed.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    #[error("redis: {0}")]
    Redis(#[from] fred::error::Error),
}

type Result<T> = std::result::Result<T, MembershipError>;

const HEARTBEAT: Duration = Duration::from_secs(1);
const ALIVE_TTL_MS: i64 = 3_000;
/// Sweep dead nodes' keys every this many heartbeats.
const SWEEP_EVERY: u32 = 5;

struct Rec {
    pid: String,
    user: String,
    session: Option<String>,
    rooms: Vec<String>,
}

/// This node's live sockets, kept in memory.
#[derive(Default)]
struct Local {
    /// Bumped by every change; a rewrite covers the changes up to the version it read.
    version: u64,
    sockets: HashMap<String, Rec>,
    room_members: HashMap<String, u32>,
}

/// A change as the task applies it to Redis.
enum Op {
    Open {
        sid: String,
        user: String,
        rooms: Vec<String>,
    },
    Rooms {
        delta: i64,
        rooms: Vec<String>,
    },
    Close {
        sid: String,
        user: String,
        rooms: Vec<String>,
        recovery: Option<(String, Vec<u8>, u64)>,
    },
}

/// The membership mirror of one node.
pub struct Members {
    node: u64,
    keys: Keys,
    client: Client,
    recovery_window_ms: u64,
    local: Mutex<Local>,
    stopped: std::sync::atomic::AtomicBool,
    tx: mpsc::UnboundedSender<(u64, Op)>,
}

impl Members {
    /// Starts the task that applies changes and beats the heart.
    pub fn start(node: u64, keys: Keys, client: Client, recovery_window: Duration) -> Arc<Members> {
        let (tx, rx) = mpsc::unbounded_channel();
        let m = Arc::new(Members {
            node,
            keys,
            client,
            recovery_window_ms: u64::try_from(recovery_window.as_millis()).unwrap_or(u64::MAX),
            local: Mutex::new(Local::default()),
            stopped: std::sync::atomic::AtomicBool::new(false),
            tx,
        });
        tokio::spawn(task(Arc::downgrade(&m), rx));
        m
    }

    /// Whether any local live socket is in `room`.
    pub fn has_local_members(&self, room: &str) -> bool {
        self.local.lock().room_members.contains_key(room)
    }

    /// Records a change and queues it for Redis.
    pub fn change(&self, change: Membership) {
        let mut l = self.local.lock();
        let op = match change {
            Membership::Open {
                sid,
                pid,
                user_id,
                session_id,
                rooms,
            } => {
                for r in &rooms {
                    *l.room_members.entry(r.clone()).or_default() += 1;
                }
                let op = Op::Open {
                    sid: sid.clone(),
                    user: user_id.clone(),
                    rooms: rooms.clone(),
                };
                l.sockets.insert(
                    sid,
                    Rec {
                        pid,
                        user: user_id,
                        session: session_id,
                        rooms,
                    },
                );
                op
            }
            Membership::Join { sid, rooms, .. } => {
                let Some(rec) = l.sockets.get_mut(&sid) else {
                    return;
                };
                let added: Vec<String> = rooms
                    .into_iter()
                    .filter(|r| !rec.rooms.contains(r))
                    .collect();
                rec.rooms.extend(added.iter().cloned());
                for r in &added {
                    *l.room_members.entry(r.clone()).or_default() += 1;
                }
                Op::Rooms {
                    delta: 1,
                    rooms: added,
                }
            }
            Membership::Leave { sid, rooms, .. } => {
                let Some(rec) = l.sockets.get_mut(&sid) else {
                    return;
                };
                let removed: Vec<String> = rooms
                    .into_iter()
                    .filter(|r| rec.rooms.contains(r))
                    .collect();
                rec.rooms.retain(|r| !removed.contains(r));
                for r in &removed {
                    dec(&mut l.room_members, r);
                }
                Op::Rooms {
                    delta: -1,
                    rooms: removed,
                }
            }
            Membership::Close {
                sid, recoverable, ..
            } => {
                let Some(rec) = l.sockets.remove(&sid) else {
                    return;
                };
                for r in &rec.rooms {
                    dec(&mut l.room_members, r);
                }
                let recovery = (recoverable && self.recovery_window_ms > 0 && !rec.pid.is_empty())
                    .then(|| {
                        let v = wire::encode_recovery(
                            &sid,
                            &rec.user,
                            rec.session.as_deref(),
                            &rec.rooms,
                        );
                        (rec.pid.clone(), v, self.recovery_window_ms)
                    });
                Op::Close {
                    sid,
                    user: rec.user,
                    rooms: rec.rooms,
                    recovery,
                }
            }
        };
        l.version += 1;
        let version = l.version;
        drop(l);
        let _ = self.tx.send((version, op));
    }

    /// Takes a detached socket's state (a short retry covers a close still in flight).
    pub async fn recover(&self, pid: &str) -> Result<Option<RecoveredSocket>> {
        for attempt in 0..3 {
            let v: Option<Vec<u8>> = self.client.getdel(self.keys.recovery(pid)).await?;
            if let Some(bytes) = v {
                return Ok(wire::decode_recovery(&bytes));
            }
            if attempt < 2 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(None)
    }

    async fn alive_nodes(&self) -> Result<Vec<u64>> {
        let ids: Vec<String> = self.client.smembers(self.keys.nodes()).await?;
        let mut out = Vec::new();
        for id in ids.iter().filter_map(|s| s.parse::<u64>().ok()) {
            let n: u64 = self.client.exists(self.keys.node_alive(id)).await?;
            if n > 0 {
                out.push(id);
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Where `user` has live sockets, on living nodes.
    pub async fn presence(&self, user: &str) -> Result<Presence> {
        let alive = self.alive_nodes().await?;
        let fields: Vec<String> = self.client.hkeys(self.keys.presence(user)).await?;
        let mut sockets: Vec<(u64, String)> = fields
            .iter()
            .filter_map(|f| {
                let (n, sid) = f.split_once(':')?;
                let n = n.parse::<u64>().ok()?;
                alive.contains(&n).then(|| (n, sid.to_owned()))
            })
            .collect();
        sockets.sort();
        Ok(Presence { sockets })
    }

    /// Connections per living node, unique users and rooms across them.
    pub async fn counts(&self) -> Result<ClusterCounts> {
        let mut per_node = BTreeMap::new();
        let (mut users, mut rooms) = (BTreeSet::new(), BTreeSet::new());
        for n in self.alive_nodes().await? {
            let c: u64 = self.client.hlen(self.keys.node_sockets(n)).await?;
            per_node.insert(n, c);
            let u: Vec<String> = self.client.hkeys(self.keys.node_users(n)).await?;
            users.extend(u);
            let r: Vec<String> = self.client.hkeys(self.keys.node_rooms(n)).await?;
            rooms.extend(r);
        }
        Ok(ClusterCounts {
            connections_per_node: per_node,
            unique_users: users.len() as u64,
            room_count: rooms.len() as u64,
        })
    }

    async fn apply(&self, op: &Op) -> Result<()> {
        let k = &self.keys;
        let c = &self.client;
        match op {
            Op::Open { sid, user, rooms } => {
                let _: Value = c
                    .hset(k.node_sockets(self.node), (sid.as_str(), user.as_str()))
                    .await?;
                let _: i64 = c.hincrby(k.node_users(self.node), user.as_str(), 1).await?;
                self.rooms_delta(1, rooms).await?;
                let field = format!("{}:{sid}", self.node);
                let _: Value = c.hset(k.presence(user), (field.as_str(), "1")).await?;
            }
            Op::Rooms { delta, rooms } => self.rooms_delta(*delta, rooms).await?,
            Op::Close {
                sid, user, rooms, ..
            } => {
                // The recovery record is written by the task before this (see `save_recovery`).
                let _: Value = c.hdel(k.node_sockets(self.node), sid.as_str()).await?;
                let n: i64 = c
                    .hincrby(k.node_users(self.node), user.as_str(), -1)
                    .await?;
                if n <= 0 {
                    let _: Value = c.hdel(k.node_users(self.node), user.as_str()).await?;
                }
                self.rooms_delta(-1, rooms).await?;
                let _: Value = c
                    .hdel(k.presence(user), format!("{}:{sid}", self.node))
                    .await?;
            }
        }
        Ok(())
    }

    /// Writes a closed socket's recoverable state, kept for the recovery window. Not part of
    /// the node's membership view: a rewrite ([`Members::resync`]) does not cover it, so it
    /// is written even while the membership is due for a rewrite.
    async fn save_recovery(&self, op: &Op) -> Result<()> {
        let Op::Close {
            recovery: Some((pid, value, window)),
            ..
        } = op
        else {
            return Ok(());
        };
        let px = i64::try_from(*window).unwrap_or(i64::MAX);
        let _: Value = self
            .client
            .set(
                self.keys.recovery(pid),
                value.as_slice(),
                Some(Expiration::PX(px)),
                None,
                false,
            )
            .await?;
        Ok(())
    }

    async fn rooms_delta(&self, delta: i64, rooms: &[String]) -> Result<()> {
        let key = self.keys.node_rooms(self.node);
        for r in rooms {
            let n: i64 = self.client.hincrby(key.as_str(), r.as_str(), delta).await?;
            if n <= 0 {
                let _: Value = self.client.hdel(key.as_str(), r.as_str()).await?;
            }
        }
        Ok(())
    }

    /// Removes a node's membership keys (its presence entries included).
    async fn clear_node(&self, node: u64) -> Result<()> {
        let k = &self.keys;
        let old: HashMap<String, String> = self.client.hgetall(k.node_sockets(node)).await?;
        for (sid, user) in old {
            let _: Value = self
                .client
                .hdel(k.presence(&user), format!("{node}:{sid}"))
                .await?;
        }
        let _: Value = self
            .client
            .del(vec![
                k.node_sockets(node),
                k.node_users(node),
                k.node_rooms(node),
            ])
            .await?;
        Ok(())
    }

    /// Rewrites this node's keys from its own view; returns the version written.
    async fn resync(&self) -> Result<u64> {
        self.clear_node(self.node).await?;
        let (version, ops) = {
            let l = self.local.lock();
            let ops: Vec<Op> = l
                .sockets
                .iter()
                .map(|(sid, r)| Op::Open {
                    sid: sid.clone(),
                    user: r.user.clone(),
                    rooms: r.rooms.clone(),
                })
                .collect();
            (l.version, ops)
        };
        for op in &ops {
            self.apply(op).await?;
        }
        let _: Value = self
            .client
            .sadd(self.keys.nodes(), self.node.to_string())
            .await?;
        tracing::info!(sockets = ops.len(), "membership written to Redis");
        Ok(version)
    }

    /// Removes this node's keys (graceful shutdown: its sockets leave presence at once).
    pub async fn leave(&self) -> Result<()> {
        self.stopped
            .store(true, std::sync::atomic::Ordering::Release);
        self.clear_node(self.node).await?;
        let _: Value = self.client.del(self.keys.node_alive(self.node)).await?;
        let _: Value = self
            .client
            .srem(self.keys.nodes(), self.node.to_string())
            .await?;
        Ok(())
    }

    /// Refreshes the heartbeat; true when the key had expired or vanished.
    async fn heartbeat(&self, token: &str) -> Result<bool> {
        let old: Option<String> = self
            .client
            .set(
                self.keys.node_alive(self.node),
                token,
                Some(Expiration::PX(ALIVE_TTL_MS)),
                None,
                true,
            )
            .await?;
        Ok(old.is_none())
    }

    /// Removes the keys of nodes whose heartbeat stopped.
    async fn sweep(&self) -> Result<()> {
        let ids: Vec<String> = self.client.smembers(self.keys.nodes()).await?;
        for id in ids
            .iter()
            .filter_map(|s| s.parse::<u64>().ok())
            .filter(|&n| n != self.node)
        {
            let n: u64 = self.client.exists(self.keys.node_alive(id)).await?;
            if n == 0 {
                self.clear_node(id).await?;
                let _: Value = self.client.srem(self.keys.nodes(), id.to_string()).await?;
                tracing::info!(
                    node = id,
                    "swept the membership of a node whose heartbeat stopped"
                );
            }
        }
        Ok(())
    }
}

async fn task(m: std::sync::Weak<Members>, mut rx: mpsc::UnboundedReceiver<(u64, Op)>) {
    let token = crate::socketio::random_id();
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut dirty = true;
    let mut written: u64 = 0;
    let mut beats: u32 = 0;
    loop {
        tokio::select! {
            op = rx.recv() => {
                let (Some((version, op)), Some(m)) = (op, m.upgrade()) else { break };
                if let Err(e) = m.save_recovery(&op).await {
                    tracing::warn!(error = %e, "writing a closed socket's recovery state to Redis failed: it cannot be recovered");
                }
                if dirty || version <= written {
                    continue; // a rewrite writes (or wrote) the whole state
                }
                if let Err(e) = m.apply(&op).await {
                    tracing::error!(error = %e, "writing a membership change to Redis failed; will rewrite once Redis answers");
                    dirty = true;
                }
            }
            _ = tick.tick() => {
                let Some(m) = m.upgrade() else { break };
                if m.stopped.load(std::sync::atomic::Ordering::Acquire) {
                    break;
                }
                if !m.client.is_connected() {
                    dirty = true;
                    continue;
                }
                match m.heartbeat(&token).await {
                    Ok(lost) => {
                        if lost || dirty {
                            match m.resync().await {
                                Ok(v) => {
                                    written = v;
                                    dirty = false;
                                }
                                Err(e) => {
                                    tracing::error!(error = %e, "rewriting membership to Redis failed");
                                    dirty = true;
                                }
                            }
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "Redis heartbeat failed");
                        dirty = true;
                    }
                }
                beats = beats.wrapping_add(1);
                if beats % SWEEP_EVERY == 0 && !dirty {
                    if let Err(e) = m.sweep().await {
                        tracing::warn!(error = %e, "sweeping dead nodes' membership failed");
                    }
                }
            }
        }
    }
}

fn dec(map: &mut HashMap<String, u32>, key: &str) {
    if let Some(n) = map.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(key);
        }
    }
}
