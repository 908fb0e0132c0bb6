//! Page tables and the pte access API.
//!
//! Linux's names, Rust's rules. A user pte can be reached only through a mapping made by a
//! [`PteCursor`] ([`Kernel::lock_ptes`](crate::Kernel::lock_ptes), then `map`, `alloc_map`,
//! `walk`, `map_phys`, and [`PteMap::map_nested`]), which holds the page-table lock and reads
//! the pmd under it; the mapping is a guard that
//! unmaps on drop; pte values are copies that cannot outlive anything, and a [`PteSlot`] (a
//! reference to one entry) borrows its mapping; a live mapping borrows the context mutably, so
//! nothing that may sleep can run; the nested slot exists only inside a first mapping and has
//! no way to map a third; kernel and user tables are different types. The old `pte_offset()`
//! does not exist, so unconverted code fails to compile.

pub mod alloc;
pub mod cursor;
pub(crate) mod entry_io;
pub(crate) mod init_mm;
pub(crate) mod pgd_cache;
pub mod pte;
pub mod tables;

pub use cursor::{PteCursor, WalkCtx};
pub use pte::{
    pte_alloc_kernel, pte_offset_kernel, KernelPte, PteByPhys, PteMap, PteMapNested, PtePage,
    PteSlot, PteView,
};
pub use tables::{KernelTables, PmdEntry, TableKind, UserPgd, UserTables};

/// The lock that protects an address space's page tables (`mm->page_table_lock`).
pub type PageTableLock = crate::sync::SpinLock<()>;

/// The error of an allocation that found no memory (`-ENOMEM`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfMemory;

// The paging modes' constants fit together as the walkers assume (Intel SDM Vol. 3A, 4.3 and
// 4.4.2): every paging structure below the PAE PDPT is one page of entries, a pte page maps
// `PTE_PAGE_SPAN` bytes, and the top level covers the 4 GB linear address space.
mod mode_constants {
    use highpte_arch::{Pae, PagingMode, TwoLevel, PAGE_SHIFT, PAGE_SIZE};
    use static_assertions::const_assert_eq;

    const_assert_eq!(
        (TwoLevel::PTRS_PER_PTE * TwoLevel::ENTRY_BYTES) as u64,
        PAGE_SIZE
    );
    const_assert_eq!(
        (TwoLevel::PTRS_PER_PGD * TwoLevel::ENTRY_BYTES) as u64,
        PAGE_SIZE
    );
    const_assert_eq!(TwoLevel::PTRS_PER_PMD, 1);
    const_assert_eq!((Pae::PTRS_PER_PTE * Pae::ENTRY_BYTES) as u64, PAGE_SIZE);
    const_assert_eq!((Pae::PTRS_PER_PMD * Pae::ENTRY_BYTES) as u64, PAGE_SIZE);
    const_assert_eq!(
        TwoLevel::PTE_PAGE_SPAN,
        TwoLevel::PTRS_PER_PTE << PAGE_SHIFT
    );
    const_assert_eq!(Pae::PTE_PAGE_SPAN, Pae::PTRS_PER_PTE << PAGE_SHIFT);
    const_assert_eq!(
        (TwoLevel::PTRS_PER_PGD as u64) << TwoLevel::PGDIR_SHIFT,
        1 << 32
    );
    const_assert_eq!((Pae::PTRS_PER_PGD as u64) << Pae::PGDIR_SHIFT, 1 << 32);
    const_assert_eq!(
        (Pae::PTRS_PER_PMD as u64) << Pae::PMD_SHIFT,
        1 << Pae::PGDIR_SHIFT
    );
}
