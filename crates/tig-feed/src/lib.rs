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
//! - [`sync`]: replication between stores, bundles, forks and deletion; the relay
//!   protocol without its transport ([`sync::relay`]).
//!
//! # Pulling from another store
//!
//! A pull names its source once ([`sync::Source`]: a store's path, a bundle file, a
//! git URL or a relay channel), fetches into a quarantine namespace, checks every new
//! message against the feed rules, and only then moves refs: `refs/remotes/<name>/<feed>`
//! always, `refs/heads/<feed>` by fast-forward. A fork is kept and reported, never
//! resolved by overwriting.
//!
//! ```no_run
//! use std::path::Path;
//! use tig_feed::FeedStore;
//! use tig_feed::sync::{self, Outcome, PullOptions};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = FeedStore::open(Path::new("bob-store"))?;
//! // what kind of source this is, decided once (a typo fails here, in words)
//! let source = sync::Source::parse("../alice-store")?;
//! assert!(matches!(source, sync::Source::Local(_)));
//! let report = sync::pull(&store, "../alice-store", &PullOptions::default())?;
//! for feed in &report.feeds {
//!     match &feed.outcome {
//!         Outcome::Rejected { violations } => {
//!             // nothing moved for this feed: a message broke a rule
//!             eprintln!("{}: {} violation(s)", feed.feed, violations.len());
//!         }
//!         Outcome::Fork { local, .. } => {
//!             println!("{}: fork, ours stays at {local}", feed.feed);
//!         }
//!         other => println!("{}: {other:?}, {} new", feed.feed, feed.new_messages),
//!     }
//! }
//! // `sync::find_forks` then proves any equivocation; `sync::export_proof` writes it.
//! # Ok(())
//! # }
//! ```

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
