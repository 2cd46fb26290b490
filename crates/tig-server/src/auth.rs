//! API-key checks with per-address throttling.
//!
//! A failed attempt is answered after an async sleep (other requests keep being
//! served) and counted against the client's IP. Once an address has failed
//! `auth_max_failures` times within `auth_window`, every request from it that needs
//! the key gets 429 until the window has passed. The map lock is a plain mutex held
//! for a few instructions, never across an await.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::Config;
use crate::error::ApiError;

/// Failure counts per address.
#[derive(Debug, Default)]
pub struct Throttle {
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

/// Above this many tracked addresses, expired entries are pruned.
const PRUNE_AT: usize = 10_000;

impl Throttle {
    fn with_map<T>(&self, f: impl FnOnce(&mut HashMap<IpAddr, (u32, Instant)>) -> T) -> T {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut map)
    }

    /// Whether `ip` is currently locked out.
    pub fn blocked(&self, ip: IpAddr, max: u32, window: Duration) -> bool {
        self.with_map(|m| match m.get(&ip) {
            Some(&(n, since)) if since.elapsed() < window => n >= max,
            Some(_) => {
                m.remove(&ip);
                false
            }
            None => false,
        })
    }

    /// Counts a failed attempt from `ip`.
    pub fn record_failure(&self, ip: IpAddr, window: Duration) {
        self.with_map(|m| {
            if m.len() >= PRUNE_AT {
                m.retain(|_, (_, since)| since.elapsed() < window);
            }
            let e = m.entry(ip).or_insert((0, Instant::now()));
            if e.1.elapsed() >= window {
                *e = (0, Instant::now());
            }
            e.0 += 1;
        });
    }
}

/// Checks `given` against the configured key for a request from `ip`.
/// Without a configured key everything is allowed and `given` is ignored.
pub async fn authorize(
    config: &Config,
    throttle: &Throttle,
    ip: IpAddr,
    given: Option<&str>,
) -> Result<(), ApiError> {
    let Some(key) = &config.api_key else {
        return Ok(());
    };
    if throttle.blocked(ip, config.auth_max_failures, config.auth_window) {
        return Err(ApiError::Throttled);
    }
    if given.is_some_and(|g| key.matches(g)) {
        return Ok(());
    }
    throttle.record_failure(ip, config.auth_window);
    tracing::warn!(%ip, "failed apikey attempt");
    tokio::time::sleep(config.auth_fail_delay).await;
    Err(ApiError::Unauthorized)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ApiKey;

    fn cfg() -> Config {
        Config {
            api_key: ApiKey::new("k"),
            auth_fail_delay: Duration::from_secs(1),
            auth_max_failures: 3,
            auth_window: Duration::from_secs(60),
            ..Config::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn failures_throttle_then_cool_down() {
        let c = cfg();
        let t = Throttle::default();
        let ip: IpAddr = [10, 0, 0, 1].into();
        let other: IpAddr = [10, 0, 0, 2].into();
        assert!(authorize(&c, &t, ip, Some("k")).await.is_ok());
        for _ in 0..3 {
            let e = authorize(&c, &t, ip, Some("bad")).await.unwrap_err();
            assert!(matches!(e, ApiError::Unauthorized));
        }
        // Locked out, even with the right key; other addresses are not.
        assert!(matches!(
            authorize(&c, &t, ip, Some("k")).await,
            Err(ApiError::Throttled)
        ));
        assert!(authorize(&c, &t, other, Some("k")).await.is_ok());
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(authorize(&c, &t, ip, Some("k")).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_sleeps_without_blocking_others() {
        let c = std::sync::Arc::new(cfg());
        let t = std::sync::Arc::new(Throttle::default());
        let start = Instant::now();
        let (c2, t2) = (c.clone(), t.clone());
        let bad =
            tokio::spawn(async move { authorize(&c2, &t2, [10, 0, 0, 3].into(), None).await });
        tokio::task::yield_now().await;
        // A good request is answered at once while the bad one sleeps.
        assert!(
            authorize(&c, &t, [10, 0, 0, 4].into(), Some("k"))
                .await
                .is_ok()
        );
        assert_eq!(Instant::now(), start);
        assert!(bad.await.unwrap().is_err());
        assert!(Instant::now() - start >= Duration::from_secs(1));
    }

    #[tokio::test]
    async fn no_key_configured_allows_everything() {
        let c = Config::default();
        let t = Throttle::default();
        assert!(
            authorize(&c, &t, [1, 1, 1, 1].into(), Some("anything"))
                .await
                .is_ok()
        );
        assert!(authorize(&c, &t, [1, 1, 1, 1].into(), None).await.is_ok());
    }
}
