//! `POST /?batch=1`: many content objects in one request, made durable together.
//!
//! The body is a tar stream, so `curl` can send a directory:
//! `tar cf - -C DIR . | curl --data-binary @- 'http://127.0.0.1:7777/?batch=1'`.
//! Every regular-file member becomes a content object; directories (and pax
//! global headers, which `git archive` writes) are skipped; any other member
//! (a link, a device, a fifo, a sparse file) is a 400 naming it. A member whose
//! file name is `<64 hex>.tig` must hash to that name, else a 400 naming it. The
//! reply (200, `text/plain`) is `/<h>.tig` for every file member, one a line, in
//! member order.
//!
//! Caps: every member at most the server's `--max-size` (413), the whole body at
//! most [`MAX_BODY`] (413), at most [`MAX_MEMBERS`] file members (400). The body
//! is read into memory (it is at most [`MAX_BODY`]); the batches being read at
//! once share [`MEMORY_BUDGET`] bytes, so a request waits for its share rather
//! than growing the server without bound.
//!
//! Every member is parsed, hashed and checked before anything is stored: a bad
//! member leaves nothing of the batch behind. The store then publishes all of them
//! at once ([`Store::put_content_batch`]: the filesystem backend syncs once per
//! batch, not twice per object); each object is stored exactly as `PUT /` would
//! (dedupe, 409 if a name holds a key-value slot). Same key rule as `PUT /`.

use std::borrow::Cow;
use std::io::Cursor;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tig_core::ObjectId;
use tig_store::{BodyStream, Hashed, Store};
use tokio::sync::Semaphore;

use crate::AppState;
use crate::error::ApiError;

/// Largest body of one batch: 64 MiB.
pub const MAX_BODY: u64 = 64 << 20;

/// Most file members in one batch.
pub const MAX_MEMBERS: usize = 100_000;

/// Bytes of batch bodies held in memory at once, over all requests: 128 MiB
/// (two batches of [`MAX_BODY`], or sixteen of the 8 MiB the tig client sends).
pub const MEMORY_BUDGET: u64 = 2 * MAX_BODY;

/// The budget in KiB permits (a `Semaphore` counts in `u32` per acquire).
static BUDGET: Semaphore = Semaphore::const_new((MEMORY_BUDGET >> 10) as usize);

/// Handles `POST /?batch=1` (the declared length already checked against
/// [`MAX_BODY`]).
pub async fn handle<S: Store>(
    state: &AppState<S>,
    headers: &HeaderMap,
    body: BodyStream,
) -> Result<Response, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(MAX_BODY, |n| n.min(MAX_BODY));
    // Whole KiB, at least one: a request holds its share until it is stored.
    let kib = u32::try_from(declared.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
    let _share = BUDGET
        .acquire_many(kib)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let body = read_capped(body).await?;
    let max = state.config.max_size;
    let items = tokio::task::spawn_blocking(move || parse(&body, max))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    let mut reply = String::with_capacity(items.len() * (tig_core::HEX_LEN + 6));
    for item in &items {
        reply.push_str(&item.id().path());
        reply.push('\n');
    }
    let n = items.len();
    state.store.put_content_batch(items, max).await?;
    tracing::debug!(objects = n, "batch stored");
    let mut resp = (StatusCode::OK, reply).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(resp)
}

/// Reads the body, refusing more than [`MAX_BODY`] bytes with 413.
async fn read_capped(mut body: BodyStream) -> Result<Bytes, ApiError> {
    let mut out = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::BadRequest(format!("reading the request body failed: {e}")))?;
        if (out.len() + chunk.len()) as u64 > MAX_BODY {
            return Err(ApiError::TooLarge(MAX_BODY));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.freeze())
}

/// A member's name for a one-line error: lossy UTF-8, at most 80 characters.
fn shown(name: &[u8]) -> String {
    String::from_utf8_lossy(name).chars().take(80).collect()
}

fn bad_tar(e: std::io::Error) -> ApiError {
    ApiError::BadRequest(format!("the body is not a readable tar stream: {e}"))
}

/// Parses a tar body into its file members, hashed, in order; checks every cap
/// and every `<h>.tig` name. The members' bytes are slices of `body` (no copy).
pub fn parse(body: &Bytes, max: u64) -> Result<Vec<Hashed>, ApiError> {
    let mut archive = tar::Archive::new(Cursor::new(&body[..]));
    let mut out = Vec::new();
    for entry in archive.entries_with_seek().map_err(bad_tar)? {
        let entry = entry.map_err(bad_tar)?;
        let name: Cow<'_, [u8]> = entry.path_bytes();
        let kind = entry.header().entry_type();
        if kind.is_dir() || kind.is_pax_global_extensions() {
            continue;
        }
        if !matches!(kind, tar::EntryType::Regular | tar::EntryType::Continuous) {
            return Err(ApiError::BadRequest(format!(
                "member {} is not a regular file (tar type '{}'); a batch holds files only",
                shown(&name),
                char::from(kind.as_byte()).escape_default()
            )));
        }
        let size = entry.size();
        if size > max {
            return Err(ApiError::TooLarge(max));
        }
        if out.len() == MAX_MEMBERS {
            return Err(ApiError::BadRequest(format!(
                "more than {MAX_MEMBERS} files; send at most {MAX_MEMBERS} per batch"
            )));
        }
        let start = usize::try_from(entry.raw_file_position()).unwrap_or(usize::MAX);
        let end = usize::try_from(size)
            .ok()
            .and_then(|n| start.checked_add(n))
            .filter(|&end| end <= body.len())
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "member {} is cut short: the tar stream ends inside it",
                    shown(&name)
                ))
            })?;
        let item = Hashed::new(body.slice(start..end));
        let file_name = name.rsplit(|&b| b == b'/').next().unwrap_or(&name);
        if let Some(named) = std::str::from_utf8(file_name)
            .ok()
            .and_then(ObjectId::from_file_name)
            && named != item.id()
        {
            return Err(ApiError::BadRequest(format!(
                "member {} does not hash to its name (its bytes hash to {})",
                shown(&name),
                item.id().path()
            )));
        }
        out.push(item);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(members: &[(&str, &[u8])]) -> Bytes {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in members {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, *data).unwrap();
        }
        Bytes::from(b.into_inner().unwrap())
    }

    #[test]
    fn files_come_back_in_order_with_their_hashes() {
        let a = ObjectId::digest(b"a");
        let body = tar_of(&[
            ("x/one", b"a"),
            ("two", b""),
            (&a.file_name(), b"a"),
            (
                &format!("dir/{}", ObjectId::digest(b"bb").file_name()),
                b"bb",
            ),
        ]);
        let items = parse(&body, 10).unwrap();
        let ids: Vec<ObjectId> = items.iter().map(Hashed::id).collect();
        assert_eq!(
            ids,
            vec![a, ObjectId::digest(b""), a, ObjectId::digest(b"bb")]
        );
        assert_eq!(items[3].bytes(), &Bytes::from_static(b"bb"));
        assert!(parse(&Bytes::new(), 10).unwrap().is_empty());
    }

    #[test]
    fn bad_members_are_refused_by_name() {
        let wrong = ObjectId::digest(b"not this").file_name();
        let e = parse(&tar_of(&[("ok", b"1"), (&wrong, b"this")]), 10).unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert!(e.to_string().contains(&wrong), "{e}");
        let e = parse(&tar_of(&[("big", b"12345678901")]), 10).unwrap_err();
        assert_eq!(e.status(), StatusCode::PAYLOAD_TOO_LARGE);

        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "evil", "/etc/passwd").unwrap();
        let body = Bytes::from(b.into_inner().unwrap());
        let e = parse(&body, 10).unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert!(e.to_string().contains("member evil"), "{e}");

        let mut cut = tar_of(&[("f", &[7u8; 2000])]).to_vec();
        cut.truncate(1024);
        let e = parse(&Bytes::from(cut), 1 << 20).unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        let e = parse(&Bytes::from_static(&[1u8; 700]), 10).unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
    }
}
