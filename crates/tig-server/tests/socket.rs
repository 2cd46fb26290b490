//! Tests over a real socket: `serve()` on 127.0.0.1:0 with the filesystem store,
//! driven by an HTTP client. Concurrency, streaming, cluster forwarding, offload
//! and graceful shutdown.

// Test helpers may panic: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tig_core::ObjectId;
use tig_server::{ApiKey, AppState, Config, Peers, serve};
use tig_store::FsStore;
use tig_store::fs::FsOptions;
use tokio::sync::oneshot;

struct Server {
    url: String,
    dir: tempfile::TempDir,
    state: AppState<FsStore>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(config: Config) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path(), FsOptions::default())
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = AppState::new(store, config);
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, state.clone(), async move {
            let _ = rx.await;
        }));
        Self {
            url,
            dir,
            state,
            stop: Some(tx),
            task,
        }
    }

    async fn stop(mut self) -> tempfile::TempDir {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
        self.dir
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

/// The names in `dir` apart from the temp area `.tig-tmp`, plus any temp file in
/// it (its per-process `lock` files are not counted).
fn entries(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        if name != ".tig-tmp" {
            out.push(name);
        }
    }
    if let Ok(dirs) = std::fs::read_dir(dir.join(".tig-tmp")) {
        for d in dirs.flatten() {
            if d.file_type().unwrap().is_dir() {
                for f in std::fs::read_dir(d.path()).unwrap().flatten() {
                    if f.file_name() != "lock" {
                        out.push(format!(".tig-tmp/{:?}", f.path()));
                    }
                }
            }
        }
    }
    out
}

/// Every `<h>.tig` in `dir` hashes to its name, or is one of `slots`; nothing
/// else is there.
fn assert_clean_dir(dir: &Path, slots: &[ObjectId]) {
    for name in entries(dir) {
        let id = ObjectId::from_file_name(&name).unwrap_or_else(|| panic!("stray file {name}"));
        if slots.contains(&id) {
            continue;
        }
        let data = std::fs::read(dir.join(&name)).unwrap();
        assert_eq!(
            hex::encode(Sha256::digest(&data)),
            id.to_hex(),
            "{name} is whole"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_setifnot_have_exactly_one_winner() {
    let s = Server::start(Config::default()).await;
    let slot = ObjectId::digest(b"the lock").path();
    let c = client();
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let (c, url) = (c.clone(), format!("{}{slot}?setifnot=1", s.url));
            tokio::spawn(async move {
                let r = c
                    .put(url)
                    .body(format!("owner {i}\n"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                let created = r.headers()["tig-created"].to_str().unwrap().to_owned();
                let body = r.text().await.unwrap();
                (i, created, body)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        let (i, created, body) = t.await.unwrap();
        if created == "true" {
            assert_eq!(body, slot);
            winners.push(i);
        } else {
            assert_eq!(body, "");
        }
    }
    assert_eq!(winners.len(), 1);
    let value = c
        .get(format!("{}{slot}", s.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(value, format!("owner {}\n", winners[0]));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_appends_keep_every_line_whole() {
    let s = Server::start(Config::default()).await;
    let slot = ObjectId::digest(b"the log").path();
    let c = client();
    // Lines longer than a socket buffer make interleaving visible if it happened.
    let line = |i: usize| format!("{i:02} {}\n", "x".repeat(100_000 + i));
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let (c, url, body) = (c.clone(), format!("{}{slot}?append=1", s.url), line(i));
            tokio::spawn(async move {
                let r = c.post(url).body(body).send().await.unwrap();
                assert_eq!(r.status(), 200);
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let text = c
        .get(format!("{}{slot}", s.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lines: HashSet<String> = text.lines().map(|l| format!("{l}\n")).collect();
    assert_eq!(text.lines().count(), 50);
    for i in 0..50 {
        assert!(lines.contains(&line(i)), "line {i} whole");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_identical_puts_make_one_valid_object() {
    let s = Server::start(Config::default()).await;
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
    let c = client();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (c, url, data) = (c.clone(), format!("{}/", s.url), data.clone());
            tokio::spawn(async move {
                let r = c.put(url).body(data).send().await.unwrap();
                assert_eq!(r.status(), 200);
                r.text().await.unwrap()
            })
        })
        .collect();
    let mut paths = HashSet::new();
    for t in tasks {
        paths.insert(t.await.unwrap());
    }
    assert_eq!(paths.len(), 1);
    let path = paths.into_iter().next().unwrap();
    assert_eq!(path, ObjectId::digest(&data).path());
    let got = c
        .get(format!("{}{path}", s.url))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&got[..], &data[..]);
    let dir = s.stop().await;
    assert_eq!(entries(dir.path()).len(), 1);
    assert_clean_dir(dir.path(), &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_upload_without_length_and_oversize_refusal() {
    let s = Server::start(Config {
        max_size: 3_000_000,
        ..Config::default()
    })
    .await;
    let c = client();
    let chunk = bytes::Bytes::from(vec![b'z'; 100_000]);
    let make = |n: usize| {
        let chunk = chunk.clone();
        reqwest::Body::wrap_stream(futures_util::stream::iter(
            (0..n).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
        ))
    };
    let r = c
        .put(format!("{}/", s.url))
        .body(make(30))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c.put(format!("{}/", s.url)).body(make(31)).send().await;
    // The server answers 413 as soon as the limit is passed; the client may
    // still be sending and see the connection close instead.
    if let Ok(r) = r {
        assert_eq!(r.status(), 413);
    }
    let dir = s.stop().await;
    assert_eq!(entries(dir.path()).len(), 1);
    assert_clean_dir(dir.path(), &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_is_answered_by_a_peer_and_never_forwarded_twice() {
    let a = Server::start(Config::default()).await;
    let b = Server::start(Config {
        peers: Peers::List(vec![a.url.clone()]),
        ..Config::default()
    })
    .await;
    let c = client();
    let path = c
        .put(format!("{}/", a.url))
        .body("on a")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let r = c
        .get(format!("{}{path}?Content-Type=text/plain", b.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/plain");
    assert_eq!(r.text().await.unwrap(), "on a");
    let r = c.head(format!("{}{path}", b.url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .get(format!("{}{path}", b.url))
        .header("Tig-Forwarded", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let absent = ObjectId::digest(b"nowhere").path();
    assert_eq!(
        c.get(format!("{}{absent}", b.url))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_peer_is_skipped() {
    // A port that was just free: nothing listens there.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let s = Server::start(Config {
        peers: Peers::List(vec![dead]),
        forward_timeout: Duration::from_millis(500),
        ..Config::default()
    })
    .await;
    let r = client()
        .get(format!("{}{}", s.url, ObjectId::digest(b"x").path()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offload_hands_content_and_slots_to_a_peer() {
    let key = || ApiKey::new("shared");
    let b = Server::start(Config {
        api_key: key(),
        ..Config::default()
    })
    .await;
    let a = Server::start(Config {
        api_key: key(),
        peers: Peers::List(vec![b.url.clone()]),
        ..Config::default()
    })
    .await;
    let c = client();
    let content = c
        .put(format!("{}/?apikey=shared", a.url))
        .body(vec![9u8; 200_000])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let slot = ObjectId::digest(b"slot").path();
    let r = c
        .put(format!("{}{slot}?apikey=shared", a.url))
        .body("value")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let report = a.state.offload(&Default::default()).await;
    assert_eq!((report.sent, report.failed), (2, 0));
    a.stop().await;
    let got = c
        .get(format!("{}{content}", b.url))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&got[..], &vec![9u8; 200_000][..]);
    let got = c
        .get(format!("{}{slot}", b.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(got, "value");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_an_open_request_finish() {
    let s = Server::start(Config::default()).await;
    let c = client();
    // A slow upload in flight when shutdown starts still completes.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(1);
    let url = format!("{}/", s.url);
    let upload = tokio::spawn(async move {
        let body = reqwest::Body::wrap_stream(tokio_stream_from(rx));
        c.put(url)
            .body(body)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    let first = bytes::Bytes::from(vec![b'1'; 300_000]);
    tx.send(Ok(first.clone())).await.unwrap();
    // The server is inside the request once its temp file appears (bodies over
    // the write buffer spill to disk). Poll for it, bounded.
    let dir = s.dir.path().to_owned();
    let mut seen = false;
    for _ in 0..500 {
        // Temp files live in `<root>/.tig-tmp/<process dir>/`, next to its `lock`.
        seen = std::fs::read_dir(dir.join(".tig-tmp")).unwrap().any(|d| {
            let d = d.unwrap();
            d.file_type().unwrap().is_dir()
                && std::fs::read_dir(d.path())
                    .unwrap()
                    .any(|f| f.unwrap().file_name() != "lock")
        });
        if seen {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(seen, "upload reached the server");
    let stop = tokio::spawn(s.stop());
    tx.send(Ok("part two".into())).await.unwrap();
    drop(tx);
    let path = upload.await.unwrap();
    let mut all = first.to_vec();
    all.extend_from_slice(b"part two");
    assert_eq!(path, ObjectId::digest(&all).path());
    let dir = stop.await.unwrap();
    assert!(dir.path().join(&path[1..]).exists());
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// `serve_workers`: several event loops on one port (`SO_REUSEPORT`), each
/// request answered whichever loop the kernel picked, and a clean stop after
/// which the port refuses connections.
#[tokio::test]
async fn workers_share_one_port_and_stop() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path(), FsOptions::default())
        .await
        .unwrap();
    let listeners = tig_server::bind_workers("127.0.0.1:0".parse().unwrap(), 3).unwrap();
    let ports: HashSet<u16> = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    assert_eq!(ports.len(), 1, "every worker listens on the same port");
    let port = *ports.iter().next().unwrap();
    assert_ne!(port, 0);
    let url = format!("http://127.0.0.1:{port}");
    let state = AppState::new(store, Config::default());
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(tig_server::serve_workers(listeners, state, async move {
        let _ = rx.await;
    }));
    // A fresh connection per request, so the kernel spreads them over the loops.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let mut names = Vec::new();
    for i in 0..24u32 {
        let body = format!("worker object {i}");
        let name = http
            .post(format!("{url}/"))
            .body(body.clone())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let expect = ObjectId::from_bytes(Sha256::digest(body.as_bytes()).into());
        assert_eq!(name, expect.path());
        names.push((name, body));
    }
    for (name, body) in &names {
        let got = http.get(format!("{url}{name}")).send().await.unwrap();
        assert_eq!(got.status(), 200);
        assert_eq!(got.text().await.unwrap(), *body);
    }
    tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("serve_workers stops")
        .unwrap()
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err(),
        "no worker accepts after the stop"
    );
}
