//! What the feed commands share: opening the store, resolving feeds named on
//! the command line, and printing reports (a pull's, human or JSON).
//!
//! Both `feed_sync` (paths, URLs, bundles) and `feed_relay` (relay channels)
//! use these; neither imports the other's internals.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use tig_feed::sync::{self, Outcome};
use tig_feed::{FeedId, FeedStore};

pub(crate) fn open(dir: &Path) -> anyhow::Result<FeedStore> {
    FeedStore::open(dir).with_context(|| format!("opening store {}", dir.display()))
}

/// A feed given on the command line: a feed id, or an alias in this store.
/// [`resolve`] for each of `feeds`.
pub(crate) fn resolve_all(store: &FeedStore, feeds: &[String]) -> anyhow::Result<Vec<FeedId>> {
    feeds.iter().map(|f| resolve(store, f)).collect()
}

/// A feed given on the command line: a feed id (whether or not this store
/// holds it), or an alias in this store.
pub(crate) fn resolve(store: &FeedStore, s: &str) -> anyhow::Result<FeedId> {
    if let Ok(id) = FeedId::parse(s) {
        return Ok(id);
    }
    store
        .resolve(s)
        .with_context(|| format!("{s}: not a feed id or alias in this store"))
}

pub(crate) fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(v)?)?;
    Ok(())
}

/// The first 12 hex digits of a commit id.
pub(crate) fn short_id(oid: &git2::Oid) -> String {
    let mut s = oid.to_string();
    s.truncate(12);
    s
}

/// Print a pull report (human or JSON) and pick the exit code: failure when a
/// feed was rejected, or with `strict` when a fork was received.
pub(crate) fn print_pull_report(
    report: &sync::PullReport,
    strict: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    if json {
        print_json(report)?;
    } else {
        if report.feeds.is_empty() {
            outln!("{}: no feeds", report.source)?;
        }
        for f in &report.feeds {
            let n = f.new_messages;
            match &f.outcome {
                Outcome::Created => outln!("{}: new feed, {n} messages", f.feed)?,
                Outcome::FastForward { from } => outln!(
                    "{}: {}..{}, {n} new messages",
                    f.feed,
                    short_id(from),
                    short_id(&f.tip)
                )?,
                Outcome::UpToDate => outln!("{}: up to date", f.feed)?,
                Outcome::LocalAhead => outln!("{}: this store is ahead", f.feed)?,
                Outcome::Fork { local, fork_point } => outln!(
                    "{}: FORK: received {} diverges from local {} (fork point {}); both kept, received as refs/remotes/{}/{}",
                    f.feed,
                    short_id(&f.tip),
                    short_id(local),
                    fork_point
                        .as_ref()
                        .map_or_else(|| "none".to_string(), short_id),
                    report.name,
                    f.feed
                )?,
                Outcome::Rejected { violations } => {
                    for v in violations {
                        eprintln!(
                            "tig: {}: rejected, no ref moved: {}: {}",
                            f.feed, v.commit, v.rule
                        );
                    }
                }
            }
            if !matches!(f.outcome, Outcome::Fork { .. }) {
                for (r, oid) in &f.forks_with {
                    outln!(
                        "{}: FORK: received {} diverges from {r} ({}); both kept",
                        f.feed,
                        short_id(&f.tip),
                        short_id(oid)
                    )?;
                }
            }
            if let Some(p) = &f.preserved {
                outln!(
                    "{}: the source rewrote this feed; its old tip is kept as {p}",
                    f.feed
                )?;
            }
        }
    }
    if report.has_rejections() || (strict && report.has_forks()) {
        if strict && report.has_forks() {
            eprintln!("tig: fork detected (--strict); run `tig feed forks` for the proof");
        }
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
