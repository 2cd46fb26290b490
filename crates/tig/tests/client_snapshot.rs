//! `tig put` and `tig snapshot` never report data stored that is not (a slot at a
//! file's hash is not that file), and the snapshot cache only saves time: an
//! unchanged file is not read again, a file changed behind unchanged size and mtime
//! is still picked up through its ctime or inode, a deleted or corrupt cache costs
//! only time, and objects the server lost since the last snapshot are sent again.

// Test code: a failed unwrap is a failed test (helpers outside #[test] too).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use common::{TigServer, obj_path, pseudo_random, sha256_hex, tig_client_cmd};

const MIB: usize = 1 << 20;

/// Runs `tig ARGS --server URL` with a clean environment and its cache in `cache`.
fn tig(s: &TigServer, cache: &Path, args: &[&str]) -> Output {
    tig_client_cmd(&s.url, args)
        .env("XDG_CACHE_HOME", cache)
        .output()
        .expect("run tig")
}

/// The JSON a successful run printed (panics with stderr otherwise).
fn json(out: Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "tig failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json on stdout")
}

fn snapshot(s: &TigServer, cache: &Path, dir: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "snapshot",
        dir.to_str().unwrap(),
        "--json",
        "--max-size",
        "1MiB",
    ];
    args.extend_from_slice(extra);
    json(tig(s, cache, &args))
}

/// Asserts `out` failed with exit 1 and exactly one stderr line naming `file` and
/// the server's 409, and printed nothing on stdout.
fn assert_refused_409(out: &Output, file: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(out.stdout.is_empty(), "stdout: {:?}", out.stdout);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains(file), "{err}");
    assert!(err.contains("409"), "{err}");
    assert!(!err.contains("skipped"), "{err}");
}

/// A slot at `name` holding other bytes, created with curl as a user would.
fn curl_slot(s: &TigServer, name: &str) {
    let out = Command::new("curl")
        .args(["-sS", "--fail-with-body", "-X", "PUT", "--data-binary", "x"])
        .arg(format!("{}{name}", s.url))
        .output()
        .expect("curl");
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn put_never_reports_a_slot_at_the_files_hash_as_stored() {
    let s = TigServer::start();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("precious.txt");
    std::fs::write(&f, "precious bytes\n").unwrap();
    curl_slot(&s, &obj_path(b"precious bytes\n"));
    let fs = f.to_str().unwrap();
    assert_refused_409(&tig(&s, dir.path(), &["put", fs]), "precious.txt");
    assert_refused_409(
        &tig(&s, dir.path(), &["put", "--chunked", fs]),
        "precious.txt",
    );
    // A chunk of a larger file whose name is a slot: refused too.
    let big = dir.path().join("big.bin");
    let data = pseudo_random(5, 3 * MIB);
    std::fs::write(&big, &data).unwrap();
    let p = tig_client::chunk::ChunkParams::for_limit(MIB as u64).unwrap();
    let second = tig_client::chunk::chunks(&data[..], p)
        .nth(1)
        .unwrap()
        .unwrap();
    curl_slot(&s, &obj_path(&second));
    let out = tig(
        &s,
        dir.path(),
        &["put", big.to_str().unwrap(), "--max-size", "1MiB"],
    );
    assert_refused_409(&out, "big.bin");
    // Real content is still skipped when the server holds it.
    let ok = dir.path().join("ok.txt");
    std::fs::write(&ok, "fine\n").unwrap();
    for uploaded in [1, 0] {
        let v = json(tig(
            &s,
            dir.path(),
            &["put", ok.to_str().unwrap(), "--json"],
        ));
        assert_eq!(v["counts"]["uploaded"], uploaded, "{v}");
    }
}

#[test]
fn snapshot_never_reports_a_tree_holding_a_slot_as_stored() {
    let s = TigServer::start();
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a.txt"), "alpha\n").unwrap();
    std::fs::write(src.join("sub/b.txt"), "beta\n").unwrap();
    set_mtimes_in_the_past(&src);
    // First snapshot fine; the cache now knows b.txt.
    let first = snapshot(&s, cache.path(), &src, &[]);
    assert_eq!(first["hashed"], 2);
    // The server loses b.txt and someone writes a slot at its name.
    let b = sha256_hex(b"beta\n");
    std::fs::remove_file(s.obj_file(&b)).unwrap();
    curl_slot(&s, &obj_path(b"beta\n"));
    for extra in [&[][..], &["--no-cache"][..]] {
        let out = tig(
            &s,
            cache.path(),
            &[&["snapshot", src.to_str().unwrap()][..], extra].concat(),
        );
        assert_refused_409(&out, "b.txt");
    }
}

/// Sets every file's mtime below `dir` to a day ago (so the cache trusts them).
fn set_mtimes_in_the_past(dir: &Path) {
    for e in walk(dir) {
        if e.is_file() {
            set_mtime(&e, SystemTime::now() - Duration::from_secs(86_400));
        }
    }
}

fn set_mtime(path: &Path, t: SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// (relative path, bytes) of every file below `root`.
fn contents(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    walk(root)
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p.strip_prefix(root).unwrap().to_path_buf(), bytes)
        })
        .collect()
}

fn restore(s: &TigServer, cache: &Path, root: &serde_json::Value, to: &Path) {
    let out = tig(
        s,
        cache,
        &["restore", root.as_str().unwrap(), to.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn make_tree(src: &Path) {
    std::fs::create_dir_all(src.join("sub/deeper")).unwrap();
    for i in 0..20 {
        std::fs::write(src.join(format!("sub/f{i:02}.txt")), format!("file {i}\n")).unwrap();
    }
    std::fs::write(src.join("sub/deeper/same.txt"), "0123456789\n").unwrap();
    std::fs::write(src.join("empty"), "").unwrap();
    std::fs::write(src.join("big.bin"), pseudo_random(11, 3 * MIB)).unwrap();
    set_mtimes_in_the_past(src);
}

#[test]
fn the_cache_skips_unchanged_files_and_never_misses_a_change() {
    let s = TigServer::start();
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    make_tree(&src);
    let files = 23;

    let first = snapshot(&s, cache.path(), &src, &[]);
    assert_eq!(
        (first["hashed"].as_u64(), first["cached"].as_u64()),
        (Some(files), Some(0))
    );
    // Nothing changed: nothing read, nothing sent, the same root.
    let again = snapshot(&s, cache.path(), &src, &[]);
    assert_eq!(again["root"], first["root"]);
    assert_eq!(
        (again["hashed"].as_u64(), again["cached"].as_u64()),
        (Some(0), Some(files))
    );
    assert_eq!(again["counts"]["uploaded"], 0, "{again}");

    // Same size, mtime set back: the ctime changed, so the file is read again.
    let same = src.join("sub/deeper/same.txt");
    let old_mtime = std::fs::metadata(&same).unwrap().modified().unwrap();
    std::fs::write(&same, "9876543210\n").unwrap();
    set_mtime(&same, old_mtime);
    let v = snapshot(&s, cache.path(), &src, &[]);
    assert_eq!(v["hashed"], 1, "{v}");
    assert_ne!(v["root"], first["root"]);
    let out = dir.path().join("out1");
    restore(&s, cache.path(), &v["root"], &out);
    assert_eq!(contents(&out), contents(&src));

    // Same size and mtime, new inode (replaced by rename): read again.
    let tmp = src.join("sub/.new");
    std::fs::write(&tmp, "file X\n").unwrap();
    let f3 = src.join("sub/f03.txt");
    set_mtime(&tmp, std::fs::metadata(&f3).unwrap().modified().unwrap());
    std::fs::rename(&tmp, &f3).unwrap();
    let v2 = snapshot(&s, cache.path(), &src, &[]);
    assert_eq!(v2["hashed"], 1, "{v2}");
    assert_ne!(v2["root"], v["root"]);
    let out = dir.path().join("out2");
    restore(&s, cache.path(), &v2["root"], &out);
    assert_eq!(contents(&out), contents(&src));

    // --no-cache reads everything and finds the same version.
    let nc = snapshot(&s, cache.path(), &src, &["--no-cache"]);
    assert_eq!(
        (nc["hashed"].as_u64(), nc["root"].clone()),
        (Some(files), v2["root"].clone())
    );

    // A corrupt cache, then a deleted one: only time is lost.
    let tig_cache = cache.path().join("tig");
    for f in std::fs::read_dir(&tig_cache).unwrap() {
        std::fs::write(f.unwrap().path(), "tig-snapshot-cache 1 x\n\u{0}garbage").unwrap();
    }
    let c = snapshot(&s, cache.path(), &src, &[]);
    assert_eq!(
        (c["hashed"].as_u64(), c["root"].clone()),
        (Some(files), v2["root"].clone())
    );
    assert_eq!(c["counts"]["uploaded"], 0, "{c}");
    std::fs::remove_dir_all(&tig_cache).unwrap();
    let d = snapshot(&s, cache.path(), &src, &[]);
    assert_eq!(
        (d["hashed"].as_u64(), d["root"].clone()),
        (Some(files), v2["root"].clone())
    );
    assert_eq!(d["counts"]["uploaded"], 0, "{d}");
    // … and it is back in use.
    let e = snapshot(&s, cache.path(), &src, &[]);
    assert_eq!(e["cached"].as_u64(), Some(files), "{e}");
}

#[test]
fn objects_the_server_lost_are_sent_again_despite_the_cache() {
    let s = TigServer::start();
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    make_tree(&src);
    let first = snapshot(&s, cache.path(), &src, &[]);
    // Retention took a small file, a chunk of the big one, a tree and the root.
    let big = std::fs::read(src.join("big.bin")).unwrap();
    let p = tig_client::chunk::ChunkParams::for_limit(MIB as u64).unwrap();
    let chunk = tig_client::chunk::chunks(&big[..], p)
        .nth(1)
        .unwrap()
        .unwrap();
    let root_hex = &first["root"].as_str().unwrap()[1..65];
    let root_tree = std::fs::read_to_string(s.obj_file(root_hex)).unwrap();
    let named = |name: &str| {
        let line = root_tree.lines().find(|l| l.ends_with(name)).unwrap();
        line.split(' ').nth(3).unwrap()[1..65].to_string()
    };
    // Every id of the last snapshot is asked about while the tree is walked (the
    // cache keeps its lists and trees too): a lost list or tree must be seen.
    let lost = [
        sha256_hex(b"file 7\n"),
        sha256_hex(&chunk),
        named(" big.bin"),
        named(" sub"),
        root_hex.to_string(),
    ];
    for h in &lost {
        std::fs::remove_file(s.obj_file(h)).unwrap();
    }
    let v = snapshot(&s, cache.path(), &src, &[]);
    assert_eq!(v["cached"], 23, "{v}");
    assert_eq!(v["root"], first["root"]);
    assert_eq!(v["counts"]["uploaded"], 5, "{v}");
    for h in &lost {
        assert!(s.obj_file(h).exists(), "{h} not sent again");
    }
    let out = dir.path().join("out");
    restore(&s, cache.path(), &v["root"], &out);
    assert_eq!(contents(&out), contents(&src));
}

/// Rewrites the cache entry of `name` to `path`'s current stamp, keeping the ids it
/// holds: the stamp now lies about the file's bytes. The header's start moves a day
/// ahead, so no entry is "racily clean".
fn make_the_cache_lie(cache: &Path, name: &str, path: &Path) {
    use std::os::unix::fs::MetadataExt;
    let files: Vec<PathBuf> = walk(&cache.join("tig"));
    assert_eq!(files.len(), 1, "{files:?}");
    let text = std::fs::read_to_string(&files[0]).unwrap();
    let m = std::fs::metadata(path).unwrap();
    let mut out = String::new();
    for (n, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split(' ').collect();
        if n == 0 {
            let later = SystemTime::now() + Duration::from_secs(86_400);
            let secs = later.duration_since(SystemTime::UNIX_EPOCH).unwrap();
            out += &format!("{} {} {}\n", f[0], f[1], secs.as_secs());
        } else if f.len() == 9 && f[8] == name {
            out += &format!(
                "{} {} {} {} {} {} {} {} {}\n",
                m.size(),
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec(),
                m.ino(),
                m.dev(),
                f[7],
                f[8]
            );
        } else {
            out += line;
            out += "\n";
        }
    }
    assert_ne!(out, text, "no entry for {name}");
    std::fs::write(&files[0], out).unwrap();
}

/// A cached file whose chunk the server lost is read again and turns out changed
/// (its stamp lied), so it no longer names that chunk; another cached file that
/// still names it, met in a later batch (a batch's worth of read bytes later),
/// must still get it sent.
#[test]
fn a_lost_chunk_a_changed_file_dropped_is_sent_for_a_later_file_naming_it() {
    let s = TigServer::start();
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let shared = b"the same bytes in a and c\n";
    std::fs::write(src.join("a"), shared).unwrap();
    // Read again below: more than a batch of bytes between a and c.
    let between = tig_client::upload::BATCH_BYTES + MIB;
    std::fs::write(src.join("b.bin"), pseudo_random(1, between)).unwrap();
    std::fs::write(src.join("c"), shared).unwrap();
    set_mtimes_in_the_past(&src);
    snapshot(&s, cache.path(), &src, &[]);

    std::fs::write(src.join("b.bin"), pseudo_random(2, between)).unwrap();
    std::fs::write(src.join("a"), b"THE SAME BYTES IN A AND C\n").unwrap();
    set_mtimes_in_the_past(&src);
    make_the_cache_lie(cache.path(), "a", &src.join("a"));
    std::fs::remove_file(s.obj_file(&sha256_hex(shared))).unwrap();

    let v = snapshot(&s, cache.path(), &src, &[]);
    assert!(s.obj_file(&sha256_hex(shared)).exists(), "{v}");
    let out = dir.path().join("out");
    restore(&s, cache.path(), &v["root"], &out);
    assert_eq!(contents(&out), contents(&src));
}
