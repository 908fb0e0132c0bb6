//! The invariant checker: run on demand, and after every step in tests.
//!
//! - every frame's map count equals the ptes that point to it, and its reference count is
//!   what its mappings and owner explain;
//! - no frame is both free and mapped;
//! - each zone's free lists are consistent, and per zone: pages by owner + free = present;
//! - page-table pages per zone match the tables that exist, and each mm's VmPTE and RSS match
//!   its page tables;
//! - page-cache pages: owned by the page cache, cached once, count = map count + the cache's
//!   reference; a file pte maps the file's cached page at its index (or, in a private
//!   mapping, an anonymous copy); `Cached` and `Dirty` match the pages.
//!
//! (That no TLB maps a freed frame is checked by the machine, which owns the TLBs, with
//! [`Kernel::page_is_free`].)

use crate::ctx::SleepCtx;
use crate::kernel::Kernel;
use crate::mm::vma::Backing;
use crate::mm::{pte_maps_page, Mm, PROT_NONE};
use crate::page_alloc::{PageFlags, PageOwner, ZoneType};
use crate::platform::Platform;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use highpte_arch::layout::PAGE_OFFSET;
use highpte_arch::{EntryFlags, PagingMode, Pfn, SwapEntry, VirtAddr};

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
    ///
    /// The check is not atomic: it takes and drops locks (and may yield at each) as it walks.
    /// Call it when no other task is changing address spaces or allocating (between the steps
    /// of a scenario, with the other processes waiting or spinning in user mode); a check that
    /// races with an exit or a fault elsewhere can report the transient state it saw.
    pub fn check_invariants<P: Platform>(&self, cx: &mut SleepCtx<'_, P>) -> Vec<String> {
        let p = cx.p();
        // background reclaim changes everything it touches: let it finish first
        self.wait_kswapd_idle(cx);
        let mut bad: Vec<String> = Vec::new();
        let mut maps: BTreeMap<u64, u32> = BTreeMap::new();
        // swap ptes per slot
        let mut swap_refs: BTreeMap<u32, u32> = BTreeMap::new();
        let mut pt_pages: [u64; 3] = [0; 3];
        // an mm whose owner is exiting may already have freed its tables
        let mms: Vec<Rc<Mm>> = self
            .live_mms()
            .into_iter()
            .filter(|m| !m.dead.get())
            .collect();
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
            let vmas = mm.mmap_sem.read(cx, "check_invariants");
            // the VMA set: ordered, disjoint, page aligned, in user space, not empty
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
            let span = M::PTE_PAGE_SPAN as u64;
            let mut base = 0u64;
            while base < PAGE_OFFSET as u64 {
                let a = VirtAddr::new(base as u32);
                let pmd = self.pmd_offset(p, &mm.pgd, a);
                if pmd.is_present() {
                    ptes_present += 1;
                    let ptp = pmd.entry().pfn();
                    pt_pages[self.page_zone(ptp) as usize] += 1;
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
                    let mut cur = self.lock_ptes(cx, mm);
                    let Some(mut map) = cur.map(a) else {
                        base += span;
                        continue;
                    };
                    map.for_each(a, base + span, |va, pte| {
                        if pte.is_none() {
                            return None;
                        }
                        if let Some(e) = SwapEntry::from_pte(pte, M::PAE) {
                            *swap_refs.entry(e.offset).or_insert(0) += 1;
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
                            return None;
                        }
                        if !pte_maps_page(pte) {
                            bad.push(format!(
                                "mm {:#x}: pte {:#x} at {} maps nothing but is not empty",
                                mm.cr3,
                                pte.bits(),
                                va
                            ));
                            return None;
                        }
                        rss += 1;
                        let pfn = pte.pfn();
                        *maps.entry(pfn.0).or_insert(0) += 1;
                        let Some(v) = vmas.containing(va.as_u32()) else {
                            bad.push(format!(
                                "mm {:#x}: pte at {} maps pfn {:#x} outside every VMA",
                                mm.cr3, va, pfn.0
                            ));
                            return None;
                        };
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
                                let idx = pgoff + ((va.as_u32() - v.start) >> 12);
                                if obj.page(idx) != Some(pfn) {
                                    bad.push(format!(
                                        "mm {:#x}: shared pte at {} maps pfn {:#x}, its object has {:?} at {}",
                                        mm.cr3, va, pfn.0, obj.page(idx), idx
                                    ));
                                }
                            }
                            Backing::File { file, pgoff, shared } => {
                                let idx = pgoff + ((va.as_u32() - v.start) >> 12);
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
                                if pfn != self.zero_page
                                    && self.mem_map.desc(pfn).owner() != PageOwner::User
                                {
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
        // shared objects hold one reference on each of their pages (no reference to an
        // object is kept across a lock that may yield: that could delay its release)
        let mut obj_refs: BTreeMap<u64, u32> = BTreeMap::new();
        let obj_swap: core::cell::RefCell<BTreeMap<u32, u32>> = Default::default();
        let mut seen_objs: Vec<*const crate::mm::shm::ShmObject> = Vec::new();
        let mut count_obj = |obj: &crate::mm::shm::ShmObject, refs: &mut BTreeMap<u64, u32>| {
            let ptr = obj as *const crate::mm::shm::ShmObject;
            if seen_objs.contains(&ptr) {
                return;
            }
            seen_objs.push(ptr);
            for i in 0..obj.nr_pages() {
                match obj.slot(i) {
                    crate::mm::shm::ObjSlot::Page(pfn) => *refs.entry(pfn.0).or_insert(0) += 1,
                    crate::mm::shm::ObjSlot::Swapped(e) => {
                        *obj_swap.borrow_mut().entry(e.offset).or_insert(0) += 1
                    }
                    crate::mm::shm::ObjSlot::Empty => {}
                }
            }
        };
        for mm in &mms {
            let vmas = mm.mmap_sem.read(cx, "check_invariants");
            for v in vmas.iter() {
                if let Backing::Shared { obj, .. } = &v.backing {
                    count_obj(obj, &mut obj_refs);
                }
            }
        }
        for (obj, _) in self.shm_objects(cx) {
            count_obj(&obj, &mut obj_refs);
        }
        // the swap cache: page → slot, and the slot map
        let (cache, slots): (BTreeMap<u64, u32>, Vec<(u32, u16)>) = {
            let sw = self.swap.lock(p);
            (
                sw.cache_entries().map(|(o, pfn)| (pfn.0, o)).collect(),
                sw.used_slots().collect(),
            )
        };
        for (&pfn, &o) in &cache {
            let d = self.mem_map.desc(Pfn(pfn));
            if !d.test_flag(PageFlags::SWAPCACHE) || d.private() != o {
                bad.push(format!(
                    "swap cache slot {} holds pfn {:#x} whose flags are {:?}, private {}",
                    o,
                    pfn,
                    d.flags(),
                    d.private()
                ));
            }
            if !maps.contains_key(&pfn) && !obj_refs.contains_key(&pfn) {
                if d.count() != 1 || d.mapcount() != 0 {
                    bad.push(format!(
                        "swap-cache pfn {:#x}: count {} mapcount {} but only the cache holds it",
                        pfn,
                        d.count(),
                        d.mapcount()
                    ));
                }
                if self.page_is_free(p, Pfn(pfn)) {
                    bad.push(format!("swap-cache pfn {:#x} is on a free list", pfn));
                }
            }
        }
        for (o, n) in obj_swap.into_inner() {
            *swap_refs.entry(o).or_insert(0) += n;
        }
        let cached_slots: BTreeMap<u32, u64> = cache.iter().map(|(&f, &o)| (o, f)).collect();
        for &(o, c) in &slots {
            let want =
                swap_refs.get(&o).copied().unwrap_or(0) + u32::from(cached_slots.contains_key(&o));
            if u32::from(c) != want && c < crate::mm::swap::SWAP_MAP_MAX {
                bad.push(format!(
                    "swap slot {}: count {} but {} swap ptes or object pages and {} swap-cache page",
                    o,
                    c,
                    swap_refs.get(&o).copied().unwrap_or(0),
                    u32::from(cached_slots.contains_key(&o))
                ));
            }
        }
        for (&o, &n) in &swap_refs {
            if !slots.iter().any(|&(so, _)| so == o) {
                bad.push(format!("{} swap ptes hold free slot {}", n, o));
            }
        }
        // the page cache: page → (inode, index), one reference each
        let mut page_cache: BTreeMap<u64, (u32, u32)> = BTreeMap::new();
        let mut dirty_cached = 0u64;
        let inodes = self.all_inodes();
        for inode in &inodes {
            let pages: Vec<(u32, Pfn)> =
                inode.pages.lock(p).iter().map(|(i, f)| (*i, *f)).collect();
            for (idx, pfn) in pages {
                let d = self.mem_map.desc(pfn);
                if d.owner() != PageOwner::PageCache || d.private() != idx {
                    bad.push(format!(
                        "inode {} index {}: page-cache pfn {:#x} owned by {} with private {}",
                        inode.ino,
                        idx,
                        pfn.0,
                        d.owner().name(),
                        d.private()
                    ));
                }
                if d.test_flag(PageFlags::DIRTY) {
                    dirty_cached += 1;
                }
                if page_cache.insert(pfn.0, (inode.ino, idx)).is_some() {
                    bad.push(format!("page-cache pfn {:#x} is cached twice", pfn.0));
                }
            }
        }
        for inode in inodes {
            self.iput(cx, inode);
        }
        let cache_owned: u64 = ZoneType::ALL
            .iter()
            .map(|z| self.owner_pages(*z, PageOwner::PageCache))
            .sum();
        if cache_owned != page_cache.len() as u64 || self.fs.nr_cached.get() != cache_owned {
            bad.push(format!(
                "{} pages owned by the page cache, {} in the files' caches, Cached counts {}",
                cache_owned,
                page_cache.len(),
                self.fs.nr_cached.get()
            ));
        }
        if dirty_cached != self.fs.nr_dirty.get() {
            bad.push(format!(
                "{} dirty page-cache pages but Dirty counts {}",
                dirty_cached,
                self.fs.nr_dirty.get()
            ));
        }
        for (&pfn, &(ino, idx)) in &page_cache {
            if maps.contains_key(&pfn) {
                continue;
            }
            let d = self.mem_map.desc(Pfn(pfn));
            if d.count() != 1 || d.mapcount() != 0 {
                bad.push(format!(
                    "page-cache pfn {:#x} (inode {}, index {}): count {} mapcount {} but only the cache holds it",
                    pfn,
                    ino,
                    idx,
                    d.count(),
                    d.mapcount()
                ));
            }
            if self.page_is_free(p, Pfn(pfn)) {
                bad.push(format!("page-cache pfn {:#x} is on a free list", pfn));
            }
        }
        for (&pfn, &n) in &maps {
            if pfn == self.zero_page.0 {
                continue;
            }
            let d = self.mem_map.desc(Pfn(pfn));
            if let Some(c) = self.rmap_count(Pfn(pfn)) {
                if c != n as usize {
                    bad.push(format!(
                        "pfn {:#x}: its reverse-map chain has {} ptes but {} ptes map it",
                        pfn, c, n
                    ));
                }
            }
            if d.mapcount() != n {
                bad.push(format!(
                    "pfn {:#x}: mapcount {} but {} ptes map it",
                    pfn,
                    d.mapcount(),
                    n
                ));
            }
            let want = n
                + obj_refs.get(&pfn).copied().unwrap_or(0)
                + u32::from(cache.contains_key(&pfn))
                + u32::from(page_cache.contains_key(&pfn));
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
        // every user page is accounted for: mapped, or held by a shared object
        let mut user_frames = maps.len() as u64
            - u64::from(maps.contains_key(&self.zero_page.0))
            - maps.keys().filter(|f| page_cache.contains_key(f)).count() as u64;
        user_frames += obj_refs.keys().filter(|f| !maps.contains_key(f)).count() as u64;
        user_frames += cache
            .keys()
            .filter(|f| !maps.contains_key(f) && !obj_refs.contains_key(f))
            .count() as u64;
        let user_owned: u64 = ZoneType::ALL
            .iter()
            .map(|z| self.owner_pages(*z, PageOwner::User))
            .sum();
        if user_owned != user_frames {
            bad.push(format!(
                "{} pages are owned by user memory but {} are mapped or held by shared objects",
                user_owned, user_frames
            ));
        }
        // reverse maps: chains only for mapped pages, backed by their low pages
        let (chain_bytes, _, chain_pages, chained) = self.rmap_usage();
        let mapped = maps.len() as u64 - u64::from(maps.contains_key(&self.zero_page.0));
        if chained > mapped {
            bad.push(format!(
                "{} pages have reverse-map chains but only {} are mapped",
                chained, mapped
            ));
        }
        let chain_owned: u64 = ZoneType::ALL
            .iter()
            .map(|z| self.owner_pages(*z, PageOwner::PteChain))
            .sum();
        if chain_owned != chain_pages {
            bad.push(format!(
                "{} pages owned by pte chains but the chain pool holds {}",
                chain_owned, chain_pages
            ));
        }
        let _ = chain_bytes;
        // kernel objects: the slab pages plus an 8 KB stack per task
        let kobj_owned: u64 = ZoneType::ALL
            .iter()
            .map(|z| self.owner_pages(*z, PageOwner::KernelObject))
            .sum();
        let kobj_want =
            self.kobj.pages.borrow().len() as u64 + 2 * self.procs.borrow().len() as u64;
        if kobj_owned != kobj_want {
            bad.push(format!(
                "{} kernel-object pages allocated but {} slab pages and {} task stacks exist",
                kobj_owned,
                self.kobj.pages.borrow().len(),
                self.procs.borrow().len()
            ));
        }
        // kernel pte pages allocated after boot (pte_alloc_kernel) live in the kernel tables
        let mut ka = PAGE_OFFSET as u64;
        while ka < 1 << 32 {
            if let Some(ptp) = self.kernel_pte_page(p, VirtAddr::new(ka as u32)) {
                if self.mem_map.desc(ptp).owner() == PageOwner::PageTable {
                    pt_pages[self.page_zone(ptp) as usize] += 1;
                }
            }
            ka += M::PTE_PAGE_SPAN as u64;
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
        cx: &mut SleepCtx<'_, P>,
    ) -> Vec<(Rc<crate::mm::shm::ShmObject>, u32)> {
        let ids = self.shm_ids.lock(cx, "shm_objects");
        ids.objects()
    }
}
