//! A bounded in-memory cache of small *content* objects in front of any [`Store`].
//!
//! Content never changes, so a hashed copy can only go wrong in one way: the object
//! may have been deleted since (retention, or another process on the same root or
//! bucket). So every entry remembers when the backend last confirmed it, and a hit
//! older than [`RECHECK`] asks the backend again (`stat`, which also refreshes the
//! retention timer exactly as an uncached read would). Between two checks a hot
//! object is served from memory with no system call and no thread-pool hop.
//!
//! A single read admits an object only if its bytes hash to its name, checked here
//! on the bytes in hand, so a key-value slot (mutable) is never served from here
//! to a single read, whatever a backend says about kinds. A burst's reads
//! ([`Store::get_many`]) admit what the backend calls content unhashed (hashing
//! 64 KiB takes longer than reading it, and would halve a first burst); bursts are
//! then served those bytes on the backend's word, as an uncached burst would be,
//! and a single read or [`Store::hot`] hashes such an entry before it serves it
//! (dropping it if the bytes are not the name's). Writes to a name drop it from the
//! cache first.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tig_core::{Hasher, ObjectId};

use crate::{
    BodyStream, ByteRange, Kind, Object, ObjectBody, ObjectMeta, SlotOutcome, SlotWrite, Store,
    StoreError,
};

/// How long a cached object is served without asking the backend again.
pub const RECHECK: Duration = Duration::from_secs(1);
/// Objects larger than this are never cached (the fs backend streams them anyway).
pub const MAX_OBJECT: u64 = 64 * 1024;

#[derive(Clone)]
struct Entry {
    bytes: Bytes,
    state: Arc<EntryState>,
}

struct EntryState {
    /// Milliseconds since [`CachedStore::epoch`] when the backend last had it.
    checked: AtomicU64,
    /// The bytes hash to the name (checked). Unset for what a burst admitted.
    hashed: AtomicBool,
}

/// What a lookup's answer is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Use {
    /// The bytes of a single read: served only once hashed.
    Read,
    /// A burst's bytes, or metadata: the backend's word is enough, as it is
    /// without the cache.
    Word,
}

#[derive(Clone)]
struct ByLen;

impl quick_cache::Weighter<ObjectId, Entry> for ByLen {
    fn weight(&self, _key: &ObjectId, val: &Entry) -> u64 {
        // Never zero (zero-weight items are never evicted); count the entry's overhead.
        val.bytes.len() as u64 + 64
    }
}

/// A [`Store`] that serves small hot content objects from memory.
///
/// With a capacity of 0 it is a plain pass-through.
pub struct CachedStore<S> {
    inner: S,
    cache: Option<quick_cache::sync::Cache<ObjectId, Entry, ByLen>>,
    epoch: Instant,
    recheck_ms: u64,
}

impl<S: std::fmt::Debug> std::fmt::Debug for CachedStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedStore")
            .field("inner", &self.inner)
            .field("capacity", &self.cache.as_ref().map_or(0, |c| c.capacity()))
            .finish()
    }
}

impl<S: Store> CachedStore<S> {
    /// Wraps `inner` with a cache of at most `capacity` bytes (0 disables it).
    pub fn new(inner: S, capacity: u64) -> Self {
        let cache = (capacity > 0).then(|| {
            // quick_cache sizes its tables from an item estimate: assume ~4 KiB objects.
            let items = usize::try_from(capacity / 4096)
                .unwrap_or(usize::MAX)
                .max(16);
            quick_cache::sync::Cache::with_weighter(items, capacity, ByLen)
        });
        Self {
            inner,
            cache,
            epoch: Instant::now(),
            recheck_ms: RECHECK.as_millis() as u64,
        }
    }

    /// Sets how long a cached object is served before the backend is asked again
    /// ([`RECHECK`] by default; tests use zero).
    pub fn with_recheck(mut self, every: Duration) -> Self {
        self.recheck_ms = u64::try_from(every.as_millis()).unwrap_or(u64::MAX);
        self
    }

    /// The backend.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The capacity in bytes (0 when disabled).
    pub fn capacity(&self) -> u64 {
        self.cache.as_ref().map_or(0, |c| c.capacity())
    }

    /// Bytes currently cached (with per-entry overhead).
    pub fn weight(&self) -> u64 {
        self.cache.as_ref().map_or(0, |c| c.weight())
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn forget(&self, id: &ObjectId) {
        if let Some(c) = &self.cache {
            c.remove(id);
        }
    }

    /// A cached entry confirmed within [`RECHECK`]: servable with no I/O.
    fn fresh(&self, entry: &Entry, now: u64) -> bool {
        now.saturating_sub(entry.state.checked.load(Ordering::Relaxed)) < self.recheck_ms
    }

    /// Whether the backend's `meta` still shows `entry`'s object (content of the
    /// same length); if so, the entry counts as confirmed at `now`.
    fn confirmed(&self, entry: &Entry, meta: Option<&ObjectMeta>, now: u64) -> bool {
        let holds =
            meta.is_some_and(|m| m.kind == Kind::Content && m.len == entry.bytes.len() as u64);
        if holds {
            entry.state.checked.store(now, Ordering::Relaxed);
        }
        holds
    }

    /// A cached copy of `id` that the backend still holds, re-asking it when the
    /// last confirmation is older than [`RECHECK`]; for a single read, hashed
    /// first if a burst admitted it.
    async fn lookup(
        &self,
        id: ObjectId,
        touch: bool,
        to: Use,
    ) -> Result<Option<Bytes>, StoreError> {
        let Some(cache) = &self.cache else {
            return Ok(None);
        };
        let Some(entry) = cache.get(&id) else {
            return Ok(None);
        };
        let now = self.now_ms();
        if !self.fresh(&entry, now) {
            let meta = self.inner.stat(id, touch).await?;
            if !self.confirmed(&entry, meta.as_ref(), now) {
                cache.remove(&id);
                return Ok(None);
            }
        }
        if to == Use::Read && !entry.state.hashed.load(Ordering::Relaxed) {
            if !is_content(id, &entry.bytes) {
                cache.remove(&id);
                return Ok(None);
            }
            entry.state.hashed.store(true, Ordering::Relaxed);
        }
        Ok(Some(entry.bytes))
    }

    /// One result per id, in order, on the backend's word ([`Use::Word`]): what
    /// the cache holds from memory (`hit` turns the bytes into an answer; entries
    /// past [`RECHECK`] confirmed with one `stat_many`), the rest from one call
    /// of `backend`.
    async fn many<T, F>(
        &self,
        ids: Vec<ObjectId>,
        touch: bool,
        hit: impl Fn(Bytes) -> T,
        backend: impl FnOnce(Vec<ObjectId>) -> F,
    ) -> Vec<Result<Option<T>, StoreError>>
    where
        F: Future<Output = Vec<Result<Option<T>, StoreError>>>,
    {
        let Some(cache) = &self.cache else {
            return backend(ids).await;
        };
        let now = self.now_ms();
        let mut out: Vec<Result<Option<T>, StoreError>> = Vec::with_capacity(ids.len());
        let (mut stale, mut misses) = (Vec::new(), Vec::new());
        for (i, id) in ids.into_iter().enumerate() {
            out.push(Ok(None)); // replaced below unless found
            match cache.get(&id) {
                Some(entry) if self.fresh(&entry, now) => out[i] = Ok(Some(hit(entry.bytes))),
                Some(entry) => stale.push((i, id, entry)),
                None => misses.push((i, id)),
            }
        }
        if !stale.is_empty() {
            let ids = stale.iter().map(|&(_, id, _)| id).collect();
            let mut metas = self.inner.stat_many(ids, touch).await.into_iter();
            for (i, id, entry) in stale {
                match metas.next().unwrap_or_else(|| Err(short_answer())) {
                    Ok(meta) if self.confirmed(&entry, meta.as_ref(), now) => {
                        out[i] = Ok(Some(hit(entry.bytes)));
                    }
                    Ok(_) => {
                        cache.remove(&id);
                        misses.push((i, id));
                    }
                    Err(e) => out[i] = Err(e),
                }
            }
            misses.sort_unstable_by_key(|&(i, _)| i);
        }
        if !misses.is_empty() {
            let mut answers = backend(misses.iter().map(|&(_, id)| id).collect())
                .await
                .into_iter();
            for (i, _) in misses {
                out[i] = answers.next().unwrap_or_else(|| Err(short_answer()));
            }
        }
        out
    }

    /// Remembers `bytes` as `id` if they are content (hash to the name).
    fn admit(&self, id: ObjectId, bytes: &Bytes) {
        if bytes.len() as u64 <= MAX_OBJECT && is_content(id, bytes) {
            self.insert(id, bytes, true);
        }
        // Otherwise a slot: mutable, never cached.
    }

    /// Remembers `bytes` as `id`, `hashed` or on the backend's word (then never
    /// in place of an entry already there, which may be hashed).
    fn insert(&self, id: ObjectId, bytes: &Bytes, hashed: bool) {
        let Some(cache) = &self.cache else {
            return;
        };
        if bytes.len() as u64 > MAX_OBJECT || (!hashed && cache.peek(&id).is_some()) {
            return;
        }
        let state = Arc::new(EntryState {
            checked: AtomicU64::new(self.now_ms()),
            hashed: AtomicBool::new(hashed),
        });
        let bytes = bytes.clone();
        cache.insert(id, Entry { bytes, state });
    }
}

impl<S: Store> Store for CachedStore<S> {
    async fn put_content(&self, body: BodyStream, limit: u64) -> Result<ObjectId, StoreError> {
        self.inner.put_content(body, limit).await
    }

    async fn put_content_batch(
        &self,
        items: Vec<crate::Hashed>,
        limit: u64,
    ) -> Result<(), StoreError> {
        // Content is immutable: nothing cached can be stale after a write.
        self.inner.put_content_batch(items, limit).await
    }

    async fn put_slot(
        &self,
        id: ObjectId,
        body: BodyStream,
        limit: u64,
        mode: SlotWrite,
    ) -> Result<SlotOutcome, StoreError> {
        self.forget(&id);
        self.inner.put_slot(id, body, limit, mode).await
    }

    async fn get(&self, id: ObjectId, touch: bool) -> Result<Option<Object>, StoreError> {
        if let Some(bytes) = self.lookup(id, touch, Use::Read).await? {
            return Ok(Some(Object::whole(
                content_meta(&bytes),
                ObjectBody::Full(bytes),
            )));
        }
        let obj = self.inner.get(id, touch).await?;
        if let Some(Object {
            body: ObjectBody::Full(bytes),
            meta,
            ..
        }) = &obj
            && meta.kind == Kind::Content
        {
            self.admit(id, bytes);
        }
        Ok(obj)
    }

    /// Cached objects from memory, the others from the backend in one call,
    /// admitted unhashed when the backend calls them content (see the module
    /// docs).
    async fn get_many(
        &self,
        ids: Vec<ObjectId>,
        touch: bool,
    ) -> Vec<Result<Option<Object>, StoreError>> {
        let whole = |bytes: Bytes| Object::whole(content_meta(&bytes), ObjectBody::Full(bytes));
        let read = |ids: Vec<ObjectId>| async move {
            let objects = self.inner.get_many(ids.clone(), touch).await;
            for (id, obj) in ids.into_iter().zip(&objects) {
                if let Ok(Some(Object {
                    body: ObjectBody::Full(bytes),
                    meta,
                    ..
                })) = obj
                    && meta.kind == Kind::Content
                    && bytes.len() as u64 == meta.len
                {
                    // Whole content, on the backend's word: it is not hashed, so
                    // at least its length must be the object's.
                    self.insert(id, bytes, false);
                }
            }
            objects
        };
        self.many(ids, touch, whole, read).await
    }

    async fn get_range(
        &self,
        id: ObjectId,
        touch: bool,
        range: ByteRange,
    ) -> Result<Option<Object>, StoreError> {
        if let Some(bytes) = self.lookup(id, touch, Use::Read).await? {
            let len = bytes.len() as u64;
            let r = range
                .resolve(len)
                .ok_or(StoreError::RangeNotSatisfiable { len })?;
            // Both ends are within `bytes`, whose length fits in usize.
            let part = bytes.slice(r.start as usize..r.end as usize);
            return Ok(Some(Object {
                len: r.end - r.start,
                meta: content_meta(&bytes),
                range: r,
                body: ObjectBody::Full(part),
            }));
        }
        self.inner.get_range(id, touch, range).await
    }

    async fn stat(&self, id: ObjectId, touch: bool) -> Result<Option<ObjectMeta>, StoreError> {
        if let Some(bytes) = self.lookup(id, touch, Use::Word).await? {
            return Ok(Some(content_meta(&bytes)));
        }
        self.inner.stat(id, touch).await
    }

    /// Cached objects from memory, the others from the backend in one call.
    async fn stat_many(
        &self,
        ids: Vec<ObjectId>,
        touch: bool,
    ) -> Vec<Result<Option<ObjectMeta>, StoreError>> {
        let meta = |bytes: Bytes| content_meta(&bytes);
        self.many(ids, touch, meta, |ids| self.inner.stat_many(ids, touch))
            .await
    }

    async fn take(&self, id: ObjectId) -> Result<Object, StoreError> {
        self.forget(&id);
        self.inner.take(id).await
    }

    async fn kind(&self, id: ObjectId) -> Result<Option<Kind>, StoreError> {
        if self.lookup(id, false, Use::Word).await?.is_some() {
            return Ok(Some(Kind::Content));
        }
        self.inner.kind(id).await
    }

    async fn delete_slot(&self, id: ObjectId) -> Result<(), StoreError> {
        self.forget(&id);
        self.inner.delete_slot(id).await
    }

    async fn list(&self) -> Result<Vec<ObjectId>, StoreError> {
        self.inner.list().await
    }

    async fn sweep(&self, retention: Duration) -> Result<usize, StoreError> {
        // Swept objects went unread for the whole period, so their entries (if any)
        // are older than RECHECK and the next hit asks the backend, which says gone.
        self.inner.sweep(retention).await
    }

    async fn usage(&self) -> Result<crate::Usage, StoreError> {
        self.inner.usage().await
    }

    async fn health(&self) -> Result<(), StoreError> {
        // /readyz must see the backend's own check (an S3 backend's), not the default.
        self.inner.health().await
    }

    fn hot(&self, id: &ObjectId) -> Option<Bytes> {
        // The no-I/O branch of `lookup`, nothing else: a stale entry is left to
        // `get`, which asks the backend (and touches) before serving it.
        // An entry a burst admitted is left to `get` too, which hashes it first.
        let entry = self.cache.as_ref()?.get(id)?;
        let servable =
            entry.state.hashed.load(Ordering::Relaxed) && self.fresh(&entry, self.now_ms());
        servable.then_some(entry.bytes)
    }

    async fn present_content_many(
        &self,
        ids: Vec<ObjectId>,
        touch: bool,
    ) -> Result<Vec<bool>, StoreError> {
        // The backend's batched check (the default would stat one name at a time):
        // it is the authority on presence and refreshes the timers itself.
        self.inner.present_content_many(ids, touch).await
    }
}

/// The error for an answer a backend's `get_many`/`stat_many` left out (it owes
/// one per id).
fn short_answer() -> StoreError {
    StoreError::Io(std::io::Error::other(
        "the store answered fewer names than asked",
    ))
}

/// Whether `bytes` hash to `id`.
fn is_content(id: ObjectId, bytes: &[u8]) -> bool {
    let mut h = Hasher::new();
    h.update(bytes);
    h.finish() == id
}

fn content_meta(bytes: &Bytes) -> ObjectMeta {
    ObjectMeta {
        len: bytes.len() as u64,
        kind: Kind::Content,
        version: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MemStore, body_from_bytes, conformance};

    /// The cache over the filesystem backend must behave exactly like the backend:
    /// the whole conformance suite, with every read after the first one a hit.
    mod over_fs {
        use super::*;

        async fn store() -> (tempfile::TempDir, CachedStore<crate::FsStore>) {
            over_a_dir(RECHECK).await
        }

        conformance::suite!(store);
    }

    /// A 1 MiB cache over a filesystem store in a new temporary directory.
    async fn over_a_dir(recheck: Duration) -> (tempfile::TempDir, CachedStore<crate::FsStore>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let fs = crate::FsStore::open(dir.path(), crate::fs::FsOptions::default())
            .await
            .expect("open");
        (dir, CachedStore::new(fs, 1 << 20).with_recheck(recheck))
    }

    async fn read(store: &impl Store, id: ObjectId) -> Option<Vec<u8>> {
        let obj = store.get(id, true).await.expect("get")?;
        match obj.body {
            ObjectBody::Full(b) => Some(b.to_vec()),
            ObjectBody::Stream(_) => panic!("small objects come back whole"),
        }
    }

    #[tokio::test]
    async fn content_is_served_from_memory_and_slots_never_are() {
        let store = CachedStore::new(MemStore::new(), 1 << 20);
        let id = store
            .put_content(body_from_bytes("hello"), 100)
            .await
            .expect("put");
        assert_eq!(read(&store, id).await.as_deref(), Some(&b"hello"[..]));
        assert!(store.weight() > 0, "content is admitted after one read");

        let slot = ObjectId::from_hex(&"ab".repeat(32)).expect("id");
        store
            .put_slot(slot, body_from_bytes("v1"), 100, SlotWrite::Replace)
            .await
            .expect("slot");
        let before = store.weight();
        assert_eq!(read(&store, slot).await.as_deref(), Some(&b"v1"[..]));
        assert_eq!(store.weight(), before, "a slot is never admitted");
        store
            .put_slot(slot, body_from_bytes("v2"), 100, SlotWrite::Replace)
            .await
            .expect("slot");
        assert_eq!(read(&store, slot).await.as_deref(), Some(&b"v2"[..]));
    }

    #[tokio::test]
    async fn a_deleted_object_is_noticed_once_the_recheck_period_is_over() {
        let (dir, store) = over_a_dir(Duration::ZERO).await;
        let id = store
            .put_content(body_from_bytes("gone soon"), 100)
            .await
            .expect("put");
        assert!(read(&store, id).await.is_some());
        assert!(store.weight() > 0);
        // Another process (or retention) removes the file behind the cache's back.
        std::fs::remove_file(dir.path().join(id.file_name())).expect("rm");
        assert_eq!(read(&store, id).await, None);
        assert_eq!(store.stat(id, false).await.expect("stat"), None);
        assert_eq!(store.weight(), 0, "the stale entry is dropped");
    }

    #[tokio::test]
    async fn hot_serves_only_fresh_cached_content() {
        let store = CachedStore::new(MemStore::new(), 1 << 20);
        let id = store
            .put_content(body_from_bytes("hot"), 100)
            .await
            .expect("put");
        assert_eq!(store.hot(&id), None, "not read yet, so not cached");
        assert!(read(&store, id).await.is_some());
        assert_eq!(store.hot(&id).as_deref(), Some(&b"hot"[..]));

        let slot = ObjectId::from_hex(&"cd".repeat(32)).expect("id");
        store
            .put_slot(slot, body_from_bytes("v1"), 100, SlotWrite::Replace)
            .await
            .expect("slot");
        assert!(read(&store, slot).await.is_some());
        assert_eq!(store.hot(&slot), None, "a slot is never hot");

        // Past its recheck period an entry is left to `get`, which asks the backend.
        let stale = CachedStore::new(MemStore::new(), 1 << 20).with_recheck(Duration::ZERO);
        let id = stale
            .put_content(body_from_bytes("stale"), 100)
            .await
            .expect("put");
        assert!(read(&stale, id).await.is_some());
        assert!(stale.weight() > 0);
        assert_eq!(stale.hot(&id), None);
        assert_eq!(MemStore::new().hot(&id), None, "backends keep nothing hot");
    }

    fn whole_bytes(got: Vec<Result<Option<Object>, StoreError>>) -> Vec<Option<Bytes>> {
        got.into_iter()
            .map(|o| match o.expect("get_many").map(|o| o.body) {
                Some(ObjectBody::Full(b)) => Some(b),
                Some(ObjectBody::Stream(_)) => panic!("small objects come back whole"),
                None => None,
            })
            .collect()
    }

    fn found<T>(answers: &[Result<Option<T>, StoreError>]) -> Vec<bool> {
        answers
            .iter()
            .map(|r| r.as_ref().expect("no error").is_some())
            .collect()
    }

    #[tokio::test]
    async fn a_burst_admits_unhashed_and_a_single_read_hashes_first() {
        // A long recheck period, so what is cached is served from memory even on a
        // slow machine.
        let (dir, store) = over_a_dir(Duration::from_secs(3600)).await;
        let cold = store
            .put_content(body_from_bytes("only in bursts so far"), 100)
            .await
            .expect("put");
        let got = store.get_many(vec![cold, cold], false).await;
        let want = Some(Bytes::from("only in bursts so far"));
        assert_eq!(whole_bytes(got), [want.clone(), want.clone()]);
        assert!(store.weight() > 0, "a burst admits content");
        assert_eq!(store.hot(&cold), None, "not hashed yet, so not hot");
        assert_eq!(
            read(&store, cold).await,
            want.as_deref().map(<[u8]>::to_vec)
        );
        assert_eq!(store.hot(&cold), want, "hashed by the single read");

        // A cached entry is served to bursts from memory: its file is gone, yet
        // within the recheck period it still comes back, in its place among
        // members read from the backend.
        std::fs::remove_file(dir.path().join(cold.file_name())).expect("rm");
        let absent = ObjectId::digest(b"never stored");
        let (x, y) = (
            Bytes::from("x, read from disk"),
            Bytes::from("y, read from disk"),
        );
        let xid = store
            .put_content(body_from_bytes(x.clone()), 100)
            .await
            .expect("put");
        let yid = store
            .put_content(body_from_bytes(y.clone()), 100)
            .await
            .expect("put");
        let got = store
            .get_many(vec![xid, cold, absent, yid, cold], false)
            .await;
        assert_eq!(
            whole_bytes(got),
            [Some(x), want.clone(), None, Some(y), want.clone()]
        );
        let metas = store.stat_many(vec![absent, cold, xid], false).await;
        assert_eq!(found(&metas), [false, true, true]);

        // A file marked content whose bytes rotted: a burst gets what the backend
        // says, as it would without the cache; a single read's hash drops the entry.
        let claimed = ObjectId::digest(b"what the name promises");
        let path = dir.path().join(claimed.file_name());
        std::fs::write(&path, b"rotted bytes").expect("write");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            &path,
            std::fs::Permissions::from_mode(crate::fs::CONTENT_MODE),
        )
        .expect("chmod");
        let weight = store.weight();
        let got = store.get_many(vec![claimed], false).await;
        assert_eq!(whole_bytes(got), [Some(Bytes::from("rotted bytes"))]);
        assert!(store.weight() > weight);
        read(&store, claimed).await;
        assert_eq!(store.weight(), weight, "the hash refused it");
        assert_eq!(store.hot(&claimed), None);
    }

    #[tokio::test]
    async fn a_burst_confirms_stale_entries_and_drops_the_gone() {
        // Every entry is stale at once: each burst asks the backend about it.
        let (dir, store) = over_a_dir(Duration::ZERO).await;
        let a = store
            .put_content(body_from_bytes("a"), 100)
            .await
            .expect("put");
        let b = store
            .put_content(body_from_bytes("b"), 100)
            .await
            .expect("put");
        assert_eq!(
            found(&store.get_many(vec![a, b], false).await),
            [true, true]
        );
        let both = store.weight();
        assert!(both > 0);
        std::fs::remove_file(dir.path().join(a.file_name())).expect("rm");
        let got = store.get_many(vec![a, b], false).await;
        assert_eq!(whole_bytes(got), [None, Some(Bytes::from("b"))]);
        assert!(store.weight() < both, "the gone one is dropped");
        assert_eq!(
            found(&store.stat_many(vec![a, b], false).await),
            [false, true]
        );
    }

    #[tokio::test]
    async fn capacity_zero_is_a_pass_through() {
        let store = CachedStore::new(MemStore::new(), 0);
        let id = store
            .put_content(body_from_bytes("x"), 100)
            .await
            .expect("put");
        assert_eq!(read(&store, id).await.as_deref(), Some(&b"x"[..]));
        assert_eq!(store.weight(), 0);
        assert_eq!(store.capacity(), 0);
    }

    #[tokio::test]
    async fn the_cache_stays_within_its_capacity() {
        let store = CachedStore::new(MemStore::new(), 64 * 1024);
        for i in 0..200u32 {
            let body = vec![i as u8; 1000 + i as usize];
            let id = store
                .put_content(body_from_bytes(body), 1 << 20)
                .await
                .expect("put");
            assert!(read(&store, id).await.is_some());
            assert!(store.weight() <= store.capacity());
        }
    }
}
