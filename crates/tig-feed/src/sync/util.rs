//! Small helpers shared by the sync submodules: the tips a store holds for a
//! feed, sequence numbers, a self-removing temporary directory.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use git2::{Oid, Repository};

use super::SyncError;

/// Namespace that holds fetched tips until they are validated.
pub(crate) const INCOMING: &str = "refs/tig/incoming";

/// Every ref that holds a tip of `feed` (given as its hex id): `refs/heads/<feed>`,
/// `refs/remotes/<anything>/<feed>`, in that order, each peeled to a commit id.
pub(crate) fn feed_tips(repo: &Repository, feed: &str) -> Result<Vec<(String, Oid)>, SyncError> {
    let mut tips = Vec::new();
    let head = format!("refs/heads/{feed}");
    if let Ok(r) = repo.find_reference(&head)
        && let Ok(c) = r.peel_to_commit()
    {
        tips.push((head, c.id()));
    }
    let suffix = format!("/{feed}");
    for r in repo.references_glob("refs/remotes/*")? {
        let r = r?;
        let Ok(name) = r.name() else { continue };
        if !name.ends_with(&suffix) {
            continue;
        }
        if let Ok(c) = r.peel_to_commit() {
            tips.push((name.to_string(), c.id()));
        }
    }
    Ok(tips)
}

/// What makes a message itself: SHA-256 (hex) of its signed payload, the commit
/// minus its signature. Two commits with the same value are the same message in
/// two encodings (a re-wrapped or re-armoured signature, which anyone can make),
/// never an equivocation. An unparsable commit stands for itself (its id).
pub(crate) fn message_digest(repo: &Repository, commit: Oid) -> Result<String, SyncError> {
    use sha2::{Digest, Sha256};
    let odb = repo.odb()?;
    let obj = odb.read(commit)?;
    Ok(match crate::commit::parse(obj.data()) {
        Ok(parsed) => hex::encode(Sha256::digest(&parsed.payload)),
        Err(_) => commit.to_string(),
    })
}

/// Sequence number of `commit` in its log: 1 for a first message.
pub(crate) fn sequence(repo: &Repository, commit: Oid) -> Result<u64, SyncError> {
    let mut walk = repo.revwalk()?;
    walk.simplify_first_parent()?;
    walk.push(commit)?;
    let mut n = 0u64;
    for oid in walk {
        oid?;
        n += 1;
    }
    Ok(n)
}

/// A message's content: the commit message minus the one newline stored after
/// it (the feed layer's convention, and what `echo … | git commit-tree` writes).
pub(crate) fn content(commit: &git2::Commit<'_>) -> String {
    let raw = commit.message_raw_bytes();
    let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
    String::from_utf8_lossy(raw).into_owned()
}

/// First line of a message's content, shortened for one-line displays.
pub(crate) fn summary(content: &str, max: usize) -> String {
    let line = content.lines().next().unwrap_or("");
    if line.chars().count() <= max {
        line.to_string()
    } else {
        let mut s: String = line.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

/// A unique-enough token for temporary names (pid, time, counter).
pub(crate) fn nonce() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{}-{:x}-{}",
        std::process::id(),
        t,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A temporary directory removed (with its contents) when dropped.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(prefix: &str) -> Result<TempDir, SyncError> {
        let path = std::env::temp_dir().join(format!("{prefix}-{}", nonce()));
        std::fs::create_dir(&path).map_err(|e| SyncError::io(&path, e))?;
        Ok(TempDir(path))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A pack this process indexed into `objects/pack`, known by its name, so that
/// undoing a failed pull removes exactly that pack and never one a concurrent
/// `tig feed append --batch` or pull wrote meanwhile.
#[derive(Debug)]
pub(crate) struct WrittenPack {
    /// `objects/pack/pack-<name>` without the extension.
    stem: std::path::PathBuf,
    /// The same pack (same bytes, so the same name) was already there before
    /// this process wrote it: someone else may rely on it, so it is kept.
    preexisting: bool,
}

impl WrittenPack {
    /// Remove this pack (its `.pack`, `.idx` and `.rev` files) unless the same
    /// pack was already in the store before this process wrote it.
    pub(crate) fn remove(self) {
        if self.preexisting {
            return;
        }
        for ext in ["idx", "rev", "pack"] {
            let _ = std::fs::remove_file(self.stem.with_extension(ext));
        }
    }
}

/// Indexes the pack written into it into `objects/pack` (re-hashing every
/// object, resolving thin-pack bases from the object database), then names it:
/// [`PackIndexer::finish`] returns the [`WrittenPack`].
///
/// On failure nothing is left behind: libgit2's indexer removes its own
/// temporary file when dropped uncommitted, and no other file in
/// `objects/pack` is touched.
pub(crate) struct PackIndexer<'odb> {
    dir: PathBuf,
    indexer: git2::Indexer<'odb>,
    /// The last 20 bytes written: the pack's SHA-1 trailer, which names it.
    tail: [u8; 20],
    written: u64,
}

impl<'odb> PackIndexer<'odb> {
    /// Start indexing into `repo`'s `objects/pack`.
    pub(crate) fn new(
        repo: &Repository,
        odb: &git2::Odb<'odb>,
    ) -> Result<PackIndexer<'odb>, git2::Error> {
        let dir = repo.path().join("objects").join("pack");
        let indexer = git2::Indexer::new(Some(odb), &dir, 0, false)?;
        Ok(PackIndexer {
            dir,
            indexer,
            tail: [0; 20],
            written: 0,
        })
    }

    /// Resolve the last deltas, write the index, and return the pack by name.
    pub(crate) fn finish(self) -> Result<WrittenPack, git2::Error> {
        let expected = hex::encode(self.tail);
        let existed = self.written >= 20 && self.dir.join(format!("pack-{expected}.pack")).exists();
        let name = self.indexer.commit()?;
        Ok(WrittenPack {
            stem: self.dir.join(format!("pack-{name}")),
            // a name other than the trailer means we cannot tell: keep it
            // (unreferenced garbage for `git gc`, never someone else's data lost)
            preexisting: existed || name != expected,
        })
    }
}

impl std::io::Write for PackIndexer<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = std::io::Write::write(&mut self.indexer, buf)?;
        let got = &buf[..n];
        if got.len() >= 20 {
            self.tail.copy_from_slice(&got[got.len() - 20..]);
        } else {
            self.tail.rotate_left(got.len());
            self.tail[20 - got.len()..].copy_from_slice(got);
        }
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
