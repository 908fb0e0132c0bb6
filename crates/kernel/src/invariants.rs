//! The invariant checker: run on demand, and after every step in tests.
//!
//! - every frame's map count equals the ptes that point to it, and its reference count is
//!   what its mappings and owner explain;
//! - no frame is both free and mapped;
//! - each zone's free lists are consistent, and per zone: pages by owner + free = present;
//! - page-table pages per zone match the tables that exist, and each mm's VmPTE and RSS match
//!   its page tables.
//!
//! (That no TLB maps a freed frame is checked by the machine, which owns the TLBs, with
//! [`Kernel::page_is_free`].)

use crate::ctx::SleepCtx;
use crate::kernel::Kernel;
use crate::mm::vma::Backing;
use crate::mm::{pte_maps_page, Mm};
use crate::page_alloc::{PageOwner, ZoneType};
use crate::pgtable::pte_offset_map;
use crate::platform::Platform;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use highpte_arch::layout::PAGE_OFFSET;
use highpte_arch::{PagingMode, Pfn, VirtAddr};

impl<M: PagingMode> Kernel<M> {
    /// True if `pfn` is on a free list of its zone.
    pub fn page_is_free<P: Platform>(&self, p: &P, pfn: Pfn) -> bool {
        let z = self.page_zone(pfn);
        let g = self.zones[z as usize].lock(p);
        g.free_area().is_free(&self.mem_map, pfn)
    }

    /// Every distinct live mm.
    pub fn live_mms(&self) -> Vec<Rc<Mm>> {
        let mut out: Vec<Rc<Mm>> = Vec::new();
        for pr in self.procs.borrow().values() {
            if !out.iter().any(|m| Rc::ptr_eq(m, &pr.mm)) {
                out.push(pr.mm.clone());
            }
        }
        out
    }

    /// Check every invariant; returns the violations found (empty when all hold).
    pub fn check_invariants<P: Platform>(&self, p: &P) -> Vec<String> {
        // SAFETY: called between steps, at a kernel entry point.
        let mut cx = unsafe { SleepCtx::enter(p) };
        let mut bad: Vec<String> = Vec::new();
        let mut maps: BTreeMap<u64, u32> = BTreeMap::new();
        let mut pt_pages: [u64; 3] = [0; 3];
        let mms = self.live_mms();
        for mm in &mms {
            let mut ptes_present = 0u64;
            let mut rss = 0u64;
            // root and pmd pages
            pt_pages[self.page_zone(mm.pgd.pgd) as usize] += 1;
            if M::PAE {
                for pmd in mm.pgd.pmds {
                    pt_pages[self.page_zone(pmd) as usize] += 1;
                }
            }
            let span = M::PTE_PAGE_SPAN as u64;
            let mut base = 0u64;
            while base < PAGE_OFFSET as u64 {
                let a = VirtAddr::new(base as u32);
                let pmd = self.pmd_offset(p, &mm.pgd, a);
                if pmd.is_present() {
                    ptes_present += 1;
                    pt_pages[self.page_zone(pmd.entry().pfn()) as usize] += 1;
                    let mut g = mm.page_table_lock.lock(p);
                    let mut map = pte_offset_map(self, &mut cx, &mut g, &pmd, a);
                    map.for_each(a, base + span, |_, pte| {
                        if pte_maps_page(pte) {
                            rss += 1;
                            *maps.entry(pte.pfn().0).or_insert(0) += 1;
                        }
                        None
                    });
                }
                base += span;
            }
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
        // shared objects hold one reference on each of their pages
        let mut obj_refs: BTreeMap<u64, u32> = BTreeMap::new();
        let mut seen_objs: Vec<*const crate::mm::shm::ShmObject> = Vec::new();
        let mut objs: Vec<Rc<crate::mm::shm::ShmObject>> = Vec::new();
        for mm in &mms {
            let vmas = mm.mmap_sem.read(p, "check_invariants");
            for v in vmas.iter() {
                if let Backing::Shared { obj, .. } = &v.backing {
                    let ptr = Rc::as_ptr(obj);
                    if !seen_objs.contains(&ptr) {
                        seen_objs.push(ptr);
                        objs.push(obj.clone());
                    }
                }
            }
        }
        for (obj, _) in self.shm_objects(p) {
            let ptr = Rc::as_ptr(&obj);
            if !seen_objs.contains(&ptr) {
                seen_objs.push(ptr);
                objs.push(obj);
            }
        }
        for obj in &objs {
            for i in 0..obj.nr_pages() {
                if let Some(pfn) = obj.page(i) {
                    *obj_refs.entry(pfn.0).or_insert(0) += 1;
                }
            }
        }
        for (&pfn, &n) in &maps {
            if pfn == self.zero_page.0 {
                continue;
            }
            let d = self.mem_map.desc(Pfn(pfn));
            if d.mapcount() != n {
                bad.push(format!(
                    "pfn {:#x}: mapcount {} but {} ptes map it",
                    pfn,
                    d.mapcount(),
                    n
                ));
            }
            let want = n + obj_refs.get(&pfn).copied().unwrap_or(0);
            if d.count() != want {
                bad.push(format!(
                    "pfn {:#x}: reference count {} but {} mappings and object references",
                    pfn,
                    d.count(),
                    want
                ));
            }
            if self.page_is_free(p, Pfn(pfn)) {
                bad.push(format!(
                    "pfn {:#x} is mapped by {} ptes but is on a free list",
                    pfn, n
                ));
            }
        }
        for (&pfn, &n) in &obj_refs {
            if maps.contains_key(&pfn) {
                continue;
            }
            let d = self.mem_map.desc(Pfn(pfn));
            if d.count() != n || d.mapcount() != 0 {
                bad.push(format!(
                    "shared pfn {:#x}: count {} mapcount {} but it is only held by its object",
                    pfn,
                    d.count(),
                    d.mapcount()
                ));
            }
            if self.page_is_free(p, Pfn(pfn)) {
                bad.push(format!(
                    "shared pfn {:#x} is held by an object but is on a free list",
                    pfn
                ));
            }
        }
        // zones
        for z in ZoneType::ALL {
            let g = self.zones[z as usize].lock(p);
            if let Err(e) = g.check(&self.mem_map) {
                bad.push(format!("zone {}: {}", z.name(), e));
            }
            let owned: u64 = PageOwner::ALL
                .iter()
                .filter(|o| **o != PageOwner::Free)
                .map(|o| self.owner_pages(z, *o))
                .sum();
            if owned + g.free_pages() != g.present_pages() {
                bad.push(format!(
                    "zone {}: {} pages owned + {} free != {} present",
                    z.name(),
                    owned,
                    g.free_pages(),
                    g.present_pages()
                ));
            }
            drop(g);
            let pt = self.owner_pages(z, PageOwner::PageTable);
            if pt != pt_pages[z as usize] {
                bad.push(format!(
                    "zone {}: {} page-table pages accounted but {} exist in live page tables",
                    z.name(),
                    pt,
                    pt_pages[z as usize]
                ));
            }
        }
        bad
    }

    /// Every SysV segment's object with its id.
    pub(crate) fn shm_objects<P: Platform>(
        &self,
        p: &P,
    ) -> Vec<(Rc<crate::mm::shm::ShmObject>, u32)> {
        let ids = self.shm_ids.lock(p, "shm_objects");
        ids.objects()
    }
}
