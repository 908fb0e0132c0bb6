//! The highpte kernel VM core.
//!
//! `no_std` + `alloc`. Generic over the paging mode (`highpte_arch::PagingMode`) and over the
//! [`Platform`] that provides the hardware: the kernel never names the simulated machine.
#![no_std]
#![deny(missing_docs)]

extern crate alloc;

pub mod boot;
pub mod counters;
pub mod ctx;
pub mod errno;
pub mod fault_inject;
pub mod fs;
pub mod highmem;
pub mod invariants;
pub mod kernel;
pub mod kobj;
pub mod meminfo;
pub mod mm;
pub mod page_alloc;
pub mod pages;
pub mod pgtable;
pub mod platform;
pub mod sync;

pub use boot::BootError;
pub use counters::{Counter, Counters};
pub use ctx::{Ctx, SleepCtx};
pub use errno::{Errno, Signal};
pub use fault_inject::{FailAlloc, ALLOC_SITES};
pub use kernel::{Kernel, KernelOptions, PtAllocKind, PteStrategy};
pub use meminfo::Meminfo;
pub use mm::fault::FaultOutcome;
pub use platform::{
    BlockDev, BlockDevice, BootMemory, BugReport, CpuInfo, CpuMask, Diagnostics, KernelEvent,
    KernelMemory, Platform, Sched, TaskId, Tlb, TlbFlush, TracePoint, WaitOn, WaitQueueKey,
};
pub use sync::{Mutex, MutexGuard, RwSem, SpinGuard, SpinLock};
