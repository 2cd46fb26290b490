//! Pack cleanup: a bundle pull that fails removes only the pack *it* wrote.
//!
//! Another process (here: a second `FeedStore` handle doing `append --batch`)
//! may write its own pack into `objects/pack` and point a ref at it while the
//! pull is indexing. The old cleanup deleted every pack file that appeared
//! meanwhile, leaving that ref dangling; these tests run the concurrent writer
//! exactly in that window and check with the real `git fsck` afterwards.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::collections::BTreeMap;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::Command;

use tig_feed::sync::SyncError;
use tig_feed::sync::bundle::unbundle_from;
use tig_feed::{AppendOptions, FeedStore, Identity, Signer};

/// Serves `data[..cut]`, then runs `hook` once (the concurrent writer) and
/// ends: a truncated pack when `cut` is short of the end.
struct HookedReader {
    data: Vec<u8>,
    pos: usize,
    cut: usize,
    hook: Option<Box<dyn FnOnce()>>,
}

impl Read for HookedReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.cut
            && let Some(h) = self.hook.take()
        {
            h();
        }
        let n = buf.len().min(self.cut - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn signer() -> Signer {
    Signer::Ssh(Box::new(Identity::generate()))
}

/// A bundle of one feed with `n` messages, made in its own store.
fn bundle_bytes(dir: &Path, n: usize) -> (Vec<u8>, git2::Oid) {
    let src = FeedStore::init(&dir.join("src")).unwrap();
    let who = signer();
    let msgs: Vec<String> = (0..n).map(|i| format!("message {i}")).collect();
    let ids = src
        .append_batch(&who, &msgs, &AppendOptions::default())
        .unwrap();
    let tips = BTreeMap::from([(who.feed_id(), *ids.last().unwrap())]);
    let path = dir.join("b.bundle");
    tig_feed::sync::create_bundle(src.repo(), &path, &tips, &BTreeMap::new()).unwrap();
    (std::fs::read(&path).unwrap(), *ids.last().unwrap())
}

fn pack_files(store: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(store.join("objects/pack"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

fn git_fsck(store: &Path) {
    let o = Command::new("git")
        .arg("--git-dir")
        .arg(store)
        .args(["fsck", "--strict"])
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "git fsck: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The concurrent writer: a batch append through its own handle on `store`.
/// Returns its new tip.
fn concurrent_batch(
    store: PathBuf,
    tip: std::rc::Rc<std::cell::Cell<Option<git2::Oid>>>,
) -> Box<dyn FnOnce()> {
    Box::new(move || {
        let other = FeedStore::open(&store).unwrap();
        let ids = other
            .append_batch(
                &signer(),
                &["written meanwhile", "by someone else"],
                &AppendOptions::default(),
            )
            .unwrap();
        tip.set(ids.last().copied());
    })
}

#[test]
fn pack_cleanup_after_a_truncated_pack_keeps_a_concurrent_pack() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, _) = bundle_bytes(tmp.path(), 50);
    let store = FeedStore::init(&tmp.path().join("dst")).unwrap();
    let path = store.path().to_path_buf();
    let before = pack_files(&path);
    let tip = std::rc::Rc::new(std::cell::Cell::new(None));
    let reader = HookedReader {
        cut: data.len() - 100, // the pack is cut short: its trailer never arrives
        data,
        pos: 0,
        hook: Some(concurrent_batch(path.clone(), tip.clone())),
    };
    let err = unbundle_from(
        store.repo(),
        Path::new("b.bundle"),
        &mut BufReader::new(reader),
    )
    .unwrap_err();
    assert!(matches!(err, SyncError::CorruptBundle(_)), "{err}");
    let tip = tip.get().expect("the concurrent writer ran");
    // the other process's pack and the ref it moved survive
    let fresh = git2::Repository::open(&path).unwrap();
    assert!(
        fresh.odb().unwrap().exists(tip),
        "the concurrent pack was deleted"
    );
    git_fsck(&path);
    // and the failed pull left nothing of its own: exactly one new pack (.pack + .idx…)
    let after = pack_files(&path);
    let new: Vec<_> = after.iter().filter(|p| !before.contains(p)).collect();
    assert!(
        new.iter().all(|p| p
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("pack-")),
        "temporary files left behind: {new:?}"
    );
    let packs = new
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == "pack"));
    assert_eq!(packs.count(), 1, "{new:?}");
}

#[test]
fn pack_cleanup_after_missing_refs_removes_only_the_bundles_pack() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut data, bundle_tip) = bundle_bytes(tmp.path(), 20);
    // a ref naming a commit the pack does not carry
    let bogus = format!("{} refs/heads/{}\n", "1".repeat(40), "2".repeat(64));
    let first_line = data.iter().position(|&b| b == b'\n').unwrap() + 1;
    data.splice(first_line..first_line, bogus.bytes());
    let store = FeedStore::init(&tmp.path().join("dst")).unwrap();
    let path = store.path().to_path_buf();
    let before = pack_files(&path);
    let tip = std::rc::Rc::new(std::cell::Cell::new(None));
    let reader = HookedReader {
        cut: data.len(), // the whole pack arrives; the concurrent writer runs at its end
        data,
        pos: 0,
        hook: Some(concurrent_batch(path.clone(), tip.clone())),
    };
    let err = unbundle_from(
        store.repo(),
        Path::new("b.bundle"),
        &mut BufReader::new(reader),
    )
    .unwrap_err();
    assert!(err.to_string().contains("does not carry"), "{err}");
    let tip = tip.get().expect("the concurrent writer ran");
    let fresh = git2::Repository::open(&path).unwrap();
    assert!(
        fresh.odb().unwrap().exists(tip),
        "the concurrent pack was deleted"
    );
    git_fsck(&path);
    // the bundle's own pack is gone: only the concurrent writer's pack is new
    let after = pack_files(&path);
    let new_packs: Vec<_> = after
        .iter()
        .filter(|p| !before.contains(p) && p.extension().is_some_and(|x| x == "pack"))
        .collect();
    assert_eq!(new_packs.len(), 1, "{new_packs:?}");
    assert!(
        !fresh.odb().unwrap().exists(bundle_tip),
        "the refused bundle's pack was kept"
    );
}
