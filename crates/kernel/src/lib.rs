//! The highpte kernel VM core.
//!
//! `no_std` + `alloc`. Generic over the paging mode (`highpte_arch::PagingMode`) and over the
//! [`Platform`] that provides the hardware: the kernel never names the simulated machine.
#![no_std]
#![deny(missing_docs)]

extern crate alloc;

pub mod ctx;
pub mod page_alloc;
pub mod platform;
pub mod sync;

pub use platform::{BugReport, CpuMask, KernelEvent, Platform, TaskId, WaitOn, WaitQueueKey};
pub use sync::{Mutex, MutexGuard, SpinGuard, SpinLock};
