//! A cluster an operator can trust: bursts whose members live on other
//! instances come back whole through any instance, bytes a peer serves that do
//! not hash to the name are never relayed, and with `--peer-insecure` no request
//! to a peer carries the API key.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::*;

fn put(s: &TigServer, body: &[u8]) -> String {
    let r = http()
        .put(format!("{}/", s.url))
        .body(body.to_vec())
        .send()
        .expect("put");
    assert_eq!(r.status(), 200);
    r.text().expect("path")
}

/// `GET <list_path>?burst=1` on `s`.
fn burst(s: &TigServer, list_path: &str) -> reqwest::blocking::Response {
    http()
        .get(format!("{}{list_path}?burst=1", s.url))
        .send()
        .expect("burst")
}

/// A data directory holding `bytes` under the content name of `claimed`: what
/// a disk that rotted, or a peer that lies, serves.
fn root_with_corrupt_object(claimed: &[u8], bytes: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(format!("{}.tig", sha256_hex(claimed)));
    std::fs::write(&path, bytes).expect("write");
    mark_as_content(&path);
    dir
}

/// Marks a file as tig marks content (mode 0444): the liar's rotted file then
/// claims to be content (`ETag: "<h>"`) instead of being told apart by hashing
/// as a slot, which a peer would refuse without reading it.
fn mark_as_content(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o444)).expect("chmod");
}

#[test]
fn a_burst_with_members_on_a_and_c_reads_whole_through_b() {
    let a = TigServer::start();
    let c = TigServer::start();
    // B knows A and C; --peer-insecure makes both unverified, so every byte B
    // relays is checked against its hash on the way through.
    let peers = format!("{},{}", a.url, c.url);
    let b = TigServer::start_with(None, &["--peers", &peers, "--peer-insecure"], &[]);
    let m1 = pseudo_random(1, 5_000);
    let m2 = pseudo_random(2, 300_000); // over the verify-whole threshold: streamed
    let m3 = pseudo_random(3, 40_000);
    let (p1, p2, p3) = (put(&a, &m1), put(&c, &m2), put(&a, &m3));
    let list = format!("{p1}\n{p2}\n{p3}\n{p1}\n");
    let list_path = put(&a, list.as_bytes());
    let r = burst(&b, &list_path);
    assert_eq!(r.status(), 200);
    let got = r.bytes().expect("body");
    let want = [&m1[..], &m2[..], &m3[..], &m1[..]].concat();
    assert!(got.as_ref() == want.as_slice(), "burst through B differs");
    assert!(tig_files(&b.root).is_empty(), "B relays, it does not store");

    // Many members, here and on the peers in turn, across the batches B reads
    // them in: whole and in order.
    let mut list = String::new();
    let mut want = Vec::new();
    for i in 0..30u64 {
        let m = pseudo_random(10 + i, 1_000 + 3_000 * i as usize);
        let at = [&a, &b, &c][i as usize % 3];
        list.push_str(&put(at, &m));
        list.push('\n');
        want.extend_from_slice(&m);
    }
    let list_path = put(&b, list.as_bytes());
    let r = burst(&b, &list_path);
    assert_eq!(r.status(), 200);
    let got = r.bytes().expect("body");
    assert!(
        got.as_ref() == want.as_slice(),
        "mixed burst through B differs"
    );

    // A member missing everywhere: the usual clear error, before any byte.
    let absent = obj_path(b"on no instance");
    let list = format!("{p1}\n{absent}\n");
    let list_path = put(&c, list.as_bytes());
    let r = burst(&b, &list_path);
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.text().expect("t"),
        format!("burst member missing: {absent}\n")
    );
}

#[test]
fn bytes_a_peer_serves_that_do_not_hash_to_the_name_are_not_relayed() {
    let good = b"the bytes the name promises".to_vec();
    let lie = b"other bytes under that name".to_vec();
    let big_good = pseudo_random(9, 400_000);
    let mut big_lie = big_good.clone();
    big_lie[399_999] ^= 1;
    let root = root_with_corrupt_object(&good, &lie);
    let big_path = root.path().join(format!("{}.tig", sha256_hex(&big_good)));
    std::fs::write(&big_path, &big_lie).expect("write");
    mark_as_content(&big_path);
    let liar = TigServer::start_with(Some(root.path()), &[], &[]);
    let honest_path = put(&liar, b"honest content on the same peer");
    let b = TigServer::start_with(None, &["--peers", &liar.url, "--peer-insecure"], &[]);
    let cl = http();

    // The liar itself serves the bytes (to it they are just a slot) ...
    let r = cl
        .get(liar.obj_url(&sha256_hex(&good)))
        .send()
        .expect("get");
    assert_eq!(r.bytes().expect("b").as_ref(), lie.as_slice());
    // ... but B never passes them on: an error, and none of the bytes.
    let r = cl.get(b.obj_url(&sha256_hex(&good))).send().expect("get");
    assert_eq!(r.status(), 404);
    let body = r.bytes().expect("b");
    assert!(
        !body.windows(lie.len()).any(|w| w == lie.as_slice()),
        "lying bytes reached the client"
    );
    // A large object is streamed one chunk behind and the reply breaks off: the
    // client never gets a complete, good-looking reply.
    let got = cl
        .get(b.obj_url(&sha256_hex(&big_good)))
        .send()
        .and_then(|r| r.error_for_status())
        .and_then(|r| r.bytes());
    assert!(
        got.as_ref()
            .map_or(true, |b| b.as_ref() != big_lie.as_slice()),
        "a corrupted large object was relayed whole"
    );
    // Honest content from the same peer still comes through, checked.
    let r = cl
        .get(format!("{}{honest_path}", b.url))
        .send()
        .expect("get");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().expect("t"), "honest content on the same peer");
    let m = cl
        .get(format!("{}/metrics", b.url))
        .send()
        .expect("m")
        .text()
        .expect("t");
    assert!(
        m.lines().any(
            |l| l.starts_with("tig_cluster_forwards_total{result=\"bad_hash\"}")
                && !l.ends_with(" 0")
        ),
        "{m}"
    );
}

/// A loopback "peer" that records each request head it receives, answers GET
/// and HEAD with 404 and anything else with 200.
fn recording_peer() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    thread::spawn(move || {
        for conn in listener.incoming().take(64) {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let mut reader = BufReader::new(conn.try_clone().expect("clone"));
            let mut head = String::new();
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                let end = line == "\r\n";
                head.push_str(&line);
                if end {
                    break;
                }
            }
            let mut body = vec![0u8; len.min(1 << 20)];
            let _ = reader.read_exact(&mut body);
            let reply = if head.starts_with("GET") || head.starts_with("HEAD") {
                "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            } else {
                "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            };
            let _ = conn.write_all(reply.as_bytes());
            log.lock().expect("lock").push(head);
        }
    });
    (url, seen)
}

/// Runs one instance keyed with `key` against a recording peer: a forwarded
/// read, then SIGTERM (offload of one object). Returns every request head the
/// peer saw.
fn requests_seen_by_peer(key: &str, extra: &[&str]) -> Vec<String> {
    let (peer, seen) = recording_peer();
    let mut args = vec!["--peers", peer.as_str()];
    args.extend_from_slice(extra);
    let mut s = TigServer::start_with(None, &args, &[("APIKEY", key)]);
    let c = http();
    let r = c
        .put(format!("{}/?apikey={key}", s.url))
        .body("offloaded on exit")
        .send()
        .expect("put");
    assert_eq!(r.status(), 200);
    let r = c
        .get(format!(
            "{}?apikey={key}",
            s.obj_url(&sha256_hex(b"absent"))
        ))
        .send()
        .expect("get");
    assert_eq!(r.status(), 404);
    let status = s.terminate(Duration::from_secs(60)).expect("exits");
    assert_eq!(status.code(), Some(0));
    let heads = seen.lock().expect("lock").clone();
    assert!(
        heads.iter().any(|h| h.starts_with("GET ")) && heads.iter().any(|h| h.starts_with("PUT ")),
        "the peer saw no forward and no offload: {heads:?}\n{}",
        s.stderr()
    );
    heads
}

#[test]
fn with_peer_insecure_no_request_to_a_peer_carries_the_key() {
    let key = "never-leaves-this-host-91c2";
    let heads = requests_seen_by_peer(key, &["--peer-insecure"]);
    for h in &heads {
        assert!(!h.contains(key) && !h.contains("apikey"), "key sent: {h}");
    }
    // The same cluster without --peer-insecure: plain HTTP on loopback is a
    // verified peer, and the offload carries the key (so the check above can fail).
    let heads = requests_seen_by_peer(key, &[]);
    assert!(
        heads
            .iter()
            .any(|h| h.starts_with("PUT ") && h.contains(&format!("apikey={key}"))),
        "{heads:?}"
    );
    // Forwarded reads never carry it.
    assert!(
        heads
            .iter()
            .filter(|h| h.starts_with("GET "))
            .all(|h| !h.contains(key))
    );
}

/// A cluster CA and a server certificate it signed whose only name is
/// `tig-peer` (so dialling 127.0.0.1 does not match it): `None` without openssl.
fn cluster_pki(dir: &std::path::Path) -> Option<(String, String, String)> {
    let run = |args: &[&str]| -> Option<()> {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .ok()?;
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(())
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    run(&[
        &[
            "req",
            "-x509",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=tig-ca",
        ][..],
        &ec,
        &["-addext", "basicConstraints=critical,CA:TRUE"],
        &["-addext", "keyUsage=critical,keyCertSign"],
        &["-keyout", "ca.key", "-out", "ca.crt"],
    ]
    .concat())?;
    run(&[
        &["req", "-nodes", "-subj", "/CN=tig-peer"][..],
        &ec,
        &["-keyout", "peer.key", "-out", "peer.csr"],
    ]
    .concat())?;
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:tig-peer\nbasicConstraints=critical,CA:FALSE\n",
    )
    .expect("ext");
    run(&[
        "x509",
        "-req",
        "-in",
        "peer.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "peer.crt",
    ])?;
    let p = |f: &str| dir.join(f).display().to_string();
    Some((p("ca.crt"), p("peer.crt"), p("peer.key")))
}

#[test]
fn peer_ca_verifies_a_cluster_certificate_at_any_name() {
    let dir = tempfile::tempdir().expect("tmp");
    let Some((ca, cert, key)) = cluster_pki(dir.path()) else {
        eprintln!("openssl not installed: skipping");
        return;
    };
    let p = TigServer::start_with(None, &["--tls-cert", &cert, "--tls-key", &key], &[]);
    assert!(p.url.starts_with("https://127.0.0.1:"), "{}", p.url);
    let setup = reqwest::blocking::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .expect("client");
    let slot = sha256_hex(b"a slot only a verified peer may relay");
    let r = setup
        .put(p.obj_url(&slot))
        .body("slot value")
        .send()
        .expect("put");
    assert_eq!(r.status(), 200);
    // Trusting the cluster CA: the certificate verifies (its name does not
    // matter), the peer is verified, and its slot is relayed.
    let a = TigServer::start_with(None, &["--peers", &p.url, "--peer-ca", &ca], &[]);
    let r = http().get(a.obj_url(&slot)).send().expect("get");
    assert_eq!(r.status(), 200, "{}", a.stderr());
    assert_eq!(r.text().expect("t"), "slot value");
    // Not verifying: the same peer is unverified and its slot is not relayed.
    let b = TigServer::start_with(None, &["--peers", &p.url, "--peer-insecure"], &[]);
    assert_eq!(
        http().get(b.obj_url(&slot)).send().expect("get").status(),
        404
    );
    // Neither: the web roots do not know the cluster CA, so the peer is not reached.
    let c = TigServer::start_with(None, &["--peers", &p.url], &[]);
    assert_eq!(
        http().get(c.obj_url(&slot)).send().expect("get").status(),
        404
    );
}
