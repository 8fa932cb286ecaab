//! `GET /`: a status page a person can read, served from the binary (one self-contained
//! HTML file: inline CSS and JavaScript, no CDN), and `GET /cluster/errors`: the last
//! WARN/ERROR log events of this node (see [`crate::telemetry_errors`]).
//!
//! The page polls this node's `/cluster/status`, `/health/websocket`, `/metrics` and
//! `/cluster/errors` every two seconds and draws event and delivery rates from the
//! Prometheus counters.

use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::Json;
use serde_json::{json, Value};

use crate::telemetry_errors::{recent, CAPACITY};

pub(crate) async fn page() -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, "no-cache")],
        Html(include_str!("status_page.html")),
    )
}

/// `GET /cluster/errors`: `{ capacity, warnTotal, errorTotal, events: [newest first] }`.
pub(crate) async fn errors() -> Json<Value> {
    let (mut events, warn_total, error_total) = recent();
    events.reverse();
    Json(json!({
        "capacity": CAPACITY,
        "warnTotal": warn_total,
        "errorTotal": error_total,
        "events": events,
    }))
}
