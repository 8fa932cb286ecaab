//! Delivery of what the Raft state machine applies: the state machine calls
//! [`Deliverer::applied`] right after each apply, in log order, and each event goes to this
//! node's sockets through the attached [`Sink`] there and then (no channel and no task
//! between the apply and the sockets' outboxes).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use raftcast_raft::{Applied, AppliedHandler};
use tokio::sync::Notify;

use super::raft::seq;
use super::{Delivery, Payload, Sink};

/// Hands applied events to the sink and tracks how far this node has delivered.
#[derive(Default)]
pub(crate) struct Deliverer {
    /// Set once, before the server accepts a connection: until then there is no local
    /// socket to deliver to.
    sink: OnceLock<Arc<dyn Sink>>,
    /// Highest log index delivered locally, and a wake-up for those waiting on it.
    delivered: AtomicU64,
    delivered_wake: Notify,
}

impl Deliverer {
    /// Attaches the sink; `false` when one was attached already.
    pub(crate) fn attach(&self, sink: Arc<dyn Sink>) -> bool {
        self.sink.set(sink).is_ok()
    }

    /// Waits (bounded) until this node has delivered log index `index`.
    pub(crate) async fn wait_delivered(&self, index: u64, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let wake = self.delivered_wake.notified();
            if self.delivered.load(Ordering::Acquire) >= index {
                return;
            }
            if tokio::time::timeout_at(deadline, wake).await.is_err() {
                tracing::debug!(index, "local apply lags; answering after commit only");
                return;
            }
        }
    }

    fn one(&self, sink: Option<&Arc<dyn Sink>>, a: Applied) -> Option<u64> {
        match a {
            Applied::Published {
                room,
                event,
                payload,
                durable,
                offset,
                epoch,
                ts_ms,
                index,
                pos,
            } => {
                let Some(sink) = sink else {
                    tracing::debug!(%room, index, "applied before the gateway attached; no local socket to deliver to");
                    return Some(index);
                };
                let payload = match Payload::from_bytes(&payload) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::error!(%room, index, error = %e, "undecodable payload in the log; skipped");
                        return Some(index);
                    }
                };
                sink.deliver(&Delivery {
                    room,
                    event,
                    payload,
                    durable,
                    offset,
                    epoch,
                    ts_ms,
                    index: seq(index, pos),
                });
                Some(index)
            }
            Applied::SessionRevoked {
                session_id,
                user_id,
            } => {
                if let Some(sink) = sink {
                    sink.session_revoked(&session_id, &user_id);
                }
                None
            }
            Applied::SocketsDetached { node, sids } => {
                tracing::info!(
                    node,
                    sockets = sids.len(),
                    "sockets of a node detached (kept for recovery)"
                );
                None
            }
            Applied::SnapshotInstalled => {
                tracing::info!("state replaced from a leader snapshot");
                None
            }
        }
    }
}

impl AppliedHandler for Deliverer {
    fn applied(&self, events: Vec<Applied>) {
        let sink = self.sink.get();
        let mut last = None;
        for a in events {
            if let Some(i) = self.one(sink, a) {
                last = Some(i);
            }
        }
        if let Some(i) = last {
            self.delivered.fetch_max(i, Ordering::AcqRel);
            self.delivered_wake.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;

    #[derive(Default)]
    struct Recording(Mutex<Vec<(String, u64, String)>>);

    impl Sink for Recording {
        fn deliver(&self, d: &Delivery) {
            self.0
                .lock()
                .push((d.room.clone(), d.index, d.payload.data.clone()));
        }
        fn session_revoked(&self, session_id: &str, _user_id: &str) {
            self.0.lock().push(("revoked".into(), 0, session_id.into()));
        }
    }

    fn published(room: &str, index: u64, pos: u32, data: &str) -> Applied {
        Applied::Published {
            room: room.into(),
            event: "trade".into(),
            payload: Payload::json(data).to_bytes(),
            durable: true,
            offset: 1,
            epoch: "e".into(),
            ts_ms: 1,
            index,
            pos,
        }
    }

    #[tokio::test]
    async fn applied_events_reach_the_sink_in_order_and_release_waiters() {
        let d = Arc::new(Deliverer::default());
        let sink = Arc::new(Recording::default());
        assert!(d.attach(sink.clone()));
        assert!(
            !d.attach(Arc::new(Recording::default())),
            "a second sink replaced the first"
        );

        let waiter = {
            let d = d.clone();
            tokio::spawn(async move { d.wait_delivered(7, Duration::from_secs(10)).await })
        };
        // One thread: the waiter runs up to its wait before the delivery below.
        tokio::task::yield_now().await;
        d.applied(vec![
            published("a", 7, 0, "1"),
            Applied::SessionRevoked {
                session_id: "s1".into(),
                user_id: "u".into(),
            },
            published("b", 7, 1, "2"),
        ]);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("a waiter for index 7 was not woken by its delivery")
            .expect("waiter task");
        assert_eq!(
            *sink.0.lock(),
            vec![
                ("a".to_string(), seq(7, 0), "1".to_string()),
                ("revoked".to_string(), 0, "s1".to_string()),
                ("b".to_string(), seq(7, 1), "2".to_string()),
            ]
        );
    }

    #[tokio::test]
    async fn events_before_the_sink_attaches_count_as_delivered() {
        // No socket can exist before the gateway attaches; the HTTP answer of a publish
        // must not wait for a delivery that will never come.
        let d = Deliverer::default();
        d.applied(vec![published("a", 3, 0, "x"), published("a", 4, 0, "{")]);
        tokio::time::timeout(
            Duration::from_secs(5),
            d.wait_delivered(4, Duration::from_secs(30)),
        )
        .await
        .expect("waited for events applied before the sink attached");
        // An undecodable payload is skipped, not delivered, and does not hold waiters either.
        let sink = Arc::new(Recording::default());
        d.attach(sink.clone());
        d.applied(vec![Applied::Published {
            room: "a".into(),
            event: "trade".into(),
            payload: vec![0xff],
            durable: true,
            offset: 2,
            epoch: "e".into(),
            ts_ms: 1,
            index: 5,
            pos: 0,
        }]);
        tokio::time::timeout(
            Duration::from_secs(5),
            d.wait_delivered(5, Duration::from_secs(30)),
        )
        .await
        .expect("an undecodable payload held the waiters");
        assert!(sink.0.lock().is_empty());
    }
}
