//! Storage behind `tig serve`: the [`Store`] trait, its backends and retention.
//!
//! Layout:
//! - this file: the trait, its error type and the small value types it speaks;
//! - [`fs`]: the filesystem backend (`<root>/<h>.tig` files, private temp files,
//!   atomic no-replace publication, per-name locks);
//! - [`mem`]: an in-memory backend for tests and ephemeral use;
//! - [`retention`]: the background sweeper that forgets unused objects;
//! - [`scrub`]: re-hashes content and moves corrupt objects out of the way;
//! - [`cache`]: a bounded in-memory cache of small content objects over any backend;
//! - [`s3`]: the S3 backend (`s3://BUCKET/PREFIX`, conditional writes, shared by
//!   many instances).
//!
//! Every object is named by an [`ObjectId`]. A name holds either *content* (bytes
//! whose SHA-256 is the name, immutable) or a key-value *slot* (any bytes, mutable).
//! Backends report which, with the length and a version, in an [`ObjectMeta`] that
//! costs no hashing: the kind is recorded when the object is published (the
//! filesystem backend in the file's mode, see [`fs`]) and survives restarts.
//!
//! Bodies arrive as a [`BodyStream`] and are never collected whole: backends hash
//! and write as bytes arrive, so memory per request is bounded by a buffer.

use std::future::Future;
use std::io;
use std::ops::Range;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
pub use tig_core::ObjectId;

pub mod cache;
pub mod fs;
pub mod mem;
pub mod retention;
pub mod s3;
pub mod scrub;

#[cfg(test)]
mod conformance;

pub use cache::CachedStore;
pub use fs::FsStore;
pub use mem::MemStore;
pub use s3::S3Store;

/// A request or reply body: a stream of byte chunks.
pub type BodyStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send + 'static>>;

/// Wraps one buffer as a [`BodyStream`] (handy for tests and small internal writes).
pub fn body_from_bytes(data: impl Into<Bytes>) -> BodyStream {
    let data: Bytes = data.into();
    Box::pin(futures_util::stream::iter([Ok(data)]))
}

/// Bytes together with their SHA-256, computed when the value is built: the pair
/// cannot disagree, so a backend may publish [`Hashed::bytes`] under
/// [`Hashed::id`] without hashing them again (see [`Store::put_content_batch`]).
#[derive(Clone)]
pub struct Hashed {
    id: ObjectId,
    bytes: Bytes,
}

impl Hashed {
    /// Hashes `bytes`.
    pub fn new(bytes: Bytes) -> Self {
        Self {
            id: ObjectId::digest(&bytes),
            bytes,
        }
    }

    /// The SHA-256 of the bytes: the name they are stored under.
    pub fn id(&self) -> ObjectId {
        self.id
    }

    /// The bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Their length.
    pub fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

impl std::fmt::Debug for Hashed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hashed({}, {} bytes)", self.id, self.bytes.len())
    }
}

/// How many objects of a batch the default [`Store::put_content_batch`] stores
/// (or [`Store::present_content_many`] checks) at once.
const BATCH_PARALLEL: usize = 16;

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

/// An object found by [`Store::get`], [`Store::get_range`] or [`Store::take`]:
/// what it is and (some of) its bytes.
#[derive(Debug)]
pub struct Object {
    /// How many bytes the body yields (`range.end - range.start`).
    pub len: u64,
    /// The whole object's facts (its full length, kind and version).
    pub meta: ObjectMeta,
    /// Which bytes of the object the body yields: `0..meta.len` unless a range was
    /// asked for.
    pub range: Range<u64>,
    /// The bytes.
    pub body: ObjectBody,
}

impl Object {
    /// A whole object.
    pub fn whole(meta: ObjectMeta, body: ObjectBody) -> Self {
        Self {
            len: meta.len,
            range: 0..meta.len,
            meta,
            body,
        }
    }
}

/// What a store knows about an object without reading its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Length in bytes.
    pub len: u64,
    /// Content or slot.
    pub kind: Kind,
    /// For slots: an opaque token (ASCII letters, digits, `-`, `_`, `.`) that
    /// changes whenever the slot's bytes change (strong validator semantics: two
    /// reads with the same token returned the same bytes). It may also change
    /// when the bytes did not. Unused (empty) for content, whose name is its tag.
    pub version: String,
}

impl ObjectMeta {
    /// The strong HTTP entity tag of `id`, quotes included: `"<64 hex>"` (the
    /// hash) for content and only for content; `"s-<version>"` for a slot.
    pub fn etag(&self, id: ObjectId) -> String {
        match self.kind {
            Kind::Content => {
                let mut tag = String::with_capacity(tig_core::HEX_LEN + 2);
                tag.push('"');
                id.with_hex(|hex| tag.push_str(hex));
                tag.push('"');
                tag
            }
            Kind::Slot => format!("\"s-{}\"", self.version),
        }
    }
}

/// A byte range as HTTP asks for it (`Range: bytes=…`), before the length is
/// known. Positions are inclusive, as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `first-last`: bytes `first..=last` (clipped to the length).
    Closed(u64, u64),
    /// `first-`: from `first` to the end.
    From(u64),
    /// `-n`: the last `n` bytes.
    Suffix(u64),
}

impl ByteRange {
    /// The bytes this range selects of an object of `len` bytes, or `None` when
    /// it selects nothing (RFC 9110 §14.1.2: unsatisfiable).
    pub fn resolve(self, len: u64) -> Option<Range<u64>> {
        match self {
            Self::Closed(first, last) if first <= last && first < len => {
                Some(first..last.saturating_add(1).min(len))
            }
            Self::From(first) if first < len => Some(first..len),
            Self::Suffix(n) if n > 0 && len > 0 => Some(len - n.min(len)..len),
            _ => None,
        }
    }
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
    /// A byte range that selects nothing of an object of `len` bytes.
    #[error("range not satisfiable: the object has {len} bytes")]
    RangeNotSatisfiable {
        /// The object's length.
        len: u64,
    },
    /// Reading the request body failed (e.g. the client went away).
    #[error("reading the request body failed: {0}")]
    Body(io::Error),
    /// The storage is full (no space, or over quota); nothing was stored.
    #[error("storage is full: {0}")]
    Full(io::Error),
    /// The storage itself failed.
    #[error("storage I/O failed: {0}")]
    Io(io::Error),
}

impl From<io::Error> for StoreError {
    /// `ENOSPC` and `EDQUOT` become [`StoreError::Full`]; everything else
    /// [`StoreError::Io`].
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => Self::Full(e),
            _ => Self::Io(e),
        }
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

    /// Stores many content objects (`POST /?batch=1`), each exactly as
    /// [`Store::put_content`] would (dedupe, [`StoreError::SlotConflict`],
    /// [`StoreError::TooLarge`] over `limit`). Every object stored is whole; on an
    /// error some of the others may be stored (whole) and some not, so a caller
    /// retries the batch or its members, which is safe.
    ///
    /// The default stores a few at a time through [`Store::put_content`]; a
    /// backend that can make many objects durable at once (the filesystem backend
    /// syncs once per batch instead of twice per object) should override it.
    fn put_content_batch(
        &self,
        items: Vec<Hashed>,
        limit: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        use futures_util::{StreamExt, TryStreamExt};
        async move {
            futures_util::stream::iter(items)
                .map(|item| async move {
                    let id = self
                        .put_content(body_from_bytes(item.bytes.clone()), limit)
                        .await?;
                    if id != item.id {
                        return Err(StoreError::Io(io::Error::other(format!(
                            "the backend stored {id} for bytes that hash to {}",
                            item.id
                        ))));
                    }
                    Ok(())
                })
                .buffer_unordered(BATCH_PARALLEL)
                .try_collect::<()>()
                .await
        }
    }

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

    /// Reads several objects for one reply (a burst's members): one result per
    /// id, in order, each what [`Store::get`] with `touch` gives. The default
    /// reads them concurrently; a backend whose every read is a hop to a thread
    /// pool (the filesystem) should read them all in one.
    fn get_many(
        &self,
        ids: Vec<ObjectId>,
        touch: bool,
    ) -> impl Future<Output = Vec<Result<Option<Object>, StoreError>>> + Send {
        futures_util::future::join_all(ids.into_iter().map(move |id| self.get(id, touch)))
    }

    /// Reads the bytes `range` selects of an object (one consistent version of
    /// it); `None` if absent, [`StoreError::RangeNotSatisfiable`] if the range
    /// selects nothing. The default reads the whole object and skips; backends
    /// that can seek should do better.
    fn get_range(
        &self,
        id: ObjectId,
        touch: bool,
        range: ByteRange,
    ) -> impl Future<Output = Result<Option<Object>, StoreError>> + Send {
        async move {
            let Some(obj) = self.get(id, touch).await? else {
                return Ok(None);
            };
            let len = obj.meta.len;
            let r = range
                .resolve(len)
                .ok_or(StoreError::RangeNotSatisfiable { len })?;
            Ok(Some(Object {
                len: r.end - r.start,
                body: ObjectBody::Stream(slice_stream(obj.body.into_stream(), r.clone())),
                range: r,
                meta: obj.meta,
            }))
        }
    }

    /// Length, kind and version of an object, without hashing it; `None` if
    /// absent. `touch` refreshes its timer.
    fn stat(
        &self,
        id: ObjectId,
        touch: bool,
    ) -> impl Future<Output = Result<Option<ObjectMeta>, StoreError>> + Send;

    /// [`Store::stat`] of several objects (a burst's members): one result per id,
    /// in order. The default asks concurrently; a backend whose every call is a
    /// hop to a thread pool (the filesystem) should ask in one.
    fn stat_many(
        &self,
        ids: Vec<ObjectId>,
        touch: bool,
    ) -> impl Future<Output = Vec<Result<Option<ObjectMeta>, StoreError>>> + Send {
        futures_util::future::join_all(ids.into_iter().map(move |id| self.stat(id, touch)))
    }

    /// Whether each of `ids` holds content (neither absent nor a slot), in order;
    /// `touch` refreshes the retention timer of every object found, exactly as
    /// [`Store::stat`] with `touch` does. Never hashes content that is marked as
    /// such. `POST /?missing=1` asks this of up to a thousand names at once.
    ///
    /// The default asks [`Store::stat`] a few names at a time; a backend that can
    /// check many names more cheaply in one go (the filesystem backend, in one
    /// blocking task instead of one thread-pool hop per name) should override it.
    fn present_content_many(
        &self,
        ids: Vec<ObjectId>,
        touch: bool,
    ) -> impl Future<Output = Result<Vec<bool>, StoreError>> + Send {
        use futures_util::{StreamExt, TryStreamExt};
        async move {
            futures_util::stream::iter(ids)
                .map(|id| async move {
                    let meta = self.stat(id, touch).await?;
                    Ok::<_, StoreError>(meta.is_some_and(|m| m.kind == Kind::Content))
                })
                .buffered(BATCH_PARALLEL)
                .try_collect()
                .await
        }
    }

    /// Whether `id` holds content or a slot; `None` if absent. As cheap as
    /// [`Store::stat`].
    fn kind(&self, id: ObjectId) -> impl Future<Output = Result<Option<Kind>, StoreError>> + Send {
        async move { Ok(self.stat(id, false).await?.map(|m| m.kind)) }
    }

    /// Reads a slot and deletes it in one atomic step: of many concurrent
    /// takers exactly one gets the bytes, the others [`StoreError::NotFound`].
    /// [`StoreError::Immutable`] for content (never deleted by a reader).
    /// Deliberately without a default: get + delete is not atomic.
    fn take(&self, id: ObjectId) -> impl Future<Output = Result<Object, StoreError>> + Send;

    /// Deletes a slot. [`StoreError::Immutable`] for content,
    /// [`StoreError::NotFound`] if absent.
    fn delete_slot(&self, id: ObjectId) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Every stored name, most recently used first.
    fn list(&self) -> impl Future<Output = Result<Vec<ObjectId>, StoreError>> + Send;

    /// Deletes every object unused (not read or written) for `retention`, counting
    /// from now. Returns how many were deleted.
    fn sweep(&self, retention: Duration) -> impl Future<Output = Result<usize, StoreError>> + Send;

    /// How many objects and bytes are stored (for `tig_objects_stored` and
    /// `tig_bytes_stored`). The default lists and stats every object; a backend
    /// with a cheaper census (an S3 listing carries sizes) should override it.
    fn usage(&self) -> impl Future<Output = Result<Usage, StoreError>> + Send {
        async {
            let mut usage = Usage::default();
            for id in self.list().await? {
                if let Some(meta) = self.stat(id, false).await? {
                    usage.objects += 1;
                    usage.bytes += meta.len;
                }
            }
            Ok(usage)
        }
    }

    /// Whether the backend is reachable right now (`/readyz` answers 503 with the
    /// error while it is not). The default is always healthy, which is right for
    /// local files; a remote backend (S3) should make one cheap call here.
    fn health(&self) -> impl Future<Output = Result<(), StoreError>> + Send {
        async { Ok(()) }
    }

    /// The bytes of content `id` if they are in memory and may be served right
    /// now without asking the backend, exactly as [`Store::get`] would serve them
    /// (no retention touch, as a cache hit inside its recheck period). `None`
    /// means "ask [`Store::get`]", not "absent". The server answers a plain
    /// `GET /<h>.tig` from here before it routes the request. Only
    /// [`CachedStore`] keeps anything; the default has nothing.
    fn hot(&self, id: &ObjectId) -> Option<Bytes> {
        let _ = id;
        None
    }
}

/// What [`Store::usage`] counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Stored objects (content and slots).
    pub objects: u64,
    /// Their total length in bytes.
    pub bytes: u64,
}

/// The bytes `range` selects of a stream of a whole object.
fn slice_stream(body: BodyStream, range: Range<u64>) -> BodyStream {
    use futures_util::StreamExt;
    Box::pin(
        body.scan(0u64, move |pos, chunk| {
            if *pos >= range.end {
                return std::future::ready(None);
            }
            let out = match chunk {
                Err(e) => Some(Err(e)),
                Ok(b) => {
                    let start = *pos;
                    *pos += b.len() as u64;
                    let lo = range.start.saturating_sub(start).min(b.len() as u64);
                    let hi = range.end.saturating_sub(start).min(b.len() as u64);
                    (lo < hi).then(|| Ok(b.slice(lo as usize..hi as usize)))
                }
            };
            std::future::ready(Some(out))
        })
        .filter_map(std::future::ready),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_default_batch_stores_each_item_as_put_content_would() {
        let s = CachedStore::new(MemStore::new(), 1 << 20);
        let items: Vec<Hashed> = (0..40u8)
            .map(|i| Hashed::new(Bytes::from(vec![i; usize::from(i)])))
            .collect();
        s.put_content_batch(items.clone(), 1 << 10).await.unwrap();
        for i in &items {
            assert_eq!(s.kind(i.id()).await.unwrap(), Some(Kind::Content));
        }
        let big = Hashed::new(Bytes::from(vec![0u8; 2000]));
        let err = s.put_content_batch(vec![big.clone()], 1 << 10).await;
        assert!(matches!(err, Err(StoreError::TooLarge { .. })));
        assert_eq!(s.kind(big.id()).await.unwrap(), None);
    }

    /// Content, a slot, an absent name and a slot holding its own hash's bytes
    /// (content by definition) in `s`; returns the names and what `stat` says.
    async fn presence_fixture<S: Store>(s: &S) -> (Vec<ObjectId>, Vec<bool>) {
        let content = s
            .put_content(body_from_bytes("content"), 1 << 10)
            .await
            .unwrap();
        let slot = ObjectId::digest(b"slot name");
        s.put_slot(slot, body_from_bytes("other"), 1 << 10, SlotWrite::Replace)
            .await
            .unwrap();
        let absent = ObjectId::digest(b"absent");
        let own = ObjectId::digest(b"own bytes");
        s.put_slot(
            own,
            body_from_bytes("own bytes"),
            1 << 10,
            SlotWrite::Replace,
        )
        .await
        .unwrap();
        let ids = vec![absent, content, slot, own, content, absent];
        let mut want = Vec::new();
        for id in &ids {
            let meta = s.stat(*id, false).await.unwrap();
            want.push(meta.is_some_and(|m| m.kind == Kind::Content));
        }
        (ids, want)
    }

    #[tokio::test]
    async fn present_content_many_agrees_with_stat_on_every_backend() {
        let mem = MemStore::new();
        let (ids, want) = presence_fixture(&mem).await;
        assert_eq!(want, [false, true, false, true, true, false]);
        assert_eq!(mem.present_content_many(ids, true).await.unwrap(), want);

        let dir = tempfile::tempdir().unwrap();
        let fs = FsStore::open(dir.path(), fs::FsOptions::default())
            .await
            .unwrap();
        let (ids, want) = presence_fixture(&fs).await;
        assert_eq!(want, [false, true, false, true, true, false]);
        assert_eq!(
            fs.present_content_many(ids.clone(), true).await.unwrap(),
            want
        );
        let cached = CachedStore::new(fs, 1 << 20);
        assert_eq!(cached.present_content_many(ids, false).await.unwrap(), want);
        assert!(
            cached
                .present_content_many(Vec::new(), true)
                .await
                .unwrap()
                .is_empty()
        );
    }

    /// The filesystem override: files of other modes are classified as `stat`
    /// does (hashed once, then marked), a directory with an object's name is not
    /// an object, and a found object's mtime is refreshed only when asked and due.
    #[tokio::test]
    async fn the_fs_batch_classifies_unmarked_files_and_touches_like_stat() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let opts = fs::FsOptions {
            touch_granularity: Duration::from_secs(60),
            ..fs::FsOptions::default()
        };
        let s = FsStore::open(dir.path(), opts).await.unwrap();
        let file = |id: ObjectId| dir.path().join(id.file_name());
        // Written by hand with mode 0600: one holds its hash's bytes, one not.
        let good = ObjectId::digest(b"by hand");
        std::fs::write(file(good), b"by hand").unwrap();
        let bad = ObjectId::digest(b"claimed");
        std::fs::write(file(bad), b"not what the name says").unwrap();
        for id in [good, bad] {
            std::fs::set_permissions(file(id), std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let subdir = ObjectId::digest(b"a directory");
        std::fs::create_dir(file(subdir)).unwrap();
        let ids = vec![good, bad, subdir];
        assert_eq!(
            s.present_content_many(ids.clone(), false).await.unwrap(),
            [true, false, false]
        );
        // Marked as `stat` would have marked them.
        let mode = |id| std::fs::metadata(file(id)).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(good), mode(bad)), (fs::CONTENT_MODE, fs::SLOT_MODE));

        let old = std::time::SystemTime::now() - Duration::from_secs(3600);
        let age = |id| {
            std::fs::metadata(file(id))
                .unwrap()
                .modified()
                .unwrap()
                .elapsed()
                .unwrap_or_default()
        };
        let set_old = |id| {
            std::fs::File::open(file(id))
                .unwrap()
                .set_modified(old)
                .unwrap();
        };
        set_old(good);
        set_old(bad);
        s.present_content_many(ids.clone(), false).await.unwrap();
        assert!(
            age(good) > Duration::from_secs(3000),
            "untouched unless asked"
        );
        s.present_content_many(ids.clone(), true).await.unwrap();
        // Every object found is refreshed, content and slot alike, as `stat` does.
        assert!(age(good) < Duration::from_secs(60));
        assert!(age(bad) < Duration::from_secs(60));
        // Not due (younger than the granularity): left alone.
        let recent = std::time::SystemTime::now() - Duration::from_secs(30);
        std::fs::File::open(file(good))
            .unwrap()
            .set_modified(recent)
            .unwrap();
        s.present_content_many(vec![good], true).await.unwrap();
        assert!(age(good) >= Duration::from_secs(29));

        // `stat_many` (a burst's checks) goes the same way: new files by hand,
        // classified and marked; the found ones touched only when asked.
        let good = ObjectId::digest(b"by hand, again");
        std::fs::write(file(good), b"by hand, again").unwrap();
        let bad = ObjectId::digest(b"claimed, again");
        std::fs::write(file(bad), b"still not what the name says").unwrap();
        for id in [good, bad] {
            std::fs::set_permissions(file(id), std::fs::Permissions::from_mode(0o600)).unwrap();
            set_old(id);
        }
        let kinds = |metas: Vec<Result<Option<ObjectMeta>, StoreError>>| {
            metas
                .into_iter()
                .map(|m| m.unwrap().map(|m| (m.len, m.kind)))
                .collect::<Vec<_>>()
        };
        let want = [Some((14, Kind::Content)), Some((28, Kind::Slot)), None];
        let ids = vec![good, bad, subdir];
        assert_eq!(kinds(s.stat_many(ids.clone(), false).await), want);
        assert_eq!((mode(good), mode(bad)), (fs::CONTENT_MODE, fs::SLOT_MODE));
        assert!(
            age(good) > Duration::from_secs(3000),
            "untouched unless asked"
        );
        assert_eq!(kinds(s.stat_many(ids, true).await), want);
        assert!(age(good) < Duration::from_secs(60));
        assert!(age(bad) < Duration::from_secs(60));
    }

    #[test]
    fn ranges_resolve_like_rfc_9110() {
        assert_eq!(ByteRange::Closed(0, 9).resolve(100), Some(0..10));
        assert_eq!(ByteRange::Closed(90, 200).resolve(100), Some(90..100));
        assert_eq!(ByteRange::Closed(100, 200).resolve(100), None);
        assert_eq!(ByteRange::Closed(5, 4).resolve(100), None);
        assert_eq!(ByteRange::From(99).resolve(100), Some(99..100));
        assert_eq!(ByteRange::From(100).resolve(100), None);
        assert_eq!(ByteRange::Suffix(10).resolve(100), Some(90..100));
        assert_eq!(ByteRange::Suffix(1000).resolve(100), Some(0..100));
        assert_eq!(ByteRange::Suffix(0).resolve(100), None);
        assert_eq!(ByteRange::Suffix(5).resolve(0), None);
        assert_eq!(ByteRange::From(0).resolve(0), None);
        assert_eq!(ByteRange::Closed(0, u64::MAX).resolve(3), Some(0..3));
    }
}
