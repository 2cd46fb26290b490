//! Library-level tests of the feed store on real repositories, checked with real `git`.

use std::path::Path;
use std::process::Command;

use tig_feed::{AppendOptions, FeedStore, Identity, Signer, Time, verify_feed, verify_range};

fn git(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .expect("run git")
}

fn opts() -> AppendOptions {
    AppendOptions {
        time: Some(Time {
            seconds: 1_700_000_000,
            offset_minutes: 0,
        }),
        retries: 0,
    }
}

#[test]
fn appended_feed_verifies_and_git_fsck_accepts_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = FeedStore::init(&dir.path().join("s")).unwrap();
    let me = Signer::Ssh(Box::new(Identity::from_seed(&[1; 32])));
    let feed = me.feed_id();
    let a = store.append(&me, b"first", &opts()).unwrap();
    let b = store.append(&me, b"second\n", &opts()).unwrap();
    let batch = store
        .append_batch(&me, &["third", "fourth"], &opts())
        .unwrap();
    assert_eq!(store.tip(&feed).unwrap(), Some(batch[1]));
    let msgs = store.messages(&feed).unwrap();
    let contents: Vec<_> = msgs.iter().map(|m| m.content_str().into_owned()).collect();
    assert_eq!(contents, ["first", "second\n", "third", "fourth"]);
    assert_eq!(msgs[0].id, a);
    assert_eq!(msgs[1].id, b);
    assert_eq!(msgs[3].seq, 4);
    assert!(verify_feed(&store, &feed).unwrap().is_empty());
    assert!(
        verify_range(&store, &feed, batch[1], &[b])
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.feeds().unwrap(), vec![feed.clone()]);
    let out = git(store.path(), &["fsck", "--strict"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    store.alias("me-frontier", &feed, false).unwrap();
    assert_eq!(store.resolve("me-frontier").unwrap(), feed);
    assert!(store.resolve("nobody").unwrap_err().is_not_found());
}
