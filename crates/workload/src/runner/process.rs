//! The body of a process: waiting for phases, running their ops, forking children, and
//! recording failures.

use super::ops::run_op;
use super::report::Failure;
use super::{count_operation, Cmd, Ctl, PCtx, PState, DRIVER_KEY, PROC_KEY_BASE};
use crate::spec::{Phase, WorkloadSpec};
use highpte_arch::PagingMode;
use highpte_kernel::platform::prelude::*;
use highpte_kernel::{Errno, TaskId, WaitQueueKey};
use highpte_machine::{TaskHandle, User};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

/// The body of a top-level process.
pub(super) fn process_main<M: PagingMode>(
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

pub(super) fn set_state<M: PagingMode>(
    ctl: &Rc<RefCell<Ctl>>,
    index: u32,
    st: PState,
    h: &TaskHandle<M>,
) {
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
    let children_done = c.children_paused;
    c.failures.push(Failure {
        processes_done,
        children_done,
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
        for (j, op) in phase.ops.iter().enumerate() {
            count_operation(ctl);
            match run_op(u, pc, spec, op, phase.expect_of(j), ctl) {
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

/// Wait-queue keys of parents waiting for a child's phase to end: this plus the child's pid.
const CHILD_DONE_KEY_BASE: u64 = 0x646f_6e65_0000_0000;

/// Child `pid`'s phase has ended (it paused, or is about to exit): wake a parent waiting
/// for it.
/// Only a waited-for child wakes anyone: a wake-up is a simulated event, and runs without
/// `wait_done` must simulate exactly what they did before it existed.
fn child_done<M: PagingMode>(cu: &User<'_, M>, ctl: &Rc<RefCell<Ctl>>, pid: u32) {
    let waited = {
        let mut c = ctl.borrow_mut();
        c.children_done_pids.insert(pid);
        c.children_waited.contains(&pid)
    };
    if waited {
        cu.handle()
            .wake_up_all(WaitQueueKey(CHILD_DONE_KEY_BASE + u64::from(pid)));
    }
}

/// Sleep until child `pid`'s phase has ended (a parent blocked reading a pipe the child
/// writes when done).
pub(crate) fn wait_child_done<M: PagingMode>(u: &User<'_, M>, ctl: &Rc<RefCell<Ctl>>, pid: TaskId) {
    let key = WaitQueueKey(CHILD_DONE_KEY_BASE + u64::from(pid.0));
    ctl.borrow_mut().children_waited.insert(pid.0);
    u.handle().enter_kernel("read", |cx| loop {
        let token = cx.p().prepare_to_wait(key);
        if ctl.borrow().children_done_pids.contains(&pid.0) {
            break;
        }
        cx.sleep_on(key, token, "pipe_read", "pipe_read");
    });
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
                child_done(cu, &ctl2, me);
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
        child_done(cu, &ctl2, me);
        cu.handle().wake_up_all(DRIVER_KEY);
        code
    });
    if r.is_err() {
        ctl.borrow_mut().children_live -= 1;
    }
    r
}
