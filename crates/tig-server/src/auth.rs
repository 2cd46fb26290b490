//! API-key checks with per-address throttling.
//!
//! A correct key is always served, whatever happened before from the same
//! address: many clients can share one address (NAT, proxy, ingress), and one of
//! them guessing must not lock the others out. Throttling applies to failures
//! only: a failed attempt is answered 401 after an async sleep (other requests
//! keep being served) and counted against the client's IP; once an address has
//! failed `auth_max_failures` times within `auth_window`, its further *failures*
//! get 429 (after the same sleep) until the window has passed. The map lock is a
//! plain mutex held for a few instructions, never across an await.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::config::{ApiKey, Config};
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

/// The key in force right now.
#[derive(Debug, Clone)]
pub enum KeyState {
    /// No key configured: writes are open, listing is disabled.
    Open,
    /// This key is required.
    Key(ApiKey),
    /// The key file exists but cannot be read: refuse everything that needs a key.
    Locked,
}

/// What identifies one version of the key file: device, inode, ctime, mtime and
/// size; `None` when it is absent.
type Stamp = Option<(u64, u64, (i64, i64), Option<SystemTime>, u64)>;

fn stamp_of(m: &std::fs::Metadata) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    Some((
        m.dev(),
        m.ino(),
        (m.ctime(), m.ctime_nsec()),
        m.modified().ok(),
        m.len(),
    ))
}

/// The key from `Config::api_key`, else from `Config::api_key_file`, re-read
/// only when the file's stamp (inode, ctime, mtime, size) changes. Only requests
/// that need the key check it, with one `stat` each, or on Linux none while an
/// inotify watch on the file (`keywatch.rs`) sees nothing touch it.
#[derive(Debug, Default)]
pub struct Keys {
    cache: Mutex<Cache>,
}

#[derive(Debug, Default)]
struct Cache {
    /// The file's stamp at the last `stat`, and the key state it gave.
    last: Option<(Stamp, KeyState)>,
    /// Counts changes seen by the watch: a `stat` answer is kept only if none
    /// was seen while it ran (a slower, older answer must not overwrite a
    /// newer one that the watch will not flag again).
    changes: u64,
    watch: Watching,
}

#[derive(Debug, Default)]
enum Watching {
    #[default]
    NotYet,
    #[cfg(target_os = "linux")]
    On(crate::keywatch::Watch),
    /// For good, even after a passing cause (a full inotify table, a `chmod`
    /// of the directory): that costs a `stat` per check, never a stale key.
    Off,
}

impl Cache {
    /// The cached state if the watch vouches for it; else `None`, and the
    /// caller `stat`s.
    fn vouched(&mut self, path: &Path) -> Option<KeyState> {
        match &mut self.watch {
            Watching::NotYet => {
                // Started before the first `stat`, so it covers every change
                // after it.
                #[cfg(target_os = "linux")]
                if let Some(w) = crate::keywatch::Watch::new(path) {
                    self.watch = Watching::On(w);
                    return None;
                }
                let _ = path;
                self.watch = Watching::Off;
                None
            }
            #[cfg(target_os = "linux")]
            Watching::On(w) => {
                use crate::keywatch::Seen;
                // A watch vouches only for the file it watches.
                let seen = if w.path() == path {
                    w.check()
                } else {
                    Seen::Lost
                };
                match seen {
                    Seen::Nothing => return self.last.as_ref().map(|(_, s)| s.clone()),
                    Seen::Changed => {}
                    Seen::Lost => self.watch = Watching::Off,
                }
                self.changes += 1;
                self.last = None;
                None
            }
            Watching::Off => None,
        }
    }
}

impl Keys {
    /// The key state for `config` now.
    pub fn current(&self, config: &Config) -> KeyState {
        if let Some(k) = &config.api_key {
            return KeyState::Key(k.clone());
        }
        match &config.api_key_file {
            Some(path) => self.read_file(path),
            None => KeyState::Open,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn read_file(&self, path: &Path) -> KeyState {
        let changes = {
            let mut cache = self.lock();
            if let Some(state) = cache.vouched(path) {
                return state;
            }
            cache.changes
        };
        let stamp = match std::fs::metadata(path) {
            Ok(m) => stamp_of(&m),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "cannot stat the key file");
                return KeyState::Locked;
            }
        };
        if let Some((s, state)) = &self.lock().last
            && *s == stamp
        {
            return state.clone();
        }
        let state = match stamp {
            None => KeyState::Open,
            Some(_) => match std::fs::read_to_string(path) {
                Ok(text) => match ApiKey::new(text.trim_end_matches(['\n', '\r'])) {
                    Some(k) => KeyState::Key(k),
                    None => KeyState::Open,
                },
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "cannot read the key file");
                    KeyState::Locked
                }
            },
        };
        let mut cache = self.lock();
        if cache.changes == changes {
            cache.last = Some((stamp, state.clone()));
        }
        state
    }
}

/// Checks `given` against the key in force for a request from `ip`.
/// Without a configured key everything is allowed and `given` is ignored.
pub async fn authorize(
    config: &Config,
    keys: &Keys,
    throttle: &Throttle,
    ip: IpAddr,
    given: Option<&str>,
) -> Result<(), ApiError> {
    let key = match keys.current(config) {
        KeyState::Open => return Ok(()),
        KeyState::Key(k) => Some(k),
        KeyState::Locked => None,
    };
    if let (Some(key), Some(g)) = (&key, given)
        && key.matches(g)
    {
        return Ok(());
    }
    let blocked = throttle.blocked(ip, config.auth_max_failures, config.auth_window);
    throttle.record_failure(ip, config.auth_window);
    tracing::warn!(%ip, blocked, "failed apikey attempt");
    tokio::time::sleep(config.auth_fail_delay).await;
    Err(if blocked {
        ApiError::Throttled
    } else {
        ApiError::Unauthorized
    })
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
        assert!(
            authorize(&c, &Keys::default(), &t, ip, Some("k"))
                .await
                .is_ok()
        );
        for _ in 0..3 {
            let e = authorize(&c, &Keys::default(), &t, ip, Some("bad"))
                .await
                .unwrap_err();
            assert!(matches!(e, ApiError::Unauthorized));
        }
        // Further failures from that address get 429; other addresses are not
        // affected.
        assert!(matches!(
            authorize(&c, &Keys::default(), &t, ip, Some("bad")).await,
            Err(ApiError::Throttled)
        ));
        assert!(matches!(
            authorize(&c, &Keys::default(), &t, ip, None).await,
            Err(ApiError::Throttled)
        ));
        assert!(matches!(
            authorize(&c, &Keys::default(), &t, other, Some("bad")).await,
            Err(ApiError::Unauthorized)
        ));
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(matches!(
            authorize(&c, &Keys::default(), &t, ip, Some("bad")).await,
            Err(ApiError::Unauthorized)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_correct_key_is_served_at_once_even_from_a_throttled_address() {
        let c = cfg();
        let t = Throttle::default();
        let ip: IpAddr = [10, 0, 0, 9].into();
        for _ in 0..1_000 {
            let _ = authorize(&c, &Keys::default(), &t, ip, Some("bad")).await;
        }
        assert!(t.blocked(ip, c.auth_max_failures, c.auth_window));
        let start = Instant::now();
        assert!(
            authorize(&c, &Keys::default(), &t, ip, Some("k"))
                .await
                .is_ok()
        );
        // No sleep at all on the success path (the clock is paused: any sleep
        // would show).
        assert_eq!(Instant::now(), start);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_sleeps_without_blocking_others() {
        let c = std::sync::Arc::new(cfg());
        let t = std::sync::Arc::new(Throttle::default());
        let start = Instant::now();
        let (c2, t2) = (c.clone(), t.clone());
        let bad = tokio::spawn(async move {
            authorize(&c2, &Keys::default(), &t2, [10, 0, 0, 3].into(), None).await
        });
        tokio::task::yield_now().await;
        // A good request is answered at once while the bad one sleeps.
        assert!(
            authorize(&c, &Keys::default(), &t, [10, 0, 0, 4].into(), Some("k"))
                .await
                .is_ok()
        );
        assert_eq!(Instant::now(), start);
        assert!(bad.await.unwrap().is_err());
        assert!(Instant::now() - start >= Duration::from_secs(1));
    }

    #[test]
    fn key_file_is_reread_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("apikey");
        let c = Config {
            api_key_file: Some(path.clone()),
            ..Config::default()
        };
        let keys = Keys::default();
        assert!(matches!(keys.current(&c), KeyState::Open));
        std::fs::write(&path, "abc\n").unwrap();
        assert!(matches!(keys.current(&c), KeyState::Key(k) if k.matches("abc")));
        // The same length again: the new bytes count, not just the size.
        std::fs::write(&path, "xyz\n").unwrap();
        assert!(matches!(keys.current(&c), KeyState::Key(k) if k.matches("xyz")));
        std::fs::write(&path, "longer\n").unwrap();
        assert!(matches!(keys.current(&c), KeyState::Key(k) if k.matches("longer")));
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(keys.current(&c), KeyState::Open));
    }

    #[tokio::test]
    async fn no_key_configured_allows_everything() {
        let c = Config::default();
        let t = Throttle::default();
        assert!(
            authorize(
                &c,
                &Keys::default(),
                &t,
                [1, 1, 1, 1].into(),
                Some("anything")
            )
            .await
            .is_ok()
        );
        assert!(
            authorize(&c, &Keys::default(), &t, [1, 1, 1, 1].into(), None)
                .await
                .is_ok()
        );
    }
}
