//! Door 1 of issue 14: the right to sleep is minted only at kernel entry. Every kernel entry
//! point (`sys_*`, `follow_page`, `check_invariants`, ...) takes `&mut SleepCtx` instead of a
//! `&P` from which it used to mint one with `unsafe { SleepCtx::enter(p) }`, so calling one
//! while a pte mapping (`PteMap`, `PteByPhys`) or a `kmap_atomic` guard lives is a borrow
//! error; and `SleepCtx::enter(cx.p())` is one too, since the `&P` it needs is reached
//! through the borrowed context.
//!
//! Linux mistake it stops: calling back into a sleeping kernel path from inside an atomic
//! section (a `brk` or `follow_page` from a walker with a pte mapped: `down_write(mmap_sem)`
//! with preemption off). With the old API `k.sys_brk(map.cx().p(), pid, 0)` compiled: the
//! entry point minted its own `SleepCtx` from the `&P` (before commit 433151d).
#![allow(dead_code)]

use highpte_arch::{KmType, PagingMode, Pfn, VirtAddr};
use highpte_kernel::mm::Mm;
use highpte_kernel::{Kernel, Platform, SleepCtx, TaskId};

/// A system call (takes `mmap_sem`, a sleeping lock) while a `PteMap` lives.
fn syscall_while_pte_mapped<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    mm: &Mm,
    pid: TaskId,
    addr: VirtAddr,
) {
    let mut cur = k.lock_ptes(cx, mm);
    let Some(map) = cur.map(addr) else { return };
    let _brk = k.sys_brk(cx, pid, 0);
    drop(map);
}

/// `follow_page` (locks the page-table lock and maps: an entry point) while rmap's KM_PTE2
/// mapping (`PteCursor::map_phys`) lives.
fn follow_page_while_phys_mapped<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    mm: &Mm,
    pte_pa: u64,
    addr: u32,
) {
    let mut cur = k.lock_ptes(cx, mm);
    let pte = cur.map_phys(pte_pa);
    let _other = k.follow_page(cx, mm, addr);
    drop(pte);
}

/// `check_invariants` (waits for kswapd) while a `kmap_atomic` guard lives.
fn entry_while_kmap_atomic<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    pfn: Pfn,
) {
    let page = k.kmap_atomic(cx, pfn, KmType::User0, "copy");
    let _bad = k.check_invariants(cx);
    drop(page);
}

/// Minting a second sleep capability while a pte is mapped: the `&P` comes from the borrowed
/// context.
fn enter_while_mapped<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    mm: &Mm,
    addr: VirtAddr,
) {
    let mut cur = k.lock_ptes(cx, mm);
    let Some(map) = cur.map(addr) else { return };
    // SAFETY: none; this is the misuse.
    let mut forged = unsafe { SleepCtx::enter(cx.p()) };
    forged.cond_resched();
    drop(map);
}

/// The same while a `kmap_atomic` guard lives.
fn enter_while_kmap_atomic<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    pfn: Pfn,
) {
    let page = k.kmap_atomic(cx, pfn, KmType::User0, "copy");
    // SAFETY: none; this is the misuse.
    let mut forged = unsafe { SleepCtx::enter(cx.p()) };
    forged.cond_resched();
    drop(page);
}

fn main() {}
