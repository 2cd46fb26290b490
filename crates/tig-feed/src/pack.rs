//! Writing git packs (version 2, no deltas): for batch appends and local replication.
//!
//! libgit2's pack builder searches for deltas between objects; for thousands of small,
//! mostly incompressible signed commits that search costs more than it saves (≈16 s
//! for 100,000 feed messages here), and reading delta chains back slows every later
//! log and verify. So packs are built here: each object whole, zlib-wrapped in
//! *stored* (uncompressed) deflate blocks, then handed to `odb.packwriter()`, which
//! indexes it like `git index-pack` and re-hashes every object, so nothing written
//! here is trusted by the reader.

use std::io::{self, Write};

use git2::ObjectType;
use sha1::{Digest, Sha1};

/// A pack (header, objects, SHA-1 trailer) holding `commits` (raw commit bodies).
pub fn commits_pack<C: AsRef<[u8]>>(commits: &[C]) -> Vec<u8> {
    let total: usize = commits.iter().map(|c| c.as_ref().len() + 32).sum();
    let mut pack = Vec::with_capacity(total + 32);
    write_pack(
        commits.len(),
        commits.iter().map(|c| (ObjectType::Commit, c.as_ref())),
        &mut pack,
    )
    .expect("writing to a Vec cannot fail and commits are a packable kind");
    pack
}

/// Writes a pack of `count` objects (kind and raw content) to `out`.
///
/// Fails with [`io::ErrorKind::InvalidInput`] for a kind a pack cannot hold whole
/// (anything but commit, tree, blob, tag), if `count` does not fit the header, or if
/// `objects` yields a number of objects other than `count`.
pub fn write_pack<'a, W: Write>(
    count: usize,
    objects: impl IntoIterator<Item = (ObjectType, &'a [u8])>,
    out: W,
) -> io::Result<()> {
    let invalid = |why: &str| io::Error::new(io::ErrorKind::InvalidInput, why.to_string());
    let n = u32::try_from(count).map_err(|_| invalid("too many objects for one pack"))?;
    let mut w = HashingWriter {
        inner: out,
        sha: Sha1::new(),
    };
    w.write_all(b"PACK")?;
    w.write_all(&2u32.to_be_bytes())?;
    w.write_all(&n.to_be_bytes())?;
    let mut buf = Vec::with_capacity(1024);
    let mut written = 0usize;
    for (kind, data) in objects {
        let kind = match kind {
            ObjectType::Commit => 1u8,
            ObjectType::Tree => 2,
            ObjectType::Blob => 3,
            ObjectType::Tag => 4,
            _ => return Err(invalid("unexpected object kind for a pack")),
        };
        buf.clear();
        object_header(kind, data.len(), &mut buf);
        zlib_stored(data, &mut buf);
        w.write_all(&buf)?;
        written += 1;
    }
    if written != count {
        return Err(invalid("pack object count does not match its header"));
    }
    let digest = w.sha.finalize();
    w.inner.write_all(&digest)?;
    w.inner.flush()
}

/// Passes writes through while hashing them for the pack trailer.
struct HashingWriter<W> {
    inner: W,
    sha: Sha1,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
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
