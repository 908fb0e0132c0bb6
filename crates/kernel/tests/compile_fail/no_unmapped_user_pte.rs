//! Rule 1: a user pte can be reached only through a mapping made by a page-table cursor; the
//! old API does not exist.
//!
//! Linux mistake it stops: unconverted 2.4 code calling `pte_offset(pmd, addr)` and
//! dereferencing the result as a direct-map pointer. With HIGHPTE the pte page may be in high
//! memory, which has no direct-map address, so the pointer is garbage. 2.5.5 removed
//! `pte_offset()` so such code fails to build; here it never existed, and the kernel-table
//! shortcut (`pte_offset_kernel`) accepts only a `PmdEntry<KernelTables>`.
#![allow(dead_code)]

use highpte_arch::{PagingMode, VirtAddr};
use highpte_kernel::mm::Mm;
use highpte_kernel::pgtable::pte_offset_kernel;
use highpte_kernel::{Kernel, Platform, SleepCtx};

/// The 2.4 walker, unconverted: `pte_offset()` is gone.
fn old_api<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    mm: &Mm,
    addr: VirtAddr,
) {
    let pmd = k.pmd_offset(cx.p(), mm.pgd(), addr);
    let _pte = highpte_kernel::pgtable::pte_offset(k, cx.p(), &pmd, addr);
}

/// The "converted" walker that takes the kernel shortcut on a user table.
fn kernel_shortcut<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    mm: &Mm,
    addr: VirtAddr,
) {
    let pmd = k.pmd_offset(cx.p(), mm.pgd(), addr);
    let _pte = pte_offset_kernel(k, cx.p(), &pmd, addr);
}

fn main() {}
