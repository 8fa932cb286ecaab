//! The backend HTTP API (`/api/*`, Bearer API key): sessions, emit, quotes, history,
//! presence and stats. Errors are JSON `{ code, message }` with the contract's statuses.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use super::AppState;
use crate::gateway::GatewayError;

/// An API error as a response.
pub struct ApiError(pub GatewayError);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.0.status(), Json(self.0.body())).into_response();
        if let GatewayError::RateLimit { retry_after_ms, .. } = &self.0 {
            let secs = retry_after_ms.div_ceil(1000).max(1);
            if let Ok(v) = http::HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(http::header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

impl From<GatewayError> for ApiError {
    fn from(e: GatewayError) -> Self {
        ApiError(e)
    }
}

pub(super) type ApiResult<T> = Result<T, ApiError>;

pub(super) fn invalid(msg: impl Into<String>) -> ApiError {
    ApiError(GatewayError::InvalidPayload(msg.into()))
}

/// The `/api` router.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/api/sessions", post(create_session))
        .route("/api/sessions/{id}", delete(revoke_session))
        .route("/api/emit", post(super::emit::emit))
        .route(
            "/api/emit/batch",
            post(super::emit::emit_batch).layer(axum::extract::DefaultBodyLimit::max(
                state
                    .config
                    .max_body_bytes
                    .saturating_mul(super::emit::BATCH_BODY_FACTOR),
            )),
        )
        .route("/api/quotes", post(quotes))
        .route("/api/rooms/{room}/history", get(history))
        .route("/api/presence/{user_id}", get(presence))
        .route("/api/stats", get(stats))
        .fallback(|| async {
            ApiError(GatewayError::InvalidPayload("no such API route".into()))
                .into_response_with(StatusCode::NOT_FOUND)
        })
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .layer(axum::extract::DefaultBodyLimit::max(
            state.config.max_body_bytes,
        ))
        .with_state(state)
}

impl ApiError {
    fn into_response_with(self, status: StatusCode) -> Response {
        let mut r = self.into_response();
        *r.status_mut() = status;
        r
    }
}

/// API key check (constant time) and the optional API rate limit.
async fn guard(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let given = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let ok: bool = given.as_bytes().ct_eq(state.api_key.as_bytes()).into();
    if given.is_empty() || !ok {
        metrics::counter!("raftcast_api_unauthorized_total").increment(1);
        return ApiError(GatewayError::Unauthorized(
            "missing or wrong API key (Authorization: Bearer <key>)".into(),
        ))
        .into_response();
    }
    if let Some(limiter) = &state.api_limiter {
        if let Err(nu) = limiter.check() {
            return rate_limited(&nu, "API rate limit reached".into()).into_response();
        }
    }
    next.run(req).await
}

/// A 429 `RATE_LIMIT` with `message`, retrying when the limiter allows again.
pub(super) fn rate_limited(
    nu: &governor::NotUntil<governor::clock::QuantaInstant>,
    message: String,
) -> ApiError {
    use governor::clock::Clock;
    let wait = nu.wait_time_from(crate::gateway::ctx::clock().now());
    ApiError(GatewayError::RateLimit {
        message,
        retry_after_ms: u64::try_from(wait.as_millis()).unwrap_or(1000).max(1),
    })
}

/// Reads a JSON object body: 413 beyond the limit, 400 for anything else wrong.
pub(super) fn json_body(
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<serde_json::Map<String, Value>> {
    let bytes = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError(GatewayError::PayloadTooLarge(
                "request body is larger than --max-body-bytes".into(),
            ))
        } else {
            invalid(format!("cannot read body: {e}"))
        }
    })?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(invalid("body must be a JSON object")),
        Err(e) => Err(invalid(format!("body is not valid JSON: {e}"))),
    }
}

pub(super) fn opt_str<'a>(
    m: &'a serde_json::Map<String, Value>,
    key: &str,
) -> ApiResult<Option<&'a str>> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(format!("{key} must be a string"))),
    }
}

async fn create_session(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let m = json_body(body)?;
    let user_id = opt_str(&m, "userId")?.ok_or_else(|| invalid("userId is required"))?;
    let ttl = match m.get("ttlSeconds") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(s) if (1..=365 * 24 * 3600).contains(&s) => Some(Duration::from_secs(s)),
            _ => return Err(invalid("ttlSeconds must be an integer from 1 to 31536000")),
        },
    };
    let s = state.gateway.create_session(user_id, ttl).await?;
    Ok((StatusCode::CREATED, Json(s)).into_response())
}

async fn revoke_session(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    if id.is_empty() || id.len() > 128 {
        return Err(invalid("invalid session id"));
    }
    state.gateway.revoke_session(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn quotes(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let m = json_body(body)?;
    let symbol = opt_str(&m, "symbol")?.ok_or_else(|| invalid("symbol is required"))?;
    let quote = m
        .get("quote")
        .cloned()
        .ok_or_else(|| invalid("quote is required"))?;
    state.gateway.offer_quote(symbol, quote)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "symbol": symbol, "accepted": true })),
    ))
}

#[derive(Deserialize)]
struct SinceQuery {
    since: Option<String>,
}

async fn history(
    State(state): State<Arc<AppState>>,
    Path(room): Path<String>,
    Query(q): Query<SinceQuery>,
) -> ApiResult<Json<Value>> {
    crate::gateway::validate::check_room(&room)?;
    let since = match q.since.as_deref() {
        None | Some("") => 0,
        Some(s) => s
            .parse::<u64>()
            .map_err(|_| invalid("since must be a non-negative integer"))?,
    };
    let fanout = state.gateway.fanout();
    if fanout.needs_prepare() {
        fanout
            .prepare(std::slice::from_ref(&room))
            .await
            .map_err(GatewayError::from)?;
    }
    let h = fanout.history(&room, since).map_err(GatewayError::from)?;
    let events: Vec<Value> = h
        .events
        .iter()
        .map(|e| {
            let data: Value = serde_json::from_str(&e.payload.data).unwrap_or(Value::Null);
            let mut v =
                json!({ "offset": e.offset, "event": e.event, "data": data, "ts": e.ts_ms });
            if !e.payload.attachments.is_empty() {
                use base64::Engine as _;
                v["attachments"] = e
                    .payload
                    .attachments
                    .iter()
                    .map(|a| Value::String(base64::engine::general_purpose::STANDARD.encode(a)))
                    .collect();
            }
            v
        })
        .collect();
    Ok(Json(json!({
        "room": room,
        "epoch": h.epoch,
        "offset": h.last_offset,
        "firstRetained": h.first_retained,
        "events": events,
    })))
}

async fn presence(
    State(state): State<Arc<AppState>>,
    Path(user_id): Path<String>,
) -> ApiResult<Json<Value>> {
    crate::gateway::validate::check_user_id(&user_id)?;
    let p = state
        .gateway
        .fanout()
        .presence(&user_id)
        .await
        .map_err(GatewayError::from)?;
    let mut nodes: Vec<u64> = p.sockets.iter().map(|(n, _)| *n).collect();
    nodes.sort_unstable();
    nodes.dedup();
    Ok(Json(json!({
        "userId": user_id,
        "online": !p.sockets.is_empty(),
        "sockets": p.sockets.iter().map(|(n, s)| json!({ "socketId": s, "nodeId": n })).collect::<Vec<_>>(),
        "nodes": nodes,
    })))
}

async fn stats(State(state): State<Arc<AppState>>) -> ApiResult<Json<Value>> {
    Ok(Json(super::health::stats_json(&state).await?))
}
