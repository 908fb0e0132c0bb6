//! Rule 3 (schedule points): `cond_resched()` and `sleep_on()` are methods of `SleepCtx`
//! taking `&mut self`; the cursor of a live `PteMap` has the context borrowed. The cursor
//! alone (the page-table lock held, no pte mapped) borrows it too: no sleeping under the
//! page-table spinlock either.
//!
//! Linux mistake it stops: a long page-table walk (zap_pte_range, the swap_out scan) that
//! calls `cond_resched()` / `schedule()` inside the pte loop without unmapping and unlocking
//! first: "scheduling while atomic", and the KM_PTE0 slot is reused by whoever runs next.
#![allow(dead_code)]

use highpte_arch::{PagingMode, VirtAddr};
use highpte_kernel::mm::Mm;
use highpte_kernel::WaitQueueKey;
use highpte_kernel::{Kernel, Platform, SleepCtx};

fn resched<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    mm: &Mm,
    addr: VirtAddr,
) {
    let mut cur = k.lock_ptes(cx, mm);
    let Some(mut map) = cur.map(addr) else { return };
    let _old = map.clear(addr);
    cx.cond_resched();
    let _next = map.get(addr);
}

fn sleep<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    mm: &Mm,
    addr: VirtAddr,
) {
    let key = WaitQueueKey(1);
    let token = cx.p().prepare_to_wait(key);
    let mut cur = k.lock_ptes(cx, mm);
    let Some(map) = cur.map(addr) else { return };
    cx.sleep_on(key, token, "page lock", "do_swap_page");
    drop(map);
}

/// The walk unmapped its pte page but still holds the page-table lock.
fn resched_under_lock<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    mm: &Mm,
    start: u32,
    end: u64,
) {
    let mut cur = k.lock_ptes(cx, mm);
    cur.walk(start, end, |map, from, to| {
        map.for_each(from, to, |_, _| None);
    });
    cx.cond_resched();
    cur.unlock();
}

fn main() {}
