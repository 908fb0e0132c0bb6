//! Boot's kernel page tables (`paging_init`): swapper_pg_dir, the direct map of low memory,
//! the pkmap and fixmap pte pages, written to physical memory by a bump allocator before
//! paging is on.

use crate::pgtable::pte::pte_phys;
use crate::platform::Platform;
use alloc::vec;
use alloc::vec::Vec;
use highpte_arch::layout::{fix_to_virt, PAGE_OFFSET};
use highpte_arch::{
    Entry, EntryFlags, KernelLayout, PagingMode, Pfn, PhysAddr, VirtAddr, PAGE_SIZE,
};

/// The boot-time bump allocator: hands out the frames after the kernel image, cleared.
pub(super) struct BootMem {
    /// The next free frame.
    pub(super) next: u64,
}

impl BootMem {
    /// Take the next frame, cleared.
    pub(super) fn alloc<P: Platform>(&mut self, p: &P) -> Pfn {
        let pfn = Pfn(self.next);
        self.next += 1;
        // SAFETY: boot, before paging; the page was just taken from the boot allocator.
        unsafe { p.boot_phys_clear_page(pfn.addr()) };
        pfn
    }
}

/// Write entry `index` of the paging structure in frame `table` (paging is still off).
fn write_entry_phys<M: PagingMode, P: Platform>(p: &P, table: Pfn, index: u32, e: Entry) {
    let pa = PhysAddr::new_checked(table.addr().as_u64() + (index * M::ENTRY_BYTES) as u64);
    // SAFETY: boot, before paging; `table` is a page of the boot allocator's.
    unsafe {
        if M::PAE {
            p.boot_phys_write_u64(pa, e.bits());
        } else {
            p.boot_phys_write_u32(pa, e.low());
        }
    }
}

/// The table that holds the pmd entries for kernel addresses (swapper_pg_dir, or with PAE
/// the kernel pmd page): the index of `va`'s entry in it.
fn kdir_index<M: PagingMode>(va: u32) -> u32 {
    (va >> M::PMD_SHIFT) & (if M::PAE { 511 } else { 1023 })
}

/// The kernel page tables boot built in low memory, with the bump allocator's frames they
/// took (`[start, end)`).
pub(super) struct BootTables {
    /// swapper_pg_dir (with PAE: the PDPT page).
    pub(super) pgd: Pfn,
    /// With PAE: the kernel pmd page (covers the top GB).
    pub(super) kernel_pmd: Option<Pfn>,
    /// The pte page of the pkmap window.
    pub(super) pkmap_pt: Pfn,
    /// The direct-map address of each fixmap slot's pte.
    pub(super) fixmap_ptes: Vec<VirtAddr>,
    /// First frame the tables took.
    pub(super) start: u64,
    /// One past the last frame the tables took.
    pub(super) end: u64,
}

/// Build the kernel page tables (`paging_init`) with the bump allocator: swapper_pg_dir
/// (and the kernel pmd with PAE), the direct map of low memory, the pkmap pte page and the
/// fixmap pte pages.
pub(super) fn build_kernel_tables<M: PagingMode, P: Platform>(
    p: &P,
    bm: &mut BootMem,
    lowmem: u64,
    layout: &KernelLayout,
) -> BootTables {
    let start = bm.next;
    let pgd = bm.alloc(p);
    let kernel_pmd = if M::PAE { Some(bm.alloc(p)) } else { None };
    // the table that holds pmd entries for kernel addresses
    let kdir = kernel_pmd.unwrap_or(pgd);
    if let Some(kpmd) = kernel_pmd {
        write_entry_phys::<M, P>(p, pgd, 3, Entry::new(kpmd, EntryFlags::PRESENT));
    }
    map_lowmem::<M, P>(p, bm, kdir, lowmem);
    // pkmap: one pte page covers the whole window in both modes
    let pkmap_pt = bm.alloc(p);
    write_entry_phys::<M, P>(
        p,
        kdir,
        kdir_index::<M>(layout.pkmap_base().as_u32()),
        Entry::new(pkmap_pt, EntryFlags::KERNPG_TABLE),
    );
    let fixmap_ptes = map_fixmap::<M, P>(p, bm, kdir, layout);
    BootTables {
        pgd,
        kernel_pmd,
        pkmap_pt,
        fixmap_ptes,
        start,
        end: bm.next,
    }
}

/// The direct map of low memory at `PAGE_OFFSET`: global large pages, then 4 KB pages in a
/// pte page of its own for a tail that is not a whole large page.
fn map_lowmem<M: PagingMode, P: Platform>(p: &P, bm: &mut BootMem, kdir: Pfn, lowmem: u64) {
    let large = M::LARGE_PAGE_SIZE as u64;
    let big = lowmem / large;
    let dm_flags = EntryFlags::KERNEL | EntryFlags::PS | EntryFlags::GLOBAL;
    for i in 0..big {
        let va = PAGE_OFFSET + (i * large) as u32;
        write_entry_phys::<M, P>(
            p,
            kdir,
            kdir_index::<M>(va),
            Entry::new(Pfn(i * large / PAGE_SIZE), dm_flags),
        );
    }
    let tail = lowmem - big * large;
    if tail > 0 {
        let pt = bm.alloc(p);
        let base = big * large;
        for j in 0..tail / PAGE_SIZE {
            write_entry_phys::<M, P>(
                p,
                pt,
                j as u32,
                Entry::new(
                    Pfn(base / PAGE_SIZE + j),
                    EntryFlags::KERNEL | EntryFlags::GLOBAL,
                ),
            );
        }
        write_entry_phys::<M, P>(
            p,
            kdir,
            kdir_index::<M>(PAGE_OFFSET + base as u32),
            Entry::new(pt, EntryFlags::KERNPG_TABLE),
        );
    }
}

/// The fixmap: pte pages for every pmd region from FIXADDR_START to FIXADDR_TOP. Returns
/// the direct-map address of each fixmap slot's pte.
fn map_fixmap<M: PagingMode, P: Platform>(
    p: &P,
    bm: &mut BootMem,
    kdir: Pfn,
    layout: &KernelLayout,
) -> Vec<VirtAddr> {
    let end_fix = layout.end_of_fixed_addresses();
    let mut fix_tables: Vec<(u32, Pfn)> = Vec::new();
    let mut fixmap_ptes = vec![VirtAddr::new(0); end_fix as usize];
    for idx in 0..end_fix {
        let va = fix_to_virt(idx).as_u32();
        let region = va >> M::PMD_SHIFT;
        let pt = match fix_tables.iter().find(|(r, _)| *r == region) {
            Some((_, pt)) => *pt,
            None => {
                let pt = bm.alloc(p);
                write_entry_phys::<M, P>(
                    p,
                    kdir,
                    kdir_index::<M>(va),
                    Entry::new(pt, EntryFlags::KERNPG_TABLE),
                );
                fix_tables.push((region, pt));
                pt
            }
        };
        let pte_pa = pte_phys::<M>(pt, VirtAddr::new(va));
        fixmap_ptes[idx as usize] = VirtAddr::new(PAGE_OFFSET + pte_pa as u32);
    }
    fixmap_ptes
}
