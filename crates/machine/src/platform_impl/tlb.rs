//! CR3 loads, invlpg, TLB flushes and shootdown IPIs: what the kernel decided, executed.

use crate::mmu::{self};
use crate::task::TaskHandle;
use highpte_arch::{PagingMode, PhysAddr, VirtAddr, PAGE_SIZE};
use highpte_kernel::{CpuMask, Tlb, TlbFlush};

impl<M: PagingMode> Tlb for TaskHandle<M> {
    unsafe fn load_cr3(&self, cr3: PhysAddr) {
        let st = self.st();
        let cpu = &mut st.cpus[st.cur_cpu];
        if let Err(e) = mmu::load_cr3(&st.phys, &mut cpu.regs, cr3.as_u64()) {
            self.atomic_bug("load_cr3", format!("CR3 load of {cr3} refused (#GP): {e}"));
        }
        cpu.tlb.flush_nonglobal();
        let cost = st.cost.cr3_load;
        self.advance(cost);
    }

    fn invlpg(&self, va: VirtAddr) {
        let st = self.st();
        st.cpus[st.cur_cpu].tlb.invlpg(va);
        let cost = st.cost.invlpg;
        self.advance(cost);
    }

    fn flush_tlb_local(&self) {
        let st = self.st();
        st.cpus[st.cur_cpu].tlb.flush_nonglobal();
        let cost = st.cost.cr3_load;
        self.advance(cost);
    }

    fn flush_tlb_all(&self) {
        let st = self.st();
        let me = st.cur_cpu;
        st.cpus[me].tlb.flush_all();
        let full = st.cost.tlb_flush_full;
        let all = CpuMask(u32::MAX);
        self.ipi_flush(all, full, |tlb| tlb.flush_all());
        self.advance(full);
    }

    fn flush_tlb_others(&self, cpus: CpuMask, flush: TlbFlush) {
        let st = self.st();
        match flush {
            TlbFlush::Pages { start, count } => {
                let first = start.page_base().as_u64();
                let handler = st.cost.invlpg * u64::from(count);
                self.ipi_flush(cpus, handler, |tlb| {
                    for i in 0..u64::from(count) {
                        tlb.invlpg(VirtAddr::new((first + i * PAGE_SIZE) as u32));
                    }
                });
            }
            TlbFlush::NonGlobal => {
                let handler = st.cost.cr3_load;
                self.ipi_flush(cpus, handler, |tlb| tlb.flush_nonglobal());
            }
        }
    }
}
