//! Paging-structure entries (Intel SDM vol. 3, 4.3 for 32-bit paging, 4.4 for PAE).
//!
//! Both formats share the low 12 flag bits, so one 64-bit [`Entry`] represents every level of
//! both modes; a 2-level entry simply never has its upper half set. Which bits hold the
//! address and which are reserved depends on the mode and level; [`crate::PagingMode`] answers
//! those questions.

use crate::addr::{Pfn, PhysAddr, PAGE_SHIFT};
use bitflags::bitflags;

bitflags! {
    /// The architectural flag bits of a PDPTE, PDE or PTE (SDM tables 4-4..4-6, 4-8..4-11).
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
    pub struct EntryFlags: u64 {
        /// Bit 0, P: the entry is valid.
        const PRESENT = 1 << 0;
        /// Bit 1, R/W: writes allowed (not in a PDPTE).
        const RW = 1 << 1;
        /// Bit 2, U/S: user-mode (CPL 3) accesses allowed (not in a PDPTE).
        const USER = 1 << 2;
        /// Bit 3, PWT: page-level write-through.
        const PWT = 1 << 3;
        /// Bit 4, PCD: page-level cache disable.
        const PCD = 1 << 4;
        /// Bit 5, A: set by the processor on any access through this entry.
        const ACCESSED = 1 << 5;
        /// Bit 6, D: set by the processor on a write to the page this entry maps (leaf only).
        const DIRTY = 1 << 6;
        /// Bit 7, PS in a PDE (a 4 MB or 2 MB page), PAT in a 4 KB PTE.
        const PS = 1 << 7;
        /// Bit 8, G: global; the translation survives a CR3 load while CR4.PGE is set (leaf).
        const GLOBAL = 1 << 8;
        /// Bit 9, ignored by hardware, free for software.
        const AVL0 = 1 << 9;
        /// Bit 10, ignored by hardware, free for software.
        const AVL1 = 1 << 10;
        /// Bit 11, ignored by hardware, free for software.
        const AVL2 = 1 << 11;
        /// Bit 63, XD/NX (PAE only, with EFER.NXE): instruction fetches not allowed.
        const NX = 1 << 63;
    }
}

impl EntryFlags {
    /// Bit 7 read as PAT in a 4 KB PTE (same bit as [`EntryFlags::PS`]).
    pub const PAT: EntryFlags = EntryFlags::PS;
    /// The flags Linux uses for a user page-table page in a PDE (`_PAGE_TABLE`).
    pub const PAGE_TABLE: EntryFlags = EntryFlags::PRESENT
        .union(EntryFlags::RW)
        .union(EntryFlags::USER)
        .union(EntryFlags::ACCESSED)
        .union(EntryFlags::DIRTY);
    /// The flags Linux uses for a kernel page-table page in a PDE (`_KERNPG_TABLE`).
    pub const KERNPG_TABLE: EntryFlags = EntryFlags::PRESENT
        .union(EntryFlags::RW)
        .union(EntryFlags::ACCESSED)
        .union(EntryFlags::DIRTY);
    /// The flags of a kernel data page (`PAGE_KERNEL`): present, writable, accessed, dirty.
    pub const KERNEL: EntryFlags = EntryFlags::KERNPG_TABLE;
}

/// One paging-structure entry of either mode, as raw bits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Entry(pub u64);

impl Entry {
    /// The empty entry (`pte_none`).
    pub const NONE: Entry = Entry(0);

    /// Mask of the address bits of an entry that points at a 4 KB frame or table, up to 36
    /// physical bits (bits 35:12).
    pub const ADDR_MASK_4K: u64 = 0x0000_000f_ffff_f000;

    /// Build an entry pointing at a 4 KB-aligned frame or table.
    pub const fn new(pfn: Pfn, flags: EntryFlags) -> Entry {
        Entry((pfn.0 << PAGE_SHIFT) & Self::ADDR_MASK_4K | flags.bits())
    }
    /// Raw bits.
    pub const fn bits(self) -> u64 {
        self.0
    }
    /// All flag bits that are set, including NX (unknown bits are dropped).
    pub const fn flags(self) -> EntryFlags {
        EntryFlags::from_bits_truncate(self.0)
    }
    /// True if P is set.
    pub const fn is_present(self) -> bool {
        self.0 & EntryFlags::PRESENT.bits() != 0
    }
    /// True if the whole entry is zero (`pte_none`): neither present nor holding a swap entry.
    pub const fn is_none(self) -> bool {
        self.0 == 0
    }
    /// True if `flag` is set.
    pub const fn has(self, flag: EntryFlags) -> bool {
        self.0 & flag.bits() == flag.bits()
    }
    /// The 4 KB frame (or next-level table) this entry points at.
    pub const fn pfn(self) -> Pfn {
        Pfn((self.0 & Self::ADDR_MASK_4K) >> PAGE_SHIFT)
    }
    /// The physical address this entry points at (4 KB granularity).
    pub const fn addr(self) -> PhysAddr {
        PhysAddr::new_checked(self.0 & Self::ADDR_MASK_4K)
    }
    /// The same entry with `flags` also set.
    #[must_use]
    pub const fn with(self, flags: EntryFlags) -> Entry {
        Entry(self.0 | flags.bits())
    }
    /// The same entry with `flags` cleared.
    #[must_use]
    pub const fn without(self, flags: EntryFlags) -> Entry {
        Entry(self.0 & !flags.bits())
    }
    /// The same frame with its flags replaced (keeps the address bits).
    #[must_use]
    pub const fn with_flags(self, flags: EntryFlags) -> Entry {
        Entry(self.0 & Self::ADDR_MASK_4K | flags.bits())
    }
    /// Low 32 bits: the half that holds P, written last by Linux on PAE.
    pub const fn low(self) -> u32 {
        self.0 as u32
    }
    /// High 32 bits (PAE only).
    pub const fn high(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

impl core::fmt::Debug for Entry {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Entry({:#018x} {:?})", self.0, self.flags())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bit positions from SDM vol. 3 tables 4-6 and 4-11.
    #[test]
    fn flag_bits_match_the_sdm() {
        assert_eq!(EntryFlags::PRESENT.bits(), 0x001);
        assert_eq!(EntryFlags::RW.bits(), 0x002);
        assert_eq!(EntryFlags::USER.bits(), 0x004);
        assert_eq!(EntryFlags::PWT.bits(), 0x008);
        assert_eq!(EntryFlags::PCD.bits(), 0x010);
        assert_eq!(EntryFlags::ACCESSED.bits(), 0x020);
        assert_eq!(EntryFlags::DIRTY.bits(), 0x040);
        assert_eq!(EntryFlags::PS.bits(), 0x080);
        assert_eq!(EntryFlags::PAT.bits(), 0x080);
        assert_eq!(EntryFlags::GLOBAL.bits(), 0x100);
        assert_eq!(
            EntryFlags::AVL0.bits() | EntryFlags::AVL1.bits() | EntryFlags::AVL2.bits(),
            0xe00
        );
        assert_eq!(EntryFlags::NX.bits(), 0x8000_0000_0000_0000);
        assert_eq!(EntryFlags::PAGE_TABLE.bits(), 0x067);
        assert_eq!(EntryFlags::KERNPG_TABLE.bits(), 0x063);
    }

    #[test]
    fn entry_round_trip() {
        let e = Entry::new(
            Pfn(0xff_ffff),
            EntryFlags::PRESENT | EntryFlags::RW | EntryFlags::NX,
        );
        assert_eq!(e.bits(), 0x8000_000f_ffff_f003);
        assert_eq!(e.pfn(), Pfn(0xff_ffff));
        assert_eq!(e.addr().as_u64(), 0xf_ffff_f000);
        assert!(e.is_present());
        assert!(e.has(EntryFlags::NX));
        assert_eq!(e.low(), 0xffff_f003);
        assert_eq!(e.high(), 0x8000_000f);
        let w = e.without(EntryFlags::RW);
        assert_eq!(w.bits(), 0x8000_000f_ffff_f001);
        assert_eq!(
            w.with_flags(EntryFlags::PRESENT).bits(),
            0x0000_000f_ffff_f001
        );
        assert!(Entry::NONE.is_none());
        assert!(!Entry(0x400).is_present() && !Entry(0x400).is_none());
    }
}
