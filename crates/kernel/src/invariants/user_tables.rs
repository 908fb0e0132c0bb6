//! The census of one mm's page tables: its VMA set, every pte page and every pte, each
//! checked against the VMA it lies in, and the mm's VmPTE and RSS counters.

use super::Census;
use crate::ctx::SleepCtx;
use crate::kernel::Kernel;
use crate::mm::vma::{Backing, Vma, VmaSet};
use crate::mm::{pte_maps_page, Mm, PROT_NONE};
use crate::page_alloc::{PageFlags, PageOwner};
use crate::platform::Platform;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use highpte_arch::layout::PAGE_OFFSET;
use highpte_arch::{Entry, EntryFlags, PagingMode, Pfn, SwapEntry, VirtAddr, PAGE_SHIFT};

impl<M: PagingMode> Kernel<M> {
    /// Walk `mm`'s page tables under its `mmap_sem`: count its table pages, the ptes that map
    /// each page and the swap slots its ptes hold into `census`, and check its VMA set, each
    /// pte against its VMA, and its VmPTE and RSS counters.
    pub(super) fn check_user_tables<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        mm: &Mm,
        census: &mut Census,
        bad: &mut Vec<String>,
    ) {
        let p = cx.p();
        let mut ptes_present = 0u64;
        let mut rss = 0u64;
        // root and pmd pages
        if !mm.pgd.cached {
            census.pt_pages[self.page_zone(mm.pgd.pgd) as usize] += 1;
        }
        if M::PAE {
            for pmd in mm.pgd.pmds {
                census.pt_pages[self.page_zone(pmd) as usize] += 1;
            }
        }
        let vmas = mm.mmap_sem.read(cx, "check_invariants");
        check_vma_set(mm, &vmas, bad);
        let span = M::PTE_PAGE_SPAN as u64;
        let mut base = 0u64;
        while base < PAGE_OFFSET as u64 {
            let a = VirtAddr::new(base as u32);
            let pmd = self.pmd_offset(p, &mm.pgd, a);
            if pmd.is_present() {
                ptes_present += 1;
                let ptp = pmd.entry().pfn();
                census.pt_pages[self.page_zone(ptp) as usize] += 1;
                self.check_pte_page_owner(mm, ptp, base, bad);
                let mut cur = self.lock_ptes(cx, mm);
                let Some(mut map) = cur.map(a) else {
                    base += span;
                    continue;
                };
                map.for_each(a, base + span, |va, pte| {
                    if self.census_user_pte(p, mm, &vmas, va, pte, census, bad) {
                        rss += 1;
                    }
                    None
                });
            }
            base += span;
        }
        drop(vmas);
        if ptes_present != mm.nr_ptes.get() {
            bad.push(format!(
                "mm {:#x}: VmPTE counter {} but {} pte pages exist",
                mm.cr3,
                mm.nr_ptes.get(),
                ptes_present
            ));
        }
        if rss != mm.rss.get() {
            bad.push(format!(
                "mm {:#x}: rss counter {} but {} ptes map pages",
                mm.cr3,
                mm.rss.get(),
                rss
            ));
        }
    }

    /// A pte page must be owned by the page tables and flagged as one.
    fn check_pte_page_owner(&self, mm: &Mm, ptp: Pfn, base: u64, bad: &mut Vec<String>) {
        let d = self.mem_map.desc(ptp);
        if d.owner() != PageOwner::PageTable || !d.test_flag(PageFlags::PAGETABLE) {
            bad.push(format!(
                "mm {:#x}: pte page {:#x} for {:#x} is owned by {} (flags {:?})",
                mm.cr3,
                ptp.0,
                base,
                d.owner().name(),
                d.flags()
            ));
        }
    }

    /// Count one non-empty user pte into `census` and check it against its VMA. Returns true
    /// if it maps a page (counts in RSS).
    #[allow(clippy::too_many_arguments)]
    fn census_user_pte<P: Platform>(
        &self,
        p: &P,
        mm: &Mm,
        vmas: &VmaSet,
        va: VirtAddr,
        pte: Entry,
        census: &mut Census,
        bad: &mut Vec<String>,
    ) -> bool {
        if pte.is_none() {
            return false;
        }
        if let Some(e) = SwapEntry::from_pte(pte, M::PAE) {
            *census.swap_refs.entry(e.offset).or_insert(0) += 1;
            if !vmas
                .containing(va.as_u32())
                .is_some_and(|v| v.backing.has_anon_pages())
            {
                bad.push(format!(
                    "mm {:#x}: swap pte {:#x} at {} outside a private VMA",
                    mm.cr3,
                    pte.bits(),
                    va
                ));
            }
            return false;
        }
        if !pte_maps_page(pte) {
            bad.push(format!(
                "mm {:#x}: pte {:#x} at {} maps nothing but is not empty",
                mm.cr3,
                pte.bits(),
                va
            ));
            return false;
        }
        let pfn = pte.pfn();
        *census.maps.entry(pfn.0).or_insert(0) += 1;
        let Some(v) = vmas.containing(va.as_u32()) else {
            bad.push(format!(
                "mm {:#x}: pte at {} maps pfn {:#x} outside every VMA",
                mm.cr3, va, pfn.0
            ));
            return true;
        };
        self.check_pte_fits_vma(p, mm, v, va, pte, bad);
        true
    }

    /// A present user pte: its permissions fit its VMA's protection, and its page is what the
    /// VMA's backing holds at that address.
    fn check_pte_fits_vma<P: Platform>(
        &self,
        p: &P,
        mm: &Mm,
        v: &Vma,
        va: VirtAddr,
        pte: Entry,
        bad: &mut Vec<String>,
    ) {
        let pfn = pte.pfn();
        let present = pte.is_present();
        let rw = pte.has(EntryFlags::RW);
        let user_ok = pte.has(EntryFlags::USER) && v.prot != PROT_NONE;
        if (present && !user_ok) || (rw && (!v.writable() || pfn == self.zero_page)) {
            bad.push(format!(
                "mm {:#x}: pte {:#x} at {} does not fit its VMA (prot {})",
                mm.cr3,
                pte.bits(),
                va,
                v.prot
            ));
        }
        match &v.backing {
            Backing::Shared { obj, pgoff, .. } => {
                let idx = pgoff + ((va.as_u32() - v.start) >> PAGE_SHIFT);
                if obj.page(idx) != Some(pfn) {
                    bad.push(format!(
                        "mm {:#x}: shared pte at {} maps pfn {:#x}, its object has {:?} at {}",
                        mm.cr3,
                        va,
                        pfn.0,
                        obj.page(idx),
                        idx
                    ));
                }
            }
            Backing::File {
                file,
                pgoff,
                shared,
            } => {
                let idx = pgoff + ((va.as_u32() - v.start) >> PAGE_SHIFT);
                let owner = self.mem_map.desc(pfn).owner();
                let ok = if owner == PageOwner::PageCache {
                    (*shared || !rw) && self.cache_page(p, file, idx) == Some(pfn)
                } else {
                    // a private copy (copy-on-write) of the file page
                    !shared && owner == PageOwner::User
                };
                if !ok {
                    bad.push(format!(
                        "mm {:#x}: file pte {:#x} at {} (index {} of inode {}, {}) maps pfn {:#x} owned by {}, the cache has {:?}",
                        mm.cr3, pte.bits(), va, idx, file.ino,
                        if *shared { "shared" } else { "private" },
                        pfn.0, owner.name(), self.cache_page(p, file, idx)
                    ));
                }
            }
            Backing::Anon => {
                if pfn != self.zero_page && self.mem_map.desc(pfn).owner() != PageOwner::User {
                    bad.push(format!(
                        "mm {:#x}: private pte at {} maps pfn {:#x} owned by {}",
                        mm.cr3,
                        va,
                        pfn.0,
                        self.mem_map.desc(pfn).owner().name()
                    ));
                }
            }
        }
    }
}

/// The VMA set: ordered, disjoint, page aligned, in user space, not empty.
fn check_vma_set(mm: &Mm, vmas: &VmaSet, bad: &mut Vec<String>) {
    let mut prev_end = 0u32;
    for v in vmas.iter() {
        if v.start >= v.end
            || v.start & 0xfff != 0
            || v.end & 0xfff != 0
            || v.end > PAGE_OFFSET
            || v.start < prev_end
        {
            bad.push(format!(
                "mm {:#x}: bad VMA [{:#x}, {:#x}) after one ending at {:#x}",
                mm.cr3, v.start, v.end, prev_end
            ));
        }
        prev_end = v.end;
    }
}
