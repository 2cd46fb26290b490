//! 8 concurrent `tig feed append` processes × 200 messages on one feed: the ref moves
//! by compare-and-swap, losers retry on the new tip, and the log ends up linear with
//! all 1,600 messages, each signature valid.

#![allow(clippy::unwrap_used, clippy::too_many_arguments)]

#[path = "fixtures/feed/support.rs"]
mod support;

use std::collections::HashSet;

use support::{Env, output};

const WRITERS: usize = 8;
const EACH: usize = 200;

#[test]
fn eight_concurrent_appenders_lose_nothing() {
    let env = Env::new();
    let (key, id) = env.new_id("bob");
    let store = env.new_store("s");
    std::thread::scope(|scope| {
        for w in 0..WRITERS {
            let (env, key, store) = (&env, &key, &store);
            scope.spawn(move || {
                for i in 0..EACH {
                    let content = format!("writer {w} message {i}");
                    let o = output(env.tig_cmd(
                        store,
                        &["feed", "append", "--key", key.to_str().unwrap(), &content],
                    ));
                    assert!(o.ok(), "append {w}/{i}: {o:?}");
                }
            });
        }
    });

    let json = env.tig_ok(&store, &["feed", "log", &id, "--json", "--reverse"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let msgs = v.as_array().unwrap();
    assert_eq!(msgs.len(), WRITERS * EACH);
    let contents: HashSet<&str> = msgs
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    for w in 0..WRITERS {
        for i in 0..EACH {
            assert!(contents.contains(format!("writer {w} message {i}").as_str()));
        }
    }
    assert!(msgs.iter().all(|m| m["signature"] == "good"));
    // each writer's own messages stay in the order it appended them
    for w in 0..WRITERS {
        let prefix = format!("writer {w} message ");
        let seq: Vec<usize> = msgs
            .iter()
            .filter_map(|m| m["content"].as_str().unwrap().strip_prefix(&prefix))
            .map(|n| n.parse().unwrap())
            .collect();
        assert_eq!(seq, (0..EACH).collect::<Vec<_>>());
    }
    // linear: git agrees there are 1,600 commits and no merges
    let count = env.git_ok(
        &store,
        &["rev-list", "--count", &format!("refs/heads/{id}")],
    );
    assert_eq!(count.trim(), (WRITERS * EACH).to_string());
    let merges = env.git_ok(
        &store,
        &[
            "rev-list",
            "--min-parents=2",
            "--count",
            &format!("refs/heads/{id}"),
        ],
    );
    assert_eq!(merges.trim(), "0");
    let ok = env.tig_ok(&store, &["feed", "verify"]);
    assert_eq!(ok.trim(), format!("{id}: ok ({} messages)", WRITERS * EACH));
    env.git_ok(&store, &["fsck", "--strict", "--no-dangling"]);
}
