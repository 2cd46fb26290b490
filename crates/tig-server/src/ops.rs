//! Operating endpoints: `/healthz`, `/readyz`, `/metrics`, and the readiness
//! state behind `/readyz`.
//!
//! None needs the API key, none is ever forwarded to a peer, and none is an
//! object: they are answered before the store is asked anything (except the
//! backend health check and the census of a scrape). Probes and scrapes are not
//! counted in `tig_http_*` nor written to the access log, so a Kubernetes probe
//! every few seconds does not drown the numbers an operator looks at.

use std::future::Future;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tig_store::{Store, StoreError};
use tokio::net::TcpListener;

use crate::AppState;
use crate::endpoint::Endpoint;
use crate::error::ApiError;

/// How long `/readyz` waits for [`Store::health`].
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the server is in its life, as `/readyz` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Built, not yet accepting (503 `starting`).
    Starting = 0,
    /// Serving (200 `ready`, unless the backend is unreachable).
    Ready = 1,
    /// Handing objects to peers before exit (503): load balancers should stop
    /// sending work here.
    Offloading = 2,
    /// Stopping without offload (503).
    Stopping = 3,
}

/// The readiness state, shared by the accept loop, the binary and `/readyz`.
#[derive(Debug)]
pub struct Readiness(AtomicU8);

impl Default for Readiness {
    fn default() -> Self {
        Self(AtomicU8::new(Phase::Starting as u8))
    }
}

impl Readiness {
    /// Moves to `phase`. Once offloading or stopping, the server never becomes
    /// ready again.
    pub fn set(&self, phase: Phase) {
        let _ = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |cur| {
                let leaving = cur == Phase::Offloading as u8 || cur == Phase::Stopping as u8;
                (!(leaving && phase == Phase::Ready)).then_some(phase as u8)
            });
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        match self.0.load(Ordering::SeqCst) {
            0 => Phase::Starting,
            1 => Phase::Ready,
            2 => Phase::Offloading,
            _ => Phase::Stopping,
        }
    }
}

fn text(status: StatusCode, line: &str) -> Response {
    let mut resp = (status, format!("{line}\n")).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Answers an operating endpoint (`Endpoint::Health`, `Ready` or `Metrics`).
pub async fn handle<S: Store>(
    state: &AppState<S>,
    endpoint: &Endpoint,
) -> Result<Response, ApiError> {
    match endpoint {
        Endpoint::Health => Ok(text(StatusCode::OK, "ok")),
        Endpoint::Ready => Ok(ready(state).await),
        Endpoint::Metrics if state.config.metrics_listen.is_none() => Ok(metrics(state).await),
        _ => Err(ApiError::NotObjectPath("/metrics".to_owned())),
    }
}

async fn ready<S: Store>(state: &AppState<S>) -> Response {
    let unavailable = |why: &str| text(StatusCode::SERVICE_UNAVAILABLE, why);
    match state.readiness.phase() {
        Phase::Starting => return unavailable("starting"),
        Phase::Offloading => return unavailable("offloading objects to peers before exit"),
        Phase::Stopping => return unavailable("shutting down"),
        Phase::Ready => {}
    }
    match tokio::time::timeout(HEALTH_TIMEOUT, state.store.health()).await {
        Ok(Ok(())) => text(StatusCode::OK, "ready"),
        Ok(Err(e)) => {
            // The backend's own words (an S3 backend names its endpoint and bucket),
            // without the generic "storage I/O failed" wrapper.
            let why = match &e {
                StoreError::Io(inner) => inner.to_string(),
                other => other.to_string(),
            };
            let line: String = why
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .take(300)
                .collect();
            unavailable(&format!("storage backend unreachable: {line}"))
        }
        Err(_) => unavailable("storage backend unreachable: no answer within 2s"),
    }
}

async fn metrics<S: Store>(state: &AppState<S>) -> Response {
    let Some(m) = &state.metrics else {
        return text(
            StatusCode::NOT_FOUND,
            "metrics are turned off (--no-metrics)",
        );
    };
    let body = m.render(&*state.store).await;
    let mut resp = Response::new(Body::from(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
    );
    resp
}

/// Serves only `GET /metrics` on its own listener (`--metrics-listen`) until
/// `shutdown` completes.
pub async fn serve_metrics<S: Store>(
    listener: TcpListener,
    state: AppState<S>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let state = state.clone();
            async move { metrics(&state).await }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_ready_again_once_leaving() {
        let r = Readiness::default();
        assert_eq!(r.phase(), Phase::Starting);
        r.set(Phase::Ready);
        assert_eq!(r.phase(), Phase::Ready);
        r.set(Phase::Offloading);
        r.set(Phase::Ready);
        assert_eq!(r.phase(), Phase::Offloading);
        r.set(Phase::Stopping);
        assert_eq!(r.phase(), Phase::Stopping);
    }
}
