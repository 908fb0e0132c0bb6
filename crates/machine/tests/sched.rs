//! Scenario tests of the deterministic SMP machine: determinism, where preemption may happen,
//! real interleavings, deadlock and atomic-sleep detection, and many tasks.

use highpte_arch::{TwoLevel, VirtAddr};
use highpte_kernel::platform::prelude::*;
use highpte_kernel::{CpuMask, KernelEvent, Mutex, SpinLock, TlbFlush, WaitQueueKey};
use highpte_machine::{
    DeadlockKind, Machine, MachineOptions, RunOutcome, TaskActivity, TaskHandle,
};
use std::cell::{Cell, RefCell};
use std::rc::Rc;

type H = TaskHandle<TwoLevel>;

fn opts(cpus: u32, seed: u64) -> MachineOptions {
    MachineOptions {
        cpus,
        seed,
        ram_bytes: 64 << 20,
        ..MachineOptions::default()
    }
}

fn machine(o: MachineOptions) -> Machine<TwoLevel> {
    Machine::new(o).expect("machine")
}

/// Sleep on `key` until `flag` is set (the prepare_to_wait / re-check / sleep pattern).
fn wait_for(p: &H, key: WaitQueueKey, flag: &Cell<bool>, place: &'static str) {
    loop {
        let token = p.prepare_to_wait(key);
        if flag.get() {
            return;
        }
        p.sleep(key, token, "test flag", place);
    }
}

/// A mixed scenario: spinlocks, a mutex, sleeping and waking, random charges.
fn mixed_scenario(o: MachineOptions) -> (u64, RunOutcome, u64, Vec<u64>) {
    let mut m = machine(o);
    let counter = Rc::new(SpinLock::new("counter", 0u64));
    let list = Rc::new(Mutex::new("list", Vec::new()));
    let go = Rc::new(Cell::new(false));
    let key = WaitQueueKey(0xb0);
    for i in 0..8u32 {
        let (counter, list, go) = (counter.clone(), list.clone(), go.clone());
        m.spawn(format!("worker{i}"), Some(i % 4), move |p: &H| {
            if i % 2 == 0 {
                wait_for(p, key, &go, "worker:wait-go");
            }
            for j in 0..30u32 {
                p.set_where("worker:counter");
                {
                    let mut g = counter.lock(p);
                    let v = *g;
                    p.charge(KernelEvent::Cycles(p.random() % 300));
                    *g = v + 1;
                }
                if j % 5 == 0 {
                    let mut l = list.lock(&mut sleep_ctx(p), "worker:list");
                    l.push(i);
                    p.charge(KernelEvent::Cycles(500));
                }
                p.cond_resched();
            }
            0
        })
        .expect("spawn");
    }
    let go2 = go.clone();
    m.spawn("releaser", Some(1), move |p: &H| {
        p.charge(KernelEvent::Cycles(20_000));
        go2.set(true);
        p.wake_up_all(key);
        0
    })
    .expect("spawn");
    let out = m.run();
    let total = *Rc::try_unwrap(counter).ok().expect("unique").get_mut();
    (m.event_hash(), out, total, m.cpu_clocks())
}

#[test]
fn same_seed_same_run_and_stress_seeds_differ() {
    let stress = |seed| MachineOptions {
        stress: true,
        preempt: true,
        tick_period: 20_000,
        ..opts(4, seed)
    };
    let (h1, o1, t1, c1) = mixed_scenario(stress(7));
    // Shift the host allocator so the locks of the second run live at other addresses: the
    // run must not depend on them.
    let junk: Vec<Box<[u64; 5]>> = (0..1000).map(|i| Box::new([i; 5])).collect();
    let (h2, o2, t2, c2) = mixed_scenario(stress(7));
    drop(junk);
    assert_eq!(o1, RunOutcome::Completed, "{o1}");
    assert_eq!(o2, RunOutcome::Completed);
    assert_eq!((h1, t1, &c1), (h2, t2, &c2));
    assert_eq!(t1, 8 * 30);
    let (h3, o3, t3, _) = mixed_scenario(stress(8));
    assert_eq!(o3, RunOutcome::Completed);
    assert_eq!(t3, 8 * 30);
    assert_ne!(
        h1, h3,
        "a different stress seed must change the interleaving"
    );
    // Without stress the run is deterministic too.
    let (h4, ..) = mixed_scenario(opts(4, 1));
    let (h5, ..) = mixed_scenario(opts(4, 1));
    assert_eq!(h4, h5);
}

/// Task A runs a long kernel section (50 ticks' worth of cycles) bracketed by
/// preempt_disable/enable; B is queued behind it on the same CPU. Returns the order of
/// records and the machine.
fn long_section(preempt: bool) -> (Vec<&'static str>, Machine<TwoLevel>) {
    let mut m = machine(MachineOptions {
        preempt,
        tick_period: 10_000,
        ..opts(1, 3)
    });
    let log = Rc::new(RefCell::new(Vec::new()));
    let in_section = Rc::new(Cell::new(false));
    let (l, s) = (log.clone(), in_section.clone());
    m.spawn("A", Some(0), move |p: &H| {
        l.borrow_mut().push("A start");
        p.preempt_disable();
        s.set(true);
        for _ in 0..500 {
            p.charge(KernelEvent::Cycles(1_000));
        }
        l.borrow_mut().push("A section end");
        s.set(false);
        p.preempt_enable();
        l.borrow_mut().push("A after enable");
        for _ in 0..500 {
            p.charge(KernelEvent::Cycles(1_000));
        }
        l.borrow_mut().push("A before cond_resched");
        p.cond_resched();
        l.borrow_mut().push("A end");
        0
    })
    .expect("spawn");
    let (l, s) = (log.clone(), in_section.clone());
    m.spawn("B", Some(0), move |p: &H| {
        assert!(!s.get(), "B ran while A had preemption disabled");
        assert_eq!(p.preempt_count(), 0);
        l.borrow_mut().push("B");
        0
    })
    .expect("spawn");
    let out = m.run();
    assert_eq!(out, RunOutcome::Completed, "{out}");
    let v = log.borrow().clone();
    (v, m)
}

#[test]
fn preempt_off_switches_only_at_explicit_schedule_points() {
    let (order, m) = long_section(false);
    assert_eq!(
        order,
        [
            "A start",
            "A section end",
            "A after enable",
            "A before cond_resched",
            "B",
            "A end"
        ]
    );
    assert_eq!(m.stats().preemptions, 0);
    assert!(m.stats().ticks >= 50);
}

#[test]
fn preempt_on_preempts_at_preempt_enable_never_inside() {
    let (order, m) = long_section(true);
    assert_eq!(
        order,
        [
            "A start",
            "A section end",
            "B",
            "A after enable",
            "A before cond_resched",
            "A end"
        ]
    );
    assert_eq!(m.stats().preemptions, 1);
}

/// 16 tasks on 8 CPUs each add 1 to a shared counter 100 times, with a platform call between
/// the read and the write. Returns the final count.
fn increments(seed: u64, locked: bool) -> u64 {
    let mut m = machine(MachineOptions {
        stress: true,
        preempt: seed.is_multiple_of(2),
        ..opts(8, seed)
    });
    let lock = Rc::new(SpinLock::new("counter", 0u64));
    let plain = Rc::new(Cell::new(0u64));
    for i in 0..16u32 {
        let (lock, plain) = (lock.clone(), plain.clone());
        m.spawn(format!("inc{i}"), None, move |p: &H| {
            for _ in 0..100 {
                if locked {
                    let mut g = lock.lock(p);
                    let v = *g;
                    p.charge(KernelEvent::AtomicOp);
                    *g = v + 1;
                } else {
                    let v = plain.get();
                    p.charge(KernelEvent::AtomicOp);
                    plain.set(v + 1);
                }
                p.charge(KernelEvent::Cycles(100));
            }
            0
        })
        .expect("spawn");
    }
    let out = m.run();
    assert_eq!(out, RunOutcome::Completed, "{out}");
    if locked {
        *Rc::try_unwrap(lock).ok().expect("unique").get_mut()
    } else {
        plain.get()
    }
}

#[test]
fn spinlock_excludes_under_stress_and_interleavings_are_real() {
    for seed in 0..4 {
        assert_eq!(increments(seed, true), 1600, "seed {seed}");
    }
    let lost: Vec<u64> = (0..4).map(|seed| increments(seed, false)).collect();
    println!("final counts without the lock: {lost:?}");
    assert!(
        lost.iter().any(|&n| n < 1600),
        "no seed lost an update without the lock: {lost:?}"
    );
}

#[test]
fn abba_deadlock_is_reported_with_tasks_locks_and_places() {
    let mut m = machine(opts(2, 0));
    let a = Rc::new(SpinLock::new("lock-A", ()));
    let b = Rc::new(SpinLock::new("lock-B", ()));
    let (a1, b1) = (a.clone(), b.clone());
    m.spawn("ab", Some(0), move |p: &H| {
        p.set_where("ab:take-A");
        let _ga = a1.lock(p);
        p.charge(KernelEvent::Cycles(5_000));
        p.set_where("ab:take-B");
        let _gb = b1.lock(p);
        0
    })
    .expect("spawn");
    m.spawn("ba", Some(1), move |p: &H| {
        p.set_where("ba:take-B");
        let _gb = b.lock(p);
        p.charge(KernelEvent::Cycles(5_000));
        p.set_where("ba:take-A");
        let _ga = a.lock(p);
        0
    })
    .expect("spawn");
    let RunOutcome::Deadlock(r) = m.run() else {
        panic!("expected a deadlock")
    };
    assert_eq!(r.kind, DeadlockKind::AllSpinning);
    let ab = r.task("ab").expect("ab in report");
    let ba = r.task("ba").expect("ba in report");
    assert!(
        matches!(ab.activity, TaskActivity::Spinning { on: highpte_kernel::WaitOn::SpinLock { name: "lock-B", holder: Some(h), .. }, .. } if h == ba.id)
    );
    assert!(
        matches!(ba.activity, TaskActivity::Spinning { on: highpte_kernel::WaitOn::SpinLock { name: "lock-A", holder: Some(h), .. }, .. } if h == ab.id)
    );
    assert_eq!(
        ab.held_locks.iter().map(|l| l.name).collect::<Vec<_>>(),
        ["lock-A"]
    );
    assert_eq!(
        ba.held_locks.iter().map(|l| l.name).collect::<Vec<_>>(),
        ["lock-B"]
    );
    assert_eq!((ab.where_label, ba.where_label), ("ab:take-B", "ba:take-A"));
    let text = r.to_string();
    for s in [
        "'ab'",
        "'ba'",
        "lock-A",
        "lock-B",
        "ab:take-B",
        "ba:take-A",
        "held by task",
    ] {
        assert!(text.contains(s), "report lacks {s}:\n{text}");
    }
    // The machine stays stopped.
    assert!(matches!(m.run(), RunOutcome::Deadlock(_)));
}

#[test]
fn lost_wakeup_is_reported() {
    let mut m = machine(opts(2, 0));
    m.spawn("sleeper", Some(0), |p: &H| {
        p.set_where("sleeper:waiting");
        let key = WaitQueueKey(42);
        let token = p.prepare_to_wait(key);
        p.sleep(key, token, "a wake-up nobody sends", "test:lost_wakeup");
        0
    })
    .expect("spawn");
    m.spawn("bystander", Some(1), |p: &H| {
        p.charge(KernelEvent::Cycles(1000));
        0
    })
    .expect("spawn");
    let RunOutcome::Deadlock(r) = m.run() else {
        panic!("expected a deadlock")
    };
    assert_eq!(r.kind, DeadlockKind::AllAsleep);
    assert_eq!(r.tasks.len(), 1);
    let s = r.task("sleeper").expect("sleeper");
    assert_eq!(
        s.activity,
        TaskActivity::Sleeping {
            key: WaitQueueKey(42),
            what: "a wake-up nobody sends",
            place: "test:lost_wakeup"
        }
    );
    assert_eq!(s.where_label, "sleeper:waiting");
    assert!(r
        .to_string()
        .contains("sleeping on queue 0x2a \"a wake-up nobody sends\" at test:lost_wakeup"));
}

#[test]
fn might_sleep_in_atomic_context_is_a_bug_naming_the_place() {
    let mut m = machine(opts(1, 0));
    let lock = Rc::new(SpinLock::new("held-lock", ()));
    m.spawn("offender", None, move |p: &H| {
        p.set_where("offender:atomic");
        let _g = lock.lock(p);
        p.might_sleep("mm/test.rs:might_sleep_site");
        0
    })
    .expect("spawn");
    let RunOutcome::Bug(b) = m.run() else {
        panic!("expected a bug")
    };
    assert_eq!(b.report.kind, "might_sleep");
    assert!(
        b.report.message.contains("mm/test.rs:might_sleep_site"),
        "{}",
        b.report.message
    );
    assert!(
        b.report.message.contains("preempt_count 1"),
        "{}",
        b.report.message
    );
    assert!(
        b.report.message.contains("held-lock"),
        "{}",
        b.report.message
    );
    assert_eq!(b.task_name, "offender");
    assert_eq!(b.where_label, "offender:atomic");
}

#[test]
fn sleeping_with_a_spinlock_held_is_a_bug() {
    let mut m = machine(opts(2, 0));
    let lock = Rc::new(SpinLock::new("spin", ()));
    let mutex = Rc::new(Mutex::new("sleepy", ()));
    m.spawn("t", None, move |p: &H| {
        let _g = lock.lock(p);
        let _m = mutex.lock(&mut sleep_ctx(p), "test:mutex-under-spinlock");
        0
    })
    .expect("spawn");
    let RunOutcome::Bug(b) = m.run() else {
        panic!("expected a bug")
    };
    assert!(
        b.report.message.contains("test:mutex-under-spinlock"),
        "{}",
        b.report.message
    );
}

#[test]
fn mutex_contention_works_on_up_with_preemption() {
    let mut m = machine(MachineOptions {
        preempt: true,
        tick_period: 5_000,
        ..opts(1, 0)
    });
    let mutex = Rc::new(Mutex::new("m", 0u32));
    for i in 0..4 {
        let mutex = mutex.clone();
        m.spawn(format!("t{i}"), None, move |p: &H| {
            for _ in 0..10 {
                let mut g = mutex.lock(&mut sleep_ctx(p), "test:up-mutex");
                let v = *g;
                p.charge(KernelEvent::Cycles(3_000));
                p.schedule();
                *g = v + 1;
            }
            0
        })
        .expect("spawn");
    }
    let out = m.run();
    assert_eq!(out, RunOutcome::Completed, "{out}");
    assert_eq!(*Rc::try_unwrap(mutex).ok().expect("unique").get_mut(), 40);
    assert!(m.stats().sleeps > 0);
}

#[test]
fn shootdowns_interrupt_the_other_cpus() {
    let mut m = machine(opts(4, 0));
    m.spawn("flusher", Some(2), |p: &H| {
        let two_pages = TlbFlush::Pages {
            start: VirtAddr::new(0x1000),
            count: 2,
        };
        p.flush_tlb_others(CpuMask(0b1111), two_pages);
        p.flush_tlb_others(CpuMask(0b0100), two_pages);
        p.flush_tlb_all();
        0
    })
    .expect("spawn");
    assert_eq!(m.run(), RunOutcome::Completed);
    let s = m.stats();
    assert_eq!(s.ipis_sent, 6);
    assert_eq!(s.tlb_shootdowns, 2);
    let per_cpu = m.cpu_stats();
    assert_eq!(
        per_cpu.iter().map(|c| c.ipis_received).collect::<Vec<_>>(),
        [2, 2, 0, 2]
    );
}

fn rss_kb(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn ten_thousand_sleeping_tasks() {
    const N: usize = 10_000;
    let before = rss_kb("VmRSS:");
    let mut m = machine(opts(4, 0));
    let asleep = Rc::new(Cell::new(0usize));
    let go = Rc::new(Cell::new(false));
    let key = WaitQueueKey(7);
    for i in 0..N {
        let (asleep, go) = (asleep.clone(), go.clone());
        m.spawn(format!("idle{i}"), None, move |p: &H| {
            asleep.set(asleep.get() + 1);
            wait_for(p, key, &go, "idle:wait");
            0
        })
        .expect("spawn");
    }
    let (a, g) = (asleep.clone(), go.clone());
    m.spawn("waker", None, move |p: &H| {
        while a.get() < N {
            p.schedule();
        }
        g.set(true);
        p.wake_up_all(key) as i32
    })
    .expect("spawn");
    let out = m.run();
    let after = rss_kb("VmRSS:");
    let peak = rss_kb("VmHWM:");
    assert_eq!(out, RunOutcome::Completed, "{out}");
    assert_eq!(
        m.exit_code(highpte_kernel::TaskId(N as u32)),
        Some(N as i32)
    );
    assert_eq!(m.stats().exited, N as u64 + 1);
    println!(
        "{N} tasks: RSS {before} kB before, {after} kB after, peak {peak} kB ({} B per task at peak)",
        (peak.saturating_sub(before)) * 1024 / N as u64
    );
}

/// Boot-style setup of a page directory at 0x1000 mapping 0xc0000000..+4 MB to physical 0
/// with one PSE page, then paging on.
fn boot_one_large_page(p: &H) {
    use highpte_arch::PhysAddr;
    unsafe { p.boot_phys_clear_page(PhysAddr::new_checked(0x1000)) };
    unsafe { p.boot_phys_write_u32(PhysAddr::new_checked(0x1000 + 0x300 * 4), 0x83) };
    unsafe { p.enable_paging(false, PhysAddr::new_checked(0x1000)) };
}

#[test]
fn kernel_accesses_go_through_the_mmu() {
    let mut m = machine(opts(2, 0));
    m.spawn("boot", Some(0), |p: &H| {
        boot_one_large_page(p);
        let before = p.now();
        unsafe { p.write_u32(VirtAddr::new(0xc000_2000), 0xfeed) };
        let first = p.now() - before;
        let before = p.now();
        let v = unsafe { p.read_u32(VirtAddr::new(0xc000_2000)) };
        let second = p.now() - before;
        assert_eq!(v, 0xfeed);
        assert!(
            first > second,
            "the first access walks the tables ({first} vs {second} cycles)"
        );
        0
    })
    .expect("spawn");
    assert_eq!(m.run(), RunOutcome::Completed);
    assert_eq!(m.phys().read_u32(0x2000).ok(), Some(0xfeed));
    assert!(m.mmu_regs(1).is_some_and(|r| r.paging && r.cr3 == 0x1000));
}

#[test]
fn kernel_page_fault_is_an_oops_naming_address_and_task() {
    let mut m = machine(opts(1, 0));
    m.spawn("faulter", None, |p: &H| {
        boot_one_large_page(p);
        p.set_where("test:oops-site");
        unsafe { p.read_u32(VirtAddr::new(0xd000_0010)) };
        0
    })
    .expect("spawn");
    let RunOutcome::Bug(b) = m.run() else {
        panic!("expected an oops")
    };
    assert_eq!(b.report.kind, "kernel page fault");
    let msg = &b.report.message;
    assert!(
        msg.contains("0xd0000010") && msg.contains("faulter") && msg.contains("test:oops-site"),
        "{msg}"
    );
    assert!(msg.contains("error code 0x0"), "{msg}");
}

#[test]
fn preempt_count_underflow_is_a_bug() {
    let mut m = machine(opts(1, 0));
    m.spawn("unbalanced", None, |p: &H| {
        p.preempt_enable();
        0
    })
    .expect("spawn");
    let RunOutcome::Bug(b) = m.run() else {
        panic!("expected a bug")
    };
    assert_eq!(b.report.kind, "preempt_count underflow");
}

#[test]
fn return_to_user_with_a_lock_held_is_a_bug_and_preempts_otherwise() {
    let mut m = machine(MachineOptions {
        tick_period: 5_000,
        ..opts(1, 0)
    });
    let order = Rc::new(RefCell::new(Vec::new()));
    let o = order.clone();
    m.spawn("user", None, move |p: &H| {
        p.charge(KernelEvent::Cycles(20_000));
        o.borrow_mut().push("user before return");
        p.return_to_user();
        o.borrow_mut().push("user after return");
        0
    })
    .expect("spawn");
    let o = order.clone();
    m.spawn("other", None, move |_p: &H| {
        o.borrow_mut().push("other");
        0
    })
    .expect("spawn");
    assert_eq!(m.run(), RunOutcome::Completed);
    assert_eq!(
        *order.borrow(),
        ["user before return", "other", "user after return"]
    );
    assert_eq!(m.stats().user_preemptions, 1);

    let mut m = machine(opts(1, 0));
    let lock = Rc::new(SpinLock::new("leaked", ()));
    m.spawn("leaker", None, move |p: &H| {
        let g = lock.lock(p);
        std::mem::forget(g);
        p.return_to_user();
        0
    })
    .expect("spawn");
    let RunOutcome::Bug(b) = m.run() else {
        panic!("expected a bug")
    };
    assert!(
        b.report.message.contains("preempt_count 1") && b.report.message.contains("leaked"),
        "{}",
        b.report.message
    );
}

#[test]
fn stress_mode_migrates_tasks_between_cpus() {
    let mut m = machine(MachineOptions {
        stress: true,
        preempt: true,
        tick_period: 10_000,
        ..opts(4, 11)
    });
    let cpus_seen = Rc::new(RefCell::new(std::collections::BTreeSet::new()));
    for i in 0..8 {
        let seen = cpus_seen.clone();
        m.spawn(format!("w{i}"), Some(0), move |p: &H| {
            for _ in 0..200 {
                p.preempt_disable();
                p.charge(KernelEvent::Cycles(500));
                p.preempt_enable();
                seen.borrow_mut().insert((p.task().0, p.cpu()));
            }
            0
        })
        .expect("spawn");
    }
    assert_eq!(m.run(), RunOutcome::Completed);
    let s = m.stats();
    assert!(s.migrations > 0 && s.preemptions > 0, "{s:?}");
    let tasks_on_many = (0..8u32)
        .filter(|t| cpus_seen.borrow().iter().filter(|(x, _)| x == t).count() > 1)
        .count();
    assert!(tasks_on_many > 0);
}

/// The sleep capability of a raw task body (a kernel entry: nothing held, nothing mapped),
/// which `Mutex::lock` asks for.
fn sleep_ctx(p: &H) -> highpte_kernel::SleepCtx<'_, H> {
    // SAFETY: called at the top of a sleeping-lock acquisition in a task body; the tests
    // that hold a spinlock there do so on purpose, to see the machine's might_sleep report.
    unsafe { highpte_kernel::SleepCtx::enter(p) }
}
