//! `--max-size`: a body over the limit is refused with 413 and nothing is stored,
//! with or without Content-Length; the size syntax of the flag and its env var.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::thread;
use std::time::Duration;

use common::*;

/// Every file in `root` (any name, temp files included): refused uploads must
/// leave none behind.
fn all_files(root: &Path) -> Vec<String> {
    root_entries(root)
}

/// Sends `head` then `body` on a raw socket while reading the reply concurrently
/// (the server may answer 413 before the body is all sent). Returns the parsed
/// reply if one arrived.
fn send_streaming(addr: &str, head: Vec<u8>, body: Vec<u8>) -> Option<RawResponse> {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut writer = stream.try_clone().expect("clone");
    let w = thread::spawn(move || {
        if writer.write_all(&head).is_err() {
            return;
        }
        for chunk in body.chunks(4096) {
            if writer.write_all(chunk).is_err() {
                return;
            }
        }
        let _ = writer.flush();
    });
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
        // Stop once a complete small reply is in.
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if let Some(len) = len
                && data.len() >= end + 4 + len
            {
                break;
            }
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let _ = w.join();
    if data.is_empty() {
        return None;
    }
    let end = data.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&data[..end]).into_owned();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some(RawResponse {
        status,
        headers: vec![],
        body: data[end + 4..].to_vec(),
    })
}

fn put_sized(addr: &str, target: &str, body: Vec<u8>) -> Option<RawResponse> {
    let head = format!(
        "PUT {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    send_streaming(addr, head.into_bytes(), body)
}

fn put_chunked(addr: &str, target: &str, body: Vec<u8>) -> Option<RawResponse> {
    let head = format!(
        "PUT {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let mut enc = Vec::new();
    for chunk in body.chunks(1000) {
        enc.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        enc.extend_from_slice(chunk);
        enc.extend_from_slice(b"\r\n");
    }
    enc.extend_from_slice(b"0\r\n\r\n");
    send_streaming(addr, head.into_bytes(), enc)
}

/// Retries a refused upload a few times if the reply was lost to a TCP reset
/// (a server may close while the client is still sending); asserts 413.
fn assert_413(mut attempt: impl FnMut() -> Option<RawResponse>) {
    for _ in 0..5 {
        if let Some(r) = attempt() {
            assert_eq!(r.status, 413, "{}", r.text());
            return;
        }
    }
    panic!("no reply to an oversize upload in 5 attempts");
}

/// `limit` bytes go in, `limit + 1` bytes are refused, for every write kind.
fn check_limit(s: &TigServer, limit: usize) {
    let addr = s.addr();
    let c = http();
    let before = all_files(&s.root);
    let over = pseudo_random(limit as u64, limit + 1);
    assert_413(|| put_sized(&addr, "/", over.clone()));
    assert_413(|| put_chunked(&addr, "/", over.clone()));
    let slot = sha256_hex(b"limit slot");
    assert_413(|| put_sized(&addr, &format!("/{slot}.tig"), over.clone()));
    assert_413(|| put_chunked(&addr, &format!("/{slot}.tig?append=1"), over.clone()));
    assert_413(|| put_chunked(&addr, &format!("/{slot}.tig?setifnot=1"), over.clone()));
    // Much larger than the limit, no Content-Length: the server stops reading.
    let huge = pseudo_random(9, limit * 4 + 100);
    assert_413(|| put_chunked(&addr, "/", huge.clone()));
    // Nothing on disk: no object, no slot, no temp file left behind.
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            all_files(&s.root) == before
        }),
        "files left after refused uploads: {:?}",
        all_files(&s.root)
    );
    assert_eq!(c.get(s.obj_url(&slot)).send().expect("get").status(), 404);

    // Exactly the limit is fine, both ways.
    let exact = pseudo_random(1, limit);
    let r = put_sized(&addr, "/", exact.clone()).expect("reply");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), obj_path(&exact));
    let exact2 = pseudo_random(2, limit);
    let r = put_chunked(&addr, "/", exact2.clone()).expect("reply");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), obj_path(&exact2));
    let got = c
        .get(format!("{}{}", s.url, obj_path(&exact2)))
        .send()
        .expect("get")
        .bytes()
        .expect("b");
    assert!(got.as_ref() == exact2.as_slice());
}

#[test]
fn max_size_kib_refuses_one_byte_more_with_and_without_content_length() {
    let s = TigServer::start_with(None, &["--max-size", "10KiB"], &[]);
    check_limit(&s, 10 * 1024);
}

#[test]
fn max_size_plain_bytes_and_decimal_megabytes() {
    let s = TigServer::start_with(None, &["--max-size", "4096"], &[]);
    check_limit(&s, 4096);
    drop(s);
    let s = TigServer::start_with(None, &["--max-size", "1MB"], &[]);
    check_limit(&s, 1_000_000);
}

#[test]
fn max_size_from_env_and_flag_wins_over_env() {
    let s = TigServer::start_with(None, &[], &[("TIG_MAX_SIZE", "2KiB")]);
    check_limit(&s, 2048);
    drop(s);
    let s = TigServer::start_with(None, &["--max-size", "3KiB"], &[("TIG_MAX_SIZE", "2KiB")]);
    check_limit(&s, 3072);
}

#[test]
fn max_size_mib_and_gib_parse_and_allow_large_bodies() {
    for size in ["1MiB", "1GiB", "128MiB"] {
        let s = TigServer::start_with(None, &["--max-size", size], &[]);
        let body = pseudo_random(5, 1024 * 1024);
        let r = http()
            .put(format!("{}/", s.url))
            .body(body.clone())
            .send()
            .expect("put");
        assert_eq!(r.status(), 200, "--max-size {size}");
        assert_eq!(r.text().expect("t"), obj_path(&body));
    }
    let s = TigServer::start_with(None, &["--max-size", "1MiB"], &[]);
    check_limit(&s, 1024 * 1024);
}

#[test]
fn default_max_size_is_128_mib() {
    let s = TigServer::start();
    let addr = s.addr();
    let limit = 128 * 1024 * 1024;
    // One byte over, sent chunked: refused without storing.
    assert_413(|| put_chunked(&addr, "/", vec![b'x'; limit + 1]));
    assert!(tig_files(&s.root).is_empty());
    // With a Content-Length too.
    assert_413(|| put_sized(&addr, "/", vec![b'y'; limit + 1]));
    assert!(tig_files(&s.root).is_empty());
}

/// Request headers are bounded by the server's 64 KiB read buffer: 100 KiB of
/// headers get `431` and the connection closes (the reply can be lost to the
/// reset that closing with unread bytes causes, so a reply is checked when one
/// arrives), the server carries on, and headers just under the bound are read.
#[test]
fn oversized_request_headers_are_refused_with_431() {
    let s = TigServer::start();
    let addr = s.addr();
    let with_header = |len: usize| {
        format!(
            "GET / HTTP/1.1\r\nHost: {addr}\r\nX-Pad: {}\r\nConnection: close\r\n\r\n",
            "a".repeat(len)
        )
    };
    let mut big = TcpStream::connect(&addr).expect("connect");
    big.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let _ = big.write_all(with_header(100 * 1024).as_bytes());
    let mut reply = Vec::new();
    let _ = big.read_to_end(&mut reply);
    if !reply.is_empty() {
        let head = String::from_utf8_lossy(&reply[..reply.len().min(40)]).into_owned();
        assert!(head.starts_with("HTTP/1.1 431"), "{head}");
    }
    let r = s.raw(with_header(32 * 1024).as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(s.stderr().lines().all(|l| !l.contains("panicked")));
}
