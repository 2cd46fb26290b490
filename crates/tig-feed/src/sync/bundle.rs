//! Git bundles without `git`: a `# v2 git bundle` header (prerequisites, refs),
//! a blank line, and a pack built with libgit2's `PackBuilder`. Reading accepts
//! v2 and v3 (`@object-format=sha1` only) and indexes the pack through the
//! repository's pack writer, so a truncated or corrupt pack fails before any
//! object becomes visible.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use git2::{Oid, Repository};
use serde::Serialize;

use super::SyncError;
use super::util;
use crate::FeedId;

/// Longest header line we accept (a ref name plus an id is far shorter).
const MAX_HEADER_LINE: usize = 4096;
/// Most header lines we accept.
const MAX_HEADER_LINES: usize = 1_000_000;

/// The parsed header of a bundle file.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BundleHeader {
    /// Commits the receiver must already have (`-<oid>` lines).
    #[serde(serialize_with = "ser_oids")]
    pub prerequisites: Vec<Oid>,
    /// `(ref name, commit)` pairs the bundle carries.
    #[serde(serialize_with = "ser_refs")]
    pub refs: Vec<(String, Oid)>,
    /// Byte offset where the pack starts.
    pub pack_offset: u64,
}

fn ser_oids<S: serde::Serializer>(v: &[Oid], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|o| o.to_string()))
}

fn ser_refs<S: serde::Serializer>(v: &[(String, Oid)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(v.iter().map(|(n, o)| (n.clone(), o.to_string())))
}

/// What [`create_bundle`] wrote.
#[derive(Debug, Clone, Serialize)]
pub struct BundleSummary {
    /// The file written.
    pub path: PathBuf,
    /// Feeds in the bundle with their tips.
    #[serde(serialize_with = "super::oid_serde::feed_tips")]
    pub feeds: Vec<(FeedId, Oid)>,
    /// Prerequisite commits (the receiver's known frontier).
    #[serde(serialize_with = "super::oid_serde::oids")]
    pub prerequisites: Vec<Oid>,
    /// Commits carried in the pack.
    pub commits: usize,
    /// Objects carried in the pack (commits plus the empty tree when needed).
    pub objects: usize,
    /// Size of the file in bytes.
    pub bytes: u64,
}

/// Write a bundle of the given feeds to `path`.
///
/// `tips` maps each feed to the tip to send (normally `refs/heads/<feed>`);
/// `since` maps a feed to the commit the receiver already has: only newer
/// messages are carried and that commit becomes a prerequisite. The file is
/// written under a temporary name and renamed into place.
pub fn create_bundle(
    repo: &Repository,
    path: &Path,
    tips: &BTreeMap<FeedId, Oid>,
    since: &BTreeMap<FeedId, Oid>,
) -> Result<BundleSummary, SyncError> {
    let mut walk = repo.revwalk()?;
    let mut prereqs: Vec<Oid> = Vec::new();
    let mut feeds = Vec::new();
    for (feed, &tip) in tips {
        if let Some(&base) = since.get(feed) {
            if base == tip {
                continue; // the receiver is up to date with this feed
            }
            if !repo.graph_descendant_of(tip, base)? {
                return Err(SyncError::BadSince {
                    feed: feed.clone(),
                    commit: base,
                    tip,
                });
            }
            walk.hide(base)?;
            prereqs.push(base);
        }
        walk.push(tip)?;
        feeds.push((feed.clone(), tip));
    }
    if feeds.is_empty() {
        return Err(SyncError::NothingToBundle(
            "the receiver already has every message of the selected feeds".into(),
        ));
    }
    // Count commits separately: the pack builder consumes the walk.
    let mut count_walk = repo.revwalk()?;
    for (_, tip) in &feeds {
        count_walk.push(*tip)?;
    }
    for p in &prereqs {
        count_walk.hide(*p)?;
    }
    let mut commits = 0usize;
    for oid in count_walk {
        oid?;
        commits += 1;
    }
    let refs: Vec<(String, Oid)> = feeds
        .iter()
        .map(|(f, t)| (format!("refs/heads/{f}"), *t))
        .collect();
    let objects = write_bundle(repo, path, &refs, &prereqs, walk, "tig feed frontier")?;
    let bytes = std::fs::metadata(path)
        .map_err(|e| SyncError::io(path, e))?
        .len();
    Ok(BundleSummary {
        path: path.to_path_buf(),
        feeds,
        prerequisites: prereqs,
        commits,
        objects,
        bytes,
    })
}

/// Write `refs` and every object reachable from `walk` (which already has the
/// tips pushed and the prerequisites hidden) as a v2 bundle at `path`, through
/// a temporary file renamed into place. Returns the number of objects packed.
/// Errors name `path`, the file asked for, never the temporary one.
pub(crate) fn write_bundle(
    repo: &Repository,
    path: &Path,
    refs: &[(String, Oid)],
    prereqs: &[Oid],
    mut walk: git2::Revwalk<'_>,
    prereq_comment: &str,
) -> Result<usize, SyncError> {
    let mut pb = repo.packbuilder()?;
    pb.set_threads(0);
    pb.insert_walk(&mut walk)?;
    let objects = pb.object_count();
    let tmp = path.with_file_name(format!(
        ".{}.tmp-{}",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "bundle".into()),
        util::nonce()
    ));
    let result = (|| -> Result<(), SyncError> {
        let file = File::create(&tmp).map_err(|e| SyncError::io(path, e))?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        let mut header = String::from("# v2 git bundle\n");
        for p in prereqs {
            header.push_str(&format!("-{p} {prereq_comment}\n"));
        }
        for (name, tip) in refs {
            header.push_str(&format!("{tip} {name}\n"));
        }
        header.push('\n');
        out.write_all(header.as_bytes())
            .map_err(|e| SyncError::io(path, e))?;
        let mut werr: Option<std::io::Error> = None;
        pb.foreach(|chunk| match out.write_all(chunk) {
            Ok(()) => true,
            Err(e) => {
                werr = Some(e);
                false
            }
        })
        .map_err(|e| match werr.take() {
            Some(io) => SyncError::io(path, io),
            None => SyncError::Git(e),
        })?;
        let file = out
            .into_inner()
            .map_err(|e| SyncError::io(path, e.into_error()))?;
        file.sync_all().map_err(|e| SyncError::io(path, e))?;
        std::fs::rename(&tmp, path).map_err(|e| SyncError::io(path, e))?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(objects)
}

/// Whether the file at `path` starts like a git bundle.
pub fn looks_like_bundle(path: &Path) -> bool {
    let Ok(mut f) = File::open(path) else {
        return false;
    };
    let mut buf = [0u8; 16];
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(_) => return false,
        }
    }
    buf[..n].starts_with(b"# v2 git bundle") || buf[..n].starts_with(b"# v3 git bundle")
}

/// Parse a bundle's header from a reader positioned at the start of the file.
pub fn read_header<R: BufRead>(path: &Path, r: &mut R) -> Result<BundleHeader, SyncError> {
    let mut header = BundleHeader::default();
    let mut offset = 0u64;
    let mut line = Vec::new();
    let first = read_line(path, r, &mut line)?;
    offset += first as u64;
    let v3 = match line.as_slice() {
        b"# v2 git bundle" => false,
        b"# v3 git bundle" => true,
        _ => return Err(SyncError::NotABundle(path.to_path_buf())),
    };
    for _ in 0..MAX_HEADER_LINES {
        let n = read_line(path, r, &mut line)?;
        if n == 0 {
            return Err(SyncError::CorruptBundle(
                "header ends before the pack".into(),
            ));
        }
        offset += n as u64;
        if line.is_empty() {
            header.pack_offset = offset;
            return Ok(header);
        }
        let text = std::str::from_utf8(&line)
            .map_err(|_| SyncError::CorruptBundle("header line is not UTF-8".into()))?;
        if let Some(cap) = text.strip_prefix('@') {
            if !v3 {
                return Err(SyncError::CorruptBundle(
                    "capability line in a v2 bundle".into(),
                ));
            }
            match cap {
                "object-format=sha1" => continue,
                other => {
                    return Err(SyncError::CorruptBundle(format!(
                        "unsupported bundle capability @{other}"
                    )));
                }
            }
        }
        if let Some(rest) = text.strip_prefix('-') {
            let hex = rest.split(' ').next().unwrap_or("");
            header.prerequisites.push(parse_oid(hex)?);
            continue;
        }
        let (hex, name) = text
            .split_once(' ')
            .ok_or_else(|| SyncError::CorruptBundle(format!("bad header line {text:?}")))?;
        header.refs.push((name.to_string(), parse_oid(hex)?));
    }
    Err(SyncError::CorruptBundle("header too long".into()))
}

fn parse_oid(hex: &str) -> Result<Oid, SyncError> {
    if hex.len() != 40 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(SyncError::CorruptBundle(format!(
            "bad object id {hex:?} in header"
        )));
    }
    Oid::from_str(hex).map_err(|_| SyncError::CorruptBundle(format!("bad object id {hex:?}")))
}

/// Read one `\n`-terminated line (without the newline) into `line`; returns bytes consumed.
fn read_line<R: BufRead>(path: &Path, r: &mut R, line: &mut Vec<u8>) -> Result<usize, SyncError> {
    line.clear();
    let n = r
        .take(MAX_HEADER_LINE as u64 + 1)
        .read_until(b'\n', line)
        .map_err(|e| SyncError::io(path, e))?;
    if n == 0 {
        return Ok(0);
    }
    if line.last() != Some(&b'\n') {
        return Err(SyncError::CorruptBundle(
            "header line too long or unterminated".into(),
        ));
    }
    line.pop();
    Ok(n)
}

/// Read a bundle into `repo`: parse the header, check that every prerequisite
/// is present, index the pack into the object database, and check that every
/// ref the bundle names now resolves to a commit. On any failure nothing is
/// left behind: a half-written pack is removed by the indexer, and a complete
/// pack whose refs are missing is removed by name (only that pack: another
/// process may have written its own meanwhile). Refs are not touched: the
/// caller validates and moves them.
pub fn unbundle(repo: &Repository, path: &Path) -> Result<BundleHeader, SyncError> {
    let file = File::open(path).map_err(|e| SyncError::io(path, e))?;
    let mut r = BufReader::with_capacity(1 << 20, file);
    unbundle_from(repo, path, &mut r)
}

/// [`unbundle`] from a reader positioned at the start of a bundle; `path` only
/// names it in errors.
pub fn unbundle_from<R: BufRead>(
    repo: &Repository,
    path: &Path,
    r: &mut R,
) -> Result<BundleHeader, SyncError> {
    let header = read_header(path, r)?;
    let odb = repo.odb()?;
    for p in &header.prerequisites {
        if !odb.exists(*p) {
            return Err(SyncError::MissingPrerequisite(*p));
        }
    }
    let mut w = util::PackIndexer::new(repo, &odb)?;
    std::io::copy(r, &mut w).map_err(|e| SyncError::CorruptBundle(format!("pack: {e}")))?;
    let written = w
        .finish()
        .map_err(|e| SyncError::CorruptBundle(format!("pack: {}", e.message())))?;
    odb.refresh()?;
    for (name, oid) in &header.refs {
        let ok = repo
            .find_object(*oid, None)
            .ok()
            .and_then(|o| o.peel_to_commit().ok())
            .is_some();
        if !ok {
            written.remove();
            return Err(SyncError::CorruptBundle(format!(
                "{name} points at {oid}, which the bundle does not carry"
            )));
        }
    }
    Ok(header)
}
