//! Rule 4 (second half): `PteMap::map_nested` borrows the first mapping mutably, so a second
//! nested mapping (KM_PTE1 twice) cannot be taken while the first lives; nor can a fresh
//! `pte_offset_map` (KM_PTE0 twice), which needs the context the first mapping holds.
//!
//! Linux mistake it stops: reusing a kmap_atomic slot type that is already in use on this CPU
//! (two `pte_offset_map_nested`, or a `pte_offset_map` inside another): the second map
//! overwrites the slot and the first pointer now points into the wrong page table.
#![allow(dead_code)]

use highpte_arch::{PagingMode, VirtAddr};
use highpte_kernel::pgtable::{pte_offset_map, UserPgd};
use highpte_kernel::{Kernel, Platform, SleepCtx, SpinLock};

/// `pte_offset_map_nested` twice on the same outer mapping.
fn nested_twice<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    pgd: &UserPgd,
    ptl: &SpinLock<()>,
    addr: VirtAddr,
) {
    let pmd = k.pmd_offset(cx.p(), pgd, addr);
    let mut guard = ptl.lock(cx.p());
    let mut map = pte_offset_map(k, cx, &mut guard, &pmd, addr);
    let first = map.map_nested(&pmd, addr);
    let second = map.map_nested(&pmd, addr);
    drop(second);
    drop(first);
}

/// `pte_offset_map` while a mapping is live (a second KM_PTE0), with a second lock guard.
fn map_inside_map<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    pgd: &UserPgd,
    ptl: &SpinLock<()>,
    addr: VirtAddr,
    other_ptl: &SpinLock<()>,
) {
    let pmd = k.pmd_offset(cx.p(), pgd, addr);
    let mut guard = ptl.lock(cx.p());
    let mut other_guard = other_ptl.lock(cx.p());
    let first = pte_offset_map(k, cx, &mut guard, &pmd, addr);
    let second = pte_offset_map(k, cx, &mut other_guard, &pmd, addr);
    drop(second);
    drop(first);
}

fn main() {}
