//! The flags of `tig serve` and their parsers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use tig_server::Peers;

/// Flags of `tig serve`; each can also come from its environment variable.
/// The API key comes from `APIKEY`, else from the file `<root>/apikey`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 0.0.0.0:7777, or 0.0.0.0:443 with TLS].
    #[arg(long, env = "TIG_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// Data directory [default: /data if it exists, else /tmp].
    #[arg(long, env = "TIG_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Delete objects unused for this long (`3s`, `10m`, `2w`, `1h30m`); `0` keeps forever.
    #[arg(long, env = "TIG_RETENTION", value_name = "DUR", default_value = "10m", value_parser = parse_duration)]
    pub retention: Duration,
    /// Largest accepted body (`1048576`, `128MiB`, `1GiB`, `10KiB`, `1MB`).
    #[arg(long, env = "TIG_MAX_SIZE", value_name = "SIZE", default_value = "128MiB", value_parser = parse_size)]
    pub max_size: u64,
    /// TLS certificate chain (PEM) [default: /etc/ssl/tig.crt when it and the key exist].
    #[arg(long, env = "TIG_TLS_CERT", value_name = "PATH", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) [default: /etc/ssl/tig.key].
    #[arg(long, env = "TIG_TLS_KEY", value_name = "PATH", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// DNS name (optionally NAME:PORT) whose A/AAAA records are the cluster's instances.
    #[arg(
        long,
        env = "TIG_CLUSTER",
        value_name = "NAME[:PORT]",
        conflicts_with = "peers"
    )]
    pub cluster: Option<String>,
    /// Explicit peer base URLs, comma-separated (e.g. http://10.0.0.2:7777).
    #[arg(long, env = "TIG_PEERS", value_name = "URL,URL", value_delimiter = ',')]
    pub peers: Vec<String>,
    /// Memory for hot small content objects (each up to 64 KiB), served without
    /// touching the disk; `0` turns the cache off.
    #[arg(long, env = "TIG_CACHE_SIZE", value_name = "SIZE", default_value = "64MiB", value_parser = parse_size)]
    pub cache_size: u64,
    /// Offload objects to the peers and exit after this long (also done on SIGTERM).
    #[arg(long, env = "TIG_LIFETIME", value_name = "DUR", value_parser = parse_duration)]
    pub lifetime: Option<Duration>,
    /// Re-hash every content object this often in the background (at most
    /// 32 MiB/s), moving corrupt ones to `<root>/.tig-corrupt/` (see `tig scrub`).
    #[arg(long, env = "TIG_SCRUB_EVERY", value_name = "DUR", value_parser = parse_duration)]
    pub scrub_every: Option<Duration>,
    /// Serve /metrics on this address only (e.g. 0.0.0.0:9090) instead of the main port.
    #[arg(long, env = "TIG_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// Count nothing and serve no /metrics (for measuring what counting costs).
    #[arg(long, env = "TIG_NO_METRICS", conflicts_with = "metrics_listen")]
    pub no_metrics: bool,
    /// Trust peers whose TLS certificate is issued by this CA (PEM), at any name or IP.
    #[arg(long, env = "TIG_PEER_CA", value_name = "FILE")]
    pub peer_ca: Option<PathBuf>,
    /// Do not verify peers' TLS certificates. No peer is then trusted: the API key
    /// is never sent to one and slots from peers are not relayed; content still
    /// is, checked by its hash.
    #[arg(long, env = "TIG_PEER_INSECURE", conflicts_with = "peer_ca")]
    pub peer_insecure: bool,
    /// Event loops serving requests: one thread each, with its own listening
    /// socket on the same address (`SO_REUSEPORT`) [default: one per core].
    /// `0` serves from one shared work-stealing thread pool instead.
    #[arg(long, env = "TIG_WORKERS", value_name = "N")]
    pub workers: Option<usize>,
    /// Log format on stderr: `text` or `json` (one JSON object a line).
    #[arg(
        long,
        env = "TIG_LOG_FORMAT",
        value_name = "FORMAT",
        default_value = "text"
    )]
    pub log_format: LogFormat,
    /// Check the flags and exit: prints `tig: configuration ok` (exit 0) or the
    /// problem (exit 1). Reads no files and binds nothing.
    #[arg(long, hide = true)]
    pub check_config: bool,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line (fields flattened: `method`, `path`, `status`, …).
    Json,
}

/// Parses `0` or a humantime duration (`3s`, `10m`, `2w`, `1h30m`); a bare
/// number means seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("bad duration {s:?}: {e} (try 3s, 10m, 2w or 0)"))
}

/// Parses a size with the shared grammar ([`tig_core::parse_size`]: `KiB`… powers
/// of 1024, `KB`… powers of 1000, `B` or nothing bytes), in clap's error form.
pub fn parse_size(s: &str) -> Result<u64, String> {
    tig_core::parse_size(s)
        .map_err(|_| format!("bad size {s:?} (try 1048576, 128MiB, 1GiB or 1MB)"))
}

/// `--cluster NAME[:PORT]`: the DNS name whose records are the instances.
pub fn parse_cluster(s: &str) -> anyhow::Result<Peers> {
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p))
            if !h.is_empty() && !h.ends_with(':') && p.chars().all(|c| c.is_ascii_digit()) =>
        {
            let port = p
                .parse::<u16>()
                .with_context(|| format!("bad port in --cluster {s}"))?;
            (
                h.trim_start_matches('[').trim_end_matches(']').to_owned(),
                Some(port),
            )
        }
        _ => (s.to_owned(), None),
    };
    anyhow::ensure!(!host.is_empty(), "--cluster needs a DNS name");
    Ok(Peers::Dns { host, port })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("2w"), Ok(Duration::from_secs(14 * 86400)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("128MiB"), Ok(128 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("10KiB"), Ok(10 << 10));
        assert_eq!(parse_size("1MB"), Ok(1_000_000));
        assert_eq!(parse_size("5 kb"), Ok(5_000));
        assert_eq!(parse_size("0"), Ok(0));
        for bad in ["", "MiB", "1.5GiB", "12XB", "-1", "99999999999TiB"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cluster_names() {
        assert_eq!(
            parse_cluster("tig-headless").unwrap(),
            Peers::Dns {
                host: "tig-headless".into(),
                port: None
            }
        );
        assert_eq!(
            parse_cluster("tig.svc:7777").unwrap(),
            Peers::Dns {
                host: "tig.svc".into(),
                port: Some(7777)
            }
        );
        assert!(parse_cluster("x:99999").is_err());
    }
}
