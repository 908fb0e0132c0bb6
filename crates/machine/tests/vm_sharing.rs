//! Copy-on-write isolation after fork, and sharing through shared mappings and SysV shm
//! between processes, in every configuration (both paging modes, pte pages low and high).

mod vm_common;
use highpte_arch::{MemoryVariant, PagingMode};
use highpte_kernel::mm::shm::IPC_CREAT;
use highpte_kernel::mm::{MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, PROT_READ, PROT_WRITE};
use highpte_kernel::Errno;
use highpte_machine::{RunOutcome, User};
use std::cell::RefCell;
use std::rc::Rc;
use vm_common::*;

const RW: u32 = PROT_READ | PROT_WRITE;
const PA: u32 = MAP_PRIVATE | MAP_ANONYMOUS;
const SA: u32 = MAP_SHARED | MAP_ANONYMOUS;
const N: u32 = 256;

/// Spin (in user mode) until the u32 at `va` equals `want`.
fn wait_for<M: PagingMode>(u: &mut User<'_, M>, va: u32, want: u32) {
    let mut n = 0u64;
    while u.load_u32(va).unwrap() != want {
        n += 1;
        assert!(n < 50_000_000, "waited too long for {va:#x} == {want}");
    }
}

fn cow<M: PagingMode>(u: &mut User<'_, M>) -> i32 {
    let a = u.mmap(0, N as u64 * 4096, RW, PA).unwrap();
    let flag = u.mmap(0, 4096, RW, SA).unwrap();
    for i in 0..N {
        u.store_u32(a + i * PAGE, stamp(i, 1)).unwrap();
    }
    let before: Vec<u64> = (0..N).map(|i| pfn_of(u, a + i * PAGE).unwrap()).collect();
    let child_pfns: Rc<RefCell<Vec<Option<u64>>>> = Rc::new(RefCell::new(Vec::new()));
    let cp = child_pfns.clone();
    let c = u
        .fork("child", false, move |c| {
            // the flag page was never touched: only the N private pages are mapped
            assert_eq!(rss_ptes(c).0, N as u64);
            // the child sees the parent's data as of the fork
            for i in 0..N {
                assert_eq!(c.load_u32(a + i * PAGE), Ok(stamp(i, 1)), "child page {i}");
            }
            c.store_u32(flag, 1).unwrap();
            // it writes the even pages while the parent writes the odd ones
            for i in (0..N).step_by(2) {
                c.store_u32(a + i * PAGE, stamp(i, 2)).unwrap();
            }
            wait_for(c, flag, 2);
            for i in 0..N {
                let want = if i % 2 == 0 { stamp(i, 2) } else { stamp(i, 1) };
                assert_eq!(c.load_u32(a + i * PAGE), Ok(want), "child page {i}");
            }
            *cp.borrow_mut() = (0..N).map(|i| pfn_of(c, a + i * PAGE)).collect();
            inv(c, "child");
            0
        })
        .unwrap();
    wait_for(u, flag, 1);
    for i in (1..N).step_by(2) {
        u.store_u32(a + i * PAGE, stamp(i, 3)).unwrap();
    }
    // pages 0 mod 4 are written by nobody else afterwards; the parent also leaves them
    u.store_u32(flag, 2).unwrap();
    assert_eq!(u.wait(), Ok((c, 0)));
    for i in 0..N {
        let want = if i % 2 == 0 { stamp(i, 1) } else { stamp(i, 3) };
        assert_eq!(u.load_u32(a + i * PAGE), Ok(want), "parent page {i}");
    }
    // each side that wrote after the fork got its own copy; the other kept the original
    let cp = child_pfns.borrow();
    for i in 0..N as usize {
        let mine = pfn_of(u, a + i as u32 * PAGE).unwrap();
        let theirs = cp[i].unwrap();
        assert_ne!(mine, theirs, "page {i} shared after both wrote");
        if i % 2 == 0 {
            assert_eq!(mine, before[i], "parent's untouched page {i} moved");
        } else {
            assert_eq!(theirs, before[i], "child's untouched page {i} moved");
        }
    }
    // the child is gone: the parent's pages are exclusively its own again and a write
    // reuses them without copying
    let copies = u
        .kernel()
        .counters()
        .get(highpte_kernel::Counter::PagesCopied);
    u.store_u32(a, 9).unwrap();
    assert_eq!(pfn_of(u, a).unwrap(), before[0]);
    assert_eq!(
        u.kernel()
            .counters()
            .get(highpte_kernel::Counter::PagesCopied),
        copies
    );
    inv(u, "parent");
    0
}

#[test]
fn cow_isolation_in_every_config() {
    fn one<M: PagingMode>(v: MemoryVariant, ram: u64) {
        let mut sys = boot::<M>(v, ram, 2);
        let b = quiesce(&mut sys);
        assert_eq!(run_process(&mut sys, cow::<M>), 0, "{v}");
        assert_no_leak(&mut sys, &b, v.name());
    }
    for (v, ram) in CONFIGS {
        dispatch!(v, one(v, ram));
    }
}

fn shared<M: PagingMode>(u: &mut User<'_, M>) -> i32 {
    let s = u.mmap(0, 16 * 4096, RW, SA).unwrap();
    let c = u
        .fork("child", false, move |c| {
            wait_for(c, s, 1);
            // the parent's writes made after the fork are visible
            for i in 1..16 {
                assert_eq!(c.load_u32(s + i * PAGE), Ok(100 + i));
            }
            for i in 1..16 {
                c.store_u32(s + i * PAGE + 4, 200 + i).unwrap();
            }
            c.store_u32(s, 2).unwrap();
            0
        })
        .unwrap();
    for i in 1..16 {
        u.store_u32(s + i * PAGE, 100 + i).unwrap();
    }
    u.store_u32(s, 1).unwrap();
    wait_for(u, s, 2);
    for i in 1..16 {
        assert_eq!(u.load_u32(s + i * PAGE + 4), Ok(200 + i));
    }
    assert_eq!(u.wait(), Ok((c, 0)));
    // both mapped the same frames
    inv(u, "shared");
    0
}

#[test]
fn shared_mappings_see_each_others_writes() {
    for (v, ram) in CONFIGS {
        fn one<M: PagingMode>(v: MemoryVariant, ram: u64) {
            let mut sys = boot::<M>(v, ram, 2);
            let b = quiesce(&mut sys);
            assert_eq!(run_process(&mut sys, shared::<M>), 0, "{v}");
            assert_no_leak(&mut sys, &b, v.name());
        }
        dispatch!(v, one(v, ram));
    }
}

/// Two unrelated processes share a SysV segment by key, as database processes share an SGA.
#[test]
fn shm_between_unrelated_processes() {
    fn one<M: PagingMode>(v: MemoryVariant, ram: u64) {
        const KEY: i32 = 0x0ac1e;
        let mut sys = boot::<M>(v, ram, 2);
        let b = quiesce(&mut sys);
        let pfns: Rc<RefCell<Vec<u64>>> = Rc::new(RefCell::new(Vec::new()));
        let p1 = pfns.clone();
        let a = sys
            .spawn_process("creator", Some(0), move |u| {
                let id = u.shmget(KEY, 64 * 4096, IPC_CREAT).unwrap();
                let at = u.shmat(id, 0, 0).unwrap();
                for i in 1..64 {
                    u.store_u32(at + i * PAGE, stamp(i, 7)).unwrap();
                }
                u.store_u32(at, 1).unwrap();
                wait_for(u, at, 2);
                for i in 1..64 {
                    assert_eq!(u.load_u32(at + i * PAGE + 8), Ok(stamp(i, 8)));
                }
                p1.borrow_mut().push(pfn_of(u, at + 5 * PAGE).unwrap());
                // (no invariant check here: the other process may be exiting right now)
                u.shmdt(at).unwrap();
                u.shm_rmid(id).unwrap();
                0
            })
            .unwrap();
        let p2 = pfns.clone();
        let c = sys
            .spawn_process("user", Some(1), move |u| {
                u.mmap(
                    0x2000_0000,
                    4096,
                    PROT_READ,
                    PA | highpte_kernel::mm::MAP_FIXED,
                )
                .unwrap();
                let id = loop {
                    match u.shmget(KEY, 0, 0) {
                        Ok(id) => break id,
                        Err(e) => assert_eq!(e, Errno::ENOENT),
                    }
                    // a user access: a point where the other CPU gets to run
                    let _ = u.load_u32(0x2000_0000);
                };
                let at = u.shmat(id, 0, 0).unwrap();
                wait_for(u, at, 1);
                for i in 1..64 {
                    assert_eq!(u.load_u32(at + i * PAGE), Ok(stamp(i, 7)));
                    u.store_u32(at + i * PAGE + 8, stamp(i, 8)).unwrap();
                }
                p2.borrow_mut().push(pfn_of(u, at + 5 * PAGE).unwrap());
                u.store_u32(at, 2).unwrap();
                u.shmdt(at).unwrap();
                0
            })
            .unwrap();
        let out = sys.run();
        assert!(matches!(out, RunOutcome::Completed), "{out}");
        assert_eq!(sys.machine.exit_code(a), Some(0));
        assert_eq!(sys.machine.exit_code(c), Some(0));
        let p = pfns.borrow();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0], p[1], "both processes map the same frame");
        drop(p);
        assert_no_leak(&mut sys, &b, v.name());
    }
    for (v, ram) in [CONFIGS[2], CONFIGS[4]] {
        dispatch!(v, one(v, ram));
    }
}
