//! Storage behind `tig serve`: the [`Store`] trait, its backends and retention.
//!
//! Layout:
//! - this file: the trait, its error type and the small value types it speaks;
//! - [`fs`]: the filesystem backend (`<root>/<h>.tig` files, private temp files,
//!   atomic no-replace publication, per-name locks);
//! - [`mem`]: an in-memory backend for tests and ephemeral use;
//! - [`retention`]: the background sweeper that forgets unused objects.
//!
//! Every object is named by an [`ObjectId`]. A name holds either *content* (bytes
//! whose SHA-256 is the name, immutable) or a key-value *slot* (any bytes, mutable).
//! The two are told apart the only way that survives restarts: by hashing the bytes.
//!
//! Bodies arrive as a [`BodyStream`] and are never collected whole: backends hash
//! and write as bytes arrive, so memory per request is bounded by a buffer.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
pub use tig_core::ObjectId;

pub mod fs;
pub mod mem;
pub mod retention;

#[cfg(test)]
mod conformance;

pub use fs::FsStore;
pub use mem::MemStore;

/// A request or reply body: a stream of byte chunks.
pub type BodyStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send + 'static>>;

/// Wraps one buffer as a [`BodyStream`] (handy for tests and small internal writes).
pub fn body_from_bytes(data: impl Into<Bytes>) -> BodyStream {
    let data: Bytes = data.into();
    Box::pin(futures_util::stream::iter([Ok(data)]))
}

/// The bytes of a stored object as returned by [`Store::get`].
pub enum ObjectBody {
    /// Small objects are read in one go.
    Full(Bytes),
    /// Larger objects are streamed in chunks; the stream yields exactly `len` bytes
    /// or ends with an error.
    Stream(BodyStream),
}

impl std::fmt::Debug for ObjectBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Full(b) => write!(f, "Full({} bytes)", b.len()),
            Self::Stream(_) => f.write_str("Stream(..)"),
        }
    }
}

impl ObjectBody {
    /// Turns either variant into a stream.
    pub fn into_stream(self) -> BodyStream {
        match self {
            Self::Full(b) => body_from_bytes(b),
            Self::Stream(s) => s,
        }
    }
}

/// An object found by [`Store::get`]: its length and its bytes.
#[derive(Debug)]
pub struct Object {
    /// Length in bytes (the body yields exactly this many).
    pub len: u64,
    /// The bytes.
    pub body: ObjectBody,
}

/// How a key-value slot is written by [`Store::put_slot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotWrite {
    /// Replace the value atomically (`PUT /<h>.tig`).
    Replace,
    /// Create the slot only if the name is unused (`?setifnot=1`).
    IfAbsent,
    /// Append to the slot, creating it if absent (`?append=1`).
    Append,
}

/// What [`Store::put_slot`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotOutcome {
    /// The value was replaced or appended to.
    Written,
    /// `IfAbsent`: the slot was created by this call.
    Created,
    /// `IfAbsent`: the name was already in use; nothing changed.
    Existed,
}

/// What a stored name holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Bytes whose SHA-256 is the name: immutable.
    Content,
    /// A key-value slot: mutable.
    Slot,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The body is longer than the limit; nothing was stored.
    #[error("body exceeds the size limit of {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The name holds content-addressed data, which is never changed or deleted.
    #[error("{0} is content-addressed data and cannot be changed")]
    Immutable(ObjectId),
    /// A content upload hashes to a name that holds a key-value slot with other bytes.
    #[error("{0} is a key-value slot holding other bytes")]
    SlotConflict(ObjectId),
    /// Nothing is stored under the name.
    #[error("{0} not found")]
    NotFound(ObjectId),
    /// Reading the request body failed (e.g. the client went away).
    #[error("reading the request body failed: {0}")]
    Body(io::Error),
    /// The storage itself failed.
    #[error("storage I/O failed: {0}")]
    Io(io::Error),
}

impl From<io::Error> for StoreError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// The storage behind `tig serve`.
///
/// Implementations must be safe to share between tasks; all methods are async and
/// must not block the calling thread on I/O.
pub trait Store: Send + Sync + 'static {
    /// Stores `body` under its SHA-256 and returns that id. Idempotent: storing
    /// existing content only refreshes its retention timer. Fails with
    /// [`StoreError::SlotConflict`] if the name holds a slot, and with
    /// [`StoreError::TooLarge`] once more than `limit` bytes arrive.
    fn put_content(
        &self,
        body: BodyStream,
        limit: u64,
    ) -> impl Future<Output = Result<ObjectId, StoreError>> + Send;

    /// Writes the key-value slot `id`. Fails with [`StoreError::Immutable`] if `id`
    /// holds content (except for `IfAbsent`, which reports [`SlotOutcome::Existed`]).
    /// Nothing changes unless the whole body arrived within `limit`.
    fn put_slot(
        &self,
        id: ObjectId,
        body: BodyStream,
        limit: u64,
        mode: SlotWrite,
    ) -> impl Future<Output = Result<SlotOutcome, StoreError>> + Send;

    /// Reads an object; `None` if absent. `touch` refreshes its retention timer.
    fn get(
        &self,
        id: ObjectId,
        touch: bool,
    ) -> impl Future<Output = Result<Option<Object>, StoreError>> + Send;

    /// The length of an object; `None` if absent. `touch` refreshes its timer.
    fn stat(
        &self,
        id: ObjectId,
        touch: bool,
    ) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;

    /// Whether `id` holds content or a slot (hashes the bytes); `None` if absent.
    fn kind(&self, id: ObjectId) -> impl Future<Output = Result<Option<Kind>, StoreError>> + Send;

    /// Deletes a slot. [`StoreError::Immutable`] for content,
    /// [`StoreError::NotFound`] if absent.
    fn delete_slot(&self, id: ObjectId) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Every stored name, most recently used first.
    fn list(&self) -> impl Future<Output = Result<Vec<ObjectId>, StoreError>> + Send;

    /// Deletes every object unused (not read or written) for `retention`, counting
    /// from now. Returns how many were deleted.
    fn sweep(&self, retention: Duration) -> impl Future<Output = Result<usize, StoreError>> + Send;
}
