//! Swap and reclaim: processes that touch more than RAM run to completion with every stamp
//! intact, COW pages and forks survive swapping, every slot and swap-cache page is given back,
//! and the OOM killer fires only when swap is full too.

mod vm_common;
use highpte_arch::{MemoryVariant, PagingMode};
use highpte_kernel::mm::reclaim::ReclaimKind;
use highpte_kernel::mm::{MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE};
use highpte_kernel::{Counter, Signal};
use highpte_machine::{RunOutcome, System};
use vm_common::*;

const RW: u32 = PROT_READ | PROT_WRITE;
const PA: u32 = MAP_PRIVATE | MAP_ANONYMOUS;

/// RAM small enough to overcommit quickly, with high memory in every highmem variant.
fn ram_for(v: MemoryVariant) -> u64 {
    match v {
        MemoryVariant::NoHighmem => 128 * MB,
        _ => 1024 * MB,
    }
}

fn boot_swap<M: PagingMode>(
    v: MemoryVariant,
    ram: u64,
    cpus: u32,
    swap: u64,
    reclaim: ReclaimKind,
) -> System<M> {
    boot_with::<M>(v, ram, cpus, |ko| {
        ko.swap_pages = swap / 4096;
        ko.reclaim = reclaim;
    })
}

/// Touch `len` bytes of private memory with a stamp per page, read every stamp back twice.
fn touch_and_verify<M: PagingMode>(u: &mut highpte_machine::User<'_, M>, len: u64, gen: u32) {
    let mut pieces = Vec::new();
    let mut left = len;
    while left > 0 {
        let l = left.min(GB);
        pieces.push((u.mmap(0, l, RW, PA).unwrap(), l));
        left -= l;
    }
    for &(a, l) in &pieces {
        for i in 0..(l / 4096) as u32 {
            if let Err(e) = u.store_u32(a + i * PAGE, stamp(a / PAGE + i, gen)) {
                let k = u.kernel();
                panic!(
                    "{e:?} at page {i}: {:?} rmap {:?} swap {:?} mi {:?}",
                    k.counters().snapshot(),
                    k.rmap_usage(),
                    k.swap_usage(u.handle()),
                    mi(u)
                );
            }
        }
    }
    for round in 0..2 {
        for &(a, l) in &pieces {
            for i in 0..(l / 4096) as u32 {
                let got = u.load_u32(a + i * PAGE).unwrap();
                assert_eq!(
                    got,
                    stamp(a / PAGE + i, gen),
                    "round {round}: page {:#x} lost its stamp",
                    a + i * PAGE
                );
            }
        }
    }
    for (a, l) in pieces {
        u.munmap(a, l).unwrap();
    }
}

fn overcommit<M: PagingMode>(v: MemoryVariant, reclaim: ReclaimKind) {
    let ram = ram_for(v);
    let mut sys = boot_swap::<M>(v, ram, 2, ram * 2, reclaim);
    let b = quiesce(&mut sys);
    assert_eq!(
        b.mi.swap_total,
        ram * 2 / 1024 - 4,
        "{v}: SwapTotal (the header slot)"
    );
    let len = ram * 3 / 2;
    let code = run_process(&mut sys, move |u| {
        touch_and_verify(u, len, 7);
        let k = u.kernel();
        assert!(k.counters().get(Counter::Pswpout) > 0);
        assert!(k.counters().get(Counter::Pswpin) > 0);
        inv(u, "after the overcommit");
        0
    });
    assert_eq!(code, 0, "{v}");
    let k = sys.kernel();
    let out = k.counters().get(Counter::Pswpout);
    // at least the half of the range that did not fit was written out
    assert!(
        out >= (len - ram) / 4096 / 2,
        "{v}: only {out} pages written"
    );
    assert_no_leak(&mut sys, &b, &format!("{v} {reclaim}"));
    let q = quiesce(&mut sys);
    assert_eq!(
        q.mi.swap_free, q.mi.swap_total,
        "{v}: swap slots left in use"
    );
    assert_eq!(q.mi.swap_cached, 0, "{v}: swap cache not empty");
}

#[test]
fn overcommit_1_5x_ram_keeps_every_stamp_scan() {
    for (v, _) in CONFIGS {
        dispatch!(v, overcommit(v, ReclaimKind::Scan));
    }
}

/// A parent and a forked child share COW pages; both get swapped; each keeps its own data.
fn cow_swap<M: PagingMode>(v: MemoryVariant, reclaim: ReclaimKind) {
    let ram = ram_for(v);
    let mut sys = boot_swap::<M>(v, ram, 2, ram * 2, reclaim);
    let b = quiesce(&mut sys);
    let code = run_process(&mut sys, move |u| {
        let n = (ram / 2 / 4096) as u32;
        let a = u.mmap(0, n as u64 * 4096, RW, PA).unwrap();
        for i in 0..n {
            u.store_u32(a + i * PAGE, stamp(i, 1)).unwrap();
        }
        let child = u
            .fork("child", false, move |c| {
                // the child rewrites every other page, then pressure from a big touch
                for i in (0..n).step_by(2) {
                    c.store_u32(a + i * PAGE, stamp(i, 2)).unwrap();
                }
                touch_and_verify(c, ram, 3);
                for i in 0..n {
                    let want = if i % 2 == 0 { stamp(i, 2) } else { stamp(i, 1) };
                    if c.load_u32(a + i * PAGE).unwrap() != want {
                        return 1;
                    }
                }
                0
            })
            .unwrap();
        let (pid, code) = u.wait().unwrap();
        assert_eq!(pid, child);
        assert_eq!(code, 0, "the child lost a stamp");
        for i in 0..n {
            assert_eq!(
                u.load_u32(a + i * PAGE).unwrap(),
                stamp(i, 1),
                "parent page {i}"
            );
        }
        inv(u, "after cow and swap");
        0
    });
    assert_eq!(code, 0);
    assert_no_leak(&mut sys, &b, &format!("{v} {reclaim} cow"));
}

#[test]
fn cow_pages_survive_swap_scan() {
    for v in [
        MemoryVariant::Highmem4gHighpte,
        MemoryVariant::Highmem64gHighpte,
    ] {
        dispatch!(v, cow_swap(v, ReclaimKind::Scan));
    }
}

/// With swap full too, the OOM killer fires; before that it does not.
fn oom_only_when_swap_is_full<M: PagingMode>(v: MemoryVariant) {
    let ram = ram_for(v);
    let swap = ram / 2;
    let mut sys = boot_swap::<M>(v, ram, 1, swap, ReclaimKind::Scan);
    let b = quiesce(&mut sys);
    let hog = sys
        .spawn_process("hog", Some(0), move |u| {
            let len = ram + swap + 64 * MB;
            let mut left = len;
            let mut touched = 0u64;
            while left > 0 {
                let l = left.min(GB);
                let a = u.mmap(0, l, RW, PA).unwrap();
                for i in 0..(l / 4096) as u32 {
                    match u.store_u32(a + i * PAGE, i) {
                        Ok(()) => touched += 1,
                        Err(s) => {
                            assert_eq!(s, Signal::Sigkill);
                            let k = u.kernel();
                            let (total, used, _) = k.swap_usage(u.handle());
                            // killed only once swap was (nearly) full
                            assert!(
                                used + 64 >= total,
                                "killed with {used} of {total} slots used"
                            );
                            assert!(touched * 4096 > ram, "killed after only {touched} pages");
                            return 9;
                        }
                    }
                }
                left -= l;
            }
            0
        })
        .unwrap();
    let out = sys.run();
    assert!(matches!(out, RunOutcome::Completed), "{v}: {out}");
    assert_eq!(sys.machine.exit_code(hog), Some(9), "{v}: not killed");
    assert_no_leak(&mut sys, &b, &format!("{v} oom with swap"));
}

#[test]
fn oom_killer_waits_for_swap_to_fill() {
    for v in [MemoryVariant::NoHighmem, MemoryVariant::Highmem64gHighpte] {
        dispatch!(v, oom_only_when_swap_is_full(v));
    }
}

/// A SysV segment and a shared anonymous mapping bigger than what fits with the rest: their
/// pages are swapped out through the objects and read back by other processes intact.
fn shared_swap<M: PagingMode>(v: MemoryVariant, reclaim: ReclaimKind) {
    use highpte_kernel::mm::shm::{IPC_CREAT, IPC_PRIVATE};
    use highpte_kernel::mm::MAP_SHARED;
    let ram = ram_for(v);
    let mut sys = boot_swap::<M>(v, ram, 2, ram * 2, reclaim);
    let b = quiesce(&mut sys);
    let code = run_process(&mut sys, move |u| {
        let n = (ram / 2 / 4096) as u32;
        let id = u
            .shmget(IPC_PRIVATE, n as u64 * 4096, IPC_CREAT | 0o600)
            .unwrap();
        let s = u.shmat(id, 0, 0).unwrap();
        let m = (ram / 4 / 4096) as u32;
        let sh = u
            .mmap(0, m as u64 * 4096, RW, MAP_SHARED | MAP_ANONYMOUS)
            .unwrap();
        for i in 0..n {
            u.store_u32(s + i * PAGE, stamp(i, 10)).unwrap();
        }
        for i in 0..m {
            u.store_u32(sh + i * PAGE, stamp(i, 20)).unwrap();
        }
        let child = u
            .fork("child", false, move |c| {
                // pressure: more private memory than is left
                touch_and_verify(c, ram / 2, 4);
                for i in 0..n {
                    if c.load_u32(s + i * PAGE).unwrap() != stamp(i, 10) {
                        return 1;
                    }
                    if i % 2 == 1 {
                        c.store_u32(s + i * PAGE, stamp(i, 11)).unwrap();
                    }
                }
                for i in 0..m {
                    if c.load_u32(sh + i * PAGE).unwrap() != stamp(i, 20) {
                        return 2;
                    }
                    c.store_u32(sh + i * PAGE, stamp(i, 21)).unwrap();
                }
                0
            })
            .unwrap();
        let (pid, code) = u.wait().unwrap();
        assert_eq!((pid, code), (child, 0), "the child saw a wrong stamp");
        // the parent sees the child's writes, through swap
        touch_and_verify(u, ram / 2, 5);
        for i in 0..n {
            let want = if i % 2 == 1 {
                stamp(i, 11)
            } else {
                stamp(i, 10)
            };
            assert_eq!(u.load_u32(s + i * PAGE).unwrap(), want, "shm page {i}");
        }
        for i in 0..m {
            assert_eq!(
                u.load_u32(sh + i * PAGE).unwrap(),
                stamp(i, 21),
                "shared page {i}"
            );
        }
        inv(u, "after shared swap");
        u.shmdt(s).unwrap();
        u.shm_rmid(id).unwrap();
        0
    });
    assert_eq!(code, 0);
    let k = sys.kernel();
    assert!(
        k.counters().get(Counter::Pswpout) > 0,
        "{v}: nothing was swapped"
    );
    assert_no_leak(&mut sys, &b, &format!("{v} {reclaim} shared"));
    let q = quiesce(&mut sys);
    assert_eq!(
        q.mi.swap_free, q.mi.swap_total,
        "{v}: swap slots left in use"
    );
}

#[test]
fn shared_pages_survive_swap_scan() {
    for v in [MemoryVariant::NoHighmem, MemoryVariant::Highmem64gHighpte] {
        dispatch!(v, shared_swap(v, ReclaimKind::Scan));
    }
}

#[test]
fn overcommit_1_5x_ram_keeps_every_stamp_rmap() {
    for (v, _) in CONFIGS {
        dispatch!(v, overcommit(v, ReclaimKind::Rmap));
    }
}

#[test]
fn cow_pages_survive_swap_rmap() {
    for v in [
        MemoryVariant::Highmem4gHighpte,
        MemoryVariant::Highmem64gHighpte,
    ] {
        dispatch!(v, cow_swap(v, ReclaimKind::Rmap));
    }
}

#[test]
fn shared_pages_survive_swap_rmap() {
    for v in [MemoryVariant::NoHighmem, MemoryVariant::Highmem64gHighpte] {
        dispatch!(v, shared_swap(v, ReclaimKind::Rmap));
    }
}

/// swapoff brings every page back (private, COW-shared with a child, SysV), then the device
/// is off; with more swapped than memory can hold it fails with ENOMEM and changes nothing.
fn swapoff_brings_everything_back<M: PagingMode>(v: MemoryVariant, reclaim: ReclaimKind) {
    use highpte_kernel::mm::shm::{IPC_CREAT, IPC_PRIVATE};
    use highpte_kernel::Errno;
    let ram = ram_for(v);
    let mut sys = boot_swap::<M>(v, ram, 2, ram * 2, reclaim);
    let b = quiesce(&mut sys);
    let code = run_process(&mut sys, move |u| {
        let k = u.kernel();
        // a ballast bigger than RAM pushes the rest out to swap
        let n = (ram / 4 / 4096) as u32;
        let a = u.mmap(0, n as u64 * 4096, RW, PA).unwrap();
        let id = u
            .shmget(IPC_PRIVATE, n as u64 * 4096, IPC_CREAT | 0o600)
            .unwrap();
        let s = u.shmat(id, 0, 0).unwrap();
        for i in 0..n {
            u.store_u32(a + i * PAGE, stamp(i, 30)).unwrap();
            u.store_u32(s + i * PAGE, stamp(i, 31)).unwrap();
        }
        let big = ram + ram / 4;
        let ballast = u.mmap(0, big, RW, PA).unwrap();
        for i in 0..(big / 4096) as u32 {
            u.store_u32(ballast + i * PAGE, i).unwrap();
        }
        // too much on swap to fit: ENOMEM, nothing lost, the device still on
        assert_eq!(u.swapoff(), Err(Errno::ENOMEM));
        let (total, used, _) = k.swap_usage(u.handle());
        assert_eq!(total, ram * 2 / 4096 - 1);
        assert!(used > 0);
        inv(u, "after a failed swapoff");
        u.munmap(ballast, big).unwrap();
        // a child shares the private pages (swap entries and COW pages)
        let child = u
            .fork("child", false, move |c| {
                c.pause();
                0
            })
            .unwrap();
        let before_in = k.counters().get(Counter::Pswpin);
        let used_before = k.swap_usage(u.handle()).1;
        assert!(used_before > 0, "nothing was on swap before swapoff");
        assert_eq!(u.swapoff(), Ok(()));
        assert_eq!(
            k.swap_usage(u.handle()),
            (0, 0, 0),
            "swap still in use after swapoff"
        );
        assert!(k.counters().get(Counter::Pswpin) > before_in);
        assert_eq!(
            u.swapoff(),
            Err(Errno::EINVAL),
            "swapoff of a device already off"
        );
        inv(u, "after swapoff");
        let majors = k.counters().get(Counter::FaultsMajor);
        for i in 0..n {
            assert_eq!(
                u.load_u32(a + i * PAGE).unwrap(),
                stamp(i, 30),
                "private page {i}"
            );
            assert_eq!(
                u.load_u32(s + i * PAGE).unwrap(),
                stamp(i, 31),
                "shm page {i}"
            );
        }
        // everything was in memory: no page had to be read in
        assert_eq!(k.counters().get(Counter::FaultsMajor), majors);
        assert_eq!(u.swapon(), Ok(()));
        assert_eq!(u.swapon(), Err(Errno::EBUSY));
        u.kill(child, Signal::Sigkill);
        u.wait().unwrap();
        u.shmdt(s).unwrap();
        u.shm_rmid(id).unwrap();
        0
    });
    assert_eq!(code, 0);
    assert_no_leak(&mut sys, &b, &format!("{v} {reclaim} swapoff"));
}

#[test]
fn swapoff_brings_every_page_back() {
    // the rmap design in a highpte configuration (its chains point into high pte pages)
    for (v, r) in [
        (MemoryVariant::NoHighmem, ReclaimKind::Scan),
        (MemoryVariant::Highmem64gHighpte, ReclaimKind::Rmap),
    ] {
        dispatch!(v, swapoff_brings_everything_back(v, r));
    }
}
