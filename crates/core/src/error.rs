//! The core error: a [`ErrorKind`] callers branch on, a human message, an optional source.

use std::fmt;
use std::time::Duration;

/// What went wrong, coarsely enough that a caller can decide what to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The credentials were missing or not accepted (HTTP 401, `invalid_auth`).
    Unauthorized,
    /// Authenticated, but not allowed (HTTP 403, `missing_scope`, a missing role).
    Forbidden,
    /// The thing asked for does not exist (or is not visible to us).
    NotFound,
    /// Over a rate limit; retry after the given delay when the platform said one.
    RateLimited {
        /// The platform's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// The input was refused before anything changed.
    InvalidInput,
    /// The input conflicts with existing state (duplicate, already linked).
    Conflict,
    /// The platform failed or answered something we could not understand (5xx, malformed).
    Upstream,
    /// The stored grant is dead (revoked or expired refresh token): an admin must reconnect.
    NeedsReauth,
    /// The platform does not offer this operation.
    Unsupported,
    /// Local storage failed.
    Storage,
}

impl ErrorKind {
    /// Whether retrying the same call later may succeed without anyone changing anything.
    pub fn is_transient(self) -> bool {
        matches!(self, ErrorKind::RateLimited { .. } | ErrorKind::Upstream)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::NotFound => "not found",
            ErrorKind::RateLimited { .. } => "rate limited",
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Upstream => "upstream error",
            ErrorKind::NeedsReauth => "needs reauthorization",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Storage => "storage error",
        };
        f.write_str(s)
    }
}

/// The error of the core traits. Messages never contain secrets.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// `Result` with the core [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with a message for humans.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the kind prefix.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The platform's `Retry-After`, when rate limited.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.kind {
            ErrorKind::RateLimited { retry_after } => retry_after,
            _ => None,
        }
    }

    /// Shorthand for [`ErrorKind::InvalidInput`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidInput, message)
    }

    /// Shorthand for [`ErrorKind::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::NotFound, message)
    }

    /// Shorthand for [`ErrorKind::Upstream`].
    pub fn upstream(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Upstream, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_and_retry_after() {
        let e = Error::new(
            ErrorKind::RateLimited {
                retry_after: Some(Duration::from_secs(3)),
            },
            "slow down",
        );
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
        assert!(e.kind().is_transient());
        assert_eq!(e.to_string(), "rate limited: slow down");
        assert!(!Error::invalid("x").kind().is_transient());
        assert_eq!(Error::invalid("x").retry_after(), None);
    }
}
