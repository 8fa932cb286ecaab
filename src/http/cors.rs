//! The origin policy: browsers may call this node cross-origin only from the origins in
//! `CORS_ORIGIN` / `FRONTEND_URL` (or any, when `*` was given explicitly). A Socket.IO
//! request (polling or WebSocket upgrade) from another origin is refused with 403; other
//! routes simply get no CORS headers. Same-origin requests (Origin matches Host) always pass.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::{header, HeaderValue, Method, StatusCode};

use super::AppState;

fn same_origin(origin: &str, host: Option<&str>) -> bool {
    let Some(host) = host else { return false };
    origin
        .split_once("://")
        .is_some_and(|(_, rest)| rest.trim_end_matches('/').eq_ignore_ascii_case(host))
}

pub(super) async fn origins(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let Some(origin) = origin else {
        return next.run(req).await;
    };
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok());
    let allowed = state.config.allowed_origins.allows(&origin) || same_origin(&origin, host);
    let is_socketio = req.uri().path().starts_with("/socket.io");
    if !allowed {
        if is_socketio || req.method() == Method::OPTIONS {
            tracing::info!(%origin, path = req.uri().path(), "request refused: origin not allowed (set CORS_ORIGIN)");
            metrics::counter!("raftcast_origin_refused_total").increment(1);
            let mut r = Response::new(Body::from(
                r#"{"code":4,"message":"Forbidden: origin not allowed"}"#,
            ));
            *r.status_mut() = StatusCode::FORBIDDEN;
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            return r;
        }
        return next.run(req).await;
    }
    let preflight = req.method() == Method::OPTIONS;
    let mut resp = if preflight {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NO_CONTENT;
        r
    } else {
        next.run(req).await
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&origin) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
    }
    h.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    if preflight {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, DELETE, OPTIONS"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("Authorization, Content-Type"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_origin_matches_host() {
        assert!(same_origin("http://localhost:5000", Some("localhost:5000")));
        assert!(!same_origin("http://evil.example", Some("localhost:5000")));
        assert!(!same_origin("null", Some("localhost:5000")));
        assert!(!same_origin("http://localhost:5000", None));
    }
}
