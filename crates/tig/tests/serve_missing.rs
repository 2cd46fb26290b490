//! `POST /?missing=1` against a real `tig serve`: the reply lists exactly the names
//! that do not hold content with that hash (absent, or a key-value slot), in the
//! order asked, never a present one; bad lines are a 400 naming the line; the caps
//! hold; no key is needed; a cluster answers for what its peers hold; and `curl`
//! can use it as the README shows.

mod common;

use std::process::Command;

use common::*;

fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

#[test]
fn lists_exactly_the_names_without_content_slots_included() {
    // With a key configured: the check still needs none.
    let s = TigServer::start_with(None, &[], &[("APIKEY", "k")]);
    let c = http();
    let a = c
        .put(format!("{}/?apikey=k", s.url))
        .body("aaa")
        .send()
        .expect("put");
    assert_eq!(a.status(), 200);
    let a = obj_path(b"aaa");
    let b = obj_path(b"bbb");
    c.put(format!("{}/?apikey=k", s.url))
        .body("bbb")
        .send()
        .expect("put");
    // A slot at the hash of "ccc", holding other bytes.
    let slot = obj_path(b"ccc");
    let r = c
        .put(format!("{}{slot}?apikey=k", s.url))
        .body("not ccc")
        .send()
        .expect("slot");
    assert_eq!(r.status(), 200);
    let absent = obj_path(b"nowhere");

    let body = format!("{a}\n{slot}\r\n\n{absent}\n{b}\n{slot}");
    let (status, text) = missing(&s, body);
    assert_eq!(status, 200);
    assert_eq!(
        lines(&text),
        vec![slot.as_str(), absent.as_str(), slot.as_str()]
    );

    // An empty body asks nothing.
    assert_eq!(missing(&s, ""), (200, String::new()));
    // Content-type of the reply.
    let r = c
        .post(format!("{}/?missing=1", s.url))
        .body(a.clone())
        .send()
        .expect("post");
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap_or("")
            .starts_with("text/plain")
    );
}

#[test]
fn many_names_never_wrong_either_way() {
    let s = TigServer::start();
    let mut want = Vec::new();
    let mut body = String::new();
    for i in 0..3000u32 {
        let data = format!("object {i}");
        let path = obj_path(data.as_bytes());
        // Every third is stored, every seventh of the rest becomes a slot.
        if i % 3 == 0 {
            s.put(data.as_bytes());
        } else {
            if i % 7 == 0 {
                let r = http()
                    .put(format!("{}{path}", s.url))
                    .body(format!("slot {i}"))
                    .send()
                    .expect("slot");
                assert_eq!(r.status(), 200);
            }
            want.push(path.clone());
        }
        body.push_str(&path);
        body.push('\n');
    }
    let (status, text) = missing(&s, body);
    assert_eq!(status, 200);
    assert_eq!(
        lines(&text),
        want.iter().map(String::as_str).collect::<Vec<_>>()
    );
}

#[test]
fn bad_bodies_are_refused_naming_the_line() {
    let s = TigServer::start();
    let a = s.put(b"here");
    for (body, line) in [
        (format!("{a}\n/apikey\n"), "line 2"),
        (format!("{a}\n{}\n", &a[1..]), "line 2"),
        (format!("{}\n", a.to_uppercase()), "line 1"),
        (format!("\n\n{a} trailing\n"), "line 3"),
        ("../etc/passwd\n".to_string(), "line 1"),
    ] {
        let (status, text) = missing(&s, body.clone());
        assert_eq!(status, 400, "{body:?}: {text}");
        assert!(text.contains(line), "{body:?}: {text}");
        assert_eq!(text.trim().lines().count(), 1, "{text}");
    }
    // Over the line cap.
    let over = format!("{a}\n").repeat(100_001);
    let (status, text) = missing(&s, over);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("100000"), "{text}");
    // At the cap: fine, and `a` is present.
    let (status, text) = missing(&s, format!("{a}\n").repeat(100_000));
    assert_eq!((status, text.as_str()), (200, ""));
    // Over the byte cap (16 MiB).
    let (status, _) = missing(&s, vec![b'\n'; (16 << 20) + 1]);
    assert_eq!(status, 413);
    // Only POST / takes missing=1.
    for method in [reqwest::Method::PUT, reqwest::Method::GET] {
        let r = http()
            .request(method.clone(), format!("{}/?missing=1", s.url))
            .body(a.clone())
            .send()
            .expect("req");
        assert_eq!(r.status(), 400, "{method}");
    }
}

#[test]
fn a_cluster_answers_for_what_its_peers_hold() {
    let b = TigServer::start();
    let a = TigServer::start_with(None, &["--peers", &b.url], &[]);
    let on_a = a.put(b"on a");
    let on_b = b.put(b"on b");
    let slot_on_b = obj_path(b"slot on b");
    http()
        .put(format!("{}{slot_on_b}", b.url))
        .body("other bytes")
        .send()
        .expect("slot");
    let nowhere = obj_path(b"nowhere");
    let body = format!("{on_a}\n{on_b}\n{slot_on_b}\n{nowhere}\n");
    let (status, text) = missing(&a, body.clone());
    assert_eq!(status, 200);
    assert_eq!(lines(&text), vec![slot_on_b.as_str(), nowhere.as_str()]);
    // A forwarded request is answered from local data only.
    let r = http()
        .post(format!("{}/?missing=1", a.url))
        .header("Tig-Forwarded", "1")
        .body(body)
        .send()
        .expect("post");
    let text = r.text().expect("text");
    assert_eq!(
        lines(&text),
        vec![on_b.as_str(), slot_on_b.as_str(), nowhere.as_str()]
    );
}

#[test]
fn curl_as_in_the_readme() {
    let s = TigServer::start();
    let here = s.put(b"here");
    let gone = obj_path(b"gone");
    let dir = tempfile::tempdir().expect("tmp");
    let list = dir.path().join("names");
    std::fs::write(&list, format!("{here}\n{gone}\n")).expect("write");
    let out = Command::new("curl")
        .args(["-sS", "--fail-with-body", "--data-binary"])
        .arg(format!("@{}", list.display()))
        .arg(format!("{}/?missing=1", s.url))
        .output()
        .expect("curl");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{gone}\n"));
}
