//! Clustering: finding peers, answering misses from them, and "offload and
//! terminate".
//!
//! Peers come from an explicit URL list or from the A/AAAA records of a DNS name
//! (a Kubernetes headless service), re-resolved at most every few seconds. This
//! instance is left out by comparing each peer's address with the bound one.
//! A GET/HEAD for an object this instance lacks is sent to every peer at once
//! with `Tig-Forwarded: 1` (a request carrying that header is never forwarded
//! again); the first 200 within the timeout is streamed back. Peer TLS
//! certificates are not verified (cluster-local names rarely match them, as the
//! seed notes); content is verified by its hash downstream.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tig_store::{Kind, Store};
use tokio::time::Instant;

use crate::config::{Config, Peers};

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
}

/// What [`offload`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct OffloadReport {
    /// Objects a peer accepted.
    pub sent: usize,
    /// Objects no peer accepted.
    pub failed: usize,
}

impl Cluster {
    /// Builds the cluster view from the configuration.
    pub fn new(config: &Config) -> Self {
        let client = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .connect_timeout(config.forward_timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_else(|e| {
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

    /// Asks every peer for `path_and_query` and returns the first 200, streamed.
    pub async fn forward(&self, method: &Method, path_and_query: &str) -> Option<Response> {
        let peers = self.peers().await;
        if peers.is_empty() {
            return None;
        }
        let method = if method == Method::HEAD {
            reqwest::Method::HEAD
        } else {
            reqwest::Method::GET
        };
        let mut pending: FuturesUnordered<_> = peers
            .iter()
            .map(|base| {
                let req = self
                    .client
                    .request(method.clone(), format!("{base}{path_and_query}"))
                    .header(FORWARDED_HEADER, "1");
                async move { (base, req.send().await) }
            })
            .collect();
        let deadline = tokio::time::sleep(self.timeout);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                next = pending.next() => match next {
                    None => return None,
                    Some((base, Ok(resp))) if resp.status() == reqwest::StatusCode::OK => {
                        tracing::debug!(peer = %base, path = %path_and_query, "forwarded");
                        return Some(into_response(resp));
                    }
                    Some((base, Ok(resp))) => {
                        tracing::debug!(peer = %base, status = %resp.status(), "peer lacks it");
                    }
                    Some((base, Err(e))) => tracing::debug!(peer = %base, error = %e, "peer failed"),
                },
                () = &mut deadline => return None,
            }
        }
    }

    /// Sends one object to the first peer (starting at a hash-chosen one) that
    /// accepts it.
    async fn offload_one<S: Store>(
        &self,
        store: &S,
        peers: &[String],
        key: Option<&str>,
        id: tig_core::ObjectId,
    ) -> bool {
        let kind = match store.kind(id).await {
            Ok(Some(k)) => k,
            Ok(None) => return true, // gone meanwhile (retention): nothing to hand over
            Err(e) => {
                tracing::warn!(%id, error = %e, "offload: cannot read");
                return false;
            }
        };
        let start = usize::from(id.as_bytes()[0]) % peers.len();
        for i in 0..peers.len() {
            let base = &peers[(start + i) % peers.len()];
            let Ok(Some(obj)) = store.get(id, false).await else {
                return false;
            };
            let path = match kind {
                Kind::Content => "/".to_owned(),
                Kind::Slot => id.path(),
            };
            let mut url = format!("{base}{path}");
            if let Some(k) = key {
                url.push_str("?apikey=");
                url.extend(form_urlencoded::byte_serialize(k.as_bytes()));
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
                Ok(r) if r.status().is_success() => return true,
                Ok(r) => tracing::warn!(%id, peer = %base, status = %r.status(), "offload refused"),
                Err(e) => tracing::warn!(%id, peer = %base, error = %e, "offload failed"),
            }
        }
        false
    }
}

/// Hands every local object to the remaining peers ("offload and terminate").
/// Content goes to `PUT /`, slots to `PUT /<h>.tig`, with this instance's API key.
/// Local files are kept: nothing is deleted.
pub async fn offload<S: Store>(store: &S, cluster: &Cluster, key: Option<&str>) -> OffloadReport {
    let mut report = OffloadReport::default();
    let peers = cluster.peers().await;
    if peers.is_empty() {
        if cluster.enabled() {
            tracing::warn!("offload: no peers reachable; keeping objects locally");
        }
        return report;
    }
    let ids = match store.list().await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::error!(error = %e, "offload: cannot list objects");
            return report;
        }
    };
    tracing::info!(objects = ids.len(), peers = peers.len(), "offloading");
    let results: Vec<bool> = futures_util::stream::iter(ids)
        .map(|id| cluster.offload_one(store, &peers, key, id))
        .buffer_unordered(8)
        .collect()
        .await;
    for ok in results {
        if ok {
            report.sent += 1;
        } else {
            report.failed += 1;
        }
    }
    tracing::info!(
        sent = report.sent,
        failed = report.failed,
        "offload finished"
    );
    report
}

fn into_response(resp: reqwest::Response) -> Response {
    let mut out = Response::builder().status(StatusCode::OK);
    for name in [header::CONTENT_LENGTH, header::CONTENT_TYPE] {
        if let Some(v) = resp.headers().get(name.as_str())
            && let Ok(v) = HeaderValue::from_bytes(v.as_bytes())
        {
            out = out.header(name, v);
        }
    }
    let body = Body::from_stream(resp.bytes_stream());
    out.body(body)
        .unwrap_or_else(|_| Response::new(Body::empty()))
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
