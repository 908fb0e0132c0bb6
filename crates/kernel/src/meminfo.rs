//! `/proc/meminfo`-style figures and where low memory went.

use crate::kernel::Kernel;
use crate::page_alloc::{PageOwner, ZoneType};
use crate::platform::Platform;
use alloc::vec::Vec;
use highpte_arch::PagingMode;

/// Memory figures in kB, with /proc/meminfo's meanings: totals count the pages the allocator
/// manages (mem_map and boot reservations are not in them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Meminfo {
    /// `MemTotal`.
    pub mem_total: u64,
    /// `MemFree`.
    pub mem_free: u64,
    /// `LowTotal`: DMA + Normal managed.
    pub low_total: u64,
    /// `LowFree`.
    pub low_free: u64,
    /// `HighTotal`.
    pub high_total: u64,
    /// `HighFree`.
    pub high_free: u64,
    /// `PageTables`: user page-table pages (pgd, pmd, pte) in any zone.
    pub page_tables: u64,
    /// Of `PageTables`, in low memory.
    pub page_tables_low: u64,
    /// Of `PageTables`, in high memory.
    pub page_tables_high: u64,
    /// Pages held by page-table pools and quicklists.
    pub pt_pools: u64,
    /// `SwapTotal`.
    pub swap_total: u64,
    /// `SwapFree`.
    pub swap_free: u64,
    /// `SwapCached`: pages in the swap cache.
    pub swap_cached: u64,
    /// Low memory holding reverse-map chains (rmap reclaim only).
    pub pte_chains: u64,
    /// `Cached`: pages in the page cache (file data).
    pub cached: u64,
    /// `Dirty`: page-cache pages waiting to be written to the disk.
    pub dirty: u64,
}

impl<M: PagingMode> Kernel<M> {
    /// The current meminfo.
    pub fn meminfo<P: Platform>(&self, p: &P) -> Meminfo {
        self.meminfo_from(
            |z| {
                self.page_alloc
                    .with_zone(p, z, |g| (g.managed_pages(), g.free_pages()))
            },
            self.swap_usage(p),
        )
    }

    /// The meminfo of a machine that has stopped (a deadlock), read without taking locks:
    /// what the kernel looked like when it stopped.
    ///
    /// # Safety
    /// The machine must be stopped: no simulated task may run while this reads.
    pub unsafe fn meminfo_stopped(&self) -> Meminfo {
        // SAFETY: forwarded to the caller.
        let swap = unsafe { self.swap.peek_stopped() };
        let total = if swap.active || swap.inuse() > 0 {
            swap.total()
        } else {
            0
        };
        self.meminfo_from(
            |z| {
                // SAFETY: forwarded to the caller.
                let g = unsafe { self.page_alloc.zone_stopped(z) };
                (g.managed_pages(), g.free_pages())
            },
            (total, swap.inuse(), swap.cached()),
        )
    }

    /// Meminfo from each zone's (managed, free) pages and the swap usage (total, used, cached).
    fn meminfo_from(
        &self,
        zone: impl Fn(ZoneType) -> (u64, u64),
        swap: (u64, u64, u64),
    ) -> Meminfo {
        let mut m = Meminfo::default();
        for z in ZoneType::ALL {
            let (managed, free) = zone(z);
            if z == ZoneType::HighMem {
                m.high_total += managed * 4;
                m.high_free += free * 4;
            } else {
                m.low_total += managed * 4;
                m.low_free += free * 4;
            }
        }
        m.mem_total = m.low_total + m.high_total;
        m.mem_free = m.low_free + m.high_free;
        let pt_low = self.owner_pages(ZoneType::Dma, PageOwner::PageTable)
            + self.owner_pages(ZoneType::Normal, PageOwner::PageTable);
        let pt_high = self.owner_pages(ZoneType::HighMem, PageOwner::PageTable);
        m.page_tables_low = pt_low * 4;
        m.page_tables_high = pt_high * 4;
        m.page_tables = m.page_tables_low + m.page_tables_high;
        let pool: u64 = ZoneType::ALL
            .iter()
            .map(|z| self.owner_pages(*z, PageOwner::PagePool))
            .sum();
        m.pt_pools = pool * 4;
        let (total, used, cached) = swap;
        m.swap_total = total * 4;
        m.swap_free = (total - used) * 4;
        m.swap_cached = cached * 4;
        m.pte_chains = ZoneType::ALL
            .iter()
            .map(|z| self.owner_pages(*z, PageOwner::PteChain))
            .sum::<u64>()
            * 4;
        m.cached = self.fs.nr_cached.get() * 4;
        m.dirty = self.fs.nr_dirty.get() * 4;
        m
    }

    /// Empty the page-table pools (from outside the kernel, e.g. before a leak check).
    pub fn pt_drain_all_pools_entry<P: Platform>(
        &self,
        cx: &mut crate::ctx::SleepCtx<'_, P>,
    ) -> u64 {
        self.pt_drain_all_pools(cx)
    }

    /// Low-memory pages by owner (free included), for "where did low memory go".
    pub fn lowmem_by_owner(&self) -> Vec<(PageOwner, u64)> {
        PageOwner::ALL
            .iter()
            .filter(|o| **o != PageOwner::Free)
            .map(|o| {
                (
                    *o,
                    self.owner_pages(ZoneType::Dma, *o) + self.owner_pages(ZoneType::Normal, *o),
                )
            })
            .collect()
    }

    /// The zones: (type, start pfn, end pfn, present pages, managed pages, free pages).
    pub fn zone_report<P: Platform>(&self, p: &P) -> Vec<(ZoneType, u64, u64, u64, u64, u64)> {
        ZoneType::ALL
            .iter()
            .map(|t| {
                self.page_alloc.with_zone(p, *t, |z| {
                    (
                        *t,
                        z.start_pfn().0,
                        z.end_pfn().0,
                        z.present_pages(),
                        z.managed_pages(),
                        z.free_pages(),
                    )
                })
            })
            .collect()
    }
}
