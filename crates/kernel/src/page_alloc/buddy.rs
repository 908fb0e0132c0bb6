//! The binary buddy allocator of one zone (`free_area`).
//!
//! A zone is a contiguous pfn range `[start, end)`. Free memory is kept as blocks of 2^order
//! pages, order 0..[`MAX_ORDER`], each aligned to its size *relative to pfn 0* (as Linux's
//! zones are aligned), so a zone whose edges are not aligned simply has smaller blocks there.
//! The buddy of block `pfn` of order `o` is `pfn ^ (1 << o)`; two free buddies that both lie
//! inside the zone are always merged, so at any time no block's buddy is free at the same order.
//!
//! The free lists are doubly linked through the head descriptors ([`PageDesc`] links), so push,
//! pop and removing a buddy are O(1). Allocation pops the most recently freed block (LIFO, like
//! Linux's cache-hot pages) from the smallest order that has one, splitting it and putting the
//! upper halves back.
//!
//! Misuse is reported, never absorbed: [`FreeArea::free`] checks that the block is the head of a
//! block this allocator handed out with that order and is no longer mapped or shared, and says
//! precisely what is wrong otherwise ([`BuddyError`]).

use super::mem_map::{MemMap, PageDesc, PageFlags, NO_PFN};
use core::fmt;
use highpte_arch::Pfn;

mod check;

/// Number of block orders: blocks of 2^0 .. 2^10 pages (4 KB .. 4 MB).
pub const MAX_ORDER: usize = 11;

/// Why a free (or a boot-time hand-off) was refused. Nothing was changed when it is returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuddyError {
    /// The order is not below [`MAX_ORDER`].
    InvalidOrder {
        /// The order asked for.
        order: u32,
    },
    /// The pfn is not aligned to its block size.
    Misaligned {
        /// The block's first page.
        pfn: Pfn,
        /// The block's order.
        order: u32,
    },
    /// The block is not (entirely) inside this zone.
    OutOfZone {
        /// The block's first page.
        pfn: Pfn,
        /// The block's order.
        order: u32,
        /// The zone's first page.
        zone_start: Pfn,
        /// The zone's end (exclusive).
        zone_end: Pfn,
    },
    /// The block is not described by the `mem_map`.
    NoDescriptor {
        /// The first page without a descriptor.
        pfn: Pfn,
    },
    /// A boot range whose start is past its end.
    BadRange {
        /// Start of the range.
        start: Pfn,
        /// End of the range (exclusive).
        end: Pfn,
    },
    /// The page is already free: it lies in the free block `free_block` of `free_order`.
    DoubleFree {
        /// The page being freed.
        pfn: Pfn,
        /// Head of the free block that contains it.
        free_block: Pfn,
        /// Order of that free block.
        free_order: u32,
    },
    /// The page is a non-head page of an allocated block: free the head with its order.
    TailPage {
        /// The page being freed.
        pfn: Pfn,
        /// Head of the allocated block that contains it.
        head: Pfn,
        /// Order that block was allocated with.
        head_order: u32,
    },
    /// The page is reserved (never handed to the page allocator).
    Reserved {
        /// The page.
        pfn: Pfn,
    },
    /// The page was not allocated from this allocator (never handed to it, or already freed
    /// and since merged or given out again as part of another block).
    NotAllocated {
        /// The page.
        pfn: Pfn,
    },
    /// A boot hand-off of a page that is allocated.
    AlreadyAllocated {
        /// The page.
        pfn: Pfn,
    },
    /// Freed with a different order than it was allocated with.
    WrongOrder {
        /// The block's head.
        pfn: Pfn,
        /// The order it was allocated with.
        allocated_order: u32,
        /// The order passed to free.
        order: u32,
    },
    /// The page is still mapped by ptes.
    StillMapped {
        /// The page.
        pfn: Pfn,
        /// Its map count.
        mapcount: u32,
    },
    /// The page still has other references (count above 1).
    StillReferenced {
        /// The page.
        pfn: Pfn,
        /// Its reference count.
        count: u32,
    },
}

impl fmt::Display for BuddyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            BuddyError::InvalidOrder { order } => {
                write!(f, "order {order} is out of range (orders are 0..{})", MAX_ORDER - 1)
            }
            BuddyError::Misaligned { pfn, order } => {
                write!(f, "pfn {:#x} is not aligned to an order-{order} block", pfn.0)
            }
            BuddyError::OutOfZone { pfn, order, zone_start, zone_end } => write!(
                f,
                "order-{order} block at pfn {:#x} is not inside the zone [{:#x}, {:#x})",
                pfn.0, zone_start.0, zone_end.0
            ),
            BuddyError::NoDescriptor { pfn } => write!(f, "pfn {:#x} has no mem_map descriptor", pfn.0),
            BuddyError::BadRange { start, end } => {
                write!(f, "range [{:#x}, {:#x}) ends before it starts", start.0, end.0)
            }
            BuddyError::DoubleFree { pfn, free_block, free_order } => write!(
                f,
                "double free: pfn {:#x} is already free (in the order-{free_order} free block at {:#x})",
                pfn.0, free_block.0
            ),
            BuddyError::TailPage { pfn, head, head_order } => write!(
                f,
                "pfn {:#x} is inside the order-{head_order} block allocated at {:#x}: free that block's head",
                pfn.0, head.0
            ),
            BuddyError::Reserved { pfn } => write!(f, "pfn {:#x} is reserved and was never allocated", pfn.0),
            BuddyError::NotAllocated { pfn } => {
                write!(f, "pfn {:#x} was not allocated from this zone's buddy allocator", pfn.0)
            }
            BuddyError::AlreadyAllocated { pfn } => {
                write!(f, "pfn {:#x} is allocated and cannot be handed to the allocator at boot", pfn.0)
            }
            BuddyError::WrongOrder { pfn, allocated_order, order } => write!(
                f,
                "pfn {:#x} was allocated with order {allocated_order} but freed with order {order}",
                pfn.0
            ),
            BuddyError::StillMapped { pfn, mapcount } => {
                write!(f, "pfn {:#x} is freed while {mapcount} ptes still map it", pfn.0)
            }
            BuddyError::StillReferenced { pfn, count } => {
                write!(f, "pfn {:#x} is freed with {count} references held", pfn.0)
            }
        }
    }
}

impl core::error::Error for BuddyError {}

/// Head of one free list: the pfn of its first block, or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListHead {
    first: u32,
}

impl ListHead {
    const EMPTY: ListHead = ListHead { first: NO_PFN };
    /// True if the list has no block.
    pub fn is_empty(&self) -> bool {
        self.first == NO_PFN
    }
    /// The first (most recently freed) block, if any.
    pub fn first(&self) -> Option<Pfn> {
        (self.first != NO_PFN).then_some(Pfn(u64::from(self.first)))
    }
}

/// The free lists of one zone (`zone->free_area[]`).
#[derive(Clone, Debug)]
#[doc(alias = "free_area")]
pub struct FreeArea {
    start: u64,
    end: u64,
    lists: [ListHead; MAX_ORDER],
    nr_free: [u64; MAX_ORDER],
    free_pages: u64,
    managed_pages: u64,
}

/// `1 << order` pages as u64.
const fn block_pages(order: u32) -> u64 {
    1u64 << order
}

impl FreeArea {
    /// An empty allocator for the zone `[start, end)` (nothing free until boot hands ranges).
    pub fn new(start: Pfn, end: Pfn) -> Self {
        Self {
            start: start.0,
            end: end.0.max(start.0),
            lists: [ListHead::EMPTY; MAX_ORDER],
            nr_free: [0; MAX_ORDER],
            free_pages: 0,
            managed_pages: 0,
        }
    }
    /// First pfn of the zone.
    pub fn start(&self) -> Pfn {
        Pfn(self.start)
    }
    /// End pfn of the zone (exclusive).
    pub fn end(&self) -> Pfn {
        Pfn(self.end)
    }
    /// Free pages in all lists.
    pub fn free_pages(&self) -> u64 {
        self.free_pages
    }
    /// Pages handed to this allocator at boot (free plus allocated).
    pub fn managed_pages(&self) -> u64 {
        self.managed_pages
    }
    /// Pages currently allocated from this allocator.
    pub fn allocated_pages(&self) -> u64 {
        self.managed_pages - self.free_pages
    }
    /// Number of free blocks of `order` (0 for an order out of range).
    pub fn nr_free(&self, order: u32) -> u64 {
        self.nr_free.get(order as usize).copied().unwrap_or(0)
    }
    /// Number of free blocks of every order.
    pub fn nr_free_all(&self) -> [u64; MAX_ORDER] {
        self.nr_free
    }
    /// The free list of `order` (`None` for an order out of range).
    pub fn list(&self, order: u32) -> Option<&ListHead> {
        self.lists.get(order as usize)
    }
    /// True if `pfn` is inside this zone.
    pub fn contains(&self, pfn: Pfn) -> bool {
        (self.start..self.end).contains(&pfn.0)
    }

    /// Allocate a block of 2^`order` pages (`__rmqueue`), or `None` if no free block is large
    /// enough (or the order is out of range). No watermark is applied here.
    ///
    /// The head's descriptor becomes an allocated head: count 1, map count 0, owner
    /// [`PageOwner::Other`](super::mem_map::PageOwner::Other); the other pages' descriptors are
    /// left as they were.
    pub fn alloc(&mut self, mm: &MemMap, order: u32) -> Option<Pfn> {
        self.alloc_with_flags(mm, order, PageFlags::empty())
    }

    /// [`FreeArea::alloc`], also setting `extra` flags on the head (e.g. HIGHMEM).
    pub(crate) fn alloc_with_flags(
        &mut self,
        mm: &MemMap,
        order: u32,
        extra: PageFlags,
    ) -> Option<Pfn> {
        if order as usize >= MAX_ORDER {
            return None;
        }
        let mut current = (order as usize..MAX_ORDER).find(|&o| !self.lists[o].is_empty())? as u32;
        let pfn = u64::from(self.lists[current as usize].first);
        self.list_remove(mm, pfn, current);
        // Split: keep the lower half, put the upper half back (`expand`).
        while current > order {
            current -= 1;
            let upper = pfn + block_pages(current);
            self.list_push(mm, upper, current);
        }
        self.free_pages -= block_pages(order);
        mm.desc(Pfn(pfn))
            .make_allocated_head(order, extra - PageFlags::ALLOCATOR_OWNED);
        Some(Pfn(pfn))
    }

    /// Free a block of 2^`order` pages allocated from this allocator, merging it with its free
    /// buddies (`__free_pages_ok`).
    ///
    /// The head must be an allocated head of that order with map count 0 and count 0 (the
    /// caller dropped the last reference) or 1 (the allocation's own reference). On error
    /// nothing changes.
    pub fn free(&mut self, mm: &MemMap, pfn: Pfn, order: u32) -> Result<(), BuddyError> {
        self.check_block(mm, pfn, order)?;
        let d = mm.desc(pfn);
        if d.is_free_head() {
            return Err(BuddyError::DoubleFree {
                pfn,
                free_block: pfn,
                free_order: d.order(),
            });
        }
        if !d.is_allocated_head() {
            return Err(self.diagnose_not_allocated(mm, pfn));
        }
        if d.order() != order {
            return Err(BuddyError::WrongOrder {
                pfn,
                allocated_order: d.order(),
                order,
            });
        }
        if d.mapcount() != 0 {
            return Err(BuddyError::StillMapped {
                pfn,
                mapcount: d.mapcount(),
            });
        }
        if d.count() > 1 {
            return Err(BuddyError::StillReferenced {
                pfn,
                count: d.count(),
            });
        }
        d.make_free_tail();
        self.free_pages += block_pages(order);
        self.insert_coalescing(mm, pfn.0, order);
        Ok(())
    }

    /// Hand the pages `[start, end)` to the allocator at boot (`free_all_bootmem`), as the
    /// largest aligned blocks that fit, merging with blocks already free at the edges.
    ///
    /// Block-wise: a 64 GB range is about 16 K order-10 blocks, and only their head descriptors
    /// are written. The pages must be ones no allocator has handed out: the head of every block
    /// is checked (not free, not inside a free block, not allocated), the pages inside a block
    /// are not (that would touch every descriptor). Returns the number of pages added; on error
    /// nothing changes.
    pub fn free_range_at_boot(
        &mut self,
        mm: &MemMap,
        start: Pfn,
        end: Pfn,
    ) -> Result<u64, BuddyError> {
        if end.0 < start.0 {
            return Err(BuddyError::BadRange { start, end });
        }
        if start.0 == end.0 {
            return Ok(0);
        }
        if start.0 < self.start || end.0 > self.end {
            return Err(BuddyError::OutOfZone {
                pfn: start,
                order: 0,
                zone_start: Pfn(self.start),
                zone_end: Pfn(self.end),
            });
        }
        if end.0 > mm.len() as u64 {
            return Err(BuddyError::NoDescriptor {
                pfn: Pfn((mm.len() as u64).max(start.0)),
            });
        }
        // Pass 1: validate every block head, so that an error leaves everything unchanged.
        for (pfn, _) in boot_blocks(start.0, end.0) {
            let d = mm.desc(Pfn(pfn));
            if d.is_allocated_head() {
                return Err(BuddyError::AlreadyAllocated { pfn: Pfn(pfn) });
            }
            if let Some((free_block, free_order)) = self.free_block_containing(mm, Pfn(pfn)) {
                return Err(BuddyError::DoubleFree {
                    pfn: Pfn(pfn),
                    free_block,
                    free_order,
                });
            }
        }
        // Pass 2: insert.
        for (pfn, order) in boot_blocks(start.0, end.0) {
            mm.desc(Pfn(pfn)).make_free_tail();
            self.free_pages += block_pages(order);
            self.insert_coalescing(mm, pfn, order);
        }
        let pages = end.0 - start.0;
        self.managed_pages += pages;
        Ok(pages)
    }

    /// The free block containing `pfn`, as (head, order), if `pfn` is free.
    ///
    /// Looks at most [`MAX_ORDER`] descriptors: the possible heads are `pfn` rounded down to
    /// each block size.
    pub fn free_block_containing(&self, mm: &MemMap, pfn: Pfn) -> Option<(Pfn, u32)> {
        self.block_containing(mm, pfn, PageFlags::BUDDY)
    }

    /// True if `pfn` is free in this allocator.
    pub fn is_free(&self, mm: &MemMap, pfn: Pfn) -> bool {
        self.free_block_containing(mm, pfn).is_some()
    }

    /// The allocated block containing `pfn`, as (head, order), if `pfn` belongs to one.
    pub fn allocated_block_containing(&self, mm: &MemMap, pfn: Pfn) -> Option<(Pfn, u32)> {
        self.block_containing(mm, pfn, PageFlags::ALLOCATED)
    }

    // ---- internals ----

    /// Order in range, aligned, inside the zone, described by the mem_map.
    fn check_block(&self, mm: &MemMap, pfn: Pfn, order: u32) -> Result<(), BuddyError> {
        if order as usize >= MAX_ORDER {
            return Err(BuddyError::InvalidOrder { order });
        }
        let size = block_pages(order);
        if !pfn.0.is_multiple_of(size) {
            return Err(BuddyError::Misaligned { pfn, order });
        }
        if pfn.0 < self.start || pfn.0.saturating_add(size) > self.end {
            return Err(BuddyError::OutOfZone {
                pfn,
                order,
                zone_start: Pfn(self.start),
                zone_end: Pfn(self.end),
            });
        }
        if pfn.0 + size > mm.len() as u64 {
            return Err(BuddyError::NoDescriptor {
                pfn: Pfn((mm.len() as u64).max(pfn.0)),
            });
        }
        Ok(())
    }

    /// Why `pfn` (not a free head, not an allocated head) cannot be freed.
    fn diagnose_not_allocated(&self, mm: &MemMap, pfn: Pfn) -> BuddyError {
        if let Some((free_block, free_order)) = self.free_block_containing(mm, pfn) {
            return BuddyError::DoubleFree {
                pfn,
                free_block,
                free_order,
            };
        }
        if let Some((head, head_order)) = self.allocated_block_containing(mm, pfn) {
            return BuddyError::TailPage {
                pfn,
                head,
                head_order,
            };
        }
        if mm.get(pfn).is_some_and(PageDesc::is_reserved) {
            return BuddyError::Reserved { pfn };
        }
        BuddyError::NotAllocated { pfn }
    }

    /// The block with head flag `kind` (BUDDY or ALLOCATED) containing `pfn`.
    fn block_containing(&self, mm: &MemMap, pfn: Pfn, kind: PageFlags) -> Option<(Pfn, u32)> {
        if !self.contains(pfn) {
            return None;
        }
        for k in 0..MAX_ORDER as u32 {
            let head = pfn.0 & !(block_pages(k) - 1);
            if head < self.start {
                break;
            }
            let d = mm.get(Pfn(head))?;
            if d.test_flag(kind) && pfn.0 < head + block_pages(d.order()) {
                return Some((Pfn(head), d.order()));
            }
        }
        None
    }

    /// True if the buddy of block `pfn` of `order` is inside the zone and a free head of the
    /// same order.
    fn buddy_free_at(&self, mm: &MemMap, pfn: u64, order: u32) -> bool {
        if order as usize + 1 >= MAX_ORDER {
            return false;
        }
        let buddy = pfn ^ block_pages(order);
        if buddy < self.start || buddy + block_pages(order) > self.end {
            return false;
        }
        match mm.get(Pfn(buddy)) {
            Some(d) => d.is_free_head() && d.order() == order,
            None => false,
        }
    }

    /// Put a free block (head already reset, pages already counted in `free_pages`) on the
    /// lists, merging with free buddies as far as possible.
    fn insert_coalescing(&mut self, mm: &MemMap, mut pfn: u64, mut order: u32) {
        while self.buddy_free_at(mm, pfn, order) {
            let buddy = pfn ^ block_pages(order);
            self.list_remove(mm, buddy, order);
            pfn = pfn.min(buddy);
            order += 1;
        }
        self.list_push(mm, pfn, order);
    }

    /// Push block `pfn` of `order` at the front of its list, marking its head free.
    /// (`free_pages` is the callers' business: splits and merges do not change it.)
    fn list_push(&mut self, mm: &MemMap, pfn: u64, order: u32) {
        let o = order as usize;
        let d = mm.desc(Pfn(pfn));
        d.make_free_head(order);
        let old = self.lists[o].first;
        d.set_next_free(old);
        d.set_prev_free(NO_PFN);
        if old != NO_PFN {
            mm.desc(Pfn(u64::from(old))).set_prev_free(pfn as u32);
        }
        self.lists[o].first = pfn as u32;
        self.nr_free[o] += 1;
    }

    /// Unlink block `pfn` of `order` from its list and clear its BUDDY mark.
    fn list_remove(&mut self, mm: &MemMap, pfn: u64, order: u32) {
        let o = order as usize;
        let d = mm.desc(Pfn(pfn));
        let (next, prev) = (d.next_free(), d.prev_free());
        if prev == NO_PFN {
            self.lists[o].first = next;
        } else {
            mm.desc(Pfn(u64::from(prev))).set_next_free(next);
        }
        if next != NO_PFN {
            mm.desc(Pfn(u64::from(next))).set_prev_free(prev);
        }
        d.make_free_tail();
        self.nr_free[o] -= 1;
    }
}

/// The largest aligned blocks covering `[start, end)`, in ascending order.
fn boot_blocks(start: u64, end: u64) -> impl Iterator<Item = (u64, u32)> {
    let mut pfn = start;
    core::iter::from_fn(move || {
        if pfn >= end {
            return None;
        }
        // trailing_zeros(0) is 64: pfn 0 is aligned to every order.
        let align = pfn.trailing_zeros().min(MAX_ORDER as u32 - 1);
        let fit = 63 - (end - pfn).leading_zeros();
        let order = align.min(fit);
        let block = (pfn, order);
        pfn += block_pages(order);
        Some(block)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::page_alloc::mem_map::PageOwner;
    use alloc::collections::BTreeMap;
    use alloc::string::ToString;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    fn zone(mm: &MemMap, start: u64, end: u64) -> FreeArea {
        let mut fa = FreeArea::new(Pfn(start), Pfn(end));
        assert_eq!(
            fa.free_range_at_boot(mm, Pfn(start), Pfn(end)),
            Ok(end - start)
        );
        fa
    }

    #[test]
    fn boot_blocks_are_maximal() {
        let mm = MemMap::new(8192);
        let fa = zone(&mm, 0, 4096);
        assert_eq!(fa.nr_free_all(), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4]);
        fa.check_descriptors(&mm).unwrap();
        // Unaligned edges: [3, 1030) = 3 (o0), 4 (o2), 8 (o3) ... 512 (o9), 1024 (o2), 1028 (o1).
        let mm = MemMap::new(8192);
        let fa = zone(&mm, 3, 1030);
        assert_eq!(fa.nr_free_all(), [1, 1, 2, 1, 1, 1, 1, 1, 1, 1, 0]);
        assert_eq!(fa.free_pages(), 1027);
        fa.check_descriptors(&mm).unwrap();
    }

    #[test]
    fn boot_ranges_merge_at_edges() {
        let mm = MemMap::new(2048);
        let mut fa = FreeArea::new(Pfn(0), Pfn(2048));
        fa.free_range_at_boot(&mm, Pfn(0), Pfn(1000)).unwrap();
        fa.free_range_at_boot(&mm, Pfn(1000), Pfn(2048)).unwrap();
        assert_eq!(fa.nr_free_all(), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        assert_eq!(fa.managed_pages(), 2048);
        fa.check_descriptors(&mm).unwrap();
        assert_eq!(
            fa.free_range_at_boot(&mm, Pfn(5), Pfn(6)),
            Err(BuddyError::DoubleFree {
                pfn: Pfn(5),
                free_block: Pfn(0),
                free_order: 10
            })
        );
        assert!(matches!(
            fa.free_range_at_boot(&mm, Pfn(6), Pfn(5)),
            Err(BuddyError::BadRange { .. })
        ));
        assert!(matches!(
            fa.free_range_at_boot(&mm, Pfn(2000), Pfn(3000)),
            Err(BuddyError::OutOfZone { .. })
        ));
    }

    #[test]
    fn boot_64g_is_blockwise() {
        let nr = 1usize << 24;
        let mm = MemMap::new(nr);
        let mut high = FreeArea::new(Pfn(229_376), Pfn(nr as u64));
        assert_eq!(
            high.free_range_at_boot(&mm, Pfn(229_376), Pfn(nr as u64)),
            Ok(16_547_840)
        );
        assert_eq!(high.nr_free(10), 16_160);
        assert_eq!(high.free_pages(), 16_547_840);
        for o in 0..10 {
            assert_eq!(high.nr_free(o), 0);
        }
        high.check(&mm).unwrap();
        let p = high.alloc(&mm, 0).unwrap();
        assert_eq!(high.nr_free_all(), [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 16_159]);
        high.free(&mm, p, 0).unwrap();
        assert_eq!(high.nr_free(10), 16_160);
    }

    #[test]
    fn split_is_deterministic_lifo() {
        let mm = MemMap::new(1024);
        let mut fa = zone(&mm, 0, 1024);
        assert_eq!(fa.alloc(&mm, 0), Some(Pfn(0)));
        assert_eq!(fa.alloc(&mm, 0), Some(Pfn(1)));
        assert_eq!(fa.alloc(&mm, 1), Some(Pfn(2)));
        assert_eq!(fa.alloc(&mm, 0), Some(Pfn(4)));
        fa.free(&mm, Pfn(1), 0).unwrap();
        // LIFO: the page just freed comes back first.
        assert_eq!(fa.alloc(&mm, 0), Some(Pfn(1)));
        let d = mm.desc(Pfn(4));
        assert_eq!(
            (d.count(), d.mapcount(), d.order(), d.owner()),
            (1, 0, 0, PageOwner::Other)
        );
        assert!(d.is_allocated_head());
        fa.check_descriptors(&mm).unwrap();
        assert_eq!(fa.alloc(&mm, MAX_ORDER as u32), None);
    }

    #[test]
    fn misuse_is_reported_precisely() {
        let mm = MemMap::new(2048);
        let mut fa = zone(&mm, 0, 1024);
        let a = fa.alloc(&mm, 0).unwrap();
        let b = fa.alloc(&mm, 2).unwrap();
        assert_eq!(b, Pfn(4));
        fa.free(&mm, a, 0).unwrap();
        // a merged into larger blocks? Its buddy (1) is free, so it is inside a free block.
        assert!(matches!(
            fa.free(&mm, a, 0),
            Err(BuddyError::DoubleFree { pfn: Pfn(0), .. })
        ));
        assert_eq!(
            fa.free(&mm, Pfn(5), 0),
            Err(BuddyError::TailPage {
                pfn: Pfn(5),
                head: Pfn(4),
                head_order: 2
            })
        );
        assert_eq!(
            fa.free(&mm, b, 1),
            Err(BuddyError::WrongOrder {
                pfn: b,
                allocated_order: 2,
                order: 1
            })
        );
        assert_eq!(
            fa.free(&mm, Pfn(6), 1),
            Err(BuddyError::TailPage {
                pfn: Pfn(6),
                head: b,
                head_order: 2
            })
        );
        assert_eq!(
            fa.free(&mm, Pfn(2), 2),
            Err(BuddyError::Misaligned {
                pfn: Pfn(2),
                order: 2
            })
        );
        assert_eq!(
            fa.free(&mm, b, 11),
            Err(BuddyError::InvalidOrder { order: 11 })
        );
        assert!(matches!(
            fa.free(&mm, Pfn(1024), 0),
            Err(BuddyError::OutOfZone { .. })
        ));
        mm.desc(b).inc_mapcount();
        assert_eq!(
            fa.free(&mm, b, 2),
            Err(BuddyError::StillMapped {
                pfn: b,
                mapcount: 1
            })
        );
        mm.desc(b).dec_mapcount();
        mm.desc(b).get_page();
        assert_eq!(
            fa.free(&mm, b, 2),
            Err(BuddyError::StillReferenced { pfn: b, count: 2 })
        );
        mm.desc(b).put_page();
        fa.check_descriptors(&mm).unwrap();
        fa.free(&mm, b, 2).unwrap();
        assert!(matches!(
            fa.free(&mm, b, 2),
            Err(BuddyError::DoubleFree { .. })
        ));
        assert_eq!(fa.nr_free_all(), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        fa.check_descriptors(&mm).unwrap();

        // Pages never handed to this allocator.
        let mut other = FreeArea::new(Pfn(1024), Pfn(2048));
        assert_eq!(
            other.free(&mm, Pfn(1024), 0),
            Err(BuddyError::NotAllocated { pfn: Pfn(1024) })
        );
        mm.desc(Pfn(1025)).set_flag(PageFlags::RESERVED);
        assert_eq!(
            other.free(&mm, Pfn(1025), 0),
            Err(BuddyError::Reserved { pfn: Pfn(1025) })
        );
        // A boot range cannot contain an allocated head.
        other.free_range_at_boot(&mm, Pfn(1024), Pfn(1025)).unwrap();
        let p = other.alloc(&mm, 0).unwrap();
        assert_eq!(
            other.free_range_at_boot(&mm, p, Pfn(1026)),
            Err(BuddyError::AlreadyAllocated { pfn: p })
        );
        assert_eq!(other.managed_pages(), 1);
        assert!(BuddyError::DoubleFree {
            pfn: p,
            free_block: p,
            free_order: 0
        }
        .to_string()
        .contains("double free"));
    }

    #[test]
    fn mem_map_shorter_than_zone() {
        let mm = MemMap::new(100);
        let mut fa = FreeArea::new(Pfn(0), Pfn(1024));
        assert_eq!(
            fa.free_range_at_boot(&mm, Pfn(0), Pfn(200)),
            Err(BuddyError::NoDescriptor { pfn: Pfn(100) })
        );
        fa.free_range_at_boot(&mm, Pfn(0), Pfn(100)).unwrap();
        assert_eq!(
            fa.free(&mm, Pfn(512), 9),
            Err(BuddyError::NoDescriptor { pfn: Pfn(512) })
        );
        fa.check(&mm).unwrap();
    }

    #[test]
    fn alloc_everything_then_free_returns_to_boot_state() {
        let mm = MemMap::new(5000);
        let mut fa = zone(&mm, 17, 4999);
        let boot = fa.nr_free_all();
        let mut pages = Vec::new();
        while let Some(p) = fa.alloc(&mm, 0) {
            pages.push(p);
        }
        assert_eq!(pages.len(), 4982);
        assert_eq!(fa.free_pages(), 0);
        assert_eq!(fa.allocated_pages(), 4982);
        fa.check_descriptors(&mm).unwrap();
        // Free in a scrambled but deterministic order.
        let n = pages.len();
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&i| (i * 7919) % n);
        for i in order {
            fa.free(&mm, pages[i], 0).unwrap();
        }
        assert_eq!(fa.nr_free_all(), boot);
        assert_eq!(fa.free_pages(), 4982);
        fa.check_descriptors(&mm).unwrap();
    }

    #[derive(Clone, Debug)]
    enum Op {
        Alloc(u32),
        Free(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0u32..MAX_ORDER as u32).prop_map(Op::Alloc),
            2 => any::<usize>().prop_map(Op::Free),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn random_alloc_free_keeps_invariants(
            start in 0u64..3000,
            len in 0u64..6000,
            ops in proptest::collection::vec(op(), 1..300),
        ) {
            let end = start + len;
            let mm = MemMap::new(end as usize + 7);
            let mut fa = FreeArea::new(Pfn(start), Pfn(end));
            prop_assert_eq!(fa.free_range_at_boot(&mm, Pfn(start), Pfn(end)), Ok(len));
            fa.check_descriptors(&mm).map_err(TestCaseError::fail)?;
            let boot = fa.nr_free_all();
            let mut live: BTreeMap<u64, u32> = BTreeMap::new();
            let mut live_pages = 0u64;
            for op in ops {
                match op {
                    Op::Alloc(order) => {
                        if let Some(p) = fa.alloc(&mm, order) {
                            let size = 1u64 << order;
                            prop_assert!(p.0.is_multiple_of(size), "misaligned");
                            prop_assert!(p.0 >= start && p.0 + size <= end, "outside zone");
                            if let Some((&q, &qo)) = live.range(..=p.0).next_back() {
                                prop_assert!(q + (1u64 << qo) <= p.0, "overlaps {q:#x}");
                            }
                            if let Some((&q, _)) = live.range(p.0..).next() {
                                prop_assert!(p.0 + size <= q, "overlaps {q:#x}");
                            }
                            live.insert(p.0, order);
                            live_pages += size;
                        } else {
                            // Failure only when no free block is large enough.
                            prop_assert!((order as usize..MAX_ORDER).all(|o| fa.nr_free(o as u32) == 0));
                        }
                    }
                    Op::Free(i) => {
                        if live.is_empty() {
                            continue;
                        }
                        let (&p, &order) = live.iter().nth(i % live.len()).unwrap();
                        live.remove(&p);
                        fa.free(&mm, Pfn(p), order).map_err(|e| TestCaseError::fail(e.to_string()))?;
                        live_pages -= 1u64 << order;
                        // Freeing again is always detected.
                        prop_assert!(fa.free(&mm, Pfn(p), order).is_err());
                    }
                }
                prop_assert_eq!(fa.free_pages(), len - live_pages);
                prop_assert_eq!(fa.allocated_pages(), live_pages);
                fa.check(&mm).map_err(TestCaseError::fail)?;
            }
            fa.check_descriptors(&mm).map_err(TestCaseError::fail)?;
            for (p, order) in core::mem::take(&mut live) {
                fa.free(&mm, Pfn(p), order).map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
            prop_assert_eq!(fa.nr_free_all(), boot);
            prop_assert_eq!(fa.free_pages(), len);
            fa.check_descriptors(&mm).map_err(TestCaseError::fail)?;
        }

        #[test]
        fn boot_in_pieces_equals_boot_at_once(
            start in 0u64..3000,
            len in 0u64..6000,
            cuts in proptest::collection::vec(any::<u64>(), 0..8),
        ) {
            let end = start + len;
            let mm_once = MemMap::new(end as usize);
            let once = zone(&mm_once, start, end);
            let mut points: Vec<u64> = cuts.iter().map(|c| start + c % (len + 1)).collect();
            points.push(start);
            points.push(end);
            points.sort_unstable();
            points.dedup();
            let mm = MemMap::new(end as usize);
            let mut pieces = FreeArea::new(Pfn(start), Pfn(end));
            // Hand the pieces over in reverse order, so merges happen on both sides.
            for w in points.windows(2).rev() {
                pieces.free_range_at_boot(&mm, Pfn(w[0]), Pfn(w[1])).map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
            prop_assert_eq!(pieces.nr_free_all(), once.nr_free_all());
            prop_assert_eq!(pieces.managed_pages(), len);
            pieces.check_descriptors(&mm).map_err(TestCaseError::fail)?;
        }
    }
}
