//! The value types of the exact layer: argument expressions (`"buf+4K"`), flag words
//! (`"PROT_READ|PROT_WRITE"`, `["MAP_SHARED", "MAP_ANONYMOUS"]`, `0x22`) and expected
//! outcomes (`"EINVAL"`, `"SIGSEGV"`, `{ value = 0 }`).

use highpte_arch::size::parse_size;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;
use std::marker::PhantomData;

/// An argument as the i386 ABI passes it: a 32-bit word. Written as an integer, a size
/// (`"4K"`, `"0x1000"`), a name bound earlier (`"buf"`), or a name plus or minus a size
/// (`"buf+4K"`, `"brk-0x1000"`). Negative values wrap as in two's complement (`-1` is
/// `0xffffffff`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Expr {
    /// The name the value starts from, if any.
    pub name: Option<String>,
    /// What is added to the name's value (or the whole value without a name).
    pub offset: i64,
}

impl Expr {
    /// A plain number.
    pub const fn num(n: i64) -> Self {
        Expr {
            name: None,
            offset: n,
        }
    }
    /// The value once `name` has value `base` (0 without a name), as the 32-bit word the
    /// kernel sees.
    pub fn word(&self, base: u32) -> u32 {
        (i64::from(base).wrapping_add(self.offset)) as u32
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.name, self.offset) {
            (None, n) if n < 0 => write!(f, "-{:#x}", n.unsigned_abs()),
            (None, n) => write!(f, "{n:#x}"),
            (Some(s), 0) => f.write_str(s),
            (Some(s), n) if n < 0 => write!(f, "{s}-{:#x}", n.unsigned_abs()),
            (Some(s), n) => write!(f, "{s}+{n:#x}"),
        }
    }
}

/// Lowest and highest integer an i386 argument word can be written as.
const WORD_MIN: i64 = -(1 << 31);
const WORD_MAX: i64 = (1 << 32) - 1;

/// A number in a string: decimal with an optional K/M/G suffix, `0x` hex or `0o` octal.
fn parse_number(s: &str) -> Option<i64> {
    let s = s.trim();
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b.trim_start()),
        None => (false, s.strip_prefix('+').unwrap_or(s).trim_start()),
    };
    let v = if let Some(h) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        i64::from_str_radix(&h.replace('_', ""), 16).ok()?
    } else if let Some(o) = body.strip_prefix("0o") {
        i64::from_str_radix(&o.replace('_', ""), 8).ok()?
    } else {
        i64::try_from(parse_size(body).ok()?).ok()?
    };
    Some(if neg { -v } else { v })
}

/// True for a name that can be bound with `as`: a letter or `_`, then letters, digits, `_`
/// or `.`.
pub fn is_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '.')
}

impl std::str::FromStr for Expr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let bad = || {
            format!(
                "invalid value: \"{s}\", expected an integer, a size (\"4K\", \"0x1000\"), a name or a name plus or minus a size (\"buf+4K\")"
            )
        };
        let starts_name = t
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        if !starts_name {
            let n = parse_number(t).ok_or_else(bad)?;
            return check_range(n).map(Expr::num);
        }
        let split = t.find(['+', '-']).unwrap_or(t.len());
        let name = t[..split].trim();
        if !is_name(name) {
            return Err(bad());
        }
        let offset = if split == t.len() {
            0
        } else {
            parse_number(&t[split..]).ok_or_else(bad)?
        };
        Ok(Expr {
            name: Some(name.to_string()),
            offset: check_range(offset)?,
        })
    }
}

fn check_range(n: i64) -> Result<i64, String> {
    if (WORD_MIN..=WORD_MAX).contains(&n) {
        Ok(n)
    } else {
        Err(format!(
            "invalid value: {n} does not fit an i386 argument word, expected -2147483648 to 4294967295 (0xffffffff)"
        ))
    }
}

impl Serialize for Expr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.name {
            None => s.serialize_i64(self.offset),
            Some(_) => s.serialize_str(&self.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for Expr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Expr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer, a size (\"4K\"), a name or a name plus or minus a size (\"buf+4K\")")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Expr, E> {
                check_range(v).map(Expr::num).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Expr, E> {
                let v = i64::try_from(v).map_err(|_| E::custom("integer too large"))?;
                self.visit_i64(v)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Expr, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A family of named bits (or values) an argument takes: `PROT_*`, `MAP_*` ...
pub trait FlagKind {
    /// The names and their values, in the order they are printed.
    const NAMES: &'static [(&'static str, u32)];
    /// The names alone, for messages.
    const LIST: &'static [&'static str];
    /// True if the argument is one value (a command), not an OR of bits.
    const SINGLE: bool = false;
}

/// Flags written with Linux's names: an integer (`0x22`), a string of names and numbers
/// joined by `|` (`"PROT_READ|PROT_WRITE"`, `"IPC_CREAT|0o600"`), or an array of them
/// (`["MAP_SHARED", "MAP_ANONYMOUS"]`). Unknown bits pass through to the kernel.
pub struct Bits<K: FlagKind>(pub u32, PhantomData<K>);

impl<K: FlagKind> Bits<K> {
    /// These bits.
    pub const fn new(v: u32) -> Self {
        Bits(v, PhantomData)
    }
}

impl<K: FlagKind> Clone for Bits<K> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<K: FlagKind> Copy for Bits<K> {}
impl<K: FlagKind> PartialEq for Bits<K> {
    fn eq(&self, o: &Self) -> bool {
        self.0 == o.0
    }
}
impl<K: FlagKind> Eq for Bits<K> {}
impl<K: FlagKind> Default for Bits<K> {
    fn default() -> Self {
        Bits::new(0)
    }
}
impl<K: FlagKind> fmt::Debug for Bits<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl<K: FlagKind> fmt::Display for Bits<K> {
    /// The names of the known bits joined by `|`, then any unknown rest in hex.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if K::SINGLE {
            return match K::NAMES.iter().find(|(_, v)| *v == self.0) {
                Some((n, _)) => f.write_str(n),
                None => write!(f, "{:#x}", self.0),
            };
        }
        let mut rest = self.0;
        let mut parts = Vec::new();
        for (n, v) in K::NAMES {
            if *v != 0 && rest & v == *v {
                parts.push((*n).to_string());
                rest &= !v;
            }
        }
        if rest != 0 || parts.is_empty() {
            match K::NAMES.iter().find(|(_, v)| *v == 0) {
                Some((n, _)) if rest == 0 => parts.push((*n).to_string()),
                _ => parts.push(format!("{rest:#x}")),
            }
        }
        f.write_str(&parts.join("|"))
    }
}

fn one_part<K: FlagKind, E: de::Error>(word: &str) -> Result<u32, E> {
    let w = word.trim();
    if let Some((_, v)) = K::NAMES.iter().find(|(n, _)| *n == w) {
        return Ok(*v);
    }
    if w.starts_with(|c: char| c.is_ascii_digit()) {
        if let Some(n) = parse_number(w) {
            if let Ok(n) = u32::try_from(n) {
                return Ok(n);
            }
        }
    }
    Err(E::unknown_variant(w, K::LIST))
}

impl<K: FlagKind> Serialize for Bits<K> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de, K: FlagKind> Deserialize<'de> for Bits<K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<K>(PhantomData<K>);
        impl<'de, K: FlagKind> Visitor<'de> for V<K> {
            type Value = Bits<K>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "an integer, names joined by | (\"PROT_READ|PROT_WRITE\") or an array of names",
                )
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Bits<K>, E> {
                u32::try_from(v).map(Bits::new).map_err(|_| {
                    E::custom(format!(
                        "invalid value: {v} is not a 32-bit flag word, expected 0 to 0xffffffff"
                    ))
                })
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Bits<K>, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(-1))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Bits<K>, E> {
                let mut bits = 0;
                for w in v.split('|') {
                    bits |= one_part::<K, E>(w)?;
                }
                Ok(Bits::new(bits))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut a: A) -> Result<Bits<K>, A::Error> {
                let mut bits = 0;
                while let Some(w) = a.next_element::<String>()? {
                    bits |= one_part::<K, A::Error>(&w)?;
                }
                Ok(Bits::new(bits))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

macro_rules! flag_kind {
    ($(#[$m:meta])* $name:ident, $single:expr, [$(($n:literal, $v:expr)),* $(,)?]) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {}
        impl FlagKind for $name {
            const NAMES: &'static [(&'static str, u32)] = &[$(($n, $v)),*];
            const LIST: &'static [&'static str] = &[$($n),*];
            const SINGLE: bool = $single;
        }
    };
}

flag_kind!(
    /// `prot` of mmap and mprotect.
    ProtK, false, [("PROT_READ", 0x1), ("PROT_WRITE", 0x2), ("PROT_EXEC", 0x4), ("PROT_NONE", 0),
    ("PROT_GROWSDOWN", 0x0100_0000), ("PROT_GROWSUP", 0x0200_0000)]
);
flag_kind!(
    /// `flags` of mmap (i386 values).
    MapK, false, [("MAP_SHARED", 0x01), ("MAP_PRIVATE", 0x02), ("MAP_FIXED", 0x10),
    ("MAP_ANONYMOUS", 0x20), ("MAP_ANON", 0x20), ("MAP_GROWSDOWN", 0x100), ("MAP_DENYWRITE", 0x800),
    ("MAP_EXECUTABLE", 0x1000), ("MAP_LOCKED", 0x2000), ("MAP_NORESERVE", 0x4000),
    ("MAP_POPULATE", 0x8000), ("MAP_NONBLOCK", 0x1_0000)]
);
flag_kind!(
    /// `flags` of mremap.
    MremapK, false, [("MREMAP_MAYMOVE", 1), ("MREMAP_FIXED", 2)]
);
flag_kind!(
    /// `shmflg` of shmget: `IPC_CREAT`, `IPC_EXCL` and the permission bits (`0o600`).
    IpcK, false, [("IPC_CREAT", 0o1000), ("IPC_EXCL", 0o2000)]
);
flag_kind!(
    /// `shmflg` of shmat.
    ShmatK, false, [("SHM_RDONLY", 0o10000), ("SHM_RND", 0o20000)]
);
flag_kind!(
    /// `cmd` of shmctl.
    ShmctlK, true, [("IPC_RMID", 0), ("IPC_SET", 1), ("IPC_STAT", 2), ("IPC_INFO", 3),
    ("SHM_LOCK", 11), ("SHM_UNLOCK", 12)]
);
flag_kind!(
    /// `flags` of open.
    OpenK, false, [("O_RDONLY", 0), ("O_WRONLY", 1), ("O_RDWR", 2), ("O_CREAT", 0o100),
    ("O_EXCL", 0o200), ("O_TRUNC", 0o1000), ("O_APPEND", 0o2000)]
);
flag_kind!(
    /// `whence` of lseek.
    WhenceK, true, [("SEEK_SET", 0), ("SEEK_CUR", 1), ("SEEK_END", 2)]
);
flag_kind!(
    /// `flags` of msync.
    MsyncK, false, [("MS_ASYNC", 1), ("MS_INVALIDATE", 2), ("MS_SYNC", 4)]
);

/// Linux's error numbers (i386, `asm-generic/errno-base.h` and `errno.h`) that `expect`
/// accepts by name.
pub const ERRNOS: &[(&str, i32)] = &[
    ("EPERM", 1),
    ("ENOENT", 2),
    ("ESRCH", 3),
    ("EINTR", 4),
    ("EIO", 5),
    ("E2BIG", 7),
    ("EBADF", 9),
    ("ECHILD", 10),
    ("EAGAIN", 11),
    ("ENOMEM", 12),
    ("EACCES", 13),
    ("EFAULT", 14),
    ("EBUSY", 16),
    ("EEXIST", 17),
    ("ENODEV", 19),
    ("EISDIR", 21),
    ("EINVAL", 22),
    ("ENFILE", 23),
    ("EMFILE", 24),
    ("EFBIG", 27),
    ("ENOSPC", 28),
    ("ESPIPE", 29),
    ("EROFS", 30),
    ("ERANGE", 34),
    ("ENAMETOOLONG", 36),
    ("ENOSYS", 38),
    ("EIDRM", 43),
    ("EOVERFLOW", 75),
];

/// The name of error number `n` (`"E22"` style if it has none here).
pub fn errno_name(n: i32) -> String {
    ERRNOS
        .iter()
        .find(|(_, v)| *v == n)
        .map_or_else(|| format!("errno {n}"), |(s, _)| (*s).to_string())
}

/// Signals an access can get.
pub const SIGNALS: &[&str] = &["SIGSEGV", "SIGBUS"];

/// What an op is expected to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// Succeed (any value).
    Ok,
    /// Fail with this error number (positive, i386 value).
    Errno(i32),
    /// An access gets this signal (`"SIGSEGV"` or `"SIGBUS"`).
    Signal(&'static str),
    /// Succeed and return this value.
    Value(Expr),
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Ok => f.write_str("ok"),
            Expect::Errno(n) => f.write_str(&errno_name(*n)),
            Expect::Signal(s) => f.write_str(s),
            Expect::Value(e) => write!(f, "value {e}"),
        }
    }
}

impl Serialize for Expect {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            Expect::Value(e) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("value", e)?;
                m.end()
            }
            other => s.serialize_str(&other.to_string()),
        }
    }
}

/// Every name a string `expect` takes, for messages (`ERRNOS` and `SIGNALS` with `ok`).
const EXPECT_NAMES: &[&str] = &[
    "ok",
    "EPERM",
    "ENOENT",
    "ESRCH",
    "EINTR",
    "EIO",
    "E2BIG",
    "EBADF",
    "ECHILD",
    "EAGAIN",
    "ENOMEM",
    "EACCES",
    "EFAULT",
    "EBUSY",
    "EEXIST",
    "ENODEV",
    "EISDIR",
    "EINVAL",
    "ENFILE",
    "EMFILE",
    "EFBIG",
    "ENOSPC",
    "ESPIPE",
    "EROFS",
    "ERANGE",
    "ENAMETOOLONG",
    "ENOSYS",
    "EIDRM",
    "EOVERFLOW",
    "SIGSEGV",
    "SIGBUS",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ValueTable {
    value: Expr,
}

impl<'de> Deserialize<'de> for Expect {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Expect;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "\"ok\", an errno name (\"EINVAL\"), a signal (\"SIGSEGV\") or { value = ... }",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Expect, E> {
                if v == "ok" {
                    return Ok(Expect::Ok);
                }
                if let Some((_, n)) = ERRNOS.iter().find(|(n, _)| *n == v) {
                    return Ok(Expect::Errno(*n));
                }
                if let Some(s) = SIGNALS.iter().find(|s| **s == v) {
                    return Ok(Expect::Signal(s));
                }
                Err(E::unknown_variant(v, EXPECT_NAMES))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, a: A) -> Result<Expect, A::Error> {
                let t = ValueTable::deserialize(de::value::MapAccessDeserializer::new(a))?;
                Ok(Expect::Value(t.value))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_parse() {
        let e: Expr = "buf+4K".parse().unwrap();
        assert_eq!(e.name.as_deref(), Some("buf"));
        assert_eq!(e.offset, 4096);
        assert_eq!(e.word(0x4000_0000), 0x4000_1000);
        let e: Expr = "brk-0x1000".parse().unwrap();
        assert_eq!(e.word(0x0a00_2000), 0x0a00_1000);
        assert_eq!("0xC0000000".parse::<Expr>().unwrap().word(0), 0xC000_0000);
        assert_eq!("1M".parse::<Expr>().unwrap().word(0), 0x10_0000);
        assert_eq!("-1".parse::<Expr>().unwrap().word(0), 0xffff_ffff);
        assert!("4G".parse::<Expr>().is_err());
        assert!("buf+".parse::<Expr>().is_err());
        assert!("9buf".parse::<Expr>().is_err());
    }

    #[test]
    fn flags_print_with_names() {
        assert_eq!(
            Bits::<MapK>::new(0x22).to_string(),
            "MAP_PRIVATE|MAP_ANONYMOUS"
        );
        assert_eq!(Bits::<ProtK>::new(0).to_string(), "PROT_NONE");
        assert_eq!(Bits::<ProtK>::new(0x9).to_string(), "PROT_READ|0x8");
        assert_eq!(Bits::<ShmctlK>::new(0).to_string(), "IPC_RMID");
        assert_eq!(errno_name(22), "EINVAL");
        let listed: Vec<&str> = ERRNOS.iter().map(|(n, _)| *n).collect();
        assert_eq!(&EXPECT_NAMES[1..EXPECT_NAMES.len() - 2], &listed[..]);
    }
}
