//! Micro-benchmark workloads run directly on a booted [`System`] (no workload file): one
//! process per CPU, each doing the same loop, with every counter a design comparison needs read
//! before and after. `highpte bench` runs them and presents the results; they live here,
//! below the command, so that a library user (or a criterion bench) measures the same loops.

use highpte_arch::{Config, MemoryVariant, Pae, PagingMode};
use highpte_kernel::mm::{
    MAP_ANONYMOUS, MAP_FIXED, MAP_POPULATE, MAP_PRIVATE, PROT_READ, PROT_WRITE,
};
use highpte_kernel::platform::prelude::*;
use highpte_kernel::{Counter, KernelOptions, PtAllocKind, PteStrategy};
use highpte_machine::cost::CostModel;
use highpte_machine::{MachineOptions, System, User};
use std::cell::Cell;
use std::rc::Rc;
use std::time::Instant;

/// Why a micro-benchmark could not run or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum MicrobenchError {
    /// The machine would not boot (a bad configuration).
    #[error("cannot boot the bench machine: {0}")]
    Boot(String),
    /// A bench process could not be created.
    #[error("cannot start a bench process: {0}")]
    Spawn(String),
    /// The machine stopped before every process finished (a deadlock, a cycle limit).
    #[error("{work}: the run did not complete: {outcome}")]
    NotCompleted {
        /// The work.
        work: String,
        /// How the run ended.
        outcome: String,
    },
    /// A process's call failed.
    #[error("{work} on {cpus} CPUs: process {pid} failed at {call} (exit code {code:?}); kernel log: {log}")]
    ProcessFailed {
        /// The work.
        work: String,
        /// CPUs of the machine.
        cpus: u32,
        /// The process.
        pid: String,
        /// The call that failed (from the process's exit code).
        call: &'static str,
        /// The process's exit code.
        code: Option<i32>,
        /// The first lines of the kernel log.
        log: String,
    },
}

/// The call a bench process's exit code stands for.
fn failed_call(code: Option<i32>) -> &'static str {
    match code {
        Some(11) => "mmap (fault loop)",
        Some(12) => "store (fault loop)",
        Some(13) => "munmap (fault loop)",
        Some(14) => "mmap MAP_POPULATE (fork loop)",
        Some(15) => "fork or wait",
        Some(16) => "mmap MAP_POPULATE (munmap loop)",
        Some(17) => "munmap (munmap loop)",
        Some(18) => "mmap (pte-page loop)",
        Some(19) => "store (pte-page loop)",
        Some(20) => "munmap (pte-page loop)",
        Some(21) => "mmap MAP_POPULATE (TLB loop)",
        Some(22) => "store (TLB loop)",
        Some(23) => "load (TLB loop)",
        _ => "an unexpected exit",
    }
}

const RW: u32 = PROT_READ | PROT_WRITE;
const PA: u32 = MAP_PRIVATE | MAP_ANONYMOUS;
/// Where each process maps its region.
const BASE: u32 = 0x1000_0000;
const PAGE: u32 = 4096;

/// What one process does (every process of a run does the same).
#[derive(Clone, Copy, Debug)]
pub enum Work {
    /// `rounds` x (mmap `pages`, write each page once, munmap): anonymous demand-zero faults
    /// on recycled frames and page tables.
    Fault {
        /// Pages per mapping.
        pages: u32,
        /// Mappings, one after the other.
        rounds: u32,
    },
    /// Populate `pages` (MAP_POPULATE), then `forks` x (fork a child that exits at once, wait).
    Fork {
        /// Pages populated before the forks.
        pages: u32,
        /// Forks.
        forks: u32,
    },
    /// `rounds` x (mmap `pages` with MAP_POPULATE, munmap); only the munmaps are focus cycles.
    Munmap {
        /// Pages per mapping.
        pages: u32,
        /// Mappings.
        rounds: u32,
    },
    /// `rounds` x (touch one page in each of `tables` pte-page spans, munmap): one pte page
    /// allocated and freed per touch.
    PtPages {
        /// pte-page spans touched per round.
        tables: u32,
        /// Rounds.
        rounds: u32,
    },
    /// Write `pages` once, then `loads` loads cycling over them (TLB hits).
    TlbHits {
        /// Pages written once.
        pages: u32,
        /// Loads cycling over them.
        loads: u64,
    },
}

impl Work {
    /// The same work with no focus operations (for a baseline to subtract), if it needs one.
    fn baseline(self) -> Option<Work> {
        match self {
            Work::Fork { pages, .. } => Some(Work::Fork { pages, forks: 0 }),
            _ => None,
        }
    }
}

/// A machine to run on.
#[derive(Clone, Debug)]
pub struct Machine {
    /// The memory configuration.
    pub variant: MemoryVariant,
    /// The pte strategy.
    pub strategy: PteStrategy,
    /// The page-table page allocator.
    pub pt_alloc: PtAllocKind,
    /// CPUs.
    pub cpus: u32,
    /// RAM in bytes.
    pub ram: u64,
    /// The cost model.
    pub cost: CostModel,
}

impl Machine {
    /// The 64g (lowmem) or 64g-highpte machine for a strategy.
    pub fn for_strategy(strategy: PteStrategy, cpus: u32, ram: u64) -> Self {
        Self {
            variant: if strategy.highmem_ptes() {
                MemoryVariant::Highmem64gHighpte
            } else {
                MemoryVariant::Highmem64g
            },
            strategy,
            pt_alloc: PtAllocKind::Pool,
            cpus,
            ram,
            cost: CostModel::default(),
        }
    }

    /// Boot it.
    pub fn boot(&self) -> Result<System<Pae>, MicrobenchError> {
        let cfg = Config::new(self.variant, self.ram, self.cpus, false)
            .map_err(|e| MicrobenchError::Boot(e.to_string()))?;
        let mut ko = KernelOptions::defaults_for(&cfg);
        ko.strategy = self.strategy;
        ko.pt_alloc = self.pt_alloc;
        let mo = MachineOptions {
            cost: self.cost.clone(),
            ..Default::default()
        };
        System::<Pae>::boot(cfg, ko, mo).map_err(|e| MicrobenchError::Boot(e.to_string()))
    }
}

/// Everything read from the system, as a difference over one run.
#[derive(Clone, Copy, Debug, Default)]
pub struct Measure {
    /// Host seconds of the run.
    pub host_seconds: f64,
    /// Simulated cycles summed over CPUs.
    pub cycles: u64,
    /// Simulated cycles of the slowest CPU (the run's simulated duration).
    pub cycles_max: u64,
    /// Cycles of the focus operation (see [`Work`]), summed over processes.
    pub focus_cycles: u64,
    /// Operations of the focus kind (faults, forks, munmaps, pte pages, loads).
    pub ops: u64,
    /// Page faults.
    pub faults: u64,
    /// `kmap_atomic` maps.
    pub kmap_atomic: u64,
    /// Persistent `kmap` calls.
    pub kmap: u64,
    /// Persistent `kunmap` calls.
    pub kunmap: u64,
    /// `invlpg` instructions the kernel issued.
    pub invlpg: u64,
    /// Full TLB flushes.
    pub flush_tlb_all: u64,
    /// TLB shootdowns (IPIs to other CPUs).
    pub tlb_shootdowns: u64,
    /// pte-page mappings (`pte_offset_map`).
    pub pte_maps: u64,
    /// Spin-loop iterations (all locks) and cycles spent spinning.
    pub spins: u64,
    /// Cycles spent spinning.
    pub spin_cycles: u64,
    /// kmap_lock: acquisitions, contended, spins, as the lock counts them. The lock updates its
    /// counters from a copy taken before it spins, so under contention they undercount (a
    /// lower bound); kmap + kunmap counts the acquisitions exactly.
    pub kmap_lock: (u64, u64, u64),
    /// Zone locks (all zones): acquisitions, contended, spins.
    pub zone_lock: (u64, u64, u64),
    /// pte pages allocated (low + high).
    pub pte_pages: u64,
    /// Page-table pool hits.
    pub pool_hits: u64,
    /// Page-table pool refills.
    pub refills: u64,
    /// Page-table pool drains.
    pub drains: u64,
    /// Pages held in page-table pools after the run (low + high).
    pub pool_pages: u64,
    /// TLB hits, every CPU.
    pub tlb_hits: u64,
    /// TLB misses, every CPU.
    pub tlb_misses: u64,
}

#[derive(Clone, Copy, Default)]
struct Snap {
    cycles: u64,
    cycles_max: u64,
    c: [u64; 16],
    spins: u64,
    spin_cycles: u64,
    shootdowns: u64,
    kl: (u64, u64, u64),
    zl: (u64, u64, u64),
    tlb: (u64, u64),
}

const COUNTERS: [Counter; 13] = [
    Counter::Faults,
    Counter::KmapAtomic,
    Counter::Kmap,
    Counter::Invlpg,
    Counter::FlushTlbAll,
    Counter::PteMaps,
    Counter::PtePagesAllocLow,
    Counter::PtePagesAllocHigh,
    Counter::PtAllocPoolHits,
    Counter::PtAllocRefills,
    Counter::PtAllocDrains,
    Counter::TlbShootdowns,
    Counter::Kunmap,
];

fn snap(sys: &System<Pae>) -> Snap {
    let k = sys.kernel();
    let mut s = Snap::default();
    let clocks = sys.machine.cpu_clocks();
    s.cycles = clocks.iter().sum();
    s.cycles_max = clocks.iter().copied().max().unwrap_or(0);
    for (i, c) in COUNTERS.iter().enumerate() {
        s.c[i] = k.counters().get(*c);
    }
    s.spins = sys.machine.stats().spins;
    s.shootdowns = sys.machine.stats().tlb_shootdowns;
    s.spin_cycles = sys.machine.cpu_stats().iter().map(|c| c.spin_cycles).sum();
    let hl = k.highmem_lock_stats();
    s.kl = (
        hl.kmap_lock.acquisitions,
        hl.kmap_lock.contended,
        hl.kmap_lock.spins,
    );
    for z in hl.zones {
        s.zl.0 += z.acquisitions;
        s.zl.1 += z.contended;
        s.zl.2 += z.spins;
    }
    for cpu in 0..sys.machine.nr_cpus() {
        if let Some(t) = sys.machine.tlb(cpu) {
            let st = t.stats();
            s.tlb.0 += st.hits;
            s.tlb.1 += st.misses;
        }
    }
    s
}

fn sub3(a: (u64, u64, u64), b: (u64, u64, u64)) -> (u64, u64, u64) {
    (a.0 - b.0, a.1 - b.1, a.2 - b.2)
}

/// One process's loop; adds its focus cycles and focus operations to the cells.
fn body(u: &mut User<'_, Pae>, w: Work, focus: &Cell<u64>, ops: &Cell<u64>) -> i32 {
    let now = |u: &User<'_, Pae>| u.handle().now();
    match w {
        Work::Fault { pages, rounds } => {
            let c0 = now(u);
            for r in 0..rounds {
                let len = u64::from(pages * PAGE);
                let Ok(a) = u.mmap(BASE, len, RW, PA | MAP_FIXED) else {
                    return 11;
                };
                for i in 0..pages {
                    if u.store_u32(a + i * PAGE, r ^ i).is_err() {
                        return 12;
                    }
                }
                if u.munmap(a, len).is_err() {
                    return 13;
                }
            }
            focus.set(focus.get() + now(u) - c0);
            ops.set(ops.get() + u64::from(pages) * u64::from(rounds));
        }
        Work::Fork { pages, forks } => {
            let len = u64::from(pages * PAGE);
            if u.mmap(BASE, len, RW, PA | MAP_FIXED | MAP_POPULATE)
                .is_err()
            {
                return 14;
            }
            for _ in 0..forks {
                if u.fork("child", false, |_| 0).is_err() || u.wait().is_err() {
                    return 15;
                }
            }
            ops.set(ops.get() + u64::from(forks));
        }
        Work::Munmap { pages, rounds } => {
            let len = u64::from(pages * PAGE);
            for _ in 0..rounds {
                let Ok(a) = u.mmap(BASE, len, RW, PA | MAP_FIXED | MAP_POPULATE) else {
                    return 16;
                };
                let c0 = now(u);
                if u.munmap(a, len).is_err() {
                    return 17;
                }
                focus.set(focus.get() + now(u) - c0);
            }
            ops.set(ops.get() + u64::from(rounds));
        }
        Work::PtPages { tables, rounds } => {
            let span = Pae::PTE_PAGE_SPAN;
            let len = u64::from(tables) * u64::from(span);
            let c0 = now(u);
            for r in 0..rounds {
                let Ok(a) = u.mmap(BASE, len, RW, PA | MAP_FIXED) else {
                    return 18;
                };
                for i in 0..tables {
                    if u.store_u32(a + i * span, r).is_err() {
                        return 19;
                    }
                }
                if u.munmap(a, len).is_err() {
                    return 20;
                }
            }
            focus.set(focus.get() + now(u) - c0);
            ops.set(ops.get() + u64::from(tables) * u64::from(rounds));
        }
        Work::TlbHits { pages, loads } => {
            let len = u64::from(pages * PAGE);
            let Ok(a) = u.mmap(BASE, len, RW, PA | MAP_FIXED | MAP_POPULATE) else {
                return 21;
            };
            for i in 0..pages {
                if u.store_u32(a + i * PAGE, i).is_err() {
                    return 22;
                }
            }
            let c0 = now(u);
            let mut sum = 0u32;
            // one word per 64-byte line, walking the pages round-robin: load i reads page
            // i % pages at line (i / pages) % 64 (counters, not a division per load, so the
            // harness costs little beside the simulated access)
            let (mut page, mut line) = (0u32, 0u32);
            for _ in 0..loads {
                match u.load_u32(a + page * PAGE + line * 64) {
                    Ok(v) => sum = sum.wrapping_add(v),
                    Err(_) => return 23,
                }
                page += 1;
                if page == pages {
                    page = 0;
                    line = (line + 1) % 64;
                }
            }
            std::hint::black_box(sum);
            focus.set(focus.get() + now(u) - c0);
            ops.set(ops.get() + loads);
        }
    }
    0
}

/// Run `w` in `procs` processes (process i on CPU i mod cpus) on a booted system; the
/// differences of every counter over the run.
pub fn run_on(sys: &mut System<Pae>, w: Work, procs: u32) -> Result<Measure, MicrobenchError> {
    let cpus = sys.machine.nr_cpus();
    let focus = Rc::new(Cell::new(0u64));
    let ops = Rc::new(Cell::new(0u64));
    let s0 = snap(sys);
    let t = Instant::now();
    let mut ids = Vec::new();
    for p in 0..procs {
        let (f, o) = (focus.clone(), ops.clone());
        let id = sys
            .spawn_process(format!("bench{p}"), Some(p % cpus), move |u| {
                body(u, w, &f, &o)
            })
            .map_err(|e| MicrobenchError::Spawn(e.to_string()))?;
        ids.push(id);
    }
    let out = sys.run();
    let host_seconds = t.elapsed().as_secs_f64();
    if !out.is_completed() {
        return Err(MicrobenchError::NotCompleted {
            work: format!("{w:?}"),
            outcome: out.to_string(),
        });
    }
    for id in ids {
        let code = sys.machine.exit_code(id);
        if code != Some(0) {
            return Err(MicrobenchError::ProcessFailed {
                work: format!("{w:?}"),
                cpus,
                pid: id.to_string(),
                call: failed_call(code),
                code,
                log: format!(
                    "{:?}",
                    sys.machine.kernel_log().iter().take(3).collect::<Vec<_>>()
                ),
            });
        }
    }
    let s1 = snap(sys);
    let k = sys.kernel();
    let d = |i: usize| s1.c[i] - s0.c[i];
    let (pl, ph) = k.pt_pool_pages();
    Ok(Measure {
        host_seconds,
        cycles: s1.cycles - s0.cycles,
        cycles_max: s1.cycles_max - s0.cycles_max,
        focus_cycles: focus.get(),
        ops: ops.get(),
        faults: d(0),
        kmap_atomic: d(1),
        kmap: d(2),
        kunmap: d(12),
        invlpg: d(3),
        flush_tlb_all: d(4),
        pte_maps: d(5),
        pte_pages: d(6) + d(7),
        pool_hits: d(8),
        refills: d(9),
        drains: d(10),
        tlb_shootdowns: d(11).max(s1.shootdowns - s0.shootdowns),
        spins: s1.spins - s0.spins,
        spin_cycles: s1.spin_cycles - s0.spin_cycles,
        kmap_lock: sub3(s1.kl, s0.kl),
        zone_lock: sub3(s1.zl, s0.zl),
        pool_pages: pl + ph,
        tlb_hits: s1.tlb.0 - s0.tlb.0,
        tlb_misses: s1.tlb.1 - s0.tlb.1,
    })
}

/// Boot `m`, run `w` in one process per CPU; for fork work, subtract a baseline run (same
/// machine, no forks) so that the focus cycles are the forks' (copy, child exit) alone.
pub fn run(m: &Machine, w: Work) -> Result<Measure, MicrobenchError> {
    let mut sys = m.boot()?;
    let mut r = run_on(&mut sys, w, m.cpus)?;
    if let Some(b) = w.baseline() {
        let mut sys = m.boot()?;
        let base = run_on(&mut sys, b, m.cpus)?;
        r.focus_cycles = r.cycles.saturating_sub(base.cycles);
    }
    Ok(r)
}
