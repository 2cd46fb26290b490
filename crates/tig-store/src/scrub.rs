//! The scrubber: re-hash every content object of a filesystem store and move
//! any whose bytes no longer match its name to `<root>/.tig-corrupt/`, where it
//! is never served or listed. Slots cannot be checked (their bytes are not named
//! by their hash); they are counted and skipped.
//!
//! Used by `tig scrub` (as fast as the disk allows) and by
//! `tig serve --scrub-every` (in the background, at a bounded rate).

use std::time::Duration;

use tig_core::ObjectId;

use crate::fs::{FsStore, Scrubbed};
use crate::{Store, StoreError};

/// What one pass found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScrubReport {
    /// Content objects re-hashed.
    pub checked: u64,
    /// Bytes re-hashed.
    pub bytes: u64,
    /// Content objects whose bytes did not match their name (moved away).
    pub corrupt: Vec<ObjectId>,
    /// Slots seen (not checkable).
    pub slots: u64,
}

/// Re-hashes every content object of `store`. With `rate` (bytes per second),
/// pauses after each object so the pass averages at most that rate.
pub async fn scrub(store: &FsStore, rate: Option<u64>) -> Result<ScrubReport, StoreError> {
    let mut report = ScrubReport::default();
    for id in store.list().await? {
        let len = match store.scrub_object(id).await? {
            Scrubbed::Good(len) => {
                report.checked += 1;
                len
            }
            Scrubbed::Corrupt(len) => {
                report.checked += 1;
                report.corrupt.push(id);
                len
            }
            Scrubbed::Slot => {
                report.slots += 1;
                continue;
            }
            Scrubbed::Gone => continue,
        };
        report.bytes += len;
        if let Some(rate) = rate.filter(|r| *r > 0) {
            tokio::time::sleep(Duration::from_secs_f64(len as f64 / rate as f64)).await;
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body_from_bytes;
    use crate::fs::{CORRUPT_DIR, FsOptions};
    use crate::{SlotWrite, Store};
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn corrupt_content_is_moved_away_and_never_served_or_listed() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStore::open(dir.path(), FsOptions::default())
            .await
            .unwrap();
        let good = s.put_content(body_from_bytes("good"), 100).await.unwrap();
        let bad = s.put_content(body_from_bytes("bad"), 100).await.unwrap();
        let slot = ObjectId::digest(b"slot name");
        s.put_slot(slot, body_from_bytes("v"), 100, SlotWrite::Replace)
            .await
            .unwrap();
        // Bit rot: the bytes change, the name and mode do not.
        let path = dir.path().join(bad.file_name());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(&path, b"bax").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();

        let r = scrub(&s, None).await.unwrap();
        assert_eq!(r.checked, 2);
        assert_eq!(r.corrupt, vec![bad]);
        assert_eq!(r.slots, 1);
        assert_eq!(r.bytes, 7);
        assert!(s.get(bad, false).await.unwrap().is_none());
        assert!(!s.list().await.unwrap().contains(&bad));
        assert_eq!(
            std::fs::read(dir.path().join(CORRUPT_DIR).join(bad.file_name())).unwrap(),
            b"bax"
        );
        assert!(s.get(good, false).await.unwrap().is_some());
        // A second pass finds nothing more.
        let r = scrub(&s, None).await.unwrap();
        assert_eq!((r.checked, r.corrupt.len(), r.slots), (1, 0, 1));
    }
}
