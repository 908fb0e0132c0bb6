//! The built-in workloads. Each one IS a workload file under `workloads/`, embedded in the
//! binary, so `highpte run sga` and `highpte run workloads/sga.toml` run the same thing.

use crate::file::parse_workload;
use crate::spec::WorkloadSpec;

/// Names of the built-in workloads, in the order the documentation presents them.
pub const BUILTINS: &[&str] = &[
    "sga",
    "wli",
    "forkstorm",
    "churn",
    "pagecache",
    "kmap-deadlock",
];

/// The embedded text of a built-in workload file, by name.
pub fn builtin_text(name: &str) -> Option<&'static str> {
    Some(match name {
        "sga" => include_str!("../../../workloads/sga.toml"),
        "wli" => include_str!("../../../workloads/wli.toml"),
        "forkstorm" => include_str!("../../../workloads/forkstorm.toml"),
        "churn" => include_str!("../../../workloads/churn.toml"),
        "pagecache" => include_str!("../../../workloads/pagecache.toml"),
        "kmap-deadlock" => include_str!("../../../workloads/kmap-deadlock.toml"),
        _ => return None,
    })
}

/// The built-in workload `name`, parsed and validated from its embedded file; `None` for an
/// unknown name. (The files are tested to be valid, so a known name always gives `Some`.)
pub fn builtin(name: &str) -> Option<WorkloadSpec> {
    let text = builtin_text(name)?;
    parse_workload(text, &format!("workloads/{name}.toml")).ok()
}

/// The names of the built-in workloads (the same as [`BUILTINS`]).
pub fn builtin_names() -> impl Iterator<Item = &'static str> {
    BUILTINS.iter().copied()
}
