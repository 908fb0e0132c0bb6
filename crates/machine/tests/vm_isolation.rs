//! Isolation: user mode cannot reach kernel addresses; a new page is zero even when its frame
//! held another process's data; after munmap, a thread of the same mm on another CPU cannot
//! reach the old frame through a stale TLB entry.

mod vm_common;
use highpte_arch::{MemoryVariant, PagingMode};
use highpte_kernel::mm::{MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, MAP_SHARED};
use highpte_kernel::mm::{PROT_READ, PROT_WRITE};
use highpte_kernel::platform::prelude::*;
use highpte_kernel::{PtAllocKind, PteStrategy, Signal};
use highpte_machine::{RunOutcome, User};
use std::cell::RefCell;
use std::rc::Rc;
use vm_common::*;

const RW: u32 = PROT_READ | PROT_WRITE;
const PA: u32 = MAP_PRIVATE | MAP_ANONYMOUS;

fn kernel_addresses<M: PagingMode>(u: &mut User<'_, M>) -> i32 {
    let a = u.mmap(0, 4096, RW, PA).unwrap();
    u.store_u32(a, 0x1234).unwrap();
    let pfn = pfn_of(u, a).unwrap();
    // the direct-map address of this very page, if it is low
    let direct = u
        .kernel()
        .page_address(highpte_arch::Pfn(pfn))
        .map(|v| v.as_u32());
    let mut targets = vec![
        0xC000_0000u32,
        0xC010_0000,
        0xF000_0000,
        0xFFFF_F000,
        0xFFFF_FFFC,
    ];
    targets.extend(direct);
    for t in targets {
        assert_eq!(u.load_u32(t), Err(Signal::Sigsegv), "load {t:#x}");
        assert_eq!(u.store_u32(t, 0xbad), Err(Signal::Sigsegv), "store {t:#x}");
    }
    assert_eq!(u.load_u32(a), Ok(0x1234));
    inv(u, "kernel addresses");
    0
}

#[test]
fn user_access_to_kernel_addresses_faults() {
    fn one<M: PagingMode>(v: MemoryVariant, ram: u64) {
        let mut sys = boot::<M>(v, ram, 2);
        assert_eq!(run_process(&mut sys, kernel_addresses::<M>), 0, "{v}");
    }
    for (v, ram) in CONFIGS {
        dispatch!(v, one(v, ram));
    }
}

/// Process A fills pages with data and exits; process B then gets (some of) the same frames
/// and must see zeros.
#[test]
fn a_recycled_frame_is_zero() {
    fn one<M: PagingMode>(v: MemoryVariant, ram: u64) {
        const N: u32 = 64;
        let mut sys = boot_strategy::<M>(
            v,
            ram,
            1,
            PteStrategy::default_for(&highpte_arch::Config::new(v, ram, 1, true).unwrap()),
            PtAllocKind::Buddy,
        );
        let b = quiesce(&mut sys);
        let first: Rc<RefCell<Vec<u64>>> = Rc::new(RefCell::new(Vec::new()));
        let f = first.clone();
        run_process(&mut sys, move |u| {
            let a = u.mmap(0, N as u64 * 4096, RW, PA).unwrap();
            for i in 0..N {
                for w in (0..1024).step_by(64) {
                    u.store_u32(a + i * PAGE + w * 4, 0xdead_beef ^ w).unwrap();
                }
            }
            *f.borrow_mut() = (0..N).map(|i| pfn_of(u, a + i * PAGE).unwrap()).collect();
            0
        });
        let second: Rc<RefCell<Vec<u64>>> = Rc::new(RefCell::new(Vec::new()));
        let s = second.clone();
        run_process(&mut sys, move |u| {
            let a = u.mmap(0, N as u64 * 4096, RW, PA).unwrap();
            for i in 0..N {
                // a write fault gets a real frame (a read would map the zero page)
                u.store_u32(a + i * PAGE + 4092, 1).unwrap();
                for w in 0..1023 {
                    assert_eq!(u.load_u32(a + i * PAGE + w * 4), Ok(0), "page {i} word {w}");
                }
            }
            *s.borrow_mut() = (0..N).map(|i| pfn_of(u, a + i * PAGE).unwrap()).collect();
            inv(u, "second");
            0
        });
        let f = first.borrow();
        let reused = second.borrow().iter().filter(|p| f.contains(p)).count();
        assert!(
            reused >= N as usize / 2,
            "{v}: only {reused} of {N} frames were recycled: the test proves nothing"
        );
        drop(f);
        assert_no_leak(&mut sys, &b, v.name());
    }
    for (v, ram) in CONFIGS {
        dispatch!(v, one(v, ram));
    }
}

/// Thread B (CLONE_VM) on CPU 1 caches a translation, thread A on CPU 0 unmaps the page: B's
/// next access must fault, never reach the old frame.
fn munmap_shootdown<M: PagingMode>(u: &mut User<'_, M>) -> i32 {
    let flag = u.mmap(0, 4096, RW, MAP_SHARED | MAP_ANONYMOUS).unwrap();
    let x = u.mmap(0x2000_0000, 4 * 4096, RW, PA | MAP_FIXED).unwrap();
    for i in 0..4 {
        u.store_u32(x + i * PAGE, 0x600d_0000 + i).unwrap();
    }
    let me = u.handle().cpu();
    let seen: Rc<RefCell<Vec<String>>> = Rc::new(RefCell::new(Vec::new()));
    let sn = seen.clone();
    let t = u
        .fork("thread", true, move |b| {
            let cpu = b.handle().cpu();
            // cache the translations (reads go through the TLB)
            for i in 0..4 {
                assert_eq!(b.load_u32(x + i * PAGE), Ok(0x600d_0000 + i));
            }
            b.store_u32(flag, 1).unwrap();
            // keep the entries hot until A has unmapped
            let mut spins = 0u64;
            while b.load_u32(flag).unwrap() != 2 {
                let _ = b.load_u32(x + PAGE);
                spins += 1;
                assert!(spins < 50_000_000);
            }
            for i in 0..4 {
                let r = b.load_u32(x + i * PAGE);
                sn.borrow_mut().push(format!("cpu {cpu}: page {i}: {r:?}"));
            }
            sn.borrow_mut()
                .push(format!("cpu {cpu}: store: {:?}", b.store_u32(x, 1)));
            0
        })
        .unwrap();
    while u.load_u32(flag).unwrap() != 1 {}
    u.munmap(x, 4 * 4096).unwrap();
    // another allocation may take the freed frames at once
    let y = u.mmap(0, 4 * 4096, RW, PA).unwrap();
    for i in 0..4 {
        u.store_u32(y + i * PAGE, 0xbad0_0000 + i).unwrap();
    }
    u.store_u32(flag, 2).unwrap();
    assert_eq!(u.wait(), Ok((t, 0)));
    let seen = seen.borrow();
    assert_eq!(seen.len(), 5);
    let other_cpu = !seen[0].starts_with(&format!("cpu {me}:"));
    assert!(other_cpu, "the thread ran on the same CPU ({me}): {seen:?}");
    for l in seen.iter() {
        assert!(l.ends_with("Err(Sigsegv)"), "{l}");
    }
    inv(u, "shootdown");
    0
}

#[test]
fn munmap_shoots_down_other_cpus() {
    fn one<M: PagingMode>(v: MemoryVariant, ram: u64) {
        let mut sys = boot::<M>(v, ram, 2);
        let b = quiesce(&mut sys);
        let pid = sys
            .spawn_process("test", Some(0), munmap_shootdown::<M>)
            .unwrap();
        let out = sys.run();
        assert!(matches!(out, RunOutcome::Completed), "{v}: {out}");
        assert_eq!(sys.machine.exit_code(pid), Some(0), "{v}");
        assert_no_leak(&mut sys, &b, v.name());
    }
    for (v, ram) in CONFIGS {
        dispatch!(v, one(v, ram));
    }
}
