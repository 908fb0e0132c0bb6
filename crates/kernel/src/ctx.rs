//! Execution contexts: the capability to run kernel code, and the capability to sleep.
//!
//! Linux relies on convention (and `might_sleep()` at run time) to keep code that may sleep
//! out of atomic sections. Here the right to sleep is a value: every function that may sleep
//! takes `&mut SleepCtx`, while code that must not sleep gets only a [`Ctx`]. A live pte
//! mapping borrows the `SleepCtx` it was made from mutably, so *sleeping while a pte is mapped
//! does not compile* (see `tests/compile_fail`).

use crate::platform::Platform;
use core::ops::{Deref, DerefMut};

/// The running task's kernel context in atomic mode: it may take spinlocks, touch memory,
/// allocate with `GFP_ATOMIC` and map ptes, but it cannot sleep.
pub struct Ctx<'p, P: Platform> {
    p: &'p P,
    /// Not `Clone`/`Copy`: one per running task.
    _private: (),
}

impl<'p, P: Platform> Ctx<'p, P> {
    /// The platform (hardware and scheduler) under this task.
    #[inline(always)]
    pub fn p(&self) -> &'p P {
        self.p
    }
}

/// The running task's kernel context with the right to sleep (process context, no spinlock
/// held, no atomic mapping live). Dereferences to [`Ctx`] for everything atomic code may do.
pub struct SleepCtx<'p, P: Platform> {
    cx: Ctx<'p, P>,
}

impl<'p, P: Platform> SleepCtx<'p, P> {
    /// Enter the kernel on behalf of the running task (a system call, a fault, a kernel
    /// thread's body). The machine calls this at kernel entry; there is one per entry.
    ///
    /// # Safety
    /// The caller must be at a kernel entry point of the running task: no spinlock held,
    /// preempt_count zero, no pte or kmap_atomic mapping live. Creating a `SleepCtx` anywhere
    /// else would let code sleep inside an atomic section.
    pub unsafe fn enter(p: &'p P) -> Self {
        Self {
            cx: Ctx { p, _private: () },
        }
    }

    /// Sleep until someone wakes `key` (`sleep_on`). Checks that the task is not atomic.
    pub fn sleep_on(
        &mut self,
        key: crate::WaitQueueKey,
        token: u64,
        what: &'static str,
        place: &'static str,
    ) {
        self.cx.p.sleep(key, token, what, place);
    }

    /// A voluntary schedule point (`cond_resched`).
    pub fn cond_resched(&mut self) {
        self.cx.p.cond_resched();
    }
}

impl<'p, P: Platform> Deref for SleepCtx<'p, P> {
    type Target = Ctx<'p, P>;
    #[inline(always)]
    fn deref(&self) -> &Ctx<'p, P> {
        &self.cx
    }
}

impl<'p, P: Platform> DerefMut for SleepCtx<'p, P> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut Ctx<'p, P> {
        &mut self.cx
    }
}
