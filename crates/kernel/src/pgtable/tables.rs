//! Page-table roots and pmd entries, typed by whose tables they are.

use crate::ctx::{Ctx, SleepCtx};
use crate::kernel::Kernel;
use crate::pgtable::alloc::PtKind;
use crate::pgtable::OutOfMemory;
use crate::platform::Platform;
use core::marker::PhantomData;
use highpte_arch::layout::PAGE_OFFSET;
use highpte_arch::{Entry, EntryFlags, PagingMode, Pfn, VirtAddr};

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::UserTables {}
    impl Sealed for super::KernelTables {}
}

/// Whose page tables: [`UserTables`] (a process's, whose pte pages may live in high memory)
/// or [`KernelTables`] (swapper_pg_dir's, always in low memory).
pub trait TableKind: sealed::Sealed + 'static {
    /// For reports.
    const NAME: &'static str;
}

/// Marker for a process's page tables.
pub enum UserTables {}
/// Marker for the kernel's page tables.
pub enum KernelTables {}

impl TableKind for UserTables {
    const NAME: &'static str = "user";
}
impl TableKind for KernelTables {
    const NAME: &'static str = "kernel";
}

/// A pmd entry (a pgd entry in 2-level mode, where the pmd is folded) of a table of kind `K`,
/// as read from memory, with where it lives.
#[derive(Debug, PartialEq, Eq)]
pub struct PmdEntry<K: TableKind> {
    /// Kernel (direct-map) address of the entry: pgd and pmd pages are always low.
    pub(crate) va: VirtAddr,
    pub(crate) val: Entry,
    _k: PhantomData<K>,
}

impl<K: TableKind> Clone for PmdEntry<K> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<K: TableKind> Copy for PmdEntry<K> {}

impl<K: TableKind> PmdEntry<K> {
    /// `pmd_none`.
    pub fn is_none(&self) -> bool {
        self.val.is_none()
    }
    /// `pmd_present`.
    pub fn is_present(&self) -> bool {
        self.val.is_present()
    }
    /// The raw entry (flags and the pte page's frame number: a number, not an address).
    pub fn entry(&self) -> Entry {
        self.val
    }
}

/// A process's page-table root: the pgd page (the page directory, or with PAE the PDPT page)
/// and, with PAE, the three user pmd pages allocated with it as 2.5 did. With the 6.1
/// profile's PAE the root is a 32-byte object of the pgd cache at `offset` in its page. Not
/// `Clone`: one owner, the mm.
#[derive(Debug)]
pub struct UserPgd {
    pub(crate) pgd: Pfn,
    /// Byte offset of the root in `pgd` (0 for a whole page).
    pub(crate) offset: u32,
    /// The root is a pgd-cache object, not a page-table page of its own.
    pub(crate) cached: bool,
    pub(crate) pmds: [Pfn; 3],
}

impl UserPgd {
    /// The value to load into CR3 for this address space.
    pub fn cr3(&self) -> highpte_arch::PhysAddr {
        highpte_arch::PhysAddr::new_checked(self.pgd.addr().as_u64() + u64::from(self.offset))
    }
    /// The pgd page.
    pub fn pgd_pfn(&self) -> Pfn {
        self.pgd
    }
}

impl<M: PagingMode> Kernel<M> {
    /// Kernel (direct-map) address of a low page; page-table roots are always low.
    pub(crate) fn low_va(&self, pfn: Pfn) -> VirtAddr {
        match self.page_address(pfn) {
            Some(va) => va,
            None => VirtAddr::new(0),
        }
    }

    /// `pgd_alloc`: a new page-table root with the kernel's part shared (2-level: kernel
    /// entries copied; PAE: the kernel pmd page referenced) and, with PAE, its three user pmd
    /// pages. May sleep.
    pub fn pgd_alloc<P: Platform>(&self, cx: &mut SleepCtx<'_, P>) -> Result<UserPgd, OutOfMemory> {
        cx.p().might_sleep("pgd_alloc");
        let cached = M::PAE && self.cfg.kernel == highpte_arch::KernelProfile::Linux61;
        let (pgd, offset) = if cached {
            self.pgd_cache_alloc(cx).ok_or(OutOfMemory)?
        } else {
            (self.pt_alloc_page(cx, PtKind::Pgd).ok_or(OutOfMemory)?, 0)
        };
        let p = cx.p();
        let pgd_va = VirtAddr::new(self.low_va(pgd).as_u32() + offset);
        let mut pmds = [Pfn(0); 3];
        if M::PAE {
            for i in 0..3 {
                match self.pt_alloc_page(cx, PtKind::Pmd) {
                    Some(pmd) => pmds[i] = pmd,
                    None => {
                        // the root goes back empty: the pools hand pages out uncleared
                        for (j, pmd) in pmds.iter().enumerate().take(i) {
                            // SAFETY: an entry of this mm's root or pmd page (low memory, direct map), which
                            // is not reachable by any other task while it is built or torn down.
                            unsafe {
                                self.write_entry(
                                    p,
                                    VirtAddr::new(pgd_va.as_u32() + j as u32 * 8),
                                    Entry::NONE,
                                )
                            };
                            self.pt_free_page(cx, *pmd, PtKind::Pmd);
                        }
                        self.root_free(cx, pgd, offset, cached);
                        return Err(OutOfMemory);
                    }
                }
                // SAFETY: an entry of this mm's root or pmd page (low memory, direct map), which
                // is not reachable by any other task while it is built or torn down.
                unsafe {
                    self.write_entry(
                        p,
                        VirtAddr::new(pgd_va.as_u32() + i as u32 * 8),
                        Entry::new(pmds[i], EntryFlags::PRESENT),
                    )
                };
            }
            let kpmd = self.init_mm.kernel_pmd().unwrap_or(Pfn(0));
            // SAFETY: an entry of this mm's root or pmd page (low memory, direct map), which
            // is not reachable by any other task while it is built or torn down.
            unsafe {
                self.write_entry(
                    p,
                    VirtAddr::new(pgd_va.as_u32() + 24),
                    Entry::new(kpmd, EntryFlags::PRESENT),
                )
            };
        } else {
            // copy the kernel part of swapper_pg_dir (entries 768..1024)
            let src = self.low_va(self.init_mm.pgd());
            let first = M::pgd_index(VirtAddr::new(PAGE_OFFSET));
            for i in first..M::PTRS_PER_PGD {
                // SAFETY: swapper_pg_dir is low memory, its kernel part written only at boot.
                let e = unsafe { p.read_u32(VirtAddr::new(src.as_u32() + i * 4)) };
                if e != 0 {
                    // SAFETY: an entry of this mm's root or pmd page (low memory, direct map), which
                    // is not reachable by any other task while it is built or torn down.
                    unsafe { p.write_u32(VirtAddr::new(pgd_va.as_u32() + i * 4), e) };
                }
            }
        }
        Ok(UserPgd {
            pgd,
            offset,
            cached,
            pmds,
        })
    }

    /// Give back a root's memory: to the pgd cache or as a page-table page.
    fn root_free<P: Platform>(&self, cx: &Ctx<'_, P>, pgd: Pfn, offset: u32, cached: bool) {
        if cached {
            self.pgd_cache_free(cx, pgd, offset);
        } else {
            self.pt_free_page(cx, pgd, PtKind::Pgd);
        }
    }

    /// `pgd_free`: free a root whose user part is empty (all pte pages already freed).
    pub fn pgd_free<P: Platform>(&self, cx: &Ctx<'_, P>, pgd: &UserPgd) {
        let p = cx.p();
        let pgd_va = self.root_va(pgd);
        if M::PAE {
            for (i, pmd) in pgd.pmds.iter().enumerate() {
                // SAFETY: an entry of this mm's root or pmd page (low memory, direct map), which
                // is not reachable by any other task while it is built or torn down.
                unsafe {
                    self.write_entry(
                        p,
                        VirtAddr::new(pgd_va.as_u32() + i as u32 * 8),
                        Entry::NONE,
                    )
                };
                self.pt_free_page(cx, *pmd, PtKind::Pmd);
            }
            // SAFETY: an entry of this mm's root or pmd page (low memory, direct map), which
            // is not reachable by any other task while it is built or torn down.
            unsafe { self.write_entry(p, VirtAddr::new(pgd_va.as_u32() + 24), Entry::NONE) };
        } else {
            let first = M::pgd_index(VirtAddr::new(PAGE_OFFSET));
            for i in first..M::PTRS_PER_PGD {
                // SAFETY: an entry of this mm's root or pmd page (low memory, direct map), which
                // is not reachable by any other task while it is built or torn down.
                unsafe { p.write_u32(VirtAddr::new(pgd_va.as_u32() + i * 4), 0) };
            }
        }
        self.root_free(cx, pgd.pgd, pgd.offset, pgd.cached);
    }

    /// Kernel address of a user root's first entry.
    fn root_va(&self, pgd: &UserPgd) -> VirtAddr {
        VirtAddr::new(self.low_va(pgd.pgd).as_u32() + pgd.offset)
    }

    /// `pmd_offset(pgd_offset(mm, addr), addr)` for a user address: the pmd entry covering
    /// `addr`, read from memory. `addr` must be below `PAGE_OFFSET`.
    pub fn pmd_offset<P: Platform>(
        &self,
        p: &P,
        pgd: &UserPgd,
        addr: VirtAddr,
    ) -> PmdEntry<UserTables> {
        self.read_pmd(p, self.pmd_entry_va(p, self.root_va(pgd), addr))
    }

    /// `pmd_offset_k`: the kernel pmd entry covering a kernel address.
    pub fn pmd_offset_k<P: Platform>(&self, p: &P, addr: VirtAddr) -> PmdEntry<KernelTables> {
        self.read_pmd(
            p,
            self.pmd_entry_va(p, self.low_va(self.init_mm.pgd()), addr),
        )
    }

    /// The kernel address of the pmd entry covering `addr` in the tables rooted at `pgd`:
    /// with PAE the entry in the pmd page its pgd entry points to; folded (2-level), the pgd
    /// entry itself.
    #[inline(always)]
    fn pmd_entry_va<P: Platform>(&self, p: &P, pgd_va: VirtAddr, addr: VirtAddr) -> VirtAddr {
        let gi = M::pgd_index(addr);
        if M::PAE {
            // SAFETY: a PAE root (low memory) whose four entries are fixed for its life.
            let pgde =
                M::entry_from_raw(unsafe { p.read_u64(VirtAddr::new(pgd_va.as_u32() + gi * 8)) });
            let pmd_va = self.low_va(pgde.pfn());
            VirtAddr::new(pmd_va.as_u32() + M::pmd_index(addr) * 8)
        } else {
            VirtAddr::new(pgd_va.as_u32() + gi * 4)
        }
    }

    /// The pmd entry at kernel address `va`, read from memory.
    #[inline(always)]
    fn read_pmd<P: Platform, K: TableKind>(&self, p: &P, va: VirtAddr) -> PmdEntry<K> {
        PmdEntry {
            va,
            // SAFETY: a pmd entry in low memory (direct map); the value is a snapshot, which
            // the cursor re-reads under the page-table lock before trusting it.
            val: M::entry_from_raw(unsafe { self.read_entry(p, va) }),
            _k: PhantomData,
        }
    }

    /// The frame of the pte page that maps user address `addr` in `mm`, if its pmd is
    /// present. A frame number, not an address: reaching the page still needs a mapping.
    pub fn user_pte_page<P: Platform>(
        &self,
        p: &P,
        mm: &crate::mm::Mm,
        addr: VirtAddr,
    ) -> Option<Pfn> {
        let pmd = self.pmd_offset(p, &mm.pgd, addr);
        pmd.is_present().then_some(pmd.val.pfn())
    }

    /// The frame of the kernel pte page that maps kernel address `addr`, if its pmd is
    /// present (and not a large page).
    pub fn kernel_pte_page<P: Platform>(&self, p: &P, addr: VirtAddr) -> Option<Pfn> {
        let pmd = self.pmd_offset_k(p, addr);
        (pmd.is_present() && !pmd.val.has(EntryFlags::PS)).then_some(pmd.val.pfn())
    }

    /// Re-read a pmd entry (after a lock was dropped).
    pub fn pmd_reread<P: Platform, K: TableKind>(&self, p: &P, pmd: &PmdEntry<K>) -> PmdEntry<K> {
        self.read_pmd(p, pmd.va)
    }

    /// `pmd_populate`: point a user pmd entry at a pte page.
    pub(crate) fn pmd_populate<P: Platform>(
        &self,
        p: &P,
        pmd: &PmdEntry<UserTables>,
        pte_page: Pfn,
    ) {
        // SAFETY: a pmd entry in low memory (direct map); the callers (the cursor's
        // alloc_map) hold the mm's page-table lock.
        unsafe { self.write_entry(p, pmd.va, Entry::new(pte_page, EntryFlags::PAGE_TABLE)) };
    }

    /// `pmd_clear`: empty a user pmd entry just read under the page-table lock; returns the
    /// pte page it pointed at.
    pub(crate) fn pmd_clear<P: Platform>(&self, p: &P, pmd: &PmdEntry<UserTables>) -> Pfn {
        // SAFETY: a pmd entry in low memory (direct map), under the mm's page-table lock.
        unsafe { self.write_entry(p, pmd.va, Entry::NONE) };
        pmd.val.pfn()
    }
}

impl crate::mm::Mm {
    /// The page-table root (a low page). Walking it still goes through
    /// [`Kernel::pmd_offset`], which yields a [`PmdEntry<UserTables>`] that only the mapping
    /// API accepts.
    pub fn pgd(&self) -> &UserPgd {
        &self.pgd
    }
    /// `mm->page_table_lock`, to hold while mapping the mm's ptes.
    pub fn page_table_lock(&self) -> &crate::pgtable::PageTableLock {
        &self.page_table_lock
    }
}
