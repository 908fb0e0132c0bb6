//! Rule 3 (sleeping locks): `Mutex::lock` and `RwSem::read`/`write` may sleep, so they take
//! `&mut SleepCtx`, which the cursor of a live `PteMap` has borrowed.
//!
//! Linux mistake it stops: `down(&sem)` / `down_read(&mm->mmap_sem)` with a pte mapped:
//! sleeping in atomic context, and the KM_PTE0 slot reused by the next task on this CPU.
#![allow(dead_code)]

use highpte_arch::{PagingMode, VirtAddr};
use highpte_kernel::mm::Mm;
use highpte_kernel::{Kernel, Mutex, Platform, RwSem, SleepCtx};

fn mutex<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    mm: &Mm,
    sem: &Mutex<u32>,
    addr: VirtAddr,
) {
    let mut cur = k.lock_ptes(cx, mm);
    let Some(map) = cur.map(addr) else { return };
    let _ids = sem.lock(cx, "shm_ids");
    drop(map);
}

fn rwsem<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    mm: &Mm,
    sem: &RwSem<u32>,
    addr: VirtAddr,
) {
    let mut cur = k.lock_ptes(cx, mm);
    let Some(map) = cur.map(addr) else { return };
    let _vmas = sem.read(cx, "mmap_sem");
    drop(map);
}

fn main() {}
