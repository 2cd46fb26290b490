//! Clusters of `tig serve` instances on loopback: forwarding a read to the peer
//! that has the object (`--peers`, `TIG_PEERS`, `--cluster NAME:PORT`), no loops,
//! dead peers skipped, and offload-and-terminate on `--lifetime` and SIGTERM.

mod common;

use std::net::TcpListener;
use std::time::Duration;

use common::*;

/// A loopback port that is free right now (bound, then released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[test]
fn a_read_is_answered_from_the_peer_that_has_the_object() {
    let b = TigServer::start();
    let a = TigServer::start_with(None, &["--peers", &b.url], &[]);
    let c = http();
    let path = b.put(b"only on b");
    let h = sha256_hex(b"only on b");
    assert!(!a.obj_file(&h).exists());

    let r = c.get(format!("{}{path}", a.url)).send().expect("get");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().expect("t"), "only on b");
    let r = c.head(format!("{}{path}", a.url)).send().expect("head");
    assert_eq!(r.status(), 200);
    // Slots are forwarded too.
    let slot = sha256_hex(b"slot on b");
    c.put(b.obj_url(&slot))
        .body("slot value")
        .send()
        .expect("kv");
    let r = c.get(a.obj_url(&slot)).send().expect("get");
    assert_eq!(r.text().expect("t"), "slot value");

    // Marked requests are never forwarded again.
    let r = c
        .get(format!("{}{path}", a.url))
        .header("Tig-Forwarded", "1")
        .send()
        .expect("get");
    assert_eq!(r.status(), 404);
    // Absent everywhere: 404.
    let absent = sha256_hex(b"nowhere");
    assert_eq!(c.get(a.obj_url(&absent)).send().expect("get").status(), 404);
}

#[test]
fn peers_from_env() {
    let b = TigServer::start();
    let a = TigServer::start_with(None, &[], &[("TIG_PEERS", &b.url)]);
    let path = b.put(b"env peers");
    let r = http().get(format!("{}{path}", a.url)).send().expect("get");
    assert_eq!(r.text().expect("t"), "env peers");
}

#[test]
fn peers_pointing_at_each_other_do_not_loop() {
    let (pa, pb) = (free_port(), free_port());
    let (ua, ub) = (
        format!("http://127.0.0.1:{pa}"),
        format!("http://127.0.0.1:{pb}"),
    );
    let a = TigServer::start_with(
        None,
        &["--listen", &format!("127.0.0.1:{pa}"), "--peers", &ub],
        &[],
    );
    let b = TigServer::start_with(
        None,
        &["--listen", &format!("127.0.0.1:{pb}"), "--peers", &ua],
        &[],
    );
    let c = http();
    let absent = sha256_hex(b"in neither");
    assert_eq!(c.get(a.obj_url(&absent)).send().expect("get").status(), 404);
    assert_eq!(c.get(b.obj_url(&absent)).send().expect("get").status(), 404);
    let path = a.put(b"on a");
    let r = c.get(format!("{}{path}", b.url)).send().expect("get");
    assert_eq!(r.text().expect("t"), "on a");
}

#[test]
fn dead_peers_are_skipped() {
    let dead = format!("http://127.0.0.1:{}", free_port());
    let b = TigServer::start();
    // A dead peer first, then a live one.
    let a = TigServer::start_with(None, &["--peers", &format!("{dead},{}", b.url)], &[]);
    let c = http();
    let path = b.put(b"behind a dead peer");
    let r = c.get(format!("{}{path}", a.url)).send().expect("get");
    assert_eq!(r.text().expect("t"), "behind a dead peer");
    let absent = sha256_hex(b"nowhere at all");
    assert_eq!(c.get(a.obj_url(&absent)).send().expect("get").status(), 404);
    let local = a.put(b"local");
    assert_eq!(
        c.get(format!("{}{local}", a.url))
            .send()
            .expect("get")
            .status(),
        200
    );
}

#[test]
fn cluster_dns_name_with_port() {
    // `localhost` resolves to the loopback addresses: the instances of the cluster.
    let b = TigServer::start();
    let a = TigServer::start_with(
        None,
        &["--cluster", &format!("localhost:{}", b.port())],
        &[],
    );
    let path = b.put(b"found through dns");
    let r = http().get(format!("{}{path}", a.url)).send().expect("get");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().expect("t"), "found through dns");
    drop(a);
    let a = TigServer::start_with(
        None,
        &[],
        &[("TIG_CLUSTER", &format!("localhost:{}", b.port()))],
    );
    let r = http().get(format!("{}{path}", a.url)).send().expect("get");
    assert_eq!(r.text().expect("t"), "found through dns");
}

#[test]
fn lifetime_offloads_objects_to_peers_then_exits() {
    let b = TigServer::start();
    let mut a = TigServer::start_with(None, &["--lifetime", "4s", "--peers", &b.url], &[]);
    let bodies: Vec<Vec<u8>> = (0..20)
        .map(|i| pseudo_random(i, 1000 + i as usize * 5000))
        .collect();
    let paths: Vec<String> = bodies.iter().map(|b| a.put(b)).collect();
    let status = a
        .wait_exit(Duration::from_secs(60))
        .expect("exits after its lifetime");
    assert_eq!(status.code(), Some(0), "{}", a.stderr());
    let c = http();
    for (body, path) in bodies.iter().zip(&paths) {
        let r = c.get(format!("{}{path}", b.url)).send().expect("get");
        assert_eq!(r.status(), 200, "{path} not offloaded");
        assert!(r.bytes().expect("b").as_ref() == body.as_slice());
    }
}

#[test]
fn lifetime_offload_keeps_slots_as_slots() {
    let b = TigServer::start();
    let mut a = TigServer::start_with(None, &["--lifetime", "3s", "--peers", &b.url], &[]);
    let c = http();
    let slot = sha256_hex(b"offloaded slot");
    c.put(a.obj_url(&slot))
        .body("slot value")
        .send()
        .expect("kv");
    let status = a.wait_exit(Duration::from_secs(60)).expect("exits");
    assert_eq!(status.code(), Some(0));
    let r = c.get(b.obj_url(&slot)).send().expect("get");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().expect("t"), "slot value");
    // Still a slot on the peer: writable.
    assert_eq!(
        c.put(b.obj_url(&slot))
            .body("new value")
            .send()
            .expect("kv")
            .status(),
        200
    );
}

#[test]
fn sigterm_offloads_to_peers_and_exits_zero() {
    let b = TigServer::start();
    let mut a = TigServer::start_with(None, &["--peers", &b.url], &[]);
    let path = a.put(b"handed over on sigterm");
    let status = a.terminate(Duration::from_secs(60)).expect("exits");
    assert_eq!(status.code(), Some(0));
    let r = http().get(format!("{}{path}", b.url)).send().expect("get");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().expect("t"), "handed over on sigterm");
}

#[test]
fn offload_between_instances_sharing_an_apikey() {
    let env = [("APIKEY", "shared")];
    let b = TigServer::start_with(None, &[], &env);
    let mut a = TigServer::start_with(None, &["--peers", &b.url], &env);
    let r = http()
        .put(format!("{}/?apikey=shared", a.url))
        .body("keyed offload")
        .send()
        .expect("put");
    let path = r.text().expect("t");
    let status = a.terminate(Duration::from_secs(60)).expect("exits");
    assert_eq!(status.code(), Some(0));
    let r = http().get(format!("{}{path}", b.url)).send().expect("get");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().expect("t"), "keyed offload");
}
