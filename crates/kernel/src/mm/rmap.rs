//! Reverse mappings (Rik van Riel's rmap VM, 2.5.27+): every mapped user page keeps a chain of
//! the ptes that map it, so reclaim can unmap a page without scanning page tables.
//!
//! A chain entry records the pte's *physical* address: with highpte the pte page may sit in
//! high memory, and a kernel virtual address of a pte is only valid while its page is mapped.
//! Reclaim maps each pte with the third atomic slot, `KM_PTE2`
//! ([`crate::pgtable::PteCursor::map_phys`]).
//!
//! # What the chains cost
//!
//! Chains live in low memory. As in 2.5's `struct pte_chain`, a page mapped once keeps its
//! single pte address in the page descriptor (`PG_direct`, no chain); a page mapped more often
//! uses chain blocks of one L1 line, [`CHAIN_BLOCK_BYTES`] = 32 bytes: a next pointer plus
//! `NRPTE` pte addresses — 7 four-byte addresses, or 3 eight-byte ones when pte addresses can
//! be above 4 GB (`pte_addr_t` is 64-bit with HIGHMEM64G). The bytes in use are backed by low
//! pages (owner "pte chains") reserved *before* a mapping operation with a sleeping allocation
//! (`pte_chain_alloc` outside the locks): a fault, fork or populate that cannot get them fails
//! like any allocation (OOM kill, ENOMEM). So hundreds of processes attaching one SGA exhaust
//! low memory with chains, rmap's famous problem on such workloads.
//!
//! On the host each entry also carries the mm and the user address (Linux finds them through
//! the pte page's `struct page`), which the simulated size does not include beyond the above.

use crate::counters::Counter;
use crate::ctx::{Ctx, SleepCtx};
use crate::kernel::Kernel;
use crate::mm::reclaim::{ReclaimKind, ZoneMask};
use crate::mm::tlb::PendingFlush;
use crate::mm::Mm;
use crate::page_alloc::{PageFlags, PageOwner, GFP_KERNEL};
use crate::pgtable::OutOfMemory;
use crate::platform::{BugReport, Platform};
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::rc::{Rc, Weak};
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use highpte_arch::{Entry, EntryFlags, PagingMode, Pfn, VirtAddr, PAGE_SIZE};

/// Size of one `pte_chain` block: one L1 cache line of a 2002 Pentium III/4.
pub const CHAIN_BLOCK_BYTES: u64 = 32;

/// One reverse-map entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RmapEntry {
    /// Physical address of the pte.
    pte_pa: u64,
    /// The mm's key (its CR3).
    mm: u64,
    /// The user address the pte maps.
    va: u32,
}

/// The reverse maps and the low memory that backs them.
#[derive(Default)]
pub struct RmapState {
    chains: RefCell<BTreeMap<u64, Vec<RmapEntry>>>,
    /// Simulated bytes of chain blocks in use.
    bytes: Cell<u64>,
    /// Most bytes ever in use.
    peak: Cell<u64>,
    /// Low pages holding chain blocks.
    pages: RefCell<Vec<Pfn>>,
    /// The clock hand of reclaim (a pfn).
    hand: Cell<u64>,
    /// Live address spaces by CR3.
    mms: RefCell<BTreeMap<u64, Weak<Mm>>>,
}

impl<M: PagingMode> Kernel<M> {
    #[inline(always)]
    fn rmap_on(&self) -> bool {
        self.opts.reclaim == ReclaimKind::Rmap
    }

    /// pte addresses per chain block (`NRPTE`).
    const fn nrpte() -> u64 {
        if M::PAE {
            (CHAIN_BLOCK_BYTES - 4) / 8
        } else {
            (CHAIN_BLOCK_BYTES - 4) / 4
        }
    }

    /// Bytes of chain blocks a page mapped `n` times needs.
    fn chain_cost(n: usize) -> u64 {
        if n <= 1 {
            0
        } else {
            (n as u64).div_ceil(Self::nrpte()) * CHAIN_BLOCK_BYTES
        }
    }

    /// Reverse-map figures: (bytes of chains in use, peak, low pages holding them, pages
    /// with a chain).
    pub fn rmap_usage(&self) -> (u64, u64, u64, u64) {
        (
            self.rmap.bytes.get(),
            self.rmap.peak.get(),
            self.rmap.pages.borrow().len() as u64,
            self.rmap.chains.borrow().len() as u64,
        )
    }

    /// Record a new address space (rmap finds mms by CR3).
    pub(crate) fn rmap_register_mm(&self, mm: &Rc<Mm>) {
        if self.rmap_on() {
            self.rmap.mms.borrow_mut().insert(mm.cr3, Rc::downgrade(mm));
        }
    }

    /// `page_add_rmap`: the pte at `pte_pa` (in `mm`, for user address `va`) now maps `pfn`.
    #[inline]
    pub(crate) fn page_add_rmap(&self, pfn: Pfn, pte_pa: u64, mm: &Mm, va: u32) {
        if self.rmap_on() && pfn != self.zero_page {
            self.page_add_rmap_entry(pfn, pte_pa, mm, va);
        }
    }

    /// [`Kernel::page_add_rmap`]'s work, out of line: the scan design calls it for nothing.
    #[inline(never)]
    fn page_add_rmap_entry(&self, pfn: Pfn, pte_pa: u64, mm: &Mm, va: u32) {
        let mut chains = self.rmap.chains.borrow_mut();
        let v = chains.entry(pfn.0).or_default();
        let before = Self::chain_cost(v.len());
        v.push(RmapEntry {
            pte_pa,
            mm: mm.cr3,
            va,
        });
        let b = self.rmap.bytes.get() + Self::chain_cost(v.len()) - before;
        self.rmap.bytes.set(b);
        if b > self.rmap.peak.get() {
            self.rmap.peak.set(b);
        }
    }

    /// `page_remove_rmap`: the pte at `pte_pa` no longer maps `pfn`.
    #[inline]
    pub(crate) fn page_remove_rmap<P: Platform>(&self, p: &P, pfn: Pfn, pte_pa: u64) {
        if !self.rmap_on() || pfn == self.zero_page {
            return;
        }
        let mut chains = self.rmap.chains.borrow_mut();
        let found = chains.get_mut(&pfn.0).and_then(|v| {
            let i = v.iter().position(|e| e.pte_pa == pte_pa)?;
            let before = Self::chain_cost(v.len());
            v.swap_remove(i);
            Some((before - Self::chain_cost(v.len()), v.is_empty()))
        });
        match found {
            Some((freed, empty)) => {
                self.rmap.bytes.set(self.rmap.bytes.get() - freed);
                if empty {
                    chains.remove(&pfn.0);
                }
            }
            None => {
                drop(chains);
                p.bug(BugReport {
                    kind: "page_remove_rmap",
                    message: format!(
                        "page_remove_rmap: pte at physical {:#x} is not in the chain of pfn {:#x}",
                        pte_pa, pfn.0
                    ),
                });
            }
        }
    }

    /// mremap moved a pte: its chain entry follows it.
    pub(crate) fn page_move_rmap(&self, pfn: Pfn, old_pa: u64, new_pa: u64, new_va: u32) {
        if !self.rmap_on() || pfn == self.zero_page {
            return;
        }
        if let Some(v) = self.rmap.chains.borrow_mut().get_mut(&pfn.0) {
            if let Some(e) = v.iter_mut().find(|e| e.pte_pa == old_pa) {
                e.pte_pa = new_pa;
                e.va = new_va;
            }
        }
    }

    /// Make sure `n` more mappings can be recorded (`pte_chain_alloc` before taking the
    /// locks): allocate low pages for chain blocks. May sleep; fails when low memory is gone.
    pub(crate) fn rmap_reserve<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        n: u64,
    ) -> Result<(), OutOfMemory> {
        if !self.rmap_on() {
            return Ok(());
        }
        loop {
            // re-read after every allocation: it may have let others map or unmap
            let need = self.rmap.bytes.get() + n * CHAIN_BLOCK_BYTES;
            if self.rmap.pages.borrow().len() as u64 * PAGE_SIZE >= need {
                return Ok(());
            }
            let pfn = self
                .alloc_pages(cx, GFP_KERNEL, 0, PageOwner::PteChain, "pte_chain_alloc")
                .ok_or(OutOfMemory)?;
            self.mem_map.desc(pfn).set_flag(PageFlags::SLAB);
            self.rmap.pages.borrow_mut().push(pfn);
        }
    }

    /// Give back chain pages beyond what the chains in use need, keeping one spare.
    pub(crate) fn rmap_trim<P: Platform>(&self, cx: &Ctx<'_, P>) {
        if !self.rmap_on() {
            return;
        }
        loop {
            let have = self.rmap.pages.borrow().len() as u64;
            if have <= 1 || (have - 1) * PAGE_SIZE < self.rmap.bytes.get() + PAGE_SIZE {
                return;
            }
            let Some(pfn) = self.rmap.pages.borrow_mut().pop() else {
                return;
            };
            self.mem_map.desc(pfn).clear_flag(PageFlags::SLAB);
            self.free_pages(cx, pfn, 0);
        }
    }

    /// Free every chain page not needed by the chains in use (no spare kept): with no
    /// process left, all of them. Returns the pages freed.
    pub(crate) fn rmap_drain<P: Platform>(&self, cx: &Ctx<'_, P>) -> u64 {
        let mut n = 0;
        loop {
            let len = self.rmap.pages.borrow().len() as u64;
            if len == 0 || (len - 1) * PAGE_SIZE < self.rmap.bytes.get() {
                return n;
            }
            let Some(pfn) = self.rmap.pages.borrow_mut().pop() else {
                return n;
            };
            self.mem_map.desc(pfn).clear_flag(PageFlags::SLAB);
            self.free_pages(cx, pfn, 0);
            n += 1;
        }
    }

    /// The number of ptes recorded for `pfn` (for the invariant checker).
    pub(crate) fn rmap_count(&self, pfn: Pfn) -> Option<usize> {
        if !self.rmap_on() {
            return None;
        }
        Some(self.rmap.chains.borrow().get(&pfn.0).map_or(0, |v| v.len()))
    }

    /// Rmap reclaim: a clock over every mapped user page. A page any of whose ptes has the
    /// accessed bit set is given a second chance (the bits cleared, `page_referenced`);
    /// otherwise every pte that maps it is unmapped through its chain (`try_to_unmap`).
    /// At `priority` it looks at up to 1/2^priority of the mapped pages (at least 16 per
    /// page wanted), so the rounds of one reclaim call go about twice round the clock: the
    /// first lap ages pages, the second unmaps those not used since. Returns the ptes
    /// unmapped.
    pub(crate) fn rmap_reclaim<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        zones: ZoneMask,
        want: u64,
        priority: u32,
    ) -> u64 {
        let p = cx.p();
        let anon_ok = self.anon_reclaimable(p);
        let chained = self.rmap.chains.borrow().len() as u64;
        let budget = (want * 16).max(chained >> priority);
        let mut looked = 0;
        let mut unmapped = 0;
        while looked < budget && unmapped < want {
            // the next page with a chain, from the hand round
            let next = {
                let chains = self.rmap.chains.borrow();
                let hand = self.rmap.hand.get();
                chains
                    .range(hand..)
                    .next()
                    .or_else(|| chains.range(..hand).next())
                    .map(|(&f, v)| (Pfn(f), v.clone()))
            };
            let Some((pfn, entries)) = next else {
                break;
            };
            self.rmap.hand.set(pfn.0 + 1);
            looked += 1;
            let d = self.mem_map.desc(pfn);
            let anon = d.test_flag(PageFlags::ANON);
            let file = d.owner() == PageOwner::PageCache;
            if d.is_reserved() || (!anon && !file && !d.test_flag(PageFlags::SHARED)) {
                continue;
            }
            // only pages of the zones short of memory; without swap, only file pages
            // (an anonymous or shared-memory page would have nowhere to go)
            if !zones.contains(self.page_zone(pfn)) || (!file && !anon_ok) {
                continue;
            }
            // pin and lock the page (it has a chain, so it is mapped and in use): the lock
            // operations below may let others run, and it must not go away meanwhile
            if !self.trylock_page(pfn) {
                continue;
            }
            d.get_page();
            unmapped += self.rmap_reclaim_page(cx, pfn, &entries, anon);
            self.unlock_page(p, pfn);
            self.put_user_page(cx, pfn);
        }
        unmapped
    }

    /// Age or unmap one pinned, locked page.
    fn rmap_reclaim_page<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        pfn: Pfn,
        entries: &[RmapEntry],
        anon: bool,
    ) -> u64 {
        let p = cx.p();
        let d = self.mem_map.desc(pfn);
        {
            self.reclaim.scanned[self.page_zone(pfn) as usize]
                .set(self.reclaim.scanned[self.page_zone(pfn) as usize].get() + 1);
            self.counters.inc(Counter::PgScan);
            match self.page_referenced(cx, pfn, entries) {
                Some(false) => {}
                // referenced, or a pte's mm was busy: try again next time round
                _ => return 0,
            }
            let swap = if anon {
                match self.page_swap_entry(pfn) {
                    Some(e) => Some(e),
                    None => {
                        let Some(e) = self.get_swap_page(p) else {
                            return 0; // swap is full
                        };
                        self.add_to_swap_cache(p, pfn, e);
                        d.set_flag(PageFlags::DIRTY);
                        self.swap_free(p, e);
                        Some(e)
                    }
                }
            } else {
                None
            };
            self.try_to_unmap(cx, pfn, entries, swap)
        }
    }

    /// `page_referenced`: test and clear the accessed bit of every pte of the chain, each
    /// mapped with KM_PTE2 under its mm's page-table lock (taken with trylock, as rmap did:
    /// reclaim must not wait for a lock whose holder may be waiting for memory). `None` if a
    /// lock was busy.
    fn page_referenced<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        pfn: Pfn,
        entries: &[RmapEntry],
    ) -> Option<bool> {
        let mut referenced = false;
        for e in entries {
            let mm = self
                .rmap
                .mms
                .borrow()
                .get(&e.mm)
                .and_then(|w| w.upgrade())?;
            if mm.dead.get() {
                return None;
            }
            let mut cur = self.try_lock_ptes(cx, &mm)?;
            let mut pte = cur.map_phys(e.pte_pa);
            let v = pte.get();
            if v.is_present() && v.pfn() == pfn && v.has(EntryFlags::ACCESSED) {
                pte.set(v.without(EntryFlags::ACCESSED));
                referenced = true;
            }
        }
        Some(referenced)
    }

    /// `try_to_unmap`: unmap every pte of the chain (a swap entry for an anonymous page, an
    /// empty pte for a shared object's page). Returns the ptes unmapped.
    fn try_to_unmap<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        pfn: Pfn,
        entries: &[RmapEntry],
        swap: Option<highpte_arch::SwapEntry>,
    ) -> u64 {
        let p = cx.p();
        let d = self.mem_map.desc(pfn);
        let mut n = 0;
        for e in entries {
            let Some(mm) = self.rmap.mms.borrow().get(&e.mm).and_then(|w| w.upgrade()) else {
                continue;
            };
            if mm.dead.get() {
                continue;
            }
            let done = {
                let Some(mut cur) = self.try_lock_ptes(cx, &mm) else {
                    continue;
                };
                let mut pte = cur.map_phys(e.pte_pa);
                let v = pte.get();
                if v.is_present() && v.pfn() == pfn {
                    if v.has(EntryFlags::DIRTY) {
                        if d.owner() == PageOwner::PageCache {
                            // a written file page must reach the disk
                            self.set_page_dirty(pfn);
                        } else {
                            d.set_flag(PageFlags::DIRTY);
                        }
                    }
                    match swap {
                        Some(s) => {
                            self.swap_duplicate(p, s);
                            pte.set(s.to_pte(M::PAE));
                        }
                        None => pte.set(Entry::NONE),
                    }
                    d.dec_mapcount();
                    mm.rss.set(mm.rss.get() - 1);
                    self.page_remove_rmap(p, pfn, e.pte_pa);
                    true
                } else {
                    false
                }
            };
            if done {
                PendingFlush::page(&mm, VirtAddr::new(e.va)).flush(self, cx);
                self.put_user_page(cx, pfn);
                n += 1;
            }
        }
        self.counters.add(Counter::PgUnmapped, n);
        n
    }
}
