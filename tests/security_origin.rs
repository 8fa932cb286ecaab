//! ISSUE 8, origins: with `CORS_ORIGIN` / `FRONTEND_URL` set, a WebSocket upgrade or polling
//! request from another `Origin` is refused with 403 and CORS headers only ever name an
//! allowed origin; `*` is only ever an explicit choice.

// Tests fail by panicking: expect/unwrap are the point here.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{start, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const APP: &str = "https://app.example";
const APP2: &str = "http://localhost:3000";

/// Sends a raw HTTP/1.1 request and returns the response head (status line and headers),
/// lower-cased.
async fn raw(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 2048];
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&buf).to_lowercase();
    text.split("\r\n\r\n").next().unwrap_or_default().to_owned()
}

fn status(head: &str) -> u16 {
    head.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == name).then(|| v.trim())
    })
}

async fn ws_upgrade(s: &TestServer, origin: Option<&str>) -> String {
    let origin = origin
        .map(|o| format!("Origin: {o}\r\n"))
        .unwrap_or_default();
    raw(
        s.addr,
        &format!(
            "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {}\r\n{origin}Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            s.addr
        ),
    )
    .await
}

async fn polling(s: &TestServer, origin: Option<&str>) -> String {
    let origin = origin
        .map(|o| format!("Origin: {o}\r\n"))
        .unwrap_or_default();
    raw(
        s.addr,
        &format!(
            "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: {}\r\n{origin}Connection: close\r\n\r\n",
            s.addr
        ),
    )
    .await
}

async fn preflight(s: &TestServer, path: &str, origin: &str) -> String {
    raw(
        s.addr,
        &format!(
            "OPTIONS {path} HTTP/1.1\r\nHost: {}\r\nOrigin: {origin}\r\nAccess-Control-Request-Method: POST\r\nConnection: close\r\n\r\n",
            s.addr
        ),
    )
    .await
}

async fn get(s: &TestServer, path: &str, origin: &str) -> String {
    raw(
        s.addr,
        &format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nOrigin: {origin}\r\nConnection: close\r\n\r\n",
            s.addr
        ),
    )
    .await
}

const FOREIGN: &[&str] = &[
    "https://evil.example",
    "https://app.example.evil.example",
    "https://app.example:8443",
    "http://app.example",
    "https://evil.example/https://app.example",
    "null",
    "*",
    "",
];

#[tokio::test]
async fn configured_origins_only() {
    let s = start(&["--cors-origin", APP, "--frontend-url", APP2]).await;
    for origin in FOREIGN {
        let head = ws_upgrade(&s, Some(origin)).await;
        assert_eq!(status(&head), 403, "ws upgrade from {origin:?}: {head}");
        assert!(
            header(&head, "access-control-allow-origin").is_none(),
            "{head}"
        );
        let head = polling(&s, Some(origin)).await;
        assert_eq!(status(&head), 403, "polling from {origin:?}: {head}");
        assert!(
            header(&head, "access-control-allow-origin").is_none(),
            "{head}"
        );
        let head = preflight(&s, "/socket.io/?EIO=4&transport=polling", origin).await;
        assert_eq!(status(&head), 403, "preflight from {origin:?}: {head}");
        // other routes still answer (they are not for browsers), but name no origin
        let head = get(&s, "/healthz", origin).await;
        assert_eq!(status(&head), 200, "{head}");
        assert!(
            header(&head, "access-control-allow-origin").is_none(),
            "{head}"
        );
    }
    for origin in [APP, APP2, "HTTPS://APP.EXAMPLE", "https://app.example/"] {
        let head = ws_upgrade(&s, Some(origin)).await;
        assert_eq!(status(&head), 101, "ws upgrade from {origin}: {head}");
        let head = polling(&s, Some(origin)).await;
        assert_eq!(status(&head), 200, "polling from {origin}: {head}");
        let acao = header(&head, "access-control-allow-origin").expect("ACAO");
        assert_eq!(acao, origin.to_lowercase(), "{head}");
        assert_ne!(acao, "*");
        let head = preflight(&s, "/api/emit", origin).await;
        assert_eq!(status(&head), 204, "{head}");
        assert_eq!(
            header(&head, "access-control-allow-origin"),
            Some(origin.to_lowercase().as_str())
        );
    }
    // non-browser clients (no Origin) are not affected
    assert_eq!(status(&ws_upgrade(&s, None).await), 101);
    assert_eq!(status(&polling(&s, None).await), 200);
    // and the node still serves
    let (code, _) = s.get_json("/api/stats").await;
    assert_eq!(code, 200);
}

#[tokio::test]
async fn without_cors_settings_only_same_origin_browsers_pass() {
    let s = start(&[]).await;
    for origin in ["https://evil.example", APP, "null"] {
        assert_eq!(
            status(&ws_upgrade(&s, Some(origin)).await),
            403,
            "{origin}: no CORS_ORIGIN means no cross-origin socket"
        );
        let head = polling(&s, Some(origin)).await;
        assert_eq!(status(&head), 403, "{origin}: {head}");
    }
    // same origin: the page was served by this node
    let own = format!("http://{}", s.addr);
    assert_eq!(status(&ws_upgrade(&s, Some(&own)).await), 101);
    let head = polling(&s, Some(&own)).await;
    assert_eq!(status(&head), 200, "{head}");
    assert_ne!(header(&head, "access-control-allow-origin"), Some("*"));
}

#[tokio::test]
async fn star_is_an_explicit_choice() {
    let s = start(&["--cors-origin", "*"]).await;
    let head = polling(&s, Some("https://anything.example")).await;
    assert_eq!(status(&head), 200, "{head}");
    // even then the answer names the origin (credentials may not go with a literal `*`)
    assert_eq!(
        header(&head, "access-control-allow-origin"),
        Some("https://anything.example")
    );
    assert_eq!(
        status(&ws_upgrade(&s, Some("https://x.example")).await),
        101
    );
}
