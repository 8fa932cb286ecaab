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
    let mut args = String::with_capacity(data.len() + 96);
    args.push_str(data);
    args.push(',');
    push_meta(&mut args, &m);
    if let Some(index) = index {
        args.push_str(",\"");
        args.push_str(&index.to_string());
        args.push('"');
    }
    encode::event_raw("/", event, &args, attachments, None)
}

/// Appends `meta` as the JSON object `{"epoch":…,"offset":…,"room":…,"ts":…}`: the bytes
/// `serde_json::json!` gives (keys in its sorted order), written without building a `Value`
/// for every delivery.
fn push_meta(out: &mut String, m: &Meta<'_>) {
    use std::fmt::Write;
    out.push_str("{\"epoch\":");
    push_json_str(out, m.epoch);
    // Writing to a String cannot fail.
    let _ = write!(out, ",\"offset\":{},\"room\":", m.offset);
    push_json_str(out, m.room);
    let _ = write!(out, ",\"ts\":{}}}", m.ts);
}

fn push_json_str(out: &mut String, s: &str) {
    match serde_json::to_string(s) {
        Ok(q) => out.push_str(&q),
        // A str always serializes; were it not to, an empty string keeps the JSON valid.
        Err(_) => out.push_str("\"\""),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_is_the_bytes_of_the_json_object() {
        for (room, epoch) in [
            ("user:42", "e1"),
            ("q\"uote\\back", "tab\there"),
            ("ünï €", "\u{1}\u{1f}\u{7f}"),
            ("", ""),
        ] {
            let m = Meta {
                room,
                offset: u64::MAX,
                epoch,
                ts: 1_764_000_000_000,
                index: None,
            };
            let mut out = String::new();
            push_meta(&mut out, &m);
            let expected =
                json!({ "room": room, "offset": u64::MAX, "epoch": epoch, "ts": m.ts }).to_string();
            assert_eq!(out, expected);
        }
    }
}
