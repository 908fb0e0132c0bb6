//! Buddy allocator: host ns per order-0 allocation and free, on a 4 GB zone (1 M pages).

use criterion::{criterion_group, criterion_main, Criterion};
use highpte_arch::Pfn;
use highpte_kernel::page_alloc::{FreeArea, MemMap};
use std::hint::black_box;

fn buddy(c: &mut Criterion) {
    let n = 1u64 << 20;
    let mm = MemMap::new(n as usize);
    let mut fa = FreeArea::new(Pfn(0), Pfn(n));
    let _ = fa.free_range_at_boot(&mm, Pfn(0), Pfn(n));
    let mut held: Vec<Pfn> = Vec::with_capacity(4096);
    c.bench_function("buddy alloc+free order 0 (batches of 4096)", |b| {
        b.iter(|| {
            for _ in 0..4096 {
                if let Some(p) = fa.alloc(&mm, 0) {
                    held.push(p);
                }
            }
            for p in held.drain(..) {
                let _ = black_box(fa.free(&mm, p, 0));
            }
        })
    });
    c.bench_function("buddy boot: free 64 GB (16 M pages) block-wise", |b| {
        let big = 1u64 << 24;
        b.iter_batched(
            || MemMap::new(big as usize),
            |mm| {
                let mut fa = FreeArea::new(Pfn(0), Pfn(big));
                black_box(fa.free_range_at_boot(&mm, Pfn(0), Pfn(big)).ok());
                mm
            },
            criterion::BatchSize::LargeInput,
        )
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = buddy
}
criterion_main!(benches);
