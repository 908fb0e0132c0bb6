//! Human sizes (`512M`, `32G`, `4096K`, `65536`) as used on the command line and in files.

use core::fmt;

/// One kibibyte.
pub const KB: u64 = 1024;
/// One mebibyte.
pub const MB: u64 = 1024 * KB;
/// One gibibyte.
pub const GB: u64 = 1024 * MB;

/// Why a size string was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SizeError {
    /// Empty string.
    Empty,
    /// Not a number followed by an optional K/M/G/T suffix.
    NotASize,
    /// Too large to represent.
    Overflow,
}

impl fmt::Display for SizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SizeError::Empty => write!(f, "empty size"),
            SizeError::NotASize => write!(
                f,
                "not a size: use a number of bytes with an optional K, M, G or T suffix (e.g. 512M, 32G)"
            ),
            SizeError::Overflow => write!(f, "size too large"),
        }
    }
}

/// The units: binary everywhere, as the kernel's own `mem=` option reads them (`K` = 1024,
/// `KB` and `KiB` alike), so `512M` on the command line and `ram = "512M"` in a file agree.
const UNITS: parse_size::Config = parse_size::Config::new().with_binary();

/// Parse a size: a number with an optional binary unit (`K`, `M`, `G`, `T`, case-insensitive,
/// optional trailing `B` or `iB`). The parsing is the `parse-size` crate's; fractions
/// (`1.5G`) are rounded to the nearest byte, a sign or anything else is refused.
pub fn parse_size(s: &str) -> Result<u64, SizeError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(SizeError::Empty);
    }
    // parse-size accepts a leading sign on the exponent only; refuse a sign up front so that
    // "-1G" reads as "not a size", not as an overflow.
    if s.starts_with(['-', '+']) {
        return Err(SizeError::NotASize);
    }
    UNITS.parse_size(s).map_err(|e| match e {
        parse_size::Error::PosOverflow => SizeError::Overflow,
        parse_size::Error::Empty | parse_size::Error::InvalidDigit => SizeError::NotASize,
        _ => SizeError::NotASize,
    })
}

/// Formats a byte count the way the boot log does: the largest binary unit that divides it.
pub struct DisplaySize(pub u64);

impl fmt::Display for DisplaySize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        if b != 0 && b.is_multiple_of(GB) {
            write!(f, "{}G", b / GB)
        } else if b != 0 && b.is_multiple_of(MB) {
            write!(f, "{}M", b / MB)
        } else if b != 0 && b.is_multiple_of(KB) {
            write!(f, "{}K", b / KB)
        } else {
            write!(f, "{}", b)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn sizes() {
        assert_eq!(parse_size("32G"), Ok(32 * GB));
        assert_eq!(parse_size("512m"), Ok(512 * MB));
        assert_eq!(parse_size("4096K"), Ok(4 * MB));
        assert_eq!(parse_size("12GiB"), Ok(12 * GB));
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("4096B"), Ok(4096));
        assert_eq!(parse_size(""), Err(SizeError::Empty));
        assert_eq!(parse_size("lots"), Err(SizeError::NotASize));
        assert_eq!(parse_size("G"), Err(SizeError::NotASize));
        assert_eq!(parse_size("-1G"), Err(SizeError::NotASize));
        assert_eq!(parse_size("99999999999999999999"), Err(SizeError::Overflow));
        assert_eq!(parse_size("99999999999T"), Err(SizeError::Overflow));
        assert_eq!(parse_size("1.5G"), Ok(3 * GB / 2));
        assert_eq!(parse_size("1 G"), Ok(GB));
        assert_eq!(parse_size("2KB"), Ok(2048));
        assert_eq!(parse_size("4x"), Err(SizeError::NotASize));
    }
}
