//! Door 4 of issue 14 (second half): the pages a `Gather` holds can be released only through
//! the `FlushedGather` that `Gather::flush` returns: `Kernel::gather_finish` does not take an
//! unflushed `Gather` (E0308). (A separate file from `forgotten_flush.rs`, whose
//! `unused_must_use` lint rustc does not run once a type error is reported.)
//!
//! Linux mistake it stops: freeing the unmapped pages before the TLB flush (`tlb_finish_mmu`
//! order): a CPU whose TLB still holds the translation reaches a page reused by someone else.
#![allow(dead_code)]

use highpte_arch::PagingMode;
use highpte_kernel::mm::Mm;
use highpte_kernel::{Ctx, Kernel, Platform};

/// Freeing the gathered pages before the TLB flush.
fn finish_before_flush<P: Platform, M: PagingMode>(k: &Kernel<M>, cx: &mut Ctx<'_, P>, mm: &Mm) {
    let gather = k.zap_page_range(cx, mm, 0x1000_0000, 0x1001_0000);
    k.gather_finish(cx, gather);
}

fn main() {}
