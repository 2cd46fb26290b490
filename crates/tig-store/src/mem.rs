//! The in-memory backend: a map from name to bytes, for tests and throwaway stores.
//!
//! It follows the same rules as the filesystem backend (content is immutable, slots
//! are mutable, set-if-not is exclusive, appends never interleave) and keeps
//! "last used" in [`tokio::time::Instant`], so retention can be tested with paused
//! time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tig_core::ObjectId;
use tokio::time::Instant;

use crate::{
    BodyStream, ByteRange, Kind, Object, ObjectBody, ObjectMeta, SlotOutcome, SlotWrite, Store,
    StoreError,
};

struct Entry {
    data: Bytes,
    content: bool,
    last_used: Instant,
    /// Write order, to break ties between equal timestamps; also the slot's
    /// version (every write makes a new entry with a new number).
    seq: u64,
}

impl Entry {
    fn meta(&self) -> ObjectMeta {
        ObjectMeta {
            len: self.data.len() as u64,
            kind: if self.content {
                Kind::Content
            } else {
                Kind::Slot
            },
            version: if self.content {
                String::new()
            } else {
                format!("{:x}", self.seq)
            },
        }
    }
}

/// A [`Store`] in memory.
#[derive(Default)]
pub struct MemStore {
    map: Mutex<HashMap<ObjectId, Entry>>,
    seq: AtomicU64,
}

impl std::fmt::Debug for MemStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemStore").finish_non_exhaustive()
    }
}

async fn collect(mut body: BodyStream, limit: u64) -> Result<Bytes, StoreError> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(StoreError::Body)?;
        if (buf.len() + chunk.len()) as u64 > limit {
            return Err(StoreError::TooLarge { limit });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectId, Entry>> {
        // A panic while holding this lock cannot leave the map half-updated (every
        // update is a single insert/remove), so a poisoned lock is still usable.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn entry(&self, data: Bytes, content: bool) -> Entry {
        Entry {
            data,
            content,
            last_used: Instant::now(),
            seq: self.seq.fetch_add(1, Ordering::Relaxed),
        }
    }
}

impl Store for MemStore {
    async fn put_content(&self, body: BodyStream, limit: u64) -> Result<ObjectId, StoreError> {
        let data = collect(body, limit).await?;
        let id = ObjectId::digest(&data);
        let mut map = self.map();
        match map.get_mut(&id) {
            Some(e) if e.content => e.last_used = Instant::now(),
            Some(_) => return Err(StoreError::SlotConflict(id)),
            None => {
                let e = self.entry(data, true);
                map.insert(id, e);
            }
        }
        Ok(id)
    }

    async fn put_slot(
        &self,
        id: ObjectId,
        body: BodyStream,
        limit: u64,
        mode: SlotWrite,
    ) -> Result<SlotOutcome, StoreError> {
        let data = collect(body, limit).await?;
        let mut map = self.map();
        let existing = map.get(&id);
        match mode {
            SlotWrite::IfAbsent if existing.is_some() => return Ok(SlotOutcome::Existed),
            _ if existing.is_some_and(|e| e.content) => return Err(StoreError::Immutable(id)),
            _ => {}
        }
        let data = match (mode, existing) {
            (SlotWrite::Append, Some(e)) => {
                let mut all = BytesMut::with_capacity(e.data.len() + data.len());
                all.extend_from_slice(&e.data);
                all.extend_from_slice(&data);
                all.freeze()
            }
            _ => data,
        };
        let content = ObjectId::digest(&data) == id;
        let e = self.entry(data, content);
        map.insert(id, e);
        Ok(if mode == SlotWrite::IfAbsent {
            SlotOutcome::Created
        } else {
            SlotOutcome::Written
        })
    }

    async fn get(&self, id: ObjectId, touch: bool) -> Result<Option<Object>, StoreError> {
        let mut map = self.map();
        Ok(map.get_mut(&id).map(|e| {
            if touch {
                e.last_used = Instant::now();
            }
            Object::whole(e.meta(), ObjectBody::Full(e.data.clone()))
        }))
    }

    async fn get_range(
        &self,
        id: ObjectId,
        touch: bool,
        range: ByteRange,
    ) -> Result<Option<Object>, StoreError> {
        let mut map = self.map();
        let Some(e) = map.get_mut(&id) else {
            return Ok(None);
        };
        if touch {
            e.last_used = Instant::now();
        }
        let meta = e.meta();
        let r = range
            .resolve(meta.len)
            .ok_or(StoreError::RangeNotSatisfiable { len: meta.len })?;
        Ok(Some(Object {
            len: r.end - r.start,
            body: ObjectBody::Full(e.data.slice(r.start as usize..r.end as usize)),
            range: r,
            meta,
        }))
    }

    async fn stat(&self, id: ObjectId, touch: bool) -> Result<Option<ObjectMeta>, StoreError> {
        let mut map = self.map();
        Ok(map.get_mut(&id).map(|e| {
            if touch {
                e.last_used = Instant::now();
            }
            e.meta()
        }))
    }

    async fn take(&self, id: ObjectId) -> Result<Object, StoreError> {
        let mut map = self.map();
        match map.get(&id) {
            None => Err(StoreError::NotFound(id)),
            Some(e) if e.content => Err(StoreError::Immutable(id)),
            Some(_) => {
                let e = map.remove(&id).ok_or(StoreError::NotFound(id))?;
                Ok(Object::whole(e.meta(), ObjectBody::Full(e.data)))
            }
        }
    }

    async fn delete_slot(&self, id: ObjectId) -> Result<(), StoreError> {
        let mut map = self.map();
        match map.get(&id) {
            None => Err(StoreError::NotFound(id)),
            Some(e) if e.content => Err(StoreError::Immutable(id)),
            Some(_) => {
                map.remove(&id);
                Ok(())
            }
        }
    }

    async fn list(&self) -> Result<Vec<ObjectId>, StoreError> {
        let map = self.map();
        let mut all: Vec<_> = map
            .iter()
            .map(|(id, e)| (e.last_used, e.seq, *id))
            .collect();
        all.sort_by_key(|e| std::cmp::Reverse((e.0, e.1)));
        Ok(all.into_iter().map(|(_, _, id)| id).collect())
    }

    async fn sweep(&self, retention: Duration) -> Result<usize, StoreError> {
        if retention.is_zero() {
            return Ok(0);
        }
        let now = Instant::now();
        let mut map = self.map();
        let before = map.len();
        map.retain(|_, e| now.saturating_duration_since(e.last_used) < retention);
        Ok(before - map.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance;

    async fn store() -> ((), MemStore) {
        ((), MemStore::new())
    }

    conformance::suite!(store);

    #[tokio::test(start_paused = true)]
    async fn list_is_most_recently_used_first() {
        let s = MemStore::new();
        let a = s
            .put_content(crate::body_from_bytes("a"), 10)
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(1)).await;
        let b = s
            .put_content(crate::body_from_bytes("b"), 10)
            .await
            .unwrap();
        assert_eq!(s.list().await.unwrap(), vec![b, a]);
        tokio::time::advance(Duration::from_secs(1)).await;
        s.get(a, true).await.unwrap();
        assert_eq!(s.list().await.unwrap(), vec![a, b]);
        tokio::time::advance(Duration::from_secs(1)).await;
        s.get(b, false).await.unwrap();
        assert_eq!(s.list().await.unwrap(), vec![a, b]);
    }
}
