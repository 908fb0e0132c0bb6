//! The deterministic simulated SMP x86-32 machine.
//!
//! Physical memory, the MMU and per-CPU TLBs model the hardware of the Intel SDM; CPUs, tasks
//! (stackful coroutines) and the scheduler make a deterministic discrete-event simulation that
//! implements the kernel's [`highpte_kernel::Platform`].
#![deny(missing_docs)]

pub mod cost;
pub mod mmu;
pub mod phys;
pub mod tlb;
