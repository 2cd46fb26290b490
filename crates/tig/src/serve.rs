//! `tig serve`: flags and environment → [`tig_server::Config`], then run the store
//! until SIGTERM, ctrl-c or `--lifetime`.
//!
//! This is the only place of the server that reads the environment or installs
//! signal handlers. Startup prints one readiness line to stdout
//! (`tig: listening on http://ADDR`, with the real bound address); logs go to
//! stderr.

use std::collections::HashSet;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use tig_server::{ApiKey, AppState, Config, PeerTls, Peers, Phase};
use tig_store::fs::FsOptions;
use tig_store::s3::{S3Config, S3Options};
use tig_store::{CachedStore, FsStore, S3Store, Store};

const DEFAULT_CERT: &str = "/etc/ssl/tig.crt";
const DEFAULT_KEY: &str = "/etc/ssl/tig.key";

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

/// Rate of the background scrubber (`--scrub-every`), bytes per second.
const SCRUB_RATE: u64 = 32 << 20;

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

/// The key from `APIKEY` (fixed), else the file `<root>/apikey`, which the server
/// re-reads when it changes. An existing but unreadable file is a startup error.
fn api_key_source(root: &Path) -> anyhow::Result<(Option<ApiKey>, Option<PathBuf>)> {
    if let Ok(k) = std::env::var("APIKEY")
        && !k.is_empty()
    {
        return Ok((ApiKey::new(k), None));
    }
    let path = root.join("apikey");
    match std::fs::read_to_string(&path) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    Ok((None, Some(path)))
}

fn parse_cluster(s: &str) -> anyhow::Result<Peers> {
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

/// The `--listen` value, or its default.
fn listen_or_default(args: &ServeArgs, tls: bool) -> String {
    args.listen
        .clone()
        .unwrap_or_else(|| if tls { "0.0.0.0:443" } else { "0.0.0.0:7777" }.to_owned())
}

/// `--check-config`: everything `serve` would refuse before touching a file or
/// the network.
fn check_config(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let listen = listen_or_default(args, args.tls_cert.is_some());
    let (host, port) = listen
        .rsplit_once(':')
        .with_context(|| format!("bad --listen address {listen:?} (want HOST:PORT)"))?;
    anyhow::ensure!(!host.is_empty(), "bad --listen address {listen:?}");
    port.parse::<u16>()
        .with_context(|| format!("bad port in --listen {listen:?}"))?;
    if let Some(c) = &args.cluster {
        parse_cluster(c)?;
    }
    for p in &args.peers {
        let p = p.trim();
        anyhow::ensure!(
            p.is_empty() || p.starts_with("http://") || p.starts_with("https://"),
            "bad peer URL {p:?} (want http://HOST:PORT or https://…)"
        );
    }
    println!("tig: configuration ok");
    Ok(ExitCode::SUCCESS)
}

/// Runs `tig serve`.
pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    if args.check_config {
        return check_config(&args);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(args))
}

/// Why the server stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Terminate,
    Interrupt,
    Lifetime,
}

/// Signal handlers, installed before the readiness line so that a signal
/// arriving right after it is handled gracefully.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                term: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
                int: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    async fn wait(mut self, lifetime: Option<Duration>) -> Stop {
        let lifetime = async {
            match lifetime {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => Stop::Terminate,
                _ = self.int.recv() => Stop::Interrupt,
                () = lifetime => Stop::Lifetime,
            }
        }
        #[cfg(not(unix))]
        tokio::select! {
            _ = tokio::signal::ctrl_c() => Stop::Interrupt,
            () = lifetime => Stop::Lifetime,
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let root = args.root.clone().unwrap_or_else(|| {
        if Path::new("/data").is_dir() {
            PathBuf::from("/data")
        } else {
            PathBuf::from("/tmp")
        }
    });
    let tls_paths = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => Some((c.clone(), k.clone())),
        _ if Path::new(DEFAULT_CERT).is_file() && Path::new(DEFAULT_KEY).is_file() => {
            Some((PathBuf::from(DEFAULT_CERT), PathBuf::from(DEFAULT_KEY)))
        }
        _ => None,
    };
    let tls = match &tls_paths {
        Some((c, k)) => Some(tig_server::tls::load(c, k).context("TLS setup failed")?),
        None => None,
    };
    let listen = listen_or_default(&args, tls.is_some());
    let addr: SocketAddr = match listen.parse() {
        Ok(a) => a,
        Err(_) => tokio::net::lookup_host(&listen)
            .await
            .ok()
            .and_then(|mut a| a.next())
            .with_context(|| {
                format!(
                    "bad --listen address {listen:?}: expected HOST:PORT, e.g. 127.0.0.1:7777, 0.0.0.0:7777 or [::]:7777"
                )
            })?,
    };
    let peers = if let Some(c) = &args.cluster {
        parse_cluster(c)?
    } else {
        let list: Vec<String> = args
            .peers
            .iter()
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
            .collect();
        if list.is_empty() {
            Peers::None
        } else {
            Peers::List(list)
        }
    };
    let peer_tls = match (&args.peer_ca, args.peer_insecure) {
        (Some(path), _) => PeerTls::Ca(
            tig_server::tls::load_ca(path)
                .with_context(|| format!("cannot use --peer-ca {}", path.display()))?,
        ),
        (None, true) => PeerTls::Insecure,
        (None, false) => PeerTls::Verify,
    };
    let config = Config {
        max_size: args.max_size,
        retention: args.retention,
        peers,
        tls,
        metrics: !args.no_metrics,
        metrics_listen: args.metrics_listen,
        peer_tls,
        ..Config::default()
    };
    if let Some(url) = args
        .root
        .as_deref()
        .and_then(Path::to_str)
        .filter(|r| S3Config::is_s3_root(r))
    {
        // Not behind the content cache: another instance's sweep may delete
        // what this one cached, and cached reads would not record their use.
        let store = open_s3(url, args.retention).await?;
        if args.scrub_every.is_some_and(|d| !d.is_zero()) {
            tracing::warn!("--scrub-every applies to a directory root; ignored for {url}");
        }
        let api_key = std::env::var("APIKEY")
            .ok()
            .filter(|k| !k.is_empty())
            .and_then(ApiKey::new);
        return run_store(store, &args, url, (api_key, None), config, addr).await;
    }
    if args.root.is_some() && !root.exists() {
        // An explicit data directory is created like `mkdir -p`, so the README's
        // one-line start works on a fresh machine; the seed defaults are only used
        // when they exist.
        std::fs::create_dir_all(&root)
            .with_context(|| format!("cannot create data directory {}", root.display()))?;
    }
    let store = FsStore::open(&root, FsOptions::default())
        .await
        .with_context(|| format!("cannot use data directory {}", root.display()))?;
    if let Some(every) = args.scrub_every.filter(|d| !d.is_zero()) {
        let store = store.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match tig_store::scrub::scrub(&store, Some(SCRUB_RATE)).await {
                    Ok(r) if r.corrupt.is_empty() => {
                        tracing::info!(
                            checked = r.checked,
                            slots = r.slots,
                            "scrub: all content matches its name"
                        );
                    }
                    Ok(r) => tracing::error!(
                        checked = r.checked,
                        corrupt = r.corrupt.len(),
                        "scrub: corrupt objects moved to .tig-corrupt"
                    ),
                    Err(e) => tracing::error!(error = %e, "scrub failed"),
                }
            }
        });
    }
    let store = CachedStore::new(store, args.cache_size);
    let (api_key, api_key_file) = api_key_source(&root)?;
    let root = root.display().to_string();
    run_store(store, &args, &root, (api_key, api_key_file), config, addr).await
}

/// Opens `--root s3://BUCKET[/PREFIX]` with the standard `AWS_*` variables.
async fn open_s3(url: &str, retention: Duration) -> anyhow::Result<S3Store> {
    let config = S3Config::from_env(url, |k| std::env::var(k).ok())?;
    // A read records its use at most once a minute, and often enough for short
    // retentions (tests, demos) to keep used objects; not at all when nothing is
    // ever swept (`--retention 0`).
    let touch = (retention / 8).clamp(Duration::ZERO, Duration::from_secs(60));
    let opts = S3Options {
        touch_granularity: touch,
        record_use: !retention.is_zero(),
    };
    Ok(S3Store::open(&config, opts).await?)
}

/// Serves `store` until a signal or the lifetime ends (any backend).
async fn run_store<S: Store>(
    store: S,
    args: &ServeArgs,
    root: &str,
    (api_key, api_key_file): (Option<ApiKey>, Option<PathBuf>),
    mut config: Config,
    addr: SocketAddr,
) -> anyhow::Result<ExitCode> {
    config.api_key = api_key;
    config.api_key_file = api_key_file;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener
        .local_addr()
        .context("cannot read the bound address")?;
    tracing::info!(
        root,
        retention = ?config.retention,
        max_size = config.max_size,
        apikey_env = config.api_key.is_some(),
        peers = ?config.peers,
        "tig serve starting"
    );
    let tls_on = config.tls.is_some();
    let metrics_listener = match config.metrics_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (--metrics-listen)"))?,
        ),
        None => None,
    };
    let state = AppState::new(store, config);

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let lifetime = args.lifetime;
    let signals = Signals::install()?;
    let leaving = state.clone();
    // The shutdown future runs inside the accept loop: while it offloads, the
    // server still answers (reads, and /readyz with 503 so load balancers leave).
    let shutdown = async move {
        let why = signals.wait(lifetime).await;
        tracing::info!(?why, "stopping");
        let first = if matches!(why, Stop::Terminate | Stop::Lifetime) && leaving.cluster.enabled()
        {
            leaving.readiness.set(Phase::Offloading);
            Some(leaving.offload(&HashSet::new()).await)
        } else {
            leaving.readiness.set(Phase::Stopping);
            None
        };
        let _ = stop_tx.send((why, first));
    };
    let (metrics_stop, metrics_task) = match metrics_listener {
        Some(l) => {
            let addr = l.local_addr().context("cannot read the metrics address")?;
            tracing::info!(%addr, "metrics on their own listener");
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(tig_server::ops::serve_metrics(l, state.clone(), async {
                let _ = rx.await;
            }));
            (Some(tx), Some(task))
        }
        None => (None, None),
    };
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "tig: listening on {}",
            tig_server::base_url(local, tls_on)
        );
        let _ = out.flush();
    }
    tig_server::serve(listener, state.clone(), shutdown)
        .await
        .context("server failed")?;
    if let Ok((_, Some(first))) = stop_rx.await {
        // Objects written while the first pass ran (the server still accepted).
        let second = state.offload(&first.settled).await;
        let failed = first.failed + second.failed;
        if failed > 0 {
            tracing::warn!(failed, "some objects could not be offloaded");
        }
    }
    if let Some(tx) = metrics_stop {
        let _ = tx.send(());
    }
    if let Some(task) = metrics_task {
        let _ = task.await;
    }
    Ok(ExitCode::SUCCESS)
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
