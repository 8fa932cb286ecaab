//! The Redis backend (`--redis-url`): the seed's multi-server design behind the same
//! contract. Redis pub/sub carries every event to every node; room offsets, bounded
//! histories (streams capped by `MAXLEN`, with a TTL), sessions, membership and recovery
//! records live in Redis under `--redis-prefix`, so recovery with `since` works through any
//! node. Room broadcasts are also published in the format of Node's
//! `@socket.io/redis-adapter`, and theirs are delivered here, so Node and raftcast servers
//! can share one Redis during a migration. See `docs/redis-mode.md`.
//!
//! One idea per file: [`keys`] (names), [`scripts`] (atomic publish and room reads),
//! [`wire`] (our messages), [`interop`] (the Node adapter's), [`mirror`] (local copies of
//! room histories for the sync reads), [`subscriber`] (the one ordered subscription),
//! [`membership`] (presence, stats, recovery), [`conn`] (connections and health).

pub mod conn;
pub mod interop;
pub mod keys;
pub mod membership;
pub mod mirror;
pub mod scripts;
pub mod subscriber;
pub mod wire;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use fred::interfaces::{ClientLike, KeysInterface, PubsubInterface};
use fred::types::{Expiration, Value};
use parking_lot::Mutex;
use serde_json::json;

use super::local::Retention;
use super::{
    BackendHealth, ClusterCounts, Delivery, Fanout, FanoutError, History, Membership, Payload,
    Presence, PublishRequest, Published, RecoveredSocket, SessionInfo, SharedFanout, Sink,
    StoredEvent,
};
use crate::config::Config;
use crate::util::now_unix_ms;
use conn::Conn;
use keys::Keys;
use membership::Members;
use mirror::Mirror;
use scripts::{PublishArgs, Scripts};

/// Why the Redis backend could not start.
#[derive(Debug, thiserror::Error)]
pub enum RedisStartError {
    #[error("the redis backend needs --redis-url / REDIS_URL")]
    NoUrl,
    #[error(transparent)]
    Conn(#[from] conn::ConnError),
}

/// The Redis backend.
pub struct RedisFanout {
    node_id: u64,
    conn: Arc<Conn>,
    keys: Keys,
    scripts: Scripts,
    mirror: Arc<Mirror>,
    members: Arc<Members>,
    sink: Arc<OnceLock<Arc<dyn Sink>>>,
    epoch: Arc<Mutex<String>>,
    epoch_candidate: String,
    uid: String,
    retention: Retention,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// Starts the Redis backend: connects (without waiting for Redis to be up), subscribes,
/// and starts the membership heartbeat.
pub async fn start(config: &Config, retention: Retention) -> Result<SharedFanout, RedisStartError> {
    let url = config.redis_url.as_deref().ok_or(RedisStartError::NoUrl)?;
    let keys = Keys::new(&config.redis_prefix);
    let conn = Conn::start(url)?;
    let mirror = Arc::new(Mirror::new(retention));
    let members = Members::start(
        config.node_id,
        keys.clone(),
        conn.client.clone(),
        retention.recovery_window,
    );
    let rand = crate::socketio::random_id();
    let f = Arc::new(RedisFanout {
        node_id: config.node_id,
        conn: conn.clone(),
        keys: keys.clone(),
        scripts: Scripts::default(),
        mirror: mirror.clone(),
        members: members.clone(),
        sink: Arc::new(OnceLock::new()),
        epoch: Arc::new(Mutex::new(String::new())),
        epoch_candidate: rand[..16].to_owned(),
        uid: format!("rc-{}-{}-{}", keys.prefix(), config.node_id, &rand[16..]),
        retention,
        tasks: Mutex::new(Vec::new()),
    });
    let shared = Arc::new(subscriber::Shared {
        conn: conn.clone(),
        keys: keys.clone(),
        mirror: mirror.clone(),
        sink: f.sink.clone(),
        epoch: f.epoch.clone(),
        own_uid_prefix: format!("rc-{}-", keys.prefix()),
    });
    let sub = tokio::spawn(subscriber::run(shared));
    let evict = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        loop {
            tick.tick().await;
            let n = mirror.evict(Duration::from_secs(30), |r| members.has_local_members(r));
            if n > 0 {
                tracing::debug!(evicted = n, kept = mirror.len(), "room mirrors evicted");
            }
        }
    });
    f.tasks.lock().extend([sub, evict]);
    match tokio::time::timeout(Duration::from_secs(5), conn.client.wait_for_connect()).await {
        Ok(Ok(())) => {
            if let Err(e) = f.load_epoch().await {
                tracing::warn!(error = %e, "could not read the history epoch from Redis yet");
            }
            tracing::info!(url = %conn.url, prefix = keys.prefix(), epoch = %f.epoch(), "Redis backend connected");
        }
        _ => tracing::error!(
            url = %conn.url,
            "Redis is not reachable yet: serving local clients; durable publishes answer 503 until it is"
        ),
    }
    Ok(f)
}

impl RedisFanout {
    async fn load_epoch(&self) -> Result<(), fred::error::Error> {
        let _: Value = self
            .conn
            .client
            .set(
                self.keys.epoch(),
                self.epoch_candidate.as_str(),
                None,
                Some(fred::types::SetOptions::NX),
                false,
            )
            .await?;
        let e: Option<String> = self.conn.client.get(self.keys.epoch()).await?;
        if let Some(e) = e {
            *self.epoch.lock() = e;
        }
        Ok(())
    }

    /// The settings of one publish script call.
    fn publish_args(&self, room: &str, event: &str, payload: &Payload) -> PublishArgs<'_> {
        let adapter = match interop::encode(&self.uid, room, event, payload) {
            Ok(h) => Some((keys::adapter_room_channel(room), h)),
            Err(e) => {
                tracing::debug!(room, event, error = %e, "not mirrored to the Node adapter channel");
                None
            }
        };
        PublishArgs {
            keys: &self.keys,
            epoch_candidate: &self.epoch_candidate,
            history_size: self.retention.history_size,
            history_ttl_ms: u64::try_from(self.retention.history_ttl.as_millis())
                .unwrap_or(u64::MAX),
            adapter,
        }
    }

    /// The answer to one publish from what its script call returned: a volatile event
    /// Redis did not take is still delivered here.
    fn published(
        &self,
        room: &str,
        event: &str,
        payload: Payload,
        durable: bool,
        r: Result<scripts::Assigned, scripts::ScriptError>,
    ) -> Result<Published, FanoutError> {
        match r {
            Ok(a) => {
                {
                    let mut e = self.epoch.lock();
                    if *e != a.epoch {
                        e.clone_from(&a.epoch);
                    }
                }
                Ok(Published {
                    room: room.to_owned(),
                    offset: a.offset,
                    epoch: a.epoch,
                    ts_ms: a.ts_ms,
                })
            }
            Err(e) if !durable => {
                tracing::warn!(room, event, error = %e, "volatile publish through Redis failed; delivered locally only");
                Ok(self.deliver_locally(room, event, payload))
            }
            Err(e) => Err(self.fail("publish", e)),
        }
    }

    /// Maps a Redis failure: unreachable → `NoQuorum` naming Redis, anything else → `Internal`.
    fn fail(&self, what: &str, e: impl std::fmt::Display) -> FanoutError {
        tracing::error!(operation = what, url = %self.conn.url, error = %e, "Redis operation failed");
        if self.conn.commands_up() {
            FanoutError::Internal(format!("Redis {what} failed: {e}"))
        } else {
            self.unreachable()
        }
    }

    fn unreachable(&self) -> FanoutError {
        FanoutError::NoQuorum(format!(
            "Redis is unreachable (status: {}); nothing was written",
            self.conn.status()
        ))
    }

    /// Delivers a volatile event to this node's sockets only (Redis is down).
    fn deliver_locally(&self, room: &str, event: &str, payload: Payload) -> Published {
        let d = Delivery {
            room: room.to_owned(),
            event: event.to_owned(),
            payload,
            durable: false,
            offset: self.mirror.last_offset(room),
            epoch: self.epoch(),
            ts_ms: now_unix_ms(),
            index: 0,
        };
        if let Some(sink) = self.sink.get() {
            sink.deliver(&d);
        }
        Published {
            room: d.room,
            offset: d.offset,
            epoch: d.epoch,
            ts_ms: d.ts_ms,
        }
    }

    async fn load_room(&self, room: &str) -> Result<(), FanoutError> {
        if self.mirror.is_ready(room) {
            return Ok(());
        }
        if !self.mirror.begin_load(room) {
            // Another task is loading it: wait for it.
            for _ in 0..100 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                if self.mirror.is_ready(room) {
                    return Ok(());
                }
            }
            return Err(FanoutError::Internal(format!(
                "loading room {room} timed out"
            )));
        }
        if !self.conn.commands_up() {
            self.mirror.abort_load(room);
            return Err(self.unreachable());
        }
        match self
            .scripts
            .load_room(&self.conn.client, &self.keys, &self.epoch_candidate, room)
            .await
        {
            Ok(snap) => {
                self.mirror.finish_load(room, snap);
                Ok(())
            }
            Err(e) => {
                self.mirror.abort_load(room);
                Err(self.fail("room load", e))
            }
        }
    }
}

#[async_trait]
impl Fanout for RedisFanout {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn node_id(&self) -> u64 {
        self.node_id
    }

    fn epoch(&self) -> String {
        self.epoch.lock().clone()
    }

    fn attach(&self, sink: Arc<dyn Sink>) {
        let _ = self.sink.set(sink);
    }

    async fn publish(
        &self,
        room: &str,
        event: &str,
        payload: Payload,
        durable: bool,
    ) -> Result<Published, FanoutError> {
        if !self.conn.commands_up() {
            if durable {
                return Err(self.unreachable());
            }
            return Ok(self.deliver_locally(room, event, payload));
        }
        let args = self.publish_args(room, event, &payload);
        let r = self
            .scripts
            .publish(&self.conn.client, args, room, event, &payload, durable)
            .await;
        self.published(room, event, payload, durable, r)
    }

    /// One pipelined round trip to Redis for the whole batch (see
    /// [`Scripts::publish_pipelined`]); one at a time while Redis is down, as [`Self::publish`]
    /// then answers each on its own.
    async fn publish_many(
        &self,
        items: Vec<PublishRequest>,
    ) -> Vec<Result<Published, FanoutError>> {
        if items.len() < 2 || !self.conn.commands_up() {
            return super::publish_one_by_one(self, items).await;
        }
        let calls = items
            .iter()
            .map(|it| {
                let args = self.publish_args(&it.room, &it.event, &it.payload);
                (
                    args,
                    it.room.as_str(),
                    it.event.as_str(),
                    &it.payload,
                    it.durable,
                )
            })
            .collect();
        let answers = self
            .scripts
            .publish_pipelined(&self.conn.client, calls)
            .await;
        items
            .into_iter()
            .zip(answers)
            .map(|(it, r)| self.published(&it.room, &it.event, it.payload, it.durable, r))
            .collect()
    }

    async fn create_session(
        &self,
        session_id: &str,
        user_id: &str,
        expires_at_ms: u64,
    ) -> Result<(), FanoutError> {
        if !self.conn.commands_up() {
            return Err(self.unreachable());
        }
        let ttl =
            i64::try_from(expires_at_ms.saturating_sub(now_unix_ms()).max(1)).unwrap_or(i64::MAX);
        let value = format!("{expires_at_ms}:{user_id}");
        self.conn
            .client
            .set::<Value, _, _>(
                self.keys.session(session_id),
                value,
                Some(Expiration::PX(ttl)),
                None,
                false,
            )
            .await
            .map_err(|e| self.fail("session create", e))?;
        Ok(())
    }

    async fn revoke_session(&self, session_id: &str) -> Result<Option<String>, FanoutError> {
        if !self.conn.commands_up() {
            return Err(self.unreachable());
        }
        let old: Option<String> = self
            .conn
            .client
            .getdel(self.keys.session(session_id))
            .await
            .map_err(|e| self.fail("session revoke", e))?;
        let Some(user) = old.as_deref().and_then(parse_session).map(|s| s.user_id) else {
            return Ok(None);
        };
        let msg = wire::encode_revoked(session_id, &user);
        self.conn
            .client
            .publish::<Value, _, _>(self.keys.events_channel(), msg)
            .await
            .map_err(|e| self.fail("session revoke broadcast", e))?;
        Ok(Some(user))
    }

    async fn session(&self, session_id: &str) -> Result<Option<SessionInfo>, FanoutError> {
        if !self.conn.commands_up() {
            return Err(self.unreachable());
        }
        let v: Option<String> = self
            .conn
            .client
            .get(self.keys.session(session_id))
            .await
            .map_err(|e| self.fail("session lookup", e))?;
        Ok(v.as_deref()
            .and_then(parse_session)
            .filter(|s| s.expires_at_ms > now_unix_ms()))
    }

    fn needs_prepare(&self) -> bool {
        true
    }

    async fn prepare(&self, rooms: &[String]) -> Result<(), FanoutError> {
        for room in rooms {
            self.load_room(room).await?;
        }
        Ok(())
    }

    fn history(&self, room: &str, after: u64) -> Result<History, FanoutError> {
        self.mirror
            .history(room, after, now_unix_ms())
            .map_err(|e| FanoutError::Internal(e.to_string()))
    }

    fn events_after_index(
        &self,
        rooms: &[String],
        index: u64,
    ) -> Result<Vec<(String, StoredEvent)>, FanoutError> {
        self.mirror
            .events_after_index(rooms, index, now_unix_ms())
            .map_err(|e| FanoutError::Internal(e.to_string()))
    }

    fn membership(&self, change: Membership) {
        self.members.change(change);
    }

    async fn recover(&self, pid: &str) -> Result<Option<RecoveredSocket>, FanoutError> {
        if !self.conn.commands_up() {
            return Err(self.unreachable());
        }
        self.members
            .recover(pid)
            .await
            .map_err(|e| self.fail("recovery", e))
    }

    async fn presence(&self, user_id: &str) -> Result<Presence, FanoutError> {
        if !self.conn.commands_up() {
            return Err(self.unreachable());
        }
        self.members
            .presence(user_id)
            .await
            .map_err(|e| self.fail("presence", e))
    }

    async fn counts(&self) -> Result<ClusterCounts, FanoutError> {
        if !self.conn.commands_up() {
            return Err(self.unreachable());
        }
        self.members
            .counts()
            .await
            .map_err(|e| self.fail("stats", e))
    }

    fn health(&self) -> BackendHealth {
        let healthy = self.conn.healthy();
        BackendHealth {
            healthy,
            degraded: false,
            ready: healthy,
            detail: json!({ "status": self.conn.status(), "healthy": healthy }),
        }
    }

    async fn shutdown(&self) {
        for t in self.tasks.lock().drain(..) {
            t.abort();
        }
        if self.conn.commands_up() {
            if let Err(e) = self.members.leave().await {
                tracing::warn!(error = %e, "removing this node's membership from Redis failed");
            }
        }
        self.conn.close().await;
    }
}

fn parse_session(v: &str) -> Option<SessionInfo> {
    let (exp, user) = v.split_once(':')?;
    Some(SessionInfo {
        user_id: user.to_owned(),
        expires_at_ms: exp.parse().ok()?,
    })
}
