//! The one way to a ref move: a [`Verified`] tip.
//!
//! Received tips sit in quarantine until [`check`] has checked every new message
//! against the feed rules (with [`verify_range`](crate::verify_range), or the
//! in-memory checks a local pull already ran over exactly those messages). Only
//! `check` can build a [`Verified`] (its fields are private to this module), and
//! the code that moves `refs/remotes/…` and `refs/heads/…` takes one by value, so
//! "no ref moves before verification" holds by the types rather than by every
//! caller remembering to verify.

use git2::Oid;

use super::SyncError;
use super::util;
use crate::{FeedId, FeedStore, Violation};

/// A received tip of one feed whose new messages all passed the feed rules,
/// checked against every tip this store held for the feed at that moment.
#[derive(Debug)]
pub struct Verified {
    feed: String,
    tip: Oid,
    new_messages: usize,
    held: Vec<(String, Oid)>,
}

impl Verified {
    /// The feed (hex id).
    pub fn feed(&self) -> &str {
        &self.feed
    }

    /// The verified tip.
    pub fn tip(&self) -> Oid {
        self.tip
    }

    /// How many messages the tip adds to what the store held.
    pub fn new_messages(&self) -> usize {
        self.new_messages
    }

    /// The refs (and their commits) that held this feed when it was checked.
    pub fn held(&self) -> &[(String, Oid)] {
        &self.held
    }
}

/// The outcome of [`check`].
#[derive(Debug)]
pub enum Checked {
    /// Every new message passed: the tip may be applied.
    Verified(Verified),
    /// Some message broke a rule (or could not be read): nothing may move.
    Rejected {
        /// Messages the tip would have added.
        new_messages: usize,
        /// `(commit, rule)` per violation.
        violations: Vec<(String, String)>,
    },
}

/// Checks `tip` of `feed` against every tip the store holds for the feed.
///
/// `precheck` is the fast path of a local pull: given those held tips, it returns
/// the count and violations its in-memory checks found, but only when they
/// provably covered every new message (else `None`, and the range is verified
/// from the repository).
pub fn check(
    store: &FeedStore,
    feed: &FeedId,
    tip: Oid,
    precheck: impl FnOnce(&[Oid]) -> Option<(usize, Vec<Violation>)>,
) -> Result<Checked, SyncError> {
    let repo = store.repo();
    let hex = feed.to_string();
    let held = util::feed_tips(repo, &hex)?;
    let known: Vec<Oid> = held.iter().map(|(_, o)| *o).collect();
    let (new_messages, violations) = match precheck(&known) {
        Some((n, v)) => (n, Ok(v)),
        None => (
            count_new(store, tip, &known).unwrap_or(0),
            crate::verify_range(store, feed, tip, &known),
        ),
    };
    let violations: Vec<(String, String)> = match violations {
        Ok(v) => v
            .into_iter()
            .map(|v| (v.commit.to_string(), v.rule))
            .collect(),
        Err(e) => vec![(tip.to_string(), e.to_string())],
    };
    if !violations.is_empty() {
        tracing::debug!(feed = %hex, n = violations.len(), "rejected: new messages break the feed rules");
        return Ok(Checked::Rejected {
            new_messages,
            violations,
        });
    }
    Ok(Checked::Verified(Verified {
        feed: hex,
        tip,
        new_messages,
        held,
    }))
}

fn count_new(store: &FeedStore, tip: Oid, known: &[Oid]) -> Result<usize, SyncError> {
    let mut walk = store.repo().revwalk()?;
    walk.push(tip)?;
    for k in known {
        walk.hide(*k)?;
    }
    let mut n = 0;
    for oid in walk {
        oid?;
        n += 1;
    }
    Ok(n)
}
