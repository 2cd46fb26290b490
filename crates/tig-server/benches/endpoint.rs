//! The request line to an endpoint ([`tig_server::endpoint::parse`]), which runs
//! for every request before any I/O: the common paths (a GET of an object, a PUT
//! to `/`, a burst), one with percent escapes, and one refused.
//!
//!     cargo bench -p tig-server --bench endpoint
#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use axum::http::Method;
use criterion::{Criterion, criterion_group, criterion_main};
use tig_core::ObjectId;
use tig_server::endpoint::{Endpoint, parse};

fn endpoint(c: &mut Criterion) {
    let id = ObjectId::digest(b"tig");
    let path = id.path();
    let mut group = c.benchmark_group("endpoint::parse");
    let cases: [(&str, Method, &str, Option<&str>, bool); 5] = [
        ("GET /<h>.tig", Method::GET, &path, None, true),
        ("PUT /", Method::PUT, "/", None, true),
        (
            "GET /<h>.tig?burst=1",
            Method::GET,
            &path,
            Some("burst=1"),
            true,
        ),
        ("PUT /a%20name", Method::PUT, "/a%20name", None, true),
        (
            "PUT /%2e%2e/apikey (refused)",
            Method::PUT,
            "/%2e%2e/apikey",
            None,
            false,
        ),
    ];
    for (name, method, p, query, ok) in cases {
        group.bench_function(name, |b| {
            b.iter(|| {
                let r = parse(black_box(&method), black_box(p), black_box(query));
                assert_eq!(r.is_ok(), ok);
                r
            })
        });
    }
    group.finish();
    assert_eq!(
        parse(&Method::GET, &path, None).unwrap().0,
        Endpoint::Get(id)
    );
}

criterion_group!(benches, endpoint);
criterion_main!(benches);
