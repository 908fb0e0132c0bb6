//! Kernel profiles: which Linux the simulated kernel's boot, allocator and per-process costs
//! follow, and the physical memory map the machine's firmware reports for it.
//!
//! * [`KernelProfile::Linux25`] (the default) is the kernel of the seed: 2.5.5's low-memory
//!   top at 896 MB, 2.4/2.5 zone watermarks, RAM as one range from address 0.
//! * [`KernelProfile::Linux61`] is Debian 12's `linux-image-6.1.*-686-pae` (HIGHMEM64G, PAE,
//!   HIGHPTE) on QEMU's i440fx PC, the kernel `tools/realkernel/` boots: its low-memory top,
//!   boot reservations, watermarks and fork, so that its figures can be held against the
//!   real kernel's (docs/fidelity.md).
//!
//! # The PC memory map ([`RamMap`])
//!
//! QEMU's i440fx PC reports RAM to the kernel (e820) as: the first 639 KB (the top of the
//! first megabyte is the BIOS's), RAM from 1 MB up to the top of memory below 4 GB less
//! 128 KB the BIOS reserves there, and, when the RAM does not fit below the PCI hole, the rest
//! from 4 GB up. With 3.5 GB of RAM or more, 3 GB go below 4 GB (the PCI hole is 3-4 GB).
//! 6.1 then reserves page 0 (`e820: update [mem 0x00000000-0x00000fff] usable ==> reserved`).
//! The 2.5 profile keeps the simpler machine of the first build: all RAM in one range.

use crate::layout::MAXMEM;
use crate::size::{GB, KB, MB};
use core::fmt;
use core::str::FromStr;

/// The Linux a simulated kernel follows where the versions differ.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, Default)]
pub enum KernelProfile {
    /// Linux 2.5.5, the seed's kernel (the default).
    #[default]
    Linux25,
    /// Debian 12's Linux 6.1 686-pae kernel on QEMU's PC.
    Linux61,
}

/// Top of low memory of the 6.1 686-pae kernel: `max_low_pfn` 0x36ffe as its boot log prints
/// it. 6.1 keeps a 128 MB vmalloc reserve below a fixmap and pkmap area larger than 2.5's, so
/// its direct map ends 17 MB below 2.5's 896 MB.
pub const LINUX61_MAXMEM: u64 = 0x36ff_e000;

/// RAM below 4 GB on QEMU's PC when the RAM does not all fit below the PCI hole.
const PC_BELOW_4G: u64 = 3 * GB;
/// From this much RAM on, QEMU's PC puts only [`PC_BELOW_4G`] below 4 GB.
const PC_SPLIT_FROM: u64 = 3 * GB + 512 * MB;
/// The BIOS's reservation at the top of RAM below 4 GB.
const PC_BIOS_TOP: u64 = 128 * KB;
/// End of the usable part of the first megabyte (0x9fc00, rounded down to a page).
const PC_LOW_END: u64 = 0x9f000;
/// Most physical memory 36 address bits reach.
const PHYS_LIMIT: u64 = 64 * GB;

impl KernelProfile {
    /// Both profiles, the default first.
    pub const ALL: [KernelProfile; 2] = [KernelProfile::Linux25, KernelProfile::Linux61];

    /// The name on the command line, in workload files and in reports.
    pub const fn name(self) -> &'static str {
        match self {
            KernelProfile::Linux25 => "2.5",
            KernelProfile::Linux61 => "linux-6.1",
        }
    }

    /// Top of low (directly mapped) memory when RAM reaches it.
    pub const fn maxmem(self) -> u64 {
        match self {
            KernelProfile::Linux25 => MAXMEM,
            KernelProfile::Linux61 => LINUX61_MAXMEM,
        }
    }

    /// The usable RAM ranges the firmware reports for `ram` bytes of RAM (before the kernel
    /// clips them to what its memory configuration addresses).
    pub fn ram_map(self, ram: u64) -> RamMap {
        match self {
            KernelProfile::Linux25 => RamMap::from_ranges(&[(0, ram.min(PHYS_LIMIT))]),
            KernelProfile::Linux61 => {
                let below = if ram >= PC_SPLIT_FROM {
                    PC_BELOW_4G
                } else {
                    ram
                };
                let above = ram - below;
                let mut r = RamMap::from_ranges(&[
                    (crate::PAGE_SIZE, PC_LOW_END.min(below)),
                    (MB, below.saturating_sub(PC_BIOS_TOP)),
                ]);
                if above > 0 {
                    r.push(4 * GB, (4 * GB + above).min(PHYS_LIMIT));
                }
                r
            }
        }
    }
}

impl fmt::Display for KernelProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A kernel profile name that is not one of the known ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownProfile;

impl fmt::Display for UnknownProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unknown kernel profile; expected one of: 2.5, linux-6.1")
    }
}

impl FromStr for KernelProfile {
    type Err = UnknownProfile;
    /// `2.5` or `linux-2.5`, `linux-6.1` or `6.1`, in any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let s = if s.len() > 6 && s[..6].eq_ignore_ascii_case("linux-") {
            &s[6..]
        } else {
            s
        };
        match s {
            "2.5" => Ok(KernelProfile::Linux25),
            "6.1" => Ok(KernelProfile::Linux61),
            _ => Err(UnknownProfile),
        }
    }
}

/// Most ranges in a [`RamMap`].
const MAX_RANGES: usize = 4;

/// Usable RAM as page-aligned, ascending, disjoint `[start, end)` byte ranges (the e820 map's
/// usable entries). Fixed size: no allocation.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RamMap {
    ranges: [(u64, u64); MAX_RANGES],
    len: usize,
}

impl RamMap {
    /// The map of the given ranges; empty ranges are dropped, each is cut to whole pages.
    pub fn from_ranges(ranges: &[(u64, u64)]) -> Self {
        let mut m = RamMap {
            ranges: [(0, 0); MAX_RANGES],
            len: 0,
        };
        for &(s, e) in ranges {
            m.push(s, e);
        }
        m
    }

    fn push(&mut self, start: u64, end: u64) {
        let page = crate::PAGE_SIZE;
        let (s, e) = (start.div_ceil(page) * page, end / page * page);
        if s < e && self.len < MAX_RANGES {
            self.ranges[self.len] = (s, e);
            self.len += 1;
        }
    }

    /// The ranges, ascending.
    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.ranges[..self.len]
    }

    /// End of the last range (0 if none): the machine's physical memory must reach it.
    pub fn end(&self) -> u64 {
        self.ranges().last().map_or(0, |r| r.1)
    }

    /// Bytes of RAM in the ranges.
    pub fn total(&self) -> u64 {
        self.ranges().iter().map(|r| r.1 - r.0).sum()
    }

    /// Bytes of RAM inside `[start, end)`.
    pub fn bytes_in(&self, start: u64, end: u64) -> u64 {
        self.ranges()
            .iter()
            .map(|&(s, e)| e.min(end).saturating_sub(s.max(start)))
            .sum()
    }

    /// The map cut at `limit`: nothing at or above it.
    pub fn clipped(&self, limit: u64) -> Self {
        let mut m = RamMap::from_ranges(&[]);
        for &(s, e) in self.ranges() {
            m.push(s, e.min(limit));
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in KernelProfile::ALL {
            assert_eq!(k.name().parse::<KernelProfile>(), Ok(k));
        }
        assert_eq!("6.1".parse(), Ok(KernelProfile::Linux61));
        assert_eq!("Linux-2.5".parse(), Ok(KernelProfile::Linux25));
        assert!("linux-".parse::<KernelProfile>().is_err());
        assert!("4.19".parse::<KernelProfile>().is_err());
        assert_eq!(KernelProfile::default(), KernelProfile::Linux25);
    }

    /// The e820 map the real 6.1 kernel printed under QEMU with `-m 8G`: usable
    /// 0-0x9fbff, 0x100000-0xbffdffff, 0x100000000-0x23fffffff; 6.1 then reserves page 0.
    #[test]
    fn the_pc_map_of_8g_is_the_one_qemu_reported() {
        let m = KernelProfile::Linux61.ram_map(8 * GB);
        assert_eq!(
            m.ranges(),
            &[
                (0x1000, 0x9f000),
                (0x10_0000, 0xbffe_0000),
                (0x1_0000_0000, 0x2_4000_0000)
            ]
        );
        assert_eq!(m.end(), 9 * GB);
        // 158 pages in the first megabyte, as the real DMA zone's present count says
        assert_eq!(m.bytes_in(0, MB) / 4096, 158);
        // the real HighMem zone: present 1,871,842 pages from 0x36ffe000 up
        assert_eq!(m.bytes_in(LINUX61_MAXMEM, u64::MAX) / 4096, 1_871_842);
        // the real Normal zone: 16 MB to 0x36ffe000, 221,182 pages, no hole
        assert_eq!(m.bytes_in(16 * MB, LINUX61_MAXMEM) / 4096, 221_182);
        // a HIGHMEM4G kernel sees only what is below 4 GB
        assert_eq!(m.clipped(4 * GB).end(), 0xbffe_0000);
    }

    #[test]
    fn small_pcs_have_no_ram_above_4g_and_the_seed_profile_one_range() {
        let m = KernelProfile::Linux61.ram_map(2 * GB);
        assert_eq!(m.ranges(), &[(0x1000, 0x9f000), (MB, 2 * GB - 128 * KB)]);
        let m = KernelProfile::Linux25.ram_map(8 * GB);
        assert_eq!(m.ranges(), &[(0, 8 * GB)]);
        assert_eq!(m.total(), 8 * GB);
        // 64 GB of RAM on a PC: the part above 64 GB of address space is out of PAE's reach
        assert_eq!(KernelProfile::Linux61.ram_map(64 * GB).end(), 64 * GB);
    }
}
