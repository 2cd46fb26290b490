//! What the user names on the command line: a server base URL, and an object as a
//! bare hash, an object path, or a full URL, optionally with `?burst=1`.

use tig_core::ObjectId;

use crate::error::{Error, Result};

/// An object named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The server the name came with (`http://host:port`), if it was a full URL.
    pub server: Option<String>,
    /// The object.
    pub id: ObjectId,
    /// The name carried `?burst=1`: the object is a burst list to be expanded.
    pub burst: bool,
}

/// Parses `HASH`, `<h>.tig`, `/<h>.tig`, or `http(s)://host[:port][/prefix]/<h>.tig`,
/// each optionally followed by `?burst=1` (what `tig put` prints for a chunked file).
pub fn parse_target(s: &str) -> Result<Target> {
    let bad = |why: &str| Error::Usage(format!("not an object name ({why}): {s:?}"));
    let (main, query) = match s.trim().split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (s.trim(), None),
    };
    let mut burst = false;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        match pair {
            "burst=1" | "burst=true" => burst = true,
            "burst=0" | "burst=false" => burst = false,
            _ => return Err(bad("only ?burst=1 is understood")),
        }
    }
    let (server, path) = match main.split_once("://") {
        Some((scheme, rest)) => {
            if scheme != "http" && scheme != "https" {
                return Err(bad("scheme must be http or https"));
            }
            let slash = rest.rfind('/').ok_or_else(|| bad("no path"))?;
            let base = &rest[..slash];
            if base.is_empty() {
                return Err(bad("no host"));
            }
            (Some(format!("{scheme}://{base}")), &rest[slash..])
        }
        None => (None, main),
    };
    let hex = path.strip_prefix('/').unwrap_or(path);
    let hex = hex.strip_suffix(tig_core::EXTENSION).unwrap_or(hex);
    let id = ObjectId::from_hex(hex).map_err(|_| bad("expected 64 lowercase hex digits"))?;
    Ok(Target { server, id, burst })
}

/// Checks and normalizes a server base URL: `http(s)://host[:port][/prefix]`,
/// without a trailing `/`.
pub fn normalize_server(s: &str) -> Result<String> {
    let t = s.trim().trim_end_matches('/');
    let ok = t
        .split_once("://")
        .is_some_and(|(scheme, rest)| (scheme == "http" || scheme == "https") && !rest.is_empty());
    if !ok || t.contains('?') || t.contains('#') {
        return Err(Error::Usage(format!(
            "not a server URL (expected http://host:port): {s:?}"
        )));
    }
    Ok(t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "f2ca1bb6c7e907d06dafe4687e579fce76b37e4e93b7605022da52e6ccc26fd2";

    #[test]
    fn every_spelling_of_an_object() {
        let id = ObjectId::from_hex(H).unwrap();
        for s in [H.to_string(), format!("{H}.tig"), format!("/{H}.tig")] {
            let t = parse_target(&s).unwrap();
            assert_eq!(
                t,
                Target {
                    server: None,
                    id,
                    burst: false
                },
                "{s}"
            );
        }
        let t = parse_target(&format!("http://127.0.0.1:7777/{H}.tig?burst=1")).unwrap();
        assert_eq!(t.server.as_deref(), Some("http://127.0.0.1:7777"));
        assert!(t.burst);
        let t = parse_target(&format!("https://example.com/tig/{H}.tig")).unwrap();
        assert_eq!(t.server.as_deref(), Some("https://example.com/tig"));
        assert!(!t.burst);
    }

    #[test]
    fn refusals() {
        for s in [
            String::new(),
            H.to_uppercase(),
            H[1..].to_string(),
            format!("/{H}.tig?apikey=x"),
            format!("ftp://h/{H}.tig"),
            format!("http:///{H}.tig"),
            "/apikey".to_string(),
            format!("/../{H}.tig"),
        ] {
            assert!(parse_target(&s).is_err(), "{s}");
        }
    }

    #[test]
    fn server_urls() {
        assert_eq!(
            normalize_server("http://127.0.0.1:7777/").unwrap(),
            "http://127.0.0.1:7777"
        );
        assert_eq!(normalize_server("https://h/p").unwrap(), "https://h/p");
        for bad in ["127.0.0.1:7777", "ftp://h", "http://", "http://h/?x=1"] {
            assert!(normalize_server(bad).is_err(), "{bad}");
        }
    }
}
