//! The invariant checker is itself correct: corruptions made on purpose are reported, and
//! undoing them makes the report empty again.

mod vm_common;
use highpte_arch::{MemoryVariant, PagingMode, TwoLevel};
use highpte_kernel::mm::{MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, PROT_READ, PROT_WRITE};
use highpte_kernel::platform::prelude::*;
use highpte_kernel::{KernelOptions, PteStrategy};
use highpte_machine::User;
use vm_common::*;

const RW: u32 = PROT_READ | PROT_WRITE;
const PA: u32 = MAP_PRIVATE | MAP_ANONYMOUS;

fn report<M: PagingMode>(u: &User<'_, M>) -> Vec<String> {
    u.handle()
        .enter_kernel("check_invariants", |cx| u.kernel().check_invariants(cx))
}

fn expect<M: PagingMode>(u: &User<'_, M>, what: &str, needles: &[&str]) {
    let bad = report(u);
    for n in needles {
        assert!(
            bad.iter().any(|l| l.contains(n)),
            "{what}: no violation mentions {n:?}: {bad:#?}"
        );
    }
}

/// Kernel address of the pte of `addr` (2-level, pte pages in low memory).
fn pte_va(u: &User<'_, TwoLevel>, addr: u32) -> highpte_arch::VirtAddr {
    let k = u.kernel();
    let mm = k.mm_of(u.pid()).unwrap();
    let pgd = k.page_address(highpte_arch::Pfn(mm.cr3() >> 12)).unwrap();
    // SAFETY: the pgd is low memory (direct map); the simulator checks the access anyway.
    let pde = unsafe {
        u.handle()
            .read_u32(highpte_arch::VirtAddr::new(pgd.as_u32() + (addr >> 22) * 4))
    };
    let pt = k
        .page_address(highpte_arch::Pfn((pde >> 12) as u64))
        .unwrap();
    highpte_arch::VirtAddr::new(pt.as_u32() + ((addr >> 12) & 1023) * 4)
}

fn corruptions(u: &mut User<'_, TwoLevel>) -> i32 {
    let a = u.mmap(0x2000_0000, 16 * 4096, RW, PA | MAP_FIXED).unwrap();
    for i in 0..16 {
        u.store_u32(a + i * PAGE, i).unwrap();
    }
    inv(u, "setup");
    let k = u.kernel();
    let pfn = highpte_arch::Pfn(pfn_of(u, a).unwrap());
    let d = k.mem_map().desc(pfn);

    // 1. a map count one too high
    d.inc_mapcount();
    expect(u, "mapcount", &["mapcount 2 but 1 ptes map it"]);
    d.dec_mapcount();
    inv(u, "mapcount restored");

    // 2. a reference count one too high
    d.get_page();
    expect(u, "count", &["reference count 2 but 1 mappings"]);
    d.put_page();
    inv(u, "count restored");

    // 3. a pte that points at a free frame (as a missed TLB/zap bug would leave)
    let victim = a + 15 * PAGE;
    let freed = pfn_of(u, victim).unwrap();
    u.munmap(victim, 4096).unwrap();
    assert!(k.page_is_free(u.handle(), highpte_arch::Pfn(freed)));
    let slot = pte_va(u, victim);
    let h = u.handle();
    unsafe { h.write_u32(slot, (freed as u32) << 12 | 0x7) };
    expect(
        u,
        "stale pte",
        &[
            "is on a free list",
            "rss counter 15 but 16 ptes",
            "outside every VMA",
            "mapcount 0 but 1 ptes",
        ],
    );
    unsafe { h.write_u32(slot, 0) };
    inv(u, "stale pte removed");

    // 4. a private page made writable while it is shared copy-on-write with a child
    let ch = u
        .fork("child", false, move |c| {
            c.pause();
            0
        })
        .unwrap();
    let slot = pte_va(u, a);
    let pte = unsafe { h.read_u32(slot) };
    assert_eq!(pte & 2, 0, "COW pte is read-only after fork");
    inv(u, "forked");
    // a writable pte to the zero page would let a process write everyone's zeros
    let z = a + 20 * PAGE;
    u.mmap(z, 4096, RW, PA | MAP_FIXED).unwrap();
    assert_eq!(u.load_u32(z), Ok(0));
    let zslot = pte_va(u, z);
    let zpte = unsafe { h.read_u32(zslot) };
    unsafe { h.write_u32(zslot, zpte | 2) };
    expect(u, "writable zero page", &["does not fit its VMA"]);
    unsafe { h.write_u32(zslot, zpte) };
    inv(u, "zero page restored");

    // 5. a leaked user page: a reference and map count with no pte
    let leak = a + 24 * PAGE;
    u.mmap(leak, 4096, RW, PA | MAP_FIXED).unwrap();
    u.store_u32(leak, 1).unwrap();
    let lp = highpte_arch::Pfn(pfn_of(u, leak).unwrap());
    let lslot = pte_va(u, leak);
    let lpte = unsafe { h.read_u32(lslot) };
    unsafe { h.write_u32(lslot, 0) };
    expect(
        u,
        "leak",
        &[
            "rss counter 17 but 16",
            "16 pages are owned by user memory but 15 are mapped",
        ],
    );
    unsafe { h.write_u32(lslot, lpte) };
    let _ = lp;
    inv(u, "leak restored");

    // 6. a read-only VMA with a writable pte
    u.mprotect(a + 5 * PAGE, 4096, PROT_READ).unwrap();
    let rslot = pte_va(u, a + 5 * PAGE);
    let rpte = unsafe { h.read_u32(rslot) };
    unsafe { h.write_u32(rslot, rpte | 2) };
    expect(u, "rw in ro vma", &["does not fit its VMA (prot 1)"]);
    unsafe { h.write_u32(rslot, rpte) };
    inv(u, "ro restored");

    u.kill(ch, highpte_kernel::Signal::Sigkill);
    assert_eq!(u.wait(), Ok((ch, 0)));
    inv(u, "end");
    0
}

#[test]
fn the_checker_reports_corruptions() {
    let mut sys =
        boot_with::<TwoLevel>(MemoryVariant::Highmem4g, GB, 2, |ko: &mut KernelOptions| {
            ko.strategy = PteStrategy::Lowmem
        });
    let b = quiesce(&mut sys);
    assert_eq!(run_process(&mut sys, corruptions), 0);
    assert_no_leak(&mut sys, &b, "after the corruptions were undone");
}
