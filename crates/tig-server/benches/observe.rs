//! What counting costs per request, with no network in the way (issue 9).
//!
//! The real router over a `MemStore` holding one 1 KiB content object; `GET` of it
//! through [`tig_server::access::observe`] (the wrapper every connection uses) with
//! metrics on and with metrics off (`--no-metrics`; no tracing subscriber, so the
//! access log is off in both), on one current-thread runtime, interleaved rounds.
//! Prints nanoseconds per request for each and their difference; compare that
//! difference with the server's whole CPU cost per request under `wrk`
//! (`bench/metrics-cost.sh`, "server CPU µs/request").
//!
//!     cargo bench -p tig-server --bench observe
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use tig_server::{AppState, Config, Metrics, access, router};
use tig_store::MemStore;
use tower::ServiceExt;

const PER_ROUND: u32 = 100_000;
const ROUNDS: usize = 9;

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let app = router(AppState::new(MemStore::new(), Config::default()));
    let put = Request::builder()
        .method(Method::PUT)
        .uri("/")
        .body(Body::from(vec![7u8; 1024]))
        .unwrap();
    let resp = app.clone().oneshot(put).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let path = String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let metrics = Arc::new(Metrics::new());

    let round = |m: Option<Arc<Metrics>>| {
        let (app, path) = (app.clone(), path.clone());
        async move {
            let start = Instant::now();
            for _ in 0..PER_ROUND {
                let req = Request::get(path.as_str()).body(Body::empty()).unwrap();
                let resp = access::observe(app.clone(), req, peer, m.clone())
                    .await
                    .unwrap();
                assert_eq!(resp.status(), StatusCode::OK);
                black_box(resp.into_body().collect().await.unwrap().to_bytes());
            }
            start.elapsed().as_nanos() as f64 / f64::from(PER_ROUND)
        }
    };
    round(Some(metrics.clone())).await; // warm-up
    round(None).await;
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        on.push(round(Some(metrics.clone())).await);
        off.push(round(None).await);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (m_on, m_off) = (median(&mut on), median(&mut off));
    println!("GET 1 KiB through access::observe, {ROUNDS} rounds of {PER_ROUND}, medians:");
    println!("  metrics on:  {m_on:.0} ns/request   (rounds: {on:.0?})");
    println!("  metrics off: {m_off:.0} ns/request   (rounds: {off:.0?})");
    println!("  counting costs {:.0} ns/request", m_on - m_off);
}
