//! The workload model: what a workload file (TOML) says, as plain Rust values.
//!
//! A [`WorkloadSpec`] names a machine ([`MachineSpec`]), the processes that run on it
//! ([`ProcessSpec`]) and the [`Phase`]s of operations ([`Op`]) they perform. Deserializing only
//! checks shapes and types; [`WorkloadSpec::validate`] checks the values (sizes that fit the user
//! address space, regions defined before use, ...) and reports each [`Problem`] with the
//! [`PathSeg`] path of the offending key, so [`crate::file`] can point at its line and column.
//!
//! The format is documented for users in `workloads/README.md`.

mod check_op;
mod flow;
mod names;
mod op;
mod phase;
mod validate;
mod values;

#[cfg(test)]
mod tests;

pub use op::{Mix, Op, Pattern};
pub(crate) use phase::read_op_table;
pub use validate::{display_path, PathSeg, Problem};
pub(crate) use validate::{with, Checker, RegionKind};
pub use values::{Prot, SignedSize, Size};

use highpte_arch::size::{GB, MB};
use highpte_arch::{KernelProfile, MemoryVariant};
use highpte_kernel::mm::reclaim::ReclaimKind;
use highpte_kernel::{PtAllocKind, PteStrategy};
use names::{by_name, opt_by_name, MachineFile, UnknownNames};
use serde::{Deserialize, Serialize};

/// Size of the user part of the 3G/1G address space: every mapping must fit below `0xC0000000`.
pub const USER_SPACE: u64 = 0xC000_0000;
/// Most processes a workload may ask for (Linux 2.5 pids stop at 32767).
pub const MAX_PROCESSES: u32 = 32_767;
/// Least RAM a machine may have.
pub const MIN_RAM: u64 = 16 * MB;
/// Most RAM a machine may have.
pub const MAX_RAM: u64 = 64 * GB;
/// Largest swap device: 2^24 slots of 4 KB (the swap entry's offset field).
pub const MAX_SWAP: u64 = 64 * GB;
/// The largest file: page indexes are 32 bits in this kernel (`MAX_FILE_BYTES`).
pub const MAX_FILE: u64 = 1 << 40;

/// A whole workload file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    /// Short name, used in reports.
    pub name: String,
    /// One or two sentences saying what the workload does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The simulated machine and kernel build (the `[machine]` table; every key has a default).
    #[serde(default)]
    pub machine: MachineSpec,
    /// How many processes run, and how they ramp up (the `[processes]` table).
    #[serde(default)]
    pub processes: ProcessSpec,
    /// What the processes do, in order (`[[phases]]`); at least one.
    pub phases: Vec<Phase>,
}

/// The `[machine]` table: memory configuration, RAM, CPUs and kernel options.
///
/// The kernel choices are the kernel's enums, read from and written as their names; a name
/// the kernel does not know is reported by [`WorkloadSpec::validate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "MachineFile")]
pub struct MachineSpec {
    /// Memory configuration: `nohighmem`, `4g`, `4g-highpte`, `64g` or `64g-highpte`.
    /// Default `64g-highpte`.
    #[serde(serialize_with = "by_name")]
    pub config: MemoryVariant,
    /// Physical RAM, 16M to 64G and no more than `config` can address. Default `4G`.
    pub ram: Size,
    /// Number of CPUs, 1 (UP) to 32. Default 4.
    pub cpus: u32,
    /// Kernel preemption (`CONFIG_PREEMPT`). Default true.
    pub preempt: bool,
    /// pte access strategy: `lowmem`, `atomic` or `persistent`; absent: the config's default
    /// (`atomic` for `-highpte` configs, `lowmem` otherwise).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "opt_by_name"
    )]
    pub strategy: Option<PteStrategy>,
    /// Page-table page allocator: `pool`, `quicklist` or `buddy`; absent: `pool`.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "opt_by_name"
    )]
    pub pt_alloc: Option<PtAllocKind>,
    /// Seed of every random choice (access patterns, random op mixes, scheduling noise).
    /// Default 1.
    pub seed: u64,
    /// The kernel's debugging helpers (slot checks, cleared slots). Default false.
    pub debug: bool,
    /// Size of the swap device (0 to 64G, in 4 KB slots). Default 0: no swap.
    pub swap: Size,
    /// How memory is reclaimed: `scan` (page-table scan, the 2.5.5 default) or `rmap`
    /// (reverse maps); absent: `scan`.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "opt_by_name"
    )]
    pub reclaim: Option<ReclaimKind>,
    /// The Linux the kernel follows where versions differ: `2.5` (the seed's kernel) or
    /// `linux-6.1` (Debian 12's 686-pae kernel, held against real measurements in
    /// docs/fidelity.md). Default `2.5`, not written out.
    #[serde(skip_serializing_if = "is_default_kernel", serialize_with = "by_name")]
    pub kernel: KernelProfile,
    /// Names in the file the kernel does not know, until validation reports them.
    #[serde(skip)]
    unknown: UnknownNames,
}

impl Default for MachineSpec {
    fn default() -> Self {
        MachineSpec {
            config: MemoryVariant::Highmem64gHighpte,
            ram: Size(4 * GB),
            cpus: 4,
            preempt: true,
            strategy: None,
            pt_alloc: None,
            seed: 1,
            debug: false,
            swap: Size(0),
            reclaim: None,
            kernel: KernelProfile::default(),
            unknown: UnknownNames::default(),
        }
    }
}

/// The `[processes]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessSpec {
    /// How many top-level processes the workload starts (the ramp's target). At least 1.
    /// Default 1.
    #[serde(default = "one")]
    pub count: u32,
    /// Start `ramp.start` processes, then add `ramp.step` at a time, reporting after each step,
    /// up to `count`; stop at the first failure. Absent: all `count` start in one step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ramp: Option<Ramp>,
}

impl Default for ProcessSpec {
    fn default() -> Self {
        ProcessSpec {
            count: 1,
            ramp: None,
        }
    }
}

impl ProcessSpec {
    /// The number of processes alive after each step: `[count]` without a ramp, otherwise
    /// `start, start + step, ...` ending exactly at `count`. Empty if the spec is invalid.
    pub fn steps(&self) -> Vec<u32> {
        match self.ramp {
            None => vec![self.count],
            Some(Ramp { start, step }) => {
                if step == 0 || start == 0 || start > self.count {
                    return Vec::new();
                }
                let mut v = Vec::new();
                let mut n = start;
                loop {
                    v.push(n);
                    if n >= self.count {
                        break;
                    }
                    n = n.saturating_add(step).min(self.count);
                }
                v
            }
        }
    }
}

fn is_default_kernel(k: &KernelProfile) -> bool {
    *k == KernelProfile::default()
}

fn one() -> u32 {
    1
}
fn yes() -> bool {
    true
}

/// A ramp: how processes are added step by step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ramp {
    /// Processes in the first step (at least 1, at most `count`).
    pub start: u32,
    /// Processes added by each later step (at least 1); the last step stops at `count`.
    pub step: u32,
}

/// Which processes run a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RunBy {
    /// Only process 0 (the first process started), in the step that starts it.
    First,
    /// Every live top-level process that has not paused or exited; with a ramp, at every step.
    #[default]
    All,
    /// The processes started in the current ramp step (without a ramp: all of them).
    EachNew,
    /// No top-level process: only children forked by a `fork` op whose `child_phase` names it.
    Children,
}

/// One `[[phases]]` entry: a named sequence of operations, run by some of the processes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "phase::PhaseFile", into = "phase::PhaseFile")]
pub struct Phase {
    /// Unique name (used by `fork`'s `child_phase` and in reports).
    pub name: String,
    /// Who runs it. Default `all`.
    #[serde(default)]
    pub run_by: RunBy,
    /// How many times each process runs the ops, in order. At least 1; default 1.
    #[serde(default = "one")]
    pub repeat: u32,
    /// The operations, in order; at least one.
    pub ops: Vec<Op>,
    /// The `expect` of each convenient op, beside `ops` (same index); `None` for an op
    /// without one and for every exact op, which carries its own ([`crate::exact::ExactOp`]).
    pub expects: Vec<Option<crate::exact::OpExpect>>,
}

impl Phase {
    /// The expectation of convenient op `j`, if it has one.
    pub fn expect_of(&self, j: usize) -> Option<&crate::exact::OpExpect> {
        self.expects.get(j).and_then(Option::as_ref)
    }
}

/// Which part of a trace a `replay` op runs (docs/traces.md, "Instances").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplayPart {
    /// The whole trace: the process maps the program itself, like an exec.
    #[default]
    All,
    /// Only the exec: the initial regions mapped, and every page of them the trace fetches
    /// from loaded (written), as the loader reads the program's text in.
    Exec,
    /// Everything after the exec: the initial regions are inherited (from a parent that ran
    /// the `exec` part and forked), so their records are skipped.
    AfterExec,
}

impl ReplayPart {
    /// True for [`ReplayPart::All`] (the default, not written out).
    pub fn is_all(&self) -> bool {
        *self == ReplayPart::All
    }
}
