//! Faults and abuse against the real `tig serve` binary (issue 10): files the
//! server does not own, a second server on the same root, a flood of wrong keys,
//! oversized burst lists, a full disk. Each test is bounded (seconds); the long
//! variants are in `serve_faults_long.rs` behind `--ignored`.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// Item 1: start-up used to remove every `.tmp-*` file in the root, other
/// programs' files included (with the default root `/tmp`!), and a second server
/// on the same root removed the first one's in-flight uploads.
#[test]
fn startup_keeps_foreign_files_and_a_live_servers_uploads() {
    let root = tempfile::tempdir().expect("root");
    std::fs::write(root.path().join(".tmp-important"), b"not tig's").expect("write");
    let a = TigServer::start_with(Some(root.path()), &[], &[]);
    assert_eq!(
        std::fs::read(root.path().join(".tmp-important")).expect("still there"),
        b"not tig's"
    );
    // An upload to A that stalls half-way: its first 300 kB are in a temp file.
    let first = vec![b'a'; 300_000];
    let rest = b"and the end".to_vec();
    let mut conn = TcpStream::connect(a.addr()).expect("connect");
    write!(
        conn,
        "PUT / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        first.len() + rest.len()
    )
    .expect("head");
    conn.write_all(&first).expect("first part");
    conn.flush().expect("flush");
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            root_entries(root.path())
                .iter()
                .any(|e| e.starts_with(".tig-tmp/"))
        }),
        "the upload never reached a temp file: {:?}",
        root_entries(root.path())
    );
    let temp_before: Vec<String> = root_entries(root.path())
        .into_iter()
        .filter(|e| e.starts_with(".tig-tmp/"))
        .collect();
    // B starts on the same root while A's upload is in flight.
    let b = TigServer::start_with(Some(root.path()), &[], &[]);
    for t in &temp_before {
        assert!(
            root.path().join(t).exists(),
            "starting a second server removed the first one's temp file {t}"
        );
    }
    conn.write_all(&rest).expect("rest");
    let mut reply = Vec::new();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let _ = conn.read_to_end(&mut reply);
    let reply = String::from_utf8_lossy(&reply).into_owned();
    let mut all = first.clone();
    all.extend_from_slice(&rest);
    assert!(
        reply.starts_with("HTTP/1.1 200") && reply.ends_with(&obj_path(&all)),
        "upload to A after B started: {reply:?}"
    );
    assert_eq!(
        std::fs::read(root.path().join(format!("{}.tig", sha256_hex(&all)))).expect("stored"),
        all
    );
    // Neither server serves or lists its temp area.
    for s in [&a, &b] {
        for target in [
            "/.tig-tmp",
            "/.tig-tmp/",
            "/.tig-tmp/lock",
            "/.tmp-important",
        ] {
            assert_ne!(raw_get(&s.addr(), target).status, 200, "{target}");
        }
    }
    drop(b);
    drop(a);
    // A restart (both were killed) removes what they left, and nothing else.
    let c = TigServer::start_with(Some(root.path()), &[], &[]);
    let left = root_entries(root.path());
    assert_eq!(
        left,
        vec![
            ".tmp-important".to_string(),
            format!("{}.tig", sha256_hex(&all))
        ],
        "after a restart"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(root.path().join(".tig-tmp"))
            .expect("temp dir")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o700);
    drop(c);
}

/// Item 2: after a flood of wrong keys from one address, the right key from that
/// address was refused with 429 (everyone behind one NAT locked out). Now 1,000
/// wrong keys later the right key is served at once: no failure delay (500 ms)
/// applies to it.
#[test]
fn a_thousand_wrong_keys_then_the_right_key_is_served_promptly() {
    const WRONG: usize = 1_000;
    const THREADS: usize = 100;
    let s = TigServer::start_with(None, &[], &[("APIKEY", "the-right-key")]);
    let statuses = Arc::new([
        AtomicUsize::new(0), // 401
        AtomicUsize::new(0), // 429
    ]);
    let next = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let url = s.url.clone();
            let next = Arc::clone(&next);
            let statuses = Arc::clone(&statuses);
            thread::spawn(move || {
                let c = http();
                while next.fetch_add(1, Ordering::SeqCst) < WRONG {
                    let r = c
                        .put(format!("{url}/?apikey=guess"))
                        .body("x")
                        .send()
                        .expect("put");
                    match r.status().as_u16() {
                        401 => statuses[0].fetch_add(1, Ordering::SeqCst),
                        429 => statuses[1].fetch_add(1, Ordering::SeqCst),
                        other => panic!("wrong key answered {other}"),
                    };
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread");
    }
    let (n401, n429) = (
        statuses[0].load(Ordering::SeqCst),
        statuses[1].load(Ordering::SeqCst),
    );
    assert_eq!(n401 + n429, WRONG);
    assert!(n429 > 0, "the flood was never throttled ({n401} × 401)");
    // Same address (127.0.0.1), right key: a write, a listing.
    let c = http();
    let start = Instant::now();
    let r = c
        .put(format!("{}/?apikey=the-right-key", s.url))
        .body("the right key")
        .send()
        .expect("put");
    let put_took = start.elapsed();
    assert_eq!(r.status(), 200, "{}", r.text().unwrap_or_default());
    let start = Instant::now();
    let r = c
        .get(format!("{}/?apikey=the-right-key", s.url))
        .send()
        .expect("list");
    let list_took = start.elapsed();
    assert_eq!(r.status(), 200);
    assert!(r.text().expect("t").contains(&obj_path(b"the right key")));
    eprintln!(
        "{WRONG} wrong keys ({n401} × 401, {n429} × 429); then right key: PUT {put_took:?}, list {list_took:?}"
    );
    // The failure delay is 500 ms: a correct key must not wait for it.
    assert!(
        put_took < Duration::from_millis(400) && list_took < Duration::from_millis(400),
        "the right key was slowed: PUT {put_took:?}, list {list_took:?}"
    );
    // And a further wrong key from the same address is still refused.
    let r = c
        .get(format!("{}/?apikey=guess", s.url))
        .send()
        .expect("get");
    assert_eq!(r.status(), 429);
}

/// 401, or 429 once this address has failed too often.
fn refused(status: u16) -> bool {
    status == 401 || status == 429
}

/// Listing, writing and deleting are each impossible without the key.
#[test]
fn list_write_delete_need_the_key() {
    let s = TigServer::start_with(None, &[], &[("APIKEY", "k")]);
    let c = http();
    let slot = sha256_hex(b"guarded slot");
    let r = c
        .put(format!("{}?apikey=k", s.obj_url(&slot)))
        .body("v")
        .send()
        .expect("put");
    assert_eq!(r.status(), 200);
    let before = root_entries(&s.root);
    for key in ["", "?apikey=", "?apikey=K", "?apikey=k%20", "?apikey=kk"] {
        let list = c.get(format!("{}/{key}", s.url)).send().expect("list");
        assert!(refused(list.status().as_u16()), "list {key:?}");
        let put = c
            .put(format!("{}/{key}", s.url))
            .body("new")
            .send()
            .expect("put");
        assert!(refused(put.status().as_u16()), "put {key:?}");
        let kv = c
            .put(format!("{}{key}", s.obj_url(&slot)))
            .body("overwritten")
            .send()
            .expect("kv");
        assert!(refused(kv.status().as_u16()), "kv {key:?}");
        let del = c
            .delete(format!("{}{key}", s.obj_url(&slot)))
            .send()
            .expect("delete");
        assert!(refused(del.status().as_u16()), "delete {key:?}");
    }
    assert_eq!(root_entries(&s.root), before);
    let r = c.get(s.obj_url(&slot)).send().expect("get");
    assert_eq!(r.text().expect("t"), "v");
}

/// Item 3: a burst list was read whole (up to `--max-size`) and its members
/// checked one after another, unauthenticated. Lists over 16 MiB are now refused
/// by their length, before a byte is read.
#[test]
fn burst_lists_over_16_mib_are_refused_by_length() {
    let s = TigServer::start_with(None, &["--max-size", "40MiB"], &[]);
    let c = http();
    let member = c
        .put(format!("{}/", s.url))
        .body("member")
        .send()
        .expect("put")
        .text()
        .expect("path");
    let line = format!("{member}\n");
    let n = (16 << 20) / line.len() + 1;
    let list = line.repeat(n);
    assert!(list.len() > 16 << 20);
    let lp = c
        .put(format!("{}/", s.url))
        .body(list)
        .send()
        .expect("put list")
        .text()
        .expect("path");
    let start = Instant::now();
    let r = c
        .get(format!("{}{lp}?burst=1", s.url))
        .send()
        .expect("burst");
    let took = start.elapsed();
    assert_eq!(r.status(), 400);
    let body = r.text().expect("t");
    assert!(
        body.contains("over the cap of 16 MiB") && body.matches('\n').count() == 1,
        "{body:?}"
    );
    eprintln!("refused a {n}-member list in {took:?}");
    // A list within the cap still works.
    let lp = c
        .put(format!("{}/", s.url))
        .body(line.repeat(3))
        .send()
        .expect("put list")
        .text()
        .expect("path");
    let r = c
        .get(format!("{}{lp}?burst=1", s.url))
        .send()
        .expect("burst");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().expect("t"), "membermembermember");
}

/// A tmpfs of `size` mounted on a fresh directory, unmounted on drop. `None`
/// (with a message) when not running as root or mounting fails.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Self> {
        let uid = Command::new("id").arg("-u").output().ok()?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            eprintln!("SKIPPED: mounting a tmpfs needs root");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("tig-full-")
            .tempdir()
            .ok()?
            .keep();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("SKIPPED: cannot mount a tmpfs on {}", dir.display());
            let _ = std::fs::remove_dir(&dir);
            return None;
        }
        Some(Self { dir })
    }

    fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        let _ = std::fs::remove_dir(&self.dir);
    }
}

fn assert_507(r: reqwest::blocking::Response, what: &str) {
    assert_eq!(r.status().as_u16(), 507, "{what}");
    let body = r.text().expect("body");
    assert!(
        body.ends_with('\n') && body.matches('\n').count() == 1 && body.contains("full"),
        "{what}: {body:?}"
    );
}

/// Item 4: a full disk answered a generic 500. Now: 507 with a one-line reason,
/// nothing partial left (no temp file, a failed append cut back), reads keep
/// working, and writes work again once space is freed.
#[test]
fn a_full_disk_answers_507_leaves_nothing_and_recovers() {
    // Bodies stay under the server's 128 KiB write buffer, so each one is
    // received whole before the disk refuses it and the 507 is a clean reply.
    const PIECE: usize = 100_000;
    let Some(fs) = Tmpfs::mount("1m") else {
        return;
    };
    let s = TigServer::start_with(Some(fs.path()), &[], &[]);
    let c = http();
    let small = b"written before the disk filled".to_vec();
    let r = c
        .put(format!("{}/", s.url))
        .body(small.clone())
        .send()
        .expect("put");
    assert_eq!(r.status(), 200);
    let slot = sha256_hex(b"growing slot");
    let r = c
        .put(format!("{}?append=1", s.obj_url(&slot)))
        .body("head;")
        .send()
        .expect("append");
    assert_eq!(r.status(), 200);
    // Fill the disk with distinct pieces until one is refused.
    let mut fillers = Vec::new();
    let first_refusal = loop {
        assert!(fillers.len() < 20, "a 1 MiB tmpfs took 20 × {PIECE} bytes");
        let piece = pseudo_random(fillers.len() as u64 + 10, PIECE);
        let r = c
            .put(format!("{}/", s.url))
            .body(piece.clone())
            .send()
            .expect("put");
        if r.status() == 200 {
            fillers.push(piece);
        } else {
            break r;
        }
    };
    assert!(!fillers.is_empty());
    assert_507(first_refusal, "content");
    let before = root_entries(fs.path());
    let big = pseudo_random(99, PIECE);
    assert_507(
        c.put(format!("{}/", s.url))
            .body(big.clone())
            .send()
            .expect("put"),
        "content",
    );
    assert_507(
        c.put(s.obj_url(&sha256_hex(b"new slot")))
            .body(big.clone())
            .send()
            .expect("kv"),
        "slot",
    );
    assert_507(
        c.put(format!("{}?append=1", s.obj_url(&slot)))
            .body(big.clone())
            .send()
            .expect("append"),
        "append",
    );
    assert_eq!(
        root_entries(fs.path()),
        before,
        "something partial was left"
    );
    // Reads are unaffected.
    let r = c
        .get(format!("{}{}", s.url, obj_path(&small)))
        .send()
        .expect("get");
    assert_eq!(r.bytes().expect("b").to_vec(), small);
    let r = c.get(s.obj_url(&slot)).send().expect("get");
    assert_eq!(
        r.text().expect("t"),
        "head;",
        "the failed append was cut back"
    );
    for f in &fillers {
        let r = c
            .get(format!("{}{}", s.url, obj_path(f)))
            .send()
            .expect("get");
        assert_eq!(&r.bytes().expect("b")[..], &f[..]);
    }
    // Free space; writes work again.
    for f in &fillers[..2.min(fillers.len())] {
        std::fs::remove_file(fs.path().join(format!("{}.tig", sha256_hex(f)))).expect("rm");
    }
    let r = c
        .put(format!("{}/", s.url))
        .body(big.clone())
        .send()
        .expect("put");
    assert_eq!(r.status(), 200);
    let r = c
        .put(format!("{}?append=1", s.obj_url(&slot)))
        .body("tail")
        .send()
        .expect("append");
    assert_eq!(r.status(), 200);
    let r = c.get(s.obj_url(&slot)).send().expect("get");
    assert_eq!(r.text().expect("t"), "head;tail");
    assert!(!s.stderr().contains("panicked"));
    drop(s);
}

/// Item 5: the API key never leaves the process towards a peer whose TLS
/// certificate is not verified. The peer is `openssl s_server` with a
/// self-signed certificate (not in any trust store, no `--peer-ca`, tig run with
/// `--peer-insecure`), printing
/// every byte it receives; tig forwards a read to it and offloads to it on
/// SIGTERM. Skipped with a message when `openssl` is missing.
#[test]
fn the_key_never_reaches_a_peer_with_an_unverified_certificate() {
    let dir = tempfile::tempdir().expect("tmp");
    let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .is_ok_and(|o| o.status.success());
    if !made {
        eprintln!("SKIPPED: openssl cannot make a certificate");
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let log = dir.path().join("peer.log");
    let mut peer = Command::new("openssl")
        .args(["s_server", "-quiet", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .stdin(std::process::Stdio::piped())
        .stdout(std::fs::File::create(&log).expect("log"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("openssl s_server");
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        }),
        "s_server did not start"
    );
    let secret = "key-never-sent-7d1f";
    let peer_url = format!("https://127.0.0.1:{port}");
    // Without `--peer-insecure` an unverifiable peer gets no connection at all;
    // with it, tig talks to the peer (content is checked by hash) but must
    // never hand it the key.
    let mut s = TigServer::start_with(
        None,
        &["--peers", &peer_url, "--peer-insecure"],
        &[("APIKEY", secret)],
    );
    let c = http();
    let r = c
        .put(format!("{}/?apikey={secret}", s.url))
        .body("offloaded on exit")
        .send()
        .expect("put");
    assert_eq!(r.status(), 200);
    let _ = c
        .get(format!(
            "{}?apikey={secret}",
            s.obj_url(&sha256_hex(b"absent"))
        ))
        .send();
    // SIGTERM offloads the object to the peer; the peer never answers, so it is
    // stopped once the upload's request head has arrived.
    s.send_signal("TERM");
    let read_log =
        || String::from_utf8_lossy(&std::fs::read(&log).unwrap_or_default()).into_owned();
    let offloaded = wait_until(Duration::from_secs(20), Duration::from_millis(50), || {
        read_log().contains("PUT /")
    });
    let _ = peer.kill();
    let _ = peer.wait();
    let _ = s.wait_exit(Duration::from_secs(30));
    let seen = read_log();
    assert!(
        offloaded,
        "no offload reached the peer: {seen:?}\n{}",
        s.stderr()
    );
    assert!(
        seen.contains("GET /") || seen.contains("PUT /"),
        "tig never talked to the peer, so the test proves nothing: {seen:?}\n{}",
        s.stderr()
    );
    assert!(
        !seen.contains(secret),
        "the key reached the unverified peer: {seen:?}"
    );
    assert!(!seen.contains("apikey"), "{seen:?}");
}
