//! Door 4 of issue 14: TLB flushing is not a convention any more. The kernel's changes to live
//! ptes return a `#[must_use]` `PendingFlush` (or a `Gather` of the pages they unmapped), and
//! the gathered pages can be released only through the `FlushedGather` that
//! `Gather::flush` returns: `Kernel::gather_finish` does not take an unflushed `Gather`.
//!
//! Linux mistake it stops: changing or clearing ptes and forgetting `flush_tlb_range` (another
//! CPU keeps using the old translation: a write through a pte made read-only, a read of a
//! page already unmapped), or freeing the unmapped pages before the flush (`tlb_finish_mmu`
//! order: a CPU whose TLB still holds the translation reaches a page reused by someone else).
//! With the old API both compiled silently: `flush_tlb_range` was a separate call, and the
//! gather's pages were freed by whoever held it.
#![deny(unused_must_use)]
#![allow(dead_code)]

use highpte_arch::{PagingMode, VirtAddr};
use highpte_kernel::mm::{Mm, PendingFlush};
use highpte_kernel::{Ctx, Kernel, Platform};

/// `zap_page_range` whose gather (flush and page release) is ignored.
fn zap_ignored<P: Platform, M: PagingMode>(k: &Kernel<M>, cx: &mut Ctx<'_, P>, mm: &Mm) {
    k.zap_page_range(cx, mm, 0x1000_0000, 0x1001_0000);
}

/// The flush owed for a hand-changed pte, ignored.
fn flush_ignored(mm: &Mm, addr: VirtAddr) {
    PendingFlush::page(mm, addr);
}

fn main() {}
