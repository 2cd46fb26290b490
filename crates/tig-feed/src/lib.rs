//! SSB over git: signed append-only logs kept as git commits.
//!
//! (Being built: identities, messages, append, verify — and under [`sync`],
//! replication, bundles, forks and deletion.)

pub mod sync;
