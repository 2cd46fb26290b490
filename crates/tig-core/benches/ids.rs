//! Object ids from text, per call: an object path (every request names one) and
//! a burst list of 1,000 members (`POST /?burst=1`, `tig get` of a chunked file).
//! No I/O, so a regression shows here without a load generator.
//!
//!     cargo bench -p tig-core --bench ids
#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tig_core::{ObjectId, parse_burst};

fn ids(c: &mut Criterion) {
    let id = ObjectId::digest(b"tig");
    let path = id.path();
    c.bench_function("ObjectId::from_path", |b| {
        b.iter(|| ObjectId::from_path(black_box(&path)).unwrap())
    });
    c.bench_function("ObjectId::to_hex", |b| b.iter(|| black_box(id).to_hex()));

    let list: String = (0..1000u32)
        .map(|i| format!("{}\n", ObjectId::digest(&i.to_le_bytes()).path()))
        .collect();
    let mut group = c.benchmark_group("parse_burst");
    group.throughput(Throughput::Elements(1000));
    group.bench_function("1000 members", |b| {
        b.iter(|| {
            let members = parse_burst(black_box(list.as_bytes())).unwrap();
            assert_eq!(members.len(), 1000);
            members
        })
    });
    group.finish();
}

criterion_group!(benches, ids);
criterion_main!(benches);
