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
//! - `hot`: plain reads of in-memory objects, answered before the router;
//! - `accept`: [`serve`] and [`serve_workers`], the accept loops;
//! - this file: [`AppState`].
//!
//! `serve(listener, state, shutdown)` takes a bound listener (tests pass port 0)
//! and any future as the shutdown signal; it owns the retention sweeper and
//! drains open connections (bounded by `Config::shutdown_grace`) before returning.
//! [`serve_workers`] does the same with one single-threaded event loop per core,
//! each accepting on its own `SO_REUSEPORT` listener (nginx's shape).

use std::net::SocketAddr;
use std::sync::Arc;

use tig_store::Store;

mod accept;
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
mod hot;
#[cfg(target_os = "linux")]
mod keywatch;
pub mod metrics;
pub mod missing;
pub mod ops;
pub mod read;
pub mod tls;

pub use accept::{bind_workers, serve, serve_workers};
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

/// The address `serve` reports once bound, e.g. `http://127.0.0.1:40123`.
pub fn base_url(addr: SocketAddr, tls: bool) -> String {
    format!("{}://{addr}", if tls { "https" } else { "http" })
}
