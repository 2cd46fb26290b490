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

mod args;

use args::parse_cluster;
pub use args::{LogFormat, ServeArgs};

/// Rate of the background scrubber (`--scrub-every`), bytes per second.
const SCRUB_RATE: u64 = 32 << 20;

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
    // With workers, this runtime only runs the sweeper, signals, offload and
    // scrubbing: one thread is plenty.
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if workers(&args) > 0 {
        builder.worker_threads(1);
    }
    let runtime = builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(args))
}

/// How many event loops serve requests (`--workers`, default one per core).
fn workers(args: &ServeArgs) -> usize {
    args.workers.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(std::num::NonZeroUsize::get)
            .unwrap_or(1)
    })
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
    // With `--retention 0` nothing is ever swept: reads need not record their use.
    let opts = FsOptions {
        record_use: !args.retention.is_zero(),
        ..FsOptions::default()
    };
    let store = FsStore::open(&root, opts)
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
    let workers = workers(args);
    let listeners = tig_server::bind_workers(addr, workers.max(1))
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listeners
        .first()
        .map(std::net::TcpListener::local_addr)
        .transpose()
        .context("cannot read the bound address")?
        .context("no listener")?;
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
    if workers == 0 {
        let listener = listeners
            .into_iter()
            .next()
            .map(tokio::net::TcpListener::from_std)
            .transpose()
            .context("cannot use the listening socket")?
            .context("no listener")?;
        tig_server::serve(listener, state.clone(), shutdown)
            .await
            .context("server failed")?;
    } else {
        tig_server::serve_workers(listeners, state.clone(), shutdown)
            .await
            .context("server failed")?;
    }
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
