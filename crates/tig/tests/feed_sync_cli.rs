//! `tig feed pull/push/bundle/forks/graph/delete/verify-proof` end to end: real
//! stores made by the `tig` binary, checked with the real `git`.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::path::Path;
use std::process::Command;

#[path = "fixtures/feed/sync_support.rs"]
mod sync_support;

use sync_support::*;

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// The seed's parts 2 and 3: Eve forks her log, one branch for Bob and one for
/// Alice. Plain git then refuses to replicate Eve's feed between Bob and
/// Alice; `tig feed pull` keeps both branches, and `forks` proves the fork.
#[test]
fn seed_story_eve_forks_bob_and_alice() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (bob, alice, eve) = (
        new_ident(t, "bob"),
        new_ident(t, "alice"),
        new_ident(t, "eve"),
    );
    let eve_store = new_store(t, "eve-store");
    let bob_store = new_store(t, "bob-store");
    let alice_store = new_store(t, "alice-store");
    append(&bob_store, &bob, "bob 1");
    append(&alice_store, &alice, "alice 1");

    // Eve: a first message, then one for Bob, rewind, one for Alice.
    let first = append(&eve_store, &eve, "First Message");
    let for_bob = append(&eve_store, &eve, "Message for Bob");
    let eve_ref = format!("refs/heads/{}", eve.id);
    git_ok(
        &eve_store,
        &["update-ref", "refs/heads/Eve-for-Bob", &eve_ref],
    );
    // Bob replicates from Eve while she shows him his branch.
    let out = tig_ok(&bob_store, &["feed", "pull", "../eve-store"]);
    assert!(out.contains(&eve.id), "{out}");
    git_ok(&eve_store, &["update-ref", &eve_ref, &first]);
    let for_alice = append(&eve_store, &eve, "Message for Alice");
    git_ok(
        &eve_store,
        &["update-ref", "refs/heads/Eve-for-Alice", &eve_ref],
    );
    tig_ok(&alice_store, &["feed", "pull", "../eve-store"]);
    assert_eq!(rev(&bob_store, &eve_ref), for_bob);
    assert_eq!(rev(&alice_store, &eve_ref), for_alice);

    // Plain git: replicating Eve's feed from Bob to Alice is refused.
    let spec = format!("{eve_ref}:{eve_ref}");
    let plain = git(&alice_store, &["fetch", "../bob-store", &spec]);
    assert!(!plain.ok(), "plain git accepted a forked log: {plain:?}");
    assert!(plain.stderr.contains("non-fast-forward"), "{plain:?}");

    // tig: both pulls succeed, keep both branches, say it is a fork.
    let a = tig(&alice_store, &["feed", "pull", "../bob-store"]);
    assert!(a.ok(), "{a:?}");
    assert!(a.stdout.contains("FORK"), "{a:?}");
    let b = tig(&bob_store, &["feed", "pull", "../alice-store"]);
    assert!(b.ok(), "{b:?}");
    assert!(b.stdout.contains("FORK"), "{b:?}");
    // --strict turns the fork into a failure.
    let s = tig(&bob_store, &["feed", "pull", "--strict", "../alice-store"]);
    assert!(!s.ok(), "{s:?}");

    for (store, other, mine) in [
        (&alice_store, "bob-store", &for_alice),
        (&bob_store, "alice-store", &for_bob),
    ] {
        // local head unchanged, both branches kept under refs/remotes
        assert_eq!(&rev(store, &eve_ref), mine);
        assert_eq!(
            &rev(store, &format!("refs/remotes/eve-store/{}", eve.id)),
            mine
        );
        let theirs = rev(store, &format!("refs/remotes/{other}/{}", eve.id));
        assert_ne!(&theirs, mine);
        // exactly one fork, at message 1, between the two messages
        let f = tig(store, &["feed", "forks", "--json"]);
        assert_eq!(f.code, 1, "forks exit status says forks exist: {f:?}");
        let v = json(&f.stdout);
        let forks = v.as_array().unwrap();
        assert_eq!(forks.len(), 1, "{v:#}");
        assert_eq!(forks[0]["feed"], eve.id.as_str());
        assert_eq!(forks[0]["fork_point"]["commit"], first.as_str());
        assert_eq!(forks[0]["fork_point"]["sequence"], 1);
        let mut contents: Vec<&str> = forks[0]["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                assert_eq!(m["signature"], "good");
                assert_eq!(m["sequence"], 2);
                m["content"].as_str().unwrap()
            })
            .collect();
        contents.sort();
        assert_eq!(contents, ["Message for Alice", "Message for Bob"]);
        // and no quarantine refs are left behind
        assert!(!all_refs(store).contains("refs/tig/incoming"));
    }

    // Meanwhile Bob's and Alice's own feeds replicated normally.
    assert_eq!(count(&alice_store, &format!("refs/heads/{}", bob.id)), 1);
    assert_eq!(count(&bob_store, &format!("refs/heads/{}", alice.id)), 1);
    append(&bob_store, &bob, "bob 2");
    let out = tig_ok(&alice_store, &["feed", "pull", "../bob-store"]);
    assert!(out.contains("1 new messages"), "{out}");
    assert_eq!(count(&alice_store, &format!("refs/heads/{}", bob.id)), 2);
    let v = tig(&alice_store, &["feed", "verify", &bob.id, &alice.id]);
    assert!(v.ok(), "{v:?}");

    // The exported proof verifies on its own, with tig and with plain git.
    let proof = t.join("eve-fork.proof");
    let f = tig(
        &alice_store,
        &["feed", "forks", "--export", proof.to_str().unwrap()],
    );
    assert_eq!(f.code, 1, "{f:?}");
    let p = tig_ok(t, &["feed", "verify-proof", proof.to_str().unwrap()]);
    assert!(p.contains(&eve.id) && p.contains("Message for Bob"), "{p}");
    let empty = t.join("empty");
    git_ok(t, &["init", "-q", "--bare", empty.to_str().unwrap()]);
    git_ok(&empty, &["bundle", "verify", proof.to_str().unwrap()]);

    // Exit status: 0 = no fork (and no proof file), 2 = the check itself failed.
    let none = t.join("none.proof");
    let f = tig(
        &alice_store,
        &["feed", "forks", &bob.id, "--export", none.to_str().unwrap()],
    );
    assert_eq!(f.code, 0, "{f:?}");
    assert!(!none.exists(), "no proof file without a fork");
    let f = tig(&alice_store, &["feed", "forks", "no-such-feed"]);
    assert_eq!(f.code, 2, "{f:?}");
    assert_eq!(f.stderr.lines().count(), 1, "{f:?}");

    // The graph shows both branches and marks the fork point.
    let g = tig_ok(&alice_store, &["feed", "graph", &eve.id]);
    assert!(g.contains("fork point"), "{g}");
    assert!(
        g.contains("Message for Bob") && g.contains("Message for Alice"),
        "{g}"
    );
    assert!(g.contains("|/"), "{g}");
    let d = tig_ok(&alice_store, &["feed", "graph", "--dot", &eve.id]);
    assert!(d.starts_with("digraph") && d.contains(&first), "{d}");
}

/// Read the object count from the pack inside a bundle file.
fn bundle_pack_objects(path: &Path) -> u32 {
    let data = std::fs::read(path).unwrap();
    let at = data
        .windows(6)
        .position(|w| w == b"\n\nPACK")
        .expect("pack in bundle")
        + 2;
    u32::from_be_bytes(data[at + 8..at + 12].try_into().unwrap())
}

#[test]
fn bundles_full_then_incremental() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let bob = new_ident(t, "bob");
    let bob_store = new_store(t, "bob-store");
    let alice_store = new_store(t, "alice-store");
    for i in 0..5 {
        append(&bob_store, &bob, &format!("bob {i}"));
    }
    let full = t.join("bob.bundle");
    tig_ok(
        &bob_store,
        &["feed", "bundle", "create", full.to_str().unwrap()],
    );
    git_ok(&bob_store, &["bundle", "verify", full.to_str().unwrap()]);
    let out = tig_ok(&alice_store, &["feed", "pull", full.to_str().unwrap()]);
    assert!(out.contains("new feed, 5 messages"), "{out}");
    let head = format!("refs/heads/{}", bob.id);
    assert_eq!(rev(&alice_store, &head), rev(&bob_store, &head));
    assert!(has_ref(
        &alice_store,
        &format!("refs/remotes/bob/{}", bob.id)
    ));

    // Three more; the incremental bundle carries only those.
    let frontier = rev(&bob_store, &head);
    for i in 5..8 {
        append(&bob_store, &bob, &format!("bob {i}"));
    }
    let inc = t.join("bob-inc.bundle");
    let since = format!("{}={frontier}", bob.id);
    tig_ok(
        &bob_store,
        &[
            "feed",
            "bundle",
            "create",
            inc.to_str().unwrap(),
            "--since",
            &since,
        ],
    );
    git_ok(&bob_store, &["bundle", "verify", inc.to_str().unwrap()]);
    // a store without the frontier cannot use it
    let empty = new_store(t, "empty");
    let e = tig(&empty, &["feed", "pull", inc.to_str().unwrap()]);
    assert!(!e.ok() && e.stderr.contains(&frontier), "{e:?}");
    assert!(std::fs::metadata(&inc).unwrap().len() < std::fs::metadata(&full).unwrap().len());
    assert_eq!(bundle_pack_objects(&inc), 3, "only the 3 new commits");
    assert_eq!(bundle_pack_objects(&full), 6, "5 commits + the empty tree");
    let out = tig_ok(&alice_store, &["feed", "pull", inc.to_str().unwrap()]);
    assert!(out.contains("3 new messages"), "{out}");
    assert_eq!(rev(&alice_store, &head), rev(&bob_store, &head));

    // --for takes the frontier from what we last sent/received from a store.
    tig_ok(&bob_store, &["feed", "push", "../alice-store"]);
    append(&bob_store, &bob, "bob 8");
    let inc2 = t.join("bob-inc2.bundle");
    let out = tig_ok(
        &bob_store,
        &[
            "feed",
            "bundle",
            "create",
            inc2.to_str().unwrap(),
            "--for",
            "alice-store",
            "--json",
        ],
    );
    assert_eq!(json(&out)["commits"], 1, "{out}");
    assert_eq!(bundle_pack_objects(&inc2), 1);
    tig_ok(&alice_store, &["feed", "pull", inc2.to_str().unwrap()]);
    assert_eq!(count(&alice_store, &head), 9);
    // and the bundle git writes itself is read too
    let gitb = t.join("git.bundle");
    git_ok(
        &bob_store,
        &["bundle", "create", gitb.to_str().unwrap(), &head],
    );
    let fresh = new_store(t, "fresh");
    tig_ok(&fresh, &["feed", "pull", gitb.to_str().unwrap()]);
    assert_eq!(count(&fresh, &head), 9);
}

#[test]
fn replication_over_file_url_and_bare_hub() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let bob = new_ident(t, "bob");
    let bob_store = new_store(t, "bob-store");
    let alice_store = new_store(t, "alice-store");
    let hub = t.join("hub.git");
    git_ok(t, &["init", "-q", "--bare", hub.to_str().unwrap()]);
    for i in 0..3 {
        append(&bob_store, &bob, &format!("bob {i}"));
    }
    let head = format!("refs/heads/{}", bob.id);
    // file:// URL
    let url = format!("file://{}", bob_store.display());
    let out = tig_ok(&alice_store, &["feed", "pull", &url]);
    assert!(out.contains("new feed, 3 messages"), "{out}");
    assert!(has_ref(
        &alice_store,
        &format!("refs/remotes/bob-store/{}", bob.id)
    ));
    // bare hub: bob pushes, alice pulls
    append(&bob_store, &bob, "bob 3");
    let out = tig_ok(&bob_store, &["feed", "push", hub.to_str().unwrap()]);
    assert!(out.contains(&bob.id), "{out}");
    assert_eq!(rev(&hub, &head), rev(&bob_store, &head));
    let out = tig_ok(&alice_store, &["feed", "pull", hub.to_str().unwrap()]);
    assert!(out.contains("1 new messages"), "{out}");
    assert_eq!(rev(&alice_store, &head), rev(&bob_store, &head));
    assert!(has_ref(
        &alice_store,
        &format!("refs/remotes/hub/{}", bob.id)
    ));
    // pushing again is a no-op; a fork is never pushed over the hub's ref
    tig_ok(&bob_store, &["feed", "push", hub.to_str().unwrap()]);
    let hub_tip = rev(&hub, &head);
    let parent = rev(&alice_store, &format!("{head}~1"));
    git_ok(&alice_store, &["update-ref", &head, &parent]);
    append(&alice_store, &bob_as(&bob), "forked bob 3");
    let p = tig(&alice_store, &["feed", "push", hub.to_str().unwrap()]);
    assert!(!p.ok(), "{p:?}");
    assert!(p.stderr.contains("not pushed"), "{p:?}");
    assert_eq!(rev(&hub, &head), hub_tip, "the hub's ref did not move");
}

/// The same key, to write a fork of bob's feed in another store.
fn bob_as(bob: &Ident) -> Ident {
    Ident {
        key: bob.key.clone(),
        id: bob.id.clone(),
    }
}

#[test]
fn hostile_sources_move_no_ref() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let bob = new_ident(t, "bob");
    let mallory = new_ident(t, "mallory");
    let good = new_store(t, "good");
    for i in 0..3 {
        append(&good, &bob, &format!("bob {i}"));
    }
    let head = format!("refs/heads/{}", bob.id);
    let mine = new_store(t, "mine");
    tig_ok(&mine, &["feed", "pull", "../good"]);
    let before = all_refs(&mine);

    // 1. bob's ref carries a message signed by mallory's key (authored as bob).
    let evil = t.join("evil");
    git_ok(
        t,
        &[
            "clone",
            "-q",
            "--bare",
            good.to_str().unwrap(),
            evil.to_str().unwrap(),
        ],
    );
    let tip = rev(&evil, &head);
    let forged = forge(&evil, &mallory, &bob.id, &tip, t);
    git_ok(&evil, &["update-ref", &head, &forged]);
    let p = tig(&mine, &["feed", "pull", "../evil"]);
    assert!(!p.ok(), "{p:?}");
    assert!(
        p.stderr.contains(&forged) && p.stderr.contains("rejected"),
        "{p:?}"
    );
    assert_eq!(all_refs(&mine), before, "no ref moved");
    // Pulling it again: the forged message is now among this store's objects
    // (kept from the rejected pull), so the copy finds nothing new to read;
    // it must still be checked and refused.
    let again = tig(&mine, &["feed", "pull", "../evil"]);
    assert!(!again.ok(), "{again:?}");
    assert!(again.stderr.contains(&forged), "{again:?}");
    assert_eq!(all_refs(&mine), before, "no ref moved");

    // 2. a rewritten, unsigned history that does not descend from ours.
    let rewritten = t.join("rewritten");
    git_ok(t, &["init", "-q", "--bare", rewritten.to_str().unwrap()]);
    let mut cmd = Command::new("git");
    cmd.current_dir(&rewritten)
        .args([
            "commit-tree",
            "-m",
            "bob never said this",
            "4b825dc642cb6eb9a060e54bf8d69288fbee4904",
        ])
        .env("GIT_AUTHOR_NAME", &bob.id)
        .env("GIT_AUTHOR_EMAIL", "")
        .env("GIT_COMMITTER_NAME", &bob.id)
        .env("GIT_COMMITTER_EMAIL", "")
        .env("HOME", t);
    let o = output(cmd);
    assert!(o.ok(), "{o:?}");
    let fake = o.stdout.trim().to_string();
    git_ok(&rewritten, &["update-ref", &head, &fake]);
    let p = tig(&mine, &["feed", "pull", "../rewritten"]);
    assert!(!p.ok(), "{p:?}");
    assert!(p.stderr.contains(&fake), "{p:?}");
    assert_eq!(all_refs(&mine), before, "no ref moved");

    // 3. a truncated or corrupt bundle changes nothing at all.
    let b = t.join("good.bundle");
    append(&good, &bob, "bob 3");
    tig_ok(&good, &["feed", "bundle", "create", b.to_str().unwrap()]);
    let data = std::fs::read(&b).unwrap();
    let packs_before = std::fs::read_dir(mine.join("objects/pack"))
        .unwrap()
        .count();
    let truncated = t.join("truncated.bundle");
    std::fs::write(&truncated, &data[..data.len() - 40]).unwrap();
    let mut flipped = data.clone();
    let n = flipped.len();
    flipped[n - 30] ^= 0x55;
    let corrupt = t.join("corrupt.bundle");
    std::fs::write(&corrupt, &flipped).unwrap();
    let header_only = t.join("header.bundle");
    let cut = data.windows(2).position(|w| w == b"\n\n").unwrap() + 2;
    std::fs::write(&header_only, &data[..cut]).unwrap();
    for bad in [&truncated, &corrupt, &header_only] {
        let p = tig(&mine, &["feed", "pull", bad.to_str().unwrap()]);
        assert!(!p.ok(), "{p:?}");
        assert_eq!(p.stderr.lines().count(), 1, "one line: {p:?}");
        assert!(p.stderr.contains("corrupt bundle"), "{p:?}");
        assert_eq!(all_refs(&mine), before, "no ref moved");
        let packs = std::fs::read_dir(mine.join("objects/pack"))
            .unwrap()
            .count();
        assert_eq!(packs, packs_before, "no pack left behind");
    }
    let notb = t.join("not-a-bundle");
    std::fs::write(&notb, b"hello\n").unwrap();
    let p = tig(&mine, &["feed", "pull", notb.to_str().unwrap()]);
    assert!(!p.ok() && p.stderr.contains("not a git bundle"), "{p:?}");
    // the good bundle still applies
    tig_ok(&mine, &["feed", "pull", b.to_str().unwrap()]);
    assert_eq!(count(&mine, &head), 4);
    git_ok(&mine, &["fsck", "--no-dangling"]);
}

/// A source with one broken feed (a gitlink in a message's tree; a ref naming an
/// object the source does not have) still gives its good feeds; the broken ones
/// are rejected, each with its reason, and move no ref.
#[test]
fn one_broken_feed_does_not_block_the_others() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (bob, carol, dave) = (
        new_ident(t, "bob"),
        new_ident(t, "carol"),
        new_ident(t, "dave"),
    );
    let hub = new_store(t, "hub");
    append(&hub, &bob, "bob 1");
    let carol_tip = append(&hub, &carol, "carol 1");
    // carol's next message has a tree holding a gitlink (a submodule's commit,
    // which is never in this repository)
    let tree = {
        let mut cmd = Command::new("git");
        cmd.current_dir(&hub)
            .args(["mktree"])
            .stdin(std::process::Stdio::piped());
        let mut child = cmd.stdout(std::process::Stdio::piped()).spawn().unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"160000 commit abcdefabcdefabcdefabcdefabcdefabcdefabcd\tsub\n")
            .unwrap();
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success());
        String::from_utf8(o.stdout).unwrap().trim().to_string()
    };
    let mut cmd = Command::new("git");
    cmd.current_dir(&hub)
        .args(["commit-tree", &tree, "-p", &carol_tip, "-m", "gitlink"])
        .env("GIT_AUTHOR_NAME", &carol.id)
        .env("GIT_AUTHOR_EMAIL", "")
        .env("GIT_COMMITTER_NAME", &carol.id)
        .env("GIT_COMMITTER_EMAIL", "")
        .env("HOME", t);
    let o = output(cmd);
    assert!(o.ok(), "{o:?}");
    let gitlinked = o.stdout.trim().to_string();
    git_ok(
        &hub,
        &[
            "update-ref",
            &format!("refs/heads/{}", carol.id),
            &gitlinked,
        ],
    );
    // dave's ref names a commit the hub does not have
    let missing = "1234567890123456789012345678901234567890";
    std::fs::write(
        hub.join("refs/heads").join(&dave.id),
        format!("{missing}\n"),
    )
    .unwrap();

    let mine = new_store(t, "mine");
    let p = tig(&mine, &["feed", "pull", "../hub"]);
    assert_eq!(p.code, 1, "rejections exit 1: {p:?}");
    assert!(p.stdout.contains(&bob.id), "{p:?}");
    assert!(
        p.stderr.contains(&gitlinked) && p.stderr.contains(missing),
        "each broken feed named with its reason: {p:?}"
    );
    assert_eq!(
        rev(&mine, &format!("refs/heads/{}", bob.id)),
        rev(&hub, &format!("refs/heads/{}", bob.id)),
        "the good feed arrived"
    );
    assert!(!has_ref(&mine, &format!("refs/heads/{}", carol.id)));
    assert!(!has_ref(&mine, &format!("refs/heads/{}", dave.id)));
    git_ok(&mine, &["fsck", "--strict"]);
}

#[test]
fn delete_removes_a_feed_for_real() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let bob = new_ident(t, "bob");
    let alice = new_ident(t, "alice");
    let store = new_store(t, "store");
    let other = new_store(t, "other");
    let mut bob_commits = Vec::new();
    for i in 0..4 {
        bob_commits.push(append(&other, &bob, &format!("bob {i}")));
    }
    for i in 0..3 {
        append(&store, &alice, &format!("alice {i}"));
    }
    tig_ok(&store, &["feed", "pull", "../other"]);
    tig_ok(&store, &["feed", "alias", "bob-frontier", &bob.id]);
    // a bundle pulled too, so packs hold bob's messages as well as loose objects
    let b = t.join("b.bundle");
    append(&other, &bob, "bob 4");
    bob_commits.push(rev(&other, &format!("refs/heads/{}", bob.id)));
    tig_ok(&other, &["feed", "bundle", "create", b.to_str().unwrap()]);
    tig_ok(&store, &["feed", "pull", b.to_str().unwrap()]);
    for c in &bob_commits {
        git_ok(&store, &["cat-file", "-e", c]);
    }
    let alice_tip = rev(&store, &format!("refs/heads/{}", alice.id));

    // by id: an alias is refused (feed_safety_cli checks that), the alias goes too
    let out = tig_ok(&store, &["feed", "delete", &bob.id]);
    assert!(out.contains(&bob.id), "{out}");
    for c in &bob_commits {
        let e = git(&store, &["cat-file", "-e", c]);
        assert!(!e.ok(), "commit {c} survived deletion");
    }
    let refs = all_refs(&store);
    assert!(!refs.contains(&bob.id), "{refs}");
    assert!(!has_ref(&store, "refs/heads/bob-frontier"));
    git_ok(&store, &["fsck", "--strict", "--no-dangling"]);
    // alice is untouched
    assert_eq!(rev(&store, &format!("refs/heads/{}", alice.id)), alice_tip);
    let v = tig(&store, &["feed", "verify", &alice.id]);
    assert!(v.ok(), "{v:?}");
    // deleting again is a clear error
    let again = tig(&store, &["feed", "delete", &bob.id]);
    assert!(
        !again.ok() && again.stderr.lines().count() == 1,
        "{again:?}"
    );
}
