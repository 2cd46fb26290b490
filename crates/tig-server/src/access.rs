//! Per-request observation: the access log line and the `tig_http_*` metrics.
//!
//! [`observe`] wraps one request: the request body is counted as the handler
//! reads it, the `{method,status}` counter moves when the reply's head is
//! ready (before a byte is sent, so a client that got its answer can scrape it),
//! and the reply body is counted frame by frame. When the reply's last byte is
//! handed to hyper (or the client goes away), the duration is recorded and one
//! `tracing` event is logged at target `tig::access`, level info:
//! method, path (never the query: it may hold the API key), status, bytes sent,
//! duration, peer address, and whether the reply completed.
//!
//! Probes and scrapes (`GET|HEAD /healthz`, `/readyz`, `/metrics`) pass
//! through unobserved. With metrics off and the access log filtered out
//! (`TIG_LOG=info,tig::access=off`), requests pass through untouched.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, Response, StatusCode, Uri, header};
use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tower::ServiceExt;

use crate::metrics::{MethodLabel, Metrics};

/// The `tracing` target of access log lines.
pub const TARGET: &str = "tig::access";

/// Whether `path` is an operating endpoint (not observed).
fn is_ops(method: &Method, path: &str) -> bool {
    (method == Method::GET || method == Method::HEAD)
        && matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// Runs `req` through `app`, counting and logging it.
pub async fn observe<B>(
    app: Router,
    req: Request<B>,
    peer: SocketAddr,
    metrics: Option<Arc<Metrics>>,
) -> Result<Response<Body>, Infallible>
where
    B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<axum::BoxError>,
{
    observe_reply(app, req, None, peer, metrics).await
}

/// Like [`observe`], but with `ready` (a reply already made for `req`, such as
/// the hot path's) `app` is not called: the reply is counted and logged alike.
pub async fn observe_reply<B>(
    app: Router,
    req: Request<B>,
    ready: Option<Response<Body>>,
    peer: SocketAddr,
    metrics: Option<Arc<Metrics>>,
) -> Result<Response<Body>, Infallible>
where
    B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<axum::BoxError>,
{
    let log = tracing::enabled!(target: TARGET, tracing::Level::INFO);
    if (metrics.is_none() && !log) || is_ops(req.method(), req.uri().path()) {
        return match ready {
            Some(resp) => Ok(resp),
            None => app.oneshot(req.map(Body::new)).await,
        };
    }
    let start = Instant::now();
    let method = req.method().clone();
    let label = MethodLabel::of(&method);
    let uri = req.uri().clone();
    let resp = match ready {
        Some(resp) => resp,
        None => {
            let req = match &metrics {
                Some(m) if !req.body().is_end_stream() => {
                    let m = m.clone();
                    req.map(|inner| Body::new(CountIn { inner, metrics: m }))
                }
                _ => req.map(Body::new),
            };
            app.oneshot(req).await?
        }
    };
    let status = resp.status();
    if let Some(m) = &metrics {
        m.request(label, status.as_u16());
        // A write, delete or take: the store census may be retaken (metrics.rs).
        let writes = !matches!(method, Method::GET | Method::HEAD)
            || uri.query().is_some_and(|q| q.contains("take"));
        if writes && status.is_success() {
            m.store_changed();
        }
    }
    let expected = resp
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .or_else(|| resp.body().size_hint().exact());
    let no_body = method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || expected == Some(0)
        || resp.body().is_end_stream();
    let mut out = CountOut {
        inner: Body::empty(),
        seen: Seen {
            metrics,
            log,
            method: label,
            uri,
            status,
            peer,
            start,
            sent: 0,
            expected,
            done: false,
        },
    };
    Ok(resp.map(|inner| {
        out.inner = inner;
        if no_body {
            out.seen.finish(true);
        }
        Body::new(out)
    }))
}

/// A request body that counts its bytes into `tig_http_body_bytes_total{in}`.
struct CountIn<B> {
    inner: B,
    metrics: Arc<Metrics>,
}

impl<B> HttpBody for CountIn<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let res = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let Some(Ok(frame)) = &res
            && let Some(d) = frame.data_ref()
        {
            self.metrics.bytes_in(d.len() as u64);
        }
        Poll::Ready(res)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What is known about a reply while it is sent.
struct Seen {
    metrics: Option<Arc<Metrics>>,
    log: bool,
    method: MethodLabel,
    uri: Uri,
    status: StatusCode,
    peer: SocketAddr,
    start: Instant,
    sent: u64,
    expected: Option<u64>,
    done: bool,
}

impl Seen {
    fn finish(&mut self, complete: bool) {
        if self.done {
            return;
        }
        self.done = true;
        let elapsed = self.start.elapsed();
        if let Some(m) = &self.metrics {
            m.duration(self.method, elapsed);
        }
        if self.log {
            tracing::info!(
                target: TARGET,
                method = self.method_str(),
                path = self.uri.path(),
                status = self.status.as_u16(),
                bytes = self.sent,
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                peer = %self.peer,
                complete,
                "request"
            );
        }
    }

    fn method_str(&self) -> &'static str {
        match self.method {
            MethodLabel::Get => "GET",
            MethodLabel::Head => "HEAD",
            MethodLabel::Put => "PUT",
            MethodLabel::Post => "POST",
            MethodLabel::Delete => "DELETE",
            MethodLabel::Other => "OTHER",
        }
    }
}

/// A reply body that counts its bytes and finishes the request's record when
/// its last byte is handed on (or when it is dropped early).
struct CountOut {
    inner: Body,
    seen: Seen,
}

impl HttpBody for CountOut {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let res = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &res {
            Some(Ok(frame)) => {
                if let Some(d) = frame.data_ref() {
                    let n = d.len() as u64;
                    this.seen.sent += n;
                    if let Some(m) = &this.seen.metrics {
                        m.bytes_out(n);
                    }
                }
                if this.seen.expected == Some(this.seen.sent) || this.inner.is_end_stream() {
                    this.seen.finish(true);
                }
            }
            Some(Err(_)) => this.seen.finish(false),
            None => this.seen.finish(true),
        }
        Poll::Ready(res)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for CountOut {
    fn drop(&mut self) {
        self.seen.finish(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_are_not_observed() {
        assert!(is_ops(&Method::GET, "/healthz"));
        assert!(is_ops(&Method::HEAD, "/readyz"));
        assert!(is_ops(&Method::GET, "/metrics"));
        assert!(!is_ops(&Method::PUT, "/metrics"));
        assert!(!is_ops(&Method::GET, "/"));
    }
}
