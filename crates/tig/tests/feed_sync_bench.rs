//! Timings for BENCHMARKS.md ("Feeds II"): ignored by default, run with
//! `cargo test -p tig --test feed_sync_bench -- --ignored --nocapture`.
//! Nothing here asserts a duration; it prints them.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::path::Path;
use std::process::Command;
use std::time::Instant;

fn tig(dir: &Path, args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_tig"))
        .current_dir(dir)
        .args(args)
        .env("TIG_LOG", "warn")
        .output()
        .expect("spawn tig");
    assert!(
        o.status.success() || args.get(1) == Some(&"forks"),
        "tig {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn git(dir: &Path, args: &[&str]) -> String {
    let o = Command::new("git")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("spawn git");
    assert!(o.status.success(), "git {args:?}");
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn batch(store: &Path, key: &Path, n: usize, tag: &str) {
    let file = store.join(format!("../{tag}.txt"));
    let body: String = (0..n).map(|i| format!("{tag} message {i}\n")).collect();
    std::fs::write(&file, body).unwrap();
    tig(
        store,
        &[
            "feed",
            "append",
            "--key",
            key.to_str().unwrap(),
            "--batch",
            file.to_str().unwrap(),
        ],
    );
}

fn timed(label: &str, f: impl FnOnce() -> String) -> String {
    let t = Instant::now();
    let out = f();
    println!("BENCH {label}: {:.3} s", t.elapsed().as_secs_f64());
    out
}

#[test]
#[ignore]
fn bench_pull_100k_then_incremental_100() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let key = t.join("k");
    tig(t, &["id", "new", "--out", key.to_str().unwrap()]);
    let src = t.join("src");
    let dst = t.join("dst");
    tig(t, &["feed", "init", src.to_str().unwrap()]);
    tig(t, &["feed", "init", dst.to_str().unwrap()]);
    timed("batch append 100000", || {
        batch(&src, &key, 100_000, "a");
        String::new()
    });
    let out = timed("pull 100000 messages (path, empty store)", || {
        tig(&dst, &["feed", "pull", "../src"])
    });
    println!("{out}");
    batch(&src, &key, 100, "b");
    let out = timed("pull 100 new messages (path)", || {
        tig(&dst, &["feed", "pull", "../src"])
    });
    println!("{out}");
    let b = t.join("full.bundle");
    timed("bundle create (100100 messages)", || {
        tig(&src, &["feed", "bundle", "create", b.to_str().unwrap()])
    });
    let dst2 = t.join("dst2");
    tig(t, &["feed", "init", dst2.to_str().unwrap()]);
    timed("pull full bundle into an empty store", || {
        tig(&dst2, &["feed", "pull", b.to_str().unwrap()])
    });
    let url = format!("file://{}", src.display());
    let dst3 = t.join("dst3");
    tig(t, &["feed", "init", dst3.to_str().unwrap()]);
    timed("pull 100100 messages (file:// URL)", || {
        tig(&dst3, &["feed", "pull", &url])
    });
}

#[test]
#[ignore]
fn bench_forks_50_feeds_of_10k() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let store = t.join("store");
    tig(t, &["feed", "init", store.to_str().unwrap()]);
    let start = Instant::now();
    for i in 0..50 {
        let key = t.join(format!("k{i}"));
        let id = tig(t, &["id", "new", "--out", key.to_str().unwrap()])
            .trim()
            .to_string();
        batch(&store, &key, 10_000, &format!("f{i}"));
        let head = format!("refs/heads/{id}");
        // every feed also known from a peer; every 10th one forked there
        let tip = git(&store, &["rev-parse", &head]);
        git(
            &store,
            &["update-ref", &format!("refs/remotes/peer/{id}"), &tip],
        );
        if i % 10 == 0 {
            let parent = git(&store, &["rev-parse", &format!("{head}~1")]);
            git(&store, &["update-ref", &head, &parent]);
            tig(
                &store,
                &["feed", "append", "--key", key.to_str().unwrap(), "fork"],
            );
        }
    }
    println!(
        "BENCH setup 50 x 10000 messages: {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let out = timed("forks on 50 feeds x 10000 messages (5 forked)", || {
        tig(&store, &["feed", "forks", "--json"])
    });
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    println!("forks found: {}", v.as_array().unwrap().len());
}
