//! Deadlock reports: what every task was doing when the machine found it could not progress.

use crate::machine::{BugInfo, MachineState};
use crate::task::{HeldLock, TaskState};
use highpte_arch::PagingMode;
use highpte_kernel::{BugReport, TaskId, WaitOn, WaitQueueKey};
use std::fmt;

/// How the deadlock was recognised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeadlockKind {
    /// Every busy CPU's task spins on something no running task will release.
    AllSpinning,
    /// Every remaining task sleeps and nothing can wake it (a lost wake-up, or a sleeping-lock
    /// cycle).
    AllAsleep,
    /// A task spun past the spin bound with no lock released anywhere.
    SpinBound,
}

impl fmt::Display for DeadlockKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeadlockKind::AllSpinning => {
                "every CPU spins on a lock that no running task will release"
            }
            DeadlockKind::AllAsleep => "every remaining task sleeps and nothing can wake it",
            DeadlockKind::SpinBound => {
                "a task spun past the spin bound with no lock released anywhere"
            }
        })
    }
}

/// What a task was doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskActivity {
    /// Waiting in a run queue.
    Runnable,
    /// Running on a CPU (not spinning).
    Running {
        /// The CPU.
        cpu: u32,
    },
    /// Spinning on a CPU.
    Spinning {
        /// The CPU.
        cpu: u32,
        /// What it spins on.
        on: WaitOn,
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
}

impl fmt::Display for TaskActivity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            TaskActivity::Runnable => write!(f, "runnable, waiting for a CPU"),
            TaskActivity::Running { cpu } => write!(f, "running on cpu {cpu}"),
            TaskActivity::Spinning {
                cpu,
                on: WaitOn::SpinLock { name, id, holder },
            } => {
                write!(
                    f,
                    "spinning on cpu {cpu} on lock '{name}' ({id:#x}) held by "
                )?;
                match holder {
                    Some(h) => write!(f, "task {h}"),
                    None => write!(f, "nobody known"),
                }
            }
            TaskActivity::Spinning {
                cpu,
                on: WaitOn::Queue { key, what },
            } => {
                write!(
                    f,
                    "spinning on cpu {cpu} waiting for \"{what}\" (queue {:#x})",
                    key.0
                )
            }
            TaskActivity::Sleeping { key, what, place } => {
                write!(f, "sleeping on queue {:#x} \"{what}\" at {place}", key.0)
            }
        }
    }
}

/// One task in a deadlock report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskReport {
    /// The task.
    pub id: TaskId,
    /// Its name.
    pub name: String,
    /// What it was doing.
    pub activity: TaskActivity,
    /// Locks it holds.
    pub held_locks: Vec<HeldLock>,
    /// Its where-label.
    pub where_label: &'static str,
    /// Its preempt_count.
    pub preempt_count: u32,
}

/// Every live task and what it waits on, when the machine could not progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadlockReport {
    /// How it was recognised.
    pub kind: DeadlockKind,
    /// The latest CPU clock.
    pub at: u64,
    /// Every task that had not exited, by id.
    pub tasks: Vec<TaskReport>,
}

impl DeadlockReport {
    /// The report of the task named `name`, if it is in the report.
    pub fn task(&self, name: &str) -> Option<&TaskReport> {
        self.tasks.iter().find(|t| t.name == name)
    }
}

impl fmt::Display for DeadlockReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "deadlock at cycle {}: {}", self.at, self.kind)?;
        for t in &self.tasks {
            writeln!(f, "  task {} '{}': {}", t.id, t.name, t.activity)?;
            writeln!(
                f,
                "    holds [{}], preempt_count {}, at {}",
                list_locks(&t.held_locks),
                t.preempt_count,
                t.where_label
            )?;
        }
        Ok(())
    }
}

/// "'a' (0x..), 'b' (0x..)" for reports.
pub(crate) fn list_locks(locks: &[HeldLock]) -> String {
    locks
        .iter()
        .map(|l| l.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Build the report from the machine state.
pub(crate) fn report<M: PagingMode>(st: &MachineState<M>, kind: DeadlockKind) -> DeadlockReport {
    let mut tasks = Vec::new();
    for (i, t) in st.tasks.iter().enumerate() {
        let activity = match t.state {
            TaskState::Exited { .. } => continue,
            TaskState::Runnable => TaskActivity::Runnable,
            TaskState::Sleeping { key, what, place } => TaskActivity::Sleeping { key, what, place },
            TaskState::Running { cpu } => {
                let c = &st.cpus[cpu as usize];
                match (c.spinning, c.spin_on) {
                    (true, Some(on)) => TaskActivity::Spinning { cpu, on },
                    _ => TaskActivity::Running { cpu },
                }
            }
        };
        tasks.push(TaskReport {
            id: TaskId(i as u32),
            name: t.name.clone(),
            activity,
            held_locks: t.held.clone(),
            where_label: t.where_label,
            preempt_count: t.preempt_count,
        });
    }
    let at = st.cpus.iter().map(|c| c.clock).max().unwrap_or(0);
    DeadlockReport { kind, at, tasks }
}

/// A bug found by the machine itself, attributed to `task`.
pub(crate) fn internal_bug<M: PagingMode>(
    st: &MachineState<M>,
    task: TaskId,
    message: String,
) -> BugInfo {
    let t = &st.tasks[task.0 as usize];
    let cpu = t.last_cpu;
    BugInfo {
        report: BugReport {
            kind: "machine",
            message,
        },
        task,
        task_name: t.name.clone(),
        cpu,
        at: st.cpus[cpu as usize].clock,
        where_label: t.where_label,
        held_locks: t.held.clone(),
    }
}
