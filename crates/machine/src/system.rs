//! A booted system: the machine with the highpte kernel running on it, and the user-mode
//! side of processes ([`User`]): system calls and memory accesses through the MMU with the
//! page-fault path.

use crate::machine::{Machine, MachineOptions, Os, RunOutcome};
use crate::task::TaskHandle;
use highpte_arch::{Config, PagingMode, VirtAddr};
use highpte_kernel::platform::prelude::*;
use highpte_kernel::{
    BootError, Errno, FaultOutcome, Kernel, KernelOptions, Signal, TaskId, WaitQueueKey,
};
use std::cell::Cell;
use std::rc::Rc;

mod error;
mod kernel_slot;
mod user_files;
mod user_syscall;

pub use error::SystemError;
pub use kernel_slot::{KernelCell, KernelSlot};

struct KernelOs<M: PagingMode> {
    k: KernelCell<M>,
}

impl<M: PagingMode> Os<M> for KernelOs<M> {
    fn switch_mm(&self, p: &TaskHandle<M>, prev: Option<TaskId>, next: TaskId) {
        if let Some(k) = self.k.get(p) {
            k.switch_mm(p, prev, next);
        }
    }
    fn task_exit(&self, p: &TaskHandle<M>, task: TaskId, code: i32) {
        if let Some(k) = self.k.get(p) {
            if k.process(task).is_some() {
                p.enter_kernel("do_exit", |cx| k.do_exit(cx, task, code));
            }
        }
    }
    fn memory_sample(&self) -> Option<crate::timeline::MemorySample> {
        let k = self.k.get_unchecked()?;
        // SAFETY: the machine calls this between run slices: no task runs.
        let m = unsafe { k.meminfo_stopped() };
        Some(crate::timeline::MemorySample {
            low_free: m.low_free,
            high_free: m.high_free,
            page_tables_low: m.page_tables_low,
            page_tables_high: m.page_tables_high,
        })
    }
    fn describe_address(&self, va: VirtAddr) -> Option<String> {
        // only called from an oops inside a running task, so the system is alive
        self.k.get_unchecked()?.describe_kernel_address(va)
    }
}

/// The machine with the kernel booted on it.
pub struct System<M: PagingMode> {
    /// The machine.
    pub machine: Machine<M>,
    kernel: KernelCell<M>,
}

impl<M: PagingMode> System<M> {
    /// Build the machine for `cfg` and boot the kernel on it (a boot task on CPU 0).
    pub fn boot(
        cfg: Config,
        kopts: KernelOptions,
        mut mopts: MachineOptions,
    ) -> Result<Self, SystemError> {
        mopts.cpus = cfg.cpus;
        // the physical address space holding all RAM (with the PC profile, the PCI hole too)
        mopts.ram_bytes = cfg.phys_span();
        mopts.preempt = cfg.preempt;
        let mut machine = Machine::<M>::new(mopts).map_err(SystemError::Machine)?;
        let kernel: KernelCell<M> = KernelSlot::new();
        machine.set_os(Rc::new(KernelOs { k: kernel.clone() }));
        let result: Rc<Cell<Option<BootError>>> = Rc::new(Cell::new(None));
        {
            let kernel = kernel.clone();
            let result = result.clone();
            machine
                .spawn("swapper", Some(0), move |h| {
                    match Kernel::<M>::boot(h, cfg, kopts) {
                        Ok(k) => {
                            kernel.set(k);
                            0
                        }
                        Err(e) => {
                            result.set(Some(e));
                            1
                        }
                    }
                })
                .map_err(SystemError::Spawn)?;
        }
        match machine.run() {
            RunOutcome::Completed => {}
            other => return Err(SystemError::BootRun(other.to_string())),
        }
        if let Some(e) = result.take() {
            return Err(SystemError::Boot(e));
        }
        if kernel.get_unchecked().is_none() {
            return Err(SystemError::BootRun(
                "the boot task ended without a kernel".into(),
            ));
        }
        {
            // kswapd: background reclaim, woken when a zone falls under pages_low; it runs
            // with or without swap (clean page cache can always be dropped), as in Linux
            let k = kernel.clone();
            machine
                .spawn_daemon("kswapd", Some(0), move |h| match k.get(h) {
                    Some(k) => h.enter_kernel("kswapd", |cx| k.kswapd(cx)),
                    None => 1,
                })
                .map_err(SystemError::Spawn)?;
            match machine.run() {
                RunOutcome::Completed => {}
                other => return Err(SystemError::BootRun(other.to_string())),
            }
        }
        Ok(Self { machine, kernel })
    }

    /// The booted kernel.
    pub fn kernel(&self) -> &Kernel<M> {
        match self.kernel.get_unchecked() {
            Some(k) => k,
            None => unreachable!("System exists only with a booted kernel"),
        }
    }

    /// A shared handle to the kernel, for task bodies.
    pub fn kernel_cell(&self) -> KernelCell<M> {
        self.kernel.clone()
    }

    /// Start a process with an empty address space running `body` in user mode. If the
    /// kernel cannot create it (no memory), the task exits at once with code 127 and
    /// `on_fail` records the error.
    pub fn spawn_process(
        &mut self,
        name: impl Into<String>,
        cpu_hint: Option<u32>,
        body: impl FnOnce(&mut User<'_, M>) -> i32 + 'static,
    ) -> Result<TaskId, SystemError> {
        let kc = self.kernel.clone();
        self.machine
            .spawn(name, cpu_hint, move |h| run_new_process(h, kc, body))
            .map_err(SystemError::Spawn)
    }

    /// Run `f` as a kernel task (for reports between runs: it can take the kernel's locks)
    /// and return its result. Every other task must be finished or runnable to completion.
    pub fn inspect<R: 'static>(
        &mut self,
        f: impl FnOnce(&TaskHandle<M>, &Kernel<M>) -> R + 'static,
    ) -> Result<R, String> {
        let out: Rc<std::cell::RefCell<Option<R>>> = Rc::new(std::cell::RefCell::new(None));
        let o = out.clone();
        let kc = self.kernel.clone();
        self.machine
            .spawn("inspect", Some(0), move |h| {
                if let Some(k) = kc.get(h) {
                    *o.borrow_mut() = Some(f(h, k));
                }
                0
            })
            .map_err(|e| e.to_string())?;
        match self.machine.run() {
            RunOutcome::Completed => {}
            other => return Err(other.to_string()),
        }
        let r = out.borrow_mut().take();
        r.ok_or_else(|| "the inspect task did not run".to_string())
    }

    /// Run the machine until every task exits, or a bug, a deadlock or the time limit.
    pub fn run(&mut self) -> RunOutcome {
        self.machine.run()
    }
}

impl<M: PagingMode> Drop for System<M> {
    fn drop(&mut self) {
        // Tasks still asleep in the kernel will never run again; their coroutines are leaked
        // with whatever `KernelCell`s their frames hold, so the kernel is dropped here rather
        // than with the last of those.
        self.machine.abandon_tasks();
        // SAFETY: no task runs any more (abandoned above), and the kernel is reached only
        // through `KernelSlot::get` (bounded by a running task's handle) or `System::kernel`
        // (bounded by a borrow of this system, which `drop` ends).
        unsafe { self.kernel.clear() };
    }
}

/// The body of a task that creates its own process and runs `body` as its user program.
pub fn run_new_process<M: PagingMode>(
    h: &TaskHandle<M>,
    kc: KernelCell<M>,
    body: impl FnOnce(&mut User<'_, M>) -> i32,
) -> i32 {
    let Some(k) = kc.get(h) else { return 127 };
    let pid = h.id();
    if h.enter_kernel("execve", |cx| k.create_process(cx, pid))
        .is_err()
    {
        return 127;
    }
    activate(k, h, pid);
    let mut u = User {
        h,
        k,
        kc: kc.clone(),
        pid,
    };
    body(&mut u)
}

fn activate<M: PagingMode>(k: &Kernel<M>, h: &TaskHandle<M>, pid: TaskId) {
    h.preempt_disable();
    k.switch_mm(h, None, pid);
    h.preempt_enable();
}

/// Wait-queue keys for a process waiting for the process it started to be created: this plus
/// the caller's pid.
const SPAWN_KEY_BASE: u64 = 0x7370_776e_0000_0000;

/// Wait-queue keys for a forked child waiting for its parent to finish `do_fork`.
const FORK_KEY_BASE: u64 = 0x666f_726b_0000_0000;

/// The user-mode side of one process: its system calls and its memory accesses.
pub struct User<'a, M: PagingMode> {
    h: &'a TaskHandle<M>,
    k: &'a Kernel<M>,
    kc: KernelCell<M>,
    pid: TaskId,
}

/// Retries of one access before the fault path is declared stuck.
const MAX_FAULT_RETRIES: u32 = 16;

impl<'a, M: PagingMode> User<'a, M> {
    /// This process's id.
    pub fn pid(&self) -> TaskId {
        self.pid
    }
    /// The kernel (for inspection by workloads and tests).
    pub fn kernel(&self) -> &'a Kernel<M> {
        self.k
    }
    /// The task handle (the machine side).
    pub fn handle(&self) -> &'a TaskHandle<M> {
        self.h
    }

    #[inline]
    fn ret(&self) {
        self.h.return_to_user();
    }

    /// The signal that killed this process, if one did (the OOM killer, `kill`).
    pub fn killed(&self) -> Option<Signal> {
        self.k.pending_kill(self.pid)
    }

    fn check_killed(&self) -> Result<(), Errno> {
        match self.killed() {
            Some(_) => Err(Errno(4)), // EINTR: the caller should exit
            None => Ok(()),
        }
    }

    /// `mmap` of anonymous memory.
    pub fn mmap(&mut self, addr: u32, len: u64, prot: u32, flags: u32) -> Result<u32, Errno> {
        self.check_killed()?;
        let r = self.syscall("sys_mmap", |cx| {
            self.k.sys_mmap(cx, self.pid, addr, len, prot, flags, -1, 0)
        });
        self.ret();
        r
    }
    /// `munmap`.
    pub fn munmap(&mut self, addr: u32, len: u64) -> Result<(), Errno> {
        self.check_killed()?;
        let r = self.syscall("sys_munmap", |cx| {
            self.k.sys_munmap(cx, self.pid, addr, len)
        });
        self.ret();
        r
    }
    /// `mprotect`.
    pub fn mprotect(&mut self, addr: u32, len: u64, prot: u32) -> Result<(), Errno> {
        self.check_killed()?;
        let r = self.syscall("sys_mprotect", |cx| {
            self.k.sys_mprotect(cx, self.pid, addr, len, prot)
        });
        self.ret();
        r
    }
    /// `mremap`.
    pub fn mremap(
        &mut self,
        old: u32,
        old_len: u64,
        new_len: u64,
        flags: u32,
        new_addr: u32,
    ) -> Result<u32, Errno> {
        self.check_killed()?;
        let r = self.syscall("sys_mremap", |cx| {
            self.k
                .sys_mremap(cx, self.pid, old, old_len, new_len, flags, new_addr)
        });
        self.ret();
        r
    }
    /// `make_pages_present` over `[addr, addr + len)` (a `MAP_POPULATE` or `mlock` of an
    /// existing range): returns the pages made present.
    pub fn populate_range(&mut self, addr: u32, len: u64, write: bool) -> Result<u64, Errno> {
        self.check_killed()?;
        let r = self.syscall("populate_range", |cx| {
            self.k.populate_range(cx, self.pid, addr, len, write)
        });
        self.ret();
        r
    }
    /// `brk`.
    pub fn brk(&mut self, addr: u32) -> u32 {
        let r = self.syscall("sys_brk", |cx| self.k.sys_brk(cx, self.pid, addr));
        self.ret();
        r
    }
    /// `shmget`.
    pub fn shmget(&mut self, key: i32, size: u64, flags: u32) -> Result<u32, Errno> {
        self.check_killed()?;
        let r = self.syscall("sys_shmget", |cx| {
            self.k.syscall_stats_enter(cx.p(), "sys_shmget");
            self.k.sys_shmget(cx, key, size, flags)
        });
        self.ret();
        r
    }
    /// `shmat`.
    pub fn shmat(&mut self, shmid: u32, addr: u32, flags: u32) -> Result<u32, Errno> {
        self.check_killed()?;
        let r = self.syscall("sys_shmat", |cx| {
            self.k.syscall_stats_enter(cx.p(), "sys_shmat");
            self.k.sys_shmat(cx, self.pid, shmid, addr, flags)
        });
        self.ret();
        r
    }
    /// `shmdt`.
    pub fn shmdt(&mut self, addr: u32) -> Result<(), Errno> {
        self.check_killed()?;
        let r = self.syscall("sys_shmdt", |cx| {
            self.k.syscall_stats_enter(cx.p(), "sys_shmdt");
            self.k.sys_shmdt(cx, self.pid, addr)
        });
        self.ret();
        r
    }
    /// `shmctl(IPC_RMID)`.
    pub fn shm_rmid(&mut self, shmid: u32) -> Result<(), Errno> {
        self.check_killed()?;
        let r = self.syscall("sys_shmctl", |cx| {
            self.k.syscall_stats_enter(cx.p(), "sys_shmctl");
            self.k.sys_shmctl_rmid(cx, shmid)
        });
        self.ret();
        r
    }

    /// `swapoff` of the swap device: every swapped page comes back into memory.
    pub fn swapoff(&mut self) -> Result<(), Errno> {
        self.check_killed()?;
        let r = self.syscall("sys_swapoff", |cx| self.k.sys_swapoff(cx, self.pid));
        self.ret();
        r
    }

    /// `swapon` of the swap device configured at boot.
    pub fn swapon(&mut self) -> Result<(), Errno> {
        self.check_killed()?;
        let r = self.syscall("sys_swapon", |cx| self.k.sys_swapon(cx, self.pid));
        self.ret();
        r
    }

    /// `fork()`: a child process running `child` (it exits when `child` returns). With
    /// `share_vm` the child is a thread sharing this address space (`clone(CLONE_VM)`).
    pub fn fork(
        &mut self,
        name: impl Into<String>,
        share_vm: bool,
        child: impl FnOnce(&mut User<'_, M>) -> i32 + 'static,
    ) -> Result<TaskId, Errno> {
        self.check_killed()?;
        let state: Rc<Cell<u8>> = Rc::new(Cell::new(0)); // 0 pending, 1 ready, 2 failed
        let kc = self.kc.clone();
        let st = state.clone();
        let child_id = self
            .h
            .spawn(name.into(), None, move |h| {
                let me = h.id();
                let key = WaitQueueKey(FORK_KEY_BASE + me.0 as u64);
                loop {
                    let token = h.prepare_to_wait(key);
                    match st.get() {
                        0 => h.sleep(key, token, "fork: parent in do_fork", "ret_from_fork"),
                        1 => break,
                        _ => return 127,
                    }
                }
                let Some(k) = kc.get(h) else { return 127 };
                activate(k, h, me);
                let mut u = User {
                    h,
                    k,
                    kc: kc.clone(),
                    pid: me,
                };
                child(&mut u)
            })
            .map_err(|_| Errno::EAGAIN)?;
        let r = self.syscall("do_fork", |cx| {
            self.k.do_fork(cx, self.pid, child_id, share_vm)
        });
        state.set(if r.is_ok() { 1 } else { 2 });
        self.h
            .wake_up_all(WaitQueueKey(FORK_KEY_BASE + child_id.0 as u64));
        self.ret();
        r.map(|_| child_id)
    }

    /// `wait()`: the next child to exit and its exit code (ECHILD when none is left).
    pub fn wait(&mut self) -> Result<(TaskId, i32), Errno> {
        let r = self.syscall("sys_wait", |cx| self.k.sys_wait(cx, self.pid));
        self.ret();
        r
    }

    /// Start an unrelated new process (a fresh address space, like fork + exec) running
    /// `body`; it is not this process's child.
    pub fn spawn_process(
        &mut self,
        name: impl Into<String>,
        body: impl FnOnce(&mut User<'_, M>) -> i32 + 'static,
    ) -> Result<TaskId, Errno> {
        let kc = self.kc.clone();
        // like fork + exec, the call answers only once the kernel created the process (or
        // could not: ENOMEM), never leaving the caller waiting for a program that never runs
        let state: Rc<Cell<u8>> = Rc::new(Cell::new(0)); // 0 pending, 1 created, 2 failed
        let key = WaitQueueKey(SPAWN_KEY_BASE + self.pid.0 as u64);
        let st = state.clone();
        let r = self
            .h
            .spawn(name.into(), None, move |h| {
                let st2 = st.clone();
                let code = run_new_process(h, kc, move |u| {
                    st2.set(1);
                    u.handle().wake_up_all(key);
                    body(u)
                });
                if st.get() == 0 {
                    st.set(2);
                    h.wake_up_all(key);
                }
                code
            })
            .map_err(|_| Errno::EAGAIN);
        if r.is_ok() {
            loop {
                let token = self.h.prepare_to_wait(key);
                if state.get() != 0 {
                    break;
                }
                self.h.sleep(
                    key,
                    token,
                    "exec: kernel creating the process",
                    "spawn_process",
                );
            }
        }
        self.ret();
        match state.get() {
            2 => Err(Errno::ENOMEM),
            _ => r,
        }
    }

    /// `pause()`: sleep until killed.
    pub fn pause(&mut self) -> Signal {
        let s = self.syscall("sys_pause", |cx| self.k.sys_pause(cx, self.pid));
        self.ret();
        s
    }

    /// Kill another process (it dies at its next return to user).
    pub fn kill(&mut self, pid: TaskId, sig: Signal) {
        self.h
            .enter_kernel("kill_task", |cx| self.k.kill_task(cx, pid, sig));
        self.ret();
    }

    /// The page-fault path of the user accesses below, out of line so their TLB-hit loop
    /// stays small.
    #[inline(never)]
    fn fault(&mut self, pf: crate::mmu::PageFault, tries: &mut u32) -> Result<(), Signal> {
        *tries += 1;
        if *tries > MAX_FAULT_RETRIES {
            self.h.bug(highpte_kernel::BugReport {
                kind: "fault loop",
                message: format!(
                    "task {} faults {} times on {} (error code {:?}) without progress",
                    self.pid, *tries, pf.addr, pf.code
                ),
            });
        }
        let out = self.h.enter_kernel("do_page_fault", |cx| {
            self.k.do_page_fault(cx, self.pid, pf.addr, pf.code)
        });
        self.ret();
        match out {
            FaultOutcome::Handled => match self.killed() {
                Some(s) => Err(s),
                None => Ok(()),
            },
            FaultOutcome::Signal(s) => Err(s),
        }
    }

    /// A user access whose first try (inline in the accessors below, so that a TLB hit is a
    /// few instructions in the caller's loop) faulted: handle the fault and retry until the
    /// access succeeds or the task gets a signal. Out of line, so callers' loops stay small.
    #[inline(never)]
    fn user_op_faulted<T>(
        &mut self,
        mut pf: crate::mmu::PageFault,
        op: impl Fn(&TaskHandle<M>) -> Result<T, crate::mmu::PageFault>,
    ) -> Result<T, Signal> {
        let mut tries = 0;
        loop {
            self.fault(pf, &mut tries)?;
            match op(self.h) {
                Ok(v) => return Ok(v),
                Err(p) => pf = p,
            }
        }
    }

    /// Load 4 bytes from a user address (faulting pages in as needed).
    #[inline]
    pub fn load_u32(&mut self, va: u32) -> Result<u32, Signal> {
        match self.h.user_read_u32(VirtAddr::new(va)) {
            Ok(v) => Ok(v),
            Err(pf) => self.user_op_faulted(pf, |h| h.user_read_u32(VirtAddr::new(va))),
        }
    }
    /// Load 8 bytes from a user address.
    #[inline]
    pub fn load_u64(&mut self, va: u32) -> Result<u64, Signal> {
        match self.h.user_read_u64(VirtAddr::new(va)) {
            Ok(v) => Ok(v),
            Err(pf) => self.user_op_faulted(pf, |h| h.user_read_u64(VirtAddr::new(va))),
        }
    }
    /// Store 4 bytes at a user address.
    #[inline]
    pub fn store_u32(&mut self, va: u32, v: u32) -> Result<(), Signal> {
        match self.h.user_write_u32(VirtAddr::new(va), v) {
            Ok(v) => Ok(v),
            Err(pf) => self.user_op_faulted(pf, |h| h.user_write_u32(VirtAddr::new(va), v)),
        }
    }
    /// Store 8 bytes at a user address.
    #[inline]
    pub fn store_u64(&mut self, va: u32, v: u64) -> Result<(), Signal> {
        match self.h.user_write_u64(VirtAddr::new(va), v) {
            Ok(v) => Ok(v),
            Err(pf) => self.user_op_faulted(pf, |h| h.user_write_u64(VirtAddr::new(va), v)),
        }
    }
}
