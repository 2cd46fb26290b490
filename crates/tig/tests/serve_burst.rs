//! `GET /<h>.tig?burst=1`: concatenation of the listed objects, every line checked
//! before the 200, never a file outside the objects, never a silent gap.

mod common;

use std::io::Read;

use common::*;
use reqwest::blocking::Client;

fn store(c: &Client, s: &TigServer, body: &[u8]) -> String {
    let r = c
        // The key only matters in the test that writes `<root>/apikey`.
        .put(format!("{}/?apikey=topsecret", s.url))
        .body(body.to_vec())
        .send()
        .expect("put");
    assert_eq!(r.status(), 200);
    r.text().expect("path")
}

fn burst(c: &Client, s: &TigServer, list_path: &str) -> (u16, Vec<u8>) {
    let r = c
        .get(format!("{}{list_path}?burst=1", s.url))
        .send()
        .expect("burst");
    let status = r.status().as_u16();
    (status, r.bytes().expect("body").to_vec())
}

#[test]
fn burst_concatenates_members_in_order_with_paths_and_urls() {
    let s = TigServer::start();
    let c = http();
    let a = store(&c, &s, b"abc");
    let b = store(&c, &s, b"def");
    let g = store(&c, &s, b"ghi");
    // Path lines, a full URL line (taken by its path, even for another host),
    // blank lines, CRLF endings, a repeated member, no final newline.
    let list = format!(
        "{a}\r\n\n{}{b}\r\nhttps://elsewhere.example:8443{g}\n\n{a}",
        s.url
    );
    let lp = store(&c, &s, list.as_bytes());
    assert_eq!(burst(&c, &s, &lp), (200, b"abcdefghiabc".to_vec()));
    // Without burst=1 the list itself comes back.
    let r = c.get(format!("{}{lp}", s.url)).send().expect("get");
    assert_eq!(r.text().expect("t"), list);
}

#[test]
fn burst_members_may_be_slots_and_an_empty_list_is_empty() {
    let s = TigServer::start();
    let c = http();
    let slot = sha256_hex(b"burst slot");
    c.put(s.obj_url(&slot)).body("v1;").send().expect("put");
    let x = store(&c, &s, b"x");
    let lp = store(&c, &s, format!("/{slot}.tig\n{x}\n").as_bytes());
    assert_eq!(burst(&c, &s, &lp), (200, b"v1;x".to_vec()));
    c.put(s.obj_url(&slot)).body("v2;").send().expect("put");
    assert_eq!(burst(&c, &s, &lp), (200, b"v2;x".to_vec()));

    let empty = store(&c, &s, b"");
    assert_eq!(burst(&c, &s, &empty), (200, vec![]));
    let blanks = store(&c, &s, b"\n\r\n\n");
    assert_eq!(burst(&c, &s, &blanks), (200, vec![]));
}

#[test]
fn burst_of_a_large_member_streams_it_whole() {
    let s = TigServer::start();
    let c = http();
    let big = pseudo_random(7, 24 * 1024 * 1024 + 13);
    let p = store(&c, &s, &big);
    let small = store(&c, &s, b"tail");
    let lp = store(&c, &s, format!("{p}\n{small}\n{p}\n").as_bytes());
    let (status, body) = burst(&c, &s, &lp);
    assert_eq!(status, 200);
    assert_eq!(body.len(), 2 * big.len() + 4);
    let mut want = big.clone();
    want.extend_from_slice(b"tail");
    want.extend_from_slice(&big);
    assert!(body == want, "burst bytes differ");
}

/// Members are checked and read a batch at a time: a list of many members,
/// some read alone first (so the cache holds them) and some not, small, empty,
/// over the cache's 64 KiB and a slot, comes back whole and in order across
/// every batch boundary.
#[test]
fn a_long_burst_comes_back_in_order_across_batches() {
    let s = TigServer::start();
    let c = http();
    let slot = sha256_hex(b"long burst slot");
    c.put(s.obj_url(&slot)).body("<slot>").send().expect("put");
    let mut list = String::new();
    let mut want = Vec::new();
    for i in 0..61u64 {
        let body = match i % 5 {
            0 => Vec::new(),
            1 => pseudo_random(i, 100 * 1024 + i as usize),
            2 => b"<slot>".to_vec(),
            _ => pseudo_random(i, 1 + 997 * i as usize),
        };
        let path = if i % 5 == 2 {
            format!("/{slot}.tig")
        } else {
            store(&c, &s, &body)
        };
        if i % 3 == 0 {
            let r = c.get(format!("{}{path}", s.url)).send().expect("get");
            assert_eq!(r.bytes().expect("body").as_ref(), body.as_slice());
        }
        list.push_str(&path);
        list.push('\n');
        want.extend_from_slice(&body);
    }
    let lp = store(&c, &s, list.as_bytes());
    for _ in 0..2 {
        let (status, body) = burst(&c, &s, &lp);
        assert_eq!(status, 200);
        assert_eq!(body.len(), want.len());
        assert!(body == want, "burst bytes differ");
    }
}

#[test]
fn malformed_burst_lines_are_400_naming_the_line_and_leak_nothing() {
    let s = TigServer::start();
    std::fs::write(s.root.join("apikey"), "topsecret\n").expect("apikey");
    let outside = s
        .root
        .parent()
        .expect("parent")
        .join(format!("tig-outside-{}.tig", std::process::id()));
    let c = http();
    let good = store(&c, &s, b"good");
    let h = sha256_hex(b"good");
    let bad_lines = [
        "/apikey".to_string(),
        "apikey".to_string(),
        "/../apikey".to_string(),
        format!("/../{h}.tig"),
        format!("/./{h}.tig"),
        format!("{h}.tig"),
        format!("/{}.tig", h.to_ascii_uppercase()),
        format!("/{}.tig", &h[..60]),
        format!("/{h}.tig/../../apikey"),
        format!("http://127.0.0.1/../{h}.tig"),
        "http://127.0.0.1/apikey".to_string(),
        "ftp://127.0.0.1/x.tig".to_string(),
        "/etc/passwd".to_string(),
        "hello world".to_string(),
    ];
    std::fs::write(&outside, "outside data").ok();
    for line in &bad_lines {
        // The bad line sits between two good members: nothing may be sent.
        let lp = store(&c, &s, format!("{good}\n{line}\n{good}\n").as_bytes());
        let r = c
            .get(format!("{}{lp}?burst=1", s.url))
            .send()
            .expect("burst");
        assert_eq!(r.status(), 400, "line {line:?}");
        let body = r.text().expect("t");
        assert!(body.ends_with('\n') && body.matches('\n').count() == 1);
        assert!(
            body.contains(line.as_str()),
            "reply names {line:?}: {body:?}"
        );
        assert!(!body.contains("topsecret"), "leaked the key");
        assert!(!body.contains("good"), "sent member bytes before the error");
    }
    std::fs::remove_file(&outside).ok();
}

#[test]
fn missing_burst_member_is_404_naming_it_before_any_byte() {
    let s = TigServer::start();
    let c = http();
    let first = store(&c, &s, b"first");
    let missing = format!("/{}.tig", sha256_hex(b"never stored"));
    let lp = store(&c, &s, format!("{first}\n{missing}\n").as_bytes());
    let r = c
        .get(format!("{}{lp}?burst=1", s.url))
        .send()
        .expect("burst");
    assert_eq!(r.status(), 404);
    let body = r.text().expect("t");
    assert!(body.contains(&sha256_hex(b"never stored")), "{body:?}");
    assert!(!body.contains("first"));
    assert!(body.ends_with('\n') && body.matches('\n').count() == 1);
    // A burst of an absent list is a plain 404.
    let absent = sha256_hex(b"absent list");
    assert_eq!(
        c.get(format!("{}?burst=1", s.obj_url(&absent)))
            .send()
            .expect("get")
            .status(),
        404
    );
}

#[test]
fn member_vanishing_mid_stream_aborts_instead_of_a_silent_gap() {
    let s = TigServer::start();
    let c = http();
    let big = pseudo_random(3, 32 * 1024 * 1024);
    let first = store(&c, &s, &big);
    let slot = sha256_hex(b"vanishing member");
    c.put(s.obj_url(&slot)).body("LAST").send().expect("slot");
    let lp = store(&c, &s, format!("{first}\n/{slot}.tig\n").as_bytes());
    let mut r = c
        .get(format!("{}{lp}?burst=1", s.url))
        .send()
        .expect("burst");
    assert_eq!(r.status(), 200);
    let mut head = vec![0u8; 4096];
    r.read_exact(&mut head).expect("first bytes");
    // Delete the second member while the first is still streaming.
    let d = c.delete(s.obj_url(&slot)).send().expect("delete");
    assert_eq!(d.status(), 200);
    let mut rest = Vec::new();
    match r.read_to_end(&mut rest) {
        Err(_) => {} // aborted: the client can tell the reply is incomplete
        Ok(_) => {
            // Only acceptable if the server had already opened the member: whole.
            let mut got = head;
            got.extend_from_slice(&rest);
            let mut want = big.clone();
            want.extend_from_slice(b"LAST");
            assert!(
                got == want,
                "a burst ended cleanly with {} bytes instead of {}: silent gap",
                got.len(),
                want.len()
            );
        }
    }
}

/// `POST /?concat=1` answers for the list in its body what `GET ?burst=1` answers
/// for a stored list, needs no key (it only reads), stores nothing, and takes at
/// most 100,000 names.
#[test]
fn posted_names_come_back_concatenated_like_a_stored_burst_without_a_key() {
    let s = TigServer::start();
    std::fs::write(s.root.join("apikey"), "topsecret\n").expect("apikey");
    let c = http();
    let a = store(&c, &s, b"abc");
    let b = store(&c, &s, b"def");
    let empty = store(&c, &s, b"");
    let list = format!("{a}\r\n\n{}{b}\n{empty}\n{a}", s.url);
    let post = |query: &str, body: &str| {
        let r = c
            .post(format!("{}/?{query}", s.url))
            .body(body.to_string())
            .send()
            .expect("post");
        let count = r
            .headers()
            .get("tig-concat-count")
            .map(|v| v.to_str().expect("ascii").to_string());
        (
            r.status().as_u16(),
            count,
            r.bytes().expect("body").to_vec(),
        )
    };
    let (status, count, body) = post("concat=1", &list);
    assert_eq!((status, count.as_deref()), (200, Some("4")));
    assert_eq!(body, b"abcdefabc");
    let lp = store(&c, &s, list.as_bytes());
    assert_eq!(burst(&c, &s, &lp), (200, body));
    // Nothing was stored by the POST itself.
    let other = format!("{b}\n{a}\n");
    assert_eq!(post("concat=1", &other).0, 200);
    let h = sha256_hex(other.as_bytes());
    assert_eq!(c.head(s.obj_url(&h)).send().expect("head").status(), 404);

    assert_eq!(post("concat=1", ""), (200, Some("0".into()), vec![]));
    let (status, _, text) = post("concat=1", &format!("{a}\n/apikey\n"));
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&text).contains("line 2"));
    let gone = sha256_hex(b"never stored");
    let (status, count, text) = post("concat=1", &format!("{a}\n/{gone}.tig\n"));
    assert_eq!((status, count), (404, None));
    assert!(
        String::from_utf8_lossy(&text).contains(&gone),
        "names the member"
    );
    let many = format!("{a}\n").repeat(100_001);
    let (status, _, text) = post("concat=1", &many);
    assert_eq!(status, 400);
    assert!(
        String::from_utf8_lossy(&text).contains("100000"),
        "{}",
        String::from_utf8_lossy(&text)
    );
    // Only on POST /, and alone.
    for q in ["concat=1&missing=1", "concat=1&batch=1"] {
        assert_eq!(post(q, &list).0, 400, "{q}");
    }
    let r = c.get(format!("{}{a}?concat=1", s.url)).send().expect("get");
    assert_eq!(r.status(), 400);
}
