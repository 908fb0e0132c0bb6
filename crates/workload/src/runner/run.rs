//! One run: boot the machine, run the driver on it, and gather the report.

use super::driver::driver;
use super::replay::ReplayTotals;
use super::report::{RunReport, StepReport};
use super::{spec_config, Ctl, EndSlot, PState, RunError, RunOptions};
use crate::spec::{Op, WorkloadSpec};
use highpte_arch::PagingMode;
use highpte_machine::{RunOutcome, System};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Instant;

pub(super) fn run_in<M: PagingMode>(
    spec: &WorkloadSpec,
    opts: &RunOptions,
) -> Result<RunReport, RunError> {
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
    let ctl = new_ctl(opts, trace_folds, trace_spools);
    let steps_out: Rc<RefCell<Vec<StepReport>>> = Rc::new(RefCell::new(Vec::new()));
    let end_out: EndSlot = Rc::new(RefCell::new(None));
    spawn_driver(&mut sys, spec, opts, &ctl, &steps_out, &end_out, t0)?;
    let outcome = sys.run();
    let deadlocked = matches!(outcome, RunOutcome::Deadlock(_));
    let pkmap_holders = if deadlocked {
        pkmap_holders(&mut sys)
    } else {
        Vec::new()
    };
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
        checks.push(leak_message(k, &end_mi, boot_free));
    }
    let steps = steps_out.borrow().clone();
    let c = ctl.borrow();
    let first_failure = c.failures.first().cloned();
    let failed_top = c.slots.iter().filter(|s| s.failed).count() as u32;
    let machine = machine_counters(&sys, cfg.cpus);
    Ok(RunReport {
        workload: spec.name.clone(),
        config: cfg.variant,
        kernel: cfg.kernel,
        paging: M::NAME,
        ram_bytes: cfg.ram_bytes,
        cpus: cfg.cpus,
        preempt: cfg.preempt,
        strategy: k.options().strategy,
        pt_alloc: k.options().pt_alloc,
        reclaim: k.options().reclaim,
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
pub(super) fn plan_traces(
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
pub(super) fn deadlock_step<M: PagingMode>(
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
        // nor the machine's TLBs from inside: a deadlocked run reports its replay per run
        replay: None,
    })
}

/// The run's state shared by the driver and the processes, empty.
fn new_ctl(
    opts: &RunOptions,
    trace_folds: BTreeMap<String, Rc<crate::trace::Fold>>,
    trace_spools: BTreeMap<String, Rc<crate::trace::Spool>>,
) -> Rc<RefCell<Ctl>> {
    Rc::new(RefCell::new(Ctl {
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
        children_done_pids: Default::default(),
        children_waited: Default::default(),
        ending: false,
        on_operation: opts.on_operation.clone(),
        replay: ReplayTotals::default(),
        trace_folds,
        trace_spools,
    }))
}

/// After a deadlock: the persistent kmaps each task held (task, entry, page, where taken).
fn pkmap_holders<M: PagingMode>(sys: &mut System<M>) -> Vec<(u32, u32, u64, String)> {
    let mut pkmap_holders = Vec::new();
    // SAFETY: the machine stopped at the deadlock; no simulated task runs any more.
    let held = unsafe { sys.kernel().pkmap_holders_stopped() };
    for (task, hs) in held {
        for hh in hs {
            pkmap_holders.push((task.0, hh.nr, hh.pfn.0, hh.place.to_string()));
        }
    }
    pkmap_holders
}

/// What a leak check failure says: free memory after every process exited against boot, and
/// who still holds low memory.
fn leak_message<M: PagingMode>(
    k: &highpte_kernel::Kernel<M>,
    end_mi: &highpte_kernel::Meminfo,
    boot_free: u64,
) -> String {
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
    format!(
        "leak: MemFree after every process exited is {} kB, {} kB at boot ({} pages {}; low memory still held: {}; kernel objects {} bytes)",
        end_mi.mem_free,
        boot_free,
        (boot_free as i64 - end_mi.mem_free as i64).unsigned_abs() / 4,
        if end_mi.mem_free < boot_free { "lost" } else { "gained" },
        if owners.is_empty() { "none".to_string() } else { owners.join(", ") },
        k.kobj_bytes()
    )
}

/// The machine's counters: scheduling, IPIs, and the TLBs of `cpus` CPUs summed.
fn machine_counters<M: PagingMode>(sys: &System<M>, cpus: u32) -> Vec<(String, u64)> {
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
    for cpu in 0..cpus {
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
    machine
}

/// Spawns the driver thread on CPU 0: it runs the steps of `spec` and leaves their reports in
/// `steps_out`, the end of the run in `end_out`.
fn spawn_driver<M: PagingMode>(
    sys: &mut System<M>,
    spec: &WorkloadSpec,
    opts: &RunOptions,
    ctl: &Rc<RefCell<Ctl>>,
    steps_out: &Rc<RefCell<Vec<StepReport>>>,
    end_out: &EndSlot,
    t0: Instant,
) -> Result<(), RunError> {
    let kc = sys.kernel_cell();
    let ctl = ctl.clone();
    let steps_out = steps_out.clone();
    let end_out = end_out.clone();
    let spec = Rc::new(spec.clone());
    let on_step = opts.on_step.clone();
    let inv = opts.invariants;
    sys.machine
        .spawn("driver", Some(0), move |h| {
            driver(h, kc, spec, ctl, steps_out, end_out, on_step, inv, t0);
            0
        })
        .map_err(|e| RunError(e.to_string()))?;
    Ok(())
}
