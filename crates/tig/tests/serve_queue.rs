//! Issue 13: queues (`GET …?take=1`) and write-only channels, with the real
//! `curl` against the real binary, plus `tig kv take` / `tig kv channel`.

//!
//! Every test but the README's runs twice: on a data directory and on the S3
//! backend against a real SeaweedFS (`common/weed.rs`; skipped with a message
//! outside CI when SeaweedFS is not installed), where `take` is a conditional
//! delete on the ETag that was read.

#[path = "common/backends.rs"]
mod backends;
mod common;
#[path = "common/weed.rs"]
mod weed;

use std::process::{Command, Stdio};

use backends::{Backend, server_on};
use common::*;

const KEY: &str = "k3y";

/// `curl -sS` with `args`; returns (status, body).
fn curl(args: &[&str]) -> (u16, Vec<u8>) {
    let out = Command::new("curl")
        .args(["-sS", "--noproxy", "*", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut body = out.stdout;
    let nl = body.iter().rposition(|&b| b == b'\n').expect("status");
    let status = String::from_utf8_lossy(&body[nl + 1..])
        .parse()
        .expect("code");
    body.truncate(nl);
    (status, body)
}

fn slot_path(name: &str) -> String {
    format!("/{}.tig", sha256_hex(name.as_bytes()))
}

/// A server with the API key [`KEY`] on `backend`.
fn server(backend: Backend) -> Option<TigServer> {
    server_on(backend, KEY)
}

on_both_backends!(
    thirty_concurrent_takers_one_winner,
    take_refuses_content_and_needs_the_key,
    write_only_channel,
    tig_kv_take_and_channel,
);

fn put(s: &TigServer, path: &str, query: &str, body: &str) -> (u16, Vec<u8>) {
    curl(&[
        "-X",
        "PUT",
        "--data-binary",
        body,
        &format!("{}{path}?{query}", s.url),
    ])
}

fn thirty_concurrent_takers_one_winner(s: TigServer) {
    let q = slot_path("queue");
    assert_eq!(put(&s, &q, &format!("apikey={KEY}"), "job 1").0, 200);
    let url = format!("{}{q}?take=1&apikey={KEY}", s.url);
    // 30 curl processes at once.
    let children: Vec<_> = (0..30)
        .map(|_| {
            Command::new("curl")
                .args(["-sS", "--noproxy", "*", "-w", "\n%{http_code}", &url])
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawn curl")
        })
        .collect();
    let mut won = Vec::new();
    let mut lost = 0;
    for c in children {
        let out = c.wait_with_output().expect("curl");
        let text = String::from_utf8(out.stdout).expect("utf8");
        let (body, code) = text.rsplit_once('\n').expect("code");
        match code {
            "200" => won.push(body.to_string()),
            "404" => lost += 1,
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(won, vec!["job 1".to_string()]);
    assert_eq!(lost, 29);
    assert_eq!(curl(&[&format!("{}{q}", s.url)]).0, 404, "slot gone");
}

fn take_refuses_content_and_needs_the_key(s: TigServer) {
    let (_, path) = curl(&[
        "-X",
        "PUT",
        "--data-binary",
        "immutable",
        &format!("{}/?apikey={KEY}", s.url),
    ]);
    let path = String::from_utf8(path).expect("path");
    let (code, body) = curl(&[&format!("{}{path}?take=1&apikey={KEY}", s.url)]);
    assert_eq!(code, 409, "{}", String::from_utf8_lossy(&body));
    assert_eq!(body.iter().filter(|&&b| b == b'\n').count(), 1, "one line");
    assert_eq!(
        curl(&[&format!("{}{path}", s.url)]),
        (200, b"immutable".to_vec())
    );
    let q = slot_path("needs key");
    put(&s, &q, &format!("apikey={KEY}"), "v");
    assert_eq!(curl(&[&format!("{}{q}?take=1", s.url)]).0, 401);
    assert_eq!(curl(&[&format!("{}{q}", s.url)]).1, b"v", "still there");
    assert_eq!(
        curl(&[&format!(
            "{}/{}.tig?take=1&apikey={KEY}",
            s.url,
            "0".repeat(64)
        )])
        .0,
        404
    );
}

fn write_only_channel(s: TigServer) {
    let target = slot_path("inbox");
    let chan = slot_path("channel");
    let line = format!("Write only channel to tig {target}");
    let key = format!("apikey={KEY}");
    assert_eq!(put(&s, &chan, &key, &line).0, 200);
    // 20 concurrent appenders, without the key: all land in the target.
    let url = format!("{}{chan}?append=1", s.url);
    let children: Vec<_> = (0..20)
        .map(|i| {
            Command::new("curl")
                .args([
                    "-sS",
                    "--noproxy",
                    "*",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                ])
                .args([
                    "-X",
                    "PUT",
                    "--data-binary",
                    &format!("message {i:02}\n"),
                    &url,
                ])
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawn curl")
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().expect("curl");
        assert_eq!(out.stdout, b"200");
    }
    let (code, inbox) = curl(&[&format!("{}{target}", s.url)]);
    assert_eq!(code, 200);
    let inbox = String::from_utf8(inbox).expect("utf8");
    let mut lines: Vec<&str> = inbox.lines().collect();
    lines.sort_unstable();
    let want: Vec<String> = (0..20).map(|i| format!("message {i:02}")).collect();
    assert_eq!(lines, want);
    // Reading the channel reveals nothing, on GET, HEAD and bursts.
    assert_eq!(curl(&[&format!("{}{chan}", s.url)]), (200, Vec::new()));
    let (_, head) = curl(&["-I", &format!("{}{chan}", s.url)]);
    assert!(
        String::from_utf8_lossy(&head)
            .to_ascii_lowercase()
            .contains("content-length: 0")
    );
    assert_eq!(
        curl(&[&format!("{}{chan}?burst=1", s.url)]),
        (200, Vec::new())
    );
    // It cannot be deleted or taken through itself.
    let (code, _) = curl(&["-X", "DELETE", &format!("{}{chan}?{key}", s.url)]);
    assert_eq!(code, 409);
    assert_eq!(curl(&[&format!("{}{chan}?take=1&{key}", s.url)]).0, 409);
    // A plain PUT (no key) also goes to the target, replacing it.
    assert_eq!(put(&s, &chan, "", "replaced").0, 200);
    assert_eq!(curl(&[&format!("{}{target}", s.url)]).1, b"replaced");
    assert_eq!(curl(&[&format!("{}{chan}", s.url)]), (200, Vec::new()));
    // Other slots still need the key.
    assert_eq!(put(&s, &slot_path("other"), "", "x").0, 401);
    // Chains and content are refused.
    let chain = slot_path("chain");
    let (code, _) = put(
        &s,
        &chain,
        &key,
        &format!("Write only channel to tig {chan}"),
    );
    assert_eq!(code, 409, "a channel to a channel");
    let (code, _) = put(
        &s,
        &chan,
        "",
        &format!("Write only channel to tig {target}"),
    );
    assert_eq!(code, 409, "a channel written through a channel");
    let (_, content) = curl(&[
        "-X",
        "PUT",
        "--data-binary",
        "c",
        &format!("{}/?{key}", s.url),
    ]);
    let content = String::from_utf8(content).expect("path");
    let (code, _) = put(
        &s,
        &chain,
        &key,
        &format!("Write only channel to tig {content}"),
    );
    assert_eq!(code, 409, "a channel to content");
    assert_eq!(
        curl(&[&format!("{}{chain}", s.url)]).0,
        404,
        "nothing stored"
    );
}

fn tig(s: &TigServer, args: &[&str]) -> std::process::Output {
    Command::new(tig_bin())
        .args(args)
        .env("TIG_SERVER", &s.url)
        .env("TIG_APIKEY", KEY)
        .env("NO_PROXY", "*")
        .output()
        .expect("run tig")
}

fn tig_kv_take_and_channel(s: TigServer) {
    let out = tig(&s, &["kv", "set", "jobs", "resize 42"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = tig(&s, &["kv", "take", "jobs"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"resize 42");
    let out = tig(&s, &["kv", "take", "jobs"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).expect("utf8");
    assert_eq!(err.lines().count(), 1, "{err}");

    let out = tig(&s, &["kv", "channel", "mailbox"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let chan = String::from_utf8(out.stdout)
        .expect("utf8")
        .trim_end()
        .to_string();
    assert!(chan.starts_with('/') && chan.ends_with(".tig"), "{chan}");
    // Anyone writes through the channel; the owner reads KEY's slot.
    let (code, _) = curl(&[
        "-X",
        "PUT",
        "--data-binary",
        "hi",
        &format!("{}{chan}?append=1", s.url),
    ]);
    assert_eq!(code, 200);
    let out = tig(&s, &["kv", "get", "mailbox"]);
    assert_eq!(out.stdout, b"hi");
    assert_eq!(curl(&[&format!("{}{chan}", s.url)]), (200, Vec::new()));
    // Two channels for one key are two different paths.
    let again = tig(&s, &["kv", "channel", "mailbox"]);
    assert_ne!(String::from_utf8_lossy(&again.stdout).trim_end(), chan);
}

/// The README's queue, channel and read-only examples (the `sh` block after the
/// marker) run as written and print what their comments say.
#[test]
fn readme_queue_and_channel_examples_run_as_written() {
    let readme = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    let text = std::fs::read_to_string(readme).expect("README");
    let start = text
        .find("**Queues, channels, read-only access.**")
        .expect("section");
    let block_start = text[start..].find("```sh\n").expect("block") + start + 6;
    let block_end = text[block_start..].find("```").expect("end") + block_start;
    let block = &text[block_start..block_end];
    let data = tempfile::tempdir().expect("data");
    std::fs::write(data.path().join("apikey"), "abc\n").expect("key");
    let scratch = tempfile::tempdir().expect("scratch");
    let s = TigServer::start_with(Some(data.path()), &[], &[]);
    let mut checked = 0;
    let mut script = String::from("set -e\n");
    let mut expects = Vec::new();
    for line in block
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let cmd = line
            .split(" # ")
            .next()
            .expect("command")
            .replace("http://127.0.0.1:7777", &s.url)
            .replace("/tmp/", &format!("{}/", scratch.path().display()));
        let expect = line.split_once(" # ").map(|(_, e)| e.trim().to_string());
        script.push_str(&format!("{cmd}\necho '@@@'\n"));
        expects.push((line.to_string(), expect));
    }
    let out = Command::new("bash")
        .args(["-c", &script])
        .env("NO_PROXY", "*")
        .env("no_proxy", "*")
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf8");
    let outputs: Vec<&str> = stdout.split("@@@\n").collect();
    for ((line, expect), got) in expects.iter().zip(&outputs) {
        if let Some(e) = expect {
            let want = if e == "(empty)" { "" } else { e.as_str() };
            assert_eq!(got.trim_end(), want, "{line}");
            checked += 1;
        }
    }
    assert!(checked >= 5, "only {checked} outputs checked");
}
