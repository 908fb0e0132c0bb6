//! What the kernel needs from the machine under it.
//!
//! The kernel never names the simulated machine. Everything hardware-like — memory reached by
//! kernel virtual address through the current CPU's MMU, TLB control, IPIs, the current CPU,
//! spinning, sleeping, preemption points, the cycle clock — comes through [`Platform`].
//!
//! Methods take `&self`: a platform value is a handle for the running task, and any call may
//! let other simulated CPUs run (that is how SMP interleavings happen) or, at the places Linux
//! allows it, switch tasks. Kernel code must therefore never hold a host borrow of shared state
//! across a platform call unless a simulated lock protects that state.

use core::fmt;
use highpte_arch::{PhysAddr, VirtAddr};

/// A task (thread of control) known to the machine; the kernel uses it as the pid.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct TaskId(pub u32);

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A set of CPUs (up to 32), as in `cpu_vm_mask`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct CpuMask(pub u32);

impl CpuMask {
    /// The empty set.
    pub const EMPTY: CpuMask = CpuMask(0);
    /// A set with one CPU.
    pub const fn of(cpu: u32) -> CpuMask {
        CpuMask(1 << cpu)
    }
    /// True if `cpu` is in the set.
    pub const fn contains(self, cpu: u32) -> bool {
        self.0 & (1 << cpu) != 0
    }
    /// Add `cpu`.
    pub fn insert(&mut self, cpu: u32) {
        self.0 |= 1 << cpu;
    }
    /// Remove `cpu`.
    pub fn remove(&mut self, cpu: u32) {
        self.0 &= !(1 << cpu);
    }
    /// True if empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// The set without `cpu`.
    pub const fn without(self, cpu: u32) -> CpuMask {
        CpuMask(self.0 & !(1 << cpu))
    }
    /// Iterate the CPUs in ascending order.
    pub fn iter(self) -> impl Iterator<Item = u32> {
        (0..32).filter(move |c| self.contains(*c))
    }
}

/// The key of a wait queue: any value unique to the waited-for object.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct WaitQueueKey(pub u64);

/// Why a task is spinning or sleeping (for deadlock reports).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum WaitOn {
    /// Spinning on a spinlock.
    SpinLock {
        /// The lock's name.
        name: &'static str,
        /// The lock's identity.
        id: u64,
        /// The task holding it, if known.
        holder: Option<TaskId>,
    },
    /// Sleeping on a wait queue.
    Queue {
        /// The queue.
        key: WaitQueueKey,
        /// What the queue is for ("pkmap free entry", "mmap_sem" ...).
        what: &'static str,
    },
}

/// Events the kernel charges to the cost model, beyond what the machine charges itself
/// (memory accesses, TLB work and IPIs are charged by the machine).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum KernelEvent {
    /// A system call entered and returned.
    Syscall,
    /// A page fault entered and returned.
    Fault,
    /// Writing a kmap_atomic slot's pte.
    KmapAtomicPteWrite,
    /// An atomic read-modify-write (locked instruction).
    AtomicOp,
    /// A piece of kernel work costed in cycles directly.
    Cycles(u64),
}

/// A simulated block device.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, PartialOrd, Ord)]
pub enum BlockDev {
    /// Swap device `n` (the swap entry's type).
    Swap(u8),
    /// The disk holding the simulated file system.
    Disk,
}

/// A kernel bug detected at run time (an oops, a BUG(), a debug-helper report).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BugReport {
    /// Short kind: "kmap_atomic", "sleeping in atomic", "kernel page fault", ...
    pub kind: &'static str,
    /// The full human-readable report naming the culprit.
    pub message: alloc::string::String,
}

/// What a TLB shootdown IPI asks the other CPUs to forget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlbFlush {
    /// `invlpg` each of `count` pages from `start`.
    Pages {
        /// First page.
        start: VirtAddr,
        /// Number of pages.
        count: u32,
    },
    /// Every non-global entry (a CR3 reload).
    NonGlobal,
}

/// The machine the kernel runs on, seen from the running task.
///
/// # Memory
/// `read_*`/`write_*` take kernel virtual addresses and go through the current CPU's TLB and
/// page tables at CPL 0. A kernel access that faults is an oops: the machine stops the
/// simulation with a [`BugReport`] naming the address, so these calls never return an error.
///
/// # Scheduling
/// Any call may let other CPUs run. Only [`Platform::preempt_enable`] (when the count drops to
/// zero), [`Platform::cond_resched`], [`Platform::schedule`] and [`Platform::sleep`] may switch
/// this CPU to another task, and only where the configuration allows it.
pub trait Platform {
    /// The CPU this task runs on now (it can change whenever the task may be preempted).
    fn cpu(&self) -> u32;
    /// Number of CPUs.
    fn nr_cpus(&self) -> u32;
    /// The running task.
    fn task(&self) -> TaskId;
    /// True if the kernel was built with `CONFIG_PREEMPT`.
    fn preempt_config(&self) -> bool;

    /// Read 4 bytes at a kernel virtual address.
    fn read_u32(&self, va: VirtAddr) -> u32;
    /// Read 8 bytes at a kernel virtual address.
    fn read_u64(&self, va: VirtAddr) -> u64;
    /// Write 4 bytes at a kernel virtual address.
    fn write_u32(&self, va: VirtAddr, v: u32);
    /// Write 8 bytes at a kernel virtual address.
    fn write_u64(&self, va: VirtAddr, v: u64);
    /// Read `buf.len()` bytes at a kernel virtual address, all inside one 4 KB page: one
    /// translation (the TLB would hit for every word after the first), one access per 8-byte
    /// word charged. What a walker uses to scan a mapped pte page.
    fn read_block(&self, va: VirtAddr, buf: &mut [u8]);
    /// Write `buf` at a kernel virtual address, all inside one 4 KB page (see
    /// [`Platform::read_block`]).
    fn write_block(&self, va: VirtAddr, buf: &[u8]);
    /// Block I/O by DMA between the physical page `pfn` and page-sized block `block` of `dev`
    /// (`write`: page to device). Needs no kernel mapping of the page, like a bio. The caller
    /// must be allowed to sleep: the machine charges the device's latency and may run others.
    /// A block never written reads as zeros.
    fn block_io(&self, dev: BlockDev, block: u64, pfn: highpte_arch::Pfn, write: bool);
    /// Forget the contents of a block (a freed swap slot, a truncated file block).
    fn block_discard(&self, dev: BlockDev, block: u64);
    /// `clear_page`: zero the 4 KB page at a kernel virtual address.
    fn clear_page(&self, va: VirtAddr);
    /// `copy_page`: copy 4 KB between kernel virtual addresses.
    fn copy_page(&self, dst: VirtAddr, src: VirtAddr);

    /// Boot only, before paging is on: write 8 bytes of physical memory.
    fn boot_phys_write_u64(&self, pa: PhysAddr, v: u64);
    /// Boot only, before paging is on: write 4 bytes of physical memory.
    fn boot_phys_write_u32(&self, pa: PhysAddr, v: u32);
    /// Boot only: zero a physical page.
    fn boot_phys_clear_page(&self, pa: PhysAddr);
    /// Turn paging on for every CPU: CR4.PAE per `pae`, PSE and PGE on, CR0.WP on, CR3 =
    /// `cr3` (swapper_pg_dir).
    fn enable_paging(&self, pae: bool, cr3: PhysAddr);

    /// Load CR3 on this CPU (flushes its non-global TLB entries).
    fn load_cr3(&self, cr3: PhysAddr);
    /// `invlpg` on this CPU only.
    fn invlpg(&self, va: VirtAddr);
    /// Flush this CPU's non-global TLB entries (`__flush_tlb`).
    fn flush_tlb_local(&self);
    /// Flush every TLB entry, global ones too, on every CPU (`flush_tlb_all`: IPIs to the
    /// others). Waits until all CPUs have flushed.
    fn flush_tlb_all(&self);
    /// Execute `flush` on the CPUs in `cpus` other than this one, by IPI, and wait for them
    /// (`flush_tlb_others`). What to flush is the kernel's decision; this only carries it out.
    fn flush_tlb_others(&self, cpus: CpuMask, flush: TlbFlush);

    /// `preempt_count()` of the running task.
    fn preempt_count(&self) -> u32;
    /// `preempt_disable()`.
    fn preempt_disable(&self);
    /// `preempt_enable()`: may preempt when the count reaches zero and a reschedule is due.
    fn preempt_enable(&self);
    /// `preempt_enable_no_resched()`.
    fn preempt_enable_no_resched(&self);
    /// One iteration of a spin loop waiting for `on` (charges the spin and lets others run;
    /// the machine uses it to detect CPUs spinning without progress).
    fn cpu_relax(&self, on: WaitOn);
    /// Tell the machine a lock was taken (true) or released (false), for deadlock reports.
    fn note_lock(&self, name: &'static str, id: u64, acquired: bool);
    /// `prepare_to_wait`: returns the wake-up count of `key` now, to pass to
    /// [`Platform::sleep`]. Taking the token *before* dropping a lock and re-checking the
    /// condition is what prevents lost wake-ups: any `wake_up_all(key)` after this call makes
    /// the later `sleep` return at once.
    fn prepare_to_wait(&self, key: WaitQueueKey) -> u64;
    /// Sleep until `wake_up_all(key)` happens after the `prepare_to_wait` that returned
    /// `token` (returns at once if it already has). The caller must hold no spinlock and
    /// have preempt_count 0 (checked: sleeping in atomic context is a bug report).
    fn sleep(&self, key: WaitQueueKey, token: u64, what: &'static str, place: &'static str);
    /// Wake every task sleeping on `key`; returns how many were woken.
    fn wake_up_all(&self, key: WaitQueueKey) -> u32;
    /// `might_sleep()`: report a bug if called in atomic context.
    fn might_sleep(&self, place: &'static str);
    /// `cond_resched()`: a voluntary schedule point.
    fn cond_resched(&self);
    /// Give up the CPU (`schedule()` with the task still runnable).
    fn schedule(&self);
    /// Record where the task is in the kernel (a "where" label shown in deadlock reports).
    fn set_where(&self, place: &'static str);

    /// Charge a kernel event to this CPU's clock.
    fn charge(&self, ev: KernelEvent);
    /// This CPU's clock, in cycles.
    fn now(&self) -> u64;
    /// A deterministic pseudo-random number from the run's seed (for kernel choices that
    /// Linux makes from timing, e.g. nothing yet; and for fault injection).
    fn random(&self) -> u64;
    /// Report a kernel bug and stop the simulation. Never returns.
    fn bug(&self, report: BugReport) -> !;
    /// Append a line to the kernel log (dmesg).
    fn log(&self, line: fmt::Arguments<'_>);
}
