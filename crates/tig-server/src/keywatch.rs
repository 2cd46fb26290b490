//! Knowing, without a `stat` per request, that the key file has not changed.
//!
//! Every request that needs the key checks `<root>/apikey`, so that a key
//! written while the server runs applies at once. A `stat` for that is not free
//! where the filesystem keeps no record of a missing name (tmpfs): each one takes
//! the directory's lock, which every object published into the same directory
//! takes too, and under a load of small `PUT`s the checks queued behind the
//! publishes (a quarter of the server's time per `PUT` on tmpfs).
//!
//! On Linux an inotify watch answers instead. The kernel queues an event inside
//! the very syscall that creates, writes, renames, deletes or re-permits the
//! file, so a check that drains the queue and finds nothing naming the file
//! knows that the last `stat` still holds; anything else (an event for it, a
//! lost queue) sends the check back to `stat`. The directory is watched for the
//! name, the file itself for writes through any of its links.
//!
//! No watch is used where it could miss a change: outside Linux, on filesystems
//! that other machines may change (NFS and the like: only local filesystems
//! listed in [`LOCAL`] are trusted), when the key file is a symlink (its target
//! may change where nobody watches), and once the directory itself goes away.

use std::ffi::OsString;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};

/// Filesystems whose changes all pass through this kernel: tmpfs, ext2/3/4,
/// xfs, btrfs (`statfs` magic numbers).
const LOCAL: [u64; 4] = [0x0102_1994, 0xEF53, 0x5846_5342, 0x9123_683E];

/// A watch on one file, by its directory and (while it exists) its inode.
#[derive(Debug)]
pub(crate) struct Watch {
    fd: OwnedFd,
    dir: i32,
    path: PathBuf,
    name: OsString,
}

/// What a check found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Seen {
    /// Nothing touched the file since the last check.
    Nothing,
    /// The file may have changed: `stat` it again.
    Changed,
    /// The watch can no longer tell (directory gone, the file became a symlink,
    /// an error): `stat` on every check from now on.
    Lost,
}

impl Watch {
    /// Starts watching `path`; `None` where a watch could miss a change (see the
    /// module docs) or inotify is not available. Start it before the `stat`
    /// whose answer it is meant to keep valid.
    pub(crate) fn new(path: &Path) -> Option<Self> {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty())?;
        let name = path.file_name()?.to_os_string();
        let fs = rustix::fs::statfs(dir).ok()?;
        #[allow(clippy::unnecessary_cast)] // `f_type`'s width differs by target
        if !LOCAL.contains(&(fs.f_type as u64)) {
            return None;
        }
        let fd = inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC).ok()?;
        let on_dir = WatchFlags::CREATE
            | WatchFlags::MOVED_TO
            | WatchFlags::MOVED_FROM
            | WatchFlags::DELETE
            | WatchFlags::MODIFY
            | WatchFlags::ATTRIB
            | WatchFlags::CLOSE_WRITE
            | WatchFlags::DELETE_SELF
            | WatchFlags::MOVE_SELF
            | WatchFlags::ONLYDIR;
        let dir = inotify::add_watch(&fd, dir, on_dir).ok()?;
        let w = Self {
            fd,
            dir,
            path: path.to_path_buf(),
            name,
        };
        w.watch_file().ok()?;
        Some(w)
    }

    /// Watches the file's inode too, so that a write through another hard link
    /// is seen; fails when the file is a symlink.
    fn watch_file(&self) -> Result<(), ()> {
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) if m.file_type().is_symlink() => Err(()),
            Ok(_) => {
                let on_file = WatchFlags::MODIFY
                    | WatchFlags::ATTRIB
                    | WatchFlags::CLOSE_WRITE
                    | WatchFlags::DELETE_SELF
                    | WatchFlags::MOVE_SELF
                    | WatchFlags::DONT_FOLLOW;
                match inotify::add_watch(&self.fd, &self.path, on_file) {
                    Ok(_) => Ok(()),
                    // Gone again since: the directory watch saw that.
                    Err(rustix::io::Errno::NOENT) => Ok(()),
                    Err(_) => Err(()),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(_) => Err(()),
        }
    }

    /// Drains the queued events and says whether any may concern the file.
    pub(crate) fn check(&mut self) -> Seen {
        let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
        let mut events = inotify::Reader::new(&self.fd, &mut buf);
        let mut changed = false;
        loop {
            match events.next() {
                Ok(e) => {
                    let flags = e.events();
                    if flags.contains(ReadFlags::QUEUE_OVERFLOW) {
                        changed = true;
                    } else if e.wd() != self.dir {
                        // Only the file's inodes are watched besides the
                        // directory (a replaced one's until it is freed).
                        changed = true;
                    } else if flags.intersects(
                        ReadFlags::DELETE_SELF | ReadFlags::MOVE_SELF | ReadFlags::IGNORED,
                    ) {
                        return Seen::Lost;
                    } else if e
                        .file_name()
                        .is_some_and(|n| n.to_bytes() == self.name.as_bytes())
                    {
                        changed = true;
                    }
                }
                Err(rustix::io::Errno::AGAIN) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => return Seen::Lost,
            }
        }
        if !changed {
            return Seen::Nothing;
        }
        match self.watch_file() {
            Ok(()) => Seen::Changed,
            Err(()) => Seen::Lost,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory on tmpfs (where the watch matters most) when there is one.
    fn scratch() -> tempfile::TempDir {
        match tempfile::tempdir_in("/dev/shm") {
            Ok(d) => d,
            Err(_) => tempfile::tempdir().expect("tempdir"),
        }
    }

    #[test]
    fn sees_every_way_the_file_changes_and_nothing_else() {
        let dir = scratch();
        let path = dir.path().join("apikey");
        let Some(mut w) = Watch::new(&path) else {
            panic!("no watch on {}", dir.path().display());
        };
        assert_eq!(w.check(), Seen::Nothing);

        // Other names in the directory are not the file.
        std::fs::write(dir.path().join("other.tig"), "x").unwrap();
        std::fs::rename(dir.path().join("other.tig"), dir.path().join("moved.tig")).unwrap();
        assert_eq!(w.check(), Seen::Nothing);

        std::fs::write(&path, "abc\n").unwrap();
        assert_eq!(w.check(), Seen::Changed);
        assert_eq!(w.check(), Seen::Nothing);

        // A write through another link, in another directory.
        let elsewhere = tempfile::tempdir_in(dir.path()).unwrap();
        let link = elsewhere.path().join("same-inode");
        std::fs::hard_link(&path, &link).unwrap();
        // (The new link changes the inode's link count: seen, harmlessly.)
        assert_ne!(w.check(), Seen::Lost);
        std::fs::write(&link, "xyz\n").unwrap();
        assert_eq!(w.check(), Seen::Changed);

        // Replaced by rename, then permissions, then removed.
        std::fs::write(dir.path().join("new"), "def\n").unwrap();
        assert_eq!(w.check(), Seen::Nothing);
        std::fs::rename(dir.path().join("new"), &path).unwrap();
        assert_eq!(w.check(), Seen::Changed);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(w.check(), Seen::Changed);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(w.check(), Seen::Changed);
        assert_eq!(w.check(), Seen::Nothing);

        // A symlink's target can change unseen: the watch gives up.
        std::os::unix::fs::symlink(&link, &path).unwrap();
        assert_eq!(w.check(), Seen::Lost);
    }

    #[test]
    fn no_watch_on_a_symlinked_key_or_without_a_directory() {
        let dir = scratch();
        let path = dir.path().join("apikey");
        std::os::unix::fs::symlink(dir.path().join("target"), &path).unwrap();
        assert!(Watch::new(&path).is_none());
        assert!(Watch::new(Path::new("apikey")).is_none());
        assert!(Watch::new(&dir.path().join("missing-dir/apikey")).is_none());
    }

    #[test]
    fn a_removed_directory_loses_the_watch() {
        let dir = scratch();
        let sub = dir.path().join("root");
        std::fs::create_dir(&sub).unwrap();
        let mut w = Watch::new(&sub.join("apikey")).expect("watch");
        std::fs::remove_dir(&sub).unwrap();
        assert_eq!(w.check(), Seen::Lost);
    }
}
