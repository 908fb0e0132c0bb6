//! The pte mappings: [`PteMap`] (`pte_offset_map`, unmapped on drop as `pte_unmap`), its
//! nested second mapping (`pte_offset_map_nested`), [`PteByPhys`] (rmap's KM_PTE2 mapping), and
//! the kernel's own ptes (`pte_offset_kernel`, `pte_alloc_kernel`). User mappings are made only
//! by a [`PteCursor`](crate::pgtable::PteCursor), which holds the page-table lock and reads the
//! pmd under it.

use crate::counters::Counter;
use crate::ctx::{Ctx, SleepCtx};
use crate::highmem::pkmap::{TryKmap, PKMAP_WAIT};
use crate::kernel::{Kernel, PteStrategy};
use crate::mm::Mm;
use crate::pgtable::alloc::PtKind;
use crate::pgtable::tables::{KernelTables, PmdEntry, TableKind};
use crate::pgtable::{OutOfMemory, PageTableLock};
use crate::platform::{BugReport, Platform};
use alloc::format;
use highpte_arch::{Entry, EntryFlags, KmType, PagingMode, Pfn, VirtAddr, PAGE_SHIFT, PAGE_SIZE};

/// Physical address of the pte for `va` in pte page `ptp`: what a reverse-map entry records,
/// and where boot finds a fixmap slot's pte.
#[inline(always)]
pub(crate) fn pte_phys<M: PagingMode>(ptp: Pfn, va: VirtAddr) -> u64 {
    ptp.addr().as_u64() + (M::pte_index(va) * M::ENTRY_BYTES) as u64
}

/// How a pte page is reached while mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MapKind {
    /// Low page, lowmem strategy: the direct map, nothing to undo.
    Direct,
    /// kmap_atomic slot of this type (or the direct map of a low page with preemption off).
    Atomic(KmType),
    /// Persistent kmap.
    Persistent,
}

/// One mapped pte page: read and write its entries. Has no way to map another page, so the
/// nested view of a first mapping cannot be used to take a third.
pub struct PtePage<'k, 'p, P: Platform, M: PagingMode> {
    k: &'k Kernel<M>,
    p: &'p P,
    /// Kernel address of the pte page while mapped.
    base: VirtAddr,
    /// The pte page.
    page: Pfn,
    /// First user address the page maps.
    span_start: u32,
    kind: MapKind,
}

impl<P: Platform, M: PagingMode> PtePage<'_, '_, P, M> {
    #[inline(always)]
    fn entry_va(&self, addr: VirtAddr) -> VirtAddr {
        debug_assert_eq!(
            M::pmd_base(addr).as_u32(),
            self.span_start,
            "address outside the mapped pte page"
        );
        VirtAddr::new(self.base.as_u32() + M::pte_index(addr) * M::ENTRY_BYTES)
    }
    /// The pte for `addr` (a copy).
    #[inline(always)]
    pub fn get(&self, addr: VirtAddr) -> Entry {
        // SAFETY: the entry lies in the pte page this guard keeps mapped, under its lock.
        M::entry_from_raw(unsafe { self.k.read_entry(self.p, self.entry_va(addr)) })
    }
    /// `set_pte`: store the pte for `addr`.
    #[inline(always)]
    pub fn set(&mut self, addr: VirtAddr, pte: Entry) {
        // SAFETY: the entry lies in the pte page this guard keeps mapped, under its lock.
        unsafe { self.k.write_entry(self.p, self.entry_va(addr), pte) };
    }
    /// `ptep_get_and_clear`: clear the pte for `addr`, returning what it held.
    #[inline(always)]
    pub fn clear(&mut self, addr: VirtAddr) -> Entry {
        let va = self.entry_va(addr);
        // SAFETY: the entry lies in the pte page this guard keeps mapped, under its lock.
        let old = M::entry_from_raw(unsafe { self.k.read_entry(self.p, va) });
        if !old.is_none() {
            // SAFETY: as above.
            unsafe { self.k.write_entry(self.p, va, Entry::NONE) };
        }
        old
    }
    /// A reference to the pte for `addr`; it cannot outlive this mapping.
    pub fn slot(&mut self, addr: VirtAddr) -> PteSlot<'_, P, M> {
        let va = self.entry_va(addr);
        PteSlot {
            k: self.k,
            p: self.p,
            va,
        }
    }
    /// The pte page's frame.
    pub fn page(&self) -> Pfn {
        self.page
    }
    /// Physical address of the pte for `addr` (what a reverse-map entry records).
    #[inline(always)]
    pub fn pte_phys(&self, addr: VirtAddr) -> u64 {
        pte_phys::<M>(self.page, addr)
    }
    /// The user address range this pte page maps: `[start, end)` (end may be 4 GB).
    pub fn span(&self) -> (VirtAddr, u64) {
        (
            VirtAddr::new(self.span_start),
            self.span_start as u64 + M::PTE_PAGE_SPAN as u64,
        )
    }
    /// True if every entry of the page is empty (`pte_none`), i.e. the page can be freed.
    pub fn is_empty(&self) -> bool {
        (0..M::PTRS_PER_PTE).all(|i| {
            let va = VirtAddr::new(self.base.as_u32() + i * M::ENTRY_BYTES);
            // SAFETY: the entry lies in the pte page this guard keeps mapped, under its lock.
            unsafe { self.k.read_entry(self.p, va) == 0 }
        })
    }
    /// Visit every entry for addresses in `[start, end)` (clamped to this page), in order,
    /// on this one mapping: `f(addr, pte)` returns a new value to store, or `None` to leave
    /// the entry as it is. The entries are read in one block and the changed ones written
    /// back in one block: one translation of the mapping for the whole range.
    pub fn for_each(
        &mut self,
        start: VirtAddr,
        end: u64,
        mut f: impl FnMut(VirtAddr, Entry) -> Option<Entry>,
    ) {
        let (lo, hi) = self.span();
        let s = start.as_u32().max(lo.as_u32());
        let e = end.min(hi);
        if (s as u64) >= e {
            return;
        }
        let first = M::pte_index(VirtAddr::new(s));
        let n = ((e - s as u64) / highpte_arch::PAGE_SIZE) as usize;
        let eb = M::ENTRY_BYTES as usize;
        let mut buf = [0u8; PAGE_SIZE as usize];
        let bytes = &mut buf[..n * eb];
        let va = VirtAddr::new(self.base.as_u32() + first * M::ENTRY_BYTES);
        // SAFETY: `va` is inside the pte page this guard keeps mapped, under its lock.
        unsafe { self.p.read_block(va, bytes) };
        let (mut lo_dirty, mut hi_dirty) = (usize::MAX, 0usize);
        for i in 0..n {
            let raw = if eb == 8 {
                u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]))
            } else {
                u64::from(u32::from_le_bytes(
                    bytes[i * 4..i * 4 + 4].try_into().unwrap_or([0; 4]),
                ))
            };
            let old = M::entry_from_raw(raw);
            let addr = VirtAddr::new(s + (i as u32) * highpte_arch::PAGE_SIZE as u32);
            if let Some(new) = f(addr, old) {
                if new != old {
                    if eb == 8 {
                        bytes[i * 8..i * 8 + 8].copy_from_slice(&new.bits().to_le_bytes());
                    } else {
                        bytes[i * 4..i * 4 + 4].copy_from_slice(&new.low().to_le_bytes());
                    }
                    lo_dirty = lo_dirty.min(i);
                    hi_dirty = i;
                }
            }
        }
        if lo_dirty != usize::MAX {
            let wva = VirtAddr::new(va.as_u32() + (lo_dirty * eb) as u32);
            // SAFETY: as for the read above.
            unsafe {
                self.p
                    .write_block(wva, &bytes[lo_dirty * eb..(hi_dirty + 1) * eb])
            };
        }
    }
    /// The kernel address the page is mapped at. Test-only: this is exactly the raw pointer
    /// the API exists to hide (the conversion-bug tests store it to show what happens).
    #[doc(hidden)]
    pub fn kernel_address_for_tests(&self) -> VirtAddr {
        self.base
    }
}

/// A reference to one pte inside a mapping. Borrowing the mapping, it cannot outlive it.
pub struct PteSlot<'m, P: Platform, M: PagingMode> {
    k: &'m Kernel<M>,
    p: &'m P,
    va: VirtAddr,
}

impl<P: Platform, M: PagingMode> PteSlot<'_, P, M> {
    /// Read the pte.
    pub fn get(&self) -> Entry {
        // SAFETY: the slot lies in a pte page its map keeps mapped, under its lock.
        M::entry_from_raw(unsafe { self.k.read_entry(self.p, self.va) })
    }
    /// Write the pte.
    pub fn set(&mut self, pte: Entry) {
        // SAFETY: as for `get`.
        unsafe { self.k.write_entry(self.p, self.va, pte) };
    }
}

/// A mapped pte page (`pte_offset_map`): unmapped when dropped (`pte_unmap`). Made only by a
/// [`PteCursor`](crate::pgtable::PteCursor), which it borrows mutably: the page-table lock
/// cannot be dropped and the task cannot sleep while it lives.
pub struct PteMap<'a, 'p, P: Platform, M: PagingMode> {
    page: PtePage<'a, 'p, P, M>,
    cx: &'a mut Ctx<'p, P>,
    ptl: &'a PageTableLock,
    mm: &'a Mm,
}

/// The second pte page mapped inside a first (`pte_offset_map_nested`, KM_PTE1): fork's source
/// table, mremap's old location. Gives access to both pages; has no way to map a third.
pub struct PteMapNested<'b, 'a, 'p, P: Platform, M: PagingMode> {
    outer: &'b mut PtePage<'a, 'p, P, M>,
    inner: PtePage<'a, 'p, P, M>,
    cx: &'b Ctx<'p, P>,
}

impl<'a, 'p, P: Platform, M: PagingMode> core::ops::Deref for PteMap<'a, 'p, P, M> {
    type Target = PtePage<'a, 'p, P, M>;
    fn deref(&self) -> &Self::Target {
        &self.page
    }
}
impl<P: Platform, M: PagingMode> core::ops::DerefMut for PteMap<'_, '_, P, M> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.page
    }
}
impl<'a, 'p, P: Platform, M: PagingMode> core::ops::Deref for PteMapNested<'_, 'a, 'p, P, M> {
    type Target = PtePage<'a, 'p, P, M>;
    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}
impl<P: Platform, M: PagingMode> core::ops::DerefMut for PteMapNested<'_, '_, '_, P, M> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.inner
    }
}

impl<'a, 'p, P: Platform, M: PagingMode> PteMap<'a, 'p, P, M> {
    /// The atomic context, for work allowed while a pte is mapped (no sleeping).
    pub fn cx(&self) -> &Ctx<'p, P> {
        self.cx
    }

    /// `pte_offset_map_nested`: map the pte page covering `addr` in the same address space
    /// (KM_PTE1) while this one stays mapped (mremap's old location). The pmd is read now,
    /// under the page-table lock this mapping holds; `None` if it maps no pte page.
    pub fn map_nested<'b>(&'b mut self, addr: VirtAddr) -> Option<PteMapNested<'b, 'a, 'p, P, M>> {
        let mm = self.mm;
        self.map_nested_from(mm, addr)
    }

    /// `pte_offset_map_nested` into another address space (fork's source, KM_PTE1). The
    /// source's pmd cannot change meanwhile: its `mmap_sem` is held by the caller (fork holds
    /// it for writing), and pmds are cleared only under it. `None` if no pte page is there.
    pub fn map_nested_from<'b>(
        &'b mut self,
        src: &Mm,
        addr: VirtAddr,
    ) -> Option<PteMapNested<'b, 'a, 'p, P, M>> {
        let k = self.page.k;
        let pmd = k.pmd_offset(self.cx.p(), &src.pgd, addr);
        if !pmd.is_present() {
            return None;
        }
        let inner = map_page(
            k,
            self.cx,
            self.ptl,
            &pmd,
            addr,
            KmType::Pte1,
            "pte_offset_map_nested",
        );
        Some(PteMapNested {
            outer: &mut self.page,
            inner,
            cx: self.cx,
        })
    }

    /// Make a mapping of a pte page the cursor found present (the cursor's half of the API).
    pub(crate) fn new(
        page: PtePage<'a, 'p, P, M>,
        cx: &'a mut Ctx<'p, P>,
        ptl: &'a PageTableLock,
        mm: &'a Mm,
    ) -> Self {
        Self { page, cx, ptl, mm }
    }
}

/// Access to one page of a nested pair. It wraps the page privately, so the two mappings
/// of a pair can be read and written but never swapped or moved out (which would make the
/// nested mapping's drop unmap the wrong slot).
pub struct PteView<'x, 'a, 'p, P: Platform, M: PagingMode>(&'x mut PtePage<'a, 'p, P, M>);

impl<P: Platform, M: PagingMode> PteView<'_, '_, '_, P, M> {
    /// The pte for `addr` (a copy).
    #[inline(always)]
    pub fn get(&self, addr: VirtAddr) -> Entry {
        self.0.get(addr)
    }
    /// Store the pte for `addr`.
    #[inline(always)]
    pub fn set(&mut self, addr: VirtAddr, pte: Entry) {
        self.0.set(addr, pte)
    }
    /// Clear the pte for `addr`, returning what it held.
    #[inline(always)]
    pub fn clear(&mut self, addr: VirtAddr) -> Entry {
        self.0.clear(addr)
    }
    /// A reference to one pte; it cannot outlive the view.
    pub fn slot(&mut self, addr: VirtAddr) -> PteSlot<'_, P, M> {
        self.0.slot(addr)
    }
    /// The pte page's frame.
    pub fn page(&self) -> Pfn {
        self.0.page()
    }
    /// Physical address of the pte for `addr`.
    #[inline(always)]
    pub fn pte_phys(&self, addr: VirtAddr) -> u64 {
        self.0.pte_phys(addr)
    }
}

impl<'a, 'p, P: Platform, M: PagingMode> PteMapNested<'_, 'a, 'p, P, M> {
    /// The first mapping (fork's destination, mremap's new location).
    pub fn outer(&mut self) -> PteView<'_, 'a, 'p, P, M> {
        PteView(self.outer)
    }
    /// Both pages at once: `(outer, nested)`.
    pub fn both(&mut self) -> (PteView<'_, 'a, 'p, P, M>, PteView<'_, 'a, 'p, P, M>) {
        (PteView(self.outer), PteView(&mut self.inner))
    }
    /// The atomic context.
    pub fn cx(&self) -> &Ctx<'p, P> {
        self.cx
    }
}

impl<P: Platform, M: PagingMode> Drop for PteMap<'_, '_, P, M> {
    fn drop(&mut self) {
        unmap_page(&self.page, self.cx, "pte_unmap");
    }
}

impl<P: Platform, M: PagingMode> Drop for PteMapNested<'_, '_, '_, P, M> {
    fn drop(&mut self) {
        unmap_page(&self.inner, self.cx, "pte_unmap_nested");
    }
}

pub(crate) fn map_page<'a, 'p, P: Platform, M: PagingMode, K: TableKind>(
    k: &'a Kernel<M>,
    cx: &Ctx<'p, P>,
    ptl: &PageTableLock,
    pmd: &PmdEntry<K>,
    addr: VirtAddr,
    ty: KmType,
    place: &'static str,
) -> PtePage<'a, 'p, P, M> {
    let p = cx.p();
    k.counters.inc(Counter::PteMaps);
    let mut page = pmd.val.pfn();
    if !pmd.val.is_present() {
        p.bug(BugReport {
            kind: "pte_offset_map",
            message: format!("{place}: task {} maps the pte page of {addr} but its pmd entry {:#x} is not present", p.task(), pmd.val.bits()),
        });
    }
    let (base, kind) = match (k.opts.strategy, k.page_address(page)) {
        (PteStrategy::Lowmem, Some(va)) => (va, MapKind::Direct),
        (PteStrategy::Lowmem, None) => p.bug(BugReport {
            kind: "pte_offset_map",
            message: format!(
                "{place}: pte page {:#x} is in high memory but the strategy is lowmem",
                page.0
            ),
        }),
        (PteStrategy::Atomic, _) => (k.kmap_atomic_slot(cx, page, ty, place), MapKind::Atomic(ty)),
        (PteStrategy::Persistent, Some(va)) => (va, MapKind::Direct),
        (PteStrategy::Persistent, None) => {
            loop {
                let token = p.prepare_to_wait(PKMAP_WAIT);
                match k.kmap_try(cx, page, place) {
                    TryKmap::Mapped(va) => break (va, MapKind::Persistent),
                    TryKmap::Full => {
                        // Andrea's pmd_page_under_lock: drop the page-table lock around the
                        // blocking kmap, retake it, and re-validate the pmd.
                        k.counters.inc(Counter::KmapSleeps);
                        let held = ptl.holder() == Some(p.task());
                        if held {
                            ptl.force_unlock(p);
                        }
                        p.sleep(PKMAP_WAIT, token, "pkmap free entry", place);
                        if held {
                            ptl.relock(p);
                        }
                        // SAFETY: the pmd lies in the mm's pgd/pmd page (direct map), read
                        // under the page-table lock just retaken.
                        let again = M::entry_from_raw(unsafe { k.read_entry(p, pmd.va) });
                        if again.pfn() != page || !again.is_present() {
                            p.bug(BugReport {
                            kind: "pte_offset_map",
                            message: format!("{place}: the pmd of {addr} changed while task {} slept for a kmap", p.task()),
                        });
                        }
                        page = again.pfn();
                    }
                }
            }
        }
    };
    PtePage {
        k,
        p,
        base,
        page,
        span_start: M::pmd_base(addr).as_u32(),
        kind,
    }
}

fn unmap_page<P: Platform, M: PagingMode>(
    page: &PtePage<'_, '_, P, M>,
    cx: &Ctx<'_, P>,
    place: &'static str,
) {
    match page.kind {
        MapKind::Direct => {}
        MapKind::Atomic(ty) => page.k.kunmap_atomic_slot(cx, page.base, ty, place),
        MapKind::Persistent => page.k.kunmap(cx, page.page, place),
    }
}

/// A kernel pte (`pte_offset_kernel`): kernel tables live in low memory, so no mapping is
/// needed; this handle is a direct-map address.
pub struct KernelPte<'k, M: PagingMode> {
    k: &'k Kernel<M>,
    va: VirtAddr,
}

impl<M: PagingMode> KernelPte<'_, M> {
    /// Read it.
    pub fn get<P: Platform>(&self, p: &P) -> Entry {
        // SAFETY: a kernel pte page lives in low memory for good (direct map).
        M::entry_from_raw(unsafe { self.k.read_entry(p, self.va) })
    }
    /// Write it.
    pub fn set<P: Platform>(&self, p: &P, pte: Entry) {
        // SAFETY: as for `get`; kernel ptes are written by their owner (boot, kmap, vmalloc).
        unsafe { self.k.write_entry(p, self.va, pte) };
    }
}

/// `pte_offset_kernel(pmd, addr)`: the kernel pte covering `addr`. Accepts only kernel
/// tables: a user pte must be mapped.
pub fn pte_offset_kernel<'k, P: Platform, M: PagingMode>(
    k: &'k Kernel<M>,
    p: &P,
    pmd: &PmdEntry<KernelTables>,
    addr: VirtAddr,
) -> KernelPte<'k, M> {
    let page = pmd.val.pfn();
    let Some(base) = k.page_address(page) else {
        p.bug(BugReport {
            kind: "pte_offset_kernel",
            message: format!(
                "pte_offset_kernel: kernel pte page {:#x} for {addr} is not in low memory",
                page.0
            ),
        });
    };
    KernelPte {
        k,
        va: VirtAddr::new(base.as_u32() + M::pte_index(addr) * M::ENTRY_BYTES),
    }
}

/// `pte_alloc_kernel(pmd, addr)`: allocate a kernel pte page (always low) if the pmd is
/// empty, then return the kernel pte.
pub fn pte_alloc_kernel<'k, P: Platform, M: PagingMode>(
    k: &'k Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    addr: VirtAddr,
) -> Result<KernelPte<'k, M>, OutOfMemory> {
    let p = cx.p();
    let pmd = k.pmd_offset_k(p, addr);
    if pmd.is_none() {
        let new = k.pt_alloc_page(cx, PtKind::KernelPte).ok_or(OutOfMemory)?;
        let g = k.init_mm.ptl().lock(p);
        let again = k.pmd_reread(p, &pmd);
        if again.is_none() {
            // SAFETY: a kernel pmd (direct map), written under init_mm's lock.
            unsafe { k.write_entry(p, pmd.va, Entry::new(new, EntryFlags::KERNPG_TABLE)) };
        } else {
            drop(g);
            k.pt_free_page(cx, new, PtKind::KernelPte);
        }
    }
    let pmd = k.pmd_offset_k(p, addr);
    Ok(pte_offset_kernel(k, p, &pmd, addr))
}

/// One user pte reached by its *physical* address (a reverse-map entry), mapped with the
/// third atomic slot `KM_PTE2` when its pte page is in high memory (a kernel pointer to a
/// highmem pte is meaningless once unmapped, so rmap keeps physical addresses). The caller
/// holds the page-table lock of the mm the pte belongs to: the mapping is made by that mm's
/// [`PteCursor::map_phys`](crate::pgtable::PteCursor::map_phys) and borrows the cursor (and
/// so the context) mutably: nothing that may sleep can run, and no second one can be live.
/// Unmapped on drop.
pub struct PteByPhys<'a, 'p, P: Platform, M: PagingMode> {
    k: &'a Kernel<M>,
    cx: &'a mut Ctx<'p, P>,
    base: VirtAddr,
    va: VirtAddr,
}

impl<P: Platform, M: PagingMode> PteByPhys<'_, '_, P, M> {
    /// The pte (a copy).
    pub fn get(&self) -> Entry {
        // SAFETY: the pte lies in the page this KM_PTE2 guard keeps mapped; the caller holds
        // the page-table lock the rmap chain names.
        M::entry_from_raw(unsafe { self.k.read_entry(self.cx.p(), self.va) })
    }
    /// `set_pte`.
    pub fn set(&mut self, pte: Entry) {
        // SAFETY: as for `get`.
        unsafe { self.k.write_entry(self.cx.p(), self.va, pte) };
    }
}

impl<P: Platform, M: PagingMode> Drop for PteByPhys<'_, '_, P, M> {
    fn drop(&mut self) {
        self.k
            .kunmap_atomic_slot(self.cx, self.base, KmType::Pte2, "rmap pte_unmap");
    }
}

/// Map the pte at physical address `pte_pa` (KM_PTE2 for a high pte page, the direct map for
/// a low one). The cursor's half of [`PteByPhys`].
pub(crate) fn map_phys<'a, 'p, P: Platform, M: PagingMode>(
    k: &'a Kernel<M>,
    cx: &'a mut Ctx<'p, P>,
    pte_pa: u64,
) -> PteByPhys<'a, 'p, P, M> {
    k.counters.inc(Counter::PteMaps);
    let page = Pfn(pte_pa >> PAGE_SHIFT);
    let off = (pte_pa & (PAGE_SIZE - 1)) as u32;
    let base = k.kmap_atomic_slot(cx, page, KmType::Pte2, "rmap pte_map");
    PteByPhys {
        k,
        cx,
        base,
        va: VirtAddr::new(base.as_u32() + off),
    }
}
