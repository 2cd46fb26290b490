//! Uploads: a bounded pool of workers that hash each object, skip it only when the
//! server vouches that it holds *content with that hash* (see [`Client::has_content`]
//! and [`Client::missing`]), upload it otherwise and check the name the server gives
//! back; plus `put` of one file, plain or chunked into a burst.
//!
//! Small objects the server is known to lack travel in batches: one
//! `POST /?batch=1` with a tar body of up to [`BATCH_MAX_OBJECTS`] objects /
//! [`BATCH_MAX_BYTES`] bytes, each member named `<h>.tig` (so the server checks
//! every hash), the reply checked to list exactly the names sent, in order. A
//! server that does not know the request (400, 404, 405, 417, 501: an older
//! server) gets one `PUT` per object for the rest of the pool; any other refusal
//! of a batch is retried as single `PUT`s, whose errors name the file.
//!
//! A name can also hold a key-value slot, whose bytes are anything. So "the server has
//! `/<h>.tig`" is never enough to skip: a `HEAD` must answer `ETag: "<h>"` (only
//! content carries that tag), or `POST /?missing=1` must leave the name out (it lists
//! slots as missing). An upload of content whose name holds a slot is refused with
//! 409, which fails the command with one line naming the file.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, sync_channel};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use indicatif::ProgressBar;
use rustc_hash::FxHashSet as HashSet;
use tig_core::{Hasher, ObjectId};

use crate::chunk::{ChunkParams, chunks, encode_burst};
use crate::error::{Error, Result};
use crate::http::{Client, Payload, error_chain};
use crate::progress;

/// Most names per `POST /?missing=1` (the server's cap).
pub const MISSING_MAX_LINES: usize = 100_000;

/// One object for the upload pool: its bytes, the file it comes from (named in
/// errors), and whether the server must first be asked (`HEAD`) if it has it.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    /// The bytes.
    pub data: Bytes,
    /// Their hash, when the caller already computed it.
    pub id: Option<ObjectId>,
    /// The file (or what else) these bytes are part of.
    pub source: Arc<PathBuf>,
    /// `true`: ask the server (`HEAD`, content `ETag`) and skip if it has the
    /// content. `false`: the caller knows the server lacks it; send it.
    pub ask: bool,
}

/// Objects up to this size go into batches (`POST /?batch=1`).
pub const BATCH_OBJECT_MAX: usize = 256 << 10;
/// Most objects in one batch.
pub const BATCH_MAX_OBJECTS: usize = 1000;
/// Most object bytes in one batch (the server takes up to 64 MiB).
pub const BATCH_MAX_BYTES: usize = 8 << 20;

/// What an upload worker is handed: one object, or a batch of small ones, each
/// with its sequence number.
enum Work {
    One(usize, Job),
    Many(Vec<(usize, Job)>),
}

/// How a server answered a batch.
enum BatchReply {
    /// Stored; the reply named exactly what was sent.
    Stored,
    /// The server does not know `?batch=1` (an older server).
    Unsupported,
    /// Refused for another reason (a slot conflict, a full disk, a lower limit):
    /// the members go one by one, so the error names the file.
    Refused,
}

/// Plain puts up to this size are sent from memory.
const IN_MEMORY_MAX: u64 = 16 << 20;

/// What an upload did, for the user and for tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Objects sent to the server.
    pub uploaded: u64,
    /// Bytes in those objects.
    pub uploaded_bytes: u64,
    /// Objects not sent: the server had them, or they repeat within this run.
    pub skipped: u64,
    /// Bytes in those objects.
    pub skipped_bytes: u64,
}

/// Thread-safe counters behind [`Counts`].
#[derive(Debug, Default)]
pub(crate) struct Stats {
    uploaded: AtomicU64,
    uploaded_bytes: AtomicU64,
    skipped: AtomicU64,
    skipped_bytes: AtomicU64,
    seen: Mutex<HashSet<ObjectId>>,
}

impl Stats {
    pub(crate) fn counts(&self) -> Counts {
        Counts {
            uploaded: self.uploaded.load(Ordering::Relaxed),
            uploaded_bytes: self.uploaded_bytes.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            skipped_bytes: self.skipped_bytes.load(Ordering::Relaxed),
        }
    }
    pub(crate) fn skip(&self, n: u64) {
        self.skipped.fetch_add(1, Ordering::Relaxed);
        self.skipped_bytes.fetch_add(n, Ordering::Relaxed);
    }
    /// `objects` not sent, holding `bytes`.
    pub(crate) fn skip_many(&self, objects: u64, bytes: u64) {
        self.skipped.fetch_add(objects, Ordering::Relaxed);
        self.skipped_bytes.fetch_add(bytes, Ordering::Relaxed);
    }
    fn upload(&self, n: u64) {
        self.uploaded.fetch_add(1, Ordering::Relaxed);
        self.uploaded_bytes.fetch_add(n, Ordering::Relaxed);
    }
    /// `true` the first time `id` is seen in this run.
    pub(crate) fn first(&self, id: ObjectId) -> bool {
        self.seen.lock().map(|mut s| s.insert(id)).unwrap_or(true)
    }
}

/// Bytes of objects held back until the server is asked, in one request, which
/// it lacks (a snapshot asks per batch of this many read bytes).
pub const BATCH_BYTES: usize = 32 << 20;

/// Collects objects (with their bytes) and names known only by id, asks the server
/// which of them it lacks in one `POST /?missing=1` per batch, and submits to the
/// upload pool exactly those — each id at most once per run.
pub(crate) struct Batcher<'a> {
    client: &'a Client,
    stats: &'a Stats,
    /// Ids already decided this run (present, or submitted).
    handled: HashSet<ObjectId>,
    /// The server does not answer `?missing=1`: ask per object (`HEAD`).
    unsupported: bool,
    fresh: Vec<(ObjectId, Bytes, Arc<PathBuf>)>,
    known: Vec<ObjectId>,
    mem: usize,
    /// Answers already had this run (see [`Batcher::answered`]).
    prior: Option<Answer>,
}

/// The server's answer to one `POST /?missing=1`: the ids asked, and those it lacks.
#[derive(Debug, Default)]
pub(crate) struct Answer {
    pub(crate) asked: HashSet<ObjectId>,
    pub(crate) lacking: HashSet<ObjectId>,
}

impl<'a> Batcher<'a> {
    pub(crate) fn new(client: &'a Client, stats: &'a Stats) -> Self {
        Self {
            client,
            stats,
            handled: HashSet::default(),
            unsupported: false,
            fresh: Vec::new(),
            known: Vec::new(),
            mem: 0,
            prior: None,
        }
    }

    /// Takes `answer` (asked earlier in this run) as the server's word on the ids it
    /// covers: they are not asked again.
    pub(crate) fn answered(&mut self, answer: Answer) {
        self.prior = Some(answer);
    }

    /// Whether a batch is due.
    pub(crate) fn full(&self) -> bool {
        self.mem >= BATCH_BYTES || self.fresh.len() + self.known.len() >= MISSING_MAX_LINES
    }

    /// Queues bytes whose id is `id`.
    pub(crate) fn add(&mut self, id: ObjectId, data: Bytes, source: &Arc<PathBuf>) {
        self.mem += data.len();
        self.fresh.push((id, data, Arc::clone(source)));
    }

    /// Queues a name whose bytes are not at hand (from the cache).
    pub(crate) fn add_known(&mut self, id: ObjectId) {
        self.known.push(id);
    }

    /// Asks the server about everything queued, submits the queued bytes it lacks,
    /// and returns the known-only names it lacks (the caller must produce and
    /// submit their bytes, e.g. by reading the file again).
    pub(crate) fn flush(
        &mut self,
        submit: &mut dyn FnMut(Job) -> Result<usize>,
    ) -> Result<HashSet<ObjectId>> {
        let prior = self.prior.as_ref();
        let mut ask: Vec<ObjectId> = Vec::new();
        let mut seen = HashSet::default();
        for id in self.fresh.iter().map(|f| &f.0).chain(&self.known) {
            if !self.handled.contains(id)
                && !prior.is_some_and(|p| p.asked.contains(id))
                && seen.insert(*id)
            {
                ask.push(*id);
            }
        }
        let missing = if self.unsupported || ask.is_empty() {
            None
        } else {
            let m = self.client.missing(&ask)?;
            self.unsupported = m.is_none();
            m
        };
        // Whether the server lacks `id`, if it said.
        let said = |id: &ObjectId| match prior.filter(|p| p.asked.contains(id)) {
            Some(p) => Some(p.lacking.contains(id)),
            None => missing.as_ref().map(|m| m.contains(id)),
        };
        for (id, data, source) in std::mem::take(&mut self.fresh) {
            let said = said(&id);
            if self.handled.insert(id) && said != Some(false) {
                submit(Job {
                    data,
                    id: Some(id),
                    source,
                    ask: said.is_none(),
                })?;
            } else {
                self.stats.skip(data.len() as u64);
            }
        }
        let mut out = HashSet::default();
        for id in std::mem::take(&mut self.known) {
            if self.handled.insert(id) && said(&id) != Some(false) {
                out.insert(id);
            }
        }
        self.mem = 0;
        Ok(out)
    }

    /// Undecides `id`: a later batch that names it asks (or is told) about it
    /// again. For a lacking id that [`Batcher::flush`] returned but nobody sent
    /// (the file that named it was read again and no longer does).
    pub(crate) fn reopen(&mut self, id: &ObjectId) {
        self.handled.remove(id);
    }

    /// Whether the server answers `?missing=1` (as far as seen).
    pub(crate) fn bulk(&self) -> bool {
        !self.unsupported
    }
}

/// What `put` printed: the object, and whether it is a burst list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PutResult {
    /// The object (the burst list when chunked).
    #[serde(serialize_with = "ser_path")]
    pub id: ObjectId,
    /// The object is a burst list; `GET …?burst=1` returns the original bytes.
    pub burst: bool,
    /// Size of the original bytes.
    pub size: u64,
    /// Chunks made (0 when not chunked).
    pub chunks: u64,
    /// What was sent and skipped.
    pub counts: Counts,
}

impl Client {
    /// `HEAD /<h>.tig`: whether the server vouches that the name holds content with
    /// that hash (`ETag: "<h>"`). A slot, an absent name, or a server that does not
    /// send the tag are all `false`: the caller uploads.
    pub fn has_content(&self, id: &ObjectId) -> Result<bool> {
        let what = format!("HEAD {}", id.path());
        // Without `chtimes=0`: an object a new upload relies on must stay alive.
        let url = self.url(&id.path(), &[], false)?;
        let resp = self.send(&what, true, || Ok(self.http.head(url.clone())))?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(false);
        }
        let resp = self.check(&what, resp)?;
        Ok(is_content_etag(resp.headers(), id))
    }

    /// `POST /?missing=1`: the names among `ids` that the server does not hold as
    /// content (absent, or a key-value slot), asked in requests of at most
    /// [`MISSING_MAX_LINES`] names. `None` when the server does not know the request
    /// (an older server): the caller must then treat every name as missing.
    pub fn missing(&self, ids: &[ObjectId]) -> Result<Option<HashSet<ObjectId>>> {
        let mut out = HashSet::default();
        for part in ids.chunks(MISSING_MAX_LINES) {
            let what = format!("POST /?missing=1 ({} names)", part.len());
            let url = self.url("/", &[("missing", "1")], false)?;
            let body = Bytes::from(crate::chunk::encode_burst(part));
            let resp = self.send(&what, true, || {
                Ok(self.upload.post(url.clone()).body(body.clone()))
            })?;
            let status = resp.status();
            if status == reqwest::StatusCode::BAD_REQUEST
                || status == reqwest::StatusCode::EXPECTATION_FAILED
                || status == reqwest::StatusCode::METHOD_NOT_ALLOWED
                || status == reqwest::StatusCode::UNAUTHORIZED
            {
                // An older server: `missing` is an unknown parameter (400), or the
                // POST is taken as an upload needing the key (401).
                let text = resp.text().unwrap_or_default();
                if status != reqwest::StatusCode::BAD_REQUEST
                    || text.contains("unknown query parameter")
                {
                    tracing::debug!(%status, "the server does not answer ?missing=1");
                    return Ok(None);
                }
                return Err(Error::Status {
                    what,
                    status: status.as_u16(),
                    message: text.lines().next().unwrap_or("").trim().to_string(),
                });
            }
            let resp = self.check(&what, resp)?;
            let text = resp.text().map_err(|e| Error::Transport {
                what: what.clone(),
                reason: error_chain(&e),
            })?;
            let asked: HashSet<&ObjectId> = part.iter().collect();
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let id = ObjectId::from_burst_line(line.trim())
                    .map_err(|e| Error::invalid(format!("reply to {what}"), e.to_string()))?;
                if !asked.contains(&id) {
                    return Err(Error::invalid(
                        format!("reply to {what}"),
                        format!("names {} which was not asked", id.path()),
                    ));
                }
                out.insert(id);
            }
        }
        Ok(Some(out))
    }

    /// Uploads one object unless the server has it as content (or this run already
    /// sent it). A refusal names `source`.
    pub(crate) fn upload_one(&self, job: Job, stats: &Stats) -> Result<ObjectId> {
        let id = job.id.unwrap_or_else(|| ObjectId::digest(&job.data));
        let n = job.data.len() as u64;
        if !stats.first(id) || (job.ask && self.has_content(&id)?) {
            stats.skip(n);
            return Ok(id);
        }
        self.send_one(job, id, stats)?;
        Ok(id)
    }

    /// `PUT /` of one object whose id is `id`, checking the name given back.
    fn send_one(&self, job: Job, id: ObjectId, stats: &Stats) -> Result<()> {
        let n = job.data.len() as u64;
        let got = self
            .put_content(&Payload::Bytes(job.data))
            .map_err(|e| naming(&job.source, e))?;
        check_reply(&id, &got)?;
        stats.upload(n);
        Ok(())
    }

    /// Uploads a batch of small objects the server lacks (skipping ids this run
    /// already sent) in one `POST /?batch=1`, or one by one when the server does
    /// not take batches (`batches` is then cleared for the rest of the pool).
    /// Returns each job's id, in order.
    fn upload_many(
        &self,
        jobs: Vec<Job>,
        stats: &Stats,
        batches: &AtomicBool,
    ) -> Result<Vec<ObjectId>> {
        let ids: Vec<ObjectId> = jobs
            .iter()
            .map(|j| j.id.unwrap_or_else(|| ObjectId::digest(&j.data)))
            .collect();
        let mut send: Vec<(ObjectId, Job)> = Vec::with_capacity(jobs.len());
        for (id, job) in ids.iter().zip(jobs) {
            if stats.first(*id) {
                send.push((*id, job));
            } else {
                stats.skip(job.data.len() as u64);
            }
        }
        if send.is_empty() {
            return Ok(ids);
        }
        if batches.load(Ordering::Relaxed) {
            match self.put_batch(&send)? {
                BatchReply::Stored => {
                    for (_, job) in &send {
                        stats.upload(job.data.len() as u64);
                    }
                    return Ok(ids);
                }
                BatchReply::Unsupported => batches.store(false, Ordering::Relaxed),
                BatchReply::Refused => {}
            }
        }
        for (id, job) in send {
            self.send_one(job, id, stats)?;
        }
        Ok(ids)
    }

    /// `POST /?batch=1` with a tar body of `items`, each member named by its id.
    fn put_batch(&self, items: &[(ObjectId, Job)]) -> Result<BatchReply> {
        let what = format!("POST /?batch=1 ({} objects)", items.len());
        let body = Bytes::from(batch_tar(items).map_err(|e| Error::io("building a batch", e))?);
        let url = self.url("/", &[("batch", "1")], true)?;
        // Idempotent: storing content again only refreshes it.
        let resp = self.send(&what, true, || {
            Ok(self.upload.post(url.clone()).body(body.clone()))
        })?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().unwrap_or_default();
            let line = text.lines().next().unwrap_or("").trim();
            let unsupported = matches!(status.as_u16(), 404 | 405 | 417 | 501)
                || (status == reqwest::StatusCode::BAD_REQUEST
                    && line.contains("unknown query parameter"));
            if status == reqwest::StatusCode::UNAUTHORIZED {
                // The same key rule as PUT /: a single PUT says it better.
                return Ok(BatchReply::Refused);
            }
            tracing::debug!(%status, reason = line, unsupported, "batch not stored; sending one by one");
            return Ok(if unsupported {
                BatchReply::Unsupported
            } else {
                BatchReply::Refused
            });
        }
        let text = resp.text().map_err(|e| Error::Transport {
            what: what.clone(),
            reason: error_chain(&e),
        })?;
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        for (id, _) in items {
            let Some(line) = lines.next() else {
                return Err(Error::invalid(
                    format!("reply to {what}"),
                    format!("names fewer objects than were sent (no {})", id.path()),
                ));
            };
            let got = ObjectId::from_path(line.trim()).map_err(|_| {
                Error::invalid(
                    format!("reply to {what}"),
                    format!(
                        "not an object path: {}",
                        line.chars().take(80).collect::<String>()
                    ),
                )
            })?;
            if got != *id {
                return Err(Error::invalid(
                    format!("reply to {what}"),
                    format!(
                        "server named an upload {} but its hash is {}",
                        got.path(),
                        id.path()
                    ),
                ));
            }
        }
        if lines.next().is_some() {
            return Err(Error::invalid(
                format!("reply to {what}"),
                "names more objects than were sent",
            ));
        }
        Ok(BatchReply::Stored)
    }

    /// Runs a bounded pool of upload workers. `produce` is called on this thread with
    /// a `submit` function that queues bytes (blocking while the queue is full) and
    /// returns the object's sequence number; the ids come back indexed by it.
    pub(crate) fn upload_pool(
        &self,
        stats: &Stats,
        pb: &ProgressBar,
        produce: impl FnOnce(&mut dyn FnMut(Job) -> Result<usize>) -> Result<()>,
    ) -> Result<Vec<ObjectId>> {
        let jobs = self.cfg.jobs;
        let (tx, rx) = sync_channel::<Work>(jobs * 2);
        let rx: Arc<Mutex<Receiver<Work>>> = Arc::new(Mutex::new(rx));
        let ids: Mutex<Vec<Option<ObjectId>>> = Mutex::new(Vec::new());
        let failure: Mutex<Option<Error>> = Mutex::new(None);
        let abort = AtomicBool::new(false);
        // Cleared when the server turns out not to take batches.
        let batches = AtomicBool::new(true);
        let record = |ids: &Mutex<Vec<Option<ObjectId>>>, seq: usize, id: ObjectId| {
            if let Ok(mut v) = ids.lock() {
                if v.len() <= seq {
                    v.resize(seq + 1, None);
                }
                v[seq] = Some(id);
            }
        };
        let produced = std::thread::scope(|s| {
            for _ in 0..jobs {
                let rx = Arc::clone(&rx);
                let (ids, failure, abort, batches) = (&ids, &failure, &abort, &batches);
                s.spawn(move || {
                    loop {
                        let work = match rx.lock() {
                            Ok(r) => r.recv(),
                            Err(_) => break,
                        };
                        let Ok(work) = work else { break };
                        if abort.load(Ordering::Relaxed) {
                            break;
                        }
                        let done = match work {
                            Work::One(seq, job) => {
                                let n = job.data.len() as u64;
                                self.upload_one(job, stats).map(|id| {
                                    pb.inc(n);
                                    record(ids, seq, id);
                                })
                            }
                            Work::Many(items) => {
                                let n: u64 = items.iter().map(|(_, j)| j.data.len() as u64).sum();
                                let (seqs, jobs): (Vec<usize>, Vec<Job>) =
                                    items.into_iter().unzip();
                                self.upload_many(jobs, stats, batches).map(|got| {
                                    pb.inc(n);
                                    for (seq, id) in seqs.into_iter().zip(got) {
                                        record(ids, seq, id);
                                    }
                                })
                            }
                        };
                        match done {
                            Ok(()) => {}
                            Err(e) => {
                                abort.store(true, Ordering::Relaxed);
                                if let Ok(mut f) = failure.lock() {
                                    f.get_or_insert(e);
                                }
                                break;
                            }
                        }
                    }
                });
            }
            drop(rx);
            let mut seq = 0usize;
            // Small objects the server lacks, waiting to fill a batch.
            let mut pending: Vec<(usize, Job)> = Vec::new();
            let mut pending_bytes = 0usize;
            let send = |work: Work| -> Result<()> {
                if abort.load(Ordering::Relaxed) {
                    return Err(Error::invalid("upload", "aborted"));
                }
                tx.send(work)
                    .map_err(|_| Error::invalid("upload", "aborted"))
            };
            let mut submit = |job: Job| -> Result<usize> {
                let this = seq;
                seq += 1;
                if job.ask || job.data.len() > BATCH_OBJECT_MAX || !batches.load(Ordering::Relaxed)
                {
                    send(Work::One(this, job))?;
                    return Ok(this);
                }
                pending_bytes += job.data.len();
                pending.push((this, job));
                if pending.len() >= BATCH_MAX_OBJECTS || pending_bytes >= BATCH_MAX_BYTES {
                    pending_bytes = 0;
                    send(Work::Many(std::mem::take(&mut pending)))?;
                }
                Ok(this)
            };
            let r = produce(&mut submit);
            let r = r.and_then(|()| {
                if pending.is_empty() {
                    Ok(())
                } else {
                    send(Work::Many(std::mem::take(&mut pending)))
                }
            });
            drop(tx);
            r.map(|()| seq)
        });
        if let Some(e) = failure.into_inner().ok().flatten() {
            return Err(e);
        }
        let count = produced?;
        let ids = ids.into_inner().unwrap_or_default();
        (0..count)
            .map(|i| {
                ids.get(i)
                    .copied()
                    .flatten()
                    .ok_or_else(|| Error::invalid("upload", "a worker stopped early"))
            })
            .collect()
    }

    /// Stores a file, cut below the server's limit ([`Client::max_size`]); a
    /// 413 on the way (the limit was lowered) cuts again below the new one.
    pub fn put_file(&self, path: &Path, chunked: bool) -> Result<PutResult> {
        self.adapting(|| self.put_file_once(path, chunked))
    }

    /// Stores a file. Up to `max_size` bytes (and without `chunked`) it is one object
    /// uploaded as it is read; larger, it is cut into content-defined chunks that are
    /// uploaded in parallel (skipping those the server has), then a burst list naming
    /// them in order is uploaded last and returned.
    fn put_file_once(&self, path: &Path, chunked: bool) -> Result<PutResult> {
        let meta = std::fs::metadata(path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        if !meta.is_file() {
            return Err(Error::Usage(format!(
                "{} is not a regular file",
                path.display()
            )));
        }
        let size = meta.len();
        let stats = Stats::default();
        let max_size = self.max_size()?;
        if !chunked && size <= max_size {
            let pb = progress::bar(self.cfg.progress, Some(size), "hash");
            let id = hash_file(path, &pb)?;
            pb.finish_and_clear();
            let present = match self.missing(&[id])? {
                Some(m) => !m.contains(&id),
                None => self.has_content(&id)?,
            };
            if present {
                stats.skip(size);
            } else {
                // Small bodies go from memory: if the server refuses one early (413),
                // the answer is read; a streamed body only sees the connection close.
                let body = if size <= IN_MEMORY_MAX {
                    let data = std::fs::read(path)
                        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
                    Payload::Bytes(Bytes::from(data))
                } else {
                    Payload::File(path.to_path_buf(), size)
                };
                let got = self.put_content(&body).map_err(|e| naming(path, e))?;
                check_reply(&id, &got)?;
                stats.upload(size);
            }
            return Ok(PutResult {
                id,
                burst: false,
                size,
                chunks: 0,
                counts: stats.counts(),
            });
        }
        let params = ChunkParams::for_limit(max_size)?;
        let pb = progress::bar(self.cfg.progress, Some(size), "put");
        let file =
            File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        let source = Arc::new(path.to_path_buf());
        let mut ids = Vec::new();
        self.upload_pool(&stats, &pb, |submit| {
            let mut batch = Batcher::new(self, &stats);
            for chunk in chunks(file, params) {
                let data = Bytes::from(chunk?);
                let id = ObjectId::digest(&data);
                ids.push(id);
                batch.add(id, data, &source);
                if batch.full() {
                    batch.flush(submit)?;
                }
            }
            if ids.is_empty() {
                ids.push(ObjectId::digest(b""));
                batch.add(ids[0], Bytes::new(), &source);
            }
            batch.flush(submit)?;
            Ok(())
        })?;
        pb.finish_and_clear();
        let list = encode_burst(&ids);
        if list.len() as u64 > max_size {
            return Err(Error::Usage(format!(
                "the burst list ({} bytes) is over --max-size; raise --max-size",
                list.len()
            )));
        }
        let list = Bytes::from(list);
        let id = ObjectId::digest(&list);
        let ask = match self.missing(&[id])? {
            Some(m) if !m.contains(&id) => {
                stats.skip(list.len() as u64);
                return Ok(PutResult {
                    id,
                    burst: true,
                    size,
                    chunks: ids.len() as u64,
                    counts: stats.counts(),
                });
            }
            Some(_) => false,
            None => true,
        };
        let job = Job {
            data: list,
            id: Some(id),
            source,
            ask,
        };
        let id = self.upload_one(job, &stats)?;
        Ok(PutResult {
            id,
            burst: true,
            size,
            chunks: ids.len() as u64,
            counts: stats.counts(),
        })
    }
}

/// Whether `headers` carry the content tag of `id`: `ETag: "<h>"` (strong, exact).
pub(crate) fn is_content_etag(headers: &reqwest::header::HeaderMap, id: &ObjectId) -> bool {
    headers
        .get(reqwest::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == format!("\"{}\"", id.to_hex()))
}

/// A refused upload names the file it came from: `storing FILE (PUT /): …`.
fn naming(source: &Path, e: Error) -> Error {
    match e {
        Error::Status {
            what,
            status,
            message,
        } => Error::Status {
            what: format!("storing {} ({what})", source.display()),
            status,
            message,
        },
        Error::Transport { what, reason } => Error::Transport {
            what: format!("storing {} ({what})", source.display()),
            reason,
        },
        other => other,
    }
}

/// The server must name what we sent by the hash we computed.
fn check_reply(expected: &ObjectId, got: &ObjectId) -> Result<()> {
    if expected != got {
        return Err(Error::invalid(
            "reply to PUT /",
            format!(
                "server named the upload {} but its hash is {}",
                got.path(),
                expected.path()
            ),
        ));
    }
    Ok(())
}

/// The tar body of a batch: every object as a regular file named `<h>.tig`
/// (mode 0644, mtime 0), so the server checks each hash.
fn batch_tar(items: &[(ObjectId, Job)]) -> std::io::Result<Vec<u8>> {
    let size: usize = items
        .iter()
        .map(|(_, j)| j.data.len().div_ceil(512) * 512 + 512)
        .sum();
    let mut b = tar::Builder::new(Vec::with_capacity(size + 1024));
    for (id, job) in items {
        let mut h = tar::Header::new_ustar();
        h.set_size(job.data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        b.append_data(&mut h, id.file_name(), &job.data[..])?;
    }
    b.into_inner()
}

/// sha256 of a file, read in 1 MiB blocks.
pub(crate) fn hash_file(path: &Path, pb: &ProgressBar) -> Result<ObjectId> {
    let mut f =
        File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let mut h = Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        pb.inc(n as u64);
    }
    Ok(h.finish())
}

/// Serializes an id as its `/<h>.tig` path.
pub(crate) fn ser_path<S: serde::Serializer>(id: &ObjectId, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&id.path())
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{ETAG, HeaderMap, HeaderValue};

    #[test]
    fn only_the_exact_content_tag_vouches() {
        let id = ObjectId::digest(b"x");
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(ETAG, HeaderValue::from_str(v).unwrap());
            h
        };
        assert!(is_content_etag(&with(&format!("\"{}\"", id.to_hex())), &id));
        assert!(!is_content_etag(&HeaderMap::new(), &id));
        for bad in [
            id.to_hex(),
            format!("W/\"{}\"", id.to_hex()),
            format!("\"s-{}\"", id.to_hex()),
            format!("\"{}\"", ObjectId::digest(b"y").to_hex()),
            format!("\"{}\"", id.to_hex().to_uppercase()),
        ] {
            assert!(!is_content_etag(&with(&bad), &id), "{bad}");
        }
    }
}
