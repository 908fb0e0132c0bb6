//! The workload model: what a workload file (TOML) says, as plain Rust values.
//!
//! A [`WorkloadSpec`] names a machine ([`MachineSpec`]), the processes that run on it
//! ([`ProcessSpec`]) and the [`Phase`]s of operations ([`Op`]) they perform. Deserializing only
//! checks shapes and types; [`WorkloadSpec::validate`] checks the values (sizes that fit the user
//! address space, regions defined before use, ...) and reports each [`Problem`] with the
//! [`PathSeg`] path of the offending key, so [`crate::file`] can point at its line and column.
//!
//! The format is documented for users in `workloads/README.md`.

use highpte_arch::size::{parse_size, DisplaySize, GB, MB};
use highpte_arch::{MemoryVariant, MAX_CPUS, PAGE_SIZE};
use serde::de::{self, Unexpected, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

/// Size of the user part of the 3G/1G address space: every mapping must fit below `0xC0000000`.
pub const USER_SPACE: u64 = 0xC000_0000;
/// Most processes a workload may ask for (Linux 2.5 pids stop at 32767).
pub const MAX_PROCESSES: u32 = 32_767;
/// Least RAM a machine may have.
pub const MIN_RAM: u64 = 16 * MB;
/// Most RAM a machine may have.
pub const MAX_RAM: u64 = 64 * GB;
/// The pte access strategies a file may name.
pub const STRATEGIES: &[&str] = &["lowmem", "atomic", "persistent"];
/// The page-table allocators a file may name.
pub const PT_ALLOCS: &[&str] = &["pool", "quicklist", "buddy"];
/// Reclaim designs a workload may name.
pub const RECLAIMS: &[&str] = &["scan", "rmap"];
/// Largest swap device: 2^24 slots of 4 KB (the swap entry's offset field).
pub const MAX_SWAP: u64 = 64 * GB;

// ---------------------------------------------------------------------------------------------
// Sizes
// ---------------------------------------------------------------------------------------------

/// A byte count, written in files as a string with an optional `K`, `M`, `G` (or `T`) suffix
/// (binary units: `"512M"`, `"32G"`, `"4096"`) or as a plain integer of bytes (`4096`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Size(pub u64);

impl Size {
    /// The number of bytes.
    pub const fn bytes(self) -> u64 {
        self.0
    }
    /// The number of 4K pages this size covers, rounded up.
    pub const fn pages(self) -> u64 {
        self.0.div_ceil(PAGE_SIZE)
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", DisplaySize(self.0))
    }
}

impl FromStr for Size {
    type Err = highpte_arch::size::SizeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_size(s).map(Size)
    }
}

const SIZE_EXPECTED: &str =
    "a size: a whole number of bytes, or a string with a K, M or G suffix such as \"512M\"";
const SIGNED_SIZE_EXPECTED: &str =
    "a signed size: a whole number of bytes, or a string such as \"1M\" or \"-512K\"";

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(SIZE_EXPECTED)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v)
                    .map(Size)
                    .map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
                parse_size(v)
                    .map(Size)
                    .map_err(|_| E::invalid_value(Unexpected::Str(v), &self))
            }
        }
        d.deserialize_any(V)
    }
}

/// A byte count that may be negative (for `brk`): `"1M"`, `"-512K"`, `4096`, `-4096`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SignedSize(pub i64);

impl SignedSize {
    /// The number of bytes (negative shrinks).
    pub const fn bytes(self) -> i64 {
        self.0
    }
}

impl fmt::Display for SignedSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 < 0 {
            write!(f, "-{}", DisplaySize(self.0.unsigned_abs()))
        } else {
            write!(f, "{}", DisplaySize(self.0.unsigned_abs()))
        }
    }
}

fn parse_signed_size(s: &str) -> Option<i64> {
    let t = s.trim();
    let (neg, rest) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    if rest.starts_with(['-', '+']) {
        return None;
    }
    let mag = parse_size(rest).ok()?;
    if neg {
        0i64.checked_sub_unsigned(mag)
    } else {
        i64::try_from(mag).ok()
    }
}

impl Serialize for SignedSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for SignedSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = SignedSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(SIGNED_SIZE_EXPECTED)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SignedSize, E> {
                i64::try_from(v)
                    .map(SignedSize)
                    .map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SignedSize, E> {
                Ok(SignedSize(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SignedSize, E> {
                parse_signed_size(v)
                    .map(SignedSize)
                    .ok_or_else(|| E::invalid_value(Unexpected::Str(v), &self))
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------------------------
// Protection
// ---------------------------------------------------------------------------------------------

/// Page protection, written as the letters `r`, `w`, `x` in any order (`"r"`, `"rw"`, `"rx"`,
/// `"rwx"`), or `"none"` for `PROT_NONE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Prot {
    /// `PROT_READ`.
    pub read: bool,
    /// `PROT_WRITE`.
    pub write: bool,
    /// `PROT_EXEC`.
    pub exec: bool,
}

impl Prot {
    /// `PROT_NONE`.
    pub const NONE: Prot = Prot {
        read: false,
        write: false,
        exec: false,
    };
    /// `PROT_READ`.
    pub const R: Prot = Prot {
        read: true,
        write: false,
        exec: false,
    };
    /// `PROT_READ | PROT_WRITE`, the default.
    pub const RW: Prot = Prot {
        read: true,
        write: true,
        exec: false,
    };
}

impl fmt::Display for Prot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Prot::NONE {
            return f.write_str("none");
        }
        if self.read {
            f.write_str("r")?;
        }
        if self.write {
            f.write_str("w")?;
        }
        if self.exec {
            f.write_str("x")?;
        }
        Ok(())
    }
}

impl FromStr for Prot {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        if s == "none" {
            return Ok(Prot::NONE);
        }
        if s.is_empty() {
            return Err(());
        }
        let mut p = Prot::NONE;
        for c in s.chars() {
            let flag = match c {
                'r' => &mut p.read,
                'w' => &mut p.write,
                'x' => &mut p.exec,
                _ => return Err(()),
            };
            if *flag {
                return Err(());
            }
            *flag = true;
        }
        Ok(p)
    }
}

fn default_prot() -> Prot {
    Prot::RW
}

impl Serialize for Prot {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Prot {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Prot;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a protection: \"none\" or the letters r, w, x (e.g. \"r\", \"rw\", \"rx\", \"rwx\")")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Prot, E> {
                v.parse()
                    .map_err(|_| E::invalid_value(Unexpected::Str(v), &self))
            }
        }
        d.deserialize_str(V)
    }
}

// ---------------------------------------------------------------------------------------------
// The workload
// ---------------------------------------------------------------------------------------------

/// A whole workload file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    /// Short name, used in reports.
    pub name: String,
    /// One or two sentences saying what the workload does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The simulated machine and kernel build (the `[machine]` table; every key has a default).
    #[serde(default)]
    pub machine: MachineSpec,
    /// How many processes run, and how they ramp up (the `[processes]` table).
    #[serde(default)]
    pub processes: ProcessSpec,
    /// What the processes do, in order (`[[phases]]`); at least one.
    pub phases: Vec<Phase>,
}

/// The `[machine]` table: memory configuration, RAM, CPUs and kernel options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MachineSpec {
    /// Memory configuration: `nohighmem`, `4g`, `4g-highpte`, `64g` or `64g-highpte`.
    /// Default `64g-highpte`.
    pub config: String,
    /// Physical RAM, 16M to 64G and no more than `config` can address. Default `4G`.
    pub ram: Size,
    /// Number of CPUs, 1 (UP) to 32. Default 4.
    pub cpus: u32,
    /// Kernel preemption (`CONFIG_PREEMPT`). Default true.
    pub preempt: bool,
    /// pte access strategy: `lowmem`, `atomic` or `persistent`; absent: the config's default
    /// (`atomic` for `-highpte` configs, `lowmem` otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    /// Page-table page allocator: `pool`, `quicklist` or `buddy`; absent: `pool`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pt_alloc: Option<String>,
    /// Seed of every random choice (access patterns, random op mixes, scheduling noise).
    /// Default 1.
    pub seed: u64,
    /// The kernel's debugging helpers (slot checks, cleared slots). Default false.
    pub debug: bool,
    /// Size of the swap device (0 to 64G, in 4 KB slots). Default 0: no swap.
    pub swap: Size,
    /// How memory is reclaimed: `scan` (page-table scan, the 2.5.5 default) or `rmap`
    /// (reverse maps); absent: `scan`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reclaim: Option<String>,
}

impl Default for MachineSpec {
    fn default() -> Self {
        MachineSpec {
            config: "64g-highpte".to_string(),
            ram: Size(4 * GB),
            cpus: 4,
            preempt: true,
            strategy: None,
            pt_alloc: None,
            seed: 1,
            debug: false,
            swap: Size(0),
            reclaim: None,
        }
    }
}

impl MachineSpec {
    /// The memory configuration, if `config` names one.
    pub fn variant(&self) -> Option<MemoryVariant> {
        self.config.parse().ok()
    }
}

/// The `[processes]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessSpec {
    /// How many top-level processes the workload starts (the ramp's target). At least 1.
    /// Default 1.
    #[serde(default = "one")]
    pub count: u32,
    /// Start `ramp.start` processes, then add `ramp.step` at a time, reporting after each step,
    /// up to `count`; stop at the first failure. Absent: all `count` start in one step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ramp: Option<Ramp>,
}

impl Default for ProcessSpec {
    fn default() -> Self {
        ProcessSpec {
            count: 1,
            ramp: None,
        }
    }
}

impl ProcessSpec {
    /// The number of processes alive after each step: `[count]` without a ramp, otherwise
    /// `start, start + step, ...` ending exactly at `count`. Empty if the spec is invalid.
    pub fn steps(&self) -> Vec<u32> {
        match self.ramp {
            None => vec![self.count],
            Some(Ramp { start, step }) => {
                if step == 0 || start == 0 || start > self.count {
                    return Vec::new();
                }
                let mut v = Vec::new();
                let mut n = start;
                loop {
                    v.push(n);
                    if n >= self.count {
                        break;
                    }
                    n = n.saturating_add(step).min(self.count);
                }
                v
            }
        }
    }
}

fn one() -> u32 {
    1
}
fn yes() -> bool {
    true
}

/// A ramp: how processes are added step by step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ramp {
    /// Processes in the first step (at least 1, at most `count`).
    pub start: u32,
    /// Processes added by each later step (at least 1); the last step stops at `count`.
    pub step: u32,
}

/// Which processes run a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RunBy {
    /// Only process 0 (the first process started), in the step that starts it.
    First,
    /// Every live top-level process that has not paused or exited; with a ramp, at every step.
    #[default]
    All,
    /// The processes started in the current ramp step (without a ramp: all of them).
    EachNew,
    /// No top-level process: only children forked by a `fork` op whose `child_phase` names it.
    Children,
}

/// One `[[phases]]` entry: a named sequence of operations, run by some of the processes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    /// Unique name (used by `fork`'s `child_phase` and in reports).
    pub name: String,
    /// Who runs it. Default `all`.
    #[serde(default)]
    pub run_by: RunBy,
    /// How many times each process runs the ops, in order. At least 1; default 1.
    #[serde(default = "one")]
    pub repeat: u32,
    /// The operations, in order; at least one.
    pub ops: Vec<Op>,
}

/// Which part of a trace a `replay` op runs (docs/traces.md, "Instances").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplayPart {
    /// The whole trace: the process maps the program itself, like an exec.
    #[default]
    All,
    /// Only the exec: the initial regions mapped, and every page of them the trace fetches
    /// from loaded (written), as the loader reads the program's text in.
    Exec,
    /// Everything after the exec: the initial regions are inherited (from a parent that ran
    /// the `exec` part and forked), so their records are skipped.
    AfterExec,
}

impl ReplayPart {
    /// True for [`ReplayPart::All`] (the default, not written out).
    pub fn is_all(&self) -> bool {
        *self == ReplayPart::All
    }
}

/// One operation of a phase: a system call, a burst of memory accesses, or process control.
/// Written as a table whose `op` key names the variant: `{ op = "mmap", name = "heap", size =
/// "64M" }`.
///
/// An op table of the exact layer (raw system-call arguments, `as`, `expect`: see
/// [`crate::exact`]) reads as [`Op::Exact`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    remote = "Self",
    tag = "op",
    rename_all = "snake_case",
    deny_unknown_fields
)]
pub enum Op {
    /// `mmap` an anonymous region and name it.
    Mmap {
        /// Region name, used by later ops of this process (and inherited by forked children).
        name: String,
        /// Length (rounded up to pages); 1 byte to 3G.
        size: Size,
        /// Protection. Default `"rw"`.
        #[serde(default = "default_prot")]
        prot: Prot,
        /// `MAP_SHARED` (shared with children after fork) instead of `MAP_PRIVATE`. Default
        /// false.
        #[serde(default)]
        shared: bool,
        /// `MAP_FIXED` at this page-aligned user address. Default: the kernel chooses.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fixed_at: Option<u32>,
        /// `MAP_POPULATE`: fault every page in now. Default false.
        #[serde(default)]
        populate: bool,
    },
    /// `munmap` all or part of a region.
    Munmap {
        /// Region name.
        region: String,
        /// Start, from the region's start (page-aligned). Default 0.
        #[serde(default)]
        offset: Size,
        /// Length. Default: to the end of the region.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size: Option<Size>,
    },
    /// `mprotect` all or part of a region.
    Mprotect {
        /// Region name.
        region: String,
        /// New protection.
        prot: Prot,
        /// Start, from the region's start (page-aligned). Default 0.
        #[serde(default)]
        offset: Size,
        /// Length. Default: to the end of the region.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size: Option<Size>,
    },
    /// `mremap` a region to a new size.
    Mremap {
        /// Region name (keeps naming the region after a move).
        region: String,
        /// New length; 1 byte to 3G.
        size: Size,
        /// `MREMAP_MAYMOVE`. Default true.
        #[serde(default = "yes")]
        may_move: bool,
    },
    /// Grow or shrink the heap with `brk`.
    Brk {
        /// Bytes to add (negative: remove), e.g. `"1M"` or `"-512K"`.
        grow: SignedSize,
    },
    /// `shmget` a SysV shared memory segment.
    Shmget {
        /// The IPC key (the segment's name in the workload).
        key: i32,
        /// Segment size; 1 byte to 3G.
        size: Size,
        /// `IPC_CREAT`. Default true.
        #[serde(default = "yes")]
        create: bool,
    },
    /// `shmat` a segment and name the mapping.
    Shmat {
        /// The IPC key of a segment created by an earlier `shmget`.
        key: i32,
        /// Region name for the attached mapping.
        name: String,
        /// `SHM_RDONLY`. Default false.
        #[serde(default)]
        readonly: bool,
    },
    /// `shmdt` a mapping made by `shmat`.
    Shmdt {
        /// Region name given to `shmat`.
        region: String,
    },
    /// `shmctl(IPC_RMID)`: the segment goes away when its last attachment does.
    ShmRmid {
        /// The IPC key.
        key: i32,
    },
    /// User-mode memory accesses to a region, through the MMU.
    Touch {
        /// Region name.
        region: String,
        /// Which pages, in which order. Default `"sequential"`.
        #[serde(default)]
        pattern: Pattern,
        /// Write (true) or read (false). Default false.
        #[serde(default)]
        write: bool,
        /// Number of accesses. Default: one per page of the touched range.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        count: Option<u64>,
        /// Writes leave a data stamp (writer, offset, generation); reads check the stamp the last
        /// writer left (or zeros). Default true.
        #[serde(default = "yes")]
        stamp: bool,
        /// Start of the touched range, from the region's start. Default 0.
        #[serde(default)]
        offset: Size,
        /// Length of the touched range. Default: to the end of the region.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size: Option<Size>,
        /// Fault the range in through the kernel's populate path first (one pte-page mapping
        /// per 512 or 1024 entries, like `MAP_POPULATE`), then make the user accesses on one
        /// page per pte page only: the same page tables and memory in a fraction of the host
        /// time. Default false: every access is a user access through the MMU.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        populate: bool,
    },
    /// `fork` children; each runs `child_phase` once and exits.
    Fork {
        /// Children to fork, one after another. At least 1; default 1.
        #[serde(default = "one")]
        children: u32,
        /// The phase (with `run_by = "children"`) the children run.
        child_phase: String,
    },
    /// `wait` until every child of this process has exited.
    Wait {},
    /// Stay alive, doing nothing, until the workload ends. Ends the process's phases.
    Pause {},
    /// `exit` now. Ends the process's phases.
    Exit {},
    /// `write()` pages of a file (created if it does not exist; extended as written): each
    /// written page starts with a data stamp, the rest of the page is zeros.
    FileWrite {
        /// File name (one flat namespace shared by every process).
        file: String,
        /// Length of the written range of the file.
        size: Size,
        /// Start of the range in the file (page-aligned). Default 0.
        #[serde(default)]
        offset: Size,
        /// Which pages, in which order. Default `"sequential"`.
        #[serde(default)]
        pattern: Pattern,
        /// Number of page writes. Default: one per page of the range.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        count: Option<u64>,
    },
    /// `read()` pages of a file, checking the stamp each page starts with.
    FileRead {
        /// File name; some `file_write` of the workload must write it.
        file: String,
        /// Start of the range in the file (page-aligned). Default 0.
        #[serde(default)]
        offset: Size,
        /// Length of the range. Default: to the end of the file.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size: Option<Size>,
        /// Which pages, in which order. Default `"sequential"`.
        #[serde(default)]
        pattern: Pattern,
        /// Number of page reads. Default: one per page of the range.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        count: Option<u64>,
    },
    /// `mmap` a file and name the mapping (then `touch` it like any region).
    MmapFile {
        /// Region name.
        name: String,
        /// File name; some `file_write` of the workload must write it.
        file: String,
        /// Start in the file (page-aligned). Default 0.
        #[serde(default)]
        offset: Size,
        /// Length of the mapping. Default: from `offset` to the end of the file.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size: Option<Size>,
        /// Protection. Default `"rw"`.
        #[serde(default = "default_prot")]
        prot: Prot,
        /// `MAP_SHARED` (writes reach the file) or `MAP_PRIVATE` (writes copy). Default true.
        #[serde(default = "yes")]
        shared: bool,
        /// `MAP_POPULATE`. Default false.
        #[serde(default)]
        populate: bool,
    },
    /// `msync(MS_SYNC)` a file mapping: write its dirty pages back.
    Msync {
        /// Region name given to `mmap_file`.
        region: String,
    },
    /// `fsync` a file: write its dirty page-cache pages back.
    Fsync {
        /// File name.
        file: String,
    },
    /// `unlink` a file: its pages go when the last descriptor and mapping do.
    Unlink {
        /// File name.
        file: String,
    },
    /// A seeded random mix of system calls and accesses (the `churn` generator).
    Random {
        /// Number of operations.
        ops: u64,
        /// Relative weights of the kinds of operation. Default: [`Mix::default`].
        #[serde(default)]
        mix: Mix,
        /// Largest region a random `mmap`, `mremap` or `shmget` makes. Default `"1M"`.
        #[serde(default = "default_max_size")]
        max_size: Size,
    },
    /// Replay a page trace of a real program (PGT1, `.pgt` or `.pgt.zst`; docs/traces.md):
    /// its initial regions become mappings, its system calls go through the kernel at the
    /// recorded (folded) addresses, and every access goes through the MMU.
    Replay {
        /// Path of the trace file (relative paths: from the current directory).
        trace: String,
        /// Which part of the trace: `"all"` (default), `"exec"` (only what exec does: the
        /// initial regions mapped and their fetched pages loaded, for a parent that then
        /// forks the instances) or `"after_exec"` (the rest, in a child that inherited them).
        #[serde(default, skip_serializing_if = "ReplayPart::is_all")]
        part: ReplayPart,
    },
    /// An op of the exact layer: a system call with raw arguments, an access at an address,
    /// a `/proc` view.
    #[serde(skip)]
    Exact(Box<crate::exact::ExactOp>),
}

impl Serialize for Op {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Op::Exact(e) => e.serialize(s),
            other => Op::serialize(other, s),
        }
    }
}

impl<'de> Deserialize<'de> for Op {
    /// An exact-layer table becomes [`Op::Exact`]; any other is a convenient op.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = toml::Value::deserialize(d)?;
        if crate::exact::is_exact(&v) {
            crate::exact::ExactOp::from_value(v)
                .map(|e| Op::Exact(Box::new(e)))
                .map_err(|e| de::Error::custom(e.message()))
        } else {
            Op::deserialize(v).map_err(|e| de::Error::custom(e.message()))
        }
    }
}

fn default_max_size() -> Size {
    Size(MB)
}

impl Op {
    /// The phase a `fork` (convenient or exact) runs in its children.
    pub fn child_phase(&self) -> Option<&str> {
        match self {
            Op::Fork { child_phase, .. } => Some(child_phase),
            Op::Exact(e) => match &e.call {
                crate::exact::Call::Fork { child_phase } => Some(child_phase),
                _ => None,
            },
            _ => None,
        }
    }

    /// The `op` name as written in files.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Mmap { .. } => "mmap",
            Op::Munmap { .. } => "munmap",
            Op::Mprotect { .. } => "mprotect",
            Op::Mremap { .. } => "mremap",
            Op::Brk { .. } => "brk",
            Op::Shmget { .. } => "shmget",
            Op::Shmat { .. } => "shmat",
            Op::Shmdt { .. } => "shmdt",
            Op::ShmRmid { .. } => "shm_rmid",
            Op::Touch { .. } => "touch",
            Op::Fork { .. } => "fork",
            Op::Wait {} => "wait",
            Op::Pause {} => "pause",
            Op::Exit {} => "exit",
            Op::Random { .. } => "random",
            Op::FileWrite { .. } => "file_write",
            Op::FileRead { .. } => "file_read",
            Op::MmapFile { .. } => "mmap_file",
            Op::Msync { .. } => "msync",
            Op::Fsync { .. } => "fsync",
            Op::Unlink { .. } => "unlink",
            Op::Replay { .. } => "replay",
            Op::Exact(e) => e.call.kind(),
        }
    }
}

/// Which pages a `touch` visits, in which order. Every random choice comes from the machine
/// seed.
///
/// In files: a string for the patterns without parameters (`"sequential"`, `"random"`), a table
/// with a `kind` key otherwise (`{ kind = "strided", stride = "8K" }`, `{ kind = "hot_cold",
/// hot_fraction = 0.1, hot_weight = 0.9 }`). The table form is accepted for every kind.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Pattern {
    /// Page after page from the start, wrapping around.
    #[default]
    Sequential,
    /// Uniformly random pages (with replacement).
    Random,
    /// Every `stride` bytes from the start, wrapping around with a one-page shift.
    Strided {
        /// Distance between accesses; at least 1 byte.
        stride: Size,
    },
    /// A hot set (the first `hot_fraction` of the pages) gets `hot_weight` of the accesses,
    /// uniformly; the cold rest gets the remainder.
    HotCold {
        /// Fraction of the pages that are hot: more than 0, at most 1.
        hot_fraction: f64,
        /// Probability that an access goes to the hot set: 0 to 1.
        hot_weight: f64,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum PatternTable {
    Sequential {},
    Random {},
    Strided { stride: Size },
    HotCold { hot_fraction: f64, hot_weight: f64 },
}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            Pattern::Sequential => s.serialize_str("sequential"),
            Pattern::Random => s.serialize_str("random"),
            Pattern::Strided { stride } => PatternTable::Strided { stride }.serialize(s),
            Pattern::HotCold {
                hot_fraction,
                hot_weight,
            } => PatternTable::HotCold {
                hot_fraction,
                hot_weight,
            }
            .serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Pattern;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a pattern: \"sequential\", \"random\", or a table such as { kind = \"strided\", stride = \"8K\" } or { kind = \"hot_cold\", hot_fraction = 0.1, hot_weight = 0.9 }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Pattern, E> {
                match v {
                    "sequential" => Ok(Pattern::Sequential),
                    "random" => Ok(Pattern::Random),
                    _ => Err(E::invalid_value(Unexpected::Str(v), &self)),
                }
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Pattern, A::Error> {
                let t = PatternTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(match t {
                    PatternTable::Sequential {} => Pattern::Sequential,
                    PatternTable::Random {} => Pattern::Random,
                    PatternTable::Strided { stride } => Pattern::Strided { stride },
                    PatternTable::HotCold {
                        hot_fraction,
                        hot_weight,
                    } => Pattern::HotCold {
                        hot_fraction,
                        hot_weight,
                    },
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// Relative weights of the operations of a `random` op (the churn mix). Each weight is a whole
/// number; an operation is drawn with probability weight / sum. At least one weight must be
/// above 0.
///
/// What each kind does: `mmap` maps a new anonymous region (private or shared, random size up
/// to `max_size`); `munmap`, `mprotect` and `mremap` pick one of the process's regions and a
/// random page range of it; `brk` grows or shrinks the heap by up to `max_size`; `shm` creates,
/// attaches, detaches or removes a SysV segment; `fork` forks a child that runs up to 16 random
/// ops of its own (never forking) and exits, while the parent waits for it; `exit` ends the
/// process, which a fresh process (new mm) replaces for the remaining ops; `read` and `write`
/// access a random page of a random region, writes leaving data stamps and reads checking them;
/// `file` creates a small file, `write()`s or `read()`s one of its pages (stamped and checked),
/// maps it shared or private, `msync`s or `fsync`s it, or closes and unlinks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Mix {
    /// Default 10.
    pub mmap: u32,
    /// Default 8.
    pub munmap: u32,
    /// Default 6.
    pub mprotect: u32,
    /// Default 4.
    pub mremap: u32,
    /// Default 4.
    pub brk: u32,
    /// Default 4.
    pub shm: u32,
    /// Default 2.
    pub fork: u32,
    /// Default 1.
    pub exit: u32,
    /// Default 30.
    pub read: u32,
    /// Default 30.
    pub write: u32,
    /// Default 6.
    pub file: u32,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            mmap: 10,
            munmap: 8,
            mprotect: 6,
            mremap: 4,
            brk: 4,
            shm: 4,
            fork: 2,
            exit: 1,
            read: 30,
            write: 30,
            file: 6,
        }
    }
}

impl Mix {
    /// The weights with their names, in file order.
    pub fn weights(&self) -> [(&'static str, u32); 11] {
        [
            ("mmap", self.mmap),
            ("munmap", self.munmap),
            ("mprotect", self.mprotect),
            ("mremap", self.mremap),
            ("brk", self.brk),
            ("shm", self.shm),
            ("fork", self.fork),
            ("exit", self.exit),
            ("read", self.read),
            ("write", self.write),
            ("file", self.file),
        ]
    }
    /// The sum of the weights.
    pub fn total(&self) -> u64 {
        self.weights().iter().map(|&(_, w)| u64::from(w)).sum()
    }
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

/// One step of the path to a key in the file: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathSeg {
    /// A key of a table.
    Key(String),
    /// An element of an array (0-based).
    Index(usize),
}

/// Renders a path the way the error messages do: `phases[1].ops[0].size`.
pub fn display_path(path: &[PathSeg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            PathSeg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            PathSeg::Index(i) => {
                s.push_str(&format!("[{i}]"));
            }
        }
    }
    s
}

/// A value that parsed but is impossible: where it is, what is wrong, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Path of the offending key (or of the table missing it).
    pub path: Vec<PathSeg>,
    /// What is wrong and what was expected.
    pub message: String,
    /// How to fix it.
    pub hint: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} (hint: {})",
            display_path(&self.path),
            self.message,
            self.hint
        )
    }
}

pub(crate) struct Checker {
    problems: Vec<Problem>,
}

fn key(k: &str) -> PathSeg {
    PathSeg::Key(k.to_string())
}

impl Checker {
    pub(crate) fn push(
        &mut self,
        path: Vec<PathSeg>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.problems.push(Problem {
            path,
            message: message.into(),
            hint: hint.into(),
        });
    }
}

pub(crate) fn with(path: &[PathSeg], k: &str) -> Vec<PathSeg> {
    let mut p = path.to_vec();
    p.push(key(k));
    p
}

/// What validation knows about a named region at a point of a phase sequence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum RegionKind {
    Mmap(u64),
    Shm(Option<u64>),
    /// A file mapping (length known if the op gave one).
    File(Option<u64>),
}

#[derive(Clone, Default)]
struct Scope {
    regions: BTreeMap<String, RegionKind>,
    keys: BTreeMap<i32, Option<u64>>,
    /// Names bound by `as` in the exact layer.
    names: BTreeSet<String>,
}

fn suggest_variant(ram: u64) -> String {
    let can: Vec<String> = MemoryVariant::ALL
        .into_iter()
        .filter(|v| v.max_usable_ram() >= ram)
        .map(|v| format!("\"{}\"", v.name()))
        .collect();
    if can.is_empty() {
        "no configuration addresses that much; use at most ram = \"64G\"".to_string()
    } else {
        format!(
            "config {} can address {}; or lower ram",
            can.join(" or "),
            DisplaySize(ram)
        )
    }
}

impl WorkloadSpec {
    /// Checks every value; returns the problems in file order (roughly), or `Ok` if there are
    /// none. Never panics.
    pub fn validate(&self) -> Result<(), Vec<Problem>> {
        let mut c = Checker {
            problems: Vec::new(),
        };
        if self.name.trim().is_empty() {
            c.push(
                vec![key("name")],
                "the workload name is empty",
                "give it a short name, e.g. name = \"mytest\"",
            );
        }
        self.check_machine(&mut c);
        self.check_processes(&mut c);
        self.check_phases(&mut c);
        if c.problems.is_empty() {
            // The whole against the machine, once every value is known to be sound.
            c.problems.extend(crate::limits::check(self));
        }
        if c.problems.is_empty() {
            Ok(())
        } else {
            Err(c.problems)
        }
    }

    fn check_machine(&self, c: &mut Checker) {
        let m = &self.machine;
        let p = vec![key("machine")];
        let variant = m.variant();
        if variant.is_none() {
            c.push(
                with(&p, "config"),
                format!(
                    "unknown memory configuration \"{}\"; expected one of: nohighmem, 4g, 4g-highpte, 64g, 64g-highpte",
                    m.config
                ),
                "use config = \"64g-highpte\" for a PAE machine with highpte, or \"64g\" to see the problem it solves",
            );
        }
        if m.cpus == 0 || m.cpus > MAX_CPUS {
            c.push(
                with(&p, "cpus"),
                format!(
                    "cpus = {} is out of range; expected 1 (UP) to {MAX_CPUS}",
                    m.cpus
                ),
                "use e.g. cpus = 4",
            );
        }
        let ram = m.ram.0;
        if !(MIN_RAM..=MAX_RAM).contains(&ram) {
            c.push(
                with(&p, "ram"),
                format!(
                    "ram = \"{}\" is out of range; expected 16M to 64G (36-bit physical addresses)",
                    m.ram
                ),
                if ram > MAX_RAM {
                    "no configuration addresses more than 64G; use at most ram = \"64G\" with config = \"64g\" or \"64g-highpte\"".to_string()
                } else {
                    "use at least ram = \"16M\" (the DMA zone alone is 16M)".to_string()
                },
            );
        } else if !ram.is_multiple_of(PAGE_SIZE) {
            c.push(
                with(&p, "ram"),
                format!("ram = {ram} is not a whole number of 4K pages"),
                "round it to a multiple of 4K, or use a suffix such as \"512M\"",
            );
        } else if let Some(v) = variant {
            if ram > v.max_usable_ram() {
                c.push(
                    with(&p, "ram"),
                    format!(
                        "ram = \"{}\" is more than config \"{}\" can address ({} at most)",
                        m.ram,
                        v.name(),
                        DisplaySize(v.max_usable_ram())
                    ),
                    suggest_variant(ram),
                );
            }
        }
        if let Some(s) = &m.strategy {
            if !STRATEGIES.contains(&s.as_str()) {
                c.push(
                    with(&p, "strategy"),
                    format!("unknown strategy \"{s}\"; expected one of: lowmem, atomic, persistent"),
                    "remove the key to use the config's default (atomic with -highpte configs, lowmem otherwise)",
                );
            }
        }
        if m.swap.0 > MAX_SWAP {
            c.push(
                with(&p, "swap"),
                format!(
                    "swap = \"{}\" is too big; at most 64G (2^24 slots of 4 KB)",
                    m.swap
                ),
                "use e.g. swap = \"8G\", or 0 for no swap",
            );
        }
        if let Some(s) = &m.reclaim {
            if !RECLAIMS.contains(&s.as_str()) {
                c.push(
                    with(&p, "reclaim"),
                    format!("unknown reclaim design \"{s}\"; expected one of: scan, rmap"),
                    "remove the key to use the default (scan)",
                );
            }
        }
        if let Some(s) = &m.pt_alloc {
            if !PT_ALLOCS.contains(&s.as_str()) {
                c.push(
                    with(&p, "pt_alloc"),
                    format!(
                        "unknown page-table allocator \"{s}\"; expected one of: pool, quicklist, buddy"
                    ),
                    "remove the key to use the default (pool)",
                );
            }
        }
    }

    fn check_processes(&self, c: &mut Checker) {
        let p = vec![key("processes")];
        let n = self.processes.count;
        if n == 0 {
            c.push(
                with(&p, "count"),
                "count = 0; expected at least 1 process",
                "use count = 1 or more",
            );
        } else if n > MAX_PROCESSES {
            c.push(
                with(&p, "count"),
                format!("count = {n} is more than the {MAX_PROCESSES} pids Linux 2.5 has"),
                format!("use count = {MAX_PROCESSES} or fewer"),
            );
        }
        if let Some(r) = self.processes.ramp {
            let rp = with(&p, "ramp");
            if r.start == 0 {
                c.push(
                    with(&rp, "start"),
                    "start = 0; expected at least 1 process in the first step",
                    "use e.g. ramp = { start = 100, step = 100 }",
                );
            } else if r.start > n {
                c.push(
                    with(&rp, "start"),
                    format!("start = {} is more than processes.count = {n}", r.start),
                    "make start at most count (count is the ramp's target)",
                );
            }
            if r.step == 0 {
                c.push(
                    with(&rp, "step"),
                    "step = 0; expected at least 1 process per step",
                    "use e.g. step = 100",
                );
            }
        }
    }

    fn check_phases(&self, c: &mut Checker) {
        if self.phases.is_empty() {
            c.push(
                vec![key("phases")],
                "the workload has no phases; expected at least one [[phases]] table",
                "add a [[phases]] table with a name and ops, see workloads/README.md",
            );
            return;
        }
        let mut index: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, ph) in self.phases.iter().enumerate() {
            let p = vec![key("phases"), PathSeg::Index(i)];
            if ph.name.trim().is_empty() {
                c.push(
                    with(&p, "name"),
                    "the phase name is empty",
                    "name every phase, e.g. name = \"setup\"",
                );
            } else if index.insert(ph.name.as_str(), i).is_some() {
                c.push(
                    with(&p, "name"),
                    format!("a phase named \"{}\" already exists", ph.name),
                    "give every phase its own name",
                );
            }
            if ph.repeat == 0 {
                c.push(
                    with(&p, "repeat"),
                    "repeat = 0; expected at least 1",
                    "use repeat = 1 (the default) or remove the phase",
                );
            }
            if ph.ops.is_empty() {
                c.push(
                    with(&p, "ops"),
                    "the phase has no ops; expected at least one",
                    "add ops, e.g. ops = [ { op = \"pause\" } ]",
                );
            }
        }
        if self.phases.iter().all(|p| p.run_by == RunBy::Children) {
            c.push(
                vec![key("phases"), PathSeg::Index(0), key("run_by")],
                "every phase is run_by = \"children\", so no process runs anything",
                "make at least one phase run_by = \"first\", \"all\" or \"each_new\"",
            );
        }
        // Static checks of every op, then the name-flow checks along the top-level sequence.
        for (i, ph) in self.phases.iter().enumerate() {
            for (j, op) in ph.ops.iter().enumerate() {
                let p = vec![
                    key("phases"),
                    PathSeg::Index(i),
                    key("ops"),
                    PathSeg::Index(j),
                ];
                check_op_values(op, &p, c);
                if let Some(child_phase) = op.child_phase() {
                    match index.get(child_phase) {
                        None => c.push(
                            with(&p, "child_phase"),
                            format!("fork names child_phase \"{child_phase}\", but no phase has that name"),
                            format!(
                                "use one of the phase names ({}) or add a [[phases]] table named \"{child_phase}\" with run_by = \"children\"",
                                self.phases.iter().map(|p| format!("\"{}\"", p.name)).collect::<Vec<_>>().join(", ")
                            ),
                        ),
                        Some(&k) if self.phases[k].run_by != RunBy::Children => c.push(
                            with(&p, "child_phase"),
                            format!(
                                "child_phase \"{child_phase}\" is run_by = \"{}\"; a child phase must be run_by = \"children\"",
                                run_by_name(self.phases[k].run_by)
                            ),
                            format!("set run_by = \"children\" in phase \"{child_phase}\" so that top-level processes do not run it too"),
                        ),
                        _ => {}
                    }
                }
            }
        }
        self.check_files(c);
        // Process 0 runs every top-level phase; the other processes all but the `first` ones.
        // Region names belong to each process; shm keys are global (phases are barriers, so
        // process 0's segments exist when the others get there).
        let mut scope = Scope::default();
        let mut stack = Vec::new();
        for (i, ph) in self.phases.iter().enumerate() {
            if ph.run_by != RunBy::Children {
                self.flow_phase(i, &mut scope, &mut stack, &index, c);
            }
        }
        if self.processes.count > 1 {
            let mut others = Scope {
                regions: BTreeMap::new(),
                keys: scope.keys.clone(),
                names: BTreeSet::new(),
            };
            let before = c.problems.len();
            for (i, ph) in self.phases.iter().enumerate() {
                if matches!(ph.run_by, RunBy::All | RunBy::EachNew) {
                    self.flow_phase(i, &mut others, &mut stack, &index, c);
                }
            }
            // Keep only what process 0's walk did not already report.
            let (first, rest) = c.problems.split_at(before);
            let new: Vec<Problem> = rest
                .iter()
                .filter(|p| !first.contains(p))
                .map(|p| Problem {
                    message: format!(
                        "{} (in processes other than process 0, which do not run the run_by = \"first\" phases)",
                        p.message
                    ),
                    ..p.clone()
                })
                .collect();
            c.problems.truncate(before);
            c.problems.extend(new);
        }
        // Child phases no fork names: check them with what the top-level sequence defined.
        let forked: BTreeSet<&str> = self.all_ops().filter_map(Op::child_phase).collect();
        for (i, ph) in self.phases.iter().enumerate() {
            if ph.run_by == RunBy::Children && !forked.contains(ph.name.as_str()) {
                let mut s = scope.clone();
                self.flow_phase(i, &mut s, &mut stack, &index, c);
            }
        }
    }

    /// Every op of every phase, in file order.
    fn all_ops(&self) -> impl Iterator<Item = &Op> {
        self.phases.iter().flat_map(|p| p.ops.iter())
    }

    /// Files are one namespace shared by every process: a file read, mapped, synced or
    /// unlinked must be written by some `file_write` of the workload.
    fn check_files(&self, c: &mut Checker) {
        let written: BTreeSet<&str> = self
            .all_ops()
            .filter_map(|op| match op {
                Op::FileWrite { file, .. } => Some(file.as_str()),
                _ => None,
            })
            .collect();
        for (i, ph) in self.phases.iter().enumerate() {
            for (j, op) in ph.ops.iter().enumerate() {
                let file = match op {
                    Op::FileRead { file, .. }
                    | Op::MmapFile { file, .. }
                    | Op::Fsync { file }
                    | Op::Unlink { file } => file,
                    _ => continue,
                };
                if file_name_problem(file).is_some() || written.contains(file.as_str()) {
                    continue;
                }
                let p = vec![
                    key("phases"),
                    PathSeg::Index(i),
                    key("ops"),
                    PathSeg::Index(j),
                    key("file"),
                ];
                c.push(
                    p,
                    format!("file \"{file}\" is never written: no file_write op of the workload names it"),
                    if written.is_empty() {
                        format!("create it first with {{ op = \"file_write\", file = \"{file}\", size = ... }}")
                    } else {
                        format!(
                            "files the workload writes: {}; or add {{ op = \"file_write\", file = \"{file}\", size = ... }}",
                            written.iter().map(|f| format!("\"{f}\"")).collect::<Vec<_>>().join(", ")
                        )
                    },
                );
            }
        }
    }

    /// Walks phase `i` in order, defining and using region names and shm keys.
    fn flow_phase(
        &self,
        i: usize,
        scope: &mut Scope,
        stack: &mut Vec<usize>,
        index: &BTreeMap<&str, usize>,
        c: &mut Checker,
    ) {
        if stack.contains(&i) || stack.len() > 16 {
            return;
        }
        stack.push(i);
        let ph = &self.phases[i];
        for (j, op) in ph.ops.iter().enumerate() {
            let p = vec![
                key("phases"),
                PathSeg::Index(i),
                key("ops"),
                PathSeg::Index(j),
            ];
            let use_region = |scope: &Scope, c: &mut Checker, region: &str| -> Option<RegionKind> {
                let r = scope.regions.get(region).copied();
                if r.is_none() {
                    let known: Vec<String> =
                        scope.regions.keys().map(|k| format!("\"{k}\"")).collect();
                    c.push(
                        with(&p, "region"),
                        format!("region \"{region}\" is used before it is defined"),
                        if known.is_empty() {
                            format!("define it first with {{ op = \"mmap\", name = \"{region}\", size = ... }} or {{ op = \"shmat\", key = ..., name = \"{region}\" }}")
                        } else {
                            format!(
                                "regions defined at this point: {}; or define \"{region}\" first with an mmap or shmat op",
                                known.join(", ")
                            )
                        },
                    );
                }
                r
            };
            let region_len = |r: Option<RegionKind>| match r {
                Some(RegionKind::Mmap(n))
                | Some(RegionKind::Shm(Some(n)))
                | Some(RegionKind::File(Some(n))) => Some(n),
                _ => None,
            };
            match op {
                Op::Mmap { name, size, .. } => {
                    scope.regions.insert(name.clone(), RegionKind::Mmap(size.0));
                }
                Op::Munmap {
                    region,
                    offset,
                    size,
                } => {
                    let r = use_region(scope, c, region);
                    check_range(region_len(r), *offset, *size, &p, c);
                    crate::exact::check::after_munmap(&mut scope.regions, region, offset.0, size.map(|s| s.0));
                }
                Op::Mprotect {
                    region,
                    offset,
                    size,
                    ..
                } => {
                    let r = use_region(scope, c, region);
                    check_range(region_len(r), *offset, *size, &p, c);
                }
                Op::Touch {
                    region,
                    offset,
                    size,
                    ..
                } => {
                    let r = use_region(scope, c, region);
                    check_range(region_len(r), *offset, *size, &p, c);
                }
                Op::Mremap { region, size, .. } => {
                    if let Some(RegionKind::Mmap(_)) = use_region(scope, c, region) {
                        scope
                            .regions
                            .insert(region.clone(), RegionKind::Mmap(size.0));
                    }
                }
                Op::Shmget {
                    key: k,
                    size,
                    create,
                } => {
                    if *create || !scope.keys.contains_key(k) {
                        scope.keys.insert(*k, Some(size.0));
                    }
                }
                Op::Shmat { key: k, name, .. } => {
                    if !scope.keys.contains_key(k) {
                        c.push(
                            with(&p, "key"),
                            format!("shm key {k} is attached before any shmget creates it"),
                            format!("add {{ op = \"shmget\", key = {k}, size = ... }} in this or an earlier phase"),
                        );
                    }
                    let len = scope.keys.get(k).copied().flatten();
                    scope.regions.insert(name.clone(), RegionKind::Shm(len));
                }
                Op::Shmdt { region } => {
                    if let Some(RegionKind::Mmap(_)) = use_region(scope, c, region) {
                        c.push(
                            with(&p, "region"),
                            format!("region \"{region}\" was made by mmap; shmdt detaches shmat regions"),
                            "use { op = \"munmap\", region = ... } for mmap regions",
                        );
                    }
                }
                Op::ShmRmid { key: k } => {
                    if !scope.keys.contains_key(k) {
                        c.push(
                            with(&p, "key"),
                            format!("shm key {k} is removed before any shmget creates it"),
                            format!("add {{ op = \"shmget\", key = {k}, size = ... }} earlier"),
                        );
                    }
                }
                Op::Exact(e) => {
                    let defined = |n: &str| {
                        scope.regions.contains_key(n) || scope.names.contains(n)
                    };
                    crate::exact::check::names(e, &p, &defined, c);
                    // the child is a copy from before fork returns: it has not the pid bound
                    if let Some(&k) = op.child_phase().and_then(|cp| index.get(cp)) {
                        if self.phases[k].run_by == RunBy::Children {
                            let mut child = scope.clone();
                            self.flow_phase(k, &mut child, stack, index, c);
                        }
                    }
                    if let Some(b) = &e.bind {
                        scope.names.insert(b.clone());
                    }
                }
                Op::Fork { child_phase, .. } => {
                    if let Some(&k) = index.get(child_phase.as_str()) {
                        if self.phases[k].run_by == RunBy::Children {
                            let mut child = scope.clone();
                            self.flow_phase(k, &mut child, stack, index, c);
                        }
                    }
                }
                Op::MmapFile { name, size, .. } => {
                    scope
                        .regions
                        .insert(name.clone(), RegionKind::File(size.map(|s| s.0)));
                }
                Op::Msync { region } => match use_region(scope, c, region) {
                    Some(RegionKind::File(_)) | None => {}
                    Some(_) => c.push(
                        with(&p, "region"),
                        format!("region \"{region}\" is not a file mapping; msync writes back the pages of a file mapped by mmap_file"),
                        "name a region made by { op = \"mmap_file\", ... }",
                    ),
                },
                Op::Brk { .. }
                | Op::Wait {}
                | Op::Pause {}
                | Op::Exit {}
                | Op::Random { .. }
                | Op::FileWrite { .. }
                | Op::FileRead { .. }
                | Op::Fsync { .. }
                | Op::Unlink { .. }
                | Op::Replay { .. } => {}
            }
        }
        stack.pop();
    }
}

fn run_by_name(r: RunBy) -> &'static str {
    match r {
        RunBy::First => "first",
        RunBy::All => "all",
        RunBy::EachNew => "each_new",
        RunBy::Children => "children",
    }
}

fn check_range(len: Option<u64>, offset: Size, size: Option<Size>, p: &[PathSeg], c: &mut Checker) {
    if !offset.0.is_multiple_of(PAGE_SIZE) {
        c.push(
            with(p, "offset"),
            format!(
                "offset = {} is not page-aligned; expected a multiple of 4K",
                offset.0
            ),
            "use an offset such as \"4K\" or \"1M\"",
        );
        return;
    }
    if let Some(s) = size {
        if s.0 == 0 {
            c.push(
                with(p, "size"),
                "size = 0; expected at least 1 byte",
                "remove size to cover the rest of the region",
            );
            return;
        }
    }
    let Some(len) = len else { return };
    let len = len.div_ceil(PAGE_SIZE) * PAGE_SIZE;
    if offset.0 >= len {
        c.push(
            with(p, "offset"),
            format!(
                "offset {} is past the end of the region ({})",
                offset,
                DisplaySize(len)
            ),
            "use an offset inside the region",
        );
    } else if let Some(s) = size {
        if s.0 > len - offset.0 {
            c.push(
                with(p, "size"),
                format!(
                    "offset {} + size {} runs past the end of the region ({})",
                    offset,
                    s,
                    DisplaySize(len)
                ),
                "shrink size, or remove it to cover the rest of the region",
            );
        }
    }
}

fn check_map_size(size: Size, p: &[PathSeg], what: &str, c: &mut Checker) {
    if size.0 == 0 {
        c.push(
            with(p, "size"),
            format!("{what} size = 0; expected 1 byte to 3G"),
            "use a size such as \"64M\"",
        );
    } else if size.0 > USER_SPACE {
        c.push(
            with(p, "size"),
            format!(
                "{what} size = \"{size}\" is larger than the 3G user address space (0xC0000000 bytes)"
            ),
            "a process can map at most 3G (the kernel owns the top 1G); use a smaller size, or several processes",
        );
    }
}

/// The largest file: page indexes are 32 bits in this kernel (`MAX_FILE_BYTES`).
pub const MAX_FILE: u64 = 1 << 40;

fn file_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("empty file name")
    } else if name.len() > 255 {
        Some("the file name is longer than 255 bytes (NAME_MAX)")
    } else if name.contains(['/', '\0']) {
        Some("the file name contains '/' or a NUL byte; the file system is one flat directory")
    } else {
        None
    }
}

fn check_file_name(name: &str, p: &[PathSeg], c: &mut Checker) {
    if let Some(m) = file_name_problem(name) {
        c.push(
            with(p, "file"),
            m,
            "use a short name such as file = \"data\"",
        );
    }
}

fn check_file_range(offset: Size, size: Option<Size>, p: &[PathSeg], c: &mut Checker) {
    if !offset.0.is_multiple_of(PAGE_SIZE) {
        c.push(
            with(p, "offset"),
            format!(
                "offset = {} is not page-aligned; expected a multiple of 4K",
                offset.0
            ),
            "use an offset such as \"4K\" or \"1M\"",
        );
    }
    if size == Some(Size(0)) {
        c.push(
            with(p, "size"),
            "size = 0; expected at least 1 byte",
            "use a size such as \"64M\"",
        );
    }
    let end = offset.0.saturating_add(size.map_or(0, |s| s.0));
    if end > MAX_FILE {
        c.push(
            with(p, if size.is_some() { "size" } else { "offset" }),
            format!(
                "the range ends at {} bytes, past the largest file (1T)",
                end
            ),
            "keep offset + size at most \"1T\"",
        );
    }
}

fn check_count_pattern(count: Option<u64>, pattern: Pattern, p: &[PathSeg], c: &mut Checker) {
    if count == Some(0) {
        c.push(
            with(p, "count"),
            "count = 0; expected at least 1 access",
            "remove count for one access per page",
        );
    }
    match pattern {
        Pattern::Strided { stride } if stride.0 == 0 => c.push(
            with(p, "pattern"),
            "strided pattern with stride = 0; expected at least 1 byte",
            "use e.g. pattern = { kind = \"strided\", stride = \"8K\" }",
        ),
        Pattern::HotCold {
            hot_fraction,
            hot_weight,
        } => {
            if !(hot_fraction > 0.0 && hot_fraction <= 1.0) {
                c.push(
                            with(p, "pattern"),
                            format!("hot_fraction = {hot_fraction} is out of range; expected more than 0 and at most 1"),
                            "use e.g. hot_fraction = 0.1 (10% of the pages are hot)",
                        );
            }
            if !(0.0..=1.0).contains(&hot_weight) {
                c.push(
                            with(p, "pattern"),
                            format!("hot_weight = {hot_weight} is out of range; expected a probability from 0 to 1"),
                            "use e.g. hot_weight = 0.9 (90% of the accesses go to the hot pages)",
                        );
            }
        }
        _ => {}
    }
}

fn check_op_values(op: &Op, p: &[PathSeg], c: &mut Checker) {
    let check_name = |name: &str, k: &str, c: &mut Checker| {
        if name.trim().is_empty() {
            c.push(
                with(p, k),
                "empty region name",
                "name the region, e.g. name = \"heap\"",
            );
        }
    };
    match op {
        Op::Mmap {
            name,
            size,
            fixed_at,
            ..
        } => {
            check_name(name, "name", c);
            check_map_size(*size, p, "mmap", c);
            if let Some(a) = *fixed_at {
                let a = u64::from(a);
                if !a.is_multiple_of(PAGE_SIZE) {
                    c.push(
                        with(p, "fixed_at"),
                        format!("fixed_at = {a:#x} is not page-aligned"),
                        "use a multiple of 0x1000, e.g. fixed_at = 0x40000000",
                    );
                } else if a == 0 || a.saturating_add(size.0) > USER_SPACE {
                    c.push(
                        with(p, "fixed_at"),
                        format!(
                            "fixed_at = {a:#x} with size \"{size}\" does not fit in user space (0x1000 to 0xC0000000)"
                        ),
                        "choose an address so that fixed_at + size <= 0xC0000000, or remove fixed_at",
                    );
                }
            }
        }
        Op::Mremap { size, .. } => check_map_size(*size, p, "mremap", c),
        Op::Shmget { size, .. } => check_map_size(*size, p, "shmget", c),
        Op::Shmat { name, .. } => check_name(name, "name", c),
        Op::Brk { grow } => {
            if grow.0.unsigned_abs() > USER_SPACE {
                c.push(
                    with(p, "grow"),
                    format!("brk grow = \"{grow}\" is larger than the 3G user address space"),
                    "use a smaller change, e.g. grow = \"1M\" or \"-512K\"",
                );
            }
        }
        Op::Touch { count, pattern, .. } => check_count_pattern(*count, *pattern, p, c),
        Op::Fork { children, .. } => {
            if *children == 0 {
                c.push(
                    with(p, "children"),
                    "children = 0; expected at least 1",
                    "use children = 1 or more",
                );
            } else if *children > MAX_PROCESSES {
                c.push(
                    with(p, "children"),
                    format!(
                        "children = {children} is more than the {MAX_PROCESSES} pids Linux 2.5 has"
                    ),
                    "fork fewer children",
                );
            }
        }
        Op::Random { ops, mix, max_size } => {
            if *ops == 0 {
                c.push(
                    with(p, "ops"),
                    "ops = 0; expected at least 1 random operation",
                    "use e.g. ops = 2000",
                );
            }
            if mix.total() == 0 {
                c.push(
                    with(p, "mix"),
                    "every weight of the mix is 0; expected at least one above 0",
                    "remove mix to use the default weights",
                );
            }
            if max_size.0 < PAGE_SIZE || max_size.0 > USER_SPACE {
                c.push(
                    with(p, "max_size"),
                    format!("max_size = \"{max_size}\" is out of range; expected 4K to 3G"),
                    "use e.g. max_size = \"1M\"",
                );
            }
        }
        Op::FileWrite {
            file,
            size,
            offset,
            count,
            pattern,
        } => {
            check_file_name(file, p, c);
            check_file_range(*offset, Some(*size), p, c);
            check_count_pattern(*count, *pattern, p, c);
        }
        Op::FileRead {
            file,
            offset,
            size,
            count,
            pattern,
        } => {
            check_file_name(file, p, c);
            check_file_range(*offset, *size, p, c);
            check_count_pattern(*count, *pattern, p, c);
        }
        Op::MmapFile {
            name,
            file,
            offset,
            size,
            ..
        } => {
            check_name(name, "name", c);
            check_file_name(file, p, c);
            check_file_range(*offset, None, p, c);
            if let Some(s) = size {
                check_map_size(*s, p, "mmap_file", c);
            }
        }
        Op::Fsync { file } | Op::Unlink { file } => check_file_name(file, p, c),
        Op::Replay { trace, .. } => {
            if trace.trim().is_empty() {
                c.push(
                    with(p, "trace"),
                    "empty trace path",
                    "give the path of a .pgt or .pgt.zst file, e.g. trace = \"sqlite.pgt.zst\"",
                );
            }
        }
        Op::Munmap { .. }
        | Op::Msync { .. }
        | Op::Mprotect { .. }
        | Op::Shmdt { .. }
        | Op::ShmRmid { .. }
        | Op::Wait {}
        | Op::Pause {}
        | Op::Exit {}
        | Op::Exact(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_print() {
        assert_eq!("512M".parse::<Size>().unwrap(), Size(512 * MB));
        assert_eq!(Size(512 * MB).to_string(), "512M");
        assert_eq!(parse_signed_size("-512K"), Some(-512 * 1024));
        assert_eq!(parse_signed_size("+1M"), Some(1 << 20));
        assert_eq!(parse_signed_size("--1M"), None);
        assert_eq!(parse_signed_size("-"), None);
        assert_eq!(SignedSize(-512 * 1024).to_string(), "-512K");
        assert_eq!(parse_signed_size("-8589934592G"), Some(i64::MIN));
        assert_eq!(parse_signed_size("-8589934593G"), None);
        assert_eq!(parse_signed_size("8589934592G"), None);
    }

    #[test]
    fn prot_parses_letters() {
        assert_eq!("rw".parse::<Prot>(), Ok(Prot::RW));
        assert_eq!("wr".parse::<Prot>(), Ok(Prot::RW));
        assert_eq!("none".parse::<Prot>(), Ok(Prot::NONE));
        assert_eq!("rr".parse::<Prot>(), Err(()));
        assert_eq!("".parse::<Prot>(), Err(()));
        assert_eq!("q".parse::<Prot>(), Err(()));
        assert_eq!(
            Prot {
                read: true,
                write: false,
                exec: true
            }
            .to_string(),
            "rx"
        );
    }

    #[test]
    fn ramp_steps() {
        let p = ProcessSpec {
            count: 250,
            ramp: Some(Ramp {
                start: 100,
                step: 100,
            }),
        };
        assert_eq!(p.steps(), vec![100, 200, 250]);
        let p = ProcessSpec {
            count: 7,
            ramp: None,
        };
        assert_eq!(p.steps(), vec![7]);
        let p = ProcessSpec {
            count: 7,
            ramp: Some(Ramp { start: 7, step: 0 }),
        };
        assert!(p.steps().is_empty());
    }

    #[test]
    fn suggests_a_variant_that_addresses_the_ram() {
        assert_eq!(
            suggest_variant(8 * GB),
            "config \"64g\" or \"64g-highpte\" can address 8G; or lower ram"
        );
        assert_eq!(
            suggest_variant(2 * GB),
            "config \"4g\" or \"4g-highpte\" or \"64g\" or \"64g-highpte\" can address 2G; or lower ram"
        );
    }
}
