//! Checking feeds against the rules: every message signed by the feed's own key,
//! author and committer = feed id, empty tree, at most one parent.
//!
//! Objects are read on the calling thread (a `git2::Repository` is not `Sync`);
//! parsing, hashing and signature checks run in parallel with rayon. Ed25519 feeds
//! need nothing but the store (the feed id is the key); GPG feeds go through `gpg`.

use std::fmt;

use ed25519_dalek::Verifier as _;
use git2::{ObjectType, Oid};
use rayon::prelude::*;
use ssh_key::{HashAlg, SshSig};

use crate::commit::{self, EMPTY_TREE};
use crate::gpg::{self, Gpg, GpgCheck};
use crate::identity::GIT_NAMESPACE;
use crate::{FeedError, FeedId, FeedKind, FeedStore};

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The offending commit.
    pub commit: Oid,
    /// The rule it breaks.
    pub rule: Rule,
}

/// A feed rule a commit breaks. `Display` gives the words `tig` prints (and
/// `--json` carries), e.g. `tree is <id>, not the empty tree`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rule {
    /// The object is not a commit.
    #[error("not a commit ({0})")]
    NotACommit(ObjectType),
    /// The commit's headers cannot be read.
    #[error("malformed commit: {0}")]
    Malformed(String),
    /// The tree is not the empty tree (the `tree` header as written).
    #[error("tree is {0}, not the empty tree")]
    NotEmptyTree(String),
    /// More than one parent.
    #[error("merge commit: {0} parents (a message has at most 1)")]
    Merge(usize),
    /// The author name is not the feed id.
    #[error("author is {0:?}, not the feed id")]
    WrongAuthor(String),
    /// The committer name is not the feed id.
    #[error("committer is {0:?}, not the feed id")]
    WrongCommitter(String),
    /// No signature header.
    #[error("unsigned: no signature header")]
    Unsigned,
    /// The signature does not match the commit, or is malformed.
    #[error("bad signature: {0}")]
    BadSignature(String),
    /// Signed by a key other than the feed's.
    #[error("signed by another key ({0}), not the feed's")]
    WrongKey(String),
    /// The signature cannot be checked here (e.g. a GPG key not in the keyring).
    #[error("signature cannot be checked: {0}")]
    Unchecked(String),
    /// The source could not give the commit, or it could not be checked at
    /// all: nothing of the tip may move. The words say why.
    #[error("{0}")]
    Unreadable(String),
}

impl serde::Serialize for Rule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.commit, self.rule)
    }
}

/// The state of one message's signature.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", content = "detail", rename_all = "kebab-case")]
pub enum SignatureState {
    /// Valid, and made by the feed's own key.
    Good,
    /// No signature header.
    Unsigned,
    /// The signature does not match the commit (content or headers changed) or is malformed.
    Bad(String),
    /// A valid-looking signature by some other key.
    WrongKey(String),
    /// Cannot be checked here (e.g. the GPG key is not in the keyring).
    Unchecked(String),
}

impl SignatureState {
    /// True only for [`SignatureState::Good`].
    pub fn is_good(&self) -> bool {
        matches!(self, SignatureState::Good)
    }

    /// A short word for tables: good, unsigned, bad, wrong-key, unchecked.
    pub fn word(&self) -> &'static str {
        match self {
            SignatureState::Good => "good",
            SignatureState::Unsigned => "unsigned",
            SignatureState::Bad(_) => "bad",
            SignatureState::WrongKey(_) => "wrong-key",
            SignatureState::Unchecked(_) => "unchecked",
        }
    }

    /// The rule a signature in this state breaks; `None` when good.
    pub fn rule(&self) -> Option<Rule> {
        match self {
            SignatureState::Good => None,
            SignatureState::Unsigned => Some(Rule::Unsigned),
            SignatureState::Bad(why) => Some(Rule::BadSignature(why.clone())),
            SignatureState::WrongKey(who) => Some(Rule::WrongKey(who.clone())),
            SignatureState::Unchecked(why) => Some(Rule::Unchecked(why.clone())),
        }
    }
}

/// What checking one commit found.
#[derive(Debug, Clone)]
pub struct CommitCheck {
    /// The commit.
    pub commit: Oid,
    /// Its signature's state.
    pub signature: SignatureState,
    /// Every rule it breaks (signature included), empty if valid.
    pub violations: Vec<Rule>,
}

/// Checks every commit reachable from `tip` but not from any of `known`
/// (already-validated commits) against the feed rules: signed by `feed`'s key,
/// author/committer name = feed id, empty tree, ≤1 parent. Returns the violations,
/// newest first; empty means valid. Missing objects are an error, not a violation.
pub fn verify_range(
    store: &FeedStore,
    feed: &FeedId,
    tip: Oid,
    known: &[Oid],
) -> Result<Vec<Violation>, FeedError> {
    let repo = store.repo();
    let (_, kind) = repo.odb()?.read_header(tip)?;
    if kind != ObjectType::Commit {
        return Ok(vec![Violation {
            commit: tip,
            rule: Rule::NotACommit(kind),
        }]);
    }
    let mut walk = repo.revwalk()?;
    walk.set_sorting(git2::Sort::TOPOLOGICAL)?;
    walk.push(tip)?;
    for k in known {
        match walk.hide(*k) {
            Ok(()) => {}
            // a known commit we do not have hides nothing
            Err(e) if e.code() == git2::ErrorCode::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    let started = std::time::Instant::now();
    let ids = walk.collect::<Result<Vec<_>, _>>()?;
    let walked = started.elapsed();
    let checks = check_commits(store, feed, &ids)?;
    tracing::debug!(
        %feed,
        commits = ids.len(),
        walk_ms = walked.as_millis() as u64,
        check_ms = (started.elapsed() - walked).as_millis() as u64,
        "verified range"
    );
    Ok(violations(checks))
}

/// Checks every ref that holds `feed` (see [`FeedStore::feed_refs`]); commits shared
/// between refs are checked once.
pub fn verify_feed(store: &FeedStore, feed: &FeedId) -> Result<Vec<Violation>, FeedError> {
    let refs = store.feed_refs(feed)?;
    if refs.is_empty() {
        return Err(FeedError::NotFound(format!("feed {feed}")));
    }
    let mut known = Vec::new();
    let mut out = Vec::new();
    for (_, tip) in refs {
        out.extend(verify_range(store, feed, tip, &known)?);
        known.push(tip);
    }
    Ok(out)
}

/// How many commits are read and then checked in parallel at a time.
pub(crate) const CHUNK: usize = 4096;

/// Checks the given commits (in the given order) against the feed rules.
///
/// The calling thread reads chunk *n + 1* from the object database while a
/// scoped thread checks chunk *n* on the rayon pool, so reading (single
/// threaded: a repository is not `Sync`) overlaps the signature checks.
pub fn check_commits(
    store: &FeedStore,
    feed: &FeedId,
    ids: &[Oid],
) -> Result<Vec<CommitCheck>, FeedError> {
    let odb = store.repo().odb()?;
    let key = FeedKey::new(feed);
    let gpg = store.gpg().clone();
    let (key, gpg) = (&key, &gpg);
    let mut out = Vec::with_capacity(ids.len());
    std::thread::scope(|scope| -> Result<(), FeedError> {
        let mut checking = None;
        for chunk in ids.chunks(CHUNK) {
            let mut raws = Vec::with_capacity(chunk.len());
            for id in chunk {
                let obj = odb.read(*id)?;
                raws.push((*id, obj.kind(), obj.data().to_vec()));
            }
            if let Some(done) = checking.replace(scope.spawn(move || {
                raws.par_iter()
                    .map(|(id, kind, raw)| check_one(key, gpg, *id, *kind, raw))
                    .collect::<Vec<_>>()
            })) {
                out.extend(join(done));
            }
        }
        if let Some(done) = checking {
            out.extend(join(done));
        }
        Ok(())
    })?;
    Ok(out)
}

/// Checks commits already in memory (id, kind, raw bytes), in parallel, and
/// returns the violations in the given order: what [`verify_range`] reports for
/// the same commits, without reading them from a repository.
pub(crate) fn check_raw(
    gpg: &Gpg,
    feed: &FeedId,
    commits: &[(Oid, ObjectType, Vec<u8>)],
) -> Vec<Violation> {
    let key = FeedKey::new(feed);
    let checks: Vec<CommitCheck> = commits
        .par_iter()
        .map(|(id, kind, raw)| check_one(&key, gpg, *id, *kind, raw))
        .collect();
    violations(checks)
}

fn violations(checks: Vec<CommitCheck>) -> Vec<Violation> {
    checks
        .into_iter()
        .flat_map(|c| {
            let commit = c.commit;
            c.violations
                .into_iter()
                .map(move |rule| Violation { commit, rule })
        })
        .collect()
}

/// The checks of one chunk; a panic in a check is re-raised here.
fn join(handle: std::thread::ScopedJoinHandle<'_, Vec<CommitCheck>>) -> Vec<CommitCheck> {
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// The feed's identity, prepared once for many checks.
struct FeedKey<'a> {
    feed: &'a FeedId,
    ed25519: Option<Result<ed25519_dalek::VerifyingKey, String>>,
}

impl<'a> FeedKey<'a> {
    fn new(feed: &'a FeedId) -> FeedKey<'a> {
        let ed25519 = feed.ed25519_key().map(|k| {
            ed25519_dalek::VerifyingKey::from_bytes(&k)
                .map_err(|_| "the feed id is not a valid ed25519 public key".to_string())
        });
        FeedKey { feed, ed25519 }
    }
}

fn check_one(key: &FeedKey<'_>, gpg: &Gpg, id: Oid, kind: ObjectType, raw: &[u8]) -> CommitCheck {
    let fail = |rule: Rule, sig: SignatureState| CommitCheck {
        commit: id,
        signature: sig,
        violations: vec![rule],
    };
    if kind != ObjectType::Commit {
        return fail(Rule::NotACommit(kind), SignatureState::Unsigned);
    }
    let parsed = match commit::parse(raw) {
        Ok(p) => p,
        Err(why) => return fail(Rule::Malformed(why), SignatureState::Unsigned),
    };
    let mut violations = Vec::new();
    if parsed.tree != EMPTY_TREE {
        violations.push(Rule::NotEmptyTree(parsed.tree.clone()));
    }
    if parsed.parents.len() > 1 {
        violations.push(Rule::Merge(parsed.parents.len()));
    }
    if !key.feed.matches(&parsed.author_name) {
        violations.push(Rule::WrongAuthor(parsed.author_name.clone()));
    }
    if !key.feed.matches(&parsed.committer_name) {
        violations.push(Rule::WrongCommitter(parsed.committer_name.clone()));
    }
    let signature = match &parsed.signature {
        None => SignatureState::Unsigned,
        Some(sig) => signature_state(key, gpg, sig, &parsed.payload),
    };
    if let Some(rule) = signature.rule() {
        violations.push(rule);
    }
    CommitCheck {
        commit: id,
        signature,
        violations,
    }
}

fn signature_state(key: &FeedKey<'_>, gpg: &Gpg, sig: &str, payload: &[u8]) -> SignatureState {
    let is_ssh = sig.starts_with("-----BEGIN SSH SIGNATURE-----");
    let is_pgp = sig.starts_with("-----BEGIN PGP SIGNATURE-----");
    match key.feed.kind() {
        FeedKind::Ed25519 => {
            if !is_ssh {
                return SignatureState::WrongKey(if is_pgp {
                    "an OpenPGP key".into()
                } else {
                    "an unknown signature format".into()
                });
            }
            ssh_state(key, sig, payload)
        }
        FeedKind::Gpg => {
            if is_ssh {
                return SignatureState::WrongKey("an SSH key".into());
            }
            if !is_pgp {
                return SignatureState::Bad("not an OpenPGP signature".into());
            }
            match gpg.verify(sig, payload) {
                Err(e) => SignatureState::Unchecked(e.to_string()),
                Ok(GpgCheck::Bad) => {
                    SignatureState::Bad("does not match the commit (changed after signing)".into())
                }
                Ok(GpgCheck::Unchecked(why)) => SignatureState::Unchecked(why),
                Ok(c @ GpgCheck::Good { .. }) => {
                    if gpg::made_by(&c, key.feed) {
                        SignatureState::Good
                    } else if let GpgCheck::Good { primary, .. } = c {
                        SignatureState::WrongKey(primary)
                    } else {
                        SignatureState::Unchecked("gpg".into())
                    }
                }
            }
        }
    }
}

fn ssh_state(key: &FeedKey<'_>, pem: &str, payload: &[u8]) -> SignatureState {
    let sig = match SshSig::from_pem(pem) {
        Ok(s) => s,
        Err(e) => return SignatureState::Bad(format!("malformed SSH signature ({e})")),
    };
    // The armour is not signed: anyone could re-wrap it (a CR, another line
    // length) and get a second commit with the same signed content, a fake fork.
    // Only the one encoding ssh-keygen and tig write is accepted.
    if !sig
        .to_pem(ssh_key::LineEnding::LF)
        .is_ok_and(|canonical| canonical == pem)
    {
        return SignatureState::Bad(
            "SSH signature armour is not in canonical form (as ssh-keygen writes it)".into(),
        );
    }
    let Some(ed) = sig.public_key().ed25519() else {
        return SignatureState::WrongKey(format!("a {} key", sig.algorithm()));
    };
    if ed.0 != key.feed.ed25519_key().unwrap_or_default() {
        return SignatureState::WrongKey(hex::encode(ed.0));
    }
    if sig.namespace() != GIT_NAMESPACE {
        return SignatureState::Bad(format!("namespace {:?}, expected \"git\"", sig.namespace()));
    }
    if !sig.reserved().is_empty() {
        return SignatureState::Bad("unsupported reserved field".into());
    }
    let vk = match &key.ed25519 {
        Some(Ok(vk)) => vk,
        Some(Err(why)) => return SignatureState::Bad(why.clone()),
        None => return SignatureState::Bad("not an ed25519 feed".into()),
    };
    let hash_alg = sig.hash_alg();
    if !matches!(hash_alg, HashAlg::Sha512 | HashAlg::Sha256) {
        return SignatureState::Bad("unsupported hash".into());
    }
    let data = match SshSig::signed_data(GIT_NAMESPACE, hash_alg, payload) {
        Ok(d) => d,
        Err(e) => return SignatureState::Bad(e.to_string()),
    };
    let Ok(bytes) = <[u8; 64]>::try_from(sig.signature_bytes()) else {
        return SignatureState::Bad("signature is not 64 bytes".into());
    };
    let s = ed25519_dalek::Signature::from_bytes(&bytes);
    // The cofactorless check OpenSSH (and so `git verify-commit`) makes:
    // [S]B = R + [k]A, compared on R's bytes. Like OpenSSH it does not reject
    // small-order R or A (which `verify_strict` would, for signatures only the key's
    // owner can make); unlike OpenSSH it rejects S ≥ ℓ, so a third party cannot
    // turn a message into a second valid commit (S + ℓ) and frame its author with a
    // fork. Batch verification is left out: its cofactored equation accepts
    // signatures that git rejects.
    match vk.verify(&data, &s) {
        Ok(()) => SignatureState::Good,
        Err(_) => SignatureState::Bad("does not match the commit (changed after signing)".into()),
    }
}
