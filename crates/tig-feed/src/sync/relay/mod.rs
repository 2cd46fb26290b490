//! The relay protocol without its transport: feeds published through an
//! untrusted tig server (`docs/feed-relay.md`).
//!
//! A channel is an append-only *head list*, one line per push:
//! `tig-feed-v1 <full|incr> </h.tig[?burst=1]> <feed>=<tip>…`, each naming a git
//! bundle stored as a content-addressed object. This module owns that grammar
//! ([`parse_list`], [`Line::render`]), which lines a pull applies ([`chain`]),
//! what a push sends ([`plan_push`]), the check that a downloaded bundle carries
//! exactly what its line names ([`bundle_matches_line`]), the order bundles are
//! applied in ([`apply_order`]) and how their per-feed outcomes fold into one
//! report ([`fold`]).
//!
//! The orchestration on top — [`pull()`](fn@pull) and [`push()`](fn@push) —
//! talks to the relay only through a [`Transport`] (get the head list, get or
//! put a bundle, append a line): tig-feed has no HTTP. `tig-feed-http`
//! implements it over `tig-client`.

mod error;
mod pull;
mod push;
mod transport;

pub use error::{At, RelayError};
pub use pull::{LIST_MAX, RelayPullOptions, pull, read_list};
pub use push::{PushSummary, PushedFeed, push};
pub use transport::{BoxError, Stored, Transport, TransportError};

use std::collections::{BTreeMap, BTreeSet};

use git2::Oid;
use tig_core::ObjectId;

use super::bundle::BundleHeader;
use super::{FeedOutcome, Outcome};
use crate::FeedId;

/// The first word of every line of a channel's head list.
pub const VERSION: &str = "tig-feed-v1";

/// Full bundle (starts a new chain) or incremental (adds to the lines before it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Carries every message of its feeds.
    Full,
    /// Builds on bundles of earlier lines.
    Incr,
}

impl Kind {
    /// The word in the head list.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Full => "full",
            Kind::Incr => "incr",
        }
    }
}

/// One line of a channel's head list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// 1-based line number in the slot, for messages (0 for a line not yet written).
    pub number: usize,
    /// Full or incremental.
    pub kind: Kind,
    /// The bundle object (a burst list when `burst`).
    pub id: ObjectId,
    /// Whether `id` is a burst list of the bundle's chunks.
    pub burst: bool,
    /// `(feed hex id, tip)` as the bundle's refs.
    pub tips: Vec<(FeedId, Oid)>,
}

impl Line {
    /// The bundle's object path: `/<h>.tig`, or `/<h>.tig?burst=1`.
    pub fn target(&self) -> String {
        if self.burst {
            format!("{}?burst=1", self.id.path())
        } else {
            self.id.path()
        }
    }

    /// The line as written to the head list, newline included.
    pub fn render(&self) -> String {
        let mut s = format!("{VERSION} {} {}", self.kind.as_str(), self.target());
        for (feed, tip) in &self.tips {
            s.push_str(&format!(" {feed}={tip}"));
        }
        s.push('\n');
        s
    }
}

/// A head-list line that is not a `tig-feed-v1` line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {number} of the head list is not a {VERSION} line ({why}): {shown:?}")]
pub struct BadLine {
    /// 1-based line number.
    pub number: usize,
    /// What is wrong with it.
    pub why: String,
    /// The line's first 80 characters.
    pub shown: String,
}

/// Parses one non-empty line of a head list; the error says why it is refused.
pub fn parse_line(number: usize, text: &str) -> Result<Line, String> {
    let mut words = text.split(' ');
    if words.next() != Some(VERSION) {
        return Err(format!("does not start with {VERSION}"));
    }
    let kind = match words.next() {
        Some("full") => Kind::Full,
        Some("incr") => Kind::Incr,
        _ => return Err("second word is not full or incr".into()),
    };
    let target = words.next().ok_or("no bundle target")?;
    if !target.starts_with('/') {
        return Err(format!("bundle target {target:?} is not /<hash>.tig"));
    }
    let (path, burst) = match target.split_once('?') {
        None => (target, false),
        Some((p, "burst=1")) => (p, true),
        Some(_) => {
            return Err(format!(
                "bundle target {target:?} is not /<hash>.tig[?burst=1]"
            ));
        }
    };
    let id = ObjectId::from_path(path)
        .map_err(|_| format!("bundle target {target:?} is not /<hash>.tig[?burst=1]"))?;
    let mut tips = Vec::new();
    let mut seen = BTreeSet::new();
    for w in words {
        let (feed, tip) = w
            .split_once('=')
            .ok_or_else(|| format!("{w:?} is not FEED=COMMIT"))?;
        let id = match FeedId::parse(feed) {
            Ok(id) if id.as_str() == feed => id,
            _ => return Err(format!("{feed:?} is not a feed id")),
        };
        if tip.len() != 40 || !tip.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(format!("{tip:?} is not a commit id"));
        }
        let oid = Oid::from_str(tip).map_err(|_| format!("{tip:?} is not a commit id"))?;
        if !seen.insert(feed.to_string()) {
            return Err(format!("feed {feed} appears twice"));
        }
        tips.push((id, oid));
    }
    if tips.is_empty() {
        return Err("no FEED=COMMIT pairs".into());
    }
    Ok(Line {
        number,
        kind,
        id,
        burst,
        tips,
    })
}

/// Parses a whole head list (UTF-8 text); blank lines are skipped, anything
/// else that is not a `tig-feed-v1` line is an error naming the line.
pub fn parse_list(text: &str) -> Result<Vec<Line>, BadLine> {
    let mut out = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        let l = raw.strip_suffix('\r').unwrap_or(raw);
        if l.trim().is_empty() {
            continue;
        }
        let line = parse_line(i + 1, l).map_err(|why| BadLine {
            number: i + 1,
            why,
            shown: l.chars().take(80).collect(),
        })?;
        out.push(line);
    }
    Ok(out)
}

/// Whether `name` can be a channel: 1-100 characters `[A-Za-z0-9._-]` that are
/// also a valid git remote name (no leading `.`, no `..`, no trailing `.lock`
/// or `.`), since a pull's default `--as` name is the channel: push and pull
/// must agree on what they accept.
pub fn valid_channel(name: &str) -> bool {
    (1..=100).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && valid_source_name(name)
}

/// Whether `name` works as a pull's `--as NAME` (`refs/remotes/NAME/<feed>`),
/// by the same rule as the bundle pull, checked before anything is downloaded.
pub fn valid_source_name(name: &str) -> bool {
    !name.is_empty()
        && !name.contains('/')
        && !name.ends_with('.')
        && git2::Reference::is_valid_name(&format!("refs/remotes/{name}/x"))
}

/// The key whose slot holds `channel`'s head list.
pub fn channel_key(channel: &str) -> String {
    format!("tig-feed/{channel}")
}

/// The lines from the last `full` one on: what a pull applies.
pub fn chain(lines: &[Line]) -> &[Line] {
    match lines.iter().rposition(|l| l.kind == Kind::Full) {
        Some(i) => &lines[i..],
        None => lines,
    }
}

/// What a push sends: feeds (feed → tip) and, per feed, the relay's commit
/// the bundle starts after.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushPlan {
    /// Feeds with messages the relay lacks, and the tip to send.
    pub send: BTreeMap<FeedId, Oid>,
    /// For feeds in `send`: the newest relay tip our tip descends from.
    pub since: BTreeMap<FeedId, Oid>,
    /// Feeds whose tip the relay already lists.
    pub up_to_date: Vec<FeedId>,
}

/// Plans a push of `ours` (feed → tip) onto the relay's `chain`:
/// a feed whose tip the chain lists is up to date; otherwise it is sent,
/// incrementally from the newest listed tip that `reaches(ours, listed)`.
pub fn plan_push(
    ours: &BTreeMap<FeedId, Oid>,
    chain: &[Line],
    reaches: impl Fn(Oid, Oid) -> bool,
) -> PushPlan {
    let mut plan = PushPlan::default();
    for (feed, &tip) in ours {
        // Newest first: the relay's tips for this feed.
        let known: Vec<Oid> = chain
            .iter()
            .rev()
            .flat_map(|l| l.tips.iter().filter(|(f, _)| f == feed).map(|(_, o)| *o))
            .collect();
        if known.contains(&tip) {
            plan.up_to_date.push(feed.clone());
            continue;
        }
        if let Some(&base) = known.iter().find(|&&k| reaches(tip, k)) {
            plan.since.insert(feed.clone(), base);
        }
        plan.send.insert(feed.clone(), tip);
    }
    plan
}

/// Whether a downloaded bundle's refs are exactly the tips its line names
/// (`refs/heads/<feed>` each, no more, no fewer): what the relay says is not
/// trusted until the bundle agrees.
pub fn bundle_matches_line(header: &BundleHeader, line: &Line) -> bool {
    let carried: BTreeSet<(&str, Oid)> = header
        .refs
        .iter()
        .filter_map(|(name, oid)| Some((name.strip_prefix("refs/heads/")?, *oid)))
        .collect();
    let named: BTreeSet<(&str, Oid)> = line.tips.iter().map(|(f, o)| (f.as_str(), *o)).collect();
    carried == named && header.refs.len() == named.len()
}

/// A downloaded bundle waiting to be applied: its line and prerequisites.
pub trait Pending {
    /// The head-list line it came from.
    fn line(&self) -> &Line;
    /// Commits the bundle builds on (its `-<oid>` header lines).
    fn prerequisites(&self) -> &[Oid];
}

/// The order to apply downloaded bundles in: by line, except that a bundle
/// comes only after those carrying its prerequisites (a base fetched from
/// before the chain may itself build on a chain line). `true` marks chain
/// bundles. When nothing is ready the earliest goes next, and its pull names
/// the missing commit. `have` says whether the store already has a commit.
pub fn apply_order<T: Pending>(
    earlier: Vec<T>,
    chain: Vec<T>,
    have: impl Fn(Oid) -> bool,
) -> Vec<(bool, T)> {
    let mut pending: Vec<(bool, T)> = earlier
        .into_iter()
        .map(|f| (false, f))
        .chain(chain.into_iter().map(|f| (true, f)))
        .collect();
    pending.sort_by_key(|(_, f)| f.line().number);
    let mut carried: BTreeSet<Oid> = BTreeSet::new();
    let mut out = Vec::with_capacity(pending.len());
    while !pending.is_empty() {
        let i = pending
            .iter()
            .position(|(_, f)| {
                f.prerequisites()
                    .iter()
                    .all(|p| carried.contains(p) || have(*p))
            })
            .unwrap_or(0);
        let next = pending.remove(i);
        carried.extend(next.1.line().tips.iter().map(|(_, t)| *t));
        out.push(next);
    }
    out
}

/// Folds the outcome of a later bundle for a feed into what earlier ones did.
pub fn fold(prev: FeedOutcome, next: FeedOutcome) -> FeedOutcome {
    use Outcome::*;
    let outcome = match (prev.outcome, next.outcome) {
        (Rejected { violations: mut a }, Rejected { violations: b }) => {
            a.extend(b);
            Rejected { violations: a }
        }
        (r @ Rejected { .. }, _) | (_, r @ Rejected { .. }) => r,
        (_, f @ Fork { .. }) => f,
        (f @ Fork { .. }, _) => f,
        (Created, FastForward { .. } | UpToDate | LocalAhead | Created) => Created,
        (FastForward { from }, FastForward { .. } | UpToDate | LocalAhead | Created) => {
            FastForward { from }
        }
        (LocalAhead, UpToDate) => LocalAhead,
        (UpToDate | LocalAhead, n) => n,
    };
    let mut forks_with = prev.forks_with;
    for f in next.forks_with {
        if !forks_with.contains(&f) {
            forks_with.push(f);
        }
    }
    FeedOutcome {
        feed: next.feed,
        tip: next.tip,
        new_messages: prev.new_messages + next.new_messages,
        outcome,
        forks_with,
        preserved: next.preserved.or(prev.preserved),
    }
}

/// A temp file for one bundle in transit, inside the store (same filesystem as its
/// packs; a `.tig-relay-*` name that a crash leaves recognisable).
fn bundle_temp(store: &crate::FeedStore) -> Result<tempfile::NamedTempFile, RelayError> {
    tempfile::Builder::new()
        .prefix(".tig-relay-")
        .suffix(".bundle")
        .tempfile_in(store.repo().path())
        .map_err(|source| RelayError::Io {
            what: "creating a temp file in the store",
            source,
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests may unwrap
    use super::*;

    const FEED: &str = "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29";
    const TIP: &str = "0123456789abcdef0123456789abcdef01234567";
    const H: &str = "f2ca1bb6c7e907d06dafe4687e579fce76b37e4e93b7605022da52e6ccc26fd2";

    #[test]
    fn lines_round_trip() {
        let text = format!("{VERSION} full /{H}.tig {FEED}={TIP}");
        let l = parse_line(3, &text).unwrap();
        assert_eq!(l.kind, Kind::Full);
        assert!(!l.burst);
        assert_eq!(l.render(), format!("{text}\n"));
        let text = format!("{VERSION} incr /{H}.tig?burst=1 {FEED}={TIP}");
        let l = parse_line(1, &text).unwrap();
        assert!(l.burst && l.kind == Kind::Incr);
        assert_eq!(l.render(), format!("{text}\n"));
    }

    #[test]
    fn garbage_lines_are_named() {
        for bad in [
            "hello".to_string(),
            format!("{VERSION} half /{H}.tig {FEED}={TIP}"),
            format!("{VERSION} full {H} {FEED}={TIP}"),
            format!("{VERSION} full http://h/{H}.tig {FEED}={TIP}"),
            format!("{VERSION} full /{H}.tig"),
            format!("{VERSION} full /{H}.tig {FEED}"),
            format!("{VERSION} full /{H}.tig {FEED}={}", TIP.to_uppercase()),
            format!("{VERSION} full /{H}.tig nobody={TIP}"),
            format!("{VERSION} full /{H}.tig {FEED}={TIP} {FEED}={TIP}"),
            format!("{VERSION} full /{H}.tig?apikey=x {FEED}={TIP}"),
            format!("{VERSION} full /{H}.tig?burst=0 {FEED}={TIP}"),
            format!("{VERSION} full /{H} {FEED}={TIP}"),
        ] {
            assert!(parse_line(1, &bad).is_err(), "{bad}");
        }
        let list = format!("{VERSION} full /{H}.tig {FEED}={TIP}\n\nnope\n");
        let e = parse_list(&list).unwrap_err();
        assert_eq!(e.number, 3);
        let e = e.to_string();
        assert!(e.contains("line 3") && e.contains("nope"), "{e}");
    }

    fn oid(c: char) -> Oid {
        Oid::from_str(&c.to_string().repeat(40)).unwrap()
    }

    fn outcome(outcome: Outcome, n: usize, tip: char) -> FeedOutcome {
        FeedOutcome {
            feed: FeedId::parse(FEED).unwrap(),
            tip: oid(tip),
            new_messages: n,
            outcome,
            forks_with: Vec::new(),
            preserved: None,
        }
    }

    #[test]
    fn reports_of_successive_bundles_fold_into_one() {
        let ff = || Outcome::FastForward { from: oid('a') };
        let m = fold(outcome(Outcome::Created, 3, 'b'), outcome(ff(), 2, 'c'));
        assert!(matches!(m.outcome, Outcome::Created));
        assert_eq!((m.new_messages, m.tip), (5, oid('c')));
        let m = fold(
            outcome(Outcome::FastForward { from: oid('9') }, 1, 'b'),
            outcome(ff(), 1, 'c'),
        );
        assert!(matches!(m.outcome, Outcome::FastForward { from } if from == oid('9')));
        let fork = Outcome::Fork {
            local: oid('1'),
            fork_point: None,
        };
        let mut f = outcome(fork, 1, 'f');
        f.forks_with.push(("refs/heads/x".into(), oid('1')));
        let m = fold(outcome(Outcome::UpToDate, 0, 'b'), f);
        assert!(matches!(m.outcome, Outcome::Fork { .. }) && m.forks_with.len() == 1);
        let m = fold(m, outcome(Outcome::UpToDate, 0, '2'));
        assert!(matches!(m.outcome, Outcome::Fork { .. }) && m.forks_with.len() == 1);
        let bad = Outcome::Rejected {
            violations: vec![crate::Violation {
                commit: oid('c'),
                rule: crate::Rule::BadSignature("changed after signing".into()),
            }],
        };
        let m = fold(outcome(bad, 0, 'c'), outcome(ff(), 1, 'd'));
        assert!(matches!(m.outcome, Outcome::Rejected { ref violations } if violations.len() == 1));
        let m = fold(
            outcome(Outcome::LocalAhead, 0, 'b'),
            outcome(Outcome::UpToDate, 0, 'b'),
        );
        assert!(matches!(m.outcome, Outcome::LocalAhead));
    }

    #[test]
    fn pulls_start_at_the_last_full_line() {
        let list = format!(
            "{VERSION} full /{H}.tig {FEED}={TIP}\n{VERSION} incr /{H}.tig {FEED}={TIP}\n{VERSION} full /{H}.tig {FEED}={TIP}\n{VERSION} incr /{H}.tig {FEED}={TIP}\n"
        );
        let lines = parse_list(&list).unwrap();
        assert_eq!(lines.len(), 4);
        let c = chain(&lines);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].number, 3);
        assert!(chain(&[]).is_empty());
    }

    #[test]
    fn a_push_sends_only_what_the_relay_lacks_from_its_newest_known_tip() {
        let a = Oid::from_str(TIP).unwrap();
        let b = Oid::from_str(&"1".repeat(40)).unwrap();
        let c = Oid::from_str(&"2".repeat(40)).unwrap();
        let other = "4".repeat(64);
        let list = format!(
            "{VERSION} full /{H}.tig {FEED}={a}\n{VERSION} incr /{H}.tig {FEED}={b} {other}={c}\n"
        );
        let lines = parse_list(&list).unwrap();
        // ours: FEED moved on from b (which descends from a); other unchanged
        let d = Oid::from_str(&"3".repeat(40)).unwrap();
        let (feed, other) = (FeedId::parse(FEED).unwrap(), FeedId::parse(&other).unwrap());
        let ours = BTreeMap::from([(feed.clone(), d), (other.clone(), c)]);
        let plan = plan_push(&ours, chain(&lines), |tip, base| {
            tip == d && (base == b || base == a)
        });
        assert_eq!(plan.up_to_date, vec![other]);
        assert_eq!(plan.send, BTreeMap::from([(feed.clone(), d)]));
        assert_eq!(plan.since, BTreeMap::from([(feed, b)]));
        // nothing reachable: a full send of that feed
        let plan = plan_push(&ours, chain(&lines), |_, _| false);
        assert!(plan.since.is_empty());
    }

    #[test]
    fn a_bundle_must_carry_exactly_the_tips_its_line_names() {
        let a = Oid::from_str(TIP).unwrap();
        let line = parse_line(1, &format!("{VERSION} full /{H}.tig {FEED}={a}")).unwrap();
        let header = |refs: Vec<(String, Oid)>| BundleHeader {
            prerequisites: Vec::new(),
            refs,
            pack_offset: 0,
        };
        let head = format!("refs/heads/{FEED}");
        assert!(bundle_matches_line(&header(vec![(head.clone(), a)]), &line));
        let b = Oid::from_str(&"1".repeat(40)).unwrap();
        assert!(!bundle_matches_line(
            &header(vec![(head.clone(), b)]),
            &line
        ));
        assert!(!bundle_matches_line(&header(vec![]), &line));
        let extra = vec![
            (head.clone(), a),
            (format!("refs/heads/{}", "4".repeat(64)), b),
        ];
        assert!(!bundle_matches_line(&header(extra), &line));
        let twice = vec![(head.clone(), a), (format!("refs/tags/{FEED}"), a)];
        assert!(!bundle_matches_line(&header(twice), &line));
    }

    struct P(Line, Vec<Oid>);
    impl Pending for P {
        fn line(&self) -> &Line {
            &self.0
        }
        fn prerequisites(&self) -> &[Oid] {
            &self.1
        }
    }

    #[test]
    fn bundles_apply_after_the_bundles_carrying_their_bases() {
        let a = Oid::from_str(TIP).unwrap();
        let b = Oid::from_str(&"1".repeat(40)).unwrap();
        let line = |n: usize, tip: Oid| {
            parse_line(n, &format!("{VERSION} incr /{H}.tig {FEED}={tip}")).unwrap()
        };
        // chain line 5 builds on b, which only an earlier line (2) carries,
        // and that one builds on a, which line 4 of the chain carries
        let chain_items = vec![P(line(4, a), vec![]), P(line(5, b), vec![b])];
        let earlier = vec![P(line(2, b), vec![a])];
        let order = apply_order(earlier, chain_items, |_| false);
        let numbers: Vec<(bool, usize)> = order.iter().map(|(c, p)| (*c, p.0.number)).collect();
        assert_eq!(numbers, [(true, 4), (false, 2), (true, 5)]);
    }
}
