//! Out of memory: a process that maps and touches more than RAM is OOM-killed with a log
//! line; nothing panics, a bystander survives, invariants hold, nothing leaks.

mod vm_common;
use highpte_arch::{MemoryVariant, PagingMode};
use highpte_kernel::mm::{MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE};
use highpte_kernel::Signal;
use highpte_machine::RunOutcome;
use std::cell::Cell;
use std::rc::Rc;
use vm_common::*;

const RW: u32 = PROT_READ | PROT_WRITE;
const PA: u32 = MAP_PRIVATE | MAP_ANONYMOUS;

fn oom<M: PagingMode>(v: MemoryVariant, ram: u64) {
    let mut sys = boot::<M>(v, ram, 2);
    let b = quiesce(&mut sys);
    let touched = Rc::new(Cell::new(0u32));
    let t = touched.clone();
    let hog = sys
        .spawn_process("hog", Some(0), move |u| {
            let len = ram + 256 * MB;
            // more than RAM, in pieces (one mapping cannot exceed the user address space)
            let mut pieces = Vec::new();
            let mut left = len;
            while left > 0 {
                let l = left.min(GB);
                pieces.push((u.mmap(0, l, RW, PA).unwrap(), l));
                left -= l;
            }
            for (a, l) in pieces {
                for i in 0..(l / 4096) as u32 {
                    match u.store_u32(a + i * PAGE, i) {
                        Ok(()) => t.set(t.get() + 1),
                        Err(s) => {
                            assert_eq!(s, Signal::Sigkill);
                            return 9;
                        }
                    }
                }
            }
            0
        })
        .unwrap();
    // a small process that keeps faulting pages in and out meanwhile
    let hog_pid = Rc::new(Cell::new(hog));
    let small = sys
        .spawn_process("small", Some(1), move |u| {
            // until the hog is gone, so that it also faults while memory is exhausted
            let k = u.kernel();
            let mut round = 0u32;
            while k.process(hog_pid.get()).is_some() || round < 100 {
                round += 1;
                assert!(round < 1_000_000);
                let a = u.mmap(0, 16 * 4096, RW, PA).unwrap();
                for i in 0..16 {
                    u.store_u32(a + i * PAGE, round).unwrap();
                }
                u.munmap(a, 16 * 4096).unwrap();
            }
            0
        })
        .unwrap();
    let out = sys.run();
    assert!(matches!(out, RunOutcome::Completed), "{v}: {out}");
    assert_eq!(
        sys.machine.exit_code(hog),
        Some(9),
        "{v}: the hog was not killed"
    );
    assert_eq!(
        sys.machine.exit_code(small),
        Some(0),
        "{v}: the bystander died"
    );
    let log = sys.machine.kernel_log().join("\n");
    assert_eq!(
        log.matches("Out of Memory: Killed process").count(),
        1,
        "{v}: {log}"
    );
    assert!(log.contains(&format!("Killed process {hog}")), "{v}: {log}");
    // it got most of the memory before it died
    assert!(
        touched.get() as u64 * 4096 > ram / 2,
        "{v}: {}",
        touched.get()
    );
    assert_no_leak(&mut sys, &b, v.name());
}

#[test]
fn oom_kills_the_hog_only() {
    for (v, ram) in [
        (MemoryVariant::NoHighmem, 256 * MB),
        (MemoryVariant::Highmem64gHighpte, 1024 * MB),
    ] {
        dispatch!(v, oom(v, ram));
    }
}
