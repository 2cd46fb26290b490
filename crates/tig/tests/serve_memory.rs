//! Streaming: a 100 MiB upload (and download) does not raise the server's peak
//! resident memory (`VmHWM`) by more than a few MiB.

mod common;

use std::io::Read;

use common::*;
use reqwest::blocking::Body;
use sha2::{Digest, Sha256};

/// Deterministic pseudo-random bytes produced on the fly (never all in memory).
struct Gen {
    state: u64,
    remaining: u64,
}

impl Gen {
    fn new(seed: u64, len: u64) -> Self {
        Gen {
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            remaining: len,
        }
    }
}

impl Read for Gen {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // Whole 8-byte words only (unless at the very end), so the stream is the
        // same whatever buffer sizes the reader uses.
        let mut n = (buf.len().min(64 * 1024) as u64).min(self.remaining) as usize;
        if n >= 8 {
            n -= n % 8;
        }
        for chunk in buf[..n].chunks_mut(8) {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            let bytes = self.state.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

fn hash_of(mut r: impl Read) -> (String, u64) {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0;
    loop {
        let n = r.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        total += n as u64;
        h.update(&buf[..n]);
    }
    (hex::encode(h.finalize()), total)
}

const MIB: u64 = 1024 * 1024;

#[test]
fn hundred_mib_streamed_upload_and_download_keep_peak_rss_flat() {
    let s = TigServer::start_with(None, &["--max-size", "256MiB"], &[]);
    let c = http();
    // Warm-up: let the runtime, buffers and thread pool reach their steady size.
    for i in 0..3u64 {
        let r = c
            .put(format!("{}/", s.url))
            .body(Body::new(Gen::new(100 + i, 8 * MIB)))
            .send()
            .expect("warm-up put");
        assert_eq!(r.status(), 200);
        let path = r.text().expect("t");
        let r = c
            .get(format!("{}{path}", s.url))
            .send()
            .expect("warm-up get");
        assert_eq!(hash_of(r).1, 8 * MIB);
    }
    let before = s.peak_rss_kib();

    let size = 100 * MIB;
    let (want, _) = hash_of(Gen::new(1, size));
    // Chunked (no Content-Length).
    let r = c
        .put(format!("{}/", s.url))
        .body(Body::new(Gen::new(1, size)))
        .send()
        .expect("put");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().expect("t"), format!("/{want}.tig"));
    // With Content-Length.
    let (want2, _) = hash_of(Gen::new(2, size));
    let r = c
        .put(format!("{}/", s.url))
        .body(Body::sized(Gen::new(2, size), size))
        .send()
        .expect("put");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().expect("t"), format!("/{want2}.tig"));
    // Download, streamed, and check every byte by hash.
    let r = c.get(s.obj_url(&want)).send().expect("get");
    assert_eq!(r.status(), 200);
    assert_eq!(hash_of(r), (want.clone(), size));
    // A burst of both: 200 MiB streamed.
    let list = format!("/{want}.tig\n/{want2}.tig\n");
    let lp = c
        .put(format!("{}/", s.url))
        .body(list)
        .send()
        .expect("put")
        .text()
        .expect("t");
    let r = c
        .get(format!("{}{lp}?burst=1", s.url))
        .send()
        .expect("burst");
    assert_eq!(r.status(), 200);
    assert_eq!(hash_of(r).1, 2 * size);

    let after = s.peak_rss_kib();
    eprintln!("server VmHWM: {before} KiB before, {after} KiB after 400 MiB of traffic");
    assert!(
        after <= before + 16 * 1024,
        "peak RSS grew by {} KiB (from {before} KiB to {after} KiB)",
        after - before
    );
    // The object on disk is the whole body.
    assert_eq!(
        std::fs::metadata(s.obj_file(&want)).expect("file").len(),
        size
    );
}
