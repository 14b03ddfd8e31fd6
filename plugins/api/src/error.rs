use std::time::Duration;

/// Why a stage could not handle an event.
///
/// The distinction drives delivery: a retryable error is tried again later under the
/// stage's retry policy; a fatal one dead-letters the event at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StageError {
    /// Trying again later may succeed (connection refused, timeout, 429, 5xx).
    #[error("{message}")]
    Retryable {
        message: String,
        /// A wait the peer asked for (e.g. `Retry-After`), honoured by the retry policy.
        retry_after: Option<Duration>,
    },
    /// Trying again cannot succeed (a 4xx, a payload the stage cannot handle).
    #[error("{message}")]
    Fatal { message: String },
}

impl StageError {
    pub fn retryable(message: impl Into<String>) -> Self {
        StageError::Retryable {
            message: message.into(),
            retry_after: None,
        }
    }

    /// Retryable, not before `after` (a peer's `Retry-After`).
    pub fn retryable_after(message: impl Into<String>, after: Duration) -> Self {
        StageError::Retryable {
            message: message.into(),
            retry_after: Some(after),
        }
    }

    pub fn fatal(message: impl Into<String>) -> Self {
        StageError::Fatal {
            message: message.into(),
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, StageError::Retryable { .. })
    }

    pub fn message(&self) -> &str {
        match self {
            StageError::Retryable { message, .. } | StageError::Fatal { message } => message,
        }
    }
}
