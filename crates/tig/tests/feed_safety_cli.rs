//! The data-losing and misleading cases of a new user's first hour (issue 16,
//! items 2 and 5), end to end with the real `tig`, `git` and a real terminal
//! (`script`): `feed delete` takes feed ids only and asks first on a terminal,
//! `feed alias --delete` removes only an alias, and a forked feed is reported
//! as forked by `feed list` and `feed verify`.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "fixtures/feed/sync_support.rs"]
mod sync_support;

use sync_support::*;

/// A store holding bob's feed (3 messages) with the alias bob-frontier.
fn bob_with_alias(t: &Path) -> (std::path::PathBuf, Ident, Vec<String>) {
    let bob = new_ident(t, "bob");
    let store = new_store(t, "store");
    let commits: Vec<String> = (0..3)
        .map(|i| append(&store, &bob, &format!("bob {i}")))
        .collect();
    tig_ok(&store, &["feed", "alias", "bob-frontier", &bob.id]);
    (store, bob, commits)
}

#[test]
fn delete_refuses_an_alias_and_names_both_ways_out() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, bob, commits) = bob_with_alias(tmp.path());
    let refs_before = all_refs(&store);

    let o = tig(&store, &["feed", "delete", "bob-frontier"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert_eq!(o.stderr.lines().count(), 1, "{o:?}");
    assert!(o.stderr.contains("alias"), "{o:?}");
    assert!(o.stderr.contains(&bob.id), "{o:?}");
    assert!(o.stderr.contains("alias --delete bob-frontier"), "{o:?}");
    // nothing was touched
    assert_eq!(all_refs(&store), refs_before);
    for c in &commits {
        git_ok(&store, &["cat-file", "-e", c]);
    }
    // a name that is neither is refused too
    let o = tig(&store, &["feed", "delete", "bob-frontir"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("not a feed id"), "{o:?}");
    assert_eq!(all_refs(&store), refs_before);
}

#[test]
fn alias_delete_removes_only_the_alias() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, bob, commits) = bob_with_alias(tmp.path());
    tig_ok(&store, &["feed", "alias", "bob-2", &bob.id]);
    let tip = rev(&store, &format!("refs/heads/{}", bob.id));

    let out = tig_ok(&store, &["feed", "alias", "--delete", "bob-frontier"]);
    assert!(
        out.contains("bob-frontier") && out.contains(&bob.id),
        "{out}"
    );
    assert!(!has_ref(&store, "refs/heads/bob-frontier"));
    // the feed, its messages and its other alias stay
    assert_eq!(rev(&store, &format!("refs/heads/{}", bob.id)), tip);
    assert_eq!(rev(&store, "refs/heads/bob-2"), tip);
    for c in &commits {
        git_ok(&store, &["cat-file", "-e", c]);
    }
    let v = tig_ok(&store, &["feed", "verify", &bob.id]);
    assert_eq!(v.trim(), format!("{}: ok (3 messages)", bob.id));
    // a feed id is not an alias: refused, feed kept
    let o = tig(&store, &["feed", "alias", "--delete", &bob.id]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("not an alias"), "{o:?}");
    assert_eq!(rev(&store, &format!("refs/heads/{}", bob.id)), tip);
    // an unknown alias is an error
    let o = tig(&store, &["feed", "alias", "--delete", "bob-frontier"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("not found"), "{o:?}");
    // --delete takes no feed
    let o = tig(&store, &["feed", "alias", "--delete", "bob-2", &bob.id]);
    assert_eq!(o.code, 2, "{o:?}");
    assert!(has_ref(&store, "refs/heads/bob-2"));
}

/// Runs `tig ARGS` in `dir` on a real terminal (`script`), typing `answer`.
fn tig_on_terminal(dir: &Path, args: &[&str], answer: &str) -> Out {
    let mut line = String::from(env!("CARGO_BIN_EXE_tig"));
    for a in args {
        line.push(' ');
        line.push_str(a);
    }
    let mut child = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .current_dir(dir)
        .env("TIG_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(answer.as_bytes()).unwrap();
    stdin.flush().unwrap();
    // keep the terminal open until tig is done with it
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "tig on a terminal did not finish"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(stdin);
    let o = child.wait_with_output().unwrap();
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

#[test]
fn delete_asks_on_a_terminal_unless_yes() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, bob, commits) = bob_with_alias(tmp.path());
    let refs_before = all_refs(&store);

    // "n" (or anything but yes) deletes nothing
    let o = tig_on_terminal(&store, &["feed", "delete", &bob.id], "n\n");
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stdout.contains("[y/N]"), "{o:?}");
    assert!(o.stdout.contains("3 message(s)"), "{o:?}");
    assert!(o.stdout.contains("nothing deleted"), "{o:?}");
    assert_eq!(all_refs(&store), refs_before);
    for c in &commits {
        git_ok(&store, &["cat-file", "-e", c]);
    }
    // "y" deletes
    let o = tig_on_terminal(&store, &["feed", "delete", &bob.id], "y\n");
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout.contains(&format!("deleted feed {}", bob.id)),
        "{o:?}"
    );
    assert!(!has_ref(&store, &format!("refs/heads/{}", bob.id)));
    assert!(!has_ref(&store, "refs/heads/bob-frontier"));

    // --yes does not ask, even on a terminal
    let t = tmp.path();
    let carol = new_ident(t, "carol");
    append(&store, &carol, "carol 1");
    let o = tig_on_terminal(&store, &["feed", "delete", "--yes", &carol.id], "");
    assert_eq!(o.code, 0, "{o:?}");
    assert!(!o.stdout.contains("[y/N]"), "{o:?}");
    assert!(!has_ref(&store, &format!("refs/heads/{}", carol.id)));
}

/// Eve's store and a peer that pulled her log, then received a second branch
/// from her: a proven fork in `peer`. Returns (peer, eve, the two branch tips).
fn forked_peer(t: &Path) -> (std::path::PathBuf, Ident, String, String) {
    let eve = new_ident(t, "eve");
    let eve_store = new_store(t, "eve-store");
    let peer = new_store(t, "peer");
    let first = append(&eve_store, &eve, "first");
    let for_peer = append(&eve_store, &eve, "for the peer");
    tig_ok(&peer, &["feed", "pull", "../eve-store"]);
    let eve_ref = format!("refs/heads/{}", eve.id);
    git_ok(&eve_store, &["update-ref", &eve_ref, &first]);
    let other = append(&eve_store, &eve, "for everyone else");
    let o = tig_ok(&peer, &["feed", "pull", "../eve-store"]);
    assert!(o.contains("FORK"), "{o}");
    (peer, eve, for_peer, other)
}

#[test]
fn a_forked_feed_is_forked_in_list_and_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (peer, eve, a, b) = forked_peer(t);
    let bob = new_ident(t, "bob");
    append(&peer, &bob, "bob is fine");

    let list = tig_ok(&peer, &["feed", "list"]);
    let mut lines = list.lines();
    let header = lines.next().unwrap();
    for col in ["FEED", "MESSAGES", "TIP", "STATUS", "ALIASES"] {
        assert!(header.contains(col), "{list}");
    }
    let eve_row = list.lines().find(|l| l.starts_with(&eve.id)).unwrap();
    assert!(eve_row.contains(" forked "), "{list}");
    assert!(!eve_row.contains(" ok "), "{list}");
    let bob_row = list.lines().find(|l| l.starts_with(&bob.id)).unwrap();
    assert!(bob_row.contains(" ok "), "{list}");
    let json: serde_json::Value =
        serde_json::from_str(&tig_ok(&peer, &["feed", "list", "--json"])).unwrap();
    let row = json
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["feed"] == eve.id.as_str())
        .unwrap();
    assert_eq!(row["forked"], true, "{json}");
    assert_eq!(row["status"], "forked", "{json}");

    // verify: one line per fork, naming both messages; exit 0, --strict 1
    let v = tig(&peer, &["feed", "verify"]);
    assert_eq!(v.code, 0, "{v:?}");
    assert!(
        v.stdout
            .lines()
            .any(|l| l == format!("{}: forked (2 messages)", eve.id)),
        "{v:?}"
    );
    let fork_lines: Vec<&str> = v.stdout.lines().filter(|l| l.contains("FORK")).collect();
    assert_eq!(fork_lines.len(), 1, "{v:?}");
    assert!(
        fork_lines[0].starts_with(&eve.id)
            && fork_lines[0].contains(&a)
            && fork_lines[0].contains(&b),
        "{v:?}"
    );
    assert!(fork_lines[0].contains("message #1"), "{v:?}");
    assert!(
        v.stdout
            .lines()
            .any(|l| l == format!("{}: ok (1 messages)", bob.id)),
        "{v:?}"
    );
    let s = tig(&peer, &["feed", "verify", "--strict"]);
    assert_eq!(s.code, 1, "{s:?}");
    assert!(s.stderr.contains("forked"), "{s:?}");
    // a feed without a fork passes --strict
    let s = tig(&peer, &["feed", "verify", "--strict", &bob.id]);
    assert_eq!(s.code, 0, "{s:?}");
}
