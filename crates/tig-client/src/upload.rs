//! Uploads: a bounded pool of workers that hash each object, skip it when the server
//! already has it (HEAD), upload it otherwise and check the name the server gives
//! back; plus `put` of one file, plain or chunked into a burst.

use std::collections::HashSet;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, sync_channel};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use indicatif::ProgressBar;
use tig_core::{Hasher, ObjectId};

use crate::chunk::{ChunkParams, chunks, encode_burst};
use crate::error::{Error, Result};
use crate::http::{Client, Payload};
use crate::progress;

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
    fn skip(&self, n: u64) {
        self.skipped.fetch_add(1, Ordering::Relaxed);
        self.skipped_bytes.fetch_add(n, Ordering::Relaxed);
    }
    fn upload(&self, n: u64) {
        self.uploaded.fetch_add(1, Ordering::Relaxed);
        self.uploaded_bytes.fetch_add(n, Ordering::Relaxed);
    }
    /// `true` the first time `id` is seen in this run.
    fn first(&self, id: ObjectId) -> bool {
        self.seen.lock().map(|mut s| s.insert(id)).unwrap_or(true)
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
    /// Uploads one object unless the server has it (or this run already sent it).
    pub(crate) fn upload_one(&self, data: Bytes, stats: &Stats) -> Result<ObjectId> {
        let id = ObjectId::digest(&data);
        let n = data.len() as u64;
        if !stats.first(id) || self.head(&id)?.is_some() {
            stats.skip(n);
            return Ok(id);
        }
        let got = self.put_content(&Payload::Bytes(data))?;
        check_reply(&id, &got)?;
        stats.upload(n);
        Ok(id)
    }

    /// Runs a bounded pool of upload workers. `produce` is called on this thread with
    /// a `submit` function that queues bytes (blocking while the queue is full) and
    /// returns the object's sequence number; the ids come back indexed by it.
    pub(crate) fn upload_pool(
        &self,
        stats: &Stats,
        pb: &ProgressBar,
        produce: impl FnOnce(&mut dyn FnMut(Bytes) -> Result<usize>) -> Result<()>,
    ) -> Result<Vec<ObjectId>> {
        let jobs = self.cfg.jobs;
        let (tx, rx) = sync_channel::<(usize, Bytes)>(jobs * 2);
        let rx: Arc<Mutex<Receiver<(usize, Bytes)>>> = Arc::new(Mutex::new(rx));
        let ids: Mutex<Vec<Option<ObjectId>>> = Mutex::new(Vec::new());
        let failure: Mutex<Option<Error>> = Mutex::new(None);
        let abort = AtomicBool::new(false);
        let produced = std::thread::scope(|s| {
            for _ in 0..jobs {
                let rx = Arc::clone(&rx);
                let (ids, failure, abort) = (&ids, &failure, &abort);
                s.spawn(move || {
                    loop {
                        let job = match rx.lock() {
                            Ok(r) => r.recv(),
                            Err(_) => break,
                        };
                        let Ok((seq, data)) = job else { break };
                        if abort.load(Ordering::Relaxed) {
                            break;
                        }
                        let n = data.len() as u64;
                        match self.upload_one(data, stats) {
                            Ok(id) => {
                                pb.inc(n);
                                if let Ok(mut v) = ids.lock() {
                                    if v.len() <= seq {
                                        v.resize(seq + 1, None);
                                    }
                                    v[seq] = Some(id);
                                }
                            }
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
            let mut submit = |data: Bytes| -> Result<usize> {
                if abort.load(Ordering::Relaxed) {
                    return Err(Error::invalid("upload", "aborted"));
                }
                tx.send((seq, data))
                    .map_err(|_| Error::invalid("upload", "aborted"))?;
                seq += 1;
                Ok(seq - 1)
            };
            let r = produce(&mut submit).map(|()| seq);
            drop(tx);
            r
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

    /// Stores a file. Up to `max_size` bytes (and without `chunked`) it is one object
    /// uploaded as it is read; larger, it is cut into content-defined chunks that are
    /// uploaded in parallel (skipping those the server has), then a burst list naming
    /// them in order is uploaded last and returned.
    pub fn put_file(&self, path: &Path, chunked: bool) -> Result<PutResult> {
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
        if !chunked && size <= self.cfg.max_size {
            let pb = progress::bar(self.cfg.progress, Some(size), "hash");
            let id = hash_file(path, &pb)?;
            pb.finish_and_clear();
            if self.head(&id)?.is_some() {
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
                let got = self.put_content(&body).map_err(|e| match e {
                    Error::Transport { what, reason } if size > IN_MEMORY_MAX => Error::Transport {
                        what,
                        reason: format!(
                            "{reason} (if the server's size limit is below {size} bytes it refused the body: give tig the server's --max-size)"
                        ),
                    },
                    other => other,
                })?;
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
        let params = ChunkParams::for_limit(self.cfg.max_size)?;
        let pb = progress::bar(self.cfg.progress, Some(size), "put");
        let file =
            File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        let ids = self.upload_pool(&stats, &pb, |submit| {
            for chunk in chunks(file, params) {
                submit(Bytes::from(chunk?))?;
            }
            Ok(())
        })?;
        pb.finish_and_clear();
        let ids = if ids.is_empty() {
            vec![self.upload_one(Bytes::new(), &stats)?]
        } else {
            ids
        };
        let list = encode_burst(&ids);
        if list.len() as u64 > self.cfg.max_size {
            return Err(Error::Usage(format!(
                "the burst list ({} bytes) is over --max-size; raise --max-size",
                list.len()
            )));
        }
        let id = self.upload_one(Bytes::from(list), &stats)?;
        Ok(PutResult {
            id,
            burst: true,
            size,
            chunks: ids.len() as u64,
            counts: stats.counts(),
        })
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
