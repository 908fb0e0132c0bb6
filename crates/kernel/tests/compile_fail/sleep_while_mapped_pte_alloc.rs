//! Rule 3 (`pte_alloc_map`): allocating a pte page may sleep (it drops the page-table lock,
//! allocates, retakes it), so it needs `&mut SleepCtx`, which a live `PteMap` has borrowed.
//!
//! Linux mistake it stops: calling `pte_alloc_map()` for the destination table with the
//! source pte already mapped (copy_page_range must map the destination first, KM_PTE0, then
//! the source nested, KM_PTE1), or mremap allocating the new table while the old is mapped.
#![allow(dead_code)]

use core::cell::Cell;
use highpte_arch::{PagingMode, VirtAddr};
use highpte_kernel::pgtable::pte_alloc_map;
use highpte_kernel::pgtable::{pte_offset_map, UserPgd};
use highpte_kernel::{Kernel, Platform, SleepCtx, SpinLock};

fn case<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    pgd: &UserPgd,
    ptl: &SpinLock<()>,
    addr: VirtAddr,
    dst_pgd: &UserPgd,
    dst_ptl: &SpinLock<()>,
) {
    let nr_ptes = Cell::new(0);
    let src_pmd = k.pmd_offset(cx.p(), pgd, addr);
    let dst_pmd = k.pmd_offset(cx.p(), dst_pgd, addr);
    let mut src_guard = ptl.lock(cx.p());
    let mut dst_guard = dst_ptl.lock(cx.p());
    let src = pte_offset_map(k, cx, &mut src_guard, &src_pmd, addr);
    let _dst = pte_alloc_map(k, cx, &mut dst_guard, &dst_pmd, addr, &nr_ptes);
    drop(src);
}

fn main() {}
