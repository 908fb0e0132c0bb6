use highpte_arch::{Config, MemoryVariant, Pae, PagingMode, TwoLevel};
use highpte_kernel::mm::{MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, PROT_READ, PROT_WRITE};
use highpte_kernel::platform::prelude::*;
use highpte_kernel::KernelOptions;
use highpte_machine::{MachineOptions, RunOutcome, System};
use std::cell::RefCell;
use std::rc::Rc;

fn boot<M: PagingMode>(v: MemoryVariant, ram: u64, cpus: u32) -> System<M> {
    let cfg = Config::new(v, ram, cpus, true).unwrap();
    let mut ko = KernelOptions::defaults_for(&cfg);
    ko.debug = true;
    System::<M>::boot(
        cfg,
        ko,
        MachineOptions {
            tick_period: 100_000,
            quantum: 2_000,
            ..Default::default()
        },
    )
    .unwrap()
}

fn scenario<M: PagingMode>(v: MemoryVariant) {
    let mut sys = boot::<M>(v, 2 << 30, 2);
    let log: Rc<RefCell<Vec<String>>> = Rc::new(RefCell::new(Vec::new()));
    let l = log.clone();
    sys.spawn_process("p", None, move |u| {
        let a = u
            .mmap(
                0,
                8 << 20,
                PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS,
            )
            .unwrap();
        for i in 0..2048u32 {
            u.store_u32(a + i * 4096, i).unwrap();
        }
        let s = u
            .mmap(
                0,
                1 << 20,
                PROT_READ | PROT_WRITE,
                MAP_SHARED | MAP_ANONYMOUS,
            )
            .unwrap();
        u.store_u32(s, 7).unwrap();
        let c = u
            .fork("child", false, move |c| {
                assert_eq!(c.load_u32(a + 5 * 4096).unwrap(), 5);
                c.store_u32(a + 5 * 4096, 99).unwrap();
                c.store_u32(s, 8).unwrap();
                0
            })
            .unwrap();
        assert_eq!(u.wait().unwrap(), (c, 0));
        assert_eq!(u.load_u32(s).unwrap(), 8);
        assert_eq!(u.load_u32(a + 5 * 4096).unwrap(), 5);
        u.munmap(a, 4 << 20).unwrap();
        let bad = u
            .handle()
            .enter_kernel("check_invariants", |cx| u.kernel().check_invariants(cx));
        l.borrow_mut().extend(bad);
        0
    })
    .unwrap();
    let out = sys.run();
    assert!(matches!(out, RunOutcome::Completed), "{out}");
    assert!(log.borrow().is_empty(), "{:?}", log.borrow());
    // after every process exited: zero leaks
    let k = sys.kernel_cell();
    let leaks: Rc<RefCell<Vec<String>>> = Rc::new(RefCell::new(Vec::new()));
    let l2 = leaks.clone();
    sys.machine
        .spawn("check", None, move |h| {
            let k = k.get(h).unwrap();
            l2.borrow_mut()
                .extend(h.enter_kernel("check_invariants", |cx| k.check_invariants(cx)));
            let m = k.meminfo(h);
            if m.page_tables != 0 {
                l2.borrow_mut()
                    .push(format!("page tables left: {} kB", m.page_tables));
            }
            let _ = h.nr_cpus();
            0
        })
        .unwrap();
    assert!(matches!(sys.run(), RunOutcome::Completed));
    assert!(leaks.borrow().is_empty(), "{:?}", leaks.borrow());
}

#[test]
fn smoke_64g_highpte() {
    scenario::<Pae>(MemoryVariant::Highmem64gHighpte);
}
#[test]
fn smoke_4g() {
    scenario::<TwoLevel>(MemoryVariant::Highmem4g);
}
#[test]
fn smoke_4g_highpte() {
    scenario::<TwoLevel>(MemoryVariant::Highmem4gHighpte);
}

/// A machine dropped with tasks still asleep in the kernel unmaps their stacks, and its system
/// drops the kernel. Issue 21: the
/// system-call fuzzer builds a machine per case, and every task left asleep (kswapd, a paused
/// process) leaked its whole stack with its coroutine: 20.9 GB of host memory by 50,000 cases.
#[test]
fn a_dropped_machine_unmaps_the_stacks_of_tasks_left_asleep() {
    let before = highpte_machine::task_stacks_mapped();
    let kc;
    {
        let mut sys = boot::<TwoLevel>(MemoryVariant::Highmem4gHighpte, 256 << 20, 2);
        kc = sys.kernel_cell();
        for i in 0..3 {
            sys.spawn_process(format!("p{i}"), None, |u| {
                u.pause();
                0
            })
            .unwrap();
        }
        let out = sys.run();
        assert!(matches!(out, RunOutcome::Deadlock(_)), "{out:?}");
        // the three processes and kswapd sleep in the kernel, their stacks still mapped
        assert!(
            highpte_machine::task_stacks_mapped() >= before + 4,
            "{} stacks mapped, {before} before",
            highpte_machine::task_stacks_mapped()
        );
    }
    assert_eq!(highpte_machine::task_stacks_mapped(), before);
    // and the kernel is dropped too, although the sleeping tasks' frames (leaked, never to
    // run again) still count references to its cell
    assert!(!kc.holds_kernel());
    assert!(std::rc::Rc::strong_count(&kc) > 1);
}
