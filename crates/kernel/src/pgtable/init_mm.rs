//! `init_mm`'s page tables: swapper_pg_dir, which maps the kernel's part of every address
//! space, the PAE kernel pmd every process's pgd shares, and the lock that protects them.
//! Built once at boot and then only read (the lock covers the entries, not these fields).

use super::PageTableLock;
use highpte_arch::Pfn;

/// The kernel's own page tables (`init_mm.pgd` and `init_mm.page_table_lock`).
pub(crate) struct InitMm {
    /// swapper_pg_dir: the page directory (2-level) or PDPT page (PAE).
    pgd: Pfn,
    /// With PAE: the kernel pmd (the 4th GB), shared by every process's pgd.
    kernel_pmd: Option<Pfn>,
    /// `init_mm.page_table_lock`.
    ptl: PageTableLock,
}

impl InitMm {
    /// The tables boot built.
    pub(crate) fn new(pgd: Pfn, kernel_pmd: Option<Pfn>) -> Self {
        Self {
            pgd,
            kernel_pmd,
            ptl: PageTableLock::new("init_mm.page_table_lock", ()),
        }
    }
    /// swapper_pg_dir's frame (what CR3 holds when no user address space is loaded).
    pub(crate) fn pgd(&self) -> Pfn {
        self.pgd
    }
    /// The shared kernel pmd (PAE only).
    pub(crate) fn kernel_pmd(&self) -> Option<Pfn> {
        self.kernel_pmd
    }
    /// The lock over the kernel page tables' entries.
    pub(crate) fn ptl(&self) -> &PageTableLock {
        &self.ptl
    }
}
