//! One error type for the load generator and the report writer.

use thiserror::Error;

/// Everything that can go wrong while benchmarking.
#[derive(Debug, Error)]
pub enum BenchError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("websocket: {0}")]
    Ws(Box<tokio_tungstenite::tungstenite::Error>),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("HTTP {status} from {what}: {body}")]
    Http {
        what: String,
        status: u16,
        body: String,
    },
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("refused by server: {0}")]
    Refused(String),
    #[error("plot: {0}")]
    Plot(String),
    #[error("configuration: {0}")]
    Config(String),
}

impl From<tokio_tungstenite::tungstenite::Error> for BenchError {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Self {
        BenchError::Ws(Box::new(e))
    }
}

impl From<tokio::time::error::Elapsed> for BenchError {
    fn from(_: tokio::time::error::Elapsed) -> Self {
        BenchError::Timeout("operation deadline".into())
    }
}

pub type Result<T> = std::result::Result<T, BenchError>;
