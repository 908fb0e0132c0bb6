//! What a run of the machine reports: how it ended ([`RunOutcome`], with a kernel bug's
//! [`BugInfo`]) and the machine-wide counters ([`MachineStats`]).

use crate::deadlock::DeadlockReport;
use crate::task::HeldLock;
use highpte_kernel::{BugReport, TaskId};
use std::fmt;

/// Machine-wide counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MachineStats {
    /// Times the CPU changed task.
    pub context_switches: u64,
    /// Kernel preemptions (at `preempt_enable`).
    pub preemptions: u64,
    /// Preemptions on return to user.
    pub user_preemptions: u64,
    /// Voluntary reschedules that switched task (`schedule`, `cond_resched`).
    pub voluntary_switches: u64,
    /// Tasks that ran on a different CPU than last time.
    pub migrations: u64,
    /// Timer ticks, all CPUs.
    pub ticks: u64,
    /// IPIs sent, all CPUs.
    pub ipis_sent: u64,
    /// `flush_tlb_others`/`flush_tlb_all` calls that interrupted at least one CPU.
    pub tlb_shootdowns: u64,
    /// Times the scheduler resumed a task.
    pub scheduler_events: u64,
    /// Sleeps.
    pub sleeps: u64,
    /// Tasks woken.
    pub wakeups: u64,
    /// Spin-loop iterations.
    pub spins: u64,
    /// Tasks created.
    pub spawned: u64,
    /// Tasks exited.
    pub exited: u64,
}

/// Where a bug stopped the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BugInfo {
    /// The kernel's report.
    pub report: BugReport,
    /// The task that hit it.
    pub task: TaskId,
    /// Its name.
    pub task_name: String,
    /// The CPU.
    pub cpu: u32,
    /// The CPU clock.
    pub at: u64,
    /// The task's where-label.
    pub where_label: &'static str,
    /// Locks the task held.
    pub held_locks: Vec<HeldLock>,
}

impl fmt::Display for BugInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "kernel bug ({}): {}",
            self.report.kind, self.report.message
        )?;
        write!(
            f,
            "  in task {} '{}' on cpu {} at cycle {}, at {}, holding [{}]",
            self.task,
            self.task_name,
            self.cpu,
            self.at,
            self.where_label,
            crate::deadlock::list_locks(&self.held_locks)
        )
    }
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunOutcome {
    /// Every task exited.
    Completed,
    /// No task can make progress.
    Deadlock(Box<DeadlockReport>),
    /// A task reported a kernel bug.
    Bug(Box<BugInfo>),
    /// [`MachineOptions::max_cycles`](super::MachineOptions::max_cycles) passed.
    TimeLimit,
    /// The host could not read or write the swap file (e.g. its file system is full): the
    /// simulation cannot go on.
    HostIo(Box<crate::blockdev::HostIoError>),
}

impl RunOutcome {
    /// True for [`RunOutcome::Completed`].
    pub fn is_completed(&self) -> bool {
        matches!(self, RunOutcome::Completed)
    }
}

impl fmt::Display for RunOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunOutcome::Completed => write!(f, "completed"),
            RunOutcome::Deadlock(d) => write!(f, "{d}"),
            RunOutcome::Bug(b) => write!(f, "{b}"),
            RunOutcome::TimeLimit => write!(f, "stopped at the cycle limit"),
            RunOutcome::HostIo(e) => write!(f, "{e}"),
        }
    }
}
