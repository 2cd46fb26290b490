//! Deleting a feed for real: every ref that holds any of its messages goes
//! (heads, remotes, quarantine, proofs, other names for its commits, aliases
//! pointing at those), with its reflog; other reflogs lose the entries that
//! mention its commits; then `git gc --prune=now` removes the now-unreachable
//! objects. Finally every old commit is looked up again: if one survived, the
//! deletion is reported as incomplete instead of claimed.
//!
//! Pruning shells out to `git` on purpose: `git gc` knows every place git
//! keeps reachability (packed refs, worktrees, commit-graph, multi-pack index,
//! `.keep` packs) and rewrites packs safely; libgit2 has no prune.

use std::collections::{BTreeSet, HashSet};
use std::process::Command;

use git2::{Oid, Repository};
use serde::Serialize;

use super::SyncError;
use crate::{FeedId, FeedStore};

/// What [`delete_feed`] removed.
#[derive(Debug, Clone, Serialize)]
pub struct DeleteReport {
    /// The feed.
    pub feed: FeedId,
    /// Every ref removed (symbolic aliases included).
    pub refs: Vec<String>,
    /// Commits that were in the store and now are not.
    pub commits: usize,
}

/// Whether `oid` is a commit authored by `feed` (the feed id as author name).
fn authored_by(repo: &Repository, oid: Oid, feed: &str) -> bool {
    repo.find_commit(oid)
        .map(|c| c.author().name_bytes() == feed.as_bytes())
        .unwrap_or(false)
}

/// Remove `feed` from the store: refs, aliases, reflogs, objects.
pub fn delete_feed(store: &FeedStore, feed: &FeedId) -> Result<DeleteReport, SyncError> {
    let repo = store.repo();
    let hex = feed.to_string();
    let suffix = format!("/{hex}");

    // 1. The feed's direct refs: any ref named after it, or pointing at a
    //    commit it authored (the seed's `Eve-for-Bob`).
    let mut doomed: BTreeSet<String> = BTreeSet::new();
    let mut roots: Vec<Oid> = Vec::new();
    let mut symbolic: Vec<(String, String)> = Vec::new();
    for r in repo.references()? {
        let r = r?;
        let Ok(name) = r.name() else { continue };
        if let Ok(Some(target)) = r.symbolic_target() {
            symbolic.push((name.to_string(), target.to_string()));
            continue;
        }
        let target = r.peel_to_commit().ok().map(|c| c.id());
        let named = name.ends_with(&suffix) || name.contains(&format!("{suffix}/"));
        let authored = target.is_some_and(|t| authored_by(repo, t, &hex));
        if named || authored {
            doomed.insert(name.to_string());
            if let Some(t) = target {
                roots.push(t);
            }
        }
    }
    if doomed.is_empty() {
        return Err(SyncError::FeedNotFound(feed.clone()));
    }
    // 2. Aliases: symbolic refs resolving (transitively) to a doomed ref.
    let mut changed = true;
    while changed {
        changed = false;
        for (name, target) in &symbolic {
            if doomed.contains(target) && name != "HEAD" && doomed.insert(name.clone()) {
                changed = true;
            }
        }
    }
    // 3. Every commit of the feed we can reach from those refs.
    let mut commits: HashSet<Oid> = HashSet::new();
    if !roots.is_empty() {
        let mut walk = repo.revwalk()?;
        for r in &roots {
            walk.push(*r)?;
        }
        for oid in walk {
            commits.insert(oid?);
        }
    }
    // HEAD pointing at a doomed ref would dangle: point it at an unborn branch.
    if let Some((_, target)) = symbolic.iter().find(|(n, _)| n == "HEAD")
        && doomed.contains(target)
    {
        repo.set_head("refs/heads/main")?;
    }
    // 4. Remove the refs (symbolic ones first) and their reflogs.
    let mut order: Vec<&String> = doomed
        .iter()
        .filter(|n| symbolic.iter().any(|(s, _)| s == *n))
        .collect();
    order.extend(
        doomed
            .iter()
            .filter(|n| !symbolic.iter().any(|(s, _)| s == *n)),
    );
    for name in &order {
        if let Ok(mut r) = repo.find_reference(name) {
            r.delete()?;
        }
        let _ = repo.reflog_delete(name);
    }
    // 5. Other reflogs (HEAD's included) must not keep the commits alive.
    let mut names: Vec<String> = vec!["HEAD".into()];
    for r in repo.references()? {
        if let Ok(n) = r?.name() {
            names.push(n.to_string());
        }
    }
    for name in names {
        let Ok(mut log) = repo.reflog(&name) else {
            continue;
        };
        let mut dirty = false;
        let mut i = log.len();
        while i > 0 {
            i -= 1;
            let hit = log
                .get(i)
                .is_some_and(|e| commits.contains(&e.id_new()) || commits.contains(&e.id_old()));
            if hit {
                log.remove(i, false)?;
                dirty = true;
            }
        }
        if dirty {
            log.write()?;
        }
    }
    for f in ["FETCH_HEAD", "ORIG_HEAD"] {
        let p = repo.path().join(f);
        if let Ok(text) = std::fs::read_to_string(&p)
            && text
                .split_whitespace()
                .filter_map(|w| Oid::from_str(w).ok())
                .any(|o| commits.contains(&o))
        {
            let _ = std::fs::remove_file(&p);
        }
    }
    // 6. Prune.
    gc(repo)?;
    // 7. Check, on a fresh handle (no cached packs).
    let fresh = Repository::open(repo.path())?;
    let odb = fresh.odb()?;
    let remaining = commits.iter().filter(|c| odb.exists(**c)).count();
    if remaining > 0 {
        let hint = if has_keep_packs(repo) {
            "a .keep pack holds them"
        } else {
            "something outside refs still references them"
        };
        return Err(SyncError::DeleteIncomplete {
            feed: feed.clone(),
            remaining,
            hint: hint.into(),
        });
    }
    let mut refs: Vec<String> = doomed.into_iter().collect();
    refs.sort();
    Ok(DeleteReport {
        feed: feed.clone(),
        refs,
        commits: commits.len(),
    })
}

fn has_keep_packs(repo: &Repository) -> bool {
    std::fs::read_dir(repo.path().join("objects/pack"))
        .map(|rd| {
            rd.flatten()
                .any(|e| e.path().extension().is_some_and(|x| x == "keep"))
        })
        .unwrap_or(false)
}

fn gc(repo: &Repository) -> Result<(), SyncError> {
    let mut cmd = Command::new("git");
    cmd.arg("--git-dir")
        .arg(repo.path())
        .args(["-c", "gc.autoDetach=false", "gc", "--prune=now", "--quiet"])
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .env_remove("GIT_OBJECT_DIRECTORY");
    let display = format!("git --git-dir {} gc --prune=now", repo.path().display());
    let out = cmd.output().map_err(|e| SyncError::Command {
        command: display.clone(),
        stderr: e.to_string(),
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(SyncError::Command {
            command: display,
            stderr: stderr.lines().last().unwrap_or("").to_string(),
        });
    }
    Ok(())
}
