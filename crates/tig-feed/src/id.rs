//! Feed ids: the public key that names a feed and its ref `refs/heads/<id>`.

use std::fmt;

use crate::FeedError;

/// Which kind of key a feed id is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FeedKind {
    /// An ed25519 public key (32 bytes, 64 lowercase hex); signatures are SSH
    /// signatures (`gpg.format=ssh`), so the id alone verifies the feed.
    Ed25519,
    /// A GPG key fingerprint (20 bytes, 40 hex, as the seed's workflow names feeds);
    /// signatures are OpenPGP, checked through the `gpg` program and its keyring.
    Gpg,
}

/// The id of a feed: an ed25519 public key in lowercase hex, or a 40-hex GPG
/// fingerprint (kept in the case it was written, since it is also a ref name).
///
/// Ids order as their text does (the order of `refs/heads/<id>`), so a map
/// keyed by `FeedId` lists feeds as one keyed by the hex id would.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FeedId {
    kind: FeedKind,
    hex: String,
}

impl Ord for FeedId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // the kind follows from the length of the text: ordering by the text
        // alone agrees with `Eq`
        self.hex.cmp(&other.hex)
    }
}

impl PartialOrd for FeedId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl FeedId {
    /// Parses a feed id: 64 hex chars (ed25519, normalised to lowercase) or 40 hex
    /// chars (GPG fingerprint, case kept). A `refs/heads/` prefix is accepted.
    pub fn parse(s: &str) -> Result<FeedId, FeedError> {
        let t = s.strip_prefix("refs/heads/").unwrap_or(s);
        if !t.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(FeedError::InvalidId(s.to_string()));
        }
        match t.len() {
            64 => Ok(FeedId {
                kind: FeedKind::Ed25519,
                hex: t.to_ascii_lowercase(),
            }),
            40 => Ok(FeedId {
                kind: FeedKind::Gpg,
                hex: t.to_string(),
            }),
            _ => Err(FeedError::InvalidId(s.to_string())),
        }
    }

    /// The feed id of an ed25519 public key.
    pub fn from_ed25519(key: &[u8; 32]) -> FeedId {
        FeedId {
            kind: FeedKind::Ed25519,
            hex: hex::encode(key),
        }
    }

    /// The ref that holds this feed's log: `refs/heads/<id>`.
    pub fn ref_name(&self) -> String {
        format!("refs/heads/{}", self.hex)
    }

    /// The id as text (same as `Display`).
    pub fn as_str(&self) -> &str {
        &self.hex
    }

    /// Which kind of key this is.
    pub fn kind(&self) -> FeedKind {
        self.kind
    }

    /// The ed25519 public key bytes, for an ed25519 feed.
    pub fn ed25519_key(&self) -> Option<[u8; 32]> {
        if self.kind != FeedKind::Ed25519 {
            return None;
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(&self.hex, &mut out).ok()?;
        Some(out)
    }

    /// True if `name` (an author name, a fingerprint) names this feed: exact for
    /// ed25519 ids, case-insensitive for GPG fingerprints.
    pub fn matches(&self, name: &str) -> bool {
        match self.kind {
            FeedKind::Ed25519 => name == self.hex,
            FeedKind::Gpg => name.eq_ignore_ascii_case(&self.hex),
        }
    }
}

impl fmt::Display for FeedId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex)
    }
}

impl std::str::FromStr for FeedId {
    type Err = FeedError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FeedId::parse(s)
    }
}

impl serde::Serialize for FeedId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.hex)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_kinds() {
        let ed = "AB".repeat(32);
        let id = FeedId::parse(&ed).unwrap();
        assert_eq!(id.kind(), FeedKind::Ed25519);
        assert_eq!(id.to_string(), "ab".repeat(32));
        assert_eq!(id.ref_name(), format!("refs/heads/{}", "ab".repeat(32)));
        assert_eq!(id.ed25519_key().unwrap(), [0xab; 32]);
        let fpr = "CE44B3CFC4C68B868A7AE868D87953FAD4BB4EC4";
        let g = FeedId::parse(fpr).unwrap();
        assert_eq!(g.kind(), FeedKind::Gpg);
        assert_eq!(g.to_string(), fpr);
        assert!(g.matches(&fpr.to_lowercase()));
        assert_eq!(FeedId::parse(&format!("refs/heads/{fpr}")).unwrap(), g);
    }

    #[test]
    fn ids_order_as_their_text() {
        let ed = FeedId::parse(&"b".repeat(64)).unwrap();
        let gpg = FeedId::parse(&"A".repeat(40)).unwrap();
        assert!(gpg < ed);
        assert_eq!(gpg.as_str() < ed.as_str(), gpg < ed);
    }

    #[test]
    fn rejects_other_strings() {
        for s in [
            "",
            "bob-frontier",
            &"a".repeat(63),
            &"g".repeat(64),
            &"a".repeat(41),
        ] {
            assert!(FeedId::parse(s).is_err(), "{s}");
        }
    }
}
