//! The driver: a kernel thread that starts the processes of each ramp step, runs the phases
//! as barriers, takes the step reports and ends the run.

use super::process::process_main;
use super::report::{Failure, StepReport};
use super::{
    Cmd, Ctl, EndSlot, InvariantChecks, PState, Slot, StepCallback, DRIVER_KEY, PROC_KEY_BASE,
};
use crate::spec::{RunBy, WorkloadSpec};
use highpte_arch::PagingMode;
use highpte_kernel::platform::prelude::*;
use highpte_kernel::{Kernel, Signal, TaskId, WaitQueueKey};
use highpte_machine::system::{run_new_process, KernelCell};
use highpte_machine::TaskHandle;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

#[allow(clippy::too_many_arguments)]
pub(super) fn driver<M: PagingMode>(
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
            let Some(pid) = start_process(h, &kc, &spec, &ctl, started) else {
                break;
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
            run_phase_as_barrier(h, &ctl, pi, phase.run_by, s, first_new);
        }
        let mut rep = step_report(k, h, &spec, &ctl, s, started, t0);
        if inv == InvariantChecks::EachStep {
            check_step_invariants(k, h, &ctl, s);
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
    end_run(k, h, &ctl);
    let bad = final_invariants(k, h, inv);
    *end_out.borrow_mut() = Some((k.meminfo(h), bad));
}

/// Spawns top-level process `index`; `None` (and a check failure) if the machine cannot.
fn start_process<M: PagingMode>(
    h: &TaskHandle<M>,
    kc: &KernelCell<M>,
    spec: &Rc<WorkloadSpec>,
    ctl: &Rc<RefCell<Ctl>>,
    index: u32,
) -> Option<TaskId> {
    let kc2 = kc.clone();
    let ctl2 = ctl.clone();
    let spec2 = spec.clone();
    let seed = spec.machine.seed;
    match h.spawn(format!("p{index}"), None, move |h2| {
        let ctl3 = ctl2.clone();
        let kc3 = kc2.clone();
        let code = run_new_process(h2, kc2, move |u| process_main(u, index, seed, spec2, ctl2));
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
            let children_done = c.children_paused;
            c.failures.push(Failure {
                processes_done,
                children_done,
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
        Ok(p) => Some(p),
        Err(e) => {
            ctl.borrow_mut()
                .checks
                .push(format!("could not start process {index}: {e}"));
            None
        }
    }
}

/// Hands phase `pi` to the idle processes that run it (as `run_by` says, in step `s` whose
/// first new process is `first_new`), and waits until each of them is done with it.
fn run_phase_as_barrier<M: PagingMode>(
    h: &TaskHandle<M>,
    ctl: &Rc<RefCell<Ctl>>,
    pi: usize,
    run_by: RunBy,
    s: usize,
    first_new: u32,
) {
    let parts: Vec<usize> = {
        let c = ctl.borrow();
        c.slots
            .iter()
            .enumerate()
            .filter(|(i, sl)| {
                sl.state == PState::Idle
                    && match run_by {
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

/// The report of step `s`, taken when every process is paused or done, children included.
#[allow(clippy::too_many_arguments)]
fn step_report<M: PagingMode>(
    k: &Kernel<M>,
    h: &TaskHandle<M>,
    spec: &WorkloadSpec,
    ctl: &Rc<RefCell<Ctl>>,
    s: usize,
    started: u32,
    t0: Instant,
) -> StepReport {
    // the step report, when every process is paused or done, children included
    wait_until(h, || {
        let c = ctl.borrow();
        c.children_live == c.children_paused
    });
    // only for workloads of the exact layer: reading every mm's VMAs takes their
    // mmap_sem, which would change the timing of the workloads that never asked
    let procs = if spec.uses_exact_layer() {
        proc_snapshots(k, h, ctl)
    } else {
        Vec::new()
    };
    let mi = k.meminfo(h);
    let owners: Vec<(String, u64)> = k
        .lowmem_by_owner()
        .into_iter()
        .map(|(o, n)| (o.name().to_string(), n * 4))
        .collect();
    {
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
            replay: (c.replay.started > 0).then(|| step_replay(k, h, &c.replay)),
        }
    }
}

/// The replay figures so far (`replay` ops' totals, the kernel's fault and kmap counters, the
/// machine's TLB misses and clocks).
fn step_replay<M: PagingMode>(
    k: &Kernel<M>,
    h: &TaskHandle<M>,
    totals: &super::ReplayTotals,
) -> super::StepReplay {
    use highpte_kernel::Counter as C;
    let n = |c| k.counters().get(c);
    let (tlb, clocks) = h.machine_totals();
    super::StepReplay {
        totals: totals.clone(),
        faults: [
            n(C::Faults),
            n(C::FaultsAnon),
            n(C::FaultsCow),
            n(C::FaultsShared),
            n(C::FaultsFile),
            n(C::FaultsMajor),
        ],
        kmap_atomic: n(C::KmapAtomic),
        tlb_misses: tlb.misses,
        cycles_all_cpus: clocks,
    }
}

/// The kernel's invariants after step `s`, once no child or replacement process is still
/// running or exiting.
fn check_step_invariants<M: PagingMode>(
    k: &Kernel<M>,
    h: &TaskHandle<M>,
    ctl: &Rc<RefCell<Ctl>>,
    s: usize,
) {
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

/// The end of the run: every process quits (paused ones are killed, children too), SysV
/// segments and files are removed, and the page-table pools drained.
fn end_run<M: PagingMode>(k: &Kernel<M>, h: &TaskHandle<M>, ctl: &Rc<RefCell<Ctl>>) {
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
}

/// The kernel's invariants at the end of the run (with [`InvariantChecks::EachStep`]).
fn final_invariants<M: PagingMode>(
    k: &Kernel<M>,
    h: &TaskHandle<M>,
    inv: InvariantChecks,
) -> Vec<String> {
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
    bad
}

/// `/proc` views of every live top-level process and forked child.
pub(super) fn proc_snapshots<M: PagingMode>(
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
pub(super) fn wait_until<M: PagingMode>(h: &TaskHandle<M>, cond: impl Fn() -> bool) {
    wait_on(h, DRIVER_KEY, cond)
}

/// Sleep on `key` until `cond` holds.
pub(super) fn wait_on<M: PagingMode>(
    h: &TaskHandle<M>,
    key: WaitQueueKey,
    cond: impl Fn() -> bool,
) {
    loop {
        let token = h.prepare_to_wait(key);
        if cond() {
            return;
        }
        h.sleep(key, token, "workload driver", "wait_until");
    }
}
