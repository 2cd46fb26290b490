//! The snapshot cache: what each file hashed to last time, so an unchanged file is
//! not read again (like git's index or restic's parent snapshot).
//!
//! One file per (server, directory, chunk size) under `$XDG_CACHE_HOME/tig` (else
//! `~/.cache/tig`), named by a hash of the three. It records, for each file's path
//! relative to the directory, its (size, mtime, ctime, inode, device) when it was read
//! and the chunk ids it was cut into. A file is taken from the cache only if all five
//! still match **and** its mtime is in an earlier second than the start of the
//! snapshot that wrote the entry (git's "racily clean" rule: a file written in the
//! same second as it was read may have changed again without its timestamps saying
//! so). The cache never says what the server holds: every id, cached or not, is asked
//! again in bulk (`POST /?missing=1`) by each snapshot. It also keeps the ids of the
//! last snapshot's burst lists and trees, so that the ids a snapshot of an unchanged
//! tree will name can all be asked about while the tree is still being walked.
//!
//! It is never required for correctness: a missing, unreadable or corrupt file is an
//! empty cache (costing only time), and it is written atomically (temp file, rename).
//!
//! Format (text, one entry a line; names `%`-escaped as in snapshot trees):
//!
//! ```text
//! tig-snapshot-cache 2 <start unix seconds>
//! trees [<hex>[,<hex>…]]
//! <size> <mtime s> <mtime ns> <ctime s> <ctime ns> <inode> <device> <hex>[,<hex>…] <name>
//! ```
//!
//! (`trees` lists the burst lists, trees and root of the snapshot that wrote it.)

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use tig_core::{Hasher, ObjectId};

use crate::tree::{escape_name, unescape_name};

const HEADER: &str = "tig-snapshot-cache 2";
const TREES: &str = "trees";

/// What identifies a file's version without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    /// Size in bytes.
    pub size: u64,
    /// Modification time: seconds and nanoseconds since the epoch.
    pub mtime: (i64, i64),
    /// Status-change time: seconds and nanoseconds since the epoch.
    pub ctime: (i64, i64),
    /// Inode number.
    pub inode: u64,
    /// Device number.
    pub device: u64,
}

impl FileStamp {
    /// The stamp of `meta` (from `symlink_metadata`/`metadata`).
    #[cfg(unix)]
    pub fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self {
            size: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
            inode: meta.ino(),
            device: meta.dev(),
        }
    }
}

/// One file's entry: its stamp when read, and the chunk ids it was cut into.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    stamp: FileStamp,
    chunks: Vec<ObjectId>,
    /// A loaded entry that this run put again as it was (kept without a copy).
    kept: bool,
}

/// The cache of one (server, directory, chunk size).
#[derive(Debug)]
pub struct Cache {
    file: Option<PathBuf>,
    /// When the snapshot that wrote the loaded file started (unix seconds).
    written: i64,
    old: HashMap<Vec<u8>, Entry>,
    /// This run's entries that differ from the loaded ones.
    new: HashMap<Vec<u8>, Entry>,
    /// The lists and trees of the snapshot that wrote the loaded file, and of this one.
    old_trees: Vec<ObjectId>,
    new_trees: Vec<ObjectId>,
    /// Every id the loaded file names, each once (until taken).
    old_ids: HashSet<ObjectId>,
}

impl Cache {
    /// A cache that remembers nothing and writes nothing (`--no-cache`).
    pub fn disabled() -> Self {
        Self {
            file: None,
            written: 0,
            old: HashMap::default(),
            new: HashMap::default(),
            old_trees: Vec::new(),
            new_trees: Vec::new(),
            old_ids: HashSet::default(),
        }
    }

    /// The default location: `$XDG_CACHE_HOME/tig`, else `$HOME/.cache/tig`.
    pub fn default_dir() -> Option<PathBuf> {
        let abs = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
        std::env::var_os("XDG_CACHE_HOME")
            .and_then(abs)
            .map(|d| d.join("tig"))
            .or_else(|| {
                std::env::var_os("HOME")
                    .and_then(abs)
                    .map(|h| h.join(".cache").join("tig"))
            })
    }

    /// Loads the cache for snapshots of `root` to `server` with chunks of at most
    /// `max_chunk` bytes, from `dir`. Anything unreadable is an empty cache.
    pub fn load(dir: &Path, server: &str, root: &Path, max_chunk: u32) -> Self {
        let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
        let mut h = Hasher::new();
        h.update(format!("{server}\n{max_chunk}\n").as_bytes());
        h.update(root.as_os_str().as_encoded_bytes());
        let file = dir.join(format!("snapshot-{}", &h.finish().to_hex()[..32]));
        let parsed = match std::fs::read(&file) {
            Ok(bytes) => parse(&bytes).unwrap_or_else(|| {
                tracing::debug!(file = %file.display(), "ignoring a corrupt snapshot cache");
                Parsed::default()
            }),
            Err(_) => Parsed::default(),
        };
        Self {
            file: Some(file),
            written: parsed.written,
            old: parsed.entries,
            new: HashMap::default(),
            old_trees: parsed.trees,
            new_trees: Vec::new(),
            old_ids: parsed.ids,
        }
    }

    /// Every id the loaded file names, each once: the chunks of its files and the
    /// last snapshot's lists and trees. Empty when nothing was loaded, and after
    /// the first call (they are handed over, not copied).
    pub fn take_ids(&mut self) -> HashSet<ObjectId> {
        std::mem::take(&mut self.old_ids)
    }

    /// The chunk ids of the file at `name` (relative path bytes) if its stamp is
    /// unchanged and was settled (mtime before the second the entry was written).
    pub fn get(&self, name: &[u8], stamp: &FileStamp) -> Option<&[ObjectId]> {
        let e = self.old.get(name)?;
        (e.stamp == *stamp && stamp.mtime.0 < self.written).then_some(&e.chunks[..])
    }

    /// Records what the file at `name` with `stamp` was cut into, for the next run.
    pub fn put(&mut self, name: &[u8], stamp: FileStamp, chunks: Vec<ObjectId>) {
        if let Some(e) = self.old.get_mut(name)
            && e.stamp == stamp
            && e.chunks == chunks
        {
            e.kept = true;
            return;
        }
        let e = Entry {
            stamp,
            chunks,
            kept: false,
        };
        self.new.insert(name.to_vec(), e);
    }

    /// Records the lists, trees and root of this run's snapshot, for the next run.
    pub fn put_trees(&mut self, ids: Vec<ObjectId>) {
        self.new_trees = ids;
    }

    /// Replaces the file with this run's entries, stamped with `started`, atomically.
    /// Failures are logged and ignored: the cache only saves time.
    ///
    /// Nothing is written when the file already says the same: this run's entries
    /// are exactly the loaded ones and every one of them was already settled (its
    /// mtime before the loaded file's start), so a newer start would trust no entry
    /// that the old one does not (the usual case when nothing changed).
    pub fn save(&self, started: SystemTime) {
        let Some(file) = &self.file else { return };
        if self.unchanged() {
            return;
        }
        if let Err(e) = self.write(file, started) {
            tracing::debug!(file = %file.display(), error = %e, "cannot write the snapshot cache");
        }
    }

    /// Whether this run's entries are the loaded ones, all settled.
    fn unchanged(&self) -> bool {
        self.new.is_empty()
            && self.new_trees == self.old_trees
            && self
                .old
                .values()
                .all(|e| e.kept && e.stamp.mtime.0 < self.written)
    }

    fn write(&self, file: &Path, started: SystemTime) -> std::io::Result<()> {
        let dir = file.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let secs = started
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let mut tmp = tempfile::Builder::new()
            .prefix(".snapshot-")
            .tempfile_in(dir)?;
        {
            let mut w = std::io::BufWriter::new(tmp.as_file_mut());
            writeln!(w, "{HEADER} {secs}")?;
            let trees: Vec<String> = self.new_trees.iter().map(ObjectId::to_hex).collect();
            writeln!(w, "{TREES} {}", trees.join(","))?;
            let mut entries: Vec<(&Vec<u8>, &Entry)> = (self.old.iter())
                .filter(|(_, e)| e.kept)
                .chain(&self.new)
                .collect();
            entries.sort_unstable_by_key(|(name, _)| *name);
            for (name, e) in entries {
                let s = &e.stamp;
                let chunks: Vec<String> = e.chunks.iter().map(ObjectId::to_hex).collect();
                writeln!(
                    w,
                    "{} {} {} {} {} {} {} {} {}",
                    s.size,
                    s.mtime.0,
                    s.mtime.1,
                    s.ctime.0,
                    s.ctime.1,
                    s.inode,
                    s.device,
                    chunks.join(","),
                    escape_name(name)
                )?;
            }
            w.flush()?;
        }
        tmp.persist(file).map_err(|e| e.error)?;
        Ok(())
    }
}

/// A parsed cache file.
#[derive(Default)]
struct Parsed {
    written: i64,
    trees: Vec<ObjectId>,
    entries: HashMap<Vec<u8>, Entry>,
    /// Every id named (chunks and trees), each once.
    ids: HashSet<ObjectId>,
}

/// Parses a cache file; `None` if anything in it is malformed.
///
/// It is read on every snapshot, while the tree is walked, before the server can
/// be asked about the ids it names: lines and fields are found with `memchr`,
/// numbers parsed by hand, and names without `%` copied as they are.
fn parse(bytes: &[u8]) -> Option<Parsed> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut lines = Lines { rest: text };
    let written: i64 = lines.next()?.strip_prefix(HEADER)?.trim().parse().ok()?;
    let trees = lines.next()?.strip_prefix(TREES)?.trim();
    let trees = if trees.is_empty() {
        Vec::new()
    } else {
        trees
            .split(',')
            .map(|h| ObjectId::from_hex(h).ok())
            .collect::<Option<Vec<_>>>()?
    };
    // One entry a line (most of one chunk): sized up front, not grown (and
    // rehashed) as they fill.
    let n = memchr::memchr_iter(b'\n', bytes).count();
    let mut entries = HashMap::with_capacity_and_hasher(n, Default::default());
    let mut ids = HashSet::with_capacity_and_hasher(n + trees.len(), Default::default());
    ids.extend(trees.iter().copied());
    for line in lines {
        let mut rest = line;
        let mut num = || -> Option<i64> { parse_i64(field(&mut rest)?) };
        let (size, ms, mn, cs, cn, ino, dev) =
            (num()?, num()?, num()?, num()?, num()?, num()?, num()?);
        let hexes = field(&mut rest)?;
        let mut chunks = Vec::with_capacity(hexes.len() / (tig_core::HEX_LEN + 1) + 1);
        for h in hexes.split(',') {
            let id = ObjectId::from_hex(h).ok()?;
            chunks.push(id);
            ids.insert(id);
        }
        let name = unescape_name(rest)?;
        if name.is_empty() {
            return None;
        }
        let stamp = FileStamp {
            size: u64::try_from(size).ok()?,
            mtime: (ms, mn),
            ctime: (cs, cn),
            inode: u64::try_from(ino).ok()?,
            device: u64::try_from(dev).ok()?,
        };
        let e = Entry {
            stamp,
            chunks,
            kept: false,
        };
        entries.insert(name, e);
    }
    Some(Parsed {
        written,
        trees,
        entries,
        ids,
    })
}

/// The lines of a text (without their `\n`), found with `memchr`.
struct Lines<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.rest.is_empty() {
            return None;
        }
        // `\n` is ASCII, so both cuts are on character boundaries.
        let (line, rest) = match memchr::memchr(b'\n', self.rest.as_bytes()) {
            Some(i) => (&self.rest[..i], &self.rest[i + 1..]),
            None => (self.rest, ""),
        };
        self.rest = rest;
        Some(line)
    }
}

/// The text up to the next space, which `rest` then starts after.
fn field<'a>(rest: &mut &'a str) -> Option<&'a str> {
    let i = memchr::memchr(b' ', rest.as_bytes())?;
    let f = &rest[..i];
    *rest = &rest[i + 1..];
    Some(f)
}

/// A decimal `i64` with an optional `-` (what `write` prints), nothing else.
fn parse_i64(s: &str) -> Option<i64> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s),
    };
    if digits.is_empty() {
        return None;
    }
    let mut v: i64 = 0;
    for b in digits.bytes() {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v.checked_mul(10)?.checked_sub(i64::from(d))?;
    }
    // Accumulated negative, so that i64::MIN parses too.
    if neg { Some(v) } else { v.checked_neg() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn stamp(mtime: i64) -> FileStamp {
        FileStamp {
            size: 3,
            mtime: (mtime, 5),
            ctime: (mtime, 7),
            inode: 11,
            device: 13,
        }
    }

    #[test]
    fn round_trip_and_the_racy_rule() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("src");
        std::fs::create_dir(&root).unwrap();
        let ids = vec![ObjectId::digest(b"a"), ObjectId::digest(b"b")];
        let mut c = Cache::load(dir.path(), "http://s", &root, 1 << 20);
        assert!(c.get(b"x", &stamp(100)).is_none());
        c.put(b"dir/na me%\n", stamp(100), ids.clone());
        c.put(b"same-second", stamp(200), ids[..1].to_vec());
        let tree = ObjectId::digest(b"tree");
        c.put_trees(vec![tree, ids[1]]);
        c.save(UNIX_EPOCH + Duration::from_secs(200));

        let mut c = Cache::load(dir.path(), "http://s", &root, 1 << 20);
        assert_eq!(c.get(b"dir/na me%\n", &stamp(100)), Some(&ids[..]));
        // every id it names, each once
        let mut all: Vec<ObjectId> = c.take_ids().into_iter().collect();
        all.sort();
        let mut want = vec![ids[0], ids[1], tree];
        want.sort();
        assert_eq!(all, want);
        // changed stamp: not trusted
        let mut other = stamp(100);
        other.ctime.1 += 1;
        assert!(c.get(b"dir/na me%\n", &other).is_none());
        other = stamp(100);
        other.inode += 1;
        assert!(c.get(b"dir/na me%\n", &other).is_none());
        // mtime in the second the snapshot started: re-hashed
        assert!(c.get(b"same-second", &stamp(200)).is_none());
        let file = c.file.clone().unwrap();
        let written = std::fs::read(&file).unwrap();
        // another server, root or chunk size: another cache
        assert!(
            Cache::load(dir.path(), "http://t", &root, 1 << 20)
                .get(b"dir/na me%\n", &stamp(100))
                .is_none()
        );
        assert!(
            Cache::load(dir.path(), "http://s", &root, 1 << 22)
                .get(b"dir/na me%\n", &stamp(100))
                .is_none()
        );

        // The same entries again: rewritten while one is unsettled (its start
        // moves on, so the same-second file becomes trusted)...
        let mut c = Cache::load(dir.path(), "http://s", &root, 1 << 20);
        c.put(b"dir/na me%\n", stamp(100), ids.clone());
        c.put(b"same-second", stamp(200), ids[..1].to_vec());
        c.save(UNIX_EPOCH + Duration::from_secs(300));
        assert_ne!(std::fs::read(&file).unwrap(), written);
        let c = Cache::load(dir.path(), "http://s", &root, 1 << 20);
        assert_eq!(c.get(b"same-second", &stamp(200)), Some(&ids[..1]));
        let settled = std::fs::read(&file).unwrap();
        // ...then, all settled and unchanged, left as it is.
        let mut c = Cache::load(dir.path(), "http://s", &root, 1 << 20);
        c.put(b"dir/na me%\n", stamp(100), ids.clone());
        c.put(b"same-second", stamp(200), ids[..1].to_vec());
        c.save(UNIX_EPOCH + Duration::from_secs(400));
        assert_eq!(std::fs::read(&file).unwrap(), settled);
        // A changed entry, a new one, a dropped one or other trees are written.
        for change in 0..4 {
            let mut c = Cache::load(dir.path(), "http://s", &root, 1 << 20);
            match change {
                0 => c.put(b"dir/na me%\n", stamp(101), ids.clone()),
                1 => {
                    c.put(b"dir/na me%\n", stamp(100), ids.clone());
                    c.put(b"new", stamp(100), ids.clone());
                }
                2 => {}
                _ => {
                    c.put(b"dir/na me%\n", stamp(100), ids.clone());
                    c.put_trees(vec![tree]);
                }
            }
            c.put(b"same-second", stamp(200), ids[..1].to_vec());
            c.save(UNIX_EPOCH + Duration::from_secs(400));
            assert_ne!(std::fs::read(&file).unwrap(), settled, "change {change}");
            std::fs::write(&file, &settled).unwrap();
        }
    }

    #[test]
    fn a_corrupt_file_is_an_empty_cache() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Cache::load(dir.path(), "http://s", dir.path(), 1 << 20);
        c.put(b"f", stamp(1), vec![ObjectId::digest(b"a")]);
        c.save(UNIX_EPOCH + Duration::from_secs(9));
        let file = c.file.clone().unwrap();
        let good = std::fs::read(&file).unwrap();
        assert!(parse(&good).is_some());
        for bad in [
            &good[..good.len() - 20],
            b"tig-snapshot-cache 1 9\n",
            b"tig-snapshot-cache 3 9\ntrees \n",
            b"tig-snapshot-cache 2 9\n",
            b"tig-snapshot-cache 2 9\ntrees 12\n",
            b"\xff\xfe",
            b"",
        ] {
            std::fs::write(&file, bad).unwrap();
            let c = Cache::load(dir.path(), "http://s", dir.path(), 1 << 20);
            assert!(c.get(b"f", &stamp(1)).is_none());
        }
        // A bad field anywhere in an entry (here in place of each field in turn).
        let text = String::from_utf8(good).unwrap();
        let entry = text.lines().nth(2).unwrap();
        for i in 0..9 {
            let mut f: Vec<&str> = entry.splitn(9, ' ').collect();
            f[i] = if i == 7 { "abc" } else { "1x" };
            if i == 8 {
                f[i] = "%zz";
            }
            let bad = text.replace(entry, &f.join(" "));
            assert!(parse(bad.as_bytes()).is_none(), "field {i}: {bad}");
        }
        assert!(Cache::disabled().get(b"f", &stamp(1)).is_none());
        Cache::disabled().save(SystemTime::now()); // writes nothing, no panic
    }

    #[test]
    fn numbers_are_what_write_prints_and_nothing_else() {
        for (s, want) in [
            ("0", Some(0)),
            ("42", Some(42)),
            ("-7", Some(-7)),
            ("9223372036854775807", Some(i64::MAX)),
            ("-9223372036854775808", Some(i64::MIN)),
            ("9223372036854775808", None),
            ("", None),
            ("-", None),
            ("+5", None),
            ("12a", None),
            (" 1", None),
        ] {
            assert_eq!(parse_i64(s), want, "{s:?}");
        }
    }
}
