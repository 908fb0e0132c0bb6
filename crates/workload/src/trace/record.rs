//! The records of a PGT1 page trace (format: docs/traces.md): page-level accesses and the
//! system calls and initial regions that shape the address space.

/// The kind of one traced memory access (valgrind lackey's `I`, `L`, `S`, `M`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AccessKind {
    /// An instruction fetch.
    Fetch = 0,
    /// A data load.
    Read = 1,
    /// A data store.
    Write = 2,
    /// A read-modify-write of data (one instruction that loads and stores).
    Modify = 3,
}

impl AccessKind {
    /// All kinds, in record-type order.
    pub const ALL: [AccessKind; 4] = [Self::Fetch, Self::Read, Self::Write, Self::Modify];

    /// The name used in reports and JSON (`fetch`, `read`, `write`, `modify`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Fetch => "fetch",
            Self::Read => "read",
            Self::Write => "write",
            Self::Modify => "modify",
        }
    }

    /// True for accesses that may change the page (write, modify).
    pub fn writes(self) -> bool {
        matches!(self, Self::Write | Self::Modify)
    }
}

/// One record of a trace. Addresses are page numbers (`vaddr >> 12`) of the traced program,
/// before any folding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record {
    /// A memory access to one page.
    Access {
        /// What kind of access.
        kind: AccessKind,
        /// The page.
        page: u64,
    },
    /// `mmap` (mmap2 on x86) at the address the traced run got.
    Mmap {
        /// First page.
        start: u64,
        /// Length in pages.
        npages: u64,
        /// Linux `PROT_*` bits.
        prot: u32,
        /// Linux `MAP_*` flags.
        flags: u32,
        /// A file mapping (not `MAP_ANONYMOUS`).
        file: bool,
    },
    /// `munmap`.
    Munmap {
        /// First page.
        start: u64,
        /// Length in pages.
        npages: u64,
    },
    /// `mprotect`.
    Mprotect {
        /// First page.
        start: u64,
        /// Length in pages.
        npages: u64,
        /// Linux `PROT_*` bits.
        prot: u32,
    },
    /// `brk`: the program break after the call, rounded up to a page.
    Brk {
        /// The new break's page.
        new_break: u64,
    },
    /// `mremap`.
    Mremap {
        /// Old first page.
        old: u64,
        /// Old length in pages.
        old_npages: u64,
        /// New first page.
        new: u64,
        /// New length in pages.
        new_npages: u64,
    },
    /// `madvise`.
    Madvise {
        /// First page.
        start: u64,
        /// Length in pages.
        npages: u64,
        /// Linux `MADV_*` value.
        advice: u32,
    },
    /// Pages the loader mapped before the first traced system call (only touched pages,
    /// coalesced).
    Region {
        /// First page.
        start: u64,
        /// Length in pages.
        npages: u64,
    },
}

impl Record {
    /// The name of a non-access record (`mmap`, `brk`, ...), or the access kind's name.
    pub fn name(&self) -> &'static str {
        match self {
            Record::Access { kind, .. } => kind.name(),
            Record::Mmap { .. } => "mmap",
            Record::Munmap { .. } => "munmap",
            Record::Mprotect { .. } => "mprotect",
            Record::Brk { .. } => "brk",
            Record::Mremap { .. } => "mremap",
            Record::Madvise { .. } => "madvise",
            Record::Region { .. } => "region",
        }
    }
}
