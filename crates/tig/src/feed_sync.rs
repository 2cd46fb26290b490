//! `tig feed pull/push/bundle/forks/graph/delete/verify-proof`: replication and forks.
//!
//! Thin glue over [`tig_feed::sync`]: parse arguments, open the store (the
//! current directory; `tig feed -C DIR` changes to it first), call the library,
//! print a human report (or JSON) and pick the exit code.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use tig_feed::sync::{self, PushOutcome};

use crate::feed_report::{open, print_json, print_pull_report, resolve, resolve_all, short_id};
use tig_feed::FeedId;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Fetch feeds from another store (path), a git remote URL, a bundle file, or a
    /// tig server relay channel; validate every new message, then fast-forward
    /// (forks are kept and reported).
    Pull {
        /// Another store's path, a git URL (file://, ssh://, https://…), a bundle file,
        /// or a relay channel tig+http(s)://HOST:PORT/NAME (see docs/feed-relay.md).
        source: String,
        /// Feeds to pull (ids); default: every feed the source has.
        feeds: Vec<String>,
        /// Name under refs/remotes/ for this source (default: from the path/URL).
        #[arg(long = "as", value_name = "NAME")]
        name: Option<String>,
        /// Exit non-zero when a received tip forks from one this store holds.
        #[arg(long)]
        strict: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        relay: crate::feed_relay::RelayArgs,
    },
    /// Send feeds to another store (path or git URL), never overwriting a feed
    /// there unless it fast-forwards; or publish them on a tig server relay channel.
    Push {
        /// Another store's path, a git URL, or a relay channel
        /// tig+http(s)://HOST:PORT/NAME (see the relay options below).
        dest: String,
        /// Feeds to push (ids or aliases); default: every feed in this store.
        feeds: Vec<String>,
        /// Name under refs/remotes/ recording what the destination has.
        #[arg(long = "as", value_name = "NAME")]
        name: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        relay: crate::feed_relay::RelayArgs,
    },
    /// Git bundles of feeds, for replication without a connection.
    Bundle {
        #[command(subcommand)]
        command: BundleCommand,
    },
    /// Find forks: two validly signed messages of one feed with the same parent.
    /// Exit status 1 when there is at least one fork, 0 when there is none, 2 when
    /// the check itself failed (like grep), so scripts can tell them apart.
    Forks {
        /// Feeds to check (ids or aliases); default: every feed.
        feeds: Vec<String>,
        /// Print the forks as JSON.
        #[arg(long)]
        json: bool,
        /// Write the proof (the conflicting signed messages) as a bundle.
        #[arg(long, value_name = "FILE")]
        export: Option<PathBuf>,
    },
    /// Check a fork proof bundle on its own: two different messages signed by
    /// the same feed key with the same parent.
    VerifyProof {
        /// The proof bundle written by `tig feed forks --export`.
        file: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the branches of a feed (every tip the store holds) as a graph.
    Graph {
        /// The feed (id or alias) [default: the store's only feed].
        feed: Option<String>,
        /// Graphviz DOT instead of text.
        #[arg(long)]
        dot: bool,
        /// Do not shorten long runs of messages.
        #[arg(long)]
        full: bool,
    },
    /// Delete a feed from the store: refs, aliases, reflogs and all its messages.
    /// Takes a feed id only (an alias is refused: `tig feed alias --delete NAME`
    /// removes just an alias); asks for confirmation on a terminal unless --yes.
    Delete {
        /// The feed id (64 hex, or a 40-hex GPG fingerprint).
        feed: String,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum BundleCommand {
    /// Write a bundle (`git bundle verify` accepts it) of feeds.
    Create {
        /// The bundle file to write.
        file: PathBuf,
        /// Feeds to include (ids or aliases); default: every feed.
        feeds: Vec<String>,
        /// Only messages after COMMIT for FEED (the receiver already has COMMIT).
        #[arg(long, value_name = "FEED=COMMIT")]
        since: Vec<String>,
        /// Only what STORE lacks, as recorded in refs/remotes/STORE/* (a name or the path pulled from/pushed to).
        #[arg(long = "for", value_name = "STORE")]
        for_store: Option<String>,
        /// Print a summary as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: Command, dir: &Path) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Pull {
            source,
            feeds,
            name,
            strict,
            json,
            relay,
        } => match sync::Source::parse(&source)? {
            sync::Source::Relay(url) => {
                crate::feed_relay::pull(dir, &url, feeds, name, strict, json, &relay)
            }
            _ => pull(dir, &source, feeds, name, strict, json),
        },
        Command::Push {
            dest,
            feeds,
            name,
            json,
            relay,
        } if matches!(sync::Source::parse(&dest), Ok(sync::Source::Relay(_))) => {
            crate::feed_relay::push(dir, &dest, feeds, name, json, &relay)
        }
        Command::Push {
            dest,
            feeds,
            name,
            json,
            relay: _,
        } => push(dir, &dest, feeds, name, json),
        Command::Bundle {
            command:
                BundleCommand::Create {
                    file,
                    feeds,
                    since,
                    for_store,
                    json,
                },
        } => bundle_create(dir, &file, feeds, since, for_store, json),
        Command::Forks {
            feeds,
            json,
            export,
        } => forks(dir, feeds, json, export).or_else(|err| {
            eprintln!("tig: {err:#}");
            Ok(ExitCode::from(2))
        }),
        Command::VerifyProof { file, json } => verify_proof(&file, json),
        Command::Graph { feed, dot, full } => graph(dir, feed.as_deref(), dot, full),
        Command::Delete { feed, yes } => delete(dir, &feed, yes),
    }
}

fn pull(
    dir: &Path,
    source: &str,
    feeds: Vec<String>,
    name: Option<String>,
    strict: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let store = open(dir)?;
    let feeds = resolve_all(&store, &feeds)?;
    let report = sync::pull(&store, source, &sync::PullOptions { name, feeds })
        .with_context(|| format!("pull from {source}"))?;
    print_pull_report(&report, strict, json)
}

fn push(
    dir: &Path,
    dest: &str,
    feeds: Vec<String>,
    name: Option<String>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let store = open(dir)?;
    let feeds = resolve_all(&store, &feeds)?;
    let report = sync::push(&store, dest, &sync::PushOptions { name, feeds })
        .with_context(|| format!("push to {dest}"))?;
    let mut refused = false;
    if json {
        print_json(&report)?;
    }
    for (feed, tip, outcome) in &report.feeds {
        match outcome {
            PushOutcome::Refused { reason } => {
                refused = true;
                eprintln!("tig: {feed}: not pushed: {reason}");
            }
            _ if json => {}
            PushOutcome::Created => outln!("{feed}: new at destination ({})", short_id(tip))?,
            PushOutcome::FastForward { from } => {
                outln!("{feed}: {}..{}", short_id(from), short_id(tip))?
            }
            PushOutcome::UpToDate => outln!("{feed}: up to date")?,
            PushOutcome::RemoteAhead => {
                outln!("{feed}: destination is ahead (pull to get its messages)")?
            }
        }
    }
    Ok(if refused {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn bundle_create(
    dir: &Path,
    file: &Path,
    feeds: Vec<String>,
    since: Vec<String>,
    for_store: Option<String>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let store = open(dir)?;
    let repo = store.repo();
    let mut tips = BTreeMap::new();
    if feeds.is_empty() {
        for r in repo.references_glob("refs/heads/*")? {
            let r = r?;
            if r.symbolic_target().ok().flatten().is_some() {
                continue;
            }
            let Ok(name) = r.name() else { continue };
            let id = name.trim_start_matches("refs/heads/");
            if let Ok(fid) = FeedId::parse(id)
                && let Ok(c) = r.peel_to_commit()
            {
                tips.insert(fid, c.id());
            }
        }
        if tips.is_empty() {
            bail!("no feeds in {}", dir.display());
        }
    } else {
        for f in &feeds {
            let id = resolve(&store, f)?;
            let oid = repo
                .refname_to_id(&id.ref_name())
                .with_context(|| format!("feed {id} is not in this store"))?;
            tips.insert(id, oid);
        }
    }
    let mut base = BTreeMap::new();
    if let Some(other) = &for_store {
        let name = if repo
            .references_glob(&format!("refs/remotes/{other}/*"))?
            .next()
            .is_some()
        {
            other.clone()
        } else {
            sync::source_name(other)
        };
        if repo
            .references_glob(&format!("refs/remotes/{name}/*"))?
            .next()
            .is_none()
        {
            // a typo must not silently become a full bundle
            let mut known = BTreeSet::new();
            for r in repo.references_glob("refs/remotes/*")? {
                if let Some((source, _)) = r?
                    .name()
                    .ok()
                    .and_then(|n| n.strip_prefix("refs/remotes/"))
                    .and_then(|n| n.split_once('/'))
                {
                    known.insert(source.to_string());
                }
            }
            let known: Vec<String> = known.into_iter().collect();
            bail!(
                "--for {other}: this store never pulled from or pushed to {name:?} (no refs/remotes/{name}/); {}",
                if known.is_empty() {
                    "it knows no other store yet (leave out --for for a full bundle)".to_string()
                } else {
                    format!("it knows: {}", known.join(", "))
                }
            );
        }
        for feed in tips.keys() {
            if let Ok(oid) = repo.refname_to_id(&format!("refs/remotes/{name}/{feed}"))
                && (repo.graph_descendant_of(tips[feed], oid)? || tips[feed] == oid)
            {
                base.insert(feed.clone(), oid);
            }
        }
    }
    for s in &since {
        let (f, c) = s
            .split_once('=')
            .with_context(|| format!("--since {s}: expected FEED=COMMIT"))?;
        let id = resolve(&store, f)?;
        if !tips.contains_key(&id) {
            bail!("--since {s}: feed {id} is not in the bundle");
        }
        let oid = repo
            .revparse_single(c)
            .and_then(|o| o.peel_to_commit())
            .map(|c| c.id())
            .with_context(|| format!("--since {s}: no such commit in this store"))?;
        base.insert(id, oid);
    }
    let summary = sync::create_bundle(repo, file, &tips, &base)?;
    if json {
        print_json(&summary)?;
    } else {
        outln!(
            "{}: {} feed(s), {} message(s), {} bytes{}",
            file.display(),
            summary.feeds.len(),
            summary.commits,
            summary.bytes,
            if summary.prerequisites.is_empty() {
                String::new()
            } else {
                format!(
                    " (incremental: needs {} known commit(s))",
                    summary.prerequisites.len()
                )
            }
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn forks(
    dir: &Path,
    feeds: Vec<String>,
    json: bool,
    export: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let store = open(dir)?;
    let feeds = resolve_all(&store, &feeds)?;
    let found = sync::find_forks(&store, &feeds)?;
    if json {
        print_json(&found)?;
    } else if found.is_empty() {
        outln!("no forks")?;
    } else {
        for f in &found {
            match &f.fork_point {
                Some(p) => outln!(
                    "fork in feed {} after message #{} ({}):",
                    f.feed,
                    p.sequence,
                    p.commit
                )?,
                None => outln!("fork in feed {}: different first messages:", f.feed)?,
            }
            for m in &f.messages {
                outln!(
                    "  #{} {} signature {}  {:?}",
                    m.sequence,
                    m.commit,
                    m.signature,
                    m.content.lines().next().unwrap_or("")
                )?;
                outln!("      on {}", m.tips.join(", "))?;
            }
            if !f.is_proof() {
                outln!("  (not a proof: fewer than two validly signed messages)")?;
            }
        }
    }
    if let Some(path) = export {
        if found.is_empty() {
            eprintln!("tig: no forks, so no proof written to {}", path.display());
            return Ok(ExitCode::SUCCESS);
        }
        let s = sync::export_proof(&store, &found, &path)?;
        if !json {
            outln!(
                "proof written to {} ({} conflicting messages, {} bytes); check it with `tig feed verify-proof {}`",
                path.display(),
                s.feeds.len(),
                s.bytes,
                path.display()
            )?;
        }
    }
    Ok(if found.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn verify_proof(file: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let report = sync::verify_proof(file).with_context(|| format!("{}", file.display()))?;
    if json {
        print_json(&report)?;
    } else {
        for f in &report.forks {
            outln!(
                "proven: feed {} signed {} different messages #{} after {}",
                f.feed,
                f.messages.len(),
                f.sequence,
                f.parent.map_or_else(
                    || "nothing (two first messages)".to_string(),
                    |p| p.to_string()
                )
            )?;
            for (c, content) in &f.messages {
                outln!("  {c}  {:?}", content.lines().next().unwrap_or(""))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn graph(dir: &Path, feed: Option<&str>, dot: bool, full: bool) -> anyhow::Result<ExitCode> {
    let store = open(dir)?;
    let id = match feed {
        Some(f) => resolve(&store, f)?,
        None => crate::feed_show::feed_or_only(&store, None)?,
    };
    let text = if dot {
        sync::graph_dot(store.repo(), &id)?
    } else {
        sync::graph_text(store.repo(), &id, full)?
    };
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

fn delete(dir: &Path, feed: &str, yes: bool) -> anyhow::Result<ExitCode> {
    let store = open(dir)?;
    let fid = match FeedId::parse(feed) {
        Ok(id) => id,
        Err(_) => {
            // an alias (or a typo) never deletes a feed: say what would
            if let Ok(target) = store.resolve(feed) {
                bail!(
                    "{feed} is an alias of feed {target}; `tig feed delete` takes a feed id \
                     (`tig feed alias --delete {feed}` removes only the alias, \
                     `tig feed delete {target}` the feed and all its messages)"
                );
            }
            bail!("{feed} is not a feed id (`tig feed list` shows the feeds of this store)");
        }
    };
    if !yes && std::io::stdin().is_terminal() {
        let messages = match store.tip(&fid)? {
            Some(t) => store.commits_from(t)?.len(),
            None => 0,
        };
        eprint!(
            "Delete feed {fid} with its {messages} message(s) and every ref and alias naming it? \
             This cannot be undone. [y/N] "
        );
        std::io::stderr().flush()?;
        let mut answer = String::new();
        std::io::stdin()
            .read_line(&mut answer)
            .context("read the answer")?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
            eprintln!("tig: nothing deleted");
            return Ok(ExitCode::FAILURE);
        }
    }
    let report = sync::delete_feed(&store, &fid)?;
    outln!(
        "deleted feed {}: {} message(s), refs: {}",
        report.feed,
        report.commits,
        report.refs.join(", ")
    )?;
    Ok(ExitCode::SUCCESS)
}
