//! Rule 5b: the right to sleep cannot be forged. `SleepCtx::enter` is `unsafe` (only the
//! machine's kernel-entry dispatcher may create one), and `Ctx` has private fields.
//!
//! Linux mistake it stops: code inside an atomic section (a pte mapped, a spinlock held) that
//! manufactures "process context" and calls something that sleeps; Linux only catches it at
//! run time with `might_sleep()` / "scheduling while atomic". If a `SleepCtx` could be made
//! anywhere, the borrow that a live `PteMap` holds on the task's context would prove nothing.
#![allow(dead_code)]

use highpte_arch::{PagingMode, VirtAddr};
use highpte_kernel::mm::Mm;
use highpte_kernel::{Kernel, Platform, SleepCtx};

fn case<P: Platform, M: PagingMode>(
    _k: &Kernel<M>,
    cx: &mut SleepCtx<'_, P>,
    _mm: &Mm,
    _addr: VirtAddr,
) {
    // a second, forged sleep capability while the real one could be borrowed by a mapping
    let mut forged = SleepCtx::enter(cx.p());
    forged.cond_resched();
}

fn main() {}
