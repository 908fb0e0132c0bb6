//! Fault injection: page allocations fail from the n-th on, for every n until the call
//! succeeds. Every system call must then fail with ENOMEM, change nothing, keep the
//! invariants and leak nothing; a fault with no memory OOM-kills the faulting process.

mod vm_common;
use highpte_arch::{MemoryVariant, PagingMode};
use highpte_kernel::mm::shm::IPC_CREAT;
use highpte_kernel::mm::{
    MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, MAP_SHARED, MREMAP_FIXED, MREMAP_MAYMOVE, PROT_READ,
    PROT_WRITE,
};
use highpte_kernel::{Errno, PtAllocKind, PteStrategy, Signal};
use highpte_machine::User;
use vm_common::*;

const RW: u32 = PROT_READ | PROT_WRITE;
const PA: u32 = MAP_PRIVATE | MAP_ANONYMOUS;

type Op<M> = fn(&mut User<'_, M>) -> Result<(), Errno>;

/// Run `op` with allocations failing after n = 0, 1, 2... successes until it succeeds.
/// Returns the number of failing attempts.
fn until_ok<M: PagingMode>(u: &mut User<'_, M>, name: &str, op: Op<M>) -> u64 {
    for n in 0..500u64 {
        let v0 = u
            .handle()
            .enter_kernel("vma_list", |cx| u.kernel().vma_list(cx, u.pid()));
        let k0 = u.kernel().kobj_bytes();
        let (rss0, _) = rss_ptes(u);
        u.kernel().inject_alloc_failures(Some(n));
        let r = op(u);
        u.kernel().inject_alloc_failures(None);
        match r {
            Ok(()) => {
                inv(u, name);
                return n;
            }
            Err(e) => {
                assert_eq!(e, Errno::ENOMEM, "{name} with {n} allocations");
                assert_eq!(
                    u.handle()
                        .enter_kernel("vma_list", |cx| u.kernel().vma_list(cx, u.pid())),
                    v0,
                    "{name} {n}"
                );
                assert_eq!(rss_ptes(u).0, rss0, "{name} {n}");
                assert_eq!(u.kernel().kobj_bytes(), k0, "{name} {n}: kernel objects");
                inv(u, &format!("{name} failing after {n}"));
            }
        }
    }
    panic!("{name} never succeeded");
}

const A: u32 = 0x2000_0000;
const S: u32 = 0x2800_0000;

fn scenario<M: PagingMode>(u: &mut User<'_, M>) -> i32 {
    // a process worth forking: private pages over several pte pages, a shared mapping
    u.mmap(A, 8 * MB, RW, PA | MAP_FIXED).unwrap();
    for i in (0..(8 * MB as u32 / PAGE)).step_by(9) {
        u.store_u32(A + i * PAGE, stamp(i, 1)).unwrap();
    }
    u.mmap(S, 64 * 4096, RW, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED)
        .unwrap();
    u.store_u32(S, 3).unwrap();
    // (name, must allocate a page, op)
    let ops: &[(&str, bool, Op<M>)] = &[
        ("mmap shared", false, |u| {
            u.mmap(0x3000_0000, MB, RW, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED)
                .map(|_| ())
        }),
        ("mprotect split", false, |u| {
            u.mprotect(A + 4 * PAGE, 4096, PROT_READ)
        }),
        ("munmap split", false, |u| u.munmap(A + 6 * PAGE, 4096)),
        ("mremap move", true, |u| {
            u.mremap(
                A + 4 * MB as u32,
                2 * MB,
                2 * MB,
                MREMAP_MAYMOVE | MREMAP_FIXED,
                0x3800_0000,
            )
            .map(|_| ())
        }),
        ("shmget", true, |u| {
            u.shmget(77, 4 * MB, IPC_CREAT).map(|_| ())
        }),
        ("shmat", false, |u| {
            let id = u.shmget(77, 0, 0)?;
            u.shmat(id, 0x3c00_0000, 0).map(|_| ())
        }),
        ("fork", true, |u| {
            let c = u.fork("child", false, |c| {
                for i in (0..(4 * MB as u32 / PAGE)).step_by(9) {
                    assert_eq!(c.load_u32(A + i * PAGE), Ok(stamp(i, 1)));
                }
                assert_eq!(c.load_u32(S), Ok(3));
                0
            })?;
            assert_eq!(u.wait(), Ok((c, 0)));
            Ok(())
        }),
    ];
    for &(name, allocates, op) in ops {
        let n = until_ok(u, name, op);
        // calls that need new pages must have failed at least once (with pools, page-table
        // pages may come from a pool without a page allocation)
        let buddy = u.kernel().options().pt_alloc == PtAllocKind::Buddy;
        assert!(
            !(allocates && buddy) || n > 0,
            "{name} succeeded with no allocation at all"
        );
    }
    // the parent's pages still work after the failed forks (their ptes were write-protected)
    for i in (0..(4 * MB as u32 / PAGE)).step_by(9) {
        assert_eq!(u.load_u32(A + i * PAGE), Ok(stamp(i, 1)));
        u.store_u32(A + i * PAGE, 0).unwrap();
    }
    inv(u, "after");
    let id = u.shmget(77, 0, 0).unwrap();
    u.shm_rmid(id).unwrap();
    // a fault that finds no memory: the only process is the OOM victim
    let fresh = u.mmap(0, 4096, RW, PA).unwrap();
    u.kernel().inject_alloc_failures(Some(0));
    let r = u.store_u32(fresh, 1);
    u.kernel().inject_alloc_failures(None);
    assert_eq!(r, Err(Signal::Sigkill));
    7
}

#[test]
fn every_syscall_fails_cleanly_when_memory_runs_out() {
    fn one<M: PagingMode>(v: MemoryVariant, ram: u64, al: PtAllocKind) {
        let s = PteStrategy::default_for(&highpte_arch::Config::new(v, ram, 2, true).unwrap());
        let mut sys = boot_strategy::<M>(v, ram, 2, s, al);
        let b = quiesce(&mut sys);
        assert_eq!(run_process(&mut sys, scenario::<M>), 7, "{v} {al}");
        let log = sys.machine.kernel_log().join("\n");
        assert!(log.contains("Out of Memory: Killed process"), "{log}");
        assert_no_leak(&mut sys, &b, &format!("{v} {al}"));
    }
    for (v, ram) in [CONFIGS[1], CONFIGS[4]] {
        for al in PtAllocKind::ALL {
            dispatch!(v, one(v, ram, al));
        }
    }
}
