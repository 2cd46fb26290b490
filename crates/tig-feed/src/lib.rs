//! SSB over git: signed append-only logs kept as git commits.
//!
//! A *feed* is the ref `refs/heads/<feed id>` of an ordinary git repository (the
//! *store*). Each message is a commit with the empty tree, at most one parent (the
//! previous message), author and committer name = the feed id, the content as the
//! commit message, and a signature by the feed's key in git's own `gpgsig` header, so
//! `git log --show-signature` checks it too.
//!
//! Layout:
//! - [`id`]: [`FeedId`], the public key (ed25519, 64 hex) or GPG fingerprint (40 hex).
//! - [`identity`]: ed25519 key files (OpenSSH format) and SSH signatures (SSHSIG).
//! - [`commit`]: building and parsing the commit bytes; the signed payload.
//! - [`store`]: [`FeedStore`]: init/open, feeds, aliases, append (compare-and-swap,
//!   batch), reading logs.
//! - [`verify`]: the feed rules, [`verify_range`] and [`verify_feed`].
//! - [`pack`]: one delta-free pack for a batch of new commits.
//! - `refupdate`: the ref compare-and-swap (git's lock-file protocol).
//! - [`gpg`]: GPG feeds through the `gpg` program, as git does.
//! - [`sync`]: replication between stores, bundles, forks and deletion.

pub mod commit;
pub mod error;
pub mod gpg;
pub mod id;
pub mod identity;
pub mod pack;
mod refupdate;
pub mod store;
pub mod sync;
pub mod verify;

pub use commit::{MAX_CONTENT, Time};
pub use error::FeedError;
pub use id::{FeedId, FeedKind};
pub use identity::Identity;
pub use store::{AppendOptions, FeedStore, Message, Signer};
pub use verify::{SignatureState, Violation, check_commits, verify_feed, verify_range};
