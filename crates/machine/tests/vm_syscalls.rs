//! One table-driven test per system call: every success case and every error of the Linux
//! man page that applies, with the exact errno, and the invariants after every step.

// the case tables are tuples on purpose: one line per case
#![allow(clippy::type_complexity)]

mod vm_common;
use highpte_arch::{MemoryVariant, PagingMode};
use highpte_kernel::mm::mmap::{PROT_GROWSDOWN, PROT_GROWSUP, PROT_SEM};
use highpte_kernel::mm::shm::{IPC_CREAT, IPC_EXCL, IPC_PRIVATE, SHMMAX, SHM_RDONLY, SHM_RND};
use highpte_kernel::mm::{
    MAP_ANONYMOUS, MAP_FIXED, MAP_POPULATE, MAP_PRIVATE, MAP_SHARED, MREMAP_FIXED, MREMAP_MAYMOVE,
    PROT_EXEC, PROT_NONE, PROT_READ, PROT_WRITE, START_BRK, TASK_SIZE, TASK_UNMAPPED_BASE,
};
use highpte_kernel::{Errno, Signal};
use highpte_machine::User;
use vm_common::*;

const RW: u32 = PROT_READ | PROT_WRITE;
const PA: u32 = MAP_PRIVATE | MAP_ANONYMOUS;
const SA: u32 = MAP_SHARED | MAP_ANONYMOUS;
const ECHILD: Errno = Errno(10);

fn vmas<M: PagingMode>(u: &User<'_, M>) -> Vec<(u32, u32, u32)> {
    u.handle()
        .enter_kernel("vma_list", |cx| u.kernel().vma_list(cx, u.pid()))
}

fn each_mode(f2: fn(&mut vm_common_sys::Sys2), fpae: fn(&mut vm_common_sys::SysPae)) {
    let mut a = boot::<highpte_arch::TwoLevel>(MemoryVariant::Highmem4gHighpte, GB, 2);
    let b0 = quiesce(&mut a);
    f2(&mut a);
    assert_no_leak(&mut a, &b0, "2-level");
    let mut b = boot::<highpte_arch::Pae>(MemoryVariant::Highmem64gHighpte, GB, 2);
    let b1 = quiesce(&mut b);
    fpae(&mut b);
    assert_no_leak(&mut b, &b1, "PAE");
}

mod vm_common_sys {
    pub type Sys2 = highpte_machine::System<highpte_arch::TwoLevel>;
    pub type SysPae = highpte_machine::System<highpte_arch::Pae>;
}

macro_rules! both_modes {
    ($name:ident, $body:ident) => {
        #[test]
        fn $name() {
            each_mode(
                |s| assert_eq!(run_process(s, |u| $body(u)), 0),
                |s| assert_eq!(run_process(s, |u| $body(u)), 0),
            );
        }
    };
}

// ---------------------------------------------------------------------------------------
// mmap

#[derive(Clone, Copy, Debug)]
enum Want {
    /// Success anywhere in the mmap area.
    Any,
    /// Success at exactly this address.
    At(u32),
    /// Success, but not at the hint.
    NotAt(u32),
    Err(Errno),
}

fn mmap_table<M: PagingMode>(u: &mut User<'_, M>) -> i32 {
    // an existing mapping the cases collide with
    let taken = u.mmap(0x2000_0000, 64 * 1024, RW, PA | MAP_FIXED).unwrap();
    assert_eq!(taken, 0x2000_0000);
    let cases: &[(&str, u32, u64, u32, u32, Want)] = &[
        ("zero length", 0, 0, RW, PA, Want::Err(Errno::EINVAL)),
        (
            "neither shared nor private",
            0,
            4096,
            RW,
            MAP_ANONYMOUS,
            Want::Err(Errno::EINVAL),
        ),
        (
            "both shared and private",
            0,
            4096,
            RW,
            SA | MAP_PRIVATE,
            Want::Err(Errno::EINVAL),
        ),
        // prot bits other than R/W/X are ignored (the VMA gets prot & 7), as in Linux
        (
            "PROT_SEM ignored",
            0,
            4096,
            PROT_SEM,
            PA,
            Want::At(TASK_UNMAPPED_BASE),
        ),
        (
            "unknown prot bits ignored",
            0,
            4096,
            RW | 0x100 | PROT_GROWSDOWN | 0x8000_0000,
            PA,
            Want::At(TASK_UNMAPPED_BASE),
        ),
        (
            "unknown prot bits, the length still checked",
            0,
            TASK_SIZE as u64 + 4096,
            0xffff_fff0,
            PA,
            Want::Err(Errno::ENOMEM),
        ),
        (
            "fixed unaligned",
            0x3000_0010,
            4096,
            RW,
            PA | MAP_FIXED,
            Want::Err(Errno::EINVAL),
        ),
        (
            "no fd and not anonymous",
            0,
            4096,
            RW,
            MAP_PRIVATE,
            Want::Err(Errno::EBADF),
        ),
        (
            "longer than the user space",
            0,
            TASK_SIZE as u64 + 4096,
            RW,
            PA,
            Want::Err(Errno::ENOMEM),
        ),
        ("huge length", 0, 1 << 40, RW, PA, Want::Err(Errno::ENOMEM)),
        (
            "fixed past TASK_SIZE",
            TASK_SIZE - 4096,
            8192,
            RW,
            PA | MAP_FIXED,
            Want::Err(Errno::ENOMEM),
        ),
        (
            "fixed in the kernel",
            TASK_SIZE,
            4096,
            RW,
            PA | MAP_FIXED,
            Want::Err(Errno::ENOMEM),
        ),
        (
            "private anywhere",
            0,
            4096,
            RW,
            PA,
            Want::At(TASK_UNMAPPED_BASE),
        ),
        (
            "shared anywhere",
            0,
            8192,
            RW,
            SA,
            Want::At(TASK_UNMAPPED_BASE),
        ),
        (
            "length rounded up",
            0,
            1,
            RW,
            PA,
            Want::At(TASK_UNMAPPED_BASE),
        ),
        (
            "free hint is used",
            0x3000_0000,
            4096,
            RW,
            PA,
            Want::At(0x3000_0000),
        ),
        (
            "unaligned hint rounded up",
            0x3000_0123,
            4096,
            RW,
            PA,
            Want::At(0x3000_1000),
        ),
        (
            "taken hint is not",
            0x2000_0000,
            4096,
            RW,
            PA,
            Want::NotAt(0x2000_0000),
        ),
        (
            "fixed over a mapping",
            0x2000_4000,
            4096,
            PROT_READ,
            PA | MAP_FIXED,
            Want::At(0x2000_4000),
        ),
        (
            "fixed at a free place",
            0x3800_0000,
            4096,
            RW,
            PA | MAP_FIXED,
            Want::At(0x3800_0000),
        ),
        ("PROT_NONE", 0, 4096, PROT_NONE, PA, Want::Any),
        ("PROT_EXEC", 0, 4096, PROT_EXEC | PROT_READ, PA, Want::Any),
        (
            "noreserve ignored",
            0,
            4096,
            RW,
            PA | highpte_kernel::mm::MAP_NORESERVE,
            Want::Any,
        ),
    ];
    for &(name, addr, len, prot, flags, want) in cases {
        let before = vmas(u);
        let r = u.mmap(addr, len, prot, flags);
        match (want, r) {
            (Want::Err(e), Err(got)) => {
                assert_eq!(got, e, "{name}");
                assert_eq!(vmas(u), before, "{name}: a failed mmap changed the VMAs");
            }
            (Want::Any, Ok(a)) => {
                assert!(a >= TASK_UNMAPPED_BASE && a % PAGE == 0, "{name}: {a:#x}")
            }
            (Want::At(x), Ok(a)) => assert_eq!(a, x, "{name}"),
            (Want::NotAt(x), Ok(a)) => assert_ne!(a, x, "{name}"),
            (w, r) => panic!("{name}: wanted {w:?}, got {r:?}"),
        }
        if let Ok(a) = r {
            let l = (len as u32).div_ceil(PAGE) * PAGE;
            let v = vmas(u);
            let prot = prot & (PROT_READ | PROT_WRITE | PROT_EXEC);
            assert!(
                v.iter().any(|&(s, e, p)| s <= a && a + l <= e && p == prot),
                "{name}: no VMA {a:#x}+{l:#x} prot {prot} in {v:x?}"
            );
            if !name.starts_with("fixed over") {
                u.munmap(a, l as u64).unwrap();
            }
        }
        inv(u, name);
    }
    // the fixed mapping split the first one: [0x2000_0000, 4000) rw, 4000 r, [5000, 10000) rw
    assert_eq!(
        vmas(u),
        vec![
            (0x2000_0000, 0x2000_4000, RW),
            (0x2000_4000, 0x2000_5000, PROT_READ),
            (0x2000_5000, 0x2001_0000, RW)
        ]
    );
    // an offset that is not a page multiple
    let k = u.kernel();
    assert_eq!(
        u.handle().enter_kernel("sys_mmap", |cx| k.sys_mmap(
            cx,
            u.pid(),
            0,
            4096,
            RW,
            PA,
            -1,
            100
        )),
        Err(Errno::EINVAL)
    );
    // address space exhausted: 2 GB fill [1 GB, 3 GB), then nothing fits without a hint
    let big = u.mmap(0, 2 * GB, RW, PA).unwrap();
    assert_eq!(big, TASK_UNMAPPED_BASE);
    assert_eq!(u.mmap(0, 4096, RW, PA), Err(Errno::ENOMEM));
    // but a free hint below still works
    assert_eq!(u.mmap(0x1000_0000, 4096, RW, PA), Ok(0x1000_0000));
    u.munmap(big, 2 * GB).unwrap();
    inv(u, "exhaustion");
    // protections are enforced
    let a = u.mmap(0, 3 * 4096, PROT_NONE, PA).unwrap();
    assert_eq!(u.load_u32(a), Err(Signal::Sigsegv));
    let r = u.mmap(0, 4096, PROT_READ, PA).unwrap();
    assert_eq!(u.load_u32(r), Ok(0));
    assert_eq!(u.store_u32(r, 1), Err(Signal::Sigsegv));
    // MAP_POPULATE faults every page in at once
    let (rss0, _) = rss_ptes(u);
    let p = u.mmap(0, 16 * 4096, RW, PA | MAP_POPULATE).unwrap();
    assert_eq!(rss_ptes(u).0, rss0 + 16);
    for i in 0..16 {
        assert_eq!(u.load_u32(p + i * PAGE), Ok(0));
    }
    inv(u, "populate");
    0
}
both_modes!(mmap_cases, mmap_table);

/// MAP_FIXED over a populated mapping frees its pages: rss and MemFree come back exactly.
fn mmap_fixed_frees<M: PagingMode>(u: &mut User<'_, M>) -> i32 {
    // 8 pages in one pte page; replace the first 4 (the pte page stays: no pool noise)
    let a = u.mmap(0x2000_0000, 8 * 4096, RW, PA | MAP_FIXED).unwrap();
    for i in 0..8 {
        u.store_u32(a + i * PAGE, 0xdead_0000 + i).unwrap();
    }
    let (rss, ptes) = rss_ptes(u);
    assert_eq!((rss, ptes), (8, 1));
    let free0 = mi(u).mem_free;
    let b = u.mmap(a, 4 * 4096, RW, PA | MAP_FIXED).unwrap();
    assert_eq!(b, a);
    assert_eq!(rss_ptes(u), (4, 1));
    assert_eq!(
        mi(u).mem_free,
        free0 + 16,
        "MAP_FIXED did not free the 4 pages"
    );
    for i in 0..4 {
        assert_eq!(
            u.load_u32(a + i * PAGE),
            Ok(0),
            "old data visible at page {i}"
        );
    }
    for i in 4..8 {
        assert_eq!(u.load_u32(a + i * PAGE), Ok(0xdead_0000 + i));
    }
    inv(u, "fixed replace");
    // a shared mapping replaced by MAP_FIXED gives its object's pages back too
    let s = u.mmap(0x2100_0000, 4 * 4096, RW, SA | MAP_FIXED).unwrap();
    for i in 0..4 {
        u.store_u32(s + i * PAGE, i + 1).unwrap();
    }
    let free1 = mi(u).mem_free;
    u.mmap(s, 4096, RW, PA | MAP_FIXED).unwrap();
    // 1 page of the object is unmapped; the rest still map it: nothing freed yet
    assert_eq!(mi(u).mem_free, free1);
    u.mmap(s + 4096, 3 * 4096, RW, PA | MAP_FIXED).unwrap();
    // now the object is gone: 4 pages back
    assert_eq!(mi(u).mem_free, free1 + 16);
    inv(u, "fixed over shared");
    0
}
both_modes!(mmap_fixed_replacing_frees_pages, mmap_fixed_frees);

// ---------------------------------------------------------------------------------------
// munmap

fn munmap_table<M: PagingMode>(u: &mut User<'_, M>) -> i32 {
    let a = u.mmap(0x2000_0000, 16 * 4096, RW, PA | MAP_FIXED).unwrap();
    for i in 0..16 {
        u.store_u32(a + i * PAGE, i).unwrap();
    }
    let cases: &[(&str, u32, u64, Result<(), Errno>)] = &[
        ("unaligned", a + 1, 4096, Err(Errno::EINVAL)),
        ("zero length", a, 0, Err(Errno::EINVAL)),
        ("past TASK_SIZE", TASK_SIZE - 4096, 8192, Err(Errno::EINVAL)),
        ("kernel address", TASK_SIZE, 4096, Err(Errno::EINVAL)),
        (
            "longer than user space",
            0,
            TASK_SIZE as u64 + 4096,
            Err(Errno::EINVAL),
        ),
        ("unmapped range", 0x3000_0000, 8192, Ok(())),
        ("middle page", a + 4 * PAGE, 4096, Ok(())),
        ("length rounded up", a + 8 * PAGE, 1, Ok(())),
        ("again: nothing there", a + 4 * PAGE, 4096, Ok(())),
        ("over a hole and pages", a + 3 * PAGE, 3 * 4096, Ok(())),
    ];
    for &(name, addr, len, want) in cases {
        let before = vmas(u);
        assert_eq!(u.munmap(addr, len), want, "{name}");
        if want.is_err() {
            assert_eq!(vmas(u), before, "{name}");
        }
        inv(u, name);
    }
    // left: [0,3) [6,8) [9,16)
    assert_eq!(
        vmas(u),
        vec![
            (a, a + 3 * PAGE, RW),
            (a + 6 * PAGE, a + 8 * PAGE, RW),
            (a + 9 * PAGE, a + 16 * PAGE, RW)
        ]
    );
    assert_eq!(rss_ptes(u), (12, 1));
    for i in 0..16 {
        let gone = (3..6).contains(&i) || i == 8;
        let r = u.load_u32(a + i * PAGE);
        if gone {
            assert_eq!(r, Err(Signal::Sigsegv), "page {i}");
        } else {
            assert_eq!(r, Ok(i), "page {i}");
        }
    }
    // unmapping everything over several VMAs and holes
    u.munmap(a, 16 * 4096).unwrap();
    assert_eq!(vmas(u), vec![]);
    assert_eq!(rss_ptes(u), (0, 0));
    inv(u, "all");
    0
}
both_modes!(munmap_cases, munmap_table);

// ---------------------------------------------------------------------------------------
// mprotect

fn mprotect_table<M: PagingMode>(u: &mut User<'_, M>) -> i32 {
    let a = u.mmap(0x2000_0000, 8 * 4096, RW, PA | MAP_FIXED).unwrap();
    let b = u.mmap(0x2001_0000, 4 * 4096, RW, PA | MAP_FIXED).unwrap(); // hole [a+8p, b)
    for i in 0..8 {
        u.store_u32(a + i * PAGE, 100 + i).unwrap();
    }
    let cases: &[(&str, u32, u64, u32, Result<(), Errno>)] = &[
        ("unaligned", a + 8, 4096, PROT_READ, Err(Errno::EINVAL)),
        ("bad prot", a, 4096, 0x10, Err(Errno::EINVAL)),
        (
            "PROT_SEM accepted",
            a + 4 * PAGE,
            4096,
            RW | PROT_SEM,
            Ok(()),
        ),
        (
            "both growth flags, before the alignment",
            a + 8,
            4096,
            PROT_READ | PROT_GROWSDOWN | PROT_GROWSUP,
            Err(Errno::EINVAL),
        ),
        (
            "both growth flags, before the length",
            a,
            u64::MAX,
            PROT_READ | PROT_GROWSDOWN | PROT_GROWSUP,
            Err(Errno::EINVAL),
        ),
        (
            "end exactly 4 GB wraps: before the prot",
            0xffff_f000,
            4096,
            0x10,
            Err(Errno::ENOMEM),
        ),
        (
            "GROWSDOWN on a VMA without VM_GROWSDOWN",
            a + PAGE,
            4096,
            PROT_READ | PROT_GROWSDOWN,
            Err(Errno::EINVAL),
        ),
        (
            "GROWSDOWN from a hole into a VMA",
            b - 4096,
            8192,
            PROT_READ | PROT_GROWSDOWN,
            Err(Errno::EINVAL),
        ),
        (
            "GROWSDOWN with no VMA reaching the range",
            b - 2 * 4096,
            4096,
            PROT_READ | PROT_GROWSDOWN,
            Err(Errno::ENOMEM),
        ),
        (
            "GROWSDOWN above every VMA",
            0x3000_0000,
            4096,
            PROT_READ | PROT_GROWSDOWN,
            Err(Errno::ENOMEM),
        ),
        (
            "GROWSUP (no VM_GROWSUP on i386)",
            a,
            4096,
            PROT_READ | PROT_GROWSUP,
            Err(Errno::EINVAL),
        ),
        (
            "GROWSUP starting in a hole",
            b - 4096,
            8192,
            PROT_READ | PROT_GROWSUP,
            Err(Errno::ENOMEM),
        ),
        ("len 0", a, 0, PROT_READ, Ok(())),
        ("len 0 unmapped", 0x3000_0000, 0, PROT_READ, Ok(())),
        ("unmapped", 0x3000_0000, 4096, PROT_READ, Err(Errno::ENOMEM)),
        (
            "starts in a hole",
            b - 4096,
            8192,
            PROT_READ,
            Err(Errno::ENOMEM),
        ),
        (
            "past TASK_SIZE",
            TASK_SIZE - 4096,
            8192,
            PROT_READ,
            Err(Errno::ENOMEM),
        ),
        (
            "middle read-only",
            a + 2 * PAGE,
            2 * 4096,
            PROT_READ,
            Ok(()),
        ),
        ("head none", a, 4096, PROT_NONE, Ok(())),
        (
            "len rounded up",
            a + 7 * PAGE,
            1,
            PROT_READ | PROT_EXEC,
            Ok(()),
        ),
        ("whole second", b, 4 * 4096, PROT_READ, Ok(())),
    ];
    for &(name, addr, len, prot, want) in cases {
        let before = vmas(u);
        assert_eq!(u.mprotect(addr, len, prot), want, "{name}");
        if want.is_err() || len == 0 {
            assert_eq!(vmas(u), before, "{name}: VMAs changed");
        }
        inv(u, name);
    }
    assert_eq!(
        vmas(u),
        vec![
            (a, a + PAGE, PROT_NONE),
            (a + PAGE, a + 2 * PAGE, RW),
            (a + 2 * PAGE, a + 4 * PAGE, PROT_READ),
            (a + 4 * PAGE, a + 7 * PAGE, RW),
            (a + 7 * PAGE, a + 8 * PAGE, PROT_READ | PROT_EXEC),
            (b, b + 4 * PAGE, PROT_READ),
        ]
    );
    // the protections hold, the data is kept
    assert_eq!(u.load_u32(a), Err(Signal::Sigsegv));
    assert_eq!(u.load_u32(a + PAGE), Ok(101));
    assert_eq!(u.load_u32(a + 2 * PAGE), Ok(102));
    assert_eq!(u.store_u32(a + 2 * PAGE, 0), Err(Signal::Sigsegv));
    assert_eq!(u.store_u32(a + 7 * PAGE, 0), Err(Signal::Sigsegv));
    assert_eq!(u.store_u32(b, 0), Err(Signal::Sigsegv));
    assert_eq!(u.load_u32(b), Ok(0));
    // all back to RW: merged into one VMA, data intact and writable
    u.mprotect(a, 8 * 4096, RW).unwrap();
    assert_eq!(vmas(u)[0], (a, a + 8 * PAGE, RW));
    assert_eq!(vmas(u).len(), 2);
    for i in 0..8 {
        assert_eq!(u.load_u32(a + i * PAGE), Ok(100 + i));
        u.store_u32(a + i * PAGE, 200 + i).unwrap();
        assert_eq!(u.load_u32(a + i * PAGE), Ok(200 + i));
    }
    // across two adjacent VMAs of different protections
    u.mprotect(a + 6 * PAGE, 2 * 4096, PROT_READ).unwrap();
    u.mprotect(a + 4 * PAGE, 4 * 4096, PROT_NONE).unwrap();
    assert_eq!(vmas(u)[1], (a + 4 * PAGE, a + 8 * PAGE, PROT_NONE));
    inv(u, "end");
    0
}
both_modes!(mprotect_cases, mprotect_table);

/// Issue 21, the system-call fuzzer's shrunk case (6 000 cases, both paging modes): a forked
/// child maps a page with a hint at `TASK_SIZE` (ignored, so the page lands at
/// `TASK_UNMAPPED_BASE`), then `mprotect(0, 0xC0000000, PROT_GROWSDOWN)` from below every VMA.
/// `find_vma(0)` is that page, which lies in the range and is not `VM_GROWSDOWN`: EINVAL, as
/// Linux answers (checked on the host: a child's `mprotect(0, end of its first mapping,
/// PROT_GROWSDOWN)` is EINVAL). The kernel answered ENOMEM: its `find_vma` gave up when no VMA
/// started at or below the address.
fn mprotect_growsdown_below_every_vma<M: PagingMode>(u: &mut User<'_, M>) -> i32 {
    let c = u
        .fork("issue21", false, move |c| {
            let vmas = |c: &User<'_, M>| {
                c.handle()
                    .enter_kernel("vma_list", |cx| c.kernel().vma_list(cx, c.pid()))
            };
            assert_eq!(vmas(c), vec![], "a fresh child maps nothing");
            let a = c.mmap(TASK_SIZE, 4096, PROT_NONE, PA).unwrap();
            assert_eq!(a, TASK_UNMAPPED_BASE, "a hint at TASK_SIZE is ignored");
            assert_eq!(c.mmap(a, 0, PROT_NONE, PA), Err(Errno::EINVAL));
            // the shrunk case, exactly
            assert_eq!(
                c.mprotect(0, 0xc000_0000, PROT_GROWSDOWN),
                Err(Errno::EINVAL)
            );
            // its neighbours: a prot bit too; the VMA starting right at the end (ENOMEM);
            // no growth flag, so the hole at 0 decides (ENOMEM)
            let a64 = a as u64;
            assert_eq!(
                c.mprotect(0, a64 + 4096, PROT_READ | PROT_GROWSDOWN),
                Err(Errno::EINVAL)
            );
            assert_eq!(c.mprotect(0, a64, PROT_GROWSDOWN), Err(Errno::ENOMEM));
            assert_eq!(c.mprotect(0, 0xc000_0000, PROT_READ), Err(Errno::ENOMEM));
            assert_eq!(vmas(c), vec![(a, a + PAGE, PROT_NONE)], "nothing changed");
            7
        })
        .unwrap();
    assert_eq!(u.wait(), Ok((c, 7)));
    inv(u, "end");
    0
}
both_modes!(
    mprotect_growsdown_below_every_vma_cases,
    mprotect_growsdown_below_every_vma
);

/// mprotect stopped by a hole (ENOMEM) or a `SHM_RDONLY` attachment asked for write access
/// (EACCES): as in Linux, the VMAs before the stop have been changed already (split, merged,
/// their ptes changed), those after it not. Each row starts from the same layout:
/// x [0, 4) RW, [4, 6) R, hole [6, 8), [8, 10) RW, shm read-only [10, 12), [12, 14) RW,
/// then nothing.
fn mprotect_partial_table<M: PagingMode>(u: &mut User<'_, M>) -> i32 {
    let x: u32 = 0x2000_0000;
    let pg = |i: u32| x + i * PAGE;
    let r = PROT_READ;
    let id = u.shmget(IPC_PRIVATE, 2 * 4096, IPC_CREAT).unwrap();
    let layout = [
        (pg(0), pg(4), RW),
        (pg(4), pg(6), r),
        (pg(8), pg(10), RW),
        (pg(10), pg(12), r),
        (pg(12), pg(14), RW),
    ];
    // (name, first page, pages, prot, errno, VMAs after, (page, load result) probes)
    let cases: &[(
        &str,
        u32,
        u32,
        u32,
        Errno,
        &[(u32, u32, u32)],
        &[(u32, Result<u32, Signal>)],
    )] = &[
        (
            "hole: the two VMAs before it change",
            2,
            6,
            PROT_NONE,
            Errno::ENOMEM,
            &[
                (0, 2, RW),
                (2, 6, PROT_NONE),
                (8, 10, RW),
                (10, 12, r),
                (12, 14, RW),
            ],
            &[
                (1, Ok(1)),
                (2, Err(Signal::Sigsegv)),
                (5, Err(Signal::Sigsegv)),
            ],
        ),
        (
            "hole at the start: nothing changes",
            6,
            4,
            r,
            Errno::ENOMEM,
            &[
                (0, 4, RW),
                (4, 6, r),
                (8, 10, RW),
                (10, 12, r),
                (12, 14, RW),
            ],
            &[(8, Ok(8))],
        ),
        (
            "read-only attachment: the VMA before it changes",
            9,
            4,
            RW | PROT_EXEC,
            Errno::EACCES,
            &[
                (0, 4, RW),
                (4, 6, r),
                (8, 9, RW),
                (9, 10, RW | PROT_EXEC),
                (10, 12, r),
                (12, 14, RW),
            ],
            &[(9, Ok(9))],
        ),
        (
            "read-only attachment first: nothing changes",
            10,
            4,
            RW,
            Errno::EACCES,
            &[
                (0, 4, RW),
                (4, 6, r),
                (8, 10, RW),
                (10, 12, r),
                (12, 14, RW),
            ],
            &[(12, Ok(12))],
        ),
        (
            "no write asked: through the attachment up to the end",
            8,
            8,
            PROT_NONE,
            Errno::ENOMEM,
            &[
                (0, 4, RW),
                (4, 6, r),
                (8, 10, PROT_NONE),
                (10, 12, PROT_NONE),
                (12, 14, PROT_NONE),
            ],
            &[
                (8, Err(Signal::Sigsegv)),
                (13, Err(Signal::Sigsegv)),
                (3, Ok(3)),
            ],
        ),
    ];
    for &(name, first, n, prot, errno, want, probes) in cases {
        for &(s, e, p) in &layout[..3] {
            assert_eq!(u.mmap(s, (e - s) as u64, RW, PA | MAP_FIXED), Ok(s));
            for a in (s..e).step_by(PAGE as usize) {
                u.store_u32(a, (a - x) / PAGE).unwrap();
            }
            if p != RW {
                u.mprotect(s, (e - s) as u64, p).unwrap();
            }
        }
        assert_eq!(u.shmat(id, pg(10), SHM_RDONLY), Ok(pg(10)));
        let (s, e, _) = layout[4];
        assert_eq!(u.mmap(s, (e - s) as u64, RW, PA | MAP_FIXED), Ok(s));
        for a in (s..e).step_by(PAGE as usize) {
            u.store_u32(a, (a - x) / PAGE).unwrap();
        }
        assert_eq!(vmas(u), layout.to_vec(), "{name}: layout");
        assert_eq!(
            u.mprotect(pg(first), n as u64 * 4096, prot),
            Err(errno),
            "{name}"
        );
        let want: Vec<_> = want.iter().map(|&(s, e, p)| (pg(s), pg(e), p)).collect();
        assert_eq!(vmas(u), want, "{name}");
        for &(page, v) in probes {
            assert_eq!(u.load_u32(pg(page)), v, "{name}: page {page}");
        }
        inv(u, name);
        u.munmap(x, 16 * 4096).unwrap();
        assert_eq!(vmas(u), vec![], "{name}");
    }
    u.shm_rmid(id).unwrap();
    inv(u, "end");
    0
}
both_modes!(mprotect_partial, mprotect_partial_table);

// ---------------------------------------------------------------------------------------
// mremap

fn mremap_table<M: PagingMode>(u: &mut User<'_, M>) -> i32 {
    let a = u.mmap(0x2000_0000, 8 * 4096, RW, PA | MAP_FIXED).unwrap();
    let wall = u
        .mmap(0x2000_8000 + 4 * PAGE, 4096, PROT_READ, PA | MAP_FIXED)
        .unwrap();
    for i in 0..8 {
        u.store_u32(a + i * PAGE, 300 + i).unwrap();
    }
    let m = MREMAP_MAYMOVE;
    let cases: &[(&str, u32, u64, u64, u32, u32, Result<(), Errno>)] = &[
        ("unaligned old", a + 4, 4096, 8192, m, 0, Err(Errno::EINVAL)),
        ("bad flags", a, 4096, 8192, 4, 0, Err(Errno::EINVAL)),
        (
            "fixed without maymove",
            a,
            4096,
            4096,
            MREMAP_FIXED,
            0x3000_0000,
            Err(Errno::EINVAL),
        ),
        ("new length 0", a, 4096, 0, m, 0, Err(Errno::EINVAL)),
        ("old length 0", a, 0, 4096, m, 0, Err(Errno::EINVAL)),
        // a new length past TASK_SIZE: the old range is looked at (EFAULT), then the growth
        // does not fit in place nor anywhere (ENOMEM)
        (
            "new length too big",
            a,
            4096,
            TASK_SIZE as u64 + 4096,
            m,
            0,
            Err(Errno::ENOMEM),
        ),
        (
            "new length too big without maymove",
            a,
            8 * 4096,
            TASK_SIZE as u64 + 4096,
            0,
            0,
            Err(Errno::ENOMEM),
        ),
        (
            "new length too big, old range unmapped",
            0x3000_0000,
            4096,
            TASK_SIZE as u64 + 4096,
            m,
            0,
            Err(Errno::EFAULT),
        ),
        (
            "new length 2^40, old range unmapped",
            0x3000_0000,
            4096,
            1 << 40,
            m,
            0,
            Err(Errno::EFAULT),
        ),
        (
            "unmapped",
            0x3000_0000,
            4096,
            8192,
            m,
            0,
            Err(Errno::EFAULT),
        ),
        (
            "growing past the vma end",
            a,
            9 * 4096,
            10 * 4096,
            m,
            0,
            Err(Errno::EFAULT),
        ),
        (
            "grow into the wall without maymove",
            a,
            8 * 4096,
            16 * 4096,
            0,
            0,
            Err(Errno::ENOMEM),
        ),
        (
            "fixed unaligned target",
            a,
            4096,
            4096,
            m | MREMAP_FIXED,
            0x3000_0010,
            Err(Errno::EINVAL),
        ),
        (
            "fixed overlapping",
            a,
            4 * 4096,
            4 * 4096,
            m | MREMAP_FIXED,
            a + 2 * PAGE,
            Err(Errno::EINVAL),
        ),
        (
            "fixed past TASK_SIZE",
            a,
            4096,
            8192,
            m | MREMAP_FIXED,
            TASK_SIZE - 4096,
            Err(Errno::EINVAL),
        ),
    ];
    for &(name, old, ol, nl, fl, na, want) in cases {
        let before = vmas(u);
        let r = u.mremap(old, ol, nl, fl, na);
        assert_eq!(r.map(|_| ()), want, "{name}");
        assert_eq!(vmas(u), before, "{name}: VMAs changed");
        inv(u, name);
    }
    // grow in place up to the wall (4 pages free after a)
    assert_eq!(u.mremap(a, 8 * 4096, 12 * 4096, 0, 0), Ok(a));
    assert_eq!(vmas(u)[0], (a, a + 12 * PAGE, RW));
    u.store_u32(a + 11 * PAGE, 7).unwrap();
    inv(u, "grow in place");
    // shrink in place: the tail goes
    assert_eq!(u.mremap(a, 12 * 4096, 6 * 4096, 0, 0), Ok(a));
    assert_eq!(u.load_u32(a + 6 * PAGE), Err(Signal::Sigsegv));
    assert_eq!(u.load_u32(a + 5 * PAGE), Ok(305));
    assert_eq!(rss_ptes(u).0, 6);
    inv(u, "shrink");
    // grow with MAYMOVE past the wall: moves, data follows
    let n = u.mremap(a, 6 * 4096, 20 * 4096, m, 0).unwrap();
    assert_ne!(n, a);
    assert_eq!(u.load_u32(a), Err(Signal::Sigsegv));
    for i in 0..6 {
        assert_eq!(u.load_u32(n + i * PAGE), Ok(300 + i), "moved page {i}");
    }
    assert_eq!(u.load_u32(n + 19 * PAGE), Ok(0));
    inv(u, "move");
    // MREMAP_FIXED onto an existing mapping replaces it
    let t = u.mmap(0x2800_0000, 4 * 4096, RW, PA | MAP_FIXED).unwrap();
    u.store_u32(t, 0xbad).unwrap();
    assert_eq!(u.mremap(n, 2 * 4096, 2 * 4096, m | MREMAP_FIXED, t), Ok(t));
    assert_eq!(u.load_u32(t), Ok(300));
    assert_eq!(u.load_u32(t + PAGE), Ok(301));
    assert_eq!(
        u.load_u32(t + 2 * PAGE),
        Ok(0),
        "rest of the replaced mapping"
    );
    assert_eq!(u.load_u32(n), Err(Signal::Sigsegv));
    assert_eq!(u.load_u32(n + 2 * PAGE), Ok(302), "the rest stays");
    inv(u, "fixed move");
    // a range in the middle of a VMA moves out of it, splitting it; it lands after the
    // rest of that VMA (the first free space) and merges with it
    let mid = u.mremap(n + 4 * PAGE, 2 * 4096, 3 * 4096, m, 0).unwrap();
    assert_eq!(mid, n + 20 * PAGE);
    assert_eq!(u.load_u32(mid), Ok(304));
    assert_eq!(u.load_u32(mid + PAGE), Ok(305));
    assert_eq!(u.load_u32(mid + 2 * PAGE), Ok(0));
    assert_eq!(u.load_u32(n + 3 * PAGE), Ok(303));
    assert_eq!(u.load_u32(n + 4 * PAGE), Err(Signal::Sigsegv));
    assert_eq!(
        vmas(u),
        vec![
            (wall, wall + PAGE, PROT_READ),
            (t, t + 4 * PAGE, RW),
            (n + 2 * PAGE, n + 4 * PAGE, RW),
            (n + 6 * PAGE, n + 23 * PAGE, RW),
        ]
    );
    u.munmap(wall, 4096).unwrap();
    inv(u, "middle move");
    // a shared mapping grows in place; its object does not, so the new part is SIGBUS
    let sh = u.mmap(0x2900_0000, 2 * 4096, RW, SA | MAP_FIXED).unwrap();
    u.store_u32(sh + PAGE, 55).unwrap();
    assert_eq!(u.mremap(sh, 2 * 4096, 4 * 4096, 0, 0), Ok(sh));
    assert!(vmas(u).contains(&(sh, sh + 4 * PAGE, RW)));
    assert_eq!(u.load_u32(sh + PAGE), Ok(55));
    assert_eq!(u.load_u32(sh + 2 * PAGE), Err(Signal::Sigbus));
    // and a moved shared mapping still shares with a child
    let moved = u.mremap(sh, 4 * 4096, 8 * 4096, m, 0x2a00_0000).unwrap();
    let c = u
        .fork("sh", false, move |c| {
            c.store_u32(moved, 66).unwrap();
            0
        })
        .unwrap();
    assert_eq!(u.wait(), Ok((c, 0)));
    assert_eq!(u.load_u32(moved), Ok(66));
    assert_eq!(u.load_u32(moved + PAGE), Ok(55));
    inv(u, "shared mremap");
    0
}
both_modes!(mremap_cases, mremap_table);

/// Linux 2.6's order in mremap: the `MREMAP_FIXED` target is unmapped first, then a shrink
/// unmaps the tail (munmap's range check) and, without `MREMAP_FIXED`, returns the old
/// address without looking for a VMA; only then is the old range looked up. Each row starts
/// from a [0, 4) RW, b [16, 20) RW (pages from 0x2000_0000), with every page stamped.
fn mremap_order_table<M: PagingMode>(u: &mut User<'_, M>) -> i32 {
    let x: u32 = 0x2000_0000;
    let pg = |i: u32| x + i * PAGE;
    let m = MREMAP_MAYMOVE;
    let f = MREMAP_MAYMOVE | MREMAP_FIXED;
    let none: &[(u32, u32)] = &[];
    // (name, old page, old pages, new pages, flags, new page, result (page), VMAs after
    // (pages, all RW), (page, stamp it must hold) probes)
    let cases: &[(
        &str,
        u32,
        u32,
        u32,
        u32,
        u32,
        Result<u32, Errno>,
        &[(u32, u32)],
        &[(u32, u32)],
    )] = &[
        (
            "shrink of an unmapped range",
            48,
            2,
            1,
            0,
            0,
            Ok(48),
            &[(0, 4), (16, 20)],
            none,
        ),
        (
            "shrink from a hole over a mapping: the tail goes",
            14,
            4,
            3,
            0,
            0,
            Ok(14),
            &[(0, 4), (16, 17), (18, 20)],
            &[(16, 16), (18, 18)],
        ),
        (
            "shrink over a hole and two mappings",
            2,
            16,
            1,
            m,
            0,
            Ok(2),
            &[(0, 3), (18, 20)],
            &[(2, 2), (18, 18)],
        ),
        (
            "equal lengths, unmapped: nothing is looked at",
            48,
            1,
            1,
            m,
            0,
            Ok(48),
            &[(0, 4), (16, 20)],
            none,
        ),
        (
            "shrink: the range is still looked up with MREMAP_FIXED",
            48,
            2,
            1,
            f,
            32,
            Err(Errno::EFAULT),
            &[(0, 4), (16, 20)],
            none,
        ),
        (
            "fixed, old range unmapped: the target is unmapped first",
            48,
            1,
            2,
            f,
            17,
            Err(Errno::EFAULT),
            &[(0, 4), (16, 17), (19, 20)],
            &[(16, 16), (19, 19)],
        ),
        (
            "fixed, old range over a hole: the target is unmapped first",
            2,
            4,
            4,
            f,
            16,
            Err(Errno::EFAULT),
            &[(0, 4)],
            none,
        ),
        (
            "fixed shrink: the tail goes, the head moves",
            0,
            4,
            2,
            f,
            32,
            Ok(32),
            &[(16, 20), (32, 34)],
            &[(32, 0), (33, 1)],
        ),
        (
            "fixed shrink of a range past its VMA: only the head must be mapped",
            2,
            4,
            1,
            f,
            32,
            Ok(32),
            &[(0, 2), (16, 20), (32, 33)],
            &[(32, 2), (1, 1)],
        ),
    ];
    for &(name, old, on, nn, flags, new, want, after, probes) in cases {
        for (s, e) in [(0, 4), (16, 20)] {
            assert_eq!(
                u.mmap(pg(s), (e - s) as u64 * 4096, RW, PA | MAP_FIXED),
                Ok(pg(s))
            );
            for i in s..e {
                u.store_u32(pg(i), i).unwrap();
            }
        }
        let r = u.mremap(pg(old), on as u64 * 4096, nn as u64 * 4096, flags, pg(new));
        assert_eq!(r, want.map(pg), "{name}");
        let after: Vec<_> = after.iter().map(|&(s, e)| (pg(s), pg(e), RW)).collect();
        assert_eq!(vmas(u), after, "{name}");
        for &(page, v) in probes {
            assert_eq!(u.load_u32(pg(page)), Ok(v), "{name}: page {page}");
        }
        inv(u, name);
        u.munmap(x, 64 * 4096).unwrap();
    }
    // a shrink whose tail reaches past TASK_SIZE fails in munmap's check (EINVAL); with
    // equal lengths nothing is checked at all (not even that the range is user space)
    let cases: &[(&str, u32, u64, u64, Result<u32, Errno>)] = &[
        (
            "shrink past TASK_SIZE",
            TASK_SIZE - 4096,
            8192,
            4096,
            Err(Errno::EINVAL),
        ),
        (
            "shrink in the kernel",
            TASK_SIZE,
            8192,
            4096,
            Err(Errno::EINVAL),
        ),
        (
            "shrink from a huge length",
            0x3000_0000,
            u64::MAX,
            4096,
            Err(Errno::EINVAL),
        ),
        (
            "shrink ending at TASK_SIZE",
            TASK_SIZE - 8192,
            8192,
            4096,
            Ok(TASK_SIZE - 8192),
        ),
        (
            "same length in the kernel",
            TASK_SIZE,
            4096,
            4096,
            Ok(TASK_SIZE),
        ),
    ];
    for &(name, old, ol, nl, want) in cases {
        assert_eq!(u.mremap(old, ol, nl, m, 0), want, "{name}");
        assert_eq!(vmas(u), vec![], "{name}");
        inv(u, name);
    }
    0
}
both_modes!(mremap_order, mremap_order_table);

// ---------------------------------------------------------------------------------------
// brk

fn brk_table<M: PagingMode>(u: &mut User<'_, M>) -> i32 {
    assert_eq!(u.brk(0), START_BRK, "brk(0) reports the break");
    // (request, returned break)
    let cases: &[(&str, u32, u32)] = &[
        ("below the start fails", START_BRK - 4096, START_BRK),
        ("grow unaligned", START_BRK + 10_000, START_BRK + 10_000),
        ("grow more", START_BRK + 64 * 1024, START_BRK + 64 * 1024),
        ("shrink", START_BRK + 4096, START_BRK + 4096),
        ("past TASK_SIZE fails", TASK_SIZE + 4096, START_BRK + 4096),
        ("back to the start", START_BRK, START_BRK),
        ("grow again", START_BRK + 8 * 4096, START_BRK + 8 * 4096),
    ];
    for &(name, req, want) in cases {
        assert_eq!(u.brk(req), want, "{name}");
        assert_eq!(u.brk(0), want, "{name}: brk(0)");
        inv(u, name);
    }
    for i in 0..8 {
        u.store_u32(START_BRK + i * PAGE, i + 1).unwrap();
    }
    assert_eq!(u.load_u32(START_BRK + 8 * PAGE), Err(Signal::Sigsegv));
    // shrinking frees the pages, growing again gives zeros
    assert_eq!(u.brk(START_BRK + 2 * 4096), START_BRK + 2 * 4096);
    assert_eq!(rss_ptes(u).0, 2);
    assert_eq!(u.load_u32(START_BRK + 2 * PAGE), Err(Signal::Sigsegv));
    assert_eq!(u.brk(START_BRK + 8 * 4096), START_BRK + 8 * 4096);
    assert_eq!(u.load_u32(START_BRK + 2 * PAGE), Ok(0));
    assert_eq!(u.load_u32(START_BRK + PAGE), Ok(2));
    // a mapping in the way: brk fails and returns the old break; as in Linux it keeps one
    // page free below the mapping (find_vma_intersection(oldbrk, newbrk + PAGE_SIZE))
    u.mmap(START_BRK + 16 * PAGE, 4096, RW, PA | MAP_FIXED)
        .unwrap();
    let b = |pages: u32| START_BRK + pages * PAGE;
    let cases: &[(&str, u32, u32)] = &[
        ("over the mapping fails", b(32), b(8)),
        ("right up to the mapping fails", b(16), b(8)),
        ("into the last page before it fails", b(15) + 1, b(8)),
        ("one page short of it", b(15), b(15)),
        ("then no further", b(15) + 4, b(15)),
        ("shrinking still works", b(10) + 8, b(10) + 8),
    ];
    for &(name, req, want) in cases {
        assert_eq!(u.brk(req), want, "{name}");
        assert_eq!(u.brk(0), want, "{name}: brk(0)");
        assert_eq!(
            vmas(u),
            vec![
                (START_BRK, want.div_ceil(PAGE) * PAGE, RW),
                (b(16), b(17), RW)
            ],
            "{name}"
        );
        inv(u, name);
    }
    inv(u, "brk end");
    0
}
both_modes!(brk_cases, brk_table);

// ---------------------------------------------------------------------------------------
// SysV shm

fn shmget_table<M: PagingMode>(u: &mut User<'_, M>) -> i32 {
    let first = u.shmget(42, 8192, IPC_CREAT).unwrap();
    let cases: &[(&str, i32, u64, u32, Result<Option<u32>, Errno>)] = &[
        ("existing key", 42, 8192, 0, Ok(Some(first))),
        (
            "existing key, smaller size",
            42,
            4096,
            IPC_CREAT,
            Ok(Some(first)),
        ),
        ("existing key, size 0", 42, 0, 0, Ok(Some(first))),
        (
            "existing key, larger size",
            42,
            3 * 4096,
            0,
            Err(Errno::EINVAL),
        ),
        (
            "create exclusive over existing",
            42,
            8192,
            IPC_CREAT | IPC_EXCL,
            Err(Errno::EEXIST),
        ),
        ("missing key", 43, 8192, 0, Err(Errno::ENOENT)),
        ("new key, size 0", 44, 0, IPC_CREAT, Err(Errno::EINVAL)),
        (
            "new key, too big",
            44,
            SHMMAX + 1,
            IPC_CREAT,
            Err(Errno::EINVAL),
        ),
        ("private, size 0", IPC_PRIVATE, 0, 0, Err(Errno::EINVAL)),
        ("private", IPC_PRIVATE, 100, 0, Ok(None)),
        (
            "private again: a new one",
            IPC_PRIVATE,
            100,
            IPC_CREAT | IPC_EXCL,
            Ok(None),
        ),
        (
            "new key exclusive",
            45,
            4096,
            IPC_CREAT | IPC_EXCL,
            Ok(None),
        ),
    ];
    let mut ids = vec![first];
    for &(name, key, size, flags, want) in cases {
        let r = u.shmget(key, size, flags);
        match (want, r) {
            (Err(e), Err(g)) => assert_eq!(g, e, "{name}"),
            (Ok(Some(id)), Ok(g)) => assert_eq!(g, id, "{name}"),
            (Ok(None), Ok(g)) => {
                assert!(!ids.contains(&g), "{name}: id {g} reused");
                ids.push(g);
            }
            (w, r) => panic!("{name}: wanted {w:?}, got {r:?}"),
        }
        inv(u, name);
    }
    let segs = u
        .handle()
        .enter_kernel("shm_segments", |cx| u.kernel().shm_segments(cx));
    assert_eq!(segs.len(), 4);
    assert!(segs
        .iter()
        .any(|&(id, size, n)| id == first && size == 8192 && n == 0));
    for id in ids {
        u.shm_rmid(id).unwrap();
    }
    assert!(u
        .handle()
        .enter_kernel("shm_segments", |cx| u.kernel().shm_segments(cx))
        .is_empty());
    0
}
both_modes!(shmget_cases, shmget_table);

fn shmat_table<M: PagingMode>(u: &mut User<'_, M>) -> i32 {
    let id = u.shmget(IPC_PRIVATE, 4 * 4096, IPC_CREAT).unwrap();
    let anon = u.mmap(0x2000_0000, 4096, RW, PA | MAP_FIXED).unwrap();
    let top = u
        .mmap(TASK_SIZE - 3 * PAGE, 4096, RW, PA | MAP_FIXED)
        .unwrap();
    // a 3000-byte segment: Linux checks the wrap with shm_segsz, not the page-rounded size
    let small = u.shmget(IPC_PRIVATE, 3000, IPC_CREAT).unwrap();
    let cases: &[(&str, u32, u32, u32, Result<Option<u32>, Errno>)] = &[
        ("bad id", id + 1, 0, 0, Err(Errno::EINVAL)),
        ("unaligned address", id, 0x3000_0010, 0, Err(Errno::EINVAL)),
        (
            "overlapping a mapping",
            id,
            anon - 4096,
            0,
            Err(Errno::EINVAL),
        ),
        // a range past TASK_SIZE reaches do_mmap: ENOMEM; wrapping past 4 GB or over a
        // mapping is EINVAL before that
        (
            "past TASK_SIZE",
            id,
            TASK_SIZE - 2 * 4096,
            0,
            Err(Errno::ENOMEM),
        ),
        (
            "past TASK_SIZE over a mapping",
            id,
            TASK_SIZE - 3 * 4096,
            0,
            Err(Errno::EINVAL),
        ),
        ("in the kernel", id, TASK_SIZE, 0, Err(Errno::ENOMEM)),
        (
            "in the kernel, rounded",
            id,
            TASK_SIZE + 0x10,
            SHM_RND,
            Err(Errno::ENOMEM),
        ),
        ("wrapping past 4 GB", id, 0xffff_d000, 0, Err(Errno::EINVAL)),
        (
            "ending exactly at 4 GB wraps",
            id,
            0xffff_c000,
            0,
            Err(Errno::EINVAL),
        ),
        (
            "last page, 3000 bytes: no wrap",
            small,
            0xffff_f000,
            0,
            Err(Errno::ENOMEM),
        ),
        ("anywhere", id, 0, 0, Ok(None)),
        ("at an address", id, 0x3000_0000, 0, Ok(Some(0x3000_0000))),
        (
            "rounded with SHM_RND",
            id,
            0x3100_0010,
            SHM_RND,
            Ok(Some(0x3100_0000)),
        ),
        (
            "read-only",
            id,
            0x3200_0000,
            SHM_RDONLY,
            Ok(Some(0x3200_0000)),
        ),
    ];
    let mut at = Vec::new();
    for &(name, sid, addr, flags, want) in cases {
        let before = vmas(u);
        let r = u.shmat(sid, addr, flags);
        match (want, r) {
            (Err(e), Err(g)) => {
                assert_eq!(g, e, "{name}");
                assert_eq!(vmas(u), before, "{name}");
            }
            (Ok(Some(x)), Ok(g)) => assert_eq!(g, x, "{name}"),
            (Ok(None), Ok(g)) => assert!(g >= TASK_UNMAPPED_BASE, "{name}"),
            (w, r) => panic!("{name}: wanted {w:?}, got {r:?}"),
        }
        if let Ok(a) = r {
            at.push(a);
        }
        inv(u, name);
    }
    u.munmap(top, 4096).unwrap();
    u.shm_rmid(small).unwrap();
    let segs = u
        .handle()
        .enter_kernel("shm_segments", |cx| u.kernel().shm_segments(cx));
    assert_eq!(segs, vec![(id, 4 * 4096, 4)]);
    // every attachment sees the same pages
    u.store_u32(at[0] + PAGE, 0x5151).unwrap();
    for &a in &at {
        assert_eq!(u.load_u32(a + PAGE), Ok(0x5151));
    }
    u.store_u32(at[1] + 3 * PAGE, 9).unwrap();
    assert_eq!(u.load_u32(at[2] + 3 * PAGE), Ok(9));
    assert_eq!(u.store_u32(at[3], 1), Err(Signal::Sigsegv), "SHM_RDONLY");
    assert_eq!(u.load_u32(at[3] + 3 * PAGE), Ok(9));
    // a read-only attachment can never be made writable (no VM_MAYWRITE)
    assert_eq!(u.mprotect(at[3], 4096, RW), Err(Errno::EACCES));
    assert_eq!(u.mprotect(at[3], 4096, PROT_NONE), Ok(()));
    assert_eq!(u.mprotect(at[3], 4096, PROT_READ), Ok(()));
    assert_eq!(u.store_u32(at[3], 1), Err(Signal::Sigsegv));
    inv(u, "shared");
    // shmdt
    let cases: &[(&str, u32, Result<(), Errno>)] = &[
        ("not an attach address", at[1] + PAGE, Err(Errno::EINVAL)),
        ("an anonymous mapping", anon, Err(Errno::EINVAL)),
        ("unmapped", 0x3800_0000, Err(Errno::EINVAL)),
        ("first", at[1], Ok(())),
        ("twice", at[1], Err(Errno::EINVAL)),
        ("read-only one", at[3], Ok(())),
    ];
    for &(name, addr, want) in cases {
        assert_eq!(u.shmdt(addr), want, "{name}");
        inv(u, name);
    }
    assert_eq!(u.load_u32(at[1]), Err(Signal::Sigsegv));
    assert_eq!(u.load_u32(anon), Ok(0), "shmdt left other mappings alone");
    assert_eq!(
        u.handle()
            .enter_kernel("shm_segments", |cx| u.kernel().shm_segments(cx)),
        vec![(id, 4 * 4096, 2)]
    );
    // an attachment split by mprotect is still detached whole, and a mapping placed into a
    // hole of it (after a partial munmap) is left alone
    u.mprotect(at[2] + PAGE, 4096, PROT_READ).unwrap();
    u.munmap(at[2] + 2 * PAGE, 4096).unwrap();
    let inside = u.mmap(at[2] + 2 * PAGE, 4096, RW, PA | MAP_FIXED).unwrap();
    u.store_u32(inside, 77).unwrap();
    u.shmdt(at[2]).unwrap();
    assert_eq!(u.load_u32(at[2]), Err(Signal::Sigsegv));
    assert_eq!(u.load_u32(at[2] + 3 * PAGE), Err(Signal::Sigsegv));
    assert_eq!(u.load_u32(inside), Ok(77));
    inv(u, "split detach");
    u.munmap(inside, 4096).unwrap();
    u.shmdt(at[0]).unwrap();
    assert_eq!(
        u.handle()
            .enter_kernel("shm_segments", |cx| u.kernel().shm_segments(cx)),
        vec![(id, 4 * 4096, 0)]
    );
    u.shm_rmid(id).unwrap();
    inv(u, "end");
    0
}
both_modes!(shmat_shmdt_cases, shmat_table);

fn shm_rmid_table<M: PagingMode>(u: &mut User<'_, M>) -> i32 {
    let free0 = mi(u).mem_free;
    let id = u.shmget(7, 4 * 4096, IPC_CREAT).unwrap();
    let a = u.shmat(id, 0, 0).unwrap();
    for i in 0..4 {
        u.store_u32(a + i * PAGE, 10 + i).unwrap();
    }
    let used = free0 - mi(u).mem_free;
    assert!(used >= 16, "{used}");
    let cases: &[(&str, u32, Result<(), Errno>)] = &[
        ("bad id", id + 1, Err(Errno::EINVAL)),
        ("while attached", id, Ok(())),
        ("twice", id, Err(Errno::EINVAL)),
    ];
    for &(name, sid, want) in cases {
        assert_eq!(u.shm_rmid(sid), want, "{name}");
        inv(u, name);
    }
    // the id is gone, the key can be reused, the attachment still works
    assert_eq!(u.shmget(7, 4096, 0), Err(Errno::ENOENT));
    assert_eq!(u.shmat(id, 0, 0), Err(Errno::EINVAL));
    for i in 0..4 {
        assert_eq!(u.load_u32(a + i * PAGE), Ok(10 + i));
    }
    let free1 = mi(u).mem_free;
    // the last detach frees the 4 pages (the pte page stays: none other mapped here)
    u.shmdt(a).unwrap();
    let (_, ptes) = rss_ptes(u);
    assert_eq!(ptes, 0);
    assert!(mi(u).mem_free >= free1 + 16);
    inv(u, "detached");
    0
}
both_modes!(shm_rmid_cases, shm_rmid_table);

// ---------------------------------------------------------------------------------------
// fork

fn fork_table<M: PagingMode>(u: &mut User<'_, M>) -> i32 {
    assert_eq!(u.wait(), Err(ECHILD), "wait without children");
    let a = u.mmap(0x2000_0000, 4 * 4096, RW, PA | MAP_FIXED).unwrap();
    let s = u.mmap(0x2100_0000, 4096, RW, SA | MAP_FIXED).unwrap();
    u.store_u32(a, 1).unwrap();
    // (name, share_vm, exit code)
    let cases: &[(&str, bool, i32)] = &[("process", false, 3), ("thread", true, 4)];
    for &(name, share, code) in cases {
        let c = u
            .fork(name, share, move |c| {
                assert_eq!(c.load_u32(a), Ok(1));
                c.store_u32(a + PAGE, code as u32).unwrap();
                c.store_u32(s, code as u32).unwrap();
                let bad = c
                    .handle()
                    .enter_kernel("check_invariants", |cx| c.kernel().check_invariants(cx));
                assert!(bad.is_empty(), "{bad:?}");
                code
            })
            .unwrap();
        assert_eq!(u.wait(), Ok((c, code)), "{name}");
        assert_eq!(u.load_u32(s), Ok(code as u32), "{name}: shared write");
        let private = u.load_u32(a + PAGE).unwrap();
        assert_eq!(private, if share { code as u32 } else { 0 }, "{name}");
        inv(u, name);
    }
    assert_eq!(u.wait(), Err(ECHILD));
    // a child's VMAs and brk are its parent's
    u.brk(START_BRK + 3 * 4096);
    let mine = vmas(u);
    let c = u
        .fork("layout", false, move |c| {
            let v = c
                .handle()
                .enter_kernel("vma_list", |cx| c.kernel().vma_list(cx, c.pid()));
            let b = c.brk(0);
            (v == mine && b == START_BRK + 3 * 4096) as i32
        })
        .unwrap();
    assert_eq!(u.wait(), Ok((c, 1)));
    inv(u, "end");
    0
}
both_modes!(fork_cases, fork_table);
