//! The filesystem backend: one file `<root>/<h>.tig` per object.
//!
//! Writes stream into a private temp file (`<root>/.tmp-<pid>-<n>`, a name that can
//! never look like an object and is never served or listed) while hashing, and are
//! published only when whole:
//! - content: fsync, then `link(temp, <h>.tig)`, which refuses to replace anything;
//!   if the name exists it is either the same content (a dedupe: the timer is
//!   refreshed) or a slot with other bytes (a conflict; nothing changes);
//! - slot replace: fsync, then `rename(temp, <h>.tig)`, an atomic replace;
//! - set-if-not: fsync, then `link`, which is exclusive (the seed's `O_EXCL`);
//! - append: the body is received whole first, then appended with `O_APPEND`.
//!
//! A dropped connection or a crash leaves at most a temp file, removed by a drop
//! guard or at the next start. Every operation that changes or deletes a name holds
//! that name's lock (a striped async mutex), so appends are serialized and the
//! sweeper never races a writer. All file system calls run on tokio's blocking
//! pool; small bodies need one hop there, large ones one hop per buffer.
//!
//! Retention uses the file's mtime as "last used": writes set it, reads refresh it
//! (at most once per `touch_granularity`). A restart restarts every timer: the
//! effective last use is `max(mtime, process start)`.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use tig_core::{Hasher, ObjectId};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use crate::retention::expired;
use crate::{BodyStream, Kind, Object, ObjectBody, SlotOutcome, SlotWrite, Store, StoreError};

/// Received bytes are written to the temp file in pieces of about this size.
const FLUSH_AT: usize = 128 * 1024;
/// Objects up to this size are read in one go; larger ones are streamed.
const SMALL_READ: u64 = 64 * 1024;
/// Chunk size when streaming a large object.
const READ_CHUNK: usize = 64 * 1024;
/// Number of lock stripes (names share a lock when their first bytes collide).
const STRIPES: usize = 1024;
/// Prefix of private temp files.
pub const TEMP_PREFIX: &str = ".tmp-";

/// Tuning of the filesystem backend.
#[derive(Debug, Clone)]
pub struct FsOptions {
    /// `fsync` data before publishing (on by default; off only helps benchmarks on
    /// disks where durability does not matter).
    pub fsync: bool,
    /// A read refreshes the file's mtime only if it is older than this, which
    /// saves a metadata write on hot objects. Keep it well below the retention.
    pub touch_granularity: Duration,
}

impl Default for FsOptions {
    fn default() -> Self {
        Self {
            fsync: true,
            touch_granularity: Duration::from_secs(1),
        }
    }
}

/// A [`Store`] keeping one file per object in a directory.
#[derive(Clone)]
pub struct FsStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for FsStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FsStore")
            .field("root", &self.inner.root)
            .finish_non_exhaustive()
    }
}

struct Inner {
    root: PathBuf,
    started: SystemTime,
    opts: FsOptions,
    locks: Box<[Arc<AsyncMutex<()>>]>,
    counter: AtomicU64,
    /// Names this process knows to be slots, with the file length it last saw.
    /// Spares hashing a growing slot on every append or replace. Only touched while
    /// holding the name's lock.
    slots: Mutex<HashMap<ObjectId, u64>>,
}

/// A temp file that deletes itself unless published by rename.
struct TempFile {
    path: PathBuf,
    file: File,
    keep: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// A received body: the first part in a temp file (if it was large), the rest in
/// memory.
struct Incoming {
    id: ObjectId,
    temp: Option<TempFile>,
    tail: Vec<u8>,
}

async fn blocking<T, F>(f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Io(io::Error::other(e)))?
}

impl FsStore {
    /// Opens the store in `root`, which must be an existing directory, and removes
    /// temp files a crash may have left behind.
    pub async fn open(root: impl Into<PathBuf>, opts: FsOptions) -> Result<Self, StoreError> {
        let root: PathBuf = root.into();
        let dir = root.clone();
        let removed = blocking(move || {
            let meta = fs::metadata(&dir)?;
            if !meta.is_dir() {
                return Err(io::Error::new(io::ErrorKind::NotADirectory, "not a directory").into());
            }
            Ok(remove_stale_temps(&dir)?)
        })
        .await?;
        if removed > 0 {
            tracing::info!(removed, "removed stale temp files");
        }
        let locks = (0..STRIPES)
            .map(|_| Arc::new(AsyncMutex::new(())))
            .collect();
        Ok(Self {
            inner: Arc::new(Inner {
                root,
                started: SystemTime::now(),
                opts,
                locks,
                counter: AtomicU64::new(0),
                slots: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The data directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Deletes every object unused for `retention` as of `now` (a parameter so
    /// tests can look into the future instead of sleeping).
    pub async fn sweep_at(
        &self,
        now: SystemTime,
        retention: Duration,
    ) -> Result<usize, StoreError> {
        if retention.is_zero() {
            return Ok(0);
        }
        let inner = self.inner.clone();
        let candidates = blocking(move || {
            let mut out = Vec::new();
            for (id, mtime) in inner.scan()? {
                if expired(mtime, inner.started, now, retention) {
                    out.push(id);
                }
            }
            Ok(out)
        })
        .await?;
        let mut deleted = 0;
        for id in candidates {
            let guard = self.lock(id).await;
            let inner = self.inner.clone();
            let gone = blocking(move || {
                let _guard = guard;
                let path = inner.path(id);
                let meta = match fs::metadata(&path) {
                    Ok(m) => m,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
                    Err(e) => return Err(e.into()),
                };
                if !expired(meta.modified()?, inner.started, now, retention) {
                    return Ok(false);
                }
                remove_if_present(&path)?;
                inner.forget_slot(id);
                Ok(true)
            })
            .await?;
            if gone {
                tracing::debug!(%id, "retention: deleted");
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    async fn lock(&self, id: ObjectId) -> OwnedMutexGuard<()> {
        let b = id.as_bytes();
        let i = (usize::from(b[0]) << 8 | usize::from(b[1])) % STRIPES;
        self.inner.locks[i].clone().lock_owned().await
    }

    /// Streams `body` into a temp file (in pieces) while hashing it.
    async fn receive(&self, mut body: BodyStream, limit: u64) -> Result<Incoming, StoreError> {
        let mut hasher = Hasher::new();
        let mut len = 0u64;
        let mut buf: Vec<u8> = Vec::new();
        let mut temp: Option<TempFile> = None;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(StoreError::Body)?;
            len += chunk.len() as u64;
            if len > limit {
                return Err(StoreError::TooLarge { limit });
            }
            hasher.update(&chunk);
            buf.extend_from_slice(&chunk);
            if buf.len() >= FLUSH_AT {
                let inner = self.inner.clone();
                let prev = temp.take();
                let (t, b) = blocking(move || {
                    let mut t = match prev {
                        Some(t) => t,
                        None => inner.new_temp()?,
                    };
                    t.file.write_all(&buf)?;
                    buf.clear();
                    Ok((t, buf))
                })
                .await?;
                temp = Some(t);
                buf = b;
            }
        }
        Ok(Incoming {
            id: hasher.finish(),
            temp,
            tail: buf,
        })
    }
}

impl Inner {
    fn path(&self, id: ObjectId) -> PathBuf {
        self.root.join(id.file_name())
    }

    fn new_temp(&self) -> io::Result<TempFile> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let path = self
            .root
            .join(format!("{TEMP_PREFIX}{}-{n}", std::process::id()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok(TempFile {
            path,
            file,
            keep: false,
        })
    }

    /// Writes the in-memory tail into the temp file (creating it if needed) and
    /// makes it durable.
    fn materialize(&self, temp: Option<TempFile>, tail: &[u8]) -> io::Result<TempFile> {
        let mut t = match temp {
            Some(t) => t,
            None => self.new_temp()?,
        };
        t.file.write_all(tail)?;
        if self.opts.fsync {
            t.file.sync_data()?;
        }
        Ok(t)
    }

    /// Links a complete temp file to `<id>.tig` without ever replacing a file.
    fn publish_content(&self, temp: TempFile, id: ObjectId, len: u64) -> Result<(), StoreError> {
        let target = self.path(id);
        match fs::hard_link(&temp.path, &target) {
            Ok(()) => {
                self.forget_slot(id);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let f = match File::open(&target) {
                    Ok(f) => f,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        // Deleted behind our back (not by us: we hold the lock).
                        fs::hard_link(&temp.path, &target)?;
                        return Ok(());
                    }
                    Err(e) => return Err(e.into()),
                };
                let meta = f.metadata()?;
                if meta.len() == len && self.is_content(f, &meta, id)? {
                    touch(&target, SystemTime::now());
                    Ok(())
                } else {
                    Err(StoreError::SlotConflict(id))
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Whether the open file `f` (named `id`) is content: its sha256 is `id`.
    fn is_content(&self, mut f: File, meta: &fs::Metadata, id: ObjectId) -> io::Result<bool> {
        if self.known_slot(id, meta.len()) {
            return Ok(false);
        }
        let mut hasher = Hasher::new();
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let content = hasher.finish() == id;
        if !content {
            self.remember_slot(id, meta.len());
        }
        Ok(content)
    }

    /// Refuses with `Immutable` if `<id>.tig` is content; `Ok` if absent or a slot.
    fn ensure_not_content(&self, id: ObjectId) -> Result<(), StoreError> {
        match File::open(self.path(id)) {
            Ok(f) => {
                let meta = f.metadata()?;
                if self.is_content(f, &meta, id)? {
                    Err(StoreError::Immutable(id))
                } else {
                    Ok(())
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn known_slot(&self, id: ObjectId, len: u64) -> bool {
        self.slots
            .lock()
            .map(|m| m.get(&id) == Some(&len))
            .unwrap_or(false)
    }

    fn remember_slot(&self, id: ObjectId, len: u64) {
        if let Ok(mut m) = self.slots.lock() {
            m.insert(id, len);
        }
    }

    fn forget_slot(&self, id: ObjectId) {
        if let Ok(mut m) = self.slots.lock() {
            m.remove(&id);
        }
    }

    fn write_slot(
        &self,
        id: ObjectId,
        inc: Incoming,
        mode: SlotWrite,
    ) -> Result<SlotOutcome, StoreError> {
        let target = self.path(id);
        // A body that hashes to the slot's own name makes it content: do not
        // remember it as a slot.
        let body_is_name = inc.id == id;
        match mode {
            SlotWrite::Replace => {
                self.ensure_not_content(id)?;
                let mut t = self.materialize(inc.temp, &inc.tail)?;
                let len = t.file.metadata()?.len();
                fs::rename(&t.path, &target)?;
                t.keep = true;
                if body_is_name {
                    self.forget_slot(id);
                } else {
                    self.remember_slot(id, len);
                }
                Ok(SlotOutcome::Written)
            }
            SlotWrite::IfAbsent => {
                let t = self.materialize(inc.temp, &inc.tail)?;
                let len = t.file.metadata()?.len();
                match fs::hard_link(&t.path, &target) {
                    Ok(()) => {
                        if !body_is_name {
                            self.remember_slot(id, len);
                        }
                        Ok(SlotOutcome::Created)
                    }
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(SlotOutcome::Existed),
                    Err(e) => Err(e.into()),
                }
            }
            SlotWrite::Append => {
                self.ensure_not_content(id)?;
                let mut out = OpenOptions::new().append(true).create(true).open(&target)?;
                if let Some(mut t) = inc.temp {
                    t.file.rewind()?;
                    io::copy(&mut t.file, &mut out)?;
                }
                out.write_all(&inc.tail)?;
                if self.opts.fsync {
                    out.sync_data()?;
                }
                let len = out.metadata()?.len();
                self.remember_slot(id, len);
                Ok(SlotOutcome::Written)
            }
        }
    }

    /// Every object file with its mtime.
    fn scan(&self) -> io::Result<Vec<(ObjectId, SystemTime)>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.root)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(ObjectId::from_file_name) else {
                continue;
            };
            let meta = match entry.metadata() {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if meta.is_file() {
                out.push((id, meta.modified()?));
            }
        }
        Ok(out)
    }

    /// Opens `<id>.tig` for reading, refreshing its timer if asked.
    fn open_object(&self, id: ObjectId, touch_it: bool) -> io::Result<Option<(File, u64)>> {
        let path = self.path(id);
        let f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let meta = f.metadata()?;
        if !meta.is_file() {
            return Ok(None);
        }
        if touch_it {
            let now = SystemTime::now();
            let fresh = meta
                .modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .is_some_and(|age| age < self.opts.touch_granularity);
            if !fresh && let Err(e) = f.set_modified(now) {
                tracing::warn!(path = %path.display(), error = %e, "cannot refresh mtime");
            }
        }
        Ok(Some((f, meta.len())))
    }
}

/// Sets a file's mtime; failures are logged, never fatal (a read must not fail
/// because the timer could not be refreshed).
fn touch(path: &Path, now: SystemTime) {
    let res = OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(now));
    if let Err(e) = res {
        tracing::warn!(path = %path.display(), error = %e, "cannot refresh mtime");
    }
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn remove_stale_temps(dir: &Path) -> io::Result<usize> {
    let mut n = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry
            .file_name()
            .to_str()
            .is_some_and(|s| s.starts_with(TEMP_PREFIX))
        {
            remove_if_present(&entry.path())?;
            n += 1;
        }
    }
    Ok(n)
}

/// Streams `len` bytes of an open file.
fn file_stream(f: File, len: u64) -> BodyStream {
    use tokio::io::AsyncReadExt;
    let reader = tokio::fs::File::from_std(f).take(len);
    let stream = tokio_util::io::ReaderStream::with_capacity(reader, READ_CHUNK);
    let mut seen = 0u64;
    let mut done = false;
    Box::pin(
        stream
            .map(Some)
            .chain(futures_util::stream::iter([None]))
            .filter_map(move |item| {
                let out = match item {
                    Some(Ok(b)) => {
                        seen += b.len() as u64;
                        Some(Ok(b))
                    }
                    Some(Err(e)) => {
                        done = true;
                        Some(Err(e))
                    }
                    None if !done && seen < len => Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "object shrank while being read",
                    ))),
                    None => None,
                };
                std::future::ready(out)
            }),
    )
}

impl Store for FsStore {
    async fn put_content(&self, body: BodyStream, limit: u64) -> Result<ObjectId, StoreError> {
        let inc = self.receive(body, limit).await?;
        let id = inc.id;
        let guard = self.lock(id).await;
        let inner = self.inner.clone();
        blocking(move || {
            let _guard = guard;
            let len = inc
                .temp
                .as_ref()
                .map_or(Ok(0), |t| t.file.metadata().map(|m| m.len()))?
                + inc.tail.len() as u64;
            let t = inner.materialize(inc.temp, &inc.tail)?;
            inner.publish_content(t, id, len)
        })
        .await?;
        Ok(id)
    }

    async fn put_slot(
        &self,
        id: ObjectId,
        body: BodyStream,
        limit: u64,
        mode: SlotWrite,
    ) -> Result<SlotOutcome, StoreError> {
        let inc = self.receive(body, limit).await?;
        let guard = self.lock(id).await;
        let inner = self.inner.clone();
        blocking(move || {
            let _guard = guard;
            inner.write_slot(id, inc, mode)
        })
        .await
    }

    async fn get(&self, id: ObjectId, touch: bool) -> Result<Option<Object>, StoreError> {
        let inner = self.inner.clone();
        blocking(move || {
            let Some((f, len)) = inner.open_object(id, touch)? else {
                return Ok(None);
            };
            if len <= SMALL_READ {
                let mut data = Vec::with_capacity(len as usize);
                f.take(len).read_to_end(&mut data)?;
                Ok(Some(Object {
                    len: data.len() as u64,
                    body: ObjectBody::Full(data.into()),
                }))
            } else {
                Ok(Some(Object {
                    len,
                    body: ObjectBody::Stream(file_stream(f, len)),
                }))
            }
        })
        .await
    }

    async fn stat(&self, id: ObjectId, touch: bool) -> Result<Option<u64>, StoreError> {
        let inner = self.inner.clone();
        blocking(move || Ok(inner.open_object(id, touch)?.map(|(_, len)| len))).await
    }

    async fn kind(&self, id: ObjectId) -> Result<Option<Kind>, StoreError> {
        let inner = self.inner.clone();
        blocking(move || {
            let Some((f, _)) = inner.open_object(id, false)? else {
                return Ok(None);
            };
            let meta = f.metadata()?;
            Ok(Some(if inner.is_content(f, &meta, id)? {
                Kind::Content
            } else {
                Kind::Slot
            }))
        })
        .await
    }

    async fn delete_slot(&self, id: ObjectId) -> Result<(), StoreError> {
        let guard = self.lock(id).await;
        let inner = self.inner.clone();
        blocking(move || {
            let _guard = guard;
            let Some((f, _)) = inner.open_object(id, false)? else {
                return Err(StoreError::NotFound(id));
            };
            let meta = f.metadata()?;
            if inner.is_content(f, &meta, id)? {
                return Err(StoreError::Immutable(id));
            }
            remove_if_present(&inner.path(id))?;
            inner.forget_slot(id);
            Ok(())
        })
        .await
    }

    async fn list(&self) -> Result<Vec<ObjectId>, StoreError> {
        let inner = self.inner.clone();
        blocking(move || {
            let mut all = inner.scan()?;
            all.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            Ok(all.into_iter().map(|(id, _)| id).collect())
        })
        .await
    }

    async fn sweep(&self, retention: Duration) -> Result<usize, StoreError> {
        self.sweep_at(SystemTime::now(), retention).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance;

    async fn store() -> (tempfile::TempDir, FsStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStore::open(dir.path(), FsOptions::default())
            .await
            .unwrap();
        (dir, s)
    }

    conformance::suite!(store);

    #[tokio::test]
    async fn startup_removes_stale_temp_files_and_keeps_objects() {
        let dir = tempfile::tempdir().unwrap();
        let id = ObjectId::digest(b"x");
        fs::write(dir.path().join(id.file_name()), b"x").unwrap();
        fs::write(dir.path().join(".tmp-1-2"), b"half").unwrap();
        let s = FsStore::open(dir.path(), FsOptions::default())
            .await
            .unwrap();
        assert!(!dir.path().join(".tmp-1-2").exists());
        assert_eq!(s.list().await.unwrap(), vec![id]);
    }

    #[tokio::test]
    async fn open_refuses_a_file_as_root() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, b"").unwrap();
        assert!(FsStore::open(&file, FsOptions::default()).await.is_err());
        assert!(
            FsStore::open(dir.path().join("missing"), FsOptions::default())
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn large_bodies_spill_to_disk_and_leave_no_temp_files() {
        let (dir, s) = store().await;
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let chunks: Vec<io::Result<bytes::Bytes>> = data
            .chunks(10_000)
            .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
            .collect();
        let id = s
            .put_content(Box::pin(futures_util::stream::iter(chunks)), u64::MAX)
            .await
            .unwrap();
        assert_eq!(id, ObjectId::digest(&data));
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec![id.file_name()]);
        assert_eq!(fs::read(dir.path().join(id.file_name())).unwrap(), data);
    }

    #[tokio::test]
    async fn a_failing_body_leaves_nothing_behind() {
        let (dir, s) = store().await;
        let big = bytes::Bytes::from(vec![7u8; 300_000]);
        let body: BodyStream = Box::pin(futures_util::stream::iter([
            Ok(big),
            Err(io::Error::new(io::ErrorKind::ConnectionReset, "gone")),
        ]));
        let err = s.put_content(body, u64::MAX).await.unwrap_err();
        assert!(matches!(err, StoreError::Body(_)), "{err}");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn restart_restarts_the_timers() {
        let dir = tempfile::tempdir().unwrap();
        let id = ObjectId::digest(b"old");
        let path = dir.path().join(id.file_name());
        fs::write(&path, b"old").unwrap();
        let long_ago = SystemTime::now() - Duration::from_secs(3600);
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
        let s = FsStore::open(dir.path(), FsOptions::default())
            .await
            .unwrap();
        // Old mtime, but the process just started: not expired yet.
        assert_eq!(s.sweep(Duration::from_secs(60)).await.unwrap(), 0);
        assert!(path.exists());
        // A minute after start it goes.
        let later = SystemTime::now() + Duration::from_secs(61);
        assert_eq!(s.sweep_at(later, Duration::from_secs(60)).await.unwrap(), 1);
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn reads_refresh_the_timer_unless_asked_not_to() {
        let dir = tempfile::tempdir().unwrap();
        let opts = FsOptions {
            fsync: false,
            touch_granularity: Duration::ZERO,
        };
        let s = FsStore::open(dir.path(), opts).await.unwrap();
        let id = s
            .put_content(crate::body_from_bytes("a"), 10)
            .await
            .unwrap();
        let path = dir.path().join(id.file_name());
        let past = SystemTime::now() - Duration::from_secs(100);
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(past)
            .unwrap();
        s.get(id, false).await.unwrap().unwrap();
        assert_eq!(fs::metadata(&path).unwrap().modified().unwrap(), past);
        s.get(id, true).await.unwrap().unwrap();
        assert!(fs::metadata(&path).unwrap().modified().unwrap() > past);
    }
}
