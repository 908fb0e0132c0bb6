//! Helpers shared by the VM tests (`vm_*.rs`): booting the five configurations, running a
//! process body, checking invariants after each step, and the zero-leak check.
#![allow(dead_code)]

use highpte_arch::{Config, MemoryVariant, PagingMode};
use highpte_kernel::platform::prelude::*;
use highpte_kernel::{KernelOptions, Meminfo, PtAllocKind, PteStrategy};
use highpte_machine::{MachineOptions, RunOutcome, System, TaskHandle, User};
use std::cell::RefCell;
use std::rc::Rc;

pub const MB: u64 = 1 << 20;
pub const GB: u64 = 1 << 30;
pub const PAGE: u32 = 4096;

/// The five configurations with the RAM the tests use for each.
pub const CONFIGS: [(MemoryVariant, u64); 5] = [
    (MemoryVariant::NoHighmem, 512 * MB),
    (MemoryVariant::Highmem4g, 2 * GB),
    (MemoryVariant::Highmem4gHighpte, 2 * GB),
    (MemoryVariant::Highmem64g, 8 * GB),
    (MemoryVariant::Highmem64gHighpte, 8 * GB),
];

/// Call `$f::<Pae>(args)` or `$f::<TwoLevel>(args)` according to the variant's paging mode.
#[macro_export]
macro_rules! dispatch {
    ($v:expr, $f:ident ( $($a:expr),* $(,)? )) => {
        if $v.pae() {
            $f::<highpte_arch::Pae>($($a),*)
        } else {
            $f::<highpte_arch::TwoLevel>($($a),*)
        }
    };
}

/// Boot options for a test: the configuration's defaults with debug checks on, then `tweak`.
pub fn boot_with<M: PagingMode>(
    v: MemoryVariant,
    ram: u64,
    cpus: u32,
    tweak: impl FnOnce(&mut KernelOptions),
) -> System<M> {
    let cfg = Config::new(v, ram, cpus, true).unwrap();
    let mut ko = KernelOptions::defaults_for(&cfg);
    ko.debug = true;
    tweak(&mut ko);
    System::<M>::boot(
        cfg,
        ko,
        MachineOptions {
            tick_period: 100_000,
            quantum: 2_000,
            ..Default::default()
        },
    )
    .unwrap()
}

/// Boot `v` with `ram` and `cpus` CPUs, default strategy and allocator.
pub fn boot<M: PagingMode>(v: MemoryVariant, ram: u64, cpus: u32) -> System<M> {
    boot_with::<M>(v, ram, cpus, |_| {})
}

/// Boot with an explicit strategy and allocator.
pub fn boot_strategy<M: PagingMode>(
    v: MemoryVariant,
    ram: u64,
    cpus: u32,
    s: PteStrategy,
    a: PtAllocKind,
) -> System<M> {
    boot_with::<M>(v, ram, cpus, |ko| {
        ko.strategy = s;
        ko.pt_alloc = a;
    })
}

/// Panic with the violations if the invariant checker finds any.
pub fn inv<M: PagingMode>(u: &User<'_, M>, step: &str) {
    let bad = u
        .handle()
        .enter_kernel("check_invariants", |cx| u.kernel().check_invariants(cx));
    assert!(bad.is_empty(), "invariants after {step}: {bad:#?}");
}

/// Meminfo as seen by a process.
pub fn mi<M: PagingMode>(u: &User<'_, M>) -> Meminfo {
    u.kernel().meminfo(u.handle())
}

/// The pfn that `addr` maps in this process, if any (through `follow_page`).
pub fn pfn_of<M: PagingMode>(u: &User<'_, M>, addr: u32) -> Option<u64> {
    let mm = u.kernel().mm_of(u.pid())?;
    let e = u
        .handle()
        .enter_kernel("follow_page", |cx| u.kernel().follow_page(cx, &mm, addr))?;
    Some(e.pfn().0)
}

/// (rss, VmPTE) of this process.
pub fn rss_ptes<M: PagingMode>(u: &User<'_, M>) -> (u64, u64) {
    let mm = u.kernel().mm_of(u.pid()).unwrap();
    (mm.rss(), mm.nr_ptes())
}

/// Run one process to completion; returns its exit code. The run must complete.
pub fn run_process<M: PagingMode>(
    sys: &mut System<M>,
    body: impl FnOnce(&mut User<'_, M>) -> i32 + 'static,
) -> i32 {
    let pid = sys.spawn_process("test", Some(0), body).unwrap();
    let out = sys.run();
    assert!(matches!(out, RunOutcome::Completed), "{out}");
    sys.machine.exit_code(pid).unwrap()
}

/// What a kernel-side check task sees: meminfo after draining the page-table pools, the
/// invariant violations, and the number of live processes.
#[derive(Debug, Clone)]
pub struct Quiet {
    pub mi: Meminfo,
    pub bad: Vec<String>,
    pub procs: usize,
    pub kobj_bytes: u64,
}

/// Run a kernel task that drains every page-table pool and reports (use it right after boot
/// for the baseline, and after every process exited for the leak check).
pub fn quiesce<M: PagingMode>(sys: &mut System<M>) -> Quiet {
    let k = sys.kernel_cell();
    let out: Rc<RefCell<Option<Quiet>>> = Rc::new(RefCell::new(None));
    let o = out.clone();
    sys.machine
        .spawn("quiesce", Some(0), move |h: &TaskHandle<M>| {
            let k = k.get(h).unwrap();
            h.enter_kernel("test", |cx| {
                k.pt_drain_all_pools(cx);
                let bad = h.enter_kernel("check_invariants", |cx| k.check_invariants(cx));
                *o.borrow_mut() = Some(Quiet {
                    mi: k.meminfo(h),
                    bad,
                    procs: k.nr_processes(),
                    kobj_bytes: k.kobj_bytes(),
                });
                let _ = h.cpu();
                0
            })
        })
        .unwrap();
    let r = sys.run();
    assert!(matches!(r, RunOutcome::Completed), "{r}");
    let q = out.borrow_mut().take().unwrap();
    q
}

/// After every process exited: no violations, no page tables, no kernel objects, and MemFree
/// back at `boot.mi.mem_free` exactly. Also no TLB entry of any CPU maps a freed frame.
pub fn assert_no_leak<M: PagingMode>(sys: &mut System<M>, boot: &Quiet, what: &str) {
    let q = quiesce(sys);
    assert!(
        q.bad.is_empty(),
        "{what}: invariants at the end: {:#?}",
        q.bad
    );
    assert_eq!(q.procs, 0, "{what}: processes left");
    assert_eq!(q.mi.page_tables, 0, "{what}: page tables left");
    assert_eq!(q.mi.pt_pools, 0, "{what}: pool pages left after drain");
    assert_eq!(q.kobj_bytes, boot.kobj_bytes, "{what}: kernel objects left");
    assert_eq!(
        q.mi.mem_free, boot.mi.mem_free,
        "{what}: MemFree {} kB at the end, {} kB after boot",
        q.mi.mem_free, boot.mi.mem_free
    );
    assert_eq!(q.mi.low_free, boot.mi.low_free, "{what}: LowFree");
    assert_eq!(q.mi.high_free, boot.mi.high_free, "{what}: HighFree");
    assert_tlbs_clean(sys, what);
}

/// No user TLB entry on any CPU maps a frame that is free.
pub fn assert_tlbs_clean<M: PagingMode>(sys: &System<M>, what: &str) {
    let k = sys.kernel();
    for cpu in 0..sys.machine.nr_cpus() {
        let tlb = sys.machine.tlb(cpu).unwrap();
        for e in tlb.entries() {
            if !e.user || e.pfn >= k.max_pfn() {
                continue;
            }
            let owner = k.mem_map().desc(highpte_arch::Pfn(e.pfn)).owner();
            assert_ne!(
                owner,
                highpte_kernel::page_alloc::PageOwner::Free,
                "{what}: cpu {cpu} TLB maps vpn {:#x} to free frame {:#x}",
                e.vpn,
                e.pfn
            );
        }
    }
}

/// A stamp for page `i` of a test: one u32 per page.
pub fn stamp(i: u32, gen: u32) -> u32 {
    i.wrapping_mul(0x9e37_79b9) ^ gen.wrapping_mul(0x85eb_ca6b) ^ 0x5a5a_0000
}
