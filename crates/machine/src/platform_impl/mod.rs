//! [`highpte_kernel::Platform`] for [`TaskHandle`]: the kernel's view of the machine.
//!
//! Every method runs on the calling task's coroutine. Each takes a short-lived reference to
//! the machine state through [`TaskHandle::st`] and drops it before anything that may suspend
//! the task or call out of the machine (see [`crate::task`]). Memory accesses are done before
//! their cycles are charged, because charging may let other CPUs run, and an access must use
//! the translation it was checked with.

use crate::machine::{BugInfo, RunOutcome};
use crate::mmu::{self, Access, PageFault, Translation};
use crate::task::{TaskHandle, Yield};
use crate::timeline::What;
use highpte_arch::{PagingMode, PhysAddr, VirtAddr};
use highpte_kernel::{BugReport, CpuInfo, CpuMask, Diagnostics, KernelEvent, TaskId, TracePoint};
use rand::RngCore;
use std::fmt;

mod memory;
mod sched;
mod tlb;

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
            if let Some(tl) = &st.timeline {
                let (to, to_at, cycles) = (t, cpu.clock, receive);
                let what = What::TlbIpi { to, to_at, cycles };
                let at = st.cpus[me].clock;
                let (cpu, task) = (me as u32, self.id());
                tl.send(crate::timeline::TimelineEvent {
                    cpu,
                    at,
                    task,
                    what,
                });
            }
            let cpu = &mut st.cpus[t as usize];
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

impl<M: PagingMode> CpuInfo for TaskHandle<M> {
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
    fn now(&self) -> u64 {
        let st = self.st();
        st.cpus[st.cur_cpu].clock
    }

    fn random(&self) -> u64 {
        self.st().rng.next_u64()
    }
}

impl<M: PagingMode> Diagnostics for TaskHandle<M> {
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

    #[inline]
    fn tracing(&self) -> bool {
        self.st().timeline.is_some()
    }

    fn trace(&self, point: TracePoint) {
        let st = self.st();
        st.timeline(st.cur_cpu, self.id(), What::Kernel(point));
    }
}
