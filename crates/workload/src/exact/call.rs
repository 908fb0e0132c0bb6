//! The system calls and accesses of the exact layer, with their arguments as the i386 Linux
//! ABI takes them.

use super::value::{
    Bits, Expr, IpcK, MapK, MremapK, MsyncK, OpenK, ProtK, ShmatK, ShmctlK, WhenceK,
};
use crate::spec::Pattern;
use serde::{Deserialize, Serialize};

fn minus_one() -> Expr {
    Expr::num(-1)
}

fn rdwr_creat() -> Bits<OpenK> {
    Bits::new(0o102)
}

fn seek_set() -> Bits<WhenceK> {
    Bits::new(0)
}

/// One exact call. Written as a table whose `op` key names it; every argument is a value the
/// kernel judges (an address, a length, flag bits), invalid ones included.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Call {
    /// `mmap(addr, len, prot, flags, fd, offset)`: returns the address.
    Mmap {
        /// Hint or (`MAP_FIXED`) address. Default 0.
        #[serde(default)]
        addr: Expr,
        /// Length in bytes.
        len: Expr,
        /// `PROT_*` bits.
        prot: Bits<ProtK>,
        /// `MAP_*` bits.
        flags: Bits<MapK>,
        /// File descriptor (`-1` for anonymous memory). Default -1.
        #[serde(default = "minus_one")]
        fd: Expr,
        /// Offset in the file, in bytes. Default 0.
        #[serde(default)]
        offset: Expr,
    },
    /// `munmap(addr, len)`.
    Munmap {
        /// Start.
        addr: Expr,
        /// Length.
        len: Expr,
    },
    /// `mprotect(addr, len, prot)`.
    Mprotect {
        /// Start.
        addr: Expr,
        /// Length.
        len: Expr,
        /// `PROT_*` bits.
        prot: Bits<ProtK>,
    },
    /// `mremap(addr, old_len, new_len, flags, new_addr)`: returns the (new) address.
    Mremap {
        /// Old address.
        addr: Expr,
        /// Old length.
        old_len: Expr,
        /// New length.
        new_len: Expr,
        /// `MREMAP_*` bits. Default 0.
        #[serde(default)]
        flags: Bits<MremapK>,
        /// New address (with `MREMAP_FIXED`). Default 0.
        #[serde(default)]
        new_addr: Expr,
    },
    /// `brk(addr)`: returns the new break (the old one if the kernel refuses).
    Brk {
        /// The break asked for (0 asks for the current one).
        addr: Expr,
    },
    /// `shmget(key, size, shmflg)`: returns the segment id.
    Shmget {
        /// The IPC key (0 is `IPC_PRIVATE`).
        key: Expr,
        /// Size in bytes.
        size: Expr,
        /// `IPC_CREAT`, `IPC_EXCL` and permission bits. Default 0.
        #[serde(default)]
        flags: Bits<IpcK>,
    },
    /// `shmat(shmid, addr, shmflg)`: returns the address.
    Shmat {
        /// Segment id (a name bound to a `shmget`'s result).
        shmid: Expr,
        /// Address (0: the kernel chooses). Default 0.
        #[serde(default)]
        addr: Expr,
        /// `SHM_RDONLY`, `SHM_RND`. Default 0.
        #[serde(default)]
        flags: Bits<ShmatK>,
    },
    /// `shmdt(addr)`.
    Shmdt {
        /// Address of the attachment.
        addr: Expr,
    },
    /// `shmctl(shmid, cmd, NULL)`.
    Shmctl {
        /// Segment id.
        shmid: Expr,
        /// Command (`IPC_RMID`).
        cmd: Bits<ShmctlK>,
    },
    /// `fork()`: the child runs `child_phase` (and may `pause` there); returns the child's
    /// pid in the parent.
    Fork {
        /// The phase (`run_by = "children"`) the child runs.
        child_phase: String,
        /// Then wait until the child's phase has ended (it paused, exited or was killed), as
        /// a parent reading a pipe the child writes when done. Default false.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        wait_done: bool,
    },
    /// `wait()`: returns the pid of a child that exited (`ECHILD` if there is none).
    Wait {},
    /// `pause()`: stay alive until the workload ends.
    Pause {},
    /// `exit()`.
    Exit {},
    /// A 4-byte user-mode load: returns the value.
    Load {
        /// Address.
        addr: Expr,
    },
    /// A 4-byte user-mode store.
    Store {
        /// Address.
        addr: Expr,
        /// The value stored. Default 0.
        #[serde(default)]
        value: Expr,
    },
    /// User-mode accesses to every page of `[addr, addr + len)` (or `count` of them, in
    /// `pattern` order), without data stamps; stops at the first signal.
    Touch {
        /// Start.
        addr: Expr,
        /// Length.
        len: Expr,
        /// Stores (true) or loads. Default false.
        #[serde(default)]
        write: bool,
        /// Page order. Default sequential.
        #[serde(default)]
        pattern: Pattern,
        /// Accesses. Default: one per page.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        count: Option<u64>,
    },
    /// Record `/proc/self/maps` or `/proc/self/status` at this point in the report.
    Proc {
        /// `"maps"` or `"status"`.
        what: ProcWhat,
    },
    /// `open(path, flags)`: returns the descriptor.
    Open {
        /// File name.
        path: String,
        /// `O_*` bits. Default `O_RDWR|O_CREAT`.
        #[serde(default = "rdwr_creat")]
        flags: Bits<OpenK>,
    },
    /// `close(fd)`.
    Close {
        /// Descriptor.
        fd: Expr,
    },
    /// `write(fd, buf, len)` of `len` bytes of 0xa5: returns the bytes written.
    Write {
        /// Descriptor.
        fd: Expr,
        /// Bytes.
        len: Expr,
    },
    /// `read(fd, buf, len)`: returns the bytes read.
    Read {
        /// Descriptor.
        fd: Expr,
        /// Bytes.
        len: Expr,
    },
    /// `lseek(fd, offset, whence)`: returns the new offset.
    Lseek {
        /// Descriptor.
        fd: Expr,
        /// Offset (signed).
        offset: Expr,
        /// `SEEK_SET`, `SEEK_CUR` or `SEEK_END`. Default `SEEK_SET`.
        #[serde(default = "seek_set")]
        whence: Bits<WhenceK>,
    },
    /// `ftruncate(fd, len)`.
    Ftruncate {
        /// Descriptor.
        fd: Expr,
        /// New length (signed).
        len: Expr,
    },
    /// `fsync(fd)`.
    Fsync {
        /// Descriptor.
        fd: Expr,
    },
    /// `unlink(path)`.
    Unlink {
        /// File name.
        path: String,
    },
    /// `msync(addr, len, flags)`.
    Msync {
        /// Start.
        addr: Expr,
        /// Length.
        len: Expr,
        /// `MS_*` bits. Default 0.
        #[serde(default)]
        flags: Bits<MsyncK>,
    },
}

/// Which `/proc/PID` file a `proc` op records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcWhat {
    /// `/proc/PID/maps`.
    Maps,
    /// `/proc/PID/status` (its memory lines).
    Status,
}

/// Ops that exist only in the exact layer: a table naming one of them is always exact.
pub const EXACT_ONLY_OPS: &[&str] = &[
    "load",
    "store",
    "proc",
    "shmctl",
    "open",
    "close",
    "write",
    "read",
    "lseek",
    "ftruncate",
];

/// Keys that only the exact layer uses: a table with any of them is exact. (`expect` belongs
/// to both layers: see [`super::is_exact`].)
pub const EXACT_KEYS: &[&str] = &[
    "addr", "len", "flags", "as", "shmid", "old_len", "new_len", "new_addr", "fd", "path", "cmd",
    "whence",
];

impl Call {
    /// The `op` name.
    pub fn kind(&self) -> &'static str {
        match self {
            Call::Mmap { .. } => "mmap",
            Call::Munmap { .. } => "munmap",
            Call::Mprotect { .. } => "mprotect",
            Call::Mremap { .. } => "mremap",
            Call::Brk { .. } => "brk",
            Call::Shmget { .. } => "shmget",
            Call::Shmat { .. } => "shmat",
            Call::Shmdt { .. } => "shmdt",
            Call::Shmctl { .. } => "shmctl",
            Call::Fork { .. } => "fork",
            Call::Wait {} => "wait",
            Call::Pause {} => "pause",
            Call::Exit {} => "exit",
            Call::Load { .. } => "load",
            Call::Store { .. } => "store",
            Call::Touch { .. } => "touch",
            Call::Proc { .. } => "proc",
            Call::Open { .. } => "open",
            Call::Close { .. } => "close",
            Call::Write { .. } => "write",
            Call::Read { .. } => "read",
            Call::Lseek { .. } => "lseek",
            Call::Ftruncate { .. } => "ftruncate",
            Call::Fsync { .. } => "fsync",
            Call::Unlink { .. } => "unlink",
            Call::Msync { .. } => "msync",
        }
    }

    /// Every argument expression with its key, in order (for the name checks).
    pub fn exprs(&self) -> Vec<(&'static str, &Expr)> {
        match self {
            Call::Mmap {
                addr,
                len,
                fd,
                offset,
                ..
            } => vec![("addr", addr), ("len", len), ("fd", fd), ("offset", offset)],
            Call::Munmap { addr, len }
            | Call::Mprotect { addr, len, .. }
            | Call::Touch { addr, len, .. }
            | Call::Msync { addr, len, .. } => vec![("addr", addr), ("len", len)],
            Call::Mremap {
                addr,
                old_len,
                new_len,
                new_addr,
                ..
            } => vec![
                ("addr", addr),
                ("old_len", old_len),
                ("new_len", new_len),
                ("new_addr", new_addr),
            ],
            Call::Brk { addr } | Call::Shmdt { addr } | Call::Load { addr } => vec![("addr", addr)],
            Call::Shmget { key, size, .. } => vec![("key", key), ("size", size)],
            Call::Shmat { shmid, addr, .. } => vec![("shmid", shmid), ("addr", addr)],
            Call::Shmctl { shmid, .. } => vec![("shmid", shmid)],
            Call::Store { addr, value } => vec![("addr", addr), ("value", value)],
            Call::Close { fd } | Call::Fsync { fd } => vec![("fd", fd)],
            Call::Write { fd, len } | Call::Read { fd, len } | Call::Ftruncate { fd, len } => {
                vec![("fd", fd), ("len", len)]
            }
            Call::Lseek { fd, offset, .. } => vec![("fd", fd), ("offset", offset)],
            Call::Fork { .. }
            | Call::Wait {}
            | Call::Pause {}
            | Call::Exit {}
            | Call::Proc { .. }
            | Call::Open { .. }
            | Call::Unlink { .. } => Vec::new(),
        }
    }
}
