//! `POST /?missing=1` over more names than one server batch (1,024), so that
//! several batches are checked at once and each goes through the store's batched
//! check (`Store::present_content_many`: on a data directory one blocking task per
//! batch, no `open` of marked files; on S3 the default, one `stat` per name). The
//! reply must still list exactly the names without content, in the order asked, on
//! both backends. On a data directory, files the server did not mark (written by
//! hand, of another mode) are classified as `GET` would, a directory named like an
//! object is not one, and every object found has its retention timer refreshed.

#[path = "common/backends.rs"]
mod backends;
mod common;
#[path = "common/weed.rs"]
mod weed;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime};

use backends::{Backend, server_on};
use common::*;

const KEY: &str = "m1ss";

/// A server with the API key [`KEY`] on `backend`.
fn server(backend: Backend) -> Option<TigServer> {
    server_on(backend, KEY)
}

on_both_backends!(many_names_in_several_batches_never_wrong_either_way);

fn put_at(s: &TigServer, path: &str, body: &[u8]) {
    let r = http()
        .put(format!("{}{path}?apikey={KEY}", s.url))
        .body(body.to_vec())
        .send()
        .expect("put");
    assert_eq!(r.status(), 200, "{path}: {:?}", r.text());
}

fn many_names_in_several_batches_never_wrong_either_way(s: TigServer) {
    let mut want = Vec::new();
    let mut body = String::new();
    for i in 0..2600u32 {
        let data = format!("object {i}");
        let path = obj_path(data.as_bytes());
        if i % 7 == 0 {
            put_at(&s, "/", data.as_bytes());
        } else if i % 31 == 0 {
            // A slot at the name, holding other bytes: not content.
            put_at(&s, &path, format!("slot {i}").as_bytes());
            want.push(path.clone());
        } else {
            want.push(path.clone());
        }
        body.push_str(&path);
        body.push('\n');
        // Every 100th name asked twice in a row: answered twice.
        if i % 100 == 0 {
            body.push_str(&path);
            body.push('\n');
            if i % 7 != 0 {
                want.push(path.clone());
            }
        }
    }
    let (status, text) = missing(&s, body);
    assert_eq!(status, 200, "{text}");
    let got: Vec<&str> = text.lines().collect();
    assert_eq!(got.len(), want.len());
    assert_eq!(got, want.iter().map(String::as_str).collect::<Vec<_>>());
}

#[test]
fn unmarked_files_are_classified_and_found_objects_touched() {
    let s = TigServer::start();
    let file = |path: &str| s.root.join(&path[1..]);
    let stored = obj_path(b"stored");
    put_at(&s, "/", b"stored");
    let slot = obj_path(b"slot");
    put_at(&s, &slot, b"not the slot's hash");
    // Written by hand (as `tig backup` or a copy would), mode 0600.
    let good = obj_path(b"by hand");
    std::fs::write(file(&good), b"by hand").expect("write");
    let bad = obj_path(b"claimed");
    std::fs::write(file(&bad), b"other bytes").expect("write");
    for p in [&good, &bad] {
        std::fs::set_permissions(file(p), std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    let dir = obj_path(b"a directory");
    std::fs::create_dir(file(&dir)).expect("mkdir");
    let absent = obj_path(b"absent");

    let old = SystemTime::now() - Duration::from_secs(3600);
    for p in [&stored, &slot, &good, &bad] {
        std::fs::File::open(file(p))
            .and_then(|f| f.set_modified(old))
            .expect("age");
    }
    // Enough names for two batches, the interesting ones in both.
    let mut names = vec![
        stored.clone(),
        slot.clone(),
        good.clone(),
        bad.clone(),
        dir.clone(),
        absent.clone(),
    ];
    let filler: Vec<String> = (0..1100u32)
        .map(|i| obj_path(format!("filler {i}").as_bytes()))
        .collect();
    names.extend(filler.iter().cloned());
    names.extend([stored.clone(), good.clone(), dir.clone()]);
    let (status, text) = missing(&s, names.join("\n"));
    assert_eq!(status, 200, "{text}");
    let mut want = vec![slot.as_str(), bad.as_str(), dir.as_str(), absent.as_str()];
    want.extend(filler.iter().map(String::as_str));
    want.push(dir.as_str());
    assert_eq!(text.lines().collect::<Vec<_>>(), want);

    // What GET says agrees (the hand-written content is served, tagged as content).
    let r = http().get(format!("{}{good}", s.url)).send().expect("get");
    assert_eq!(r.status(), 200);
    let etag = r.headers()["etag"].to_str().expect("etag").to_owned();
    assert_eq!(etag, format!("\"{}\"", &good[1..65]));
    // Every object found had its timer refreshed (slots too, as a GET does).
    for p in [&stored, &slot, &good, &bad] {
        let age = std::fs::metadata(file(p))
            .and_then(|m| m.modified())
            .expect("mtime")
            .elapsed()
            .unwrap_or_default();
        assert!(age < Duration::from_secs(600), "{p} not touched: {age:?}");
    }
}
