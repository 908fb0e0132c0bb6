//! [`highpte_kernel::Platform`] for [`TaskHandle`]: the kernel's view of the machine.
//!
//! Every method runs on the calling task's coroutine. Each takes a short-lived reference to
//! the machine state through [`TaskHandle::st`] and drops it before anything that may suspend
//! the task or call out of the machine (see [`crate::task`]). Memory accesses are done before
//! their cycles are charged, because charging may let other CPUs run, and an access must use
//! the translation it was checked with.

use crate::events::Event;
use crate::machine::{BugInfo, RunOutcome};
use crate::mmu::{self, Access, MmuRegs, PageFault, Translation};
use crate::task::{HeldLock, PreemptKind, TaskHandle, TaskState, Yield};
use highpte_arch::{PagingMode, Pfn, PhysAddr, VirtAddr, PAGE_SHIFT, PAGE_SIZE};
use highpte_kernel::{
    BlockDev, BugReport, CpuMask, KernelEvent, Platform, TaskId, TlbFlush, WaitOn, WaitQueueKey,
};
use rand::RngCore;
use std::fmt;

impl<M: PagingMode> TaskHandle<M> {
    /// Translate a kernel (CPL 0) access on this CPU; a fault is an oops. Returns the physical
    /// address and the cycles to charge once the access is done.
    #[inline(always)]
    fn kernel_translate(&self, va: VirtAddr, access: Access) -> (u64, u64) {
        let st = self.st();
        let cpu = &mut st.cpus[st.cur_cpu];
        let tr = if cpu.regs.paging {
            mmu::translate_in::<M>(&st.phys, &cpu.regs, &mut cpu.tlb, va, access, false)
        } else {
            Ok(Translation {
                pa: va.as_u64(),
                tlb_hit: false,
                levels_walked: 0,
            })
        };
        match tr {
            Ok(t) => (
                t.pa,
                st.cost.mem_access + st.cost.tlb_miss_per_level * u64::from(t.levels_walked),
            ),
            Err(pf) => self.oops(pf, access),
        }
    }

    /// A kernel-mode page fault: the oops report.
    #[cold]
    fn oops(&self, pf: PageFault, access: Access) -> ! {
        let mut msg = format!(
            "BUG: unable to handle kernel paging request at {:#010x}: page fault error code {:#x} ({:?}) on a {:?}; {}",
            pf.addr.as_u32(),
            pf.code.bits(),
            pf.code,
            access,
            self.who()
        );
        if let Some(what) = self.os().and_then(|os| os.describe_address(pf.addr)) {
            msg.push_str("; ");
            msg.push_str(&what);
        }
        self.bug(BugReport {
            kind: "kernel page fault",
            message: msg,
        })
    }

    /// The host failed a swap-file transfer: log it and stop the run
    /// ([`RunOutcome::HostIo`]). Not a kernel bug, and nothing the kernel could handle: the
    /// page's data is gone (read) or was never saved (write).
    #[cold]
    fn host_io_failure(&self, e: crate::blockdev::HostIoError) -> ! {
        let st = self.st();
        let c = st.cur_cpu;
        st.log
            .push(format!("[{:>14}] cpu{c}: {e}", st.cpus[c].clock));
        st.fail(RunOutcome::HostIo(Box::new(e)));
        loop {
            // The scheduler stops the run and never resumes this task.
            self.suspend(Yield::Stop);
        }
    }

    /// A kernel bug found by the machine's own checks (preempt_count underflow, atomic sleep).
    #[cold]
    fn atomic_bug(&self, kind: &'static str, what: String) -> ! {
        let st = self.st();
        let t = &st.tasks[self.id().0 as usize];
        let msg = format!(
            "BUG: {what}: preempt_count {}, holding [{}]; {}",
            t.preempt_count,
            crate::deadlock::list_locks(&t.held),
            self.who()
        );
        self.bug(BugReport { kind, message: msg })
    }

    #[inline(always)]
    fn task_index(&self) -> usize {
        self.id().0 as usize
    }

    /// Run a physical-memory operation for the boot methods, charging one access.
    fn boot_phys<T>(
        &self,
        pa: PhysAddr,
        f: impl FnOnce(&crate::phys::PhysMem) -> Result<T, crate::phys::PhysMemError>,
    ) -> T {
        let r = f(&self.st().phys);
        let v = self.phys_ok(r, pa.as_u64());
        let cost = self.st().cost.mem_access;
        self.advance(cost);
        v
    }

    /// Deliver an IPI-driven TLB flush to `targets`: `per_target` runs on each target's TLB
    /// and `handler` cycles are charged to its clock; the sender pays the sends and waits for
    /// the slowest handler.
    fn ipi_flush(&self, targets: CpuMask, handler: u64, per_target: impl Fn(&mut crate::tlb::Tlb)) {
        let st = self.st();
        let me = st.cur_cpu;
        let receive = st.cost.ipi_receive + handler;
        let mut sent = 0u64;
        for t in targets.iter() {
            let Some(cpu) = st.cpus.get_mut(t as usize) else {
                break;
            };
            if t as usize == me {
                continue;
            }
            per_target(&mut cpu.tlb);
            cpu.clock += receive;
            cpu.stats.ipis_received += 1;
            sent += 1;
        }
        if sent == 0 {
            return;
        }
        st.cpus[me].stats.ipis_sent += sent;
        st.stats.tlb_shootdowns += 1;
        let cost = st.cost.ipi_send * sent + receive;
        self.advance(cost);
    }
}

impl<M: PagingMode> Platform for TaskHandle<M> {
    #[inline]
    fn cpu(&self) -> u32 {
        self.st().cur_cpu as u32
    }

    fn nr_cpus(&self) -> u32 {
        self.st().cpus.len() as u32
    }

    #[inline]
    fn task(&self) -> TaskId {
        self.id()
    }

    fn preempt_config(&self) -> bool {
        self.st().opts.preempt
    }

    #[inline]
    fn read_u32(&self, va: VirtAddr) -> u32 {
        let (pa, cost) = self.kernel_translate(va, Access::Read);
        let r = self.st().phys.read_u32(pa);
        let v = self.phys_ok(r, pa);
        self.advance(cost);
        v
    }

    #[inline]
    fn read_u64(&self, va: VirtAddr) -> u64 {
        let (pa, cost) = self.kernel_translate(va, Access::Read);
        let r = self.st().phys.read_u64(pa);
        let v = self.phys_ok(r, pa);
        self.advance(cost);
        v
    }

    #[inline]
    fn write_u32(&self, va: VirtAddr, v: u32) {
        let (pa, cost) = self.kernel_translate(va, Access::Write);
        let r = self.st().phys.write_u32(pa, v);
        self.phys_ok(r, pa);
        self.advance(cost);
    }

    #[inline]
    fn write_u64(&self, va: VirtAddr, v: u64) {
        let (pa, cost) = self.kernel_translate(va, Access::Write);
        let r = self.st().phys.write_u64(pa, v);
        self.phys_ok(r, pa);
        self.advance(cost);
    }

    fn read_block(&self, va: VirtAddr, buf: &mut [u8]) {
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

    fn write_block(&self, va: VirtAddr, buf: &[u8]) {
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

    fn block_io(&self, dev: BlockDev, block: u64, pfn: Pfn, write: bool) {
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

    fn clear_page(&self, va: VirtAddr) {
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

    fn copy_page(&self, dst: VirtAddr, src: VirtAddr) {
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

    fn boot_phys_write_u64(&self, pa: PhysAddr, v: u64) {
        self.boot_phys(pa, |m| m.write_u64(pa.as_u64(), v));
    }

    fn boot_phys_write_u32(&self, pa: PhysAddr, v: u32) {
        self.boot_phys(pa, |m| m.write_u32(pa.as_u64(), v));
    }

    fn boot_phys_clear_page(&self, pa: PhysAddr) {
        self.boot_phys(pa, |m| m.zero_page(pa.as_u64() >> PAGE_SHIFT));
        let zero = self.st().cost.page_zero();
        self.advance(zero);
    }

    fn enable_paging(&self, pae: bool, cr3: PhysAddr) {
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

    fn load_cr3(&self, cr3: PhysAddr) {
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

    #[inline]
    fn preempt_count(&self) -> u32 {
        self.st().tasks[self.task_index()].preempt_count
    }

    #[inline]
    fn preempt_disable(&self) {
        self.st().tasks[self.task_index()].preempt_count += 1;
    }

    fn preempt_enable(&self) {
        let cost = self.st().cost.preempt_toggle;
        self.advance(cost);
        let st = self.st();
        let t = &mut st.tasks[self.task_index()];
        if t.preempt_count == 0 {
            self.atomic_bug(
                "preempt_count underflow",
                "preempt_enable with preempt_count already 0".into(),
            );
        }
        t.preempt_count -= 1;
        if t.preempt_count == 0 && st.opts.preempt && st.resched_due(st.cur_cpu) {
            self.suspend(Yield::Preempt(PreemptKind::Kernel));
        }
    }

    fn preempt_enable_no_resched(&self) {
        let t = &mut self.st().tasks[self.task_index()];
        if t.preempt_count == 0 {
            self.atomic_bug(
                "preempt_count underflow",
                "preempt_enable_no_resched with preempt_count already 0".into(),
            );
        }
        t.preempt_count -= 1;
    }

    fn cpu_relax(&self, on: WaitOn) {
        let st = self.st();
        let c = st.cur_cpu;
        let cost = st.cost.spin_lock_per_spin;
        let progress_before = st.progress;
        let releases = st.lock_releases;
        let cpu = &mut st.cpus[c];
        let same_wait = cpu.spinning && cpu.spin_on == Some(on);
        let mut progress = progress_before;
        if !same_wait {
            // A new wait is progress: whatever others spun on may have changed.
            progress += 1;
            cpu.spin_release_seen = releases;
            cpu.spins_without_release = 0;
        }
        cpu.spin_on = Some(on);
        cpu.spinning = true;
        if cpu.spin_seen == progress {
            cpu.spin_rounds = cpu.spin_rounds.saturating_add(1);
        } else {
            cpu.spin_seen = progress;
            cpu.spin_rounds = 1;
        }
        if cpu.spin_release_seen == releases {
            cpu.spins_without_release += 1;
        } else {
            cpu.spin_release_seen = releases;
            cpu.spins_without_release = 1;
        }
        cpu.clock += cost;
        cpu.stats.spin_cycles += cost;
        let tick_due = cpu.clock >= cpu.next_tick;
        st.progress = progress;
        st.stats.spins += 1;
        if tick_due {
            st.process_ticks(c);
        }
        // A spin loop with preemption enabled is a preemption point, as in Linux.
        let preemptible = st.tasks[self.task_index()].preempt_count == 0 && st.opts.preempt;
        if preemptible && st.resched_due(c) {
            st.cpus[c].spinning = false;
            self.suspend(Yield::Preempt(PreemptKind::Kernel));
        } else {
            self.suspend(Yield::Spin);
        }
    }

    fn note_lock(&self, name: &'static str, id: u64, acquired: bool) {
        let st = self.st();
        let me = self.id();
        let at = st.cpus[st.cur_cpu].clock;
        let t = &mut st.tasks[self.task_index()];
        let cost = if acquired {
            t.held.push(HeldLock { name, id });
            st.cost.spin_lock_uncontended
        } else {
            // Locks are mostly released in reverse order: the last one is the common case.
            if t.held.last().is_some_and(|l| l.id == id) {
                t.held.pop();
            } else if let Some(i) = t.held.iter().rposition(|l| l.id == id) {
                t.held.remove(i);
            }
            st.lock_releases += 1;
            st.cost.spin_unlock
        };
        st.events.record(Event::Lock {
            task: me,
            name,
            id,
            acquired,
            at,
        });
        self.advance(cost);
    }

    fn prepare_to_wait(&self, key: WaitQueueKey) -> u64 {
        self.st().queues.entry(key.0).or_default().wakes
    }

    fn sleep(&self, key: WaitQueueKey, token: u64, what: &'static str, place: &'static str) {
        let st = self.st();
        if st.tasks[self.task_index()].preempt_count != 0 {
            self.atomic_bug("sleeping in atomic context", format!("sleeping function called from invalid context at {place} (sleeping on \"{what}\")"));
        }
        let q = st.queues.entry(key.0).or_default();
        if q.wakes != token {
            return; // woken between prepare_to_wait and now
        }
        q.sleepers.push_back(self.id());
        let c = st.cur_cpu;
        let at = st.cpus[c].clock;
        st.cpus[c].spinning = false;
        st.tasks[self.task_index()].state = TaskState::Sleeping { key, what, place };
        st.progress += 1;
        st.stats.sleeps += 1;
        st.events.record(Event::Sleep {
            task: self.id(),
            what,
            key: key.0,
            at,
        });
        self.suspend(Yield::Sleep);
    }

    fn wake_up_all(&self, key: WaitQueueKey) -> u32 {
        let st = self.st();
        let Some(q) = st.queues.get_mut(&key.0) else {
            // No one ever prepared to wait on this key, so no token can be outstanding.
            let cost = st.cost.atomic_op;
            self.advance(cost);
            return 0;
        };
        q.wakes += 1;
        let sleepers = std::mem::take(&mut q.sleepers);
        let now = st.cpus[st.cur_cpu].clock;
        let n = sleepers.len() as u32;
        for t in sleepers {
            let cpu = st.select_cpu(t);
            st.enqueue(t, cpu, Some(now));
            st.events.record(Event::Wake {
                task: t,
                waker: self.id(),
                cpu,
            });
        }
        st.stats.wakeups += u64::from(n);
        st.progress += 1;
        let cost = st.cost.atomic_op;
        self.advance(cost);
        n
    }

    fn might_sleep(&self, place: &'static str) {
        if self.st().tasks[self.task_index()].preempt_count != 0 {
            self.atomic_bug(
                "might_sleep",
                format!("sleeping function called from invalid context at {place}"),
            );
        }
    }

    fn cond_resched(&self) {
        let st = self.st();
        let c = st.cur_cpu;
        st.progress += 1;
        st.cpus[c].spinning = false;
        if st.tasks[self.task_index()].preempt_count == 0 && st.resched_due(c) {
            self.suspend(Yield::Schedule);
        }
    }

    fn schedule(&self) {
        let st = self.st();
        if st.tasks[self.task_index()].preempt_count != 0 {
            self.atomic_bug(
                "scheduling while atomic",
                "schedule() called in atomic context".into(),
            );
        }
        st.progress += 1;
        st.cpus[st.cur_cpu].spinning = false;
        self.suspend(Yield::Schedule);
    }

    #[inline]
    fn set_where(&self, place: &'static str) {
        self.st().tasks[self.task_index()].where_label = place;
    }

    #[inline]
    fn charge(&self, ev: KernelEvent) {
        let st = self.st();
        let cost = match ev {
            KernelEvent::Syscall => st.cost.syscall_entry_exit,
            KernelEvent::Fault => st.cost.fault_entry_exit,
            KernelEvent::KmapAtomicPteWrite => st.cost.kmap_atomic_pte_write,
            KernelEvent::AtomicOp => st.cost.atomic_op,
            KernelEvent::Cycles(n) => n,
        };
        self.advance(cost);
    }

    #[inline]
    fn now(&self) -> u64 {
        let st = self.st();
        st.cpus[st.cur_cpu].clock
    }

    fn random(&self) -> u64 {
        self.st().rng.next_u64()
    }

    fn bug(&self, report: BugReport) -> ! {
        let st = self.st();
        let c = st.cur_cpu;
        let t = &st.tasks[self.task_index()];
        let info = BugInfo {
            report,
            task: self.id(),
            task_name: t.name.clone(),
            cpu: c as u32,
            at: st.cpus[c].clock,
            where_label: t.where_label,
            held_locks: t.held.clone(),
        };
        st.log
            .push(format!("[{:>14}] cpu{c}: {}", info.at, info.report.message));
        st.fail(RunOutcome::Bug(Box::new(info)));
        loop {
            // The scheduler stops the run on a bug and never resumes this task.
            self.suspend(Yield::Stop);
        }
    }

    fn log(&self, line: fmt::Arguments<'_>) {
        // Format before touching the state: the arguments may run arbitrary Display code.
        let text = line.to_string();
        let st = self.st();
        let c = st.cur_cpu;
        let at = st.cpus[c].clock;
        st.log.push(format!("[{at:>14}] cpu{c}: {text}"));
    }
}
