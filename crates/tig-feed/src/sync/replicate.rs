//! `pull` and `push`: replicate feeds between stores over any git transport
//! libgit2 speaks (a path, `file://`, …) or a bundle file.
//!
//! Pull fetches each advertised feed ref into a quarantine namespace
//! (`refs/tig/incoming/<nonce>/<feed>`, removed again whatever happens),
//! validates the new messages with [`verify_range`](crate::verify_range)
//! against every tip the store already holds for that feed, and only then
//! moves refs: `refs/remotes/<source>/<feed>` always, `refs/heads/<feed>` only
//! by fast-forward (compare-and-swap). A tip that neither descends from nor is
//! an ancestor of a tip we hold is a fork: both are kept and it is reported.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use git2::{AutotagOption, Direction, FetchOptions, FetchPrune, Oid, Repository};
use serde::Serialize;
use url::Url;

use super::util::{self, INCOMING};
use super::verified::{self, Tips, Unverified, Verified};
use super::{SyncError, bundle};
use crate::{FeedId, FeedStore};

/// Options for [`pull`].
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// Name under `refs/remotes/` for what came from this source (`--as`);
    /// derived from the path or URL when `None`.
    pub name: Option<String>,
    /// Feeds to pull; every feed the source has when empty.
    pub feeds: Vec<FeedId>,
}

/// What happened to one feed during a pull.
#[derive(Debug, Clone, Serialize)]
pub struct FeedOutcome {
    /// The feed.
    pub feed: FeedId,
    /// The tip the source has.
    #[serde(serialize_with = "super::oid_serde::oid")]
    pub tip: Oid,
    /// Messages new to this store.
    pub new_messages: usize,
    /// The result.
    pub outcome: Outcome,
    /// Local tips (ref, commit) that the received tip forks from.
    #[serde(serialize_with = "super::oid_serde::named")]
    pub forks_with: Vec<(String, Oid)>,
    /// A remote-tracking ref kept under a new name because the source rewrote its history.
    pub preserved: Option<String>,
}

/// Result for one feed of a pull.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Outcome {
    /// The store had no such feed; `refs/heads/<feed>` was created.
    Created,
    /// `refs/heads/<feed>` fast-forwarded.
    FastForward {
        /// Previous tip.
        #[serde(serialize_with = "super::oid_serde::oid")]
        from: Oid,
    },
    /// Nothing new.
    UpToDate,
    /// The store already has newer messages than the source.
    LocalAhead,
    /// The received tip and `refs/heads/<feed>` diverge: both kept.
    Fork {
        /// Our tip, which stays in `refs/heads/<feed>`.
        #[serde(serialize_with = "super::oid_serde::oid")]
        local: Oid,
        /// The last message both share, if any.
        #[serde(serialize_with = "super::oid_serde::opt_oid")]
        fork_point: Option<Oid>,
    },
    /// New messages break a rule: no ref moved.
    Rejected {
        /// `(commit, rule)` per violation.
        #[serde(serialize_with = "super::oid_serde::violations")]
        violations: Vec<crate::Violation>,
    },
}

/// Everything a pull did.
#[derive(Debug, Clone, Serialize)]
pub struct PullReport {
    /// The source as given.
    pub source: String,
    /// The name used under `refs/remotes/`.
    pub name: String,
    /// One entry per feed the source offered (and we asked for).
    pub feeds: Vec<FeedOutcome>,
}

impl PullReport {
    /// Whether any feed was rejected.
    pub fn has_rejections(&self) -> bool {
        self.feeds
            .iter()
            .any(|f| matches!(f.outcome, Outcome::Rejected { .. }))
    }

    /// Whether any received tip forks from a tip we hold.
    pub fn has_forks(&self) -> bool {
        self.feeds.iter().any(|f| !f.forks_with.is_empty())
    }
}

/// Options for [`push`].
#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    /// Name under `refs/remotes/` recording what the destination now has.
    pub name: Option<String>,
    /// Feeds to push; every feed in the store when empty.
    pub feeds: Vec<FeedId>,
}

/// Result for one feed of a push.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum PushOutcome {
    /// The destination had no such feed.
    Created,
    /// The destination's ref fast-forwarded.
    FastForward {
        /// Its previous tip.
        #[serde(serialize_with = "super::oid_serde::oid")]
        from: Oid,
    },
    /// The destination already had this tip.
    UpToDate,
    /// The destination has newer messages than we do: nothing pushed.
    RemoteAhead,
    /// Not a fast-forward (a fork, or history we do not have): nothing pushed.
    Refused {
        /// Why.
        reason: Refusal,
    },
}

/// Why a push left a feed alone. `Display` gives the words `tig` prints (and
/// `--json` carries).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The destination's tip and ours have diverged.
    #[error(
        "not a fast-forward: the destination's tip {0} forks from ours (run `tig feed pull` then `tig feed forks`)"
    )]
    Diverged(Oid),
    /// The destination's tip is a commit this store does not have.
    #[error("the destination has {0}, which this store does not know (pull first)")]
    Unknown(Oid),
    /// The destination refused the update; its words.
    #[error("the destination refused: {0}")]
    ByDestination(String),
}

impl Serialize for Refusal {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Everything a push did.
#[derive(Debug, Clone, Serialize)]
pub struct PushReport {
    /// The destination as given.
    pub dest: String,
    /// The name used under `refs/remotes/`.
    pub name: String,
    /// `(feed, tip, outcome)` per feed.
    #[serde(serialize_with = "super::oid_serde::pushed")]
    pub feeds: Vec<(FeedId, Oid, PushOutcome)>,
}

/// The name under `refs/remotes/` for a source path or URL: its last path
/// component without `.git`/`.bundle`, reduced to characters safe in a ref.
pub fn source_name(source: &str) -> String {
    let trimmed = source.trim_end_matches(['/', '\\']);
    let last = trimmed.rsplit(['/', '\\', ':']).next().unwrap_or(trimmed);
    let last = last
        .strip_suffix(".git")
        .or_else(|| last.strip_suffix(".bundle"))
        .unwrap_or(last);
    let mut name: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    while name.contains("..") {
        name = name.replace("..", ".");
    }
    let name = name.trim_matches(|c| c == '.' || c == '-').to_string();
    let name = name.strip_suffix(".lock").unwrap_or(&name).to_string();
    if name.is_empty() {
        "source".into()
    } else {
        name
    }
}

fn check_name(name: &str) -> Result<String, SyncError> {
    let full = format!("refs/remotes/{name}/x");
    if name.is_empty() || name.contains('/') || !git2::Reference::is_valid_name(&full) {
        return Err(SyncError::BadSourceName(name.to_string()));
    }
    Ok(name.to_string())
}

/// What a pull reads from or a push writes to, decided once from what the user
/// typed (never by trying transports one after another).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A git repository on this machine: a directory, or a `file://` URL.
    Local(PathBuf),
    /// A git bundle file.
    Bundle(PathBuf),
    /// A git URL fetched through libgit2's transports (`ssh://`, `git://`,
    /// `https://`, `user@host:path`).
    Remote(String),
    /// A tig server relay channel (`tig+http(s)://HOST:PORT/NAME`): pulled by
    /// [`relay::pull`](fn@super::relay::pull) over a transport the caller gives.
    Relay(String),
}

/// What a source can be, for error messages.
const SOURCE_FORMS: &str = "a store's directory, a bundle file, a git URL such as \
    ssh://host/path.git or file:///path, or a relay channel tig+http://HOST:PORT/NAME";

impl Source {
    /// Parse a source as typed on the command line. Paths are checked here, so
    /// a typo is "no such file or directory", not a transport error.
    pub fn parse(s: &str) -> Result<Source, SyncError> {
        let bad = |reason: String| SyncError::BadSource {
            source_arg: s.to_string(),
            reason,
        };
        if s.starts_with("tig+") {
            return Ok(Source::Relay(s.to_string()));
        }
        // `scheme://…`: a URL, read by the url crate. (`host:path` parses as a
        // URL too, with scheme `host`: git reads it as scp-like, and so do we,
        // below.)
        if let Some((scheme, _)) = s.split_once("://")
            && is_scheme(scheme)
        {
            let url = Url::parse(s)
                .map_err(|e| bad(format!("not a valid URL ({e}; a source is {SOURCE_FORMS})")))?;
            return match url.scheme() {
                "file" => {
                    let shown = s.get("file://".len()..).unwrap_or(s);
                    let Ok(path) = url.to_file_path() else {
                        return Err(bad(format!(
                            "no such directory {shown} (a file:// URL names a git repository on this machine)"
                        )));
                    };
                    if !path.is_dir() {
                        return Err(bad(format!(
                            "no such directory {shown} (a file:// URL names a git repository)"
                        )));
                    }
                    match Repository::open(&path) {
                        Ok(_) => Ok(Source::Local(path)),
                        Err(_) => Err(bad(format!("{shown} is not a git repository"))),
                    }
                }
                "http" | "https" | "ssh" | "git" | "git+ssh" | "ssh+git" => {
                    Ok(Source::Remote(s.to_string()))
                }
                other => Err(bad(format!(
                    "unsupported URL scheme {other}:// (a source is {SOURCE_FORMS})"
                ))),
            };
        }
        let p = Path::new(s);
        if p.is_file() {
            if !bundle::looks_like_bundle(p) {
                return Err(SyncError::NotABundle(p.to_path_buf()));
            }
            return Ok(Source::Bundle(p.to_path_buf()));
        }
        if p.is_dir() {
            return match Repository::open(p) {
                Ok(_) => Ok(Source::Local(p.to_path_buf())),
                Err(_) => Err(bad(format!(
                    "not a git repository (a source is {SOURCE_FORMS})"
                ))),
            };
        }
        // scp-like `[user@]host:path` (git's rule: a colon before any slash)
        if let Some((host, _)) = s.split_once(':')
            && !host.is_empty()
            && !host.contains('/')
        {
            return Ok(Source::Remote(s.to_string()));
        }
        Err(bad(format!(
            "no such file or directory (a source is {SOURCE_FORMS})"
        )))
    }
}

/// Whether `s` can be a URL scheme (RFC 3986: a letter, then letters, digits,
/// `+`, `-`, `.`): what decides that `s://…` is a URL and not a path.
fn is_scheme(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// A transport error from a remote URL, in words: for `http(s)://` the usual
/// mistake is a tig server without `tig+`.
fn remote_error(url: &str, e: git2::Error) -> SyncError {
    let http = Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
    let hint = if http && e.class() == git2::ErrorClass::Http {
        format!(
            "{url} is not a git server over HTTP ({}); a tig server relay channel is written tig+{url}",
            e.message()
        )
    } else {
        format!("{url}: {}", e.message())
    };
    SyncError::Transport(hint)
}

/// An absolute path for an existing local directory, else the string as given (a URL).
fn to_url(source: &str) -> String {
    let p = Path::new(source);
    if p.is_dir()
        && let Ok(abs) = p.canonicalize()
    {
        return abs.to_string_lossy().into_owned();
    }
    source.to_string()
}

/// The feed a `refs/heads/<id>` ref holds, if its name is a feed id.
fn feed_of_head(name: &str) -> Option<FeedId> {
    FeedId::parse(name.strip_prefix("refs/heads/")?).ok()
}

/// Pull feeds from `source`: another store's path, a git remote URL, or a bundle file.
pub fn pull(store: &FeedStore, source: &str, opts: &PullOptions) -> Result<PullReport, SyncError> {
    let name = match &opts.name {
        Some(n) => check_name(n)?,
        None => source_name(source),
    };
    let feeds = match Source::parse(source)? {
        Source::Bundle(path) => pull_bundle(store, &path, &name, &opts.feeds)?,
        Source::Local(path) => {
            let src = Repository::open(&path)?;
            pull_local(store, &src, &name, &opts.feeds)?
        }
        Source::Remote(url) => pull_remote(store, &url, &name, &opts.feeds)?,
        Source::Relay(url) => {
            return Err(SyncError::Unsupported(format!(
                "{url} is a relay channel: the caller speaks the relay protocol"
            )));
        }
    };
    Ok(PullReport {
        source: source.to_string(),
        name,
        feeds,
    })
}

fn wanted(feed: &FeedId, want: &[FeedId]) -> bool {
    want.is_empty() || want.contains(feed)
}

fn pull_bundle(
    store: &FeedStore,
    path: &Path,
    name: &str,
    want: &[FeedId],
) -> Result<Vec<FeedOutcome>, SyncError> {
    let repo = store.repo();
    let header = bundle::unbundle(repo, path)?;
    let mut incoming = BTreeMap::new();
    for (refname, oid) in &header.refs {
        if let Some(feed) = feed_of_head(refname)
            && wanted(&feed, want)
        {
            incoming.insert(feed, *oid);
        }
    }
    missing_wanted(&incoming, want)?;
    // Hold the received tips in quarantine refs while validating, so that a
    // concurrent `git gc` cannot prune them.
    let quarantine = Quarantine::new(repo);
    for (feed, oid) in &incoming {
        repo.reference(
            &quarantine.refname(feed),
            *oid,
            true,
            "tig feed pull: quarantine",
        )?;
    }
    let out = apply_incoming(store, name, &incoming);
    drop(quarantine);
    out
}

fn missing_wanted(incoming: &BTreeMap<FeedId, Oid>, want: &[FeedId]) -> Result<(), SyncError> {
    for w in want {
        if !incoming.contains_key(w) {
            return Err(SyncError::FeedNotInSource(w.clone()));
        }
    }
    Ok(())
}

/// Refs under `refs/tig/incoming/<nonce>/`, deleted on drop.
struct Quarantine<'r> {
    repo: &'r Repository,
    prefix: String,
}

impl<'r> Quarantine<'r> {
    fn new(repo: &'r Repository) -> Self {
        Quarantine {
            repo,
            prefix: format!("{INCOMING}/{}", util::nonce()),
        }
    }

    fn refname(&self, feed: &FeedId) -> String {
        format!("{}/{feed}", self.prefix)
    }
}

impl Drop for Quarantine<'_> {
    fn drop(&mut self) {
        let glob = format!("{}/*", self.prefix);
        if let Ok(refs) = self.repo.references_glob(&glob) {
            let mut names = Vec::new();
            for r in refs.flatten() {
                if let Ok(n) = r.name() {
                    names.push(n.to_string());
                }
            }
            for n in names {
                if let Ok(mut r) = self.repo.find_reference(&n)
                    && let Err(e) = r.delete()
                {
                    tracing::warn!(refname = %n, error = %e, "could not remove quarantine ref");
                }
            }
        }
        let _ = std::fs::remove_dir(self.repo.path().join(&self.prefix));
    }
}

/// The empty tree's id: the tree of every feed message.
const EMPTY_TREE: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";

/// Pull from a repository on this machine: walk the source directly and copy
/// the missing objects as one pack (see [`crate::pack`]), instead of going
/// through libgit2's transport and its delta search.
///
/// The new messages are checked from the bytes in hand: every chunk the walk
/// reads goes to a checking thread (signatures on the rayon pool) while this
/// thread reads on, then writes and indexes the pack.
fn pull_local(
    store: &FeedStore,
    src: &Repository,
    name: &str,
    want: &[FeedId],
) -> Result<Vec<FeedOutcome>, SyncError> {
    let repo = store.repo();
    let mut advertised = BTreeMap::new();
    for r in src.references_glob("refs/heads/*")? {
        let r = r?;
        if r.symbolic_target().ok().flatten().is_some() {
            continue;
        }
        let Ok(refname) = r.name() else { continue };
        // The ref's own target, not peeled: a tip that is missing or not a
        // commit is the source's problem and gets that feed rejected below.
        if let Some(feed) = feed_of_head(refname)
            && wanted(&feed, want)
            && let Some(tip) = r.target()
        {
            advertised.insert(feed, tip);
        }
    }
    missing_wanted(&advertised, want)?;
    if advertised.is_empty() {
        return Ok(Vec::new());
    }
    let started = std::time::Instant::now();
    let feeds: Vec<(FeedId, Oid)> = advertised.iter().map(|(f, t)| (f.clone(), *t)).collect();
    let odb = repo.odb()?;
    odb.refresh()?;
    let gpg = store.gpg();
    let (walk, checked) = std::thread::scope(|scope| -> Result<_, SyncError> {
        let (send, chunks) = std::sync::mpsc::channel::<(usize, Chunk)>();
        let feeds = &feeds;
        let checking = scope.spawn(move || {
            let mut found = vec![Vec::new(); feeds.len()];
            for (feed, chunk) in chunks {
                found[feed].extend(crate::verify::check_raw(gpg, &feeds[feed].0, &chunk));
            }
            found
        });
        let walk = walk_source(src, &odb, feeds, |feed, chunk| {
            // The checker only stops early by panicking, which join re-raises.
            let _ = send.send((feed, chunk));
        });
        drop(send);
        let walk = walk?;
        let read = started.elapsed();
        write_objects(repo, &odb, &walk)?;
        let checked = checking
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        tracing::debug!(
            objects = walk.count(),
            read_ms = read.as_millis() as u64,
            ms = started.elapsed().as_millis() as u64,
            "copied the missing objects as one pack and checked the new messages"
        );
        Ok((walk, checked))
    })?;
    let mut prechecked = BTreeMap::new();
    let mut failed = Vec::new();
    for ((feed, mut walked), violations) in advertised.keys().zip(walk.walked).zip(checked) {
        if let Some(reason) = walked.error.take() {
            failed.push(rejected(feed.clone(), advertised[feed], reason));
            continue;
        }
        prechecked.insert(feed.clone(), Prechecked { walked, violations });
    }
    advertised.retain(|feed, _| prechecked.contains_key(feed));
    let quarantine = Quarantine::new(repo);
    for (feed, oid) in &advertised {
        repo.reference(
            &quarantine.refname(feed),
            *oid,
            true,
            "tig feed pull: quarantine",
        )?;
    }
    let out = apply_incoming_checked(store, name, &advertised, &prechecked);
    drop(quarantine);
    let mut out = out?;
    out.extend(failed);
    out.sort_by(|a, b| a.feed.cmp(&b.feed));
    Ok(out)
}

/// A feed rejected before any check: its source is broken (say, a missing object).
fn rejected(feed: FeedId, tip: Oid, reason: String) -> FeedOutcome {
    tracing::debug!(%feed, %reason, "rejected");
    FeedOutcome {
        feed,
        tip,
        new_messages: 0,
        outcome: Outcome::Rejected {
            violations: vec![crate::Violation {
                commit: tip,
                rule: crate::Rule::Unreadable(reason),
            }],
        },
        forks_with: Vec::new(),
        preserved: None,
    }
}

/// Objects read from a source: (id, kind, raw content).
type Chunk = std::sync::Arc<Vec<(Oid, git2::ObjectType, Vec<u8>)>>;

/// Everything [`walk_source`] read.
struct SourceWalk {
    /// The feeds' new commits, in chunks.
    commits: Vec<Chunk>,
    /// Trees (and what they hold) the store lacks.
    others: Vec<(Oid, git2::ObjectType, Vec<u8>)>,
    /// Per feed, in the order given.
    walked: Vec<Walked>,
}

impl SourceWalk {
    fn count(&self) -> usize {
        self.commits.iter().map(|c| c.len()).sum::<usize>() + self.others.len()
    }

    fn objects(&self) -> impl Iterator<Item = (git2::ObjectType, &[u8])> {
        self.commits
            .iter()
            .flat_map(|c| c.iter())
            .chain(&self.others)
            .map(|(_, kind, data)| (*kind, data.as_slice()))
    }
}

/// What walking one feed in the source found.
struct Walked {
    /// How many new commits.
    count: usize,
    /// Commits where the walk stopped because this store already has them (sorted,
    /// each once).
    stops: Vec<Oid>,
    /// Whether the walk ran into commits queued for another feed.
    overlaps: bool,
    /// Why the source's objects for this feed could not be read, if so.
    error: Option<String>,
}

/// Follows parent links from each feed's tip by reading raw objects from `src`
/// (one read per message; no revwalk), stopping at anything `odb` already has,
/// and hands each full chunk of commits to `checked` (feed index, chunk).
fn walk_source(
    src: &Repository,
    odb: &git2::Odb<'_>,
    feeds: &[(FeedId, Oid)],
    mut checked: impl FnMut(usize, Chunk),
) -> Result<SourceWalk, SyncError> {
    // `exists` re-reads the pack directory after every miss, and a pull misses
    // once per new object; the caller refreshed once. (An object that arrives
    // from elsewhere meanwhile is at worst copied twice.)
    let has = |oid: Oid| odb.exists_ext(oid, git2::OdbLookupFlags::NO_REFRESH);
    let src_odb = src.odb()?;
    let mut out = SourceWalk {
        commits: Vec::new(),
        others: Vec::new(),
        walked: Vec::new(),
    };
    // object → index of the feed whose walk queued it
    let mut queued: std::collections::HashMap<Oid, usize> = std::collections::HashMap::new();
    let mut trees: Vec<Oid> = Vec::new();
    for (index, (_, tip)) in feeds.iter().enumerate() {
        let mut w = Walked {
            count: 0,
            stops: Vec::new(),
            overlaps: false,
            error: None,
        };
        let mut pending = Vec::with_capacity(crate::verify::CHUNK);
        let mut flush = |pending: &mut Vec<_>, out: &mut SourceWalk| {
            let chunk: Chunk = std::sync::Arc::new(std::mem::replace(
                pending,
                Vec::with_capacity(crate::verify::CHUNK),
            ));
            checked(index, chunk.clone());
            out.commits.push(chunk);
        };
        let mut stack = vec![*tip];
        while let Some(oid) = stack.pop() {
            if has(oid) {
                w.stops.push(oid);
                continue;
            }
            if let Some(&owner) = queued.get(&oid) {
                w.overlaps |= owner != index;
                continue;
            }
            let obj = match src_odb.read(oid) {
                Ok(obj) => obj,
                Err(e) => {
                    w.error = Some(format!("the source cannot give {oid}: {}", e.message()));
                    break;
                }
            };
            queued.insert(oid, index);
            let data = obj.data().to_vec();
            if obj.kind() == git2::ObjectType::Commit {
                for link in crate::commit::links(&data) {
                    match link {
                        crate::commit::Link::Tree(id) => trees.push(id),
                        crate::commit::Link::Parent(id) => stack.push(id),
                    }
                }
            }
            pending.push((oid, obj.kind(), data));
            w.count += 1;
            if pending.len() == crate::verify::CHUNK {
                flush(&mut pending, &mut out);
            }
        }
        if !pending.is_empty() {
            flush(&mut pending, &mut out);
        }
        w.stops.sort();
        w.stops.dedup();
        out.walked.push(w);
    }
    // Trees: the empty tree for well-formed messages; anything else (a broken
    // message) is copied too, so the store never holds a dangling link.
    trees.sort();
    trees.dedup();
    let empty = Oid::from_str(EMPTY_TREE)?;
    for tree in trees {
        if has(tree) || queued.contains_key(&tree) {
            continue;
        }
        if tree == empty {
            queued.insert(tree, usize::MAX);
            out.others.push((tree, git2::ObjectType::Tree, Vec::new()));
            continue;
        }
        let mut stack = vec![tree];
        while let Some(t) = stack.pop() {
            if has(t) || queued.insert(t, usize::MAX).is_some() {
                continue;
            }
            let obj = src_odb.read(t)?;
            if obj.kind() == git2::ObjectType::Tree
                && let Ok(tr) = src.find_tree(t)
            {
                for e in tr.iter() {
                    // a gitlink names a commit of another repository: nothing to copy
                    if e.filemode() != 0o160000 {
                        stack.push(e.id());
                    }
                }
            }
            out.others.push((t, obj.kind(), obj.data().to_vec()));
        }
    }
    Ok(out)
}

/// A feed's new messages, already checked by [`pull_local`].
struct Prechecked {
    walked: Walked,
    violations: Vec<crate::Violation>,
}

/// Writes what `walk` read as one pack into `odb`; on failure removes what it wrote.
fn write_objects(
    repo: &Repository,
    odb: &git2::Odb<'_>,
    walk: &SourceWalk,
) -> Result<(), SyncError> {
    let count = walk.count();
    if count == 0 {
        return Ok(());
    }
    // on failure the indexer removes its own temporary file; nothing else in
    // objects/pack is touched (another process may be writing its own pack)
    let mut w = util::PackIndexer::new(repo, odb)?;
    {
        let mut buf = std::io::BufWriter::with_capacity(1 << 20, &mut w);
        crate::pack::write_pack(count, walk.objects(), &mut buf)
            .map_err(|e| SyncError::Git(git2::Error::from_str(&e.to_string())))?;
    }
    w.finish()?;
    odb.refresh()?;
    Ok(())
}

fn pull_remote(
    store: &FeedStore,
    source: &str,
    name: &str,
    want: &[FeedId],
) -> Result<Vec<FeedOutcome>, SyncError> {
    let repo = store.repo();
    let url = source.to_string();
    let mut remote = repo.remote_anonymous(&url)?;
    remote
        .connect(Direction::Fetch)
        .map_err(|e| remote_error(&url, e))?;
    let mut advertised = BTreeMap::new();
    for head in remote.list()? {
        if let Some(feed) = feed_of_head(head.name())
            && wanted(&feed, want)
        {
            advertised.insert(feed, head.oid());
        }
    }
    remote.disconnect()?;
    missing_wanted(&advertised, want)?;
    if advertised.is_empty() {
        return Ok(Vec::new());
    }
    let quarantine = Quarantine::new(repo);
    let specs: Vec<String> = advertised
        .keys()
        .map(|f| format!("+refs/heads/{f}:{}", quarantine.refname(f)))
        .collect();
    let mut fo = FetchOptions::new();
    fo.download_tags(AutotagOption::None)
        .update_fetchhead(false)
        .prune(FetchPrune::Off);
    remote
        .fetch(&specs, Some(&mut fo), Some("tig feed pull: quarantine"))
        .map_err(|e| remote_error(&url, e))?;
    let mut incoming = BTreeMap::new();
    for feed in advertised.keys() {
        match repo.refname_to_id(&quarantine.refname(feed)) {
            Ok(oid) => {
                incoming.insert(feed.clone(), oid);
            }
            Err(e) => {
                tracing::warn!(%feed, error = %e.message(), "feed vanished from the source during the pull");
            }
        }
    }
    let out = apply_incoming(store, name, &incoming);
    drop(quarantine);
    out
}

/// Validate and apply received tips (objects already in the store).
fn apply_incoming(
    store: &FeedStore,
    name: &str,
    incoming: &BTreeMap<FeedId, Oid>,
) -> Result<Vec<FeedOutcome>, SyncError> {
    apply_incoming_checked(store, name, incoming, &BTreeMap::new())
}

/// Whether the checks made during the copy stand for `verify_range`'s: they
/// found a violation (the commits they read were not in this store, so not
/// validated before either), or every commit where the walk stopped is a tip this
/// store holds for the feed. Anything else (a stop deeper in the history, objects
/// left by a rejected pull, commits shared with another feed) is checked again,
/// with one revwalk.
fn covered(check: &Prechecked, known: &[Oid]) -> bool {
    let w = &check.walked;
    !check.violations.is_empty() || (!w.overlaps && w.stops.iter().all(|s| known.contains(s)))
}

/// [`apply_incoming`], using the checks already made for some feeds when they
/// cover everything `verify_range` would check (else it checks again).
///
/// The pipeline: the received tips are [`Unverified`]; [`verified::verify`]
/// turns those that pass into a [`Verified`] (the in-memory checks of a local
/// pull feed the same function); only [`apply`] moves refs, and it takes that.
fn apply_incoming_checked(
    store: &FeedStore,
    name: &str,
    incoming: &BTreeMap<FeedId, Oid>,
    prechecked: &BTreeMap<FeedId, Prechecked>,
) -> Result<Vec<FeedOutcome>, SyncError> {
    let tips = incoming.clone();
    // the in-memory checks of a local pull stand in only where they cover
    // every new message (see `covered`)
    let fast = |feed: &FeedId, known: &[Oid]| {
        prechecked
            .get(feed)
            .filter(|p| covered(p, known))
            .map(|p| (p.walked.count, p.violations.clone()))
    };
    let verdict = verified::verify(store, Unverified::new(Tips::new(tips)), &fast)?;
    let mut out: Vec<FeedOutcome> = verdict
        .rejected
        .into_iter()
        .map(|r| FeedOutcome {
            feed: r.feed,
            tip: r.tip,
            new_messages: r.new_messages,
            outcome: Outcome::Rejected {
                violations: r.violations,
            },
            forks_with: Vec::new(),
            preserved: None,
        })
        .collect();
    out.extend(apply(store, name, verdict.verified)?);
    out.sort_by(|a, b| a.feed.cmp(&b.feed));
    Ok(out)
}

/// Moves the refs for each verified tip: `refs/remotes/<name>/<feed>` always
/// (keeping a rewritten-away old tip under another name), `refs/heads/<feed>`
/// when created or fast-forwarded; forks are reported, never overwritten.
/// Takes a [`Verified`]: the only way refs move during a pull.
fn apply(store: &FeedStore, name: &str, v: Verified<Tips>) -> Result<Vec<FeedOutcome>, SyncError> {
    v.tips().map(|t| apply_one(store, name, t)).collect()
}

/// [`apply`] for one tip (reachable only from there).
fn apply_one(
    store: &FeedStore,
    name: &str,
    v: verified::VerifiedTip<'_>,
) -> Result<FeedOutcome, SyncError> {
    let repo = store.repo();
    let (feed, tip, tips) = (v.feed, v.tip, v.held);
    let mut entry = FeedOutcome {
        feed: feed.clone(),
        tip,
        new_messages: v.new_messages,
        outcome: Outcome::UpToDate,
        forks_with: Vec::new(),
        preserved: None,
    };
    for (refname, oid) in tips {
        if *oid == tip {
            continue;
        }
        if !repo.graph_descendant_of(tip, *oid)? && !repo.graph_descendant_of(*oid, tip)? {
            entry.forks_with.push((refname.clone(), *oid));
        }
    }
    let msg = format!("tig feed pull {name}");
    // Remote-tracking ref: always records what the source has. If the
    // source rewrote its history, keep the old branch under another name.
    let rname = format!("refs/remotes/{name}/{feed}");
    if let Ok(old) = repo.refname_to_id(&rname)
        && old != tip
        && !repo.graph_descendant_of(tip, old)?
    {
        let mut elsewhere = false;
        for (n, o) in tips {
            if n != &rname && (*o == old || repo.graph_descendant_of(*o, old)?) {
                elsewhere = true;
                break;
            }
        }
        if !elsewhere {
            let short = &old.to_string()[..8];
            let keep = format!("refs/remotes/{name}@{short}/{feed}");
            repo.reference(&keep, old, true, &msg)?;
            entry.preserved = Some(keep);
        }
    }
    repo.reference(&rname, tip, true, &msg)?;
    let hname = format!("refs/heads/{feed}");
    entry.outcome = match repo.refname_to_id(&hname) {
        Err(_) => {
            repo.reference(&hname, tip, false, &msg)?;
            Outcome::Created
        }
        Ok(head) if head == tip => Outcome::UpToDate,
        Ok(head) if repo.graph_descendant_of(tip, head)? => {
            repo.reference_matching(&hname, tip, true, head, &msg)?;
            Outcome::FastForward { from: head }
        }
        Ok(head) if repo.graph_descendant_of(head, tip)? => Outcome::LocalAhead,
        Ok(head) => Outcome::Fork {
            local: head,
            fork_point: repo.merge_base(head, tip).ok(),
        },
    };
    Ok(entry)
}

/// Push feeds to `dest` (a path or git remote URL). A feed whose ref at the
/// destination is not an ancestor of ours is refused, never overwritten.
pub fn push(store: &FeedStore, dest: &str, opts: &PushOptions) -> Result<PushReport, SyncError> {
    let repo = store.repo();
    let name = match &opts.name {
        Some(n) => check_name(n)?,
        None => source_name(dest),
    };
    if Path::new(dest).is_file() {
        return Err(SyncError::Unsupported(format!(
            "{dest} is a file: push goes to a store or git URL; write a bundle with `tig feed bundle create`"
        )));
    }
    let url = match Source::parse(dest)? {
        Source::Local(p) => to_url(&p.to_string_lossy()),
        Source::Remote(u) => u,
        Source::Bundle(_) | Source::Relay(_) => {
            return Err(SyncError::Unsupported(format!(
                "{dest}: push goes to a store or git URL"
            )));
        }
    };
    let mut local = BTreeMap::new();
    if opts.feeds.is_empty() {
        for r in repo.references_glob("refs/heads/*")? {
            let r = r?;
            if r.is_remote() || r.symbolic_target().ok().flatten().is_some() {
                continue;
            }
            if let Ok(n) = r.name()
                && let Some(feed) = feed_of_head(n)
                && let Ok(c) = r.peel_to_commit()
            {
                local.insert(feed, c.id());
            }
        }
    } else {
        for f in &opts.feeds {
            let oid = repo
                .refname_to_id(&f.ref_name())
                .map_err(|_| SyncError::FeedNotFound(f.clone()))?;
            local.insert(f.clone(), oid);
        }
    }
    let mut remote = repo.remote_anonymous(&url)?;
    remote
        .connect(Direction::Push)
        .map_err(|e| remote_error(&url, e))?;
    let mut theirs = BTreeMap::new();
    for head in remote.list()? {
        if let Some(feed) = feed_of_head(head.name()) {
            theirs.insert(feed, head.oid());
        }
    }
    remote.disconnect()?;

    let mut results = Vec::new();
    let mut specs = Vec::new();
    for (feed, &ours) in &local {
        let outcome = match theirs.get(feed) {
            None => PushOutcome::Created,
            Some(&t) if t == ours => PushOutcome::UpToDate,
            Some(&t) if repo.odb()?.exists(t) && repo.graph_descendant_of(ours, t)? => {
                PushOutcome::FastForward { from: t }
            }
            Some(&t) if repo.odb()?.exists(t) && repo.graph_descendant_of(t, ours)? => {
                PushOutcome::RemoteAhead
            }
            Some(&t) if repo.odb()?.exists(t) => PushOutcome::Refused {
                reason: Refusal::Diverged(t),
            },
            Some(&t) => PushOutcome::Refused {
                reason: Refusal::Unknown(t),
            },
        };
        if matches!(
            outcome,
            PushOutcome::Created | PushOutcome::FastForward { .. }
        ) {
            // No leading '+': libgit2 re-checks that the update is a fast-forward.
            specs.push(format!("refs/heads/{feed}:refs/heads/{feed}"));
        }
        results.push((feed.clone(), ours, outcome));
    }
    let mut rejected: BTreeMap<String, String> = BTreeMap::new();
    if !specs.is_empty() {
        let mut cbs = git2::RemoteCallbacks::new();
        cbs.push_update_reference(|refname, status| {
            if let Some(s) = status {
                rejected.insert(refname.to_string(), s.to_string());
            }
            Ok(())
        });
        let mut po = git2::PushOptions::new();
        po.remote_callbacks(cbs);
        remote.push(&specs, Some(&mut po))?;
    }
    let msg = format!("tig feed push {name}");
    let mut feeds = Vec::new();
    for (feed, ours, mut outcome) in results {
        let refname = format!("refs/heads/{feed}");
        if let Some(reason) = rejected.get(&refname) {
            outcome = PushOutcome::Refused {
                reason: Refusal::ByDestination(reason.clone()),
            };
        }
        if matches!(
            outcome,
            PushOutcome::Created | PushOutcome::FastForward { .. } | PushOutcome::UpToDate
        ) {
            repo.reference(&format!("refs/remotes/{name}/{feed}"), ours, true, &msg)?;
        }
        feeds.push((feed, ours, outcome));
    }
    Ok(PushReport {
        dest: dest.to_string(),
        name,
        feeds,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests may unwrap
    use super::{Source, SyncError, source_name};

    #[test]
    fn source_names_come_from_the_last_path_component() {
        assert_eq!(source_name("../bob-store"), "bob-store");
        assert_eq!(source_name("/srv/hub.git/"), "hub");
        assert_eq!(source_name("file:///tmp/x/alice-store"), "alice-store");
        assert_eq!(source_name("bob.bundle"), "bob");
        assert_eq!(source_name("bob.updates"), "bob.updates");
        assert_eq!(source_name("ssh://host:22/a b"), "a-b");
        assert_eq!(source_name("/"), "source");
        assert_eq!(source_name("x.lock"), "x");
    }

    /// The words of a `BadSource` error, or a panic naming what parsed instead.
    fn refused(s: &str) -> String {
        match Source::parse(s) {
            Err(SyncError::BadSource { reason, .. }) => reason,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn sources_are_told_apart_once_from_what_was_typed() {
        let tmp = tempfile::tempdir().unwrap();
        let store = tmp.path().join("store");
        git2::Repository::init_bare(&store).unwrap();
        let plain = tmp.path().join("plain");
        std::fs::create_dir(&plain).unwrap();
        let dir = store.to_str().unwrap();
        for remote in [
            "ssh://host/x.git",
            "ssh://git@host:2222/x.git",
            "git+ssh://host/x",
            "https://example.org/x.git",
            "git://host/x",
            "git@host:feeds.git",
            "host:feeds.git",
        ] {
            assert_eq!(
                Source::parse(remote).unwrap(),
                Source::Remote(remote.into()),
                "{remote}"
            );
        }
        let relay = "tig+http://127.0.0.1:7777/chan";
        assert_eq!(Source::parse(relay).unwrap(), Source::Relay(relay.into()));
        assert_eq!(Source::parse(dir).unwrap(), Source::Local(store.clone()));
        assert_eq!(
            Source::parse(&format!("file://{dir}")).unwrap(),
            Source::Local(store.clone())
        );
        assert!(refused("ftp://host/x").starts_with("unsupported URL scheme ftp://"));
        assert!(refused("file:///nonexistent/x").starts_with("no such directory /nonexistent/x"));
        let p = plain.to_str().unwrap();
        assert_eq!(
            refused(&format!("file://{p}")),
            format!("{p} is not a git repository")
        );
        assert!(refused(p).starts_with("not a git repository"));
        assert!(refused("/nonexistent/x").starts_with("no such file or directory"));
        assert!(refused("ssh://[::1/x").starts_with("not a valid URL"));
    }
}
