//! The page-table page allocators (the seed's per-CPU pool, 2.4's quicklists, plain buddy)
//! give every page back: after the processes exit and the pools are drained, MemFree is
//! exactly its boot value.

mod highmem_common;

use highmem_common::*;
use highpte_arch::{MemoryVariant, Pae, PagingMode, TwoLevel};
use highpte_kernel::mm::{MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE};
use highpte_kernel::{Counter, Meminfo, PtAllocKind};

/// What the allocator looked like after the workload, and after the drain.
#[derive(Debug)]
struct Drained {
    boot: Meminfo,
    before_drain: Meminfo,
    held_before: (u64, u64),
    drained: u64,
    after: Meminfo,
    held_after: (u64, u64),
    hits: u64,
    pte_allocs: u64,
    pte_freed: u64,
}

/// Two processes on two CPUs each map 40 pte-page spans, touch one page per span, fork a
/// child (which copies the tables), unmap, map and touch again, and exit; then a kernel task drains every pool.
fn workload<M: PagingMode>(v: MemoryVariant, a: PtAllocKind) -> Drained {
    let mut sys = Setup::new(v).pt_alloc(a).boot::<M>();
    let boot = run_raw(&mut sys, 0, |h, k, _| k.meminfo(h));
    for cpu in 0..2 {
        sys.spawn_process("p", Some(cpu), move |u| {
            let span = M::PTE_PAGE_SPAN;
            let len = 40 * u64::from(span);
            let a = u
                .mmap(0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
                .unwrap();
            for i in 0..40 {
                u.store_u32(a + i * span, i).unwrap();
            }
            let c = u
                .fork("child", false, move |c| {
                    c.store_u32(a, 1).unwrap();
                    0
                })
                .unwrap();
            assert_eq!(u.wait().unwrap(), (c, 0));
            // free the tables and build them again: the second round reuses cached pages
            u.munmap(a, len).unwrap();
            let b = u
                .mmap(0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
                .unwrap();
            for i in 0..40 {
                u.store_u32(b + i * span, i).unwrap();
            }
            0
        })
        .unwrap();
    }
    let out = sys.run();
    assert!(out.is_completed(), "{out}");
    let (before_drain, held_before) =
        run_raw(&mut sys, 0, |h, k, _| (k.meminfo(h), k.pt_pool_pages()));
    let (drained, after, held_after) = run_raw(&mut sys, 1, |h, k, cx| {
        let n = k.pt_drain_all_pools(cx);
        (n, k.meminfo(h), k.pt_pool_pages())
    });
    let c = sys.kernel().counters();
    Drained {
        boot,
        before_drain,
        held_before,
        drained,
        after,
        held_after,
        hits: c.get(Counter::PtAllocPoolHits),
        pte_allocs: c.get(Counter::PtePagesAllocHigh) + c.get(Counter::PtePagesAllocLow),
        pte_freed: c.get(Counter::PtePagesFreed),
    }
}

fn check<M: PagingMode>(v: MemoryVariant, a: PtAllocKind) {
    let d = workload::<M>(v, a);
    let ctx = format!("{v:?} {a:?}: {d:#?}");
    // every pte page allocated was freed
    assert!(d.pte_allocs >= 2 * 3 * 40, "{ctx}");
    assert_eq!(d.pte_allocs, d.pte_freed, "{ctx}");
    assert_eq!(d.drained, d.held_before.0 + d.held_before.1, "{ctx}");
    // what the pools held is exactly what MemFree was short of its boot value
    assert_eq!(
        d.before_drain.mem_free + 4 * d.drained,
        d.boot.mem_free,
        "{ctx}"
    );
    assert_eq!(d.before_drain.pt_pools, 4 * d.drained, "{ctx}");
    // and after the drain: all of it back, nothing held, no page tables
    assert_eq!(d.after.mem_free, d.boot.mem_free, "{ctx}");
    assert_eq!(d.after.low_free, d.boot.low_free, "{ctx}");
    assert_eq!(d.after.high_free, d.boot.high_free, "{ctx}");
    assert_eq!(d.held_after, (0, 0), "{ctx}");
    assert_eq!((d.after.pt_pools, d.after.page_tables), (0, 0), "{ctx}");
    match a {
        PtAllocKind::Buddy => {
            assert_eq!((d.hits, d.drained), (0, 0), "{ctx}");
        }
        PtAllocKind::Pool => {
            assert!(d.hits > 0, "{ctx}");
            // bounded: at most pool_high (64) per CPU and class, 2 CPUs, low and high
            assert!(
                d.held_before.0 <= 2 * 64 && d.held_before.1 <= 2 * 64,
                "{ctx}"
            );
            assert!(d.drained > 0, "{ctx}");
        }
        PtAllocKind::Quicklist => {
            assert!(d.hits > 0, "{ctx}");
            // unbounded: every page-table page freed stays on a list
            assert!(d.drained > 2 * 64, "{ctx}");
        }
    }
}

#[test]
fn pool_returns_every_page() {
    check::<TwoLevel>(MemoryVariant::Highmem4gHighpte, PtAllocKind::Pool);
    check::<Pae>(MemoryVariant::Highmem64g, PtAllocKind::Pool);
}
#[test]
fn quicklist_returns_every_page() {
    check::<TwoLevel>(MemoryVariant::Highmem4gHighpte, PtAllocKind::Quicklist);
    check::<Pae>(MemoryVariant::Highmem64g, PtAllocKind::Quicklist);
}
#[test]
fn buddy_returns_every_page() {
    check::<TwoLevel>(MemoryVariant::Highmem4gHighpte, PtAllocKind::Buddy);
    check::<Pae>(MemoryVariant::Highmem64g, PtAllocKind::Buddy);
}
