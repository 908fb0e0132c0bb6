//! The workload runner: boots the machine a [`WorkloadSpec`] describes and runs its processes
//! on it, step by step, phase by phase, reporting after each step.
//!
//! A driver (a kernel thread) starts the processes of each ramp step and runs the phases as
//! barriers: it hands each participating process the phase, and waits until every one of them
//! has finished it, paused, exited or failed. After each step it takes a report (meminfo, page
//! tables by zone, low memory by owner). The first failure stops the ramp. At the end the
//! driver kills the paused processes, waits for every process to exit, and checks that nothing
//! leaked.

use crate::spec::{Op, Pattern, Phase, Prot, RunBy, WorkloadSpec};
use highpte_arch::{Config, Pae, PagingMode, TwoLevel};
use highpte_kernel::mm::filemap::MS_SYNC;
use highpte_kernel::mm::reclaim::ReclaimKind;
use highpte_kernel::mm::shm::{IPC_CREAT, SHM_RDONLY};
use highpte_kernel::mm::{
    MAP_ANONYMOUS, MAP_FIXED, MAP_POPULATE, MAP_PRIVATE, MAP_SHARED, MREMAP_MAYMOVE, PROT_EXEC,
    PROT_READ, PROT_WRITE,
};
use highpte_kernel::platform::prelude::*;
use highpte_kernel::{
    Errno, KernelOptions, Meminfo, PtAllocKind, PteStrategy, Signal, TaskId, WaitQueueKey,
};
use highpte_machine::system::{run_new_process, KernelCell};
use highpte_machine::{MachineOptions, RunOutcome, System, TaskHandle, User};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Instant;

mod churn;
mod files;
mod replay;

pub use replay::ReplayTotals;

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
}

/// The result of a run.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// Workload name.
    pub workload: String,
    /// Memory configuration.
    pub config: String,
    /// Paging mode.
    pub paging: &'static str,
    /// RAM in bytes.
    pub ram_bytes: u64,
    /// CPUs.
    pub cpus: u32,
    /// Kernel preemption.
    pub preempt: bool,
    /// pte strategy.
    pub strategy: String,
    /// Page-table allocator.
    pub pt_alloc: String,
    /// Reclaim design (`scan` or `rmap`).
    pub reclaim: String,
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
    let variant = m
        .variant()
        .ok_or_else(|| RunError(format!("unknown memory configuration '{}'", m.config)))?;
    let cfg =
        Config::new(variant, m.ram.0, m.cpus, m.preempt).map_err(|e| RunError(e.to_string()))?;
    let mut k = KernelOptions::defaults_for(&cfg);
    if let Some(s) = &m.strategy {
        k.strategy =
            PteStrategy::from_name(s).ok_or_else(|| RunError(format!("unknown strategy '{s}'")))?;
    }
    if let Some(a) = &m.pt_alloc {
        k.pt_alloc = PtAllocKind::from_name(a)
            .ok_or_else(|| RunError(format!("unknown page-table allocator '{a}'")))?;
    }
    k.debug = m.debug;
    k.swap_pages = m.swap.0 / 4096;
    if let Some(r) = &m.reclaim {
        k.reclaim = ReclaimKind::from_name(r)
            .ok_or_else(|| RunError(format!("unknown reclaim design '{r}'")))?;
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

pub(crate) fn stamp_value(seed: u64, writer: u32, page: u32, generation: u32) -> u32 {
    let mut x =
        seed ^ (u64::from(writer) << 40) ^ (u64::from(page) << 8) ^ (u64::from(generation) << 52);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    (x as u32) | 1
}

fn prot_bits(p: Prot) -> u32 {
    (if p.read { PROT_READ } else { 0 })
        | (if p.write { PROT_WRITE } else { 0 })
        | (if p.exec { PROT_EXEC } else { 0 })
}

fn run_in<M: PagingMode>(spec: &WorkloadSpec, opts: &RunOptions) -> Result<RunReport, RunError> {
    let (mut cfg, mut kopts) = spec_config(spec)?;
    cfg.highmem_limit = opts.highmem_limit;
    if let Some(t) = &opts.kernel_tweak {
        t(&mut kopts);
    }
    let (trace_folds, trace_spools) = plan_traces(spec)?;
    let t0 = Instant::now();
    let mut mopts = opts.machine.clone();
    mopts.seed = spec.machine.seed;
    mopts.stress = opts.stress;
    mopts.max_cycles = opts.max_cycles;
    let mut sys = System::<M>::boot(cfg, kopts, mopts).map_err(|e| RunError(e.to_string()))?;
    sys.kernel().set_fail_alloc(opts.fail_alloc);
    let (boot_free, boot_low_free) = sys
        .inspect(|h, k| {
            let m = k.meminfo(h);
            (m.mem_free, m.low_free)
        })
        .map_err(RunError)?;
    let ctl = Rc::new(RefCell::new(Ctl {
        slots: Vec::new(),
        failures: Vec::new(),
        checks: Vec::new(),
        shared_stamps: BTreeMap::new(),
        next_obj: 1 << 63,
        step: 0,
        operations: 0,
        children_failed: 0,
        files: BTreeMap::new(),
        file_reads: 0,
        proc_records: Vec::new(),
        expectations_met: 0,
        children: BTreeMap::new(),
        children_live: 0,
        children_paused: 0,
        ending: false,
        on_operation: opts.on_operation.clone(),
        replay: ReplayTotals::default(),
        trace_folds,
        trace_spools,
    }));
    let steps_out: Rc<RefCell<Vec<StepReport>>> = Rc::new(RefCell::new(Vec::new()));
    let end_out: EndSlot = Rc::new(RefCell::new(None));
    let spec_rc = Rc::new(spec.clone());
    {
        let kc = sys.kernel_cell();
        let ctl = ctl.clone();
        let steps_out = steps_out.clone();
        let end_out = end_out.clone();
        let spec = spec_rc.clone();
        let on_step = opts.on_step.clone();
        let inv = opts.invariants;
        sys.machine
            .spawn("driver", Some(0), move |h| {
                driver(h, kc, spec, ctl, steps_out, end_out, on_step, inv, t0);
                0
            })
            .map_err(|e| RunError(e.to_string()))?;
    }
    let outcome = sys.run();
    let deadlocked = matches!(outcome, RunOutcome::Deadlock(_));
    let mut pkmap_holders = Vec::new();
    if deadlocked {
        // SAFETY: the machine stopped at the deadlock; no simulated task runs any more.
        let held = unsafe { sys.kernel().pkmap_holders_stopped() };
        for (task, hs) in held {
            for hh in hs {
                pkmap_holders.push((task.0, hh.nr, hh.pfn.0, hh.place.to_string()));
            }
        }
    }
    let event_hash = sys.machine.event_hash();
    let clocks = sys.machine.cpu_clocks();
    if deadlocked {
        let done = steps_out.borrow().len();
        if let Some(rep) = deadlock_step(&mut sys, &ctl, done, t0) {
            steps_out.borrow_mut().push(rep);
        }
    }
    let mut checks = ctl.borrow().checks.clone();
    match &outcome {
        RunOutcome::Completed => {}
        RunOutcome::TimeLimit => {}
        other => checks.push(format!("simulation stopped: {other}")),
    }
    let (end_mi, end_inv) = end_out.borrow_mut().take().unwrap_or_default();
    checks.extend(end_inv);
    let k = sys.kernel();
    if matches!(outcome, RunOutcome::Completed) && end_mi.mem_free != boot_free {
        use highpte_kernel::page_alloc::PageOwner;
        let owners: Vec<String> = k
            .lowmem_by_owner()
            .into_iter()
            .filter(|(o, n)| {
                *n > 0
                    && !matches!(
                        o,
                        PageOwner::MemMap | PageOwner::KernelImage | PageOwner::BootReserved
                    )
            })
            .map(|(o, n)| format!("{} {} pages", o.name(), n))
            .collect();
        checks.push(format!(
            "leak: MemFree after every process exited is {} kB, {} kB at boot ({} pages {}; low memory still held: {}; kernel objects {} bytes)",
            end_mi.mem_free,
            boot_free,
            (boot_free as i64 - end_mi.mem_free as i64).unsigned_abs() / 4,
            if end_mi.mem_free < boot_free { "lost" } else { "gained" },
            if owners.is_empty() { "none".to_string() } else { owners.join(", ") },
            k.kobj_bytes()
        ));
    }
    let steps = steps_out.borrow().clone();
    let c = ctl.borrow();
    let first_failure = c.failures.first().cloned();
    let failed_top = c.slots.iter().filter(|s| s.failed).count() as u32;
    let ms = sys.machine.stats();
    let machine = vec![
        ("context_switches".to_string(), ms.context_switches),
        ("preemptions".to_string(), ms.preemptions),
        ("migrations".to_string(), ms.migrations),
        ("ticks".to_string(), ms.ticks),
        ("ipis_sent".to_string(), ms.ipis_sent),
        ("ipi_tlb_shootdowns".to_string(), ms.tlb_shootdowns),
        ("scheduler_events".to_string(), ms.scheduler_events),
        ("sleeps".to_string(), ms.sleeps),
        ("spins".to_string(), ms.spins),
    ];
    let mut tlb = (0u64, 0u64, 0u64, 0u64);
    for cpu in 0..cfg.cpus {
        if let Some(t) = sys.machine.tlb(cpu) {
            let s = t.stats();
            tlb.0 += s.hits;
            tlb.1 += s.misses;
            tlb.2 += s.invlpgs;
            tlb.3 += s.flushes_all + s.flushes_nonglobal;
        }
    }
    let mut machine = machine;
    machine.push(("tlb_hits".into(), tlb.0));
    machine.push(("tlb_misses".into(), tlb.1));
    machine.push(("invlpg_executed".into(), tlb.2));
    machine.push(("tlb_flushes".into(), tlb.3));
    Ok(RunReport {
        workload: spec.name.clone(),
        config: cfg.variant.name().to_string(),
        paging: M::NAME,
        ram_bytes: cfg.ram_bytes,
        cpus: cfg.cpus,
        preempt: cfg.preempt,
        strategy: k.options().strategy.name().to_string(),
        pt_alloc: k.options().pt_alloc.name().to_string(),
        reclaim: k.options().reclaim.name().to_string(),
        swap_bytes: k.options().swap_pages * 4096,
        reclaim_zones: highpte_kernel::page_alloc::ZoneType::ALL
            .iter()
            .map(|z| {
                let (s, r) = k.reclaim_stats(*z);
                (z.name().to_string(), s, r)
            })
            .collect(),
        pte_chain_peak_bytes: k.rmap_usage().1,
        seed: spec.machine.seed,
        processes_started: c.slots.len() as u32,
        processes_failed: failed_top + c.children_failed,
        first_failure,
        meminfo_peak: steps.last().map(|s| s.meminfo).unwrap_or_default(),
        steps,
        meminfo_end: end_mi,
        boot_mem_free_kb: boot_free,
        boot_low_free_kb: boot_low_free,
        counters: k
            .counters()
            .snapshot()
            .into_iter()
            .map(|(n, v)| (n.to_string(), v))
            .collect(),
        machine,
        cycles: clocks.iter().copied().max().unwrap_or(0),
        cycles_all_cpus: clocks.iter().sum(),
        host_seconds: t0.elapsed().as_secs_f64(),
        event_hash,
        operations: c.operations,
        check_failures: checks,
        outcome: outcome.to_string(),
        kernel_log: sys.machine.kernel_log().to_vec(),
        deadlocked,
        pkmap_holders,
        proc_records: c.proc_records.clone(),
        expectations_met: c.expectations_met,
        replay: c.replay.clone(),
    })
}

/// Scan every trace the workload replays (once each, before the machine boots) and plan its
/// fold: a malformed trace, or one that cannot fold, is bad input. A compressed trace is also
/// kept decompressed in a temporary file, which its replays share.
#[allow(clippy::type_complexity)]
fn plan_traces(
    spec: &WorkloadSpec,
) -> Result<
    (
        BTreeMap<String, Rc<crate::trace::Fold>>,
        BTreeMap<String, Rc<crate::trace::Spool>>,
    ),
    RunError,
> {
    let mut out = BTreeMap::new();
    let mut spools = BTreeMap::new();
    for phase in &spec.phases {
        for op in &phase.ops {
            if let Op::Replay { trace, .. } = op {
                if out.contains_key(trace) {
                    continue;
                }
                let (info, spool) = crate::trace::scan_and_spool(std::path::Path::new(trace))
                    .map_err(|e| RunError(e.to_string()))?;
                let fold = crate::trace::Fold::plan(&info.clusters)
                    .map_err(|why| RunError(format!("trace {trace}: {why}")))?;
                out.insert(trace.clone(), Rc::new(fold));
                if let Some(s) = spool {
                    spools.insert(trace.clone(), Rc::new(s));
                }
            }
        }
    }
    Ok((out, spools))
}

/// The report of the step a deadlock stopped, with the machine as it stopped (read without
/// locks: no task runs any more). `None` if that step was reported already.
fn deadlock_step<M: PagingMode>(
    sys: &mut System<M>,
    ctl: &Rc<RefCell<Ctl>>,
    steps_done: usize,
    t0: Instant,
) -> Option<StepReport> {
    let step = ctl.borrow().step;
    if step < steps_done {
        return None;
    }
    let k = sys.kernel();
    // SAFETY: the machine stopped at the deadlock; no simulated task runs any more.
    let meminfo = unsafe { k.meminfo_stopped() };
    let lowmem_by_owner = k
        .lowmem_by_owner()
        .into_iter()
        .map(|(o, n)| (o.name().to_string(), n * 4))
        .collect();
    let disk_reads = k.counters().get(highpte_kernel::Counter::FsPagesRead);
    let cycles = sys.machine.cpu_clocks().iter().copied().max().unwrap_or(0);
    let c = ctl.borrow();
    Some(StepReport {
        step,
        processes: c.slots.len() as u32,
        processes_ok: c
            .slots
            .iter()
            .filter(|sl| !sl.failed && sl.state != PState::Exited)
            .count() as u32,
        meminfo,
        lowmem_by_owner,
        failures: c
            .failures
            .iter()
            .filter(|f| f.step == step)
            .cloned()
            .collect(),
        cycles,
        host_seconds: t0.elapsed().as_secs_f64(),
        file_reads: c.file_reads,
        disk_reads,
        // the machine is stopped: no task can read the processes' /proc views
        procs: Vec::new(),
    })
}

#[allow(clippy::too_many_arguments)]
fn driver<M: PagingMode>(
    h: &TaskHandle<M>,
    kc: KernelCell<M>,
    spec: Rc<WorkloadSpec>,
    ctl: Rc<RefCell<Ctl>>,
    steps_out: Rc<RefCell<Vec<StepReport>>>,
    end_out: EndSlot,
    on_step: Option<StepCallback>,
    inv: InvariantChecks,
    t0: Instant,
) {
    let Some(k) = kc.get(h) else { return };
    let steps = spec.processes.steps();
    let mut started = 0u32;
    for (s, &target) in steps.iter().enumerate() {
        ctl.borrow_mut().step = s;
        let first_new = started;
        while started < target {
            let index = started;
            let kc2 = kc.clone();
            let ctl2 = ctl.clone();
            let spec2 = spec.clone();
            let seed = spec.machine.seed;
            let pid = match h.spawn(format!("p{index}"), None, move |h2| {
                let ctl3 = ctl2.clone();
                let kc3 = kc2.clone();
                let code =
                    run_new_process(h2, kc2, move |u| process_main(u, index, seed, spec2, ctl2));
                // the kernel could not create the process (no memory): its body never ran,
                // so nobody else marks its slot done or reports the failure
                let never_ran = ctl3
                    .borrow()
                    .slots
                    .get(index as usize)
                    .is_some_and(|sl| sl.state != PState::Exited);
                if never_ran {
                    let mi = kc3.get(h2).map(|k| k.meminfo(h2)).unwrap_or_default();
                    let mut c = ctl3.borrow_mut();
                    let step = c.step;
                    let processes_done =
                        c.slots.iter().filter(|s| s.state == PState::Paused).count() as u32;
                    c.failures.push(Failure {
                        processes_done,
                        process: index,
                        pid: h2.id().0,
                        call: "fork".to_string(),
                        errno_or_signal: "ENOMEM".to_string(),
                        low_free_kb: mi.low_free,
                        high_free_kb: mi.high_free,
                        step,
                    });
                    let sl = &mut c.slots[index as usize];
                    sl.state = PState::Exited;
                    sl.failed = true;
                }
                h2.wake_up_all(DRIVER_KEY);
                code
            }) {
                Ok(p) => p,
                Err(e) => {
                    ctl.borrow_mut()
                        .checks
                        .push(format!("could not start process {index}: {e}"));
                    break;
                }
            };
            ctl.borrow_mut().slots.push(Slot {
                pid,
                state: PState::Idle,
                cmd: None,
                failed: false,
            });
            started += 1;
        }
        for (pi, phase) in spec.phases.iter().enumerate() {
            let parts: Vec<usize> = {
                let c = ctl.borrow();
                c.slots
                    .iter()
                    .enumerate()
                    .filter(|(i, sl)| {
                        sl.state == PState::Idle
                            && match phase.run_by {
                                RunBy::First => *i == 0 && s == 0,
                                RunBy::All => true,
                                RunBy::EachNew => *i as u32 >= first_new,
                                RunBy::Children => false,
                            }
                    })
                    .map(|(i, _)| i)
                    .collect()
            };
            for &i in &parts {
                let pid = {
                    let mut c = ctl.borrow_mut();
                    c.slots[i].cmd = Some(Cmd::Phase(pi));
                    c.slots[i].state = PState::Busy;
                    c.slots[i].pid
                };
                h.wake_up_all(WaitQueueKey(PROC_KEY_BASE + u64::from(pid.0)));
            }
            wait_until(h, || {
                parts
                    .iter()
                    .all(|&i| ctl.borrow().slots[i].state != PState::Busy)
            });
        }
        // the step report, when every process is paused or done, children included
        wait_until(h, || {
            let c = ctl.borrow();
            c.children_live == c.children_paused
        });
        // only for workloads of the exact layer: reading every mm's VMAs takes their
        // mmap_sem, which would change the timing of the workloads that never asked
        let procs = if spec.uses_exact_layer() {
            proc_snapshots(k, h, &ctl)
        } else {
            Vec::new()
        };
        let mi = k.meminfo(h);
        let owners: Vec<(String, u64)> = k
            .lowmem_by_owner()
            .into_iter()
            .map(|(o, n)| (o.name().to_string(), n * 4))
            .collect();
        let mut rep = {
            let c = ctl.borrow();
            StepReport {
                step: s,
                processes: started,
                processes_ok: c
                    .slots
                    .iter()
                    .filter(|sl| !sl.failed && sl.state != PState::Exited)
                    .count() as u32,
                meminfo: mi,
                lowmem_by_owner: owners,
                failures: c.failures.iter().filter(|f| f.step == s).cloned().collect(),
                cycles: h.now(),
                host_seconds: t0.elapsed().as_secs_f64(),
                file_reads: c.file_reads,
                disk_reads: k.counters().get(highpte_kernel::Counter::FsPagesRead),
                procs,
            }
        };
        if inv == InvariantChecks::EachStep {
            // quiescence: no child or replacement process still running or exiting
            wait_on(h, highpte_kernel::mm::process::PROCESS_EXIT_KEY, || {
                let c = ctl.borrow();
                let live = c
                    .slots
                    .iter()
                    .filter(|sl| matches!(sl.state, PState::Idle | PState::Paused))
                    .count();
                // forked children that paused stay too
                k.nr_processes() <= live + c.children_paused as usize
            });
            let bad = h.enter_kernel("check_invariants", |cx| k.check_invariants(cx));
            if !bad.is_empty() {
                ctl.borrow_mut().checks.push(format!(
                    "invariants after step {s}: {}",
                    bad.iter().take(8).cloned().collect::<Vec<_>>().join("; ")
                ));
            }
        }
        rep.cycles = h.now();
        if let Some(cb) = &on_step {
            cb(&rep);
        }
        let stop = !rep.failures.is_empty() || !ctl.borrow().checks.is_empty();
        steps_out.borrow_mut().push(rep);
        if stop {
            break;
        }
    }
    // end: every process quits (paused ones are killed, children too)
    ctl.borrow_mut().ending = true;
    let paused_children: Vec<u32> = ctl
        .borrow()
        .children
        .iter()
        .filter(|(_, (_, paused))| *paused)
        .map(|(pid, _)| *pid)
        .collect();
    for pid in paused_children {
        h.enter_kernel("kill", |cx| k.kill_task(cx, TaskId(pid), Signal::Sigkill));
    }
    let pids: Vec<(TaskId, PState)> = ctl
        .borrow()
        .slots
        .iter()
        .map(|s| (s.pid, s.state))
        .collect();
    for (i, (pid, st)) in pids.iter().enumerate() {
        match st {
            PState::Paused => h.enter_kernel("kill", |cx| k.kill_task(cx, *pid, Signal::Sigkill)),
            PState::Idle => {
                ctl.borrow_mut().slots[i].cmd = Some(Cmd::Quit);
                h.wake_up_all(WaitQueueKey(PROC_KEY_BASE + u64::from(pid.0)));
            }
            _ => {}
        }
    }
    wait_until(h, || {
        ctl.borrow().slots.iter().all(|s| s.state == PState::Exited)
    });
    // wait for every other process (children) to be gone too
    wait_on(h, highpte_kernel::mm::process::PROCESS_EXIT_KEY, || {
        k.nr_processes() == 0
    });
    // like ipcrm at the end of a benchmark: SysV segments outlive their processes
    h.enter_kernel("ipcrm", |cx| k.shm_remove_all(cx));
    // and files outlive them too: remove them, so that their page cache goes
    for (name, ..) in k.fs_files(h) {
        if let Err(e) = h.enter_kernel("sys_unlink", |cx| k.sys_unlink(cx, &name)) {
            ctl.borrow_mut()
                .checks
                .push(format!("unlink '{name}' at the end failed: {}", e.name()));
        }
    }
    h.enter_kernel("drain pools", |cx| k.pt_drain_all_pools_entry(cx));
    let mut bad = Vec::new();
    if inv == InvariantChecks::EachStep {
        let v = h.enter_kernel("check_invariants", |cx| k.check_invariants(cx));
        if !v.is_empty() {
            bad.push(format!(
                "invariants at the end: {}",
                v.iter().take(8).cloned().collect::<Vec<_>>().join("; ")
            ));
        }
    }
    *end_out.borrow_mut() = Some((k.meminfo(h), bad));
}

/// `/proc` views of every live top-level process and forked child.
fn proc_snapshots<M: PagingMode>(
    k: &highpte_kernel::Kernel<M>,
    h: &TaskHandle<M>,
    ctl: &Rc<RefCell<Ctl>>,
) -> Vec<crate::exact::ProcSnapshot> {
    let live: Vec<(TaskId, String)> = {
        let c = ctl.borrow();
        c.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.state != PState::Exited)
            .map(|(i, s)| (s.pid, format!("p{i}")))
            .chain(
                c.children
                    .iter()
                    .map(|(pid, (l, _))| (TaskId(*pid), l.clone())),
            )
            .collect()
    };
    live.into_iter()
        .filter(|(pid, _)| k.mm_of(*pid).is_some())
        .map(|(pid, label)| crate::exact::ProcSnapshot::take(k, h, pid, label))
        .collect()
}

/// Sleep on the driver's queue until `cond` holds.
fn wait_until<M: PagingMode>(h: &TaskHandle<M>, cond: impl Fn() -> bool) {
    wait_on(h, DRIVER_KEY, cond)
}

/// Sleep on `key` until `cond` holds.
fn wait_on<M: PagingMode>(h: &TaskHandle<M>, key: WaitQueueKey, cond: impl Fn() -> bool) {
    loop {
        let token = h.prepare_to_wait(key);
        if cond() {
            return;
        }
        h.sleep(key, token, "workload driver", "wait_until");
    }
}

/// The body of a top-level process.
fn process_main<M: PagingMode>(
    u: &mut User<'_, M>,
    index: u32,
    seed: u64,
    spec: Rc<WorkloadSpec>,
    ctl: Rc<RefCell<Ctl>>,
) -> i32 {
    let pid = u.pid();
    let mut pc = PCtx {
        index,
        regions: BTreeMap::new(),
        stamps: BTreeMap::new(),
        generation: 0,
        rng: ChaCha8Rng::seed_from_u64(seed ^ (u64::from(index) << 32) ^ 0x9e37_79b9),
        seed,
        files: BTreeMap::new(),
        names: BTreeMap::new(),
        label: format!("p{index}"),
        forks: 0,
    };
    let key = WaitQueueKey(PROC_KEY_BASE + u64::from(pid.0));
    let h = u.handle();
    let code = loop {
        // wait for a command
        let cmd = loop {
            let token = h.prepare_to_wait(key);
            if let Some(c) = ctl
                .borrow_mut()
                .slots
                .get_mut(index as usize)
                .and_then(|s| s.cmd.take())
            {
                break Some(c);
            }
            if u.killed().is_some() {
                break None;
            }
            h.sleep(key, token, "workload: next phase", "process_main");
        };
        let Some(cmd) = cmd else {
            // killed while idle: exit as a sleeping process does on a fatal signal
            fail(u, &pc, &ctl, "idle", "SIGKILL".into());
            ctl.borrow_mut().slots[index as usize].failed = true;
            break 1;
        };
        let Cmd::Phase(pi) = cmd else { break 0 };
        let phase = &spec.phases[pi];
        let end = run_phase(u, &mut pc, &spec, phase, &ctl);
        match end {
            PhaseEnd::Done => set_state(&ctl, index, PState::Idle, h),
            PhaseEnd::Pause => {
                set_state(&ctl, index, PState::Paused, h);
                let sig = u.pause();
                if !ctl.borrow().ending {
                    // killed while paused, before the end of the run: the OOM killer
                    fail(u, &pc, &ctl, "pause", sig.name().to_string());
                    ctl.borrow_mut().slots[index as usize].failed = true;
                    break 1;
                }
                break 0;
            }
            PhaseEnd::Exit => break 0,
            PhaseEnd::Failed => {
                ctl.borrow_mut().slots[index as usize].failed = true;
                break 1;
            }
        }
    };
    set_state(&ctl, index, PState::Exited, h);
    code
}

fn set_state<M: PagingMode>(ctl: &Rc<RefCell<Ctl>>, index: u32, st: PState, h: &TaskHandle<M>) {
    if let Some(s) = ctl.borrow_mut().slots.get_mut(index as usize) {
        s.state = st;
    }
    h.wake_up_all(DRIVER_KEY);
}

/// How a phase ended for a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PhaseEnd {
    Done,
    Pause,
    Exit,
    Failed,
}

pub(crate) fn fail<M: PagingMode>(
    u: &User<'_, M>,
    pc: &PCtx,
    ctl: &Rc<RefCell<Ctl>>,
    call: &str,
    what: String,
) {
    let mi = u.kernel().meminfo(u.handle());
    let mut c = ctl.borrow_mut();
    let step = c.step;
    let processes_done = c.slots.iter().filter(|s| s.state == PState::Paused).count() as u32;
    c.failures.push(Failure {
        processes_done,
        process: pc.index,
        pid: u.pid().0,
        call: call.to_string(),
        errno_or_signal: what,
        low_free_kb: mi.low_free,
        high_free_kb: mi.high_free,
        step,
    });
}

pub(crate) fn check_fail(ctl: &Rc<RefCell<Ctl>>, msg: String) {
    ctl.borrow_mut().checks.push(msg);
}

pub(crate) fn run_phase<M: PagingMode>(
    u: &mut User<'_, M>,
    pc: &mut PCtx,
    spec: &Rc<WorkloadSpec>,
    phase: &Phase,
    ctl: &Rc<RefCell<Ctl>>,
) -> PhaseEnd {
    for _ in 0..phase.repeat.max(1) {
        for op in &phase.ops {
            count_operation(ctl);
            match run_op(u, pc, spec, op, ctl) {
                PhaseEnd::Done => {}
                other => return other,
            }
            if u.killed().is_some() {
                fail(u, pc, ctl, op.kind(), "SIGKILL".into());
                return PhaseEnd::Failed;
            }
        }
    }
    PhaseEnd::Done
}

/// The page range `offset .. offset + size` of region `r` (to its end without a size),
/// clamped to the region; `None` if `offset` is at or past its end (an earlier munmap or
/// mremap shrank it), so that no zero-length call reaches the kernel.
fn range_of(r: &Region, offset: u64, size: Option<u64>) -> Option<(u32, u32)> {
    if offset >= u64::from(r.len) {
        return None;
    }
    Some(range_within(r, offset, size))
}

fn range_within(r: &Region, offset: u64, size: Option<u64>) -> (u32, u32) {
    let off = (offset.min(u64::from(r.len)) as u32) & !0xfff;
    let len = size
        .map(|s| s.min(u64::from(r.len - off)))
        .unwrap_or(u64::from(r.len - off)) as u32;
    (r.addr + off, len.div_ceil(4096) * 4096)
}

fn run_op<M: PagingMode>(
    u: &mut User<'_, M>,
    pc: &mut PCtx,
    spec: &Rc<WorkloadSpec>,
    op: &Op,
    ctl: &Rc<RefCell<Ctl>>,
) -> PhaseEnd {
    macro_rules! region {
        ($name:expr) => {
            match pc.regions.get($name) {
                Some(r) => r.clone(),
                None => {
                    fail(
                        u,
                        pc,
                        ctl,
                        op.kind(),
                        format!("no region named '{}'", $name),
                    );
                    return PhaseEnd::Failed;
                }
            }
        };
    }
    macro_rules! range {
        ($r:expr, $region:expr, $offset:expr, $size:expr) => {
            match range_of(&$r, $offset.0, $size.map(|s| s.0)) {
                Some(x) => x,
                None => {
                    fail(
                        u,
                        pc,
                        ctl,
                        op.kind(),
                        format!(
                            "offset {:#x} is past the end of region '{}' ({:#x} bytes now)",
                            $offset.0, $region, $r.len
                        ),
                    );
                    return PhaseEnd::Failed;
                }
            }
        };
    }
    macro_rules! sys {
        ($e:expr) => {
            match $e {
                Ok(v) => v,
                Err(e) => {
                    fail(u, pc, ctl, op.kind(), e.name().to_string());
                    return PhaseEnd::Failed;
                }
            }
        };
    }
    match op {
        Op::Replay { trace, part } => return replay::run(u, pc, ctl, trace, *part),
        Op::Mmap {
            name,
            size,
            prot,
            shared,
            fixed_at,
            populate,
        } => {
            let mut flags = MAP_ANONYMOUS | if *shared { MAP_SHARED } else { MAP_PRIVATE };
            if fixed_at.is_some() {
                flags |= MAP_FIXED;
            }
            if *populate {
                flags |= MAP_POPULATE;
            }
            let addr = sys!(u.mmap(fixed_at.unwrap_or(0), size.0, prot_bits(*prot), flags));
            // the new mapping holds zero pages, whatever the range held before (MAP_FIXED)
            forget_stamps(pc, addr, (size.0.div_ceil(4096) * 4096) as u32);
            let obj = if *shared {
                let mut c = ctl.borrow_mut();
                c.next_obj += 1;
                Some(c.next_obj)
            } else {
                None
            };
            pc.regions.insert(
                name.clone(),
                Region {
                    addr,
                    len: (size.0.div_ceil(4096) * 4096) as u32,
                    prot: prot_bits(*prot),
                    obj,
                    pgoff: 0,
                    shm: false,
                    file: false,
                    cow: false,
                },
            );
        }
        Op::Munmap {
            region,
            offset,
            size,
        } => {
            let r = region!(region);
            let (a, l) = range!(r, region, offset, size);
            sys!(u.munmap(a, u64::from(l)));
            forget_stamps(pc, a, l);
            if a == r.addr && l >= r.len {
                pc.regions.remove(region);
            } else if a == r.addr {
                let e = pc.regions.get_mut(region).expect("region present");
                e.addr += l;
                e.len -= l;
                e.pgoff += l >> 12;
            } else if u64::from(a) + u64::from(l) >= u64::from(r.addr) + u64::from(r.len) {
                let e = pc.regions.get_mut(region).expect("region present");
                e.len = a - r.addr;
            } else {
                // a hole in the middle: the name keeps naming the whole range, so the tail
                // keeps its offsets; an access to the hole faults as it should
                let e = pc.regions.get_mut(region).expect("region present");
                e.len = r.len;
            }
        }
        Op::Mprotect {
            region,
            prot,
            offset,
            size,
        } => {
            let r = region!(region);
            let (a, l) = range!(r, region, offset, size);
            sys!(u.mprotect(a, u64::from(l), prot_bits(*prot)));
            if a == r.addr && l >= r.len {
                pc.regions.get_mut(region).expect("region present").prot = prot_bits(*prot);
            }
        }
        Op::Mremap {
            region,
            size,
            may_move,
        } => {
            let r = region!(region);
            let new_len = (size.0.div_ceil(4096) * 4096) as u32;
            let na = sys!(u.mremap(
                r.addr,
                u64::from(r.len),
                u64::from(new_len),
                if *may_move { MREMAP_MAYMOVE } else { 0 },
                0
            ));
            move_stamps(pc, r.addr, na, r.len.min(new_len));
            if new_len < r.len {
                forget_stamps(pc, r.addr + new_len, r.len - new_len);
            }
            let e = pc.regions.get_mut(region).expect("region present");
            e.addr = na;
            e.len = new_len;
        }
        Op::Brk { grow } => {
            let cur = u.brk(0);
            let want = (i64::from(cur) + grow.0).clamp(0, i64::from(u32::MAX)) as u32;
            let got = u.brk(want);
            if got != want {
                fail(u, pc, ctl, "brk", "ENOMEM".into());
                return PhaseEnd::Failed;
            }
            if grow.0 < 0 {
                forget_stamps(
                    pc,
                    want.div_ceil(4096) * 4096,
                    cur.div_ceil(4096) * 4096 - want.div_ceil(4096) * 4096,
                );
            }
        }
        Op::Shmget { key, size, create } => {
            sys!(u.shmget(*key, size.0, if *create { IPC_CREAT | 0o600 } else { 0 }));
        }
        Op::Shmat {
            key,
            name,
            readonly,
        } => {
            let id = sys!(u.shmget(*key, 0, 0));
            let addr = sys!(u.shmat(id, 0, if *readonly { SHM_RDONLY } else { 0 }));
            let size = u
                .handle()
                .enter_kernel("shm report", |cx| u.kernel().shm_segments(cx))
                .into_iter()
                .find(|(i, _, _)| *i == id)
                .map(|s| s.1)
                .unwrap_or(0);
            pc.regions.insert(
                name.clone(),
                Region {
                    addr,
                    len: size as u32,
                    prot: PROT_READ | if *readonly { 0 } else { PROT_WRITE },
                    obj: Some(shm_obj_key(id, *key)),
                    pgoff: 0,
                    shm: true,
                    file: false,
                    cow: false,
                },
            );
        }
        Op::Shmdt { region } => {
            let r = region!(region);
            sys!(u.shmdt(r.addr));
            pc.regions.remove(region);
        }
        Op::ShmRmid { key } => {
            let id = sys!(u.shmget(*key, 0, 0));
            sys!(u.shm_rmid(id));
        }
        Op::Touch {
            region,
            pattern,
            write,
            count,
            stamp,
            offset,
            size,
            populate,
        } => {
            let r = region!(region);
            let (a, l) = range!(r, region, offset, size);
            if *populate {
                let res = u.populate_range(a, u64::from(l), *write);
                if let Err(e) = res {
                    let what = match u.killed() {
                        Some(s) => s.name().to_string(),
                        None => e.name().to_string(),
                    };
                    fail(u, pc, ctl, "touch", what);
                    return PhaseEnd::Failed;
                }
                // one user access per pte page: the MMU must see what populate filled
                let step = M::PTE_PAGE_SPAN;
                let mut x = a;
                while x < a + l {
                    if let Err(s) = access(u, pc, ctl, &r, x, *write, *stamp) {
                        fail(u, pc, ctl, "touch", s.name().to_string());
                        return PhaseEnd::Failed;
                    }
                    x = x.saturating_add(step - (x - a) % step);
                    if x == u32::MAX {
                        break;
                    }
                }
                return PhaseEnd::Done;
            }
            let pages = (l / 4096).max(1);
            let n = count.unwrap_or(u64::from(pages));
            let mut next = 0u32;
            for i in 0..n {
                let page = pick_page(pc, *pattern, i, pages, &mut next);
                if let Err(s) = access(u, pc, ctl, &r, a + page * 4096, *write, *stamp) {
                    fail(u, pc, ctl, "touch", s.name().to_string());
                    return PhaseEnd::Failed;
                }
            }
        }
        Op::Fork {
            children,
            child_phase,
        } => {
            let Some(phase) = spec.phases.iter().find(|p| &p.name == child_phase).cloned() else {
                fail(u, pc, ctl, "fork", format!("no phase '{child_phase}'"));
                return PhaseEnd::Failed;
            };
            for _ in 0..*children {
                sys!(fork_child(u, pc, spec, ctl, phase.clone()));
            }
        }
        Op::Wait {} => loop {
            match u.wait() {
                Ok(_) => {}
                Err(e) if e.0 == 10 => break,
                Err(e) => {
                    fail(u, pc, ctl, "wait", e.name().to_string());
                    return PhaseEnd::Failed;
                }
            }
        },
        Op::Pause {} => return PhaseEnd::Pause,
        Op::Exit {} => return PhaseEnd::Exit,
        Op::FileWrite {
            file,
            size,
            offset,
            pattern,
            count,
        } => {
            let file = &file_name(file, pc);
            let f = sys!(files::open_file(u, pc, ctl, file, true));
            let first = (offset.0 / 4096) as u32;
            let pages = size.pages().max(1) as u32;
            let n = count.unwrap_or(u64::from(pages));
            let mut next = 0u32;
            for i in 0..n {
                let idx = first + pick_page(pc, *pattern, i, pages, &mut next);
                sys!(files::write_page(u, pc, ctl, &f, idx, true));
            }
        }
        Op::FileRead {
            file,
            offset,
            size,
            pattern,
            count,
        } => {
            let file = &file_name(file, pc);
            let f = sys!(files::open_file(u, pc, ctl, file, false));
            let end = sys!(files::file_size(u, &f)).div_ceil(4096);
            let first = offset.0 / 4096;
            let pages = match size {
                Some(s) => s.pages(),
                None => end.saturating_sub(first),
            };
            if pages == 0 || first + pages > end {
                fail(
                    u,
                    pc,
                    ctl,
                    "file_read",
                    format!(
                        "pages {first}..{} of file '{file}' are past its end ({end} pages)",
                        first + pages.max(1)
                    ),
                );
                return PhaseEnd::Failed;
            }
            let pages = pages as u32;
            let n = count.unwrap_or(u64::from(pages));
            let mut next = 0u32;
            for i in 0..n {
                let idx = first as u32 + pick_page(pc, *pattern, i, pages, &mut next);
                if !sys!(files::read_page(u, pc, ctl, &f, file, idx, true)) {
                    fail(
                        u,
                        pc,
                        ctl,
                        "file_read",
                        format!("page {idx} of file '{file}' is past its end"),
                    );
                    return PhaseEnd::Failed;
                }
            }
        }
        Op::MmapFile {
            name,
            file,
            offset,
            size,
            prot,
            shared,
            populate,
        } => {
            let file = &file_name(file, pc);
            let f = sys!(files::open_file(u, pc, ctl, file, false));
            let len = match size {
                Some(s) => s.0,
                None => sys!(files::file_size(u, &f)).saturating_sub(offset.0),
            };
            if len == 0 {
                fail(
                    u,
                    pc,
                    ctl,
                    "mmap_file",
                    format!("file '{file}' has no pages from offset {offset}"),
                );
                return PhaseEnd::Failed;
            }
            let mut flags = if *shared { MAP_SHARED } else { MAP_PRIVATE };
            if *populate {
                flags |= MAP_POPULATE;
            }
            let addr = sys!(u.mmap_file(0, len, prot_bits(*prot), flags, f.fd, offset.0));
            let pages = len.div_ceil(4096) as u32;
            pc.regions.insert(
                name.clone(),
                files::file_region(
                    &f,
                    addr,
                    pages,
                    (offset.0 / 4096) as u32,
                    prot_bits(*prot),
                    *shared,
                ),
            );
        }
        Op::Msync { region } => {
            let r = region!(region);
            sys!(u.msync(r.addr, u64::from(r.len), MS_SYNC));
        }
        Op::Fsync { file } => {
            let file = &file_name(file, pc);
            let f = sys!(files::open_file(u, pc, ctl, file, false));
            sys!(u.fsync(f.fd));
        }
        Op::Unlink { file } => {
            let file = &file_name(file, pc);
            sys!(files::unlink_file(u, pc, ctl, file));
        }
        Op::Random { ops, mix, max_size } => {
            return churn::run_random(u, pc, spec, ctl, *ops, mix, max_size.0, true)
        }
        Op::Exact(e) => return crate::exact::run::run_exact(u, pc, spec, e, ctl),
    }
    PhaseEnd::Done
}

/// `fork()` a child of process `pc` that runs `phase` once, then exits; if the phase ends in
/// `pause`, the child stays alive (paused) until the run ends, like the parent.
pub(crate) fn fork_child<M: PagingMode>(
    u: &mut User<'_, M>,
    pc: &mut PCtx,
    spec: &Rc<WorkloadSpec>,
    ctl: &Rc<RefCell<Ctl>>,
    phase: Phase,
) -> Result<TaskId, Errno> {
    let mut child = pc.clone();
    child.rng = ChaCha8Rng::seed_from_u64(pc.rng.random());
    child.label = format!("{}c{}", pc.label, pc.forks);
    child.forks = 0;
    pc.forks += 1;
    let spec2 = spec.clone();
    let ctl2 = ctl.clone();
    let name = child.label.clone();
    ctl.borrow_mut().children_live += 1;
    let r = u.fork(name, false, move |cu| {
        let me = cu.pid().0;
        ctl2.borrow_mut()
            .children
            .insert(me, (child.label.clone(), false));
        let end = run_phase(cu, &mut child, &spec2, &phase, &ctl2);
        let code = match end {
            PhaseEnd::Failed => {
                ctl2.borrow_mut().children_failed += 1;
                1
            }
            PhaseEnd::Pause => {
                {
                    let mut c = ctl2.borrow_mut();
                    c.children_paused += 1;
                    if let Some(e) = c.children.get_mut(&me) {
                        e.1 = true;
                    }
                }
                cu.handle().wake_up_all(DRIVER_KEY);
                let sig = cu.pause();
                ctl2.borrow_mut().children_paused -= 1;
                if ctl2.borrow().ending {
                    0
                } else {
                    fail(cu, &child, &ctl2, "pause", sig.name().to_string());
                    ctl2.borrow_mut().children_failed += 1;
                    1
                }
            }
            PhaseEnd::Done | PhaseEnd::Exit => 0,
        };
        {
            let mut c = ctl2.borrow_mut();
            c.children.remove(&me);
            c.children_live -= 1;
        }
        cu.handle().wake_up_all(DRIVER_KEY);
        code
    });
    if r.is_err() {
        ctl.borrow_mut().children_live -= 1;
    }
    r
}

/// A file name of the workload with `{p}` replaced by the process's index (a forked child
/// shares its parent's).
fn file_name(file: &str, pc: &PCtx) -> String {
    file.replace("{p}", &pc.index.to_string())
}

/// The `i`th page (of `pages`) a pattern visits; `next` carries a strided walk's position.
pub(crate) fn pick_page(
    pc: &mut PCtx,
    pattern: Pattern,
    i: u64,
    pages: u32,
    next: &mut u32,
) -> u32 {
    match pattern {
        Pattern::Sequential => (i % u64::from(pages)) as u32,
        Pattern::Random => pc.rng.random_range(0..pages),
        Pattern::Strided { stride } => {
            let s = (stride.0 / 4096).max(1) as u32;
            let p = *next % pages;
            *next = next.wrapping_add(s);
            if *next >= pages {
                *next = (*next % pages + 1) % pages.max(1);
            }
            p
        }
        Pattern::HotCold {
            hot_fraction,
            hot_weight,
        } => {
            let hot = ((f64::from(pages) * hot_fraction).ceil() as u32).clamp(1, pages);
            if pc.rng.random_bool(hot_weight.clamp(0.0, 1.0)) || hot == pages {
                pc.rng.random_range(0..hot)
            } else {
                pc.rng.random_range(hot..pages)
            }
        }
    }
}

/// One user access to `va` of region `r`: a write leaves a stamp, a read checks it.
pub(crate) fn access<M: PagingMode>(
    u: &mut User<'_, M>,
    pc: &mut PCtx,
    ctl: &Rc<RefCell<Ctl>>,
    r: &Region,
    va: u32,
    write: bool,
    stamp: bool,
) -> Result<(), Signal> {
    let page = va & !0xfff;
    // a private file mapping reads the file until this process writes the page (COW)
    let private_copy = r.cow && (write || pc.stamps.contains_key(&page));
    let shared_key = r
        .obj
        .filter(|_| !private_copy)
        .map(|o| (o, r.pgoff + ((page - r.addr) >> 12)));
    if write {
        pc.generation = pc.generation.wrapping_add(1);
        let v = if stamp {
            stamp_value(pc.seed, u.pid().0, page, pc.generation)
        } else {
            0x5a5a_5a5a
        };
        match (stamp, shared_key) {
            (true, Some(k)) => {
                // recorded before the store: a racing reader may see it at once
                record_shared(ctl, k, v);
                if let Err(s) = u.store_u32(page, v) {
                    unrecord_shared(ctl, k, v);
                    return Err(s);
                }
            }
            (true, None) => {
                u.store_u32(page, v)?;
                pc.stamps.insert(page, v);
            }
            (false, _) => u.store_u32(page, v)?,
        }
    } else {
        let v = u.load_u32(page)?;
        if stamp {
            let ok = match shared_key {
                Some(k) => shared_ok(ctl, k, v),
                None => v == pc.stamps.get(&page).copied().unwrap_or(0),
            };
            if !ok {
                let expected = match shared_key {
                    Some(k) => format!("{:?}", ctl.borrow().shared_stamps.get(&k)),
                    None => format!("{:#010x}", pc.stamps.get(&page).copied().unwrap_or(0)),
                };
                let pte = u.kernel().mm_of(u.pid()).and_then(|mm| {
                    u.handle()
                        .enter_kernel("follow_page", |cx| u.kernel().follow_page(cx, &mm, page))
                });
                check_fail(
                    ctl,
                    format!(
                        "data stamp mismatch: process {} (pid {}) read {:#010x} at {:#010x}, expected {} (seed {}); region {:#010x}+{:#x}{}, pte {:?}",
                        pc.index,
                        u.pid(),
                        v,
                        page,
                        expected,
                        pc.seed,
                        r.addr,
                        r.len,
                        region_kind(r),
                        pte
                    ),
                );
            }
        }
    }
    Ok(())
}

/// What kind of mapping a region is, for messages.
pub(crate) fn region_kind(r: &Region) -> &'static str {
    match (r.shm, r.file, r.cow, r.obj.is_some()) {
        (true, ..) => " shm",
        (_, true, true, _) => " private file",
        (_, true, false, _) => " shared file",
        (_, _, _, true) => " shared anonymous",
        _ => " private",
    }
}

/// Record `v` as written to shared page `k` (before the store: a racing reader may see it at
/// once). The history keeps the last four values.
pub(crate) fn record_shared(ctl: &Rc<RefCell<Ctl>>, k: (u64, u32), v: u32) {
    let mut c = ctl.borrow_mut();
    let h = c.shared_stamps.entry(k).or_default();
    h.push(v);
    if h.len() > 4 {
        h.remove(0);
    }
}

/// Take back a value whose store failed.
pub(crate) fn unrecord_shared(ctl: &Rc<RefCell<Ctl>>, k: (u64, u32), v: u32) {
    if let Some(h) = ctl.borrow_mut().shared_stamps.get_mut(&k) {
        h.retain(|x| *x != v);
    }
}

/// True if `v` may be read from shared page `k`: one of its recent stamps, or zero if it was
/// never written.
pub(crate) fn shared_ok(ctl: &Rc<RefCell<Ctl>>, k: (u64, u32), v: u32) -> bool {
    match ctl.borrow().shared_stamps.get(&k) {
        Some(h) if !h.is_empty() => h.contains(&v),
        _ => v == 0,
    }
}

pub(crate) fn forget_stamps(pc: &mut PCtx, addr: u32, len: u32) {
    let end = addr as u64 + len as u64;
    let keys: Vec<u32> = pc
        .stamps
        .range(addr..)
        .take_while(|(k, _)| (**k as u64) < end)
        .map(|(k, _)| *k)
        .collect();
    for k in keys {
        pc.stamps.remove(&k);
    }
}

pub(crate) fn move_stamps(pc: &mut PCtx, from: u32, to: u32, len: u32) {
    if from == to {
        return;
    }
    let end = from as u64 + len as u64;
    let moved: Vec<(u32, u32)> = pc
        .stamps
        .range(from..)
        .take_while(|(k, _)| (**k as u64) < end)
        .map(|(k, v)| (*k, *v))
        .collect();
    for (k, _) in &moved {
        pc.stamps.remove(k);
    }
    for (k, v) in moved {
        pc.stamps.insert(k - from + to, v);
    }
}

/// The identity of a SysV segment for stamp bookkeeping: its id and key (bit 63 clear; shared
/// anonymous objects have bit 63 set).
pub(crate) fn shm_obj_key(id: u32, key: i32) -> u64 {
    (u64::from(id) << 32) | u64::from(key as u32)
}

/// Errors a workload's own op may legitimately meet (not bugs): out of memory.
pub(crate) fn is_resource_error(e: Errno) -> bool {
    e == Errno::ENOMEM || e == Errno::EAGAIN || e == Errno::ENOSPC
}
