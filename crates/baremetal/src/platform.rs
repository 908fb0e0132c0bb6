//! The kernel's `Platform` on the hardware: one CPU, no preemption, the real MMU.
//!
//! - Kernel memory: plain volatile loads and stores at kernel virtual addresses, through the
//!   kernel's own direct map and its kmap / fixmap ptes (a stale or missing mapping is a real
//!   page fault, reported as an oops by the trap handler).
//! - TLB: `mov cr3`, `invlpg`, CR4.PGE toggled for global entries; with one CPU there is no
//!   one to send a shootdown to.
//! - Scheduling: one task at a time, interrupts off. The scenarios run each process's program
//!   to a point where it needs nothing from another, so a sleep whose wake-up has not come is
//!   a bug here (reported, not waited for).
//! - Block devices: none (the scenarios use no swap and no files).
//! - Diagnostics: the clock runs by itself (`rdtsc`), the kernel log goes to the serial port.

use crate::cpu;
use alloc::collections::BTreeMap;
use alloc::string::String;
use core::cell::{Cell, RefCell};
use core::fmt;
use highpte_arch::{Pfn, PhysAddr, VirtAddr};
use highpte_kernel::platform::{
    BlockDev, BlockDevice, BootMemory, BugReport, CpuInfo, CpuMask, Diagnostics, KernelEvent,
    KernelMemory, Sched, TaskId, Tlb, TlbFlush, WaitOn, WaitQueueKey,
};

/// The running machine, as the kernel sees it.
pub struct BareMetal {
    task: Cell<u32>,
    preempt: Cell<u32>,
    wakeups: RefCell<BTreeMap<WaitQueueKey, u64>>,
    random: Cell<u64>,
    place: Cell<&'static str>,
    /// The kernel log since boot (what the kernel logged through `Diagnostics::log`).
    pub log: RefCell<alloc::vec::Vec<String>>,
    /// A bug the scenario expects: reported bugs of this kind end the run as a pass.
    pub expect_bug: Cell<Option<&'static str>>,
}

// SAFETY: one CPU, interrupts off: only one thread of control ever touches it.
unsafe impl Sync for BareMetal {}

/// The one platform value.
pub static PLATFORM: BareMetal = BareMetal {
    task: Cell::new(0),
    preempt: Cell::new(0),
    wakeups: RefCell::new(BTreeMap::new()),
    random: Cell::new(0x9e37_79b9_7f4a_7c15),
    place: Cell::new("boot"),
    log: RefCell::new(alloc::vec::Vec::new()),
    expect_bug: Cell::new(None),
};

impl BareMetal {
    /// Make `pid` the running task.
    pub fn set_task(&self, pid: TaskId) {
        self.task.set(pid.0);
    }
    /// Seed the random stream.
    pub fn seed(&self, seed: u64) {
        self.random.set(seed | 1);
    }
    /// Where the running task last said it was.
    pub fn place(&self) -> &'static str {
        self.place.get()
    }
}

const PAGE_OFFSET: u64 = 0xC000_0000;

impl CpuInfo for BareMetal {
    fn cpu(&self) -> u32 {
        0
    }
    fn nr_cpus(&self) -> u32 {
        1
    }
    fn task(&self) -> TaskId {
        TaskId(self.task.get())
    }
    fn preempt_config(&self) -> bool {
        false
    }
    fn now(&self) -> u64 {
        cpu::rdtsc()
    }
    fn random(&self) -> u64 {
        // xorshift64*
        let mut x = self.random.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.random.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

impl KernelMemory for BareMetal {
    unsafe fn read_u32(&self, va: VirtAddr) -> u32 {
        // SAFETY: the caller promises a live kernel mapping (KernelMemory's contract).
        unsafe { core::ptr::read_volatile(va.as_u32() as *const u32) }
    }
    unsafe fn read_u64(&self, va: VirtAddr) -> u64 {
        // SAFETY: as read_u32; one CPU, so two 32-bit halves are not torn by anyone.
        unsafe { core::ptr::read_volatile(va.as_u32() as *const u64) }
    }
    unsafe fn write_u32(&self, va: VirtAddr, v: u32) {
        // SAFETY: as read_u32.
        unsafe { core::ptr::write_volatile(va.as_u32() as *mut u32, v) }
    }
    unsafe fn write_u64(&self, va: VirtAddr, v: u64) {
        // SAFETY: as read_u32. The kernel writes a PAE entry's halves in the order it needs
        // through write_u32 where the order matters.
        unsafe { core::ptr::write_volatile(va.as_u32() as *mut u64, v) }
    }
    unsafe fn read_block(&self, va: VirtAddr, buf: &mut [u8]) {
        // SAFETY: as read_u32, for the whole block (inside one page).
        unsafe {
            core::ptr::copy_nonoverlapping(va.as_u32() as *const u8, buf.as_mut_ptr(), buf.len())
        }
    }
    unsafe fn write_block(&self, va: VirtAddr, buf: &[u8]) {
        // SAFETY: as read_u32, for the whole block.
        unsafe { core::ptr::copy_nonoverlapping(buf.as_ptr(), va.as_u32() as *mut u8, buf.len()) }
    }
    unsafe fn clear_page(&self, va: VirtAddr) {
        // SAFETY: as read_u32, for the page.
        unsafe { core::ptr::write_bytes(va.as_u32() as *mut u8, 0, 4096) }
    }
    unsafe fn copy_page(&self, dst: VirtAddr, src: VirtAddr) {
        // SAFETY: as read_u32, for both pages.
        unsafe {
            core::ptr::copy_nonoverlapping(src.as_u32() as *const u8, dst.as_u32() as *mut u8, 4096)
        }
    }
}

impl BootMemory for BareMetal {
    unsafe fn boot_phys_write_u64(&self, pa: PhysAddr, v: u64) {
        // SAFETY: boot RAM below 1 GB, which the temporary tables map at PAGE_OFFSET.
        unsafe { core::ptr::write_volatile((PAGE_OFFSET + pa.as_u64()) as u32 as *mut u64, v) }
    }
    unsafe fn boot_phys_write_u32(&self, pa: PhysAddr, v: u32) {
        // SAFETY: as boot_phys_write_u64.
        unsafe { core::ptr::write_volatile((PAGE_OFFSET + pa.as_u64()) as u32 as *mut u32, v) }
    }
    unsafe fn boot_phys_clear_page(&self, pa: PhysAddr) {
        // SAFETY: as boot_phys_write_u64.
        unsafe { core::ptr::write_bytes((PAGE_OFFSET + pa.as_u64()) as u32 as *mut u8, 0, 4096) }
    }
    unsafe fn enable_paging(&self, pae: bool, cr3: PhysAddr) {
        // SAFETY: forwarded (once, at boot, complete kernel tables).
        unsafe { crate::boot::enable_paging(pae, cr3.as_u64() as u32) }
    }
    fn boot_mem_map_reserved(&self, start: PhysAddr, bytes: u64) {
        let va = (PAGE_OFFSET + start.as_u64()) as u32;
        // SAFETY: boot reserved the range for mem_map and nothing else uses it; it lies in
        // low memory, mapped by the temporary tables and then by the kernel's direct map.
        unsafe { crate::heap::add_arena(va, bytes as u32) };
    }
}

impl Tlb for BareMetal {
    unsafe fn load_cr3(&self, cr3: PhysAddr) {
        // SAFETY: the caller promises a live page directory of this mode.
        unsafe { core::arch::asm!("mov cr3, {}", in(reg) cr3.as_u64() as u32, options(nostack)) };
    }
    fn invlpg(&self, va: VirtAddr) {
        // SAFETY: invalidating a TLB entry is always allowed.
        unsafe { core::arch::asm!("invlpg [{}]", in(reg) va.as_u32(), options(nostack)) };
    }
    fn flush_tlb_local(&self) {
        // SAFETY: reloading CR3 with its own value flushes the non-global entries.
        unsafe { core::arch::asm!("mov {0}, cr3", "mov cr3, {0}", out(reg) _, options(nostack)) };
    }
    fn flush_tlb_all(&self) {
        // SAFETY: toggling CR4.PGE flushes every entry, global ones too.
        unsafe {
            core::arch::asm!(
                "mov {0}, cr4",
                "mov {1}, {0}",
                "and {1}, {pge_off}",
                "mov cr4, {1}",
                "mov cr4, {0}",
                out(reg) _,
                out(reg) _,
                pge_off = const !crate::boot::CR4_PGE,
                options(nostack)
            )
        };
    }
    fn flush_tlb_others(&self, cpus: CpuMask, flush: TlbFlush) {
        if !cpus.without(0).is_empty() {
            self.bug(BugReport {
                kind: "tlb shootdown",
                message: alloc::format!(
                    "flush_tlb_others({cpus:?}, {flush:?}) on a machine with one CPU"
                ),
            });
        }
    }
}

impl BlockDevice for BareMetal {
    unsafe fn block_io(&self, dev: BlockDev, block: u64, pfn: Pfn, write: bool) {
        self.bug(BugReport {
            kind: "block device",
            message: alloc::format!(
                "block I/O ({} block {block} of {dev:?}, page {:#x}) on bare metal, which has no swap or disk: run the scenario without swap and files",
                if write { "write" } else { "read" },
                pfn.0
            ),
        });
    }
    fn block_discard(&self, _dev: BlockDev, _block: u64) {}
}

impl Sched for BareMetal {
    fn preempt_count(&self) -> u32 {
        self.preempt.get()
    }
    fn preempt_disable(&self) {
        self.preempt.set(self.preempt.get() + 1);
    }
    fn preempt_enable(&self) {
        self.preempt_enable_no_resched();
    }
    fn preempt_enable_no_resched(&self) {
        let c = self.preempt.get();
        if c == 0 {
            self.bug(BugReport {
                kind: "preempt count",
                message: alloc::format!("preempt_enable with preempt_count 0 at {}", self.place()),
            });
        }
        self.preempt.set(c - 1);
    }
    fn cpu_relax(&self, on: WaitOn) {
        self.bug(BugReport {
            kind: "deadlock",
            message: alloc::format!(
                "task {} spins on {on:?} at {}, and with one CPU nothing can release it",
                self.task.get(),
                self.place()
            ),
        });
    }
    fn note_lock(&self, _name: &'static str, _id: u64, _acquired: bool) {}
    fn prepare_to_wait(&self, key: WaitQueueKey) -> u64 {
        self.wakeups.borrow().get(&key).copied().unwrap_or(0)
    }
    fn sleep(&self, key: WaitQueueKey, token: u64, what: &'static str, place: &'static str) {
        self.might_sleep(place);
        if self.prepare_to_wait(key) != token {
            return;
        }
        self.bug(BugReport {
            kind: "sleep",
            message: alloc::format!(
                "task {} sleeps on {what} ({key:?}) at {place}: the bare-metal scenarios run one task at a time, so nothing would wake it",
                self.task.get()
            ),
        });
    }
    fn wake_up_all(&self, key: WaitQueueKey) -> u32 {
        *self.wakeups.borrow_mut().entry(key).or_insert(0) += 1;
        0
    }
    fn might_sleep(&self, place: &'static str) {
        if self.preempt.get() != 0 {
            self.bug(BugReport {
                kind: "sleeping in atomic",
                message: alloc::format!(
                    "BUG: sleeping function called from invalid context at {place}: preempt_count {}",
                    self.preempt.get()
                ),
            });
        }
    }
    fn cond_resched(&self) {}
    fn schedule(&self) {}
    fn set_where(&self, place: &'static str) {
        self.place.set(place);
    }
}

impl Diagnostics for BareMetal {
    fn charge(&self, _ev: KernelEvent) {}
    fn bug(&self, report: BugReport) -> ! {
        crate::report_bug(&report)
    }
    fn log(&self, line: fmt::Arguments<'_>) {
        let s = alloc::format!("{line}");
        crate::println!("[kernel] {s}");
        self.log.borrow_mut().push(s);
    }
}
