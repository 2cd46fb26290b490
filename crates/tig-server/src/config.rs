//! [`Config`]: everything the server needs, already parsed. The binary builds it
//! from flags and environment; tests build it directly.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Default body size limit: 128 MiB.
pub const DEFAULT_MAX_SIZE: u64 = 128 * 1024 * 1024;

/// The admin API key. Compared in constant time; never printed.
#[derive(Clone)]
pub struct ApiKey {
    raw: String,
    digest: [u8; 32],
}

impl ApiKey {
    /// Wraps a key. Returns `None` for an empty key (no key configured).
    pub fn new(raw: impl Into<String>) -> Option<Self> {
        let raw = raw.into();
        if raw.is_empty() {
            return None;
        }
        let digest = Sha256::digest(raw.as_bytes()).into();
        Some(Self { raw, digest })
    }

    /// Whether `given` is the key. Compares fixed-length digests in constant time,
    /// so neither the key's bytes nor its length leak through timing.
    pub fn matches(&self, given: &str) -> bool {
        let given: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        self.digest.ct_eq(&given).into()
    }

    /// The key itself, for calls to peers that share it.
    pub fn expose(&self) -> &str {
        &self.raw
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Where the other instances of a cluster are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Peers {
    /// A single instance.
    #[default]
    None,
    /// Explicit base URLs, e.g. `http://127.0.0.1:7778`.
    List(Vec<String>),
    /// A DNS name whose A/AAAA records are the instances; `port` defaults to ours.
    Dns {
        /// The name to resolve.
        host: String,
        /// The port, if given as `NAME:PORT`.
        port: Option<u16>,
    },
}

/// How this instance talks TLS to its peers.
#[derive(Debug, Clone, Default)]
pub enum PeerTls {
    /// Verify peer certificates against the built-in web roots, names included.
    #[default]
    Verify,
    /// Trust certificates issued by these CA certificates (`--peer-ca`), whatever
    /// name or address the peer was reached at: pods are dialled by IP, which a
    /// cluster's own CA rarely puts in its certificates.
    Ca(Vec<rustls::pki_types::CertificateDer<'static>>),
    /// Do not verify (`--peer-insecure`). Such peers are unverified: the API key
    /// is never sent to them and their slots are never relayed.
    Insecure,
}

/// Server configuration.
#[derive(Clone)]
pub struct Config {
    /// Largest accepted body in bytes.
    pub max_size: u64,
    /// Unused objects are deleted after this long; zero keeps forever.
    pub retention: Duration,
    /// The admin key, if fixed at startup (e.g. from `APIKEY`).
    pub api_key: Option<ApiKey>,
    /// Without a fixed key: a file holding the key (`<root>/apikey`), re-read
    /// whenever it changes, so a key written while the server runs takes effect
    /// at once (as in the seed's examples).
    pub api_key_file: Option<std::path::PathBuf>,
    /// The other instances.
    pub peers: Peers,
    /// TLS; `None` serves plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// How long a failed key attempt waits before its 401.
    pub auth_fail_delay: Duration,
    /// Failed attempts from one address within `auth_window` before 429s start.
    pub auth_max_failures: u32,
    /// The throttling window (also the cool-down).
    pub auth_window: Duration,
    /// How long to wait for a peer's answer when forwarding.
    pub forward_timeout: Duration,
    /// How long a graceful shutdown waits for open requests.
    pub shutdown_grace: Duration,
    /// Count requests and serve `/metrics` (`--no-metrics` turns it off).
    pub metrics: bool,
    /// `/metrics` is served on this separate address instead of the main one.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// TLS towards peers.
    pub peer_tls: PeerTls,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_size: DEFAULT_MAX_SIZE,
            retention: Duration::from_secs(600),
            api_key: None,
            api_key_file: None,
            peers: Peers::None,
            tls: None,
            auth_fail_delay: Duration::from_millis(500),
            auth_max_failures: 10,
            auth_window: Duration::from_secs(60),
            forward_timeout: Duration::from_millis(1500),
            shutdown_grace: Duration::from_secs(10),
            metrics: true,
            metrics_listen: None,
            peer_tls: PeerTls::Verify,
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("max_size", &self.max_size)
            .field("retention", &self.retention)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .field("api_key_file", &self.api_key_file)
            .field("peers", &self.peers)
            .field("tls", &self.tls.is_some())
            .field("metrics", &self.metrics)
            .field("metrics_listen", &self.metrics_listen)
            .field("peer_tls", &self.peer_tls)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_compare_and_redaction() {
        let k = ApiKey::new("abc").unwrap();
        assert!(k.matches("abc"));
        assert!(!k.matches("abd"));
        assert!(!k.matches("ab"));
        assert!(!k.matches(""));
        assert!(ApiKey::new("").is_none());
        assert!(!format!("{k:?}").contains("abc"));
        let c = Config {
            api_key: Some(k),
            ..Config::default()
        };
        assert!(!format!("{c:?}").contains("abc"));
    }
}
