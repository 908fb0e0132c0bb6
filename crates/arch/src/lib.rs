//! x86-32 paging formats, addresses and the Linux i386 kernel virtual layout.
//!
//! This crate knows the hardware (Intel SDM vol. 3, ch. 4) and the fixed facts of the
//! 2.5-era i386 kernel address space. It has no state and no dependencies beyond
//! `bitflags`, and it is `no_std` so the kernel crate can use it unchanged.
#![no_std]
#![deny(missing_docs)]

pub mod addr;
pub mod config;
pub mod entry;
pub mod fault;
pub mod km;
pub mod layout;
pub mod mode;
pub mod profile;

pub mod size;
pub mod swap;

pub use addr::{Pfn, PhysAddr, VirtAddr, PAGE_MASK, PAGE_SHIFT, PAGE_SIZE};
pub use config::{Config, ConfigError, MemoryVariant, MAX_CPUS};
pub use entry::{Entry, EntryFlags};
pub use fault::PageFaultErrorCode;
pub use km::KmType;
pub use layout::KernelLayout;
pub use mode::{Pae, PagingMode, TwoLevel};
pub use profile::{KernelProfile, RamMap};
pub use swap::SwapEntry;
