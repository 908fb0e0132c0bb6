//! `mem_map`: one compact descriptor per physical page (Linux's `struct page`).
//!
//! On the host a descriptor is 16 bytes of `Cell`s; the kernel being simulated pays
//! [`DEFAULT_STRUCT_PAGE_BYTES`] of low memory per page for it (boot charges that).
//!
//! # The all-zero descriptor
//!
//! [`MemMap::new`] hands out zeroed memory so that the host maps it lazily: a 64 GB machine's
//! 16.7 M descriptors cost host memory only where they are touched. All zero is therefore a
//! defined state: *a page no allocator has seen yet* — no flags (neither free nor reserved),
//! owner [`PageOwner::Free`], count and mapcount 0. Boot then either marks a page
//! [`PageFlags::RESERVED`] (kernel image, boot allocations) or hands it to a zone's buddy
//! allocator (`FreeArea::free_range_at_boot`), which only writes the descriptors of the heads of
//! the free blocks it builds.
//!
//! # Which fields mean what
//!
//! Descriptors are meaningful for the *head* page of a block: the head of a free block
//! ([`PageFlags::BUDDY`]: `order` and the free-list links are valid) or the head of a block
//! allocated from a buddy allocator ([`PageFlags::ALLOCATED`]: `order` is the allocation order,
//! `count`/`mapcount`/`private` belong to the user). The descriptors of the other pages of a
//! multi-page block, free or allocated, are stale and must not be trusted; ask the zone's
//! `FreeArea` whether a page is free.

use alloc::alloc::{alloc_zeroed, handle_alloc_error, Layout};
use alloc::vec::Vec;
use core::cell::Cell;
use core::fmt;
use highpte_arch::Pfn;

/// Simulated size in bytes of one page descriptor (`sizeof(struct page)`), charged to low memory
/// for every physical page by boot.
///
/// REFERENCE.md: 40-64 bytes on 2.4/2.5 i386 depending on options; 48 is the documented default,
/// so a 64 GB machine spends 768 MB of its 896 MB of low memory on `mem_map` alone.
pub const DEFAULT_STRUCT_PAGE_BYTES: u64 = 48;

/// "No page" in a free-list link.
pub(crate) const NO_PFN: u32 = u32::MAX;

bitflags::bitflags! {
    /// Page flags (`PG_*`), 16 bits.
    ///
    /// [`PageFlags::BUDDY`] and [`PageFlags::ALLOCATED`] belong to the buddy allocator and cannot
    /// be changed through [`PageDesc::set_flag`] / [`PageDesc::clear_flag`].
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
    pub struct PageFlags: u16 {
        /// Head of a free block on a buddy free list (`order` and links are valid).
        #[doc(alias = "PG_buddy")]
        const BUDDY = 1 << 0;
        /// Head of a block currently allocated from a buddy allocator (`order` is the
        /// allocation order); cleared when the block is freed.
        const ALLOCATED = 1 << 1;
        /// Never handed to the page allocator (kernel image, boot-time allocations, holes).
        #[doc(alias = "PG_reserved")]
        const RESERVED = 1 << 2;
        /// The page is in the HighMem zone (not directly mapped). Set on allocated HighMem
        /// pages by the zone allocator.
        #[doc(alias = "PG_highmem")]
        const HIGHMEM = 1 << 3;
        /// The page holds a page table (pgd, pmd or pte page).
        const PAGETABLE = 1 << 4;
        /// The page holds kernel objects (slab / kmalloc-like memory).
        #[doc(alias = "PG_slab")]
        const SLAB = 1 << 5;
        /// Anonymous user memory.
        const ANON = 1 << 6;
        /// Shared memory (shm / MAP_SHARED anonymous).
        const SHARED = 1 << 7;
        /// The page is in the swap cache (`private` holds its swap entry).
        #[doc(alias = "PG_swapcache")]
        const SWAPCACHE = 1 << 8;
        /// Contents differ from backing store.
        #[doc(alias = "PG_dirty")]
        const DIRTY = 1 << 9;
        /// Recently referenced (reclaim's second chance).
        #[doc(alias = "PG_referenced")]
        const REFERENCED = 1 << 10;
        /// Locked for I/O.
        #[doc(alias = "PG_locked")]
        const LOCKED = 1 << 11;
        /// Contents are valid (read in or freshly written).
        #[doc(alias = "PG_uptodate")]
        const UPTODATE = 1 << 12;
        /// On an LRU list.
        #[doc(alias = "PG_lru")]
        const LRU = 1 << 13;
        /// On the active LRU list.
        #[doc(alias = "PG_active")]
        const ACTIVE = 1 << 14;
    }
}

impl PageFlags {
    /// The flags only the buddy allocator may change.
    pub const ALLOCATOR_OWNED: PageFlags = PageFlags::BUDDY.union(PageFlags::ALLOCATED);
}

/// Who holds a page, for low-memory accounting.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default, PartialOrd, Ord)]
#[repr(u8)]
pub enum PageOwner {
    /// Free (or never seen by an allocator). Zero, so a zeroed descriptor reads `Free`.
    #[default]
    Free = 0,
    /// The `mem_map` descriptors themselves.
    MemMap,
    /// Kernel text and data.
    KernelImage,
    /// Other boot-time reservations.
    BootReserved,
    /// A page-table page.
    PageTable,
    /// Kernel objects (mm, VMAs, task structs, kernel stacks).
    KernelObject,
    /// A per-CPU or other page pool.
    PagePool,
    /// User memory.
    User,
    /// The page cache.
    PageCache,
    /// Reverse-map chains (`pte_chain` blocks, rmap reclaim only).
    PteChain,
    /// Anything else (the buddy allocator's default for a freshly allocated block).
    Other,
}

impl PageOwner {
    /// Number of owners.
    pub const COUNT: usize = 11;
    /// All owners, in discriminant order.
    pub const ALL: [PageOwner; PageOwner::COUNT] = [
        PageOwner::Free,
        PageOwner::MemMap,
        PageOwner::KernelImage,
        PageOwner::BootReserved,
        PageOwner::PageTable,
        PageOwner::KernelObject,
        PageOwner::PagePool,
        PageOwner::User,
        PageOwner::PageCache,
        PageOwner::PteChain,
        PageOwner::Other,
    ];
    /// Short name used in reports.
    pub const fn name(self) -> &'static str {
        match self {
            PageOwner::Free => "free",
            PageOwner::MemMap => "mem_map",
            PageOwner::KernelImage => "kernel image",
            PageOwner::BootReserved => "boot reserved",
            PageOwner::PageTable => "page tables",
            PageOwner::KernelObject => "kernel objects",
            PageOwner::PagePool => "page pools",
            PageOwner::User => "user",
            PageOwner::PageCache => "page cache",
            PageOwner::PteChain => "pte chains",
            PageOwner::Other => "other",
        }
    }
    /// Index into per-owner arrays (the discriminant).
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for PageOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One physical page's descriptor (`struct page`), 16 bytes on the host.
///
/// The two words `word0`/`word1` are a union: for a free block head ([`PageFlags::BUDDY`]) they
/// are the free-list links, otherwise they are the reference count (`_count`) and the map count.
/// The count accessors read 0 for a free block head.
#[doc(alias = "struct page")]
#[derive(Default)]
pub struct PageDesc {
    flags: Cell<PageFlags>,
    order: Cell<u8>,
    owner: Cell<PageOwner>,
    /// `count` for an in-use page, `next` free-list link for a free block head.
    word0: Cell<u32>,
    /// `mapcount` for an in-use page, `prev` free-list link for a free block head.
    word1: Cell<u32>,
    private: Cell<u32>,
}

static_assertions::const_assert_eq!(core::mem::size_of::<PageDesc>(), 16);

impl PageDesc {
    /// All flags.
    #[inline]
    pub fn flags(&self) -> PageFlags {
        self.flags.get()
    }
    /// True if every flag of `f` is set.
    #[inline]
    pub fn test_flag(&self, f: PageFlags) -> bool {
        self.flags.get().contains(f)
    }
    /// Set the flags `f`.
    ///
    /// # Panics
    /// If `f` contains an allocator-owned flag ([`PageFlags::ALLOCATOR_OWNED`]): a kernel bug.
    #[inline]
    pub fn set_flag(&self, f: PageFlags) {
        assert!(
            !f.intersects(PageFlags::ALLOCATOR_OWNED),
            "set_flag: {f:?} belongs to the buddy allocator"
        );
        self.flags.set(self.flags.get() | f);
    }
    /// Clear the flags `f`.
    ///
    /// # Panics
    /// If `f` contains an allocator-owned flag ([`PageFlags::ALLOCATOR_OWNED`]): a kernel bug.
    #[inline]
    pub fn clear_flag(&self, f: PageFlags) {
        assert!(
            !f.intersects(PageFlags::ALLOCATOR_OWNED),
            "clear_flag: {f:?} belongs to the buddy allocator"
        );
        self.flags.set(self.flags.get() - f);
    }
    /// Set the flags `f` and return whether all of them were already set (`TestSetPageLocked`).
    ///
    /// # Panics
    /// As [`PageDesc::set_flag`].
    pub fn test_and_set_flag(&self, f: PageFlags) -> bool {
        let was = self.test_flag(f);
        self.set_flag(f);
        was
    }
    /// Clear the flags `f` and return whether all of them were set.
    ///
    /// # Panics
    /// As [`PageDesc::clear_flag`].
    pub fn test_and_clear_flag(&self, f: PageFlags) -> bool {
        let was = self.test_flag(f);
        self.clear_flag(f);
        was
    }
    /// True for the head of a free buddy block.
    #[doc(alias = "PageBuddy")]
    #[inline]
    pub fn is_free_head(&self) -> bool {
        self.test_flag(PageFlags::BUDDY)
    }
    /// True for the head of a block allocated from a buddy allocator.
    #[inline]
    pub fn is_allocated_head(&self) -> bool {
        self.test_flag(PageFlags::ALLOCATED)
    }
    /// True if the page is reserved.
    #[doc(alias = "PageReserved")]
    #[inline]
    pub fn is_reserved(&self) -> bool {
        self.test_flag(PageFlags::RESERVED)
    }
    /// The block order: valid for a free block head and for an allocated block head.
    pub fn order(&self) -> u32 {
        u32::from(self.order.get())
    }
    /// The owner, for low-memory accounting.
    #[inline]
    pub fn owner(&self) -> PageOwner {
        self.owner.get()
    }
    /// Set the owner.
    pub fn set_owner(&self, owner: PageOwner) {
        self.owner.set(owner);
    }
    /// The reference count (`page_count`); 0 for a free block head.
    #[doc(alias = "page_count")]
    #[inline]
    pub fn count(&self) -> u32 {
        if self.is_free_head() {
            0
        } else {
            self.word0.get()
        }
    }
    /// Set the reference count (`set_page_count`).
    ///
    /// # Panics
    /// On a free block head (its count word is a free-list link): a kernel bug.
    #[doc(alias = "set_page_count")]
    #[inline]
    pub fn set_count(&self, count: u32) {
        assert!(!self.is_free_head(), "set_count on a free page");
        self.word0.set(count);
    }
    /// Take a reference; returns the new count.
    ///
    /// # Panics
    /// On a free block head or on count overflow: kernel bugs.
    #[inline]
    pub fn get_page(&self) -> u32 {
        let n = self
            .count()
            .checked_add(1)
            .expect("get_page: reference count overflow");
        self.set_count(n);
        n
    }
    /// Drop a reference; returns the new count (0: the last reference is gone).
    ///
    /// # Panics
    /// If the count is already 0 (a free page or a double put): a kernel bug.
    #[inline]
    pub fn put_page(&self) -> u32 {
        let n = self
            .count()
            .checked_sub(1)
            .expect("put_page: reference count already 0");
        self.set_count(n);
        n
    }
    /// Number of ptes mapping this page (`page_mapcount`); 0 for a free block head.
    #[doc(alias = "page_mapcount")]
    #[inline]
    pub fn mapcount(&self) -> u32 {
        if self.is_free_head() {
            0
        } else {
            self.word1.get()
        }
    }
    /// Set the map count.
    ///
    /// # Panics
    /// On a free block head: a kernel bug.
    #[inline]
    pub fn set_mapcount(&self, mapcount: u32) {
        assert!(!self.is_free_head(), "set_mapcount on a free page");
        self.word1.set(mapcount);
    }
    /// One more pte maps the page; returns the new map count.
    ///
    /// # Panics
    /// On a free block head or on overflow: kernel bugs.
    #[inline]
    pub fn inc_mapcount(&self) -> u32 {
        let n = self
            .mapcount()
            .checked_add(1)
            .expect("inc_mapcount: map count overflow");
        self.set_mapcount(n);
        n
    }
    /// One pte less maps the page; returns the new map count.
    ///
    /// # Panics
    /// If the map count is already 0: a kernel bug.
    #[inline]
    pub fn dec_mapcount(&self) -> u32 {
        let n = self
            .mapcount()
            .checked_sub(1)
            .expect("dec_mapcount: map count already 0");
        self.set_mapcount(n);
        n
    }
    /// The private word (swap entry, shm id, pool tag...).
    #[inline]
    pub fn private(&self) -> u32 {
        self.private.get()
    }
    /// Set the private word.
    #[inline]
    pub fn set_private(&self, v: u32) {
        self.private.set(v);
    }

    // ---- allocator-internal ----

    /// Next free block of the same order (free heads only).
    pub(crate) fn next_free(&self) -> u32 {
        self.word0.get()
    }
    /// Previous free block of the same order (free heads only).
    pub(crate) fn prev_free(&self) -> u32 {
        self.word1.get()
    }
    pub(crate) fn set_next_free(&self, v: u32) {
        self.word0.set(v);
    }
    pub(crate) fn set_prev_free(&self, v: u32) {
        self.word1.set(v);
    }
    /// Make this page the head of a free block of `order` (links set by the caller).
    pub(crate) fn make_free_head(&self, order: u32) {
        self.flags.set(PageFlags::BUDDY);
        self.order.set(order as u8);
        self.owner.set(PageOwner::Free);
        self.private.set(0);
    }
    /// Forget everything: the page is now inside a free block (not its head).
    pub(crate) fn make_free_tail(&self) {
        self.flags.set(PageFlags::empty());
        self.order.set(0);
        self.owner.set(PageOwner::Free);
    }
    /// Make this page the head of a freshly allocated block of `order`: count 1, no maps.
    pub(crate) fn make_allocated_head(&self, order: u32, extra: PageFlags) {
        self.flags.set(PageFlags::ALLOCATED | extra);
        self.order.set(order as u8);
        self.owner.set(PageOwner::Other);
        self.word0.set(1);
        self.word1.set(0);
        self.private.set(0);
    }
}

impl fmt::Debug for PageDesc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("PageDesc");
        s.field("flags", &self.flags())
            .field("order", &self.order())
            .field("owner", &self.owner());
        if self.is_free_head() {
            s.field("next", &self.next_free())
                .field("prev", &self.prev_free());
        } else {
            s.field("count", &self.count())
                .field("mapcount", &self.mapcount());
        }
        s.field("private", &self.private()).finish()
    }
}

/// The array of all page descriptors, indexed by pfn (`mem_map`).
#[doc(alias = "mem_map")]
pub struct MemMap {
    descs: Vec<PageDesc>,
}

impl MemMap {
    /// Most pages a `MemMap` can describe: free-list links are 32-bit pfns with `u32::MAX` as
    /// "none" (64 GB is 2^24 pages).
    pub const MAX_PAGES: usize = u32::MAX as usize;

    /// Descriptors for `nr_pages` pages, all in the zero state (see the module docs).
    ///
    /// Fast for any size: the memory comes zeroed from the allocator, so the host maps it only
    /// when a descriptor is touched.
    ///
    /// # Panics
    /// If `nr_pages > MemMap::MAX_PAGES` (64 GB of RAM is far below), and aborts through
    /// `handle_alloc_error` if the host has no memory for the array.
    pub fn new(nr_pages: usize) -> Self {
        assert!(
            nr_pages <= Self::MAX_PAGES,
            "MemMap::new: {nr_pages} pages do not fit 32-bit pfn links"
        );
        if nr_pages == 0 {
            return Self { descs: Vec::new() };
        }
        let layout = match Layout::array::<PageDesc>(nr_pages) {
            Ok(l) => l,
            Err(_) => panic!("MemMap::new: {nr_pages} descriptors overflow the address space"),
        };
        // SAFETY: `layout` has a non-zero size (nr_pages > 0 and PageDesc is 16 bytes).
        let ptr = unsafe { alloc_zeroed(layout) }.cast::<PageDesc>();
        if ptr.is_null() {
            handle_alloc_error(layout);
        }
        // SAFETY: `ptr` was allocated by the global allocator with `Layout::array::<PageDesc>(n)`,
        // exactly what `Vec<PageDesc>` with capacity n uses; all n elements are initialised
        // because every field of `PageDesc` is valid when all bits are zero (`Cell`s of
        // integers, of the `u16` bit set `PageFlags`, and of `PageOwner` whose discriminant 0 is
        // `Free`).
        let descs = unsafe { Vec::from_raw_parts(ptr, nr_pages, nr_pages) };
        Self { descs }
    }
    /// Number of descriptors (pages).
    pub fn len(&self) -> usize {
        self.descs.len()
    }
    /// True if there are no pages.
    pub fn is_empty(&self) -> bool {
        self.descs.is_empty()
    }
    /// The descriptor of `pfn`, or `None` past the end of memory.
    #[inline]
    pub fn get(&self, pfn: Pfn) -> Option<&PageDesc> {
        usize::try_from(pfn.0).ok().and_then(|i| self.descs.get(i))
    }
    /// The descriptor of `pfn` (`pfn_to_page`).
    ///
    /// # Panics
    /// If `pfn` is past the end of memory: callers pass only pfns they got from an allocator or
    /// a page table they built, so this is a kernel bug. Use [`MemMap::get`] for pfns that come
    /// from input.
    #[doc(alias = "pfn_to_page")]
    #[inline]
    pub fn desc(&self, pfn: Pfn) -> &PageDesc {
        match self.get(pfn) {
            Some(d) => d,
            None => beyond_mem_map(pfn, self.descs.len()),
        }
    }
    /// The descriptors of pfns `[start, end)` (clamped to memory).
    pub fn range(&self, start: Pfn, end: Pfn) -> &[PageDesc] {
        let len = self.descs.len() as u64;
        let s = start.0.min(len) as usize;
        let e = end.0.clamp(start.0.min(len), len) as usize;
        &self.descs[s..e]
    }
    /// Bytes of simulated low memory this `mem_map` costs with descriptors of
    /// `struct_page_bytes` each (see [`DEFAULT_STRUCT_PAGE_BYTES`]).
    pub fn simulated_bytes(&self, struct_page_bytes: u64) -> u64 {
        self.descs.len() as u64 * struct_page_bytes
    }
}

impl fmt::Debug for MemMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemMap")
            .field("pages", &self.descs.len())
            .finish()
    }
}

/// `MemMap::desc`'s panic, out of line so that the lookup inlines small.
#[cold]
#[inline(never)]
fn beyond_mem_map(pfn: Pfn, len: usize) -> ! {
    panic!("pfn_to_page: pfn {:#x} beyond mem_map ({len} pages)", pfn.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_state_is_documented_state() {
        let mm = MemMap::new(8);
        assert_eq!(mm.len(), 8);
        let d = mm.desc(Pfn(7));
        assert_eq!(d.flags(), PageFlags::empty());
        assert_eq!(d.owner(), PageOwner::Free);
        assert_eq!(d.count(), 0);
        assert_eq!(d.mapcount(), 0);
        assert_eq!(d.private(), 0);
        assert_eq!(d.order(), 0);
        assert!(mm.get(Pfn(8)).is_none());
        assert!(MemMap::new(0).is_empty());
    }

    #[test]
    fn counts_and_flags() {
        let mm = MemMap::new(2);
        let d = mm.desc(Pfn(1));
        assert_eq!(d.get_page(), 1);
        assert_eq!(d.get_page(), 2);
        assert_eq!(d.put_page(), 1);
        assert_eq!(d.inc_mapcount(), 1);
        assert_eq!(d.dec_mapcount(), 0);
        d.set_flag(PageFlags::DIRTY | PageFlags::ANON);
        assert!(d.test_flag(PageFlags::DIRTY));
        assert!(d.test_and_clear_flag(PageFlags::DIRTY));
        assert!(!d.test_and_clear_flag(PageFlags::DIRTY));
        assert!(!d.test_and_set_flag(PageFlags::LOCKED));
        assert!(d.test_and_set_flag(PageFlags::LOCKED));
        assert_eq!(d.flags(), PageFlags::ANON | PageFlags::LOCKED);
        d.set_owner(PageOwner::PageTable);
        assert_eq!(d.owner().name(), "page tables");
        assert_eq!(mm.range(Pfn(1), Pfn(100)).len(), 1);
        assert_eq!(mm.simulated_bytes(DEFAULT_STRUCT_PAGE_BYTES), 96);
    }

    #[test]
    fn free_head_reads_count_zero() {
        let mm = MemMap::new(1);
        let d = mm.desc(Pfn(0));
        d.make_free_head(3);
        d.set_next_free(5);
        d.set_prev_free(NO_PFN);
        assert_eq!(d.count(), 0);
        assert_eq!(d.mapcount(), 0);
        assert_eq!(d.order(), 3);
    }

    #[test]
    #[should_panic(expected = "already 0")]
    fn put_page_underflow_is_a_bug() {
        let mm = MemMap::new(1);
        mm.desc(Pfn(0)).put_page();
    }

    #[test]
    #[should_panic(expected = "belongs to the buddy allocator")]
    fn allocator_flags_are_protected() {
        let mm = MemMap::new(1);
        mm.desc(Pfn(0)).set_flag(PageFlags::BUDDY);
    }

    #[test]
    fn huge_mem_map_is_lazy() {
        // 64 GB: 16.7 M descriptors, 256 MB of host address space, touched only at the ends.
        let mm = MemMap::new(1 << 24);
        assert_eq!(mm.len(), 1 << 24);
        assert_eq!(mm.desc(Pfn((1 << 24) - 1)).count(), 0);
        assert_eq!(PageOwner::ALL.len(), PageOwner::COUNT);
        for (i, o) in PageOwner::ALL.iter().enumerate() {
            assert_eq!(o.index(), i);
        }
    }
}
