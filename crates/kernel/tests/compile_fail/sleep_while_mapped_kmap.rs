//! Rule 3 (persistent kmap): `kmap()` may sleep waiting for a free pkmap entry, so it needs
//! `&mut SleepCtx`, which a live `PteMap` has borrowed.
//!
//! Linux mistake it stops: calling `kmap()` (e.g. to copy a page-cache page) with a pte
//! mapped: sleeping in atomic context, and under load the pkmap deadlock the seed argues
//! against (a task holding mappings waits for one more that never frees).
#![allow(dead_code)]

use highpte_arch::{PagingMode, VirtAddr};
use highpte_kernel::pgtable::{pte_offset_map, UserPgd};
use highpte_kernel::{Kernel, Platform, SleepCtx, SpinLock};

fn case<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    pgd: &UserPgd,
    ptl: &SpinLock<()>,
    addr: VirtAddr,
) {
    let pmd = k.pmd_offset(cx.p(), pgd, addr);
    let mut guard = ptl.lock(cx.p());
    let map = pte_offset_map(k, cx, &mut guard, &pmd, addr);
    let pfn = map.get(addr).pfn();
    let _va = k.kmap(cx, pfn, "filemap_nopage");
    drop(map);
}

fn main() {}
