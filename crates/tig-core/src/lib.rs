//! Object ids and the path grammar of tig: `/<64 lowercase hex>.tig`.
//!
//! This crate does no I/O. It owns the one rule every other crate relies on: an
//! object is named by the SHA-256 of its bytes, written as 64 lowercase hex digits,
//! and addressed over HTTP as `/<hex>.tig`. It also holds the grammars shared by
//! the server and the client: burst lists ([`parse_burst`], capped at
//! [`MAX_BURST_LIST`]) and byte sizes ([`parse_size`]).

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

mod burst;
mod size;

pub use burst::{
    BurstError, CONCAT_COUNT_HEADER, MAX_BURST_LIST, burst_members, check_burst_len, parse_burst,
};
pub use size::{SizeError, parse_size};

/// Length of an object id in bytes (SHA-256).
pub const ID_LEN: usize = 32;
/// Length of an object id in hex digits.
pub const HEX_LEN: usize = 2 * ID_LEN;
/// The file-name extension every object carries.
pub const EXTENSION: &str = ".tig";

/// A SHA-256 object id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId([u8; ID_LEN]);

/// Why a string is not an object id or object path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not exactly 64 lowercase hex digits.
    #[error("not a 64-digit lowercase hex sha256: {0:?}")]
    BadHex(String),
    /// Not of the form `/<64 hex>.tig`.
    #[error("not an object path of the form /<64 hex>.tig: {0:?}")]
    BadPath(String),
}

/// The value of each lowercase hex digit; every other byte maps to `0xff`.
const NIBBLE: [u8; 256] = {
    let mut t = [0xff; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

impl ObjectId {
    /// Wraps raw digest bytes.
    pub const fn from_bytes(bytes: [u8; ID_LEN]) -> Self {
        Self(bytes)
    }

    /// The raw digest bytes.
    pub const fn as_bytes(&self) -> &[u8; ID_LEN] {
        &self.0
    }

    /// The id of `data`: its SHA-256.
    pub fn digest(data: &[u8]) -> Self {
        Self(Sha256::digest(data).into())
    }

    /// Parses exactly 64 lowercase hex digits (uppercase is refused, as the seed's
    /// file names are lowercase and two spellings must never name one object).
    pub fn from_hex(s: &str) -> Result<Self, ParseError> {
        // One pass, lowercase only (the `hex` crate also takes uppercase, so it
        // needed a second, checking pass): servers parse every name of a
        // `?missing=1` body and clients every id of their snapshot cache. A table
        // and no branch per digit: with a `match`, digits and letters in random
        // order (as in a burst list of different ids) mispredicted a branch each.
        let digits: &[u8; HEX_LEN] = s
            .as_bytes()
            .try_into()
            .map_err(|_| ParseError::BadHex(truncate(s)))?;
        let mut out = [0u8; ID_LEN];
        let mut invalid = 0u8;
        for (o, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
            let (hi, lo) = (NIBBLE[usize::from(pair[0])], NIBBLE[usize::from(pair[1])]);
            invalid |= hi | lo;
            *o = hi << 4 | lo;
        }
        if invalid > 0x0f {
            return Err(ParseError::BadHex(truncate(s)));
        }
        Ok(Self(out))
    }

    /// 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        self.with_hex(str::to_owned)
    }

    /// Calls `f` with the 64 hex digits as a `&str` on the stack, so a caller
    /// that joins them with more text allocates once.
    pub fn with_hex<R>(&self, f: impl FnOnce(&str) -> R) -> R {
        let digits = self.hex_digits();
        f(std::str::from_utf8(&digits).expect("hex digits are ASCII"))
    }

    /// The 64 lowercase hex digits as ASCII bytes, without allocating (for writers
    /// of many ids).
    pub fn hex_digits(&self) -> [u8; HEX_LEN] {
        let mut buf = [0u8; HEX_LEN];
        // Into a fixed buffer: `hex::encode` collects a char iterator, which showed
        // in the server's profile (an ETag and a path per request).
        hex::encode_to_slice(self.0, &mut buf).expect("HEX_LEN is twice ID_LEN");
        buf
    }

    /// The file name in a data directory: `<hex>.tig`.
    pub fn file_name(&self) -> String {
        self.with_hex(|hex| [hex, EXTENSION].concat())
    }

    /// The HTTP path: `/<hex>.tig`.
    pub fn path(&self) -> String {
        self.with_hex(|hex| ["/", hex, EXTENSION].concat())
    }

    /// Parses a file name `<hex>.tig`.
    pub fn from_file_name(name: &str) -> Option<Self> {
        let hex = name.strip_suffix(EXTENSION)?;
        Self::from_hex(hex).ok()
    }

    /// Parses an object path `/<hex>.tig`.
    pub fn from_path(path: &str) -> Result<Self, ParseError> {
        path.strip_prefix('/')
            .and_then(Self::from_file_name)
            .ok_or_else(|| ParseError::BadPath(truncate(path)))
    }

    /// Parses one line of a burst list: `/<hex>.tig`, or a full URL
    /// `http(s)://host[:port]/<hex>.tig` taken by its path. Surrounding whitespace
    /// (including a trailing `\r`) is ignored. Anything else is refused: a burst
    /// must never name a file that is not an object.
    pub fn from_burst_line(line: &str) -> Result<Self, ParseError> {
        let line = line.trim();
        // Most lines are paths: only look for a scheme in the others (a path
        // cannot hold "://" and still name an object, so both ways agree).
        let scheme = if line.starts_with('/') {
            None
        } else {
            line.split_once("://")
        };
        let path = match scheme {
            Some((scheme, rest)) if scheme == "http" || scheme == "https" => match rest.find('/') {
                Some(i) => &rest[i..],
                None => return Err(ParseError::BadPath(truncate(line))),
            },
            Some(_) => return Err(ParseError::BadPath(truncate(line))),
            None => line,
        };
        Self::from_path(path).map_err(|_| ParseError::BadPath(truncate(line)))
    }
}

/// Replaces the first `*` of a `format=` template with the object path
/// (`http://host:7777*` → `http://host:7777/<h>.tig`). A template without `*`
/// is returned unchanged, as the seed does.
pub fn format_path(template: &str, id: &ObjectId) -> String {
    template.replacen('*', &id.path(), 1)
}

/// Incremental SHA-256 for streaming writers.
#[derive(Clone, Default)]
pub struct Hasher(Sha256);

impl Hasher {
    /// A fresh hasher.
    pub fn new() -> Self {
        Self::default()
    }
    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    /// The id of everything fed so far.
    pub fn finish(self) -> ObjectId {
        ObjectId(self.0.finalize().into())
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.with_hex(|hex| f.write_str(hex))
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({})", self.to_hex())
    }
}

impl FromStr for ObjectId {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_hex(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEST_NL: &str = "f2ca1bb6c7e907d06dafe4687e579fce76b37e4e93b7605022da52e6ccc26fd2";

    #[test]
    fn digest_matches_the_seed_example() {
        // `echo test | sha256sum` from the seed's README.
        assert_eq!(ObjectId::digest(b"test\n").to_hex(), TEST_NL);
        let mut h = Hasher::new();
        h.update(b"te");
        h.update(b"st\n");
        assert_eq!(h.finish().to_hex(), TEST_NL);
    }

    #[test]
    fn hex_round_trip_and_refusals() {
        let id = ObjectId::from_hex(TEST_NL).unwrap();
        assert_eq!(id.to_hex(), TEST_NL);
        assert!(ObjectId::from_hex(&TEST_NL.to_uppercase()).is_err());
        assert!(ObjectId::from_hex(&TEST_NL[1..]).is_err());
        assert!(ObjectId::from_hex(&format!("{TEST_NL}0")).is_err());
        assert!(ObjectId::from_hex(&format!("g{}", &TEST_NL[1..])).is_err());
        assert!(ObjectId::from_hex(&"é".repeat(32)).is_err());
        // every byte value, in each position of a digit pair
        for b in 0..=255u8 {
            let id = ObjectId([b; ID_LEN]);
            assert_eq!(ObjectId::from_hex(&id.to_hex()), Ok(id));
            assert_eq!(id.to_hex(), hex::encode([b; ID_LEN]));
        }
        // every ASCII byte in one digit's place: only 0-9 and a-f pass
        for b in 0..=127u8 {
            let mut s = TEST_NL.as_bytes().to_vec();
            s[5] = b;
            let s = String::from_utf8(s).unwrap();
            let lower_hex = b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
            assert_eq!(ObjectId::from_hex(&s).is_ok(), lower_hex, "{b:#04x}");
        }
        for bad in [b'/', b':', b'@', b'G', b'`', b'g', b'A', b'F'] {
            for at in [0, 1, 63] {
                let mut s = TEST_NL.as_bytes().to_vec();
                s[at] = bad;
                let s = String::from_utf8(s).unwrap();
                assert!(ObjectId::from_hex(&s).is_err(), "{s}");
            }
        }
    }

    #[test]
    fn paths() {
        let id = ObjectId::from_hex(TEST_NL).unwrap();
        assert_eq!(id.path(), format!("/{TEST_NL}.tig"));
        assert_eq!(ObjectId::from_path(&id.path()).unwrap(), id);
        assert!(ObjectId::from_path(&format!("{TEST_NL}.tig")).is_err());
        assert!(ObjectId::from_path(&format!("/{TEST_NL}.tig/")).is_err());
        assert!(ObjectId::from_path("/apikey").is_err());
        assert_eq!(
            format_path("http://h:7777*", &id),
            format!("http://h:7777/{TEST_NL}.tig")
        );
        assert_eq!(format_path("*", &id), id.path());
        assert_eq!(format_path("a*b*", &id), format!("a/{TEST_NL}.tigb*"));
    }

    #[test]
    fn burst_lines() {
        let id = ObjectId::from_hex(TEST_NL).unwrap();
        assert_eq!(
            ObjectId::from_burst_line(&format!("/{TEST_NL}.tig\r")).unwrap(),
            id
        );
        let url = format!("http://127.0.0.1:7777/{TEST_NL}.tig");
        assert_eq!(ObjectId::from_burst_line(&url).unwrap(), id);
        for bad in [
            "/apikey",
            "/../etc/passwd",
            "ftp://x/a.tig",
            "http://host",
            "/x.tig",
        ] {
            assert!(ObjectId::from_burst_line(bad).is_err(), "{bad}");
        }
        let nested = format!("http://h/{TEST_NL}.tig/../apikey");
        assert!(ObjectId::from_burst_line(&nested).is_err());
    }
}
