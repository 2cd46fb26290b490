//! `tig feed push/pull tig+http://HOST:PORT/NAME`: feeds published through a tig
//! server used as an untrusted relay (SPEC §2, "Over tig"; protocol in
//! `docs/feed-relay.md`).
//!
//! A channel `NAME` is a key-value slot (key `tig-feed/NAME`) holding an
//! append-only text log, one line per push:
//! `tig-feed-v1 <full|incr> <target> <feed>=<tip>…`, where `<target>` names a
//! git bundle stored as a content-addressed object (`/<h>.tig`, or
//! `/<list>.tig?burst=1` when it was chunked). A push appends a bundle that is
//! incremental from what the channel already has (or `full` when one of the
//! channel's bundles has expired); a pull downloads the bundles it lacks from
//! the last `full` line on, each verified by hash (the client) and then by
//! signature and feed rules (the ordinary bundle pull). Nothing the server
//! says is trusted: a slot line whose bundle does not carry the tips it names
//! is refused before any ref moves.

//!
//! Code map: [`http`] is the transport (flags, the client, reading the head
//! list, checking bundles are alive), [`push`] publishes; this file pulls. The
//! protocol itself (grammar, planning, checks, order, folding) is
//! `tig_feed::sync::relay`.

mod http;
mod push;

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufReader;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use git2::Oid;
use tig_client::Client;
use tig_feed::sync::relay::{self, Line};
use tig_feed::sync::{self, FeedOutcome, Outcome, PullReport};
use tig_feed::{FeedId, FeedStore};

use crate::feed_report::{open, print_json, print_pull_report, resolve_all};
pub use http::RelayArgs;
use http::{RelayUrl, connect, parse_url, read_list, valid_source_name};
pub use push::push;

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
fn have(store: &FeedStore, feed: &str, tip: Oid) -> bool {
    let Ok(id) = FeedId::parse(feed) else {
        return false;
    };
    store
        .feed_refs(&id)
        .unwrap_or_default()
        .iter()
        .any(|(_, t)| reaches(store, *t, tip))
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

/// Downloads `line`'s bundle into the store's git dir (verified by hash) and
/// checks that its refs are exactly the tips the line names.
fn fetch<'a>(
    client: &Client,
    store: &FeedStore,
    url: &RelayUrl,
    line: &'a Line,
    max: u64,
) -> anyhow::Result<Fetched<'a>> {
    let file = tempfile::Builder::new()
        .prefix(".tig-relay-")
        .suffix(".bundle")
        .tempfile_in(store.repo().path())
        .context("creating a temp file in the store")?
        .into_temp_path();
    match client.fetch_to_path_max(&line.id, line.burst, &file, max) {
        Ok(_) => {}
        Err(tig_client::Error::NotFound { .. }) => bail!(
            "relay no longer has bundle {} (line {} of channel {url}); ask the publisher to push again",
            line.target(),
            line.number
        ),
        Err(e) => {
            let hint = match &e {
                tig_client::Error::Invalid { reason, .. } if reason.contains("limit") => {
                    " (--max-bundle or TIG_MAX_BUNDLE sets the limit)"
                }
                _ => "",
            };
            return Err(e).with_context(|| {
                format!(
                    "bundle {} (line {} of channel {url}){hint}; nothing applied",
                    line.target(),
                    line.number
                )
            });
        }
    }
    let f = std::fs::File::open(&file).context("reopening the downloaded bundle")?;
    let header = sync::bundle::read_header(&file, &mut BufReader::new(f)).with_context(|| {
        format!(
            "bundle {} (line {} of channel {url}); nothing applied",
            line.target(),
            line.number
        )
    })?;
    if !relay::bundle_matches_line(&header, line) {
        bail!(
            "line {} of relay channel {url} names tips that its bundle {} does not carry; nothing applied",
            line.number,
            line.target()
        );
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
fn fetch_missing_bases<'a>(
    client: &Client,
    store: &FeedStore,
    url: &RelayUrl,
    before: &'a [Line],
    chain: &'a [Line],
    fetched: &[Fetched<'a>],
    max: u64,
) -> anyhow::Result<(Vec<Fetched<'a>>, Vec<Fetched<'a>>)> {
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
        let f = fetch(client, store, url, line, max)?;
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

impl relay::Pending for Fetched<'_> {
    fn line(&self) -> &Line {
        self.line
    }

    fn prerequisites(&self) -> &[Oid] {
        &self.prerequisites
    }
}

/// Most pack files libgit2 keeps open at once while a pull runs.
const OPEN_PACKS_MAX: usize = 16;

/// Caps the pack files libgit2 keeps open (by default it never closes one).
///
/// Each bundle a relay pull applies becomes a pack of its own, so a fresh
/// pull of a long channel would otherwise hold one descriptor per line and
/// fail with "Too many open files" under a low `ulimit -n`. Beyond the cap,
/// libgit2 closes the least recently used pack (and reopens it when needed).
#[allow(unsafe_code)]
fn limit_open_packs() {
    // SAFETY: the option is a libgit2 global written without synchronization;
    // git2 asks that it be set before any thread is spawned. It is called at
    // the start of `pull`, before the HTTP client starts its thread or any
    // other thread exists: the `tig` binary spawns none before a command runs.
    if let Err(e) = unsafe { git2::opts::set_mwindow_file_limit(OPEN_PACKS_MAX) } {
        tracing::debug!(error = %e, "could not cap libgit2's open pack files");
    }
}

/// `tig feed pull tig+http://HOST:PORT/NAME [FEED…] [--as N] [--strict] [--json]`.
pub fn pull(
    dir: &Path,
    source: &str,
    feeds: Vec<String>,
    name: Option<String>,
    strict: bool,
    json: bool,
    args: &RelayArgs,
) -> anyhow::Result<ExitCode> {
    let url = parse_url(source)?;
    limit_open_packs();
    let store = open(dir)?;
    let want = resolve_all(&store, &feeds)?;
    let name = name.unwrap_or_else(|| url.channel.clone());
    if !valid_source_name(&name) {
        bail!(
            "bad --as name {name:?}: it must work as a git remote name (no '/', no leading '.', no '..', not ending in '.' or '.lock')"
        );
    }
    let wanted = |feed: &str| want.is_empty() || want.iter().any(|w| w == feed);
    let max = args.max_bundle()?;

    let client = connect(&url, args)?;
    // a mistyped channel must not look like an empty one
    let lines = read_list(&client, &url)?.with_context(|| {
        format!(
            "relay channel {url} does not exist: nothing was ever pushed to it (check the name)"
        )
    })?;
    let relay = relay::chain(&lines);
    for w in &want {
        if !relay.iter().any(|l| l.tips.iter().any(|(f, _)| f == w)) {
            bail!("feed {w} is not on relay channel {url}");
        }
    }
    if relay.is_empty() {
        if json {
            print_json(&PullReport {
                source: url.to_string(),
                name,
                feeds: Vec::new(),
            })?;
        } else {
            outln!("{url}: the channel is empty; nothing to pull")?;
        }
        return Ok(ExitCode::SUCCESS);
    }

    // Every feed the channel offers (and we want) starts as up to date at the
    // relay's newest tip (or "this store is ahead" of it); each applied
    // bundle's outcome is folded in.
    let mut merged: BTreeMap<String, FeedOutcome> = BTreeMap::new();
    for line in relay {
        for (feed, tip) in &line.tips {
            if wanted(feed) {
                let ours = FeedId::parse(feed)
                    .ok()
                    .and_then(|id| store.tip(&id).ok().flatten());
                let ahead = ours.is_some_and(|o| o != *tip && reaches(&store, o, *tip));
                merged.insert(
                    feed.clone(),
                    FeedOutcome {
                        feed: feed.clone(),
                        tip: tip.to_string(),
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
                .any(|(f, t)| wanted(f) && !have(&store, f, *t))
        })
        .collect();
    // Download and check everything first: a lost or tampered bundle moves no ref.
    let mut fetched = Vec::new();
    let mut seen = BTreeSet::new();
    for line in needed {
        if seen.insert(line.target()) {
            fetched.push(fetch(&client, &store, &url, line, max)?);
        }
    }
    let (earlier, extra) = fetch_missing_bases(
        &client,
        &store,
        &url,
        &lines[..lines.len() - relay.len()],
        relay,
        &fetched,
        max,
    )?;
    fetched.extend(extra);
    for (in_chain, f) in relay::apply_order(earlier, fetched, |p| odb.exists(p)) {
        // Only the feeds this bundle still brings something for: a feed whose
        // tip here we already hold (perhaps from a later line) stays as it is.
        // Bases from before the last `full` line only bring objects: the
        // chain's own bundles then validate everything up to their tips.
        let line_feeds: Vec<String> = f
            .line
            .tips
            .iter()
            .filter(|(feed, tip)| in_chain && wanted(feed) && !have(&store, feed, *tip))
            .map(|(feed, _)| feed.clone())
            .collect();
        let context = || {
            format!(
                "applying bundle {} (line {} of channel {url})",
                f.line.target(),
                f.line.number
            )
        };
        if line_feeds.is_empty() {
            // Nothing we asked for is new: keep the objects for later
            // incremental bundles, move no ref.
            sync::bundle::unbundle(store.repo(), &f.file).with_context(context)?;
            continue;
        }
        let path = f.file.to_string_lossy().into_owned();
        let opts = sync::PullOptions {
            name: Some(name.clone()),
            feeds: line_feeds,
        };
        let report = sync::pull(&store, &path, &opts).with_context(context)?;
        for outcome in report.feeds {
            let key = outcome.feed.clone();
            let folded = match merged.remove(&key) {
                Some(prev) => relay::fold(prev, outcome),
                None => outcome,
            };
            merged.insert(key, folded);
        }
    }
    let report = PullReport {
        source: url.to_string(),
        name,
        feeds: merged.into_values().collect(),
    };
    print_pull_report(&report, strict, json)
}
