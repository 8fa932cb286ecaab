//! The HTTP side of a node: the accept loop, and the router with `/socket.io/`, the API,
//! health, metrics, cluster and status-page routes, behind the origin (CORS) policy.

pub mod api;
mod cors;
mod emit;
pub mod fault;
pub mod health;
mod leader_view;
pub mod serve;
mod status_page;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::response::IntoResponse;
use axum::routing::{any, get};
use axum::Router;
use governor::DefaultDirectRateLimiter;

use crate::config::Config;
use crate::gateway::Gateway;
use crate::socketio::Io;

/// What every route handler can reach.
pub struct AppState {
    pub config: Config,
    pub gateway: Gateway,
    pub io: Io,
    pub(crate) api_key: String,
    pub(crate) api_limiter: Option<DefaultDirectRateLimiter>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

impl AppState {
    pub fn new(config: Config, gateway: Gateway, io: Io, api_key: String) -> AppState {
        let api_limiter = std::num::NonZeroU32::new(config.api_rate)
            .map(|n| crate::gateway::ctx::limiter(governor::Quota::per_second(n)));
        AppState {
            config,
            gateway,
            io,
            api_key,
            api_limiter,
        }
    }
}

async fn socketio(
    State(state): State<Arc<AppState>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    req: Request,
) -> impl IntoResponse {
    state.io.handle(req, remote).await
}

/// The node's whole router.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/socket.io/", any(socketio))
        .route("/socket.io", any(socketio))
        .route("/health/websocket", get(health::websocket))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/cluster/status", get(health::cluster_status))
        .route("/", get(status_page::page))
        .route("/cluster/errors", get(status_page::errors))
        .with_state(state.clone())
        .merge(api::router(state.clone()))
        .merge(fault::router(state.clone()))
        .layer(axum::middleware::from_fn_with_state(state, cors::origins))
}
