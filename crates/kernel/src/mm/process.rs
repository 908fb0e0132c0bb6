//! Processes: creation, fork (with copy_page_range), exit (with exit_mmap), switch_mm, the
//! OOM killer.

use crate::counters::Counter;
use crate::ctx::{Ctx, SleepCtx};
use crate::errno::{Errno, Signal};
use crate::kernel::Kernel;
use crate::kobj::KObj;
use crate::mm::vma::VmaSet;
use crate::mm::{Mm, START_BRK};
use crate::page_alloc::{PageOwner, GFP_KERNEL};
use crate::platform::{Platform, TaskId};
use crate::sync::{RwSem, SpinLock};
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::Cell;
use highpte_arch::KernelProfile;
use highpte_arch::{PagingMode, Pfn, PhysAddr};

/// A process (or a thread sharing its mm): what the kernel keeps per task.
pub struct Process {
    /// Its id (the machine's task id).
    pub pid: TaskId,
    /// Its address space.
    pub mm: Rc<Mm>,
    /// The parent, if forked.
    pub parent: Option<TaskId>,
    /// Set when the task must die at its next return to user (OOM kill).
    pub killed: Cell<Option<Signal>>,
    /// The 8 KB kernel stack (order-1 pages in low memory).
    pub kstack: Pfn,
}

/// Why fork (or process creation) failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForkError(pub Errno);

/// Most processes the kernel will create (`max_threads`-like limit); fork then fails with
/// EAGAIN.
pub const MAX_PROCESSES: usize = 32_000;

impl<M: PagingMode> Kernel<M> {
    /// The mm of a task.
    pub fn mm_of(&self, pid: TaskId) -> Option<Rc<Mm>> {
        self.tasks.get(pid).map(|p| p.mm.clone())
    }
    /// The process record of a task.
    pub fn process(&self, pid: TaskId) -> Option<Rc<Process>> {
        self.tasks.get(pid)
    }
    /// Number of live processes.
    pub fn nr_processes(&self) -> usize {
        self.tasks.len()
    }
    /// Every live process id.
    pub fn pids(&self) -> Vec<TaskId> {
        self.tasks.pids()
    }

    fn new_mm<P: Platform>(&self, cx: &mut SleepCtx<'_, P>) -> Result<Mm, Errno> {
        self.kobj_charge(cx, KObj::MmStruct, 0)
            .map_err(|_| Errno::ENOMEM)?;
        let pgd = match self.pgd_alloc(cx) {
            Ok(pgd) => pgd,
            Err(_) => {
                self.kobj_uncharge(cx, KObj::MmStruct, 0);
                return Err(Errno::ENOMEM);
            }
        };
        Ok(Mm {
            cr3: pgd.cr3().as_u64(),
            pgd,
            dead: Cell::new(false),
            mmap_sem: RwSem::new("mmap_sem", VmaSet::new(START_BRK)),
            page_table_lock: SpinLock::new("page_table_lock", ()),
            rss: Cell::new(0),
            nr_ptes: Cell::new(0),
            cpu_vm_mask: Cell::new(crate::platform::CpuMask::EMPTY),
            users: Cell::new(1),
            charged_vmas: Cell::new(0),
            swap_address: Cell::new(0),
        })
    }

    fn task_alloc<P: Platform>(&self, cx: &mut SleepCtx<'_, P>) -> Result<Pfn, Errno> {
        if self.tasks.len() >= self.opts.max_processes {
            return Err(Errno::EAGAIN);
        }
        self.kobj_charge(cx, KObj::TaskStruct, 0)
            .map_err(|_| Errno::ENOMEM)?;
        match self.alloc_pages(
            cx,
            GFP_KERNEL,
            1,
            PageOwner::KernelObject,
            "alloc_thread_info",
        ) {
            Some(s) => Ok(s),
            None => {
                self.kobj_uncharge(cx, KObj::TaskStruct, 0);
                Err(Errno::ENOMEM)
            }
        }
    }

    /// Create a process with an empty address space for task `pid` (what exec of a fresh
    /// program gives).
    pub fn create_process<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        pid: TaskId,
    ) -> Result<(), Errno> {
        let kstack = self.task_alloc(cx)?;
        let mm = match self.new_mm(cx) {
            Ok(mm) => mm,
            Err(e) => {
                self.task_free(cx, kstack);
                return Err(e);
            }
        };
        let mm = Rc::new(mm);
        self.rmap_register_mm(&mm);
        self.tasks.insert(Rc::new(Process {
            pid,
            mm,
            parent: None,
            killed: Cell::new(None),
            kstack,
        }));
        Ok(())
    }

    fn task_free<P: Platform>(&self, cx: &Ctx<'_, P>, kstack: Pfn) {
        self.free_pages(cx, kstack, 1);
        self.kobj_uncharge(cx, KObj::TaskStruct, 0);
    }

    /// `do_fork`: make task `child` a copy of `parent` (a new address space with every VMA
    /// copied, private pages shared copy-on-write), or a thread sharing its mm (`share_vm`).
    pub fn do_fork<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        parent: TaskId,
        child: TaskId,
        share_vm: bool,
    ) -> Result<(), Errno> {
        let p = cx.p();
        p.charge(crate::platform::KernelEvent::Syscall);
        self.counters.inc(Counter::Syscalls);
        if p.tracing() {
            p.trace(crate::platform::TracePoint::SyscallEnter { name: "do_fork" });
        }
        let par = self.process(parent).ok_or(Errno::ESRCH)?;
        let kstack = self.task_alloc(cx)?;
        let mm = if share_vm {
            par.mm.users.set(par.mm.users.get() + 1);
            par.mm.clone()
        } else {
            match self.dup_mm(cx, &par.mm) {
                Ok(mm) => {
                    let mm = Rc::new(mm);
                    self.rmap_register_mm(&mm);
                    mm
                }
                Err(e) => {
                    self.task_free(cx, kstack);
                    return Err(e);
                }
            }
        };
        // the child gets copies of the descriptors, sharing the open files
        self.files_fork(parent, child);
        self.tasks.insert(Rc::new(Process {
            pid: child,
            mm,
            parent: Some(parent),
            killed: Cell::new(None),
            kstack,
        }));
        Ok(())
    }

    /// `dup_mmap`: copy every VMA and its page tables.
    fn dup_mm<P: Platform>(&self, cx: &mut SleepCtx<'_, P>, old: &Mm) -> Result<Mm, Errno> {
        let mm = self.new_mm(cx)?;
        let src = old.mmap_sem.write(cx, "dup_mmap");
        let vmas: Vec<_> = src.iter().cloned().collect();
        if let Err(e) = self.vma_precharge_n(cx, &mm, vmas.len()) {
            drop(src);
            self.destroy_mm(cx, &mm);
            return Err(e);
        }
        {
            let mut dst = mm.mmap_sem.write(cx, "dup_mmap");
            dst.start_brk = src.start_brk;
            dst.brk = src.brk;
            for v in &vmas {
                dst.insert(v.clone());
            }
        }
        let mut result = Ok(());
        for v in &vmas {
            // 6.1 copies only the page tables a fault could not rebuild (`vma_needs_copy`):
            // a shared mapping has no anonymous pages, so the child faults its ptes in
            // instead; 2.5 copies every VMA's
            if self.cfg.kernel == KernelProfile::Linux61 && v.backing.is_shared() {
                continue;
            }
            if self.copy_page_range(cx, &mm, old, v).is_err() {
                result = Err(Errno::ENOMEM);
                break;
            }
        }
        // the parent's private ptes were write-protected: flush them everywhere
        self.flush_tlb_mm(cx, old);
        drop(src);
        let n = mm.mmap_sem.read(cx, "dup_mmap").len();
        self.vma_settle(cx, &mm, n);
        match result {
            Ok(()) => Ok(mm),
            Err(e) => {
                self.destroy_mm(cx, &mm);
                Err(e)
            }
        }
    }

    /// Tear down an mm: unmap everything, free the page tables and the root.
    fn destroy_mm<P: Platform>(&self, cx: &mut SleepCtx<'_, P>, mm: &Mm) {
        self.exit_mmap(cx, mm);
        self.kobj_uncharge(cx, KObj::MmStruct, 0);
    }

    /// `do_exit`: release the task's resources; the address space goes with its last user.
    /// The exit code is kept for the parent's `wait`.
    pub fn do_exit<P: Platform>(&self, cx: &mut SleepCtx<'_, P>, pid: TaskId, code: i32) {
        let p = cx.p();
        if self.opts.debug {
            self.check_no_pkmaps(p, pid);
        }
        let Some(proc_) = self.process(pid) else {
            return;
        };
        self.files_exit(cx, pid);
        let mm = proc_.mm.clone();
        let users = mm.users.get() - 1;
        mm.users.set(users);
        if users == 0 {
            self.destroy_mm(cx, &mm);
        }
        // this CPU may still have the mm loaded; the machine switches away after exit
        self.task_free(cx, proc_.kstack);
        // the zombie is queued in the same step as the process leaves the table (waking
        // someone lets other CPUs run): a parent's wait() finds the child or its zombie
        let parent = proc_.parent.filter(|&pp| self.tasks.contains(pp));
        if let Some(parent) = parent {
            self.tasks.push_zombie(parent, pid, code);
        }
        // gone from the process table only now: whoever waits for every process to be gone
        // (and then checks for leaks) must not see a half torn-down one
        self.tasks.remove(pid);
        p.wake_up_all(PROCESS_EXIT_KEY);
        if let Some(parent) = parent {
            p.wake_up_all(crate::platform::WaitQueueKey(
                WAIT_KEY_BASE + parent.0 as u64,
            ));
        }
        // orphans are reaped by nobody: forget their zombies
        self.tasks.forget_zombies(pid);
        // tasks waiting for this OOM victim's memory may retry
        p.wake_up_all(crate::platform::WaitQueueKey(
            OOM_EXIT_KEY_BASE + pid.0 as u64,
        ));
    }

    /// `wait()`: sleep until a child of `pid` exits; returns its id and exit code, or ECHILD
    /// when there is no child.
    pub fn sys_wait<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        pid: TaskId,
    ) -> Result<(TaskId, i32), Errno> {
        let p = cx.p();
        self.syscall_enter(p, "sys_wait4");
        let key = crate::platform::WaitQueueKey(WAIT_KEY_BASE + pid.0 as u64);
        loop {
            let token = p.prepare_to_wait(key);
            if let Some(z) = self.tasks.take_zombie(pid) {
                return Ok(z);
            }
            let alive = self.tasks.find(|c| c.parent == Some(pid)).is_some();
            if !alive {
                return Err(Errno(10)); // ECHILD
            }
            if self.pending_kill(pid).is_some() {
                return Err(Errno(4)); // EINTR
            }
            cx.sleep_on(key, token, "wait for child", "sys_wait4");
        }
    }

    /// `switch_mm`: the machine switches this CPU from task `prev` to task `next`.
    pub fn switch_mm<P: Platform>(&self, p: &P, prev: Option<TaskId>, next: TaskId) {
        let cpu = p.cpu();
        if let Some(pr) = prev {
            if self.opts.debug {
                self.check_no_atomic_slots(p, pr, "schedule");
            }
        }
        let prev_mm = prev.and_then(|t| self.mm_of(t));
        let next_mm = self.mm_of(next);
        match (&prev_mm, &next_mm) {
            (Some(a), Some(b)) if Rc::ptr_eq(a, b) => {
                let mut m = b.cpu_vm_mask.get();
                m.insert(cpu);
                b.cpu_vm_mask.set(m);
            }
            _ => {
                if let Some(a) = &prev_mm {
                    let mut m = a.cpu_vm_mask.get();
                    m.remove(cpu);
                    a.cpu_vm_mask.set(m);
                }
                match &next_mm {
                    Some(b) if !b.dead.get() => {
                        let mut m = b.cpu_vm_mask.get();
                        m.insert(cpu);
                        b.cpu_vm_mask.set(m);
                        // SAFETY: a live mm's root, which its exit frees only after moving
                        // every CPU in its cpu_vm_mask off it.
                        unsafe { p.load_cr3(PhysAddr::new_checked(b.cr3)) };
                    }
                    // SAFETY: swapper_pg_dir lives as long as the kernel.
                    _ => unsafe { p.load_cr3(self.init_mm.pgd().addr()) },
                }
            }
        }
    }

    /// The OOM killer: choose the process with the most resident pages (ties: the newest;
    /// the 6.1 profile adds its page-table pages to its resident pages, as 6.1's
    /// `oom_badness` does), mark it killed and log it. Returns the victim. While a victim killed earlier has not
    /// exited yet, it is returned again and nobody else is killed (its memory is on its way
    /// back).
    pub fn out_of_memory<P: Platform>(&self, p: &P, faulting: TaskId) -> Option<TaskId> {
        let dying = self
            .tasks
            .find(|pr| pr.killed.get() == Some(Signal::Sigkill))
            .map(|pr| pr.pid);
        if let Some(d) = dying {
            return Some(d);
        }
        let victim = self
            .tasks
            .max_by_key(
                |pr| pr.killed.get().is_none(),
                |pr| (self.oom_badness(&pr.mm), pr.pid.0),
            )
            .map(|pr| pr.pid)?;
        self.oom_kill_process(p, victim, faulting);
        Some(victim)
    }

    /// The OOM killer's measure of a process: its resident pages, plus with the 6.1 profile
    /// its page-table pages (pte pages, and with PAE its three pmd pages). 6.1 also adds swap
    /// entries, which the simulator does not count per process.
    fn oom_badness(&self, mm: &crate::mm::Mm) -> u64 {
        match self.cfg.kernel {
            KernelProfile::Linux25 => mm.rss.get(),
            KernelProfile::Linux61 => mm.rss.get() + mm.nr_ptes.get() + if M::PAE { 3 } else { 0 },
        }
    }

    /// Kill `victim` for the OOM killer (a fault of task `faulting` found no memory): mark it,
    /// log it, wake it if it sleeps where a kill ends the sleep.
    pub(crate) fn oom_kill_process<P: Platform>(&self, p: &P, victim: TaskId, faulting: TaskId) {
        let Some(v) = self.process(victim) else {
            return;
        };
        v.killed.set(Some(Signal::Sigkill));
        self.counters.inc(Counter::OomKills);
        let m = self.meminfo(p);
        p.log(format_args!(
            "Out of Memory: Killed process {} (rss {} pages); fault by task {}; LowFree {} kB, HighFree {} kB",
            victim,
            v.mm.rss.get(),
            faulting,
            m.low_free,
            m.high_free
        ));
        p.wake_up_all(crate::platform::WaitQueueKey(
            PAUSE_KEY_BASE + victim.0 as u64,
        ));
        p.wake_up_all(crate::platform::WaitQueueKey(
            WAIT_KEY_BASE + victim.0 as u64,
        ));
    }

    /// The signal pending for a task (it must die at return to user), if any.
    pub fn pending_kill(&self, pid: TaskId) -> Option<Signal> {
        self.tasks.get(pid).and_then(|p| p.killed.get())
    }

    /// `pause()`: sleep until killed. Returns the signal.
    pub fn sys_pause<P: Platform>(&self, cx: &mut SleepCtx<'_, P>, pid: TaskId) -> Signal {
        let p = cx.p();
        let key = crate::platform::WaitQueueKey(PAUSE_KEY_BASE + pid.0 as u64);
        loop {
            let token = p.prepare_to_wait(key);
            if let Some(s) = self.pending_kill(pid) {
                return s;
            }
            cx.sleep_on(key, token, "pause", "sys_pause");
        }
    }

    /// Wake a paused task and make it exit (the workload's `kill`).
    pub fn kill_task<P: Platform>(&self, cx: &mut SleepCtx<'_, P>, pid: TaskId, sig: Signal) {
        let p = cx.p();
        if let Some(pr) = self.process(pid) {
            pr.killed.set(Some(sig));
            p.wake_up_all(crate::platform::WaitQueueKey(PAUSE_KEY_BASE + pid.0 as u64));
            p.wake_up_all(crate::platform::WaitQueueKey(WAIT_KEY_BASE + pid.0 as u64));
        }
    }
}

/// Woken whenever a process is gone from the process table (for whoever waits for all).
pub const PROCESS_EXIT_KEY: crate::platform::WaitQueueKey =
    crate::platform::WaitQueueKey(0x6578_6974_0000_0000);

/// Wait-queue keys of tasks waiting for a child: this plus the pid.
pub const WAIT_KEY_BASE: u64 = 0x7761_6974_0000_0000;

/// Wait-queue keys of tasks waiting for an OOM victim to exit: this plus the victim's pid.
pub const OOM_EXIT_KEY_BASE: u64 = 0x6f6f_6d78_0000_0000;

/// Wait-queue keys of paused tasks: this plus the pid.
pub const PAUSE_KEY_BASE: u64 = 0x7061_7573_0000_0000;
