//! `snapshot DIR` and `restore ROOT DIR`: a directory as a content-addressed tree.
//!
//! Every file is cut into content-defined chunks; a file of one chunk is stored as
//! that blob (its id is the file's sha256), a longer one as a burst list of chunks.
//! Each directory is a tree object (see [`crate::tree`]); the root tree's id names the
//! whole version. Objects the server already has are not sent again, so a second
//! snapshot after a small edit uploads only the changed chunks and the trees above
//! them. Restore fetches and verifies every object and refuses names that would
//! escape the target directory.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::SystemTime;

use bytes::Bytes;
use rustc_hash::FxHashSet as HashSet;
use tig_core::ObjectId;

use crate::cache::{Cache, FileStamp};
use crate::chunk::{ChunkParams, chunks, encode_burst};
use crate::error::{Error, Result};
use crate::fetch::{LIST_MAX, set_mode};
use crate::http::Client;
use crate::progress;
use crate::tree::{Entry, Kind, Mode, decode_tree, encode_tree};
use crate::upload::{Answer, Batcher, Counts, Job, Stats};

/// Which files a snapshot leaves out.
#[derive(Debug, Clone, Copy, Default)]
pub struct SnapshotOptions {
    /// Also take files that `.gitignore`, `.ignore` or `.git/info/exclude` exclude.
    pub no_ignore: bool,
    /// Also take `.git` directories.
    pub include_git: bool,
    /// Neither read nor write the snapshot cache: hash every file.
    pub no_cache: bool,
}

/// What a snapshot stored.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct SnapshotResult {
    /// The root tree: names the whole version.
    #[serde(serialize_with = "crate::upload::ser_path")]
    pub root: ObjectId,
    /// Regular files taken.
    pub files: u64,
    /// Directories (trees), the root included.
    pub dirs: u64,
    /// Symbolic links taken.
    pub symlinks: u64,
    /// Bytes in the files.
    pub bytes: u64,
    /// Files read and hashed.
    pub hashed: u64,
    /// Files not read: unchanged since the last snapshot, per the cache.
    pub cached: u64,
    /// Objects sent and skipped.
    pub counts: Counts,
}

/// What a restore wrote.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct RestoreResult {
    /// Regular files written.
    pub files: u64,
    /// Directories created (the root excluded).
    pub dirs: u64,
    /// Symbolic links created.
    pub symlinks: u64,
    /// Bytes in the files.
    pub bytes: u64,
}

enum Node {
    File {
        /// The path below the snapshot's directory (the cache's key).
        rel: Vec<u8>,
        stamp: FileStamp,
        exec: bool,
    },
    Link {
        target: Vec<u8>,
        rel: Vec<u8>,
    },
    Dir(BTreeMap<Vec<u8>, Node>),
}

impl Client {
    /// Stores `dir` as a tree and returns its root.
    ///
    /// Files whose stamp matches the cache are not read; every object id, cached or
    /// not, is asked of the server in bulk (`POST /?missing=1`) and only what it
    /// lacks is sent. The cache is rewritten only after the root is stored.
    pub fn snapshot(&self, dir: &Path, opts: SnapshotOptions) -> Result<SnapshotResult> {
        let started = SystemTime::now();
        let meta = std::fs::metadata(dir)
            .map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
        if !meta.is_dir() {
            return Err(Error::Usage(format!(
                "{} is not a directory",
                dir.display()
            )));
        }
        let params = ChunkParams::for_limit(self.max_size()?)?;
        // While the tree is walked, the cache is read and the server asked which of
        // the objects it names (those of the last snapshot) it lacks.
        let (scanned, (mut cache, mut early)) = std::thread::scope(|s| {
            let cache = s.spawn(|| {
                let mut cache = match Cache::default_dir() {
                    Some(d) if !opts.no_cache => Cache::load(&d, &self.cfg.server, dir, params.max),
                    _ => Cache::disabled(),
                };
                let early = self.ask_early(cache.take_ids());
                (cache, early)
            });
            let scanned = scan(dir, opts);
            // Loading never fails (anything unreadable is an empty cache); a
            // panic in it is taken as no cache.
            let loaded = cache.join().unwrap_or_else(|_| (Cache::disabled(), None));
            (scanned, loaded)
        });
        let (root, total) = scanned?;
        let stats = Stats::default();

        // Phase 1: every chunk of every file, and every link target.
        let nodes: Vec<&Node> = leaves_of(&root);
        let mut leaves: Vec<Vec<ObjectId>> = vec![Vec::new(); nodes.len()];
        let mut sizes: Vec<u64> = vec![0; nodes.len()];
        let (mut hashed, mut cached) = (0u64, 0u64);
        let pb = progress::bar(self.cfg.progress, Some(total), "snapshot");
        let mut bulk = true;
        let mut planned: Option<(Plan, HashSet<ObjectId>)> = None;
        self.upload_pool(&stats, &pb, |submit| {
            let mut batch = Batcher::new(self, &stats);
            if let Some(answer) = early.take() {
                batch.answered(answer);
            }
            // Leaves taken from the cache since the last flush.
            let mut pending: Vec<usize> = Vec::new();
            let flush = |batch: &mut Batcher<'_>,
                         pending: &mut Vec<usize>,
                         leaves: &mut [Vec<ObjectId>],
                         sizes: &mut [u64],
                         submit: &mut dyn FnMut(Job) -> Result<usize>|
             -> Result<(HashSet<ObjectId>, bool)> {
                let lacking = batch.flush(submit)?;
                let mut changed_any = false;
                // Lacking ids sent again from a re-read file.
                let mut resent: HashSet<ObjectId> = HashSet::default();
                for i in pending.drain(..) {
                    if !leaves[i].iter().any(|id| lacking.contains(id)) {
                        stats.skip_many(leaves[i].len() as u64, sizes[i]);
                        continue;
                    }
                    // The server lost some of a cached file's chunks: read it again.
                    let Node::File { rel, .. } = nodes[i] else {
                        continue;
                    };
                    let path = dir.join(os_name(rel));
                    let (ids, data) = read_chunks(&path, params)?;
                    let source = Arc::new(path);
                    let changed = ids != leaves[i];
                    changed_any |= changed;
                    sizes[i] = data.iter().map(|d| d.len() as u64).sum();
                    for (id, data) in ids.iter().zip(data) {
                        if changed || lacking.contains(id) {
                            resent.insert(*id);
                            submit(Job {
                                data,
                                id: Some(*id),
                                source: Arc::clone(&source),
                                ask: changed || !batch.bulk(),
                            })?;
                        }
                    }
                    leaves[i] = ids;
                }
                // A lacking id no re-read file still names (its file changed behind
                // a stamp that lied) was decided but not sent: a cached file of a
                // later batch naming it must be read again, so undecide it.
                for id in lacking.iter().filter(|id| !resent.contains(id)) {
                    batch.reopen(id);
                }
                Ok((lacking, changed_any))
            };
            for (i, node) in nodes.iter().enumerate() {
                match node {
                    Node::File { rel, stamp, .. } => {
                        if let Some(ids) = cache.get(rel, stamp) {
                            leaves[i] = ids.to_vec();
                            sizes[i] = stamp.size;
                            ids.iter().for_each(|id| batch.add_known(*id));
                            pending.push(i);
                            cached += 1;
                            pb.inc(stamp.size);
                        } else {
                            hashed += 1;
                            let path = dir.join(os_name(rel));
                            let chunks = file_chunks(&path, stamp.size, params)?;
                            let source = Arc::new(path);
                            for chunk in chunks {
                                let data = chunk?;
                                let id = ObjectId::digest(&data);
                                sizes[i] += data.len() as u64;
                                pb.inc(data.len() as u64);
                                leaves[i].push(id);
                                batch.add(id, data, &source);
                                if batch.full() {
                                    flush(
                                        &mut batch,
                                        &mut pending,
                                        &mut leaves,
                                        &mut sizes,
                                        submit,
                                    )?;
                                }
                            }
                            if leaves[i].is_empty() {
                                let id = ObjectId::digest(b"");
                                leaves[i].push(id);
                                batch.add(id, Bytes::new(), &source);
                            }
                        }
                    }
                    Node::Link { target, rel } => {
                        let data = Bytes::from(target.clone());
                        let id = ObjectId::digest(&data);
                        leaves[i].push(id);
                        batch.add(id, data, &Arc::new(dir.join(os_name(rel))));
                    }
                    Node::Dir(_) => {}
                }
                if batch.full() {
                    flush(&mut batch, &mut pending, &mut leaves, &mut sizes, submit)?;
                }
            }
            // Every leaf's ids are known now (read, or from the cache): plan the lists
            // and trees, and ask about them in this last batch too (one request
            // fewer). Should a cached file turn out changed, they are planned again.
            let p = self.plan(&root, &nodes, &leaves, &sizes, dir)?;
            p.names().for_each(|id| batch.add_known(id));
            let (lacking, changed) =
                flush(&mut batch, &mut pending, &mut leaves, &mut sizes, submit)?;
            bulk = batch.bulk();
            if !changed {
                planned = Some((p, lacking));
            }
            Ok(())
        })?;
        pb.finish_and_clear();

        // Phase 2: burst lists of multi-chunk files, then trees bottom-up; the root
        // last, after everything it names.
        let (plan, missing) = match planned {
            Some((p, lacking)) => (p, bulk.then_some(lacking)),
            None => {
                let p = self.plan(&root, &nodes, &leaves, &sizes, dir)?;
                let names: Vec<ObjectId> = p.names().collect();
                let m = if bulk { self.missing(&names)? } else { None };
                (p, m)
            }
        };
        cache.put_trees(plan.names().collect());
        let Plan {
            later,
            root_job,
            root_id,
            counts,
            bytes,
        } = plan;
        let lacks = |id: &ObjectId| missing.as_ref().is_none_or(|m| m.contains(id));
        self.upload_pool(&stats, &progress::bar(false, None, ""), |submit| {
            for mut job in later {
                let id = job.id.unwrap_or(root_id);
                if lacks(&id) {
                    job.ask = missing.is_none();
                    submit(job)?;
                } else {
                    stats.skip(job.data.len() as u64);
                }
            }
            Ok(())
        })?;
        if lacks(&root_id) {
            let mut job = root_job;
            job.ask = missing.is_none();
            self.upload_one(job, &stats)?;
        } else {
            stats.skip(root_job.data.len() as u64);
        }

        // Everything is stored: remember what each file was cut into.
        for (node, ids) in nodes.iter().zip(leaves) {
            if let Node::File { rel, stamp, .. } = node {
                cache.put(rel, *stamp, ids);
            }
        }
        cache.save(started);
        // Freeing the walked tree and the cache (tens of thousands of small
        // allocations) takes tens of milliseconds: done on a thread of its own, so
        // that a caller about to exit need not wait for it.
        let done = SnapshotResult {
            root: root_id,
            files: counts.0,
            dirs: counts.1 + 1,
            symlinks: counts.2,
            bytes,
            hashed,
            cached,
            counts: stats.counts(),
        };
        drop(nodes);
        // (Should no thread be had, the closure and all it holds drop right here.)
        let _ = std::thread::Builder::new().spawn(move || drop((root, cache, stats)));
        Ok(done)
    }

    /// Asks the server which of `ids` (those the cache names) it lacks, so that a
    /// snapshot of an unchanged tree need not ask after its walk. `None` when the
    /// cache is empty, or the server does not answer or cannot be asked (the
    /// snapshot then asks in its batches, where an error is reported).
    fn ask_early(&self, ids: HashSet<ObjectId>) -> Option<Answer> {
        if ids.is_empty() {
            return None;
        }
        let list: Vec<ObjectId> = ids.iter().copied().collect();
        match self.missing(&list) {
            Ok(lacking) => lacking.map(|lacking| Answer {
                asked: ids,
                lacking,
            }),
            Err(e) => {
                tracing::debug!(error = %e, "asking early which cached objects the server lacks");
                None
            }
        }
    }

    /// The burst lists and trees naming `leaves` (the chunk ids of each file or
    /// link of `root`, in walk order), ready to upload.
    fn plan(
        &self,
        root: &Node,
        nodes: &[&Node],
        leaves: &[Vec<ObjectId>],
        sizes: &[u64],
        dir: &Path,
    ) -> Result<Plan> {
        let mut later: Vec<Job> = Vec::new();
        let mut leaf_ids: Vec<(ObjectId, Kind, u64)> = Vec::with_capacity(nodes.len());
        for ((ids, node), size) in leaves.iter().zip(nodes).zip(sizes) {
            if ids.len() == 1 {
                leaf_ids.push((ids[0], Kind::Blob, *size));
                continue;
            }
            let list = encode_burst(ids);
            if list.len() as u64 > self.max_size()? {
                return Err(Error::Usage(
                    "a file's burst list is over --max-size; raise --max-size".into(),
                ));
            }
            let list = Bytes::from(list);
            let id = ObjectId::digest(&list);
            leaf_ids.push((id, Kind::Burst, *size));
            let path = match node {
                Node::File { rel, .. } | Node::Link { rel, .. } => dir.join(os_name(rel)),
                Node::Dir(_) => dir.to_path_buf(),
            };
            later.push(known_job(list, id, &Arc::new(path)));
        }
        let mut trees: Vec<Bytes> = Vec::new();
        let mut next_leaf = 0usize;
        let mut counts = (0u64, 0u64, 0u64);
        let (root_bytes, bytes) =
            build_tree(root, &leaf_ids, &mut next_leaf, &mut trees, &mut counts)?;
        let top = Arc::new(dir.to_path_buf());
        for t in trees {
            let id = ObjectId::digest(&t);
            later.push(known_job(t, id, &top));
        }
        let root_id = ObjectId::digest(&root_bytes);
        Ok(Plan {
            later,
            root_job: known_job(root_bytes, root_id, &top),
            root_id,
            counts,
            bytes,
        })
    }

    /// Rebuilds the tree `root` into `dir`, which must be absent or empty.
    pub fn restore(&self, root: &ObjectId, dir: &Path) -> Result<RestoreResult> {
        match std::fs::read_dir(dir) {
            Ok(mut it) => {
                if it.next().is_some() {
                    return Err(Error::Usage(format!(
                        "{} is not empty; restore needs an empty or new directory",
                        dir.display()
                    )));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
            }
            Err(e) => return Err(Error::io(format!("reading {}", dir.display()), e)),
        }
        // The root counts as a directory, as `snapshot` counts it.
        let mut res = RestoreResult {
            dirs: 1,
            ..Default::default()
        };
        let mut blobs: Vec<(PathBuf, Entry)> = Vec::new();
        let mut bursts: Vec<(PathBuf, Entry)> = Vec::new();
        let mut links: Vec<(PathBuf, Entry)> = Vec::new();
        // Trees level by level, each level's trees fetched in parallel (one round
        // trip per tree, but not one after another); directories are created in
        // the order their parents name them.
        let mut level = vec![(*root, dir.to_path_buf())];
        while !level.is_empty() {
            let trees = self.parallel(&level, |(tree, _)| {
                decode_tree(&self.fetch_bytes(tree, LIST_MAX)?)
            })?;
            let mut next = Vec::new();
            for ((_, at), entries) in level.iter().zip(trees) {
                for e in entries {
                    let path = at.join(os_name(&e.name));
                    match (e.mode, e.kind) {
                        (Mode::Dir, _) => {
                            std::fs::create_dir(&path).map_err(|err| {
                                Error::io(format!("creating {}", path.display()), err)
                            })?;
                            res.dirs += 1;
                            next.push((e.id, path));
                        }
                        (Mode::Symlink, _) => links.push((path, e)),
                        (_, Kind::Burst) => bursts.push((path, e)),
                        _ => blobs.push((path, e)),
                    }
                }
            }
            level = next;
        }
        let total: u64 = blobs.iter().chain(&bursts).map(|(_, e)| e.size).sum();
        let pb = progress::bar(self.cfg.progress, Some(total), "restore");
        // Small files in batches, one `POST /?concat=1` each, and the other blobs
        // one by one, in parallel; every file fetched and verified in memory, then
        // written under its own name (nothing unverified is ever written).
        let written = AtomicU64::new(0);
        let (small, other): (Vec<_>, Vec<_>) = blobs
            .into_iter()
            .partition(|(_, e)| e.size <= RESTORE_BATCH_FILE_MAX);
        let mut batches: Vec<&[(PathBuf, Entry)]> = Vec::new();
        let mut rest = &small[..];
        while !rest.is_empty() {
            let mut bytes = 0u64;
            let n = rest
                .iter()
                .take(RESTORE_BATCH_FILES)
                .take_while(|(_, e)| {
                    bytes += e.size;
                    bytes <= RESTORE_BATCH_BYTES
                })
                .count()
                .max(1);
            let (batch, tail) = rest.split_at(n);
            batches.push(batch);
            rest = tail;
        }
        let concat_answered = AtomicBool::new(true);
        self.parallel(&batches, |batch| {
            let n = self.restore_batch(batch, &pb, &concat_answered)?;
            written.fetch_add(n, Ordering::Relaxed);
            Ok(())
        })?;
        self.parallel(&other, |(path, e)| {
            let n = self.restore_blob(path, e, &pb)?;
            written.fetch_add(n, Ordering::Relaxed);
            Ok(())
        })?;
        // Large files one at a time, their chunks fetched in parallel.
        for (path, e) in &bursts {
            written.fetch_add(self.restore_file(path, e, &pb)?, Ordering::Relaxed);
        }
        pb.finish_and_clear();
        for (path, e) in &links {
            let target = self.fetch_bytes(&e.id, 64 << 10)?;
            if target.is_empty() || target.contains(&0) {
                return Err(Error::invalid(
                    "snapshot tree",
                    format!("bad symlink target for {}", path.display()),
                ));
            }
            make_symlink(&target, path)?;
            res.symlinks += 1;
        }
        res.files = (small.len() + other.len() + bursts.len()) as u64;
        res.bytes = written.into_inner();
        Ok(res)
    }

    /// Restores `batch` (small files of one object each) from one `POST /?concat=1`:
    /// the answer is read into memory, cut by the sizes the tree states, and each
    /// piece written only once its hash is its file's id. What the answer leaves
    /// undone (a transfer that broke, bytes that are not what the tree says, a
    /// member the server lacks) is restored file by file, which reports any error
    /// precisely; so is every batch once the server showed it does not answer
    /// the request (an older server: `concat_answered` turns false).
    fn restore_batch(
        &self,
        batch: &[(PathBuf, Entry)],
        pb: &indicatif::ProgressBar,
        concat_answered: &AtomicBool,
    ) -> Result<u64> {
        let mut done = 0usize;
        let mut written = 0u64;
        if concat_answered.load(Ordering::Relaxed) {
            match self.concat_into_files(batch, pb, &mut done, &mut written) {
                Ok(true) => return Ok(written),
                Ok(false) => concat_answered.store(false, Ordering::Relaxed),
                Err(e) => tracing::debug!(error = %e, "restoring a batch file by file"),
            }
        }
        for (path, e) in &batch[done..] {
            written += self.restore_blob(path, e, pb)?;
        }
        Ok(written)
    }

    /// The one-request part of [`Client::restore_batch`]: `false` if the server
    /// does not know `POST /?concat=1`; `done` and `written` count the files
    /// written.
    fn concat_into_files(
        &self,
        batch: &[(PathBuf, Entry)],
        pb: &indicatif::ProgressBar,
        done: &mut usize,
        written: &mut u64,
    ) -> Result<bool> {
        let ids: Vec<ObjectId> = batch.iter().map(|(_, e)| e.id).collect();
        let what = format!("POST /?concat=1 ({} names)", ids.len());
        let url = self.url("/", &[("concat", "1")], false)?;
        let body = Bytes::from(encode_burst(&ids));
        let resp = self.send(&what, true, || {
            Ok(self.http.post(url.clone()).body(body.clone()))
        })?;
        let status = resp.status();
        let count = resp.headers().get(tig_core::CONCAT_COUNT_HEADER);
        let counted = count.and_then(|v| v.to_str().ok()) == Some(&ids.len().to_string());
        if (status == reqwest::StatusCode::OK && !counted) || [400, 405].contains(&status.as_u16())
        {
            // Not a tig server that knows the request (an older one answers 400
            // "unknown query parameter" before anything else).
            return Ok(false);
        }
        let mut resp = self.check(&what, resp)?;
        let total: u64 = batch.iter().map(|(_, e)| e.size).sum();
        let mut all = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
        let lie = |why: &str| Error::invalid(format!("reply to {what}"), why.to_string());
        crate::http::read_body(&mut resp, &what, |b| {
            if (all.len() + b.len()) as u64 > total {
                return Err(lie("more bytes than the files hold"));
            }
            all.extend_from_slice(b);
            Ok(())
        })?;
        if all.len() as u64 != total {
            return Err(lie("fewer bytes than the files hold"));
        }
        let mut at = 0usize;
        for (path, e) in batch {
            // `total` fit in memory, so every size does.
            let n = e.size as usize;
            let data = &all[at..at + n];
            at += n;
            let actual = ObjectId::digest(data);
            if actual != e.id {
                return Err(Error::Mismatch {
                    what: e.id.path(),
                    expected: e.id,
                    actual,
                });
            }
            write_new_file(path, data, file_mode(e.mode))?;
            pb.inc(e.size);
            *done += 1;
            *written += e.size;
        }
        Ok(true)
    }

    /// A file of one object: up to [`BLOB_IN_MEMORY_MAX`] bytes are fetched into
    /// memory and verified, then written to a new file at `path` (created
    /// exclusively, mode set on the open descriptor); a larger one goes through
    /// [`Client::restore_file`]'s temp file.
    fn restore_blob(&self, path: &Path, e: &Entry, pb: &indicatif::ProgressBar) -> Result<u64> {
        if e.size > BLOB_IN_MEMORY_MAX {
            return self.restore_file(path, e, pb);
        }
        let mut data = Vec::with_capacity(e.size as usize);
        // More bytes than the tree says is an error as soon as they arrive.
        let n = self.retrying(&e.id, |c| {
            data.clear();
            c.stream_verified(&e.id, true, e.size, pb, &mut |b| {
                data.extend_from_slice(b);
                Ok(())
            })
        });
        let short = |holds: String| {
            Error::invalid(
                "snapshot tree",
                format!(
                    "{} should be {} bytes but its object holds {holds}",
                    path.display(),
                    e.size
                ),
            )
        };
        let n = match n {
            Err(Error::TooLarge { .. }) => return Err(short("more".into())),
            other => other?,
        };
        if n != e.size {
            return Err(short(n.to_string()));
        }
        write_new_file(path, &data, file_mode(e.mode))?;
        Ok(n)
    }

    fn restore_file(&self, path: &Path, e: &Entry, pb: &indicatif::ProgressBar) -> Result<u64> {
        let parent = path.parent().unwrap_or(Path::new("."));
        let mut tmp = tempfile::Builder::new()
            .prefix(".tig-restore-")
            .tempfile_in(parent)
            .map_err(|err| {
                Error::io(format!("creating a temp file in {}", parent.display()), err)
            })?;
        let n = match e.kind {
            Kind::Burst => {
                // Members fetched in parallel, each verified, appended in order.
                let n = self.fetch_into(&e.id, true, tmp.as_file_mut(), e.size)?;
                pb.inc(n);
                n
            }
            _ => self.fetch_object_into(&e.id, true, tmp.as_file_mut(), pb, u64::MAX)?,
        };
        if n != e.size {
            return Err(Error::invalid(
                "snapshot tree",
                format!(
                    "{} should be {} bytes but its objects hold {n}",
                    path.display(),
                    e.size
                ),
            ));
        }
        set_mode(tmp.path(), file_mode(e.mode))?;
        tmp.persist(path)
            .map_err(|err| Error::io(format!("writing {}", path.display()), err.error))?;
        Ok(n)
    }
}

/// What phase 2 uploads: burst lists and trees, then the root.
struct Plan {
    later: Vec<Job>,
    root_job: Job,
    root_id: ObjectId,
    /// Files, directories (the root excluded) and links.
    counts: (u64, u64, u64),
    /// Bytes in the files.
    bytes: u64,
}

impl Plan {
    /// Every id the plan would upload, the root last.
    fn names(&self) -> impl Iterator<Item = ObjectId> + '_ {
        self.later
            .iter()
            .filter_map(|j| j.id)
            .chain(std::iter::once(self.root_id))
    }
}

/// A job for bytes whose id is known and whose presence was asked in bulk.
fn known_job(data: Bytes, id: ObjectId, source: &Arc<PathBuf>) -> Job {
    Job {
        data,
        id: Some(id),
        source: Arc::clone(source),
        ask: false,
    }
}

/// Files of one object up to this size are restored through memory.
const BLOB_IN_MEMORY_MAX: u64 = 16 << 20;

/// Files up to this size are restored in batches ([`Client::restore_batch`]) of at
/// most [`RESTORE_BATCH_FILES`] files and [`RESTORE_BATCH_BYTES`] bytes (a batch
/// is held in memory, once per job).
const RESTORE_BATCH_FILE_MAX: u64 = 1 << 20;
const RESTORE_BATCH_FILES: usize = 512;
const RESTORE_BATCH_BYTES: u64 = 8 << 20;

/// The permission bits a restored file gets (git's two modes, whatever the umask).
fn file_mode(mode: Mode) -> u32 {
    if mode == Mode::Exec { 0o755 } else { 0o644 }
}

/// Creates the file `path` (which must not exist) holding `data` with permission
/// bits `mode`. On failure the file is removed: a restore never leaves a file
/// short of its bytes.
fn write_new_file(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    use std::io::Write;
    let err = |e| Error::io(format!("writing {}", path.display()), e);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, mode);
    let mut f = opts.open(path).map_err(err)?;
    let written = f.write_all(data).and_then(|()| {
        // The umask may have cleared bits of `mode`: set them on the descriptor.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        Ok(())
    });
    if let Err(e) = written {
        drop(f);
        let _ = std::fs::remove_file(path);
        return Err(err(e));
    }
    Ok(())
}

/// Files up to this size are read whole and cut in memory.
const WHOLE_FILE_MAX: u64 = 16 << 20;

/// The chunks of the file at `path`, expected to be `size` bytes. A file up to
/// [`WHOLE_FILE_MAX`] is read in one call and cut in memory (its chunks share that
/// one buffer; FastCDC's streaming reader would zero a max-chunk buffer per file,
/// which dominated the CPU time of a tree of small files); a larger one streams
/// through the chunker. Both cut at the same places. An empty file yields no chunk.
fn file_chunks(
    path: &Path,
    size: u64,
    params: ChunkParams,
) -> Result<Box<dyn Iterator<Item = Result<Bytes>>>> {
    let open_err = |e| Error::io(format!("reading {}", path.display()), e);
    if size <= WHOLE_FILE_MAX {
        let data = Bytes::from(std::fs::read(path).map_err(open_err)?);
        let cuts: Vec<Result<Bytes>> =
            fastcdc::v2020::FastCDC::new(&data[..], params.min, params.avg, params.max)
                .map(|c| Ok(data.slice(c.offset..c.offset + c.length)))
                .collect();
        return Ok(Box::new(cuts.into_iter()));
    }
    let f = File::open(path).map_err(open_err)?;
    Ok(Box::new(chunks(f, params).map(|c| c.map(Bytes::from))))
}

/// A whole file cut into chunks: their ids and bytes (an empty file is one empty
/// chunk).
fn read_chunks(path: &Path, params: ChunkParams) -> Result<(Vec<ObjectId>, Vec<Bytes>)> {
    let size = std::fs::metadata(path)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?
        .len();
    let mut ids = Vec::new();
    let mut data = Vec::new();
    for chunk in file_chunks(path, size, params)? {
        let chunk = chunk?;
        ids.push(ObjectId::digest(&chunk));
        data.push(chunk);
    }
    if ids.is_empty() {
        ids.push(ObjectId::digest(b""));
        data.push(Bytes::new());
    }
    Ok((ids, data))
}

/// A directory's entries by name.
type Dir = BTreeMap<Vec<u8>, Node>;

/// Walks `dir` (honouring ignore rules unless told not to) into a tree of nodes,
/// and the total size of its files.
fn scan(dir: &Path, opts: SnapshotOptions) -> Result<(Node, u64)> {
    let mut total = 0u64;
    let root = if opts.no_ignore {
        scan_plain(dir, &mut Vec::new(), opts.include_git, &mut total)?
    } else {
        scan_with_rules(dir, opts, &mut total)?
    };
    Ok((Node::Dir(root), total))
}

/// The node of a walked entry that is not a directory, at `path` (`rel` below the
/// snapshot's directory); `None`, with a warning, for a special file.
fn leaf(
    path: &Path,
    rel: Vec<u8>,
    meta: &std::fs::Metadata,
    total: &mut u64,
) -> Result<Option<Node>> {
    let ft = meta.file_type();
    Ok(Some(if ft.is_symlink() {
        let target = std::fs::read_link(path)
            .map_err(|e| Error::io(format!("reading link {}", path.display()), e))?;
        Node::Link {
            target: os_bytes(target.as_os_str()),
            rel,
        }
    } else if ft.is_file() {
        *total += meta.len();
        Node::File {
            rel,
            stamp: FileStamp::of(meta),
            exec: is_exec(meta),
        }
    } else {
        tracing::warn!(path = %path.display(), "skipping a special file (not a file, directory or link)");
        return Ok(None);
    }))
}

/// Walks `dir` with no ignore rules to apply (`--no-ignore`): a plain depth-first
/// walk. Each entry is stat'ed relative to its directory (`DirEntry::metadata`),
/// not by its full path: resolving full paths was a third of the walk's time.
/// `rel` holds `dir`'s path below the snapshot's directory (with a trailing `/`).
fn scan_plain(dir: &Path, rel: &mut Vec<u8>, include_git: bool, total: &mut u64) -> Result<Dir> {
    let err = |e| Error::io(format!("walking {}", dir.display()), e);
    // Every entry stat'ed while the directory is open, then the directory closed
    // before descending (a `DirEntry` keeps it open): one descriptor at a time,
    // however deep the tree.
    let mut entries = Vec::new();
    for ent in std::fs::read_dir(dir).map_err(err)? {
        let ent = ent.map_err(err)?;
        let name = os_bytes(&ent.file_name());
        if !include_git && name == b".git" {
            continue;
        }
        let path = ent.path();
        let meta = ent
            .metadata()
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        entries.push((name, path, meta));
    }
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut out = Dir::new();
    for (name, path, meta) in entries {
        let len = rel.len();
        rel.extend_from_slice(&name);
        let node = if meta.is_dir() {
            rel.push(b'/');
            let sub = scan_plain(&path, rel, include_git, total);
            rel.truncate(len);
            Some(Node::Dir(sub?))
        } else {
            let node = leaf(&path, rel.clone(), &meta, total);
            rel.truncate(len);
            node?
        };
        if let Some(node) = node {
            out.insert(name, node);
        }
    }
    Ok(out)
}

/// Walks `dir` honouring ignore files (`.gitignore`, `.ignore`, `.git/info/exclude`,
/// also those of its parents), as the `ignore` crate does for ripgrep.
fn scan_with_rules(dir: &Path, opts: SnapshotOptions, total: &mut u64) -> Result<Dir> {
    let mut wb = ignore::WalkBuilder::new(dir);
    wb.hidden(false)
        .parents(true)
        .ignore(true)
        .git_ignore(true)
        .git_exclude(true)
        .git_global(false)
        .require_git(false)
        .follow_links(false)
        .sort_by_file_name(|a, b| a.cmp(b));
    if !opts.include_git {
        wb.filter_entry(|e| e.depth() == 0 || e.file_name() != ".git");
    }
    // The walk is depth first in name order: `open[d]` is the directory at depth d
    // being filled (its name and entries); leaving it files it into its parent.
    let mut open: Vec<(Vec<u8>, Dir)> = vec![(Vec::new(), Dir::new())];
    let close = |open: &mut Vec<(Vec<u8>, Dir)>| {
        if let Some((name, m)) = open.pop()
            && let Some((_, parent)) = open.last_mut()
        {
            parent.insert(name, Node::Dir(m));
        }
    };
    for ent in wb.build() {
        let ent = ent.map_err(|e| {
            Error::io(
                format!("walking {}", dir.display()),
                std::io::Error::other(e.to_string()),
            )
        })?;
        let depth = ent.depth();
        if depth == 0 {
            continue;
        }
        while open.len() > depth {
            close(&mut open);
        }
        if open.len() < depth {
            return Err(Error::invalid(
                "walk",
                format!("{} seen before its directory", ent.path().display()),
            ));
        }
        let meta = std::fs::symlink_metadata(ent.path())
            .map_err(|e| Error::io(format!("reading {}", ent.path().display()), e))?;
        let name = os_bytes(ent.file_name());
        if meta.is_dir() {
            open.push((name, Dir::new()));
            continue;
        }
        let rel = ent.path().strip_prefix(dir).map_err(|_| {
            Error::invalid(
                "walk",
                format!("{} is outside {}", ent.path().display(), dir.display()),
            )
        })?;
        if let Some(node) = leaf(ent.path(), os_bytes(rel.as_os_str()), &meta, total)?
            && let Some((_, m)) = open.last_mut()
        {
            m.insert(name, node);
        }
    }
    while open.len() > 1 {
        close(&mut open);
    }
    Ok(open.pop().map(|(_, m)| m).unwrap_or_default())
}

/// Files and links in depth-first name order (the order `build_tree` consumes).
fn leaves_of(n: &Node) -> Vec<&Node> {
    let mut out = Vec::new();
    fn walk<'a>(n: &'a Node, out: &mut Vec<&'a Node>) {
        match n {
            Node::Dir(m) => m.values().for_each(|c| walk(c, out)),
            other => out.push(other),
        }
    }
    walk(n, &mut out);
    out
}

/// Encodes the trees below `n` (pushing every non-root tree to `trees`, children
/// first) and returns `n`'s own tree bytes and total file size.
fn build_tree(
    n: &Node,
    leaf_ids: &[(ObjectId, Kind, u64)],
    next: &mut usize,
    trees: &mut Vec<Bytes>,
    counts: &mut (u64, u64, u64),
) -> Result<(Bytes, u64)> {
    let Node::Dir(children) = n else {
        return Err(Error::invalid("walk", "the root is not a directory"));
    };
    let mut entries = Vec::with_capacity(children.len());
    let mut total = 0u64;
    for (name, child) in children {
        let entry = match child {
            Node::Dir(_) => {
                let (bytes, size) = build_tree(child, leaf_ids, next, trees, counts)?;
                let id = ObjectId::digest(&bytes);
                trees.push(bytes);
                counts.1 += 1;
                total += size;
                Entry {
                    mode: Mode::Dir,
                    kind: Kind::Tree,
                    size,
                    id,
                    name: name.clone(),
                }
            }
            Node::File { .. } | Node::Link { .. } => {
                let &(id, kind, size) = leaf_ids
                    .get(*next)
                    .ok_or_else(|| Error::invalid("walk", "fewer uploads than files"))?;
                *next += 1;
                let mode = match child {
                    Node::Link { .. } => {
                        counts.2 += 1;
                        Mode::Symlink
                    }
                    Node::File { exec: true, .. } => Mode::Exec,
                    _ => Mode::File,
                };
                if mode != Mode::Symlink {
                    counts.0 += 1;
                    total += size;
                }
                Entry {
                    mode,
                    kind,
                    size,
                    id,
                    name: name.clone(),
                }
            }
        };
        entries.push(entry);
    }
    Ok((Bytes::from(encode_tree(&entries)?), total))
}

#[cfg(unix)]
fn os_bytes(s: &OsStr) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    s.as_bytes().to_vec()
}

#[cfg(unix)]
fn os_name(b: &[u8]) -> &OsStr {
    use std::os::unix::ffi::OsStrExt;
    OsStr::from_bytes(b)
}

#[cfg(unix)]
fn is_exec(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(unix)]
fn make_symlink(target: &[u8], at: &Path) -> Result<()> {
    std::os::unix::fs::symlink(os_name(target), at)
        .map_err(|e| Error::io(format!("creating link {}", at.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_small_file_path_cuts_exactly_as_the_chunker() {
        let params = ChunkParams::for_limit(1 << 20).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let min = params.min as usize;
        let mut x = 7u64;
        let data: Vec<u8> = (0..3 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        for len in [0, 1, min - 1, min, min + 1, 2 * min + 3, 3 << 20] {
            let path = dir.path().join(format!("f{len}"));
            std::fs::write(&path, &data[..len]).unwrap();
            let want: Vec<Vec<u8>> = chunks(&data[..len], params).map(|c| c.unwrap()).collect();
            // The size hint picks the path: in memory, or streamed.
            for hint in [len as u64, 0, WHOLE_FILE_MAX + 1] {
                let got: Vec<Vec<u8>> = file_chunks(&path, hint, params)
                    .unwrap()
                    .map(|c| c.unwrap().to_vec())
                    .collect();
                assert_eq!(got, want, "len {len}, size hint {hint}");
            }
        }
    }
}
