//! Kernel entry: the one place where the right to sleep is minted.
//!
//! A task enters the kernel in three ways — a system call, a page fault, the body of a kernel
//! thread — and in each it holds nothing: no spinlock, preempt_count zero, no pte or
//! `kmap_atomic` mapping. That is exactly the promise [`SleepCtx::enter`] asks for, so the
//! machine makes it here and nowhere else. Kernel code cannot name the machine's task handle,
//! so it cannot re-enter through this door with a pte mapped; a caller on the machine side
//! that tries (a test, a workload) is stopped at run time with a bug report, because the
//! atomic state it would carry in shows in `preempt_count`.

use crate::task::TaskHandle;
use highpte_arch::PagingMode;
use highpte_kernel::platform::prelude::*;
use highpte_kernel::{BugReport, SleepCtx};

impl<M: PagingMode> TaskHandle<M> {
    /// Enter the kernel on behalf of this task (`entry`: the system call, the fault, the
    /// kernel thread) and run `f` with the right to sleep.
    ///
    /// Stops the simulation with a "kernel entry" bug report if the task is in atomic context
    /// (a spinlock held, preemption disabled, an atomic kmap live).
    #[inline]
    pub fn enter_kernel<R>(
        &self,
        entry: &'static str,
        f: impl FnOnce(&mut SleepCtx<'_, Self>) -> R,
    ) -> R {
        let st = self.st();
        let t = &st.tasks[self.id().0 as usize];
        if t.preempt_count != 0 || !t.held.is_empty() {
            let message = format!(
                "BUG: task {} '{}' enters the kernel ({entry}) in atomic context: preempt_count \
                 {} holding [{}] at {}",
                self.id(),
                t.name,
                t.preempt_count,
                crate::deadlock::list_locks(&t.held),
                t.where_label
            );
            self.bug(BugReport {
                kind: "kernel entry",
                message,
            });
        }
        // SAFETY: this is a kernel entry of the running task (the handle exists only on its
        // own coroutine) and preempt_count is zero, checked above: no spinlock is held and no
        // kmap_atomic or pte mapping is live (each raises preempt_count), so the task may
        // sleep.
        let mut cx = unsafe { SleepCtx::enter(self) };
        let r = f(&mut cx);
        let st = self.st();
        st.timeline(st.cur_cpu, self.id(), crate::timeline::What::KernelExit);
        r
    }
}
