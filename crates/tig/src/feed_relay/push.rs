//! `tig feed push tig+http://HOST:PORT/NAME`: publish feeds on a relay channel.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use git2::Oid;
use tig_feed::FeedId;
use tig_feed::sync::{
    self,
    relay::{self, Kind, Line},
};

use super::http::{RelayArgs, bundle_alive, connect, parse_url, read_list};
use super::reaches;
use crate::feed_report::{open, print_json, resolve_all, short};

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
    let mut relay = relay::chain(&lines);
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

    let relay::PushPlan {
        send,
        since,
        up_to_date,
    } = relay::plan_push(&ours, relay, |tip, base| reaches(&store, tip, base));
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
