//! Client events: subscribe/unsubscribe (portfolio, watchlist, trades) with replay after
//! `since`, and `ping`. Every event is answered: its confirmation event (and the ack with
//! the same object), or an `error` event (and the ack `{ error }`). Nothing is dropped.

use std::sync::Arc;

use serde_json::{json, Value};

use super::deliver::encode_stored;
use super::error::GatewayError;
use super::validate::{is_symbol, parse_since, Since};
use super::{Gateway, SocketCtx};
use crate::fanout::Membership;
use crate::socketio::{AckSender, BoxFuture, Event, Frames, Socket};
use crate::util::now_unix_ms;

/// Sends the confirmation event and the ack with the same object.
fn confirm(socket: &Socket, ack: Option<AckSender>, event: &str, value: Value) {
    socket.emit(event, std::slice::from_ref(&value));
    if let Some(ack) = ack {
        ack.send(&[value]);
    }
}

/// Sends the `error` event and the ack `{ error }`.
fn fail(socket: &Socket, ack: Option<AckSender>, event: &str, err: GatewayError) {
    let mut body = err.body();
    body["event"] = json!(event);
    socket.emit("error", &[body]);
    if let Some(ack) = ack {
        ack.send(&[json!({ "error": err.body() })]);
    }
}

/// Handles a client event; returns work to await when the backend must load histories
/// before a subscription can replay them.
pub(super) fn handle(g: &Gateway, socket: &Arc<Socket>, ev: Event) -> Option<BoxFuture<()>> {
    let fanout = &g.0.fanout;
    let needs = fanout.needs_prepare()
        && matches!(
            ev.name.as_str(),
            "subscribe:portfolio" | "subscribe:trades" | "subscribe:watchlist"
        );
    if !needs {
        handle_now(g, socket, ev);
        return None;
    }
    let rooms = socket
        .state::<SocketCtx>()
        .map(|ctx| rooms_for(ctx, &ev))
        .unwrap_or_default();
    let (g, socket, fanout) = (g.clone(), socket.clone(), fanout.clone());
    Some(Box::pin(async move {
        if let Err(e) = fanout.prepare(&rooms).await {
            tracing::warn!(error = %e, "could not load room histories before a subscription");
        }
        handle_now(&g, &socket, ev);
    }))
}

/// The rooms a subscription event would replay.
fn rooms_for(ctx: &SocketCtx, ev: &Event) -> Vec<String> {
    match ev.name.as_str() {
        "subscribe:portfolio" => vec![format!("portfolio:{}", ctx.user_id())],
        "subscribe:trades" => vec![raftcast_raft::user_room(ctx.user_id())],
        _ => ev
            .args
            .first()
            .and_then(|a| a.get("symbols"))
            .and_then(Value::as_array)
            .map(|l| {
                l.iter()
                    .filter_map(Value::as_str)
                    .filter(|s| is_symbol(s))
                    .take(64)
                    .map(|s| format!("watchlist:{s}"))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

fn handle_now(g: &Gateway, socket: &Arc<Socket>, mut ev: Event) {
    let Some(ctx) = socket.state::<SocketCtx>() else {
        return;
    };
    let ack = ev.ack.take();
    if let Err(e) = ctx.check_event() {
        metrics::counter!("raftcast_rate_limited_total", "what" => "event").increment(1);
        return fail(socket, ack, &ev.name, e);
    }
    let arg = ev.args.first().cloned().unwrap_or(Value::Null);
    let result = match ev.name.as_str() {
        "ping" => {
            let mut answer = json!({ "serverTime": now_unix_ms() });
            if !arg.is_null() {
                answer["echo"] = arg;
            }
            if let Some(ack) = ack {
                ack.send_binary(&[answer], &ev.attachments);
            }
            return;
        }
        "subscribe:portfolio" => {
            let room = format!("portfolio:{}", ctx.user_id());
            subscribe_room(g, socket, ctx, &arg, room).map(|v| ("subscribed:portfolio", v))
        }
        "subscribe:trades" => {
            let room = raftcast_raft::user_room(ctx.user_id());
            subscribe_room(g, socket, ctx, &arg, room).map(|v| ("subscribed:trades", v))
        }
        "unsubscribe:portfolio" => ctx.check_subscription().map(|()| {
            let room = format!("portfolio:{}", ctx.user_id());
            socket.leave(std::slice::from_ref(&room));
            g.0.fanout.membership(Membership::Leave {
                sid: socket.id().to_owned(),
                user_id: ctx.user_id().to_owned(),
                rooms: vec![room.clone()],
            });
            ("unsubscribed:portfolio", json!({ "room": room }))
        }),
        "subscribe:watchlist" => {
            subscribe_watchlist(g, socket, ctx, &arg).map(|v| ("subscribed:watchlist", v))
        }
        "unsubscribe:watchlist" => {
            unsubscribe_watchlist(g, socket, ctx, &arg).map(|v| ("unsubscribed:watchlist", v))
        }
        other => Err(GatewayError::InvalidPayload(format!(
            "unknown event {:?}",
            other.chars().take(100).collect::<String>()
        ))),
    };
    match result {
        Ok((event, value)) => confirm(socket, ack, event, value),
        Err(e) => {
            if matches!(e, GatewayError::RateLimit { .. }) {
                metrics::counter!("raftcast_rate_limited_total", "what" => "subscription")
                    .increment(1);
            }
            fail(socket, ack, &ev.name, e)
        }
    }
}

/// What a replay found for one room.
struct Replayed {
    offset: u64,
    epoch: String,
    recovered: bool,
}

/// Joins `room`, replaying its durable events after `since` first (atomically with the
/// join: nothing is missed or delivered twice).
fn join_replaying(g: &Gateway, socket: &Arc<Socket>, room: &str, since: Option<Since>) -> Replayed {
    let fanout = g.0.fanout.clone();
    let mut out = Replayed {
        offset: 0,
        epoch: fanout.epoch(),
        recovered: false,
    };
    let rooms = [room.to_owned()];
    socket.join_with_replay(&rooms, |watermark| {
        let after = since.as_ref().map_or(u64::MAX, |s| s.offset);
        let h = match fanout.history(room, after) {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(room, error = %e, "history unavailable for replay");
                return Vec::new();
            }
        };
        out.epoch = h.epoch.clone();
        out.offset = h.last_offset;
        let Some(since) = since else {
            return Vec::new();
        };
        let covered = since.epoch == h.epoch
            && since.offset <= h.last_offset
            && (since.offset == h.last_offset
                || h.first_retained.is_some_and(|f| f <= since.offset + 1));
        if !covered {
            return Vec::new();
        }
        out.recovered = true;
        let mut frames: Vec<Frames> = Vec::with_capacity(h.events.len());
        let mut last = since.offset;
        for e in h.events.iter().filter(|e| e.index <= watermark) {
            last = e.offset;
            frames.push(encode_stored(room, e, &h.epoch));
        }
        // Later events are applied but not delivered here yet: they arrive live.
        out.offset = last.max(since.offset);
        frames
    });
    out
}

fn subscribe_room(
    g: &Gateway,
    socket: &Arc<Socket>,
    ctx: &SocketCtx,
    arg: &Value,
    room: String,
) -> Result<Value, GatewayError> {
    let since = parse_since(arg.get("since"))?;
    ctx.check_subscription()?;
    let r = join_replaying(g, socket, &room, since);
    g.0.fanout.membership(Membership::Join {
        sid: socket.id().to_owned(),
        user_id: ctx.user_id().to_owned(),
        rooms: vec![room.clone()],
    });
    Ok(json!({ "room": room, "offset": r.offset, "epoch": r.epoch, "recovered": r.recovered }))
}

fn symbols_of(arg: &Value) -> Result<Vec<String>, GatewayError> {
    let list = arg
        .get("symbols")
        .and_then(Value::as_array)
        .filter(|l| !l.is_empty())
        .ok_or_else(|| {
            GatewayError::InvalidPayload("symbols must be a non-empty array of symbols".into())
        })?;
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for s in list {
        match s.as_str() {
            Some(sym) if is_symbol(sym) => {
                if !out.iter().any(|x| x == sym) {
                    out.push(sym.to_owned());
                }
            }
            _ => {
                return Err(GatewayError::InvalidPayload(format!(
                    "invalid symbol {s}: symbols match ^[A-Z0-9.\\-]{{1,15}}$"
                )))
            }
        }
    }
    Ok(out)
}

fn subscribe_watchlist(
    g: &Gateway,
    socket: &Arc<Socket>,
    ctx: &SocketCtx,
    arg: &Value,
) -> Result<Value, GatewayError> {
    let max = g.0.settings.max_symbols;
    let candidate_count = arg
        .get("symbols")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    if candidate_count > max {
        return Err(GatewayError::SubscriptionLimit(format!(
            "at most {max} watchlist symbols per connection"
        )));
    }
    let symbols = symbols_of(arg)?;
    // `since` is one marker for a single symbol, or a map SYMBOL -> marker.
    let since_for = |sym: &str| -> Result<Option<Since>, GatewayError> {
        match arg.get("since") {
            Some(Value::Object(m)) if !m.contains_key("offset") => parse_since(m.get(sym)),
            other if symbols.len() == 1 => parse_since(other),
            None | Some(Value::Null) => Ok(None),
            Some(_) => Err(GatewayError::InvalidPayload(
                "with several symbols, since must map each SYMBOL to { offset, epoch }".into(),
            )),
        }
    };
    let sinces = symbols
        .iter()
        .map(|s| since_for(s))
        .collect::<Result<Vec<_>, _>>()?;
    let rooms: Vec<String> = symbols.iter().map(|s| format!("watchlist:{s}")).collect();
    let current = socket
        .rooms()
        .iter()
        .filter(|r| r.starts_with("watchlist:"))
        .count();
    let new = rooms.iter().filter(|r| !socket.in_room(r)).count();
    if current + new > max {
        return Err(GatewayError::SubscriptionLimit(format!(
            "at most {max} watchlist symbols per connection ({current} already)"
        )));
    }
    ctx.check_subscription()?;
    let mut recovered = serde_json::Map::new();
    for (room, since) in rooms.iter().zip(sinces) {
        let had_since = since.is_some();
        let r = join_replaying(g, socket, room, since);
        if had_since {
            recovered.insert(
                room.clone(),
                json!({ "offset": r.offset, "epoch": r.epoch, "recovered": r.recovered }),
            );
        }
    }
    g.0.fanout.membership(Membership::Join {
        sid: socket.id().to_owned(),
        user_id: ctx.user_id().to_owned(),
        rooms: rooms.clone(),
    });
    let mut v = json!({ "symbols": symbols, "rooms": rooms });
    if !recovered.is_empty() {
        v["recovery"] = Value::Object(recovered);
    }
    Ok(v)
}

fn unsubscribe_watchlist(
    g: &Gateway,
    socket: &Arc<Socket>,
    ctx: &SocketCtx,
    arg: &Value,
) -> Result<Value, GatewayError> {
    let symbols = symbols_of(arg)?;
    ctx.check_subscription()?;
    let rooms: Vec<String> = symbols.iter().map(|s| format!("watchlist:{s}")).collect();
    socket.leave(&rooms);
    g.0.fanout.membership(Membership::Leave {
        sid: socket.id().to_owned(),
        user_id: ctx.user_id().to_owned(),
        rooms,
    });
    Ok(json!({ "symbols": symbols }))
}
