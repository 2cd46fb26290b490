//! The snapshot tree object: one text object per directory (format documented in
//! `docs/snapshot-format.md`). Pure encoding and strict decoding; no I/O.
//!
//! ```text
//! tig-tree 1
//! 100644 blob 12 /<h>.tig README.md
//! 100755 burst 734003200 /<h>.tig big%20file.bin   (names are %-escaped: see below)
//! 120000 blob 9 /<h>.tig link-to-readme
//! 040000 tree 4096 /<h>.tig src
//! ```

use std::io::Write;

use tig_core::{EXTENSION, ObjectId};

use crate::error::{Error, Result};

/// The first line of every tree object.
pub const HEADER: &str = "tig-tree 1";

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A regular file (`100644`).
    File,
    /// An executable regular file (`100755`).
    Exec,
    /// A symbolic link (`120000`); the object holds the link target's bytes.
    Symlink,
    /// A directory (`040000`); the object is another tree.
    Dir,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::File => "100644",
            Mode::Exec => "100755",
            Mode::Symlink => "120000",
            Mode::Dir => "040000",
        }
    }
}

/// How the entry's bytes are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The object's bytes are the content (its id is the sha256 of the content).
    Blob,
    /// The object is a burst list; the content is its members concatenated.
    Burst,
    /// The object is a tree.
    Tree,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Blob => "blob",
            Kind::Burst => "burst",
            Kind::Tree => "tree",
        }
    }
}

/// One line of a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// File mode class.
    pub mode: Mode,
    /// Storage kind.
    pub kind: Kind,
    /// Content size in bytes; for a directory, the total size of the files below it.
    pub size: u64,
    /// The object holding the entry.
    pub id: ObjectId,
    /// The file name's raw bytes (never empty, `.`, `..`, nor containing `/` or NUL).
    pub name: Vec<u8>,
}

/// Encodes entries, sorted by name bytes, into a tree object.
pub fn encode_tree(entries: &[Entry]) -> Result<Vec<u8>> {
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    // Written piece by piece into one buffer: a snapshot encodes a tree per
    // directory, and a `format!` per entry showed in its profile.
    let mut out = Vec::with_capacity(HEADER.len() + 1 + sorted.len() * 128);
    out.extend_from_slice(HEADER.as_bytes());
    out.push(b'\n');
    for (i, e) in sorted.iter().enumerate() {
        check_name(&e.name)?;
        if i > 0 && sorted[i - 1].name == e.name {
            return Err(Error::invalid(
                "tree",
                format!("duplicate name {}", escape_name(&e.name)),
            ));
        }
        for part in [e.mode.as_str(), " ", e.kind.as_str(), " "] {
            out.extend_from_slice(part.as_bytes());
        }
        // Writing into a Vec cannot fail.
        let _ = write!(out, "{} /", e.size);
        out.extend_from_slice(&e.id.hex_digits());
        out.extend_from_slice(EXTENSION.as_bytes());
        out.push(b' ');
        escape_into(&e.name, &mut out);
        out.push(b'\n');
    }
    Ok(out)
}

/// Decodes a tree object strictly: the header, well-formed lines, names strictly
/// increasing (so unique), valid mode/kind pairs, safe names.
pub fn decode_tree(bytes: &[u8]) -> Result<Vec<Entry>> {
    let bad = |why: String| Error::invalid("snapshot tree", why);
    let text = std::str::from_utf8(bytes).map_err(|_| bad("not UTF-8".into()))?;
    let body = text
        .strip_prefix(HEADER)
        .and_then(|t| t.strip_prefix('\n'))
        .ok_or_else(|| bad(format!("does not start with {HEADER:?}")))?;
    if !body.is_empty() && !body.ends_with('\n') {
        return Err(bad("last line has no newline".into()));
    }
    let mut entries: Vec<Entry> = Vec::new();
    for line in body.lines() {
        let mut f = line.splitn(5, ' ');
        let (Some(mode), Some(kind), Some(size), Some(path), Some(name)) =
            (f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            return Err(bad(format!("short line {line:?}")));
        };
        let mode = match mode {
            "100644" => Mode::File,
            "100755" => Mode::Exec,
            "120000" => Mode::Symlink,
            "040000" => Mode::Dir,
            _ => return Err(bad(format!("unknown mode {mode:?}"))),
        };
        let kind = match kind {
            "blob" => Kind::Blob,
            "burst" => Kind::Burst,
            "tree" => Kind::Tree,
            _ => return Err(bad(format!("unknown kind {kind:?}"))),
        };
        let ok = matches!(
            (mode, kind),
            (Mode::File | Mode::Exec, Kind::Blob | Kind::Burst)
                | (Mode::Symlink, Kind::Blob)
                | (Mode::Dir, Kind::Tree)
        );
        if !ok {
            return Err(bad(format!(
                "mode {} cannot be a {}",
                mode.as_str(),
                kind.as_str()
            )));
        }
        if size.is_empty() || !size.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(format!("bad size {size:?}")));
        }
        let size: u64 = size
            .parse()
            .map_err(|_| bad(format!("bad size {size:?}")))?;
        let id = ObjectId::from_path(path).map_err(|e| bad(e.to_string()))?;
        let name = unescape_name(name).ok_or_else(|| bad(format!("bad name escape {name:?}")))?;
        check_name(&name)?;
        if escape_name(&name) != line.splitn(5, ' ').nth(4).unwrap_or_default() {
            return Err(bad(format!("name not in canonical form {line:?}")));
        }
        if let Some(prev) = entries.last()
            && prev.name >= name
        {
            return Err(bad(format!("names not strictly sorted at {line:?}")));
        }
        entries.push(Entry {
            mode,
            kind,
            size,
            id,
            name,
        });
    }
    Ok(entries)
}

/// Refuses names that could escape the restore directory or are not file names.
pub fn check_name(name: &[u8]) -> Result<()> {
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0)
    {
        return Err(Error::invalid(
            "snapshot tree",
            format!("unsafe file name {:?}", String::from_utf8_lossy(name)),
        ));
    }
    Ok(())
}

/// `%`-escapes every byte that is not printable ASCII (controls, DEL, bytes ≥ 0x80)
/// and `%` itself, so a tree is ASCII text and a name never contains a newline.
pub fn escape_name(name: &[u8]) -> String {
    let mut out = Vec::with_capacity(name.len());
    escape_into(name, &mut out);
    out.into_iter().map(char::from).collect()
}

/// [`escape_name`], appended to `out`.
fn escape_into(name: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in name {
        if !(0x20..0x7f).contains(&b) || b == b'%' {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        } else {
            out.push(b);
        }
    }
}

/// Reverses [`escape_name`]; `None` on a malformed escape.
pub fn unescape_name(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if memchr::memchr(b'%', b).is_none() {
        return Some(b.to_vec());
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(mode: Mode, kind: Kind, name: &[u8]) -> Entry {
        Entry {
            mode,
            kind,
            size: 3,
            id: ObjectId::digest(name),
            name: name.to_vec(),
        }
    }

    #[test]
    fn round_trip_sorted_and_escaped() {
        let entries = vec![
            e(Mode::Dir, Kind::Tree, b"src"),
            e(Mode::Exec, Kind::Burst, b"run me.sh"),
            e(Mode::File, Kind::Blob, b"caf\xc3\xa9\n%"),
            e(Mode::Symlink, Kind::Blob, b"link"),
            e(Mode::File, Kind::Blob, b"\xff raw"),
        ];
        let enc = encode_tree(&entries).unwrap();
        let text = std::str::from_utf8(&enc).unwrap();
        assert!(text.starts_with("tig-tree 1\n100644 blob 3 /"));
        assert!(text.contains(" caf%C3%A9%0A%25\n"));
        assert!(text.is_ascii());
        let mut want = entries.clone();
        want.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(decode_tree(&enc).unwrap(), want);
        // the encoding is canonical: same entries in any order, same bytes, same hash
        let mut rev = entries.clone();
        rev.reverse();
        assert_eq!(encode_tree(&rev).unwrap(), enc);
        assert_eq!(decode_tree(b"tig-tree 1\n").unwrap(), vec![]);
    }

    #[test]
    fn names_that_escape_are_refused() {
        for name in [&b""[..], b".", b"..", b"a/b", b"../x", b"a\0b"] {
            assert!(
                encode_tree(&[e(Mode::File, Kind::Blob, name)]).is_err(),
                "{name:?}"
            );
        }
        let id = ObjectId::digest(b"x").path();
        for line in [
            format!("100644 blob 1 {id} .."),
            format!("100644 blob 1 {id} %2E%2E"),
            format!("100644 blob 1 {id} a%2Fb"),
            format!("100644 blob 1 {id} a/b"),
            format!("100644 blob 1 {id} "),
        ] {
            let t = format!("tig-tree 1\n{line}\n");
            assert!(decode_tree(t.as_bytes()).is_err(), "{line}");
        }
    }

    #[test]
    fn malformed_trees_are_refused() {
        let id = ObjectId::digest(b"x").path();
        let cases = [
            "tig-tree 2\n".to_string(),
            format!("tig-tree 1\n100644 blob 1 {id} a"),
            format!("tig-tree 1\n100644 blob 1 {id} b\n100644 blob 1 {id} a\n"),
            format!("tig-tree 1\n100644 blob 1 {id} a\n100644 blob 1 {id} a\n"),
            format!("tig-tree 1\n100600 blob 1 {id} a\n"),
            format!("tig-tree 1\n040000 blob 1 {id} a\n"),
            format!("tig-tree 1\n120000 burst 1 {id} a\n"),
            format!("tig-tree 1\n100644 blob -1 {id} a\n"),
            "tig-tree 1\n100644 blob 1 /apikey a\n".to_string(),
            format!("tig-tree 1\n100644 blob 1 {id} %zz\n"),
            format!("tig-tree 1\n100644 blob 1 {id} %2a\n"),
        ];
        for c in cases {
            assert!(decode_tree(c.as_bytes()).is_err(), "{c:?}");
        }
    }
}
