//! The filesystem store's own put and get, without HTTP: `put_content` of new
//! 1 KiB and 1 MiB objects (hashed, written, fsynced, renamed into place) and
//! `get` of stored ones, on tmpfs (`/dev/shm` where it exists) so the figures
//! are the store's work rather than a disk's.
//!
//!     cargo bench -p tig-store --bench fs_store
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use futures_util::TryStreamExt;
use tig_store::fs::FsOptions;
use tig_store::{FsStore, Store, body_from_bytes};

/// A body no earlier iteration stored: `size` bytes ending in a fresh counter.
fn fresh(counter: &AtomicU64, size: usize) -> Bytes {
    let mut b = vec![0x5a; size];
    let n = counter.fetch_add(1, Ordering::Relaxed).to_le_bytes();
    b[size - n.len()..].copy_from_slice(&n);
    Bytes::from(b)
}

fn fs_store(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .unwrap();
    let store = rt
        .block_on(FsStore::open(dir.path(), FsOptions::default()))
        .unwrap();
    let counter = AtomicU64::new(0);

    for (name, size) in [("1 KiB", 1usize << 10), ("1 MiB", 1 << 20)] {
        let mut group = c.benchmark_group(format!("FsStore {name}"));
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function("put_content (new object, fsync on)", |b| {
            // The body is made outside the timed part (a fresh 1 MiB buffer
            // alone costs page faults).
            b.to_async(&rt).iter_batched(
                || body_from_bytes(fresh(&counter, size)),
                |body| async { store.put_content(body, u64::MAX).await.unwrap() },
                BatchSize::SmallInput,
            )
        });
        let id = rt
            .block_on(store.put_content(body_from_bytes(fresh(&counter, size)), u64::MAX))
            .unwrap();
        group.bench_function("get (whole object)", |b| {
            b.to_async(&rt).iter(|| async {
                let obj = store.get(id, false).await.unwrap().unwrap();
                let bytes = obj
                    .body
                    .into_stream()
                    .try_fold(Vec::new(), |mut all, piece| async move {
                        all.extend_from_slice(&piece);
                        Ok(all)
                    })
                    .await
                    .unwrap();
                assert_eq!(bytes.len(), size);
                bytes
            })
        });
        group.finish();
    }
}

criterion_group!(benches, fs_store);
criterion_main!(benches);
