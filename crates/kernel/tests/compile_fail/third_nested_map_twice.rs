//! Rule 4 (second half): `PteMap::map_nested` borrows the first mapping mutably, so a second
//! nested mapping (KM_PTE1 twice) cannot be taken while the first lives; nor can a second
//! `PteCursor::map` (KM_PTE0 twice), which needs the cursor the first mapping holds, nor a
//! second cursor, which needs the context the first cursor holds.
//!
//! Linux mistake it stops: reusing a kmap_atomic slot type that is already in use on this CPU
//! (two `pte_offset_map_nested`, or a `pte_offset_map` inside another): the second map
//! overwrites the slot and the first pointer now points into the wrong page table.
#![allow(dead_code)]

use highpte_arch::{PagingMode, VirtAddr};
use highpte_kernel::mm::Mm;
use highpte_kernel::{Kernel, Platform, SleepCtx};

/// `pte_offset_map_nested` twice on the same outer mapping.
fn nested_twice<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    mm: &Mm,
    addr: VirtAddr,
) {
    let mut cur = k.lock_ptes(cx, mm);
    let Some(mut map) = cur.map(addr) else { return };
    let first = map.map_nested(addr);
    let second = map.map_nested(addr);
    drop(second);
    drop(first);
}

/// `pte_offset_map` while a mapping of the same cursor is live (a second KM_PTE0).
fn map_inside_map<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    mm: &Mm,
    addr: VirtAddr,
    other: VirtAddr,
) {
    let mut cur = k.lock_ptes(cx, mm);
    let first = cur.map(addr);
    let second = cur.map(other);
    drop(second);
    drop(first);
}

/// `pte_offset_map` through a second cursor (another address space's lock) while a mapping
/// is live.
fn map_inside_map_other_mm<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    mm: &Mm,
    other_mm: &Mm,
    addr: VirtAddr,
) {
    let mut cur = k.lock_ptes(cx, mm);
    let first = cur.map(addr);
    let mut other = k.lock_ptes(cx, other_mm);
    let second = other.map(addr);
    drop(second);
    drop(first);
}

fn main() {}
