//! The one error type of the feed library.

use std::path::PathBuf;

/// Everything that can go wrong reading, writing or verifying feeds.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// A feed, alias, key or commit the caller named does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// A string is not a feed id (64 hex for ed25519, 40 hex for a GPG fingerprint).
    #[error("not a feed id: {0:?} (expected 64 hex chars for ed25519 or a 40-hex GPG fingerprint)")]
    InvalidId(String),
    /// An alias or ref name that cannot be used.
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// Why it is refused.
        reason: String,
    },
    /// Message content that is not allowed (too large, not UTF-8, contains NUL).
    #[error("invalid content: {0}")]
    Content(String),
    /// A key file that cannot be read, parsed or used.
    #[error("key {path}: {reason}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Something already exists and would be overwritten.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// The feed's ref moved between reading the tip and updating it (compare-and-swap
    /// failure): another appender won. Nothing was lost; retry on the new tip.
    #[error("concurrent append to {feed}: the feed's tip moved (expected {expected})")]
    Conflict {
        /// The feed whose ref moved.
        feed: String,
        /// The tip this append was built on (`none` for the first message).
        expected: String,
    },
    /// The store is not a git repository, or is not usable as a feed store.
    #[error("store {path}: {reason}")]
    Store {
        /// The store's path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An object in the store that cannot be parsed as a commit.
    #[error("commit {commit}: {reason}")]
    Corrupt {
        /// The object id.
        commit: git2::Oid,
        /// What is wrong.
        reason: String,
    },
    /// Running the `gpg` program failed.
    #[error("gpg: {0}")]
    Gpg(String),
    /// An error from libgit2.
    #[error("git: {}", .0.message())]
    Git(#[from] git2::Error),
    /// An I/O error.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl FeedError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> FeedError {
        FeedError::Io {
            context: context.into(),
            source,
        }
    }

    /// True for the not-found case (a missing feed, alias, key file or object).
    pub fn is_not_found(&self) -> bool {
        match self {
            FeedError::NotFound(_) => true,
            FeedError::Git(e) => e.code() == git2::ErrorCode::NotFound,
            _ => false,
        }
    }
}
