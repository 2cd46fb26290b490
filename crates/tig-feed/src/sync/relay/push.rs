//! A relay push: plan what the channel lacks, store one bundle, append its line.

use std::collections::{BTreeMap, BTreeSet};

use git2::Oid;

use super::error::RelayError;
use super::pull::{reaches, read_list};
use super::transport::Transport;
use super::{Kind, Line, PushPlan, chain, plan_push};
use crate::sync;
use crate::{FeedId, FeedStore};

/// One feed a push sent.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PushedFeed {
    /// The feed.
    pub feed: FeedId,
    /// The tip sent.
    #[serde(serialize_with = "crate::sync::oid_serde::oid")]
    pub tip: Oid,
    /// The relay's commit the bundle starts after, if incremental for this feed.
    #[serde(serialize_with = "crate::sync::oid_serde::opt_oid")]
    pub since: Option<Oid>,
}

/// What a relay push did (the `--json` output).
#[derive(Debug, Clone, serde::Serialize)]
pub struct PushSummary {
    /// The channel (`tig+http://HOST:PORT/NAME`).
    pub relay: String,
    /// The channel's name.
    pub channel: String,
    /// `full`, `incr`, or `none` when nothing was sent.
    pub kind: String,
    /// The bundle's object path, when one was sent.
    pub target: Option<String>,
    /// The bundle's size.
    pub bytes: u64,
    /// Messages in the bundle.
    pub messages: usize,
    /// Feeds sent.
    pub feeds: Vec<PushedFeed>,
    /// Feeds the relay already had.
    pub up_to_date: Vec<FeedId>,
    /// Whether the bundle was stored as a burst list of chunks.
    #[serde(skip)]
    pub burst: bool,
    /// How many chunks (when `burst`).
    #[serde(skip)]
    pub chunks: u64,
}

/// Pushes `feeds` of `store` onto the channel `t`.
///
/// `lost` hears about a bundle of the channel the relay no longer holds
/// whole: the push then publishes a full bundle.
pub fn push<T: Transport + ?Sized>(
    store: &FeedStore,
    t: &T,
    feeds: &[FeedId],
    mut lost: impl FnMut(&Line),
) -> Result<PushSummary, RelayError> {
    let mut ours: BTreeMap<FeedId, Oid> = BTreeMap::new();
    for id in feeds {
        let tip = store
            .tip(id)?
            .ok_or_else(|| RelayError::NoMessages(id.clone()))?;
        ours.insert(id.clone(), tip);
    }

    let lines = read_list(t)?.unwrap_or_default();
    let mut relay = chain(&lines);
    let mut kind = if relay.is_empty() {
        Kind::Full
    } else {
        Kind::Incr
    };
    let mut checked = BTreeSet::new();
    for line in relay {
        if checked.insert(line.target()) && !t.has_bundle(line)? {
            tracing::debug!(target = %line.target(), line = line.number, "relay lost a bundle; publishing a full one");
            lost(line);
            kind = Kind::Full;
            relay = &[];
            break;
        }
    }

    let PushPlan {
        send,
        since,
        up_to_date,
    } = plan_push(&ours, relay, |tip, base| reaches(store, tip, base));
    let mut summary = PushSummary {
        relay: t.location(),
        channel: t.channel().to_string(),
        kind: "none".into(),
        target: None,
        bytes: 0,
        messages: 0,
        feeds: Vec::new(),
        up_to_date,
        burst: false,
        chunks: 0,
    };
    if send.is_empty() {
        return Ok(summary);
    }

    let tmp = super::bundle_temp(store)?;
    let bundle = sync::create_bundle(store.repo(), tmp.path(), &send, &since)?;
    let put = t
        .put_bundle(tmp.path())
        .map_err(|source| RelayError::Upload {
            channel: t.location(),
            source,
        })?;
    let line = Line {
        number: 0,
        kind,
        id: put.id,
        burst: put.burst,
        tips: send.iter().map(|(f, t)| (f.clone(), *t)).collect(),
    };
    t.append_line(&line.render())
        .map_err(|source| RelayError::Append {
            channel: t.location(),
            source,
        })?;
    drop(tmp);

    summary.kind = kind.as_str().into();
    summary.target = Some(line.target());
    summary.bytes = bundle.bytes;
    summary.messages = bundle.commits;
    summary.burst = put.burst;
    summary.chunks = put.chunks;
    summary.feeds = send
        .iter()
        .map(|(f, t)| PushedFeed {
            feed: f.clone(),
            tip: *t,
            since: since.get(f).copied(),
        })
        .collect();
    Ok(summary)
}
