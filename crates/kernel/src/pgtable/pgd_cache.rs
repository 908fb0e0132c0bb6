//! The 6.1 profile's `pgd_cache`: with PAE a process's page-table root (the PDPT) is four
//! 8-byte entries, and 6.1 takes it from a slab cache of 32-byte objects instead of a whole
//! page, 128 roots to a page (CR3 needs only 32-byte alignment, SDM 4.4.1). The cache's pages
//! are slab, owned by "kernel objects", and do not count in PageTables, as 6.1's VmPTE and
//! /proc/meminfo do not count the pgd.
//!
//! A page goes back to the buddy allocator when its last root is freed.

use crate::ctx::{Ctx, SleepCtx};
use crate::kernel::Kernel;
use crate::page_alloc::{PageOwner, GFP_KERNEL};
use crate::platform::Platform;
use alloc::vec::Vec;
use core::cell::RefCell;
use highpte_arch::{PagingMode, Pfn};

/// Bytes of one PAE root.
pub(crate) const PGD_BYTES: u32 = 32;
// a page's slots (4096 / 32 roots) are the bits of one u128
const _: () = assert!(4096 / PGD_BYTES == u128::BITS);

/// The cache's pages and which of their 128 slots are in use (bit i: slot i).
#[derive(Default)]
pub(crate) struct PgdCache {
    pages: RefCell<Vec<(Pfn, u128)>>,
}

impl PgdCache {
    /// Pages the cache holds.
    pub(crate) fn pages(&self) -> u64 {
        self.pages.borrow().len() as u64
    }

    /// Take a free slot of a page already held: its page and byte offset.
    fn take_slot(&self) -> Option<(Pfn, u32)> {
        let mut pages = self.pages.borrow_mut();
        let (pfn, used) = pages.iter_mut().find(|(_, used)| *used != u128::MAX)?;
        let slot = used.trailing_ones();
        *used |= 1 << slot;
        Some((*pfn, slot * PGD_BYTES))
    }
}

impl<M: PagingMode> Kernel<M> {
    /// A 32-byte root from the cache (`kmem_cache_alloc(pgd_cache)`): its page and byte
    /// offset. The slot's bytes are not cleared: `pgd_alloc` writes all four entries. May
    /// sleep to grow the cache by a page.
    pub(crate) fn pgd_cache_alloc<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
    ) -> Option<(Pfn, u32)> {
        let cache = &self.pt_alloc.pgd_cache;
        if let Some(s) = cache.take_slot() {
            return Some(s);
        }
        let pfn = self.alloc_pages(cx, GFP_KERNEL, 0, PageOwner::KernelObject, "pgd_alloc")?;
        // other tasks may have grown the cache while this one slept: use the new page anyway
        cache.pages.borrow_mut().push((pfn, 1));
        Some((pfn, 0))
    }

    /// Give a root back to the cache; its page goes back to the buddy allocator when empty.
    pub(crate) fn pgd_cache_free<P: Platform>(&self, cx: &Ctx<'_, P>, pfn: Pfn, offset: u32) {
        let empty = {
            let mut pages = self.pt_alloc.pgd_cache.pages.borrow_mut();
            let Some(i) = pages.iter().position(|(p, _)| *p == pfn) else {
                return;
            };
            pages[i].1 &= !(1u128 << (offset / PGD_BYTES));
            (pages[i].1 == 0).then(|| pages.swap_remove(i))
        };
        if let Some((pfn, _)) = empty {
            self.free_pages(cx, pfn, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_fill_a_page_in_order() {
        let c = PgdCache::default();
        assert_eq!(c.take_slot(), None);
        c.pages.borrow_mut().push((Pfn(7), 1));
        assert_eq!(c.take_slot(), Some((Pfn(7), 32)));
        assert_eq!(c.take_slot(), Some((Pfn(7), 64)));
        c.pages.borrow_mut()[0].1 = u128::MAX;
        assert_eq!(c.take_slot(), None);
        assert_eq!(4096 / PGD_BYTES, 128);
        assert_eq!(c.pages(), 1);
    }
}
