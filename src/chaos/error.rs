//! Why a chaos run could not be carried out (as opposed to a run that found a fault in the
//! system under test, which is a [`super::report::Verdict`]).

use std::path::PathBuf;

/// A failure of the harness itself.
#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    /// The arguments make no sense (e.g. zero nodes, an unknown fault kind).
    #[error("invalid arguments: {0}")]
    Args(String),
    /// A file or directory could not be created, read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A node process could not be started or signalled.
    #[error("node {node}: {message}")]
    Node { node: u64, message: String },
    /// The cluster did not become ready in time.
    #[error("cluster not ready: {0}")]
    NotReady(String),
    /// An HTTP call the harness needs (session, status, fault, history) failed.
    #[error("HTTP {what}: {message}")]
    Http { what: String, message: String },
    /// The report could not be encoded.
    #[error("report: {0}")]
    Report(String),
    /// The plot could not be drawn.
    #[error("plot: {0}")]
    Plot(String),
    /// The network-namespace mode could not set up or act.
    #[error(transparent)]
    Net(#[from] super::netns::NetnsError),
    /// SIGINT or SIGTERM stopped the run (everything was cleaned up).
    #[error("interrupted by {0}; nodes stopped")]
    Interrupted(&'static str),
}

impl ChaosError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> ChaosError {
        ChaosError::Io {
            path: path.into(),
            source,
        }
    }

    /// An HTTP failure while doing `what`.
    pub fn http(what: impl Into<String>, message: impl std::fmt::Display) -> ChaosError {
        ChaosError::Http {
            what: what.into(),
            message: message.to_string(),
        }
    }
}
