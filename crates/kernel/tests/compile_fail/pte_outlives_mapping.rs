//! Rule 2: a mapping is a guard; no view of the pte page (a `PteSlot`, a `&PtePage`) can
//! outlive it, because dropping the `PteMap` unmaps the page; and no mapping can outlive the
//! cursor (the page-table lock) it was made by.
//!
//! Linux mistake it stops: keeping a `pte_t *` after `pte_unmap()` (or returning it from the
//! function that mapped it). With HIGHPTE the pointer is a kmap_atomic slot address that the
//! next `pte_offset_map` on this CPU reuses for another pte page, so the stale pointer
//! silently reads or corrupts someone else's page table (CONFIG_DEBUG_HIGHMEM only turns it
//! into an oops, and only if the slot was not remapped meanwhile).
#![allow(dead_code)]

use highpte_arch::{Entry, PagingMode, VirtAddr};
use highpte_kernel::mm::Mm;
use highpte_kernel::pgtable::{PteMap, PtePage, PteSlot};
use highpte_kernel::{Kernel, Platform, SleepCtx};

/// A slot kept past the end of the mapping's scope.
fn slot_outlives_scope<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    mm: &Mm,
    addr: VirtAddr,
) {
    let mut cur = k.lock_ptes(cx, mm);
    let mut slot;
    {
        let Some(mut map) = cur.map(addr) else { return };
        slot = map.slot(addr);
    } // pte_unmap
    slot.set(Entry::NONE);
}

/// A slot used after an explicit unmap.
fn slot_after_unmap<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    mm: &Mm,
    addr: VirtAddr,
) {
    let mut cur = k.lock_ptes(cx, mm);
    let Some(mut map) = cur.map(addr) else { return };
    let slot = map.slot(addr);
    drop(map); // pte_unmap
    let _ = slot.get();
}

/// A `&PtePage` used after an explicit unmap.
fn page_after_unmap<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    mm: &Mm,
    addr: VirtAddr,
) {
    let mut cur = k.lock_ptes(cx, mm);
    let Some(map) = cur.map(addr) else { return };
    let page: &PtePage<'_, '_, P, M> = &map;
    drop(map); // pte_unmap
    let _ = page.get(addr);
}

/// A slot returned from the function that mapped (and, on return, unmapped) it.
fn slot_escapes<'k, P: Platform, M: PagingMode>(
    k: &'k Kernel<M>,
    cx: &'k mut SleepCtx<'_, P>,
    mm: &'k Mm,
    addr: VirtAddr,
) -> Option<PteSlot<'k, P, M>> {
    let mut cur = k.lock_ptes(cx, mm);
    let mut map = cur.map(addr)?;
    Some(map.slot(addr))
}

/// A mapping returned from the function whose cursor (the page-table lock) ends on return.
fn map_escapes_its_lock<'k, 'p, P: Platform, M: PagingMode>(
    k: &'k Kernel<M>,
    cx: &'k mut SleepCtx<'p, P>,
    mm: &'k Mm,
    addr: VirtAddr,
) -> Option<PteMap<'k, 'p, P, M>> {
    let mut cur = k.lock_ptes(cx, mm);
    cur.map(addr)
}

fn main() {}
