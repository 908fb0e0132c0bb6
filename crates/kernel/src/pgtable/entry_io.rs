//! Reading and writing one paging-structure entry at a kernel address, in a paging mode's
//! width and order. Free functions, so every subsystem that owns page tables (the kernel
//! tables, the fixmap and pkmap pte pages) uses the same code without reaching the kernel.

use crate::platform::Platform;
use highpte_arch::{Entry, PagingMode, VirtAddr};

/// Read a paging-structure entry of mode `M` at a kernel address.
///
/// # Safety
/// `va` is an entry of a paging structure mapped at a kernel address that stays live for
/// the call (the direct map of a low table, a kmap or kmap_atomic slot the caller holds,
/// the fixmap or pkmap pte page), and the caller holds what protects the entry (the
/// table's page-table lock, `init_mm`'s lock, the slot's CPU with preemption off) or the
/// table is not reachable by anyone else.
#[inline(always)]
pub(crate) unsafe fn read_entry<M: PagingMode, P: Platform>(p: &P, va: VirtAddr) -> u64 {
    // SAFETY: the caller's promise is `KernelMemory`'s.
    unsafe {
        if M::PAE {
            p.read_u64(va)
        } else {
            p.read_u32(va) as u64
        }
    }
}

/// Write a paging-structure entry of mode `M` at a kernel address. With PAE the high half is
/// written first when the entry becomes present, the low half (with P) first when it is
/// cleared, so the hardware never sees a half-written present entry.
///
/// # Safety
/// As [`read_entry`].
#[inline(always)]
pub(crate) unsafe fn write_entry<M: PagingMode, P: Platform>(p: &P, va: VirtAddr, e: Entry) {
    // SAFETY: the caller's promise is `KernelMemory`'s.
    unsafe {
        if M::PAE {
            let hi = VirtAddr::new(va.as_u32() + 4);
            if e.is_present() {
                p.write_u32(hi, e.high());
                p.write_u32(va, e.low());
            } else {
                p.write_u32(va, e.low());
                p.write_u32(hi, e.high());
            }
        } else {
            p.write_u32(va, e.low());
        }
    }
}
