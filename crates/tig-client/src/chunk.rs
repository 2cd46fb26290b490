//! Content-defined chunking (FastCDC 2020) with sizes derived from the server's body
//! limit, and the burst lists that name chunks in order.
//!
//! Boundaries depend only on content and on [`ChunkParams`], so an edit in one place
//! of a large file changes only the chunks around it: the others keep their hashes
//! and are not uploaded again.

use std::io::Read;

use fastcdc::v2020::StreamCDC;
use tig_core::ObjectId;

use crate::error::{Error, Result};

/// The largest chunk we ever make, whatever the server accepts.
pub const MAX_CHUNK: u64 = 4 << 20;

/// Minimum, average and maximum chunk sizes for FastCDC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkParams {
    /// No chunk is smaller, except the last of a file.
    pub min: u32,
    /// The target average.
    pub avg: u32,
    /// No chunk is larger.
    pub max: u32,
}

impl ChunkParams {
    /// Sizes for a server that accepts bodies up to `limit` bytes:
    /// max = min(4 MiB, limit), avg = max/4, min = max/16. For the default limit of
    /// 128 MiB that is 4 MiB / 1 MiB / 256 KiB.
    pub fn for_limit(limit: u64) -> Result<Self> {
        if limit < 1024 {
            return Err(Error::Usage(format!(
                "--max-size {limit} is too small to chunk under (at least 1 KiB)"
            )));
        }
        let max = limit.min(MAX_CHUNK) as u32;
        Ok(Self {
            min: (max / 16).max(fastcdc::v2020::MINIMUM_MIN),
            avg: (max / 4).max(fastcdc::v2020::AVERAGE_MIN),
            max,
        })
    }
}

/// Splits `reader` into content-defined chunks. An empty input yields no chunk.
pub fn chunks<R: Read>(reader: R, p: ChunkParams) -> impl Iterator<Item = Result<Vec<u8>>> {
    StreamCDC::new(reader, p.min, p.avg, p.max).map(|r| {
        r.map(|c| c.data).map_err(|e| match e {
            fastcdc::v2020::Error::IoError(err) => Error::io("reading input to chunk", err),
            other => Error::io("chunking", std::io::Error::other(other.to_string())),
        })
    })
}

/// The bytes of a burst list: one `/<h>.tig` line per member, in order.
pub fn encode_burst(ids: &[ObjectId]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ids.len() * (tig_core::HEX_LEN + 6));
    for id in ids {
        out.extend_from_slice(id.path().as_bytes());
        out.push(b'\n');
    }
    out
}

/// Parses a burst list with the one parser the server uses too
/// ([`tig_core::parse_burst`]): strict UTF-8, one `/<h>.tig` or
/// `http(s)://…/<h>.tig` per line, blank lines and a trailing `\r` ignored, at
/// most [`tig_core::MAX_BURST_LIST`] bytes.
pub fn decode_burst(bytes: &[u8]) -> Result<Vec<ObjectId>> {
    Ok(tig_core::parse_burst(bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn params_follow_the_limit() {
        let p = ChunkParams::for_limit(128 << 20).unwrap();
        assert_eq!((p.min, p.avg, p.max), (256 << 10, 1 << 20, 4 << 20));
        let p = ChunkParams::for_limit(1 << 20).unwrap();
        assert_eq!((p.min, p.avg, p.max), (64 << 10, 256 << 10, 1 << 20));
        assert!(ChunkParams::for_limit(1023).is_err());
        assert!(ChunkParams::for_limit(1024).is_ok());
    }

    #[test]
    fn chunks_concatenate_to_the_input_and_respect_the_max() {
        let data = pseudo_random(3 << 20, 7);
        let p = ChunkParams::for_limit(1 << 20).unwrap();
        let parts: Vec<Vec<u8>> = chunks(&data[..], p).map(|c| c.unwrap()).collect();
        assert!(parts.len() > 3);
        assert!(parts.iter().all(|c| c.len() <= p.max as usize));
        assert_eq!(parts.concat(), data);
        assert_eq!(chunks(&b""[..], p).count(), 0);
    }

    #[test]
    fn an_edit_changes_few_chunks() {
        let data = pseudo_random(4 << 20, 9);
        let mut edited = data.clone();
        edited[2 << 20] ^= 0xff;
        let p = ChunkParams::for_limit(1 << 20).unwrap();
        let ids = |d: &[u8]| -> Vec<ObjectId> {
            chunks(d, p)
                .map(|c| ObjectId::digest(&c.unwrap()))
                .collect()
        };
        let (a, b) = (ids(&data), ids(&edited));
        let changed = b.iter().filter(|id| !a.contains(id)).count();
        assert!((1..=2).contains(&changed), "{changed} of {}", b.len());
    }

    #[test]
    fn burst_lists_round_trip_and_refuse_bad_lines() {
        let ids = vec![ObjectId::digest(b"a"), ObjectId::digest(b"b")];
        let enc = encode_burst(&ids);
        assert_eq!(decode_burst(&enc).unwrap(), ids);
        let crlf = String::from_utf8(enc).unwrap().replace('\n', "\r\n\n");
        assert_eq!(decode_burst(crlf.as_bytes()).unwrap(), ids);
        assert!(decode_burst(b"/apikey\n").is_err());
        assert!(decode_burst(b"\xff\n").is_err());
        assert!(decode_burst(b"").unwrap().is_empty());
    }
}
