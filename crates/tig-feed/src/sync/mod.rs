//! Replication between stores, bundles, fork detection and proofs, deletion.
//!
//! Everything here works on a [`FeedStore`](crate::FeedStore) and leaves the
//! signature rules to [`verify_range`](crate::verify_range): this module moves
//! objects and refs around, never decides on its own whether a message is valid.
//!
//! - [`replicate`]: `pull` from a path, a git remote URL or a bundle file, and
//!   `push` to a path or URL. Incoming tips land in a quarantine namespace
//!   (`refs/tig/incoming/<nonce>/…`), are validated, and only then move
//!   `refs/remotes/<source>/<feed>` and (by fast-forward) `refs/heads/<feed>`.
//! - [`bundle`]: the git bundle format (v2 written, v2/v3 read) over libgit2's
//!   `PackBuilder` and pack writer, since libgit2 has no bundle API.
//! - [`forks`]: independent tips of one feed, their fork points and the
//!   conflicting messages; proofs exported as self-contained bundles.
//! - [`graph`]: the branches of one feed as a text graph or Graphviz DOT.
//! - [`delete`]: drop a feed's refs everywhere and prune its objects.
//! - [`verified`]: the pipeline's types: received tips are
//!   [`Unverified`](verified::Unverified); only [`verified::verify`] makes a
//!   [`Verified`](verified::Verified), the only thing that moves a feed's refs
//!   during a pull.
//! - [`relay`]: the relay protocol (head lists, push planning, bundle checks,
//!   apply order, outcome folding) and its pull and push, over a
//!   [`relay::Transport`] the caller provides (tig-feed has no HTTP).

pub mod bundle;
pub mod delete;
pub mod forks;
pub mod graph;
pub(crate) mod oid_serde;
pub mod relay;
pub mod replicate;
mod util;
pub mod verified;

pub use bundle::{BundleHeader, BundleSummary, create_bundle};
pub use delete::{DeleteReport, delete_feed};
pub use forks::{Fork, ForkMessage, ProofReport, export_proof, find_forks, verify_proof};
pub use graph::{graph_dot, graph_text};
pub use replicate::{
    FeedOutcome, Outcome, PullOptions, PullReport, PushOptions, PushOutcome, PushReport, Refusal,
    Source, pull, push, source_name,
};

use std::path::PathBuf;

/// Everything that can go wrong while replicating, bundling, detecting forks or deleting.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// libgit2 failed (I/O, transport, missing object…).
    #[error("git: {}", .0.message())]
    Git(#[from] git2::Error),
    /// The feed layer failed (bad feed id, unreadable store…).
    #[error(transparent)]
    Feed(#[from] crate::FeedError),
    /// A file could not be read or written. The reason is part of the message
    /// and not a `source`, so `{:#}` does not print it twice.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What happened.
        error: std::io::Error,
    },
    /// The file does not start with a git bundle header.
    #[error("{}: not a git bundle", .0.display())]
    NotABundle(PathBuf),
    /// The bundle header or pack is damaged; nothing was changed.
    #[error("corrupt bundle: {0}")]
    CorruptBundle(String),
    /// An incremental bundle needs a commit this store does not have.
    #[error(
        "bundle needs commit {0}, which this store does not have (pull the earlier messages first)"
    )]
    MissingPrerequisite(git2::Oid),
    /// The named feed is not in this store.
    #[error("feed {0} is not in this store")]
    FeedNotFound(crate::FeedId),
    /// A feed asked for is not in the source of a pull.
    #[error("feed {0} (in the source) is not in this store")]
    FeedNotInSource(crate::FeedId),
    /// A source name (`--as`) that cannot be used in a ref name.
    #[error("invalid source name {0:?}: it must be usable as a git ref component")]
    BadSourceName(String),
    /// A bundle would carry no messages.
    #[error("nothing to bundle: {0}")]
    NothingToBundle(String),
    /// `--since FEED=COMMIT` names a commit that is not in the feed's history.
    #[error("--since {feed}={commit}: not an ancestor of the feed's tip {tip}")]
    BadSince {
        /// Feed.
        feed: crate::FeedId,
        /// Commit given.
        commit: git2::Oid,
        /// The feed's tip, which does not descend from `commit`.
        tip: git2::Oid,
    },
    /// A fork proof does not prove anything.
    #[error("invalid proof: {0}")]
    InvalidProof(String),
    /// A pull source or push destination that is none of the forms tig reads.
    #[error("{source_arg}: {reason}")]
    BadSource {
        /// What was given.
        source_arg: String,
        /// What is wrong, and what would work.
        reason: String,
    },
    /// The remote end of a git transport failed or is not a git server.
    #[error("{0}")]
    Transport(String),
    /// The request cannot be done this way.
    #[error("{0}")]
    Unsupported(String),
    /// A command we shell out to (only `git gc` for deletion) failed.
    #[error("{command} failed: {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Its last stderr line.
        stderr: String,
    },
    /// After deleting, some of the feed's objects are still in the store.
    #[error(
        "feed {feed}: {remaining} of its commits are still in the store after pruning ({hint})"
    )]
    DeleteIncomplete {
        /// Feed.
        feed: crate::FeedId,
        /// How many commits survived.
        remaining: usize,
        /// Likely reason.
        hint: String,
    },
}

impl SyncError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        SyncError::Io {
            path: path.into(),
            error: source,
        }
    }
}
