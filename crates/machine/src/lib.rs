//! The deterministic simulated SMP x86-32 machine.
//!
//! Physical memory, the MMU and per-CPU TLBs model the hardware of the Intel SDM; CPUs, tasks
//! (stackful coroutines) and the scheduler make a deterministic discrete-event simulation that
//! implements the kernel's [`highpte_kernel::Platform`].
#![deny(missing_docs)]

pub mod blockdev;
pub mod cost;
pub mod cpu;
pub mod deadlock;
mod entry;
pub mod events;
pub mod machine;
pub mod mmu;
pub mod phys;
mod platform_impl;
pub mod sched;
mod stack;
pub mod system;
pub mod task;
pub mod text;
pub mod timeline;
pub mod tlb;

pub use blockdev::{HostIoError, SwapFileError};
pub use cpu::CpuStats;
pub use deadlock::{DeadlockKind, DeadlockReport, TaskActivity, TaskReport};
pub use events::Event;
pub use machine::{
    BugInfo, Machine, MachineError, MachineOptions, MachineStats, NoOs, Os, RunOutcome,
};
pub use stack::task_stacks_mapped;
pub use system::{System, SystemError, User};
pub use task::{HeldLock, SpawnError, TaskHandle, TaskState};
pub use timeline::{TimelineEvent, TimelineHook, TimelineSink};
