//! `tig put/get/kv/snapshot/restore/backup` against a real `tig serve` on an
//! ephemeral loopback port: round trips at and around the size limit, a tampered
//! store that `get` must refuse, key-value slots, snapshots that upload only what
//! changed, bit-for-bit restores, and incremental backups.

// Test code: a failed unwrap is a failed test (helpers outside #[test] too).
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use common::{TigServer, obj_path, ok, pseudo_random, sha256_hex, tig_client_cmd};
use sha2::{Digest, Sha256};

const MIB: usize = 1 << 20;

/// Runs `tig ARGS --server URL` with a clean environment (no TIG_*, APIKEY, proxies).
fn tig_with(server: &str, args: &[&str], envs: &[(&str, &str)], stdin: Option<&[u8]>) -> Output {
    let mut cmd = tig_client_cmd(server, args);
    cmd.envs(envs.iter().copied());
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn tig");
    if let Some(data) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(data).expect("write stdin");
    }
    child.wait_with_output().expect("wait tig")
}

fn tig(s: &TigServer, args: &[&str]) -> Output {
    tig_with(&s.url, args, &[], None)
}

/// Stdout of a successful run (panics with stderr otherwise).
fn json(out: Output) -> serde_json::Value {
    serde_json::from_str(ok(out).trim()).expect("json on stdout")
}

fn file_sha(path: &Path) -> String {
    let mut f = std::fs::File::open(path).expect("open");
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).expect("hash");
    hex::encode(h.finalize())
}

/// Writes `len` pseudo-random bytes without holding them all in memory.
fn write_random(path: &Path, seed: u64, len: usize) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    let mut left = len;
    let mut i = 0;
    while left > 0 {
        let n = left.min(4 * MIB);
        f.write_all(&pseudo_random(seed.wrapping_add(i), n))
            .expect("write");
        left -= n;
        i += 1;
    }
    f.flush().expect("flush");
}

fn small_server() -> TigServer {
    TigServer::start_with(None, &["--max-size", "1MiB"], &[])
}

#[test]
fn put_get_round_trip_empty_small_exact_limit_and_over_limit() {
    let s = small_server();
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("small", b"test\n".to_vec()),
        ("exact", pseudo_random(1, MIB)),
        ("over-by-one", pseudo_random(2, MIB + 1)),
        ("three-mib", pseudo_random(3, 3 * MIB + 17)),
    ];
    for (name, data) in &cases {
        let src = dir.path().join(name);
        std::fs::write(&src, data).unwrap();
        let printed = ok(tig(
            &s,
            &["put", src.to_str().unwrap(), "--max-size", "1MiB"],
        ));
        let printed = printed.trim();
        if data.len() <= MIB {
            // a plain object: the path is the file's sha256, as `sha256sum` says
            assert_eq!(printed, obj_path(data), "{name}");
        } else {
            assert!(printed.ends_with(".tig?burst=1"), "{name}: {printed}");
            // what curl gets with ?burst=1 is the original file
            let body = common::http()
                .get(format!("{}{printed}", s.url))
                .send()
                .unwrap();
            assert_eq!(body.status(), 200);
            assert_eq!(
                body.bytes().unwrap().as_ref(),
                &data[..],
                "{name} via server burst"
            );
        }
        let out = dir.path().join(format!("{name}.out"));
        ok(tig(&s, &["get", printed, "-o", out.to_str().unwrap()]));
        assert_eq!(std::fs::read(&out).unwrap(), *data, "{name} via -o");
        let stdout = tig(&s, &["get", &format!("{}{printed}", s.url)]);
        assert!(stdout.status.success());
        assert_eq!(stdout.stdout, *data, "{name} via stdout and a full URL");
    }

    // --chunked on a small file still round-trips, through a burst of one chunk
    let src = dir.path().join("small");
    let printed = ok(tig(
        &s,
        &[
            "put",
            "--chunked",
            src.to_str().unwrap(),
            "--max-size",
            "1MiB",
        ],
    ));
    assert!(printed.trim().ends_with("?burst=1"));
    assert_eq!(tig(&s, &["get", printed.trim()]).stdout, b"test\n");

    // stdin, and a second put of the same bytes uploads nothing
    let data = pseudo_random(3, 3 * MIB + 17);
    let v = serde_json::from_str::<serde_json::Value>(
        ok(tig_with(
            &s.url,
            &["put", "-", "--json", "--max-size", "1MiB"],
            &[],
            Some(&data),
        ))
        .trim(),
    )
    .unwrap();
    assert_eq!(v["burst"], true);
    assert_eq!(v["counts"]["uploaded"], 0, "{v}");
    assert!(v["counts"]["skipped"].as_u64().unwrap() >= 4, "{v}");
}

#[test]
fn an_override_over_the_limit_is_corrected_by_the_413() {
    let s = small_server();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("big");
    let data = pseudo_random(4, MIB + MIB / 2);
    std::fs::write(&src, &data).unwrap();
    // the user claims 2 MiB: tig sends one body, the server says 413 and states
    // its limit, and tig cuts below that instead
    let printed = ok(tig(
        &s,
        &["put", src.to_str().unwrap(), "--max-size", "2MiB"],
    ));
    assert!(printed.trim().ends_with("?burst=1"), "{printed}");
    for (_, f) in common::tig_files(&s.root) {
        assert!(std::fs::metadata(f).unwrap().len() <= MIB as u64);
    }
    assert_eq!(tig(&s, &["get", printed.trim()]).stdout, data);
}

#[test]
fn put_get_300_mib_streams() {
    let s = TigServer::start_with(None, &["--max-size", "16MiB"], &[]);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("big.bin");
    write_random(&src, 300, 300 * MIB);
    let v = json(tig(
        &s,
        &[
            "put",
            src.to_str().unwrap(),
            "--max-size",
            "16MiB",
            "--json",
        ],
    ));
    assert_eq!(v["size"], 300 * MIB as u64);
    assert_eq!(v["burst"], true);
    let path = v["path"].as_str().unwrap().to_string();
    let out = dir.path().join("big.out");
    ok(tig(&s, &["get", &path, "-o", out.to_str().unwrap()]));
    assert_eq!(std::fs::metadata(&out).unwrap().len(), 300 * MIB as u64);
    assert_eq!(file_sha(&out), file_sha(&src));
}

/// Files under `dir` whose names start with `.tig-` (our temp files).
fn temp_leftovers(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".tig-")
        })
        .collect()
}

fn assert_get_refused(s: &TigServer, name: &str, dir: &Path) {
    let out_file = dir.join("out.bin");
    let out = tig(s, &["get", name, "-o", out_file.to_str().unwrap()]);
    assert!(!out.status.success(), "get of tampered {name} must fail");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("hash mismatch"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(!out_file.exists(), "no output file may be left");
    assert!(temp_leftovers(dir).is_empty(), "no temp file may be left");
    let out = tig(s, &["get", name]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "nothing unverified on stdout");
}

#[test]
fn tampered_objects_fail_get_and_leave_no_file() {
    // The server's small-object cache would keep answering with the good bytes it
    // verified before the files are altered under it: turn it off, so the server
    // really serves what is on its disk and the client's checks are what is tested.
    let s = TigServer::start_with(None, &["--max-size", "1MiB", "--cache-size", "0"], &[]);
    let dir = tempfile::tempdir().unwrap();
    // a plain object, altered on disk under the server's root (same length)
    let src = dir.path().join("a");
    std::fs::write(&src, b"the real bytes\n").unwrap();
    let p = ok(tig(&s, &["put", src.to_str().unwrap()]));
    let h = p
        .trim()
        .trim_start_matches('/')
        .trim_end_matches(".tig")
        .to_string();
    std::fs::write(s.root.join(format!("{h}.tig")), b"the fake bytes\n").unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    assert_get_refused(&s, p.trim(), &work);

    // a chunked file with one chunk altered
    let big = dir.path().join("big");
    let data = pseudo_random(5, 3 * MIB);
    std::fs::write(&big, &data).unwrap();
    let p = ok(tig(
        &s,
        &["put", big.to_str().unwrap(), "--max-size", "1MiB"],
    ));
    let list_hex = p
        .trim()
        .trim_start_matches('/')
        .split('.')
        .next()
        .unwrap()
        .to_string();
    let list = std::fs::read_to_string(s.root.join(format!("{list_hex}.tig"))).unwrap();
    let members: Vec<&str> = list.lines().collect();
    assert!(members.len() >= 3);
    let victim = s
        .root
        .join(members[members.len() / 2].trim_start_matches('/'));
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&victim, &bytes).unwrap();
    assert_get_refused(&s, p.trim(), &work);

    // the burst list itself altered: it names other (existing) objects
    bytes[0] ^= 1;
    std::fs::write(&victim, &bytes).unwrap();
    ok(tig(
        &s,
        &["get", p.trim(), "-o", work.join("ok.bin").to_str().unwrap()],
    ));
    std::fs::remove_file(work.join("ok.bin")).unwrap();
    let mut swapped = members.clone();
    swapped.swap(0, 1);
    std::fs::write(
        s.root.join(format!("{list_hex}.tig")),
        swapped.join("\n") + "\n",
    )
    .unwrap();
    assert_get_refused(&s, p.trim(), &work);
}

#[test]
fn kv_commands() {
    let s = TigServer::start_with(None, &[], &[("APIKEY", "sekrit")]);
    let key = [("TIG_APIKEY", "sekrit")];
    let run = |args: &[&str], stdin: Option<&[u8]>| tig_with(&s.url, args, &key, stdin);

    // the slot: sha256 of the 64-hex sha256 of the key
    let slot = format!("/{}.tig", sha256_hex(sha256_hex(b"color").as_bytes()));
    assert_eq!(ok(run(&["kv", "path", "color"], None)).trim(), slot);
    assert_eq!(ok(run(&["kv", "set", "color", "blue"], None)).trim(), slot);
    assert_eq!(ok(run(&["kv", "get", "color"], None)), "blue");
    assert_eq!(
        ok(run(&["kv", "set", "color", "-"], Some(b"green\n"))).trim(),
        slot
    );
    assert_eq!(ok(run(&["kv", "get", "color"], None)), "green\n");
    ok(run(&["kv", "append", "color", "-"], Some(b"red\n")));
    assert_eq!(ok(run(&["kv", "get", "color"], None)), "green\nred\n");
    // plain curl sees the same slot
    let body = common::http()
        .get(format!("{}{slot}", s.url))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert_eq!(body, "green\nred\n");

    // setifnot: created → 0 and the path; already set → exit 3, value unchanged
    let out = run(&["kv", "setifnot", "lock", "me"], None);
    assert_eq!(out.status.code(), Some(0));
    let out = run(&["kv", "setifnot", "lock", "you"], None);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    assert_eq!(ok(run(&["kv", "get", "lock"], None)), "me");

    // del, then get fails clearly
    assert_eq!(ok(run(&["kv", "del", "color"], None)).trim(), slot);
    let out = run(&["kv", "get", "color"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("404"));

    // writes without the key are refused by the server: a one-line 401
    let out = tig_with(&s.url, &["kv", "set", "color", "x"], &[], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("401") && err.trim().lines().count() == 1,
        "{err}"
    );
    // the key from a file works too
    let dir = tempfile::tempdir().unwrap();
    let kf = dir.path().join("apikey");
    std::fs::write(&kf, "sekrit\n").unwrap();
    ok(tig_with(
        &s.url,
        &[
            "kv",
            "set",
            "color",
            "x",
            "--apikey-file",
            kf.to_str().unwrap(),
        ],
        &[],
        None,
    ));
}

/// A small source tree: text files, a subdirectory, an executable, a symlink, a
/// multi-chunk binary, an ignored file and a `.git` directory.
fn make_tree(root: &Path) {
    std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
    std::fs::create_dir_all(root.join(".git")).unwrap();
    std::fs::create_dir_all(root.join("empty-dir")).unwrap();
    std::fs::write(root.join("README.md"), "# hello\n").unwrap();
    std::fs::write(root.join(".gitignore"), "*.log\n").unwrap();
    std::fs::write(root.join("debug.log"), "noise\n").unwrap();
    std::fs::write(root.join(".git/config"), "[core]\n").unwrap();
    std::fs::write(root.join("sub/b.txt"), "bee\n").unwrap();
    std::fs::write(root.join("sub/deeper/c.txt"), "").unwrap();
    std::fs::write(root.join("name with spaces %"), "odd name\n").unwrap();
    std::fs::write(root.join("run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(root.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("sub/b.txt", root.join("link-to-b")).unwrap();
    std::os::unix::fs::symlink("../outside", root.join("sub/dangling")).unwrap();
    std::fs::write(root.join("big.bin"), pseudo_random(42, 3 * MIB)).unwrap();
}

fn snapshot(s: &TigServer, dir: &Path) -> serde_json::Value {
    json(tig(
        s,
        &[
            "snapshot",
            dir.to_str().unwrap(),
            "--json",
            "--max-size",
            "1MiB",
        ],
    ))
}

fn chunk_ids(data: &[u8]) -> Vec<String> {
    let p = tig_client::chunk::ChunkParams::for_limit(MIB as u64).unwrap();
    tig_client::chunk::chunks(data, p)
        .map(|c| sha256_hex(&c.unwrap()))
        .collect()
}

#[test]
fn snapshot_again_uploads_only_changed_chunks() {
    let s = small_server();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    make_tree(&src);
    let first = snapshot(&s, &src);
    assert_eq!(first["files"], 7, "{first}"); // not debug.log, not .git/config
    assert_eq!(first["symlinks"], 2);
    assert!(first["counts"]["uploaded"].as_u64().unwrap() > 5);

    // nothing changed: same root, nothing uploaded
    let again = snapshot(&s, &src);
    assert_eq!(again["root"], first["root"]);
    assert_eq!(again["counts"]["uploaded"], 0, "{again}");

    // one small file in a subdirectory: its blob, its tree, the root tree
    std::fs::write(src.join("sub/b.txt"), "bee, edited\n").unwrap();
    let v = snapshot(&s, &src);
    assert_ne!(v["root"], first["root"]);
    assert_eq!(v["counts"]["uploaded"], 3, "{v}");

    // one byte in the middle of the big file: the changed chunks, its list, the root
    let old = std::fs::read(src.join("big.bin")).unwrap();
    let mut new = old.clone();
    new[old.len() / 2] ^= 0x55;
    std::fs::write(src.join("big.bin"), &new).unwrap();
    let old_ids = chunk_ids(&old);
    let changed = chunk_ids(&new)
        .into_iter()
        .filter(|id| !old_ids.contains(id))
        .count();
    assert!((1..=2).contains(&changed));
    let v = snapshot(&s, &src);
    assert_eq!(v["counts"]["uploaded"], changed as u64 + 2, "{v}");
    assert!(v["counts"]["uploaded_bytes"].as_u64().unwrap() < 2 * MIB as u64 + 4096);
}

/// (relative path, kind, mode bits or link target, sha256) for every entry below `root`.
fn listing(root: &Path) -> Vec<(String, String, String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.file_type().is_symlink() {
                let t = std::fs::read_link(&p)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.push((rel, "link".into(), t, String::new()));
            } else if m.is_dir() {
                out.push((rel, "dir".into(), String::new(), String::new()));
                stack.push(p);
            } else {
                let mode = format!("{:o}", m.permissions().mode() & 0o111);
                out.push((rel, "file".into(), mode, file_sha(&p)));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn restore_rebuilds_the_tree_bit_for_bit() {
    let s = small_server();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    make_tree(&src);
    let v = snapshot(&s, &src);
    let root = v["root"].as_str().unwrap().to_string();
    let dst = dir.path().join("restored");
    ok(tig(&s, &["restore", &root, dst.to_str().unwrap()]));
    // everything but the ignored file and .git comes back identical
    std::fs::remove_file(src.join("debug.log")).unwrap();
    std::fs::remove_dir_all(src.join(".git")).unwrap();
    assert_eq!(listing(&dst), listing(&src));
    assert_eq!(
        std::fs::metadata(dst.join("run.sh"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o755
    );
    // a second snapshot of the restored tree names the same version
    assert_eq!(snapshot(&s, &dst)["root"], v["root"]);
    // restore refuses to mix into a non-empty directory
    let out = tig(&s, &["restore", &root, dst.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"));

    // --no-ignore and --include-git take the rest
    let all = json(tig(
        &s,
        &[
            "snapshot",
            src.to_str().unwrap(),
            "--json",
            "--max-size",
            "1MiB",
            "--include-git",
        ],
    ));
    assert_eq!(all["files"], v["files"]);
    std::fs::create_dir(src.join(".git")).unwrap();
    std::fs::write(src.join(".git/config"), "x").unwrap();
    let all = json(tig(
        &s,
        &[
            "snapshot",
            src.to_str().unwrap(),
            "--json",
            "--max-size",
            "1MiB",
            "--include-git",
        ],
    ));
    assert_eq!(
        all["files"],
        v["files"].as_u64().unwrap() + 1,
        ".git/config now taken"
    );
}

/// `--no-ignore` walks without the `ignore` crate (no rules to apply): both walks
/// must see a tree without ignored files the same, byte for byte.
#[test]
fn the_walk_without_rules_sees_what_the_walk_with_rules_sees() {
    let s = small_server();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    make_tree(&src);
    let snap = |extra: &[&str]| {
        let mut args = vec!["snapshot", src.to_str().unwrap(), "--json"];
        args.extend(["--max-size", "1MiB", "--no-cache"]);
        args.extend(extra);
        json(tig(&s, &args))
    };
    let ruled = snap(&[]);
    let plain = snap(&["--no-ignore"]);
    // the ignored file is taken, .git still left out
    assert_eq!(
        plain["files"],
        ruled["files"].as_u64().unwrap() + 1,
        "{plain}"
    );
    assert_ne!(plain["root"], ruled["root"]);
    let dst = dir.path().join("restored");
    ok(tig(
        &s,
        &[
            "restore",
            plain["root"].as_str().unwrap(),
            dst.to_str().unwrap(),
        ],
    ));
    assert_eq!(std::fs::read(dst.join("debug.log")).unwrap(), b"noise\n");
    assert!(!dst.join(".git").exists());

    // Nothing ignored any more, and a special file that both leave out.
    std::fs::remove_file(src.join("debug.log")).unwrap();
    let fifo = src.join("sub/deeper/fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let ruled = snap(&[]);
    assert_eq!(snap(&["--no-ignore"])["root"], ruled["root"]);
    let with_git = snap(&["--include-git"]);
    assert_ne!(with_git["root"], ruled["root"]);
    assert_eq!(
        snap(&["--no-ignore", "--include-git"])["root"],
        with_git["root"]
    );
}

#[test]
fn restore_refuses_trees_that_escape_or_lie() {
    let s = small_server();
    let put = |body: Vec<u8>| s.put(&body);
    let blob = put(b"evil".to_vec());
    let dir = tempfile::tempdir().unwrap();
    for line in [
        format!("100644 blob 4 {blob} ..\n"),
        format!("100644 blob 4 {blob} a/b\n"),
        format!("100644 blob 4 {blob} %2E%2E%2Fx\n"),
        format!("100644 blob 5 {blob} wrong-size\n"),
    ] {
        let tree = put(format!("tig-tree 1\n{line}").into_bytes());
        let dst = dir.path().join("dst");
        let out = tig(&s, &["restore", &tree, dst.to_str().unwrap()]);
        assert!(!out.status.success(), "{line}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(!dir.path().join("x").exists() && !dir.path().join("b").exists());
        let _ = std::fs::remove_dir_all(&dst);
    }
    // a tampered tree on disk is caught by its hash
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), "data\n").unwrap();
    let v = snapshot(&s, &src);
    let root = v["root"].as_str().unwrap();
    let file = s.root.join(root.trim_start_matches('/'));
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace(" f\n", " g\n");
    std::fs::write(&file, text).unwrap();
    let dst = dir.path().join("dst2");
    let out = tig(&s, &["restore", root, dst.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("hash mismatch"));
}

#[test]
fn backup_twice_fetches_only_new_objects_and_can_be_served() {
    let s = TigServer::start_with(None, &[], &[("APIKEY", "k3y")]);
    let key = [("TIG_APIKEY", "k3y")];
    let dir = tempfile::tempdir().unwrap();
    let put = |data: &[u8]| -> String {
        let p = dir.path().join("in");
        std::fs::write(&p, data).unwrap();
        ok(tig_with(&s.url, &["put", p.to_str().unwrap()], &key, None))
            .trim()
            .to_string()
    };
    let a = put(b"alpha\n");
    put(b"beta\n");
    put(b"gamma\n");
    ok(tig_with(
        &s.url,
        &["kv", "set", "k", "slot value"],
        &key,
        None,
    ));

    // without the key: a clear refusal
    let dest = dir.path().join("backup");
    let out = tig_with(&s.url, &["backup", dest.to_str().unwrap()], &[], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("API key"));

    let backup = || {
        json(tig_with(
            &s.url,
            &["backup", dest.to_str().unwrap(), "--json"],
            &key,
            None,
        ))
    };
    let v = backup();
    assert_eq!(v["listed"], 4, "{v}");
    assert_eq!(v["fetched"], 4);
    assert_eq!(v["verified"], 3);
    assert_eq!(v["unverifiable"], 1, "the kv slot");
    put(b"delta\n");
    put(b"epsilon\n");
    let v = backup();
    assert_eq!(
        (
            v["listed"].as_u64(),
            v["present"].as_u64(),
            v["fetched"].as_u64()
        ),
        (Some(6), Some(4), Some(2)),
        "{v}"
    );
    let v = backup();
    assert_eq!(v["fetched"], 0);
    // a changed slot is fetched again only when asked
    ok(tig_with(
        &s.url,
        &["kv", "set", "k", "new value"],
        &key,
        None,
    ));
    assert_eq!(backup()["fetched"], 0);
    let v = json(tig_with(
        &s.url,
        &[
            "backup",
            dest.to_str().unwrap(),
            "--json",
            "--refresh-slots",
        ],
        &key,
        None,
    ));
    assert_eq!(
        (v["fetched"].as_u64(), v["unverifiable"].as_u64()),
        (Some(1), Some(1)),
        "{v}"
    );
    // only object files, each named by its hash (the slot by its key's)
    let files = common::tig_files(&dest);
    assert_eq!(files.len(), 6);
    assert_eq!(
        std::fs::read_dir(&dest).unwrap().count(),
        6,
        "no temp files left"
    );

    // the backup is a data directory: serve it and read through the verifying client
    let mirror = TigServer::start_with(Some(&dest), &[], &[]);
    assert_eq!(ok(tig(&mirror, &["get", &a])), "alpha\n");
    assert_eq!(ok(tig(&mirror, &["kv", "get", "k"])), "new value");
}

#[test]
fn unreachable_server_is_one_clear_line_and_no_progress_noise_when_piped() {
    // a port nobody listens on: the connection is retried, then one line
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let out = tig_with(&url, &["get", &"ab".repeat(32)], &[], None);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("is the server running at {url}?")),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // with stderr not a terminal, put prints its path and one summary line, no bars
    let s = TigServer::start();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("f");
    std::fs::write(&f, pseudo_random(9, 300_000)).unwrap();
    let out = tig(&s, &["put", f.to_str().unwrap(), "--chunked"]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("tig: put ") && !err.contains('\r'), "{err}");
}
