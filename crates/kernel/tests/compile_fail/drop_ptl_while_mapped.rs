//! Rule 6: the page-table lock cannot be released while a pte is mapped. The lock guard lives
//! inside the [`PteCursor`](highpte_kernel::pgtable::PteCursor), and a `PteMap` borrows the
//! cursor mutably, so the cursor can be neither unlocked (`unlock`, `drop`) nor used for
//! anything else (`clear_pmd`: detaching the very pte page that is mapped) while a map lives.
//!
//! Linux mistake it stops: `spin_unlock(&mm->page_table_lock)` with the pte still mapped, then
//! using the pte (or relocking and trusting the old pointer and value). Another thread of the
//! mm (or kswapd, or munmap freeing the pte page) may change or free the table meanwhile; the
//! fault handlers must `pte_unmap`, unlock, do the work, relock, remap and re-check
//! (`pte_same`).
#![allow(dead_code)]

use highpte_arch::{PagingMode, VirtAddr};
use highpte_kernel::mm::Mm;
use highpte_kernel::{Kernel, Platform, SleepCtx};

/// `spin_unlock(&mm->page_table_lock)` through the cursor while the pte is still mapped.
fn unlock_while_mapped<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    mm: &Mm,
    addr: VirtAddr,
) {
    let mut cur = k.lock_ptes(cx, mm);
    let Some(mut map) = cur.map(addr) else { return };
    let old = map.get(addr);
    cur.unlock();
    map.set(addr, old);
}

/// Dropping the cursor (the same unlock) while the pte is still mapped.
fn drop_cursor_while_mapped<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    mm: &Mm,
    addr: VirtAddr,
) {
    let mut cur = k.lock_ptes(cx, mm);
    let Some(mut map) = cur.map(addr) else { return };
    let old = map.get(addr);
    drop(cur);
    map.set(addr, old);
}

/// `pmd_clear` of the pte page that is mapped (free_pgtables racing its own walker).
fn clear_pmd_while_mapped<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    mm: &Mm,
    addr: VirtAddr,
) {
    let mut cur = k.lock_ptes(cx, mm);
    let Some(mut map) = cur.map(addr) else { return };
    let _freed = cur.clear_pmd(addr);
    map.set(addr, highpte_arch::Entry::NONE);
}

fn main() {}
