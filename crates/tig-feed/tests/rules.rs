//! The security core, one rule per test: what makes a message valid
//! (signature by the feed's own key, author and committer = feed, empty tree,
//! ≤ 1 parent), that a pull moves no ref for a feed that breaks a rule and
//! never overwrites a diverging branch (single writer), when two branches are a
//! provable fork and what a proof file proves, what deletion removes, and how
//! the graph joins branches. Each test builds the exact commits it needs with
//! the library's own commit writer, so a failure names the rule that broke.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::collections::BTreeMap;

use git2::{ObjectType, Oid};
use tig_feed::commit::{payload, with_signature};
use tig_feed::sync::{
    Outcome, PullOptions, SyncError, create_bundle, delete_feed, export_proof, find_forks,
    graph_text, verify_proof,
};
use tig_feed::{AppendOptions, FeedId, FeedStore, Identity, Rule, Signer, Time, verify_range};

const EMPTY_TREE: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";

fn time() -> Time {
    Time {
        seconds: 1_700_000_000,
        offset_minutes: 0,
    }
}

fn new_store() -> (tempfile::TempDir, FeedStore) {
    let tmp = tempfile::tempdir().unwrap();
    let store = FeedStore::init(&tmp.path().join("s")).unwrap();
    (tmp, store)
}

/// Writes `payload` signed by `key` as a commit object; returns its id.
fn write_signed(store: &FeedStore, payload: &[u8], key: &Identity) -> Oid {
    let raw = with_signature(payload, &key.sign(payload).unwrap());
    store
        .repo()
        .odb()
        .unwrap()
        .write(ObjectType::Commit, &raw)
        .unwrap()
}

/// A well-formed message of `author`'s feed, signed by `key`.
fn message(
    store: &FeedStore,
    author: &FeedId,
    parent: Option<Oid>,
    content: &str,
    key: &Identity,
) -> Oid {
    let p = payload(author.as_str(), parent, time(), content.as_bytes());
    write_signed(store, &p, key)
}

fn set_ref(store: &FeedStore, name: &str, oid: Oid) {
    store.repo().reference(name, oid, true, "test").unwrap();
}

fn rules_broken(store: &FeedStore, feed: &FeedId, tip: Oid) -> Vec<(Oid, String)> {
    verify_range(store, feed, tip, &[])
        .unwrap()
        .into_iter()
        .map(|v| (v.commit, v.rule.to_string()))
        .collect()
}

#[test]
fn signature_rule_a_message_signed_by_the_feeds_key_is_valid() {
    let (_t, store) = new_store();
    let alice = Identity::generate();
    let a = alice.feed_id();
    let m1 = message(&store, &a, None, "one", &alice);
    let m2 = message(&store, &a, Some(m1), "two", &alice);
    assert!(rules_broken(&store, &a, m2).is_empty());
}

#[test]
fn signature_rule_a_message_signed_by_another_key_is_refused() {
    let (_t, store) = new_store();
    let (alice, mallory) = (Identity::generate(), Identity::generate());
    let a = alice.feed_id();
    let m1 = message(&store, &a, None, "one", &alice);
    let forged = message(&store, &a, Some(m1), "forged", &mallory);
    let broken = rules_broken(&store, &a, forged);
    assert_eq!(broken.len(), 1, "{broken:?}");
    assert_eq!(broken[0].0, forged);
}

#[test]
fn signature_rule_an_unsigned_message_is_refused() {
    let (_t, store) = new_store();
    let alice = Identity::generate();
    let a = alice.feed_id();
    let p = payload(a.as_str(), None, time(), b"no signature");
    let oid = store
        .repo()
        .odb()
        .unwrap()
        .write(ObjectType::Commit, &p)
        .unwrap();
    let broken = rules_broken(&store, &a, oid);
    assert_eq!(broken.len(), 1, "{broken:?}");
}

#[test]
fn signature_rule_a_message_changed_after_signing_is_refused() {
    let (_t, store) = new_store();
    let alice = Identity::generate();
    let a = alice.feed_id();
    let signed = payload(a.as_str(), None, time(), b"pay bob 1");
    let changed = payload(a.as_str(), None, time(), b"pay bob 1000");
    let raw = with_signature(&changed, &alice.sign(&signed).unwrap());
    let m = store
        .repo()
        .odb()
        .unwrap()
        .write(ObjectType::Commit, &raw)
        .unwrap();
    let broken = verify_range(&store, &a, m, &[]).unwrap();
    assert_eq!(broken.len(), 1, "{broken:?}");
    assert_eq!(broken[0].commit, m);
    assert!(
        matches!(broken[0].rule, Rule::BadSignature(_)),
        "{broken:?}"
    );
}

#[test]
fn author_rule_the_author_must_be_the_feed() {
    let (_t, store) = new_store();
    let (alice, bob) = (Identity::generate(), Identity::generate());
    let a = alice.feed_id();
    // signed by alice's key, but authored as bob's feed
    let m = message(&store, &bob.feed_id(), None, "whose?", &alice);
    let broken = rules_broken(&store, &a, m);
    assert!(broken.iter().all(|b| b.0 == m), "{broken:?}");
    assert!(
        broken.iter().any(|b| b.1.starts_with("author is")),
        "{broken:?}"
    );
}

#[test]
fn committer_rule_the_committer_must_be_the_feed() {
    let (_t, store) = new_store();
    let (alice, bob) = (Identity::generate(), Identity::generate());
    let a = alice.feed_id();
    // authored as alice's feed and signed by her key, committed as bob's
    let p = payload(a.as_str(), None, time(), b"who committed?");
    let p = String::from_utf8(p)
        .unwrap()
        .replacen(
            &format!("committer {a} "),
            &format!("committer {} ", bob.feed_id()),
            1,
        )
        .into_bytes();
    let m = write_signed(&store, &p, &alice);
    let broken = verify_range(&store, &a, m, &[]).unwrap();
    assert_eq!(broken.len(), 1, "{broken:?}");
    assert!(
        matches!(&broken[0].rule, Rule::WrongCommitter(name) if *name == bob.feed_id().to_string()),
        "{broken:?}"
    );
}

#[test]
fn tree_rule_a_message_has_the_empty_tree() {
    let (_t, store) = new_store();
    let alice = Identity::generate();
    let a = alice.feed_id();
    let repo = store.repo();
    let blob = repo.blob(b"smuggled").unwrap();
    let mut tb = repo.treebuilder(None).unwrap();
    tb.insert("file", blob, 0o100644).unwrap();
    let tree = tb.write().unwrap();
    let p = payload(a.as_str(), None, time(), b"with a file");
    let text = String::from_utf8(p).unwrap();
    let p = text.replacen(EMPTY_TREE, &tree.to_string(), 1).into_bytes();
    let m = write_signed(&store, &p, &alice);
    let broken = rules_broken(&store, &a, m);
    assert_eq!(broken.len(), 1, "{broken:?}");
    assert_eq!(broken[0].0, m);
}

#[test]
fn parent_rule_a_message_has_at_most_one_parent() {
    let (_t, store) = new_store();
    let alice = Identity::generate();
    let a = alice.feed_id();
    let m1 = message(&store, &a, None, "one", &alice);
    let m2 = message(&store, &a, None, "another first", &alice);
    let p = payload(a.as_str(), Some(m1), time(), b"a merge");
    let text = String::from_utf8(p).unwrap();
    let p = text
        .replacen(
            &format!("parent {m1}\n"),
            &format!("parent {m1}\nparent {m2}\n"),
            1,
        )
        .into_bytes();
    let merge = write_signed(&store, &p, &alice);
    let broken = rules_broken(&store, &a, merge);
    assert_eq!(
        broken.iter().map(|b| b.0).collect::<Vec<_>>(),
        vec![merge],
        "{broken:?}"
    );
}

/// Alice's feed with `m1`, and two successors of it on two refs.
fn forked(store: &FeedStore, alice: &Identity, second_key: &Identity) -> (Oid, Oid, Oid) {
    let a = alice.feed_id();
    let m1 = message(store, &a, None, "one", alice);
    let left = message(store, &a, Some(m1), "to bob", alice);
    let right = message(store, &a, Some(m1), "to carol", second_key);
    set_ref(store, &a.ref_name(), left);
    set_ref(store, &format!("refs/remotes/peer/{a}"), right);
    (m1, left, right)
}

#[test]
fn fork_rule_two_validly_signed_successors_of_one_message_are_a_proof() {
    let (_t, store) = new_store();
    let alice = Identity::generate();
    let (m1, left, right) = forked(&store, &alice, &alice);
    let forks = find_forks(&store, &[]).unwrap();
    assert_eq!(forks.len(), 1, "{forks:?}");
    let f = &forks[0];
    assert!(f.is_proof(), "{f:?}");
    let point = f.fork_point.as_ref().unwrap();
    assert_eq!((point.commit, point.sequence), (m1, 1));
    let mut got: Vec<Oid> = f.messages.iter().map(|m| m.commit).collect();
    got.sort();
    let mut want = vec![left, right];
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn fork_rule_a_successor_signed_by_another_key_proves_nothing() {
    let (_t, store) = new_store();
    let (alice, mallory) = (Identity::generate(), Identity::generate());
    forked(&store, &alice, &mallory);
    let forks = find_forks(&store, &[]).unwrap();
    assert_eq!(forks.len(), 1, "{forks:?}");
    assert!(
        !forks[0].is_proof(),
        "a forged branch framed alice: {forks:?}"
    );
}

#[test]
fn fork_rule_one_branch_ahead_of_another_is_no_fork() {
    let (_t, store) = new_store();
    let alice = Identity::generate();
    let a = alice.feed_id();
    let m1 = message(&store, &a, None, "one", &alice);
    let m2 = message(&store, &a, Some(m1), "two", &alice);
    set_ref(&store, &a.ref_name(), m2);
    set_ref(&store, &format!("refs/remotes/peer/{a}"), m1);
    assert!(find_forks(&store, &[]).unwrap().is_empty());
}

/// Alice's first message in a store `src` and, pulled from it, in `bob`.
fn alice_pulled(t: &std::path::Path, alice: &Identity) -> (FeedStore, FeedStore, Oid) {
    let a = alice.feed_id();
    let src = FeedStore::init(&t.join("src")).unwrap();
    let m1 = message(&src, &a, None, "one", alice);
    set_ref(&src, &a.ref_name(), m1);
    let bob = FeedStore::init(&t.join("bob")).unwrap();
    let report = tig_feed::sync::pull(&bob, src_path(&src), &PullOptions::default()).unwrap();
    assert!(
        matches!(report.feeds[0].outcome, Outcome::Created),
        "{report:?}"
    );
    (src, bob, m1)
}

fn src_path(store: &FeedStore) -> &str {
    store.path().to_str().unwrap()
}

/// Every ref of `store`, by name.
fn refs(store: &FeedStore) -> BTreeMap<String, Oid> {
    let mut out = BTreeMap::new();
    for r in store.repo().references().unwrap() {
        let r = r.unwrap();
        if let (Ok(name), Some(target)) = (r.name(), r.target()) {
            out.insert(name.to_string(), target);
        }
    }
    out
}

/// After a pull of `tip` was refused: one violation, on `tip`, signed by another key.
fn assert_forgery_refused(report: &tig_feed::sync::PullReport, tip: Oid) {
    assert_eq!(report.feeds.len(), 1, "{report:?}");
    let Outcome::Rejected { violations } = &report.feeds[0].outcome else {
        panic!("the forgery was not rejected: {report:?}");
    };
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].commit, tip);
    assert!(
        matches!(violations[0].rule, Rule::WrongKey(_)),
        "{violations:?}"
    );
}

#[test]
fn single_writer_rule_a_forged_message_pulled_from_a_store_moves_no_ref() {
    let t = tempfile::tempdir().unwrap();
    let (alice, mallory) = (Identity::generate(), Identity::generate());
    let a = alice.feed_id();
    let (src, bob, m1) = alice_pulled(t.path(), &alice);
    let forged = message(&src, &a, Some(m1), "forged", &mallory);
    set_ref(&src, &a.ref_name(), forged);
    let before = refs(&bob);
    // a local path: the new messages are checked in memory while copied
    let report = tig_feed::sync::pull(&bob, src_path(&src), &PullOptions::default()).unwrap();
    assert_forgery_refused(&report, forged);
    assert_eq!(refs(&bob), before, "a ref moved for a rejected feed");
}

#[test]
fn single_writer_rule_a_forged_message_pulled_from_a_bundle_moves_no_ref() {
    let t = tempfile::tempdir().unwrap();
    let (alice, mallory) = (Identity::generate(), Identity::generate());
    let a = alice.feed_id();
    let (src, bob, m1) = alice_pulled(t.path(), &alice);
    let forged = message(&src, &a, Some(m1), "forged", &mallory);
    let file = t.path().join("forged.bundle");
    create_bundle(
        src.repo(),
        &file,
        &BTreeMap::from([(a.clone(), forged)]),
        &BTreeMap::from([(a.clone(), m1)]),
    )
    .unwrap();
    let before = refs(&bob);
    // a bundle: the new messages are checked in the store, from quarantine
    let report =
        tig_feed::sync::pull(&bob, file.to_str().unwrap(), &PullOptions::default()).unwrap();
    assert_forgery_refused(&report, forged);
    assert_eq!(refs(&bob), before, "a ref moved for a rejected feed");
}

#[test]
fn single_writer_rule_a_pulled_branch_that_diverges_is_kept_beside_ours() {
    let t = tempfile::tempdir().unwrap();
    let alice = Identity::generate();
    let a = alice.feed_id();
    let (src, bob, m1) = alice_pulled(t.path(), &alice);
    let ours = message(&bob, &a, Some(m1), "to bob", &alice);
    set_ref(&bob, &a.ref_name(), ours);
    let theirs = message(&src, &a, Some(m1), "to carol", &alice);
    set_ref(&src, &a.ref_name(), theirs);
    let report = tig_feed::sync::pull(&bob, src_path(&src), &PullOptions::default()).unwrap();
    let f = &report.feeds[0];
    assert!(
        matches!(f.outcome, Outcome::Fork { local, fork_point: Some(p) } if local == ours && p == m1),
        "{report:?}"
    );
    assert_eq!(f.forks_with, vec![(a.ref_name(), ours)]);
    let repo = bob.repo();
    assert_eq!(repo.refname_to_id(&a.ref_name()).unwrap(), ours);
    assert_eq!(
        repo.refname_to_id(&format!("refs/remotes/src/{a}"))
            .unwrap(),
        theirs
    );
}

#[test]
fn proof_rule_an_exported_proof_proves_the_fork_on_its_own() {
    let (t, store) = new_store();
    let alice = Identity::generate();
    let (m1, left, right) = forked(&store, &alice, &alice);
    let forks = find_forks(&store, &[]).unwrap();
    let file = t.path().join("proof.bundle");
    export_proof(&store, &forks, &file).unwrap();
    // checked in a scratch store: nothing but the file and the feed's key
    let report = verify_proof(&file).unwrap();
    assert_eq!(report.forks.len(), 1, "{report:?}");
    let f = &report.forks[0];
    assert_eq!(
        (&f.feed, f.parent, f.sequence),
        (&alice.feed_id(), Some(m1), 2)
    );
    let mut got: Vec<Oid> = f.messages.iter().map(|(c, _)| *c).collect();
    got.sort();
    let mut want = vec![left, right];
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn proof_rule_a_proof_with_a_forged_message_proves_nothing() {
    let (t, store) = new_store();
    let (alice, mallory) = (Identity::generate(), Identity::generate());
    forked(&store, &alice, &mallory);
    let mut forks = find_forks(&store, &[]).unwrap();
    // a dishonest exporter claims the forged branch is valid too
    for m in &mut forks[0].messages {
        m.valid = true;
    }
    let file = t.path().join("framed.bundle");
    export_proof(&store, &forks, &file).unwrap();
    let err = verify_proof(&file).unwrap_err();
    assert!(matches!(err, SyncError::InvalidProof(_)), "{err:?}");
}

#[test]
fn deletion_of_a_feed_the_store_does_not_hold_is_refused() {
    let (_t, store) = new_store();
    let alice = Identity::generate();
    let a = alice.feed_id();
    let err = delete_feed(&store, &a).unwrap_err();
    assert!(
        matches!(&err, SyncError::FeedNotFound(f) if *f == a),
        "{err:?}"
    );
}

#[test]
fn deletion_removes_the_feed_its_aliases_and_objects_and_nothing_else() {
    let (_t, store) = new_store();
    let (alice, bob) = (Identity::generate(), Identity::generate());
    let opts = AppendOptions::default();
    let a_ids = store
        .append_batch(&Signer::Ssh(Box::new(alice)), &["a1", "a2", "a3"], &opts)
        .unwrap();
    let bob_id = bob.feed_id();
    let b_ids = store
        .append_batch(&Signer::Ssh(Box::new(bob)), &["b1", "b2"], &opts)
        .unwrap();
    let a = FeedStore::open(store.path())
        .unwrap()
        .feeds()
        .unwrap()
        .into_iter()
        .find(|f| *f != bob_id)
        .unwrap();
    store.alias("alice-frontier", &a, false).unwrap();
    let report = delete_feed(&store, &a).unwrap();
    assert_eq!(report.commits, 3);
    let fresh = git2::Repository::open(store.path()).unwrap();
    let odb = fresh.odb().unwrap();
    for c in &a_ids {
        assert!(!odb.exists(*c), "{c} survived");
    }
    for c in &b_ids {
        assert!(odb.exists(*c), "bob's {c} was deleted");
    }
    assert!(fresh.find_reference("refs/heads/alice-frontier").is_err());
    assert_eq!(
        fresh.refname_to_id(&bob_id.ref_name()).unwrap(),
        *b_ids.last().unwrap()
    );
}

#[test]
fn graph_joins_three_branches_meeting_at_one_point_just_above_it() {
    let (_t, store) = new_store();
    let alice = Identity::generate();
    let a = alice.feed_id();
    let m1 = message(&store, &a, None, "the fork point", &alice);
    let tips: Vec<Oid> = ["x", "y", "z"]
        .iter()
        .map(|c| message(&store, &a, Some(m1), c, &alice))
        .collect();
    set_ref(&store, &a.ref_name(), tips[0]);
    set_ref(&store, &format!("refs/remotes/p1/{a}"), tips[1]);
    set_ref(&store, &format!("refs/remotes/p2/{a}"), tips[2]);
    let g = graph_text(store.repo(), &a, true).unwrap();
    let lines: Vec<&str> = g.lines().collect();
    let short = &m1.to_string()[..7];
    let at = lines
        .iter()
        .position(|l| l.contains(short))
        .unwrap_or_else(|| panic!("fork point not drawn:\n{g}"));
    // three branch lines above, each in its own column
    for t in &tips {
        let s = &t.to_string()[..7];
        let i = lines.iter().position(|l| l.contains(s)).unwrap();
        assert!(i < at, "{g}");
    }
    // the line just above the fork point joins the two extra columns into the first
    let join = lines[at - 1];
    assert_eq!(join.matches('/').count(), 2, "{g}");
    assert!(join.trim_start().starts_with('|'), "{g}");
    // the fork point itself is drawn in one column, with nothing beside it
    assert!(!lines[at].contains('|'), "{g}");
}
