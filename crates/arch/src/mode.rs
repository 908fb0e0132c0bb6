//! The two paging modes of 32-bit x86 as types: [`TwoLevel`] (SDM 4.3) and [`Pae`] (SDM 4.4).
//!
//! Code generic over [`PagingMode`] is monomorphised per mode, so index math compiles to
//! constants. Linux's three-level vocabulary is used throughout: pgd, pmd, pte. In 2-level mode
//! the pmd is folded into the pgd (one entry per pgd entry, as in Linux), so walkers are the
//! same code in both modes.

use crate::addr::{VirtAddr, PAGE_SHIFT};
use crate::entry::{Entry, EntryFlags};

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::TwoLevel {}
    impl Sealed for super::Pae {}
}

/// Which paging structure an entry belongs to (for reserved-bit checks and reports).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Level {
    /// PAE page-directory-pointer-table entry (the pgd level with PAE).
    Pdpte,
    /// Page-directory entry (the pgd level in 2-level mode, the pmd level with PAE).
    Pde,
    /// Page-table entry.
    Pte,
}

/// A paging mode: sizes, shifts and the rules of its entries. Sealed: only the two real modes.
pub trait PagingMode:
    sealed::Sealed + Copy + Default + Send + Sync + core::fmt::Debug + 'static
{
    /// "2-level" or "PAE".
    const NAME: &'static str;
    /// True for PAE.
    const PAE: bool;
    /// Bytes per entry: 4 or 8.
    const ENTRY_BYTES: u32;
    /// Entries in a pgd: 1024 (page directory) or 4 (PDPT).
    const PTRS_PER_PGD: u32;
    /// Entries in a pmd: 1 (folded) or 512 (page directory).
    const PTRS_PER_PMD: u32;
    /// Entries in a pte page: 1024 or 512.
    const PTRS_PER_PTE: u32;
    /// Address bits covered by one pgd entry: 22 (4 MB) or 30 (1 GB).
    const PGDIR_SHIFT: u32;
    /// Address bits covered by one pmd entry: 22 (4 MB) or 21 (2 MB). A pte page maps this much.
    const PMD_SHIFT: u32;
    /// Size of a large page: 4 MB (PSE) or 2 MB.
    const LARGE_PAGE_SIZE: u32 = 1 << Self::PMD_SHIFT;
    /// Physical address width: 32 or 36 (MAXPHYADDR).
    const MAX_PHYS_BITS: u32;
    /// Entries in the persistent kmap window (LAST_PKMAP): 1024, or 512 with PAE.
    const LAST_PKMAP: u32;
    /// Bytes of user address space one pte page maps (`PMD_SIZE`).
    const PTE_PAGE_SPAN: u32 = 1 << Self::PMD_SHIFT;

    /// Index into the pgd for `va`.
    #[inline(always)]
    fn pgd_index(va: VirtAddr) -> u32 {
        (va.as_u32() >> Self::PGDIR_SHIFT) & (Self::PTRS_PER_PGD - 1)
    }
    /// Index into the pmd for `va` (always 0 when folded).
    #[inline(always)]
    fn pmd_index(va: VirtAddr) -> u32 {
        (va.as_u32() >> Self::PMD_SHIFT) & (Self::PTRS_PER_PMD - 1)
    }
    /// Index into the pte page for `va`.
    #[inline(always)]
    fn pte_index(va: VirtAddr) -> u32 {
        (va.as_u32() >> PAGE_SHIFT) & (Self::PTRS_PER_PTE - 1)
    }
    /// The start of the region mapped by the pte page covering `va`.
    #[inline(always)]
    fn pmd_base(va: VirtAddr) -> VirtAddr {
        VirtAddr::new(va.as_u32() & !((1u32 << Self::PMD_SHIFT) - 1))
    }
    /// The end (exclusive) of the region mapped by the pte page covering `va`, saturating at
    /// the top of the address space (returned as a u64 so 4 GB is representable).
    #[inline(always)]
    fn pmd_end(va: VirtAddr) -> u64 {
        Self::pmd_base(va).as_u64() + (1u64 << Self::PMD_SHIFT)
    }

    /// Reserved bits of an entry at `level` that must be zero (SDM 4.3 / 4.4.2). `leaf_large`
    /// tells that a PDE has PS set and maps a large page; `nxe` is EFER.NXE.
    fn reserved_mask(level: Level, leaf_large: bool, nxe: bool) -> u64;

    /// The physical address a large-page PDE maps (bits of the frame, 4 MB or 2 MB aligned).
    fn large_page_base(pde: Entry) -> u64;

    /// Read an entry of this mode from its little-endian bytes in memory (4 or 8 bytes,
    /// zero-extended).
    #[inline(always)]
    fn entry_from_raw(raw: u64) -> Entry {
        if Self::PAE {
            Entry(raw)
        } else {
            Entry(raw & 0xffff_ffff)
        }
    }

    /// True if `flags` include bits that this mode cannot express (NX in 2-level mode).
    fn flags_supported(flags: EntryFlags) -> bool {
        Self::PAE || !flags.contains(EntryFlags::NX)
    }
}

/// 32-bit paging: page directory and page tables of 1024 4-byte entries (SDM 4.3).
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub enum TwoLevel {
    /// The only value.
    #[default]
    Mode,
}

/// PAE paging: 4 PDPTEs, page directories and tables of 512 8-byte entries (SDM 4.4).
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub enum Pae {
    /// The only value.
    #[default]
    Mode,
}

impl PagingMode for TwoLevel {
    const NAME: &'static str = "2-level";
    const PAE: bool = false;
    const ENTRY_BYTES: u32 = 4;
    const PTRS_PER_PGD: u32 = 1024;
    const PTRS_PER_PMD: u32 = 1;
    const PTRS_PER_PTE: u32 = 1024;
    const PGDIR_SHIFT: u32 = 22;
    const PMD_SHIFT: u32 = 22;
    const MAX_PHYS_BITS: u32 = 32;
    const LAST_PKMAP: u32 = 1024;

    fn reserved_mask(level: Level, leaf_large: bool, _nxe: bool) -> u64 {
        match level {
            // SDM table 4-4: a 4 MB PDE holds physical address bits 39:32 in bits 20:13 (PSE-36);
            // with MAXPHYADDR = 32 none exist, so bits 21:13 are reserved.
            Level::Pde if leaf_large => 0x003f_e000,
            // 4 KB PDEs and PTEs have no reserved bits in 32-bit paging; the upper half
            // does not exist.
            _ => 0,
        }
    }

    fn large_page_base(pde: Entry) -> u64 {
        pde.bits() & 0xffc0_0000
    }
}

impl PagingMode for Pae {
    const NAME: &'static str = "PAE";
    const PAE: bool = true;
    const ENTRY_BYTES: u32 = 8;
    const PTRS_PER_PGD: u32 = 4;
    const PTRS_PER_PMD: u32 = 512;
    const PTRS_PER_PTE: u32 = 512;
    const PGDIR_SHIFT: u32 = 30;
    const PMD_SHIFT: u32 = 21;
    const MAX_PHYS_BITS: u32 = 36;
    const LAST_PKMAP: u32 = 512;

    fn reserved_mask(level: Level, leaf_large: bool, nxe: bool) -> u64 {
        // Bits 62:36 (above MAXPHYADDR) are reserved in every PAE entry; bit 63 unless NXE.
        let above_maxphy = 0x7fff_fff0_0000_0000u64;
        let nx = if nxe { 0 } else { 1u64 << 63 };
        match level {
            // SDM table 4-8: a PDPTE may set only P, PWT, PCD; bits 2:1 and 8:5 are reserved,
            // and bit 63 is reserved too (no NX at this level in PAE paging).
            Level::Pdpte => above_maxphy | (1 << 63) | 0x1e6,
            // SDM table 4-9: a 2 MB PDE's bits 20:13 are reserved.
            Level::Pde if leaf_large => above_maxphy | nx | 0x001f_e000,
            Level::Pde | Level::Pte => above_maxphy | nx,
        }
    }

    fn large_page_base(pde: Entry) -> u64 {
        pde.bits() & 0x0000_000f_ffe0_0000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_level_indices() {
        let va = VirtAddr::new(0xc040_3123 | 0x0040_0000);
        assert_eq!(TwoLevel::pgd_index(VirtAddr::new(0xc040_3123)), 0x301);
        assert_eq!(TwoLevel::pmd_index(va), 0);
        assert_eq!(TwoLevel::pte_index(VirtAddr::new(0xc040_3123)), 3);
        assert_eq!(TwoLevel::PTE_PAGE_SPAN, 4 << 20);
        assert_eq!(TwoLevel::pmd_end(VirtAddr::new(0xffc0_0000)), 1 << 32);
    }

    #[test]
    fn pae_indices() {
        let va = VirtAddr::new(0xc060_5123);
        assert_eq!(Pae::pgd_index(va), 3);
        assert_eq!(Pae::pmd_index(va), 3);
        assert_eq!(Pae::pte_index(va), 5);
        assert_eq!(Pae::PTE_PAGE_SPAN, 2 << 20);
        assert_eq!(Pae::LARGE_PAGE_SIZE, 2 << 20);
        assert_eq!(Pae::pmd_base(va).as_u32(), 0xc060_0000);
    }

    #[test]
    fn reserved_bits() {
        // PDPTE: RW and US are reserved.
        assert_ne!(Pae::reserved_mask(Level::Pdpte, false, true) & 0x2, 0);
        assert_ne!(Pae::reserved_mask(Level::Pdpte, false, true) & 0x4, 0);
        assert_eq!(Pae::reserved_mask(Level::Pdpte, false, true) & 0x19, 0);
        // address bit 36 reserved, bit 35 not
        assert_ne!(Pae::reserved_mask(Level::Pte, false, true) & (1 << 36), 0);
        assert_eq!(Pae::reserved_mask(Level::Pte, false, true) & (1 << 35), 0);
        // NX is reserved without NXE
        assert_ne!(Pae::reserved_mask(Level::Pte, false, false) & (1 << 63), 0);
        assert_eq!(Pae::reserved_mask(Level::Pte, false, true) & (1 << 63), 0);
        assert_eq!(
            Pae::reserved_mask(Level::Pde, true, true) & 0x1f_e000,
            0x1f_e000
        );
        assert_eq!(TwoLevel::reserved_mask(Level::Pte, false, false), 0);
        assert_eq!(TwoLevel::reserved_mask(Level::Pde, true, false), 0x3f_e000);
        assert_eq!(TwoLevel::large_page_base(Entry(0x1234_5683)), 0x1200_0000);
        assert_eq!(
            Pae::large_page_base(Entry(0x8000_0008_1234_5683)),
            0x8_1220_0000
        );
    }
}
