//! `POST /cluster/fault`: flips the peer transport's fault-injection switch (chaos tests).
//!
//! The route answers 404 unless the node runs with `--fault-injection` on a backend that has
//! a switch (Raft). It needs the API key like `/api/`. Body:
//! `{ "action": "isolate"|"isolate_all"|"drop_outgoing"|"drop_incoming"|"delay"|"heal"|"heal_all",
//!    "peer"?: id, "delayMs"?: n }`; answer `200 { action, peer?, delayMs? }`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use super::AppState;

/// The fault route (merged into the node's router).
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/cluster/fault", post(fault))
        .with_state(state)
}

/// A fault request.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FaultRequest {
    action: String,
    peer: Option<u64>,
    delay_ms: Option<u64>,
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({ "code": code, "message": message }))).into_response()
}

fn authorized(state: &AppState, headers: &HeaderMap) -> bool {
    let given = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    !given.is_empty() && bool::from(given.as_bytes().ct_eq(state.api_key.as_bytes()))
}

async fn fault(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let switch = match (state.config.fault_injection, state.gateway.fanout().fault()) {
        (true, Some(s)) => s,
        _ => {
            return error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "fault injection is off (start the node with --fault-injection)",
            )
        }
    };
    if !authorized(&state, &headers) {
        return error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "missing or wrong API key (Authorization: Bearer <key>)",
        );
    }
    let req: FaultRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "INVALID_PAYLOAD",
                &format!("body must be {{action, peer?, delayMs?}}: {e}"),
            )
        }
    };
    let peer = || req.peer.ok_or("this action needs a peer");
    let applied: Result<(), &str> = match req.action.as_str() {
        "isolate" => peer().map(|p| switch.isolate(p)),
        "isolate_all" => {
            switch.isolate_all();
            Ok(())
        }
        "drop_outgoing" => peer().map(|p| switch.drop_outgoing(p)),
        "drop_incoming" => peer().map(|p| switch.drop_incoming(p)),
        "delay" => match req.delay_ms {
            Some(ms) => peer().map(|p| switch.delay(p, Duration::from_millis(ms))),
            None => Err("delay needs delayMs"),
        },
        "heal" => peer().map(|p| switch.heal(p)),
        "heal_all" => {
            switch.heal_all();
            Ok(())
        }
        _ => Err("unknown action (isolate, isolate_all, drop_outgoing, drop_incoming, delay, heal, heal_all)"),
    };
    match applied {
        Ok(()) => {
            tracing::warn!(action = %req.action, peer = ?req.peer, delay_ms = ?req.delay_ms, "fault injected");
            Json(json!({ "action": req.action, "peer": req.peer, "delayMs": req.delay_ms }))
                .into_response()
        }
        Err(msg) => error(StatusCode::BAD_REQUEST, "INVALID_PAYLOAD", msg),
    }
}
