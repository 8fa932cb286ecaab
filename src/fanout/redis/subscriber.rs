//! The node's one subscriber task: it (re)subscribes after every (re)connection — so a
//! Redis restart never leaves nodes deaf to each other — and hands what it hears, in the
//! order Redis published it, to the mirror and then to the sink.
//!
//! Heard on the events channel: deliveries (this node's own publishes too: one path, one
//! order) and session revocations. Heard on the Node adapter's channels: broadcasts of Node
//! servers, delivered to local members as volatile events.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use fred::interfaces::{ClientLike, EventInterface, PubsubInterface};
use fred::types::Message;
use parking_lot::Mutex;
use tokio::sync::broadcast::error::RecvError;

use super::super::{Delivery, Sink};
use super::conn::Conn;
use super::interop;
use super::keys::{Keys, ADAPTER_CHANNEL, ADAPTER_PATTERN};
use super::mirror::Mirror;
use super::wire::{self, ClusterMsg};
use crate::util::now_unix_ms;

/// Why a subscription could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    #[error("subscribing to {channel}: {source}")]
    Subscribe {
        channel: String,
        source: fred::error::Error,
    },
}

/// What the subscriber task shares with the backend.
pub struct Shared {
    pub conn: Arc<Conn>,
    pub keys: Keys,
    pub mirror: Arc<Mirror>,
    pub sink: Arc<OnceLock<Arc<dyn Sink>>>,
    /// The current epoch of the deployment as last heard.
    pub epoch: Arc<Mutex<String>>,
    /// Adapter uids starting with this are raftcast nodes of this deployment: ignored there,
    /// since they are heard on the events channel.
    pub own_uid_prefix: String,
}

/// Runs until the subscriber connection is closed.
pub async fn run(s: Arc<Shared>) {
    let mut messages = s.conn.sub.message_rx();
    let mut reconnects = s.conn.sub.reconnect_rx();
    if s.conn.sub.wait_for_connect().await.is_ok() {
        subscribe(&s).await;
    }
    loop {
        tokio::select! {
            m = messages.recv() => match m {
                Ok(m) => handle(&s, &m),
                Err(RecvError::Lagged(n)) => {
                    tracing::error!(missed = n, "Redis subscriber fell behind; room mirrors reloaded on next use");
                    s.mirror.clear();
                }
                Err(RecvError::Closed) => break,
            },
            r = reconnects.recv() => match r {
                Ok(_) => {
                    // Deliveries may have been missed while disconnected.
                    s.mirror.clear();
                    subscribe(&s).await;
                }
                Err(RecvError::Lagged(_)) => subscribe(&s).await,
                Err(RecvError::Closed) => break,
            },
        }
    }
    tracing::debug!("Redis subscriber task stopped");
}

async fn try_subscribe(s: &Shared) -> Result<(), SubscribeError> {
    let events = s.keys.events_channel();
    s.conn
        .sub
        .subscribe(events.as_str())
        .await
        .map_err(|source| SubscribeError::Subscribe {
            channel: events.clone(),
            source,
        })?;
    s.conn
        .sub
        .psubscribe(ADAPTER_PATTERN)
        .await
        .map_err(|source| SubscribeError::Subscribe {
            channel: ADAPTER_PATTERN.to_owned(),
            source,
        })?;
    Ok(())
}

/// Subscribes, retrying with the seed's backoff while the connection stays up.
async fn subscribe(s: &Shared) {
    s.conn.subscribed.store(false, Ordering::Release);
    let mut attempt: u64 = 0;
    loop {
        match try_subscribe(s).await {
            Ok(()) => {
                s.conn.subscribed.store(true, Ordering::Release);
                tracing::info!(channel = %s.keys.events_channel(), pattern = ADAPTER_PATTERN, "Redis subscriptions in place");
                return;
            }
            Err(e) => {
                attempt += 1;
                tracing::error!(error = %e, attempt, "Redis subscription failed; retrying");
                if !s.conn.sub.is_connected() {
                    // The reconnection will call us again.
                    return;
                }
                tokio::time::sleep(Duration::from_millis((attempt * 50).min(2000))).await;
            }
        }
    }
}

fn handle(s: &Shared, m: &Message) {
    let Some(sink) = s.sink.get() else { return };
    let Some(bytes) = m.value.as_bytes() else {
        tracing::warn!(channel = %m.channel, "non-binary Redis message ignored");
        return;
    };
    let channel: &str = &m.channel;
    if channel == s.keys.events_channel() {
        match wire::decode(bytes) {
            Ok(ClusterMsg::Delivery(d)) => {
                {
                    let mut e = s.epoch.lock();
                    if *e != d.epoch {
                        tracing::info!(old = %e, new = %d.epoch, "Redis history epoch changed");
                        e.clone_from(&d.epoch);
                    }
                }
                s.mirror.on_delivery(&d);
                sink.deliver(&d);
            }
            Ok(ClusterMsg::Revoked {
                session_id,
                user_id,
            }) => sink.session_revoked(&session_id, &user_id),
            Err(e) => {
                tracing::warn!(channel, error = %e, "malformed message on the events channel")
            }
        }
    } else if channel.starts_with(ADAPTER_CHANNEL) {
        match interop::decode(channel, bytes) {
            Ok(Some(b)) if !b.uid.starts_with(&s.own_uid_prefix) => {
                if b.rooms.is_empty() {
                    tracing::debug!(event = %b.event, "adapter broadcast to every socket is not delivered (rooms only)");
                }
                let epoch = s.epoch.lock().clone();
                for room in &b.rooms {
                    sink.deliver(&Delivery {
                        room: room.clone(),
                        event: b.event.clone(),
                        payload: b.payload.clone(),
                        durable: false,
                        offset: s.mirror.last_offset(room),
                        epoch: epoch.clone(),
                        ts_ms: now_unix_ms(),
                        index: 0,
                    });
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(channel, error = %e, "malformed Socket.IO adapter message"),
        }
    }
}
