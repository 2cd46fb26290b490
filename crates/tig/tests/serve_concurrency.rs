//! Concurrent writers: one `setifnot` winner, appends that never interleave,
//! identical uploads that make one whole object.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Barrier};
use std::thread;

use common::*;

#[test]
fn fifty_concurrent_setifnot_have_exactly_one_winner() {
    let s = TigServer::start();
    let slot = sha256_hex(b"the mutex");
    let url = s.obj_url(&slot);
    let barrier = Arc::new(Barrier::new(50));
    let handles: Vec<_> = (0..50)
        .map(|i| {
            let url = url.clone();
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                let c = http();
                barrier.wait();
                let r = c
                    .put(format!("{url}?setifnot=1"))
                    .body(format!("owner {i}\n"))
                    .send()
                    .expect("setifnot");
                assert_eq!(r.status(), 200);
                let created = r
                    .headers()
                    .get("tig-created")
                    .map(|v| v.to_str().unwrap_or("").to_string())
                    .unwrap_or_default();
                (i, created, r.text().expect("body"))
            })
        })
        .collect();
    let results: Vec<(usize, String, String)> = handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect();
    let winners: Vec<_> = results.iter().filter(|r| r.1 == "true").collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    let (winner, _, body) = winners[0];
    assert_eq!(body, &format!("/{slot}.tig"));
    for (_, created, body) in results.iter().filter(|r| r.1 != "true") {
        assert_eq!(created, "false");
        assert_eq!(body, "");
    }
    let value = http().get(&url).send().expect("get").text().expect("t");
    assert_eq!(value, format!("owner {winner}\n"));
}

#[test]
fn fifty_concurrent_appends_keep_every_line_whole() {
    let s = TigServer::start();
    let slot = sha256_hex(b"the log");
    let url = s.obj_url(&slot);
    let barrier = Arc::new(Barrier::new(50));
    // Lines of 20 KiB each: big enough to need several writes if not serialized.
    let line = |i: usize| {
        let mut l = format!("line {i:02} ");
        l.push_str(&format!("{i:02}").repeat(10 * 1024));
        l.push('\n');
        l
    };
    let handles: Vec<_> = (0..50)
        .map(|i| {
            let url = url.clone();
            let barrier = Arc::clone(&barrier);
            let body = line(i);
            let slot = slot.clone();
            thread::spawn(move || {
                let c = http();
                barrier.wait();
                let r = c
                    .put(format!("{url}?append=1"))
                    .body(body)
                    .send()
                    .expect("append");
                assert_eq!(r.status(), 200);
                assert_eq!(r.text().expect("t"), format!("/{slot}.tig"));
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread");
    }
    let got = http().get(&url).send().expect("get").text().expect("t");
    let mut count: HashMap<&str, usize> = HashMap::new();
    for l in got.split_inclusive('\n') {
        *count.entry(l).or_default() += 1;
    }
    let want_len: usize = (0..50).map(|i| line(i).len()).sum();
    assert_eq!(got.len(), want_len);
    for i in 0..50 {
        let l = line(i);
        assert_eq!(
            count.get(l.as_str()).copied().unwrap_or(0),
            1,
            "line {i} whole exactly once"
        );
    }
    assert_eq!(count.len(), 50);
}

#[test]
fn twenty_concurrent_identical_puts_make_one_valid_object() {
    let s = TigServer::start();
    let body = Arc::new(pseudo_random(42, 4 * 1024 * 1024 + 1));
    let want = obj_path(&body);
    let barrier = Arc::new(Barrier::new(20));
    let handles: Vec<_> = (0..20)
        .map(|i| {
            let url = if i % 2 == 0 {
                format!("{}/", s.url)
            } else {
                format!("{}/upload-{i}", s.url)
            };
            let body = Arc::clone(&body);
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                let c = http();
                barrier.wait();
                let r = c.put(url).body(body.to_vec()).send().expect("put");
                assert_eq!(r.status(), 200);
                r.text().expect("t")
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().expect("thread"), want);
    }
    let files = tig_files(&s.root);
    assert_eq!(files.len(), 1, "{files:?}");
    let data = std::fs::read(&files[0].1).expect("read");
    assert_eq!(format!("/{}", files[0].0), want);
    assert_eq!(obj_path(&data), want);
    // No temp files left behind either.
    assert!(
        wait_until(
            std::time::Duration::from_secs(10),
            std::time::Duration::from_millis(50),
            || root_entries(&s.root).len() == 1
        ),
        "leftover files in the root"
    );
    let got = http()
        .get(format!("{}{want}", s.url))
        .send()
        .expect("get")
        .bytes()
        .expect("b");
    assert!(got.as_ref() == body.as_slice());
}

#[test]
fn concurrent_slot_writes_leave_one_whole_value() {
    let s = TigServer::start();
    let slot = sha256_hex(b"contended slot");
    let url = s.obj_url(&slot);
    let values: Vec<Vec<u8>> = (0..16)
        .map(|i| vec![b'a' + i as u8; 256 * 1024 + i])
        .collect();
    let barrier = Arc::new(Barrier::new(16));
    let handles: Vec<_> = values
        .iter()
        .cloned()
        .map(|v| {
            let url = url.clone();
            let barrier = Arc::clone(&barrier);
            let readers_url = url.clone();
            thread::spawn(move || {
                let c = http();
                barrier.wait();
                for _ in 0..3 {
                    assert_eq!(
                        c.put(&url).body(v.clone()).send().expect("put").status(),
                        200
                    );
                    // Every read sees one whole value, never a mix or a prefix.
                    let got = c.get(&readers_url).send().expect("get").bytes().expect("b");
                    assert!(
                        got.len() >= 256 * 1024
                            && got.iter().all(|b| *b == got[0])
                            && got.len() == 256 * 1024 + (got[0] - b'a') as usize,
                        "torn read of {} bytes",
                        got.len()
                    );
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread");
    }
    let got = http().get(&url).send().expect("get").bytes().expect("b");
    assert!(values.iter().any(|v| v.as_slice() == got.as_ref()));
}
