//! `backup DEST_DIR`: mirror every object a server lists into a local directory that
//! `tig serve --root DEST_DIR` can serve, fetching only what is missing.
//!
//! Content objects are verified (their bytes hash to their name) before they appear.
//! Key-value slots cannot be verified (a slot's name is the hash of a key, not of its
//! bytes) — nor told apart from tampered content; they are kept, and counted apart.

use std::path::Path;

use indicatif::ProgressBar;
use tig_core::ObjectId;

use crate::error::{Error, Result};
use crate::fetch::set_mode;
use crate::http::Client;
use crate::progress;

/// What a backup run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct BackupResult {
    /// Objects the server listed.
    pub listed: u64,
    /// Already in DEST_DIR: not fetched.
    pub present: u64,
    /// Fetched in this run.
    pub fetched: u64,
    /// Bytes fetched.
    pub fetched_bytes: u64,
    /// Of those fetched: content whose hash matched its name.
    pub verified: u64,
    /// Of those fetched: bytes not hashing to their name (key-value slots, which
    /// cannot be verified, or tampered content).
    pub unverifiable: u64,
    /// Listed but gone before we fetched them (expired by retention).
    pub vanished: u64,
}

impl Client {
    /// Mirrors the server into `dest` (created if absent). Objects already there are
    /// skipped, except that with `refresh_slots` local files whose bytes do not hash
    /// to their name (key-value slots, which change) are fetched again.
    pub fn backup(&self, dest: &Path, refresh_slots: bool) -> Result<BackupResult> {
        let listed = self.list()?;
        std::fs::create_dir_all(dest)
            .map_err(|e| Error::io(format!("creating {}", dest.display()), e))?;
        let mut res = BackupResult {
            listed: listed.len() as u64,
            ..Default::default()
        };
        let missing: Vec<ObjectId> = listed
            .into_iter()
            .filter(|id| {
                let local = dest.join(id.file_name());
                !local.exists()
                    || (refresh_slots
                        && crate::upload::hash_file(&local, &ProgressBar::hidden())
                            .is_ok_and(|h| h != *id))
            })
            .collect();
        res.present = res.listed - missing.len() as u64;
        let pb = progress::bar(self.cfg.progress, None, "backup");
        let done = self.parallel(&missing, |id| self.backup_one(id, dest, &pb));
        pb.finish_and_clear();
        for one in done? {
            match one {
                Some((n, verified)) => {
                    res.fetched += 1;
                    res.fetched_bytes += n;
                    if verified {
                        res.verified += 1;
                    } else {
                        res.unverifiable += 1;
                    }
                }
                None => res.vanished += 1,
            }
        }
        Ok(res)
    }

    /// Fetches one object into `dest/<h>.tig` via a temp file, without refreshing
    /// its retention timer. `None` when the server no longer has it; otherwise the
    /// size and whether it hashed to its name.
    fn backup_one(
        &self,
        id: &ObjectId,
        dest: &Path,
        pb: &ProgressBar,
    ) -> Result<Option<(u64, bool)>> {
        let mut tmp = tempfile::Builder::new()
            .prefix(".tig-backup-")
            .tempfile_in(dest)
            .map_err(|e| Error::io(format!("creating a temp file in {}", dest.display()), e))?;
        let r = self.retrying(id, |c| {
            let f = tmp.as_file_mut();
            f.set_len(0)
                .map_err(|e| Error::io("truncating the temp file", e))?;
            std::io::Seek::rewind(f).map_err(|e| Error::io("seeking the temp file", e))?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, &mut *f);
            let r = c.stream_hashed(id, false, u64::MAX, pb, &mut |b| {
                std::io::Write::write_all(&mut w, b)
            })?;
            std::io::Write::flush(&mut w).map_err(|e| Error::io("writing the temp file", e))?;
            Ok(r)
        });
        let (n, actual) = match r {
            Ok(v) => v,
            Err(Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let ok = actual == *id;
        if !ok {
            tracing::debug!(object = %id.path(), "not hash-verifiable (a key-value slot, or tampered content): kept as is");
        }
        let out = dest.join(id.file_name());
        tmp.as_file()
            .sync_all()
            .map_err(|e| Error::io(format!("writing {}", out.display()), e))?;
        set_mode(tmp.path(), 0o644)?;
        tmp.persist(&out)
            .map_err(|e| Error::io(format!("writing {}", out.display()), e.error))?;
        Ok(Some((n, ok)))
    }
}
