//! Shared helpers of the `highmem_*` tests: boot a system, run a raw kernel task or a process
//! on it, and pick apart the outcome.
#![allow(dead_code)] // each test file uses a different subset

use highpte_arch::{Config, MemoryVariant, PagingMode, Pfn};
use highpte_arch::{KmType, VirtAddr};
use highpte_kernel::page_alloc::{PageOwner, GFP_HIGHUSER, GFP_KERNEL};
use highpte_kernel::platform::prelude::*;
use highpte_kernel::{Ctx, Kernel, KernelOptions, Platform, PtAllocKind, PteStrategy, SleepCtx};
use highpte_machine::{BugInfo, MachineOptions, RunOutcome, System, TaskHandle, User};
use std::cell::RefCell;
use std::rc::Rc;

/// 1280 MB: 896 MB low, 384 MB high.
pub const RAM: u64 = 1280 << 20;

/// What to boot.
#[derive(Clone, Copy, Debug)]
pub struct Setup {
    pub variant: MemoryVariant,
    pub ram: u64,
    pub cpus: u32,
    pub preempt: bool,
    pub debug: bool,
    pub strategy: Option<PteStrategy>,
    pub pt_alloc: PtAllocKind,
    pub tick_period: u64,
}

impl Setup {
    /// A 2-CPU machine with 1280 MB, no preemption, debug helpers on, the variant's default
    /// strategy and the seed's pool.
    pub fn new(variant: MemoryVariant) -> Self {
        Self {
            variant,
            ram: RAM,
            cpus: 2,
            preempt: false,
            debug: true,
            strategy: None,
            pt_alloc: PtAllocKind::Pool,
            tick_period: 1_000_000,
        }
    }
    pub fn cpus(mut self, n: u32) -> Self {
        self.cpus = n;
        self
    }
    pub fn ram(mut self, r: u64) -> Self {
        self.ram = r;
        self
    }
    pub fn debug(mut self, d: bool) -> Self {
        self.debug = d;
        self
    }
    pub fn preempt(mut self, p: bool) -> Self {
        self.preempt = p;
        self
    }
    pub fn strategy(mut self, s: PteStrategy) -> Self {
        self.strategy = Some(s);
        self
    }
    pub fn pt_alloc(mut self, a: PtAllocKind) -> Self {
        self.pt_alloc = a;
        self
    }
    pub fn tick(mut self, t: u64) -> Self {
        self.tick_period = t;
        self
    }
    /// Boot it, keeping a trace of the first `trace` events.
    pub fn boot_traced<M: PagingMode>(self, trace: usize) -> System<M> {
        let cfg = Config::new(self.variant, self.ram, self.cpus, self.preempt).unwrap();
        let mut ko = KernelOptions::defaults_for(&cfg);
        ko.debug = self.debug;
        if let Some(s) = self.strategy {
            ko.strategy = s;
        }
        ko.pt_alloc = self.pt_alloc;
        System::<M>::boot(
            cfg,
            ko,
            MachineOptions {
                tick_period: self.tick_period,
                quantum: 2_000,
                trace_limit: trace,
                ..Default::default()
            },
        )
        .unwrap()
    }
    /// Boot it.
    pub fn boot<M: PagingMode>(self) -> System<M> {
        self.boot_traced(0)
    }
}

/// Spawn a raw kernel task on `cpu` running `f(h, kernel, cx)` (the task's kernel entry).
pub fn spawn_raw<M: PagingMode>(
    sys: &mut System<M>,
    name: &str,
    cpu: u32,
    f: impl FnOnce(&TaskHandle<M>, &Kernel<M>, &mut SleepCtx<'_, TaskHandle<M>>) + 'static,
) {
    let kc = sys.kernel_cell();
    sys.machine
        .spawn(name, Some(cpu), move |h| {
            let k = kc.get(h).unwrap();
            h.enter_kernel("test", |cx| {
                f(h, k, cx);
                0
            })
        })
        .unwrap();
}

/// Run one raw kernel task on `cpu` to the end and return its result.
pub fn run_raw<M: PagingMode, R: 'static>(
    sys: &mut System<M>,
    cpu: u32,
    f: impl FnOnce(&TaskHandle<M>, &Kernel<M>, &mut SleepCtx<'_, TaskHandle<M>>) -> R + 'static,
) -> R {
    let out: Rc<RefCell<Option<R>>> = Rc::new(RefCell::new(None));
    let o = out.clone();
    spawn_raw(sys, "raw", cpu, move |h, k, cx| {
        *o.borrow_mut() = Some(f(h, k, cx));
    });
    let r = sys.run();
    assert!(r.is_completed(), "{r}");
    let v = out.borrow_mut().take().unwrap();
    v
}

/// Run `f` as a process's user program on `cpu`; returns what the run ended with.
pub fn run_process<M: PagingMode>(
    sys: &mut System<M>,
    cpu: u32,
    f: impl FnOnce(&mut User<'_, M>) -> i32 + 'static,
) -> RunOutcome {
    sys.spawn_process("proc", Some(cpu), f).unwrap();
    sys.run()
}

/// The bug a run stopped with (panics on any other outcome).
pub fn expect_bug(out: RunOutcome) -> BugInfo {
    match out {
        RunOutcome::Bug(b) => *b,
        other => panic!("expected a kernel bug report, got: {other}"),
    }
}

/// One page of high memory (GFP_HIGHUSER), owned by the caller.
pub fn high_page<M: PagingMode>(k: &Kernel<M>, cx: &mut SleepCtx<'_, TaskHandle<M>>) -> Pfn {
    let pfn = k
        .alloc_pages(cx, GFP_HIGHUSER, 0, PageOwner::User, "test")
        .unwrap();
    assert!(k.is_highmem(pfn), "GFP_HIGHUSER gave low pfn {:#x}", pfn.0);
    pfn
}

/// One page of low memory (GFP_KERNEL).
pub fn low_page<M: PagingMode>(k: &Kernel<M>, cx: &mut SleepCtx<'_, TaskHandle<M>>) -> Pfn {
    let pfn = k
        .alloc_pages(cx, GFP_KERNEL, 0, PageOwner::User, "test")
        .unwrap();
    assert!(!k.is_highmem(pfn));
    pfn
}

/// `who()` as the machine prints it in its own reports.
pub fn who(b: &BugInfo) -> String {
    format!(
        "task {} '{}' on cpu {} at {}",
        b.task, b.task_name, b.cpu, b.where_label
    )
}

/// The user address [`with_user_pte`] maps (aligned to every pte page span).
pub const ADDR: u32 = 0x4000_0000;

/// Run a process that maps two pte-page spans at [`ADDR`] and touches `ADDR`, `ADDR + 4096`
/// and `ADDR + span` (two pte pages, the first with two entries), then runs `f` in kernel
/// context on its behalf with its mm. Returns how the run ended.
pub fn with_user_pte<M: PagingMode>(
    sys: &mut System<M>,
    cpu: u32,
    f: impl FnOnce(&TaskHandle<M>, &Kernel<M>, highpte_kernel::TaskId, &highpte_kernel::mm::Mm)
        + 'static,
) -> RunOutcome {
    use highpte_kernel::mm::{MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, PROT_READ, PROT_WRITE};
    run_process(sys, cpu, move |u| {
        let span = M::PTE_PAGE_SPAN;
        u.mmap(
            ADDR,
            2 * u64::from(span),
            PROT_READ | PROT_WRITE,
            MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
        )
        .unwrap();
        u.store_u32(ADDR, 1).unwrap();
        u.store_u32(ADDR + 4096, 2).unwrap();
        u.store_u32(ADDR + span, 3).unwrap();
        let k = u.kernel();
        let mm = k.mm_of(u.pid()).unwrap();
        u.handle().set_where("test body");
        f(u.handle(), k, u.pid(), &mm);
        0
    })
}

/// The locks of a bug report as the machine lists them.
pub fn locks(b: &BugInfo) -> String {
    b.held_locks
        .iter()
        .map(|l| l.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The raw `kmap_atomic`, for the tests that break its pairing on purpose to provoke the
/// debug helpers' reports.
pub fn kmap_raw<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &Ctx<'_, P>,
    pfn: Pfn,
    ty: KmType,
    place: &'static str,
) -> VirtAddr {
    // SAFETY: not upheld on purpose: each test misuses the pair (twice, the wrong type, never
    // unmapped, used after unmap) and asserts the report the machine's debug helpers make at
    // run time; the simulated machine turns every such misuse into that report.
    unsafe { k.kmap_atomic_raw(cx, pfn, ty, place) }
}

/// The raw `kunmap_atomic` (see [`kmap_raw`]).
pub fn kunmap_raw<P: Platform, M: PagingMode>(
    k: &Kernel<M>,
    cx: &Ctx<'_, P>,
    va: VirtAddr,
    ty: KmType,
    place: &'static str,
) {
    // SAFETY: as in `kmap_raw`: misuse on purpose, reported at run time by the debug helpers.
    unsafe { k.kunmap_atomic_raw(cx, va, ty, place) }
}
