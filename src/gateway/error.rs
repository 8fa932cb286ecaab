//! The error codes of the contract, shared by socket events and the HTTP API.

use serde_json::{json, Value};

/// A refusal a client or backend sees, with its contract code.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum GatewayError {
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{message}")]
    RateLimit {
        message: String,
        retry_after_ms: u64,
    },
    #[error("{0}")]
    SubscriptionLimit(String),
    #[error("{0}")]
    InvalidPayload(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    NoQuorum(String),
    #[error("{0}")]
    Internal(String),
}

impl GatewayError {
    /// The contract's code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::Unauthorized(_) => "UNAUTHORIZED",
            GatewayError::Forbidden(_) => "FORBIDDEN",
            GatewayError::RateLimit { .. } => "RATE_LIMIT",
            GatewayError::SubscriptionLimit(_) => "SUBSCRIPTION_LIMIT",
            GatewayError::InvalidPayload(_) => "INVALID_PAYLOAD",
            GatewayError::PayloadTooLarge(_) => "PAYLOAD_TOO_LARGE",
            GatewayError::NoQuorum(_) => "NO_QUORUM",
            GatewayError::Internal(_) => "INTERNAL",
        }
    }

    /// The same error with its message prefixed by where it was found (`emits[3]: ...`).
    pub fn at(self, place: &str) -> GatewayError {
        let at = |m: String| format!("{place}: {m}");
        match self {
            GatewayError::Unauthorized(m) => GatewayError::Unauthorized(at(m)),
            GatewayError::Forbidden(m) => GatewayError::Forbidden(at(m)),
            GatewayError::RateLimit {
                message,
                retry_after_ms,
            } => GatewayError::RateLimit {
                message: at(message),
                retry_after_ms,
            },
            GatewayError::SubscriptionLimit(m) => GatewayError::SubscriptionLimit(at(m)),
            GatewayError::InvalidPayload(m) => GatewayError::InvalidPayload(at(m)),
            GatewayError::PayloadTooLarge(m) => GatewayError::PayloadTooLarge(at(m)),
            GatewayError::NoQuorum(m) => GatewayError::NoQuorum(at(m)),
            GatewayError::Internal(m) => GatewayError::Internal(at(m)),
        }
    }

    /// `{ code, message, retryAfterMs? }`.
    pub fn body(&self) -> Value {
        let mut v = json!({ "code": self.code(), "message": self.to_string() });
        if let GatewayError::RateLimit { retry_after_ms, .. } = self {
            v["retryAfterMs"] = json!(retry_after_ms);
        }
        v
    }

    /// The HTTP status of the API for this error.
    pub fn status(&self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            GatewayError::Unauthorized(_) => S::UNAUTHORIZED,
            GatewayError::Forbidden(_) => S::FORBIDDEN,
            GatewayError::RateLimit { .. } => S::TOO_MANY_REQUESTS,
            GatewayError::SubscriptionLimit(_) => S::TOO_MANY_REQUESTS,
            GatewayError::InvalidPayload(_) => S::BAD_REQUEST,
            GatewayError::PayloadTooLarge(_) => S::PAYLOAD_TOO_LARGE,
            GatewayError::NoQuorum(_) => S::SERVICE_UNAVAILABLE,
            GatewayError::Internal(_) => S::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<crate::fanout::FanoutError> for GatewayError {
    fn from(e: crate::fanout::FanoutError) -> Self {
        use crate::fanout::FanoutError as F;
        match e {
            F::NoQuorum(m) => GatewayError::NoQuorum(format!(
                "this node cannot reach a majority of the cluster ({m})"
            )),
            F::Invalid(m) => GatewayError::InvalidPayload(m),
            F::Internal(m) => GatewayError::Internal(m),
        }
    }
}
