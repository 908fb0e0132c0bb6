//! The VM's figures, a lowmem configuration (64g, pte pages in low memory) beside an atomic one
//! (64g-highpte, pte pages in high memory behind kmap_atomic):
//!
//! - simple anonymous page faults per host second (map N pages, touch each, munmap, repeat, so
//!   frames and page tables are recycled);
//! - fork of a process with 1 GB populated (simulated cycles and host ms);
//! - munmap of 1 GB populated (simulated cycles and host ms).
//!
//! `cargo bench -p highpte-machine --bench vm` (criterion statistics, then a summary table).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use highpte_arch::{Config, MemoryVariant, Pae};
use highpte_kernel::mm::{MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, PROT_READ, PROT_WRITE};
use highpte_kernel::platform::prelude::*;
use highpte_kernel::KernelOptions;
use highpte_machine::{MachineOptions, RunOutcome, System, User};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

const GB: u64 = 1 << 30;
const RW: u32 = PROT_READ | PROT_WRITE;
const PA: u32 = MAP_PRIVATE | MAP_ANONYMOUS;
/// Pages per round of the fault benchmark (16 MB: several pte pages, recycled each round).
const FAULT_PAGES: u32 = 4096;
const BASE: u32 = 0x1000_0000;

const CONFIGS: [(&str, MemoryVariant); 2] = [
    ("lowmem-64g", MemoryVariant::Highmem64g),
    ("atomic-64g-highpte", MemoryVariant::Highmem64gHighpte),
];

fn boot(v: MemoryVariant) -> System<Pae> {
    let cfg = Config::new(v, 4 * GB, 1, false).expect("config");
    let ko = KernelOptions::defaults_for(&cfg);
    System::<Pae>::boot(cfg, ko, MachineOptions::default()).expect("boot")
}

fn run(sys: &mut System<Pae>, body: impl FnOnce(&mut User<'_, Pae>) -> i32 + 'static) {
    sys.spawn_process("bench", Some(0), body).expect("spawn");
    let out = sys.run();
    assert!(matches!(out, RunOutcome::Completed), "{out}");
}

fn populate(u: &mut User<'_, Pae>, len: u64) -> u32 {
    let a = u.mmap(BASE, len, RW, PA | MAP_FIXED).expect("mmap");
    for i in 0..(len / 4096) as u32 {
        u.store_u32(a + i * 4096, i).expect("touch");
    }
    a
}

/// One measurement: host time and simulated cycles of the measured part.
#[derive(Clone, Copy, Default)]
struct Sample {
    host: Duration,
    cycles: u64,
}

/// `iters` rounds of: map FAULT_PAGES, touch each, munmap. Host time of the whole run.
fn faults(sys: &mut System<Pae>, iters: u64) -> Sample {
    let out = Rc::new(RefCell::new(Sample::default()));
    let o = out.clone();
    run(sys, move |u| {
        let c0 = u.handle().now();
        let t = Instant::now();
        for _ in 0..iters {
            let a = u
                .mmap(BASE, FAULT_PAGES as u64 * 4096, RW, PA | MAP_FIXED)
                .expect("mmap");
            for i in 0..FAULT_PAGES {
                u.store_u32(a + i * 4096, i).expect("touch");
            }
            u.munmap(a, FAULT_PAGES as u64 * 4096).expect("munmap");
        }
        *o.borrow_mut() = Sample {
            host: t.elapsed(),
            cycles: u.handle().now() - c0,
        };
        0
    });
    let s = *out.borrow();
    s
}

/// Populate 1 GB, then `iters` forks (the child exits at once); only the forks are timed.
fn fork_1g(sys: &mut System<Pae>, iters: u64) -> Sample {
    let out = Rc::new(RefCell::new(Sample::default()));
    let o = out.clone();
    run(sys, move |u| {
        populate(u, GB);
        let mut s = Sample::default();
        for _ in 0..iters {
            let c0 = u.handle().now();
            let t = Instant::now();
            let c = u.fork("child", false, |_| 0).expect("fork");
            s.host += t.elapsed();
            s.cycles += u.handle().now() - c0;
            assert_eq!(u.wait().expect("wait").0, c);
        }
        *o.borrow_mut() = s;
        0
    });
    let s = *out.borrow();
    s
}

/// `iters` times: populate 1 GB, munmap it; only the munmaps are timed.
fn munmap_1g(sys: &mut System<Pae>, iters: u64) -> Sample {
    let out = Rc::new(RefCell::new(Sample::default()));
    let o = out.clone();
    run(sys, move |u| {
        let mut s = Sample::default();
        for _ in 0..iters {
            let a = populate(u, GB);
            let c0 = u.handle().now();
            let t = Instant::now();
            u.munmap(a, GB).expect("munmap");
            s.host += t.elapsed();
            s.cycles += u.handle().now() - c0;
        }
        *o.borrow_mut() = s;
        0
    });
    let s = *out.borrow();
    s
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("vm_faults");
    g.throughput(Throughput::Elements(FAULT_PAGES as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(3));
    for (name, v) in CONFIGS {
        let mut sys = boot(v);
        g.bench_function(name, |b| {
            b.iter_custom(|iters| faults(&mut sys, iters).host)
        });
    }
    g.finish();

    let mut g = c.benchmark_group("vm_fork_1g");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(5));
    for (name, v) in CONFIGS {
        let mut sys = boot(v);
        g.bench_function(name, |b| {
            b.iter_custom(|iters| fork_1g(&mut sys, iters).host)
        });
    }
    g.finish();

    let mut g = c.benchmark_group("vm_munmap_1g");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(5));
    for (name, v) in CONFIGS {
        let mut sys = boot(v);
        g.bench_function(name, |b| {
            b.iter_custom(|iters| munmap_1g(&mut sys, iters).host)
        });
    }
    g.finish();

    // the side-by-side summary, simulated cycles beside host time
    println!();
    println!(
        "{:<22} {:>16} {:>14} {:>16} {:>12} {:>16} {:>12}",
        "config",
        "faults/host s",
        "cycles/fault",
        "fork 1G cycles",
        "fork 1G ms",
        "munmap 1G cyc",
        "munmap ms"
    );
    for (name, v) in CONFIGS {
        let mut sys = boot(v);
        let rounds = 20;
        let f = faults(&mut sys, rounds);
        let n = rounds * FAULT_PAGES as u64;
        let fk = fork_1g(&mut sys, 3);
        let mu = munmap_1g(&mut sys, 2);
        println!(
            "{:<22} {:>16.0} {:>14} {:>16} {:>12.1} {:>16} {:>12.1}",
            name,
            n as f64 / f.host.as_secs_f64(),
            f.cycles / n,
            fk.cycles / 3,
            fk.host.as_secs_f64() * 1e3 / 3.0,
            mu.cycles / 2,
            mu.host.as_secs_f64() * 1e3 / 2.0
        );
        let clocks = sys.machine.cpu_clocks();
        println!("{:<22} machine cpu_clocks after the runs: {:?}", "", clocks);
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
