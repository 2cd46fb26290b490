//! Operating `tig serve`: `/healthz`, `/readyz` (503 while offloading before
//! exit), `/metrics` counters that move by exactly the requests made,
//! `--metrics-listen`, and the access log (`--log-format json`, never the key).

mod common;

use std::net::TcpListener;
use std::time::Duration;

use common::*;

const KEY: &str = "ops-test-key-7f3a";

fn scrape(url: &str) -> String {
    let r = http().get(format!("{url}/metrics")).send().expect("scrape");
    assert_eq!(r.status(), 200);
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    r.text().expect("metrics text")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[test]
fn probes_answer_without_the_key_and_are_not_objects() {
    let s = TigServer::start_with(None, &[], &[("APIKEY", KEY)]);
    let c = http();
    let r = c.get(format!("{}/healthz", s.url)).send().expect("healthz");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().expect("t"), "ok\n");
    let r = c.get(format!("{}/readyz", s.url)).send().expect("readyz");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().expect("t"), "ready\n");
    assert_eq!(
        c.head(format!("{}/healthz", s.url))
            .send()
            .expect("head")
            .status(),
        200
    );
    // No key needed for a scrape either, and nothing was stored by any of it.
    let m = scrape(&s.url);
    assert_eq!(sample(&m, "tig_objects_stored"), 0.0);
    let r = c
        .get(format!("{}/?apikey={KEY}", s.url))
        .send()
        .expect("list");
    assert_eq!(r.text().expect("t"), "");
    assert!(tig_files(&s.root).is_empty());
    // Probes and scrapes are not counted as requests: only the listing is.
    let m = scrape(&s.url);
    assert_eq!(
        sample(&m, "tig_http_requests_total{method=\"GET\",status=\"200\"}"),
        1.0,
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "tig_http_requests_total{method=\"HEAD\",status=\"200\"}"
        ),
        0.0
    );
}

#[test]
fn metrics_move_by_exactly_the_requests_made() {
    let s = TigServer::start_with(None, &[], &[("APIKEY", KEY)]);
    let c = http();
    let before = scrape(&s.url);
    let bodies: [&[u8]; 3] = [b"first object", b"second, longer object", &[7u8; 70_000]];
    let mut sent_out = 0usize;
    let mut paths = Vec::new();
    for b in bodies {
        let r = c
            .put(format!("{}/?apikey={KEY}", s.url))
            .body(b.to_vec())
            .send()
            .expect("put");
        assert_eq!(r.status(), 200);
        let path = r.text().expect("path");
        sent_out += path.len();
        paths.push(path);
    }
    for p in &paths[1..] {
        let r = c.get(format!("{}{p}", s.url)).send().expect("get");
        assert_eq!(r.status(), 200);
        sent_out += r.bytes().expect("body").len();
    }
    let r = c
        .get(s.obj_url(&sha256_hex(b"never stored")))
        .send()
        .expect("get");
    assert_eq!(r.status(), 404);
    sent_out += r.bytes().expect("body").len();
    let r = c
        .get(format!("{}/?apikey=wrong", s.url))
        .send()
        .expect("list");
    assert_eq!(r.status(), 401);
    sent_out += r.bytes().expect("body").len();
    let r = c
        .head(format!("{}{}", s.url, paths[0]))
        .send()
        .expect("head");
    assert_eq!(r.status(), 200);
    let after = scrape(&s.url);

    let delta = |series: &str| sample(&after, series) - sample(&before, series);
    let req = |m: &str, st: u16| {
        delta(&format!(
            "tig_http_requests_total{{method=\"{m}\",status=\"{st}\"}}"
        ))
    };
    assert_eq!(req("PUT", 200), 3.0, "{after}");
    assert_eq!(req("GET", 200), 2.0);
    assert_eq!(req("GET", 404), 1.0);
    assert_eq!(req("GET", 401), 1.0);
    assert_eq!(req("HEAD", 200), 1.0);
    assert_eq!(delta("tig_auth_failures_total"), 1.0);
    let sent_in: usize = bodies.iter().map(|b| b.len()).sum();
    assert_eq!(
        delta("tig_http_body_bytes_total{direction=\"in\"}"),
        sent_in as f64
    );
    assert_eq!(
        delta("tig_http_body_bytes_total{direction=\"out\"}"),
        sent_out as f64
    );
    assert_eq!(
        delta("tig_http_request_duration_seconds_count{method=\"PUT\"}"),
        3.0
    );
    assert_eq!(
        delta("tig_http_request_duration_seconds_count{method=\"GET\"}"),
        4.0
    );
    assert_eq!(sample(&after, "tig_objects_stored"), 3.0);
    assert_eq!(sample(&after, "tig_bytes_stored"), sent_in as f64);
    for name in [
        "tig_cluster_forwards_total",
        "tig_retention_deleted_total",
        "tig_offloaded_objects_total",
        "tig_http_request_duration_seconds_bucket",
    ] {
        assert!(after.contains(name), "{name} missing from\n{after}");
    }
}

#[test]
fn metrics_listen_moves_metrics_to_their_own_port() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let s = TigServer::start_with(None, &["--metrics-listen", &addr], &[]);
    let c = http();
    let r = c.get(format!("{}/metrics", s.url)).send().expect("main");
    assert_eq!(r.status(), 417);
    let r = c.put(format!("{}/", s.url)).body("x").send().expect("put");
    assert_eq!(r.status(), 200);
    let m = scrape(&format!("http://{addr}"));
    assert_eq!(
        sample(&m, "tig_http_requests_total{method=\"PUT\",status=\"200\"}"),
        1.0
    );
    // Probes stay on the main port.
    assert_eq!(
        c.get(format!("{}/healthz", s.url))
            .send()
            .expect("h")
            .status(),
        200
    );
}

#[test]
fn no_metrics_turns_counting_and_the_endpoint_off() {
    let s = TigServer::start_with(None, &["--no-metrics"], &[]);
    let r = http().get(format!("{}/metrics", s.url)).send().expect("m");
    assert_eq!(r.status(), 404);
    assert_eq!(
        http()
            .get(format!("{}/healthz", s.url))
            .send()
            .expect("h")
            .status(),
        200
    );
}

#[test]
fn access_log_is_one_json_line_per_request_without_the_key() {
    let s = TigServer::start_with(None, &["--log-format", "json"], &[("APIKEY", KEY)]);
    let c = http();
    let r = c
        .put(format!("{}/?apikey={KEY}&format=*", s.url))
        .body("logged body")
        .send()
        .expect("put");
    assert_eq!(r.status(), 200);
    let path = r.text().expect("path");
    let r = c
        .get(format!("{}{path}?apikey={KEY}", s.url))
        .send()
        .expect("get");
    assert_eq!(r.text().expect("t"), "logged body");
    let access = |text: &str| -> Vec<serde_json::Value> {
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["target"] == "tig::access")
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            access(&s.stderr()).len() >= 2
        }),
        "no access lines in:\n{}",
        s.stderr()
    );
    let err = s.stderr();
    assert!(!err.contains(KEY), "the key leaked into the log:\n{err}");
    let lines = access(&err);
    assert_eq!(lines.len(), 2, "{err}");
    let (put, get) = (&lines[0], &lines[1]);
    assert_eq!(put["method"], "PUT");
    assert_eq!(put["path"], "/");
    assert_eq!(put["status"], 200);
    assert_eq!(put["bytes"], path.len() as u64);
    assert_eq!(get["method"], "GET");
    assert_eq!(get["path"], path.as_str());
    assert_eq!(get["bytes"], 11);
    assert_eq!(get["complete"], true);
    for l in &lines {
        assert!(l["duration_ms"].as_f64().is_some_and(|d| d >= 0.0), "{l}");
        assert!(
            l["peer"]
                .as_str()
                .is_some_and(|p| p.starts_with("127.0.0.1:")),
            "{l}"
        );
        assert_eq!(l["level"], "INFO");
    }
}

#[test]
fn readyz_is_503_while_offloading_before_exit() {
    // A peer that accepts connections and never answers: the offload PUT waits,
    // so the offload lasts exactly until the test lets it go.
    let peer = TcpListener::bind("127.0.0.1:0").expect("bind");
    let peer_url = format!("http://{}", peer.local_addr().expect("addr"));
    let mut s = TigServer::start_with(None, &["--peers", &peer_url], &[]);
    let c = http();
    let path = c
        .put(format!("{}/", s.url))
        .body("kept during offload")
        .send()
        .expect("put")
        .text()
        .expect("path");
    assert_eq!(
        c.get(format!("{}/readyz", s.url))
            .send()
            .expect("r")
            .status(),
        200
    );
    s.send_signal("TERM");
    let mut reason = String::new();
    assert!(
        wait_until(Duration::from_secs(20), Duration::from_millis(20), || {
            match c.get(format!("{}/readyz", s.url)).send() {
                Ok(r) if r.status() == 503 => {
                    reason = r.text().unwrap_or_default();
                    true
                }
                _ => false,
            }
        }),
        "readyz never went 503:\n{}",
        s.stderr()
    );
    assert_eq!(reason, "offloading objects to peers before exit\n");
    // Still serving meanwhile; liveness holds.
    let r = c.get(format!("{}{path}", s.url)).send().expect("get");
    assert_eq!(r.text().expect("t"), "kept during offload");
    assert_eq!(
        c.get(format!("{}/healthz", s.url))
            .send()
            .expect("h")
            .status(),
        200
    );
    // Let the offload fail (closing the listener resets the waiting connection).
    drop(peer);
    let status = s.wait_exit(Duration::from_secs(60)).expect("exits");
    assert_eq!(status.code(), Some(0), "{}", s.stderr());
}
