//! The three pte strategies (lowmem, atomic, persistent) on the hot paths the designs differ
//! in, one process on one CPU: an anonymous write fault, a fork of 32 MB populated (copy and the
//! child's exit), a munmap of 32 MB populated. Criterion measures host time; the table at the
//! end prints simulated cycles per operation beside host time, and the atomic-vs-lowmem
//! overhead in cycles.
//!
//! `cargo bench -p highpte-machine --bench designs` (the whole suite with tables:
//! `highpte bench`).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use highpte_arch::{Config, MemoryVariant, Pae};
use highpte_kernel::mm::{
    MAP_ANONYMOUS, MAP_FIXED, MAP_POPULATE, MAP_PRIVATE, PROT_READ, PROT_WRITE,
};
use highpte_kernel::platform::prelude::*;
use highpte_kernel::{KernelOptions, PteStrategy};
use highpte_machine::{MachineOptions, System, User};
use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

const RW: u32 = PROT_READ | PROT_WRITE;
const PA: u32 = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED;
const BASE: u32 = 0x1000_0000;
/// Pages per fault round (16 MB) and per fork / munmap (32 MB).
const FAULT_PAGES: u32 = 4096;
const BIG: u64 = 32 << 20;

#[derive(Clone, Copy)]
enum Op {
    Fault,
    Fork,
    Munmap,
}

fn boot(s: PteStrategy) -> System<Pae> {
    let v = if s.highmem_ptes() {
        MemoryVariant::Highmem64gHighpte
    } else {
        MemoryVariant::Highmem64g
    };
    let cfg = Config::new(v, 2 << 30, 1, false).expect("config");
    let mut ko = KernelOptions::defaults_for(&cfg);
    ko.strategy = s;
    System::<Pae>::boot(cfg, ko, MachineOptions::default()).expect("boot")
}

/// `iters` operations; returns (host time, simulated cycles, operations) of the measured part.
fn run(sys: &mut System<Pae>, op: Op, iters: u64) -> (Duration, u64, u64) {
    let out: Rc<Cell<(Duration, u64, u64)>> = Rc::default();
    let o = out.clone();
    sys.spawn_process("bench", Some(0), move |u: &mut User<'_, Pae>| {
        let mut host = Duration::ZERO;
        let mut cycles = 0;
        let ops;
        match op {
            Op::Fault => {
                let (t, c) = (Instant::now(), u.handle().now());
                for r in 0..iters {
                    let a = u
                        .mmap(BASE, u64::from(FAULT_PAGES) * 4096, RW, PA)
                        .expect("mmap");
                    for i in 0..FAULT_PAGES {
                        u.store_u32(a + i * 4096, i ^ r as u32).expect("touch");
                    }
                    u.munmap(a, u64::from(FAULT_PAGES) * 4096).expect("munmap");
                }
                host = t.elapsed();
                cycles = u.handle().now() - c;
                ops = iters * u64::from(FAULT_PAGES);
            }
            Op::Fork => {
                u.mmap(BASE, BIG, RW, PA | MAP_POPULATE).expect("mmap");
                for _ in 0..iters {
                    let (t, c) = (Instant::now(), u.handle().now());
                    let child = u.fork("child", false, |_| 0).expect("fork");
                    assert_eq!(u.wait().expect("wait").0, child);
                    host += t.elapsed();
                    cycles += u.handle().now() - c;
                }
                ops = iters;
            }
            Op::Munmap => {
                for _ in 0..iters {
                    let a = u.mmap(BASE, BIG, RW, PA | MAP_POPULATE).expect("mmap");
                    let (t, c) = (Instant::now(), u.handle().now());
                    u.munmap(a, BIG).expect("munmap");
                    host += t.elapsed();
                    cycles += u.handle().now() - c;
                }
                ops = iters;
            }
        }
        o.set((host, cycles, ops));
        0
    })
    .expect("spawn");
    let r = sys.run();
    assert!(r.is_completed(), "{r}");
    out.get()
}

const OPS: [(&str, Op); 3] = [
    ("fault", Op::Fault),
    ("fork_32m", Op::Fork),
    ("munmap_32m", Op::Munmap),
];

fn designs(c: &mut Criterion) {
    for (name, op) in OPS {
        let mut g = c.benchmark_group(format!("designs/{name}"));
        if matches!(op, Op::Fault) {
            g.throughput(Throughput::Elements(u64::from(FAULT_PAGES)));
        }
        for s in PteStrategy::ALL {
            let mut sys = boot(s);
            g.bench_function(s.name(), |b| {
                b.iter_custom(|iters| run(&mut sys, op, iters).0)
            });
        }
        g.finish();
    }
    // simulated cycles beside host time (the fork's wait includes the child's exit: on one CPU
    // the parent's clock is the CPU's clock)
    println!();
    println!("| op         | strategy   | cycles / op | vs lowmem | host us / op |");
    println!("|------------|------------|-------------|-----------|--------------|");
    for (name, op) in OPS {
        let mut low = 0.0;
        for s in PteStrategy::ALL {
            let mut sys = boot(s);
            run(&mut sys, op, 2);
            let (h, cy, n) = run(&mut sys, op, 8);
            let cpo = cy as f64 / n as f64;
            if s == PteStrategy::Lowmem {
                low = cpo;
            }
            println!(
                "| {name:10} | {:10} | {cpo:11.0} | {:+8.1}% | {:12.2} |",
                s.name(),
                (cpo / low - 1.0) * 100.0,
                h.as_secs_f64() * 1e6 / n as f64
            );
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    targets = designs
}
criterion_main!(benches);
