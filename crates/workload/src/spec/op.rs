//! The operations of a phase ([`Op`]), the page orders of accesses ([`Pattern`]) and the
//! weights of a `random` op ([`Mix`]).

use super::values::default_prot;
use super::{one, yes, Prot, ReplayPart, SignedSize, Size};
use highpte_arch::size::MB;
use serde::de::{self, Unexpected, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

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
        /// After each fork, wait until the child's phase has ended (it paused, exited or was
        /// killed) before the next fork or op: a parent that reads a pipe the child writes
        /// when it is done, as the real-kernel harness of `highpte calibrate` does. Default
        /// false: the children run alongside the parent.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        wait_done: bool,
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
                crate::exact::Call::Fork { child_phase, .. } => Some(child_phase),
                _ => None,
            },
            _ => None,
        }
    }

    /// True if this convenient op returns a value an `expect = { value = ... }` can name:
    /// `mmap`, `mmap_file`, `mremap` and `shmat` return the region's address, `brk` the new
    /// break. (An exact op returns what its system call returns.)
    pub fn returns_value(&self) -> bool {
        matches!(
            self,
            Op::Mmap { .. }
                | Op::MmapFile { .. }
                | Op::Mremap { .. }
                | Op::Shmat { .. }
                | Op::Brk { .. }
        )
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
