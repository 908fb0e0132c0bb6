//! Rule 3 (`pte_alloc_map`): allocating a pte page may sleep (the cursor drops the page-table
//! lock, allocates, retakes it and re-reads the pmd), so `PteCursor::alloc_map` borrows the
//! cursor mutably and exists only on a cursor made from a `SleepCtx`. A live `PteMap` holds
//! the cursor (and, through it, the context); an atomic (`Ctx`) cursor has no `alloc_map`.
//!
//! Linux mistake it stops: calling `pte_alloc_map()` for the destination table with the
//! source pte already mapped (copy_page_range must map the destination first, KM_PTE0, then
//! the source nested, KM_PTE1), or mremap allocating the new table while the old is mapped;
//! and allocating a pte page from atomic context (under another spinlock, from rmap).
#![allow(dead_code)]

use highpte_arch::{PagingMode, VirtAddr};
use highpte_kernel::mm::Mm;
use highpte_kernel::{Ctx, Kernel, Platform, SleepCtx};

/// `pte_alloc_map` through the same cursor while the source is mapped.
fn alloc_map_while_mapped<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    mm: &Mm,
    addr: VirtAddr,
    new_addr: VirtAddr,
) {
    let mut cur = k.lock_ptes(cx, mm);
    let Some(src) = cur.map(addr) else { return };
    let _dst = cur.alloc_map(new_addr);
    drop(src);
}

/// `pte_alloc_map` on the destination address space's cursor while the source is mapped
/// (fork, unconverted: a second cursor needs the context the first one holds).
fn second_cursor_while_mapped<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    src_mm: &Mm,
    dst_mm: &Mm,
    addr: VirtAddr,
) {
    let mut src_cur = k.lock_ptes(cx, src_mm);
    let Some(src) = src_cur.map(addr) else { return };
    let mut dst_cur = k.lock_ptes(cx, dst_mm);
    let _dst = dst_cur.alloc_map(addr);
    drop(src);
}

/// `pte_alloc_map` from atomic context: a cursor made from a `Ctx` cannot allocate.
fn alloc_map_atomic<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut Ctx<'_, P>,
    mm: &Mm,
    addr: VirtAddr,
) {
    let mut cur = k.lock_ptes(cx, mm);
    let _map = cur.alloc_map(addr);
}

fn main() {}
