//! The quote coalescer: the latest quote per symbol, published to `watchlist:<SYMBOL>` as a
//! volatile `quote:update` at most once per throttle interval. Bounded: at most
//! `max_pending` distinct symbols wait at once; a new symbol beyond that is refused.

use std::collections::HashMap;

use parking_lot::Mutex;
use serde_json::{json, Value};

use super::error::GatewayError;
use super::Gateway;
use crate::fanout::Payload;

/// Latest quote per symbol, waiting for the next flush.
pub struct Coalescer {
    pending: Mutex<HashMap<String, Value>>,
    max_pending: usize,
}

impl Coalescer {
    pub fn new(max_pending: usize) -> Coalescer {
        Coalescer {
            pending: Mutex::new(HashMap::new()),
            max_pending,
        }
    }

    /// Keeps `quote` as the latest for `symbol`.
    pub fn offer(&self, symbol: &str, quote: Value) -> Result<(), GatewayError> {
        let mut p = self.pending.lock();
        if let Some(slot) = p.get_mut(symbol) {
            *slot = quote;
            return Ok(());
        }
        if p.len() >= self.max_pending {
            return Err(GatewayError::RateLimit {
                message: format!("more than {} distinct symbols pending", self.max_pending),
                retry_after_ms: 100,
            });
        }
        p.insert(symbol.to_owned(), quote);
        Ok(())
    }

    fn take(&self) -> HashMap<String, Value> {
        std::mem::take(&mut *self.pending.lock())
    }
}

/// Flushes the coalescer every throttle interval, for as long as the gateway lives.
pub(super) async fn run(g: Gateway) {
    let mut tick = tokio::time::interval(g.0.settings.quote_throttle);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let batch = g.0.coalescer.take();
        if batch.is_empty() {
            continue;
        }
        let timestamp = crate::util::rfc3339_ms(crate::util::now_unix_ms());
        let publishes = batch.into_iter().map(|(symbol, quote)| {
            let g = g.clone();
            let data = json!({ "symbol": symbol, "quote": quote, "timestamp": timestamp });
            async move {
                let room = format!("watchlist:{symbol}");
                if let Err(e) = g
                    .publish(
                        &room,
                        "quote:update",
                        Payload::json(data.to_string()),
                        false,
                    )
                    .await
                {
                    tracing::warn!(%room, error = %e, "quote flush failed");
                }
            }
        });
        futures_util::future::join_all(publishes).await;
    }
}
