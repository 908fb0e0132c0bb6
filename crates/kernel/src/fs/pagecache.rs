//! The page cache: each file's pages by index, read in from the disk on a miss and written
//! back when dirty.
//!
//! A page-cache page is allocated `GFP_HIGHUSER` (so it lives in high memory when there is
//! some, competing there with highpte's pte pages), owned by [`PageOwner::PageCache`], with
//! its index in the `private` word. The cache holds one reference; every pte mapping it holds
//! one more (and a map count), as do transient users (a `read`, a fault that read it in, the
//! writeback of reclaim). `PG_locked` is held while the page is read or written (and while
//! `write` fills it); whoever needs it waits on the page's wait queue. `PG_uptodate` says the
//! contents are valid; `PG_dirty` that the disk block is stale (`Kernel::set_page_dirty`
//! keeps the `Dirty` count).
//!
//! Reclaim ([`Kernel::shrink_page_cache`]) walks each zone's pages oldest first: clean pages
//! nobody maps are freed, dirty ones written back first; mapped pages wait for the page-table
//! scan to unmap them. Each zone has its own list, so reclaim frees pages in the zones the
//! allocation that needs them can use.

use super::Inode;
use crate::counters::Counter;
use crate::ctx::{Ctx, SleepCtx};
use crate::errno::Errno;
use crate::kernel::Kernel;
use crate::mm::reclaim::ZoneMask;
use crate::page_alloc::{PageFlags, PageOwner, ZoneType, GFP_HIGHUSER};
use crate::platform::{BlockDev, Platform};
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use highpte_arch::{PagingMode, Pfn, PAGE_SIZE};

impl<M: PagingMode> Kernel<M> {
    /// `set_page_dirty` for any user page: a page-cache page is counted in `Dirty`.
    pub(crate) fn set_page_dirty(&self, pfn: Pfn) {
        let d = self.mem_map.desc(pfn);
        if !d.test_and_set_flag(PageFlags::DIRTY) && d.owner() == PageOwner::PageCache {
            self.fs.nr_dirty.set(self.fs.nr_dirty.get() + 1);
        }
    }

    /// `ClearPageDirty`: true if the page was dirty.
    pub(crate) fn clear_page_dirty(&self, pfn: Pfn) -> bool {
        let d = self.mem_map.desc(pfn);
        let was = d.test_and_clear_flag(PageFlags::DIRTY);
        if was && d.owner() == PageOwner::PageCache {
            self.fs.nr_dirty.set(self.fs.nr_dirty.get() - 1);
        }
        was
    }

    /// `find_get_page`: the cached page at `idx` with a reference taken.
    pub(crate) fn find_get_page<P: Platform>(&self, p: &P, inode: &Inode, idx: u32) -> Option<Pfn> {
        let g = inode.pages.lock(p);
        let pfn = g.get(&idx).copied()?;
        self.mem_map.desc(pfn).get_page();
        Some(pfn)
    }

    /// The page the cache holds at `idx` (no reference taken).
    pub(crate) fn cache_page<P: Platform>(&self, p: &P, inode: &Inode, idx: u32) -> Option<Pfn> {
        inode.pages.lock(p).get(&idx).copied()
    }

    /// `lock_page`: wait until the page is unlocked, then lock it. May sleep.
    pub(crate) fn lock_page<P: Platform>(&self, cx: &mut SleepCtx<'_, P>, pfn: Pfn) {
        while !self.trylock_page(pfn) {
            self.wait_on_page(cx, pfn);
        }
    }

    /// Drop a transient reference to a page-cache page (frees it if the cache let it go).
    pub(crate) fn page_cache_release<P: Platform>(&self, cx: &Ctx<'_, P>, pfn: Pfn) {
        if self.mem_map.desc(pfn).put_page() == 0 {
            self.free_pages(cx, pfn, 0);
        }
    }

    /// `grab_cache_page`: the page at `idx`, locked, with a reference; a new page is added
    /// if there is none (then `fresh` is true: its contents are not valid yet, the caller
    /// reads it in or fills it, sets `PG_uptodate` and unlocks). ENOMEM when no page can be
    /// allocated.
    pub(crate) fn grab_cache_page<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        inode: &Inode,
        idx: u32,
    ) -> Result<(Pfn, bool), Errno> {
        let p = cx.p();
        loop {
            if let Some(pfn) = self.find_get_page(p, inode, idx) {
                self.lock_page(cx, pfn);
                if self.cache_page(p, inode, idx) != Some(pfn) {
                    // truncated while we waited
                    self.unlock_page(p, pfn);
                    self.page_cache_release(cx, pfn);
                    continue;
                }
                return Ok((pfn, false));
            }
            let new = self
                .alloc_pages(
                    cx,
                    GFP_HIGHUSER,
                    0,
                    PageOwner::PageCache,
                    "page_cache_alloc",
                )
                .ok_or(Errno::ENOMEM)?;
            // add_to_page_cache: the allocation may have slept, look again
            let added = {
                let mut g = inode.pages.lock(p);
                match g.entry(idx) {
                    alloc::collections::btree_map::Entry::Occupied(_) => false,
                    alloc::collections::btree_map::Entry::Vacant(e) => {
                        e.insert(new);
                        // locked and referenced before anyone can find it
                        let d = self.mem_map.desc(new);
                        d.set_flag(PageFlags::LOCKED);
                        d.set_private(idx);
                        d.get_page();
                        true
                    }
                }
            };
            if !added {
                self.free_pages(cx, new, 0);
                continue;
            }
            self.cache_count_add(new);
            self.lru_of(new)
                .borrow_mut()
                .push_back((inode.ino, idx, new));
            return Ok((new, true));
        }
    }

    /// `read_cache_page`: the page at `idx`, up to date, with a reference (not locked). Reads
    /// it from the disk on a miss (the page stays locked during the read; others wait).
    pub(crate) fn read_cache_page<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        inode: &Inode,
        idx: u32,
    ) -> Result<Pfn, Errno> {
        let p = cx.p();
        loop {
            if let Some(pfn) = self.find_get_page(p, inode, idx) {
                let d = self.mem_map.desc(pfn);
                if !d.test_flag(PageFlags::UPTODATE) {
                    // someone is reading it in
                    self.wait_on_page(cx, pfn);
                    if !d.test_flag(PageFlags::UPTODATE)
                        || self.cache_page(p, inode, idx) != Some(pfn)
                    {
                        self.page_cache_release(cx, pfn);
                        continue;
                    }
                }
                d.set_flag(PageFlags::REFERENCED);
                return Ok(pfn);
            }
            let (pfn, fresh) = self.grab_cache_page(cx, inode, idx)?;
            if fresh || !self.mem_map.desc(pfn).test_flag(PageFlags::UPTODATE) {
                self.readpage(cx, inode, idx, pfn);
            }
            self.unlock_page(p, pfn);
            return Ok(pfn);
        }
    }

    /// `readpage` of a locked page: from its disk block, or zeros for a hole. Sets
    /// `PG_uptodate`. May sleep.
    pub(crate) fn readpage<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        inode: &Inode,
        idx: u32,
        pfn: Pfn,
    ) {
        match inode.block(idx) {
            Some(b) => {
                cx.p().might_sleep("readpage");
                // SAFETY: the caller holds `pfn` locked and not yet up to date: nobody
                // reads it until the read completes.
                unsafe { cx.p().block_io(BlockDev::Disk, b as u64, pfn, false) };
                self.counters.inc(Counter::FsPagesRead);
            }
            None => self.clear_highpage(cx, pfn),
        }
        self.mem_map.desc(pfn).set_flag(PageFlags::UPTODATE);
    }

    /// `writepage` of a locked page whose dirty bit the caller cleared: allocate its disk
    /// block if it has none, write it. May sleep.
    pub(crate) fn writepage<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        inode: &Inode,
        idx: u32,
        pfn: Pfn,
    ) {
        let p = cx.p();
        let b = match inode.block(idx) {
            Some(b) => b,
            None => {
                let b = self.disk_alloc(p);
                inode.blocks.borrow_mut().insert(idx, b);
                b
            }
        };
        p.might_sleep("writepage");
        // SAFETY: the caller holds `pfn` locked; a write only reads the page.
        unsafe { p.block_io(BlockDev::Disk, b as u64, pfn, true) };
        self.counters.inc(Counter::FsPagesWritten);
    }

    /// `filemap_fdatawrite` + wait: write back every dirty page of `[first, last]`.
    pub(crate) fn filemap_fdatawrite<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        inode: &Inode,
        first: u32,
        last: u32,
    ) -> u64 {
        let p = cx.p();
        let dirty: Vec<(u32, Pfn)> = inode
            .pages
            .lock(p)
            .range(first..=last)
            .filter(|(_, pfn)| self.mem_map.desc(**pfn).test_flag(PageFlags::DIRTY))
            .map(|(i, pfn)| (*i, *pfn))
            .collect();
        let mut written = 0;
        for (idx, _) in dirty {
            let Some(pfn) = self.find_get_page(p, inode, idx) else {
                continue;
            };
            self.lock_page(cx, pfn);
            if self.cache_page(p, inode, idx) == Some(pfn) && self.clear_page_dirty(pfn) {
                self.writepage(cx, inode, idx, pfn);
                written += 1;
            }
            self.unlock_page(p, pfn);
            self.page_cache_release(cx, pfn);
        }
        written
    }

    /// Take page `idx` out of the cache if it is still `pfn` there; drops the cache's
    /// reference (the caller holds its own). True if it was removed.
    fn remove_from_page_cache<P: Platform>(
        &self,
        p: &P,
        inode: &Inode,
        idx: u32,
        pfn: Pfn,
    ) -> bool {
        self.remove_from_page_cache_if(p, inode, idx, pfn, |_| true)
            .is_some()
    }

    /// Remove `pfn` from the cache if it is still there at `idx` and `ok(page)` holds, the
    /// check and the removal under the inode's lock with nothing in between that could let
    /// another task run (a lock operation may). Returns the page's remaining count.
    fn remove_from_page_cache_if<P: Platform>(
        &self,
        p: &P,
        inode: &Inode,
        idx: u32,
        pfn: Pfn,
        ok: impl FnOnce(&crate::page_alloc::PageDesc) -> bool,
    ) -> Option<u32> {
        let d = self.mem_map.desc(pfn);
        let left = {
            let mut g = inode.pages.lock(p);
            if g.get(&idx) != Some(&pfn) || !ok(d) {
                return None;
            }
            g.remove(&idx);
            d.put_page()
        };
        self.clear_page_dirty(pfn);
        self.cache_count_sub(pfn);
        Some(left)
    }

    /// `truncate_inode_pages`: drop every cached page from index `from` on, waiting for the
    /// I/O of locked ones. The pages must be unmapped already (a page a racing fault still
    /// maps is only let go by the cache; its last unmap frees it).
    pub(crate) fn truncate_inode_pages<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        inode: &Inode,
        from: u32,
    ) {
        let p = cx.p();
        loop {
            let next = inode.pages.lock(p).range(from..).next().map(|(i, _)| *i);
            let Some(idx) = next else { break };
            let Some(pfn) = self.find_get_page(p, inode, idx) else {
                continue;
            };
            self.lock_page(cx, pfn);
            self.remove_from_page_cache(p, inode, idx, pfn);
            self.unlock_page(p, pfn);
            self.page_cache_release(cx, pfn);
        }
    }

    /// Set the size of a file (`vmtruncate`), under its `i_sem`. Shrinking unmaps the pages
    /// past the end from every mapping, drops them from the cache, frees their blocks and
    /// zeroes the tail of the new last page.
    pub(crate) fn do_truncate<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        inode: &alloc::rc::Rc<Inode>,
        size: u64,
    ) {
        let old = inode.size();
        inode.size.set(size);
        if size >= old {
            return;
        }
        let p = cx.p();
        let first = size.div_ceil(PAGE_SIZE) as u32;
        // the size is set first: a fault from now on sees the new end and gives SIGBUS
        self.unmap_file_range(cx, inode, first);
        self.truncate_inode_pages(cx, inode, first);
        let gone: Vec<u32> = {
            let mut b = inode.blocks.borrow_mut();
            let tail = b.split_off(&first);
            tail.into_values().collect()
        };
        for blk in gone {
            self.disk_free(p, blk);
        }
        let off = (size % PAGE_SIZE) as usize;
        let last = (size / PAGE_SIZE) as u32;
        if off != 0 && (self.cache_page(p, inode, last).is_some() || inode.block(last).is_some()) {
            // the bytes past the end in the last page must read as zeros if the file grows
            let idx = (size / PAGE_SIZE) as u32;
            if let Ok((pfn, fresh)) = self.grab_cache_page(cx, inode, idx) {
                if fresh {
                    self.readpage(cx, inode, idx, pfn);
                }
                let va = self.kmap(cx, pfn, "truncate_partial_page");
                let zeros = [0u8; PAGE_SIZE as usize];
                // SAFETY: `va` is our kmap of the locked cache page.
                unsafe {
                    p.write_block(
                        highpte_arch::VirtAddr::new(va.as_u32() + off as u32),
                        &zeros[off..],
                    )
                };
                self.kunmap(cx, pfn, "truncate_partial_page");
                self.set_page_dirty(pfn);
                self.unlock_page(p, pfn);
                self.page_cache_release(cx, pfn);
            }
        }
    }

    /// The inactive list of the zone holding `pfn`.
    pub(crate) fn lru_of(&self, pfn: Pfn) -> &core::cell::RefCell<VecDeque<(u32, u32, Pfn)>> {
        &self.fs.lru[self.page_zone(pfn) as usize]
    }

    /// Count a page into the page cache (`Cached`, and its zone's share).
    pub(crate) fn cache_count_add(&self, pfn: Pfn) {
        let z = &self.fs.nr_cached_zone[self.page_zone(pfn) as usize];
        z.set(z.get() + 1);
        self.fs.nr_cached.set(self.fs.nr_cached.get() + 1);
    }

    /// Count a page out of the page cache.
    pub(crate) fn cache_count_sub(&self, pfn: Pfn) {
        let z = &self.fs.nr_cached_zone[self.page_zone(pfn) as usize];
        z.set(z.get() - 1);
        self.fs.nr_cached.set(self.fs.nr_cached.get() - 1);
    }

    /// Drop the lazily deleted (and duplicated) entries of each zone's inactive list when
    /// they outnumber the live ones (keeps its host memory proportional to the page cache).
    pub(crate) fn lru_compact(&self) {
        for zone in ZoneType::ALL {
            let mut lru = self.fs.lru[zone as usize].borrow_mut();
            if lru.len() as u64 <= 2 * self.fs.nr_cached_zone[zone as usize].get() + 4096 {
                continue;
            }
            let inodes = self.fs.inodes.borrow();
            let mut seen = alloc::collections::BTreeSet::new();
            lru.retain(|(ino, idx, pfn)| {
                let d = self.mem_map.desc(*pfn);
                inodes.contains_key(ino)
                    && d.owner() == PageOwner::PageCache
                    && d.private() == *idx
                    && seen.insert(pfn.0)
            });
        }
    }

    /// Reclaim page-cache pages (`shrink_cache` over the page cache) in any zone: oldest
    /// first, free clean pages nobody maps or uses, write back dirty ones first; a page
    /// referenced since it was last looked at gets a second chance. Returns the pages freed.
    /// May sleep.
    pub fn shrink_page_cache<P: Platform>(&self, cx: &mut SleepCtx<'_, P>, want: u64) -> u64 {
        let mut freed = self.prune_inodes(cx, ZoneMask::ALL);
        for zone in ZoneType::ALL.into_iter().rev() {
            if freed >= want {
                break;
            }
            let left = want - freed;
            freed += self.shrink_page_cache_zone(cx, zone, left, left * 32 + 64);
        }
        freed
    }

    /// [`Kernel::shrink_page_cache`] over the inactive list of one zone (2.5's
    /// `shrink_zone`), looking at up to `limit` pages of it (reclaim's later priorities look
    /// further: after an rmap pass the pages it unmapped may sit anywhere in the list).
    /// Frees only pages of `zone`, so reclaim for an allocation that needs low memory does
    /// not throw away high-memory cache that cannot help it.
    pub(crate) fn shrink_page_cache_zone<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        zone: ZoneType,
        want: u64,
        limit: u64,
    ) -> u64 {
        let p = cx.p();
        let lru = &self.fs.lru[zone as usize];
        let mut freed = 0;
        let mut looked = 0;
        while freed < want && looked < limit {
            let Some((ino, idx, pfn)) = lru.borrow_mut().pop_front() else {
                break;
            };
            looked += 1;
            let Some(inode) = self.inode_by_ino(ino) else {
                continue;
            };
            if self.cache_page(p, &inode, idx) != Some(pfn) {
                self.iput(cx, inode);
                continue;
            }
            let d = self.mem_map.desc(pfn);
            let busy = d.mapcount() > 0 || d.count() > 1 || d.test_flag(PageFlags::LOCKED);
            if busy || d.test_and_clear_flag(PageFlags::REFERENCED) {
                lru.borrow_mut().push_back((ino, idx, pfn));
                self.iput(cx, inode);
                continue;
            }
            let z = zone as usize;
            self.reclaim.scanned[z].set(self.reclaim.scanned[z].get() + 1);
            if d.test_flag(PageFlags::DIRTY) {
                d.get_page(); // ours while the write sleeps
                d.set_flag(PageFlags::LOCKED);
                if self.clear_page_dirty(pfn) {
                    self.writepage(cx, &inode, idx, pfn);
                }
                self.unlock_page(p, pfn);
                d.put_page();
            }
            // someone may have mapped, used or dirtied it while it was written
            let removed = self.remove_from_page_cache_if(p, &inode, idx, pfn, |d| {
                d.count() == 1
                    && d.mapcount() == 0
                    && !d.test_flag(PageFlags::DIRTY)
                    && !d.test_flag(PageFlags::LOCKED)
            });
            if removed == Some(0) {
                self.free_pages(cx, pfn, 0);
                self.reclaim.reclaimed[z].set(self.reclaim.reclaimed[z].get() + 1);
                self.counters.inc(Counter::PgSteal);
                self.counters.inc(Counter::PageCacheSteal);
                freed += 1;
            } else if self.cache_page(p, &inode, idx) == Some(pfn) {
                lru.borrow_mut().push_back((ino, idx, pfn));
            }
            self.iput(cx, inode);
        }
        self.lru_compact();
        freed
    }

    /// Pages in the page cache.
    pub fn page_cache_pages(&self) -> u64 {
        self.fs.nr_cached.get()
    }

    /// Pages in the page cache in `zones`.
    pub fn page_cache_pages_in(&self, zones: ZoneMask) -> u64 {
        ZoneType::ALL
            .into_iter()
            .filter(|&z| zones.contains(z))
            .map(|z| self.fs.nr_cached_zone[z as usize].get())
            .sum()
    }
}
