//! The debugging helpers (`KernelOptions::debug`, like CONFIG_DEBUG_HIGHMEM but naming the
//! culprit): each is provoked through the raw `kmap_atomic` / `kunmap_atomic` calls and its
//! exact report asserted.

mod highmem_common;

use highmem_common::*;
use highpte_arch::layout::{fix_to_virt, virt_to_fix};
use highpte_arch::{KmType, MemoryVariant, Pfn, TwoLevel, VirtAddr};
use highpte_kernel::platform::prelude::*;
use highpte_kernel::{Kernel, SleepCtx};
use highpte_machine::{System, TaskHandle};
use std::cell::Cell;
use std::rc::Rc;

type H = TaskHandle<TwoLevel>;

fn sys(cpus: u32) -> System<TwoLevel> {
    Setup::new(MemoryVariant::Highmem4gHighpte)
        .cpus(cpus)
        .boot::<TwoLevel>()
}

/// Allocate `n` high pages in a first run (so the buggy run does nothing else).
fn pages(s: &mut System<TwoLevel>, n: usize) -> Vec<Pfn> {
    run_raw(s, 0, move |_, k, cx| {
        (0..n).map(|_| high_page(k, cx)).collect()
    })
}

/// Run `f` as a raw kernel task named "buggy" on `cpu`; it must end in a bug report.
fn buggy(
    s: &mut System<TwoLevel>,
    cpu: u32,
    f: impl FnOnce(&H, &Kernel<TwoLevel>, &mut SleepCtx<'_, H>) + 'static,
) -> highpte_machine::BugInfo {
    spawn_raw(s, "buggy", cpu, f);
    expect_bug(s.run())
}

#[test]
fn slot_not_empty_on_map_names_both_users() {
    let mut s = sys(2);
    let p = pages(&mut s, 2);
    let (a, b) = (p[0], p[1]);
    let b_ = buggy(&mut s, 0, move |_, k, cx| {
        kmap_raw(k, cx, a, KmType::User0, "first");
        kmap_raw(k, cx, b, KmType::User0, "second");
    });
    assert_eq!(b_.report.kind, "kmap_atomic");
    assert_eq!(
        b_.report.message,
        format!(
            "kmap_atomic: KM_USER0 slot of CPU 0 is already in use (pfn {:#x} mapped by task {t} at first); task {t} maps pfn {:#x} at second: the same type used twice",
            a.0,
            b.0,
            t = b_.task
        )
    );
}

#[test]
fn unmap_of_another_types_slot() {
    let mut s = sys(2);
    let p = pages(&mut s, 2);
    let (a, b) = (p[0], p[1]);
    let vas: Rc<Cell<(VirtAddr, VirtAddr)>> =
        Rc::new(Cell::new((VirtAddr::new(0), VirtAddr::new(0))));
    let v = vas.clone();
    let r = buggy(&mut s, 0, move |_, k, cx| {
        let va0 = kmap_raw(k, cx, a, KmType::User0, "map0");
        let va1 = kmap_raw(k, cx, b, KmType::User1, "map1");
        v.set((va0, va1));
        kunmap_raw(k, cx, va1, KmType::User0, "wrong");
    });
    let (va0, va1) = vas.get();
    assert_eq!(r.report.kind, "kunmap_atomic");
    assert_eq!(
        r.report.message,
        format!(
            "kunmap_atomic: task {} on CPU 0 unmaps {va1} as KM_USER0 at wrong, but that address is CPU 0's KM_USER1 slot; CPU 0's KM_USER0 slot is {va0}",
            r.task
        )
    );
}

#[test]
fn unmap_of_another_cpus_slot() {
    let mut s = sys(2);
    let l = *s.kernel().layout();
    let cpu0 = l.kmap_atomic_addr(0, KmType::User0);
    let cpu1 = l.kmap_atomic_addr(1, KmType::User0);
    let r = buggy(&mut s, 1, move |_, k, cx| {
        kunmap_raw(k, cx, cpu0, KmType::User0, "elsewhere");
    });
    assert_eq!(
        r.report.message,
        format!(
            "kunmap_atomic: task {} on CPU 1 unmaps {cpu0} as KM_USER0 at elsewhere, but that address is CPU 0's KM_USER0 slot; CPU 1's KM_USER0 slot is {cpu1}",
            r.task
        )
    );
}

#[test]
fn unbalanced_unmap() {
    let mut s = sys(2);
    let va = s.kernel().layout().kmap_atomic_addr(0, KmType::User1);
    let r = buggy(&mut s, 0, move |h, k, cx| {
        h.preempt_disable(); // so only the kernel's check can object
        kunmap_raw(k, cx, va, KmType::User1, "twice");
    });
    assert_eq!(
        r.report.message,
        format!(
            "kunmap_atomic: task {} on CPU 0 unmaps KM_USER1 slot at twice that is not mapped (unbalanced unmap)",
            r.task
        )
    );
}

/// Unmap clears the slot's pte and invalidates it: a stale pointer faults, and the oops
/// names the mapping that was released.
#[test]
fn stale_pointer_faults_and_names_the_released_mapping() {
    let mut s = sys(2);
    let p = pages(&mut s, 1)[0];
    let va = s.kernel().layout().kmap_atomic_addr(1, KmType::User0);
    let r = buggy(&mut s, 1, move |h, k, cx| {
        let got = kmap_raw(k, cx, p, KmType::User0, "mapper");
        assert_eq!(got, va);
        unsafe { h.write_u32(VirtAddr::new(va.as_u32() + 16), 5) };
        kunmap_raw(k, cx, va, KmType::User0, "unmapper");
        unsafe { h.read_u32(VirtAddr::new(va.as_u32() + 16)) };
    });
    assert_eq!(r.report.kind, "kernel page fault");
    let at = VirtAddr::new(va.as_u32() + 16);
    assert_eq!(
        r.report.message,
        format!(
            "BUG: unable to handle kernel paging request at {:#010x}: page fault error code 0x0 (PageFaultErrorCode(0x0)) on a Read; {}; {at} is CPU 1's KM_USER0 slot, released: it mapped pfn {:#x} for task {} until kunmap_atomic at unmapper (a use after unmap)",
            at.as_u32(),
            who(&r),
            p.0,
            r.task
        )
    );
}

/// Without the debug helpers the slot keeps its pte after unmap: the same stale read
/// silently succeeds (which is why the helpers exist).
#[test]
fn without_debug_a_stale_pointer_reads_silently() {
    let mut s = Setup::new(MemoryVariant::Highmem4gHighpte)
        .debug(false)
        .boot::<TwoLevel>();
    let p = pages(&mut s, 1)[0];
    let v = run_raw(&mut s, 0, move |h, k, cx| {
        let va = kmap_raw(k, cx, p, KmType::User0, "mapper");
        unsafe { h.write_u32(va, 77) };
        kunmap_raw(k, cx, va, KmType::User0, "unmapper");
        unsafe { h.read_u32(va) }
    });
    assert_eq!(v, 77);
}

#[test]
fn guard_slot_between_real_ones_faults_and_is_named() {
    let mut s = sys(2);
    let p = pages(&mut s, 1)[0];
    let va = s.kernel().layout().kmap_atomic_addr(0, KmType::User0);
    let past = VirtAddr::new(va.as_u32() + 4096);
    let r = buggy(&mut s, 0, move |h, k, cx| {
        kmap_raw(k, cx, p, KmType::User0, "mapper");
        unsafe { h.read_u32(past) }; // one page past the slot
    });
    let idx = virt_to_fix(past);
    assert_eq!(idx, virt_to_fix(va) - 1);
    assert_eq!(fix_to_virt(idx), past);
    assert_eq!(
        r.report.message,
        format!(
            "BUG: unable to handle kernel paging request at {:#010x}: page fault error code 0x0 (PageFaultErrorCode(0x0)) on a Read; {}; {past} is a kmap_atomic guard slot (fixmap index {idx}): never mapped; an access ran off the end of a neighbouring slot",
            past.as_u32(),
            who(&r)
        )
    );
}

/// `schedule()` with a slot held: the machine's "scheduling while atomic" fires first (the
/// slot disabled preemption) ...
#[test]
fn schedule_with_a_slot_held_is_scheduling_while_atomic() {
    let mut s = sys(1);
    let p = pages(&mut s, 1)[0];
    let r = buggy(&mut s, 0, move |h, k, cx| {
        kmap_raw(k, cx, p, KmType::User0, "mapper");
        h.schedule();
    });
    assert_eq!(r.report.kind, "scheduling while atomic");
    assert_eq!(
        r.report.message,
        format!(
            "BUG: schedule() called in atomic context: preempt_count 1, holding []; {}",
            who(&r)
        )
    );
}

/// ... and if preemption was re-enabled behind the slot's back, switching away from the
/// task is "scheduling with KM_TYPE held", naming the slot, its page and where it was mapped.
#[test]
fn scheduling_with_km_type_held() {
    let mut s = sys(1);
    let p = pages(&mut s, 1)[0];
    let holder: Rc<Cell<u32>> = Rc::default();
    let hd = holder.clone();
    spawn_raw(&mut s, "holder", 0, move |h, k, cx| {
        hd.set(h.id().0);
        kmap_raw(k, cx, p, KmType::User1, "mapper");
        h.preempt_enable(); // the imbalance: a stray preempt_enable
        h.schedule();
    });
    spawn_raw(&mut s, "next", 0, |_, _, _| {});
    let r = expect_bug(s.run());
    assert_eq!(r.report.kind, "scheduling with KM_TYPE held");
    assert_eq!(
        r.report.message,
        format!(
            "task {} scheduled away at schedule while holding CPU 0's KM_USER1 slot (pfn {:#x}, mapped at mapper)",
            holder.get(),
            p.0
        )
    );
}

#[test]
fn preempt_count_not_zero_on_return_to_user() {
    let mut s = sys(2);
    let p = pages(&mut s, 1)[0];
    let r = run_process(&mut s, 0, move |u| {
        let k = u.kernel();
        u.handle().enter_kernel("test", |cx| {
            kmap_raw(k, cx, p, KmType::User0, "leaky");
            u.handle().set_where("leaky");
            u.handle().return_to_user();
            0
        })
    });
    let r = expect_bug(r);
    assert_eq!(r.report.kind, "preempt count leak");
    assert_eq!(
        r.report.message,
        format!(
            "BUG: returning to user space with preempt_count 1 holding []: task {} 'proc' at leaky",
            r.task
        )
    );
    // the kernel knows which slot leaked
    let k = s.kernel();
    let held = k.atomic_slots_held_by(r.task);
    assert_eq!(held.len(), 1);
    assert_eq!(
        (held[0].0, held[0].1, held[0].2.pfn, held[0].2.place),
        (0, KmType::User0, p, "leaky")
    );
}

#[test]
fn persistent_kmap_held_at_exit() {
    let mut s = sys(2);
    let p = pages(&mut s, 1)[0];
    let r = run_process(&mut s, 0, move |u| {
        let k = u.kernel();
        u.handle().enter_kernel("test", |cx| {
            k.kmap(cx, p, "leaky");
            0
        })
    });
    let r = expect_bug(r);
    assert_eq!(r.report.kind, "kmap leak");
    assert_eq!(
        r.report.message,
        format!(
            "task {} exits holding 1 persistent kmap(s): first pfn {:#x} (entry 1) taken at leaky",
            r.task, p.0
        )
    );
}

/// The public `kmap_atomic` / `kunmap_atomic` refuse the pte slot types: those belong to the
/// pte API, and a raw user could clobber a live `PteMap`.
#[test]
fn raw_kmap_atomic_refuses_the_pte_slots() {
    for ty in [KmType::Pte0, KmType::Pte1, KmType::Pte2] {
        let mut s = sys(2);
        let p = pages(&mut s, 1)[0];
        let r = buggy(&mut s, 0, move |_, k, cx| {
            kmap_raw(k, cx, p, ty, "raw");
        });
        assert_eq!(r.report.kind, "kmap_atomic");
        assert_eq!(
            r.report.message,
            format!(
                "kmap_atomic: task {} asks for {} at raw: the pte slots (KM_PTE0, KM_PTE1, KM_PTE2) belong to the pte API (PteCursor::map, map_nested, map_phys); raw callers use KM_USER0/KM_USER1",
                r.task,
                ty.name()
            )
        );
        let va = s.kernel().layout().kmap_atomic_addr(0, ty);
        let mut s = sys(2);
        let r = buggy(&mut s, 0, move |_, k, cx| {
            kunmap_raw(k, cx, va, ty, "raw");
        });
        assert_eq!(r.report.kind, "kunmap_atomic");
        assert!(r.report.message.starts_with(&format!(
            "kunmap_atomic: task {} asks for {} at raw: the pte slots",
            r.task,
            ty.name()
        )));
    }
}
