//! The router and its thin handlers: parse the request into an [`Endpoint`],
//! check the key, call the store, map the result. All routes go through
//! [`handle`]; the protocol table lives in [`crate::endpoint::parse`].

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use tig_core::{
    CONCAT_COUNT_HEADER, Hasher, MAX_BURST_LIST, ObjectId, check_burst_len, format_path,
    parse_burst,
};
use tig_store::{BodyStream, Kind, ObjectBody, SlotOutcome, Store, StoreError};

use crate::AppState;
use crate::auth::{KeyState, authorize};
use crate::channel;
use crate::cluster::FORWARDED_HEADER;
use crate::conditional::{Validators, part_status};
use crate::endpoint::{Endpoint, Params, parse, parse_conditions};
use crate::error::ApiError;
use crate::read;

pub mod batch;

/// Header on the empty `GET /` of a server without an API key: `disabled`.
pub const LISTING_HEADER: &str = "tig-listing";

/// Header telling a set-if-not caller whether its call created the slot.
pub const CREATED_HEADER: &str = "tig-created";

/// The `Content-Type` of object reads unless the query names another.
pub(crate) const OCTET_STREAM: &str = "application/octet-stream";
const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

/// The whole HTTP API as an axum router.
pub fn router<S: Store>(state: AppState<S>) -> Router {
    Router::new()
        .fallback(handle::<S>)
        .with_state(state)
        .layer(
            tower_http::trace::TraceLayer::new_for_http().make_span_with(
                // The query may carry the API key: log the path only.
                |req: &Request| {
                    tracing::debug_span!("request", method = %req.method(), path = %req.uri().path())
                },
            ),
        )
}

/// Header on every reply to `HEAD /` and `GET /`: the body limit in bytes.
pub const MAX_SIZE_HEADER: &str = "tig-max-size";

/// The single entry point.
pub async fn handle<S: Store>(State(state): State<AppState<S>>, req: Request) -> Response {
    let root = req.uri().path() == "/"
        && (req.method() == axum::http::Method::GET || req.method() == axum::http::Method::HEAD);
    let mut resp = match dispatch(&state, req).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    };
    if root {
        // The server states its limit, whatever else the reply says (even 401).
        resp.headers_mut()
            .insert(MAX_SIZE_HEADER, HeaderValue::from(state.config.max_size));
    }
    resp
}

fn client_ip(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
}

/// A request body that stalls this long (no byte arrives) fails the request,
/// so a client that stops sending cannot hold a connection and a temp file
/// forever (headers have hyper's header timeout).
pub const BODY_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

fn body_stream(body: Body) -> BodyStream {
    let inner = body.into_data_stream().map_err(io::Error::other);
    Box::pin(
        futures_util::stream::unfold(Some(Box::pin(inner)), |state| async move {
            let mut s = state?;
            match tokio::time::timeout(BODY_IDLE_TIMEOUT, s.next()).await {
                Ok(Some(item)) => Some((item, Some(s))),
                Ok(None) => None,
                Err(_) => Some((
                    Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no body bytes for {} s", BODY_IDLE_TIMEOUT.as_secs()),
                    )),
                    None,
                )),
            }
        })
        // Stores may poll once more after the end.
        .fuse(),
    )
}

/// Bodies declared over the limit but at most this long are read (and
/// dropped) before the 413 is sent.
pub const DRAIN_MAX: u64 = 32 << 20;

/// Refuses early when the declared length is already over the limit.
///
/// A server that answers and closes while the client is still sending leaves
/// unread bytes in its socket; closing it then makes the kernel reset the
/// connection, and the client, still writing, sees "broken pipe" instead of
/// the 413 (5 of 10 runs of a 5 MB put to a 1 MiB server). So a body up to
/// [`DRAIN_MAX`] is read to its end and dropped first: the client finishes
/// sending and reads the answer (10 of 10, see CHANGELOG). Larger bodies are
/// refused at once; the tig client then asks `HEAD /` for the limit.
async fn check_length(headers: &HeaderMap, body: Body, max: u64) -> Result<Body, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > max => {
            if n <= DRAIN_MAX {
                let mut stream = body.into_data_stream();
                let mut read = 0u64;
                while let Some(Ok(chunk)) = stream.next().await {
                    read += chunk.len() as u64;
                    if read > DRAIN_MAX {
                        break;
                    }
                }
            }
            Err(ApiError::TooLarge(max))
        }
        _ => Ok(body),
    }
}

fn text(status: StatusCode, body: String) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(TEXT_PLAIN));
    resp
}

fn path_reply(params: &Params, id: &ObjectId) -> Response {
    text(StatusCode::OK, format_path(&params.format, id))
}

async fn dispatch<S: Store>(state: &AppState<S>, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let req = &parts;
    let (endpoint, params) = parse(&req.method, req.uri.path(), req.uri.query())?;
    let forwarded = req.headers.contains_key(FORWARDED_HEADER);
    let cfg = &state.config;
    if endpoint == Endpoint::List && matches!(state.keys.current(cfg), KeyState::Open) {
        // Listing is disabled without a key (seed behaviour); the header tells
        // a client this empty listing apart from an empty store.
        let mut resp = text(StatusCode::OK, String::new());
        resp.headers_mut()
            .insert(LISTING_HEADER, HeaderValue::from_static("disabled"));
        return Ok(resp);
    }
    // Writes through a write-only channel need no key: the public holds only the
    // channel's path (creating the channel needed the key).
    let through_channel = match endpoint {
        Endpoint::PutSlot(id, _) => channel::lookup(&*state.store, id).await?.is_some(),
        _ => false,
    };
    if endpoint.needs_key() && !through_channel {
        authorize(
            cfg,
            &state.keys,
            &state.throttle,
            client_ip(req),
            params.apikey.as_deref(),
        )
        .await?;
    }
    let max = cfg.max_size;
    let store = &*state.store;
    match endpoint {
        Endpoint::Missing => crate::missing::handle(state, body_stream(body), forwarded).await,
        Endpoint::Concat => concat(state, &params, forwarded, body_stream(body)).await,
        Endpoint::Batch => {
            let body = check_length(&req.headers, body, batch::MAX_BODY).await?;
            batch::handle(state, &req.headers, body_stream(body)).await
        }
        Endpoint::List => {
            let mut out = String::new();
            for id in store.list().await? {
                out.push_str(&format_path(&params.format, &id));
                out.push('\n');
            }
            Ok(text(StatusCode::OK, out))
        }
        Endpoint::PutContent => {
            let body = check_length(&req.headers, body, max).await?;
            let id = store.put_content(body_stream(body), max).await?;
            Ok(path_reply(&params, &id))
        }
        Endpoint::Kv => {
            let body = check_length(&req.headers, body, max).await?;
            let id = hash_body(body_stream(body), max).await?;
            Ok(path_reply(&params, &id))
        }
        Endpoint::PutSlot(id, mode) => {
            let body = check_length(&req.headers, body, max).await?;
            let (new_target, body) = channel::peek(body_stream(body)).await?;
            let dest = channel::write_destination(store, id, new_target).await?;
            if through_channel && dest == id {
                // The key was skipped for a channel that is gone now (expired
                // meanwhile): this is an ordinary slot write again, and needs it.
                authorize(
                    cfg,
                    &state.keys,
                    &state.throttle,
                    client_ip(req),
                    params.apikey.as_deref(),
                )
                .await?;
            }
            let out = match store.put_slot(dest, body, max, mode).await {
                // Never name a channel's target in a reply.
                Err(StoreError::Immutable(_)) if dest != id => {
                    return Err(ApiError::Conflict(
                        "this channel's target is content-addressed data".to_owned(),
                    ));
                }
                r => r?,
            };
            let mut resp = match out {
                SlotOutcome::Existed => text(StatusCode::OK, String::new()),
                _ => path_reply(&params, &id),
            };
            if mode == tig_store::SlotWrite::IfAbsent {
                let created = if out == SlotOutcome::Created {
                    "true"
                } else {
                    "false"
                };
                resp.headers_mut()
                    .insert(CREATED_HEADER, HeaderValue::from_static(created));
            }
            Ok(resp)
        }
        Endpoint::Delete(id) => {
            if channel::lookup(store, id).await?.is_some() {
                return Err(ApiError::Conflict(format!(
                    "{} is a write-only channel; it cannot be deleted through itself",
                    id.path()
                )));
            }
            store.delete_slot(id).await?;
            Ok(path_reply(&params, &id))
        }
        Endpoint::Take(id) => read::take(store, id, content_type(&params)?).await,
        Endpoint::Head(id) => {
            let ct = content_type(&params)?;
            match read::head(store, id, &req.headers, params.chtimes, ct).await? {
                Some(resp) => Ok(resp),
                None => miss(state, req, forwarded, id).await,
            }
        }
        Endpoint::Health | Endpoint::Ready | Endpoint::Metrics => {
            crate::ops::handle(state, &endpoint).await
        }
        Endpoint::Get(id) if params.burst => burst(state, req, &params, forwarded, id).await,
        Endpoint::Get(id) => {
            let ct = content_type(&params)?;
            match read::get(store, id, &req.headers, params.chtimes, ct).await? {
                Some(resp) => Ok(resp),
                None => miss(state, req, forwarded, id).await,
            }
        }
    }
}

fn content_type(params: &Params) -> Result<HeaderValue, ApiError> {
    match &params.content_type {
        None => Ok(HeaderValue::from_static(OCTET_STREAM)),
        Some(t) => HeaderValue::from_str(t)
            .map_err(|_| ApiError::BadRequest("bad Content-Type value".to_owned())),
    }
}

/// An object is not here: ask the peers (unless this request was forwarded).
async fn miss<S: Store>(
    state: &AppState<S>,
    req: &Parts,
    forwarded: bool,
    id: ObjectId,
) -> Result<Response, ApiError> {
    if !forwarded && state.cluster.enabled() {
        // Reads need no key: the caller's `apikey` is never sent to a peer.
        let pq = match req.uri.query().map(query_without_key) {
            Some(q) if !q.is_empty() => format!("{}?{q}", req.uri.path()),
            _ => req.uri.path().to_owned(),
        };
        if let Some(resp) = state.cluster.forward(&req.method, id, &pq).await {
            return Ok(resp);
        }
    }
    Err(ApiError::NotFound(format!("not found: {}", id.path())))
}

/// `query` without its `apikey` parameters, however their names are encoded
/// (`api%6Bey=` is `apikey=` to the query parser); the other pairs stay as sent.
fn query_without_key(query: &str) -> String {
    query
        .split('&')
        .filter(|pair| {
            let name = pair.split('=').next().unwrap_or("");
            form_urlencoded::parse(name.as_bytes())
                .next()
                .is_none_or(|(k, _)| k != "apikey")
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Hashes a body without storing it (`/kv`).
async fn hash_body(mut body: BodyStream, max: u64) -> Result<ObjectId, ApiError> {
    let mut hasher = Hasher::new();
    let mut len = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::BadRequest(format!("reading the request body failed: {e}")))?;
        len += chunk.len() as u64;
        if len > max {
            return Err(ApiError::TooLarge(max));
        }
        hasher.update(&chunk);
    }
    Ok(hasher.finish())
}

/// Reads a whole (stored, hence size-limited) object into memory.
async fn read_all(body: ObjectBody) -> Result<Bytes, ApiError> {
    match body {
        ObjectBody::Full(b) => Ok(b),
        ObjectBody::Stream(mut s) => {
            let mut out = Vec::new();
            while let Some(c) = s.next().await {
                out.extend_from_slice(&c.map_err(|e| ApiError::Internal(e.to_string()))?);
            }
            Ok(out.into())
        }
    }
}

/// `GET /<h>.tig?burst=1`: validate every line and check every member exists
/// before the 200; then stream the members. A member that vanishes mid-stream
/// ends the body with an error, which aborts the connection.
///
/// When every member is here their sizes are known, so a `Range` is served
/// over the concatenation (206, or 416; ignored with members on peers). When the list and every member are
/// content the reply is immutable and tagged `"b-<list hash>"` (not the bare
/// hash: that tag means "these bytes hash to the name"); otherwise it has no tag
/// and `no-cache`. Write-only channels (as the list or a member) read as empty.
async fn burst<S: Store>(
    state: &AppState<S>,
    req: &Parts,
    params: &Params,
    forwarded: bool,
    id: ObjectId,
) -> Result<Response, ApiError> {
    let ct = content_type(params)?;
    let (list, list_content) = match state.store.get(id, params.chtimes).await? {
        Some(list) => {
            // The list is refused by its length before a byte of it is read.
            check_burst_len(list.len).map_err(|e| ApiError::BadRequest(e.to_string()))?;
            let meta = list.meta.clone();
            let bytes = read_all(list.body).await?;
            if channel::could_be(&meta) && channel::parse_line(&bytes).is_some() {
                // A write-only channel reads as empty, as a list too.
                let mut resp = Response::new(Body::empty());
                resp.headers_mut().insert(header::CONTENT_TYPE, ct);
                return Ok(resp);
            }
            (bytes, meta.kind == Kind::Content)
        }
        None => match crate::burst::remote_list(state, forwarded, id, MAX_BURST_LIST).await? {
            Some(list) => (list, false),
            None => return Err(ApiError::NotFound(format!("not found: {}", id.path()))),
        },
    };
    let members = parse_burst(&list).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    drop(list);
    let plan = crate::burst::plan(state, &members, params.chtimes, forwarded).await?;
    tracing::debug!(members = plan.len(), "burst");
    // Sizes and kinds are known when every member is here.
    let local: Option<(u64, bool)> =
        plan.iter()
            .try_fold((0u64, list_content), |acc, (_, s)| match s {
                crate::burst::Source::Local { len, content } => {
                    Some((acc.0 + len, acc.1 && *content))
                }
                crate::burst::Source::Empty => Some((acc.0, false)),
                crate::burst::Source::Peer => None,
            });
    let immutable = local.is_some_and(|l| l.1);
    let v = Validators {
        etag: immutable
            .then(|| format!("\"b-{id}\""))
            .and_then(|t| HeaderValue::try_from(t).ok()),
        immutable,
    };
    let cond = parse_conditions(&req.headers);
    if v.none_match_hits(&cond) {
        return Ok(v.not_modified());
    }
    let mut range = None;
    if let (Some(r), Some((total, _))) = (v.range_to_serve(&cond), local) {
        range = Some((
            r.resolve(total)
                .ok_or(ApiError::RangeNotSatisfiable(total))?,
            total,
        ));
    }
    let body = match &range {
        Some((r, _)) => {
            let parts = crate::burst::parts(&plan, r).unwrap_or_default();
            crate::burst::stream_parts(state, parts)
        }
        None => crate::burst::stream(state, plan),
    };
    let mut resp = Response::new(Body::from_stream(body));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, ct);
    v.apply(h);
    if let Some((r, total)) = range {
        part_status(&mut resp, &r, total, true);
    }
    Ok(resp)
}

/// `POST /?concat=1`: the objects named in the body (a burst list, at most
/// [`crate::missing::MAX_LINES`] names), concatenated, as `GET /<h>.tig?burst=1`
/// answers for a stored list: every line checked and every member found before
/// the 200 (400 naming a bad line, 404 naming a missing member), then the members
/// streamed in order. What a client restoring many small objects asks instead of
/// one `GET` each. No validators and no ranges (the list is not an object);
/// [`CONCAT_COUNT_HEADER`] states the count. An older server refuses the unknown
/// parameter (400) before anything else, so it never takes the body for an upload.
async fn concat<S: Store>(
    state: &AppState<S>,
    params: &Params,
    forwarded: bool,
    body: BodyStream,
) -> Result<Response, ApiError> {
    let ct = content_type(params)?;
    let members = crate::missing::parse_names(&crate::missing::read_capped(body).await?)?;
    let plan = crate::burst::plan(state, &members, params.chtimes, forwarded).await?;
    tracing::debug!(members = plan.len(), "concat");
    let mut resp = Response::new(Body::from_stream(crate::burst::stream(state, plan)));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, ct);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(CONCAT_COUNT_HEADER, HeaderValue::from(members.len()));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_cut_from_forwarded_queries() {
        assert_eq!(query_without_key("apikey=K"), "");
        assert_eq!(
            query_without_key("burst=1&apikey=K&format=*"),
            "burst=1&format=*"
        );
        assert_eq!(query_without_key("api%6Bey=K&chtimes=0"), "chtimes=0");
        assert_eq!(query_without_key("apikey&apikey=&x=apikey"), "x=apikey");
        assert_eq!(query_without_key("format=%2A"), "format=%2A");
    }
}
