//! The page allocator subsystem: the three zones (each under its zone lock), the count of
//! pages per (zone, owner) and the fault-injection hook. Its fields are private; the kernel
//! reaches it through the methods here and hands it the page descriptors (`mem_map`) and
//! the platform it needs. Reclaim, kswapd wake-ups and `might_sleep` stay with the caller
//! (`Kernel::alloc_pages`): this is the part below them.

use super::{zonelist, GfpFlags, MemMap, PageFlags, PageOwner, Watermark, Zone, ZoneType};
use crate::fault_inject::FailInjection;
use crate::platform::{BugReport, Platform};
use crate::sync::{LockStats, SpinLock};
use alloc::format;
use core::cell::Cell;
use highpte_arch::Pfn;

/// Pages by (zone, owner), indexed `[ZoneType as usize][PageOwner as usize]`.
pub(crate) type OwnerPages = [[Cell<u64>; PageOwner::COUNT]; 3];

/// A page the allocator handed out, and whether its zone fell under `pages_low` doing so
/// (the caller should wake kswapd).
pub(crate) struct Allocated {
    /// The first page of the block.
    pub(crate) pfn: Pfn,
    /// The zone is now under its low watermark.
    pub(crate) zone_low: bool,
}

/// The zones, their owner accounting and the allocation fault injector.
pub(crate) struct PageAllocator {
    /// DMA, Normal, HighMem, each under its zone lock.
    zones: [SpinLock<Zone>; 3],
    /// Pages by (zone, owner), for "where did low memory go".
    owner_pages: OwnerPages,
    /// Fault injection: page allocations fail from a chosen point on.
    fail_allocs: FailInjection,
    /// How a zone fallen back to keeps a reserve: 2.5's sum of the watermarks of the zones
    /// before it, or 6.1's `lowmem_reserve`.
    rules: ZoneRules,
}

/// How zones fallen back to along a zonelist keep memory for the requests that need it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum ZoneRules {
    /// 2.4/2.5's `__alloc_pages`: the watermark adds up along the zonelist
    /// (`min += z->pages_low`), and atomic requests go down to a quarter of `min`.
    Cumulative,
    /// 6.1's `zone_watermark_ok`: each zone keeps its own watermark plus its
    /// `lowmem_reserve` for the request's highest zone, and `GFP_ATOMIC` goes down to three
    /// eighths of `min`.
    LowmemReserve,
}

impl PageAllocator {
    /// The allocator after boot: `zones` hold the free memory, `owner_pages` counts what boot
    /// reserved.
    pub(crate) fn new(zones: [Zone; 3], owner_pages: OwnerPages, rules: ZoneRules) -> Self {
        Self {
            zones: zones.map(|z| SpinLock::new(zone_lock_name(z.ty()), z)),
            owner_pages,
            fail_allocs: FailInjection::default(),
            rules,
        }
    }

    /// The fault injector (policy, statistics, and the per-request decision).
    pub(crate) fn fail_injection(&self) -> &FailInjection {
        &self.fail_allocs
    }

    /// Pages of `owner` in `zone`.
    pub(crate) fn owner_pages(&self, zone: ZoneType, owner: PageOwner) -> u64 {
        self.owner_pages[zone as usize][owner as usize].get()
    }

    /// Add (or, with `add` false, remove) `pages` pages of `owner` in `zone`.
    pub(crate) fn account(&self, zone: ZoneType, owner: PageOwner, pages: u64, add: bool) {
        let c = &self.owner_pages[zone as usize][owner as usize];
        if add {
            c.set(c.get() + pages);
        } else {
            c.set(c.get() - pages);
        }
    }

    /// Run `f` on `zone` under its zone lock (read-only).
    pub(crate) fn with_zone<P: Platform, R>(
        &self,
        p: &P,
        zone: ZoneType,
        f: impl FnOnce(&Zone) -> R,
    ) -> R {
        f(&self.zones[zone as usize].lock(p))
    }

    /// `zone` read without its lock, after the simulation stopped.
    ///
    /// # Safety
    /// The machine must be stopped: no simulated task may run while the reference lives.
    pub(crate) unsafe fn zone_stopped(&self, zone: ZoneType) -> &Zone {
        // SAFETY: forwarded to the caller.
        unsafe { self.zones[zone as usize].peek_stopped() }
    }

    /// The acquisition counters of `zone`'s lock.
    pub(crate) fn zone_lock_stats(&self, zone: ZoneType) -> LockStats {
        self.zones[zone as usize].stats()
    }

    /// One pass over `gfp`'s zonelist at the low watermark, then at the minimum; the block
    /// found is prepared (owner, count, HIGHMEM flag) and accounted.
    pub(crate) fn alloc_from_zones<P: Platform>(
        &self,
        p: &P,
        mem_map: &MemMap,
        gfp: GfpFlags,
        order: u32,
        owner: PageOwner,
    ) -> Option<Allocated> {
        // __alloc_pages: every zone keeping pages_low free, then again down to pages_min
        // (less for requests that cannot sleep), each zone also keeping a reserve for the
        // requests that need it (see ZoneRules).
        let min = match (gfp.can_sleep(), self.rules) {
            (true, _) => Watermark::Min,
            (false, ZoneRules::Cumulative) => Watermark::AtomicMin,
            // 6.1: GFP_ATOMIC (__GFP_HIGH) dips to three eighths of min; a request without
            // it keeps min: the simulator's 6.1 page-table allocations, GFP_KERNEL in 6.1,
            // made where the simulator cannot sleep (the fault path then calls the OOM
            // killer, as 6.1's allocator would after a reclaim that finds nothing)
            (false, ZoneRules::LowmemReserve) if gfp.contains(GfpFlags::HIGH) => {
                Watermark::AtomicMin61
            }
            (false, ZoneRules::LowmemReserve) => Watermark::Min,
        };
        let list = zonelist(gfp);
        for wm in [Watermark::Low, min] {
            // 2.5: the watermark adds up along the zonelist (`min += z->pages_low`), see
            // alloc_from_zonelist; 6.1: lowmem_reserve for the list's highest zone
            let mut reserve = 0;
            for &zt in list {
                let (got, low) = {
                    let mut z = self.zones[zt as usize].lock(p);
                    if self.rules == ZoneRules::LowmemReserve {
                        reserve = z.lowmem_reserve(list[0]);
                    }
                    let got = z.alloc_above(mem_map, order, wm, reserve);
                    if self.rules == ZoneRules::Cumulative {
                        reserve += wm.pages(&z.watermarks());
                    }
                    (got, !z.watermark_ok(0, Watermark::Low))
                };
                if let Ok(pfn) = got {
                    self.prep_new_page(mem_map, pfn, order, owner, zt);
                    return Some(Allocated { pfn, zone_low: low });
                }
            }
        }
        None
    }

    fn prep_new_page(
        &self,
        mem_map: &MemMap,
        pfn: Pfn,
        order: u32,
        owner: PageOwner,
        zt: ZoneType,
    ) {
        let n = 1u64 << order;
        for i in 0..n {
            let d = mem_map.desc(Pfn(pfn.0 + i));
            d.set_owner(owner);
            d.set_count(if i == 0 { 1 } else { 0 });
            if zt == ZoneType::HighMem {
                d.set_flag(PageFlags::HIGHMEM);
            }
        }
        self.account(zt, owner, n, true);
    }

    /// `__free_pages(page, order)` for a block of `zone`: reset its descriptors, unaccount it
    /// and return it to the buddy allocator. Freeing a page twice or a page the allocator does
    /// not own is a bug report.
    pub(crate) fn free_pages<P: Platform>(
        &self,
        p: &P,
        mem_map: &MemMap,
        pfn: Pfn,
        order: u32,
        zone: ZoneType,
    ) {
        let n = 1u64 << order;
        let owner = mem_map.desc(pfn).owner();
        let bad = PageFlags::SWAPCACHE | PageFlags::LOCKED;
        if mem_map.desc(pfn).flags().intersects(bad) {
            p.bug(BugReport {
                kind: "bad page free",
                message: format!(
                    "freeing pfn {:#x} still {:?}",
                    pfn.0,
                    mem_map.desc(pfn).flags() & bad
                ),
            });
        }
        for i in 0..n {
            let d = mem_map.desc(Pfn(pfn.0 + i));
            d.set_owner(PageOwner::Free);
            d.clear_flag(
                PageFlags::HIGHMEM
                    | PageFlags::PAGETABLE
                    | PageFlags::ANON
                    | PageFlags::SHARED
                    | PageFlags::DIRTY
                    | PageFlags::REFERENCED
                    | PageFlags::UPTODATE,
            );
            d.set_mapcount(0);
            d.set_count(0);
        }
        self.account(zone, owner, n, false);
        let r = {
            let mut z = self.zones[zone as usize].lock(p);
            z.free(mem_map, pfn, order)
        };
        if let Err(e) = r {
            p.bug(BugReport {
                kind: "bad page free",
                message: format!("freeing pfn {:#x} order {}: {:?}", pfn.0, order, e),
            });
        }
    }
}

/// The lock name of a zone (`zone->lock`), for lock reports.
fn zone_lock_name(t: ZoneType) -> &'static str {
    match t {
        ZoneType::Dma => "zone DMA lock",
        ZoneType::Normal => "zone Normal lock",
        ZoneType::HighMem => "zone HighMem lock",
    }
}
