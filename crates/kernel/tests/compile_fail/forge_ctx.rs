//! Rule 5c: a task context cannot be forged either: `Ctx` has private fields, so the only
//! `&mut Ctx` is the one borrowed from the task's `SleepCtx`.
//!
//! Linux mistake it stops: the same as `forge_sleep_ctx.rs`, one level down. A second `Ctx`
//! would let a caller lock a second cursor (`Kernel::lock_ptes` needs the context mutably) and
//! map a second pte page while the first mapping holds the real one, reusing KM_PTE0 while it
//! is in use.
#![allow(dead_code)]

use highpte_arch::{PagingMode, VirtAddr};
use highpte_kernel::mm::Mm;
use highpte_kernel::{Ctx, Kernel, Platform, SleepCtx};

fn case<P: Platform, M: PagingMode>(
    _k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    _mm: &Mm,
    _addr: VirtAddr,
) {
    let _forged = Ctx {
        p: cx.p(),
        _private: (),
    };
}

fn main() {}
