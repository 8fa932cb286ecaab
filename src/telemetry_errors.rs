//! Recent WARN/ERROR log events, for operators: a `tracing` [`Layer`] keeps the last
//! [`CAPACITY`] of them in a process-wide ring buffer, which `GET /cluster/errors` and the
//! status page show.
//!
//! Nothing secret leaves through it: field values whose names suggest a credential or user
//! data (`*key*`, `*secret*`, `*token*`, `*password*`, `*session*`, `*auth*`, `*cookie*`,
//! `*user*`, `ip`, `remote`) are replaced by `***`, the user:password part of any URL is
//! masked, and every text is cut to [`MAX_TEXT`] characters.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::OnceLock;

use parking_lot::Mutex;
use serde::Serialize;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

use crate::util::{now_unix_ms, rfc3339_ms};

/// How many events the buffer keeps.
pub const CAPACITY: usize = 50;
/// Longest message or field value kept, in characters.
pub const MAX_TEXT: usize = 300;

/// One recorded log event.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecentError {
    /// RFC 3339 time with milliseconds.
    pub timestamp: String,
    /// Milliseconds since 1970.
    pub ts: u64,
    /// `WARN` or `ERROR`.
    pub level: &'static str,
    /// The module that logged it.
    pub target: String,
    /// The log message.
    pub message: String,
    /// The other fields, redacted, as `name=value` text.
    pub fields: String,
}

struct Ring {
    events: VecDeque<RecentError>,
    warn_total: u64,
    error_total: u64,
}

fn ring() -> &'static Mutex<Ring> {
    static RING: OnceLock<Mutex<Ring>> = OnceLock::new();
    RING.get_or_init(|| {
        Mutex::new(Ring {
            events: VecDeque::with_capacity(CAPACITY),
            warn_total: 0,
            error_total: 0,
        })
    })
}

/// The recorded events, oldest first, and how many WARN and ERROR events were seen since
/// the process started (including those that left the buffer).
pub fn recent() -> (Vec<RecentError>, u64, u64) {
    let r = ring().lock();
    (
        r.events.iter().cloned().collect(),
        r.warn_total,
        r.error_total,
    )
}

/// Records one event by hand (what the layer does for each WARN/ERROR event).
pub fn record(level: Level, target: &str, message: &str, fields: &str) {
    let level_name = if level == Level::ERROR {
        "ERROR"
    } else {
        "WARN"
    };
    let ms = now_unix_ms();
    let ev = RecentError {
        timestamp: rfc3339_ms(ms),
        ts: ms,
        level: level_name,
        target: truncate(target),
        message: truncate(&mask_urls(message)),
        fields: truncate(fields),
    };
    let mut r = ring().lock();
    if level == Level::ERROR {
        r.error_total += 1;
    } else {
        r.warn_total += 1;
    }
    if r.events.len() == CAPACITY {
        r.events.pop_front();
    }
    r.events.push_back(ev);
}

/// The layer: add it to the subscriber (`registry().with(filter).with(layer())`).
pub fn layer() -> RecentErrorsLayer {
    RecentErrorsLayer
}

/// Keeps WARN and ERROR events in the ring buffer; see the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecentErrorsLayer;

impl<S: Subscriber> Layer<S> for RecentErrorsLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let level = *meta.level();
        if level != Level::WARN && level != Level::ERROR {
            return;
        }
        let mut v = Collect::default();
        event.record(&mut v);
        record(level, meta.target(), &v.message, &v.fields);
    }
}

#[derive(Default)]
struct Collect {
    message: String,
    fields: String,
}

impl Collect {
    fn push(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_owned();
            return;
        }
        if field.name().starts_with("log.") {
            return;
        }
        if !self.fields.is_empty() {
            self.fields.push(' ');
        }
        let shown = if is_sensitive(field.name()) {
            "***".to_owned()
        } else {
            mask_urls(value)
        };
        let _ = write!(self.fields, "{}={}", field.name(), shown);
    }
}

impl Visit for Collect {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.push(field, &format!("{value:?}"));
    }
}

/// Whether a field name suggests a credential or user data.
pub fn is_sensitive(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    const PARTS: &[&str] = &[
        "key", "secret", "token", "password", "passwd", "session", "auth", "cookie", "user", "jwt",
        "bearer",
    ];
    PARTS.iter().any(|p| n.contains(p)) || n == "ip" || n == "remote" || n == "addr_remote"
}

/// Replaces the `user:password@` part of every `scheme://user:password@host` by `***@`.
pub fn mask_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c == '/' || c.is_whitespace() || c == '"' || c == '\'')
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

fn truncate(s: &str) -> String {
    if s.chars().count() <= MAX_TEXT {
        return s.to_owned();
    }
    let mut t: String = s.chars().take(MAX_TEXT).collect();
    t.push('…');
    t
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn masks_url_credentials() {
        assert_eq!(
            mask_urls("redis://default:hunter2@redis:6379/0 failed"),
            "redis://***@redis:6379/0 failed"
        );
        assert_eq!(mask_urls("http://host:1/x"), "http://host:1/x");
        assert_eq!(mask_urls("no url"), "no url");
    }

    #[test]
    fn sensitive_names() {
        for n in [
            "api_key",
            "cluster_secret",
            "token",
            "sessionId",
            "user",
            "ip",
        ] {
            assert!(is_sensitive(n), "{n}");
        }
        for n in ["error", "room", "limit", "path", "channel"] {
            assert!(!is_sensitive(n), "{n}");
        }
    }

    #[test]
    fn ring_keeps_the_last_events() {
        use tracing_subscriber::prelude::*;
        let sub = tracing_subscriber::registry().with(layer());
        tracing::subscriber::with_default(sub, || {
            tracing::info!("not kept");
            for i in 0..(CAPACITY + 5) {
                tracing::warn!(i, api_key = "k-123", "ring test warning {i}");
            }
            tracing::error!(url = "redis://u:p@h:1", "ring test error");
        });
        let (events, warns, errors) = recent();
        assert!(events.len() <= CAPACITY);
        assert!(warns >= (CAPACITY + 5) as u64 && errors >= 1);
        let last = events.last().expect("an event");
        assert_eq!(last.level, "ERROR");
        assert_eq!(last.message, "ring test error");
        assert_eq!(last.fields, "url=redis://***@h:1");
        assert!(events.iter().all(|e| !e.fields.contains("k-123")));
        assert!(!events.iter().any(|e| e.message == "not kept"));
    }
}
