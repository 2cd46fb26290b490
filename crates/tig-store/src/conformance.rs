//! The conformance suite every [`Store`] backend must pass.
//!
//! Each backend's test module invokes `conformance::suite!(factory)`, where
//! `factory` is an async fn returning `(guard, store)`; the guard (e.g. a temp
//! dir) lives as long as the test.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use tig_core::ObjectId;

use crate::{
    BodyStream, ByteRange, Kind, Object, ObjectBody, SlotOutcome, SlotWrite, Store, StoreError,
    body_from_bytes,
};

const LIMIT: u64 = 1 << 20;

macro_rules! suite {
    ($factory:ident) => {
        $crate::conformance::suite!(@list tests $factory);
    };
    // A factory returning `Option<(guard, store)>`: `None` skips the test (the
    // factory says why), for backends that need an external service.
    (optional $factory:ident) => {
        $crate::conformance::suite!(@list optional $factory);
    };
    (@list $arm:ident $factory:ident) => {
        $crate::conformance::suite!(@$arm $factory,
            content_round_trip, content_is_idempotent, empty_body_is_content,
            oversize_body_stores_nothing, chunked_body_is_hashed_whole,
            slot_replace, slot_write_on_content_is_refused,
            content_upload_onto_a_slot_is_refused, set_if_not, append,
            append_on_content_is_refused, delete, kinds, sweep_zero_and_long_keep,
            sweep_expires_everything_after_the_period,
            concurrent_setifnot_has_one_winner, concurrent_appends_never_interleave,
            concurrent_identical_puts_store_one_object, large_object_streams_back,
            stat_reports_len_and_kind, many_at_once_answer_as_one_at_a_time,
            slot_version_changes_with_the_bytes_only,
            ranges_of_small_and_large_objects, unsatisfiable_ranges, take_slot,
            take_refuses_content_and_absent, concurrent_takers_have_one_winner,
            usage_counts_objects_and_bytes, list_is_most_recently_written_first);
    };
    (@optional $factory:ident, $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some((_guard, store)) = $factory().await else {
                    return;
                };
                $crate::conformance::$name(std::sync::Arc::new(store)).await;
            }
        )*
    };
    (@tests $factory:ident, $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (_guard, store) = $factory().await;
                $crate::conformance::$name(std::sync::Arc::new(store)).await;
            }
        )*
    };
}
pub(crate) use suite;

fn id_of(s: &str) -> ObjectId {
    ObjectId::digest(s.as_bytes())
}

async fn read<S: Store>(store: &S, id: ObjectId) -> Option<Vec<u8>> {
    let obj = store.get(id, false).await.unwrap()?;
    assert_eq!(obj.range, 0..obj.meta.len, "a get is whole");
    Some(bytes_of(obj).await)
}

/// The bytes an object's body yields, checked against its stated length.
async fn bytes_of(obj: Object) -> Vec<u8> {
    let mut out = Vec::new();
    match obj.body {
        ObjectBody::Full(b) => out.extend_from_slice(&b),
        ObjectBody::Stream(mut s) => {
            while let Some(c) = s.next().await {
                out.extend_from_slice(&c.unwrap());
            }
        }
    }
    assert_eq!(out.len() as u64, obj.len, "length matches the body");
    assert_eq!(obj.len, obj.range.end - obj.range.start);
    out
}

fn slot_name(key: &str) -> ObjectId {
    // The seed's advice: a slot is named by the hash of the hash of its key.
    ObjectId::digest(id_of(key).to_hex().as_bytes())
}

pub(crate) async fn content_round_trip<S: Store>(store: Arc<S>) {
    let id = store
        .put_content(body_from_bytes("test\n"), LIMIT)
        .await
        .unwrap();
    assert_eq!(
        id.to_hex(),
        "f2ca1bb6c7e907d06dafe4687e579fce76b37e4e93b7605022da52e6ccc26fd2"
    );
    assert_eq!(read(&*store, id).await.unwrap(), b"test\n");
    assert_eq!(store.stat(id, true).await.unwrap().map(|m| m.len), Some(5));
    assert_eq!(store.list().await.unwrap(), vec![id]);
    assert!(store.get(id_of("absent"), true).await.unwrap().is_none());
    assert!(store.stat(id_of("absent"), true).await.unwrap().is_none());
}

pub(crate) async fn content_is_idempotent<S: Store>(store: Arc<S>) {
    let a = store
        .put_content(body_from_bytes("same"), LIMIT)
        .await
        .unwrap();
    let b = store
        .put_content(body_from_bytes("same"), LIMIT)
        .await
        .unwrap();
    assert_eq!(a, b);
    assert_eq!(store.list().await.unwrap(), vec![a]);
}

pub(crate) async fn empty_body_is_content<S: Store>(store: Arc<S>) {
    let id = store.put_content(body_from_bytes(""), LIMIT).await.unwrap();
    assert_eq!(id, ObjectId::digest(b""));
    assert_eq!(read(&*store, id).await.unwrap(), b"");
}

pub(crate) async fn oversize_body_stores_nothing<S: Store>(store: Arc<S>) {
    let err = store
        .put_content(body_from_bytes("12345"), 4)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::TooLarge { limit: 4 }), "{err}");
    let slot = slot_name("k");
    for mode in [SlotWrite::Replace, SlotWrite::IfAbsent, SlotWrite::Append] {
        let err = store
            .put_slot(slot, body_from_bytes("12345"), 4, mode)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::TooLarge { .. }), "{err}");
    }
    assert!(store.list().await.unwrap().is_empty());
    // Exactly at the limit is fine.
    store.put_content(body_from_bytes("1234"), 4).await.unwrap();
}

pub(crate) async fn chunked_body_is_hashed_whole<S: Store>(store: Arc<S>) {
    let chunks: Vec<std::io::Result<Bytes>> = ["ab", "", "c"]
        .iter()
        .map(|s| Ok(Bytes::from(*s)))
        .collect();
    let body: BodyStream = Box::pin(futures_util::stream::iter(chunks));
    let id = store.put_content(body, LIMIT).await.unwrap();
    assert_eq!(id, id_of("abc"));
}

pub(crate) async fn slot_replace<S: Store>(store: Arc<S>) {
    let slot = slot_name("key");
    let out = store
        .put_slot(slot, body_from_bytes("abc\n"), LIMIT, SlotWrite::Replace)
        .await;
    assert_eq!(out.unwrap(), SlotOutcome::Written);
    assert_eq!(read(&*store, slot).await.unwrap(), b"abc\n");
    store
        .put_slot(slot, body_from_bytes("def\n"), LIMIT, SlotWrite::Replace)
        .await
        .unwrap();
    assert_eq!(read(&*store, slot).await.unwrap(), b"def\n");
    assert_eq!(store.list().await.unwrap(), vec![slot]);
}

pub(crate) async fn slot_write_on_content_is_refused<S: Store>(store: Arc<S>) {
    let id = store
        .put_content(body_from_bytes("key\n"), LIMIT)
        .await
        .unwrap();
    for mode in [SlotWrite::Replace, SlotWrite::Append] {
        let err = store
            .put_slot(id, body_from_bytes("abc\n"), LIMIT, mode)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Immutable(x) if x == id), "{err}");
    }
    let out = store
        .put_slot(id, body_from_bytes("abc\n"), LIMIT, SlotWrite::IfAbsent)
        .await;
    assert_eq!(out.unwrap(), SlotOutcome::Existed);
    assert_eq!(read(&*store, id).await.unwrap(), b"key\n");
}

pub(crate) async fn content_upload_onto_a_slot_is_refused<S: Store>(store: Arc<S>) {
    let id = id_of("value");
    store
        .put_slot(id, body_from_bytes("other"), LIMIT, SlotWrite::Replace)
        .await
        .unwrap();
    let err = store
        .put_content(body_from_bytes("value"), LIMIT)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::SlotConflict(x) if x == id),
        "{err}"
    );
    assert_eq!(read(&*store, id).await.unwrap(), b"other");
    // A slot of the same length but other bytes is still a conflict.
    store
        .put_slot(id, body_from_bytes("VALUE"), LIMIT, SlotWrite::Replace)
        .await
        .unwrap();
    assert!(
        store
            .put_content(body_from_bytes("value"), LIMIT)
            .await
            .is_err()
    );
    assert_eq!(read(&*store, id).await.unwrap(), b"VALUE");
}

pub(crate) async fn set_if_not<S: Store>(store: Arc<S>) {
    let slot = slot_name("lock");
    let first = store
        .put_slot(slot, body_from_bytes("1"), LIMIT, SlotWrite::IfAbsent)
        .await;
    assert_eq!(first.unwrap(), SlotOutcome::Created);
    let second = store
        .put_slot(slot, body_from_bytes("2"), LIMIT, SlotWrite::IfAbsent)
        .await;
    assert_eq!(second.unwrap(), SlotOutcome::Existed);
    assert_eq!(read(&*store, slot).await.unwrap(), b"1");
}

pub(crate) async fn append<S: Store>(store: Arc<S>) {
    let slot = slot_name("log");
    for line in ["a\n", "b\n", "c\n"] {
        let out = store
            .put_slot(slot, body_from_bytes(line), LIMIT, SlotWrite::Append)
            .await;
        assert_eq!(out.unwrap(), SlotOutcome::Written);
    }
    assert_eq!(read(&*store, slot).await.unwrap(), b"a\nb\nc\n");
    // Replace after appends, then append again.
    store
        .put_slot(slot, body_from_bytes("x"), LIMIT, SlotWrite::Replace)
        .await
        .unwrap();
    store
        .put_slot(slot, body_from_bytes("y"), LIMIT, SlotWrite::Append)
        .await
        .unwrap();
    assert_eq!(read(&*store, slot).await.unwrap(), b"xy");
}

pub(crate) async fn append_on_content_is_refused<S: Store>(store: Arc<S>) {
    let id = store
        .put_content(body_from_bytes("fixed"), LIMIT)
        .await
        .unwrap();
    let err = store
        .put_slot(id, body_from_bytes("more"), LIMIT, SlotWrite::Append)
        .await;
    assert!(matches!(err, Err(StoreError::Immutable(_))));
    assert_eq!(read(&*store, id).await.unwrap(), b"fixed");
}

pub(crate) async fn delete<S: Store>(store: Arc<S>) {
    let slot = slot_name("gone");
    store
        .put_slot(slot, body_from_bytes("v"), LIMIT, SlotWrite::Replace)
        .await
        .unwrap();
    store.delete_slot(slot).await.unwrap();
    assert!(read(&*store, slot).await.is_none());
    assert!(matches!(
        store.delete_slot(slot).await,
        Err(StoreError::NotFound(_))
    ));
    let id = store
        .put_content(body_from_bytes("keep"), LIMIT)
        .await
        .unwrap();
    assert!(matches!(
        store.delete_slot(id).await,
        Err(StoreError::Immutable(_))
    ));
    assert!(read(&*store, id).await.is_some());
    // After deleting a slot its name is free for content again.
    let name = id_of("reuse");
    store
        .put_slot(name, body_from_bytes("slot"), LIMIT, SlotWrite::Replace)
        .await
        .unwrap();
    store.delete_slot(name).await.unwrap();
    assert_eq!(
        store
            .put_content(body_from_bytes("reuse"), LIMIT)
            .await
            .unwrap(),
        name
    );
    assert!(matches!(
        store.delete_slot(name).await,
        Err(StoreError::Immutable(_))
    ));
}

pub(crate) async fn kinds<S: Store>(store: Arc<S>) {
    let id = store
        .put_content(body_from_bytes("c"), LIMIT)
        .await
        .unwrap();
    let slot = slot_name("s");
    store
        .put_slot(slot, body_from_bytes("v"), LIMIT, SlotWrite::Replace)
        .await
        .unwrap();
    assert_eq!(store.kind(id).await.unwrap(), Some(Kind::Content));
    assert_eq!(store.kind(slot).await.unwrap(), Some(Kind::Slot));
    assert_eq!(store.kind(id_of("none")).await.unwrap(), None);
    // A slot written with bytes that hash to its own name is content.
    let own = id_of("self");
    store
        .put_slot(own, body_from_bytes("self"), LIMIT, SlotWrite::Replace)
        .await
        .unwrap();
    assert_eq!(store.kind(own).await.unwrap(), Some(Kind::Content));
}

pub(crate) async fn sweep_zero_and_long_keep<S: Store>(store: Arc<S>) {
    let id = store
        .put_content(body_from_bytes("x"), LIMIT)
        .await
        .unwrap();
    assert_eq!(store.sweep(std::time::Duration::ZERO).await.unwrap(), 0);
    assert_eq!(
        store
            .sweep(std::time::Duration::from_secs(3600))
            .await
            .unwrap(),
        0
    );
    assert!(read(&*store, id).await.is_some());
}

pub(crate) async fn sweep_expires_everything_after_the_period<S: Store>(store: Arc<S>) {
    store
        .put_content(body_from_bytes("x"), LIMIT)
        .await
        .unwrap();
    store
        .put_slot(
            slot_name("y"),
            body_from_bytes("y"),
            LIMIT,
            SlotWrite::Replace,
        )
        .await
        .unwrap();
    // The smallest period there is: everything written before now has expired.
    let n = store
        .sweep(std::time::Duration::from_nanos(1))
        .await
        .unwrap();
    assert_eq!(n, 2);
    assert!(store.list().await.unwrap().is_empty());
}

pub(crate) async fn concurrent_setifnot_has_one_winner<S: Store>(store: Arc<S>) {
    let slot = slot_name("race");
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let body = body_from_bytes(format!("value {i}\n"));
                (
                    i,
                    store
                        .put_slot(slot, body, LIMIT, SlotWrite::IfAbsent)
                        .await
                        .unwrap(),
                )
            })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        let (i, out) = t.await.unwrap();
        if out == SlotOutcome::Created {
            winners.push(i);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one winner");
    let value = read(&*store, slot).await.unwrap();
    assert_eq!(value, format!("value {}\n", winners[0]).into_bytes());
}

pub(crate) async fn concurrent_appends_never_interleave<S: Store>(store: Arc<S>) {
    let slot = slot_name("log");
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                // Two chunks per line: a non-atomic append would show up as a split line.
                let chunks: Vec<std::io::Result<Bytes>> =
                    vec![Ok(format!("line {i:03} ").into()), Ok("end\n".into())];
                let body: BodyStream = Box::pin(futures_util::stream::iter(chunks));
                store
                    .put_slot(slot, body, LIMIT, SlotWrite::Append)
                    .await
                    .unwrap()
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let text = String::from_utf8(read(&*store, slot).await.unwrap()).unwrap();
    let lines: HashSet<&str> = text.lines().collect();
    assert_eq!(text.lines().count(), 50);
    for i in 0..50 {
        assert!(
            lines.contains(format!("line {i:03} end").as_str()),
            "line {i}"
        );
    }
}

pub(crate) async fn concurrent_identical_puts_store_one_object<S: Store>(store: Arc<S>) {
    let data = Bytes::from(vec![42u8; 200_000]);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let store = store.clone();
            let data = data.clone();
            tokio::spawn(async move {
                store
                    .put_content(body_from_bytes(data), LIMIT)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut ids = HashSet::new();
    for t in tasks {
        ids.insert(t.await.unwrap());
    }
    assert_eq!(ids.len(), 1);
    let id = *ids.iter().next().unwrap();
    assert_eq!(store.list().await.unwrap(), vec![id]);
    assert_eq!(read(&*store, id).await.unwrap(), data);
}

pub(crate) async fn large_object_streams_back<S: Store>(store: Arc<S>) {
    let data: Vec<u8> = (0..700_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let id = store
        .put_content(body_from_bytes(data.clone()), LIMIT)
        .await
        .unwrap();
    assert_eq!(read(&*store, id).await.unwrap(), data);
}

async fn put<S: Store>(store: &S, id: ObjectId, value: &str, mode: SlotWrite) {
    store
        .put_slot(id, body_from_bytes(value.to_owned()), LIMIT, mode)
        .await
        .unwrap();
}

/// `get_many` and `stat_many` (a burst's reads) give, id by id and in order,
/// what `get` and `stat` give: content small and large, a slot, a slot holding
/// its own bytes (content), absent names, repeats, and an empty list.
pub(crate) async fn many_at_once_answer_as_one_at_a_time<S: Store>(store: Arc<S>) {
    let small = store
        .put_content(body_from_bytes("small"), LIMIT)
        .await
        .unwrap();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let large = store
        .put_content(body_from_bytes(big.clone()), LIMIT)
        .await
        .unwrap();
    let empty = store.put_content(body_from_bytes(""), LIMIT).await.unwrap();
    let slot = slot_name("many");
    put(&*store, slot, "slot value", SlotWrite::Replace).await;
    let own = id_of("own bytes");
    put(&*store, own, "own bytes", SlotWrite::Replace).await;
    let absent = id_of("absent from the store");
    let ids = vec![absent, small, large, slot, empty, own, small, absent];

    // Twice: the second time a cache in front holds some of them.
    for _ in 0..2 {
        many_agree(&*store, &ids).await;
    }
    assert_eq!(read(&*store, large).await, Some(big));
    assert!(store.stat_many(Vec::new(), true).await.is_empty());
    assert!(store.get_many(Vec::new(), true).await.is_empty());
}

/// `stat_many` and `get_many` of `ids` against `stat` and `get` of each.
async fn many_agree<S: Store>(store: &S, ids: &[ObjectId]) {
    let metas = store.stat_many(ids.to_vec(), false).await;
    let objects = store.get_many(ids.to_vec(), false).await;
    assert_eq!((metas.len(), objects.len()), (ids.len(), ids.len()));
    for ((id, meta), obj) in ids.iter().zip(metas).zip(objects) {
        let want_meta = store.stat(*id, false).await.unwrap();
        assert_eq!(meta.unwrap(), want_meta, "stat_many of {id}");
        let obj = obj.unwrap();
        assert_eq!(
            obj.as_ref().map(|o| &o.meta),
            want_meta.as_ref(),
            "get_many of {id}"
        );
        let got = match obj {
            Some(obj) => {
                assert_eq!(obj.range, 0..obj.meta.len, "a get is whole");
                Some(bytes_of(obj).await)
            }
            None => None,
        };
        assert_eq!(got, read(store, *id).await, "bytes of {id}");
    }
}

pub(crate) async fn stat_reports_len_and_kind<S: Store>(store: Arc<S>) {
    let id = store
        .put_content(body_from_bytes("content"), LIMIT)
        .await
        .unwrap();
    let m = store.stat(id, false).await.unwrap().unwrap();
    assert_eq!((m.len, m.kind), (7, Kind::Content));
    assert_eq!(m.etag(id), format!("\"{}\"", id.to_hex()));
    let slot = slot_name("meta");
    put(&*store, slot, "slot value", SlotWrite::Replace).await;
    let m = store.stat(slot, false).await.unwrap().unwrap();
    assert_eq!((m.len, m.kind), (10, Kind::Slot));
    let tag = m.etag(slot);
    assert!(tag.starts_with("\"s-") && tag.ends_with('"'), "{tag}");
    let got = store.get(slot, false).await.unwrap().unwrap();
    assert_eq!(got.meta, m, "get and stat agree");
    // Created by set-if-not or by a first append, a slot is a slot too; with
    // bytes that hash to its own name it is content.
    let appended = slot_name("appended");
    put(&*store, appended, "x", SlotWrite::Append).await;
    assert_eq!(store.kind(appended).await.unwrap(), Some(Kind::Slot));
    let own = id_of("own");
    put(&*store, own, "own", SlotWrite::IfAbsent).await;
    assert_eq!(store.kind(own).await.unwrap(), Some(Kind::Content));
    let own = id_of("own append");
    put(&*store, own, "own append", SlotWrite::Append).await;
    assert_eq!(store.kind(own).await.unwrap(), Some(Kind::Content));
}

pub(crate) async fn slot_version_changes_with_the_bytes_only<S: Store>(store: Arc<S>) {
    let slot = slot_name("versioned");
    let version = |s: Arc<S>| async move { s.stat(slot, false).await.unwrap().unwrap().version };
    put(&*store, slot, "aaaa", SlotWrite::Replace).await;
    let v1 = version(store.clone()).await;
    // Reads (with timer refresh) do not change it.
    store.get(slot, true).await.unwrap().unwrap();
    store.stat(slot, true).await.unwrap().unwrap();
    assert_eq!(version(store.clone()).await, v1);
    // A replace with other bytes of the same length does, and so does an append.
    put(&*store, slot, "bbbb", SlotWrite::Replace).await;
    let v2 = version(store.clone()).await;
    assert_ne!(v2, v1);
    put(&*store, slot, "c", SlotWrite::Append).await;
    let v3 = version(store.clone()).await;
    assert_ne!(v3, v2);
    assert_ne!(v3, v1);
    // Deleted and recreated with the first bytes: a new version still.
    store.delete_slot(slot).await.unwrap();
    put(&*store, slot, "aaaa", SlotWrite::IfAbsent).await;
    let v4 = version(store.clone()).await;
    assert!(v4 != v1 && v4 != v2 && v4 != v3);
    for v in [v1, v2, v3, v4] {
        assert!(
            !v.is_empty()
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
            "{v}"
        );
    }
}

async fn range<S: Store>(store: &S, id: ObjectId, r: ByteRange) -> (std::ops::Range<u64>, Vec<u8>) {
    let obj = store.get_range(id, false, r).await.unwrap().unwrap();
    let range = obj.range.clone();
    (range, bytes_of(obj).await)
}

pub(crate) async fn ranges_of_small_and_large_objects<S: Store>(store: Arc<S>) {
    let small = store
        .put_content(body_from_bytes("0123456789"), LIMIT)
        .await
        .unwrap();
    assert_eq!(
        range(&*store, small, ByteRange::Closed(2, 4)).await,
        (2..5, b"234".to_vec())
    );
    assert_eq!(
        range(&*store, small, ByteRange::From(7)).await,
        (7..10, b"789".to_vec())
    );
    assert_eq!(
        range(&*store, small, ByteRange::Suffix(2)).await,
        (8..10, b"89".to_vec())
    );
    assert_eq!(
        range(&*store, small, ByteRange::Closed(5, 1000)).await,
        (5..10, b"56789".to_vec())
    );
    let data: Vec<u8> = (0..700_000u32).map(|i| (i * 13 % 251) as u8).collect();
    let big = store
        .put_content(body_from_bytes(data.clone()), LIMIT)
        .await
        .unwrap();
    for (r, want) in [
        (ByteRange::Closed(100_000, 499_999), 100_000..500_000),
        (ByteRange::From(350_001), 350_001..700_000),
        (ByteRange::Suffix(65_537), 634_463..700_000),
        (ByteRange::Closed(0, 0), 0..1),
    ] {
        let (got, bytes) = range(&*store, big, r).await;
        assert_eq!(got, want);
        assert_eq!(bytes, &data[want.start as usize..want.end as usize]);
    }
    let m = store
        .get_range(big, false, ByteRange::From(1))
        .await
        .unwrap()
        .unwrap()
        .meta;
    assert_eq!((m.len, m.kind), (700_000, Kind::Content));
    // Slots too.
    let slot = slot_name("ranged");
    put(&*store, slot, "hello world", SlotWrite::Replace).await;
    assert_eq!(
        range(&*store, slot, ByteRange::Closed(6, 10)).await,
        (6..11, b"world".to_vec())
    );
    assert!(
        store
            .get_range(id_of("absent"), false, ByteRange::From(0))
            .await
            .unwrap()
            .is_none()
    );
}

pub(crate) async fn unsatisfiable_ranges<S: Store>(store: Arc<S>) {
    let id = store
        .put_content(body_from_bytes("abc"), LIMIT)
        .await
        .unwrap();
    for r in [
        ByteRange::From(3),
        ByteRange::Closed(10, 20),
        ByteRange::Suffix(0),
    ] {
        let err = store.get_range(id, false, r).await.unwrap_err();
        assert!(
            matches!(err, StoreError::RangeNotSatisfiable { len: 3 }),
            "{r:?}: {err}"
        );
    }
    let empty = store.put_content(body_from_bytes(""), LIMIT).await.unwrap();
    let err = store
        .get_range(empty, false, ByteRange::From(0))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::RangeNotSatisfiable { len: 0 }),
        "{err}"
    );
}

pub(crate) async fn take_slot<S: Store>(store: Arc<S>) {
    let slot = slot_name("job");
    put(&*store, slot, "job 1\n", SlotWrite::Replace).await;
    let obj = store.take(slot).await.unwrap();
    assert_eq!(obj.meta.kind, Kind::Slot);
    assert_eq!(bytes_of(obj).await, b"job 1\n");
    assert!(store.stat(slot, false).await.unwrap().is_none());
    assert!(matches!(store.take(slot).await, Err(StoreError::NotFound(x)) if x == slot));
    // The name is free again: set-if-not creates it.
    let again = store
        .put_slot(slot, body_from_bytes("job 2\n"), LIMIT, SlotWrite::IfAbsent)
        .await
        .unwrap();
    assert_eq!(again, SlotOutcome::Created);
    // A large slot streams back whole.
    let big = slot_name("big job");
    let data = vec![9u8; 300_000];
    store
        .put_slot(
            big,
            body_from_bytes(data.clone()),
            LIMIT,
            SlotWrite::Replace,
        )
        .await
        .unwrap();
    assert_eq!(bytes_of(store.take(big).await.unwrap()).await, data);
    assert!(store.stat(big, false).await.unwrap().is_none());
}

pub(crate) async fn take_refuses_content_and_absent<S: Store>(store: Arc<S>) {
    let id = store
        .put_content(body_from_bytes("keep me"), LIMIT)
        .await
        .unwrap();
    assert!(matches!(store.take(id).await, Err(StoreError::Immutable(x)) if x == id));
    assert_eq!(read(&*store, id).await.unwrap(), b"keep me");
    let none = id_of("never written");
    assert!(matches!(store.take(none).await, Err(StoreError::NotFound(x)) if x == none));
}

pub(crate) async fn concurrent_takers_have_one_winner<S: Store>(store: Arc<S>) {
    let slot = slot_name("queue");
    put(&*store, slot, "the value", SlotWrite::Replace).await;
    let tasks: Vec<_> = (0..30)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                match store.take(slot).await {
                    Ok(obj) => Some(bytes_of(obj).await),
                    Err(StoreError::NotFound(_)) => None,
                    Err(e) => panic!("take failed: {e}"),
                }
            })
        })
        .collect();
    let mut won = Vec::new();
    for t in tasks {
        if let Some(v) = t.await.unwrap() {
            won.push(v);
        }
    }
    assert_eq!(won, vec![b"the value".to_vec()], "exactly one taker wins");
    assert!(store.stat(slot, false).await.unwrap().is_none());
}

/// [`Store::usage`] counts objects and their bytes, and nothing a backend keeps
/// beside them (use markers, temp files).
pub(crate) async fn usage_counts_objects_and_bytes<S: Store>(store: Arc<S>) {
    assert_eq!(store.usage().await.unwrap(), crate::Usage::default());
    let id = store
        .put_content(body_from_bytes("abc"), LIMIT)
        .await
        .unwrap();
    let slot = slot_name("usage");
    store
        .put_slot(slot, body_from_bytes("hello\n"), LIMIT, SlotWrite::Replace)
        .await
        .unwrap();
    store
        .put_slot(slot, body_from_bytes("more\n"), LIMIT, SlotWrite::Append)
        .await
        .unwrap();
    // Reads that record their use.
    assert!(store.get(id, true).await.unwrap().is_some());
    assert!(store.stat(slot, true).await.unwrap().is_some());
    let want = crate::Usage {
        objects: 2,
        bytes: 3 + 11,
    };
    assert_eq!(store.usage().await.unwrap(), want);
    store.delete_slot(slot).await.unwrap();
    let want = crate::Usage {
        objects: 1,
        bytes: 3,
    };
    assert_eq!(store.usage().await.unwrap(), want);
}

/// Objects written in quick succession list newest first, even within one
/// second (the precision of S3 listings on SeaweedFS) — the seed's listing order.
pub(crate) async fn list_is_most_recently_written_first<S: Store>(store: Arc<S>) {
    let mut written = Vec::new();
    for body in ["first", "second", "third"] {
        written.push(
            store
                .put_content(body_from_bytes(body), LIMIT)
                .await
                .unwrap(),
        );
        // Beyond the filesystem's timestamp granularity (a kernel tick).
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let slot = slot_name("newest");
    store
        .put_slot(slot, body_from_bytes("v"), LIMIT, SlotWrite::Replace)
        .await
        .unwrap();
    written.push(slot);
    written.reverse();
    assert_eq!(store.list().await.unwrap(), written);
}
