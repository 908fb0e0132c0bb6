//! The holders of page references besides ptes — shared objects, the swap cache and its
//! slots, the page cache — and, against the census, every mapped or held page's counts.

use super::Census;
use crate::ctx::SleepCtx;
use crate::kernel::Kernel;
use crate::mm::shm::{ObjSlot, ShmObject};
use crate::mm::vma::Backing;
use crate::mm::Mm;
use crate::page_alloc::{PageFlags, PageOwner, ZoneType};
use crate::platform::Platform;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use highpte_arch::{PagingMode, Pfn};

impl<M: PagingMode> Kernel<M> {
    /// Count the references shared objects hold: one on each of their resident pages, one on
    /// each swap slot a swapped-out page of theirs holds. Each object counts once, whether
    /// it is found through a mapping or the SysV segment table. (No reference to an object
    /// is kept across a lock that may yield: that could delay its release.)
    pub(super) fn count_object_pages<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        mms: &[Rc<Mm>],
        census: &mut Census,
    ) {
        let mut seen: Vec<*const ShmObject> = Vec::new();
        let mut count_obj = |obj: &ShmObject| {
            let ptr = obj as *const ShmObject;
            if seen.contains(&ptr) {
                return;
            }
            seen.push(ptr);
            for i in 0..obj.nr_pages() {
                match obj.slot(i) {
                    ObjSlot::Page(pfn) => *census.obj_refs.entry(pfn.0).or_insert(0) += 1,
                    ObjSlot::Swapped(e) => *census.swap_refs.entry(e.offset).or_insert(0) += 1,
                    ObjSlot::Empty => {}
                }
            }
        };
        for mm in mms {
            let vmas = mm.mmap_sem.read(cx, "check_invariants");
            for v in vmas.iter() {
                if let Backing::Shared { obj, .. } = &v.backing {
                    count_obj(obj);
                }
            }
        }
        for (obj, _) in self.shm_objects(cx) {
            count_obj(&obj);
        }
    }

    /// The swap cache (page → slot, flagged and held only by the cache when nothing else
    /// holds it) and the swap map (each used slot's count is the swap ptes, object pages and
    /// swap-cache page that hold it; no swap pte holds a free slot). Records the swap cache
    /// in `census`.
    pub(super) fn check_swap<P: Platform>(
        &self,
        p: &P,
        census: &mut Census,
        bad: &mut Vec<String>,
    ) {
        let slots: Vec<(u32, u16)> = {
            let sw = self.swap.lock(p);
            census.swap_cache = sw.cache_entries().map(|(o, pfn)| (pfn.0, o)).collect();
            sw.used_slots().collect()
        };
        for (&pfn, &o) in &census.swap_cache {
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
            if !census.maps.contains_key(&pfn) && !census.obj_refs.contains_key(&pfn) {
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
        let swap_refs = &census.swap_refs;
        let cached_slots: BTreeMap<u32, u64> =
            census.swap_cache.iter().map(|(&f, &o)| (o, f)).collect();
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
        for (&o, &n) in swap_refs {
            if !slots.iter().any(|&(so, _)| so == o) {
                bad.push(format!("{} swap ptes hold free slot {}", n, o));
            }
        }
    }

    /// The page cache: each cached page owned by the cache, at its index, cached once; the
    /// `Cached` and `Dirty` counters; a cached page nothing maps is held by the cache alone.
    /// Records the page cache in `census`.
    pub(super) fn check_page_cache<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        census: &mut Census,
        bad: &mut Vec<String>,
    ) {
        let p = cx.p();
        let page_cache = &mut census.page_cache;
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
        let cache_owned = self.pages_owned_by(PageOwner::PageCache);
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
        for (&pfn, &(ino, idx)) in page_cache.iter() {
            if census.maps.contains_key(&pfn) {
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
    }

    /// Every mapped page: its reverse-map chain and map count match the ptes that map it, its
    /// reference count is those mappings plus its holders' references, and it is not free.
    pub(super) fn check_mapped_pages<P: Platform>(
        &self,
        p: &P,
        census: &Census,
        bad: &mut Vec<String>,
    ) {
        for (&pfn, &n) in &census.maps {
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
                + census.obj_refs.get(&pfn).copied().unwrap_or(0)
                + u32::from(census.swap_cache.contains_key(&pfn))
                + u32::from(census.page_cache.contains_key(&pfn));
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
    }

    /// A shared object's page that nothing maps is held by its object alone and not free.
    pub(super) fn check_object_pages<P: Platform>(
        &self,
        p: &P,
        census: &Census,
        bad: &mut Vec<String>,
    ) {
        for (&pfn, &n) in &census.obj_refs {
            if census.maps.contains_key(&pfn) {
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
    }

    /// Every page owned by user memory is accounted for: mapped, held by a shared object, or
    /// in the swap cache.
    pub(super) fn check_user_page_owners(&self, census: &Census, bad: &mut Vec<String>) {
        let maps = &census.maps;
        let obj_refs = &census.obj_refs;
        let mut user_frames = maps.len() as u64
            - u64::from(maps.contains_key(&self.zero_page.0))
            - maps
                .keys()
                .filter(|f| census.page_cache.contains_key(f))
                .count() as u64;
        user_frames += obj_refs.keys().filter(|f| !maps.contains_key(f)).count() as u64;
        user_frames += census
            .swap_cache
            .keys()
            .filter(|f| !maps.contains_key(f) && !obj_refs.contains_key(f))
            .count() as u64;
        let user_owned = self.pages_owned_by(PageOwner::User);
        if user_owned != user_frames {
            bad.push(format!(
                "{} pages are owned by user memory but {} are mapped or held by shared objects",
                user_owned, user_frames
            ));
        }
    }

    /// Pages of `owner` over all zones.
    pub(super) fn pages_owned_by(&self, owner: PageOwner) -> u64 {
        ZoneType::ALL
            .iter()
            .map(|z| self.owner_pages(*z, owner))
            .sum()
    }
}
