//! Smoke test: the server starts, prints its readiness line, and stores a body.

mod common;

use common::*;

#[test]
fn starts_and_stores_a_body() {
    let server = TigServer::start();
    assert!(server.url().starts_with("http://127.0.0.1:"));
    let reply = http()
        .put(format!("{}/", server.url()))
        .body("test\n")
        .send()
        .expect("PUT");
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.text().expect("body"), obj_path(b"test\n"));
}
