//! `POST /?missing=1`: one request to learn which of many names a server lacks.
//!
//! The body is object paths, `/<h>.tig` one a line, read by tig-core's burst-list
//! parser (blank lines and a trailing `\r` ignored; a URL counts by its path), at
//! most [`MAX_LINES`] names and [`MAX_BODY`] bytes. Every line is
//! checked before the `200`: a bad one is a `400` naming it. The reply, streamed in
//! batches of [`BATCH`] names in the order asked, lists every name that does **not**
//! hold content with that hash: absent, or a key-value slot (whose bytes are
//! anything, so it never vouches for them). A client may skip uploading exactly the
//! names left out.
//!
//! Existence is public through `HEAD` already, so no key is needed. Present content
//! has its retention timer refreshed (a client skipping its upload relies on it).
//! In a cluster, the names missing here are asked of every peer in one request each
//! (marked `Tig-Forwarded: 1`, never forwarded again); a name is reported missing
//! unless a peer answered and left it out. A peer that fails or times out vouches
//! for nothing, so its names stay missing: the client uploads them again, which is
//! safe.

use std::collections::HashSet;
use std::io;

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tig_core::{BurstError, ObjectId};
use tig_store::{BodyStream, Store};

use crate::AppState;
use crate::cluster::FORWARDED_HEADER;
use crate::error::ApiError;

/// Most names one request may ask about.
pub const MAX_LINES: usize = 100_000;

/// Largest body: the burst-list cap (16 MiB).
pub const MAX_BODY: usize = tig_core::MAX_BURST_LIST as usize;

/// Names checked (and asked of the peers) at once; the reply streams per batch.
pub const BATCH: usize = 1024;

/// Batches checked concurrently.
const BATCHES_IN_FLIGHT: usize = 2;

/// Handles `POST /?missing=1` (the body not yet read).
pub async fn handle<S: Store>(
    state: &AppState<S>,
    body: BodyStream,
    forwarded: bool,
) -> Result<Response, ApiError> {
    let ids = parse_names(&read_capped(body).await?)?;
    let batches: Vec<Vec<ObjectId>> = ids.chunks(BATCH).map(<[ObjectId]>::to_vec).collect();
    let state = state.clone();
    let stream = futures_util::stream::iter(batches).map(move |batch| {
        let state = state.clone();
        async move {
            let missing = check_batch(&state, batch, forwarded).await?;
            let mut out = String::with_capacity(missing.len() * (tig_core::HEX_LEN + 6));
            for id in missing {
                out.push_str(&id.path());
                out.push('\n');
            }
            Ok::<Bytes, io::Error>(Bytes::from(out))
        }
    });
    // A few batches checked at once (each one blocking task on the filesystem
    // backend), the reply still in the order asked.
    let stream = stream.buffered(BATCHES_IN_FLIGHT);
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(resp)
}

/// Reads the body, refusing more than [`MAX_BODY`] bytes with 413.
pub(crate) async fn read_capped(mut body: BodyStream) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::BadRequest(format!("reading the request body failed: {e}")))?;
        if out.len() + chunk.len() > MAX_BODY {
            return Err(ApiError::TooLarge(MAX_BODY as u64));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Parses the body with tig-core's burst-list parser: one `/<h>.tig` (or a URL
/// ending in one) a line; blank lines and a trailing `\r` are ignored; anything else
/// is a 400 naming the line. At most [`MAX_LINES`] names.
pub fn parse_names(body: &[u8]) -> Result<Vec<ObjectId>, ApiError> {
    let mut out = Vec::new();
    for m in tig_core::burst_members(body) {
        let id = m.map_err(|e| {
            ApiError::BadRequest(match e {
                BurstError::BadLine { line, text } => {
                    format!("line {line} is not an object path /<64 hex>.tig: {text}")
                }
                BurstError::NotUtf8 { line } => format!("line {line} is not UTF-8 text"),
                other => other.to_string(),
            })
        })?;
        if out.len() == MAX_LINES {
            return Err(ApiError::BadRequest(format!(
                "more than {MAX_LINES} names; send at most {MAX_LINES} per request"
            )));
        }
        out.push(id);
    }
    Ok(out)
}

/// The names of `batch` (in order) that hold no content here nor on any peer.
async fn check_batch<S: Store>(
    state: &AppState<S>,
    batch: Vec<ObjectId>,
    forwarded: bool,
) -> io::Result<Vec<ObjectId>> {
    let to_io = |e: tig_store::StoreError| io::Error::other(e.to_string());
    // One call per batch: the backend checks the names together (the filesystem
    // backend in one blocking task) and refreshes the timers of those found.
    let present = state
        .store
        .present_content_many(batch.clone(), true)
        .await
        .map_err(to_io)?;
    if present.len() != batch.len() {
        return Err(io::Error::other(format!(
            "the store answered {} of {} names",
            present.len(),
            batch.len()
        )));
    }
    let missing: Vec<ObjectId> = batch
        .into_iter()
        .zip(present)
        .filter_map(|(id, present)| (!present).then_some(id))
        .collect();
    if missing.is_empty() || forwarded || !state.cluster.enabled() {
        return Ok(missing);
    }
    let present = present_on_peers(state, &missing).await;
    Ok(missing
        .into_iter()
        .filter(|id| !present.contains(id))
        .collect())
}

/// The names among `ids` that some peer vouches for (left out of its own answer).
async fn present_on_peers<S: Store>(state: &AppState<S>, ids: &[ObjectId]) -> HashSet<ObjectId> {
    let cluster = &state.cluster;
    let peers = cluster.peers().await;
    let mut body = String::with_capacity(ids.len() * (tig_core::HEX_LEN + 6));
    for id in ids {
        body.push_str(&id.path());
        body.push('\n');
    }
    let asked: HashSet<ObjectId> = ids.iter().copied().collect();
    let mut pending: FuturesUnordered<_> = peers
        .iter()
        .map(|base| {
            let req = cluster
                .http()
                .post(format!("{base}/?missing=1"))
                .header(FORWARDED_HEADER, "1")
                .body(body.clone());
            async move {
                let resp = req.send().await.ok()?;
                if resp.status() != reqwest::StatusCode::OK {
                    tracing::debug!(peer = %base, status = %resp.status(), "peer cannot answer missing=1");
                    return None;
                }
                let text = resp.text().await.ok()?;
                let mut lacks = HashSet::new();
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    lacks.insert(ObjectId::from_path(line.trim()).ok()?);
                }
                Some(lacks)
            }
        })
        .collect();
    let mut present = HashSet::new();
    let deadline = tokio::time::sleep(cluster.timeout());
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            next = pending.next() => match next {
                None => break,
                Some(Some(lacks)) => {
                    present.extend(asked.iter().filter(|id| !lacks.contains(id)).copied());
                }
                Some(None) => {}
            },
            () = &mut deadline => break,
        }
    }
    present
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_parsed_strictly() {
        let a = ObjectId::digest(b"a");
        let b = ObjectId::digest(b"b");
        let body = format!("{}\r\n\n  \n{}", a.path(), b.path());
        assert_eq!(parse_names(body.as_bytes()).unwrap(), vec![a, b]);
        assert!(parse_names(b"").unwrap().is_empty());
        let bad = format!("{}\n/apikey\n", a.path());
        let e = parse_names(bad.as_bytes()).unwrap_err();
        assert_eq!(e.status().as_u16(), 400);
        assert!(e.to_string().contains("line 2"), "{e}");
        assert!(e.to_string().contains("/apikey"), "{e}");
        let upper = format!("/{}.tig", a.to_hex().to_uppercase());
        assert!(parse_names(upper.as_bytes()).is_err());
        assert!(parse_names(a.to_hex().as_bytes()).is_err());
    }

    #[test]
    fn the_line_cap_is_enforced() {
        let line = format!("{}\n", ObjectId::digest(b"x").path());
        let ok = line.repeat(MAX_LINES);
        assert_eq!(parse_names(ok.as_bytes()).unwrap().len(), MAX_LINES);
        let over = line.repeat(MAX_LINES + 1);
        assert_eq!(
            parse_names(over.as_bytes()).unwrap_err().status().as_u16(),
            400
        );
    }
}
