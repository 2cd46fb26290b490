//! `tig serve --root s3://BUCKET/PREFIX` against a real SeaweedFS (see
//! `common/weed.rs`): two instances on one bucket, races across instances,
//! interrupted and large uploads, retention shared by two instances, `/readyz`
//! while the bucket is down, and bad configuration. The seed's curl examples run
//! on S3 in `serve_seed_examples.rs` (every one, on both backends).
//!
//! One SeaweedFS serves the whole binary; every test has its own bucket.

mod common;
#[path = "common/weed.rs"]
mod weed;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use weed::Weed;

const MIB: u64 = 1024 * 1024;

/// A fresh bucket on the shared SeaweedFS; `None` when SeaweedFS is not installed
/// (outside CI).
fn bucket() -> Option<(&'static Weed, String)> {
    let weed = Weed::shared()?;
    Some((weed, weed.new_bucket()))
}

/// Starts `tig serve --root s3://BUCKET/tig` with extra flags and variables.
fn serve(weed: &Weed, bucket: &str, args: &[&str], envs: &[(&str, &str)]) -> TigServer {
    let root = format!("s3://{bucket}/tig");
    let mut all_args = vec!["--root", root.as_str()];
    all_args.extend_from_slice(args);
    let env = weed.env();
    let mut all_envs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    all_envs.extend_from_slice(envs);
    TigServer::start_with(None, &all_args, &all_envs)
}

/// Keys of the bucket under `prefix`, straight from SeaweedFS (curl + SigV4;
/// the first 1000, which is all these tests make).
fn bucket_keys(weed: &Weed, bucket: &str, prefix: &str) -> Vec<String> {
    let out = weed
        .signed_curl(20)
        .arg(format!("{}/{bucket}?list-type=2", weed.endpoint))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("ListBucketResult"), "listing failed: {text}");
    text.split("<Key>")
        .skip(1)
        .filter_map(|s| s.split_once("</Key>").map(|(k, _)| k.to_owned()))
        .filter(|k| k.starts_with(prefix))
        .collect()
}

#[test]
fn s3_two_instances_share_one_bucket() {
    let Some((weed, bucket)) = bucket() else {
        return;
    };
    let a = serve(weed, &bucket, &[], &[]);
    let b = serve(weed, &bucket, &[], &[]);
    let http = http();

    // Put through A, read through B.
    let data = pseudo_random(7, 100_000);
    let path = obj_path(&data);
    let r = http.put(&a.url).body(data.clone()).send().expect("put");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().expect("text"), path);
    let r = http.get(format!("{}{path}", b.url)).send().expect("get");
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().expect("bytes").as_ref(), &data[..]);

    // Content cannot be overwritten or deleted through either instance.
    for s in [&a, &b] {
        let r = http
            .put(format!("{}{path}", s.url))
            .body("other")
            .send()
            .expect("put");
        assert_eq!(r.status(), 409, "overwrite via {}", s.url);
        let r = http
            .delete(format!("{}{path}", s.url))
            .send()
            .expect("delete");
        assert!(
            r.status().is_client_error(),
            "delete via {}: {}",
            s.url,
            r.status()
        );
        let r = http.get(format!("{}{path}", s.url)).send().expect("get");
        assert_eq!(r.bytes().expect("bytes").as_ref(), &data[..]);
    }

    // 20 concurrent setifnot split over A and B: exactly one winner.
    let slot = sha256_hex(b"race slot");
    let urls = [a.url.clone(), b.url.clone()];
    let handles: Vec<_> = (0..20)
        .map(|i| {
            let url = format!("{}/{slot}.tig?setifnot=1", urls[i % 2]);
            std::thread::spawn(move || {
                let r = http_client()
                    .put(url)
                    .body(format!("winner {i}\n"))
                    .send()
                    .expect("put");
                assert_eq!(r.status(), 200);
                (i, r.text().expect("text"))
            })
        })
        .collect();
    let winners: Vec<usize> = handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .filter(|(_, body)| !body.is_empty())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let r = http
        .get(format!("{}/{slot}.tig", b.url))
        .send()
        .expect("get");
    assert_eq!(r.text().expect("text"), format!("winner {}\n", winners[0]));

    // 50 concurrent appends split over A and B: every line once, none interleaved.
    let log = sha256_hex(b"shared log");
    let handles: Vec<_> = (0..50)
        .map(|i| {
            let url = format!("{}/{log}.tig?append=1", urls[i % 2]);
            std::thread::spawn(move || {
                let line = format!("line {i:03} {}\n", "x".repeat(200));
                let r = http_client().put(url).body(line).send().expect("append");
                assert_eq!(r.status(), 200, "{}", r.text().unwrap_or_default());
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread");
    }
    let text = http
        .get(format!("{}/{log}.tig", a.url))
        .send()
        .expect("get")
        .text()
        .expect("text");
    assert_eq!(text.lines().count(), 50, "{text}");
    for i in 0..50 {
        let want = format!("line {i:03} {}", "x".repeat(200));
        assert_eq!(text.lines().filter(|l| *l == want).count(), 1, "line {i}");
    }
}

fn http_client() -> reqwest::blocking::Client {
    http()
}

/// A client that disconnects half-way through a 24 MiB upload (so a multipart
/// upload to a temp key is under way) leaves no `.tig` object and, after a
/// bounded wait, no temp key or open upload.
#[test]
fn s3_killed_upload_leaves_no_object() {
    let Some((weed, bucket)) = bucket() else {
        return;
    };
    let s = serve(weed, &bucket, &[], &[]);
    let total = 24 * MIB;
    let mut conn = TcpStream::connect(s.addr()).expect("connect");
    write!(
        conn,
        "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: {total}\r\n\r\n"
    )
    .expect("head");
    let chunk = vec![0x5au8; 1 << 20];
    for _ in 0..total / MIB / 2 {
        conn.write_all(&chunk).expect("half the body");
    }
    conn.flush().expect("flush");
    // Wait (bounded) until the server has started the multipart upload.
    let started = wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
        !bucket_keys(weed, &bucket, "tig/.tig/tmp/").is_empty() || {
            // The upload may not be visible as a key before completion: look
            // at the open multipart uploads too.
            open_uploads(weed, &bucket) > 0
        }
    });
    assert!(started, "the upload never reached the bucket");
    drop(conn);
    let clean = wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
        open_uploads(weed, &bucket) == 0 && bucket_keys(weed, &bucket, "tig/").is_empty()
    });
    assert!(
        clean,
        "left behind: {:?}, {} open uploads",
        bucket_keys(weed, &bucket, "tig/"),
        open_uploads(weed, &bucket)
    );
    let r = http().get(format!("{}/", s.url)).send().expect("list");
    assert_eq!(r.text().expect("text"), "");
}

/// How many multipart uploads are open in the bucket.
fn open_uploads(weed: &Weed, bucket: &str) -> usize {
    let out = weed
        .signed_curl(20)
        .arg(format!("{}/{bucket}?uploads=", weed.endpoint))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ListMultipartUploadsResult"), "{text}");
    text.matches("<Upload>").count()
}

/// Deterministic pseudo-random bytes produced on the fly (never all in memory).
struct Gen {
    state: u64,
    remaining: u64,
}

impl Read for Gen {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut n = (buf.len().min(64 * 1024) as u64).min(self.remaining) as usize;
        if n >= 8 {
            n -= n % 8;
        }
        for chunk in buf[..n].chunks_mut(8) {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            chunk.copy_from_slice(&self.state.to_le_bytes()[..chunk.len()]);
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

fn streamed_upload_keeps_rss_flat(len: u64) {
    let Some((weed, bucket)) = bucket() else {
        return;
    };
    let s = serve(weed, &bucket, &["--max-size", "2GiB"], &[]);
    let make = || Gen {
        state: 0x9E37_79B9_7F4A_7C15,
        remaining: len,
    };
    let mut h = sha2::Sha256::default();
    {
        use sha2::Digest;
        let mut g = make();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = g.read(&mut buf).expect("gen");
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }
    let want = format!("/{}.tig", hex::encode(sha2::Digest::finalize(h)));
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(1800))
        .build()
        .expect("client");
    let r = client
        .put(&s.url)
        .body(reqwest::blocking::Body::sized(make(), len))
        .send()
        .expect("upload");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().expect("text"), want);
    let peak = s.peak_rss_kib();
    assert!(
        peak <= 64 * 1024,
        "peak RSS {peak} KiB exceeds 64 MiB for a {len}-byte upload"
    );
    // And it reads back whole.
    let r = client.get(format!("{}{want}", s.url)).send().expect("get");
    assert_eq!(r.content_length(), Some(len));
    let mut h = sha2::Sha256::default();
    let mut total = 0u64;
    let mut body = r;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = body.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        total += n as u64;
        sha2::Digest::update(&mut h, &buf[..n]);
    }
    assert_eq!(total, len);
    assert_eq!(
        format!("/{}.tig", hex::encode(sha2::Digest::finalize(h))),
        want
    );
}

/// A 1 GiB streamed upload (128 parts, then a server-side copy) keeps the
/// server's peak RSS within 64 MiB, and reads back whole (~40 s on the loaded
/// two-core machine).
#[test]
fn s3_one_gib_streamed_upload_keeps_peak_rss_within_64_mib() {
    streamed_upload_keeps_rss_flat(1024 * MIB);
}

/// Retention with two instances on one bucket: an object read through B keeps
/// living, an unused one goes, whichever instance holds the sweeper's lease.
#[test]
fn s3_retention_across_two_instances() {
    let Some((weed, bucket)) = bucket() else {
        return;
    };
    let a = serve(weed, &bucket, &["--retention", "4s"], &[]);
    let b = serve(weed, &bucket, &["--retention", "4s"], &[]);
    let http = http();
    let put = |body: &str| {
        http.put(&a.url)
            .body(body.to_owned())
            .send()
            .expect("put")
            .text()
            .expect("text")
    };
    let used = put("used object");
    let unused = put("unused object");
    let status = |s: &TigServer, p: &str| {
        http.get(format!("{}{p}?chtimes=0", s.url))
            .send()
            .expect("get")
            .status()
            .as_u16()
    };
    // Read `used` through B until `unused` is gone (bounded: well over 2x the period).
    let gone = wait_until(Duration::from_secs(40), Duration::from_millis(250), || {
        let r = http.get(format!("{}{used}", b.url)).send().expect("get");
        assert_eq!(r.status(), 200, "the used object must stay");
        status(&a, &unused) == 404
    });
    assert!(gone, "the unused object outlived 10x its retention");
    assert_eq!(status(&b, &unused), 404);
    assert_eq!(status(&a, &used), 200, "the used object stays");
    // No lease left behind for long: the next sweeps still run (the used
    // object goes once nobody reads it).
    let expires = wait_until(Duration::from_secs(40), Duration::from_millis(250), || {
        status(&b, &used) == 404
    });
    assert!(expires, "the used object never expired once unused");
}

/// `/readyz` follows the bucket (issue 9): 200 `ready` while SeaweedFS answers,
/// 503 with one line naming the S3 endpoint once it is gone, while `/healthz`
/// stays 200 (the process still serves). A SeaweedFS of its own: the shared one
/// must live on for the other tests.
#[test]
fn s3_readyz_is_503_while_the_bucket_is_unreachable() {
    let Some(own) = Weed::start() else {
        return;
    };
    let bucket = own.new_bucket();
    let s = serve(&own, &bucket, &[], &[]);
    let endpoint = own.endpoint.clone();
    let c = http();
    let get = |path: &str| {
        let r = c.get(format!("{}{path}", s.url)).send().expect("probe");
        (r.status().as_u16(), r.text().expect("text"))
    };
    assert_eq!(get("/readyz"), (200, "ready\n".to_owned()));
    // Probed often, the bucket is asked at most about once a second.
    for _ in 0..20 {
        assert_eq!(get("/readyz").0, 200);
    }
    drop(own);
    // The last verdict is reused for up to a second: bounded wait.
    let mut last = (0, String::new());
    let down = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        last = get("/readyz");
        last.0 == 503
    });
    assert!(down, "still {last:?} with SeaweedFS stopped");
    let (_, body) = &last;
    assert!(
        body.ends_with('\n') && body.lines().count() == 1,
        "{body:?}"
    );
    assert!(
        body.starts_with("storage backend unreachable: ") && body.contains(&endpoint),
        "{body:?}"
    );
    assert_eq!(get("/healthz"), (200, "ok\n".to_owned()));
}

/// Bad configuration: one `tig: …` line on stderr and exit status 1.
#[test]
fn s3_bad_configuration_exits_1_with_one_line() {
    let Some((weed, bucket)) = bucket() else {
        return;
    };
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let dead_url = format!("http://127.0.0.1:{dead}");
    // (what, root, variables overridden, what the line must say)
    type Case<'a> = (&'a str, String, Vec<(&'a str, String)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "missing bucket",
            "s3://no-such-bucket-here/x".to_owned(),
            vec![],
            "does not exist",
        ),
        (
            "wrong key",
            format!("s3://{bucket}"),
            vec![("AWS_SECRET_ACCESS_KEY", "wrong".to_owned())],
            "denied",
        ),
        (
            "endpoint down",
            format!("s3://{bucket}"),
            vec![("AWS_ENDPOINT_URL", dead_url)],
            "cannot reach",
        ),
        (
            "plain http not allowed",
            format!("s3://{bucket}"),
            vec![("AWS_ALLOW_HTTP", "false".to_owned())],
            "AWS_ALLOW_HTTP",
        ),
    ];
    for (what, root, over, needle) in cases {
        let mut env = weed.env();
        for (k, v) in over {
            env.retain(|(key, _)| *key != k);
            env.push((k, v));
        }
        let envs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let fail = match TigServer::try_start_with(None, &["--root", &root], &envs) {
            Ok(_) => panic!("{what}: the server started"),
            Err(f) => f,
        };
        assert_eq!(
            fail.status.and_then(|s| s.code()),
            Some(1),
            "{what}: {fail}"
        );
        let lines: Vec<&str> = fail.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{what}: {:?}", fail.stderr);
        assert!(lines[0].starts_with("tig: "), "{what}: {:?}", lines[0]);
        assert!(lines[0].contains(needle), "{what}: {:?}", lines[0]);
    }
    // TIG_ROOT works like --root.
    let env = weed.env();
    let mut envs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let root = format!("s3://{bucket}/via-env");
    envs.push(("TIG_ROOT", &root));
    let s = TigServer::start_with(None, &[], &envs);
    let r = http().put(&s.url).body("x").send().expect("put");
    assert_eq!(r.status(), 200);
    let keys = bucket_keys(weed, &bucket, "via-env/");
    assert_eq!(keys, vec![format!("via-env/{}.tig", sha256_hex(b"x"))]);
}
