//! `tig id …` and `tig feed …`: identities and signed logs over git.
//!
//! Thin glue over `tig-feed`: parse arguments, read the environment (`TIG_KEY`,
//! `HOME`, `TIG_DATE`), print results. `tig feed -C DIR` changes directory first,
//! exactly like `git -C`, so every feed command (sync ones included) works on DIR.

use std::collections::BTreeMap;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use tig_feed::sync;
use tig_feed::{
    AppendOptions, FeedId, FeedStore, Identity, Signer, Time, check_commits, identity, verify_feed,
};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Ed25519 identities (feed keys) in OpenSSH format.
    Id {
        #[command(subcommand)]
        command: IdCommand,
    },
    /// Signed logs kept as git commits in a git repository.
    Feed {
        /// Work on the store in DIR (like `git -C`, except that other paths you
        /// give, such as --key or a bundle file, stay relative to where you are).
        #[arg(short = 'C', global = true, value_name = "DIR")]
        chdir: Option<PathBuf>,
        #[command(subcommand)]
        command: FeedCommand,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum IdCommand {
    /// Create an ed25519 key pair (PATH and PATH.pub) and print its feed id.
    New {
        /// Where to write the private key [default: $TIG_KEY or ~/.config/tig/id_ed25519].
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
    },
    /// Print the feed id of a key (private key or .pub file).
    Show {
        /// The key [default: $TIG_KEY or ~/.config/tig/id_ed25519].
        #[arg(long, value_name = "PATH")]
        key: Option<PathBuf>,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum FeedCommand {
    /// Create a store: a bare git repository (default: the current directory).
    Init {
        /// Where to create it.
        dir: Option<PathBuf>,
    },
    /// Append one message (or many with --batch) to your feed; prints the commit id(s).
    Append(AppendArgs),
    /// Print a feed's messages, newest first: a `#SEQ COMMIT TIME` line, then the
    /// content indented by four spaces; a blank line between messages.
    Log {
        /// Feed id or alias [default: the store's only feed].
        feed: Option<String>,
        /// Oldest first.
        #[arg(long)]
        reverse: bool,
        /// JSON: sequence number, commit, author, time, content, signature state.
        #[arg(long)]
        json: bool,
    },
    /// Check every message of the given feeds (default: all) against the feed rules;
    /// prints one line per known fork (two validly signed messages with one parent).
    Verify {
        /// Feed ids or aliases.
        feeds: Vec<String>,
        /// Exit 1 when a feed is forked, not only when a rule is broken.
        #[arg(long)]
        strict: bool,
    },
    /// Create an alias: a symbolic ref that moves with the feed (like bob-frontier);
    /// with --delete, remove an alias (only the alias: the feed stays).
    Alias {
        /// The alias, e.g. bob-frontier.
        name: String,
        /// Feed id (or another alias).
        #[arg(required_unless_present = "delete", conflicts_with = "delete")]
        feed: Option<String>,
        /// Move an existing alias.
        #[arg(long, conflicts_with = "delete")]
        force: bool,
        /// Remove the alias NAME; the feed and its messages are not touched.
        #[arg(long)]
        delete: bool,
    },
    /// List every feed: messages, tip, aliases, and whether it verifies.
    List {
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Print a git allowedSignersFile for every ed25519 feed in the store.
    AllowedSigners,
    #[command(flatten)]
    Sync(crate::feed_sync::Command),
}

#[derive(Debug, clap::Args)]
pub struct AppendArgs {
    /// The content (at most 8192 bytes of UTF-8), or `-` to read it from stdin.
    #[arg(required_unless_present = "batch", conflicts_with = "batch")]
    content: Option<String>,
    /// Ed25519 key [default: $TIG_KEY or ~/.config/tig/id_ed25519].
    #[arg(long, value_name = "PATH", conflicts_with = "gpg")]
    key: Option<PathBuf>,
    /// Sign with this GPG key through `gpg` instead (feed id = its fingerprint).
    #[arg(long, value_name = "KEYID")]
    gpg: Option<String>,
    /// Append every line of FILE (or stdin for `-`) as one message each, with one ref update.
    #[arg(long, value_name = "FILE")]
    batch: Option<PathBuf>,
    /// With --batch: messages are separated by NUL bytes instead of newlines.
    #[arg(short = 'z', long = "null", requires = "batch")]
    null: bool,
    /// Fail instead of retrying when another appender moves the feed first.
    #[arg(long)]
    no_retry: bool,
    /// Author/committer date: `@UNIX [+hhmm]`, `UNIX [+hhmm]` or RFC 3339 [default: now].
    #[arg(long, env = "TIG_DATE", value_name = "DATE")]
    date: Option<String>,
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Id { command } => run_id(command),
        Command::Feed { chdir, command } => {
            // -C names the store; every other path on the command line (keys,
            // files, sources) stays relative to where the user typed it
            let dir = chdir.unwrap_or_else(|| PathBuf::from("."));
            if !dir.is_dir() {
                bail!("cannot change to {}: not a directory", dir.display());
            }
            match command {
                FeedCommand::Sync(c) => crate::feed_sync::run(c, &dir),
                other => run_feed(other, &dir),
            }
        }
    }
}

fn default_key() -> anyhow::Result<PathBuf> {
    if let Some(k) = std::env::var_os("TIG_KEY").filter(|k| !k.is_empty()) {
        return Ok(PathBuf::from(k));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .context("no key given: pass --key, or set TIG_KEY or HOME")?;
    Ok(tig_feed::store::default_key_path(Path::new(&home)))
}

fn run_id(cmd: IdCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        IdCommand::New { out } => {
            let path = match out {
                Some(p) => p,
                None => default_key()?,
            };
            let id = Identity::generate();
            let pub_path = id.write(&path)?;
            // the feed id on stdout is the result; where the key went is a debug detail
            tracing::debug!(key = %path.display(), public = %pub_path.display(), "wrote key pair");
            outln!("{}", id.feed_id())?;
        }
        IdCommand::Show { key } => {
            let path = match key {
                Some(p) => p,
                None => default_key()?,
            };
            outln!("{}", identity::read_feed_id(&path)?)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn open_store(dir: &Path) -> anyhow::Result<FeedStore> {
    Ok(FeedStore::discover(dir)?)
}

fn run_feed(cmd: FeedCommand, dir: &Path) -> anyhow::Result<ExitCode> {
    match cmd {
        FeedCommand::Init { dir: target } => {
            let target = target.unwrap_or_else(|| dir.to_path_buf());
            let store = FeedStore::init(&target)?;
            outln!("{}", store.path().display())?;
        }
        FeedCommand::Append(args) => return append(args, dir),
        FeedCommand::Log {
            feed,
            reverse,
            json,
        } => log(dir, feed.as_deref(), reverse, json)?,
        FeedCommand::Verify { feeds, strict } => return verify(dir, &feeds, strict),
        FeedCommand::Alias {
            name,
            feed,
            force,
            delete,
        } => {
            let store = open_store(dir)?;
            if delete {
                let id = store.remove_alias(&name)?;
                outln!("removed alias {name} (feed {id} kept)")?;
            } else {
                let feed = feed.context("give the feed the alias points at")?;
                let id = store.resolve(&feed)?;
                store.alias(&name, &id, force)?;
                outln!("refs/heads/{name} -> {}", id.ref_name())?;
            }
        }
        FeedCommand::List { json } => list(dir, json)?,
        FeedCommand::AllowedSigners => {
            let store = open_store(dir)?;
            out!("{}", store.allowed_signers()?)?;
        }
        FeedCommand::Sync(c) => return crate::feed_sync::run(c, dir),
    }
    Ok(ExitCode::SUCCESS)
}

/// Parses `--date`: `@UNIX [+hhmm]`, `UNIX [+hhmm]` (git's internal format) or RFC 3339.
fn parse_date(s: &str) -> anyhow::Result<Time> {
    let t = s.trim();
    let mut parts = t.trim_start_matches('@').split_whitespace();
    if let Some(first) = parts.next()
        && let Ok(seconds) = first.parse::<i64>()
    {
        let offset_minutes = match parts.next() {
            None => 0,
            Some(tz) => {
                let (sign, digits) = match tz.as_bytes().first() {
                    Some(b'-') => (-1, &tz[1..]),
                    Some(b'+') => (1, &tz[1..]),
                    _ => (1, tz),
                };
                let n: i32 = match digits.parse() {
                    Ok(n) if digits.len() == 4 => n,
                    _ => bail!("bad time zone {tz:?} in date {s:?} (expected +hhmm)"),
                };
                sign * ((n / 100) * 60 + n % 100)
            }
        };
        return Ok(Time {
            seconds,
            offset_minutes,
        });
    }
    let when = humantime::parse_rfc3339_weak(t)
        .with_context(|| format!("bad date {s:?} (expected @UNIX, UNIX +hhmm or RFC 3339)"))?;
    let seconds = when
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .context("dates before 1970 are not supported")?;
    Ok(Time {
        seconds,
        offset_minutes: 0,
    })
}

fn read_input(path: &Path) -> anyhow::Result<Vec<u8>> {
    let mut buf = Vec::new();
    if path == Path::new("-") {
        std::io::stdin()
            .lock()
            .read_to_end(&mut buf)
            .context("read stdin")?;
    } else {
        buf = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    }
    Ok(buf)
}

fn append(args: AppendArgs, dir: &Path) -> anyhow::Result<ExitCode> {
    let store = open_store(dir)?;
    let signer = match &args.gpg {
        Some(key) => store.gpg_signer(key)?,
        None => {
            let path = match &args.key {
                Some(p) => p.clone(),
                None => default_key()?,
            };
            let id = Identity::load(&path).map_err(|e| {
                if e.is_not_found() {
                    anyhow::anyhow!("{e} (create one with `tig id new`, or pass --key)")
                } else {
                    e.into()
                }
            })?;
            Signer::Ssh(Box::new(id))
        }
    };
    let opts = AppendOptions {
        time: args.date.as_deref().map(parse_date).transpose()?,
        retries: if args.no_retry { 0 } else { 1000 },
    };
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    if let Some(batch) = &args.batch {
        let input = read_input(batch)?;
        let sep = if args.null { b'\0' } else { b'\n' };
        let mut messages: Vec<&[u8]> = input.split(|&b| b == sep).collect();
        // a final separator ends the last message; it does not start an empty one
        if messages.last().is_some_and(|m| m.is_empty()) {
            messages.pop();
        }
        let ids = store.append_batch(&signer, &messages, &opts)?;
        for id in ids {
            writeln!(out, "{id}")?;
        }
    } else {
        let content = match args.content.as_deref() {
            Some("-") => read_input(Path::new("-"))?,
            Some(c) => c.as_bytes().to_vec(),
            None => bail!("give the content, `-` for stdin, or --batch FILE"),
        };
        let id = store.append(&signer, &content, &opts)?;
        writeln!(out, "{id}")?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn rfc3339(t: &Time) -> String {
    let secs = u64::try_from(t.seconds).unwrap_or(0);
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .to_string()
}

/// The feed a command names, or the store's only feed when it names none.
pub(crate) fn feed_or_only(store: &FeedStore, feed: Option<&str>) -> anyhow::Result<FeedId> {
    if let Some(f) = feed {
        return Ok(store.resolve(f)?);
    }
    let feeds = store.feeds()?;
    match feeds.as_slice() {
        [only] => Ok(only.clone()),
        [] => bail!("this store has no feeds"),
        many => bail!(
            "this store has {} feeds; name one (`tig feed list` shows them)",
            many.len()
        ),
    }
}

fn log(dir: &Path, feed: Option<&str>, reverse: bool, json: bool) -> anyhow::Result<()> {
    let store = open_store(dir)?;
    let id = feed_or_only(&store, feed)?;
    let mut messages = store.messages(&id)?;
    let states = if json {
        let ids: Vec<_> = messages.iter().map(|m| m.id).collect();
        check_commits(&store, &id, &ids)?
    } else {
        Vec::new()
    };
    let mut order: Vec<usize> = (0..messages.len()).collect();
    if !reverse {
        order.reverse();
    }
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    if json {
        writeln!(out, "[")?;
        for (n, &i) in order.iter().enumerate() {
            let m = &mut messages[i];
            let check = &states[i];
            let v = serde_json::json!({
                "seq": m.seq,
                "commit": m.id.to_string(),
                "author": m.author,
                "timestamp": m.time.map(|t| t.seconds),
                "tz_offset_minutes": m.time.map(|t| t.offset_minutes),
                "time": m.time.as_ref().map(rfc3339),
                "content": m.content_str(),
                "signature": check.signature.word(),
                "valid": check.violations.is_empty(),
                "violations": check.violations,
            });
            let comma = if n + 1 < order.len() { "," } else { "" };
            writeln!(out, "{v}{comma}")?;
        }
        writeln!(out, "]")?;
    } else {
        for (n, &i) in order.iter().enumerate() {
            let m = &messages[i];
            if n > 0 {
                writeln!(out)?;
            }
            let time = m.time.as_ref().map(rfc3339).unwrap_or_else(|| "-".into());
            writeln!(out, "#{} {} {time}", m.seq, m.id)?;
            for line in m.content.split(|&b| b == b'\n') {
                if !line.is_empty() {
                    out.write_all(b"    ")?;
                    out.write_all(line)?;
                }
                out.write_all(b"\n")?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// The forks of `ids` this store can prove (≥ 2 validly signed messages with
/// the same parent), by feed.
fn proven_forks(
    store: &FeedStore,
    ids: &[FeedId],
) -> anyhow::Result<BTreeMap<String, Vec<sync::Fork>>> {
    let hex: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    let mut map: BTreeMap<String, Vec<sync::Fork>> = BTreeMap::new();
    for f in sync::find_forks(store, &hex)? {
        if f.is_proof() {
            map.entry(f.feed.clone()).or_default().push(f);
        }
    }
    Ok(map)
}

/// One line for one fork: where it happened and the conflicting messages.
fn fork_line(f: &sync::Fork) -> String {
    let valid: Vec<&str> = f
        .messages
        .iter()
        .filter(|m| m.valid)
        .map(|m| m.commit.as_str())
        .collect();
    match &f.fork_point {
        Some(p) => format!(
            "{}: FORK after message #{} ({}): {} different signed messages: {}",
            f.feed,
            p.sequence,
            p.commit,
            valid.len(),
            valid.join(", ")
        ),
        None => format!(
            "{}: FORK: {} different signed first messages: {}",
            f.feed,
            valid.len(),
            valid.join(", ")
        ),
    }
}

fn verify(dir: &Path, feeds: &[String], strict: bool) -> anyhow::Result<ExitCode> {
    let store = open_store(dir)?;
    let ids: Vec<FeedId> = if feeds.is_empty() {
        store.feeds()?
    } else {
        feeds
            .iter()
            .map(|f| store.resolve(f))
            .collect::<Result<_, _>>()?
    };
    if ids.is_empty() {
        eprintln!("tig: no feeds in this store");
        return Ok(ExitCode::SUCCESS);
    }
    let forks = proven_forks(&store, &ids)?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut bad_feeds = 0;
    let mut total = 0;
    for id in &ids {
        let violations = verify_feed(&store, id)?;
        let feed_forks = forks.get(&id.to_string());
        if violations.is_empty() {
            let count = store
                .tip(id)?
                .map_or(Ok(0), |t| store.commits_from(t).map(|c| c.len()))?;
            let word = if feed_forks.is_some() { "forked" } else { "ok" };
            writeln!(out, "{id}: {word} ({count} messages)")?;
        } else {
            bad_feeds += 1;
            total += violations.len();
            for v in violations {
                writeln!(out, "{v}")?;
            }
        }
        for f in feed_forks.into_iter().flatten() {
            writeln!(out, "{}", fork_line(f))?;
        }
    }
    out.flush()?;
    if bad_feeds > 0 {
        eprintln!(
            "tig: {total} violation(s) in {bad_feeds} of {} feed(s)",
            ids.len()
        );
        return Ok(ExitCode::FAILURE);
    }
    if strict && !forks.is_empty() {
        eprintln!(
            "tig: {} forked feed(s) (--strict); `tig feed forks --export FILE` writes the proof",
            forks.len()
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn list(dir: &Path, json: bool) -> anyhow::Result<()> {
    let store = open_store(dir)?;
    let aliases = store.aliases()?;
    let ids = store.feeds()?;
    let forks = proven_forks(&store, &ids)?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut rows = Vec::new();
    for id in ids {
        let tip = store.tip(&id)?;
        let count = match tip {
            Some(t) => store.commits_from(t)?.len(),
            None => 0,
        };
        let violations = verify_feed(&store, &id)?;
        let names: Vec<&str> = aliases
            .iter()
            .filter(|(_, f)| *f == id)
            .map(|(a, _)| a.as_str())
            .collect();
        let fork_count = forks.get(&id.to_string()).map_or(0, Vec::len);
        let status = if !violations.is_empty() {
            "INVALID"
        } else if fork_count > 0 {
            "forked"
        } else {
            "ok"
        };
        rows.push(serde_json::json!({
            "feed": id.to_string(),
            "kind": id.kind(),
            "messages": count,
            "tip": tip.map(|t| t.to_string()),
            "aliases": names,
            "verified": violations.is_empty(),
            "violations": violations.len(),
            "forked": fork_count > 0,
            "forks": fork_count,
            "status": status,
        }));
    }
    if json {
        writeln!(out, "{}", serde_json::Value::Array(rows))?;
    } else {
        let width = rows
            .iter()
            .map(|r| r["feed"].as_str().map_or(0, str::len))
            .max()
            .unwrap_or(64);
        writeln!(
            out,
            "{:<width$}  {:>8}  {:<40}  {:<7}  ALIASES",
            "FEED", "MESSAGES", "TIP", "STATUS"
        )?;
        for r in &rows {
            let aliases: Vec<&str> = r["aliases"]
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
                .unwrap_or_default();
            writeln!(
                out,
                "{:<width$}  {:>8}  {:<40}  {:<7}  {}",
                r["feed"].as_str().unwrap_or_default(),
                r["messages"].as_u64().unwrap_or(0),
                r["tip"].as_str().unwrap_or("-"),
                r["status"].as_str().unwrap_or_default(),
                if aliases.is_empty() {
                    "-".to_string()
                } else {
                    aliases.join(",")
                },
            )?;
        }
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(parse_date("@1700000000").unwrap().seconds, 1_700_000_000);
        let t = parse_date("1700000000 -0130").unwrap();
        assert_eq!((t.seconds, t.offset_minutes), (1_700_000_000, -90));
        assert_eq!(
            parse_date("2024-01-01T00:00:00Z").unwrap().seconds,
            1_704_067_200
        );
        assert!(parse_date("yesterday").is_err());
        assert!(parse_date("17 +1").is_err());
    }
}
