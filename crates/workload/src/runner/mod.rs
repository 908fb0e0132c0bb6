//! The workload runner: boots the machine a [`WorkloadSpec`] describes and runs its processes
//! on it, step by step, phase by phase, reporting after each step.
//!
//! A driver (a kernel thread) starts the processes of each ramp step and runs the phases as
//! barriers: it hands each participating process the phase, and waits until every one of them
//! has finished it, paused, exited or failed. After each step it takes a report (meminfo, page
//! tables by zone, low memory by owner). The first failure stops the ramp. At the end the
//! driver kills the paused processes, waits for every process to exit, and checks that nothing
//! leaked.

use crate::spec::WorkloadSpec;
use highpte_arch::{Config, Pae, TwoLevel};
use highpte_kernel::{Errno, KernelOptions, Meminfo, TaskId, WaitQueueKey};
use highpte_machine::MachineOptions;
use rand_chacha::ChaCha8Rng;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

mod access;
mod churn;
mod driver;
mod files;
mod ops;
pub(crate) mod process;
mod replay;
mod report;
mod run;

pub use replay::ReplayTotals;
pub use report::{Failure, RunReport, StepReplay, StepReport};

pub(crate) use access::{
    access, forget_stamps, move_stamps, pick_page, record_shared, region_remapped, shared_ok,
    shm_obj_key, stamp_value, unrecord_shared,
};
pub(crate) use process::{check_fail, fail, fork_child, PhaseEnd};
use run::run_in;

/// Called after each step with its report.
pub type StepCallback = Rc<dyn Fn(&StepReport)>;
/// Called after every operation a process starts, with the run's operations so far (for
/// progress output that moves within a step).
pub type OperationCallback = Rc<dyn Fn(u64)>;
/// Adjusts the kernel options a workload implies.
pub type KernelTweak = Rc<dyn Fn(&mut KernelOptions)>;
/// Where the driver leaves the end-of-run meminfo and invariant report.
type EndSlot = Rc<RefCell<Option<(Meminfo, Vec<String>)>>>;

/// How thoroughly a run checks itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvariantChecks {
    /// Never (fastest).
    Never,
    /// After every step and at the end.
    EachStep,
}

/// Everything a run needs beyond the workload.
#[derive(Clone)]
pub struct RunOptions {
    /// Stress mode: perturb interleavings from the seed.
    pub stress: bool,
    /// Invariant checking.
    pub invariants: InvariantChecks,
    /// Stop the simulation after this many cycles on every CPU.
    pub max_cycles: Option<u64>,
    /// Machine options (quantum, tick, cost model); CPUs, RAM and preemption come from the
    /// workload.
    pub machine: MachineOptions,
    /// Called after each step with the step report (for progress output).
    pub on_step: Option<StepCallback>,
    /// Called as each operation starts with the operations so far (for progress output).
    pub on_operation: Option<OperationCallback>,
    /// Kernel options overriding those the workload implies (e.g. persistent-kmap window).
    pub kernel_tweak: Option<KernelTweak>,
    /// Fault injection for page allocations, set right after boot (`--fail-alloc`).
    pub fail_alloc: highpte_kernel::FailAlloc,
    /// `highmem=`: most bytes of HighMem the kernel manages (`None`: all of it).
    pub highmem_limit: Option<u64>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            stress: false,
            invariants: InvariantChecks::Never,
            max_cycles: None,
            machine: MachineOptions {
                tick_period: 1_000_000,
                quantum: 20_000,
                ..Default::default()
            },
            on_step: None,
            on_operation: None,
            kernel_tweak: None,
            fail_alloc: highpte_kernel::FailAlloc::Off,
            highmem_limit: None,
        }
    }
}

/// Why a run could not start.
#[derive(Debug)]
pub struct RunError(pub String);

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for RunError {}

/// The configuration and kernel options a spec asks for.
pub fn spec_config(spec: &WorkloadSpec) -> Result<(Config, KernelOptions), RunError> {
    let m = &spec.machine;
    let mut cfg =
        Config::new(m.config, m.ram.0, m.cpus, m.preempt).map_err(|e| RunError(e.to_string()))?;
    cfg.kernel = m.kernel;
    let mut k = KernelOptions::defaults_for(&cfg);
    if let Some(s) = m.strategy {
        k.strategy = s;
    }
    if let Some(a) = m.pt_alloc {
        k.pt_alloc = a;
    }
    k.debug = m.debug;
    k.swap_pages = m.swap.0 / 4096;
    if let Some(r) = m.reclaim {
        k.reclaim = r;
    }
    Ok((cfg, k))
}

/// Run a workload.
pub fn run(spec: &WorkloadSpec, opts: &RunOptions) -> Result<RunReport, RunError> {
    let (cfg, _) = spec_config(spec)?;
    if cfg.variant.pae() {
        run_in::<Pae>(spec, opts)
    } else {
        run_in::<TwoLevel>(spec, opts)
    }
}

const DRIVER_KEY: WaitQueueKey = WaitQueueKey(0x6472_6976_6572_0000);
/// A process waits for its next command on the queue a kill (the OOM killer) also wakes, so
/// that a victim chosen while it is idle gets up and exits.
const PROC_KEY_BASE: u64 = highpte_kernel::mm::process::WAIT_KEY_BASE;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PState {
    /// Waiting for a command.
    Idle,
    /// Running a phase.
    Busy,
    /// Paused (alive, done with its phases).
    Paused,
    /// Exited (or failed and exited).
    Exited,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cmd {
    Phase(usize),
    Quit,
}

struct Slot {
    pid: TaskId,
    state: PState,
    cmd: Option<Cmd>,
    failed: bool,
}

/// A stamp history per shared page: the last few values written (any of them may be read by
/// a racing reader).
type SharedStamps = BTreeMap<(u64, u32), Vec<u32>>;

pub(crate) struct Ctl {
    slots: Vec<Slot>,
    failures: Vec<Failure>,
    checks: Vec<String>,
    shared_stamps: SharedStamps,
    next_obj: u64,
    step: usize,
    operations: u64,
    children_failed: u32,
    /// Files by name: the stamp-history object of the file that name now refers to.
    files: BTreeMap<String, u64>,
    /// File pages read with `read()`.
    file_reads: u64,
    /// What the `proc` ops of the exact layer recorded.
    pub(crate) proc_records: Vec<crate::exact::ProcRecord>,
    /// `expect`s of the exact layer that were met.
    pub(crate) expectations_met: u64,
    /// Forked children that started, by pid: their label and whether they paused.
    children: BTreeMap<u32, (String, bool)>,
    /// Forked children whose phase has ended (paused, exited or killed), by pid: what a
    /// parent forking with `wait_done` waits for.
    children_done_pids: std::collections::BTreeSet<u32>,
    /// Children a parent waits for (`wait_done`): only they wake anyone when done.
    children_waited: std::collections::BTreeSet<u32>,
    /// Forked children not yet gone (counted by the parent before the fork, so that a step
    /// report never misses a child that has not run yet) and, of them, those paused.
    children_live: u32,
    children_paused: u32,
    /// The run is ending: the driver kills the paused processes (not a failure).
    ending: bool,
    on_operation: Option<OperationCallback>,
    /// What the `replay` ops did.
    replay: ReplayTotals,
    /// The fold of every trace the workload replays, by path (planned before the run).
    trace_folds: BTreeMap<String, Rc<crate::trace::Fold>>,
    /// The decompressed copy of every compressed trace, by path (see `trace::spool`).
    trace_spools: BTreeMap<String, Rc<crate::trace::Spool>>,
}

/// Count one operation and tell the progress callback.
pub(crate) fn count_operation(ctl: &Rc<RefCell<Ctl>>) {
    let (n, cb) = {
        let mut c = ctl.borrow_mut();
        c.operations += 1;
        (c.operations, c.on_operation.clone())
    };
    if let Some(cb) = cb {
        cb(n);
    }
}

/// A region a process has mapped.
#[derive(Clone, Debug)]
pub(crate) struct Region {
    pub(crate) addr: u32,
    pub(crate) len: u32,
    pub(crate) prot: u32,
    /// Shared object identity (SysV key based or a shared anonymous mapping), if shared.
    pub(crate) obj: Option<u64>,
    /// Page index of `addr` in the object.
    pub(crate) pgoff: u32,
    pub(crate) shm: bool,
    /// A file mapping (`mmap_file`): `obj` is the file.
    pub(crate) file: bool,
    /// A private file mapping: a page reads as the file until this process writes it, then
    /// as its own copy (a private stamp).
    pub(crate) cow: bool,
}

/// One process's user-side state.
#[derive(Clone)]
pub(crate) struct PCtx {
    pub(crate) index: u32,
    pub(crate) regions: BTreeMap<String, Region>,
    /// Expected stamps of private pages, by page address.
    pub(crate) stamps: BTreeMap<u32, u32>,
    pub(crate) generation: u32,
    pub(crate) rng: ChaCha8Rng,
    pub(crate) seed: u64,
    /// Files this process has open, by name.
    pub(crate) files: BTreeMap<String, files::FileRec>,
    /// Values bound with `as` in the exact layer.
    pub(crate) names: BTreeMap<String, u32>,
    /// `p3` for top-level process 3, `p3c0` for its first child (reports, task names).
    pub(crate) label: String,
    /// Children forked so far (to label the next one).
    pub(crate) forks: u32,
}

/// Errors a workload's own op may legitimately meet (not bugs): out of memory.
pub(crate) fn is_resource_error(e: Errno) -> bool {
    e == Errno::ENOMEM || e == Errno::EAGAIN || e == Errno::ENOSPC
}
