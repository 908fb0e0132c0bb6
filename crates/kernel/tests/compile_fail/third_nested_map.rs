//! Rule 4: the nested slot (KM_PTE1) exists only inside a first mapping, and there is no way
//! to take a third: neither the nested mapping nor the outer page it exposes has
//! `map_nested`.
//!
//! Linux mistake it stops: calling `pte_offset_map_nested()` while a nested mapping is
//! already live (two walkers nested in a third, e.g. an rmap lookup inside copy_page_range).
//! KM_PTE1 is one slot per CPU: the second use overwrites the first one's slot pte and the
//! outer user of it now reads the wrong page table (CONFIG_DEBUG_HIGHMEM BUGs on the non-empty
//! slot at run time; without it, silent corruption).
#![allow(dead_code)]

use highpte_arch::{PagingMode, VirtAddr};
use highpte_kernel::pgtable::{pte_offset_map, UserPgd};
use highpte_kernel::{Kernel, Platform, SleepCtx, SpinLock};

/// A third mapping through the nested one.
fn through_nested<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    pgd: &UserPgd,
    ptl: &SpinLock<()>,
    addr: VirtAddr,
) {
    let pmd = k.pmd_offset(cx.p(), pgd, addr);
    let mut guard = ptl.lock(cx.p());
    let mut map = pte_offset_map(k, cx, &mut guard, &pmd, addr);
    let mut nested = map.map_nested(&pmd, addr);
    let _third = nested.map_nested(&pmd, addr);
}

/// A third mapping through the outer page the nested mapping hands out.
fn through_outer<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    pgd: &UserPgd,
    ptl: &SpinLock<()>,
    addr: VirtAddr,
) {
    let pmd = k.pmd_offset(cx.p(), pgd, addr);
    let mut guard = ptl.lock(cx.p());
    let mut map = pte_offset_map(k, cx, &mut guard, &pmd, addr);
    let mut nested = map.map_nested(&pmd, addr);
    let _third = nested.outer().map_nested(&pmd, addr);
}

fn main() {}
