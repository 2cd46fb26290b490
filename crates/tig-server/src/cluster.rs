//! Clustering: finding peers, answering misses from them, and "offload and
//! terminate".
//!
//! Peers come from an explicit URL list or from the A/AAAA records of a DNS name
//! (a Kubernetes headless service), re-resolved at most every few seconds. This
//! instance is left out by comparing each peer's address with the bound one.
//! A GET/HEAD for an object this instance lacks is sent to every peer at once
//! with `Tig-Forwarded: 1` (a request carrying that header is never forwarded
//! again); the first acceptable 200 within the timeout is relayed.
//!
//! Trust: a peer is *verified* when it is plain HTTP on loopback or TLS whose
//! certificate verifies (web roots, or `--peer-ca` for the cluster's own CA at
//! any name). Only verified peers receive the API key (offload) and have their
//! slots relayed; with `--peer-insecure` no peer is verified. Content from any
//! peer is checked by its hash before it is relayed as good: small replies are
//! read and checked whole, larger ones are streamed one chunk behind and
//! aborted on a mismatch. Bursts whose members live on other instances fetch
//! those members the same way ([`Cluster::locate`], [`Cluster::fetch_member`]).

use std::collections::{HashSet, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use futures_util::stream::FuturesUnordered;
use futures_util::{Stream, StreamExt};
use tig_core::{Hasher, ObjectId};
use tig_store::{BodyStream, Kind, Store};
use tokio::time::Instant;

use crate::config::{Config, PeerTls, Peers};
use crate::metrics::{ForwardResult, Metrics};

/// The request header that marks a forwarded call.
pub const FORWARDED_HEADER: &str = "tig-forwarded";

/// How long a resolved peer list is reused.
const PEER_CACHE: Duration = Duration::from_secs(5);

/// Peer discovery and forwarding.
#[derive(Debug)]
pub struct Cluster {
    peers: Peers,
    scheme: &'static str,
    client: reqwest::Client,
    timeout: Duration,
    me: OnceLock<SocketAddr>,
    cache: Mutex<Option<(Instant, Vec<String>)>>,
    metrics: Option<Arc<Metrics>>,
    peer_tls: PeerTls,
}

/// What [`offload`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OffloadReport {
    /// Objects a peer accepted.
    pub sent: usize,
    /// Objects no peer accepted.
    pub failed: usize,
    /// Objects a second pass need not try again: content (immutable; if no
    /// peer took it, none will) and whatever failed. Only slots that were sent
    /// may have changed since and are sent again.
    pub settled: HashSet<ObjectId>,
}

impl Cluster {
    /// Builds the cluster view from the configuration.
    pub fn new(config: &Config, metrics: Option<Arc<Metrics>>) -> Self {
        let builder = reqwest::Client::builder()
            .connect_timeout(config.forward_timeout)
            .pool_idle_timeout(Duration::from_secs(30));
        let builder = match &config.peer_tls {
            PeerTls::Verify => builder,
            PeerTls::Insecure => builder.danger_accept_invalid_certs(true),
            PeerTls::Ca(cas) => match crate::tls::peer_client_config(cas) {
                Ok(tls) => builder.use_preconfigured_tls(tls),
                Err(e) => {
                    tracing::error!(error = %e, "--peer-ca unusable; peers must verify against the web roots");
                    builder
                }
            },
        };
        let client = builder.build().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot build the peer HTTP client; using defaults");
            reqwest::Client::new()
        });
        Self {
            peers: config.peers.clone(),
            scheme: if config.tls.is_some() {
                "https"
            } else {
                "http"
            },
            client,
            timeout: config.forward_timeout,
            me: OnceLock::new(),
            cache: Mutex::new(None),
            metrics,
            peer_tls: config.peer_tls.clone(),
        }
    }

    /// The HTTP client used for peers (for handlers that ask peers themselves).
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.client
    }

    /// How long a peer may take to answer a forwarded request.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Records this instance's bound address (so it is never its own peer).
    pub fn set_local_addr(&self, addr: SocketAddr) {
        let _ = self.me.set(addr);
    }

    /// Whether any peers are configured.
    pub fn enabled(&self) -> bool {
        self.peers != Peers::None
    }

    /// The base URLs of the other instances (resolved, self excluded).
    pub async fn peers(&self) -> Vec<String> {
        if !self.enabled() {
            return Vec::new();
        }
        if let Some((at, list)) = &*self.cache.lock().unwrap_or_else(|p| p.into_inner())
            && at.elapsed() < PEER_CACHE
        {
            return list.clone();
        }
        let list = self.resolve().await;
        *self.cache.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((Instant::now(), list.clone()));
        list
    }

    async fn resolve(&self) -> Vec<String> {
        let me = self.me.get().copied();
        let mut out = Vec::new();
        match &self.peers {
            Peers::None => {}
            Peers::List(urls) => {
                for url in urls {
                    let url = url.trim_end_matches('/');
                    let Some(authority) = authority_of(url) else {
                        tracing::warn!(%url, "ignoring a peer that is not an http(s) URL");
                        continue;
                    };
                    let addrs: Vec<SocketAddr> = match tokio::net::lookup_host(&authority).await {
                        Ok(a) => a.collect(),
                        Err(e) => {
                            tracing::debug!(%url, error = %e, "peer does not resolve");
                            continue;
                        }
                    };
                    if me.is_some_and(|me| addrs.iter().any(|a| is_self(*a, me))) {
                        continue;
                    }
                    out.push(url.to_owned());
                }
            }
            Peers::Dns { host, port } => {
                let port = port.or(me.map(|m| m.port())).unwrap_or(7777);
                match tokio::net::lookup_host((host.as_str(), port)).await {
                    Ok(addrs) => {
                        for a in addrs {
                            if me.is_some_and(|me| is_self(a, me)) {
                                continue;
                            }
                            let url = format!("{}://{a}", self.scheme);
                            if !out.contains(&url) {
                                out.push(url);
                            }
                        }
                    }
                    Err(e) => tracing::warn!(%host, error = %e, "cluster name does not resolve"),
                }
            }
        }
        out
    }

    /// Whether `base` is a verified peer: plain HTTP on loopback, or TLS whose
    /// certificate is verified; with `--peer-insecure`, none is. Only verified
    /// peers get the API key and have their slots relayed.
    pub fn trusted(&self, base: &str) -> bool {
        if matches!(self.peer_tls, PeerTls::Insecure) {
            return false;
        }
        let Some((scheme, rest)) = base.split_once("://") else {
            return false;
        };
        match scheme {
            "https" => true,
            "http" => {
                let authority = rest.split('/').next().unwrap_or("");
                let host = match authority.rfind(']') {
                    Some(close) => authority[..close].trim_start_matches('['),
                    None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
                };
                host.eq_ignore_ascii_case("localhost")
                    || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
            }
            _ => false,
        }
    }

    fn count(&self, result: ForwardResult) {
        if let Some(m) = &self.metrics {
            m.forward(result);
        }
    }

    /// Asks every peer for `id` (`path_and_query` is this request's, so
    /// `format=`, `Content-Type=` and `chtimes=` go along) and relays the first
    /// acceptable 200: content checked by its hash, slots only from verified
    /// peers. `None` if no peer had it.
    pub async fn forward(
        &self,
        method: &Method,
        id: ObjectId,
        path_and_query: &str,
    ) -> Option<Response> {
        let head = method == Method::HEAD;
        let fetched = self.fetch(id, head, path_and_query).await?;
        let mut out = Response::builder().status(StatusCode::OK);
        if let Some(len) = fetched.len {
            out = out.header(header::CONTENT_LENGTH, len);
        }
        if let Some(ct) = fetched.content_type {
            out = out.header(header::CONTENT_TYPE, ct);
        }
        if let Some(etag) = fetched.etag {
            out = out.header(header::ETAG, etag);
        }
        let body = match fetched.body {
            Fetched::Head => Body::empty(),
            Fetched::Full(b) => Body::from(b),
            Fetched::Stream(s) => Body::from_stream(s),
        };
        out.body(body).ok()
    }

    /// A verified copy of `id` from the peers, as a stream of exactly its bytes
    /// (for burst members); `None` if no peer has it.
    pub async fn fetch_member(&self, id: ObjectId) -> Option<BodyStream> {
        let fetched = self.fetch(id, false, &id.path()).await?;
        Some(match fetched.body {
            Fetched::Head => Box::pin(futures_util::stream::empty()),
            Fetched::Full(b) => tig_store::body_from_bytes(b),
            Fetched::Stream(s) => s,
        })
    }

    /// Whether some peer has `id` (HEAD), and its length.
    pub async fn locate(&self, id: ObjectId) -> Option<u64> {
        let fetched = self.fetch(id, true, &id.path()).await?;
        Some(fetched.len.unwrap_or(0))
    }

    /// The peer race behind [`Cluster::forward`]: every peer is asked at once; a
    /// reply is taken once it passes the trust rules, the others are dropped.
    async fn fetch(&self, id: ObjectId, head: bool, path_and_query: &str) -> Option<Reply> {
        let peers = self.peers().await;
        if peers.is_empty() {
            return None;
        }
        let method = if head {
            reqwest::Method::HEAD
        } else {
            reqwest::Method::GET
        };
        let path_and_query = without_apikey(path_and_query);
        let path_and_query = path_and_query.as_str();
        let mut pending: FuturesUnordered<_> = peers
            .iter()
            .map(|base| {
                let req = self
                    .client
                    .request(method.clone(), format!("{base}{path_and_query}"))
                    .header(FORWARDED_HEADER, "1");
                async move { (base.as_str(), req.send().await) }
            })
            .collect();
        let content_tag = format!("\"{}\"", id.to_hex());
        let deadline = tokio::time::sleep(self.timeout);
        tokio::pin!(deadline);
        let mut outcome = ForwardResult::NotFound;
        let mut note = |r: ForwardResult| {
            // The most telling failure wins: a lie over a refusal over an error.
            let rank = |r: ForwardResult| match r {
                ForwardResult::BadHash => 3,
                ForwardResult::Refused => 2,
                ForwardResult::Error => 1,
                _ => 0,
            };
            if rank(r) > rank(outcome) {
                outcome = r;
            }
        };
        loop {
            let (base, resp) = tokio::select! {
                next = pending.next() => match next {
                    None => break,
                    Some((base, Ok(resp))) if resp.status() == reqwest::StatusCode::OK => (base, resp),
                    Some((base, Ok(resp))) => {
                        tracing::debug!(peer = %base, status = %resp.status(), "peer lacks it");
                        continue;
                    }
                    Some((base, Err(e))) => {
                        tracing::debug!(peer = %base, error = %e, "peer failed");
                        note(ForwardResult::Error);
                        continue;
                    }
                },
                () = &mut deadline => {
                    note(ForwardResult::Error);
                    break;
                }
            };
            let trusted = self.trusted(base);
            let etag = resp
                .headers()
                .get(reqwest::header::ETAG)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let claims_content = etag.as_deref() == Some(content_tag.as_str());
            let is_slot = etag.is_some() && !claims_content;
            if is_slot && !trusted {
                tracing::warn!(peer = %base, %id, "not relaying a slot from an unverified peer");
                note(ForwardResult::Refused);
                continue;
            }
            let len = resp.content_length().or_else(|| {
                resp.headers()
                    .get(reqwest::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
            });
            let content_type = resp.headers().get(reqwest::header::CONTENT_TYPE).cloned();
            if head {
                self.count(ForwardResult::Ok);
                // Only a verified peer's word makes it content (ETag) here.
                let etag = etag.filter(|_| trusted);
                return Some(Reply {
                    len,
                    content_type,
                    etag,
                    body: Fetched::Head,
                });
            }
            if trusted && !claims_content {
                // A verified peer's slot (or a reply without a tag): relayed as is.
                self.count(ForwardResult::Ok);
                return Some(Reply {
                    len,
                    content_type,
                    etag,
                    body: Fetched::Stream(Box::pin(
                        resp.bytes_stream().map(|r| r.map_err(io::Error::other)),
                    )),
                });
            }
            // Content: checked by hash before any byte is relayed as good.
            match verify_content(resp, id, base, self.timeout, self.metrics.clone()).await {
                Ok(body) => {
                    self.count(ForwardResult::Ok);
                    return Some(Reply {
                        len,
                        content_type,
                        etag: Some(content_tag),
                        body,
                    });
                }
                Err(result) => note(result),
            }
        }
        self.count(outcome);
        None
    }

    /// Sends one object to the first peer (starting at a hash-chosen one) that
    /// accepts it.
    async fn offload_one<S: Store>(
        &self,
        store: &S,
        peers: &[String],
        key: Option<&str>,
        id: ObjectId,
    ) -> (Option<Kind>, bool) {
        let kind = match store.kind(id).await {
            Ok(Some(k)) => k,
            // Gone meanwhile (retention): nothing to hand over.
            Ok(None) => return (None, true),
            Err(e) => {
                tracing::warn!(%id, error = %e, "offload: cannot read");
                return (None, false);
            }
        };
        let start = usize::from(id.as_bytes()[0]) % peers.len();
        for i in 0..peers.len() {
            let base = &peers[(start + i) % peers.len()];
            let Ok(Some(obj)) = store.get(id, false).await else {
                return (Some(kind), false);
            };
            let path = match kind {
                Kind::Content => "/".to_owned(),
                Kind::Slot => id.path(),
            };
            let mut url = format!("{base}{path}");
            if let Some(k) = key {
                if self.trusted(base) {
                    url.push_str("?apikey=");
                    url.extend(form_urlencoded::byte_serialize(k.as_bytes()));
                } else {
                    tracing::warn!(
                        peer = %base,
                        "offload: not sending the API key to an unverified peer"
                    );
                }
            }
            let body = reqwest::Body::wrap_stream(obj.body.into_stream());
            match self
                .client
                .put(url)
                .header(reqwest::header::CONTENT_LENGTH, obj.len)
                .body(body)
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => return (Some(kind), true),
                Ok(r) => tracing::warn!(%id, peer = %base, status = %r.status(), "offload refused"),
                Err(e) => tracing::warn!(%id, peer = %base, error = %e, "offload failed"),
            }
        }
        (Some(kind), false)
    }
}

/// Hands every local object except the content in `skip` to the remaining peers
/// ("offload and terminate"). Content goes to `PUT /`, slots to `PUT /<h>.tig`,
/// with this instance's API key if the peer is verified ([`Cluster::trusted`]).
/// Local files are kept: nothing is deleted.
pub async fn offload<S: Store>(
    store: &S,
    cluster: &Cluster,
    key: Option<&str>,
    skip: &HashSet<ObjectId>,
) -> OffloadReport {
    let mut report = OffloadReport::default();
    let peers = cluster.peers().await;
    if peers.is_empty() {
        if cluster.enabled() {
            tracing::warn!("offload: no peers reachable; keeping objects locally");
        }
        return report;
    }
    let ids = match store.list().await {
        Ok(ids) => ids
            .into_iter()
            .filter(|id| !skip.contains(id))
            .collect::<Vec<_>>(),
        Err(e) => {
            tracing::error!(error = %e, "offload: cannot list objects");
            return report;
        }
    };
    tracing::info!(objects = ids.len(), peers = peers.len(), "offloading");
    let results: Vec<(ObjectId, (Option<Kind>, bool))> = futures_util::stream::iter(ids)
        .map(|id| {
            let peers = &peers;
            async move { (id, cluster.offload_one(store, peers, key, id).await) }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    for (id, (kind, ok)) in results {
        if ok {
            report.sent += 1;
        } else {
            report.failed += 1;
        }
        if !(ok && kind == Some(Kind::Slot)) {
            report.settled.insert(id);
        }
    }
    if let Some(m) = &cluster.metrics {
        m.offloaded(report.sent);
    }
    tracing::info!(
        sent = report.sent,
        failed = report.failed,
        "offload finished"
    );
    report
}

/// A peer's acceptable reply.
struct Reply {
    len: Option<u64>,
    content_type: Option<reqwest::header::HeaderValue>,
    etag: Option<String>,
    body: Fetched,
}

/// The body of a peer's reply.
enum Fetched {
    /// A HEAD: no body.
    Head,
    /// Read and verified whole.
    Full(Bytes),
    /// Streamed; for content, through [`VerifiedStream`].
    Stream(BodyStream),
}

/// Up to this much of a peer's content reply is read and verified before the
/// reply starts: smaller objects are relayed only once checked whole.
const PREBUFFER: usize = 256 * 1024;

/// Checks a peer's content reply against `id`. Small objects are read whole and
/// checked before the reply starts; larger ones are streamed through
/// [`VerifiedStream`], which withholds the last chunk until the hash matches and
/// fails the body (the client sees a broken reply, never a good one) if not.
async fn verify_content(
    resp: reqwest::Response,
    id: ObjectId,
    base: &str,
    timeout: Duration,
    metrics: Option<Arc<Metrics>>,
) -> Result<Fetched, ForwardResult> {
    let mut stream: BodyStream = Box::pin(resp.bytes_stream().map(|r| r.map_err(io::Error::other)));
    let mut hasher = Hasher::new();
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut buffered = 0usize;
    let ended = tokio::time::timeout(timeout, async {
        while buffered < PREBUFFER {
            match stream.next().await {
                None => return Ok(true),
                Some(Ok(c)) => {
                    hasher.update(&c);
                    buffered += c.len();
                    chunks.push(c);
                }
                Some(Err(e)) => return Err(e),
            }
        }
        Ok(false)
    })
    .await;
    match ended {
        Ok(Ok(true)) => {
            if hasher.finish() == id {
                let mut all = Vec::with_capacity(buffered);
                for c in &chunks {
                    all.extend_from_slice(c);
                }
                Ok(Fetched::Full(all.into()))
            } else {
                tracing::warn!(peer = %base, %id, "peer sent bytes that do not hash to the name; not relayed");
                Err(ForwardResult::BadHash)
            }
        }
        Ok(Ok(false)) => {
            let held = chunks.pop();
            Ok(Fetched::Stream(Box::pin(VerifiedStream {
                queue: chunks.into(),
                held,
                inner: stream,
                hasher: Some(hasher),
                want: id,
                peer: base.to_owned(),
                metrics,
            })))
        }
        Ok(Err(e)) => {
            tracing::debug!(peer = %base, error = %e, "peer reply broke off");
            Err(ForwardResult::Error)
        }
        Err(_) => {
            tracing::debug!(peer = %base, "peer reply too slow");
            Err(ForwardResult::Error)
        }
    }
}

/// Relays a peer's content while hashing it, always one chunk behind: the last
/// chunk is released only once the whole body hashed to the name; otherwise the
/// stream ends with an error, which aborts the reply.
struct VerifiedStream {
    queue: VecDeque<Bytes>,
    held: Option<Bytes>,
    inner: BodyStream,
    hasher: Option<Hasher>,
    want: ObjectId,
    peer: String,
    metrics: Option<Arc<Metrics>>,
}

impl Stream for VerifiedStream {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if let Some(c) = this.queue.pop_front() {
            return Poll::Ready(Some(Ok(c)));
        }
        loop {
            let Some(hasher) = this.hasher.as_mut() else {
                return Poll::Ready(None);
            };
            match ready!(this.inner.as_mut().poll_next(cx)) {
                Some(Ok(c)) if c.is_empty() => {}
                Some(Ok(c)) => {
                    hasher.update(&c);
                    if let Some(prev) = this.held.replace(c) {
                        return Poll::Ready(Some(Ok(prev)));
                    }
                }
                Some(Err(e)) => {
                    this.hasher = None;
                    return Poll::Ready(Some(Err(e)));
                }
                None => {
                    let Some(h) = this.hasher.take() else {
                        return Poll::Ready(None);
                    };
                    if h.finish() == this.want {
                        return Poll::Ready(this.held.take().map(Ok));
                    }
                    this.held = None;
                    tracing::warn!(peer = %this.peer, id = %this.want, "peer sent bytes that do not hash to the name; reply aborted");
                    if let Some(m) = &this.metrics {
                        m.forward(ForwardResult::BadHash);
                    }
                    return Poll::Ready(Some(Err(io::Error::other(format!(
                        "peer {} sent bytes that do not hash to {}",
                        this.peer,
                        this.want.path()
                    )))));
                }
            }
        }
    }
}

/// `path_and_query` minus any `apikey=` parameter: a read needs no key, and a
/// forwarded request must never carry the client's.
fn without_apikey(path_and_query: &str) -> String {
    let Some((path, query)) = path_and_query.split_once('?') else {
        return path_and_query.to_owned();
    };
    let mut out = form_urlencoded::Serializer::new(String::new());
    let mut any = false;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if k != "apikey" {
            out.append_pair(&k, &v);
            any = true;
        }
    }
    if any {
        format!("{path}?{}", out.finish())
    } else {
        path.to_owned()
    }
}

/// `host:port` of an `http(s)://host[:port][/…]` URL (default ports filled in).
fn authority_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let default_port = match scheme {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let authority = rest.split('/').next().filter(|a| !a.is_empty())?;
    let has_port = match authority.rfind(']') {
        Some(close) => authority[close..].contains(':'),
        None => authority.contains(':'),
    };
    Some(if has_port {
        authority.to_owned()
    } else {
        format!("{authority}:{default_port}")
    })
}

/// Whether `addr` is this instance, bound at `me`.
fn is_self(addr: SocketAddr, me: SocketAddr) -> bool {
    if addr.port() != me.port() {
        return false;
    }
    addr.ip() == me.ip() || (me.ip().is_unspecified() && is_local_ip(addr.ip()))
}

/// Whether `ip` belongs to this host: loopback, or the kernel routes to it from
/// itself (a connected UDP socket sends no packet).
fn is_local_ip(ip: IpAddr) -> bool {
    if ip.is_loopback() {
        return true;
    }
    let bind: SocketAddr = match ip {
        IpAddr::V4(_) => ([0, 0, 0, 0], 0).into(),
        IpAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    std::net::UdpSocket::bind(bind)
        .and_then(|s| {
            s.connect((ip, 9))?;
            s.local_addr()
        })
        .is_ok_and(|local| local.ip() == ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities() {
        assert_eq!(
            authority_of("http://127.0.0.1:7778").as_deref(),
            Some("127.0.0.1:7778")
        );
        assert_eq!(
            authority_of("https://tig.example").as_deref(),
            Some("tig.example:443")
        );
        assert_eq!(authority_of("http://[::1]:9/x").as_deref(), Some("[::1]:9"));
        assert_eq!(authority_of("http://[::1]").as_deref(), Some("[::1]:80"));
        assert_eq!(authority_of("ftp://x"), None);
        assert_eq!(authority_of("127.0.0.1:1"), None);
    }

    #[test]
    fn the_key_is_never_forwarded() {
        assert_eq!(without_apikey("/x.tig?apikey=k"), "/x.tig");
        assert_eq!(
            without_apikey("/x.tig?format=a&apikey=k&chtimes=0"),
            "/x.tig?format=a&chtimes=0"
        );
        assert_eq!(without_apikey("/x.tig"), "/x.tig");
        assert_eq!(without_apikey("/x.tig?api%6Bey=k"), "/x.tig");
    }

    #[test]
    fn self_detection() {
        let me: SocketAddr = "0.0.0.0:7777".parse().unwrap();
        assert!(is_self("127.0.0.1:7777".parse().unwrap(), me));
        assert!(!is_self("127.0.0.1:7778".parse().unwrap(), me));
        assert!(!is_self("192.0.2.1:7777".parse().unwrap(), me));
        let me: SocketAddr = "127.0.0.1:7000".parse().unwrap();
        assert!(is_self("127.0.0.1:7000".parse().unwrap(), me));
        assert!(!is_self("127.0.0.1:7001".parse().unwrap(), me));
    }
}
