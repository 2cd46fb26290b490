//! Byte sizes as people write them (`1048576`, `128MiB`, `1GiB`, `1MB`): one
//! grammar for the client's and the server's flags.

/// A string that is not a size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a size: {0:?} (try 1048576, 10KiB, 128MiB, 1GiB, 1MB)")]
pub struct SizeError(pub String);

/// Parses a size: a plain number of bytes, or a number with a unit: `KiB`, `MiB`,
/// `GiB`, `TiB` (powers of 1024; also `K`/`Ki`, `M`/`Mi`, …) or `KB`, `MB`, `GB`,
/// `TB` (powers of 1000), `B`. Units are case-insensitive; a space between number
/// and unit is allowed. Overflow is refused.
pub fn parse_size(s: &str) -> Result<u64, SizeError> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || SizeError(s.chars().take(80).collect());
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" | "ki" | "k" => 1 << 10,
        "mib" | "mi" | "m" => 1 << 20,
        "gib" | "gi" | "g" => 1 << 30,
        "tib" | "ti" | "t" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_of_the_contract() {
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
        assert_eq!(parse_size("128MiB").unwrap(), 128 << 20);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("10KiB").unwrap(), 10 << 10);
        assert_eq!(parse_size("1MB").unwrap(), 1_000_000);
        assert_eq!(parse_size("4 kib").unwrap(), 4096);
        assert_eq!(parse_size("2Mi").unwrap(), 2 << 20);
        assert_eq!(parse_size("0").unwrap(), 0);
        for bad in ["", "MiB", "1.5MiB", "-1", "12XB", "99999999999999999999"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert!(parse_size("99999999TiB").is_err());
        assert_eq!(
            parse_size("12XB").unwrap_err().to_string(),
            "not a size: \"12XB\" (try 1048576, 10KiB, 128MiB, 1GiB, 1MB)"
        );
    }
}
