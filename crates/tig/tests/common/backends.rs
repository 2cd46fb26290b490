//! Running one test body against both storage backends: a fresh data directory and a
//! fresh prefix of the test SeaweedFS bucket. Included with `#[path]` next to `common`
//! and `weed` (it needs both; `weed.rs` alone is also used by tig-store's tests).

#![allow(dead_code)]

use crate::common::TigServer;
use crate::weed;

/// Where a test's server keeps its objects.
#[derive(Clone, Copy)]
pub enum Backend {
    /// A fresh data directory.
    Fs,
    /// A fresh prefix of one shared bucket on the test SeaweedFS.
    S3,
}

/// A server with the API key `key` on `backend`; `None` (test skipped) only for
/// S3 outside CI when SeaweedFS is missing.
pub fn server_on(backend: Backend, key: &str) -> Option<TigServer> {
    match backend {
        Backend::Fs => Some(TigServer::start_with(None, &[], &[("APIKEY", key)])),
        Backend::S3 => {
            let weed = weed::Weed::shared()?;
            let root = format!("s3://{}/{}", weed.shared_bucket(), weed::unique_prefix());
            let mut envs: Vec<(&str, String)> = weed.env();
            envs.push(("APIKEY", key.to_owned()));
            let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            Some(TigServer::start_with(None, &["--root", &root], &envs))
        }
    }
}

/// Runs each named test body (a `fn(TigServer)`) once per backend, with servers
/// from the calling file's `fn server(Backend) -> Option<TigServer>`.
#[macro_export]
macro_rules! on_both_backends {
    ($($body:ident),* $(,)?) => {
        mod fs {
            $(#[test]
            fn $body() {
                super::$body(super::server(super::Backend::Fs).expect("fs server"));
            })*
        }
        mod s3 {
            $(#[test]
            fn $body() {
                if let Some(s) = super::server(super::Backend::S3) {
                    super::$body(s);
                }
            })*
        }
    };
}
