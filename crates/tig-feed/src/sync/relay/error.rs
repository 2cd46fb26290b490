//! [`RelayError`]: everything a relay pull or push can fail with.

use crate::FeedId;
use crate::sync::SyncError;

use super::BadLine;
use super::transport::TransportError;

/// Where in the channel a bundle came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct At {
    /// The bundle's object path (`/<h>.tig[?burst=1]`).
    pub target: String,
    /// Its line in the head list.
    pub line: usize,
    /// The channel (`tig+http://HOST:PORT/NAME`).
    pub channel: String,
}

/// A relay pull or push that failed; a pull that fails has moved no ref for
/// the bundle named.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The head list could not be read.
    #[error("reading relay channel {channel}")]
    ReadList {
        /// The channel.
        channel: String,
        /// Why.
        source: TransportError,
    },
    /// The head list is longer than a pull or push reads.
    #[error("relay channel {channel}: the head list is over {max_mib} MiB; refusing it")]
    ListTooLong {
        /// The channel.
        channel: String,
        /// The limit in MiB.
        max_mib: u64,
    },
    /// The head list is not text.
    #[error("relay channel {channel}: the head list is not UTF-8 text")]
    ListNotText {
        /// The channel.
        channel: String,
    },
    /// A line of the head list is not a `tig-feed-v1` line.
    #[error("relay channel {channel}: {error}")]
    BadList {
        /// The channel.
        channel: String,
        /// The line and what is wrong with it.
        error: BadLine,
    },
    /// Nobody ever pushed to the channel.
    #[error(
        "relay channel {channel} does not exist: nothing was ever pushed to it (check the name)"
    )]
    NoChannel {
        /// The channel.
        channel: String,
    },
    /// A feed asked for is not on the channel.
    #[error("feed {feed} is not on relay channel {channel}")]
    FeedNotOnChannel {
        /// The feed.
        feed: FeedId,
        /// The channel.
        channel: String,
    },
    /// The relay lost a bundle the pull needs.
    #[error(
        "relay no longer has bundle {} (line {} of channel {}); ask the publisher to push again",
        .0.target, .0.line, .0.channel
    )]
    BundleLost(Box<At>),
    /// Downloading a bundle failed.
    #[error(
        "bundle {} (line {} of channel {}){}; nothing applied",
        at.target, at.line, at.channel,
        if matches!(source, TransportError::OverLimit(_)) {
            " (--max-bundle or TIG_MAX_BUNDLE sets the limit)"
        } else {
            ""
        }
    )]
    Download {
        /// The bundle.
        at: Box<At>,
        /// Why.
        source: TransportError,
    },
    /// A downloaded bundle's header is unreadable.
    #[error("bundle {} (line {} of channel {}); nothing applied", at.target, at.line, at.channel)]
    BadBundle {
        /// The bundle.
        at: Box<At>,
        /// Why.
        source: SyncError,
    },
    /// A bundle does not carry the tips its line names.
    #[error(
        "line {} of relay channel {} names tips that its bundle {} does not carry; nothing applied",
        .0.line, .0.channel, .0.target
    )]
    LineMismatch(Box<At>),
    /// Applying a checked bundle failed.
    #[error("applying bundle {} (line {} of channel {})", at.target, at.line, at.channel)]
    Apply {
        /// The bundle.
        at: Box<At>,
        /// Why.
        source: SyncError,
    },
    /// A feed to publish has no messages here.
    #[error("feed {0} has no messages in this store")]
    NoMessages(FeedId),
    /// Uploading the bundle failed.
    #[error("uploading the bundle to {channel}")]
    Upload {
        /// The channel.
        channel: String,
        /// Why.
        source: TransportError,
    },
    /// Appending the line to the head list failed (the bundle is stored
    /// but unlisted: garbage the relay will expire).
    #[error("appending to relay channel {channel}")]
    Append {
        /// The channel.
        channel: String,
        /// Why.
        source: TransportError,
    },
    /// A local file could not be created or read.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// The transport failed outside any of the steps above.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The store failed.
    #[error(transparent)]
    Sync(#[from] SyncError),
}

impl From<git2::Error> for RelayError {
    fn from(e: git2::Error) -> Self {
        RelayError::Sync(e.into())
    }
}

impl From<crate::FeedError> for RelayError {
    fn from(e: crate::FeedError) -> Self {
        RelayError::Sync(e.into())
    }
}
