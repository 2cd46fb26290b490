//! What the relay protocol needs from the network: a [`Transport`] moves a
//! channel's head list and bundles and nothing else. tig-feed has no HTTP; the
//! `tig-feed-http` crate implements this over `tig-client`, tests may keep a
//! channel in memory.

use std::path::Path;

use tig_core::ObjectId;

use super::Line;

/// An error of the transport, boxed: the protocol only needs to tell the
/// cases below apart, and prints the rest with its chain.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a [`Transport`] call failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The object (or channel) is not on the relay.
    #[error("not found on the relay")]
    NotFound,
    /// A download passed the `max` bytes the caller allowed; nothing kept.
    #[error(transparent)]
    OverLimit(BoxError),
    /// Anything else (connection, status, hash mismatch…).
    #[error(transparent)]
    Other(BoxError),
}

/// Where a pushed bundle was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The bundle object (a burst list of its chunks when `burst`).
    pub id: ObjectId,
    /// Whether `id` is a burst list.
    pub burst: bool,
    /// How many chunks the bundle was cut into (when `burst`).
    pub chunks: u64,
}

/// The channel's bytes on an untrusted relay: every byte it returns is
/// verified by hash (objects) or by the protocol (the head list) before use.
pub trait Transport {
    /// The channel's name (a pull's default `--as`).
    fn channel(&self) -> &str;

    /// The channel as the user wrote it, for messages
    /// (`tig+http://HOST:PORT/NAME`).
    fn location(&self) -> String;

    /// The head list's bytes, at most `max + 1` of them (so that a longer list
    /// shows); `None` when the channel does not exist.
    fn get_list(&self, max: u64) -> Result<Option<Vec<u8>>, TransportError>;

    /// Downloads the bundle `line` names into `dest` (replacing it), verified
    /// by hash, refusing more than `max` bytes.
    fn get_bundle(&self, line: &Line, dest: &Path, max: u64) -> Result<(), TransportError>;

    /// Whether the relay still holds the whole bundle `line` names (asking
    /// also keeps it alive).
    fn has_bundle(&self, line: &Line) -> Result<bool, TransportError>;

    /// Stores the bundle in `file` and says where.
    fn put_bundle(&self, file: &Path) -> Result<Stored, TransportError>;

    /// Appends one rendered line (newline included) to the head list.
    fn append_line(&self, line: &str) -> Result<(), TransportError>;
}
