//! Workloads for highpte: user programs that run as processes on the simulated machine, making
//! system calls and touching memory.
//!
//! A workload is described by a TOML file (format: `workloads/README.md`) and read into a
//! [`WorkloadSpec`] by [`parse_workload`] / [`load_workload`], which report mistakes with the
//! file, line and column ([`WorkloadError`]). The built-in workloads (`sga`, `wli`, `forkstorm`,
//! `churn`) are such files, embedded: see [`builtin()`].

#![deny(missing_docs)]

pub mod builtin;
pub mod exact;
pub mod file;
pub mod limits;
pub mod microbench;
pub mod runner;
pub mod spec;
pub mod trace;

pub use builtin::{builtin, builtin_names, BUILTINS};
pub use file::{load_workload, parse_workload, ErrorKind, WorkloadError, EXIT_BAD_INPUT};
pub use spec::{
    MachineSpec, Mix, Op, Pattern, Phase, Problem, ProcessSpec, Prot, Ramp, ReplayPart, RunBy,
    SignedSize, Size, WorkloadSpec,
};
