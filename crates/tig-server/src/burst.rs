//! Bursts across a cluster: a burst list or members that this instance lacks
//! are fetched from the peers, in order, streamed, each checked by its hash on
//! the way through (see [`crate::cluster`]): the relaying instance passes on
//! only bytes it can vouch for. A request that was itself forwarded never asks
//! the peers again.
//!
//! When every member is local their sizes are known before the reply starts, so
//! a `Range` is served over the concatenation ([`stream_parts`]); with members on
//! peers the range is ignored (200, the whole burst). A member that is a
//! write-only channel reads as empty, as it does alone.

use std::io;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use tig_core::ObjectId;
use tig_store::{BodyStream, ByteRange, Kind, ObjectMeta, Store, StoreError};

use crate::AppState;
use crate::error::ApiError;

/// Members checked here per store call, and on the peers concurrently, before
/// the 200.
const CHECKS: usize = 16;

/// Where a member's bytes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// This instance's store: the member's length and whether it is content.
    Local {
        /// Length in bytes.
        len: u64,
        /// Content (immutable) rather than a slot.
        content: bool,
    },
    /// A write-only channel here: it contributes no bytes.
    Empty,
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
) -> Result<Option<Bytes>, ApiError> {
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
    // CHECKS names per store call (one hop to the blocking pool on a
    // filesystem), two calls under way at a time, in order.
    let metas: Vec<Result<Option<ObjectMeta>, StoreError>> =
        futures_util::stream::iter(members.iter().copied())
            .chunks(CHECKS)
            .map(|some| {
                let store = state.store.clone();
                async move { store.stat_many(some, touch).await }
            })
            .buffered(2)
            .flat_map(futures_util::stream::iter)
            .collect()
            .await;
    if metas.len() != members.len() {
        return Err(ApiError::Internal(
            "the store answered fewer names than asked".into(),
        ));
    }
    let mut out = Vec::with_capacity(members.len());
    let mut missing = Vec::new();
    for (i, (&m, meta)) in members.iter().zip(metas).enumerate() {
        let source = match meta? {
            None => {
                missing.push(i);
                Source::Peer
            }
            Some(meta)
                if crate::channel::target_of(&*state.store, m, &meta)
                    .await?
                    .is_some() =>
            {
                Source::Empty
            }
            Some(meta) => Source::Local {
                len: meta.len,
                content: meta.kind == Kind::Content,
            },
        };
        out.push((m, source));
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
            .chunks(BATCH)
            .map(move |batch| {
                let store = store.clone();
                let cluster = cluster.clone();
                async move {
                    // The batch's local members in one store call (one hop to the
                    // blocking pool on a filesystem), its peers' concurrently.
                    let local = batch
                        .iter()
                        .filter(|(_, s)| matches!(s, Source::Local { .. }))
                        .map(|(m, _)| *m)
                        .collect();
                    let peers = batch
                        .iter()
                        .filter(|(_, s)| *s == Source::Peer)
                        .map(|(m, _)| cluster.fetch_member(*m));
                    let (local, peers) = futures_util::future::join(
                        store.get_many(local, false),
                        futures_util::future::join_all(peers),
                    )
                    .await;
                    let (mut local, mut peers) = (local.into_iter(), peers.into_iter());
                    let streams: Vec<BodyStream> = batch
                        .iter()
                        .map(|&(m, source)| match source {
                            Source::Empty => Box::pin(futures_util::stream::empty()) as BodyStream,
                            Source::Local { .. } => match local.next() {
                                Some(Ok(Some(obj))) => obj.body.into_stream(),
                                Some(Ok(None)) | None => {
                                    error_stream(format!("burst member vanished: {}", m.path()))
                                }
                                Some(Err(e)) => error_stream(e.to_string()),
                            },
                            Source::Peer => match peers.next().flatten() {
                                Some(s) => s,
                                None => error_stream(format!(
                                    "burst member vanished from the peers: {}",
                                    m.path()
                                )),
                            },
                        })
                        .collect();
                    futures_util::stream::iter(streams)
                }
            })
            // Read the next batch while this one is sent: taking them one after
            // the other left the socket idle between reads. Small members are
            // read whole, so this holds at most 2 × BATCH × 64 KiB of local
            // members (twice that while the pieces read so far are joined), and
            // up to 2 × BATCH peer bodies of at most 256 KiB buffered each.
            .buffered(2)
            .flatten()
            .flatten()
            .ready_chunks(BATCH)
            .flat_map(|pieces| futures_util::stream::iter(joined(pieces))),
    )
}

/// Members read in one store call, and the most pieces joined at once.
const BATCH: usize = 8;
/// Pieces already read are sent as one chunk up to this size: hyper writes a
/// chunk per `writev` once its buffer holds one, so 64 KiB members went out one
/// write each.
const JOIN_UP_TO: usize = 256 * 1024;

/// `pieces` (all ready at once) as fewer chunks: neighbours joined while the
/// chunk stays within [`JOIN_UP_TO`]; a larger piece passes alone, uncopied. The
/// first error ends the list.
fn joined(pieces: Vec<io::Result<Bytes>>) -> Vec<io::Result<Bytes>> {
    let mut out = Vec::new();
    let mut group = Vec::new();
    let mut group_len = 0;
    for piece in pieces {
        let b = match piece {
            Ok(b) => b,
            Err(e) => {
                join_into(&mut out, &mut group);
                out.push(Err(e));
                return out;
            }
        };
        if group_len + b.len() > JOIN_UP_TO {
            join_into(&mut out, &mut group);
            group_len = 0;
        }
        group_len += b.len();
        group.push(b);
    }
    join_into(&mut out, &mut group);
    out
}

/// Moves `group` to `out` as one chunk (a single piece as it is).
fn join_into(out: &mut Vec<io::Result<Bytes>>, group: &mut Vec<Bytes>) {
    if group.len() <= 1 {
        out.extend(group.drain(..).map(Ok));
        return;
    }
    out.push(Ok(Bytes::from(group.concat())));
    group.clear();
}

/// The bytes `parts` select, in order: each is a member here, its length when
/// planned, and the range of it wanted. A member whose length changed since
/// ends the body with an error (the connection is aborted).
pub fn stream_parts<S: Store>(
    state: &AppState<S>,
    parts: Vec<(ObjectId, u64, Range<u64>)>,
) -> BodyStream {
    let store = state.store.clone();
    Box::pin(
        futures_util::stream::iter(parts)
            .then(move |(m, len, part)| {
                let store = store.clone();
                async move {
                    let read = if part.start == 0 && part.end == len {
                        store.get(m, false).await
                    } else {
                        store
                            .get_range(m, false, ByteRange::Closed(part.start, part.end - 1))
                            .await
                    };
                    match read {
                        Ok(Some(obj)) if obj.meta.len == len => obj.body.into_stream(),
                        Ok(Some(_)) => error_stream(format!("burst member changed: {}", m.path())),
                        Ok(None) => error_stream(format!("burst member vanished: {}", m.path())),
                        Err(e) => error_stream(e.to_string()),
                    }
                }
            })
            .flatten(),
    )
}

/// Which part of each local member `want` (a range of the concatenation)
/// covers: `(member, member length, range within it)`; `None` if a member is on
/// a peer (sizes unknown).
pub fn parts(
    plan: &[(ObjectId, Source)],
    want: &Range<u64>,
) -> Option<Vec<(ObjectId, u64, Range<u64>)>> {
    let mut out = Vec::new();
    let mut offset = 0u64;
    for (m, source) in plan {
        let len = match source {
            Source::Local { len, .. } => *len,
            Source::Empty => 0,
            Source::Peer => return None,
        };
        let lo = want.start.max(offset);
        let hi = want.end.min(offset + len);
        if lo < hi {
            out.push((*m, len, lo - offset..hi - offset));
        }
        offset += len;
    }
    Some(out)
}

fn error_stream(msg: String) -> BodyStream {
    tracing::warn!(%msg, "aborting a burst");
    Box::pin(futures_util::stream::iter([Err(io::Error::other(msg))]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(len: usize, fill: u8) -> io::Result<Bytes> {
        Ok(Bytes::from(vec![fill; len]))
    }

    fn lens(out: &[io::Result<Bytes>]) -> Vec<usize> {
        out.iter()
            .map(|r| r.as_ref().map_or(0, Bytes::len))
            .collect()
    }

    #[test]
    fn small_pieces_are_joined_in_order_up_to_the_bound() {
        let pieces: Vec<_> = (0..6).map(|i| piece(64 * 1024, i)).collect();
        let out = joined(pieces);
        assert_eq!(lens(&out), [256 * 1024, 128 * 1024]);
        let bytes: Vec<u8> = out.into_iter().flat_map(|r| r.unwrap().to_vec()).collect();
        let want: Vec<u8> = (0..6u8).flat_map(|i| vec![i; 64 * 1024]).collect();
        assert_eq!(bytes, want);
    }

    #[test]
    fn a_large_piece_passes_alone_and_uncopied() {
        let big = Bytes::from(vec![7u8; JOIN_UP_TO + 1]);
        let at = big.as_ptr();
        let out = joined(vec![piece(10, 1), Ok(big), piece(10, 2), piece(10, 3)]);
        assert_eq!(lens(&out), [10, JOIN_UP_TO + 1, 20]);
        assert_eq!(out[1].as_ref().unwrap().as_ptr(), at);
    }

    #[test]
    fn an_error_ends_the_list_after_the_pieces_before_it() {
        let out = joined(vec![
            piece(10, 1),
            piece(10, 2),
            Err(io::Error::other("member vanished")),
            piece(10, 3),
        ]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].as_ref().unwrap().len(), 20);
        assert_eq!(out[1].as_ref().unwrap_err().to_string(), "member vanished");
    }
}
