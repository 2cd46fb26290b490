//! The bytes of a feed message: building a commit object with a signature header,
//! and parsing one back into its parts and its signed payload. Pure logic, no I/O.
//!
//! A message is a commit whose tree is the empty tree:
//!
//! ```text
//! tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904
//! parent <previous message>            (absent for the first)
//! author <feed id> <> <unix time> <+hhmm>
//! committer <feed id> <> <unix time> <+hhmm>
//! gpgsig -----BEGIN SSH SIGNATURE-----
//!  <base64 lines, each continuation line starts with one space>
//!  -----END SSH SIGNATURE-----
//!
//! <content>
//! ```
//!
//! The signed payload is the object exactly as stored minus the `gpgsig` header,
//! which is what git signs and checks.

use git2::Oid;

/// The id of git's empty tree (SHA-1 object format).
pub const EMPTY_TREE: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";

/// The largest content a message may carry, in bytes.
pub const MAX_CONTENT: usize = 8192;

/// A commit time: seconds since the epoch and the zone offset in minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Time {
    /// Seconds since 1970-01-01 UTC.
    pub seconds: i64,
    /// Offset from UTC in minutes (as git records it).
    pub offset_minutes: i32,
}

impl Time {
    /// The current time, in UTC.
    pub fn now() -> Time {
        let seconds = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        Time {
            seconds,
            offset_minutes: 0,
        }
    }

    fn format(&self) -> String {
        let sign = if self.offset_minutes < 0 { '-' } else { '+' };
        let m = self.offset_minutes.unsigned_abs();
        format!("{} {}{:02}{:02}", self.seconds, sign, m / 60, m % 60)
    }
}

/// Checks content against the message rules: at most [`MAX_CONTENT`] bytes, UTF-8,
/// no NUL byte (git cuts commit messages at NUL).
pub fn check_content(content: &[u8]) -> Result<(), crate::FeedError> {
    if content.len() > MAX_CONTENT {
        return Err(crate::FeedError::Content(format!(
            "{} bytes is over the limit of {MAX_CONTENT} bytes",
            content.len()
        )));
    }
    if std::str::from_utf8(content).is_err() {
        return Err(crate::FeedError::Content("not valid UTF-8".into()));
    }
    if content.contains(&0) {
        return Err(crate::FeedError::Content("contains a NUL byte".into()));
    }
    Ok(())
}

/// The unsigned commit payload for a message. The content is stored followed by
/// one newline (git's convention, and what the seed's `echo … | git commit-tree`
/// writes); [`content_of`] removes it again, so contents round-trip exactly.
pub fn payload(author: &str, parent: Option<Oid>, time: Time, content: &[u8]) -> Vec<u8> {
    let t = time.format();
    let mut out = Vec::with_capacity(200 + content.len());
    out.extend_from_slice(b"tree ");
    out.extend_from_slice(EMPTY_TREE.as_bytes());
    out.push(b'\n');
    if let Some(p) = parent {
        out.extend_from_slice(format!("parent {p}\n").as_bytes());
    }
    out.extend_from_slice(
        format!("author {author} <> {t}\ncommitter {author} <> {t}\n\n").as_bytes(),
    );
    out.extend_from_slice(content);
    out.push(b'\n');
    out
}

/// Inserts `signature` as a `gpgsig` header into `payload` (after the last header),
/// giving the commit object as stored. A trailing newline of the signature is dropped.
pub fn with_signature(payload: &[u8], signature: &str) -> Vec<u8> {
    let sig = signature.trim_end_matches('\n');
    let split = find_header_end(payload).unwrap_or(payload.len());
    let mut out = Vec::with_capacity(payload.len() + sig.len() + 64);
    out.extend_from_slice(&payload[..split]);
    out.extend_from_slice(b"gpgsig ");
    for (i, line) in sig.split('\n').enumerate() {
        if i > 0 {
            out.extend_from_slice(b"\n ");
        }
        out.extend_from_slice(line.trim_end_matches('\r').as_bytes());
    }
    out.push(b'\n');
    out.extend_from_slice(&payload[split..]);
    out
}

/// Position just past the last header line (where the blank line starts).
fn find_header_end(raw: &[u8]) -> Option<usize> {
    if raw.starts_with(b"\n") {
        return Some(0);
    }
    raw.windows(2).position(|w| w == b"\n\n").map(|p| p + 1)
}

/// A commit object split into what the feed rules look at.
#[derive(Debug, Clone)]
pub struct ParsedCommit {
    /// The `tree` header.
    pub tree: String,
    /// The `parent` headers, in order.
    pub parents: Vec<Oid>,
    /// Author name (before ` <`).
    pub author_name: String,
    /// Author time.
    pub author_time: Option<Time>,
    /// Committer name.
    pub committer_name: String,
    /// The signature (value of the `gpgsig` header, continuation spaces removed).
    pub signature: Option<String>,
    /// The signed payload: the object minus the `gpgsig` header.
    pub payload: Vec<u8>,
    /// Offset of the message in `payload`.
    pub message_start: usize,
}

impl ParsedCommit {
    /// The raw commit message (content plus git's trailing newline).
    pub fn message(&self) -> &[u8] {
        &self.payload[self.message_start..]
    }
}

/// The content of a message: the commit message minus one trailing newline.
pub fn content_of(message: &[u8]) -> &[u8] {
    message.strip_suffix(b"\n").unwrap_or(message)
}

/// A header line's key and value (`key SP value`; no space: all key).
fn split_header(body: &[u8]) -> (&[u8], &[u8]) {
    match body.iter().position(|&b| b == b' ') {
        Some(p) => (&body[..p], &body[p + 1..]),
        None => (body, &b""[..]),
    }
}

/// What a [`links`] entry points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// A `tree` header.
    Tree(Oid),
    /// A `parent` header.
    Parent(Oid),
}

/// Every object a commit's headers link to (`tree` and `parent` lines up to the
/// blank line, in order, repeats included; unreadable ids skipped), without
/// judging the commit: what a copy must follow so the store never holds a
/// dangling link, even for a message [`parse`] calls malformed.
pub fn links(raw: &[u8]) -> impl Iterator<Item = Link> + '_ {
    raw.split(|b| *b == b'\n')
        .take_while(|line| !line.is_empty())
        .filter_map(|line| {
            let (key, value) = split_header(line);
            let id = || Oid::from_str(std::str::from_utf8(value).ok()?).ok();
            match key {
                b"tree" => id().map(Link::Tree),
                b"parent" => id().map(Link::Parent),
                _ => None,
            }
        })
}

/// Parses a raw commit object. Errors name what is malformed.
pub fn parse(raw: &[u8]) -> Result<ParsedCommit, String> {
    let header_end = find_header_end(raw).unwrap_or(raw.len());
    let headers = &raw[..header_end];
    let mut tree = None;
    let mut parents = Vec::new();
    let mut author = None;
    let mut committer = None;
    let mut signature: Option<String> = None;
    let mut payload = Vec::with_capacity(raw.len());
    let mut in_sig = false;
    // git reads `tree`, `parent`…, `author`, `committer` in this order and ignores a
    // repeat later on; so does nothing here, so that no second `tree` or `author` can
    // make tig see another commit than git does: anything out of order is malformed.
    let mut stage = Stage::Tree;
    for line in headers.split_inclusive(|&b| b == b'\n') {
        if let Some(cont) = line.strip_prefix(b" ") {
            if in_sig {
                let s = signature.get_or_insert_with(String::new);
                s.push('\n');
                s.push_str(&String::from_utf8_lossy(strip_nl(cont)));
            } else {
                payload.extend_from_slice(line);
            }
            continue;
        }
        in_sig = false;
        let (key, value) = split_header(strip_nl(line));
        match key {
            b"gpgsig" => {
                if stage != Stage::Rest {
                    return Err("gpgsig header before the committer header".into());
                }
                if signature.is_some() {
                    return Err("two signature headers".into());
                }
                in_sig = true;
                signature = Some(String::from_utf8_lossy(value).into_owned());
                continue;
            }
            b"tree" if stage == Stage::Tree => {
                tree = Some(String::from_utf8_lossy(value).into_owned());
                stage = Stage::Parents;
            }
            b"parent" if stage == Stage::Parents => {
                let s = std::str::from_utf8(value).map_err(|_| "bad parent header")?;
                parents.push(Oid::from_str(s).map_err(|_| format!("bad parent {s:?}"))?);
            }
            b"author" if stage == Stage::Parents => {
                author = Some(value.to_vec());
                stage = Stage::Committer;
            }
            b"committer" if stage == Stage::Committer => {
                committer = Some(value.to_vec());
                stage = Stage::Rest;
            }
            b"tree" | b"parent" | b"author" | b"committer" => {
                return Err(format!(
                    "{} header out of place (git's order: tree, parent…, author, committer, once each)",
                    String::from_utf8_lossy(key)
                ));
            }
            _ if stage != Stage::Rest => {
                return Err(format!(
                    "{} header before the committer header",
                    String::from_utf8_lossy(key)
                ));
            }
            _ => {}
        }
        payload.extend_from_slice(line);
    }
    let message_start = payload.len();
    payload.extend_from_slice(&raw[header_end..]);
    // the message proper starts after the blank line
    let message_start = if payload[message_start..].starts_with(b"\n") {
        message_start + 1
    } else {
        message_start
    };
    let tree = tree.ok_or("no tree header")?;
    let author = author.ok_or("no author header")?;
    let committer = committer.ok_or("no committer header")?;
    let (author_name, author_time) = parse_person(&author);
    let (committer_name, _) = parse_person(&committer);
    if let Some(s) = signature.as_mut() {
        s.push('\n');
    }
    Ok(ParsedCommit {
        tree,
        parents,
        author_name,
        author_time,
        committer_name,
        signature,
        payload,
        message_start,
    })
}

/// Where [`parse`] is in git's fixed header order.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    Tree,
    Parents,
    Committer,
    Rest,
}

fn strip_nl(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\n").unwrap_or(line)
}

/// `NAME <EMAIL> TIME TZ` → (NAME, time).
fn parse_person(v: &[u8]) -> (String, Option<Time>) {
    let lt = v.iter().position(|&b| b == b'<');
    let name = match lt {
        Some(p) => v[..p].strip_suffix(b" ").unwrap_or(&v[..p]),
        None => v,
    };
    let name = String::from_utf8_lossy(name).into_owned();
    let time = v
        .iter()
        .rposition(|&b| b == b'>')
        .and_then(|gt| std::str::from_utf8(&v[gt + 1..]).ok())
        .and_then(|rest| {
            let mut it = rest.split_whitespace();
            let seconds: i64 = it.next()?.parse().ok()?;
            let tz = it.next().unwrap_or("+0000");
            let sign = if tz.starts_with('-') { -1 } else { 1 };
            let digits = tz.trim_start_matches(['+', '-']);
            let n: i32 = digits.parse().ok()?;
            Some(Time {
                seconds,
                offset_minutes: sign * ((n / 100) * 60 + n % 100),
            })
        });
    (name, time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_follow_every_tree_and_parent_header_even_out_of_order() {
        let (a, b) = ("1".repeat(40), "2".repeat(40));
        let raw = format!(
            "tree {a}\nparent {b}\nauthor x <> 1 +0000\ntree {b}\nparent zz\n\nparent {a}\n"
        );
        let got: Vec<Link> = links(raw.as_bytes()).collect();
        let (a, b) = (Oid::from_str(&a).unwrap(), Oid::from_str(&b).unwrap());
        assert_eq!(got, [Link::Tree(a), Link::Parent(b), Link::Tree(b)]);
    }

    #[test]
    fn payload_round_trips_through_signature_header() {
        let t = Time {
            seconds: 1_700_000_000,
            offset_minutes: -90,
        };
        let p = payload("abc", None, t, b"hello\nworld");
        let sig = "-----BEGIN SSH SIGNATURE-----\nAAAA\nBBBB\n-----END SSH SIGNATURE-----\n";
        let raw = with_signature(&p, sig);
        let text = String::from_utf8(raw.clone()).unwrap();
        assert!(text.contains("committer abc <> 1700000000 -0130\ngpgsig -----BEGIN SSH SIGNATURE-----\n AAAA\n BBBB\n -----END SSH SIGNATURE-----\n\nhello\nworld\n"), "{text}");
        let parsed = parse(&raw).unwrap();
        assert_eq!(parsed.payload, p);
        assert_eq!(parsed.signature.as_deref(), Some(sig));
        assert_eq!(parsed.author_name, "abc");
        assert_eq!(parsed.committer_name, "abc");
        assert_eq!(parsed.author_time, Some(t));
        assert_eq!(parsed.tree, EMPTY_TREE);
        assert!(parsed.parents.is_empty());
        assert_eq!(content_of(parsed.message()), b"hello\nworld");
    }

    #[test]
    fn content_with_trailing_newline_round_trips() {
        let p = payload("a", Some(Oid::ZERO_SHA1), Time::now(), b"x\n");
        let parsed = parse(&p).unwrap();
        assert_eq!(content_of(parsed.message()), b"x\n");
        assert_eq!(parsed.parents, vec![Oid::ZERO_SHA1]);
        assert!(parsed.signature.is_none());
    }

    #[test]
    fn headers_must_come_once_and_in_gits_order() {
        let good = payload("a", Some(Oid::ZERO_SHA1), Time::now(), b"x");
        assert!(parse(&good).is_ok());
        let text = String::from_utf8(good).unwrap();
        let (head, msg) = text.split_once("\n\n").unwrap();
        let lines: Vec<&str> = head.lines().collect();
        let build = |lines: &[&str]| format!("{}\n\n{msg}", lines.join("\n")).into_bytes();
        let smuggled = "tree 1111111111111111111111111111111111111111";
        // git and libgit2 take the first tree; a second one must not fool tig.
        for bad in [
            [&lines[..], &[smuggled]].concat(),
            [&[smuggled], &lines[..]].concat(),
            [&lines[..2], &[lines[2]], &lines[2..]].concat(), // author twice
            [&[lines[0]], &lines[2..], &[lines[1]]].concat(), // parent after committer
            [&lines[..3], &["gpgsig x"], &lines[3..]].concat(), // gpgsig before committer
            [&lines[..1], &["encoding x"], &lines[1..]].concat(), // header before author
        ] {
            let err = parse(&build(&bad)).unwrap_err();
            assert!(err.contains("header"), "{err}");
        }
        let extra = [&lines[..], &["encoding UTF-8"]].concat();
        assert!(
            parse(&build(&extra)).is_ok(),
            "other headers after committer are fine"
        );
    }

    #[test]
    fn content_rules() {
        assert!(check_content(&[b'a'; MAX_CONTENT]).is_ok());
        assert!(check_content(&[b'a'; MAX_CONTENT + 1]).is_err());
        assert!(check_content(b"a\0b").is_err());
        assert!(check_content(&[0xff]).is_err());
    }
}
