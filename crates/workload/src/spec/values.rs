//! The values of workload files that are not plain numbers or strings: sizes with a `K`, `M`,
//! `G` suffix ([`Size`], [`SignedSize`]) and page protections written as letters ([`Prot`]).

use highpte_arch::size::{parse_size, DisplaySize};
use highpte_arch::PAGE_SIZE;
use serde::de::{self, Unexpected, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// A byte count, written in files as a string with an optional `K`, `M`, `G` (or `T`) suffix
/// (binary units: `"512M"`, `"32G"`, `"4096"`) or as a plain integer of bytes (`4096`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Size(pub u64);

impl Size {
    /// The number of bytes.
    pub const fn bytes(self) -> u64 {
        self.0
    }
    /// The number of 4K pages this size covers, rounded up.
    pub const fn pages(self) -> u64 {
        self.0.div_ceil(PAGE_SIZE)
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", DisplaySize(self.0))
    }
}

impl FromStr for Size {
    type Err = highpte_arch::size::SizeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_size(s).map(Size)
    }
}

const SIZE_EXPECTED: &str =
    "a size: a whole number of bytes, or a string with a K, M or G suffix such as \"512M\"";
const SIGNED_SIZE_EXPECTED: &str =
    "a signed size: a whole number of bytes, or a string such as \"1M\" or \"-512K\"";

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(SIZE_EXPECTED)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v)
                    .map(Size)
                    .map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
                parse_size(v)
                    .map(Size)
                    .map_err(|_| E::invalid_value(Unexpected::Str(v), &self))
            }
        }
        d.deserialize_any(V)
    }
}

/// A byte count that may be negative (for `brk`): `"1M"`, `"-512K"`, `4096`, `-4096`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SignedSize(pub i64);

impl SignedSize {
    /// The number of bytes (negative shrinks).
    pub const fn bytes(self) -> i64 {
        self.0
    }
}

impl fmt::Display for SignedSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 < 0 {
            write!(f, "-{}", DisplaySize(self.0.unsigned_abs()))
        } else {
            write!(f, "{}", DisplaySize(self.0.unsigned_abs()))
        }
    }
}

pub(super) fn parse_signed_size(s: &str) -> Option<i64> {
    let t = s.trim();
    let (neg, rest) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    if rest.starts_with(['-', '+']) {
        return None;
    }
    let mag = parse_size(rest).ok()?;
    if neg {
        0i64.checked_sub_unsigned(mag)
    } else {
        i64::try_from(mag).ok()
    }
}

impl Serialize for SignedSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for SignedSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = SignedSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(SIGNED_SIZE_EXPECTED)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SignedSize, E> {
                i64::try_from(v)
                    .map(SignedSize)
                    .map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SignedSize, E> {
                Ok(SignedSize(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SignedSize, E> {
                parse_signed_size(v)
                    .map(SignedSize)
                    .ok_or_else(|| E::invalid_value(Unexpected::Str(v), &self))
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------------------------
// Protection
// ---------------------------------------------------------------------------------------------

/// Page protection, written as the letters `r`, `w`, `x` in any order (`"r"`, `"rw"`, `"rx"`,
/// `"rwx"`), or `"none"` for `PROT_NONE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Prot {
    /// `PROT_READ`.
    pub read: bool,
    /// `PROT_WRITE`.
    pub write: bool,
    /// `PROT_EXEC`.
    pub exec: bool,
}

impl Prot {
    /// `PROT_NONE`.
    pub const NONE: Prot = Prot {
        read: false,
        write: false,
        exec: false,
    };
    /// `PROT_READ`.
    pub const R: Prot = Prot {
        read: true,
        write: false,
        exec: false,
    };
    /// `PROT_READ | PROT_WRITE`, the default.
    pub const RW: Prot = Prot {
        read: true,
        write: true,
        exec: false,
    };
}

impl fmt::Display for Prot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Prot::NONE {
            return f.write_str("none");
        }
        if self.read {
            f.write_str("r")?;
        }
        if self.write {
            f.write_str("w")?;
        }
        if self.exec {
            f.write_str("x")?;
        }
        Ok(())
    }
}

impl FromStr for Prot {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        if s == "none" {
            return Ok(Prot::NONE);
        }
        if s.is_empty() {
            return Err(());
        }
        let mut p = Prot::NONE;
        for c in s.chars() {
            let flag = match c {
                'r' => &mut p.read,
                'w' => &mut p.write,
                'x' => &mut p.exec,
                _ => return Err(()),
            };
            if *flag {
                return Err(());
            }
            *flag = true;
        }
        Ok(p)
    }
}

pub(super) fn default_prot() -> Prot {
    Prot::RW
}

impl Serialize for Prot {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Prot {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Prot;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a protection: \"none\" or the letters r, w, x (e.g. \"r\", \"rw\", \"rx\", \"rwx\")")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Prot, E> {
                v.parse()
                    .map_err(|_| E::invalid_value(Unexpected::Str(v), &self))
            }
        }
        d.deserialize_str(V)
    }
}
