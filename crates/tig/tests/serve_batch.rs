//! Issue 14: `POST /?batch=1` against a real `tig serve`, with the real `tar` and
//! `curl` as the README shows: every file of the tar body is stored and readable;
//! a member named `<h>.tig` whose bytes hash elsewhere, a link, a member over the
//! limit or a body over the cap store nothing of the batch; content already there
//! is a dedupe and a name holding a slot is the usual 409; the key rule is
//! `PUT /`'s.
//!
//! The tests that store run twice: on a data directory and on the S3 backend
//! against a real SeaweedFS (`common/weed.rs`; skipped with a message outside CI
//! when SeaweedFS is not installed), where the store's default batch (one
//! `put_content` per member) does the work.

#[path = "common/backends.rs"]
mod backends;
mod common;
#[path = "common/weed.rs"]
mod weed;

use std::path::Path;
use std::process::{Command, Stdio};

use backends::{Backend, server_on};
use common::*;

const KEY: &str = "b4tch";

/// A server with the API key [`KEY`] on `backend`.
fn server(backend: Backend) -> Option<TigServer> {
    server_on(backend, KEY)
}

on_both_backends!(
    a_tarred_directory_is_stored_file_by_file,
    a_member_lying_about_its_hash_stores_nothing,
    dedupe_and_slot_conflict_follow_put,
);

/// `tar cf - -C dir MEMBERS… | curl --data-binary @- URL/?batch=1&QUERY`:
/// (status, body).
fn tar_curl(s: &TigServer, dir: &Path, members: &[&str], query: &str) -> (u16, String) {
    let mut tar = Command::new("tar")
        .args(["cf", "-", "-C"])
        .arg(dir)
        .args(members)
        .stdout(Stdio::piped())
        .spawn()
        .expect("run tar");
    let out = Command::new("curl")
        .args(["-sS", "--noproxy", "*", "-w", "\n%{http_code}"])
        .args(["--data-binary", "@-"])
        .arg(format!("{}/?batch=1{query}", s.url))
        .stdin(tar.stdout.take().expect("tar stdout"))
        .output()
        .expect("run curl");
    assert!(tar.wait().expect("wait for tar").success(), "tar failed");
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').expect("status line");
    (code.parse().expect("status"), body.to_owned())
}

fn key() -> String {
    format!("&apikey={KEY}")
}

/// `GET path`: (status, bytes).
fn get(s: &TigServer, path: &str) -> (u16, Vec<u8>) {
    let r = http().get(format!("{}{path}", s.url)).send().expect("get");
    (r.status().as_u16(), r.bytes().expect("body").to_vec())
}

fn a_tarred_directory_is_stored_file_by_file(s: TigServer) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
    let mut members: Vec<String> = Vec::new();
    let mut contents: Vec<Vec<u8>> = Vec::new();
    for i in 0..150u32 {
        let name = if i % 10 == 0 {
            format!("sub/f{i}")
        } else {
            format!("f{i}")
        };
        // Sizes from 0 to ~40 KiB, a few of them equal (dedupe inside the batch).
        let data: Vec<u8> = if i % 50 == 7 {
            b"same".to_vec()
        } else {
            (0..(i * 271) % 40_000).map(|j| (j * 7 + i) as u8).collect()
        };
        std::fs::write(dir.path().join(&name), &data).expect("write");
        members.push(name);
        contents.push(data);
    }
    // An (empty) directory is a member too: skipped.
    std::fs::create_dir(dir.path().join("empty")).expect("mkdir");
    let mut args: Vec<&str> = vec!["empty"];
    args.extend(members.iter().map(String::as_str));
    let order: Vec<&Vec<u8>> = contents.iter().collect();
    let (status, reply) = tar_curl(&s, dir.path(), &args, &key());
    assert_eq!(status, 200, "{reply}");
    let lines: Vec<&str> = reply.lines().collect();
    let want: Vec<String> = order.iter().map(|c| obj_path(c)).collect();
    assert_eq!(lines, want, "one path per file, in member order");
    for (path, data) in want.iter().zip(&order) {
        assert_eq!(get(&s, path), (200, data.to_vec()), "{path}");
    }
    // An empty tar stores nothing and says so.
    let empty = tempfile::tempdir().expect("tempdir");
    assert_eq!(
        tar_curl(&s, empty.path(), &["."], &key()),
        (200, String::new())
    );
}

fn a_member_lying_about_its_hash_stores_nothing(s: TigServer) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("good"), b"good bytes").expect("write");
    let liar = ObjectName::of(b"what the name promises");
    std::fs::write(dir.path().join(&liar.file), b"other bytes").expect("write");
    let honest = ObjectName::of(b"honest");
    std::fs::write(dir.path().join(&honest.file), b"honest").expect("write");
    let (status, reply) = tar_curl(&s, dir.path(), &["good", &honest.file, &liar.file], &key());
    assert_eq!(status, 400, "{reply}");
    assert_eq!(reply.lines().count(), 1, "one line: {reply}");
    assert!(reply.contains(&liar.file), "names the member: {reply}");
    for data in [&b"good bytes"[..], b"other bytes", b"honest"] {
        assert_eq!(
            get(&s, &obj_path(data)).0,
            404,
            "nothing of the batch is stored"
        );
    }
    // The honest name alone is fine.
    let (status, reply) = tar_curl(&s, dir.path(), &[&honest.file], &key());
    assert_eq!((status, reply.trim()), (200, obj_path(b"honest").as_str()));
}

fn dedupe_and_slot_conflict_follow_put(s: TigServer) {
    let c = http();
    let r = c
        .put(format!("{}/?apikey={KEY}", s.url))
        .body("already here")
        .send()
        .expect("put");
    assert_eq!(r.status(), 200);
    // A slot at the hash of "blocked", holding other bytes.
    let blocked = obj_path(b"blocked");
    let r = c
        .put(format!("{}{blocked}?apikey={KEY}", s.url))
        .body("the slot's own value")
        .send()
        .expect("slot");
    assert_eq!(r.status(), 200);

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("old"), b"already here").expect("write");
    std::fs::write(dir.path().join("new"), b"brand new").expect("write");
    std::fs::write(dir.path().join("b"), b"blocked").expect("write");
    let (status, reply) = tar_curl(&s, dir.path(), &["old", "new"], &key());
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        reply.lines().collect::<Vec<_>>(),
        vec![obj_path(b"already here"), obj_path(b"brand new")]
    );
    assert_eq!(
        get(&s, &obj_path(b"brand new")),
        (200, b"brand new".to_vec())
    );

    let (status, reply) = tar_curl(&s, dir.path(), &["b"], &key());
    assert_eq!(status, 409, "{reply}");
    assert!(reply.contains(&blocked), "{reply}");
    assert_eq!(get(&s, &blocked), (200, b"the slot's own value".to_vec()));
}

/// A file name `<h>.tig` and the path `/<h>.tig` of some bytes.
struct ObjectName {
    file: String,
}

impl ObjectName {
    fn of(data: &[u8]) -> Self {
        Self {
            file: format!("{}.tig", sha256_hex(data)),
        }
    }
}

#[test]
fn links_are_refused_and_nothing_is_stored() {
    let s = TigServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("file"), b"a file next to a link").expect("write");
    std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link")).expect("symlink");
    let (status, reply) = tar_curl(&s, dir.path(), &["file", "link"], "");
    assert_eq!(status, 400, "{reply}");
    assert!(reply.contains("member link"), "{reply}");
    assert_eq!(get(&s, &obj_path(b"a file next to a link")).0, 404);
    // Not tar at all.
    let r = http()
        .post(format!("{}/?batch=1", s.url))
        .body(vec![b'x'; 2048])
        .send()
        .expect("post");
    assert_eq!(r.status(), 400);
}

#[test]
fn caps_are_413_and_the_key_rule_is_puts() {
    let s = TigServer::start_with(None, &["--max-size", "1KiB"], &[("APIKEY", KEY)]);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("small"), b"small").expect("write");
    std::fs::write(dir.path().join("big"), vec![1u8; 1025]).expect("write");
    let (status, reply) = tar_curl(&s, dir.path(), &["small", "big"], &key());
    assert_eq!(status, 413, "{reply}");
    assert_eq!(get(&s, &obj_path(b"small")).0, 404);
    // Without the key: 401, as for PUT /.
    let (status, _) = tar_curl(&s, dir.path(), &["small"], "");
    assert_eq!(status, 401);
    // A body declared over the 64 MiB cap is refused before it is read.
    let r = raw_request(
        &s.addr(),
        format!(
            "POST /?batch=1&apikey={KEY} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            (64u64 << 20) + 1
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 413, "{}", r.text());
}
