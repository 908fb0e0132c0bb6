//! Persistent kmaps (`kmap` / `kunmap`): the window the seed does not want ptes to depend on.
//!
//! `LAST_PKMAP` entries at `PKMAP_BASE` (1024, or 512 with PAE), one global spinlock
//! (`kmap_lock`), a use count per entry: 0 free and flushed, 1 unused but perhaps still cached
//! in some TLB, n = n-1 users. A new mapping searches round-robin from the last entry used; on
//! wrap-around every count-1 entry is cleared and the TLBs of *all* CPUs are flushed (lazy
//! flushing). When no entry is free the caller sleeps until a `kunmap` frees one — which is
//! why a task that holds kmaps and asks for one more can wait forever once every entry is
//! held by such tasks.

use super::{kernel_page_flags, Highmem, HighmemEnv};
use crate::counters::Counter;
use crate::ctx::{Ctx, SleepCtx};
use crate::pgtable::entry_io::write_entry;
use crate::platform::{BugReport, Platform, TaskId, TracePoint, WaitQueueKey};
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::vec;
use alloc::vec::Vec;
use highpte_arch::{Entry, PagingMode, Pfn, VirtAddr};

/// The wait queue of tasks waiting for a free pkmap entry (`pkmap_map_wait`).
pub const PKMAP_WAIT: WaitQueueKey = WaitQueueKey(0x706b_6d61_705f_7761);

/// One persistent mapping held by a task (for reports).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PkmapHolder {
    /// The pkmap entry.
    pub nr: u32,
    /// The page mapped there.
    pub pfn: Pfn,
    /// Where it was taken.
    pub place: &'static str,
}

/// The state of the persistent kmap window, protected by `kmap_lock`.
pub struct Pkmap {
    /// `pkmap_count`.
    count: Vec<u32>,
    /// The page at each entry.
    page: Vec<Option<Pfn>>,
    /// `last_pkmap_nr`.
    last_nr: u32,
    /// `page_address()`'s hash: page to entry.
    by_page: BTreeMap<u64, u32>,
    /// What each task holds.
    holders: BTreeMap<TaskId, Vec<PkmapHolder>>,
}

impl Pkmap {
    /// An empty window of `n` entries.
    pub fn new(n: u32) -> Self {
        Self {
            count: vec![0; n as usize],
            page: vec![None; n as usize],
            last_nr: 0,
            by_page: BTreeMap::new(),
            holders: BTreeMap::new(),
        }
    }
    /// Entries in use (count > 1).
    pub fn in_use(&self) -> u32 {
        self.count.iter().filter(|c| **c > 1).count() as u32
    }
    /// Number of entries.
    pub fn len(&self) -> u32 {
        self.count.len() as u32
    }
    /// Always false: the window has entries.
    pub fn is_empty(&self) -> bool {
        self.count.is_empty()
    }
    /// The use count of entry `nr`.
    pub fn count(&self, nr: u32) -> u32 {
        self.count[nr as usize]
    }
    /// Persistent kmaps held, by task.
    pub fn holders(&self) -> &BTreeMap<TaskId, Vec<PkmapHolder>> {
        &self.holders
    }
}

/// How a persistent kmap attempt ended when the caller could not sleep.
pub(crate) enum TryKmap {
    /// Mapped at this address.
    Mapped(VirtAddr),
    /// Every entry is in use: the caller must drop its locks and wait.
    Full,
}

impl<M: PagingMode> Highmem<M> {
    /// `kmap(page)`: map a page into the persistent window (its direct-map address for a low
    /// page). May sleep until an entry is free.
    pub(crate) fn kmap<P: Platform>(
        &self,
        env: HighmemEnv<'_>,
        cx: &mut SleepCtx<'_, P>,
        pfn: Pfn,
        place: &'static str,
    ) -> VirtAddr {
        let p = cx.p();
        p.might_sleep(place);
        if let Some(va) = env.layout.phys_to_virt(pfn.addr().as_u64()) {
            return va;
        }
        loop {
            let token = p.prepare_to_wait(PKMAP_WAIT);
            match self.kmap_try(env, cx, pfn, place) {
                TryKmap::Mapped(va) => return va,
                TryKmap::Full => {
                    env.counters.inc(Counter::KmapSleeps);
                    cx.sleep_on(PKMAP_WAIT, token, "pkmap free entry", place);
                }
            }
        }
    }

    /// One attempt at `kmap` that never sleeps: maps the page, or reports that every entry is
    /// in use. Used by `Highmem::kmap` and by the persistent pte strategy, which must drop
    /// the page-table lock before it may wait.
    pub(crate) fn kmap_try<P: Platform>(
        &self,
        env: HighmemEnv<'_>,
        cx: &Ctx<'_, P>,
        pfn: Pfn,
        place: &'static str,
    ) -> TryKmap {
        let p = cx.p();
        if let Some(va) = env.layout.phys_to_virt(pfn.addr().as_u64()) {
            return TryKmap::Mapped(va);
        }
        let mut pk = self.pkmap.lock(p);
        let nr = match pk.by_page.get(&pfn.0).copied() {
            Some(nr) => nr,
            None => {
                // map_new_virtual: round-robin search, flushing on wrap-around.
                let n = pk.len();
                let mut left = n;
                let found = loop {
                    pk.last_nr = (pk.last_nr + 1) & (n - 1);
                    if pk.last_nr == 0 {
                        self.flush_all_zero_pkmaps(env, p, &mut pk);
                        left = n;
                    }
                    if pk.count[pk.last_nr as usize] == 0 {
                        break Some(pk.last_nr);
                    }
                    left -= 1;
                    if left == 0 {
                        break None;
                    }
                };
                let Some(nr) = found else {
                    return TryKmap::Full;
                };
                let pte_va = self.pkmap_pte_va(nr);
                let e = Entry::new(pfn, kernel_page_flags());
                // SAFETY: the pkmap pte page is low memory for good; entries change under kmap_lock.
                unsafe { write_entry::<M, P>(p, pte_va, e) };
                pk.count[nr as usize] = 1;
                pk.page[nr as usize] = Some(pfn);
                pk.by_page.insert(pfn.0, nr);
                nr
            }
        };
        pk.count[nr as usize] += 1;
        pk.holders
            .entry(p.task())
            .or_default()
            .push(PkmapHolder { nr, pfn, place });
        env.counters.inc(Counter::Kmap);
        if p.tracing() {
            let pool = pk.len();
            p.trace(TracePoint::Kmap { nr, pfn, pool });
        }
        TryKmap::Mapped(env.layout.pkmap_addr(nr))
    }

    /// `flush_all_zero_pkmaps`: clear every entry whose count is 1 and flush all TLBs.
    fn flush_all_zero_pkmaps<P: Platform>(&self, env: HighmemEnv<'_>, p: &P, pk: &mut Pkmap) {
        for nr in 0..pk.len() {
            if pk.count[nr as usize] != 1 {
                continue;
            }
            pk.count[nr as usize] = 0;
            // SAFETY: the pkmap pte page is low memory for good; entries change under kmap_lock.
            unsafe { write_entry::<M, P>(p, self.pkmap_pte_va(nr), Entry::NONE) };
            if let Some(pfn) = pk.page[nr as usize].take() {
                pk.by_page.remove(&pfn.0);
            }
        }
        p.flush_tlb_all();
        env.counters.inc(Counter::PkmapFlushes);
        env.counters.inc(Counter::FlushTlbAll);
    }

    /// `kunmap(page)`: drop one use of a persistent mapping, waking a waiter if the entry
    /// became reusable.
    pub(crate) fn kunmap<P: Platform>(
        &self,
        env: HighmemEnv<'_>,
        cx: &Ctx<'_, P>,
        pfn: Pfn,
        place: &'static str,
    ) {
        let p = cx.p();
        if env.layout.phys_to_virt(pfn.addr().as_u64()).is_some() {
            return;
        }
        let mut wake = false;
        {
            let mut pk = self.pkmap.lock(p);
            let Some(nr) = pk.by_page.get(&pfn.0).copied() else {
                drop(pk);
                p.bug(BugReport {
                    kind: "kunmap",
                    message: format!(
                        "kunmap: task {} unmaps pfn {:#x} at {} but it is not kmapped",
                        p.task(),
                        pfn.0,
                        place
                    ),
                });
            };
            let me = p.task();
            let held = pk.holders.get_mut(&me).and_then(|v| {
                let i = v.iter().rposition(|h| h.pfn == pfn)?;
                Some(v.remove(i))
            });
            if held.is_none() && self.debug {
                drop(pk);
                p.bug(BugReport {
                    kind: "kunmap",
                    message: format!(
                        "kunmap: task {} unmaps pfn {:#x} at {} that another task mapped",
                        me, pfn.0, place
                    ),
                });
            }
            if pk.holders.get(&me).is_some_and(|v| v.is_empty()) {
                pk.holders.remove(&me);
            }
            let c = &mut pk.count[nr as usize];
            *c -= 1;
            if *c == 1 {
                wake = true;
            }
            env.counters.inc(Counter::Kunmap);
            if p.tracing() {
                p.trace(TracePoint::Kunmap { nr, pfn });
            }
        }
        if wake {
            p.wake_up_all(PKMAP_WAIT);
        }
    }

    /// The kernel address of the pte of pkmap entry `nr` (`pkmap_page_table + nr`).
    fn pkmap_pte_va(&self, nr: u32) -> VirtAddr {
        VirtAddr::new(self.pkmap_pte_base.as_u32() + nr * M::ENTRY_BYTES)
    }

    /// The use count of every pkmap entry and `last_pkmap_nr`, taken under `kmap_lock`.
    pub(crate) fn pkmap_counts<P: Platform>(&self, p: &P) -> (Vec<u32>, u32) {
        let pk = self.pkmap.lock(p);
        (pk.count.clone(), pk.last_nr)
    }

    /// Persistent kmaps currently held by each task, taken under `kmap_lock`.
    pub(crate) fn pkmap_holders<P: Platform>(&self, p: &P) -> BTreeMap<TaskId, Vec<PkmapHolder>> {
        self.pkmap.lock(p).holders.clone()
    }

    /// Persistent kmaps held by each task, read after the simulation stopped.
    ///
    /// # Safety
    /// The machine must be stopped: no simulated task may run while this reads.
    pub(crate) unsafe fn pkmap_holders_stopped(&self) -> BTreeMap<TaskId, Vec<PkmapHolder>> {
        // SAFETY: forwarded to the caller.
        unsafe { self.pkmap.peek_stopped() }.holders.clone()
    }

    /// Check that `task` holds no persistent kmap (at exit).
    pub(crate) fn check_no_pkmaps<P: Platform>(&self, p: &P, task: TaskId) {
        let held = self.pkmap.lock(p).holders.get(&task).cloned();
        if let Some(h) = held.filter(|h| !h.is_empty()) {
            p.bug(BugReport {
                kind: "kmap leak",
                message: format!(
                    "task {} exits holding {} persistent kmap(s): first pfn {:#x} (entry {}) taken at {}",
                    task,
                    h.len(),
                    h[0].pfn.0,
                    h[0].nr,
                    h[0].place
                ),
            });
        }
    }
}
