//! The conversion-bug catalogue (`docs/conversion-bugs.md`), row by row: each test commits
//! one mistake of converting unmapped pte code to mapped pte code — through the test-only
//! paths where the types forbid it (raw `kmap_atomic`/`kunmap_atomic`, raw platform calls,
//! `PtePage::kernel_address_for_tests`, `mem::forget`) — and asserts the exact report.

mod highmem_common;

use highmem_common::*;
use highpte_arch::{Entry, KmType, MemoryVariant, PagingMode, Pfn, TwoLevel, VirtAddr};
use highpte_kernel::platform::prelude::*;
use highpte_kernel::KernelEvent;
use highpte_machine::System;
use std::cell::Cell;
use std::rc::Rc;

type M = TwoLevel;

fn sys() -> System<M> {
    Setup::new(MemoryVariant::Highmem4gHighpte).boot::<M>()
}

/// Frames of the two pte pages of [`with_user_pte`]'s process, learned while it runs.
#[derive(Clone, Copy, Default)]
struct Frames {
    pte0: u64,
    pte1: u64,
    va: u32,
}

fn frames() -> Rc<Cell<Frames>> {
    Rc::default()
}

/// Row 1: forgetting to unmap. With the API the mapping is a guard whose `Drop` unmaps; the
/// only way to forget is `mem::forget`. The next `pte_offset_map` finds KM_PTE0 in use.
#[test]
fn row01_forgetting_to_unmap() {
    let mut s = sys();
    let f = frames();
    let fo = f.clone();
    let r = expect_bug(with_user_pte(&mut s, 0, move |h, k, _, mm| {
        h.enter_kernel("test", |cx| {
            let mut cur = k.lock_ptes(cx, mm);
            let map = cur.map(VirtAddr::new(ADDR)).expect("a pte page");
            fo.set(Frames {
                pte0: map.page().0,
                ..Default::default()
            });
            core::mem::forget(map); // the mistake: no pte_unmap
            let _again = cur.map(VirtAddr::new(ADDR)).expect("a pte page");
        })
    }));
    let pte = f.get().pte0;
    assert_eq!(r.report.kind, "kmap_atomic");
    assert_eq!(
        r.report.message,
        format!(
            "kmap_atomic: KM_PTE0 slot of CPU 0 is already in use (pfn {pte:#x} mapped by task {t} at pte_offset_map); task {t} maps pfn {pte:#x} at pte_offset_map: the same type used twice",
            t = r.task
        )
    );
}

/// Row 2: using a pte after unmap. A kept `&PtePage`/`PteSlot` does not compile
/// (`pte_outlives_mapping.rs`); a raw kernel address read after the unmap faults, and the
/// oops names the released mapping.
#[test]
fn row02_using_a_pte_after_unmap() {
    let mut s = sys();
    let f = frames();
    let fo = f.clone();
    let r = expect_bug(with_user_pte(&mut s, 0, move |h, k, _, mm| {
        h.enter_kernel("test", |cx| {
            let mut cur = k.lock_ptes(cx, mm);
            let map = cur.map(VirtAddr::new(ADDR)).expect("a pte page");
            let va = map.kernel_address_for_tests();
            fo.set(Frames {
                pte0: map.page().0,
                va: va.as_u32(),
                ..Default::default()
            });
            drop(map);
            drop(cur);
            unsafe { h.read_u32(va) }; // the pte pointer, used after pte_unmap
        })
    }));
    let Frames { pte0, va, .. } = f.get();
    let va = VirtAddr::new(va);
    assert_eq!(
        r.report.message,
        format!(
            "BUG: unable to handle kernel paging request at {:#010x}: page fault error code 0x0 (PageFaultErrorCode(0x0)) on a Read; {}; {va} is CPU 0's KM_PTE0 slot, released: it mapped pfn {pte0:#x} for task {} until kunmap_atomic at pte_unmap (a use after unmap)",
            va.as_u32(),
            who(&r),
            r.task
        )
    );
}

/// Row 3: sleeping while mapped. Every sleeping API takes `&mut SleepCtx`, which the mapping
/// borrows (`sleep_while_mapped_*.rs`). A raw platform call smuggled out through
/// `map.cx().p()` is caught by the machine: sleeping in atomic context, the pte slot and the
/// page-table lock both counted in preempt_count.
#[test]
fn row03_sleeping_while_mapped() {
    let mut s = sys();
    let r = expect_bug(with_user_pte(&mut s, 0, move |h, k, _, mm| {
        h.enter_kernel("test", |cx| {
            let mut cur = k.lock_ptes(cx, mm);
            let map = cur.map(VirtAddr::new(ADDR)).expect("a pte page");
            let p = map.cx().p();
            let t = p.prepare_to_wait(highpte_kernel::WaitQueueKey(1));
            p.sleep(
                highpte_kernel::WaitQueueKey(1),
                t,
                "some event",
                "converted_walker",
            );
        })
    }));
    assert_eq!(r.report.kind, "sleeping in atomic context");
    assert_eq!(
        r.report.message,
        format!(
            "BUG: sleeping function called from invalid context at converted_walker (sleeping on \"some event\"): preempt_count 2, holding [{}]; {}",
            locks(&r),
            who(&r)
        )
    );
    assert!(locks(&r).starts_with("'page_table_lock'"), "{}", locks(&r));
}

/// Row 4: the same slot twice. A second `pte_offset_map` while the first lives needs the
/// `&mut Ctx` the first holds (`third_nested_map_twice.rs`); the raw API refuses the pte
/// slots outright.
#[test]
fn row04_the_same_slot_twice() {
    let mut s = sys();
    let r = expect_bug(with_user_pte(&mut s, 0, move |h, k, _, mm| {
        h.enter_kernel("test", |cx| {
            let mut cur = k.lock_ptes(cx, mm);
            let map = cur.map(VirtAddr::new(ADDR)).expect("a pte page");
            let page = map.page();
            kmap_raw(k, map.cx(), page, KmType::Pte0, "second_walker");
        })
    }));
    assert_eq!(r.report.kind, "kmap_atomic");
    assert_eq!(
        r.report.message,
        format!(
            "kmap_atomic: task {} asks for KM_PTE0 at second_walker: the pte slots (KM_PTE0, KM_PTE1, KM_PTE2) belong to the pte API (PteCursor::map, map_nested, map_phys); raw callers use KM_USER0/KM_USER1",
            r.task
        )
    );
}

/// Row 5: nesting three deep. Neither `PteMapNested` nor the views have `map_nested`
/// (`third_nested_map.rs`); a raw third pte slot (KM_PTE2) is refused.
#[test]
fn row05_nesting_three_deep() {
    let mut s = sys();
    let r = expect_bug(with_user_pte(&mut s, 0, move |h, k, _, mm| {
        h.enter_kernel("test", |cx| {
            let span = M::PTE_PAGE_SPAN;
            let a0 = VirtAddr::new(ADDR);
            let a1 = VirtAddr::new(ADDR + span);
            let mut cur = k.lock_ptes(cx, mm);
            let mut map = cur.map(a0).expect("a pte page");
            let nested = map.map_nested(a1).expect("a pte page");
            let third = nested.page();
            kmap_raw(k, nested.cx(), third, KmType::Pte2, "third");
        })
    }));
    assert_eq!(
        r.report.message,
        format!(
            "kmap_atomic: task {} asks for KM_PTE2 at third: the pte slots (KM_PTE0, KM_PTE1, KM_PTE2) belong to the pte API (PteCursor::map, map_nested, map_phys); raw callers use KM_USER0/KM_USER1",
            r.task
        )
    );
}

/// Row 6: unmapping the wrong one. Each guard unmaps its own slot and the nested pair is
/// reached only through views that cannot be swapped into the guards; with raw calls
/// (KM_USER0 and KM_USER1 held, the second released as the first) the unmap check names both.
#[test]
fn row06_unmapping_the_wrong_one() {
    let mut s = sys();
    let p = run_raw(&mut s, 0, |_, k, cx| [high_page(k, cx), high_page(k, cx)]);
    let l = *s.kernel().layout();
    let (u0, u1) = (
        l.kmap_atomic_addr(0, KmType::User0),
        l.kmap_atomic_addr(0, KmType::User1),
    );
    spawn_raw(&mut s, "copy", 0, move |_, k, cx| {
        let src = kmap_raw(k, cx, p[0], KmType::User0, "copy_src");
        let dst = kmap_raw(k, cx, p[1], KmType::User1, "copy_dst");
        kunmap_raw(k, cx, dst, KmType::User1, "copy");
        kunmap_raw(k, cx, dst, KmType::User0, "copy"); // should have been `src`
        let _ = src;
    });
    let r = expect_bug(s.run());
    assert_eq!(
        r.report.message,
        format!(
            "kunmap_atomic: task {} on CPU 0 unmaps {u1} as KM_USER0 at copy, but that address is CPU 0's KM_USER1 slot; CPU 0's KM_USER0 slot is {u0}",
            r.task
        )
    );
}

/// Row 7: keeping a pte across a lock drop without re-checking it. The mapping itself cannot
/// cross the drop (`drop_ptl_while_mapped.rs`), but a copied `Entry` can: written back after
/// munmap freed its page, without `pte_same`, it maps a free frame. No helper sees it at the
/// time; the invariant checker does.
#[test]
fn row07_keeping_a_pte_across_a_lock_drop() {
    let mut s = sys();
    let found: Rc<std::cell::RefCell<(Vec<String>, u64)>> = Rc::default();
    let fo = found.clone();
    let r = with_user_pte(&mut s, 0, move |h, k, pid, mm| {
        let a = VirtAddr::new(ADDR);
        let stale = {
            h.enter_kernel("test", |cx| {
                let mut cur = k.lock_ptes(cx, mm);
                let map = cur.map(a).expect("a pte page");
                map.get(a)
            })
        }; // unmapped and unlocked: "we may sleep here"
           // meanwhile another thread unmaps the page (the table survives: ADDR+4096 is mapped)
        h.enter_kernel("sys_munmap", |cx| k.sys_munmap(cx, pid, ADDR, 4096))
            .unwrap();
        {
            h.enter_kernel("test", |cx| {
                let mut cur = k.lock_ptes(cx, mm);
                let mut map = cur.map(a).expect("a pte page");
                map.set(a, stale); // the mistake: no pte_same / pte_none re-check
            })
        }
        let bad = h.enter_kernel("check_invariants", |cx| k.check_invariants(cx));
        *fo.borrow_mut() = (bad, stale.pfn().0);
        // undo, so the process can exit without freeing the frame twice
        h.enter_kernel("test", |cx| {
            let mut cur = k.lock_ptes(cx, mm);
            let mut map = cur.map(a).expect("a pte page");
            map.set(a, Entry::NONE);
        })
    });
    assert!(r.is_completed(), "{r}");
    let (bad, pfn) = found.borrow().clone();
    assert!(
        bad.contains(&format!(
            "pfn {pfn:#x} is mapped by 1 ptes but is on a free list"
        )),
        "{bad:#?}"
    );
}

/// Row 8: walking a user table with the kernel API. `pte_offset_kernel` takes only
/// `PmdEntry<KernelTables>` (`kernel_api_on_user_table.rs`, `no_unmapped_user_pte.rs`). What
/// the unconverted code did — dereference the pte page's direct-map address — is a kernel
/// page fault for a high pte page, and the oops says the address belongs to a high page.
/// (904 MB: all of highmem's would-be addresses fall between the direct map and vmalloc.)
#[test]
fn row08_walking_a_user_table_with_the_kernel_api() {
    let mut s = Setup::new(MemoryVariant::Highmem4gHighpte)
        .ram(904 << 20)
        .boot::<M>();
    let f = frames();
    let fo = f.clone();
    let r = expect_bug(with_user_pte(&mut s, 0, move |h, k, _, mm| {
        let pfn = k.user_pte_page(h, mm, VirtAddr::new(ADDR)).unwrap();
        assert!(k.is_highmem(pfn));
        // __va(pmd_page(*pmd)): what pte_offset() computed
        let va = VirtAddr::new(k.layout().page_offset().as_u32() + (pfn.0 as u32) * 4096);
        fo.set(Frames {
            pte0: pfn.0,
            va: va.as_u32(),
            ..Default::default()
        });
        unsafe { h.read_u32(va) };
    }));
    let Frames { pte0, va, .. } = f.get();
    let va = VirtAddr::new(va);
    let hm = s.kernel().layout().high_memory();
    assert_eq!(
        r.report.message,
        format!(
            "BUG: unable to handle kernel paging request at {:#010x}: page fault error code 0x0 (PageFaultErrorCode(0x0)) on a Read; {}; {va} is past the end of the direct map (high_memory {hm}): it would be the direct-map address of pfn {pte0:#x}, a high page with no kernel address until kmap/kmap_atomic maps it",
            va.as_u32(),
            who(&r)
        )
    );
}

/// Row 9: migrating CPU while mapped. A mapping disables preemption (and borrows the
/// context), so the task cannot move; with a stray `preempt_enable` it can be preempted (and
/// then resume on any CPU), and the switch away is caught: "scheduling with KM_TYPE held".
/// (UP, so the other task cannot be taken by an idle CPU and the preemption is certain.)
#[test]
fn row09_migrating_cpu_while_mapped() {
    let mut s = Setup::new(MemoryVariant::Highmem4gHighpte)
        .cpus(1)
        .preempt(true)
        .tick(20_000)
        .boot::<M>();
    let p: Pfn = run_raw(&mut s, 0, |_, k, cx| high_page(k, cx));
    let holder: Rc<Cell<u32>> = Rc::default();
    let hd = holder.clone();
    spawn_raw(&mut s, "holder", 0, move |h, k, cx| {
        hd.set(h.id().0);
        kmap_raw(k, cx, p, KmType::User0, "walker");
        h.preempt_enable(); // the mistake (e.g. an unbalanced spin_unlock)
        for _ in 0..1_000 {
            h.charge(KernelEvent::Cycles(1_000));
            h.preempt_disable();
            h.preempt_enable(); // a preemption point
        }
    });
    spawn_raw(&mut s, "other", 0, |h, _, _| {
        for _ in 0..100 {
            h.charge(KernelEvent::Cycles(1_000));
        }
    });
    let r = expect_bug(s.run());
    assert_eq!(r.report.kind, "scheduling with KM_TYPE held");
    assert_eq!(
        r.report.message,
        format!(
            "task {} scheduled away at schedule while holding CPU 0's KM_USER0 slot (pfn {:#x}, mapped at walker)",
            holder.get(),
            p.0
        )
    );
    assert!(s.machine.stats().preemptions >= 1);
}

/// Row 10: storing a pte's kernel address in a long-lived structure (what rmap had to avoid).
/// The address is a slot: while another pte page is mapped there it silently reads *that*
/// table (shown first); once no mapping is live, the debug helpers make it fault, naming the
/// mapping it came from.
#[test]
fn row10_storing_a_pte_kernel_address() {
    let mut s = sys();
    let f = frames();
    let fo = f.clone();
    let wrong: Rc<Cell<(u64, u64)>> = Rc::default();
    let wr = wrong.clone();
    let r = expect_bug(with_user_pte(&mut s, 0, move |h, k, _, mm| {
        let span = M::PTE_PAGE_SPAN;
        let (a0, a1) = (VirtAddr::new(ADDR), VirtAddr::new(ADDR + span));
        h.enter_kernel("test", |cx| {
            let mut cur = k.lock_ptes(cx, mm);
            // the "reverse map" keeps a kernel pointer to the pte of a0
            let (stored, pte0, right) = {
                let map = cur.map(a0).expect("a pte page");
                (map.kernel_address_for_tests(), map.page().0, map.get(a0))
            };
            // later, another walker maps a1's table into the same slot
            let (pte1, seen) = {
                let map = cur.map(a1).expect("a pte page");
                let seen = M::entry_from_raw(unsafe { h.read_u32(stored) } as u64);
                assert_eq!(seen, map.get(a1), "the stored pointer reads a1's table");
                (map.page().0, seen)
            };
            assert_ne!(seen, right);
            wr.set((right.pfn().0, seen.pfn().0));
            fo.set(Frames {
                pte0,
                pte1,
                va: stored.as_u32(),
            });
            drop(cur);
            unsafe { h.read_u32(stored) }; // and with no mapping live: an oops
        })
    }));
    let Frames { pte1, va, .. } = f.get();
    let va = VirtAddr::new(va);
    let (right, seen) = wrong.get();
    assert_ne!(right, seen);
    assert_eq!(
        r.report.message,
        format!(
            "BUG: unable to handle kernel paging request at {:#010x}: page fault error code 0x0 (PageFaultErrorCode(0x0)) on a Read; {}; {va} is CPU 0's KM_PTE0 slot, released: it mapped pfn {pte1:#x} for task {} until kunmap_atomic at pte_unmap (a use after unmap)",
            va.as_u32(),
            who(&r),
            r.task
        )
    );
}

/// The bug reports above all come from the debug helpers or the machine; this one checks the
/// helpers' absence changes row 2 from an oops into a silent read (why they exist).
#[test]
fn row02_without_debug_reads_silently() {
    let mut s = Setup::new(MemoryVariant::Highmem4gHighpte)
        .debug(false)
        .boot::<M>();
    let got: Rc<Cell<u64>> = Rc::default();
    let g2 = got.clone();
    let r = with_user_pte(&mut s, 0, move |h, k, _, mm| {
        h.enter_kernel("test", |cx| {
            let a = VirtAddr::new(ADDR);
            let mut cur = k.lock_ptes(cx, mm);
            let map = cur.map(a).expect("a pte page");
            let va = map.kernel_address_for_tests();
            let e = map.get(a);
            drop(map);
            drop(cur);
            let after = M::entry_from_raw(unsafe { h.read_u32(va) } as u64);
            assert_eq!(after, e);
            g2.set(after.bits());
        })
    });
    assert!(r.is_completed(), "{r}");
    assert_ne!(got.get(), 0);
}
