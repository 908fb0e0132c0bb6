//! Reclaim without swap, with memory full of clean page cache:
//!
//! * processes that need memory get it from the cache (no ENOMEM, no kill while clean cache
//!   is left), and the cache shrinks by about what they took, not more (no zone ends with
//!   more free than its `pages_high` watermark and a few reclaim batches);
//! * kswapd runs without swap;
//! * the page-table scan does not walk anonymous memory it cannot swap;
//! * a request that needs low memory does not throw away high-memory cache that cannot help
//!   it (reclaim works on the request's classzone).

mod vm_common;
use highpte_arch::{EntryFlags, MemoryVariant, PagingMode};
use highpte_kernel::fs::{O_CREAT, O_RDWR};
use highpte_kernel::mm::reclaim::{ReclaimKind, ZoneMask, SWAP_CLUSTER_MAX};
use highpte_kernel::mm::{MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, PROT_READ, PROT_WRITE};
use highpte_kernel::page_alloc::{PageOwner, Watermarks, ZoneType, GFP_KERNEL};
use highpte_kernel::Counter;
use highpte_machine::TaskHandle;
use std::cell::RefCell;
use std::rc::Rc;
use vm_common::*;

const RW: u32 = PROT_READ | PROT_WRITE;

/// Write `mb` MB of zeros (no host memory for the disk blocks) to `name` and write it back,
/// so the cache is clean.
fn write_clean_file<M: PagingMode>(u: &mut highpte_machine::User<'_, M>, name: &str, mb: u64) {
    let fd = u.open(name, O_CREAT | O_RDWR).unwrap();
    let buf = vec![0u8; MB as usize];
    for _ in 0..mb {
        assert_eq!(u.write(fd, &buf), Ok(MB as usize));
    }
    u.fsync(fd).unwrap();
    u.close(fd).unwrap();
}

/// Free pages per zone.
fn zone_free<M: PagingMode>(u: &highpte_machine::User<'_, M>) -> [u64; 3] {
    ZoneType::ALL.map(|z| u.kernel().zone_free_pages(u.handle(), z))
}

/// (present pages, `pages_high`) of `zone`.
fn zone_high<M: PagingMode>(u: &highpte_machine::User<'_, M>, zone: ZoneType) -> (u64, u64) {
    let r = u.kernel().zone_report(u.handle());
    let present = r[zone as usize].3;
    (present, Watermarks::for_present_pages(present).high)
}

/// RAM nearly full of clean cache, no swap; then a process maps and touches anonymous memory
/// worth a third of RAM. Every page is granted (clean cache is there to take), the cache
/// shrinks by about what the process took (reclaim leaves no more memory free than the
/// watermarks ask for), kswapd ran, and the scan never looked at a pte: without swap there is
/// nothing it could do with an anonymous page.
fn cache_gives_way<M: PagingMode>(v: MemoryVariant, ram: u64, reclaim: ReclaimKind) {
    let what = format!("{v} {reclaim}");
    let mut sys = boot_with::<M>(v, ram, 2, |ko| {
        ko.swap_pages = 0;
        ko.reclaim = reclaim;
    });
    let b = quiesce(&mut sys);
    let w = what.clone();
    let code = run_process(&mut sys, move |u| {
        write_clean_file(u, "cache", (ram - 96 * MB) / MB);
        let m0 = mi(u);
        assert_eq!(m0.swap_total, 0);
        assert_eq!(m0.dirty, 0, "{w}");
        assert!(
            m0.cached > (ram - 160 * MB) / 1024,
            "{w}: Cached {} kB",
            m0.cached
        );
        let scanned0 = u.kernel().counters().get(Counter::PgScan);
        let free0 = zone_free(u);
        let len = ram / 3;
        let n = (len / 4096) as u32;
        let a = u.mmap(0, len, RW, MAP_PRIVATE | MAP_ANONYMOUS).unwrap();
        for i in 0..n {
            // a refused page would be SIGKILL (OOM) or SIGBUS here
            u.store_u32(a + i * PAGE, stamp(i, 1))
                .unwrap_or_else(|s| panic!("{w}: page {i} of {n}: {s:?}"));
        }
        let m1 = mi(u);
        for i in (0..n).step_by(61) {
            assert_eq!(
                u.load_u32(a + i * PAGE).unwrap(),
                stamp(i, 1),
                "{w}: page {i}"
            );
        }
        let (rss, ptes) = rss_ptes(u);
        let took_kb = (rss + ptes) * 4;
        let dropped_kb = m0.cached - m1.cached;
        assert!(m1.cached > 0, "{w}: the whole cache went");
        // the cache paid for what did not fit in the free memory, and little more: no zone
        // has more free than before or than its pages_high watermark asks for, give or take
        // a few reclaim batches (kswapd's and the process's)
        assert!(
            dropped_kb <= took_kb,
            "{w}: {dropped_kb} kB dropped for {took_kb} kB"
        );
        let free1 = zone_free(u);
        for z in ZoneType::ALL {
            let (present, high) = zone_high(u, z);
            let bound = free0[z as usize].max(high) + 4 * SWAP_CLUSTER_MAX;
            assert!(
                present == 0 || free1[z as usize] <= bound,
                "{w}: {} pages free in {z:?} after reclaim, {} before, pages_high {high}",
                free1[z as usize],
                free0[z as usize]
            );
        }
        let k = u.kernel();
        assert!(k.counters().get(Counter::PageCacheSteal) > 0, "{w}");
        assert!(
            k.counters().get(Counter::KswapdRuns) > 0,
            "{w}: kswapd never ran"
        );
        assert_eq!(
            k.counters().get(Counter::PgScan),
            scanned0,
            "{w}: reclaim looked at ptes of anonymous memory it cannot swap"
        );
        inv(u, &w);
        u.munmap(a, len).unwrap();
        u.unlink("cache").unwrap();
        0
    });
    assert_eq!(code, 0, "{what}");
    assert_no_leak(&mut sys, &b, &what);
}

#[test]
fn clean_cache_gives_way_without_swap() {
    for (v, ram) in [
        (MemoryVariant::NoHighmem, 256 * MB),
        (MemoryVariant::Highmem4g, GB),
        (MemoryVariant::Highmem4gHighpte, GB),
        (MemoryVariant::Highmem64gHighpte, GB),
    ] {
        dispatch!(v, cache_gives_way(v, ram, ReclaimKind::Scan));
    }
    let v = MemoryVariant::Highmem4gHighpte;
    cache_gives_way::<highpte_arch::TwoLevel>(v, GB, ReclaimKind::Rmap);
}

/// What the low-memory hog saw: page-cache pages in high and low memory before, low pages
/// granted, page-cache pages after, high pages reclaimed since boot.
struct LowHog {
    high_cache: u64,
    low_cache: u64,
    got: u64,
    cached_after: u64,
    high_reclaimed: u64,
}

/// High memory holds a clean file, low memory has no cache; a kernel task then allocates
/// `GFP_KERNEL` pages until it is refused. Without swap nothing in low memory can be
/// reclaimed, so the refusal is right, and it comes without throwing away the high-memory
/// cache, which could not have helped (before reclaim worked on the request's classzone, it
/// dropped the whole cache, 32 pages at a time, before giving up).
fn low_request_keeps_high_cache<M: PagingMode>(v: MemoryVariant, ram: u64) {
    let what = format!("{v}");
    let mut sys = boot_with::<M>(v, ram, 2, |ko| ko.swap_pages = 0);
    let b = quiesce(&mut sys);
    let file_mb = (b.mi.high_free * 1024).saturating_sub(24 * MB) / MB;
    assert!(file_mb >= 64, "{what}: HighFree {} kB", b.mi.high_free);
    let code = run_process(&mut sys, move |u| {
        write_clean_file(u, "high", file_mb);
        0
    });
    assert_eq!(code, 0);
    let out: Rc<RefCell<Option<LowHog>>> = Rc::new(RefCell::new(None));
    let o = out.clone();
    let k = sys.kernel_cell();
    sys.machine
        .spawn("lowhog", Some(0), move |h: &TaskHandle<M>| {
            let k = k.get(h).unwrap();
            h.enter_kernel("test", |cx| {
                let high_cache = k.page_cache_pages_in(ZoneMask::of(ZoneType::HighMem));
                let low_cache = k.page_cache_pages_in(ZoneMask::classzone(ZoneType::Normal));
                let mut got = Vec::new();
                while let Some(pfn) = k.alloc_pages(
                    cx,
                    GFP_KERNEL,
                    0,
                    PageOwner::KernelObject,
                    "kmem_cache_alloc",
                ) {
                    got.push(pfn);
                }
                let cached_after = k.page_cache_pages();
                let high_reclaimed = k.reclaim_stats(ZoneType::HighMem).1;
                for &pfn in &got {
                    k.free_pages(cx, pfn, 0);
                }
                *o.borrow_mut() = Some(LowHog {
                    high_cache,
                    low_cache,
                    got: got.len() as u64,
                    cached_after,
                    high_reclaimed,
                });
                0
            })
        })
        .unwrap();
    let r = sys.run();
    assert!(matches!(r, highpte_machine::RunOutcome::Completed), "{r}");
    let LowHog {
        high_cache,
        low_cache,
        got,
        cached_after,
        high_reclaimed,
    } = out.borrow_mut().take().unwrap();
    assert!(
        high_cache >= file_mb * 256 - 1024,
        "{what}: {high_cache} cache pages in HighMem"
    );
    assert_eq!(low_cache, 0, "{what}: the file spilled into low memory");
    assert!(
        got * 4 > b.mi.low_free * 9 / 10,
        "{what}: only {got} low pages granted"
    );
    assert_eq!(
        high_reclaimed, 0,
        "{what}: high-memory cache reclaimed for a low request"
    );
    assert_eq!(cached_after, high_cache, "{what}: cache pages dropped");
    let code = run_process(&mut sys, |u| {
        u.unlink("high").unwrap();
        0
    });
    assert_eq!(code, 0);
    assert_no_leak(&mut sys, &b, &what);
}

#[test]
fn low_memory_shortage_keeps_high_memory_cache() {
    for v in [MemoryVariant::Highmem4gHighpte, MemoryVariant::Highmem64g] {
        dispatch!(v, low_request_keeps_high_cache(v, GB));
    }
}

/// Without swap, reclaim that must unmap file pages walks only the file mapping: the
/// accessed bits of anonymous ptes, which the scan (or the rmap clock) would clear when it
/// looked at them, are all still set afterwards. Memory holds anonymous pages touched once,
/// then a clean file mapped and read through (so the page cache has no unmapped page to
/// drop), then more anonymous memory that needs the file pages back.
fn walk_only_files<M: PagingMode>(v: MemoryVariant, ram: u64, reclaim: ReclaimKind) {
    let what = format!("{v} {reclaim}");
    let mut sys = boot_with::<M>(v, ram, 2, |ko| {
        ko.swap_pages = 0;
        ko.reclaim = reclaim;
    });
    let b = quiesce(&mut sys);
    let w = what.clone();
    let code = run_process(&mut sys, move |u| {
        let xlen = ram / 8;
        let x = u.mmap(0, xlen, RW, MAP_PRIVATE | MAP_ANONYMOUS).unwrap();
        for i in 0..(xlen / 4096) as u32 {
            u.store_u32(x + i * PAGE, stamp(i, 2)).unwrap();
        }
        let flen = (ram - xlen - 160 * MB) / MB * MB;
        write_clean_file(u, "mapped", flen / MB);
        let fd = u.open("mapped", O_RDWR).unwrap();
        let f = u.mmap_file(0, flen, PROT_READ, MAP_SHARED, fd, 0).unwrap();
        for i in 0..(flen / 4096) as u32 {
            assert_eq!(u.load_u32(f + i * PAGE), Ok(0), "{w}: file page {i}");
        }
        let scanned0 = u.kernel().counters().get(Counter::PgScan);
        let ylen = ram / 4;
        let y = u.mmap(0, ylen, RW, MAP_PRIVATE | MAP_ANONYMOUS).unwrap();
        for i in 0..(ylen / 4096) as u32 {
            u.store_u32(y + i * PAGE, stamp(i, 3))
                .unwrap_or_else(|s| panic!("{w}: page {i}: {s:?}"));
        }
        let k = u.kernel();
        assert!(
            k.counters().get(Counter::PgScan) > scanned0,
            "{w}: reclaim never unmapped a file page"
        );
        assert!(k.counters().get(Counter::PgUnmapped) > 0, "{w}");
        let mm = k.mm_of(u.pid()).unwrap();
        let mut aged = 0;
        for i in 0..(xlen / 4096) as u32 {
            let e = u
                .handle()
                .enter_kernel("follow_page", |cx| k.follow_page(cx, &mm, x + i * PAGE))
                .unwrap();
            if !e.has(EntryFlags::ACCESSED) {
                aged += 1;
            }
        }
        assert_eq!(
            aged, 0,
            "{w}: reclaim aged {aged} anonymous ptes it could not swap"
        );
        for i in (0..(xlen / 4096) as u32).step_by(31) {
            assert_eq!(u.load_u32(x + i * PAGE).unwrap(), stamp(i, 2), "{w}");
        }
        inv(u, &w);
        u.munmap(f, flen).unwrap();
        u.munmap(x, xlen).unwrap();
        u.munmap(y, ylen).unwrap();
        u.close(fd).unwrap();
        u.unlink("mapped").unwrap();
        0
    });
    assert_eq!(code, 0, "{what}");
    assert_no_leak(&mut sys, &b, &what);
}

#[test]
fn reclaim_without_swap_walks_only_file_mappings() {
    for reclaim in ReclaimKind::ALL {
        let v = MemoryVariant::Highmem4gHighpte;
        walk_only_files::<highpte_arch::TwoLevel>(v, GB, reclaim);
        let v = MemoryVariant::Highmem64gHighpte;
        walk_only_files::<highpte_arch::Pae>(v, GB, reclaim);
    }
}
