//! The filesystem backend: one file `<root>/<h>.tig` per object.
//!
//! Writes stream into a private temp file while hashing, and are published only
//! when whole. Temp files live in this process's own directory
//! `<root>/.tig-tmp/<pid>-<nonce>/` (`.tig-tmp` is created 0700; no name in it can
//! look like an object, so it is never served or listed). Publication:
//! - content: fsync, then `renameat2(temp, <h>.tig, RENAME_NOREPLACE)` (or, where
//!   the file system lacks that flag, `link` and `unlink` of the temp name), which
//!   refuses to replace anything; if the name exists it is either the same content
//!   (a dedupe: the timer is refreshed) or a slot with other bytes (a conflict;
//!   nothing changes);
//! - slot replace: fsync, then `rename(temp, <h>.tig)`, an atomic replace;
//! - set-if-not: fsync, then the same no-replace rename, which is exclusive (the
//!   seed's `O_EXCL`);
//! - append: the body is received whole first, then appended with `O_APPEND`.
//!
//! Durability: with `fsync` on (the default) the file's data and then the root
//! directory are fsynced before a write returns, so an acknowledged write
//! survives a crash or power loss.
//!
//! A batch of content ([`Store::put_content_batch`]) pays for that once, not per
//! object: every member is written to its own temp file (no sync yet), all their
//! data is made durable together (see [`Inner::sync_data_of`]: one `syncfs` for a
//! group of [`SYNCFS_AT`] or more where that is trusted, else writeback of all
//! started with `sync_file_range` and each `fdatasync`ed), each is linked exactly
//! as a single upload is, and the root directory is fsynced once. Small `PUT`s
//! published together (`fs/publish.rs`) do the same.
//!
//! A dropped connection leaves nothing (a drop guard removes the temp file). A
//! crash leaves at most the dead process's temp directory: each process holds an
//! exclusive `flock` on `<its dir>/lock` for its lifetime, and start-up removes
//! only directories whose lock is free (creation and the clean-up scan are
//! serialized by a `flock` on `.tig-tmp/.lock`, so a starting server never
//! removes another live server's files). Nothing else in the root is touched.
//!
//! A full disk (`ENOSPC`, `EDQUOT`) is [`StoreError::Full`]; nothing partial is
//! left (an append that failed half-way is cut back to its old length).
//!
//! Every operation that changes or deletes a name holds
//! that name's lock (a striped async mutex), so appends are serialized and the
//! sweeper never races a writer. All file system calls run on tokio's blocking
//! pool; small bodies need one hop there, large ones one hop per buffer.
//!
//! Content vs slot is recorded at publication in the file's permission bits, so
//! telling them apart never needs hashing and survives restarts:
//! - content is published read-only, mode [`CONTENT_MODE`] (`0444`);
//! - slots get mode [`SLOT_MODE`] (`0604`, a mode nothing else writes: `0600` is
//!   what `tig backup` and other tempfile-based writers leave on *content*);
//! - a file with any other mode (written by an older tig, copied in by `tig backup`
//!   or by hand) is hashed once on first need, then marked (`fchmod`); if marking
//!   fails (read-only directory, foreign owner), the verdict is remembered in
//!   memory for that inode and length instead.
//!
//! A slot written with bytes that hash to its own name becomes content (marked
//! `0444`), as it always has. A slot's version (its strong ETag) is
//! `inode-birthtime-length`: a replace is a new file (new inode and birth time),
//! an append changes the length, and reads (which touch only the mtime) leave it.
//!
//! Retention uses the file's mtime as "last used": writes set it, reads refresh it
//! (at most once per `touch_granularity`, and not at all without
//! `record_use`, as under `--retention 0`). A restart restarts every timer: the
//! effective last use is `max(mtime, process start)`.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tig_core::{Hasher, ObjectId};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use crate::retention::expired;
use crate::{
    BodyStream, ByteRange, Hashed, Kind, Object, ObjectBody, ObjectMeta, SlotOutcome, SlotWrite,
    Store, StoreError,
};

mod publish;

/// A body is kept in memory up to about this size; past it, it is written to a
/// temp file in batches of at least this size.
const FLUSH_AT: usize = 128 * 1024;
/// The largest batch a lone upload writes at once: fewer, larger batches mean
/// fewer wake-ups of the writing thread (a 256 MiB upload: ~2,000 → ~260).
const FLUSH_AT_MOST: usize = 1024 * 1024;
/// Batches are sized so that uploads writing at once share about this much: a
/// few get [`FLUSH_AT_MOST`] each, many get [`FLUSH_AT`] each (past 32 uploads
/// the total grows with their number, as it did before batches were shared).
const FLUSH_SHARED: usize = 4 * 1024 * 1024;
/// Received pieces smaller than this are copied together before they are queued
/// for the temp file; larger ones are queued as they are.
const COALESCE_BELOW: usize = 16 * 1024;
/// Objects up to this size are read in one go; larger ones are streamed.
const SMALL_READ: u64 = 64 * 1024;
/// Chunk size when streaming a large object.
const READ_CHUNK: usize = 256 * 1024;
/// Number of lock stripes (names share a lock when their first bytes collide).
const STRIPES: usize = 1024;
/// Permission bits of a published content file: read-only.
pub const CONTENT_MODE: u32 = 0o444;
/// Permission bits of a slot file (distinct from every mode other writers use).
pub const SLOT_MODE: u32 = 0o604;
/// The directory under the root holding each process's private temp directory.
pub const TEMP_DIR: &str = ".tig-tmp";
/// Where the scrubber moves content whose bytes no longer hash to its name
/// (never served, never listed).
pub const CORRUPT_DIR: &str = ".tig-corrupt";
/// The lock file inside a process's temp directory (held with `flock` while the
/// process lives).
const LOCK_FILE: &str = "lock";
/// The lock in [`TEMP_DIR`] serializing creation and clean-up of process directories.
const SCAN_LOCK: &str = ".lock";

/// What [`FsStore::scrub_object`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scrubbed {
    /// Content whose bytes hash to its name (its length).
    Good(u64),
    /// Content whose bytes did not: moved to [`CORRUPT_DIR`] (its length).
    Corrupt(u64),
    /// A slot: cannot be checked.
    Slot,
    /// Gone meanwhile.
    Gone,
}

/// Tuning of the filesystem backend.
#[derive(Debug, Clone)]
pub struct FsOptions {
    /// `fsync` data before publishing (on by default; off only helps benchmarks on
    /// disks where durability does not matter).
    pub fsync: bool,
    /// A read refreshes the file's mtime only if it is older than this, which
    /// saves a metadata write on hot objects. Keep it well below the retention.
    pub touch_granularity: Duration,
    /// Reads refresh the mtime at all (on by default). Off when nothing is ever
    /// swept (`--retention 0`): a use nobody will ask about is not worth a
    /// metadata write per object read, and a later start with a retention
    /// restarts every timer anyway. Several processes sharing one root must
    /// then all run without retention: reads through this one do not keep an
    /// object alive for another one's sweeper.
    pub record_use: bool,
}

impl Default for FsOptions {
    fn default() -> Self {
        Self {
            fsync: true,
            touch_granularity: Duration::from_secs(1),
            record_use: true,
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
    /// This process's private temp directory.
    tmp: PathBuf,
    /// `tmp`, open: temp files are created and renamed relative to it, so no
    /// call walks the root's path and `.tig-tmp/<dir>` again.
    tmp_dir: std::os::fd::OwnedFd,
    /// The open, `flock`ed lock file of `tmp`: the lock lives as long as the store.
    _tmp_lock: File,
    started: SystemTime,
    opts: FsOptions,
    locks: Box<[Arc<AsyncMutex<()>>]>,
    counter: AtomicU64,
    /// Uploads writing to a temp file right now (sizes their batches).
    spilling: AtomicUsize,
    /// Whether groups of files may be made durable with one `syncfs`
    /// ([`Inner::sync_data_of`]).
    syncfs_groups: bool,
    /// Whether a temp file created with mode [`CONTENT_MODE`] gets exactly that
    /// mode (the umask keeps all its bits), so content needs no `fchmod`.
    temps_born_content: bool,
    /// Whether `renameat2(RENAME_NOREPLACE)` works here (else `link`, then
    /// `unlink` of the temp name).
    noreplace: AtomicBool,
    /// Kinds of files whose mode could not be set to a mark, by name, with the
    /// inode and length they were decided for (any change means: decide again).
    unmarked: Mutex<HashMap<ObjectId, (u64, u64, Kind)>>,
    /// Small uploads waiting to be published together.
    publisher: publish::Publisher,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Still holding the lock (fields drop after this): nobody else removes it.
        if let Err(e) = fs::remove_dir_all(&self.tmp) {
            tracing::warn!(dir = %self.tmp.display(), error = %e, "cannot remove the temp directory");
        }
    }
}

/// A temp file that deletes itself unless published by rename.
struct TempFile {
    path: PathBuf,
    /// Its name in the process's temp directory ([`Inner::tmp_dir`]).
    name: String,
    file: File,
    keep: bool,
    /// The permission bits it is known to have (the kind mark), if any.
    mode: Option<u32>,
}

impl TempFile {
    /// Gives the file `mode` (the kind mark) unless it already has it, as a
    /// temp file created with its final mode does; says whether it changed.
    fn mark(&mut self, mode: u32) -> io::Result<bool> {
        if self.mode == Some(mode) {
            return Ok(false);
        }
        mark(&self.file, mode)?;
        self.mode = Some(mode);
        Ok(true)
    }
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

/// `each` of every id, in order, in one blocking task (one thread-pool hop in
/// all) after `setup`; if `setup` or the task fails, every id gets that error.
async fn in_one_hop<C, T>(
    ids: Vec<ObjectId>,
    setup: impl FnOnce() -> io::Result<C> + Send + 'static,
    each: impl Fn(&C, ObjectId) -> Result<T, StoreError> + Send + 'static,
) -> Vec<Result<T, StoreError>>
where
    T: Send + 'static,
{
    let n = ids.len();
    if n == 0 {
        return Vec::new();
    }
    let all = blocking(move || {
        let cx = setup()?;
        Ok(ids.into_iter().map(|id| each(&cx, id)).collect())
    })
    .await;
    all.unwrap_or_else(|e| {
        let e = e.to_string();
        (0..n)
            .map(|_| Err(StoreError::Io(io::Error::other(e.clone()))))
            .collect()
    })
}

impl FsStore {
    /// Opens the store in `root`, which must be an existing directory, and removes
    /// temp files a crash may have left behind.
    pub async fn open(root: impl Into<PathBuf>, opts: FsOptions) -> Result<Self, StoreError> {
        let root: PathBuf = root.into();
        let dir = root.clone();
        let (tmp, tmp_lock, removed) = blocking(move || {
            let meta = fs::metadata(&dir)?;
            if !meta.is_dir() {
                return Err(io::Error::new(io::ErrorKind::NotADirectory, "not a directory").into());
            }
            Ok(temp_dir_for_this_process(&dir)?)
        })
        .await?;
        if removed > 0 {
            tracing::info!(removed, "removed temp directories of dead tig processes");
        }
        let syncfs_groups = syncfs_is_trusted(&tmp_lock);
        let tmp_dir = open_dir(&tmp)?;
        let probe = tmp.join("mode-probe");
        let temps_born_content = blocking(move || Ok(born_with(&probe, CONTENT_MODE)?)).await?;
        let locks = (0..STRIPES)
            .map(|_| Arc::new(AsyncMutex::new(())))
            .collect();
        Ok(Self {
            inner: Arc::new(Inner {
                root,
                tmp,
                tmp_dir,
                _tmp_lock: tmp_lock,
                started: SystemTime::now(),
                opts,
                locks,
                counter: AtomicU64::new(0),
                spilling: AtomicUsize::new(0),
                syncfs_groups,
                temps_born_content,
                noreplace: AtomicBool::new(true),
                unmarked: Mutex::new(HashMap::new()),
                publisher: publish::Publisher::default(),
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
                inner.forget(id);
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

    /// Re-hashes `<id>.tig` if it is content and, when its bytes no longer hash
    /// to its name, moves it to `<root>/.tig-corrupt/` (so it is never served or
    /// listed again). Holds the name's lock, so no write races it; reads are not
    /// blocked. Slots cannot be checked (their bytes are not named by their hash).
    pub async fn scrub_object(&self, id: ObjectId) -> Result<Scrubbed, StoreError> {
        let guard = self.lock(id).await;
        let inner = self.inner.clone();
        blocking(move || {
            let _guard = guard;
            let Some((f, meta)) = inner.open_object(id, false)? else {
                return Ok(Scrubbed::Gone);
            };
            match meta.permissions().mode() & 0o777 {
                SLOT_MODE => return Ok(Scrubbed::Slot),
                CONTENT_MODE => {}
                // Unmarked (older tig, copied in): hashing decides, as for any read.
                _ => {
                    return Ok(match inner.classify(id, &f, &meta)? {
                        Kind::Content => Scrubbed::Good(meta.len()),
                        Kind::Slot => Scrubbed::Slot,
                    });
                }
            }
            let mut hasher = Hasher::new();
            let mut buf = vec![0u8; READ_CHUNK];
            let mut pos = 0u64;
            loop {
                let n = f.read_at(&mut buf, pos)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                pos += n as u64;
            }
            if hasher.finish() == id {
                return Ok(Scrubbed::Good(pos));
            }
            let to = inner.quarantine(id)?;
            tracing::error!(%id, to = %to.display(), "scrub: content does not match its name; moved away");
            Ok(Scrubbed::Corrupt(pos))
        })
        .await
    }

    async fn lock(&self, id: ObjectId) -> OwnedMutexGuard<()> {
        self.inner.locks[stripe(id)].clone().lock_owned().await
    }

    /// The locks of every name in `ids`, each stripe once, taken in stripe order
    /// (so two batches never wait for each other crosswise).
    async fn lock_all(&self, ids: impl Iterator<Item = ObjectId>) -> Vec<OwnedMutexGuard<()>> {
        let mut stripes: Vec<usize> = ids.map(stripe).collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut guards = Vec::with_capacity(stripes.len());
        for i in stripes {
            guards.push(self.inner.locks[i].clone().lock_owned().await);
        }
        guards
    }

    /// Streams `body` into a temp file (in pieces) while hashing it.
    async fn receive(&self, mut body: BodyStream, limit: u64) -> Result<Incoming, StoreError> {
        let mut hasher = Hasher::new();
        let mut len = 0u64;
        // Large pieces are queued as received, not copied (a copy costs a tenth
        // of a large upload's time on the receiving thread); such a piece keeps
        // the read buffer it was split from alive, which the server bounds
        // (`max_buf_size`). Small ones are copied together into `small`, so a
        // client trickling tiny pieces cannot make a batch of many thousand.
        let mut pending: Vec<Bytes> = Vec::new();
        let mut small = BytesMut::new();
        let mut pending_len = 0usize;
        let mut writer: Option<TempWriter> = None;
        let mut writer_stopped = false;
        let mut flush_at = FLUSH_AT;
        let received: Result<(), StoreError> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(StoreError::Body)?;
                len += chunk.len() as u64;
                if len > limit {
                    return Err(StoreError::TooLarge { limit });
                }
                hasher.update(&chunk);
                pending_len += chunk.len();
                if chunk.len() < COALESCE_BELOW {
                    small.extend_from_slice(&chunk);
                    if small.len() >= COALESCE_BELOW {
                        pending.push(small.split().freeze());
                    }
                } else {
                    if !small.is_empty() {
                        pending.push(small.split().freeze());
                    }
                    pending.push(chunk);
                }
                if pending_len >= flush_at {
                    if !small.is_empty() {
                        pending.push(small.split().freeze());
                    }
                    let w = writer.get_or_insert_with(|| TempWriter::spawn(self.inner.clone()));
                    flush_at = w.batch_size();
                    let full = std::mem::take(&mut pending);
                    pending_len = 0;
                    if !w.send(full).await {
                        writer_stopped = true;
                        return Err(StoreError::Io(io::Error::other("temp file writer stopped")));
                    }
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = received {
            // Join the writer, so the temp file is gone before the error is
            // reported; if the writer stopped on its own, its error is the one.
            if let Some(w) = writer
                && let Err(why) = w.finish().await
                && writer_stopped
            {
                return Err(why);
            }
            return Err(e);
        }
        let temp = match writer {
            Some(w) => Some(w.finish().await?),
            None => None,
        };
        let mut tail = pending.concat();
        tail.extend_from_slice(&small);
        Ok(Incoming {
            id: hasher.finish(),
            temp,
            tail,
        })
    }
}

/// Writes a body's pieces into a new temp file on a blocking thread while the
/// receiving task goes on hashing the next ones: hashing and writing overlap
/// instead of taking turns. At most [`WRITE_QUEUE`] batches wait, so a slow disk
/// slows the sender down rather than filling memory.
struct TempWriter {
    queue: tokio::sync::mpsc::Sender<Vec<Bytes>>,
    done: tokio::task::JoinHandle<io::Result<TempFile>>,
    spilling: Spilling,
}

/// Batches queued for one temp file: with the one being hashed and the one being
/// written, an upload holds ~3 batches (and the read buffers their pieces were
/// split from): 3 × 1 MiB alone, 3 × 128 KiB each among many.
const WRITE_QUEUE: usize = 1;

/// An upload's batch size when `spilling` uploads write to temp files: its share
/// of [`FLUSH_SHARED`], at least [`FLUSH_AT`] and at most [`FLUSH_AT_MOST`].
fn batch_size(spilling: usize) -> usize {
    (FLUSH_SHARED / spilling.max(1)).clamp(FLUSH_AT, FLUSH_AT_MOST)
}

/// Counts an upload in [`Inner::spilling`] while it lives.
struct Spilling(Arc<Inner>);

impl Spilling {
    fn new(inner: Arc<Inner>) -> Self {
        inner.spilling.fetch_add(1, Ordering::Relaxed);
        Self(inner)
    }
}

impl Drop for Spilling {
    fn drop(&mut self) {
        self.0.spilling.fetch_sub(1, Ordering::Relaxed);
    }
}

impl TempWriter {
    fn spawn(inner: Arc<Inner>) -> Self {
        let spilling = Spilling::new(inner.clone());
        let (queue, mut rx) = tokio::sync::mpsc::channel::<Vec<Bytes>>(WRITE_QUEUE);
        let done = tokio::task::spawn_blocking(move || {
            let mut t = inner.new_temp()?;
            while let Some(batch) = rx.blocking_recv() {
                write_all_pieces(&mut t.file, &batch)?;
            }
            Ok(t)
        });
        Self {
            queue,
            done,
            spilling,
        }
    }

    /// How many bytes to gather before the next batch (see [`batch_size`]).
    fn batch_size(&self) -> usize {
        batch_size(self.spilling.0.spilling.load(Ordering::Relaxed))
    }

    /// Queues a batch; `false` when the writer has stopped (it failed:
    /// [`TempWriter::finish`] says why).
    async fn send(&mut self, batch: Vec<Bytes>) -> bool {
        self.queue.send(batch).await.is_ok()
    }

    /// Waits until every queued batch is written; the temp file.
    async fn finish(self) -> Result<TempFile, StoreError> {
        let Self { queue, done, .. } = self;
        drop(queue);
        Ok(done
            .await
            .map_err(|e| StoreError::Io(io::Error::other(e)))??)
    }
}

impl Inner {
    fn path(&self, id: ObjectId) -> PathBuf {
        self.root.join(id.file_name())
    }

    /// Whether a read at `now` refreshes the mtime `modified`: only when uses
    /// are recorded and it is at least `touch_granularity` old (or unreadable,
    /// or in the future).
    fn touch_due(&self, modified: Option<SystemTime>, now: SystemTime) -> bool {
        self.opts.record_use
            && modified
                .and_then(|m| now.duration_since(m).ok())
                .is_none_or(|age| age >= self.opts.touch_granularity)
    }

    fn new_temp(&self) -> io::Result<TempFile> {
        use rustix::fs::{Mode, OFlags};
        let name = self.counter.fetch_add(1, Ordering::Relaxed).to_string();
        // Born content where the umask keeps that mode; else private, marked later.
        let born = self.temps_born_content.then_some(CONTENT_MODE);
        let mode = born.unwrap_or(0o600);
        let flags = OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(
            &self.tmp_dir,
            name.as_str(),
            flags,
            Mode::from_raw_mode(mode),
        )
        .map_err(io::Error::from)?;
        Ok(TempFile {
            path: self.tmp.join(&name),
            name,
            file: File::from(fd),
            keep: false,
            mode: born,
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

    /// Moves `<id>.tig` into `<root>/.tig-corrupt/` (0700), under a free name.
    fn quarantine(&self, id: ObjectId) -> io::Result<PathBuf> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = self.root.join(CORRUPT_DIR);
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        let mut to = dir.join(id.file_name());
        let mut n = 1;
        while fs::symlink_metadata(&to).is_ok() {
            to = dir.join(format!("{}.{n}", id.file_name()));
            n += 1;
        }
        fs::rename(self.path(id), &to)?;
        self.forget(id);
        self.sync_root()?;
        Ok(to)
    }

    /// Makes the data of every file in `files` (temp files of this store)
    /// durable; an error is the whole group's.
    ///
    /// Each `fdatasync` ends with a flush of the disk's write cache, so N small
    /// files cost N flushes (on the VM disk of BENCHMARKS.md: 0.17–0.19 ms per
    /// file, about half of a first snapshot's time). `syncfs(2)` writes back
    /// everything dirty on the filesystem and flushes once (0.09 ms per file
    /// there). It is used for groups of at least [`SYNCFS_AT`] files where it is
    /// trusted ([`syncfs_is_trusted`]), on one of the files (so errors since it
    /// was opened fail the group), and only while no large upload is being
    /// written: `syncfs` would also wait for all of that upload's dirty data.
    /// Otherwise writeback of every file is started first and each is
    /// `fdatasync`ed.
    fn sync_data_of(&self, files: &[&File]) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        if self.syncfs_groups
            && files.len() >= SYNCFS_AT
            && self.spilling.load(Ordering::Relaxed) == 0
        {
            return Ok(rustix::fs::syncfs(files[0])?);
        }
        for f in files {
            start_writeback(f);
        }
        for f in files {
            f.sync_data()?;
        }
        Ok(())
    }

    /// Makes a new or replaced name in the root durable (fsync of the directory).
    fn sync_root(&self) -> io::Result<()> {
        if self.opts.fsync {
            File::open(&self.root)?.sync_all()?;
        }
        Ok(())
    }

    /// Links a complete temp file to `<id>.tig` without ever replacing a file.
    fn publish_content(&self, mut temp: TempFile, id: ObjectId) -> Result<(), StoreError> {
        temp.mark(CONTENT_MODE)?;
        if self.link_content(&mut temp, id)? {
            self.sync_root()?;
        }
        Ok(())
    }

    /// Links a complete, marked temp file to `<id>.tig` without ever replacing a
    /// file: a new name (`true`: the root needs a sync), existing content (a
    /// dedupe: its timer is refreshed) or a slot ([`StoreError::SlotConflict`]).
    fn link_content(&self, temp: &mut TempFile, id: ObjectId) -> Result<bool, StoreError> {
        let target = self.path(id);
        match self.name_new(temp, &target) {
            Ok(()) => {
                self.forget(id);
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                match self.kind_at(id)? {
                    None => {
                        // Deleted behind our back (not by us: we hold the lock).
                        self.name_new(temp, &target)?;
                        Ok(true)
                    }
                    Some(Kind::Content) => {
                        touch(&target, SystemTime::now());
                        Ok(false)
                    }
                    Some(Kind::Slot) => Err(StoreError::SlotConflict(id)),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Marks a synced temp file that becomes a slot (or content named by a
    /// slot write). A temp file may be born `0444`, and `fdatasync` need not
    /// keep a later mode change: a crash could then publish a slot marked as
    /// content, trusted unhashed. So a changed mode is made durable (`fsync`)
    /// before the name is given. (Content temps born `0600` are safe either way:
    /// a lost mark leaves a mode that is hashed on first use.)
    fn mark_slot_temp(&self, t: &mut TempFile, mode: u32) -> io::Result<()> {
        if t.mark(mode)? && self.opts.fsync {
            t.file.sync_all()?;
        }
        Ok(())
    }

    /// Gives a temp file the name `target` unless that name exists
    /// (`AlreadyExists`, the temp file untouched): one
    /// `renameat2(RENAME_NOREPLACE)` where the file system has it, else a
    /// `link` whose temp name goes when the [`TempFile`] drops.
    fn name_new(&self, temp: &mut TempFile, target: &Path) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        if self.noreplace.load(Ordering::Relaxed) {
            use rustix::fs::{CWD, RenameFlags, renameat_with};
            let (from, flags) = (temp.name.as_str(), RenameFlags::NOREPLACE);
            match renameat_with(&self.tmp_dir, from, CWD, target, flags) {
                Ok(()) => {
                    temp.keep = true;
                    return Ok(());
                }
                // Not supported by this file system or kernel, or refused by a
                // seccomp filter that predates renameat2: link from now on (a
                // real permission problem fails the link too).
                Err(
                    rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS | rustix::io::Errno::PERM,
                ) => {
                    self.noreplace.store(false, Ordering::Relaxed);
                }
                Err(e) => return Err(e.into()),
            }
        }
        fs::hard_link(&temp.path, target)
    }

    /// Writes every item to its own temp file, marked as content, and (with
    /// `fsync` on) makes them all durable together ([`Inner::sync_data_of`]).
    fn write_batch(&self, items: &[Hashed]) -> io::Result<Vec<TempFile>> {
        let mut temps = Vec::with_capacity(items.len());
        for item in items {
            let mut t = self.new_temp()?;
            t.file.write_all(item.bytes())?;
            t.mark(CONTENT_MODE)?;
            temps.push(t);
        }
        if self.opts.fsync {
            let files: Vec<&File> = temps.iter().map(|t| &t.file).collect();
            self.sync_data_of(&files)?;
        }
        Ok(temps)
    }

    /// Links durable temp files (from [`Inner::write_batch`]) to their names
    /// in order, then syncs the root once if any name is new (also when a later
    /// item fails: the names already linked are made durable before the error is
    /// returned). The caller holds every name's lock.
    fn link_batch(&self, temps: &mut [TempFile], ids: &[ObjectId]) -> Result<(), StoreError> {
        let mut new_names = false;
        let mut result = Ok(());
        for (t, id) in temps.iter_mut().zip(ids) {
            match self.link_content(t, *id) {
                Ok(new) => new_names |= new,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        if new_names {
            self.sync_root()?;
        }
        result
    }

    /// The kind of the open file `f` named `id`: from its mark, else from the
    /// memory of unmarkable files, else by hashing it once (with `pread`, so the
    /// file offset is untouched) and marking it.
    fn classify(&self, id: ObjectId, f: &File, meta: &fs::Metadata) -> io::Result<Kind> {
        match meta.permissions().mode() & 0o777 {
            CONTENT_MODE => return Ok(Kind::Content),
            SLOT_MODE => return Ok(Kind::Slot),
            _ => {}
        }
        let key = (meta.ino(), meta.len());
        if let Some(&(ino, len, kind)) = self.unmarked_map().get(&id)
            && (ino, len) == key
        {
            return Ok(kind);
        }
        let mut hasher = Hasher::new();
        let mut buf = vec![0u8; READ_CHUNK];
        let mut pos = 0u64;
        loop {
            let n = f.read_at(&mut buf, pos)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            pos += n as u64;
        }
        let kind = if pos == meta.len() && hasher.finish() == id {
            Kind::Content
        } else {
            Kind::Slot
        };
        let mode = match kind {
            Kind::Content => CONTENT_MODE,
            Kind::Slot => SLOT_MODE,
        };
        if let Err(e) = mark(f, mode) {
            tracing::warn!(%id, error = %e, "cannot mark the kind in the file mode; remembering it");
            self.unmarked_map().insert(id, (key.0, key.1, kind));
        }
        Ok(kind)
    }

    /// Length, kind and version of the open file `f` named `id`.
    fn meta_of(&self, id: ObjectId, f: &File, meta: &fs::Metadata) -> io::Result<ObjectMeta> {
        let kind = self.classify(id, f, meta)?;
        let version = match kind {
            Kind::Content => String::new(),
            Kind::Slot => {
                let born = meta
                    .created()
                    .ok()
                    .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                    .map_or_else(
                        // No birth time here: the change time also moves on every
                        // write (and on touches, which only costs a cache hit).
                        || (meta.ctime() as u128) << 32 | meta.ctime_nsec() as u128,
                        |d| d.as_nanos(),
                    );
                format!("{:x}-{:x}-{:x}", meta.ino(), born, meta.len())
            }
        };
        Ok(ObjectMeta {
            len: meta.len(),
            kind,
            version,
        })
    }

    /// The kind of `<id>.tig`, `None` if absent.
    fn kind_at(&self, id: ObjectId) -> io::Result<Option<Kind>> {
        match self.open_object(id, false)? {
            Some((f, meta)) => Ok(Some(self.classify(id, &f, &meta)?)),
            None => Ok(None),
        }
    }

    /// Refuses with `Immutable` if `<id>.tig` is content; otherwise says whether
    /// it exists (as a slot).
    fn ensure_not_content(&self, id: ObjectId) -> Result<bool, StoreError> {
        match self.kind_at(id)? {
            Some(Kind::Content) => Err(StoreError::Immutable(id)),
            Some(Kind::Slot) => Ok(true),
            None => Ok(false),
        }
    }

    fn unmarked_map(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectId, (u64, u64, Kind)>> {
        // Every update is a single insert/remove: a poisoned map is still whole.
        self.unmarked.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn forget(&self, id: ObjectId) {
        self.unmarked_map().remove(&id);
    }

    fn write_slot(
        &self,
        id: ObjectId,
        inc: Incoming,
        mode: SlotWrite,
    ) -> Result<SlotOutcome, StoreError> {
        let target = self.path(id);
        // A body that hashes to the slot's own name makes it content.
        let own_mode = if inc.id == id {
            CONTENT_MODE
        } else {
            SLOT_MODE
        };
        match mode {
            SlotWrite::Replace => {
                self.ensure_not_content(id)?;
                let mut t = self.materialize(inc.temp, &inc.tail)?;
                self.mark_slot_temp(&mut t, own_mode)?;
                fs::rename(&t.path, &target)?;
                t.keep = true;
                self.forget(id);
                self.sync_root()?;
                Ok(SlotOutcome::Written)
            }
            SlotWrite::IfAbsent => {
                let mut t = self.materialize(inc.temp, &inc.tail)?;
                self.mark_slot_temp(&mut t, own_mode)?;
                match self.name_new(&mut t, &target) {
                    Ok(()) => {
                        self.forget(id);
                        self.sync_root()?;
                        Ok(SlotOutcome::Created)
                    }
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(SlotOutcome::Existed),
                    Err(e) => Err(e.into()),
                }
            }
            SlotWrite::Append => {
                let existed = self.ensure_not_content(id)?;
                let (mut out, created) = match OpenOptions::new().append(true).open(&target) {
                    Ok(f) => (f, false),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => (
                        OpenOptions::new()
                            .append(true)
                            .create(true)
                            .mode(SLOT_MODE)
                            .open(&target)?,
                        true,
                    ),
                    Err(e) => return Err(e.into()),
                };
                let old_len = out.metadata()?.len();
                let mut temp = inc.temp;
                let res = (|| -> io::Result<()> {
                    if let Some(t) = temp.as_mut() {
                        t.file.rewind()?;
                        io::copy(&mut t.file, &mut out)?;
                    }
                    out.write_all(&inc.tail)?;
                    if self.opts.fsync {
                        out.sync_data()?;
                    }
                    if created {
                        self.sync_root()?;
                    }
                    Ok(())
                })();
                if let Err(e) = res {
                    // Nothing partial: cut the slot back (or remove the one this
                    // call created).
                    let undo = if created {
                        remove_if_present(&target)
                    } else {
                        out.set_len(old_len)
                    };
                    if let Err(u) = undo {
                        tracing::error!(path = %target.display(), error = %u, "cannot undo a failed append");
                    }
                    self.forget(id);
                    return Err(e.into());
                }
                // A new file is exactly the body: content if it hashes to the name.
                let want = if existed { SLOT_MODE } else { own_mode };
                if out.metadata()?.permissions().mode() & 0o777 != want {
                    mark(&out, want)?;
                }
                self.forget(id);
                Ok(SlotOutcome::Written)
            }
        }
    }

    /// Every object file with its mtime.
    fn scan(&self) -> io::Result<Vec<(ObjectId, SystemTime)>> {
        let mut out = Vec::new();
        self.walk(|id, meta| {
            out.push((id, meta.modified()?));
            Ok(())
        })?;
        Ok(out)
    }

    /// How many object files there are and their total length, from the
    /// directory walk's own metadata (no file is opened).
    fn census(&self) -> io::Result<crate::Usage> {
        let mut usage = crate::Usage::default();
        self.walk(|_, meta| {
            usage.objects += 1;
            usage.bytes += meta.len();
            Ok(())
        })?;
        Ok(usage)
    }

    /// Calls `each` with every object file's name and metadata.
    fn walk(
        &self,
        mut each: impl FnMut(ObjectId, &fs::Metadata) -> io::Result<()>,
    ) -> io::Result<()> {
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
                each(id, &meta)?;
            }
        }
        Ok(())
    }

    /// Opens `<id>.tig` for reading, refreshing its timer if asked.
    fn open_object(
        &self,
        id: ObjectId,
        touch_it: bool,
    ) -> io::Result<Option<(File, fs::Metadata)>> {
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
            if self.touch_due(meta.modified().ok(), now)
                && let Err(e) = f.set_modified(now)
            {
                tracing::warn!(path = %path.display(), error = %e, "cannot refresh mtime");
            }
        }
        Ok(Some((f, meta)))
    }

    /// Opens and reads (part of) `<id>.tig`; `None` if absent.
    fn open_and_read(
        &self,
        id: ObjectId,
        touch: bool,
        range: Option<ByteRange>,
    ) -> Result<Option<Object>, StoreError> {
        let Some((f, meta)) = self.open_object(id, touch)? else {
            return Ok(None);
        };
        Ok(Some(self.read_object(id, f, &meta, range)?))
    }

    /// Reads (part of) an open object: small ones in one go, others streamed.
    fn read_object(
        &self,
        id: ObjectId,
        f: File,
        meta: &fs::Metadata,
        range: Option<ByteRange>,
    ) -> Result<Object, StoreError> {
        let meta = self.meta_of(id, &f, meta)?;
        let r = match range {
            None => 0..meta.len,
            Some(range) => range
                .resolve(meta.len)
                .ok_or(StoreError::RangeNotSatisfiable { len: meta.len })?,
        };
        let n = r.end - r.start;
        let body = if n <= SMALL_READ {
            // `n` is at most SMALL_READ, so it fits in usize.
            ObjectBody::Full(read_exactly(&f, r.start, n as usize)?.into())
        } else {
            ObjectBody::Stream(file_stream(f, r.start, n))
        };
        Ok(Object {
            len: n,
            meta,
            range: r,
            body,
        })
    }
}

/// Which lock stripe guards `id`.
fn stripe(id: ObjectId) -> usize {
    let b = id.as_bytes();
    (usize::from(b[0]) << 8 | usize::from(b[1])) % STRIPES
}

/// Groups of at least this many files are made durable with one `syncfs`.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
const SYNCFS_AT: usize = 8;

/// Whether one `syncfs` on the filesystem of `f` makes a group durable as surely
/// as an `fdatasync` of each file, with errors reported: Linux 5.17 or later
/// (5.8 made `syncfs` report writeback errors, 5.17 the filesystem's own sync
/// errors: a failed journal commit or cache flush) and a filesystem whose sync
/// is known to reach the disk (ext4, xfs, btrfs; tmpfs, which has no disk). Not,
/// say, FUSE or 9p, where `syncfs` may only write pages back.
#[cfg(target_os = "linux")]
// `f_type`'s width differs between architectures.
#[allow(clippy::unnecessary_cast)]
fn syncfs_is_trusted(f: &File) -> bool {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .and_then(|release| kernel_at_least(&release, (5, 17)))
        .unwrap_or(false);
    let fs_type = rustix::fs::fstatfs(f).map(|st| st.f_type as i64);
    kernel
        && fs_type.is_ok_and(|t| {
            [
                libc::EXT4_SUPER_MAGIC as i64,
                libc::XFS_SUPER_MAGIC as i64,
                libc::BTRFS_SUPER_MAGIC as i64,
                libc::TMPFS_MAGIC as i64,
            ]
            .contains(&t)
        })
}

#[cfg(not(target_os = "linux"))]
fn syncfs_is_trusted(_f: &File) -> bool {
    false
}

/// Whether a kernel release string (`6.18.44-fc`) is at least `(major, minor)`;
/// `None` if it does not start with two numbers.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn kernel_at_least(release: &str, want: (u32, u32)) -> Option<bool> {
    let mut parts = release.trim().split(|c: char| !c.is_ascii_digit());
    let major: u32 = parts.next()?.parse().ok()?;
    let minor: u32 = parts.next()?.parse().ok()?;
    Some((major, minor) >= want)
}

/// Starts writeback of `f`'s dirty pages without waiting for it
/// (`sync_file_range(2)` with `SYNC_FILE_RANGE_WRITE`), so that the `fdatasync`
/// calls that follow find many files' data already on its way and the journal
/// commits them together. Only a hint: a failure is logged and the `fdatasync`
/// that follows still decides durability.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn start_writeback(f: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: `f` is borrowed for the duration of the call, so the descriptor is
    // open; sync_file_range takes no pointers and changes no memory of ours.
    let r = unsafe { libc::sync_file_range(f.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
    if r != 0 {
        tracing::debug!(error = %io::Error::last_os_error(), "sync_file_range failed");
    }
}

/// Elsewhere only `fdatasync` is used.
#[cfg(not(target_os = "linux"))]
fn start_writeback(_f: &File) {}

/// Whether a file created at `probe` with `mode` gets exactly that mode (the
/// process's umask clears none of its bits); the probe is removed again.
fn born_with(probe: &Path, mode: u32) -> io::Result<bool> {
    let _ = fs::remove_file(probe);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(probe)?;
    // Writing through the descriptor must work whatever the mode, as it does on
    // local file systems; one that refuses gets temps born writable instead.
    if f.write_all(b"x").and_then(|()| f.sync_data()).is_err() {
        let _ = fs::remove_file(probe);
        return Ok(false);
    }
    let got = f.metadata()?.permissions().mode() & 0o777;
    fs::remove_file(probe)?;
    Ok(got == mode)
}

/// Opens the directory at `path`, for calls relative to it.
fn open_dir(path: &Path) -> io::Result<std::os::fd::OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    Ok(rustix::fs::open(path, flags, Mode::empty())?)
}

/// Sets a file's permission bits (`fchmod`): the kind mark.
fn mark(f: &File, mode: u32) -> io::Result<()> {
    f.set_permissions(fs::Permissions::from_mode(mode))
}

/// Sets a file's mtime; failures are logged, never fatal (a read must not fail
/// because the timer could not be refreshed).
fn touch(path: &Path, now: SystemTime) {
    // Read-only open: content files are mode 0444, and the owner may set times
    // through any descriptor.
    let res = File::open(path).and_then(|f| f.set_modified(now));
    if let Err(e) = res {
        tracing::warn!(path = %path.display(), error = %e, "cannot refresh mtime");
    }
}

/// Writes every piece, in order, with as few `writev` calls as the kernel allows.
fn write_all_pieces(f: &mut File, pieces: &[Bytes]) -> io::Result<()> {
    let mut slices: Vec<io::IoSlice<'_>> = pieces.iter().map(|p| io::IoSlice::new(p)).collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        match f.write_vectored(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => io::IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Creates (0700) `<root>/.tig-tmp`, removes the temp directories of tig
/// processes that are gone (their lock is free), and creates and locks this
/// process's own. Returns its path, its locked lock file and how many stale
/// directories were removed.
fn temp_dir_for_this_process(root: &Path) -> io::Result<(PathBuf, File, usize)> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let base = root.join(TEMP_DIR);
    match fs::DirBuilder::new().mode(0o700).create(&base) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    let meta = fs::symlink_metadata(&base)?;
    if !meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotADirectory,
            format!("{} is not a directory", base.display()),
        ));
    }
    if meta.permissions().mode() & 0o777 != 0o700 {
        fs::set_permissions(&base, fs::Permissions::from_mode(0o700))?;
    }
    // Creating a process directory and locking it is one step for everyone
    // else's clean-up scan.
    let scan = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(base.join(SCAN_LOCK))?;
    rustix::fs::flock(&scan, rustix::fs::FlockOperation::LockExclusive)?;
    let mut removed = 0;
    for entry in fs::read_dir(&base)? {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let dir = entry.path();
        let stale = match File::open(dir.join(LOCK_FILE)) {
            // Held by a live process: WouldBlock. Free: its owner is gone.
            Ok(f) => {
                rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_ok()
            }
            // Creation is serialized with this scan: no lock file means a process
            // died before it could make one.
            Err(e) if e.kind() == io::ErrorKind::NotFound => true,
            Err(e) => return Err(e),
        };
        if stale {
            match fs::remove_dir_all(&dir) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => removed += 1,
            }
        }
    }
    let nonce = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let own = base.join(format!("{}-{nonce:x}", std::process::id()));
    fs::DirBuilder::new().mode(0o700).create(&own)?;
    // Held open read-only for the process's lifetime (a descriptor open for
    // writing would, e.g., stop the filesystem from being remounted read-only).
    drop(
        OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(own.join(LOCK_FILE))?,
    );
    let lock = File::open(own.join(LOCK_FILE))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)?;
    drop(scan);
    Ok((own, lock, removed))
}

/// Reads the `n` bytes at offset `at` of `f` into a new buffer, in as few
/// `pread`s as the kernel allows (one for a page-cached file): `read_to_end`
/// through `Take` starts at 8 KiB and doubles, four calls for 64 KiB. An early
/// end of file is an error: the object shrank while being read.
fn read_exactly(f: &File, at: u64, n: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(n);
    while buf.len() < n {
        let pos = at + buf.len() as u64;
        match rustix::io::pread(f, rustix::buffer::spare_capacity(&mut buf), pos) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "object shrank while being read",
                ));
            }
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    // The allocation may hold more than `n`: bytes read past it (a slot appended
    // to meanwhile, or the rest of the file after a range) are not part of the
    // read, and `pread` moved no file offset.
    buf.truncate(n);
    Ok(buf)
}

/// Streams the `len` bytes of `f` from offset `start` in chunks of [`READ_CHUNK`]: each read on
/// the blocking pool straight into the buffer that is sent (one copy, where
/// `tokio::fs::File` makes two), and the next chunk read while this one is sent.
/// A file that ends early is an `UnexpectedEof` error (after the whole chunks
/// it still had).
fn file_stream(f: File, start: u64, len: u64) -> BodyStream {
    type Read = tokio::task::JoinHandle<io::Result<(File, Vec<u8>)>>;
    fn read(f: File, at: u64, left: u64) -> Read {
        let n = left.min(READ_CHUNK as u64);
        tokio::task::spawn_blocking(move || {
            // `n` is at most READ_CHUNK, so it fits in usize.
            let buf = read_exactly(&f, at, n as usize)?;
            Ok((f, buf))
        })
    }
    /// The file before its first read (nothing is read unless the body is
    /// polled), or the read of the next chunk, already under way.
    enum Next {
        Start(File),
        Reading(Read),
    }
    let first = (len > 0).then_some(Next::Start(f));
    Box::pin(futures_util::stream::unfold(
        (first, start, len),
        |(next, at, left)| async move {
            let reading = match next? {
                Next::Start(f) => read(f, at, left),
                Next::Reading(r) => r,
            };
            let chunk = match reading.await {
                Ok(r) => r,
                Err(e) => Err(io::Error::other(e)),
            };
            match chunk {
                Ok((f, buf)) => {
                    let (at, left) = (at + buf.len() as u64, left - buf.len() as u64);
                    let next = (left > 0).then(|| Next::Reading(read(f, at, left)));
                    Some((Ok(Bytes::from(buf)), (next, at, left)))
                }
                Err(e) => Some((Err(e), (None, at, left))),
            }
        },
    ))
}

impl Store for FsStore {
    async fn put_content(&self, body: BodyStream, limit: u64) -> Result<ObjectId, StoreError> {
        let inc = self.receive(body, limit).await?;
        let id = inc.id;
        let guard = self.lock(id).await;
        if inc.temp.is_none() {
            // Small: published together with whatever else is waiting.
            publish::publish_small(&self.inner, id, inc.tail, guard).await?;
            return Ok(id);
        }
        let inner = self.inner.clone();
        blocking(move || {
            let _guard = guard;
            let t = inner.materialize(inc.temp, &inc.tail)?;
            inner.publish_content(t, id)
        })
        .await?;
        Ok(id)
    }

    /// Two hops to the blocking pool per batch: one writes and syncs every
    /// member without holding any lock (so concurrent batches overlap there),
    /// the other takes every name's lock, links each and syncs the root once.
    async fn put_content_batch(&self, items: Vec<Hashed>, limit: u64) -> Result<(), StoreError> {
        if items.iter().any(|i| i.len() > limit) {
            return Err(StoreError::TooLarge { limit });
        }
        // A name twice in one batch is written once.
        let mut seen = std::collections::HashSet::with_capacity(items.len());
        let items: Vec<Hashed> = items.into_iter().filter(|i| seen.insert(i.id())).collect();
        if items.is_empty() {
            return Ok(());
        }
        let ids: Vec<ObjectId> = items.iter().map(Hashed::id).collect();
        let inner = self.inner.clone();
        let mut temps = blocking(move || Ok(inner.write_batch(&items)?)).await?;
        let guards = self.lock_all(ids.iter().copied()).await;
        let inner = self.inner.clone();
        blocking(move || {
            let _guards = guards;
            inner.link_batch(&mut temps, &ids)
        })
        .await
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
        blocking(move || inner.open_and_read(id, touch, None)).await
    }

    /// All of them in one blocking task: one thread-pool hop per call instead of
    /// one per object.
    async fn get_many(
        &self,
        ids: Vec<ObjectId>,
        touch: bool,
    ) -> Vec<Result<Option<Object>, StoreError>> {
        let inner = self.inner.clone();
        in_one_hop(
            ids,
            || Ok(()),
            move |(), id| inner.open_and_read(id, touch, None),
        )
        .await
    }

    async fn get_range(
        &self,
        id: ObjectId,
        touch: bool,
        range: ByteRange,
    ) -> Result<Option<Object>, StoreError> {
        let inner = self.inner.clone();
        blocking(move || inner.open_and_read(id, touch, Some(range))).await
    }

    async fn stat(&self, id: ObjectId, touch: bool) -> Result<Option<ObjectMeta>, StoreError> {
        let inner = self.inner.clone();
        blocking(move || {
            let Some((f, meta)) = inner.open_object(id, touch)? else {
                return Ok(None);
            };
            Ok(Some(inner.meta_of(id, &f, &meta)?))
        })
        .await
    }

    /// All of them in one blocking task, a marked content file with one `stat`
    /// and no `open` ([`stat_at`]).
    async fn stat_many(
        &self,
        ids: Vec<ObjectId>,
        touch: bool,
    ) -> Vec<Result<Option<ObjectMeta>, StoreError>> {
        let inner = self.inner.clone();
        let root = inner.root.clone();
        in_one_hop(
            ids,
            move || open_dir(&root),
            move |root, id| Ok(stat_at(&inner, root, id, touch)?),
        )
        .await
    }

    async fn take(&self, id: ObjectId) -> Result<Object, StoreError> {
        let guard = self.lock(id).await;
        let inner = self.inner.clone();
        blocking(move || {
            let _guard = guard;
            let Some((f, meta)) = inner.open_object(id, false)? else {
                return Err(StoreError::NotFound(id));
            };
            if inner.classify(id, &f, &meta)? == Kind::Content {
                return Err(StoreError::Immutable(id));
            }
            // Unlinked under the lock, read from the open descriptor: no other
            // taker, writer or reader can see this version after this point.
            remove_if_present(&inner.path(id))?;
            inner.forget(id);
            inner.read_object(id, f, &meta, None)
        })
        .await
    }

    async fn delete_slot(&self, id: ObjectId) -> Result<(), StoreError> {
        let guard = self.lock(id).await;
        let inner = self.inner.clone();
        blocking(move || {
            let _guard = guard;
            match inner.kind_at(id)? {
                None => Err(StoreError::NotFound(id)),
                Some(Kind::Content) => Err(StoreError::Immutable(id)),
                Some(Kind::Slot) => {
                    remove_if_present(&inner.path(id))?;
                    inner.forget(id);
                    Ok(())
                }
            }
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

    /// One directory walk: the lengths come from the entries' metadata, not from
    /// opening each object as [`Store::stat`] would.
    async fn usage(&self) -> Result<crate::Usage, StoreError> {
        let inner = self.inner.clone();
        blocking(move || Ok(inner.census()?)).await
    }

    /// The whole batch in one blocking task; per name one `stat` relative to the
    /// root (opened once per batch: no walk of the root's own path per name)
    /// and, for an object found whose timer is due, one `utimensat` — no
    /// `open`. The answer and the touch are what [`Store::stat`] would give (see
    /// [`present_content_at`]).
    async fn present_content_many(
        &self,
        ids: Vec<ObjectId>,
        touch: bool,
    ) -> Result<Vec<bool>, StoreError> {
        let inner = self.inner.clone();
        blocking(move || {
            let root = open_dir(&inner.root)?;
            ids.into_iter()
                .map(|id| Ok(present_content_at(&inner, &root, id, touch)?))
                .collect()
        })
        .await
    }
}

/// Whether `<id>.tig` holds content, as [`Store::stat`] decides it, without
/// opening a marked file: absent or not a regular file is `false`; the mode says
/// content ([`CONTENT_MODE`]) or slot ([`SLOT_MODE`]); any other mode is opened
/// and classified exactly as `stat` does (hashed once, then marked). Touches as
/// [`found_at`]. `root` is the open root directory.
// `st_mode`'s width differs between architectures.
#[allow(clippy::unnecessary_cast)]
fn present_content_at(
    inner: &Inner,
    root: &std::os::fd::OwnedFd,
    id: ObjectId,
    touch_it: bool,
) -> io::Result<bool> {
    let Some(st) = found_at(inner, root, id, touch_it)? else {
        return Ok(false);
    };
    match st.st_mode as u32 & 0o777 {
        CONTENT_MODE => Ok(true),
        SLOT_MODE => Ok(false),
        _ => match inner.open_object(id, false)? {
            Some((f, meta)) => Ok(inner.classify(id, &f, &meta)? == Kind::Content),
            None => Ok(false),
        },
    }
}

/// [`Store::stat`] of `<id>.tig`, without opening a file marked content: see
/// [`present_content_at`]; anything else (a slot, for its version) is opened and
/// asked exactly as `stat` does.
// `st_mode` and `st_size`'s widths differ between architectures.
#[allow(clippy::unnecessary_cast)]
fn stat_at(
    inner: &Inner,
    root: &std::os::fd::OwnedFd,
    id: ObjectId,
    touch_it: bool,
) -> io::Result<Option<ObjectMeta>> {
    let Some(st) = found_at(inner, root, id, touch_it)? else {
        return Ok(None);
    };
    if st.st_mode as u32 & 0o777 == CONTENT_MODE {
        return Ok(Some(ObjectMeta {
            len: st.st_size as u64,
            kind: Kind::Content,
            version: String::new(),
        }));
    }
    match inner.open_object(id, false)? {
        Some((f, meta)) => Ok(Some(inner.meta_of(id, &f, &meta)?)),
        None => Ok(None),
    }
}

/// The `stat` of `<id>.tig` relative to the open root directory `root` if it is
/// a regular file (`None` if absent or anything else). With `touch_it`, the
/// file's mtime is refreshed under the same rule as `open_object` (only when
/// older than `touch_granularity`; failures logged).
// `st_mode` and the time fields' widths differ between architectures.
#[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
fn found_at(
    inner: &Inner,
    root: &std::os::fd::OwnedFd,
    id: ObjectId,
    touch_it: bool,
) -> io::Result<Option<rustix::fs::Stat>> {
    use rustix::fs::{AtFlags, FileType, statat};
    let name = id.file_name();
    let st = match statat(root, name.as_str(), AtFlags::empty()) {
        Ok(st) => st,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Ok(None);
    }
    if touch_it {
        let now = SystemTime::now();
        let modified = system_time(st.st_mtime as i64, st.st_mtime_nsec as i64);
        if inner.touch_due(modified, now)
            && let Err(e) = set_mtime_at(root, &name, now)
        {
            tracing::warn!(name, error = %e, "cannot refresh mtime");
        }
    }
    Ok(Some(st))
}

/// The time `secs` seconds and `nanos` nanoseconds after the epoch, as a
/// `stat` gives it; `None` if out of range.
fn system_time(secs: i64, nanos: i64) -> Option<SystemTime> {
    let nanos = Duration::from_nanos(u64::try_from(nanos).ok().filter(|&n| n < 1_000_000_000)?);
    let base = if secs >= 0 {
        SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs.unsigned_abs()))?
    } else {
        SystemTime::UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))?
    };
    base.checked_add(nanos)
}

/// Sets the mtime of `name` in the directory `dir` (following links, as `open`
/// does) and leaves its atime, like `File::set_modified`, in one `utimensat`
/// call.
fn set_mtime_at(dir: &std::os::fd::OwnedFd, name: &str, now: SystemTime) -> io::Result<()> {
    use rustix::fs::{AtFlags, Timespec, Timestamps, UTIME_OMIT, utimensat};
    let since = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(io::Error::other)?;
    let times = Timestamps {
        last_access: Timespec {
            tv_sec: 0,
            tv_nsec: UTIME_OMIT,
        },
        last_modification: Timespec {
            tv_sec: i64::try_from(since.as_secs()).map_err(io::Error::other)?,
            tv_nsec: since.subsec_nanos().into(),
        },
    };
    utimensat(dir, name, &times, AtFlags::empty())?;
    Ok(())
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

    /// The same suite through the fallbacks: temp files marked by `fchmod`
    /// (as under a umask that clears read bits) and published by `link`
    /// (as on a file system without `RENAME_NOREPLACE`).
    mod without_shortcuts {
        use super::*;

        async fn store() -> (tempfile::TempDir, FsStore) {
            let (dir, mut s) = super::store().await;
            let inner = Arc::get_mut(&mut s.inner).expect("a fresh store is not shared");
            inner.temps_born_content = false;
            inner.noreplace = AtomicBool::new(false);
            (dir, s)
        }

        conformance::suite!(store);

        #[tokio::test]
        async fn content_and_slots_get_their_marks_and_no_temp_name_stays() {
            let (dir, s) = store().await;
            write_and_check_marks(dir.path(), &s).await;
        }
    }

    /// Every file name under the root except the temp directories' lock files:
    /// objects at the top, temp files as `.tig-tmp/<dir>/<name>`.
    fn leftovers(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for e in fs::read_dir(root).unwrap() {
            let name = e.unwrap().file_name().into_string().unwrap();
            if name != TEMP_DIR {
                out.push(name);
            }
        }
        for d in fs::read_dir(root.join(TEMP_DIR)).unwrap() {
            let d = d.unwrap();
            if !d.file_type().unwrap().is_dir() {
                continue;
            }
            for f in fs::read_dir(d.path()).unwrap() {
                let f = f.unwrap().file_name().into_string().unwrap();
                if f != LOCK_FILE {
                    out.push(format!("{TEMP_DIR}/{:?}/{f}", d.file_name()));
                }
            }
        }
        out.sort();
        out
    }

    #[tokio::test]
    async fn startup_removes_only_what_a_dead_tig_left() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let id = ObjectId::digest(b"x");
        fs::write(dir.path().join(id.file_name()), b"x").unwrap();
        // Not ours: another program's file that merely looks like an old temp file.
        fs::write(dir.path().join(".tmp-important"), b"keep me").unwrap();
        // A dead tig's directory: a lock file nobody holds, and one without any.
        let tmp = dir.path().join(TEMP_DIR);
        fs::create_dir_all(tmp.join("1-dead")).unwrap();
        fs::write(tmp.join("1-dead").join(LOCK_FILE), b"").unwrap();
        fs::write(tmp.join("1-dead").join("7"), b"half").unwrap();
        fs::create_dir_all(tmp.join("2-nolock")).unwrap();
        fs::write(tmp.join("2-nolock").join("3"), b"half").unwrap();
        let live = FsStore::open(dir.path(), FsOptions::default())
            .await
            .unwrap();
        assert!(!tmp.join("1-dead").exists());
        assert!(!tmp.join("2-nolock").exists());
        assert_eq!(
            fs::read(dir.path().join(".tmp-important")).unwrap(),
            b"keep me"
        );
        assert_eq!(
            fs::metadata(&tmp).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(live.list().await.unwrap(), vec![id]);
        // A live server's in-flight temp file survives a second server starting
        // on the same root.
        let t = live.inner.new_temp().unwrap();
        let second = FsStore::open(dir.path(), FsOptions::default())
            .await
            .unwrap();
        assert!(t.path.exists(), "a live server's temp file was removed");
        drop(t);
        // A clean shutdown removes the process's own directory.
        let own = second.inner.tmp.clone();
        assert!(own.exists());
        drop(second);
        assert!(!own.exists());
        assert!(live.inner.tmp.exists());
    }

    fn hashed(data: &[u8]) -> Hashed {
        Hashed::new(bytes::Bytes::copy_from_slice(data))
    }

    #[tokio::test]
    async fn a_batch_is_stored_whole_and_leaves_no_temp_files() {
        for fsync in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let opts = FsOptions {
                fsync,
                ..FsOptions::default()
            };
            let s = FsStore::open(dir.path(), opts).await.unwrap();
            let items: Vec<Hashed> = (0..300u32)
                .map(|i| hashed(format!("object {i}").repeat(i as usize % 7).as_bytes()))
                .collect();
            // One already there (a dedupe), one twice in the batch.
            s.put_content(crate::body_from_bytes(items[5].bytes().clone()), 1 << 20)
                .await
                .unwrap();
            let mut batch = items.clone();
            batch.push(items[9].clone());
            s.put_content_batch(batch, 1 << 20).await.unwrap();
            let mut want: Vec<String> = items.iter().map(|i| i.id().file_name()).collect();
            want.sort();
            want.dedup();
            assert_eq!(leftovers(dir.path()), want);
            for i in &items {
                let got = s.get(i.id(), false).await.unwrap().unwrap();
                assert_eq!(got.meta.kind, Kind::Content);
                let ObjectBody::Full(b) = got.body else {
                    panic!("small objects are read whole")
                };
                assert_eq!(&b, i.bytes());
                assert_eq!(mode_of(&dir.path().join(i.id().file_name())), CONTENT_MODE);
            }
        }
    }

    /// `data` (not stored), whose name holds a slot of other bytes.
    async fn slot_over(s: &FsStore, data: &[u8]) -> Hashed {
        let taken = hashed(data);
        s.put_slot(
            taken.id(),
            crate::body_from_bytes("other bytes"),
            100,
            SlotWrite::Replace,
        )
        .await
        .unwrap();
        taken
    }

    #[tokio::test]
    async fn a_batch_member_named_by_a_slot_is_a_conflict() {
        let (dir, s) = store().await;
        let taken = slot_over(&s, b"bytes whose name holds a slot").await;
        let before = hashed(b"before");
        let err = s
            .put_content_batch(vec![before.clone(), taken.clone()], 100)
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::SlotConflict(id) if id == taken.id()),
            "{err}"
        );
        // The slot is unchanged; what was linked before it is whole; no temp files.
        let slot = s.get(taken.id(), false).await.unwrap().unwrap();
        assert_eq!(slot.meta.kind, Kind::Slot);
        let mut want = vec![before.id().file_name(), taken.id().file_name()];
        want.sort();
        assert_eq!(leftovers(dir.path()), want);
        // Over the limit: nothing at all.
        let big = hashed(&[1u8; 101]);
        let err = s.put_content_batch(vec![hashed(b"small"), big], 100).await;
        assert!(matches!(err, Err(StoreError::TooLarge { limit: 100 })));
        assert_eq!(leftovers(dir.path()), want);
    }

    /// Small uploads arriving together are published as groups (fs/publish.rs):
    /// each caller still gets its own answer, new, duplicate or conflicting, and
    /// every stored object is whole, marked as content, with no temp file left.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_small_uploads_each_get_their_own_answer() {
        let (dir, s) = store().await;
        let taken = slot_over(&s, b"small bytes whose name holds a slot").await;
        // 150 distinct bodies, each sent twice, and the conflicting one 10 times.
        let mut bodies: Vec<Vec<u8>> = (0..300u32)
            .map(|i| format!("body {} of the group test", i % 150).into_bytes())
            .collect();
        bodies.extend(std::iter::repeat_n(taken.bytes().to_vec(), 10));
        let puts = bodies.iter().map(|b| {
            let s = s.clone();
            let b = b.clone();
            tokio::spawn(async move { s.put_content(crate::body_from_bytes(b), 100).await })
        });
        let results = futures_util::future::join_all(puts).await;
        let mut want = vec![taken.id().file_name()];
        for (body, r) in bodies.iter().zip(results) {
            let r = r.unwrap();
            if body.as_slice() == taken.bytes() {
                assert!(
                    matches!(r, Err(StoreError::SlotConflict(id)) if id == taken.id()),
                    "{r:?}"
                );
                continue;
            }
            let id = r.unwrap();
            assert_eq!(id, ObjectId::digest(body));
            let path = dir.path().join(id.file_name());
            assert_eq!(fs::read(&path).unwrap(), *body);
            assert_eq!(mode_of(&path), CONTENT_MODE);
            want.push(id.file_name());
        }
        want.sort();
        want.dedup();
        assert_eq!(want.len(), 151);
        assert_eq!(leftovers(dir.path()), want);
        let slot = s.get(taken.id(), false).await.unwrap().unwrap();
        assert_eq!(slot.meta.kind, Kind::Slot, "the slot is untouched");
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
        assert_eq!(leftovers(dir.path()), vec![id.file_name()]);
        assert_eq!(fs::read(dir.path().join(id.file_name())).unwrap(), data);
        assert_eq!(s.inner.spilling.load(Ordering::Relaxed), 0);
    }

    /// A large object is streamed whole, in order; one cut short while it is read
    /// ends in an error after a prefix of its bytes, never in a short success.
    #[tokio::test]
    async fn large_objects_stream_whole_and_a_cut_one_ends_in_an_error() {
        let (dir, s) = store().await;
        let data: Vec<u8> = (0..3 * READ_CHUNK + 5).map(|i| (i % 253) as u8).collect();
        let id = s
            .put_content(
                Box::pin(futures_util::stream::iter([Ok(Bytes::from(data.clone()))])),
                u64::MAX,
            )
            .await
            .unwrap();
        let collect = |body: ObjectBody| async move {
            let ObjectBody::Stream(mut st) = body else {
                panic!("a large object is streamed")
            };
            let mut got = Vec::new();
            while let Some(piece) = st.next().await {
                match piece {
                    Ok(b) => got.extend_from_slice(&b),
                    Err(e) => return (got, Some(e)),
                }
            }
            (got, None)
        };
        let obj = s.get(id, false).await.unwrap().unwrap();
        let (got, err) = collect(obj.body).await;
        assert!(err.is_none(), "{err:?}");
        assert!(got == data, "the stream differs from the object");

        let obj = s.get(id, false).await.unwrap().unwrap();
        let path = dir.path().join(id.file_name());
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len((READ_CHUNK + READ_CHUNK / 2) as u64)
            .unwrap();
        let (got, err) = collect(obj.body).await;
        assert_eq!(err.map(|e| e.kind()), Some(io::ErrorKind::UnexpectedEof));
        assert!(got.len() <= READ_CHUNK + READ_CHUNK / 2 && data.starts_with(&got));
    }

    #[test]
    fn kernel_releases_compare_by_major_then_minor() {
        assert_eq!(kernel_at_least("6.18.44-fc-v1045\n", (5, 8)), Some(true));
        assert_eq!(kernel_at_least("5.8.0", (5, 8)), Some(true));
        assert_eq!(kernel_at_least("5.7.19-arch1", (5, 8)), Some(false));
        assert_eq!(kernel_at_least("4.19.0", (5, 8)), Some(false));
        assert_eq!(kernel_at_least("5", (5, 8)), None);
        assert_eq!(kernel_at_least("", (5, 8)), None);
    }

    /// Each spilling upload is counted while its writer lives, and the count
    /// sizes the batches.
    #[tokio::test]
    async fn writers_are_counted_while_they_live_and_size_the_batches() {
        let (_dir, s) = store().await;
        let count = || s.inner.spilling.load(Ordering::Relaxed);
        let first = TempWriter::spawn(s.inner.clone());
        assert_eq!(count(), 1);
        assert_eq!(first.batch_size(), FLUSH_AT_MOST);
        let more: Vec<TempWriter> = (0..15)
            .map(|_| TempWriter::spawn(s.inner.clone()))
            .collect();
        assert_eq!(count(), 16);
        assert_eq!(first.batch_size(), FLUSH_SHARED / 16);
        for w in more {
            w.finish().await.unwrap();
        }
        assert_eq!(count(), 1);
        drop(first);
        assert_eq!(count(), 0);
    }

    /// A lone upload writes in large batches; many at once share the memory.
    #[test]
    fn batches_shrink_as_uploads_share_the_writers() {
        assert_eq!(batch_size(0), FLUSH_AT_MOST);
        assert_eq!(batch_size(1), FLUSH_AT_MOST);
        assert_eq!(batch_size(4), FLUSH_AT_MOST);
        assert_eq!(batch_size(8), FLUSH_SHARED / 8);
        assert_eq!(batch_size(64), FLUSH_AT);
        assert_eq!(batch_size(usize::MAX), FLUSH_AT);
    }

    /// Pieces of every size, tiny (copied together) and large (queued as they
    /// are), interleaved across several write batches: stored in order, whole.
    #[tokio::test]
    async fn pieces_of_mixed_sizes_are_stored_in_order() {
        let (dir, s) = store().await;
        let data: Vec<u8> = (0..1_500_000u32).map(|i| (i % 253) as u8).collect();
        let sizes = [1usize, 3, 20_000, 5, 70_000, 16_383, 16_384, 2, 200_000, 9];
        let mut chunks: Vec<io::Result<bytes::Bytes>> = Vec::new();
        let mut at = 0;
        for n in sizes.iter().cycle() {
            if at == data.len() {
                break;
            }
            let end = (at + n).min(data.len());
            chunks.push(Ok(bytes::Bytes::copy_from_slice(&data[at..end])));
            at = end;
        }
        let id = s
            .put_content(Box::pin(futures_util::stream::iter(chunks)), u64::MAX)
            .await
            .unwrap();
        assert_eq!(id, ObjectId::digest(&data));
        assert_eq!(fs::read(dir.path().join(id.file_name())).unwrap(), data);
        assert_eq!(leftovers(dir.path()), vec![id.file_name()]);
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
        assert!(leftovers(dir.path()).is_empty());
        assert_eq!(s.inner.spilling.load(Ordering::Relaxed), 0);
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
    async fn reads_refresh_the_timer_unless_asked_not_to_or_uses_are_not_recorded() {
        for record_use in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let opts = FsOptions {
                fsync: false,
                touch_granularity: Duration::ZERO,
                record_use,
            };
            let s = FsStore::open(dir.path(), opts).await.unwrap();
            let id = s
                .put_content(crate::body_from_bytes("a"), 10)
                .await
                .unwrap();
            let path = dir.path().join(id.file_name());
            let past = SystemTime::now() - Duration::from_secs(100);
            let set_past = || {
                File::options()
                    .write(true)
                    .open(&path)
                    .unwrap()
                    .set_modified(past)
                    .unwrap()
            };
            let mtime = || fs::metadata(&path).unwrap().modified().unwrap();
            set_past();
            s.get(id, false).await.unwrap().unwrap();
            assert_eq!(mtime(), past);
            s.present_content_many(vec![id], false).await.unwrap();
            assert_eq!(mtime(), past);
            s.get(id, true).await.unwrap().unwrap();
            assert_eq!(mtime() > past, record_use);
            set_past();
            assert_eq!(
                s.present_content_many(vec![id], true).await.unwrap(),
                [true]
            );
            assert_eq!(mtime() > past, record_use);
        }
    }

    #[test]
    fn stat_times_become_system_times() {
        let epoch = SystemTime::UNIX_EPOCH;
        assert_eq!(
            system_time(1, 5),
            Some(epoch + Duration::from_secs(1) + Duration::from_nanos(5))
        );
        assert_eq!(
            system_time(-2, 500_000_000),
            Some(epoch - Duration::from_millis(1500))
        );
        assert_eq!(system_time(0, 1_000_000_000), None);
        assert_eq!(system_time(0, -1), None);
    }

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// Writes small and large (spilled) content, a replaced slot and a large
    /// set-if-not slot into the store at `root`; checks every mark and that no
    /// temp name stays. Returns a content id and the replaced slot's id.
    async fn write_and_check_marks(root: &Path, s: &FsStore) -> (ObjectId, ObjectId) {
        let small = s
            .put_content(crate::body_from_bytes("small"), 1 << 20)
            .await
            .unwrap();
        let large = s
            .put_content(crate::body_from_bytes(vec![7u8; 1 << 20]), 2 << 20)
            .await
            .unwrap();
        let slot = ObjectId::digest(b"slot name");
        s.put_slot(slot, crate::body_from_bytes("v"), 10, SlotWrite::Replace)
            .await
            .unwrap();
        let other = ObjectId::digest(b"other slot");
        let big = vec![5u8; 1 << 20];
        s.put_slot(
            other,
            crate::body_from_bytes(big),
            2 << 20,
            SlotWrite::IfAbsent,
        )
        .await
        .unwrap();
        for id in [small, large] {
            assert_eq!(mode_of(&root.join(id.file_name())), CONTENT_MODE);
        }
        for id in [slot, other] {
            assert_eq!(mode_of(&root.join(id.file_name())), SLOT_MODE);
        }
        let temps = leftovers(root);
        assert!(!temps.iter().any(|n| n.starts_with(TEMP_DIR)), "{temps:?}");
        (small, slot)
    }

    #[tokio::test]
    async fn kinds_are_marked_in_the_mode_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStore::open(dir.path(), FsOptions::default())
            .await
            .unwrap();
        let (c, slot) = write_and_check_marks(dir.path(), &s).await;
        let version = s.stat(slot, false).await.unwrap().unwrap().version;
        drop(s);
        let s = FsStore::open(dir.path(), FsOptions::default())
            .await
            .unwrap();
        assert_eq!(s.kind(c).await.unwrap(), Some(Kind::Content));
        let m = s.stat(slot, false).await.unwrap().unwrap();
        assert_eq!((m.kind, m.version), (Kind::Slot, version));
        // Content stays refreshable although read-only.
        let again = s
            .put_content(crate::body_from_bytes("small"), 10)
            .await
            .unwrap();
        assert_eq!(again, c);
    }

    #[tokio::test]
    async fn files_of_other_modes_are_hashed_once_and_marked() {
        let dir = tempfile::tempdir().unwrap();
        // As an older tig (0644) or `tig backup` (0600, tempfile) leaves them.
        let content = ObjectId::digest(b"old content");
        let backup = ObjectId::digest(b"from a backup");
        let slot = ObjectId::digest(b"an old slot's name");
        for (id, bytes, mode) in [
            (content, &b"old content"[..], 0o644),
            (backup, &b"from a backup"[..], 0o600),
            (slot, &b"slot bytes"[..], 0o644),
        ] {
            let path = dir.path().join(id.file_name());
            fs::write(&path, bytes).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        }
        let s = FsStore::open(dir.path(), FsOptions::default())
            .await
            .unwrap();
        assert_eq!(s.kind(content).await.unwrap(), Some(Kind::Content));
        assert_eq!(s.kind(backup).await.unwrap(), Some(Kind::Content));
        assert_eq!(s.kind(slot).await.unwrap(), Some(Kind::Slot));
        assert_eq!(mode_of(&dir.path().join(content.file_name())), CONTENT_MODE);
        assert_eq!(mode_of(&dir.path().join(backup.file_name())), CONTENT_MODE);
        assert_eq!(mode_of(&dir.path().join(slot.file_name())), SLOT_MODE);
        // And they behave as their kind.
        assert!(matches!(
            s.delete_slot(backup).await,
            Err(StoreError::Immutable(_))
        ));
        s.delete_slot(slot).await.unwrap();
    }
}
