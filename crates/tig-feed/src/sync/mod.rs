//! Replication between stores, bundles, fork detection and proofs, deletion.
