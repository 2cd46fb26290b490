//! The HTTP half of `tig serve`.
//!
//! Layout:
//! - [`config`]: [`Config`] (limits, key, peers, TLS), built by the binary;
//! - [`endpoint`]: request line → [`endpoint::Endpoint`], headers →
//!   [`endpoint::Conditions`]; pure and unit-tested;
//! - [`handlers`]: [`router`] and the thin handlers calling the [`Store`];
//! - [`read`]: `GET`/`HEAD`/`take=1` of one object;
//! - [`conditional`]: ETags, `Cache-Control`, 304 and 206/416 decisions;
//! - [`channel`]: write-only channels (`Write only channel to tig /<h>.tig`);
//! - [`error`]: [`ApiError`], the single error type choosing status and reason;
//! - [`auth`]: constant-time key checks and per-address throttling;
//! - [`missing`]: `POST /?missing=1`, which of many names lack content;
//! - [`cluster`]: peers, forwarding of misses (verified), offload-and-terminate;
//! - [`burst`]: bursts whose list or members live on other instances;
//! - [`tls`]: PEM files → rustls config;
//! - [`ops`]: `/healthz`, `/readyz` (and the [`ops::Readiness`] behind it), `/metrics`;
//! - [`metrics`]: the Prometheus counters, atomics on the hot path;
//! - [`access`]: per-request observation: access log line and `tig_http_*` metrics;
//! - this file: [`AppState`] and [`serve`], the accept loop.
//!
//! `serve(listener, state, shutdown)` takes a bound listener (tests pass port 0)
//! and any future as the shutdown signal; it owns the retention sweeper and
//! drains open connections (bounded by `Config::shutdown_grace`) before returning.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tig_store::Store;
use tokio::net::TcpListener;

pub mod access;
pub mod auth;
pub mod burst;
pub mod channel;
pub mod cluster;
pub mod conditional;
pub mod config;
pub mod endpoint;
pub mod error;
pub mod handlers;
pub mod metrics;
pub mod missing;
pub mod ops;
pub mod read;
pub mod tls;

pub use cluster::{Cluster, OffloadReport};
pub use config::{ApiKey, Config, PeerTls, Peers};
pub use error::ApiError;
pub use handlers::router;
pub use metrics::Metrics;
pub use ops::{Phase, Readiness};

/// Shared state of every request.
pub struct AppState<S> {
    /// The storage.
    pub store: Arc<S>,
    /// The configuration.
    pub config: Arc<Config>,
    /// Failed-key bookkeeping.
    pub throttle: Arc<auth::Throttle>,
    /// The key in force (fixed or from the key file).
    pub keys: Arc<auth::Keys>,
    /// Peers and forwarding.
    pub cluster: Arc<Cluster>,
    /// The metrics (`None` with `--no-metrics`).
    pub metrics: Option<Arc<Metrics>>,
    /// What `/readyz` says.
    pub readiness: Arc<Readiness>,
}

impl<S> Clone for AppState<S> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            config: self.config.clone(),
            throttle: self.throttle.clone(),
            keys: self.keys.clone(),
            cluster: self.cluster.clone(),
            metrics: self.metrics.clone(),
            readiness: self.readiness.clone(),
        }
    }
}

impl<S: Store> AppState<S> {
    /// State over `store` with `config`.
    pub fn new(store: S, config: Config) -> Self {
        let metrics = config.metrics.then(|| Arc::new(Metrics::new()));
        let cluster = Arc::new(Cluster::new(&config, metrics.clone()));
        Self {
            store: Arc::new(store),
            config: Arc::new(config),
            throttle: Arc::default(),
            keys: Arc::default(),
            cluster,
            metrics,
            readiness: Arc::default(),
        }
    }

    /// Hands every object except the content in `skip` to the peers (see
    /// [`cluster::offload`]).
    pub async fn offload(
        &self,
        skip: &std::collections::HashSet<tig_core::ObjectId>,
    ) -> OffloadReport {
        let key = match self.keys.current(&self.config) {
            auth::KeyState::Key(k) => Some(k),
            _ => None,
        };
        cluster::offload(
            &*self.store,
            &self.cluster,
            key.as_ref().map(ApiKey::expose),
            skip,
        )
        .await
    }
}

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves HTTP (or HTTPS, if `state.config.tls` is set) on `listener` until
/// `shutdown` completes, then stops accepting and waits up to
/// `Config::shutdown_grace` for open requests. Runs the retention sweeper
/// meanwhile.
pub async fn serve<S: Store>(
    listener: TcpListener,
    state: AppState<S>,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    state.cluster.set_local_addr(local);
    let counted = state.metrics.clone();
    let sweeper = tig_store::retention::spawn_sweeper_with(
        state.store.clone(),
        state.config.retention,
        move |n| {
            if let Some(m) = &counted {
                m.retention_deleted(n);
            }
        },
    );
    let tls = state
        .config
        .tls
        .clone()
        .map(tokio_rustls::TlsAcceptor::from);
    let grace = state.config.shutdown_grace;
    let metrics = state.metrics.clone();
    state.readiness.set(ops::Phase::Ready);
    let app = router(state);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            res = listener.accept() => match res {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let tls = tls.clone();
        let metrics = metrics.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ConnectInfo(peer));
                    access::observe(app.clone(), req, peer, metrics.clone())
                },
            );
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            let result =
                match tls {
                    None => {
                        let conn = builder.serve_connection(TokioIo::new(stream), svc);
                        watcher.watch(conn).await
                    }
                    Some(acceptor) => {
                        let stream =
                            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream))
                                .await
                            {
                                Ok(Ok(s)) => s,
                                Ok(Err(e)) => {
                                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                    return;
                                }
                                Err(_) => {
                                    tracing::debug!(%peer, "TLS handshake timed out");
                                    return;
                                }
                            };
                        let conn = builder.serve_connection(TokioIo::new(stream), svc);
                        watcher.watch(conn).await
                    }
                };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!("shutting down: draining open connections");
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("open connections did not finish within {grace:?}; closing them");
    }
    sweeper.abort();
    Ok(())
}

/// The address `serve` reports once bound, e.g. `http://127.0.0.1:40123`.
pub fn base_url(addr: SocketAddr, tls: bool) -> String {
    format!("{}://{addr}", if tls { "https" } else { "http" })
}
