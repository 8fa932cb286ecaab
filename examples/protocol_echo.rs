//! A Socket.IO server set up the way the public protocol test suites expect, to check our
//! Engine.IO 4 / Socket.IO 5 layer (`raftcast::socketio`) against them.
//!
//! The suites are the `test-suite/` directories of
//! <https://github.com/socketio/engine.io-protocol> and
//! <https://github.com/socketio/socket.io-protocol>. Their reference server setup:
//! ping interval 300 ms, ping timeout 200 ms, `maxPayload` 1,000,000, connect timeout
//! 1 s; on connection to `/` or `/custom` the server emits `auth` with the client's
//! handshake auth; on `/`, `message` is echoed as `message-back` and `message-with-ack`
//! is acknowledged with its own arguments (binary attachments included).
//!
//! The server answers on `/socket.io/` (Socket.IO suite) and on `/engine.io/` (Engine.IO
//! suite: the same layer as a plain Engine.IO server, every message echoed through
//! [`Io::set_message_hook`]).
//!
//! Run (the suites stay outside this repository; see docs/protocol-conformance.md):
//!
//! ```sh
//! CARGO_TARGET_DIR=/work/target cargo run --example protocol_echo      # port 3000
//! # in another shell, from a checkout of each suite's test-suite/ directory:
//! npm ci && npm test
//! ```
//!
//! The port is the first argument, else `$PORT`, else 3000 (the suites use 3000).
//!
//! Expected: both suites pass entirely.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request};
use axum::routing::any;
use axum::Router;
use raftcast::http::serve::{serve, ServeLimits};
use raftcast::socketio::{
    Accept, BoxFuture, ConnectRequest, EngineMessage, Event, Frame, Handler, Io, IoConfig, Refusal,
    Socket,
};
use serde_json::Value;

/// How long after the CONNECT answer the `auth` event goes out (see `connected`).
const AUTH_DELAY: Duration = Duration::from_millis(10);

/// Both namespaces: remember the handshake auth, emit it back on connection.
struct Echo {
    /// Whether `message` / `message-with-ack` are echoed (main namespace only).
    echo_messages: bool,
}

impl Handler for Echo {
    fn connect(&self, req: ConnectRequest) -> BoxFuture<Result<Accept, Refusal>> {
        // `socket.handshake.auth` is `{}` when the client sent none.
        let auth = match req.auth {
            Value::Null => Value::Object(Default::default()),
            other => other,
        };
        Box::pin(async move {
            Ok(Accept {
                state: Arc::new(auth),
                rooms: Vec::new(),
                restore: None,
            })
        })
    }

    fn connected(&self, socket: &Arc<Socket>) {
        let auth = socket.state::<Value>().cloned().unwrap_or(Value::Null);
        // Sent a moment after the CONNECT answer rather than in the same write: the suites'
        // client (`ws` 8.5) emits every frame of one TCP read synchronously, and their
        // `waitFor` helper re-arms its one-shot listener only after a promise turn, so a
        // second frame read together with the CONNECT answer is lost to the test. Upstream
        // Node.js writes the two on separate event-loop turns; we wait a little instead.
        let socket = socket.clone();
        tokio::spawn(async move {
            tokio::time::sleep(AUTH_DELAY).await;
            socket.emit("auth", &[auth]);
        });
    }

    fn event(&self, socket: &Arc<Socket>, event: Event) -> Option<BoxFuture<()>> {
        if !self.echo_messages {
            return None;
        }
        match event.name.as_str() {
            "message" => {
                socket.emit_binary("message-back", &event.args, &event.attachments);
            }
            "message-with-ack" => {
                if let Some(ack) = event.ack {
                    ack.send_binary(&event.args, &event.attachments);
                }
            }
            _ => {}
        }
        None
    }
}

fn port() -> u16 {
    std::env::args()
        .nth(1)
        .or_else(|| std::env::var("PORT").ok())
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();

    let io = Io::new(IoConfig {
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(200),
        max_payload: 1_000_000,
        connect_timeout: Duration::from_secs(1),
        ..IoConfig::default()
    });
    io.add_namespace(
        "/",
        Arc::new(Echo {
            echo_messages: true,
        }),
        false,
    );
    io.add_namespace(
        "/custom",
        Arc::new(Echo {
            echo_messages: false,
        }),
        false,
    );

    // The Engine.IO suite expects a plain Engine.IO server that echoes every message.
    let engine = Io::new(IoConfig {
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(200),
        max_payload: 1_000_000,
        ..IoConfig::default()
    });
    engine.set_message_hook(Arc::new(|conn, msg| {
        let frame = match msg {
            EngineMessage::Text(t) => Frame::text(format!("4{t}")),
            EngineMessage::Binary(b) => Frame::Binary(b),
        };
        conn.push_one(frame);
    }));

    let handle = move |ConnectInfo(remote): ConnectInfo<SocketAddr>, req: Request| {
        let io = io.clone();
        async move { io.handle(req, remote).await }
    };
    let handle_engine = move |ConnectInfo(remote): ConnectInfo<SocketAddr>, req: Request| {
        let io = engine.clone();
        async move { io.handle(req, remote).await }
    };
    let router = Router::new()
        .route("/socket.io", any(handle.clone()))
        .route("/socket.io/", any(handle))
        .route("/engine.io", any(handle_engine.clone()))
        .route("/engine.io/", any(handle_engine));

    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port())).await?;
    eprintln!(
        "protocol_echo listening on http://{}",
        listener.local_addr()?
    );
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    serve(listener, router, ServeLimits::default(), shutdown).await;
    Ok(())
}
