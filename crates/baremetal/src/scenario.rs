//! The built-in scenarios: boot, a small sga, fork with copy on write, munmap in the middle,
//! and the debug helpers catching a stale kmap_atomic address.
//!
//! Each process's program runs at CPL 0 with CR3 = its page directory and CR0.WP set: its
//! loads and stores go through the real MMU, its faults are real #PFs with the hardware's
//! error code, and write protection holds for copy on write. (Ring 3 is the next step; the
//! kernel is told the access was a user one by the U/S bit the program would have had.)
//!
//! Output: readable lines, and `@meminfo {json}`, `@counters {json}`, `@check …` and
//! `@result pass|fail` lines that `cargo xtask qemu` turns into its report.

use crate::cpu::{self, UserFault};
use crate::multiboot::Info;
use crate::platform::PLATFORM;
use crate::{print, println};
use alloc::format;
use alloc::string::String;
use core::cell::Cell;
use highpte_arch::{Config, KernelProfile, MemoryVariant, Pae, PageFaultErrorCode, PagingMode};
use highpte_arch::{TwoLevel, VirtAddr};
use highpte_kernel::mm::shm::IPC_CREAT;
use highpte_kernel::mm::{MAP_ANONYMOUS, MAP_PRIVATE, PROT_EXEC, PROT_READ, PROT_WRITE};
use highpte_kernel::platform::prelude::*;
use highpte_kernel::platform::TaskId;
use highpte_kernel::{Counter, FaultOutcome, Kernel, KernelOptions, Meminfo, SleepCtx};

/// The booted kernel, for the trap hooks (a `&'static Kernel<M>` of the mode booted).
struct KernelRef(Cell<*const ()>);
// SAFETY: one CPU; set once after boot.
unsafe impl Sync for KernelRef {}
static KERNEL: KernelRef = KernelRef(Cell::new(core::ptr::null()));

fn kernel<M: PagingMode>() -> &'static Kernel<M> {
    // SAFETY: set by `boot_and_run::<M>` to a leaked `Kernel<M>` before any hook can run, and
    // the hooks installed there are instantiated for the same `M`.
    unsafe { &*(KERNEL.0.get() as *const Kernel<M>) }
}

/// Read the scenario's parameters, boot, run it; true if every check passed.
pub fn run(info: &Info) -> bool {
    let scenario = info.arg("scenario").unwrap_or("boot");
    if scenario == "mmu-diff" {
        // no kernel: its own page tables, probed by the CPU
        return crate::mmu_diff::run(info);
    }
    let variant: MemoryVariant = match info.arg("config").unwrap_or("64g-highpte").parse() {
        Ok(v) => v,
        Err(e) => {
            println!("config: {e}");
            return false;
        }
    };
    let ram = match highpte_arch::size::parse_size(info.arg("ram").unwrap_or("8G")) {
        Ok(r) => r,
        Err(e) => {
            println!("ram: {e}");
            return false;
        }
    };
    let mut cfg = match Config::new(variant, ram, 1, false) {
        Ok(c) => c,
        Err(e) => {
            println!("configuration: {e}");
            return false;
        }
    };
    cfg.kernel = match info
        .arg("kernel")
        .unwrap_or("linux-6.1")
        .parse::<KernelProfile>()
    {
        Ok(k) => k,
        Err(e) => {
            println!("kernel: {e}");
            return false;
        }
    };
    println!(
        "highpte bare metal: scenario {scenario}, {}, kernel profile {}",
        cfg.kernel_name(),
        cfg.kernel
    );
    println!("firmware memory map:");
    for &(b, l, t) in &info.mmap {
        println!(
            "  [{b:#011x}-{:#011x}] {}",
            b + l - 1,
            if t == 1 { "usable" } else { "reserved" }
        );
    }
    for &(s, e) in cfg.ram_map().ranges() {
        if !info.is_ram(s, e) {
            println!(
                "the kernel profile {} expects RAM at [{s:#x}, {e:#x}) but the firmware's map has none there: boot QEMU with -m {} (and the linux-6.1 profile, whose map is QEMU's PC)",
                cfg.kernel,
                highpte_arch::size::DisplaySize(ram)
            );
            return false;
        }
    }
    let mut opts = KernelOptions::defaults_for(&cfg);
    opts.debug = scenario == "stale-kmap" || info.arg("debug") == Some("1");
    PLATFORM.seed(info.arg("seed").and_then(|s| s.parse().ok()).unwrap_or(1));
    if variant.pae() {
        boot_and_run::<Pae>(info, scenario, cfg, opts)
    } else {
        boot_and_run::<TwoLevel>(info, scenario, cfg, opts)
    }
}

fn boot_and_run<M: PagingMode>(
    info: &Info,
    scenario: &str,
    cfg: Config,
    opts: KernelOptions,
) -> bool {
    let t0 = cpu::rdtsc();
    let k = match Kernel::<M>::boot(&PLATFORM, cfg, opts) {
        Ok(k) => k,
        Err(e) => {
            println!("boot failed: {e}");
            return false;
        }
    };
    let k: &'static Kernel<M> = alloc::boxed::Box::leak(alloc::boxed::Box::new(k));
    KERNEL.0.set(k as *const Kernel<M> as *const ());
    cpu::set_hooks(user_fault::<M>, oops::<M>);
    println!(
        "booted in {} Mcycles; kernel CR3 {:#x}",
        (cpu::rdtsc() - t0) >> 20,
        k.swapper_pg_dir().addr().as_u64()
    );
    let ok = match scenario {
        "boot" => scenario_boot(k),
        "sga" => scenario_sga(k, info),
        "fork-cow" => scenario_fork_cow(k),
        "munmap" => scenario_munmap(k),
        "stale-kmap" => scenario_stale_kmap(k),
        other => {
            println!("unknown scenario {other:?}: boot, sga, fork-cow, munmap or stale-kmap");
            false
        }
    };
    print_meminfo(&k.meminfo(&PLATFORM));
    print_counters(k);
    ok
}

/// A user page fault taken by a probe: the kernel's `do_page_fault` for the running task.
fn user_fault<M: PagingMode>(addr: u32, code: u32) -> UserFault {
    let k = kernel::<M>();
    // the program's own access: the U/S bit it would have had at CPL 3
    let code = PageFaultErrorCode::from_bits_truncate(code) | PageFaultErrorCode::USER;
    // SAFETY: a kernel entry of the running task: the probe is called from scenario code that
    // holds no lock, no kmap and has preempt_count 0.
    let mut cx = unsafe { SleepCtx::enter(&PLATFORM) };
    match k.do_page_fault(&mut cx, PLATFORM.task(), VirtAddr::new(addr), code) {
        FaultOutcome::Handled => UserFault::Retry,
        FaultOutcome::Signal(_) => UserFault::Signal,
    }
}

/// Any other exception: a kernel oops, with the kernel's own description of the address.
fn oops<M: PagingMode>(frame: &cpu::Frame, cr2: u32) -> ! {
    let k = kernel::<M>();
    let mut message = if frame.vector == 14 {
        format!(
            "BUG: unable to handle kernel paging request at {cr2:#010x}: page fault error code {:#x} at eip {:#010x}",
            frame.error, frame.eip
        )
    } else {
        format!(
            "exception {} (error code {:#x}) at eip {:#010x}",
            frame.vector, frame.error, frame.eip
        )
    };
    if frame.vector == 14 {
        if let Some(d) = k.describe_kernel_address(VirtAddr::new(cr2)) {
            message.push_str("; ");
            message.push_str(&d);
        }
    }
    crate::report_bug(&highpte_kernel::platform::BugReport {
        kind: "kernel page fault",
        message,
    })
}

fn enter() -> SleepCtx<'static, crate::platform::BareMetal> {
    // SAFETY: called only from scenario code between system calls: no lock, no kmap,
    // preempt_count 0.
    unsafe { SleepCtx::enter(&PLATFORM) }
}

/// Create process `pid` and make it the running task with its page tables loaded.
fn spawn<M: PagingMode>(k: &Kernel<M>, pid: u32, prev: Option<u32>) -> bool {
    PLATFORM.set_task(TaskId(pid));
    if let Err(e) = k.create_process(&mut enter(), TaskId(pid)) {
        println!("create_process({pid}): {e:?}");
        return false;
    }
    switch_to(k, prev, pid);
    true
}

fn switch_to<M: PagingMode>(k: &Kernel<M>, prev: Option<u32>, pid: u32) {
    PLATFORM.set_task(TaskId(pid));
    PLATFORM.preempt_disable();
    k.switch_mm(&PLATFORM, prev.map(TaskId), TaskId(pid));
    PLATFORM.preempt_enable();
}

fn check(name: &str, ok: bool, detail: String) -> bool {
    println!(
        "@check {} {name}: {detail}",
        if ok { "pass" } else { "FAIL" }
    );
    ok
}

fn scenario_boot<M: PagingMode>(k: &Kernel<M>) -> bool {
    println!("--- boot log ---");
    for l in k.boot_log() {
        println!("{l}");
    }
    let m = k.meminfo(&PLATFORM);
    check(
        "memory accounted",
        m.low_total > 0 && m.mem_total == m.low_total + m.high_total,
        format!(
            "MemTotal {} kB = LowTotal {} + HighTotal {}",
            m.mem_total, m.low_total, m.high_total
        ),
    )
}

const PAGE: u32 = 4096;

fn stamp(page: u32) -> u32 {
    0x5a00_0000 ^ page.wrapping_mul(0x9e37_79b9)
}

/// `mmap(NULL, len, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)` in process `pid`.
fn mmap_anon<M: PagingMode>(
    k: &Kernel<M>,
    pid: u32,
    len: u32,
    prot: u32,
) -> Result<u32, highpte_kernel::Errno> {
    k.sys_mmap(
        &mut enter(),
        TaskId(pid),
        0,
        len as u64,
        prot,
        MAP_PRIVATE | MAP_ANONYMOUS,
        -1,
        0,
    )
}

/// Map a page for the ring-3 program in process `pid` and copy the program into it; its
/// address.
fn map_program<M: PagingMode>(k: &Kernel<M>, pid: u32) -> Option<u32> {
    let code = mmap_anon(k, pid, PAGE, PROT_READ | PROT_WRITE | PROT_EXEC).ok()?;
    for (i, w) in cpu::user_program().chunks(4).enumerate() {
        let mut b = [0u8; 4];
        b[..w.len()].copy_from_slice(w);
        if !cpu::store_u32(code + 4 * i as u32, u32::from_le_bytes(b)) {
            return None;
        }
    }
    Some(code)
}

/// Run the ring-3 program of the current process over `[start, end)` one word per page:
/// reading (the XOR of the words) or writing each word's own address.
fn user_pass(code: u32, start: u32, end: u32, write: bool) -> cpu::UserExit {
    cpu::run_user(&cpu::UserRegs {
        eip: code,
        ecx: start,
        edx: end,
        ebx: PAGE,
        esp: 0,
        esi: write as u32,
        edi: 0,
    })
}

/// The sga in ring 3: every process gets a page with the user program; process 1 creates a
/// SysV segment and its program writes every page (each page's first word: its address);
/// then each process attaches the segment and its program reads every page (a real user-mode
/// fault each), and stays.
fn scenario_sga<M: PagingMode>(k: &Kernel<M>, info: &Info) -> bool {
    let procs: u32 = info.arg("procs").and_then(|s| s.parse().ok()).unwrap_or(64);
    let size = info
        .arg("size")
        .and_then(|s| highpte_arch::size::parse_size(s).ok())
        .unwrap_or(64 << 20);
    let pages = (size / PAGE as u64) as u32;
    let before = k.meminfo(&PLATFORM);
    let mut code = alloc::vec::Vec::with_capacity(procs as usize);
    for pid in 1..=procs {
        if !spawn(k, pid, pid.checked_sub(1).filter(|&p| p > 0)) {
            return false;
        }
        match map_program(k, pid) {
            Some(c) => code.push(c),
            None => {
                return check(
                    "program",
                    false,
                    format!("process {pid}: mapping its code failed"),
                )
            }
        }
    }
    switch_to(k, Some(procs), 1);
    let id = match k.sys_shmget(&mut enter(), 1, size, IPC_CREAT | 0o600) {
        Ok(id) => id,
        Err(e) => return check("shmget", false, format!("{e:?}")),
    };
    let base = match k.sys_shmat(&mut enter(), TaskId(1), id, 0, 0) {
        Ok(a) => a,
        Err(e) => return check("shmat", false, format!("{e:?}")),
    };
    let wrote = user_pass(code[0], base, base + pages * PAGE, true);
    if wrote != cpu::UserExit::Done(0) {
        return check("create", false, format!("the writer ended with {wrote:?}"));
    }
    let expected = (0..pages).fold(0, |x, i| x ^ (base + i * PAGE));
    if let Err(e) = k.sys_shmdt(&mut enter(), TaskId(1), base) {
        return check("shmdt", false, format!("{e:?}"));
    }
    let mut bad = 0u32;
    let mut prev = 1;
    let t0 = cpu::rdtsc();
    for pid in 1..=procs {
        switch_to(k, Some(prev), pid);
        prev = pid;
        let id = match k.sys_shmget(&mut enter(), 1, 0, 0) {
            Ok(id) => id,
            Err(e) => return check("shmget", false, format!("{e:?}")),
        };
        let at = match k.sys_shmat(&mut enter(), TaskId(pid), id, 0, 0) {
            Ok(a) => a,
            Err(e) => return check("shmat", false, format!("process {pid}: {e:?}")),
        };
        match user_pass(code[pid as usize - 1], at, at + pages * PAGE, false) {
            cpu::UserExit::Done(x) if x == expected => {}
            other => {
                println!(
                    "process {pid}: its program ended with {other:?}, want Done({expected:#x})"
                );
                bad += 1;
            }
        }
        if pid % 16 == 0 || pid == procs {
            let m = k.meminfo(&PLATFORM);
            println!(
                "{:>4} processes: PageTables {:>8} kB ({} low, {} high), LowFree {:>8} kB",
                pid, m.page_tables, m.page_tables_low, m.page_tables_high, m.low_free
            );
        }
    }
    let mcycles = (cpu::rdtsc() - t0) >> 20;
    let after = k.meminfo(&PLATFORM);
    println!(
        "{procs} processes read {} pages each in ring 3 ({} faults) in {mcycles} Mcycles; low memory used {} kB",
        pages,
        k.counters().get(Counter::Faults),
        before.low_free.saturating_sub(after.low_free)
    );
    check(
        "data",
        bad == 0,
        format!("{procs} processes' programs read the {pages} words process 1 wrote; {bad} wrong"),
    )
}

/// A private anonymous mapping written by the parent, then fork: the child's ring-3 program
/// reads the parent's data and writes every page (a write-protection fault each, copied on
/// write), and the parent still sees its own.
fn scenario_fork_cow<M: PagingMode>(k: &Kernel<M>) -> bool {
    const PAGES: u32 = 64;
    if !spawn(k, 1, None) {
        return false;
    }
    let Some(code) = map_program(k, 1) else {
        return check("program", false, String::from("mapping the code failed"));
    };
    let base = match mmap_anon(k, 1, PAGES * PAGE, PROT_READ | PROT_WRITE) {
        Ok(a) => a,
        Err(e) => return check("mmap", false, format!("{e:?}")),
    };
    for i in 0..PAGES {
        cpu::store_u32(base + i * PAGE, stamp(i));
    }
    if let Err(e) = k.do_fork(&mut enter(), TaskId(1), TaskId(2), false) {
        return check("fork", false, format!("{e:?}"));
    }
    switch_to(k, Some(1), 2);
    let end = base + PAGES * PAGE;
    let mut ok = true;
    let want = (0..PAGES).fold(0, |x, i| x ^ stamp(i));
    let faults0 = k.counters().get(Counter::Faults);
    let read = user_pass(code, base, end, false);
    ok &= check(
        "child reads the parent's data",
        read == cpu::UserExit::Done(want),
        format!("{PAGES} pages: {read:?}"),
    );
    let faults1 = k.counters().get(Counter::Faults);
    let wrote = user_pass(code, base, end, true);
    let cow = k.counters().get(Counter::Faults) - faults1;
    ok &= check(
        "child writes copy",
        wrote == cpu::UserExit::Done(0) && cow == PAGES as u64,
        format!(
            "{cow} write faults for {PAGES} pages ({} faults before)",
            faults1 - faults0
        ),
    );
    let own = (0..PAGES).fold(0, |x, i| x ^ (base + i * PAGE));
    let again = user_pass(code, base, end, false);
    ok &= check(
        "child sees its writes",
        again == cpu::UserExit::Done(own),
        format!("{again:?}"),
    );
    switch_to(k, Some(2), 1);
    let parent_ok = (0..PAGES).all(|i| cpu::load_u32(base + i * PAGE) == Some(stamp(i)));
    ok &= check("parent keeps its data", parent_ok, String::new());
    PLATFORM.set_task(TaskId(2));
    k.do_exit(&mut enter(), TaskId(2), 0);
    PLATFORM.set_task(TaskId(1));
    match k.sys_wait(&mut enter(), TaskId(1)) {
        Ok((pid, code)) => {
            ok &= check(
                "wait",
                pid == TaskId(2) && code == 0,
                format!("reaped {pid} with {code}"),
            )
        }
        Err(e) => ok &= check("wait", false, format!("{e:?}")),
    }
    ok
}

/// Map 3 MB, write it, unmap the middle megabyte: the middle faults for good (SIGSEGV), the
/// rest keeps its data, and the middle's pte entries are gone.
fn scenario_munmap<M: PagingMode>(k: &Kernel<M>) -> bool {
    const MB: u32 = 1 << 20;
    if !spawn(k, 1, None) {
        return false;
    }
    let Some(code) = map_program(k, 1) else {
        return check("program", false, String::from("mapping the code failed"));
    };
    let base = match mmap_anon(k, 1, 3 * MB, PROT_READ | PROT_WRITE) {
        Ok(a) => a,
        Err(e) => return check("mmap", false, format!("{e:?}")),
    };
    let pages = 3 * MB / PAGE;
    for i in 0..pages {
        cpu::store_u32(base + i * PAGE, stamp(i));
    }
    let pt_before = k.meminfo(&PLATFORM).page_tables;
    if let Err(e) = k.sys_munmap(&mut enter(), TaskId(1), base + MB, MB as u64) {
        return check("munmap", false, format!("{e:?}"));
    }
    let mut ok = true;
    // the ring-3 program reads each page of the middle: each read ends it with a signal
    let mid: u32 = (MB / PAGE..2 * MB / PAGE)
        .map(|i| {
            let at = base + i * PAGE;
            (user_pass(code, at, at + PAGE, false) == cpu::UserExit::Signal(at)) as u32
        })
        .sum();
    ok &= check(
        "the middle is gone",
        mid == MB / PAGE,
        format!("{mid} of {} reads fault with a signal", MB / PAGE),
    );
    let kept = (0..pages)
        .filter(|i| !(MB / PAGE..2 * MB / PAGE).contains(i))
        .all(|i| cpu::load_u32(base + i * PAGE) == Some(stamp(i)));
    ok &= check("the rest keeps its data", kept, String::new());
    let pt_after = k.meminfo(&PLATFORM).page_tables;
    ok &= check(
        "page tables",
        pt_after <= pt_before,
        format!("PageTables {pt_before} kB -> {pt_after} kB"),
    );
    ok
}

/// With the debug helpers on, keep the kernel address of a pte page mapped by
/// `pte_offset_map` past its `pte_unmap` and read it: the helpers cleared the slot, so the
/// CPU faults and the oops names the released mapping.
fn scenario_stale_kmap<M: PagingMode>(k: &Kernel<M>) -> bool {
    if !spawn(k, 1, None) {
        return false;
    }
    let base = match mmap_anon(k, 1, 16 * PAGE, PROT_READ | PROT_WRITE) {
        Ok(a) => a,
        Err(e) => return check("mmap", false, format!("{e:?}")),
    };
    cpu::store_u32(base, 1);
    let Some(mm) = k.mm_of(TaskId(1)) else {
        return check("mm", false, String::new());
    };
    let va = {
        let mut cx = enter();
        let mut cur = k.lock_ptes(&mut cx, &mm);
        let Some(map) = cur.map(VirtAddr::new(base)) else {
            return check("pte page", false, String::new());
        };
        let va = map.kernel_address_for_tests();
        println!(
            "pte page {:#x} mapped at {va} by pte_offset_map; unmapping it, then reading {va}",
            map.page().0
        );
        va
    };
    if !k.config().variant.highpte() {
        return check(
            "a high pte page",
            false,
            String::from("run stale-kmap on a -highpte configuration"),
        );
    }
    PLATFORM.expect_bug.set(Some("kernel page fault"));
    // SAFETY: deliberately not: the mapping was released above. This is the bug the debug
    // helpers exist to catch; the CPU's fault ends the run in `oops`.
    let v = unsafe { core::ptr::read_volatile(va.as_u32() as *const u32) };
    print!("read {v:#x} through a released kmap_atomic slot: ");
    check(
        "the stale read faults",
        false,
        String::from("it did not (are the debug helpers on?)"),
    )
}

fn print_meminfo(m: &Meminfo) {
    println!(
        "@meminfo {{\"MemTotal\":{},\"MemFree\":{},\"LowTotal\":{},\"LowFree\":{},\"HighTotal\":{},\"HighFree\":{},\"PageTables\":{},\"PageTablesLow\":{},\"PageTablesHigh\":{},\"PageTablePools\":{}}}",
        m.mem_total, m.mem_free, m.low_total, m.low_free, m.high_total, m.high_free, m.page_tables, m.page_tables_low, m.page_tables_high, m.pt_pools
    );
}

fn print_counters<M: PagingMode>(k: &Kernel<M>) {
    let mut s = String::from("@counters {");
    for (i, (name, v)) in k.counters().snapshot().into_iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!("\"{name}\":{v}"));
    }
    s.push('}');
    println!("{s}");
}
