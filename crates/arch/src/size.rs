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

/// Parse `N`, `NK`, `NM`, `NG`, `NT` (binary units, case-insensitive, optional trailing `B`/`iB`).
pub fn parse_size(s: &str) -> Result<u64, SizeError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(SizeError::Empty);
    }
    let lower_end = s.trim_end_matches(['b', 'B']).trim_end_matches(['i', 'I']);
    let (digits, mult) = match lower_end.as_bytes().last() {
        Some(b'k' | b'K') => (&lower_end[..lower_end.len() - 1], KB),
        Some(b'm' | b'M') => (&lower_end[..lower_end.len() - 1], MB),
        Some(b'g' | b'G') => (&lower_end[..lower_end.len() - 1], GB),
        Some(b't' | b'T') => (&lower_end[..lower_end.len() - 1], 1024 * GB),
        _ => (s, 1),
    };
    if mult == 1 && lower_end.len() != s.len() {
        // a bare "B" suffix is fine ("4096B"), but "4096iB" is not
        let bare = s.trim_end_matches(['b', 'B']);
        if bare.len() + 1 != s.len() || bare.is_empty() {
            return Err(SizeError::NotASize);
        }
        return parse_digits(bare);
    }
    let n = parse_digits(digits)?;
    n.checked_mul(mult).ok_or(SizeError::Overflow)
}

fn parse_digits(d: &str) -> Result<u64, SizeError> {
    if d.is_empty() || !d.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SizeError::NotASize);
    }
    d.parse::<u64>().map_err(|_| SizeError::Overflow)
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
    }
}
