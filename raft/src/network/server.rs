//! Transport server: accepts peers, authenticates them, and dispatches their requests.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::wire::{read_frame, write_frame, Req, Resp, MAX_FRAME};
use super::{auth, NetCtx};
use crate::types::NodeId;

/// Handles authenticated requests.
pub trait Handler: Send + Sync + 'static {
    /// Answer `req` from node `from`.
    fn handle(&self, from: NodeId, req: Req) -> impl Future<Output = Resp> + Send;
}

/// Accept peers on `listener` until `stop` turns true.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    ctx: Arc<NetCtx>,
    handler: Arc<H>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, addr)) => {
                let (ctx, handler, stop) = (ctx.clone(), handler.clone(), stop.clone());
                tokio::spawn(async move {
                    if let Err(e) = conn(stream, ctx, handler, stop).await {
                        tracing::debug!(%addr, error = %e, "peer connection ended");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "peer accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn conn<H: Handler>(
    mut s: TcpStream,
    ctx: Arc<NetCtx>,
    handler: Arc<H>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), super::NetError> {
    s.set_nodelay(true)?;
    let peer_addr = s.peer_addr().ok();
    let from = match tokio::time::timeout(
        Duration::from_secs(5),
        auth::server(&mut s, ctx.secret(), ctx.me),
    )
    .await
    {
        Ok(Ok(id)) => id,
        Ok(Err(e)) => {
            tracing::warn!(peer = ?peer_addr, error = %e, "peer refused");
            return Ok(());
        }
        Err(_) => {
            tracing::warn!(peer = ?peer_addr, "peer refused: handshake timed out");
            return Ok(());
        }
    };
    loop {
        let req: Req = tokio::select! {
            _ = stop.wait_for(|s| *s) => return Ok(()),
            r = read_frame(&mut s, MAX_FRAME) => r?,
        };
        if let Some(f) = ctx.fault() {
            let (drop, delay) = f.incoming(from);
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            if drop {
                return Ok(());
            }
        }
        ctx.touch(from);
        let resp: Resp = handler.handle(from, req).await;
        write_frame(&mut s, &resp).await?;
    }
}
