//! Write-only channels, as the original tig grew them: a slot whose value is
//! exactly `Write only channel to tig /<target>.tig` (one trailing `\n` allowed,
//! as `echo` writes it) is a *channel*. Writes to the channel's path go to the
//! target slot; a read of the channel returns an empty body (it never reveals the
//! target); the channel cannot be deleted or taken through itself. Chains are
//! refused (a channel may not point at a channel, and a write through a channel
//! whose target has become a channel is refused rather than followed), and a
//! channel never points at content.
//!
//! Telling a channel from a slot costs nothing for almost every object: only a
//! slot whose length is that of a channel line is read.

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tig_core::{EXTENSION, HEX_LEN, ObjectId};
use tig_store::{BodyStream, Kind, ObjectBody, ObjectMeta, Store, StoreError};

use crate::error::ApiError;

/// What a channel's value starts with.
pub const PREFIX: &str = "Write only channel to tig /";
/// The length of a channel line without its optional trailing newline.
const LINE_LEN: u64 = (PREFIX.len() + HEX_LEN + EXTENSION.len()) as u64;

/// The channel value pointing at `target`, without a trailing newline.
pub fn line(target: ObjectId) -> String {
    format!("{PREFIX}{target}{EXTENSION}")
}

/// The target if `value` is a channel line.
pub fn parse_line(value: &[u8]) -> Option<ObjectId> {
    let value = value.strip_suffix(b"\n").unwrap_or(value);
    let text = std::str::from_utf8(value).ok()?;
    let rest = text.strip_prefix(PREFIX)?;
    ObjectId::from_path(&format!("/{rest}")).ok()
}

/// Whether an object described by `meta` could be a channel (a slot of a
/// channel line's length).
pub fn could_be(meta: &ObjectMeta) -> bool {
    meta.kind == Kind::Slot && (meta.len == LINE_LEN || meta.len == LINE_LEN + 1)
}

/// The target if `id` is a channel (reads only slots of a channel's length).
pub async fn target_of<S: Store>(
    store: &S,
    id: ObjectId,
    meta: &ObjectMeta,
) -> Result<Option<ObjectId>, StoreError> {
    if !could_be(meta) {
        return Ok(None);
    }
    let Some(obj) = store.get(id, false).await? else {
        return Ok(None);
    };
    Ok(parse_line(&collect_small(obj.body).await?))
}

/// The target if `id` exists and is a channel.
pub async fn lookup<S: Store>(store: &S, id: ObjectId) -> Result<Option<ObjectId>, StoreError> {
    match store.stat(id, false).await? {
        Some(meta) => target_of(store, id, &meta).await,
        None => Ok(None),
    }
}

async fn collect_small(body: ObjectBody) -> Result<Bytes, StoreError> {
    match body {
        ObjectBody::Full(b) => Ok(b),
        ObjectBody::Stream(mut s) => {
            let mut out = BytesMut::new();
            while let Some(c) = s.next().await {
                out.extend_from_slice(&c.map_err(StoreError::Io)?);
                if out.len() as u64 > LINE_LEN + 1 {
                    break;
                }
            }
            Ok(out.freeze())
        }
    }
}

/// Reads as much of `body` as a channel line can be; returns the line's target if
/// the whole body is one, and the body (unchanged) to store.
pub async fn peek(mut body: BodyStream) -> Result<(Option<ObjectId>, BodyStream), ApiError> {
    let mut head = BytesMut::new();
    let mut ended = false;
    while head.len() as u64 <= LINE_LEN + 1 {
        match body.next().await {
            None => {
                ended = true;
                break;
            }
            Some(Ok(c)) => head.extend_from_slice(&c),
            Some(Err(e)) => {
                return Err(ApiError::BadRequest(format!(
                    "reading the request body failed: {e}"
                )));
            }
        }
    }
    let head = head.freeze();
    let target = if ended { parse_line(&head) } else { None };
    let rest: BodyStream = Box::pin(futures_util::stream::iter([Ok(head)]).chain(body));
    Ok((target, rest))
}

/// Where a write to `id` goes, given that the body is (or is not) a channel line
/// pointing at `new_target`: `id` itself, or the target of the channel `id` is.
/// Refuses (409) what would make a chain, a channel to content, or a channel to
/// itself.
pub async fn write_destination<S: Store>(
    store: &S,
    id: ObjectId,
    new_target: Option<ObjectId>,
) -> Result<ObjectId, ApiError> {
    let conflict = |m: &str| ApiError::Conflict(m.to_owned());
    let dest = match lookup(store, id).await? {
        Some(target) => {
            if new_target.is_some() {
                return Err(conflict(
                    "a write-only channel cannot carry a channel (chains are refused)",
                ));
            }
            if lookup(store, target).await?.is_some() {
                return Err(conflict(
                    "this channel's target is itself a channel (chains are refused)",
                ));
            }
            target
        }
        None => id,
    };
    if let Some(t) = new_target {
        if t == id {
            return Err(conflict("a write-only channel cannot point at itself"));
        }
        match store.stat(t, false).await? {
            Some(m) if m.kind == Kind::Content => {
                return Err(conflict(
                    "a write-only channel cannot point at content-addressed data",
                ));
            }
            Some(m) if target_of(store, t, &m).await?.is_some() => {
                return Err(conflict(
                    "a write-only channel cannot point at a channel (chains are refused)",
                ));
            }
            _ => {}
        }
    }
    Ok(dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_lines() {
        let t = ObjectId::digest(b"target");
        let l = line(t);
        assert_eq!(l.len() as u64, LINE_LEN);
        assert_eq!(parse_line(l.as_bytes()), Some(t));
        assert_eq!(parse_line(format!("{l}\n").as_bytes()), Some(t));
        for bad in [
            format!("{l}\n\n"),
            format!(" {l}"),
            format!("{l} "),
            l.to_uppercase(),
            format!("{PREFIX}{}.tig", t.to_hex().to_uppercase()),
            format!("{PREFIX}{}", t.to_hex()),
            PREFIX.to_owned(),
        ] {
            assert_eq!(parse_line(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn peek_returns_the_body_unchanged() {
        let t = ObjectId::digest(b"t");
        let chunks =
            [line(t)[..10].to_owned(), line(t)[10..].to_owned()].map(|s| Ok(Bytes::from(s)));
        let (target, body) = peek(Box::pin(futures_util::stream::iter(chunks)))
            .await
            .unwrap();
        assert_eq!(target, Some(t));
        let all: Vec<u8> = body.map(|c| c.unwrap().to_vec()).concat().await;
        assert_eq!(all, line(t).into_bytes());
        let big = vec![b'x'; 300];
        let (target, body) = peek(tig_store::body_from_bytes(big.clone())).await.unwrap();
        assert_eq!(target, None);
        let all: Vec<u8> = body.map(|c| c.unwrap().to_vec()).concat().await;
        assert_eq!(all, big);
    }
}
