//! One CPU's translation lookaside buffer (Intel SDM vol. 3, 4.10).
//!
//! Like the hardware of the era (the Pentium 4 data TLB: 64 entries, 4-way set associative for
//! 4 KB pages, plus a small separate array for large pages), capacity is bounded and replacement
//! is deterministic: per-set round robin, no host randomness. An entry stays until it is evicted
//! or invalidated, even when the page tables behind it change: a stale translation is a real
//! hazard on hardware and therefore here (SDM 4.10.4).
//!
//! Entries cache the *combined* rights of all paging-structure entries of the walk (SDM
//! 4.10.2.2): writable and user are the AND over the levels, nx the OR, dirty the leaf's D.
//!
//! # The fast path (a host-side cache, not simulated hardware)
//!
//! Behind the simulated arrays sits a small direct-mapped cache of the most recent *lookup
//! results*: vpn, frame and the data accesses the cached entry allows without any further
//! work. [`Tlb::lookup_fast`] answers from it with one compare, and counts the hit exactly as
//! [`Tlb::lookup`] would. It never changes what the simulated TLB does:
//!
//! - it is filled only by [`Tlb::lookup`], with the entry that lookup returned;
//! - every operation that can change a later `lookup` result (insert, eviction, invalidate,
//!   `invlpg`, flushes) clears the fast slots it may affect, so a fast hit always equals what
//!   `lookup` would return now;
//! - it grants a write only through an entry cached dirty, so a write through a clean entry
//!   still takes the slow path that re-walks and sets D (SDM 4.8); instruction fetches and
//!   supervisor writes that rely on CR0.WP being clear always take the slow path.

use highpte_arch::{VirtAddr, PAGE_SHIFT};

/// Ways per set of the 4 KB array.
pub const TLB_WAYS: usize = 4;
/// Default number of sets of the 4 KB array (16 x 4 = 64 entries).
pub const DEFAULT_SETS_4K: usize = 16;
/// Default number of entries of the (fully associative) large-page array.
pub const DEFAULT_LARGE_ENTRIES: usize = 8;

/// Tag of an empty slot: no vpn (20 bits) can equal it.
const INVALID_TAG: u32 = u32::MAX;

/// Slots of the fast-path cache (direct mapped by `vpn % FAST_SLOTS`).
const FAST_SLOTS: usize = 64;

/// Data accesses a fast-path slot can allow, as [`Tlb::lookup_fast`]'s `need` bits.
pub mod fast {
    /// A user-mode (CPL 3) read.
    pub const USER_READ: u8 = 1;
    /// A user-mode write (entry writable at every level, user, and already dirty).
    pub const USER_WRITE: u8 = 2;
    /// A supervisor read.
    pub const KERNEL_READ: u8 = 4;
    /// A supervisor write (entry writable and already dirty; the CR0.WP-clear case is left to
    /// the slow path).
    pub const KERNEL_WRITE: u8 = 8;
}

/// One slot of the fast-path cache: a recent lookup result and the accesses it allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FastSlot {
    /// The 4 KB vpn, or [`INVALID_TAG`].
    vpn: u32,
    /// [`fast`] bits: the accesses that need nothing beyond this translation.
    allows: u8,
    /// The 4 KB frame `vpn` maps to.
    pfn: u64,
}

impl FastSlot {
    const EMPTY: FastSlot = FastSlot {
        vpn: INVALID_TAG,
        allows: 0,
        pfn: 0,
    };
}

/// One cached translation.
///
/// For a 4 KB page `vpn`/`pfn` are the page and its frame. For a large page (`large` set) the
/// entry stored in the TLB holds the base vpn and base frame of the large page; [`Tlb::lookup`]
/// returns the 4 KB `vpn` asked for and the 4 KB frame inside the large page that it maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TlbEntry {
    /// 4 KB virtual page number (linear address >> 12).
    pub vpn: u32,
    /// The 4 KB frame that `vpn` maps to.
    pub pfn: u64,
    /// Writes allowed: R/W set at every level of the walk.
    pub writable: bool,
    /// User accesses allowed: U/S set at every level of the walk.
    pub user: bool,
    /// Instruction fetches forbidden: XD set at some level (PAE with EFER.NXE only).
    pub nx: bool,
    /// Survives a CR3 load (leaf G set and CR4.PGE on).
    pub global: bool,
    /// The leaf's D flag was set when this entry was cached (a write through a clean entry
    /// must re-walk to set D in memory, SDM 4.8).
    pub dirty: bool,
    /// Cached from a large-page PDE (4 MB or 2 MB).
    pub large: bool,
}

/// Event counts of one TLB.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TlbStats {
    /// Lookups that found an entry.
    pub hits: u64,
    /// Lookups that found none.
    pub misses: u64,
    /// `invlpg` instructions executed.
    pub invlpgs: u64,
    /// Non-global flushes (CR3 loads).
    pub flushes_nonglobal: u64,
    /// Full flushes (CR4.PGE toggle, or a CR3 load without PGE support).
    pub flushes_all: u64,
    /// Valid entries replaced to make room for a new one.
    pub evictions: u64,
}

/// One CPU's TLB: a set-associative 4 KB array and a fully associative large-page array.
#[derive(Clone, Debug)]
pub struct Tlb {
    /// One row of [`TLB_WAYS`] tags per set: the vpn of each slot, or [`INVALID_TAG`].
    tags: Box<[[u32; TLB_WAYS]]>,
    /// The entries behind `tags`.
    entries: Box<[[TlbEntry; TLB_WAYS]]>,
    /// Round-robin victim way per set.
    next_way: Box<[u8]>,
    /// `sets_4k - 1` (sets is a power of two).
    set_mask: u32,
    /// Large-page tags: `vpn >> large_vpn_shift` of each slot, or [`INVALID_TAG`].
    large_tags: Box<[u32]>,
    /// The large entries (base vpn and base pfn).
    large: Box<[TlbEntry]>,
    /// Round-robin victim in the large array.
    next_large: usize,
    /// log2 of the large page size: 22 (4 MB) or 21 (2 MB).
    large_shift: u32,
    /// `large_shift - 12`: 4 KB pages per large page, as a shift.
    large_vpn_shift: u32,
    stats: TlbStats,
    /// The fast-path cache of recent lookup results (see the module docs).
    fast: [FastSlot; FAST_SLOTS],
}

impl Tlb {
    /// A TLB of the default geometry (64 4 KB entries, 4-way; 8 large entries) for large pages
    /// of `1 << large_shift` bytes: 22 for 4 MB (2-level with PSE), 21 for 2 MB (PAE).
    ///
    /// # Panics
    /// If `large_shift` is not 21 or 22 (a machine-construction bug, not input).
    pub fn new(large_shift: u32) -> Tlb {
        Tlb::with_geometry(DEFAULT_SETS_4K, DEFAULT_LARGE_ENTRIES, large_shift)
    }

    /// A TLB with `sets_4k` sets of [`TLB_WAYS`] 4 KB entries and `large_entries` large entries.
    ///
    /// # Panics
    /// If `sets_4k` is not a power of two, `large_entries` is zero or `large_shift` is not 21
    /// or 22 (machine-construction bugs, not input).
    pub fn with_geometry(sets_4k: usize, large_entries: usize, large_shift: u32) -> Tlb {
        assert!(
            sets_4k.is_power_of_two(),
            "TLB sets must be a power of two, got {sets_4k}"
        );
        assert!(
            large_entries > 0,
            "a TLB needs at least one large-page entry"
        );
        assert!(
            large_shift == 21 || large_shift == 22,
            "large pages are 2 MB (21) or 4 MB (22), got shift {large_shift}"
        );
        Tlb {
            tags: vec![[INVALID_TAG; TLB_WAYS]; sets_4k].into_boxed_slice(),
            entries: vec![[TlbEntry::default(); TLB_WAYS]; sets_4k].into_boxed_slice(),
            next_way: vec![0; sets_4k].into_boxed_slice(),
            set_mask: (sets_4k - 1) as u32,
            large_tags: vec![INVALID_TAG; large_entries].into_boxed_slice(),
            large: vec![TlbEntry::default(); large_entries].into_boxed_slice(),
            next_large: 0,
            large_shift,
            large_vpn_shift: large_shift - PAGE_SHIFT,
            stats: TlbStats::default(),
            fast: [FastSlot::EMPTY; FAST_SLOTS],
        }
    }

    /// log2 of the large page size this TLB caches.
    pub fn large_shift(&self) -> u32 {
        self.large_shift
    }

    /// Capacity of the 4 KB array.
    pub fn capacity_4k(&self) -> usize {
        self.tags.len() * TLB_WAYS
    }

    /// Capacity of the large-page array.
    pub fn capacity_large(&self) -> usize {
        self.large_tags.len()
    }

    /// The cached translation of 4 KB page `vpn`, if any; counts a hit or a miss. A large entry
    /// covering `vpn` is returned with `vpn` and the 4 KB frame inside the large page.
    #[inline]
    pub fn lookup(&mut self, vpn: u32) -> Option<TlbEntry> {
        let set = (vpn & self.set_mask) as usize;
        if let Some(tags) = self.tags.get(set) {
            for (way, &tag) in tags.iter().enumerate() {
                if tag == vpn {
                    self.stats.hits += 1;
                    let e = self.entries.get(set).map(|e| e[way]);
                    if let Some(e) = e {
                        self.fill_fast(&e);
                    }
                    return e;
                }
            }
        }
        let e = self.lookup_large(vpn);
        if let Some(e) = &e {
            self.fill_fast(e);
        }
        e
    }

    /// The fast path of [`Tlb::lookup`]: the frame of `vpn` if a recent lookup returned an
    /// entry that allows one of the `need` accesses ([`fast`] bits) as it stands, counting the
    /// hit as `lookup` does. `None` says nothing: ask [`Tlb::lookup`].
    #[inline(always)]
    pub fn lookup_fast(&mut self, vpn: u32, need: u8) -> Option<u64> {
        let slot = &self.fast[vpn as usize % FAST_SLOTS];
        if slot.vpn == vpn && slot.allows & need != 0 {
            self.stats.hits += 1;
            Some(slot.pfn)
        } else {
            None
        }
    }

    /// Remember `e`, the entry [`Tlb::lookup`] just returned for `e.vpn`, in the fast path.
    #[inline(always)]
    fn fill_fast(&mut self, e: &TlbEntry) {
        let write = e.writable && e.dirty;
        let mut allows = fast::KERNEL_READ;
        if write {
            allows |= fast::KERNEL_WRITE;
        }
        if e.user {
            allows |= fast::USER_READ;
            if write {
                allows |= fast::USER_WRITE;
            }
        }
        self.fast[e.vpn as usize % FAST_SLOTS] = FastSlot {
            vpn: e.vpn,
            allows,
            pfn: e.pfn,
        };
    }

    /// Forget the fast-path slot of `vpn`, if it holds `vpn`.
    #[inline(always)]
    fn forget_fast(&mut self, vpn: u32) {
        let slot = &mut self.fast[vpn as usize % FAST_SLOTS];
        if slot.vpn == vpn {
            *slot = FastSlot::EMPTY;
        }
    }

    /// Forget the whole fast path (a large entry or many entries changed).
    fn forget_all_fast(&mut self) {
        self.fast = [FastSlot::EMPTY; FAST_SLOTS];
    }

    /// The slow half of [`Tlb::lookup`]: the large-page array.
    #[inline]
    fn lookup_large(&mut self, vpn: u32) -> Option<TlbEntry> {
        let tag = vpn >> self.large_vpn_shift;
        if let Some(i) = self.large_tags.iter().position(|&t| t == tag) {
            self.stats.hits += 1;
            let e = self.large[i];
            let off = vpn - e.vpn;
            return Some(TlbEntry {
                vpn,
                pfn: e.pfn + u64::from(off),
                ..e
            });
        }
        self.stats.misses += 1;
        None
    }

    /// Cache a translation. A large entry is stored by its base (the vpn and pfn are rounded
    /// down to the large page); an existing entry for the same page is replaced in place;
    /// otherwise an empty way is used, or the set's round-robin victim is evicted.
    #[inline]
    pub fn insert(&mut self, e: TlbEntry) {
        if e.large {
            self.insert_large(e);
            return;
        }
        let set = (e.vpn & self.set_mask) as usize;
        let ways = &self.tags[set];
        let way = match ways.iter().position(|&t| t == e.vpn) {
            Some(w) => w,
            None => match ways.iter().position(|&t| t == INVALID_TAG) {
                Some(w) => w,
                None => {
                    let w = self.next_way[set] as usize % TLB_WAYS;
                    self.next_way[set] = ((w + 1) % TLB_WAYS) as u8;
                    self.stats.evictions += 1;
                    w
                }
            },
        };
        // Lookups of the new entry's page and of an evicted one now answer differently.
        self.forget_fast(self.tags[set][way]);
        self.forget_fast(e.vpn);
        self.tags[set][way] = e.vpn;
        self.entries[set][way] = e;
    }

    fn insert_large(&mut self, e: TlbEntry) {
        let span_mask = (1u32 << self.large_vpn_shift) - 1;
        let e = TlbEntry {
            vpn: e.vpn & !span_mask,
            pfn: e.pfn & !u64::from(span_mask),
            ..e
        };
        let tag = e.vpn >> self.large_vpn_shift;
        let slot = match self.large_tags.iter().position(|&t| t == tag) {
            Some(i) => i,
            None => match self.large_tags.iter().position(|&t| t == INVALID_TAG) {
                Some(i) => i,
                None => {
                    let i = self.next_large % self.large_tags.len();
                    self.next_large = (i + 1) % self.large_tags.len();
                    self.stats.evictions += 1;
                    i
                }
            },
        };
        // Every page of the new large page and of an evicted one may now look up differently.
        self.forget_all_fast();
        self.large_tags[slot] = tag;
        self.large[slot] = e;
    }

    /// Drop every entry (4 KB or large) that translates `vpn`, without counting an `invlpg`.
    /// Used for the implicit invalidation of a page fault (SDM 4.10.4.2).
    #[inline]
    pub fn invalidate(&mut self, vpn: u32) {
        self.forget_fast(vpn);
        let set = (vpn & self.set_mask) as usize;
        for tag in &mut self.tags[set] {
            if *tag == vpn {
                *tag = INVALID_TAG;
            }
        }
        let large_tag = vpn >> self.large_vpn_shift;
        let mut large_dropped = false;
        for tag in self.large_tags.iter_mut() {
            if *tag == large_tag {
                *tag = INVALID_TAG;
                large_dropped = true;
            }
        }
        if large_dropped {
            self.forget_all_fast();
        }
    }

    /// `invlpg va`: drop the 4 KB entry for `va` and any large entry covering it, global or not
    /// (SDM 4.10.4.1).
    #[inline]
    pub fn invlpg(&mut self, va: VirtAddr) {
        self.stats.invlpgs += 1;
        self.invalidate(va.vpn());
    }

    /// A CR3 load: drop every non-global entry (SDM 4.10.4.1).
    pub fn flush_nonglobal(&mut self) {
        self.stats.flushes_nonglobal += 1;
        self.forget_all_fast();
        let small = self
            .tags
            .iter_mut()
            .flatten()
            .zip(self.entries.iter().flatten());
        for (tag, e) in small {
            if !e.global {
                *tag = INVALID_TAG;
            }
        }
        for (tag, e) in self.large_tags.iter_mut().zip(self.large.iter()) {
            if !e.global {
                *tag = INVALID_TAG;
            }
        }
    }

    /// Drop every entry, global ones too (a CR4.PGE toggle, SDM 4.10.4.1).
    pub fn flush_all(&mut self) {
        self.stats.flushes_all += 1;
        self.forget_all_fast();
        self.tags.fill([INVALID_TAG; TLB_WAYS]);
        self.large_tags.fill(INVALID_TAG);
    }

    /// Every valid entry (large ones by their base vpn and pfn), in array order; for invariant
    /// checks such as "no TLB maps a freed frame".
    pub fn entries(&self) -> impl Iterator<Item = TlbEntry> + '_ {
        let small = self
            .tags
            .iter()
            .flatten()
            .zip(self.entries.iter().flatten());
        let large = self.large_tags.iter().zip(self.large.iter());
        small
            .chain(large)
            .filter(|(t, _)| **t != INVALID_TAG)
            .map(|(_, e)| *e)
    }

    /// Number of valid entries.
    pub fn len(&self) -> usize {
        self.entries().count()
    }

    /// True if no entry is valid.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The event counts so far.
    pub fn stats(&self) -> TlbStats {
        self.stats
    }

    /// Zero the event counts (entries are kept).
    pub fn reset_stats(&mut self) {
        self.stats = TlbStats::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e4k(vpn: u32, pfn: u64) -> TlbEntry {
        TlbEntry {
            vpn,
            pfn,
            writable: true,
            user: true,
            ..TlbEntry::default()
        }
    }

    #[test]
    fn hit_miss_and_stats() {
        let mut t = Tlb::new(22);
        assert_eq!(t.lookup(5), None);
        t.insert(e4k(5, 77));
        assert_eq!(t.lookup(5), Some(e4k(5, 77)));
        assert_eq!(t.lookup(5 + 16), None);
        let s = t.stats();
        assert_eq!((s.hits, s.misses, s.evictions), (1, 2, 0));
        // re-insert of the same vpn replaces in place
        t.insert(e4k(5, 78));
        assert_eq!(t.len(), 1);
        assert_eq!(t.lookup(5).map(|e| e.pfn), Some(78));
    }

    #[test]
    fn round_robin_eviction_is_deterministic() {
        let mut t = Tlb::new(21);
        // five vpns in the same set (set = vpn & 15)
        for i in 0..5u32 {
            t.insert(e4k(3 + 16 * i, u64::from(i)));
        }
        assert_eq!(t.stats().evictions, 1);
        // the first victim is way 0, which held vpn 3
        assert_eq!(t.lookup(3), None);
        for i in 1..5u32 {
            assert_eq!(t.lookup(3 + 16 * i).map(|e| e.pfn), Some(u64::from(i)));
        }
        t.insert(e4k(3, 9));
        // second victim: way 1 (vpn 19)
        assert_eq!(t.lookup(19), None);
        assert_eq!(t.lookup(3).map(|e| e.pfn), Some(9));
        assert_eq!(t.len(), 4);
        assert_eq!(t.capacity_4k(), 64);
    }

    #[test]
    fn large_entries_cover_their_range() {
        let mut t = Tlb::new(22);
        // a 4 MB page at va 0x0080_0000 (vpn 0x800) mapping frame 0x1000 (pa 16 MB), inserted
        // through some vpn inside it
        t.insert(TlbEntry {
            vpn: 0x805,
            pfn: 0x1005,
            large: true,
            ..e4k(0, 0)
        });
        assert_eq!(
            t.entries().next().map(|e| (e.vpn, e.pfn)),
            Some((0x800, 0x1000))
        );
        let hit = t.lookup(0xbff).unwrap();
        assert_eq!((hit.vpn, hit.pfn, hit.large), (0xbff, 0x13ff, true));
        assert_eq!(t.lookup(0xc00), None);
        assert_eq!(t.lookup(0x7ff), None);
        t.invlpg(VirtAddr::new(0x00a1_2345));
        assert_eq!(t.lookup(0x800), None);
        assert_eq!(t.stats().invlpgs, 1);
        assert!(t.is_empty());
    }

    #[test]
    fn two_mb_large_entries() {
        let mut t = Tlb::new(21);
        t.insert(TlbEntry {
            vpn: 0x200,
            pfn: 0x4_0000,
            large: true,
            ..e4k(0, 0)
        });
        assert_eq!(t.lookup(0x3ff).map(|e| e.pfn), Some(0x4_01ff));
        assert_eq!(t.lookup(0x400), None);
        // nine distinct large pages in 8 slots: one eviction, of the oldest
        for i in 1..9u32 {
            t.insert(TlbEntry {
                vpn: 0x200 * (i + 1),
                pfn: 0,
                large: true,
                ..e4k(0, 0)
            });
        }
        assert_eq!(t.stats().evictions, 1);
        assert_eq!(t.lookup(0x200), None);
    }

    #[test]
    fn flushes_respect_global() {
        let mut t = Tlb::new(22);
        t.insert(TlbEntry {
            global: true,
            ..e4k(1, 1)
        });
        t.insert(e4k(2, 2));
        t.insert(TlbEntry {
            global: true,
            large: true,
            ..e4k(0x400, 0x400)
        });
        t.insert(TlbEntry {
            large: true,
            ..e4k(0x800, 0x800)
        });
        t.flush_nonglobal();
        let left: Vec<u32> = t.entries().map(|e| e.vpn).collect();
        assert_eq!(left, vec![1, 0x400]);
        t.flush_all();
        assert!(t.is_empty());
        let s = t.stats();
        assert_eq!((s.flushes_nonglobal, s.flushes_all), (1, 1));
    }

    /// The fast path answers only what `lookup` would answer now, and counts it the same.
    #[test]
    fn fast_path_follows_the_arrays() {
        use fast::{KERNEL_READ, KERNEL_WRITE, USER_READ, USER_WRITE};
        let mut t = Tlb::new(21);
        // filled by a lookup only, not by an insert
        t.insert(e4k(3, 30));
        assert_eq!(t.lookup_fast(3, USER_READ), None);
        assert_eq!(t.lookup(3).map(|e| e.pfn), Some(30));
        assert_eq!(t.lookup_fast(3, USER_READ), Some(30));
        assert_eq!(t.lookup_fast(3, KERNEL_READ), Some(30));
        // a clean entry never allows a write on the fast path (D must be set by a walk)
        assert_eq!(t.lookup_fast(3, USER_WRITE | KERNEL_WRITE), None);
        assert_eq!(t.stats().hits, 3);
        // dirty: writes allowed; a supervisor-only entry allows no user access
        t.insert(TlbEntry {
            dirty: true,
            ..e4k(3, 30)
        });
        assert_eq!(t.lookup_fast(3, USER_READ), None, "insert forgets the page");
        t.lookup(3);
        assert_eq!(t.lookup_fast(3, USER_WRITE), Some(30));
        t.insert(TlbEntry {
            user: false,
            dirty: true,
            ..e4k(4, 40)
        });
        t.lookup(4);
        assert_eq!(t.lookup_fast(4, USER_READ | USER_WRITE), None);
        assert_eq!(t.lookup_fast(4, KERNEL_WRITE), Some(40));
        // invlpg, eviction and flushes forget
        t.invlpg(VirtAddr::new(3 << 12));
        assert_eq!(t.lookup_fast(3, USER_READ), None);
        for i in 0..4u32 {
            t.insert(e4k(4 + 16 * (i + 1), 0)); // same set as vpn 4: evicts it at last
            assert_eq!(t.lookup(4).is_some(), i < 3);
            assert_eq!(t.lookup_fast(4, KERNEL_READ).is_some(), i < 3);
        }
        t.insert(e4k(5, 50));
        t.lookup(5);
        t.flush_nonglobal();
        assert_eq!(t.lookup_fast(5, KERNEL_READ), None);
        // a large entry: cached per 4 KB page, forgotten when the large entry goes
        t.insert(TlbEntry {
            vpn: 0x200,
            pfn: 0x4_0000,
            large: true,
            ..e4k(0, 0)
        });
        t.lookup(0x234);
        assert_eq!(t.lookup_fast(0x234, USER_READ), Some(0x4_0034));
        t.invalidate(0x3ff);
        assert_eq!(t.lookup_fast(0x234, USER_READ), None);
        assert_eq!(t.lookup(0x234), None);
        // a slot holds one page: a page that shares it replaces it
        t.insert(e4k(6, 60));
        t.insert(e4k(6 + FAST_SLOTS as u32, 61));
        t.lookup(6);
        t.lookup(6 + FAST_SLOTS as u32);
        assert_eq!(t.lookup_fast(6, USER_READ), None);
        assert_eq!(t.lookup_fast(6 + FAST_SLOTS as u32, USER_READ), Some(61));
        t.flush_all();
        assert_eq!(t.lookup_fast(6 + FAST_SLOTS as u32, KERNEL_READ), None);
    }

    #[test]
    fn invalidate_drops_only_that_page() {
        let mut t = Tlb::new(22);
        t.insert(e4k(7, 1));
        t.insert(e4k(8, 2));
        t.invalidate(7);
        assert_eq!(t.lookup(7), None);
        assert_eq!(t.lookup(8).map(|e| e.pfn), Some(2));
        assert_eq!(t.stats().invlpgs, 0);
    }
}
