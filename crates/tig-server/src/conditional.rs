//! HTTP caching and partial replies for stored objects (RFC 9110 §8.8, §13, §14):
//! entity tags, `Cache-Control`, `If-None-Match` → 304, `Range` → 206 / 416.
//!
//! Content never changes, so it carries its hash as a strong tag (`"<h>"`, the
//! shared contract: only content does) and may be cached forever. A slot carries
//! the store's version as `"s-<version>"` and must be revalidated (`no-cache`).
//! Handlers parse the headers first ([`crate::endpoint::parse_conditions`]), read
//! the object once, then ask this module what to answer.

use std::ops::Range;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use tig_core::ObjectId;
use tig_store::{ByteRange, Kind, ObjectMeta};

use crate::endpoint::{Conditions, IfNoneMatch};

/// `Cache-Control` of content: a year, never revalidated.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// `Cache-Control` of slots (and anything else that may change): revalidate.
pub const NO_CACHE: &str = "no-cache";

/// The validators and caching rules a reply carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validators {
    /// The strong entity tag, quotes included; `None` for replies without one
    /// (or whose version is not visible ASCII).
    pub etag: Option<HeaderValue>,
    /// Whether the bytes can never change.
    pub immutable: bool,
}

impl Validators {
    /// The validators of object `id` described by `meta`.
    pub fn of(id: ObjectId, meta: &ObjectMeta) -> Self {
        Self {
            // The tag's String becomes the header's bytes without a copy; a tag
            // `opaque` could not read back (bytes past ASCII) is not sent at all.
            etag: HeaderValue::try_from(meta.etag(id))
                .ok()
                .filter(|t| t.to_str().is_ok()),
            immutable: meta.kind == Kind::Content,
        }
    }

    /// No tag, revalidate always (write-only channels, mixed bursts).
    pub fn none() -> Self {
        Self {
            etag: None,
            immutable: false,
        }
    }

    /// Sets `ETag`, `Cache-Control` and `Accept-Ranges`.
    pub fn apply(&self, h: &mut HeaderMap) {
        if let Some(tag) = &self.etag {
            h.insert(header::ETAG, tag.clone());
        }
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(if self.immutable { IMMUTABLE } else { NO_CACHE }),
        );
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    }

    fn opaque(&self) -> Option<&str> {
        self.etag
            .as_ref()
            .and_then(|t| t.to_str().ok())
            .and_then(|t| t.strip_prefix('"'))
            .and_then(|t| t.strip_suffix('"'))
    }

    /// Whether `If-None-Match` matches this reply's tag (weak comparison), so
    /// a GET or HEAD is answered 304.
    pub fn none_match_hits(&self, c: &Conditions) -> bool {
        let Some(ours) = self.opaque() else {
            return false;
        };
        match &c.if_none_match {
            None => false,
            Some(IfNoneMatch::Any) => true,
            Some(IfNoneMatch::Tags(tags)) => tags.iter().any(|t| t.opaque == ours),
        }
    }

    /// The range to serve: the requested one, unless `If-Range` names another
    /// version (or a date, or a weak tag), in which case the whole object.
    pub fn range_to_serve(&self, c: &Conditions) -> Option<ByteRange> {
        let range = c.range?;
        match &c.if_range {
            None => Some(range),
            Some(Some(tag)) if Some(tag.as_str()) == self.opaque() => Some(range),
            Some(_) => None,
        }
    }

    /// `304 Not Modified` with the validators.
    pub fn not_modified(&self) -> Response {
        let mut resp = Response::new(Body::empty());
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        self.apply(resp.headers_mut());
        resp
    }
}

/// `Content-Range: bytes first-last/len` for the bytes `range` of `len`.
pub fn content_range(range: &Range<u64>, len: u64) -> HeaderValue {
    let v = format!(
        "bytes {}-{}/{len}",
        range.start,
        range.end.saturating_sub(1)
    );
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static("bytes */*"))
}

/// Headers of a reply carrying `body_len` bytes: 206 with `Content-Range` when a
/// proper part of `total` bytes is sent, else 200.
pub fn part_status(resp: &mut Response, range: &Range<u64>, total: u64, partial: bool) {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(range.end - range.start),
    );
    if partial {
        h.insert(header::CONTENT_RANGE, content_range(range, total));
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::RequestTag;

    fn slot(version: &str) -> Validators {
        let meta = ObjectMeta {
            len: 3,
            kind: Kind::Slot,
            version: version.to_owned(),
        };
        Validators::of(ObjectId::digest(b"x"), &meta)
    }

    fn tags(t: &[&str]) -> Conditions {
        Conditions {
            if_none_match: Some(IfNoneMatch::Tags(
                t.iter()
                    .map(|o| RequestTag {
                        opaque: (*o).to_owned(),
                        weak: true,
                    })
                    .collect(),
            )),
            ..Conditions::default()
        }
    }

    #[test]
    fn content_is_tagged_by_its_hash_and_immutable() {
        let id = ObjectId::digest(b"abc");
        let meta = ObjectMeta {
            len: 3,
            kind: Kind::Content,
            version: String::new(),
        };
        let v = Validators::of(id, &meta);
        assert_eq!(v.etag.as_ref().unwrap(), &format!("\"{}\"", id.to_hex()));
        assert!(v.immutable);
        assert!(v.none_match_hits(&tags(&["zz", &id.to_hex()])));
        assert!(!v.none_match_hits(&tags(&["zz"])));
        let mut h = HeaderMap::new();
        v.apply(&mut h);
        assert_eq!(h[header::CACHE_CONTROL], IMMUTABLE);
        assert_eq!(h[header::ACCEPT_RANGES], "bytes");
    }

    #[test]
    fn slots_revalidate_and_match_their_version() {
        let v = slot("7");
        assert_eq!(v.etag.as_ref().unwrap(), "\"s-7\"");
        assert!(v.none_match_hits(&tags(&["s-7"])));
        assert!(!v.none_match_hits(&tags(&["s-8"])));
        let any = Conditions {
            if_none_match: Some(IfNoneMatch::Any),
            ..Conditions::default()
        };
        assert!(v.none_match_hits(&any));
        assert!(!Validators::none().none_match_hits(&any));
        let mut h = HeaderMap::new();
        v.apply(&mut h);
        assert_eq!(h[header::CACHE_CONTROL], NO_CACHE);
    }

    #[test]
    fn a_version_that_is_not_visible_ascii_gives_no_tag_and_no_match() {
        let any = Conditions {
            if_none_match: Some(IfNoneMatch::Any),
            ..Conditions::default()
        };
        for version in ["\u{e9}", "a\nb"] {
            let v = slot(version);
            assert_eq!(v.etag, None, "{version:?}");
            assert!(!v.none_match_hits(&any), "{version:?}");
            let mut h = HeaderMap::new();
            v.apply(&mut h);
            assert!(!h.contains_key(header::ETAG), "{version:?}");
        }
    }

    #[test]
    fn if_range_keeps_the_range_only_for_the_same_version() {
        let v = slot("7");
        let mut c = Conditions {
            range: Some(ByteRange::From(1)),
            ..Conditions::default()
        };
        assert_eq!(v.range_to_serve(&c), Some(ByteRange::From(1)));
        c.if_range = Some(Some("s-7".into()));
        assert_eq!(v.range_to_serve(&c), Some(ByteRange::From(1)));
        c.if_range = Some(Some("s-6".into()));
        assert_eq!(v.range_to_serve(&c), None);
        c.if_range = Some(None);
        assert_eq!(v.range_to_serve(&c), None);
    }

    #[test]
    fn content_range_values() {
        assert_eq!(content_range(&(0..10), 100), "bytes 0-9/100");
        assert_eq!(content_range(&(99..100), 100), "bytes 99-99/100");
    }
}
