//! Forks: a feed whose key signed two different successors of the same message.
//!
//! For each feed, every tip the store holds (`refs/heads/<feed>`,
//! `refs/remotes/*/<feed>`) is collected; tips reachable from another tip are
//! dropped; each pair of the remaining independent tips is split at its merge
//! base (the fork point) into the two conflicting messages. A proof is a
//! self-contained bundle holding the conflicting messages (and their history)
//! under `refs/tig/proof/<feed>/<commit>`; [`verify_proof`] checks one in a
//! scratch store, trusting nothing but the feed's key.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use git2::{Oid, Repository};
use serde::Serialize;

use super::util::{self, TempDir};
use super::{BundleSummary, SyncError, bundle};
use crate::{FeedId, FeedStore};

/// Ref namespace of the conflicting messages inside a proof bundle.
pub const PROOF_PREFIX: &str = "refs/tig/proof";

/// One fork of one feed.
#[derive(Debug, Clone, Serialize)]
pub struct Fork {
    /// The feed.
    pub feed: FeedId,
    /// The last message the branches share: `None` when they start with two
    /// different first messages.
    pub fork_point: Option<ForkPoint>,
    /// The conflicting successors (at least two), each signed by the feed's key
    /// when `valid`.
    pub messages: Vec<ForkMessage>,
}

/// The shared parent of a fork.
#[derive(Debug, Clone, Serialize)]
pub struct ForkPoint {
    /// Commit id.
    #[serde(serialize_with = "super::oid_serde::oid")]
    pub commit: Oid,
    /// Its sequence number.
    pub sequence: u64,
}

/// One of the conflicting messages of a fork.
#[derive(Debug, Clone, Serialize)]
pub struct ForkMessage {
    /// Commit id.
    #[serde(serialize_with = "super::oid_serde::oid")]
    pub commit: Oid,
    /// Sequence number (fork point + 1).
    pub sequence: u64,
    /// Author timestamp (seconds since the epoch).
    pub timestamp: i64,
    /// The content.
    pub content: String,
    /// "good" when the message passes every feed rule, else the rule it breaks.
    pub signature: String,
    /// Whether the message passes every feed rule (signature by the feed's key…).
    pub valid: bool,
    /// Refs whose branch contains this message.
    pub tips: Vec<String>,
    /// SHA-256 of the signed payload (the commit minus its signature): what the
    /// key signed. The messages of a fork all differ here.
    pub signed: String,
}

impl Fork {
    /// Whether this fork is a proof: at least two conflicting messages that are
    /// validly signed (and so, being listed once per signed payload, signed
    /// content that differs).
    pub fn is_proof(&self) -> bool {
        self.messages.iter().filter(|m| m.valid).count() >= 2
    }
}

/// Tips per feed, from one pass over the refs.
fn tips_by_feed(repo: &Repository) -> Result<BTreeMap<FeedId, Vec<(String, Oid)>>, SyncError> {
    let mut map: BTreeMap<FeedId, Vec<(String, Oid)>> = BTreeMap::new();
    for r in repo.references()? {
        let r = r?;
        let Ok(name) = r.name() else { continue };
        let feed = if let Some(id) = name.strip_prefix("refs/heads/") {
            id
        } else if let Some(rest) = name.strip_prefix("refs/remotes/") {
            match rest.rsplit_once('/') {
                Some((_, id)) => id,
                None => continue,
            }
        } else {
            continue;
        };
        if r.symbolic_target().ok().flatten().is_some() {
            continue; // an alias: its target is listed on its own
        }
        let Ok(fid) = FeedId::parse(feed) else {
            continue;
        };
        let Ok(commit) = r.peel_to_commit() else {
            continue;
        };
        map.entry(fid)
            .or_default()
            .push((name.to_string(), commit.id()));
    }
    Ok(map)
}

/// Find every fork of the given feeds (all feeds the store holds when empty).
pub fn find_forks(store: &FeedStore, feeds: &[FeedId]) -> Result<Vec<Fork>, SyncError> {
    let repo = store.repo();
    let all = tips_by_feed(repo)?;
    for f in feeds {
        if !all.contains_key(f) {
            return Err(SyncError::FeedNotFound(f.clone()));
        }
    }
    let mut out = Vec::new();
    for (feed, tips) in &all {
        if !feeds.is_empty() && !feeds.contains(feed) {
            continue;
        }
        out.extend(forks_of(store, feed, tips)?);
    }
    Ok(out)
}

fn forks_of(
    store: &FeedStore,
    fid: &FeedId,
    tips: &[(String, Oid)],
) -> Result<Vec<Fork>, SyncError> {
    let repo = store.repo();
    let mut uniq: Vec<Oid> = tips.iter().map(|(_, o)| *o).collect();
    uniq.sort();
    uniq.dedup();
    if uniq.len() < 2 {
        return Ok(Vec::new());
    }
    let mut independent = Vec::new();
    for &t in &uniq {
        let mut covered = false;
        for &u in &uniq {
            if u != t && repo.graph_descendant_of(u, t)? {
                covered = true;
                break;
            }
        }
        if !covered {
            independent.push(t);
        }
    }
    if independent.len() < 2 {
        return Ok(Vec::new());
    }
    // fork point -> conflicting children
    let mut groups: BTreeMap<Option<Oid>, BTreeSet<Oid>> = BTreeMap::new();
    for (i, &a) in independent.iter().enumerate() {
        for &b in &independent[i + 1..] {
            let base = match repo.merge_base(a, b) {
                Ok(o) => Some(o),
                Err(e) if e.code() == git2::ErrorCode::NotFound => None,
                Err(e) => return Err(e.into()),
            };
            let ca = child_toward(repo, a, base)?;
            let cb = child_toward(repo, b, base)?;
            let set = groups.entry(base).or_default();
            set.insert(ca);
            set.insert(cb);
        }
    }
    let mut seqs: HashMap<Oid, u64> = HashMap::new();
    let mut forks = Vec::new();
    for (base, children) in groups {
        let base_seq = match base {
            Some(b) => {
                let s = util::sequence(repo, b)?;
                seqs.insert(b, s);
                s
            }
            None => 0,
        };
        let known: Vec<Oid> = base.into_iter().collect();
        let mut messages: Vec<ForkMessage> = Vec::new();
        for c in children {
            let commit = repo.find_commit(c)?;
            let (valid, signature) = match crate::verify_range(store, fid, c, &known) {
                Ok(v) if v.is_empty() => (true, "good".to_string()),
                Ok(v) => (false, v[0].rule.to_string()),
                Err(e) => (false, e.to_string()),
            };
            let mut on = Vec::new();
            for (name, t) in tips {
                if *t == c || repo.graph_descendant_of(*t, c)? {
                    on.push(name.clone());
                }
            }
            let message = ForkMessage {
                commit: c,
                sequence: base_seq + 1,
                timestamp: commit.author().when().seconds(),
                content: util::content(&commit),
                signature,
                valid,
                tips: on,
                signed: util::message_digest(repo, c)?,
            };
            // Copies of one message (same signed payload, another encoding of
            // the signature) are one message: keep a valid copy if there is one.
            if let Some(i) = messages.iter().position(|m| m.signed == message.signed) {
                let other = if message.valid && !messages[i].valid {
                    std::mem::replace(&mut messages[i], message)
                } else {
                    message
                };
                let kept = &mut messages[i];
                kept.tips.extend(other.tips);
                kept.tips.sort();
                kept.tips.dedup();
            } else {
                messages.push(message);
            }
        }
        if messages.len() < 2 {
            continue; // one message, several encodings: no equivocation
        }
        forks.push(Fork {
            feed: fid.clone(),
            fork_point: base.map(|b| ForkPoint {
                commit: b,
                sequence: base_seq,
            }),
            messages,
        });
    }
    Ok(forks)
}

/// The commit on `tip`'s first-parent chain whose parent is `base` (the root when `base` is `None`).
fn child_toward(repo: &Repository, tip: Oid, base: Option<Oid>) -> Result<Oid, SyncError> {
    let mut c = tip;
    loop {
        let commit = repo.find_commit(c)?;
        let parent = commit.parent_id(0).ok();
        if parent == base {
            return Ok(c);
        }
        match parent {
            Some(p) => c = p,
            None => {
                return Err(SyncError::Git(git2::Error::from_str(&format!(
                    "{tip} does not descend from {}",
                    base.map(|b| b.to_string()).unwrap_or_default()
                ))));
            }
        }
    }
}

/// Write the given forks' conflicting messages (with their history, so the
/// file is self-contained) as a bundle. Only validly signed messages go in.
pub fn export_proof(
    store: &FeedStore,
    forks: &[Fork],
    path: &Path,
) -> Result<BundleSummary, SyncError> {
    let repo = store.repo();
    let mut refs = Vec::new();
    let mut walk = repo.revwalk()?;
    let mut feeds = Vec::new();
    for f in forks.iter().filter(|f| f.is_proof()) {
        for m in f.messages.iter().filter(|m| m.valid) {
            let oid = m.commit;
            refs.push((format!("{PROOF_PREFIX}/{}/{oid}", f.feed), oid));
            walk.push(oid)?;
            feeds.push((f.feed.clone(), oid));
        }
    }
    if refs.is_empty() {
        return Err(SyncError::NothingToBundle(
            "no fork with two validly signed messages to prove".into(),
        ));
    }
    let mut count = repo.revwalk()?;
    for (_, o) in &refs {
        count.push(*o)?;
    }
    let commits = count.count();
    let objects = bundle::write_bundle(repo, path, &refs, &[], walk, "")?;
    let bytes = std::fs::metadata(path)
        .map_err(|e| SyncError::io(path, e))?
        .len();
    Ok(BundleSummary {
        path: path.to_path_buf(),
        feeds,
        prerequisites: Vec::new(),
        commits,
        objects,
        bytes,
    })
}

/// A fork established by a proof file.
#[derive(Debug, Clone, Serialize)]
pub struct ProvenFork {
    /// The feed whose key signed the conflicting messages.
    pub feed: FeedId,
    /// Their common parent (`None`: two different first messages).
    #[serde(serialize_with = "super::oid_serde::opt_oid")]
    pub parent: Option<Oid>,
    /// Sequence number of the conflicting messages.
    pub sequence: u64,
    /// The conflicting messages: `(commit, content)`.
    #[serde(serialize_with = "super::oid_serde::contents")]
    pub messages: Vec<(Oid, String)>,
}

/// What [`verify_proof`] established.
#[derive(Debug, Clone, Serialize)]
pub struct ProofReport {
    /// Every fork the file proves.
    pub forks: Vec<ProvenFork>,
}

/// Check a proof bundle on its own: in a scratch store, index it, then for each
/// feed require at least two different messages with the same parent, each
/// passing every feed rule (signature by the feed's own key, author, tree).
pub fn verify_proof(path: &Path) -> Result<ProofReport, SyncError> {
    let tmp = TempDir::new("tig-proof")?;
    let repo = Repository::init_bare(tmp.path())?;
    drop(repo);
    let store = FeedStore::open(tmp.path())?;
    let header = bundle::unbundle(store.repo(), path).map_err(|e| match e {
        SyncError::MissingPrerequisite(o) => {
            SyncError::InvalidProof(format!("not self-contained: it needs commit {o}"))
        }
        other => other,
    })?;
    let repo = store.repo();
    let mut by_feed: BTreeMap<String, BTreeSet<Oid>> = BTreeMap::new();
    for (name, oid) in &header.refs {
        let Some(rest) = name.strip_prefix(&format!("{PROOF_PREFIX}/")) else {
            continue;
        };
        let Some((feed, _)) = rest.split_once('/') else {
            continue;
        };
        by_feed.entry(feed.to_string()).or_default().insert(*oid);
    }
    if by_feed.is_empty() {
        return Err(SyncError::InvalidProof(format!(
            "no {PROOF_PREFIX}/<feed>/<commit> refs in the bundle"
        )));
    }
    let mut forks = Vec::new();
    let mut problems = Vec::new();
    for (feed, commits) in by_feed {
        let fid = match FeedId::parse(&feed) {
            Ok(f) => f,
            Err(e) => {
                problems.push(format!("{feed}: {e}"));
                continue;
            }
        };
        // group by parent: a fork is ≥ 2 valid messages with the same parent
        let mut by_parent: BTreeMap<Option<Oid>, BTreeMap<String, (Oid, String)>> = BTreeMap::new();
        for c in commits {
            let commit = repo.find_commit(c)?;
            if commit.parent_count() > 1 {
                problems.push(format!("{c}: a merge commit is not a feed message"));
                continue;
            }
            let parent = commit.parent_id(0).ok();
            let known: Vec<Oid> = parent.into_iter().collect();
            match crate::verify_range(&store, &fid, c, &known) {
                // one entry per signed payload: re-encoded copies prove nothing
                Ok(v) if v.is_empty() => {
                    by_parent
                        .entry(parent)
                        .or_default()
                        .entry(util::message_digest(repo, c)?)
                        .or_insert((c, util::content(&commit)));
                }
                Ok(v) => problems.push(format!("{c}: {}", v[0].rule)),
                Err(e) => problems.push(format!("{c}: {e}")),
            }
        }
        for (parent, msgs) in by_parent {
            if msgs.len() < 2 {
                continue;
            }
            let sequence = match parent {
                Some(p) => util::sequence(repo, p)? + 1,
                None => 1,
            };
            forks.push(ProvenFork {
                feed: fid.clone(),
                parent,
                sequence,
                messages: msgs.into_values().collect(),
            });
        }
    }
    if forks.is_empty() {
        let why = if problems.is_empty() {
            "no two different validly signed messages of one feed share a parent".to_string()
        } else {
            problems.join("; ")
        };
        return Err(SyncError::InvalidProof(why));
    }
    Ok(ProofReport { forks })
}
