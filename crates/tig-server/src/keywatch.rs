//! Knowing, without a `stat` per request, that the key file has not changed.
//!
//! Every request that needs the key checks `<root>/apikey`, so that a key
//! written while the server runs applies at once. A `stat` for that is not free
//! where the filesystem keeps no record of a missing name (tmpfs): each one takes
//! the directory's lock, which every object published into the same directory
//! takes too, and under a load of small `PUT`s the checks queued behind the
//! publishes (a fifth of the server's CPU per `PUT` on tmpfs: 58-63 against
//! 45-50 us with the key in `APIKEY`, BENCHMARKS.md).
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
//! may change where nobody watches) or lives on another filesystem than its
//! directory (a file mounted in), and once the directory is removed or renamed.
//! The directory watched is the one the root's path names at the first check, as
//! the store's temp directory is opened once at start: a root path re-pointed
//! under a running server (a symlink swapped, a mount over it) is not followed by
//! either. (Checking it per request, a `stat` of the root, cost 5-11 us per `PUT`
//! on tmpfs, most of what the watch saves.) Writes through a shared `mmap`
//! raise no inotify event; nobody edits a key that way.

use std::ffi::OsString;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};

/// Filesystems whose changes all pass through this kernel: tmpfs, ext2/3/4,
/// xfs, btrfs (`statfs` magic numbers).
const LOCAL: [u32; 4] = [0x0102_1994, 0xEF53, 0x5846_5342, 0x9123_683E];

/// A watch on one file, by its directory and (while it exists) its inode.
#[derive(Debug)]
pub(crate) struct Watch {
    fd: OwnedFd,
    /// The directory's watch descriptor.
    dir: i32,
    /// The directory's device: the file must be on the same.
    dir_dev: u64,
    path: PathBuf,
    name: OsString,
    /// Where events are read: a publish queues one, and a queue that filled
    /// while no write drained it (16,384 events by default, ~1.5 MiB) is read
    /// in a few calls, under the key lock.
    buf: Box<[MaybeUninit<u8>]>,
}

/// Bytes read from the queue per call.
const READ_BUF: usize = 64 * 1024;

/// What a check found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Seen {
    /// Nothing touched the file since the last check.
    Nothing,
    /// The file may have changed: `stat` it again.
    Changed,
    /// The watch can no longer tell (the directory removed or renamed, the
    /// file a symlink or from another filesystem, an error): `stat` on every
    /// check from now on.
    Lost,
}

impl Watch {
    /// Starts watching `path`; `None` where a watch could miss a change (see the
    /// module docs) or inotify is not available. Start it before the `stat`
    /// whose answer it is meant to keep valid.
    pub(crate) fn new(path: &Path) -> Option<Self> {
        let dir_path = path.parent().filter(|d| !d.as_os_str().is_empty())?;
        let name = path.file_name()?.to_os_string();
        let fs = rustix::fs::statfs(dir_path).ok()?;
        // `f_type`'s type differs by target; every listed magic fits 32 bits.
        #[allow(clippy::unnecessary_cast)]
        if !LOCAL.contains(&(fs.f_type as u32)) {
            return None;
        }
        let fd = inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC).ok()?;
        // Changes to the file's bytes and mode are reported by its own watch
        // (`watch_file`); the directory's is for the name, and for itself.
        let on_dir = WatchFlags::CREATE
            | WatchFlags::MOVED_TO
            | WatchFlags::MOVED_FROM
            | WatchFlags::DELETE
            | WatchFlags::DELETE_SELF
            | WatchFlags::MOVE_SELF
            | WatchFlags::ONLYDIR;
        let dir = inotify::add_watch(&fd, dir_path, on_dir).ok()?;
        let dir_dev = std::fs::metadata(dir_path).ok()?.dev();
        let w = Self {
            fd,
            dir,
            dir_dev,
            path: path.to_path_buf(),
            name,
            buf: vec![MaybeUninit::uninit(); READ_BUF].into_boxed_slice(),
        };
        w.watch_file().then_some(w)
    }

    /// The file this watch is for.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Watches the file's inode too, so that a write through another hard link
    /// is seen; `false` when the file cannot be watched that way (a symlink,
    /// another filesystem, an error).
    fn watch_file(&self) -> bool {
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) if m.file_type().is_symlink() || m.dev() != self.dir_dev => false,
            Ok(_) => {
                let on_file = WatchFlags::MODIFY
                    | WatchFlags::ATTRIB
                    | WatchFlags::CLOSE_WRITE
                    | WatchFlags::DELETE_SELF
                    | WatchFlags::MOVE_SELF
                    | WatchFlags::DONT_FOLLOW;
                match inotify::add_watch(&self.fd, &self.path, on_file) {
                    // Gone again since: the directory's watch saw that.
                    Ok(_) | Err(rustix::io::Errno::NOENT) => true,
                    Err(_) => false,
                }
            }
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        }
    }

    /// Drains the queued events and says whether any may concern the file.
    pub(crate) fn check(&mut self) -> Seen {
        let mut events = inotify::Reader::new(&self.fd, &mut self.buf);
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
            Seen::Nothing
        } else if self.watch_file() {
            Seen::Changed
        } else {
            Seen::Lost
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

    /// A queue that overflowed may have lost the file's event: a change.
    #[test]
    fn a_lost_queue_counts_as_a_change() {
        let max: usize = std::fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
            .expect("max_queued_events")
            .trim()
            .parse()
            .expect("a number");
        assert!(
            max <= 1 << 20,
            "queue limit {max}: too many files to fill it"
        );
        let dir = scratch();
        let mut w = Watch::new(&dir.path().join("apikey")).expect("watch");
        for i in 0..=max {
            std::fs::File::create(dir.path().join(format!("{i}.tig"))).unwrap();
        }
        assert_eq!(w.check(), Seen::Changed);
        assert_eq!(w.check(), Seen::Nothing);
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
    fn a_removed_or_renamed_directory_loses_the_watch() {
        let dir = scratch();
        let sub = dir.path().join("root");
        std::fs::create_dir(&sub).unwrap();
        let mut w = Watch::new(&sub.join("apikey")).expect("watch");
        std::fs::remove_dir(&sub).unwrap();
        assert_eq!(w.check(), Seen::Lost);

        std::fs::create_dir(&sub).unwrap();
        let mut w = Watch::new(&sub.join("apikey")).expect("watch");
        assert_eq!(w.check(), Seen::Nothing);
        std::fs::rename(&sub, dir.path().join("moved")).unwrap();
        assert_eq!(w.check(), Seen::Lost);
    }
}
