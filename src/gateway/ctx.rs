//! Per-socket state: who the socket is and its rate limiters (governor, lock-free).

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use super::auth::Identity;
use super::error::GatewayError;

/// What the gateway keeps for each socket.
pub struct SocketCtx {
    pub identity: Identity,
    events: DefaultDirectRateLimiter,
    subscriptions: DefaultDirectRateLimiter,
}

impl std::fmt::Debug for SocketCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketCtx")
            .field("user_id", &self.identity.user_id)
            .finish()
    }
}

fn quota(per_second: u32) -> Quota {
    Quota::per_second(NonZeroU32::new(per_second.max(1)).unwrap_or(NonZeroU32::MIN))
}

fn check(limiter: &DefaultDirectRateLimiter, what: &str) -> Result<(), GatewayError> {
    limiter.check().map_err(|not_until| {
        let wait: Duration = not_until.wait_time_from(DefaultClock::default().now());
        GatewayError::RateLimit {
            message: format!("too many {what}; retry later"),
            retry_after_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1),
        }
    })
}

impl SocketCtx {
    pub fn new(identity: Identity, event_rate: u32, subscribe_rate: u32) -> SocketCtx {
        SocketCtx {
            identity,
            events: RateLimiter::direct(quota(event_rate)),
            subscriptions: RateLimiter::direct(quota(subscribe_rate)),
        }
    }

    pub fn user_id(&self) -> &str {
        &self.identity.user_id
    }

    /// One more client event.
    pub fn check_event(&self) -> Result<(), GatewayError> {
        check(&self.events, "events")
    }

    /// One more subscription operation.
    pub fn check_subscription(&self) -> Result<(), GatewayError> {
        check(&self.subscriptions, "subscription requests")
    }
}
