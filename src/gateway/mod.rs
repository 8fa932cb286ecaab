//! The seed's business rules on our Socket.IO layer: auth at connect, the user's own rooms,
//! subscriptions with replay, acks and confirmations, rate limits, the quote coalescer, and
//! delivery of what the fan-out backend applies. Nothing here knows which backend runs.

pub mod auth;
mod coalescer;
pub mod ctx;
mod deliver;
pub mod error;
mod events;
pub mod rate;
pub mod validate;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::fanout::{Membership, Payload, PublishRequest, Published, SharedFanout};
use crate::socketio::{
    Accept, BoxFuture, ConnectRequest, DisconnectReason, Event, Handler, Namespace, Refusal,
    Restore, Socket,
};
use crate::util::now_unix_ms;
pub use auth::{Authenticator, Identity};
pub use coalescer::Coalescer;
pub use ctx::SocketCtx;
pub use error::GatewayError;
use rate::MinuteRate;

/// The gateway's settings (from the node's config).
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    pub node_id: u64,
    pub max_connections: usize,
    pub max_symbols: usize,
    pub subscribe_rate: u32,
    pub event_rate: u32,
    pub session_ttl: Duration,
    pub quote_throttle: Duration,
    /// Most distinct symbols waiting in the coalescer at once.
    pub max_pending_quotes: usize,
}

pub(crate) struct Inner {
    pub(crate) settings: GatewaySettings,
    pub(crate) fanout: SharedFanout,
    auth: Authenticator,
    ns: OnceLock<Arc<Namespace>>,
    capacity_warned: AtomicBool,
    pub(crate) coalescer: Coalescer,
    pub(crate) published: MinuteRate,
    pub(crate) started: Instant,
}

/// The gateway: a cheap handle, shared by the Socket.IO namespace, the backend's delivery
/// sink, the HTTP API and library users.
#[derive(Clone)]
pub struct Gateway(pub(crate) Arc<Inner>);

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("node_id", &self.0.settings.node_id)
            .finish()
    }
}

/// A new session.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewSession {
    pub session_id: String,
    pub user_id: String,
    /// RFC 3339 time at which the session expires.
    pub expires_at: String,
}

impl Gateway {
    pub fn new(
        settings: GatewaySettings,
        fanout: SharedFanout,
        jwt_secret: Option<&str>,
    ) -> Gateway {
        Gateway(Arc::new(Inner {
            coalescer: Coalescer::new(settings.max_pending_quotes),
            settings,
            fanout,
            auth: Authenticator::new(jwt_secret),
            ns: OnceLock::new(),
            capacity_warned: AtomicBool::new(false),
            published: MinuteRate::default(),
            started: Instant::now(),
        }))
    }

    /// Binds the gateway to its namespace; call once, before serving.
    pub fn bind(&self, ns: Arc<Namespace>) {
        let _ = self.0.ns.set(ns);
    }

    /// The namespace served.
    pub fn namespace(&self) -> Option<&Arc<Namespace>> {
        self.0.ns.get()
    }

    /// The fan-out backend.
    pub fn fanout(&self) -> &SharedFanout {
        &self.0.fanout
    }

    /// Time since start.
    pub fn uptime(&self) -> Duration {
        self.0.started.elapsed()
    }

    /// Durable and volatile publishes of this node in the last minute.
    pub fn events_per_minute(&self) -> u64 {
        self.0.published.per_minute()
    }

    /// Starts background work (the quote coalescer). Needs a Tokio runtime.
    pub fn start(&self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(coalescer::run(self.clone()))
    }

    /// Creates a session for `user_id`, valid for `ttl` (default: the configured TTL).
    pub async fn create_session(
        &self,
        user_id: &str,
        ttl: Option<Duration>,
    ) -> Result<NewSession, GatewayError> {
        validate::check_user_id(user_id)?;
        let ttl = ttl.unwrap_or(self.0.settings.session_ttl);
        let expires_at_ms =
            now_unix_ms().saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        let session_id = format!(
            "{}{}",
            crate::socketio::random_id(),
            crate::socketio::random_id()
        );
        self.0
            .fanout
            .create_session(&session_id, user_id, expires_at_ms)
            .await?;
        Ok(NewSession {
            session_id,
            user_id: user_id.to_owned(),
            expires_at: crate::util::rfc3339_ms(expires_at_ms),
        })
    }

    /// Revokes a session; its sockets are disconnected on every node.
    pub async fn revoke_session(&self, session_id: &str) -> Result<bool, GatewayError> {
        Ok(self.0.fanout.revoke_session(session_id).await?.is_some())
    }

    /// Publishes `event` with JSON `data` to `room`.
    pub async fn emit_to_room(
        &self,
        room: &str,
        event: &str,
        data: &Value,
        durable: bool,
    ) -> Result<Published, GatewayError> {
        self.publish(room, event, Payload::json(data.to_string()), durable)
            .await
    }

    /// Publishes `event` with JSON `data` to `user:<user_id>`.
    pub async fn emit_to_user(
        &self,
        user_id: &str,
        event: &str,
        data: &Value,
        durable: bool,
    ) -> Result<Published, GatewayError> {
        validate::check_user_id(user_id)?;
        self.emit_to_room(&raftcast_raft::user_room(user_id), event, data, durable)
            .await
    }

    /// Publishes a payload (JSON text with binary placeholders, and attachments).
    pub async fn publish(
        &self,
        room: &str,
        event: &str,
        payload: Payload,
        durable: bool,
    ) -> Result<Published, GatewayError> {
        check_publish(room, event)?;
        let published = self.0.fanout.publish(room, event, payload, durable).await?;
        self.count_published(crate::telemetry::event_label(event), durable);
        Ok(published)
    }

    /// Counts a published event (the per-minute rate and the metric by event name).
    fn count_published(&self, event_label: &'static str, durable: bool) {
        self.0.published.add(1);
        metrics::counter!("raftcast_events_published_total", "event" => event_label, "durable" => if durable { "true" } else { "false" }).increment(1);
    }

    /// Publishes several events in order (events to one room get increasing offsets in the
    /// order given): one answer per event, in the same order. Every room and event name is
    /// checked before anything is published; the first bad one fails the whole call with its
    /// position (`emits[i]: ...`) and nothing is written.
    pub async fn publish_many(
        &self,
        items: Vec<PublishRequest>,
    ) -> Result<Vec<Result<Published, GatewayError>>, GatewayError> {
        for (i, it) in items.iter().enumerate() {
            check_publish(&it.room, &it.event).map_err(|e| e.at(&format!("emits[{i}]")))?;
        }
        if items.iter().any(|it| it.id.is_some()) && !self.0.fanout.dedups_retries() {
            return Err(GatewayError::InvalidPayload(
                "Idempotency-Key needs the Raft backend (the default): this node's backend \
                 does not keep the results a retry would be answered with"
                    .into(),
            ));
        }
        let labels: Vec<_> = items
            .iter()
            .map(|it| (crate::telemetry::event_label(&it.event), it.durable))
            .collect();
        let answers = self.0.fanout.publish_many(items).await;
        Ok(answers
            .into_iter()
            .zip(labels)
            .map(|(a, (event, durable))| {
                let p = a?;
                self.count_published(event, durable);
                Ok(p)
            })
            .collect())
    }

    /// Offers a quote to the coalescer (published at most once per throttle interval).
    pub fn offer_quote(&self, symbol: &str, quote: Value) -> Result<(), GatewayError> {
        if !validate::is_symbol(symbol) {
            return Err(GatewayError::InvalidPayload(
                "symbol must match ^[A-Z0-9.\\-]{1,15}$".into(),
            ));
        }
        self.0.coalescer.offer(symbol, quote)
    }

    fn ctx(socket: &Socket) -> Option<&SocketCtx> {
        socket.state::<SocketCtx>()
    }
}

/// The checks every publish passes: a valid room and event name.
fn check_publish(room: &str, event: &str) -> Result<(), GatewayError> {
    validate::check_room(room)?;
    validate::check_event_name(event)
}

impl Handler for Gateway {
    fn connect(&self, req: ConnectRequest) -> BoxFuture<Result<Accept, Refusal>> {
        let g = self.clone();
        Box::pin(async move {
            let refuse = |e: GatewayError| Refusal {
                message: e.code().to_owned(),
                data: Some(e.body()),
            };
            if let Some(ns) = g.0.ns.get() {
                let (sockets, _) = ns.counts();
                let max = g.0.settings.max_connections;
                if sockets >= max {
                    tracing::warn!(limit = max, "connection refused: --max-connections reached");
                    return Err(Refusal {
                        message: "SERVER_FULL".into(),
                        data: Some(
                            json!({"code": "SERVER_FULL", "message": format!("this node is at its connection limit ({max}); try another node or later")}),
                        ),
                    });
                }
                if sockets * 5 >= max * 4 {
                    if !g.0.capacity_warned.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            connections = sockets,
                            limit = max,
                            "connections above 80% of --max-connections"
                        );
                    }
                } else {
                    g.0.capacity_warned.store(false, Ordering::Relaxed);
                }
            }
            // Sockets opened before the node has joined would be detached by its own
            // start-up record: wait (briefly) for readiness.
            if !g.0.fanout.wait_ready(Duration::from_secs(5)).await {
                let e = GatewayError::NoQuorum(
                    "this node has not joined its cluster yet; retry or use another node".into(),
                );
                return Err(refuse(e));
            }
            let identity = g
                .0
                .auth
                .authenticate(&req.auth, &g.0.fanout)
                .await
                .map_err(|e| {
                    tracing::info!(remote = %req.remote, reason = %e, "connection refused: unauthorized");
                    metrics::counter!("raftcast_auth_failures_total").increment(1);
                    refuse(e)
                })?;
            let (restore, rooms) = match &req.recover {
                Some((pid, offset)) => match g.restore(pid, offset, &identity).await {
                    Some((restore, rooms)) => (Some(restore), rooms),
                    None => (None, vec![raftcast_raft::user_room(&identity.user_id)]),
                },
                None => (None, vec![raftcast_raft::user_room(&identity.user_id)]),
            };
            let state = Arc::new(SocketCtx::new(
                identity,
                g.0.settings.event_rate,
                g.0.settings.subscribe_rate,
            ));
            Ok(Accept {
                state,
                rooms,
                restore,
            })
        })
    }

    fn connected(&self, socket: &Arc<Socket>) {
        let Some(ctx) = Self::ctx(socket) else { return };
        socket.emit(
            "connected",
            &[json!({
                "userId": ctx.user_id(),
                "socketId": socket.id(),
                "nodeId": self.0.settings.node_id,
                "serverTime": now_unix_ms(),
            })],
        );
        self.0.fanout.membership(Membership::Open {
            sid: socket.id().to_owned(),
            pid: socket.pid().unwrap_or_default().to_owned(),
            user_id: ctx.user_id().to_owned(),
            session_id: ctx.identity.session_id.clone(),
            rooms: socket.rooms(),
        });
        metrics::counter!("raftcast_connections_total").increment(1);
    }

    fn event(&self, socket: &Arc<Socket>, event: Event) -> Option<BoxFuture<()>> {
        events::handle(self, socket, event)
    }

    fn disconnected(&self, socket: &Arc<Socket>, reason: DisconnectReason) {
        self.0.fanout.membership(Membership::Close {
            sid: socket.id().to_owned(),
            user_id: Self::ctx(socket).map(|c| c.user_id().to_owned()),
            recoverable: reason.is_recoverable() && socket.pid().is_some(),
        });
        metrics::counter!("raftcast_disconnections_total", "reason" => reason.as_str())
            .increment(1);
    }
}

impl Gateway {
    /// Connection state recovery: the detached socket of `pid`, if it belongs to the same
    /// user, with the durable packets after `offset` (a global index) in its rooms.
    async fn restore(
        &self,
        pid: &str,
        offset: &str,
        identity: &Identity,
    ) -> Option<(Restore, Vec<String>)> {
        let index: u64 = offset.parse().ok()?;
        let rec = match self.0.fanout.recover(pid).await {
            Ok(Some(rec)) if self.0.fanout.needs_prepare() => {
                if let Err(e) = self.0.fanout.prepare(&rec.rooms).await {
                    tracing::warn!(error = %e, "could not load room histories for recovery");
                }
                rec
            }
            Ok(Some(rec)) => rec,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(error = %e, "connection state recovery failed");
                return None;
            }
        };
        if rec.user_id != identity.user_id {
            tracing::warn!("recovery refused: the session belongs to another user");
            return None;
        }
        let fanout = self.0.fanout.clone();
        let rooms = rec.rooms.clone();
        let pid = pid.to_owned();
        let restore = Restore {
            sid: rec.sid.clone(),
            pid,
            replay: Box::new(move |watermark| {
                // Rooms are restored by the layer's join; this only produces missed packets.
                match fanout.events_after_index(&rooms, index) {
                    Ok(events) => events
                        .into_iter()
                        .filter(|(_, e)| e.index <= watermark)
                        .map(|(room, e)| deliver::encode_stored(&room, &e, &fanout.epoch()))
                        .collect(),
                    Err(e) => {
                        tracing::warn!(error = %e, "recovery replay failed");
                        Vec::new()
                    }
                }
            }),
        };
        Some((restore, rec.rooms))
    }
}
