//! TLB flushing for an address space: the local CPU by `invlpg` or CR3 reload, the others by
//! IPI (`flush_tlb_range`, `flush_tlb_mm`).

use crate::counters::Counter;
use crate::ctx::Ctx;
use crate::kernel::Kernel;
use crate::mm::Mm;
use crate::platform::Platform;
use highpte_arch::{PagingMode, VirtAddr};

/// Ranges longer than this many pages are flushed whole rather than page by page.
pub const FLUSH_ALL_THRESHOLD: u64 = 32;

impl<M: PagingMode> Kernel<M> {
    /// `flush_tlb_range(vma, start, end)`: make every CPU that may cache `mm` forget
    /// `[start, end)`.
    pub fn flush_tlb_range<P: Platform>(&self, cx: &Ctx<'_, P>, mm: &Mm, start: u32, end: u64) {
        let p = cx.p();
        p.preempt_disable();
        let cpu = p.cpu();
        let mask = mm.cpu_vm_mask.get();
        let pages = (end - start as u64) >> 12;
        if mask.contains(cpu) {
            if pages <= FLUSH_ALL_THRESHOLD {
                let mut a = start as u64;
                while a < end {
                    p.invlpg(VirtAddr::new(a as u32));
                    self.counters.inc(Counter::Invlpg);
                    a += 4096;
                }
            } else {
                p.flush_tlb_local();
            }
        }
        let others = mask.without(cpu);
        if !others.is_empty() {
            self.counters
                .add(Counter::TlbShootdowns, others.iter().count() as u64);
            let e = if end >= 1 << 32 {
                VirtAddr::new(!0xfff)
            } else {
                VirtAddr::new(end as u32)
            };
            p.flush_tlb_others(others, VirtAddr::new(start), e);
        }
        p.preempt_enable();
    }

    /// `flush_tlb_mm(mm)`: forget every translation of `mm` on every CPU.
    pub fn flush_tlb_mm<P: Platform>(&self, cx: &Ctx<'_, P>, mm: &Mm) {
        self.flush_tlb_range(cx, mm, 0, crate::mm::TASK_SIZE as u64);
    }
}
