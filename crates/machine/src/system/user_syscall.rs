//! System calls of the user-mode layer as a timeline sees them: the kernel entry, and the
//! error it returned.

use super::User;
use crate::task::TaskHandle;
use crate::timeline::What;
use highpte_arch::PagingMode;
use highpte_kernel::{Errno, Signal, SleepCtx, TaskId};

/// What a system call returns, as far as a timeline cares: the errno if it failed.
pub(crate) trait SyscallReturn {
    /// The errno of a failed call (`None`: it succeeded).
    fn errno(&self) -> Option<u16>;
}

impl<T> SyscallReturn for Result<T, Errno> {
    fn errno(&self) -> Option<u16> {
        self.as_ref().err().map(|e| e.0 as u16)
    }
}

macro_rules! never_fails {
    ($($t:ty),*) => {
        $(impl SyscallReturn for $t {
            fn errno(&self) -> Option<u16> {
                None
            }
        })*
    };
}

never_fails!(u32, Signal, (), TaskId);

impl<M: PagingMode> User<'_, M> {
    /// Enter the kernel for system call `name` and run `f` there; a timeline learns the
    /// call's errno before the entry ends.
    #[inline]
    pub(crate) fn syscall<R: SyscallReturn>(
        &self,
        name: &'static str,
        f: impl FnOnce(&mut SleepCtx<'_, TaskHandle<M>>) -> R,
    ) -> R {
        self.h.enter_kernel(name, |cx| {
            let r = f(cx);
            let st = self.h.st();
            if st.timeline.is_some() {
                let errno = r.errno();
                st.timeline(st.cur_cpu, self.pid, What::SyscallResult { errno });
            }
            r
        })
    }
}
