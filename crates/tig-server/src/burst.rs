//! Bursts across a cluster: a burst list or members that this instance lacks
//! are fetched from the peers, in order, streamed, each checked by its hash on
//! the way through (see [`crate::cluster`]): the relaying instance passes on
//! only bytes it can vouch for. A request that was itself forwarded never asks
//! the peers again.

use std::io;
use std::sync::Arc;

use futures_util::StreamExt;
use tig_core::ObjectId;
use tig_store::{BodyStream, Store};

use crate::AppState;
use crate::error::ApiError;

/// Members checked (here, or on the peers) concurrently before the 200.
const CHECKS: usize = 16;

/// Where a member's bytes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// This instance's store.
    Local,
    /// A peer (fetched and verified when its turn comes).
    Peer,
}

/// Fetches the burst list `id` from the peers (verified like any forwarded
/// content), reading at most `limit` bytes. `None` if no peer has it (or the
/// request was forwarded, or there are no peers).
pub async fn remote_list<S: Store>(
    state: &AppState<S>,
    forwarded: bool,
    id: ObjectId,
    limit: u64,
) -> Result<Option<bytes::Bytes>, ApiError> {
    if forwarded || !state.cluster.enabled() {
        return Ok(None);
    }
    let Some(mut body) = state.cluster.fetch_member(id).await else {
        return Ok(None);
    };
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::Internal(format!("burst list from a peer: {e}")))?;
        if (out.len() + chunk.len()) as u64 > limit {
            return Err(ApiError::TooLarge(limit));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Some(out.into()))
}

/// Finds every member before the reply starts: here, else (unless forwarded)
/// on a peer. A member found nowhere is the usual 404 naming it.
pub async fn plan<S: Store>(
    state: &AppState<S>,
    members: &[ObjectId],
    touch: bool,
    forwarded: bool,
) -> Result<Vec<(ObjectId, Source)>, ApiError> {
    // Each check is a hop to the blocking pool: a few at a time, in order.
    let here: Vec<Result<bool, ApiError>> = futures_util::stream::iter(members.iter().copied())
        .map(|m| {
            let store = state.store.clone();
            async move { Ok(store.stat(m, touch).await?.is_some()) }
        })
        .buffered(CHECKS)
        .collect()
        .await;
    let mut out = Vec::with_capacity(members.len());
    let mut missing = Vec::new();
    for (i, (m, local)) in members.iter().zip(here).enumerate() {
        if local? {
            out.push((*m, Source::Local));
        } else {
            missing.push(i);
            out.push((*m, Source::Peer));
        }
    }
    if missing.is_empty() {
        return Ok(out);
    }
    let gone = |m: ObjectId| ApiError::NotFound(format!("burst member missing: {}", m.path()));
    if forwarded || !state.cluster.enabled() {
        return Err(gone(out[missing[0]].0));
    }
    let cluster = &state.cluster;
    let found: Vec<(usize, bool)> = futures_util::stream::iter(missing)
        .map(|i| {
            let m = out[i].0;
            async move { (i, cluster.locate(m).await.is_some()) }
        })
        .buffered(CHECKS)
        .collect()
        .await;
    if let Some((i, _)) = found.iter().find(|(_, ok)| !ok) {
        return Err(gone(out[*i].0));
    }
    Ok(out)
}

/// The members' bytes, in order: local ones from the store, the others fetched
/// from a peer and verified as they pass. A member that vanished, or a peer
/// that lies, ends the body with an error (the connection is aborted).
pub fn stream<S: Store>(state: &AppState<S>, plan: Vec<(ObjectId, Source)>) -> BodyStream {
    let store = state.store.clone();
    let cluster = Arc::clone(&state.cluster);
    Box::pin(
        futures_util::stream::iter(plan)
            .then(move |(m, source)| {
                let store = store.clone();
                let cluster = cluster.clone();
                async move {
                    match source {
                        Source::Local => match store.get(m, false).await {
                            Ok(Some(obj)) => obj.body.into_stream(),
                            Ok(None) => {
                                error_stream(format!("burst member vanished: {}", m.path()))
                            }
                            Err(e) => error_stream(e.to_string()),
                        },
                        Source::Peer => match cluster.fetch_member(m).await {
                            Some(s) => s,
                            None => error_stream(format!(
                                "burst member vanished from the peers: {}",
                                m.path()
                            )),
                        },
                    }
                }
            })
            .flatten(),
    )
}

fn error_stream(msg: String) -> BodyStream {
    tracing::warn!(%msg, "aborting a burst");
    Box::pin(futures_util::stream::iter([Err(io::Error::other(msg))]))
}
