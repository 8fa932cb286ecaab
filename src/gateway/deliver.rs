//! Delivery of what the backend applies to this node's sockets: each event is encoded once
//! as `[event, data, meta, "<index>"]` (the index only on durable events, for Socket.IO's
//! connection state recovery) and its shared bytes go to every local member of the room.

use serde_json::json;

use super::{Gateway, SocketCtx};
use crate::fanout::{Delivery, Sink, StoredEvent};
use crate::socketio::{encode, Frames, Target};
use crate::util::now_unix_ms;

/// Where an event sits: `meta` of the contract, plus the recovery position of durable events.
struct Meta<'a> {
    room: &'a str,
    offset: u64,
    epoch: &'a str,
    ts: u64,
    index: Option<u64>,
}

fn frames(event: &str, payload: &crate::fanout::Payload, m: Meta<'_>) -> Frames {
    let (data, attachments, index) = (&payload.data, &payload.attachments, m.index);
    let meta = json!({ "room": m.room, "offset": m.offset, "epoch": m.epoch, "ts": m.ts });
    let mut args = String::with_capacity(data.len() + 96);
    args.push_str(data);
    args.push(',');
    args.push_str(&meta.to_string());
    if let Some(index) = index {
        args.push_str(",\"");
        args.push_str(&index.to_string());
        args.push('"');
    }
    encode::event_raw("/", event, &args, attachments, None)
}

/// Frames of a history event being replayed (same shape as live delivery).
pub(crate) fn encode_stored(room: &str, e: &StoredEvent, epoch: &str) -> Frames {
    frames(
        &e.event,
        &e.payload,
        Meta {
            room,
            offset: e.offset,
            epoch,
            ts: e.ts_ms,
            index: Some(e.index),
        },
    )
}

impl Sink for Gateway {
    fn deliver(&self, d: &Delivery) {
        let Some(ns) = self.0.ns.get() else {
            tracing::error!(room = %d.room, "delivery before the namespace is bound; dropped");
            return;
        };
        let f = frames(
            &d.event,
            &d.payload,
            Meta {
                room: &d.room,
                offset: d.offset,
                epoch: &d.epoch,
                ts: d.ts_ms,
                index: d.durable.then_some(d.index),
            },
        );
        let n = ns.broadcast_seq(&Target::room(d.room.as_str()), &f, d.index);
        if n > 0 {
            let label = crate::telemetry::event_label(&d.event);
            metrics::counter!("raftcast_deliveries_total", "event" => label).increment(n as u64);
            let lag = now_unix_ms().saturating_sub(d.ts_ms) as f64 / 1000.0;
            metrics::histogram!("raftcast_publish_to_deliver_seconds").record(lag);
        }
    }

    fn session_revoked(&self, session_id: &str, user_id: &str) {
        let Some(ns) = self.0.ns.get() else { return };
        for s in ns.room_sockets(&raftcast_raft::user_room(user_id)) {
            let revoked = s
                .state::<SocketCtx>()
                .is_some_and(|c| c.identity.session_id.as_deref() == Some(session_id));
            if revoked {
                s.emit(
                    "error",
                    &[json!({"code": "UNAUTHORIZED", "message": "session revoked"})],
                );
                s.disconnect();
            }
        }
    }
}
