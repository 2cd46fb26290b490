//! Object reads: `GET`/`HEAD /<h>.tig` and `GET /<h>.tig?take=1`.
//!
//! A read first asks the store for the object's facts ([`Store::stat`], no
//! hashing), then decides with [`crate::conditional`]: 304 when `If-None-Match`
//! matches, 416 when the range selects nothing, else 200 or 206. The bytes come
//! from one `get`/`get_range`, and the headers always describe the version those
//! bytes belong to: if a slot changed between the two calls, a range is dropped
//! and the whole new version is sent. Write-only channels read as empty
//! ([`crate::channel`]); they are never tagged, ranged or taken.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use tig_core::ObjectId;
use tig_store::{Object, ObjectBody, ObjectMeta, Store, StoreError};

use crate::channel;
use crate::conditional::{Validators, part_status};
use crate::endpoint::{Conditions, parse_conditions};
use crate::error::ApiError;

/// `Cache-Control` of a taken value: it is gone, nobody may keep it.
const NO_STORE: &str = "no-store";

fn reply(v: &Validators, ct: HeaderValue, body: Body) -> Response {
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, ct);
    v.apply(h);
    resp
}

/// The empty 200 a write-only channel answers with.
fn channel_reply(ct: HeaderValue) -> Response {
    let mut resp = reply(&Validators::none(), ct, Body::empty());
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(0u64));
    resp
}

fn body_of(b: ObjectBody) -> Body {
    match b {
        ObjectBody::Full(b) => Body::from(b),
        ObjectBody::Stream(s) => Body::from_stream(s),
    }
}

/// Whether a read object is a channel (only small slots of a channel line's
/// length are looked at).
fn is_channel(obj: &Object) -> bool {
    channel::could_be(&obj.meta)
        && match &obj.body {
            ObjectBody::Full(b) => obj.range.start == 0 && channel::parse_line(b).is_some(),
            // A channel line is far below the size that is streamed.
            ObjectBody::Stream(_) => false,
        }
}

/// What `GET` and `HEAD` settle before any bytes are read.
enum Preflight {
    /// Absent (`None`), a write-only channel, or a 304.
    Decided(Option<Response>),
    /// The object's facts, its validators and the request's conditions.
    Serve {
        meta: ObjectMeta,
        v: Validators,
        cond: Conditions,
    },
}

/// One `stat`, then the answers that need no bytes: absent, channel, 304.
async fn preflight<S: Store>(
    store: &S,
    id: ObjectId,
    headers: &HeaderMap,
    touch: bool,
    ct: &HeaderValue,
) -> Result<Preflight, ApiError> {
    let cond = parse_conditions(headers);
    let Some(meta) = store.stat(id, touch).await? else {
        return Ok(Preflight::Decided(None));
    };
    if channel::target_of(store, id, &meta).await?.is_some() {
        return Ok(Preflight::Decided(Some(channel_reply(ct.clone()))));
    }
    let v = Validators::of(id, &meta);
    if v.none_match_hits(&cond) {
        return Ok(Preflight::Decided(Some(v.not_modified())));
    }
    Ok(Preflight::Serve { meta, v, cond })
}

/// `GET /<h>.tig`; `None` when the object is absent (the caller may ask peers).
pub async fn get<S: Store>(
    store: &S,
    id: ObjectId,
    headers: &HeaderMap,
    touch: bool,
    ct: HeaderValue,
) -> Result<Option<Response>, ApiError> {
    let (meta, v, cond) = match preflight(store, id, headers, touch, &ct).await? {
        Preflight::Decided(resp) => return Ok(resp),
        Preflight::Serve { meta, v, cond } => (meta, v, cond),
    };
    if let Some(range) = v.range_to_serve(&cond) {
        if range.resolve(meta.len).is_none() {
            return Err(ApiError::RangeNotSatisfiable(meta.len));
        }
        let obj = match store.get_range(id, false, range).await {
            Ok(Some(obj)) => obj,
            Ok(None) => return Ok(None),
            // Shrank meanwhile: answer for the version now there.
            Err(StoreError::RangeNotSatisfiable { len }) => {
                return Err(ApiError::RangeNotSatisfiable(len));
            }
            Err(e) => return Err(e.into()),
        };
        if same_version(&obj.meta, &meta) {
            let mut resp = reply(&v, ct, body_of(obj.body));
            let total = obj.meta.len;
            part_status(&mut resp, &obj.range, total, true);
            return Ok(Some(resp));
        }
        // Changed between stat and read: send the whole new version instead.
    }
    let Some(obj) = store.get(id, false).await? else {
        return Ok(None);
    };
    if is_channel(&obj) {
        return Ok(Some(channel_reply(ct)));
    }
    let v = Validators::of(id, &obj.meta);
    let mut resp = reply(&v, ct, body_of(obj.body));
    part_status(&mut resp, &obj.range, obj.meta.len, false);
    Ok(Some(resp))
}

fn same_version(a: &ObjectMeta, b: &ObjectMeta) -> bool {
    a.kind == b.kind && a.version == b.version && a.len == b.len
}

/// `HEAD /<h>.tig`: the headers `GET` would send; `None` when absent.
pub async fn head<S: Store>(
    store: &S,
    id: ObjectId,
    headers: &HeaderMap,
    touch: bool,
    ct: HeaderValue,
) -> Result<Option<Response>, ApiError> {
    let (meta, v, cond) = match preflight(store, id, headers, touch, &ct).await? {
        Preflight::Decided(resp) => return Ok(resp),
        Preflight::Serve { meta, v, cond } => (meta, v, cond),
    };
    let mut resp = reply(&v, ct, Body::empty());
    match v.range_to_serve(&cond) {
        Some(range) => {
            let r = range
                .resolve(meta.len)
                .ok_or(ApiError::RangeNotSatisfiable(meta.len))?;
            part_status(&mut resp, &r, meta.len, true);
        }
        None => part_status(&mut resp, &(0..meta.len), meta.len, false),
    }
    Ok(Some(resp))
}

/// `GET /<h>.tig?take=1`: the slot's bytes, and the slot is gone. Content is
/// refused (409, and stays); so is a write-only channel.
pub async fn take<S: Store>(
    store: &S,
    id: ObjectId,
    ct: HeaderValue,
) -> Result<Response, ApiError> {
    if channel::lookup(store, id).await?.is_some() {
        return Err(ApiError::Conflict(format!(
            "{} is a write-only channel; it cannot be taken",
            id.path()
        )));
    }
    let obj = match store.take(id).await {
        Ok(obj) => obj,
        Err(StoreError::Immutable(_)) => {
            return Err(ApiError::Conflict(format!(
                "{} is content-addressed data; take=1 only takes key-value slots",
                id.path()
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let len = obj.len;
    let mut resp = Response::new(body_of(obj.body));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, ct);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(NO_STORE));
    *resp.status_mut() = StatusCode::OK;
    Ok(resp)
}
