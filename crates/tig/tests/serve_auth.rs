//! The API key: from `APIKEY` or `<root>/apikey`, guarding writes and the listing;
//! 401 for a wrong key, 429 for an address that keeps failing, delays that never
//! block other clients. Each server sees only a few failures unless the test is
//! about throttling (the server locks an address out after repeated failures).

mod common;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use reqwest::blocking::{Client, Response};

fn assert_one_line(r: Response, status: u16) {
    assert_eq!(r.status().as_u16(), status);
    let body = r.text().expect("body");
    assert!(
        body.ends_with('\n') && body.matches('\n').count() == 1,
        "{body:?}"
    );
}

/// A client whose connections come from `ip` (any 127.x.y.z works on Linux).
fn client_from(ip: &str) -> Client {
    Client::builder()
        .no_proxy()
        .local_address(ip.parse::<IpAddr>().expect("ip"))
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

#[test]
fn apikey_from_env_guards_writes_and_listing() {
    let s = TigServer::start_with(None, &[], &[("APIKEY", "s3cret")]);
    let c = http();
    let base = &s.url;

    // Failures 1-3: writes without / with a wrong key.
    assert_one_line(
        c.put(format!("{base}/")).body("data").send().expect("put"),
        401,
    );
    assert_one_line(
        c.put(format!("{base}/?apikey=wrong"))
            .body("data")
            .send()
            .expect("put"),
        401,
    );
    let slot = s.obj_url(&sha256_hex(b"slot"));
    assert_one_line(c.put(&slot).body("v").send().expect("kv"), 401);
    assert!(
        tig_files(&s.root).is_empty(),
        "nothing stored by refused writes"
    );

    // The right key writes.
    let r = c
        .put(format!("{base}/?apikey=s3cret"))
        .body("data")
        .send()
        .expect("put");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().expect("t"), obj_path(b"data"));
    let r = c
        .put(format!("{slot}?apikey=s3cret"))
        .body("v")
        .send()
        .expect("kv");
    assert_eq!(r.status(), 200);
    let r = c
        .put(format!("{slot}?apikey=s3cret&append=1"))
        .body("w")
        .send()
        .expect("append");
    assert_eq!(r.status(), 200);
    let r = c
        .put(format!("{slot}?apikey=s3cret&setifnot=1"))
        .body("z")
        .send()
        .expect("setifnot");
    assert_eq!(r.status(), 200);

    // Reads, HEAD and /kv need no key.
    let r = c
        .get(format!("{base}{}", obj_path(b"data")))
        .send()
        .expect("get");
    assert_eq!(r.text().expect("t"), "data");
    assert_eq!(c.get(&slot).send().expect("get").text().expect("t"), "vw");
    assert_eq!(c.head(&slot).send().expect("head").status(), 200);
    let r = c.put(format!("{base}/kv")).body("k").send().expect("kv");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().expect("t"), obj_path(b"k"));

    // Failures 4-5: listing without / with a wrong key.
    assert_one_line(c.get(format!("{base}/")).send().expect("list"), 401);
    assert_one_line(
        c.get(format!("{base}/?apikey=s3cretX"))
            .send()
            .expect("list"),
        401,
    );
    let r = c
        .get(format!("{base}/?apikey=s3cret"))
        .send()
        .expect("list");
    assert_eq!(r.status(), 200);
    let listing = r.text().expect("t");
    assert!(listing.contains(&obj_path(b"data")), "{listing}");

    // Failure 6: DELETE needs the key too.
    assert_one_line(c.delete(&slot).send().expect("delete"), 401);
    assert_eq!(c.get(&slot).send().expect("get").status(), 200);
    let r = c
        .delete(format!("{slot}?apikey=s3cret"))
        .send()
        .expect("delete");
    assert_eq!(r.status(), 200);
    assert_eq!(c.get(&slot).send().expect("get").status(), 404);
}

#[test]
fn apikey_file_with_trailing_newlines() {
    let root = tempfile::tempdir().expect("tmp");
    std::fs::write(root.path().join("apikey"), "abc\n\n").expect("apikey");
    let s = TigServer::start_with(Some(root.path()), &[], &[]);
    let c = http();
    let r = c
        .put(format!("{}/?apikey=abc", s.url))
        .body("x")
        .send()
        .expect("put");
    assert_eq!(r.status(), 200);
    assert_one_line(
        c.put(format!("{}/?apikey=abc%0A", s.url))
            .body("y")
            .send()
            .expect("put"),
        401,
    );
    assert_one_line(
        c.put(format!("{}/?apikey=ab", s.url))
            .body("y")
            .send()
            .expect("put"),
        401,
    );
    let r = c
        .get(format!("{}/?apikey=abc", s.url))
        .send()
        .expect("list");
    assert_eq!(r.text().expect("t"), format!("{}\n", obj_path(b"x")));
    // The key file is read, never written, never listed, never served.
    assert_eq!(
        std::fs::read(root.path().join("apikey")).expect("apikey"),
        b"abc\n\n"
    );
    let r = raw_get(&s.addr(), "/apikey");
    assert_eq!(r.status, 417);
    assert!(!r.text().contains("abc"));
}

/// A key written, replaced or removed while the server runs applies to the very
/// next request. On tmpfs (where the server watches the file instead of
/// `stat`ing it per request) when there is one.
#[test]
fn a_key_file_changed_while_serving_applies_to_the_next_request() {
    let root = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .expect("tmp");
    let key = root.path().join("apikey");
    let s = TigServer::start_with(Some(root.path()), &[], &[]);
    let c = http();
    let put = |q: &str, body: &str| {
        c.put(format!("{}/{q}", s.url))
            .body(body.to_string())
            .send()
            .expect("put")
    };
    assert_eq!(put("", "open").status(), 200);

    std::fs::write(&key, "k1\n").expect("apikey");
    assert_one_line(put("", "refused"), 401);
    assert_eq!(put("?apikey=k1", "k1").status(), 200);

    // Replaced by a rename, with a key of the same length.
    std::fs::write(root.path().join("apikey.new"), "k2\n").expect("new key");
    std::fs::rename(root.path().join("apikey.new"), &key).expect("rename");
    assert_one_line(put("?apikey=k1", "old key"), 401);
    assert_eq!(put("?apikey=k2", "k2").status(), 200);

    // Rewritten in place.
    std::fs::write(&key, "k3\n").expect("rewrite");
    assert_eq!(put("?apikey=k3", "k3").status(), 200);

    std::fs::remove_file(&key).expect("remove");
    assert_eq!(put("", "open again").status(), 200);
    for body in ["open", "k1", "k2", "k3", "open again"] {
        assert!(s.obj_file(&sha256_hex(body.as_bytes())).exists(), "{body}");
    }
    for body in ["refused", "old key"] {
        assert!(!s.obj_file(&sha256_hex(body.as_bytes())).exists(), "{body}");
    }
}

#[test]
fn env_apikey_wins_over_the_file() {
    let root = tempfile::tempdir().expect("tmp");
    std::fs::write(root.path().join("apikey"), "filekey\n").expect("apikey");
    let s = TigServer::start_with(Some(root.path()), &[], &[("APIKEY", "envkey")]);
    let c = http();
    assert_eq!(
        c.put(format!("{}/?apikey=envkey", s.url))
            .body("e")
            .send()
            .expect("put")
            .status(),
        200
    );
    assert_one_line(
        c.put(format!("{}/?apikey=filekey", s.url))
            .body("f")
            .send()
            .expect("put"),
        401,
    );
}

#[test]
fn listing_is_newest_first_formatted_and_includes_slots() {
    let s = TigServer::start_with(None, &[], &[("APIKEY", "k")]);
    let c = http();
    let mut paths = Vec::new();
    for i in 0..5 {
        let body = format!("object {i}");
        let r = c
            .put(format!("{}/?apikey=k", s.url))
            .body(body.clone())
            .send()
            .expect("put");
        paths.push(r.text().expect("t"));
        // Distinct modification times: the listing orders by them.
        thread::sleep(Duration::from_millis(20));
    }
    let slot = format!("/{}.tig", sha256_hex(b"a slot"));
    c.put(format!("{}{slot}?apikey=k", s.url))
        .body("slot value")
        .send()
        .expect("kv");
    paths.push(slot);
    paths.reverse();

    let r = c.get(format!("{}/?apikey=k", s.url)).send().expect("list");
    assert_eq!(r.status(), 200);
    let want: String = paths.iter().map(|p| format!("{p}\n")).collect();
    assert_eq!(r.text().expect("t"), want);

    let r = c
        .get(format!("{}?apikey=k&format=http://127.0.0.1:7777*", s.url))
        .send()
        .expect("list");
    let want: String = paths
        .iter()
        .map(|p| format!("http://127.0.0.1:7777{p}\n"))
        .collect();
    assert_eq!(r.text().expect("t"), want);
}

#[test]
fn failed_attempts_are_delayed_without_blocking_other_clients() {
    // The server's delay for a wrong key (Config::auth_fail_delay's default).
    const DELAY: Duration = Duration::from_millis(500);
    let s = TigServer::start_with(None, &[], &[("APIKEY", "k")]);
    let c = http();
    let path = c
        .put(format!("{}/?apikey=k", s.url))
        .body("readable")
        .send()
        .expect("put")
        .text()
        .expect("t");
    let answered = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for i in 0..3 {
        let url = format!("{}/?apikey=bad{i}", s.url);
        let answered = Arc::clone(&answered);
        handles.push(thread::spawn(move || {
            let started = Instant::now();
            let r = http().put(url).body("x").send().expect("put");
            answered.fetch_add(1, Ordering::SeqCst);
            (r.status().as_u16(), started.elapsed())
        }));
    }
    // Once the server has the three failing requests, read while they wait.
    // A read is "not blocked" if it is answered in well under the delay while
    // no failure has been answered yet: a server that held a worker for the
    // delay would make the first reads wait for it. Asking for one such read
    // (not a fixed number within the delay) keeps this true on a loaded machine.
    // The server logs each failure before its delay: wait (bounded) until all
    // three are there, so that the reads below really overlap the delays.
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(5), || {
            s.stderr().matches("failed apikey attempt").count() >= 3
        }),
        "the failed attempts never reached the server: {}",
        s.stderr()
    );
    let mut quick_while_waiting = 0;
    for _ in 0..2_000 {
        let asked = Instant::now();
        let r = c.get(format!("{}{path}", s.url)).send().expect("get");
        assert_eq!(r.text().expect("t"), "readable");
        if answered.load(Ordering::SeqCst) == 0 && asked.elapsed() < DELAY / 2 {
            quick_while_waiting += 1;
        }
        if answered.load(Ordering::SeqCst) == 3 {
            break;
        }
    }
    for h in handles {
        let (status, took) = h.join().expect("thread");
        assert_eq!(status, 401);
        assert!(
            took >= DELAY,
            "a failed attempt was answered after {took:?}"
        );
    }
    assert!(
        quick_while_waiting > 0,
        "no read was answered quickly while failed attempts were delayed"
    );
    let r = c
        .put(format!("{}/?apikey=k", s.url))
        .body("another")
        .send()
        .expect("put");
    assert_eq!(r.status(), 200, "the right key still works after failures");
}

#[test]
fn repeated_failures_from_one_address_get_429_other_addresses_do_not() {
    let s = TigServer::start_with(None, &[], &[("APIKEY", "k")]);
    // Hammer from 127.0.0.1 with wrong keys, 8 at a time, until a 429 comes.
    let saw_429 = Arc::new(AtomicUsize::new(0));
    let attempts = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for t in 0..8 {
        let url = s.url.clone();
        let saw_429 = Arc::clone(&saw_429);
        let attempts = Arc::clone(&attempts);
        handles.push(thread::spawn(move || {
            let c = http();
            while saw_429.load(Ordering::SeqCst) == 0
                && attempts.fetch_add(1, Ordering::SeqCst) < 400
            {
                let r = c
                    .get(format!("{url}/?apikey=wrong{t}"))
                    .send()
                    .expect("get");
                match r.status().as_u16() {
                    401 => {}
                    429 => {
                        let body = r.text().expect("t");
                        assert!(body.ends_with('\n') && body.matches('\n').count() == 1);
                        saw_429.fetch_add(1, Ordering::SeqCst);
                    }
                    other => panic!("unexpected {other}"),
                }
            }
        }));
    }
    for h in handles {
        h.join().expect("thread");
    }
    assert!(
        saw_429.load(Ordering::SeqCst) > 0,
        "no 429 after 400 failures"
    );
    // Still locked out from this address, even with the right key.
    let r = http()
        .get(format!("{}/?apikey=wrong", s.url))
        .send()
        .expect("get");
    assert_eq!(r.status(), 429);
    // Another address is not affected.
    let other = client_from("127.0.0.2");
    let r = other
        .put(format!("{}/?apikey=k", s.url))
        .body("from another address")
        .send()
        .expect("put");
    assert_eq!(r.status(), 200);
    // Reads need no key and are never throttled.
    let r = http()
        .get(format!("{}{}", s.url, obj_path(b"from another address")))
        .send()
        .expect("get");
    assert_eq!(r.status(), 200);
}
