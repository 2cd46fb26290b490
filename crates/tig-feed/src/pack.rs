//! Writing many new commits as one git pack (version 2, no deltas), for batch appends.
//!
//! libgit2's pack builder searches for deltas between objects; for thousands of small,
//! mostly incompressible signed commits that search costs more than it saves, and
//! reading delta chains back slows every later log and verify. So the pack is built
//! here: each object whole, zlib-wrapped in *stored* (uncompressed) deflate blocks,
//! then handed to `odb.packwriter()`, which indexes it like `git index-pack`.

use sha1::{Digest, Sha1};

/// Pack object type of a commit.
const OBJ_COMMIT: u8 = 1;

/// A pack (header, objects, SHA-1 trailer) holding `commits` (raw commit bodies).
pub fn commits_pack<C: AsRef<[u8]>>(commits: &[C]) -> Vec<u8> {
    let total: usize = commits.iter().map(|c| c.as_ref().len() + 32).sum();
    let mut pack = Vec::with_capacity(total + 32);
    pack.extend_from_slice(b"PACK");
    pack.extend_from_slice(&2u32.to_be_bytes());
    pack.extend_from_slice(&(commits.len() as u32).to_be_bytes());
    for c in commits {
        let raw = c.as_ref();
        object_header(OBJ_COMMIT, raw.len(), &mut pack);
        zlib_stored(raw, &mut pack);
    }
    let digest = Sha1::digest(&pack);
    pack.extend_from_slice(&digest);
    pack
}

/// Type and size as pack entries encode them: 3 type bits, then the size in 4 + 7·n bits.
fn object_header(kind: u8, size: usize, out: &mut Vec<u8>) {
    let mut size = size;
    let mut byte = (kind << 4) | (size & 0x0f) as u8;
    size >>= 4;
    while size > 0 {
        out.push(byte | 0x80);
        byte = (size & 0x7f) as u8;
        size >>= 7;
    }
    out.push(byte);
}

/// A zlib stream of `data` in stored deflate blocks (RFC 1950/1951).
fn zlib_stored(data: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&[0x78, 0x01]);
    if data.is_empty() {
        out.extend_from_slice(&[0x01, 0x00, 0x00, 0xff, 0xff]);
    } else {
        let mut chunks = data.chunks(0xffff).peekable();
        while let Some(chunk) = chunks.next() {
            out.push(u8::from(chunks.peek().is_none()));
            let len = chunk.len() as u16;
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&(!len).to_le_bytes());
            out.extend_from_slice(chunk);
        }
    }
    out.extend_from_slice(&adler32(data).to_be_bytes());
}

fn adler32(data: &[u8]) -> u32 {
    const MOD: u32 = 65521;
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in data.chunks(5552) {
        for &x in chunk {
            a += u32::from(x);
            b += a;
        }
        a %= MOD;
        b %= MOD;
    }
    (b << 16) | a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adler32_known_value() {
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
        assert_eq!(adler32(b""), 1);
    }

    #[test]
    fn size_header_encoding() {
        let mut v = Vec::new();
        object_header(1, 15, &mut v);
        assert_eq!(v, [0x1f]);
        v.clear();
        object_header(1, 16, &mut v);
        assert_eq!(v, [0x90, 0x01]);
    }
}
