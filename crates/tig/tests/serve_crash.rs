//! SIGKILL in the middle of many uploads, then restart on the same root: every
//! `.tig` file hashes to its name (or is a slot we wrote, holding one whole value),
//! nothing half-written is listed or served, and everything acknowledged is there.

mod common;

use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::*;
use reqwest::blocking::Body;

/// A body produced slowly, in 64 KiB pieces, so the kill lands mid-upload.
struct SlowBody {
    data: Arc<Vec<u8>>,
    pos: usize,
    /// Set while this upload is mid-way (one flag per slow uploader).
    mid: Arc<[AtomicBool; 2]>,
    which: usize,
}

impl Read for SlowBody {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.data.len() {
            return Ok(0);
        }
        // "Mid-upload": past the first MiB and more than 4 MiB still to send.
        let mid = self.pos >= 1024 * 1024 && self.pos + 4 * 1024 * 1024 < self.data.len();
        self.mid[self.which].store(mid, Ordering::SeqCst);
        thread::sleep(Duration::from_millis(3));
        let n = buf.len().min(64 * 1024).min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[derive(Default)]
struct SlotLog {
    /// Every value ever sent to the slot, in order.
    sent: Vec<Vec<u8>>,
    /// Index in `sent` of the last acknowledged write.
    acked: Option<usize>,
}

#[test]
fn sigkill_mid_uploads_leaves_only_whole_objects() {
    let root = tempfile::tempdir().expect("tmp");
    let envs = [("APIKEY", "k")];
    let mut server = TigServer::start_with(Some(root.path()), &[], &envs);
    let url = server.url.clone();

    let acked: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let slots: Arc<Mutex<HashMap<String, SlotLog>>> = Arc::default();
    let large_mid: Arc<[AtomicBool; 2]> = Arc::default();
    let acks = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();

    // Content uploaders: small, medium and slow large bodies, sized and chunked.
    for t in 0..6u64 {
        let (url, acked, acks, stop, large_mid) = (
            url.clone(),
            Arc::clone(&acked),
            Arc::clone(&acks),
            Arc::clone(&stop),
            Arc::clone(&large_mid),
        );
        handles.push(thread::spawn(move || {
            let c = http();
            for j in 0u64.. {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let seed = t * 1_000_000 + j;
                let size = match (t, j % 4) {
                    (0 | 1, _) => 24 * 1024 * 1024 + j as usize, // slow, large
                    (_, 0) => 1024 * 1024 + j as usize,
                    _ => 1 + (seed as usize * 7919) % (64 * 1024),
                };
                let data = Arc::new(pseudo_random(seed, size));
                let body = if t <= 1 {
                    let slow = SlowBody {
                        data: Arc::clone(&data),
                        pos: 0,
                        mid: Arc::clone(&large_mid),
                        which: t as usize,
                    };
                    if t == 0 {
                        Body::sized(slow, size as u64)
                    } else {
                        Body::new(slow)
                    }
                } else if j % 2 == 0 {
                    Body::from(data.to_vec())
                } else {
                    Body::new(std::io::Cursor::new(data.to_vec()))
                };
                let Ok(r) = c.put(format!("{url}/?apikey=k")).body(body).send() else {
                    break;
                };
                if r.status() != 200 {
                    break;
                }
                let Ok(text) = r.text() else { break };
                assert_eq!(text, obj_path(&data), "acknowledged path");
                acked.lock().expect("lock").push(data.to_vec());
                acks.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    // Slot writers: one slot each, values of varying length.
    for t in 0..2u64 {
        let (url, slots, acks, stop) = (
            url.clone(),
            Arc::clone(&slots),
            Arc::clone(&acks),
            Arc::clone(&stop),
        );
        handles.push(thread::spawn(move || {
            let c = http();
            let slot = sha256_hex(format!("crash slot {t}").as_bytes());
            for j in 0u64.. {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let value = pseudo_random(t * 7 + j, 100 * 1024 + (j as usize * 4099) % 300_000);
                let idx = {
                    let mut s = slots.lock().expect("lock");
                    let log = s.entry(slot.clone()).or_default();
                    log.sent.push(value.clone());
                    log.sent.len() - 1
                };
                let Ok(r) = c
                    .put(format!("{url}/{slot}.tig?apikey=k"))
                    .body(value)
                    .send()
                else {
                    break;
                };
                if r.status() != 200 {
                    break;
                }
                slots
                    .lock()
                    .expect("lock")
                    .get_mut(&slot)
                    .expect("slot")
                    .acked = Some(idx);
                acks.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }

    let ready = wait_until(Duration::from_secs(120), Duration::from_millis(20), || {
        acks.load(Ordering::SeqCst) >= 40 && large_mid.iter().any(|f| f.load(Ordering::SeqCst))
    });
    assert!(ready, "uploads did not progress");
    server.kill();
    stop.store(true, Ordering::SeqCst);
    for h in handles {
        h.join().expect("uploader");
    }

    let server = TigServer::start_with(Some(root.path()), &[], &envs);
    let c = http();
    let slots = slots.lock().expect("lock");
    let acked = acked.lock().expect("lock");

    // 1. Every .tig file on disk is whole.
    for (name, path) in tig_files(root.path()) {
        let h = name.strip_suffix(".tig").expect("suffix");
        assert!(is_hash(h), "only <64 hex>.tig names: {name}");
        let data = std::fs::read(&path).expect("read");
        match slots.get(h) {
            Some(log) => {
                let from = log.acked.unwrap_or(0);
                assert!(
                    log.sent[from..].contains(&data),
                    "slot {h} holds a torn or stale value ({} bytes)",
                    data.len()
                );
            }
            None => assert_eq!(sha256_hex(&data), h, "{name} does not hash to its name"),
        }
    }

    // 2. The listing names only whole objects; other files are never served.
    let listing = c
        .get(format!("{}/?apikey=k", server.url))
        .send()
        .expect("list")
        .text()
        .expect("t");
    for line in listing.lines() {
        let h = line
            .strip_prefix('/')
            .and_then(|l| l.strip_suffix(".tig"))
            .unwrap_or_else(|| panic!("listing line {line:?}"));
        assert!(is_hash(h));
        assert!(root.path().join(format!("{h}.tig")).exists());
    }
    for entry in std::fs::read_dir(root.path()).expect("dir").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".tig") || name == "apikey" {
            continue;
        }
        assert!(!listing.contains(&name), "temp file {name} listed");
        let r = raw_get(&server.addr(), &format!("/{name}"));
        assert_ne!(r.status, 200, "temp file {name} served");
    }

    // 3. Everything acknowledged before the kill is served, whole.
    assert!(!acked.is_empty());
    for data in acked.iter() {
        let got = c
            .get(format!("{}{}", server.url, obj_path(data)))
            .send()
            .expect("get");
        assert_eq!(got.status(), 200);
        let got = got.bytes().expect("b");
        assert!(
            got.as_ref() == data.as_slice(),
            "acknowledged object differs"
        );
    }
    for (slot, log) in slots.iter() {
        if let Some(i) = log.acked {
            let got = c.get(server.obj_url(slot)).send().expect("get");
            assert_eq!(got.status(), 200);
            let got = got.bytes().expect("b");
            assert!(log.sent[i..].iter().any(|v| v.as_slice() == got.as_ref()));
        }
    }

    // 4. The restarted server takes the same uploads again.
    let r = c
        .put(format!("{}/?apikey=k", server.url))
        .body("after restart")
        .send()
        .expect("put");
    assert_eq!(r.status(), 200);
}

/// Sends a request head and part of its body, then drops the connection.
fn send_partial(addr: &str, head: &str, partial: &[u8]) {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.write_all(head.as_bytes()).expect("head");
    stream.write_all(partial).expect("body");
    stream.flush().expect("flush");
    // Let the server read it before the connection goes away.
    thread::sleep(Duration::from_millis(200));
    drop(stream);
}

#[test]
fn dropped_connections_leave_nothing_partial() {
    let s = TigServer::start();
    let c = http();
    let addr = s.addr();
    let slot = sha256_hex(b"dropped writes slot");
    let r = c
        .put(s.obj_url(&slot))
        .body("old value\n")
        .send()
        .expect("kv");
    assert_eq!(r.status(), 200);
    let half = pseudo_random(77, 512 * 1024);
    let sized = |target: &str| {
        format!(
            "PUT {target} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n",
            2 * half.len()
        )
    };
    let chunked = |target: &str| {
        format!("PUT {target} HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\n\r\n")
    };
    let mut chunk = format!("{:x}\r\n", half.len()).into_bytes();
    chunk.extend_from_slice(&half);
    chunk.extend_from_slice(b"\r\n");
    let slot_path = format!("/{slot}.tig");
    for target in [
        "/".to_string(),
        slot_path.clone(),
        format!("{slot_path}?append=1"),
        format!("/{}.tig?setifnot=1", sha256_hex(b"never set")),
    ] {
        send_partial(&addr, &sized(&target), &half);
        send_partial(&addr, &chunked(&target), &chunk);
    }
    // Only the slot remains, unchanged, and no temp file stays behind.
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            root_entries(&s.root).len() == 1
        }),
        "files left by dropped uploads: {:?}",
        root_entries(&s.root)
    );
    let r = c.get(s.obj_url(&slot)).send().expect("get");
    assert_eq!(
        r.text().expect("t"),
        "old value\n",
        "no partial write or append"
    );
    assert_eq!(
        c.get(s.obj_url(&sha256_hex(b"never set")))
            .send()
            .expect("get")
            .status(),
        404
    );
}
