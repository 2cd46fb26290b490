//! The one way to a ref move: [`Unverified`] → [`verify`] → [`Verified`] → apply.
//!
//! Received tips sit in quarantine as an [`Unverified<Tips>`] until [`verify`]
//! has checked every new message of each feed against the feed rules (with
//! [`verify_range`](crate::verify_range), or the in-memory checks a local pull
//! already ran over exactly those messages: the fast path produces the same
//! type). Only this module can build a [`Verified`] (its fields are private),
//! and the code that moves `refs/remotes/…` and `refs/heads/…`
//! (`replicate::apply`) takes a `Verified<Tips>` by value, so "no ref moves
//! before verification" holds by the types rather than by every caller
//! remembering to verify.

use std::collections::BTreeMap;

use git2::Oid;

use super::SyncError;
use super::util;
use crate::{FeedId, FeedStore, Rule, Violation};

/// Tips received for some feeds: feed → commit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tips(BTreeMap<FeedId, Oid>);

impl Tips {
    /// The tips, by feed.
    pub fn new(tips: BTreeMap<FeedId, Oid>) -> Tips {
        Tips(tips)
    }

    /// The tips, by feed.
    pub fn iter(&self) -> impl Iterator<Item = (&FeedId, Oid)> {
        self.0.iter().map(|(f, o)| (f, *o))
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Something received and not yet checked: anyone may make one, only
/// [`verify`] turns it into a [`Verified`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unverified<T>(T);

impl<T> Unverified<T> {
    /// Marks `received` as not yet checked.
    pub fn new(received: T) -> Unverified<T> {
        Unverified(received)
    }

    /// What was received.
    pub fn get(&self) -> &T {
        &self.0
    }
}

/// Something whose every new message passed the feed rules. Only this module
/// builds one.
#[derive(Debug)]
pub struct Verified<T> {
    value: T,
    checked: BTreeMap<FeedId, Evidence>,
}

/// What the check of one tip saw.
#[derive(Debug, Clone)]
struct Evidence {
    new_messages: usize,
    held: Vec<(String, Oid)>,
}

/// One verified tip, as [`Verified::tips`] yields it.
#[derive(Debug, Clone, Copy)]
pub struct VerifiedTip<'a> {
    /// The feed.
    pub feed: &'a FeedId,
    /// The verified tip.
    pub tip: Oid,
    /// How many messages the tip adds to what the store held.
    pub new_messages: usize,
    /// The refs (and their commits) that held this feed when it was checked.
    pub held: &'a [(String, Oid)],
}

impl<T> Verified<T> {
    /// The verified value.
    pub fn get(&self) -> &T {
        &self.value
    }
}

impl Verified<Tips> {
    /// Each verified tip with what its check saw, by feed.
    pub fn tips(&self) -> impl Iterator<Item = VerifiedTip<'_>> {
        self.value.iter().map(|(feed, tip)| {
            let e = &self.checked[feed];
            VerifiedTip {
                feed,
                tip,
                new_messages: e.new_messages,
                held: &e.held,
            }
        })
    }
}

/// A tip that broke a rule (or could not be read): nothing of it may move.
#[derive(Debug, Clone)]
pub struct Rejected {
    /// The feed.
    pub feed: FeedId,
    /// The received tip.
    pub tip: Oid,
    /// Messages the tip would have added.
    pub new_messages: usize,
    /// One per broken rule (or the tip, when it could not be read).
    pub violations: Vec<Violation>,
}

/// The outcome of [`verify`]: what may be applied, and what may not.
#[derive(Debug)]
pub struct Verdict {
    /// The tips whose every new message passed.
    pub verified: Verified<Tips>,
    /// The tips that broke a rule.
    pub rejected: Vec<Rejected>,
}

/// The in-memory checks of a local pull for one feed, when they provably
/// covered every new message given the tips the store holds: `(new messages,
/// violations)`.
pub type Precheck<'a> = &'a dyn Fn(&FeedId, &[Oid]) -> Option<(usize, Vec<Violation>)>;

/// Checks each received tip against every tip the store holds for its feed.
///
/// `precheck` is the fast path of a local pull: given a feed and its held
/// tips, it returns the count and violations its in-memory checks found, but
/// only when they provably covered every new message (else `None`, and the
/// range is verified from the repository).
pub fn verify(
    store: &FeedStore,
    received: Unverified<Tips>,
    precheck: Precheck<'_>,
) -> Result<Verdict, SyncError> {
    let mut passed = BTreeMap::new();
    let mut checked = BTreeMap::new();
    let mut rejected = Vec::new();
    for (feed, tip) in received.0.0 {
        let repo = store.repo();
        let held = util::feed_tips(repo, feed.as_str())?;
        let known: Vec<Oid> = held.iter().map(|(_, o)| *o).collect();
        let (new_messages, violations) = match precheck(&feed, &known) {
            Some((n, v)) => (n, Ok(v)),
            None => (
                count_new(store, tip, &known).unwrap_or(0),
                crate::verify_range(store, &feed, tip, &known),
            ),
        };
        let violations: Vec<Violation> = match violations {
            Ok(v) => v,
            Err(e) => vec![Violation {
                commit: tip,
                rule: Rule::Unreadable(e.to_string()),
            }],
        };
        if violations.is_empty() {
            checked.insert(feed.clone(), Evidence { new_messages, held });
            passed.insert(feed, tip);
        } else {
            tracing::debug!(%feed, n = violations.len(), "rejected: new messages break the feed rules");
            rejected.push(Rejected {
                feed,
                tip,
                new_messages,
                violations,
            });
        }
    }
    Ok(Verdict {
        verified: Verified {
            value: Tips(passed),
            checked,
        },
        rejected,
    })
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
