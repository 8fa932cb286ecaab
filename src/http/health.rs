//! Operator routes: `/health/websocket` (the seed's shape), `/healthz`, `/readyz`,
//! `/metrics` (Prometheus) and `/cluster/status`, plus the stats shared with `/api/stats`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::api::ApiError;
use super::AppState;
use crate::gateway::GatewayError;
use crate::util::{now_unix_ms, rfc3339_ms};

/// Local counts of this node: sockets, unique users, rooms.
pub fn local_counts(state: &AppState) -> (usize, usize, usize) {
    match state.gateway.namespace() {
        Some(ns) => {
            let (sockets, rooms) = ns.counts();
            (sockets, ns.rooms_with_prefix("user:"), rooms)
        }
        None => (0, 0, 0),
    }
}

pub(crate) async fn websocket(State(state): State<Arc<AppState>>) -> Response {
    let (connections, users, _) = local_counts(&state);
    let h = state.gateway.fanout().health();
    let status = if !h.healthy {
        "unhealthy"
    } else if h.degraded {
        "degraded"
    } else {
        "healthy"
    };
    let mut body = json!({
        "status": status,
        "timestamp": rfc3339_ms(now_unix_ms()),
        "nodeId": state.config.node_id,
        "stats": {
            "totalConnections": connections,
            "uniqueUsers": users,
            "adapter": state.gateway.fanout().name(),
            "uptime": state.gateway.uptime().as_secs(),
        },
    });
    match state.gateway.fanout().name() {
        "raft" => body["raft"] = h.detail,
        "redis" => body["redis"] = h.detail,
        _ => {}
    }
    let code = if h.healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

pub(crate) async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

pub(crate) async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let h = state.gateway.fanout().health();
    if h.ready && !state.io.is_stopping() {
        (StatusCode::OK, Json(json!({ "ready": true }))).into_response()
    } else {
        let why = if state.io.is_stopping() {
            "shutting down"
        } else {
            "not joined, no leader known, or not caught up"
        };
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "ready": false, "reason": why })),
        )
            .into_response()
    }
}

/// Resident memory of this process in bytes (Linux `/proc/self/statm`).
pub fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

pub(crate) async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let (connections, users, rooms) = local_counts(&state);
    metrics::gauge!("raftcast_connections").set(connections as f64);
    metrics::gauge!("raftcast_unique_users").set(users as f64);
    metrics::gauge!("raftcast_rooms").set(rooms as f64);
    metrics::gauge!("raftcast_engine_connections").set(state.io.connection_count() as f64);
    metrics::gauge!("raftcast_events_per_minute").set(state.gateway.events_per_minute() as f64);
    if let Some(rss) = rss_bytes() {
        metrics::gauge!("raftcast_process_resident_memory_bytes").set(rss as f64);
    }
    let h = state.gateway.fanout().health();
    metrics::gauge!("raftcast_backend_healthy").set(if h.healthy { 1.0 } else { 0.0 });
    crate::fanout::export_metrics(&h);
    match crate::telemetry::prometheus() {
        Some(handle) => (
            [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics recorder unavailable",
        )
            .into_response(),
    }
}

#[derive(serde::Deserialize)]
pub(crate) struct ViewQuery {
    view: Option<String>,
}

pub(crate) async fn cluster_status(
    State(state): State<Arc<AppState>>,
    axum::extract::Query(q): axum::extract::Query<ViewQuery>,
) -> Response {
    let (connections, _, _) = local_counts(&state);
    match state.gateway.fanout().cluster_status() {
        Some(mut v) => {
            if q.view.as_deref() != Some("local") {
                super::leader_view::merge_leader_reachability(&mut v).await;
            }
            Json(v).into_response()
        }
        None => Json(json!({
            "nodeId": state.config.node_id,
            "leaderId": state.config.node_id,
            "term": 0,
            "commitIndex": 0,
            "appliedIndex": 0,
            "adapter": state.gateway.fanout().name(),
            "nodes": [{
                "id": state.config.node_id,
                "addr": state.config.advertise_addr,
                "role": "leader",
                "reachable": true,
                "connections": connections,
            }],
        }))
        .into_response(),
    }
}

/// `/api/stats`: cluster-wide and per-node figures.
pub(crate) async fn stats_json(state: &AppState) -> Result<Value, ApiError> {
    let counts = state
        .gateway
        .fanout()
        .counts()
        .await
        .map_err(GatewayError::from)?;
    let (local_conns, local_users, local_rooms) = local_counts(state);
    let total: u64 = counts.connections_per_node.values().sum();
    let epm = state.gateway.events_per_minute();
    let uptime = state.gateway.uptime().as_secs();
    Ok(json!({
        "totalConnections": total,
        "uniqueUsers": counts.unique_users,
        "roomCount": counts.room_count,
        "eventsPerMinute": epm,
        "adapter": state.gateway.fanout().name(),
        "uptime": uptime,
        "nodeId": state.config.node_id,
        "nodes": counts.connections_per_node.iter().map(|(id, c)| json!({ "nodeId": id, "totalConnections": c })).collect::<Vec<_>>(),
        "node": {
            "nodeId": state.config.node_id,
            "totalConnections": local_conns,
            "uniqueUsers": local_users,
            "roomCount": local_rooms,
            "eventsPerMinute": epm,
            "uptime": uptime,
        },
    }))
}
