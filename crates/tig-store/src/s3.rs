//! The S3 backend: objects in a bucket of any S3-compatible storage (SeaweedFS,
//! MinIO, Garage, Ceph RGW, AWS S3, R2), shared by any number of `tig serve`
//! instances that hold no state of their own.
//!
//! Requests are signed with SigV4 by [`rusty_s3`] (sans-IO: it only builds signed
//! URLs) and sent with `reqwest`, so every conditional header (`If-None-Match: *`,
//! `If-Match: <etag>`) is ours to send on any request.
//!
//! Layout under `s3://BUCKET/PREFIX/`:
//! - `<h>.tig`: the objects, with `x-amz-meta-tig-kind: content` or `slot`;
//! - `.tig/used/<h>`: an empty marker whose `LastModified` is the last read;
//! - `.tig/tmp/<unique>`: bodies larger than one part while they are uploaded;
//! - `.tig/lease`: held by the one instance that is sweeping.
//!
//! Writes: the body streams through the hash into a buffer of [`PART`] bytes. A body
//! that fits is written with one conditional `PutObject` on the final name. A larger
//! one becomes a multipart upload to a private temp key and is published with a
//! conditional server-side `CopyObject` onto the final name (the name of content is
//! only known once the last byte is hashed), then the temp key is deleted. Content
//! is published with `If-None-Match: *` (never overwritten); a slot replace with
//! `If-Match: <etag read>` (or `If-None-Match: *` when absent), so a slot never
//! replaces content that appeared meanwhile; `setifnot` with `If-None-Match: *`;
//! `append` reads the value and writes value + body with `If-Match` on the etag it
//! read, retrying (bounded) when another writer won.
//!
//! The kind is the `tig-kind` metadata, decided when the bytes are written (content
//! when they hash to the name). Objects written by other tools carry no kind and
//! are hashed on demand.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt, TryStreamExt};
use reqwest::header::HeaderMap;
use rusty_s3::{Bucket, Credentials, Method, UrlStyle};
use tig_core::{Hasher, ObjectId};

use crate::retention::expired;
use crate::{
    BodyStream, ByteRange, Kind, Object, ObjectBody, ObjectMeta, SlotOutcome, SlotWrite, Store,
    StoreError,
};

/// Part size of multipart uploads, and the largest body written with one put.
/// Memory per write request is about this (one buffer).
pub const PART: usize = 8 << 20;
/// How long a signed request stays valid.
const SIGN_TTL: u64 = 3600;
/// Attempts of one request when the engine answers 5xx or the connection fails.
const SEND_ATTEMPTS: u32 = 4;
/// Attempts of a compare-and-swap (append, replace) before giving up.
const CAS_ATTEMPTS: u32 = 200;
/// A sweeper's lease older than this is considered abandoned (its holder died).
const LEASE_TTL: Duration = Duration::from_secs(300);
/// Temp keys and multipart uploads older than this are abandoned and removed.
const TEMP_TTL: Duration = Duration::from_secs(3600);
/// Objects whose last write by this instance is remembered to the nanosecond.
const RECENT_MAX: usize = 50_000;
/// The metadata header that marks an object's kind.
const KIND_HEADER: &str = "x-amz-meta-tig-kind";
/// The metadata header with a slot's version (unique per write).
const VERSION_HEADER: &str = "x-amz-meta-tig-version";
/// How long the health probe behind `/readyz` waits for the bucket (below the
/// server's own 2 s bound, so a down endpoint reads as a reason, not a timeout).
const HEALTH_TIMEOUT: Duration = Duration::from_millis(1500);
/// How long one health verdict is reused: a load balancer probing every few
/// milliseconds costs the bucket one request per second per instance.
const HEALTH_TTL: Duration = Duration::from_secs(1);

/// Why the S3 backend could not be configured or reached.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// The `s3://` URL or an `AWS_*` variable is wrong.
    #[error("{0}")]
    Config(String),
    /// The endpoint did not answer.
    #[error("cannot reach the S3 endpoint {endpoint}: {source}")]
    Unreachable {
        /// The endpoint URL.
        endpoint: String,
        /// What went wrong.
        source: reqwest::Error,
    },
    /// The endpoint answered a request with an error status.
    #[error("S3 {op} {key}: HTTP {status} {code}")]
    Status {
        /// The operation (e.g. `PutObject`).
        op: &'static str,
        /// The key it was about.
        key: String,
        /// The HTTP status.
        status: u16,
        /// The S3 error code from the reply body, if any.
        code: String,
    },
    /// A request failed on the way (connection reset, timeout).
    #[error("S3 {op} {key}: {source}")]
    Http {
        /// The operation.
        op: &'static str,
        /// The key it was about.
        key: String,
        /// What went wrong.
        source: reqwest::Error,
    },
    /// The endpoint answered something we cannot read.
    #[error("S3 {op}: unexpected reply: {detail}")]
    Reply {
        /// The operation.
        op: &'static str,
        /// What was wrong with it.
        detail: String,
    },
}

impl From<S3Error> for StoreError {
    fn from(e: S3Error) -> Self {
        StoreError::Io(io::Error::other(e))
    }
}

/// Where the bucket is and how to sign: from `s3://BUCKET[/PREFIX]` and the
/// standard `AWS_*` variables.
#[derive(Clone)]
pub struct S3Config {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix, empty or ending in `/`.
    pub prefix: String,
    /// Region (`AWS_REGION`, default `us-east-1`).
    pub region: String,
    /// Endpoint URL (`AWS_ENDPOINT_URL` or `AWS_ENDPOINT`); AWS's own when absent.
    pub endpoint: String,
    /// Whether the endpoint was given (then path-style URLs are used).
    pub custom_endpoint: bool,
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key: String,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_key: String,
    /// `AWS_SESSION_TOKEN`, if any.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl S3Config {
    /// Whether `root` names an S3 location (`s3://…`).
    pub fn is_s3_root(root: &str) -> bool {
        root.starts_with("s3://")
    }

    /// Reads `s3://BUCKET[/PREFIX]` and the `AWS_*` variables through `var`
    /// (`std::env::var(..).ok()` in production).
    pub fn from_env(root: &str, var: impl Fn(&str) -> Option<String>) -> Result<Self, S3Error> {
        let rest = root
            .strip_prefix("s3://")
            .ok_or_else(|| S3Error::Config(format!("{root:?} is not an s3://BUCKET URL")))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty()
            || !bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        {
            return Err(S3Error::Config(format!(
                "bad bucket name in {root:?} (lowercase letters, digits, '-' and '.')"
            )));
        }
        let prefix = prefix.trim_matches('/');
        let prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        let var = |name: &str| var(name).filter(|v| !v.is_empty());
        let region = var("AWS_REGION")
            .or_else(|| var("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".to_owned());
        let (endpoint, custom_endpoint) =
            match var("AWS_ENDPOINT_URL").or_else(|| var("AWS_ENDPOINT")) {
                Some(e) => (e.trim_end_matches('/').to_owned(), true),
                None => (format!("https://s3.{region}.amazonaws.com"), false),
            };
        if endpoint.starts_with("http://") {
            let allow = var("AWS_ALLOW_HTTP").is_some_and(|v| v.eq_ignore_ascii_case("true"));
            if !allow {
                return Err(S3Error::Config(format!(
                    "the S3 endpoint {endpoint} is plain HTTP: set AWS_ALLOW_HTTP=true to allow it"
                )));
            }
        } else if !endpoint.starts_with("https://") {
            return Err(S3Error::Config(format!(
                "bad S3 endpoint {endpoint:?} (want http:// or https://)"
            )));
        }
        let (Some(access_key), Some(secret_key)) =
            (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY"))
        else {
            return Err(S3Error::Config(
                "an s3:// root needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".to_owned(),
            ));
        };
        Ok(Self {
            bucket: bucket.to_owned(),
            prefix,
            region,
            endpoint,
            custom_endpoint,
            access_key,
            secret_key,
            session_token: var("AWS_SESSION_TOKEN"),
        })
    }
}

/// Tuning of the S3 backend.
#[derive(Debug, Clone)]
pub struct S3Options {
    /// A read records its use (a marker write) at most once per this period per
    /// object and instance. Keep it well below the retention.
    pub touch_granularity: Duration,
    /// Whether reads record their use at all: `false` when nothing is ever swept
    /// (`--retention 0`), which saves a marker write per object and period.
    pub record_use: bool,
}

impl Default for S3Options {
    fn default() -> Self {
        Self {
            touch_granularity: Duration::from_secs(60),
            record_use: true,
        }
    }
}

/// A [`Store`] in an S3 bucket. Cheap to clone.
#[derive(Clone)]
pub struct S3Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Store")
            .field("bucket", &self.inner.bucket.name())
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

struct Inner {
    http: reqwest::Client,
    bucket: Bucket,
    creds: Credentials,
    /// The endpoint URL as configured (for messages).
    endpoint: String,
    prefix: String,
    opts: S3Options,
    /// The last health verdict and when it was reached (see [`HEALTH_TTL`]).
    health: tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>,
    started: SystemTime,
    /// When this instance last wrote each object's use marker.
    touched: Mutex<HashMap<ObjectId, Instant>>,
    /// When this instance last wrote each object or its use marker, to the
    /// nanosecond: orders the listing within the engine's `LastModified`
    /// precision (a second on SeaweedFS). At most [`RECENT_MAX`] entries.
    recent: Mutex<HashMap<ObjectId, SystemTime>>,
    /// Unique per process: names temp keys and the lease.
    instance: String,
    counter: AtomicU64,
}

/// What a `HEAD` or `GET` says about an object.
#[derive(Debug, Clone)]
struct Head {
    len: u64,
    etag: String,
    kind: Option<Kind>,
    /// The slot version written with it (empty for content and foreign objects).
    version: String,
}

/// One key of a listing.
#[derive(Debug)]
struct Listed {
    key: String,
    etag: String,
    modified: SystemTime,
    size: u64,
}

/// A conditional write.
#[derive(Debug, Clone, Copy)]
enum Cond<'a> {
    /// Only if the name is unused.
    Absent,
    /// Only if the name holds this etag.
    Etag(&'a str),
}

/// A body on its way to the bucket: whole in memory when it fits one part,
/// else a completed temp object.
struct Staged {
    id: ObjectId,
    data: StagedData,
}

enum StagedData {
    Small(Bytes),
    Temp(TempKey),
}

/// A private temp key, deleted when dropped unless [`TempKey::remove`] ran.
struct TempKey {
    inner: Arc<Inner>,
    key: String,
    /// The multipart upload still open on it, if any.
    upload: Option<String>,
    done: bool,
}

impl TempKey {
    async fn remove(mut self) {
        self.done = true;
        cleanup(&self.inner, &self.key, self.upload.as_deref()).await;
    }
}

impl Drop for TempKey {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // Dropped mid-way (the request was cancelled): clean up in the background.
        let (inner, key, upload) = (self.inner.clone(), self.key.clone(), self.upload.take());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { cleanup(&inner, &key, upload.as_deref()).await });
        }
    }
}

async fn cleanup(inner: &Inner, key: &str, upload: Option<&str>) {
    let res = match upload {
        Some(id) => inner
            .request(
                "AbortMultipartUpload",
                Method::Delete,
                key,
                &[("uploadId", id)],
                &[],
                None,
            )
            .await
            .map(drop),
        None => inner.delete(key, None).await.map(drop),
    };
    if let Err(e) = res {
        tracing::warn!(key, error = %e, "cannot remove a temp object; the sweeper will");
    }
}

fn header_str<'h>(h: &'h HeaderMap, name: &str) -> Option<&'h str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn parse_kind(h: &HeaderMap) -> Option<Kind> {
    match header_str(h, KIND_HEADER) {
        Some("content") => Some(Kind::Content),
        Some("slot") => Some(Kind::Slot),
        _ => None,
    }
}

fn kind_str(kind: Kind) -> &'static str {
    match kind {
        Kind::Content => "content",
        Kind::Slot => "slot",
    }
}

/// The text between `<tag>` and `</tag>` in an S3 XML reply.
fn xml_field<'a>(body: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = body.find(&open)? + open.len();
    let end = body[start..].find(&format!("</{tag}>"))? + start;
    Some(&body[start..end])
}

fn parse_iso(s: &str) -> Option<SystemTime> {
    s.parse::<jiff::Timestamp>().ok().map(SystemTime::from)
}

impl Inner {
    fn url(
        &self,
        method: Method,
        key: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Result<reqwest::Url, S3Error> {
        let url = self
            .bucket
            .object_url(key)
            .map_err(|e| S3Error::Config(format!("bad key {key:?}: {e}")))?;
        let mut query = query.to_vec();
        query.sort_unstable();
        let mut headers = headers.to_vec();
        headers.sort_unstable();
        Ok(rusty_s3::signing::sign(
            &jiff::Timestamp::now(),
            method,
            url,
            self.creds.key(),
            self.creds.secret(),
            self.creds.token(),
            self.bucket.region(),
            SIGN_TTL,
            query.into_iter(),
            headers.into_iter(),
        ))
    }

    /// Sends one signed request; any status is returned (callers decide), except
    /// that a 500/502/503/504 (the engine's transient failures, e.g. SlowDown) or a
    /// failed connection is retried up to [`SEND_ATTEMPTS`] times, as S3 clients do.
    async fn request(
        &self,
        op: &'static str,
        method: Method,
        key: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: Option<Bytes>,
    ) -> Result<reqwest::Response, S3Error> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = attempt >= SEND_ATTEMPTS;
            match self
                .send_once(op, method, key, query, headers, body.clone())
                .await
            {
                Ok(r) if last || !matches!(r.status().as_u16(), 500 | 502 | 503 | 504) => {
                    return Ok(r);
                }
                Err(e @ S3Error::Http { .. }) if last => return Err(e),
                Err(e @ S3Error::Http { .. }) => {
                    tracing::debug!(error = %e, attempt, "S3 request failed; retrying");
                }
                Err(e) => return Err(e),
                Ok(r) => {
                    tracing::debug!(op, key, status = r.status().as_u16(), attempt, "retrying");
                }
            }
            tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
        }
    }

    async fn send_once(
        &self,
        op: &'static str,
        method: Method,
        key: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: Option<Bytes>,
    ) -> Result<reqwest::Response, S3Error> {
        let url = self.url(method, key, query, headers)?;
        let m = match method {
            Method::Head => reqwest::Method::HEAD,
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Delete => reqwest::Method::DELETE,
        };
        let mut req = self.http.request(m, url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        req.send().await.map_err(|e| S3Error::Http {
            op,
            key: key.to_owned(),
            source: e.without_url(),
        })
    }

    /// The error for an unexpected status, with the S3 error code from the body.
    async fn status_error(op: &'static str, key: &str, resp: reqwest::Response) -> S3Error {
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        let code = xml_field(&body, "Code").unwrap_or("").to_owned();
        S3Error::Status {
            op,
            key: key.to_owned(),
            status,
            code,
        }
    }

    async fn head(&self, key: &str) -> Result<Option<Head>, S3Error> {
        let resp = self
            .request("HeadObject", Method::Head, key, &[], &[], None)
            .await?;
        match resp.status().as_u16() {
            404 => Ok(None),
            200 => Ok(Some(head_of(resp.headers()))),
            _ => Err(Self::status_error("HeadObject", key, resp).await),
        }
    }

    /// `GET` (`None` on 404).
    async fn get(&self, key: &str) -> Result<Option<(Head, reqwest::Response)>, S3Error> {
        let resp = self
            .request("GetObject", Method::Get, key, &[], &[], None)
            .await?;
        match resp.status().as_u16() {
            404 => Ok(None),
            200 => Ok(Some((head_of(resp.headers()), resp))),
            _ => Err(Self::status_error("GetObject", key, resp).await),
        }
    }

    /// A conditional `PutObject`; `false` if the condition failed.
    async fn put(
        &self,
        key: &str,
        data: Bytes,
        kind: Option<Kind>,
        cond: Option<Cond<'_>>,
    ) -> Result<bool, S3Error> {
        let mut headers: Vec<(&str, &str)> = Vec::new();
        let version = self.new_version();
        if let Some(k) = kind {
            headers.push((KIND_HEADER, kind_str(k)));
            if k == Kind::Slot {
                headers.push((VERSION_HEADER, &version));
            }
        }
        push_cond(&mut headers, cond);
        let resp = self
            .request("PutObject", Method::Put, key, &[], &headers, Some(data))
            .await?;
        match resp.status().as_u16() {
            200 => Ok(true),
            412 | 409 => Ok(false),
            _ => Err(Self::status_error("PutObject", key, resp).await),
        }
    }

    /// A conditional server-side `CopyObject` that sets the kind; `false` if the
    /// condition failed.
    async fn copy(
        &self,
        from: &str,
        to: &str,
        kind: Kind,
        cond: Option<Cond<'_>>,
        source_etag: Option<&str>,
    ) -> Result<bool, S3Error> {
        let source = format!("/{}/{}", self.bucket.name(), from);
        let version = self.new_version();
        let mut headers: Vec<(&str, &str)> = vec![
            ("x-amz-copy-source", &source),
            ("x-amz-metadata-directive", "REPLACE"),
            (KIND_HEADER, kind_str(kind)),
        ];
        if kind == Kind::Slot {
            headers.push((VERSION_HEADER, &version));
        }
        if let Some(e) = source_etag {
            headers.push(("x-amz-copy-source-if-match", e));
        }
        push_cond(&mut headers, cond);
        let resp = self
            .request("CopyObject", Method::Put, to, &[], &headers, None)
            .await?;
        let status = resp.status().as_u16();
        match status {
            200 => {
                // A copy can fail after the 200 (an <Error> body).
                let body = resp.text().await.map_err(|e| S3Error::Http {
                    op: "CopyObject",
                    key: to.to_owned(),
                    source: e.without_url(),
                })?;
                match xml_field(&body, "Code") {
                    Some("PreconditionFailed") => Ok(false),
                    Some(code) => Err(S3Error::Status {
                        op: "CopyObject",
                        key: to.to_owned(),
                        status,
                        code: code.to_owned(),
                    }),
                    None => Ok(true),
                }
            }
            412 | 409 => Ok(false),
            _ => Err(Self::status_error("CopyObject", to, resp).await),
        }
    }

    /// `DeleteObject`, optionally only if the etag matches; `false` if it did not.
    async fn delete(&self, key: &str, if_match: Option<&str>) -> Result<bool, S3Error> {
        let mut headers = Vec::new();
        if let Some(e) = if_match {
            headers.push(("if-match", e));
        }
        let resp = self
            .request("DeleteObject", Method::Delete, key, &[], &headers, None)
            .await?;
        match resp.status().as_u16() {
            200 | 204 => Ok(true),
            404 | 412 => Ok(false),
            _ => Err(Self::status_error("DeleteObject", key, resp).await),
        }
    }

    /// Every key under `prefix` (relative to the bucket), following continuations.
    async fn list(&self, prefix: &str) -> Result<Vec<Listed>, S3Error> {
        self.list_with(prefix, None).await
    }

    /// Like [`Inner::list`]; with a `delimiter`, keys that contain it after the
    /// prefix are left out (S3 rolls them up into common prefixes).
    async fn list_with(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
    ) -> Result<Vec<Listed>, S3Error> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![("list-type", "2"), ("prefix", prefix)];
            if let Some(d) = delimiter {
                query.push(("delimiter", d));
            }
            if let Some(t) = &token {
                query.push(("continuation-token", t));
            }
            let resp = self
                .request("ListObjectsV2", Method::Get, "", &query, &[], None)
                .await?;
            if resp.status().as_u16() != 200 {
                return Err(Self::status_error("ListObjectsV2", prefix, resp).await);
            }
            let text = resp.text().await.map_err(|e| S3Error::Http {
                op: "ListObjectsV2",
                key: prefix.to_owned(),
                source: e.without_url(),
            })?;
            let page = rusty_s3::actions::ListObjectsV2::parse_response(&text).map_err(|e| {
                S3Error::Reply {
                    op: "ListObjectsV2",
                    detail: e.to_string(),
                }
            })?;
            for c in page.contents {
                let Some(modified) = parse_iso(&c.last_modified) else {
                    return Err(S3Error::Reply {
                        op: "ListObjectsV2",
                        detail: format!("bad LastModified {:?}", c.last_modified),
                    });
                };
                out.push(Listed {
                    key: c.key,
                    etag: c.etag,
                    modified,
                    size: c.size,
                });
            }
            match page.next_continuation_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(out),
            }
        }
    }

    /// Remembers that this instance just wrote `id` or its use marker.
    fn note_recent(&self, id: ObjectId) {
        let now = SystemTime::now();
        let mut map = lock(&self.recent);
        if map.len() >= RECENT_MAX {
            // Only the last seconds matter (see `listed_time`).
            map.retain(|_, t| {
                now.duration_since(*t)
                    .is_ok_and(|a| a < Duration::from_secs(10))
            });
            if map.len() >= RECENT_MAX {
                map.clear();
            }
        }
        map.insert(id, now);
    }

    /// Whether the bucket answers and lets us in: one `ListObjectsV2` of at most
    /// one key under the prefix, not retried, bounded by `timeout`. Used at
    /// start-up (bad configuration fails there) and by [`Store::health`].
    async fn probe(&self, timeout: Duration) -> Result<(), S3Error> {
        let url = self.url(
            Method::Get,
            "",
            &[
                ("list-type", "2"),
                ("max-keys", "1"),
                ("prefix", &self.prefix),
            ],
            &[],
        )?;
        let resp = self
            .http
            .get(url)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| S3Error::Unreachable {
                endpoint: self.endpoint.clone(),
                source: e.without_url(),
            })?;
        let status = resp.status().as_u16();
        if status == 200 {
            return Ok(());
        }
        let body = resp.text().await.unwrap_or_default();
        let code = xml_field(&body, "Code").unwrap_or("");
        let b = self.bucket.name();
        let e = &self.endpoint;
        Err(S3Error::Config(match (status, code) {
            (404, _) | (_, "NoSuchBucket") => format!("S3 bucket {b} does not exist at {e}"),
            (401 | 403, _) => format!(
                "S3 access to bucket {b} at {e} denied ({code}): check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            ),
            _ => format!("S3 bucket {b} at {e}: HTTP {status} {code}"),
        }))
    }

    /// A slot version unique across instances and writes.
    fn new_version(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!("{}-{nanos:x}-{n}", self.instance)
    }

    fn obj_key(&self, id: ObjectId) -> String {
        format!("{}{}", self.prefix, id.file_name())
    }

    fn used_key(&self, id: ObjectId) -> String {
        format!("{}.tig/used/{}", self.prefix, id.to_hex())
    }

    fn temp_prefix(&self) -> String {
        format!("{}.tig/tmp/", self.prefix)
    }

    fn lease_key(&self) -> String {
        format!("{}.tig/lease", self.prefix)
    }
}

fn push_cond<'a>(headers: &mut Vec<(&'a str, &'a str)>, cond: Option<Cond<'a>>) {
    match cond {
        Some(Cond::Absent) => headers.push(("if-none-match", "*")),
        Some(Cond::Etag(e)) => headers.push(("if-match", e)),
        None => {}
    }
}

fn head_of(h: &HeaderMap) -> Head {
    Head {
        len: header_str(h, "content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        etag: header_str(h, "etag").unwrap_or("").to_owned(),
        kind: parse_kind(h),
        version: header_str(h, VERSION_HEADER).unwrap_or("").to_owned(),
    }
}

fn body_stream(resp: reqwest::Response) -> BodyStream {
    Box::pin(resp.bytes_stream().map_err(io::Error::other))
}

impl S3Store {
    /// Connects to the bucket and checks that it exists and the credentials work
    /// (one listing request), so bad configuration fails at start-up.
    pub async fn open(config: &S3Config, opts: S3Options) -> Result<Self, S3Error> {
        let endpoint: reqwest::Url = config
            .endpoint
            .parse()
            .map_err(|e| S3Error::Config(format!("bad S3 endpoint {:?}: {e}", config.endpoint)))?;
        let style = if config.custom_endpoint {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket = Bucket::new(
            endpoint,
            style,
            config.bucket.clone(),
            config.region.clone(),
        )
        .map_err(|e| S3Error::Config(format!("bad S3 endpoint {:?}: {e}", config.endpoint)))?;
        let creds = match &config.session_token {
            Some(t) => Credentials::new_with_token(&config.access_key, &config.secret_key, t),
            None => Credentials::new(&config.access_key, &config.secret_key),
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| S3Error::Config(format!("cannot build the HTTP client: {e}")))?;
        let seed = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
        let inner = Inner {
            http,
            bucket,
            creds,
            endpoint: config.endpoint.clone(),
            prefix: config.prefix.clone(),
            opts,
            health: tokio::sync::Mutex::new(None),
            started: SystemTime::now(),
            touched: Mutex::new(HashMap::new()),
            recent: Mutex::new(HashMap::new()),
            instance: format!("{:x}-{seed:016x}", std::process::id()),
            counter: AtomicU64::new(0),
        };
        inner.probe(Duration::from_secs(30)).await?;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// Streams `body` through the hash into a buffer of [`PART`] bytes, and beyond
    /// that into a multipart upload to a temp key.
    async fn stage(&self, mut body: BodyStream, limit: u64) -> Result<Staged, StoreError> {
        let mut hasher = Hasher::new();
        let mut len = 0u64;
        let mut buf = BytesMut::new();
        let mut temp: Option<(TempKey, Vec<String>)> = None;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(StoreError::Body)?;
            len += chunk.len() as u64;
            if len > limit {
                return Err(StoreError::TooLarge { limit });
            }
            hasher.update(&chunk);
            let mut rest = &chunk[..];
            while !rest.is_empty() {
                if buf.is_empty() {
                    buf.reserve(PART);
                }
                let n = rest.len().min(PART - buf.len());
                buf.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
                if buf.len() == PART {
                    let part = buf.split().freeze();
                    let t = match &mut temp {
                        Some(t) => t,
                        None => temp.insert((self.start_upload().await?, Vec::new())),
                    };
                    self.upload_part(&t.0, &mut t.1, part).await?;
                }
            }
        }
        let id = hasher.finish();
        let Some((mut t, mut etags)) = temp else {
            return Ok(Staged {
                id,
                data: StagedData::Small(buf.freeze()),
            });
        };
        if !buf.is_empty() {
            self.upload_part(&t, &mut etags, buf.freeze()).await?;
        }
        self.complete_upload(&mut t, &etags).await?;
        Ok(Staged {
            id,
            data: StagedData::Temp(t),
        })
    }

    async fn start_upload(&self) -> Result<TempKey, StoreError> {
        let inner = &self.inner;
        let mut temp = self.new_temp_key();
        let key = temp.key.clone();
        let resp = inner
            .request(
                "CreateMultipartUpload",
                Method::Post,
                &key,
                &[("uploads", "")],
                &[],
                None,
            )
            .await?;
        if resp.status().as_u16() != 200 {
            return Err(Inner::status_error("CreateMultipartUpload", &key, resp)
                .await
                .into());
        }
        let text = resp.text().await.map_err(|e| S3Error::Http {
            op: "CreateMultipartUpload",
            key: key.clone(),
            source: e.without_url(),
        })?;
        let upload = xml_field(&text, "UploadId").ok_or_else(|| S3Error::Reply {
            op: "CreateMultipartUpload",
            detail: "no UploadId".to_owned(),
        })?;
        temp.upload = Some(upload.to_owned());
        Ok(temp)
    }

    async fn upload_part(
        &self,
        t: &TempKey,
        etags: &mut Vec<String>,
        part: Bytes,
    ) -> Result<(), StoreError> {
        let upload = t.upload.as_deref().unwrap_or_default();
        let number = (etags.len() + 1).to_string();
        let resp = self
            .inner
            .request(
                "UploadPart",
                Method::Put,
                &t.key,
                &[("partNumber", &number), ("uploadId", upload)],
                &[],
                Some(part),
            )
            .await?;
        if resp.status().as_u16() != 200 {
            return Err(Inner::status_error("UploadPart", &t.key, resp).await.into());
        }
        let etag = header_str(resp.headers(), "etag").ok_or_else(|| S3Error::Reply {
            op: "UploadPart",
            detail: "no ETag".to_owned(),
        })?;
        etags.push(etag.to_owned());
        Ok(())
    }

    async fn complete_upload(&self, t: &mut TempKey, etags: &[String]) -> Result<(), StoreError> {
        let upload = t.upload.clone().unwrap_or_default();
        let body = rusty_s3::actions::CompleteMultipartUpload::new(
            &self.inner.bucket,
            None,
            &t.key,
            &upload,
            etags.iter().map(String::as_str),
        )
        .body();
        let resp = self
            .inner
            .request(
                "CompleteMultipartUpload",
                Method::Post,
                &t.key,
                &[("uploadId", &upload)],
                &[],
                Some(Bytes::from(body)),
            )
            .await?;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        if status != 200 || text.contains("<Error>") {
            return Err(S3Error::Status {
                op: "CompleteMultipartUpload",
                key: t.key.clone(),
                status,
                code: xml_field(&text, "Code").unwrap_or("").to_owned(),
            }
            .into());
        }
        t.upload = None;
        Ok(())
    }

    /// Writes staged bytes under `key` if `cond` holds; `false` if it did not.
    async fn publish(
        &self,
        staged: &Staged,
        key: &str,
        kind: Kind,
        cond: Cond<'_>,
    ) -> Result<bool, StoreError> {
        Ok(match &staged.data {
            StagedData::Small(b) => {
                self.inner
                    .put(key, b.clone(), Some(kind), Some(cond))
                    .await?
            }
            StagedData::Temp(t) => self.inner.copy(&t.key, key, kind, Some(cond), None).await?,
        })
    }

    async fn discard(staged: Staged) {
        if let StagedData::Temp(t) = staged.data {
            t.remove().await;
        }
    }

    /// The kind of an object: its metadata, else (written by another tool) its hash.
    async fn kind_of(&self, id: ObjectId, head: &Head) -> Result<Kind, StoreError> {
        if let Some(k) = head.kind {
            return Ok(k);
        }
        let Some((_, resp)) = self.inner.get(&self.inner.obj_key(id)).await? else {
            return Ok(Kind::Slot);
        };
        let mut hasher = Hasher::new();
        let mut s = body_stream(resp);
        while let Some(c) = s.next().await {
            hasher.update(&c?);
        }
        Ok(if hasher.finish() == id {
            Kind::Content
        } else {
            Kind::Slot
        })
    }

    /// Length, kind and version of an object from its headers.
    async fn meta_of(&self, id: ObjectId, head: &Head) -> Result<ObjectMeta, StoreError> {
        let kind = self.kind_of(id, head).await?;
        let version = match kind {
            Kind::Content => String::new(),
            Kind::Slot if !head.version.is_empty() => head.version.clone(),
            // Written by another tool: its etag, trimmed to the allowed characters.
            Kind::Slot => head
                .etag
                .bytes()
                .filter(|b| b.is_ascii_alphanumeric() || b"-_.".contains(b))
                .map(char::from)
                .collect(),
        };
        Ok(ObjectMeta {
            len: head.len,
            kind,
            version,
        })
    }

    /// Records a use of `id` (at most once per granularity per instance).
    async fn touch(&self, id: ObjectId) {
        if !self.inner.opts.record_use {
            return;
        }
        let now = Instant::now();
        let every = self.inner.opts.touch_granularity;
        {
            let mut map = self.inner.touched.lock().unwrap_or_else(|p| p.into_inner());
            if map.get(&id).is_some_and(|t| now.duration_since(*t) < every) {
                return;
            }
            if map.len() >= 100_000 {
                map.retain(|_, t| now.duration_since(*t) < every);
            }
            map.insert(id, now);
        }
        match self
            .inner
            .put(&self.inner.used_key(id), Bytes::new(), None, None)
            .await
        {
            Ok(_) => self.inner.note_recent(id),
            Err(e) => tracing::warn!(%id, error = %e, "cannot record the last use"),
        }
    }

    /// After `id` was deleted: drop its use marker too.
    async fn forget(&self, id: ObjectId) {
        if let Err(e) = self.inner.delete(&self.inner.used_key(id), None).await {
            tracing::warn!(%id, error = %e, "cannot delete the use marker");
        }
        lock(&self.inner.touched).remove(&id);
        lock(&self.inner.recent).remove(&id);
    }

    /// A fresh private temp key (deleted when dropped).
    fn new_temp_key(&self) -> TempKey {
        let inner = &self.inner;
        let n = inner.counter.fetch_add(1, Ordering::Relaxed);
        TempKey {
            inner: self.inner.clone(),
            key: format!("{}{}-{n}", inner.temp_prefix(), inner.instance),
            upload: None,
            done: false,
        }
    }

    /// Marks `id` as just written by this instance (its own `LastModified` is new).
    fn written(&self, id: ObjectId) {
        lock(&self.inner.touched).remove(&id);
        self.inner.note_recent(id);
    }

    async fn backoff(attempt: u32) {
        // Jittered, growing to ~50 ms: enough for 50 writers on one slot to drain.
        let jitter = std::collections::hash_map::RandomState::new().hash_one(attempt) % 20;
        let ms = u64::from(attempt.min(30)) + jitter;
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    async fn put_slot_inner(
        &self,
        id: ObjectId,
        body: BodyStream,
        limit: u64,
        mode: SlotWrite,
    ) -> Result<SlotOutcome, StoreError> {
        let key = self.inner.obj_key(id);
        match mode {
            SlotWrite::IfAbsent => {
                let staged = self.stage(body, limit).await?;
                let kind = if staged.id == id {
                    Kind::Content
                } else {
                    Kind::Slot
                };
                let created = self.publish(&staged, &key, kind, Cond::Absent).await;
                Self::discard(staged).await;
                if matches!(created, Ok(true)) {
                    self.written(id);
                }
                Ok(if created? {
                    SlotOutcome::Created
                } else {
                    SlotOutcome::Existed
                })
            }
            SlotWrite::Replace => {
                let staged = self.stage(body, limit).await?;
                let res = self.replace(id, &key, &staged).await;
                Self::discard(staged).await;
                res
            }
            SlotWrite::Append => {
                // The appended bytes are needed once per attempt: keep them.
                let mut more = BytesMut::new();
                let mut body = body;
                while let Some(c) = body.next().await {
                    let c = c.map_err(StoreError::Body)?;
                    if (more.len() + c.len()) as u64 > limit {
                        return Err(StoreError::TooLarge { limit });
                    }
                    more.extend_from_slice(&c);
                }
                let more = more.freeze();
                for attempt in 0..CAS_ATTEMPTS {
                    if self.append_once(id, &key, more.clone()).await? {
                        self.written(id);
                        return Ok(SlotOutcome::Written);
                    }
                    Self::backoff(attempt).await;
                }
                Err(StoreError::Io(io::Error::other(format!(
                    "append to {id}: gave up after {CAS_ATTEMPTS} concurrent updates"
                ))))
            }
        }
    }

    async fn replace(
        &self,
        id: ObjectId,
        key: &str,
        staged: &Staged,
    ) -> Result<SlotOutcome, StoreError> {
        let kind = if staged.id == id {
            Kind::Content
        } else {
            Kind::Slot
        };
        for attempt in 0..CAS_ATTEMPTS {
            let written = match self.inner.head(key).await? {
                Some(h) if self.kind_of(id, &h).await? == Kind::Content => {
                    return Err(StoreError::Immutable(id));
                }
                Some(h) => self.publish(staged, key, kind, Cond::Etag(&h.etag)).await?,
                None => self.publish(staged, key, kind, Cond::Absent).await?,
            };
            if written {
                self.written(id);
                return Ok(SlotOutcome::Written);
            }
            Self::backoff(attempt).await;
        }
        Err(StoreError::Io(io::Error::other(format!(
            "replace {id}: gave up after {CAS_ATTEMPTS} concurrent updates"
        ))))
    }

    /// One compare-and-swap of an append; `false` if another writer came first.
    async fn append_once(&self, id: ObjectId, key: &str, more: Bytes) -> Result<bool, StoreError> {
        let Some((head, resp)) = self.inner.get(key).await? else {
            let staged = self.stage(crate::body_from_bytes(more), u64::MAX).await?;
            let kind = if staged.id == id {
                Kind::Content
            } else {
                Kind::Slot
            };
            let res = self.publish(&staged, key, kind, Cond::Absent).await;
            Self::discard(staged).await;
            return res;
        };
        if self.kind_of(id, &head).await? == Kind::Content {
            return Err(StoreError::Immutable(id));
        }
        let old = body_stream(resp);
        let all: BodyStream = Box::pin(old.chain(crate::body_from_bytes(more)));
        let staged = self.stage(all, u64::MAX).await?;
        let kind = if staged.id == id {
            Kind::Content
        } else {
            Kind::Slot
        };
        let res = self
            .publish(&staged, key, kind, Cond::Etag(&head.etag))
            .await;
        Self::discard(staged).await;
        res
    }

    /// Every object with its last use (`LastModified` of the object or of its
    /// use marker, whichever is newer), plus the keys the sweeper may clean up.
    async fn scan(&self) -> Result<Scan, StoreError> {
        let inner = &self.inner;
        let all = inner.list(&inner.prefix).await?;
        let mut objects: HashMap<ObjectId, (SystemTime, String)> = HashMap::new();
        let mut used: HashMap<ObjectId, (SystemTime, String)> = HashMap::new();
        let mut temps = Vec::new();
        let used_prefix = ".tig/used/";
        for l in all {
            let Some(rel) = l.key.strip_prefix(&inner.prefix) else {
                continue;
            };
            if let Some(id) = ObjectId::from_file_name(rel) {
                objects.insert(id, (l.modified, l.etag));
            } else if let Some(hex) = rel.strip_prefix(used_prefix) {
                if let Ok(id) = ObjectId::from_hex(hex) {
                    used.insert(id, (l.modified, l.key));
                }
            } else if rel.starts_with(".tig/tmp/") {
                temps.push(l);
            }
        }
        let mut out = Scan {
            objects: Vec::with_capacity(objects.len()),
            orphans: Vec::new(),
            temps,
        };
        for (id, (modified, etag)) in &objects {
            let last = match used.get(id) {
                Some((u, _)) => (*u).max(*modified),
                None => *modified,
            };
            out.objects.push((*id, last, etag.clone()));
        }
        for (id, (_, key)) in used {
            if !objects.contains_key(&id) {
                out.orphans.push(key);
            }
        }
        Ok(out)
    }

    /// Takes the sweeper's lease; `None` if another instance holds a fresh one.
    async fn take_lease(&self) -> Result<Option<String>, StoreError> {
        let inner = &self.inner;
        let key = inner.lease_key();
        for _ in 0..2 {
            let body = format!("{} {:?}\n", inner.instance, SystemTime::now());
            if inner
                .put(&key, Bytes::from(body), None, Some(Cond::Absent))
                .await?
            {
                // Our etag, to release only our own lease.
                return Ok(inner.head(&key).await?.map(|h| h.etag));
            }
            let Some((h, resp)) = inner.get(&key).await? else {
                continue;
            };
            let modified = resp
                .headers()
                .get("last-modified")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| httpdate::parse_http_date(v).ok());
            drop(resp);
            let stale = modified.is_none_or(|m| {
                SystemTime::now()
                    .duration_since(m)
                    .is_ok_and(|age| age > LEASE_TTL)
            });
            if !stale {
                return Ok(None);
            }
            tracing::warn!("taking over an abandoned sweeper lease");
            inner.delete(&key, Some(&h.etag)).await?;
        }
        Ok(None)
    }

    /// Deletes every object unused for `retention` counting from `now`.
    async fn sweep_at(&self, retention: Duration, now: SystemTime) -> Result<usize, StoreError> {
        let Some(lease) = self.take_lease().await? else {
            tracing::debug!("another instance is sweeping");
            return Ok(0);
        };
        let res = self.sweep_leased(retention, now).await;
        if let Err(e) = self
            .inner
            .delete(&self.inner.lease_key(), Some(&lease))
            .await
        {
            tracing::warn!(error = %e, "cannot release the sweeper lease");
        }
        res
    }

    async fn sweep_leased(
        &self,
        retention: Duration,
        now: SystemTime,
    ) -> Result<usize, StoreError> {
        let inner = &self.inner;
        let scan = self.scan().await?;
        let mut deleted = 0;
        for (id, last, etag) in scan.objects {
            if !expired(last, inner.started, now, retention) {
                continue;
            }
            // Only the version we judged: a rewrite meanwhile keeps it.
            if inner.delete(&inner.obj_key(id), Some(&etag)).await? {
                tracing::debug!(%id, "retention: deleted");
                deleted += 1;
                inner.delete(&inner.used_key(id), None).await?;
            }
        }
        for key in scan.orphans {
            inner.delete(&key, None).await?;
        }
        for t in scan.temps {
            if now
                .duration_since(t.modified)
                .is_ok_and(|age| age > TEMP_TTL)
            {
                inner.delete(&t.key, None).await?;
            }
        }
        self.abort_abandoned_uploads(now).await?;
        Ok(deleted)
    }

    /// Aborts multipart uploads to temp keys that were started over
    /// [`TEMP_TTL`] ago (their writer died).
    async fn abort_abandoned_uploads(&self, now: SystemTime) -> Result<(), StoreError> {
        let inner = &self.inner;
        let prefix = inner.temp_prefix();
        let resp = inner
            .request(
                "ListMultipartUploads",
                Method::Get,
                "",
                &[("uploads", ""), ("prefix", &prefix)],
                &[],
                None,
            )
            .await?;
        if resp.status().as_u16() != 200 {
            return Err(Inner::status_error("ListMultipartUploads", &prefix, resp)
                .await
                .into());
        }
        let text = resp.text().await.unwrap_or_default();
        for upload in text.split("<Upload>").skip(1) {
            let (Some(key), Some(id), Some(when)) = (
                xml_field(upload, "Key"),
                xml_field(upload, "UploadId"),
                xml_field(upload, "Initiated").and_then(parse_iso),
            ) else {
                continue;
            };
            if key.starts_with(&prefix) && now.duration_since(when).is_ok_and(|age| age > TEMP_TTL)
            {
                cleanup(inner, key, Some(id)).await;
            }
        }
        Ok(())
    }
}

/// What [`S3Store::scan`] found.
struct Scan {
    /// Objects with their last use and etag.
    objects: Vec<(ObjectId, SystemTime, String)>,
    /// Use markers of objects that are gone.
    orphans: Vec<String>,
    /// Temp keys.
    temps: Vec<Listed>,
}

impl Store for S3Store {
    async fn put_content(&self, body: BodyStream, limit: u64) -> Result<ObjectId, StoreError> {
        let staged = self.stage(body, limit).await?;
        let id = staged.id;
        let key = self.inner.obj_key(id);
        let res = async {
            for _ in 0..CAS_ATTEMPTS {
                if self
                    .publish(&staged, &key, Kind::Content, Cond::Absent)
                    .await?
                {
                    self.written(id);
                    return Ok(id);
                }
                match self.inner.head(&key).await? {
                    Some(h) if self.kind_of(id, &h).await? == Kind::Content => {
                        self.touch(id).await;
                        return Ok(id);
                    }
                    Some(_) => return Err(StoreError::SlotConflict(id)),
                    // Deleted between our put and our look: try again.
                    None => {}
                }
            }
            Err(StoreError::Io(io::Error::other(format!(
                "{id}: the name keeps changing"
            ))))
        }
        .await;
        Self::discard(staged).await;
        res
    }

    async fn put_slot(
        &self,
        id: ObjectId,
        body: BodyStream,
        limit: u64,
        mode: SlotWrite,
    ) -> Result<SlotOutcome, StoreError> {
        self.put_slot_inner(id, body, limit, mode).await
    }

    async fn get(&self, id: ObjectId, touch: bool) -> Result<Option<Object>, StoreError> {
        let Some((head, resp)) = self.inner.get(&self.inner.obj_key(id)).await? else {
            return Ok(None);
        };
        let meta = self.meta_of(id, &head).await?;
        if touch {
            self.touch(id).await;
        }
        Ok(Some(Object::whole(
            meta,
            ObjectBody::Stream(body_stream(resp)),
        )))
    }

    async fn get_range(
        &self,
        id: ObjectId,
        touch: bool,
        range: ByteRange,
    ) -> Result<Option<Object>, StoreError> {
        let key = self.inner.obj_key(id);
        let wire = match range {
            ByteRange::Closed(a, b) => format!("bytes={a}-{b}"),
            ByteRange::From(a) => format!("bytes={a}-"),
            ByteRange::Suffix(0) => {
                // Selects nothing of any object; S3 has no way to say so.
                let Some(h) = self.inner.head(&key).await? else {
                    return Ok(None);
                };
                return Err(StoreError::RangeNotSatisfiable { len: h.len });
            }
            ByteRange::Suffix(n) => format!("bytes=-{n}"),
        };
        let resp = self
            .inner
            .request(
                "GetObject",
                Method::Get,
                &key,
                &[],
                &[("range", &wire)],
                None,
            )
            .await?;
        let status = resp.status().as_u16();
        let content_range = header_str(resp.headers(), "content-range").map(str::to_owned);
        let total = content_range
            .as_deref()
            .and_then(|v| v.rsplit_once('/'))
            .and_then(|(_, t)| t.trim().parse::<u64>().ok());
        let (head, r) = match status {
            404 => return Ok(None),
            416 => {
                let len = match total {
                    Some(t) => t,
                    None => self.inner.head(&key).await?.map_or(0, |h| h.len),
                };
                return Err(StoreError::RangeNotSatisfiable { len });
            }
            206 => {
                let mut head = head_of(resp.headers());
                let part = head.len;
                let start = content_range
                    .as_deref()
                    .and_then(|v| v.strip_prefix("bytes "))
                    .and_then(|v| v.split_once('-'))
                    .and_then(|(a, _)| a.parse::<u64>().ok());
                let (Some(total), Some(start)) = (total, start) else {
                    return Err(S3Error::Reply {
                        op: "GetObject",
                        detail: "206 without a Content-Range".to_owned(),
                    }
                    .into());
                };
                head.len = total;
                (head, start..start + part)
            }
            200 => {
                // The engine ignored the range: only right for an empty object.
                let head = head_of(resp.headers());
                match range.resolve(head.len) {
                    None => return Err(StoreError::RangeNotSatisfiable { len: head.len }),
                    Some(r) if r == (0..head.len) => (head, r),
                    Some(_) => {
                        return Err(S3Error::Reply {
                            op: "GetObject",
                            detail: "the engine ignored a Range header".to_owned(),
                        }
                        .into());
                    }
                }
            }
            _ => return Err(Inner::status_error("GetObject", &key, resp).await.into()),
        };
        let meta = self.meta_of(id, &head).await?;
        if touch {
            self.touch(id).await;
        }
        Ok(Some(Object {
            len: r.end - r.start,
            meta,
            range: r,
            body: ObjectBody::Stream(body_stream(resp)),
        }))
    }

    async fn stat(&self, id: ObjectId, touch: bool) -> Result<Option<ObjectMeta>, StoreError> {
        let Some(head) = self.inner.head(&self.inner.obj_key(id)).await? else {
            return Ok(None);
        };
        let meta = self.meta_of(id, &head).await?;
        if touch {
            self.touch(id).await;
        }
        Ok(Some(meta))
    }

    async fn take(&self, id: ObjectId) -> Result<Object, StoreError> {
        let key = self.inner.obj_key(id);
        for attempt in 0..CAS_ATTEMPTS {
            let Some((head, resp)) = self.inner.get(&key).await? else {
                return Err(StoreError::NotFound(id));
            };
            let meta = self.meta_of(id, &head).await?;
            if meta.kind == Kind::Content {
                return Err(StoreError::Immutable(id));
            }
            if head.len <= PART as u64 {
                // Small: the bytes in memory, then delete exactly what we read.
                let data = resp.bytes().await.map_err(|e| S3Error::Http {
                    op: "GetObject",
                    key: key.clone(),
                    source: e.without_url(),
                })?;
                if self.inner.delete(&key, Some(&head.etag)).await? {
                    self.forget(id).await;
                    return Ok(Object::whole(meta, ObjectBody::Full(data)));
                }
            } else {
                // Large: a private copy of exactly what we read, then the
                // conditional delete; the copy streams back and is removed after.
                drop(resp);
                let temp = self.new_temp_key();
                let copied = self
                    .inner
                    .copy(&key, &temp.key, Kind::Slot, None, Some(&head.etag))
                    .await?;
                if copied && self.inner.delete(&key, Some(&head.etag)).await? {
                    self.forget(id).await;
                    let Some((_, resp)) = self.inner.get(&temp.key).await? else {
                        return Err(S3Error::Reply {
                            op: "GetObject",
                            detail: "the taken copy vanished".to_owned(),
                        }
                        .into());
                    };
                    let body = body_stream(resp).map(move |c| {
                        // The temp key lives (and is deleted) with the stream.
                        let _ = &temp;
                        c
                    });
                    return Ok(Object::whole(meta, ObjectBody::Stream(Box::pin(body))));
                }
                temp.remove().await;
            }
            // Changed or taken meanwhile: look again.
            Self::backoff(attempt).await;
        }
        Err(StoreError::Io(io::Error::other(format!(
            "take {id}: gave up after {CAS_ATTEMPTS} concurrent updates"
        ))))
    }

    async fn delete_slot(&self, id: ObjectId) -> Result<(), StoreError> {
        let key = self.inner.obj_key(id);
        for attempt in 0..CAS_ATTEMPTS {
            let Some(h) = self.inner.head(&key).await? else {
                return Err(StoreError::NotFound(id));
            };
            if self.kind_of(id, &h).await? == Kind::Content {
                return Err(StoreError::Immutable(id));
            }
            if self.inner.delete(&key, Some(&h.etag)).await? {
                self.forget(id).await;
                return Ok(());
            }
            Self::backoff(attempt).await;
        }
        Err(StoreError::Io(io::Error::other(format!(
            "delete {id}: gave up after {CAS_ATTEMPTS} concurrent updates"
        ))))
    }

    async fn list(&self) -> Result<Vec<ObjectId>, StoreError> {
        let all = self.scan().await?.objects;
        let mut all: Vec<(SystemTime, ObjectId)> = {
            let recent = lock(&self.inner.recent);
            all.into_iter()
                .map(|(id, last, _)| (listed_time(last, recent.get(&id).copied()), id))
                .collect()
        };
        all.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.as_bytes().cmp(b.1.as_bytes())));
        Ok(all.into_iter().map(|(_, id)| id).collect())
    }

    async fn sweep(&self, retention: Duration) -> Result<usize, StoreError> {
        if retention.is_zero() {
            return Ok(0);
        }
        self.sweep_at(retention, SystemTime::now()).await
    }

    /// The sizes of the bucket listing alone: no `HEAD` per object. The listing
    /// stops at `/` after the prefix, so the use markers, temp keys and lease under
    /// `.tig/` are not even listed (one request per 1000 objects).
    async fn usage(&self) -> Result<crate::Usage, StoreError> {
        let inner = &self.inner;
        let mut usage = crate::Usage::default();
        for l in inner.list_with(&inner.prefix, Some("/")).await? {
            let rel = l.key.strip_prefix(&inner.prefix).unwrap_or_default();
            if ObjectId::from_file_name(rel).is_some() {
                usage.objects += 1;
                usage.bytes += l.size;
            }
        }
        Ok(usage)
    }

    /// One [`Inner::probe`] per [`HEALTH_TTL`], shared by concurrent callers.
    async fn health(&self) -> Result<(), StoreError> {
        let mut last = self.inner.health.lock().await;
        let verdict = match &*last {
            Some((at, verdict)) if at.elapsed() < HEALTH_TTL => verdict.clone(),
            _ => {
                let verdict = self
                    .inner
                    .probe(HEALTH_TIMEOUT)
                    .await
                    .map_err(|e| error_line(&e));
                *last = Some((Instant::now(), verdict.clone()));
                verdict
            }
        };
        verdict.map_err(|line| StoreError::Io(io::Error::other(line)))
    }
}

/// The last use of an object for ordering the listing: `listed` (the engine's
/// time, truncated to its precision) refined by `mine`, when this instance wrote
/// the object or its marker itself, unless the listing shows a later use.
fn listed_time(listed: SystemTime, mine: Option<SystemTime>) -> SystemTime {
    match mine {
        // `listed` may be up to a second behind the true time.
        Some(t) if t + Duration::from_secs(1) > listed => t.max(listed),
        _ => listed,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// An error and its sources on one line (`a: b: c`), repeated texts once.
fn error_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut line = e.to_string();
    let mut last = line.clone();
    let mut next = e.source();
    while let Some(s) = next {
        let text = s.to_string();
        if text != last && !last.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        last = text;
        next = s.source();
    }
    line
}

#[cfg(test)]
#[path = "../../tig/tests/common/weed.rs"]
mod weed;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{body_from_bytes, conformance};

    fn config(weed: &weed::Weed, bucket: &str, prefix: &str) -> S3Config {
        let env: HashMap<&str, String> = weed.env().into_iter().collect();
        let root = format!("s3://{bucket}/{prefix}");
        S3Config::from_env(&root, |k| env.get(k).cloned()).expect("config")
    }

    /// The shared SeaweedFS, its shared bucket and a fresh key prefix; `None` when
    /// skipped (SeaweedFS missing outside CI).
    async fn place() -> Option<(&'static weed::Weed, String, String)> {
        let weed = tokio::task::spawn_blocking(weed::Weed::shared)
            .await
            .expect("start weed")?;
        let bucket = tokio::task::spawn_blocking(|| weed.shared_bucket())
            .await
            .expect("bucket");
        Some((weed, bucket, weed::unique_prefix()))
    }

    /// A store on a fresh prefix of the shared SeaweedFS; `None` when skipped.
    async fn store() -> Option<((), S3Store)> {
        let (weed, bucket, prefix) = place().await?;
        let prefix = format!("{prefix}/q");
        let store = S3Store::open(&config(weed, &bucket, &prefix), S3Options::default())
            .await
            .expect("open");
        Some(((), store))
    }

    conformance::suite!(optional store);

    #[test]
    fn config_from_url_and_env() {
        let env = |k: &str| match k {
            "AWS_ACCESS_KEY_ID" => Some("k".to_owned()),
            "AWS_SECRET_ACCESS_KEY" => Some("s".to_owned()),
            "AWS_ENDPOINT" => Some("http://127.0.0.1:9000/".to_owned()),
            "AWS_ALLOW_HTTP" => Some("true".to_owned()),
            _ => None,
        };
        let c = S3Config::from_env("s3://bkt/a/b/", env).unwrap();
        assert_eq!((c.bucket.as_str(), c.prefix.as_str()), ("bkt", "a/b/"));
        assert_eq!(c.region, "us-east-1");
        assert_eq!(c.endpoint, "http://127.0.0.1:9000");
        let c = S3Config::from_env("s3://bkt", env).unwrap();
        assert_eq!(c.prefix, "");
        // Plain HTTP needs AWS_ALLOW_HTTP=true; keys are required; names are checked.
        let no_http = |k: &str| if k == "AWS_ALLOW_HTTP" { None } else { env(k) };
        let e = S3Config::from_env("s3://bkt", no_http).unwrap_err();
        assert!(e.to_string().contains("AWS_ALLOW_HTTP=true"), "{e}");
        let e = S3Config::from_env("s3://bkt", |k| {
            if k == "AWS_SECRET_ACCESS_KEY" {
                None
            } else {
                env(k)
            }
        })
        .unwrap_err();
        assert!(e.to_string().contains("AWS_SECRET_ACCESS_KEY"), "{e}");
        assert!(S3Config::from_env("s3://", env).is_err());
        assert!(S3Config::from_env("s3://Bad_Name/x", env).is_err());
        // Without an endpoint: AWS itself, in the region.
        let aws = |k: &str| match k {
            "AWS_ENDPOINT" | "AWS_ALLOW_HTTP" => None,
            "AWS_REGION" => Some("eu-west-1".to_owned()),
            _ => env(k),
        };
        let c = S3Config::from_env("s3://bkt", aws).unwrap();
        assert_eq!(c.endpoint, "https://s3.eu-west-1.amazonaws.com");
    }

    async fn read_all(store: &S3Store, id: ObjectId) -> Vec<u8> {
        let obj = store.get(id, false).await.unwrap().unwrap();
        let mut s = obj.body.into_stream();
        let mut out = Vec::new();
        while let Some(c) = s.next().await {
            out.extend_from_slice(&c.unwrap());
        }
        assert_eq!(out.len() as u64, obj.len);
        out
    }

    /// Bodies above one part go through a temp multipart upload and a conditional
    /// copy; the temp key is gone afterwards and content stays create-only.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn multipart_bodies_publish_whole_and_leave_no_temp() {
        let Some(((), store)) = store().await else {
            return;
        };
        let data: Vec<u8> = (0..(2 * PART + 12345) as u32)
            .map(|i| (i % 251) as u8)
            .collect();
        let id = store
            .put_content(body_from_bytes(data.clone()), u64::MAX)
            .await
            .unwrap();
        assert_eq!(id, ObjectId::digest(&data));
        assert_eq!(read_all(&store, id).await, data);
        assert_eq!(store.kind(id).await.unwrap(), Some(Kind::Content));
        // Again (dedupe), and a big slot replace onto it is refused.
        store
            .put_content(body_from_bytes(data.clone()), u64::MAX)
            .await
            .unwrap();
        let err = store
            .put_slot(
                id,
                body_from_bytes(data.clone()),
                u64::MAX,
                SlotWrite::Replace,
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Immutable(_)), "{err}");
        // A big slot, replaced and appended to.
        let slot = ObjectId::digest(b"big slot");
        store
            .put_slot(
                slot,
                body_from_bytes(data.clone()),
                u64::MAX,
                SlotWrite::Replace,
            )
            .await
            .unwrap();
        store
            .put_slot(slot, body_from_bytes("tail"), u64::MAX, SlotWrite::Append)
            .await
            .unwrap();
        let mut want = data.clone();
        want.extend_from_slice(b"tail");
        assert_eq!(read_all(&store, slot).await, want);
        assert_eq!(store.kind(slot).await.unwrap(), Some(Kind::Slot));
        let temps = store.inner.list(&store.inner.temp_prefix()).await.unwrap();
        assert!(temps.is_empty(), "temp keys left: {temps:?}");
        let mut listed = store.list().await.unwrap();
        listed.sort_by_key(|i| i.to_hex());
        let mut expect = vec![id, slot];
        expect.sort_by_key(|i| i.to_hex());
        assert_eq!(listed, expect);
        // A large take: streamed from a private copy, which is removed after.
        let taken = store.take(slot).await.unwrap();
        assert_eq!(
            (taken.meta.len, taken.meta.kind),
            (want.len() as u64, Kind::Slot)
        );
        let mut s = taken.body.into_stream();
        let mut got = Vec::new();
        while let Some(c) = s.next().await {
            got.extend_from_slice(&c.unwrap());
        }
        drop(s);
        assert_eq!(got, want);
        assert!(store.stat(slot, false).await.unwrap().is_none());
        let mut temps = Vec::new();
        for _ in 0..100 {
            temps = store.inner.list(&store.inner.temp_prefix()).await.unwrap();
            if temps.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(temps.is_empty(), "temp keys left after take: {temps:?}");
    }

    /// An upload whose body fails half-way leaves neither an object nor a temp key.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_body_leaves_nothing() {
        let Some(((), store)) = store().await else {
            return;
        };
        let chunks: Vec<io::Result<Bytes>> = vec![
            Ok(Bytes::from(vec![1u8; PART + 10])),
            Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "client went away",
            )),
        ];
        let body: BodyStream = Box::pin(futures_util::stream::iter(chunks));
        let err = store.put_content(body, u64::MAX).await.unwrap_err();
        assert!(matches!(err, StoreError::Body(_)), "{err}");
        // The temp key is removed in the background by its drop guard: bounded wait.
        let mut left = Vec::new();
        for _ in 0..100 {
            left = store.inner.list(&store.inner.prefix).await.unwrap();
            if left.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(left.is_empty(), "left behind: {left:?}");
    }

    /// Two stores on one bucket: one sweeper at a time (the lease).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lease_excludes_a_second_sweeper() {
        let Some((weed, bucket, prefix)) = place().await else {
            return;
        };
        let opts = S3Options {
            touch_granularity: Duration::ZERO,
            record_use: true,
        };
        let a = S3Store::open(&config(weed, &bucket, &prefix), opts.clone())
            .await
            .unwrap();
        let b = S3Store::open(&config(weed, &bucket, &prefix), opts)
            .await
            .unwrap();
        let lease = a.take_lease().await.unwrap().expect("first lease");
        assert!(b.take_lease().await.unwrap().is_none(), "second sweeper");
        assert_eq!(b.sweep(Duration::from_nanos(1)).await.unwrap(), 0);
        assert!(
            a.inner
                .delete(&a.inner.lease_key(), Some(&lease))
                .await
                .unwrap()
        );
        assert!(b.take_lease().await.unwrap().is_some(), "free again");
    }

    /// With `record_use: false` (`--retention 0`) reads write no use markers.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_record_no_use_when_told_not_to() {
        let Some((weed, bucket, prefix)) = place().await else {
            return;
        };
        let config = config(weed, &bucket, &prefix);
        let quiet = S3Options {
            touch_granularity: Duration::ZERO,
            record_use: false,
        };
        let store = S3Store::open(&config, quiet).await.unwrap();
        let id = store
            .put_content(body_from_bytes("unswept"), u64::MAX)
            .await
            .unwrap();
        assert!(store.get(id, true).await.unwrap().is_some());
        assert!(store.stat(id, true).await.unwrap().is_some());
        let used = format!("{}.tig/used/", store.inner.prefix);
        assert!(store.inner.list(&used).await.unwrap().is_empty());
        // The default records it.
        let store = S3Store::open(&config, S3Options::default()).await.unwrap();
        assert!(store.get(id, true).await.unwrap().is_some());
        assert_eq!(store.inner.list(&used).await.unwrap().len(), 1);
    }
}
