//! Reclaim: freeing memory when an allocation finds none.
//!
//! Two designs, chosen at boot ([`ReclaimKind`]):
//!
//! * **scan** (2.4 and 2.5 before rmap, `swap_out`): walk the page tables of every process in
//!   turn, pte page by pte page through `pte_offset_map`. A pte whose accessed bit is set had
//!   its page used since the last pass: clear the bit (age it) and move on. Otherwise unmap the
//!   page: an anonymous page gets a swap slot and goes to the swap cache, its pte becomes the
//!   swap entry; a shared page's pte is just cleared (its object keeps it). Then
//!   `shrink_cache` writes out and frees the pages nobody maps any more.
//! * **rmap** (Rik van Riel's VM, 2.5.27+): walk the *pages* instead, by a clock over every
//!   mapped user page, and unmap each through its reverse-map chain — the physical addresses
//!   of the ptes that map it, each mapped with the third atomic slot `KM_PTE2`. See
//!   [`crate::mm::rmap`].
//!
//! Reclaim never holds a pte mapping or a spinlock across anything that may sleep: the
//! walkers collect what they unmapped and drop their mapping and lock before any write-out.
//! It takes other processes' `mmap_sem` only with `down_read_trylock`, since the caller may
//! hold its own.

mod scan;

use crate::counters::Counter;
use crate::ctx::SleepCtx;
use crate::kernel::Kernel;
use crate::mm::shm::{ObjSlot, ShmObject};
use crate::page_alloc::Watermark;
use crate::page_alloc::{PageFlags, ZoneType};
use crate::platform::{Platform, WaitQueueKey};
use alloc::collections::VecDeque;
use alloc::rc::Rc;
use core::cell::{Cell, RefCell};
use core::fmt;
use highpte_arch::{PagingMode, Pfn};

/// Reclaim rounds, each scanning twice as hard as the one before (`DEF_PRIORITY`).
pub const DEF_PRIORITY: u32 = 6;

/// Pages reclaim tries to free per call (`SWAP_CLUSTER_MAX`).
pub const SWAP_CLUSTER_MAX: u64 = 32;

/// How memory is reclaimed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReclaimKind {
    /// Scan process page tables (`swap_out`), the 2.5.5 default.
    Scan,
    /// Reverse maps: per-page chains of pte addresses (Rik van Riel's VM).
    Rmap,
}

impl ReclaimKind {
    /// Both.
    pub const ALL: [ReclaimKind; 2] = [ReclaimKind::Scan, ReclaimKind::Rmap];
    /// The command-line name.
    pub const fn name(self) -> &'static str {
        match self {
            ReclaimKind::Scan => "scan",
            ReclaimKind::Rmap => "rmap",
        }
    }
    /// Parse a command-line name.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.name() == s)
    }
}

impl fmt::Display for ReclaimKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of zones: the zones a reclaim pass frees pages in.
///
/// An allocation can use the zones of its zonelist, the *classzone* and the zones below it
/// (2.4's `memclass`: a `GFP_KERNEL` request cannot use a high page, a `GFP_HIGHUSER` one can
/// use any). Reclaim for it frees pages only there, as 2.4's `shrink_cache` and
/// `try_to_swap_out` skip pages outside the classzone and 2.5's `shrink_caches` visits only
/// the classzone's zones: freeing high-memory cache for a request that needs low memory
/// helps nobody.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct ZoneMask(u8);

impl ZoneMask {
    /// No zone.
    pub const NONE: ZoneMask = ZoneMask(0);
    /// Every zone.
    pub const ALL: ZoneMask = ZoneMask(0b111);
    /// One zone.
    pub const fn of(zone: ZoneType) -> Self {
        ZoneMask(1 << zone as u8)
    }
    /// The zones an allocation whose first zone is `classzone` may use: it and those below.
    pub const fn classzone(classzone: ZoneType) -> Self {
        ZoneMask((2u8 << classzone as u8) - 1)
    }
    /// True if `zone` is in the set.
    pub const fn contains(self, zone: ZoneType) -> bool {
        self.0 & (1 << zone as u8) != 0
    }
    /// The set with `zone` added.
    pub const fn with(self, zone: ZoneType) -> Self {
        ZoneMask(self.0 | 1 << zone as u8)
    }
    /// True if the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// The wait queue kswapd sleeps on (`kswapd_wait`).
pub const KSWAPD_WAIT: WaitQueueKey = WaitQueueKey(0x6b73_7761_7064_0000);
/// The wait queue kswapd wakes when it goes back to sleep.
pub const KSWAPD_IDLE: WaitQueueKey = WaitQueueKey(0x6b73_7761_7064_0001);

/// Reclaim's cursors and statistics.
#[derive(Default)]
pub struct ReclaimState {
    /// A kswapd thread runs.
    kswapd_running: Cell<bool>,
    /// kswapd was woken and has not finished balancing.
    kswapd_awake: Cell<bool>,
    /// The process whose address space the scan visits next (`swap_mm`).
    next_mm: Cell<u32>,
    /// The shared object the shared-memory shrinker visits next.
    next_obj: Cell<usize>,
    /// Pages (scan: ptes of user pages) looked at, per zone of the page.
    pub(crate) scanned: [Cell<u64>; 3],
    /// Pages freed by reclaim, per zone.
    pub(crate) reclaimed: [Cell<u64>; 3],
    /// Swap-cache pages that nobody mapped when they were queued (the inactive list);
    /// entries are re-checked when taken.
    inactive: RefCell<VecDeque<Pfn>>,
}

fn bump(c: &Cell<u64>) {
    c.set(c.get() + 1);
}

impl<M: PagingMode> Kernel<M> {
    /// Pages scanned and reclaimed in `zone` since boot.
    pub fn reclaim_stats(&self, zone: ZoneType) -> (u64, u64) {
        (
            self.reclaim.scanned[zone as usize].get(),
            self.reclaim.reclaimed[zone as usize].get(),
        )
    }

    /// True if anonymous pages can be reclaimed: a swap device has room, or pages already
    /// in the swap cache can be unmapped without a new slot. Without either an anonymous
    /// page has nowhere to go (2.5's `add_to_swap` fails), so reclaim does not look for
    /// them.
    pub(crate) fn anon_reclaimable<P: Platform>(&self, p: &P) -> bool {
        self.swap_has_room(p) || self.swap.lock(p).cached() > 0
    }

    /// True if reclaim might free something in `zones`: pages on the swap cache's inactive
    /// list, a swap device with room, or page-cache pages there.
    pub(crate) fn reclaim_can_help<P: Platform>(&self, p: &P, zones: ZoneMask) -> bool {
        !self.reclaim.inactive.borrow().is_empty()
            || self.swap_has_room(p)
            || self.page_cache_pages_in(zones) > 0
    }

    /// True if scanning page tables can free something in `zones`: anonymous pages can go to
    /// swap, or page-cache pages there can be unmapped.
    fn scan_can_help<P: Platform>(&self, p: &P, zones: ZoneMask) -> bool {
        self.anon_reclaimable(p) || self.page_cache_pages_in(zones) > 0
    }

    /// The zones reclaim for an allocation with `classzone` works on: those of the classzone
    /// under their `pages_high` watermark (2.5's `shrink_caches` skips a zone with enough
    /// free memory), or the whole classzone if none is (the request failed all the same, a
    /// higher order for instance).
    pub(crate) fn zones_to_reclaim<P: Platform>(&self, p: &P, classzone: ZoneType) -> ZoneMask {
        let class = ZoneMask::classzone(classzone);
        let mut short = ZoneMask::NONE;
        for z in ZoneType::ALL {
            if !class.contains(z) {
                continue;
            }
            let low = self.page_alloc.with_zone(p, z, |g| {
                g.managed_pages() > 0 && !g.watermark_ok(0, Watermark::High)
            });
            if low {
                short = short.with(z);
            }
        }
        if short.is_empty() {
            class
        } else {
            short
        }
    }

    /// `try_to_free_pages`: free up to `want` pages that an allocation whose zonelist starts
    /// at `classzone` can use. Returns the pages freed there. May sleep.
    pub fn try_to_free_pages<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        classzone: ZoneType,
        want: u64,
    ) -> u64 {
        let zones = self.zones_to_reclaim(cx.p(), classzone);
        self.shrink_zones(cx, zones, want)
    }

    /// Free up to `want` pages in `zones`. Returns the pages freed there. May sleep.
    ///
    /// Like 2.4's priorities (`DEF_PRIORITY` 6 down to 0), each round that falls short looks
    /// further down the page-cache lists and asks the page-table scan to unmap twice as many
    /// pages as the one before: a page is freed only once *every* pte that maps it is gone,
    /// which for a page shared by many processes takes a scan of each of them. Only pages of
    /// `zones` are freed or unmapped, and the page-cache lists are visited from the highest
    /// zone down (2.5's `shrink_caches`), so a request that may use high memory takes its
    /// pages there first.
    pub(crate) fn shrink_zones<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        zones: ZoneMask,
        want: u64,
    ) -> u64 {
        let mut freed = 0;
        for priority in (0..=DEF_PRIORITY).rev() {
            // clean page cache first, before anonymous memory
            freed += self.prune_inodes(cx, zones);
            for zone in ZoneType::ALL.into_iter().rev() {
                if freed >= want {
                    break;
                }
                if !zones.contains(zone) {
                    continue;
                }
                let lru = self.fs.lru[zone as usize].borrow().len() as u64;
                let left = want - freed;
                freed += self.shrink_page_cache_zone(
                    cx,
                    zone,
                    left,
                    (left * 32 + 64).max(lru >> priority),
                );
            }
            if freed < want {
                freed += self.shrink_cache(cx, zones, want - freed, priority);
            }
            if freed < want {
                freed += self.shrink_shared(cx, zones, want - freed);
            }
            if freed >= want || !self.scan_can_help(cx.p(), zones) {
                break;
            }
            let target = want << (DEF_PRIORITY - priority);
            match self.opts.reclaim {
                ReclaimKind::Scan => {
                    self.swap_out(cx, zones, target);
                }
                ReclaimKind::Rmap => {
                    self.rmap_reclaim(cx, zones, target, priority);
                }
            }
        }
        freed
    }

    /// `wakeup_kswapd`: a zone fell under `pages_low`; the daemon reclaims in the background
    /// until every zone is back above `pages_high`.
    pub(crate) fn wakeup_kswapd<P: Platform>(&self, p: &P) {
        if self.reclaim.kswapd_running.get() && !self.reclaim.kswapd_awake.get() {
            self.reclaim.kswapd_awake.set(true);
            self.counters.inc(Counter::KswapdWakeups);
            p.wake_up_all(KSWAPD_WAIT);
        }
    }

    /// Pages `zone` needs to be back at its `pages_high` watermark (0 for an empty zone).
    fn zone_shortage<P: Platform>(&self, p: &P, zone: ZoneType) -> u64 {
        self.page_alloc.with_zone(p, zone, |g| {
            if g.managed_pages() == 0 {
                return 0;
            }
            g.watermarks().high.saturating_sub(g.free_pages())
        })
    }

    /// The body of `kswapd`, a kernel thread that never returns: sleep until an allocation
    /// leaves a zone under `pages_low`, then reclaim (`balance_pgdat`): each zone under
    /// `pages_high` gets back what it lacks, `SWAP_CLUSTER_MAX` pages per pass and only pages
    /// of that zone, until every zone is above `pages_high` again or no zone short of pages
    /// can make progress. It runs with or without swap: clean page cache can always be
    /// dropped. The machine runs it as a daemon (a run ends when only daemons are left,
    /// asleep).
    pub fn kswapd<P: Platform>(&self, cx: &mut SleepCtx<'_, P>) -> i32 {
        let p = cx.p();
        self.reclaim.kswapd_running.set(true);
        loop {
            let token = p.prepare_to_wait(KSWAPD_WAIT);
            if !self.reclaim.kswapd_awake.get() {
                cx.sleep_on(KSWAPD_WAIT, token, "kswapd wait", "kswapd");
                continue;
            }
            // zones that made no progress are left alone until the next wakeup
            let mut stuck = ZoneMask::NONE;
            let mut rounds = 0;
            while rounds < 64 {
                let mut progress = false;
                for zone in ZoneType::ALL {
                    let short = self.zone_shortage(p, zone);
                    if short == 0 || stuck.contains(zone) {
                        continue;
                    }
                    let mask = ZoneMask::of(zone);
                    if !self.reclaim_can_help(p, mask) {
                        stuck = stuck.with(zone);
                        continue;
                    }
                    rounds += 1;
                    self.counters.inc(Counter::KswapdRuns);
                    if self.shrink_zones(cx, mask, short.min(SWAP_CLUSTER_MAX)) == 0 {
                        stuck = stuck.with(zone);
                    } else {
                        progress = true;
                    }
                }
                if !progress {
                    break;
                }
                cx.cond_resched();
            }
            self.reclaim.kswapd_awake.set(false);
            p.wake_up_all(KSWAPD_IDLE);
        }
    }

    /// Wait until kswapd is asleep (the invariant checker needs a quiet machine).
    pub(crate) fn wait_kswapd_idle<P: Platform>(&self, cx: &mut SleepCtx<'_, P>) {
        loop {
            let token = cx.p().prepare_to_wait(KSWAPD_IDLE);
            if !self.reclaim.kswapd_awake.get() {
                return;
            }
            cx.sleep_on(KSWAPD_IDLE, token, "kswapd to finish", "check_invariants");
        }
    }

    /// Remember a new shared-memory object for reclaim.
    pub(crate) fn register_shared_object(&self, obj: &Rc<ShmObject>) {
        self.shm.register(obj);
    }

    /// Swap out pages of shared-memory objects in `zones` that no pte maps
    /// (`shmem_writepage`): each goes to a fresh slot that the object's index then holds, and
    /// is freed. Returns the pages freed.
    ///
    /// No reference to an object is held across the write (it may sleep, and a reference
    /// would keep the last detach from releasing the object). The slot is recorded in the
    /// object and the page copied to the device in one step with nothing in between that
    /// could let another task run, so a fault that finds the slot always reads the data.
    fn shrink_shared<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        zones: ZoneMask,
        want: u64,
    ) -> u64 {
        let p = cx.p();
        if !self.swap_has_room(p) {
            return 0;
        }
        let n = self.shm.prune();
        if n == 0 {
            return 0;
        }
        let mut freed = 0;
        let start = self.reclaim.next_obj.get() % n;
        for k in 0..n {
            let i = (start + k) % n;
            let Some(w) = self.shm.object(i) else {
                break;
            };
            let mut idx = 0;
            loop {
                if freed >= want {
                    self.reclaim.next_obj.set(i);
                    return freed;
                }
                // find the next unused page, holding the object only while looking
                let found = {
                    let Some(obj) = w.upgrade() else { break };
                    let mut found = None;
                    while idx < obj.nr_pages() {
                        if let ObjSlot::Page(pfn) = obj.slot(idx) {
                            let d = self.mem_map.desc(pfn);
                            if d.count() == 1
                                && d.mapcount() == 0
                                && !d.test_flag(PageFlags::LOCKED)
                                && zones.contains(self.page_zone(pfn))
                            {
                                found = Some((idx, pfn));
                                break;
                            }
                        }
                        idx += 1;
                    }
                    found
                };
                let Some((at, pfn)) = found else { break };
                idx = at + 1;
                let Some(e) = self.get_swap_page(p) else {
                    return freed;
                };
                // the lock may have let others run: look again, then record and write
                // without anything in between
                let Some(obj) = w.upgrade() else {
                    self.swap_free(p, e);
                    break;
                };
                let d = self.mem_map.desc(pfn);
                if obj.slot(at) != ObjSlot::Page(pfn) || d.count() != 1 || d.mapcount() != 0 {
                    drop(obj);
                    self.swap_free(p, e);
                    continue;
                }
                obj.set_swapped(at, e);
                drop(obj);
                // the object's page reference is ours now
                let zone = self.page_zone(pfn) as usize;
                bump(&self.reclaim.scanned[zone]);
                self.swap_writepage(cx, pfn, e);
                d.put_page();
                self.free_pages(cx, pfn, 0);
                bump(&self.reclaim.reclaimed[zone]);
                self.counters.inc(Counter::PgSteal);
                freed += 1;
            }
        }
        self.reclaim.next_obj.set(start + 1);
        freed
    }

    /// Queue a swap-cache page that nobody maps any more for [`Kernel::shrink_cache`]
    /// (the inactive list).
    pub(crate) fn page_deactivate(&self, pfn: Pfn) {
        self.reclaim.inactive.borrow_mut().push_back(pfn);
    }

    /// Write out and free swap-cache pages in `zones` that no pte maps and no one else holds
    /// (`shrink_cache` over the inactive list; pages of other zones stay queued). Looks at
    /// up to 1/2^`priority` of the list (at least four entries per page wanted), as 2.4's
    /// `max_scan = nr_inactive_pages / priority`: entries whose page was mapped again or left
    /// the cache are dropped on the way, and the pages the page-table scan just unmapped sit
    /// at the back. Returns the pages freed.
    pub(crate) fn shrink_cache<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        zones: ZoneMask,
        want: u64,
        priority: u32,
    ) -> u64 {
        let p = cx.p();
        let mut freed = 0;
        let mut looked = 0;
        let queued = self.reclaim.inactive.borrow().len() as u64;
        let limit = (want * 4).max(queued >> priority).min(queued);
        while freed < want && looked < limit {
            let Some(pfn) = self.reclaim.inactive.borrow_mut().pop_front() else {
                break;
            };
            looked += 1;
            let d = self.mem_map.desc(pfn);
            // still in the cache, unused, and ours to lock?
            let Some(e) = self.page_swap_entry(pfn) else {
                continue;
            };
            if d.count() != 1 || d.mapcount() != 0 {
                continue;
            }
            if !zones.contains(self.page_zone(pfn)) {
                // not what this reclaim is for: leave it queued
                self.reclaim.inactive.borrow_mut().push_back(pfn);
                continue;
            }
            if !self.trylock_page(pfn) {
                continue;
            }
            d.get_page(); // ours while the I/O sleeps
            let zone = self.page_zone(pfn) as usize;
            bump(&self.reclaim.scanned[zone]);
            if d.test_and_clear_flag(PageFlags::DIRTY) {
                self.swap_writepage(cx, pfn, e);
            }
            self.unlock_page(p, pfn);
            d.put_page();
            // someone may have mapped or dirtied it while it was written
            let gone = self.delete_if(p, pfn, |d, _| {
                d.count() == 1
                    && d.mapcount() == 0
                    && !d.test_flag(PageFlags::DIRTY)
                    && !d.test_flag(PageFlags::LOCKED)
            });
            match gone {
                Some(0) => {
                    self.free_pages(cx, pfn, 0);
                    bump(&self.reclaim.reclaimed[zone]);
                    self.counters.inc(Counter::PgSteal);
                    freed += 1;
                }
                Some(_) => {}
                None if d.count() == 1 && d.mapcount() == 0 => self.page_deactivate(pfn),
                None => {}
            }
        }
        freed
    }
}
