//! `snapshot DIR` and `restore ROOT DIR`: a directory as a content-addressed tree.
//!
//! Every file is cut into content-defined chunks; a file of one chunk is stored as
//! that blob (its id is the file's sha256), a longer one as a burst list of chunks.
//! Each directory is a tree object (see [`crate::tree`]); the root tree's id names the
//! whole version. Objects the server already has are not sent again, so a second
//! snapshot after a small edit uploads only the changed chunks and the trees above
//! them. Restore fetches and verifies every object and refuses names that would
//! escape the target directory.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;
use tig_core::ObjectId;

use crate::chunk::{ChunkParams, chunks, decode_burst, encode_burst};
use crate::error::{Error, Result};
use crate::fetch::{LIST_MAX, set_mode};
use crate::http::Client;
use crate::progress;
use crate::tree::{Entry, Kind, Mode, decode_tree, encode_tree};
use crate::upload::{Counts, Stats};

/// Which files a snapshot leaves out.
#[derive(Debug, Clone, Copy, Default)]
pub struct SnapshotOptions {
    /// Also take files that `.gitignore`, `.ignore` or `.git/info/exclude` exclude.
    pub no_ignore: bool,
    /// Also take `.git` directories.
    pub include_git: bool,
}

/// What a snapshot stored.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct SnapshotResult {
    /// The root tree: names the whole version.
    #[serde(serialize_with = "crate::upload::ser_path")]
    pub root: ObjectId,
    /// Regular files taken.
    pub files: u64,
    /// Directories (trees), the root included.
    pub dirs: u64,
    /// Symbolic links taken.
    pub symlinks: u64,
    /// Bytes in the files.
    pub bytes: u64,
    /// Objects sent and skipped.
    pub counts: Counts,
}

/// What a restore wrote.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct RestoreResult {
    /// Regular files written.
    pub files: u64,
    /// Directories created (the root excluded).
    pub dirs: u64,
    /// Symbolic links created.
    pub symlinks: u64,
    /// Bytes in the files.
    pub bytes: u64,
}

enum Node {
    File { path: PathBuf, exec: bool },
    Link { target: Vec<u8> },
    Dir(BTreeMap<Vec<u8>, Node>),
}

/// A file or link after phase 1: where its chunk ids are in the pool's output.
struct Leaf {
    first: usize,
    count: usize,
    size: u64,
}

impl Client {
    /// Stores `dir` as a tree and returns its root.
    pub fn snapshot(&self, dir: &Path, opts: SnapshotOptions) -> Result<SnapshotResult> {
        let meta = std::fs::metadata(dir)
            .map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
        if !meta.is_dir() {
            return Err(Error::Usage(format!(
                "{} is not a directory",
                dir.display()
            )));
        }
        let params = ChunkParams::for_limit(self.cfg.max_size)?;
        let (root, total) = scan(dir, opts)?;
        let stats = Stats::default();

        // Phase 1: every chunk of every file, and every link target.
        let nodes: Vec<&Node> = leaves_of(&root);
        let mut leaves: Vec<Leaf> = Vec::with_capacity(nodes.len());
        let pb = progress::bar(self.cfg.progress, Some(total), "snapshot");
        let ids = self.upload_pool(&stats, &pb, |submit| {
            for node in &nodes {
                let mut first = None;
                let mut count = 0;
                let mut size = 0u64;
                match node {
                    Node::File { path, .. } => {
                        let f = File::open(path)
                            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
                        for chunk in chunks(f, params) {
                            let chunk = chunk?;
                            size += chunk.len() as u64;
                            let seq = submit(Bytes::from(chunk))?;
                            first.get_or_insert(seq);
                            count += 1;
                        }
                        if count == 0 {
                            first = Some(submit(Bytes::new())?);
                            count = 1;
                        }
                    }
                    Node::Link { target } => {
                        first = Some(submit(Bytes::from(target.clone()))?);
                        count = 1;
                    }
                    Node::Dir(_) => {}
                }
                leaves.push(Leaf {
                    first: first.unwrap_or(0),
                    count,
                    size,
                });
            }
            Ok(())
        })?;
        pb.finish_and_clear();

        // Phase 2: burst lists of multi-chunk files, after all their chunks.
        let mut lists: Vec<(usize, Bytes)> = Vec::new();
        for (i, leaf) in leaves.iter().enumerate() {
            if leaf.count > 1 {
                let list = encode_burst(&ids[leaf.first..leaf.first + leaf.count]);
                if list.len() as u64 > self.cfg.max_size {
                    return Err(Error::Usage(
                        "a file's burst list is over --max-size; raise --max-size".into(),
                    ));
                }
                lists.push((i, Bytes::from(list)));
            }
        }
        let list_ids = self.upload_pool(&stats, &progress::bar(false, None, ""), |submit| {
            for (_, l) in &lists {
                submit(l.clone())?;
            }
            Ok(())
        })?;
        let mut leaf_ids: Vec<(ObjectId, Kind, u64)> = leaves
            .iter()
            .map(|l| (ids[l.first], Kind::Blob, l.size))
            .collect();
        for ((i, _), id) in lists.iter().zip(list_ids) {
            leaf_ids[*i].0 = id;
            leaf_ids[*i].1 = Kind::Burst;
        }

        // Phase 3: trees bottom-up; the root last.
        let mut trees: Vec<Bytes> = Vec::new();
        let mut next_leaf = 0usize;
        let mut counts = (0u64, 0u64, 0u64);
        let (root_bytes, bytes) =
            build_tree(&root, &leaf_ids, &mut next_leaf, &mut trees, &mut counts)?;
        self.upload_pool(&stats, &progress::bar(false, None, ""), |submit| {
            for t in trees.drain(..) {
                submit(t)?;
            }
            Ok(())
        })?;
        let root_id = self.upload_one(root_bytes, &stats)?;
        Ok(SnapshotResult {
            root: root_id,
            files: counts.0,
            dirs: counts.1 + 1,
            symlinks: counts.2,
            bytes,
            counts: stats.counts(),
        })
    }

    /// Rebuilds the tree `root` into `dir`, which must be absent or empty.
    pub fn restore(&self, root: &ObjectId, dir: &Path) -> Result<RestoreResult> {
        match std::fs::read_dir(dir) {
            Ok(mut it) => {
                if it.next().is_some() {
                    return Err(Error::Usage(format!(
                        "{} is not empty; restore needs an empty or new directory",
                        dir.display()
                    )));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
            }
            Err(e) => return Err(Error::io(format!("reading {}", dir.display()), e)),
        }
        let mut res = RestoreResult::default();
        let mut blobs: Vec<(PathBuf, Entry)> = Vec::new();
        let mut bursts: Vec<(PathBuf, Entry)> = Vec::new();
        let mut links: Vec<(PathBuf, Entry)> = Vec::new();
        let mut stack = vec![(*root, dir.to_path_buf())];
        while let Some((tree, at)) = stack.pop() {
            let entries = decode_tree(&self.fetch_bytes(&tree, LIST_MAX)?)?;
            for e in entries {
                let path = at.join(os_name(&e.name));
                match (e.mode, e.kind) {
                    (Mode::Dir, _) => {
                        std::fs::create_dir(&path).map_err(|err| {
                            Error::io(format!("creating {}", path.display()), err)
                        })?;
                        res.dirs += 1;
                        stack.push((e.id, path));
                    }
                    (Mode::Symlink, _) => links.push((path, e)),
                    (_, Kind::Burst) => bursts.push((path, e)),
                    _ => blobs.push((path, e)),
                }
            }
        }
        let total: u64 = blobs.iter().chain(&bursts).map(|(_, e)| e.size).sum();
        let pb = progress::bar(self.cfg.progress, Some(total), "restore");
        // Small files in parallel, each verified into a temp file then renamed.
        let next = AtomicUsize::new(0);
        let failure: Mutex<Option<Error>> = Mutex::new(None);
        let written = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..self.cfg.jobs.min(blobs.len()) {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((path, e)) = blobs.get(i) else { break };
                        match self.restore_file(path, e, &pb) {
                            Ok(n) => {
                                written.fetch_add(n, Ordering::Relaxed);
                            }
                            Err(err) => {
                                next.store(blobs.len(), Ordering::Relaxed);
                                if let Ok(mut f) = failure.lock() {
                                    f.get_or_insert(err);
                                }
                                break;
                            }
                        }
                    }
                });
            }
        });
        if let Some(e) = failure.into_inner().ok().flatten() {
            return Err(e);
        }
        // Large files one at a time, their chunks fetched in parallel.
        for (path, e) in &bursts {
            written.fetch_add(self.restore_file(path, e, &pb)?, Ordering::Relaxed);
        }
        pb.finish_and_clear();
        for (path, e) in &links {
            let target = self.fetch_bytes(&e.id, 64 << 10)?;
            if target.is_empty() || target.contains(&0) {
                return Err(Error::invalid(
                    "snapshot tree",
                    format!("bad symlink target for {}", path.display()),
                ));
            }
            make_symlink(&target, path)?;
            res.symlinks += 1;
        }
        res.files = (blobs.len() + bursts.len()) as u64;
        res.bytes = written.into_inner();
        Ok(res)
    }

    fn restore_file(&self, path: &Path, e: &Entry, pb: &indicatif::ProgressBar) -> Result<u64> {
        let parent = path.parent().unwrap_or(Path::new("."));
        let mut tmp = tempfile::Builder::new()
            .prefix(".tig-restore-")
            .tempfile_in(parent)
            .map_err(|err| {
                Error::io(format!("creating a temp file in {}", parent.display()), err)
            })?;
        let n = match e.kind {
            Kind::Burst => {
                let members = decode_burst(&self.fetch_bytes(&e.id, LIST_MAX)?)?;
                let mut total = 0;
                for m in members {
                    total += self.fetch_object_into(&m, true, tmp.as_file_mut(), pb, u64::MAX)?;
                }
                total
            }
            _ => self.fetch_object_into(&e.id, true, tmp.as_file_mut(), pb, u64::MAX)?,
        };
        if n != e.size {
            return Err(Error::invalid(
                "snapshot tree",
                format!(
                    "{} should be {} bytes but its objects hold {n}",
                    path.display(),
                    e.size
                ),
            ));
        }
        set_mode(tmp.path(), if e.mode == Mode::Exec { 0o755 } else { 0o644 })?;
        tmp.persist(path)
            .map_err(|err| Error::io(format!("writing {}", path.display()), err.error))?;
        Ok(n)
    }
}

/// Walks `dir` (honouring ignore rules unless told not to) into a tree of nodes.
fn scan(dir: &Path, opts: SnapshotOptions) -> Result<(Node, u64)> {
    let mut wb = ignore::WalkBuilder::new(dir);
    let rules = !opts.no_ignore;
    wb.hidden(false)
        .parents(rules)
        .ignore(rules)
        .git_ignore(rules)
        .git_exclude(rules)
        .git_global(false)
        .require_git(false)
        .follow_links(false)
        .sort_by_file_name(|a, b| a.cmp(b));
    if !opts.include_git {
        wb.filter_entry(|e| e.depth() == 0 || e.file_name() != ".git");
    }
    let mut root = BTreeMap::new();
    let mut total = 0u64;
    for ent in wb.build() {
        let ent = ent.map_err(|e| {
            Error::io(
                format!("walking {}", dir.display()),
                std::io::Error::other(e.to_string()),
            )
        })?;
        if ent.depth() == 0 {
            continue;
        }
        let rel = ent.path().strip_prefix(dir).map_err(|_| {
            Error::invalid(
                "walk",
                format!("{} is outside {}", ent.path().display(), dir.display()),
            )
        })?;
        let meta = std::fs::symlink_metadata(ent.path())
            .map_err(|e| Error::io(format!("reading {}", ent.path().display()), e))?;
        let ft = meta.file_type();
        let node = if ft.is_dir() {
            Node::Dir(BTreeMap::new())
        } else if ft.is_symlink() {
            let target = std::fs::read_link(ent.path())
                .map_err(|e| Error::io(format!("reading link {}", ent.path().display()), e))?;
            Node::Link {
                target: os_bytes(target.as_os_str()),
            }
        } else if ft.is_file() {
            total += meta.len();
            Node::File {
                path: ent.path().to_path_buf(),
                exec: is_exec(&meta),
            }
        } else {
            tracing::warn!(path = %ent.path().display(), "skipping a special file (not a file, directory or link)");
            continue;
        };
        let mut cur = &mut root;
        let comps: Vec<Vec<u8>> = rel.components().map(|c| os_bytes(c.as_os_str())).collect();
        let Some((last, parents)) = comps.split_last() else {
            continue;
        };
        for c in parents {
            match cur.get_mut(c) {
                Some(Node::Dir(m)) => cur = m,
                _ => {
                    return Err(Error::invalid(
                        "walk",
                        format!("{} seen before its directory", rel.display()),
                    ));
                }
            }
        }
        cur.insert(last.clone(), node);
    }
    Ok((Node::Dir(root), total))
}

/// Files and links in depth-first name order (the order `build_tree` consumes).
fn leaves_of(n: &Node) -> Vec<&Node> {
    let mut out = Vec::new();
    fn walk<'a>(n: &'a Node, out: &mut Vec<&'a Node>) {
        match n {
            Node::Dir(m) => m.values().for_each(|c| walk(c, out)),
            other => out.push(other),
        }
    }
    walk(n, &mut out);
    out
}

/// Encodes the trees below `n` (pushing every non-root tree to `trees`, children
/// first) and returns `n`'s own tree bytes and total file size.
fn build_tree(
    n: &Node,
    leaf_ids: &[(ObjectId, Kind, u64)],
    next: &mut usize,
    trees: &mut Vec<Bytes>,
    counts: &mut (u64, u64, u64),
) -> Result<(Bytes, u64)> {
    let Node::Dir(children) = n else {
        return Err(Error::invalid("walk", "the root is not a directory"));
    };
    let mut entries = Vec::with_capacity(children.len());
    let mut total = 0u64;
    for (name, child) in children {
        let entry = match child {
            Node::Dir(_) => {
                let (bytes, size) = build_tree(child, leaf_ids, next, trees, counts)?;
                let id = ObjectId::digest(&bytes);
                trees.push(bytes);
                counts.1 += 1;
                total += size;
                Entry {
                    mode: Mode::Dir,
                    kind: Kind::Tree,
                    size,
                    id,
                    name: name.clone(),
                }
            }
            Node::File { .. } | Node::Link { .. } => {
                let &(id, kind, size) = leaf_ids
                    .get(*next)
                    .ok_or_else(|| Error::invalid("walk", "fewer uploads than files"))?;
                *next += 1;
                let mode = match child {
                    Node::Link { .. } => {
                        counts.2 += 1;
                        Mode::Symlink
                    }
                    Node::File { exec: true, .. } => Mode::Exec,
                    _ => Mode::File,
                };
                if mode != Mode::Symlink {
                    counts.0 += 1;
                    total += size;
                }
                Entry {
                    mode,
                    kind,
                    size,
                    id,
                    name: name.clone(),
                }
            }
        };
        entries.push(entry);
    }
    Ok((Bytes::from(encode_tree(&entries)?), total))
}

#[cfg(unix)]
fn os_bytes(s: &OsStr) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    s.as_bytes().to_vec()
}

#[cfg(unix)]
fn os_name(b: &[u8]) -> &OsStr {
    use std::os::unix::ffi::OsStrExt;
    OsStr::from_bytes(b)
}

#[cfg(unix)]
fn is_exec(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(unix)]
fn make_symlink(target: &[u8], at: &Path) -> Result<()> {
    std::os::unix::fs::symlink(os_name(target), at)
        .map_err(|e| Error::io(format!("creating link {}", at.display()), e))
}
