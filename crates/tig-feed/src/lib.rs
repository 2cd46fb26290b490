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
//!   protocol and its pull/push over a [`sync::relay::Transport`] (this crate has
//!   no HTTP: `tig-feed-http` implements the transport over `tig-client`).
//!
//! # Pulling from another store
//!
//! A pull is one pipeline. The source is named once ([`sync::Source`]: a store's
//! path, a bundle file, a git URL or a relay channel); received tips land in a
//! quarantine namespace as an [`Unverified<Tips>`](sync::verified::Unverified);
//! [`sync::verified::verify`] checks every new message against the feed rules and
//! is the only way to get a [`Verified<Tips>`](sync::verified::Verified); and only
//! a `Verified` moves refs: `refs/remotes/<name>/<feed>` always, `refs/heads/<feed>`
//! by fast-forward. A rejected feed moves nothing; a fork is kept and reported,
//! never resolved by overwriting.
//!
//! ```
//! use tig_feed::sync::{self, Outcome, PullOptions};
//! use tig_feed::{AppendOptions, FeedStore, Identity, Signer};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! // Alice writes two messages in her store.
//! let alice_dir = dir.path().join("alice");
//! let alice = FeedStore::init(&alice_dir)?;
//! let key = Signer::Ssh(Box::new(Identity::from_seed(&[7; 32])));
//! for text in ["hello", "world"] {
//!     alice.append(&key, text.as_bytes(), &AppendOptions::default())?;
//! }
//!
//! // Bob pulls them: what kind of source this is is decided once (a typo
//! // fails here, in words), then every new message is verified before any
//! // ref of Bob's moves.
//! let bob = FeedStore::init(&dir.path().join("bob"))?;
//! let source = alice_dir.to_str().ok_or("path is not UTF-8")?;
//! assert!(matches!(sync::Source::parse(source)?, sync::Source::Local(_)));
//! let report = sync::pull(&bob, source, &PullOptions::default())?;
//! assert_eq!(report.name, "alice");
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
//! let feed = key.feed_id();
//! assert!(matches!(report.feeds[0].outcome, Outcome::Created));
//! assert_eq!(report.feeds[0].feed, feed);
//! assert_eq!(bob.tip(&feed)?, alice.tip(&feed)?);
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
pub use verify::{Rule, SignatureState, Violation, check_commits, verify_feed, verify_range};
