//! Page tables and the pte access API.
//!
//! Linux's names, Rust's rules. A user pte can be reached only through a mapping
//! ([`pte_offset_map`], [`PteMap::map_nested`], [`pte_alloc_map`]); the mapping is a guard that
//! unmaps on drop; pte values are copies that cannot outlive anything, and a [`PteSlot`] (a
//! reference to one entry) borrows its mapping; a live mapping borrows the context mutably, so
//! nothing that may sleep can run; the nested slot exists only inside a first mapping and has
//! no way to map a third; kernel and user tables are different types. The old `pte_offset()`
//! does not exist, so unconverted code fails to compile.

pub mod alloc;
pub mod pte;
pub mod tables;

pub use pte::{
    pte_alloc_kernel, pte_alloc_map, pte_map_phys, pte_offset_kernel, pte_offset_map, KernelPte,
    PteByPhys, PteMap, PteMapNested, PtePage, PteSlot,
};
pub use tables::{KernelTables, PmdEntry, TableKind, UserPgd, UserTables};

/// The lock that protects an address space's page tables (`mm->page_table_lock`).
pub type PageTableLock = crate::sync::SpinLock<()>;

/// The error of an allocation that found no memory (`-ENOMEM`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfMemory;
