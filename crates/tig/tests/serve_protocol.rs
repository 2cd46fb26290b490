//! Every row of the protocol table (SPEC.md §1, server contract), against the real
//! `tig serve` binary on an ephemeral loopback port, with no API key configured.

mod common;

use common::*;
use reqwest::blocking::{Client, Response};

/// Asserts an error reply: `status`, text/plain, exactly one line ending in `\n`.
fn assert_error(reply: Response, status: u16) -> String {
    assert_eq!(reply.status().as_u16(), status, "status");
    let ctype = reply
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or("").to_string())
        .unwrap_or_default();
    assert!(ctype.starts_with("text/plain"), "content-type {ctype:?}");
    let body = reply.text().expect("body");
    assert!(
        body.ends_with('\n'),
        "error body ends with a newline: {body:?}"
    );
    assert_eq!(body.matches('\n').count(), 1, "one line: {body:?}");
    assert!(body.len() > 1, "a reason is given: {body:?}");
    body
}

fn put(c: &Client, url: &str, body: impl Into<reqwest::blocking::Body>) -> Response {
    c.put(url).body(body).send().expect("PUT")
}

fn get_bytes(c: &Client, url: &str) -> (u16, Vec<u8>) {
    let r = c.get(url).send().expect("GET");
    let s = r.status().as_u16();
    (s, r.bytes().expect("body").to_vec())
}

#[test]
fn put_and_post_root_store_by_hash_and_reply_the_path_without_newline() {
    let s = TigServer::start();
    let c = http();
    for (i, method) in ["PUT", "POST"].iter().enumerate() {
        let body = format!("hello {i}\n");
        let r = c
            .request(method.parse().expect("method"), format!("{}/", s.url))
            .body(body.clone())
            .send()
            .expect("send");
        assert_eq!(r.status(), 200);
        let text = r.text().expect("text");
        assert_eq!(text, obj_path(body.as_bytes()), "{method} reply");
        let h = sha256_hex(body.as_bytes());
        assert_eq!(
            std::fs::read(s.obj_file(&h)).expect("file on disk"),
            body.as_bytes()
        );
        assert_eq!(
            get_bytes(&c, &s.obj_url(&h)),
            (200, body.clone().into_bytes())
        );
    }
}

#[test]
fn put_root_is_idempotent() {
    let s = TigServer::start();
    let c = http();
    let a = put(&c, &format!("{}/", s.url), "same").text().expect("a");
    let b = put(&c, &format!("{}/", s.url), "same").text().expect("b");
    assert_eq!(a, b);
    assert_eq!(a, obj_path(b"same"));
    assert_eq!(tig_files(&s.root).len(), 1);
}

#[test]
fn put_to_a_plain_name_stores_by_hash_ignoring_the_name() {
    // What `curl -T /tmp/test URL/` sends: PUT /test.
    let s = TigServer::start();
    let c = http();
    for method in ["PUT", "POST"] {
        let r = c
            .request(method.parse().expect("m"), format!("{}/test", s.url))
            .body("test\n")
            .send()
            .expect("send");
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().expect("t"), obj_path(b"test\n"));
    }
    assert!(
        !s.root.join("test").exists(),
        "the name is never used as a file"
    );
    let names: Vec<String> = tig_files(&s.root).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, vec![format!("{}.tig", sha256_hex(b"test\n"))]);
}

#[test]
fn empty_body_is_an_object_like_any_other() {
    let s = TigServer::start();
    let c = http();
    let r = put(&c, &format!("{}/", s.url), "");
    assert_eq!(r.status(), 200);
    let empty = sha256_hex(b"");
    assert_eq!(r.text().expect("t"), format!("/{empty}.tig"));
    assert_eq!(get_bytes(&c, &s.obj_url(&empty)), (200, vec![]));
}

#[test]
fn kv_endpoint_only_hashes() {
    let s = TigServer::start();
    let c = http();
    for method in ["PUT", "POST"] {
        let r = c
            .request(method.parse().expect("m"), format!("{}/kv", s.url))
            .body("key\n")
            .send()
            .expect("send");
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.text().expect("t"),
            "/a7998f247bd965694ff227fa325c81169a07471a8b6808d3e002a486c4e65975.tig"
        );
    }
    let r = c
        .put(format!("{}/kv", s.url))
        .query(&[("format", "http://example.com*")])
        .body("key\n")
        .send()
        .expect("send");
    assert_eq!(
        r.text().expect("t"),
        "http://example.com/a7998f247bd965694ff227fa325c81169a07471a8b6808d3e002a486c4e65975.tig"
    );
    assert!(tig_files(&s.root).is_empty(), "/kv stores nothing");
}

#[test]
fn key_value_slot_write_replaces_atomically() {
    let s = TigServer::start();
    let c = http();
    let slot = sha256_hex(b"my slot");
    let url = s.obj_url(&slot);
    for value in ["abc\n", "def\n", "a much longer value than before\n", "x"] {
        let r = put(&c, &url, value);
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().expect("t"), format!("/{slot}.tig"));
        assert_eq!(get_bytes(&c, &url), (200, value.as_bytes().to_vec()));
    }
    // POST behaves the same.
    let r = c.post(&url).body("posted").send().expect("post");
    assert_eq!(r.status(), 200);
    assert_eq!(get_bytes(&c, &url), (200, b"posted".to_vec()));
    // An empty value is a value.
    assert_eq!(put(&c, &url, "").status(), 200);
    assert_eq!(get_bytes(&c, &url), (200, vec![]));
}

#[test]
fn slot_write_to_content_addressed_data_is_refused_409() {
    let s = TigServer::start();
    let c = http();
    let path = put(&c, &format!("{}/", s.url), "key\n").text().expect("t");
    let url = format!("{}{}", s.url, path);
    for r in [
        put(&c, &url, "abc\n"),
        c.post(&url).body("abc\n").send().expect("post"),
        c.put(&url)
            .query(&[("append", "1")])
            .body("more")
            .send()
            .expect("append"),
    ] {
        assert_error(r, 409);
    }
    assert_eq!(get_bytes(&c, &url), (200, b"key\n".to_vec()));
}

#[test]
fn content_upload_colliding_with_a_slot_is_refused_and_the_slot_kept() {
    let s = TigServer::start();
    let c = http();
    let h = sha256_hex(b"xyz");
    let url = s.obj_url(&h);
    assert_eq!(put(&c, &url, "slot value").status(), 200);
    assert_error(put(&c, &format!("{}/", s.url), "xyz"), 409);
    assert_eq!(get_bytes(&c, &url), (200, b"slot value".to_vec()));
}

#[test]
fn setifnot_creates_once_and_says_so_in_a_header() {
    let s = TigServer::start();
    let c = http();
    let slot = sha256_hex(b"mutex");
    let url = s.obj_url(&slot);
    let r = c
        .put(&url)
        .query(&[("setifnot", "1")])
        .body("first")
        .send()
        .expect("first");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers().get("tig-created").map(|v| v.as_bytes()),
        Some(&b"true"[..])
    );
    assert_eq!(r.text().expect("t"), format!("/{slot}.tig"));
    let r = c
        .put(&url)
        .query(&[("setifnot", "1")])
        .body("second")
        .send()
        .expect("second");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers().get("tig-created").map(|v| v.as_bytes()),
        Some(&b"false"[..])
    );
    assert_eq!(r.text().expect("t"), "");
    assert_eq!(get_bytes(&c, &url), (200, b"first".to_vec()));
}

#[test]
fn append_creates_then_appends() {
    let s = TigServer::start();
    let c = http();
    let slot = sha256_hex(b"log");
    let url = s.obj_url(&slot);
    for line in ["one\n", "two\n", "three\n"] {
        let r = c
            .put(&url)
            .query(&[("append", "1")])
            .body(line)
            .send()
            .expect("append");
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().expect("t"), format!("/{slot}.tig"));
    }
    assert_eq!(get_bytes(&c, &url), (200, b"one\ntwo\nthree\n".to_vec()));
    // POST append works too, and formats.
    let r = c
        .post(&url)
        .query(&[("append", "1"), ("format", "<*>")])
        .body("four\n")
        .send()
        .expect("append");
    assert_eq!(r.text().expect("t"), format!("</{slot}.tig>"));
    assert_eq!(
        get_bytes(&c, &url),
        (200, b"one\ntwo\nthree\nfour\n".to_vec())
    );
}

#[test]
fn get_head_content_type_and_chtimes() {
    let s = TigServer::start();
    let c = http();
    let body = b"<html>hi</html>".to_vec();
    let h = sha256_hex(&body);
    put(&c, &format!("{}/", s.url), body.clone());
    let url = s.obj_url(&h);

    let r = c.get(&url).send().expect("get");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers().get("content-type").expect("ctype").as_bytes(),
        b"application/octet-stream"
    );
    assert_eq!(r.bytes().expect("b").to_vec(), body);

    let r = c
        .get(&url)
        .query(&[("Content-Type", "text/html")])
        .send()
        .expect("get");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers().get("content-type").expect("ctype").as_bytes(),
        b"text/html"
    );
    assert_eq!(r.bytes().expect("b").to_vec(), body);

    let r = c.get(&url).query(&[("chtimes", "0")]).send().expect("get");
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().expect("b").to_vec(), body);

    let r = c.head(&url).send().expect("head");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()
            .get("content-length")
            .expect("content-length")
            .as_bytes(),
        body.len().to_string().as_bytes()
    );

    let absent = s.obj_url(&sha256_hex(b"never stored"));
    assert_eq!(c.head(&absent).send().expect("head").status(), 404);
    assert_error(c.get(&absent).send().expect("get"), 404);
}

#[test]
fn delete_removes_slots_only() {
    let s = TigServer::start();
    let c = http();
    let slot = sha256_hex(b"deletable");
    let url = s.obj_url(&slot);
    put(&c, &url, "v");
    let r = c.delete(&url).send().expect("delete");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().expect("t"), format!("/{slot}.tig"));
    assert_eq!(c.get(&url).send().expect("get").status(), 404);
    assert!(!s.obj_file(&slot).exists());
    assert_error(c.delete(&url).send().expect("delete again"), 404);

    let path = put(&c, &format!("{}/", s.url), "immutable")
        .text()
        .expect("t");
    let curl = format!("{}{}", s.url, path);
    assert_error(c.delete(&curl).send().expect("delete content"), 409);
    assert_eq!(get_bytes(&c, &curl), (200, b"immutable".to_vec()));

    // format applies to the delete reply too.
    put(&c, &url, "v");
    let r = c
        .delete(&url)
        .query(&[("format", "http://h*")])
        .send()
        .expect("delete");
    assert_eq!(r.text().expect("t"), format!("http://h/{slot}.tig"));
}

#[test]
fn format_replaces_the_first_star() {
    let s = TigServer::start();
    let c = http();
    let h = sha256_hex(b"fmt");
    for (fmt, want) in [
        ("*", format!("/{h}.tig")),
        (
            "http://127.0.0.1:7777*",
            format!("http://127.0.0.1:7777/{h}.tig"),
        ),
        ("[*]\n", format!("[/{h}.tig]\n")),
        ("a*b*c", format!("a/{h}.tigb*c")),
    ] {
        let r = c
            .put(format!("{}/", s.url))
            .query(&[("format", fmt)])
            .body("fmt")
            .send()
            .expect("put");
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().expect("t"), want, "format={fmt:?}");
    }
}

#[test]
fn listing_is_disabled_without_a_key() {
    let s = TigServer::start();
    let c = http();
    put(&c, &format!("{}/", s.url), "something");
    for url in [
        format!("{}/", s.url),
        format!("{}/?apikey=abc", s.url),
        s.url.clone(),
    ] {
        let r = c.get(&url).send().expect("list");
        assert_eq!(r.status(), 200, "{url}");
        assert_eq!(r.text().expect("t"), "", "{url}");
    }
}

#[test]
fn apikey_parameter_is_ignored_without_a_configured_key() {
    // The seed answers 401 here, breaking its own examples; we accept the write.
    let s = TigServer::start();
    let c = http();
    let r = put(&c, &format!("{}/?apikey=abc", s.url), "with key");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().expect("t"), obj_path(b"with key"));
    let slot = s.obj_url(&sha256_hex(b"k"));
    assert_eq!(put(&c, &format!("{slot}?apikey=zzz"), "v").status(), 200);
    assert_eq!(
        c.delete(format!("{slot}?apikey=zzz"))
            .send()
            .expect("d")
            .status(),
        200
    );
}

#[test]
fn unknown_query_parameters_are_400() {
    let s = TigServer::start();
    let c = http();
    let h = sha256_hex(b"q");
    put(&c, &format!("{}/", s.url), "q");
    let obj = s.obj_url(&h);
    let cases = [
        ("foo", c.get(format!("{obj}?foo=1"))),
        (
            "content-type",
            c.get(format!("{obj}?content-type=text/plain")),
        ),
        ("bogus", c.head(format!("{obj}?bogus=1"))),
        ("x", c.put(format!("{}/?x=1", s.url)).body("q2")),
        ("nope", c.put(format!("{obj}?setifnot=1&nope=2")).body("q3")),
        ("extra", c.get(format!("{}/?apikey=a&extra=b", s.url))),
        ("zap", c.delete(format!("{obj}?zap=1"))),
        ("what", c.put(format!("{}/kv?what=1", s.url)).body("k")),
    ];
    for (name, req) in cases {
        let r = req.send().expect("send");
        if name == "bogus" {
            assert_eq!(r.status(), 400, "HEAD ?{name}");
            continue;
        }
        let body = assert_error(r, 400);
        assert_eq!(body, format!("unknown query parameter: {name}\n"));
    }
    // Nothing was stored by the refused writes.
    assert!(!s.obj_file(&sha256_hex(b"q2")).exists());
    assert!(!s.obj_file(&sha256_hex(b"q3")).exists());
    // Known parameters are accepted on GET.
    let r = c
        .get(format!("{obj}?chtimes=0&Content-Type=text/plain&format=*"))
        .send()
        .expect("get");
    assert_eq!(r.status(), 200);
}

#[test]
fn other_paths_are_417() {
    let s = TigServer::start();
    let c = http();
    let h = sha256_hex(b"x");
    put(&c, &format!("{}/", s.url), "x");
    let upper = h.to_ascii_uppercase();
    for path in [
        "/randomfileunauthorized".to_string(),
        "/apikey".to_string(),
        "/a/b".to_string(),
        format!("/{upper}.tig"),
        format!("/{}.tig", &h[..63]),
        format!("/{h}0.tig"),
        format!("/{h}.txt"),
        format!("/{h}"),
        format!("/x/{h}.tig"),
        format!("/{h}.tig/extra"),
    ] {
        let r = c.get(format!("{}{path}", s.url)).send().expect("get");
        assert_error(r, 417);
    }
    // A write to a nested path is refused too, and nothing is stored.
    let r = c
        .put(format!("{}/a/b", s.url))
        .body("nested")
        .send()
        .expect("put");
    assert_error(r, 417);
    assert!(!s.obj_file(&sha256_hex(b"nested")).exists());
}

#[test]
fn dot_segments_are_400_even_raw() {
    let s = TigServer::start();
    std::fs::write(s.root.join("apikey"), "secret\n").expect("write apikey");
    let h = sha256_hex(b"dots");
    http()
        .put(format!("{}/?apikey=secret", s.url))
        .body("dots")
        .send()
        .expect("put");
    let addr = s.addr();
    for target in [
        "/..".to_string(),
        "/../apikey".to_string(),
        "/../../etc/passwd".to_string(),
        format!("/../{h}.tig"),
        format!("/./{h}.tig"),
        format!("/{h}.tig/.."),
        format!("/a/../{h}.tig"),
        "/./".to_string(),
        "/..%2fapikey".to_string(),
    ] {
        let r = raw_get(&addr, &target);
        assert_eq!(r.status, 400, "GET {target}: {}", r.text());
        assert!(!r.text().contains("secret"), "GET {target} leaked the key");
        let body = r.text();
        assert!(body.ends_with('\n') && body.matches('\n').count() == 1);
    }
    // Percent-encoded dots are refused one way or the other, never served.
    for target in ["/%2e%2e/apikey", "/%2E%2E/apikey", "/.%2e/apikey"] {
        let r = raw_get(&addr, target);
        assert!(
            r.status == 400 || r.status == 417,
            "GET {target}: {}",
            r.status
        );
        assert!(!r.text().contains("secret"));
    }
    // Writes through dot paths store nothing.
    for target in ["/../x", "/./x", "/../kv", "/a/../b"] {
        let r = raw_with_body(&addr, "PUT", target, b"through dots");
        assert_eq!(r.status, 400, "PUT {target}");
    }
    assert!(!s.obj_file(&sha256_hex(b"through dots")).exists());
    assert!(
        s.root
            .parent()
            .map(|p| !p.join("x").exists())
            .unwrap_or(true),
        "nothing written outside the root"
    );
}
