//! A swap device in a host file (`MachineOptions::swap_file`): an overcommitted machine keeps
//! every stamp with its swapped pages in the file and none in host memory, runs bit for bit as
//! with swap in host memory, refuses a path it cannot create at boot, and stops cleanly when
//! the host cannot write the file.

mod vm_common;
use highpte_arch::{Config, MemoryVariant, TwoLevel};
use highpte_kernel::mm::shm::{IPC_CREAT, IPC_PRIVATE};
use highpte_kernel::mm::{MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE};
use highpte_kernel::{Counter, KernelOptions};
use highpte_machine::{MachineError, MachineOptions, RunOutcome, System, SystemError};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Mutex;
use vm_common::*;

const RW: u32 = PROT_READ | PROT_WRITE;
const PA: u32 = MAP_PRIVATE | MAP_ANONYMOUS;
/// Small enough to overcommit in a few seconds of a debug build.
const RAM: u64 = 32 * MB;
const SWAP: u64 = 2 * RAM;

/// The tests of this file one at a time: the host-error test lowers the process's file-size
/// limit, which would break another test's swap file.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A path for one test's swap file in the host's temp dir, not there yet.
fn scratch(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!(
        "highpte-swap-file-test-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&p);
    p
}

fn boot(swap_file: Option<&Path>) -> Result<System<TwoLevel>, SystemError> {
    let cfg = Config::new(MemoryVariant::NoHighmem, RAM, 2, true).unwrap();
    let mut ko = KernelOptions::defaults_for(&cfg);
    ko.debug = true;
    ko.swap_pages = SWAP / 4096;
    System::boot(
        cfg,
        ko,
        MachineOptions {
            tick_period: 100_000,
            quantum: 2_000,
            swap_file: swap_file.map(Path::to_path_buf),
            ..Default::default()
        },
    )
}

/// Everything a run's simulation produced, to compare two runs.
#[derive(Debug, PartialEq, Eq)]
struct Fingerprint {
    event_hash: u64,
    clocks: Vec<u64>,
    counters: Vec<(&'static str, u64)>,
    machine: highpte_machine::MachineStats,
    disk_io: (u64, u64),
}

/// Pages of the shared memory segment that outlives its first process.
const SHM_PAGES: u32 = (RAM / 2 / 4096) as u32;

/// One process stamps a shared memory segment of half of RAM, then writes and verifies RAM's
/// worth of private memory, pushing the segment out to swap, and exits; the segment stays,
/// partly swapped. `between` looks at the machine then. A second process checks every stamp
/// of the segment and removes it.
fn overcommit(sys: &mut System<TwoLevel>, between: impl FnOnce(&System<TwoLevel>)) -> Fingerprint {
    let boot = quiesce(sys);
    let shmid = Rc::new(Cell::new(0u32));
    let id_out = shmid.clone();
    let code = run_process(sys, move |u| {
        let id = u
            .shmget(IPC_PRIVATE, u64::from(SHM_PAGES) * 4096, IPC_CREAT | 0o600)
            .unwrap();
        id_out.set(id);
        let s = u.shmat(id, 0, 0).unwrap();
        for i in 0..SHM_PAGES {
            u.store_u32(s + i * PAGE, stamp(i, 1)).unwrap();
        }
        u.shmdt(s).unwrap();
        let n = (RAM / 4096) as u32;
        let a = u.mmap(0, RAM, RW, PA).unwrap();
        for i in 0..n {
            u.store_u32(a + i * PAGE, stamp(i, 2)).unwrap();
        }
        for i in 0..n {
            assert_eq!(u.load_u32(a + i * PAGE).unwrap(), stamp(i, 2), "page {i}");
        }
        0
    });
    assert_eq!(code, 0);
    assert!(
        sys.kernel().counters().get(Counter::Pswpout) > 0,
        "nothing swapped"
    );
    between(sys);
    let id = shmid.get();
    let code = run_process(sys, move |u| {
        let s = u.shmat(id, 0, 0).unwrap();
        for i in 0..SHM_PAGES {
            assert_eq!(
                u.load_u32(s + i * PAGE).unwrap(),
                stamp(i, 1),
                "shm page {i}"
            );
        }
        u.shmdt(s).unwrap();
        u.shm_rmid(id).unwrap();
        0
    });
    assert_eq!(code, 0);
    assert!(
        sys.kernel().counters().get(Counter::Pswpin) > 0,
        "nothing swapped in"
    );
    assert_no_leak(sys, &boot, "swap file");
    let q = quiesce(sys);
    assert_eq!(q.mi.swap_free, q.mi.swap_total, "swap slots left in use");
    assert_eq!(sys.machine.block_store().stored_blocks(), 0, "blocks left");
    let m = &sys.machine;
    let (r, w, _) = m.disk_stats();
    Fingerprint {
        event_hash: m.event_hash(),
        clocks: m.cpu_clocks(),
        counters: sys.kernel().counters().snapshot(),
        machine: m.stats(),
        disk_io: (r, w),
    }
}

#[test]
fn swap_in_a_host_file_keeps_every_stamp_and_runs_bit_identical() {
    let _g = serial();
    let path = scratch("overcommit");
    let mut sys = boot(Some(&path)).unwrap();
    assert!(path.exists(), "the swap file is created at boot");
    let with_file = overcommit(&mut sys, |sys| {
        let store = sys.machine.block_store();
        let f = store.swap_file().expect("a swap file");
        assert_eq!(f.path(), path.as_path());
        assert!(f.stored_blocks() > 0, "swapped pages are in the file");
        assert_eq!(store.stored_blocks(), f.stored_blocks());
        assert_eq!(store.memory_blocks(), 0, "no swap block in host memory");
        assert!(f.host_len().unwrap() > 0);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            f.host_len().unwrap()
        );
        // the bitset covers the blocks used, at 1 bit each
        assert!(f.bitset_bytes() <= (SWAP / 4096 / 8) as usize + 8);
    });
    drop(sys);
    assert!(!path.exists(), "the swap file is removed with the machine");

    let mut sys = boot(None).unwrap();
    let in_memory = overcommit(&mut sys, |sys| {
        let store = sys.machine.block_store();
        assert!(store.swap_file().is_none());
        assert!(store.memory_blocks() > 0, "swap in host memory");
    });
    assert_eq!(
        with_file, in_memory,
        "the same simulation with swap in a file and in host memory"
    );
}

#[test]
fn a_swap_file_that_cannot_be_created_is_a_boot_error_naming_it() {
    let _g = serial();
    let missing = scratch("no-such-dir").join("swap");
    let e = match boot(Some(&missing)) {
        Ok(_) => panic!("booted with a swap file in a missing directory"),
        Err(e) => e,
    };
    assert!(
        matches!(&e, SystemError::Machine(MachineError::SwapFile(s)) if s.path == missing),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(text.contains(&missing.display().to_string()), "{text}");
    assert!(text.contains("No such file or directory"), "{text}");
    assert!(text.contains("create it or choose a path"), "{text}");

    let dir = std::env::temp_dir();
    let e = boot(Some(&dir)).err().expect("a directory is no swap file");
    assert!(e.to_string().contains("not a regular file"), "{e}");
    assert!(dir.is_dir(), "the directory is left alone");
}

#[test]
fn a_full_host_file_system_stops_the_run_with_the_error() {
    let _g = serial();
    let path = scratch("full");
    let mut sys = boot(Some(&path)).unwrap();
    // Files of this process may not grow past 64 blocks: the host's write of block 64
    // fails with EFBIG as a full disk fails with ENOSPC. SIGXFSZ would kill the process.
    let limit = 64 * 4096;
    // SAFETY: plain libc calls on this process's own limits and signal disposition; the
    // tests of this file run one at a time (SERIAL), and the old values are put back below.
    let old = unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let mut old = std::mem::zeroed::<libc::rlimit>();
        assert_eq!(libc::getrlimit(libc::RLIMIT_FSIZE, &mut old), 0);
        let lim = libc::rlimit {
            rlim_cur: limit,
            rlim_max: old.rlim_max,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &lim), 0);
        old
    };
    let pid = sys
        .spawn_process("toucher", Some(0), |u| {
            let a = u.mmap(0, RAM, RW, PA).unwrap();
            for i in 0..(RAM / 4096) as u32 {
                if u.store_u32(a + i * PAGE, stamp(i, 3)).is_err() {
                    return 1;
                }
            }
            0
        })
        .unwrap();
    let out = sys.run();
    // SAFETY: as above.
    unsafe {
        libc::setrlimit(libc::RLIMIT_FSIZE, &old);
        libc::signal(libc::SIGXFSZ, libc::SIG_DFL);
    }
    let RunOutcome::HostIo(e) = &out else {
        panic!("expected a host I/O error, got {out}")
    };
    assert_eq!(e.path, path);
    assert!(e.write && e.block >= 64, "{e:?}");
    assert_eq!(e.errno, Some(libc::EFBIG));
    let text = out.to_string();
    assert!(text.contains("host I/O error: writing block"), "{text}");
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains("free space there"), "{text}");
    assert!(
        sys.machine
            .kernel_log()
            .iter()
            .any(|l| l.contains("host I/O error")),
        "the error is in the kernel log"
    );
    assert_eq!(
        sys.machine.exit_code(pid),
        None,
        "the process never finished"
    );
    assert_eq!(sys.run(), out, "the machine stays stopped");
    drop(sys);
    assert!(!path.exists());
}
