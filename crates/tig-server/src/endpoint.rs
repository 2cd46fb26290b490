//! Parsing a request line into an [`Endpoint`] and its [`Params`], and the
//! conditional and range headers into [`Conditions`], before any work is done.
//! Pure: no I/O, unit-tested against every row of the protocol table.

use std::borrow::Cow;

use axum::http::{HeaderMap, Method, header};
use percent_encoding::percent_decode_str;
use tig_core::ObjectId;
use tig_store::{ByteRange, SlotWrite};

use crate::error::ApiError;

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /` (or `HEAD /`): list every object (needs the key).
    List,
    /// `PUT|POST /` or `/NAME`: store the body under its hash.
    PutContent,
    /// `PUT|POST /kv`: return the body's hash, store nothing.
    Kv,
    /// `PUT|POST /<h>.tig`: write a key-value slot.
    PutSlot(ObjectId, SlotWrite),
    /// `GET /<h>.tig`.
    Get(ObjectId),
    /// `GET /<h>.tig?take=1`: read a slot and delete it atomically (needs the key).
    Take(ObjectId),
    /// `HEAD /<h>.tig`.
    Head(ObjectId),
    /// `DELETE /<h>.tig`.
    Delete(ObjectId),
    /// `POST /?missing=1`: which of the names in the body lack content.
    Missing,
    /// `POST /?concat=1`: the objects named in the body (a burst list),
    /// concatenated (what `GET /<list>.tig?burst=1` answers for a stored list).
    Concat,
    /// `POST /?batch=1`: store every file of a tar body as content (see
    /// [`crate::handlers::batch`]).
    Batch,
    /// `GET|HEAD /healthz`: liveness (see [`crate::ops`]).
    Health,
    /// `GET|HEAD /readyz`: readiness.
    Ready,
    /// `GET|HEAD /metrics`: Prometheus metrics.
    Metrics,
}

impl Endpoint {
    /// Whether this endpoint needs the API key (when one is configured).
    pub fn needs_key(&self) -> bool {
        matches!(
            self,
            Self::List
                | Self::PutContent
                | Self::Batch
                | Self::PutSlot(..)
                | Self::Delete(_)
                | Self::Take(_)
        )
    }

    /// Whether this is an operating endpoint: no key, never forwarded, not an
    /// object (answered by [`crate::ops::handle`]).
    pub fn is_ops(&self) -> bool {
        matches!(self, Self::Health | Self::Ready | Self::Metrics)
    }
}

/// The query parameters tig knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// `apikey=`.
    pub apikey: Option<String>,
    /// `format=PREFIX*SUFFIX`; `*` by default.
    pub format: String,
    /// `burst=1`.
    pub burst: bool,
    /// `chtimes=0` turns this off: reads refresh the retention timer.
    pub chtimes: bool,
    /// `Content-Type=T`.
    pub content_type: Option<String>,
    /// `missing=1` (only on `POST /`).
    pub missing: bool,
    /// `batch=1` (only on `POST /`).
    pub batch: bool,
    /// `concat=1` (only on `POST /`).
    pub concat: bool,
    setifnot: bool,
    append: bool,
    take: bool,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            apikey: None,
            format: "*".to_owned(),
            burst: false,
            chtimes: true,
            content_type: None,
            missing: false,
            batch: false,
            setifnot: false,
            append: false,
            take: false,
            concat: false,
        }
    }
}

/// `1`, `true`, `yes` or an empty value turn a flag on; `0`, `false`, `no` off.
fn flag(name: &str, value: &str) -> Result<bool, ApiError> {
    match value {
        "" | "1" | "true" | "yes" => Ok(true),
        "0" | "false" | "no" => Ok(false),
        _ => Err(ApiError::BadRequest(format!(
            "bad value for {name}: {}",
            value.chars().take(40).collect::<String>()
        ))),
    }
}

/// Parses the query string. Unknown parameters are refused; for a repeated one
/// the first value wins.
pub fn parse_query(query: Option<&str>) -> Result<Params, ApiError> {
    let mut p = Params::default();
    let mut seen: Vec<String> = Vec::new();
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if seen.iter().any(|s| *s == k) {
            continue;
        }
        seen.push(k.to_string());
        match &*k {
            "apikey" => p.apikey = Some(v.into_owned()),
            "format" => p.format = v.into_owned(),
            "burst" => p.burst = flag("burst", &v)?,
            "setifnot" => p.setifnot = flag("setifnot", &v)?,
            "append" => p.append = flag("append", &v)?,
            "take" => p.take = flag("take", &v)?,
            "chtimes" => p.chtimes = flag("chtimes", &v)?,
            "missing" => p.missing = flag("missing", &v)?,
            "batch" => p.batch = flag("batch", &v)?,
            "concat" => p.concat = flag("concat", &v)?,
            "Content-Type" => p.content_type = Some(v.into_owned()),
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown query parameter: {}",
                    other.chars().take(40).collect::<String>()
                )));
            }
        }
    }
    Ok(p)
}

/// Whether `name` looks like an object file name in any letter case (so that an
/// uppercase spelling is refused rather than taken as an upload name).
fn looks_like_object(name: &str) -> bool {
    name.len() == tig_core::HEX_LEN + 4
        && name.to_ascii_lowercase().ends_with(".tig")
        && name.as_bytes()[..tig_core::HEX_LEN]
            .iter()
            .all(u8::is_ascii_hexdigit)
}

/// Parses method, raw path and raw query into an endpoint.
pub fn parse(
    method: &Method,
    raw_path: &str,
    query: Option<&str>,
) -> Result<(Endpoint, Params), ApiError> {
    // Without a `%` the decoded path is the raw one: skip decoding it and
    // checking it twice (almost every request; this runs for each).
    let escaped = raw_path.contains('%');
    let decoded = if escaped {
        percent_decode_str(raw_path).decode_utf8_lossy()
    } else {
        Cow::Borrowed(raw_path)
    };
    let dotted = |p: &str| p.contains("..") || p.contains("./");
    if dotted(raw_path) || (escaped && dotted(&decoded)) {
        return Err(ApiError::BadRequest(
            "paths with .. or ./ are not allowed".to_owned(),
        ));
    }
    let params = parse_query(query)?;
    let not_object = || ApiError::NotObjectPath(decoded.chars().take(80).collect());
    let is_get = method == Method::GET || method == Method::HEAD;
    let is_put = method == Method::PUT || method == Method::POST;
    if !is_get && !is_put && method != Method::DELETE {
        return Err(ApiError::MethodNotAllowed);
    }
    let name = decoded.strip_prefix('/').ok_or_else(not_object)?;
    // The requests that exist only as `POST /`, each named by its parameter.
    let post_only = [
        (
            params.missing,
            Endpoint::Missing,
            "missing=1 is only for POST / (a body of object paths)",
        ),
        (
            params.batch,
            Endpoint::Batch,
            "batch=1 is only for POST / (a tar body of objects)",
        ),
        (
            params.concat,
            Endpoint::Concat,
            "concat=1 is only for POST / (a body of object paths)",
        ),
    ];
    let mut named = post_only.into_iter().filter(|(set, ..)| *set);
    if let Some((_, endpoint, only_for)) = named.next() {
        if named.next().is_some() {
            return Err(ApiError::BadRequest(
                "missing, batch and concat cannot be combined".to_owned(),
            ));
        }
        return if method == Method::POST && name.is_empty() {
            Ok((endpoint, params))
        } else {
            Err(ApiError::BadRequest(only_for.to_owned()))
        };
    }
    let endpoint = if name.is_empty() {
        match () {
            _ if is_get => Endpoint::List,
            _ if is_put => Endpoint::PutContent,
            _ => return Err(not_object()),
        }
    } else if is_get && raw_path == decoded && name == "healthz" {
        Endpoint::Health
    } else if is_get && raw_path == decoded && name == "readyz" {
        Endpoint::Ready
    } else if is_get && raw_path == decoded && name == "metrics" {
        Endpoint::Metrics
    } else if let Ok(id) = ObjectId::from_path(&decoded) {
        if is_put {
            let mode = match (params.setifnot, params.append) {
                (true, true) => {
                    return Err(ApiError::BadRequest(
                        "setifnot and append cannot be combined".to_owned(),
                    ));
                }
                (true, false) => SlotWrite::IfAbsent,
                (false, true) => SlotWrite::Append,
                (false, false) => SlotWrite::Replace,
            };
            Endpoint::PutSlot(id, mode)
        } else if method == Method::GET && params.take {
            if params.burst {
                return Err(ApiError::BadRequest(
                    "take and burst cannot be combined".to_owned(),
                ));
            }
            Endpoint::Take(id)
        } else if method == Method::GET {
            Endpoint::Get(id)
        } else if method == Method::HEAD {
            Endpoint::Head(id)
        } else {
            Endpoint::Delete(id)
        }
    } else if is_put && name == "kv" {
        Endpoint::Kv
    } else if is_put && !name.contains('/') && !looks_like_object(name) {
        Endpoint::PutContent
    } else {
        return Err(not_object());
    };
    if params.take && !matches!(endpoint, Endpoint::Take(_)) {
        return Err(ApiError::BadRequest(
            "take=1 is only for GET of an object path".to_owned(),
        ));
    }
    Ok((endpoint, params))
}

/// An entity tag as sent in a request, without its quotes, and whether it was
/// marked weak (`W/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestTag {
    /// The opaque part, between the quotes.
    pub opaque: String,
    /// `W/"…"`.
    pub weak: bool,
}

/// `If-None-Match`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfNoneMatch {
    /// `*`: any current representation.
    Any,
    /// A list of tags.
    Tags(Vec<RequestTag>),
}

/// The request headers that make a read conditional or partial.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conditions {
    /// `If-None-Match` (compared weakly, RFC 9110 §13.1.2).
    pub if_none_match: Option<IfNoneMatch>,
    /// `Range: bytes=…` with exactly one range. A malformed header, another unit
    /// or several ranges are ignored (the whole object is sent), as RFC 9110
    /// §14.2 allows.
    pub range: Option<ByteRange>,
    /// `If-Range`: the range applies only if the object's tag equals this
    /// strong tag. An `If-Range` date (or weak tag) never matches: the whole
    /// object is sent.
    pub if_range: Option<Option<String>>,
}

/// Parses a list of entity tags (`"a", W/"b"`); `None` if malformed.
fn parse_tags(value: &str) -> Option<Vec<RequestTag>> {
    let mut out = Vec::new();
    let mut rest = value.trim();
    while !rest.is_empty() {
        let (weak, r) = match rest.strip_prefix("W/") {
            Some(r) => (true, r),
            None => (false, rest),
        };
        let r = r.strip_prefix('"')?;
        let end = r.find('"')?;
        let opaque = &r[..end];
        if !opaque
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x7e).contains(&b))
        {
            return None;
        }
        out.push(RequestTag {
            opaque: opaque.to_owned(),
            weak,
        });
        rest = r[end + 1..].trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r.trim_start();
        } else if !rest.is_empty() {
            return None;
        }
    }
    Some(out)
}

/// Parses `bytes=first-last`, `bytes=first-` or `bytes=-suffix`; `None` for
/// anything else (including several ranges).
pub fn parse_range(value: &str) -> Option<ByteRange> {
    let (unit, spec) = value.trim().split_once('=')?;
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return None;
    }
    let (first, last) = spec.trim().split_once('-')?;
    let num = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (first.trim(), last.trim()) {
        ("", "") => None,
        ("", n) => Some(ByteRange::Suffix(num(n)?)),
        (f, "") => Some(ByteRange::From(num(f)?)),
        (f, l) => {
            let (f, l) = (num(f)?, num(l)?);
            (f <= l).then_some(ByteRange::Closed(f, l))
        }
    }
}

/// Parses the conditional and range headers of a read.
pub fn parse_conditions(headers: &HeaderMap) -> Conditions {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let if_none_match = text(header::IF_NONE_MATCH).and_then(|v| {
        if v.trim() == "*" {
            Some(IfNoneMatch::Any)
        } else {
            parse_tags(v).map(IfNoneMatch::Tags)
        }
    });
    let ranges = headers.get_all(header::RANGE).iter().count();
    let range = if ranges == 1 {
        text(header::RANGE).and_then(parse_range)
    } else {
        None
    };
    let if_range = text(header::IF_RANGE).map(|v| match parse_tags(v).as_deref() {
        Some([t]) if !t.weak => Some(t.opaque.clone()),
        _ => None,
    });
    Conditions {
        if_none_match,
        range,
        if_range,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "f2ca1bb6c7e907d06dafe4687e579fce76b37e4e93b7605022da52e6ccc26fd2";

    fn ep(method: Method, path: &str, query: Option<&str>) -> Result<Endpoint, u16> {
        parse(&method, path, query)
            .map(|(e, _)| e)
            .map_err(|e| e.status().as_u16())
    }

    fn id() -> ObjectId {
        ObjectId::from_hex(H).unwrap()
    }

    #[test]
    fn table_rows() {
        let obj = format!("/{H}.tig");
        assert_eq!(ep(Method::PUT, "/", None), Ok(Endpoint::PutContent));
        assert_eq!(ep(Method::POST, "/", None), Ok(Endpoint::PutContent));
        assert_eq!(ep(Method::PUT, "/test", None), Ok(Endpoint::PutContent));
        assert_eq!(ep(Method::POST, "/kv", None), Ok(Endpoint::Kv));
        assert_eq!(ep(Method::PUT, "/kv", None), Ok(Endpoint::Kv));
        assert_eq!(
            ep(Method::PUT, &obj, None),
            Ok(Endpoint::PutSlot(id(), SlotWrite::Replace))
        );
        assert_eq!(
            ep(Method::POST, &obj, Some("setifnot=1")),
            Ok(Endpoint::PutSlot(id(), SlotWrite::IfAbsent))
        );
        assert_eq!(
            ep(Method::PUT, &obj, Some("append=1")),
            Ok(Endpoint::PutSlot(id(), SlotWrite::Append))
        );
        assert_eq!(ep(Method::GET, &obj, None), Ok(Endpoint::Get(id())));
        assert_eq!(ep(Method::HEAD, &obj, None), Ok(Endpoint::Head(id())));
        assert_eq!(ep(Method::DELETE, &obj, None), Ok(Endpoint::Delete(id())));
        assert_eq!(ep(Method::GET, "/", Some("apikey=abc")), Ok(Endpoint::List));
        assert_eq!(
            ep(Method::POST, "/", Some("missing=1")),
            Ok(Endpoint::Missing)
        );
        assert_eq!(
            ep(Method::POST, "/", Some("missing=0")),
            Ok(Endpoint::PutContent)
        );
        assert_eq!(ep(Method::POST, "/", Some("batch=1")), Ok(Endpoint::Batch));
        assert_eq!(
            ep(Method::POST, "/", Some("batch=0")),
            Ok(Endpoint::PutContent)
        );
        assert!(Endpoint::Batch.needs_key() && !Endpoint::Batch.is_ops());
        assert_eq!(
            ep(Method::POST, "/", Some("concat=1")),
            Ok(Endpoint::Concat)
        );
        assert!(!Endpoint::Concat.needs_key());
        assert!(ep(Method::PUT, "/", Some("concat=1")).is_err());
        assert!(ep(Method::GET, &obj, Some("concat=1")).is_err());
        for q in ["concat=1&missing=1", "concat=1&batch=1"] {
            assert!(ep(Method::POST, "/", Some(q)).is_err(), "{q}");
        }
        assert_eq!(ep(Method::GET, "/healthz", None), Ok(Endpoint::Health));
        assert_eq!(ep(Method::HEAD, "/readyz", None), Ok(Endpoint::Ready));
        assert_eq!(ep(Method::GET, "/metrics", None), Ok(Endpoint::Metrics));
        // Uploads keep their seed meaning: PUT /NAME stores under the hash.
        assert_eq!(ep(Method::PUT, "/metrics", None), Ok(Endpoint::PutContent));
        assert_eq!(ep(Method::GET, "/healthz/x", None), Err(417));
        assert!(!Endpoint::Metrics.needs_key());
        assert!(Endpoint::Ready.is_ops() && !Endpoint::List.is_ops());
        assert_eq!(
            ep(Method::GET, &obj, Some("take=1")),
            Ok(Endpoint::Take(id()))
        );
        assert_eq!(
            ep(Method::GET, &obj, Some("take=0")),
            Ok(Endpoint::Get(id()))
        );
        assert!(Endpoint::Take(id()).needs_key());
    }

    #[test]
    fn take_only_on_get_of_an_object() {
        let obj = format!("/{H}.tig");
        assert_eq!(ep(Method::HEAD, &obj, Some("take=1")), Err(400));
        assert_eq!(ep(Method::PUT, &obj, Some("take=1")), Err(400));
        assert_eq!(ep(Method::DELETE, &obj, Some("take=1")), Err(400));
        assert_eq!(ep(Method::GET, "/", Some("take=1")), Err(400));
        assert_eq!(ep(Method::GET, &obj, Some("take=1&burst=1")), Err(400));
    }

    fn conditions(pairs: &[(header::HeaderName, &str)]) -> Conditions {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k.clone(), v.parse().unwrap());
        }
        parse_conditions(&h)
    }

    #[test]
    fn range_headers() {
        let r = |v: &str| conditions(&[(header::RANGE, v)]).range;
        assert_eq!(r("bytes=0-9"), Some(ByteRange::Closed(0, 9)));
        assert_eq!(r("bytes=5-"), Some(ByteRange::From(5)));
        assert_eq!(r("bytes=-3"), Some(ByteRange::Suffix(3)));
        assert_eq!(r("Bytes = 1-2"), Some(ByteRange::Closed(1, 2)));
        // Ignored: other units, several ranges, nonsense, reversed.
        for bad in [
            "items=0-9",
            "bytes=0-1,4-5",
            "bytes=-",
            "bytes=a-b",
            "bytes=9-1",
            "bytes=+1-2",
            "0-9",
            "bytes=99999999999999999999999-",
        ] {
            assert_eq!(r(bad), None, "{bad}");
        }
        let two = conditions(&[(header::RANGE, "bytes=0-1"), (header::RANGE, "bytes=2-3")]);
        assert_eq!(two.range, None);
    }

    #[test]
    fn entity_tag_headers() {
        let c = conditions(&[(header::IF_NONE_MATCH, "\"abc\", W/\"s-1\"")]);
        assert_eq!(
            c.if_none_match,
            Some(IfNoneMatch::Tags(vec![
                RequestTag {
                    opaque: "abc".into(),
                    weak: false
                },
                RequestTag {
                    opaque: "s-1".into(),
                    weak: true
                },
            ]))
        );
        let c = conditions(&[(header::IF_NONE_MATCH, " * ")]);
        assert_eq!(c.if_none_match, Some(IfNoneMatch::Any));
        let c = conditions(&[(header::IF_NONE_MATCH, "abc")]);
        assert_eq!(c.if_none_match, None);
        let c = conditions(&[(header::IF_RANGE, "\"x\"")]);
        assert_eq!(c.if_range, Some(Some("x".into())));
        let c = conditions(&[(header::IF_RANGE, "Tue, 01 Dec 2026 10:00:00 GMT")]);
        assert_eq!(c.if_range, Some(None));
        assert_eq!(conditions(&[]), Conditions::default());
    }

    #[test]
    fn refusals() {
        assert_eq!(ep(Method::GET, "/randomfileunauthorized", None), Err(417));
        assert_eq!(ep(Method::GET, "/a/b", None), Err(417));
        assert_eq!(ep(Method::PUT, "/a/b", None), Err(417));
        assert_eq!(ep(Method::GET, "/kv", None), Err(417));
        assert_eq!(ep(Method::DELETE, "/", None), Err(417));
        let upper = format!("/{}.tig", H.to_uppercase());
        assert_eq!(ep(Method::GET, &upper, None), Err(417));
        assert_eq!(ep(Method::PUT, &upper, None), Err(417));
        assert_eq!(ep(Method::GET, "/../etc/passwd", None), Err(400));
        assert_eq!(ep(Method::GET, "/./x", None), Err(400));
        assert_eq!(ep(Method::PUT, "/%2e%2e/apikey", None), Err(400));
        assert_eq!(ep(Method::GET, "/", Some("bogus=1")), Err(400));
        let obj = format!("/{H}.tig");
        assert_eq!(ep(Method::PUT, &obj, Some("setifnot=1&append=1")), Err(400));
        assert_eq!(ep(Method::PATCH, &obj, None), Err(405));
        for (m, path) in [
            (Method::PUT, "/"),
            (Method::GET, "/"),
            (Method::POST, obj.as_str()),
            (Method::POST, "/kv"),
        ] {
            assert_eq!(ep(m.clone(), path, Some("missing=1")), Err(400), "{path}");
            assert_eq!(ep(m, path, Some("batch=1")), Err(400), "{path}");
        }
        assert_eq!(ep(Method::POST, "/", Some("batch=1&missing=1")), Err(400));
    }

    #[test]
    fn query_values() {
        let p = parse_query(Some(
            "apikey=a%20b&format=http%3A%2F%2Fh%3A1*&burst=1&chtimes=0&Content-Type=text/html",
        ))
        .unwrap();
        assert_eq!(p.apikey.as_deref(), Some("a b"));
        assert_eq!(p.format, "http://h:1*");
        assert!(p.burst);
        assert!(!p.chtimes);
        assert_eq!(p.content_type.as_deref(), Some("text/html"));
        let p = parse_query(Some("format=http://127.0.0.1:7777*")).unwrap();
        assert_eq!(p.format, "http://127.0.0.1:7777*");
        let d = parse_query(None).unwrap();
        assert_eq!(d, Params::default());
        assert!(parse_query(Some("burst=maybe")).is_err());
        let e = parse_query(Some("x=1")).unwrap_err();
        assert_eq!(e.to_string(), "unknown query parameter: x");
    }
}
