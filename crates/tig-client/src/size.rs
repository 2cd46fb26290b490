//! Byte sizes on the command line (`1048576`, `128MiB`, `1GiB`, `1MB`) and for humans.
//! The parser is [`tig_core::parse_size`], re-exported here so the server's
//! flags and the client's read sizes with one grammar.

pub use tig_core::parse_size;

/// `1536` → `1.5 KiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_size_is_the_core_one() {
        assert_eq!(parse_size("128MiB").unwrap(), 128 << 20);
        let e: crate::Error = parse_size("1.5MiB").unwrap_err().into();
        assert!(matches!(e, crate::Error::Usage(_)), "{e}");
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(3 << 30), "3.0 GiB");
    }
}
