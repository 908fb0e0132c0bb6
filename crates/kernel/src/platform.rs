//! What the kernel needs from the machine under it.
//!
//! The kernel never names the simulated machine. Everything hardware-like — memory reached by
//! kernel virtual address through the current CPU's MMU, TLB control, IPIs, the current CPU,
//! spinning, sleeping, preemption points, the cycle clock — comes through [`Platform`], the
//! sum of a few small traits, each implementable by a real x86 as well as by the simulator.
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

/// The machine the kernel runs on, seen from the running task: every one of the small traits
/// below. Kernel code is generic over `P: Platform`; a machine implements the parts and gets
/// this one for free.
///
/// The parts, and what a real i686 would do for each:
/// - [`CpuInfo`]: which CPU and task, the clock, a seeded random stream (`smp_processor_id`,
///   `current`, `rdtsc`);
/// - [`KernelMemory`]: loads and stores at kernel virtual addresses through this CPU's MMU
///   (plain `mov`s; `unsafe`: the caller promises the address is mapped and the memory is its
///   to touch);
/// - [`BootMemory`]: physical writes before paging is on, and turning paging on (`unsafe`);
/// - [`Tlb`]: CR3 loads, `invlpg`, flushes and shootdown IPIs;
/// - [`BlockDevice`]: page-sized DMA to and from swap and disk (`unsafe`: it writes a physical
///   page behind the MMU's back);
/// - [`Sched`]: preemption, spinning, wait queues, schedule points;
/// - [`Diagnostics`]: cost charging, the kernel log, bug reports.
///
/// # Scheduling
/// Any call may let other CPUs run. Only [`Sched::preempt_enable`] (when the count drops to
/// zero), [`Sched::cond_resched`], [`Sched::schedule`] and [`Sched::sleep`] may switch this
/// CPU to another task, and only where the configuration allows it.
pub trait Platform:
    CpuInfo + KernelMemory + BootMemory + Tlb + BlockDevice + Sched + Diagnostics
{
}

impl<T> Platform for T where
    T: CpuInfo + KernelMemory + BootMemory + Tlb + BlockDevice + Sched + Diagnostics
{
}

/// Which CPU and task is running, and the machine's clock and random stream.
pub trait CpuInfo {
    /// The CPU this task runs on now (it can change whenever the task may be preempted).
    fn cpu(&self) -> u32;
    /// Number of CPUs.
    fn nr_cpus(&self) -> u32;
    /// The running task.
    fn task(&self) -> TaskId;
    /// True if the kernel was built with `CONFIG_PREEMPT`.
    fn preempt_config(&self) -> bool;
    /// This CPU's clock, in cycles.
    fn now(&self) -> u64;
    /// A deterministic pseudo-random number from the run's seed (for fault injection and any
    /// kernel choice Linux makes from timing).
    fn random(&self) -> u64;
}

/// Loads and stores at kernel virtual addresses, through the current CPU's TLB and page
/// tables at CPL 0.
///
/// # Safety (for every method)
/// The caller promises that each byte accessed lies in a kernel mapping that is live for the
/// whole call (the direct map, or a kmap / kmap_atomic / fixmap slot the caller holds), and
/// that it has the right to the memory: it owns the page, or holds the lock that protects
/// what it reads or writes. On real hardware a broken promise is a wild access; the simulator
/// turns a faulting access into an oops ([`BugReport`]) and stops, so these methods never
/// return an error.
pub trait KernelMemory {
    /// Read 4 bytes at a kernel virtual address.
    ///
    /// # Safety
    /// See [`KernelMemory`].
    unsafe fn read_u32(&self, va: VirtAddr) -> u32;
    /// Read 8 bytes at a kernel virtual address.
    ///
    /// # Safety
    /// See [`KernelMemory`].
    unsafe fn read_u64(&self, va: VirtAddr) -> u64;
    /// Write 4 bytes at a kernel virtual address.
    ///
    /// # Safety
    /// See [`KernelMemory`].
    unsafe fn write_u32(&self, va: VirtAddr, v: u32);
    /// Write 8 bytes at a kernel virtual address.
    ///
    /// # Safety
    /// See [`KernelMemory`].
    unsafe fn write_u64(&self, va: VirtAddr, v: u64);
    /// Read `buf.len()` bytes at a kernel virtual address, all inside one 4 KB page: one
    /// translation (the TLB would hit for every word after the first), one access per 8-byte
    /// word charged. What a walker uses to scan a mapped pte page.
    ///
    /// # Safety
    /// See [`KernelMemory`].
    unsafe fn read_block(&self, va: VirtAddr, buf: &mut [u8]);
    /// Write `buf` at a kernel virtual address, all inside one 4 KB page (see
    /// [`KernelMemory::read_block`]).
    ///
    /// # Safety
    /// See [`KernelMemory`].
    unsafe fn write_block(&self, va: VirtAddr, buf: &[u8]);
    /// `clear_page`: zero the 4 KB page at a kernel virtual address.
    ///
    /// # Safety
    /// See [`KernelMemory`].
    unsafe fn clear_page(&self, va: VirtAddr);
    /// `copy_page`: copy 4 KB between kernel virtual addresses.
    ///
    /// # Safety
    /// See [`KernelMemory`].
    unsafe fn copy_page(&self, dst: VirtAddr, src: VirtAddr);
}

/// What only boot does: physical memory before paging is on, and turning paging on.
pub trait BootMemory {
    /// Write 8 bytes of physical memory, before paging is on.
    ///
    /// # Safety
    /// Boot only, on the boot CPU, before [`BootMemory::enable_paging`]; `pa` is RAM the boot
    /// allocator handed out.
    unsafe fn boot_phys_write_u64(&self, pa: PhysAddr, v: u64);
    /// Write 4 bytes of physical memory, before paging is on.
    ///
    /// # Safety
    /// As [`BootMemory::boot_phys_write_u64`].
    unsafe fn boot_phys_write_u32(&self, pa: PhysAddr, v: u32);
    /// Zero a physical page, before paging is on.
    ///
    /// # Safety
    /// As [`BootMemory::boot_phys_write_u64`].
    unsafe fn boot_phys_clear_page(&self, pa: PhysAddr);
    /// Turn paging on for every CPU: CR4.PAE per `pae`, PSE and PGE on, CR0.WP on, CR3 =
    /// `cr3` (swapper_pg_dir).
    ///
    /// # Safety
    /// Once, at boot; `cr3` holds complete kernel page tables of the mode `pae` names, mapping
    /// the code and data the kernel runs from.
    unsafe fn enable_paging(&self, pae: bool, cr3: PhysAddr);
    /// Boot has set aside `[start, start + bytes)` of low memory for the page descriptors
    /// (mem_map); called before [`BootMemory::enable_paging`]. The simulator keeps the
    /// descriptors in host memory and ignores this. A real machine running the kernel keeps
    /// the kernel's own data (its heap, the descriptors among it) there, so that the low
    /// memory the kernel charges for mem_map is the memory it uses.
    fn boot_mem_map_reserved(&self, start: PhysAddr, bytes: u64) {
        let _ = (start, bytes);
    }
}

/// The TLB and the page-table base: what the kernel decides, the machine executes.
pub trait Tlb {
    /// Load CR3 on this CPU (flushes its non-global TLB entries).
    ///
    /// # Safety
    /// `cr3` is a live page directory (PAE: PDPT) of this paging mode whose kernel part is the
    /// kernel's, and stays live while any CPU uses it.
    unsafe fn load_cr3(&self, cr3: PhysAddr);
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
}

/// Page-sized block devices: swap areas and the disk under the file system.
pub trait BlockDevice {
    /// Block I/O by DMA between the physical page `pfn` and page-sized block `block` of `dev`
    /// (`write`: page to device). Needs no kernel mapping of the page, like a bio. The caller
    /// must be allowed to sleep: the device's latency passes and others may run. A block
    /// never written reads as zeros.
    ///
    /// # Safety
    /// The caller owns page `pfn` for the whole transfer (it is locked, or not yet visible to
    /// anyone else); a read overwrites all of it behind the MMU.
    unsafe fn block_io(&self, dev: BlockDev, block: u64, pfn: highpte_arch::Pfn, write: bool);
    /// Forget the contents of a block (a freed swap slot, a truncated file block).
    fn block_discard(&self, dev: BlockDev, block: u64);
}

/// Preemption, spinning, sleeping and waking.
pub trait Sched {
    /// `preempt_count()` of the running task.
    fn preempt_count(&self) -> u32;
    /// `preempt_disable()`.
    fn preempt_disable(&self);
    /// `preempt_enable()`: may preempt when the count reaches zero and a reschedule is due.
    fn preempt_enable(&self);
    /// `preempt_enable_no_resched()`.
    fn preempt_enable_no_resched(&self);
    /// One iteration of a spin loop waiting for `on` (`cpu_relax`; lets others run, and lets
    /// the machine see a CPU spinning without progress).
    fn cpu_relax(&self, on: WaitOn);
    /// Tell the machine a lock was taken (true) or released (false), for deadlock reports.
    fn note_lock(&self, name: &'static str, id: u64, acquired: bool);
    /// `prepare_to_wait`: returns the wake-up count of `key` now, to pass to
    /// [`Sched::sleep`]. Taking the token *before* dropping a lock and re-checking the
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
}

/// A kernel trace point: something a timeline of the run shows (`--timeline`, `--ftrace`).
///
/// Plain `Copy` data: building one allocates nothing. Kernel code builds it only after
/// [`Diagnostics::tracing`] said yes, so a run without a timeline pays one predictable branch
/// per trace point and nothing else.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TracePoint {
    /// A system call entered (and was counted in `syscalls`); it ends when the task leaves the
    /// kernel entry it came through.
    SyscallEnter {
        /// The system call (`sys_mmap`, ...).
        name: &'static str,
    },
    /// A page fault entered (and was counted in `faults`).
    FaultEnter {
        /// The faulting address.
        addr: VirtAddr,
        /// A write access.
        write: bool,
    },
    /// The page fault of the last [`TracePoint::FaultEnter`] of this task returned.
    FaultExit {
        /// The signal it delivers, if any (`None`: handled, retry the access).
        signal: Option<crate::errno::Signal>,
    },
    /// `kmap_atomic` mapped a high page into this CPU's slot `ty` (counted in `kmap_atomic`).
    KmapAtomic {
        /// The slot type.
        ty: highpte_arch::KmType,
        /// The page mapped.
        pfn: highpte_arch::Pfn,
    },
    /// `kunmap_atomic` released this CPU's slot `ty` (a high page's mapping).
    KunmapAtomic {
        /// The slot type.
        ty: highpte_arch::KmType,
    },
    /// A persistent `kmap` took a use of pkmap entry `nr` (counted in `kmap`).
    Kmap {
        /// The pkmap entry.
        nr: u32,
        /// The page mapped.
        pfn: highpte_arch::Pfn,
        /// Entries in the pool (`LAST_PKMAP`).
        pool: u32,
    },
    /// `kunmap` dropped a use of pkmap entry `nr` (counted in `kunmap`).
    Kunmap {
        /// The pkmap entry.
        nr: u32,
        /// The page.
        pfn: highpte_arch::Pfn,
    },
}

/// Cost accounting, the kernel log, bug reports and trace points.
pub trait Diagnostics {
    /// Charge a kernel event to this CPU's clock (a real machine's clock runs by itself: a
    /// no-op there).
    fn charge(&self, ev: KernelEvent);
    /// Report a kernel bug and stop. Never returns.
    fn bug(&self, report: BugReport) -> !;
    /// Append a line to the kernel log (dmesg).
    fn log(&self, line: fmt::Arguments<'_>);
    /// True while something records a timeline of the run: only then does kernel code build
    /// a [`TracePoint`] and call [`Diagnostics::trace`]. Must be cheap (a flag test).
    #[inline]
    fn tracing(&self) -> bool {
        false
    }
    /// Record a trace point. Must not charge cycles, take locks or change anything the run
    /// depends on: a timeline never changes the run it shows.
    #[inline]
    fn trace(&self, point: TracePoint) {
        let _ = point;
    }
}

/// Every part of [`Platform`] in scope at once, for code that calls platform methods on a
/// concrete machine type (`use highpte_kernel::platform::prelude::*;`). Code generic over
/// `P: Platform` needs none of it.
pub mod prelude {
    pub use super::{
        BlockDevice as _, BootMemory as _, CpuInfo as _, Diagnostics as _, KernelMemory as _,
        Platform, Sched as _, Tlb as _,
    };
}
