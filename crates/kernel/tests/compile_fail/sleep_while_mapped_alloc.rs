//! Rule 3 (allocation): nothing that may sleep can run while a pte is mapped. A `PteMap`
//! borrows its cursor, which borrows the task's context mutably; `alloc_pages` with a
//! sleeping gfp needs `&mut SleepCtx`.
//!
//! Linux mistake it stops: `alloc_page(GFP_KERNEL)` (or any allocation that may enter
//! reclaim) between `pte_offset_map` and `pte_unmap`. kmap_atomic disabled preemption, so
//! sleeping there is "scheduling while atomic"; with the task off the CPU the KM_PTE0 slot is
//! reused by the next task on that CPU. The fault handlers must unmap first, allocate, then
//! retake the lock, remap and re-check the pte (`pte_same`).
#![allow(dead_code)]

use highpte_arch::{PagingMode, VirtAddr};
use highpte_kernel::mm::Mm;
use highpte_kernel::page_alloc::{PageOwner, GFP_KERNEL};
use highpte_kernel::{Kernel, Platform, SleepCtx};

fn case<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    mm: &Mm,
    addr: VirtAddr,
) {
    let mut cur = k.lock_ptes(cx, mm);
    let Some(map) = cur.map(addr) else { return };
    if map.get(addr).is_none() {
        // do_anonymous_page, unconverted: allocate the new page with the pte still mapped
        let _page = k.alloc_pages(cx, GFP_KERNEL, 0, PageOwner::User, "do_anonymous_page");
    }
    drop(map);
}

fn main() {}
