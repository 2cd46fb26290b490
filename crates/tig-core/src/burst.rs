//! Burst lists: the one parser every crate uses, and the cap on their size.
//!
//! A burst list is text, one member a line: `/<h>.tig` or
//! `http(s)://host[:port]/<h>.tig` (taken by its path). Blank lines and a
//! trailing `\r` are ignored. A line that is not UTF-8 or not an object path is
//! refused, naming the line. A list over [`MAX_BURST_LIST`] bytes is refused
//! before it is parsed.

use crate::ObjectId;

/// Largest burst list tig reads, writes or serves: 16 MiB (about 240,000
/// members; with 1 MiB average chunks, a file of about 240 GiB).
pub const MAX_BURST_LIST: u64 = 16 << 20;

/// The response header of `POST /?concat=1` stating how many objects its body
/// concatenates.
pub const CONCAT_COUNT_HEADER: &str = "tig-concat-count";

/// Why a burst list is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BurstError {
    /// The list is longer than [`MAX_BURST_LIST`].
    #[error("burst list is {len} bytes, over the cap of {} MiB", MAX_BURST_LIST >> 20)]
    TooLarge {
        /// Its length in bytes.
        len: u64,
    },
    /// A line is not UTF-8 text.
    #[error("burst line {line} is not UTF-8 text")]
    NotUtf8 {
        /// 1-based line number.
        line: usize,
    },
    /// A line is not an object path or URL.
    #[error("burst line {line} is not an object path: {text}")]
    BadLine {
        /// 1-based line number.
        line: usize,
        /// The line, cut to 100 characters.
        text: String,
    },
}

/// Checks a burst list's length against [`MAX_BURST_LIST`].
pub fn check_burst_len(len: u64) -> Result<(), BurstError> {
    if len > MAX_BURST_LIST {
        Err(BurstError::TooLarge { len })
    } else {
        Ok(())
    }
}

/// Parses a whole burst list (at most [`MAX_BURST_LIST`] bytes) into its members,
/// in order. Strict: the first bad line refuses the list.
pub fn parse_burst(list: &[u8]) -> Result<Vec<ObjectId>, BurstError> {
    check_burst_len(list.len() as u64)?;
    // Each member line is at least 70 bytes (`/<64 hex>.tig\n`).
    let mut out = Vec::with_capacity(list.len() / 70 + 1);
    for m in burst_members(list) {
        out.push(m?);
    }
    Ok(out)
}

/// The members of a burst list one by one, without allocating the list again
/// (the caller enforces the size cap; see [`check_burst_len`]).
pub fn burst_members(list: &[u8]) -> impl Iterator<Item = Result<ObjectId, BurstError>> + '_ {
    list.split(|&b| b == b'\n')
        .enumerate()
        .filter_map(|(i, raw)| parse_line(i + 1, raw).transpose())
}

fn parse_line(line: usize, raw: &[u8]) -> Result<Option<ObjectId>, BurstError> {
    let text = std::str::from_utf8(raw).map_err(|_| BurstError::NotUtf8 { line })?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    ObjectId::from_burst_line(text)
        .map(Some)
        .map_err(|_| BurstError::BadLine {
            line,
            text: text.trim().chars().take(100).collect(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "f2ca1bb6c7e907d06dafe4687e579fce76b37e4e93b7605022da52e6ccc26fd2";

    #[test]
    fn lists_parse_in_order_with_blank_lines_and_crlf() {
        let id = ObjectId::from_hex(H).unwrap();
        let other = ObjectId::digest(b"x");
        let list = format!("/{H}.tig\r\n\n  \nhttp://h:1/{}.tig\n", other.to_hex());
        assert_eq!(parse_burst(list.as_bytes()).unwrap(), vec![id, other]);
        assert!(parse_burst(b"").unwrap().is_empty());
        assert!(parse_burst(b"\n\r\n").unwrap().is_empty());
    }

    #[test]
    fn bad_lines_are_refused_by_number() {
        let list = format!("/{H}.tig\n/apikey\n");
        assert_eq!(
            parse_burst(list.as_bytes()),
            Err(BurstError::BadLine {
                line: 2,
                text: "/apikey".into()
            })
        );
        // Strict UTF-8: a lossy decoding must not turn garbage into a path.
        let mut bad = format!("/{H}.tig\n").into_bytes();
        bad.extend_from_slice(b"/\xff.tig\n");
        assert_eq!(parse_burst(&bad), Err(BurstError::NotUtf8 { line: 2 }));
        let msg = parse_burst(b"/../etc/passwd").unwrap_err().to_string();
        assert_eq!(msg, "burst line 1 is not an object path: /../etc/passwd");
    }

    #[test]
    fn the_cap_is_enforced_before_parsing() {
        let line = format!("/{H}.tig\n");
        let n = (MAX_BURST_LIST as usize) / line.len() + 1;
        let big = line.repeat(n);
        assert!(big.len() as u64 > MAX_BURST_LIST);
        assert!(matches!(
            parse_burst(big.as_bytes()),
            Err(BurstError::TooLarge { .. })
        ));
        let fits = line.repeat(n - 1);
        assert_eq!(parse_burst(fits.as_bytes()).unwrap().len(), n - 1);
    }
}
