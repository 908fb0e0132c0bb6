//! Door 3 of issue 14: every atomic mapping is a guard that borrows the context mutably.
//! `PteCursor::map_phys` (rmap's KM_PTE2) borrows the cursor mutably, so two cannot be live at
//! once, nor one next to a `PteMap`; `Kernel::kmap_atomic` returns a `KmapAtomic` guard that
//! unmaps on drop and borrows the `Ctx` mutably, so a second one (the same slot type, or any
//! other: use `kmap_atomic_pair` for two) cannot be made while it lives; the raw
//! `kmap_atomic_raw` / `kunmap_atomic_raw` pair is `unsafe`.
//!
//! Linux mistake it stops: two `kmap_atomic(.., KM_PTE2)` (or `KM_USER0`) live at once on one
//! CPU (the second overwrites the slot the first pointer uses), and a `kmap_atomic` never
//! paired with `kunmap_atomic` (preemption left off, the slot left mapped). With the old API
//! `pte_map_phys` took `&Ctx` (any number live at once) and `kmap_atomic` was a safe function
//! returning a bare `VirtAddr`.
#![allow(dead_code)]

use highpte_arch::{KmType, PagingMode, Pfn, VirtAddr};
use highpte_kernel::mm::Mm;
use highpte_kernel::{Ctx, Kernel, Platform, SleepCtx};

/// Two KM_PTE2 mappings at once.
fn two_map_phys<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    mm: &Mm,
    pa1: u64,
    pa2: u64,
) {
    let mut cur = k.lock_ptes(cx, mm);
    let mut a = cur.map_phys(pa1);
    let b = cur.map_phys(pa2);
    a.set(b.get());
}

/// A KM_PTE2 mapping while the cursor's KM_PTE0 mapping lives.
fn map_phys_while_mapped<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    mm: &Mm,
    addr: VirtAddr,
    pa: u64,
) {
    let mut cur = k.lock_ptes(cx, mm);
    let Some(mut map) = cur.map(addr) else { return };
    let phys = cur.map_phys(pa);
    map.set(addr, phys.get());
}

/// A second `kmap_atomic` (KM_USER0 twice) while the first guard lives.
fn kmap_atomic_twice<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut Ctx<'_, P>,
    a: Pfn,
    b: Pfn,
) {
    let first = k.kmap_atomic(cx, a, KmType::User0, "copy");
    let second = k.kmap_atomic(cx, b, KmType::User0, "copy");
    let _ = (first.addr(), second.addr());
}

/// A `kmap_atomic` through the cursor's context while a pte is mapped.
fn kmap_atomic_while_mapped<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    mm: &Mm,
    addr: VirtAddr,
) {
    let mut cur = k.lock_ptes(cx, mm);
    let Some(map) = cur.map(addr) else { return };
    let page = k.kmap_atomic(cur.cx_mut(), map.get(addr).pfn(), KmType::User0, "x");
    drop(page);
    drop(map);
}

/// The raw pair without `unsafe`.
fn raw_without_unsafe<P: Platform, M: PagingMode>(k: &Kernel<M>, cx: &mut Ctx<'_, P>, pfn: Pfn) {
    let va = k.kmap_atomic_raw(cx, pfn, KmType::User0, "raw");
    k.kunmap_atomic_raw(cx, va, KmType::User0, "raw");
}

fn main() {}
