//! TLB flushing for an address space, and the tokens that make it impossible to forget.
//!
//! A change to live ptes returns a [`PendingFlush`] (or, when it unmapped pages, a [`Gather`]
//! holding them), both `#[must_use]`. The pages a gather holds can be released only through
//! the [`FlushedGather`] that flushing it returns, so "zap, flush, then free" is the only order
//! that compiles. The policy (page by page or everything, [`FLUSH_ALL_THRESHOLD`]) lives here;
//! the platform only executes `invlpg`, CR3 reloads and shootdown IPIs.

use crate::counters::Counter;
use crate::ctx::Ctx;
use crate::kernel::Kernel;
use crate::mm::page_runs::PageRuns;
use crate::mm::Mm;
use crate::platform::{Platform, TlbFlush};
use alloc::vec::Vec;
use highpte_arch::{PagingMode, SwapEntry, VirtAddr, PAGE_SHIFT, PAGE_SIZE};

/// Ranges longer than this many pages are flushed whole rather than page by page.
pub const FLUSH_ALL_THRESHOLD: u64 = 32;

/// A TLB invalidation owed for `[start, end)` of an address space whose ptes were changed.
#[must_use = "the TLBs may still hold the old translations: call .flush()"]
pub struct PendingFlush<'m> {
    mm: &'m Mm,
    start: u32,
    end: u64,
}

impl<'m> PendingFlush<'m> {
    /// The flush owed after changing the ptes of `[start, end)` of `mm`.
    pub(crate) fn range(mm: &'m Mm, start: u32, end: u64) -> Self {
        Self { mm, start, end }
    }

    /// The flush owed after changing the one pte that maps `addr`.
    pub fn page(mm: &'m Mm, addr: VirtAddr) -> Self {
        let base = addr.page_base();
        Self::range(mm, base.as_u32(), base.as_u64() + PAGE_SIZE)
    }

    /// `flush_tlb_range`: make every CPU that may cache the address space forget the range.
    pub fn flush<P: Platform, M: PagingMode>(self, k: &Kernel<M>, cx: &Ctx<'_, P>) {
        k.flush_tlb_range(cx, self.mm, self.start, self.end);
    }
}

/// Pages unmapped whose last reference may be dropped only after the TLB flush
/// (`mmu_gather`): freeing a frame before every CPU forgot it would let a stale translation
/// reach it.
#[must_use = "the unmapped pages are released only by .flush() and then Kernel::gather_finish"]
pub struct Gather<'m> {
    flush: PendingFlush<'m>,
    pub(crate) pages: PageRuns,
    /// Swap entries cleared from ptes (their slots are released with the pages).
    pub(crate) swap: Vec<SwapEntry>,
}

impl<'m> Gather<'m> {
    /// An empty gather for changes to `[start, end)` of `mm`.
    pub(crate) fn new(mm: &'m Mm, start: u32, end: u64) -> Self {
        Self {
            flush: PendingFlush::range(mm, start, end),
            pages: PageRuns::new(),
            swap: Vec::new(),
        }
    }

    /// Flush the TLBs for the gathered range; the pages may go after this.
    pub fn flush<P: Platform, M: PagingMode>(
        self,
        k: &Kernel<M>,
        cx: &Ctx<'_, P>,
    ) -> FlushedGather {
        self.flush.flush(k, cx);
        FlushedGather {
            pages: self.pages,
            swap: self.swap,
        }
    }
}

/// A gather whose range no CPU translates any more: its pages can be released.
pub struct FlushedGather {
    pub(crate) pages: PageRuns,
    pub(crate) swap: Vec<SwapEntry>,
}

impl<M: PagingMode> Kernel<M> {
    /// `flush_tlb_range(vma, start, end)`: make every CPU that may cache `mm` forget
    /// `[start, end)`. Reached through [`PendingFlush::flush`].
    fn flush_tlb_range<P: Platform>(&self, cx: &Ctx<'_, P>, mm: &Mm, start: u32, end: u64) {
        let p = cx.p();
        p.preempt_disable();
        let cpu = p.cpu();
        let mask = mm.cpu_vm_mask.get();
        let pages = (end - u64::from(start)) >> PAGE_SHIFT;
        let how = if pages <= FLUSH_ALL_THRESHOLD {
            TlbFlush::Pages {
                start: VirtAddr::new(start),
                count: pages as u32,
            }
        } else {
            TlbFlush::NonGlobal
        };
        if mask.contains(cpu) {
            match how {
                TlbFlush::Pages { .. } => {
                    let mut a = u64::from(start);
                    while a < end {
                        p.invlpg(VirtAddr::new(a as u32));
                        self.counters.inc(Counter::Invlpg);
                        a += PAGE_SIZE;
                    }
                }
                TlbFlush::NonGlobal => p.flush_tlb_local(),
            }
        }
        let others = mask.without(cpu);
        if !others.is_empty() {
            self.counters
                .add(Counter::TlbShootdowns, others.iter().count() as u64);
            p.flush_tlb_others(others, how);
        }
        p.preempt_enable();
    }

    /// `flush_tlb_mm(mm)`: forget every translation of `mm` on every CPU.
    pub(crate) fn flush_tlb_mm<P: Platform>(&self, cx: &Ctx<'_, P>, mm: &Mm) {
        self.flush_tlb_range(cx, mm, 0, crate::mm::TASK_SIZE as u64);
    }
}
