//! Table 3 of `highpte bench`: the designs side by side (pte strategies on fault-, fork- and
//! munmap-heavy work and sga, the cost models, the persistent kmap lock as CPUs grow, the
//! page-table allocators).

use crate::bench::table::{int, pct, Table};
use crate::cmd_bench::{per, Output, Scale, DESIGN_CPUS, DESIGN_RAM, SWEEP_CPUS};
use crate::plot::Series;
use highpte_arch::size::GB;
use highpte_arch::MemoryVariant;
use highpte_kernel::{PtAllocKind, PteStrategy};
use highpte_machine::cost::CostModel;
use highpte_workload::microbench::{self as sim, Machine, Work};
use highpte_workload::runner::{self, RunOptions};

fn design_works(sc: &Scale) -> [(&'static str, Work); 3] {
    [
        (
            "fault",
            Work::Fault {
                pages: 4096,
                rounds: sc.d_fault_rounds,
            },
        ),
        (
            "fork",
            Work::Fork {
                pages: sc.d_fork_pages,
                forks: sc.d_forks,
            },
        ),
        (
            "munmap",
            Work::Munmap {
                pages: sc.d_munmap_pages,
                rounds: sc.d_munmap_rounds,
            },
        ),
    ]
}

/// 3a. The pte strategies on fault, fork, munmap and sga.
pub(crate) fn designs(out: &mut Output, sc: &Scale) -> anyhow::Result<()> {
    let mut t = Table::new(
        format!(
            "3a. pte strategies side by side ({DESIGN_CPUS} CPUs, one process per CPU, {} RAM, \
             page-table pool)",
            highpte_arch::size::DisplaySize(DESIGN_RAM)
        ),
        &[
            "workload",
            "strategy",
            "sim cycles (all CPUs)",
            "focus cycles",
            "focus cyc / op",
            "vs lowmem",
            "pte_maps",
            "kmap_atomic",
            "kmap",
            "invlpg",
            "flush_tlb_all",
            "shootdowns",
            "spins",
            "spin cycles",
            "host s",
        ],
    );
    let mut overhead = Vec::new();
    for (name, w) in design_works(sc) {
        out.progress(&format!("designs: {name}"));
        let mut low = 0u64;
        for s in PteStrategy::ALL {
            let m = Machine::for_strategy(s, DESIGN_CPUS, DESIGN_RAM);
            let r = sim::run(&m, w)?;
            if s == PteStrategy::Lowmem {
                low = r.focus_cycles;
            }
            let vs = r.focus_cycles as f64 / low.max(1) as f64 - 1.0;
            if s == PteStrategy::Atomic {
                overhead.push((name, vs, r.focus_cycles, low));
            }
            t.row(vec![
                name.into(),
                s.name().into(),
                int(r.cycles),
                int(r.focus_cycles),
                int(r.focus_cycles / r.ops.max(1)),
                if s == PteStrategy::Lowmem {
                    "-".into()
                } else {
                    pct(vs)
                },
                int(r.pte_maps),
                int(r.kmap_atomic),
                int(r.kmap),
                int(r.invlpg),
                int(r.flush_tlb_all),
                int(r.tlb_shootdowns),
                int(r.spins),
                int(r.spin_cycles),
                format!("{:.2}", r.host_seconds),
            ]);
        }
    }
    out.progress("designs: sga");
    sga_rows(&mut t, sc)?;
    t.note(
        "focus cycles: fault = each process's whole mmap/touch/munmap loop; fork = the run's \
         cycles minus the same run without forks (copy_page_range, the child's exit, its page \
         tables); munmap = the munmap calls alone; sga = the whole run (ops = processes)."
            .to_string(),
    );
    t.note(
        "The kmap, invlpg and lock columns count the whole run (for fork and munmap: the \
         MAP_POPULATE that sets the memory up too)."
            .to_string(),
    );
    for (name, vs, a, l) in &overhead {
        t.note(format!(
            "atomic vs lowmem on {name} at {DESIGN_CPUS} CPUs: {} of focus cycles ({} vs {}; \
             includes lock-wait, which moves with the interleaving: see 3a' for 1 CPU).",
            pct(*vs),
            int(*a),
            int(*l),
        ));
    }
    out.table(&t);
    Ok(())
}

/// Table 3a's sga rows: the built-in sga through the workload runner, one row per strategy.
fn sga_rows(t: &mut Table, sc: &Scale) -> anyhow::Result<()> {
    let mut low = 0u64;
    for s in PteStrategy::ALL {
        let mut spec = highpte_workload::builtin("sga").expect("built-in sga");
        spec.machine.config = if s.highmem_ptes() {
            MemoryVariant::Highmem64gHighpte
        } else {
            MemoryVariant::Highmem64g
        };
        spec.machine.strategy = Some(s);
        spec.processes.count = sc.sga_processes;
        if let Some(r) = spec.processes.ramp.as_mut() {
            r.start = sc.sga_processes.min(100);
            r.step = 100;
        }
        let r = runner::run(&spec, &RunOptions::default())?;
        let c = |n: &str| {
            r.counters
                .iter()
                .chain(r.machine.iter())
                .find(|(k, _)| k == n)
                .map(|x| x.1)
                .unwrap_or(0)
        };
        if s == PteStrategy::Lowmem {
            low = r.cycles_all_cpus;
        }
        t.row(vec![
            format!("sga ({} procs)", r.processes_started),
            s.name().into(),
            int(r.cycles_all_cpus),
            int(r.cycles_all_cpus),
            int(r.cycles_all_cpus / u64::from(r.processes_started.max(1))),
            if s == PteStrategy::Lowmem {
                "-".into()
            } else {
                pct(r.cycles_all_cpus as f64 / low.max(1) as f64 - 1.0)
            },
            int(c("pte_maps")),
            int(c("kmap_atomic")),
            int(c("kmap")),
            int(c("invlpg")),
            int(c("flush_tlb_all")),
            int(c("tlb_shootdowns")),
            int(c("spins")),
            "-".into(),
            format!("{:.2}", r.host_seconds),
        ]);
    }
    Ok(())
}

/// 3a'. Why atomic costs what it costs: the overhead under cost-model variants.
pub(crate) fn cost_models(out: &mut Output, sc: &Scale) -> anyhow::Result<()> {
    out.progress("designs: cost-model variants");
    let p4 = CostModel::pentium4_xeon_2002();
    let models: Vec<(&str, CostModel)> = vec![
        ("pentium4-xeon-2002 (default)", p4.clone()),
        ("modern-core", CostModel::modern_core()),
        (
            "pentium4, invlpg = 0",
            CostModel {
                invlpg: 0,
                ..p4.clone()
            },
        ),
        (
            "pentium4, tlb_miss_per_level = 0",
            CostModel {
                tlb_miss_per_level: 0,
                ..p4.clone()
            },
        ),
        (
            "pentium4, both 0",
            CostModel {
                invlpg: 0,
                tlb_miss_per_level: 0,
                ..p4
            },
        ),
    ];
    let works = design_works(sc);
    let mut t = Table::new(
        "3a'. atomic vs lowmem, contention-free (1 CPU, one process, the per-process work of \
         3a), under cost-model variants: extra focus cycles per operation and in % of lowmem's",
        &[
            "cost model",
            "fault: extra cyc/fault",
            "fault %",
            "fork: extra cyc/fork",
            "fork %",
            "munmap: extra cyc/munmap",
            "munmap %",
        ],
    );
    let mut verdict = Vec::new();
    for (mi, (label, cm)) in models.into_iter().enumerate() {
        let mut row = vec![label.to_string()];
        for (wname, w) in works {
            let mut f = [0u64; 2];
            let mut ops = 1;
            for (i, s) in [PteStrategy::Lowmem, PteStrategy::Atomic]
                .into_iter()
                .enumerate()
            {
                let mut m = Machine::for_strategy(s, 1, DESIGN_RAM);
                m.cost = cm.clone();
                let r = sim::run(&m, w)?;
                f[i] = r.focus_cycles;
                ops = r.ops.max(1);
            }
            let extra = f[1] as f64 - f[0] as f64;
            row.push(format!("{:.0}", extra / ops as f64));
            let frac = extra / f[0].max(1) as f64;
            row.push(pct(frac));
            if mi == 0 {
                verdict.push(format!(
                    "{wname} {} ({})",
                    pct(frac),
                    if frac <= 0.03 { "met" } else { "NOT met" }
                ));
            }
        }
        t.row(row);
    }
    t.note(format!(
        "Target: atomic at most 3% more kernel cycles than lowmem (default model): {}.",
        verdict.join(", ")
    ));
    t.note(
        "Zeroing invlpg removes the flush a kmap_atomic of a high page pays on every map; \
         zeroing tlb_miss_per_level removes the page walk of the first access through the \
         freshly mapped slot (and every other TLB miss, on both sides)."
            .to_string(),
    );
    out.table(&t);
    Ok(())
}

/// 3b. The persistent strategy's kmap_lock as CPUs go 1 to 16 (and atomic for scale).
pub(crate) fn sweep(out: &mut Output, sc: &Scale) -> anyhow::Result<()> {
    let mut t = Table::new(
        "3b. kmap_lock contention as CPUs grow (one process per CPU; persistent kmap vs \
         kmap_atomic)",
        &[
            "workload",
            "CPUs",
            "strategy",
            "kmap_lock acq",
            "contended (>=)",
            "contended % (>=)",
            "spins (>=)",
            "spin cycles, all locks",
            "flush_tlb_all",
            "focus cyc / op",
            "sim duration (cycles)",
            "host s",
        ],
    );
    let works = [
        (
            "fault",
            Work::Fault {
                pages: 1024,
                rounds: sc.sweep_rounds,
            },
        ),
        (
            "fork",
            Work::Fork {
                pages: 4096,
                forks: sc.sweep_rounds.max(2),
            },
        ),
    ];
    let mut contended_series: Vec<(&str, Vec<Series>)> = Vec::new();
    let mut cost_series = Vec::new();
    for (name, w) in works {
        for s in [PteStrategy::Persistent, PteStrategy::Atomic] {
            out.progress(&format!("kmap_lock sweep: {name} {s}"));
            let mut pts_c = Vec::new();
            let mut pts_k = Vec::new();
            for cpus in SWEEP_CPUS {
                let m = Machine::for_strategy(s, cpus, 8 * GB);
                let r = sim::run(&m, w)?;
                let (lock_acq, con, spins) = r.kmap_lock;
                let acq = lock_acq.max(r.kmap + r.kunmap);
                let cpo = per(r.focus_cycles, r.ops);
                pts_c.push((f64::from(cpus), per(r.spin_cycles, r.ops)));
                pts_k.push((f64::from(cpus), cpo));
                t.row(vec![
                    name.into(),
                    cpus.to_string(),
                    s.name().into(),
                    int(acq),
                    int(con),
                    format!("{:.1}", 100.0 * per(con, acq)),
                    int(spins),
                    int(r.spin_cycles),
                    int(r.flush_tlb_all),
                    format!("{cpo:.0}"),
                    int(r.cycles_max),
                    format!("{:.2}", r.host_seconds),
                ]);
            }
            match contended_series.iter_mut().find(|(n, _)| *n == name) {
                Some((_, v)) => v.push(Series {
                    label: format!("{name}, {s}"),
                    points: pts_c,
                }),
                None => contended_series.push((
                    name,
                    vec![Series {
                        label: format!("{name}, {s}"),
                        points: pts_c,
                    }],
                )),
            }
            cost_series.push(Series {
                label: format!("{name}, {s}"),
                points: pts_k,
            });
        }
    }
    t.note(
        "kmap_atomic takes no lock at all (its kmap_lock column stays 0); the persistent \
         strategy takes the global kmap_lock for every kmap and kunmap of a pte page \
         (acquisitions = kmap + kunmap calls). The lock's own contended/spin counters are lower \
         bounds: SpinLock::lock copies its counters before spinning and stores the copy after, \
         so acquisitions by others during the spin are lost (crates/kernel/src/sync.rs). The \
         machine's spin cycles (all locks, exact) minus atomic's show the kmap_lock's cost."
            .to_string(),
    );
    out.table(&t);
    for (name, series) in &contended_series {
        out.plot(
            &format!("lock-wait-{name}.svg"),
            &format!(
                "{name}: lock-wait (spin cycles, all locks) per operation vs CPUs, persistent vs atomic"
            ),
            "CPUs",
            "spin cycles / op",
            series,
        )?;
    }
    out.plot(
        "cycles-per-op-vs-cpus.svg",
        "simulated cycles per operation vs CPUs (fault: per fault, fork: per fork)",
        "CPUs",
        "cycles / op",
        &cost_series,
    )?;
    Ok(())
}

/// 3c. The page-table allocators.
pub(crate) fn allocators(out: &mut Output, sc: &Scale) -> anyhow::Result<()> {
    let tables = 256;
    let mut t = Table::new(
        format!(
            "3c. page-table allocators ({DESIGN_CPUS} CPUs, atomic ptes; each process {} x \
             (touch one page in each of {tables} 2 MB spans, munmap): one pte page per touch)",
            sc.pt_rounds
        ),
        &[
            "allocator",
            "pte pages",
            "cycles / pte page",
            "vs pool",
            "pool hits",
            "refills",
            "drains",
            "zone lock acq",
            "contended",
            "spins",
            "pages in pools after",
            "host s",
        ],
    );
    let mut pool = 0.0;
    for a in PtAllocKind::ALL {
        out.progress(&format!("allocators: {a}"));
        let mut m = Machine::for_strategy(PteStrategy::Atomic, DESIGN_CPUS, DESIGN_RAM);
        m.pt_alloc = a;
        let r = sim::run(
            &m,
            Work::PtPages {
                tables,
                rounds: sc.pt_rounds,
            },
        )?;
        let cpp = per(r.focus_cycles, r.pte_pages);
        if a == PtAllocKind::Pool {
            pool = cpp;
        }
        t.row(vec![
            a.name().into(),
            int(r.pte_pages),
            format!("{cpp:.0}"),
            if a == PtAllocKind::Pool {
                "-".into()
            } else {
                pct(cpp / pool - 1.0)
            },
            int(r.pool_hits),
            int(r.refills),
            int(r.drains),
            int(r.zone_lock.0),
            int(r.zone_lock.1),
            int(r.zone_lock.2),
            int(r.pool_pages),
            format!("{:.2}", r.host_seconds),
        ]);
    }
    t.note(
        "cycles / pte page: the whole loop (the fault that needs the pte page, zeroing the data \
         page, mmap/munmap) divided by pte pages allocated; the allocators differ only in the \
         page-table part. Zone lock: all zones, every page allocation (data pages too)."
            .to_string(),
    );
    out.table(&t);
    Ok(())
}
