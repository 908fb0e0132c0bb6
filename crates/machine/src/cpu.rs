//! One simulated CPU: its cycle clock, MMU registers, TLB, current task and run queue.

use crate::mmu::MmuRegs;
use crate::tlb::Tlb;
use highpte_kernel::{TaskId, WaitOn};
use std::collections::VecDeque;

/// Counters of one CPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuStats {
    /// Context switches on this CPU (the task changed).
    pub context_switches: u64,
    /// Timer ticks taken while the CPU had work.
    pub ticks: u64,
    /// IPIs this CPU sent.
    pub ipis_sent: u64,
    /// IPIs this CPU received.
    pub ipis_received: u64,
    /// Cycles spent spinning in `cpu_relax`.
    pub spin_cycles: u64,
}

/// A simulated CPU.
pub struct Cpu {
    /// The CPU's number.
    pub index: u32,
    /// Simulated cycles elapsed on this CPU.
    pub clock: u64,
    /// CR0/CR3/CR4/EFER state.
    pub regs: MmuRegs,
    /// This CPU's TLB.
    pub tlb: Tlb,
    /// The task running (or suspended mid-run) on this CPU.
    pub current: Option<TaskId>,
    /// The task that ran last on this CPU (the `prev` of the next `switch_mm`).
    pub last: Option<TaskId>,
    /// Runnable tasks waiting for this CPU, in order.
    pub runq: VecDeque<TaskId>,
    /// TIF_NEED_RESCHED for the current task: a tick or a wake-up wants the CPU switched.
    pub need_resched: bool,
    /// When the next timer tick fires, in this CPU's cycles.
    pub next_tick: u64,
    /// The last platform call of the current task was `cpu_relax` (for deadlock detection).
    pub spinning: bool,
    /// The machine's progress counter when the current task last called `cpu_relax`.
    pub spin_seen: u64,
    /// `cpu_relax` calls seen at that progress value.
    pub spin_rounds: u32,
    /// What the current task spins on (meaningful while `spinning`).
    pub spin_on: Option<WaitOn>,
    /// Consecutive `cpu_relax` calls with no lock released anywhere.
    pub spins_without_release: u64,
    /// The lock-release counter at the last `cpu_relax`.
    pub spin_release_seen: u64,
    /// Counters.
    pub stats: CpuStats,
}

impl Cpu {
    /// A CPU at cycle 0 with paging off and an empty TLB.
    pub fn new(index: u32, tlb: Tlb, tick_period: u64) -> Self {
        Self {
            index,
            clock: 0,
            regs: MmuRegs::default(),
            tlb,
            current: None,
            last: None,
            runq: VecDeque::new(),
            need_resched: false,
            next_tick: tick_period,
            spinning: false,
            spin_seen: 0,
            spin_rounds: 0,
            spin_on: None,
            spins_without_release: 0,
            spin_release_seen: 0,
            stats: CpuStats::default(),
        }
    }

    /// True if the CPU has a task running or waiting.
    #[inline]
    pub fn has_work(&self) -> bool {
        self.current.is_some() || !self.runq.is_empty()
    }

    /// Tasks running or waiting on this CPU.
    #[inline]
    pub fn load(&self) -> usize {
        self.runq.len() + usize::from(self.current.is_some())
    }
}
