//! Small value types of the resolved configuration.

use std::fmt;

/// A secret value whose `Debug` and `Display` print `***`; read it with [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret itself: pass it on, never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_string())
    }
}

/// The fan-out backend, resolved (`auto` is gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Rooms replicated with Raft between the peers.
    Raft,
    /// Redis pub/sub between nodes (the seed's design); no Raft.
    Redis,
    /// In-memory, this node only.
    Local,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Raft => "raft",
            Backend::Redis => "redis",
            Backend::Local => "local",
        })
    }
}

/// Which browser origins may make cross-origin requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// `*` was given explicitly.
    Any,
    /// Exactly these origins (`scheme://host[:port]`, lower case, no trailing slash).
    List(Vec<String>),
    /// No cross-origin browser access; same-origin and non-browser clients are fine.
    None,
}

impl AllowedOrigins {
    /// Whether a browser request with this `Origin` header may be served cross-origin.
    pub fn allows(&self, origin: &str) -> bool {
        match self {
            AllowedOrigins::Any => true,
            AllowedOrigins::List(list) => {
                let origin = origin.trim_end_matches('/');
                list.iter().any(|o| o.eq_ignore_ascii_case(origin))
            }
            AllowedOrigins::None => false,
        }
    }
}
