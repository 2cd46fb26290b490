//! `tig id …` and `tig feed …`: identities and signed logs over git.
//!
//! Thin glue over `tig-feed`: parse arguments, read the environment (`TIG_KEY`,
//! `HOME`, `TIG_DATE`), print results. `tig feed -C DIR` names the store every
//! feed command (sync ones included) works on; other paths the user gives stay
//! relative to where they typed them. Reading commands (`log`, `verify`,
//! `list`) are in `feed_show`, replication in `feed_sync` and `feed_relay`.

use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use tig_feed::{AppendOptions, FeedStore, Identity, Signer, Time, identity};

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

pub(crate) fn open_store(dir: &Path) -> anyhow::Result<FeedStore> {
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
        } => crate::feed_show::log(dir, feed.as_deref(), reverse, json)?,
        FeedCommand::Verify { feeds, strict } => {
            return crate::feed_show::verify(dir, &feeds, strict);
        }
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
        FeedCommand::List { json } => crate::feed_show::list(dir, json)?,
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
