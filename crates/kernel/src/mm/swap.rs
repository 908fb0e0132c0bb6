//! Swap: the swap device's slot map (`swap_map`), the swap cache, swap-in and write-out.
//!
//! One swap device (type 0) of `KernelOptions::swap_pages` slots. Slot 0 is the header and is
//! never used. Each slot has a use count (`swap_map[offset]`): one for every pte that holds
//! its swap entry, one for every shared-memory object page swapped to it, and one while a
//! page sits in the swap cache for it.
//!
//! The swap cache maps a slot to the page holding its data (`PG_swapcache`, the page's
//! `private` word holding the offset). It holds one reference on the page. A page is added
//! when reclaim first unmaps it (it is then dirty: the slot holds nothing yet) or when a fault
//! reads it in; it leaves when the page is freed after write-out, when the last user of the
//! slot goes, or when a fault finds it used by nobody else and takes it over.
//!
//! `swap_lock` protects the map and the cache; it is a spinlock, so none of this sleeps except
//! the I/O functions, which take a [`SleepCtx`]. A page under I/O is `PG_locked`; whoever needs
//! its contents waits for the unlock on the page's wait queue.

use crate::counters::Counter;
use crate::ctx::{Ctx, SleepCtx};
use crate::kernel::Kernel;
use crate::page_alloc::PageFlags;
use crate::platform::{BlockDev, Platform, WaitQueueKey};
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use highpte_arch::{PagingMode, Pfn, SwapEntry};

/// Highest use count of a slot (`SWAP_MAP_MAX`); a slot that reaches it stays allocated until
/// swapoff, as in Linux.
pub const SWAP_MAP_MAX: u16 = 0x7fff;

/// Wait-queue keys of pages under I/O (`page_waitqueue`).
pub(crate) const PAGE_WAIT_KEY_BASE: u64 = 0x5000_0000_0000_0000;

/// The swap device state, under `swap_lock`.
#[derive(Default)]
pub struct SwapState {
    /// Use count per slot; empty when no swap is configured.
    map: Vec<u16>,
    /// Slots in use (count > 0).
    inuse: u32,
    /// Where the next search for a free slot starts (`cluster_next`).
    next: u32,
    /// The swap cache: slot → page.
    cache: BTreeMap<u32, Pfn>,
    /// Swapped on.
    pub(crate) active: bool,
}

impl SwapState {
    /// A device of `pages` slots (slot 0 included, as the header), swapped on.
    pub(crate) fn new(pages: u64) -> Self {
        let n = pages.min(highpte_arch::swap::SWP_OFFSET_MAX as u64 + 1) as usize;
        Self {
            map: alloc::vec![0; n],
            inuse: 0,
            next: 1,
            cache: BTreeMap::new(),
            active: n > 1,
        }
    }
    /// Slots that can hold pages (all but the header).
    pub fn total(&self) -> u64 {
        self.map.len().saturating_sub(1) as u64
    }
    /// Slots in use.
    pub fn inuse(&self) -> u64 {
        self.inuse as u64
    }
    /// Pages in the swap cache.
    pub fn cached(&self) -> u64 {
        self.cache.len() as u64
    }
    /// Use count of a slot.
    pub fn count(&self, e: SwapEntry) -> u16 {
        self.map.get(e.offset as usize).copied().unwrap_or(0)
    }
    /// The page in the swap cache for a slot.
    pub fn cache_page(&self, e: SwapEntry) -> Option<Pfn> {
        self.cache.get(&e.offset).copied()
    }
    /// Every (slot, count) in use.
    pub fn used_slots(&self) -> impl Iterator<Item = (u32, u16)> + '_ {
        self.map
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(i, &c)| (i as u32, c))
    }
    /// Every (slot, page) of the swap cache.
    pub fn cache_entries(&self) -> impl Iterator<Item = (u32, Pfn)> + '_ {
        self.cache.iter().map(|(&o, &p)| (o, p))
    }
    /// One user of slot `e` less (a slot at `SWAP_MAP_MAX` stays): the remaining count, or
    /// `None` if the slot was already free.
    fn put(&mut self, e: SwapEntry) -> Option<u16> {
        let c = &mut self.map[e.offset as usize];
        if *c == 0 {
            return None;
        }
        if *c < SWAP_MAP_MAX {
            *c -= 1;
            if *c == 0 {
                self.inuse -= 1;
            }
        }
        Some(*c)
    }

    fn alloc(&mut self) -> Option<SwapEntry> {
        if !self.active || self.inuse as usize + 1 >= self.map.len() {
            return None;
        }
        let n = self.map.len() as u32;
        let mut i = self.next.max(1);
        for _ in 1..n {
            if i >= n {
                i = 1;
            }
            if self.map[i as usize] == 0 {
                self.map[i as usize] = 1;
                self.inuse += 1;
                self.next = i + 1;
                return SwapEntry::new(0, i);
            }
            i += 1;
        }
        None
    }
}

impl<M: PagingMode> Kernel<M> {
    /// Swap state for reports: (total slots, used slots, swap-cache pages).
    pub fn swap_usage<P: Platform>(&self, p: &P) -> (u64, u64, u64) {
        let s = self.swap.lock(p);
        // a device swapped off (and emptied) does not count, as in /proc/meminfo
        let total = if s.active || s.inuse() > 0 {
            s.total()
        } else {
            0
        };
        (total, s.inuse(), s.cached())
    }

    /// True if a swap device is on and has room.
    pub(crate) fn swap_has_room<P: Platform>(&self, p: &P) -> bool {
        let s = self.swap.lock(p);
        s.active && s.inuse() < s.total()
    }

    /// `get_swap_page`: a free slot with count 1 (the caller's reference), or `None` when the
    /// device is full or off.
    pub(crate) fn get_swap_page<P: Platform>(&self, p: &P) -> Option<SwapEntry> {
        self.swap.lock(p).alloc()
    }

    /// `swap_duplicate`: one more user of a slot.
    pub(crate) fn swap_duplicate<P: Platform>(&self, p: &P, e: SwapEntry) {
        let mut s = self.swap.lock(p);
        let c = &mut s.map[e.offset as usize];
        debug_assert!(*c > 0, "swap_duplicate of a free slot");
        if *c < SWAP_MAP_MAX {
            *c += 1;
        }
    }

    /// `swap_free`: one user less; returns the remaining count. A slot that reaches zero is
    /// free and its block forgotten.
    pub(crate) fn swap_free<P: Platform>(&self, p: &P, e: SwapEntry) -> u16 {
        let left = self.swap.lock(p).put(e);
        let Some(left) = left else {
            Self::free_slot_bug(p, e)
        };
        if left == 0 {
            p.block_discard(BlockDev::Swap(e.typ), e.offset as u64);
        }
        left
    }

    #[cold]
    fn free_slot_bug<P: Platform>(p: &P, e: SwapEntry) -> ! {
        p.bug(crate::platform::BugReport {
            kind: "swap_free of a free slot",
            message: alloc::format!("swap entry {:?} freed with count 0", e),
        })
    }

    /// Use count of a slot.
    pub(crate) fn swap_count<P: Platform>(&self, p: &P, e: SwapEntry) -> u16 {
        self.swap.lock(p).count(e)
    }

    /// `add_to_swap_cache`: `pfn` holds (or will hold) slot `e`'s data. Takes a reference on
    /// the page and one on the slot. Returns false if the slot already has a page.
    pub(crate) fn add_to_swap_cache<P: Platform>(&self, p: &P, pfn: Pfn, e: SwapEntry) -> bool {
        {
            let mut s = self.swap.lock(p);
            if s.cache.contains_key(&e.offset) {
                return false;
            }
            s.cache.insert(e.offset, pfn);
            let c = &mut s.map[e.offset as usize];
            if *c < SWAP_MAP_MAX {
                *c += 1;
            }
        }
        let d = self.mem_map.desc(pfn);
        d.set_flag(PageFlags::SWAPCACHE);
        d.set_private(e.offset);
        d.get_page();
        true
    }

    /// The swap entry of a page in the swap cache.
    pub(crate) fn page_swap_entry(&self, pfn: Pfn) -> Option<SwapEntry> {
        let d = self.mem_map.desc(pfn);
        if d.test_flag(PageFlags::SWAPCACHE) {
            SwapEntry::new(0, d.private())
        } else {
            None
        }
    }

    /// `delete_from_swap_cache`: drop the cache's slot reference and page reference. Returns
    /// the page's remaining count (the caller frees it at zero).
    pub(crate) fn delete_from_swap_cache<P: Platform>(&self, p: &P, pfn: Pfn) -> u32 {
        self.delete_if(p, pfn, |_, _| true)
            .unwrap_or_else(|| self.mem_map.desc(pfn).count())
    }

    /// Take `pfn` out of the swap cache if it is there and `ok(page, slot count)` holds, all
    /// under `swap_lock` with nothing in between that could let another task run (a lock
    /// operation may; host bookkeeping does not). Returns the page's remaining count.
    pub(crate) fn delete_if<P: Platform>(
        &self,
        p: &P,
        pfn: Pfn,
        ok: impl FnOnce(&crate::page_alloc::PageDesc, u16) -> bool,
    ) -> Option<u32> {
        let d = self.mem_map.desc(pfn);
        let (left, discard) = {
            let mut s = self.swap.lock(p);
            let e = self.page_swap_entry(pfn)?;
            if s.cache_page(e) != Some(pfn) || !ok(d, s.count(e)) {
                return None;
            }
            s.cache.remove(&e.offset);
            d.clear_flag(PageFlags::SWAPCACHE);
            d.set_private(0);
            let discard = (s.put(e) == Some(0)).then_some(e);
            (d.put_page(), discard)
        };
        if let Some(e) = discard {
            p.block_discard(BlockDev::Swap(e.typ), e.offset as u64);
        }
        Some(left)
    }

    /// `lookup_swap_cache`: the page for `e` with a reference taken, waiting while it is
    /// under I/O. The reference is taken under `swap_lock`, so the page cannot be freed
    /// between the lookup and the reference.
    pub(crate) fn lookup_swap_cache<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        e: SwapEntry,
    ) -> Option<Pfn> {
        loop {
            let found = {
                let s = self.swap.lock(cx.p());
                let pfn = s.cache_page(e)?;
                let d = self.mem_map.desc(pfn);
                if d.test_flag(PageFlags::LOCKED) {
                    Err(pfn)
                } else {
                    d.get_page();
                    Ok(pfn)
                }
            };
            match found {
                Ok(pfn) => return Some(pfn),
                Err(pfn) => self.wait_on_page(cx, pfn),
            }
        }
    }

    fn page_key(pfn: Pfn) -> WaitQueueKey {
        WaitQueueKey(PAGE_WAIT_KEY_BASE + pfn.0)
    }

    /// `wait_on_page_locked`.
    pub(crate) fn wait_on_page<P: Platform>(&self, cx: &mut SleepCtx<'_, P>, pfn: Pfn) {
        loop {
            let key = Self::page_key(pfn);
            let token = cx.p().prepare_to_wait(key);
            if !self.mem_map.desc(pfn).test_flag(PageFlags::LOCKED) {
                return;
            }
            cx.sleep_on(key, token, "page I/O", "wait_on_page_locked");
        }
    }

    /// `TryLockPage`: lock a page for I/O; false if someone else has it.
    pub(crate) fn trylock_page(&self, pfn: Pfn) -> bool {
        !self.mem_map.desc(pfn).test_and_set_flag(PageFlags::LOCKED)
    }

    /// `unlock_page`: wake whoever waits for the I/O.
    pub(crate) fn unlock_page<P: Platform>(&self, p: &P, pfn: Pfn) {
        self.mem_map.desc(pfn).clear_flag(PageFlags::LOCKED);
        p.wake_up_all(Self::page_key(pfn));
    }

    /// `rw_swap_page(READ)` of a locked page (may sleep).
    pub(crate) fn swap_readpage<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        pfn: Pfn,
        e: SwapEntry,
    ) {
        self.rw_swap_page(cx, pfn, e, false);
    }

    /// `swap_writepage` of a locked page (may sleep).
    pub(crate) fn swap_writepage<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        pfn: Pfn,
        e: SwapEntry,
    ) {
        self.rw_swap_page(cx, pfn, e, true);
    }

    /// One page of swap I/O (may sleep).
    fn rw_swap_page<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        pfn: Pfn,
        e: SwapEntry,
        write: bool,
    ) {
        cx.p().might_sleep(if write {
            "swap_writepage"
        } else {
            "swap_readpage"
        });
        // SAFETY: the caller holds `pfn` locked in the swap cache (a read fills a page nobody
        // maps yet; a write only reads it).
        unsafe {
            cx.p()
                .block_io(BlockDev::Swap(e.typ), e.offset as u64, pfn, write)
        };
        self.counters.inc(if write {
            Counter::Pswpout
        } else {
            Counter::Pswpin
        });
    }

    /// `read_swap_cache_async` for a fault: the page of `e` with a reference, read in if it
    /// is not cached. `None` when no page can be allocated; `Some(None)` when the slot was
    /// freed meanwhile (the pte changed: retry the fault).
    pub(crate) fn swapin_page<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        e: SwapEntry,
        site: &'static str,
    ) -> Option<Option<Pfn>> {
        if let Some(pfn) = self.lookup_swap_cache(cx, e) {
            return Some(Some(pfn));
        }
        let new = self.alloc_pages(
            cx,
            crate::page_alloc::GFP_HIGHUSER,
            0,
            crate::page_alloc::PageOwner::User,
            site,
        )?;
        // the allocation may have slept: look again
        if let Some(pfn) = self.lookup_swap_cache(cx, e) {
            self.free_pages(cx, new, 0);
            return Some(Some(pfn));
        }
        if self.swap_count(cx.p(), e) == 0 {
            self.free_pages(cx, new, 0);
            return Some(None);
        }
        self.mem_map
            .desc(new)
            .set_flag(PageFlags::ANON | PageFlags::LOCKED);
        let added = self.add_to_swap_cache(cx.p(), new, e);
        debug_assert!(added);
        self.swap_readpage(cx, new, e);
        self.mem_map.desc(new).set_flag(PageFlags::UPTODATE);
        self.unlock_page(cx.p(), new);
        self.counters.inc(Counter::FaultsMajor);
        Some(Some(new))
    }

    /// Drop a page reference; free the page at zero. A page left with only the swap cache's
    /// reference and a slot no pte or object uses any more leaves the cache and is freed
    /// (`free_page_and_swap_cache`).
    pub(crate) fn put_user_page<P: Platform>(&self, cx: &Ctx<'_, P>, pfn: Pfn) {
        let d = self.mem_map.desc(pfn);
        let left = d.put_page();
        if left == 0 {
            self.free_pages(cx, pfn, 0);
            return;
        }
        if left == 1 && d.mapcount() == 0 && d.test_flag(PageFlags::SWAPCACHE) {
            let gone = self.delete_if(cx.p(), pfn, |d, slot| {
                slot == 1 && d.count() == 1 && d.mapcount() == 0 && !d.test_flag(PageFlags::LOCKED)
            });
            match gone {
                Some(0) => self.free_pages(cx, pfn, 0),
                Some(_) => {}
                // other ptes still hold its slot: a candidate for write-out
                None => self.page_deactivate(pfn),
            }
        }
    }

    /// `free_swap_and_cache`: a pte or object gives up its swap entry. If only the swap cache
    /// holds the slot now and nobody uses the cached page, both go.
    pub(crate) fn free_swap_and_cache<P: Platform>(&self, cx: &Ctx<'_, P>, e: SwapEntry) {
        let p = cx.p();
        let (pfn, discard) = {
            let mut s = self.swap.lock(p);
            let Some(left) = s.put(e) else {
                drop(s);
                Self::free_slot_bug(p, e)
            };
            let pfn = if left == 1 { s.cache_page(e) } else { None };
            (pfn, left == 0)
        };
        if discard {
            p.block_discard(BlockDev::Swap(e.typ), e.offset as u64);
        }
        if let Some(pfn) = pfn {
            let gone = self.delete_if(p, pfn, |d, slot| {
                slot == 1 && d.count() == 1 && d.mapcount() == 0 && !d.test_flag(PageFlags::LOCKED)
            });
            if gone == Some(0) {
                self.free_pages(cx, pfn, 0);
            }
        }
    }

    /// `can_share_swap_page` for a write fault on a page in the swap cache: true if the only
    /// users are the one pte and the cache; the page then leaves the cache (its slot is freed)
    /// and the faulting process owns it.
    pub(crate) fn reuse_swap_page<P: Platform>(&self, p: &P, pfn: Pfn) -> bool {
        let d = self.mem_map.desc(pfn);
        if !d.test_flag(PageFlags::SWAPCACHE) {
            return false;
        }
        let gone = self.delete_if(p, pfn, |d, slot| {
            slot == 1 && d.mapcount() == 1 && d.count() == 2 && !d.test_flag(PageFlags::LOCKED)
        });
        if gone.is_some() {
            d.set_flag(PageFlags::DIRTY);
        }
        gone.is_some()
    }
}
