//! Event counters the kernel keeps for reports (`/proc/vmstat`-like).

use core::cell::Cell;

macro_rules! counters {
    ($( $(#[$m:meta])* $name:ident = $s:literal ),* $(,)?) => {
        /// A kernel event counter.
        #[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
        #[repr(usize)]
        pub enum Counter {
            $( $(#[$m])* $name, )*
        }
        impl Counter {
            /// Every counter, in report order.
            pub const ALL: &'static [Counter] = &[$(Counter::$name,)*];
            /// The counter's report name.
            pub const fn name(self) -> &'static str {
                match self { $(Counter::$name => $s,)* }
            }
        }
    };
}

counters! {
    /// kmap_atomic calls that mapped a high page.
    KmapAtomic = "kmap_atomic",
    /// kmap_atomic calls that returned the direct map of a low page.
    KmapAtomicLow = "kmap_atomic_lowmem",
    /// kmap_atomic calls of a high page whose slot already mapped it (no pte write, no
    /// invlpg; counted in `kmap_atomic` too).
    KmapAtomicReused = "kmap_atomic_reused",
    /// Persistent kmap calls that mapped a high page.
    Kmap = "kmap",
    /// Persistent kunmap calls.
    Kunmap = "kunmap",
    /// Times a persistent kmap slept waiting for a free entry.
    KmapSleeps = "kmap_sleeps",
    /// Wrap-arounds of the pkmap window that flushed every CPU's TLB.
    PkmapFlushes = "pkmap_flush_all",
    /// Local invlpg instructions issued by the kernel.
    Invlpg = "invlpg",
    /// Full TLB flushes of all CPUs issued by the kernel.
    FlushTlbAll = "flush_tlb_all",
    /// TLB shootdowns sent to other CPUs.
    TlbShootdowns = "tlb_shootdowns",
    /// User pte pages allocated from low memory.
    PtePagesAllocLow = "pte_pages_alloc_low",
    /// User pte pages allocated from high memory.
    PtePagesAllocHigh = "pte_pages_alloc_high",
    /// User pte pages freed.
    PtePagesFreed = "pte_pages_freed",
    /// Page-table allocator requests served from a per-CPU pool or quicklist.
    PtAllocPoolHits = "pt_alloc_pool_hits",
    /// Batch refills of per-CPU page-table pools from the buddy allocator.
    PtAllocRefills = "pt_alloc_refills",
    /// Batch drains of per-CPU page-table pools to the buddy allocator.
    PtAllocDrains = "pt_alloc_drains",
    /// Page faults taken (all kinds).
    Faults = "faults",
    /// Demand-zero anonymous faults.
    FaultsAnon = "faults_anon",
    /// Copy-on-write faults.
    FaultsCow = "faults_cow",
    /// Faults on shared (shm / shared anonymous) pages.
    FaultsShared = "faults_shared",
    /// Faults that ended in SIGSEGV.
    FaultsSigsegv = "faults_sigsegv",
    /// Faults that ended in SIGBUS.
    FaultsSigbus = "faults_sigbus",
    /// Processes killed by the OOM killer.
    OomKills = "oom_kills",
    /// System calls.
    Syscalls = "syscalls",
    /// Page allocations that failed.
    AllocFailures = "alloc_failures",
    /// Pages zeroed (clear_page / clear_highpage).
    PagesZeroed = "pages_zeroed",
    /// Pages copied (copy_page / copy_user_highpage).
    PagesCopied = "pages_copied",
    /// pte_offset_map (and _nested) calls.
    PteMaps = "pte_maps",
    /// ptes filled by populate_range (pre-faulting).
    PopulatedPtes = "populated_ptes",
    /// Pages read in from swap.
    Pswpin = "pswpin",
    /// Pages written out to swap.
    Pswpout = "pswpout",
    /// Faults that had to read a page in (`pgmajfault`).
    FaultsMajor = "pgmajfault",
    /// Faults on a swap pte whose page was still in the swap cache (minor).
    FaultsSwapCache = "faults_swapcache",
    /// Direct reclaim runs (`allocstall`: an allocation found no free page).
    ReclaimRuns = "allocstall",
    /// User pages looked at by reclaim.
    PgScan = "pgscan",
    /// ptes reclaim unmapped.
    PgUnmapped = "pgunmapped",
    /// Pages reclaim freed.
    PgSteal = "pgsteal",
    /// Times an allocation woke kswapd.
    KswapdWakeups = "kswapd_wakeups",
    /// Reclaim passes kswapd made.
    KswapdRuns = "kswapd_runs",
    /// Faults on file-backed mappings.
    FaultsFile = "faults_file",
    /// File pages read from the disk (`readpage`; holes are zeroed, not read).
    FsPagesRead = "fs_pages_read",
    /// File pages written to the disk (`writepage`).
    FsPagesWritten = "fs_pages_written",
    /// Page-cache pages freed by reclaim.
    PageCacheSteal = "pgsteal_pagecache",
}

impl Counter {
    /// Number of counters.
    pub const COUNT: usize = Counter::ALL.len();
}

/// The kernel's counters.
pub struct Counters {
    values: [Cell<u64>; Counter::COUNT],
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            values: core::array::from_fn(|_| Cell::new(0)),
        }
    }
}

impl Counters {
    /// Add `n` to `c`.
    #[inline(always)]
    pub fn add(&self, c: Counter, n: u64) {
        let v = &self.values[c as usize];
        v.set(v.get() + n);
    }
    /// Add one to `c`.
    #[inline(always)]
    pub fn inc(&self, c: Counter) {
        self.add(c, 1);
    }
    /// The value of `c`.
    pub fn get(&self, c: Counter) -> u64 {
        self.values[c as usize].get()
    }
    /// Every counter with its name, in report order.
    pub fn snapshot(&self) -> alloc::vec::Vec<(&'static str, u64)> {
        Counter::ALL
            .iter()
            .map(|c| (c.name(), self.get(*c)))
            .collect()
    }
}
