//! The node: builds the fan-out backend, the Socket.IO layer and the gateway from a
//! [`Config`], serves them with `run(listener, shutdown)`, and shuts down gracefully.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::net::TcpListener;

use crate::config::{Backend, Config};
use crate::fanout::local::{LocalFanout, Retention};
use crate::fanout::SharedFanout;
use crate::gateway::{Gateway, GatewaySettings};
use crate::http::serve::{serve, ServeLimits};
use crate::http::AppState;
use crate::socketio::{DisconnectReason, Io, IoConfig, Target};

/// Why the server could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("secret: {0}")]
    Secret(#[from] crate::secrets::SecretError),
    #[error("backend: {0}")]
    Backend(String),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error(
        "the backend stopped working ({0}); the node shut down so that its clients reconnect \
         to one that works: fix the cause (for a full disk, free space in --data-dir) and \
         restart it"
    )]
    BackendFailed(String),
}

/// A built node, ready to serve.
pub struct Server {
    state: Arc<AppState>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").finish_non_exhaustive()
    }
}

fn retention(cfg: &Config) -> Retention {
    Retention {
        history_size: cfg.history_size,
        history_ttl: cfg.history_ttl,
        recovery_window: cfg.recovery_window,
    }
}

impl Server {
    /// Builds the node: secrets, backend, Socket.IO layer, gateway. `public_addr` is the
    /// address the public listener is bound to (for the cluster view).
    pub async fn build(mut config: Config) -> Result<Server, ServerError> {
        let api_key = crate::secrets::ensure(
            config.api_key.as_ref().map(|s| s.expose()),
            &config.data_dir,
            "api-key",
            "API key",
        )?;
        let retention = retention(&config);
        let fanout: SharedFanout = match config.backend {
            Backend::Local => Arc::new(LocalFanout::new(config.node_id, retention)),
            Backend::Raft => crate::fanout::raft::start(&mut config, retention)
                .await
                .map_err(|e| ServerError::Backend(e.to_string()))?,
            Backend::Redis => crate::fanout::redis::start(&config, retention)
                .await
                .map_err(|e| ServerError::Backend(e.to_string()))?,
        };
        let io = Io::new(IoConfig {
            ping_interval: config.ping_interval,
            ping_timeout: config.ping_timeout,
            max_payload: config.max_event_bytes,
            max_attachments: config.max_attachments,
            ..IoConfig::default()
        });
        let gateway = Gateway::new(
            GatewaySettings {
                node_id: config.node_id,
                max_connections: config.max_connections,
                max_symbols: config.max_symbols,
                subscribe_rate: config.subscribe_rate,
                event_rate: config.event_rate,
                session_ttl: config.session_ttl,
                quote_throttle: config.quote_throttle,
                max_pending_quotes: 10_000,
            },
            fanout.clone(),
            config.jwt_secret.as_ref().map(|s| s.expose()),
        );
        let ns = io.add_namespace("/", Arc::new(gateway.clone()), true);
        gateway.bind(ns);
        fanout.attach(Arc::new(gateway.clone()));
        Ok(Server {
            state: Arc::new(AppState::new(config, gateway, io, api_key)),
        })
    }

    /// The gateway: the library API (`emit_to_user`, `emit_to_room`, `create_session`, ...).
    pub fn gateway(&self) -> &Gateway {
        &self.state.gateway
    }

    /// The Socket.IO layer.
    pub fn io(&self) -> &Io {
        &self.state.io
    }

    /// The API key in force (given or generated).
    pub fn api_key(&self) -> &str {
        &self.state.api_key
    }

    /// Serves until `shutdown` resolves, then shuts down gracefully within the configured
    /// shutdown timeout.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServerError> {
        let state = self.state;
        let local = listener.local_addr()?;
        tracing::info!(addr = %local, node_id = state.config.node_id, backend = state.gateway.fanout().name(), "raftcast listening");
        crate::telemetry::prometheus();
        let coalescer = state.gateway.start();
        let stats = tokio::spawn(stats_line(state.clone()));
        let limits = ServeLimits {
            max_per_ip: state.config.max_connections_per_ip,
            header_timeout: state.config.header_timeout,
        };
        // The listener stays open until every connection is closed: a polling client's next
        // request (often on a new TCP connection) must still reach its session to read the
        // shutdown notice and the close; only new handshakes are refused (403) meanwhile.
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let serving = serve(
            listener,
            crate::http::router(state.clone()),
            limits,
            async move {
                let _ = stop_rx.await;
            },
        );
        let fanout = state.gateway.fanout();
        let drain = async {
            // A backend that stops for good (Raft's core quits on a storage error) would leave
            // this node's clients connected but fed nothing: shut down instead, so they
            // reconnect to a node that works and recover what they missed from its history.
            let failure = tokio::select! {
                () = shutdown => None,
                why = fanout.failed() => {
                    tracing::error!(error = %why, "the backend stopped working: shutting this node down");
                    Some(why)
                }
            };
            let deadline = tokio::time::Instant::now() + state.config.shutdown_timeout;
            tracing::info!("shutting down: no new connections; notifying clients");
            state.io.stop_accepting();
            notify_shutdown(&state);
            // Give clients a moment to read the notice, then close every connection (the
            // official client reconnects by itself, to another node behind a load balancer).
            let grace = (state.config.shutdown_timeout / 4).min(Duration::from_secs(1));
            tokio::time::sleep(grace).await;
            state.io.close_all(DisconnectReason::ServerShuttingDown);
            while state.io.connection_count() > 0 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let _ = stop_tx.send(());
            (deadline, failure)
        };
        let ((), (deadline, failure)) = tokio::join!(serving, drain);
        coalescer.abort();
        stats.abort();
        if tokio::time::timeout_at(deadline, state.gateway.fanout().shutdown())
            .await
            .is_err()
        {
            tracing::warn!("backend shutdown did not finish within --shutdown-timeout");
        }
        tracing::info!("shutdown complete");
        match failure {
            None => Ok(()),
            Some(why) => Err(ServerError::BackendFailed(why)),
        }
    }
}

/// Sends `server:shutdown` to every socket of the node.
fn notify_shutdown(state: &AppState) {
    let reconnect_after_ms = 1000;
    if let Some(ns) = state.gateway.namespace() {
        let frames = crate::socketio::encode::event(
            "/",
            "server:shutdown",
            &[json!({ "reason": "server shutting down", "reconnectAfterMs": reconnect_after_ms })],
            &[],
            None,
        );
        ns.broadcast(&Target::default(), &frames);
    }
}

/// Builds and runs a node on `listener` until `shutdown` resolves.
pub async fn run(
    mut config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    if config.port == 0 {
        let port = listener.local_addr()?.port();
        config.port = port;
        config.advertise_addr = format!("127.0.0.1:{port}");
    }
    Server::build(config).await?.run(listener, shutdown).await
}

/// The periodic stats line (the seed's minute log).
async fn stats_line(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(state.config.stats_interval);
    tick.tick().await;
    loop {
        tick.tick().await;
        let (connections, users, rooms) = crate::http::health::local_counts(&state);
        let health = state.gateway.fanout().health();
        tracing::info!(
            connections,
            unique_users = users,
            rooms,
            events_per_minute = state.gateway.events_per_minute(),
            rss_mb = crate::http::health::rss_bytes().unwrap_or(0) / (1 << 20),
            healthy = health.healthy,
            "stats"
        );
    }
}
