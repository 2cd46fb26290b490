//! `tig feed push/pull tig+http://HOST:PORT/NAME` end to end: real stores made
//! by the `tig` binary, a real `tig serve` on a loopback port as the relay, and
//! the real `git` to check what arrived. The relay is treated as hostile: its
//! objects and its head list are tampered with directly on disk and over HTTP.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{TigServer, http, sha256_hex, wait_until};

#[path = "fixtures/feed/sync_support.rs"]
mod sync_support;

use sync_support::*;

/// The slot of a `tig kv` key: sha256(hex(sha256(KEY))).
fn slot(key: &str) -> String {
    sha256_hex(sha256_hex(key.as_bytes()).as_bytes())
}

/// The channel's head list as the relay holds it.
fn head_list(server: &TigServer, channel: &str) -> Vec<String> {
    let path = server.obj_file(&slot(&format!("tig-feed/{channel}")));
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Append raw text to a channel's head list (what a hostile writer can do).
fn append_slot(server: &TigServer, channel: &str, text: &str) {
    let url = format!(
        "{}/{}.tig?append=1",
        server.url,
        slot(&format!("tig-feed/{channel}"))
    );
    let r = http().put(url).body(text.to_string()).send().unwrap();
    assert!(r.status().is_success(), "{:?}", r.status());
}

/// The object hash a head-list line's bundle target names.
fn target_hash(line: &str) -> String {
    let target = line.split(' ').nth(2).unwrap();
    target
        .trim_start_matches('/')
        .split('.')
        .next()
        .unwrap()
        .to_string()
}

/// Objects in the pack inside a bundle file.
fn bundle_pack_objects(path: &Path) -> u32 {
    let data = std::fs::read(path).unwrap();
    let at = data
        .windows(6)
        .position(|w| w == b"\n\nPACK")
        .expect("pack in bundle")
        + 2;
    u32::from_be_bytes(data[at + 8..at + 12].try_into().unwrap())
}

fn relay(server: &TigServer, channel: &str) -> String {
    format!("tig+{}/{channel}", server.url)
}

/// Publish, pull, publish more (incrementally), pull again; a fresh store gets
/// everything; a bundle the relay forgot makes the next push a full one.
#[test]
fn publish_and_pull_through_a_relay() {
    let server = TigServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let alice = new_ident(t, "alice");
    let alice_store = new_store(t, "alice-store");
    let bob_store = new_store(t, "bob-store");
    let url = relay(&server, "alice-news");
    let head = format!("refs/heads/{}", alice.id);
    for i in 1..=3 {
        append(&alice_store, &alice, &format!("alice {i}"));
    }
    let out = tig_ok(&alice_store, &["feed", "push", &url]);
    assert!(out.contains("full bundle"), "{out}");
    let lines = head_list(&server, "alice-news");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("tig-feed-v1 full /"), "{lines:?}");
    let tip3 = rev(&alice_store, &head);
    assert!(
        lines[0].ends_with(&format!(" {}={tip3}", alice.id)),
        "{lines:?}"
    );

    // Nothing new: nothing sent, the list is untouched.
    let out = tig_ok(&alice_store, &["feed", "push", &url]);
    assert!(out.contains("nothing to push"), "{out}");
    assert_eq!(head_list(&server, "alice-news").len(), 1);

    let out = tig_ok(&bob_store, &["feed", "pull", &url]);
    assert!(out.contains("new feed, 3 messages"), "{out}");
    assert_eq!(rev(&bob_store, &head), tip3);
    assert_eq!(
        rev(&bob_store, &format!("refs/remotes/alice-news/{}", alice.id)),
        tip3
    );
    tig_ok(&bob_store, &["feed", "verify"]);
    git_ok(&bob_store, &["fsck", "--strict", "--no-dangling"]);

    // Two more: the second line is incremental and carries only those.
    for i in 4..=5 {
        append(&alice_store, &alice, &format!("alice {i}"));
    }
    let out = tig_ok(&alice_store, &["feed", "push", &url]);
    assert!(out.contains("incr bundle"), "{out}");
    let lines = head_list(&server, "alice-news");
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[1].starts_with("tig-feed-v1 incr /"), "{lines:?}");
    let first = server.obj_file(&target_hash(&lines[0]));
    let second = server.obj_file(&target_hash(&lines[1]));
    let tip5 = rev(&alice_store, &head);
    let heads = git_ok(
        &bob_store,
        &["bundle", "list-heads", second.to_str().unwrap()],
    );
    assert_eq!(heads.trim(), format!("{tip5} {head}"));
    let header = std::fs::read(&second).unwrap();
    let header = String::from_utf8_lossy(&header[..200]);
    assert!(header.contains(&format!("\n-{tip3} ")), "{header}");
    assert_eq!(bundle_pack_objects(&second), 2, "only the 2 new commits");
    assert!(std::fs::metadata(&second).unwrap().len() < std::fs::metadata(&first).unwrap().len());

    let out = tig_ok(&bob_store, &["feed", "pull", &url]);
    assert!(out.contains("2 new messages"), "{out}");
    assert_eq!(rev(&bob_store, &head), tip5);
    let out = tig_ok(&bob_store, &["feed", "pull", &url]);
    assert!(out.contains("up to date"), "{out}");

    let carol_store = new_store(t, "carol-store");
    let out = tig_ok(
        &carol_store,
        &["feed", "pull", &url, "--as", "from-relay", "--json"],
    );
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["feeds"][0]["new_messages"], 5, "{out}");
    assert_eq!(report["feeds"][0]["outcome"]["result"], "created", "{out}");
    assert_eq!(count(&carol_store, &head), 5);
    assert!(has_ref(
        &carol_store,
        &format!("refs/remotes/from-relay/{}", alice.id)
    ));
    git_ok(&carol_store, &["fsck", "--strict", "--no-dangling"]);

    // Retention expired the first bundle: the next push is a full one, and a
    // fresh store pulls everything from it alone.
    std::fs::remove_file(&first).unwrap();
    // the server's small-object cache notices a deleted file within ~1 s
    let first_url = format!("{}/{}.tig", server.url, target_hash(&lines[0]));
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            http().head(&first_url).send().unwrap().status() == 404
        }),
        "the relay still serves a deleted bundle"
    );
    append(&alice_store, &alice, "alice 6");
    let o = tig(&alice_store, &["feed", "push", &url]);
    assert!(o.ok() && o.stdout.contains("full bundle"), "{o:?}");
    assert!(o.stderr.contains("no longer has bundle"), "{o:?}");
    let lines = head_list(&server, "alice-news");
    assert!(lines[2].starts_with("tig-feed-v1 full /"), "{lines:?}");
    let dave_store = new_store(t, "dave-store");
    tig_ok(&dave_store, &["feed", "pull", &url]);
    assert_eq!(count(&dave_store, &head), 6);
    let out = tig_ok(&bob_store, &["feed", "pull", &url]);
    assert!(out.contains("1 new messages"), "{out}");
}

/// A bundle over the relay's body limit goes up in chunks (a burst) and comes
/// back verified chunk by chunk.
#[test]
fn big_bundles_go_as_bursts() {
    let server = TigServer::start_with(None, &["--max-size", "1KiB"], &[]);
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let alice = new_ident(t, "alice");
    let alice_store = new_store(t, "alice-store");
    for i in 0..4 {
        let text: String = (0..200)
            .map(|j| format!("{:x}", (i * 7919 + j * 104729) % 4099))
            .collect();
        append(&alice_store, &alice, &text);
    }
    let url = relay(&server, "big");
    let o = tig_env(
        &alice_store,
        &["feed", "push", &url],
        &[("TIG_MAX_SIZE", "1KiB")],
    );
    assert!(o.ok(), "{o:?}");
    assert!(o.stdout.contains("chunks"), "{o:?}");
    let lines = head_list(&server, "big");
    assert!(lines[0].contains(".tig?burst=1 "), "{lines:?}");
    let bob_store = new_store(t, "bob-store");
    let out = tig_ok(&bob_store, &["feed", "pull", &url]);
    assert!(out.contains("new feed, 4 messages"), "{out}");
    let head = format!("refs/heads/{}", alice.id);
    assert_eq!(rev(&bob_store, &head), rev(&alice_store, &head));

    // Item 7 of issue 16: the flag the over-limit advice names exists, is in
    // `--help`, and does what TIG_MAX_SIZE does.
    let help = tig_ok(&alice_store, &["feed", "push", "--help"]);
    assert!(help.contains("--max-size"), "{help}");
    let url = relay(&server, "big-flag");
    let o = tig(&alice_store, &["feed", "push", "--max-size", "1KiB", &url]);
    assert!(o.ok(), "{o:?}");
    assert!(o.stdout.contains("chunks"), "{o:?}");
    let lines = head_list(&server, "big-flag");
    assert!(lines[0].contains(".tig?burst=1 "), "{lines:?}");
    let carol_store = new_store(t, "carol-store");
    let out = tig_ok(&carol_store, &["feed", "pull", &url]);
    assert!(out.contains("new feed, 4 messages"), "{out}");
}

/// The relay is untrusted: swapped bytes, a line naming another bundle, a
/// forged message and a garbage line each fail with one line and move no ref.
#[test]
fn a_hostile_relay_moves_no_ref() {
    let server = TigServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let alice = new_ident(t, "alice");
    let mallory = new_ident(t, "mallory");
    let alice_store = new_store(t, "alice-store");
    let mallory_store = new_store(t, "mallory-store");
    let bob_store = new_store(t, "bob-store");
    append(&alice_store, &alice, "alice 1");
    append(&alice_store, &alice, "alice 2");
    append(&mallory_store, &mallory, "mallory 1");
    let head = format!("refs/heads/{}", alice.id);

    // 1. The bundle object's bytes are replaced on the server's disk.
    let url = relay(&server, "swapped");
    tig_ok(&alice_store, &["feed", "push", &url]);
    let line = head_list(&server, "swapped")[0].clone();
    let file = server.obj_file(&target_hash(&line));
    let good_bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, b"# v2 git bundle\nnot what was published\n").unwrap();
    let before = all_refs(&bob_store);
    let p = tig(&bob_store, &["feed", "pull", &url]);
    assert_eq!(p.code, 1, "{p:?}");
    assert_eq!(p.stderr.lines().count(), 1, "one line: {p:?}");
    assert!(p.stderr.contains("hash mismatch"), "{p:?}");
    assert_eq!(all_refs(&bob_store), before, "no ref moved");
    std::fs::write(&file, &good_bytes).unwrap();

    // 2. A line names alice's tip but points at mallory's (valid) bundle.
    let murl = relay(&server, "mallory");
    tig_ok(&mallory_store, &["feed", "push", &murl]);
    let mline = head_list(&server, "mallory")[0].clone();
    let alice_tip = rev(&alice_store, &head);
    let lie = format!(
        "tig-feed-v1 full /{}.tig {}={alice_tip}\n",
        target_hash(&mline),
        alice.id
    );
    append_slot(&server, "lies", &lie);
    let p = tig(&bob_store, &["feed", "pull", &relay(&server, "lies")]);
    assert_eq!(p.code, 1, "{p:?}");
    assert_eq!(p.stderr.lines().count(), 1, "one line: {p:?}");
    assert!(p.stderr.contains("does not carry"), "{p:?}");
    assert_eq!(all_refs(&bob_store), before, "no ref moved");

    // 3. A bundle carrying a message on alice's feed signed by mallory's key.
    tig_ok(&bob_store, &["feed", "pull", &url]);
    let before = all_refs(&bob_store);
    let evil = t.join("evil");
    git_ok(
        t,
        &[
            "clone",
            "-q",
            "--bare",
            alice_store.to_str().unwrap(),
            evil.to_str().unwrap(),
        ],
    );
    let forged = forge(&evil, &mallory, &alice.id, &alice_tip, t);
    git_ok(&evil, &["update-ref", &head, &forged]);
    let eurl = relay(&server, "swapped");
    tig_ok(&evil, &["feed", "push", &eurl]);
    let p = tig(&bob_store, &["feed", "pull", &eurl]);
    assert_eq!(p.code, 1, "{p:?}");
    assert!(
        p.stderr.contains(&forged) && p.stderr.contains("rejected"),
        "{p:?}"
    );
    assert_eq!(all_refs(&bob_store), before, "no ref moved");
    assert_eq!(rev(&bob_store, &head), alice_tip);

    // 4. Garbage in the head list is named by its line.
    append_slot(&server, "garbage", "tig-feed-v1 full /nope.tig x=y\n");
    let p = tig(&bob_store, &["feed", "pull", &relay(&server, "garbage")]);
    assert_eq!(p.code, 1, "{p:?}");
    assert_eq!(p.stderr.lines().count(), 1, "one line: {p:?}");
    assert!(p.stderr.contains("line 1"), "{p:?}");
    assert_eq!(all_refs(&bob_store), before, "no ref moved");
}

/// Eve publishes two branches of her feed from two stores to one channel: a
/// puller keeps both and `tig feed forks` proves the fork.
#[test]
fn forks_published_through_a_relay_are_kept() {
    let server = TigServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let eve = new_ident(t, "eve");
    let eve1 = new_store(t, "eve-1");
    let eve2 = new_store(t, "eve-2");
    append(&eve1, &eve, "First Message");
    tig_ok(&eve2, &["feed", "pull", "../eve-1"]);
    let for_bob = append(&eve1, &eve, "Message for Bob");
    let for_alice = append(&eve2, &eve, "Message for Alice");
    let url = relay(&server, "eve");
    tig_ok(&eve1, &["feed", "push", &url]);
    let out = tig_ok(&eve2, &["feed", "push", &url]);
    assert!(out.contains("incr bundle"), "{out}");
    assert_eq!(head_list(&server, "eve").len(), 2);

    let p = new_store(t, "puller");
    let o = tig(&p, &["feed", "pull", &url]);
    assert!(o.ok(), "{o:?}");
    assert!(o.stdout.contains("FORK"), "{o:?}");
    let refs = all_refs(&p);
    assert!(
        refs.contains(&for_bob) && refs.contains(&for_alice),
        "both branches kept: {refs}"
    );
    let f = tig(&p, &["feed", "forks"]);
    assert_eq!(f.code, 1, "{f:?}");
    assert!(f.stdout.contains("fork in feed"), "{f:?}");
    assert!(
        f.stdout.contains(&for_bob) && f.stdout.contains(&for_alice),
        "{f:?}"
    );
    // --strict turns the fork into a failure.
    let strict = new_store(t, "strict");
    let s = tig(&strict, &["feed", "pull", "--strict", &url]);
    assert_eq!(s.code, 1, "{s:?}");
}

/// Bad relay URLs and missing channels: one line on stderr, exit 1; an empty
/// channel: "nothing to pull".
#[test]
fn bad_urls_and_empty_channels() {
    let server = TigServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let store = new_store(t, "store");
    for bad in [
        format!("tig+{}/", server.url),
        format!("tig+{}/bad name", server.url),
        format!("tig+{}/x?y=1", server.url),
        "tig+ftp://127.0.0.1:1/x".to_string(),
        format!("tig+{}/{}", server.url, "n".repeat(101)),
        // not usable as the pull's default `--as` name (a git remote name)
        format!("tig+{}/.hidden", server.url),
        format!("tig+{}/a..b", server.url),
        format!("tig+{}/x.lock", server.url),
        format!("tig+{}/.", server.url),
        format!("tig+{}/..", server.url),
    ] {
        for verb in ["pull", "push"] {
            let o = tig(&store, &["feed", verb, &bad]);
            assert_eq!(o.code, 1, "{bad}: {o:?}");
            assert_eq!(o.stderr.lines().count(), 1, "one line: {o:?}");
            assert!(o.stderr.contains("tig+http://HOST:PORT/NAME"), "{o:?}");
        }
    }
    let url = relay(&server, "nobody-here");
    // a bad `--as` is refused before anything is read or downloaded
    for bad in [".x", "a..b", "x.lock", "a/b"] {
        let o = tig(&store, &["feed", "pull", &url, "--as", bad]);
        assert_eq!(o.code, 1, "{bad}: {o:?}");
        assert_eq!(o.stderr.lines().count(), 1, "one line: {o:?}");
        assert!(o.stderr.contains("bad --as name"), "{o:?}");
    }
    // a channel nobody ever pushed to (say, a typo) is an error, not "empty"
    let o = tig(&store, &["feed", "pull", &url]);
    assert_eq!(o.code, 1, "{o:?}");
    assert_eq!(o.stderr.lines().count(), 1, "one line: {o:?}");
    assert!(o.stderr.contains("does not exist"), "{o:?}");
    assert!(all_refs(&store).is_empty());
    // a channel that exists but lists nothing is empty
    append_slot(&server, "nobody-here", "\n");
    let o = tig(&store, &["feed", "pull", &url]);
    assert!(o.ok(), "{o:?}");
    assert!(o.stdout.contains("nothing to pull"), "{o:?}");
    assert!(all_refs(&store).is_empty());
    // a store with no feeds has nothing to publish
    let o = tig(&store, &["feed", "push", &url]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("no feeds"), "{o:?}");
    // a feed the channel does not carry
    let id = "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29";
    let o = tig(&store, &["feed", "pull", &url, id]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("not on relay channel"), "{o:?}");
    // a relay that is not there
    let o = tig(&store, &["feed", "pull", "tig+http://127.0.0.1:1/x"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert_eq!(o.stderr.lines().count(), 1, "one line: {o:?}");
}

/// A pull of some feeds moves refs for those only, yet keeps what later
/// incremental bundles build on; a later full pull gets the rest.
#[test]
fn pulling_some_feeds_of_a_channel() {
    let server = TigServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (a, b) = (new_ident(t, "a"), new_ident(t, "b"));
    let publisher = new_store(t, "publisher");
    append(&publisher, &a, "a 1");
    append(&publisher, &b, "b 1");
    let url = relay(&server, "two");
    tig_ok(&publisher, &["feed", "push", &url]);
    append(&publisher, &b, "b 2");
    tig_ok(&publisher, &["feed", "push", &url]);
    append(&publisher, &a, "a 2");
    tig_ok(&publisher, &["feed", "push", &url]);
    let lines = head_list(&server, "two");
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines[1].contains(&b.id) && !lines[1].contains(&a.id),
        "{lines:?}"
    );

    let (ha, hb) = (
        format!("refs/heads/{}", a.id),
        format!("refs/heads/{}", b.id),
    );
    // A pull of feed a neither downloads nor depends on b's own line: with
    // that bundle gone from the relay, pulling a still works.
    let b_only = server.obj_file(&target_hash(&lines[1]));
    let saved = std::fs::read(&b_only).unwrap();
    std::fs::remove_file(&b_only).unwrap();
    let p = new_store(t, "p");
    let out = tig_ok(&p, &["feed", "pull", &url, &a.id]);
    assert!(out.contains("new feed, 2 messages"), "{out}");
    assert!(!out.contains(&b.id), "{out}");
    std::fs::write(&b_only, saved).unwrap();
    assert_eq!(rev(&p, &ha), rev(&publisher, &ha));
    assert!(!has_ref(&p, &hb));
    let out = tig_ok(&p, &["feed", "pull", &url]);
    assert!(
        out.contains(&format!("{}: new feed, 2 messages", b.id)),
        "{out}"
    );
    assert!(out.contains(&format!("{}: up to date", a.id)), "{out}");
    assert_eq!(rev(&p, &hb), rev(&publisher, &hb));
    tig_ok(&p, &["feed", "verify"]);
}

/// A relay with an API key: publishing needs it (TIG_APIKEY), pulling does not.
#[test]
fn publishing_to_a_relay_with_an_api_key() {
    let server = TigServer::start_with(None, &[], &[("APIKEY", "relay-secret")]);
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let alice = new_ident(t, "alice");
    let store = new_store(t, "alice-store");
    append(&store, &alice, "hello");
    let url = relay(&server, "keyed");
    let o = tig(&store, &["feed", "push", &url]);
    assert_eq!(o.code, 1, "{o:?}");
    assert_eq!(o.stderr.lines().count(), 1, "one line: {o:?}");
    assert!(o.stderr.contains("401"), "{o:?}");
    // the 401 says how to give the key (issue 16.10)
    assert!(
        o.stderr.contains("TIG_APIKEY") && o.stderr.contains("--apikey-file"),
        "{o:?}"
    );
    assert!(head_list(&server, "keyed").is_empty());
    let o = tig_env(
        &store,
        &["feed", "push", &url],
        &[("TIG_APIKEY", "relay-secret")],
    );
    assert!(o.ok(), "{o:?}");
    let bob = new_store(t, "bob-store");
    let out = tig_ok(&bob, &["feed", "pull", &url]);
    assert!(out.contains("new feed, 1 messages"), "{out}");
}

/// Two publishers raced: one republished `full` while the other appended an
/// `incr` built on a line from before it. A fresh pull still gets everything,
/// fetching that older base too.
#[test]
fn an_incr_built_on_a_line_before_the_last_full_one() {
    let server = TigServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let alice = new_ident(t, "alice");
    let store = new_store(t, "alice-store");
    let url = relay(&server, "raced");
    append(&store, &alice, "a 1");
    tig_ok(&store, &["feed", "push", &url]);
    append(&store, &alice, "a 2");
    tig_ok(&store, &["feed", "push", &url]);
    append(&store, &alice, "a 3");
    tig_ok(&store, &["feed", "push", &url]);
    let l = head_list(&server, "raced");
    assert_eq!(l.len(), 3, "{l:?}");
    // L1 full, L2 incr, (L1 again as the racer's full), L3 incr on top of L2.
    let raced = format!("{}\n{}\n{}\n{}\n", l[0], l[1], l[0], l[2]);
    let slot_url = format!("{}/{}.tig", server.url, slot("tig-feed/raced"));
    let r = http().put(slot_url).body(raced).send().unwrap();
    assert!(r.status().is_success(), "{:?}", r.status());
    let p = new_store(t, "p");
    let out = tig_ok(&p, &["feed", "pull", &url]);
    assert!(out.contains("new feed, 3 messages"), "{out}");
    let head = format!("refs/heads/{}", alice.id);
    assert_eq!(rev(&p, &head), rev(&store, &head));
    tig_ok(&p, &["feed", "verify"]);
}

/// A long channel pulls into a fresh store under a low open-file limit: the
/// bundles downloaded before applying are kept as paths, not open files, and
/// libgit2 keeps only so many of the packs they become open.
#[test]
fn a_long_channel_pulls_under_a_low_fd_limit() {
    let server = TigServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let a = new_ident(t, "a");
    let publisher = new_store(t, "publisher");
    let url = relay(&server, "long");
    let pushes = 50;
    for i in 0..pushes {
        append(&publisher, &a, &format!("message {i}"));
        tig_ok(&publisher, &["feed", "push", &url]);
    }
    assert_eq!(head_list(&server, "long").len(), pushes);
    let p = new_store(t, "p");
    let mut cmd = Command::new("sh");
    cmd.current_dir(&p)
        .arg("-c")
        .arg("ulimit -n 48 && exec \"$0\" feed pull \"$1\"")
        .arg(env!("CARGO_BIN_EXE_tig"))
        .arg(&url)
        .env("TIG_LOG", "warn")
        .env_remove("TIG_APIKEY")
        .env_remove("TIG_MAX_SIZE");
    let o = output(cmd);
    assert!(o.ok(), "{o:?}");
    assert!(
        o.stdout.contains(&format!("new feed, {pushes} messages")),
        "{o:?}"
    );
    let head = format!("refs/heads/{}", a.id);
    assert_eq!(rev(&p, &head), rev(&publisher, &head));
    assert_eq!(count(&p, &head), pushes);
}

/// How a fake relay answers for its one bundle.
#[derive(Clone, Copy)]
enum Liar {
    /// HEAD says 10 bytes, GET streams far more (no Content-Length).
    LongerThanHead,
    /// HEAD says 1 GiB, GET streams on (no Content-Length): only the cap stops it.
    Endless,
    /// GET sends its headers and a few bytes, then nothing.
    Stalls,
}

/// A fake relay on 127.0.0.1:0: a channel `lies` whose one line names bundle
/// `h`, answered as `how` says. Serves at most `conns` connections (one request
/// each, `Connection: close`) in a background thread, each bounded in time.
fn fake_relay(how: Liar, conns: usize) -> String {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let h = sha256_hex(b"not what will be sent");
    let feed = "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29";
    let list =
        format!("tig-feed-v1 full /{h}.tig {feed}=0123456789abcdef0123456789abcdef01234567\n");
    let list_path = format!("/{}.tig", slot("tig-feed/lies"));
    let bundle_path = format!("/{h}.tig");
    std::thread::spawn(move || {
        for conn in listener.incoming().take(conns) {
            let Ok(mut s) = conn else { continue };
            let bound = std::time::Duration::from_secs(60);
            s.set_read_timeout(Some(bound)).unwrap();
            s.set_write_timeout(Some(bound)).unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut first = String::new();
            if r.read_line(&mut first).is_err() {
                continue;
            }
            loop {
                let mut l = String::new();
                match r.read_line(&mut l) {
                    Ok(n) if n > 0 && l != "\r\n" => {}
                    _ => break,
                }
            }
            let mut words = first.split(' ');
            let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
            let path = path.split('?').next().unwrap_or("");
            let head = |len: &str| format!("HTTP/1.1 200 OK\r\n{len}Connection: close\r\n\r\n");
            if path == list_path {
                let _ = write!(
                    s,
                    "{}{list}",
                    head(&format!("Content-Length: {}\r\n", list.len()))
                );
            } else if path != bundle_path {
                let _ = write!(
                    s,
                    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            } else if method == "HEAD" {
                let len = match how {
                    Liar::LongerThanHead => 10u64,
                    Liar::Endless => 1 << 30,
                    Liar::Stalls => 1000,
                };
                let _ = write!(s, "{}", head(&format!("Content-Length: {len}\r\n")));
            } else {
                let _ = write!(s, "{}", head(""));
                match how {
                    // At most 400 MiB, until the client hangs up.
                    Liar::LongerThanHead | Liar::Endless => {
                        let chunk = vec![b'x'; 1 << 20];
                        for _ in 0..400 {
                            if s.write_all(&chunk).is_err() {
                                break;
                            }
                        }
                    }
                    // A few bytes, then wait (bounded) for the client to give up.
                    Liar::Stalls => {
                        let _ = s.write_all(b"PACK");
                        let _ = s.flush();
                        let _ = r.read(&mut [0u8; 1]);
                    }
                }
            }
        }
    });
    format!("tig+{base}/lies")
}

/// Every `.tig-*` temp file left anywhere under `dir`.
fn temp_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else if p
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".tig-")
            {
                out.push(p);
            }
        }
    }
    out
}

/// A hostile relay cannot fill the disk or hang a pull: a body longer than its
/// HEAD announced, or over TIG_MAX_BUNDLE, stops the download at once; a
/// stalled one fails after TIG_IDLE_TIMEOUT. One line each, no file left.
#[test]
fn a_lying_or_stalling_relay_is_cut_off() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let store = new_store(t, "store");
    let cases = [
        (
            Liar::LongerThanHead,
            5,
            "",
            "more than the 10 bytes its HEAD announced",
        ),
        (Liar::Endless, 5, "1M", "over its limit of 1.0 MiB"),
        (Liar::Stalls, 10, "", "cannot talk to the server"),
    ];
    for (how, conns, max, expect) in cases {
        let url = fake_relay(how, conns);
        let mut envs = vec![("TIG_IDLE_TIMEOUT", "1")];
        if !max.is_empty() {
            envs.push(("TIG_MAX_BUNDLE", max));
        }
        let o = tig_env(&store, &["feed", "pull", &url], &envs);
        assert_eq!(o.code, 1, "{o:?}");
        assert_eq!(o.stderr.lines().count(), 1, "one line: {o:?}");
        assert!(o.stderr.contains(expect), "{o:?}");
        assert!(o.stderr.contains("nothing applied"), "{o:?}");
        assert!(temp_files(&store).is_empty(), "{:?}", temp_files(&store));
        assert!(all_refs(&store).is_empty());
    }
    // A bad limit is one line too.
    let o = tig_env(
        &store,
        &["feed", "pull", &fake_relay(Liar::Stalls, 0)],
        &[("TIG_MAX_BUNDLE", "lots")],
    );
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("TIG_MAX_BUNDLE"), "{o:?}");
}

/// `tig … | head` ends quietly: stdout a pipe nobody reads any more makes
/// `println!` fail with EPIPE, which must not panic with a backtrace.
#[test]
fn printing_to_a_closed_pipe_is_quiet() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let store = new_store(t, "logged");
    let a = new_ident(t, "a");
    append(&store, &a, "first");
    append(&store, &a, "newest");
    let store_arg = store.to_str().unwrap();
    let commands: [&[&str]; 4] = [
        &["kv", "path", "some-key"],
        &["feed", "init", "store"],
        &["id", "new", "--out", "k.key"],
        &["feed", "-C", store_arg, "log", &a.id],
    ];
    for args in commands {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tig"));
        cmd.current_dir(t)
            .args(args)
            .env("TIG_LOG", "warn")
            .env("RUST_BACKTRACE", "1")
            .stdout(writer);
        let o = output(cmd);
        assert!(!o.stderr.contains("panicked"), "{args:?}: {o:?}");
        assert!(o.stderr.is_empty(), "{args:?}: {o:?}");
        assert_eq!(o.code, 0, "{args:?}: {o:?}");
    }
    // Through a shell, as a user types it.
    let mut cmd = Command::new("sh");
    cmd.current_dir(&store)
        .arg("-c")
        .arg("\"$0\" feed log \"$1\" | head -2")
        .arg(env!("CARGO_BIN_EXE_tig"))
        .arg(&a.id)
        .env("TIG_LOG", "warn");
    let o = output(cmd);
    // the newest message's header line, then its content
    assert!(o.stdout.starts_with("#2 "), "{o:?}");
    assert!(o.stdout.ends_with("\n    newest\n"), "{o:?}");
    assert!(!o.stderr.contains("panicked"), "{o:?}");
}
