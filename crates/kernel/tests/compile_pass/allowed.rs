//! The legal patterns of the pte access API compile: the compile-fail cases fail because of
//! the rule they break, not because the API is unusable.
//!
//! - lock, map, read, write, unmap (drop), unlock, then sleep (allocate, kmap, cond_resched,
//!   a system call), then relock, remap and re-check: the fault handlers' order;
//! - a nested mapping (KM_PTE1) inside a first one, both pages at once (copy_page_range,
//!   move_one_page), and a second nested mapping after the first is dropped;
//! - `pte_offset_kernel` on a kernel pmd;
//! - atomic work while mapped: `alloc_pages_atomic` with the mapping's `cx()`;
//! - `alloc_map` (SleepCtx cursor), then unmap, unlock and sleep; walks; `map_phys` one at a
//!   time; `kmap_atomic` guards one at a time and as a pair; the raw pair in `unsafe`;
//! - flush tokens: a gather flushed, then finished; a pending flush flushed.
#![allow(dead_code)]

use highpte_arch::{Entry, KmType, PagingMode, Pfn, VirtAddr};
use highpte_kernel::mm::{Mm, PendingFlush};
use highpte_kernel::page_alloc::{PageOwner, GFP_ATOMIC, GFP_KERNEL};
use highpte_kernel::pgtable::pte_offset_kernel;
use highpte_kernel::{Ctx, Kernel, Platform, SleepCtx, TaskId};

/// map, read, set, unmap, unlock, then sleep; then relock, remap and re-check (`pte_same`).
fn map_unmap_then_sleep<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    mm: &Mm,
    pid: TaskId,
    addr: VirtAddr,
) {
    let mut cur = k.lock_ptes(cx, mm);
    let orig = match cur.map(addr) {
        Some(mut map) => {
            let orig = map.get(addr);
            map.set(addr, orig);
            let mut slot = map.slot(addr);
            slot.set(slot.get());
            map.for_each(addr, addr.as_u32() as u64 + 4096, |_, pte| Some(pte));
            orig
        }
        None => Entry::NONE,
    }; // pte_unmap
    cur.unlock();

    // may sleep now
    if let Some(pfn) = k.alloc_pages(cx, GFP_KERNEL, 0, PageOwner::User, "do_anonymous_page") {
        let _va = k.kmap(cx, pfn, "allowed");
        k.kunmap(cx, pfn, "allowed");
    }
    cx.cond_resched();
    let _brk = k.sys_brk(cx, pid, 0);

    // retake, remap, re-check
    let mut cur = k.lock_ptes(cx, mm);
    if let Some(mut map) = cur.map(addr) {
        if map.get(addr) == orig {
            map.set(addr, Entry::NONE);
        }
    }
    let flush = PendingFlush::page(mm, addr);
    cur.unlock();
    flush.flush(k, cx);
}

/// copy_page_range: destination mapped (KM_PTE0), source nested (KM_PTE1), both at once.
fn nested_both<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    dst_mm: &Mm,
    src_mm: &Mm,
    addr: VirtAddr,
) {
    let mut cur = k.lock_ptes(cx, dst_mm);
    let Ok(mut dst) = cur.alloc_map(addr) else {
        return;
    };
    if let Some(mut src) = dst.map_nested_from(src_mm, addr) {
        let (mut outer, nested) = src.both();
        outer.set(addr, nested.get(addr));
        let _ = src.outer().get(addr);
        let _ = src.get(addr);
        // atomic allocation with the nested mapping live
        let _ = k.alloc_pages_atomic(src.cx(), GFP_ATOMIC, 0, PageOwner::User, "copy");
    } // pte_unmap_nested
      // a second nested mapping after the first is gone
    let src = dst.map_nested(addr);
    drop(src);
    drop(dst);
    cur.unlock();
    cx.cond_resched();
}

/// A kernel pmd is reached without a mapping through `pte_offset_kernel`.
fn kernel_tables<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    addr: VirtAddr,
) {
    let kpmd = k.pmd_offset_k(cx.p(), addr);
    let kpte = pte_offset_kernel(k, cx.p(), &kpmd, addr);
    let _ = kpte.get(cx.p());
}

/// Atomic work while mapped, walks, rmap's mapping by physical address, and atomic kmaps
/// through the cursor's context, from an atomic context.
fn atomic_work<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut Ctx<'_, P>,
    mm: &Mm,
    addr: VirtAddr,
    pa: u64,
) {
    let mut cur = k.lock_ptes(cx, mm);
    if let Some(mut map) = cur.map(addr) {
        if let Some(pfn) = k.alloc_pages_atomic(map.cx(), GFP_ATOMIC, 0, PageOwner::User, "x") {
            let pte = map.get(addr);
            map.set(addr, pte);
            k.free_pages(map.cx(), pfn, 0);
        }
    }
    cur.walk(0, 0x1000_0000, |map, from, to| {
        map.for_each(from, to, |_, _| None);
    });
    let mut pte = cur.map_phys(pa);
    pte.set(pte.get());
    drop(pte);
    let again = cur.map_phys(pa);
    drop(again);
    if let Some(pfn) = cur.pte_page(addr) {
        let page = k.kmap_atomic(cur.cx_mut(), pfn, KmType::User0, "x");
        let _ = page.addr();
    }
    cur.unlock();
}

/// kmap_atomic guards one after another, a pair, the raw pair in `unsafe`, and a gather
/// flushed before its pages are released.
fn kmaps_and_flushes<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut Ctx<'_, P>,
    mm: &Mm,
    a: Pfn,
    b: Pfn,
) {
    let first = k.kmap_atomic(cx, a, KmType::User0, "x");
    drop(first);
    let second = k.kmap_atomic(cx, b, KmType::User0, "x");
    drop(second);
    let pair = k.kmap_atomic_pair(cx, (a, KmType::User0), (b, KmType::User1), "copy");
    let _ = pair.addrs();
    drop(pair);
    // SAFETY: unmapped right after, same address and type, nothing in between.
    unsafe {
        let va = k.kmap_atomic_raw(cx, a, KmType::User0, "raw");
        k.kunmap_atomic_raw(cx, va, KmType::User0, "raw");
    }
    let gather = k.zap_page_range(cx, mm, 0x1000_0000, 0x1001_0000);
    let flushed = gather.flush(k, cx);
    k.gather_finish(cx, flushed);
}

/// A sleeping lock taken after the cursor is gone; its guard does not keep the context
/// borrowed, so pte work can follow under it.
fn sleeping_lock_after_unlock<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    mm: &Mm,
    sem: &highpte_kernel::RwSem<u32>,
    addr: VirtAddr,
) {
    {
        let mut cur = k.lock_ptes(cx, mm);
        let _ = cur.map(addr).map(|m| m.get(addr));
    }
    let vmas = sem.read(cx, "mmap_sem");
    let mut cur = k.lock_ptes(cx, mm);
    let _ = (cur.map(addr).map(|m| m.get(addr)), *vmas);
}

fn main() {}
