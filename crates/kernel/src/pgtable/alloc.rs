//! Where page-table pages come from: the seed's per-CPU pool, 2.4's quicklists, or the buddy.
//!
//! Every page-table page handed out is zero. A page-table page is empty again when it is
//! freed (every entry was cleared before), so the pools keep free pages zeroed and hand them
//! out without clearing: that is most of what a pool saves. pgd pages carry kernel entries,
//! which `pgd_free` clears before the page goes back.
//!
//! Pools are per CPU and touched only by their own CPU with preemption disabled. Two pools per
//! CPU: low pages (pgd, pmd, and pte pages without HIGHPTE) and high pages (user pte pages with
//! HIGHPTE).
//!
//! - `pool` (the seed's proposal): at most `pool_high` pages per pool; an empty pool refills
//!   `pool_batch` pages from the buddy in one zone-lock hold; a pool above `pool_high` drains
//!   `pool_batch` pages back; all pools are emptied when an allocation fails (memory pressure).
//! - `quicklist` (2.4): an unbounded list per CPU and kind; pages come back only when memory
//!   runs out.
//! - `buddy`: no caching; every page is allocated, cleared and freed through the buddy.

use crate::counters::Counter;
use crate::ctx::Ctx;
use crate::kernel::{Kernel, PtAllocKind};
use crate::page_alloc::{GfpFlags, PageFlags, PageOwner, GFP_ATOMIC};
use crate::platform::Platform;
use alloc::vec::Vec;
use core::cell::RefCell;
use highpte_arch::{PagingMode, Pfn};

/// Which kind of page-table page (quicklists keep them apart).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PtKind {
    /// A pgd page (page directory, or PDPT with PAE).
    Pgd,
    /// A pmd page (PAE page directory).
    Pmd,
    /// A user pte page.
    Pte,
    /// A kernel pte page (always low).
    KernelPte,
}

impl PtKind {
    /// The allocation site name of this kind (see [`crate::fault_inject::ALLOC_SITES`]).
    pub const fn alloc_site(self) -> &'static str {
        match self {
            PtKind::Pgd => "pgd_alloc",
            PtKind::Pmd => "pmd_alloc",
            PtKind::Pte => "pte_alloc_one",
            PtKind::KernelPte => "pte_alloc_one_kernel",
        }
    }
}

#[derive(Default)]
struct CpuPools {
    /// Zeroed low pages.
    low: Vec<Pfn>,
    /// Zeroed high pages.
    high: Vec<Pfn>,
}

/// The state of the page-table page allocator.
pub struct PtAllocState {
    pools: Vec<RefCell<CpuPools>>,
    /// The 6.1 profile's cache of 32-byte PAE roots.
    pub(crate) pgd_cache: super::pgd_cache::PgdCache,
}

impl PtAllocState {
    /// Empty pools for `cpus` CPUs.
    pub fn new(cpus: u32) -> Self {
        Self {
            pools: (0..cpus)
                .map(|_| RefCell::new(CpuPools::default()))
                .collect(),
            pgd_cache: Default::default(),
        }
    }
    /// Pages held in all pools: (low, high).
    pub fn pages_held(&self) -> (u64, u64) {
        self.pools.iter().fold((0, 0), |(l, h), c| {
            let c = c.borrow();
            (l + c.low.len() as u64, h + c.high.len() as u64)
        })
    }
}

impl<M: PagingMode> Kernel<M> {
    /// True if a page-table page of `kind` should come from high memory.
    pub(crate) fn pt_wants_high(&self, kind: PtKind) -> bool {
        kind == PtKind::Pte && self.opts.strategy.highmem_ptes()
    }

    /// Allocate a zeroed page-table page. Never sleeps (the callers have dropped their locks
    /// and hold a sleep capability, but allocation itself does no reclaim yet).
    pub(crate) fn pt_alloc_page<P: Platform>(
        &self,
        cx: &mut Ctx<'_, P>,
        kind: PtKind,
    ) -> Option<Pfn> {
        let high = self.pt_wants_high(kind);
        let p = cx.p();
        let pfn = match self.opts.pt_alloc {
            PtAllocKind::Buddy => self.pt_alloc_fresh(cx, high, kind.alloc_site()),
            PtAllocKind::Pool | PtAllocKind::Quicklist => {
                p.preempt_disable();
                let cpu = p.cpu() as usize;
                let got = {
                    let mut pools = self.pt_alloc.pools[cpu].borrow_mut();
                    if high {
                        pools.high.pop()
                    } else {
                        pools.low.pop()
                    }
                };
                let got = match got {
                    Some(pfn) => {
                        self.counters.inc(Counter::PtAllocPoolHits);
                        Some(pfn)
                    }
                    None if self.opts.pt_alloc == PtAllocKind::Pool => {
                        self.pt_pool_refill(cx, cpu, high, kind.alloc_site())
                    }
                    None => self.pt_alloc_fresh(cx, high, kind.alloc_site()),
                };
                p.preempt_enable();
                got
            }
        };
        let pfn = match pfn {
            Some(pfn) => pfn,
            None => {
                // memory pressure: give back what the pools hold and retry once
                self.pt_drain_all_pools(cx);
                self.pt_alloc_fresh(cx, high, kind.alloc_site())?
            }
        };
        let d = self.mem_map.desc(pfn);
        let old_owner = d.owner();
        if old_owner != PageOwner::PageTable {
            self.account(pfn, old_owner, 1, false);
            d.set_owner(PageOwner::PageTable);
            self.account(pfn, PageOwner::PageTable, 1, true);
        }
        d.set_flag(PageFlags::PAGETABLE);
        if kind == PtKind::Pte {
            self.counters.inc(if self.is_highmem(pfn) {
                Counter::PtePagesAllocHigh
            } else {
                Counter::PtePagesAllocLow
            });
        }
        Some(pfn)
    }

    /// A fresh zeroed page from the buddy allocator.
    fn pt_alloc_fresh<P: Platform>(
        &self,
        cx: &mut Ctx<'_, P>,
        high: bool,
        site: &'static str,
    ) -> Option<Pfn> {
        // 2.5 allocates page tables under page_table_lock: GFP_ATOMIC. 6.1 allocates them
        // GFP_KERNEL (GFP_PGTABLE_USER) before taking the lock: no dip below min
        let base = match self.cfg.kernel {
            highpte_arch::KernelProfile::Linux25 => GFP_ATOMIC,
            highpte_arch::KernelProfile::Linux61 => GfpFlags::empty(),
        };
        let gfp: GfpFlags = if high { base | GfpFlags::HIGHMEM } else { base };
        let pfn = self.alloc_pages_atomic(cx, gfp, 0, PageOwner::PageTable, site)?;
        self.clear_highpage(cx, pfn);
        Some(pfn)
    }

    /// Refill this CPU's pool with a batch and return one page.
    fn pt_pool_refill<P: Platform>(
        &self,
        cx: &mut Ctx<'_, P>,
        cpu: usize,
        high: bool,
        site: &'static str,
    ) -> Option<Pfn> {
        self.counters.inc(Counter::PtAllocRefills);
        let first = self.pt_alloc_fresh(cx, high, site)?;
        for _ in 1..self.opts.pool_batch {
            let Some(pfn) = self.pt_alloc_fresh(cx, high, site) else {
                break;
            };
            self.account(pfn, PageOwner::PageTable, 1, false);
            self.mem_map.desc(pfn).set_owner(PageOwner::PagePool);
            self.account(pfn, PageOwner::PagePool, 1, true);
            let mut pools = self.pt_alloc.pools[cpu].borrow_mut();
            if high {
                pools.high.push(pfn)
            } else {
                pools.low.push(pfn)
            }
        }
        Some(first)
    }

    /// Free a page-table page (it must be all zero).
    pub(crate) fn pt_free_page<P: Platform>(&self, cx: &Ctx<'_, P>, pfn: Pfn, kind: PtKind) {
        let p = cx.p();
        if kind == PtKind::Pte {
            self.counters.inc(Counter::PtePagesFreed);
        }
        let d = self.mem_map.desc(pfn);
        d.clear_flag(PageFlags::PAGETABLE);
        match self.opts.pt_alloc {
            PtAllocKind::Buddy => self.free_pages(cx, pfn, 0),
            PtAllocKind::Pool | PtAllocKind::Quicklist => {
                self.account(pfn, PageOwner::PageTable, 1, false);
                d.set_owner(PageOwner::PagePool);
                self.account(pfn, PageOwner::PagePool, 1, true);
                p.preempt_disable();
                let cpu = p.cpu() as usize;
                let high = self.is_highmem(pfn);
                let over = {
                    let mut pools = self.pt_alloc.pools[cpu].borrow_mut();
                    let list = if high {
                        &mut pools.high
                    } else {
                        &mut pools.low
                    };
                    list.push(pfn);
                    self.opts.pt_alloc == PtAllocKind::Pool
                        && list.len() as u32 > self.opts.pool_high
                };
                if over {
                    self.counters.inc(Counter::PtAllocDrains);
                    for _ in 0..self.opts.pool_batch {
                        let victim = {
                            let mut pools = self.pt_alloc.pools[cpu].borrow_mut();
                            let list = if high {
                                &mut pools.high
                            } else {
                                &mut pools.low
                            };
                            // drain the oldest (coldest) pages
                            if list.is_empty() {
                                None
                            } else {
                                Some(list.remove(0))
                            }
                        };
                        let Some(v) = victim else { break };
                        self.free_pages(cx, v, 0);
                    }
                }
                p.preempt_enable();
            }
        }
    }

    /// Empty every CPU's pools into the buddy allocator (memory pressure, or teardown).
    pub fn pt_drain_all_pools<P: Platform>(&self, cx: &Ctx<'_, P>) -> u64 {
        let mut n = 0;
        for cpu in 0..self.pt_alloc.pools.len() {
            loop {
                let v = {
                    let mut pools = self.pt_alloc.pools[cpu].borrow_mut();
                    pools.low.pop().or_else(|| pools.high.pop())
                };
                let Some(v) = v else { break };
                self.free_pages(cx, v, 0);
                n += 1;
            }
        }
        if n > 0 {
            self.counters.inc(Counter::PtAllocDrains);
        }
        // and the reverse-map chain pool's spare pages
        n + self.rmap_drain(cx)
    }

    /// Pages held by the page-table pools (low, high).
    pub fn pt_pool_pages(&self) -> (u64, u64) {
        self.pt_alloc.pages_held()
    }
}
