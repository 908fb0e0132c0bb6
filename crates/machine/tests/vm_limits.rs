//! The system-wide limits and the errors the man pages give at them, with the limits set low
//! as a sysctl would (`vm.max_map_count`, `kernel.threads-max`, `kernel.shmmni`): mmap and shmat
//! fail with ENOMEM past max_map_count, fork with EAGAIN past the process limit, shmget with
//! ENOSPC past shmmni — each cleanly, with nothing leaked afterwards.

mod vm_common;

use highpte_arch::{MemoryVariant, Pae};
use highpte_kernel::mm::shm::IPC_CREAT;
use highpte_kernel::mm::{MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE};
use highpte_kernel::Errno;
use vm_common::*;

const MB: u64 = 1 << 20;

#[test]
fn mmap_and_shmat_fail_with_enomem_at_max_map_count() {
    let mut sys = boot_with::<Pae>(MemoryVariant::Highmem64gHighpte, 1 << 30, 1, |k| {
        k.max_map_count = 8
    });
    let boot = quiesce(&mut sys);
    let code = run_process(&mut sys, |u| {
        // alternate protections so neighbours never merge: one VMA per mmap
        let mut made = 0;
        let err = loop {
            let prot = if made % 2 == 0 {
                PROT_READ
            } else {
                PROT_READ | PROT_WRITE
            };
            match u.mmap(0, 4096, prot, MAP_PRIVATE | MAP_ANONYMOUS) {
                Ok(_) => made += 1,
                Err(e) => break e,
            }
            assert!(made <= 8, "max_map_count not enforced");
        };
        assert_eq!(err, Errno::ENOMEM);
        assert_eq!(made, 8, "exactly max_map_count VMAs");
        assert_eq!(
            u.handle()
                .enter_kernel("vma_list", |cx| u.kernel().vma_list(cx, u.pid()))
                .len(),
            8
        );
        let id = u.shmget(42, MB, IPC_CREAT | 0o600).unwrap();
        assert_eq!(u.shmat(id, 0, 0), Err(Errno::ENOMEM));
        u.shm_rmid(id).unwrap();
        inv(u, "after the limit");
        0
    });
    assert_eq!(code, 0);
    assert_no_leak(&mut sys, &boot, "max_map_count");
}

#[test]
fn fork_fails_with_eagain_at_the_process_limit() {
    let mut sys = boot_with::<Pae>(MemoryVariant::Highmem64gHighpte, 1 << 30, 2, |k| {
        k.max_processes = 3
    });
    let boot = quiesce(&mut sys);
    let code = run_process(&mut sys, |u| {
        let a = u
            .mmap(
                0,
                4 * MB,
                PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS,
            )
            .unwrap();
        u.store_u32(a, 7).unwrap();
        let before = u.kernel().nr_processes();
        // this process + 2 children reach the limit of 3; children wait to be killed
        let c1 = u.fork("c1", false, |c| c.pause().number()).unwrap();
        let c2 = u.fork("c2", false, |c| c.pause().number()).unwrap();
        assert_eq!(u.fork("c3", false, |_| 0), Err(Errno::EAGAIN));
        assert_eq!(
            u.kernel().nr_processes(),
            before + 2,
            "the failed fork left nothing behind"
        );
        u.kill(c1, highpte_kernel::Signal::Sigkill);
        u.kill(c2, highpte_kernel::Signal::Sigkill);
        let mut reaped = 0;
        while u.wait().is_ok() {
            reaped += 1;
        }
        assert_eq!(reaped, 2);
        // below the limit again: fork works
        let c = u.fork("c4", false, |_| 0).unwrap();
        assert_eq!(u.wait(), Ok((c, 0)));
        inv(u, "after EAGAIN");
        0
    });
    assert_eq!(code, 0);
    assert_no_leak(&mut sys, &boot, "process limit");
}

#[test]
fn shmget_fails_with_enospc_at_shmmni() {
    let mut sys = boot_with::<Pae>(MemoryVariant::Highmem64gHighpte, 1 << 30, 1, |k| {
        k.shmmni = 4
    });
    let boot = quiesce(&mut sys);
    let code = run_process(&mut sys, |u| {
        let ids: Vec<u32> = (0..4)
            .map(|k| u.shmget(100 + k, MB, IPC_CREAT | 0o600).unwrap())
            .collect();
        assert_eq!(u.shmget(200, MB, IPC_CREAT | 0o600), Err(Errno::ENOSPC));
        // an existing key is still found at the limit
        assert_eq!(u.shmget(101, 0, 0), Ok(ids[1]));
        u.shm_rmid(ids[0]).unwrap();
        let again = u.shmget(200, MB, IPC_CREAT | 0o600).unwrap();
        for id in ids.iter().skip(1).chain(std::iter::once(&again)) {
            u.shm_rmid(*id).unwrap();
        }
        inv(u, "after ENOSPC");
        0
    });
    assert_eq!(code, 0);
    assert_no_leak(&mut sys, &boot, "shmmni");
}
