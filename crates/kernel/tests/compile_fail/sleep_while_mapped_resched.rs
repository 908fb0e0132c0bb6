//! Rule 3 (schedule points): `cond_resched()` and `sleep_on()` are methods of `SleepCtx`
//! taking `&mut self`; a live `PteMap` has the context borrowed.
//!
//! Linux mistake it stops: a long page-table walk (zap_pte_range, the swap_out scan) that
//! calls `cond_resched()` / `schedule()` inside the pte loop without unmapping first:
//! "scheduling while atomic", and the KM_PTE0 slot is reused by whoever runs next.
#![allow(dead_code)]

use highpte_arch::{PagingMode, VirtAddr};
use highpte_kernel::pgtable::{pte_offset_map, UserPgd};
use highpte_kernel::WaitQueueKey;
use highpte_kernel::{Kernel, Platform, SleepCtx, SpinLock};

fn resched<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    pgd: &UserPgd,
    ptl: &SpinLock<()>,
    addr: VirtAddr,
) {
    let pmd = k.pmd_offset(cx.p(), pgd, addr);
    let mut guard = ptl.lock(cx.p());
    let mut map = pte_offset_map(k, cx, &mut guard, &pmd, addr);
    let _old = map.clear(addr);
    cx.cond_resched();
    let _next = map.get(addr);
}

fn sleep<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    pgd: &UserPgd,
    ptl: &SpinLock<()>,
    addr: VirtAddr,
) {
    let pmd = k.pmd_offset(cx.p(), pgd, addr);
    let mut guard = ptl.lock(cx.p());
    let key = WaitQueueKey(1);
    let token = cx.p().prepare_to_wait(key);
    let map = pte_offset_map(k, cx, &mut guard, &pmd, addr);
    cx.sleep_on(key, token, "page lock", "do_swap_page");
    drop(map);
}

fn main() {}
