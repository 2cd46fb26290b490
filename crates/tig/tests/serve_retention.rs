//! Retention: objects and slots unused for the period are swept; reads refresh
//! the timer unless `chtimes=0`; a restart restarts the timers; `0` keeps forever
//! (and reads record no use);
//! files that are not objects are never touched. All waits are bounded polls.

mod common;

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// Whether the object is still there, without refreshing its timer.
fn present(s: &TigServer, h: &str) -> bool {
    let status = http()
        .get(format!("{}?chtimes=0", s.obj_url(h)))
        .send()
        .expect("get")
        .status()
        .as_u16();
    assert!(status == 200 || status == 404, "status {status}");
    status == 200 && s.obj_file(h).exists()
}

fn store(s: &TigServer, body: &str) -> String {
    let r = http()
        .put(format!("{}/", s.url))
        .body(body.to_string())
        .send()
        .expect("put");
    assert_eq!(r.status(), 200);
    sha256_hex(body.as_bytes())
}

/// Sets a file's modification time into the past (through `touch`).
fn age_file(path: &std::path::Path) {
    let ok = Command::new("touch")
        .args(["-d", "2 days ago"])
        .arg(path)
        .status()
        .expect("touch")
        .success();
    assert!(ok);
}

#[test]
fn read_objects_stay_untouched_ones_go() {
    let period = Duration::from_secs(2);
    let s = TigServer::start_with(None, &["--retention", "2s"], &[]);
    let c = http();
    let used = store(&s, "used");
    let unused = store(&s, "unused");
    let peeked = store(&s, "peeked with chtimes=0");
    let slot = sha256_hex(b"unused slot");
    c.put(s.obj_url(&slot)).body("v").send().expect("kv");
    let rewritten = sha256_hex(b"rewritten slot");
    let start = Instant::now();

    // Read `used` (refreshing), peek at `peeked` (not refreshing), rewrite a slot,
    // until the untouched ones are gone; bounded by 5 periods.
    let mut gone_at = None;
    while start.elapsed() < 5 * period {
        let r = c.get(s.obj_url(&used)).send().expect("get");
        assert_eq!(r.status(), 200, "a used object vanished");
        assert_eq!(r.text().expect("t"), "used");
        let r = c.put(s.obj_url(&rewritten)).body("w").send().expect("kv");
        assert_eq!(r.status(), 200);
        c.get(format!("{}?chtimes=0", s.obj_url(&peeked)))
            .send()
            .expect("peek");
        if !present(&s, &unused) && !present(&s, &slot) && !present(&s, &peeked) {
            gone_at = Some(start.elapsed());
            break;
        }
        thread::sleep(Duration::from_millis(200));
    }
    let gone_at = gone_at.expect("unused objects not swept within 5 periods");
    eprintln!("untouched objects swept after {gone_at:?} (period {period:?})");
    // Keep using `used` for two more periods: it stays.
    let until = Instant::now() + 2 * period;
    while Instant::now() < until {
        assert_eq!(
            c.get(s.obj_url(&used)).send().expect("get").status(),
            200,
            "a used object vanished"
        );
        assert!(present(&s, &rewritten), "a rewritten slot vanished");
        c.put(s.obj_url(&rewritten)).body("w").send().expect("kv");
        thread::sleep(Duration::from_millis(200));
    }
    // Then stop using it: it goes too.
    assert!(
        wait_until(5 * period, Duration::from_millis(100), || !present(
            &s, &used
        )),
        "object not swept after it stopped being used"
    );
}

#[test]
fn sweeper_never_touches_files_that_are_not_objects() {
    let root = tempfile::tempdir().expect("tmp");
    let notes = root.path().join("notes.txt");
    std::fs::write(&notes, "keep me").expect("w");
    std::fs::write(root.path().join("apikey"), "k\n").expect("w");
    let odd = root.path().join(format!("{}.tig", "A".repeat(64)));
    std::fs::write(&odd, "uppercase name").expect("w");
    for p in [&notes, &odd, &root.path().join("apikey")] {
        age_file(p);
    }
    let s = TigServer::start_with(Some(root.path()), &["--retention", "1s"], &[]);
    let h = {
        let r = http()
            .put(format!("{}/?apikey=k", s.url))
            .body("swept")
            .send()
            .expect("put");
        assert_eq!(r.status(), 200);
        sha256_hex(b"swept")
    };
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
            !s.obj_file(&h).exists()
        }),
        "object not swept"
    );
    assert_eq!(std::fs::read(&notes).expect("notes"), b"keep me");
    assert_eq!(
        std::fs::read(root.path().join("apikey")).expect("apikey"),
        b"k\n"
    );
    assert!(odd.exists(), "a non-object file was deleted");
}

#[test]
fn a_restart_restarts_the_timers() {
    let root = tempfile::tempdir().expect("tmp");
    // An object last used two days ago, as after a long downtime.
    let old = b"old but never deleted early";
    let h = sha256_hex(old);
    let path = root.path().join(format!("{h}.tig"));
    std::fs::write(&path, old).expect("w");
    age_file(&path);
    let s = TigServer::start_with(Some(root.path()), &["--retention", "3s"], &[]);
    assert!(
        present(&s, &h),
        "deleted at startup: the restart must restart timers"
    );
    let r = http()
        .get(format!("{}?chtimes=0", s.obj_url(&h)))
        .send()
        .expect("get");
    assert_eq!(r.bytes().expect("b").as_ref(), old);
    // Unused after the restart, it goes within a few periods.
    assert!(
        wait_until(Duration::from_secs(15), Duration::from_millis(100), || {
            !present(&s, &h)
        }),
        "not swept after the restart"
    );
}

#[test]
fn a_restart_keeps_recently_written_objects() {
    let root = tempfile::tempdir().expect("tmp");
    let mut s = TigServer::start_with(Some(root.path()), &["--retention", "2s"], &[]);
    let h = store(&s, "survives restarts");
    s.kill();
    // Down for longer than the period.
    thread::sleep(Duration::from_millis(2500));
    let s = TigServer::start_with(Some(root.path()), &["--retention", "2s"], &[]);
    assert!(present(&s, &h));
}

#[test]
fn retention_zero_keeps_forever_and_env_sets_the_period() {
    let root = tempfile::tempdir().expect("tmp");
    let old = b"kept forever";
    let h = sha256_hex(old);
    let path = root.path().join(format!("{h}.tig"));
    std::fs::write(&path, old).expect("w");
    age_file(&path);
    let s = TigServer::start_with(Some(root.path()), &["--retention", "0"], &[]);
    let fresh = store(&s, "fresh, kept forever");
    // Nothing is ever swept, so reads record no use: the file keeps its old mtime
    // through a plain GET and a `?missing=1` question.
    let mtime = || {
        std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .expect("mtime")
    };
    let aged = mtime();
    let c = http();
    let r = c.get(s.obj_url(&h)).send().expect("get");
    assert_eq!(r.bytes().expect("body").as_ref(), old);
    let r = c
        .post(format!("{}/?missing=1", s.url))
        .body(format!("/{h}.tig\n"))
        .send()
        .expect("missing");
    assert_eq!(
        (r.status().as_u16(), r.text().expect("text")),
        (200, String::new())
    );
    assert_eq!(mtime(), aged, "a read under --retention 0 wrote the mtime");
    // Long enough for any sweeper with a tiny period to have run several times.
    thread::sleep(Duration::from_secs(3));
    assert!(present(&s, &h) && present(&s, &fresh));
    drop(s);

    // TIG_RETENTION works like the flag.
    let s = TigServer::start_with(Some(root.path()), &[], &[("TIG_RETENTION", "1s")]);
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
            !present(&s, &h) && !present(&s, &fresh)
        }),
        "TIG_RETENTION=1s did not sweep"
    );
}
