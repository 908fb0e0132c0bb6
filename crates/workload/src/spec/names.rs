//! The kernel choices a `[machine]` table names (`config`, `strategy`, `pt_alloc`, `reclaim`,
//! `kernel`):
//! read from the file as text once, turned into the kernel's enums here, written back by name.
//!
//! A name the kernel does not know is not a TOML shape error: it is parked in
//! [`UnknownNames`] so that validation reports it in its turn, as an invalid value at its key,
//! with a hint. Code after validation sees only the enums.

use super::{MachineSpec, Size};
use highpte_arch::{KernelProfile, MemoryVariant};
use highpte_kernel::mm::reclaim::ReclaimKind;
use highpte_kernel::{PtAllocKind, PteStrategy};
use serde::{Deserialize, Serializer};
use std::fmt;

/// Serializes a kernel enum as its name (their `Display`), for `#[serde(serialize_with)]`.
pub(crate) fn by_name<T: fmt::Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// Serializes an optional kernel enum as its name, for `#[serde(serialize_with)]`; callers
/// skip `None`.
pub(crate) fn opt_by_name<T: fmt::Display, S: Serializer>(
    v: &Option<T>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}

/// The names in a `[machine]` table that the kernel does not know, kept for validation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct UnknownNames {
    /// An unknown `config`.
    pub(crate) config: Option<String>,
    /// An unknown `strategy`.
    pub(crate) strategy: Option<String>,
    /// An unknown `pt_alloc`.
    pub(crate) pt_alloc: Option<String>,
    /// An unknown `reclaim`.
    pub(crate) reclaim: Option<String>,
    /// An unknown `kernel` profile.
    pub(crate) kernel: Option<String>,
}

/// The `[machine]` table as written: the same keys as [`MachineSpec`], names as text.
/// Renamed so that shape errors still say "expected struct MachineSpec".
#[derive(Deserialize)]
#[serde(rename = "MachineSpec", deny_unknown_fields, default)]
pub(crate) struct MachineFile {
    config: String,
    ram: Size,
    cpus: u32,
    preempt: bool,
    strategy: Option<String>,
    pt_alloc: Option<String>,
    seed: u64,
    debug: bool,
    swap: Size,
    reclaim: Option<String>,
    kernel: Option<String>,
}

impl Default for MachineFile {
    fn default() -> Self {
        let m = MachineSpec::default();
        MachineFile {
            config: m.config.name().to_string(),
            ram: m.ram,
            cpus: m.cpus,
            preempt: m.preempt,
            strategy: None,
            pt_alloc: None,
            seed: m.seed,
            debug: m.debug,
            swap: m.swap,
            reclaim: None,
            kernel: None,
        }
    }
}

/// Parses an optional name, parking it in `unknown` if the kernel does not know it.
fn parse_opt<T>(
    name: Option<String>,
    from_name: fn(&str) -> Option<T>,
    unknown: &mut Option<String>,
) -> Option<T> {
    let name = name?;
    let v = from_name(&name);
    if v.is_none() {
        *unknown = Some(name);
    }
    v
}

impl From<MachineFile> for MachineSpec {
    fn from(f: MachineFile) -> Self {
        let defaults = MachineSpec::default();
        let mut unknown = UnknownNames::default();
        let config = match f.config.parse::<MemoryVariant>() {
            Ok(v) => v,
            Err(_) => {
                unknown.config = Some(f.config);
                defaults.config
            }
        };
        let strategy = parse_opt(f.strategy, PteStrategy::from_name, &mut unknown.strategy);
        let pt_alloc = parse_opt(f.pt_alloc, PtAllocKind::from_name, &mut unknown.pt_alloc);
        let reclaim = parse_opt(f.reclaim, ReclaimKind::from_name, &mut unknown.reclaim);
        let kernel = parse_opt(
            f.kernel,
            |s| s.parse::<KernelProfile>().ok(),
            &mut unknown.kernel,
        )
        .unwrap_or_default();
        MachineSpec {
            config,
            ram: f.ram,
            cpus: f.cpus,
            preempt: f.preempt,
            strategy,
            pt_alloc,
            seed: f.seed,
            debug: f.debug,
            swap: f.swap,
            reclaim,
            kernel,
            unknown,
        }
    }
}
