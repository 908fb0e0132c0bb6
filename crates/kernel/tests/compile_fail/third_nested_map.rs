//! Rule 4: the nested slot (KM_PTE1) exists only inside a first mapping, and there is no way
//! to take a third: neither the nested mapping nor the outer page it exposes has
//! `map_nested` / `map_nested_from`.
//!
//! Linux mistake it stops: calling `pte_offset_map_nested()` while a nested mapping is
//! already live (two walkers nested in a third, e.g. an rmap lookup inside copy_page_range).
//! KM_PTE1 is one slot per CPU: the second use overwrites the first one's slot pte and the
//! outer user of it now reads the wrong page table (CONFIG_DEBUG_HIGHMEM BUGs on the non-empty
//! slot at run time; without it, silent corruption).
#![allow(dead_code)]

use highpte_arch::{PagingMode, VirtAddr};
use highpte_kernel::mm::Mm;
use highpte_kernel::{Kernel, Platform, SleepCtx};

/// A third mapping through the nested one.
fn through_nested<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    mm: &Mm,
    addr: VirtAddr,
) {
    let mut cur = k.lock_ptes(cx, mm);
    let Some(mut map) = cur.map(addr) else { return };
    let Some(mut nested) = map.map_nested(addr) else {
        return;
    };
    let _third = nested.map_nested(addr);
}

/// A third mapping (of another address space) through the outer page the nested mapping
/// hands out.
fn through_outer<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    mm: &Mm,
    src_mm: &Mm,
    addr: VirtAddr,
) {
    let mut cur = k.lock_ptes(cx, mm);
    let Some(mut map) = cur.map(addr) else { return };
    let Some(mut nested) = map.map_nested_from(src_mm, addr) else {
        return;
    };
    let _third = nested.outer().map_nested_from(src_mm, addr);
}

fn main() {}
