//! A client that adapts to its server and to its user's pipes (issue 11, client
//! side; issue 16.4): a closed stdout ends quietly, `put` learns the server's
//! body limit (`Tig-Max-Size`) and chunks below it, a body over the limit ends
//! in the 413 and its hint, and `get -o FILE --continue` resumes with `Range`
//! after a killed download, fetching only the rest. Real `tig serve` on
//! loopback, real `tig`, real `curl`; bytes served are counted by a small
//! forwarding proxy started in the test.

// Test code: a failed unwrap is a failed test (helpers outside #[test] too).
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use common::{TigServer, ok, pseudo_random, tig_bin, tig_client_cmd, wait_until};

const MIB: usize = 1 << 20;

/// `tig ARGS --server URL` with a clean environment (no TIG_*, APIKEY, proxies).
fn tig_cmd(server: &str, args: &[&str]) -> Command {
    tig_client_cmd(server, args)
}

fn run(mut cmd: Command, stdin: Option<&[u8]>) -> Output {
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd.spawn().expect("spawn tig");
    if let Some(data) = stdin {
        child.stdin.take().unwrap().write_all(data).unwrap();
    }
    child.wait_with_output().expect("wait tig")
}

/// Like `cmd | head -c1`: reads one byte of stdout, closes the pipe, and
/// returns the exit status and everything on stderr.
fn first_byte_then_close(mut cmd: Command) -> (std::process::ExitStatus, String) {
    let mut child = cmd.spawn().expect("spawn");
    let mut out = child.stdout.take().unwrap();
    let mut one = [0u8; 1];
    out.read_exact(&mut one).expect("a first byte");
    drop(out);
    let o = child.wait_with_output().unwrap();
    (o.status, String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn a_closed_stdout_ends_get_kv_get_and_feed_log_quietly() {
    let s = TigServer::start();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("big");
    std::fs::write(&f, pseudo_random(11, 2 * MIB)).unwrap();
    let path = ok(run(tig_cmd(&s.url, &["put", f.to_str().unwrap()]), None));
    let (status, err) = first_byte_then_close(tig_cmd(&s.url, &["get", path.trim()]));
    assert!(status.success(), "get | head -c1: {status}: {err}");
    assert_eq!(err, "", "get | head -c1 prints nothing on stderr");

    let value = pseudo_random(12, MIB);
    ok(run(
        tig_cmd(&s.url, &["kv", "set", "big", "-"]),
        Some(&value),
    ));
    let (status, err) = first_byte_then_close(tig_cmd(&s.url, &["kv", "get", "big"]));
    assert!(status.success(), "kv get | head -c1: {status}: {err}");
    assert_eq!(err, "");

    // a feed whose log is far larger than a pipe's buffer
    let feed = |args: &[&str]| {
        let mut cmd = Command::new(tig_bin());
        cmd.current_dir(dir.path())
            .args(args)
            .env("HOME", dir.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("TIG_LOG", "warn")
            .env_remove("TIG_KEY")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    };
    let id = ok(run(feed(&["id", "new", "--out", "k"]), None));
    ok(run(feed(&["feed", "init", "store"]), None));
    let batch: String = (0..40)
        .map(|i| format!("{i} {}\n", "m".repeat(4000)))
        .collect();
    let mut append = feed(&["feed", "append", "--key", "../k", "--batch", "-"]);
    append.current_dir(dir.path().join("store"));
    ok(run(append, Some(batch.as_bytes())));
    let mut log = feed(&["feed", "log", id.trim()]);
    log.current_dir(dir.path().join("store"));
    let (status, err) = first_byte_then_close(log);
    assert!(status.success(), "feed log | head -c1: {status}: {err}");
    assert_eq!(err, "");
}

#[test]
fn put_learns_the_servers_limit_and_curl_reads_the_burst_back() {
    let s = TigServer::start_with(None, &["--max-size", "1MiB"], &[]);
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("five");
    let data = pseudo_random(21, 5_000_000);
    std::fs::write(&f, &data).unwrap();
    let out = run(tig_cmd(&s.url, &["put", f.to_str().unwrap()]), None);
    let path = ok(out);
    let path = path.trim();
    assert!(path.ends_with("?burst=1"), "{path}");
    let curl = Command::new("curl")
        .args(["-sS", "--fail", &format!("{}{path}", s.url)])
        .output()
        .unwrap();
    assert!(curl.status.success(), "{curl:?}");
    assert!(curl.stdout == data, "curl read back other bytes");

    // an override above the server's limit: the 413 makes tig ask again and cut
    // below the limit the server states
    let g = dir.path().join("other");
    std::fs::write(&g, pseudo_random(22, 3_000_000)).unwrap();
    let out = run(
        tig_cmd(&s.url, &["put", g.to_str().unwrap(), "--max-size", "64MiB"]),
        None,
    );
    assert!(ok(out).trim().ends_with("?burst=1"));

    // the same for a snapshot holding a file over the limit
    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(tree.join("big"), pseudo_random(23, 3_000_000)).unwrap();
    let root = ok(run(
        tig_cmd(
            &s.url,
            &[
                "snapshot",
                tree.to_str().unwrap(),
                "--max-size",
                "64MiB",
                "--no-cache",
            ],
        ),
        None,
    ));
    let back = dir.path().join("back");
    ok(run(
        tig_cmd(&s.url, &["restore", root.trim(), back.to_str().unwrap()]),
        None,
    ));
    assert!(std::fs::read(back.join("big")).unwrap() == pseudo_random(23, 3_000_000));
}

#[test]
fn a_body_over_the_limit_ends_in_the_413_and_its_hint() {
    let s = TigServer::start_with(None, &["--max-size", "1MiB"], &[]);
    let value = pseudo_random(31, 5_000_000);
    // a kv value cannot be chunked: with an override tig sends it all, and the
    // server refuses it while it is being sent; five runs, every one the 413
    for _ in 0..5 {
        let out = run(
            tig_cmd(&s.url, &["kv", "set", "k", "-", "--max-size", "64MiB"]),
            Some(&value),
        );
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains("413") && err.contains("limit"), "{err}");
        assert!(!err.contains("roken pipe"), "{err}");
    }
}

/// A loopback TCP proxy that counts the bytes the server sends and can stall
/// after a budget (holding the connection open, like a stalled network).
struct Proxy {
    url: String,
    served: Arc<AtomicU64>,
    budget: Arc<AtomicU64>,
    release: Arc<(Mutex<bool>, Condvar)>,
}

impl Proxy {
    fn start(upstream: &str) -> Self {
        let upstream = upstream.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let served = Arc::new(AtomicU64::new(0));
        let budget = Arc::new(AtomicU64::new(u64::MAX));
        let release = Arc::new((Mutex::new(false), Condvar::new()));
        let (s2, b2, r2) = (served.clone(), budget.clone(), release.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(down) = conn else { break };
                let Ok(up) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let (mut up_r, mut down_w) = (up.try_clone().unwrap(), down.try_clone().unwrap());
                let (mut down_r, mut up_w) = (down, up);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut down_r, &mut up_w);
                    let _ = up_w.shutdown(std::net::Shutdown::Write);
                });
                let (served, budget, release) = (s2.clone(), b2.clone(), r2.clone());
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 64 << 10];
                    loop {
                        let n = match up_r.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let left = budget.load(Ordering::SeqCst);
                        let pass = (n as u64).min(left) as usize;
                        if left != u64::MAX {
                            budget.fetch_sub(pass as u64, Ordering::SeqCst);
                        }
                        if down_w.write_all(&buf[..pass]).is_err() {
                            break;
                        }
                        served.fetch_add(pass as u64, Ordering::SeqCst);
                        if pass < n {
                            // stall: hold the connection until the test lets go
                            let (lock, cv) = &*release;
                            let mut done = lock.lock().unwrap();
                            while !*done {
                                let (g, t) =
                                    cv.wait_timeout(done, Duration::from_secs(120)).unwrap();
                                done = g;
                                if t.timed_out() {
                                    break;
                                }
                            }
                            break;
                        }
                    }
                    let _ = down_w.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        Proxy {
            url,
            served,
            budget,
            release,
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let (lock, cv) = &*self.release;
        *lock.lock().unwrap() = true;
        cv.notify_all();
    }
}

fn size_of(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

fn kill(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn continue_after_a_killed_download_fetches_only_the_rest() {
    let s = TigServer::start();
    let dir = tempfile::tempdir().unwrap();
    let total = 8 * MIB;
    let data = pseudo_random(41, total);
    let src = dir.path().join("src");
    std::fs::write(&src, &data).unwrap();
    let path = ok(run(tig_cmd(&s.url, &["put", src.to_str().unwrap()]), None));
    let path = path.trim().to_string();

    // the first download stalls after ~55 % and is killed
    let proxy = Proxy::start(&s.url);
    proxy
        .budget
        .store((total as u64) * 55 / 100, Ordering::SeqCst);
    let out = dir.path().join("out.bin");
    let part = dir.path().join("out.bin.part");
    let child = tig_cmd(&proxy.url, &["get", &path, "-o", out.to_str().unwrap()])
        .spawn()
        .unwrap();
    let reached = wait_until(Duration::from_secs(60), Duration::from_millis(20), || {
        size_of(&part) >= 3 * MIB as u64
    });
    kill(child);
    assert!(reached, "the first download never got to 3 MiB");
    assert!(
        !out.exists(),
        "nothing at the output path before it is verified"
    );
    let have = size_of(&part);
    assert!(have < total as u64);

    // --continue: only the rest crosses the wire, and the output is exact
    proxy.budget.store(u64::MAX, Ordering::SeqCst);
    proxy.served.store(0, Ordering::SeqCst);
    let o = run(
        tig_cmd(
            &proxy.url,
            &["get", &path, "-o", out.to_str().unwrap(), "--continue"],
        ),
        None,
    );
    ok(o);
    let served = proxy.served.load(Ordering::SeqCst);
    let rest = total as u64 - have;
    assert!(
        served >= rest && served <= rest + 16 * 1024,
        "served {served} bytes for the {rest} missing"
    );
    assert!(
        std::fs::read(&out).unwrap() == data,
        "resumed output differs"
    );
    assert!(!part.exists(), "the part file is renamed into place");
}

#[test]
fn a_burst_continues_at_its_first_incomplete_member() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let out = dir.path().join("out.bin");
    let part = dir.path().join("out.bin.part");
    // a burst resumes at its first member not complete on disk
    let small = TigServer::start_with(None, &["--max-size", "1MiB"], &[]);
    let data = pseudo_random(42, 6 * MIB);
    std::fs::write(&src, &data).unwrap();
    let bpath = ok(run(
        tig_cmd(&small.url, &["put", src.to_str().unwrap()]),
        None,
    ));
    let bpath = bpath.trim().to_string();
    assert!(bpath.ends_with("?burst=1"), "{bpath}");
    let proxy = Proxy::start(&small.url);
    let have = 3_300_000usize;
    std::fs::write(&part, &data[..have]).unwrap();
    ok(run(
        tig_cmd(
            &proxy.url,
            &["get", &bpath, "-o", out.to_str().unwrap(), "--continue"],
        ),
        None,
    ));
    assert!(
        std::fs::read(&out).unwrap() == data,
        "resumed burst differs"
    );
    let served = proxy.served.load(Ordering::SeqCst);
    let rest = (data.len() - have) as u64;
    assert!(
        served <= rest + MIB as u64 + 64 * 1024,
        "served {served} bytes for the {rest} missing (at most one member again)"
    );

    // a tampered part file is caught by the whole-file hash: no output
    let o = dir.path().join("o2");
    let mut bad = data[..have].to_vec();
    bad[10] ^= 1;
    std::fs::write(dir.path().join("o2.part"), &bad).unwrap();
    let out = run(
        tig_cmd(
            &small.url,
            &["get", &bpath, "-o", o.to_str().unwrap(), "--continue"],
        ),
        None,
    );
    // the first member does not hash right on disk, so it is fetched again
    ok(out);
    assert!(std::fs::read(&o).unwrap() == data);
}
