//! `/proc/PID/maps` and `/proc/PID/status` of simulated processes, as the report shows them:
//! taken for every live process when a step's report is taken, and by `proc` ops.

use highpte_arch::PagingMode;
use highpte_kernel::mm::procfs::{MapsBacking, MapsEntry, ProcStatus};
use highpte_kernel::Kernel;
use highpte_kernel::TaskId;
use highpte_machine::TaskHandle;

/// One process's `/proc` views at one point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcSnapshot {
    /// Its pid.
    pub pid: u32,
    /// The runner's label: `p3` for top-level process 3, `p3c0` for its first child.
    pub process: String,
    /// The VMAs, in address order.
    pub maps: Vec<MapsEntry>,
    /// The `Vm*` lines.
    pub status: ProcStatus,
}

/// What a `proc` op recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcRecord {
    /// Where the op is written (`FILE:LINE:COLUMN`).
    pub at: String,
    /// `"maps"` or `"status"`.
    pub what: &'static str,
    /// The views at that point.
    pub snapshot: ProcSnapshot,
}

impl ProcSnapshot {
    /// The views of process `pid` now (empty maps if it has no address space).
    pub fn take<M: PagingMode>(
        k: &Kernel<M>,
        h: &TaskHandle<M>,
        pid: TaskId,
        process: String,
    ) -> Self {
        h.enter_kernel("proc", |cx| ProcSnapshot {
            pid: pid.0,
            process,
            maps: k.proc_maps(cx, pid),
            status: k.proc_status(cx, pid).unwrap_or_default(),
        })
    }

    /// `/proc/PID/maps` as Linux prints it: `start-end perms offset dev inode path`.
    pub fn maps_lines(&self) -> Vec<String> {
        self.maps.iter().map(maps_line).collect()
    }

    /// The memory lines of `/proc/PID/status`.
    pub fn status_lines(&self) -> Vec<String> {
        let s = &self.status;
        [
            ("VmSize", s.vm_size_kb),
            ("VmRSS", s.vm_rss_kb),
            ("VmData", s.vm_data_kb),
            ("VmStk", s.vm_stk_kb),
            ("VmPTE", s.vm_pte_kb),
        ]
        .iter()
        .map(|(n, v)| format!("{:<8}{v:>8} kB", format!("{n}:")))
        .collect()
    }
}

/// The path column of a maps line.
pub fn backing_name(b: MapsBacking) -> String {
    match b {
        MapsBacking::Anon => String::new(),
        MapsBacking::Heap => "[heap]".to_string(),
        MapsBacking::SharedAnon(_) => "/dev/zero (deleted)".to_string(),
        MapsBacking::Shm(id) => format!("/SYSV (shmid {id})"),
        MapsBacking::File(ino) => format!("inode {ino}"),
    }
}

fn maps_line(e: &MapsEntry) -> String {
    let perms = String::from_utf8_lossy(&e.perms()).into_owned();
    let inode = match e.backing {
        MapsBacking::Shm(id) => id,
        MapsBacking::File(ino) => ino,
        _ => 0,
    };
    let line = format!(
        "{:08x}-{:08x} {perms} {:08x} 00:00 {inode}",
        e.start, e.end, e.offset
    );
    let name = backing_name(e.backing);
    if name.is_empty() {
        line
    } else {
        format!("{line:<49}{name}")
    }
}
