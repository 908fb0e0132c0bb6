//! The comma-separated lists `compare` and `sweep` take: configurations, strategies,
//! page-table allocators.

use highpte_arch::MemoryVariant;
use highpte_kernel::{PtAllocKind, PteStrategy};

/// A comma-separated list of memory configurations, or `all` (the five).
#[derive(Clone, Debug)]
pub struct ConfigList(pub Vec<MemoryVariant>);

/// A comma-separated list of pte strategies, or `all`.
#[derive(Clone, Debug)]
pub struct StrategyList(pub Vec<PteStrategy>);

/// A comma-separated list of page-table allocators, or `all`.
#[derive(Clone, Debug)]
pub struct PtAllocList(pub Vec<PtAllocKind>);

/// Split `s` on commas, trim, refuse empty items and duplicates, map `all` to `everything`.
fn parse_list<T: Copy + PartialEq>(
    s: &str,
    what: &str,
    accepted: &str,
    everything: &[T],
    one: impl Fn(&str) -> Option<T>,
) -> Result<Vec<T>, String> {
    if s.trim().eq_ignore_ascii_case("all") {
        return Ok(everything.to_vec());
    }
    let mut out = Vec::new();
    for (i, item) in s.split(',').enumerate() {
        let item = item.trim();
        if item.is_empty() {
            return Err(format!(
                "empty {what} name at position {} in '{s}': expected a comma-separated list of {accepted}, or all",
                i + 1
            ));
        }
        let v = one(item).ok_or_else(|| {
            format!("unknown {what} '{item}' in '{s}': expected a comma-separated list of {accepted}, or all")
        })?;
        if out.contains(&v) {
            return Err(format!("{what} '{item}' is listed twice in '{s}'"));
        }
        out.push(v);
    }
    Ok(out)
}

/// clap parser for `--configs`.
pub fn parse_configs(s: &str) -> Result<ConfigList, String> {
    parse_list(
        s,
        "configuration",
        "nohighmem, 4g, 4g-highpte, 64g, 64g-highpte",
        &MemoryVariant::ALL,
        |x| x.parse().ok(),
    )
    .map(ConfigList)
}

pub(super) fn parse_strategies(s: &str) -> Result<StrategyList, String> {
    parse_list(
        s,
        "pte strategy",
        "lowmem, atomic, persistent",
        &PteStrategy::ALL,
        PteStrategy::from_name,
    )
    .map(StrategyList)
}

pub(super) fn parse_pt_allocs(s: &str) -> Result<PtAllocList, String> {
    parse_list(
        s,
        "page-table allocator",
        "pool, quicklist, buddy",
        &PtAllocKind::ALL,
        PtAllocKind::from_name,
    )
    .map(PtAllocList)
}
