//! `tig feed push/pull tig+http://HOST:PORT/NAME`: the relay's flags, printing
//! and exit codes. The protocol and its orchestration are
//! `tig_feed::sync::relay` (`docs/feed-relay.md`); the HTTP transport is
//! `tig_feed_http`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use tig_client::{Client, Config};
use tig_feed::sync::PullReport;
use tig_feed::sync::relay::{self, RelayPullOptions};
use tig_feed_http::{HttpTransport, RelayUrl};

use crate::feed_report::{open, print_json, print_pull_report, resolve_all, short_id};

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

/// The channel `url` over HTTP, with a client from the relay flags (and their
/// environment variables).
fn connect(url: &RelayUrl, args: &RelayArgs) -> anyhow::Result<HttpTransport> {
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
    Ok(HttpTransport::new(Client::new(cfg)?, url.clone()))
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
    let url = RelayUrl::parse(source)?;
    limit_open_packs();
    let store = open(dir)?;
    let feeds = resolve_all(&store, &feeds)?;
    let name = name.unwrap_or_else(|| url.channel.clone());
    if !relay::valid_source_name(&name) {
        bail!(
            "bad --as name {name:?}: it must work as a git remote name (no '/', no leading '.', no '..', not ending in '.' or '.lock')"
        );
    }
    let opts = RelayPullOptions {
        name,
        feeds,
        max_bundle: args.max_bundle()?,
    };
    let transport = connect(&url, args)?;
    match relay::pull(&store, &transport, &opts)? {
        Some(report) => print_pull_report(&report, strict, json),
        None if json => {
            print_json(&PullReport {
                source: url.to_string(),
                name: opts.name,
                feeds: Vec::new(),
            })?;
            Ok(ExitCode::SUCCESS)
        }
        None => {
            outln!("{url}: the channel is empty; nothing to pull")?;
            Ok(ExitCode::SUCCESS)
        }
    }
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
    let url = RelayUrl::parse(dest)?;
    if name.is_some() {
        bail!("--as has no meaning when pushing to a relay ({url}): the channel is the name");
    }
    let store = open(dir)?;
    let selected = if feeds.is_empty() {
        store.feeds()?
    } else {
        resolve_all(&store, &feeds)?
    };
    if selected.is_empty() {
        bail!("no feeds to publish in {}", dir.display());
    }

    let transport = connect(&url, args)?;
    let summary = relay::push(&store, &transport, &selected, |line| {
        if !json {
            eprintln!(
                "tig: {url}: the relay no longer has bundle {} (line {}); publishing a full bundle",
                line.target(),
                line.number
            );
        }
    })?;
    if json {
        print_json(&summary)?;
        return Ok(ExitCode::SUCCESS);
    }
    let Some(target) = &summary.target else {
        outln!(
            "{url}: the relay has every message of {} feed(s); nothing to push",
            summary.up_to_date.len()
        )?;
        return Ok(ExitCode::SUCCESS);
    };
    for f in &summary.feeds {
        match &f.since {
            Some(b) => outln!("{}: {}..{}", f.feed, short_id(b), short_id(&f.tip))?,
            None => outln!("{}: published up to {}", f.feed, short_id(&f.tip))?,
        }
    }
    for f in &summary.up_to_date {
        outln!("{f}: up to date on the relay")?;
    }
    outln!(
        "{url}: {} bundle {target}, {} message(s), {} bytes{}",
        summary.kind,
        summary.messages,
        summary.bytes,
        if summary.burst {
            format!(" in {} chunks", summary.chunks)
        } else {
            String::new()
        }
    )?;
    Ok(ExitCode::SUCCESS)
}
