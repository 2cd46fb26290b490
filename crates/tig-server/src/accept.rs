//! The accept loops: connections in, one hyper connection task each, graceful
//! drain at the end.
//!
//! Two shapes over the same per-connection code:
//! - [`serve`]: one loop on the caller's runtime (tests, and `--workers 0`);
//! - [`serve_workers`]: one thread per listener, each with its own
//!   single-threaded runtime and its own `SO_REUSEPORT` socket on the same
//!   address ([`bind_workers`]). The kernel spreads new connections over the
//!   sockets, and a connection lives and dies on the thread that accepted it:
//!   no task migrates between cores and no wake-up crosses one, which is where a
//!   work-stealing runtime spends its time on small requests (nginx's shape).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tig_store::Store;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::hot::Hot;
use crate::{AppState, Metrics, access, ops, router};

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Pending connections the kernel keeps per listening socket.
const BACKLOG: i32 = 1024;
/// hyper's per-connection read buffer limit (its default is ~400 KiB), which
/// also bounds request headers. A received body piece keeps the buffer it was
/// read into alive while the store queues it for writing, so this is what an
/// upload holds: 64 concurrent 64 MiB uploads peaked at 23-28 MiB RSS with it,
/// 67-85 MiB with hyper's default (tmpfs, 2026-12-01).
const MAX_BUF: usize = 64 * 1024;

/// What every connection of one server shares.
#[derive(Clone)]
struct Shared {
    app: Router,
    hot: Hot,
    tls: Option<TlsAcceptor>,
    metrics: Option<Arc<Metrics>>,
    grace: Duration,
}

/// Starts the retention sweeper, marks the server ready and returns what the
/// accept loops share.
fn start<S: Store>(state: AppState<S>, local: SocketAddr) -> (Shared, JoinHandle<()>) {
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
    let shared = Shared {
        tls: state.config.tls.clone().map(TlsAcceptor::from),
        metrics: state.metrics.clone(),
        grace: state.config.shutdown_grace,
        hot: Hot::of(state.store.clone()),
        app: router(state.clone()),
    };
    state.readiness.set(ops::Phase::Ready);
    (shared, sweeper)
}

/// Serves HTTP (or HTTPS, if `state.config.tls` is set) on `listener` until
/// `shutdown` completes, then stops accepting and waits up to
/// `Config::shutdown_grace` for open requests. Runs the retention sweeper
/// meanwhile.
pub async fn serve<S: Store>(
    listener: TcpListener,
    state: AppState<S>,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let (shared, sweeper) = start(state, listener.local_addr()?);
    accept_loop(listener, shared, shutdown).await;
    sweeper.abort();
    Ok(())
}

/// Binds `workers` listening sockets to `addr` with `SO_REUSEPORT` (one plain
/// socket when `workers` ≤ 1). With port 0 the first socket picks the port and
/// the others join it, so all of them listen on one address.
pub fn bind_workers(addr: SocketAddr, workers: usize) -> io::Result<Vec<std::net::TcpListener>> {
    use socket2::{Domain, Socket, Type};
    let one = |addr: SocketAddr, reuse_port: bool| -> io::Result<std::net::TcpListener> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        if reuse_port {
            socket.set_reuse_port(true)?;
        }
        socket.bind(&addr.into())?;
        socket.listen(BACKLOG)?;
        socket.set_nonblocking(true)?;
        Ok(socket.into())
    };
    let reuse = workers > 1;
    let first = one(addr, reuse)?;
    let addr = first.local_addr()?;
    let mut all = vec![first];
    for _ in 1..workers {
        all.push(one(addr, true)?);
    }
    Ok(all)
}

/// Like [`serve`], with one worker thread per listener (from [`bind_workers`]),
/// each running its own single-threaded runtime; this task only waits for
/// `shutdown` and then for every worker to drain.
///
/// A stopped worker's thread stays parked, its runtime alive, until the process
/// exits: connections to peers that requests opened on it (pooled by the
/// cluster's HTTP client) keep working for the offload that follows a stop.
pub async fn serve_workers<S: Store>(
    listeners: Vec<std::net::TcpListener>,
    state: AppState<S>,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let first = listeners
        .first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no listener to serve on"))?;
    let (shared, sweeper) = start(state, first.local_addr()?);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut drained = Vec::with_capacity(listeners.len());
    let mut started = Vec::with_capacity(listeners.len());
    for (i, listener) in listeners.into_iter().enumerate() {
        let (up_tx, up_rx) = tokio::sync::oneshot::channel::<io::Result<()>>();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let shared = shared.clone();
        let mut stop = stop_rx.clone();
        std::thread::Builder::new()
            .name(format!("tig-worker-{i}"))
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = up_tx.send(Err(e));
                        return;
                    }
                };
                rt.block_on(async move {
                    let listener = match TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = up_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = up_tx.send(Ok(()));
                    let stopped = async move {
                        let _ = stop.wait_for(|stop| *stop).await;
                    };
                    accept_loop(listener, shared, stopped).await;
                    let _ = done_tx.send(());
                    std::future::pending::<()>().await;
                });
            })?;
        started.push(up_rx);
        drained.push(done_rx);
    }
    for up in started {
        let res = up
            .await
            .unwrap_or_else(|_| Err(io::Error::other("a worker thread ended before it started")));
        if let Err(e) = res {
            let _ = stop_tx.send(true);
            sweeper.abort();
            return Err(e);
        }
    }
    shutdown.await;
    let _ = stop_tx.send(true);
    for done in drained {
        let _ = done.await;
    }
    sweeper.abort();
    Ok(())
}

/// Accepts until `stop`, then drains this loop's connections for up to `grace`.
async fn accept_loop(listener: TcpListener, shared: Shared, stop: impl Future<Output = ()>) {
    let graceful = GracefulShutdown::new();
    tokio::pin!(stop);
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
            () = &mut stop => break,
        };
        tokio::spawn(connection(stream, peer, shared.clone(), graceful.watcher()));
    }
    drop(listener);
    tracing::info!("shutting down: draining open connections");
    let grace = shared.grace;
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("open connections did not finish within {grace:?}; closing them");
    }
}

/// One connection: optional TLS handshake, then HTTP/1.1 or HTTP/2 until the
/// client leaves or the server drains.
async fn connection(stream: TcpStream, peer: SocketAddr, shared: Shared, watcher: Watcher) {
    let _ = stream.set_nodelay(true);
    let Shared {
        app,
        hot,
        tls,
        metrics,
        ..
    } = shared;
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        let ready = hot.reply(&req);
        if ready.is_none() {
            req.extensions_mut().insert(ConnectInfo(peer));
        }
        access::observe_reply(app.clone(), req, ready, peer, metrics.clone())
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_BUF);
    let result = match tls {
        None => {
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            watcher.watch(conn).await
        }
        Some(acceptor) => {
            let stream =
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
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
}
