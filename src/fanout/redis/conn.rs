//! The two Redis connections of a node (commands and subscriptions), built from
//! `--redis-url`, reconnecting by themselves with the seed's backoff
//! (`min(attempt × 50 ms, 2 s)`), every error logged with what it concerned, and the status
//! `/health/websocket` reports (`ready`, `connecting`, `error`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fred::clients::{Client, SubscriberClient};
use fred::interfaces::{ClientLike, EventInterface};
use fred::types::config::{Config as RedisConfig, ReconnectPolicy};
use fred::types::Builder;

/// Why the connections could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("invalid --redis-url {url}: {source}")]
    Url {
        url: String,
        source: fred::error::Error,
    },
    #[error("cannot build the Redis client: {0}")]
    Build(fred::error::Error),
}

/// The connections and what is known of their health.
pub struct Conn {
    /// Commands and scripts.
    pub client: Client,
    /// Subscriptions (the events channel and the Node adapter's channels).
    pub sub: SubscriberClient,
    /// The URL without its password, for logs.
    pub url: String,
    errored: AtomicBool,
    /// Set by the subscriber task once its subscriptions are in place, cleared on a drop.
    pub subscribed: AtomicBool,
}

/// Hides the password of a URL.
pub fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://***@{host}"),
            None => url.to_owned(),
        },
        None => "***".to_owned(),
    }
}

fn builder(url: &str) -> Result<Builder, ConnError> {
    let config = RedisConfig::from_url(url).map_err(|source| ConnError::Url {
        url: redact(url),
        source,
    })?;
    let mut policy = ReconnectPolicy::new_linear(0, 2000, 50);
    policy.set_jitter(0);
    let mut b = Builder::from_config(config);
    b.set_policy(policy)
        .with_config(|c| c.fail_fast = false)
        .with_connection_config(|c| {
            c.connection_timeout = Duration::from_secs(2);
            c.internal_command_timeout = Duration::from_secs(2);
            c.max_command_attempts = 1;
        })
        .with_performance_config(|p| {
            p.default_command_timeout = Duration::from_secs(3);
            p.broadcast_channel_capacity = 16_384;
        });
    Ok(b)
}

impl Conn {
    /// Builds both connections and starts connecting (without waiting).
    pub fn start(url: &str) -> Result<Arc<Conn>, ConnError> {
        let b = builder(url)?;
        let client = b.build().map_err(ConnError::Build)?;
        let sub = b.build_subscriber_client().map_err(ConnError::Build)?;
        let conn = Arc::new(Conn {
            client,
            sub,
            url: redact(url),
            errored: AtomicBool::new(false),
            subscribed: AtomicBool::new(false),
        });
        conn.watch(
            "commands",
            conn.client.error_rx(),
            conn.client.reconnect_rx(),
        );
        conn.watch("subscriber", conn.sub.error_rx(), conn.sub.reconnect_rx());
        drop(conn.client.connect());
        drop(conn.sub.connect());
        Ok(conn)
    }

    fn watch(
        self: &Arc<Self>,
        which: &'static str,
        mut errors: tokio::sync::broadcast::Receiver<(
            fred::error::Error,
            Option<fred::types::config::Server>,
        )>,
        mut reconnects: tokio::sync::broadcast::Receiver<fred::types::config::Server>,
    ) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    e = errors.recv() => match e {
                        Ok((e, server)) => {
                            let Some(c) = weak.upgrade() else { break };
                            c.errored.store(true, Ordering::Release);
                            if which == "subscriber" {
                                c.subscribed.store(false, Ordering::Release);
                            }
                            tracing::error!(
                                connection = which,
                                url = %c.url,
                                server = ?server.map(|s| s.to_string()),
                                error = %e,
                                "Redis connection error; reconnecting (backoff min(attempt × 50 ms, 2 s))"
                            );
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                    },
                    r = reconnects.recv() => match r {
                        Ok(server) => {
                            let Some(c) = weak.upgrade() else { break };
                            c.errored.store(false, Ordering::Release);
                            tracing::info!(connection = which, url = %c.url, server = %server, "Redis connected");
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                    },
                }
            }
        });
    }

    /// Whether both connections are up and the subscriptions in place.
    pub fn healthy(&self) -> bool {
        self.client.is_connected()
            && self.sub.is_connected()
            && self.subscribed.load(Ordering::Acquire)
    }

    /// Whether commands can be sent now (checked before a publish, to fail fast).
    pub fn commands_up(&self) -> bool {
        self.client.is_connected()
    }

    /// `ready`, `connecting` or `error`, as the seed's health check reports ioredis' status.
    pub fn status(&self) -> &'static str {
        if self.healthy() {
            "ready"
        } else if self.errored.load(Ordering::Acquire) {
            "error"
        } else {
            "connecting"
        }
    }

    /// Closes both connections.
    pub async fn close(&self) {
        for (which, r) in [
            ("commands", self.client.quit().await),
            ("subscriber", self.sub.quit().await),
        ] {
            if let Err(e) = r {
                tracing::debug!(connection = which, error = %e, "closing the Redis connection");
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("redis://u:p@h:1"), "redis://***@h:1");
        assert_eq!(redact("redis://h:1"), "redis://h:1");
    }

    #[test]
    fn rejects_a_bad_url() {
        assert!(builder("redis://").is_err() || builder("nope").is_err());
    }
}
