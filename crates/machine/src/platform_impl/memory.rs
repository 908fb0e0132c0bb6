//! Memory for the kernel: loads and stores at kernel virtual addresses through the running
//! CPU's MMU, boot-time physical writes and paging on, and block-device DMA.

use crate::mmu::{self, Access, MmuRegs};
use crate::task::TaskHandle;
use highpte_arch::{PagingMode, Pfn, PhysAddr, VirtAddr, PAGE_SHIFT};
use highpte_kernel::{BlockDev, BlockDevice, BootMemory, KernelMemory, Sched};

/// On the simulator every promise of [`KernelMemory`] is checked rather than trusted: an
/// address that does not translate at CPL 0 is an oops naming the culprit, and the run stops.
impl<M: PagingMode> KernelMemory for TaskHandle<M> {
    #[inline]
    unsafe fn read_u32(&self, va: VirtAddr) -> u32 {
        let (pa, cost) = self.kernel_translate(va, Access::Read);
        let r = self.st().phys.read_u32(pa);
        let v = self.phys_ok(r, pa);
        self.advance(cost);
        v
    }

    #[inline]
    unsafe fn read_u64(&self, va: VirtAddr) -> u64 {
        let (pa, cost) = self.kernel_translate(va, Access::Read);
        let r = self.st().phys.read_u64(pa);
        let v = self.phys_ok(r, pa);
        self.advance(cost);
        v
    }

    #[inline]
    unsafe fn write_u32(&self, va: VirtAddr, v: u32) {
        let (pa, cost) = self.kernel_translate(va, Access::Write);
        let r = self.st().phys.write_u32(pa, v);
        self.phys_ok(r, pa);
        self.advance(cost);
    }

    #[inline]
    unsafe fn write_u64(&self, va: VirtAddr, v: u64) {
        let (pa, cost) = self.kernel_translate(va, Access::Write);
        let r = self.st().phys.write_u64(pa, v);
        self.phys_ok(r, pa);
        self.advance(cost);
    }

    unsafe fn read_block(&self, va: VirtAddr, buf: &mut [u8]) {
        if va.page_offset() as usize + buf.len() > 4096 {
            self.atomic_bug(
                "read_block",
                format!(
                    "read_block of {} bytes at {:#010x} crosses a page",
                    buf.len(),
                    va.as_u32()
                ),
            );
        }
        let (pa, cost) = self.kernel_translate(va, Access::Read);
        let r = self.st().phys.read_bytes(pa, buf);
        self.phys_ok(r, pa);
        let words = (buf.len() as u64).div_ceil(8).max(1);
        self.advance(cost + self.st().cost.mem_access * (words - 1));
    }

    unsafe fn write_block(&self, va: VirtAddr, buf: &[u8]) {
        if va.page_offset() as usize + buf.len() > 4096 {
            self.atomic_bug(
                "write_block",
                format!(
                    "write_block of {} bytes at {:#010x} crosses a page",
                    buf.len(),
                    va.as_u32()
                ),
            );
        }
        let (pa, cost) = self.kernel_translate(va, Access::Write);
        let r = self.st().phys.write_bytes(pa, buf);
        self.phys_ok(r, pa);
        let words = (buf.len() as u64).div_ceil(8).max(1);
        self.advance(cost + self.st().cost.mem_access * (words - 1));
    }

    unsafe fn clear_page(&self, va: VirtAddr) {
        if !va.is_page_aligned() {
            self.atomic_bug(
                "clear_page",
                format!("clear_page of unaligned address {:#010x}", va.as_u32()),
            );
        }
        let (pa, cost) = self.kernel_translate(va, Access::Write);
        let r = self.st().phys.zero_page(pa >> PAGE_SHIFT);
        self.phys_ok(r, pa);
        let zero = self.st().cost.page_zero();
        self.advance(cost + zero);
    }

    unsafe fn copy_page(&self, dst: VirtAddr, src: VirtAddr) {
        if !dst.is_page_aligned() || !src.is_page_aligned() {
            let what = format!(
                "copy_page of unaligned addresses {:#010x} <- {:#010x}",
                dst.as_u32(),
                src.as_u32()
            );
            self.atomic_bug("copy_page", what);
        }
        let (spa, scost) = self.kernel_translate(src, Access::Read);
        let (dpa, dcost) = self.kernel_translate(dst, Access::Write);
        let r = self
            .st()
            .phys
            .copy_page(dpa >> PAGE_SHIFT, spa >> PAGE_SHIFT);
        self.phys_ok(r, dpa);
        let copy = self.st().cost.page_copy();
        self.advance(scost + dcost + copy);
    }
}

impl<M: PagingMode> BootMemory for TaskHandle<M> {
    unsafe fn boot_phys_write_u64(&self, pa: PhysAddr, v: u64) {
        self.boot_phys(pa, |m| m.write_u64(pa.as_u64(), v));
    }

    unsafe fn boot_phys_write_u32(&self, pa: PhysAddr, v: u32) {
        self.boot_phys(pa, |m| m.write_u32(pa.as_u64(), v));
    }

    unsafe fn boot_phys_clear_page(&self, pa: PhysAddr) {
        self.boot_phys(pa, |m| m.zero_page(pa.as_u64() >> PAGE_SHIFT));
        let zero = self.st().cost.page_zero();
        self.advance(zero);
    }

    unsafe fn enable_paging(&self, pae: bool, cr3: PhysAddr) {
        if pae != M::PAE {
            let what = format!(
                "enable_paging(pae = {pae}) on a machine built for {} paging",
                M::NAME
            );
            self.atomic_bug("enable_paging", what);
        }
        let st = self.st();
        let mut regs = MmuRegs {
            paging: true,
            wp: true,
            pae,
            pse: true,
            pge: true,
            nxe: pae,
            cr3: 0,
            pdptes: [0; 4],
        };
        if let Err(e) = mmu::load_cr3(&st.phys, &mut regs, cr3.as_u64()) {
            self.atomic_bug(
                "enable_paging",
                format!("enable_paging: CR3 load of {cr3} refused: {e}"),
            );
        }
        for cpu in &mut st.cpus {
            cpu.regs = regs;
            cpu.tlb.flush_all();
        }
        let cost = st.cost.cr3_load + st.cost.tlb_flush_full;
        self.advance(cost);
    }
}

impl<M: PagingMode> BlockDevice for TaskHandle<M> {
    unsafe fn block_io(&self, dev: BlockDev, block: u64, pfn: Pfn, write: bool) {
        if self.st().tasks[self.task_index()].preempt_count != 0 {
            self.atomic_bug(
                "block I/O in atomic context",
                format!("block_io({dev:?}, {block}) of pfn {:#x}", pfn.0),
            );
        }
        let pa = pfn.addr().as_u64();
        let mut buf = [0u8; 4096];
        if write {
            let r = self.st().phys.read_bytes(pa, &mut buf);
            self.phys_ok(r, pa);
            if let Err(e) = self.st().disks.write(dev, block, &buf) {
                self.host_io_failure(e);
            }
        } else {
            if let Err(e) = self.st().disks.read(dev, block, &mut buf) {
                self.host_io_failure(e);
            }
            let r = self.st().phys.write_bytes(pa, &buf);
            self.phys_ok(r, pa);
        }
        self.advance(crate::blockdev::BLOCK_IO_CYCLES);
        self.cond_resched();
    }

    fn block_discard(&self, dev: BlockDev, block: u64) {
        self.st().disks.discard(dev, block);
    }
}
