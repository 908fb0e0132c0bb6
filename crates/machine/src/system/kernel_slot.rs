//! Where a [`super::System`]'s kernel lives, shared with the system's tasks.
//!
//! Tasks reach the kernel through a [`KernelCell`], an `Rc` of the slot. A task left asleep in
//! the kernel when its machine is dropped has its coroutine leaked (never unwound), and with
//! it every `Rc` its frames hold: with the kernel behind a plain `Rc<OnceCell<Kernel>>` each
//! such machine leaked its whole kernel (mem_map, VMAs, caches), about 1.3 MB per case of the
//! system-call fuzzer and far more for a 64 GB machine in a `compare`. The slot instead lets
//! its [`super::System`] drop the kernel when the machine's tasks are gone, whoever still counts
//! a reference to the slot; and it hands out the kernel only with proof that the machine is
//! running (a `&TaskHandle`), so no reference to the kernel can outlive the system.

use crate::task::TaskHandle;
use highpte_arch::PagingMode;
use highpte_kernel::Kernel;
use std::cell::UnsafeCell;
use std::rc::Rc;

/// The kernel as the tasks see it: set once by the boot task.
pub type KernelCell<M> = Rc<KernelSlot<M>>;

/// A kernel, set once, dropped by its system (see the module's documentation).
pub struct KernelSlot<M: PagingMode> {
    kernel: UnsafeCell<Option<Kernel<M>>>,
}

impl<M: PagingMode> KernelSlot<M> {
    pub(crate) fn new() -> KernelCell<M> {
        Rc::new(KernelSlot {
            kernel: UnsafeCell::new(None),
        })
    }

    /// The kernel, for a task of the system's machine (`running` is its handle). `None` before
    /// boot has set it.
    pub fn get<'a>(&'a self, running: &'a TaskHandle<M>) -> Option<&'a Kernel<M>> {
        let _ = running;
        self.get_unchecked()
    }

    /// The kernel, for the system itself and its machine's hooks, which run only while the
    /// system is alive.
    pub(crate) fn get_unchecked(&self) -> Option<&Kernel<M>> {
        // SAFETY: the slot is written only by `set` (when it is empty, so no reference to a
        // kernel exists yet) and by `clear`, whose caller guarantees no reference is live.
        unsafe { (*self.kernel.get()).as_ref() }
    }

    /// True while the slot holds a kernel: from boot until its system is dropped.
    pub fn holds_kernel(&self) -> bool {
        self.get_unchecked().is_some()
    }

    /// Store the booted kernel; false (and `k` dropped) if one is set already.
    pub(crate) fn set(&self, k: Kernel<M>) -> bool {
        if self.holds_kernel() {
            return false;
        }
        // SAFETY: while the slot is empty nobody holds a reference into it.
        unsafe { *self.kernel.get() = Some(k) };
        true
    }

    /// Drop the kernel.
    ///
    /// # Safety
    /// No reference obtained from [`KernelSlot::get`] or [`KernelSlot::get_unchecked`] is used
    /// afterwards: every task of the machine has exited or will never run again, and the
    /// system's own borrows have ended.
    pub(crate) unsafe fn clear(&self) {
        // SAFETY: the caller's promise.
        drop(unsafe { (*self.kernel.get()).take() });
    }
}
