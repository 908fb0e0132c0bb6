//! Rule 3 (persistent kmap): `kmap()` may sleep waiting for a free pkmap entry, so it needs
//! `&mut SleepCtx`, which the cursor of a live `PteMap` has borrowed.
//!
//! Linux mistake it stops: calling `kmap()` (e.g. to copy a page-cache page) with a pte
//! mapped: sleeping in atomic context, and under load the pkmap deadlock the seed argues
//! against (a task holding mappings waits for one more that never frees).
#![allow(dead_code)]

use highpte_arch::{PagingMode, VirtAddr};
use highpte_kernel::mm::Mm;
use highpte_kernel::{Kernel, Platform, SleepCtx};

fn case<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    mm: &Mm,
    addr: VirtAddr,
) {
    let mut cur = k.lock_ptes(cx, mm);
    let Some(map) = cur.map(addr) else { return };
    let pfn = map.get(addr).pfn();
    let _va = k.kmap(cx, pfn, "filemap_nopage");
    drop(map);
}

fn main() {}
