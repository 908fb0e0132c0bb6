//! The `HIGHPTE_*` environment variables of the fuzz tests, parsed strictly: a value that is
//! not what the variable takes stops the test with a message naming the variable, the value
//! and an example, rather than running the default silently (issue 21: `HIGHPTE_FUZZ_SEED=turn2`
//! ran the default seed).
//!
//! * A count (`HIGHPTE_FUZZ_CASES`, `HIGHPTE_WORKLOAD_FUZZ_CASES`) is a whole number from 1 to
//!   2^32 - 1, decimal, `_` allowed between digits; anything else is refused.
//! * A seed (`HIGHPTE_FUZZ_SEED`, `HIGHPTE_WORKLOAD_FUZZ_SEED`) is a number (decimal or
//!   `0x` hexadecimal, `_` allowed) used as it is, or any other non-empty text, hashed into one
//!   (64-bit FNV-1a of its bytes) so that a word names a reproducible run; the test prints the
//!   seed it used and where it came from. An empty value is refused.
//!
//! Shared by `crates/machine/tests/fuzz_syscalls.rs` and (through `#[path]`)
//! `crates/workload/tests/workload_files.rs`.

#![allow(dead_code)]

/// A seed and where it came from, for the line the test prints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seed {
    /// The 64-bit seed.
    pub value: u64,
    /// `default`, `HIGHPTE_FUZZ_SEED=0x2a` or `HIGHPTE_FUZZ_SEED="turn2" (hashed)`.
    pub from: String,
}

/// `HIGHPTE_…_CASES` from the environment; the default when unset. Panics with a message
/// saying what is wrong for any other value (a test's way to refuse input).
pub fn cases(name: &str, default: u32) -> u32 {
    parse_cases(name, var(name).as_deref(), default).unwrap_or_else(|e| panic!("{e}"))
}

/// `HIGHPTE_…_SEED` from the environment; the default when unset. Panics for an empty value.
pub fn seed(name: &str, default: u64) -> Seed {
    parse_seed(name, var(name).as_deref(), default).unwrap_or_else(|e| panic!("{e}"))
}

/// The variable's value; a value that is not Unicode is refused.
fn var(name: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(v) => Some(v),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(v)) => panic!("{name}={v:?}: not valid Unicode"),
    }
}

/// [`cases`] on a given value (`None`: unset).
pub fn parse_cases(name: &str, value: Option<&str>, default: u32) -> Result<u32, String> {
    let Some(v) = value else {
        return Ok(default);
    };
    match parse_number(v) {
        Some(n) if (1..=u32::MAX as u64).contains(&n) => Ok(n as u32),
        Some(n) => Err(format!(
            "{name}={n}: the number of cases must be 1 to {} (e.g. {name}=6000)",
            u32::MAX
        )),
        None => Err(format!(
            "{name}={v:?}: not a number of cases; give a whole number, e.g. {name}=6000"
        )),
    }
}

/// [`seed`] on a given value (`None`: unset).
pub fn parse_seed(name: &str, value: Option<&str>, default: u64) -> Result<Seed, String> {
    let Some(v) = value else {
        return Ok(Seed {
            value: default,
            from: "default".to_string(),
        });
    };
    if v.trim().is_empty() {
        return Err(format!(
            "{name} is set but empty: give a number (e.g. {name}=12345 or {name}=0x2a) or a \
             word to hash into a seed (e.g. {name}=turn2), or unset it for the default"
        ));
    }
    Ok(match parse_number(v) {
        Some(n) => Seed {
            value: n,
            from: format!("{name}={v}"),
        },
        None => Seed {
            value: fnv1a64(v.as_bytes()),
            from: format!("{name}={v:?} (not a number: hashed)"),
        },
    })
}

/// A decimal or `0x` hexadecimal `u64`, surrounding blanks and `_` between digits allowed.
fn parse_number(v: &str) -> Option<u64> {
    let t = v.trim();
    let (digits, radix) = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => (h, 16),
        None => (t, 10),
    };
    if digits.is_empty() || digits.starts_with('_') || digits.ends_with('_') {
        return None;
    }
    let clean: String = digits.chars().filter(|&c| c != '_').collect();
    // from_str_radix takes a sign; a seed or count never has one
    if clean.starts_with(['+', '-']) {
        return None;
    }
    u64::from_str_radix(&clean, radix).ok()
}

/// 64-bit FNV-1a: small, stable across Rust versions and platforms (unlike `DefaultHasher`).
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The parsing rules, on the values of issue 21 and their neighbours.
pub fn self_test() {
    let n = "HIGHPTE_FUZZ_CASES";
    assert_eq!(parse_cases(n, None, 800), Ok(800));
    assert_eq!(parse_cases(n, Some("6000"), 800), Ok(6000));
    assert_eq!(parse_cases(n, Some(" 50_000 "), 800), Ok(50_000));
    assert_eq!(parse_cases(n, Some("0x10"), 800), Ok(16));
    for bad in ["", "lots", "6k", "-5", "+5", "1e4", "_5", "5_"] {
        let e = parse_cases(n, Some(bad), 800).unwrap_err();
        assert!(e.starts_with(&format!("{n}={bad:?}: not a number")), "{e}");
    }
    // zero and more than u32 cases: refused, not truncated
    assert!(parse_cases(n, Some("0"), 800).is_err());
    assert_eq!(
        parse_cases(n, Some("4294967296"), 800),
        Err(format!(
            "{n}=4294967296: the number of cases must be 1 to 4294967295 (e.g. {n}=6000)"
        ))
    );

    let s = "HIGHPTE_FUZZ_SEED";
    assert_eq!(
        parse_seed(s, None, 7),
        Ok(Seed {
            value: 7,
            from: "default".into()
        })
    );
    assert_eq!(parse_seed(s, Some("12345"), 7).unwrap().value, 12345);
    assert_eq!(parse_seed(s, Some("0x2A"), 7).unwrap().value, 42);
    assert_eq!(
        parse_seed(s, Some("0x68_6967_6870_7465"), 7).unwrap().value,
        0x0068_6967_6870_7465
    );
    assert_eq!(
        parse_seed(s, Some("18446744073709551615"), 7)
            .unwrap()
            .value,
        u64::MAX
    );
    // issue 21: a word is hashed, reproducibly, and the report says so
    let t = parse_seed(s, Some("turn2"), 7).unwrap();
    assert_eq!(t.value, fnv1a64(b"turn2"));
    assert_ne!(t.value, 7);
    assert_eq!(t.from, format!("{s}=\"turn2\" (not a number: hashed)"));
    assert_eq!(parse_seed(s, Some("turn2"), 7), Ok(t.clone()));
    assert_ne!(parse_seed(s, Some("turn3"), 7).unwrap().value, t.value);
    // a number too big for 64 bits is a word too (hashed, and said so)
    assert!(parse_seed(s, Some("18446744073709551616"), 7)
        .unwrap()
        .from
        .ends_with("(not a number: hashed)"));
    assert!(parse_seed(s, Some(""), 7)
        .unwrap_err()
        .contains("set but empty"));
    assert!(parse_seed(s, Some("  "), 7).is_err());
    // the published FNV-1a test vectors
    assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
}
