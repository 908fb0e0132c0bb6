//! `kmap_atomic` / `kunmap_atomic`: one fixmap slot per (CPU, [`KmType`]), no lock, no sleep.
//!
//! Mapping disables preemption (so the task cannot migrate away from its CPU's slot), writes
//! the slot's pte in the fixmap page table (a kernel table, in low memory, reached through the
//! direct map) and invalidates that one address on this CPU only. A low page needs no slot: its
//! direct-map address is returned. If the slot's pte already maps the page (its last user on
//! this CPU mapped the same page, and unmapping left the pte in place), the pte write and the
//! `invlpg` are skipped: see `kmap_atomic_slot` for why that is exact.
//!
//! With the debug helpers on (`CONFIG_DEBUG_HIGHMEM`, but reporting the culprit instead of a
//! bare BUG) mapping checks the slot is empty, unmapping checks the address is this CPU's slot
//! for that type, then clears the pte and invalidates it so a stale pointer faults, and the
//! fault report names the mapping that was released.

use super::{kernel_page_flags, Highmem, HighmemEnv};
use crate::counters::Counter;
use crate::ctx::Ctx;
use crate::kernel::Kernel;
use crate::pgtable::entry_io::{read_entry, write_entry};
use crate::platform::{BugReport, KernelEvent, Platform, TaskId, TracePoint};
use alloc::format;
use alloc::string::String;
use highpte_arch::{Entry, KernelLayout, KmType, PagingMode, Pfn, VirtAddr};

/// Who holds (or last held) a kmap_atomic slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotUse {
    /// The task that mapped it.
    pub task: TaskId,
    /// The page mapped.
    pub pfn: Pfn,
    /// Where in the kernel it was mapped.
    pub place: &'static str,
}

/// True for the slot types reserved to the pte API.
pub(crate) const fn is_pte_km_type(ty: KmType) -> bool {
    matches!(ty, KmType::Pte0 | KmType::Pte1 | KmType::Pte2)
}

/// Report a raw caller asking for a slot type that belongs to the pte API.
pub(crate) fn refuse_pte_type<P: Platform>(
    p: &P,
    what: &'static str,
    ty: KmType,
    place: &'static str,
) {
    if is_pte_km_type(ty) {
        p.bug(BugReport {
            kind: what,
            message: format!(
                "{what}: task {} asks for {} at {}: the pte slots (KM_PTE0, KM_PTE1, KM_PTE2) belong to the pte API (PteCursor::map, map_nested, map_phys); raw callers use KM_USER0/KM_USER1",
                p.task(),
                ty.name(),
                place
            ),
        });
    }
}

impl<M: PagingMode> Highmem<M> {
    fn slot_index(&self, cpu: u32, ty: KmType) -> usize {
        (cpu * KmType::NR + ty.index()) as usize
    }

    /// `kmap_atomic(page, type)` for a raw (non-pte) slot type, as a guard that unmaps on
    /// drop. See `Kernel::kmap_atomic`.
    pub(crate) fn kmap_atomic<'a, 'p, P: Platform>(
        &'a self,
        env: HighmemEnv<'a>,
        cx: &'a mut Ctx<'p, P>,
        pfn: Pfn,
        ty: KmType,
        place: &'static str,
    ) -> KmapAtomic<'a, 'p, P, M> {
        refuse_pte_type(cx.p(), "kmap_atomic", ty, place);
        let va = self.kmap_atomic_slot(env, cx, pfn, ty, place);
        KmapAtomic {
            hm: self,
            env,
            cx,
            va,
            ty,
            place,
        }
    }

    /// Two atomic mappings at once: `first` is mapped first and unmapped last. See
    /// `Kernel::kmap_atomic_pair`.
    pub(crate) fn kmap_atomic_pair<'a, 'p, P: Platform>(
        &'a self,
        env: HighmemEnv<'a>,
        cx: &'a mut Ctx<'p, P>,
        first: (Pfn, KmType),
        second: (Pfn, KmType),
        place: &'static str,
    ) -> KmapAtomicPair<'a, 'p, P, M> {
        let p = cx.p();
        refuse_pte_type(p, "kmap_atomic", first.1, place);
        refuse_pte_type(p, "kmap_atomic", second.1, place);
        let a = self.kmap_atomic_slot(env, cx, first.0, first.1, place);
        let b = self.kmap_atomic_slot(env, cx, second.0, second.1, place);
        KmapAtomicPair {
            hm: self,
            env,
            cx,
            first: (a, first.1),
            second: (b, second.1),
            place,
        }
    }

    /// `kmap_atomic` for any slot type: the pte API's entry point (and the public one's body).
    pub(crate) fn kmap_atomic_slot<P: Platform>(
        &self,
        env: HighmemEnv<'_>,
        cx: &Ctx<'_, P>,
        pfn: Pfn,
        ty: KmType,
        place: &'static str,
    ) -> VirtAddr {
        let p = cx.p();
        p.preempt_disable();
        if let Some(va) = env.layout.phys_to_virt(pfn.addr().as_u64()) {
            env.counters.inc(Counter::KmapAtomicLow);
            return va;
        }
        let cpu = p.cpu();
        let slot = self.slot_index(cpu, ty);
        let va = env.layout.kmap_atomic_addr(cpu, ty);
        let pte_va = self.fixmap_pte_va(va);
        if self.debug {
            // SAFETY: the fixmap pte page is low memory for good; this CPU's slot, preemption off.
            let old = M::entry_from_raw(unsafe { read_entry::<M, P>(p, pte_va) });
            if !old.is_none() {
                let who = match self.atomic_slots[slot].get() {
                    Some(u) => format!(
                        "pfn {:#x} mapped by task {} at {}",
                        u.pfn.0, u.task, u.place
                    ),
                    None => format!("pte {:#x}", old.bits()),
                };
                p.bug(BugReport {
                    kind: "kmap_atomic",
                    message: format!(
                        "kmap_atomic: {} slot of CPU {} is already in use ({}); task {} maps pfn {:#x} at {}: the same type used twice",
                        ty.name(),
                        cpu,
                        who,
                        p.task(),
                        pfn.0,
                        place
                    ),
                });
            }
        }
        let want = Entry::new(pfn, kernel_page_flags());
        // The slot already maps this page: keep its pte and skip the flush.
        //
        // Why that is correct: the slot belongs to this CPU alone (`slot_index(cpu, ty)`), and
        // only `kmap_atomic` and the debug `kunmap_atomic` of this CPU ever write its pte, each
        // time followed by an `invlpg` of the slot address on this CPU. So at any moment this
        // CPU's TLB holds, for the slot address, either nothing or the translation of the
        // pte's *current* value; it cannot hold an older one, because every change of the pte
        // was flushed (other CPUs' TLBs never serve this CPU's accesses). If the current value
        // is exactly `want` (same frame, same flags; the kernel flags already carry ACCESSED
        // and DIRTY, so the MMU never rewrites it), the TLB either has `want`'s translation or
        // will walk to it: writing the same value again and flushing would change nothing.
        //
        // Without the debug helpers `kunmap_atomic` leaves the pte in place (as 2.5 did), so a
        // slot that is mapped again for the page it mapped last hits this path: consecutive
        // faults in one pte page, or a walker that remaps the table it just released. With
        // the debug helpers unmapping clears the pte (and the check above needs the slot
        // empty), so the path is never taken there: it is gated on `!debug` explicitly.
        // SAFETY: the fixmap pte page is low memory for good; this CPU's slot, preemption off.
        if !self.debug && M::entry_from_raw(unsafe { read_entry::<M, P>(p, pte_va) }) == want {
            env.counters.inc(Counter::KmapAtomic);
            env.counters.inc(Counter::KmapAtomicReused);
            if p.tracing() {
                p.trace(TracePoint::KmapAtomic { ty, pfn });
            }
            self.atomic_slots[slot].set(Some(SlotUse {
                task: p.task(),
                pfn,
                place,
            }));
            return va;
        }
        // SAFETY: the fixmap pte page is low memory for good; this CPU's slot, preemption off.
        unsafe { write_entry::<M, P>(p, pte_va, want) };
        p.charge(KernelEvent::KmapAtomicPteWrite);
        p.invlpg(va);
        env.counters.inc(Counter::KmapAtomic);
        env.counters.inc(Counter::Invlpg);
        if p.tracing() {
            p.trace(TracePoint::KmapAtomic { ty, pfn });
        }
        self.atomic_slots[slot].set(Some(SlotUse {
            task: p.task(),
            pfn,
            place,
        }));
        va
    }

    /// `kunmap_atomic` for any slot type: the pte API's entry point (and the public one's body).
    pub(crate) fn kunmap_atomic_slot<P: Platform>(
        &self,
        env: HighmemEnv<'_>,
        cx: &Ctx<'_, P>,
        va: VirtAddr,
        ty: KmType,
        place: &'static str,
    ) {
        let p = cx.p();
        if va.as_u32() < env.layout.fixaddr_start().as_u32() {
            // a low page: nothing was mapped
            p.preempt_enable();
            return;
        }
        if p.tracing() {
            p.trace(TracePoint::KunmapAtomic { ty });
        }
        let cpu = p.cpu();
        let slot = self.slot_index(cpu, ty);
        let expected = env.layout.kmap_atomic_addr(cpu, ty);
        if self.debug {
            if va.page_base() != expected {
                let what: String = match env.layout.kmap_atomic_slot_of(va) {
                    Some(Ok((c, t))) => format!("CPU {}'s {} slot", c, t.name()),
                    Some(Err(idx)) => format!("guard slot (fixmap index {idx})"),
                    None => String::from("not a kmap_atomic address"),
                };
                p.bug(BugReport {
                    kind: "kunmap_atomic",
                    message: format!(
                        "kunmap_atomic: task {} on CPU {} unmaps {} as {} at {}, but that address is {}; CPU {}'s {} slot is {}",
                        p.task(),
                        cpu,
                        va,
                        ty.name(),
                        place,
                        what,
                        cpu,
                        ty.name(),
                        expected
                    ),
                });
            }
            if self.atomic_slots[slot].get().is_none() {
                p.bug(BugReport {
                    kind: "kunmap_atomic",
                    message: format!(
                        "kunmap_atomic: task {} on CPU {} unmaps {} slot at {} that is not mapped (unbalanced unmap)",
                        p.task(),
                        cpu,
                        ty.name(),
                        place
                    ),
                });
            }
            // Clear the pte and flush it so a stale pointer faults instead of reading
            // whatever the slot maps next.
            let pte_va = self.fixmap_pte_va(expected);
            // SAFETY: the fixmap pte page is low memory for good; this CPU's slot, preemption off.
            unsafe { write_entry::<M, P>(p, pte_va, Entry::NONE) };
            p.invlpg(expected);
            env.counters.inc(Counter::Invlpg);
            self.atomic_last_use[slot].set(
                self.atomic_slots[slot]
                    .get()
                    .map(|u| SlotUse { place, ..u }),
            );
        }
        self.atomic_slots[slot].set(None);
        p.preempt_enable();
    }

    /// The kernel address of the fixmap pte that maps `va` (a fixmap address).
    fn fixmap_pte_va(&self, va: VirtAddr) -> VirtAddr {
        let idx = highpte_arch::layout::virt_to_fix(va);
        self.fixmap_ptes[idx as usize]
    }

    /// The slots held by `task` (for "scheduling with KM_TYPE held" and reports).
    pub(crate) fn atomic_slots_held_by(
        &self,
        task: TaskId,
    ) -> alloc::vec::Vec<(u32, KmType, SlotUse)> {
        let mut v = alloc::vec::Vec::new();
        for (i, s) in self.atomic_slots.iter().enumerate() {
            if let Some(u) = s.get() {
                if u.task == task {
                    let cpu = i as u32 / KmType::NR;
                    if let Some(t) = KmType::from_index(i as u32 % KmType::NR) {
                        v.push((cpu, t, u));
                    }
                }
            }
        }
        v
    }

    /// Describe a kernel address for an oops report: which kmap_atomic slot (or guard) it is
    /// and who mapped or last released it.
    ///
    /// Also explains an address past the end of the direct map (`high_memory`) below the
    /// vmalloc area: the would-be direct-map address of a high page, which has none, and an
    /// address in the persistent-kmap window. Reads no simulated memory and takes no lock (it
    /// runs inside the oops path).
    pub(crate) fn describe_kernel_address(
        &self,
        layout: &KernelLayout,
        va: VirtAddr,
    ) -> Option<String> {
        let l = layout;
        let a = va.as_u32();
        if a >= l.high_memory().as_u32() && a < l.vmalloc_start().as_u32() {
            let pfn = (a - l.page_offset().as_u32()) >> highpte_arch::PAGE_SHIFT;
            return Some(format!(
                "{va} is past the end of the direct map (high_memory {}): it would be the direct-map address of pfn {pfn:#x}, a high page with no kernel address until kmap/kmap_atomic maps it",
                l.high_memory()
            ));
        }
        if a >= l.pkmap_base().as_u32() && a < l.pkmap_end().as_u32() {
            let nr = (a - l.pkmap_base().as_u32()) >> highpte_arch::PAGE_SHIFT;
            return Some(format!(
                "{va} is persistent kmap entry {nr}: not mapped (free, or flushed at a wrap-around): a use after kunmap"
            ));
        }
        match l.kmap_atomic_slot_of(va)? {
            Err(idx) => Some(format!("{va} is a kmap_atomic guard slot (fixmap index {idx}): never mapped; an access ran off the end of a neighbouring slot")),
            Ok((cpu, ty)) => {
                let slot = self.slot_index(cpu, ty);
                if let Some(u) = self.atomic_slots[slot].get() {
                    Some(format!("{va} is CPU {cpu}'s {} slot, mapping pfn {:#x} for task {} since {}", ty.name(), u.pfn.0, u.task, u.place))
                } else if let Some(u) = self.atomic_last_use[slot].get() {
                    Some(format!(
                        "{va} is CPU {cpu}'s {} slot, released: it mapped pfn {:#x} for task {} until kunmap_atomic at {} (a use after unmap)",
                        ty.name(),
                        u.pfn.0,
                        u.task,
                        u.place
                    ))
                } else {
                    Some(format!("{va} is CPU {cpu}'s {} slot, never mapped", ty.name()))
                }
            }
        }
    }

    /// Check that `task` holds no kmap_atomic slot (called when the scheduler switches it
    /// out: "scheduling with KM_TYPE held").
    pub(crate) fn check_no_atomic_slots<P: Platform>(
        &self,
        p: &P,
        task: TaskId,
        place: &'static str,
    ) {
        // Only this CPU's slots: the task switched away from here. (By the time the switch is
        // seen, a preempted task may already run on another CPU and legitimately hold a slot
        // there.)
        let here = p.cpu();
        if let Some((cpu, ty, u)) = self
            .atomic_slots_held_by(task)
            .into_iter()
            .find(|(c, _, _)| *c == here)
        {
            p.bug(BugReport {
                kind: "scheduling with KM_TYPE held",
                message: format!(
                    "task {} scheduled away at {} while holding CPU {}'s {} slot (pfn {:#x}, mapped at {})",
                    task, place, cpu, ty.name(), u.pfn.0, u.place
                ),
            });
        }
    }
}

/// The kernel's `kmap_atomic` entry points: each hands the `Highmem` subsystem the layout and
/// counters it needs and forwards.
impl<M: PagingMode> Kernel<M> {
    /// `kmap_atomic(page, type)`: map `pfn` into this CPU's slot of type `ty` (the direct map
    /// for a low page) and return the mapping; dropping it is `kunmap_atomic`. Preemption is
    /// off while it lives, and it borrows the context mutably: nothing that may sleep can run,
    /// and no second mapping can be made from the same context (use
    /// [`Kernel::kmap_atomic_pair`] for two).
    ///
    /// The pte slots (`KM_PTE0`, `KM_PTE1`, `KM_PTE2`) belong to the pte API (the
    /// page-table cursor, `PteMap::map_nested`): asking for one here is a bug report, so raw
    /// code cannot take (or clobber) a slot a live `PteMap` holds.
    pub fn kmap_atomic<'a, 'p, P: Platform>(
        &'a self,
        cx: &'a mut Ctx<'p, P>,
        pfn: Pfn,
        ty: KmType,
        place: &'static str,
    ) -> KmapAtomic<'a, 'p, P, M> {
        self.highmem
            .kmap_atomic(self.highmem_env(), cx, pfn, ty, place)
    }

    /// Two atomic mappings at once (`copy_user_highpage`'s KM_USER0 + KM_USER1): `first` is
    /// mapped first and unmapped last.
    pub fn kmap_atomic_pair<'a, 'p, P: Platform>(
        &'a self,
        cx: &'a mut Ctx<'p, P>,
        first: (Pfn, KmType),
        second: (Pfn, KmType),
        place: &'static str,
    ) -> KmapAtomicPair<'a, 'p, P, M> {
        self.highmem
            .kmap_atomic_pair(self.highmem_env(), cx, first, second, place)
    }

    /// The raw `kmap_atomic`: map and return the bare address, to be released by
    /// [`Kernel::kunmap_atomic_raw`]. For the debug helpers' tests, which must be able to
    /// misuse the pair (unmap the wrong type, twice, never) to show what the helpers report.
    ///
    /// # Safety
    /// The caller must call [`Kernel::kunmap_atomic_raw`] with the same address and type, on
    /// the same task, before anything that may sleep, and must not use the address after it.
    /// Breaking this is exactly the bug class the debug helpers catch at run time; nothing
    /// catches it at compile time.
    pub unsafe fn kmap_atomic_raw<P: Platform>(
        &self,
        cx: &Ctx<'_, P>,
        pfn: Pfn,
        ty: KmType,
        place: &'static str,
    ) -> VirtAddr {
        refuse_pte_type(cx.p(), "kmap_atomic", ty, place);
        self.kmap_atomic_slot(cx, pfn, ty, place)
    }

    /// The raw `kunmap_atomic(addr, type)`: release the slot and re-enable preemption.
    ///
    /// # Safety
    /// `va` and `ty` must come from a [`Kernel::kmap_atomic_raw`] of this task that was not
    /// released yet (the debug helpers report it at run time when they do not).
    pub unsafe fn kunmap_atomic_raw<P: Platform>(
        &self,
        cx: &Ctx<'_, P>,
        va: VirtAddr,
        ty: KmType,
        place: &'static str,
    ) {
        refuse_pte_type(cx.p(), "kunmap_atomic", ty, place);
        self.kunmap_atomic_slot(cx, va, ty, place)
    }

    /// True for the slot types reserved to the pte API.
    pub const fn is_pte_km_type(ty: KmType) -> bool {
        is_pte_km_type(ty)
    }

    /// `kmap_atomic` for any slot type: the pte API's entry point (and the public one's body).
    pub(crate) fn kmap_atomic_slot<P: Platform>(
        &self,
        cx: &Ctx<'_, P>,
        pfn: Pfn,
        ty: KmType,
        place: &'static str,
    ) -> VirtAddr {
        self.highmem
            .kmap_atomic_slot(self.highmem_env(), cx, pfn, ty, place)
    }

    /// `kunmap_atomic` for any slot type: the pte API's entry point (and the public one's body).
    pub(crate) fn kunmap_atomic_slot<P: Platform>(
        &self,
        cx: &Ctx<'_, P>,
        va: VirtAddr,
        ty: KmType,
        place: &'static str,
    ) {
        self.highmem
            .kunmap_atomic_slot(self.highmem_env(), cx, va, ty, place)
    }
}

/// A live `kmap_atomic` mapping; unmapped (`kunmap_atomic`) when dropped.
pub struct KmapAtomic<'a, 'p, P: Platform, M: PagingMode> {
    hm: &'a Highmem<M>,
    env: HighmemEnv<'a>,
    cx: &'a mut Ctx<'p, P>,
    va: VirtAddr,
    ty: KmType,
    place: &'static str,
}

impl<'p, P: Platform, M: PagingMode> KmapAtomic<'_, 'p, P, M> {
    /// The kernel address the page is mapped at, valid while this lives.
    pub fn addr(&self) -> VirtAddr {
        self.va
    }
    /// The atomic context.
    pub fn cx(&self) -> &Ctx<'p, P> {
        self.cx
    }
}

impl<P: Platform, M: PagingMode> Drop for KmapAtomic<'_, '_, P, M> {
    fn drop(&mut self) {
        self.hm
            .kunmap_atomic_slot(self.env, self.cx, self.va, self.ty, self.place);
    }
}

/// Two live `kmap_atomic` mappings made together; the second is unmapped first on drop.
pub struct KmapAtomicPair<'a, 'p, P: Platform, M: PagingMode> {
    hm: &'a Highmem<M>,
    env: HighmemEnv<'a>,
    cx: &'a mut Ctx<'p, P>,
    first: (VirtAddr, KmType),
    second: (VirtAddr, KmType),
    place: &'static str,
}

impl<'p, P: Platform, M: PagingMode> KmapAtomicPair<'_, 'p, P, M> {
    /// The two kernel addresses, `(first, second)`.
    pub fn addrs(&self) -> (VirtAddr, VirtAddr) {
        (self.first.0, self.second.0)
    }
    /// The atomic context.
    pub fn cx(&self) -> &Ctx<'p, P> {
        self.cx
    }
}

impl<P: Platform, M: PagingMode> Drop for KmapAtomicPair<'_, '_, P, M> {
    fn drop(&mut self) {
        let (b, bt) = self.second;
        let (a, at) = self.first;
        self.hm
            .kunmap_atomic_slot(self.env, self.cx, b, bt, self.place);
        self.hm
            .kunmap_atomic_slot(self.env, self.cx, a, at, self.place);
    }
}
