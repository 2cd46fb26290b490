//! Issue 11, server side: the web's rules for immutable bytes, checked with the
//! real `curl` against the real binary. Content carries `ETag: "<h>"`, is
//! cacheable forever and answers `If-None-Match` (304) and `Range` (206/416), on
//! GET and HEAD; slots carry a changing strong tag and `no-cache`; bursts are
//! ranged over the concatenation; `HEAD /` and `GET /` state `Tig-Max-Size`.

mod common;

use std::collections::HashMap;
use std::process::Command;

use common::*;

/// One curl exchange: status, headers (lowercased names) and body.
struct Curl {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Curl {
    fn h(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// Runs `curl -sS` with `args` (plus a header dump) and parses what it saw.
fn curl(args: &[&str]) -> Curl {
    let dir = tempfile::tempdir().expect("tmp");
    let head = dir.path().join("head");
    let body = dir.path().join("body");
    let out = Command::new("curl")
        .args(["-sS", "--noproxy", "*", "-D"])
        .arg(&head)
        .arg("-o")
        .arg(&body)
        .args(args)
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&head).expect("headers");
    // The last response block (curl dumps every one, e.g. after a 100).
    let block = text
        .split("\r\n\r\n")
        .filter(|b| !b.trim().is_empty())
        .last()
        .expect("a response");
    let mut lines = block.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Curl {
        status,
        headers,
        body: std::fs::read(&body).unwrap_or_default(),
    }
}

fn put_content(s: &TigServer, data: &[u8]) -> String {
    let path = Command::new("curl")
        .args(["-sS", "--noproxy", "*", "-X", "PUT", "--data-binary", "@-"])
        .arg(format!("{}/", s.url))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(data)?;
            c.wait_with_output()
        })
        .expect("curl put");
    let path = String::from_utf8(path.stdout).expect("utf8");
    assert_eq!(path, obj_path(data));
    path
}

fn put_slot(s: &TigServer, path: &str, query: &str, value: &str) {
    let r = curl(&[
        "-X",
        "PUT",
        "--data-binary",
        value,
        &format!("{}{path}{query}", s.url),
    ]);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

#[test]
fn content_is_tagged_by_its_hash_cached_forever_and_ranged() {
    let s = TigServer::start();
    // Larger than one read buffer, so ranges cross the streamed path.
    let data = pseudo_random(11, 200_000);
    let path = put_content(&s, &data);
    let url = format!("{}{path}", s.url);
    let h = sha256_hex(&data);
    let etag = format!("\"{h}\"");

    let r = curl(&[&url]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, data);
    assert_eq!(r.h("etag"), Some(etag.as_str()));
    assert_eq!(
        r.h("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert_eq!(r.h("accept-ranges"), Some("bytes"));
    assert_eq!(r.h("content-length"), Some("200000"));

    // Conditional GET: the tag (alone, in a list, weak, or *) → 304, no body.
    for inm in [etag.clone(), format!("\"x\", W/{etag}"), "*".to_string()] {
        let r = curl(&["-H", &format!("If-None-Match: {inm}"), &url]);
        assert_eq!(r.status, 304, "{inm}");
        assert!(r.body.is_empty());
        assert_eq!(r.h("etag"), Some(etag.as_str()));
    }
    let r = curl(&["-H", "If-None-Match: \"other\"", &url]);
    assert_eq!((r.status, r.body.len()), (200, data.len()));

    // Ranges.
    for (range, start, end) in [
        ("bytes=0-9", 0usize, 10usize),
        ("bytes=65530-131080", 65_530, 131_081),
        ("bytes=199990-", 199_990, 200_000),
        ("bytes=-7", 199_993, 200_000),
        ("bytes=150000-999999", 150_000, 200_000),
    ] {
        let r = curl(&["-H", &format!("Range: {range}"), &url]);
        assert_eq!(r.status, 206, "{range}");
        assert_eq!(r.body, &data[start..end], "{range}");
        assert_eq!(
            r.h("content-range"),
            Some(format!("bytes {start}-{}/200000", end - 1).as_str())
        );
        assert_eq!(r.h("etag"), Some(etag.as_str()));
    }
    let r = curl(&["-H", "Range: bytes=200000-", &url]);
    assert_eq!(r.status, 416);
    assert_eq!(r.h("content-range"), Some("bytes */200000"));
    // Several ranges are not served as multipart: the whole object, 200.
    let r = curl(&["-H", "Range: bytes=0-1,5-6", &url]);
    assert_eq!((r.status, r.body.len()), (200, data.len()));
    // If-Range with the current tag keeps the range; with another, the whole.
    let r = curl(&[
        "-H",
        "Range: bytes=0-0",
        "-H",
        &format!("If-Range: {etag}"),
        &url,
    ]);
    assert_eq!((r.status, r.body.as_slice()), (206, &data[..1]));
    let r = curl(&["-H", "Range: bytes=0-0", "-H", "If-Range: \"old\"", &url]);
    assert_eq!((r.status, r.body.len()), (200, data.len()));
    // If-None-Match wins over Range.
    let r = curl(&[
        "-H",
        "Range: bytes=0-0",
        "-H",
        &format!("If-None-Match: {etag}"),
        &url,
    ]);
    assert_eq!(r.status, 304);

    // HEAD says the same.
    let r = curl(&["-I", &url]);
    assert_eq!(r.status, 200);
    assert_eq!(r.h("etag"), Some(etag.as_str()));
    assert_eq!(r.h("content-length"), Some("200000"));
    assert_eq!(
        r.h("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    let r = curl(&["-I", "-H", "Range: bytes=10-19", &url]);
    assert_eq!(r.status, 206);
    assert_eq!(r.h("content-range"), Some("bytes 10-19/200000"));
    assert_eq!(r.h("content-length"), Some("10"));
    let r = curl(&["-I", "-H", &format!("If-None-Match: {etag}"), &url]);
    assert_eq!(r.status, 304);
    let r = curl(&["-I", "-H", "Range: bytes=9-1", &url]);
    assert_eq!(r.status, 200, "an invalid range is ignored");
    let r = curl(&["-I", "-H", "Range: bytes=-0", &url]);
    assert_eq!(r.status, 416, "a zero suffix selects nothing");
    let r = curl(&["-I", "-H", "Range: bytes=300000-", &url]);
    assert_eq!(r.status, 416);
    assert_eq!(r.h("content-range"), Some("bytes */200000"));
}

#[test]
fn slots_have_a_strong_tag_that_changes_with_their_bytes() {
    let s = TigServer::start();
    let slot = format!("/{}.tig", sha256_hex(b"a slot's name"));
    let url = format!("{}{slot}", s.url);
    put_slot(&s, &slot, "", "value one");
    let r = curl(&[&url]);
    assert_eq!((r.status, r.body.as_slice()), (200, &b"value one"[..]));
    assert_eq!(r.h("cache-control"), Some("no-cache"));
    assert_eq!(r.h("accept-ranges"), Some("bytes"));
    let tag1 = r.h("etag").expect("slot etag").to_string();
    assert!(tag1.starts_with("\"s-") && tag1.ends_with('"'), "{tag1}");
    assert!(!is_hash(tag1.trim_matches('"')), "never a bare hash");
    // Reads do not change the tag; a conditional GET revalidates.
    assert_eq!(curl(&[&url]).h("etag"), Some(tag1.as_str()));
    let r = curl(&["-H", &format!("If-None-Match: {tag1}"), &url]);
    assert_eq!(r.status, 304);
    // Other bytes of the same length: a new tag, and the old one no longer matches.
    put_slot(&s, &slot, "", "value two");
    let r = curl(&["-H", &format!("If-None-Match: {tag1}"), &url]);
    assert_eq!((r.status, r.body.as_slice()), (200, &b"value two"[..]));
    let tag2 = r.h("etag").expect("etag").to_string();
    assert_ne!(tag2, tag1);
    // An append changes it too.
    put_slot(&s, &slot, "?append=1", "!");
    let r = curl(&["-I", &url]);
    let tag3 = r.h("etag").expect("etag").to_string();
    assert!(tag3 != tag2 && tag3 != tag1);
    assert_eq!(r.h("content-length"), Some("10"));
    // Ranges on slots, and If-Range against an old version sends the whole.
    let r = curl(&["-H", "Range: bytes=6-", &url]);
    assert_eq!((r.status, r.body.as_slice()), (206, &b"two!"[..]));
    assert_eq!(r.h("content-range"), Some("bytes 6-9/10"));
    let r = curl(&[
        "-H",
        "Range: bytes=6-",
        "-H",
        &format!("If-Range: {tag2}"),
        &url,
    ]);
    assert_eq!((r.status, r.body.as_slice()), (200, &b"value two!"[..]));
    let r = curl(&["-H", "Range: bytes=10-", &url]);
    assert_eq!(r.status, 416);
}

#[test]
fn kinds_and_tags_survive_a_restart() {
    let root = tempfile::tempdir().expect("root");
    let data = b"content that outlives its server\n";
    let slot = format!("/{}.tig", sha256_hex(b"restart slot"));
    let (path, tag) = {
        let s = TigServer::start_with(Some(root.path()), &[], &[]);
        let path = put_content(&s, data);
        put_slot(&s, &slot, "", "slot value");
        let tag = curl(&["-I", &format!("{}{slot}", s.url)])
            .h("etag")
            .expect("etag")
            .to_string();
        (path, tag)
    };
    let s = TigServer::start_with(Some(root.path()), &[], &[]);
    let r = curl(&["-I", &format!("{}{path}", s.url)]);
    assert_eq!(
        r.h("etag"),
        Some(format!("\"{}\"", sha256_hex(data)).as_str())
    );
    let r = curl(&["-I", &format!("{}{slot}", s.url)]);
    assert_eq!(r.h("etag"), Some(tag.as_str()));
    assert_eq!(r.h("cache-control"), Some("no-cache"));
}

#[test]
fn bursts_are_ranged_over_the_concatenation() {
    let s = TigServer::start();
    let parts = [
        pseudo_random(1, 70_000),
        b"middle".to_vec(),
        pseudo_random(2, 5),
    ];
    let all: Vec<u8> = parts.concat();
    let list: String = parts.iter().map(|p| put_content(&s, p) + "\n").collect();
    let list_path = put_content(&s, list.as_bytes());
    let url = format!("{}{list_path}?burst=1", s.url);
    let r = curl(&[&url]);
    assert_eq!((r.status, &r.body), (200, &all));
    // All content: immutable, tagged, but not with the bare hash of the list.
    let tag = r.h("etag").expect("burst etag").to_string();
    assert_eq!(tag, format!("\"b-{}\"", sha256_hex(list.as_bytes())));
    assert_eq!(
        r.h("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert_eq!(
        curl(&["-H", &format!("If-None-Match: {tag}"), &url]).status,
        304
    );
    let total = all.len();
    for (range, start, end) in [
        ("bytes=69995-70008", 69_995usize, 70_009usize),
        ("bytes=70000-70005", 70_000, 70_006),
        ("bytes=-3", total - 3, total),
        ("bytes=0-", 0, total),
    ] {
        let r = curl(&["-H", &format!("Range: {range}"), &url]);
        assert_eq!(r.status, 206, "{range}");
        assert_eq!(r.body, &all[start..end], "{range}");
        assert_eq!(
            r.h("content-range"),
            Some(format!("bytes {start}-{}/{total}", end - 1).as_str())
        );
    }
    let r = curl(&["-H", &format!("Range: bytes={total}-"), &url]);
    assert_eq!(r.status, 416);
    assert_eq!(
        r.h("content-range"),
        Some(format!("bytes */{total}").as_str())
    );
    // A burst with a slot member may change: no tag, revalidate.
    let slot = format!("/{}.tig", sha256_hex(b"member slot"));
    put_slot(&s, &slot, "", "slot!");
    let mixed = put_content(&s, format!("{list}{slot}\n").as_bytes());
    let r = curl(&[&format!("{}{mixed}?burst=1", s.url)]);
    assert_eq!(r.body, [all.as_slice(), b"slot!"].concat());
    assert_eq!(r.h("etag"), None);
    assert_eq!(r.h("cache-control"), Some("no-cache"));
}

#[test]
fn the_root_states_the_size_limit_on_every_reply() {
    let s = TigServer::start_with(None, &["--max-size", "1MiB"], &[]);
    for args in [vec!["-I"], vec![]] {
        let mut a = args.clone();
        let url = format!("{}/", s.url);
        a.push(&url);
        let r = curl(&a);
        assert_eq!(r.status, 200);
        assert_eq!(r.h("tig-max-size"), Some("1048576"), "{args:?}");
    }
    // With a key configured, even the 401 to a keyless GET / says it.
    let k = TigServer::start_with(None, &["--max-size", "2000"], &[("APIKEY", "k")]);
    let r = curl(&[&format!("{}/", k.url)]);
    assert_eq!(r.status, 401);
    assert_eq!(r.h("tig-max-size"), Some("2000"));
    let r = curl(&["-I", &format!("{}/", k.url)]);
    assert_eq!(r.h("tig-max-size"), Some("2000"));
    // Object replies do not carry it.
    let path = put_content(&s, b"x");
    assert_eq!(curl(&[&format!("{}{path}", s.url)]).h("tig-max-size"), None);
}

/// The value of the sample `series` in a `/metrics` scrape (0 when absent).
fn sample(s: &TigServer, series: &str) -> f64 {
    let r = raw_get(&s.addr(), "/metrics");
    assert_eq!(r.status, 200);
    r.text()
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().expect("numeric sample"))
}

/// A small object read again soon after is answered from memory before the
/// router (issue 15's hot path). That answer must be the router's, header for
/// header in the same order (`Date` aside), for GET and HEAD; a `Range` or
/// `If-None-Match` on it still gets its 206 or 304; and `/metrics` counts it.
#[test]
fn a_read_served_from_memory_answers_exactly_as_one_from_disk() {
    let warm = TigServer::start();
    let cold = TigServer::start_with(None, &["--cache-size", "0"], &[]);
    let data = pseudo_random(15, 1000);
    let path = put_content(&warm, &data);
    put_content(&cold, &data);
    let addr = warm.addr();
    let shape = |r: &RawResponse| {
        let headers: Vec<(String, String)> = r
            .headers
            .iter()
            .filter(|(k, _)| k != "date")
            .cloned()
            .collect();
        (r.status, headers, r.body.clone())
    };
    let request = |method: &str, extra: &str| {
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n")
    };
    // The first GET reads the file and caches it; the later ones are hot.
    let first = warm.raw(request("GET", "").as_bytes());
    assert_eq!(
        (first.status, first.body.as_slice()),
        (200, data.as_slice())
    );
    for method in ["GET", "HEAD"] {
        let req = request(method, "");
        let from_disk = cold.raw(req.as_bytes());
        let hot = warm.raw(req.as_bytes());
        assert_eq!(shape(&hot), shape(&from_disk), "{method}");
    }
    assert_eq!(
        shape(&warm.raw(request("GET", "").as_bytes())),
        shape(&first)
    );

    let etag = format!("\"{}\"", sha256_hex(&data));
    let r = warm.raw(request("GET", &format!("If-None-Match: {etag}\r\n")).as_bytes());
    assert_eq!((r.status, r.body.len()), (304, 0));
    let r = warm.raw(request("GET", "Range: bytes=10-19\r\n").as_bytes());
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &data[10..20]);
    assert_eq!(r.header("content-range"), Some("bytes 10-19/1000"));

    let series = "tig_http_requests_total{method=\"GET\",status=\"200\"}";
    let before = sample(&warm, series);
    for _ in 0..5 {
        let r = warm.raw(request("GET", "").as_bytes());
        assert_eq!(r.body, data);
    }
    assert_eq!(sample(&warm, series) - before, 5.0);
}
