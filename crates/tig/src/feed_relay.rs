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

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufReader, IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use git2::Oid;
use tig_client::{Client, Config};
use tig_core::ObjectId;
use tig_feed::sync::{self, FeedOutcome, Outcome, PullReport};
use tig_feed::{FeedId, FeedStore};

use crate::feed_sync::{open, print_json, print_pull_report, resolve_all, short};

/// The first word of every line of a channel's head list.
const VERSION: &str = "tig-feed-v1";
/// Largest head list a pull or push reads.
const LIST_MAX: u64 = 16 << 20;
/// Largest burst list read while checking that a chunked bundle is still whole.
const BURST_LIST_MAX: u64 = 16 << 20;

/// Settings of a relay pull or push (`tig feed pull/push tig+http://…`),
/// through clap like every other command, so `--help` shows them.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Relay channel options (tig+http://HOST:PORT/NAME)")]
pub struct RelayArgs {
    /// A file holding the relay server's API key (trailing newlines trimmed);
    /// else the key in TIG_APIKEY. Publishing needs it when the server has one.
    #[arg(long, value_name = "PATH")]
    apikey_file: Option<PathBuf>,
    /// The relay server's API key (prefer --apikey-file: a flag shows in `ps`).
    #[arg(long, env = "TIG_APIKEY", hide_env_values = true, value_name = "KEY")]
    apikey: Option<String>,
    /// The relay server's body limit (its --max-size): a larger bundle is
    /// uploaded in chunks below it [default: 128MiB].
    #[arg(long, env = "TIG_MAX_SIZE", value_name = "SIZE")]
    max_size: Option<String>,
    /// Give up when the relay sends nothing for this many seconds (0: never).
    #[arg(
        long,
        env = "TIG_IDLE_TIMEOUT",
        value_name = "SECS",
        default_value = "60"
    )]
    idle_timeout: String,
    /// Largest bundle a pull downloads.
    #[arg(
        long,
        env = "TIG_MAX_BUNDLE",
        value_name = "SIZE",
        default_value = "4GiB"
    )]
    max_bundle: String,
}

// Sizes and seconds are read here rather than by clap so that a bad value is
// the usual one `tig: …` line (exit 1) naming both the flag and the variable.
impl RelayArgs {
    fn max_size(&self) -> anyhow::Result<Option<u64>> {
        self.max_size
            .as_deref()
            .map(|s| tig_client::parse_size(s).context("--max-size / TIG_MAX_SIZE"))
            .transpose()
    }

    fn idle_timeout(&self) -> anyhow::Result<u64> {
        let s = &self.idle_timeout;
        s.trim().parse::<u64>().map_err(|_| {
            anyhow::anyhow!(
                "--idle-timeout / TIG_IDLE_TIMEOUT {s:?}: expected whole seconds (0 for none)"
            )
        })
    }

    fn max_bundle(&self) -> anyhow::Result<u64> {
        tig_client::parse_size(&self.max_bundle).context("--max-bundle / TIG_MAX_BUNDLE")
    }
}

/// A parsed `tig+http(s)://HOST:PORT[/PREFIX]/NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RelayUrl {
    /// The server's base URL (`http://HOST:PORT[/PREFIX]`).
    server: String,
    /// The channel name.
    channel: String,
}

impl RelayUrl {
    /// The key whose slot holds the channel's head list.
    fn key(&self) -> String {
        format!("tig-feed/{}", self.channel)
    }
}

impl std::fmt::Display for RelayUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "tig+{}/{}", self.server, self.channel)
    }
}

/// Whether `name` can be a channel: 1-100 characters `[A-Za-z0-9._-]` that are
/// also a valid git remote name (no leading `.`, no `..`, no trailing `.lock`
/// or `.`), since a pull's default `--as` name is the channel: push and pull
/// must agree on what they accept.
fn valid_channel(name: &str) -> bool {
    (1..=100).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && valid_source_name(name)
}

/// Whether `name` works as a pull's `--as NAME` (`refs/remotes/NAME/<feed>`),
/// by the same rule as the bundle pull, checked before anything is downloaded.
fn valid_source_name(name: &str) -> bool {
    !name.is_empty()
        && !name.contains('/')
        && !name.ends_with('.')
        && git2::Reference::is_valid_name(&format!("refs/remotes/{name}/x"))
}

fn parse_url(s: &str) -> anyhow::Result<RelayUrl> {
    let usage = "expected tig+http://HOST:PORT/NAME with NAME of 1-100 characters [A-Za-z0-9._-], \
                 not starting with '.' or ending in '.' or '.lock', without '..'";
    let rest = s
        .strip_prefix("tig+")
        .filter(|r| r.starts_with("http://") || r.starts_with("https://"))
        .with_context(|| format!("{s:?}: not a relay URL ({usage})"))?;
    if rest.contains(['?', '#']) {
        bail!("{s:?}: a relay URL has no query or fragment ({usage})");
    }
    let (scheme, after) = rest.split_once("://").unwrap_or((rest, ""));
    let Some((host_path, channel)) = after.rsplit_once('/') else {
        bail!("{s:?}: no channel name ({usage})");
    };
    if host_path.is_empty() || host_path.starts_with('/') {
        bail!("{s:?}: no server host ({usage})");
    }
    if !valid_channel(channel) {
        bail!("{s:?}: bad channel name {channel:?} ({usage})");
    }
    let server = tig_client::normalize_server(&format!("{scheme}://{host_path}"))
        .with_context(|| format!("{s:?}: bad server ({usage})"))?;
    Ok(RelayUrl {
        server,
        channel: channel.to_string(),
    })
}

/// Full bundle (starts a new chain) or incremental (adds to the lines before it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
enum Kind {
    Full,
    Incr,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Full => "full",
            Kind::Incr => "incr",
        }
    }
}

/// One line of a channel's head list.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    /// 1-based line number in the slot, for messages.
    number: usize,
    kind: Kind,
    /// The bundle object (a burst list when `burst`).
    id: ObjectId,
    burst: bool,
    /// `(feed hex id, tip)` as the bundle's refs.
    tips: Vec<(String, Oid)>,
}

impl Line {
    fn target(&self) -> String {
        if self.burst {
            format!("{}?burst=1", self.id.path())
        } else {
            self.id.path()
        }
    }

    fn render(&self) -> String {
        let mut s = format!("{VERSION} {} {}", self.kind.as_str(), self.target());
        for (feed, tip) in &self.tips {
            s.push_str(&format!(" {feed}={tip}"));
        }
        s.push('\n');
        s
    }
}

/// Parses one non-empty line of a head list.
fn parse_line(number: usize, text: &str) -> Result<Line, String> {
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
    let t = tig_client::parse_target(target)
        .map_err(|_| format!("bundle target {target:?} is not /<hash>.tig[?burst=1]"))?;
    let mut tips = Vec::new();
    let mut seen = BTreeSet::new();
    for w in words {
        let (feed, tip) = w
            .split_once('=')
            .ok_or_else(|| format!("{w:?} is not FEED=COMMIT"))?;
        match FeedId::parse(feed) {
            Ok(id) if id.as_str() == feed => {}
            _ => return Err(format!("{feed:?} is not a feed id")),
        }
        if tip.len() != 40 || !tip.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(format!("{tip:?} is not a commit id"));
        }
        let oid = Oid::from_str(tip).map_err(|_| format!("{tip:?} is not a commit id"))?;
        if !seen.insert(feed.to_string()) {
            return Err(format!("feed {feed} appears twice"));
        }
        tips.push((feed.to_string(), oid));
    }
    if tips.is_empty() {
        return Err("no FEED=COMMIT pairs".into());
    }
    Ok(Line {
        number,
        kind,
        id: t.id,
        burst: t.burst,
        tips,
    })
}

/// Parses a whole head list; blank lines are skipped, anything else that is not
/// a `tig-feed-v1` line is an error naming the line.
fn parse_list(url: &RelayUrl, bytes: &[u8]) -> anyhow::Result<Vec<Line>> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("relay channel {url}: the head list is not UTF-8 text"))?;
    let mut out = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        let l = raw.strip_suffix('\r').unwrap_or(raw);
        if l.trim().is_empty() {
            continue;
        }
        let line = parse_line(i + 1, l).map_err(|why| {
            let shown: String = l.chars().take(80).collect();
            anyhow::anyhow!(
                "relay channel {url}: line {} of the head list is not a {VERSION} line ({why}): {shown:?}",
                i + 1
            )
        })?;
        out.push(line);
    }
    Ok(out)
}

/// The lines from the last `full` one on: what a pull applies.
fn chain(lines: &[Line]) -> &[Line] {
    match lines.iter().rposition(|l| l.kind == Kind::Full) {
        Some(i) => &lines[i..],
        None => lines,
    }
}

/// A client for the relay, from the relay flags (and their environment variables).
fn connect(url: &RelayUrl, args: &RelayArgs) -> anyhow::Result<Client> {
    let mut cfg = Config::new(&url.server)?;
    cfg.apikey = match &args.apikey_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the API key from {}", path.display()))?;
            Some(text.trim_end_matches(['\n', '\r']).to_string())
        }
        None => args.apikey.clone().filter(|k| !k.is_empty()),
    };
    if let Some(max) = args.max_size()? {
        cfg.max_size = Some(max);
    }
    let idle = args.idle_timeout()?;
    cfg.idle_timeout = (idle > 0).then(|| std::time::Duration::from_secs(idle));
    cfg.progress = std::io::stderr().is_terminal();
    Ok(Client::new(cfg)?)
}

/// Reads the channel's head list; `None` when the channel does not exist (no
/// push ever made its slot).
fn read_list(client: &Client, url: &RelayUrl) -> anyhow::Result<Option<Vec<Line>>> {
    let slot = tig_client::slot_id(url.key().as_bytes());
    let resp = match client.get(&slot, true) {
        Ok(r) => r,
        Err(tig_client::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading relay channel {url}")),
    };
    let mut bytes = Vec::new();
    resp.take(LIST_MAX + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading relay channel {url}"))?;
    if bytes.len() as u64 > LIST_MAX {
        bail!(
            "relay channel {url}: the head list is over {} MiB; refusing it",
            LIST_MAX >> 20
        );
    }
    parse_list(url, &bytes).map(Some)
}

/// Whether the relay still has the whole bundle of `line`. Every request
/// refreshes the object's retention timer, so a live chain stays alive.
fn bundle_alive(client: &Client, line: &Line) -> anyhow::Result<bool> {
    if client.head(&line.id)?.is_none() {
        return Ok(false);
    }
    if !line.burst {
        return Ok(true);
    }
    let list = match client.fetch_bytes(&line.id, BURST_LIST_MAX) {
        Ok(l) => l,
        Err(tig_client::Error::NotFound { .. }) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    for member in tig_client::chunk::decode_burst(&list)? {
        if client.head(&member)?.is_none() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Whether `ancestor` is `tip` or one of its ancestors (false when either is unknown).
fn reaches(store: &FeedStore, tip: Oid, ancestor: Oid) -> bool {
    tip == ancestor
        || (store.repo().odb().is_ok_and(|o| o.exists(ancestor))
            && store
                .repo()
                .graph_descendant_of(tip, ancestor)
                .unwrap_or(false))
}

#[derive(serde::Serialize)]
struct PushedFeed {
    feed: String,
    tip: String,
    /// The relay's commit the bundle starts after, if incremental for this feed.
    since: Option<String>,
}

#[derive(serde::Serialize)]
struct PushSummary {
    relay: String,
    channel: String,
    /// `full`, `incr`, or `none` when nothing was sent.
    kind: String,
    target: Option<String>,
    bytes: u64,
    messages: usize,
    feeds: Vec<PushedFeed>,
    up_to_date: Vec<String>,
}

/// `tig feed push tig+http://HOST:PORT/NAME [FEED…]`.
pub fn push(
    dir: &Path,
    dest: &str,
    feeds: Vec<String>,
    name: Option<String>,
    json: bool,
    args: &RelayArgs,
) -> anyhow::Result<ExitCode> {
    let url = parse_url(dest)?;
    if name.is_some() {
        bail!("--as has no meaning when pushing to a relay ({url}): the channel is the name");
    }
    let store = open(dir)?;
    let selected = if feeds.is_empty() {
        store.feeds()?
    } else {
        resolve_all(&store, &feeds)?
            .iter()
            .map(|f| Ok(FeedId::parse(f)?))
            .collect::<anyhow::Result<Vec<_>>>()?
    };
    let mut ours: BTreeMap<String, Oid> = BTreeMap::new();
    for id in &selected {
        let tip = store
            .tip(id)?
            .with_context(|| format!("feed {id} has no messages in this store"))?;
        ours.insert(id.to_string(), tip);
    }
    if ours.is_empty() {
        bail!("no feeds to publish in {}", dir.display());
    }

    let client = connect(&url, args)?;
    let lines = read_list(&client, &url)?.unwrap_or_default();
    let mut relay = chain(&lines);
    let mut kind = if relay.is_empty() {
        Kind::Full
    } else {
        Kind::Incr
    };
    let mut checked = BTreeSet::new();
    for line in relay {
        if checked.insert(line.target()) && !bundle_alive(&client, line)? {
            tracing::debug!(target = %line.target(), line = line.number, "relay lost a bundle; publishing a full one");
            if !json {
                eprintln!(
                    "tig: {url}: the relay no longer has bundle {} (line {}); publishing a full bundle",
                    line.target(),
                    line.number
                );
            }
            kind = Kind::Full;
            relay = &[];
            break;
        }
    }

    let mut send = BTreeMap::new();
    let mut since = BTreeMap::new();
    let mut up_to_date = Vec::new();
    for (feed, &tip) in &ours {
        // Newest first: the relay's tips for this feed.
        let known: Vec<Oid> = relay
            .iter()
            .rev()
            .flat_map(|l| l.tips.iter().filter(|(f, _)| f == feed).map(|(_, o)| *o))
            .collect();
        if known.contains(&tip) {
            up_to_date.push(feed.clone());
            continue;
        }
        if let Some(&base) = known.iter().find(|&&k| reaches(&store, tip, k)) {
            since.insert(feed.clone(), base);
        }
        send.insert(feed.clone(), tip);
    }
    let mut summary = PushSummary {
        relay: url.to_string(),
        channel: url.channel.clone(),
        kind: "none".into(),
        target: None,
        bytes: 0,
        messages: 0,
        feeds: Vec::new(),
        up_to_date: up_to_date.clone(),
    };
    if send.is_empty() {
        if json {
            print_json(&summary)?;
        } else {
            outln!(
                "{url}: the relay has every message of {} feed(s); nothing to push",
                up_to_date.len()
            )?;
        }
        return Ok(ExitCode::SUCCESS);
    }

    let tmp = tempfile::Builder::new()
        .prefix(".tig-relay-")
        .suffix(".bundle")
        .tempfile_in(store.repo().path())
        .context("creating a temp file in the store")?;
    let bundle = sync::create_bundle(store.repo(), tmp.path(), &send, &since)?;
    let put = client
        .put_file(tmp.path(), false)
        .with_context(|| format!("uploading the bundle to {url}"))?;
    let line = Line {
        number: 0,
        kind,
        id: put.id,
        burst: put.burst,
        tips: send.iter().map(|(f, t)| (f.clone(), *t)).collect(),
    };
    client
        .kv_append(url.key().as_bytes(), line.render().into_bytes().into())
        .with_context(|| format!("appending to relay channel {url}"))?;
    drop(tmp);

    summary.kind = kind.as_str().into();
    summary.target = Some(line.target());
    summary.bytes = bundle.bytes;
    summary.messages = bundle.commits;
    summary.feeds = send
        .iter()
        .map(|(f, t)| PushedFeed {
            feed: f.clone(),
            tip: t.to_string(),
            since: since.get(f).map(|o| o.to_string()),
        })
        .collect();
    if json {
        print_json(&summary)?;
    } else {
        for f in &summary.feeds {
            match &f.since {
                Some(b) => outln!("{}: {}..{}", f.feed, short(b), short(&f.tip))?,
                None => outln!("{}: published up to {}", f.feed, short(&f.tip))?,
            }
        }
        for f in &up_to_date {
            outln!("{f}: up to date on the relay")?;
        }
        outln!(
            "{url}: {} bundle {}, {} message(s), {} bytes{}",
            kind.as_str(),
            line.target(),
            bundle.commits,
            bundle.bytes,
            if put.burst {
                format!(" in {} chunks", put.chunks)
            } else {
                String::new()
            }
        )?;
    }
    Ok(ExitCode::SUCCESS)
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

/// Folds the outcome of a later bundle for a feed into what earlier ones did.
fn merge(prev: FeedOutcome, next: FeedOutcome) -> FeedOutcome {
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
    let carried: BTreeSet<(String, Oid)> = header
        .refs
        .iter()
        .filter_map(|(name, oid)| Some((name.strip_prefix("refs/heads/")?.to_string(), *oid)))
        .collect();
    let named: BTreeSet<(String, Oid)> = line.tips.iter().cloned().collect();
    if carried != named || header.refs.len() != named.len() {
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

/// The order to apply downloaded bundles in: by line, except that a bundle
/// comes only after those carrying its prerequisites (a base fetched from
/// before the chain may itself build on a chain line). `true` marks chain
/// bundles. When nothing is ready the earliest goes next, and its pull names
/// the missing commit.
fn apply_order<'a>(
    odb: &git2::Odb<'_>,
    earlier: Vec<Fetched<'a>>,
    chain: Vec<Fetched<'a>>,
) -> Vec<(bool, Fetched<'a>)> {
    let mut pending: Vec<(bool, Fetched<'a>)> = earlier
        .into_iter()
        .map(|f| (false, f))
        .chain(chain.into_iter().map(|f| (true, f)))
        .collect();
    pending.sort_by_key(|(_, f)| f.line.number);
    let mut carried: BTreeSet<Oid> = BTreeSet::new();
    let mut out = Vec::with_capacity(pending.len());
    while !pending.is_empty() {
        let i = pending
            .iter()
            .position(|(_, f)| {
                f.prerequisites
                    .iter()
                    .all(|p| carried.contains(p) || odb.exists(*p))
            })
            .unwrap_or(0);
        let next = pending.remove(i);
        carried.extend(next.1.line.tips.iter().map(|(_, t)| *t));
        out.push(next);
    }
    out
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
    let relay = chain(&lines);
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
    for (in_chain, f) in apply_order(&odb, earlier, fetched) {
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
                Some(prev) => merge(prev, outcome),
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

#[cfg(test)]
mod tests {
    use super::*;

    const FEED: &str = "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29";
    const TIP: &str = "0123456789abcdef0123456789abcdef01234567";
    const H: &str = "f2ca1bb6c7e907d06dafe4687e579fce76b37e4e93b7605022da52e6ccc26fd2";

    #[test]
    fn urls() {
        let u = parse_url("tig+http://127.0.0.1:7777/alice").unwrap();
        assert_eq!(u.server, "http://127.0.0.1:7777");
        assert_eq!(u.channel, "alice");
        assert_eq!(u.to_string(), "tig+http://127.0.0.1:7777/alice");
        assert_eq!(u.key(), "tig-feed/alice");
        let u = parse_url("tig+https://relay.example/tig/a.b_c-1").unwrap();
        assert_eq!(u.server, "https://relay.example/tig");
        assert_eq!(u.channel, "a.b_c-1");
        for bad in [
            "tig+http://127.0.0.1:7777",
            "tig+http://127.0.0.1:7777/",
            "tig+http:///alice",
            "tig+ftp://h/alice",
            "tig+http://h/al ice",
            "tig+http://h/alice?x=1",
            "tig+http://h/alice#x",
            "tig+http://h/a/",
            "http://h/alice",
            "tig+http://h/.hidden",
            "tig+http://h/a..b",
            "tig+http://h/x.lock",
            "tig+http://h/x.",
            "tig+http://h/.",
            "tig+http://h/..",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
        assert!(parse_url(&format!("tig+http://h/{}", "a".repeat(101))).is_err());
        assert!(parse_url("tig+ftp://h/x").is_err());
    }

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
        ] {
            assert!(parse_line(1, &bad).is_err(), "{bad}");
        }
        let url = parse_url("tig+http://h:1/c").unwrap();
        let list = format!("{VERSION} full /{H}.tig {FEED}={TIP}\n\nnope\n");
        let e = parse_list(&url, list.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("nope"), "{e}");
    }

    fn outcome(outcome: Outcome, n: usize, tip: &str) -> FeedOutcome {
        FeedOutcome {
            feed: FEED.into(),
            tip: tip.into(),
            new_messages: n,
            outcome,
            forks_with: Vec::new(),
            preserved: None,
        }
    }

    #[test]
    fn reports_of_successive_bundles_fold_into_one() {
        let ff = || Outcome::FastForward { from: "a".into() };
        let m = merge(outcome(Outcome::Created, 3, "b"), outcome(ff(), 2, "c"));
        assert!(matches!(m.outcome, Outcome::Created));
        assert_eq!((m.new_messages, m.tip.as_str()), (5, "c"));
        let m = merge(
            outcome(Outcome::FastForward { from: "x".into() }, 1, "b"),
            outcome(ff(), 1, "c"),
        );
        assert!(matches!(m.outcome, Outcome::FastForward { ref from } if from == "x"));
        let fork = Outcome::Fork {
            local: "l".into(),
            fork_point: None,
        };
        let mut f = outcome(fork, 1, "f");
        f.forks_with.push(("refs/heads/x".into(), "l".into()));
        let m = merge(outcome(Outcome::UpToDate, 0, "b"), f);
        assert!(matches!(m.outcome, Outcome::Fork { .. }) && m.forks_with.len() == 1);
        let m = merge(m, outcome(Outcome::UpToDate, 0, "g"));
        assert!(matches!(m.outcome, Outcome::Fork { .. }) && m.forks_with.len() == 1);
        let bad = Outcome::Rejected {
            violations: vec![("c".into(), "bad signature".into())],
        };
        let m = merge(outcome(bad, 0, "c"), outcome(ff(), 1, "d"));
        assert!(matches!(m.outcome, Outcome::Rejected { ref violations } if violations.len() == 1));
        let m = merge(
            outcome(Outcome::LocalAhead, 0, "b"),
            outcome(Outcome::UpToDate, 0, "b"),
        );
        assert!(matches!(m.outcome, Outcome::LocalAhead));
    }

    #[test]
    fn pulls_start_at_the_last_full_line() {
        let url = parse_url("tig+http://h:1/c").unwrap();
        let list = format!(
            "{VERSION} full /{H}.tig {FEED}={TIP}\n{VERSION} incr /{H}.tig {FEED}={TIP}\n{VERSION} full /{H}.tig {FEED}={TIP}\n{VERSION} incr /{H}.tig {FEED}={TIP}\n"
        );
        let lines = parse_list(&url, list.as_bytes()).unwrap();
        assert_eq!(lines.len(), 4);
        let c = chain(&lines);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].number, 3);
        assert!(chain(&[]).is_empty());
    }
}
