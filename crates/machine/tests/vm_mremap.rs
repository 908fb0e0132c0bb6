//! fork and mremap use the nested pte mapping (KM_PTE1 inside KM_PTE0): both paging modes,
//! all three strategies; mremap moving 1 GB of populated pages keeps every stamp.

mod vm_common;
use highpte_arch::{MemoryVariant, Pae, PagingMode};
use highpte_kernel::mm::{MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, MREMAP_FIXED, MREMAP_MAYMOVE};
use highpte_kernel::mm::{PROT_READ, PROT_WRITE};
use highpte_kernel::{PtAllocKind, PteStrategy, Signal};
use highpte_machine::User;
use vm_common::*;

const RW: u32 = PROT_READ | PROT_WRITE;
const PA: u32 = MAP_PRIVATE | MAP_ANONYMOUS;

/// Moves that cross pte-page boundaries differently at the source and the destination, so
/// each step maps two different pte pages at once; and a fork that copies them.
fn nested<M: PagingMode>(u: &mut User<'_, M>) -> i32 {
    let span = M::PTE_PAGE_SPAN;
    let pages = 3 * span / PAGE; // three pte pages' worth
                                 // start half a page-table span in, so source and destination are misaligned
    let a = u
        .mmap(
            0x2000_0000 + span / 2,
            pages as u64 * 4096,
            RW,
            PA | MAP_FIXED,
        )
        .unwrap();
    for i in (0..pages).step_by(5) {
        u.store_u32(a + i * PAGE, stamp(i, 1)).unwrap();
    }
    let (rss, _) = rss_ptes(u);
    let dest = 0x3000_0000 + 3 * PAGE;
    let b = u
        .mremap(
            a,
            pages as u64 * 4096,
            pages as u64 * 4096,
            MREMAP_MAYMOVE | MREMAP_FIXED,
            dest,
        )
        .unwrap();
    assert_eq!(b, dest);
    assert_eq!(rss_ptes(u).0, rss, "rss unchanged by a move");
    // every source pte page was emptied and freed; the destination needs 4
    assert_eq!(rss_ptes(u).1, 4);
    inv(u, "moved");
    for i in 0..pages {
        let want = if i % 5 == 0 { stamp(i, 1) } else { 0 };
        assert_eq!(u.load_u32(b + i * PAGE), Ok(want), "page {i}");
    }
    assert_eq!(u.load_u32(a), Err(Signal::Sigsegv));
    // fork copies with the pair mapped; the child sees everything
    let c = u
        .fork("child", false, move |c| {
            for i in (0..pages).step_by(5) {
                assert_eq!(c.load_u32(b + i * PAGE), Ok(stamp(i, 1)));
                c.store_u32(b + i * PAGE, 0).unwrap();
            }
            // and moves its copy back
            let back = c
                .mremap(b, pages as u64 * 4096, pages as u64 * 4096, 3, a)
                .unwrap();
            assert_eq!(back, a);
            assert_eq!(c.load_u32(a + 5 * PAGE), Ok(0));
            assert_eq!(c.load_u32(a + 6 * PAGE), Ok(0));
            inv(c, "child moved back");
            0
        })
        .unwrap();
    assert_eq!(u.wait(), Ok((c, 0)));
    for i in (0..pages).step_by(5) {
        assert_eq!(u.load_u32(b + i * PAGE), Ok(stamp(i, 1)));
    }
    inv(u, "end");
    0
}

#[test]
fn fork_and_mremap_with_the_nested_mapping() {
    fn one<M: PagingMode>(v: MemoryVariant, s: PteStrategy) {
        let mut sys = boot_strategy::<M>(v, GB, 2, s, PtAllocKind::Pool);
        let b = quiesce(&mut sys);
        assert_eq!(run_process(&mut sys, nested::<M>), 0, "{v} {s}");
        assert_no_leak(&mut sys, &b, &format!("{v} {s}"));
    }
    for v in [
        MemoryVariant::Highmem4gHighpte,
        MemoryVariant::Highmem64gHighpte,
    ] {
        for s in PteStrategy::ALL {
            dispatch!(v, one(v, s));
        }
    }
}

/// 1 GB of populated pages moved by mremap on PAE with highpte (4 GB RAM): every page keeps
/// its stamp, the page tables follow, the old range is gone.
#[test]
fn mremap_moves_1gb_keeping_every_stamp() {
    let mut sys = boot::<Pae>(MemoryVariant::Highmem64gHighpte, 4 * GB, 2);
    let b = quiesce(&mut sys);
    let code = run_process(&mut sys, |u| {
        let n = (GB / 4096) as u32;
        let a = u.mmap(0x1000_0000, GB, RW, PA | MAP_FIXED).unwrap();
        for i in 0..n {
            u.store_u32(a + i * PAGE, stamp(i, 5)).unwrap();
        }
        assert_eq!(rss_ptes(u), (n as u64, 512));
        let m0 = mi(u);
        let dest = 0x6000_0000;
        let r = u
            .mremap(a, GB, GB, MREMAP_MAYMOVE | MREMAP_FIXED, dest)
            .unwrap();
        assert_eq!(r, dest);
        assert_eq!(rss_ptes(u), (n as u64, 512));
        // no page was copied or freed by the move; page tables: 512 new, 512 freed
        assert_eq!(mi(u).page_tables, m0.page_tables);
        for i in 0..n {
            let got = u.load_u32(dest + i * PAGE).unwrap();
            assert_eq!(got, stamp(i, 5), "page {i} lost its stamp");
        }
        assert_eq!(u.load_u32(a), Err(Signal::Sigsegv));
        assert_eq!(u.load_u32(a + 0x3fff_f000), Err(Signal::Sigsegv));
        inv(u, "after the move");
        0
    });
    assert_eq!(code, 0);
    assert_no_leak(&mut sys, &b, "1 GB mremap");
}
