//! `tig feed log/verify/list`: reading feeds and saying what state they are in
//! (ok, forked, INVALID), for people (text) and scripts (JSON).

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::bail;
use tig_feed::sync;
use tig_feed::{FeedId, FeedStore, Time, check_commits, verify_feed};

use crate::feed::open_store;

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

pub(crate) fn log(dir: &Path, feed: Option<&str>, reverse: bool, json: bool) -> anyhow::Result<()> {
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
) -> anyhow::Result<BTreeMap<FeedId, Vec<sync::Fork>>> {
    let mut map: BTreeMap<FeedId, Vec<sync::Fork>> = BTreeMap::new();
    for f in sync::find_forks(store, ids)? {
        if f.is_proof() {
            map.entry(f.feed.clone()).or_default().push(f);
        }
    }
    Ok(map)
}

/// One line for one fork: where it happened and the conflicting messages.
fn fork_line(f: &sync::Fork) -> String {
    let valid: Vec<String> = f
        .messages
        .iter()
        .filter(|m| m.valid)
        .map(|m| m.commit.to_string())
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

pub(crate) fn verify(dir: &Path, feeds: &[String], strict: bool) -> anyhow::Result<ExitCode> {
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
        let feed_forks = forks.get(id);
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

pub(crate) fn list(dir: &Path, json: bool) -> anyhow::Result<()> {
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
        let fork_count = forks.get(&id).map_or(0, Vec::len);
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
