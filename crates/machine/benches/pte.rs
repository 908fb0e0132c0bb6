//! What a pte access costs, per strategy (lowmem / atomic / persistent) and paging mode
//! (2-level / PAE): host ns and simulated cycles to map one pte page, read all its entries
//! with the range helper (`for_each`) and unmap it; and the same per pte when each pte is
//! mapped, read and unmapped on its own (what the range helpers save).
//!
//! `cargo bench -p highpte-machine --bench pte` (prints a table at the end; criterion's own
//! figures are per whole page walk and per single-pte access).

use criterion::{criterion_group, criterion_main, Criterion};
use highpte_arch::{Config, MemoryVariant, Pae, PagingMode, TwoLevel, VirtAddr};
use highpte_kernel::mm::{
    MAP_ANONYMOUS, MAP_FIXED, MAP_POPULATE, MAP_PRIVATE, PROT_READ, PROT_WRITE,
};
use highpte_kernel::platform::prelude::*;
use highpte_kernel::{KernelOptions, PteStrategy};
use highpte_machine::{MachineOptions, System};
use std::cell::Cell;
use std::hint::black_box;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// The user range whose pte page is walked (aligned to a pte page span in both modes).
const ADDR: u32 = 0x4000_0000;

/// How the ptes are visited.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    /// One mapping, every entry read through `for_each`, one unmap.
    Range,
    /// For every entry: map, `get`, unmap.
    OneAtATime,
}

fn boot<M: PagingMode>(s: PteStrategy) -> System<M> {
    let v = match (M::PAE, s) {
        (false, PteStrategy::Lowmem) => MemoryVariant::Highmem4g,
        (false, _) => MemoryVariant::Highmem4gHighpte,
        (true, PteStrategy::Lowmem) => MemoryVariant::Highmem64g,
        (true, _) => MemoryVariant::Highmem64gHighpte,
    };
    let cfg = Config::new(v, 1280 << 20, 1, false).expect("config");
    let mut ko = KernelOptions::defaults_for(&cfg);
    ko.strategy = s;
    System::<M>::boot(
        cfg,
        ko,
        MachineOptions {
            tick_period: 0,
            ..Default::default()
        },
    )
    .expect("boot")
}

/// Run `iters` walks of one fully populated pte page in a fresh process; returns (host
/// time, simulated cycles) of the walks alone.
fn walk<M: PagingMode>(sys: &mut System<M>, how: Access, iters: u64) -> (Duration, u64) {
    let out: Rc<Cell<(Duration, u64)>> = Rc::default();
    let o = out.clone();
    sys.spawn_process("walker", Some(0), move |u| {
        let span = M::PTE_PAGE_SPAN;
        u.mmap(
            ADDR,
            u64::from(span),
            PROT_READ | PROT_WRITE,
            MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_POPULATE,
        )
        .expect("mmap");
        let k = u.kernel();
        let h = u.handle();
        let mm = k.mm_of(u.pid()).expect("mm");
        h.enter_kernel("test", |cx| {
            let a = VirtAddr::new(ADDR);
            let mut cur = k.lock_ptes(cx, &mm);
            let (t0, c0) = (Instant::now(), h.now());
            let mut sum = 0u64;
            for _ in 0..iters {
                match how {
                    Access::Range => {
                        let mut map = cur.map(a).expect("a pte page");
                        map.for_each(a, u64::from(ADDR) + u64::from(span), |_, e| {
                            sum = sum.wrapping_add(e.bits());
                            None
                        });
                    }
                    Access::OneAtATime => {
                        for i in 0..M::PTRS_PER_PTE {
                            let ai = VirtAddr::new(ADDR + i * 4096);
                            let map = cur.map(ai).expect("a pte page");
                            sum = sum.wrapping_add(map.get(ai).bits());
                        }
                    }
                }
            }
            o.set((t0.elapsed(), h.now() - c0));
            black_box(sum);
            cur.unlock();
            0
        })
    })
    .expect("spawn");
    let r = sys.run();
    assert!(r.is_completed(), "{r}");
    out.get()
}

fn configs() -> Vec<(&'static str, PteStrategy, bool)> {
    let mut v = Vec::new();
    for pae in [false, true] {
        for s in PteStrategy::ALL {
            v.push((if pae { "pae" } else { "2level" }, s, pae));
        }
    }
    v
}

fn bench_one<M: PagingMode>(c: &mut Criterion, mode: &str, s: PteStrategy) {
    let mut sys = boot::<M>(s);
    let mut g = c.benchmark_group(format!("pte/{mode}/{}", s.name()));
    g.bench_function("page_range", |b| {
        b.iter_custom(|iters| walk(&mut sys, Access::Range, iters).0)
    });
    g.bench_function("page_one_at_a_time", |b| {
        b.iter_custom(|iters| walk(&mut sys, Access::OneAtATime, iters).0)
    });
    g.finish();
}

fn pte(c: &mut Criterion) {
    for (mode, s, pae) in configs() {
        if pae {
            bench_one::<Pae>(c, mode, s);
        } else {
            bench_one::<TwoLevel>(c, mode, s);
        }
    }
    table();
}

/// One row of the summary: per page walked with the range helper, and per pte.
fn row<M: PagingMode>(mode: &str, s: PteStrategy) -> String {
    const N: u64 = 200;
    let mut sys = boot::<M>(s);
    walk(&mut sys, Access::Range, 10); // warm the host caches
    let (rt, rc) = walk(&mut sys, Access::Range, N);
    let (ot, oc) = walk(&mut sys, Access::OneAtATime, N / 10);
    let n = u64::from(M::PTRS_PER_PTE);
    let range_ns = rt.as_nanos() as f64 / N as f64;
    let range_cy = rc as f64 / N as f64;
    let one_ns = ot.as_nanos() as f64 / (N / 10 * n) as f64;
    let one_cy = oc as f64 / (N / 10 * n) as f64;
    format!(
        "| {mode:6} | {:10} | {n:4} | {range_ns:9.0} | {range_cy:9.0} | {:6.2} | {:6.2} | {one_ns:7.1} | {one_cy:7.1} | {:5.1}x |",
        s.name(),
        range_ns / n as f64,
        range_cy / n as f64,
        one_cy / (range_cy / n as f64),
    )
}

fn table() {
    println!();
    println!("| mode   | strategy   | ptes | page ns   | page cyc  | ns/pte | cyc/pte | 1-by-1 ns/pte | 1-by-1 cyc/pte | saved |");
    println!("|--------|------------|------|-----------|-----------|--------|---------|---------|---------|-------|");
    for (mode, s, pae) in configs() {
        let r = if pae {
            row::<Pae>(mode, s)
        } else {
            row::<TwoLevel>(mode, s)
        };
        println!("{r}");
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    targets = pte
}
criterion_main!(benches);
