//! `POST /api/emit` (one event) and `POST /api/emit/batch` (up to [`MAX_BATCH_EMITS`]
//! events in one request, in order): what a backend calls to publish.
//!
//! A batch exists for throughput: one request, one parse and one answer for many events,
//! and the Raft backend commits them in as few log entries as its batch limits allow.
//!
//! Both take an optional `Idempotency-Key` header: a request repeated with the same key
//! (to any node, within the de-duplication window) is answered with the first attempt's
//! results if that attempt was committed, and published once if it was not
//! ([`raftcast_raft::idempotent_id`]). The Raft backend only; others answer 400.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::api::{invalid, json_body, opt_str, ApiError, ApiResult};
use super::AppState;
use crate::fanout::{Payload, PublishRequest};
use crate::gateway::GatewayError;

/// Most events in one `POST /api/emit/batch`.
pub const MAX_BATCH_EMITS: usize = 1000;
/// A batch's body may be this many times `--max-body-bytes` (1 MiB at the default 64 KiB);
/// each event's `data` still fits in `--max-body-bytes` as for a single emit.
pub const BATCH_BODY_FACTOR: usize = 16;

/// The header naming a request's idempotency key.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Longest idempotency key accepted.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

/// The request's idempotency key, if it has one: 1 to [`MAX_IDEMPOTENCY_KEY`] visible ASCII
/// characters.
fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(v) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    match v.to_str() {
        Ok(k) if !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY && k.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(Some(k.to_owned()))
        }
        _ => Err(invalid(format!(
            "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters (a UUID is a good one)"
        ))),
    }
}

/// Reads one emit object: exactly one of `room`/`userId`, `event`, `data`, `durable?`.
fn emit_request(m: &Map<String, Value>, max_data: usize) -> ApiResult<PublishRequest> {
    let room = match (opt_str(m, "room")?, opt_str(m, "userId")?) {
        (Some(room), None) => room.to_owned(),
        (None, Some(user)) => {
            crate::gateway::validate::check_user_id(user)?;
            raftcast_raft::user_room(user)
        }
        _ => return Err(invalid("give exactly one of room or userId")),
    };
    let event = opt_str(m, "event")?.ok_or_else(|| invalid("event is required"))?;
    let durable = match m.get("durable") {
        None | Some(Value::Null) => event != "quote:update",
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(invalid("durable must be a boolean")),
    };
    let data = m
        .get("data")
        .map_or_else(|| "null".to_owned(), Value::to_string);
    if data.len() > max_data {
        return Err(ApiError(GatewayError::PayloadTooLarge(format!(
            "data is {} bytes, more than --max-body-bytes ({max_data})",
            data.len()
        ))));
    }
    Ok(PublishRequest {
        room,
        event: event.to_owned(),
        payload: Payload::json(data),
        durable,
        id: None,
    })
}

/// `POST /api/emit`: `200 { room, offset, epoch }` once committed (durable) or accepted.
pub(super) async fn emit(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    let key = idempotency_key(&headers)?;
    let m = json_body(body)?;
    // The body limit already bounds a single emit's data.
    let mut r = emit_request(&m, usize::MAX)?;
    let p = match key {
        None => {
            state
                .gateway
                .publish(&r.room, &r.event, r.payload, r.durable)
                .await?
        }
        Some(key) => {
            r.id = Some(raftcast_raft::idempotent_id(&key, 0));
            let answer = state
                .gateway
                .publish_many(vec![r])
                .await?
                .into_iter()
                .next();
            answer.unwrap_or_else(|| Err(GatewayError::Internal("an emit got no answer".into())))?
        }
    };
    Ok(Json(
        json!({ "room": p.room, "offset": p.offset, "epoch": p.epoch }),
    ))
}

/// `POST /api/emit/batch` `{ emits: [ {room|userId, event, data, durable?}, ... ] }`.
///
/// Every event is checked first: one bad event answers 400/413 naming it (`emits[3]: ...`)
/// and nothing is written. Then the events are published in the order given (one room's
/// events get increasing offsets in that order) and the answer lists one result per event:
/// `{ room, offset, epoch }` or `{ room, error: { code, message } }`. The status is 200 when
/// every event was committed, 207 when some were not (their results say why), and the
/// first error's own status (503 `NO_QUORUM`, ...) when none was: then nothing was written.
/// With `--api-rate`, each event counts as one request. With an `Idempotency-Key`, event `i`
/// gets the id `idempotent_id(key, i)`: a repeated batch is answered as the first was.
pub(super) async fn emit_batch(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let key = idempotency_key(&headers)?;
    let m = json_body(body)?;
    let emits = match m.get("emits") {
        Some(Value::Array(a)) => a,
        Some(_) => return Err(invalid("emits must be an array of emit objects")),
        None => return Err(invalid("emits is required (an array of emit objects)")),
    };
    if emits.is_empty() || emits.len() > MAX_BATCH_EMITS {
        return Err(invalid(format!(
            "emits must hold 1 to {MAX_BATCH_EMITS} events (it holds {})",
            emits.len()
        )));
    }
    let mut items = Vec::with_capacity(emits.len());
    for (i, e) in emits.iter().enumerate() {
        let Value::Object(e) = e else {
            return Err(invalid(format!("emits[{i}]: must be an object")));
        };
        let mut r = emit_request(e, state.config.max_body_bytes)
            .map_err(|ApiError(e)| ApiError(e.at(&format!("emits[{i}]"))))?;
        r.id = key.as_deref().map(|k| raftcast_raft::idempotent_id(k, i));
        items.push(r);
    }
    take_rate(&state, items.len())?;
    let rooms: Vec<String> = items.iter().map(|r| r.room.clone()).collect();
    let answers = state.gateway.publish_many(items).await?;
    let failed = answers.iter().filter(|a| a.is_err()).count();
    if failed == answers.len() {
        // Nothing was committed: answer as a single emit would, with the first error.
        return Err(ApiError(match answers.into_iter().next() {
            Some(Err(first)) => first,
            _ => GatewayError::Internal("a batch of events got no answers".into()),
        }));
    }
    let results: Vec<Value> = answers
        .into_iter()
        .zip(rooms)
        .map(|(a, room)| match a {
            Ok(p) => json!({ "room": p.room, "offset": p.offset, "epoch": p.epoch }),
            Err(e) => json!({ "room": room, "error": e.body() }),
        })
        .collect();
    let status = if failed == 0 {
        StatusCode::OK
    } else {
        StatusCode::MULTI_STATUS
    };
    let body = json!({ "ok": results.len() - failed, "failed": failed, "results": results });
    Ok((status, Json(body)).into_response())
}

/// With `--api-rate`, a batch of n events takes n cells: the guard took one for the request.
/// A batch larger than one second's allowance could never pass, so it is refused with why.
fn take_rate(state: &AppState, n: usize) -> ApiResult<()> {
    let Some(limiter) = &state.api_limiter else {
        return Ok(());
    };
    let too_large = || {
        ApiError(GatewayError::RateLimit {
            message: format!(
                "a batch of {n} events is more than --api-rate allows in one second ({}); send smaller batches",
                state.config.api_rate
            ),
            retry_after_ms: 1000,
        })
    };
    if n > state.config.api_rate as usize {
        return Err(too_large());
    }
    let Some(more) = u32::try_from(n.saturating_sub(1))
        .ok()
        .and_then(std::num::NonZeroU32::new)
    else {
        return Ok(());
    };
    match limiter.check_n(more) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(nu)) => Err(super::api::rate_limited(
            &nu,
            format!("API rate limit reached ({n} events in this batch)"),
        )),
        Err(_) => Err(too_large()),
    }
}
