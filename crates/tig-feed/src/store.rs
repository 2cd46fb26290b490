//! A feed store: a git repository whose `refs/heads/<feed id>` are signed logs.
//! Opening, listing feeds and aliases, appending with compare-and-swap, reading logs.

use std::io::Write;
use std::path::{Path, PathBuf};

use git2::{ErrorCode, ObjectType, Oid, Repository};

use crate::commit::{self, EMPTY_TREE, Time};
use crate::gpg::Gpg;
use crate::identity::{self, Identity};
use crate::{FeedError, FeedId, FeedKind};

/// A git repository holding feeds.
pub struct FeedStore {
    repo: Repository,
    gpg: Gpg,
}

impl std::fmt::Debug for FeedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedStore")
            .field("path", &self.repo.path())
            .finish_non_exhaustive()
    }
}

/// Who signs an append.
#[derive(Debug, Clone)]
pub enum Signer {
    /// An ed25519 key: SSH signatures, feed id = the public key.
    Ssh(Box<Identity>),
    /// A GPG key, signing through the `gpg` program; feed id = its fingerprint.
    Gpg {
        /// The key id handed to `gpg -u`.
        key: String,
        /// The feed (the key's 40-hex fingerprint).
        feed: FeedId,
    },
}

impl Signer {
    /// The feed this signer appends to.
    pub fn feed_id(&self) -> FeedId {
        match self {
            Signer::Ssh(id) => id.feed_id(),
            Signer::Gpg { feed, .. } => feed.clone(),
        }
    }

    fn sign(&self, gpg: &Gpg, payload: &[u8]) -> Result<String, FeedError> {
        match self {
            Signer::Ssh(id) => id.sign(payload),
            Signer::Gpg { key, .. } => gpg.sign(key, payload),
        }
    }
}

/// Options for [`FeedStore::append`] and [`FeedStore::append_batch`].
#[derive(Debug, Clone, Default)]
pub struct AppendOptions {
    /// Author/committer time; `None` = now (UTC).
    pub time: Option<Time>,
    /// How many times to rebuild the message on the new tip when another appender
    /// moved the ref first. 0 = fail with [`FeedError::Conflict`] at once.
    pub retries: u32,
}

/// One message of a log, as read back.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Message {
    /// Position in the log, 1-based (oldest = 1).
    pub seq: u64,
    /// The commit id.
    #[serde(serialize_with = "ser_oid")]
    pub id: Oid,
    /// The author name (the feed id in a valid log).
    pub author: String,
    /// Author time.
    pub time: Option<Time>,
    /// The content (the commit message minus git's trailing newline).
    #[serde(skip)]
    pub content: Vec<u8>,
    /// Parent commits (one in a valid log, none for the first message).
    #[serde(serialize_with = "ser_oids")]
    pub parents: Vec<Oid>,
}

impl Message {
    /// The content as text (invalid UTF-8 replaced).
    pub fn content_str(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.content)
    }
}

fn ser_oid<S: serde::Serializer>(o: &Oid, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&o.to_string())
}

fn ser_oids<S: serde::Serializer>(o: &[Oid], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(o.iter().map(|o| o.to_string()))
}

impl FeedStore {
    /// Creates a store at `path`: a bare git repository (no work tree, no reflogs,
    /// so deleting a feed really drops its objects), holding the empty tree.
    /// On an existing repository this just opens it, like `git init`.
    pub fn init(path: &Path) -> Result<FeedStore, FeedError> {
        if let Ok(store) = FeedStore::open(path) {
            store.ensure_empty_tree()?;
            return Ok(store);
        }
        if path.is_dir()
            && std::fs::read_dir(path)
                .map_err(|e| FeedError::io(format!("read {}", path.display()), e))?
                .next()
                .is_some()
        {
            return Err(FeedError::Store {
                path: path.to_path_buf(),
                reason: "directory exists, is not empty and is not a git repository".into(),
            });
        }
        let mut opts = git2::RepositoryInitOptions::new();
        opts.bare(true).mkpath(true).initial_head("main");
        let repo = Repository::init_opts(path, &opts)?;
        let store = FeedStore {
            repo,
            gpg: Gpg::default(),
        };
        store.ensure_empty_tree()?;
        Ok(store)
    }

    /// Opens an existing store: any git repository, bare (what `init` makes) or not
    /// (what the seed's `git init` makes). Honours the repository's `gpg.program`.
    pub fn open(path: &Path) -> Result<FeedStore, FeedError> {
        FeedStore::from_repo(path, Repository::open(path))
    }

    /// Opens the store at `path` or the first repository above it, as `git` finds
    /// its repository from a subdirectory.
    pub fn discover(path: &Path) -> Result<FeedStore, FeedError> {
        FeedStore::from_repo(path, Repository::discover(path))
    }

    fn from_repo(
        path: &Path,
        repo: Result<Repository, git2::Error>,
    ) -> Result<FeedStore, FeedError> {
        let repo = repo.map_err(|e| FeedError::Store {
            path: path.to_path_buf(),
            reason: if e.code() == ErrorCode::NotFound {
                "not a git repository (create one with `tig feed init`)".into()
            } else {
                e.message().to_string()
            },
        })?;
        let gpg = repo
            .config()
            .ok()
            .and_then(|c| c.get_string("gpg.program").ok())
            .map(Gpg::with_program)
            .unwrap_or_default();
        Ok(FeedStore { repo, gpg })
    }

    /// The underlying repository.
    pub fn repo(&self) -> &Repository {
        &self.repo
    }

    /// The repository's git directory.
    pub fn path(&self) -> &Path {
        self.repo.path()
    }

    /// How `gpg` is run for GPG feeds.
    pub fn gpg(&self) -> &Gpg {
        &self.gpg
    }

    /// Runs `gpg` as `gpg` says instead.
    pub fn set_gpg(&mut self, gpg: Gpg) {
        self.gpg = gpg;
    }

    fn ensure_empty_tree(&self) -> Result<(), FeedError> {
        let odb = self.repo.odb()?;
        let empty = Oid::from_str(EMPTY_TREE)?;
        if !odb.exists(empty) {
            odb.write(ObjectType::Tree, b"")?;
        }
        Ok(())
    }

    /// Every feed in the store: each `refs/heads/<id>` that is a direct ref named by a
    /// feed id (aliases and other branches are skipped). Sorted.
    pub fn feeds(&self) -> Result<Vec<FeedId>, FeedError> {
        let mut out = Vec::new();
        for r in self.repo.references_glob("refs/heads/*")? {
            let r = r?;
            if r.kind() != Some(git2::ReferenceType::Direct) {
                continue;
            }
            let Some(name) = r.name().ok().and_then(|n| n.strip_prefix("refs/heads/")) else {
                continue;
            };
            if let Ok(id) = FeedId::parse(name)
                && id.as_str() == name
            {
                out.push(id);
            }
        }
        // ed25519 feeds first, then GPG ones, each by id
        out.sort_by(|a, b| (a.kind(), a.as_str()).cmp(&(b.kind(), b.as_str())));
        Ok(out)
    }

    /// Turns a feed id or an alias into the feed it names. Accepts a feed id (GPG
    /// fingerprints in either case), an alias name (`bob-frontier`), or a full ref
    /// (`refs/heads/…`). [`FeedError::NotFound`] if the store has no such feed.
    pub fn resolve(&self, feed_or_alias: &str) -> Result<FeedId, FeedError> {
        let s = feed_or_alias.trim();
        if let Ok(id) = FeedId::parse(s) {
            if self.tip(&id)?.is_some() {
                return Ok(id);
            }
            if id.kind() == FeedKind::Gpg
                && let Some(found) = self.feeds()?.into_iter().find(|f| f.matches(id.as_str()))
            {
                return Ok(found);
            }
            return Err(FeedError::NotFound(format!(
                "feed {s} in {}",
                self.describe()
            )));
        }
        let full = if s.starts_with("refs/") {
            s.to_string()
        } else {
            format!("refs/heads/{s}")
        };
        let r = match self.repo.find_reference(&full) {
            Ok(r) => r,
            Err(e) if e.code() == ErrorCode::NotFound || e.code() == ErrorCode::InvalidSpec => {
                return Err(FeedError::NotFound(format!(
                    "feed or alias {s:?} in {}",
                    self.describe()
                )));
            }
            Err(e) => return Err(e.into()),
        };
        let target = match r.symbolic_target().ok().flatten() {
            Some(t) => t.to_string(),
            None => full.clone(),
        };
        let id = target
            .strip_prefix("refs/heads/")
            .or_else(|| target.rsplit('/').next())
            .and_then(|n| FeedId::parse(n).ok())
            .ok_or_else(|| FeedError::InvalidName {
                name: s.to_string(),
                reason: format!("{target} is not a feed"),
            })?;
        Ok(id)
    }

    fn describe(&self) -> String {
        self.repo.path().display().to_string()
    }

    /// The current tip of a feed (`refs/heads/<id>`), `None` if the feed has no messages.
    pub fn tip(&self, feed: &FeedId) -> Result<Option<Oid>, FeedError> {
        match self.repo.refname_to_id(&feed.ref_name()) {
            Ok(oid) => Ok(Some(oid)),
            Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Every ref that holds a copy of `feed`'s log: `refs/heads/<id>` and any
    /// `refs/remotes/<source>/<id>` (what replication keeps), with their targets.
    pub fn feed_refs(&self, feed: &FeedId) -> Result<Vec<(String, Oid)>, FeedError> {
        let mut out = Vec::new();
        if let Some(t) = self.tip(feed)? {
            out.push((feed.ref_name(), t));
        }
        for r in self.repo.references_glob("refs/remotes/*")? {
            let r = r?;
            let Some(name) = r.name().ok() else { continue };
            if !name
                .rsplit('/')
                .next()
                .is_some_and(|last| feed.matches(last))
            {
                continue;
            }
            if let Some(t) = r.target() {
                out.push((name.to_string(), t));
            }
        }
        Ok(out)
    }

    /// Every alias in the store: symbolic refs under `refs/heads/` pointing at a
    /// feed's ref, as (alias name, feed).
    pub fn aliases(&self) -> Result<Vec<(String, FeedId)>, FeedError> {
        let mut out = Vec::new();
        for r in self.repo.references_glob("refs/heads/*")? {
            let r = r?;
            let (Some(name), Some(target)) = (r.name().ok(), r.symbolic_target().ok().flatten())
            else {
                continue;
            };
            let Some(alias) = name.strip_prefix("refs/heads/") else {
                continue;
            };
            if let Some(id) = target
                .strip_prefix("refs/heads/")
                .and_then(|t| FeedId::parse(t).ok())
            {
                out.push((alias.to_string(), id));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Removes the alias `name` (the symbolic ref `refs/heads/<name>`) and nothing
    /// else: the feed it points at, its messages and its other aliases stay.
    /// Returns the feed it pointed at. A name that is not an alias (a feed id, a
    /// feed's own ref, a missing name) is refused.
    pub fn remove_alias(&self, name: &str) -> Result<FeedId, FeedError> {
        let Some((_, feed)) = self.aliases()?.into_iter().find(|(a, _)| a == name) else {
            if FeedId::parse(name).is_ok() {
                return Err(FeedError::InvalidName {
                    name: name.to_string(),
                    reason: "this is a feed id, not an alias (`tig feed delete` deletes a feed)"
                        .into(),
                });
            }
            return Err(FeedError::NotFound(format!(
                "alias {name:?} in {}",
                self.describe()
            )));
        };
        let full = format!("refs/heads/{name}");
        let mut r = self.repo.find_reference(&full)?;
        r.delete()?;
        let _ = self.repo.reflog_delete(&full);
        Ok(feed)
    }

    /// Creates the alias `name` → `feed` (the symbolic ref `refs/heads/<name>` →
    /// `refs/heads/<id>`, as the seed's `git symbolic-ref` does), which then moves
    /// with the feed. Refuses names that are feed ids or existing refs (unless
    /// `force`); re-creating the same alias is a no-op.
    pub fn alias(&self, name: &str, feed: &FeedId, force: bool) -> Result<(), FeedError> {
        let invalid = |reason: &str| FeedError::InvalidName {
            name: name.to_string(),
            reason: reason.to_string(),
        };
        if FeedId::parse(name).is_ok() {
            return Err(invalid("an alias cannot look like a feed id"));
        }
        if name.starts_with("refs/") || name.is_empty() || name == "HEAD" {
            return Err(invalid("give a short name such as bob-frontier"));
        }
        let full = format!("refs/heads/{name}");
        if !git2::Reference::is_valid_name(&full) {
            return Err(invalid("not a valid git ref name"));
        }
        if self.tip(feed)?.is_none() {
            return Err(FeedError::NotFound(format!(
                "feed {feed} in {}",
                self.describe()
            )));
        }
        if let Ok(existing) = self.repo.find_reference(&full) {
            if existing.symbolic_target().ok().flatten() == Some(feed.ref_name().as_str()) {
                return Ok(());
            }
            if !force {
                return Err(FeedError::AlreadyExists(format!(
                    "{full} (points at {}; use --force to move it)",
                    existing
                        .symbolic_target()
                        .ok()
                        .flatten()
                        .map(str::to_string)
                        .or_else(|| existing.target().map(|o| o.to_string()))
                        .unwrap_or_default()
                )));
            }
        }
        self.repo
            .reference_symbolic(&full, &feed.ref_name(), force, "tig feed alias")?;
        Ok(())
    }

    /// A signer for the GPG key `key_id`: its fingerprint names the feed (in the case
    /// an existing ref already uses, else as gpg prints it).
    pub fn gpg_signer(&self, key_id: &str) -> Result<Signer, FeedError> {
        let fpr = match FeedId::parse(key_id) {
            Ok(id) if id.kind() == FeedKind::Gpg => id.to_string(),
            _ => self.gpg.fingerprint(key_id)?,
        };
        let mut feed = FeedId::parse(&fpr)?;
        if let Some(existing) = self.feeds()?.into_iter().find(|f| f.matches(&fpr)) {
            feed = existing;
        }
        Ok(Signer::Gpg {
            key: key_id.to_string(),
            feed,
        })
    }

    fn build(
        &self,
        odb: &git2::Odb<'_>,
        signer: &Signer,
        feed: &FeedId,
        parent: Option<Oid>,
        time: Time,
        content: &[u8],
    ) -> Result<Oid, FeedError> {
        let payload = commit::payload(feed.as_str(), parent, time, content);
        let sig = signer.sign(&self.gpg, &payload)?;
        let raw = commit::with_signature(&payload, &sig);
        Ok(odb.write(ObjectType::Commit, &raw)?)
    }

    /// Moves `feed`'s ref from `old` to `new` by compare-and-swap (see
    /// [`crate::refupdate`]).
    fn swap(&self, feed: &FeedId, old: Option<Oid>, new: Oid, msg: &str) -> Result<(), FeedError> {
        use crate::refupdate::{SwapError, compare_and_swap};
        match compare_and_swap(&self.repo, &feed.ref_name(), old, new, msg) {
            Ok(()) => Ok(()),
            Err(SwapError::Conflict) => Err(FeedError::Conflict {
                feed: feed.to_string(),
                expected: old.map_or_else(|| "none".to_string(), |o| o.to_string()),
            }),
            Err(SwapError::Git(e)) => Err(e.into()),
            Err(SwapError::Io(what, e)) => Err(FeedError::io(what, e)),
        }
    }

    /// Appends one message to the signer's feed and returns its commit id. The ref
    /// moves by compare-and-swap; on a concurrent append the message is rebuilt on the
    /// new tip up to `opts.retries` times, else [`FeedError::Conflict`].
    pub fn append(
        &self,
        signer: &Signer,
        content: &[u8],
        opts: &AppendOptions,
    ) -> Result<Oid, FeedError> {
        commit::check_content(content)?;
        self.ensure_empty_tree()?;
        let feed = signer.feed_id();
        let odb = self.repo.odb()?;
        let mut attempt = 0u32;
        loop {
            let tip = self.tip(&feed)?;
            let time = opts.time.unwrap_or_else(Time::now);
            let oid = self.build(&odb, signer, &feed, tip, time, content)?;
            match self.swap(&feed, tip, oid, "tig feed append") {
                Ok(()) => return Ok(oid),
                Err(FeedError::Conflict { .. }) if attempt < opts.retries => {
                    attempt += 1;
                    backoff(attempt);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Appends many messages in order with one ref update: all commits are built in
    /// memory, written as one pack (see [`crate::pack`]), then the ref moves once (compare-and-swap, retried
    /// like [`FeedStore::append`]). Every content is checked before anything is written.
    pub fn append_batch<C: AsRef<[u8]>>(
        &self,
        signer: &Signer,
        contents: &[C],
        opts: &AppendOptions,
    ) -> Result<Vec<Oid>, FeedError> {
        for (i, c) in contents.iter().enumerate() {
            commit::check_content(c.as_ref()).map_err(|e| match e {
                FeedError::Content(r) => FeedError::Content(format!("message {}: {r}", i + 1)),
                e => e,
            })?;
        }
        if contents.is_empty() {
            return Ok(Vec::new());
        }
        self.ensure_empty_tree()?;
        let feed = signer.feed_id();
        let mut attempt = 0u32;
        loop {
            let tip = self.tip(&feed)?;
            let time = opts.time.unwrap_or_else(Time::now);
            let mut parent = tip;
            let mut ids = Vec::with_capacity(contents.len());
            let mut raws = Vec::with_capacity(contents.len());
            for c in contents {
                let payload = commit::payload(feed.as_str(), parent, time, c.as_ref());
                let sig = signer.sign(&self.gpg, &payload)?;
                let raw = commit::with_signature(&payload, &sig);
                let oid = Oid::hash_object(ObjectType::Commit, &raw)?;
                ids.push(oid);
                raws.push(raw);
                parent = Some(oid);
            }
            let pack = crate::pack::commits_pack(&raws);
            drop(raws);
            let odb = self.repo.odb()?;
            let mut pw = odb.packwriter()?;
            pw.write_all(&pack)
                .map_err(|e| FeedError::io("write pack", e))?;
            pw.commit()?;
            odb.refresh()?;
            let last = *ids.last().expect("contents is not empty");
            match self.swap(&feed, tip, last, "tig feed append --batch") {
                Ok(()) => return Ok(ids),
                Err(FeedError::Conflict { .. }) if attempt < opts.retries => {
                    attempt += 1;
                    backoff(attempt);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The commits of `feed`'s log from its ref, oldest first (topological order).
    pub fn commits(&self, feed: &FeedId) -> Result<Vec<Oid>, FeedError> {
        let Some(tip) = self.tip(feed)? else {
            return Err(FeedError::NotFound(format!(
                "feed {feed} in {}",
                self.describe()
            )));
        };
        self.commits_from(tip)
    }

    /// The commits reachable from `tip`, oldest first (topological order).
    pub fn commits_from(&self, tip: Oid) -> Result<Vec<Oid>, FeedError> {
        let mut walk = self.repo.revwalk()?;
        walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::REVERSE)?;
        walk.push(tip)?;
        Ok(walk.collect::<Result<Vec<_>, _>>()?)
    }

    /// The messages of `feed`'s log, oldest first, with sequence numbers.
    pub fn messages(&self, feed: &FeedId) -> Result<Vec<Message>, FeedError> {
        let ids = self.commits(feed)?;
        let odb = self.repo.odb()?;
        let mut out = Vec::with_capacity(ids.len());
        for (i, id) in ids.into_iter().enumerate() {
            let obj = odb.read(id)?;
            let parsed = commit::parse(obj.data())
                .map_err(|reason| FeedError::Corrupt { commit: id, reason })?;
            out.push(Message {
                seq: i as u64 + 1,
                id,
                author: parsed.author_name.clone(),
                time: parsed.author_time,
                content: commit::content_of(parsed.message()).to_vec(),
                parents: parsed.parents,
            });
        }
        Ok(out)
    }

    /// A git `allowedSignersFile` for every ed25519 feed in the store (principal =
    /// feed id, namespace `git`), so `git log --show-signature` can check them.
    pub fn allowed_signers(&self) -> Result<String, FeedError> {
        let mut out = String::new();
        for f in self.feeds()? {
            if let Some(key) = identity::ssh_public_key(&f) {
                out.push_str(&format!("{f} namespaces=\"git\" {key}\n"));
            }
        }
        Ok(out)
    }
}

/// A short, jittered pause before retrying a lost compare-and-swap.
fn backoff(attempt: u32) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let cap_us = 100u64 << attempt.min(6);
    let us = u64::from(nanos) % cap_us.max(1);
    std::thread::sleep(std::time::Duration::from_micros(us));
}

/// The default key path for a home directory: `~/.config/tig/id_ed25519`.
pub fn default_key_path(home: &Path) -> PathBuf {
    home.join(".config").join("tig").join("id_ed25519")
}
