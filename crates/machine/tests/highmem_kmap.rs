//! kmap_atomic and the persistent kmap pool, measured on the machine: TLB work per CPU, locks
//! taken, addresses returned, the pool's wrap-around flush and its sleep when full; and that
//! the kernel cannot reach a high page at all without one of them.

mod highmem_common;

use highmem_common::*;
use highpte_arch::layout::{fix_to_virt, FIXADDR_TOP, FIX_KMAP_BEGIN, PAGE_OFFSET};
use highpte_arch::{KmType, MemoryVariant, Pae, PagingMode, Pfn, TwoLevel, VirtAddr};
use highpte_kernel::highmem::PKMAP_WAIT;
use highpte_kernel::platform::prelude::*;
use highpte_kernel::{Counter, Kernel, WaitQueueKey};
use highpte_machine::{Event, System};
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// A marker value recorded in the event trace around the measured section.
const MARK: u64 = 0x6b6d_6170;

/// TLB counters (invlpg, full flushes) of every CPU.
fn tlb_counts<M: PagingMode>(sys: &System<M>) -> Vec<(u64, u64)> {
    (0..sys.machine.nr_cpus())
        .map(|c| {
            let s = sys.machine.tlb(c).unwrap().stats();
            (s.invlpgs, s.flushes_all)
        })
        .collect()
}

/// Lock events recorded between the two `MARK` events of the trace.
fn locks_between_marks<M: PagingMode>(sys: &System<M>) -> Vec<&'static str> {
    let mut inside = false;
    let mut v = Vec::new();
    for e in sys.machine.trace() {
        match e {
            Event::User { value: MARK, .. } => inside = !inside,
            Event::Lock { name, .. } if inside => v.push(*name),
            _ => {}
        }
    }
    v
}

/// What the mapping task saw: slot address, preempt_count while held and after, the value
/// read back through the mapping.
type Seen = (u32, u32, u32, u32);

/// kmap_atomic of a high page on CPU 1: the slot address of (CPU 1, KM_USER0), exactly one
/// invlpg on CPU 1 and none on CPU 0, no lock taken (neither kmap_lock nor a zone lock, nor
/// any lock the machine saw), preemption disabled while held. With the debug helpers the
/// unmap clears the slot and invalidates it: one more invlpg, still local.
fn atomic_high<M: PagingMode>(v: MemoryVariant, debug: bool) {
    let mut sys = Setup::new(v).debug(debug).boot_traced::<M>(1 << 20);
    let page = run_raw(&mut sys, 1, |_, k, cx| high_page(k, cx));
    let tlb0 = tlb_counts(&sys);
    let locks0 = sys.kernel().highmem_lock_stats();
    let got: Rc<Cell<Seen>> = Rc::default();
    let g = got.clone();
    run_raw(&mut sys, 1, move |h, k, cx| {
        h.record_user_event(MARK);
        let map = k.kmap_atomic(cx, page, KmType::User0, "test");
        let va = map.addr();
        let held = h.preempt_count();
        unsafe { h.write_u32(VirtAddr::new(va.as_u32() + 8), 0xfeed) };
        let back = unsafe { h.read_u32(VirtAddr::new(va.as_u32() + 8)) };
        drop(map);
        h.record_user_event(MARK);
        g.set((va.as_u32(), held, h.preempt_count(), back));
    });
    let (va, held, after, back) = got.get();
    // FIX_KMAP_BEGIN + type + KM_TYPE_NR * cpu (each real slot after a guard in debug)
    let idx = KmType::User0.index() + KmType::NR;
    let fix = if debug {
        FIX_KMAP_BEGIN + 2 * idx + 1
    } else {
        FIX_KMAP_BEGIN + idx
    };
    assert_eq!(va, FIXADDR_TOP - fix * 4096);
    assert_eq!(VirtAddr::new(va), fix_to_virt(fix));
    assert_eq!((held, after, back), (1, 0, 0xfeed));
    let tlb1 = tlb_counts(&sys);
    let unmap_invlpg = u64::from(debug);
    assert_eq!(tlb1[0], tlb0[0], "CPU 0's TLB must not be touched");
    assert_eq!(
        tlb1[1],
        (tlb0[1].0 + 1 + unmap_invlpg, tlb0[1].1),
        "exactly one local invlpg to map (and one to clear the slot with debug)"
    );
    assert_eq!(sys.kernel().highmem_lock_stats(), locks0, "no lock taken");
    assert_eq!(locks_between_marks(&sys), Vec::<&str>::new());
    assert_eq!(sys.kernel().counters().get(Counter::KmapAtomic), 1);
}

#[test]
fn kmap_atomic_high_page_one_local_invlpg_no_lock_2level() {
    atomic_high::<TwoLevel>(MemoryVariant::Highmem4gHighpte, false);
}
#[test]
fn kmap_atomic_high_page_one_local_invlpg_no_lock_pae() {
    atomic_high::<Pae>(MemoryVariant::Highmem64gHighpte, false);
}
#[test]
fn kmap_atomic_high_page_debug_clears_on_unmap() {
    atomic_high::<TwoLevel>(MemoryVariant::Highmem4gHighpte, true);
}

/// A low page needs no slot: its direct-map address, no TLB work, still preempt-disabled.
#[test]
fn kmap_atomic_low_page_is_the_direct_map() {
    let mut sys = Setup::new(MemoryVariant::Highmem4gHighpte).boot::<TwoLevel>();
    let page = run_raw(&mut sys, 0, |_, k, cx| low_page(k, cx));
    let tlb0 = tlb_counts(&sys);
    let (va, held, after) = run_raw(&mut sys, 0, move |h, k, cx| {
        let map = k.kmap_atomic(cx, page, KmType::User1, "test");
        let va = map.addr();
        let held = h.preempt_count();
        drop(map);
        (va, held, h.preempt_count())
    });
    assert_eq!(va, VirtAddr::new(PAGE_OFFSET + (page.0 as u32) * 4096));
    assert_eq!(Some(va), sys.kernel().page_address(page));
    assert_eq!((held, after), (1, 0));
    assert_eq!(tlb_counts(&sys), tlb0);
    assert_eq!(sys.kernel().counters().get(Counter::KmapAtomicLow), 1);
    assert_eq!(sys.kernel().counters().get(Counter::KmapAtomic), 0);
}

/// The kernel reads memory only through kernel virtual addresses: a high page has none
/// until mapped. Reading where its direct-map address would be is a kernel page fault, and
/// the oops says why. (904 MB of RAM: 8 MB of highmem, whose would-be addresses all fall in
/// the gap between the direct map and vmalloc.)
#[test]
fn high_page_is_unreachable_without_a_mapping() {
    let mut sys = Setup::new(MemoryVariant::Highmem4gHighpte)
        .ram(904 << 20)
        .boot::<TwoLevel>();
    let k = sys.kernel();
    let first_high = Pfn(k.max_low_pfn());
    let would_be = VirtAddr::new(PAGE_OFFSET + (first_high.0 as u32) * 4096);
    assert_eq!(would_be, k.layout().high_memory());
    let high_mem = k.layout().high_memory();
    spawn_raw(&mut sys, "reader", 0, move |h, _, _| {
        h.set_where("reader");
        let _ = unsafe { h.read_u32(would_be) };
    });
    let b = expect_bug(sys.run());
    assert_eq!(b.report.kind, "kernel page fault");
    assert_eq!(
        b.report.message,
        format!(
            "BUG: unable to handle kernel paging request at {:#010x}: page fault error code 0x0 (PageFaultErrorCode(0x0)) on a Read; {}; {would_be} is past the end of the direct map (high_memory {high_mem}): it would be the direct-map address of pfn {:#x}, a high page with no kernel address until kmap/kmap_atomic maps it",
            would_be.as_u32(),
            who(&b),
            first_high.0
        )
    );
}

/// Map `n` distinct high pages with `kmap` and unmap each at once.
fn kmap_cycle<M: PagingMode>(
    k: &Kernel<M>,
    cx: &mut highpte_kernel::SleepCtx<'_, highpte_machine::TaskHandle<M>>,
    pages: &[Pfn],
) {
    for &pfn in pages {
        let va = k.kmap(cx, pfn, "test");
        assert!(va.as_u32() >= k.layout().pkmap_base().as_u32());
        k.kunmap(cx, pfn, "test");
    }
}

/// The pool hands out entries round-robin from entry 1; the LAST_PKMAP-th new mapping wraps
/// to entry 0, which clears every count-1 entry and flushes the TLB of every CPU, once.
fn pkmap_wraps<M: PagingMode>(v: MemoryVariant) {
    let n = M::LAST_PKMAP as usize;
    let mut sys = Setup::new(v).boot::<M>();
    let pages = run_raw(&mut sys, 0, move |_, k, cx| {
        (0..=n).map(|_| high_page(k, cx)).collect::<Vec<_>>()
    });
    let pages = Rc::new(pages);
    // entries 1 .. LAST_PKMAP-1: no flush
    let p1 = pages.clone();
    let (counts, last) = run_raw(&mut sys, 0, move |h, k, cx| {
        kmap_cycle(k, cx, &p1[..n - 1]);
        k.pkmap_counts(h)
    });
    assert_eq!(last as usize, n - 1);
    assert_eq!(counts[0], 0);
    assert!(
        counts[1..].iter().all(|&c| c == 1),
        "unused but not flushed"
    );
    assert_eq!(sys.kernel().counters().get(Counter::PkmapFlushes), 0);
    let tlb0 = tlb_counts(&sys);
    let lock0 = sys.kernel().highmem_lock_stats().kmap_lock.acquisitions;
    // the LAST_PKMAP-th mapping wraps
    let p2 = pages.clone();
    let (counts, last, va) = run_raw(&mut sys, 1, move |h, k, cx| {
        let va = k.kmap(cx, p2[n - 1], "wrap");
        let (c, l) = k.pkmap_counts(h);
        k.kunmap(cx, p2[n - 1], "wrap");
        (c, l, va)
    });
    assert_eq!(last, 0);
    assert_eq!(va, sys.kernel().layout().pkmap_addr(0));
    assert_eq!(counts[0], 2, "entry 0: one user");
    assert!(counts[1..].iter().all(|&c| c == 0), "all flushed");
    assert_eq!(sys.kernel().counters().get(Counter::PkmapFlushes), 1);
    let tlb1 = tlb_counts(&sys);
    for cpu in 0..2 {
        assert_eq!(tlb1[cpu].1, tlb0[cpu].1 + 1, "CPU {cpu}: one full flush");
    }
    // one kmap_lock hold to map, one to read the counts, one to unmap
    assert_eq!(
        sys.kernel().highmem_lock_stats().kmap_lock.acquisitions,
        lock0 + 3
    );
}

#[test]
fn pkmap_wraps_and_flushes_every_cpu_2level() {
    pkmap_wraps::<TwoLevel>(MemoryVariant::Highmem4gHighpte);
}
#[test]
fn pkmap_wraps_and_flushes_every_cpu_pae() {
    pkmap_wraps::<Pae>(MemoryVariant::Highmem64gHighpte);
}

/// Task A (CPU 0) holds every pkmap entry; task B's kmap (CPU 1) sleeps until A's kunmap
/// wakes it, then gets the entry A released.
#[test]
fn pkmap_full_sleeps_until_kunmap() {
    let n = Pae::LAST_PKMAP as usize;
    let mut sys = Setup::new(MemoryVariant::Highmem64gHighpte).boot::<Pae>();
    let pages = Rc::new(run_raw(&mut sys, 0, move |_, k, cx| {
        (0..=n).map(|_| high_page(k, cx)).collect::<Vec<_>>()
    }));
    let log: Rc<RefCell<Vec<String>>> = Rc::default();
    let all_held: Rc<Cell<bool>> = Rc::default();
    const A_READY: WaitQueueKey = WaitQueueKey(0x4154_4553_5400);
    let b_done: Rc<Cell<bool>> = Rc::default();
    {
        let (pages, log, all_held) = (pages.clone(), log.clone(), all_held.clone());
        let b_done = b_done.clone();
        spawn_raw(&mut sys, "holder", 0, move |h, k, cx| {
            for &p in &pages[..n] {
                k.kmap(cx, p, "holder");
            }
            all_held.set(true);
            h.wake_up_all(A_READY);
            // wait until B sleeps for an entry
            let mut spins = 0;
            while k.counters().get(Counter::KmapSleeps) == 0 {
                h.charge(highpte_kernel::KernelEvent::Cycles(1_000));
                spins += 1;
                assert!(spins < 100_000, "B never slept");
            }
            log.borrow_mut().push("A: kunmap".into());
            k.kunmap(cx, pages[7], "holder");
            // keep the rest until B has its entry, so B can only get the one released
            let mut spins = 0;
            while !b_done.get() {
                h.charge(highpte_kernel::KernelEvent::Cycles(1_000));
                spins += 1;
                assert!(spins < 100_000, "B never mapped");
            }
            for &p in pages[..n].iter().filter(|&&p| p != pages[7]) {
                k.kunmap(cx, p, "holder");
            }
        });
    }
    {
        let (pages, log, all_held) = (pages.clone(), log.clone(), all_held.clone());
        let b_done = b_done.clone();
        spawn_raw(&mut sys, "waiter", 1, move |h, k, cx| {
            while !all_held.get() {
                let t = h.prepare_to_wait(A_READY);
                if all_held.get() {
                    break;
                }
                cx.sleep_on(A_READY, t, "A ready", "waiter");
            }
            let sleeps0 = h.prepare_to_wait(PKMAP_WAIT);
            let va = k.kmap(cx, pages[n], "waiter");
            let woken = h.prepare_to_wait(PKMAP_WAIT) - sleeps0;
            log.borrow_mut()
                .push(format!("B: mapped at {va} after {woken} wake-up(s)"));
            b_done.set(true);
            k.kunmap(cx, pages[n], "waiter");
        });
    }
    let out = sys.run();
    assert!(out.is_completed(), "{out}");
    // pages[7] was mapped at entry 8 (the first mapping goes to entry 1)
    let entry8 = sys.kernel().layout().pkmap_addr(8);
    assert_eq!(
        *log.borrow(),
        vec![
            "A: kunmap".to_string(),
            format!("B: mapped at {entry8} after 1 wake-up(s)")
        ]
    );
    assert_eq!(sys.kernel().counters().get(Counter::KmapSleeps), 1);
    assert_eq!(
        sys.machine.stats().sleeps,
        3,
        "A-ready wait, the kmap wait, and kswapd waiting for work (it always runs)"
    );
}

/// Without the debug helpers `kunmap_atomic` leaves the slot's pte in place, so mapping the
/// same page into the same slot again needs no pte write and no invlpg (counted as
/// `kmap_atomic_reused`); mapping another page flushes, and mapping the first one after it
/// flushes again and reads the first page's data, not the other's (no stale translation).
/// With the debug helpers the unmap clears the slot and every map flushes.
fn atomic_same_page_again<M: PagingMode>(v: MemoryVariant, debug: bool) {
    let mut sys = Setup::new(v).debug(debug).boot_traced::<M>(1 << 20);
    let (a, b) = run_raw(&mut sys, 1, |_, k, cx| (high_page(k, cx), high_page(k, cx)));
    let tlb0 = tlb_counts(&sys);
    let seen = run_raw(&mut sys, 1, move |h, k, cx| {
        let c = k.counters();
        let inv = || c.get(Counter::Invlpg);
        let mut flushes = Vec::new();
        let mut vals = Vec::new();
        for (pfn, write) in [(a, Some(0x1111)), (a, None), (b, Some(0x2222)), (a, None)] {
            let i0 = inv();
            let map = k.kmap_atomic(cx, pfn, KmType::User0, "test");
            let va = map.addr();
            flushes.push(inv() - i0);
            let at = VirtAddr::new(va.as_u32() + 8);
            if let Some(x) = write {
                unsafe { h.write_u32(at, x) };
            }
            vals.push(unsafe { h.read_u32(at) });
            drop(map);
        }
        (flushes, vals, c.get(Counter::KmapAtomicReused))
    });
    let (flushes, vals, reused) = seen;
    assert_eq!(vals, vec![0x1111, 0x1111, 0x2222, 0x1111]);
    if debug {
        // the map flushes after the previous unmap cleared the slot (and flushed too)
        assert_eq!(flushes, vec![1, 1, 1, 1]);
        assert_eq!(reused, 0);
    } else {
        assert_eq!(
            flushes,
            vec![1, 0, 1, 1],
            "the second map of a reuses the slot"
        );
        assert_eq!(reused, 1);
    }
    let tlb1 = tlb_counts(&sys);
    let expect = if debug { 8 } else { 3 };
    assert_eq!(tlb1[1].0 - tlb0[1].0, expect, "local invlpgs on CPU 1");
    assert_eq!(tlb1[0], tlb0[0], "CPU 0's TLB must not be touched");
}

#[test]
fn kmap_atomic_same_page_again_skips_the_flush_2level() {
    atomic_same_page_again::<TwoLevel>(MemoryVariant::Highmem4gHighpte, false);
}
#[test]
fn kmap_atomic_same_page_again_skips_the_flush_pae() {
    atomic_same_page_again::<Pae>(MemoryVariant::Highmem64gHighpte, false);
}
#[test]
fn kmap_atomic_same_page_again_flushes_with_debug_pae() {
    atomic_same_page_again::<Pae>(MemoryVariant::Highmem64gHighpte, true);
}

/// A write fault on never-touched private anonymous memory whose pte page exists takes its
/// page before mapping the pte page, so it maps the pte page once (not twice: map, see
/// pte_none, unmap to allocate, map again); and consecutive faults in one pte page find the
/// KM_PTE0 slot already mapping it, so they pay no invlpg for it.
fn write_fault_maps_pte_once<M: PagingMode>(v: MemoryVariant) {
    use highpte_kernel::mm::{MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE};
    const N: u32 = 64;
    // debug off: with the debug helpers each unmap clears the slot, so nothing is reused
    let mut sys = Setup::new(v).debug(false).boot::<M>();
    let before: Rc<Cell<[u64; 4]>> = Rc::default();
    let after: Rc<Cell<[u64; 4]>> = Rc::default();
    let (b, a) = (before.clone(), after.clone());
    let out = run_process(&mut sys, 0, move |u| {
        let k = u.kernel();
        let snap = || {
            let c = k.counters();
            [
                c.get(Counter::Faults),
                c.get(Counter::PteMaps),
                c.get(Counter::KmapAtomicReused),
                c.get(Counter::Invlpg),
            ]
        };
        let base = u
            .mmap(
                0,
                u64::from(N) * 4096 * 2,
                PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS,
            )
            .unwrap();
        // a page-aligned run of N pages inside one pte page, its pmd already populated
        let span = M::PTE_PAGE_SPAN;
        let first = if (base % span) + 2 * N * 4096 <= span {
            base
        } else {
            base - base % span + span
        };
        u.store_u32(first + N * 4096, 7).unwrap();
        b.set(snap());
        for i in 0..N {
            u.store_u32(first + i * 4096, i).unwrap();
        }
        a.set(snap());
        for i in 0..N {
            assert_eq!(u.load_u32(first + i * 4096).unwrap(), i);
        }
        0
    });
    assert!(out.is_completed(), "{out}");
    let (b, a) = (before.get(), after.get());
    let d: Vec<u64> = (0..4).map(|i| a[i] - b[i]).collect();
    assert_eq!(d[0], u64::from(N), "one fault per page");
    assert_eq!(d[1], u64::from(N), "one pte map per fault");
    assert_eq!(
        d[2],
        u64::from(N),
        "every KM_PTE0 map found the slot mapping the pte page"
    );
    assert_eq!(
        d[3],
        u64::from(N),
        "one invlpg per fault: the data page's clear (KM_USER0)"
    );
}

#[test]
fn anonymous_write_fault_maps_its_pte_page_once_pae() {
    write_fault_maps_pte_once::<Pae>(MemoryVariant::Highmem64gHighpte);
}
#[test]
fn anonymous_write_fault_maps_its_pte_page_once_2level() {
    write_fault_maps_pte_once::<TwoLevel>(MemoryVariant::Highmem4gHighpte);
}
