//! Spreading one file over several servers.
//!
//! - [`Client::put_split`] / [`Client::get_split`]: XOR-split. A pad as long as
//!   the file is drawn from the OS CSPRNG; the pad goes to server A and
//!   `file XOR pad` to server B, each cut below that server's own limit. Each
//!   server alone holds only uniformly random bytes; the reference
//!   `xor:URL_A/<pad>.tig[?burst=1],URL_B/<share>.tig[?burst=1]` names both.
//!   `get` fetches the two shares in parallel, verifies every hash, and XORs
//!   them in one streaming pass into the output: no byte of an unverified
//!   share reaches it.
//! - [`Client::put_stripe`]: content-defined chunks placed on the servers by
//!   chunk hash (a re-upload lands on the same server), uploaded in parallel;
//!   a burst list on the first server names each member by its full URL. A
//!   plain verified burst `get` of that list fetches each member from the
//!   server its line names ([`crate::fetch::burst_members`]).

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rand_core::RngCore;
use tig_core::ObjectId;

use crate::chunk::{ChunkParams, chunks};
use crate::error::{Error, Result};
use crate::http::Client;
use crate::target::{Target, parse_target};
use crate::upload::{Job, PutResult, Stats};

/// What `put --split` stored: one [`PutResult`] per share.
#[derive(Debug, Clone)]
pub struct SplitResult {
    /// The pad, on server A.
    pub pad: PutResult,
    /// `file XOR pad`, on server B.
    pub share: PutResult,
}

impl SplitResult {
    /// The reference `get` takes: `xor:A/<pad>.tig[?burst=1],B/<share>.tig[?burst=1]`.
    pub fn reference(&self, a: &str, b: &str) -> String {
        let name = |server: &str, r: &PutResult| {
            let burst = if r.burst { "?burst=1" } else { "" };
            format!("{server}{}{burst}", r.id.path())
        };
        format!("xor:{},{}", name(a, &self.pad), name(b, &self.share))
    }
}

/// Parses `xor:URL_A/<h>.tig[?burst=1],URL_B/<h>.tig[?burst=1]` (full URLs).
pub fn parse_split(s: &str) -> Result<(Target, Target)> {
    let bad = |why: &str| Error::Usage(format!("not a split reference ({why}): {s:?}"));
    let rest = s
        .trim()
        .strip_prefix("xor:")
        .ok_or_else(|| bad("expected xor:"))?;
    let (a, b) = rest
        .split_once(',')
        .ok_or_else(|| bad("expected two URLs separated by a comma"))?;
    let (a, b) = (parse_target(a)?, parse_target(b)?);
    if a.server.is_none() || b.server.is_none() {
        return Err(bad("both parts must be full URLs"));
    }
    Ok((a, b))
}

impl Client {
    /// Stores `path` XOR-split: a CSPRNG pad on `a`, `file XOR pad` on `b`.
    /// The pad and the share are spooled to temp files (removed afterwards)
    /// and uploaded in parallel, each cut below its server's limit.
    pub fn put_split(path: &Path, a: &Client, b: &Client) -> Result<SplitResult> {
        let input =
            File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        let mut input = BufReader::with_capacity(1 << 20, input);
        let mk =
            || tempfile::NamedTempFile::new().map_err(|e| Error::io("creating a temp file", e));
        let (pad_file, share_file) = (mk()?, mk()?);
        {
            let mut pad_w = BufWriter::with_capacity(1 << 20, pad_file.as_file());
            let mut share_w = BufWriter::with_capacity(1 << 20, share_file.as_file());
            let mut buf = vec![0u8; 1 << 20];
            let mut pad = vec![0u8; 1 << 20];
            loop {
                let n = input
                    .read(&mut buf)
                    .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
                if n == 0 {
                    break;
                }
                rand_core::OsRng
                    .try_fill_bytes(&mut pad[..n])
                    .map_err(|e| {
                        Error::io("drawing random bytes", std::io::Error::other(e.to_string()))
                    })?;
                pad_w
                    .write_all(&pad[..n])
                    .map_err(|e| Error::io("writing the pad", e))?;
                for (x, p) in buf[..n].iter_mut().zip(&pad[..n]) {
                    *x ^= p;
                }
                share_w
                    .write_all(&buf[..n])
                    .map_err(|e| Error::io("writing the share", e))?;
            }
            pad_w.flush().map_err(|e| Error::io("writing the pad", e))?;
            share_w
                .flush()
                .map_err(|e| Error::io("writing the share", e))?;
        }
        let (pad, share) = std::thread::scope(|s| {
            let pad = s.spawn(|| a.put_file(pad_file.path(), false));
            let share = b.put_file(share_file.path(), false);
            let pad = pad
                .join()
                .unwrap_or_else(|_| Err(Error::invalid("split", "the pad upload panicked")));
            (pad, share)
        });
        Ok(SplitResult {
            pad: pad?,
            share: share?,
        })
    }

    /// Restores a split reference into `out`: both shares fetched in parallel
    /// into anonymous temp files (each verified against its hash), then XORed
    /// in one streaming pass. Returns the byte count.
    pub fn get_split(&self, a: &Target, b: &Target, out: &mut dyn Write) -> Result<u64> {
        let client_for = |t: &Target| match &t.server {
            Some(s) => self.with_server(s),
            None => Ok(self.clone()),
        };
        let (ca, cb) = (client_for(a)?, client_for(b)?);
        let fetch = |c: &Client, t: &Target| -> Result<File> {
            let mut f = tempfile::tempfile().map_err(|e| Error::io("creating a temp file", e))?;
            c.fetch_into(&t.id, t.burst, &mut f, u64::MAX)?;
            f.seek(SeekFrom::Start(0))
                .map_err(|e| Error::io("rewinding a temp file", e))?;
            Ok(f)
        };
        let (fa, fb) = std::thread::scope(|s| {
            let ha = s.spawn(|| fetch(&ca, a));
            let fb = fetch(&cb, b);
            let fa = ha
                .join()
                .unwrap_or_else(|_| Err(Error::invalid("split", "a share download panicked")));
            (fa, fb)
        });
        let (fa, fb) = (fa?, fb?);
        let len = |f: &File| {
            f.metadata()
                .map(|m| m.len())
                .map_err(|e| Error::io("reading a temp file", e))
        };
        let (la, lb) = (len(&fa)?, len(&fb)?);
        if la != lb {
            return Err(Error::invalid(
                "split reference",
                format!("the two shares differ in length ({la} and {lb} bytes); nothing written"),
            ));
        }
        let mut ra = BufReader::with_capacity(1 << 20, fa);
        let mut rb = BufReader::with_capacity(1 << 20, fb);
        let mut ba = vec![0u8; 1 << 20];
        let mut bb = vec![0u8; 1 << 20];
        let mut left = la;
        while left > 0 {
            let n = left.min(ba.len() as u64) as usize;
            ra.read_exact(&mut ba[..n])
                .map_err(|e| Error::io("reading a share", e))?;
            rb.read_exact(&mut bb[..n])
                .map_err(|e| Error::io("reading a share", e))?;
            for (x, y) in ba[..n].iter_mut().zip(&bb[..n]) {
                *x ^= y;
            }
            out.write_all(&ba[..n])
                .map_err(|e| Error::io("writing output", e))?;
            left -= n as u64;
        }
        out.flush().map_err(|e| Error::io("writing output", e))?;
        Ok(la)
    }

    /// Stores `path` striped over `servers` (the first holds the burst list):
    /// content-defined chunks, each on the server its hash picks, uploaded in
    /// parallel; chunks are cut below the smallest of the servers' limits.
    pub fn put_stripe(path: &Path, servers: &[Client]) -> Result<PutResult> {
        let first = servers
            .first()
            .ok_or_else(|| Error::Usage("--stripe needs at least one server".into()))?;
        let size = std::fs::metadata(path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?
            .len();
        let mut limit = u64::MAX;
        for c in servers {
            limit = limit.min(c.max_size()?);
        }
        let params = ChunkParams::for_limit(limit)?;
        let file =
            File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        let stats = Stats::default();
        let source = Arc::new(path.to_path_buf());
        let job = |data: Bytes| Job {
            data,
            id: None,
            source: Arc::clone(&source),
            ask: true,
        };
        let pick = |id: &ObjectId| {
            let b = id.as_bytes();
            let n = u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
            (n % servers.len() as u64) as usize
        };
        let jobs = first.cfg.jobs * servers.len();
        let (tx, rx) = sync_channel::<(usize, Bytes)>(jobs * 2);
        let rx = Mutex::new(rx);
        let placed: Mutex<Vec<Option<(usize, ObjectId)>>> = Mutex::new(Vec::new());
        let failure: Mutex<Option<Error>> = Mutex::new(None);
        let abort = AtomicBool::new(false);
        let produced = std::thread::scope(|s| {
            for _ in 0..jobs {
                s.spawn(|| {
                    loop {
                        let job = match rx.lock() {
                            Ok(r) => r.recv(),
                            Err(_) => break,
                        };
                        let Ok((seq, data)) = job else { break };
                        if abort.load(Ordering::Relaxed) {
                            break;
                        }
                        let id = ObjectId::digest(&data);
                        let at = pick(&id);
                        let job = Job {
                            data,
                            id: Some(id),
                            source: Arc::clone(&source),
                            ask: true,
                        };
                        match servers[at].upload_one(job, &stats) {
                            Ok(id) => {
                                if let Ok(mut v) = placed.lock() {
                                    if v.len() <= seq {
                                        v.resize(seq + 1, None);
                                    }
                                    v[seq] = Some((at, id));
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
            let mut seq = 0usize;
            let mut r = Ok(());
            for chunk in chunks(file, params) {
                if abort.load(Ordering::Relaxed) {
                    break;
                }
                match chunk {
                    Ok(c) => {
                        if tx.send((seq, Bytes::from(c))).is_err() {
                            break;
                        }
                        seq += 1;
                    }
                    Err(e) => {
                        abort.store(true, Ordering::Relaxed);
                        r = Err(e);
                        break;
                    }
                }
            }
            drop(tx);
            r.map(|()| seq)
        });
        if let Some(e) = failure.into_inner().ok().flatten() {
            return Err(e);
        }
        let count = produced?;
        let placed = placed.into_inner().unwrap_or_default();
        let mut lines = Vec::with_capacity(count.max(1));
        for i in 0..count {
            let (at, id) = placed
                .get(i)
                .copied()
                .flatten()
                .ok_or_else(|| Error::invalid("stripe", "an upload worker stopped early"))?;
            lines.push(format!("{}{}\n", servers[at].cfg.server, id.path()));
        }
        if lines.is_empty() {
            let id = first.upload_one(job(Bytes::new()), &stats)?;
            lines.push(format!("{}{}\n", first.cfg.server, id.path()));
        }
        let list = lines.concat();
        if list.len() as u64 > first.max_size()? {
            return Err(Error::Usage(format!(
                "the stripe's burst list ({} bytes) is over the first server's limit",
                list.len()
            )));
        }
        let id = first.upload_one(job(Bytes::from(list.into_bytes())), &stats)?;
        Ok(PutResult {
            id,
            burst: true,
            size,
            chunks: lines.len() as u64,
            counts: stats.counts(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_references_parse_and_refuse_partial_ones() {
        let h = "ab".repeat(32);
        let (a, b) = parse_split(&format!(
            "xor:http://127.0.0.1:1/{h}.tig?burst=1,https://h/p/{h}.tig"
        ))
        .unwrap();
        assert_eq!(a.server.as_deref(), Some("http://127.0.0.1:1"));
        assert!(a.burst && !b.burst);
        assert_eq!(b.server.as_deref(), Some("https://h/p"));
        for bad in [
            format!("http://a/{h}.tig,http://b/{h}.tig"),
            format!("xor:http://a/{h}.tig"),
            format!("xor:/{h}.tig,http://b/{h}.tig"),
        ] {
            assert!(parse_split(&bad).is_err(), "{bad}");
        }
    }
}
