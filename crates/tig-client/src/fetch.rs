//! Verified downloads: every object must hash to its name before any of its bytes
//! reach the caller's output. Plain objects stream into a temp file next to the
//! target while being hashed; burst lists are fetched (verified), then each member
//! (verified) in order. On any mismatch the temp file is deleted and nothing appears.
//!
//! A server cannot make a download grow without bound: a plain object may not
//! be longer than its `HEAD` announced, and callers that know what to expect
//! (e.g. relay bundles) pass a cap for the whole download
//! ([`Client::fetch_to_path_max`]). Stalled connections are the HTTP layer's
//! idle timeout ([`crate::Config::idle_timeout`]).

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use indicatif::ProgressBar;
use tig_core::{Hasher, ObjectId};

use crate::chunk::decode_burst;
use crate::error::{Error, Limit, Result};
use crate::http::Client;
use crate::progress;

/// Members larger than this are not buffered in memory by the parallel burst fetch;
/// they are streamed straight into the output in their turn.
const MEMBER_BUFFER_MAX: u64 = 16 << 20;
/// Largest burst list or tree we read into memory.
pub(crate) const LIST_MAX: u64 = 512 << 20;

impl Client {
    /// Downloads `id` into memory (at most `limit` bytes) and checks its hash.
    pub fn fetch_bytes(&self, id: &ObjectId, limit: u64) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.retrying(id, |c| {
            out.clear();
            c.stream_verified(id, true, limit, &ProgressBar::hidden(), &mut |b| {
                out.extend_from_slice(b);
                Ok(())
            })
        })?;
        Ok(out)
    }

    /// Downloads `id` (a plain object, or with `burst` the concatenation of the burst
    /// list's members) into `out`, verifying every object. The bytes go to a temp file
    /// in `out`'s directory, renamed over `out` only when everything matched.
    /// Returns the number of bytes written.
    pub fn fetch_to_path(&self, id: &ObjectId, burst: bool, out: &Path) -> Result<u64> {
        self.fetch_to_path_max(id, burst, out, u64::MAX)
    }

    /// Like [`Client::fetch_to_path`], but refuses (deleting the temp file) a
    /// download over `max` bytes in all, as soon as the excess arrives.
    pub fn fetch_to_path_max(
        &self,
        id: &ObjectId,
        burst: bool,
        out: &Path,
        max: u64,
    ) -> Result<u64> {
        let dir = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let mut tmp = tempfile::Builder::new()
            .prefix(".tig-get-")
            .tempfile_in(dir)
            .map_err(|e| Error::io(format!("creating a temp file in {}", dir.display()), e))?;
        let n = self.fetch_into(id, burst, tmp.as_file_mut(), max)?;
        tmp.as_file()
            .sync_all()
            .map_err(|e| Error::io(format!("writing {}", out.display()), e))?;
        set_mode(tmp.path(), 0o644)?;
        tmp.persist(out)
            .map_err(|e| Error::io(format!("renaming into {}", out.display()), e.error))?;
        Ok(n)
    }

    /// Like [`Client::fetch_to_path`] but to a writer: the bytes are spooled to an
    /// anonymous temp file, and only copied to `w` once all of them were verified.
    pub fn fetch_to_writer(&self, id: &ObjectId, burst: bool, w: &mut dyn Write) -> Result<u64> {
        let mut tmp = tempfile::tempfile().map_err(|e| Error::io("creating a temp file", e))?;
        let n = self.fetch_into(id, burst, &mut tmp, u64::MAX)?;
        tmp.seek(SeekFrom::Start(0))
            .map_err(|e| Error::io("rewinding the temp file", e))?;
        std::io::copy(&mut tmp, w).map_err(|e| Error::io("writing output", e))?;
        w.flush().map_err(|e| Error::io("writing output", e))?;
        Ok(n)
    }

    /// Appends the verified bytes of `id` (or its burst) to `file`, at most
    /// `max` bytes in all; a plain object no longer than its `HEAD` announced.
    pub(crate) fn fetch_into(
        &self,
        id: &ObjectId,
        burst: bool,
        file: &mut File,
        max: u64,
    ) -> Result<u64> {
        if !burst {
            // Not there (`None`): the GET says so with the usual error.
            let announced = self.head_len(id)?.flatten();
            let limit = announced.map_or(max, |n| n.min(max));
            let pb = progress::bar(self.cfg.progress, announced, "get");
            let n = self.fetch_object_into(id, true, file, &pb, limit).map_err(
                |e| match announced {
                    Some(n) if n < max => over_limit(e, Limit::Announced(n), || {
                        format!("the server sent more than the {n} bytes its HEAD announced")
                    }),
                    _ => over_limit(e, Limit::Max(max), || download_limit(max)),
                },
            )?;
            pb.finish_and_clear();
            return Ok(n);
        }
        let list = self.fetch_bytes(id, tig_core::MAX_BURST_LIST)?;
        let members = burst_members(&list)?;
        self.fetch_members_into(&members, file, max)
    }

    /// Downloads `id` (with `burst`, its members) into `<out>.part` next to
    /// `out`, verifies the whole, and renames it to `out`. With `resume`, the
    /// bytes already in `<out>.part` (from an interrupted run) are kept: a plain
    /// object continues with `Range: bytes=N-` (from the start when the server
    /// ignores ranges), a burst at its first member not complete on disk; the
    /// whole is still hashed before the rename. Without `resume` an old part
    /// file is started afresh. A transfer that breaks leaves the part file for
    /// a later `resume`; a hash mismatch removes it.
    pub fn fetch_to_path_resuming(
        &self,
        id: &ObjectId,
        burst: bool,
        out: &Path,
        resume: bool,
    ) -> Result<u64> {
        let part = part_path(out);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(!resume)
            .open(&part)
            .map_err(|e| Error::io(format!("opening {}", part.display()), e))?;
        let r = if burst {
            self.resume_burst(id, &mut file)
        } else {
            self.resume_plain(id, &mut file)
        };
        let n = match r {
            Ok(n) => n,
            Err(e) => {
                if !matches!(e, Error::Transport { .. } | Error::Unreachable { .. }) {
                    let _ = std::fs::remove_file(&part);
                }
                return Err(e);
            }
        };
        file.sync_all()
            .map_err(|e| Error::io(format!("writing {}", part.display()), e))?;
        drop(file);
        set_mode(&part, 0o644)?;
        std::fs::rename(&part, out)
            .map_err(|e| Error::io(format!("renaming into {}", out.display()), e))?;
        Ok(n)
    }

    /// A plain object into `file`, continuing after the bytes already there.
    fn resume_plain(&self, id: &ObjectId, file: &mut File) -> Result<u64> {
        let announced = self.head_len(id)?.flatten();
        let pb = progress::bar(self.cfg.progress, announced, "get");
        let r = self.retrying(id, |c| c.resume_plain_once(id, announced, file, &pb));
        pb.finish_and_clear();
        r
    }

    fn resume_plain_once(
        &self,
        id: &ObjectId,
        announced: Option<u64>,
        file: &mut File,
        pb: &ProgressBar,
    ) -> Result<u64> {
        let io = |e| Error::io("reading the part file", e);
        let mut have = file.seek(SeekFrom::End(0)).map_err(io)?;
        if announced.is_some_and(|n| have > n) {
            have = 0;
        }
        file.set_len(have)
            .map_err(|e| Error::io("truncating the part file", e))?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        let mut hasher = hash_prefix(file, have)?;
        pb.set_position(have);
        let mut resp = match self.get_from(id, have)? {
            Ranged::Rest(resp) => resp,
            Ranged::Whole(resp) => {
                file.set_len(0)
                    .map_err(|e| Error::io("truncating the part file", e))?;
                hasher = Hasher::new();
                have = 0;
                pb.set_position(0);
                resp
            }
            Ranged::NothingLeft => {
                return verified(id, hasher, have);
            }
        };
        file.seek(SeekFrom::Start(have)).map_err(io)?;
        let limit = announced.unwrap_or(u64::MAX);
        let mut w = std::io::BufWriter::with_capacity(1 << 20, &mut *file);
        let mut seen = have;
        let r = crate::http::read_body(&mut resp, &format!("GET {}", id.path()), |bytes| {
            seen += bytes.len() as u64;
            if seen > limit {
                return Err(Error::invalid(
                    id.path(),
                    format!("the server sent more than the {limit} bytes its HEAD announced"),
                ));
            }
            hasher.update(bytes);
            w.write_all(bytes)
                .map_err(|e| Error::io("writing the part file", e))?;
            pb.inc(bytes.len() as u64);
            Ok(())
        });
        // Keep what arrived for the next attempt, even when the transfer broke.
        w.flush()
            .map_err(|e| Error::io("writing the part file", e))?;
        r?;
        verified(id, hasher, seen)
    }

    /// A burst into `file`: the members complete (and matching) on disk are
    /// kept, the rest fetched from the first one that is not.
    fn resume_burst(&self, id: &ObjectId, file: &mut File) -> Result<u64> {
        let list = self.fetch_bytes(id, LIST_MAX)?;
        let members = burst_members(&list)?;
        let have = file
            .seek(SeekFrom::End(0))
            .map_err(|e| Error::io("reading the part file", e))?;
        let mut pos = 0u64;
        let mut done = 0;
        file.seek(SeekFrom::Start(0))
            .map_err(|e| Error::io("reading the part file", e))?;
        for m in &members {
            if pos >= have {
                break;
            }
            let Some(Some(len)) = self.member_client(m)?.head_len(&m.id)? else {
                break;
            };
            if pos + len > have || hash_prefix(file, len)?.finish() != m.id {
                break;
            }
            pos += len;
            done += 1;
        }
        tracing::debug!(kept = done, bytes = pos, "resuming a burst");
        file.set_len(pos)
            .map_err(|e| Error::io("truncating the part file", e))?;
        file.seek(SeekFrom::Start(pos))
            .map_err(|e| Error::io("seeking the part file", e))?;
        Ok(pos + self.fetch_members_into(&members[done..], file, u64::MAX)?)
    }

    /// The client for a burst member: its own server when the list named one.
    pub(crate) fn member_client(&self, m: &Member) -> Result<Client> {
        match &m.server {
            Some(server) if *server != self.cfg.server => self.with_server(server),
            _ => Ok(self.clone()),
        }
    }

    /// Downloads one object at the end of `file`, retrying from the same offset.
    pub(crate) fn fetch_object_into(
        &self,
        id: &ObjectId,
        touch: bool,
        file: &mut File,
        pb: &ProgressBar,
        limit: u64,
    ) -> Result<u64> {
        let start = file
            .seek(SeekFrom::End(0))
            .map_err(|e| Error::io("seeking the temp file", e))?;
        self.retrying(id, |c| {
            file.set_len(start)
                .map_err(|e| Error::io("truncating the temp file", e))?;
            file.seek(SeekFrom::Start(start))
                .map_err(|e| Error::io("seeking the temp file", e))?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, &mut *file);
            let n = c.stream_verified(id, touch, limit, pb, &mut |b| w.write_all(b))?;
            w.flush()
                .map_err(|e| Error::io("writing the temp file", e))?;
            Ok(n)
        })
    }

    /// Fetches the members of a burst in parallel (bounded), each verified, and
    /// appends them to `file` in order; more than `max` bytes in all is an error.
    fn fetch_members_into(&self, members: &[Member], file: &mut File, max: u64) -> Result<u64> {
        let pb = progress::bar(self.cfg.progress, None, "get (burst)");
        let mut total = 0u64;
        for batch in members.chunks(self.cfg.jobs * 2) {
            let slots: Vec<Option<Result<Option<Vec<u8>>>>> =
                (0..batch.len()).map(|_| None).collect();
            let next = std::sync::atomic::AtomicUsize::new(0);
            let results = std::sync::Mutex::new(slots);
            std::thread::scope(|s| {
                for _ in 0..self.cfg.jobs.min(batch.len()) {
                    s.spawn(|| {
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(m) = batch.get(i) else { break };
                            let r = self
                                .member_client(m)
                                .and_then(|c| c.fetch_small(&m.id, &pb));
                            let failed = r.is_err();
                            if let Ok(mut g) = results.lock() {
                                g[i] = Some(r);
                            }
                            if failed {
                                next.store(batch.len(), std::sync::atomic::Ordering::Relaxed);
                                break;
                            }
                        }
                    });
                }
            });
            let slots = results.into_inner().unwrap_or_else(|p| p.into_inner());
            for (i, slot) in slots.into_iter().enumerate() {
                match slot {
                    Some(Ok(Some(bytes))) => {
                        if total + bytes.len() as u64 > max {
                            return Err(Error::TooLarge {
                                what: batch[i].id.path(),
                                limit: Limit::Max(max),
                                reason: download_limit(max),
                            });
                        }
                        file.write_all(&bytes)
                            .map_err(|e| Error::io("writing the temp file", e))?;
                        total += bytes.len() as u64;
                    }
                    Some(Ok(None)) => {
                        total += self
                            .member_client(&batch[i])?
                            .fetch_object_into(&batch[i].id, true, file, &pb, max - total)
                            .map_err(|e| over_limit(e, Limit::Max(max), || download_limit(max)))?
                    }
                    Some(Err(e)) => return Err(e),
                    None => {
                        return Err(Error::invalid(
                            "burst",
                            "a member fetch was abandoned after an earlier error",
                        ));
                    }
                }
            }
        }
        pb.finish_and_clear();
        Ok(total)
    }

    /// A member into memory, or `None` when it is too large to buffer.
    fn fetch_small(&self, id: &ObjectId, pb: &ProgressBar) -> Result<Option<Vec<u8>>> {
        let mut out = Vec::new();
        let r = self.retrying(id, |c| {
            out.clear();
            c.stream_verified(id, true, MEMBER_BUFFER_MAX, pb, &mut |b| {
                out.extend_from_slice(b);
                Ok(())
            })
        });
        match r {
            Ok(_) => Ok(Some(out)),
            Err(Error::TooLarge {
                limit: Limit::Expected,
                ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Runs `f` again when the stream broke mid-body (not on a mismatch).
    pub(crate) fn retrying<T>(
        &self,
        id: &ObjectId,
        mut f: impl FnMut(&Client) -> Result<T, Error>,
    ) -> Result<T> {
        let mut attempt = 1;
        loop {
            match f(self) {
                Err(Error::Transport { what, reason }) if attempt < self.cfg.attempts => {
                    tracing::debug!(%what, %reason, attempt, "download broke, retrying");
                    std::thread::sleep(std::time::Duration::from_millis(200 << attempt.min(4)));
                    attempt += 1;
                }
                Err(Error::Transport { what, reason }) => {
                    return Err(Error::Transport {
                        what: format!("{what} ({})", id.path()),
                        reason,
                    });
                }
                other => return other,
            }
        }
    }

    /// GETs `id` and feeds its bytes to `sink` while hashing; fails if more than
    /// `limit` bytes arrive or the hash is not `id`.
    pub(crate) fn stream_verified(
        &self,
        id: &ObjectId,
        touch: bool,
        limit: u64,
        pb: &ProgressBar,
        sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<u64> {
        let (n, actual) = self.stream_hashed(id, touch, limit, pb, sink)?;
        if actual != *id {
            return Err(Error::Mismatch {
                what: id.path(),
                expected: *id,
                actual,
            });
        }
        Ok(n)
    }

    /// GETs `id` and feeds its bytes to `sink`; returns their count and hash.
    pub(crate) fn stream_hashed(
        &self,
        id: &ObjectId,
        touch: bool,
        limit: u64,
        pb: &ProgressBar,
        sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<(u64, ObjectId)> {
        let mut resp = self.get(id, touch)?;
        if resp.content_length().is_some_and(|n| n > limit) {
            return Err(too_big(id));
        }
        let mut hasher = Hasher::new();
        let mut seen = 0u64;
        let n = crate::http::read_body(&mut resp, &format!("GET {}", id.path()), |bytes| {
            seen += bytes.len() as u64;
            if seen > limit {
                return Err(too_big(id));
            }
            hasher.update(bytes);
            sink(bytes).map_err(|e| Error::io("writing the downloaded bytes", e))?;
            pb.inc(bytes.len() as u64);
            Ok(())
        })?;
        Ok((n, hasher.finish()))
    }
}

fn too_big(id: &ObjectId) -> Error {
    Error::TooLarge {
        what: id.path(),
        limit: Limit::Expected,
        reason: "larger than expected".into(),
    }
}

/// One member of a burst list: the object, and the server its line names when
/// it is a full URL (a stripe spreads its members over several servers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The server base URL of a `http(s)://…/<h>.tig` line, else `None`.
    pub server: Option<String>,
    /// The object.
    pub id: ObjectId,
}

/// Parses a burst list keeping the server of every full-URL line.
pub fn burst_members(list: &[u8]) -> Result<Vec<Member>> {
    let ids = decode_burst(list)?;
    let text = String::from_utf8_lossy(list);
    let lines = text.lines().filter(|l| !l.trim().is_empty());
    Ok(ids
        .into_iter()
        .zip(lines)
        .map(|(id, line)| Member {
            server: crate::target::parse_target(line)
                .ok()
                .and_then(|t| t.server),
            id,
        })
        .collect())
}

/// `<out>.part`: where `tig get -o out` keeps the bytes until they are verified.
pub fn part_path(out: &Path) -> std::path::PathBuf {
    let mut name = out
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".part");
    out.with_file_name(name)
}

/// Hashes the next `len` bytes of `file` from its current position.
fn hash_prefix(file: &mut File, len: u64) -> Result<Hasher> {
    let mut h = Hasher::new();
    let mut r = std::io::Read::take(&mut *file, len);
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = std::io::Read::read(&mut r, &mut buf)
            .map_err(|e| Error::io("reading the part file", e))?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    if n != len {
        return Err(Error::invalid("part file", "shorter than expected"));
    }
    Ok(h)
}

/// The download is `id` exactly when the hash of all its `n` bytes is.
fn verified(id: &ObjectId, hasher: Hasher, n: u64) -> Result<u64> {
    let actual = hasher.finish();
    if actual != *id {
        return Err(Error::Mismatch {
            what: id.path(),
            expected: *id,
            actual,
        });
    }
    Ok(n)
}

/// The answer to a GET from an offset.
pub(crate) enum Ranged {
    /// 206: the bytes from the offset on.
    Rest(reqwest::blocking::Response),
    /// 200: the server sent the whole object (it ignores ranges).
    Whole(reqwest::blocking::Response),
    /// 416 at the object's end: nothing is missing.
    NothingLeft,
}

/// Gives a [`TOO_BIG`] error the reason `why`; other errors pass unchanged.
fn over_limit(e: Error, limit: Limit, why: impl FnOnce() -> String) -> Error {
    match e {
        Error::TooLarge {
            what,
            limit: Limit::Expected,
            ..
        } => Error::TooLarge {
            what,
            limit,
            reason: format!("{}; nothing written", why()),
        },
        e => e,
    }
}

fn download_limit(max: u64) -> String {
    format!(
        "the download is over its limit of {} ({max} bytes)",
        crate::size::human(max)
    )
}

/// Sets permission bits (Unix), ignoring the umask as git does for its two modes.
pub(crate) fn set_mode(path: &Path, mode: u32) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io(format!("setting the mode of {}", path.display()), e))?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}
