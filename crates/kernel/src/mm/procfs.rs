//! What `/proc/PID/maps` and `/proc/PID/status` show of a process: its VMAs with their
//! backing, and the `Vm*` lines computed from them and from the mm's counters.

use crate::ctx::SleepCtx;
use crate::kernel::Kernel;
use crate::mm::vma::Backing;
use crate::mm::{PROT_EXEC, PROT_READ, PROT_WRITE};
use crate::platform::{Platform, TaskId};
use alloc::vec::Vec;
use highpte_arch::{PagingMode, PAGE_SHIFT};

/// What backs one line of `/proc/PID/maps`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapsBacking {
    /// Private anonymous memory outside the heap.
    Anon,
    /// The brk heap (`[heap]`).
    Heap,
    /// A shared anonymous mapping (`/dev/zero (deleted)` in Linux), by its object id.
    SharedAnon(u32),
    /// A SysV segment attachment (`/SYSV... (deleted)`), by its segment id.
    Shm(u32),
    /// A file mapping, by inode number.
    File(u32),
}

/// One line of `/proc/PID/maps`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapsEntry {
    /// First address.
    pub start: u32,
    /// End (exclusive).
    pub end: u32,
    /// `PROT_*` bits.
    pub prot: u32,
    /// `MAP_SHARED` semantics (`s`) rather than private (`p`).
    pub shared: bool,
    /// Offset in the backing object, in bytes (0 for anonymous memory).
    pub offset: u64,
    /// What backs it.
    pub backing: MapsBacking,
}

impl MapsEntry {
    /// The permission column as Linux prints it (`rw-p`, `r--s`).
    pub fn perms(&self) -> [u8; 4] {
        [
            if self.prot & PROT_READ != 0 {
                b'r'
            } else {
                b'-'
            },
            if self.prot & PROT_WRITE != 0 {
                b'w'
            } else {
                b'-'
            },
            if self.prot & PROT_EXEC != 0 {
                b'x'
            } else {
                b'-'
            },
            if self.shared { b's' } else { b'p' },
        ]
    }
}

/// The memory lines of `/proc/PID/status`, in kB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcStatus {
    /// `VmSize`: every VMA.
    pub vm_size_kb: u64,
    /// `VmRSS`: resident pages.
    pub vm_rss_kb: u64,
    /// `VmData`: private anonymous VMAs (no file or shared object behind them), the stack
    /// excluded, as 2.4/2.5's `task_mem` counts it.
    pub vm_data_kb: u64,
    /// `VmStk`: stack VMAs (the simulated processes have none: they are not exec'd).
    pub vm_stk_kb: u64,
    /// `VmPTE`: pte pages (the line came with Linux 2.6.10).
    pub vm_pte_kb: u64,
}

impl<M: PagingMode> Kernel<M> {
    /// `/proc/PID/maps`: the VMAs of a process in address order (empty if it has no mm).
    pub fn proc_maps<P: Platform>(&self, cx: &mut SleepCtx<'_, P>, pid: TaskId) -> Vec<MapsEntry> {
        let Some(mm) = self.mm_of(pid) else {
            return Vec::new();
        };
        let vmas = mm.mmap_sem.read(cx, "proc_maps");
        vmas.iter()
            .map(|v| {
                let (backing, offset) = match &v.backing {
                    Backing::Anon if v.heap => (MapsBacking::Heap, 0),
                    Backing::Anon => (MapsBacking::Anon, 0),
                    Backing::Shared { obj, pgoff, shmid } => (
                        match shmid {
                            Some(id) => MapsBacking::Shm(*id),
                            None => MapsBacking::SharedAnon(obj.id),
                        },
                        u64::from(*pgoff) << PAGE_SHIFT,
                    ),
                    Backing::File { file, pgoff, .. } => {
                        (MapsBacking::File(file.ino), u64::from(*pgoff) << PAGE_SHIFT)
                    }
                };
                MapsEntry {
                    start: v.start,
                    end: v.end,
                    prot: v.prot,
                    shared: v.backing.is_shared(),
                    offset,
                    backing,
                }
            })
            .collect()
    }

    /// `/proc/PID/status`'s memory lines (`None` if the process has no mm).
    pub fn proc_status<P: Platform>(
        &self,
        cx: &mut SleepCtx<'_, P>,
        pid: TaskId,
    ) -> Option<ProcStatus> {
        let mm = self.mm_of(pid)?;
        let maps = self.proc_maps(cx, pid);
        let kb = |e: &MapsEntry| u64::from(e.end - e.start) / 1024;
        Some(ProcStatus {
            vm_size_kb: maps.iter().map(kb).sum(),
            vm_rss_kb: mm.rss() * 4,
            vm_data_kb: maps
                .iter()
                .filter(|e| matches!(e.backing, MapsBacking::Anon | MapsBacking::Heap))
                .map(kb)
                .sum(),
            vm_stk_kb: 0,
            vm_pte_kb: mm.nr_ptes() * 4,
        })
    }
}
