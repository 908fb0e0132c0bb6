//! What a run reports: per step ([`StepReport`]), the whole run ([`RunReport`]) and its
//! failures ([`Failure`]).

use super::replay::ReplayTotals;
use highpte_arch::MemoryVariant;
use highpte_kernel::mm::reclaim::ReclaimKind;
use highpte_kernel::{Meminfo, PtAllocKind, PteStrategy};

/// The first thing that went wrong for a process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Index of the top-level process (0-based, in start order).
    pub process: u32,
    /// Its task id.
    pub pid: u32,
    /// The call or operation that failed (`shmat`, `touch`, ...).
    pub call: String,
    /// The errno or signal (`ENOMEM`, `SIGKILL`).
    pub errno_or_signal: String,
    /// LowFree (kB) when it failed.
    pub low_free_kb: u64,
    /// HighFree (kB) when it failed.
    pub high_free_kb: u64,
    /// The ramp step it happened in (0-based).
    pub step: usize,
    /// Top-level processes that had finished their phases (paused) when it happened.
    pub processes_done: u32,
    /// Forked children that had finished their phase (paused) and were still alive when it
    /// happened: `highpte calibrate` counts the children alive when low memory ran out by it.
    pub children_done: u32,
}

/// The state of the system after one ramp step.
#[derive(Clone, Debug)]
pub struct StepReport {
    /// Step number (0-based).
    pub step: usize,
    /// Top-level processes started so far.
    pub processes: u32,
    /// Processes alive and attached (not failed).
    pub processes_ok: u32,
    /// meminfo.
    pub meminfo: Meminfo,
    /// Low memory by owner, kB.
    pub lowmem_by_owner: Vec<(String, u64)>,
    /// Failures in this step.
    pub failures: Vec<Failure>,
    /// Simulated cycles so far (the slowest CPU).
    pub cycles: u64,
    /// Host seconds so far.
    pub host_seconds: f64,
    /// File pages read with `read()` by the workload's ops so far.
    pub file_reads: u64,
    /// Of those reads and every other page-cache miss, pages read from the disk so far
    /// (`fs_pages_read`).
    pub disk_reads: u64,
    /// `/proc/PID/maps` and `status` of every live process (top-level and forked children)
    /// when the step's report was taken.
    pub procs: Vec<crate::exact::ProcSnapshot>,
    /// For a run with `replay` ops: its replay figures when the step's report was taken.
    pub replay: Option<StepReplay>,
}

/// A run's replay figures at the end of a step, all counted from the start of the run (the
/// step's own share is the difference from the step before).
#[derive(Clone, Debug, Default)]
pub struct StepReplay {
    /// Instances started and completed, records, accesses by kind, distinct pages.
    pub totals: ReplayTotals,
    /// Page faults: all, demand zero, copy-on-write, shared, file, major.
    pub faults: [u64; 6],
    /// `kmap_atomic` mappings.
    pub kmap_atomic: u64,
    /// TLB misses, every CPU (user and kernel accesses).
    pub tlb_misses: u64,
    /// Simulated cycles, summed over the CPUs.
    pub cycles_all_cpus: u64,
}

impl StepReplay {
    /// TLB misses per 1,000 replayed accesses.
    pub fn tlb_misses_per_1000(&self) -> f64 {
        per(
            self.tlb_misses as f64 * 1000.0,
            self.totals.total_accesses(),
        )
    }
    /// Cycles (all CPUs) per replayed access.
    pub fn cycles_per_access(&self) -> f64 {
        per(self.cycles_all_cpus as f64, self.totals.total_accesses())
    }
}

fn per(x: f64, n: u64) -> f64 {
    if n == 0 {
        0.0
    } else {
        x / n as f64
    }
}

/// The result of a run.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// Workload name.
    pub workload: String,
    /// Memory configuration.
    pub config: MemoryVariant,
    /// The Linux the kernel followed (`machine.kernel`).
    pub kernel: highpte_arch::KernelProfile,
    /// Paging mode.
    pub paging: &'static str,
    /// RAM in bytes.
    pub ram_bytes: u64,
    /// CPUs.
    pub cpus: u32,
    /// Kernel preemption.
    pub preempt: bool,
    /// pte strategy.
    pub strategy: PteStrategy,
    /// Page-table allocator.
    pub pt_alloc: PtAllocKind,
    /// Reclaim design (`scan` or `rmap`).
    pub reclaim: ReclaimKind,
    /// Swap device size in bytes (0: none).
    pub swap_bytes: u64,
    /// Per zone: (name, pages scanned by reclaim, pages reclaimed).
    pub reclaim_zones: Vec<(String, u64, u64)>,
    /// Most bytes of reverse-map chains in use at once (rmap only).
    pub pte_chain_peak_bytes: u64,
    /// Seed.
    pub seed: u64,
    /// Top-level processes started.
    pub processes_started: u32,
    /// Processes (top-level or children) that failed.
    pub processes_failed: u32,
    /// The first failure.
    pub first_failure: Option<Failure>,
    /// One report per step.
    pub steps: Vec<StepReport>,
    /// meminfo at the last step (the peak).
    pub meminfo_peak: Meminfo,
    /// meminfo after every process exited (pools drained).
    pub meminfo_end: Meminfo,
    /// MemFree right after boot (kB).
    pub boot_mem_free_kb: u64,
    /// LowFree right after boot (kB).
    pub boot_low_free_kb: u64,
    /// Kernel counters.
    pub counters: Vec<(String, u64)>,
    /// Machine counters.
    pub machine: Vec<(String, u64)>,
    /// Simulated cycles (the slowest CPU).
    pub cycles: u64,
    /// Simulated cycles spent in the kernel per CPU are not separated; total over CPUs.
    pub cycles_all_cpus: u64,
    /// Host seconds.
    pub host_seconds: f64,
    /// The run's fingerprint.
    pub event_hash: u64,
    /// Operations run by the processes (system calls and accesses).
    pub operations: u64,
    /// Checks that failed (data stamps, invariants, kernel bugs, deadlocks): exit status 1.
    pub check_failures: Vec<String>,
    /// How the simulation ended.
    pub outcome: String,
    /// The kernel log (OOM kills and the like).
    pub kernel_log: Vec<String>,
    /// True if the simulation ended in a deadlock.
    pub deadlocked: bool,
    /// After a deadlock: the persistent kmaps each task held (task, entry, page, where taken).
    pub pkmap_holders: Vec<(u32, u32, u64, String)>,
    /// What the exact layer's `proc` ops recorded, in the order they ran.
    pub proc_records: Vec<crate::exact::ProcRecord>,
    /// `expect`s of the exact layer that were met.
    pub expectations_met: u64,
    /// What the `replay` ops did (all zero without one).
    pub replay: ReplayTotals,
}

impl RunReport {
    /// True if a check failed (stamps, invariants, bug, deadlock, leak).
    pub fn failed_checks(&self) -> bool {
        !self.check_failures.is_empty()
    }
}
