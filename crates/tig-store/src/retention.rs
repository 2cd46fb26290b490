//! Retention: forgetting objects that nobody used for a while.
//!
//! An object's *last use* is its last write or read. It expires once
//! `now - max(last use, process start) >= retention`; the process start term makes a
//! restart restart every timer. A retention of zero keeps everything forever.
//! [`spawn_sweeper`] runs [`Store::sweep`] every [`sweep_interval`], so an unused
//! object is gone within 1.25× the period (plus the time a sweep takes).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::Store;

/// Whether an object last used at `last_used` has expired at `now`, for a process
/// started at `started`. Zero retention never expires; clock steps backwards never
/// expire anything.
pub fn expired(
    last_used: SystemTime,
    started: SystemTime,
    now: SystemTime,
    retention: Duration,
) -> bool {
    if retention.is_zero() {
        return false;
    }
    let last = last_used.max(started);
    now.duration_since(last).is_ok_and(|age| age >= retention)
}

/// How often the sweeper wakes for a given retention: a quarter of it, between
/// 10 ms and one minute.
pub fn sweep_interval(retention: Duration) -> Duration {
    (retention / 4).clamp(Duration::from_millis(10), Duration::from_secs(60))
}

/// Spawns the background sweeper; it runs until the handle is aborted. With zero
/// retention nothing is spawned that ever deletes (the task returns at once).
pub fn spawn_sweeper<S: Store>(store: Arc<S>, retention: Duration) -> tokio::task::JoinHandle<()> {
    spawn_sweeper_with(store, retention, |_| {})
}

/// [`spawn_sweeper`], calling `on_deleted(n)` after each sweep that deleted `n > 0`
/// objects (the server counts them in `tig_retention_deleted_total`).
pub fn spawn_sweeper_with<S: Store>(
    store: Arc<S>,
    retention: Duration,
    on_deleted: impl Fn(usize) + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if retention.is_zero() {
            return;
        }
        let mut tick = tokio::time::interval(sweep_interval(retention));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match store.sweep(retention).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(deleted = n, "retention sweep");
                    on_deleted(n);
                }
                Err(e) => tracing::error!(error = %e, "retention sweep failed"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MemStore, body_from_bytes};

    #[test]
    fn expiry_rule() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let s = Duration::from_secs;
        assert!(!expired(t0, t0, t0 + s(9), s(10)));
        assert!(expired(t0, t0, t0 + s(10), s(10)));
        // A restart at t0+5 restarts the timer.
        assert!(!expired(t0, t0 + s(5), t0 + s(12), s(10)));
        assert!(expired(t0, t0 + s(5), t0 + s(15), s(10)));
        // Zero keeps forever; a clock stepping back expires nothing.
        assert!(!expired(t0, t0, t0 + s(1_000_000), Duration::ZERO));
        assert!(!expired(t0 + s(100), t0, t0, s(10)));
    }

    #[test]
    fn interval_is_a_quarter_within_bounds() {
        assert_eq!(
            sweep_interval(Duration::from_secs(4)),
            Duration::from_secs(1)
        );
        assert_eq!(
            sweep_interval(Duration::from_millis(1)),
            Duration::from_millis(10)
        );
        assert_eq!(
            sweep_interval(Duration::from_secs(14 * 86400)),
            Duration::from_secs(60)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn used_objects_stay_and_unused_ones_go() {
        let store = Arc::new(MemStore::new());
        let used = store
            .put_content(body_from_bytes("used"), 100)
            .await
            .unwrap();
        let unused = store
            .put_content(body_from_bytes("unused"), 100)
            .await
            .unwrap();
        let sweeper = spawn_sweeper(store.clone(), Duration::from_secs(10));
        for _ in 0..30 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            assert!(store.get(used, true).await.unwrap().is_some());
        }
        assert!(store.stat(unused, false).await.unwrap().is_none());
        // Once nobody reads it, the used one goes too, within 2x the period.
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert!(store.stat(used, false).await.unwrap().is_none());
        sweeper.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn zero_retention_keeps_forever() {
        let store = Arc::new(MemStore::new());
        let id = store.put_content(body_from_bytes("x"), 100).await.unwrap();
        let sweeper = spawn_sweeper(store.clone(), Duration::ZERO);
        tokio::time::sleep(Duration::from_secs(365 * 86400)).await;
        assert!(store.stat(id, false).await.unwrap().is_some());
        sweeper.abort();
    }
}
