//! One file over several servers (issue 11): `tig put --split A,B` leaves each
//! server only random-looking bytes and `get xor:…` restores the file exactly
//! (and refuses a tampered share without writing anything); `tig put --stripe
//! A,B` spreads chunks over both servers and `get` gathers them back. Real
//! `tig serve` processes on loopback, real `tig`.

// Test code: a failed unwrap is a failed test (helpers outside #[test] too).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{TigServer, pseudo_random, tig_client_cmd};

const MIB: usize = 1 << 20;

fn tig(server: &str, args: &[&str]) -> Output {
    tig_client_cmd(server, args).output().expect("run tig")
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "tig failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Every regular file under `root`, recursively.
fn files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn holds(root: &Path, needle: &[u8]) -> bool {
    files(root).iter().any(|f| {
        std::fs::read(f)
            .map(|b| b.windows(needle.len()).any(|w| w == needle))
            .unwrap_or(false)
    })
}

const MARKER: &[u8; 32] = b"tig-split-marker:0123456789abcde";

#[test]
fn split_leaves_neither_server_the_data_and_restores_it_exactly() {
    // A cuts the pad into a burst (1 MiB limit), B takes the share whole
    let a = TigServer::start_with(None, &["--max-size", "1MiB"], &[]);
    let b = TigServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut data = pseudo_random(51, 3 * MIB);
    for at in [0, 1_000_000, 3 * MIB - 32] {
        data[at..at + 32].copy_from_slice(MARKER);
    }
    let f = dir.path().join("secret");
    std::fs::write(&f, &data).unwrap();
    let reference = ok(tig(
        &a.url,
        &[
            "put",
            f.to_str().unwrap(),
            "--split",
            &format!("{},{}", a.url, b.url),
        ],
    ));
    let expect_prefix = format!("xor:{}/", a.url);
    assert!(reference.starts_with(&expect_prefix), "{reference}");
    assert!(reference.contains(&format!(",{}/", b.url)), "{reference}");
    assert!(
        reference.contains("?burst=1,"),
        "A's pad is a burst: {reference}"
    );
    for s in [&a, &b] {
        assert!(!holds(&s.root, MARKER), "{} holds the marker", s.url);
    }

    let out = dir.path().join("out");
    ok(tig(
        &a.url,
        &["get", &reference, "-o", out.to_str().unwrap()],
    ));
    assert!(
        std::fs::read(&out).unwrap() == data,
        "restored bytes differ"
    );

    // tamper with B's share on disk: one line, exit 1, no output file
    let share = reference
        .rsplit('/')
        .next()
        .unwrap()
        .trim_end_matches(".tig");
    let share_file = b.obj_file(share);
    let mut bytes = std::fs::read(&share_file).unwrap();
    bytes[100] ^= 0x40;
    std::fs::write(&share_file, &bytes).unwrap();
    let out2 = dir.path().join("out2");
    let o = tig(&a.url, &["get", &reference, "-o", out2.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("hash mismatch"), "{err}");
    assert!(!out2.exists());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn stripe_spreads_chunks_over_both_servers_and_get_gathers_them() {
    let a = TigServer::start_with(None, &["--max-size", "1MiB"], &[]);
    let b = TigServer::start_with(None, &["--max-size", "1MiB"], &[]);
    let dir = tempfile::tempdir().unwrap();
    let data = pseudo_random(61, 6 * MIB);
    let f = dir.path().join("big");
    std::fs::write(&f, &data).unwrap();
    let printed = ok(tig(
        &a.url,
        &[
            "put",
            f.to_str().unwrap(),
            "--stripe",
            &format!("{},{}", a.url, b.url),
        ],
    ));
    assert!(
        printed.starts_with(&format!("{}/", a.url)) && printed.ends_with(".tig?burst=1"),
        "{printed}"
    );
    // the list names every member by full URL; each server holds its members
    let list_hash = printed
        .trim_end_matches("?burst=1")
        .rsplit('/')
        .next()
        .unwrap()
        .trim_end_matches(".tig")
        .to_string();
    let list = std::fs::read_to_string(a.obj_file(&list_hash)).unwrap();
    let (mut on_a, mut on_b) = (0, 0);
    for line in list.lines() {
        let h = line.rsplit('/').next().unwrap().trim_end_matches(".tig");
        if line.starts_with(&format!("{}/", a.url)) {
            on_a += 1;
            assert!(a.obj_file(h).exists() && !b.obj_file(h).exists(), "{line}");
        } else {
            assert!(line.starts_with(&format!("{}/", b.url)), "{line}");
            on_b += 1;
            assert!(b.obj_file(h).exists() && !a.obj_file(h).exists(), "{line}");
        }
    }
    assert!(
        on_a > 0 && on_b > 0,
        "each server holds a share: {on_a} / {on_b}"
    );

    let out = dir.path().join("out");
    // given with another --server: the printed URL names where the list is
    ok(tig(&b.url, &["get", &printed, "-o", out.to_str().unwrap()]));
    assert!(
        std::fs::read(&out).unwrap() == data,
        "restored bytes differ"
    );
}
