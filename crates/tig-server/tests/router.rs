//! In-process router tests (tower `oneshot`): one test per row of the protocol
//! table in SPEC.md §1, plus the bad-input cases.

// Test helpers may panic: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use tig_core::ObjectId;
use tig_server::{ApiKey, AppState, Config, router};
use tig_store::MemStore;
use tower::ServiceExt;

const TEST_NL: &str = "f2ca1bb6c7e907d06dafe4687e579fce76b37e4e93b7605022da52e6ccc26fd2";
const KEY_NL: &str = "a7998f247bd965694ff227fa325c81169a07471a8b6808d3e002a486c4e65975";

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }
}

fn app_with(config: Config) -> Router {
    router(AppState::new(MemStore::new(), config))
}

fn app() -> Router {
    app_with(Config::default())
}

fn keyed() -> Router {
    app_with(Config {
        api_key: ApiKey::new("abc"),
        auth_fail_delay: Duration::from_millis(1),
        ..Config::default()
    })
}

async fn call(app: &Router, method: Method, uri: &str, body: impl Into<Body>) -> Reply {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .body(body.into())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

fn assert_error(r: &Reply, status: u16) {
    assert_eq!(r.status.as_u16(), status, "body: {}", r.text());
    let text = r.text();
    assert!(
        text.ends_with('\n') && text.matches('\n').count() == 1,
        "one line: {text:?}"
    );
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
}

#[tokio::test]
async fn put_and_post_root_store_by_hash() {
    let app = app();
    for m in [Method::PUT, Method::POST] {
        let r = call(&app, m, "/", "test\n").await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.text(), format!("/{TEST_NL}.tig"));
    }
    let r = call(&app, Method::GET, &format!("/{TEST_NL}.tig"), "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, b"test\n");
    assert_eq!(r.headers["content-type"], "application/octet-stream");
    assert_eq!(r.headers["content-length"], "5");
}

#[tokio::test]
async fn put_name_is_an_upload_by_hash() {
    // What `curl -T /tmp/test URL/` sends.
    let r = call(&app(), Method::PUT, "/test", "test\n").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text(), format!("/{TEST_NL}.tig"));
}

#[tokio::test]
async fn kv_returns_the_hash_and_stores_nothing() {
    let app = keyed();
    let r = call(&app, Method::POST, "/kv", "key\n").await;
    assert_eq!(r.status, StatusCode::OK, "no key needed");
    assert_eq!(r.text(), format!("/{KEY_NL}.tig"));
    let r = call(&app, Method::GET, &format!("/{KEY_NL}.tig"), "").await;
    assert_error(&r, 404);
}

#[tokio::test]
async fn format_replaces_the_first_star() {
    let r = call(
        &app(),
        Method::PUT,
        "/?format=http://127.0.0.1:7777*",
        "test\n",
    )
    .await;
    assert_eq!(r.text(), format!("http://127.0.0.1:7777/{TEST_NL}.tig"));
    let r = call(&app(), Method::PUT, "/?format=%3C*%3E", "test\n").await;
    assert_eq!(r.text(), format!("</{TEST_NL}.tig>"));
}

#[tokio::test]
async fn seed_key_value_example() {
    let app = app();
    // The seed stores "key\n" by its hash, then writes a value to that path:
    // content is immutable, so that write is refused.
    let r = call(&app, Method::PUT, "/", "key\n").await;
    assert_eq!(r.text(), format!("/{KEY_NL}.tig"));
    let r = call(&app, Method::PUT, &format!("/{KEY_NL}.tig"), "abc\n").await;
    assert_error(&r, 409);
    let r = call(&app, Method::GET, &format!("/{KEY_NL}.tig"), "").await;
    assert_eq!(r.body, b"key\n");
    // A slot named by the hash of the hash works as a key-value pair.
    let slot = ObjectId::digest(KEY_NL.as_bytes()).path();
    let r = call(
        &app,
        Method::PUT,
        &format!("{slot}?format=http://h*"),
        "abc\n",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text(), format!("http://h{slot}"));
    assert_eq!(call(&app, Method::GET, &slot, "").await.body, b"abc\n");
    call(&app, Method::POST, &slot, "def\n").await;
    assert_eq!(call(&app, Method::GET, &slot, "").await.body, b"def\n");
}

#[tokio::test]
async fn setifnot_creates_once_and_says_so() {
    let app = app();
    let slot = ObjectId::digest(b"lock").path();
    let r = call(&app, Method::PUT, &format!("{slot}?setifnot=1"), "123\n").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text(), slot);
    assert_eq!(r.headers["tig-created"], "true");
    let r = call(&app, Method::PUT, &format!("{slot}?setifnot=1"), "456\n").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text(), "");
    assert_eq!(r.headers["tig-created"], "false");
    assert_eq!(call(&app, Method::GET, &slot, "").await.body, b"123\n");
}

#[tokio::test]
async fn append_appends_and_refuses_content() {
    let app = app();
    let slot = ObjectId::digest(b"log").path();
    for line in ["one\n", "two\n"] {
        let r = call(&app, Method::PUT, &format!("{slot}?append=1"), line).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.text(), slot);
    }
    assert_eq!(call(&app, Method::GET, &slot, "").await.body, b"one\ntwo\n");
    call(&app, Method::PUT, "/", "test\n").await;
    let r = call(&app, Method::PUT, &format!("/{TEST_NL}.tig?append=1"), "x").await;
    assert_error(&r, 409);
}

#[tokio::test]
async fn content_upload_onto_a_slot_is_a_conflict() {
    let app = app();
    call(&app, Method::PUT, &format!("/{TEST_NL}.tig"), "slot value").await;
    let r = call(&app, Method::PUT, "/", "test\n").await;
    assert_error(&r, 409);
    assert_eq!(
        call(&app, Method::GET, &format!("/{TEST_NL}.tig"), "")
            .await
            .body,
        b"slot value"
    );
}

#[tokio::test]
async fn burst_concatenates_members() {
    let app = app();
    let mut list = String::new();
    for part in ["abc", "def", "ghi"] {
        let r = call(&app, Method::PUT, "/?format=http://127.0.0.1:7777*", part).await;
        list.push_str(&r.text());
        list.push_str("\r\n\n");
    }
    let list_path = call(&app, Method::PUT, "/", list).await.text();
    let r = call(&app, Method::GET, &format!("{list_path}?burst=1"), "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, b"abcdefghi");
}

#[tokio::test]
async fn burst_refuses_bad_lines_and_missing_members() {
    let app = app();
    let list = call(&app, Method::PUT, "/", "/apikey\n").await.text();
    let r = call(&app, Method::GET, &format!("{list}?burst=1"), "").await;
    assert_error(&r, 400);
    assert!(r.text().contains("/apikey"));
    let missing = ObjectId::digest(b"nope").path();
    let list = call(&app, Method::PUT, "/", format!("{missing}\n"))
        .await
        .text();
    let r = call(&app, Method::GET, &format!("{list}?burst=1"), "").await;
    assert_error(&r, 404);
    assert!(r.text().contains(&missing));
    let r = call(&app, Method::GET, &format!("{missing}?burst=1"), "").await;
    assert_error(&r, 404);
}

#[tokio::test]
async fn content_type_parameter() {
    let app = app();
    let p = call(&app, Method::PUT, "/", "<p>hi</p>").await.text();
    let r = call(
        &app,
        Method::GET,
        &format!("{p}?Content-Type=text/html"),
        "",
    )
    .await;
    assert_eq!(r.headers["content-type"], "text/html");
    assert_eq!(r.body, b"<p>hi</p>");
}

#[tokio::test]
async fn head_reports_existence_and_length() {
    let app = app();
    let p = call(&app, Method::PUT, "/", "test\n").await.text();
    let r = call(&app, Method::HEAD, &p, "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["content-length"], "5");
    assert!(r.body.is_empty());
    let r = call(&app, Method::HEAD, &ObjectId::digest(b"x").path(), "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn delete_slots_only() {
    let app = app();
    let slot = ObjectId::digest(b"s").path();
    call(&app, Method::PUT, &slot, "v").await;
    let r = call(&app, Method::DELETE, &slot, "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text(), slot);
    assert_error(&call(&app, Method::GET, &slot, "").await, 404);
    assert_error(&call(&app, Method::DELETE, &slot, "").await, 404);
    let p = call(&app, Method::PUT, "/", "test\n").await.text();
    assert_error(&call(&app, Method::DELETE, &p, "").await, 409);
}

#[tokio::test(start_paused = true)]
async fn listing_needs_the_key_and_is_newest_first() {
    let app = keyed();
    let a = call(&app, Method::PUT, "/?apikey=abc", "a").await.text();
    tokio::time::advance(Duration::from_secs(1)).await;
    let b = call(&app, Method::PUT, "/?apikey=abc", "b").await.text();
    let r = call(&app, Method::GET, "/?apikey=abc", "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text(), format!("{b}\n{a}\n"));
    let r = call(&app, Method::GET, "/?apikey=abc&format=http://h*", "").await;
    assert_eq!(r.text(), format!("http://h{b}\nhttp://h{a}\n"));
    assert_error(&call(&app, Method::GET, "/?apikey=wrong", "").await, 401);
    assert_error(&call(&app, Method::GET, "/", "").await, 401);
}

#[tokio::test]
async fn listing_without_a_configured_key_is_empty() {
    let app = app();
    call(&app, Method::PUT, "/", "a").await;
    let r = call(&app, Method::GET, "/?apikey=anything", "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text(), "");
}

#[tokio::test]
async fn writes_need_the_key_when_configured() {
    let app = keyed();
    let slot = ObjectId::digest(b"s").path();
    assert_error(&call(&app, Method::PUT, "/", "x").await, 401);
    assert_error(&call(&app, Method::POST, "/?apikey=nope", "x").await, 401);
    assert_error(&call(&app, Method::PUT, &slot, "x").await, 401);
    assert_error(&call(&app, Method::DELETE, &slot, "").await, 401);
    assert_eq!(
        call(&app, Method::PUT, "/?apikey=abc", "x").await.status,
        StatusCode::OK
    );
    // Reads need no key.
    let p = ObjectId::digest(b"x").path();
    assert_eq!(call(&app, Method::GET, &p, "").await.status, StatusCode::OK);
    // Without a configured key, an apikey parameter is ignored.
    assert_eq!(
        call(&self::app(), Method::PUT, "/?apikey=zzz", "x")
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn repeated_failures_are_throttled() {
    let app = app_with(Config {
        api_key: ApiKey::new("abc"),
        auth_fail_delay: Duration::from_millis(1),
        auth_max_failures: 3,
        ..Config::default()
    });
    for _ in 0..3 {
        assert_error(&call(&app, Method::GET, "/?apikey=bad", "").await, 401);
    }
    // Further failures get 429; the right key is still served (issue 10.2).
    assert_error(&call(&app, Method::GET, "/?apikey=bad", "").await, 429);
    assert_error(&call(&app, Method::GET, "/", "").await, 429);
    assert_eq!(
        call(&app, Method::GET, "/?apikey=abc", "").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn bad_paths() {
    let app = app();
    assert_error(&call(&app, Method::GET, "/../etc/passwd", "").await, 400);
    assert_error(&call(&app, Method::GET, "/a/./b", "").await, 400);
    assert_error(&call(&app, Method::PUT, "/..", "x").await, 400);
    assert_error(
        &call(&app, Method::GET, "/randomfileunauthorized", "").await,
        417,
    );
    assert_error(&call(&app, Method::GET, "/apikey", "").await, 417);
    assert_error(&call(&app, Method::GET, "/a/b", "").await, 417);
    assert_error(&call(&app, Method::PUT, "/a/b", "x").await, 417);
    let upper = format!("/{}.tig", TEST_NL.to_uppercase());
    assert_error(&call(&app, Method::GET, &upper, "").await, 417);
    assert_error(&call(&app, Method::GET, "/?bogus=1", "").await, 400);
    let r = call(&app, Method::PUT, "/?x=1", "x").await;
    assert_eq!(r.text(), "unknown query parameter: x\n");
}

#[tokio::test]
async fn oversize_bodies_are_refused_and_nothing_is_stored() {
    let app = app_with(Config {
        max_size: 4,
        api_key: ApiKey::new("abc"),
        ..Config::default()
    });
    assert_error(&call(&app, Method::PUT, "/?apikey=abc", "12345").await, 413);
    // Without Content-Length: a streamed body.
    let body = Body::from_stream(futures_util::stream::iter([
        Ok::<_, std::io::Error>(bytes::Bytes::from("123")),
        Ok(bytes::Bytes::from("45")),
    ]));
    assert_error(&call(&app, Method::PUT, "/?apikey=abc", body).await, 413);
    let slot = ObjectId::digest(b"s").path();
    assert_error(
        &call(
            &app,
            Method::PUT,
            &format!("{slot}?apikey=abc&append=1"),
            "12345",
        )
        .await,
        413,
    );
    assert_error(&call(&app, Method::POST, "/kv", "12345").await, 413);
    assert_eq!(call(&app, Method::GET, "/?apikey=abc", "").await.text(), "");
    assert_eq!(
        call(&app, Method::PUT, "/?apikey=abc", "1234").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn empty_body_is_the_empty_object() {
    let app = app();
    let r = call(&app, Method::PUT, "/", "").await;
    assert_eq!(r.text(), ObjectId::digest(b"").path());
    let r = call(&app, Method::GET, &ObjectId::digest(b"").path(), "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.is_empty());
}

#[tokio::test]
async fn other_methods_are_refused() {
    assert_error(&call(&app(), Method::PATCH, "/", "").await, 405);
}
