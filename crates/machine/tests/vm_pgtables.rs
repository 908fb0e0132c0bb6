//! Page tables of processes: munmap frees exactly the pte pages it empties; pte pages land in
//! high memory exactly in the highpte configurations; exit frees everything (zero leaks) in all
//! five configurations, with all three pte strategies and all three page-table allocators.

mod vm_common;
use highpte_arch::{MemoryVariant, PagingMode};
use highpte_kernel::mm::shm::IPC_CREAT;
use highpte_kernel::mm::{
    MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, MAP_SHARED, MREMAP_MAYMOVE, PROT_READ, PROT_WRITE,
};
use highpte_kernel::{PtAllocKind, PteStrategy};
use highpte_machine::User;
use vm_common::*;

const RW: u32 = PROT_READ | PROT_WRITE;
const PA: u32 = MAP_PRIVATE | MAP_ANONYMOUS;

/// Map 64 MB, touch every page, then munmap pieces and count the pte pages freed.
fn munmap_frees_pte_pages<M: PagingMode>(u: &mut User<'_, M>) -> i32 {
    let span = M::PTE_PAGE_SPAN; // 4 MB or 2 MB
    let per = 64 * MB as u32 / span; // pte pages of 64 MB: 16 or 32
    let a = u.mmap(0x2000_0000, 64 * MB, RW, PA | MAP_FIXED).unwrap();
    for i in 0..(64 * MB as u32 / PAGE) {
        u.store_u32(a + i * PAGE, i).unwrap();
    }
    let (rss, ptes) = rss_ptes(u);
    assert_eq!((rss, ptes), (16384, per as u64));
    let roots = if M::PAE { 4 } else { 1 }; // pgd (+ 3 pmd pages)
    assert_eq!(mi(u).page_tables, (roots + per as u64) * 4);
    inv(u, "populated");

    // the middle 16 MB, aligned to the pte-page span: exactly 16 MB / span pages go
    let want = 16 * MB as u32 / span; // 4 (2-level) or 8 (PAE)
    let pt0 = mi(u).page_tables;
    u.munmap(a + 24 * MB as u32, 16 * MB).unwrap();
    assert_eq!(rss_ptes(u), (16384 - 4096, (per - want) as u64));
    assert_eq!(mi(u).page_tables, pt0 - want as u64 * 4);
    inv(u, "aligned munmap");

    // an unaligned range: the two pte pages it covers only in part stay, the ones in between go
    let lo = a + 44 * MB as u32 + PAGE; // inside a span (44 MB is a multiple of 4 MB and 2 MB)
    let hi = a + 60 * MB as u32 - PAGE;
    let inner = (hi / span - lo.div_ceil(span)) as u64; // fully covered spans
    assert_eq!(inner, if M::PAE { 6 } else { 2 });
    let (_, p0) = rss_ptes(u);
    let pt0 = mi(u).page_tables;
    u.munmap(lo, (hi - lo) as u64).unwrap();
    assert_eq!(
        rss_ptes(u),
        (16384 - 4096 - (hi - lo) as u64 / 4096, p0 - inner)
    );
    assert_eq!(mi(u).page_tables, pt0 - inner * 4);
    assert_eq!(u.load_u32(lo - PAGE), Ok((lo - PAGE - a) / PAGE));
    assert_eq!(u.load_u32(hi), Ok((hi - a) / PAGE));
    inv(u, "unaligned munmap");

    // unmapping the one page left in each partial pte page frees it
    u.munmap(hi, 4096).unwrap();
    assert_eq!(rss_ptes(u).1, p0 - inner - 1);
    u.munmap(lo - PAGE, 4096).unwrap();
    assert_eq!(rss_ptes(u).1, p0 - inner - 2);
    assert_eq!(mi(u).page_tables, pt0 - (inner + 2) * 4);
    inv(u, "partial emptied");

    // a range that covers no mapping frees nothing
    let (r0, p0) = rss_ptes(u);
    u.munmap(a + 24 * MB as u32, 16 * MB).unwrap();
    assert_eq!(rss_ptes(u), (r0, p0));

    // the rest
    u.munmap(a, 64 * MB).unwrap();
    assert_eq!(rss_ptes(u), (0, 0));
    assert_eq!(mi(u).page_tables, roots * 4);
    inv(u, "all unmapped");
    0
}

#[test]
fn munmap_frees_exactly_the_emptied_pte_pages() {
    for (v, ram) in [
        (MemoryVariant::Highmem4g, GB),
        (MemoryVariant::Highmem4gHighpte, GB),
        (MemoryVariant::Highmem64g, GB),
        (MemoryVariant::Highmem64gHighpte, GB),
    ] {
        fn one<M: PagingMode>(v: MemoryVariant, ram: u64) {
            let mut sys = boot::<M>(v, ram, 2);
            let b = quiesce(&mut sys);
            assert_eq!(run_process(&mut sys, munmap_frees_pte_pages::<M>), 0);
            assert_no_leak(&mut sys, &b, v.name());
        }
        dispatch!(v, one(v, ram));
    }
}

/// User pte pages are high exactly with highpte; pgd and pmd pages are always low.
#[test]
fn pte_pages_land_in_highmem_exactly_with_highpte() {
    fn one<M: PagingMode>(v: MemoryVariant, ram: u64) {
        let mut sys = boot::<M>(v, ram, 2);
        let code = run_process(&mut sys, move |u| {
            let a = u.mmap(0, 32 * MB, RW, PA).unwrap();
            for i in 0..(32 * MB as u32 / (64 * 1024)) {
                u.store_u32(a + i * 64 * 1024, i).unwrap();
            }
            let m = mi(u);
            let (_, ptes) = rss_ptes(u);
            assert_eq!(ptes, 32 * MB / M::PTE_PAGE_SPAN as u64);
            let roots = if M::PAE { 4 } else { 1 };
            if v.highpte() {
                assert_eq!(m.page_tables_high, ptes * 4, "{v}");
                assert_eq!(m.page_tables_low, roots * 4, "{v}: only pgd/pmd low");
            } else {
                assert_eq!(m.page_tables_high, 0, "{v}");
                assert_eq!(m.page_tables_low, (roots + ptes) * 4, "{v}");
            }
            // and each pte page's frame is in the right zone
            let mm = u.kernel().mm_of(u.pid()).unwrap();
            let _ = mm;
            inv(u, "placement");
            0
        });
        assert_eq!(code, 0);
    }
    for (v, ram) in CONFIGS {
        dispatch!(v, one(v, ram));
    }
}

/// A workout of every system call; invariants after each step.
pub fn workout<M: PagingMode>(u: &mut User<'_, M>) -> i32 {
    let a = u.mmap(0, 6 * MB, RW, PA).unwrap();
    for i in 0..(6 * MB as u32 / PAGE) {
        u.store_u32(a + i * PAGE, stamp(i, 1)).unwrap();
    }
    inv(u, "touch");
    let s = u
        .mmap(0, 256 * 1024, RW, MAP_SHARED | MAP_ANONYMOUS)
        .unwrap();
    u.store_u32(s, 5).unwrap();
    let id = u.shmget(0x5ca1e, 512 * 1024, IPC_CREAT).unwrap();
    let sh = u.shmat(id, 0, 0).unwrap();
    for i in 0..128 {
        u.store_u32(sh + i * PAGE, i).unwrap();
    }
    u.shm_rmid(id).unwrap();
    inv(u, "shared");
    u.brk(highpte_kernel::mm::START_BRK + 40 * 4096);
    for i in 0..40 {
        u.store_u32(highpte_kernel::mm::START_BRK + i * PAGE, i)
            .unwrap();
    }
    let c = u
        .fork("child", false, move |c| {
            for i in (0..(6 * MB as u32 / PAGE)).step_by(3) {
                assert_eq!(c.load_u32(a + i * PAGE), Ok(stamp(i, 1)));
                c.store_u32(a + i * PAGE, stamp(i, 2)).unwrap();
            }
            c.store_u32(s, 6).unwrap();
            let g = c
                .fork("grandchild", false, move |g| {
                    g.store_u32(a, 1).unwrap();
                    g.munmap(a + PAGE, 2 * MB).unwrap();
                    0
                })
                .unwrap();
            assert_eq!(c.wait(), Ok((g, 0)));
            c.munmap(a, 3 * MB).unwrap();
            inv(c, "child");
            0
        })
        .unwrap();
    assert_eq!(u.wait(), Ok((c, 0)));
    assert_eq!(u.load_u32(s), Ok(6));
    inv(u, "fork");
    u.mprotect(a + MB as u32, MB, PROT_READ).unwrap();
    // [a + 2 MB, a + 6 MB) is its own VMA now: move and grow it
    let n = u
        .mremap(a + 2 * MB as u32, 4 * MB, 7 * MB, MREMAP_MAYMOVE, 0)
        .unwrap();
    for i in (0..(4 * MB as u32 / PAGE)).step_by(7) {
        let j = i + 2 * MB as u32 / PAGE;
        assert_eq!(u.load_u32(n + i * PAGE), Ok(stamp(j, 1)));
    }
    assert_eq!(u.load_u32(a + MB as u32), Ok(stamp(256, 1)));
    inv(u, "mremap");
    u.munmap(n + 2 * MB as u32, 3 * MB).unwrap();
    u.shmdt(sh).unwrap();
    inv(u, "munmap");
    // leave the rest for exit
    0
}

#[test]
fn exit_frees_everything_in_every_config_strategy_and_allocator() {
    fn one<M: PagingMode>(v: MemoryVariant, ram: u64, s: PteStrategy, al: PtAllocKind) {
        let mut sys = boot_strategy::<M>(v, ram, 2, s, al);
        let b = quiesce(&mut sys);
        assert!(b.bad.is_empty(), "{:?}", b.bad);
        assert_eq!(run_process(&mut sys, workout::<M>), 0);
        assert_no_leak(&mut sys, &b, &format!("{v} {s} {al}"));
    }
    for (v, ram) in CONFIGS {
        for s in PteStrategy::ALL {
            for al in PtAllocKind::ALL {
                dispatch!(v, one(v, ram, s, al));
            }
        }
    }
}
