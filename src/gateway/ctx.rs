//! Per-socket state: who the socket is and its rate limiters (governor, lock-free).
//!
//! The limiters are made on the socket's first event or subscription: an idle socket (most
//! of them, most of the time) keeps only its identity and two numbers.

use std::num::NonZeroU32;
use std::sync::OnceLock;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use super::auth::Identity;
use super::error::GatewayError;

/// What the gateway keeps for each socket.
pub struct SocketCtx {
    pub identity: Identity,
    event_rate: u32,
    subscribe_rate: u32,
    limiters: OnceLock<Box<Limiters>>,
}

struct Limiters {
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

/// The one clock every limiter reads. Making a clock (quanta's) runs `cpuid`, which traps to
/// the hypervisor on a VM: about 25 µs per limiter on this machine against 0.06 µs for a copy
/// of a shared one, and every socket that subscribes makes two limiters.
pub(crate) fn clock() -> &'static DefaultClock {
    static CLOCK: OnceLock<DefaultClock> = OnceLock::new();
    CLOCK.get_or_init(DefaultClock::default)
}

/// A limiter on the shared [`clock`].
pub(crate) fn limiter(quota: Quota) -> DefaultDirectRateLimiter {
    RateLimiter::direct_with_clock(quota, clock().clone())
}

fn quota(per_second: u32) -> Quota {
    Quota::per_second(NonZeroU32::new(per_second.max(1)).unwrap_or(NonZeroU32::MIN))
}

fn check(limiter: &DefaultDirectRateLimiter, what: &str) -> Result<(), GatewayError> {
    limiter.check().map_err(|not_until| {
        let wait: Duration = not_until.wait_time_from(clock().now());
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
            event_rate,
            subscribe_rate,
            limiters: OnceLock::new(),
        }
    }

    fn limiters(&self) -> &Limiters {
        self.limiters.get_or_init(|| {
            Box::new(Limiters {
                events: limiter(quota(self.event_rate)),
                subscriptions: limiter(quota(self.subscribe_rate)),
            })
        })
    }

    pub fn user_id(&self) -> &str {
        &self.identity.user_id
    }

    /// One more client event.
    pub fn check_event(&self) -> Result<(), GatewayError> {
        check(&self.limiters().events, "events")
    }

    /// One more subscription operation.
    pub fn check_subscription(&self) -> Result<(), GatewayError> {
        check(&self.limiters().subscriptions, "subscription requests")
    }
}
