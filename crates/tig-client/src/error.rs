//! The one error type of the client: every failure a user can cause or meet, each
//! with a message that fits on one line.

use tig_core::ObjectId;

/// Everything that can go wrong talking to a tig server or verifying what it sent.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bad argument: a malformed hash, URL, size or key.
    #[error("{0}")]
    Usage(String),
    /// A local file-system operation failed.
    #[error("{context}: {err}")]
    Io {
        /// What was being done, naming the path.
        context: String,
        /// The underlying error.
        err: std::io::Error,
    },
    /// The server could not be reached or the connection broke (after retries).
    #[error("{what}: cannot talk to the server: {reason}")]
    Transport {
        /// The request, e.g. `GET /<h>.tig`.
        what: String,
        /// Why, as reqwest says it.
        reason: String,
    },
    /// No connection could be made to the server (after retries).
    #[error("cannot connect ({reason}): is the server running at {server}?")]
    Unreachable {
        /// The request, e.g. `GET /<h>.tig` (not in the message: callers name
        /// what they were doing).
        what: String,
        /// The server's base URL.
        server: String,
        /// The innermost cause, e.g. "Connection refused (os error 111)".
        reason: String,
    },
    /// The object is not on the server.
    #[error("{what}: not found on the server (404)")]
    NotFound {
        /// The request, e.g. `GET /<h>.tig`.
        what: String,
    },
    /// The server answered with an unexpected status.
    #[error("{what}: server answered {status}: {message}")]
    Status {
        /// The request, e.g. `PUT /`.
        what: String,
        /// The HTTP status code.
        status: u16,
        /// The first line of the server's reply body.
        message: String,
    },
    /// Bytes received do not hash to the name they were asked by: the server or the
    /// transport tampered with them. Nothing was written.
    #[error(
        "hash mismatch: {what} should hash to {expected} but the server sent bytes hashing to {actual}; nothing written"
    )]
    Mismatch {
        /// What was fetched, e.g. `/<h>.tig`.
        what: String,
        /// The name asked for.
        expected: ObjectId,
        /// The hash of what arrived.
        actual: ObjectId,
    },
    /// A download was larger than allowed; `limit` says which bound it broke.
    #[error("invalid {what}: {reason}")]
    TooLarge {
        /// What was being fetched, e.g. `/<h>.tig`.
        what: String,
        /// The bound that was passed.
        limit: Limit,
        /// The sentence shown to the user.
        reason: String,
    },
    /// A burst list, snapshot tree or server reply is malformed.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What was being parsed.
        what: String,
        /// Why it was refused.
        reason: String,
    },
}

/// Which bound a too-large download passed ([`Error::TooLarge`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The length the server stated, or an internal buffer's size.
    Expected,
    /// The length the server's `HEAD` announced (this many bytes).
    Announced(u64),
    /// The download limit the caller set (this many bytes).
    Max(u64),
}

impl From<tig_core::SizeError> for Error {
    fn from(e: tig_core::SizeError) -> Self {
        Self::Usage(e.to_string())
    }
}

impl From<tig_core::BurstError> for Error {
    fn from(e: tig_core::BurstError) -> Self {
        Self::invalid("burst list", e.to_string())
    }
}

impl Error {
    /// An [`Error::Io`] naming what was being done.
    pub fn io(context: impl Into<String>, err: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            err,
        }
    }

    /// The kind of a local I/O failure (e.g. `BrokenPipe` when the output was
    /// closed), `None` for every other error.
    pub fn io_kind(&self) -> Option<std::io::ErrorKind> {
        match self {
            Self::Io { err, .. } => Some(err.kind()),
            _ => None,
        }
    }

    /// An [`Error::Invalid`].
    pub fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            what: what.into(),
            reason: reason.into(),
        }
    }
}

/// Result with the client's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
