//! The accept loop: HTTP/1.1 on hyper with upgrades (for WebSocket), a header read timeout
//! against slow-header clients, a per-IP connection cap, and graceful shutdown.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::socketio::ConnGuard;

/// Limits of the accept loop.
#[derive(Debug, Clone)]
pub struct ServeLimits {
    /// Most simultaneous TCP connections from one IP address (0 = no limit).
    pub max_per_ip: usize,
    /// A client must send its request headers within this time.
    pub header_timeout: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            max_per_ip: 0,
            header_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Default)]
struct PerIp(Mutex<HashMap<IpAddr, usize>>);

struct IpSlot(Arc<PerIp>, IpAddr);

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut map = (self.0).0.lock();
        if let Some(n) = map.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.1);
            }
        }
    }
}

impl PerIp {
    fn acquire(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<IpSlot> {
        let mut map = self.0.lock();
        let n = map.entry(ip).or_insert(0);
        if max > 0 && *n >= max {
            return None;
        }
        *n += 1;
        Some(IpSlot(self.clone(), ip))
    }
}

/// Answers a connection over the per-IP cap with a plain 429 (bounded in time), then closes
/// it: the client learns why instead of seeing a bare reset.
async fn refuse_per_ip(mut stream: tokio::net::TcpStream, max: usize) {
    use tokio::io::AsyncWriteExt as _;
    let body = format!(
        "{{\"code\":\"RATE_LIMIT\",\"message\":\"too many connections from this address (--max-connections-per-ip {max})\",\"retryAfterMs\":1000}}"
    );
    let resp = format!(
        "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        use tokio::io::AsyncReadExt as _;
        let _ = stream.write_all(resp.as_bytes()).await;
        let _ = stream.shutdown().await;
        // Read what the client sent (bounded) so closing does not reset the answer away.
        let mut sink = [0u8; 4096];
        let mut left: usize = 64 * 1024;
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

/// Serves `router` on `listener` until `shutdown` resolves. The router sees the peer
/// address as `ConnectInfo<SocketAddr>`. In-flight connections are not waited for here:
/// the caller drains its own sessions (WebSocket connections outlive this loop).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()>,
) {
    let per_ip = Arc::new(PerIp::default());
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            // Shutdown first: a steady stream of connections must not starve it.
            biased;
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(slot) = per_ip.acquire(remote.ip(), limits.max_per_ip) else {
            tracing::warn!(ip = %remote.ip(), limit = limits.max_per_ip, "per-IP connection limit reached; refusing");
            metrics::counter!("raftcast_connections_refused_total", "reason" => "per_ip")
                .increment(1);
            tokio::spawn(refuse_per_ip(stream, limits.max_per_ip));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let header_timeout = limits.header_timeout;
        // The slot lives as long as the TCP connection: the HTTP connection holds it, and an
        // upgraded WebSocket takes a clone along (see `ConnGuard`).
        let slot = ConnGuard(Arc::new(slot));
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
                req.extensions_mut()
                    .insert(ConnectInfo::<SocketAddr>(remote));
                req.extensions_mut().insert(slot.clone());
                let router = router.clone();
                async move {
                    let req = req.map(axum::body::Body::new);
                    Ok::<_, Infallible>(router.oneshot(req).await.unwrap_or_else(|e| match e {}))
                }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .max_buf_size(64 * 1024);
            let conn = builder
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!(%remote, error = %e, "http connection ended with an error");
            }
        });
    }
}
