//! Tasks: stackful coroutines, their bookkeeping, and the [`TaskHandle`] a task's body uses to
//! reach the machine.
//!
//! # Soundness of the handle
//! The whole simulation runs on one host thread. A [`TaskHandle`] holds a raw pointer to the
//! heap-allocated machine state and one to its coroutine's `Yielder`. The scheduler
//! ([`crate::machine::Machine::run`]) only touches the machine state while no coroutine runs,
//! and never holds a reference to it across `resume`; a task's platform methods create
//! short-lived `&mut` references to the state that end before the task suspends or calls back
//! into code outside the machine (an [`crate::machine::Os`] hook). The coroutine being resumed
//! is moved out of the task table first, so a task that spawns another (growing the table)
//! never moves a running coroutine. The handle is neither `Clone`, `Send` nor `Sync`, and the
//! body only ever borrows it, so it cannot outlive its coroutine; the machine state outlives
//! every coroutine because suspended ones are leaked, never resumed, once the machine is
//! dropped.

use crate::cpu::Cpu;
use crate::machine::{MachineState, Os};
use crate::mmu::{self, Access, PageFault};
use crate::phys::{PhysMem, PhysMemError};
use crate::stack::TaskStack;
use corosensei::{Coroutine, Yielder};
use highpte_arch::{PagingMode, VirtAddr};
use highpte_kernel::platform::prelude::*;
use highpte_kernel::{BugReport, TaskId, WaitQueueKey};
use std::fmt;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::rc::Rc;

/// What the scheduler passes to a task it resumes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resume {
    /// Carry on: the task was already the CPU's current task.
    Continue,
    /// The CPU switched to this task from `prev` (the `switch_mm` hook runs first).
    SwitchedIn {
        /// The task that ran last on this CPU.
        prev: Option<TaskId>,
    },
}

/// Why a task handed control back to the scheduler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Yield {
    /// Its clock ran ahead of the other CPUs: let them catch up; the task stays current.
    Interleave,
    /// One spin-loop iteration (`cpu_relax`); the task stays current.
    Spin,
    /// Preempted: back to the run queue.
    Preempt(PreemptKind),
    /// `schedule()`/`cond_resched()`: back to the run queue, voluntarily.
    Schedule,
    /// Asleep on a wait queue (already queued).
    Sleep,
    /// A bug was reported, or the host failed the machine (a swap-file I/O error): stop the
    /// run.
    Stop,
}

/// Where a task was preempted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PreemptKind {
    /// Kernel preemption at `preempt_enable` (or unlock) with `CONFIG_PREEMPT`.
    Kernel,
    /// On the way back to user mode.
    User,
}

/// The coroutine type of a task.
pub(crate) type TaskCoroutine = Coroutine<Resume, Yield, i32, TaskStack>;
/// The yielder a task suspends through.
pub(crate) type TaskYielder = Yielder<Resume, Yield>;

/// A task's scheduling state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskState {
    /// Waiting in a run queue.
    Runnable,
    /// The current task of a CPU (running, or suspended mid-run while other CPUs catch up).
    Running {
        /// The CPU.
        cpu: u32,
    },
    /// Asleep on a wait queue.
    Sleeping {
        /// The queue.
        key: WaitQueueKey,
        /// What the queue is for.
        what: &'static str,
        /// Where the task went to sleep.
        place: &'static str,
    },
    /// Finished with an exit code.
    Exited {
        /// The body's return value.
        code: i32,
    },
}

/// A lock a task holds (from `note_lock`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeldLock {
    /// The lock's name.
    pub name: &'static str,
    /// The lock's identity.
    pub id: u64,
}

impl fmt::Display for HeldLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{}' ({:#x})", self.name, self.id)
    }
}

/// The machine's record of one task.
#[derive(Clone, Debug)]
pub(crate) struct TaskInfo {
    pub name: String,
    pub state: TaskState,
    pub preempt_count: u32,
    pub held: Vec<HeldLock>,
    pub where_label: &'static str,
    /// The CPU it last ran on (or was queued on, before it first ran).
    pub last_cpu: u32,
    pub has_run: bool,
    /// A daemon (a kernel thread such as kswapd): a run ends when only daemons are left
    /// and they are all asleep.
    pub daemon: bool,
    /// A timeline was told this task spins (reset when it takes the lock).
    pub timeline_spin: bool,
}

impl TaskInfo {
    pub fn new(name: String, cpu: u32) -> Self {
        Self {
            name,
            state: TaskState::Runnable,
            preempt_count: 0,
            held: Vec::new(),
            where_label: "start",
            last_cpu: cpu,
            has_run: false,
            daemon: false,
            timeline_spin: false,
        }
    }
}

/// Why a task could not be created.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The host refused the coroutine stack (address space or mapping-count limits).
    #[error("cannot allocate a {size}-byte stack for task '{name}': {source} (lower the task count or the stack size)")]
    Stack {
        /// The task's name.
        name: String,
        /// The stack size asked for.
        size: usize,
        /// The host's error.
        source: std::io::Error,
    },
    /// Task ids are exhausted.
    #[error("too many tasks: task ids are 32-bit")]
    TooManyTasks,
}

/// The running task's view of the machine: implements [`highpte_kernel::Platform`], plus what
/// the user-mode layer needs ([`TaskHandle::return_to_user`], user-mode memory access) and
/// task creation.
///
/// A body receives `&TaskHandle`; the handle cannot be cloned or sent elsewhere (see the module
/// docs for why that makes the raw pointers inside it sound).
pub struct TaskHandle<M: PagingMode> {
    state: NonNull<MachineState<M>>,
    yielder: NonNull<TaskYielder>,
    id: TaskId,
    /// Raw pointers already make the handle `!Send + !Sync`; this documents it.
    _not_send: PhantomData<*mut ()>,
}

impl<M: PagingMode> TaskHandle<M> {
    /// Build the handle of task `id` on its coroutine.
    pub(crate) fn new(state: NonNull<MachineState<M>>, yielder: &TaskYielder, id: TaskId) -> Self {
        Self {
            state,
            yielder: NonNull::from(yielder),
            id,
            _not_send: PhantomData,
        }
    }

    /// The machine state, for the duration of one platform call.
    ///
    /// Callers must drop the reference before suspending, before calling out of the machine
    /// (Os hooks, formatting user values) and before calling another method that takes it.
    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    pub(crate) fn st(&self) -> &mut MachineState<M> {
        // SAFETY: one host thread; the scheduler holds no reference to the state while this
        // task runs, and every caller drops this reference before suspending or re-entering
        // (see the module docs). The state is heap-allocated and outlives the coroutine.
        unsafe { &mut *self.state.as_ptr() }
    }

    /// Suspend the task with `why`; when resumed after a context switch, run the `switch_mm`
    /// hook before returning to the caller.
    pub(crate) fn suspend(&self, why: Yield) {
        // SAFETY: the yielder lives on this coroutine's stack for as long as the coroutine
        // runs, and the handle never leaves the coroutine (module docs).
        let yielder = unsafe { self.yielder.as_ref() };
        if let Resume::SwitchedIn { prev } = yielder.suspend(why) {
            self.switched_in(prev);
        }
    }

    /// Run the OS's `switch_mm` hook for this task, with preemption disabled (as in Linux's
    /// `context_switch`).
    pub(crate) fn switched_in(&self, prev: Option<TaskId>) {
        let os = self.os();
        if let Some(os) = os {
            self.st().tasks[self.id.0 as usize].preempt_count += 1;
            os.switch_mm(self, prev, self.id);
            self.st().tasks[self.id.0 as usize].preempt_count -= 1;
        }
    }

    /// The OS hooks, cloned out so no state reference is live while they run.
    pub(crate) fn os(&self) -> Option<Rc<dyn Os<M>>> {
        self.st().os.clone()
    }

    /// This task's id (also [`highpte_kernel::CpuInfo::task`]).
    pub fn id(&self) -> TaskId {
        self.id
    }

    /// The TLB statistics of every CPU, summed, and the CPUs' clocks, summed: what a report
    /// taken from inside the machine (a workload's step report) reads about the whole
    /// machine so far.
    pub fn machine_totals(&self) -> (crate::tlb::TlbStats, u64) {
        let st = self.st();
        let mut t = crate::tlb::TlbStats::default();
        let mut clocks = 0;
        for c in &st.cpus {
            let s = c.tlb.stats();
            t.hits += s.hits;
            t.misses += s.misses;
            t.invlpgs += s.invlpgs;
            t.flushes_nonglobal += s.flushes_nonglobal;
            t.flushes_all += s.flushes_all;
            t.evictions += s.evictions;
            clocks += c.clock;
        }
        (t, clocks)
    }

    /// This task's name.
    pub fn name(&self) -> String {
        self.st().tasks[self.id.0 as usize].name.clone()
    }

    /// Create a task (fork's new thread of control, a kernel thread) from inside a task. It is
    /// queued on `cpu_hint` (modulo the CPU count) or, with `None`, on the least-loaded CPU.
    pub fn spawn(
        &self,
        name: impl Into<String>,
        cpu_hint: Option<u32>,
        body: impl FnOnce(&TaskHandle<M>) -> i32 + 'static,
    ) -> Result<TaskId, SpawnError> {
        let st = self.st();
        let now = st.cpus[st.cur_cpu].clock;
        st.spawn(name.into(), cpu_hint, Some(now), Box::new(body))
    }

    /// Install (or replace) the OS hooks from inside a task (a kernel's boot task does this).
    pub fn set_os(&self, os: Rc<dyn Os<M>>) {
        self.st().os = Some(os);
    }

    /// Record a user-visible event (a syscall result, a data check) in the event hash.
    pub fn record_user_event(&self, value: u64) {
        let st = self.st();
        st.events.record(crate::events::Event::User {
            task: self.id,
            value,
        });
    }

    /// The return-to-user path, called by the user-mode layer after every system call and
    /// fault and periodically while user code runs: checks that the kernel left no lock held
    /// and preempt_count at zero (a bug report otherwise), then reschedules if a reschedule is
    /// due (in every preemption configuration).
    pub fn return_to_user(&self) {
        let st = self.st();
        let t = &st.tasks[self.id.0 as usize];
        if t.preempt_count != 0 || !t.held.is_empty() {
            let msg = format!(
                "BUG: returning to user space with preempt_count {} holding [{}]: task {} '{}' at {}",
                t.preempt_count,
                crate::deadlock::list_locks(&t.held),
                self.id,
                t.name,
                t.where_label
            );
            self.bug(BugReport {
                kind: "preempt count leak",
                message: msg,
            });
        }
        st.progress += 1;
        let c = st.cur_cpu;
        st.cpus[c].spinning = false;
        if st.resched_due(c) {
            self.suspend(Yield::Preempt(PreemptKind::User));
        }
    }

    /// Translate a user (CPL 3) access through this CPU's MMU without charging it: returns
    /// the translation and its cost in cycles.
    #[inline(always)]
    fn user_translate_uncharged(
        &self,
        va: VirtAddr,
        access: Access,
    ) -> (Result<u64, PageFault>, u64) {
        let st = self.st();
        let c = st.cur_cpu;
        let cpu = &mut st.cpus[c];
        let tr = if cpu.regs.paging {
            mmu::translate_in::<M>(&st.phys, &cpu.regs, &mut cpu.tlb, va, access, true)
        } else {
            Ok(mmu::Translation {
                pa: va.as_u64(),
                tlb_hit: false,
                levels_walked: 0,
            })
        };
        let walk = tr.map_or(0, |t| u64::from(t.levels_walked));
        let cost = st.cost.mem_access + st.cost.tlb_miss_per_level * walk;
        (tr.map(|t| t.pa), cost)
    }

    /// Translate a user (CPL 3) access through this CPU's MMU, charging the access and any
    /// page walk. A fault is returned for the caller's page-fault path to handle.
    pub fn user_translate(&self, va: VirtAddr, access: Access) -> Result<u64, PageFault> {
        let (tr, cost) = self.user_translate_uncharged(va, access);
        self.advance(cost);
        tr
    }

    /// A user-mode access of one value: translate `va` for `access`, run `op` on the physical
    /// address, then charge. The access completes before its cycles are charged (charging may
    /// let other CPUs run; the access must use the translation it was checked with).
    ///
    /// A TLB hit that needs no further work takes the fast path ([`mmu::translate_fast`]):
    /// same result, same statistics and same cycles as the full translation, with less host
    /// work. Everything else (misses, clean entries written, faults, paging off) takes
    /// [`TaskHandle::user_access_slow`].
    #[inline(always)]
    fn user_access<T>(
        &self,
        va: VirtAddr,
        access: Access,
        op: impl FnOnce(&PhysMem, u64) -> Result<T, PhysMemError>,
    ) -> Result<T, PageFault> {
        let st = self.st();
        let cpu = &mut st.cpus[st.cur_cpu];
        if let Some(pa) = mmu::translate_fast(&cpu.regs, &mut cpu.tlb, va, access, true) {
            return match op(&st.phys, pa) {
                Ok(v) => {
                    // advance(mem_access), on the CPU already at hand
                    if charge(cpu, &mut st.progress, st.yield_at, st.cost.mem_access) {
                        self.time_passed();
                    }
                    Ok(v)
                }
                Err(e) => self.machine_check(e, pa),
            };
        }
        self.user_access_slow(va, access, op)
    }

    /// The full translation of [`TaskHandle::user_access`], kept out of line so the fast path
    /// stays small.
    #[inline(never)]
    fn user_access_slow<T>(
        &self,
        va: VirtAddr,
        access: Access,
        op: impl FnOnce(&PhysMem, u64) -> Result<T, PhysMemError>,
    ) -> Result<T, PageFault> {
        let (tr, cost) = self.user_translate_uncharged(va, access);
        let r = tr.map(|pa| {
            let r = op(&self.st().phys, pa);
            self.phys_ok(r, pa)
        });
        self.advance(cost);
        r
    }

    /// A user-mode 4-byte read.
    #[inline(always)]
    pub fn user_read_u32(&self, va: VirtAddr) -> Result<u32, PageFault> {
        self.user_access(va, Access::Read, |m, pa| m.read_u32(pa))
    }

    /// A user-mode 8-byte read.
    #[inline(always)]
    pub fn user_read_u64(&self, va: VirtAddr) -> Result<u64, PageFault> {
        self.user_access(va, Access::Read, |m, pa| m.read_u64(pa))
    }

    /// A user-mode 4-byte write.
    #[inline(always)]
    pub fn user_write_u32(&self, va: VirtAddr, v: u32) -> Result<(), PageFault> {
        self.user_access(va, Access::Write, |m, pa| m.write_u32(pa, v))
    }

    /// A user-mode 8-byte write.
    #[inline(always)]
    pub fn user_write_u64(&self, va: VirtAddr, v: u64) -> Result<(), PageFault> {
        self.user_access(va, Access::Write, |m, pa| m.write_u64(pa, v))
    }

    /// Unwrap a physical-memory result; an access beyond RAM through valid page tables is a
    /// machine check, reported as a bug.
    #[inline(always)]
    pub(crate) fn phys_ok<T>(&self, r: Result<T, crate::phys::PhysMemError>, pa: u64) -> T {
        match r {
            Ok(v) => v,
            Err(e) => self.machine_check(e, pa),
        }
    }

    /// The slow path of [`TaskHandle::phys_ok`].
    #[cold]
    #[inline(never)]
    fn machine_check(&self, e: crate::phys::PhysMemError, pa: u64) -> ! {
        let msg = format!(
            "machine check: physical address {pa:#x}: {e} ({})",
            self.who()
        );
        self.bug(BugReport {
            kind: "machine check",
            message: msg,
        })
    }

    /// "task N 'name' on cpu C at <where>" for reports.
    pub(crate) fn who(&self) -> String {
        let st = self.st();
        let t = &st.tasks[self.id.0 as usize];
        format!(
            "task {} '{}' on cpu {} at {}",
            self.id, t.name, st.cur_cpu, t.where_label
        )
    }

    /// Charge `cycles` to this CPU. The hot path of every charging platform call: it also
    /// marks progress (for the deadlock detector) and, when the clock passes the next tick or
    /// runs a quantum ahead of the other CPUs, takes the slow path.
    #[inline(always)]
    pub(crate) fn advance(&self, cycles: u64) {
        let st = self.st();
        let cpu = &mut st.cpus[st.cur_cpu];
        if charge(cpu, &mut st.progress, st.yield_at, cycles) {
            self.time_passed();
        }
    }

    /// The slow path of [`TaskHandle::advance`]: take due ticks and let the other CPUs catch
    /// up if this one ran a quantum ahead.
    #[cold]
    fn time_passed(&self) {
        let st = self.st();
        let c = st.cur_cpu;
        st.process_ticks(c);
        if st.cpus[c].clock >= st.interleave_at {
            self.suspend(Yield::Interleave);
        } else {
            st.yield_at = st.interleave_at.min(st.cpus[c].next_tick);
        }
    }
}

/// The body of [`TaskHandle::advance`]: charge `cycles` to `cpu` (the current CPU) and mark
/// progress; true when the clock reached `yield_at` and the slow path is due.
#[inline(always)]
fn charge(cpu: &mut Cpu, progress: &mut u64, yield_at: u64, cycles: u64) -> bool {
    cpu.clock += cycles;
    cpu.spinning = false;
    *progress += 1;
    cpu.clock >= yield_at
}

/// Build the coroutine of task `id`: run the `switch_mm` hook, the body, then the exit checks
/// and hook.
pub(crate) fn make_coroutine<M: PagingMode>(
    state: NonNull<MachineState<M>>,
    id: TaskId,
    stack: TaskStack,
    body: crate::machine::TaskBody<M>,
) -> TaskCoroutine {
    Coroutine::with_stack(stack, move |yielder: &TaskYielder, first: Resume| {
        let h = TaskHandle::new(state, yielder, id);
        if let Resume::SwitchedIn { prev } = first {
            h.switched_in(prev);
        }
        let code = body(&h);
        h.exit_checks(code);
        code
    })
}

impl<M: PagingMode> TaskHandle<M> {
    /// At exit: a task must leave no lock held and preempt_count zero; then the exit hook.
    fn exit_checks(&self, code: i32) {
        let st = self.st();
        let t = &st.tasks[self.id.0 as usize];
        if t.preempt_count != 0 || !t.held.is_empty() {
            let msg = format!(
                "BUG: task {} '{}' exited (code {code}) with preempt_count {} holding [{}] at {}",
                self.id,
                t.name,
                t.preempt_count,
                crate::deadlock::list_locks(&t.held),
                t.where_label
            );
            self.bug(BugReport {
                kind: "exit while atomic",
                message: msg,
            });
        }
        if let Some(os) = self.os() {
            os.task_exit(self, self.id, code);
        }
    }
}
