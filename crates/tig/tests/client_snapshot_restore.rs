//! `tig restore` against a real `tig serve`: a wide and deep tree comes back bit
//! for bit with git's two modes whatever the umask (trees fetched level by level
//! in parallel, small files written straight under their own names); a file whose
//! object fails its hash, or holds more or fewer bytes than the tree says, is
//! never left in the target, under its name or any temp name.

// Test code: a failed unwrap is a failed test (helpers outside #[test] too).
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{TigServer, ok, pseudo_random, tig_bin};

const MIB: usize = 1 << 20;

/// `sh -c 'umask 077; exec tig ARGS --server URL'`, its cache in `cache`.
fn tig(s: &TigServer, cache: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("umask 077; exec \"$@\"")
        .arg("sh")
        .arg(tig_bin())
        .args(args)
        .arg("--server")
        .arg(&s.url);
    common::clear_tig_env(&mut cmd)
        .env("XDG_CACHE_HOME", cache)
        .stdin(Stdio::null())
        .output()
        .expect("run tig")
}

/// Every path below `root` with its kind, mode bits and bytes (or link target).
fn listing(root: &Path) -> Vec<(PathBuf, String, u32, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.file_type().is_symlink() {
                let t = std::fs::read_link(&p).unwrap();
                out.push((
                    rel,
                    "link".into(),
                    0,
                    t.into_os_string().into_encoded_bytes(),
                ));
            } else if m.is_dir() {
                out.push((rel, "dir".into(), 0, Vec::new()));
                stack.push(p);
            } else {
                let mode = m.permissions().mode() & 0o777;
                out.push((rel, "file".into(), mode, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// Names of files left below `root` that look like a restore's temp files (none
/// when a failed restore removed the directory it created).
fn leftovers(root: &Path) -> Vec<PathBuf> {
    if !root.exists() {
        return Vec::new();
    }
    listing(root)
        .into_iter()
        .map(|(p, ..)| p)
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(".tig-"))
        })
        .collect()
}

fn snapshot_root(s: &TigServer, cache: &Path, dir: &Path) -> String {
    let out = ok(tig(
        s,
        cache,
        &["snapshot", dir.to_str().unwrap(), "--max-size", "1MiB"],
    ));
    out.trim().to_string()
}

#[test]
fn a_wide_deep_tree_comes_back_bit_for_bit_with_its_modes() {
    let s = TigServer::start();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let src = dir.path().join("src");
    // Five levels, several directories per level, files at every level.
    let mut n = 0u32;
    let mut dirs = vec![src.clone()];
    for depth in 0..5 {
        let mut next = Vec::new();
        for d in &dirs {
            std::fs::create_dir_all(d).unwrap();
            for i in 0..4 {
                n += 1;
                let f = d.join(format!("f{i}.txt"));
                std::fs::write(&f, format!("file {n} at depth {depth}\n").repeat(i + 1)).unwrap();
            }
            if depth < 4 {
                next.extend((0..3).map(|k| d.join(format!("d{k}"))));
            }
        }
        dirs = next;
    }
    std::fs::set_permissions(src.join("f1.txt"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        src.join("d2/d1/f0.txt"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    std::fs::write(src.join("d0/empty"), "").unwrap();
    std::fs::create_dir(src.join("d1/nothing-inside")).unwrap();
    std::fs::write(src.join("d1/big.bin"), pseudo_random(3, 3 * MIB)).unwrap();
    std::os::unix::fs::symlink("../f0.txt", src.join("d0/link")).unwrap();
    // The snapshot records git's two modes: what a restore must give back.
    for (p, ..) in listing(&src) {
        let p = src.join(p);
        let m = std::fs::symlink_metadata(&p).unwrap();
        if m.is_file() {
            let mode = if m.permissions().mode() & 0o111 != 0 {
                0o755
            } else {
                0o644
            };
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        }
    }

    let root = snapshot_root(&s, &cache, &src);
    let dst = dir.path().join("dst");
    ok(tig(&s, &cache, &["restore", &root, dst.to_str().unwrap()]));
    assert_eq!(listing(&dst), listing(&src));
    assert!(leftovers(&dst).is_empty());
    // Restored into an existing empty directory too.
    let empty = dir.path().join("empty-dst");
    std::fs::create_dir(&empty).unwrap();
    ok(tig(
        &s,
        &cache,
        &["restore", &root, empty.to_str().unwrap()],
    ));
    assert_eq!(listing(&empty), listing(&src));
}

/// A server holding a snapshot of `src/sub/f00`..`f39` (`file N\n` each): the
/// server, the temp dir, the cache dir, `src` and the root.
fn forty_files() -> (TigServer, tempfile::TempDir, PathBuf, PathBuf, String) {
    let s = TigServer::start();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    for i in 0..40 {
        std::fs::write(src.join(format!("sub/f{i:02}")), format!("file {i}\n")).unwrap();
    }
    let root = snapshot_root(&s, &cache, &src);
    (s, dir, cache, src, root)
}

#[test]
fn a_file_whose_object_fails_verification_is_never_left_behind() {
    let (s, dir, cache, src, root) = forty_files();
    // Swap the bytes of one file's object on the server's disk.
    let victim = s.obj_file(&common::sha256_hex(b"file 17\n"));
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&victim, b"file 71\n").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o444)).unwrap();

    // Into an existing empty directory, which a failed restore keeps.
    let dst = dir.path().join("dst");
    std::fs::create_dir(&dst).unwrap();
    let out = tig(&s, &cache, &["restore", &root, dst.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(dst.is_dir());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("hash mismatch"), "{err}");
    assert!(!dst.join("sub/f17").exists(), "an unverified file was left");
    assert!(leftovers(&dst).is_empty(), "{:?}", leftovers(&dst));
    // Whatever else was written is whole and right.
    for (p, kind, _, bytes) in listing(&dst) {
        if kind == "file" {
            assert_eq!(
                bytes,
                std::fs::read(src.join(&p)).unwrap(),
                "{}",
                p.display()
            );
        }
    }
}

#[test]
fn a_file_whose_object_is_longer_or_shorter_than_the_tree_says_is_refused() {
    let s = TigServer::start();
    let put = |body: Vec<u8>| s.put(&body);
    let blob = put(b"twelve bytes".to_vec());
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    for (size, name) in [(5, "shorter"), (40, "longer")] {
        let tree = put(format!("tig-tree 1\n100644 blob {size} {blob} {name}\n").into_bytes());
        let dst = dir.path().join(name);
        std::fs::create_dir(&dst).unwrap();
        let out = tig(&s, &cache, &["restore", &tree, dst.to_str().unwrap()]);
        assert!(!out.status.success(), "{name}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("should be {size} bytes")), "{err}");
        assert!(!dst.join(name).exists(), "{name} was left");
        assert!(leftovers(&dst).is_empty());
    }
}

/// Small files come in batches (`POST /?concat=1`); a member the server lost fails
/// its batch, which is then restored file by file: the error names the object.
#[test]
fn an_object_the_server_lost_fails_the_restore_naming_it() {
    let (s, dir, cache, _, root) = forty_files();
    let lost = common::sha256_hex(b"file 17\n");
    std::fs::remove_file(s.obj_file(&lost)).unwrap();
    let dst = dir.path().join("dst");
    let out = tig(&s, &cache, &["restore", &root, dst.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&lost), "{err}");
    assert!(!dst.join("sub/f17").exists());
    assert!(leftovers(&dst).is_empty(), "{:?}", leftovers(&dst));
}

/// The requests a server counted with `method` and status 200 (from `/metrics`).
fn counted(s: &TigServer, method: &str) -> u64 {
    let text = common::http()
        .get(format!("{}/metrics", s.url))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let series = format!("tig_http_requests_total{{method=\"{method}\",status=\"200\"}}");
    common::sample(&text, &series) as u64
}

/// Small files are fetched many to a request (`POST /?concat=1`), not one `GET`
/// each, and come back whole.
#[test]
fn small_files_come_back_in_a_few_requests() {
    let s = TigServer::start();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("a/b")).unwrap();
    for i in 0..600 {
        let sub = if i % 2 == 0 { "a" } else { "a/b" };
        std::fs::write(src.join(format!("{sub}/f{i:03}")), format!("small {i}\n")).unwrap();
    }
    std::fs::write(src.join("a/empty"), "").unwrap();
    let root = snapshot_root(&s, &cache, &src);
    let (gets, posts) = (counted(&s, "GET"), counted(&s, "POST"));
    let dst = dir.path().join("dst");
    let out = tig(&s, &cache, &["restore", &root, dst.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(listing(&dst), listing(&src));
    // Three trees and 601 files: 3 GETs, and the files in 2 POSTs of at most 512.
    let gets = counted(&s, "GET") - gets - 1; // this call's own /metrics
    let posts = counted(&s, "POST") - posts;
    assert!(gets <= 3 && posts <= 4, "{gets} GETs, {posts} POSTs");
}
