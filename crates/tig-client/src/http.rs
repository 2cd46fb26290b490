//! The HTTP layer: one request per call, retried on transient failures, with a
//! one-line error naming the request for everything else. No hash checking here:
//! that is `fetch`'s job.
//!
//! Timeouts: connecting is bounded (10 s), and so is every wait on the server
//! without a body being sent ([`Config::idle_timeout`]): the answer to a
//! bodiless request, and each read of a response body (reqwest's blocking
//! `timeout` applies per read there, so a long download that keeps moving is
//! never cut). Requests that send a body use a second client without that
//! timeout, since reqwest would count the whole upload against it.

use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::blocking::{Body, RequestBuilder, Response};
use tig_core::ObjectId;

use crate::error::{Error, Result};
use crate::target::normalize_server;

/// How to reach a server and how hard to push.
#[derive(Debug, Clone)]
pub struct Config {
    /// Base URL, e.g. `http://127.0.0.1:7777`.
    pub server: String,
    /// The API key for writes and listing, if any.
    pub apikey: Option<String>,
    /// Requests in flight at once (at least 1).
    pub jobs: usize,
    /// Attempts per request for transient failures (at least 1).
    pub attempts: u32,
    /// The body limit to chunk below, overriding the server's: `None` asks the
    /// server once per run (`Tig-Max-Size` on `HEAD /`, see [`Client::max_size`]).
    pub max_size: Option<u64>,
    /// Draw progress bars on stderr (the caller decides whether it is a terminal).
    pub progress: bool,
    /// How long a download may wait for the server (for its answer, or for
    /// the next bytes of a body) before the request fails; `None` waits forever.
    pub idle_timeout: Option<Duration>,
}

impl Config {
    /// Defaults: 4 jobs, 4 attempts, the server's own limit, no progress bars,
    /// 60 s idle timeout.
    pub fn new(server: &str) -> Result<Self> {
        Ok(Self {
            server: normalize_server(server)?,
            apikey: None,
            jobs: 4,
            attempts: 4,
            max_size: None,
            progress: false,
            idle_timeout: Some(Duration::from_secs(60)),
        })
    }
}

/// A body that can be sent again on a retry.
#[derive(Debug, Clone)]
pub enum Payload {
    /// Bytes in memory (cheap to clone).
    Bytes(Bytes),
    /// A file read from its start, `len` bytes.
    File(std::path::PathBuf, u64),
}

impl Payload {
    fn len(&self) -> u64 {
        match self {
            Payload::Bytes(b) => b.len() as u64,
            Payload::File(_, n) => *n,
        }
    }
}

/// How a slot write treats an existing value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotWrite {
    /// Replace the value.
    Set,
    /// Append to the value (creating the slot if absent).
    Append,
    /// Create only if absent.
    SetIfNot,
}

/// The limit assumed when the server does not state one (the server's default).
pub const DEFAULT_MAX_SIZE: u64 = 128 << 20;

/// The header on every reply to `HEAD /` and `GET /` stating the body limit.
pub const MAX_SIZE_HEADER: &str = "tig-max-size";

/// A connection to one tig server.
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) cfg: Config,
    /// For requests without a body: answers and body reads bounded by the idle timeout.
    pub(crate) http: reqwest::blocking::Client,
    /// For requests with a body (uploads): no overall timeout.
    pub(crate) upload: reqwest::blocking::Client,
    /// The body limit in use, learnt once per run (shared by clones of this
    /// client for the same server).
    limit: Arc<Mutex<Option<u64>>>,
}

impl Client {
    /// A client for `cfg`.
    pub fn new(mut cfg: Config) -> Result<Self> {
        cfg.server = normalize_server(&cfg.server)?;
        cfg.jobs = cfg.jobs.max(1);
        cfg.attempts = cfg.attempts.max(1);
        let build = |timeout: Option<Duration>| {
            reqwest::blocking::Client::builder()
                .timeout(timeout)
                .connect_timeout(Duration::from_secs(10))
                .pool_max_idle_per_host(cfg.jobs * 2)
                .user_agent(concat!("tig/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| Error::Usage(format!("cannot set up HTTP: {e}")))
        };
        let http = build(cfg.idle_timeout)?;
        let upload = build(None)?;
        Ok(Self {
            cfg,
            http,
            upload,
            limit: Arc::default(),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The same client talking to another server (for names given as full URLs).
    pub fn with_server(&self, server: &str) -> Result<Self> {
        let mut c = self.clone();
        c.cfg.server = normalize_server(server)?;
        c.limit = Arc::default();
        Ok(c)
    }

    /// The body limit to stay below: `--max-size` when given, else what the
    /// server states in `Tig-Max-Size` on `HEAD /` (asked once per run), else
    /// [`DEFAULT_MAX_SIZE`] for a server that does not say.
    pub fn max_size(&self) -> Result<u64> {
        let mut g = self.limit.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = *g {
            return Ok(n);
        }
        let n = match self.cfg.max_size {
            Some(n) => n,
            None => self.server_limit()?.unwrap_or(DEFAULT_MAX_SIZE),
        };
        *g = Some(n);
        Ok(n)
    }

    /// After a refusal (413): asks the server for its limit again and adopts
    /// it when it is below the limit in use. `true` means the caller should
    /// cut its bodies again and retry.
    pub fn relearn_max_size(&self) -> Result<bool> {
        let Some(stated) = self.server_limit()? else {
            return Ok(false);
        };
        let mut g = self.limit.lock().unwrap_or_else(|p| p.into_inner());
        let current = g.or(self.cfg.max_size).unwrap_or(u64::MAX);
        if stated < current {
            tracing::debug!(
                stated,
                current,
                "the server's limit is lower: cutting again"
            );
            *g = Some(stated);
            return Ok(true);
        }
        Ok(false)
    }

    /// Runs `f`, and again (at most twice more) when it ended in a 413 and the
    /// server now states a lower limit than the one `f` cut its bodies by.
    pub fn adapting<T>(&self, mut f: impl FnMut() -> Result<T>) -> Result<T> {
        let mut tries = 0;
        loop {
            match f() {
                Err(Error::Status { status: 413, .. })
                    if tries < 2 && self.relearn_max_size()? =>
                {
                    tries += 1;
                }
                other => return other,
            }
        }
    }

    /// `HEAD /`: the limit the server states, `None` when it does not.
    pub fn server_limit(&self) -> Result<Option<u64>> {
        let what = "HEAD /".to_string();
        let url = self.url("/", &[], false)?;
        let resp = self.send(&what, true, || Ok(self.http.head(url.clone())))?;
        Ok(resp
            .headers()
            .get(MAX_SIZE_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok()))
    }

    /// `server + path` with `query` pairs and, when `auth`, the API key.
    pub(crate) fn url(
        &self,
        path: &str,
        query: &[(&str, &str)],
        auth: bool,
    ) -> Result<reqwest::Url> {
        let mut url = reqwest::Url::parse(&format!("{}{path}", self.cfg.server))
            .map_err(|e| Error::Usage(format!("bad server URL {}: {e}", self.cfg.server)))?;
        {
            let mut q = url.query_pairs_mut();
            for (k, v) in query {
                q.append_pair(k, v);
            }
            if auth && let Some(key) = &self.cfg.apikey {
                q.append_pair("apikey", key);
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        Ok(url)
    }

    /// Sends a request built by `make`, retrying connection failures always and other
    /// transport failures and 5xx answers when the request is `idempotent`.
    pub(crate) fn send(
        &self,
        what: &str,
        idempotent: bool,
        make: impl Fn() -> Result<RequestBuilder>,
    ) -> Result<Response> {
        let mut delay = Duration::from_millis(200);
        let mut attempt = 1;
        loop {
            let last = attempt >= self.cfg.attempts;
            match make()?.send() {
                Ok(resp) if resp.status().is_server_error() && idempotent && !last => {
                    tracing::debug!(%what, status = %resp.status(), attempt, "server error, retrying");
                }
                Ok(resp) => return Ok(resp),
                Err(e) if !last && (e.is_connect() || (idempotent && !e.is_builder())) => {
                    tracing::debug!(%what, error = %e, attempt, "transfer failed, retrying");
                }
                Err(e) if e.is_connect() => {
                    return Err(Error::Unreachable {
                        what: what.to_string(),
                        server: self.cfg.server.clone(),
                        reason: root_cause(&e),
                    });
                }
                Err(e) => {
                    return Err(Error::Transport {
                        what: what.to_string(),
                        reason: error_chain(&e),
                    });
                }
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_secs(5));
            attempt += 1;
        }
    }

    /// Runs `f` on every item on up to `jobs` threads; the results in order, or
    /// the first error (the other threads stop taking items).
    pub(crate) fn parallel<T: Sync, R: Send>(
        &self,
        items: &[T],
        f: impl Fn(&T) -> Result<R> + Sync,
    ) -> Result<Vec<R>> {
        let next = AtomicUsize::new(0);
        let failure: Mutex<Option<Error>> = Mutex::new(None);
        let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
        std::thread::scope(|s| {
            for _ in 0..self.cfg.jobs.min(items.len()) {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        match f(item) {
                            Ok(r) => {
                                if let Ok(mut g) = results.lock() {
                                    g[i] = Some(r);
                                }
                            }
                            Err(err) => {
                                next.store(items.len(), Ordering::Relaxed);
                                if let Ok(mut f) = failure.lock() {
                                    f.get_or_insert(err);
                                }
                                break;
                            }
                        }
                    }
                });
            }
        });
        if let Some(e) = failure.into_inner().ok().flatten() {
            return Err(e);
        }
        results
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
            .into_iter()
            .map(|r| r.ok_or_else(|| Error::invalid("parallel", "a step was abandoned")))
            .collect()
    }

    /// Turns a non-2xx answer into an error naming `what`.
    pub(crate) fn check(&self, what: &str, resp: Response) -> Result<Response> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        if status == StatusCode::NOT_FOUND {
            return Err(Error::NotFound {
                what: what.to_string(),
            });
        }
        let mut text = String::new();
        let _ = resp.take(4096).read_to_string(&mut text);
        let mut message = text.lines().next().unwrap_or("").trim().to_string();
        if message.is_empty() {
            message = status.canonical_reason().unwrap_or("").to_string();
        }
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            message.push_str(" (over the server's size limit: tig put chunks below the limit the server states; --max-size overrides it)");
        }
        if status == StatusCode::UNAUTHORIZED {
            message = if self.cfg.apikey.is_some() {
                "the server refused the API key (check --apikey-file PATH or TIG_APIKEY)".into()
            } else {
                "the server needs an API key for this: pass --apikey-file PATH or set TIG_APIKEY"
                    .into()
            };
        }
        Err(Error::Status {
            what: what.to_string(),
            status: status.as_u16(),
            message,
        })
    }

    /// `HEAD /<h>.tig`: the object's size if the server has it (0 when the
    /// server did not say).
    pub fn head(&self, id: &ObjectId) -> Result<Option<u64>> {
        Ok(self.head_len(id)?.map(|n| n.unwrap_or(0)))
    }

    /// `HEAD /<h>.tig`: `None` when the server lacks it, else its
    /// `Content-Length` if it sent a valid one.
    pub(crate) fn head_len(&self, id: &ObjectId) -> Result<Option<Option<u64>>> {
        let what = format!("HEAD {}", id.path());
        let url = self.url(&id.path(), &[], false)?;
        let resp = self.send(&what, true, || Ok(self.http.head(url.clone())))?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = self.check(&what, resp)?;
        // The header itself: reqwest's `content_length()` is the (empty) body's.
        let len = resp
            .headers()
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        Ok(Some(len))
    }

    /// `PUT /`: stores `body` as content and returns the id the server named. The
    /// caller compares it with the id it computed.
    ///
    /// When sending fails (the server may refuse an oversized body and close
    /// before reading it, which the sender sees as a broken pipe), the server's
    /// stated limit is asked: a body over it is reported as the 413 it is.
    pub fn put_content(&self, body: &Payload) -> Result<ObjectId> {
        let what = "PUT /".to_string();
        let url = self.url("/", &[], true)?;
        let resp = self
            .send(&what, true, || {
                Ok(self.upload.put(url.clone()).body(to_body(body)?))
            })
            .map_err(|e| self.explain_failed_upload(&what, body.len(), e))?;
        let resp = self.check(&what, resp)?;
        parse_path_reply(&what, resp)
    }

    /// A failed send of `len` bytes: a 413 when the server states a lower limit.
    fn explain_failed_upload(&self, what: &str, len: u64, e: Error) -> Error {
        if !matches!(e, Error::Transport { .. }) {
            return e;
        }
        match self.server_limit() {
            Ok(Some(limit)) if len > limit => Error::Status {
                what: what.to_string(),
                status: 413,
                message: format!(
                    "{len} bytes are over the server's limit of {limit} (the server closed the connection; tig put chunks below the limit the server states; --max-size overrides it)"
                ),
            },
            _ => e,
        }
    }

    /// Writes a key-value slot. Returns whether the slot was created (only
    /// meaningful for [`SlotWrite::SetIfNot`]; `true` otherwise).
    pub fn put_slot(&self, slot: &ObjectId, body: Bytes, how: SlotWrite) -> Result<bool> {
        let what = format!("PUT {}", slot.path());
        let query: &[(&str, &str)] = match how {
            SlotWrite::Set => &[],
            SlotWrite::Append => &[("append", "1")],
            SlotWrite::SetIfNot => &[("setifnot", "1")],
        };
        let url = self.url(&slot.path(), query, true)?;
        // An append or set-if-not that reached the server must not be sent twice.
        let idempotent = how == SlotWrite::Set;
        let resp = self
            .send(&what, idempotent, || {
                Ok(self.upload.put(url.clone()).body(body.clone()))
            })
            .map_err(|e| self.explain_failed_upload(&what, body.len() as u64, e))?;
        let resp = self.check(&what, resp)?;
        let created = resp
            .headers()
            .get("tig-created")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.eq_ignore_ascii_case("true"));
        let text = resp.text().unwrap_or_default();
        Ok(created.unwrap_or(!text.trim().is_empty()))
    }

    /// `GET /<h>.tig` (with `chtimes=0` when `touch` is false); the response streams.
    pub fn get(&self, id: &ObjectId, touch: bool) -> Result<Response> {
        let what = format!("GET {}", id.path());
        let query: &[(&str, &str)] = if touch { &[] } else { &[("chtimes", "0")] };
        let url = self.url(&id.path(), query, false)?;
        let resp = self.send(&what, true, || Ok(self.http.get(url.clone())))?;
        self.check(&what, resp)
    }

    /// `GET /<h>.tig` from byte `from` on (`Range: bytes=from-`).
    pub(crate) fn get_from(&self, id: &ObjectId, from: u64) -> Result<crate::fetch::Ranged> {
        use crate::fetch::Ranged;
        if from == 0 {
            return Ok(Ranged::Whole(self.get(id, true)?));
        }
        let what = format!("GET {} (from byte {from})", id.path());
        let url = self.url(&id.path(), &[], false)?;
        let range = format!("bytes={from}-");
        let resp = self.send(&what, true, || {
            Ok(self
                .http
                .get(url.clone())
                .header(reqwest::header::RANGE, range.as_str()))
        })?;
        match resp.status() {
            StatusCode::RANGE_NOT_SATISFIABLE => Ok(Ranged::NothingLeft),
            StatusCode::PARTIAL_CONTENT => {
                let starts_right = resp
                    .headers()
                    .get(reqwest::header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("bytes "))
                    .and_then(|v| v.split_once('-'))
                    .is_some_and(|(start, _)| start.trim().parse::<u64>().ok() == Some(from));
                if !starts_right {
                    return Err(Error::invalid(
                        format!("reply to {what}"),
                        "206 without a Content-Range starting at the byte asked for",
                    ));
                }
                Ok(Ranged::Rest(resp))
            }
            _ => Ok(Ranged::Whole(self.check(&what, resp)?)),
        }
    }

    /// `DELETE /<h>.tig` (slots only; the server refuses content with 409).
    pub fn delete(&self, id: &ObjectId) -> Result<()> {
        let what = format!("DELETE {}", id.path());
        let url = self.url(&id.path(), &[], true)?;
        let resp = self.send(&what, true, || Ok(self.http.delete(url.clone())))?;
        self.check(&what, resp).map(drop)
    }

    /// `GET /?apikey=K`: every object the server holds, newest first.
    /// A server without an API key has listing disabled: that is an error,
    /// told apart from an empty store by its `Tig-Listing: disabled` header.
    pub fn list(&self) -> Result<Vec<ObjectId>> {
        let what = if self.cfg.apikey.is_some() {
            "GET /?apikey=…"
        } else {
            "GET /"
        }
        .to_string();
        let url = self.url("/", &[], true)?;
        let resp = self.send(&what, true, || Ok(self.http.get(url.clone())))?;
        let resp = self.check(&what, resp)?;
        if resp
            .headers()
            .get("tig-listing")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"disabled"))
        {
            return Err(Error::Usage(format!(
                "{what}: the server at {} runs without an API key, so its listing is disabled (not empty): start it with an API key to back it up",
                self.cfg.server
            )));
        }
        let text = resp.text().map_err(|e| Error::Transport {
            what: what.clone(),
            reason: error_chain(&e),
        })?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                ObjectId::from_burst_line(l)
                    .map_err(|e| Error::invalid("listing from the server", e.to_string()))
            })
            .collect()
    }
}

fn to_body(p: &Payload) -> Result<Body> {
    Ok(match p {
        Payload::Bytes(b) => Body::from(b.clone()),
        Payload::File(path, len) => {
            let f = std::fs::File::open(path)
                .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
            Body::sized(f.take(*len), p.len())
        }
    })
}

/// Reads a `/<h>.tig` reply (formatted with the default `*`).
fn parse_path_reply(what: &str, resp: Response) -> Result<ObjectId> {
    let text = resp.text().map_err(|e| Error::Transport {
        what: what.to_string(),
        reason: error_chain(&e),
    })?;
    ObjectId::from_burst_line(text.trim()).map_err(|_| {
        Error::invalid(
            format!("reply to {what}"),
            format!("not an object path: {:?}", truncate(&text)),
        )
    })
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

/// reqwest's error with its causes, API key redacted.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    redact(&s)
}

/// The innermost cause of `e` (e.g. "Connection refused (os error 111)").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    redact(&cur.to_string())
}

fn redact(s: &str) -> String {
    match s.find("apikey=") {
        Some(i) => {
            let rest = &s[i + 7..];
            let end = rest.find(['&', ')', ' ']).unwrap_or(rest.len());
            format!("{}apikey=…{}", &s[..i], redact(&rest[end..]))
        }
        None => s.to_string(),
    }
}

/// Reads `resp` to its end in pieces of up to 256 KiB, handing each to `each`;
/// returns the byte count. A transport failure names `what` (e.g. `GET /<h>.tig`).
pub(crate) fn read_body(
    resp: &mut Response,
    what: &str,
    mut each: impl FnMut(&[u8]) -> Result<()>,
) -> Result<u64> {
    // Sized by the announced length: a restore reads thousands of small bodies,
    // and zeroing 256 KiB for each cost more than reading it.
    let cap = resp
        .content_length()
        .map_or(256 << 10, |n| usize::try_from(n).unwrap_or(usize::MAX))
        .clamp(8 << 10, 256 << 10);
    let mut buf = vec![0u8; cap];
    let mut n = 0u64;
    loop {
        let k = match resp.read(&mut buf) {
            Ok(0) => return Ok(n),
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(Error::Transport {
                    what: what.to_string(),
                    reason: error_chain(&e),
                });
            }
        };
        n += k as u64;
        each(&buf[..k])?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_carry_the_key_only_when_asked() {
        let mut cfg = Config::new("http://127.0.0.1:7777/").unwrap();
        cfg.apikey = Some("a b&c".into());
        let c = Client::new(cfg).unwrap();
        let id = ObjectId::digest(b"x");
        assert_eq!(
            c.url(&id.path(), &[], false).unwrap().as_str(),
            format!("http://127.0.0.1:7777{}", id.path())
        );
        assert_eq!(
            c.url("/", &[("append", "1")], true).unwrap().as_str(),
            "http://127.0.0.1:7777/?append=1&apikey=a+b%26c"
        );
    }

    #[test]
    fn keys_are_redacted_from_errors() {
        assert_eq!(
            redact("error for http://h/?apikey=secret&x=1 (x)"),
            "error for http://h/?apikey=…&x=1 (x)"
        );
        assert_eq!(
            redact("url http://h/?apikey=secret"),
            "url http://h/?apikey=…"
        );
    }
}
