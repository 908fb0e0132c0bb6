//! The timeline hook: what the machine tells a recorder attached to a run (the `highpte`
//! command's `--timeline` and `--ftrace` writers), event by event, as it happens.
//!
//! The machine only reports; formats live with the recorder. Without a recorder every
//! emission point is one test of an `Option` that is `None`: nothing is built, allocated or
//! called. With one, events go out through one dynamic call each, so a recorder can stream
//! them to a file instead of keeping the run in memory. Recording never changes the run:
//! nothing here charges cycles, draws random numbers or touches the event hash.

use highpte_kernel::{TaskId, TracePoint};
use std::sync::{Arc, Mutex};

/// One thing that happened, on `cpu` at its clock `at` (cycles).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimelineEvent {
    /// The CPU it happened on (for [`What::Spawn`] and [`What::Wake`]: the CPU the task was
    /// queued on).
    pub cpu: u32,
    /// That CPU's clock, in cycles.
    pub at: u64,
    /// The task it is about.
    pub task: TaskId,
    /// What happened.
    pub what: What,
}

/// The kinds of [`TimelineEvent`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum What {
    /// The task was created (its name went to [`TimelineSink::task_name`] just before).
    Spawn,
    /// The scheduler's step `step` resumes the task on the CPU.
    Step {
        /// The step number (counting every resume since the machine was built).
        step: u64,
    },
    /// The CPU starts running the task (a run slice begins).
    RunStart,
    /// The task stops running on the CPU (a run slice ends).
    RunEnd {
        /// Why it stopped.
        why: RunEnd,
    },
    /// The task begins spinning on a spinlock.
    SpinBegin {
        /// The lock's name.
        lock: &'static str,
        /// The task holding it, if known.
        holder: Option<TaskId>,
    },
    /// The task took the lock it was spinning on.
    SpinEnd,
    /// The task goes to sleep on a wait queue.
    Sleep {
        /// What the queue is for ("pkmap free entry", "mmap_sem", ...).
        what: &'static str,
    },
    /// `waker` woke the task (it runs again at its next [`What::RunStart`]).
    Wake {
        /// The waking task.
        waker: TaskId,
    },
    /// The task left a kernel entry (a system call, a fault, an exit path...).
    KernelExit,
    /// The system call the task is in returns this error (none: it succeeded).
    SyscallResult {
        /// The errno, if the call failed.
        errno: Option<u16>,
    },
    /// A trace point of the kernel.
    Kernel(TracePoint),
    /// The task sent a TLB-flush IPI to `to`, which handled it at its own clock `to_at` for
    /// `cycles` cycles.
    TlbIpi {
        /// The receiving CPU.
        to: u32,
        /// The receiver's clock when it took the interrupt.
        to_at: u64,
        /// Cycles the receiver spent in the handler.
        cycles: u64,
    },
    /// The task exited with `code`.
    Exit {
        /// The exit code.
        code: i32,
    },
    /// Memory figures sampled between run slices (`task` is the task about to run).
    Memory(MemorySample),
}

/// Why a run slice ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunEnd {
    /// Preempted in the kernel (`preempt_enable`, a spin loop).
    KernelPreempt,
    /// Preempted on return to user mode.
    UserPreempt,
    /// Gave up the CPU (`schedule()`), still runnable.
    Schedule,
    /// Went to sleep.
    Sleep,
    /// Exited.
    Exit,
}

/// Memory figures in kB, as `/proc/meminfo` names them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemorySample {
    /// `LowFree`.
    pub low_free: u64,
    /// `HighFree`.
    pub high_free: u64,
    /// `PageTables` in low memory.
    pub page_tables_low: u64,
    /// `PageTables` in high memory.
    pub page_tables_high: u64,
}

/// A recorder of a run's timeline.
pub trait TimelineSink: Send {
    /// One event. Called on the host thread that runs the simulation, in the order things
    /// happen; the clocks of different CPUs interleave within a scheduling quantum.
    fn record(&mut self, ev: &TimelineEvent);
    /// The name of a task, given once when it is created (before its [`What::Spawn`]).
    fn task_name(&mut self, task: TaskId, name: &str);
    /// A machine with `cpus` CPUs whose clock runs at `clock_hz` starts recording here
    /// (before any event of it).
    fn machine(&mut self, cpus: u32, clock_hz: u64) {
        let _ = (cpus, clock_hz);
    }
}

/// A recorder attached to a machine through [`crate::MachineOptions::timeline`]. The owner
/// keeps another handle to read the recorder back when the run is over.
#[derive(Clone)]
pub struct TimelineHook(pub Arc<Mutex<dyn TimelineSink>>);

impl std::fmt::Debug for TimelineHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TimelineHook")
    }
}

impl TimelineHook {
    /// Hand `ev` to the recorder.
    #[cold]
    #[inline(never)]
    pub(crate) fn send(&self, ev: TimelineEvent) {
        // A recorder that panicked poisons the lock; the run goes on without it.
        if let Ok(mut s) = self.0.lock() {
            s.record(&ev);
        }
    }

    /// Tell the recorder a task's name.
    #[cold]
    pub(crate) fn name(&self, task: TaskId, name: &str) {
        if let Ok(mut s) = self.0.lock() {
            s.task_name(task, name);
        }
    }
}

/// Simulated cycles between two memory samples (at most; samples are taken between run
/// slices).
pub const MEMORY_SAMPLE_CYCLES: u64 = 200_000;
