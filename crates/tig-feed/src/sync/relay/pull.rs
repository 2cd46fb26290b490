//! A relay pull: read the head list, download (and check) every bundle the
//! wanted feeds need, then apply them in order through the ordinary bundle
//! pull, which verifies each feed before any of its refs moves.

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufReader;

use git2::Oid;

use super::error::{At, RelayError};
use super::transport::{Transport, TransportError};
use super::{Line, Pending, apply_order, chain, fold, parse_list};
use crate::sync::{self, FeedOutcome, Outcome, PullReport};
use crate::{FeedId, FeedStore};

/// Largest head list a pull or push reads.
pub const LIST_MAX: u64 = 16 << 20;

/// Options of a relay [`pull`].
#[derive(Debug, Clone)]
pub struct RelayPullOptions {
    /// The name under `refs/remotes/` (by default the channel's).
    pub name: String,
    /// Feeds to pull; every feed on the channel when empty.
    pub feeds: Vec<FeedId>,
    /// Largest bundle downloaded.
    pub max_bundle: u64,
}

/// Whether `ancestor` is `tip` or one of its ancestors (false when either is unknown).
pub(crate) fn reaches(store: &FeedStore, tip: Oid, ancestor: Oid) -> bool {
    tip == ancestor
        || (store.repo().odb().is_ok_and(|o| o.exists(ancestor))
            && store
                .repo()
                .graph_descendant_of(tip, ancestor)
                .unwrap_or(false))
}

/// Whether the store already holds `tip` of `feed` under one of its refs.
fn have(store: &FeedStore, feed: &FeedId, tip: Oid) -> bool {
    store
        .feed_refs(feed)
        .unwrap_or_default()
        .iter()
        .any(|(_, t)| reaches(store, *t, tip))
}

/// Reads and parses the channel's head list; `None` when the channel does not
/// exist (no push ever made it).
pub fn read_list<T: Transport + ?Sized>(t: &T) -> Result<Option<Vec<Line>>, RelayError> {
    let channel = t.location();
    let bytes = match t.get_list(LIST_MAX) {
        Ok(Some(b)) => b,
        Ok(None) | Err(TransportError::NotFound) => return Ok(None),
        Err(source) => return Err(RelayError::ReadList { channel, source }),
    };
    if bytes.len() as u64 > LIST_MAX {
        return Err(RelayError::ListTooLong {
            channel,
            max_mib: LIST_MAX >> 20,
        });
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| RelayError::ListNotText {
        channel: channel.clone(),
    })?;
    let lines = parse_list(text).map_err(|error| RelayError::BadList { channel, error })?;
    Ok(Some(lines))
}

/// A bundle downloaded and checked against its line, waiting to be applied.
struct Fetched<'a> {
    line: &'a Line,
    /// A path, not an open file: a long channel fetches many bundles before
    /// applying any, and an open descriptor each would hit `ulimit -n`.
    file: tempfile::TempPath,
    /// Commits the bundle builds on (its `-<oid>` header lines).
    prerequisites: Vec<Oid>,
}

impl Pending for Fetched<'_> {
    fn line(&self) -> &Line {
        self.line
    }

    fn prerequisites(&self) -> &[Oid] {
        &self.prerequisites
    }
}

fn at(t: &(impl Transport + ?Sized), line: &Line) -> Box<At> {
    Box::new(At {
        target: line.target(),
        line: line.number,
        channel: t.location(),
    })
}

/// Downloads `line`'s bundle into the store's git dir (verified by hash) and
/// checks that its refs are exactly the tips the line names.
fn fetch<'a, T: Transport + ?Sized>(
    t: &T,
    store: &FeedStore,
    line: &'a Line,
    max: u64,
) -> Result<Fetched<'a>, RelayError> {
    let file = super::bundle_temp(store)?.into_temp_path();
    match t.get_bundle(line, &file, max) {
        Ok(()) => {}
        Err(TransportError::NotFound) => return Err(RelayError::BundleLost(at(t, line))),
        Err(source) => {
            return Err(RelayError::Download {
                at: at(t, line),
                source,
            });
        }
    }
    let f = std::fs::File::open(&file).map_err(|source| RelayError::Io {
        what: "reopening the downloaded bundle",
        source,
    })?;
    let header = sync::bundle::read_header(&file, &mut BufReader::new(f)).map_err(|source| {
        RelayError::BadBundle {
            at: at(t, line),
            source,
        }
    })?;
    if !super::bundle_matches_line(&header, line) {
        return Err(RelayError::LineMismatch(at(t, line)));
    }
    Ok(Fetched {
        line,
        file,
        prerequisites: header.prerequisites,
    })
}

/// The other bundles the downloaded ones build on: `(earlier, chain)`.
///
/// A pull first downloads only the lines carrying a wanted tip it lacks; an
/// incremental bundle among them may need commits (its prerequisites) carried
/// by other lines of the chain, e.g. another feed's line when one bundle
/// carried several feeds: those lines are fetched too, and only those, so a
/// filtered pull neither downloads nor depends on unrelated feeds' lines.
/// Two publishers racing (one republishing `full` while the other appends an
/// `incr` computed from the old chain) can also leave an `incr` whose base is
/// only in a line before the last `full` one: such lines come from `before`.
/// Every line is verified like the others; newest carrier first. A base
/// found nowhere is left to the bundle pull, which names the missing commit.
#[allow(clippy::type_complexity)]
fn fetch_missing_bases<'a, T: Transport + ?Sized>(
    t: &T,
    store: &FeedStore,
    before: &'a [Line],
    chain: &'a [Line],
    fetched: &[Fetched<'a>],
    max: u64,
) -> Result<(Vec<Fetched<'a>>, Vec<Fetched<'a>>), RelayError> {
    let odb = store.repo().odb()?;
    let mut provided: BTreeSet<Oid> = fetched
        .iter()
        .flat_map(|f| f.line.tips.iter().map(|(_, t)| *t))
        .collect();
    let mut seen: BTreeSet<String> = fetched.iter().map(|f| f.line.target()).collect();
    let mut todo: Vec<Oid> = fetched
        .iter()
        .flat_map(|f| f.prerequisites.iter().copied())
        .collect();
    let (mut earlier, mut extra): (Vec<Fetched<'a>>, Vec<Fetched<'a>>) = (Vec::new(), Vec::new());
    while let Some(p) = todo.pop() {
        if provided.contains(&p) || odb.exists(p) {
            continue;
        }
        let carries = |l: &&Line| l.tips.iter().any(|(_, t)| *t == p);
        let (in_chain, line) = match chain.iter().rev().find(carries) {
            Some(l) => (true, l),
            None => match before.iter().rev().find(carries) {
                Some(l) => (false, l),
                None => continue,
            },
        };
        provided.extend(line.tips.iter().map(|(_, t)| *t));
        if !seen.insert(line.target()) {
            continue;
        }
        let f = fetch(t, store, line, max)?;
        todo.extend(f.prerequisites.iter().copied());
        if in_chain {
            extra.push(f);
        } else {
            earlier.push(f);
        }
    }
    earlier.sort_by_key(|f| f.line.number);
    Ok((earlier, extra))
}

/// Pulls the channel `t` into `store`; `None` when the channel is empty.
///
/// Every bundle needed is downloaded and checked against its line before any
/// is applied, so a lost or tampered bundle moves no ref; each is then applied
/// by [`sync::pull`], which verifies every new message first.
pub fn pull<T: Transport + ?Sized>(
    store: &FeedStore,
    t: &T,
    opts: &RelayPullOptions,
) -> Result<Option<PullReport>, RelayError> {
    let want = &opts.feeds;
    let wanted = |feed: &FeedId| want.is_empty() || want.contains(feed);
    let max = opts.max_bundle;
    // a mistyped channel must not look like an empty one
    let lines = read_list(t)?.ok_or_else(|| RelayError::NoChannel {
        channel: t.location(),
    })?;
    let relay = chain(&lines);
    for w in want {
        if !relay.iter().any(|l| l.tips.iter().any(|(f, _)| f == w)) {
            return Err(RelayError::FeedNotOnChannel {
                feed: w.clone(),
                channel: t.location(),
            });
        }
    }
    if relay.is_empty() {
        return Ok(None);
    }

    // Every feed the channel offers (and we want) starts as up to date at the
    // relay's newest tip (or "this store is ahead" of it); each applied
    // bundle's outcome is folded in.
    let mut merged: BTreeMap<FeedId, FeedOutcome> = BTreeMap::new();
    for line in relay {
        for (feed, tip) in &line.tips {
            if wanted(feed) {
                let ours = store.tip(feed).ok().flatten();
                let ahead = ours.is_some_and(|o| o != *tip && reaches(store, o, *tip));
                merged.insert(
                    feed.clone(),
                    FeedOutcome {
                        feed: feed.clone(),
                        tip: *tip,
                        new_messages: 0,
                        outcome: if ahead {
                            Outcome::LocalAhead
                        } else {
                            Outcome::UpToDate
                        },
                        forks_with: Vec::new(),
                        preserved: None,
                    },
                );
            }
        }
    }

    // A line is needed when it has a wanted tip no ref of ours holds; the
    // lines those bundles build on follow (`fetch_missing_bases`).
    let odb = store.repo().odb()?;
    let needed: Vec<&Line> = relay
        .iter()
        .filter(|l| {
            l.tips
                .iter()
                .any(|(f, tip)| wanted(f) && !have(store, f, *tip))
        })
        .collect();
    // Download and check everything first: a lost or tampered bundle moves no ref.
    let mut fetched = Vec::new();
    let mut seen = BTreeSet::new();
    for line in needed {
        if seen.insert(line.target()) {
            fetched.push(fetch(t, store, line, max)?);
        }
    }
    let (earlier, extra) = fetch_missing_bases(
        t,
        store,
        &lines[..lines.len() - relay.len()],
        relay,
        &fetched,
        max,
    )?;
    fetched.extend(extra);
    for (in_chain, f) in apply_order(earlier, fetched, |p| odb.exists(p)) {
        // Only the feeds this bundle still brings something for: a feed whose
        // tip here we already hold (perhaps from a later line) stays as it is.
        // Bases from before the last `full` line only bring objects: the
        // chain's own bundles then validate everything up to their tips.
        let line_feeds: Vec<FeedId> = f
            .line
            .tips
            .iter()
            .filter(|(feed, tip)| in_chain && wanted(feed) && !have(store, feed, *tip))
            .map(|(feed, _)| feed.clone())
            .collect();
        let apply_err = |source| RelayError::Apply {
            at: at(t, f.line),
            source,
        };
        if line_feeds.is_empty() {
            // Nothing we asked for is new: keep the objects for later
            // incremental bundles, move no ref.
            sync::bundle::unbundle(store.repo(), &f.file).map_err(apply_err)?;
            continue;
        }
        let path = f.file.to_string_lossy().into_owned();
        let pull_opts = sync::PullOptions {
            name: Some(opts.name.clone()),
            feeds: line_feeds,
        };
        let report = sync::pull(store, &path, &pull_opts).map_err(apply_err)?;
        for outcome in report.feeds {
            let key = outcome.feed.clone();
            let folded = match merged.remove(&key) {
                Some(prev) => fold(prev, outcome),
                None => outcome,
            };
            merged.insert(key, folded);
        }
    }
    Ok(Some(PullReport {
        source: t.location(),
        name: opts.name.clone(),
        feeds: merged.into_values().collect(),
    }))
}
