//! Rule 5a: `pte_offset_kernel` (no mapping, direct-map address) takes only a kernel pmd.
//!
//! Linux mistake it stops: using `pte_offset_kernel()` (meant for `swapper_pg_dir`, whose pte
//! pages are always in low memory) on a process's page table. In Linux both are `pmd_t *` and
//! the compiler cannot tell them apart; with HIGHPTE a user pte page may be in high memory and
//! `pte_offset_kernel` would compute a direct-map address for a page that has none. Here
//! `PmdEntry<UserTables>` and `PmdEntry<KernelTables>` are different types.
#![allow(dead_code)]

use highpte_arch::{PagingMode, VirtAddr};
use highpte_kernel::mm::Mm;
use highpte_kernel::pgtable::pte_offset_kernel;
use highpte_kernel::{Kernel, Platform, SleepCtx};

fn case<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    mm: &Mm,
    addr: VirtAddr,
) {
    let user_pmd = k.pmd_offset(cx.p(), mm.pgd(), addr);
    let pte = pte_offset_kernel(k, cx.p(), &user_pmd, addr);
    let _ = pte.get(cx.p());
}

fn main() {}
