//! Rule 3 (sleeping locks): `Mutex::lock` and `RwSem::read`/`write` may sleep, so they take
//! `&mut SleepCtx`, which a live `PteMap` has borrowed. (This was gap 1 of
//! `docs/pte-api-rules.md`: they used to take a `&P`, reachable through `map.cx().p()`.)
//!
//! Linux mistake it stops: `down(&sem)` / `down_read(&mm->mmap_sem)` with a pte mapped:
//! sleeping in atomic context, and the KM_PTE0 slot reused by the next task on this CPU.
#![allow(dead_code)]

use highpte_arch::{PagingMode, VirtAddr};
use highpte_kernel::pgtable::{pte_offset_map, UserPgd};
use highpte_kernel::{Kernel, Mutex, Platform, RwSem, SleepCtx, SpinLock};

fn mutex<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    pgd: &UserPgd,
    ptl: &SpinLock<()>,
    sem: &Mutex<u32>,
    addr: VirtAddr,
) {
    let pmd = k.pmd_offset(cx.p(), pgd, addr);
    let mut guard = ptl.lock(cx.p());
    let map = pte_offset_map(k, cx, &mut guard, &pmd, addr);
    let _ids = sem.lock(cx, "shm_ids");
    drop(map);
}

fn rwsem<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    pgd: &UserPgd,
    ptl: &SpinLock<()>,
    sem: &RwSem<u32>,
    addr: VirtAddr,
) {
    let pmd = k.pmd_offset(cx.p(), pgd, addr);
    let mut guard = ptl.lock(cx.p());
    let map = pte_offset_map(k, cx, &mut guard, &pmd, addr);
    let _vmas = sem.read(cx, "mmap_sem");
    drop(map);
}

fn main() {}
