//! Moving a feed's ref by compare-and-swap with git's own lock-file protocol.
//!
//! libgit2's `reference_matching` does the same steps, but it leaves the new
//! value in a delayed-allocation page when it renames `<ref>.lock` over the old
//! ref file. On ext4 (the default `auto_da_alloc` mount option) a rename that
//! replaces a file with such pages forces their write-out first, and that costs
//! about 1.2 ms of a 6 ms `tig feed append` process on the reference machine.
//! Reserving the lock file's block with `fallocate` before writing avoids it;
//! the steps and their atomicity are otherwise exactly git's:
//!
//! 1. create `<gitdir>/<ref>.lock` with `O_CREAT|O_EXCL` (held by whoever made it:
//!    git, libgit2 or another tig);
//! 2. read the ref's current value (loose file or `packed-refs`) and compare it
//!    with the expected one;
//! 3. write `<hex>\n` into the lock file and rename it over the ref.
//!
//! A ref whose updates must be logged (a reflog exists, or the repository logs
//! ref updates, as non-bare repositories do by default) goes through libgit2,
//! which writes the reflog too.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use git2::{ErrorCode, Oid, Repository};

/// Why a compare-and-swap did not happen.
#[derive(Debug)]
pub(crate) enum SwapError {
    /// The ref is locked by another writer, or does not hold the expected value.
    Conflict,
    /// Any other failure.
    Git(git2::Error),
    /// A file operation failed.
    Io(String, std::io::Error),
}

impl From<git2::Error> for SwapError {
    fn from(e: git2::Error) -> Self {
        SwapError::Git(e)
    }
}

/// Moves the direct ref `name` (e.g. `refs/heads/<feed>`) from `old` (`None`:
/// the ref must not exist) to `new`, atomically with respect to every git
/// implementation that honours ref lock files.
pub(crate) fn compare_and_swap(
    repo: &Repository,
    name: &str,
    old: Option<Oid>,
    new: Oid,
    msg: &str,
) -> Result<(), SwapError> {
    // A symbolic ref (an alias where a feed's ref should be) is libgit2's to
    // refuse; writing through it here would replace it with a direct ref.
    let symbolic = repo
        .find_reference(name)
        .is_ok_and(|r| r.kind() == Some(git2::ReferenceType::Symbolic));
    if symbolic || logs_updates(repo, name) {
        return via_libgit2(repo, name, old, new, msg);
    }
    // refs/ live in the common directory (the main one for a linked worktree)
    let path = repo.commondir().join(name);
    let lock = LockFile::create(&path)?;
    let current = match repo.refname_to_id(name) {
        Ok(id) => Some(id),
        Err(e) if e.code() == ErrorCode::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    if current != old {
        return Err(SwapError::Conflict);
    }
    lock.commit(format!("{new}\n").as_bytes())
}

/// Whether libgit2 would append to a reflog for this update.
fn logs_updates(repo: &Repository, name: &str) -> bool {
    if repo.commondir().join("logs").join(name).exists() {
        return true;
    }
    let configured = repo
        .config()
        .ok()
        .and_then(|c| c.get_string("core.logAllRefUpdates").ok());
    match configured
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("false" | "no" | "off" | "0") => false,
        Some(_) => true,
        // git's default: log in repositories with a work tree.
        None => !repo.is_bare(),
    }
}

fn via_libgit2(
    repo: &Repository,
    name: &str,
    old: Option<Oid>,
    new: Oid,
    msg: &str,
) -> Result<(), SwapError> {
    let res = match old {
        None => repo.reference(name, new, false, msg).map(|_| ()),
        Some(o) => repo.reference_matching(name, new, true, o, msg).map(|_| ()),
    };
    res.map_err(|e| match e.code() {
        ErrorCode::Exists | ErrorCode::Modified | ErrorCode::Locked | ErrorCode::NotFound => {
            SwapError::Conflict
        }
        _ => SwapError::Git(e),
    })
}

/// `<path>.lock`, removed on drop unless committed.
struct LockFile {
    target: PathBuf,
    lock: PathBuf,
    file: Option<File>,
}

impl LockFile {
    fn create(target: &Path) -> Result<LockFile, SwapError> {
        let mut lock = target.as_os_str().to_owned();
        lock.push(".lock");
        let lock = PathBuf::from(lock);
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| SwapError::Io(format!("create {}", dir.display()), e))?;
        }
        match OpenOptions::new().write(true).create_new(true).open(&lock) {
            Ok(file) => Ok(LockFile {
                target: target.to_path_buf(),
                lock,
                file: Some(file),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(SwapError::Conflict),
            Err(e) => Err(SwapError::Io(format!("create {}", lock.display()), e)),
        }
    }

    /// Writes `contents` and renames the lock file over the target.
    fn commit(mut self, contents: &[u8]) -> Result<(), SwapError> {
        let io = |what: &str, e| SwapError::Io(format!("{what} {}", self.lock.display()), e);
        let mut file = self.file.take().expect("a lock file is committed once");
        reserve(&file, contents.len());
        file.write_all(contents).map_err(|e| io("write", e))?;
        drop(file);
        std::fs::rename(&self.lock, &self.target).map_err(|e| io("rename", e))?;
        self.lock.clear();
        Ok(())
    }
}

impl Drop for LockFile {
    fn drop(&mut self) {
        if !self.lock.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.lock);
        }
    }
}

/// Allocates the file's blocks up front, so that renaming it over an existing
/// file does not force a write-out (ext4 `auto_da_alloc`). Best effort: a file
/// system without `fallocate` simply takes the slower path.
#[cfg(target_os = "linux")]
fn reserve(file: &File, len: usize) {
    let _ = rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), 0, len as u64);
}

#[cfg(not(target_os = "linux"))]
fn reserve(_file: &File, _len: usize) {}

#[cfg(test)]
mod tests {
    use super::*;

    fn bare() -> (tempfile::TempDir, Repository) {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        (dir, repo)
    }

    fn empty_commit(repo: &Repository, parent: Option<Oid>) -> Oid {
        let sig = git2::Signature::new("t", "t@t", &git2::Time::new(0, 0)).unwrap();
        let tree = repo
            .find_tree(repo.treebuilder(None).unwrap().write().unwrap())
            .unwrap();
        let parents: Vec<git2::Commit<'_>> = parent
            .iter()
            .map(|p| repo.find_commit(*p).unwrap())
            .collect();
        let refs: Vec<&git2::Commit<'_>> = parents.iter().collect();
        repo.commit(None, &sig, &sig, "m", &tree, &refs).unwrap()
    }

    #[test]
    fn creates_moves_and_refuses_stale_values() {
        let (_d, repo) = bare();
        let a = empty_commit(&repo, None);
        let b = empty_commit(&repo, Some(a));
        let name = "refs/heads/feed";
        compare_and_swap(&repo, name, None, a, "t").unwrap();
        assert_eq!(repo.refname_to_id(name).unwrap(), a);
        assert!(matches!(
            compare_and_swap(&repo, name, None, b, "t"),
            Err(SwapError::Conflict)
        ));
        compare_and_swap(&repo, name, Some(a), b, "t").unwrap();
        assert!(matches!(
            compare_and_swap(&repo, name, Some(a), b, "t"),
            Err(SwapError::Conflict)
        ));
        assert_eq!(repo.refname_to_id(name).unwrap(), b);
        assert!(!repo.path().join("refs/heads/feed.lock").exists());
        assert!(!repo.path().join("logs").join(name).exists());
    }

    #[test]
    fn a_held_lock_is_a_conflict_and_is_left_alone() {
        let (_d, repo) = bare();
        let a = empty_commit(&repo, None);
        let lock = repo.path().join("refs/heads/feed.lock");
        std::fs::write(&lock, b"held by someone else\n").unwrap();
        assert!(matches!(
            compare_and_swap(&repo, "refs/heads/feed", None, a, "t"),
            Err(SwapError::Conflict)
        ));
        assert_eq!(std::fs::read(&lock).unwrap(), b"held by someone else\n");
    }

    #[test]
    fn packed_refs_count_as_the_current_value() {
        let (_d, repo) = bare();
        let a = empty_commit(&repo, None);
        let b = empty_commit(&repo, Some(a));
        std::fs::write(
            repo.path().join("packed-refs"),
            format!("# pack-refs with: peeled fully-peeled sorted \n{a} refs/heads/feed\n"),
        )
        .unwrap();
        assert!(matches!(
            compare_and_swap(&repo, "refs/heads/feed", None, b, "t"),
            Err(SwapError::Conflict)
        ));
        compare_and_swap(&repo, "refs/heads/feed", Some(a), b, "t").unwrap();
        assert_eq!(repo.refname_to_id("refs/heads/feed").unwrap(), b);
    }

    #[test]
    fn a_symbolic_ref_is_not_overwritten() {
        let (_d, repo) = bare();
        let a = empty_commit(&repo, None);
        let b = empty_commit(&repo, Some(a));
        repo.reference("refs/heads/real", a, false, "t").unwrap();
        repo.reference_symbolic("refs/heads/feed", "refs/heads/real", false, "t")
            .unwrap();
        let _ = compare_and_swap(&repo, "refs/heads/feed", Some(a), b, "t");
        let r = repo.find_reference("refs/heads/feed").unwrap();
        assert_eq!(r.kind(), Some(git2::ReferenceType::Symbolic));
    }

    #[test]
    fn repositories_that_log_updates_keep_their_reflog() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        let a = empty_commit(&repo, None);
        let b = empty_commit(&repo, Some(a));
        compare_and_swap(&repo, "refs/heads/feed", None, a, "first").unwrap();
        compare_and_swap(&repo, "refs/heads/feed", Some(a), b, "second").unwrap();
        let log = repo.reflog("refs/heads/feed").unwrap();
        assert_eq!(log.len(), 2);
        assert_eq!(log.get(0).unwrap().message().unwrap(), Some("second"));
    }
}
