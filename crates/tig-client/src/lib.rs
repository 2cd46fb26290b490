//! A tig client that trusts no server.
//!
//! Every object it downloads must hash to its name before any byte reaches the
//! caller; large files are cut into content-defined chunks and stored as burst
//! lists; directories are stored as content-addressed trees; a whole server can be
//! mirrored into a directory that `tig serve` can serve.
//!
//! Layout:
//! - [`http`]: one request per call, retries of transient failures, errors that name
//!   the request. Blocking `reqwest` with a bounded pool of threads: the work is
//!   streaming files to and from disk and hashing, which is plainer on threads, and the
//!   `tig` binary has no async runtime of its own to share.
//! - [`fetch`]: verified downloads (plain objects and bursts).
//! - [`upload`]: the upload pool (hash, HEAD, PUT, check the name) and `put`.
//! - [`cache`]: the snapshot cache (file stamp → chunk ids), never trusted for what
//!   the server holds;
//! - [`chunk`]: FastCDC chunk sizes and burst lists; [`tree`]: the snapshot tree
//!   format; [`snapshot`]: snapshot and restore; [`backup`]: mirroring.
//! - [`spread`]: one file over several servers (XOR-split, stripes).
//! - [`kv`]: key-value slots; [`target`]: names on the command line; [`size`]: sizes.

pub mod backup;
pub mod cache;
pub mod chunk;
pub mod error;
pub mod fetch;
pub mod http;
pub mod kv;
mod progress;
pub mod size;
pub mod snapshot;
pub mod spread;
pub mod target;
pub mod tree;
pub mod upload;

pub use backup::BackupResult;
pub use error::{Error, Limit, Result};
pub use http::{Client, Config, Payload, SlotWrite};
pub use kv::slot_id;
pub use size::{human, parse_size};
pub use snapshot::{RestoreResult, SnapshotOptions, SnapshotResult};
pub use spread::{SplitResult, parse_split};
pub use target::{Target, normalize_server, parse_target};
pub use upload::{Counts, PutResult};
